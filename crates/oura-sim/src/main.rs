//! `oura-sim` binary: runs the Oura API v2 simulator until Ctrl-C.

use std::time::Duration;

use chrono::NaiveDate;
use clap::Parser;
use oura_sim::{Faults, SimConfig};

#[derive(Parser, Debug)]
#[command(name = "oura-sim", about = "Oura API v2 simulator")]
struct Args {
    /// Port on 127.0.0.1 (0 = pick a free one).
    #[arg(long, default_value_t = 0, env = "OURA_SIM_PORT")]
    port: u16,
    #[arg(long, default_value_t = 3)]
    users: usize,
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Last day with data (YYYY-MM-DD; default yesterday UTC).
    #[arg(long)]
    end_day: Option<NaiveDate>,
    #[arg(long, default_value = "sim-client-id")]
    client_id: String,
    #[arg(long, default_value = "sim-client-secret")]
    client_secret: String,
    /// Registered redirect URI (repeatable; none = accept any).
    #[arg(long)]
    redirect_uri: Vec<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    token_ttl: u64,
    /// Background sync ticker interval in seconds (0 = off).
    #[arg(long, default_value_t = 0.0)]
    sync_interval: f64,
    #[arg(long, default_value_t = 50)]
    page_size: usize,
    /// Requests per user per 5 minutes.
    #[arg(long, default_value_t = 5000)]
    rate_limit: u32,
    /// Share (0..1) of /v2 requests answered 429.
    #[arg(long, default_value_t = 0.0)]
    fail_429_share: f64,
    /// Share (0..1) of /v2 requests answered 5xx.
    #[arg(long, default_value_t = 0.0)]
    fail_5xx_share: f64,
    /// Retry-After seconds for injected 429s.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Added latency per /v2 request, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// /oauth/authorize denies consent (error=access_denied).
    #[arg(long)]
    deny_authorize: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let a = Args::parse();
    let config = SimConfig {
        port: a.port,
        users: a.users,
        days: a.days,
        seed: a.seed,
        end_day: a.end_day,
        client_id: a.client_id,
        client_secret: a.client_secret,
        redirect_uris: a.redirect_uri,
        access_token_ttl: Duration::from_secs(a.token_ttl),
        page_size: a.page_size,
        rate_limit: a.rate_limit,
        sync_interval: (a.sync_interval > 0.0).then(|| Duration::from_secs_f64(a.sync_interval)),
        faults: Faults {
            rate_limit_share: a.fail_429_share,
            server_error_share: a.fail_5xx_share,
            retry_after_secs: a.retry_after,
            latency_ms: a.latency_ms,
            deny_authorize: a.deny_authorize,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let sim = oura_sim::try_start(config).await?;
    println!("oura-sim listening on {}", sim.base_url);
    for u in sim.sim.users() {
        println!("user {} id={} email={}", u.index, u.id, u.email);
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
