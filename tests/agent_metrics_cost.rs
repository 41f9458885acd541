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
        let _ = std::fs::remove_file(xlb::names::path(&self.0));
    }
}

/// CPU time (user + system) this thread has used: getrusage(RUSAGE_THREAD)
/// and the thread CPU clock (getrusage's resolution may be a scheduler
/// tick; the clock's is nanoseconds).
fn thread_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage and clock_gettime fill the structs we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    (
        tv(ru.ru_utime) + tv(ru.ru_stime),
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
    )
}

/// CPU used by `f` on this thread: (getrusage, thread clock).
fn cpu_of<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (r0, c0) = thread_cpu();
    let out = f();
    let (r1, c1) = thread_cpu();
    (out, r1 - r0, c1 - c0)
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
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = PinDir(Path::new("/sys/fs/bpf").join(xlb_testkit::unique_name("xlb-m-")));
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

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (r, sample_ru, sample_clk) = cpu_of(|| m.sample_maps());
    r.unwrap();
    let (text, scrape_ru, scrape_clk) = cpu_of(|| m.render());
    let n = ct_line(&text);
    let (_, walk_ru, walk_clk) = cpu_of(|| Maps::count(ct));
    println!(
        "ct entries {n}: one scrape {:.3} ms CPU (getrusage {:.1} ms; {} bytes); \
         one background map sample {:.1} ms CPU (getrusage {:.1} ms); \
         for comparison, one key-by-key ct walk {:.1} ms CPU (getrusage {:.1} ms)",
        ms(scrape_clk),
        ms(scrape_ru),
        text.len(),
        ms(sample_clk),
        ms(sample_ru),
        ms(walk_clk),
        ms(walk_ru),
    );
    assert!(n >= u64::from(CT) * 9 / 10, "{n} entries counted");

    // Deleted after the sample: the scrape still says the sampled figure.
    for i in 0..1000 {
        ct.delete(&key(i)).unwrap();
    }
    assert_eq!(ct_line(&m.render()), n, "a scrape does not walk ct");
    // The frequent sample leaves the LRU maps' figures alone...
    let (r, quick_ru, quick_clk) = cpu_of(|| m.sample(false));
    r.unwrap();
    println!(
        "a sample without the LRU maps: {:.3} ms CPU (getrusage {:.1} ms)",
        ms(quick_clk),
        ms(quick_ru)
    );
    assert_eq!(ct_line(&m.render()), n);
    // ... the full one counts them.
    m.sample_maps().unwrap();
    assert_eq!(
        ct_line(&m.render()),
        n - 1000,
        "the next full sample sees it"
    );
}
