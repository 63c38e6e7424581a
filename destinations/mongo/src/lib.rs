//! The `mongo` destination (being built).
