//! Sync of dual-stack Services into the IPv6 maps (docs/ipv6.md): the
//! ordering guarantees per family (backends6 before tables before
//! services6; removals reversed), one backend id space over `backends` and
//! `backends6`, source ranges, tunnels and node addresses of each family,
//! adoption after a restart, a full services6, and churn through the kernel
//! maps (root).

mod sync_util;

use std::collections::HashMap;
use std::net::IpAddr;

use libbpf_rs::MapCore;

use sync_util::*;
use xlb::model::Model;
use xlb::sync::fake::{FakeMaps, Op};
use xlb::sync::{MapOps, SyncOptions, Syncer};
use xlb_bpf::consts::XLB_SVC_F_SRC_RANGES;

fn syncer(fake: &mut FakeMaps) -> Syncer<&mut FakeMaps> {
    Syncer::adopt(fake, SyncOptions::default()).unwrap()
}

fn check<M: MapOps>(s: &Syncer<M>, d: &xlb::model::Desired) {
    let bad = verify(s.maps(), d, s.service_names());
    assert!(bad.is_empty(), "{bad:#?}");
}

fn dual_state() -> xlb::model::Desired {
    desired6(
        vec![service6(1, false), service6(2, true)],
        vec![
            slice(1, &[(1, 5), (2, 6)]),
            slice6(1, &[(1, 5), (2, 6), (3, 7)]),
            slice6(2, &[(1, 8), (3, 9)]),
        ],
    )
}

#[test]
fn ipv6_ordering_backends6_then_table_then_services6_and_removal_reversed() {
    let mut fake = FakeMaps::small();
    let d = dual_state();
    assert!(d
        .frontends()
        .any(|(_, f)| f.key.family == xlb::model::Family::V6));
    {
        let mut s = syncer(&mut fake);
        let rep = s.apply(&d).unwrap();
        assert!(rep.failed.is_empty(), "{:?}", rep.failed);
        check(&s, &d);
    }
    // On the recorded sequence: every services6 update comes after a write
    // of its whole region and after every backends6 slot its region names.
    let mut written: Vec<bool> = vec![false; fake.maglev.len()];
    let mut active6: HashMap<u32, bool> = HashMap::new();
    let mut n6 = 0;
    for op in &fake.ops {
        match op {
            Op::PutBackend6(id, b) => {
                active6.insert(*id, b.is_active());
            }
            Op::WriteMaglev { off, len } => {
                for s in *off..off + len {
                    written[s as usize] = true;
                }
            }
            Op::PutService6(k, v) => {
                n6 += 1;
                for slot in v.table_off..v.table_off + v.table_size {
                    assert!(
                        written[slot as usize],
                        "{:?}: slot {slot} unwritten",
                        k.ip()
                    );
                    let id = fake.maglev[slot as usize];
                    assert_eq!(active6.get(&id), Some(&true), "{:?}: backend6 {id}", k.ip());
                }
            }
            _ => {}
        }
    }
    // ClusterIP and NodePort of s1, ClusterIP, NodePort (external and
    // internal entries) of s2.
    assert_eq!(n6, 5);

    // Removal: each services6 entry goes before any backends6 slot its
    // region names is retired.
    let named: Vec<(Vec<u8>, Vec<u32>)> = fake
        .services6
        .iter()
        .map(|(kb, (_, v))| {
            let ids =
                fake.maglev[v.table_off as usize..(v.table_off + v.table_size) as usize].to_vec();
            (kb.clone(), ids)
        })
        .collect();
    fake.ops.clear();
    {
        let mut s = syncer(&mut fake);
        let r = s.apply(&desired6(vec![], vec![])).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert!(fake_is_empty(s.maps()));
    }
    let pos = |want: &dyn Fn(&Op) -> bool| fake.ops.iter().position(want);
    let mut checked = 0;
    for (kb, ids) in &named {
        let deleted = pos(&|o| {
            // SAFETY: a plain map key struct.
            matches!(o, Op::DeleteService6(k) if unsafe { plain::as_bytes(k) } == &kb[..])
        })
        .expect("services6 entry deleted");
        for id in ids {
            let retired = pos(&|o| matches!(o, Op::PutBackend6(i, v) if i == id && !v.is_active()))
                .expect("backends6 slot retired");
            assert!(
                deleted < retired,
                "backend6 {id} retired before a frontend naming it went"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

fn fake_is_empty(f: &FakeMaps) -> bool {
    f.services.is_empty()
        && f.services6.is_empty()
        && f.backends.iter().all(|b| !b.is_active())
        && f.backends6.iter().all(|b| !b.is_active())
}

#[test]
fn one_backend_id_space_across_families() {
    // Three slots (id 0 never used): the ids of IPv4 endpoints, once freed,
    // serve IPv6 ones, at a newer generation; never active in both arrays.
    let mut fake = FakeMaps::new(64, 3, 1 << 16);
    let d4 = desired6(vec![service6(1, false)], vec![slice(1, &[(1, 5), (2, 6)])]);
    let d6 = desired6(vec![service6(1, false)], vec![slice6(1, &[(1, 5), (2, 6)])]);
    let mut s = syncer(&mut fake);
    let r = s.apply(&d4).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d4);
    let ids4: Vec<u32> = ["10.244.1.5:8080", "10.244.2.6:8080"]
        .iter()
        .map(|a| {
            s.backend_id("default/s1:80/TCP", a.parse().unwrap())
                .unwrap()
        })
        .collect();
    let gens4: Vec<u32> = ids4
        .iter()
        .map(|i| s.maps().backends[*i as usize].generation)
        .collect();
    // Full: the port cannot take IPv6 ids while it holds its IPv4 ones...
    let r = s.apply(&d6).unwrap();
    assert!(!r.failed.is_empty());
    // ...and gets them once the IPv4 endpoints are gone.
    let r = s
        .apply(&desired6(vec![service6(1, false)], vec![]))
        .unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let r = s.apply(&d6).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d6);
    let mut ids6: Vec<u32> = ["[fd00:244:1::5]:8080", "[fd00:244:2::6]:8080"]
        .iter()
        .map(|a| {
            s.backend_id("default/s1:80/TCP", a.parse().unwrap())
                .unwrap()
        })
        .collect();
    ids6.sort();
    let mut sorted4 = ids4.clone();
    sorted4.sort();
    assert_eq!(ids6, sorted4, "the same ids");
    for (i, id) in ids4.iter().enumerate() {
        let (b4, b6) = (
            s.maps().backends[*id as usize],
            s.maps().backends6[*id as usize],
        );
        assert!(!b4.is_active() && b6.is_active(), "id {id}");
        assert!(b6.generation > gens4[i], "id {id}: a new generation");
        assert!(b4.generation < b6.generation);
    }
    // A restart: generations are the newer of the two arrays'.
    drop(s);
    let mut s = syncer(&mut fake);
    let r = s.apply(&d6).unwrap();
    assert_eq!(r.writes, 0, "{r:?}");
    // Back to IPv4: ids go back with a generation newer than both.
    s.apply(&desired6(vec![service6(1, false)], vec![]))
        .unwrap();
    let before: Vec<u32> = ids4
        .iter()
        .map(|i| s.maps().backends6[*i as usize].generation)
        .collect();
    let r = s.apply(&d4).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d4);
    for (i, id) in ids4.iter().enumerate() {
        assert!(s.maps().backends[*id as usize].generation > before[i]);
    }
}

#[test]
fn source_ranges_tunnels_and_addresses_go_to_their_familys_maps() {
    let mut fake = FakeMaps::small();
    let mut s = syncer(&mut fake);
    // IPv6 ranges only: IPv4 LoadBalancer frontend checks (and admits none).
    let d1 = desired6(
        vec![lb_service6(3, &["2001:db8:1::/48"])],
        vec![slice(3, &[(2, 2)]), slice6(3, &[(2, 2)])],
    );
    let r = s.apply(&d1).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d1);
    assert_eq!(s.maps().src_ranges.len(), 0);
    assert_eq!(s.maps().src_ranges6.len(), 1);
    for (_, v) in s.maps().services.values() {
        if v.fe_type == xlb_bpf::Kind::LoadBalancer.fe_type() {
            assert!(v.flags & XLB_SVC_F_SRC_RANGES != 0);
        }
    }
    // Each family's tunnel entries and addresses (IPv4: the other nodes'
    // pod CIDRs and their IPv4 addresses, for host-network endpoints).
    assert_eq!(s.maps().tunnels.len(), 4);
    assert_eq!(s.maps().tunnels6.len(), 2);
    assert!(s
        .maps()
        .local_addrs
        .contains(&"fd00:18::11".parse::<IpAddr>().unwrap()));
    assert!(s
        .maps()
        .remote_addrs
        .contains(&"fd00:18::12".parse::<IpAddr>().unwrap()));
    // Ranges of the other family: the IPv6 one goes.
    let d2 = desired6(
        vec![lb_service6(3, &["192.0.2.0/24"])],
        vec![slice(3, &[(2, 2)]), slice6(3, &[(2, 2)])],
    );
    let r = s.apply(&d2).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d2);
    assert_eq!(s.maps().src_ranges.len(), 1);
    assert_eq!(s.maps().src_ranges6.len(), 0);
    // Nodes without IPv6: tunnel6 and the IPv6 addresses go.
    let d3 = desired(vec![], vec![]);
    let r = s.apply(&d3).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d3);
    assert!(s.maps().tunnels6.is_empty());
    assert!(s.maps().remote_addrs.iter().all(IpAddr::is_ipv4));
}

#[test]
fn dual_stack_adopt_keeps_everything_and_reconciles() {
    let mut fake = FakeMaps::small();
    let d1 = dual_state();
    let names = {
        let mut s = syncer(&mut fake);
        s.apply(&d1).unwrap();
        s.service_names().clone()
    };
    // A restarted agent adopting the maps writes nothing.
    {
        let mut s = syncer(&mut fake);
        let r = s.apply(&d1).unwrap();
        assert_eq!(r.writes, 0, "{r:?}");
        assert_eq!(s.service_names(), &names);
        check(&s, &d1);
    }
    // Another state after a restart: stale IPv6 entries go.
    let d2 = desired6(
        vec![service6(2, false), lb_service6(4, &["2001:db8::/32"])],
        vec![slice6(2, &[(1, 8)]), slice6(4, &[(3, 1)])],
    );
    let mut s = syncer(&mut fake);
    let r = s.apply(&d2).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d2);
}

#[test]
fn full_services6_fails_the_port_only() {
    let mut fake = FakeMaps::small();
    fake.frontend6_capacity = 2;
    let d = dual_state(); // 5 IPv6 frontends
    let mut s = syncer(&mut fake);
    let r = s.apply(&d).unwrap();
    assert!(
        r.failed.iter().any(|(_, e)| e.contains("services6")),
        "{:?}",
        r.failed
    );
    // What was written is consistent (the fake checks every write), and the
    // IPv4 frontends are all there.
    assert!(s.maps().violations().is_empty());
    assert_eq!(s.maps().services.len(), 5);
    // Room again: the next apply programs the rest.
    drop(s);
    fake.frontend6_capacity = 64;
    let mut s = syncer(&mut fake);
    let r = s.apply(&d).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d);
}

/// Random dual-stack churn with restarts, checked after every apply.
fn churn<T: MapOps>(maps: &mut T, steps: usize, seed: u64) {
    let mut model = Model::new(cfg6());
    for n in nodes6() {
        model.upsert_node(&n);
    }
    let mut r = xlb_testkit::XorShift(seed);
    let mut s = Syncer::adopt(&mut *maps, SyncOptions::default()).unwrap();
    let mut last_ids: HashMap<String, u32> = HashMap::new();
    let mut seen6 = 0;
    for step in 0..steps {
        let n = 1 + r.below(6) as u8;
        let eps = |r: &mut xlb_testkit::XorShift| -> Vec<(u8, u8)> {
            (0..r.below(5))
                .map(|_| (1 + r.below(3) as u8, 1 + r.below(6) as u8))
                .collect()
        };
        match r.below(7) {
            0 => {
                model.remove_service("default", &format!("s{n}"));
            }
            1 => {
                model.upsert_service(&service6(n, r.chance(50)));
            }
            2 => {
                let ranges: &[&str] = match r.below(3) {
                    0 => &["192.0.2.0/24"],
                    1 => &["2001:db8::/32"],
                    _ => &["192.0.2.0/24", "2001:db8::/32"],
                };
                model.upsert_service(&lb_service6(n, ranges));
            }
            3 | 4 => {
                let e = eps(&mut r);
                model.upsert_slice(&slice6(n, &e));
            }
            _ => {
                let e = eps(&mut r);
                model.upsert_slice(&slice(n, &e));
            }
        }
        if step % 20 == 19 {
            drop(s);
            s = Syncer::adopt(&mut *maps, SyncOptions::default()).unwrap();
        }
        let rep = s.apply(model.desired()).unwrap();
        assert!(rep.failed.is_empty(), "step {step}: {:?}", rep.failed);
        let bad = verify(s.maps(), model.desired(), s.service_names());
        assert!(bad.is_empty(), "step {step}: {bad:#?}");
        // svc_ids of ports that stayed are stable (one per port, both families)
        for p in model.desired().ports() {
            let id = s.svc_id(&p.name).unwrap();
            if let Some(old) = last_ids.get(&p.name) {
                assert_eq!(*old, id, "step {step}: {}", p.name);
            }
        }
        last_ids = model
            .desired()
            .ports()
            .map(|p| (p.name.clone(), s.svc_id(&p.name).unwrap()))
            .collect();
        seen6 += usize::from(!s.maps().services6().unwrap().is_empty());
        assert_eq!(s.apply(model.desired()).unwrap().writes, 0, "step {step}");
    }
    assert!(
        seen6 > steps / 2,
        "{seen6} of {steps} steps with IPv6 frontends"
    );
}

#[test]
fn dual_stack_churn_with_restarts_fake() {
    for seed in [7u64, 42, 1234] {
        let mut fake = FakeMaps::new(256, 128, 1 << 16);
        churn(&mut fake, 150, seed);
        assert!(fake.violations().is_empty());
    }
}

#[test]
fn dual_stack_into_real_maps_adopt_and_churn() {
    if !xlb_testkit::privileged() {
        return;
    }
    // Small backends array: every verify reads all of it (both families').
    let mut dp = xlb_loader::DataPlane::load(&xlb_loader::LoadOptions {
        backends: Some(4096),
        maglev_slots: Some(1 << 20),
        ..Default::default()
    })
    .expect("loading the data plane");
    assert_eq!(
        dp.maps.v6().unwrap().backends6.max_entries(),
        dp.maps.backends.max_entries(),
        "backends6 sized with backends"
    );
    let d1 = dual_state();
    {
        let mut s = Syncer::adopt(&mut dp.maps, SyncOptions::default()).unwrap();
        let r = s.apply(&d1).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        let bad = verify(s.maps(), &d1, s.service_names());
        assert!(bad.is_empty(), "{bad:#?}");
    }
    {
        let mut s = Syncer::adopt(&mut dp.maps, SyncOptions::default()).unwrap();
        let r = s.apply(&d1).unwrap();
        assert_eq!(r.writes, 0, "{r:?}");
    }
    churn(&mut dp.maps, 60, 11);
}
