//! What lands in the tables through the REST API: the DDL, versions, items, tombstones, user
//! state, refused keys and schemas, per-item failures, check().

mod common;

use chrono::{Duration, Utc};
use common::{SCHEMA, Server, apply_sql, dead_port, delivery_with};
use manifold_core::destination::Outcome;
use manifold_core::testdb::TempDatabase;
use manifold_core::testkit::sample_delivery;
use manifold_supabase::init_sql;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

fn user() -> String {
    format!("u-{}", uuid::Uuid::new_v4().simple())
}

async fn state(s: &Server, u: &str) -> Value {
    s.rows("terra_users", &[("user_id", u)]).await[0]["state"].clone()
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
async fn init_sql_applies_twice_on_a_fresh_database() {
    // The roles are cluster-wide (scripts/services created service_role); the database is new.
    let _server = Server::start().await;
    let db = TempDatabase::create().await;
    for schema in ["public", "terra"] {
        apply_sql(&db.url, &init_sql(schema)).await;
        apply_sql(&db.url, &init_sql(schema)).await;
    }
    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    let n: i64 = sqlx::query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema IN ('public','terra') \
         AND table_name IN ('terra_users','terra_data_payloads','terra_misc_payloads')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get("n");
    assert_eq!(n, 6);
    let rls: i64 = sqlx::query(
        "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace \
         WHERE s.nspname = 'terra' AND c.relrowsecurity",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get("n");
    assert_eq!(rls, 3, "row-level security is on for the three tables");
    let granted: bool = sqlx::query(
        "SELECT has_table_privilege('service_role', 'terra.terra_data_payloads', 'INSERT, UPDATE, DELETE') AS g",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get("g");
    assert!(granted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_version_wins_and_late_old_versions_change_nothing() {
    let s = Server::start().await;
    let dest = s.dest();
    let u = user();
    let v1 = sample_delivery("sleep", &u, 1);
    let mut body2 = v1.json().unwrap();
    body2["data"][0]["scores"]["sleep"] = json!(91);
    let v2 = delivery_with("sleep", &u, 2, body2.clone());

    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(s.payloads_for(&v1).await, vec![v1.json().unwrap()]);

    assert_delivered(&dest.deliver(std::slice::from_ref(&v2)).await);
    assert_eq!(s.payloads_for(&v1).await, vec![body2.clone()]);
    let row = &s.rows("terra_data_payloads", &[("user_id", &u)]).await[0];
    assert_eq!(row["version"], json!(2));
    assert_eq!(row["payload_id"], json!(v2.payload_id));
    assert_eq!(row["summary_id"], json!(format!("{u}-sleep-1")));
    assert_eq!(row["day"], json!("2026-07-01"));

    // The old version arrives late (a retry): accepted, but it does not overwrite.
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(s.payloads_for(&v1).await, vec![body2.clone()]);

    // Both versions in one batch, old last: still the newest, one row.
    let u2 = user();
    let a = sample_delivery("daily", &u2, 1);
    let mut newer = a.json().unwrap();
    newer["data"][0]["distance_data"]["steps"] = json!(20000);
    let b = delivery_with("daily", &u2, 5, newer.clone());
    assert_delivered(&dest.deliver(&[b.clone(), a.clone()]).await);
    assert_eq!(s.payloads_for(&a).await, vec![newer]);
    assert_eq!(
        s.rows("terra_data_payloads", &[("user_id", &u2)])
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_item_event_is_one_row_per_day_and_tombstones_delete() {
    let s = Server::start().await;
    let dest = s.dest();
    let u = user();
    let base = sample_delivery("daily", &u, 1).json().unwrap();
    let item = |day: &str| {
        let mut i = base["data"][0].clone();
        i["metadata"]["start_time"] = json!(format!("{day}T00:00:00.000000+02:00"));
        i["metadata"]["summary_id"] = json!(format!("daily-{day}"));
        i
    };
    let days = ["2026-07-10", "2026-07-11", "2026-07-12"];
    let mut body = base.clone();
    body["data"] = Value::Array(days.iter().map(|d| item(d)).collect());
    let d = delivery_with("daily", &u, 1, body.clone());
    assert_delivered(&dest.deliver(std::slice::from_ref(&d)).await);
    assert_eq!(
        s.rows("terra_data_payloads", &[("user_id", &u)])
            .await
            .len(),
        3
    );
    for (i, day) in days.iter().enumerate() {
        let rows = s
            .rows(
                "terra_data_payloads",
                &[("user_id", &u), ("record_key", day)],
            )
            .await;
        assert_eq!(rows.len(), 1, "one row for {day}");
        let mut want = body.clone();
        want["data"] = json!([body["data"][i]]);
        assert_eq!(rows[0]["payload"], want);
    }
    // Tombstone by date, then by summary_id.
    for (del, left) in [
        (json!({"date": "2026-07-11"}), 2),
        (json!({"summary_id": "daily-2026-07-12"}), 1),
    ] {
        let t = delivery_with(
            "daily",
            &u,
            1,
            json!({"type": "daily", "user": {"user_id": u}, "deleted": [del]}),
        );
        assert_delivered(&dest.deliver(std::slice::from_ref(&t)).await);
        assert_eq!(
            s.rows("terra_data_payloads", &[("user_id", &u)])
                .await
                .len(),
            left
        );
    }
    let rows = s.rows("terra_data_payloads", &[("user_id", &u)]).await;
    assert_eq!(rows[0]["record_key"], json!("2026-07-10"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_events_maintain_user_state() {
    let s = Server::start().await;
    let dest = s.dest();
    let u = user();
    let mut auth = sample_delivery("auth", &u, 1);
    auth.created_at = Utc::now() - Duration::minutes(10);
    assert_delivered(&dest.deliver(std::slice::from_ref(&auth)).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&auth)).await);
    assert_eq!(state(&s, &u).await, json!("active"));
    let user_row = &s.rows("terra_users", &[("user_id", &u)]).await[0];
    assert_eq!(user_row["reference_id"], json!(format!("ref-{u}")));
    assert_eq!(user_row["provider"], json!("OURA"));
    assert_eq!(
        s.rows("terra_misc_payloads", &[("user_id", &u)])
            .await
            .len(),
        1
    );
    assert_eq!(s.payloads_for(&auth).await, vec![auth.json().unwrap()]);

    let mut deauth = delivery_with(
        "deauth",
        &u,
        1,
        json!({"type": "deauth", "status": "success", "user": {"user_id": u}}),
    );
    deauth.created_at = Utc::now() - Duration::minutes(5);
    assert_delivered(&dest.deliver(std::slice::from_ref(&deauth)).await);
    assert_eq!(state(&s, &u).await, json!("deauthenticated"));
    // Identity fields the deauth event did not carry are kept.
    assert_eq!(
        s.rows("terra_users", &[("user_id", &u)]).await[0]["provider"],
        json!("OURA")
    );

    // A late retry of the older auth does not re-activate; a data event does not change state.
    assert_delivered(&dest.deliver(std::slice::from_ref(&auth)).await);
    assert_delivered(&dest.deliver(&[sample_delivery("sleep", &u, 4)]).await);
    assert_eq!(state(&s, &u).await, json!("deauthenticated"));

    let mut reauth = delivery_with(
        "user_reauth",
        &u,
        1,
        json!({"type": "user_reauth", "user": {"user_id": u}}),
    );
    reauth.created_at = Utc::now();
    assert_delivered(&dest.deliver(std::slice::from_ref(&reauth)).await);
    assert_eq!(state(&s, &u).await, json!("active"));
    assert_eq!(
        s.rows("terra_misc_payloads", &[("user_id", &u)])
            .await
            .len(),
        3
    );

    // A data event for an unknown user creates it as active.
    let u2 = user();
    assert_delivered(&dest.deliver(&[sample_delivery("body", &u2, 1)]).await);
    assert_eq!(state(&s, &u2).await, json!("active"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_schemas_and_paths_are_permanent_with_the_fix() {
    let s = Server::start().await;
    let d = sample_delivery("sleep", &user(), 1);
    let bad = s.dest_with(&s.url, &s.bad_key(), "");
    match &bad.deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, response } => {
            assert!(reason.contains("service_role_key"), "{reason}");
            assert!(
                !reason.contains(&s.key),
                "the key must not appear in reasons"
            );
            assert_eq!(response.status, Some(401));
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    let err = bad.check().await.unwrap_err();
    assert!(err.contains("service_role_key"), "{err}");

    let src = format!(
        "url = \"{}\"\nservice_role_key = \"{}\"\nschema = \"public\"\nrest_path = \"{}\"",
        s.url, s.key, s.rest_path
    );
    match &common::build(&src).deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, .. } => {
            assert!(reason.contains("Exposed schemas"), "{reason}")
        }
        other => panic!("expected Permanent for an unexposed schema, got {other:?}"),
    }
    let src = format!(
        "url = \"{}\"\nservice_role_key = \"{}\"\nschema = \"{SCHEMA}\"",
        s.url, s.key
    );
    match &common::build(&src).deliver(std::slice::from_ref(&d)).await[0] {
        Outcome::Permanent { reason, .. } => assert!(reason.contains("rest_path"), "{reason}"),
        other => panic!("expected Permanent for the wrong REST path, got {other:?}"),
    }
    assert!(s.payloads_for(&d).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_item_does_not_fail_the_batch() {
    let s = Server::start().await;
    let dest = s.dest();
    let u = user();
    let good = sample_delivery("sleep", &u, 1);
    let mut bad = sample_delivery("sleep", &u, 2);
    bad.body = bytes::Bytes::from_static(b"{not json");
    // Valid JSON that PostgreSQL's jsonb refuses (a NUL character in a string).
    let nul = delivery_with(
        "sleep",
        &u,
        1,
        json!({"type": "sleep", "user": {"user_id": u},
               "data": [{"metadata": {"summary_id": "nul", "start_time": "2026-07-01T00:00:00+00:00"}, "x": "a\u{0}b"}]}),
    );
    let out = dest.deliver(&[bad, good.clone(), nul]).await;
    assert!(
        matches!(&out[0], Outcome::Permanent { reason, .. } if reason.contains("JSON")),
        "{:?}",
        out[0]
    );
    assert!(matches!(out[1], Outcome::Delivered { .. }), "{:?}", out[1]);
    assert!(matches!(out[2], Outcome::Permanent { .. }), "{:?}", out[2]);
    assert_eq!(s.payloads_for(&good).await, vec![good.json().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_access_and_unreachable_is_retry() {
    let s = Server::start().await;
    s.dest()
        .check()
        .await
        .expect("check against the healthy server");
    assert!(
        s.rows(
            "terra_misc_payloads",
            &[("payload_id", "manifold-check-probe")]
        )
        .await
        .is_empty(),
        "the probe row is removed"
    );
    let port = dead_port().await;
    let dead = s.dest_with(&format!("http://127.0.0.1:{port}"), &s.key, "");
    let err = dead.check().await.unwrap_err();
    assert!(err.contains("cannot connect"), "{err}");
    let out = dead.deliver(&[sample_delivery("auth", &user(), 1)]).await;
    assert!(
        matches!(&out[0], Outcome::Retry { reason, .. } if reason.contains("cannot connect")),
        "{:?}",
        out[0]
    );
}
