//! Sync against real (private, unpinned) BPF maps: the same checks as the
//! fake, through the kernel. Needs root.

mod sync_util;

use sync_util::*;
use xlb::model::Model;
use xlb::sync::{SyncOptions, Syncer};

#[test]
fn sync_into_real_maps_adopt_and_churn() {
    if !xlb_testkit::privileged() {
        return;
    }
    // Small backends array: every verify reads all of it.
    let mut dp = xlb_loader::DataPlane::load(&xlb_loader::LoadOptions {
        backends: Some(4096),
        maglev_slots: Some(1 << 20),
        ..Default::default()
    })
    .expect("loading the data plane");
    let (d1, d2) = before_and_after();
    let names = {
        let mut s = Syncer::adopt(&mut dp.maps, SyncOptions::default()).unwrap();
        let r = s.apply(&d1).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        let bad = verify(s.maps(), &d1, s.service_names());
        assert!(bad.is_empty(), "{bad:#?}");
        let r = s.apply(&d2).unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert!(r.backends_removed > 0);
        let bad = verify(s.maps(), &d2, s.service_names());
        assert!(bad.is_empty(), "{bad:#?}");
        s.service_names().clone()
    };

    // A restarted agent adopting the maps changes nothing.
    {
        let mut s = Syncer::adopt(&mut dp.maps, SyncOptions::default()).unwrap();
        let r = s.apply(&d2).unwrap();
        assert_eq!(r.writes, 0, "{r:?}");
        assert_eq!(s.service_names(), &names);
    }

    // Churn through the kernel maps, with restarts.
    let mut model = Model::new(cfg());
    for n in nodes() {
        model.upsert_node(&n);
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut s = Syncer::adopt(&mut dp.maps, SyncOptions::default()).unwrap();
    for step in 0..60 {
        let n = 1 + next(6) as u8;
        match next(6) {
            0 => {
                model.remove_service("default", &format!("s{n}"));
            }
            1 => {
                model.upsert_service(&service(n, next(2) == 0));
            }
            2 => {
                model.upsert_service(&lb_service(n, &["192.0.2.0/24"]));
            }
            _ => {
                let k = next(5);
                let eps: Vec<(u8, u8)> = (0..k)
                    .map(|_| (1 + next(3) as u8, 1 + next(6) as u8))
                    .collect();
                model.upsert_slice(&slice(n, &eps));
            }
        }
        if step % 20 == 19 {
            drop(s);
            s = Syncer::adopt(&mut dp.maps, SyncOptions::default()).unwrap();
        }
        let r = s.apply(model.desired()).unwrap();
        assert!(r.failed.is_empty(), "step {step}: {:?}", r.failed);
        let bad = verify(s.maps(), model.desired(), s.service_names());
        assert!(bad.is_empty(), "step {step}: {bad:#?}");
    }
}
