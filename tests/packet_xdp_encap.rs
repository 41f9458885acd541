//! # XDP packet tests: tunnels and the MTU
//!
//! The uplink program through BPF_PROG_RUN (table rows as in `packet_xdp.rs`):
//! remote backends (DNAT + VXLAN encap with the frontend trailer, the
//! balancing node's forward-only ct entry, the MTU and ICMP fragmentation
//! needed), replies and VXLAN from the underlay (decap, reverse NAT,
//! re-encapsulation), and the next-hop and VTEP caches that feed the encap.
//! The tunnel NAT frames' other end (the backend's node, translated
//! replies) is `packet_xdp_tnat.rs`.
mod packet_util;

use std::net::Ipv4Addr;

use packet_util::tnat::*;
use packet_util::xdp::*;
use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

fn cases() -> Vec<Case> {
    vec![
        // --- remote backends ----------------------------------------------------
        Case {
            name: "remote backend: DNAT + VXLAN encap, redirected to the uplink",
            setup: no_setup,
            frame: || syn("10.96.0.20:80").build(),
            on_uplink: false,
            rc: XDP_REDIRECT,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                check_encap_to_peer(env, syn("10.96.0.20:80"), BE_REMOTE, out);
                assert_half_open(env, CLIENT_SA, "10.96.0.20:80", 3, BE_REMOTE);
                assert_eq!(
                    env.half_open(CLIENT_SA).unwrap().flags,
                    XLB_CT_F_REMOTE | XLB_CT_F_SYN,
                    "remote, half-open"
                );
            },
        },
        Case {
            name: "remote backend: XDP_TX when the uplink is the ingress",
            setup: no_setup,
            frame: || Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53")).build(),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                let f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53"));
                check_encap_to_peer(env, f, BE_REMOTE, out);
                assert_forward_only(env, CLIENT_SA, "10.96.0.20:53", BE_REMOTE, UDP);
            },
        },
        Case {
            name: "remote backend, ct hit: the frontend trailer again, still no reverse entry",
            setup: |env| {
                let (rc, _) = env.xdp(&Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53")).build());
                assert_eq!(rc, XDP_REDIRECT);
            },
            frame: || Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53")).build(),
            on_uplink: false,
            rc: XDP_REDIRECT,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                let f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53"));
                check_encap_to_peer(env, f, BE_REMOTE, out);
                assert_forward_only(env, CLIENT_SA, "10.96.0.20:53", BE_REMOTE, UDP);
            },
        },
        Case {
            name:
                "remote backend, the client's ACK promotes the half-open flow: forward entry only",
            setup: |env| {
                let (rc, _) = env.xdp(&syn("10.96.0.20:80").build());
                assert_eq!(rc, XDP_REDIRECT);
            },
            frame: || ack("10.96.0.20:80").build(),
            on_uplink: false,
            rc: XDP_REDIRECT,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                check_encap_to_peer(env, ack("10.96.0.20:80"), BE_REMOTE, out);
                let fwd = assert_forward_only(env, CLIENT_SA, "10.96.0.20:80", BE_REMOTE, TCP);
                assert_eq!(fwd.flags, XLB_CT_F_REMOTE | XLB_CT_F_TNAT, "established");
                assert!(env.half_open(CLIENT_SA).is_none(), "promoted: slot emptied");
            },
        },
        Case {
            name: "remote backend, FIN and the once-a-second check: no reverse entry is written",
            setup: |env| {
                open(env, "10.96.0.20:80");
                // as if the last packet were 2 s ago: the next one checks
                // (and would restore) the reverse entry of a flow that has one
                let k = xlb_ct_key::new(sa(CLIENT_SA), sa("10.96.0.20:80"), TCP);
                let mut v = env.maps().ct_entry(&k).unwrap().unwrap();
                v.last_seen -= 2_000_000_000;
                v.flags |= XLB_CT_F_REV_CHECK;
                env.maps().put_ct(&k, &v).unwrap();
            },
            frame: || {
                let mut f = ack("10.96.0.20:80");
                f.tcp_flags = 0x11;
                f.build()
            },
            on_uplink: false,
            rc: XDP_REDIRECT,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                let mut f = ack("10.96.0.20:80");
                f.tcp_flags = 0x11;
                check_encap_to_peer(env, f, BE_REMOTE, out);
                let fwd = assert_forward_only(env, CLIENT_SA, "10.96.0.20:80", BE_REMOTE, TCP);
                assert_eq!(
                    fwd.flags,
                    XLB_CT_F_REMOTE | XLB_CT_F_TNAT | XLB_CT_F_FIN_FWD
                );
            },
        },
        Case {
            name: "remote backend without neighbour: DNAT, passed once to the stack",
            setup: no_setup,
            frame: || syn("10.96.0.21:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_FIB_NO_NEIGH,
            check: |_, _, out| assert_dnat(syn("10.96.0.21:80"), BE_NONEIGH, out),
        },
        Case {
            name: "remote backend without tunnel entry: dropped",
            setup: no_setup,
            frame: || syn("10.96.0.22:80").build(),
            on_uplink: false,
            rc: XDP_DROP,
            reason: XLB_R_DROP_NO_TUNNEL,
            check: |_, _, _| {},
        },
        Case {
            name:
                "remote backend, frame fits the MTU exactly after encap (58 bytes with the trailer)",
            setup: no_setup,
            frame: || {
                syn("10.96.0.20:80")
                    .payload(&vec![0xab; 1500 - ENCAP_FE - 40])
                    .build()
            },
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                let f = syn("10.96.0.20:80").payload(&vec![0xab; 1500 - ENCAP_FE - 40]);
                check_encap_to_peer(env, f, BE_REMOTE, out);
                assert_eq!(check_vxlan(out, "encap").ip.total_len, 1500);
            },
        },
        Case {
            name: "too big after encap: ICMP fragmentation needed back to the client",
            setup: no_setup,
            frame: || big_remote().build(),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_FRAG_NEEDED,
            check: |_, input, out| {
                let (dst, src, p) = check_eth_ipv4(out, "frag needed");
                assert_eq!((dst, src), (CLIENT_MAC, NODE_MAC));
                assert_eq!(Ipv4Addr::from(p.ip.source), Ipv4Addr::new(10, 96, 0, 20));
                assert_eq!(Ipv4Addr::from(p.ip.destination), CLIENT);
                assert_eq!(p.ip.protocol.0, 1);
                assert_eq!(&p.l4[..2], &[3, 4], "type 3 code 4");
                assert_eq!(
                    u16::from_be_bytes([p.l4[6], p.l4[7]]),
                    1442,
                    "next-hop MTU: 1500 - 58"
                );
                assert_eq!(
                    &p.l4[8..],
                    &input[14..14 + 20 + 8],
                    "quote: header + 8 bytes"
                );
            },
        },
        // --- replies ----------------------------------------------------------------
        Case {
            name: "reply of a backend on the uplink: reverse NAT to the ClusterIP",
            setup: |env| open(env, "10.96.0.10:80"),
            frame: || reply_from(BE_LOCAL).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_REVNAT,
            check: |_, _, out| {
                check_eth_ipv4(out, "revnat");
                let want = Frame {
                    src: sa("10.96.0.10:80"),
                    ..reply_from(BE_LOCAL)
                };
                assert_eq!(out, want.build().as_slice());
            },
        },
        Case {
            name: "VXLAN decap + reverse NAT of a remote backend's reply (a flow tc balanced)",
            setup: |env| {
                // A pod's flow (tc) keeps its reverse entry here: its replies
                // come back unmarked through the overlay.
                for flags in [0x02, 0x10] {
                    let mut f = syn("10.96.0.20:80");
                    f.tcp_flags = flags;
                    assert_eq!(env.tc(&f.build()).0, TC_ACT_OK);
                }
            },
            frame: || vxlan(&reply_from(BE_REMOTE).build(), PEER, NODE, VNI, true),
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_REVNAT,
            check: |_, _, out| {
                check_eth_ipv4(out, "decap revnat");
                let want = Frame {
                    src: sa("10.96.0.20:80"),
                    dst_mac: NODE_MAC,
                    ..reply_from(BE_REMOTE)
                };
                assert_eq!(out, want.build().as_slice());
            },
        },
        Case {
            name: "VXLAN with another VNI passes untouched",
            setup: |env| open(env, "10.96.0.20:80"),
            frame: || vxlan(&reply_from(BE_REMOTE).build(), PEER, NODE, 7, true),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_VXLAN_OTHER,
            check: unchanged,
        },
        Case {
            name: "VXLAN to another address passes untouched",
            setup: |env| open(env, "10.96.0.20:80"),
            frame: || {
                vxlan(
                    &reply_from(BE_REMOTE).build(),
                    PEER,
                    Ipv4Addr::new(198, 18, 0, 9),
                    VNI,
                    true,
                )
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_VXLAN_OTHER,
            check: unchanged,
        },
        Case {
            name: "VXLAN pod-to-pod (unmarked, no Service) stays encapsulated",
            setup: no_setup,
            frame: || {
                let inner = Frame::tcp(sa("10.244.2.7:5555"), sa("10.244.1.10:8080"));
                vxlan(&inner.build(), PEER, NODE, VNI, false)
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
        Case {
            name: "xlb-marked VXLAN to a local pod: decap, tunnel-return entry",
            setup: no_setup,
            frame: || {
                vxlan(
                    &Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL)).build(),
                    PEER,
                    NODE,
                    VNI,
                    true,
                )
            },
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_DECAP,
            check: |env, _, out| {
                let want = Frame {
                    dst_mac: NODE_MAC,
                    ..Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL))
                };
                assert_eq!(out, want.build().as_slice());
                // a SYN: half-open, no ct entry until the client's ACK
                assert!(env
                    .maps()
                    .ct_entry(&xlb_ct_key::new(sa(BE_LOCAL), sa(CLIENT_SA), TCP))
                    .unwrap()
                    .is_none());
                let h = env.half_open(CLIENT_SA).expect("half-open tunnel entry");
                assert_eq!(h.flags, XLB_CT_F_SYN | XLB_CT_F_TUNNEL);
                assert_eq!((h.backend, h.tunnel_peer), (sa(BE_LOCAL), PEER));
                assert_eq!(
                    h.frontend,
                    sa("0.0.0.0:0"),
                    "the peer reverse-NATs, not this node"
                );
            },
        },
        Case {
            name: "xlb-marked VXLAN, the client's ACK: decap, tunnel-return entry",
            setup: no_setup,
            frame: || {
                let mut f = Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL));
                f.tcp_flags = 0x10;
                vxlan(&f.build(), PEER, NODE, VNI, true)
            },
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_DECAP,
            check: |env, _, _| {
                let rev = env
                    .maps()
                    .ct_entry(&xlb_ct_key::new(sa(BE_LOCAL), sa(CLIENT_SA), TCP))
                    .unwrap()
                    .expect("tunnel-return entry");
                assert_eq!(rev.flags, XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL);
                assert_eq!(rev.tunnel_peer(), Some(PEER));
                assert_eq!(rev.nat_addr, 0, "the peer reverse-NATs, not this node");
            },
        },
        Case {
            name: "VXLAN inner frame to a ClusterIP: decap + DNAT, ct keeps the tunnel peer",
            setup: no_setup,
            frame: || vxlan(&syn("10.96.0.10:80").build(), PEER, NODE, VNI, false),
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let f = Frame {
                    dst_mac: NODE_MAC,
                    ..syn("10.96.0.10:80")
                };
                assert_dnat(f, BE_LOCAL, out);
                assert_half_open(env, CLIENT_SA, "10.96.0.10:80", 1, BE_LOCAL);
                let h = env.half_open(CLIENT_SA).unwrap();
                assert_eq!(h.flags, XLB_CT_F_TUNNEL | XLB_CT_F_SYN);
                assert_eq!(h.tunnel_peer, PEER);
            },
        },
        Case {
            name: "VXLAN inner frame to a remote backend: re-encapsulated",
            setup: no_setup,
            frame: || vxlan(&syn("10.96.0.20:80").build(), PEER, NODE, VNI, false),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                // arrived by tunnel: no trailer, both ct entries here
                check_reencap_to_peer(env, syn("10.96.0.20:80"), BE_REMOTE, out);
                let h = env.half_open(CLIENT_SA).expect("half-open");
                assert_eq!(h.flags, XLB_CT_F_REMOTE | XLB_CT_F_TUNNEL | XLB_CT_F_SYN);
            },
        },
        Case {
            name: "VXLAN inner ACK to a remote backend: re-encapsulated, both ct entries",
            setup: |env| {
                let f = vxlan(&syn("10.96.0.20:80").build(), PEER, NODE, VNI, false);
                assert_eq!(env.xdp(&f).0, XDP_REDIRECT);
            },
            frame: || vxlan(&ack("10.96.0.20:80").build(), PEER, NODE, VNI, false),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                check_reencap_to_peer(env, ack("10.96.0.20:80"), BE_REMOTE, out);
                assert_ct_pair(env, CLIENT_SA, "10.96.0.20:80", 3, BE_REMOTE);
            },
        },
        Case {
            name: "VXLAN inner frame to a Service without endpoints: RST on the underlay",
            setup: no_setup,
            frame: || vxlan(&syn("10.96.0.30:80").build(), PEER, NODE, VNI, false),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REJECT,
            check: |_, _, out| {
                let (dst, src, p) = check_eth_ipv4(out, "rst");
                assert_eq!(
                    (dst, src),
                    (PEER_MAC, NODE_MAC),
                    "answered to the outer sender"
                );
                assert_eq!(p.dst(), sa(CLIENT_SA));
            },
        },
    ]
}

/// The client's segment with ACK only.
fn ack(dst: &str) -> Frame {
    let mut f = syn(dst);
    f.tcp_flags = 0x10;
    f
}

#[test]
fn xdp_encap_table() {
    let Some(env) = Env::new() else { return };
    let cases = cases();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    run_table(&env, Prog::Xdp, &cases);
}

/// The encapsulation path keeps the fib's next hop per CPU for 50 ms (nh.h):
/// a changed neighbour MAC, and a neighbour that disappeared, must reach the
/// fast path once that has passed. (The sleeps only let the cache expire;
/// nothing here asserts on speed.)
#[test]
fn next_hop_cache_follows_neighbour_changes() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let f = syn("10.96.0.20:80");
    let outer_dst = |env: &Env| -> [u8; 6] {
        let (rc, out) = env.xdp(&f.build());
        assert_eq!(rc, XDP_REDIRECT, "remote backend: encapsulated");
        check_vxlan(&out, "encap").dst_mac
    };
    assert_eq!(outer_dst(&env), PEER_MAC, "first frame: the fib's next hop");
    assert_eq!(outer_dst(&env), PEER_MAC, "cached next hop");
    let moved_mac = [0x02, 0, 0xc6, 0x12, 0, 0x22];
    sh(&[
        "neigh",
        "replace",
        "198.18.0.2",
        "lladdr",
        "02:00:c6:12:00:22",
        "dev",
        "v0",
        "nud",
        "permanent",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        outer_dst(&env),
        moved_mac,
        "the neighbour's new MAC after the TTL"
    );
    sh(&["neigh", "del", "198.18.0.2", "dev", "v0"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = env.reasons();
    let (rc, out) = env.xdp(&f.build());
    let after = env.reasons();
    assert_eq!(rc, XDP_PASS, "no neighbour any more: passed to the stack");
    let r = XLB_R_PASS_FIB_NO_NEIGH as usize;
    assert_eq!(after[r] - before[r], 1, "counted as pass_fib_no_neigh");
    assert_dnat(f.clone(), BE_REMOTE, &out);
}

/// A remote backend's VTEP MAC (tunnel map) is also kept per CPU for 50 ms:
/// a changed and a removed tunnel entry reach the fast path after that.
#[test]
fn vtep_cache_follows_tunnel_changes() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let f = syn("10.96.0.20:80");
    let inner_dst = |env: &Env| -> [u8; 6] {
        let (rc, out) = env.xdp(&f.build());
        assert_eq!(rc, XDP_REDIRECT, "remote backend: encapsulated");
        let v = check_vxlan(&out, "encap");
        v.inner[0..6].try_into().unwrap()
    };
    assert_eq!(inner_dst(&env), VTEP_MAC);
    assert_eq!(inner_dst(&env), VTEP_MAC, "cached");
    let new_vtep = [0x02, 0xee, 0, 0, 0, 0x22];
    let key = xlb_tunnel_key::new(Ipv4Addr::new(10, 244, 2, 0), 24);
    env.maps()
        .put_tunnel(&key, &xlb_tunnel_val::new(PEER, new_vtep))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(inner_dst(&env), new_vtep, "the new VTEP MAC after the TTL");
    assert!(env.maps().delete_tunnel(&key).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = env.reasons();
    let (rc, _) = env.xdp(&f.build());
    let after = env.reasons();
    assert_eq!(rc, XDP_DROP, "no tunnel entry any more");
    let r = XLB_R_DROP_NO_TUNNEL as usize;
    assert_eq!(after[r] - before[r], 1, "counted as drop_no_tunnel");
}
