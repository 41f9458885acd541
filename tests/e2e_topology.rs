//! The lab itself, without xlb: namespaces, underlay, overlay, pods, the
//! backend server, idempotent `up`, and `down` that leaves nothing behind
//! (also after a crash and beside another lab).

mod e2e_support;

use std::net::SocketAddrV4;
use std::process::Command;

use e2e_support::*;
use xlb_lab::{self as lab, netns, probe, procs};

fn ip_json(ns: &str, args: &[&str]) -> serde_json::Value {
    let out = xlb_testkit::run_ok(Command::new("ip").args(["-n", ns, "-j"]).args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pids(g: &LabGuard) -> Vec<Option<u32>> {
    g.lab
        .pods()
        .map(|(n, k)| lab::daemons::backend_daemon(&g.lab, n, k).running())
        .collect()
}

fn assert_gone(prefix: &str, inodes: &[u64]) {
    let left: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| lab::is_lab_ns(prefix, n))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!lab::state_dir(prefix).exists());
    let procs_left = procs::of_lab(inodes, prefix);
    assert!(procs_left.is_empty(), "processes left: {procs_left:?}");
    for n in 1..=7 {
        let pin = lab::pin_dir(prefix, n);
        assert!(!pin.exists(), "{} left", pin.display());
        let names = xlb::names::path(&pin);
        assert!(!names.exists(), "{} left", names.display());
    }
}

#[test]
fn up_builds_the_overlay_and_down_removes_everything() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::topology("xet");
    let l = g.lab.clone();

    // Node objects in deploy/examples name these exact values.
    for n in 1..=2 {
        let link = ip_json(&l.ns_node(n), &["link", "show", "dev", lab::VXLAN_DEV]);
        assert_eq!(link[0]["address"], lab::vtep_mac(n));
        let v = ip_json(
            &l.ns_node(n),
            &["-d", "link", "show", "dev", lab::VXLAN_DEV],
        );
        let info = &v[0]["linkinfo"]["info_data"];
        assert_eq!(info["id"], lab::VXLAN_VNI);
        assert_eq!(info["port"], lab::VXLAN_PORT);
        let up = ip_json(&l.ns_node(n), &["addr", "show", "dev", lab::UPLINK]);
        assert_eq!(up[0]["address"], lab::node_mac(n));
        assert_eq!(
            up[0]["addr_info"][0]["local"],
            lab::node_addr(n).to_string()
        );
    }

    // Pod to pod on one node, and across the kernel VXLAN overlay: no NAT.
    for (dst, via) in [((1, 2), "same node"), ((2, 2), "overlay")] {
        let to = SocketAddrV4::new(lab::pod_addr(dst.0, dst.1), lab::BACKEND_PORT);
        let r = g.pod(1, 1, move || probe::tcp(None, to, T)).unwrap();
        assert_eq!(r.name, lab::pod_name(dst.0, dst.1), "{via}");
        assert_eq!(r.peer.ip(), lab::pod_addr(1, 1), "{via}");
    }
    // The client reaches both nodes on the underlay.
    for n in 1..=2 {
        let to = SocketAddrV4::new(lab::node_addr(n), 9);
        let e = g.client(move || probe::tcp(None, to, T)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "node {n}");
    }

    // Idempotent: a second up changes nothing and keeps the same processes.
    let before = pids(&g);
    assert!(before.iter().all(Option::is_some));
    let out = Command::new(XLB)
        .args(["lab", "up", "--topology-only", "--prefix", g.prefix()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pids(&g), before);
    // A different size on a running lab is refused, not half-applied.
    let out = Command::new(XLB)
        .args([
            "lab",
            "up",
            "--topology-only",
            "--nodes",
            "3",
            "--prefix",
            g.prefix(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // `xlb lab check` on a topology-only lab probes the overlay and passes.
    let out = Command::new(XLB)
        .args(["lab", "check", "--prefix", g.prefix()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("pod-to-pod-overlay"), "{text}");

    let inodes: Vec<u64> = netns::list()
        .iter()
        .filter(|n| lab::is_lab_ns(g.prefix(), n))
        .filter_map(|n| netns::inode(n))
        .collect();
    let out = Command::new(XLB)
        .args(["lab", "down", "--prefix", g.prefix()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_gone(g.prefix(), &inodes);
    // A second down is a no-op, not an error.
    lab::down(g.prefix()).unwrap();
}

#[test]
fn down_cleans_up_after_a_crash_and_spares_other_labs() {
    if !xlb_testkit::privileged() {
        return;
    }
    let a = LabGuard::topology("xec");
    let b = LabGuard::topology("xec");
    let inodes: Vec<u64> = netns::list()
        .iter()
        .filter(|n| lab::is_lab_ns(a.prefix(), n))
        .filter_map(|n| netns::inode(n))
        .collect();
    // A crash loses the state directory (pid files, lab.json) and leaves a
    // half-built node: down must still find everything from the prefix.
    std::fs::remove_dir_all(a.lab.state_dir()).unwrap();
    Command::new("ip")
        .args(["netns", "add", &format!("{}-node7", a.prefix())])
        .status()
        .unwrap();
    // ...and the Service-names file an agent wrote.
    xlb::names::write(
        &xlb::names::path(&a.lab.pin_dir(1)),
        &[(1, "ns/a:80/TCP".into())].into(),
    )
    .unwrap();
    lab::down(a.prefix()).unwrap();
    assert_gone(a.prefix(), &inodes);

    // The other lab is untouched and still works.
    let to = SocketAddrV4::new(lab::pod_addr(2, 1), lab::BACKEND_PORT);
    let r = b.pod(1, 2, move || probe::tcp(None, to, T)).unwrap();
    assert_eq!(r.name, "n2p1");
    assert!(pids(&b).iter().all(Option::is_some));
}

#[test]
fn backend_answers_tcp_lines_and_udp_datagrams() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::topology("xeb");
    let to = SocketAddrV4::new(lab::pod_addr(2, 2), lab::BACKEND_PORT);
    let (greeting, echoes, udp) = g.pod(2, 1, move || {
        let mut c = probe::Conn::open(None, to, T).unwrap();
        let local = c.local_addr().unwrap();
        let echoes: Vec<_> = (0..5)
            .map(|i| c.exchange(&format!("line {i}")).unwrap())
            .collect();
        assert_eq!(echoes[0].peer, local);
        let udp = probe::udp(None, to, T).unwrap();
        (c.greeting.clone(), echoes, udp)
    });
    assert_eq!(greeting.name, "n2p2");
    assert_eq!(greeting.peer.ip(), lab::pod_addr(2, 1));
    assert_eq!(echoes[4].echo.as_deref(), Some("line 4"));
    let (reply, src) = udp;
    assert_eq!(reply.name, "n2p2");
    assert_eq!(src, std::net::SocketAddr::V4(to));
    assert_eq!(reply.peer.ip(), lab::pod_addr(2, 1));

    // A client that sends an endless line is cut off; the backend keeps serving.
    let (cut, after) = g.pod(2, 1, move || {
        use std::io::{Read, Write};
        let mut s = probe::tcp_connect(None, to, T).unwrap();
        let junk = vec![b'x'; 3 * lab::backend::MAX_LINE];
        let _ = s.write_all(&junk);
        let mut buf = Vec::new();
        // Closed (EOF or reset), not left hanging until our read timeout.
        let cut = match s.read_to_end(&mut buf) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        (cut, probe::tcp(None, to, T))
    });
    assert!(cut, "an over-long line must close the connection");
    assert_eq!(after.unwrap().name, "n2p2");
}
