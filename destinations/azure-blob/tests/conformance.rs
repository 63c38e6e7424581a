//! The shared destination conformance suite against Azurite, once with a connection string
//! (the crate signs its own SAS from the account key) and once with a SAS URL signed by an
//! independent implementation.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Container, build, dead_port};
use manifold_core::destination::{BuildContext, Delivery, Destination};
use manifold_core::testkit::{Harness, conformance};

const PREFIX: &str = "terra";

struct AzureHarness {
    container: Container,
    sas: bool,
}

impl AzureHarness {
    fn settings(&self) -> String {
        let extra = format!("prefix = \"{PREFIX}\"");
        if self.sas {
            self.container.toml_sas("cw", &extra)
        } else {
            self.container.toml_cs(&extra)
        }
    }

    fn names_for(&self, d: &Delivery) -> Vec<String> {
        manifold_azure_blob::layout::plan(PREFIX, d)
            .expect("sample deliveries have a layout")
            .into_iter()
            .map(|o| o.key)
            .collect()
    }
}

#[async_trait]
impl Harness for AzureHarness {
    async fn destination(&self) -> Arc<dyn Destination> {
        build(&self.settings(), &BuildContext::default(), "azure")
    }

    async fn read_back(&self, d: &Delivery) -> Option<serde_json::Value> {
        let name = self.names_for(d).pop()?;
        let blob = self.container.get(&name).await?;
        Some(serde_json::from_slice(&blob.body).expect("stored blobs are JSON"))
    }

    async fn stored_count(&self, d: &Delivery) -> usize {
        let mut n = 0;
        for k in self.names_for(d) {
            n += self
                .container
                .names(&k)
                .await
                .iter()
                .filter(|x| **x == k)
                .count();
        }
        n
    }

    /// A SAS with a forged signature, or an account key that is not the account's.
    async fn rejecting_destination(&self) -> Option<Arc<dyn Destination>> {
        let s = self.settings();
        let bad = if self.sas {
            s.replace("&sig=", "&sig=AAAA")
        } else {
            s.replace(common::KEY, "bm90LXRoZS1yZWFsLWtleS1ub3QtdGhlLXJlYWwta2V5")
        };
        assert_ne!(bad, s);
        Some(build(&bad, &BuildContext::default(), "azure-bad"))
    }

    async fn unreachable_destination(&self) -> Arc<dyn Destination> {
        let port = dead_port().await;
        let s = self
            .settings()
            .replace("127.0.0.1:10000", &format!("127.0.0.1:{port}"));
        build(&s, &BuildContext::default(), "dead")
    }

    // Azurite is shared by every test run on the machine; it is not restarted here.
    async fn restart_server(&self) -> bool {
        false
    }

    fn idempotent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_with_connection_string_passes_the_conformance_suite() {
    let h = AzureHarness {
        container: Container::new().await,
        sas: false,
    };
    conformance(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_with_sas_url_passes_the_conformance_suite() {
    let h = AzureHarness {
        container: Container::new().await,
        sas: true,
    };
    conformance(&h).await;
}
