//! The shared destination conformance suite against a real Kafka-protocol broker (tansu).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{bootstrap, build, dead_port, fresh_topic, records_for};
use manifold_core::destination::{Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};

struct KafkaHarness {
    brokers: String,
    topic: String,
}

#[async_trait]
impl Harness for KafkaHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        build(&self.brokers, &format!("topic = \"{}\"", self.topic), "")
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        records_for(&self.brokers, &self.topic, d.trace_id())
            .await
            .pop()
            .map(|r| r.json())
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        records_for(&self.brokers, &self.topic, d.trace_id())
            .await
            .len()
    }

    async fn copy_ids(&self, d: &Delivery) -> Option<Vec<String>> {
        Some(
            records_for(&self.brokers, &self.topic, d.trace_id())
                .await
                .into_iter()
                .filter_map(|r| r.trace_id().map(str::to_string))
                .collect(),
        )
    }

    /// tansu has no SASL/ACLs to refuse credentials with.
    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        None
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        build(
            &format!("127.0.0.1:{}", dead_port()),
            &format!("topic = \"{}\"", self.topic),
            "\"message.timeout.ms\" = \"3000\"",
        )
    }

    /// The shared broker is not restarted here (other tests use it); tests/broker.rs restarts a
    /// private one.
    async fn restart_server(&self) -> bool {
        false
    }

    /// Kafka keeps every message: a redelivery is a second message with the same trace id.
    fn idempotent(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_passes_the_conformance_suite() {
    let h = KafkaHarness {
        brokers: bootstrap(),
        topic: fresh_topic("conformance"),
    };
    conformance(&h).await;
}
