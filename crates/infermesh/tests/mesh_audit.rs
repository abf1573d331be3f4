//! The audit trail through the real binary: strict mode survives `kill -9` of the
//! gateway under load (every request that got an answer has its decision record, and
//! the trail verifies); a rollout (a split change in mesh.yaml under traffic) is one
//! `config` record with the before and after, shown by `infermesh audit rollouts`.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::mesh::{Mesh, MeshSpec, PREDICT_BODY, Proc, port_open, run_to_end};
use serde_json::Value;

/// Kill/restart cycles of the crash test.
const ROUNDS: usize = 3;
const WORKERS: usize = 8;
/// Traffic before each kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);
/// Upper bound on requests per worker (the test is bounded whatever happens).
const MAX_PER_WORKER: usize = 5000;
const WAIT: Duration = Duration::from_secs(30);

/// Every record of the trail in `dir` (its `audit-*.jsonl` files, in order).
fn read_trail(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
    });
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// `infermesh audit verify DIR --public-key DIR/audit.pub` must pass.
fn assert_verifies(mesh: &Mesh, trail: &Path) {
    let args: Vec<String> = vec![
        "audit".into(),
        "verify".into(),
        trail.display().to_string(),
        "--public-key".into(),
        trail.join("audit.pub").display().to_string(),
    ];
    let (status, out, err) = run_to_end(&args, mesh.dir.path(), WAIT);
    assert!(
        status.success() && out.starts_with("OK:"),
        "audit verify failed: {status}\n{out}\n{err}"
    );
}

/// Waits until the gateway answers a model status request.
fn wait_gateway(mesh: &Mesh) {
    let deadline = Instant::now() + WAIT;
    loop {
        if port_open(mesh.ports.gateway)
            && mesh
                .try_gateway("GET", "/v1/models/half_plus_two/versions/1", None, &[])
                .is_ok_and(|r| r.status == 200)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gateway not back\n{}",
            mesh.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn strict_trail_keeps_every_answered_request_across_kill_9() {
    let spec = MeshSpec::route("split: {stable: 100}, timeout: 10s")
        .top("audit: {dir: audit, durability: strict, checkpoint: {every: 200, interval: 1s}}");
    let mut mesh = Mesh::separate(&spec);
    let trail = mesh.dir.path().join("audit");
    let stop = AtomicBool::new(false);
    let answered = Mutex::new(Vec::<String>::new());
    let next_id = AtomicUsize::new(0);
    let url = mesh.gateway_url("/v1/models/half_plus_two:predict");
    thread::scope(|s| {
        for _ in 0..WORKERS {
            let (stop, answered, next_id, url) = (&stop, &answered, &next_id, &url);
            s.spawn(move || {
                let agent = common::http_agent();
                for _ in 0..MAX_PER_WORKER {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("crash-{}", next_id.fetch_add(1, Ordering::Relaxed));
                    let r = common::http_call(
                        &agent,
                        "POST",
                        url,
                        Some(PREDICT_BODY.as_bytes()),
                        &[("x-request-id", &id)],
                    );
                    match r {
                        Ok(r) if r.status == 200 => answered.lock().unwrap().push(id),
                        _ => thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        let config = mesh.config.display().to_string();
        for round in 1..=ROUNDS {
            thread::sleep(LOAD_BEFORE_KILL);
            mesh.gateway.as_mut().expect("gateway").kill(); // SIGKILL
            let args = ["gateway".to_string(), "--config".into(), config.clone()];
            let name = format!("gateway-{round}");
            mesh.gateway = Some(Proc::spawn(&name, &args, mesh.dir.path()));
            wait_gateway(&mesh);
        }
        thread::sleep(LOAD_BEFORE_KILL);
    });
    let gateway = mesh.gateway.as_mut().expect("gateway");
    gateway.signal("TERM");
    assert!(gateway.wait_exit(WAIT).is_some(), "gateway did not stop");

    let answered = answered.into_inner().unwrap();
    assert!(
        answered.len() >= 100,
        "too little traffic: {}",
        answered.len()
    );
    let records = read_trail(&trail);
    let recorded: HashSet<&str> = of_kind(&records, "decision")
        .iter()
        .filter(|r| r["decision"] == "allow" && r["role"] == "gateway")
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !recorded.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no decision record, e.g. {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    // Each restart after a kill found no final checkpoint and said so.
    assert_eq!(
        of_kind(&records, "recovery").len(),
        ROUNDS,
        "{}",
        mesh.logs()
    );
    assert_eq!(of_kind(&records, "start").len(), ROUNDS + 1);
    assert_verifies(&mesh, &trail);
    // `audit query` finds an answered request by its id: one gateway decision.
    let id = &answered[answered.len() / 2];
    let args: Vec<String> = [
        "audit",
        "query",
        "--request-id",
        id,
        "--kind",
        "decision",
        "audit",
    ]
    .map(String::from)
    .to_vec();
    let (status, out, err) = run_to_end(&args, mesh.dir.path(), WAIT);
    assert!(status.success(), "{out}\n{err}");
    let found: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{out}");
    assert_eq!(found[0]["request_id"], id.as_str());
    assert_eq!(found[0]["decision"], "allow");
    // The sidecar keeps its own trail, and it verifies too (it is still running).
    let sidecar_trail = trail.join("sidecar-tfserving-a");
    assert!(!of_kind(&read_trail(&sidecar_trail), "decision").is_empty());
}

#[test]
fn a_split_change_under_traffic_is_one_config_record_shown_by_rollouts() {
    let audit = "audit: {dir: audit, flush_interval: 100ms}";
    let before = MeshSpec::route("split: {stable: 90, canary: 10}, timeout: 10s").top(audit);
    let after = MeshSpec::route("split: {stable: 50, canary: 50}, timeout: 10s").top(audit);
    let mut mesh = Mesh::up(&before);
    let trail = mesh.dir.path().join("audit");
    let stop = AtomicBool::new(false);
    let served = AtomicUsize::new(0);
    let url = mesh.gateway_url("/v1/models/half_plus_two:predict");
    thread::scope(|s| {
        for _ in 0..2 {
            let (stop, served, url) = (&stop, &served, &url);
            s.spawn(move || {
                let agent = common::http_agent();
                for _ in 0..MAX_PER_WORKER {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r =
                        common::http_call(&agent, "POST", url, Some(PREDICT_BODY.as_bytes()), &[]);
                    if r.is_ok_and(|r| r.status == 200) {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            });
        }
        thread::sleep(Duration::from_millis(500));
        let tmp = mesh.config.with_extension("yaml.tmp");
        fs::write(&tmp, after.yaml(&mesh.ports, true)).unwrap();
        fs::rename(&tmp, &mesh.config).unwrap();
        let deadline = Instant::now() + WAIT;
        while of_kind(&read_trail(&trail), "config").is_empty() {
            assert!(
                Instant::now() < deadline,
                "no config record\n{}",
                mesh.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    let up = mesh.up.as_mut().expect("up");
    up.signal("TERM");
    assert!(up.wait_exit(WAIT).is_some(), "up did not stop");
    assert!(served.load(Ordering::Relaxed) > 10, "{}", mesh.logs());

    let records = read_trail(&trail);
    let changes = of_kind(&records, "config");
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let change = changes[0];
    assert_eq!(change["trigger"], "file changed");
    assert_eq!(change["sha256"].as_str().map(str::len), Some(64));
    let models = change["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "{models:?}");
    assert_eq!(models[0]["model"], "half_plus_two");
    assert_eq!(
        models[0]["before"]["split"],
        serde_json::json!({"1": 90, "2": 10})
    );
    assert_eq!(
        models[0]["after"]["split"],
        serde_json::json!({"1": 50, "2": 50})
    );
    assert!(of_kind(&records, "decision").len() > 10);

    let args: Vec<String> = ["audit", "rollouts", "--model", "half_plus_two", "audit"]
        .map(String::from)
        .to_vec();
    let (status, out, err) = run_to_end(&args, mesh.dir.path(), WAIT);
    assert!(status.success(), "{out}\n{err}");
    let change_line = out
        .lines()
        .position(|l| l.contains(" changed by file changed"))
        .unwrap_or_else(|| panic!("no change in the timeline:\n{out}"));
    let detail = out.lines().nth(change_line + 1).unwrap_or_default();
    assert!(
        detail.contains("stable(1)=90 canary(2)=10")
            && detail.contains("→ versions [1, 2], split stable(1)=50 canary(2)=50"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.contains("  start   up ")), "{out}");
    assert_verifies(&mesh, &trail);

    // One changed byte in a copy: verify fails, exits 1 and names the record.
    let copy = mesh.dir.path().join("tampered");
    fs::create_dir(&copy).unwrap();
    for entry in fs::read_dir(&trail).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
    let segment = fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let text = fs::read_to_string(&segment).unwrap();
    let tampered = text.replacen("\"decision\":\"allow\"", "\"decision\":\"allox\"", 1);
    let line = text
        .lines()
        .position(|l| l.contains("\"decision\":\"allow\""))
        .unwrap()
        + 1;
    fs::write(&segment, tampered).unwrap();
    let args: Vec<String> = vec![
        "audit".into(),
        "verify".into(),
        copy.display().to_string(),
        "--public-key".into(),
        trail.join("audit.pub").display().to_string(),
    ];
    let (status, out, _) = run_to_end(&args, mesh.dir.path(), WAIT);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAILED (Changed)")
            && out.contains(&format!(".jsonl:{line}: record seq {line} was changed")),
        "{out}"
    );
}
