//! # xlb
//!
//! XDP service load balancer for Kubernetes: the model (Kubernetes objects to
//! desired state), Maglev, sync (desired state to BPF maps), the sources
//! (Kubernetes API, manifest directory), the CLI, metrics and the benchmarks.
//! The data plane lives in `xlb-bpf`, loading in `xlb-loader`, the packet
//! generator in `xlb-pktgen`, the netns lab in `xlb-lab`.

pub mod agent;
pub mod bench;
pub mod cli;
pub mod explain;
pub mod maglev;
pub mod metrics;
pub mod model;
pub mod names;
pub mod sources;
pub mod sync;
pub mod unprogrammed;
