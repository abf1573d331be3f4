//! Failing backends, through the real binary: a killed model server (or sidecar) is
//! answered with 503 and `x-infermesh-error` instead of a hang, and traffic recovers
//! when it comes back on the same ports; a backend that accepts and never answers is cut
//! off with 504 at the route timeout.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::grpc::{Clients, clients, expected_output, header, output, predict_request, spec};
use common::mesh::{ERROR_HEADER, Mesh, MeshSpec, PREDICT_BODY, Proc, V1_ANSWER, free_port};
use common::{ONNX_MODEL, ServerBuilder, compact, onnx_models};
use tokio::runtime::Runtime;

const PREDICT: &str = "/v1/models/half_plus_two:predict";
/// Bound for traffic to recover after a restart.
const RECOVERY: Duration = Duration::from_secs(60);

fn predict(mesh: &Mesh) -> (common::Resp, Duration) {
    let started = Instant::now();
    let r = mesh.gateway_req("POST", PREDICT, Some(PREDICT_BODY.as_bytes()), &[]);
    (r, started.elapsed())
}

fn assert_ok(mesh: &Mesh, what: &str) {
    let (r, _) = predict(mesh);
    assert_eq!(
        (r.status, r.header(ERROR_HEADER), compact(&r.body)),
        (200, None, V1_ANSWER.to_string()),
        "{what}: {r:?}\n{}",
        mesh.logs()
    );
}

/// A refused connection is answered at once (well before the 20 s route timeout)
/// with 503 / `upstream-connect`.
fn assert_unavailable(mesh: &Mesh, what: &str) {
    for i in 0..5 {
        let (r, elapsed) = predict(mesh);
        // The first request may still go out on the proxy's pooled connection to the
        // process just killed, before the proxy has read that connection's close: the
        // upstream then hangs up without an answer — also 503 (Envoy's "reset before
        // headers"), kind `upstream`. Every later request finds nothing to connect to.
        let reset = i == 0
            && r.header(ERROR_HEADER) == Some("upstream")
            && r.error().starts_with("upstream reset before response");
        let kind = if reset {
            "upstream"
        } else {
            "upstream-connect"
        };
        assert_eq!(
            (r.status, r.header(ERROR_HEADER)),
            (503, Some(kind)),
            "{what}, request {i}: {r:?}\n{}",
            mesh.logs()
        );
        assert!(
            reset || r.error().starts_with("upstream connect error"),
            "{what}: {}",
            r.body
        );
        // Not a timing test: 503 rather than 504 already shows it came before the
        // route timeout; this only catches a proxy that waits for something.
        assert!(
            elapsed < Duration::from_secs(10),
            "{what}: the 503 took {elapsed:?}"
        );
    }
}

/// A gRPC client of the gateway, kept connected across the failure.
fn grpc_client(mesh: &Mesh) -> (Runtime, Clients) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(clients(mesh.grpc_endpoint()));
    (rt, c)
}

/// Unversioned gRPC Predict through the gateway.
fn grpc_predict(
    (rt, c): &mut (Runtime, Clients),
) -> Result<
    tonic::Response<infermesh_tfserving::proto::tensorflow::serving::PredictResponse>,
    tonic::Status,
> {
    rt.block_on(c.predict.predict(predict_request(spec(None, None))))
}

fn assert_grpc_ok(grpc: &mut (Runtime, Clients), mesh: &Mesh, what: &str) {
    match grpc_predict(grpc) {
        Ok(r) => assert_eq!(output(r.get_ref()), expected_output(1), "{what}"),
        Err(e) => panic!("{what}: gRPC {e:?}\n{}", mesh.logs()),
    }
}

fn assert_grpc_unavailable(grpc: &mut (Runtime, Clients), mesh: &Mesh, what: &str) {
    for i in 0..3 {
        let e = grpc_predict(grpc).expect_err(what);
        assert_eq!(
            (e.code(), header(e.metadata(), ERROR_HEADER)),
            (tonic::Code::Unavailable, Some("upstream-connect")),
            "{what}, gRPC request {i}: {e:?}\n{}",
            mesh.logs()
        );
    }
}

#[test]
fn killed_model_server_gives_503_then_recovers_on_restart() {
    let mut mesh = Mesh::separate(
        &MeshSpec::route(
            "split: {stable: 100, canary: 0}, timeout: 20s, \
             retries: {attempts: 2, on: [connect-failure]}",
        )
        .limits("connect_timeout: 1s"),
    );
    assert_ok(&mesh, "before the kill");
    let mut grpc = grpc_client(&mesh);
    assert_grpc_ok(&mut grpc, &mesh, "gRPC before the kill");

    // The model server dies (SIGKILL): the sidecar cannot connect.
    let (grpc_port, rest_port) = {
        let server = mesh.model_server.as_mut().unwrap();
        server.kill();
        (server.grpc_port, server.rest_port)
    };
    assert_unavailable(&mesh, "model server killed");
    let r = mesh.gateway_req("GET", "/v1/models/half_plus_two", None, &[]);
    assert_eq!(
        (r.status, r.header(ERROR_HEADER)),
        (503, Some("upstream-connect")),
        "status with the model server killed: {r:?}"
    );
    assert_grpc_unavailable(&mut grpc, &mesh, "model server killed");

    // Back on the same ports: traffic flows again without restarting the proxies.
    let restarted = ServerBuilder::config(onnx_models())
        .ports(grpc_port, rest_port)
        .wait_for(ONNX_MODEL, &[1, 2])
        .start();
    mesh.model_server = Some(restarted);
    mesh.wait_until("predicts to succeed after the restart", RECOVERY, || {
        predict(&mesh).0.status == 200
    });
    for i in 0..20 {
        assert_ok(&mesh, &format!("after the restart, request {i}"));
    }
    mesh.wait_until(
        "gRPC predicts to succeed after the restart",
        RECOVERY,
        || grpc_predict(&mut grpc).is_ok(),
    );
    for i in 0..20 {
        assert_grpc_ok(
            &mut grpc,
            &mesh,
            &format!("gRPC after the restart, request {i}"),
        );
    }
}

#[test]
fn killed_sidecar_gives_503_from_the_gateway_then_recovers() {
    let mut mesh = Mesh::separate(
        &MeshSpec::route(
            "split: {stable: 100, canary: 0}, timeout: 20s, \
             retries: {attempts: 2, on: [connect-failure]}",
        )
        .limits("connect_timeout: 1s"),
    );
    assert_ok(&mesh, "before the kill");
    let mut grpc = grpc_client(&mesh);
    assert_grpc_ok(&mut grpc, &mesh, "gRPC before the kill");
    mesh.sidecar.as_mut().unwrap().kill();
    // The gateway retries the connect (twice) and then answers itself.
    assert_unavailable(&mesh, "sidecar killed");
    assert_grpc_unavailable(&mut grpc, &mesh, "sidecar killed");

    let args = [
        "sidecar".to_string(),
        "--config".into(),
        mesh.config.display().to_string(),
        "--workload".into(),
        "tfserving-a".into(),
    ];
    mesh.sidecar = Some(Proc::spawn("sidecar-restarted", &args, mesh.dir.path()));
    mesh.wait_until("predicts to succeed after the restart", RECOVERY, || {
        predict(&mesh).0.status == 200
    });
    for i in 0..20 {
        assert_ok(&mesh, &format!("after the restart, request {i}"));
    }
    mesh.wait_until(
        "gRPC predicts to succeed after the restart",
        RECOVERY,
        || grpc_predict(&mut grpc).is_ok(),
    );
    for i in 0..20 {
        assert_grpc_ok(
            &mut grpc,
            &mesh,
            &format!("gRPC after the restart, request {i}"),
        );
    }
}

/// A TCP server that accepts connections and never answers; it keeps them open.
struct Silent {
    port: u16,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let keep = accepted.clone();
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                keep.lock().unwrap().push(stream);
            }
        });
        Silent { port, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

/// A mesh with a second workload, `slow`, whose model server never answers, and a
/// model `slow_model` on it with a 500 ms route timeout.
fn slow_mesh(rest: &Silent, grpc: &Silent, timeout: &str) -> Mesh {
    let sidecar = free_port();
    Mesh::up(
        &MeshSpec::route("split: {stable: 100, canary: 0}, timeout: 20s")
            .workload(&format!(
                "{{name: slow, listen: 127.0.0.1:{sidecar}, \
                 upstream: {{rest: 127.0.0.1:{}, grpc: 127.0.0.1:{}}}}}",
                rest.port, grpc.port
            ))
            .model(&format!(
                "{{name: slow_model, served_by: slow, versions: [1], \
                 route: {{timeout: {timeout}, retries: {{attempts: 0}}}}}}"
            )),
    )
}

#[test]
fn silent_backend_gives_504_at_the_route_timeout() {
    let (rest, grpc_silent) = (Silent::start(), Silent::start());
    let mesh = slow_mesh(&rest, &grpc_silent, "500ms");
    let timeout = Duration::from_millis(500);
    for path in [
        "/v1/models/slow_model:predict",
        "/v1/models/slow_model/versions/1:predict",
    ] {
        for i in 0..3 {
            let started = Instant::now();
            let r = mesh.gateway_req("POST", path, Some(PREDICT_BODY.as_bytes()), &[]);
            let elapsed = started.elapsed();
            assert_eq!(
                (r.status, r.header(ERROR_HEADER)),
                (504, Some("timeout")),
                "{path} #{i}: {r:?}\n{}",
                mesh.logs()
            );
            assert!(r.error().contains("timeout"), "{path} #{i}: {}", r.body);
            assert!(
                elapsed >= timeout && elapsed <= timeout + Duration::from_millis(1500),
                "{path} #{i}: 504 after {elapsed:?}; the route timeout is {timeout:?}"
            );
        }
    }
    assert!(
        rest.connections() >= 1,
        "the requests never reached the silent backend"
    );

    // gRPC: DEADLINE_EXCEEDED at the route timeout (the silent gRPC port never even
    // completes the HTTP/2 handshake).
    let mut grpc = grpc_client(&mesh);
    for i in 0..3 {
        let started = Instant::now();
        let req = predict_request(common::grpc::spec_of("slow_model", None, None));
        let e = grpc
            .0
            .block_on(grpc.1.predict.predict(req))
            .expect_err("the silent backend never answers");
        let elapsed = started.elapsed();
        assert_eq!(
            (e.code(), header(e.metadata(), ERROR_HEADER)),
            (tonic::Code::DeadlineExceeded, Some("timeout")),
            "gRPC #{i}: {e:?}\n{}",
            mesh.logs()
        );
        assert!(
            elapsed >= timeout && elapsed <= timeout + Duration::from_millis(1500),
            "gRPC #{i}: DEADLINE_EXCEEDED after {elapsed:?}; the route timeout is {timeout:?}"
        );
    }
    assert!(
        grpc_silent.connections() >= 1,
        "the gRPC requests never reached the silent backend"
    );
    // The other model of the mesh is unaffected.
    assert_ok(&mesh, "half_plus_two beside the silent backend");
}

/// A model server that is down is answered 503 / `upstream-connect` whatever the body
/// size. The sidecar answers 503 as soon as the connect is refused, without reading
/// the request body, and closes the connection; the gateway, still streaming the body,
/// sees a broken pipe — or, when the close's reset discards the sidecar's answer, the
/// connection closed before a response — and must not turn that into a 502: the
/// request never reached the sidecar whole (forward.rs, `SendError::Refused`).
#[test]
fn dead_model_server_gives_503_for_large_bodies_too() {
    // A workload whose model server is not running: nothing listens on its ports.
    let p = common::free_ports(3);
    let mesh = Mesh::up(
        &MeshSpec::route("split: {stable: 100, canary: 0}, timeout: 20s")
            .workload(&format!(
                "{{name: dead, listen: 127.0.0.1:{}, \
                 upstream: {{rest: 127.0.0.1:{}, grpc: 127.0.0.1:{}}}}}",
                p[0], p[1], p[2]
            ))
            .model("{name: dead_model, served_by: dead, versions: [1], route: {timeout: 20s}}"),
    );
    const REQUESTS: usize = 40;
    let mut body = br#"{"instances": [1.0]}"#.to_vec();
    body.resize(4 << 20, b' ');
    let mut answers = Vec::new();
    for _ in 0..REQUESTS {
        let a = common::mesh::raw_post(
            mesh.ports.gateway,
            "/v1/models/dead_model:predict",
            &body,
            false,
        );
        answers.push((
            a.status,
            a.error_kind,
            a.body.chars().take(110).collect::<String>(),
        ));
    }
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(status, kind, _)| {
            (*status, kind.as_deref()) != (Some(503), Some("upstream-connect"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {REQUESTS} predicts with a 4 MiB body to a model server that is down were not \
         503 upstream-connect: {wrong:#?}",
        wrong.len()
    );
}
