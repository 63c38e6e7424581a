//! The `gcs` destination (being built).
