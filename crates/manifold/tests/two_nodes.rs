//! Two `manifold serve` processes on one PostgreSQL: all 2,000 events delivered, both nodes did
//! work, and the attempt log shows no delivery row attempted by both at once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use manifold_core::testdb::TempDatabase;
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_postgres() {
    const EVENTS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let db = TempDatabase::create().await;
    let receiver = Receiver::start(Behaviour::FailRandomly(0.1)).await;
    let (p1, p2) = (free_port(), free_port());
    let retry = "retry = { max_attempts = 100, initial_backoff = \"100ms\", max_backoff = \"1s\" }";
    let c1 = write_config(dir.path(), &db.url, p1, &receiver.url, retry);
    let c2 = write_config(dir.path(), &db.url, p2, &receiver.url, retry);
    let mut n1 = spawn_serve(&c1, p1).await;
    let mut n2 = spawn_serve(&c2, p2).await;

    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..EVENTS).step_by(16) {
                publish_until_accepted(&client, &[p1, p2], &sleep_event(&format!("n-{i}"))).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        receiver
            .wait_for_delivered(EVENTS, Duration::from_secs(120))
            .await,
        "only {} of {EVENTS} delivered",
        receiver.delivered_keys().len()
    );
    sigterm(&n1);
    sigterm(&n2);
    assert!(n1.wait().await.unwrap().success());
    assert!(n2.wait().await.unwrap().success());

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows = sqlx::query("SELECT delivery_id, node, started_at_us, finished_at_us FROM attempts ORDER BY delivery_id, started_at_us")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut by_delivery: HashMap<String, Vec<(String, i64, i64)>> = HashMap::new();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        let node: String = r.get(1);
        *per_node.entry(node.clone()).or_default() += 1;
        by_delivery
            .entry(r.get(0))
            .or_default()
            .push((node, r.get(2), r.get(3)));
    }
    assert_eq!(
        per_node.len(),
        2,
        "both nodes must have delivered: {per_node:?}"
    );
    assert!(
        per_node.values().all(|n| *n > 100),
        "work was not shared: {per_node:?}"
    );
    for (id, attempts) in &by_delivery {
        for pair in attempts.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(
                b.1 >= a.2,
                "delivery {id} attempted concurrently: {a:?} overlaps {b:?}"
            );
        }
    }
    let delivered: i64 = sqlx::query("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(delivered as usize, EVENTS);
}
