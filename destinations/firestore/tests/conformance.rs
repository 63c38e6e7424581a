//! The shared destination conformance suite against the local Firestore emulator. The emulator
//! keeps its data only in memory, so "restarting the server" is a `FaultProxy` outage in front of
//! it: every connection is reset and new ones are refused for a moment.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Project, build, dead_port, location};
use manifold_core::destination::{Delivery, Destination};
use manifold_core::testkit::{FaultProxy, Harness, conformance};

struct FirestoreHarness {
    project: Project,
    proxy: Arc<FaultProxy>,
}

#[async_trait]
impl Harness for FirestoreHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        build(&self.proxy.addr().to_string(), &self.project.id, "")
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        let (collection, id) = location(d);
        self.project.event(&collection, &id).await
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        let (collection, _) = location(d);
        self.project
            .query(&collection, "_manifold_key", &d.natural_key)
            .await
            .len()
    }

    /// The emulator has no authentication to refuse.
    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        None
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        build(
            &format!("127.0.0.1:{}", dead_port().await),
            "unreachable",
            "",
        )
    }

    async fn restart_server(&self) -> bool {
        self.proxy.down().await;
        let proxy = self.proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            proxy.up().await;
        });
        true
    }

    fn idempotent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_passes_the_conformance_suite() {
    let project = Project::new().await;
    let proxy = FaultProxy::start(&project.host).await;
    let h = FirestoreHarness { project, proxy };
    conformance(&h).await;
    assert!(
        h.proxy.connections() > 0,
        "the suite must have gone through the fault proxy"
    );
}
