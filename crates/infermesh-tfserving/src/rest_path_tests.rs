//! Tests for REST path parsing against TF Serving's routing rules and messages.

use super::*;

fn ok(method: &str, path: &str) -> RestRequest {
    parse_rest_path(method, path).unwrap()
}

fn err(method: &str, path: &str) -> Status {
    parse_rest_path(method, path).unwrap_err()
}

#[test]
fn api_paths() {
    assert!(is_api_path("/v1/models/foo"));
    assert!(is_api_path("/V1/anything"));
    assert!(is_api_path("/v1/"));
    assert!(!is_api_path("/v1"));
    assert!(!is_api_path("/v2/models/foo"));
    assert!(!is_api_path("/monitoring/prometheus/metrics"));
    assert!(!is_api_path("x/v1/models"));
}

#[test]
fn post_routes() {
    assert_eq!(
        ok("POST", "/v1/models/foo:predict"),
        RestRequest {
            model: "foo".into(),
            version: VersionChoice::Latest,
            api: RestApi::Predict
        }
    );
    let r = ok("POST", "/v1/models/foo/versions/50:classify");
    assert_eq!(
        (r.version, r.api),
        (VersionChoice::Version(50), RestApi::Classify)
    );
    let r = ok("POST", "/v1/models/foo/labels/canary:regress");
    assert_eq!(
        (r.version, r.api),
        (VersionChoice::Label("canary".into()), RestApi::Regress)
    );
    let r = ok("POST", "/V1/MODELS/Foo/Versions/007:PREDICT");
    assert_eq!(
        (r.model.as_str(), r.version, r.api),
        ("Foo", VersionChoice::Version(7), RestApi::Predict)
    );
}

#[test]
fn get_routes() {
    let r = ok("GET", "/v1/models/foo");
    assert_eq!((r.version, r.api), (VersionChoice::Latest, RestApi::Status));
    let r = ok("GET", "/v1/models/foo/versions/123");
    assert_eq!(
        (r.version, r.api),
        (VersionChoice::Version(123), RestApi::Status)
    );
    let r = ok("GET", "/v1/models/foo/versions/123/metadata");
    assert_eq!(
        (r.version, r.api),
        (VersionChoice::Version(123), RestApi::Metadata)
    );
    let r = ok("GET", "/v1/models/foo/labels/stable/metadata");
    assert_eq!(
        (r.version, r.api),
        (VersionChoice::Label("stable".into()), RestApi::Metadata)
    );
    let r = ok("GET", "/v1/models/foo/metadata");
    assert_eq!((r.model.as_str(), r.api), ("foo", RestApi::Metadata));
    // As with RE2, the optional name group is tried first.
    let r = ok("GET", "/v1/models/metadata");
    assert_eq!((r.model.as_str(), r.api), ("metadata", RestApi::Status));
}

#[test]
fn names_and_labels_are_url_decoded() {
    let r = ok("POST", "/v1/models/my%20model/labels/a%2Bb:predict");
    assert_eq!(r.model, "my model");
    assert_eq!(r.version, VersionChoice::Label("a+b".into()));
    let e = err("POST", "/v1/models/%ff:predict");
    assert_eq!(e.message, "Malformed request: POST /v1/models/%ff:predict");
}

#[test]
fn routing_errors() {
    let e = err("POST", "/v1/foo");
    assert_eq!(
        (e.code, e.http_status()),
        (crate::Code::InvalidArgument, 400)
    );
    assert_eq!(e.message, "Malformed request: POST /v1/foo");
    assert_eq!(
        err("GET", "/v1/models/foo:predict").message,
        "Malformed request: GET /v1/models/foo:predict"
    );
    assert_eq!(
        err("PUT", "/v1/models/foo").message,
        "Malformed request: PUT /v1/models/foo"
    );
    assert_eq!(
        err("POST", "/v1/models/foo:explain").message,
        "Malformed request: POST /v1/models/foo:explain"
    );
    assert_eq!(
        err("GET", "/v1/models").message,
        "Missing model name in request."
    );
    assert_eq!(
        err("GET", "/v1/models/versions/3").message,
        "Missing model name in request."
    );
    let e = err("GET", "/v1/models/foo/versions/99999999999999999999");
    assert_eq!(
        e.message,
        "Failed to convert version: 99999999999999999999 to numeric."
    );
    assert_eq!(e.http_status(), 400);
    let e = err(
        "POST",
        "/v1/models/foo/versions/99999999999999999999:predict",
    );
    assert_eq!(
        e.message,
        "Failed to convert version: 99999999999999999999 to numeric."
    );
    // A version and a label together never match.
    let e = err("POST", "/v1/models/foo/versions/1/labels/x:predict");
    assert_eq!(e.http_status(), 400);
    assert!(e.message.starts_with("Malformed request"));
    let e = err("GET", "/v1/models/foo/versions/1/labels/x");
    assert_eq!(e.http_status(), 400);
    // Unicode digits are not digits here.
    assert!(parse_rest_path("GET", "/v1/models/foo/versions/١٢").is_err());
}

#[test]
fn model_spec_round_trip() {
    for choice in [
        VersionChoice::Latest,
        VersionChoice::Version(3),
        VersionChoice::Label("canary".into()),
    ] {
        let spec = ModelSpec {
            name: "m".into(),
            version_choice: choice.to_model_spec_choice(),
            signature_name: String::new(),
        };
        assert_eq!(VersionChoice::from_model_spec(&spec), choice);
    }
}

#[test]
fn parse_separates_non_api_paths() {
    assert_eq!(parse("GET", "/healthz").unwrap(), None);
    assert_eq!(parse("POST", "/v2/models/m/infer").unwrap(), None);
    let r = parse("GET", "/v1/models/m/labels/stable").unwrap().unwrap();
    assert_eq!((r.version(), r.label()), (None, Some("stable")));
    let r = parse("POST", "/v1/models/m/versions/2:predict")
        .unwrap()
        .unwrap();
    assert_eq!((r.version(), r.label()), (Some(2), None));
    assert!(parse("POST", "/v1/foo").is_err());
}

/// The hand-written POST matcher agrees with the regex on every combination of
/// fragments around each decision point (case, separators, digits, empty parts).
#[test]
fn post_matcher_agrees_with_regex() {
    let prefixes = [
        "/v1/models/",
        "/V1/MODELS/",
        "/v1/Models/",
        "/v1/models",
        "/v1/model/",
        "/v2/models/",
        "v1/models/",
        "/v1/models//",
        "",
    ];
    let models = [
        "",
        "foo",
        "half_plus_two",
        "a%20b",
        "x.y",
        "m\n",
        "MoDeL",
        "/",
        ":",
    ];
    let middles = [
        "",
        "/versions/1",
        "/VERSIONS/50",
        "/versions/",
        "/versions/1a",
        "/versions/007",
        "/versions/99999999999999999999",
        "/labels/canary",
        "/LaBeLs/x%41",
        "/labels/",
        "/labels/a/b",
        "/versions/1/labels/x",
        "/metadata",
        "/",
        "//",
        "/versionsx/1",
    ];
    let apis = [
        ":predict",
        ":PREDICT",
        ":Classify",
        ":regress",
        ":predictx",
        ":",
        "",
        "predict",
        ":predict/",
        "::predict",
        ":pred",
        ":regress\n",
    ];
    let mut checked = 0;
    for p in prefixes {
        for m in models {
            for mid in middles {
                for a in apis {
                    let path = format!("{p}{m}{mid}{a}");
                    assert_eq!(
                        post_groups_ascii(&path),
                        post_groups_regex(&path),
                        "{path:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000);
    // Non-ASCII paths take the regex, with its Unicode case folding (`ſ` is an `s`).
    let r = ok("POST", "/v1/modelſ/foo/verſions/3:predict");
    assert_eq!(
        (r.model.as_str(), r.version),
        ("foo", VersionChoice::Version(3))
    );
    assert!(post_groups_regex("/v1/modelſ/foo:predict").is_some());
}

#[test]
fn api_path_fast_check_agrees_with_regex() {
    for path in [
        "/v1/",
        "/V1/",
        "/v1",
        "/v1/x\ny",
        "/v1/\n",
        "\n/v1/",
        "/v2/",
        "x/v1/",
        "",
        "/",
        "/v1/models",
        "/V1/MODELS/foo:predict",
        "/v1/é",
        "/v1\n/",
    ] {
        assert_eq!(is_api_path(path), API_PATH.is_match(path), "{path:?}");
    }
}

/// A part without `%` is taken as is; the same as percent-decoding it.
#[test]
fn decode_shortcut_agrees_with_percent_decoding() {
    let pieces = [
        "a", "Model", "%41", "%", "%zz", "%c3%a9", "é", "_-.~", "%2F", " ", "0",
    ];
    let mut parts = vec![String::new()];
    for a in pieces {
        for b in pieces {
            for c in pieces {
                parts.push(format!("{a}{b}{c}"));
            }
        }
    }
    for part in parts {
        let general = percent_decode_str(&part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| malformed_request("POST", "/p"));
        assert_eq!(decode(&part, "POST", "/p"), general, "{part:?}");
    }
}

/// The exact-match-first comparison agrees with `str::eq_ignore_ascii_case` on
/// generated pairs: equal, case-flipped, one byte changed, prefixes, non-ASCII.
#[test]
fn exact_first_comparison_agrees_with_case_folding() {
    let alphabet = ['a', 'Z', 'p', 'P', '/', ':', '1', 'ſ', 's', 'S', '\n'];
    let mut x: u32 = 0x9e37_79b9;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as usize
    };
    for _ in 0..20_000 {
        let a: String = (0..next() % 9)
            .map(|_| alphabet[next() % alphabet.len()])
            .collect();
        let b: String = match next() % 4 {
            0 => a.clone(),
            1 => a
                .chars()
                .map(|c| {
                    if next() % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect(),
            2 => a.chars().take(next() % (a.len() + 1)).collect(),
            _ => (0..next() % 9)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect(),
        };
        assert_eq!(
            eq_ignore_ascii_case(&a, &b),
            a.eq_ignore_ascii_case(&b),
            "{a:?} {b:?}"
        );
    }
}
