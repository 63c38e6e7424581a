//! Issue #6's proof for the database destinations, one test per destination (sql on PostgreSQL,
//! MariaDB and SQLite; supabase; mongo). Each test:
//! 1. runs the real binary, `manifold demo --users 3 --days 7 --quiet --config <the destination>
//!    --forward-to <a receiver here> --secret S`, and keeps every forwarded body (its
//!    `terra-signature` checked with this file's own HMAC code);
//! 2. reads the database back with its OWN client (psql, mariadb, sqlite3, pymongo; for supabase
//!    psql and PostgREST's HTTP API) and compares with the forwarded JSON: one row/document per
//!    natural key holding the latest version's payload (trace id and version included), one
//!    row/document per informational event, the users active;
//! 3. redelivers every body (in commit order) through the destination built in this process and
//!    finds the same rows/documents — no count changed, nothing rewritten to an older version;
//! 4. has the engine (`manifold serve`, retry from 200 ms) deliver the same bodies into a fresh
//!    table set while the server is stopped after the first deliveries and restarted once the
//!    engine's attempts fail (a private PostgreSQL/MariaDB/nx-27017/postrust that the test
//!    starts, or for SQLite a `BEGIN EXCLUSIVE` held by another connection), and finds nothing
//!    missing.

mod common;
#[path = "common/proof.rs"]
mod proof;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use manifold_core::destination::{Destination, DestinationFactory};
use manifold_core::{Config, Registry};
use proof::*;
use serde_json::Value;
use tokio::process::Command;

/// The destination built in this process by its crate's factory, from the same config text the
/// engine was given.
fn build(
    factory: impl DestinationFactory + 'static,
    kind: &str,
    settings: &str,
) -> Arc<dyn Destination> {
    let mut registry = Registry::new();
    registry.register(factory);
    let text = format!("[[destinations]]\n{}", destination(kind, settings));
    let config = Config::from_str(&text, "<proof>", &registry, &|_| None)
        .unwrap_or_else(|e| panic!("build failed: {e}"));
    config.destinations[0].destination.clone()
}

/// `[[destinations]]` body: name `db`, the type, its settings, a short retry policy.
fn destination(kind: &str, settings: &str) -> String {
    format!("name = \"db\"\ntype = \"{kind}\"\n{settings}\n{FAST_RETRY}\n")
}

fn report(what: &str, exp: &Expected, t0: Instant, outage: (usize, i64)) {
    eprintln!(
        "{what}: {} bodies forwarded, {} records ({:?}), {} informational, {} tombstone entries; \
         outage: {} deliveries, up to {} attempts; {:.1} s",
        exp.bodies.len(),
        exp.records.len(),
        exp.per_type(),
        exp.info.len(),
        exp.tombstones,
        outage.0,
        outage.1,
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_postgres_proof() {
    let t0 = Instant::now();
    let pg = PrivatePostgres::start().await;
    let url = pg.url();
    let settings =
        |schema: &str| format!("driver = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"");
    let dir = tempfile::tempdir().unwrap();

    let rx = ForwardReceiver::start().await;
    let bodies = run_demo(dir.path(), &destination("sql", &settings("terra")), &rx).await;
    let exp = Expected::from(&bodies);
    let stored = read_psql(&url, "terra").await;
    check_tables(&stored, &exp, Ids::Same);

    let dest = build(manifold_sql::SqlFactory, "sql", &settings("terra"));
    redeliver(&*dest, exp.deliveries_ordered(&table_trace_ids(&stored))).await;
    assert_same_tables(
        &read_psql(&url, "terra").await,
        &stored,
        "redelivery changed rows",
    );

    let serve = Serve::start(&destination("sql", &settings("outage"))).await;
    let out = outage(&serve, &exp, || pg.stop(), || pg.restart()).await;
    check_tables(&read_psql(&url, "outage").await, &exp, Ids::Any);
    report("sql/postgres", &exp, t0, out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_mariadb_proof() {
    let t0 = Instant::now();
    let m = PrivateMariadb::start().await;
    m.sql("CREATE DATABASE terra; CREATE DATABASE outage").await;
    let settings = |db: &str| format!("driver = \"mysql\"\nurl = \"{}\"", m.url(db));
    let dir = tempfile::tempdir().unwrap();

    let rx = ForwardReceiver::start().await;
    let bodies = run_demo(dir.path(), &destination("sql", &settings("terra")), &rx).await;
    let exp = Expected::from(&bodies);
    let stored = read_mariadb(m.port, "terra").await;
    check_tables(&stored, &exp, Ids::Same);

    let dest = build(manifold_sql::SqlFactory, "sql", &settings("terra"));
    redeliver(&*dest, exp.deliveries_ordered(&table_trace_ids(&stored))).await;
    assert_same_tables(
        &read_mariadb(m.port, "terra").await,
        &stored,
        "redelivery changed rows",
    );

    let serve = Serve::start(&destination("sql", &settings("outage"))).await;
    let out = outage(&serve, &exp, || m.stop(), || m.restart()).await;
    check_tables(&read_mariadb(m.port, "outage").await, &exp, Ids::Any);
    report("sql/mariadb", &exp, t0, out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sqlite_proof() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(format!("{name}.db"));
    let settings = |name: &str| {
        format!(
            "driver = \"sqlite\"\nurl = \"sqlite://{}\"",
            file(name).display()
        )
    };

    let rx = ForwardReceiver::start().await;
    let bodies = run_demo(dir.path(), &destination("sql", &settings("terra")), &rx).await;
    let exp = Expected::from(&bodies);
    let stored = read_sqlite3(&file("terra")).await;
    check_tables(&stored, &exp, Ids::Same);

    let dest = build(manifold_sql::SqlFactory, "sql", &settings("terra"));
    redeliver(&*dest, exp.deliveries_ordered(&table_trace_ids(&stored))).await;
    assert_same_tables(
        &read_sqlite3(&file("terra")).await,
        &stored,
        "redelivery changed rows",
    );

    // No server to stop: another connection holds the database exclusively instead.
    let lock: Arc<Mutex<Option<SqliteLock>>> = Arc::default();
    let serve = Serve::start(&destination("sql", &settings("outage"))).await;
    let outage_file = file("outage");
    let out = outage(
        &serve,
        &exp,
        || async {
            let l = SqliteLock::hold(&outage_file).await;
            *lock.lock().unwrap() = Some(l);
        },
        || async {
            let l = lock.lock().unwrap().take().expect("the lock is held");
            l.release().await;
        },
    )
    .await;
    check_tables(&read_sqlite3(&outage_file).await, &exp, Ids::Any);
    report("sql/sqlite", &exp, t0, out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_proof() {
    let t0 = Instant::now();
    let mongo = PrivateMongo::start().await;
    let uri = mongo.uri();
    let settings = |db: &str| format!("uri = \"{uri}\"\ndatabase = \"{db}\"");
    let dir = tempfile::tempdir().unwrap();

    let rx = ForwardReceiver::start().await;
    let bodies = run_demo(dir.path(), &destination("mongo", &settings("terra")), &rx).await;
    let exp = Expected::from(&bodies);
    let stored = read_pymongo(&uri, "terra").await;
    check_mongo(&stored, &exp, Ids::Same);

    let dest = build(manifold_mongo::MongoFactory, "mongo", &settings("terra"));
    redeliver(&*dest, exp.deliveries_ordered(&mongo_trace_ids(&stored))).await;
    let again = read_pymongo(&uri, "terra").await;
    assert_eq!(
        mongo_counts(&again),
        mongo_counts(&stored),
        "redelivery changed counts"
    );
    let (after, before) = (
        mongo_without_write_times(&again),
        mongo_without_write_times(&stored),
    );
    let changed: Vec<String> = before
        .iter()
        .flat_map(|(c, docs)| {
            docs.iter()
                .filter(|(id, d)| after.get(c).and_then(|a| a.get(*id)) != Some(*d))
                .map(move |(id, d)| format!("{c}/{id} (was _meta {})", d["_meta"]))
        })
        .collect();
    assert!(
        changed.is_empty(),
        "redelivery changed documents: {changed:?}"
    );

    let serve = Serve::start(&destination("mongo", &settings("outage"))).await;
    let out = outage(&serve, &exp, || mongo.stop(), || mongo.restart()).await;
    check_mongo(&read_pymongo(&uri, "outage").await, &exp, Ids::Any);
    report("mongo", &exp, t0, out);
}

/// Two schemas of this test in the database behind postrust, dropped on drop.
struct SupabaseSchemas {
    db: String,
    names: [String; 2],
}

impl Drop for SupabaseSchemas {
    fn drop(&mut self) {
        for s in &self.names {
            let _ = std::process::Command::new("psql")
                .args(["-X", "-q", "-c"])
                .arg(format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"))
                .arg(&self.db)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_proof() {
    let t0 = Instant::now();
    let db = env_or_panic(
        "MANIFOLD_TEST_POSTGREST_DB",
        "the supabase proof needs the PostgreSQL database behind postrust",
    );
    let key = env_or_panic(
        "MANIFOLD_TEST_POSTGREST_SERVICE_KEY",
        "the supabase proof needs the service-role key of the local postrust",
    );
    let schemas = SupabaseSchemas {
        db: db.clone(),
        names: [unique("proof"), unique("proof_outage")],
    };
    let [main, down] = &schemas.names;
    // The tables as a user creates them: `manifold supabase init --database-url`.
    for s in [main, down] {
        run(
            Command::new(env!("CARGO_BIN_EXE_manifold")).args([
                "supabase",
                "init",
                "--schema",
                s,
                "--database-url",
                &db,
            ]),
            "manifold supabase init",
        )
        .await;
    }
    let postrust = PrivatePostrust::start(&[main, down]).await;
    let settings = |schema: &str| {
        format!(
            "url = \"{}\"\nservice_role_key = \"{key}\"\nschema = \"{schema}\"\nrest_path = \"/api\"\ntimeout = \"5s\"",
            postrust.project_url()
        )
    };
    let dir = tempfile::tempdir().unwrap();

    let rx = ForwardReceiver::start().await;
    let bodies = run_demo(dir.path(), &destination("supabase", &settings(main)), &rx).await;
    let exp = Expected::from(&bodies);
    let stored = read_psql(&db, main).await;
    check_tables(&stored, &exp, Ids::Same);
    // The same rows through PostgREST's own API.
    let api: Vec<Value> = reqwest::Client::new()
        .get(format!(
            "{}/terra_data_payloads?select=user_id,data_type,record_key,payload_id,version,payload",
            postrust.base()
        ))
        .header("apikey", &key)
        .header("Authorization", format!("Bearer {key}"))
        .header("Accept-Profile", main.as_str())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut via_api: Vec<String> = api
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                r["user_id"].as_str().unwrap(),
                r["data_type"].as_str().unwrap(),
                r["record_key"].as_str().unwrap(),
                r["payload_id"].as_str().unwrap(),
                r["version"],
                canonical(&r["payload"])
            )
        })
        .collect();
    let mut via_psql: Vec<String> = stored
        .data
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                r.user_id,
                r.data_type,
                r.record_key,
                r.payload_id,
                r.version,
                canonical(&r.payload)
            )
        })
        .collect();
    via_api.sort();
    via_psql.sort();
    assert_eq!(via_api, via_psql, "PostgREST serves what psql reads");

    let dest = build(
        manifold_supabase::SupabaseFactory,
        "supabase",
        &settings(main),
    );
    redeliver(&*dest, exp.deliveries_ordered(&table_trace_ids(&stored))).await;
    assert_same_tables(
        &read_psql(&db, main).await,
        &stored,
        "redelivery changed rows",
    );

    let serve = Serve::start(&destination("supabase", &settings(down))).await;
    let out = outage(&serve, &exp, || postrust.stop(), || postrust.restart()).await;
    check_tables(&read_psql(&db, down).await, &exp, Ids::Any);
    report("supabase", &exp, t0, out);
}
