//! The Oura tables' queries on both backends: SQLite (a temp file) and PostgreSQL (a fresh
//! database on the test server).

use std::time::Duration;

use manifold_core::store::{NewOuraNotification, OuraTokens, Store, now_ms};
use manifold_core::testdb::TempDatabase;

fn tokens(tag: &str) -> OuraTokens {
    OuraTokens {
        access_token: format!("at-{tag}"),
        refresh_token: format!("rt-{tag}"),
        expires_at: now_ms() + 3_600_000,
        scopes: Some("extapi:daily".into()),
    }
}

fn note(user: &str, object: &str, event: &str) -> NewOuraNotification {
    NewOuraNotification {
        oura_user_id: user.into(),
        data_type: "sleep".into(),
        object_id: object.into(),
        event_type: event.into(),
        event_time: "2026-07-01T08:00:00+00:00".into(),
        status: "pending".into(),
        last_error: None,
        require_user: false,
    }
}

async fn users_and_tokens(store: &Store) {
    store
        .oura_create_pending_user("u1", Some("ref-1"), Some("https://ok"), None)
        .await
        .unwrap();
    let u = store.oura_user("u1").await.unwrap().unwrap();
    assert_eq!(u.status, "pending");
    assert!(u.active);
    assert_eq!(u.reference_id.as_deref(), Some("ref-1"));
    assert!(
        store
            .oura_connect_user("u1", "oura-A", &tokens("1"))
            .await
            .unwrap()
            .is_empty()
    );
    let u = store.oura_user_by_oura_id("oura-A").await.unwrap().unwrap();
    assert_eq!(u.user_id, "u1");
    assert_eq!(u.status, "connected");
    assert_eq!(u.access_token.as_deref(), Some("at-1"));

    // guarded swap: the first refresh wins, a second with the stale token changes nothing
    assert!(
        store
            .oura_swap_tokens("u1", "rt-1", &tokens("2"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .oura_swap_tokens("u1", "rt-1", &tokens("3"))
            .await
            .unwrap()
    );
    let u = store.oura_user("u1").await.unwrap().unwrap();
    assert_eq!(u.refresh_token.as_deref(), Some("rt-2"));

    // reconnecting the same reference id replaces the old user and its documents
    store
        .oura_upsert_document("u1", "sleep", "s1", Some("2026-07-01"), "{}")
        .await
        .unwrap();
    store
        .oura_create_pending_user("u2", Some("ref-1"), None, None)
        .await
        .unwrap();
    let replaced = store
        .oura_connect_user("u2", "oura-A", &tokens("4"))
        .await
        .unwrap();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].user_id, "u1");
    assert!(store.oura_user("u1").await.unwrap().is_none());
    assert_eq!(store.oura_count_documents("u1").await.unwrap(), 0);
    assert_eq!(
        store
            .oura_user_by_oura_id("oura-A")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "u2"
    );
    assert_eq!(
        store.oura_users_by_reference("ref-1").await.unwrap().len(),
        1
    );

    // pause / patch / delete
    assert!(store.oura_set_paused("u2", Some("revoked")).await.unwrap());
    let u = store.oura_user("u2").await.unwrap().unwrap();
    assert_eq!(
        (u.status.as_str(), u.paused_reason.as_deref()),
        ("paused", Some("revoked"))
    );
    assert!(
        store
            .oura_patch_user("u2", Some(false), Some("ref-2"))
            .await
            .unwrap()
    );
    let u = store.oura_user("u2").await.unwrap().unwrap();
    assert!(!u.active);
    assert_eq!(u.reference_id.as_deref(), Some("ref-2"));
    assert!(
        !store
            .oura_patch_user("nope", Some(true), None)
            .await
            .unwrap()
    );
    assert!(store.oura_delete_user("u2").await.unwrap());
    assert!(!store.oura_delete_user("u2").await.unwrap());
}

async fn notifications(store: &Store) {
    assert!(
        store
            .oura_record_notification(&note("A", "o1", "create"))
            .await
            .unwrap()
            .new
    );
    // the same (user, type, object, event, time) is coalesced
    assert!(
        !store
            .oura_record_notification(&note("A", "o1", "create"))
            .await
            .unwrap()
            .new
    );
    assert!(
        store
            .oura_record_notification(&note("A", "o1", "update"))
            .await
            .unwrap()
            .new
    );
    let mut unknown = note("B", "o2", "create");
    unknown.status = "unknown_user".into();
    assert!(store.oura_record_notification(&unknown).await.unwrap().new);
    // With require_user, the store itself records a notification of an Oura user nobody
    // connected as unknown_user (never claimed for fetching).
    let mut strict = note("nobody-has-this-id", "o3", "create");
    strict.require_user = true;
    let r = store.oura_record_notification(&strict).await.unwrap();
    assert!(r.new);
    assert_eq!(r.status, "unknown_user");
    assert_eq!(store.oura_notifications(100).await.unwrap().len(), 4);

    let (t1, batch) = store
        .oura_claim_notifications(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(batch.len(), 2, "only pending rows are claimed");
    assert!(batch.iter().all(|n| n.attempts == 1));
    // leased rows are not claimed twice
    let (_, again) = store
        .oura_claim_notifications(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(again.is_empty());
    assert!(
        store
            .oura_finish_notification(&batch[0].id, &t1, "done", None)
            .await
            .unwrap()
    );
    // a stale token cannot record
    assert!(
        !store
            .oura_finish_notification(&batch[1].id, "other-token", "done", None)
            .await
            .unwrap()
    );
    // rescheduled without counting the attempt (429), due now
    assert!(
        store
            .oura_retry_notification(&batch[1].id, &t1, now_ms() - 1, "429", false)
            .await
            .unwrap()
    );
    let (t2, b2) = store
        .oura_claim_notifications(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(b2.len(), 1);
    assert_eq!(b2[0].attempts, 1, "a 429 does not use up an attempt");
    // rescheduled into the future: not due
    store
        .oura_retry_notification(&b2[0].id, &t2, now_ms() + 60_000, "5xx", true)
        .await
        .unwrap();
    let (_, b3) = store
        .oura_claim_notifications(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(b3.is_empty());
    let all = store.oura_notifications(100).await.unwrap();
    let statuses: Vec<_> = all.iter().map(|n| n.status.as_str()).collect();
    assert!(statuses.contains(&"done") && statuses.contains(&"unknown_user"));

    // an expired lease is re-claimed (crashed worker)
    assert!(
        store
            .oura_record_notification(&note("A", "o9", "create"))
            .await
            .unwrap()
            .new
    );
    let (_, b4) = store
        .oura_claim_notifications(10, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(b4.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, b5) = store
        .oura_claim_notifications(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(b5.len(), 1);
    assert_eq!(b5[0].attempts, 2);
}

async fn documents(store: &Store) {
    store
        .oura_upsert_document(
            "u",
            "daily_activity",
            "d1",
            Some("2026-07-01"),
            r#"{"v":1}"#,
        )
        .await
        .unwrap();
    store
        .oura_upsert_document(
            "u",
            "daily_activity",
            "d1",
            Some("2026-07-01"),
            r#"{"v":2}"#,
        )
        .await
        .unwrap();
    store
        .oura_upsert_document("u", "daily_sleep", "d2", Some("2026-07-01"), "{}")
        .await
        .unwrap();
    store
        .oura_upsert_document("u", "daily_sleep", "d3", Some("2026-07-02"), "{}")
        .await
        .unwrap();
    let day = store.oura_day_documents("u", "2026-07-01").await.unwrap();
    assert_eq!(day.len(), 2);
    assert!(day.iter().any(|d| d.body == r#"{"v":2}"#));
    let gone = store
        .oura_delete_document("u", "daily_activity", "d1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.day.as_deref(), Some("2026-07-01"));
    assert!(
        store
            .oura_delete_document("u", "daily_activity", "d1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .oura_day_documents("u", "2026-07-01")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .oura_document("u", "daily_sleep", "d3")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.oura_count_documents("u").await.unwrap(), 2);
}

async fn all(store: Store) {
    users_and_tokens(&store).await;
    notifications(&store).await;
    documents(&store).await;
    store.close().await;
}

#[tokio::test]
async fn oura_tables_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    all(Store::open(&url, 4).await.unwrap()).await;
    // migrations are idempotent on reopen
    Store::open(&url, 4).await.unwrap().close().await;
}

#[tokio::test]
async fn oura_tables_postgres() {
    let db = TempDatabase::create().await;
    all(Store::open(&db.url, 4).await.unwrap()).await;
}
