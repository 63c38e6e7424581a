//! The `supabase` destination (being built).
