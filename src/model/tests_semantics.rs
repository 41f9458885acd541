//! Model tests for the Service semantics kube-proxy's users rely on:
//! endpoint conditions, graceful termination, traffic policies, the labels
//! that hand a Service to another proxy, frontend ownership and validation,
//! host-network endpoints.

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use xlb_bpf::consts::{XLB_SVC_F_EXT_LOCAL, XLB_SVC_F_LOCAL};
use xlb_bpf::Kind;

use super::tests::{ep, fe, nodes, run, sa, skipped_has, svc, two_eps, web, web_slice};
use super::*;

fn cond(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn backend<'a>(d: &'a Desired, port: &str, addr: &str) -> &'a Backend {
    d.port(port)
        .unwrap()
        .backends
        .iter()
        .find(|b| b.addr == sa(addr))
        .unwrap_or_else(|| panic!("{addr} not a backend of {port}"))
}

const WEB: &str = "default/web:80/TCP";

#[test]
fn published_ready_is_used_whatever_terminating_says() {
    // publishNotReadyAddresses: the EndpointSlice controller publishes
    // ready=true even while the pod terminates; kube-proxy routes on it.
    let d = run(
        vec![web(json!({}))],
        vec![web_slice(
            "web-a",
            vec![
                cond("10.244.1.5", "n1", true, true, true),
                cond("10.244.2.7", "n2", true, true, false),
            ],
        )],
    );
    let f = fe(&d, Kind::ClusterIp)[0];
    assert_eq!(
        f.backends,
        vec![sa("10.244.1.5:8080"), sa("10.244.2.7:8080")]
    );
    let b = backend(&d, WEB, "10.244.1.5:8080");
    assert!(b.terminating && !b.draining);
}

#[test]
fn missing_conditions_are_ready() {
    let d = run(
        vec![web(json!({}))],
        vec![web_slice(
            "web-a",
            vec![
                json!({"addresses": ["10.244.1.5"], "nodeName": "n1"}),
                json!({"addresses": ["10.244.1.6"], "nodeName": "n1", "conditions": {}}),
            ],
        )],
    );
    assert_eq!(fe(&d, Kind::ClusterIp)[0].backends.len(), 2);
}

#[test]
fn terminating_endpoint_drains_while_others_are_ready() {
    let d = run(
        vec![web(json!({}))],
        vec![web_slice(
            "web-a",
            vec![
                cond("10.244.1.5", "n1", true, true, false),
                cond("10.244.1.6", "n1", false, true, true), // serving, terminating
                cond("10.244.2.7", "n2", false, false, true), // terminating, not serving
            ],
        )],
    );
    // new connections: only the ready one
    assert_eq!(
        fe(&d, Kind::ClusterIp)[0].backends,
        vec![sa("10.244.1.5:8080")]
    );
    // the terminating ones stay backends (their flows keep them), draining
    for a in ["10.244.1.6:8080", "10.244.2.7:8080"] {
        let b = backend(&d, WEB, a);
        assert!(b.terminating && b.draining, "{a}: {b:?}");
    }
    assert!(!backend(&d, WEB, "10.244.1.5:8080").draining);
    // gone from the slice: no backend any more
    let d = run(
        vec![web(json!({}))],
        vec![web_slice(
            "web-a",
            vec![cond("10.244.1.5", "n1", true, true, false)],
        )],
    );
    assert_eq!(d.port(WEB).unwrap().backends.len(), 1);
}

#[test]
fn serving_terminating_fallback_is_in_the_table_not_draining() {
    let d = run(
        vec![web(json!({}))],
        vec![web_slice(
            "web-a",
            vec![
                cond("10.244.1.6", "n1", false, true, true),
                cond("10.244.1.7", "n1", false, false, true),
            ],
        )],
    );
    assert_eq!(
        fe(&d, Kind::ClusterIp)[0].backends,
        vec![sa("10.244.1.6:8080")]
    );
    let b = backend(&d, WEB, "10.244.1.6:8080");
    assert!(b.terminating && !b.draining);
    assert!(backend(&d, WEB, "10.244.1.7:8080").draining);
}

fn etp_local(eps: Vec<Value>) -> Desired {
    let mut s = web(
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "externalIPs": ["192.0.2.50"], "healthCheckNodePort": 32000,
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    s.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}))
            .unwrap(),
    );
    run(vec![s], vec![web_slice("web-a", eps)])
}

/// The external frontend of `kind` and its entry for clients inside the cluster.
fn ext_and_internal(d: &Desired, kind: Kind) -> (&Frontend, &Frontend) {
    let f = fe(d, kind);
    assert_eq!(f.len(), 2, "{kind}: {f:?}");
    let ext = f.iter().find(|f| !f.key.internal).unwrap();
    let int = f.iter().find(|f| f.key.internal).unwrap();
    assert_eq!(
        int.key,
        FrontendKey {
            internal: true,
            ..ext.key
        }
    );
    (ext, int)
}

#[test]
fn external_traffic_policy_local_has_a_cluster_wide_entry_for_internal_clients() {
    let d = etp_local(vec![ep("10.244.1.5", "n1"), ep("10.244.2.7", "n2")]);
    for k in [Kind::NodePort, Kind::LoadBalancer, Kind::ExternalIp] {
        let (ext, int) = ext_and_internal(&d, k);
        assert_eq!(
            ext.flags & (XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL),
            XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL
        );
        assert_eq!(ext.backends, vec![sa("10.244.1.5:8080")], "{k}");
        assert_eq!(
            int.flags & (XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL),
            0,
            "{k}"
        );
        assert_eq!(int.backends.len(), 2, "{k}");
    }
    // ClusterIP: internalTrafficPolicy Cluster, one entry
    assert_eq!(fe(&d, Kind::ClusterIp).len(), 1);
    let s = &d.services["default/web"];
    assert_eq!(s.health_check_node_port, Some(32000));
    assert_eq!(s.local_ready_endpoints, 1);
    assert_eq!(
        d.health_checks().collect::<Vec<_>>(),
        vec![("default/web", 32000, 1)]
    );
}

#[test]
fn external_traffic_policy_local_without_local_endpoint_drops_external_only() {
    let d = etp_local(vec![ep("10.244.2.7", "n2")]);
    let (ext, int) = ext_and_internal(&d, Kind::NodePort);
    // table 0 with LOCAL: the data plane drops (counted), not rejects
    assert_eq!((ext.table_size, ext.n_local), (0, 0));
    assert_eq!(ext.flags & XLB_SVC_F_LOCAL, XLB_SVC_F_LOCAL);
    assert_eq!(int.backends, vec![sa("10.244.2.7:8080")]);
    assert_eq!(d.services["default/web"].local_ready_endpoints, 0);
    // only terminating locally: used (fallback), but not counted ready
    let d = etp_local(vec![
        ep("10.244.2.7", "n2"),
        cond("10.244.1.6", "n1", false, true, true),
    ]);
    let (ext, _) = ext_and_internal(&d, Kind::NodePort);
    assert_eq!(ext.backends, vec![sa("10.244.1.6:8080")]);
    assert_eq!(d.services["default/web"].local_ready_endpoints, 0);
    // no endpoint anywhere: rejects (no LOCAL flag), inside and out
    let d = etp_local(vec![]);
    let (ext, int) = ext_and_internal(&d, Kind::NodePort);
    assert_eq!(ext.flags & XLB_SVC_F_LOCAL, 0);
    assert_eq!((ext.table_size, int.table_size), (0, 0));
}

#[test]
fn internal_traffic_policy_local_without_local_endpoint_drops() {
    let run_itp = |eps| {
        run(
            vec![web(json!({"internalTrafficPolicy": "Local"}))],
            vec![web_slice("web-a", eps)],
        )
    };
    let d = run_itp(vec![ep("10.244.2.7", "n2")]);
    let c = fe(&d, Kind::ClusterIp)[0];
    assert_eq!(
        (c.table_size, c.flags & XLB_SVC_F_LOCAL),
        (0, XLB_SVC_F_LOCAL)
    );
    // the remote endpoint is listed (draining), not chosen
    assert!(backend(&d, WEB, "10.244.2.7:8080").draining);
    let d = run_itp(vec![]);
    assert_eq!(fe(&d, Kind::ClusterIp)[0].flags & XLB_SVC_F_LOCAL, 0);
}

#[test]
fn health_check_node_port_only_for_local_load_balancers() {
    let d = run(
        vec![web(
            json!({"type": "LoadBalancer", "healthCheckNodePort": 32000,
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        )],
        vec![two_eps()],
    );
    assert_eq!(d.services["default/web"].health_check_node_port, None);
    assert_eq!(d.health_checks().count(), 0);
}

#[test]
fn proxy_name_and_headless_labels_leave_the_service_alone() {
    let labelled = |labels: Value| {
        let mut s = web(json!({}));
        s.metadata.labels = serde_json::from_value(labels).unwrap();
        s
    };
    for labels in [
        json!({"service.kubernetes.io/service-proxy-name": "other-proxy"}),
        json!({"service.kubernetes.io/service-proxy-name": ""}),
        json!({"service.kubernetes.io/headless": ""}),
    ] {
        let d = run(vec![labelled(labels.clone())], vec![two_eps()]);
        assert!(d.services.is_empty(), "{labels}");
        assert!(skipped_has(&d, "service.kubernetes.io/"), "{labels}");
    }
    // on an EndpointSlice of the Service
    let mut sl = two_eps();
    sl.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(HEADLESS_LABEL.into(), "".into());
    let d = run(
        vec![web(json!({}))],
        vec![sl.clone(), web_slice("web-b", vec![])],
    );
    assert!(d.services.is_empty());

    // Incrementally: the label comes and goes.
    let mut m = Model::new(super::tests::cfg());
    for n in nodes() {
        m.upsert_node(&n);
    }
    m.upsert_slice(&two_eps());
    assert!(m.upsert_service(&web(json!({}))));
    assert!(m.upsert_service(&labelled(
        json!({"service.kubernetes.io/service-proxy-name": "x"})
    )));
    assert!(m.desired().services.is_empty());
    assert!(m.upsert_service(&web(json!({}))));
    assert_eq!(m.desired().services.len(), 1);
    assert!(m.upsert_slice(&sl));
    assert!(m.desired().services.is_empty());
    assert!(m.upsert_slice(&two_eps()));
    assert_eq!(m.desired().services.len(), 1);
}

fn named(name: &str, created: Option<&str>, spec: Value) -> Service {
    let mut s = web(spec);
    s.metadata.name = Some(name.into());
    if let Some(t) = created {
        s.metadata.creation_timestamp = Some(serde_json::from_value(json!(t)).unwrap());
    }
    s
}

#[test]
fn contested_frontend_goes_to_the_older_service_in_any_order() {
    let old = named("zzz-old", Some("2026-01-01T00:00:00Z"), json!({}));
    let new = named("aaa-new", Some("2026-06-01T00:00:00Z"), json!({}));
    for services in [
        vec![old.clone(), new.clone()],
        vec![new.clone(), old.clone()],
    ] {
        let d = run(services, vec![]);
        assert!(d.port("default/zzz-old:80/TCP").is_some());
        assert!(d.port("default/aaa-new:80/TCP").is_none());
        assert_eq!(
            d.conflicts,
            vec![FrontendConflict {
                frontend: fe(&d, Kind::ClusterIp)[0].key,
                service: "default/aaa-new:80/TCP".into(),
                owner: "default/zzz-old".into(),
            }]
        );
        assert!(skipped_has(&d, "also claimed by Service default/zzz-old"));
    }
    // Without timestamps (manifests): namespace/name decides.
    let d = run(
        vec![named("b", None, json!({})), named("a", None, json!({}))],
        vec![],
    );
    assert!(d.port("default/a:80/TCP").is_some());
    assert_eq!(d.conflicts.len(), 1);

    // Incrementally, in both event orders: the owner goes, the next
    // claimant has it at once; the owner comes back (recreated with the
    // same ClusterIP, newer): the other keeps it.
    for first_old in [true, false] {
        let mut m = Model::new(super::tests::cfg());
        let (a, b) = if first_old {
            (&old, &new)
        } else {
            (&new, &old)
        };
        m.upsert_service(a);
        m.upsert_service(b);
        assert!(m.desired().port("default/zzz-old:80/TCP").is_some());
        assert!(m.remove_service("default", "zzz-old"));
        assert!(m.desired().port("default/aaa-new:80/TCP").is_some());
        assert!(m.desired().conflicts.is_empty());
        let recreated = named("zzz-old", Some("2026-07-01T00:00:00Z"), json!({}));
        m.upsert_service(&recreated);
        assert!(m.desired().port("default/aaa-new:80/TCP").is_some());
        assert!(m.desired().port("default/zzz-old:80/TCP").is_none());
        assert_eq!(m.desired().conflicts.len(), 1);
    }
}

#[test]
fn cluster_ip_is_never_taken_by_external_addresses() {
    let owner = named(
        "owner",
        Some("2026-06-01T00:00:00Z"),
        json!({"clusterIP": "10.96.0.77"}),
    );
    let thief = named(
        "thief",
        Some("2026-01-01T00:00:00Z"), // older, still refused
        json!({"clusterIP": "10.96.0.78", "externalIPs": ["10.96.0.77"]}),
    );
    let mut lb = named(
        "lb",
        None,
        json!({"clusterIP": "10.96.0.79", "type": "LoadBalancer",
               "ports": [{"name": "http", "port": 80, "nodePort": 30079}]}),
    );
    lb.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "10.96.0.77"}]}}))
            .unwrap(),
    );
    for services in [
        vec![owner.clone(), thief.clone(), lb.clone()],
        vec![lb.clone(), thief.clone(), owner.clone()],
    ] {
        let d = run(services, vec![]);
        let at_77: Vec<_> = d
            .frontends()
            .filter(|(_, f)| f.key.addr == Some(Ipv4Addr::new(10, 96, 0, 77).into()))
            .map(|(p, f)| (p.name.as_str(), f.kind))
            .collect();
        assert_eq!(at_77, vec![("default/owner:80/TCP", Kind::ClusterIp)]);
        assert!(skipped_has(&d, "is the ClusterIP of Service default/owner"));
        let lost: Vec<_> = d
            .conflicts
            .iter()
            .map(|c| (c.service.as_str(), c.owner.as_str()))
            .collect();
        assert_eq!(
            lost,
            vec![
                ("default/lb:80/TCP", "default/owner"),
                ("default/thief:80/TCP", "default/owner")
            ]
        );
        // the thieves keep their other frontends
        assert!(d.port("default/thief:80/TCP").is_some());
        assert!(!fe(&d, Kind::NodePort).is_empty());
    }
    // An externalIP on the Service's own ClusterIP, or on a node address
    // (bare metal), is fine.
    let d = run(
        vec![web(json!({"externalIPs": ["10.96.0.10", "198.18.0.11"]}))],
        vec![],
    );
    assert_eq!(fe(&d, Kind::ExternalIp).len(), 1); // 10.96.0.10:80 is the ClusterIP's key
    assert_eq!(
        fe(&d, Kind::ExternalIp)[0].key.addr,
        Some(Ipv4Addr::new(198, 18, 0, 11).into())
    );
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
}

#[test]
fn unroutable_frontend_addresses_refused() {
    for ip in [
        "127.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "169.254.1.1",
    ] {
        let d = run(vec![web(json!({"externalIPs": [ip]}))], vec![]);
        assert!(fe(&d, Kind::ExternalIp).is_empty(), "{ip}");
        assert!(
            skipped_has(&d, &format!("externalIP {ip} refused")),
            "{ip}: {:?}",
            d.skipped
        );
        let mut s = web(json!({"type": "LoadBalancer",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
        s.status = Some(
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": ip}]}})).unwrap(),
        );
        let d = run(vec![s], vec![]);
        assert!(fe(&d, Kind::LoadBalancer).is_empty(), "{ip}");
        assert!(skipped_has(&d, &format!("ingress ip {ip} refused")), "{ip}");
    }
}

#[test]
fn node_ports_outside_the_range_refused() {
    let np = |port: u32| {
        web(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": port}]}))
    };
    let d = run(vec![np(22)], vec![]);
    assert!(fe(&d, Kind::NodePort).is_empty());
    assert!(skipped_has(
        &d,
        "nodePort 22 refused: outside the NodePort range 30000-32767"
    ));
    assert_eq!(fe(&run(vec![np(32767)], vec![]), Kind::NodePort).len(), 1);
    let cfg = ModelConfig {
        nodeport_range: 20000..=20100,
        ..super::tests::cfg()
    };
    let snap = Snapshot {
        services: vec![
            Arc::new(np(20000)),
            Arc::new({
                let mut s = np(30000);
                s.metadata.name = Some("other".into());
                s.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.11".into());
                s
            }),
        ],
        ..Default::default()
    };
    let d = build(&snap, &cfg);
    let keys: Vec<u16> = fe(&d, Kind::NodePort).iter().map(|f| f.key.port).collect();
    assert_eq!(keys, vec![20000]);
}

#[test]
fn host_network_endpoints_placed_by_node_address() {
    let api = |eps: Vec<Value>| {
        run(
            vec![svc(
                json!({"metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}}),
            )],
            vec![serde_json::from_value(json!({
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                "endpoints": eps}))
            .unwrap()],
        )
    };
    // no nodeName: the address of n2 -> n2, over the underlay; of n1 (this node) -> local
    let d = api(vec![
        json!({"addresses": ["198.18.0.12"]}),
        json!({"addresses": ["198.18.0.11"]}),
        json!({"addresses": ["10.244.2.9"]}),
    ]);
    let p = d.port("default/kubernetes:443/TCP").unwrap();
    let by = |a: &str| p.backends.iter().find(|b| b.addr == sa(a)).unwrap();
    let n2 = Some(Ipv4Addr::new(198, 18, 0, 12).into());
    assert_eq!(
        (
            by("198.18.0.12:6443").node,
            by("198.18.0.12:6443").host_network
        ),
        (n2, true)
    );
    assert_eq!(
        (
            by("198.18.0.11:6443").node,
            by("198.18.0.11:6443").host_network
        ),
        (None, true)
    );
    assert_eq!(
        (
            by("10.244.2.9:6443").node,
            by("10.244.2.9:6443").host_network
        ),
        (n2, false)
    );
    // with nodeName: host_network when the address is that node's
    let d = api(vec![
        json!({"addresses": ["198.18.0.12"], "nodeName": "n2"}),
    ]);
    let b = &d.port("default/kubernetes:443/TCP").unwrap().backends[0];
    assert_eq!((b.node, b.host_network), (n2, true));
}

#[test]
fn a_rejected_object_is_listed_once_however_often_it_is_seen() {
    let bad = web(json!({"externalIPs": ["127.0.0.1"]}));
    let snap = Snapshot {
        services: vec![Arc::new(bad)],
        nodes: nodes().into_iter().map(Arc::new).collect(),
        ..Default::default()
    };
    let mut m = Model::new(super::tests::cfg());
    for _ in 0..3 {
        m.apply_snapshot(&snap);
        let mut fresh = snap.clone();
        fresh.services = vec![Arc::new((*snap.services[0]).clone())];
        m.apply_snapshot(&fresh);
    }
    let n = m
        .desired()
        .skipped
        .iter()
        .filter(|(o, r)| o == "Service default/web" && r.contains("127.0.0.1"))
        .count();
    assert_eq!(n, 1, "{:?}", m.desired().skipped);
}
