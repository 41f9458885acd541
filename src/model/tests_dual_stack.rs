//! Model unit tests: IPv6 and dual-stack Services, EndpointSlices, Nodes,
//! source ranges, and the bad IPv6 input each skipped with a reason.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};
use xlb_bpf::consts::{XLB_SVC_F_EXT_LOCAL, XLB_SVC_F_SRC_RANGES};
use xlb_bpf::Kind;

use super::tests::{a, cfg, fe, node, nodes, run, sa, skipped_has, slice, svc, two_eps};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A dual-stack Service `web` of `ty`, port 80 -> named port `http`.
fn dual(extra: Value) -> Service {
    let mut v = json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                 "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    if let Value::Object(m) = extra {
        for (k, val) in m {
            v["spec"][k] = val;
        }
    }
    svc(v)
}

/// The IPv6 EndpointSlice of `web`: one endpoint on n1 (this node), one on n2.
fn v6_eps() -> EndpointSlice {
    slice(json!({
        "metadata": {"name": "web-v6", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv6",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["fd00:244:1::5"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["fd00:244:2::7"], "conditions": {"ready": true}, "nodeName": "n2"},
        ],
    }))
}

fn v6_slice(name: &str, eps: Vec<Value>) -> EndpointSlice {
    slice(json!({
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv6",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
}

fn of(fs: &[&Frontend], family: Family) -> Vec<Frontend> {
    fs.iter()
        .filter(|f| f.key.family == family)
        .map(|f| (*f).clone())
        .collect()
}

#[test]
fn dual_stack_service_has_frontends_of_each_family_over_their_own_backends() {
    let d = run(
        vec![dual(json!({"type": "NodePort",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
            "externalIPs": ["192.0.2.50", "2001:db8::50"]}))],
        vec![two_eps(), v6_eps()],
    );
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    let p = d
        .port("default/web:80/TCP")
        .expect("one port for both families");
    assert_eq!(d.ports().count(), 1);
    let v4 = [sa("10.244.1.5:8080"), sa("10.244.2.7:8080")];
    let v6 = [sa("[fd00:244:1::5]:8080"), sa("[fd00:244:2::7]:8080")];
    // Every endpoint of both families is one of the port's backends.
    let listed: Vec<SocketAddr> = p.backends.iter().map(|b| b.addr).collect();
    assert_eq!(listed, [&v4[..], &v6[..]].concat());
    for kind in [Kind::ClusterIp, Kind::NodePort, Kind::ExternalIp] {
        let fs = fe(&d, kind);
        assert_eq!(fs.len(), 2, "{kind}: one frontend per family");
        let (f4, f6) = (&of(&fs, Family::V4)[0], &of(&fs, Family::V6)[0]);
        assert_eq!(f4.backends, v4, "{kind}");
        assert_eq!(f6.backends, v6, "{kind}");
        assert!(f4.table_size > 0 && f6.table_size > 0);
        assert_eq!((f4.n_local, f6.n_local), (1, 1));
    }
    let c6 = of(&fe(&d, Kind::ClusterIp), Family::V6);
    assert_eq!(c6[0].key.addr, Some(ip("fd00:96::10")));
    let np = fe(&d, Kind::NodePort);
    assert!(np
        .iter()
        .all(|f| f.key.addr.is_none() && f.key.port == 30080));
    assert!(matches!(np[0].key.svc_key(), SvcKey::V4(_)));
    assert!(matches!(np[1].key.svc_key(), SvcKey::V6(_)));
    assert_eq!(np[1].key.to_string(), "[*]:30080/TCP (NodePort)");
    assert_eq!(c6[0].key.to_string(), "[fd00:96::10]:80/TCP");
    // The remote IPv6 endpoint goes to n2's IPv6 underlay address.
    let b = p.backends.iter().find(|b| b.addr == v6[1]).unwrap();
    assert_eq!(b.node, Some(ip("fd00:18::12")));
    let b = p.backends.iter().find(|b| b.addr == v4[1]).unwrap();
    assert_eq!(b.node, Some(ip("198.18.0.12")));
}

#[test]
fn ipv6_only_service_is_served_over_ipv6_only() {
    let d = run(
        vec![svc(
            json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "fd00:96::10", "ipFamilies": ["IPv6"],
                     "type": "NodePort", "externalIPs": ["192.0.2.50"],
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]}}),
        )],
        vec![two_eps(), v6_eps()],
    );
    for (_, f) in d.frontends() {
        assert_eq!(f.key.family, Family::V6, "{}", f.key);
        assert!(f.backends.iter().all(SocketAddr::is_ipv6));
    }
    assert_eq!(fe(&d, Kind::NodePort).len(), 1);
    assert!(fe(&d, Kind::ExternalIp).is_empty());
    assert!(skipped_has(
        &d,
        "externalIP 192.0.2.50 ignored: the Service has no IPv4 clusterIP"
    ));
    // The IPv4 endpoints stay listed (draining: no frontend of theirs).
    let p = d.port("default/web:80/TCP").unwrap();
    let b = p.backends.iter().find(|b| b.addr.is_ipv4()).unwrap();
    assert!(b.draining);
}

#[test]
fn require_dual_stack_without_an_ipv6_cluster_ip_is_reported() {
    let d = run(
        vec![dual(json!({"clusterIPs": ["10.96.0.10"]}))],
        vec![two_eps(), v6_eps()],
    );
    assert_eq!(fe(&d, Kind::ClusterIp).len(), 1);
    assert!(skipped_has(
        &d,
        "ipFamilies lists IPv6 but no IPv6 clusterIP"
    ));
}

#[test]
fn bad_ipv6_input_is_skipped_with_a_reason_and_the_rest_kept() {
    let d = run(
        vec![dual(json!({"type": "LoadBalancer",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
            "externalIPs": ["fe80::1", "ff02::1", "::ffff:192.0.2.1", "2001:db8::zz",
                            "2001:db8::50"],
            "loadBalancerSourceRanges": ["2001:db8::/129", "2001:db8:1::/48"]}))
        .tap(|s| {
            s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
                    {"ip": "ff05::2"}, {"ip": "2001:db8::80"}]}}))
            .unwrap()
        })],
        vec![
            two_eps(),
            v6_slice(
                "web-v6",
                vec![
                    json!({"addresses": ["fd00:244:1::5"], "nodeName": "n1"}),
                    // an IPv4 address in an IPv6 slice
                    json!({"addresses": ["10.244.1.9"], "nodeName": "n1"}),
                    // v4-mapped, link-local, multicast, unparsable
                    json!({"addresses": ["::ffff:10.244.1.5"], "nodeName": "n1"}),
                    json!({"addresses": ["fe80::5"], "nodeName": "n1"}),
                    json!({"addresses": ["ff02::5"], "nodeName": "n1"}),
                    json!({"addresses": ["fd00:244:1::zz"], "nodeName": "n1"}),
                ],
            ),
            // an IPv6 address in an IPv4 slice
            slice(json!({
                "metadata": {"name": "web-b", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["fd00:244:1::6"], "nodeName": "n1"},
                              {"addresses": ["10.244.1.6"], "nodeName": "n1"}],
            })),
        ],
    );
    for why in [
        "externalIP fe80::1 refused: link-local address",
        "externalIP ff02::1 refused: multicast address",
        "bad externalIP \"::ffff:192.0.2.1\": v4-mapped IPv6 address",
        "bad externalIP \"2001:db8::zz\": unparsable address",
        "loadBalancer ingress ip ff05::2 refused: multicast address",
        "prefix /129 longer than 128",
        "endpoint 10.244.1.9 skipped: an IPv4 address in an IPv6 EndpointSlice",
        "endpoint fd00:244:1::6 skipped: an IPv6 address in an IPv4 EndpointSlice",
        "bad endpoint address \"::ffff:10.244.1.5\": v4-mapped IPv6 address",
        "endpoint fe80::5 skipped: link-local address",
        "endpoint ff02::5 skipped: multicast address",
        "bad endpoint address \"fd00:244:1::zz\"",
    ] {
        assert!(skipped_has(&d, why), "{why}: {:?}", d.skipped);
    }
    // The rest is kept.
    let ext = fe(&d, Kind::ExternalIp);
    assert_eq!(ext.len(), 1);
    assert_eq!(ext[0].key.addr, Some(ip("2001:db8::50")));
    let lb = fe(&d, Kind::LoadBalancer);
    assert_eq!(lb.len(), 1);
    assert_eq!(lb[0].backends, vec![sa("[fd00:244:1::5]:8080")]);
    let c4 = of(&fe(&d, Kind::ClusterIp), Family::V4);
    assert_eq!(
        c4[0].backends,
        vec![
            sa("10.244.1.5:8080"),
            sa("10.244.1.6:8080"),
            sa("10.244.2.7:8080")
        ]
    );
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(p.src_ranges, vec![(ip("2001:db8:1::"), 48)]);
}

#[test]
fn link_local_and_mapped_cluster_ips_are_refused() {
    let d = run(
        vec![dual(json!({"clusterIPs": ["10.96.0.10", "fe80::10"]}))],
        vec![two_eps()],
    );
    assert!(skipped_has(
        &d,
        "clusterIP fe80::10 refused: link-local address"
    ));
    assert_eq!(fe(&d, Kind::ClusterIp).len(), 1);
    let d = run(
        vec![dual(
            json!({"clusterIPs": ["10.96.0.10", "::ffff:10.96.0.11"]}),
        )],
        vec![two_eps()],
    );
    assert!(skipped_has(&d, "v4-mapped IPv6 address"));
    assert_eq!(fe(&d, Kind::ClusterIp).len(), 1);
}

/// A dual-stack LoadBalancer with `ranges`, ingress IPs of both families.
fn lb_with_ranges(ranges: Value) -> Desired {
    let mut s = dual(json!({"type": "LoadBalancer",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
        "loadBalancerSourceRanges": ranges}));
    s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
        {"ip": "203.0.113.10"}, {"ip": "2001:db8::80"}]}}))
    .unwrap();
    run(vec![s], vec![two_eps(), v6_eps()])
}

#[test]
fn source_ranges_of_one_family_admit_no_client_of_the_other() {
    // IPv6 ranges only: the IPv4 LoadBalancer frontend still checks its
    // (empty) IPv4 ranges, so no IPv4 client is admitted (kube-proxy would
    // admit every one: docs/ipv6.md).
    let d = lb_with_ranges(json!(["2001:db8:1::/48"]));
    let lb = fe(&d, Kind::LoadBalancer);
    assert_eq!(lb.len(), 2);
    assert!(lb.iter().all(|f| f.flags & XLB_SVC_F_SRC_RANGES != 0));
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(p.src_ranges, vec![(ip("2001:db8:1::"), 48)]);
    // IPv4 ranges only: the mirror image.
    let d = lb_with_ranges(json!(["192.0.2.0/24"]));
    assert!(fe(&d, Kind::LoadBalancer)
        .iter()
        .all(|f| f.flags & XLB_SVC_F_SRC_RANGES != 0));
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(p.src_ranges, vec![(ip("192.0.2.0"), 24)]);
    // Both: each family's ranges; host bits cleared.
    let d = lb_with_ranges(json!(["192.0.2.7/24", "2001:db8:1::9/48"]));
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(
        p.src_ranges,
        vec![(ip("192.0.2.0"), 24), (ip("2001:db8:1::"), 48)]
    );
    // NodePort and ClusterIP frontends never check ranges.
    assert!(d
        .frontends()
        .filter(|(_, f)| f.kind != Kind::LoadBalancer)
        .all(|(_, f)| f.flags & XLB_SVC_F_SRC_RANGES == 0));
}

#[test]
fn external_traffic_policy_local_per_family() {
    let d = run(
        vec![dual(
            json!({"type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]}),
        )],
        vec![two_eps(), v6_eps()],
    );
    let np = fe(&d, Kind::NodePort);
    // per family: the external entry over this node's endpoints, the
    // internal one over all of them
    assert_eq!(np.len(), 4);
    for fam in [Family::V4, Family::V6] {
        let fs = of(&np, fam);
        let ext = fs.iter().find(|f| !f.key.internal).unwrap();
        let int = fs.iter().find(|f| f.key.internal).unwrap();
        assert!(ext.flags & XLB_SVC_F_EXT_LOCAL != 0);
        assert_eq!(ext.backends.len(), 1);
        assert_eq!(int.backends.len(), 2);
        assert!(ext.backends.iter().all(|b| Family::of(b.ip()) == fam));
    }
}

fn dual_node(name: &str, extra: Value) -> Node {
    let mut v = json!({
        "metadata": {"name": name, "annotations": {
            "xlb.io/vtep-mac": "02:00:00:00:00:04",
            "flannel.alpha.coreos.com/backend-v6-data": "{\"VNI\":1,\"VtepMAC\":\"02:00:00:00:06:04\"}"}},
        "spec": {"podCIDRs": ["10.244.4.0/24", "fd00:244:4::/64"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.14"},
                                 {"type": "InternalIP", "address": "fe80::14"},
                                 {"type": "InternalIP", "address": "fd00:18::14"},
                                 {"type": "ExternalIP", "address": "2001:db8:18::14"}]}});
    if let Value::Object(m) = extra {
        for (k, val) in m {
            v["metadata"]["annotations"][k] = val;
        }
    }
    node(v)
}

fn with_nodes(extra: Vec<Node>, c: &ModelConfig) -> Desired {
    let mut n = nodes();
    n.extend(extra);
    build(
        &Snapshot {
            nodes: a(n),
            services: a(vec![dual(json!({}))]),
            slices: a(vec![v6_slice(
                "web-v6",
                vec![json!({"addresses": ["fd00:244:4::5"], "nodeName": "n4"})],
            )]),
        },
        c,
    )
}

#[test]
fn ipv6_node_addresses_tunnels_and_underlay() {
    let d = with_nodes(vec![dual_node("n4", json!({}))], &cfg());
    // link-local addresses are never a node's
    assert!(skipped_has(
        &d,
        "address fe80::14 skipped: link-local address"
    ));
    assert!(d.remote_addrs.contains(&ip("fd00:18::14")));
    assert!(d.remote_addrs.contains(&ip("2001:db8:18::14")));
    assert!(!d.remote_addrs.contains(&ip("fe80::14")));
    let t = &d.tunnels[&(ip("fd00:244:4::"), 64)];
    assert_eq!(t.node, ip("fd00:18::14"));
    assert_eq!(t.vtep_mac, [2, 0, 0, 0, 6, 4]);
    let be = &d.port("default/web:80/TCP").unwrap().backends[0];
    assert_eq!(be.node, Some(ip("fd00:18::14")));
    // flannel's public-ipv6 names the underlay (tunnel and backends).
    let d = with_nodes(
        vec![dual_node(
            "n4",
            json!({"flannel.alpha.coreos.com/public-ipv6": "2001:db8:18::14"}),
        )],
        &cfg(),
    );
    assert_eq!(
        d.tunnels[&(ip("fd00:244:4::"), 64)].node,
        ip("2001:db8:18::14")
    );
    let be = &d.port("default/web:80/TCP").unwrap().backends[0];
    assert_eq!(be.node, Some(ip("2001:db8:18::14")));
    // No IPv6 VTEP: no tunnel6 entry, said why; the IPv4 one stays.
    let d = with_nodes(
        vec![dual_node(
            "n4",
            json!({"flannel.alpha.coreos.com/backend-v6-data": "{}"}),
        )],
        &cfg(),
    );
    assert!(!d.tunnels.contains_key(&(ip("fd00:244:4::"), 64)));
    assert!(d.tunnels.contains_key(&(ip("10.244.4.0"), 24)));
    assert!(skipped_has(&d, "no MAC in"));
    assert!(skipped_has(&d, "no IPv6 VTEP MAC"));
}

#[test]
fn ipv6_endpoint_on_a_node_without_ipv6_is_skipped() {
    // n1 (this node) is IPv4 only: its endpoints are local, whatever the
    // family; n5 has no IPv6 address: its IPv6 endpoint cannot be reached.
    let n5 = node(json!({"metadata": {"name": "n5"},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.15"}]}}));
    let mut n = nodes();
    n.push(n5);
    let d = build(
        &Snapshot {
            nodes: a(n),
            services: a(vec![dual(json!({}))]),
            slices: a(vec![v6_slice(
                "web-v6",
                vec![
                    json!({"addresses": ["fd00:244:5::5"], "nodeName": "n5"}),
                    json!({"addresses": ["fd00:244:1::5"], "nodeName": "n1"}),
                ],
            )]),
        },
        &cfg(),
    );
    assert!(skipped_has(&d, "node n5 has no IPv6 address"));
    let c6 = of(&fe(&d, Kind::ClusterIp), Family::V6);
    assert_eq!(c6[0].backends, vec![sa("[fd00:244:1::5]:8080")]);
}

#[test]
fn this_nodes_ipv6_addresses_and_nodeport_cidrs_of_both_families() {
    let mut c = cfg();
    c.node_name = "n4".into();
    let d = with_nodes(vec![dual_node("n4", json!({}))], &c);
    assert!(d.local_addrs.contains(&ip("fd00:18::14")));
    assert!(d.local_addrs.contains(&ip("198.18.0.14")));
    assert!(!d.local_addrs.contains(&ip("fe80::14")));
    // --nodeport-addresses with an IPv6 CIDR only: no IPv4 address takes NodePorts.
    c.nodeport_cidrs = vec![(ip("2001:db8::"), 32)];
    let d = with_nodes(vec![dual_node("n4", json!({}))], &c);
    assert_eq!(
        d.local_addrs.iter().copied().collect::<Vec<_>>(),
        vec![ip("2001:db8:18::14")]
    );
    assert!(d
        .remote_addrs
        .iter()
        .all(|a| in_cidrs(*a, &c.nodeport_cidrs)));
}

#[test]
fn maglev_identity_of_an_ipv6_backend_is_its_bytes() {
    use crate::maglev::identity;
    let a: SocketAddr = "[2001:db8::1]:8080".parse().unwrap();
    let same: SocketAddr = "[2001:0db8:0000::0001]:8080".parse().unwrap();
    assert_eq!(identity(&a), identity(&same));
    assert_ne!(identity(&a), identity(&sa("[2001:db8::1]:8081")));
    assert_ne!(identity(&a), identity(&sa("[2001:db8::2]:8080")));
    assert_ne!(identity(&a), identity(&sa("[2001:db9::1]:8080")));
    // Pinned: every node (and every xlb version) computes the same tables.
    assert_eq!(identity(&a), 0xb6f1_1efd_a9be_e68a);
    // IPv4 identities are addr << 16 | port, as before.
    assert_eq!(identity(&sa("10.0.0.1:80")), (0x0a00_0001 << 16) | 80);
}

/// `Service` with a closure applied (test helper).
trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Service {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
