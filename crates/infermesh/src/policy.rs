//! `infermesh policy check`: could this caller make this request, and why. Builds the
//! same authorization request the gateway would (identities from the flags, the model
//! operation from the request line) and prints the decision, the deciding policy and
//! rule, and every other policy's reason for not matching.
//!
//! A request that names no version is decided for every version routing could send
//! it to: the split's versions, or every version when the model has a pin header (the
//! caller picks). A label is decided for the version it names. Exit 0 whatever the
//! decision (the answer is the output); 64 for an invalid config or input.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue};
use infermesh_authz::{Authorizer, AuthzRequest, CheckRequest, Decision, Explanation};
use infermesh_config::{MeshConfig, Model};

use crate::cli::CheckArgs;
use crate::error::InvalidConfig;

/// The caller, owned, as the flags describe it.
struct Caller {
    peer: Option<String>,
    principal: Option<String>,
    claims: Option<serde_json::Value>,
    audiences: Vec<String>,
    source_ip: Option<std::net::IpAddr>,
    host: Option<String>,
    port: Option<u16>,
    headers: HeaderMap,
}

pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let path = crate::mesh::locate(&args.config);
    let config = infermesh_config::load(&path)
        .map_err(|errors| InvalidConfig::error(format!("invalid mesh config:\n{errors}")))?;
    let authorizer = Authorizer::new(&config);
    let request = CheckRequest::parse(&args.request, config.authz.escaped_slashes)
        .map_err(|e| InvalidConfig::error(format!("invalid --request: {e}")))?;
    let caller = caller(&args)?;
    print!("{}", report(&config, &authorizer, &request, &caller));
    Ok(())
}

fn caller(args: &CheckArgs) -> anyhow::Result<Caller> {
    let invalid = |what: String| InvalidConfig::error(what);
    let claims = match &args.claims {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) => Some(v),
            Ok(_) => return Err(invalid("--claims must be a JSON object".into())),
            Err(e) => return Err(invalid(format!("--claims is not JSON: {e}"))),
        },
    };
    let from_claims = claims.as_ref().and_then(|c| {
        let iss = c.get("iss")?.as_str()?;
        let sub = c.get("sub")?.as_str()?;
        Some(format!("{iss}/{sub}"))
    });
    let principal = args.request_principal.clone().or(from_claims);
    // A token always has claims: at least the `iss` and `sub` of its principal.
    let claims = match (&principal, claims) {
        (None, claims) => claims,
        (Some(p), claims) => {
            let mut claims = claims.unwrap_or_else(|| serde_json::json!({}));
            if let (Some(map), Some((iss, sub))) = (claims.as_object_mut(), p.rsplit_once('/')) {
                map.entry("iss").or_insert_with(|| iss.into());
                map.entry("sub").or_insert_with(|| sub.into());
            }
            Some(claims)
        }
    };
    let audiences = match claims.as_ref().and_then(|c| c.get("aud")) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let parsed = h.split_once('=').and_then(|(k, v)| {
            let name = HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes()).ok()?;
            Some((name, HeaderValue::from_str(v).ok()?))
        });
        let Some((name, value)) = parsed else {
            return Err(invalid(format!("--header {h:?}: write NAME=VALUE")));
        };
        headers.append(name, value);
    }
    let source_ip = match &args.source_ip {
        None => None,
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| invalid(format!("--source-ip {ip:?} is not an IP address")))?,
        ),
    };
    let peer = args
        .principal
        .as_deref()
        .map(|p| p.strip_prefix("spiffe://").unwrap_or(p).to_owned());
    Ok(Caller {
        peer,
        principal,
        claims,
        audiences,
        source_ip,
        host: args.host.clone(),
        port: args.port,
        headers,
    })
}

/// The whole answer, as printed.
fn report(
    config: &MeshConfig,
    authorizer: &Authorizer,
    request: &CheckRequest,
    caller: &Caller,
) -> String {
    let mut out = String::new();
    describe(&mut out, request, caller, authorizer);
    let base = AuthzRequest {
        peer_principal: caller.peer.as_deref(),
        request_principal: caller.principal.as_deref(),
        claims: caller.claims.as_ref(),
        audiences: &caller.audiences,
        source_ip: caller.source_ip,
        host: caller.host.as_deref(),
        port: caller.port,
        headers: Some(&caller.headers),
        ..AuthzRequest::default()
    };
    let authz = request.authz(base);
    let Some(op) = authz.model else {
        let _ = writeln!(out, "not a model request: the proxy answers it 404 itself");
        explained(&mut out, &authorizer.explain(&authz));
        return out;
    };
    let Some(model) = config.models.get(op.name) else {
        let _ = writeln!(
            out,
            "model {:?} is not in the mesh: callers the policies allow get 404 / NOT_FOUND, \
             others 403 / PERMISSION_DENIED",
            op.name
        );
        explained(&mut out, &authorizer.explain(&authz));
        return out;
    };
    let status = op.api == infermesh_authz::Api::Status;
    if op.version.is_some() || op.label.is_some() || status {
        explained(&mut out, &authorizer.explain(&authz));
        return out;
    }
    let candidates = routing(&mut out, model);
    let mut summary = Vec::new();
    for (version, what) in candidates {
        let mut one = authz;
        one.model = Some(infermesh_authz::ModelOp {
            version: Some(version),
            ..op
        });
        let explanation = authorizer.explain(&one);
        let _ = writeln!(out, "\n== version {version}{what}");
        explained(&mut out, &explanation);
        summary.push(format!(
            "{} for version {version}",
            verdict(&explanation.decision)
        ));
    }
    let _ = writeln!(out, "\nsummary: {}", summary.join("; "));
    out
}

/// The request and caller as understood, so a typo shows.
fn describe(out: &mut String, request: &CheckRequest, caller: &Caller, authorizer: &Authorizer) {
    let kind = if request.grpc { "gRPC" } else { "REST" };
    let _ = writeln!(out, "request: {kind} {} {}", request.method, request.path);
    if let Some(m) = &request.model {
        let version = match (m.version, &m.label) {
            (Some(v), _) => format!("version {v}"),
            (None, Some(l)) => format!("label {l}"),
            (None, None) => "no version".into(),
        };
        let signature = match m.signature.as_deref() {
            Some("") => "serving_default (none named)".to_owned(),
            Some(s) => s.to_owned(),
            None if authorizer.uses_signatures() => {
                "unknown (REST body not given: add signature=NAME to --request; policies \
                 testing signatures fail closed)"
                    .to_owned()
            }
            None => "not read (no policy tests signatures)".to_owned(),
        };
        let _ = writeln!(
            out,
            "  model {}, {version}, api {}, signature {signature}",
            m.name,
            m.api.as_str()
        );
    }
    let none = "(none)";
    let _ = writeln!(
        out,
        "caller: peer {}, request principal {}, claims {}",
        caller.peer.as_deref().unwrap_or(none),
        caller.principal.as_deref().unwrap_or(none),
        caller
            .claims
            .as_ref()
            .map_or_else(|| none.to_owned(), |c| c.to_string()),
    );
    if caller.source_ip.is_some() || caller.host.is_some() || caller.port.is_some() {
        let _ = writeln!(
            out,
            "  source ip {}, host {}, port {}",
            caller
                .source_ip
                .map_or_else(|| none.to_owned(), |ip| ip.to_string()),
            caller.host.as_deref().unwrap_or(none),
            caller
                .port
                .map_or_else(|| none.to_owned(), |p| p.to_string()),
        );
    }
}

/// Which versions routing may send an unversioned request to, each with a note.
fn routing(out: &mut String, model: &Model) -> Vec<(i64, String)> {
    let route = &model.route;
    let total: u64 = route.split.iter().map(|(_, w)| u64::from(*w)).sum();
    let label = |v: i64| {
        let labels: Vec<&str> = model
            .labels
            .iter()
            .filter(|(_, lv)| **lv == v)
            .map(|(l, _)| l.as_str())
            .collect();
        labels.join(", ")
    };
    let weight = |v: i64| {
        route
            .split
            .iter()
            .find(|(sv, _)| *sv == v)
            .map(|(_, w)| u64::from(*w) * 100 / total.max(1))
    };
    let split: Vec<String> = route
        .split
        .iter()
        .map(|(v, _)| format!("version {v} ({}%)", weight(*v).unwrap_or(0)))
        .collect();
    let _ = writeln!(
        out,
        "routing: the request names no version; the split picks {}",
        split.join(" or ")
    );
    let versions: Vec<i64> = match &route.pin_header {
        Some(pin) => {
            let _ = writeln!(
                out,
                "  the pin header {pin} lets the caller pick any version: {:?}",
                model.versions
            );
            model.versions.clone()
        }
        None => route.split.iter().map(|(v, _)| *v).collect(),
    };
    if let Some(m) = &route.mirror {
        let _ = writeln!(
            out,
            "  mirror: {}% of inference requests are copied to version {}, only if policy \
             allows that version too",
            m.percent, m.version
        );
    }
    versions
        .into_iter()
        .map(|v| {
            let mut what = Vec::new();
            let l = label(v);
            if !l.is_empty() {
                what.push(format!("label {l}"));
            }
            match weight(v) {
                Some(w) => what.push(format!("split {w}%")),
                None => what.push("pin header only".into()),
            }
            (v, format!(" ({})", what.join("; ")))
        })
        .collect()
}

fn explained(out: &mut String, explanation: &Explanation) {
    let _ = write!(out, "{explanation}");
}

fn verdict(d: &Decision) -> &'static str {
    if d.allowed { "ALLOW" } else { "DENY" }
}
