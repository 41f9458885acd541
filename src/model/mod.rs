//! # Model (being built): Kubernetes objects -> desired state. Pure, no I/O.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Everything the sources know, as the Kubernetes objects themselves. Both
/// sources (API watchers, manifest directory) produce this; the model turns it
/// into desired map contents.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
}
