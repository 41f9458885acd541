//! More of the `svc_stable` sync (tests/sync_stable.rs): random churn with
//! windows, ticks and restarts, a grown data plane, a failed switch, a
//! dual-stack Service. The fake fails any maglev write over a region
//! `svc_stable` names and any reuse of a backend id such a region names.

mod stable_util;
mod sync_util;

use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use stable_util::*;
use sync_util::*;
use xlb::sync::fake::FakeMaps;
use xlb::sync::{MapOps, Syncer};
use xlb_bpf::types::xlb_svc_stable;

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
