//! A wrong `--pin-dir` costs nobody a file: `xlb detach --all` and `xlb
//! agent --cleanup` remove only xlb's own pins on a bpf filesystem, `xlb
//! attach` never mounts a bpffs over files, a file as pin directory is a
//! usage error (exit 2); and a bpffs private to a mount namespace (`ip netns
//! exec`) is called out by attach and doctor.
//!
//! Temporary directories and private bpffs mounts live under unique paths
//! and are unmounted and removed on drop.

mod cli_support;

use std::path::Path;

use cli_support::{eventually, sh, stderr, stdout, xlb, Netns, PinDir};
use xlb_loader::{is_bpffs, sys};
use xlb_testkit as testutil;
use xlb_testkit::tmp::mounts_under;
use xlb_testkit::TempDir;

/// A private bpffs mounted on a unique temporary directory.
struct Bpffs(TempDir);

impl Bpffs {
    fn new() -> Self {
        let t = TempDir::new("xlb-ps-");
        sh(&["mount", "-t", "bpf", "bpf", t.path().to_str().unwrap()]);
        assert!(is_bpffs(t.path()));
        Self(t)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A foreign pinned map (another tool's), at `path`.
fn pin_foreign_map(path: &Path, name: &str) {
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let mut m =
        libbpf_rs::MapHandle::create(libbpf_rs::MapType::Hash, Some(name), 4, 4, 8, &opts).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    m.pin(path).unwrap();
}

fn is_pinned(path: &Path) -> bool {
    sys::obj_get(path).is_ok()
}

/// Ordinary files that must survive every refused command.
fn ordinary_tree(d: &Path) {
    std::fs::create_dir_all(d.join("links")).unwrap();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    for f in ["services", "ct", "links/xdp_eth0", "sub/file"] {
        std::fs::write(d.join(f), f).unwrap();
    }
}

fn ordinary_tree_intact(d: &Path) {
    for f in ["services", "ct", "links/xdp_eth0", "sub/file"] {
        assert_eq!(
            std::fs::read_to_string(d.join(f)).ok().as_deref(),
            Some(f),
            "{f} intact"
        );
    }
}

#[test]
fn removing_refuses_an_ordinary_directory_or_a_file_and_touches_nothing() {
    if !testutil::privileged() {
        return;
    }
    let t = TempDir::new("xlb-ps-");
    let d = t.path().join("d");
    ordinary_tree(&d);
    let file = t.path().join("file");
    std::fs::write(&file, "file").unwrap();

    for args in [&["detach", "--all"][..], &["agent", "--cleanup"][..]] {
        let o = xlb(None, &d, args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains("not on a bpf filesystem"), "{e}");
        assert!(e.contains("nothing was removed"), "{e}");
        assert!(!e.contains("run as root"), "{e}");
        ordinary_tree_intact(&d);

        for p in [file.clone(), file.join("xlb")] {
            let o = xlb(None, &p, args);
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?} {p:?}: {e}");
            assert!(e.contains("file"), "{e}");
            assert!(!e.contains("run as root"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "file");
    }
    // A pin directory that does not exist: nothing to do, exit 0.
    let o = xlb(None, &t.path().join("absent"), &["detach", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing of xlb's"), "{}", stdout(&o));
}

#[test]
fn attach_never_mounts_over_files_and_a_file_pin_dir_is_a_usage_error() {
    if !testutil::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    let t = TempDir::new("xlb-ps-");
    let none = ["--pod-ifaces", ""];
    let attach = ["attach", "--iface", "up0", none[0], none[1]];

    // D/xlb with D an ordinary directory with files: refused, D untouched.
    let d = t.path().join("d");
    ordinary_tree(&d);
    let o = xlb(Some(&ns), &d.join("xlb"), &attach);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("has files in it") && e.contains("never over files"),
        "{e}"
    );
    assert!(!e.contains("run as root"), "{e}");
    assert!(!is_bpffs(&d), "no bpffs mounted over {d:?}");
    assert!(mounts_under(t.path()).is_empty(), "no mount left behind");
    ordinary_tree_intact(&d);
    assert!(!d.join("xlb").exists());
    assert_eq!(ns.xdp_prog("up0"), 0, "nothing attached");

    // A regular file as the pin directory, or above it.
    let file = t.path().join("file");
    std::fs::write(&file, "file").unwrap();
    for p in [file.clone(), file.join("xlb")] {
        let o = xlb(Some(&ns), &p, &attach);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{p:?}: {e}");
        assert!(e.contains("is a file, not a directory"), "{e}");
        assert!(!e.contains("run as root"), "{e}");
        assert!(mounts_under(t.path()).is_empty(), "no mount left behind");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "file");

    // A new directory: xlb mounts its bpffs there and says what that means.
    let new = t.path().join("new");
    let o = xlb(Some(&ns), &new.join("xlb"), &attach);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(&format!(
            "warning: mounted a bpf filesystem at {}",
            new.display()
        )),
        "{e}"
    );
    assert!(
        e.contains("only as long as the current mount namespace")
            && e.contains("nsenter --net=/run/netns/NAME"),
        "{e}"
    );
    assert!(
        !e.contains("not the host's"),
        "this is the host's namespace: {e}"
    );
    assert!(is_bpffs(&new));
    let o = xlb(Some(&ns), &new.join("xlb"), &["detach", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ns.xdp_prog("up0"), 0);
}

/// What `detach --all` / `agent --cleanup` must leave on a bpffs holding
/// other tools' pins, with xlb's pin directory at its root.
fn only_xlb_pins_go(cmd: &[&str]) {
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    ns.veth("vethpod0", "eth0p");
    let fs = Bpffs::new();
    let root = fs.path();
    let cilium = root.join("tc/globals/cilium_lb4_services");
    pin_foreign_map(&cilium, "cilium_lb4_ser");
    pin_foreign_map(&root.join("foreign_map"), "foreign");
    // One in xlb's links directory.
    pin_foreign_map(&root.join("links/someone_else"), "other");

    let o = xlb(Some(&ns), root, &["attach", "--iface", "up0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(is_pinned(&root.join("services")) && is_pinned(&root.join("links/xdp_up0")));
    assert_ne!(ns.xdp_prog("up0"), 0);

    let o = xlb(Some(&ns), root, cmd);
    let out = stdout(&o);
    assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
    assert_eq!(ns.xdp_prog("up0"), 0, "hooks detached");
    for kept in [&cilium, &root.join("foreign_map")] {
        assert!(is_pinned(kept), "{kept:?} kept: {out}");
    }
    assert!(is_pinned(&root.join("links/someone_else")), "{out}");
    assert!(
        out.contains("tc") && out.contains("kept (not xlb's)"),
        "what was kept is listed: {out}"
    );
    for gone in [
        "services",
        "ct",
        "maglev",
        "progs",
        "links/xdp_up0",
        "links/tcx_vethpod0",
    ] {
        assert!(!root.join(gone).exists(), "{gone} removed: {out}");
    }
    assert!(root.exists() && is_bpffs(root));
    assert!(!xlb::names::path(root).exists());

    // Another tool's map pinned under a name xlb uses for one of its maps
    // (the kernel's name for it tells them apart): kept.
    pin_foreign_map(&root.join("config"), "other_config");
    let o = xlb(Some(&ns), root, cmd);
    assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
    assert!(is_pinned(&root.join("config")), "{}", stdout(&o));
    assert!(is_pinned(&cilium));
}

#[test]
fn detach_all_on_a_bpffs_root_keeps_other_tools_pins() {
    if !testutil::privileged() {
        return;
    }
    only_xlb_pins_go(&["detach", "--all"]);
}

#[test]
fn agent_cleanup_on_a_bpffs_root_keeps_other_tools_pins() {
    if !testutil::privileged() {
        return;
    }
    only_xlb_pins_go(&["agent", "--cleanup"]);
}

/// `ip netns exec NS xlb ARGS...` (a private mount namespace with its own /sys).
fn ip_netns_exec(ns: &Netns, pin: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            env!("CARGO_BIN_EXE_xlb"),
            "--pin-dir",
        ])
        .arg(pin)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn attach_under_ip_netns_exec_says_its_bpffs_dies_with_the_command() {
    if !testutil::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    // Under `ip netns exec`, /sys is a fresh sysfs: no bpffs at /sys/fs/bpf.
    let pin = Path::new("/sys/fs/bpf").join(testutil::unique_name("xlb-t-"));
    // (No socket hooks: the private /sys has no cgroup2 mount either.)
    let o = ip_netns_exec(
        &ns,
        &pin,
        &[
            "attach",
            "--iface",
            "up0",
            "--pod-ifaces",
            "",
            "--no-socket-lb",
        ],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(stdout(&o).contains("attached"), "{}", stdout(&o));
    assert!(
        e.contains("warning: mounted a bpf filesystem at /sys/fs/bpf")
            && e.contains("not the host's")
            && e.contains("go away when this command exits"),
        "{e}"
    );
    assert!(
        e.contains("nsenter --net=/run/netns/NAME") && e.contains("mount -t bpf bpf /sys/fs/bpf"),
        "{e}"
    );
    // The trap the warning is about: the namespace is gone, so are the link
    // and the program.
    assert!(
        eventually(|| ns.xdp_prog("up0") == 0),
        "the private bpffs took the link with it"
    );
}

#[test]
fn doctor_flags_a_bpffs_that_is_not_the_hosts() {
    if !testutil::privileged() {
        return;
    }
    let bpffs = |o: &std::process::Output| -> serde_json::Value {
        let j: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(o), stderr(o)));
        j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "bpffs")
            .cloned()
            .unwrap()
    };
    // The host's bpffs.
    let host = PinDir::new();
    let c = bpffs(&xlb(None, &host.path, &["doctor", "--json"]));
    assert_eq!(c["status"], "ok", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("(the host's)"),
        "{c}"
    );

    let ns = Netns::new();
    let pin = Path::new("/sys/fs/bpf").join(testutil::unique_name("xlb-t-"));
    // A private mount namespace without bpffs: attach would mount a private one.
    let c = bpffs(&ip_netns_exec(&ns, &pin, &["doctor", "--json"]));
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("not the host's mount namespace"),
        "{c}"
    );
    assert!(c["fix"].as_str().unwrap().contains("nsenter --net="), "{c}");

    // A private bpffs mounted in it.
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "sh", "-c"])
        .arg(format!(
            "mount -t bpf bpf /sys/fs/bpf && exec {} --pin-dir {} doctor --json",
            env!("CARGO_BIN_EXE_xlb"),
            pin.display()
        ))
        .output()
        .unwrap();
    let c = bpffs(&o);
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("not the host's"),
        "{c}"
    );
}
