//! The `sqs` destination (being built).
