//! Two `xlb_bpf::Maps` of the same maps in one process (the agent's syncer
//! and its metrics) share one memory mapping of each mapped array: the
//! kernel maps every page of a BPF array at mmap time, so a second mapping
//! would count the whole array in the resident set again.

use xlb_bpf::Maps;
use xlb_loader::{DataPlane, LoadOptions};
use xlb_testkit::PinDir;

/// A size no other map of the data plane has: 5003 slots * 8 bytes = 10 pages.
const SLOTS: u32 = 5003;
const MAPPING_BYTES: u64 = 40960;

/// Mappings of BPF maps of exactly `MAPPING_BYTES` in this process.
fn maglev_mappings() -> usize {
    let smaps = std::fs::read_to_string("/proc/self/maps").unwrap();
    smaps
        .lines()
        .filter(|l| l.contains("anon_inode:bpf-map"))
        .filter(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            b - a == MAPPING_BYTES
        })
        .count()
}

#[test]
fn two_handles_of_one_map_share_one_mapping() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = PinDir::new();
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        maglev_slots: Some(SLOTS),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(maglev_mappings(), 0);
    dp.maps.write_maglev(10, &[7, 8, 9]).unwrap();
    assert_eq!(maglev_mappings(), 1);
    let other = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(other.read_maglev(10, 3).unwrap(), vec![7, 8, 9]);
    assert_eq!(
        maglev_mappings(),
        1,
        "the second handle maps the array again"
    );
    // Either one dropped, the other's mapping lives on.
    drop(dp);
    other.write_maglev(5000, &[1, 2, 3]).unwrap();
    assert_eq!(other.read_maglev(5000, 3).unwrap(), vec![1, 2, 3]);
    assert_eq!(other.maglev_slot_syscall(5002).unwrap(), Some(3));
    assert_eq!(maglev_mappings(), 1);
    drop(other);
    assert_eq!(maglev_mappings(), 0);
}
