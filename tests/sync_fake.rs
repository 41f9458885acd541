//! Sync against the in-memory fake: ordering, reuse, generations, adoption,
//! churn, full maps. The fake checks after every write that no frontend
//! points at an unwritten slot or an inactive backend.

mod sync_util;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use sync_util::*;
use xlb::model::Model;
use xlb::sync::fake::{FakeMaps, Op};
use xlb::sync::{MapOps, SyncOptions, Syncer};
use xlb_testkit::XorShift;

fn syncer(fake: &mut FakeMaps) -> Syncer<&mut FakeMaps> {
    Syncer::adopt(fake, SyncOptions::default()).unwrap()
}

fn check<M: MapOps>(s: &Syncer<M>, d: &xlb::model::Desired) {
    let bad = verify(s.maps(), d, s.service_names());
    assert!(bad.is_empty(), "{bad:#?}");
}

struct TempFile(PathBuf);
impl TempFile {
    fn new(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!("xlb-test-{tag}-{}.json", std::process::id())))
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn ordering_backends_then_table_then_service() {
    let mut fake = FakeMaps::small();
    let d = desired(
        vec![service(1, false), service(2, true)],
        vec![slice(1, &[(1, 5), (2, 6)]), slice(2, &[(1, 7), (3, 8)])],
    );
    {
        let mut s = syncer(&mut fake);
        let rep = s.apply(&d).unwrap();
        assert!(rep.failed.is_empty(), "{:?}", rep.failed);
        check(&s, &d);
    }
    // Explicitly, on the recorded sequence: every services update comes after
    // a write of its whole region and after every backend its slots name.
    let mut written: Vec<bool> = vec![false; fake.maglev.len()];
    let mut active: HashMap<u32, bool> = HashMap::new();
    for op in &fake.ops {
        match op {
            Op::PutBackend(id, b) => {
                active.insert(*id, b.is_active());
            }
            Op::WriteMaglev { off, len } => {
                for s in *off..off + len {
                    written[s as usize] = true;
                }
            }
            Op::PutService(_, v) => {
                for s in v.table_off..v.table_off + v.table_size {
                    assert!(
                        written[s as usize],
                        "slot {s} not written before the switch"
                    );
                    let id = fake.maglev[s as usize];
                    assert_eq!(
                        active.get(&id),
                        Some(&true),
                        "backend {id} not there before the switch"
                    );
                }
            }
            _ => {}
        }
    }
    // Two frontends (ClusterIP, NodePort) of s1 share one table; s2 (ETP
    // Local) has two: cluster-wide and local-only.
    let regions = fake
        .ops
        .iter()
        .filter(|o| matches!(o, Op::WriteMaglev { .. }))
        .count();
    assert_eq!(regions, 3);
}

#[test]
fn removal_in_reverse_order_and_generation_bump() {
    let mut fake = FakeMaps::small();
    let d1 = desired(vec![service(1, false)], vec![slice(1, &[(1, 5), (2, 6)])]);
    let d2 = desired(vec![service(1, false)], vec![slice(1, &[(1, 5)])]);
    let d3 = desired(vec![], vec![]);
    let gone: std::net::SocketAddr = "10.244.2.6:8080".parse().unwrap();
    let (id, n) = {
        let mut s = syncer(&mut fake);
        s.apply(&d1).unwrap();
        let id = s.backend_id("default/s1:80/TCP", gone).unwrap();
        let r = s.apply(&d2).unwrap();
        assert_eq!(r.backends_removed, 1);
        check(&s, &d2);
        assert_eq!(s.backend_id("default/s1:80/TCP", gone), None);
        let n = s.maps().backends.len();
        (id, n)
    };
    let b = fake.backends[id as usize];
    assert!(!b.is_active());
    let gen_before = fake
        .ops
        .iter()
        .find_map(|o| match o {
            Op::PutBackend(i, v) if *i == id && v.is_active() => Some(v.generation),
            _ => None,
        })
        .unwrap();
    assert_eq!(b.generation, gen_before + 1);
    // The new table is switched in before the backend is retired.
    let switch = fake
        .ops
        .iter()
        .rposition(|o| matches!(o, Op::PutService(..)))
        .unwrap();
    let retire = fake
        .ops
        .iter()
        .rposition(|o| matches!(o, Op::PutBackend(i, v) if *i == id && !v.is_active()))
        .unwrap();
    assert!(switch < retire);
    assert!(n > 0);

    // Full removal: services entries, then backends.
    fake.ops.clear();
    {
        let mut s = syncer(&mut fake);
        s.apply(&d2).unwrap();
        fake_ops_clear_and_apply(s, &d3);
    }
    let last_delete = fake
        .ops
        .iter()
        .rposition(|o| matches!(o, Op::DeleteService(_)))
        .unwrap();
    let first_retire = fake
        .ops
        .iter()
        .position(|o| matches!(o, Op::PutBackend(_, v) if !v.is_active()))
        .unwrap();
    assert!(last_delete < first_retire, "{:?}", fake.ops);
    assert!(fake.services.is_empty());
    assert!(fake.backends.iter().all(|b| !b.is_active()));
}

fn fake_ops_clear_and_apply(mut s: Syncer<&mut FakeMaps>, d: &xlb::model::Desired) {
    let r = s.apply(d).unwrap();
    assert!(r.failed.is_empty());
    check(&s, d);
}

#[test]
fn regions_are_reused() {
    let mut fake = FakeMaps::small();
    let mut s = syncer(&mut fake);
    // (externalTrafficPolicy Local: no stateless path, whose window would
    // hold the old region: sync_stable.rs)
    let d1 = desired(vec![service(1, true)], vec![slice(1, &[(1, 5)])]);
    s.apply(&d1).unwrap();
    let off1 = s.maps().services().unwrap()[0].1.table_off;
    // A change writes a new region, then frees the old one...
    let d2 = desired(vec![service(1, true)], vec![slice(1, &[(1, 6)])]);
    let r = s.apply(&d2).unwrap();
    assert_eq!((r.regions_written, r.regions_freed), (1, 1));
    let off2 = s.maps().services().unwrap()[0].1.table_off;
    assert_ne!(off1, off2);
    // ...which the next change takes again.
    let d3 = desired(vec![service(1, true)], vec![slice(1, &[(1, 7)])]);
    s.apply(&d3).unwrap();
    assert_eq!(s.maps().services().unwrap()[0].1.table_off, off1);
    check(&s, &d3);
    // A removed Service's region serves the next one of the same size.
    let d4 = desired(vec![service(2, false)], vec![slice(2, &[(1, 9)])]);
    s.apply(&d4).unwrap();
    assert_eq!(s.maps().services().unwrap()[0].1.table_off, off1);
    assert_eq!(s.occupancy().maglev_used, 251);
    check(&s, &d4);
}

#[test]
fn unchanged_apply_writes_nothing_and_svc_ids_are_stable() {
    let mut fake = FakeMaps::small();
    let mut s = syncer(&mut fake);
    let d1 = desired(
        vec![service(1, false), service(2, false)],
        vec![slice(1, &[(1, 5)])],
    );
    s.apply(&d1).unwrap();
    let id1 = s.svc_id("default/s1:80/TCP").unwrap();
    let id2 = s.svc_id("default/s2:80/TCP").unwrap();
    assert_ne!(id1, id2);
    assert_eq!(s.apply(&d1).unwrap().writes, 0);
    let d2 = desired(
        vec![service(1, false), service(2, false)],
        vec![slice(1, &[(1, 5), (2, 5)]), slice(2, &[(3, 3)])],
    );
    s.apply(&d2).unwrap();
    assert_eq!(s.svc_id("default/s1:80/TCP"), Some(id1));
    assert_eq!(s.svc_id("default/s2:80/TCP"), Some(id2));
    assert_eq!(s.service_names()[&id1], "default/s1:80/TCP");
    check(&s, &d2);
}

#[test]
fn adopt_then_apply_same_desired_writes_nothing() {
    let names = TempFile::new("names");
    let opts = SyncOptions {
        names_file: Some(names.0.clone()),
        ..Default::default()
    };
    let (d, _) = before_and_after();
    let mut fake = FakeMaps::small();
    let before = {
        let mut s = Syncer::adopt(&mut fake, opts.clone()).unwrap();
        s.apply(&d).unwrap();
        s.service_names().clone()
    };
    let on_disk = xlb::names::read(&names.0).unwrap();
    assert_eq!(on_disk, before);
    // With the names file.
    fake.ops.clear();
    {
        let mut s = Syncer::adopt(&mut fake, opts.clone()).unwrap();
        let r = s.apply(&d).unwrap();
        assert_eq!(r.writes, 0, "{r:?}");
        assert_eq!(s.service_names(), &before);
        check(&s, &d);
    }
    assert!(fake.ops.is_empty(), "{:?}", fake.ops);
    // Without it (lost /run): frontends still claim their adopted svc_ids.
    {
        let mut s = syncer(&mut fake);
        let r = s.apply(&d).unwrap();
        assert_eq!(r.writes, 0, "{r:?}");
        assert_eq!(s.service_names(), &before);
        check(&s, &d);
    }
    assert!(fake.ops.is_empty(), "{:?}", fake.ops);
}

#[test]
fn adopt_reconciles_what_changed_while_down() {
    let (d1, d2) = before_and_after();
    let mut fake = FakeMaps::small();
    syncer(&mut fake).apply(&d1).unwrap();
    let mut s = syncer(&mut fake);
    let r = s.apply(&d2).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d2);
    // and the result is stable
    assert_eq!(s.apply(&d2).unwrap().writes, 0);
}

#[test]
fn adopt_cleans_garbage_left_in_maps() {
    let d = desired(vec![service(1, false)], vec![slice(1, &[(1, 5)])]);
    let mut fake = FakeMaps::small();
    fake.check = false;
    // A stray active backend, a frontend pointing at an unwritten region.
    fake.put_backend(
        7,
        &xlb_bpf::types::xlb_backend::new("10.244.9.9:1".parse().unwrap(), None, 3),
    )
    .unwrap();
    let k = xlb_bpf::types::xlb_svc_key::addr("10.96.9.9:80".parse().unwrap(), xlb_bpf::Proto::Tcp);
    let v = xlb_bpf::types::xlb_svc_val {
        svc_id: 42,
        table_off: 1000,
        table_size: 251,
        ..Default::default()
    };
    fake.put_service(&k, &v).unwrap();
    let mut s = syncer(&mut fake);
    let r = s.apply(&d).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert!(s.maps().violations().is_empty());
    check(&s, &d);
    let b7 = s.maps().backends[7];
    assert!(!b7.is_active());
    assert_eq!(b7.generation, 4);
}

#[test]
fn full_maglev_fails_one_port_cleanly() {
    // Room for two 251-slot tables only.
    let mut fake = FakeMaps::new(1024, 1024, 600);
    let mut s = syncer(&mut fake);
    let d = desired(
        vec![service(1, false), service(2, false), service(3, false)],
        vec![
            slice(1, &[(1, 1)]),
            slice(2, &[(1, 2)]),
            slice(3, &[(1, 3)]),
        ],
    );
    let r = s.apply(&d).unwrap();
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(
        r.failed[0].1.contains("maglev slot array full"),
        "{:?}",
        r.failed
    );
    // No garbage: the failed port has no entry and holds no backend.
    assert_eq!(s.maps().services.len(), 4);
    assert_eq!(s.occupancy().backends, 2);
    assert!(s.maps().violations().is_empty());
    // Once there is room, the retry succeeds.
    let d2 = desired(
        vec![service(2, false), service(3, false)],
        vec![slice(2, &[(1, 2)]), slice(3, &[(1, 3)])],
    );
    let r = s.apply(&d2).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d2);
}

#[test]
fn full_backends_fails_cleanly_and_keeps_old_table() {
    // ids 1..=3 usable (0 is reserved)
    let mut fake = FakeMaps::new(1024, 4, 1 << 14);
    let mut s = syncer(&mut fake);
    let d1 = desired(vec![service(1, false)], vec![slice(1, &[(1, 1), (1, 2)])]);
    s.apply(&d1).unwrap();
    let d2 = desired(
        vec![service(1, false)],
        vec![slice(1, &[(1, 3), (1, 4), (1, 5)])],
    );
    let r = s.apply(&d2).unwrap();
    assert!(!r.failed.is_empty());
    assert!(
        r.failed[0].1.contains("backends map full"),
        "{:?}",
        r.failed
    );
    // The Service keeps its old, complete table.
    check(&s, &d1);
    // A later apply with room succeeds.
    let d3 = desired(vec![service(1, false)], vec![slice(1, &[(1, 3)])]);
    let r = s.apply(&d3).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d3);
}

#[test]
fn full_services_map_fails_cleanly() {
    let mut fake = FakeMaps::new(3, 64, 1 << 14);
    let mut s = syncer(&mut fake);
    let d = desired(
        vec![service(1, false), service(2, false)],
        vec![slice(1, &[(1, 1)]), slice(2, &[(1, 2)])],
    );
    let r = s.apply(&d).unwrap();
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(r.failed[0].1.contains("full"));
    assert!(s.maps().violations().is_empty());
    // s2's second frontend failed; its unused region is not leaked.
    assert_eq!(s.occupancy().maglev_used, 2 * 251);
}

#[test]
fn frontend_claimed_by_two_services_goes_to_one_and_then_to_the_next() {
    let mut fake = FakeMaps::small();
    let mut s = syncer(&mut fake);
    let a = lb_service(1, &[]);
    let mut b = lb_service(2, &[]);
    // same LoadBalancer IP as s1
    b.status = a.status.clone();
    let slices = || vec![slice(1, &[(1, 1)]), slice(2, &[(1, 2)])];
    let lb_key = |s: &Syncer<&mut FakeMaps>| {
        let k = xlb_bpf::types::xlb_svc_key::addr(
            "203.0.113.1:80".parse().unwrap(),
            xlb_bpf::Proto::Tcp,
        );
        let (_, v) = s.maps().services.values().find(|(kk, _)| {
            // SAFETY: plain structs.
            unsafe { plain::as_bytes(kk) == plain::as_bytes(&k) }
        })?;
        s.service_names().get(&v.svc_id).cloned()
    };
    // In both orders of arrival, s1 (first by name, no timestamps) has it.
    for d in [
        desired(vec![a.clone()], slices()),
        desired(vec![a.clone(), b.clone()], slices()),
        desired(vec![b.clone(), a.clone()], slices()),
    ] {
        let r = s.apply(&d).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        check(&s, &d);
        assert_eq!(lb_key(&s).as_deref(), Some("default/s1:80/TCP"));
    }
    let d = desired(vec![a.clone(), b.clone()], slices());
    assert_eq!(d.conflicts.len(), 1);
    assert_eq!(d.conflicts[0].service, "default/s2:80/TCP");
    // s1 goes: s2 has the frontend in the same apply; s1 back: s1 again.
    let d = desired(vec![b.clone()], slices());
    let r = s.apply(&d).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d);
    assert_eq!(lb_key(&s).as_deref(), Some("default/s2:80/TCP"));
    let d = desired(vec![b, a], slices());
    let r = s.apply(&d).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    check(&s, &d);
    assert_eq!(lb_key(&s).as_deref(), Some("default/s1:80/TCP"));
}

#[test]
fn churn_sequences() {
    for seed in [1u64, 7, 42, 1234] {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut fake = FakeMaps::new(256, 128, 1 << 14);
        let mut model = Model::new(cfg());
        for n in nodes() {
            model.upsert_node(&n);
        }
        let mut s = syncer(&mut fake);
        let mut last_names: BTreeMap<String, u32> = BTreeMap::new();
        for step in 0..150 {
            let n = 1 + rng.below(8) as u8;
            match rng.below(10) {
                0 => {
                    model.remove_service("default", &format!("s{n}"));
                }
                1 => {
                    model.remove_slice("default", &format!("s{n}-a"));
                }
                2 => {
                    model.upsert_service(&lb_service(
                        n,
                        &["192.0.2.0/24", "198.51.100.0/25"][..rng.below(3) as usize],
                    ));
                }
                3..=4 => {
                    model.upsert_service(&service(n, rng.below(2) == 0));
                }
                _ => {
                    let k = rng.below(6);
                    let eps: Vec<(u8, u8)> = (0..k)
                        .map(|_| (1 + rng.below(3) as u8, 1 + rng.below(6) as u8))
                        .collect();
                    model.upsert_slice(&slice(n, &eps));
                }
            }
            // A restart now and then.
            if rng.below(15) == 0 {
                drop(s);
                s = syncer(&mut fake);
            }
            let r = s.apply(model.desired()).unwrap();
            assert!(
                r.failed.is_empty(),
                "seed {seed} step {step}: {:?}",
                r.failed
            );
            let bad = verify(s.maps(), model.desired(), s.service_names());
            assert!(bad.is_empty(), "seed {seed} step {step}: {bad:#?}");
            // svc_ids of ports that stayed are stable
            for p in model.desired().ports() {
                let id = s.svc_id(&p.name).unwrap();
                if let Some(old) = last_names.get(&p.name) {
                    assert_eq!(*old, id, "seed {seed} step {step}: {}", p.name);
                }
            }
            last_names = model
                .desired()
                .ports()
                .map(|p| (p.name.clone(), s.svc_id(&p.name).unwrap()))
                .collect();
            assert_eq!(s.apply(model.desired()).unwrap().writes, 0);
        }
    }
}
