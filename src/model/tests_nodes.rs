//! Model unit tests: the nodes' addresses (this node's `local_addrs`, the
//! other nodes' `remote_addrs`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::tests::{a, cfg, node, nodes};
use super::*;

fn ips(v: &[[u8; 4]]) -> BTreeSet<IpAddr> {
    v.iter().map(|o| IpAddr::from(*o)).collect()
}

/// `ips(v)` and IPv6 addresses `v6`.
fn with6(v: &[[u8; 4]], v6: &[&str]) -> BTreeSet<IpAddr> {
    let mut s = ips(v);
    s.extend(v6.iter().map(|a| a.parse::<IpAddr>().unwrap()));
    s
}

/// n2's and n3's IPv6 InternalIPs.
const N23_V6: [&str; 2] = ["fd00:18::12", "fd00::13"];

/// A third node with an InternalIP, an ExternalIP, a Hostname and an IPv6
/// address.
fn n3() -> k8s_openapi::api::core::v1::Node {
    node(json!({
        "metadata": {"name": "n3", "annotations": {"xlb.io/vtep-mac": "02:00:00:00:00:03"}},
        "spec": {"podCIDR": "10.244.3.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.13"},
                                 {"type": "ExternalIP", "address": "203.0.113.13"},
                                 {"type": "InternalIP", "address": "fd00::13"},
                                 {"type": "Hostname", "address": "n3"}]}
    }))
}

fn snap(extra: Vec<k8s_openapi::api::core::v1::Node>) -> Snapshot {
    let mut n = nodes();
    n.extend(extra);
    Snapshot {
        nodes: a(n),
        ..Default::default()
    }
}

#[test]
fn remote_addrs_are_the_other_nodes_addresses_of_both_families() {
    let d = build(&snap(vec![n3()]), &cfg());
    assert_eq!(d.local_addrs, ips(&[[198, 18, 0, 11]]));
    assert_eq!(
        d.remote_addrs,
        with6(
            &[[198, 18, 0, 12], [198, 18, 0, 13], [203, 0, 113, 13]],
            &N23_V6
        )
    );
}

#[test]
fn remote_addrs_leave_out_this_nodes_addresses_and_follow_nodeport_addresses() {
    // n3 also claims this node's address (a stale Node object): it stays local only.
    let mut c = cfg();
    c.node_addrs.push(Ipv4Addr::new(203, 0, 113, 13).into());
    let d = build(&snap(vec![n3()]), &c);
    assert_eq!(d.local_addrs, ips(&[[198, 18, 0, 11], [203, 0, 113, 13]]));
    assert_eq!(
        d.remote_addrs,
        with6(&[[198, 18, 0, 12], [198, 18, 0, 13]], &N23_V6)
    );
    // --nodeport-addresses: only addresses inside take NodePorts, on every
    // node; a family without a CIDR there takes none (fd00::13).
    c.nodeport_cidrs = vec![(Ipv4Addr::new(203, 0, 113, 0).into(), 24)];
    let d = build(&snap(vec![n3()]), &c);
    assert_eq!(d.local_addrs, ips(&[[203, 0, 113, 13]]));
    assert_eq!(d.remote_addrs, BTreeSet::new());
    c.node_addrs.pop();
    let d = build(&snap(vec![n3()]), &c);
    assert_eq!(d.local_addrs, BTreeSet::new());
    assert_eq!(d.remote_addrs, ips(&[[203, 0, 113, 13]]));
}

#[test]
fn remote_addrs_follow_nodes_coming_and_going() {
    let mut m = Model::new(cfg());
    assert!(m.apply_snapshot(&snap(vec![n3()])).changed);
    assert!(m
        .desired()
        .remote_addrs
        .contains(&Ipv4Addr::new(203, 0, 113, 13).into()));
    // n3 gone: its addresses go, and the maps must hear of it.
    assert!(m.apply_snapshot(&snap(vec![])).changed);
    assert_eq!(
        m.desired().remote_addrs,
        with6(&[[198, 18, 0, 12]], &["fd00:18::12"])
    );
    // n3 back with another ExternalIP: an address change alone is a change.
    assert!(m.apply_snapshot(&snap(vec![n3()])).changed);
    let mut v = serde_json::to_value(n3()).unwrap();
    v["status"]["addresses"][1]["address"] = json!("203.0.113.99");
    let s = snap(vec![node(v)]);
    assert!(m.apply_snapshot(&s).changed);
    assert_eq!(
        m.desired().remote_addrs,
        with6(
            &[[198, 18, 0, 12], [198, 18, 0, 13], [203, 0, 113, 99]],
            &N23_V6
        )
    );
    assert_eq!(m.desired(), &build(&s, &cfg()));
}
