//! The `maglev` array is `BPF_F_MMAPABLE` and `xlb_bpf::Maps` writes and reads
//! Maglev tables as memory: what it writes through the mapping is what the
//! kernel's own lookup returns (and so what the data plane reads), and the
//! other way round; bounds are still checked; a pin left by an older xlb
//! without the flag is a clear error naming the fix.

use std::path::Path;

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags};
use xlb_bpf::Maps;
use xlb_loader::{DataPlane, LoadOptions};
use xlb_testkit::PinDir;

/// Not a page multiple (4099 * 8 bytes), so the last slots sit in a partly used page.
const SLOTS: u32 = 4099;

fn load_small() -> DataPlane {
    DataPlane::load(&LoadOptions {
        maglev_slots: Some(SLOTS),
        ..Default::default()
    })
    .expect("load")
}

fn table(seed: u32, len: u32) -> Vec<u32> {
    (0..len)
        .map(|i| seed.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) | 1)
        .collect()
}

#[test]
fn mmap_writes_are_what_the_kernel_sees() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = load_small();
    let m = &dp.maps;
    let flags = libbpf_rs::MapInfo::new(std::os::fd::AsFd::as_fd(&m.maglev))
        .unwrap()
        .info
        .map_flags;
    assert_ne!(flags & libbpf_sys::BPF_F_MMAPABLE, 0, "flags {flags:#x}");

    // A region in the middle, one at the very end, one at 0.
    let regions = [(100u32, 251u32), (SLOTS - 7, 7), (0, 13)];
    for (n, (off, len)) in regions.iter().enumerate() {
        let t = table(n as u32 + 1, *len);
        m.write_maglev(*off, &t).unwrap();
        assert_eq!(m.read_maglev(*off, *len).unwrap(), t, "mmap read at {off}");
        for (i, v) in t.iter().enumerate() {
            let slot = off + i as u32;
            assert_eq!(
                m.maglev_slot_syscall(slot).unwrap(),
                Some(*v),
                "kernel lookup of slot {slot}"
            );
        }
    }
    // Neighbours of the regions were not touched.
    for slot in [99, 351, SLOTS - 8, 13] {
        assert_eq!(m.maglev_slot_syscall(slot).unwrap(), Some(0), "slot {slot}");
        assert_eq!(m.read_maglev(slot, 1).unwrap(), vec![0], "slot {slot}");
    }

    // The other way: an ordinary map update is visible through the mapping.
    m.maglev
        .update(
            &500u32.to_ne_bytes(),
            &0xdead_beefu32.to_ne_bytes(),
            MapFlags::ANY,
        )
        .unwrap();
    assert_eq!(m.read_maglev(499, 3).unwrap(), vec![0, 0xdead_beef, 0]);

    // Overwriting a region in place replaces every slot.
    let t2 = table(99, 251);
    m.write_maglev(100, &t2).unwrap();
    let via_syscall: Vec<u32> = (100..351)
        .map(|s| m.maglev_slot_syscall(s).unwrap().unwrap())
        .collect();
    assert_eq!(via_syscall, t2);
}

#[test]
fn out_of_range_is_an_error_and_writes_nothing() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = load_small();
    let m = &dp.maps;
    // Crosses the end: rejected before any slot is written.
    let e = m.write_maglev(SLOTS - 3, &[7; 7]).unwrap_err();
    assert!(
        matches!(e, xlb_bpf::Error::OutOfRange { map: "maglev", index, max }
            if index == u64::from(SLOTS) + 3 && max == SLOTS),
        "{e}"
    );
    assert_eq!(m.read_maglev(SLOTS - 3, 3).unwrap(), vec![0, 0, 0]);
    // Wholly outside, and at the top of u32 (no overflow).
    assert!(matches!(
        m.write_maglev(SLOTS, &[1]),
        Err(xlb_bpf::Error::OutOfRange { .. })
    ));
    assert!(matches!(
        m.write_maglev(u32::MAX, &[1, 2]),
        Err(xlb_bpf::Error::OutOfRange { .. })
    ));
    assert!(matches!(
        m.read_maglev(SLOTS - 1, 2),
        Err(xlb_bpf::Error::OutOfRange { .. })
    ));
    assert!(matches!(
        m.read_maglev(u32::MAX, u32::MAX),
        Err(xlb_bpf::Error::OutOfRange { .. })
    ));
    assert!(matches!(
        m.maglev_slot_syscall(SLOTS),
        Err(xlb_bpf::Error::OutOfRange { .. })
    ));
    // Empty is fine anywhere.
    m.write_maglev(u32::MAX, &[]).unwrap();
    assert!(m.read_maglev(u32::MAX, 0).unwrap().is_empty());
}

#[test]
fn pinned_maps_share_one_array() {
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
    let t = table(5, 1009);
    dp.maps.write_maglev(2000, &t).unwrap();
    // A second process's view (the CLI, a restarted agent): the pin.
    let other = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(other.read_maglev(2000, 1009).unwrap(), t);
    let t2 = table(6, 1009);
    other.write_maglev(2000, &t2).unwrap();
    drop(other); // unmaps; the loader's mapping and the map live on
    assert_eq!(dp.maps.read_maglev(2000, 1009).unwrap(), t2);
    assert_eq!(dp.maps.maglev_slot_syscall(3008).unwrap(), Some(t2[1008]));
}

/// A `maglev` pinned by an xlb from before `BPF_F_MMAPABLE`.
fn pin_old_maglev(dir: &Path) {
    let mut old = libbpf_rs::MapHandle::create(
        libbpf_rs::MapType::Array,
        Some("maglev"),
        4,
        4,
        xlb_bpf::consts::XLB_MAGLEV_SLOTS,
        &libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        },
    )
    .unwrap();
    old.pin(dir.join("maglev")).unwrap();
}

#[test]
fn old_unmappable_pin_is_a_clear_error() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = PinDir::new();
    pin_old_maglev(&pin.path);

    // Loading (xlb attach, the agent) refuses to reuse it.
    let e = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .err()
    .expect("an unmappable maglev pin must fail the load");
    let msg = e.to_string();
    assert!(matches!(e, xlb_loader::Error::StalePin { .. }), "{msg}");
    assert!(
        msg.contains("maglev") && msg.contains("BPF_F_MMAPABLE"),
        "{msg}"
    );
    assert!(msg.contains("xlb detach --all"), "{msg}");
    assert!(msg.contains("xlb agent --cleanup"), "{msg}");

    // Opening the pins (xlb maps, doctor, adopt) says the same.
    let e = Maps::from_pin_dir(&pin.path).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, xlb_bpf::Error::NotMmapable { .. }), "{msg}");
    assert!(msg.contains("BPF_F_MMAPABLE"), "{msg}");
    assert!(msg.contains("xlb detach --all"), "{msg}");
    assert!(msg.contains("xlb agent --cleanup"), "{msg}");
    assert!(msg.contains(&pin.path.display().to_string()), "{msg}");

    // After removing the stale pin the load succeeds and the array maps.
    std::fs::remove_file(pin.path.join("maglev")).unwrap();
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        maglev_slots: Some(SLOTS),
        ..Default::default()
    })
    .unwrap();
    dp.maps.write_maglev(0, &[3; 251]).unwrap();
    assert_eq!(
        Maps::from_pin_dir(&pin.path)
            .unwrap()
            .read_maglev(0, 251)
            .unwrap(),
        vec![3; 251]
    );
}

/// `backends` is memory-mapped too: every backend written through the
/// mapping reads back the same through the kernel's lookup, also at the last
/// id; an id past the array is an error and writes nothing.
#[test]
fn backend_writes_through_the_mapping_are_what_the_kernel_sees() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = DataPlane::load(&LoadOptions {
        backends: Some(1000),
        maglev_slots: Some(SLOTS),
        ..Default::default()
    })
    .expect("load");
    let m = &dp.maps;
    let flags = libbpf_rs::MapInfo::new(std::os::fd::AsFd::as_fd(&m.backends))
        .unwrap()
        .info
        .map_flags;
    assert_ne!(flags & libbpf_sys::BPF_F_MMAPABLE, 0, "flags {flags:#x}");
    let last = m.backends.max_entries() - 1;
    let mut written = Vec::new();
    for (i, id) in [0u32, 1, 2, 500, last].into_iter().enumerate() {
        let node = (i % 2 == 1).then(|| std::net::Ipv4Addr::new(198, 18, 0, 10 + i as u8));
        let addr = std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::new(10, 244, i as u8, 7),
            8000 + i as u16,
        );
        let mut b = xlb_bpf::types::xlb_backend::new(addr, node, 3 + i as u32);
        b.flags |= (i as u8) << 1;
        m.put_backend(id, &b).unwrap();
        written.push((id, b));
    }
    let fields = |b: &xlb_bpf::types::xlb_backend| (b.addr, b.port, b.flags, b.node, b.generation);
    for (id, b) in &written {
        let got = m.backend(*id).unwrap().expect("slot");
        assert_eq!(fields(&got), fields(b), "id {id}");
    }
    // Rewriting in place (a retire: flags and generation) is seen too.
    let (id, mut b) = written[3];
    b.flags = 0;
    b.generation += 1;
    m.put_backend(id, &b).unwrap();
    assert_eq!(m.backend(id).unwrap().unwrap().generation, b.generation);
    assert!(!m.backend(id).unwrap().unwrap().is_active());

    let e = m.put_backend(last + 1, &b).unwrap_err();
    assert!(e.to_string().contains("backends"), "{e}");
}
