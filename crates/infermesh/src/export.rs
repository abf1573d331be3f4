//! `infermesh export istio|k8s`: compiles the mesh intent into Istio resources or
//! Kubernetes manifests (crate `infermesh-export`) and writes one multi-document YAML
//! stream to stdout or `-o FILE`. What the user must still do by hand, and what the
//! target cannot express, is written as `#` comments on top (and to stderr with `-o`).
//! Exit 64 for an invalid mesh file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use infermesh_export::Options;

use crate::error::InvalidConfig;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: ExportTarget,
}

#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// VirtualService, DestinationRule (a subset per model version, pods labelled
    /// `version: "<n>"`), RequestAuthentication, PeerAuthentication (STRICT) and
    /// AuthorizationPolicy; model-aware rules go to the infermesh ext_authz provider,
    /// whose server (Deployment, Service, PodDisruptionBudget) is exported with them.
    Istio(ExportFlags),
    /// Namespaces, ServiceAccounts, the mesh.yaml ConfigMap, a Deployment per workload
    /// (TF Serving + infermesh sidecar), headless Services, NetworkPolicies, and the
    /// gateway Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget.
    K8s(ExportFlags),
}

#[derive(Debug, Args)]
pub struct ExportFlags {
    /// The mesh intent file.
    #[arg(long, default_value = "examples/quickstart/mesh.yaml")]
    pub config: PathBuf,
    /// Write here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Istio: the ext_authz extension provider's name.
    #[arg(long, default_value = "infermesh-ext-authz")]
    pub ext_authz_provider: String,
    /// Istio: the ext_authz server's Service host [default: the exported Service,
    /// infermesh-ext-authz.<--namespace>.svc.<--cluster-domain>]. Another host: the
    /// server runs elsewhere and is not exported.
    #[arg(long)]
    pub ext_authz_service: Option<String>,
    /// Istio: the ext_authz server's gRPC port (provider, Service and server).
    #[arg(long, default_value_t = 9191)]
    pub ext_authz_port: u16,
    /// The namespace of the gateway (k8s) and of the ext_authz server (istio).
    #[arg(long, default_value = "infermesh")]
    pub namespace: String,
    /// The infermesh image of the exported pods (see the repository's Dockerfile).
    #[arg(long, default_value = "infermesh:0.1.0")]
    pub image: String,
    /// Kubernetes: the TensorFlow Serving image.
    #[arg(long, default_value = "tensorflow/serving:2.18.0")]
    pub tfserving_image: String,
}

/// The files mesh.yaml names (`istio_files`), read for the ConfigMap that carries
/// them beside mesh.yaml. A name that would land outside the mounted directory
/// (absolute, or with `..`) cannot be carried: refused, with the reason.
fn carried_files(
    config: &infermesh_config::MeshConfig,
    mesh: &std::path::Path,
) -> anyhow::Result<Vec<(String, String)>> {
    use std::path::Component;
    let base = mesh.parent().unwrap_or(std::path::Path::new("."));
    let mut files = Vec::new();
    for name in &config.istio_files {
        // The path it is mounted at: `./` dropped, anything leaving the directory refused.
        let mut clean = std::path::PathBuf::new();
        for part in std::path::Path::new(name).components() {
            match part {
                Component::Normal(p) => clean.push(p),
                Component::CurDir => {}
                _ => {
                    return Err(InvalidConfig::error(format!(
                        "istio_files entry `{name}`: the export mounts mesh.yaml and the \
                         files it names in one directory, so each must be a path inside \
                         mesh.yaml's directory (no absolute path, no `..`)"
                    )));
                }
            }
        }
        let file = base.join(name);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| InvalidConfig::error(format!("cannot read {}: {e}", file.display())))?;
        files.push((clean.to_string_lossy().into_owned(), text));
    }
    Ok(files)
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let (istio, flags) = match args.target {
        ExportTarget::Istio(flags) => (true, flags),
        ExportTarget::K8s(flags) => (false, flags),
    };
    let path = crate::mesh::locate(&flags.config);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| InvalidConfig::error(format!("cannot read {}: {e}", path.display())))?;
    let config = infermesh_config::parse(&text, &path)
        .map_err(|errors| InvalidConfig::error(format!("invalid mesh config:\n{errors}")))?;
    let options = Options {
        cluster_domain: flags.cluster_domain,
        ext_authz_provider: flags.ext_authz_provider,
        ext_authz_service: flags.ext_authz_service,
        ext_authz_port: flags.ext_authz_port,
        system_namespace: flags.namespace,
        image: flags.image,
        tfserving_image: flags.tfserving_image,
        config_text: text,
        files: carried_files(&config, &path)?,
        ..Options::default()
    };
    let export = if istio {
        infermesh_export::export_istio(&config, &options)
    } else {
        infermesh_export::export_k8s(&config, &options)
    };
    let mut yaml = format!(
        "# Generated by `infermesh export {}` from {}; do not edit by hand.\n",
        if istio { "istio" } else { "k8s" },
        flags.config.display()
    );
    yaml.push_str(&export.to_yaml()?);
    match &flags.output {
        Some(file) => {
            std::fs::write(file, yaml)
                .with_context(|| format!("cannot write {}", file.display()))?;
            for note in &export.notes {
                eprintln!("note: {note}");
            }
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    /// The ext_authz Deployment `export istio` writes runs a command line this binary
    /// accepts: its args parse with the real CLI into `ext-authz` listening on the
    /// port of the Service and of the probes.
    #[test]
    fn the_exported_ext_authz_args_parse_with_the_cli() {
        let path = crate::mesh::locate(std::path::Path::new("examples/quickstart/mesh.yaml"));
        let config = infermesh_config::load(&path).expect("quickstart mesh");
        let options = infermesh_export::Options {
            ext_authz_port: 9300,
            ..Default::default()
        };
        let export = infermesh_export::export_istio(&config, &options);
        let deploy = export
            .documents
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "infermesh-ext-authz")
            .expect("the ext_authz Deployment");
        let c = &deploy["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], serde_json::json!(["infermesh"]));
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let cli = Cli::try_parse_from(std::iter::once("infermesh").chain(args))
            .unwrap_or_else(|e| panic!("{e}"));
        let Command::ExtAuthz(parsed) = cli.command else {
            panic!("not ext-authz: {:?}", cli.command);
        };
        assert_eq!(
            parsed.config,
            std::path::Path::new("/etc/infermesh/mesh.yaml")
        );
        assert_eq!(parsed.listen, "0.0.0.0:9300".parse().unwrap());
        assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], 9300);
        let svc = export
            .documents
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "infermesh-ext-authz")
            .expect("the ext_authz Service");
        assert_eq!(svc["spec"]["ports"][0]["port"], 9300);
    }
}
