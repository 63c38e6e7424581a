//! The conformance suite again, on a private tansu broker that the suite's recovery check stops
//! and restarts (the shared broker cannot be restarted under other tests).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{PrivateBroker, build, dead_port, fresh_topic, records_for};
use manifold_core::destination::{Delivery, Destination, Outcome};
use manifold_core::testkit::{Harness, conformance, sample_delivery};

struct RestartingHarness {
    broker: PrivateBroker,
    topic: String,
    /// One destination for the whole suite, so the recovery check exercises a producer that
    /// lived through the restart (and its idempotence state with it).
    dest: Arc<dyn Destination>,
}

#[async_trait]
impl Harness for RestartingHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        self.dest.clone()
    }
    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        records_for(&self.broker.brokers(), &self.topic, d.trace_id())
            .await
            .pop()
            .map(|r| r.json())
    }
    async fn stored_count(&self, d: &Delivery) -> usize {
        records_for(&self.broker.brokers(), &self.topic, d.trace_id())
            .await
            .len()
    }
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
    async fn restart_server(&self) -> bool {
        self.broker.restart();
        true
    }
    fn idempotent(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_a_broker_restart() {
    let broker = PrivateBroker::start();
    let topic = fresh_topic("restart");
    let dest = build(
        &broker.brokers(),
        &format!("topic = \"{topic}\""),
        "\"message.timeout.ms\" = \"5000\"",
    );
    let h = RestartingHarness {
        broker,
        topic,
        dest,
    };
    conformance(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_is_retry_and_delivery_resumes_when_it_is_back() {
    let broker = PrivateBroker::start();
    let topic = fresh_topic("down");
    let dest = build(
        &broker.brokers(),
        &format!("topic = \"{topic}\""),
        "\"message.timeout.ms\" = \"3000\"",
    );
    let user = format!("u-{}", uuid::Uuid::new_v4());
    let first = sample_delivery("sleep", &user, 1);
    assert!(matches!(
        dest.deliver(std::slice::from_ref(&first)).await[0],
        Outcome::Delivered { .. }
    ));

    broker.stop();
    let during = sample_delivery("sleep", &user, 2);
    match &dest.deliver(std::slice::from_ref(&during)).await[0] {
        Outcome::Retry { reason, .. } => assert!(!reason.is_empty()),
        other => panic!("broker down: expected Retry, got {other:?}"),
    }

    broker.restart();
    // The engine retries the same delivery; the producer must recover by itself.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let out = dest.deliver(std::slice::from_ref(&during)).await;
        if matches!(out[0], Outcome::Delivered { .. }) {
            last = None;
            break;
        }
        last = Some(out[0].clone());
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        last.is_none(),
        "no delivery after the broker came back: {last:?}"
    );
    let got = records_for(&broker.brokers(), &topic, during.trace_id()).await;
    assert!(
        !got.is_empty(),
        "the retried message is on the restarted broker"
    );
    assert_eq!(got[0].json(), during.json().unwrap());
}
