//! Test scaffolding for the CLI tests: the test kit (namespaces and pin
//! directories that clean up after themselves) plus running the built `xlb`.
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::process::Command;

pub use xlb_testkit::{eventually, sh, sh_out, stderr, stdout, KillOnDrop, Netns, PinDir};

/// A unique pin directory; on drop also the files xlb keeps for it under
/// /run/xlb (names, the monitor's lock and socket).
pub fn pin_dir() -> PinDir {
    let mut p = PinDir::new();
    p.also.push(xlb::names::path(&p.path));
    for ext in ["lock", "sock"] {
        p.also.push(xlb::cli::monitor::state_path(&p.path, ext));
    }
    p
}

/// Runs the built `xlb` with `--pin-dir pin`, inside `ns` when given (only the
/// network namespace changes: the bpffs mount stays the test's).
pub fn xlb(ns: Option<&Netns>, pin: &Path, args: &[&str]) -> std::process::Output {
    xlb_env(ns, pin, args, &[])
}

/// [`xlb`] with extra environment variables.
pub fn xlb_env(
    ns: Option<&Netns>,
    pin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlb"));
    cmd.arg("--pin-dir")
        .arg(pin)
        .args(args)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(ns) = ns {
        let f = std::fs::File::open(ns.path()).expect("open netns");
        // SAFETY: setns is async-signal-safe; the fd stays open until spawn returns.
        unsafe {
            use std::os::fd::AsRawFd;
            let fd = f.as_raw_fd();
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().expect("run xlb");
        drop(f);
        return out;
    }
    cmd.output().expect("run xlb")
}

/// A client namespace and a node namespace joined by a veth (client `a0`
/// 198.18.0.1 <-> node `up0` 198.18.0.2 and any `extra` node addresses),
/// with IPv6 off (only the test's traffic reaches `up0`: no router or
/// neighbour solicitations), static neighbours (no packet waits for ARP) and
/// the client's route to 10.96.0.0/16 through the node; then xlb attached to
/// `up0` with its maps pinned under `pin`. Returns (client, node).
pub fn client_and_attached_node(pin: &Path, extra: &[&str]) -> (Netns, Netns) {
    let client = Netns::new();
    let node = Netns::new();
    // (/proc/sys/net is the opener's namespace's.)
    for ns in [&client, &node] {
        ns.run(|| {
            for k in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{k}/disable_ipv6"), "1").unwrap();
            }
        });
    }
    client.ip(&[
        "link", "add", "a0", "type", "veth", "peer", "name", "up0", "netns", &node.name,
    ]);
    client.ip(&["addr", "add", "198.18.0.1/24", "dev", "a0"]);
    node.ip(&["addr", "add", "198.18.0.2/24", "dev", "up0"]);
    for a in extra {
        node.ip(&["addr", "add", &format!("{a}/24"), "dev", "up0"]);
    }
    client.ip(&["link", "set", "a0", "up"]);
    node.ip(&["link", "set", "up0", "up"]);
    node.ip(&["link", "set", "lo", "up"]);
    let mac = |ns: &Netns, dev: &str| -> String {
        let s = ns.ip_out(&["-o", "link", "show", dev]);
        let i = s.find("link/ether ").expect("mac") + 11;
        s[i..i + 17].to_string()
    };
    let (amac, umac) = (mac(&client, "a0"), mac(&node, "up0"));
    let permanent = |ns: &Netns, addr: &str, mac: &str, dev: &str| {
        ns.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    };
    permanent(&client, "198.18.0.2", &umac, "a0");
    permanent(&node, "198.18.0.1", &amac, "up0");
    client.ip(&["route", "add", "10.96.0.0/16", "via", "198.18.0.2"]);
    let o = xlb(
        Some(&node),
        pin,
        &["attach", "--iface", "up0", "--pod-ifaces", ""],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (client, node)
}

/// Turns on the kernel's BPF run-time statistics while the returned fd is
/// open (`run_cnt` of every program counts from then on).
pub fn enable_stats() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall wrapper; the returned fd keeps stats on while open.
    let fd = unsafe {
        libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
    };
    assert!(fd >= 0, "BPF_ENABLE_STATS: {fd}");
    // SAFETY: fresh fd we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// An fd of program `id` (kept open, the program cannot go away).
pub fn prog_fd(id: u32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall wrapper.
    let fd = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_fd_by_id(id) };
    assert!(fd >= 0, "prog {id}: {fd}");
    // SAFETY: fresh fd we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// How many times the program behind `fd` ran since stats were enabled.
pub fn run_cnt(fd: &std::os::fd::OwnedFd) -> u64 {
    use std::os::fd::AsRawFd;
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: valid fd, buffer and length.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut info as *mut libbpf_rs::libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    info.run_cnt
}

/// An agent run's directories: the pin directory (`.0`) and the manifests
/// directory (`.1`); both removed on drop, with xlb's name file of the pin
/// directory.
pub struct Pins(pub std::path::PathBuf, pub std::path::PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = xlb::names::remove(&xlb::names::path(&self.0));
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Starts `xlb agent` as node `node-a` inside `ns` over `pins` (`--iface
/// auto --fallback-generic`, then `extra`), metrics on 127.0.0.1:`port`
/// there; killed on drop.
pub fn spawn_agent(ns: &Netns, pins: &Pins, port: u16, extra: &[&str]) -> KillOnDrop {
    KillOnDrop(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(env!("CARGO_BIN_EXE_xlb"))
            .arg("--pin-dir")
            .arg(&pins.0)
            .arg("agent")
            .arg("--manifests")
            .arg(&pins.1)
            .args([
                "--node-name",
                "node-a",
                "--iface",
                "auto",
                "--fallback-generic",
            ])
            .args(extra)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `xlb agent --cleanup` over `pin` inside `ns`; must succeed.
pub fn agent_cleanup(ns: &Netns, pin: &Path) {
    xlb_testkit::run_ok(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(env!("CARGO_BIN_EXE_xlb"))
            .arg("--pin-dir")
            .arg(pin)
            .args(["agent", "--cleanup"]),
    );
}
