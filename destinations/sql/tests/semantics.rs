//! What lands in the tables, on all three databases: versions, items, tombstones, user state,
//! per-item failures, privileges, and the queries a Terra user runs.

mod common;

use chrono::{Duration, Utc};
use common::{Db, build, delivery_with};
use manifold_core::destination::Outcome;
use manifold_core::testkit::sample_delivery;
use manifold_sql::Dialect;
use serde_json::{Value, json};
use sqlx::Row;

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

macro_rules! on_all_databases {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Db::new(super::Dialect::Postgres).await).await }
            )*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Db::new(super::Dialect::MySql).await).await }
            )*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Db::new(super::Dialect::Sqlite).await).await }
            )*
        }
    };
}

on_all_databases!(
    newest_version_wins_and_late_old_versions_change_nothing,
    multi_item_event_is_one_row_per_day_and_tombstones_delete,
    auth_events_maintain_user_state,
    one_bad_item_does_not_fail_the_batch,
    terra_style_query_works,
    athlete_is_one_row_per_user,
);

async fn newest_version_wins_and_late_old_versions_change_nothing(db: Db) {
    let dest = db.dest();
    let u = user();
    let v1 = sample_delivery("sleep", &u, 1);
    let mut body2 = v1.json().unwrap();
    body2["data"][0]["scores"]["sleep"] = json!(91);
    let v2 = delivery_with("sleep", &u, 2, body2.clone());

    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(db.rows_for(&v1).await, vec![v1.json().unwrap()]);

    assert_delivered(&dest.deliver(std::slice::from_ref(&v2)).await);
    assert_eq!(db.rows_for(&v1).await, vec![body2.clone()]);

    // The old version arrives late (a retry): it is accepted but does not overwrite.
    assert_delivered(&dest.deliver(std::slice::from_ref(&v1)).await);
    assert_eq!(db.rows_for(&v1).await, vec![body2.clone()]);

    // Both versions in one batch, old last: still the newest.
    let u2 = user();
    let a = sample_delivery("daily", &u2, 1);
    let mut newer = a.json().unwrap();
    newer["data"][0]["distance_data"]["steps"] = json!(20000);
    let b = delivery_with("daily", &u2, 5, newer.clone());
    assert_delivered(&dest.deliver(&[b.clone(), a.clone()]).await);
    assert_eq!(db.rows_for(&a).await, vec![newer]);
    assert_eq!(db.count("terra_data_payloads", &u2).await, 1);
}

async fn multi_item_event_is_one_row_per_day_and_tombstones_delete(db: Db) {
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
    assert_eq!(db.count("terra_data_payloads", &u).await, 3);
    for (i, day) in days.iter().enumerate() {
        let rows = db.data_payloads(&u, "daily", day).await;
        assert_eq!(rows.len(), 1, "one row for {day}");
        // Each row is the event with just its own item.
        assert_eq!(rows[0]["data"], json!([body["data"][i]]));
        assert_eq!(rows[0]["user"], body["user"]);
        assert_eq!(rows[0]["type"], "daily");
    }

    // Tombstone by date.
    let t = delivery_with(
        "daily",
        &u,
        1,
        json!({"type": "daily", "user": {"user_id": u}, "deleted": [{"date": "2026-07-11"}]}),
    );
    assert_delivered(&dest.deliver(std::slice::from_ref(&t)).await);
    assert_eq!(db.count("terra_data_payloads", &u).await, 2);
    assert!(db.data_payloads(&u, "daily", "2026-07-11").await.is_empty());

    // Tombstone by summary_id (sleep) and by summary_id of a day-keyed record.
    let s = sample_delivery("sleep", &u, 3);
    assert_delivered(&dest.deliver(std::slice::from_ref(&s)).await);
    assert_eq!(db.rows_for(&s).await.len(), 1);
    let sid = format!("{u}-sleep-3");
    let t2 = delivery_with(
        "sleep",
        &u,
        1,
        json!({"type": "sleep", "user": {"user_id": u}, "deleted": [{"summary_id": sid}]}),
    );
    let t3 = delivery_with(
        "daily",
        &u,
        1,
        json!({"type": "daily", "user": {"user_id": u}, "deleted": [{"summary_id": "daily-2026-07-12"}]}),
    );
    assert_delivered(&dest.deliver(&[t2, t3]).await);
    assert!(db.rows_for(&s).await.is_empty());
    assert_eq!(db.count("terra_data_payloads", &u).await, 1);
    assert_eq!(db.data_payloads(&u, "daily", "2026-07-10").await.len(), 1);
}

async fn auth_events_maintain_user_state(db: Db) {
    let dest = db.dest();
    let u = user();
    let t0 = Utc::now();
    let info = |t: &str, at: chrono::DateTime<Utc>| {
        let mut d = delivery_with(
            t,
            &u,
            1,
            json!({"type": t, "status": "success", "user": {"user_id": u, "provider": "OURA",
                   "reference_id": "ref-1", "scopes": "daily,personal"}, "message": "x"}),
        );
        d.created_at = at;
        d.payload_id = uuid::Uuid::now_v7().to_string();
        d
    };
    let auth = info("auth", t0);
    assert_delivered(&dest.deliver(std::slice::from_ref(&auth)).await);
    assert_eq!(db.user_state(&u).await.as_deref(), Some("active"));
    assert_eq!(
        db.misc_payloads(&auth.payload_id).await,
        vec![auth.json().unwrap()]
    );

    let deauth = info("deauth", t0 + Duration::seconds(10));
    assert_delivered(&dest.deliver(std::slice::from_ref(&deauth)).await);
    assert_eq!(db.user_state(&u).await.as_deref(), Some("deauthenticated"));

    // A retried, older auth does not re-activate; a data event does not either.
    assert_delivered(&dest.deliver(std::slice::from_ref(&auth)).await);
    assert_delivered(&dest.deliver(&[sample_delivery("sleep", &u, 1)]).await);
    assert_eq!(db.user_state(&u).await.as_deref(), Some("deauthenticated"));
    assert_eq!(
        db.count("terra_misc_payloads", &u).await,
        2,
        "redelivered auth kept once"
    );

    let reauth = info("user_reauth", t0 + Duration::seconds(20));
    assert_delivered(&dest.deliver(std::slice::from_ref(&reauth)).await);
    assert_eq!(db.user_state(&u).await.as_deref(), Some("active"));

    // In one batch the latest change wins whatever the order.
    let revoked = info("access_revoked", t0 + Duration::seconds(40));
    let reauth2 = info("user_reauth", t0 + Duration::seconds(30));
    assert_delivered(&dest.deliver(&[revoked, reauth2]).await);
    assert_eq!(db.user_state(&u).await.as_deref(), Some("revoked"));
    assert_eq!(db.count("terra_users", &u).await, 1);
}

async fn one_bad_item_does_not_fail_the_batch(db: Db) {
    let dest = db.dest();
    let u = user();
    let good1 = sample_delivery("sleep", &u, 1);
    let good2 = sample_delivery("daily", &u, 2);
    // Not JSON: refused before touching the database.
    let mut malformed = sample_delivery("sleep", &u, 3);
    malformed.body = bytes::Bytes::from_static(b"{not json");
    // A summary id longer than the key column: refused by PostgreSQL and MySQL (SQLite does not
    // enforce VARCHAR lengths).
    let mut long = sample_delivery("sleep", &u, 4).json().unwrap();
    long["data"][0]["metadata"]["summary_id"] = json!("x".repeat(300));
    let too_long = delivery_with("sleep", &u, 1, long);

    let out = dest
        .deliver(&[good1.clone(), malformed, too_long, good2.clone()])
        .await;
    assert!(matches!(out[0], Outcome::Delivered { .. }), "{:?}", out[0]);
    match &out[1] {
        Outcome::Permanent { reason, .. } => assert!(reason.contains("JSON"), "{reason}"),
        other => panic!("malformed body must be Permanent, got {other:?}"),
    }
    match (&out[2], db.dialect) {
        (Outcome::Delivered { .. }, Dialect::Sqlite) => {}
        (Outcome::Permanent { reason, .. }, Dialect::Postgres | Dialect::MySql) => {
            assert!(reason.to_lowercase().contains("too long"), "{reason}")
        }
        (other, d) => panic!("too long on {d:?}: unexpected {other:?}"),
    }
    assert!(matches!(out[3], Outcome::Delivered { .. }), "{:?}", out[3]);
    assert_eq!(db.rows_for(&good1).await.len(), 1);
    assert_eq!(db.rows_for(&good2).await.len(), 1);
}

async fn terra_style_query_works(db: Db) {
    let dest = db.dest();
    let u = user();
    let s = sample_delivery("sleep", &u, 7);
    assert_delivered(&dest.deliver(std::slice::from_ref(&s)).await);
    let sql = match db.dialect {
        Dialect::Postgres => {
            "SELECT payload->'data'->0->'metadata'->>'summary_id' AS sid \
             FROM terra.terra_data_payloads WHERE user_id = $1 AND data_type = 'sleep'"
        }
        Dialect::MySql => {
            "SELECT JSON_UNQUOTE(JSON_EXTRACT(payload, '$.data[0].metadata.summary_id')) AS sid \
             FROM terra_data_payloads WHERE user_id = ? AND data_type = 'sleep'"
        }
        Dialect::Sqlite => {
            "SELECT json_extract(payload, '$.data[0].metadata.summary_id') AS sid \
             FROM terra_data_payloads WHERE user_id = ? AND data_type = 'sleep'"
        }
    };
    let row = sqlx::query(sql)
        .bind(u.clone())
        .fetch_one(&db.pool)
        .await
        .expect("the Terra-style query runs");
    assert_eq!(row.get::<String, _>("sid"), format!("{u}-sleep-7"));

    // Key columns are filled for range queries.
    let sql = format!(
        "SELECT summary_id, day, start_time, end_time, payload_id FROM {} WHERE user_id = {}",
        db.table("terra_data_payloads"),
        if db.dialect == Dialect::Postgres {
            "$1"
        } else {
            "?"
        }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(u.clone())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let body = s.json().unwrap();
    assert_eq!(row.get::<String, _>("summary_id"), format!("{u}-sleep-7"));
    assert_eq!(
        row.get::<String, _>("start_time"),
        body["data"][0]["metadata"]["start_time"].as_str().unwrap()
    );
    assert_eq!(row.get::<String, _>("payload_id"), s.payload_id);
    assert_eq!(row.get::<String, _>("day").len(), 10);
}

async fn athlete_is_one_row_per_user(db: Db) {
    let dest = db.dest();
    let u = user();
    let body = json!({"type": "athlete", "user": {"user_id": u, "provider": "OURA"},
                      "athlete": {"first_name": "A", "age": 40}, "version": "2022-03-16"});
    let a = delivery_with("athlete", &u, 1, body.clone());
    assert_delivered(&dest.deliver(std::slice::from_ref(&a)).await);
    assert_delivered(&dest.deliver(std::slice::from_ref(&a)).await);
    assert_eq!(db.data_payloads(&u, "athlete", "athlete").await, vec![body]);
    assert_eq!(db.user_state(&u).await.as_deref(), Some("active"));
}

/// PostgreSQL: a role that may only SELECT gets a Permanent outcome naming the GRANT to run, and
/// `check()` says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_missing_privilege_names_the_grant() {
    let db = Db::new(Dialect::Postgres).await;
    // Create the tables as the owner.
    assert_delivered(
        &db.dest()
            .deliver(&[sample_delivery("sleep", &user(), 1)])
            .await,
    );
    let role = format!(
        "manifold_ro_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    for stmt in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT USAGE ON SCHEMA terra TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA terra TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let url = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let ro = build(Dialect::Postgres, &url, "");
    let d = sample_delivery("sleep", &user(), 2);
    let out = ro.deliver(std::slice::from_ref(&d)).await;
    let reason = match &out[0] {
        Outcome::Permanent { reason, .. } => reason.clone(),
        other => panic!("missing privilege must be Permanent, got {other:?}"),
    };
    let grant = format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON terra.terra_users, terra.terra_data_payloads, terra.terra_misc_payloads TO {role}"
    );
    assert!(reason.contains(&grant), "{reason}");
    let err = ro
        .check()
        .await
        .expect_err("check must fail without write privileges");
    assert!(err.contains(&grant), "{err}");

    // Without the schema privilege (and no tables), the hint is the schema grant.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "REVOKE USAGE ON SCHEMA terra FROM {role}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let other_schema = build(Dialect::Postgres, &url, "schema = \"terra_other\"");
    let err = other_schema
        .check()
        .await
        .expect_err("cannot create a schema");
    assert!(
        err.contains("GRANT USAGE, CREATE ON SCHEMA terra_other"),
        "{err}"
    );

    // After the grant, the same destination delivers.
    for stmt in [
        format!("GRANT USAGE ON SCHEMA terra TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA terra TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let fresh = build(Dialect::Postgres, &url, "");
    fresh.check().await.expect("check passes after the grant");
    assert_delivered(&fresh.deliver(std::slice::from_ref(&d)).await);

    drop((ro, fresh, other_schema));
    for stmt in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        let _ = sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&db.pool)
            .await;
    }
}

/// `create_tables = false` on an empty database: a clear, permanent error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tables_without_create_tables_is_a_clear_error() {
    let db = Db::new(Dialect::Sqlite).await;
    let dest = build(Dialect::Sqlite, &db.url, "create_tables = false");
    let out = dest.deliver(&[sample_delivery("sleep", &user(), 1)]).await;
    match &out[0] {
        Outcome::Permanent { reason, .. } => {
            assert!(
                reason.contains("terra_data_payloads") && reason.contains("create_tables"),
                "{reason}"
            )
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(dest.check().await.unwrap_err().contains("create_tables"));
}
