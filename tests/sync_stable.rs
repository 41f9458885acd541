//! The stable tables of stateless UDP flows (`svc_stable`, docs/ctl.md
//! "Stateless UDP flows"), through the sync: against the in-memory fake
//! (which also fails any maglev write over a region `svc_stable` names and
//! any reuse of a backend id such a region names) and against real BPF maps
//! (root). The window's clock is the test's: nothing waits.

mod sync_util;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use sync_util::*;
use xlb::model::Desired;
use xlb::sync::fake::{FakeMaps, Op};
use xlb::sync::{Clock, MapOps, SyncOptions, Syncer};
use xlb_bpf::types::xlb_svc_stable;

const S: u64 = 1_000_000_000;
/// The window: a configured ct_udp of 30 s.
const W: u64 = 30 * S;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// UDP, Cluster, NodePort (three IPv4 frontends on one table).
    Udp,
    Tcp,
    Affinity,
    /// UDP, externalTrafficPolicy Local.
    Local,
}

/// Service `u{n}` on 10.96.1.`n`:53 (NodePort 31000+`n`).
fn svc(n: u8, kind: Kind) -> Service {
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
fn eps(n: u8, kind: Kind, hosts: &[u8]) -> EndpointSlice {
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
fn state(svcs: &[(u8, Kind, &[u8])]) -> Desired {
    desired(
        svcs.iter().map(|(n, k, _)| svc(*n, *k)).collect(),
        svcs.iter().map(|(n, k, h)| eps(*n, *k, h)).collect(),
    )
}

/// A clock the test moves.
fn clock(start: u64) -> (Arc<AtomicU64>, SyncOptions) {
    let t = Arc::new(AtomicU64::new(start));
    let c = t.clone();
    let opts = SyncOptions {
        ct_udp: (W / S) as u32,
        clock: Clock::new(move || c.load(Ordering::Relaxed)),
        ..Default::default()
    };
    (t, opts)
}

fn stable<M: MapOps>(m: &M, id: u32) -> xlb_svc_stable {
    m.svc_stables()
        .unwrap()
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// `(table_off, table_size)` of every IPv4 frontend of `svc_id` (one region).
fn live<M: MapOps>(m: &M, id: u32) -> (u32, u32) {
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

fn apply<M: MapOps>(s: &mut Syncer<M>, d: &Desired) -> xlb::sync::SyncReport {
    let r = s.apply(d).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let bad = verify(s.maps(), d, s.service_names());
    assert!(bad.is_empty(), "{bad:#?}");
    r
}

const NAME: &str = "default/u1:53/UDP";

/// First programming, a change, a second change inside the window, the
/// window's end; another Service sized like the held region asks for room
/// while it is held (it must not get it).
fn window<M: MapOps>(m: &mut M) {
    let t0 = 1000 * S;
    let (t, opts) = clock(t0);
    let mut s = Syncer::adopt(&mut *m, opts).unwrap();
    apply(&mut s, &state(&[(1, Kind::Udp, &[1, 2])]));
    let id = s.svc_id(NAME).unwrap();
    let first = live(s.maps(), id);
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, 0)
    );
    assert_eq!(s.next_window_end(), None);
    let first_ids = s.maps().read_maglev(first.0, first.1).unwrap();

    // A backend added: the window opens on the table in force until now.
    t.store(t0 + 5 * S, Ordering::Relaxed);
    apply(&mut s, &state(&[(1, Kind::Udp, &[1, 2, 3])]));
    let second = live(s.maps(), id);
    assert_ne!(second, first);
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, t0 + 5 * S + W)
    );
    assert_eq!(s.retained_slots(), u64::from(first.1));
    assert_eq!(s.next_window_end(), Some(t0 + 5 * S + W + S + 1));

    // Another Service of the first table's size: the held region is not
    // free (best fit would hand out exactly that hole).
    t.store(t0 + 6 * S, Ordering::Relaxed);
    apply(
        &mut s,
        &state(&[(1, Kind::Udp, &[1, 2, 3]), (2, Kind::Udp, &[7, 8])]),
    );
    let other = live(s.maps(), s.svc_id("default/u2:53/UDP").unwrap());
    assert_eq!(other.1, first.1);
    assert_ne!(other.0, first.0, "the held stable region was handed out");
    assert_eq!(s.maps().read_maglev(first.0, first.1).unwrap(), first_ids);

    // A second change inside the window keeps the first stable table; the
    // intermediate one is freed.
    t.store(t0 + 10 * S, Ordering::Relaxed);
    let r = apply(
        &mut s,
        &state(&[(1, Kind::Udp, &[1, 2, 3, 4]), (2, Kind::Udp, &[7, 8])]),
    );
    let third = live(s.maps(), id);
    assert!(third != second && third != first);
    assert_eq!(r.regions_freed, 1, "{r:?}");
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, t0 + 10 * S + W)
    );
    assert_eq!(s.maps().read_maglev(first.0, first.1).unwrap(), first_ids);

    // Within the margin after the window's end: nothing yet.
    t.store(t0 + 10 * S + W + S / 2, Ordering::Relaxed);
    let r = s.tick();
    assert_eq!(r.writes, 0, "{r:?}");
    assert_eq!(stable(s.maps(), id).window_end, t0 + 10 * S + W);

    // Past it: the entry names the live table, then the region is freed.
    t.store(t0 + 10 * S + W + 2 * S, Ordering::Relaxed);
    let r = s.tick();
    assert_eq!((r.writes, r.regions_freed), (1, 1), "{r:?}");
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (third.0, third.1, 0)
    );
    assert_eq!(s.retained_slots(), 0);
    assert_eq!(s.next_window_end(), None);
    // A table change now (window closed) holds the live table again.
    apply(
        &mut s,
        &state(&[(1, Kind::Udp, &[1, 2]), (2, Kind::Udp, &[7, 8])]),
    );
    let v = stable(s.maps(), id);
    assert_eq!((v.table_off, v.table_size), third);
    assert!(v.window_end > t0 + 10 * S + W);

    // Delete: the entry zeroed, what it held freed.
    let r = apply(&mut s, &state(&[(2, Kind::Udp, &[7, 8])]));
    assert!(r.regions_freed >= 2, "{r:?}");
    assert_eq!(stable(s.maps(), id).table_size, 0);
    assert_eq!(stable(s.maps(), id).window_end, 0);
    assert_eq!(s.retained_slots(), 0);
    assert_eq!(s.next_window_end(), None);
}

#[test]
fn window_opens_keeps_first_table_and_ends_fake() {
    let mut fake = FakeMaps::small();
    window(&mut fake);
    // First programming: the entry (window closed) before the first
    // services entry of the port.
    let stable_at = fake
        .ops
        .iter()
        .position(|o| matches!(o, Op::PutSvcStable(_, v) if v.table_size > 0))
        .unwrap();
    let svc_at = fake
        .ops
        .iter()
        .position(|o| matches!(o, Op::PutService(..)))
        .unwrap();
    assert!(stable_at < svc_at);
    // The change: the window opens before the frontends switch.
    let opened = fake
        .ops
        .iter()
        .position(|o| matches!(o, Op::PutSvcStable(_, v) if v.window_end != 0))
        .unwrap();
    let (first_off, switch) = match &fake.ops[svc_at] {
        Op::PutService(_, v) => (v.table_off, v.svc_id),
        _ => unreachable!(),
    };
    let switched = fake
        .ops
        .iter()
        .position(
            |o| matches!(o, Op::PutService(_, v) if v.svc_id == switch && v.table_off != first_off),
        )
        .unwrap();
    assert!(opened < switched);
}

#[test]
fn window_opens_keeps_first_table_and_ends_maps() {
    if !xlb_testkit::privileged() {
        return;
    }
    let mut dp = real_maps(4096);
    window(&mut dp.maps);
}

fn real_maps(backends: u32) -> xlb_loader::DataPlane {
    xlb_loader::DataPlane::load(&xlb_loader::LoadOptions {
        backends: Some(backends),
        maglev_slots: Some(1 << 18),
        ..Default::default()
    })
    .expect("loading the data plane")
}

/// TCP, affinity, Local: all zero, through changes; a Service turning
/// ineligible is zeroed before its frontends switch.
fn ineligible<M: MapOps>(m: &mut M) {
    let (t, opts) = clock(50 * S);
    let mut s = Syncer::adopt(&mut *m, opts).unwrap();
    let kinds = [(1, Kind::Tcp), (2, Kind::Affinity), (3, Kind::Local)];
    for hosts in [&[1u8, 2][..], &[1, 2, 3][..]] {
        let d: Vec<(u8, Kind, &[u8])> = kinds.iter().map(|(n, k)| (*n, *k, hosts)).collect();
        apply(&mut s, &state(&d));
        t.fetch_add(S, Ordering::Relaxed);
        assert!(s.maps().svc_stables().unwrap().is_empty());
        assert_eq!(s.next_window_end(), None);
    }
    // Eligible, then a change opens a window, then affinity: zero.
    let u4 = |k: Kind, h: &'static [u8]| state(&[(4, k, h)]);
    apply(&mut s, &u4(Kind::Udp, &[1, 2]));
    apply(&mut s, &u4(Kind::Udp, &[1, 2, 3]));
    let id = s.svc_id("default/u4:53/UDP").unwrap();
    assert_ne!(stable(s.maps(), id).window_end, 0);
    assert!(s.retained_slots() > 0);
    apply(&mut s, &u4(Kind::Affinity, &[1, 2, 4]));
    assert_eq!(stable(s.maps(), id).table_size, 0);
    assert_eq!(s.retained_slots(), 0);
    assert_eq!(s.next_window_end(), None);
    // Eligible again: first programming (every flow is in ct).
    apply(&mut s, &u4(Kind::Udp, &[1, 2, 4]));
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (live(s.maps(), id).0, live(s.maps(), id).1, 0)
    );
}

#[test]
fn ineligible_services_stay_zero_fake() {
    let mut fake = FakeMaps::small();
    ineligible(&mut fake);
    // Turning ineligible: zeroed before the switch to the new table.
    let zero = fake
        .ops
        .iter()
        .rposition(|o| matches!(o, Op::PutSvcStable(_, v) if v.table_size == 0))
        .unwrap();
    let aff = fake
        .ops
        .iter()
        .position(|o| matches!(o, Op::PutService(_, v) if v.flags & xlb_bpf::consts::XLB_SVC_F_AFFINITY != 0 && v.svc_id == 4))
        .unwrap();
    assert!(zero < aff);
}

#[test]
fn ineligible_services_stay_zero_maps() {
    if !xlb_testkit::privileged() {
        return;
    }
    let mut dp = real_maps(4096);
    ineligible(&mut dp.maps);
}

/// A restarted agent adopts an open window: writes nothing, keeps the held
/// region out of the allocator, and ends the window on time.
fn restart<M: MapOps>(m: &mut M) {
    let t0 = 7000 * S;
    let (t, opts) = clock(t0);
    let d1 = state(&[(1, Kind::Udp, &[1, 2])]);
    let d2 = state(&[(1, Kind::Udp, &[1, 2, 3])]);
    let (id, first, second) = {
        let mut s = Syncer::adopt(&mut *m, opts.clone()).unwrap();
        apply(&mut s, &d1);
        let id = s.svc_id(NAME).unwrap();
        let first = live(s.maps(), id);
        apply(&mut s, &d2);
        (id, first, live(s.maps(), id))
    };
    let held = m.read_maglev(first.0, first.1).unwrap();
    t.store(t0 + 3 * S, Ordering::Relaxed);
    let mut s = Syncer::adopt(&mut *m, opts).unwrap();
    let r = apply(&mut s, &d2);
    assert_eq!(r.writes, 0, "{r:?}");
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, t0 + W)
    );
    assert_eq!(s.retained_slots(), u64::from(first.1));
    assert_eq!(s.next_window_end(), Some(t0 + W + S + 1));
    // Room for a table of the held region's size: not the held region.
    apply(
        &mut s,
        &state(&[(1, Kind::Udp, &[1, 2, 3]), (2, Kind::Udp, &[7, 8])]),
    );
    let other = live(s.maps(), s.svc_id("default/u2:53/UDP").unwrap());
    assert_eq!(other.1, first.1);
    assert_ne!(other.0, first.0, "the adopted stable region was handed out");
    assert_eq!(s.maps().read_maglev(first.0, first.1).unwrap(), held);
    t.store(t0 + W + 2 * S, Ordering::Relaxed);
    let r = s.tick();
    assert_eq!((r.writes, r.regions_freed), (1, 1), "{r:?}");
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (second.0, second.1, 0)
    );
}

#[test]
fn restart_keeps_an_open_window_fake() {
    let mut fake = FakeMaps::small();
    restart(&mut fake);
}

#[test]
fn restart_keeps_an_open_window_maps() {
    if !xlb_testkit::privileged() {
        return;
    }
    let mut dp = real_maps(4096);
    restart(&mut dp.maps);
}

/// Backend ids a held region names are not given to other endpoints until
/// its window ends: with every id in use, the id of a removed backend stays
/// out of reach.
fn quarantine<M: MapOps>(m: &mut M) {
    let cap = m.backend_capacity();
    let t0 = 100 * S;
    let (t, opts) = clock(t0);
    let mut s = Syncer::adopt(&mut *m, opts).unwrap();
    // u1 takes ids 1..=3, u2 every other id.
    let rest: Vec<u8> = (10..10 + (cap - 4) as u8).collect();
    apply(
        &mut s,
        &state(&[(1, Kind::Udp, &[1, 2, 3]), (2, Kind::Udp, &rest)]),
    );
    let gone = s
        .backend_id(NAME, "10.244.1.3:5353".parse().unwrap())
        .unwrap();
    // Endpoint 3 leaves u1: its id retired, but the window names it.
    t.store(t0 + S, Ordering::Relaxed);
    apply(
        &mut s,
        &state(&[(1, Kind::Udp, &[1, 2]), (2, Kind::Udp, &rest)]),
    );
    assert_ne!(stable(s.maps(), s.svc_id(NAME).unwrap()).window_end, 0);
    // u3 needs an id: the only free one is quarantined.
    let d3 = state(&[
        (1, Kind::Udp, &[1, 2]),
        (2, Kind::Udp, &rest),
        (3, Kind::Udp, &[200]),
    ]);
    let r = s.apply(&d3).unwrap();
    assert!(
        r.failed
            .iter()
            .any(|(w, e)| w.contains("u3") && e.contains("full")),
        "{r:?}"
    );
    // The window over: the id is free, u3 gets it.
    t.store(t0 + S + W + 2 * S, Ordering::Relaxed);
    apply(&mut s, &d3);
    assert_eq!(
        s.backend_id("default/u3:53/UDP", "10.244.1.200:5353".parse().unwrap()),
        Some(gone)
    );
}

#[test]
fn backend_ids_quarantined_while_held_fake() {
    let mut fake = FakeMaps::new(1024, 16, 1 << 16);
    quarantine(&mut fake);
}

#[test]
fn backend_ids_quarantined_while_held_maps() {
    if !xlb_testkit::privileged() {
        return;
    }
    let mut dp = real_maps(16);
    quarantine(&mut dp.maps);
}

/// Pins of an older xlb without `svc_stable`: no bookkeeping, no error.
#[test]
fn older_pins_without_svc_stable() {
    let mut fake = FakeMaps::small();
    fake.has_svc_stable = false;
    let (t, opts) = clock(S);
    let mut s = Syncer::adopt(&mut fake, opts).unwrap();
    apply(&mut s, &state(&[(1, Kind::Udp, &[1, 2])]));
    t.store(2 * S, Ordering::Relaxed);
    apply(&mut s, &state(&[(1, Kind::Udp, &[1, 2, 3])]));
    assert_eq!(s.next_window_end(), None);
    assert_eq!(s.retained_slots(), 0);
    drop(s);
    assert!(!fake.ops.iter().any(|o| matches!(o, Op::PutSvcStable(..))));
}

/// Random changes of UDP Services (backends, affinity, policy, deletes),
/// the clock moving, ticks and restarts: the fake fails any write over a
/// region `svc_stable` names and any reuse of an id it names; after each
/// step the maps hold the desired state and every entry is consistent.
#[test]
fn churn_with_windows_and_restarts_fake() {
    let mut fake = FakeMaps::new(1024, 64, 1 << 16);
    let (t, opts) = clock(10 * S);
    let mut rng = xlb_testkit::XorShift(0x5eed_57ab);
    let mut want: Vec<Option<(Kind, Vec<u8>)>> = vec![None; 6];
    let mut s = Syncer::adopt(&mut fake, opts.clone()).unwrap();
    for step in 0..400 {
        let n = rng.below(6) as usize;
        want[n] = match rng.below(8) {
            0 => None,
            1 => Some((
                Kind::Affinity,
                want[n].take().map(|w| w.1).unwrap_or_default(),
            )),
            2 => Some((Kind::Local, want[n].take().map(|w| w.1).unwrap_or_default())),
            _ => {
                let k = rng.below(5) as usize;
                let mut h: Vec<u8> = (0..k).map(|_| 1 + rng.below(12) as u8).collect();
                h.sort();
                h.dedup();
                Some((Kind::Udp, h))
            }
        };
        t.fetch_add(rng.below(20) * S, Ordering::Relaxed);
        if rng.below(4) == 0 {
            s.tick();
        }
        if step % 50 == 49 {
            drop(s);
            s = Syncer::adopt(&mut fake, opts.clone()).unwrap();
        }
        let list: Vec<(u8, Kind, &[u8])> = want
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.as_ref().map(|(k, h)| (i as u8 + 1, *k, &h[..])))
            .collect();
        let d = state(&list);
        let r = s.apply(&d).unwrap();
        assert!(r.failed.is_empty(), "step {step}: {:?}", r.failed);
        let bad = verify(s.maps(), &d, s.service_names());
        assert!(bad.is_empty(), "step {step}: {bad:#?}");
        let now = t.load(Ordering::Relaxed);
        for (id, v) in s.maps().svc_stables().unwrap() {
            let name = s.service_names().get(&id).cloned().unwrap_or_default();
            let n: usize = name["default/u".len()..name.find(':').unwrap()]
                .parse()
                .unwrap();
            let (kind, hosts) = want[n - 1].clone().expect("an entry of a deleted Service");
            assert!(
                kind == Kind::Udp && !hosts.is_empty(),
                "step {step}: {name} {v:?}"
            );
            let cur = live(s.maps(), id);
            if v.window_end == 0 {
                assert_eq!((v.table_off, v.table_size), cur, "step {step}: {name}");
            } else {
                // Open (or ended, not yet ticked): the table before a change.
                assert_ne!((v.table_off, v.table_size), cur, "step {step}: {name}");
                assert!(v.window_end <= now + W, "step {step}: {name}");
            }
        }
    }
}

/// Growing the maps (a larger `maglev`) keeps `svc_stable`: the grown data
/// plane shares the very map, so an open window survives a grow.
#[test]
fn grow_shares_svc_stable() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = real_maps(4096);
    let v = xlb_svc_stable {
        table_off: 1009,
        table_size: 1009,
        window_end: 12345 * S,
        ..Default::default()
    };
    dp.maps.put_svc_stable(7, &v).unwrap();
    let cur = dp.sizes();
    let want = xlb_loader::grow::Sizes {
        maglev: cur.maglev * 2,
        ..cur
    };
    let grown = dp.grow(&want).unwrap().expect("grown");
    assert_eq!(grown.sizes().maglev, cur.maglev * 2);
    let got = grown.maps.svc_stable(7).unwrap();
    assert_eq!(
        (got.table_off, got.table_size, got.window_end),
        (1009, 1009, 12345 * S)
    );
    // One map: a write through the grown data plane is the running one's.
    grown
        .maps
        .put_svc_stable(7, &xlb_svc_stable::default())
        .unwrap();
    assert_eq!(dp.maps.svc_stable(7).unwrap().table_size, 0);
}

/// A port whose frontends could not be written (services map full) keeps
/// no entry naming its freed table: the next table allocated there (the
/// fake fails a write over a region an entry names) is fine, and the port
/// is programmed, entry first, once there is room.
#[test]
fn failed_switch_leaves_no_entry_on_a_freed_region_fake() {
    // Room for u1's two frontends (ClusterIP, NodePort) only.
    let mut fake = FakeMaps::new(2, 64, 1 << 14);
    let (_t, opts) = clock(S);
    let mut s = Syncer::adopt(&mut fake, opts).unwrap();
    apply(&mut s, &state(&[(1, Kind::Udp, &[1, 2])]));
    let d = state(&[
        (1, Kind::Udp, &[1, 2]),
        (2, Kind::Udp, &[3, 4]),
        (3, Kind::Udp, &[5, 6]),
    ]);
    let r = s.apply(&d).unwrap();
    assert!(r.failed.iter().any(|(w, _)| w.contains("u2")), "{r:?}");
    let u1 = s.svc_id(NAME).unwrap();
    let entries: Vec<u32> = s
        .maps()
        .svc_stables()
        .unwrap()
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(entries, [u1]);
    drop(s);
    fake.frontend_capacity = 6;
    let mut s = Syncer::adopt(&mut fake, clock(2 * S).1).unwrap();
    apply(&mut s, &d);
    for n in ["default/u2:53/UDP", "default/u3:53/UDP"] {
        let id = s.svc_id(n).unwrap();
        let v = stable(s.maps(), id);
        assert_eq!(
            (v.table_off, v.table_size, v.window_end),
            (live(s.maps(), id).0, live(s.maps(), id).1, 0)
        );
    }
}

/// A dual-stack UDP Service: the entry names the IPv4 table; a change of
/// its IPv6 endpoints only opens no window, one of its IPv4 endpoints does.
#[test]
fn dual_stack_follows_the_ipv4_table_fake() {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "u1", "namespace": "default"},
        "spec": {"clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1", "fd00:96::1:1"],
            "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}))
    .unwrap();
    let slice = |fam: &str, hosts: &[u8]| -> EndpointSlice {
        let eps: Vec<_> = hosts
            .iter()
            .map(|h| {
                let a = if fam == "IPv4" {
                    format!("10.244.1.{h}")
                } else {
                    format!("fd00:244:1::{h:x}")
                };
                json!({"addresses": [a], "nodeName": "n1", "conditions": {"ready": true}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": format!("u1-{fam}"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": "u1"}},
            "addressType": fam,
            "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": eps}))
        .unwrap()
    };
    let d = |v4: &[u8], v6: &[u8]| {
        desired6(
            vec![svc.clone()],
            vec![slice("IPv4", v4), slice("IPv6", v6)],
        )
    };
    let mut fake = FakeMaps::small();
    let (t, opts) = clock(S);
    let mut s = Syncer::adopt(&mut fake, opts).unwrap();
    apply(&mut s, &d(&[1, 2], &[1, 2]));
    let id = s.svc_id(NAME).unwrap();
    let first = live(s.maps(), id);
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, 0)
    );
    assert!(!s.maps().services6().unwrap().is_empty());
    t.store(2 * S, Ordering::Relaxed);
    apply(&mut s, &d(&[1, 2], &[1, 2, 3]));
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, 0)
    );
    assert_eq!(s.retained_slots(), 0);
    apply(&mut s, &d(&[1, 2, 3], &[1, 2, 3]));
    let v = stable(s.maps(), id);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, 2 * S + W)
    );
    assert_ne!(live(s.maps(), id), first);
}
