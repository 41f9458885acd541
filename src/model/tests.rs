//! Model unit tests: one per Service field, and the fixtures (objects from
//! JSON, the `web` Service, two nodes, the config) that every model test
//! module imports from here. Bad input is `tests_inputs`'s, the incremental
//! model `tests_incremental`'s and `tests_churn`'s.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use xlb_bpf::consts::{XLB_SVC_F_AFFINITY, XLB_SVC_F_LOCAL, XLB_SVC_F_SRC_RANGES};
use xlb_bpf::{Kind, Proto};

use super::*;

pub(super) fn svc(v: Value) -> Service {
    serde_json::from_value(v).unwrap()
}
pub(super) fn slice(v: Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}
pub(super) fn node(v: Value) -> Node {
    serde_json::from_value(v).unwrap()
}

pub(super) fn web(spec: Value) -> Service {
    let mut s = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    if s["spec"].get("clusterIP").is_none() {
        s["spec"]["clusterIP"] = json!("10.96.0.10");
    }
    if s["spec"].get("ports").is_none() {
        s["spec"]["ports"] = json!([{"name": "http", "port": 80, "targetPort": "http-alt"}]);
    }
    svc(s)
}

pub(super) fn ep(ip: &str, node: &str) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": node})
}

pub(super) fn web_slice(name: &str, eps: Vec<Value>) -> EndpointSlice {
    slice(json!({
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
}

pub(super) fn nodes() -> Vec<Node> {
    vec![
        node(json!({
            "metadata": {"name": "n1", "annotations": {
                "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"02:00:00:00:00:01\"}"}},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.11"},
                                     {"type": "Hostname", "address": "n1"}]}
        })),
        node(json!({
            "metadata": {"name": "n2", "annotations": {"xlb.io/vtep-mac": "02:00:00:00:00:02",
                "flannel.alpha.coreos.com/backend-v6-data": "{\"VNI\":1,\"VtepMAC\":\"02:00:00:00:06:02\"}"}},
            "spec": {"podCIDRs": ["10.244.2.0/24", "fd00:244:2::/64"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.12"},
                                     {"type": "InternalIP", "address": "fd00:18::12"}]}
        })),
    ]
}

pub(super) fn cfg() -> ModelConfig {
    ModelConfig {
        node_name: "n1".into(),
        node_addrs: vec![Ipv4Addr::new(198, 18, 0, 11).into()],
        ..Default::default()
    }
}

/// Objects as a snapshot holds them.
pub(super) fn a<T, U: From<T>>(v: Vec<T>) -> Vec<Arc<U>> {
    v.into_iter().map(|o| Arc::new(U::from(o))).collect()
}

pub(super) fn run(services: Vec<Service>, slices: Vec<EndpointSlice>) -> Desired {
    build(
        &Snapshot {
            services: a(services),
            slices: a(slices),
            nodes: a(nodes()),
        },
        &cfg(),
    )
}

pub(super) fn two_eps() -> EndpointSlice {
    web_slice(
        "web-a",
        vec![ep("10.244.1.5", "n1"), ep("10.244.2.7", "n2")],
    )
}

pub(super) fn sa(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

pub(super) fn fe(d: &Desired, kind: Kind) -> Vec<&Frontend> {
    d.frontends()
        .map(|(_, f)| f)
        .filter(|f| f.kind == kind)
        .collect()
}

pub(super) fn skipped_has(d: &Desired, needle: &str) -> bool {
    d.skipped
        .iter()
        .any(|(o, r)| o.contains(needle) || r.contains(needle))
}

#[test]
fn cluster_ip_with_named_target_port() {
    let d = run(vec![web(json!({}))], vec![two_eps()]);
    let p = d.port("default/web:80/TCP").expect("port");
    assert_eq!(p.frontends.len(), 1);
    let f = &p.frontends[0];
    assert_eq!(
        f.key,
        FrontendKey {
            addr: Some(Ipv4Addr::new(10, 96, 0, 10).into()),
            port: 80,
            proto: Proto::Tcp,
            internal: false,
            family: Family::V4,
        }
    );
    assert_eq!(f.kind, Kind::ClusterIp);
    assert_eq!(f.flags, 0);
    assert_eq!(f.table_size, 251);
    assert_eq!(f.n_local, 1);
    // targetPort "http-alt" resolved through the slice port named like the Service port
    assert_eq!(
        f.backends,
        vec![sa("10.244.1.5:8080"), sa("10.244.2.7:8080")]
    );
    assert_eq!(
        p.backends,
        vec![
            Backend {
                addr: sa("10.244.1.5:8080"),
                node: None,
                terminating: false,
                draining: false,
                host_network: false,
            },
            Backend {
                addr: sa("10.244.2.7:8080"),
                node: Some(Ipv4Addr::new(198, 18, 0, 12).into()),
                terminating: false,
                draining: false,
                host_network: false,
            },
        ]
    );
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
}

#[test]
fn cluster_ips_list_of_both_families() {
    // (tests_dual_stack covers the IPv6 side; here: both are frontends, the
    // IPv6 one without an IPv6 EndpointSlice has no backend)
    let d = run(
        vec![web(
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"]}),
        )],
        vec![two_eps()],
    );
    let c = fe(&d, Kind::ClusterIp);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].backends.len(), 2);
    assert_eq!(c[1].key.addr, Some("fd00:96::10".parse().unwrap()));
    assert_eq!(c[1].backends, vec![]);
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
}

#[test]
fn node_port() {
    let d = run(
        vec![web(json!({"type": "NodePort",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}))],
        vec![two_eps()],
    );
    let np = fe(&d, Kind::NodePort);
    assert_eq!(np.len(), 1);
    assert_eq!(np[0].key.addr, None);
    assert_eq!(np[0].key.port, 30080);
    assert_eq!(np[0].backends.len(), 2);
    assert_eq!(
        match np[0].key.svc_key() {
            SvcKey::V4(k) => k.kind as u32,
            SvcKey::V6(_) => unreachable!("an IPv4 NodePort"),
        },
        xlb_bpf::consts::XLB_KIND_NODEPORT
    );
    assert_eq!(fe(&d, Kind::ClusterIp).len(), 1);
}

#[test]
fn load_balancer_ingress_and_source_ranges() {
    let mut s = web(json!({"type": "LoadBalancer",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
        "loadBalancerSourceRanges": ["192.0.2.0/24", "198.51.100.7/16", "fd00::/8"]}));
    s.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [
            {"ip": "203.0.113.10"}, {"hostname": "lb.example"}]}}))
        .unwrap(),
    );
    let d = run(vec![s], vec![two_eps()]);
    let lb = fe(&d, Kind::LoadBalancer);
    assert_eq!(lb.len(), 1);
    assert_eq!(lb[0].key.addr, Some(Ipv4Addr::new(203, 0, 113, 10).into()));
    assert_eq!(lb[0].flags & XLB_SVC_F_SRC_RANGES, XLB_SVC_F_SRC_RANGES);
    // only LB frontends check source ranges
    assert_eq!(fe(&d, Kind::ClusterIp)[0].flags & XLB_SVC_F_SRC_RANGES, 0);
    assert_eq!(fe(&d, Kind::NodePort)[0].flags & XLB_SVC_F_SRC_RANGES, 0);
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(
        p.src_ranges,
        vec![
            (Ipv4Addr::new(192, 0, 2, 0).into(), 24),
            (Ipv4Addr::new(198, 51, 0, 0).into(), 16)
        ]
    );
}

#[test]
fn bad_source_range_fails_closed() {
    let mut s = web(json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["nope"]}));
    s.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}))
            .unwrap(),
    );
    let d = run(vec![s], vec![two_eps()]);
    let lb = fe(&d, Kind::LoadBalancer);
    assert_eq!(lb[0].flags & XLB_SVC_F_SRC_RANGES, XLB_SVC_F_SRC_RANGES);
    assert!(d.port("default/web:80/TCP").unwrap().src_ranges.is_empty());
    assert!(skipped_has(&d, "bad loadBalancerSourceRange"));
}

#[test]
fn external_ips() {
    let d = run(
        vec![web(json!({"externalIPs": ["192.0.2.50", "bad-ip"]}))],
        vec![two_eps()],
    );
    let ext = fe(&d, Kind::ExternalIp);
    assert_eq!(ext.len(), 1);
    assert_eq!(ext[0].key.addr, Some(Ipv4Addr::new(192, 0, 2, 50).into()));
    assert!(skipped_has(&d, "bad externalIP"));
}

#[test]
fn multi_port_and_udp() {
    let s = web(json!({"ports": [
        {"name": "http", "port": 80},
        {"name": "dns", "port": 53, "protocol": "UDP"}]}));
    let sl = slice(json!({
        "metadata": {"name": "web-a", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": [ep("10.244.1.5", "n1")],
    }));
    let d = run(vec![s], vec![sl]);
    assert_eq!(
        d.port("default/web:80/TCP").unwrap().frontends[0].backends,
        vec![sa("10.244.1.5:8080")]
    );
    let dns = d.port("default/web:53/UDP").unwrap();
    assert_eq!(dns.frontends[0].key.proto, Proto::Udp);
    assert_eq!(dns.frontends[0].backends, vec![sa("10.244.1.5:5353")]);
}

#[test]
fn several_slices_per_service_and_other_services_slices_ignored() {
    let a = web_slice("web-a", vec![ep("10.244.1.5", "n1")]);
    let b = web_slice("web-b", vec![ep("10.244.2.7", "n2")]);
    let mut other = web_slice("api-a", vec![ep("10.244.2.9", "n2")]);
    other
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(SERVICE_NAME_LABEL.into(), "api".into());
    let d = run(vec![web(json!({}))], vec![a, b, other]);
    assert_eq!(
        fe(&d, Kind::ClusterIp)[0].backends,
        vec![sa("10.244.1.5:8080"), sa("10.244.2.7:8080")]
    );
}

#[test]
fn conditions_ready_then_serving_terminating() {
    let eps = vec![
        json!({"addresses": ["10.244.1.5"], "nodeName": "n1",
               "conditions": {"ready": true}}),
        json!({"addresses": ["10.244.1.6"], "nodeName": "n1",
               "conditions": {"ready": false, "serving": true, "terminating": true}}),
        json!({"addresses": ["10.244.1.7"], "nodeName": "n1",
               "conditions": {"ready": false, "serving": false}}),
        json!({"addresses": ["10.244.1.8"], "nodeName": "n1"}), // nil conditions = ready
    ];
    let d = run(vec![web(json!({}))], vec![web_slice("web-a", eps)]);
    assert_eq!(
        fe(&d, Kind::ClusterIp)[0].backends,
        vec![sa("10.244.1.5:8080"), sa("10.244.1.8:8080")]
    );
    // no ready one: the serving-terminating one is used, flagged
    let eps = vec![
        json!({"addresses": ["10.244.1.6"], "nodeName": "n1",
               "conditions": {"ready": false, "serving": true, "terminating": true}}),
        json!({"addresses": ["10.244.1.7"], "nodeName": "n1",
               "conditions": {"ready": false, "serving": false, "terminating": true}}),
    ];
    let d = run(vec![web(json!({}))], vec![web_slice("web-a", eps)]);
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(p.frontends[0].backends, vec![sa("10.244.1.6:8080")]);
    assert!(p.backends[0].terminating);
}

#[test]
fn no_endpoints_gives_table_size_zero() {
    let d = run(vec![web(json!({}))], vec![]);
    let f = fe(&d, Kind::ClusterIp);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].table_size, 0);
    assert!(f[0].backends.is_empty());
}

#[test]
fn node_name_local_remote_and_unknown() {
    let eps = vec![
        ep("10.244.1.5", "n1"),
        ep("10.244.2.7", "n2"),
        ep("10.244.3.3", "n3"),               // unknown node: skipped
        json!({"addresses": ["10.244.2.8"]}), // no nodeName: by pod CIDR -> n2
        json!({"addresses": ["192.0.2.99"]}), // outside: local (kernel routes)
    ];
    let d = run(vec![web(json!({}))], vec![web_slice("web-a", eps)]);
    let p = d.port("default/web:80/TCP").unwrap();
    let nodes: Vec<_> = p.backends.iter().map(|b| (b.addr, b.node)).collect();
    let n2 = Some(Ipv4Addr::new(198, 18, 0, 12).into());
    assert_eq!(
        nodes,
        vec![
            (sa("10.244.1.5:8080"), None),
            (sa("10.244.2.7:8080"), n2),
            (sa("10.244.2.8:8080"), n2),
            (sa("192.0.2.99:8080"), None),
        ]
    );
    assert!(skipped_has(&d, "node n3 unknown"));
}

#[test]
fn tunnels_and_local_addrs() {
    let d = run(vec![], vec![]);
    // n2's CIDRs (each to its family's underlay and VTEP) and its IPv4
    // address (host-network endpoints); not our own node's
    assert_eq!(d.tunnels.len(), 3);
    let h = &d.tunnels[&(Ipv4Addr::new(198, 18, 0, 12).into(), 32)];
    assert_eq!(h.node, Ipv4Addr::new(198, 18, 0, 12));
    assert_eq!(h.vtep_mac, [2, 0, 0, 0, 0, 2]);
    assert!(
        !d.tunnels.keys().any(|(a, l)| a.is_ipv6() && *l == 128),
        "no IPv6 address entries (no IPv6 tunnel return)"
    );
    let t = &d.tunnels[&(Ipv4Addr::new(10, 244, 2, 0).into(), 24)];
    assert_eq!(t.node, Ipv4Addr::new(198, 18, 0, 12));
    assert_eq!(t.vtep_mac, [2, 0, 0, 0, 0, 2]);
    let t6 = &d.tunnels[&("fd00:244:2::".parse().unwrap(), 64)];
    assert_eq!(t6.node, "fd00:18::12".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(t6.vtep_mac, [2, 0, 0, 0, 6, 2]);
    assert_eq!(
        d.local_addrs.iter().copied().collect::<Vec<_>>(),
        vec![Ipv4Addr::new(198, 18, 0, 11)]
    );
}

#[test]
fn vtep_annotation_configurable_and_bad() {
    let mut c = cfg();
    c.vtep_mac_annotation = "example.com/mac".into();
    let n = vec![
        node(
            json!({"metadata": {"name": "n3", "annotations": {"example.com/mac": "02:00:00:00:00:03"}},
                    "spec": {"podCIDR": "10.244.3.0/24"},
                    "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.13"}]}}),
        ),
        node(
            json!({"metadata": {"name": "n4", "annotations": {"example.com/mac": "zz"}},
                    "spec": {"podCIDR": "10.244.4.0/24"},
                    "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.14"}]}}),
        ),
        node(
            json!({"metadata": {"name": "n5"}, "spec": {"podCIDR": "bad"},
                    "status": {"addresses": [{"type": "InternalIP", "address": "not-ip"}]}}),
        ),
    ];
    let d = build(
        &Snapshot {
            nodes: a(n),
            ..Default::default()
        },
        &c,
    );
    // n3's pod CIDR and address; n4 (bad MAC) none
    assert_eq!(d.tunnels.len(), 2);
    assert!(d
        .tunnels
        .contains_key(&(Ipv4Addr::new(198, 18, 0, 13).into(), 32)));
    assert_eq!(
        d.tunnels[&(Ipv4Addr::new(10, 244, 3, 0).into(), 24)].vtep_mac,
        [2, 0, 0, 0, 0, 3]
    );
    assert!(skipped_has(&d, "no MAC"));
    assert!(skipped_has(&d, "bad podCIDR"));
    assert!(skipped_has(&d, "bad address"));
}

#[test]
fn external_traffic_policy_local() {
    let mut s = web(
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "externalIPs": ["192.0.2.50"],
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    s.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}))
            .unwrap(),
    );
    let d = run(vec![s], vec![two_eps()]);
    for k in [Kind::NodePort, Kind::LoadBalancer, Kind::ExternalIp] {
        let f = fe(&d, k);
        assert_eq!(f[0].flags & XLB_SVC_F_LOCAL, XLB_SVC_F_LOCAL, "{k}");
        assert_eq!(f[0].backends, vec![sa("10.244.1.5:8080")], "{k}");
        assert_eq!(f[0].n_local, 1);
    }
    let c = fe(&d, Kind::ClusterIp);
    assert_eq!(c[0].flags & XLB_SVC_F_LOCAL, 0);
    assert_eq!(c[0].backends.len(), 2);
}

#[test]
fn external_traffic_policy_local_without_local_backend() {
    let d = run(
        vec![web(
            json!({"type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        )],
        vec![web_slice("web-a", vec![ep("10.244.2.7", "n2")])],
    );
    let np = fe(&d, Kind::NodePort);
    assert_eq!(np[0].table_size, 0);
    assert_eq!(np[0].flags & XLB_SVC_F_LOCAL, XLB_SVC_F_LOCAL);
    assert_eq!(fe(&d, Kind::ClusterIp)[0].table_size, 251);
}

#[test]
fn internal_traffic_policy_local() {
    let d = run(
        vec![web(
            json!({"internalTrafficPolicy": "Local", "externalIPs": ["192.0.2.50"]}),
        )],
        vec![two_eps()],
    );
    let c = fe(&d, Kind::ClusterIp);
    assert_eq!(c[0].flags & XLB_SVC_F_LOCAL, XLB_SVC_F_LOCAL);
    assert_eq!(c[0].backends, vec![sa("10.244.1.5:8080")]);
    assert_eq!(fe(&d, Kind::ExternalIp)[0].backends.len(), 2);
}

#[test]
fn traffic_policy_unknown_value() {
    let d = run(
        vec![web(json!({"internalTrafficPolicy": "Nearby"}))],
        vec![two_eps()],
    );
    assert_eq!(fe(&d, Kind::ClusterIp)[0].flags & XLB_SVC_F_LOCAL, 0);
    assert!(skipped_has(&d, "internalTrafficPolicy \"Nearby\" unknown"));
}

#[test]
fn session_affinity() {
    let d = run(
        vec![web(json!({"sessionAffinity": "ClientIP"}))],
        vec![two_eps()],
    );
    let f = fe(&d, Kind::ClusterIp)[0].clone();
    assert_eq!(f.flags & XLB_SVC_F_AFFINITY, XLB_SVC_F_AFFINITY);
    assert_eq!(f.affinity_timeout, 10800);
    let d = run(
        vec![web(json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}))],
        vec![two_eps()],
    );
    assert_eq!(fe(&d, Kind::ClusterIp)[0].affinity_timeout, 60);
    let d = run(
        vec![web(json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}))],
        vec![two_eps()],
    );
    assert_eq!(fe(&d, Kind::ClusterIp)[0].affinity_timeout, 10800);
    assert!(skipped_has(&d, "timeoutSeconds 0"));
    let d = run(
        vec![web(json!({"sessionAffinity": "None"}))],
        vec![two_eps()],
    );
    assert_eq!(fe(&d, Kind::ClusterIp)[0].flags, 0);
}
