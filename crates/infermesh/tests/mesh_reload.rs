//! Hot reload of `mesh.yaml`, through the real binary: the file is rewritten under
//! running traffic and the split follows every reload with no failed request; an
//! invalid file is refused (logged with file:line) while the old config keeps serving;
//! SIGHUP re-reads the file and the `istio_files` it lists.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::compact;
use common::mesh::{Mesh, MeshSpec, PREDICT_BODY, V1_ANSWER, V2_ANSWER, VERSION_HEADER};

const STABLE: &str = "split: {stable: 100, canary: 0}, timeout: 30s";
const CANARY: &str = "split: {stable: 0, canary: 100}, timeout: 30s";
/// Upper bound for a rewrite to be seen (the file is polled every second).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
const REWRITES: usize = 100;
const WORKERS: usize = 3;
/// Upper bound for the whole traffic run of the rewrite test.
const TRAFFIC_LIMIT: Duration = Duration::from_secs(600);

/// Replaces the file at once: write beside it, then rename over it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    fs::write(&tmp, text).expect("write temp mesh file");
    fs::rename(&tmp, path).expect("rename over the mesh file");
}

/// The mesh file of `mesh` with `route` (embedded model server when run by `up`), plus
/// `extra` top-level YAML.
fn mesh_yaml(mesh: &Mesh, route: &str, extra: &str) -> String {
    let mut text = MeshSpec::route(route).yaml(&mesh.ports, mesh.up.is_some());
    text.push_str(extra);
    text
}

/// The stderr of every mesh process, without terminal colour codes.
fn stderr(mesh: &Mesh) -> String {
    let text = [&mesh.up, &mesh.gateway, &mesh.sidecar]
        .into_iter()
        .flatten()
        .map(|p| p.stderr())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ending with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One unversioned predict through the gateway: (status, version header, answer).
fn probe(mesh: &Mesh, agent: &ureq::Agent) -> Result<(u16, Option<String>, String), String> {
    let r = common::http_call(
        agent,
        "POST",
        &mesh.gateway_url("/v1/models/half_plus_two:predict"),
        Some(PREDICT_BODY.as_bytes()),
        &[],
    )
    .map_err(|e| format!("transport: {e}"))?;
    Ok((
        r.status,
        r.header(VERSION_HEADER).map(str::to_string),
        compact(&r.body),
    ))
}

/// A successful answer, consistent with its version header: the version.
fn served(answer: &Result<(u16, Option<String>, String), String>) -> Result<i64, String> {
    match answer {
        Ok((200, Some(v), body)) if v == "1" && body == V1_ANSWER => Ok(1),
        Ok((200, Some(v), body)) if v == "2" && body == V2_ANSWER => Ok(2),
        other => Err(format!("{other:?}")),
    }
}

/// Probes until the answer is served by `version`; panics with the logs after
/// [`RELOAD_TIMEOUT`] or on any failed answer.
fn wait_for_version(mesh: &Mesh, agent: &ureq::Agent, version: i64, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let answer = probe(mesh, agent);
        match served(&answer) {
            Ok(v) if v == version => return started.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("{what}: failed answer {e}\n{}", mesh.logs()),
        }
        assert!(
            started.elapsed() < RELOAD_TIMEOUT,
            "{what}: version {version} not served within {RELOAD_TIMEOUT:?}\n{}",
            mesh.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Probes until the gateway answers `status` (only 200 and 403 are expected).
fn wait_for_status(mesh: &Mesh, agent: &ureq::Agent, status: u16, what: &str) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let answer = probe(mesh, agent).unwrap_or_else(|e| panic!("{what}: {e}\n{}", mesh.logs()));
        if answer.0 == status {
            return;
        }
        assert!(
            matches!(answer.0, 200 | 403),
            "{what}: {answer:?}\n{}",
            mesh.logs()
        );
        assert!(
            Instant::now() < deadline,
            "{what}: no {status} within {RELOAD_TIMEOUT:?}\n{}",
            mesh.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until the processes' logs hold `needle` at least `count` times.
fn wait_for_log(mesh: &Mesh, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let log = stderr(mesh);
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {count}× {needle:?} in the logs within {RELOAD_TIMEOUT:?}\n{}",
            mesh.logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn split_follows_a_hundred_rewrites_under_traffic_without_failures() {
    let mesh = Mesh::up(&MeshSpec::route(STABLE));
    let agent = common::http_agent();
    wait_for_version(&mesh, &agent, 1, "start");

    let stop = AtomicBool::new(false);
    let requests = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let started = Instant::now();
    let mut waits = Vec::new();
    thread::scope(|s| {
        for w in 0..WORKERS {
            let (mesh, stop, requests, failures) = (&mesh, &stop, &requests, &failures);
            s.spawn(move || {
                let agent = common::http_agent();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < TRAFFIC_LIMIT {
                    let answer = probe(mesh, &agent);
                    requests.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = served(&answer) {
                        failures.lock().unwrap().push(format!("worker {w}: {e}"));
                    }
                }
            });
        }
        // Stop the workers even if an assertion below panics.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for i in 0..REWRITES {
            let (route, version) = if i % 2 == 0 { (CANARY, 2) } else { (STABLE, 1) };
            write_atomically(&mesh.config, &mesh_yaml(&mesh, route, ""));
            let what = format!("rewrite {}/{REWRITES}", i + 1);
            waits.push(wait_for_version(&mesh, &agent, version, &what));
            // Once seen, the new version serves every request.
            for _ in 0..3 {
                let answer = probe(&mesh, &agent);
                assert_eq!(
                    served(&answer),
                    Ok(version),
                    "{what}: after the reload was seen\n{}",
                    mesh.logs()
                );
            }
        }
    });

    let failures = failures.into_inner().unwrap();
    let requests = requests.into_inner();
    waits.sort();
    eprintln!(
        "{REWRITES} reloads in {:?}; {requests} concurrent requests, {} failed; \
         time to see a reload: median {:?}, max {:?}",
        started.elapsed(),
        failures.len(),
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed during reloads, first: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        mesh.logs()
    );
    assert!(requests > 0, "the workers sent nothing");
    // Every rewrite was logged as a reload, with the digest and the split change.
    let log = stderr(&mesh);
    let reloads = log.matches("mesh config reloaded").count();
    assert_eq!(reloads, REWRITES, "reload log lines\n{}", mesh.logs());
    assert!(
        log.contains("model half_plus_two: split {stable(1): 100} → {canary(2): 100}"),
        "{}",
        mesh.logs()
    );
}

#[test]
fn an_invalid_file_is_refused_and_the_old_config_keeps_serving() {
    // Gateway and sidecar as separate processes: both reload, both refuse.
    let mesh = Mesh::separate(&MeshSpec::route(STABLE));
    let agent = common::http_agent();
    wait_for_version(&mesh, &agent, 1, "start");

    let misspelt = CANARY.replace("split", "splt");
    write_atomically(&mesh.config, &mesh_yaml(&mesh, &misspelt, ""));
    let log = wait_for_log(&mesh, "mesh config reload rejected", 2);
    // The same file:line:col errors as at start, from both processes.
    let config = mesh.config.display().to_string();
    let located = log
        .lines()
        .filter(|l| l.contains("models[0].route: unknown field `splt`, did you mean `split`?"))
        .filter(|l| {
            let Some(at) = l.find(&format!("{config}:")) else {
                return false;
            };
            let rest = &l[at + config.len() + 1..];
            let mut fields = rest.splitn(3, ':');
            let numeric = |f: Option<&str>| f.is_some_and(|f| f.parse::<u32>().is_ok());
            numeric(fields.next()) && numeric(fields.next())
        })
        .count();
    assert!(
        located >= 2,
        "no file:line:col error from both processes\n{}",
        mesh.logs()
    );
    assert!(log.contains("rejected_total=1"), "{}", mesh.logs());

    // Traffic is untouched: the same answers, for a few poll periods.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            served(&probe(&mesh, &agent)),
            Ok(1),
            "with the invalid file in place\n{}",
            mesh.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // Reported once, not once per poll.
    assert_eq!(
        stderr(&mesh).matches("mesh config reload rejected").count(),
        2,
        "{}",
        mesh.logs()
    );

    // A valid file is picked up again.
    write_atomically(&mesh.config, &mesh_yaml(&mesh, CANARY, ""));
    wait_for_version(&mesh, &agent, 2, "valid file after the invalid one");
    wait_for_log(&mesh, "mesh config reloaded", 2);
}

#[test]
fn sighup_rereads_the_file_and_its_istio_files() {
    let mut mesh = Mesh::up(&MeshSpec::route(STABLE));
    let agent = common::http_agent();
    wait_for_version(&mesh, &agent, 1, "start");
    let authz = mesh.dir.path().join("authz.yaml");
    let policy = |paths: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: block, namespace: ml}}\nspec:\n  action: DENY\n  rules:\n    \
             - to:\n        - operation: {{paths: [\"{paths}\"]}}\n"
        )
    };
    write_atomically(&authz, &policy("/nothing*"));
    let with_istio = mesh_yaml(&mesh, STABLE, "\nistio_files: [authz.yaml]\n");
    write_atomically(&mesh.config, &with_istio);
    wait_for_log(&mesh, "policies (0 → 1)", 1);
    assert_eq!(served(&probe(&mesh, &agent)), Ok(1), "{}", mesh.logs());

    // Only mesh.yaml is polled: a changed istio file waits for SIGHUP.
    write_atomically(&authz, &policy("/v1/models/half_plus_two*"));
    thread::sleep(Duration::from_secs(3));
    assert_eq!(served(&probe(&mesh, &agent)), Ok(1), "{}", mesh.logs());

    let up = mesh.up.as_ref().expect("infermesh up");
    up.signal("HUP");
    wait_for_status(&mesh, &agent, 403, "the DENY policy after SIGHUP");
    let log = wait_for_log(&mesh, "SIGHUP: re-reading the mesh config", 1);
    assert!(log.contains("policies (1 → 1)"), "{}", mesh.logs());
    assert!(log.contains("trigger=\"SIGHUP\""), "{}", mesh.logs());

    // And back after the next SIGHUP; a SIGHUP does not stop the process.
    write_atomically(&authz, &policy("/nothing*"));
    up.signal("HUP");
    wait_for_status(&mesh, &agent, 200, "the harmless policy after SIGHUP");
    wait_for_version(&mesh, &agent, 1, "after the second SIGHUP");
    wait_for_log(&mesh, "SIGHUP: re-reading the mesh config", 2);
    assert!(
        mesh.up.as_mut().unwrap().exited().is_none(),
        "{}",
        mesh.logs()
    );
}

/// `POST {admin}/reload`: (status, body).
fn admin_reload(mesh: &Mesh, agent: &ureq::Agent) -> (u16, String) {
    let url = format!("http://127.0.0.1:{}/reload", mesh.ports.admin);
    let mut r = agent.post(&url).send_empty().expect("POST /reload");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

#[test]
fn admin_post_reload_applies_a_valid_file_and_reports_an_invalid_one() {
    let mesh = Mesh::up(&MeshSpec::route(STABLE));
    let agent = common::http_agent();
    wait_for_version(&mesh, &agent, 1, "start");

    // Invalid: 422 with the file:line:col error; the old config keeps serving.
    let misspelt = CANARY.replace("split", "splt");
    write_atomically(&mesh.config, &mesh_yaml(&mesh, &misspelt, ""));
    let (status, body) = admin_reload(&mesh, &agent);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("the previous config keeps serving"), "{body}");
    assert!(
        body.contains("models[0].route: unknown field `splt`, did you mean `split`?"),
        "{body}"
    );
    assert!(
        body.contains(&format!("{}:", mesh.config.display())),
        "{body}"
    );
    assert_eq!(served(&probe(&mesh, &agent)), Ok(1));

    // Valid: 200; once it answers, the new split serves (the poller may have applied
    // the file a moment earlier: then the answer says so, and traffic agrees too).
    write_atomically(&mesh.config, &mesh_yaml(&mesh, CANARY, ""));
    let (status, body) = admin_reload(&mesh, &agent);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("reloaded") || body.starts_with("unchanged"),
        "{body}"
    );
    for _ in 0..20 {
        assert_eq!(
            served(&probe(&mesh, &agent)),
            Ok(2),
            "after POST /reload: {body}"
        );
    }

    // Both outcomes are counted on /metrics.
    let url = format!("http://127.0.0.1:{}/metrics", mesh.ports.admin);
    let metrics = agent
        .get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let value = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| {
                panic!("{name} missing:\n{metrics}");
            });
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        value("infermesh_config_reloads_rejected_total ") >= 1.0,
        "{metrics}"
    );
    assert!(
        value("infermesh_config_reloads_applied_total ") >= 1.0,
        "{metrics}"
    );
    // GET is not a reload.
    let get = agent
        .get(format!("http://127.0.0.1:{}/reload", mesh.ports.admin))
        .call();
    assert_eq!(get.unwrap().status().as_u16(), 405);
}
