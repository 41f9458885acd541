//! # Host-network endpoints an uplink client reaches (lab)
//!
//! The lab's external client dials two Services whose endpoints are
//! processes in a node's own namespace: `kubernetes` (10.96.0.1:443, the API
//! server stand-in on node2's address) and `hostnet` (10.96.0.9:80, a
//! hostNetwork pod's server on node1's address). The client's route sends
//! both to node1, whose XDP balances them: `hostnet` to its own stack,
//! `kubernetes` through the tunnel to node2. The endpoints' replies leave
//! their node through the uplink's tc egress program, which reverse-NATs
//! them (node1) or returns them through the tunnel (node2: reverse-NATed and
//! marked under tunnel NAT, untranslated for node1 to translate without).
//! The connection must work, from the frontend's address, with the client's
//! own address seen by the endpoint, for a reply of several segments too,
//! and for one full-size segment (too big for the tunnel: the sender gets
//! fragmentation needed and sends it again smaller);
//! with tunnel NAT (the default), then with the agents restarted with
//! `XLB_NO_TUNNEL_NAT`.
mod e2e_support;

use std::net::SocketAddrV4;
use std::process::Command;

use e2e_support::*;
use xlb_bpf::consts::XLB_CFG_F_TNAT;
use xlb_lab::{daemons, probe::Conn};

/// A counter of `xlb maps stats` on node `n` (0 when not listed).
fn stat(g: &LabGuard, n: u8, reason: &str) -> u64 {
    let out = xlb_testkit::run_ok(
        Command::new(XLB)
            .arg("--pin-dir")
            .arg(g.lab.pin_dir(n))
            .args(["maps", "stats"]),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(reason)).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

/// Node `n`'s `config.flags`.
fn config_flags(g: &LabGuard, n: u8) -> u32 {
    let out = Command::new(XLB)
        .arg("--pin-dir")
        .arg(g.lab.pin_dir(n))
        .args(["maps", "config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let hex = text
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("flags")).then(|| w.next()).flatten()
        })
        .unwrap_or_else(|| panic!("no flags in {text}"))
        .trim_start_matches("0x");
    u32::from_str_radix(hex, 16).unwrap()
}

/// The client's connection to `to` is answered by `want`, which saw the
/// client's own address; a line whose echo is one segment of nearly the
/// uplink's MTU (too big for the tunnel) and a 4000-byte line come back whole.
fn reaches(g: &LabGuard, to: SocketAddrV4, want: String) {
    let logs = g.logs();
    g.client(move || {
        let mut c = Conn::open(None, to, T)
            .unwrap_or_else(|e| panic!("{to}: {e}\n--- lab logs ---\n{logs}"));
        assert_eq!(c.greeting.name, want, "{to}");
        let me = c.local_addr().unwrap();
        assert_eq!(c.greeting.peer, me, "{to}: the endpoint sees the client");
        c.exchange(&"y".repeat(1400))
            .unwrap_or_else(|e| panic!("{to}: a reply of one full segment: {e}"));
        let big = "x".repeat(4000); // (the lab backend takes lines of up to 4096 bytes)
        c.exchange(&big)
            .unwrap_or_else(|e| panic!("{to}: a reply of several segments: {e}"));
    });
}

#[test]
fn uplink_client_reaches_host_network_endpoints_with_and_without_tunnel_nat() {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = LabGuard::with_xlb("xhn");
    let kubernetes = sa([10, 96, 0, 1], 443);
    let hostnet = sa([10, 96, 0, 9], 80);
    for tnat in [true, false] {
        if !tnat {
            for n in [1, 2] {
                daemons::agent_daemon(&g.lab, n).kill();
            }
            g.up_again(&[("XLB_NO_TUNNEL_NAT", "true")]);
        }
        for n in [1, 2] {
            assert_eq!(
                config_flags(&g, n) & XLB_CFG_F_TNAT != 0,
                tnat,
                "node{n}: tunnel NAT {tnat}"
            );
        }
        let (ret, xlated, too_big) = (
            stat(&g, 2, "tx_tunnel_return"),
            stat(&g, 1, "pass_decap"),
            stat(&g, 2, "tx_frag_needed"),
        );
        let revnat = stat(&g, 1, "pass_revnat");
        reaches(&g, kubernetes, daemons::host_backend_name(2));
        assert!(
            stat(&g, 2, "tx_tunnel_return") > ret,
            "node2's tc egress returned the replies through the tunnel"
        );
        // (first phase only: node2 has no path MTU to the client yet; in the
        // second the client advertises a smaller MSS, having learned a path
        // MTU to the frontend from node1 for its own 4000-byte line)
        if tnat {
            assert!(
                stat(&g, 2, "tx_frag_needed") > too_big,
                "node2's tc egress answered a reply too big for the tunnel"
            );
        }
        if tnat {
            assert!(
                stat(&g, 1, "pass_decap") > xlated,
                "node1 only decapsulates"
            );
        } else {
            assert!(stat(&g, 1, "pass_revnat") > revnat, "node1 reverse-NATs");
        }
        let revnat = stat(&g, 1, "pass_revnat");
        reaches(&g, hostnet, daemons::host_backend_name(1));
        assert!(
            stat(&g, 1, "pass_revnat") > revnat,
            "node1's tc egress reverse-NATed its own endpoint's replies"
        );
    }
}
