//! The `azure-blob` destination (being built).
