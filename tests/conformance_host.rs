//! The behaviours below the conformance table (docs/conformance.md): the
//! `kubernetes` Service (endpoint: the API server stand-in in node2's own
//! namespace, no nodeName), a Service backed by a hostNetwork pod, the node
//! health endpoint on :10256, and `xlb lab check` with its host-network
//! probes. The lab's deploy/examples carry both Services; `xlb lab up` starts
//! their servers in the node namespaces.

mod conformance_support;
mod e2e_support;

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, Weak};

use conformance_support::*;
use e2e_support::*;
use xlb_lab::{self as lab, daemons};

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::with_xlb("xch"))
}

fn kubernetes() -> SocketAddrV4 {
    vip([10, 96, 0, 1], 443)
}

#[test]
fn kubernetes_service_from_pods_on_both_nodes() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let api = daemons::host_backend_name(2);
    // node2 is the API server's own node.
    for c in [Client::Pod(1, 1), Client::Pod(2, 1)] {
        serves(&g, c, kubernetes(), false, &[api.as_str()]);
    }
}

#[test]
fn kubernetes_service_from_hosts_on_both_nodes() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let api = daemons::host_backend_name(2);
    for c in [Client::Host(1), Client::Host(2)] {
        serves(&g, c, kubernetes(), false, &[api.as_str()]);
    }
}

/// The hostNetwork endpoint on node1 (nodeName set), from a pod on its node
/// and from one on the other node (over the underlay, not the pod tunnel).
#[test]
fn hostnetwork_backend_service_from_pods_on_both_nodes() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let name = daemons::host_backend_name(1);
    for c in [Client::Pod(1, 2), Client::Pod(2, 2)] {
        serves(&g, c, vip([10, 96, 0, 9], 80), false, &[name.as_str()]);
    }
}

/// kube-proxy's node health endpoint, probed by cloud load balancers.
#[test]
fn node_health_endpoint_on_10256_answers_200() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    for n in [1, 2] {
        for path in ["/healthz", "/livez"] {
            http_status(&g, Client::External, node(n, 10256), path, 200);
        }
    }
}

/// The lab's servers in node namespaces answer directly (no Service): what
/// the tests above go through is there.
#[test]
fn host_network_servers_of_the_lab_answer_directly() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    for (n, port) in daemons::host_backends(&g.lab) {
        let to = SocketAddrV4::new(lab::node_addr(n), port);
        let want = daemons::host_backend_name(n);
        serves(&g, Client::Pod(1, 1), to, false, &[want.as_str()]);
    }
}

#[test]
fn lab_check_with_host_network_probes_passes() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let out = std::process::Command::new(XLB)
        .args(["lab", "check", "--prefix", g.prefix()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in [
        "clusterip-from-node",
        "nodeport-from-node",
        "kubernetes-from-pod-node1",
        "kubernetes-from-pod-node2",
        "kubernetes-from-node1",
        "kubernetes-from-node2",
        "hostnet-from-pod",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(p) && l.contains(" ok ")),
            "{p}: {text}"
        );
    }
}
