//! `backend_stats` counters start from zero for every new generation of a
//! backend id: a reused id by a reset of its own, never-written ids by
//! batches zeroed ahead (one syscall for thousands of fresh ids in a full
//! sync), whatever the counters held before.

use std::net::SocketAddrV4;

use libbpf_rs::MapCore;
use xlb_bpf::types::{xlb_backend, xlb_counter};
use xlb_bpf::Maps;
use xlb_loader::{DataPlane, LoadOptions};

fn sa(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

/// Counters as the data plane would leave them: `packets` on every CPU.
fn count(m: &Maps, id: u32, packets: u64) {
    let ncpu = libbpf_rs::num_possible_cpus().unwrap();
    let c = xlb_counter {
        packets,
        bytes: packets * 100,
    };
    // SAFETY: plain struct.
    let b = unsafe { plain::as_bytes(&c) }.to_vec();
    m.backend_stats_handle()
        .update_percpu(&id.to_ne_bytes(), &vec![b; ncpu], libbpf_rs::MapFlags::ANY)
        .unwrap();
}

fn packets(m: &Maps, id: u32) -> u64 {
    m.backend_counter(id).unwrap().packets
}

#[test]
fn every_new_generation_starts_from_zero() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = DataPlane::load(&LoadOptions {
        backends: Some(10_000),
        ..Default::default()
    })
    .unwrap();
    let m = &dp.maps;
    let ncpu = libbpf_rs::num_possible_cpus().unwrap() as u64;
    // Stale counts on never-written ids (a counter map that outlived its
    // backends): inside the first batch zeroed ahead, right at its end,
    // and beyond it.
    for id in [0, 1, 2, 4095, 4096, 9000] {
        count(m, id, 7);
        assert_eq!(packets(m, id), 7 * ncpu);
    }
    m.put_backend(0, &xlb_backend::new(sa("10.244.1.1:80"), None, 1))
        .unwrap();
    assert_eq!(packets(m, 0), 0, "first write of id 0");
    for id in [1, 2, 4095] {
        assert_eq!(packets(m, id), 0, "id {id} zeroed ahead with id 0");
    }
    assert_eq!(packets(m, 4096), 7 * ncpu, "batches end after 4096 ids");
    for id in [1, 2, 4095, 4096, 9000] {
        m.put_backend(id, &xlb_backend::new(sa("10.244.1.2:80"), None, 1))
            .unwrap();
        assert_eq!(packets(m, id), 0, "first write of id {id}");
    }

    // Traffic on a written id: kept while the generation stays, zeroed by
    // the next generation (retired), and by the one after (reused), even
    // when counts came in between.
    count(m, 2, 5);
    m.put_backend(2, &xlb_backend::new(sa("10.244.1.2:80"), None, 1))
        .unwrap();
    assert_eq!(packets(m, 2), 5 * ncpu, "same generation keeps the counts");
    let mut retired = xlb_backend::new(sa("10.244.1.2:80"), None, 2);
    retired.flags = 0;
    m.put_backend(2, &retired).unwrap();
    assert_eq!(packets(m, 2), 0, "retired");
    count(m, 2, 3);
    m.put_backend(2, &xlb_backend::new(sa("10.244.9.9:80"), None, 3))
        .unwrap();
    assert_eq!(packets(m, 2), 0, "reused");
}
