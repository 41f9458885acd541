//! `/metrics` per-backend counters: which backend ids serve which Service
//! port is sampled (it takes reading every Maglev table), the counters are
//! read at each scrape; a backend whose id was retired or given to another
//! endpoint since the sample is left out, never shown under its old name.

use std::net::SocketAddrV4;

use libbpf_rs::MapCore;
use xlb::metrics::{Metrics, ServiceLabel};
use xlb_bpf::types::{xlb_backend, xlb_counter, xlb_svc_key, xlb_svc_val};
use xlb_bpf::{Maps, Proto};
use xlb_loader::{DataPlane, LoadOptions};
use xlb_testkit::PinDir;

fn sa(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

/// `packets` on every CPU of backend `id`.
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

/// The `xlb_backend_packets_total` lines of web:80 (backend, value).
fn backend_lines(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("xlb_backend_packets_total{"))
        .filter(|l| l.contains("service=\"web\""))
        .map(|l| {
            let (labels, v) = l.rsplit_once("} ").unwrap();
            let be = labels.split("backend=\"").nth(1).unwrap();
            (be.trim_end_matches('"').to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_scrape_reports_fresh_counts_of_the_sampled_backends() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = PinDir::new();
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .unwrap();
    let m = &dp.maps;
    let ncpu = libbpf_rs::num_possible_cpus().unwrap() as u64;
    m.put_backend(1, &xlb_backend::new(sa("10.244.1.5:8080"), None, 1))
        .unwrap();
    m.put_backend(2, &xlb_backend::new(sa("10.244.2.7:8080"), None, 1))
        .unwrap();
    m.write_maglev(0, &[1, 2, 1, 2, 1, 2, 1]).unwrap();
    let val = xlb_svc_val {
        svc_id: 7,
        table_off: 0,
        table_size: 7,
        ..Default::default()
    };
    m.put_service(&xlb_svc_key::addr(sa("10.96.0.10:80"), Proto::Tcp), &val)
        .unwrap();
    count(m, 1, 5);

    let metrics = Metrics::new();
    metrics.set_maps(Maps::from_pin_dir(&pin.path).unwrap());
    metrics.set_services(vec![ServiceLabel::parse(7, "default/web:80/TCP")]);
    // Without a sample yet, a scrape reads the tables itself.
    assert_eq!(
        backend_lines(&metrics.render()),
        vec![
            ("10.244.1.5:8080".to_string(), 5 * ncpu),
            ("10.244.2.7:8080".to_string(), 0)
        ]
    );
    metrics.sample_maps().unwrap();

    // Counts are read at the scrape, not sampled.
    count(m, 1, 9);
    count(m, 2, 3);
    assert_eq!(
        backend_lines(&metrics.render()),
        vec![
            ("10.244.1.5:8080".to_string(), 9 * ncpu),
            ("10.244.2.7:8080".to_string(), 3 * ncpu)
        ]
    );

    // Id 2 given to another endpoint (a new generation, counters reset) and
    // named by the table: left out until the next sample, which shows it
    // under its new address.
    m.put_backend(2, &xlb_backend::new(sa("10.244.3.3:8080"), None, 2))
        .unwrap();
    count(m, 2, 1);
    assert_eq!(
        backend_lines(&metrics.render()),
        vec![("10.244.1.5:8080".to_string(), 9 * ncpu)]
    );
    metrics.sample_maps().unwrap();
    assert_eq!(
        backend_lines(&metrics.render()),
        vec![
            ("10.244.1.5:8080".to_string(), 9 * ncpu),
            ("10.244.3.3:8080".to_string(), ncpu)
        ]
    );
}
