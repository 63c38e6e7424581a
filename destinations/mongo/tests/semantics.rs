//! What lands in the collections: versions, replacement, items, tombstones, user events,
//! athlete, indexes, prefixes, per-item failures, check().

mod common;

use common::{Db, build, dead_port, delivery_with, strip};
use manifold_core::destination::Outcome;
use manifold_core::testkit::sample_delivery;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

fn user() -> String {
    format!("u-{}", uuid::Uuid::new_v4().simple())
}

fn assert_delivered(out: &[Outcome]) {
    for (i, o) in out.iter().enumerate() {
        assert!(
            matches!(o, Outcome::Delivered { .. }),
            "item {i}: expected Delivered, got {o:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_version_wins_and_late_old_versions_change_nothing() {
    let db = Db::new().await;
    let dest = db.dest();
    let u = user();
    let v1 = sample_delivery("sleep", &u, 1);
    let id = v1.natural_key.clone();
    let mut body2 = v1.json().unwrap();
    body2["data"][0]["scores"]["sleep"] = json!(91);
    // A field that disappears in the newer version must disappear from the document.
    body2["data"][0]
        .as_object_mut()
        .unwrap()
        .remove("device_data");
    body2.as_object_mut().unwrap().remove("version");
    let v2 = delivery_with("sleep", &u, 2, body2.clone());

    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(db.payload("sleep", &id).await, Some(v1.json().unwrap()));
    assert_eq!(db.count("sleep", doc! {}).await, 1);

    assert_delivered(&dest.deliver(std::slice::from_ref(&v2)).await);
    let raw = db.raw("sleep", &id).await.unwrap();
    assert_eq!(strip(raw.clone()), body2);
    assert_eq!(raw["_id"], json!(id));
    assert_eq!(raw["_meta"]["version"], json!(2));
    assert_eq!(raw["_meta"]["trace_id"], json!(v2.payload_id));
    assert!(
        raw["_meta"]["updated_at"].is_object(),
        "updated_at is a BSON date: {raw}"
    );

    // The old version arrives late (a retry): accepted, but it does not overwrite.
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(db.payload("sleep", &id).await, Some(body2.clone()));
    assert_eq!(db.count("sleep", doc! {}).await, 1);

    // Both versions in one batch, old last: still the newest, one document.
    let u2 = user();
    let a = sample_delivery("daily", &u2, 1);
    let mut newer = a.json().unwrap();
    newer["data"][0]["distance_data"]["steps"] = json!(20000);
    let b = delivery_with("daily", &u2, 5, newer.clone());
    assert_delivered(&dest.deliver(&[b.clone(), a.clone()]).await);
    assert_eq!(
        db.payload("daily", &a.natural_key).await,
        Some(newer.clone())
    );
    // And in separate batches, old after new, together with a fresh key.
    let fresh = sample_delivery("daily", &u2, 2);
    assert_delivered(&dest.deliver(&[a.clone(), fresh.clone()]).await);
    assert_eq!(db.payload("daily", &a.natural_key).await, Some(newer));
    assert_eq!(
        db.payload("daily", &fresh.natural_key).await,
        Some(fresh.json().unwrap())
    );
    assert_eq!(db.count("daily", doc! {"user.user_id": &u2}).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_item_event_is_one_document_per_day_and_tombstones_delete() {
    let db = Db::new().await;
    let dest = db.dest();
    let u = user();
    let base = sample_delivery("daily", &u, 1).json().unwrap();
    let item = |day: &str| {
        let mut i = base["data"][0].clone();
        i["metadata"]["start_time"] = json!(format!("{day}T00:00:00.000000+02:00"));
        i["metadata"]["end_time"] = json!(format!("{day}T23:59:59.000000+02:00"));
        i["metadata"]["summary_id"] = json!(format!("daily-{day}"));
        i
    };
    let days = ["2026-07-10", "2026-07-11", "2026-07-12"];
    let mut body = base.clone();
    body["data"] = Value::Array(days.iter().map(|d| item(d)).collect());
    let d = delivery_with("daily", &u, 1, body.clone());
    assert_delivered(&dest.deliver(std::slice::from_ref(&d)).await);
    assert_eq!(db.count("daily", doc! {"user.user_id": &u}).await, 3);
    for (i, day) in days.iter().enumerate() {
        let got = db
            .payload("daily", &format!("{u}:daily:{day}"))
            .await
            .unwrap();
        let mut want = body.clone();
        want["data"] = json!([body["data"][i]]);
        assert_eq!(
            got, want,
            "the document for {day} is the event with just its item"
        );
    }

    // Tombstone by date.
    let t = delivery_with(
        "daily",
        &u,
        1,
        json!({"type": "daily", "user": {"user_id": u}, "deleted": [{"date": "2026-07-11"}]}),
    );
    assert_delivered(&dest.deliver(std::slice::from_ref(&t)).await);
    assert_eq!(db.count("daily", doc! {"user.user_id": &u}).await, 2);
    assert!(
        db.payload("daily", &format!("{u}:daily:2026-07-11"))
            .await
            .is_none()
    );

    // Tombstone by summary_id (matches data.metadata.summary_id of a day-keyed document).
    let t = delivery_with(
        "daily",
        &u,
        1,
        json!({"type": "daily", "user": {"user_id": u}, "deleted": [{"summary_id": "daily-2026-07-12"}]}),
    );
    assert_delivered(&dest.deliver(std::slice::from_ref(&t)).await);
    assert_eq!(db.count("daily", doc! {"user.user_id": &u}).await, 1);

    // Sleep tombstone by summary_id (its _id key); another user's record is untouched.
    let other = user();
    let s1 = sample_delivery("sleep", &u, 1);
    let s2 = sample_delivery("sleep", &other, 1);
    assert_delivered(&dest.deliver(&[s1.clone(), s2.clone()]).await);
    let t = delivery_with(
        "sleep",
        &u,
        1,
        json!({"type": "sleep", "user": {"user_id": u}, "deleted": [{"summary_id": format!("{u}-sleep-1")}]}),
    );
    assert_delivered(&dest.deliver(std::slice::from_ref(&t)).await);
    assert!(db.payload("sleep", &s1.natural_key).await.is_none());
    assert!(db.payload("sleep", &s2.natural_key).await.is_some());

    // In one batch, a record re-sent after its tombstone survives; one sent before is gone.
    let s3 = sample_delivery("sleep", &u, 3);
    let t3 = delivery_with(
        "sleep",
        &u,
        1,
        json!({"type": "sleep", "user": {"user_id": u}, "deleted": [{"summary_id": format!("{u}-sleep-3")}]}),
    );
    assert_delivered(&dest.deliver(&[s3.clone(), t3.clone(), s1.clone()]).await);
    assert!(db.payload("sleep", &s3.natural_key).await.is_none());
    assert!(db.payload("sleep", &s1.natural_key).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_events_land_in_user_events_once() {
    let db = Db::new().await;
    let dest = db.dest();
    let u = user();
    let auth = sample_delivery("auth", &u, 1);
    let deauth = delivery_with(
        "deauth",
        &u,
        1,
        json!({"type": "deauth", "status": "success", "user": {"user_id": u, "provider": "OURA"},
               "message": "User has deauthenticated"}),
    );
    assert_delivered(&dest.deliver(&[auth.clone(), deauth.clone()]).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&auth)).await);
    assert_eq!(db.count("user_events", doc! {"user.user_id": &u}).await, 2);
    assert_eq!(
        db.payload("user_events", &auth.payload_id).await,
        Some(auth.json().unwrap())
    );
    assert_eq!(
        db.payload("user_events", &deauth.payload_id).await,
        Some(deauth.json().unwrap())
    );
    let types: Vec<Value> = db
        .all("user_events", doc! {"user.user_id": &u})
        .await
        .into_iter()
        .map(|d| d["type"].clone())
        .collect();
    assert!(types.contains(&json!("auth")) && types.contains(&json!("deauth")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athlete_is_one_document_per_user() {
    let db = Db::new().await;
    let dest = db.dest();
    let u = user();
    let a1 = delivery_with(
        "athlete",
        &u,
        1,
        json!({"type": "athlete", "user": {"user_id": u}, "athlete": {"age": 40, "sex": "female"}}),
    );
    let a2 = delivery_with(
        "athlete",
        &u,
        2,
        json!({"type": "athlete", "user": {"user_id": u}, "athlete": {"age": 41, "sex": "female"}}),
    );
    assert_delivered(&dest.deliver(std::slice::from_ref(&a1)).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&a2)).await);
    assert_eq!(db.count("athlete", doc! {}).await, 1);
    assert_eq!(
        db.payload("athlete", &format!("{u}:athlete")).await,
        Some(a2.json().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_and_prefix() {
    let db = Db::new().await;
    let dest = db.dest_with("collection_prefix = \"terra_\"");
    let u = user();
    let d = sample_delivery("sleep", &u, 1);
    assert_delivered(&dest.deliver(std::slice::from_ref(&d)).await);
    assert!(db.payload("terra_sleep", &d.natural_key).await.is_some());
    assert_eq!(db.count("sleep", doc! {}).await, 0);
    let mut cursor = db
        .db
        .collection::<Document>("terra_sleep")
        .list_indexes()
        .await
        .unwrap();
    let mut keys = Vec::new();
    use futures::TryStreamExt;
    while let Some(ix) = cursor.try_next().await.unwrap() {
        keys.extend(ix.keys.keys().cloned());
    }
    for k in [
        "user.user_id",
        "user.reference_id",
        "data.metadata.start_time",
        "data.metadata.end_time",
    ] {
        assert!(
            keys.iter().any(|x| x == k),
            "index on {k} missing: {keys:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_item_does_not_fail_the_batch() {
    let db = Db::new().await;
    let dest = db.dest();
    let u = user();
    let good = sample_delivery("sleep", &u, 1);
    let mut bad = sample_delivery("sleep", &u, 2);
    bad.body = bytes::Bytes::from_static(b"{not json");
    let nokey = delivery_with(
        "sleep",
        &u,
        1,
        json!({"type": "sleep", "user": {"user_id": u}, "data": [{"metadata": {}}]}),
    );
    let out = dest.deliver(&[bad, good.clone(), nokey]).await;
    assert!(
        matches!(&out[0], Outcome::Permanent { reason, .. } if reason.contains("JSON")),
        "{:?}",
        out[0]
    );
    assert!(matches!(out[1], Outcome::Delivered { .. }), "{:?}", out[1]);
    assert!(
        matches!(&out[2], Outcome::Permanent { reason, .. } if reason.contains("natural key")),
        "{:?}",
        out[2]
    );
    assert_eq!(
        db.payload("sleep", &good.natural_key).await,
        Some(good.json().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_writes_and_unreachable_is_retry() {
    let db = Db::new().await;
    db.dest()
        .check()
        .await
        .expect("check against the healthy server");
    assert_eq!(
        db.count("user_events", doc! {}).await,
        0,
        "the probe document is removed"
    );
    let port = dead_port().await;
    let dead = build(
        &format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        "terra",
        "",
    );
    let err = dead.check().await.unwrap_err();
    assert!(err.contains("not reachable"), "{err}");
    let out = dead.deliver(&[sample_delivery("auth", &user(), 1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retry { reason, .. } if reason.contains("not reachable")),
        "{:?}",
        out[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_the_user_made_does_not_stop_deliveries() {
    let db = Db::new().await;
    db.db
        .collection::<Document>("sleep")
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"user.user_id": 1})
                .options(
                    mongodb::options::IndexOptions::builder()
                        .name("mine".to_string())
                        .sparse(true)
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    let d = sample_delivery("sleep", &user(), 1);
    assert_delivered(&db.dest().deliver(std::slice::from_ref(&d)).await);
    assert_eq!(
        db.payload("sleep", &d.natural_key).await,
        Some(d.json().unwrap())
    );
}
