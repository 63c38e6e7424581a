//! The shared destination conformance suite against the local MongoDB-protocol server.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Db, build, dead_port};
use manifold_core::destination::{Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};
use mongodb::bson::doc;

struct MongoHarness {
    db: Db,
}

#[async_trait]
impl Harness for MongoHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        self.db.dest()
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        let (collection, id) = Db::location(d);
        self.db.payload(&collection, &id).await
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        let (collection, id) = Db::location(d);
        self.db.count(&collection, doc! {"_id": id}).await as usize
    }

    /// The local server has no authentication to refuse.
    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        None
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        let port = dead_port().await;
        build(
            &format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            "terra",
            "",
        )
    }

    /// The server is shared with other test runs; restarting it is not done here.
    async fn restart_server(&self) -> bool {
        false
    }

    fn idempotent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_passes_the_conformance_suite() {
    let h = MongoHarness {
        db: Db::new().await,
    };
    conformance(&h).await;
}
