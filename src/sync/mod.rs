//! # Sync (being built): desired state -> maps.
