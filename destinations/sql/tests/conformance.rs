//! The shared destination conformance suite against real PostgreSQL, MariaDB and SQLite.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Db, build, dead_port};
use manifold_core::destination::{Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};
use manifold_sql::Dialect;

struct SqlHarness {
    db: Db,
}

#[async_trait]
impl Harness for SqlHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        self.db.dest()
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        self.db.rows_for(d).await.pop()
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        self.db.rows_for(d).await.len()
    }

    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        let url = &self.db.url;
        match self.db.dialect {
            // The test cluster trusts 127.0.0.1, so the refused credential is an unknown role.
            Dialect::Postgres => Some(build(
                Dialect::Postgres,
                &url.replacen("postgres://postgres@", "postgres://no_such_role:wrong@", 1),
                "",
            )),
            Dialect::MySql => Some(build(
                Dialect::MySql,
                &url.replacen("mysql://root@", "mysql://root:wrong-password@", 1),
                "",
            )),
            Dialect::Sqlite => None,
        }
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        let port = dead_port().await;
        match self.db.dialect {
            Dialect::Postgres => build(
                Dialect::Postgres,
                &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                "",
            ),
            Dialect::MySql => build(
                Dialect::MySql,
                &format!("mysql://root@127.0.0.1:{port}/test"),
                "",
            ),
            // SQLite has no port: a file in a directory that is not there (yet).
            Dialect::Sqlite => build(
                Dialect::Sqlite,
                &format!("sqlite:///nonexistent-manifold-{port}/dir/terra.db"),
                "",
            ),
        }
    }

    async fn restart_server(&self) -> bool {
        false
    }

    fn idempotent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let h = SqlHarness {
        db: Db::new(Dialect::Postgres).await,
    };
    conformance(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_passes_the_conformance_suite() {
    let h = SqlHarness {
        db: Db::new(Dialect::MySql).await,
    };
    conformance(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    let h = SqlHarness {
        db: Db::new(Dialect::Sqlite).await,
    };
    conformance(&h).await;
}
