//! The shared destination conformance suite against the local S3 server (moto).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Bucket, build, dead_port};
use manifold_core::destination::{BuildContext, Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};

struct S3Harness {
    bucket: Bucket,
}

const PREFIX: &str = "terra";

impl S3Harness {
    fn keys_for(&self, d: &Delivery) -> Vec<String> {
        manifold_s3::layout::plan(PREFIX, d)
            .expect("sample deliveries have a layout")
            .into_iter()
            .map(|o| o.key)
            .collect()
    }
}

#[async_trait]
impl Harness for S3Harness {
    async fn destination(&self) -> Arc<dyn Destination> {
        build(
            &self.bucket.toml(&format!("prefix = \"{PREFIX}\"")),
            &BuildContext::default(),
            "bucket",
        )
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        let key = self.keys_for(d).pop()?;
        let obj = self.bucket.get(&key).await?;
        Some(serde_json::from_slice(&obj.body).expect("stored objects are JSON"))
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        let mut n = 0;
        for k in self.keys_for(d) {
            n += self
                .bucket
                .keys(&k)
                .await
                .iter()
                .filter(|x| **x == k)
                .count();
        }
        n
    }

    // moto accepts any credentials, so there is nothing that refuses them.
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

    // moto keeps state in memory: a restart would drop the bucket.
    async fn restart_server(&self) -> bool {
        false
    }

    fn idempotent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_conformance_suite() {
    let h = S3Harness {
        bucket: Bucket::new().await,
    };
    conformance(&h).await;
}
