//! Real databases for the tests: a fresh PostgreSQL database (MANIFOLD_TEST_POSTGRES), a fresh
//! MariaDB/MySQL database (MANIFOLD_TEST_MYSQL) and a SQLite file in a temp dir. An unreachable
//! server fails the test with how to start it; nothing is skipped.
#![allow(dead_code)]

use std::sync::Arc;

use manifold_core::destination::{BuildContext, Delivery, Destination, DestinationFactory};
use manifold_core::event::item_key;
use manifold_core::testdb::TempDatabase;
use manifold_sql::{Dialect, SqlFactory};
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, Row};

pub fn mysql_admin_url() -> String {
    std::env::var("MANIFOLD_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// A fresh MariaDB/MySQL database, dropped on drop.
pub struct MysqlDb {
    pub url: String,
    name: String,
}

impl MysqlDb {
    pub async fn create() -> MysqlDb {
        let admin = mysql_admin_url();
        let mut conn = sqlx::mysql::MySqlConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MariaDB/MySQL is required for this test and is not reachable at {admin}: {e}\n\
                     start the test services with `scripts/services` (or set MANIFOLD_TEST_MYSQL)"
                )
            });
        let name = format!("manifold_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        MysqlDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        let admin = mysql_admin_url();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::mysql::MySqlConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name}"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

enum Holder {
    Pg(TempDatabase),
    My(MysqlDb),
    Lite(tempfile::TempDir),
}

/// One database to deliver into, plus a pool to look at what it holds.
pub struct Db {
    pub dialect: Dialect,
    pub url: String,
    pub pool: AnyPool,
    _holder: Holder,
}

/// A port where nothing listens.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

pub fn driver(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "postgres",
        Dialect::MySql => "mysql",
        Dialect::Sqlite => "sqlite",
    }
}

/// Build a destination through the factory, like the engine does.
pub fn build(dialect: Dialect, url: &str, extra: &str) -> Arc<dyn Destination> {
    let toml_src = format!(
        "driver = \"{}\"\nurl = \"{url}\"\nconnect_timeout = \"2s\"\n{extra}",
        driver(dialect)
    );
    let table: toml::Table = toml::from_str(&toml_src).unwrap();
    SqlFactory
        .build("test", table, &BuildContext::default())
        .unwrap_or_else(|e| panic!("build failed: {e:?}"))
}

impl Db {
    pub async fn new(dialect: Dialect) -> Db {
        sqlx::any::install_default_drivers();
        let (url, holder) = match dialect {
            Dialect::Postgres => {
                let t = TempDatabase::create().await;
                (t.url.clone(), Holder::Pg(t))
            }
            Dialect::MySql => {
                let t = MysqlDb::create().await;
                (t.url.clone(), Holder::My(t))
            }
            Dialect::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/terra.db", dir.path().display());
                (url, Holder::Lite(dir))
            }
        };
        let pool_url = match dialect {
            Dialect::Sqlite => format!("{url}?mode=rwc"),
            _ => url.clone(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(&pool_url)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to the test database: {e}; run scripts/services")
            });
        Db {
            dialect,
            url,
            pool,
            _holder: holder,
        }
    }

    pub fn dest(&self) -> Arc<dyn Destination> {
        build(self.dialect, &self.url, "")
    }

    pub fn table(&self, t: &str) -> String {
        match self.dialect {
            Dialect::Postgres => format!("terra.{t}"),
            _ => t.to_string(),
        }
    }

    fn ph(&self, n: usize) -> String {
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    fn payload_col(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "payload::text",
            _ => "payload",
        }
    }

    /// The stored payloads of `terra_data_payloads` rows for one key.
    pub async fn data_payloads(&self, user: &str, data_type: &str, key: &str) -> Vec<Value> {
        let sql = format!(
            "SELECT {} AS p FROM {} WHERE user_id = {} AND data_type = {} AND record_key = {}",
            self.payload_col(),
            self.table("terra_data_payloads"),
            self.ph(1),
            self.ph(2),
            self.ph(3)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .bind(data_type.to_string())
            .bind(key.to_string())
            .fetch_all(&self.pool)
            .await
            .expect("select from terra_data_payloads")
            .iter()
            .map(|r| serde_json::from_str(&r.get::<String, _>("p")).unwrap())
            .collect()
    }

    pub async fn misc_payloads(&self, payload_id: &str) -> Vec<Value> {
        let sql = format!(
            "SELECT {} AS p FROM {} WHERE payload_id = {}",
            self.payload_col(),
            self.table("terra_misc_payloads"),
            self.ph(1)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(payload_id.to_string())
            .fetch_all(&self.pool)
            .await
            .expect("select from terra_misc_payloads")
            .iter()
            .map(|r| serde_json::from_str(&r.get::<String, _>("p")).unwrap())
            .collect()
    }

    /// Rows of one delivery: by natural key for data events, by trace id for the others.
    pub async fn rows_for(&self, d: &Delivery) -> Vec<Value> {
        let body = d.json().unwrap();
        match body.get("data").and_then(|x| x.get(0)) {
            Some(item) => {
                let key = item_key(&d.event_type, item).expect("sample items have keys");
                self.data_payloads(d.user_id.as_deref().unwrap(), &d.event_type, &key)
                    .await
            }
            None => self.misc_payloads(&d.payload_id).await,
        }
    }

    pub async fn count(&self, table: &str, user: &str) -> i64 {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE user_id = {}",
            self.table(table),
            self.ph(1)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .fetch_one(&self.pool)
            .await
            .expect("count")
            .get::<i64, _>("n")
    }

    pub async fn user_state(&self, user: &str) -> Option<String> {
        let sql = format!(
            "SELECT state FROM {} WHERE user_id = {}",
            self.table("terra_users"),
            self.ph(1)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await
            .expect("select state")
            .map(|r| r.get::<String, _>("state"))
    }
}

/// A delivery with an arbitrary body.
pub fn delivery_with(event_type: &str, user: &str, version: i64, body: Value) -> Delivery {
    let mut d = manifold_core::testkit::sample_delivery(event_type, user, 1);
    d.version = version;
    d.body = serde_json::to_vec(&body).unwrap().into();
    d
}
