//! Attach, replace, detach and pins on a real data plane in a namespace.

mod support;

use std::os::fd::{AsFd, OwnedFd};

use support::{eventually, pin_dir, Netns, PinDir};
use xlb_loader::attach::{self, AttachMode, Hook};
use xlb_loader::{sys, DataPlane, Error, LoadOptions};

fn load(pin: &PinDir) -> DataPlane {
    DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .expect("load pinned data plane")
}

fn progs(dp: &DataPlane) -> (OwnedFd, OwnedFd) {
    (
        dp.xdp_prog().as_fd().try_clone_to_owned().unwrap(),
        dp.tc_prog().as_fd().try_clone_to_owned().unwrap(),
    )
}

#[test]
fn attach_then_detach_leaves_no_program_and_no_pin() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::node();
    let pin = pin_dir();
    let dp = load(&pin);
    let (xdp, tc) = progs(&dp);
    let xdp_id = sys::prog_id(xdp.as_fd()).unwrap();
    let tc_id = sys::prog_id(tc.as_fd()).unwrap();
    let p = pin.path.clone();
    let (up, pod, listed) = ns.run(move || {
        let up = attach::attach_uplink(&p, xdp.as_fd(), "up0", AttachMode::Native, false).unwrap();
        let pod = attach::attach_pod(&p, tc.as_fd(), "vethpod0").unwrap();
        (up, pod, attach::list(&p).unwrap())
    });
    assert_eq!(up.hook, Hook::Xdp(AttachMode::Native));
    assert!(!up.replaced);
    assert_eq!(pod.hook, Hook::Tcx);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .any(|a| a.iface == "up0" && a.prog_id == xdp_id));
    assert!(listed
        .iter()
        .any(|a| a.iface == "vethpod0" && a.prog_id == tc_id));
    // The kernel sees xlb's program on the uplink, in native mode.
    let shown = ns.ip_out(&["-d", "link", "show", "up0"]);
    assert!(
        shown.contains("prog/xdp") && shown.contains("xlb_xdp"),
        "{shown}"
    );
    assert!(
        shown.contains("xdp "),
        "native mode shows as `xdp`: {shown}"
    );

    // The links outlive the loader: drop the data plane, the programs stay.
    drop(dp);
    assert!(sys::prog_exists(xdp_id) && sys::prog_exists(tc_id));

    let p = pin.path.clone();
    let (removed, xdp_after) = ns.run(move || {
        let r = attach::detach(&p, "up0").unwrap();
        let q = sys::xdp_query(sys::ifindex("up0").unwrap()).unwrap();
        (r, q)
    });
    assert_eq!(removed.len(), 1);
    assert_eq!(xdp_after.1, 0, "no XDP program left on up0");
    assert!(!ns
        .ip_out(&["-d", "link", "show", "up0"])
        .contains("prog/xdp"));
    assert!(!pin.path.join("links/xdp_up0").exists());
    assert!(
        pin.path.join("links/tcx_vethpod0").exists(),
        "only up0 was detached"
    );

    // Detaching again says what is wrong.
    let p = pin.path.clone();
    let err = ns.run(move || attach::detach(&p, "up0").unwrap_err());
    assert!(matches!(err, Error::NotAttached { .. }), "{err}");
    assert!(err.to_string().contains("not attached to up0"), "{err}");

    // --all: every hook and every pin, maps included; the programs are freed.
    // tcx holds several programs: what must go is xlb's own on the chain.
    let pod_idx = ns.ifindex("vethpod0");
    let chain = || ns.run(move || xlb_testkit::bpf::tcx_ingress_progs(pod_idx).unwrap());
    assert_eq!(chain(), [tc_id], "xlb's tc program on the tcx chain");
    let p = pin.path.clone();
    let removed = ns.run(move || attach::detach_all(&p).unwrap());
    assert_eq!(removed.hooks.len(), 1);
    assert!(removed.pins.kept.is_empty(), "{removed:?}");
    assert!(removed.pins.dir_removed);
    assert!(!pin.path.exists(), "pin directory removed");
    assert!(
        !chain().contains(&tc_id),
        "xlb's tc program left on vethpod0"
    );
    assert!(
        eventually(|| !sys::prog_exists(xdp_id) && !sys::prog_exists(tc_id)),
        "programs {xdp_id}/{tc_id} still loaded after detach --all"
    );
}

#[test]
fn replace_swaps_the_program_inside_the_same_link_and_reuses_maps() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::node();
    let pin = pin_dir();
    let dp1 = load(&pin);
    // State written through the first load...
    let k = xlb_bpf::types::xlb_svc_key::nodeport(30080, xlb_bpf::Proto::Tcp);
    dp1.maps.put_service(&k, &Default::default()).unwrap();
    let (xdp, tc) = progs(&dp1);
    let p = pin.path.clone();
    ns.run(move || {
        attach::attach_uplink(&p, xdp.as_fd(), "up0", AttachMode::Native, false).unwrap();
        attach::attach_pod(&p, tc.as_fd(), "vethpod0").unwrap();
    });
    attach::pin_programs(&pin.path, &dp1).unwrap();
    let before = attach::list(&pin.path).unwrap();
    let link_ids = |dir: &std::path::Path| -> Vec<u32> {
        let mut v: Vec<u32> = attach::list(dir)
            .unwrap()
            .iter()
            .map(|a| {
                let fd = sys::obj_get(&a.pin).unwrap();
                libbpf_rs::query::LinkInfo::from_fd(fd.as_fd()).unwrap().id
            })
            .collect();
        v.sort();
        v
    };
    let links_before = link_ids(&pin.path);
    drop(dp1);

    // ...is seen by the second load (the maps are reused, not recreated).
    let dp2 = load(&pin);
    assert!(
        dp2.maps.service(&k).unwrap().is_some(),
        "pinned state survives"
    );
    let new_xdp = sys::prog_id(dp2.xdp_prog().as_fd()).unwrap();
    let p = pin.path.clone();
    let replaced = {
        // replace() needs the data plane on the namespace's thread; it is not
        // Send, so enter the namespace on this thread and come back after.
        let me = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        xlb_testkit::enter(&ns.path());
        let r = attach::replace(&p, &dp2);
        use std::os::fd::AsRawFd;
        // SAFETY: valid fd of our original namespace.
        assert_eq!(
            unsafe { libc::setns(me.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        r.unwrap()
    };
    assert_eq!(replaced.len(), 2);
    assert!(replaced.iter().all(|r| r.replaced));
    let after = attach::list(&pin.path).unwrap();
    assert_eq!(
        links_before,
        link_ids(&pin.path),
        "same links, updated in place"
    );
    let up = after.iter().find(|a| a.iface == "up0").unwrap();
    assert_eq!(up.prog_id, new_xdp);
    assert_ne!(
        before.iter().find(|a| a.iface == "up0").unwrap().prog_id,
        new_xdp
    );
    let on_dev = ns.xdp_prog("up0");
    assert_eq!(on_dev, new_xdp);
}

#[test]
fn stale_pinned_map_is_a_clear_error() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = pin_dir();
    // A "services" map of the wrong value size, as an older xlb might have left.
    let mut m = libbpf_rs::MapHandle::create(
        libbpf_rs::MapType::Hash,
        Some("services"),
        8,
        16,
        1024,
        &libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: libbpf_sys::BPF_F_NO_PREALLOC,
            ..Default::default()
        },
    )
    .unwrap();
    m.pin(pin.path.join("services")).unwrap();
    let err = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .err()
    .expect("a stale pin must fail the load");
    let msg = err.to_string();
    assert!(matches!(err, Error::StalePin { .. }), "{msg}");
    assert!(msg.contains("services"), "{msg}");
    assert!(msg.contains("value size 16 (expected 32)"), "{msg}");
    assert!(msg.contains("xlb detach --all"), "{msg}");

    // Something that is not a map at all under a map's name.
    let pin2 = pin_dir();
    let prog = sys::load_trivial(libbpf_sys::BPF_PROG_TYPE_XDP, 2).unwrap();
    sys::obj_pin(prog.as_fd(), &pin2.path.join("backends")).unwrap();
    let err = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin2.path.clone()),
        ..Default::default()
    })
    .err()
    .expect("a program where a map should be must fail");
    assert!(err.to_string().contains("not a map"), "{err}");
}

/// A map of `ty` pinned at `path`, as another xlb build might have left it.
fn pin_map(path: &std::path::Path, ty: libbpf_rs::MapType, name: &str, value: u32, n: u32) {
    let m = libbpf_rs::MapHandle::create(
        ty,
        Some(name),
        4,
        value,
        n,
        &libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        },
    )
    .unwrap();
    let mut m = m;
    m.pin(path).unwrap();
}

/// An upgrade whose private caches changed layout attaches over the old pins:
/// the caches are replaced, the contract maps (ct, Services) are kept.
#[test]
fn attach_over_private_maps_of_another_layout_keeps_ct_and_services() {
    if !xlb_testkit::privileged() {
        return;
    }
    use xlb_bpf::types::{xlb_ct_key, xlb_ct_val, xlb_svc_key, xlb_svc_val};
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    let pin = PinDir::new();
    let dp1 = load(&pin);
    let k = xlb_svc_key::nodeport(30080, xlb_bpf::Proto::Tcp);
    let sv = xlb_svc_val {
        svc_id: 7,
        ..Default::default()
    };
    dp1.maps.put_service(&k, &sv).unwrap();
    let ck = xlb_ct_key::new(
        "10.0.0.1:1234".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
        6,
    );
    let cv = xlb_ct_val {
        backend_id: 3,
        generation: 1,
        ..Default::default()
    };
    dp1.maps.put_ct(&ck, &cv).unwrap();
    let fc_value = {
        use libbpf_rs::MapCore;
        dp1.xdp.maps.flow_cache.value_size()
    };
    drop(dp1);

    // Another build's pins: a flow cache of another slot size, and a next-hop
    // cache at the top level, where older builds pinned every map.
    let private = xlb_loader::pin::private_dir(&pin.path);
    assert!(
        private.join("flow_cache").exists(),
        "private maps pinned apart"
    );
    assert!(!pin.path.join("flow_cache").exists());
    std::fs::remove_file(private.join("flow_cache")).unwrap();
    pin_map(
        &private.join("flow_cache"),
        libbpf_rs::MapType::PercpuArray,
        "flow_cache",
        fc_value - 8,
        4096,
    );
    pin_map(
        &pin.path.join("nh_cache"),
        libbpf_rs::MapType::PercpuArray,
        "nh_cache",
        40,
        1024,
    );

    let dp2 = load(&pin);
    let got = dp2.maps.service(&k).unwrap().expect("Service kept");
    assert_eq!(got.svc_id, sv.svc_id);
    let got = dp2.maps.ct_entry(&ck).unwrap().expect("ct entry kept");
    assert_eq!((got.backend_id, got.generation), (3, 1));
    let pinned = sys::obj_get(&private.join("flow_cache")).unwrap();
    let info = libbpf_rs::MapInfo::new(pinned.as_fd()).unwrap().info;
    assert_eq!(info.value_size, fc_value, "flow_cache replaced");
    assert!(
        !pin.path.join("nh_cache").exists(),
        "old top-level pin removed"
    );
    assert!(private.join("nh_cache").exists());
    let (xdp, _tc) = progs(&dp2);
    let p = pin.path.clone();
    let up = ns.run(move || {
        attach::attach_uplink(&p, xdp.as_fd(), "up0", AttachMode::Native, false).unwrap()
    });
    assert_eq!(up.hook, Hook::Xdp(AttachMode::Native));
}

#[test]
fn attach_errors_say_what_to_do() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let pin = pin_dir();
    let dp = load(&pin);
    let (xdp, _tc) = progs(&dp);
    let p = pin.path.clone();
    let (missing, offload, native_br, fallback, other) = ns.run(move || {
        let missing = attach::attach_uplink(&p, xdp.as_fd(), "nosuch0", AttachMode::Native, false)
            .unwrap_err()
            .to_string();
        let offload = attach::attach_uplink(&p, xdp.as_fd(), "up0", AttachMode::Offload, false)
            .unwrap_err()
            .to_string();
        let native_br = attach::attach_uplink(&p, xdp.as_fd(), "br0", AttachMode::Native, false)
            .unwrap_err()
            .to_string();
        let fallback =
            attach::attach_uplink(&p, xdp.as_fd(), "br0", AttachMode::Native, true).unwrap();
        // Someone else's XDP program on peer0: xlb refuses to replace it.
        let foreign = sys::load_trivial(libbpf_sys::BPF_PROG_TYPE_XDP, 2).unwrap();
        let _l = sys::link_create(
            foreign.as_fd(),
            sys::ifindex("peer0").unwrap() as i32,
            libbpf_sys::BPF_XDP,
            0,
        )
        .unwrap();
        let other = attach::attach_uplink(&p, xdp.as_fd(), "peer0", AttachMode::Native, false)
            .unwrap_err()
            .to_string();
        (missing, offload, native_br, fallback, other)
    });
    assert!(missing.contains("\"nosuch0\" does not exist"), "{missing}");
    assert!(
        offload.contains("offload") && offload.contains("--mode native"),
        "{offload}"
    );
    assert!(offload.contains("driver veth"), "{offload}");
    assert!(
        native_br.contains("driver bridge has no native XDP"),
        "{native_br}"
    );
    assert!(native_br.contains("--mode generic"), "{native_br}");
    assert_eq!(fallback.hook, Hook::Xdp(AttachMode::Generic));
    assert!(fallback
        .warning
        .as_deref()
        .unwrap()
        .contains("generic mode"));
    assert!(other.contains("already has an XDP program"), "{other}");
    assert!(other.contains("xdp off"), "{other}");
}

#[test]
fn bpffs_is_mounted_when_absent() {
    if !xlb_testkit::privileged() {
        return;
    }
    struct Mnt(std::path::PathBuf);
    impl Drop for Mnt {
        fn drop(&mut self) {
            let c = std::ffi::CString::new(self.0.join("mnt").to_str().unwrap()).unwrap();
            // SAFETY: valid path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let base = std::env::temp_dir().join(xlb_testkit::unique_name("xlb-t-"));
    let guard = Mnt(base.clone());
    let pin = base.join("mnt").join("xlb");
    assert!(!xlb_loader::is_bpffs(&base));
    xlb_loader::pin::ensure_pin_dir(&pin).unwrap();
    assert!(
        xlb_loader::is_bpffs(&base.join("mnt")),
        "bpffs mounted at the parent"
    );
    assert!(xlb_loader::is_bpffs(&pin));
    // And the maps pin there.
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.clone()),
        ..Default::default()
    })
    .unwrap();
    assert!(pin.join("services").exists());
    drop(dp);
    drop(guard);
}

/// An upgrade over an older xlb's `config` (a shorter value: later builds
/// append fields whose zero is the default) carries its settings over and
/// keeps connection tracking, instead of refusing the pins.
#[test]
fn load_over_an_older_config_layout_carries_it_over_and_keeps_ct() {
    if !xlb_testkit::privileged() {
        return;
    }
    use libbpf_rs::MapCore;
    use xlb_bpf::types::{xlb_config, xlb_ct_key, xlb_ct_val};
    let pin = PinDir::new();
    let dp1 = load(&pin);
    let ck = xlb_ct_key::new(
        "10.0.0.1:1234".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
        6,
    );
    let cv = xlb_ct_val {
        backend_id: 3,
        generation: 1,
        ..Default::default()
    };
    dp1.maps.put_ct(&ck, &cv).unwrap();
    let size = dp1.xdp.maps.config.value_size();
    drop(dp1);

    // The older build's config: 8 bytes shorter, its settings in them.
    let c = xlb_config {
        node_addr: u32::from_ne_bytes([198, 18, 0, 11]),
        vxlan_port: 8472u16.to_be(),
        mtu: 1450,
        vni: 1,
        ifindex: 7,
        mac: [2, 0, 0, 0, 0, 11],
        flags: 3,
        ..Default::default()
    };
    // SAFETY: xlb_config is Plain.
    let bytes = unsafe { plain::as_bytes(&c) };
    let old_len = size as usize - 8;
    let path = pin.path.join("config");
    std::fs::remove_file(&path).unwrap();
    pin_map(
        &path,
        libbpf_rs::MapType::Array,
        "config",
        old_len as u32,
        1,
    );
    let old = libbpf_rs::MapHandle::from_pinned_path(&path).unwrap();
    old.update(
        &0u32.to_ne_bytes(),
        &bytes[..old_len],
        libbpf_rs::MapFlags::ANY,
    )
    .unwrap();
    drop(old);

    let dp2 = load(&pin);
    assert_eq!(
        dp2.xdp.maps.config.value_size(),
        size,
        "this build's layout"
    );
    let got = dp2.maps.config().unwrap();
    // SAFETY: as above.
    let got_bytes = unsafe { plain::as_bytes(&got) };
    assert_eq!(
        &got_bytes[..old_len],
        &bytes[..old_len],
        "settings carried over"
    );
    assert!(
        got_bytes[old_len..].iter().all(|b| *b == 0),
        "new fields default"
    );
    let ct = dp2.maps.ct().unwrap();
    assert!(
        ct.iter()
            .any(|(k, v)| k.saddr == ck.saddr && k.sport == ck.sport && v.backend_id == 3),
        "ct entry kept: {} entries",
        ct.len()
    );
}

/// A load refused for another contract map's layout leaves an older `config`
/// pin as it was: the settings are carried over only by a load that goes on.
#[test]
fn refused_load_leaves_an_older_config_pin_in_place() {
    if !xlb_testkit::privileged() {
        return;
    }
    use libbpf_rs::MapCore;
    let pin = PinDir::new();
    let dp1 = load(&pin);
    let size = dp1.xdp.maps.config.value_size();
    drop(dp1);
    let config = pin.path.join("config");
    std::fs::remove_file(&config).unwrap();
    pin_map(&config, libbpf_rs::MapType::Array, "config", size - 8, 1);
    // Another contract map of a layout this build cannot use.
    let stats = pin.path.join("stats");
    std::fs::remove_file(&stats).unwrap();
    pin_map(&stats, libbpf_rs::MapType::Array, "stats", 4, 1);

    let err = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .err()
    .expect("the stats pin of another layout refuses the load");
    assert!(err.to_string().contains("stats"), "{err}");
    let kept = libbpf_rs::MapHandle::from_pinned_path(&config).expect("config pin kept");
    assert_eq!(kept.value_size(), size - 8, "the older config, untouched");
}
