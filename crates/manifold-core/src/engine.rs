//! The engine: accepts events into the outbox and runs the delivery workers.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, DestinationConfig};
use crate::dispatcher::{DispatchSettings, run_destination};
use crate::event::{EventError, parse_envelope};
use crate::store::{Committed, NewPayload, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accepts events and delivers them. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    destinations: Vec<DestinationConfig>,
    settings: DispatchSettings,
}

impl Engine {
    pub fn new(
        store: Store,
        destinations: Vec<DestinationConfig>,
        settings: DispatchSettings,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                destinations,
                settings,
            }),
        }
    }

    /// Open the configured store and build an engine for a config.
    pub async fn from_config(config: &Config) -> Result<Self, StoreError> {
        let store = Store::open(config.store.url.expose(), config.store.max_connections).await?;
        let settings = DispatchSettings {
            node: node_id(),
            lease: config.store.lease,
            poll_interval: config.store.poll_interval,
        };
        Ok(Engine::new(store, config.destinations.clone(), settings))
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn destinations(&self) -> &[DestinationConfig] {
        &self.inner.destinations
    }

    pub fn node(&self) -> &str {
        &self.inner.settings.node
    }

    /// Validate a Terra-shaped event and commit it with one delivery row per matching
    /// destination. Returns once the commit is durable.
    pub async fn publish(
        &self,
        body: &[u8],
        terra_reference: Option<String>,
    ) -> Result<Committed, PublishError> {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        self.publish_value(&value, terra_reference).await
    }

    pub async fn publish_value(
        &self,
        value: &serde_json::Value,
        terra_reference: Option<String>,
    ) -> Result<Committed, PublishError> {
        self.publish_value_with(value, terra_reference, false).await
    }

    /// [`Engine::publish_value`]; with `force`, a body identical to the latest stored version
    /// of its natural key is still stored as a new version and delivered (explicit requests
    /// such as `to_webhook=true` history must reach the destinations).
    pub async fn publish_value_with(
        &self,
        value: &serde_json::Value,
        terra_reference: Option<String>,
        force: bool,
    ) -> Result<Committed, PublishError> {
        let envelope = parse_envelope(value)?;
        let destinations = self
            .inner
            .destinations
            .iter()
            .filter(|d| d.common.accepts(&envelope.event_type))
            .map(|d| d.common.name.clone())
            .collect();
        let committed = self
            .inner
            .store
            .commit(NewPayload {
                envelope,
                terra_reference,
                body: value.to_string(),
                destinations,
                force,
            })
            .await?;
        if !committed.duplicate {
            metrics::counter!("manifold_payloads_accepted_total").increment(1);
        }
        Ok(committed)
    }

    /// Start every destination's workers. They stop (finishing in-flight attempts) when
    /// `shutdown` becomes true; await the returned set to wait for them.
    pub fn start(&self, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        if let Some(listener) = self.inner.store.spawn_listener() {
            let mut sd = shutdown.clone();
            set.spawn(async move {
                let _ = sd.wait_for(|v| *v).await;
                listener.abort();
            });
        }
        for d in &self.inner.destinations {
            set.spawn(run_destination(
                self.inner.store.clone(),
                d.clone(),
                self.inner.settings.clone(),
                shutdown.clone(),
            ));
        }
        set
    }
}

/// `hostname-pid-random`: unique per process, readable in the attempt log.
pub fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    let rand: u32 = rand::random();
    format!("{host}-{}-{rand:08x}", std::process::id())
}
