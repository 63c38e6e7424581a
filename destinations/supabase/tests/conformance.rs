//! The shared destination conformance suite against the local PostgREST-compatible server.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Server, dead_port};
use manifold_core::destination::{Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};

struct SupabaseHarness {
    server: Server,
}

#[async_trait]
impl Harness for SupabaseHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        self.server.dest()
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        self.server.payloads_for(d).await.pop()
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        self.server.payloads_for(d).await.len()
    }

    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        let s = &self.server;
        Some(s.dest_with(&s.url, &s.bad_key(), ""))
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        let port = dead_port().await;
        self.server
            .dest_with(&format!("http://127.0.0.1:{port}"), &self.server.key, "")
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
async fn supabase_passes_the_conformance_suite() {
    let h = SupabaseHarness {
        server: Server::start().await,
    };
    conformance(&h).await;
}
