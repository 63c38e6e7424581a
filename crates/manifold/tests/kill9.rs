//! Nothing acknowledged is lost: publish 2,000 events to a receiver that fails 20% of requests,
//! `kill -9` the server twice mid-run, restart it; every event arrives at least once, and the
//! copies of one event carry the same `X-Terra-Trace-Id`. For SQLite and PostgreSQL. Then
//! SIGTERM exits 0.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use manifold_core::testdb::TempDatabase;

const EVENTS: usize = 2000;

async fn kill9_run(store_url: &str, dir: &std::path::Path) {
    let receiver = Receiver::start(Behaviour::FailRandomly(0.2)).await;
    let port = free_port();
    let config = write_config(
        dir,
        store_url,
        port,
        &receiver.url,
        "retry = { max_attempts = 100, initial_backoff = \"100ms\", max_backoff = \"1s\" }",
    );
    let mut server = spawn_serve(&config, port).await;

    let client = reqwest::Client::new();
    let accepted = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let accepted = accepted.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let (client, next, accepted) = (client.clone(), next.clone(), accepted.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= EVENTS {
                            break;
                        }
                        publish_until_accepted(&client, &[port], &sleep_event(&format!("evt-{i}")))
                            .await;
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };

    // Two kill -9s while events are being accepted and delivered.
    for threshold in [EVENTS / 3, 2 * EVENTS / 3] {
        while accepted.load(Ordering::SeqCst) < threshold {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sigkill(&server);
        let _ = server.wait().await;
        server = spawn_serve(&config, port).await;
    }
    publisher.await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), EVENTS);

    let all = receiver
        .wait_for_delivered(EVENTS, Duration::from_secs(180))
        .await;
    let delivered = receiver.delivered_keys();
    let missing: Vec<String> = (0..EVENTS)
        .map(|i| format!("evt-{i}"))
        .filter(|k| !delivered.contains_key(k))
        .take(10)
        .collect();
    assert!(
        all,
        "{} of {EVENTS} events delivered; first missing: {missing:?}",
        delivered.len()
    );

    // Every copy of one event (retries and re-deliveries after a kill) has the same trace id.
    let log = receiver.log();
    let mut by_key: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for r in &log {
        let prev = by_key.entry(&r.event_key).or_insert(&r.trace_id);
        assert_eq!(
            *prev, r.trace_id,
            "event {} arrived with two trace ids",
            r.event_key
        );
        assert!(r.signature.starts_with("t="), "unsigned request");
    }
    assert!(
        log.iter().any(|r| r.status == 500),
        "the receiver never failed: the test proves nothing"
    );

    sigterm(&server);
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "SIGTERM exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill9_run(&sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = TempDatabase::create().await;
    kill9_run(&db.url, dir.path()).await;
}

/// SIGTERM while an attempt is in flight: the attempt finishes and is recorded, exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Behaviour::Slow(Duration::from_millis(1200))).await;
    let port = free_port();
    let store = sqlite_url(dir.path());
    let config = write_config(dir.path(), &store, port, &receiver.url, "");
    let server = spawn_serve(&config, port).await;
    let client = reqwest::Client::new();
    publish_until_accepted(&client, &[port], &sleep_event("slow-1")).await;
    // wait until the request is in flight at the receiver (it is logged after the delay, so poll the store)
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&server);
    let mut server = server;
    let status = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .expect("exit")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        receiver.delivered_keys().len(),
        1,
        "the in-flight attempt was cut off"
    );
    // the outcome was recorded before exit: nothing is pending in the store
    let s = manifold_core::Store::open(&store, 2).await.unwrap();
    let stats = s.queue_stats().await.unwrap();
    assert_eq!(stats["app"].delivered, 1, "{stats:?}");
    assert_eq!(stats["app"].pending, 0, "{stats:?}");
}
