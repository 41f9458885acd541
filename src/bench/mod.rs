//! # Benchmarks: `xlb bench prog|run|sync`.
pub mod prog;
pub mod run;
pub mod sync;
