//! The outbox store against a real SQLite file and a real PostgreSQL server: the same checks for
//! both backends.

use std::time::Duration;

use manifold_core::event::parse_envelope;
use manifold_core::store::{
    AttemptRecord, DeliveryFilter, Disposition, NewPayload, Store, now_ms, now_us,
};
use manifold_core::testdb::TempDatabase;
use serde_json::json;

fn sleep_event(user: &str, summary: &str, score: u32) -> NewPayload {
    let v = json!({"type":"sleep","user":{"user_id":user,"reference_id":"ref"},
        "data":[{"metadata":{"summary_id":summary,"start_time":"2026-07-01T23:00:00.000000+01:00"},
        "scores":{"sleep":score}}],"version":"2022-03-16"});
    NewPayload {
        envelope: parse_envelope(&v).unwrap(),
        terra_reference: None,
        body: v.to_string(),
        destinations: vec!["a".into(), "b".into()],
        force: false,
    }
}

fn record(d: &manifold_core::Delivery, disposition: Disposition) -> AttemptRecord {
    AttemptRecord {
        delivery_id: d.id.clone(),
        destination: "a".into(),
        attempt: d.attempt,
        started_at_us: now_us(),
        finished_at_us: now_us(),
        status_code: Some(500),
        class: "retryable",
        error: Some("HTTP 500".into()),
        response: Some("boom".into()),
        disposition,
    }
}

async fn check_all(store: Store) {
    // commit: one payload, one delivery row per destination
    let c = store.commit(sleep_event("u1", "s1", 80)).await.unwrap();
    assert_eq!((c.version, c.deliveries, c.duplicate), (1, 2, false));
    // identical body under the same natural key: no new version, no deliveries
    let dup = store.commit(sleep_event("u1", "s1", 80)).await.unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.payload_id, c.payload_id);
    // changed body: version 2
    let v2 = store.commit(sleep_event("u1", "s1", 81)).await.unwrap();
    assert_eq!(v2.version, 2);

    // claims are exclusive while the lease holds
    let (t1, rows) = store.claim("a", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].attempt, 1);
    assert_eq!(rows[0].natural_key, "u1:sleep:s1");
    assert!(rows[0].json().unwrap()["data"][0]["scores"]["sleep"].is_number());
    let (_, again) = store.claim("a", 10, Duration::from_secs(60)).await.unwrap();
    assert!(again.is_empty(), "leased rows were claimed twice");
    // other destinations are independent
    let (_, b_rows) = store
        .claim("b", 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(b_rows.len(), 2);

    // retry: not due until its time
    store
        .record(
            &t1,
            "node-1",
            &[record(
                &rows[0],
                Disposition::RetryAt {
                    at_ms: now_ms() + 60_000,
                    error: "HTTP 500".into(),
                },
            )],
        )
        .await
        .unwrap();
    // dead letter with the reason
    store
        .record(
            &t1,
            "node-1",
            &[record(
                &rows[1],
                Disposition::Dead {
                    reason: "HTTP 400: bad".into(),
                },
            )],
        )
        .await
        .unwrap();
    let (_, none) = store.claim("a", 10, Duration::from_secs(60)).await.unwrap();
    assert!(none.is_empty());
    let dead = store
        .list_deliveries(&DeliveryFilter {
            status: Some("dead".into()),
            destination: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead_reason.as_deref(), Some("HTTP 400: bad"));
    let attempts = store.attempts(Some(&rows[1].id)).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(500));
    assert_eq!(attempts[0].node, "node-1");

    // replay makes the dead one due again with a fresh budget, same delivery id
    assert_eq!(
        store.replay(&rows[1].id).await.unwrap().as_deref(),
        Some("a")
    );
    let (t2, replayed) = store.claim("a", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].id, rows[1].id);
    assert_eq!(replayed[0].attempt, 1);
    // a stale token cannot change a row it no longer owns
    store
        .record(
            &t1,
            "node-1",
            &[record(&replayed[0], Disposition::Delivered)],
        )
        .await
        .unwrap();
    let pending = store
        .list_deliveries(&DeliveryFilter {
            status: Some("pending".into()),
            destination: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 2, "a stale lease holder changed a row");
    store
        .record(
            &t2,
            "node-1",
            &[record(&replayed[0], Disposition::Delivered)],
        )
        .await
        .unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(stats["a"].delivered, 1);
    assert_eq!(stats["a"].pending, 1);

    // an expired lease is re-claimed (crashed node)
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, reclaimed) = store.claim("b", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(reclaimed.len(), 2, "expired leases were not re-claimed");
    assert!(reclaimed.iter().all(|d| d.attempt >= 2));

    // destination state
    store
        .set_disabled("a", true, Some("HTTP 410"))
        .await
        .unwrap();
    assert_eq!(
        store.disabled("a").await.unwrap().as_deref(),
        Some("HTTP 410")
    );
    store.set_disabled("a", false, None).await.unwrap();
    assert_eq!(store.disabled("a").await.unwrap(), None);

    // bulk replay by destination and status
    let n = store.replay_destination("a", "delivered", 0).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/m.db").display());
    let store = Store::open(&url, 4).await.unwrap();
    check_all(store.clone()).await;
    store.close().await;
    // reopening applies no migration twice and keeps the data
    let store = Store::open(&url, 4).await.unwrap();
    let all = store
        .list_deliveries(&DeliveryFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
}

#[tokio::test]
async fn postgres_store() {
    let db = TempDatabase::create().await;
    let store = Store::open(&db.url, 5).await.unwrap();
    check_all(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_concurrent_claims_never_overlap() {
    let db = TempDatabase::create().await;
    let store = Store::open(&db.url, 10).await.unwrap();
    for i in 0..200 {
        store
            .commit(sleep_event("u2", &format!("s{i}"), 70))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let (_, rows) = s.claim("a", 7, Duration::from_secs(60)).await.unwrap();
                if rows.is_empty() {
                    break;
                }
                ids.extend(rows.into_iter().map(|r| r.id));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 200, "every row claimed once");
    assert_eq!(all.len(), 200, "a row was claimed by two workers");
}

#[tokio::test]
async fn postgres_concurrent_versions_of_one_key() {
    let db = TempDatabase::create().await;
    let store = Store::open(&db.url, 10).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..20 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            s.commit(sleep_event("u3", "same", i))
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for h in handles {
        versions.push(h.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=20).collect::<Vec<_>>());
}
