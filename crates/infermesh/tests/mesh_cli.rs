//! The binary's mesh commands as a user runs them: `infermesh up` prints what it
//! started and stops gracefully on SIGINT (exit 0, in-flight requests answered);
//! `gateway` and `sidecar` stop on SIGTERM with exit 0; an invalid mesh.yaml makes
//! every mesh command exit 64 with `file:line:column` errors on stderr; `schema` prints
//! the committed docs/mesh.schema.json; `export` carries the files mesh.yaml names.

mod common;

use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::mesh::{
    ERROR_HEADER, Mesh, MeshPorts, MeshSpec, PREDICT_BODY, V1_ANSWER, free_port, port_open,
    run_to_end,
};
use common::{compact, free_ports};

/// Bound for a graceful stop (drain included).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn up_prints_what_it_started_and_exits_0_on_sigint_after_draining() {
    // A second workload whose model server never answers, with a 3 s route timeout:
    // a request to it is in flight when SIGINT arrives.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_grpc = TcpListener::bind("127.0.0.1:0").unwrap();
    let (silent_port, silent_grpc_port) = (
        silent.local_addr().unwrap().port(),
        silent_grpc.local_addr().unwrap().port(),
    );
    let slow_sidecar = free_port();
    let mut mesh = Mesh::up(
        &MeshSpec::route("split: {stable: 100, canary: 0}, timeout: 20s")
            .workload(&format!(
                "{{name: slow, listen: 127.0.0.1:{slow_sidecar}, \
                 upstream: {{rest: 127.0.0.1:{silent_port}, grpc: 127.0.0.1:{silent_grpc_port}}}}}"
            ))
            .model(
                "{name: slow_model, served_by: slow, versions: [1], \
                 route: {timeout: 3s, retries: {attempts: 0}}}",
            ),
    );
    let p = mesh.ports;

    // What it started, with the addresses of the file.
    let out = mesh.up.as_ref().unwrap().stdout();
    let config = mesh.config.display().to_string();
    for want in [
        format!("infermesh up: mesh from {config}"),
        format!(
            "model server  tfserving-a: REST 127.0.0.1:{} gRPC 127.0.0.1:{}",
            p.rest, p.grpc
        ),
        format!("sidecar       tfserving-a: 127.0.0.1:{}", p.sidecar),
        format!("sidecar       slow: 127.0.0.1:{slow_sidecar}"),
        format!(
            "gateway       127.0.0.1:{} (TF Serving REST and gRPC)",
            p.gateway
        ),
        "Stop with Ctrl-C.".to_string(),
    ] {
        assert!(out.contains(&want), "stdout lacks {want:?}:\n{out}");
    }
    // The printed curl line works.
    let r = mesh.gateway_req(
        "POST",
        "/v1/models/half_plus_two/versions/1:predict",
        Some(PREDICT_BODY.as_bytes()),
        &[],
    );
    assert_eq!((r.status, compact(&r.body)), (200, V1_ANSWER.to_string()));

    // A request in flight: it has reached the silent backend when SIGINT is sent.
    let url = mesh.gateway_url("/v1/models/slow_model:predict");
    let in_flight = std::thread::spawn(move || {
        common::http_call(
            &common::http_agent(),
            "POST",
            &url,
            Some(PREDICT_BODY.as_bytes()),
            &[],
        )
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    silent.set_nonblocking(true).unwrap();
    let _held = loop {
        match silent.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the request never reached the silent backend\n{}",
                    mesh.logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept on the silent backend: {e}"),
        }
    };

    let up = mesh.up.as_mut().unwrap();
    up.signal("INT");
    let status = up.wait_exit(STOP_TIMEOUT);
    let log = up.log();
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "infermesh up after SIGINT (None: still running after {STOP_TIMEOUT:?})\n{log}"
    );
    // The in-flight request was answered (by the route timeout), not dropped.
    let r = in_flight
        .join()
        .unwrap()
        .expect("the in-flight request gets an answer during the drain");
    assert_eq!(
        (r.status, r.header(ERROR_HEADER)),
        (504, Some("timeout")),
        "in-flight request: {r:?}"
    );
    let out = up.stdout();
    assert!(
        out.trim_end().ends_with("infermesh up: stopped"),
        "stdout after SIGINT:\n{out}"
    );
    for port in [p.gateway, p.sidecar, p.rest, p.grpc, slow_sidecar] {
        assert!(!port_open(port), "port {port} still open after exit");
    }
}

#[test]
fn gateway_and_sidecar_exit_0_on_sigterm() {
    let mut mesh = Mesh::separate(&MeshSpec::route(
        "split: {stable: 100, canary: 0}, timeout: 20s",
    ));
    let r = mesh.gateway_req(
        "POST",
        "/v1/models/half_plus_two:predict",
        Some(PREDICT_BODY.as_bytes()),
        &[],
    );
    assert_eq!((r.status, compact(&r.body)), (200, V1_ANSWER.to_string()));
    let ports = mesh.ports;
    for (proc, port) in [
        (mesh.gateway.as_mut().unwrap(), ports.gateway),
        (mesh.sidecar.as_mut().unwrap(), ports.sidecar),
    ] {
        proc.signal("TERM");
        let status = proc.wait_exit(STOP_TIMEOUT);
        assert_eq!(
            status.map(|s| s.code()),
            Some(Some(0)),
            "{} after SIGTERM\n{}",
            proc.name,
            proc.log()
        );
        assert!(!port_open(port), "{} port {port} still open", proc.name);
    }
}

/// Writes `text` as `dir/name` and returns the path as a string.
fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs `infermesh <cmd> --config <file> [extra]` and asserts exit 64 with each of
/// `want` on stderr.
fn assert_invalid(dir: &std::path::Path, cmd: &str, file: &str, extra: &[&str], want: &[String]) {
    let mut args = vec![cmd.to_string(), "--config".into(), file.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let (status, stdout, stderr) = run_to_end(&args, dir, Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(64),
        "infermesh {args:?}: want exit 64\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    for w in want {
        assert!(
            stderr.contains(w.as_str()),
            "infermesh {args:?}: stderr lacks {w:?}:\n{stderr}"
        );
    }
}

#[test]
fn invalid_mesh_yaml_exits_64_with_file_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = free_ports(5);
    let ports = MeshPorts {
        gateway: p[0],
        sidecar: p[1],
        rest: p[2],
        grpc: p[3],
        admin: p[4],
    };
    let good = MeshSpec::route("split: {stable: 90, canary: 10}, timeout: 2s").yaml(&ports, true);
    let line_of = |text: &str, needle: &str| -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
            + 1
    };

    // A misspelt key: named with file, line and a suggestion.
    let typo = good.replace("split:", "splt:");
    let file = write(dir.path(), "typo.yaml", &typo);
    let line = line_of(&typo, "splt:");
    let want = vec![
        format!("{file}:{line}:"),
        "unknown field `splt`".to_string(),
        "split".to_string(),
    ];
    assert_invalid(dir.path(), "gateway", &file, &[], &want);
    assert_invalid(
        dir.path(),
        "sidecar",
        &file,
        &["--workload", "tfserving-a"],
        &want,
    );
    assert_invalid(dir.path(), "up", &file, &[], &want);

    // Port 0 and weights that do not add up: every error is reported, each with its line.
    let bad = good
        .replace(&format!("127.0.0.1:{}]", ports.gateway), "127.0.0.1:0]")
        .replace("canary: 10}", "canary: 5}");
    let file = write(dir.path(), "two-errors.yaml", &bad);
    let want = vec![
        format!("{file}:{}:", line_of(&bad, "127.0.0.1:0]")),
        format!("{file}:{}:", line_of(&bad, "canary: 5}")),
        "95".to_string(),
    ];
    assert_invalid(dir.path(), "gateway", &file, &[], &want);

    // A YAML syntax error.
    let broken = good.replace("served_by: tfserving-a", "served_by: [tfserving-a");
    let file = write(dir.path(), "syntax.yaml", &broken);
    assert_invalid(dir.path(), "gateway", &file, &[], &[format!("{file}:")]);

    // A file that does not exist is a configuration error too, naming the file.
    let missing = dir.path().join("missing.yaml").display().to_string();
    let (status, _, stderr) = run_to_end(
        &["gateway".into(), "--config".into(), missing.clone()],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(64), "missing file: {stderr}");
    assert!(stderr.contains(&missing), "missing file: {stderr}");

    // A sidecar for a workload the mesh does not have is a configuration error.
    let file = write(dir.path(), "good.yaml", &good);
    assert_invalid(
        dir.path(),
        "sidecar",
        &file,
        &["--workload", "nope"],
        &["workload \"nope\" is not in the mesh config".to_string()],
    );
}

#[test]
fn validate_checks_files_without_starting_anything() {
    let root = common::repo_root();
    let quickstart = root
        .join("examples/quickstart/mesh.yaml")
        .display()
        .to_string();
    let k8s = root
        .join("examples/kubernetes/mesh.yaml")
        .display()
        .to_string();
    // The process's stdout/stderr files go to its working directory: not the repo.
    let cwd = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_to_end(
        &["validate".into(), quickstart.clone(), k8s],
        cwd.path(),
        Duration::from_secs(30),
    );
    assert!(status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.matches(": valid — ").count(), 2, "{stdout}");
    assert!(stdout.contains("digest sha256:"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "models:\n  - name: m\n    servd_by: w\n").unwrap();
    let (status, stdout, stderr) = run_to_end(
        &["validate".into(), quickstart, bad.display().to_string()],
        cwd.path(),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(64), "{stdout}{stderr}");
    assert!(
        stdout.contains(": valid — "),
        "the valid file is still reported: {stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:3:5: models[0]: unknown field `servd_by`",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn schema_prints_the_committed_schema() {
    let schema_file = common::repo_root().join("docs/mesh.schema.json");
    let committed = fs::read_to_string(schema_file).unwrap();
    // Run in a temporary directory: each run's output files are written there.
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let (status, stdout, stderr) = run_to_end(&["schema".into()], cwd, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(
        stdout == committed,
        "`infermesh schema` differs from docs/mesh.schema.json"
    );

    let out = cwd.join("mesh.schema.json");
    let args = ["schema".into(), "-o".into(), out.display().to_string()];
    let (status, stdout, stderr) = run_to_end(&args, cwd, Duration::from_secs(30));
    assert!(status.success() && stdout.is_empty(), "{stdout}{stderr}");
    assert!(fs::read_to_string(&out).unwrap() == committed);

    let missing = cwd.join("no/such/dir/schema.json");
    let args = [
        "schema".into(),
        "--output".into(),
        missing.display().to_string(),
    ];
    let (status, _, stderr) = run_to_end(&args, cwd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
}

/// `export k8s` puts the `istio_files` mesh.yaml names into its ConfigMap and mounts
/// each at the path mesh.yaml gives it: the directory a pod sees (rebuilt here from the
/// ConfigMap and the volume's items) validates. A name outside mesh.yaml's directory
/// is refused with exit 64.
#[test]
fn export_carries_the_istio_files_mesh_yaml_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mesh = fs::read_to_string(root.join("examples/kubernetes/mesh.yaml")).unwrap();
    let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                  metadata: {name: deny-canary, namespace: ml}\n\
                  spec:\n  action: DENY\n  rules:\n  - to:\n    - operation:\n\
                  \x20       paths: [/v1/models/half_plus_two/labels/canary*]\n";
    fs::create_dir(dir.path().join("istio")).unwrap();
    fs::write(dir.path().join("istio/deny.yaml"), policy).unwrap();
    let with_files = format!("{mesh}\nistio_files: [./istio/deny.yaml]\n");
    fs::write(dir.path().join("mesh.yaml"), &with_files).unwrap();
    let out = dir.path().join("k8s.yaml");
    let args: Vec<String> = ["export", "k8s", "--config", "mesh.yaml", "-o", "k8s.yaml"]
        .map(String::from)
        .into();
    let (status, stdout, stderr) = run_to_end(&args, dir.path(), Duration::from_secs(30));
    assert!(status.success(), "{stdout}{stderr}");

    let text = fs::read_to_string(&out).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let gateway = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "infermesh-gateway")
        .expect("gateway Deployment");
    let volumes = gateway["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let mesh_volume = volumes.iter().find(|v| v["name"] == "mesh").unwrap();
    let config_map = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"] == mesh_volume["configMap"]["name"]
                && d["metadata"]["namespace"] == gateway["metadata"]["namespace"]
        })
        .expect("the gateway's mesh ConfigMap");
    // What the kubelet would mount at /etc/infermesh.
    let mounted = tempfile::tempdir().unwrap();
    let items = mesh_volume["configMap"]["items"].as_array().expect("items");
    for item in items {
        let path = mounted.path().join(item["path"].as_str().unwrap());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let key = item["key"].as_str().unwrap();
        fs::write(
            &path,
            config_map["data"][key].as_str().expect("key in data"),
        )
        .unwrap();
    }
    assert_eq!(
        fs::read_to_string(mounted.path().join("istio/deny.yaml")).unwrap(),
        policy
    );
    let mounted_mesh = mounted.path().join("mesh.yaml").display().to_string();
    let (status, stdout, stderr) = run_to_end(
        &[
            "policy".into(),
            "check".into(),
            "--config".into(),
            mounted_mesh,
            "--request".into(),
            "POST /v1/models/half_plus_two/labels/canary:predict".into(),
        ],
        mounted.path(),
        Duration::from_secs(30),
    );
    assert!(
        status.success() && stdout.contains("DENY") && stdout.contains("deny-canary"),
        "the carried DENY policy decides in the mounted directory: {status:?}\n{stdout}{stderr}"
    );

    // A file outside mesh.yaml's directory cannot be mounted beside it: refused.
    fs::create_dir(dir.path().join("sub")).unwrap();
    let outside = format!("{mesh}\nistio_files: [../istio/deny.yaml]\n");
    fs::write(dir.path().join("sub/mesh.yaml"), outside).unwrap();
    let args: Vec<String> = ["export", "k8s", "--config", "sub/mesh.yaml"]
        .map(String::from)
        .into();
    let (status, _, stderr) = run_to_end(&args, dir.path(), Duration::from_secs(30));
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("istio_files entry `../istio/deny.yaml`"),
        "{stderr}"
    );
}
