//! # The lab's manifest directory
//!
//! `deploy/examples` (compiled in, so `xlb lab up` works from any directory)
//! is copied into `/run/xlb-lab/<prefix>/manifests`, which every agent of the
//! lab reads. Tests and the demo change a Service's endpoints by rewriting its
//! file there ([`set_endpoints`]), as a controller would.

use std::path::Path;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{io_ctx, node_addr, node_name, pod_addr, pod_cidr, pod_name, vtep_mac, Error, Result};

/// deploy/examples, file name -> contents.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "nodes.yaml",
        include_str!("../../deploy/examples/nodes.yaml"),
    ),
    ("web.yaml", include_str!("../../deploy/examples/web.yaml")),
    (
        "pin-n1.yaml",
        include_str!("../../deploy/examples/pin-n1.yaml"),
    ),
    (
        "pin-n2.yaml",
        include_str!("../../deploy/examples/pin-n2.yaml"),
    ),
    (
        "local.yaml",
        include_str!("../../deploy/examples/local.yaml"),
    ),
    (
        "sticky.yaml",
        include_str!("../../deploy/examples/sticky.yaml"),
    ),
    (
        "ranged.yaml",
        include_str!("../../deploy/examples/ranged.yaml"),
    ),
    (
        "empty.yaml",
        include_str!("../../deploy/examples/empty.yaml"),
    ),
    ("lb.yaml", include_str!("../../deploy/examples/lb.yaml")),
    ("ext.yaml", include_str!("../../deploy/examples/ext.yaml")),
    (
        "churn.yaml",
        include_str!("../../deploy/examples/churn.yaml"),
    ),
    (
        "dns-only.yaml",
        include_str!("../../deploy/examples/dns-only.yaml"),
    ),
    (
        "kubernetes.yaml",
        include_str!("../../deploy/examples/kubernetes.yaml"),
    ),
    (
        "hostnet.yaml",
        include_str!("../../deploy/examples/hostnet.yaml"),
    ),
];

/// Nodes the examples describe; a bigger lab gets generated Node objects for the rest.
pub const EXAMPLE_NODES: u8 = 2;

/// A Node object as the lab sets node `n` up (the examples' format).
pub fn node_yaml(n: u8) -> String {
    format!(
        "apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    flannel.alpha.coreos.com/backend-type: vxlan
    flannel.alpha.coreos.com/backend-data: '{{\"VNI\":{vni},\"VtepMAC\":\"{mac}\"}}'
    flannel.alpha.coreos.com/public-ip: {addr}
spec:
  podCIDR: {cidr}
  podCIDRs: [{cidr}]
status:
  addresses:
  - type: InternalIP
    address: {addr}
  - type: Hostname
    address: {name}
",
        name = node_name(n),
        vni = crate::VXLAN_VNI,
        mac = vtep_mac(n),
        addr = node_addr(n),
        cidr = pod_cidr(n),
    )
}

/// The default port of a lab EndpointSlice: `http` TCP 8080.
pub fn default_ports() -> Vec<EndpointPort> {
    vec![EndpointPort {
        name: Some("http".into()),
        protocol: Some("TCP".into()),
        port: Some(i32::from(crate::BACKEND_PORT)),
        app_protocol: None,
    }]
}

/// An EndpointSlice `<service>-1` with the given lab pods (node, pod), ready,
/// on `ports`.
pub fn endpoint_slice(service: &str, pods: &[(u8, u8)], ports: Vec<EndpointPort>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-1")),
            namespace: Some("default".into()),
            labels: Some([("kubernetes.io/service-name".to_owned(), service.to_owned())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(ports),
        endpoints: pods
            .iter()
            .map(|&(n, k)| Endpoint {
                addresses: vec![pod_addr(n, k).to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(node_name(n)),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: Some("default".into()),
                    name: Some(pod_name(n, k)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
}

/// [`endpoint_slice`] as YAML.
pub fn endpoint_slice_yaml(service: &str, pods: &[(u8, u8)], ports: Vec<EndpointPort>) -> String {
    let mut v = serde_yaml::to_value(endpoint_slice(service, pods, ports)).expect("serializable");
    if let serde_yaml::Value::Mapping(m) = &mut v {
        m.insert("apiVersion".into(), "discovery.k8s.io/v1".into());
        m.insert("kind".into(), "EndpointSlice".into());
    }
    serde_yaml::to_string(&v).expect("serializable")
}

/// Fills `dir` with the examples unless it already holds them (a running lab's
/// changes are kept), and adds Node objects for nodes beyond the examples'.
/// `dual_stack`: the examples made dual-stack ([`crate::dual`]).
pub fn install(dir: &Path, nodes: u8, dual_stack: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
    for (name, text) in EXAMPLES {
        let path = dir.join(name);
        if !path.exists() {
            if dual_stack {
                write_atomic(&path, &crate::dual::dual_stack_file(text)?)?;
            } else {
                write_atomic(&path, text)?;
            }
        }
    }
    if nodes > EXAMPLE_NODES {
        let mut extra =
            String::from("# Generated by `xlb lab up` for nodes beyond deploy/examples.\n");
        for n in EXAMPLE_NODES + 1..=nodes {
            if n > EXAMPLE_NODES + 1 {
                extra.push_str("---\n");
            }
            extra.push_str(&if dual_stack {
                crate::dual::node_yaml(n)
            } else {
                node_yaml(n)
            });
        }
        write_atomic(&dir.join("nodes-extra.yaml"), &extra)?;
    }
    Ok(())
}

/// Writes through a temporary file (not matching *.yaml) and a rename, so a
/// watcher never reads half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Invalid(format!("bad file name {}", path.display())))?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(io_ctx(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_ctx(format!("renaming to {}", path.display())))
}

/// Replaces the EndpointSlices of the Service in `<dir>/<service>.yaml` by one
/// slice with `pods`, keeping the file's other documents (the Service); when
/// the file had an IPv6 slice (a dual-stack lab), by that slice and its IPv6
/// sibling.
pub fn set_endpoints(dir: &Path, service: &str, pods: &[(u8, u8)]) -> Result<()> {
    let path = dir.join(format!("{service}.yaml"));
    let text = std::fs::read_to_string(&path).map_err(io_ctx(format!(
        "reading {} (set-endpoints works on the lab's <service>.yaml files)",
        path.display()
    )))?;
    let mut out = String::new();
    let mut ports = None;
    let mut had_v6 = false;
    for doc in split_documents(&text) {
        had_v6 |= doc.lines().any(|l| l.trim() == "addressType: IPv6");
        if doc.lines().any(|l| l.trim() == "kind: EndpointSlice") {
            // Keep the ports of the slice being replaced (named, several protocols).
            if ports.is_none() {
                ports = serde_yaml::from_str::<EndpointSlice>(doc)
                    .ok()
                    .and_then(|s| s.ports);
            }
        } else if !doc.trim().is_empty() {
            out.push_str(doc.trim_end());
            out.push_str("\n---\n");
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no Service document found",
            path.display()
        )));
    }
    let slice = endpoint_slice_yaml(service, pods, ports.unwrap_or_else(default_ports));
    if had_v6 {
        let v: serde_yaml::Value = serde_yaml::from_str(&slice).expect("just written");
        out.push_str(&slice);
        out.push_str("---\n");
        out.push_str(
            &serde_yaml::to_string(&crate::dual::v6_slice(&v)).expect("YAML values serialise"),
        );
    } else {
        out.push_str(&slice);
    }
    write_atomic(&path, &out)
}

/// Splits multi-document YAML on `---` lines.
fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(&text[start..pos]);
            start = pos + line.len();
        }
        pos += line.len();
    }
    docs.push(&text[start..]);
    docs
}

/// Parses a pod list like `n1p1,n2p2`.
pub fn parse_pods(s: &str) -> Result<Vec<(u8, u8)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.strip_prefix('n')
                .and_then(|r| r.split_once('p'))
                .and_then(|(n, k)| Some((n.parse().ok()?, k.parse().ok()?)))
                .filter(|&(n, k): &(u8, u8)| n > 0 && k > 0)
                .ok_or_else(|| Error::Invalid(format!("pod {p:?}: expected nNpK, e.g. n1p2")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Service};
    use serde::Deserialize;

    fn docs(text: &str) -> Vec<serde_yaml::Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|d| serde_yaml::Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect()
    }

    fn all_docs() -> Vec<serde_yaml::Value> {
        EXAMPLES.iter().flat_map(|(_, t)| docs(t)).collect()
    }

    /// The examples must describe exactly what `xlb lab up` builds.
    #[test]
    fn example_nodes_match_the_lab() {
        let nodes: Vec<Node> = all_docs()
            .into_iter()
            .filter(|d| d["kind"] == "Node")
            .map(|d| serde_yaml::from_value(d).unwrap())
            .collect();
        assert_eq!(nodes.len(), EXAMPLE_NODES as usize);
        for (i, node) in nodes.iter().enumerate() {
            let n = i as u8 + 1;
            assert_eq!(node.metadata.name.as_deref(), Some(node_name(n).as_str()));
            let spec = node.spec.as_ref().unwrap();
            assert_eq!(spec.pod_cidr.as_deref(), Some(pod_cidr(n).as_str()));
            let addrs = node.status.as_ref().unwrap().addresses.as_ref().unwrap();
            let internal = addrs.iter().find(|a| a.type_ == "InternalIP").unwrap();
            assert_eq!(internal.address, node_addr(n).to_string());
            let ann = node.metadata.annotations.as_ref().unwrap();
            let data: serde_json::Value =
                serde_json::from_str(&ann["flannel.alpha.coreos.com/backend-data"]).unwrap();
            assert_eq!(data["VtepMAC"], vtep_mac(n));
            assert_eq!(data["VNI"], crate::VXLAN_VNI);
            // The generator for bigger labs writes the same object.
            let generated: Node = serde_yaml::from_str(&node_yaml(n)).unwrap();
            assert_eq!(&generated, node);
        }
    }

    #[test]
    fn example_endpoints_are_lab_pods() {
        let mut n_slices = 0;
        for d in all_docs()
            .into_iter()
            .filter(|d| d["kind"] == "EndpointSlice")
        {
            let s: EndpointSlice = serde_yaml::from_value(d).unwrap();
            n_slices += 1;
            for ep in &s.endpoints {
                // Host-network endpoints: a node's address (kubernetes, hostnet).
                if let Ok(a) = ep.addresses[0].parse::<std::net::Ipv4Addr>() {
                    if let Some(n) = (1..=EXAMPLE_NODES).find(|&n| node_addr(n) == a) {
                        if let Some(name) = ep.node_name.as_deref() {
                            assert_eq!(name, node_name(n));
                        }
                        continue;
                    }
                }
                let pod = ep.target_ref.as_ref().unwrap().name.clone().unwrap();
                let (n, k) = parse_pods(&pod).unwrap()[0];
                assert!(n <= EXAMPLE_NODES && k <= 2, "{pod}");
                assert_eq!(ep.addresses, vec![pod_addr(n, k).to_string()]);
                assert_eq!(ep.node_name.as_deref(), Some(node_name(n).as_str()));
            }
        }
        assert!(n_slices >= 9);
    }

    #[test]
    fn examples_cover_every_service_shape() {
        let svcs: Vec<Service> = all_docs()
            .into_iter()
            .filter(|d| d["kind"] == "Service")
            .map(|d| serde_yaml::from_value(d).unwrap())
            .collect();
        let spec = |name: &str| {
            svcs.iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .unwrap()
                .spec
                .clone()
                .unwrap()
        };
        assert_eq!(spec("web").type_.as_deref(), Some("NodePort"));
        assert_eq!(
            spec("local").external_traffic_policy.as_deref(),
            Some("Local")
        );
        assert_eq!(spec("sticky").session_affinity.as_deref(), Some("ClientIP"));
        assert!(spec("ranged").load_balancer_source_ranges.is_some());
        assert!(spec("ext").external_ips.is_some());
        let lb = svcs
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("lb"))
            .unwrap();
        assert!(lb.status.as_ref().unwrap().load_balancer.is_some());
    }

    #[test]
    fn set_endpoints_keeps_the_service_and_replaces_the_slice() {
        let dir = std::env::temp_dir().join(format!("xlb-lab-man-{}", std::process::id()));
        install(&dir, 3, false).unwrap();
        set_endpoints(&dir, "churn", &[(1, 2), (2, 2)]).unwrap();
        let text = std::fs::read_to_string(dir.join("churn.yaml")).unwrap();
        let ds = docs(&text);
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0]["kind"], "Service");
        let s: EndpointSlice = serde_yaml::from_value(ds[1].clone()).unwrap();
        let addrs: Vec<_> = s.endpoints.iter().map(|e| e.addresses[0].clone()).collect();
        assert_eq!(addrs, ["10.244.1.3", "10.244.2.3"]);
        // A two-port slice keeps both ports.
        set_endpoints(&dir, "web", &[(2, 1)]).unwrap();
        let ds = docs(&std::fs::read_to_string(dir.join("web.yaml")).unwrap());
        let s: EndpointSlice = serde_yaml::from_value(ds[1].clone()).unwrap();
        assert_eq!(s.ports.unwrap().len(), 2);
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("node2"));
        set_endpoints(&dir, "churn", &[]).unwrap();
        let ds = docs(&std::fs::read_to_string(dir.join("churn.yaml")).unwrap());
        let s: EndpointSlice = serde_yaml::from_value(ds[1].clone()).unwrap();
        assert!(s.endpoints.is_empty());
        let extra = std::fs::read_to_string(dir.join("nodes-extra.yaml")).unwrap();
        assert!(extra.contains("198.18.0.13"));
        assert!(set_endpoints(&dir, "nope", &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pod_lists_parse_or_fail_clearly() {
        assert_eq!(parse_pods("n1p1, n2p3").unwrap(), vec![(1, 1), (2, 3)]);
        assert_eq!(parse_pods("").unwrap(), vec![]);
        for bad in ["x1p1", "n1", "n0p1", "n1p", "n300p1"] {
            assert!(parse_pods(bad).is_err(), "{bad}");
        }
    }
}
