//! Sync of backend lifetimes against the in-memory fake: graceful
//! termination (a terminating endpoint keeps its id and generation while it
//! is listed), backend ids per Service port (an endpoint leaving one Service
//! retires only that Service's id), and both across an agent restart.

mod sync_util;

use std::net::SocketAddr;

use serde_json::{json, Value};
use sync_util::*;
use xlb::model::Desired;
use xlb::sync::fake::FakeMaps;
use xlb::sync::{SyncOptions, Syncer};
use xlb_bpf::consts::{XLB_BE_F_DRAINING, XLB_BE_F_TERMINATING};

fn syncer(fake: &mut FakeMaps) -> Syncer<&mut FakeMaps> {
    Syncer::adopt(fake, SyncOptions::default()).unwrap()
}

fn apply(s: &mut Syncer<&mut FakeMaps>, d: &Desired) {
    let r = s.apply(d).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let bad = verify(s.maps(), d, s.service_names());
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Endpoints of Service `s{n}` with explicit conditions `(ip, ready, terminating)`.
fn slice_with(n: u8, eps: &[(&str, bool, bool)]) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let eps: Vec<Value> = eps
        .iter()
        .map(|(ip, ready, term)| {
            json!({"addresses": [ip], "nodeName": "n1",
                   "conditions": {"ready": ready, "serving": ready, "terminating": term}})
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

const A: &str = "10.244.1.1";
const B: &str = "10.244.1.2";

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:8080").parse().unwrap()
}

/// (id, flags, generation, active) of a Service port's backend.
fn slot(s: &Syncer<&mut FakeMaps>, port: &str, ip: &str) -> Option<(u32, u8, u32, bool)> {
    let id = s.backend_id(port, addr(ip))?;
    let b = s.maps().backends[id as usize];
    Some((id, b.flags, b.generation, b.is_active()))
}

#[test]
fn terminating_backend_keeps_id_and_generation_until_it_leaves_the_slices() {
    let mut fake = FakeMaps::small();
    let mut s = syncer(&mut fake);
    let p = "default/s1:80/TCP";
    let d1 = desired(
        vec![service(1, false)],
        vec![slice_with(1, &[(A, true, false), (B, true, false)])],
    );
    apply(&mut s, &d1);
    let (id, _, generation, _) = slot(&s, p, B).unwrap();

    // B terminates: out of the table, same id and generation (its flows
    // keep it), flagged terminating and draining.
    let d2 = desired(
        vec![service(1, false)],
        vec![slice_with(1, &[(A, true, false), (B, false, true)])],
    );
    let r = s.apply(&d2).unwrap();
    assert_eq!(r.backends_removed, 0);
    apply(&mut s, &d2);
    let (id2, flags, gen2, active) = slot(&s, p, B).unwrap();
    assert_eq!((id2, gen2, active), (id, generation, true));
    let want = (XLB_BE_F_TERMINATING | XLB_BE_F_DRAINING) as u8;
    assert_eq!(flags & want, want);
    let in_table = s
        .maps()
        .services
        .values()
        .flat_map(|(_, v)| {
            s.maps().maglev[v.table_off as usize..(v.table_off + v.table_size) as usize].to_vec()
        })
        .any(|x| x == id);
    assert!(!in_table, "a draining backend is in a table");

    // A restart keeps it as it is (no write, same id and generation).
    drop(s);
    let mut s = syncer(&mut fake);
    let r = s.apply(&d2).unwrap();
    assert_eq!(r.writes, 0, "{r:?}");
    assert_eq!(slot(&s, p, B).map(|x| (x.0, x.2)), Some((id, generation)));

    // Gone from the slice: retired, generation bumped (flows re-chosen).
    let d3 = desired(
        vec![service(1, false)],
        vec![slice_with(1, &[(A, true, false)])],
    );
    let r = s.apply(&d3).unwrap();
    assert_eq!(r.backends_removed, 1);
    apply(&mut s, &d3);
    assert_eq!(slot(&s, p, B), None);
    let b = s.maps().backends[id as usize];
    assert!(!b.is_active());
    assert_eq!(b.generation, generation + 1);
}

#[test]
fn endpoint_leaving_one_service_retires_only_that_services_id() {
    let mut fake = FakeMaps::small();
    let mut s = syncer(&mut fake);
    let both = |a: &[(&str, bool, bool)]| {
        desired(
            vec![service(1, false), service(2, false)],
            vec![
                slice_with(1, a),
                slice_with(2, &[(A, true, false), (B, true, false)]),
            ],
        )
    };
    let d1 = both(&[(A, true, false), (B, true, false)]);
    apply(&mut s, &d1);
    let (p1, p2) = ("default/s1:80/TCP", "default/s2:80/TCP");
    let (id1, _, gen1, _) = slot(&s, p1, A).unwrap();
    let (id2, _, gen2, _) = slot(&s, p2, A).unwrap();
    assert_ne!(id1, id2, "one id per Service port");

    // A leaves s1 only.
    let d2 = both(&[(B, true, false)]);
    apply(&mut s, &d2);
    let b1 = s.maps().backends[id1 as usize];
    assert!(!b1.is_active());
    assert_eq!(b1.generation, gen1 + 1);
    assert_eq!(
        slot(&s, p2, A),
        Some((id2, s.maps().backends[id2 as usize].flags, gen2, true))
    );
}

#[test]
fn adopting_maps_of_a_shared_backend_layout_rewrites_cleanly() {
    // Maps where two Services' tables name one id (what an agent keyed by
    // address alone wrote): the first apply gives each port its own.
    let d = desired(
        vec![service(1, false), service(2, false)],
        vec![
            slice_with(1, &[(A, true, false)]),
            slice_with(2, &[(A, true, false)]),
        ],
    );
    let mut fake = FakeMaps::small();
    let (p1, p2) = ("default/s1:80/TCP", "default/s2:80/TCP");
    let (id1, id2) = {
        let mut s = syncer(&mut fake);
        apply(&mut s, &d);
        (
            s.backend_id(p1, addr(A)).unwrap(),
            s.backend_id(p2, addr(A)).unwrap(),
        )
    };
    // Point s2's table at s1's backend id.
    for x in fake.maglev.iter_mut() {
        if *x == id2 {
            *x = id1;
        }
    }
    let mut s = syncer(&mut fake);
    apply(&mut s, &d);
    assert!(s.maps().violations().is_empty());
    let (n1, n2) = (s.backend_id(p1, addr(A)), s.backend_id(p2, addr(A)));
    assert!(n1.is_some() && n2.is_some() && n1 != n2, "{n1:?} {n2:?}");
}
