//! # Benchmarks (being built): `xlb bench prog|run|sync`.
