//! Conformance rows 17-19 (docs/conformance.md): sessionAffinity ClientIP
//! through ClusterIP and NodePort, its timeout, and switching it on a live
//! Service. From a pod (the NodePort of its own node) and from the external
//! client (both nodes). One lab for the file; every test has Services of its
//! own (10.96.4.x, NodePorts 314xx).

mod conformance_support;
mod e2e_support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conformance_support::*;
use e2e_support::*;
use xlb_lab::probe;

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

fn lab() -> Arc<LabGuard> {
    shared(&LAB, || LabGuard::with_xlb("xca"))
}

const ALL: [(u8, u8); 4] = [(1, 1), (1, 2), (2, 1), (2, 2)];
const ALL_NAMES: [&str; 4] = ["n1p1", "n1p2", "n2p1", "n2p2"];

fn cip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 4, last)
}

fn svc(name: &str, ip: Ipv4Addr, node_port: u16, affinity: Option<u32>) -> ServiceDef {
    let s = ServiceDef::node_port(name, ip).port("http", "TCP", 80, 8080, Some(node_port));
    match affinity {
        Some(t) => s.affinity(t),
        None => s,
    }
}

/// The frontends of a Service as (client, address) pairs the rows use.
fn frontends(ip: Ipv4Addr, node_port: u16) -> Vec<(Client, SocketAddrV4)> {
    vec![
        (Client::Pod(2, 2), SocketAddrV4::new(ip, 80)),
        (Client::Pod(1, 1), node(1, node_port)),
        (Client::External, node(1, node_port)),
        (Client::External, node(2, node_port)),
    ]
}

/// Backends that answered `count` quick connections.
fn distinct(g: &LabGuard, c: Client, to: SocketAddrV4, count: usize) -> BTreeSet<String> {
    answers(g, c, to, false, count)
        .unwrap_or_else(|e| panic!("{e}\n{}", g.logs()))
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn row17_client_ip_affinity_through_clusterip_and_nodeport() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let (ip, np) = (cip(17), 31417);
    apply(&g, &svc("r17", ip, np, Some(10800)), &[slice("r17", &ALL)]);
    for (c, to) in frontends(ip, np) {
        // Served at all (waits for the agents), then every connection sticks.
        eventually(&format!("{c:?} -> {to} served"), SETTLE, || {
            answers(&g, c, to, false, 1).ok()
        });
        let seen = distinct(&g, c, to, 40);
        assert_eq!(seen.len(), 1, "{c:?} -> {to}: {seen:?}");
    }
}

#[test]
fn row18_client_ip_affinity_ends_after_timeout_seconds() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let (ip, np) = (cip(18), 31418);
    let timeout = 1;
    apply(
        &g,
        &svc("r18", ip, np, Some(timeout)),
        &[slice("r18", &ALL)],
    );
    for (c, to) in frontends(ip, np) {
        eventually(&format!("{c:?} -> {to} served"), SETTLE, || {
            answers(&g, c, to, false, 1).ok()
        });
        // Within the timeout: one backend.
        let seen = distinct(&g, c, to, 20);
        assert_eq!(seen.len(), 1, "{c:?} -> {to}: {seen:?}");
        // One connection after each quiet period longer than the timeout: a
        // fresh choice each time, so over 12 of them (4 backends) more than
        // one backend answers unless the affinity never expires.
        let mut after = BTreeSet::new();
        for _ in 0..12 {
            std::thread::sleep(Duration::from_secs(u64::from(timeout) + 1));
            let r = run(&g, c, move || probe::tcp(None, to, T)).unwrap();
            after.insert(r.name);
            if after.len() > 1 {
                break;
            }
        }
        assert!(
            after.len() > 1,
            "{c:?} -> {to}: affinity never expired: {after:?}"
        );
    }
}

#[test]
fn row19_affinity_switched_none_client_ip_none_on_a_live_service() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = lab();
    let (ip, np) = (cip(19), 31419);
    let pairs = frontends(ip, np);
    apply(&g, &svc("r19", ip, np, None), &[slice("r19", &ALL)]);
    for &(c, to) in &pairs {
        serves(&g, c, to, false, &ALL_NAMES);
    }
    apply(&g, &svc("r19", ip, np, Some(10800)), &[slice("r19", &ALL)]);
    for &(c, to) in &pairs {
        eventually(&format!("{c:?} -> {to} sticks"), SETTLE, || {
            (distinct(&g, c, to, 30).len() == 1).then_some(())
        });
        let seen = distinct(&g, c, to, 30);
        assert_eq!(seen.len(), 1, "{c:?} -> {to}: {seen:?}");
    }
    apply(&g, &svc("r19", ip, np, None), &[slice("r19", &ALL)]);
    for &(c, to) in &pairs {
        serves(&g, c, to, false, &ALL_NAMES);
    }
}
