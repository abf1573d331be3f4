//! The gateway's client-facing TLS (`gateway.tls`) on the wire, with `openssl
//! s_client` as the client: a client certificate from `client_ca` is served, none is
//! refused when `require_client_cert` is set, and the server chain verifies against
//! the CA that issued it. Skips (and says why) without `openssl`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use infermesh_config::GatewayTls;
use infermesh_identity::{Ca, ROOT_LIFETIME, SpiffeId, certs_to_pem, new_key_and_csr};

use super::Mesh;

fn mint(ca: &Ca, dir: &Path, name: &str, principal: &str) -> (String, String) {
    let id = SpiffeId::parse_principal(principal).unwrap();
    let (key, csr) = new_key_and_csr(&id).unwrap();
    let chain = ca.sign_csr(&csr, &id, Duration::from_secs(3600)).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certs_to_pem(&chain)).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert.display().to_string(), key_path.display().to_string())
}

/// One `GET /v1/models/m` over TLS; everything s_client printed.
fn s_client(port: u16, ca: &Path, client: Option<&(String, String)>) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "10",
        "openssl",
        "s_client",
        "-quiet",
        "-verify_return_error",
    ])
    .arg("-CAfile")
    .arg(ca)
    .arg("-connect")
    .arg(format!("127.0.0.1:{port}"));
    if let Some((cert, key)) = client {
        cmd.args(["-cert", cert, "-key", key]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ =
            stdin.write_all(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_gateway_serves_tls_and_can_require_client_certificates() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIP the_gateway_serves_tls_and_can_require_client_certificates: no `openssl`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let server = mint(
        &ca,
        dir.path(),
        "server",
        "cluster.local/ns/infermesh/sa/gateway",
    );
    let client = mint(&ca, dir.path(), "client", "cluster.local/ns/apps/sa/web");
    let tls = GatewayTls {
        cert: server.0.clone().into(),
        key: server.1.clone().into(),
        client_ca: Some(ca_file.clone()),
        require_client_cert: true,
    };
    let mesh = Mesh::start_with(|c| c.gateway.tls = Some(tls)).await;
    let port = mesh.gateway.port();

    let with_cert = {
        let (ca_file, client) = (ca_file.clone(), client.clone());
        tokio::task::spawn_blocking(move || s_client(port, &ca_file, Some(&client)))
            .await
            .unwrap()
    };
    assert!(with_cert.contains("HTTP/1.1 200"), "{with_cert}");
    let without = tokio::task::spawn_blocking(move || s_client(port, &ca_file, None))
        .await
        .unwrap();
    assert!(!without.contains("HTTP/1.1"), "{without}");
    assert!(without.contains("certificate required"), "{without}");
}
