//! The `kafka` destination (being built).
