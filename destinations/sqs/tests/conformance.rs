//! The shared destination conformance suite against the local SQS server (moto).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Queue, build_sqs, dead_port};
use manifold_core::destination::{BuildContext, Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};

struct SqsHarness {
    queue: Queue,
}

#[async_trait]
impl Harness for SqsHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        build_sqs(&self.queue.toml(""), &BuildContext::default(), "queue")
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        let m = self.queue.for_trace(d.trace_id()).await.pop()?;
        assert_eq!(m.attributes.get("type"), Some(&d.event_type));
        assert_eq!(m.attributes.get("user_id"), d.user_id.as_ref());
        Some(serde_json::from_str(&m.body).expect("message bodies are JSON"))
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        self.queue.for_trace(d.trace_id()).await.len()
    }

    async fn copy_ids(&self, d: &Delivery) -> Option<Vec<String>> {
        Some(
            self.queue
                .for_trace(d.trace_id())
                .await
                .into_iter()
                .filter_map(|m| m.attributes.get("trace_id").cloned())
                .collect(),
        )
    }

    // moto accepts any credentials.
    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        None
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        let port = dead_port().await;
        let toml = self
            .queue
            .toml("")
            .replace(&self.queue.endpoint, &format!("http://127.0.0.1:{port}"));
        build_sqs(&toml, &BuildContext::default(), "dead")
    }

    // moto keeps state in memory: a restart would drop the queue.
    async fn restart_server(&self) -> bool {
        false
    }

    fn idempotent(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_passes_the_conformance_suite() {
    let h = SqsHarness {
        queue: Queue::new(false, &[]).await,
    };
    conformance(&h).await;
}
