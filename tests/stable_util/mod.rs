//! Shared by the `svc_stable` tests (tests/sync_stable*.rs): UDP and TCP
//! Services of each eligibility, a clock the test moves, reading entries and regions.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use xlb::model::Desired;
use xlb::sync::{Clock, MapOps, SyncOptions, Syncer};
use xlb_bpf::types::xlb_svc_stable;

use crate::sync_util::{desired, verify};

pub const S: u64 = 1_000_000_000;
/// The window of a UDP port: a configured ct_udp of 30 s.
pub const W: u64 = 30 * S;
/// The window of a TCP port: a configured ct_tcp_established of 90 s.
pub const WT: u64 = 90 * S;

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// UDP, Cluster, NodePort (three IPv4 frontends on one table).
    Udp,
    Tcp,
    Affinity,
    /// UDP, externalTrafficPolicy Local.
    Local,
}

/// Service `u{n}` on 10.96.1.`n`:53 (NodePort 31000+`n`).
pub fn svc(n: u8, kind: Kind) -> Service {
    let proto = if kind == Kind::Tcp { "TCP" } else { "UDP" };
    let mut spec = json!({"clusterIP": format!("10.96.1.{n}"), "type": "NodePort",
        "ports": [{"name": "dns", "port": 53, "protocol": proto, "nodePort": 31000 + n as u32}]});
    match kind {
        Kind::Affinity => spec["sessionAffinity"] = json!("ClientIP"),
        Kind::Local => spec["externalTrafficPolicy"] = json!("Local"),
        _ => {}
    }
    serde_json::from_value(
        json!({"metadata": {"name": format!("u{n}"), "namespace": "default"},
        "spec": spec}),
    )
    .unwrap()
}

/// Endpoints 10.244.1.`h`:5353 (on node n1) of Service `u{n}`.
pub fn eps(n: u8, kind: Kind, hosts: &[u8]) -> EndpointSlice {
    let proto = if kind == Kind::Tcp { "TCP" } else { "UDP" };
    let eps: Vec<_> = hosts
        .iter()
        .map(|h| {
            json!({"addresses": [format!("10.244.1.{h}")], "nodeName": "n1",
                "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("u{n}-a"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": format!("u{n}")}},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": 5353, "protocol": proto}],
        "endpoints": eps}))
    .unwrap()
}

/// Services `(n, kind, hosts)`.
pub fn state(svcs: &[(u8, Kind, &[u8])]) -> Desired {
    desired(
        svcs.iter().map(|(n, k, _)| svc(*n, *k)).collect(),
        svcs.iter().map(|(n, k, h)| eps(*n, *k, h)).collect(),
    )
}

/// A clock the test moves.
pub fn clock(start: u64) -> (Arc<AtomicU64>, SyncOptions) {
    let t = Arc::new(AtomicU64::new(start));
    let c = t.clone();
    let opts = SyncOptions {
        ct_udp: (W / S) as u32,
        ct_tcp_established: (WT / S) as u32,
        clock: Clock::new(move || c.load(Ordering::Relaxed)),
        ..Default::default()
    };
    (t, opts)
}

pub fn stable<M: MapOps>(m: &M, id: u32) -> xlb_svc_stable {
    m.svc_stables()
        .unwrap()
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// `(table_off, table_size)` of every IPv4 frontend of `svc_id` (one region).
pub fn live<M: MapOps>(m: &M, id: u32) -> (u32, u32) {
    let mut r: Vec<(u32, u32)> = m
        .services()
        .unwrap()
        .into_iter()
        .filter(|(_, v)| v.svc_id == id)
        .map(|(_, v)| (v.table_off, v.table_size))
        .collect();
    r.sort();
    r.dedup();
    assert_eq!(r.len(), 1, "frontends of svc_id {id} on one region: {r:?}");
    r[0]
}

pub fn apply<M: MapOps>(s: &mut Syncer<M>, d: &Desired) -> xlb::sync::SyncReport {
    let r = s.apply(d).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let bad = verify(s.maps(), d, s.service_names());
    assert!(bad.is_empty(), "{bad:#?}");
    r
}

pub const NAME: &str = "default/u1:53/UDP";

pub fn real_maps(backends: u32) -> xlb_loader::DataPlane {
    xlb_loader::DataPlane::load(&xlb_loader::LoadOptions {
        backends: Some(backends),
        maglev_slots: Some(1 << 18),
        ..Default::default()
    })
    .expect("loading the data plane")
}
