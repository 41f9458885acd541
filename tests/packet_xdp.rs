//! # XDP packet tests: the basics
//!
//! The uplink program through BPF_PROG_RUN, table-driven (Katran style): each
//! row gives a frame, the verdict, the one reason counter it must move, and a
//! check of the exact output bytes (expected frames are rebuilt from scratch,
//! so the program's incremental checksums must equal full recomputation) and
//! of the checksums with etherparse. This file holds the frames that are not
//! ours, local backends, Services without endpoints, the Services' policies,
//! and the truncation sweep. Tunnels and the MTU: `packet_xdp_encap.rs`;
//! the backend choice: `packet_xdp_choice.rs`; caches, filters and the clock:
//! `packet_xdp_caches.rs`.
mod packet_util;

use std::net::Ipv4Addr;

use packet_util::xdp::*;
use packet_util::*;
use xlb_bpf::consts::*;

fn cases() -> Vec<Case> {
    vec![
        // --- not ours -------------------------------------------------------
        Case {
            name: "not a Service: TCP passes unchanged",
            setup: no_setup,
            frame: || syn("10.96.0.99:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
        Case {
            name: "not a Service: UDP passes unchanged",
            setup: no_setup,
            frame: || Frame::udp(sa(CLIENT_SA), sa("198.18.0.1:9999")).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
        Case {
            name: "ClusterIP on another port passes unchanged",
            setup: no_setup,
            frame: || syn("10.96.0.10:81").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
        Case {
            name: "NodePort port on a foreign address passes unchanged",
            setup: no_setup,
            frame: || syn("198.18.0.77:30080").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
        Case {
            name: "ARP passes untouched",
            setup: no_setup,
            frame: arp_frame,
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_IP,
            check: unchanged,
        },
        Case {
            name: "IPv6 with a UDP length of 0 passes untouched (the IPv6 path: packet_xdp6*.rs)",
            setup: no_setup,
            frame: ipv6_frame,
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_TRUNC_L4,
            check: unchanged,
        },
        Case {
            name: "VLAN-tagged frame passes untouched",
            setup: no_setup,
            frame: || {
                let mut f = syn("10.96.0.10:80").build();
                let tag = [0x81, 0x00, 0x00, 0x0a];
                f.splice(12..12, tag);
                f
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_IP,
            check: unchanged,
        },
        Case {
            name: "ICMP echo to a ClusterIP passes untouched",
            setup: no_setup,
            frame: || icmp_echo(CLIENT, Ipv4Addr::new(10, 96, 0, 10)),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_L4_OTHER,
            check: unchanged,
        },
        Case {
            name: "non-first fragment passes untouched",
            setup: no_setup,
            frame: || {
                let mut f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53"));
                f.frag_off = 185;
                f.df = false;
                f.build()
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_FRAG_NO_FIRST,
            check: unchanged,
        },
        Case {
            name: "IPv4 total length beyond the frame passes, counted",
            setup: no_setup,
            frame: || {
                let mut f = syn("10.96.0.10:80").build();
                f[16..18].copy_from_slice(&200u16.to_be_bytes());
                f
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_TRUNC_IP,
            check: unchanged,
        },
        Case {
            name: "TCP data offset below 5 passes, counted",
            setup: no_setup,
            frame: || {
                let mut f = syn("10.96.0.10:80").build();
                f[14 + 20 + 12] = 4 << 4;
                f
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_TRUNC_L4,
            check: unchanged,
        },
        // --- local backends ---------------------------------------------------
        Case {
            name: "TCP SYN to a ClusterIP: DNAT to the local backend, ct pair written",
            setup: no_setup,
            frame: || syn("10.96.0.10:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(syn("10.96.0.10:80"), BE_LOCAL, out);
                assert_half_open(env, CLIENT_SA, "10.96.0.10:80", 1, BE_LOCAL);
            },
        },
        Case {
            name: "UDP to a ClusterIP: DNAT, UDP checksum updated",
            setup: no_setup,
            frame: || Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53")).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53"));
                assert_dnat(f, BE_UDP, out);
                assert_ne!(check_eth_ipv4(out, "udp").2.l4_csum(), 0);
            },
        },
        Case {
            name: "UDP without checksum: DNAT keeps checksum 0",
            setup: no_setup,
            frame: || {
                let mut f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53"));
                f.udp_no_csum = true;
                f.build()
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let mut f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53"));
                f.udp_no_csum = true;
                assert_dnat(f, BE_UDP, out);
                assert_eq!(check_eth_ipv4(out, "udp").2.l4_csum(), 0);
            },
        },
        Case {
            name: "first fragment (UDP length beyond it) is balanced (DNAT)",
            setup: no_setup,
            frame: || {
                let f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53")).payload(&[9; 100]);
                related::fragments(&f.build(), &[32]).remove(0)
            },
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let want = Frame::udp(sa(CLIENT_SA), sa(BE_UDP)).payload(&[9; 100]);
                check_eth_ipv4(out, "first fragment");
                assert_eq!(out, related::fragments(&want.build(), &[32])[0].as_slice());
            },
        },
        Case {
            name: "IPv4 options (ihl 6): DNAT keeps the options",
            setup: no_setup,
            frame: || with_options(syn("10.96.0.10:80"), 1).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| assert_dnat(with_options(syn("10.96.0.10:80"), 1), BE_LOCAL, out),
        },
        Case {
            name: "IPv4 options (ihl 15): DNAT keeps the options",
            setup: no_setup,
            frame: || with_options(Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53")), 10).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let f = with_options(Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53")), 10);
                assert_dnat(f, BE_UDP, out)
            },
        },
        Case {
            name: "NodePort on the node address: DNAT",
            setup: no_setup,
            frame: || syn("198.18.0.1:30080").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(syn("198.18.0.1:30080"), BE_LOCAL, out);
                assert_half_open(env, CLIENT_SA, "198.18.0.1:30080", 1, BE_LOCAL);
            },
        },
        // --- Services without endpoints -----------------------------------------
        Case {
            name: "no endpoint, TCP SYN: RST+ACK from the ClusterIP",
            setup: no_setup,
            frame: || syn("10.96.0.30:80").build(),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REJECT,
            check: |_, _, out| {
                let want = Frame {
                    src_mac: NODE_MAC,
                    dst_mac: CLIENT_MAC,
                    src: sa("10.96.0.30:80"),
                    dst: sa(CLIENT_SA),
                    tcp_flags: 0x14,
                    seq: 0,
                    ack: 1001,
                    ..syn("10.96.0.30:80")
                };
                let (_, _, p) = check_eth_ipv4(out, "rst");
                assert_eq!(p.ip.time_to_live, 64);
                let mut w = want.build();
                w[18..20].copy_from_slice(&[0, 0]); // id 0
                w[22] = 64;
                xlb_testkit::csum::fix_ipv4(&mut w, 14);
                w[14 + 20 + 14..14 + 20 + 16].copy_from_slice(&[0, 0]); // window 0
                let t = etherparse::TcpHeader::from_slice(&w[34..]).unwrap().0;
                let ip = etherparse::Ipv4Header::from_slice(&w[14..]).unwrap().0;
                let c = t.calc_checksum_ipv4(&ip, &[]).unwrap();
                w[34 + 16..34 + 18].copy_from_slice(&c.to_be_bytes());
                assert_eq!(out, w.as_slice(), "RST bytes");
            },
        },
        Case {
            name: "no endpoint, TCP ACK with data: RST with seq = its ack",
            setup: no_setup,
            frame: || {
                let mut f = syn("10.96.0.30:80").payload(b"GET / HTTP/1.1\r\n\r\n");
                f.tcp_flags = 0x18;
                f.ack = 0x1234_5678;
                f.build()
            },
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REJECT,
            check: |_, _, out| {
                let (_, _, p) = check_eth_ipv4(out, "rst");
                assert_eq!(out.len(), 54);
                let t = etherparse::TcpHeader::from_slice(&p.l4).unwrap().0;
                assert!(t.rst && !t.ack && !t.syn);
                assert_eq!(t.sequence_number, 0x1234_5678);
                assert_eq!(p.src(), sa("10.96.0.30:80"));
                assert_eq!(p.dst(), sa(CLIENT_SA));
            },
        },
        Case {
            name: "no endpoint, TCP RST: no answer to a RST",
            setup: no_setup,
            frame: || {
                let mut f = syn("10.96.0.30:80");
                f.tcp_flags = 0x04;
                f.build()
            },
            on_uplink: true,
            rc: XDP_DROP,
            reason: XLB_R_DROP_NO_BACKEND,
            check: |_, _, _| {},
        },
        Case {
            name: "no endpoint, UDP: ICMP port unreachable quoting the datagram",
            setup: no_setup,
            frame: || Frame::udp(sa(CLIENT_SA), sa("10.96.0.30:53")).build(),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REJECT,
            check: |_, input, out| {
                let (dst, src, p) = check_eth_ipv4(out, "port unreachable");
                assert_eq!((dst, src), (CLIENT_MAC, NODE_MAC));
                assert_eq!(Ipv4Addr::from(p.ip.source), Ipv4Addr::new(10, 96, 0, 30));
                assert_eq!(Ipv4Addr::from(p.ip.destination), CLIENT);
                assert_eq!(&p.l4[..2], &[3, 3]);
                assert_eq!(&p.l4[8..], &input[14..14 + 28]);
                assert_eq!(out.len(), 14 + 20 + 8 + 28);
            },
        },
        Case {
            name: "no endpoint, UDP with IPv4 options: ICMP quotes the options",
            setup: no_setup,
            frame: || with_options(Frame::udp(sa(CLIENT_SA), sa("10.96.0.30:53")), 3).build(),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REJECT,
            check: |_, input, out| {
                let (_, _, p) = check_eth_ipv4(out, "port unreachable");
                assert_eq!(&p.l4[8..], &input[14..14 + 32 + 8]);
            },
        },
        Case {
            name: "no endpoint with reject disabled: dropped, counted",
            setup: |env| {
                let mut c = env.config();
                c.flags &= !XLB_CFG_F_REJECT;
                env.maps().put_config(&c).unwrap();
            },
            frame: || syn("10.96.0.30:80").build(),
            on_uplink: false,
            rc: XDP_DROP,
            reason: XLB_R_DROP_NO_BACKEND,
            check: |_, _, _| {},
        },
        // --- policy ---------------------------------------------------------------
        Case {
            name: "externalTrafficPolicy Local without local backend: dropped",
            setup: no_setup,
            frame: || syn("10.96.0.40:80").build(),
            on_uplink: false,
            rc: XDP_DROP,
            reason: XLB_R_DROP_ETP_LOCAL,
            check: |_, _, _| {},
        },
        Case {
            name: "loadBalancerSourceRanges: client outside the ranges dropped",
            setup: no_setup,
            frame: || syn("10.96.0.50:80").build(),
            on_uplink: false,
            rc: XDP_DROP,
            reason: XLB_R_DROP_SRC_RANGE,
            check: |_, _, _| {},
        },
        Case {
            name: "loadBalancerSourceRanges: client inside the ranges balanced",
            setup: no_setup,
            frame: || Frame::tcp(sa("198.18.0.5:40000"), sa("10.96.0.50:80")).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let f = Frame::tcp(sa("198.18.0.5:40000"), sa("10.96.0.50:80"));
                assert_dnat(f, BE_LOCAL, out)
            },
        },
    ]
}

#[test]
fn xdp_table() {
    let Some(env) = Env::new() else { return };
    let cases = cases();
    assert!(cases.len() >= 27, "{} cases", cases.len());
    run_table(&env, Prog::Xdp, &cases);
}

/// Makes every IPv4 (and outer UDP) length of a truncated frame agree with
/// its new size and fixes the header checksums, so truncation reaches the
/// deeper headers instead of stopping at the first length check.
fn fit_lengths(f: &mut [u8], vxlan_inner: bool) {
    fn fix_ip(f: &mut [u8], at: usize) {
        if f.len() < at + 20 {
            return;
        }
        let tot = (f.len() - at) as u16;
        f[at + 2..at + 4].copy_from_slice(&tot.to_be_bytes());
        let hl = usize::from(f[at] & 0xf) * 4;
        if f.len() >= at + hl && hl >= 20 {
            xlb_testkit::csum::fix_ipv4(f, at);
        }
    }
    fix_ip(f, 14);
    if vxlan_inner {
        if f.len() >= 42 {
            let l = (f.len() - 34) as u16;
            f[38..40].copy_from_slice(&l.to_be_bytes());
        }
        fix_ip(f, 64);
    }
}

/// Every truncation length of every header the programs parse (Ethernet, IPv4
/// with options, TCP, UDP, VXLAN, and the inner Ethernet/IPv4/TCP) returns
/// without fault, leaves the frame untouched and counts exactly one
/// truncation reason.
#[test]
fn every_truncation_is_counted() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let trunc = [
        XLB_R_PASS_TRUNC_ETH,
        XLB_R_PASS_TRUNC_IP,
        XLB_R_PASS_TRUNC_L4,
        XLB_R_PASS_TRUNC_VXLAN,
    ];
    let frames = [
        (
            "tcp+options",
            with_options(syn("10.96.0.10:80"), 2).build(),
            false,
        ),
        (
            "udp",
            Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53")).build(),
            false,
        ),
        (
            "vxlan(tcp+options)",
            vxlan(
                &with_options(syn("10.96.0.10:80"), 2).build(),
                PEER,
                NODE,
                VNI,
                true,
            ),
            true,
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    let mut runs = 0;
    for (name, full, is_vxlan) in &frames {
        for len in 14..full.len() {
            for fit in [false, true] {
                let mut f = full[..len].to_vec();
                if fit {
                    fit_lengths(&mut f, *is_vxlan);
                }
                let progs: &[Prog] = if *is_vxlan {
                    &[Prog::Xdp]
                } else {
                    &[Prog::Xdp, Prog::Tc]
                };
                for prog in progs {
                    let before = env.reasons();
                    let what = format!("{name} cut at {len} (fit {fit})");
                    let (rc, out) = match prog {
                        Prog::Xdp => env.xdp(&f),
                        Prog::Tc => match env.try_tc(&f) {
                            Ok(r) => r,
                            // The kernel refuses skbs whose IPv4 header is
                            // incomplete before the program runs.
                            Err(_) if len < 14 + 20 => continue,
                            Err(e) => panic!("{what}: tc test_run: {e}"),
                        },
                    };
                    let after = env.reasons();
                    let pass = if *prog == Prog::Xdp {
                        XDP_PASS
                    } else {
                        TC_ACT_OK
                    };
                    assert_eq!(rc, pass, "{what}");
                    assert_eq!(out, f, "{what}: untouched");
                    let m = moved(&before, &after);
                    assert_eq!(m.len(), 1, "{what}: one reason, got {m:?}");
                    assert_eq!(m[0].1, 1, "{what}");
                    let r = (0..after.len()).find(|&i| after[i] != before[i]).unwrap() as u32;
                    assert!(trunc.contains(&r), "{what}: counted {m:?}");
                    seen.insert(r);
                    runs += 1;
                }
            }
        }
    }
    assert_eq!(
        seen.len(),
        trunc.len(),
        "every truncation reason reached: {seen:?}"
    );
    assert!(runs > 300);
}
