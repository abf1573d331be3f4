//! Tests of the version decision, including the split statistics (in-process).

use http::{HeaderMap, HeaderName, HeaderValue};
use infermesh_config::Mirror;

use super::*;
use crate::inspect::Protocol;
use crate::tests::model;

fn request(version: VersionChoice) -> ModelRequest {
    ModelRequest {
        protocol: Protocol::Rest,
        model: "m".into(),
        version,
        api: Api::Predict,
        signature: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

#[test]
fn split_90_10_holds_over_10000_requests() {
    let m = model("m", "w");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut v2 = 0;
    for _ in 0..10_000 {
        let d = decide(
            &m,
            &request(VersionChoice::Latest),
            &HeaderMap::new(),
            &mut rng,
        )
        .unwrap();
        assert!(d.rewrite);
        if d.version == Some(2) {
            v2 += 1;
        }
    }
    let share = f64::from(v2) / 100.0;
    assert!((8.0..=12.0).contains(&share), "canary share {share}%");
}

#[test]
fn own_version_or_label_wins_over_pin_and_split() {
    let m = model("m", "w");
    let mut rng = fastrand::Rng::with_seed(1);
    let pin = headers(&[("x-model-version", "2")]);
    let d = decide(&m, &request(VersionChoice::Version(1)), &pin, &mut rng).unwrap();
    assert_eq!((d.version, d.rewrite), (Some(1), false));
    let d = decide(
        &m,
        &request(VersionChoice::Label("canary".into())),
        &pin,
        &mut rng,
    )
    .unwrap();
    assert_eq!((d.version, d.rewrite), (Some(2), true));
    let Err(Failure::Route(s)) = decide(
        &m,
        &request(VersionChoice::Label("nope".into())),
        &pin,
        &mut rng,
    ) else {
        panic!("unknown label must fail")
    };
    assert_eq!(s.message, "Unrecognized servable version label: nope");
}

#[test]
fn pin_header_takes_a_version_or_a_label() {
    let m = model("m", "w");
    let mut rng = fastrand::Rng::with_seed(1);
    for (value, version) in [("2", 2), ("1", 1), ("canary", 2), ("stable", 1)] {
        let d = decide(
            &m,
            &request(VersionChoice::Latest),
            &headers(&[("x-model-version", value)]),
            &mut rng,
        )
        .unwrap();
        assert_eq!(d.version, Some(version), "{value}");
    }
    for bad in ["3", "beta", ""] {
        let r = decide(
            &m,
            &request(VersionChoice::Latest),
            &headers(&[("x-model-version", bad)]),
            &mut rng,
        );
        let Err(Failure::Route(s)) = r else {
            panic!("{bad:?} must be refused")
        };
        assert_eq!(s.code, infermesh_tfserving::Code::InvalidArgument);
        assert!(s.message.contains("x-model-version"), "{}", s.message);
    }
}

#[test]
fn sticky_header_keeps_a_caller_on_one_version() {
    let mut m = model("m", "w");
    m.route.sticky_header = Some(HeaderName::from_static("x-user"));
    m.route.split = vec![(1, 50), (2, 50)];
    let mut rng = fastrand::Rng::with_seed(3);
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..50 {
        let h = headers(&[("x-user", &format!("user-{user}"))]);
        let first = decide(&m, &request(VersionChoice::Latest), &h, &mut rng)
            .unwrap()
            .version;
        for _ in 0..20 {
            assert_eq!(
                decide(&m, &request(VersionChoice::Latest), &h, &mut rng)
                    .unwrap()
                    .version,
                first
            );
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "users spread over both versions");
}

#[test]
fn mirror_takes_its_percentage_and_skips_metadata() {
    let mut m = model("m", "w");
    m.route.mirror = Some(Mirror {
        version: 2,
        percent: 25.0,
    });
    let mut rng = fastrand::Rng::with_seed(5);
    let pin = headers(&[("x-model-version", "1")]);
    let mirrored = (0..10_000)
        .filter(|_| {
            decide(&m, &request(VersionChoice::Latest), &pin, &mut rng)
                .unwrap()
                .mirror
                == Some(2)
        })
        .count();
    assert!((2_200..=2_800).contains(&mirrored), "{mirrored}");
    let mut meta = request(VersionChoice::Latest);
    meta.api = Api::Metadata;
    assert!((0..100).all(|_| decide(&m, &meta, &pin, &mut rng).unwrap().mirror.is_none()));
}

#[test]
fn unknown_models_get_tf_serving_wording() {
    let models = std::collections::BTreeMap::new();
    let Err(Failure::Route(s)) = super::model(&models, &request(VersionChoice::Latest)) else {
        panic!("unknown model")
    };
    assert_eq!(s.message, "Servable not found for request: Latest(m)");
    let mut status = request(VersionChoice::Latest);
    status.api = Api::Status;
    let Err(Failure::Route(s)) = super::model(&models, &status) else {
        panic!("unknown model")
    };
    assert_eq!(s.message, "Could not find any versions of model m");
}

#[test]
fn split_pick_covers_the_weights() {
    let split = [(1, 90), (2, 10)];
    assert_eq!(split_pick(&split, 0), Some(1));
    assert_eq!(split_pick(&split, 89), Some(1));
    assert_eq!(split_pick(&split, 90), Some(2));
    assert_eq!(split_pick(&split, 99), Some(2));
    assert_eq!(split_pick(&[], 0), None);
}
