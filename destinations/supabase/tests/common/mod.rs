//! The local PostgREST-compatible server (postrust, MANIFOLD_TEST_POSTGREST) in front of the
//! PostgreSQL database MANIFOLD_TEST_POSTGREST_DB, both started by `scripts/services`. The tables
//! are created with `init_sql("api")` exactly as a user would. A missing variable or an
//! unreachable server fails the test with how to start it; nothing is skipped.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use manifold_core::destination::{BuildContext, Delivery, Destination, DestinationFactory};
use manifold_core::event::item_key;
use manifold_supabase::{SupabaseFactory, init_sql};
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub const SCHEMA: &str = "api";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the supabase destination's tests need the local PostgREST-compatible \
             server (postrust) and its PostgreSQL database. Start them with `scripts/services --env` \
             and export what it prints (or `source ~/.cache/manifold-services/env`)"
        )
    })
}

/// The local server: project URL, REST path, service-role key, database URL.
pub struct Server {
    pub url: String,
    pub rest_path: String,
    pub key: String,
    pub db_url: String,
    pub http: reqwest::Client,
}

impl Server {
    /// Read the environment, create the tables with `init_sql` and wait until the API sees them.
    pub async fn start() -> Server {
        let base = env("MANIFOLD_TEST_POSTGREST");
        let db_url = env("MANIFOLD_TEST_POSTGREST_DB");
        let key = env("MANIFOLD_TEST_POSTGREST_SERVICE_KEY");
        let parsed = url::Url::parse(&base)
            .unwrap_or_else(|e| panic!("MANIFOLD_TEST_POSTGREST={base} is not a URL: {e}"));
        let url = format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap(),
            parsed.port_or_known_default().unwrap()
        );
        let rest_path = parsed.path().trim_end_matches('/').to_string();
        apply_init_sql(&db_url).await;
        let s = Server {
            url,
            rest_path,
            key,
            db_url,
            http: reqwest::Client::new(),
        };
        s.wait_for_tables().await;
        s
    }

    async fn wait_for_tables(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .get("terra_misc_payloads?select=payload_id&limit=1")
                .await;
            match r {
                Ok((200, _)) => return,
                other if tokio::time::Instant::now() > deadline => panic!(
                    "postrust at {}{} does not serve the tables created by init_sql (last answer {other:?}); \
                     is it running? start it with `scripts/services`",
                    self.url, self.rest_path
                ),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// `GET {url}{rest_path}/{path_and_query}` with the service key: (status, JSON).
    pub async fn get(&self, path_and_query: &str) -> Result<(u16, Value), String> {
        let resp = self
            .http
            .get(format!("{}{}/{path_and_query}", self.url, self.rest_path))
            .header("apikey", &self.key)
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Accept-Profile", SCHEMA)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "postrust is not reachable at {}: {e}; start it with `scripts/services`",
                    self.url
                )
            })?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn rows(&self, table: &str, filters: &[(&str, &str)]) -> Vec<Value> {
        let mut u = url::Url::parse(&format!("{}{}/{table}", self.url, self.rest_path)).unwrap();
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in filters {
                q.append_pair(k, &format!("eq.{v}"));
            }
        }
        let path = u.as_str()[format!("{}{}/", self.url, self.rest_path).len()..].to_string();
        match self.get(&path).await {
            Ok((200, Value::Array(rows))) => rows,
            other => panic!("GET {table} failed: {other:?}"),
        }
    }

    /// The payloads stored for one delivery: by natural key for data events, by trace id else.
    pub async fn payloads_for(&self, d: &Delivery) -> Vec<Value> {
        let body = d.json().unwrap();
        let rows = match body.get("data").and_then(|x| x.get(0)) {
            Some(item) => {
                let key = item_key(&d.event_type, item).expect("sample items have keys");
                self.rows(
                    "terra_data_payloads",
                    &[
                        ("user_id", d.user_id.as_deref().unwrap()),
                        ("data_type", &d.event_type),
                        ("record_key", &key),
                    ],
                )
                .await
            }
            None => {
                self.rows("terra_misc_payloads", &[("payload_id", &d.payload_id)])
                    .await
            }
        };
        rows.into_iter().map(|r| r["payload"].clone()).collect()
    }

    pub fn dest(&self) -> Arc<dyn Destination> {
        self.dest_with(&self.url, &self.key, "")
    }

    pub fn dest_with(&self, url: &str, key: &str, extra: &str) -> Arc<dyn Destination> {
        let src = format!(
            "url = \"{url}\"\nservice_role_key = \"{key}\"\nschema = \"{SCHEMA}\"\nrest_path = \"{}\"\ntimeout = \"5s\"\n{extra}",
            self.rest_path
        );
        build(&src)
    }

    /// A destination whose key the server refuses (the JWT signature is wrong).
    pub fn bad_key(&self) -> String {
        let (head, sig) = self.key.rsplit_once('.').unwrap();
        let flipped: String = sig
            .chars()
            .rev()
            .map(|c| if c == 'A' { 'B' } else { 'A' })
            .collect();
        format!("{head}.{flipped}")
    }
}

pub fn build(src: &str) -> Arc<dyn Destination> {
    let table: toml::Table = toml::from_str(src).unwrap();
    SupabaseFactory
        .build("test", table, &BuildContext::default())
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}

/// Run `init_sql(schema)` on a database, serialised across test processes.
pub async fn apply_init_sql(db_url: &str) {
    apply_sql(db_url, &init_sql(SCHEMA)).await;
}

pub async fn apply_sql(db_url: &str, sql: &str) {
    let mut conn = PgConnection::connect(db_url).await.unwrap_or_else(|e| {
        panic!(
            "the PostgreSQL database behind postrust is not reachable at {db_url}: {e}; \
             start it with `scripts/services`"
        )
    });
    sqlx::query("SELECT pg_advisory_lock(724011)")
        .execute(&mut conn)
        .await
        .unwrap();
    let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(724011)")
        .execute(&mut conn)
        .await;
    r.unwrap_or_else(|e| panic!("init_sql failed to apply: {e}"));
    let _ = conn.close().await;
}

/// A port where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A delivery with an arbitrary body.
pub fn delivery_with(event_type: &str, user: &str, version: i64, body: Value) -> Delivery {
    let mut d = manifold_core::testkit::sample_delivery(event_type, user, 1);
    d.version = version;
    d.body = serde_json::to_vec(&body).unwrap().into();
    d
}
