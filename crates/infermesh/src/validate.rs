//! `infermesh validate FILE...`: checks mesh files exactly as `gateway`, `sidecar` and
//! `up` would at start, without starting anything. Prints one summary line per valid
//! file; every error with file:line:col otherwise. Exit 0 when all are valid, 64 when
//! any is not.

use std::path::PathBuf;

use clap::Args;

use crate::error::InvalidConfig;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Mesh intent files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<()> {
    let mut invalid = Vec::new();
    for file in &args.files {
        let text = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) => {
                invalid.push(format!("{}: cannot read: {e}", file.display()));
                continue;
            }
        };
        match infermesh_config::load(file) {
            Ok(config) => println!(
                "{}: valid — {} workloads, {} models, {} policies, {} issuers; digest sha256:{}",
                file.display(),
                config.workloads.len(),
                config.models.len(),
                config.policies.len(),
                config.issuers.len(),
                infermesh_config::digest(&String::from_utf8_lossy(&text)),
            ),
            Err(errors) => invalid.push(errors.to_string()),
        }
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(InvalidConfig::error(invalid.join("\n")))
    }
}
