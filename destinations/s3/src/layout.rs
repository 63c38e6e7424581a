//! Object keys for this destination: the layout shared by every object store
//! ([`manifold_core::object_layout`]).

pub use manifold_core::object_layout::*;
