//! TF Serving gRPC through the mesh (gateway → sidecar → model server, the real binary)
//! with a Rust client generated from the project's protos (tonic): Predict by version,
//! label and unversioned (rewritten by the gateway: the answer's `model_spec.version`
//! is the `x-infermesh-model-version` it reports), GetModelStatus, GetModelMetadata and
//! errors answer exactly as the model server does directly; the pin header works as
//! gRPC metadata; mirrored gRPC copies reach the mirror version.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::grpc::{
    answer_version, clients, expected_output, floats, header, metadata_request, output,
    predict_request, spec, spec_of, status_request, with_header,
};
use common::mesh::{ERROR_HEADER, Mesh, MeshSpec, VERSION_HEADER};
use tonic::{Code, Response, Status};

/// The version the gateway reports in `x-infermesh-model-version`.
fn reported<T>(what: &str, r: &Response<T>) -> i64 {
    header(r.metadata(), VERSION_HEADER)
        .unwrap_or_else(|| panic!("{what}: no {VERSION_HEADER} in {:?}", r.metadata()))
        .parse()
        .unwrap()
}

/// Two failures are the same to a client: code and message.
fn assert_same_status(what: &str, via: &Status, direct: &Status) {
    assert_eq!(
        (via.code(), via.message()),
        (direct.code(), direct.message()),
        "{what}: through the mesh vs direct"
    );
}

#[tokio::test]
async fn grpc_through_gateway_equals_direct() {
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 50, canary: 50}, pin_header: x-model-version, timeout: 20s",
    ));
    let mut gw = clients(mesh.grpc_endpoint()).await;
    let mut direct = clients(mesh.direct_grpc_endpoint()).await;

    // Predict naming a version or a label: the same answer, the version reported.
    for (version, label, want) in [
        (Some(1), None, 1),
        (Some(2), None, 2),
        (None, Some("stable"), 1),
        (None, Some("canary"), 2),
    ] {
        let what = format!("Predict version {version:?} label {label:?}");
        let req = predict_request(spec(version, label));
        let via = gw.predict.predict(req.clone()).await.unwrap_or_else(|e| {
            panic!("{what}: {e:?}\n{}", mesh.logs());
        });
        let d = direct.predict.predict(req).await.unwrap();
        assert_eq!(reported(&what, &via), want, "{what}");
        assert_eq!(header(via.metadata(), ERROR_HEADER), None, "{what}");
        assert_eq!(via.get_ref(), d.get_ref(), "{what}");
        assert_eq!(output(via.get_ref()), expected_output(want), "{what}");
    }

    // Unversioned Predict: the gateway picks a version from the split and rewrites the
    // request's ModelSpec, so the answer names the version it reports.
    let mut seen = BTreeSet::new();
    for i in 0..200 {
        let via = gw
            .predict
            .predict(predict_request(spec(None, None)))
            .await
            .unwrap_or_else(|e| panic!("unversioned Predict {i}: {e:?}\n{}", mesh.logs()));
        let v = reported("unversioned Predict", &via);
        assert_eq!(
            answer_version(via.get_ref()),
            Some(v),
            "unversioned Predict {i}"
        );
        let d = direct
            .predict
            .predict(predict_request(spec(Some(v), None)))
            .await
            .unwrap();
        assert_eq!(via.get_ref(), d.get_ref(), "unversioned Predict {i} (v{v})");
        seen.insert(v);
        if seen.len() == 2 && i >= 20 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "the 50/50 split reached {seen:?}");

    // The pin header as gRPC metadata.
    for (pin, want) in [("2", 2), ("canary", 2), ("stable", 1), ("1", 1)] {
        for _ in 0..3 {
            let req = with_header(
                predict_request(spec(None, None)),
                Some(("x-model-version", pin)),
            );
            let via = gw.predict.predict(req).await.unwrap();
            assert_eq!(reported("pinned", &via), want, "pin {pin}");
            assert_eq!(answer_version(via.get_ref()), Some(want), "pin {pin}");
            assert_eq!(output(via.get_ref()), expected_output(want), "pin {pin}");
        }
    }
    // The request's own version wins over the pin.
    let req = with_header(
        predict_request(spec(Some(1), None)),
        Some(("x-model-version", "canary")),
    );
    let via = gw.predict.predict(req).await.unwrap();
    assert_eq!(answer_version(via.get_ref()), Some(1));
    // A pin naming nothing of the model: INVALID_ARGUMENT from the proxy.
    let req = with_header(
        predict_request(spec(None, None)),
        Some(("x-model-version", "9")),
    );
    let e = gw.predict.predict(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(header(e.metadata(), ERROR_HEADER), Some("route"), "{e:?}");

    // GetModelStatus: unversioned lists every version (not routed), or one version.
    for (version, label) in [(None, None), (Some(1), None), (None, Some("canary"))] {
        let what = format!("GetModelStatus version {version:?} label {label:?}");
        let req = status_request(spec(version, label));
        let via = gw
            .model
            .get_model_status(req.clone())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let d = direct.model.get_model_status(req).await.unwrap();
        assert_eq!(via.get_ref(), d.get_ref(), "{what}");
        let n = via.get_ref().model_version_status.len();
        assert_eq!(
            n,
            if version.is_none() && label.is_none() {
                2
            } else {
                1
            },
            "{what}"
        );
    }

    // GetModelMetadata by version, label, and unversioned (routed by the split).
    for (version, label) in [(Some(2), None), (None, Some("stable"))] {
        let what = format!("GetModelMetadata version {version:?} label {label:?}");
        let req = metadata_request(spec(version, label));
        let via = gw
            .predict
            .get_model_metadata(req.clone())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let d = direct.predict.get_model_metadata(req).await.unwrap();
        assert_eq!(via.get_ref(), d.get_ref(), "{what}");
        let any = &via.get_ref().metadata["signature_def"];
        assert_eq!(
            any.type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap",
            "{what}"
        );
    }
    for _ in 0..4 {
        let via = gw
            .predict
            .get_model_metadata(metadata_request(spec(None, None)))
            .await
            .unwrap();
        let v = reported("unversioned GetModelMetadata", &via);
        let d = direct
            .predict
            .get_model_metadata(metadata_request(spec(Some(v), None)))
            .await
            .unwrap();
        assert_eq!(
            via.get_ref(),
            d.get_ref(),
            "unversioned GetModelMetadata (v{v})"
        );
    }

    // Errors. The proxy answers for models and labels it does not know, in TF Serving's
    // words; the model server's own errors pass through.
    let nope = spec_of("nope", None, None);
    let via = gw
        .predict
        .predict(predict_request(nope.clone()))
        .await
        .unwrap_err();
    let d = direct
        .predict
        .predict(predict_request(nope.clone()))
        .await
        .unwrap_err();
    assert_eq!(via.code(), Code::NotFound, "{via:?}");
    assert_same_status("Predict of an unknown model", &via, &d);
    assert_eq!(header(via.metadata(), ERROR_HEADER), Some("route"));
    let via = gw
        .model
        .get_model_status(status_request(nope.clone()))
        .await
        .unwrap_err();
    let d = direct
        .model
        .get_model_status(status_request(nope.clone()))
        .await
        .unwrap_err();
    assert_eq!(via.code(), Code::NotFound, "{via:?}");
    assert_same_status("GetModelStatus of an unknown model", &via, &d);
    let via = gw
        .predict
        .get_model_metadata(metadata_request(nope.clone()))
        .await
        .unwrap_err();
    let d = direct
        .predict
        .get_model_metadata(metadata_request(nope))
        .await
        .unwrap_err();
    assert_eq!(via.code(), Code::NotFound, "{via:?}");
    assert_same_status("GetModelMetadata of an unknown model", &via, &d);

    // An unknown label: the gateway knows the model's labels.
    let req = predict_request(spec(None, Some("nope")));
    let via = gw.predict.predict(req.clone()).await.unwrap_err();
    let d = direct.predict.predict(req).await.unwrap_err();
    assert_same_status("Predict of an unknown label", &via, &d);
    assert_eq!(header(via.metadata(), ERROR_HEADER), Some("route"));

    // Passed through: an unknown version, and a bad input name.
    let req = predict_request(spec(Some(7), None));
    let via = gw.predict.predict(req.clone()).await.unwrap_err();
    let d = direct.predict.predict(req).await.unwrap_err();
    assert_eq!(via.code(), Code::NotFound, "{via:?}");
    assert_same_status("Predict of version 7", &via, &d);
    assert_eq!(header(via.metadata(), ERROR_HEADER), None, "{via:?}");
    let mut req = predict_request(spec(Some(1), None));
    req.inputs = HashMap::from([("wrong".to_string(), floats(&[1.0]))]);
    let via = gw.predict.predict(req.clone()).await.unwrap_err();
    let d = direct.predict.predict(req).await.unwrap_err();
    assert_eq!(via.code(), Code::InvalidArgument, "{via:?}");
    assert_same_status("Predict with a wrong input name", &via, &d);
    assert_eq!(header(via.metadata(), ERROR_HEADER), None, "{via:?}");
}

#[tokio::test]
async fn grpc_mirror_copies_reach_the_canary() {
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 100, canary: 0}, mirror: {to: canary, percent: 100}, timeout: 20s",
    ));
    let mut gw = clients(mesh.grpc_endpoint()).await;
    let n = 50;
    let (b1, b2) = mesh.request_counts();
    for i in 0..n {
        let via = gw
            .predict
            .predict(predict_request(spec(None, None)))
            .await
            .unwrap_or_else(|e| panic!("Predict {i}: {e:?}\n{}", mesh.logs()));
        assert_eq!(reported("Predict", &via), 1, "Predict {i}");
        assert_eq!(answer_version(via.get_ref()), Some(1), "Predict {i}");
        assert_eq!(output(via.get_ref()), expected_output(1), "Predict {i}");
    }
    let (v1, v2) = mesh.settled_request_counts(Duration::from_secs(30));
    assert_eq!(
        (v1 - b1, v2 - b2),
        (f64::from(n), f64::from(n)),
        "request_count growth of (v1, v2) after {n} gRPC predicts with a 100% mirror\n{}",
        mesh.logs()
    );
}

#[tokio::test]
async fn grpc_ten_megabyte_predict_streams_through() {
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 50, canary: 50}, timeout: 120s",
    ));
    let mut gw = clients(mesh.grpc_endpoint()).await;
    let mut direct = clients(mesh.direct_grpc_endpoint()).await;
    // 2.5M floats: a 10 MB message.
    let values: Vec<f32> = (0..2_500_000u32)
        .map(|i| (i % 100_000) as f32 * 0.25)
        .collect();
    let big = |spec| common::grpc::predict_of(spec, &values);

    // Unversioned: the gateway rewrites the ModelSpec at the front and streams the rest.
    let via = gw
        .predict
        .predict(big(spec(None, None)))
        .await
        .unwrap_or_else(|e| panic!("10 MB unversioned Predict: {e:?}\n{}", mesh.logs()));
    let v = reported("10 MB unversioned Predict", &via);
    assert_eq!(answer_version(via.get_ref()), Some(v));
    let d = direct
        .predict
        .predict(big(spec(Some(v), None)))
        .await
        .unwrap();
    assert_eq!(output(via.get_ref()).len(), values.len());
    assert!(
        via.get_ref() == d.get_ref(),
        "10 MB unversioned Predict (v{v}) differs from direct"
    );

    // By label: rewritten to the version too.
    let via = gw
        .predict
        .predict(big(spec(None, Some("canary"))))
        .await
        .unwrap_or_else(|e| panic!("10 MB Predict by label: {e:?}\n{}", mesh.logs()));
    let d = direct
        .predict
        .predict(big(spec(Some(2), None)))
        .await
        .unwrap();
    assert_eq!(reported("10 MB Predict by label", &via), 2);
    assert!(
        via.get_ref() == d.get_ref(),
        "10 MB Predict by label differs from direct"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grpc_streams_on_one_connection() {
    // 64 Predicts in flight at once on one HTTP/2 connection to the gateway, each with
    // its own input and, half of them, its own version: every answer is its own.
    let mesh = Mesh::up(&MeshSpec::route(
        "split: {stable: 50, canary: 50}, timeout: 60s",
    ));
    let gw = clients(mesh.grpc_endpoint()).await;
    let calls = (0..64u16).map(|i| {
        let mut client = gw.predict.clone();
        async move {
            let x = f32::from(i);
            let version = match i % 4 {
                0 => Some(1),
                1 => Some(2),
                _ => None,
            };
            let r = client
                .predict(common::grpc::predict_of(spec(version, None), &[x, x + 0.5]))
                .await
                .map_err(|e| format!("call {i}: {e:?}"))?;
            let v = reported("concurrent Predict", &r);
            if version.is_some_and(|want| want != v) {
                return Err(format!("call {i}: asked version {version:?}, served {v}"));
            }
            let offset = if v == 1 { 2.0 } else { 3.0 };
            let want = vec![0.5 * x + offset, 0.5 * (x + 0.5) + offset];
            if output(r.get_ref()) != want || answer_version(r.get_ref()) != Some(v) {
                return Err(format!(
                    "call {i} (v{v}): got {:?}, want {want:?}",
                    r.get_ref()
                ));
            }
            Ok::<i64, String>(v)
        }
    });
    let results = spawn_all(calls).await;
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{}", mesh.logs());
}

/// Runs futures concurrently on this task (no extra dependency for `join_all`).
async fn spawn_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
