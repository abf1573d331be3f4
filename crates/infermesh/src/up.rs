//! `infermesh up`: the whole mesh on one machine from one `mesh.yaml` (by default the
//! quickstart's): the embedded development OIDC issuer (if the mesh has a
//! `dev_issuer`), for every workload with an embedded model server that server on the
//! workload's upstream addresses, every workload's sidecar, and the gateway. It prints
//! what it started and a token to try it with, and stops all of it on
//! Ctrl-C/SIGTERM, the gateway first so no new request enters while the rest drains.
//! The mesh file is reloaded when it changes, on SIGHUP, or on `POST /reload` at the
//! admin listener (`reload.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use infermesh_config::{Address, MeshConfig};
use infermesh_model_server::{ModelServer, ServerConfig};
use infermesh_proxy::{Gateway, Sidecar};
use tokio::sync::watch;

use crate::cli::UpArgs;
use crate::error::InvalidConfig;
use crate::mesh::locate;
use crate::model_server::{engine_loader, read_model_config_file};

/// A socket address the embedded model server can bind (not a host name).
fn socket(addr: &Address, what: &str) -> anyhow::Result<SocketAddr> {
    match addr {
        Address::Socket(s) => Ok(*s),
        Address::Host { host, port } => Err(InvalidConfig::error(format!(
            "{what} is {host}:{port}; the embedded model server needs an IP address"
        ))),
    }
}

/// Starts the embedded model servers; returns (workload, server) pairs.
async fn model_servers(mesh: &MeshConfig) -> anyhow::Result<Vec<(String, ModelServer)>> {
    let mut servers = Vec::new();
    for workload in mesh.workloads.values() {
        let Some(file) = &workload.embedded_model_server else {
            continue;
        };
        let models = read_model_config_file(file)?;
        let config = ServerConfig {
            grpc_addr: socket(&workload.upstream.grpc, "upstream.grpc")?,
            rest_addr: socket(&workload.upstream.rest, "upstream.rest")?,
            rest_timeout: Duration::from_secs(30),
            max_body_bytes: usize::try_from(mesh.limits.max_request_body_bytes)
                .unwrap_or(usize::MAX),
            poll_wait: Duration::from_secs(1),
            max_concurrent_runs: 0,
            drain_timeout: mesh.limits.drain_timeout,
        };
        let server = ModelServer::bind(config, models, engine_loader())
            .await
            .with_context(|| format!("starting the model server of {}", workload.name))?;
        servers.push((workload.name.clone(), server));
    }
    Ok(servers)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let path = locate(&args.config);
    let mut reloader = crate::reload::load(&path, crate::reload::Role::Up)?;
    let config = reloader.config();
    let mesh = config.load_full();

    // The issuer first: the gateway and sidecars fetch its keys when they start.
    let issuer = match &mesh.dev_issuer {
        Some(dev) => Some(crate::dev_issuer::Running::bind(dev, &args.state_dir).await?),
        None => None,
    };
    let token = match &issuer {
        Some(running) => Some(
            running
                .issuer
                .mint(
                    "alice",
                    &["ml-eng".to_string()],
                    &[],
                    crate::dev_issuer::UP_TOKEN_TTL,
                )
                .map_err(|e| anyhow::anyhow!("minting the quickstart token: {e}"))?,
        ),
        None => None,
    };
    let (stop_issuer, issuer_rx) = watch::channel(false);
    let issuer_task = issuer.map(|running| {
        let mut rx = issuer_rx.clone();
        tokio::spawn(running.serve(async move {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }))
    });

    let servers = model_servers(&mesh).await?;
    let telemetry = crate::mesh::start_telemetry(&reloader)?;
    // One trail for the process: the gateway's and every sidecar's decisions.
    let audit = reloader.open_audit()?;
    // The built-in CA runs in this process (created under the state directory if
    // missing); every sidecar and the gateway get their own certificate from it.
    let ca_dir = args.state_dir.join("ca");
    let provider =
        crate::identity::Provider::new(&mesh, &ca_dir, true, true)?.context("identity provider")?;
    let mut identities = Vec::new();
    let mut sidecars = Vec::new();
    for (name, workload) in &mesh.workloads {
        let identity = provider.start(provider.workload_id(workload)?)?;
        identities.push(identity.clone());
        let sidecar = Sidecar::bind(config.clone(), name, telemetry.clone())?
            .with_identity(name, identity)?;
        sidecars.push((name.clone(), sidecar));
    }
    let gateway_identity = provider.start(provider.gateway_id()?)?;
    identities.push(gateway_identity.clone());
    crate::identity::observe(&identities, &telemetry, audit.as_ref());
    let mut gateway =
        Gateway::bind(config.clone(), telemetry.clone())?.with_reload(reloader.admin_sender());
    for identity in &identities {
        gateway = gateway.with_ready_check(crate::identity::ready_check(identity));
    }
    let gateway = gateway.with_identity(gateway_identity);
    let mut gateway = gateway;
    if let Some(log) = &audit {
        crate::mesh::audit_metrics(&telemetry, log);
        let proxy_audit = crate::mesh::proxy_audit(&reloader, log);
        gateway = gateway.with_audit(proxy_audit.clone());
        sidecars = sidecars
            .into_iter()
            .map(|(name, s)| (name, s.with_audit(proxy_audit.clone())))
            .collect();
    }

    println!("infermesh up: mesh from {}", path.display());
    if let Some(dev) = &mesh.dev_issuer {
        println!(
            "  dev issuer    {} (OIDC discovery, JWKS, client-credentials /token)",
            dev.issuer_url()
        );
    }
    for (name, server) in &servers {
        println!(
            "  model server  {name}: REST {} gRPC {}",
            server.rest_addr(),
            server.grpc_addr()
        );
    }
    for (name, sidecar) in &sidecars {
        let addrs: Vec<String> = sidecar
            .local_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mode = mesh.workloads.get(name).map(|w| w.mtls).unwrap_or_default();
        println!(
            "  sidecar       {name}: {} (mTLS {mode:?})",
            addrs.join(", ")
        );
    }
    let gateway_addrs: Vec<SocketAddr> = gateway.local_addrs();
    let addrs: Vec<String> = gateway_addrs.iter().map(|a| a.to_string()).collect();
    println!(
        "  gateway       {} (TF Serving REST and gRPC)",
        addrs.join(", ")
    );
    println!(
        "  identity      CA in {} (gateway → sidecar mTLS, SPIFFE IDs in {})",
        match &mesh.identity {
            Some(infermesh_config::IdentityConfig {
                ca: infermesh_config::CaSource::Files { .. },
                ..
            }) => "external files".to_string(),
            Some(infermesh_config::IdentityConfig {
                ca: infermesh_config::CaSource::Builtin { dir: Some(dir) },
                ..
            }) => dir.display().to_string(),
            _ => ca_dir.display().to_string(),
        },
        mesh.trust_domain
    );
    if let Some(admin) = gateway.admin_addr() {
        println!("  admin         http://{admin} (/healthz, /readyz, /metrics, POST /reload)");
    }
    if let Some(log) = &audit {
        println!(
            "  audit trail   {} ({:?}; `infermesh audit verify {} --public-key {}`)",
            log.dir().display(),
            log.durability(),
            log.dir().display(),
            log.public_key_path().display()
        );
    }
    if let Some(model) = mesh.models.keys().next() {
        let rest = gateway_addrs
            .iter()
            .find(|a| a.port() == 8501)
            .or(gateway_addrs.first());
        if let Some(rest) = rest {
            let auth = if let Some(token) = &token {
                println!(
                    "A token for alice (group ml-eng), valid 8 h (`infermesh token --help` mints others):"
                );
                println!("  export TOKEN={token}");
                " -H \"Authorization: Bearer $TOKEN\""
            } else {
                ""
            };
            println!("Try:");
            println!(
                "  curl -s{auth} -X POST http://{rest}/v1/models/{model}/versions/1:predict -d '{{\"instances\": [1.0, 2.0, 5.0]}}'"
            );
            println!(
                "  curl -s -i{auth} -X POST http://{rest}/v1/models/{model}:predict -d '{{\"instances\": [1.0, 2.0, 5.0]}}'   # canary split; see x-infermesh-model-version"
            );
        }
    }
    println!(
        "Stop with Ctrl-C. Edits to the mesh file (or SIGHUP, or POST /reload on the admin listener) reload it."
    );
    let _reload = reloader.spawn();

    // Stop order: gateway first, then sidecars, then model servers.
    let (stop_gateway, gateway_rx) = watch::channel(false);
    let (stop_rest, rest_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (_, server) in servers {
        let stop = wait(rest_rx.clone());
        tasks.spawn(async move { server.run(stop).await.map_err(anyhow::Error::from) });
    }
    for (_, sidecar) in sidecars {
        let stop = wait(rest_rx.clone());
        tasks.spawn(async move { sidecar.run(stop).await.map_err(anyhow::Error::from) });
    }
    let gateway_task = tokio::spawn(gateway.run(wait(gateway_rx)));

    tokio::select! {
        _ = crate::shutdown::signal() => {}
        Some(result) = tasks.join_next() => {
            // A component stopped on its own: report it and stop the rest.
            result.context("component task")??;
            anyhow::bail!("a mesh component stopped unexpectedly");
        }
    }
    let _ = stop_gateway.send(true);
    gateway_task.await.context("gateway task")??;
    let _ = stop_rest.send(true);
    while let Some(result) = tasks.join_next().await {
        result.context("component task")??;
    }
    let _ = stop_issuer.send(true);
    if let Some(task) = issuer_task {
        task.await.context("dev issuer task")??;
    }
    if let Some(log) = &audit {
        crate::trail::close(log, &crate::reload::Role::Up).await;
    }
    println!("infermesh up: stopped");
    Ok(())
}
