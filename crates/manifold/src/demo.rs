//! `manifold demo`: the engine with an embedded store, generated Terra payloads for a few
//! simulated users, and a local receiver that verifies every `terra-signature` and prints what
//! arrives. `--forward-to URL --secret S` also delivers to your own receiver; `--config FILE` adds
//! that file's destinations.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use manifold_core::{Config, Engine};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 3)]
    users: u32,
    /// Days of data per user.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Stop after this long even if deliveries are still pending (e.g. "30s").
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Seed for the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also deliver every payload, signed, to this URL.
    #[arg(long, requires = "secret")]
    forward_to: Option<String>,
    /// Signing secret for --forward-to.
    #[arg(long)]
    secret: Option<String>,
    /// Add the destinations of this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
}

const DEMO_SECRET: &str = "demo-signing-secret";

struct Seen {
    started: Instant,
    trace_ids: HashSet<String>,
    received: usize,
    bad_signatures: usize,
    latencies_ms: Vec<f64>,
    quiet: bool,
}

pub async fn run(args: DemoArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_inner(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let duration =
        manifold_core::config::duration::parse(&args.duration).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;

    // 1. the local receiver
    let seen = Arc::new(Mutex::new(Seen {
        started: Instant::now(),
        trace_ids: HashSet::new(),
        received: 0,
        bad_signatures: 0,
        latencies_ms: Vec::new(),
        quiet: args.quiet,
    }));
    let recv_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let recv_addr = recv_listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hooks/terra", post(receive))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(recv_listener, app).await });

    // 2. the engine, configured by a real config text
    let mut toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
api_keys = ["demo-api-key"]

[store]
url = "sqlite://{db}"
poll_interval = "200ms"

[[destinations]]
name = "demo-receiver"
type = "webhook"
url = "http://{recv_addr}/hooks/terra"
signing_secret = "{DEMO_SECRET}"
allow_private_network = true
retry = {{ max_attempts = 5, initial_backoff = "1s", max_backoff = "10s" }}
"#,
        db = dir.path().join("demo.db").display()
    );
    if let (Some(url), Some(secret)) = (&args.forward_to, &args.secret) {
        toml.push_str(&format!(
            "\n[[destinations]]\nname = \"forward\"\ntype = \"webhook\"\nurl = {}\nsigning_secret = {}\nallow_private_network = true\n",
            toml_string(url),
            toml_string(secret)
        ));
    }
    let registry = crate::registry::registry();
    let mut config = Config::from_str(&toml, "<demo>", &registry, &|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(path) = &args.config {
        let extra = Config::load(path, &registry).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.destinations.extend(extra.destinations);
    }
    let engine = Engine::from_config(&config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = engine.start(stop_rx.clone());
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = api.local_addr()?;
    let state = manifold_server::AppState {
        engine: engine.clone(),
        api_keys: Arc::new(config.server.api_keys.clone()),
        max_body: config.server.max_body as usize,
        oura: None,
    };
    tokio::spawn(async move { axum::serve(api, manifold_server::router(state)).await });

    println!("manifold demo");
    println!("  store     {}", dir.path().join("demo.db").display());
    println!("  receiver  http://{recv_addr}/hooks/terra (verifies terra-signature)");
    if let Some(url) = &args.forward_to {
        println!("  forward   {url}");
    }
    println!(
        "  API       http://{api_addr}  (x-api-key: demo-api-key; try /metrics, /admin/deliveries)"
    );
    println!();

    // 3. generated payloads for a few users
    let events = generate(args.users, args.days, args.seed);
    let total = events.len();
    let published_at = Instant::now();
    for e in &events {
        engine.publish_value(e, None).await?;
    }
    if !args.quiet {
        println!(
            "published {total} payloads in {:.1} ms; delivering…",
            published_at.elapsed().as_secs_f64() * 1e3
        );
    }

    // 4. wait until every payload arrived (or the duration ends)
    let deadline = Instant::now() + duration;
    loop {
        let done = seen
            .lock()
            .map(|s| s.trace_ids.len() >= total)
            .unwrap_or(true);
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    while workers.join_next().await.is_some() {}

    let s = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("receiver state poisoned"))?;
    let mut lat = s.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!();
    println!(
        "summary: {} published, {} distinct delivered, {} requests received, {} bad signatures, latency p50 {:.1} ms p99 {:.1} ms",
        total,
        s.trace_ids.len(),
        s.received,
        s.bad_signatures,
        pct(0.5),
        pct(0.99)
    );
    Ok(if s.trace_ids.len() >= total && s.bad_signatures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let sig = headers
        .get("terra-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = manifold_webhook::signature::verify_terra_signature(
        sig,
        &body,
        DEMO_SECRET.as_bytes(),
        Duration::from_secs(300),
    );
    let trace = headers
        .get("x-terra-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let emitted_ms = headers
        .get("x-terra-ordering-timestamp")
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
    let Ok(mut s) = seen.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    s.received += 1;
    if !ok {
        s.bad_signatures += 1;
        eprintln!("receiver: BAD SIGNATURE for trace {trace}");
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let latency = emitted_ms
        .map(|t| (Utc::now().timestamp_millis() - t) as f64)
        .unwrap_or(0.0);
    s.latencies_ms.push(latency);
    s.trace_ids.insert(trace);
    if !s.quiet {
        let item = &v["data"][0];
        let what = item["metadata"]["summary_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                item["metadata"]["start_time"]
                    .as_str()
                    .map(|t| t[..10.min(t.len())].to_string())
            })
            .unwrap_or_default();
        println!(
            "{:>7.2}s  {:<8} user {:<10} {:<24} signature ok  {:>5.1} ms",
            s.started.elapsed().as_secs_f64(),
            v["type"].as_str().unwrap_or("?"),
            v["user"]["reference_id"].as_str().unwrap_or("?"),
            what,
            latency
        );
    }
    StatusCode::OK
}

/// Deterministic Terra-shaped sleep, daily and activity payloads.
fn generate(users: u32, days: u32, seed: u64) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
    let mut out = Vec::new();
    for u in 0..users {
        let user = json!({
            "user_id": format!("demo-user-{u:04}"),
            "provider": "OURA",
            "reference_id": format!("app-user-{u}"),
            "scopes": "daily,heartrate,personal,session,workout",
            "active": true,
            "last_webhook_update": null,
        });
        for d in 0..days {
            let day = start + ChronoDuration::days(i64::from(d));
            let midnight = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default());
            let fmt =
                |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
            let bed = midnight - ChronoDuration::minutes(rng.random_range(30..120));
            let asleep_s = rng.random_range(6 * 3600..8 * 3600);
            let wake = bed + ChronoDuration::seconds(asleep_s + 1200);
            out.push(json!({
                "type": "sleep",
                "user": user,
                "version": "2022-03-16",
                "data": [{
                    "metadata": {
                        "summary_id": format!("sleep-{u}-{d}"),
                        "start_time": fmt(bed),
                        "end_time": fmt(wake),
                        "upload_type": 1,
                        "is_nap": false,
                    },
                    "sleep_durations_data": {
                        "asleep": {
                            "duration_asleep_state_seconds": asleep_s,
                            "duration_deep_sleep_state_seconds": asleep_s / 5,
                            "duration_light_sleep_state_seconds": asleep_s / 2,
                            "duration_REM_sleep_state_seconds": asleep_s - asleep_s / 5 - asleep_s / 2,
                        },
                        "other": { "duration_in_bed_seconds": asleep_s + 1200 },
                        "sleep_efficiency": asleep_s as f64 / (asleep_s + 1200) as f64,
                    },
                    "heart_rate_data": { "summary": { "avg_hr_bpm": rng.random_range(48..62), "resting_hr_bpm": rng.random_range(42..55) } },
                    "scores": { "sleep": rng.random_range(60..95) },
                }],
            }));
            let steps = rng.random_range(3_000..15_000);
            out.push(json!({
                "type": "daily",
                "user": user,
                "version": "2022-03-16",
                "data": [{
                    "metadata": { "start_time": fmt(midnight), "end_time": fmt(midnight + ChronoDuration::days(1)), "upload_type": 1 },
                    "distance_data": { "steps": steps, "distance_meters": steps as f64 * 0.76 },
                    "calories_data": { "total_burned_calories": 1800 + steps / 20, "net_activity_calories": steps / 20 },
                    "scores": { "activity": rng.random_range(50..99), "recovery": rng.random_range(50..99), "sleep": rng.random_range(50..99) },
                }],
            }));
            if d % 2 == 0 {
                let t0 = midnight + ChronoDuration::hours(17);
                out.push(json!({
                    "type": "activity",
                    "user": user,
                    "version": "2022-03-16",
                    "data": [{
                        "metadata": { "summary_id": format!("workout-{u}-{d}"), "start_time": fmt(t0), "end_time": fmt(t0 + ChronoDuration::minutes(45)), "type": 8, "name": "running", "upload_type": 1 },
                        "calories_data": { "total_burned_calories": rng.random_range(300..600) },
                        "distance_data": { "summary": { "distance_meters": rng.random_range(5000..10000) } },
                    }],
                }));
            }
        }
    }
    out
}
