//! The stable tables of stateless flows (`svc_stable`, docs/ctl.md
//! "Stateless flows"), through the sync: against the in-memory fake
//! (which also fails any maglev write over a region `svc_stable` names and
//! any reuse of a backend id such a region names) and against real BPF maps
//! (root). The window's clock is the test's: nothing waits.

mod stable_util;
mod sync_util;

use std::sync::atomic::Ordering;

use stable_util::*;
use xlb::sync::fake::{FakeMaps, Op};
use xlb::sync::{MapOps, Syncer};

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

/// A TCP port is eligible too; its window is ct_tcp_established long, a UDP
/// port's beside it ct_udp.
fn tcp_window<M: MapOps>(m: &mut M) {
    let t0 = 1000 * S;
    let (t, opts) = clock(t0);
    let mut s = Syncer::adopt(&mut *m, opts).unwrap();
    let d = |h: &'static [u8]| state(&[(1, Kind::Tcp, h), (2, Kind::Udp, h)]);
    apply(&mut s, &d(&[1, 2]));
    let tcp = s.svc_id("default/u1:53/TCP").unwrap();
    let udp = s.svc_id("default/u2:53/UDP").unwrap();
    let first = live(s.maps(), tcp);
    let v = stable(s.maps(), tcp);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, 0)
    );
    t.store(t0 + 5 * S, Ordering::Relaxed);
    apply(&mut s, &d(&[1, 2, 3]));
    let v = stable(s.maps(), tcp);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (first.0, first.1, t0 + 5 * S + WT)
    );
    assert_eq!(stable(s.maps(), udp).window_end, t0 + 5 * S + W);
    // The UDP window ends first; the TCP one stays open.
    t.store(t0 + 5 * S + W + 2 * S, Ordering::Relaxed);
    s.tick();
    assert_eq!(stable(s.maps(), udp).window_end, 0);
    assert_eq!(stable(s.maps(), tcp).window_end, t0 + 5 * S + WT);
    assert_eq!(s.next_window_end(), Some(t0 + 5 * S + WT + S + 1));
    t.store(t0 + 5 * S + WT + 2 * S, Ordering::Relaxed);
    s.tick();
    let v = stable(s.maps(), tcp);
    assert_eq!(
        (v.table_off, v.table_size, v.window_end),
        (live(s.maps(), tcp).0, live(s.maps(), tcp).1, 0)
    );
    assert_eq!(s.retained_slots(), 0);
}

#[test]
fn tcp_window_is_ct_tcp_established_fake() {
    tcp_window(&mut FakeMaps::small());
}

#[test]
fn tcp_window_is_ct_tcp_established_maps() {
    if !xlb_testkit::privileged() {
        return;
    }
    let mut dp = real_maps(4096);
    tcp_window(&mut dp.maps);
}

/// Affinity, Local: all zero, through changes; a Service turning
/// ineligible is zeroed before its frontends switch. Returns the svc_id of
/// the one that turns ineligible.
fn ineligible<M: MapOps>(m: &mut M) -> u32 {
    let (t, opts) = clock(50 * S);
    let mut s = Syncer::adopt(&mut *m, opts).unwrap();
    let kinds = [(2, Kind::Affinity), (3, Kind::Local)];
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
    id
}

#[test]
fn ineligible_services_stay_zero_fake() {
    let mut fake = FakeMaps::small();
    let id = ineligible(&mut fake);
    // Turning ineligible: zeroed before the switch to the new table.
    let zero = fake
        .ops
        .iter()
        .rposition(|o| matches!(o, Op::PutSvcStable(_, v) if v.table_size == 0))
        .unwrap();
    let aff = fake
        .ops
        .iter()
        .position(|o| matches!(o, Op::PutService(_, v) if v.flags & xlb_bpf::consts::XLB_SVC_F_AFFINITY != 0 && v.svc_id == id))
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
