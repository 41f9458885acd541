//! # XDP packet tests
//!
//! The uplink program through BPF_PROG_RUN, table-driven (Katran style): each
//! row gives a frame, the verdict, the one reason counter it must move, and a
//! check of the exact output bytes (expected frames are rebuilt from scratch,
//! so the program's incremental checksums must equal full recomputation) and
//! of the checksums with etherparse.
mod packet_util;

use std::net::{Ipv4Addr, SocketAddrV4};

use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::be32;

const CLIENT_SA: &str = "198.18.0.100:40000";

/// A source port of CLIENT whose whole-flow Maglev pick for 10.96.0.60:80
/// differs from the pick of its address alone (the expired-affinity case
/// then tells the two apart).
fn expiry_client() -> SocketAddrV4 {
    let vip = sa("10.96.0.60:80");
    (40000..41000)
        .map(|p| SocketAddrV4::new(CLIENT, p))
        .find(|&c| {
            maglev_pick(&AFF_TABLE, c, vip, TCP, false)
                != maglev_pick(&AFF_TABLE, c, vip, TCP, true)
        })
        .expect("a port whose two picks differ")
}

fn syn(dst: &str) -> Frame {
    Frame::tcp(sa(CLIENT_SA), sa(dst))
}

/// The frame after DNAT to `to` (same bytes otherwise).
fn dnat(f: &Frame, to: &str) -> Vec<u8> {
    Frame {
        dst: sa(to),
        ..f.clone()
    }
    .build()
}

fn assert_dnat(f: Frame, to: &str, out: &[u8]) {
    check_eth_ipv4(out, "dnat");
    assert_eq!(out, dnat(&f, to).as_slice(), "DNAT output bytes");
}

/// Forward and reverse ct entries of a client flow to `vip`.
fn assert_ct_pair(env: &Env, src: &str, vip: &str, backend_id: u32, backend: &str) {
    let fwd = env
        .maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(vip), TCP))
        .unwrap()
        .expect("forward ct entry");
    assert_eq!(fwd.backend_id, backend_id);
    assert!(!fwd.is_reverse());
    let rev = env
        .maps()
        .ct_entry(&xlb_ct_key::new(sa(backend), sa(src), TCP))
        .unwrap()
        .expect("reverse ct entry");
    assert!(rev.is_reverse());
    assert_eq!(rev.nat(), sa(vip));
}

/// A SYN's half-open entry (ct_syn, bpf/include/ctsyn.h): it names the
/// backend and the frontend, and the SYN wrote no ct entry.
fn assert_half_open(env: &Env, src: &str, vip: &str, backend_id: u32, backend: &str) {
    let h = env.half_open(src).expect("half-open entry");
    assert_eq!(h.backend_id, backend_id);
    assert_eq!((h.frontend, h.backend), (sa(vip), sa(backend)));
    assert!(env
        .maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(vip), TCP))
        .unwrap()
        .is_none());
}

/// The backend of a client flow to `vip`: its forward ct entry, or (a SYN
/// only) its half-open entry.
fn ct_backend(env: &Env, src: &str, vip: &str, proto: u8) -> u32 {
    env.maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(vip), proto))
        .unwrap()
        .map(|v| v.backend_id)
        .or_else(|| {
            env.half_open(src)
                .filter(|h| h.frontend == sa(vip))
                .map(|h| h.backend_id)
        })
        .expect("forward ct entry or half-open entry")
}

/// The address of backend `id` as the maps hold it.
fn backend_sa(env: &Env, id: u32) -> String {
    env.maps()
        .backend(id)
        .unwrap()
        .unwrap()
        .sockaddr()
        .to_string()
}

/// Sends the SYN of CLIENT_SA -> vip, then its ACK (which promotes the
/// half-open connection to the ct pair).
fn open(env: &Env, vip: &str) {
    for flags in [0x02, 0x10] {
        let mut f = syn(vip);
        f.tcp_flags = flags;
        let (rc, _) = env.xdp(&f.build());
        assert!(
            rc == XDP_PASS || rc == XDP_REDIRECT,
            "opening {vip}: rc {rc}"
        );
    }
}

fn big_remote() -> Frame {
    syn("10.96.0.20:80").payload(&vec![0xab; 1450 - 40 + 1])
}

fn options(n_words: usize) -> Vec<u8> {
    // NOPs then an End of options list, n_words * 4 bytes.
    let mut o = vec![1u8; n_words * 4];
    o[n_words * 4 - 1] = 0;
    o
}

fn with_options(mut f: Frame, words: usize) -> Frame {
    f.options = options(words);
    f
}

fn check_encap_to_peer(env: &Env, input_frame: Frame, backend: &str, out: &[u8]) {
    let _ = env;
    let v = check_vxlan(out, "encap");
    assert_eq!(v.dst_mac, PEER_MAC, "outer dst = next hop");
    assert_eq!(v.src_mac, NODE_MAC, "outer src = uplink");
    assert_eq!(Ipv4Addr::from(v.ip.source), NODE);
    assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
    assert_eq!(v.vni, VNI);
    assert_eq!(v.flags, 0x0800_0001, "I flag + xlb mark");
    let h = flow_hash(input_frame.src, input_frame.dst, input_frame.proto, false);
    assert_eq!(
        v.sport,
        0xc000 | (h & 0x3fff) as u16,
        "outer source port = flow hash"
    );
    let want = Frame {
        dst: sa(backend),
        src_mac: NODE_MAC,
        dst_mac: VTEP_MAC,
        ..input_frame
    }
    .build();
    check_eth_ipv4(&v.inner, "inner");
    assert_eq!(v.inner, want, "inner frame: DNAT + VTEP MAC");
}

fn reply_from(backend: &str) -> Frame {
    Frame::tcp(sa(backend), sa(CLIENT_SA)).macs(PEER_MAC, NODE_MAC)
}

/// The client's flow to `to`, which must be DNATed to BE_LOCAL.
/// A segment (ACK) of CLIENT_SA's established flow to `to`.
fn send(env: &Env, to: std::net::SocketAddrV4) {
    let mut f = Frame::tcp(sa(CLIENT_SA), to);
    f.tcp_flags = 0x10;
    let (rc, out) = env.xdp(&f.build());
    assert_eq!(rc, XDP_PASS);
    assert_dnat(f, BE_LOCAL, &out);
}

/// The source a reply of BE_LOCAL to the client is reverse-NATed to.
fn reply_src(env: &Env) -> std::net::SocketAddrV4 {
    let (rc, out) = env.xdp(&reply_from(BE_LOCAL).build());
    assert_eq!(rc, XDP_PASS);
    check_eth_ipv4(&out, "revnat").2.src()
}

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
            name: "IPv6 passes untouched",
            setup: no_setup,
            frame: ipv6_frame,
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_NOT_IP,
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
                check_encap_to_peer(env, f, BE_REMOTE, out)
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
            name: "remote backend, frame fits the MTU exactly after encap",
            setup: no_setup,
            frame: || syn("10.96.0.20:80").payload(&vec![0xab; 1450 - 40]).build(),
            on_uplink: true,
            rc: XDP_TX,
            reason: XLB_R_TX_REMOTE,
            check: |env, _, out| {
                let f = syn("10.96.0.20:80").payload(&vec![0xab; 1450 - 40]);
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
                assert_eq!(u16::from_be_bytes([p.l4[6], p.l4[7]]), 1450, "next-hop MTU");
                assert_eq!(
                    &p.l4[8..],
                    &input[14..14 + 20 + 8],
                    "quote: header + 8 bytes"
                );
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
        // --- choice -----------------------------------------------------------------
        Case {
            name: "Maglev: backend = table[hash(5-tuple) % M]",
            setup: no_setup,
            frame: || syn("10.96.0.70:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&MULTI_TABLE, sa(CLIENT_SA), sa("10.96.0.70:80"), TCP, false);
                assert_dnat(syn("10.96.0.70:80"), &backend_sa(env, id), out);
                assert_eq!(ct_backend(env, CLIENT_SA, "10.96.0.70:80", TCP), id);
            },
        },
        Case {
            name: "affinity: source port left out of the hash, affinity entry written",
            setup: no_setup,
            frame: || syn("10.96.0.60:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&AFF_TABLE, sa(CLIENT_SA), sa("10.96.0.60:80"), TCP, true);
                assert_dnat(syn("10.96.0.60:80"), &backend_sa(env, id), out);
                assert_eq!(ct_backend(env, CLIENT_SA, "10.96.0.60:80", TCP), id);
                let a = env
                    .maps()
                    .affinity_entry(&xlb_affinity_key::new(10, CLIENT))
                    .unwrap()
                    .expect("affinity entry");
                assert_eq!(a.backend_id, id);
            },
        },
        Case {
            name: "affinity: a new connection of the client keeps its backend",
            setup: |env| {
                let id = maglev_pick(&AFF_TABLE, sa(CLIENT_SA), sa("10.96.0.60:80"), TCP, true);
                let other = if id == 6 { 5 } else { 6 };
                env.maps()
                    .put_affinity(
                        &xlb_affinity_key::new(10, CLIENT),
                        &xlb_affinity_val {
                            backend_id: other,
                            generation: 1,
                            last_seen: now_ns(),
                        },
                    )
                    .unwrap();
            },
            frame: || Frame::tcp(sa("198.18.0.100:41111"), sa("10.96.0.60:80")).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&AFF_TABLE, sa(CLIENT_SA), sa("10.96.0.60:80"), TCP, true);
                let other = if id == 6 { 5 } else { 6 };
                let f = Frame::tcp(sa("198.18.0.100:41111"), sa("10.96.0.60:80"));
                assert_dnat(f, &backend_sa(env, other), out);
                assert_eq!(
                    ct_backend(env, "198.18.0.100:41111", "10.96.0.60:80", TCP),
                    other
                );
            },
        },
        Case {
            name: "affinity expired: a fresh choice from the whole flow",
            setup: |env| {
                // The expired entry holds what the client's address alone picks.
                let by_client =
                    maglev_pick(&AFF_TABLE, expiry_client(), sa("10.96.0.60:80"), TCP, true);
                env.maps()
                    .put_affinity(
                        &xlb_affinity_key::new(10, CLIENT),
                        &xlb_affinity_val {
                            backend_id: by_client,
                            generation: 1,
                            last_seen: now_ns() - 200_000_000_000,
                        },
                    )
                    .unwrap();
            },
            frame: || Frame::tcp(expiry_client(), sa("10.96.0.60:80")).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let c = expiry_client();
                let id = maglev_pick(&AFF_TABLE, c, sa("10.96.0.60:80"), TCP, false);
                assert_dnat(
                    Frame::tcp(c, sa("10.96.0.60:80")),
                    &backend_sa(env, id),
                    out,
                );
                assert_eq!(ct_backend(env, &c.to_string(), "10.96.0.60:80", TCP), id);
                let a = env
                    .maps()
                    .affinity_entry(&xlb_affinity_key::new(10, CLIENT))
                    .unwrap()
                    .unwrap();
                assert_eq!(a.backend_id, id);
            },
        },
        Case {
            name: "CT hit keeps its backend after the Maglev table changes",
            setup: |env| {
                open(env, "10.96.0.70:80");
                let id = ct_backend(env, CLIENT_SA, "10.96.0.70:80", TCP);
                let other = if id == 6 { 5 } else { 6 };
                env.maps().write_maglev(160, &[other; 13]).unwrap();
            },
            frame: || syn("10.96.0.70:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&MULTI_TABLE, sa(CLIENT_SA), sa("10.96.0.70:80"), TCP, false);
                assert_dnat(syn("10.96.0.70:80"), &backend_sa(env, id), out);
            },
        },
        Case {
            name: "removed backend: its CT entry is chosen again",
            setup: |env| {
                open(env, "10.96.0.10:80");
                let mut b = env.maps().backend(1).unwrap().unwrap();
                b.flags = 0;
                b.generation += 1;
                env.maps().put_backend(1, &b).unwrap();
                env.maps().write_maglev(0, &[5; 7]).unwrap();
            },
            frame: || syn("10.96.0.10:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(syn("10.96.0.10:80"), BE_5, out);
                assert_ct_pair(env, CLIENT_SA, "10.96.0.10:80", 5, BE_5);
            },
        },
        Case {
            name: "reused backend id (generation bumped): CT entry chosen again",
            setup: |env| {
                open(env, "10.96.0.10:80");
                env.maps()
                    .put_backend(1, &xlb_backend::new(sa("10.244.1.50:8080"), None, 2))
                    .unwrap();
            },
            frame: || syn("10.96.0.10:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(syn("10.96.0.10:80"), "10.244.1.50:8080", out);
                let fwd = env
                    .maps()
                    .ct_entry(&xlb_ct_key::new(sa(CLIENT_SA), sa("10.96.0.10:80"), TCP))
                    .unwrap()
                    .unwrap();
                assert_eq!(fwd.generation, 2);
            },
        },
        Case {
            name: "Maglev slot naming an inactive backend: dropped, counted",
            setup: no_setup,
            frame: || syn("10.96.0.80:80").build(),
            on_uplink: false,
            rc: XDP_DROP,
            reason: XLB_R_DROP_BAD_MAGLEV,
            check: |_, _, _| {},
        },
        Case {
            name: "per-Service counters count packets and bytes",
            setup: no_setup,
            frame: || syn("10.96.0.10:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, input, _| {
                let before = env.maps().svc_counter(1).unwrap();
                env.xdp(input);
                let after = env.maps().svc_counter(1).unwrap();
                assert_eq!(after.packets - before.packets, 1);
                assert_eq!(after.bytes - before.bytes, input.len() as u64);
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
            name: "VXLAN decap + reverse NAT of a remote backend's reply",
            setup: |env| open(env, "10.96.0.20:80"),
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
            check: |env, _, out| check_encap_to_peer(env, syn("10.96.0.20:80"), BE_REMOTE, out),
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

#[test]
fn xdp_table() {
    let Some(env) = Env::new() else { return };
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    run_table(&env, Prog::Xdp, &cases);
}

/// Many flows: the choice is always the Maglev slot of the flow hash.
#[test]
fn xdp_maglev_choice_matches_hash() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    for port in 20000..20200u16 {
        let src = std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, (port % 200) as u8), port);
        let f = Frame::tcp(src, sa("10.96.0.70:80"));
        let (rc, _) = env.xdp(&f.build());
        assert_eq!(rc, XDP_PASS);
        let want = maglev_pick(&MULTI_TABLE, src, sa("10.96.0.70:80"), TCP, false);
        let got = env.half_open(&src.to_string()).unwrap().backend_id;
        assert_eq!(got, want, "flow {src}");
    }
    let _ = be32(NODE);
}

/// Two flows of one client source port to two frontends that chose the same
/// backend share one reverse key (backend -> client). The newest flow takes
/// it; the other flow's next packet takes it back (its forward entry was
/// flagged), so each flow's replies are reverse-NATed to the frontend its
/// packets went to. A reverse entry lost without a flag (LRU eviction) is
/// restored at the flow's once-a-second refresh.
#[test]
fn reverse_entry_follows_the_flow_that_sent_last() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let node_port = std::net::SocketAddrV4::new(NODE, 30080);
    let rev_key = xlb_ct_key::new(sa(BE_LOCAL), sa(CLIENT_SA), TCP);
    let rev_nat = |env: &Env| {
        env.maps()
            .ct_entry(&rev_key)
            .unwrap()
            .expect("reverse entry")
            .nat()
    };
    send(&env, sa("10.96.0.10:80"));
    assert_eq!(rev_nat(&env), sa("10.96.0.10:80"));
    send(&env, node_port);
    assert_eq!(
        rev_nat(&env),
        node_port,
        "the newest flow takes the reverse key"
    );
    assert_eq!(reply_src(&env), node_port);
    send(&env, sa("10.96.0.10:80"));
    assert_eq!(
        rev_nat(&env),
        sa("10.96.0.10:80"),
        "taken back at the next packet"
    );
    assert_eq!(reply_src(&env), sa("10.96.0.10:80"));
    send(&env, node_port);
    assert_eq!(rev_nat(&env), node_port, "and back again");
    // Lost without a flag: restored once the forward entry is due a refresh.
    assert!(env.maps().delete_ct(&rev_key).unwrap());
    let fwd_key = xlb_ct_key::new(sa(CLIENT_SA), node_port, TCP);
    let mut fwd = env.maps().ct_entry(&fwd_key).unwrap().unwrap();
    fwd.last_seen = now_ns() - 2_000_000_000;
    env.maps().put_ct(&fwd_key, &fwd).unwrap();
    send(&env, node_port);
    assert_eq!(rev_nat(&env), node_port, "restored at the refresh");
}

/// ct timestamps come from the timer-driven clock (clock.h): CLOCK_MONOTONIC,
/// at most a few ms behind, and moving (a refresh after a second of silence
/// writes the new time). The bounds are wide: nothing here measures speed.
#[test]
fn ct_timestamps_follow_the_monotonic_clock() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let key = xlb_ct_key::new(sa(CLIENT_SA), sa("10.96.0.10:80"), TCP);
    let t0 = now_ns();
    open(&env, "10.96.0.10:80");
    let first = env.maps().ct_entry(&key).unwrap().unwrap().last_seen;
    assert!(
        first + 500_000_000 > t0 && first <= now_ns(),
        "created at {first}, clock {t0}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1200));
    open(&env, "10.96.0.10:80");
    let second = env.maps().ct_entry(&key).unwrap().unwrap().last_seen;
    assert!(
        second >= first + 1_000_000_000 && second <= now_ns(),
        "refreshed at {second} (first {first}, clock {})",
        now_ns()
    );
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

/// The per-CPU flow cache (flowcache.h) serves a flow's second and later
/// packets. It must see everything the ct entry would: a forward entry
/// flagged by a takeover of its reverse key, a reverse entry rewritten by
/// the data plane or by userspace, and a backend whose generation moved.
#[test]
fn flow_cache_sees_takeovers_ct_writes_and_backend_changes() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let vip = sa("10.96.0.10:80");
    let node_port = std::net::SocketAddrV4::new(NODE, 30080);
    let rev_key = xlb_ct_key::new(sa(BE_LOCAL), sa(CLIENT_SA), TCP);
    // Both flows and the replies are cached (second packets on).
    for _ in 0..3 {
        send(&env, vip);
    }
    for _ in 0..3 {
        assert_eq!(reply_src(&env), vip);
    }
    // The NodePort flow takes the reverse key: the cached reverse entry must
    // not answer for it any more.
    send(&env, node_port);
    assert_eq!(reply_src(&env), node_port, "cached reverse entry voided");
    assert_eq!(reply_src(&env), node_port);
    // The ClusterIP flow was flagged: its cached forward hit must not hide
    // the flag, so its next packet takes the reverse key back.
    send(&env, vip);
    assert_eq!(
        env.maps().ct_entry(&rev_key).unwrap().unwrap().nat(),
        vip,
        "flag seen through the cache"
    );
    assert_eq!(reply_src(&env), vip);
    // Userspace rewrites the reverse entry (xlb_bpf::Maps bumps ct_epoch).
    let mut rev = env.maps().ct_entry(&rev_key).unwrap().unwrap();
    rev.nat_addr = be32(Ipv4Addr::new(10, 96, 0, 99));
    env.maps().put_ct(&rev_key, &rev).unwrap();
    assert_eq!(reply_src(&env), sa("10.96.0.99:80"), "userspace write seen");
    // A cached forward hit still checks the backend's generation.
    for _ in 0..3 {
        send(&env, vip);
    }
    let mut be = env.maps().backend(1).unwrap().unwrap();
    be.generation += 1;
    env.maps().put_backend(1, &be).unwrap();
    send(&env, vip);
    let fwd = env
        .maps()
        .ct_entry(&xlb_ct_key::new(sa(CLIENT_SA), vip, TCP))
        .unwrap()
        .unwrap();
    assert_eq!(
        fwd.generation, be.generation,
        "re-chosen at the new generation, not served from the cache"
    );
}

/// fe_filter counts the services keys: an insert counts once (a rewrite of
/// the same key does not), a delete uncounts, and the data plane skips a
/// frontend only when its slot is 0. Adopted maps written without counting
/// are recounted by fe_filter_repair.
#[test]
fn fe_filter_counts_services_keys() {
    let Some(env) = Env::new() else { return };
    let m = env.maps();
    let key = tcp_key("10.96.9.1:80");
    let count = |m: &xlb_bpf::Maps| m.fe_filter_count(&key).unwrap().expect("fe_filter");
    let base = count(m);
    env.backend(1, BE_LOCAL, None);
    m.put_config(&env.config()).unwrap();
    env.service(key, 1, 0, &[1; 7], 0);
    assert_eq!(count(m), base + 1);
    env.service(key, 1, 0, &[1; 7], 0);
    assert_eq!(
        count(m),
        base + 1,
        "rewriting a key does not count it again"
    );
    let (rc, _) = env.xdp(&syn("10.96.9.1:80").build());
    assert_eq!(rc, XDP_PASS);
    assert_eq!(ct_backend(&env, CLIENT_SA, "10.96.9.1:80", TCP), 1);
    assert!(m.delete_service(&key).unwrap());
    assert_eq!(count(m), base);
    assert!(!m.delete_service(&key).unwrap());
    assert_eq!(count(m), base, "deleting a missing key uncounts nothing");
    // A key inserted behind the filter's back (an older xlb's pins): the
    // repair recounts it, and only when the filter is empty.
    env.clear_state();
    let raw = &m.services;
    let val = xlb_svc_val {
        svc_id: 1,
        table_size: 7,
        ..Default::default()
    };
    use libbpf_rs::MapCore;
    raw.update(
        unsafe { plain::as_bytes(&key) },
        unsafe { plain::as_bytes(&val) },
        libbpf_rs::MapFlags::ANY,
    )
    .unwrap();
    assert_eq!(count(m), 0);
    assert!(m.filters_repair().unwrap());
    assert_eq!(count(m), 1);
    assert!(!m.filters_repair().unwrap(), "not empty: nothing to do");
    let (rc, _) = env.xdp(&Frame::tcp(sa("198.18.0.100:40001"), sa("10.96.9.1:80")).build());
    assert_eq!(rc, XDP_PASS);
    assert_eq!(
        ct_backend(&env, "198.18.0.100:40001", "10.96.9.1:80", TCP),
        1
    );
}

/// be_filter counts the addresses the backends slots hold: a write counts
/// the new address and uncounts the one it replaced; rewriting a slot with
/// the same address (a flag or generation change) leaves the count alone.
#[test]
fn be_filter_follows_the_backends_slots() {
    let Some(env) = Env::new() else { return };
    let m = env.maps();
    let a = Ipv4Addr::new(10, 244, 9, 1);
    let b = Ipv4Addr::new(10, 244, 9, 2);
    let count = |addr| m.be_filter_count(addr).unwrap().expect("be_filter");
    let (a0, b0) = (count(a), count(b));
    let be = |addr: Ipv4Addr| xlb_backend::new(std::net::SocketAddrV4::new(addr, 8080), None, 1);
    m.put_backend(9, &be(a)).unwrap();
    assert_eq!(count(a), a0 + 1);
    let mut again = be(a);
    again.generation = 2;
    again.flags = 0;
    m.put_backend(9, &again).unwrap();
    assert_eq!(count(a), a0 + 1, "same address: counted once");
    m.put_backend(9, &be(b)).unwrap();
    assert_eq!((count(a), count(b)), (a0, b0 + 1), "the slot moved to b");
    m.put_backend(9, &xlb_backend::default()).unwrap();
    assert_eq!(count(b), b0, "an empty slot counts nothing");
    // A reply from a backend on the uplink (untunneled) still finds its
    // reverse entry; a frame from any other source to no frontend passes
    // as not ours without one.
    fixture(&env);
    open(&env, "10.96.0.10:80");
    let (rc, out) = env.xdp(&reply_from(BE_LOCAL).build());
    assert_eq!(rc, XDP_PASS);
    assert_eq!(check_eth_ipv4(&out, "revnat").2.src(), sa("10.96.0.10:80"));
    let stranger = Frame::tcp(sa("198.18.0.77:5000"), sa(CLIENT_SA)).build();
    let (rc, out) = env.xdp(&stranger);
    assert_eq!((rc, out.as_slice()), (XDP_PASS, stranger.as_slice()));
}

/// A deleted Service's flows are no longer translated (as in Cilium): with its
/// frontend gone from fe_filter and the client no backend, the frame cannot
/// match a ct entry and passes untouched, without a lookup.
#[test]
fn a_deleted_services_flows_pass_untranslated() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let f = syn("10.96.0.70:80");
    let (rc, out) = env.xdp(&f.build());
    assert_eq!(rc, XDP_PASS);
    assert_ne!(out, f.build(), "balanced while the Service exists");
    assert!(env
        .maps()
        .delete_service(&tcp_key("10.96.0.70:80"))
        .unwrap());
    let before = env.reasons();
    let (rc, out) = env.xdp(&f.build());
    assert_eq!((rc, out), (XDP_PASS, f.build()));
    let after = env.reasons();
    let r = XLB_R_PASS_NOT_SERVICE as usize;
    assert_eq!(after[r] - before[r], 1, "counted as not ours");
}
