//! Conformance rows 12, 13, 20-22, 26 and 29 (docs/conformance.md): type and
//! protocol changes, the labels kube-proxy honours, refusals without
//! endpoints, named targetPorts per endpoint. One lab for the file; every
//! test has Services of its own (10.96.2.x, NodePorts 312xx).

mod conformance_support;
mod e2e_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};

use conformance_support::*;
use e2e_support::*;
use xlb_lab as lab;

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

/// The shared lab; every lab made (a new one when the last test let the
/// previous one go) gets the extra listeners.
fn lab() -> Arc<LabGuard> {
    shared(&LAB, || {
        let g = LabGuard::with_xlb("xct");
        extra_backend(&g, 2, 1, 9090);
        g
    })
}

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 2, last)
}

#[test]
fn row12_clusterip_to_nodeport_with_tcp_and_udp_on_one_port_number() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let c = Client::Pod(1, 2);
    let ip = cip(12);
    let pods = [(1, 1), (2, 1)];
    let want = ["n1p1", "n2p1"];
    apply(
        &g,
        &ServiceDef::cluster_ip("r12", ip).port("http", "TCP", 80, 8080, None),
        &[slice("r12", &pods)],
    );
    serves(&g, c, SocketAddrV4::new(ip, 80), false, &want);
    fails(&g, c, node(1, 31212), false);
    let np = ServiceDef::node_port("r12", ip)
        .port("http", "TCP", 80, 8080, Some(31212))
        .port("udp", "UDP", 80, 8080, Some(31213));
    apply(&g, &np, &[slice("r12", &pods)]);
    // The pod and the external client through both nodes' NodePorts.
    for (c, n) in [(c, 1), (c, 2), (Client::External, 1), (Client::External, 2)] {
        serves(&g, c, node(n, 31212), false, &want);
        serves(&g, c, node(n, 31213), true, &want);
        // Each protocol only on its own NodePort.
        fails(&g, c, node(n, 31213), false);
        fails(&g, c, node(n, 31212), true);
    }
    serves(&g, c, SocketAddrV4::new(ip, 80), true, &want);
    serves(&g, c, SocketAddrV4::new(ip, 80), false, &want);
}

#[test]
fn row13_externalname_to_clusterip_and_to_nodeport() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let c = Client::Pod(2, 2);
    let pods = [(1, 2), (2, 1)];
    let want = ["n1p2", "n2p1"];
    for (name, ip, node_port) in [("r13c", cip(13), None), ("r13n", cip(113), Some(31313))] {
        let base = ServiceDef::cluster_ip(name, ip).port("http", "TCP", 80, 8080, node_port);
        apply(
            &g,
            &base.clone().external_name("example.com"),
            &[slice(name, &pods)],
        );
        // ExternalName is DNS only: nothing answers on the address it will get.
        fails(&g, c, SocketAddrV4::new(ip, 80), false);
        let svc = if node_port.is_some() {
            ServiceDef {
                type_: "NodePort".into(),
                ..base
            }
        } else {
            base
        };
        apply(&g, &svc, &[slice(name, &pods)]);
        serves(&g, c, SocketAddrV4::new(ip, 80), false, &want);
        if let Some(p) = node_port {
            // Both nodes' NodePorts, from the pod and from outside.
            for (c, n) in [(c, 1), (c, 2), (Client::External, 1), (Client::External, 2)] {
                serves(&g, c, node(n, p), false, &want);
            }
        }
    }
}

const PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
const HEADLESS: &str = "service.kubernetes.io/headless";

/// Row 20: a Service labelled for another proxy is left alone; removing the
/// label serves it, adding it back stops it.
fn row20(c: Client, name: &str, ip: Ipv4Addr) {
    let g = lab();
    let base = ServiceDef::cluster_ip(name, ip).port("http", "TCP", 80, 8080, None);
    let to = SocketAddrV4::new(ip, 80);
    let pods = [(1, 1), (2, 2)];
    apply(
        &g,
        &base.clone().label(PROXY_NAME, "other-proxy"),
        &[slice(name, &pods)],
    );
    fails(&g, c, to, false);
    apply(&g, &base, &[slice(name, &pods)]);
    serves(&g, c, to, false, &["n1p1", "n2p2"]);
    apply(
        &g,
        &base.clone().label(PROXY_NAME, "other-proxy"),
        &[slice(name, &pods)],
    );
    fails(&g, c, to, false);
}

#[test]
fn row20_service_proxy_name_label_is_not_served_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row20(Client::Pod(1, 2), "r20p", cip(20));
}

#[test]
fn row20_service_proxy_name_label_is_not_served_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row20(Client::Host(1), "r20h", cip(120));
}

/// Row 21: `headless` on the Service, then on its EndpointSlice.
fn row21(c: Client, name: &str, ip: Ipv4Addr) {
    let g = lab();
    let base = ServiceDef::cluster_ip(name, ip).port("http", "TCP", 80, 8080, None);
    let to = SocketAddrV4::new(ip, 80);
    let pods = [(1, 1), (2, 2)];
    let want = ["n1p1", "n2p2"];
    apply(&g, &base.clone().label(HEADLESS, ""), &[slice(name, &pods)]);
    fails(&g, c, to, false);
    apply(&g, &base, &[slice(name, &pods)]);
    serves(&g, c, to, false, &want);
    apply(&g, &base, &[slice(name, &pods).label(HEADLESS, "")]);
    fails(&g, c, to, false);
    apply(&g, &base, &[slice(name, &pods)]);
    serves(&g, c, to, false, &want);
}

#[test]
fn row21_headless_label_on_service_or_slice_is_not_served_from_pod() {
    if !xlb_testkit::privileged() {
        return;
    }
    row21(Client::Pod(2, 2), "r21p", cip(21));
}

#[test]
fn row21_headless_label_on_service_or_slice_is_not_served_from_host() {
    if !xlb_testkit::privileged() {
        return;
    }
    row21(Client::Host(2), "r21h", cip(121));
}

#[test]
fn row22_service_without_endpoints_is_rejected_also_after_eviction() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(22);
    let svc = ServiceDef::node_port("r22", ip)
        .port("http", "TCP", 80, 8080, Some(31222))
        .port("udp", "UDP", 80, 8080, Some(31223));
    let c = Client::Pod(1, 1);
    apply(&g, &svc, &[slice("r22", &[])]);
    for udp in [false, true] {
        refused(&g, c, SocketAddrV4::new(ip, 80), udp);
    }
    apply(&g, &svc, &[slice("r22", &[(2, 1)])]);
    serves(&g, c, SocketAddrV4::new(ip, 80), false, &["n2p1"]);
    // The pod is evicted: its endpoint goes away.
    apply(&g, &svc, &[slice("r22", &[])]);
    for udp in [false, true] {
        refused(&g, c, SocketAddrV4::new(ip, 80), udp);
    }
    refused(&g, c, node(2, 31222), false);
    refused(&g, c, node(1, 31223), true);
}

/// Row 26: TCP and UDP on one port; removing one protocol stops only it.
fn row26(name: &str, ip: Ipv4Addr, lb: Option<Ipv4Addr>) {
    let g = lab();
    let c = Client::Pod(2, 2);
    let mk = |udp: bool| {
        let mut s = ServiceDef::new(
            name,
            if lb.is_some() {
                "LoadBalancer"
            } else {
                "ClusterIP"
            },
            Some(ip),
        )
        .port("http", "TCP", 53, 8080, lb.map(|_| 31226));
        if udp {
            s = s.port("udp", "UDP", 53, 8080, lb.map(|_| 31227));
        }
        if let Some(a) = lb {
            s = s.lb_ingress(a);
        }
        s
    };
    let pods = [(1, 1), (2, 1)];
    let want = ["n1p1", "n2p1"];
    let targets: Vec<SocketAddrV4> = [Some(ip), lb]
        .into_iter()
        .flatten()
        .map(|a| SocketAddrV4::new(a, 53))
        .collect();
    apply(&g, &mk(true), &[slice(name, &pods)]);
    for &to in &targets {
        serves(&g, c, to, false, &want);
        serves(&g, c, to, true, &want);
    }
    apply(&g, &mk(false), &[slice(name, &pods)]);
    for &to in &targets {
        fails(&g, c, to, true);
        serves(&g, c, to, false, &want);
    }
}

#[test]
fn row26_tcp_and_udp_on_one_clusterip_port_removing_one_keeps_the_other() {
    if !xlb_testkit::privileged() {
        return;
    }
    row26("r26c", cip(26), None);
}

#[test]
fn row26_tcp_and_udp_on_one_loadbalancer_port_removing_one_keeps_the_other() {
    if !xlb_testkit::privileged() {
        return;
    }
    row26("r26l", cip(126), Some(Ipv4Addr::new(10, 96, 202, 26)));
}

#[test]
fn row29_named_target_port_resolving_to_different_ports_per_endpoint() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let ip = cip(29);
    let svc = ServiceDef::cluster_ip("r29", ip).port("web", "TCP", 80, "web", None);
    // The EndpointSlice controller makes one slice per resolved port number.
    let a = SliceDef::new("r29", "a")
        .port("web", "TCP", lab::BACKEND_PORT)
        .pods(&[(1, 1)]);
    let b = SliceDef::new("r29", "b")
        .port("web", "TCP", 9090)
        .pods(&[(2, 1)]);
    apply(&g, &svc, &[a, b]);
    for c in [Client::Pod(1, 2), Client::Pod(2, 2)] {
        serves(
            &g,
            c,
            SocketAddrV4::new(ip, 80),
            false,
            &["n1p1", "n2p1-9090"],
        );
    }
}
