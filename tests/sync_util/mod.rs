//! Shared by the sync tests: building desired states and checking that maps
//! hold exactly a desired state.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use xlb::model::{build, Desired, ModelConfig, Snapshot};
use xlb::sync::MapOps;

pub fn cfg() -> ModelConfig {
    ModelConfig {
        node_name: "n1".into(),
        node_addrs: vec![Ipv4Addr::new(198, 18, 0, 11).into()],
        ..Default::default()
    }
}

pub fn nodes() -> Vec<Node> {
    (1..=3)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("n{i}"),
                    "annotations": {"xlb.io/vtep-mac": format!("02:00:00:00:00:0{i}")}},
                "spec": {"podCIDR": format!("10.244.{i}.0/24")},
                "status": {"addresses": [{"type": "InternalIP", "address": format!("198.18.0.1{i}")}]}
            }))
            .unwrap()
        })
        .collect()
}

/// A Service `name` on 10.96.0.`n`:80 (+ NodePort 30000+n, ETP Local when
/// `local`), endpoints 10.244.`node`.`host`:8080.
pub fn service(n: u8, local: bool) -> Service {
    let mut spec = json!({"clusterIP": format!("10.96.0.{n}"), "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "nodePort": 30000 + n as u32}]});
    if local {
        spec["externalTrafficPolicy"] = json!("Local");
    }
    serde_json::from_value(
        json!({"metadata": {"name": format!("s{n}"), "namespace": "default"},
        "spec": spec}),
    )
    .unwrap()
}

/// A LoadBalancer Service with source ranges and affinity.
pub fn lb_service(n: u8, ranges: &[&str]) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": format!("s{n}"), "namespace": "default"},
        "spec": {"clusterIP": format!("10.96.0.{n}"), "type": "LoadBalancer",
            "sessionAffinity": "ClientIP",
            "loadBalancerSourceRanges": ranges,
            "ports": [{"name": "http", "port": 80, "nodePort": 30000 + n as u32}]},
        "status": {"loadBalancer": {"ingress": [{"ip": format!("203.0.113.{n}")}]}}}),
    )
    .unwrap()
}

/// Endpoints `(node, host)` of Service `s{n}`.
pub fn slice(n: u8, eps: &[(u8, u8)]) -> EndpointSlice {
    let eps: Vec<_> = eps
        .iter()
        .map(|(node, host)| {
            json!({"addresses": [format!("10.244.{node}.{host}")], "nodeName": format!("n{node}"),
                "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("s{n}-a"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": format!("s{n}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": eps}))
    .unwrap()
}

/// Two states for adopt/reconcile tests: from the first to the second a
/// Service goes, one comes, one changes backends, one its source ranges.
pub fn before_and_after() -> (Desired, Desired) {
    let d1 = desired(
        vec![
            service(1, false),
            service(2, true),
            lb_service(3, &["192.0.2.0/24"]),
        ],
        vec![
            slice(1, &[(1, 5), (2, 6)]),
            slice(2, &[(1, 7), (3, 8)]),
            slice(3, &[(2, 2)]),
        ],
    );
    let d2 = desired(
        vec![
            service(1, false),
            lb_service(3, &["198.51.100.0/24"]),
            service(4, false),
        ],
        vec![
            slice(1, &[(1, 5)]),
            slice(3, &[(2, 2), (2, 3)]),
            slice(4, &[(3, 9)]),
        ],
    );
    (d1, d2)
}

pub fn desired(services: Vec<Service>, slices: Vec<EndpointSlice>) -> Desired {
    build(
        &Snapshot {
            services: services.into_iter().map(Arc::new).collect(),
            slices: slices.into_iter().map(|s| Arc::new(s.into())).collect(),
            nodes: nodes().into_iter().map(Arc::new).collect(),
        },
        &cfg(),
    )
}

/// Checks that `maps` hold exactly `d` (both families: `services` and
/// `services6`, `backends` and `backends6`, ranges, tunnels and addresses of
/// each): every frontend with its flags and a table equal to Maglev over its
/// backends (ids resolved in its family's array), exactly the backends in
/// use active (with node and address), ranges, tunnels, local and remote
/// addresses; and `names` maps each port's svc_id to its name. Returns the
/// problems.
pub fn verify<M: MapOps>(maps: &M, d: &Desired, names: &BTreeMap<u32, String>) -> Vec<String> {
    use xlb::model::SvcKey;
    use xlb_bpf::consts::*;
    fn b<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: plain struct.
        unsafe { plain::as_bytes(v) }.to_vec()
    }
    let mut bad = Vec::new();
    let slots = maps.backend_slots().unwrap();
    let slots6 = maps.backend6_slots().unwrap();
    // The active backend of id `id` in `v6`'s array: (address, node, flags).
    type Active = (SocketAddr, Option<IpAddr>, u8);
    let active_of = |id: u32, v6: bool| -> Option<Active> {
        if v6 {
            slots6.get(id as usize).filter(|b| b.is_active()).map(|b| {
                (
                    SocketAddr::V6(b.sockaddr()),
                    b.node().map(IpAddr::V6),
                    b.flags,
                )
            })
        } else {
            slots.get(id as usize).filter(|b| b.is_active()).map(|b| {
                (
                    SocketAddr::V4(b.sockaddr()),
                    b.node().map(IpAddr::V4),
                    b.flags,
                )
            })
        }
    };
    let mut by_key = BTreeMap::new();
    for (k, v) in maps.services().unwrap() {
        by_key.insert(b(&k), v);
    }
    for (k, v) in maps.services6().unwrap() {
        by_key.insert(b(&k), v);
    }
    let mut n_fe = 0;
    // (address, node, flags) -> how many ports list it (one slot each)
    let mut want_backends: BTreeMap<Active, usize> = BTreeMap::new();
    for p in d.ports() {
        for be in &p.backends {
            let mut flags = XLB_BE_F_ACTIVE as u8;
            for (on, f) in [
                (be.terminating, XLB_BE_F_TERMINATING),
                (be.draining, XLB_BE_F_DRAINING),
                (be.host_network, XLB_BE_F_HOST_NETWORK),
            ] {
                if on {
                    flags |= f as u8;
                }
            }
            *want_backends.entry((be.addr, be.node, flags)).or_default() += 1;
        }
    }
    let mut want_ranges = BTreeSet::new();
    for (p, f) in d.frontends() {
        n_fe += 1;
        let (kb, v6) = match f.key.svc_key() {
            SvcKey::V4(k) => (b(&k), false),
            SvcKey::V6(k) => (b(&k), true),
        };
        let Some(v) = by_key.get(&kb) else {
            bad.push(format!("{} {}: missing", p.name, f.key));
            continue;
        };
        if names.get(&v.svc_id) != Some(&p.name) {
            bad.push(format!(
                "{} {}: svc_id {} named {:?}",
                p.name,
                f.key,
                v.svc_id,
                names.get(&v.svc_id)
            ));
        }
        if v.flags != f.flags
            || v.table_size != f.table_size
            || v.affinity_timeout != f.affinity_timeout
            || v.n_local != f.n_local
            || v.fe_type != f.kind.fe_type()
        {
            bad.push(format!("{} {}: value {v:?} vs {f:?}", p.name, f.key));
        }
        let ids = maps.read_maglev(v.table_off, v.table_size).unwrap();
        let want = xlb::maglev::table(&f.backends, f.table_size);
        let got: Vec<Option<SocketAddr>> = ids
            .iter()
            .map(|id| active_of(*id, v6).map(|a| a.0))
            .collect();
        let want: Vec<Option<SocketAddr>> =
            want.iter().map(|i| Some(f.backends[*i as usize])).collect();
        if got != want {
            bad.push(format!("{} {}: table differs", p.name, f.key));
        }
        for r in &p.src_ranges {
            want_ranges.insert((v.svc_id, r.0, r.1));
        }
    }
    if by_key.len() != n_fe {
        bad.push(format!(
            "{} services(6) entries, {} desired",
            by_key.len(),
            n_fe
        ));
    }
    let mut active: BTreeMap<Active, usize> = BTreeMap::new();
    for id in 0..slots.len().max(slots6.len()) as u32 {
        let (a4, a6) = (active_of(id, false), active_of(id, true));
        if a4.is_some() && a6.is_some() {
            bad.push(format!("backend id {id} active in backends and backends6"));
        }
        for a in a4.into_iter().chain(a6) {
            *active.entry(a).or_default() += 1;
        }
    }
    if active != want_backends {
        bad.push(format!("active backends {active:?} vs {want_backends:?}"));
    }
    let ranges: BTreeSet<(u32, IpAddr, u8)> = maps
        .src_ranges()
        .unwrap()
        .iter()
        .map(|k| (k.svc_id(), IpAddr::V4(k.net().0), k.net().1))
        .chain(
            maps.src_ranges6()
                .unwrap()
                .iter()
                .map(|k| (k.svc_id(), IpAddr::V6(k.net().0), k.net().1)),
        )
        .collect();
    if ranges != want_ranges {
        bad.push(format!("src ranges {ranges:?} vs {want_ranges:?}"));
    }
    let tunnels: BTreeMap<(IpAddr, u8), (IpAddr, [u8; 6])> = maps
        .tunnels()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                (IpAddr::V4(k.net().0), k.net().1),
                (IpAddr::V4(v.node()), v.vtep_mac),
            )
        })
        .chain(maps.tunnels6().unwrap().iter().map(|(k, v)| {
            (
                (IpAddr::V6(k.net().0), k.net().1),
                (IpAddr::V6(v.node()), v.vtep_mac),
            )
        }))
        .collect();
    let want_t: BTreeMap<_, _> = d
        .tunnels
        .iter()
        .map(|(k, v)| (*k, (v.node, v.vtep_mac)))
        .collect();
    if tunnels != want_t {
        bad.push(format!("tunnels {tunnels:?} vs {want_t:?}"));
    }
    let la: BTreeSet<_> = maps.local_addrs().unwrap().into_iter().collect();
    if la != d.local_addrs {
        bad.push(format!("local addrs {la:?} vs {:?}", d.local_addrs));
    }
    let ra: BTreeSet<_> = maps.remote_addrs().unwrap().into_iter().collect();
    if ra != d.remote_addrs {
        bad.push(format!("remote addrs {ra:?} vs {:?}", d.remote_addrs));
    }
    bad
}

// --- dual stack (tests/sync_maps6.rs) ------------------------------------

/// `cfg()` with this node's IPv6 address too.
pub fn cfg6() -> ModelConfig {
    let mut c = cfg();
    c.node_addrs.push("fd00:18::11".parse().unwrap());
    c
}

/// Three dual-stack nodes: IPv4 and IPv6 InternalIPs, pod CIDRs of both
/// families, IPv4 and IPv6 VTEP MACs.
pub fn nodes6() -> Vec<Node> {
    (1..=3)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("n{i}"),
                    "annotations": {"xlb.io/vtep-mac": format!("02:00:00:00:00:0{i}"),
                        "flannel.alpha.coreos.com/backend-v6-data":
                            format!("{{\"VNI\":1,\"VtepMAC\":\"02:00:00:00:06:0{i}\"}}")}},
                "spec": {"podCIDRs": [format!("10.244.{i}.0/24"), format!("fd00:244:{i}::/64")]},
                "status": {"addresses": [
                    {"type": "InternalIP", "address": format!("198.18.0.1{i}")},
                    {"type": "InternalIP", "address": format!("fd00:18::1{i}")}]}
            }))
            .unwrap()
        })
        .collect()
}

/// A dual-stack Service `s{n}` on 10.96.0.`n` and fd00:96::`n` port 80 (+
/// NodePort 30000+n, ETP Local when `local`).
pub fn service6(n: u8, local: bool) -> Service {
    let mut spec = json!({"clusterIP": format!("10.96.0.{n}"),
        "clusterIPs": [format!("10.96.0.{n}"), format!("fd00:96::{n:x}")],
        "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
        "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "nodePort": 30000 + n as u32}]});
    if local {
        spec["externalTrafficPolicy"] = json!("Local");
    }
    serde_json::from_value(
        json!({"metadata": {"name": format!("s{n}"), "namespace": "default"},
        "spec": spec}),
    )
    .unwrap()
}

/// A dual-stack LoadBalancer Service with source ranges (any family) and
/// affinity; ingress IPs of both families.
pub fn lb_service6(n: u8, ranges: &[&str]) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": format!("s{n}"), "namespace": "default"},
        "spec": {"clusterIP": format!("10.96.0.{n}"),
            "clusterIPs": [format!("10.96.0.{n}"), format!("fd00:96::{n:x}")],
            "ipFamilies": ["IPv4", "IPv6"], "type": "LoadBalancer",
            "sessionAffinity": "ClientIP",
            "loadBalancerSourceRanges": ranges,
            "ports": [{"name": "http", "port": 80, "nodePort": 30000 + n as u32}]},
        "status": {"loadBalancer": {"ingress": [{"ip": format!("203.0.113.{n}")},
                                                {"ip": format!("2001:db8::{n:x}")}]}}}),
    )
    .unwrap()
}

/// IPv6 endpoints `(node, host)` of Service `s{n}`: fd00:244:`node`::`host`.
pub fn slice6(n: u8, eps: &[(u8, u8)]) -> EndpointSlice {
    let eps: Vec<_> = eps
        .iter()
        .map(|(node, host)| {
            json!({"addresses": [format!("fd00:244:{node}::{host:x}")], "nodeName": format!("n{node}"),
                "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("s{n}-6"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": format!("s{n}")}},
        "addressType": "IPv6",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": eps}))
    .unwrap()
}

/// The desired state of `services` and `slices` on the dual-stack nodes.
pub fn desired6(services: Vec<Service>, slices: Vec<EndpointSlice>) -> Desired {
    build(
        &Snapshot {
            services: services.into_iter().map(Arc::new).collect(),
            slices: slices.into_iter().map(|s| Arc::new(s.into())).collect(),
            nodes: nodes6().into_iter().map(Arc::new).collect(),
        },
        &cfg6(),
    )
}
