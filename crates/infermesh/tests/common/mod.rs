//! Shared harness for the integration tests: it starts the real `infermesh model-server`
//! binary on free loopback ports, waits (bounded) until its models are AVAILABLE, talks
//! plain HTTP to it, and kills it when the guard is dropped.
//!
//! Test data: TF Serving's own test models from `../shared/testdata/tfserving` (relative to
//! the repository root; tests using them print a reason and return when it is missing, or
//! `INFERMESH_SHARED_DIR` points elsewhere) and our ONNX example models in `examples/models`.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod grpc;
pub mod mesh;

/// Upper bound for a server to start and load its models.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for one HTTP exchange.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for the version watcher to notice a change on disk (poll period 1 s).
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Name under which the 2-version TF model is served; the golden metadata file was taken
/// from a TF Serving that served it under this name.
pub const TF_TWO_VERSIONS: &str = "saved_model_half_plus_two_2_versions";
/// Our ONNX example model (`examples/models/half_plus_two`, v1: 0.5x+2, v2: 0.5x+3).
pub const ONNX_MODEL: &str = "half_plus_two";

pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `../shared/testdata/tfserving` beside the repository, if present.
pub fn shared_models() -> Option<PathBuf> {
    let shared = match std::env::var_os("INFERMESH_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("../shared"),
    };
    let dir = shared.join("testdata/tfserving");
    dir.join("saved_model_half_plus_two_cpu")
        .is_dir()
        .then_some(dir)
}

/// Returns the shared TF test model directory, or prints why the test is skipped and
/// returns from the test.
#[macro_export]
macro_rules! require_shared {
    () => {
        match common::shared_models() {
            Some(dir) => dir,
            None => {
                eprintln!(
                    "SKIPPED: ../shared/testdata/tfserving (TF Serving's test models) is not \
                     beside the repository; set INFERMESH_SHARED_DIR to run this test"
                );
                return;
            }
        }
    };
}

/// `examples/models/half_plus_two` (ONNX, versions 1 and 2).
pub fn example_model_dir() -> PathBuf {
    let dir = repo_root().join("examples/models").join(ONNX_MODEL);
    assert!(
        dir.join("1").is_dir() && dir.join("2").is_dir(),
        "example models missing: {} should hold versions 1 and 2",
        dir.display()
    );
    dir
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_infermesh"))
}

// ---------------------------------------------------------------------------------------
// Model config files (TF Serving text proto)
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Policy {
    /// TF Serving's default: the latest version only.
    Latest,
    All,
    Specific(Vec<i64>),
}

#[derive(Clone, Debug)]
pub struct ModelCfg {
    pub name: String,
    pub base_path: PathBuf,
    pub platform: Option<String>,
    pub policy: Policy,
    pub labels: Vec<(String, i64)>,
}

impl ModelCfg {
    pub fn new(name: &str, base_path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_string(),
            base_path: base_path.into(),
            platform: None,
            policy: Policy::Latest,
            labels: Vec::new(),
        }
    }

    pub fn tensorflow(name: &str, base_path: impl Into<PathBuf>) -> Self {
        Self::new(name, base_path).platform("tensorflow")
    }

    /// An ONNX model: `model_platform` is left out (the server picks the engine from the
    /// files, as `examples/models/models.config` relies on).
    pub fn onnx(name: &str, base_path: impl Into<PathBuf>) -> Self {
        Self::new(name, base_path)
    }

    pub fn platform(mut self, platform: &str) -> Self {
        self.platform = Some(platform.to_string());
        self
    }

    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn label(mut self, label: &str, version: i64) -> Self {
        self.labels.push((label.to_string(), version));
        self
    }
}

pub fn model_config_text(models: &[ModelCfg]) -> String {
    let mut out = String::from("model_config_list {\n");
    for m in models {
        out.push_str("  config {\n");
        writeln!(out, "    name: {:?}", m.name).unwrap();
        writeln!(
            out,
            "    base_path: {:?}",
            m.base_path.display().to_string()
        )
        .unwrap();
        if let Some(p) = &m.platform {
            writeln!(out, "    model_platform: {p:?}").unwrap();
        }
        match &m.policy {
            Policy::Latest => {}
            Policy::All => out.push_str("    model_version_policy { all {} }\n"),
            Policy::Specific(vs) => {
                out.push_str("    model_version_policy { specific {");
                for v in vs {
                    write!(out, " versions: {v}").unwrap();
                }
                out.push_str(" } }\n");
            }
        }
        for (label, v) in &m.labels {
            writeln!(out, "    version_labels {{ key: {label:?} value: {v} }}").unwrap();
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// The TF test models under the names the tests use.
pub fn tf_models(shared: &Path) -> Vec<ModelCfg> {
    vec![
        ModelCfg::tensorflow(
            "half_plus_two",
            shared.join("saved_model_half_plus_two_cpu"),
        ),
        ModelCfg::tensorflow(
            "half_plus_three",
            shared.join("saved_model_half_plus_three"),
        ),
        ModelCfg::tensorflow(
            TF_TWO_VERSIONS,
            shared.join("saved_model_half_plus_two_2_versions"),
        )
        .policy(Policy::All)
        .label("stable", 123)
        .label("canary", 124),
    ]
}

/// The ONNX example model, both versions, labelled.
pub fn onnx_models() -> Vec<ModelCfg> {
    vec![
        ModelCfg::onnx(ONNX_MODEL, example_model_dir())
            .policy(Policy::All)
            .label("stable", 1)
            .label("canary", 2),
    ]
}

// ---------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------

/// A running `infermesh model-server`; killed when dropped.
pub struct Server {
    child: Child,
    pub rest_port: u16,
    pub grpc_port: u16,
    log_path: PathBuf,
    agent: ureq::Agent,
    // Keeps config and log files alive as long as the server.
    _dir: Option<tempfile::TempDir>,
}

pub struct ServerBuilder {
    models: Vec<ModelCfg>,
    single: Option<(String, PathBuf)>,
    extra_args: Vec<String>,
    wait_for: Vec<(String, Vec<i64>)>,
    ports: Option<(u16, u16)>,
}

impl ServerBuilder {
    /// Serve the models of a `--model-config-file`.
    pub fn config(models: Vec<ModelCfg>) -> Self {
        Self {
            models,
            single: None,
            extra_args: Vec::new(),
            wait_for: Vec::new(),
            ports: None,
        }
    }

    /// Serve one model with `--model-name` / `--model-base-path`.
    pub fn single(name: &str, base_path: &Path) -> Self {
        Self {
            models: Vec::new(),
            single: Some((name.to_string(), base_path.to_path_buf())),
            extra_args: Vec::new(),
            wait_for: Vec::new(),
            ports: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Listen on these ports (gRPC, REST) instead of free ones picked at start, e.g. to
    /// restart a server where a mesh expects it.
    pub fn ports(mut self, grpc: u16, rest: u16) -> Self {
        self.ports = Some((grpc, rest));
        self
    }

    /// Readiness: these versions of this model must be AVAILABLE before `start` returns.
    pub fn wait_for(mut self, model: &str, versions: &[i64]) -> Self {
        self.wait_for.push((model.to_string(), versions.to_vec()));
        self
    }

    pub fn start(self) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = vec!["model-server".into()];
        if let Some((name, base)) = &self.single {
            args.extend([
                "--model-name".into(),
                name.clone(),
                "--model-base-path".into(),
                base.display().to_string(),
            ]);
        } else {
            let cfg = dir.path().join("models.config");
            fs::write(&cfg, model_config_text(&self.models)).expect("write model config");
            args.extend(["--model-config-file".into(), cfg.display().to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());

        // Free ports are found by binding port 0 and releasing it; another process may
        // grab one in between, so a server that dies during startup is retried (bounded).
        let mut last_log = String::new();
        for attempt in 1..=3 {
            let (grpc_port, rest_port) = self.ports.unwrap_or_else(free_port_pair);
            let log_path = dir.path().join(format!("server-{attempt}.log"));
            let log = fs::File::create(&log_path).expect("create log");
            let mut full_args = args.clone();
            full_args.extend([
                "--port".into(),
                grpc_port.to_string(),
                "--rest-api-port".into(),
                rest_port.to_string(),
            ]);
            let child = Command::new(binary())
                .args(&full_args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", binary().display()));
            let agent = http_agent();
            let mut server = Server {
                child,
                rest_port,
                grpc_port,
                log_path,
                agent,
                _dir: None,
            };
            match server.wait_ready(&self.wait_for) {
                Ok(()) => {
                    server._dir = Some(dir);
                    return server;
                }
                Err(ReadyError::Exited(status)) => {
                    last_log = server.log();
                    eprintln!(
                        "server exited during startup ({status}), attempt {attempt}/3, args {full_args:?}\n{last_log}"
                    );
                    // `server` drops here; its process already ended.
                }
                Err(ReadyError::Timeout(what)) => {
                    let log = server.log();
                    drop(server);
                    panic!(
                        "server not ready within {STARTUP_TIMEOUT:?} ({what}); args {full_args:?}\n--- server log ---\n{log}"
                    );
                }
            }
        }
        panic!("server failed to start 3 times; last log:\n{last_log}");
    }
}

enum ReadyError {
    Exited(String),
    Timeout(String),
}

fn free_port_pair() -> (u16, u16) {
    let p = free_ports(2);
    (p[0], p[1])
}

/// `n` distinct free loopback ports: all bound at once (so they differ), then released.
/// Another process may take one before it is used; callers retry startup (bounded).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A plain-HTTP client: keep-alive pool, non-2xx answers are not errors, every exchange
/// bounded by [`REQUEST_TIMEOUT`].
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into()
}

/// Largest response body the helpers read (a 1M-float predict answers ~10 MB).
pub const MAX_RESPONSE_BYTES: u64 = 256 << 20;

/// One HTTP exchange: `body` is sent as JSON for POST/PUT; `headers` are added.
pub fn http_call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<Resp, ureq::Error> {
    macro_rules! with_headers {
        ($req:expr) => {{
            let mut req = $req;
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req
        }};
    }
    let mut resp = match (method, body) {
        ("GET", _) => with_headers!(agent.get(url)).call()?,
        ("DELETE", _) => with_headers!(agent.delete(url)).call()?,
        ("POST", Some(b)) => with_headers!(agent.post(url))
            .header("Content-Type", "application/json")
            .send(b)?,
        ("POST", None) => with_headers!(agent.post(url)).send_empty()?,
        ("PUT", Some(b)) => with_headers!(agent.put(url))
            .header("Content-Type", "application/json")
            .send(b)?,
        ("PUT", None) => with_headers!(agent.put(url)).send_empty()?,
        _ => panic!("unsupported method {method}"),
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()?;
    Ok(Resp {
        status,
        content_type,
        headers,
        body,
    })
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    /// Every response header, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {:?}", self.body))
    }

    /// The `error` member of a `{"error": "..."}` body.
    pub fn error(&self) -> String {
        match self.json().get("error") {
            Some(Value::String(s)) => s.clone(),
            _ => panic!(
                "expected {{\"error\": ...}}, got {} {:?}",
                self.status, self.body
            ),
        }
    }
}

impl Server {
    pub fn builder(models: Vec<ModelCfg>) -> ServerBuilder {
        ServerBuilder::config(models)
    }

    pub fn rest_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.rest_port, path)
    }

    pub fn log(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Kills the process (SIGKILL) and reaps it; the guard stays usable for its log.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, wait_for: &[(String, Vec<i64>)]) -> Result<(), ReadyError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut pending = String::from("REST port not answering");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ReadyError::Exited(status.to_string()));
            }
            if Instant::now() > deadline {
                return Err(ReadyError::Timeout(pending));
            }
            match self.try_ready(wait_for) {
                Ok(()) => return Ok(()),
                Err(why) => pending = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_ready(&self, wait_for: &[(String, Vec<i64>)]) -> Result<(), String> {
        // Port open?
        let addr: SocketAddr = ([127, 0, 0, 1], self.rest_port).into();
        TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(|e| format!("REST port not answering: {e}"))?;
        if wait_for.is_empty() {
            return Ok(());
        }
        for (model, versions) in wait_for {
            let r = self
                .try_request("GET", &format!("/v1/models/{model}"), None)
                .map_err(|e| format!("status of {model}: {e}"))?;
            if r.status != 200 {
                return Err(format!("status of {model}: {} {}", r.status, r.body));
            }
            let states = version_states(&r.json());
            for v in versions {
                let state = states
                    .iter()
                    .find(|(ver, _)| ver == v)
                    .map(|(_, s)| s.as_str());
                if state != Some("AVAILABLE") {
                    return Err(format!("{model} version {v} is {state:?}: {}", r.body));
                }
            }
        }
        Ok(())
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Resp, ureq::Error> {
        http_call(&self.agent, method, &self.rest_url(path), body, &[])
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        self.try_request(method, path, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} failed: {e}\n--- server log ---\n{}",
                self.log()
            )
        })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        self.request("POST", path, Some(body.as_bytes()))
    }

    /// POST expecting 200 and a JSON body.
    pub fn post_ok(&self, path: &str, body: &str) -> Value {
        let r = self.post(path, body);
        assert_eq!(
            r.status, 200,
            "POST {path} {body} -> {} {}",
            r.status, r.body
        );
        r.json()
    }

    /// GET expecting 200 and a JSON body.
    pub fn get_ok(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path} -> {} {}", r.status, r.body);
        r.json()
    }

    /// Asserts an error answer: status, JSON content type and exact `error` message.
    pub fn expect_error(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        status: u16,
        msg: &str,
    ) {
        let r = self.request(method, path, body.map(str::as_bytes));
        assert_eq!(
            r.status, status,
            "{method} {path} {body:?}: want {status} {msg:?}, got {} {}",
            r.status, r.body
        );
        assert_json_content_type(&r);
        assert_eq!(r.error(), msg, "{method} {path} {body:?}");
    }

    /// Like `expect_error`, but the message only has to contain `part`.
    pub fn expect_error_containing(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        status: u16,
        part: &str,
    ) {
        let r = self.request(method, path, body.map(str::as_bytes));
        assert_eq!(
            r.status, status,
            "{method} {path} {body:?}: want {status} containing {part:?}, got {} {}",
            r.status, r.body
        );
        assert_json_content_type(&r);
        let err = r.error();
        assert!(
            err.contains(part),
            "{method} {path} {body:?}: error {err:?} lacks {part:?}"
        );
    }

    /// Polls `check` every 250 ms until it returns true or `timeout` passes.
    pub fn wait_until(&self, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
        poll_until(what, timeout, Duration::from_millis(250), check, || {
            format!("--- server log ---\n{}", self.log())
        });
    }

    /// Sends a request with a body of `len` bytes over a raw socket (so that a server that
    /// answers before reading the whole body is handled) and returns status and body.
    pub fn post_large(&self, path: &str, len: usize) -> (u16, String) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.rest_port).into();
        let mut s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
            self.rest_port
        );
        s.write_all(head.as_bytes()).expect("write head");
        // A valid JSON prefix followed by spaces: only the size is wrong.
        let prefix = b"{\"instances\": [1.0]}";
        let chunk = vec![b' '; 1 << 20];
        let mut sent = 0usize;
        let mut write_ok = s.write_all(prefix).is_ok();
        sent += prefix.len();
        while write_ok && sent < len {
            let n = chunk.len().min(len - sent);
            write_ok = s.write_all(&chunk[..n]).is_ok();
            sent += n;
        }
        let mut raw = Vec::new();
        // The server may reset the connection after answering; keep what was read.
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in answer to a {len}-byte body: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

impl Server {
    /// Sends SIGTERM (as `docker stop` or Kubernetes do) and waits up to `timeout` for the
    /// process to exit; `None` if it did not.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Runs the binary with `args` until it exits (killed after `timeout`); returns the exit
/// code (`None` when it had to be killed or died by a signal) and its stderr+stdout.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("out.log");
    let log = fs::File::create(&log_path).expect("log");
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, fs::read_to_string(&log_path).unwrap_or_default())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 80 lines of a log file: the end is what explains a failure.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(80);
    lines[start..].join("\n")
}

/// `(version, state)` pairs of a model status answer.
pub fn version_states(status: &Value) -> Vec<(i64, String)> {
    status["model_version_status"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let v = s["version"].as_str()?.parse().ok()?;
                    Some((v, s["state"].as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn assert_json_content_type(r: &Resp) {
    let ct = r.content_type.as_deref().unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "Content-Type {ct:?} is not application/json (status {}, body {})",
        r.status,
        r.body
    );
}

/// Compares a JSON text with the expected one after removing whitespace outside strings,
/// so that number formatting (`3.0`, `NaN`) is checked exactly as a user would see it.
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Numbers of a JSON array (nested arrays flattened), for value checks with a tolerance.
pub fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(numbers).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("expected numbers, got {other}"),
    }
}

pub fn assert_close(got: &Value, want: &[f64]) {
    let g = numbers(got);
    assert_eq!(g.len(), want.len(), "got {got}, want {want:?}");
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "got {got}, want {want:?}");
    }
}

/// Copies a directory tree (test models are small).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Reads `:tensorflow:serving:request_count` samples: (labels text, value).
pub fn request_count_samples(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with(":tensorflow:serving:request_count{"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Polls `check` every `every` until it returns true; after `timeout` panics with
/// `what` and the `context` (e.g. the processes' logs).
pub fn poll_until(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(every);
    }
}
