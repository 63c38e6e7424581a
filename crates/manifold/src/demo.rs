//! `manifold demo`: the whole product on one machine, with no account and no config.
//!
//! It starts the Oura simulator (`oura-sim`, an Oura API v2 look-alike), the engine with a
//! temporary SQLite store and the Oura connector, and a local receiver that verifies every
//! `terra-signature`. Simulated users connect through the real OAuth redirects; their rings
//! "sync", Oura-style signed notifications arrive at `/oura/webhook`, documents are fetched,
//! mapped to Terra payloads and delivered. One line is printed per payload, then a summary.
//! `--forward-to URL --secret S` also delivers every payload, signed, to your own receiver;
//! `--config FILE` adds that file's destinations (e.g. a real database or bucket).
//! `--open-ui` opens the operator dashboard (`/ui`) in a browser and keeps everything running
//! after the payloads are delivered, until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use manifold_core::{Config, Engine};
use oura_sim::{SimConfig, SyncRequest};
use serde_json::{Value, json};
use tokio::sync::watch;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated Oura users to connect.
    #[arg(long, default_value_t = 2)]
    users: usize,
    /// Days of ring data per user.
    #[arg(long, default_value_t = 2)]
    days: u32,
    /// Stop after this long even if payloads are still flowing (e.g. "30s").
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Seed for the simulated data.
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
    /// Open the dashboard (/ui) in a browser and keep running after delivery, until Ctrl-C.
    #[arg(long)]
    open_ui: bool,
}

const DEMO_SECRET: &str = "demo-signing-secret";
const API_KEY: &str = "demo-api-key";
const CLIENT_SECRET: &str = "demo-oura-client-secret";
const VERIFY: &str = "demo-verification-token";
/// A fixed demo key for encrypting tokens at rest (the store is temporary).
const TOKEN_KEY: &str = "ZGVtby1vbmx5LXRva2VuLWtleS0zMi1ieXRlcyEhISE=";

/// The Oura data types the simulated rings sync, in the order a ring uploads them.
const SYNCED: &[&str] = &[
    "sleep",
    "daily_sleep",
    "daily_activity",
    "daily_readiness",
    "workout",
];

struct Seen {
    started: Instant,
    received: usize,
    bad_signatures: usize,
    by_type: std::collections::BTreeMap<String, usize>,
    latencies_ms: Vec<f64>,
    last_at: Instant,
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
    let users = args.users.max(1);
    let dir = tempfile::tempdir()?;

    // 1. Oura (simulated)
    let sim = oura_sim::try_start(SimConfig {
        users,
        days: args.days.max(1),
        seed: args.seed,
        client_secret: CLIENT_SECRET.into(),
        delivery_backoff: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await?;

    // 2. the receiver (your app)
    let seen = Arc::new(Mutex::new(Seen {
        started: Instant::now(),
        received: 0,
        bad_signatures: 0,
        by_type: Default::default(),
        latencies_ms: Vec::new(),
        last_at: Instant::now(),
        quiet: args.quiet,
    }));
    let recv_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let recv_addr = recv_listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hooks/terra", post(receive))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(recv_listener, app).await });

    // 3. Manifold, configured by a real config text
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = api.local_addr()?;
    let mut toml = format!(
        r#"
[server]
listen = "{api_addr}"
public_url = "http://{api_addr}"
api_keys = ["{API_KEY}"]

[store]
url = "sqlite://{db}"
poll_interval = "200ms"

[oura]
client_id = "sim-client-id"
client_secret = "{CLIENT_SECRET}"
verification_token = "{VERIFY}"
api_base = "{sim}"
auth_base = "{sim}"
token_keys = ["{TOKEN_KEY}"]
sync_subscriptions = false
backfill_days = 0

[[destinations]]
name = "demo-receiver"
type = "webhook"
url = "http://{recv_addr}/hooks/terra"
signing_secret = "{DEMO_SECRET}"
allow_private_network = true
retry = {{ max_attempts = 5, initial_backoff = "1s", max_backoff = "10s" }}
"#,
        db = dir.path().join("demo.db").display(),
        sim = sim.base_url,
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
    let connector = manifold_oura::connector::Connector::new(engine.clone(), &config)
        .map_err(anyhow::Error::msg)?;
    workers.spawn(connector.clone().run(stop_rx.clone()));
    let state = manifold_server::AppState {
        engine: engine.clone(),
        api_keys: Arc::new(config.server.api_keys.clone()),
        max_body: config.server.max_body as usize,
        oura: Some(connector.clone()),
    };
    tokio::spawn(async move { axum::serve(api, manifold_server::router(state)).await });

    println!("manifold demo");
    println!(
        "  Oura      {} (simulated: {users} users, {} days)",
        sim.base_url,
        args.days.max(1)
    );
    println!(
        "  manifold  http://{api_addr}  (x-api-key: {API_KEY}; try /metrics, /admin/deliveries)"
    );
    println!("  receiver  http://{recv_addr}/hooks/terra (verifies terra-signature)");
    let dashboard = format!("http://{api_addr}/ui");
    if args.open_ui {
        // The fragment never reaches the server; the page moves the key into sessionStorage.
        let opened = open_browser(&format!("{dashboard}#key={API_KEY}"));
        println!(
            "  dashboard {dashboard}  (API key: {API_KEY}; {})",
            match opened {
                Some(tool) => format!("opening it with {tool}"),
                None => "open it in a browser".to_string(),
            }
        );
    } else {
        println!("  dashboard {dashboard}  (API key: {API_KEY}; --open-ui keeps it running)");
    }
    if let Some(url) = &args.forward_to {
        println!("  forward   {url}");
    }
    println!("  store     {}", dir.path().join("demo.db").display());
    println!();

    // 4. webhook subscriptions (Oura verifies our callback with its challenge handshake)
    let subs = connector
        .sync_subscriptions(Duration::from_secs(86_400))
        .await
        .map_err(|e| anyhow::anyhow!("subscribing to Oura webhooks: {e}"))?;
    if !args.quiet {
        println!("subscribed to {} Oura webhook types", subs.len());
    }

    // 5. users connect through the real OAuth redirects
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for i in 0..users {
        let user_id = connect(
            &http,
            &format!("http://{api_addr}"),
            i,
            &format!("app-user-{i}"),
        )
        .await?;
        if !args.quiet {
            println!("connected app-user-{i} → Terra user {user_id}");
        }
    }

    // 6. the rings sync: every data type, every day, as Oura notifications
    let today = Utc::now().date_naive();
    for d in 0..args.days.max(1) {
        let day = today - chrono::Duration::days(i64::from(d) + 1);
        for i in 0..users {
            for t in SYNCED {
                sim.sim
                    .sync(SyncRequest {
                        user: json!(i),
                        data_type: (*t).to_string(),
                        day: Some(day),
                        // Day documents exist once per day: a sync updates them; sleep periods and
                        // workouts are new documents.
                        operation: Some(
                            if t.starts_with("daily_") {
                                "update"
                            } else {
                                "create"
                            }
                            .into(),
                        ),
                        object_id: None,
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("simulated sync of {t}: {e:?}"))?;
            }
        }
    }
    if !args.quiet {
        println!("rings synced; payloads:\n");
    }

    // 7. wait until everything is delivered and quiet (or the duration ends)
    let deadline = Instant::now() + duration;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let quiet_for = seen.lock().map(|s| s.last_at.elapsed()).unwrap_or_default();
        let pending: i64 = engine
            .store()
            .queue_stats()
            .await
            .map(|m| m.values().map(|s| s.pending).sum())
            .unwrap_or(0);
        let received = seen.lock().map(|s| s.received).unwrap_or(0);
        // Done means the whole pipeline is empty, not merely quiet for a moment: the simulator
        // has sent every notification, the engine has fetched every one of them, the backfills
        // after connect have finished, and the outbox holds nothing pending.
        let sim_sending = sim
            .sim
            .deliveries()
            .iter()
            .any(|d| d["status"] == "pending");
        let store = engine.store();
        let fetching = store.oura_notifications_due().await.unwrap_or(1) > 0;
        let backfilling = match store.history_requests(None, Some("processing"), 1).await {
            Ok(r) => !r.is_empty(),
            Err(_) => true,
        } || match store.history_requests(None, Some("rate_limited"), 1).await {
            Ok(r) => !r.is_empty(),
            Err(_) => true,
        };
        let idle = !sim_sending && !fetching && !backfilling && pending == 0;
        if (received > 0 && idle && quiet_for > Duration::from_millis(1500))
            || Instant::now() > deadline
        {
            break;
        }
    }
    if !args.open_ui {
        let _ = stop_tx.send(true);
        while workers.join_next().await.is_some() {}
    }
    let ok = summary(&seen)?;
    if args.open_ui {
        println!();
        println!(
            "dashboard {dashboard} (API key: {API_KEY}) is still running; press Ctrl-C to stop"
        );
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        while workers.join_next().await.is_some() {}
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Print the summary line; true when every payload was signed correctly and sleep and daily
/// payloads arrived.
fn summary(seen: &Mutex<Seen>) -> anyhow::Result<bool> {
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
    let types: Vec<String> = s.by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!();
    println!(
        "summary: {} payloads delivered ({}), {} bad signatures, commit→receive p50 {:.1} ms p99 {:.1} ms",
        s.received - s.bad_signatures,
        types.join(", "),
        s.bad_signatures,
        pct(0.5),
        pct(0.99)
    );
    Ok(s.bad_signatures == 0 && s.by_type.contains_key("sleep") && s.by_type.contains_key("daily"))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Ask the desktop to open `url` (`open` on macOS, `xdg-open` under X11/Wayland). Returns the
/// tool used, or None when there is none (the caller prints the URL either way). Without a
/// display `xdg-open` would fall back to a text browser in this terminal, so it is not tried.
fn open_browser(url: &str) -> Option<&'static str> {
    let tool = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return None;
    };
    let path = std::env::var_os("PATH")?;
    let exe = std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())?;
    let spawned = tokio::process::Command::new(exe)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            // Reap it; whether a browser really opened is up to the desktop.
            tokio::spawn(async move { child.wait().await });
            Some(tool)
        }
        Err(_) => None,
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn location(res: &reqwest::Response) -> anyhow::Result<String> {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("expected a redirect, got {}", res.status()))
}

/// Terra's connect flow, following each redirect as a browser would: authenticateUser →
/// Oura's consent page (the simulator approves as user `index`) → /oura/callback → success URL.
async fn connect(
    http: &reqwest::Client,
    base: &str,
    index: usize,
    reference: &str,
) -> anyhow::Result<String> {
    let res = http
        .post(format!("{base}/v2/auth/authenticateUser?resource=OURA"))
        .header("x-api-key", API_KEY)
        .json(&json!({
            "reference_id": reference,
            "auth_success_redirect_url": "https://app.example.com/connected",
            "auth_failure_redirect_url": "https://app.example.com/failed",
        }))
        .send()
        .await?;
    let body: Value = res.json().await?;
    let auth_url = body["auth_url"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("authenticateUser: {body}"))?;
    let consent = http.get(format!("{auth_url}&user={index}")).send().await?;
    let callback = location(&consent)?;
    let done = http.get(&callback).send().await?;
    let landing = location(&done)?;
    if !landing.starts_with("https://app.example.com/connected") {
        anyhow::bail!("connecting {reference} ended at {landing}");
    }
    Ok(body["user_id"].as_str().unwrap_or("?").to_string())
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
    let emitted_ms = headers
        .get("x-terra-ordering-timestamp")
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
    let Ok(mut s) = seen.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    s.received += 1;
    s.last_at = Instant::now();
    if !ok {
        s.bad_signatures += 1;
        eprintln!("receiver: BAD SIGNATURE");
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let t = v["type"].as_str().unwrap_or("?").to_string();
    *s.by_type.entry(t.clone()).or_default() += 1;
    let latency = emitted_ms
        .map(|e| (Utc::now().timestamp_millis() - e) as f64)
        .unwrap_or(0.0);
    s.latencies_ms.push(latency);
    if !s.quiet {
        let item = &v["data"][0];
        let what = match t.as_str() {
            "sleep" => format!(
                "{} asleep {:.1} h, score {}",
                item["metadata"]["start_time"]
                    .as_str()
                    .map(|x| &x[..10.min(x.len())])
                    .unwrap_or(""),
                item["sleep_durations_data"]["asleep"]["duration_asleep_state_seconds"]
                    .as_f64()
                    .unwrap_or(0.0)
                    / 3600.0,
                item["scores"]["sleep"]
                    .as_i64()
                    .map(|n| n.to_string())
                    .unwrap_or("-".into())
            ),
            "daily" => format!(
                "{} steps {}, activity score {}",
                item["metadata"]["start_time"]
                    .as_str()
                    .map(|x| &x[..10.min(x.len())])
                    .unwrap_or(""),
                item["distance_data"]["steps"]
                    .as_i64()
                    .map(|n| n.to_string())
                    .unwrap_or("-".into()),
                item["scores"]["activity"]
                    .as_i64()
                    .map(|n| n.to_string())
                    .unwrap_or("-".into())
            ),
            "activity" => format!(
                "{} {}",
                item["metadata"]["start_time"]
                    .as_str()
                    .map(|x| &x[..16.min(x.len())])
                    .unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("workout")
            ),
            _ => v["status"]
                .as_str()
                .or(v["message"].as_str())
                .unwrap_or("")
                .to_string(),
        };
        println!(
            "{:>7.2}s  {:<9} {:<12} {:<44} signature ok {:>6.1} ms",
            s.started.elapsed().as_secs_f64(),
            t,
            v["user"]["reference_id"].as_str().unwrap_or("?"),
            what,
            latency
        );
    }
    StatusCode::OK
}
