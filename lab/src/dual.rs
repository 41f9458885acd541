//! # Dual-stack manifests (`xlb lab up --dual-stack`)
//!
//! The agents of a dual-stack lab read deploy/examples turned dual-stack, as
//! a dual-stack cluster would publish them:
//!
//! - Nodes: an IPv6 InternalIP, both pod CIDRs in `spec.podCIDRs`, and
//!   flannel's `public-ipv6` and `backend-v6-data` annotations ([`node_yaml`]);
//! - Services with a ClusterIP: `ipFamilyPolicy: PreferDualStack`,
//!   `ipFamilies: [IPv4, IPv6]`, `clusterIPs` of both families, and the IPv6
//!   counterpart ([`crate::v6::to_v6`]) of every external IP, LoadBalancer
//!   ingress IP and source range;
//! - every IPv4 EndpointSlice `X` gains a sibling `X-v6` (`addressType: IPv6`)
//!   with the IPv6 addresses of the same endpoints.
//!
//! Headless and ExternalName Services are left as they are.

use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::v6::{node_addr6, pod_cidr6, to_v6, vtep_mac6};
use crate::{node_addr, node_name, pod_cidr, vtep_mac, Error, Result};

/// Suffix of the IPv6 sibling of an EndpointSlice.
pub const V6_SLICE_SUFFIX: &str = "-v6";

/// Node `n` of a dual-stack lab.
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
    flannel.alpha.coreos.com/backend-v6-data: '{{\"VNI\":{vni},\"VtepMAC\":\"{mac6}\"}}'
    flannel.alpha.coreos.com/public-ipv6: {addr6}
spec:
  podCIDR: {cidr}
  podCIDRs: [{cidr}, {cidr6}]
status:
  addresses:
  - type: InternalIP
    address: {addr}
  - type: InternalIP
    address: {addr6}
  - type: Hostname
    address: {name}
",
        name = node_name(n),
        vni = crate::VXLAN_VNI,
        mac = vtep_mac(n),
        mac6 = vtep_mac6(n),
        addr = node_addr(n),
        addr6 = node_addr6(n),
        cidr = pod_cidr(n),
        cidr6 = pod_cidr6(n),
    )
}

fn v6_text(a: &str) -> Option<String> {
    let v4: Ipv4Addr = a.parse().ok()?;
    to_v6(v4).map(|x| x.to_string())
}

/// `198.18.0.1/32` -> `fd00:198:18::1/128` (host ranges only; others dropped).
fn v6_range(r: &str) -> Option<String> {
    let (a, len) = r.split_once('/')?;
    (len == "32").then(|| v6_text(a).map(|x| format!("{x}/128")))?
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Appends the IPv6 counterparts of a list of IPv4 texts.
fn extend_v6(list: &mut Value, f: impl Fn(&str) -> Option<String>) {
    let add: Vec<Value> = str_list(list)
        .iter()
        .filter_map(|a| f(a))
        .map(Value::from)
        .collect();
    if let Some(s) = list.as_sequence_mut() {
        s.extend(add);
    }
}

fn service(mut doc: Value) -> Value {
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_mapping_mut) else {
        return doc;
    };
    let Some(ip) = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .and_then(v6_text)
    else {
        return doc;
    };
    let v4 = spec["clusterIP"].clone();
    spec.insert("ipFamilyPolicy".into(), "PreferDualStack".into());
    spec.insert(
        "ipFamilies".into(),
        Value::Sequence(vec!["IPv4".into(), "IPv6".into()]),
    );
    spec.insert("clusterIPs".into(), Value::Sequence(vec![v4, ip.into()]));
    if let Some(l) = spec.get_mut("externalIPs") {
        extend_v6(l, v6_text);
    }
    if let Some(l) = spec.get_mut("loadBalancerSourceRanges") {
        extend_v6(l, v6_range);
    }
    if let Some(Value::Sequence(ing)) = doc
        .get_mut("status")
        .and_then(|s| s.get_mut("loadBalancer"))
        .and_then(|s| s.get_mut("ingress"))
    {
        let add: Vec<Value> = ing
            .iter()
            .filter_map(|i| i.get("ip").and_then(Value::as_str).and_then(v6_text))
            .map(|a| {
                let mut m = Mapping::new();
                m.insert("ip".into(), a.into());
                Value::Mapping(m)
            })
            .collect();
        ing.extend(add);
    }
    doc
}

/// The IPv6 sibling of an IPv4 EndpointSlice (endpoints without a lab
/// counterpart are left out).
pub fn v6_slice(slice: &Value) -> Value {
    let mut s = slice.clone();
    s["addressType"] = "IPv6".into();
    if let Some(name) = s["metadata"]["name"].as_str() {
        s["metadata"]["name"] = format!("{name}{V6_SLICE_SUFFIX}").into();
    }
    if let Some(eps) = s.get_mut("endpoints").and_then(Value::as_sequence_mut) {
        eps.retain_mut(|e| {
            let addrs: Vec<Value> = str_list(&e["addresses"])
                .iter()
                .filter_map(|a| v6_text(a))
                .map(Value::from)
                .collect();
            let keep = !addrs.is_empty();
            e["addresses"] = Value::Sequence(addrs);
            keep
        });
    }
    s
}

fn is_kind(doc: &Value, kind: &str) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some(kind)
}

/// One manifest file made dual-stack (see the module documentation).
pub fn dual_stack_file(text: &str) -> Result<String> {
    let mut out: Vec<Value> = Vec::new();
    for d in serde_yaml::Deserializer::from_str(text) {
        let doc = Value::deserialize(d).map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
        if doc.is_null() {
            continue;
        }
        if is_kind(&doc, "Node") {
            let n = doc["metadata"]["name"]
                .as_str()
                .and_then(|s| s.strip_prefix("node"))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::Invalid("a lab Node must be called nodeN".into()))?;
            out.push(serde_yaml::from_str(&node_yaml(n)).expect("valid YAML"));
        } else if is_kind(&doc, "Service") {
            out.push(service(doc));
        } else if is_kind(&doc, "EndpointSlice") && doc["addressType"].as_str() == Some("IPv4") {
            let six = v6_slice(&doc);
            out.push(doc);
            out.push(six);
        } else {
            out.push(doc);
        }
    }
    let docs: Vec<String> = out
        .iter()
        .map(|d| serde_yaml::to_string(d).expect("YAML values serialise"))
        .collect();
    Ok(format!(
        "# Dual-stack, written by `xlb lab up --dual-stack`.\n{}",
        docs.join("---\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::EXAMPLES;
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    fn docs(text: &str) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect()
    }

    fn example(name: &str) -> Vec<Value> {
        let text = EXAMPLES.iter().find(|(n, _)| *n == name).unwrap().1;
        docs(&dual_stack_file(text).unwrap())
    }

    #[test]
    fn nodes_carry_both_families() {
        let ds = example("nodes.yaml");
        assert_eq!(ds.len(), 2);
        let node: Node = serde_yaml::from_value(ds[1].clone()).unwrap();
        let spec = node.spec.unwrap();
        assert_eq!(
            spec.pod_cidrs.unwrap(),
            ["10.244.2.0/24", "fd00:10:244:2::/64"]
        );
        let addrs = node.status.unwrap().addresses.unwrap();
        let internal: Vec<&str> = addrs
            .iter()
            .filter(|a| a.type_ == "InternalIP")
            .map(|a| a.address.as_str())
            .collect();
        assert_eq!(internal, ["198.18.0.12", "fd00:198:18::12"]);
        let ann = node.metadata.annotations.unwrap();
        assert_eq!(
            ann["flannel.alpha.coreos.com/public-ipv6"],
            "fd00:198:18::12"
        );
        let data: serde_json::Value =
            serde_json::from_str(&ann["flannel.alpha.coreos.com/backend-v6-data"]).unwrap();
        assert_eq!(data["VtepMAC"], vtep_mac6(2));
        assert_eq!(data["VNI"], crate::VXLAN_VNI);
    }

    #[test]
    fn services_get_both_families_and_slices_an_ipv6_sibling() {
        let ds = example("ranged.yaml");
        let svc: Service = serde_yaml::from_value(ds[0].clone()).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.ip_family_policy.as_deref(), Some("PreferDualStack"));
        assert_eq!(spec.ip_families.unwrap(), ["IPv4", "IPv6"]);
        assert_eq!(spec.cluster_ips.unwrap(), ["10.96.0.15", "fd00:10:96::15"]);
        assert_eq!(
            spec.load_balancer_source_ranges.unwrap(),
            ["198.18.0.1/32", "fd00:198:18::1/128"]
        );
        let ing = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap();
        let ips: Vec<_> = ing.iter().map(|i| i.ip.clone().unwrap()).collect();
        assert_eq!(ips, ["10.96.100.15", "fd00:10:96:100::15"]);
        let v4: EndpointSlice = serde_yaml::from_value(ds[1].clone()).unwrap();
        let v6: EndpointSlice = serde_yaml::from_value(ds[2].clone()).unwrap();
        assert_eq!(v6.address_type, "IPv6");
        assert_eq!(v6.metadata.name.as_deref(), Some("ranged-1-v6"));
        assert_eq!(v6.endpoints.len(), v4.endpoints.len());
        assert_eq!(v6.endpoints[0].addresses, ["fd00:10:244:1::2"]);
        assert_eq!(v6.endpoints[0].node_name, v4.endpoints[0].node_name);
        assert_eq!(v6.ports, v4.ports);
        let ext: Service = serde_yaml::from_value(example("ext.yaml")[0].clone()).unwrap();
        assert_eq!(
            ext.spec.unwrap().external_ips.unwrap(),
            ["10.96.200.18", "fd00:10:96:200::18"]
        );
    }

    #[test]
    fn headless_and_external_name_are_left_alone() {
        let ds = example("dns-only.yaml");
        for d in &ds {
            let svc: Service = serde_yaml::from_value(d.clone()).unwrap();
            assert_eq!(svc.spec.unwrap().ip_families, None);
        }
    }
}
