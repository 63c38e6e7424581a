//! `manifold-bench`: load generator + receivers for Manifold, on loopback with the SQLite store.
//!
//! * `manifold-bench [publish]` (the default): publish → webhook — events accepted/s,
//!   deliveries/s, p50/p99 publish→receive latency at a steady rate, peak RSS ([`publish`]).
//! * `manifold-bench oura`: Oura webhook intake — notifications accepted/s by
//!   `POST /oura/webhook`, and notification → Terra webhook payload p50/p99 at a steady rate
//!   with the documents fetched from an in-process Oura simulator, peak RSS ([`oura`]).
//!
//! `cargo build --release -p manifold -p manifold-bench --no-default-features &&
//! target/release/manifold-bench [oura]`

mod common;
mod oura;
mod publish;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    scenario: Option<Scenario>,
    /// Options of the default scenario (`publish`).
    #[command(flatten)]
    publish: publish::Args,
}

#[derive(Subcommand)]
enum Scenario {
    /// Publish → webhook (the default).
    Publish(publish::Args),
    /// Oura notifications: intake throughput and notification → webhook latency.
    Oura(oura::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        None => publish::run(cli.publish).await,
        Some(Scenario::Publish(a)) => publish::run(a).await,
        Some(Scenario::Oura(a)) => oura::run(a).await,
    }
}
