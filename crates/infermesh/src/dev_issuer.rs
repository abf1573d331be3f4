//! The embedded development OIDC issuer as the binary uses it: `infermesh token`
//! mints from its persisted key without a server; `infermesh up` serves it
//! (discovery, JWKS, client-credentials token endpoint) on `dev_issuer.listen`.

use anyhow::Context;
use infermesh_authn::{DevClient, DevIssuer};
use infermesh_config::{DevIssuerConfig, MeshConfig};
use std::path::Path;

use crate::cli::TokenArgs;
use crate::error::InvalidConfig;

fn config(mesh: &MeshConfig, file: &Path) -> anyhow::Result<DevIssuerConfig> {
    mesh.dev_issuer.clone().ok_or_else(|| {
        InvalidConfig::error(format!(
            "{} has no `dev_issuer:` section: tokens for a production issuer come from that issuer",
            file.display()
        ))
    })
}

/// Opens (creating on first use) the issuer's signing keys under `state_dir`.
pub fn open(config: &DevIssuerConfig, state_dir: &Path) -> anyhow::Result<DevIssuer> {
    DevIssuer::open(state_dir, &config.issuer_url()).with_context(|| {
        format!(
            "opening the dev issuer's keys under {}",
            state_dir.display()
        )
    })
}

/// `infermesh token`: prints a signed token for the mesh's dev issuer.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let path = crate::mesh::locate(&args.config);
    let mesh = infermesh_config::load(&path)
        .map_err(|errors| InvalidConfig::error(format!("invalid mesh config:\n{errors}")))?;
    let issuer = open(&config(&mesh, &path)?, &args.state_dir)?;
    let ttl = humantime::parse_duration(&args.ttl)
        .map_err(|e| InvalidConfig::error(format!("--ttl {:?}: {e}", args.ttl)))?;
    let token = issuer
        .mint(&args.sub, &args.group, &args.aud, ttl)
        .map_err(|e| InvalidConfig::error(format!("cannot mint a token: {e}")))?;
    println!("{token}");
    Ok(())
}

/// A bound dev issuer, ready to serve.
pub struct Running {
    pub issuer: DevIssuer,
    pub listener: tokio::net::TcpListener,
    clients: Vec<DevClient>,
}

impl Running {
    pub async fn bind(config: &DevIssuerConfig, state_dir: &Path) -> anyhow::Result<Running> {
        let issuer = open(config, state_dir)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("dev issuer: cannot listen on {}", config.listen))?;
        let clients = config
            .clients
            .iter()
            .map(|c| DevClient {
                client_id: c.client_id.clone(),
                client_secret: c.client_secret.clone(),
                groups: c.groups.clone(),
                audiences: c.audiences.clone(),
                ttl: c.ttl,
            })
            .collect();
        Ok(Running {
            issuer,
            listener,
            clients,
        })
    }

    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.issuer
            .serve(self.listener, self.clients, shutdown)
            .await
            .context("dev issuer")
    }
}

/// Token lifetime of the token `up` prints.
pub const UP_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
