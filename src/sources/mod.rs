//! # Sources (being built): Kubernetes API and manifest directory.
