//! # Service and EndpointSlice objects for the lab's manifest directory
//!
//! Builders for the Service shapes the conformance tests need beyond
//! deploy/examples (named and numbered targetPorts, several protocols on one
//! port, type changes, traffic policies, affinity, publishNotReadyAddresses,
//! labels, healthCheckNodePort, ExternalName) and for EndpointSlices with any
//! conditions, pod or host-network addresses, with or without `nodeName`.
//! [`apply`] writes them as `<dir>/<name>.yaml` the way a controller would
//! update the API server; [`delete`] removes the file. In a dual-stack lab,
//! [`ServiceDef::dual_stack`] gives a Service the IPv6 counterpart of each of
//! its addresses and [`SliceDef::ipv6`] makes the IPv6 slice of the same
//! endpoints ([`crate::v6::to_v6`]).

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::manifests::write_atomic;
use crate::v6::to_v6;
use crate::{io_ctx, node_name, pod_addr, pod_name, Result};

/// A Service port's targetPort: a number or a container port name.
#[derive(Clone, Debug)]
pub enum Target {
    Num(u16),
    Name(String),
}

impl From<u16> for Target {
    fn from(p: u16) -> Self {
        Target::Num(p)
    }
}

impl From<&str> for Target {
    fn from(n: &str) -> Self {
        Target::Name(n.to_owned())
    }
}

/// One port of a Service.
#[derive(Clone, Debug)]
pub struct SvcPort {
    pub name: String,
    pub proto: String,
    pub port: u16,
    pub target: Target,
    pub node_port: Option<u16>,
}

/// A Service in namespace `default`.
#[derive(Clone, Debug)]
pub struct ServiceDef {
    pub name: String,
    pub type_: String,
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<SvcPort>,
    pub labels: Vec<(String, String)>,
    pub external_traffic_policy: Option<String>,
    pub internal_traffic_policy: Option<String>,
    /// `Some(timeout)`: sessionAffinity ClientIP with that timeoutSeconds.
    pub affinity_timeout: Option<u32>,
    pub publish_not_ready: bool,
    pub external_ips: Vec<Ipv4Addr>,
    pub lb_ingress: Vec<Ipv4Addr>,
    pub health_check_node_port: Option<u16>,
    pub external_name: Option<String>,
    /// `RequireDualStack`: every address also as its IPv6 counterpart.
    pub dual_stack: bool,
}

impl ServiceDef {
    /// A `type` Service with `cluster_ip` and no ports yet.
    pub fn new(name: &str, type_: &str, cluster_ip: Option<Ipv4Addr>) -> Self {
        Self {
            name: name.to_owned(),
            type_: type_.to_owned(),
            cluster_ip,
            ports: Vec::new(),
            labels: Vec::new(),
            external_traffic_policy: None,
            internal_traffic_policy: None,
            affinity_timeout: None,
            publish_not_ready: false,
            external_ips: Vec::new(),
            lb_ingress: Vec::new(),
            health_check_node_port: None,
            external_name: None,
            dual_stack: false,
        }
    }

    /// `ipFamilyPolicy: RequireDualStack`, `ipFamilies: [IPv4, IPv6]`: the
    /// ClusterIP, external IPs and LoadBalancer ingress IPs also as their
    /// IPv6 counterparts (lab addresses only).
    pub fn dual_stack(mut self) -> Self {
        self.dual_stack = true;
        self
    }

    pub fn cluster_ip(name: &str, ip: Ipv4Addr) -> Self {
        Self::new(name, "ClusterIP", Some(ip))
    }

    pub fn node_port(name: &str, ip: Ipv4Addr) -> Self {
        Self::new(name, "NodePort", Some(ip))
    }

    /// Adds a port (`proto` TCP or UDP).
    pub fn port(
        mut self,
        name: &str,
        proto: &str,
        port: u16,
        target: impl Into<Target>,
        node_port: Option<u16>,
    ) -> Self {
        self.ports.push(SvcPort {
            name: name.to_owned(),
            proto: proto.to_owned(),
            port,
            target: target.into(),
            node_port,
        });
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn etp(mut self, policy: &str) -> Self {
        self.external_traffic_policy = Some(policy.to_owned());
        self
    }

    pub fn itp(mut self, policy: &str) -> Self {
        self.internal_traffic_policy = Some(policy.to_owned());
        self
    }

    pub fn affinity(mut self, timeout_seconds: u32) -> Self {
        self.affinity_timeout = Some(timeout_seconds);
        self
    }

    pub fn publish_not_ready(mut self, on: bool) -> Self {
        self.publish_not_ready = on;
        self
    }

    pub fn external_ip(mut self, ip: Ipv4Addr) -> Self {
        self.external_ips.push(ip);
        self
    }

    pub fn lb_ingress(mut self, ip: Ipv4Addr) -> Self {
        self.lb_ingress.push(ip);
        self
    }

    pub fn health_check_node_port(mut self, port: u16) -> Self {
        self.health_check_node_port = Some(port);
        self
    }

    /// Makes it `type: ExternalName` pointing at `dns_name` (no clusterIP).
    pub fn external_name(mut self, dns_name: &str) -> Self {
        self.type_ = "ExternalName".into();
        self.cluster_ip = None;
        self.external_name = Some(dns_name.to_owned());
        self
    }

    /// The Service as a JSON value (the API object).
    pub fn to_value(&self) -> Value {
        let mut spec = Map::new();
        spec.insert("type".into(), json!(self.type_));
        let six = |a: &Ipv4Addr| {
            self.dual_stack
                .then(|| to_v6(*a).map(|x| x.to_string()))
                .flatten()
        };
        if let Some(ip) = self.cluster_ip {
            spec.insert("clusterIP".into(), json!(ip.to_string()));
            let mut ips = vec![ip.to_string()];
            ips.extend(six(&ip));
            spec.insert("clusterIPs".into(), json!(ips));
            if self.dual_stack {
                spec.insert("ipFamilyPolicy".into(), json!("RequireDualStack"));
                spec.insert("ipFamilies".into(), json!(["IPv4", "IPv6"]));
            }
        }
        if let Some(n) = &self.external_name {
            spec.insert("externalName".into(), json!(n));
        }
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("name".into(), json!(p.name));
                m.insert("protocol".into(), json!(p.proto));
                m.insert("port".into(), json!(p.port));
                m.insert(
                    "targetPort".into(),
                    match &p.target {
                        Target::Num(n) => json!(n),
                        Target::Name(s) => json!(s),
                    },
                );
                if let Some(np) = p.node_port {
                    m.insert("nodePort".into(), json!(np));
                }
                Value::Object(m)
            })
            .collect();
        if !ports.is_empty() {
            spec.insert("ports".into(), Value::Array(ports));
        }
        if let Some(p) = &self.external_traffic_policy {
            spec.insert("externalTrafficPolicy".into(), json!(p));
        }
        if let Some(p) = &self.internal_traffic_policy {
            spec.insert("internalTrafficPolicy".into(), json!(p));
        }
        if let Some(t) = self.affinity_timeout {
            spec.insert("sessionAffinity".into(), json!("ClientIP"));
            spec.insert(
                "sessionAffinityConfig".into(),
                json!({"clientIP": {"timeoutSeconds": t}}),
            );
        } else {
            spec.insert("sessionAffinity".into(), json!("None"));
        }
        if self.publish_not_ready {
            spec.insert("publishNotReadyAddresses".into(), json!(true));
        }
        if !self.external_ips.is_empty() {
            let mut ips: Vec<String> = self.external_ips.iter().map(|a| a.to_string()).collect();
            ips.extend(self.external_ips.iter().filter_map(six));
            spec.insert("externalIPs".into(), json!(ips));
        }
        if let Some(p) = self.health_check_node_port {
            spec.insert("healthCheckNodePort".into(), json!(p));
        }
        let mut v = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "namespace": "default"},
            "spec": Value::Object(spec),
        });
        if !self.labels.is_empty() {
            v["metadata"]["labels"] = labels(&self.labels);
        }
        if !self.lb_ingress.is_empty() {
            let ing: Vec<Value> = self
                .lb_ingress
                .iter()
                .map(|a| a.to_string())
                .chain(self.lb_ingress.iter().filter_map(six))
                .map(|a| json!({ "ip": a }))
                .collect();
            v["status"] = json!({"loadBalancer": {"ingress": ing}});
        }
        v
    }
}

fn labels(kv: &[(String, String)]) -> Value {
    Value::Object(
        kv.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug)]
pub struct EndpointDef {
    pub addr: Ipv4Addr,
    /// `nodeName` (`None`: omitted, as for the API servers' addresses).
    pub node: Option<u8>,
    /// The pod it belongs to (`targetRef`), if any.
    pub pod: Option<(u8, u8)>,
    /// Conditions; `None` leaves the field out.
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

impl EndpointDef {
    /// Lab pod `(n, k)`, ready.
    pub fn pod(n: u8, k: u8) -> Self {
        Self {
            addr: pod_addr(n, k),
            node: Some(n),
            pod: Some((n, k)),
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }
    }

    /// A host-network endpoint at `addr` (a node address), ready, with
    /// `nodeName` when `node` is given.
    pub fn host(addr: Ipv4Addr, node: Option<u8>) -> Self {
        Self {
            addr,
            node,
            pod: None,
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }
    }

    /// Sets the three conditions.
    pub fn conditions(mut self, ready: bool, serving: bool, terminating: bool) -> Self {
        self.ready = Some(ready);
        self.serving = Some(serving);
        self.terminating = Some(terminating);
        self
    }

    fn to_value(&self, v6: bool) -> Value {
        let mut cond = Map::new();
        for (k, v) in [
            ("ready", self.ready),
            ("serving", self.serving),
            ("terminating", self.terminating),
        ] {
            if let Some(b) = v {
                cond.insert(k.into(), json!(b));
            }
        }
        let mut m = Map::new();
        let addr = if v6 {
            to_v6(self.addr).map_or_else(|| self.addr.to_string(), |a| a.to_string())
        } else {
            self.addr.to_string()
        };
        m.insert("addresses".into(), json!([addr]));
        m.insert("conditions".into(), Value::Object(cond));
        if let Some(n) = self.node {
            m.insert("nodeName".into(), json!(node_name(n)));
        }
        if let Some((n, k)) = self.pod {
            m.insert(
                "targetRef".into(),
                json!({"kind": "Pod", "namespace": "default", "name": pod_name(n, k)}),
            );
        }
        Value::Object(m)
    }
}

/// An EndpointSlice of a Service.
#[derive(Clone, Debug)]
pub struct SliceDef {
    pub service: String,
    /// The slice is named `<service>-<suffix>`.
    pub suffix: String,
    /// (name, protocol, port).
    pub ports: Vec<(String, String, u16)>,
    pub endpoints: Vec<EndpointDef>,
    /// Labels besides `kubernetes.io/service-name`.
    pub labels: Vec<(String, String)>,
    /// `addressType: IPv6`, the endpoints' IPv6 counterparts.
    pub v6: bool,
}

impl SliceDef {
    pub fn new(service: &str, suffix: &str) -> Self {
        Self {
            service: service.to_owned(),
            suffix: suffix.to_owned(),
            ports: Vec::new(),
            endpoints: Vec::new(),
            labels: Vec::new(),
            v6: false,
        }
    }

    /// The IPv6 slice of the same endpoints, named `<service>-<suffix>-v6`.
    pub fn ipv6(mut self) -> Self {
        self.v6 = true;
        self
    }

    pub fn port(mut self, name: &str, proto: &str, port: u16) -> Self {
        self.ports.push((name.to_owned(), proto.to_owned(), port));
        self
    }

    pub fn endpoint(mut self, e: EndpointDef) -> Self {
        self.endpoints.push(e);
        self
    }

    /// Ready endpoints for lab pods.
    pub fn pods(mut self, pods: &[(u8, u8)]) -> Self {
        self.endpoints
            .extend(pods.iter().map(|&(n, k)| EndpointDef::pod(n, k)));
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn to_value(&self) -> Value {
        let mut l = vec![(
            "kubernetes.io/service-name".to_owned(),
            self.service.clone(),
        )];
        l.extend(self.labels.iter().cloned());
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!(
                    "{}-{}{}",
                    self.service,
                    self.suffix,
                    if self.v6 { "-v6" } else { "" }
                ),
                "namespace": "default",
                "labels": labels(&l),
            },
            "addressType": if self.v6 { "IPv6" } else { "IPv4" },
            "ports": self.ports.iter().map(|(n, p, port)| json!({
                "name": n, "protocol": p, "port": port,
            })).collect::<Vec<_>>(),
            "endpoints": self.endpoints.iter().map(|e| e.to_value(self.v6)).collect::<Vec<_>>(),
        })
    }
}

/// Objects as one multi-document YAML text.
pub fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("JSON values serialise"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Writes the Service and its slices as `<dir>/<service name>.yaml`
/// (replacing what that file held).
pub fn apply(dir: &Path, svc: &ServiceDef, slices: &[SliceDef]) -> Result<()> {
    let mut objs = vec![svc.to_value()];
    objs.extend(slices.iter().map(SliceDef::to_value));
    write_atomic(&dir.join(format!("{}.yaml", svc.name)), &to_yaml(&objs))
}

/// Removes `<dir>/<name>.yaml` (the Service and its slices are deleted).
pub fn delete(dir: &Path, name: &str) -> Result<()> {
    let p = dir.join(format!("{name}.yaml"));
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_ctx(format!("removing {}", p.display()))(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    #[test]
    fn objects_parse_as_api_objects() {
        let s = ServiceDef::node_port("multi", Ipv4Addr::new(10, 96, 1, 1))
            .port("http", "TCP", 80, "http", Some(30100))
            .port("dns", "UDP", 53, 8080, None)
            .label("service.kubernetes.io/headless", "")
            .etp("Local")
            .affinity(5)
            .publish_not_ready(true)
            .health_check_node_port(32000);
        let svc: Service = serde_json::from_value(s.to_value()).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.ports.as_ref().unwrap().len(), 2);
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.health_check_node_port, Some(32000));
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        let sl = SliceDef::new("multi", "a")
            .port("http", "TCP", 8080)
            .pods(&[(1, 1)])
            .endpoint(
                EndpointDef::host(Ipv4Addr::new(198, 18, 0, 12), None)
                    .conditions(false, true, true),
            );
        let es: EndpointSlice = serde_json::from_value(sl.to_value()).unwrap();
        assert_eq!(es.endpoints.len(), 2);
        assert_eq!(es.endpoints[1].node_name, None);
        assert_eq!(
            es.endpoints[1].conditions.as_ref().unwrap().terminating,
            Some(true)
        );
        let text = to_yaml(&[s.to_value(), sl.to_value()]);
        assert_eq!(text.matches("---\n").count(), 1);
        let ds = ServiceDef::node_port("d", Ipv4Addr::new(10, 96, 1, 3))
            .external_ip(Ipv4Addr::new(10, 96, 201, 3))
            .lb_ingress(Ipv4Addr::new(10, 96, 100, 3))
            .dual_stack();
        let svc: Service = serde_json::from_value(ds.to_value()).unwrap();
        let st = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap();
        assert_eq!(st[1].ip.as_deref(), Some("fd00:10:96:100::3"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ips.unwrap(), ["10.96.1.3", "fd00:10:96:1::3"]);
        assert_eq!(spec.ip_families.unwrap(), ["IPv4", "IPv6"]);
        assert_eq!(spec.ip_family_policy.as_deref(), Some("RequireDualStack"));
        assert_eq!(
            spec.external_ips.unwrap(),
            ["10.96.201.3", "fd00:10:96:201::3"]
        );
        let es: EndpointSlice =
            serde_json::from_value(SliceDef::new("d", "1").pods(&[(2, 1)]).ipv6().to_value())
                .unwrap();
        assert_eq!(es.address_type, "IPv6");
        assert_eq!(es.metadata.name.as_deref(), Some("d-1-v6"));
        assert_eq!(es.endpoints[0].addresses, ["fd00:10:244:2::2"]);
        let en = ServiceDef::cluster_ip("x", Ipv4Addr::new(10, 96, 1, 2)).external_name("a.b");
        let svc: Service = serde_json::from_value(en.to_value()).unwrap();
        assert_eq!(svc.spec.unwrap().cluster_ip, None);
    }
}
