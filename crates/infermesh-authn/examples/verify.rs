//! Verifies bearer tokens with the infermesh Authenticator, one per stdin line,
//! printing one JSON decision per line (used by the interop tests):
//!
//! ```text
//! cargo run -p infermesh-authn --example verify -- --issuer URL \
//!     (--discovery | --jwks-uri URL | --jwks-file PATH) [--aud AUD]... [--min-refresh SECS]
//! ```
//!
//! Input `-` means "no token". Output: `{"status":200,"principal":..,"claims":..}`,
//! `{"status":401,"error":"<kind>","reason":..}`, or `{"status":200,"principal":null}`.

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use infermesh_authn::Authenticator;
use infermesh_config::{Issuer, JwksSource};
use serde_json::json;

fn usage(msg: &str) -> ! {
    eprintln!("verify: {msg}");
    eprintln!(
        "usage: verify --issuer URL (--discovery | --jwks-uri URL | --jwks-file PATH) [--aud AUD]... [--min-refresh SECS]"
    );
    std::process::exit(64)
}

fn parse_args() -> Issuer {
    let mut issuer = None;
    let mut jwks = None;
    let mut audiences = Vec::new();
    let mut min_refresh = Duration::from_secs(1);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--issuer" => issuer = Some(value()),
            "--discovery" => jwks = Some(JwksSource::Discovery),
            "--jwks-uri" => jwks = Some(JwksSource::Uri(value())),
            "--jwks-file" => {
                let path = value();
                let doc = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| usage(&format!("{path}: {e}")));
                jwks = Some(JwksSource::Inline(doc));
            }
            "--aud" => audiences.push(value()),
            "--min-refresh" => {
                let secs: u64 = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--min-refresh takes whole seconds"));
                min_refresh = Duration::from_secs(secs);
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    Issuer {
        issuer: issuer.unwrap_or_else(|| usage("--issuer is required")),
        jwks: jwks.unwrap_or_else(|| usage("a key source is required")),
        audiences,
        from_headers: vec![],
        forward_claims: vec![],
        clock_skew: Duration::from_secs(60),
        refresh_interval: Duration::from_secs(600),
        min_refresh_interval: min_refresh,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Logs (key fetches, refusals) to stderr; RUST_LOG overrides the level.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "infermesh_authn=info".into()),
        )
        .init();
    let auth = Authenticator::new(&[parse_args()]);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let token = line.trim();
        let mut headers = HeaderMap::new();
        if token != "-" {
            match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(v) => {
                    headers.insert(http::header::AUTHORIZATION, v);
                }
                Err(_) => {
                    let out = json!({"status": 401, "error": "malformed", "reason": "not a header value"});
                    let _ = writeln!(stdout, "{out}");
                    continue;
                }
            }
        }
        let out = match auth.authenticate(&headers).await {
            Ok(Some(p)) => json!({"status": 200, "principal": p.principal, "claims": p.claims}),
            Ok(None) => json!({"status": 200, "principal": null}),
            Err(e) => json!({"status": 401, "error": e.kind(), "reason": e.to_string()}),
        };
        let _ = writeln!(stdout, "{out}");
        let _ = stdout.flush();
    }
}
