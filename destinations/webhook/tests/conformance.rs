//! The shared destination conformance suite against a real HTTP receiver.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Receiver, Reply, build, dead_port};
use manifold_core::destination::{Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};
use manifold_webhook::signature::verify_terra_signature;

const SECRET: &str = "whsec_c2VjcmV0LWZvci1jb25mb3JtYW5jZQ==";

struct WebhookHarness {
    rx: Receiver,
}

impl WebhookHarness {
    async fn start() -> Self {
        let rx = Receiver::start().await;
        // The receiver verifies the Terra signature with its secret and refuses anything else.
        rx.answer(|r| {
            let sig = r.header("terra-signature").unwrap_or_default();
            if verify_terra_signature(&sig, &r.body, SECRET.as_bytes(), Duration::from_secs(300)) {
                Reply::status(200).body("ok")
            } else {
                Reply::status(401).body(r#"{"error":"bad signature"}"#)
            }
        });
        WebhookHarness { rx }
    }

    fn dest(url: &str, secret: &str) -> Arc<dyn Destination> {
        build(&format!(
            "url = \"{url}\"\nsigning_secret = \"{secret}\"\nsignature = \"both\"\nrequest_timeout = \"2s\"\nallow_private_network = true\n"
        ))
    }

    fn copies(&self, d: &Delivery) -> Vec<common::Received> {
        self.rx
            .received()
            .into_iter()
            .filter(|r| r.header("x-terra-trace-id").as_deref() == Some(d.trace_id()))
            .collect()
    }
}

#[async_trait]
impl Harness for WebhookHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        Self::dest(&self.rx.url("/hook"), SECRET)
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        // Only what was accepted counts as held: the copy must carry a valid signature.
        self.copies(d)
            .into_iter()
            .rfind(|r| {
                let sig = r.header("terra-signature").unwrap_or_default();
                verify_terra_signature(&sig, &r.body, SECRET.as_bytes(), Duration::ZERO)
            })
            .map(|r| serde_json::from_slice(&r.body).expect("receiver got JSON"))
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        self.copies(d).len()
    }

    async fn copy_ids(&self, d: &Delivery) -> Option<Vec<String>> {
        Some(
            self.copies(d)
                .iter()
                .map(|r| r.header("webhook-id").unwrap_or_default())
                .collect(),
        )
    }

    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        Some(Self::dest(&self.rx.url("/hook"), "whsec_d3Jvbmctc2VjcmV0"))
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        Self::dest(
            &format!("http://127.0.0.1:{}/hook", dead_port().await),
            SECRET,
        )
    }

    async fn restart_server(&self) -> bool {
        self.rx.restart_after(Duration::from_secs(1)).await;
        true
    }

    fn idempotent(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_passes_the_conformance_suite() {
    let h = WebhookHarness::start().await;
    conformance(&h).await;
}
