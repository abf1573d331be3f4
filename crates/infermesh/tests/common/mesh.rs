//! The mesh harness: writes a `mesh.yaml` on free loopback ports and runs the real binary,
//! either as one `infermesh up` process or as `model-server`, `sidecar` and `gateway`
//! processes; talks HTTP to the gateway and directly to the model server (to compare
//! answers and read its Prometheus metrics); kills everything when dropped.
//!
//! The mesh has one workload, `tfserving-a`, serving the example model `half_plus_two`
//! (version 1 = 0.5x+2, label `stable`; version 2 = 0.5x+3, label `canary`). Tests choose
//! its route and may add workloads and models.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{
    ONNX_MODEL, Resp, STARTUP_TIMEOUT, Server, ServerBuilder, binary, free_ports, http_agent,
    http_call, log_tail, onnx_models, repo_root, request_count_samples, version_states,
};

/// The example model's answers to `{"instances": [1.0, 2.0, 5.0]}`.
pub const V1_ANSWER: &str = r#"{"predictions":[2.5,3.0,4.5]}"#;
pub const V2_ANSWER: &str = r#"{"predictions":[3.5,4.0,5.5]}"#;
pub const PREDICT_BODY: &str = r#"{"instances": [1.0, 2.0, 5.0]}"#;
/// The response header naming the version that served.
pub const VERSION_HEADER: &str = "x-infermesh-model-version";
/// The response header on answers the proxy made itself.
pub const ERROR_HEADER: &str = "x-infermesh-error";

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A child process of the binary with its stdout and stderr in files; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Proc {
    /// Runs `infermesh <args>` in `dir`; output goes to `dir/<name>.out` and `.err`.
    pub fn spawn(name: &str, args: &[String], dir: &Path) -> Proc {
        Proc::spawn_program(name, &binary().display().to_string(), args, dir)
    }

    /// Spawns another program (e.g. a real Prometheus) with the same output capture.
    pub fn spawn_program(name: &str, program: &str, args: &[String], dir: &Path) -> Proc {
        let stdout_path = dir.join(format!("{name}.out"));
        let stderr_path = dir.join(format!("{name}.err"));
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("create stderr file"))
            .env(
                "INFERMESH_LOG",
                std::env::var("INFERMESH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program} {args:?}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            stdout_path,
            stderr_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends a signal by name (`INT`, `TERM`) with `kill(1)` (tests forbid `unsafe`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s {signal} {} failed", self.pid());
    }

    /// Waits (bounded) for the process to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The ends of stdout and stderr, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            log_tail(&self.stdout_path),
            self.name,
            log_tail(&self.stderr_path)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `infermesh <args>` to completion (bounded) and returns (status, stdout, stderr).
pub fn run_to_end(args: &[String], dir: &Path, timeout: Duration) -> (ExitStatus, String, String) {
    let mut p = Proc::spawn("run", args, dir);
    match p.wait_exit(timeout) {
        Some(status) => (status, p.stdout(), p.stderr()),
        None => panic!(
            "infermesh {args:?} still running after {timeout:?}\n{}",
            p.log()
        ),
    }
}

/// One free loopback port (for an extra listener in a test's mesh.yaml).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// What a raw HTTP/1.1 exchange got back.
#[derive(Debug)]
pub struct RawAnswer {
    /// `None`: no status line came back (the connection was reset or closed first).
    pub status: Option<u16>,
    /// The `x-infermesh-error` header.
    pub error_kind: Option<String>,
    pub body: String,
    /// Writing the request failed part-way (the peer closed or reset the connection).
    pub write_error: Option<String>,
}

/// POSTs `body` over a raw socket, as curl does: it stops writing when the peer closes
/// and then reads whatever answer arrived (an early response). With `chunked`, the body
/// goes in 64 KiB chunks, else with a `Content-Length`. `Connection: close`.
pub fn raw_post(port: u16, path: &str, body: &[u8], chunked: bool) -> RawAnswer {
    use std::io::{Read, Write};
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, super::REQUEST_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(super::REQUEST_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(super::REQUEST_TIMEOUT)).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         {framing}\r\nConnection: close\r\n\r\n"
    );
    let mut written = s.write_all(head.as_bytes());
    for chunk in body.chunks(64 << 10) {
        if written.is_err() {
            break;
        }
        written = if chunked {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| s.write_all(chunk))
                .and_then(|()| s.write_all(b"\r\n"))
        } else {
            s.write_all(chunk)
        };
    }
    if chunked && written.is_ok() {
        written = s.write_all(b"0\r\n\r\n");
    }
    // Keep what was read even if the connection is reset afterwards.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok());
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let error_kind = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(ERROR_HEADER)
            .then(|| v.trim().to_string())
    });
    RawAnswer {
        status,
        error_kind,
        body: body.to_string(),
        write_error: written.err().map(|e| e.to_string()),
    }
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

// ---------------------------------------------------------------------------------------
// mesh.yaml
// ---------------------------------------------------------------------------------------

/// The loopback ports of a mesh.
#[derive(Clone, Copy, Debug)]
pub struct MeshPorts {
    /// The gateway listener (REST and gRPC).
    pub gateway: u16,
    /// The sidecar of `tfserving-a`.
    pub sidecar: u16,
    /// The model server's REST port.
    pub rest: u16,
    /// The model server's gRPC port.
    pub grpc: u16,
    /// The gateway's admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: u16,
}

/// What varies between test meshes.
#[derive(Clone, Debug)]
pub struct MeshSpec {
    /// The body of `half_plus_two`'s `route` flow mapping, e.g.
    /// `split: {stable: 90, canary: 10}, timeout: 10s`.
    pub route: String,
    /// The body of the `limits` flow mapping, if any.
    pub limits: Option<String>,
    /// More workloads, each a YAML flow mapping.
    pub extra_workloads: Vec<String>,
    /// More models, each a YAML flow mapping.
    pub extra_models: Vec<String>,
    /// More fields of `tfserving-a`, each a `key: value` line (e.g. `mtls: STRICT`).
    pub workload_fields: Vec<String>,
    /// More top-level YAML (e.g. an `identity:` or `policies:` section).
    pub top_level: Vec<String>,
}

impl MeshSpec {
    pub fn route(route: &str) -> MeshSpec {
        MeshSpec {
            route: route.to_string(),
            limits: None,
            extra_workloads: Vec::new(),
            extra_models: Vec::new(),
            workload_fields: Vec::new(),
            top_level: Vec::new(),
        }
    }

    /// Adds a `key: value` field to `tfserving-a`.
    pub fn workload_field(mut self, field: &str) -> MeshSpec {
        self.workload_fields.push(field.to_string());
        self
    }

    /// Adds top-level YAML.
    pub fn top(mut self, yaml: &str) -> MeshSpec {
        self.top_level.push(yaml.to_string());
        self
    }

    pub fn limits(mut self, limits: &str) -> MeshSpec {
        self.limits = Some(limits.to_string());
        self
    }

    pub fn workload(mut self, workload: &str) -> MeshSpec {
        self.extra_workloads.push(workload.to_string());
        self
    }

    pub fn model(mut self, model: &str) -> MeshSpec {
        self.extra_models.push(model.to_string());
        self
    }

    /// The file. With `embedded`, `tfserving-a` runs the embedded model server (for
    /// `infermesh up`) on the example models.
    pub fn yaml(&self, ports: &MeshPorts, embedded: bool) -> String {
        let mut out = String::from("# written by the mesh_* integration tests\n");
        out.push_str("trust_domain: cluster.local\n\nworkloads:\n");
        out.push_str(&format!(
            "  - name: tfserving-a\n    namespace: ml\n    service_account: tfserving\n    \
             listen: 127.0.0.1:{}\n    upstream: {{rest: 127.0.0.1:{}, grpc: 127.0.0.1:{}}}\n",
            ports.sidecar, ports.rest, ports.grpc
        ));
        for field in &self.workload_fields {
            out.push_str(&format!("    {field}\n"));
        }
        if embedded {
            out.push_str(&format!(
                "    model_server:\n      model_config_file: {}\n",
                models_config().display()
            ));
        }
        for w in &self.extra_workloads {
            out.push_str(&format!("  - {w}\n"));
        }
        out.push_str(&format!(
            "\nmodels:\n  - name: {ONNX_MODEL}\n    served_by: tfserving-a\n    versions:\n      \
             - {{version: 1, label: stable}}\n      - {{version: 2, label: canary}}\n    \
             route: {{{}}}\n",
            self.route
        ));
        for m in &self.extra_models {
            out.push_str(&format!("  - {m}\n"));
        }
        out.push_str(&format!(
            "\ngateway:\n  listen: [127.0.0.1:{}]\n  admin: 127.0.0.1:{}\n",
            ports.gateway, ports.admin
        ));
        if let Some(limits) = &self.limits {
            out.push_str(&format!("\nlimits: {{{limits}}}\n"));
        }
        // No policies here: without this, the mesh denies every request (default deny).
        out.push_str("\nauthorization: {default_deny: false}\n");
        for yaml in &self.top_level {
            out.push_str(&format!("\n{yaml}\n"));
        }
        out
    }
}

/// `examples/models/models.config`: `half_plus_two` versions 1 (stable) and 2 (canary).
pub fn models_config() -> PathBuf {
    let path = repo_root().join("examples/models/models.config");
    assert!(path.is_file(), "missing {}", path.display());
    path
}

// ---------------------------------------------------------------------------------------
// The mesh
// ---------------------------------------------------------------------------------------

/// A running mesh; every process is killed when it is dropped.
pub struct Mesh {
    pub ports: MeshPorts,
    pub dir: tempfile::TempDir,
    /// The mesh file.
    pub config: PathBuf,
    /// `infermesh up`, when the mesh runs as one process.
    pub up: Option<Proc>,
    /// The separate processes, when the mesh runs as three.
    pub gateway: Option<Proc>,
    pub sidecar: Option<Proc>,
    pub model_server: Option<Server>,
    agent: ureq::Agent,
}

enum Started {
    Ready,
    /// A process ended during startup (e.g. a port was taken in between): retry.
    Exited(String),
}

impl Mesh {
    /// `infermesh up --config <mesh.yaml>`, ready when both model versions answer
    /// through the gateway.
    pub fn up(spec: &MeshSpec) -> Mesh {
        let mut last = String::new();
        for attempt in 1..=3 {
            let p = free_ports(5);
            let ports = MeshPorts {
                gateway: p[0],
                sidecar: p[1],
                rest: p[2],
                grpc: p[3],
                admin: p[4],
            };
            let dir = tempfile::tempdir().expect("temp dir");
            let config = dir.path().join("mesh.yaml");
            fs::write(&config, spec.yaml(&ports, true)).expect("write mesh.yaml");
            let up = Proc::spawn(
                "up",
                &["up".into(), "--config".into(), config.display().to_string()],
                dir.path(),
            );
            let mut mesh = Mesh {
                ports,
                dir,
                config,
                up: Some(up),
                gateway: None,
                sidecar: None,
                model_server: None,
                agent: http_agent(),
            };
            match mesh.wait_ready() {
                Started::Ready => return mesh,
                Started::Exited(why) => {
                    eprintln!("mesh startup attempt {attempt}/3 failed: {why}");
                    last = why;
                }
            }
        }
        panic!("infermesh up failed to start 3 times; last:\n{last}");
    }

    /// `infermesh model-server`, `infermesh sidecar --workload tfserving-a` and
    /// `infermesh gateway` as three processes.
    pub fn separate(spec: &MeshSpec) -> Mesh {
        let server = ServerBuilder::config(onnx_models())
            .wait_for(ONNX_MODEL, &[1, 2])
            .start();
        let mut server = Some(server);
        let mut last = String::new();
        for attempt in 1..=3 {
            let p = free_ports(3);
            let s = server.as_ref().unwrap();
            let ports = MeshPorts {
                gateway: p[0],
                sidecar: p[1],
                rest: s.rest_port,
                grpc: s.grpc_port,
                admin: p[2],
            };
            let dir = tempfile::tempdir().expect("temp dir");
            let config = dir.path().join("mesh.yaml");
            fs::write(&config, spec.yaml(&ports, false)).expect("write mesh.yaml");
            let cfg = config.display().to_string();
            let sidecar = Proc::spawn(
                "sidecar",
                &[
                    "sidecar".into(),
                    "--config".into(),
                    cfg.clone(),
                    "--workload".into(),
                    "tfserving-a".into(),
                ],
                dir.path(),
            );
            let gateway = Proc::spawn(
                "gateway",
                &["gateway".into(), "--config".into(), cfg],
                dir.path(),
            );
            let mut mesh = Mesh {
                ports,
                dir,
                config,
                up: None,
                gateway: Some(gateway),
                sidecar: Some(sidecar),
                model_server: server.take(),
                agent: http_agent(),
            };
            match mesh.wait_ready() {
                Started::Ready => return mesh,
                Started::Exited(why) => {
                    eprintln!("mesh startup attempt {attempt}/3 failed: {why}");
                    last = why;
                    server = mesh.model_server.take();
                }
            }
        }
        panic!("mesh processes failed to start 3 times; last:\n{last}");
    }

    fn procs_mut(&mut self) -> Vec<&mut Proc> {
        [&mut self.up, &mut self.gateway, &mut self.sidecar]
            .into_iter()
            .filter_map(Option::as_mut)
            .collect()
    }

    fn wait_ready(&mut self) -> Started {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut pending = String::from("not started");
        loop {
            for p in self.procs_mut() {
                if let Some(status) = p.exited() {
                    let why = format!("{} exited with {status}\n{}", p.name, p.log());
                    return Started::Exited(why);
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "mesh not ready within {STARTUP_TIMEOUT:?}: {pending}\n{}",
                    self.logs()
                );
            }
            match self.try_ready() {
                Ok(()) => return Started::Ready,
                Err(why) => pending = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_ready(&self) -> Result<(), String> {
        if !port_open(self.ports.gateway) {
            return Err("gateway port closed".into());
        }
        let r = self
            .try_direct("GET", "/v1/models/half_plus_two", None)
            .map_err(|e| format!("model server status: {e}"))?;
        let states = if r.status == 200 {
            version_states(&r.json())
        } else {
            Vec::new()
        };
        for v in [1, 2] {
            if !states.iter().any(|(ver, s)| *ver == v && s == "AVAILABLE") {
                return Err(format!(
                    "model server: version {v} not AVAILABLE: {}",
                    r.body
                ));
            }
        }
        for v in [1, 2] {
            let path = format!("/v1/models/half_plus_two/versions/{v}");
            let r = self
                .try_gateway("GET", &path, None, &[])
                .map_err(|e| format!("gateway {path}: {e}"))?;
            if r.status != 200 {
                return Err(format!("gateway {path}: {} {}", r.status, r.body));
            }
        }
        Ok(())
    }

    pub fn gateway_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.gateway)
    }

    pub fn direct_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.rest)
    }

    /// `http://127.0.0.1:<gateway>` for gRPC clients.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.gateway)
    }

    /// `http://127.0.0.1:<model server gRPC>` for gRPC clients.
    pub fn direct_grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.grpc)
    }

    /// All process logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in [&self.up, &self.gateway, &self.sidecar]
            .into_iter()
            .flatten()
        {
            out.push_str(&p.log());
            out.push('\n');
        }
        if let Some(s) = &self.model_server {
            out.push_str("--- model server ---\n");
            out.push_str(&s.log());
        }
        out
    }

    pub fn try_gateway(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, ureq::Error> {
        http_call(&self.agent, method, &self.gateway_url(path), body, headers)
    }

    pub fn try_direct(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Resp, ureq::Error> {
        http_call(&self.agent, method, &self.direct_url(path), body, &[])
    }

    /// A request through the gateway (panics with the logs on a transport error).
    pub fn gateway_req(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.try_gateway(method, path, body, headers)
            .unwrap_or_else(|e| panic!("gateway {method} {path} failed: {e}\n{}", self.logs()))
    }

    /// A request straight to the model server's REST port.
    pub fn direct_req(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        self.try_direct(method, path, body)
            .unwrap_or_else(|e| panic!("direct {method} {path} failed: {e}\n{}", self.logs()))
    }

    /// `:tensorflow:serving:request_count` of `half_plus_two` at the model server, summed
    /// over statuses, for versions 1 and 2.
    pub fn request_counts(&self) -> (f64, f64) {
        let r = self.direct_req("GET", "/monitoring/prometheus/metrics", None);
        assert_eq!(r.status, 200, "metrics: {}", r.body);
        let samples = request_count_samples(&r.body);
        let count = |version: &str| -> f64 {
            samples
                .iter()
                .filter(|(labels, _)| {
                    labels.contains(&format!(r#"model_name="{ONNX_MODEL}""#))
                        && labels.contains(&format!(r#"model_version="{version}""#))
                })
                .map(|(_, v)| v)
                .sum()
        };
        (count("1"), count("2"))
    }

    /// [`Mesh::request_counts`] once they have not changed for 2 s (e.g. after mirrored
    /// copies, which arrive after the callers' answers); panics after `timeout`.
    pub fn settled_request_counts(&self, timeout: Duration) -> (f64, f64) {
        let deadline = Instant::now() + timeout;
        let mut last = self.request_counts();
        let mut stable_since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.request_counts();
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if stable_since.elapsed() >= Duration::from_secs(2) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "request counts still changing after {timeout:?}: {now:?}\n{}",
                self.logs()
            );
        }
    }

    /// Polls `check` every 100 ms until it returns true; panics with the logs after
    /// `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
        super::poll_until(what, timeout, Duration::from_millis(100), check, || {
            self.logs()
        });
    }
}
