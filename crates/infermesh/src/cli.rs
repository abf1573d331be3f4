//! The command line: subcommands and their flags. Only subcommands that work are
//! listed. Model-server flags are named like `tensorflow_model_server`'s, in both
//! spellings (`--rest-api-port` and `--rest_api_port`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// infermesh: an identity-aware service mesh for model serving, in one binary.
#[derive(Debug, Parser)]
#[command(name = "infermesh", version, about, long_about = None)]
pub struct Cli {
    /// Log line format on stderr (level filter: INFERMESH_LOG, e.g. `debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole mesh on this machine: gateway (REST 127.0.0.1:8501, gRPC
    /// 127.0.0.1:8500) → sidecar → embedded model server, from one mesh.yaml.
    Up(UpArgs),
    /// Run the gateway: the mesh's entry point for TF Serving REST and gRPC clients.
    Gateway(GatewayArgs),
    /// Run the sidecar of one workload, in front of its model server.
    Sidecar(SidecarArgs),
    /// Run the embedded TensorFlow-Serving-compatible model server.
    ModelServer(ModelServerArgs),
    /// Inspect the mesh's authorization policies.
    Policy(PolicyArgs),
    /// Print a signed token (JWT) from the mesh's embedded development issuer.
    Token(TokenArgs),
    /// Compile the mesh into Istio resources or Kubernetes manifests (YAML).
    Export(crate::export::ExportArgs),
    /// Serve Envoy's ext_authz gRPC API (envoy.service.auth.v3.Authorization/Check):
    /// model-aware decisions with the mesh's policies for Istio sidecars and gateways.
    ExtAuthz(crate::ext_authz::ExtAuthzArgs),
    /// Check mesh files as `up`, `gateway` and `sidecar` would, without starting
    /// anything: exit 0 when valid, 64 with file:line errors when not.
    Validate(crate::validate::ValidateArgs),
    /// Print the JSON Schema of mesh.yaml (draft 2020-12) for editors to complete and
    /// check the file with; the same text as docs/mesh.schema.json.
    Schema(crate::schema::SchemaArgs),
    /// Check and read the audit trail: verify, rollouts, query.
    Audit(crate::audit::AuditArgs),
    /// The built-in certificate authority of workload identities.
    Ca(CaArgs),
}

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a root CA (or import an existing root or intermediate with --cert and
    /// --key) in a directory; files are written 0600. A directory that already holds
    /// a CA is left as it is.
    Init(CaInitArgs),
    /// Rotate the CA: a new root joins the trust bundle (the old one stays trusted)
    /// and signs every certificate from now on. Running meshes pick it up.
    Rotate(CaDirArgs),
    /// End a rotation's overlap: the bundle keeps only the current root.
    Prune(CaDirArgs),
    /// Serve the CA: a CSR-signing endpoint over TLS for workloads that authenticate
    /// with a bearer token (a Kubernetes service-account token) from the mesh's
    /// `issuers`; the token's `system:serviceaccount:<ns>:<sa>` is the identity.
    Serve(CaServeArgs),
}

#[derive(Debug, Args)]
pub struct CaServeArgs {
    /// The mesh intent file (trust domain, issuers, identity settings).
    #[arg(long)]
    pub config: PathBuf,
    /// The CA directory.
    #[arg(long, default_value = ".infermesh/ca")]
    pub dir: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:15012")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// The CA directory.
    #[arg(long, default_value = ".infermesh/ca")]
    pub dir: PathBuf,
    /// The SPIFFE trust domain the root is for.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// An existing CA certificate (PEM; an intermediate followed by its chain).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The existing CA's private key (PKCS#8 PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CaDirArgs {
    /// The CA directory.
    #[arg(long, default_value = ".infermesh/ca")]
    pub dir: PathBuf,
    /// The SPIFFE trust domain of the new root.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Subject (`sub` claim); the request principal becomes `<issuer>/<sub>`.
    #[arg(long)]
    pub sub: String,
    /// A group for the `groups` claim (repeatable).
    #[arg(long)]
    pub group: Vec<String>,
    /// An audience for the `aud` claim (repeatable).
    #[arg(long)]
    pub aud: Vec<String>,
    /// Lifetime, e.g. `30m`, `8h` (at most 7 days).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// The mesh intent file whose `dev_issuer` signs the token.
    #[arg(long, default_value = "examples/quickstart/mesh.yaml")]
    pub config: PathBuf,
    /// Where the issuer's signing key is kept (shared with `infermesh up`).
    #[arg(long, default_value = ".infermesh")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Could this caller make this request, and why: prints ALLOW or DENY, the policy
    /// and rule that decided, and why every other policy did not match. For a request
    /// that names no version, every version routing could pick is decided. Exits 0
    /// whatever the decision; 64 when the config or an input is invalid.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The mesh intent file.
    #[arg(long)]
    pub config: PathBuf,
    /// The request: `POST /v1/models/m/versions/2:predict [signature=NAME]`,
    /// `GET /v1/models/m/metadata`, or `grpc Predict m[/versions/2|/labels/L]
    /// [signature=NAME]`.
    #[arg(long)]
    pub request: String,
    /// The mTLS peer identity, `cluster.local/ns/<ns>/sa/<sa>` (a `spiffe://` prefix
    /// is accepted).
    #[arg(long)]
    pub principal: Option<String>,
    /// The request principal of a verified JWT, `<iss>/<sub>` (default: from the
    /// `iss` and `sub` of --claims, if both are there).
    #[arg(long)]
    pub request_principal: Option<String>,
    /// The verified JWT's claims, a JSON object, e.g. '{"groups": ["ml-eng"]}'.
    #[arg(long)]
    pub claims: Option<String>,
    /// A request header, `name=value`; repeat for more.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// The caller's address (`ip_blocks`, `source.ip`).
    #[arg(long)]
    pub source_ip: Option<String>,
    /// The `Host` / `:authority` the request names (`hosts`).
    #[arg(long)]
    pub host: Option<String>,
    /// The port the request arrives on (`ports`).
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The mesh intent file.
    #[arg(long, default_value = "examples/quickstart/mesh.yaml")]
    pub config: PathBuf,
    /// Where state is kept (the dev issuer's signing key, the built-in CA in `ca/`).
    #[arg(long, default_value = ".infermesh")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The mesh intent file.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// The mesh intent file.
    #[arg(long)]
    pub config: PathBuf,
    /// Which workload of the mesh this sidecar fronts.
    #[arg(long)]
    pub workload: String,
}

#[derive(Debug, Args)]
pub struct ModelServerArgs {
    /// Port for the gRPC API (0 picks a free port).
    #[arg(long, default_value_t = 8500)]
    pub port: u16,
    /// Port for the REST API (0 picks a free port).
    #[arg(long, alias = "rest_api_port", default_value_t = 8501)]
    pub rest_api_port: u16,
    /// Address both APIs listen on. TF Serving listens on all interfaces; infermesh
    /// defaults to loopback, since a sidecar or gateway normally sits in front of it.
    #[arg(long, alias = "bind_address", default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Name of the single model to serve (with --model-base-path).
    #[arg(long, alias = "model_name", default_value = "default")]
    pub model_name: String,
    /// Directory holding the numeric version directories of the single model.
    #[arg(long, alias = "model_base_path", conflicts_with = "model_config_file")]
    pub model_base_path: Option<PathBuf>,
    /// Model config file in TF Serving's `model_config_list` text format.
    #[arg(long, alias = "model_config_file")]
    pub model_config_file: Option<PathBuf>,
    /// Seconds between scans of the model directories for new or removed versions
    /// (0: load once, never rescan).
    #[arg(long, alias = "file_system_poll_wait_seconds", default_value_t = 1)]
    pub file_system_poll_wait_seconds: u64,
    /// Timeout of a REST request in milliseconds.
    #[arg(long, alias = "rest_api_timeout_in_ms", default_value_t = 30_000)]
    pub rest_api_timeout_in_ms: u64,
    /// Largest accepted request body in bytes (REST and gRPC); larger gets 413 /
    /// RESOURCE_EXHAUSTED.
    #[arg(long, alias = "max_body_bytes", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Inference runs allowed at once (0: twice the number of CPUs); others wait,
    /// bounded by the request timeout.
    #[arg(long, default_value_t = 0)]
    pub max_concurrent_runs: usize,
}
