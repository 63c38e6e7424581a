//! The shared destination conformance suite against the local GCS server (fake-gcs-server).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Bucket, build, dead_port};
use manifold_core::destination::{BuildContext, Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};

const PREFIX: &str = "terra";

struct GcsHarness {
    bucket: Bucket,
}

impl GcsHarness {
    fn names_for(&self, d: &Delivery) -> Vec<String> {
        manifold_gcs::layout::plan(PREFIX, d)
            .expect("sample deliveries have a layout")
            .into_iter()
            .map(|o| o.key)
            .collect()
    }
}

#[async_trait]
impl Harness for GcsHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        build(
            &self.bucket.toml(&format!("prefix = \"{PREFIX}\"")),
            &BuildContext::default(),
            "gcs",
        )
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        let name = self.names_for(d).pop()?;
        let obj = self.bucket.get(&name).await?;
        Some(serde_json::from_slice(&obj.body).expect("stored objects are JSON"))
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        let mut n = 0;
        for k in self.names_for(d) {
            n += self
                .bucket
                .names(&k)
                .await
                .iter()
                .filter(|x| **x == k)
                .count();
        }
        n
    }

    // fake-gcs-server accepts any (or no) credentials: nothing refuses them.
    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        None
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        let port = dead_port().await;
        let toml = self
            .bucket
            .toml("")
            .replace(&self.bucket.endpoint, &format!("http://127.0.0.1:{port}"));
        build(&toml, &BuildContext::default(), "dead")
    }

    // The server keeps its buckets in memory (and is shared): a restart would drop them.
    async fn restart_server(&self) -> bool {
        false
    }

    fn idempotent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_passes_the_conformance_suite() {
    let h = GcsHarness {
        bucket: Bucket::new().await,
    };
    conformance(&h).await;
}
