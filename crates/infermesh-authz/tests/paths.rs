//! Path confusion: no spelling of a path reaches a model its policy denies. Every raw
//! path is normalized as the proxy does; whatever comes out (if anything) is what is
//! both authorized and forwarded, so it must never be an allowed request for `secret`.
//! Normalization is idempotent, and canonical paths parse back to the same request.

mod common;

use common::{WORKLOAD, Who, authorizer};
use infermesh_authz::{Api, AuthzRequest, ModelOp, PathError, normalize_path, normalize_rest};
use infermesh_config::EscapedSlashes;

const CORPUS: &[&str] = &[
    "/v1/models/secret:predict",
    "/v1/models/open/../secret:predict",
    "/v1/models//secret:predict",
    "//v1//models//secret:predict",
    "/v1/models/./secret:predict",
    "/../v1/models/secret:predict",
    "/v1/models/open/../../v1/models/secret:predict",
    "/v1/models/open/%2e%2e/secret:predict",
    "/v1/models/open/%2E%2E/secret:predict",
    "/v1/models/open/.%2e/secret:predict",
    "/v1/models/open%2F..%2Fsecret:predict",
    "/v1/models/open%2f..%2fsecret:predict",
    "/v1/models/open%5C..%5Csecret:predict",
    "/v1/models/%73ecret:predict",
    "/v1/models/secre%74:predict",
    "/v1/models/secret%3Apredict",
    "/V1/MODELS/secret:PREDICT",
    "/V1/Models/secret/Versions/1:Predict",
    "/v1/models/secret/versions/0001:predict",
    "/v1/models/secret/labels/stable:predict",
    "/v1/models/SECRET:predict",
    "/v1/models/secret;x=1:predict",
    "/v1/models/open;/../secret:predict",
    "/v1/models/open/..;/secret:predict",
    "/v1/models;a=b/secret:predict",
    "/v1/models/%252e%252e/secret:predict",
    "/v1/models/open/%252e%252e/secret:predict",
    "/v1/models/%2573ecret:predict",
    "\\v1\\models\\secret:predict",
    "/v1/models/open\\..\\secret:predict",
    "/v1/models/open/..\\secret:predict",
    "/v1/models/secret:predict?x=/../open",
    "/v1/models/secret%00:predict",
    "/v1/models/secret%:predict",
    "/v1/models/secret%zz:predict",
    "/v1/models/secret%C0%AF:predict",
    "/v1/models/secret\u{0}:predict",
    "/v1/models/sec ret:predict",
    "/v1/models/secret:predict#frag",
    "/v1/models/secret",
    "/v1/models/secret/metadata",
    "/v1/models/secret/./metadata",
    "/v1/models/open/../secret/metadata",
    "v1/models/secret:predict",
    "/v1/models/secret:predict/",
    "/v1/models/secret:predict/.",
];

const POLICIES: &[&str] = &[
    // A model-based DENY in front of an allow-all.
    "policies:
  - {name: no-secret, action: DENY, rules: [{to: [{models: [secret]}]}]}
  - {name: all, action: ALLOW, rules: [{}]}",
    // A path-based DENY (Istio style) in front of an allow-all.
    "policies:
  - {name: no-secret, action: DENY, rules: [{to: [{paths: ['/v1/models/secret*']}]}]}
  - {name: all, action: ALLOW, rules: [{}]}",
    // A path allowlist.
    "policies:
  - {name: open-only, action: ALLOW, rules: [{to: [{paths: ['/v1/models/open*']}]}]}",
    // A model allowlist.
    "policies:
  - {name: open-only, action: ALLOW, rules: [{to: [{models: [open]}]}]}",
];

#[test]
fn no_spelling_reaches_a_denied_model() {
    let models = "
models:
  - {name: secret, served_by: w, versions: [{version: 1, label: stable}]}
  - {name: open, served_by: w, versions: [1]}
";
    let who = Who::default();
    let mut reached = 0;
    for policies in POLICIES {
        let a = authorizer(&format!("{WORKLOAD}{models}{policies}"));
        for escaped in [
            EscapedSlashes::Reject,
            EscapedSlashes::DecodeAndMerge,
            EscapedSlashes::Keep,
        ] {
            for raw in CORPUS {
                for method in ["POST", "GET"] {
                    let Ok(n) = normalize_rest(method, raw, escaped) else {
                        continue;
                    };
                    let Some(rest) = &n.rest else {
                        continue;
                    };
                    let req = AuthzRequest {
                        method,
                        path: &n.path,
                        headers: Some(&who.headers),
                        model: Some(ModelOp {
                            name: &rest.model,
                            version: rest.version(),
                            label: rest.label(),
                            signature: Some(""),
                            api: Api::from_rest(rest.api),
                        }),
                        ..AuthzRequest::default()
                    };
                    let d = a.authorize(&req);
                    if rest.model == "secret" {
                        reached += 1;
                        assert!(
                            !d.allowed,
                            "{method} {raw:?} ({escaped:?}) → {} reached `secret` and was allowed",
                            n.path
                        );
                    }
                    // The forwarded path is a fixpoint and parses to the same request.
                    let again = normalize_rest(method, &n.path, escaped).expect("canonical");
                    assert_eq!(again.path, n.path, "{raw:?} not idempotent");
                    assert_eq!(again.rest.as_ref(), Some(rest), "{raw:?}");
                }
            }
        }
    }
    assert!(reached > 100, "only {reached} spellings reached secret");
}

#[test]
fn normalizes_as_istio_documents() {
    let n = |raw: &str| normalize_path(raw, EscapedSlashes::Reject).map(|n| n.path);
    assert_eq!(n("/a/../b").unwrap(), "/b");
    assert_eq!(n("\\da").unwrap(), "/da");
    assert_eq!(n("/a//b").unwrap(), "/a/b");
    assert_eq!(n("/some\\data").unwrap(), "/some/data");
    assert_eq!(n("/public/./data/abc/../xyz").unwrap(), "/public/data/xyz");
    assert_eq!(n("/%61%62%63/%7e%2D%5f").unwrap(), "/abc/~-_");
    assert_eq!(
        n("/a%3a%2b").unwrap(),
        "/a%3A%2B",
        "reserved stay encoded, upper hex"
    );
    assert_eq!(n("/a%252e").unwrap(), "/a%252e", "decoded once only");
    assert_eq!(n("/a;x=1/b;y").unwrap(), "/a/b");
    assert_eq!(n("/a/b/").unwrap(), "/a/b/");
    assert_eq!(n("/..").unwrap(), "/");
    assert_eq!(n("/").unwrap(), "/");
    let q = normalize_path("/a/../b?c=/../d", EscapedSlashes::Reject).unwrap();
    assert_eq!(q.path_and_query(), "/b?c=/../d");
    for bad in [
        "/a%00", "/a%2Fb", "/a%5cb", "/a%", "/a%4", "/a%g1", "/\u{e9}", "/a b", "a", "/a#b", "/%FF",
    ] {
        assert!(
            matches!(n(bad), Err(PathError::Invalid(_))),
            "{bad:?} → {:?}",
            n(bad)
        );
    }
    let keep = normalize_path("/some%2fdata/%61", EscapedSlashes::Keep).unwrap();
    assert_eq!(keep.path, "/some%2Fdata/a");
    let merge = normalize_path("/some%2fdata/%61", EscapedSlashes::DecodeAndMerge).unwrap();
    assert_eq!(merge.path, "/some/data/a");
    let merge = normalize_path("/a%2F%2F..%5Cb", EscapedSlashes::DecodeAndMerge).unwrap();
    assert_eq!(merge.path, "/b");
}

#[test]
fn tf_serving_paths_get_one_canonical_spelling() {
    let c = |m: &str, raw: &str| {
        normalize_rest(m, raw, EscapedSlashes::Reject)
            .map(|n| n.path)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        c("POST", "/V1/MODELS/m/VERSIONS/007:PREDICT").unwrap(),
        "/v1/models/m/versions/7:predict"
    );
    assert_eq!(
        c("GET", "/v1/Models/m/Labels/stable/METADATA").unwrap(),
        "/v1/models/m/labels/stable/metadata"
    );
    assert_eq!(c("GET", "/v1/models/m").unwrap(), "/v1/models/m");
    assert_eq!(
        c("POST", "/v1/models/m%3Ax:classify").unwrap(),
        "/v1/models/m%3Ax:classify"
    );
    assert_eq!(
        c("GET", "/healthz").unwrap(),
        "/healthz",
        "non-API paths pass through"
    );
    assert!(
        c("POST", "/v1/models/m")
            .unwrap_err()
            .contains("Malformed request")
    );
    assert!(c("DELETE", "/v1/models/m").is_err());
}

/// Random paths from a path-significant alphabet: never a panic, and whatever is
/// accepted is a fixpoint.
#[test]
fn random_paths_never_panic() {
    let alphabet: Vec<&str> = vec![
        "/", "\\", ".", "..", "%", "%2e", "%2F", "%5c", "%25", "%00", "%zz", "%C3%A9", "%FF", ";",
        "?", "#", "v1", "V1", "models", "m", "versions", "labels", "1", ":predict", ":", "é", " ",
    ];
    let mut seed: u64 = 0xa11ce;
    for _ in 0..20_000 {
        let mut raw = String::new();
        for _ in 0..(seed % 12) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            raw.push_str(alphabet[(seed >> 33) as usize % alphabet.len()]);
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for escaped in [
            EscapedSlashes::Reject,
            EscapedSlashes::DecodeAndMerge,
            EscapedSlashes::Keep,
        ] {
            if let Ok(n) = normalize_rest("POST", &raw, escaped) {
                let again = normalize_rest("POST", &n.path, escaped).expect("canonical");
                assert_eq!(again.path, n.path, "{raw:?}");
            }
        }
    }
}
