//! `manifold`: the one binary. `serve` runs the engine and HTTP API; `check` validates a config;
//! `deliveries` inspects and replays the outbox; `demo` shows the whole flow with no setup.

mod backfill;
mod cli;
mod demo;
mod oura_cli;
mod registry;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: the request path allocates many small short-lived buffers
/// across threads, where glibc's arenas spent ~10% of the server's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.log_format, cli.command.default_log_level());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(cli::run(cli))
}

fn init_logging(format: cli::LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
}
