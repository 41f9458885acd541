//! `xlb attach`, `xlb detach` and `xlb doctor` as an operator runs them, in a
//! namespace: what they leave behind, their errors and exit codes.

mod cli_support;

use cli_support::{eventually, pin_dir, stderr, stdout, xlb, Netns};
use xlb_loader::sys;

#[test]
fn attach_upgrade_detach_leave_nothing_behind() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::node();
    let pin = pin_dir();
    let p = &pin.path;

    let o = xlb(Some(&ns), p, &["attach", "--iface", "up0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("up0") && out.contains("xdp/native") && out.contains("attached"),
        "{out}"
    );
    assert!(
        out.contains("vethpod0") && out.contains("tcx/ingress"),
        "{out}"
    );
    assert!(
        !out.contains("eth0p"),
        "eth0p does not match the pod patterns: {out}"
    );
    let first = ns.xdp_prog("up0");
    assert_ne!(first, 0, "an XDP program on up0");
    for f in [
        "links/xdp_up0",
        "links/tcxe_up0",
        "links/tcx_vethpod0",
        "progs/xdp",
        "progs/tc",
        "services",
        "ct",
    ] {
        assert!(p.join(f).exists(), "{f} pinned");
    }

    // Upgrade: the same command again swaps the programs in place.
    let o = xlb(Some(&ns), p, &["attach", "--iface", "up0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let att = j["attached"].as_array().unwrap();
    assert_eq!(att.len(), 2);
    assert!(att.iter().all(|a| a["replaced"] == true), "{j}");
    let second = ns.xdp_prog("up0");
    assert_ne!(first, second);
    assert!(eventually(|| !sys::prog_exists(first)), "old program freed");

    // Detach the uplink: no XDP program left, the pod hook and maps stay.
    let o = xlb(Some(&ns), p, &["detach", "--iface", "up0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("up0") && stdout(&o).contains("detached"));
    assert_eq!(ns.xdp_prog("up0"), 0);
    assert!(!p.join("links/xdp_up0").exists());
    assert!(p.join("services").exists(), "maps stay pinned");

    // Detaching what is not attached: exit 1 and what to do.
    let o = xlb(Some(&ns), p, &["detach", "--iface", "up0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("xlb is not attached to up0"),
        "{}",
        stderr(&o)
    );

    // --all: every hook and pin; the programs are freed.
    // tcx holds several programs: what must go is xlb's own on the chain.
    let tc_id = sys::prog_id(sys::obj_get(&p.join("progs/tc")).unwrap().as_fd_ref()).unwrap();
    let pod_idx = ns.ifindex("vethpod0");
    let chain = || ns.run(move || xlb_testkit::bpf::tcx_ingress_progs(pod_idx).unwrap());
    assert_eq!(chain(), [tc_id], "xlb's tc program on the tcx chain");
    let o = xlb(Some(&ns), p, &["detach", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!p.exists(), "pin directory removed");
    assert!(
        !chain().contains(&tc_id),
        "xlb's tc program left on vethpod0"
    );
    assert!(eventually(
        || !sys::prog_exists(second) && !sys::prog_exists(tc_id)
    ));
}

trait AsFdRef {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl AsFdRef for std::os::fd::OwnedFd {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

#[test]
fn attach_errors_are_clear_and_exit_1() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let pin = pin_dir();
    let p = &pin.path;
    let none = ["--pod-ifaces", ""];

    let o = xlb(Some(&ns), p, &["attach", "--iface", "nosuch0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("interface \"nosuch0\" does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(!p.join("services").exists(), "a failed attach pins nothing");

    // No native XDP on a bridge (the loader's attach tests cover the other
    // refusals and their texts): exit 1, or the explicit fallback.
    let o = xlb(
        Some(&ns),
        p,
        &["attach", "--iface", "br0", none[0], none[1]],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("driver bridge has no native XDP"),
        "{}",
        stderr(&o)
    );
    let o = xlb(
        Some(&ns),
        p,
        &[
            "attach",
            "--iface",
            "br0",
            "--fallback-generic",
            none[0],
            none[1],
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("xdp/generic"));
    assert!(stderr(&o).contains("warning: br0"), "{}", stderr(&o));
    let shown = ns.ip_out(&["-d", "link", "show", "br0"]);
    assert!(shown.contains("xdpgeneric"), "{shown}");

    // Asking for another mode on an attached interface.
    let o = xlb(
        Some(&ns),
        p,
        &[
            "attach", "--iface", "br0", "--mode", "native", none[0], none[1],
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("xlb detach --iface br0"),
        "{}",
        stderr(&o)
    );

    // Usage errors: exit 2.
    for args in [
        &["attach", "--iface", "up0", "--mode", "turbo"][..],
        &["attach"][..],
        &["detach"][..],
        &["detach", "--iface", "up0", "--all"][..],
        &["attach", "--iface", "up0", "--pod-ifaces", "a b"][..],
    ] {
        let o = xlb(Some(&ns), p, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn stale_pin_directory_is_a_clear_error() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    let pin = pin_dir();
    // A "ct" map of the wrong type (HASH instead of LRU_HASH) and size.
    let mut m = libbpf_rs::MapHandle::create(
        libbpf_rs::MapType::Hash,
        Some("ct"),
        16,
        40,
        128,
        &libbpf_sys_opts(),
    )
    .unwrap();
    m.pin(pin.path.join("ct")).unwrap();
    let o = xlb(Some(&ns), &pin.path, &["attach", "--iface", "up0"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("stale pin") && e.contains("/ct"), "{e}");
    assert!(e.contains("type 1 (expected 9)"), "{e}");
    assert!(
        e.contains(&format!(
            "xlb detach --all --pin-dir {}",
            pin.path.display()
        )),
        "{e}"
    );
    assert_eq!(ns.xdp_prog("up0"), 0, "nothing attached");
    // The advice works.
    let o = xlb(Some(&ns), &pin.path, &["detach", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xlb(Some(&ns), &pin.path, &["attach", "--iface", "up0"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn libbpf_sys_opts() -> libbpf_sys_shim::Opts {
    libbpf_sys_shim::opts()
}

/// The root crate has no direct libbpf-sys dependency; libbpf-rs re-exports it.
mod libbpf_sys_shim {
    pub type Opts = libbpf_rs::libbpf_sys::bpf_map_create_opts;
    pub fn opts() -> Opts {
        Opts {
            sz: std::mem::size_of::<Opts>() as _,
            ..Default::default()
        }
    }
}

#[test]
fn without_tcx_the_cli_falls_back_to_clsact_and_says_so() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::node();
    let pin = pin_dir();
    let o = cli_support::xlb_env(
        Some(&ns),
        &pin.path,
        &["attach", "--iface", "up0"],
        &[(xlb_loader::attach::NO_TCX_ENV, "1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("tc/clsact ingress"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("classic tc filter on clsact"),
        "{}",
        stderr(&o)
    );
    let f = cli_support::sh_out(&[
        "tc", "-n", &ns.name, "filter", "show", "dev", "vethpod0", "ingress",
    ]);
    assert!(f.contains("xlb_tc"), "{f}");
    let o = xlb(Some(&ns), &pin.path, &["detach", "--pods"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = cli_support::sh_out(&[
        "tc", "-n", &ns.name, "filter", "show", "dev", "vethpod0", "ingress",
    ]);
    assert!(!f.contains("xlb_tc"), "{f}");
    assert_ne!(ns.xdp_prog("up0"), 0, "--pods keeps the uplink");
}

#[test]
fn doctor_reports_and_exit_codes() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    let pin = pin_dir();
    let sysctl =
        |kv: &str| cli_support::sh(&["ip", "netns", "exec", &ns.name, "sysctl", "-qw", kv]);

    // Forwarding off and strict rp_filter: warnings with the fix, still runnable.
    sysctl("net.ipv4.conf.up0.forwarding=0");
    sysctl("net.ipv4.conf.all.rp_filter=1");
    let o = xlb(Some(&ns), &pin.path, &["doctor", "--iface", "up0"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("[warn] forwarding"), "{out}");
    assert!(out.contains("net.ipv4.conf.up0.forwarding=1"), "{out}");
    assert!(out.contains("[warn] rp_filter"), "{out}");
    assert!(
        out.ends_with("xlb can run here (see the warnings)\n"),
        "{out}"
    );

    sysctl("net.ipv4.conf.up0.forwarding=1");
    sysctl("net.ipv4.conf.all.rp_filter=2");
    let o = xlb(Some(&ns), &pin.path, &["doctor", "--iface", "up0"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for line in [
        "[ok  ] kernel",
        "[ok  ] BTF",
        "[ok  ] bpffs",
        "[ok  ] data plane",
        "[ok  ] tcx",
        "[ok  ] forwarding",
        "[ok  ] rp_filter    reverse-path filtering loose on up0",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(
        out.contains("[ok  ] native XDP") && out.contains("driver veth"),
        "{out}"
    );
    assert!(out.ends_with("xlb can run here\n"), "{out}");
    // The probe left nothing on the interface.
    assert_eq!(ns.xdp_prog("up0"), 0);

    let o = xlb(
        Some(&ns),
        &pin.path,
        &["doctor", "--iface", "br0", "--json"],
    );
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let native = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "native XDP")
        .unwrap();
    assert_eq!(native["status"], "warn");
    assert!(
        native["fix"].as_str().unwrap().contains("--mode generic"),
        "{native}"
    );

    let o = xlb(Some(&ns), &pin.path, &["doctor", "--iface", "nosuch0"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "xlb cannot run on a missing interface"
    );
    let out = stdout(&o);
    assert!(
        out.contains("[FAIL] interface") && out.contains("xlb cannot run here"),
        "{out}"
    );
}

#[test]
fn follow_attaches_pod_interfaces_as_they_appear() {
    if !xlb_testkit::privileged() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    let pin = pin_dir();
    let f = std::fs::File::open(ns.path()).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xlb"));
    cmd.arg("--pin-dir")
        .arg(&pin.path)
        .args(["attach", "--iface", "up0", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setns is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(cmd.spawn().unwrap());
    drop(f);
    assert!(
        eventually(|| pin.path.join("links/xdp_up0").exists()),
        "uplink attached"
    );
    ns.veth("vethlate", "eth0l");
    assert!(
        eventually(|| pin.path.join("links/tcx_vethlate").exists()),
        "a pod interface that appeared later is attached"
    );
    ns.ip(&["link", "del", "vethlate"]);
    assert!(
        eventually(|| !pin.path.join("links/tcx_vethlate").exists()),
        "its pin goes with it"
    );
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM ends --follow cleanly: {status:?}"
    );
    assert_ne!(ns.xdp_prog("up0"), 0, "and leaves the data plane attached");
}

/// `--ct-entries` (and `--ct6-entries` for `ct6`) sizes connection tracking
/// when the maps are created; later
/// loads without it (a re-attach, the agent) keep the pinned size, and a
/// different size is a clear stale-pin error, not a silent re-creation.
#[test]
fn ct_entries_is_chosen_at_attach_and_kept_by_later_loads() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    let pin = pin_dir();
    let p = &pin.path;
    let size_of = |name: &str| {
        let h = libbpf_rs::MapHandle::from_pinned_path(p.join(name)).unwrap();
        libbpf_rs::MapInfo::new(std::os::fd::AsFd::as_fd(&h))
            .unwrap()
            .info
            .max_entries
    };
    let ct_size = || size_of("ct");
    let o = xlb(
        Some(&ns),
        p,
        &[
            "attach",
            "--iface",
            "up0",
            "--ct-entries",
            "8192",
            "--ct6-entries",
            "4096",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ct_size(), 8192);
    assert_eq!(size_of("ct6"), 4096, "--ct6-entries sizes ct6");
    let o = xlb(Some(&ns), p, &["attach", "--iface", "up0"]);
    assert!(o.status.success(), "re-attach keeps it: {}", stderr(&o));
    assert_eq!(ct_size(), 8192);
    assert_eq!(size_of("ct6"), 4096);
    let o = xlb(
        Some(&ns),
        p,
        &["attach", "--iface", "up0", "--ct6-entries", "8192"],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("/ct6") && e.contains("max entries 4096 (expected 8192)"),
        "{e}"
    );
    let o = xlb(
        Some(&ns),
        p,
        &["attach", "--iface", "up0", "--ct-entries", "16384"],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("/ct") && e.contains("max entries 8192 (expected 16384)"),
        "{e}"
    );
    let o = xlb(
        Some(&ns),
        p,
        &["attach", "--iface", "up0", "--ct-entries", "7"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = xlb(Some(&ns), p, &["detach", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
