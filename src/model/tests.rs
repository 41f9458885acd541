//! Model unit tests: one per Service field and per bad input.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use xlb_bpf::consts::{XLB_SVC_F_AFFINITY, XLB_SVC_F_LOCAL, XLB_SVC_F_SRC_RANGES};
use xlb_bpf::{Kind, Proto};
use xlb_testkit::XorShift;

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
pub(super) fn a<T>(v: Vec<T>) -> Vec<Arc<T>> {
    v.into_iter().map(Arc::new).collect()
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
    // n2's CIDRs (each to its family's underlay and VTEP); not our own node's
    assert_eq!(d.tunnels.len(), 2);
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
    assert_eq!(d.tunnels.len(), 1);
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

#[test]
fn headless_and_external_name_skipped_without_error() {
    let headless = web(json!({"clusterIP": "None"}));
    let mut ext = svc(json!({"metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}}));
    ext.metadata.name = Some("ext".into());
    let d = run(vec![headless, ext], vec![two_eps()]);
    assert!(d.services.is_empty());
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
}

#[test]
fn bad_inputs_skipped_with_reason_others_kept() {
    let good = svc(json!({"metadata": {"name": "good", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 443}]}}));
    let cases = vec![
        (web(json!({"clusterIP": "10.96.0.999"})), "bad clusterIP"),
        (web(json!({"clusterIP": ""})), "no clusterIP"),
        (
            web(json!({"ports": [{"name": "http", "port": 0}]})),
            "port 0 out of range",
        ),
        (
            web(json!({"ports": [{"name": "x", "port": 70000}]})),
            "port 70000 out of range",
        ),
        (
            web(json!({"ports": [{"name": "s", "port": 80, "protocol": "SCTP"}]})),
            "SCTP not supported",
        ),
        (
            web(json!({"ports": [{"name": "s", "port": 80, "protocol": "QUIC"}]})),
            "unknown protocol",
        ),
        (web(json!({"type": "Weird"})), "unknown type"),
        (web(json!({"ports": []})), "no ports"),
        (
            web(
                json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 99999}]}),
            ),
            "nodePort 99999",
        ),
        (
            svc(json!({"metadata": {"name": "nospec", "namespace": "default"}})),
            "spec missing",
        ),
        (
            svc(json!({"metadata": {"namespace": "default"}, "spec": {"clusterIP": "10.96.0.9"}})),
            "metadata.name missing",
        ),
    ];
    for (bad, why) in cases {
        let d = run(vec![bad, good.clone()], vec![two_eps()]);
        assert!(skipped_has(&d, why), "{why}: {:?}", d.skipped);
        assert!(
            d.port("default/good:443/TCP").is_some(),
            "{why}: good Service lost"
        );
    }
}

#[test]
fn bad_slices_and_endpoints_skipped() {
    let nolabel = slice(json!({"metadata": {"name": "x", "namespace": "default"},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [ep("10.244.1.9", "n1")]}));
    let fqdn = slice(json!({"metadata": {"name": "f", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "FQDN", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["example.com"]}]}));
    let bad_port = slice(json!({"metadata": {"name": "p", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 0}],
        "endpoints": [ep("10.244.1.9", "n1")]}));
    let bad_ep = web_slice(
        "web-b",
        vec![
            json!({"addresses": ["10.244.1.300"], "nodeName": "n1"}),
            json!({"addresses": [], "nodeName": "n1"}),
            ep("10.244.1.6", "n1"),
        ],
    );
    let d = run(
        vec![web(json!({}))],
        vec![nolabel, fqdn, bad_port, bad_ep, two_eps()],
    );
    for why in [
        "label kubernetes.io/service-name missing",
        "addressType \"FQDN\"",
        "port Some(0) out of range",
        "bad endpoint address",
        "endpoint without addresses",
    ] {
        assert!(skipped_has(&d, why), "{why}: {:?}", d.skipped);
    }
    assert_eq!(fe(&d, Kind::ClusterIp)[0].backends.len(), 3);
}

#[test]
fn zone_and_hints_accepted_and_ignored() {
    let eps = vec![json!({"addresses": ["10.244.2.7"], "nodeName": "n2",
        "conditions": {"ready": true}, "zone": "zone-b",
        "hints": {"forZones": [{"name": "zone-b"}]}})];
    let d = run(vec![web(json!({}))], vec![web_slice("web-a", eps)]);
    assert_eq!(
        fe(&d, Kind::ClusterIp)[0].backends,
        vec![sa("10.244.2.7:8080")]
    );
    assert!(d.skipped.is_empty());
}

#[test]
fn duplicate_endpoint_across_slices_prefers_ready() {
    let a = web_slice(
        "web-a",
        vec![json!({"addresses": ["10.244.1.5"], "nodeName": "n1",
            "conditions": {"ready": false, "serving": true, "terminating": true}})],
    );
    let b = web_slice("web-b", vec![ep("10.244.1.5", "n1")]);
    let d = run(vec![web(json!({}))], vec![a, b]);
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(p.backends.len(), 1);
    assert!(!p.backends[0].terminating);
}

#[test]
fn incremental_model_matches_build_and_keeps_unchanged_arcs() {
    let api = svc(json!({"metadata": {"name": "api", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80}]}}));
    let mut api_slice = web_slice("api-a", vec![ep("10.244.2.9", "n2")]);
    api_slice
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(SERVICE_NAME_LABEL.into(), "api".into());
    let mut m = Model::new(cfg());
    for n in nodes() {
        m.upsert_node(&n);
    }
    assert!(m.upsert_service(&web(json!({}))));
    assert!(m.upsert_service(&api));
    assert!(m.upsert_slice(&api_slice));
    let api_arc = m.desired().services["default/api"].clone();
    assert!(m.upsert_slice(&two_eps()));
    assert!(Arc::ptr_eq(&api_arc, &m.desired().services["default/api"]));
    // same slice again: nothing changes
    assert!(!m.upsert_slice(&two_eps()));
    let snap = Snapshot {
        services: a(vec![web(json!({})), api.clone()]),
        slices: a(vec![api_slice.clone(), two_eps()]),
        nodes: a(nodes()),
    };
    assert_eq!(m.desired(), &build(&snap, &cfg()));
    // a Node heartbeat (nothing the model uses) changes nothing
    let mut n2 = nodes()[1].clone();
    n2.metadata.resource_version = Some("99".into());
    assert!(!m.upsert_node(&n2));
    // removing the slice empties the table
    assert!(m.remove_slice("default", "web-a"));
    assert_eq!(
        fe(m.desired(), Kind::ClusterIp)
            .iter()
            .find(|f| f.key.port == 80 && f.key.addr == Some(Ipv4Addr::new(10, 96, 0, 10).into()))
            .unwrap()
            .table_size,
        0
    );
    // node removal makes its endpoints unplaceable
    assert!(m.remove_node("n2"));
    assert!(m.desired().services["default/api"].ports[0].frontends[0]
        .backends
        .is_empty());
    assert!(m.desired().tunnels.is_empty());
    assert!(m.remove_service("default", "web"));
    assert!(!m.desired().services.contains_key("default/web"));
}

#[test]
fn slice_moving_to_another_service() {
    let mut m = Model::from_snapshot(
        &Snapshot {
            services: a(vec![
                web(json!({})),
                svc(json!({"metadata": {"name": "api", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80}]}})),
            ]),
            slices: a(vec![two_eps()]),
            nodes: a(nodes()),
        },
        cfg(),
    );
    let mut moved = two_eps();
    moved
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(SERVICE_NAME_LABEL.into(), "api".into());
    assert!(m.upsert_slice(&moved));
    let d = m.desired();
    assert!(d.port("default/web:80/TCP").unwrap().frontends[0]
        .backends
        .is_empty());
    assert_eq!(
        d.port("default/api:80/TCP").unwrap().frontends[0]
            .backends
            .len(),
        2
    );
}

/// Random object generator for the churn tests (the test kit's deterministic xorshift).
struct Churn(XorShift);

impl Churn {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.0.chance(percent)
    }
    fn rv(&mut self, v: &mut Value) {
        // Half of the objects carry a resourceVersion (API source), half not (manifests).
        if self.chance(50) {
            v["metadata"]["resourceVersion"] = json!(self.next().to_string());
        }
    }
    fn service(&mut self) -> Service {
        let i = self.below(8);
        let mut v = json!({"metadata": {"name": format!("s{i}"),
                                        "namespace": if self.chance(80) { "default" } else { "other" }},
            "spec": {"clusterIP": format!("10.96.0.{}", 1 + self.below(20)),
                     "ports": [{"name": "http", "port": 80 + self.below(3), "targetPort": "http"}]}});
        if self.chance(30) {
            v["spec"]["ports"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "alt", "port": 8443, "targetPort": 9443, "protocol": "UDP"}));
        }
        if self.chance(10) {
            v["spec"]["ports"][0]["port"] = json!(0); // bad: skipped with a reason
        }
        if self.chance(10) {
            v["spec"]["clusterIP"] = json!("None"); // headless
        }
        if self.chance(20) {
            v["spec"]["type"] = json!("NodePort");
            v["spec"]["ports"][0]["nodePort"] = json!(30000 + self.below(5));
        }
        if self.chance(15) {
            v["spec"]["externalTrafficPolicy"] = json!("Local");
            v["spec"]["type"] = json!("NodePort");
        }
        // Bad input and policy churn: ownership by creationTimestamp (ties
        // by name), external addresses on other Services' ClusterIPs or
        // unroutable, type / policy / affinity / label changes.
        if self.chance(70) {
            v["metadata"]["creationTimestamp"] =
                json!(format!("2026-01-0{}T00:00:00Z", 1 + self.below(3)));
        }
        if self.chance(20) {
            let ip = match self.below(3) {
                0 => "127.0.0.1".to_string(),
                _ => format!("10.96.0.{}", 1 + self.below(20)),
            };
            v["spec"]["externalIPs"] = json!([ip]);
        }
        if self.chance(15) {
            v["spec"]["type"] = json!("LoadBalancer");
            v["spec"]["ports"][0]["nodePort"] = json!(30000 + self.below(5));
            v["status"] = json!({"loadBalancer": {"ingress": [{"ip":
                format!("10.96.0.{}", 1 + self.below(25))}]}});
        }
        if self.chance(5) {
            v["spec"]["ports"][0]["nodePort"] = json!(22); // outside the range
        }
        if self.chance(15) {
            v["spec"]["sessionAffinity"] = json!("ClientIP");
            v["spec"]["sessionAffinityConfig"] =
                json!({"clientIP": {"timeoutSeconds": 1 + self.below(100)}});
        }
        if self.chance(10) {
            v["spec"]["internalTrafficPolicy"] = json!("Local");
        }
        if self.chance(5) {
            v["metadata"]["labels"] = json!({"service.kubernetes.io/service-proxy-name": "x"});
        } else if self.chance(3) {
            v["metadata"]["labels"] = json!({"service.kubernetes.io/headless": ""});
        }
        // Dual stack: both families' clusterIPs (and external addresses),
        // or IPv6 only; now and then a bad IPv6 address.
        match self.below(10) {
            0..=2 => {
                let v4 = v["spec"]["clusterIP"].clone();
                let v6 = json!(format!("fd00:96::{:x}", 1 + self.below(20)));
                v["spec"]["clusterIPs"] = json!([v4, v6]);
                v["spec"]["ipFamilies"] = json!(["IPv4", "IPv6"]);
                v["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
            }
            3 => {
                let v6 = format!("fd00:96::{:x}", 1 + self.below(20));
                v["spec"]["clusterIP"] = json!(v6);
                v["spec"]["ipFamilies"] = json!(["IPv6"]);
            }
            _ => {}
        }
        if self.chance(10) {
            let ip = match self.below(4) {
                0 => "fe80::1".to_string(),          // link-local: refused
                1 => "::ffff:10.96.0.1".to_string(), // v4-mapped: refused
                _ => format!("fd00:96::{:x}", 1 + self.below(20)),
            };
            v["spec"]["externalIPs"] = json!([ip]);
        }
        if self.chance(10) {
            v["spec"]["type"] = json!("LoadBalancer");
            v["spec"]["loadBalancerSourceRanges"] = json!(match self.below(3) {
                0 => json!(["192.0.2.0/24"]),
                1 => json!(["2001:db8::/32"]),
                _ => json!(["192.0.2.0/24", "2001:db8::/32", "2001:db8::/200"]),
            });
        }
        if self.chance(5) {
            v["metadata"]["name"] = json!(null); // nameless: skipped
        }
        self.rv(&mut v);
        svc(v)
    }
    fn slice(&mut self) -> EndpointSlice {
        let i = self.below(12);
        let v6 = self.chance(35);
        let eps: Vec<Value> = (0..self.below(4))
            .map(|_| {
                let n = 1 + self.below(3);
                let host = 1 + self.below(9);
                // now and then an address of the other family: skipped
                let addr = if v6 != self.chance(5) {
                    format!("fd00:244:{n}::{host}")
                } else {
                    format!("10.244.{n}.{host}")
                };
                let mut e = json!({"addresses": [addr],
                                   "conditions": {"ready": self.chance(80), "serving": true,
                                                  "terminating": self.chance(20)}});
                if self.chance(85) {
                    e["nodeName"] = json!(format!("n{n}"));
                }
                e
            })
            .collect();
        let mut v = json!({"metadata": {"name": format!("sl{i}"),
                                        "namespace": if self.chance(85) { "default" } else { "other" },
                                        "labels": {"kubernetes.io/service-name": format!("s{}", self.below(8))}},
            "addressType": if v6 { "IPv6" } else { "IPv4" },
            "ports": [{"name": if self.chance(80) { "http" } else { "web" }, "port": 8080, "protocol": "TCP"}],
            "endpoints": eps});
        if self.chance(8) {
            v["metadata"]["labels"] = json!({});
        } else if self.chance(3) {
            v["metadata"]["labels"]["service.kubernetes.io/headless"] = json!("");
        }
        if self.chance(4) {
            v["metadata"]["name"] = json!(null);
        }
        self.rv(&mut v);
        slice(v)
    }
    fn node(&mut self) -> Node {
        let n = 1 + self.below(3);
        let mut v = json!({"metadata": {"name": format!("n{n}"),
                                        "annotations": {"xlb.io/vtep-mac": format!("02:00:00:00:00:0{n}")}},
            "spec": {"podCIDR": format!("10.244.{n}.0/24")},
            "status": {"addresses": [{"type": "InternalIP",
                                      "address": format!("198.18.0.{}", 10 + n + 10 * self.below(2))}]}});
        if self.chance(60) {
            // Dual stack: an IPv6 pod CIDR, address and VTEP (some parts
            // missing now and then: no tunnel6 entry, with a reason).
            v["spec"]["podCIDRs"] =
                json!([format!("10.244.{n}.0/24"), format!("fd00:244:{n}::/64")]);
            if self.chance(80) {
                v["status"]["addresses"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "InternalIP", "address": format!("fd00:18::{}", 10 + n)}));
            }
            if self.chance(80) {
                v["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-v6-data"] =
                    json!(format!("{{\"VNI\":1,\"VtepMAC\":\"02:00:00:00:06:0{n}\"}}"));
            }
            if self.chance(30) {
                v["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ipv6"] =
                    json!(format!("2001:db8:18::{}", 10 + n + 10 * self.below(2)));
            }
        }
        if self.chance(15) {
            v["metadata"]["annotations"] = json!({});
        }
        if self.chance(5) {
            v["metadata"]["name"] = json!(null);
        }
        self.rv(&mut v);
        node(v)
    }
}

/// Replaces the object of the same name (or adds it), or removes one.
fn churn_list<T: Clone + k8s_openapi::Metadata<Ty = ObjectMeta>>(
    r: &mut Churn,
    list: &mut Vec<Arc<T>>,
    make: impl FnOnce(&mut Churn) -> T,
) {
    if !list.is_empty() && r.chance(25) {
        let i = r.below(list.len() as u64) as usize;
        list.remove(i);
        return;
    }
    let o = Arc::new(make(r));
    let same = |x: &Arc<T>| {
        x.metadata().name == o.metadata().name && x.metadata().namespace == o.metadata().namespace
    };
    match list.iter().position(same) {
        // Now and then a duplicate name (two manifest files): the last one wins.
        Some(i) if !r.chance(5) => list[i] = o,
        _ => list.push(o),
    }
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Everything a FakeMaps holds, as bytes (the generated map types have no
/// PartialEq): services (both families) and src_ranges sorted, backend
/// slots (both arrays), Maglev slots, tunnels (both), local and remote
/// addresses.
type FakeView = (
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<u32>,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<std::net::IpAddr>,
    Vec<std::net::IpAddr>,
);

fn fake_view(f: &crate::sync::FakeMaps) -> FakeView {
    fn b<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: Plain map types.
        unsafe { plain::as_bytes(v) }.to_vec()
    }
    let mut services: Vec<Vec<u8>> = f
        .services
        .values()
        .map(|(k, v)| [b(k), b(v)].concat())
        .chain(f.services6.values().map(|(k, v)| [b(k), b(v)].concat()))
        .collect();
    services.sort();
    (
        services,
        f.backends
            .iter()
            .map(b)
            .chain(f.backends6.iter().map(b))
            .collect(),
        f.maglev.clone(),
        f.src_ranges
            .values()
            .map(b)
            .chain(f.src_ranges6.values().map(b))
            .collect(),
        f.tunnels
            .values()
            .map(|(k, v)| [b(k), b(v)].concat())
            .chain(f.tunnels6.values().map(|(k, v)| [b(k), b(v)].concat()))
            .collect(),
        f.local_addrs.iter().copied().collect(),
        f.remote_addrs.iter().copied().collect(),
    )
}

#[test]
fn apply_snapshot_equals_build_under_random_churn() {
    // (steps with backends, with skip reasons, with tunnels, with a Node
    // change, conflicts, with an IPv6 frontend with backends, with an IPv6
    // tunnel)
    let mut seen = (0, 0, 0, 0, 0, 0, 0);
    for seed in 1..=12u64 {
        let mut r = Churn(XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1));
        let mut snap = Snapshot::default();
        let mut m = Model::new(cfg());
        // The maps too: one syncer fed the incremental model, one fed build().
        let fake = || {
            let mut f = crate::sync::FakeMaps::small();
            f.record = false;
            crate::sync::Syncer::adopt(f, Default::default()).unwrap()
        };
        let (mut sync_incr, mut sync_full) = (fake(), fake());
        for step in 0..150 {
            // One to a few changes per snapshot (a debounced burst).
            let burst = if r.chance(10) { 12 } else { 2 };
            for _ in 0..1 + r.below(burst) {
                match r.below(10) {
                    0 => churn_list(&mut r, &mut snap.nodes, Churn::node),
                    1..=4 => churn_list(&mut r, &mut snap.services, Churn::service),
                    _ => churn_list(&mut r, &mut snap.slices, Churn::slice),
                }
            }
            if r.chance(10) {
                // Fresh copies of every object (a manifest reload, a relist):
                // unchanged ones are told by resourceVersion or content.
                snap.services = snap
                    .services
                    .iter()
                    .map(|o| Arc::new((**o).clone()))
                    .collect();
                snap.slices = snap
                    .slices
                    .iter()
                    .map(|o| Arc::new((**o).clone()))
                    .collect();
                snap.nodes = snap.nodes.iter().map(|o| Arc::new((**o).clone())).collect();
            }
            if r.chance(25) {
                // In any order (the model must not depend on it).
                snap.slices.reverse();
                let half = snap.services.len() / 2;
                snap.services.rotate_left(half);
            } else {
                // As both sources publish: sorted by namespace/name.
                crate::sources::sort_snapshot(&mut snap);
            }
            let before = m.desired().clone();
            let delta = m.apply_snapshot(&snap);
            let want = build(&snap, &cfg());
            assert_eq!(m.desired(), &want, "seed {seed} step {step}");
            seen.0 += usize::from(want.backends().len() > 2);
            seen.1 += usize::from(!want.skipped.is_empty());
            seen.2 += usize::from(!want.tunnels.is_empty());
            seen.3 += usize::from(before.tunnels != want.tunnels);
            seen.5 += usize::from(
                want.frontends()
                    .any(|(_, f)| f.key.family == Family::V6 && !f.backends.is_empty()),
            );
            seen.6 += usize::from(want.tunnels.keys().any(|(a, _)| a.is_ipv6()));
            let maps_view = |d: &Desired| {
                (
                    d.services.clone(),
                    d.tunnels.clone(),
                    d.local_addrs.clone(),
                    d.remote_addrs.clone(),
                )
            };
            assert_eq!(
                delta.changed,
                maps_view(&before) != maps_view(&want),
                "seed {seed} step {step}"
            );

            let ri = sync_incr.apply(m.desired()).unwrap();
            let rf = sync_full.apply(&want).unwrap();
            // Random Services claim the same addresses and NodePorts: the
            // model gives each frontend to one, so the maps take every
            // frontend without a conflict.
            assert_eq!(ri.failed, Vec::new(), "seed {seed} step {step}");
            assert_eq!(rf.failed, Vec::new(), "seed {seed} step {step}");
            seen.4 += want.conflicts.len();
            assert_eq!(sync_incr.maps().violations(), Vec::<String>::new());
            assert_eq!(
                fake_view(sync_incr.maps()),
                fake_view(sync_full.maps()),
                "maps differ, seed {seed} step {step}"
            );

            // The same snapshot again: nothing to do, every Arc kept.
            let arcs = m.desired().services.clone();
            let again = m.apply_snapshot(&snap);
            assert_eq!(again, SnapshotDelta::default(), "seed {seed} step {step}");
            for (k, a) in &arcs {
                assert!(Arc::ptr_eq(a, &m.desired().services[k]), "{k} re-made");
            }
        }
    }
    // The generator reaches the interesting cases (1800 steps in all).
    assert!(
        seen.0 > 500
            && seen.1 > 500
            && seen.2 > 500
            && seen.3 > 20
            && seen.4 > 200
            && seen.5 > 150
            && seen.6 > 300,
        "{seen:?}"
    );
}

#[test]
fn apply_snapshot_recomputes_only_what_changed() {
    let mut r = Churn(XorShift(7));
    let mut snap = Snapshot {
        nodes: a(nodes()),
        ..Default::default()
    };
    for i in 0..8 {
        let mut s = r.service();
        s.metadata.name = Some(format!("s{i}"));
        s.metadata.namespace = Some("default".into());
        snap.services.push(Arc::new(s));
    }
    snap.services.push(Arc::new(web(json!({}))));
    snap.slices.push(Arc::new(two_eps()));
    let mut m = Model::new(cfg());
    m.apply_snapshot(&snap);
    let arcs = m.desired().services.clone();
    // One endpoint more in web's slice: only web changes.
    let mut s = (*snap.slices[0]).clone();
    s.endpoints.push(
        slice(json!({"addressType": "IPv4", "endpoints": [ep("10.244.2.77", "n2")]})).endpoints[0]
            .clone(),
    );
    snap.slices[0] = Arc::new(s);
    let d = m.apply_snapshot(&snap);
    assert_eq!(
        d,
        SnapshotDelta {
            upserted: 1,
            removed: 0,
            changed: true
        }
    );
    for (k, a) in &arcs {
        assert_eq!(
            Arc::ptr_eq(a, &m.desired().services[k]),
            k != "default/web",
            "{k}"
        );
    }
    assert_eq!(m.desired(), &build(&snap, &cfg()));
    // A resourceVersion bump alone (a status heartbeat) is an upsert that changes nothing.
    Arc::make_mut(&mut snap.nodes[1]).metadata.resource_version = Some("1234".into());
    let d = m.apply_snapshot(&snap);
    assert_eq!((d.upserted, d.changed), (1, false));
}
