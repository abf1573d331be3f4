//! `infermesh schema [-o FILE]`: the JSON Schema (draft 2020-12) of `mesh.yaml`, built
//! from the field lists the config reader checks with, for editors to complete and
//! check the file. `docs/mesh.schema.json` is the same text, committed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Editors: put `# yaml-language-server: $schema=<path or URL of the \
    schema>` on the first line of mesh.yaml (VS Code's YAML extension, and other editors \
    using yaml-language-server). `infermesh validate` checks more than the schema can: \
    see docs/config.md."
)]
pub struct SchemaArgs {
    /// Write the schema to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: SchemaArgs) -> anyhow::Result<()> {
    let text = infermesh_config::json_schema_text();
    match args.output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write to standard output"),
    }
}
