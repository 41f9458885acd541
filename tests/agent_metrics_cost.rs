//! The cost of a `/metrics` scrape with a full connection-tracking map
//! (root: loads the data plane). One million ct entries are written, the
//! maps are sampled once (the background task's work), and one scrape is
//! rendered; the CPU time of each (getrusage of this thread) is printed, not
//! asserted. What is asserted is that the scrape reports the sample and does
//! not walk ct: entries deleted after the sample still show until the next.
//!
//! `cargo test --release --test agent_metrics_cost -- --nocapture` prints
//! the figures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags};
use xlb::metrics::Metrics;
use xlb_bpf::Maps;
use xlb_loader::{DataPlane, LoadOptions};

const CT: u32 = 1_000_000;

struct PinDir(PathBuf);
impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(xlb_loader::names::file_path(&self.0));
    }
}

/// CPU time (user + system) this thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn ct_line(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("xlb_map_entries{map=\"ct\"} "))
        .expect("a ct occupancy line")
        .parse()
        .unwrap()
}

#[test]
fn scrape_cost_at_one_million_ct_entries() {
    if !xlb_loader::testutil::privileged() {
        return;
    }
    let pin = PinDir(Path::new("/sys/fs/bpf").join(xlb_loader::testutil::unique_name("xlb-m-")));
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.0.clone()),
        ct_entries: Some(1 << 21),
        ..Default::default()
    })
    .unwrap();
    let maps = Maps::from_pin_dir(&pin.0).unwrap();
    let ct = maps.all().into_iter().find(|(n, _)| *n == "ct").unwrap().1;
    let (ks, vs) = (ct.key_size() as usize, ct.value_size() as usize);
    let val = vec![0u8; vs];
    let key = |i: u32| {
        let mut k = vec![0u8; ks];
        k[..4].copy_from_slice(&i.to_ne_bytes());
        k
    };
    for i in 0..CT {
        ct.update(&key(i), &val, MapFlags::ANY).unwrap();
    }
    drop(dp);

    let m = Metrics::new();
    m.set_maps(Maps::from_pin_dir(&pin.0).unwrap());
    assert!(
        !m.render().contains("xlb_map_entries{map=\"ct\"}"),
        "no occupancy before the first sample"
    );

    let t0 = thread_cpu();
    m.sample_maps().unwrap();
    let sample = thread_cpu() - t0;
    let t0 = thread_cpu();
    let text = m.render();
    let scrape = thread_cpu() - t0;
    let n = ct_line(&text);
    println!(
        "ct entries {n}: one map sample {:.1} ms CPU, one scrape {:.3} ms CPU ({} bytes)",
        sample.as_secs_f64() * 1e3,
        scrape.as_secs_f64() * 1e3,
        text.len()
    );
    assert!(n >= u64::from(CT) * 9 / 10, "{n} entries counted");

    // Deleted after the sample: the scrape still says the sampled figure.
    for i in 0..1000 {
        ct.delete(&key(i)).unwrap();
    }
    assert_eq!(ct_line(&m.render()), n, "a scrape does not walk ct");
    m.sample_maps().unwrap();
    assert_eq!(ct_line(&m.render()), n - 1000, "the next sample sees it");
}
