//! The `s3` destination (being built).
