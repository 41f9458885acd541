//! `xlb attach` / `xlb detach` and the socket hooks: attached by default,
//! replaced in place, `--no-socket-lb`, `detach --sockets`, `detach --all`
//! leaving none of the programs on the cgroup.

mod cli_support;

use std::os::fd::AsFd;

use cli_support::{stderr, stdout, xlb, Netns, PinDir};
use xlb_loader::cgroup::{self, SockHook};

/// (hook, program id) of the socket links pinned under `pin`.
fn pinned(pin: &std::path::Path) -> Vec<(SockHook, u32)> {
    cgroup::list(pin)
        .into_iter()
        .map(|(h, p)| {
            let fd = xlb_loader::sys::obj_get(&p).unwrap();
            let info = libbpf_rs::query::LinkInfo::from_fd(fd.as_fd()).unwrap();
            (h, info.prog_id)
        })
        .collect()
}

fn on_cgroup(ids: &[(SockHook, u32)]) -> Vec<bool> {
    let root = cgroup::cgroup2_root().unwrap();
    ids.iter()
        .map(|(h, id)| cgroup::query(&root, *h).unwrap().contains(id))
        .collect()
}

#[test]
fn attach_puts_the_socket_hooks_on_and_detach_takes_them_off() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    let pin = PinDir::new();
    let p = &pin.path;

    let o = xlb(Some(&ns), p, &["attach", "--iface", "up0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let socks = j["sockets"].as_array().unwrap();
    assert_eq!(socks.len(), 8, "{j}");
    assert!(socks.iter().all(|s| s["replaced"] == false), "{j}");
    let first = pinned(p);
    assert_eq!(first.len(), 8);
    assert_eq!(on_cgroup(&first), [true; 8]);

    // Again: replaced inside the links, the old programs off the cgroup.
    let o = xlb(Some(&ns), p, &["attach", "--iface", "up0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cgroup/connect4"), "{}", stdout(&o));
    assert!(stdout(&o).contains("replaced"), "{}", stdout(&o));
    let second = pinned(p);
    assert_eq!(on_cgroup(&second), [true; 8]);
    assert_eq!(on_cgroup(&first), [false; 8]);

    let o = xlb(Some(&ns), p, &["detach", "--sockets"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("8 hook(s) detached"), "{}", stdout(&o));
    assert_eq!(on_cgroup(&second), [false; 8]);
    assert!(pinned(p).is_empty());
    assert_ne!(ns.xdp_prog("up0"), 0, "the uplink stays attached");

    // --no-socket-lb: none.
    let o = xlb(
        Some(&ns),
        p,
        &["attach", "--iface", "up0", "--no-socket-lb"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(pinned(p).is_empty());

    // --all: the hooks go with everything else.
    let o = xlb(Some(&ns), p, &["attach", "--iface", "up0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let third = pinned(p);
    assert_eq!(on_cgroup(&third), [true; 8]);
    let o = xlb(Some(&ns), p, &["detach", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cgroup/getpeername4"), "{}", stdout(&o));
    assert_eq!(on_cgroup(&third), [false; 8]);
    assert!(!p.exists());
}

#[test]
fn cgroup_root_is_taken_as_given() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("up0", "peer0");
    let pin = PinDir::new();
    let p = &pin.path;
    let o = xlb(
        Some(&ns),
        p,
        &[
            "attach",
            "--iface",
            "up0",
            "--cgroup-root",
            "/nonexistent-cg",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent-cg") && stderr(&o).contains("--no-socket-lb"),
        "{}",
        stderr(&o)
    );
    let root = cgroup::cgroup2_root().unwrap();
    let o = xlb(
        Some(&ns),
        p,
        &[
            "attach",
            "--iface",
            "up0",
            "--cgroup-root",
            root.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(on_cgroup(&pinned(p)), [true; 8]);
    let o = xlb(Some(&ns), p, &["detach", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
