//! Version policies, loads and unloads, failed loads, readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use infermesh_tfserving::Code;

use super::*;

#[tokio::test]
async fn latest_one_serves_the_highest_version() {
    let f = Fixture::new();
    for dir in ["1", "3", "00000012"] {
        f.add("m", dir);
    }
    let manager = f.manager(vec![f.config("m", VersionPolicy::Latest(1))]);
    assert!(!manager.is_ready());
    manager.poll_once().await;
    assert_eq!(available(&manager, "m"), vec![12]);
    assert_eq!(states(&manager, "m"), vec![(12, State::Available)]);
    assert_eq!(latest(&manager, "m"), 12);
    let resolved = manager.resolve("m", None, None).expect("latest");
    assert!(
        resolved.servable.signatures()["dir"]
            .method_name
            .ends_with("00000012")
    );
    assert!(manager.is_ready());
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn latest_two_all_and_specific() {
    let f = Fixture::new();
    for model in ["two", "all", "some"] {
        for dir in ["1", "2", "3"] {
            f.add(model, dir);
        }
    }
    let manager = f.manager(vec![
        f.config("two", VersionPolicy::Latest(2)),
        f.config("all", VersionPolicy::All),
        f.config("some", VersionPolicy::Specific(BTreeSet::from([1, 3, 7]))),
    ]);
    manager.poll_once().await;
    assert_eq!(available(&manager, "two"), vec![2, 3]);
    assert_eq!(available(&manager, "all"), vec![1, 2, 3]);
    assert_eq!(available(&manager, "some"), vec![1, 3]);
    assert_eq!(latest(&manager, "some"), 3);
    assert_eq!(
        manager.resolve("two", Some(2), None).expect("v2").version,
        2
    );
    assert_eq!(manager.model_names(), vec!["all", "some", "two"]);
}

#[tokio::test]
async fn non_numeric_directories_and_files_are_ignored() {
    let f = Fixture::new();
    f.add("m", "1");
    for dir in ["tmp", "2.bak", "-3", ".4", "v5"] {
        f.add("m", dir);
    }
    std::fs::write(f.base("m").join("9"), b"a file, not a directory").expect("write");
    let manager = f.manager(vec![f.config("m", VersionPolicy::All)]);
    manager.poll_once().await;
    assert_eq!(states(&manager, "m"), vec![(1, State::Available)]);
}

#[tokio::test]
async fn a_new_version_loads_on_the_next_poll_and_the_old_one_unloads() {
    let f = Fixture::new();
    f.add("m", "1");
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let hook: EventHook =
        Arc::new(move |e: &ManagerEvent| seen.lock().expect("lock").push(e.clone()));
    let manager = ModelManager::with_event_hook(
        vec![f.config("m", VersionPolicy::Latest(1))],
        fake_loader(f.calls.clone()),
        hook,
    );
    manager.poll_once().await;
    assert_eq!(latest(&manager, "m"), 1);

    f.add("m", "2");
    manager.poll_once().await;
    assert_eq!(latest(&manager, "m"), 2);
    assert_eq!(
        states(&manager, "m"),
        vec![(2, State::Available), (1, State::End)]
    );
    assert_eq!(
        manager
            .resolve("m", Some(1), None)
            .expect_err("v1 gone")
            .message,
        "Servable not found for request: Specific(m, 1)"
    );

    let kinds: Vec<(String, i64)> = events
        .lock()
        .expect("lock")
        .iter()
        .map(|e| match e {
            ManagerEvent::Loaded { version, .. } => ("loaded".to_owned(), *version),
            ManagerEvent::LoadFailed { version, .. } => ("failed".to_owned(), *version),
            ManagerEvent::Unloaded { version, .. } => ("unloaded".to_owned(), *version),
        })
        .collect();
    let expected = [("loaded", 1), ("loaded", 2), ("unloaded", 1)];
    assert_eq!(kinds, expected.map(|(k, v)| (k.to_owned(), v)));

    // Nothing changed: nothing is loaded again.
    manager.poll_once().await;
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn a_removed_version_unloads_but_an_in_flight_request_keeps_it() {
    let f = Fixture::new();
    f.add("m", "1");
    f.add("m", "2");
    let manager = f.manager(vec![f.config("m", VersionPolicy::All)]);
    manager.poll_once().await;
    let in_flight = manager.resolve("m", Some(2), None).expect("v2");

    f.remove("m", "2");
    manager.poll_once().await;
    assert_eq!(available(&manager, "m"), vec![1]);
    assert_eq!(latest(&manager, "m"), 1);
    let gone = manager
        .resolve("m", Some(2), None)
        .expect_err("v2 unloaded");
    assert_eq!(gone.code, Code::NotFound);

    // The request that resolved v2 before the unload still runs on it.
    assert_eq!(in_flight.version, 2);
    assert!(
        in_flight
            .servable
            .run("serving_default", BTreeMap::new(), &[])
            .is_ok()
    );

    // Every version gone: the model serves nothing.
    f.remove("m", "1");
    manager.poll_once().await;
    assert_eq!(
        manager
            .resolve("m", None, None)
            .expect_err("nothing left")
            .message,
        "Servable not found for request: Latest(m)"
    );
}

#[tokio::test]
async fn a_failed_version_shows_its_error_while_others_serve_and_is_not_retried() {
    let f = Fixture::new();
    f.add("m", "1");
    f.add("m", "2");
    f.break_version("m", "2", "bad graph: node x has no op");
    let manager = f.manager(vec![f.config("m", VersionPolicy::All)]);
    manager.poll_once().await;
    assert_eq!(latest(&manager, "m"), 1);
    let rows = manager.status("m", None, None).expect("status");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].version, rows[0].state), (2, State::End));
    let error = rows[0].error.as_ref().expect("v2 failed");
    assert_eq!(error.message, "bad graph: node x has no op");
    assert_eq!(error.code, Code::Unknown);
    assert_eq!(
        (rows[1].version, rows[1].state, rows[1].error.clone()),
        (1, State::Available, None)
    );
    assert!(manager.is_ready());
    assert_eq!(
        manager
            .resolve("m", Some(2), None)
            .expect_err("v2 failed")
            .message,
        "Servable not found for request: Specific(m, 2)"
    );

    // Unchanged files: no retry.
    manager.poll_once().await;
    manager.poll_once().await;
    assert_eq!(f.calls(), 2);

    // Fixed files: retried once, and it serves.
    std::fs::remove_file(f.base("m").join("2").join("broken")).expect("fix");
    manager.poll_once().await;
    assert_eq!(f.calls(), 3);
    assert_eq!(latest(&manager, "m"), 2);
    assert_eq!(
        manager.status("m", Some(2), None).expect("v2")[0].error,
        None
    );
}

#[tokio::test]
async fn a_failed_new_version_keeps_the_old_one_serving() {
    let f = Fixture::new();
    f.add("m", "1");
    let manager = f.manager(vec![f.config("m", VersionPolicy::Latest(1))]);
    manager.poll_once().await;
    f.add("m", "2");
    f.break_version("m", "2", "truncated file");
    manager.poll_once().await;
    assert_eq!(latest(&manager, "m"), 1);
    assert_eq!(
        states(&manager, "m"),
        vec![(2, State::End), (1, State::Available)]
    );
}

#[tokio::test]
async fn a_model_whose_every_version_fails_is_settled_and_a_panic_is_an_error() {
    let f = Fixture::new();
    f.add("bad", "1");
    std::fs::write(f.base("bad").join("1").join("panic"), b"").expect("write");
    f.add("good", "1");
    let manager = f.manager(vec![
        f.config("bad", VersionPolicy::Latest(1)),
        f.config("good", VersionPolicy::Latest(1)),
    ]);
    manager.poll_once().await;
    assert!(manager.is_ready());
    let rows = manager.status("bad", None, None).expect("status");
    assert_eq!(rows[0].state, State::End);
    assert_eq!(
        rows[0].error.as_ref().expect("error").message,
        "the model loader panicked"
    );
    assert_eq!(latest(&manager, "good"), 1);
}

#[tokio::test]
async fn a_missing_or_empty_base_path_is_not_ready() {
    let f = Fixture::new();
    f.add("here", "1");
    std::fs::create_dir_all(f.base("empty")).expect("mkdir");
    let manager = f.manager(vec![
        f.config("here", VersionPolicy::Latest(1)),
        f.config("empty", VersionPolicy::Latest(1)),
        f.config("missing", VersionPolicy::Latest(1)),
    ]);
    manager.poll_once().await;
    assert!(!manager.is_ready());
    assert_eq!(
        manager
            .status("missing", None, None)
            .expect_err("no versions")
            .message,
        "Could not find any versions of model missing"
    );
    f.add("empty", "4");
    f.add("missing", "5");
    manager.poll_once().await;
    assert!(manager.is_ready());
    assert_eq!(latest(&manager, "missing"), 5);
}
