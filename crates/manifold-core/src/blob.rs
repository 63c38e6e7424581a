//! Object storage as a service to other destinations: the claim check.
//!
//! Queues have size limits (SQS 256 KiB, Kafka `message.max.bytes`). A payload that does not fit
//! is written through a named object-storage destination (`claim_check = "<name>"`) and the queue
//! gets an `s3_payload` message whose pre-signed URL fetches it — Terra's convention.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::destination::{Delivery, Outcome};

/// An object store a destination can write to and sign URLs for.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Write (or overwrite) one object. Errors are classified like deliveries.
    async fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), Outcome>;
    /// A URL that fetches the object with a plain GET for `expires`.
    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, String>;
}

/// Blob stores by destination name, filled while the config is built.
#[derive(Clone, Default)]
pub struct BlobStores {
    inner: Arc<RwLock<HashMap<String, Arc<dyn BlobStore>>>>,
    required: Arc<RwLock<Vec<(String, String, String)>>>,
}

impl std::fmt::Debug for BlobStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .inner
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("BlobStores").field("names", &names).finish()
    }
}

impl BlobStores {
    /// An object-storage destination offers itself under its name.
    pub fn register(&self, name: &str, store: Arc<dyn BlobStore>) {
        if let Ok(mut m) = self.inner.write() {
            m.insert(name.to_string(), store);
        }
    }

    /// Look a store up (at delivery time: every destination is built by then).
    pub fn get(&self, name: &str) -> Option<Arc<dyn BlobStore>> {
        self.inner.read().ok()?.get(name).cloned()
    }

    /// Declare that destination `by` needs the blob store `name` (from its key `key`); the config
    /// loader reports a missing one once every destination is built.
    pub fn require(&self, by: &str, key: &str, name: &str) {
        if let Ok(mut r) = self.required.write() {
            r.push((by.to_string(), key.to_string(), name.to_string()));
        }
    }

    /// `(destination, key, missing name)` for every unmet requirement.
    pub fn missing(&self) -> Vec<(String, String, String)> {
        let have = self
            .inner
            .read()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        self.required
            .read()
            .map(|r| {
                r.iter()
                    .filter(|(_, _, n)| !have.contains(n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Object key for a claim-checked payload: `2022-03-16/<type>/<user>-<payload id>.json` under
/// `prefix`.
pub fn claim_check_key(prefix: &str, d: &Delivery) -> String {
    let prefix = prefix.trim_matches('/');
    let user = d.user_id.as_deref().unwrap_or("unknown");
    let key = format!(
        "2022-03-16/claim-check/{}/{user}-{}.json",
        d.event_type, d.payload_id
    );
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}/{key}")
    }
}

/// Store the payload in `store` and build the `s3_payload` message that points at it.
pub async fn claim_check(
    store: &dyn BlobStore,
    prefix: &str,
    d: &Delivery,
    expires: Duration,
) -> Result<Value, Outcome> {
    let key = claim_check_key(prefix, d);
    store.put(&key, &d.body, d.content_type).await?;
    let url = store
        .presign_get(&key, expires)
        .await
        .map_err(|e| Outcome::retry(format!("claim check: cannot sign a URL for {key}: {e}")))?;
    Ok(json!({
        "type": "s3_payload",
        "status": "success",
        "url": url,
        "expires_in": expires.as_secs(),
        "payload_reference": key,
        "payload_type": d.event_type,
        "user_id": d.user_id,
        "reference_id": d.reference_id,
        "trace_id": d.payload_id,
        "version": "2022-03-16",
    }))
}
