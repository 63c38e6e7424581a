//! Oura scenario: simulated Oura webhook notifications against `manifold serve` (the release
//! binary) with the SQLite store and the Oura simulator (`oura-sim`) running in this process.
//!
//! 1. **Intake**: N distinct, correctly signed notifications (`x-oura-signature` = upper-hex
//!    HMAC-SHA256(client secret, `x-oura-timestamp` ‖ raw body), computed here independently of
//!    Manifold's code) for connected users are posted to `POST /oura/webhook` as fast as C
//!    keep-alive HTTP/1.1 connections allow; every 200 counts (200 = durably recorded). This
//!    server runs with Oura's real request budget (5,000 per 5 minutes), so its fetch workers
//!    trickle as they would in production instead of competing with the intake; the notified
//!    documents do not exist (those few fetches get 404).
//! 2. **Latency**: a fresh server with a budget high enough never to throttle. Documents are
//!    created in the simulator without the simulator notifying anyone, then one notification per
//!    document is sent at a steady rate; the latency of each is from just before its POST to
//!    the arrival at the webhook receiver of the Terra payload whose `summary_id` is the
//!    document's Oura id (sleep → `sleep`, workout → `activity`). The simulator adds no latency
//!    (no slow-response fault); each fetch is a loopback round trip to it.
//! 3. Peak RSS (VmHWM) of each server.
//!
//! Users connect through the real OAuth redirects (authenticateUser → simulator consent →
//! `/oura/callback`). Backfill, heart-rate polling and the reconcile are off (printed), so only
//! the notification path runs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use hmac::{Hmac, Mac};
use oura_sim::{SimConfig, SyncRequest};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{cpu_secs, cpus, free_port, pct, rss_peak_kb, spawn_manifold};

const CLIENT_ID: &str = "sim-client-id";
const CLIENT_SECRET: &str = "bench-oura-client-secret";
const VERIFY: &str = "bench-verification-token";
const API_KEY: &str = "bench";
/// base64 of 32 bytes: encrypts the Oura tokens of the temporary store.
const TOKEN_KEY: &str = "YmVuY2gtb25seS10b2tlbi1rZXktMzItYnl0ZXMhISE=";
/// Data types of the intake notifications (all supported, so they are recorded `pending`).
const INTAKE_TYPES: &[&str] = &[
    "sleep",
    "daily_sleep",
    "daily_activity",
    "daily_readiness",
    "workout",
    "session",
    "daily_spo2",
    "daily_stress",
];
/// Oura's own request budget per application.
const OURA_RATE_LIMIT: u32 = 5000;
const OURA_RATE_WINDOW: &str = "300s";

#[derive(clap::Args)]
pub struct Args {
    /// The manifold binary to run.
    #[arg(long, default_value = "target/release/manifold")]
    manifold: PathBuf,
    /// Simulated Oura users, each connected through the OAuth redirects.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Notifications for the intake phase (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    notifications: usize,
    /// Concurrent keep-alive connections posting notifications in the intake phase.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Steady notification rate of the latency phase (notifications/s).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Length of the latency phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// `oura.fetch_concurrency` of the latency-phase server (documents fetched at once).
    #[arg(long, default_value_t = 16)]
    fetch_concurrency: usize,
    /// `oura.rate_limit` of the latency-phase server (requests per `--rate-window`).
    #[arg(long, default_value_t = 10_000_000)]
    rate_limit: u32,
    /// `oura.rate_window` of the latency-phase server.
    #[arg(long, default_value = "60s")]
    rate_window: String,
    /// Webhook concurrency of the destination.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seed of the simulated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Server-side settings of one phase.
struct Settings {
    fetch_concurrency: usize,
    rate_limit: u32,
    rate_window: String,
    concurrency: usize,
}

impl Settings {
    fn describe(&self) -> String {
        format!(
            "oura.rate_limit {} per {}, oura.fetch_concurrency {}, webhook concurrency {}, \
             backfill_days 0, heartrate_poll 0s, reconcile_every 0s",
            self.rate_limit, self.rate_window, self.fetch_concurrency, self.concurrency
        )
    }
}

/// One payload's arrival: when, and the payload's creation time (`x-terra-ordering-timestamp`,
/// Unix ms) with the receiver's wall clock then.
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    created_ms: Option<i64>,
    wall_ms: i64,
}

/// First arrival at the receiver of each `summary_id`, and payloads per Terra type.
#[derive(Default)]
struct Recv {
    at: HashMap<String, Arrival>,
    types: BTreeMap<String, usize>,
}

fn wall_ms() -> i64 {
    Utc::now().timestamp_millis()
}

async fn receive(State(r): State<Arc<Mutex<Recv>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let arrival = Arrival {
        at: Instant::now(),
        created_ms: headers
            .get("x-terra-ordering-timestamp")
            .and_then(|v| v.to_str().ok()?.parse().ok()),
        wall_ms: wall_ms(),
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut ids = Vec::new();
    for item in v["data"].as_array().into_iter().flatten() {
        if let Some(id) = item["metadata"]["summary_id"].as_str() {
            ids.push(id.to_string());
        }
    }
    for item in v["deleted"].as_array().into_iter().flatten() {
        if let Some(id) = item["summary_id"].as_str() {
            ids.push(id.to_string());
        }
    }
    let mut r = r.lock().unwrap();
    *r.types
        .entry(v["type"].as_str().unwrap_or("?").to_string())
        .or_default() += 1;
    for id in ids {
        r.at.entry(id).or_insert(arrival);
    }
    StatusCode::OK
}

fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(body);
    hex::encode_upper(mac.finalize().into_bytes())
}

fn notification(event_type: &str, data_type: &str, object_id: &str, user_id: &str) -> String {
    json!({
        "event_type": event_type,
        "data_type": data_type,
        "object_id": object_id,
        "event_time": Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string(),
        "user_id": user_id,
    })
    .to_string()
}

fn config_text(port: u16, db: &Path, sim: &str, receiver: SocketAddr, s: &Settings) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
api_keys = ["{API_KEY}"]

[store]
url = "sqlite://{db}"

[oura]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
verification_token = "{VERIFY}"
api_base = "{sim}"
auth_base = "{sim}"
token_keys = ["{TOKEN_KEY}"]
sync_subscriptions = false
backfill_days = 0
heartrate_poll = "0s"
reconcile_every = "0s"
fetch_concurrency = {fc}
rate_limit = {rl}
rate_window = "{rw}"

[[destinations]]
name = "bench"
type = "webhook"
url = "http://{receiver}/hook"
signing_secret = "bench-secret"
allow_private_network = true
concurrency = {c}
"#,
        db = db.display(),
        fc = s.fetch_concurrency,
        rl = s.rate_limit,
        rw = s.rate_window,
        c = s.concurrency,
    )
}

fn location(res: &reqwest::Response) -> anyhow::Result<String> {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("expected a redirect, got {}", res.status()))
}

/// Terra's connect flow as a browser follows it: authenticateUser → the simulator's consent
/// page (approving as user `index`) → `/oura/callback` → the success URL.
async fn connect(http: &reqwest::Client, base: &str, index: usize) -> anyhow::Result<()> {
    let res = http
        .post(format!("{base}/v2/auth/authenticateUser?resource=OURA"))
        .header("x-api-key", API_KEY)
        .json(&json!({
            "reference_id": format!("bench-user-{index}"),
            "auth_success_redirect_url": "https://app.example.com/connected",
            "auth_failure_redirect_url": "https://app.example.com/failed",
        }))
        .send()
        .await?;
    let body: Value = res.json().await?;
    let auth_url = body["auth_url"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("authenticateUser answered {body}"))?;
    let consent = http.get(format!("{auth_url}&user={index}")).send().await?;
    let callback = location(&consent)?;
    let done = http.get(&callback).send().await?;
    let landing = location(&done)?;
    if !landing.starts_with("https://app.example.com/connected") {
        bail!("connecting simulated user {index} ended at {landing}");
    }
    Ok(())
}

struct Server {
    child: tokio::process::Child,
    pid: u32,
    port: u16,
}

async fn start_server(
    args: &Args,
    dir: &Path,
    name: &str,
    sim: &str,
    receiver: SocketAddr,
    s: &Settings,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        config_text(port, &dir.join(format!("{name}.db")), sim, receiver, s),
    )?;
    let child = spawn_manifold(&args.manifold, &config, port).await?;
    let pid = child.id().unwrap_or(0);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = format!("http://127.0.0.1:{port}");
    for i in 0..args.users {
        connect(&http, &base, i)
            .await
            .with_context(|| format!("connecting simulated user {i} to {name}"))?;
    }
    Ok(Server { child, pid, port })
}

/// Read one HTTP/1.1 response (with `content-length`) from `stream`; returns its status.
/// `buf` keeps bytes read past the response.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("bad status line in {head:?}"))?;
            let mut len = None;
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse::<usize>().ok();
                    } else if k.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("chunked responses are not supported by this client: {head:?}");
                    }
                }
            }
            let len = len.ok_or_else(|| anyhow::anyhow!("no content-length in {head:?}"))?;
            let total = end + 4 + len;
            while buf.len() < total {
                if stream.read_buf(buf).await? == 0 {
                    bail!("the server closed the connection mid-response");
                }
            }
            buf.drain(..total);
            return Ok(status);
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("the server closed the connection");
        }
    }
}

/// One keep-alive connection posting requests `next..` until none are left.
async fn post_loop(
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicUsize>,
) -> anyhow::Result<BTreeMap<u16, usize>> {
    let mut counts = BTreeMap::new();
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(req) = reqs.get(i) else { break };
        stream.write_all(req).await?;
        let status = read_response(&mut stream, &mut buf).await?;
        *counts.entry(status).or_default() += 1;
    }
    Ok(counts)
}

struct IntakeResult {
    secs: f64,
    statuses: BTreeMap<u16, usize>,
    server_cpu: f64,
    bench_cpu: f64,
    rss_mb: f64,
}

async fn intake_phase(
    args: &Args,
    dir: &Path,
    sim: &oura_sim::RunningSim,
    receiver: SocketAddr,
    users: &[String],
) -> anyhow::Result<IntakeResult> {
    let settings = Settings {
        fetch_concurrency: 4,
        rate_limit: OURA_RATE_LIMIT,
        rate_window: OURA_RATE_WINDOW.into(),
        concurrency: args.concurrency,
    };
    println!("  intake server: {}", settings.describe());
    let mut server = start_server(args, dir, "intake", &sim.base_url, receiver, &settings).await?;
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse()?;
    // Pre-build every request so the clients spend their CPU on I/O only.
    let ts = Utc::now().timestamp().to_string();
    let reqs: Vec<Vec<u8>> = (0..args.notifications)
        .map(|i| {
            let body = notification(
                "create",
                INTAKE_TYPES[i % INTAKE_TYPES.len()],
                &format!("bench-intake-{i:09}"),
                &users[i % users.len()],
            );
            let sig = sign(&ts, body.as_bytes());
            format!(
                "POST /oura/webhook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                 x-oura-timestamp: {ts}\r\nx-oura-signature: {sig}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let (cpu0_server, cpu0_bench) = (cpu_secs(server.pid), cpu_secs(std::process::id()));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(post_loop(addr, reqs.clone(), next.clone())))
        .collect();
    let mut statuses = BTreeMap::new();
    for t in tasks {
        for (s, n) in t.await?? {
            *statuses.entry(s).or_default() += n;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(server.pid) - cpu0_server;
    let bench_cpu = cpu_secs(std::process::id()) - cpu0_bench;
    let rss_mb = rss_peak_kb(server.pid) as f64 / 1024.0;
    let _ = server.child.kill().await;
    Ok(IntakeResult {
        secs,
        statuses,
        server_cpu,
        bench_cpu,
        rss_mb,
    })
}

struct LatencyResult {
    total: usize,
    not_accepted: usize,
    lat_ms: Vec<f64>,
    /// notification POST → payload created (wall clock, ms).
    to_payload_ms: Vec<f64>,
    /// payload created → received (wall clock, ms).
    to_receiver_ms: Vec<f64>,
    types: BTreeMap<String, usize>,
    oura_requests: u64,
    /// Server CPU seconds and wall seconds from the first notification to the last payload.
    server_cpu: f64,
    secs: f64,
    rss_mb: f64,
}

async fn latency_phase(
    args: &Args,
    dir: &Path,
    sim: &oura_sim::RunningSim,
    receiver: SocketAddr,
    recv: &Arc<Mutex<Recv>>,
    users: &[String],
) -> anyhow::Result<LatencyResult> {
    let settings = Settings {
        fetch_concurrency: args.fetch_concurrency,
        rate_limit: args.rate_limit,
        rate_window: args.rate_window.clone(),
        concurrency: args.concurrency,
    };
    println!("  latency server: {}", settings.describe());
    let mut server = start_server(args, dir, "latency", &sim.base_url, receiver, &settings).await?;

    // Documents that exist in the simulator, created without the simulator notifying anyone.
    let total = (args.rate * args.seconds) as usize;
    let end_day = sim
        .sim
        .config()
        .end_day
        .context("the simulator's end_day is set by this bench")?;
    let days = i64::from(sim.sim.config().days.max(1));
    let mut docs = Vec::with_capacity(total);
    for k in 0..total {
        let user = k % users.len();
        let data_type = if k % 2 == 0 { "sleep" } else { "workout" };
        let day = end_day - chrono::Duration::days(((k / users.len()) as i64) % days);
        let out = sim
            .sim
            .sync_silently(SyncRequest {
                user: json!(user),
                data_type: data_type.into(),
                day: Some(day),
                operation: Some("create".into()),
                object_id: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating a simulated {data_type}: {e}"))?;
        docs.push((data_type, out.event.object_id, users[user].clone()));
    }

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("http://127.0.0.1:{}/oura/webhook", server.port);
    let requests_before = sim.sim.request_count();
    let (cpu0, t0) = (cpu_secs(server.pid), Instant::now());
    let sent: Arc<Mutex<HashMap<String, (Instant, i64)>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    let mut inflight = Vec::with_capacity(total);
    for (data_type, object_id, user_id) in docs {
        ticker.tick().await;
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        inflight.push(tokio::spawn(async move {
            let body = notification("create", data_type, &object_id, &user_id);
            let ts = Utc::now().timestamp().to_string();
            let sig = sign(&ts, body.as_bytes());
            sent.lock()
                .unwrap()
                .insert(object_id, (Instant::now(), wall_ms()));
            client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-oura-timestamp", ts)
                .header("x-oura-signature", sig)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }));
    }
    let mut not_accepted = 0;
    for t in inflight {
        if !t.await? {
            not_accepted += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let r = recv.lock().unwrap();
            let s = sent.lock().unwrap();
            s.keys().filter(|k| r.at.contains_key(*k)).count()
        };
        if done + not_accepted >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let oura_requests = sim.sim.request_count() - requests_before;
    let (server_cpu, secs) = (cpu_secs(server.pid) - cpu0, t0.elapsed().as_secs_f64());
    let (mut lat_ms, mut to_payload_ms, mut to_receiver_ms) = (Vec::new(), Vec::new(), Vec::new());
    let types = {
        let r = recv.lock().unwrap();
        let s = sent.lock().unwrap();
        for (k, (t0, w0)) in s.iter() {
            let Some(a) = r.at.get(k) else { continue };
            lat_ms.push((a.at - *t0).as_secs_f64() * 1e3);
            if let Some(c) = a.created_ms {
                to_payload_ms.push((c - w0) as f64);
                to_receiver_ms.push((a.wall_ms - c) as f64);
            }
        }
        r.types.clone()
    };
    let rss_mb = rss_peak_kb(server.pid) as f64 / 1024.0;
    let _ = server.child.kill().await;
    Ok(LatencyResult {
        total,
        not_accepted,
        lat_ms,
        to_payload_ms,
        to_receiver_ms,
        types,
        oura_requests,
        server_cpu,
        secs,
        rss_mb,
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let recv = Arc::new(Mutex::new(Recv::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(recv.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sim = oura_sim::try_start(SimConfig {
        users: args.users,
        days: 30,
        seed: args.seed,
        end_day: Some(Utc::now().date_naive() - chrono::Duration::days(1)),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        ..SimConfig::default()
    })
    .await?;
    let users: Vec<String> = sim.sim.users().into_iter().map(|u| u.id).collect();
    let dir = tempfile::tempdir()?;

    println!(
        "manifold bench: oura notifications, SQLite store, loopback, {} CPUs",
        cpus()
    );
    println!(
        "  oura-sim in this process: {} users, no injected latency or faults; {} users connected via OAuth",
        users.len(),
        args.users
    );
    let intake = if args.notifications > 0 {
        Some(intake_phase(&args, dir.path(), &sim, receiver, &users).await?)
    } else {
        None
    };
    let latency = if args.seconds > 0 {
        // The intake phase leaves ~100 MB of dirty pages for the kernel to write back; flush
        // them first so that writeback does not land on the latency phase's fsyncs.
        let _ = tokio::process::Command::new("sync").status().await;
        Some(latency_phase(&args, dir.path(), &sim, receiver, &recv, &users).await?)
    } else {
        None
    };
    sim.shutdown().await;

    if let Some(r) = intake {
        let ok = r.statuses.get(&200).copied().unwrap_or(0);
        let others: Vec<String> = r
            .statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(s, n)| format!("{n} × {s}"))
            .collect();
        println!(
            "  intake phase: {} distinct signed notifications, {} keep-alive connections",
            args.notifications, args.clients
        );
        println!(
            "    accepted/s     {:>10.0}   ({ok} answered 200)",
            ok as f64 / r.secs
        );
        if !others.is_empty() {
            println!("    NOT accepted   {:>10}", others.join(", "));
        }
        println!(
            "    CPU s          {:>10.2}   server, {:.2} bench (load generator + oura-sim), over {:.2} s",
            r.server_cpu, r.bench_cpu, r.secs
        );
        println!("    peak RSS MB    {:>10.1}", r.rss_mb);
    }
    if let Some(mut r) = latency {
        let types: Vec<String> = r.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
        println!(
            "  latency phase: {} notifications/s for {} s ({} of {} payloads received, {} notifications not accepted, {} Oura API requests)",
            args.rate,
            args.seconds,
            r.lat_ms.len(),
            r.total,
            r.not_accepted,
            r.oura_requests
        );
        println!("    payloads       {}", types.join(", "));
        println!("    p50 ms         {:>10.1}", pct(&mut r.lat_ms, 0.50));
        println!("    p99 ms         {:>10.1}", pct(&mut r.lat_ms, 0.99));
        println!("    max ms         {:>10.1}", pct(&mut r.lat_ms, 1.0));
        println!(
            "    of which       notification → payload created p50 {:.0} / p99 {:.0} ms, created → received p50 {:.0} / p99 {:.0} ms (wall clock, ms resolution)",
            pct(&mut r.to_payload_ms, 0.50),
            pct(&mut r.to_payload_ms, 0.99),
            pct(&mut r.to_receiver_ms, 0.50),
            pct(&mut r.to_receiver_ms, 0.99)
        );
        println!(
            "    CPU s          {:>10.2}   server, over {:.2} s (first notification → last payload)",
            r.server_cpu, r.secs
        );
        println!("    peak RSS MB    {:>10.1}", r.rss_mb);
    }
    Ok(())
}
