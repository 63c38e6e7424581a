//! Publish → webhook benchmark on loopback with the SQLite store.
//!
//! Starts a receiver, runs `manifold serve` (the release binary) with one webhook destination,
//! then measures:
//! 1. accepted/s: N events published as fast as C keep-alive clients can (202 = committed);
//! 2. delivered/s: from the first to the last delivery of those N events;
//! 3. p50/p99 publish→receive latency at a steady rate (default 1,000 events/s);
//! 4. the server's peak RSS (VmHWM).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{cpus, free_port, pct, rss_peak_kb, spawn_manifold};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

#[derive(clap::Args)]
pub struct Args {
    /// The manifold binary to run.
    #[arg(long, default_value = "target/release/manifold")]
    manifold: PathBuf,
    /// Events for the throughput phase.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrent publishing clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Steady rate for the latency phase (events/s).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Length of the latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Webhook concurrency of the destination.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Default)]
struct Recv {
    at: HashMap<String, Instant>,
}

async fn receive(State(r): State<Arc<Mutex<Recv>>>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    // the event key sits in a fixed place; avoid a full parse to keep the receiver cheap
    let s = std::str::from_utf8(&body).unwrap_or("");
    if let Some(i) = s.find("\"summary_id\":\"") {
        let rest = &s[i + 14..];
        if let Some(j) = rest.find('"') {
            r.lock()
                .unwrap()
                .at
                .entry(rest[..j].to_string())
                .or_insert(now);
        }
    }
    StatusCode::OK
}

fn event(key: &str) -> String {
    format!(
        r#"{{"type":"sleep","user":{{"user_id":"bench-user","reference_id":"r","provider":"OURA"}},"version":"2022-03-16","data":[{{"metadata":{{"summary_id":"{key}","start_time":"2026-07-01T23:00:00.000000+01:00","end_time":"2026-07-02T07:00:00.000000+01:00","upload_type":1}},"sleep_durations_data":{{"asleep":{{"duration_asleep_state_seconds":27000}}}}}}]}}"#
    )
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let recv = Arc::new(Mutex::new(Recv::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let recv_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(recv.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
api_keys = ["bench"]
[store]
url = "sqlite://{db}"
[[destinations]]
name = "bench"
type = "webhook"
url = "http://{recv_addr}/hook"
signing_secret = "bench-secret"
allow_private_network = true
concurrency = {c}
"#,
            db = dir.path().join("bench.db").display(),
            c = args.concurrency
        ),
    )?;
    let mut server = spawn_manifold(&args.manifold, &config, port).await?;
    let pid = server.id().unwrap_or(0);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let url = format!("http://127.0.0.1:{port}/v2/events");

    // Phase 1: throughput
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        let n = args.events;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = client
                    .post(&url)
                    .header("x-api-key", "bench")
                    .header("content-type", "application/json")
                    .body(event(&format!("t-{i}")))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => {}
                    Ok(r) => panic!("publish failed: {}", r.status()),
                    Err(e) => panic!("publish failed: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = recv
            .lock()
            .unwrap()
            .at
            .keys()
            .filter(|k| k.starts_with("t-"))
            .count();
        if n >= args.events || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first, last, got) = {
        let r = recv.lock().unwrap();
        let times: Vec<Instant> =
            r.at.iter()
                .filter(|(k, _)| k.starts_with("t-"))
                .map(|(_, t)| *t)
                .collect();
        (
            times.iter().min().copied(),
            times.iter().max().copied(),
            times.len(),
        )
    };
    let deliver_secs = match (first, last) {
        (Some(a), Some(b)) => (b - t0).as_secs_f64().max((b - a).as_secs_f64()),
        _ => f64::NAN,
    };

    // Phase 2: latency at a steady rate
    let total = (args.rate * args.seconds) as usize;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    let mut inflight = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        inflight.push(tokio::spawn(async move {
            let key = format!("l-{i}");
            sent.lock().unwrap().insert(key.clone(), Instant::now());
            let _ = client
                .post(&url)
                .header("x-api-key", "bench")
                .body(event(&key))
                .send()
                .await;
        }));
    }
    for t in inflight {
        t.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = recv
            .lock()
            .unwrap()
            .at
            .keys()
            .filter(|k| k.starts_with("l-"))
            .count();
        if n >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat: Vec<f64> = {
        let r = recv.lock().unwrap();
        let s = sent.lock().unwrap();
        s.iter()
            .filter_map(|(k, t0)| r.at.get(k).map(|t1| (*t1 - *t0).as_secs_f64() * 1e3))
            .collect()
    };
    let rss_mb = rss_peak_kb(pid) as f64 / 1024.0;
    let _ = server.kill().await;

    println!(
        "manifold bench: publish -> webhook, SQLite store, loopback, {} CPUs",
        cpus()
    );
    println!(
        "  throughput phase: {} events, {} clients, destination concurrency {}",
        args.events, args.clients, args.concurrency
    );
    println!(
        "    accepted/s     {:>10.0}",
        args.events as f64 / publish_secs
    );
    println!(
        "    delivered/s    {:>10.0}   ({got} of {} delivered)",
        got as f64 / deliver_secs,
        args.events
    );
    println!(
        "  latency phase: {} events/s for {} s ({} of {} received)",
        args.rate,
        args.seconds,
        lat.len(),
        total
    );
    println!("    p50 ms         {:>10.1}", pct(&mut lat, 0.50));
    println!("    p99 ms         {:>10.1}", pct(&mut lat, 0.99));
    println!("  peak RSS MB      {:>10.1}", rss_mb);
    Ok(())
}
