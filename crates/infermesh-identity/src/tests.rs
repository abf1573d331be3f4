//! Handshakes between two workload identities over loopback with the mesh's rustls
//! configs: the expected peer identity passes, a wrong one or another CA's fails,
//! and after renewal new handshakes present the new certificate.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::*;

fn local_ca(dir: &std::path::Path) -> Arc<dyn Signer> {
    let store = CaStore::new(dir.join("ca"));
    store.init("cluster.local", None).unwrap();
    Arc::new(LocalCa::open(store).unwrap())
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).unwrap()
}

fn start(signer: &Arc<dyn Signer>, id: SpiffeId, lifetime: Duration) -> Arc<WorkloadIdentity> {
    let rotation = Rotation {
        lifetime,
        renew_fraction: 0.5,
    };
    WorkloadIdentity::start(id, Source::Ca(signer.clone()), rotation).unwrap()
}

/// Serves one handshake per accepted connection; returns the address. Each
/// connection answers with the peer's SPIFFE ID.
async fn server(identity: Arc<WorkloadIdentity>, policy: PeerPolicy) -> std::net::SocketAddr {
    let config = server_config(identity, policy, MinTls::V13).unwrap();
    let acceptor = TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                    let peer = peer_id(&peer).unwrap().uri();
                    let _ = tls.write_all(peer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects expecting `expected`; returns (what the server said, the server's leaf).
async fn call(
    client: &Arc<WorkloadIdentity>,
    expected: SpiffeId,
    addr: std::net::SocketAddr,
) -> Result<(String, Vec<u8>), String> {
    let config = client_config(client.clone(), expected, MinTls::V13, &ALPN).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok((out, leaf))
}

#[tokio::test]
async fn mutual_tls_checks_both_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = local_ca(tmp.path());
    let sidecar = start(&ca, id("ml", "tfserving"), Duration::from_secs(3600));
    let gateway = start(&ca, id("infermesh", "gateway"), Duration::from_secs(3600));
    let policy = PeerPolicy {
        allowed: vec!["cluster.local/ns/infermesh/sa/gateway".into()],
    };
    let addr = server(sidecar.clone(), policy).await;

    let (said, _) = call(&gateway, id("ml", "tfserving"), addr).await.unwrap();
    assert_eq!(said, "spiffe://cluster.local/ns/infermesh/sa/gateway");

    // The client expects another workload behind that address: refused.
    let err = call(&gateway, id("ml", "other"), addr).await.unwrap_err();
    assert!(
        err.contains("expected spiffe://cluster.local/ns/ml/sa/other"),
        "{err}"
    );

    // A peer the server does not allow: the handshake (or the first read) fails.
    let intruder = start(&ca, id("ml", "intruder"), Duration::from_secs(3600));
    assert!(call(&intruder, id("ml", "tfserving"), addr).await.is_err());

    // A certificate from another CA: refused.
    let tmp2 = tempfile::tempdir().unwrap();
    let other_ca = local_ca(tmp2.path());
    let stranger = start(
        &other_ca,
        id("infermesh", "gateway"),
        Duration::from_secs(3600),
    );
    assert!(call(&stranger, id("ml", "tfserving"), addr).await.is_err());
}

#[tokio::test]
async fn renewal_changes_the_certificate_of_new_handshakes() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = local_ca(tmp.path());
    let sidecar = start(&ca, id("ml", "tfserving"), Duration::from_secs(2));
    let gateway = start(&ca, id("infermesh", "gateway"), Duration::from_secs(2));
    let mut events = sidecar.subscribe();
    let addr = server(sidecar.clone(), PeerPolicy::default()).await;
    let (_, first) = call(&gateway, id("ml", "tfserving"), addr).await.unwrap();
    let first_expiry = sidecar.not_after().unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("a rotation within 5 s")
        .unwrap();
    assert_eq!(event.kind, EventKind::Rotated);
    assert!(sidecar.not_after().unwrap() > first_expiry);
    let (_, second) = call(&gateway, id("ml", "tfserving"), addr).await.unwrap();
    assert_ne!(
        first, second,
        "a new handshake gets the renewed certificate"
    );
}

#[tokio::test]
async fn ca_rotation_overlaps_without_a_failed_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CaStore::new(tmp.path().join("ca"));
    store.init("cluster.local", None).unwrap();
    let ca: Arc<dyn Signer> = Arc::new(LocalCa::open(store.clone()).unwrap());
    let sidecar = start(&ca, id("ml", "tfserving"), Duration::from_secs(2));
    let gateway = start(&ca, id("infermesh", "gateway"), Duration::from_secs(2));
    let addr = server(sidecar.clone(), PeerPolicy::default()).await;
    call(&gateway, id("ml", "tfserving"), addr).await.unwrap();

    store.rotate("cluster.local").unwrap();
    let (new_ca, bundle) = store.load().unwrap();
    assert_eq!(bundle.len(), 2);
    let (_, new_root) = x509_parser::parse_x509_certificate(new_ca.root()).unwrap();
    let new_subject = new_root.subject().as_raw().to_vec();
    let deadline = tokio::time::Instant::now() + CA_SWITCH_DELAY + Duration::from_secs(5);
    let mut by_new_root = false;
    while tokio::time::Instant::now() < deadline && !by_new_root {
        let (_, leaf) = call(&gateway, id("ml", "tfserving"), addr)
            .await
            .expect("every handshake during the overlap succeeds");
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        by_new_root = leaf.issuer().as_raw() == new_subject.as_slice();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        by_new_root,
        "the sidecar's certificate is signed by the new root"
    );
    // And the gateway's own new certificate is accepted by the sidecar (the call
    // above presented it once both renewed).
    tokio::time::sleep(Duration::from_secs(2)).await;
    call(&gateway, id("ml", "tfserving"), addr).await.unwrap();
}

#[tokio::test]
async fn an_expired_certificate_fails_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
    let sidecar_id = id("ml", "tfserving");
    // External files with a 2 s certificate that nobody renews.
    let (key, csr) = new_key_and_csr(&sidecar_id).unwrap();
    let chain = ca
        .sign_csr(&csr, &sidecar_id, Duration::from_secs(2))
        .unwrap();
    let files = CertFiles {
        cert: tmp.path().join("tls.crt"),
        key: tmp.path().join("tls.key"),
        bundle: tmp.path().join("ca.crt"),
    };
    std::fs::write(&files.cert, certs_to_pem(&chain)).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.bundle, certs_to_pem(&[ca.root().clone()])).unwrap();
    let sidecar = WorkloadIdentity::start(
        sidecar_id.clone(),
        Source::Files(files),
        Rotation::default(),
    )
    .unwrap();
    let mut events = sidecar.subscribe();
    let store = CaStore::new(tmp.path().join("ca"));
    let (ca_cert, ca_key) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
    std::fs::write(&ca_cert, ca.cert_pem()).unwrap();
    std::fs::write(&ca_key, ca.key_pem()).unwrap();
    store
        .init("cluster.local", Some((&ca_cert, &ca_key)))
        .unwrap();
    let signer: Arc<dyn Signer> = Arc::new(LocalCa::open(store).unwrap());
    let gateway = start(
        &signer,
        id("infermesh", "gateway"),
        Duration::from_secs(3600),
    );
    let addr = server(sidecar.clone(), PeerPolicy::default()).await;
    call(&gateway, sidecar_id.clone(), addr).await.unwrap();

    let mut kinds = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while !kinds.contains(&EventKind::Expired) && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
            kinds.push(e.kind);
        }
    }
    assert!(kinds.contains(&EventKind::ExpiringSoon), "{kinds:?}");
    assert!(kinds.contains(&EventKind::Expired), "{kinds:?}");
    assert!(sidecar.certified_key().is_none());
    let err = call(&gateway, sidecar_id, addr).await.unwrap_err();
    assert!(!err.is_empty(), "no handshake without a valid certificate");
}
