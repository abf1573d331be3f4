//! The `infermesh` binary: parses the command line, sets up logging, and hands over
//! to the subcommand. Exit code 64 for invalid configuration or input, 1 for runtime
//! failures (2 for command lines clap refuses).
#![forbid(unsafe_code)]

mod audit;
mod ca;
mod ca_serve;
mod cli;
mod dev_issuer;
mod error;
mod export;
mod ext_authz;
mod identity;
mod mesh;
mod model_server;
mod policy;
mod reload;
mod schema;
mod shutdown;
mod trail;
mod up;
mod validate;

use clap::Parser;

/// mimalloc instead of glibc's malloc: allocation and free were ~14% of a loaded
/// mesh's CPU samples with glibc (per-thread arenas, `malloc_consolidate`); see
/// bench/README.md, "Allocator".
#[global_allocator]
static ALLOCATOR: infermesh_alloc::Allocator = infermesh_alloc::Allocator;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::ModelServer(args) => model_server::run(args).await,
            cli::Command::Up(args) => up::run(args).await,
            cli::Command::Gateway(args) => mesh::run_gateway(args).await,
            cli::Command::Sidecar(args) => mesh::run_sidecar(args).await,
            cli::Command::Policy(cli::PolicyArgs {
                command: cli::PolicyCommand::Check(args),
            }) => policy::check(args),
            cli::Command::Token(args) => dev_issuer::token(args),
            cli::Command::Export(args) => export::run(args),
            cli::Command::Validate(args) => validate::run(args),
            cli::Command::Schema(args) => schema::run(args),
            cli::Command::ExtAuthz(args) => ext_authz::run(args).await,
            cli::Command::Audit(args) => audit::run(args),
            cli::Command::Ca(args) => ca::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(error::exit_code(&e))
        }
    }
}

fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INFERMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}
