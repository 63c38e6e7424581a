//! `kill -9` between the webhook intake's acknowledgement and the document fetch: the real
//! `manifold serve` binary against the Oura simulator. The simulator's document route is made
//! slow, so the notification is acknowledged (stored, 200) and its fetch is in flight when
//! the server is killed; after a restart the notification is fetched and the receiver gets the
//! Terra payload with the simulator's content. SQLite and PostgreSQL.

mod oura_common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use manifold_core::Store;
use manifold_core::testdb::TempDatabase;
use oura_common::*;
use oura_sim::{FaultUpdate, SimConfig, SyncRequest};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn_serve(config: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn manifold serve");
    let client = reqwest::Client::new();
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("manifold serve did not become ready on port {port}");
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("child pid");
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn notification_status(store_url: &str, object: &str) -> Option<(String, i64)> {
    let store = Store::open(store_url, 2).await.unwrap();
    let row = store
        .oura_notifications(100)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.object_id == object)
        .map(|n| (n.status, n.attempts));
    store.close().await;
    row
}

async fn kill9_between_ack_and_fetch(store_url: &str, dir: &Path) {
    init_tracing();
    let sim = oura_sim::start(SimConfig {
        users: 1,
        days: 3,
        client_secret: SECRET.into(),
        delivery_backoff: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let (receiver_url, received) = start_receiver().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.join("manifold.toml");
    std::fs::write(
        &config,
        config_text(
            &format!("127.0.0.1:{port}"),
            store_url,
            &base,
            &sim.base_url,
            &receiver_url,
            "backfill_days = 0\nheartrate_poll = \"0s\"\nreconcile_every = \"0s\"",
        )
        .replace("sync_subscriptions = false", "sync_subscriptions = true"),
    )
    .unwrap();
    let mut server = spawn_serve(&config, port).await;

    // the server subscribes at start (the simulator verifies our callback)
    let want = manifold_oura::connector::WEBHOOK_DATA_TYPES.len() * 3;
    until("the webhook subscriptions", WAIT, || async {
        let subs = sim.sim.state()["subscriptions"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0);
        (subs >= want).then_some(())
    })
    .await;
    let user_id = connect_at(&base, 0, "ref-kill9").await;

    // every Oura data request now takes 20 s: the fetch will hang
    sim.sim
        .update_faults(FaultUpdate {
            latency_ms: Some(20_000),
            ..Default::default()
        })
        .unwrap();
    let object = sim
        .sim
        .sync(SyncRequest {
            user: json!(0),
            data_type: "sleep".into(),
            day: None,
            operation: Some("create".into()),
            object_id: None,
        })
        .await
        .unwrap()
        .event
        .object_id;
    // acknowledged: the simulator's delivery got its 2xx
    until("the notification to be acknowledged", WAIT, || async {
        sim.sim
            .deliveries()
            .iter()
            .any(|d| d["event"]["object_id"] == object.as_str() && d["status"] == "delivered")
            .then_some(())
    })
    .await;
    // and its fetch is in flight at the simulator
    let fetch = format!("GET /v2/usercollection/sleep/{object}");
    until("the document fetch to start", WAIT, || async {
        sim.sim.request_log().contains(&fetch).then_some(())
    })
    .await;

    signal(&server, "-KILL");
    let _ = server.wait().await;
    let about = |v: &Value| {
        is_type(v, "sleep") && v["data"][0]["metadata"]["summary_id"] == object.as_str()
    };
    assert_eq!(received.count(about), 0, "fetched before the kill");
    let (status, _) = notification_status(store_url, &object)
        .await
        .expect("the acknowledged notification is stored");
    assert_eq!(status, "pending");

    // Oura answers promptly again; restart on the same store
    sim.sim
        .update_faults(FaultUpdate {
            clear: true,
            ..Default::default()
        })
        .unwrap();
    server = spawn_serve(&config, port).await;
    let v = received
        .wait_for("the sleep after the restart", WAIT, about)
        .await;
    assert_eq!(v["user"]["user_id"], user_id.as_str());
    let token = sim_token(&sim, 0);
    let doc = sim_doc(&sim, &token, "sleep", &object).await;
    let s = &v["data"][0];
    let t = |x: &Value| chrono::DateTime::parse_from_rfc3339(x.as_str().unwrap()).unwrap();
    assert_eq!(t(&s["metadata"]["start_time"]), t(&doc["bedtime_start"]));
    assert_eq!(t(&s["metadata"]["end_time"]), t(&doc["bedtime_end"]));
    assert_eq!(
        s["sleep_durations_data"]["other"]["duration_in_bed_seconds"].as_f64(),
        doc["time_in_bed"].as_f64()
    );
    let done = until("the notification to be done", WAIT, || async {
        notification_status(store_url, &object)
            .await
            .filter(|(s, _)| s == "done")
    })
    .await;
    assert!(done.1 >= 2, "fetched again after the restart: {done:?}");

    signal(&server, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oura_kill9_between_ack_and_fetch_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("manifold.db").display());
    kill9_between_ack_and_fetch(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oura_kill9_between_ack_and_fetch_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = TempDatabase::create().await;
    kill9_between_ack_and_fetch(&db.url, dir.path()).await;
}
