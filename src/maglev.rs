//! # Maglev (being built).
