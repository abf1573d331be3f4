//! Workload identity and mTLS through the real binary (`infermesh up`), checked with
//! the standard clients, `openssl s_client` and `curl`, against the sidecar: STRICT
//! refuses no certificate, another CA's, an expired one and a disallowed SPIFFE ID
//! (and logs why); PERMISSIVE serves plaintext and mTLS on one port and authorizes on
//! the mTLS identity; CA files are 0600 and no private key reaches the logs;
//! certificates with a 10 s lifetime renewed continuously and a CA rotation under
//! 60 s of load fail no request; replaced external certificate files are served
//! without a restart; TLS 1.2 is refused unless `min_tls: "1.2"`. Test certificates come from the code under test
//! (`infermesh-identity`).
//!
//! The tests need `openssl` and `curl`; without them each says it skips and why.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::compact;
use common::mesh::{Mesh, MeshSpec, PREDICT_BODY, V1_ANSWER, run_to_end};
use infermesh_identity::{Ca, ROOT_LIFETIME, SpiffeId, certs_to_pem, new_key_and_csr};

const PREDICT: &str = "/v1/models/half_plus_two/versions/1:predict";
const GATEWAY: &str = "cluster.local/ns/infermesh/sa/gateway";

/// Whether `openssl` and `curl` run; if not, says why the test skips.
fn tools_present(test: &str) -> bool {
    for tool in ["openssl", "curl"] {
        let ok = Command::new(tool)
            .arg(if tool == "openssl" {
                "version"
            } else {
                "--version"
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP {test}: `{tool}` is not installed (needed to act as the client)");
            return false;
        }
    }
    true
}

/// The mesh's built-in CA (in `up`'s state directory).
fn ca_dir(mesh: &Mesh) -> PathBuf {
    mesh.dir.path().join(".infermesh/ca")
}

fn mesh_ca(mesh: &Mesh) -> Ca {
    let dir = ca_dir(mesh);
    let cert = fs::read_to_string(dir.join("ca.pem")).expect("ca.pem");
    let key = fs::read_to_string(dir.join("ca.key")).expect("ca.key");
    Ca::from_pem(&cert, &key).expect("the mesh CA loads")
}

/// Test certificates, as files.
struct Pki {
    dir: tempfile::TempDir,
}

/// A certificate and key file pair.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A leaf for `principal` from `ca`, written as `<name>.pem` / `<name>.key`.
    fn mint(&self, ca: &Ca, name: &str, principal: &str, lifetime: Duration) -> Pair {
        let id = SpiffeId::parse_principal(principal).expect("principal");
        let (key, csr) = new_key_and_csr(&id).expect("key and CSR");
        let chain = ca.sign_csr(&csr, &id, lifetime).expect("signed");
        let pair = Pair {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        fs::write(&pair.cert, certs_to_pem(&chain)).unwrap();
        fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }
}

/// `curl` POSTs a predict to `url`; returns the HTTP status (0: no answer) and the
/// body or curl's error. `-k`: SVIDs name no host, so curl's host check cannot pass;
/// what is tested here is the server's check of the client.
fn curl(url: &str, cert: Option<&Pair>) -> (u16, String) {
    curl_with(url, cert, &[])
}

/// [`curl`] with more curl arguments.
fn curl_with(url: &str, cert: Option<&Pair>, extra: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(extra);
    cmd.args(["-sS", "-k", "-m", "10", "-X", "POST", "-d", PREDICT_BODY])
        .args(["-w", "\n%{http_code}"]);
    if let Some(p) = cert {
        cmd.arg("--cert").arg(&p.cert).arg("--key").arg(&p.key);
    }
    let out = cmd.arg(url).output().expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", "0"));
    let status = code.trim().parse().unwrap_or(0);
    let text = format!("{body}{}", String::from_utf8_lossy(&out.stderr));
    (status, text)
}

/// `openssl s_client` sends one HTTP/1.1 request; returns everything it printed.
/// With `ca`, the server's chain is verified against it (`-verify_return_error`).
fn s_client(port: u16, cert: Option<&Pair>, ca: Option<&Path>) -> String {
    s_client_with(port, cert, ca, &[])
}

/// [`s_client`] with more openssl arguments (e.g. `-tls1_2`).
fn s_client_with(port: u16, cert: Option<&Pair>, ca: Option<&Path>, extra: &[&str]) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args(["15", "openssl", "s_client", "-quiet", "-alpn", "http/1.1"])
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"));
    if let Some(p) = cert {
        cmd.arg("-cert").arg(&p.cert).arg("-key").arg(&p.key);
    }
    if let Some(ca) = ca {
        cmd.arg("-CAfile").arg(ca).arg("-verify_return_error");
    }
    cmd.args(extra);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    let request = format!(
        "POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{PREDICT_BODY}",
        PREDICT_BODY.len()
    );
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(request.as_bytes());
        // Closing stdin does not end s_client (`-quiet` ignores EOF): the server
        // closing the connection (`Connection: close`, or a refusal) does.
    }
    let out = child.wait_with_output().expect("openssl output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn answered(output: &str) -> bool {
    output.contains("HTTP/1.1 200")
}

/// Everything `up` logged so far.
fn logs(mesh: &Mesh) -> String {
    let up = mesh.up.as_ref().expect("up");
    format!("{}\n{}", up.stdout(), up.stderr())
}

fn sidecar_https(mesh: &Mesh) -> String {
    format!("https://127.0.0.1:{}{PREDICT}", mesh.ports.sidecar)
}

fn assert_gateway_serves(mesh: &Mesh) {
    let r = mesh.gateway_req("POST", PREDICT, Some(PREDICT_BODY.as_bytes()), &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, mesh.logs());
    assert_eq!(compact(&r.body), V1_ANSWER);
}

#[test]
fn strict_sidecar_refuses_every_caller_without_an_allowed_identity() {
    if !tools_present("strict_sidecar_refuses_every_caller_without_an_allowed_identity") {
        return;
    }
    let spec = MeshSpec::route("timeout: 30s")
        .workload_field("mtls: STRICT")
        .workload_field(&format!(
            "allowed_peers: [{GATEWAY}, cluster.local/ns/test/sa/client]"
        ));
    let mesh = Mesh::up(&spec);
    let port = mesh.ports.sidecar;
    // The gateway → sidecar hop is mTLS, and it serves.
    assert_gateway_serves(&mesh);

    let ca = mesh_ca(&mesh);
    let pki = Pki::new();
    let good = pki.mint(
        &ca,
        "good",
        "cluster.local/ns/test/sa/client",
        ROOT_LIFETIME,
    );
    let intruder = pki.mint(
        &ca,
        "intruder",
        "cluster.local/ns/test/sa/intruder",
        ROOT_LIFETIME,
    );
    let expired = pki.mint(
        &ca,
        "expired",
        "cluster.local/ns/test/sa/client",
        Duration::from_secs(1),
    );
    let other_ca = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
    let stranger = pki.mint(
        &other_ca,
        "stranger",
        "cluster.local/ns/test/sa/client",
        ROOT_LIFETIME,
    );
    thread::sleep(Duration::from_secs(2)); // `expired` is now past notAfter

    // An allowed identity from the mesh CA is served, by both clients.
    let (status, body) = curl(&sidecar_https(&mesh), Some(&good));
    assert_eq!(status, 200, "{body}\n{}", mesh.logs());
    assert_eq!(compact(body.trim()), V1_ANSWER);
    let out = s_client(port, Some(&good), None);
    assert!(answered(&out), "{out}");
    // TLS 1.3 only by default: a TLS 1.2 client is refused.
    let out = s_client_with(port, Some(&good), None, &["-tls1_2"]);
    assert!(!answered(&out), "TLS 1.2: {out}");

    // No client certificate: refused (TLS alert "certificate required").
    let out = s_client(port, None, None);
    assert!(!answered(&out), "{out}");
    assert!(out.contains("certificate required"), "{out}");
    assert_eq!(curl(&sidecar_https(&mesh), None).0, 0);
    // Plaintext on a STRICT port: no answer.
    let plain = format!("http://127.0.0.1:{port}{PREDICT}");
    assert_eq!(curl(&plain, None).0, 0);

    // Another CA's certificate, an expired one, a disallowed SPIFFE ID: refused.
    for (what, pair, reason) in [
        (
            "another CA",
            &stranger,
            "does not verify against the trust bundle",
        ),
        (
            "expired",
            &expired,
            "does not verify against the trust bundle",
        ),
        (
            "wrong SPIFFE ID",
            &intruder,
            "spiffe://cluster.local/ns/test/sa/intruder refused: not an allowed peer",
        ),
    ] {
        let out = s_client(port, Some(pair), None);
        assert!(!answered(&out), "{what}: {out}");
        let (status, body) = curl(&sidecar_https(&mesh), Some(pair));
        assert_eq!(status, 0, "{what}: {body}");
        assert!(
            logs(&mesh).contains(reason),
            "{what}: no `{reason}` in\n{}",
            logs(&mesh)
        );
    }
    assert!(
        logs(&mesh).contains("certificate expired") || logs(&mesh).contains("Expired"),
        "the log names the expiry\n{}",
        logs(&mesh)
    );

    // CA files are 0600 (the directory 0700), and no private key is in the logs.
    let dir = ca_dir(&mesh);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for file in ["ca.pem", "ca.key", "bundle.pem"] {
        let mode = fs::metadata(dir.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let key = fs::read_to_string(dir.join("ca.key")).unwrap();
    let logged = logs(&mesh);
    assert!(!logged.contains("PRIVATE KEY"), "{logged}");
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!logged.contains(line), "a CA key line is in the logs");
    }
}

#[test]
fn permissive_sidecar_serves_plaintext_and_mtls_on_one_port() {
    if !tools_present("permissive_sidecar_serves_plaintext_and_mtls_on_one_port") {
        return;
    }
    // A DENY on one mTLS identity: the sidecar authorizes on the verified peer.
    let spec = MeshSpec::route("timeout: 30s")
        .workload_field("mtls: PERMISSIVE")
        .top("identity:\n  min_tls: \"1.2\"")
        .top(
            "policies:\n  - name: not-that-one\n    action: DENY\n    rules:\n      \
             - from: [{principals: [cluster.local/ns/test/sa/denied]}]",
        );
    let mesh = Mesh::up(&spec);
    assert_gateway_serves(&mesh);
    let port = mesh.ports.sidecar;
    let ca = mesh_ca(&mesh);
    let pki = Pki::new();
    let client = pki.mint(
        &ca,
        "client",
        "cluster.local/ns/test/sa/client",
        ROOT_LIFETIME,
    );
    let denied = pki.mint(
        &ca,
        "denied",
        "cluster.local/ns/test/sa/denied",
        ROOT_LIFETIME,
    );

    let plain = format!("http://127.0.0.1:{port}{PREDICT}");
    let (status, body) = curl(&plain, None);
    assert_eq!(
        (status, compact(body.trim())),
        (200, V1_ANSWER.to_string()),
        "plaintext"
    );
    let (status, body) = curl(&sidecar_https(&mesh), Some(&client));
    assert_eq!(
        (status, compact(body.trim())),
        (200, V1_ANSWER.to_string()),
        "mTLS"
    );
    let bundle = ca_dir(&mesh).join("bundle.pem");
    let out = s_client(port, Some(&client), Some(&bundle));
    assert!(answered(&out), "mTLS with the server chain verified: {out}");
    // `min_tls: "1.2"` lets TLS 1.2 clients in.
    let out = s_client_with(port, Some(&client), Some(&bundle), &["-tls1_2"]);
    assert!(answered(&out), "TLS 1.2: {out}");
    // HTTP/1.1: over h2 an answer before the request body was read can race with the
    // stream reset that follows it (a curl error 92 instead of the 403).
    let (status, body) = curl_with(&sidecar_https(&mesh), Some(&denied), &["--http1.1"]);
    assert_eq!(status, 403, "the denied identity: {body}");
}

/// Bounded load through the gateway plus fresh mTLS handshakes to the sidecar, until
/// `duration` has passed; returns (successes, failure descriptions).
fn load(mesh: &Mesh, duration: Duration, client: &Pair, bundle: &Path) -> (usize, Vec<String>) {
    let ok = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..200_000 {
                    if start.elapsed() >= duration {
                        break;
                    }
                    match mesh.try_gateway("POST", PREDICT, Some(PREDICT_BODY.as_bytes()), &[]) {
                        Ok(r) if r.status == 200 && compact(&r.body) == V1_ANSWER => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", r.status, r.body)),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
        // Each call a new connection and handshake, the server chain verified
        // against the bundle on disk (both roots during the CA overlap).
        s.spawn(|| {
            for _ in 0..10_000 {
                if start.elapsed() >= duration {
                    break;
                }
                let out = s_client(mesh.ports.sidecar, Some(client), Some(bundle));
                if answered(&out) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("new handshake: {out}"));
                }
            }
        });
    });
    (ok.into_inner(), failures.into_inner().unwrap())
}

#[test]
fn ten_second_certificates_and_a_ca_rotation_under_load_fail_no_request() {
    if !tools_present("ten_second_certificates_and_a_ca_rotation_under_load_fail_no_request") {
        return;
    }
    // No retries: a failed handshake would be a failed request.
    let spec = MeshSpec::route("timeout: 30s, retries: {attempts: 0}")
        .workload_field("mtls: STRICT")
        .top("identity:\n  cert_ttl: 10s\n  renew_at: 0.5");
    let mesh = Mesh::up(&spec);
    let pki = Pki::new();
    let client = pki.mint(
        &mesh_ca(&mesh),
        "client",
        "cluster.local/ns/test/sa/client",
        ROOT_LIFETIME,
    );
    let bundle = ca_dir(&mesh).join("bundle.pem");

    let rotated = Arc::new(std::sync::Mutex::new(None));
    let (ok, failures) = thread::scope(|s| {
        let rotated = rotated.clone();
        let dir = ca_dir(&mesh);
        let cwd = mesh.dir.path().to_path_buf();
        s.spawn(move || {
            thread::sleep(Duration::from_secs(20));
            let args = ["ca", "rotate", "--dir"].map(String::from);
            let mut args = args.to_vec();
            args.push(dir.display().to_string());
            let (status, out, err) = run_to_end(&args, &cwd, Duration::from_secs(30));
            *rotated.lock().unwrap() = Some((status.success(), format!("{out}{err}")));
        });
        load(&mesh, Duration::from_secs(60), &client, &bundle)
    });
    let (rotate_ok, rotate_out) = rotated.lock().unwrap().clone().expect("rotation ran");
    assert!(rotate_ok, "ca rotate: {rotate_out}");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {:?}\n{}",
        failures.len(),
        ok + failures.len(),
        failures.first(),
        mesh.logs()
    );
    assert!(ok > 100, "only {ok} requests in 60 s");

    let logged = logs(&mesh);
    let renewals = logged.matches("workload certificate rotated").count();
    // Two identities (gateway, sidecar), renewed every ~5 s for over 60 s.
    assert!(renewals >= 20, "{renewals} renewals\n{logged}");
    assert!(logged.contains("signing with the new CA"), "{logged}");
    let roots = fs::read_to_string(&bundle)
        .unwrap()
        .matches("BEGIN CERTIFICATE")
        .count();
    assert_eq!(roots, 2, "the bundle trusts the old and the new root");
    // The sidecar's certificate now chains to the new root alone.
    let new_root = pki.dir.path().join("new-root.pem");
    fs::write(
        &new_root,
        fs::read_to_string(ca_dir(&mesh).join("ca.pem")).unwrap(),
    )
    .unwrap();
    let out = s_client(mesh.ports.sidecar, Some(&client), Some(&new_root));
    assert!(answered(&out), "verified against the new root alone: {out}");
}

/// Replaces a file at once (write beside it, rename over it), as kubelet and agents do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn replaced_external_certificate_files_are_served_without_restart() {
    if !tools_present("replaced_external_certificate_files_are_served_without_restart") {
        return;
    }
    let files = Pki::new();
    let dir = files.dir.path();
    let ca1 = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
    let ca2 = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
    let life = Duration::from_secs(3600);
    // As an external CA would: one certificate per identity, and the bundle.
    let write_all = |ca: &Ca| {
        for (name, principal) in [
            ("ml-tfserving", "cluster.local/ns/ml/sa/tfserving"),
            ("infermesh-gateway", GATEWAY),
        ] {
            let new = files.mint(ca, &format!("{name}-new"), principal, life);
            replace(
                &dir.join(format!("{name}.key")),
                &fs::read_to_string(&new.key).unwrap(),
            );
            replace(
                &dir.join(format!("{name}.pem")),
                &fs::read_to_string(&new.cert).unwrap(),
            );
        }
    };
    fs::write(dir.join("bundle.pem"), certs_to_pem(&[ca1.root().clone()])).unwrap();
    write_all(&ca1);
    let identity = format!(
        "identity:\n  ca: files\n  files:\n    cert: \"{d}/{{namespace}}-{{service_account}}.pem\"\n    \
         key: \"{d}/{{namespace}}-{{service_account}}.key\"\n    bundle: \"{d}/bundle.pem\"",
        d = dir.display()
    );
    let spec = MeshSpec::route("timeout: 30s")
        .workload_field("mtls: STRICT")
        .top(&identity);
    let mesh = Mesh::up(&spec);
    assert_gateway_serves(&mesh);
    let client = files.mint(&ca1, "client", "cluster.local/ns/test/sa/client", life);
    let only_ca2 = dir.join("only-ca2.pem");
    fs::write(&only_ca2, certs_to_pem(&[ca2.root().clone()])).unwrap();
    let out = s_client(mesh.ports.sidecar, Some(&client), Some(&only_ca2));
    assert!(
        !answered(&out) && out.contains("verify error"),
        "served by CA 1 first: {out}"
    );

    // The bundle first (both roots), then the certificates of CA 2.
    let both = certs_to_pem(&[ca1.root().clone(), ca2.root().clone()]);
    replace(&dir.join("bundle.pem"), &both);
    thread::sleep(Duration::from_secs(3));
    write_all(&ca2);
    mesh.wait_until(
        "the sidecar serves CA 2's certificate",
        Duration::from_secs(20),
        // `-verify_return_error`: an answer means the chain verified against CA 2.
        || {
            answered(&s_client(
                mesh.ports.sidecar,
                Some(&client),
                Some(&only_ca2),
            ))
        },
    );
    assert_gateway_serves(&mesh);
    let up = mesh.up.as_ref().unwrap();
    assert!(
        up.stderr().contains("workload certificate rotated"),
        "{}",
        up.stderr()
    );
}

/// The CA service's issuer in these tests (as a cluster's service-account issuer).
const K8S_ISSUER: &str = "https://kubernetes.default.svc";

#[test]
fn the_ca_service_signs_for_authenticated_service_accounts_only() {
    if !tools_present("the_ca_service_signs_for_authenticated_service_accounts_only") {
        return;
    }
    use infermesh_authn::testkit::{TestKey, jwks, now};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ca = d.join("ca").display().to_string();
    let (status, _, err) = run_to_end(
        &args(&["ca", "init", "--dir", &ca]),
        d,
        Duration::from_secs(30),
    );
    assert!(status.success(), "{err}");

    // Service-account tokens, as the kubelet projects them, one per identity.
    let key = TestKey::generate(jsonwebtoken::Algorithm::ES256, "sa-key");
    let token = |sub: &str| {
        key.sign(&serde_json::json!({
            "iss": K8S_ISSUER, "sub": sub, "aud": ["infermesh-ca"],
            "iat": now(), "exp": now() + 3600,
        }))
    };
    fs::create_dir(d.join("tokens")).unwrap();
    for (ns, sa) in [("ml", "tfserving"), ("infermesh", "gateway")] {
        let t = token(&format!("system:serviceaccount:{ns}:{sa}"));
        fs::write(d.join(format!("tokens/{ns}-{sa}.jwt")), t).unwrap();
    }
    let issuers = format!(
        "issuers:\n  - issuer: {K8S_ISSUER}\n    audiences: [infermesh-ca]\n    jwks: '{}'",
        jwks(&[&key])
    );
    let ca_port = common::mesh::free_port();
    fs::write(
        d.join("ca-mesh.yaml"),
        format!("{issuers}\nworkloads: []\n"),
    )
    .unwrap();
    let mut service = common::mesh::Proc::spawn(
        "ca-serve",
        &args(&[
            "ca",
            "serve",
            "--config",
            "ca-mesh.yaml",
            "--dir",
            &ca,
            "--listen",
            &format!("127.0.0.1:{ca_port}"),
        ]),
        d,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !common::mesh::port_open(ca_port) {
        assert!(
            service.exited().is_none() && Instant::now() < deadline,
            "{}",
            service.log()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // The whole mesh gets its certificates from the service, and serves over mTLS.
    let identity = format!(
        "identity:\n  ca: service\n  service:\n    address: 127.0.0.1:{ca_port}\n    \
         token_file: \"{d}/tokens/{{namespace}}-{{service_account}}.jwt\"\n    bundle: {ca}/bundle.pem",
        d = d.display()
    );
    let spec = MeshSpec::route("timeout: 30s")
        .workload_field("mtls: STRICT")
        .top(&identity);
    let mesh = Mesh::up(&spec);
    assert_gateway_serves(&mesh);
    let issued = service.stderr();
    for id in ["ns/ml/sa/tfserving", "ns/infermesh/sa/gateway"] {
        assert!(
            issued.contains(&format!("spiffe://cluster.local/{id}")),
            "{issued}"
        );
    }

    // No token, a token of another issuer, a token that is no service account's.
    let url = format!("https://127.0.0.1:{ca_port}/v1/sign");
    let post = |auth: Option<String>| {
        let mut extra = vec!["--http1.1".to_string()];
        if let Some(a) = auth {
            extra.push("-H".into());
            extra.push(format!("Authorization: Bearer {a}"));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        curl_with(&url, None, &extra)
    };
    assert_eq!(post(None).0, 401);
    let stranger = TestKey::generate(jsonwebtoken::Algorithm::ES256, "sa-key");
    let forged = stranger.sign(&serde_json::json!({
        "iss": K8S_ISSUER, "sub": "system:serviceaccount:ml:tfserving", "aud": ["infermesh-ca"],
        "iat": now(), "exp": now() + 3600,
    }));
    assert_eq!(post(Some(forged)).0, 401);
    let (status, body) = post(Some(token("alice")));
    assert_eq!(status, 403, "{body}");
    service.kill();
}
