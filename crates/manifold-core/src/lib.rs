//! The Manifold engine: configuration, the durable outbox store, the dispatcher that delivers
//! with retries, and the [`Destination`] trait that every destination implements.
//!
//! The flow: [`Engine::publish`] validates an event and commits it together with one delivery
//! row per matching destination ([`store`]); per destination, [`dispatcher`] claims due rows
//! under a lease, calls [`Destination::deliver`], and records the outcome (delivered, retry at a
//! time chosen by the [`retry::RetryPolicy`], dead letter, or disable on 410).
pub mod blob;
pub mod config;
pub mod destination;
pub mod dispatcher;
pub mod engine;
pub mod event;
pub mod format;
pub mod newest;
pub mod object_layout;
pub mod retry;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testdb;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{Config, ConfigError, Registry};
pub use destination::{Delivery, Destination, DestinationFactory, Outcome, Response};
pub use engine::Engine;
pub use store::Store;
