//! Labels, TF Serving's error messages, config reload.

use std::collections::BTreeMap;

use infermesh_tfserving::{Code, Status};

use super::*;

#[tokio::test]
async fn labels_resolve_to_their_versions() {
    let f = Fixture::new();
    for dir in ["1", "2"] {
        f.add("m", dir);
    }
    let mut config = f.config("m", VersionPolicy::All);
    config.labels = BTreeMap::from([
        ("stable".to_owned(), 1),
        ("canary".to_owned(), 2),
        ("next".to_owned(), 3),
    ]);
    let manager = f.manager(vec![config]);
    manager.poll_once().await;
    assert_eq!(
        manager
            .resolve("m", None, Some("stable"))
            .expect("stable")
            .version,
        1
    );
    assert_eq!(
        manager
            .resolve("m", None, Some("canary"))
            .expect("canary")
            .version,
        2
    );
    assert_eq!(
        manager.status("m", None, Some("stable")).expect("status")[0].version,
        1
    );
    // A label whose version is not loaded: as a request for that version.
    assert_eq!(
        manager
            .resolve("m", None, Some("next"))
            .expect_err("v3 missing")
            .message,
        "Servable not found for request: Specific(m, 3)"
    );
}

#[tokio::test]
async fn error_messages_are_tf_servings() {
    let f = Fixture::new();
    f.add("m", "1");
    let manager = f.manager(vec![f.config("m", VersionPolicy::Latest(1))]);
    manager.poll_once().await;
    let cases: Vec<(Status, Code, &str)> = vec![
        (
            manager
                .resolve("foo", None, None)
                .expect_err("unknown model"),
            Code::NotFound,
            "Servable not found for request: Latest(foo)",
        ),
        (
            manager
                .resolve("foo", Some(50), None)
                .expect_err("unknown model version"),
            Code::NotFound,
            "Servable not found for request: Specific(foo, 50)",
        ),
        (
            manager
                .resolve("m", Some(50), None)
                .expect_err("unknown version"),
            Code::NotFound,
            "Servable not found for request: Specific(m, 50)",
        ),
        (
            manager
                .resolve("m", None, Some("X"))
                .expect_err("unknown label"),
            Code::InvalidArgument,
            "Unrecognized servable version label: X",
        ),
        (
            manager
                .resolve("foo", None, Some("X"))
                .expect_err("label of unknown model"),
            Code::InvalidArgument,
            "Unrecognized servable version label: X",
        ),
        (
            manager
                .status("foo", None, None)
                .expect_err("status of unknown model"),
            Code::NotFound,
            "Could not find any versions of model foo",
        ),
        (
            manager
                .status("m", Some(50), None)
                .expect_err("status of unknown version"),
            Code::NotFound,
            "Could not find version 50 of model m",
        ),
        (
            manager
                .status("m", None, Some("X"))
                .expect_err("status of unknown label"),
            Code::InvalidArgument,
            "Unrecognized servable version label: X",
        ),
    ];
    for (status, code, message) in cases {
        assert_eq!((status.code, status.message.as_str()), (code, message));
    }
}

#[tokio::test]
async fn reload_adds_and_removes_models() {
    let f = Fixture::new();
    f.add("a", "1");
    f.add("b", "7");
    let manager = f.manager(vec![f.config("a", VersionPolicy::Latest(1))]);
    manager.poll_once().await;
    let held = manager.resolve("a", None, None).expect("a");
    manager
        .reload(vec![f.config("b", VersionPolicy::Latest(1))])
        .await;
    assert_eq!(manager.model_names(), vec!["b"]);
    assert_eq!(latest(&manager, "b"), 7);
    assert!(manager.resolve("a", None, None).is_err());
    assert!(
        held.servable
            .run("serving_default", BTreeMap::new(), &[])
            .is_ok()
    );
}
