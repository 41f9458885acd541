//! EndpointSlices as xlb keeps them: only what the model reads of one.
//!
//! The API server's EndpointSlice (`k8s_openapi`) carries per endpoint a
//! list of address strings, hostname, targetRef (the pod's kind, name,
//! namespace and uid), zone, hints and the conditions: some 400 bytes and
//! several heap strings each. A [`Slice`] keeps its name, namespace,
//! resourceVersion and the labels the model reads, its ports, and per
//! endpoint the first address (parsed once here), the node name (one
//! shared string per node within the slice) and the three conditions: 48
//! bytes. The sources convert each object as it arrives and hand the model
//! only these, so an endpoint change re-parses nothing and a Service of
//! thousands of endpoints frees a few allocations, not tens of thousands.
//!
//! Everything the model's output depends on is kept, so two objects with
//! equal [`Slice`]s give the same desired state (what
//! [`super::Model::apply_snapshot`] relies on when it compares content).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::endpoints::parse_ip;
use super::{HEADLESS_LABEL, SERVICE_NAME_LABEL};

/// An EndpointSlice, compact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slice {
    /// name, namespace, resourceVersion, and of the labels only
    /// [`SERVICE_NAME_LABEL`] and [`HEADLESS_LABEL`].
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` (or what the object says: refused by the model).
    pub address_type: String,
    /// name, protocol, port (appProtocol dropped).
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// One endpoint of a [`Slice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// The first of its addresses; `None` when it lists none.
    pub address: Option<EndpointAddr>,
    /// nodeName, shared by the slice's endpoints on the same node.
    pub node_name: Option<Arc<str>>,
    /// conditions.ready, serving, terminating as published.
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

/// An endpoint address: parsed, or as written when it does not parse (the
/// model reports it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointAddr {
    Ip(IpAddr),
    Bad(Box<str>),
}

impl EndpointAddr {
    fn new(s: &str) -> Self {
        match parse_ip(s) {
            Ok(ip) => EndpointAddr::Ip(ip),
            Err(_) => EndpointAddr::Bad(s.into()),
        }
    }
}

impl std::fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAddr::Ip(ip) => ip.fmt(f),
            EndpointAddr::Bad(s) => f.write_str(s),
        }
    }
}

/// The metadata the model reads.
fn meta(m: &ObjectMeta) -> ObjectMeta {
    let labels: BTreeMap<String, String> = m
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| *k == SERVICE_NAME_LABEL || *k == HEADLESS_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        resource_version: m.resource_version.clone(),
        labels: m.labels.as_ref().map(|_| labels),
        ..Default::default()
    }
}

fn port(p: &EndpointPort) -> EndpointPort {
    EndpointPort {
        name: p.name.clone(),
        protocol: p.protocol.clone(),
        port: p.port,
        app_protocol: None,
    }
}

/// Node names of one slice, one shared string each: looked up in a list
/// while there are few (a slice's endpoints are on a handful of nodes),
/// in a map past [`Names::LIST`].
#[derive(Default)]
struct Names {
    list: Vec<Arc<str>>,
    map: HashMap<Arc<str>, ()>,
}

impl Names {
    const LIST: usize = 16;

    fn get(&mut self, n: &str) -> Arc<str> {
        if let Some(a) = self.list.iter().find(|a| &***a == n) {
            return a.clone();
        }
        if let Some((a, _)) = self.map.get_key_value(n) {
            return a.clone();
        }
        let a: Arc<str> = n.into();
        if self.list.len() < Self::LIST {
            self.list.push(a.clone());
        } else {
            self.map.insert(a.clone(), ());
        }
        a
    }
}

fn endpoint(e: &Endpoint, names: &mut Names) -> SliceEndpoint {
    let c = e.conditions.as_ref();
    SliceEndpoint {
        address: e.addresses.first().map(|a| EndpointAddr::new(a)),
        node_name: e.node_name.as_deref().map(|n| names.get(n)),
        ready: c.and_then(|c| c.ready),
        serving: c.and_then(|c| c.serving),
        terminating: c.and_then(|c| c.terminating),
    }
}

impl From<&EndpointSlice> for Slice {
    fn from(s: &EndpointSlice) -> Self {
        let mut names = Names::default();
        Slice {
            metadata: meta(&s.metadata),
            address_type: s.address_type.clone(),
            ports: s.ports.iter().flatten().map(port).collect(),
            endpoints: s
                .endpoints
                .iter()
                .map(|e| endpoint(e, &mut names))
                .collect(),
        }
    }
}

impl From<EndpointSlice> for Slice {
    fn from(s: EndpointSlice) -> Self {
        Slice::from(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keeps_what_the_model_reads() {
        let s = Slice::from(es(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "ns", "resourceVersion": "7",
                         "labels": {"kubernetes.io/service-name": "web", "app": "x",
                                    "service.kubernetes.io/headless": ""},
                         "annotations": {"a": "b"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
            "endpoints": [
                {"addresses": ["10.0.0.1", "10.0.0.9"], "nodeName": "n1",
                 "conditions": {"ready": false, "serving": true, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "web-a", "namespace": "ns"}},
                {"addresses": ["10.0.0.2"], "nodeName": "n1"},
                {"addresses": ["::ffff:10.0.0.3"]},
                {"addresses": []}
            ]
        })));
        assert_eq!(s.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels.len(),
            2,
            "only the labels the model reads: {labels:?}"
        );
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert!(labels.contains_key(HEADLESS_LABEL));
        assert!(s.metadata.annotations.is_none());
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.ports.len(), 1);
        assert_eq!(s.ports[0].name.as_deref(), Some("http"));
        assert_eq!(s.ports[0].port, Some(8080));
        assert_eq!(s.ports[0].app_protocol, None);
        let e = &s.endpoints;
        assert_eq!(e.len(), 4);
        assert_eq!(
            e[0].address,
            Some(EndpointAddr::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            (e[0].ready, e[0].serving, e[0].terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(
            (e[1].ready, e[1].serving, e[1].terminating),
            (None, None, None)
        );
        // one string per node name within the slice
        assert!(Arc::ptr_eq(
            e[0].node_name.as_ref().unwrap(),
            e[1].node_name.as_ref().unwrap()
        ));
        assert_eq!(e[0].node_name.as_deref(), Some("n1"));
        // refused by parse_ip: kept as written, for the model's reason
        assert_eq!(
            e[2].address,
            Some(EndpointAddr::Bad("::ffff:10.0.0.3".into()))
        );
        assert_eq!(e[2].node_name, None);
        assert_eq!(e[3].address, None);
    }

    #[test]
    fn node_names_shared_past_the_list() {
        let eps: Vec<serde_json::Value> = (0..100)
            .map(|i| {
                serde_json::json!({"addresses": [format!("10.0.{}.{}", i / 50, i % 50 + 1)],
                                        "nodeName": format!("n{}", i % 40)})
            })
            .collect();
        let s = Slice::from(es(serde_json::json!({
            "metadata": {"name": "a"}, "addressType": "IPv4", "endpoints": eps
        })));
        for (i, e) in s.endpoints.iter().enumerate() {
            let n = e.node_name.as_ref().unwrap();
            assert_eq!(&**n, format!("n{}", i % 40));
            assert!(Arc::ptr_eq(
                n,
                s.endpoints[i % 40].node_name.as_ref().unwrap()
            ));
        }
    }

    #[test]
    fn compact_endpoints() {
        assert!(std::mem::size_of::<SliceEndpoint>() <= 48);
    }
}
