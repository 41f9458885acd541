//! # Metrics (being built).
