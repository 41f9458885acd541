//! # XDP packet tests, IPv6: the basics
//!
//! The uplink program's IPv6 path (bpf/include/xdp6.h) through BPF_PROG_RUN:
//! frames that are not ours (neighbour discovery, echo, no Service), local
//! backends (ClusterIP, NodePort on the node's addresses, UDP), the UDP
//! checksum rules of IPv6, the backend choice (Maglev, affinity on the /128,
//! source ranges, traffic policy Local) and Services without endpoints
//! (TCP RST, ICMPv6 port unreachable). Expected frames are rebuilt from
//! scratch (the program's incremental checksums must equal a full
//! computation) and checked by the test kit's independent IPv6 checker.
//! Tunnels and the MTU: `packet_xdp6_encap.rs`; extension headers,
//! fragments, ICMPv6 errors and truncation: `packet_xdp6_ext.rs`.
mod packet_util;

use std::net::SocketAddrV6;

use packet_util::v6::*;
use packet_util::*;
use xlb_bpf::consts::*;

fn syn6(dst: SocketAddrV6) -> Frame6 {
    Frame6::tcp(client6(), dst)
}

/// The frame passes untouched with `reason`.
fn assert_untouched(env: &Env, f: &[u8], reason: u32, what: &str) {
    let (rc, r, out) = run6(env, f);
    assert_eq!((rc, r), (XDP_PASS, reason), "{what}");
    assert_eq!(out, f, "{what}: untouched");
}

/// The frame is DNATed to `to` and passed (local backend).
fn assert_local(env: &Env, f: &Frame6, to: &str, what: &str) -> Vec<u8> {
    let (rc, r, out) = run6(env, &f.build());
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL), "{what}");
    check_frame6(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(out, dnat6(f, sa6(to)), "{what}: exact DNAT");
    out
}

#[test]
fn not_ours_passes_untouched() {
    let Some(env) = env6() else { return };
    let ns = neighbour_solicitation(CLIENT6, NODE6);
    assert_untouched(&env, &ns, XLB_R_PASS_L4_OTHER, "neighbour solicitation");
    let mut na_body = vec![0x60, 0, 0, 0];
    na_body.extend_from_slice(&CLIENT6.octets());
    let na = icmp6_frame(CLIENT6, NODE6, 136, 0, &na_body);
    assert_untouched(&env, &na, XLB_R_PASS_L4_OTHER, "neighbour advertisement");
    let echo = icmp6_echo(CLIENT6, VIP6);
    assert_untouched(&env, &echo, XLB_R_PASS_L4_OTHER, "echo to a VIP");
    let f = syn6(vip6(81)).build();
    assert_untouched(&env, &f, XLB_R_PASS_NOT_SERVICE, "ClusterIP, another port");
    let f = syn6(SocketAddrV6::new(
        "2001:db8:18::77".parse().unwrap(),
        30080,
        0,
        0,
    ))
    .build();
    assert_untouched(
        &env,
        &f,
        XLB_R_PASS_NOT_SERVICE,
        "NodePort on a foreign address",
    );
    let f = Frame6::udp(client6(), sa6("[2001:db8:18::1]:9999")).build();
    assert_untouched(&env, &f, XLB_R_PASS_NOT_SERVICE, "UDP to the node");
    assert_eq!(ct6_count(&env), 0, "no ct6 entry");
}

#[test]
fn local_backends_dnat_and_track() {
    let Some(env) = env6() else { return };
    let f = syn6(vip6(80));
    assert_local(&env, &f, BE6_LOCAL, "ClusterIP SYN");
    let fwd = ct6(&env, client6(), vip6(80), TCP).expect("forward entry");
    assert_eq!(
        (fwd.backend_id, fwd.svc_id, fwd.flags),
        (101, 101, XLB_CT_F_SYN)
    );
    let rev = ct6(&env, sa6(BE6_LOCAL), client6(), TCP).expect("reverse entry");
    assert_eq!(rev.flags, XLB_CT_F_REVERSE | XLB_CT_F_SYN);
    assert_eq!(rev.nat, vip6(80));
    // the client's ACK: established, the same backend
    let mut ack = syn6(vip6(80));
    ack.tcp_flags = 0x10;
    ack.payload = b"GET / HTTP/1.1\r\n".to_vec();
    assert_local(&env, &ack, BE6_LOCAL, "ClusterIP ACK");
    assert_eq!(ct6(&env, client6(), vip6(80), TCP).unwrap().flags, 0);
    // UDP
    let u = Frame6::udp(client6(), vip6(53));
    assert_local(&env, &u, BE6_UDP, "ClusterIP UDP");
    // NodePort on config6's address and on another local address
    let np = syn6(SocketAddrV6::new(NODE6, 30080, 0, 0));
    assert_local(&env, &np, BE6_LOCAL, "NodePort on the node address");
    let np = syn6(SocketAddrV6::new(NODE6_B, 30080, 0, 0));
    assert_local(&env, &np, BE6_LOCAL, "NodePort on a local_addrs6 address");
    assert_eq!(
        ct6(
            &env,
            client6(),
            SocketAddrV6::new(NODE6_B, 30080, 0, 0),
            TCP
        )
        .unwrap()
        .svc_id,
        111
    );
}

#[test]
fn udp_checksum_zero_is_never_emitted() {
    let Some(env) = env6() else { return };
    // a received UDP/IPv6 datagram with checksum 0 is invalid: untouched
    let mut z = Frame6::udp(client6(), vip6(53));
    z.udp_csum = UdpCsum::Zero;
    assert_untouched(&env, &z.build(), XLB_R_PASS_UDP6_NO_CSUM, "UDP checksum 0");
    assert!(ct6(&env, client6(), vip6(53), UDP).is_none());
    // a payload whose checksum after the DNAT computes to 0: sent as 0xffff
    let mut f = Frame6::udp(client6(), vip6(53)).payload(&[0x11, 0x22, 0, 0]);
    let mut out = f.clone();
    out.dst = sa6(BE6_UDP);
    let mut l4 = out.l4();
    l4[6] = 0;
    l4[7] = 0;
    let s = xlb_testkit::csum::fold(
        xlb_testkit::csum::pseudo_sum6(out.src.ip().octets(), out.dst.ip().octets(), UDP, l4.len())
            + xlb_testkit::csum::sum16(&l4),
    );
    let w = 0xffff - s;
    f.payload[2..4].copy_from_slice(&w.to_be_bytes());
    let (rc, r, got) = run6(&env, &f.build());
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL));
    let p = check_frame6(&got).unwrap();
    assert_eq!(
        &got[p.l4_off + 6..p.l4_off + 8],
        &[0xff, 0xff],
        "0 sent as 0xffff"
    );
    assert_eq!(got, dnat6(&f, sa6(BE6_UDP)));
}

#[test]
fn backend_choice() {
    let Some(env) = env6() else { return };
    // affinity: every source port of the client lands on its first choice,
    // recorded on the /128
    let vip = vip6_n(0x60, 80);
    let first = syn6(vip);
    let want = maglev_pick6(&AFF6_TABLE, client6(), vip, TCP, true);
    let (rc, _, out) = run6(&env, &first.build());
    assert_eq!(rc, XDP_PASS);
    let be = check_frame6(&out).unwrap().dst;
    assert_eq!(affinity6(&env, 110, CLIENT6), Some(want));
    let mut seen = std::collections::BTreeSet::new();
    for port in 40001..40020 {
        let f = Frame6::tcp(SocketAddrV6::new(CLIENT6, port, 0, 0), vip);
        let (_, _, out) = run6(&env, &f.build());
        seen.insert(check_frame6(&out).unwrap().dst);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![be],
        "one backend"
    );
    // a live entry decides (whatever the hash says); an expired one (the
    // Service's timeout is 100 s) gives a fresh choice from the whole flow
    let other = sa6("[2001:db8:18::65]:40000");
    let id_of = |a: std::net::Ipv6Addr| {
        [(101, BE6_LOCAL), (106, BE6_5), (107, BE6_6)]
            .into_iter()
            .find(|(_, s)| *sa6(s).ip() == a)
            .unwrap()
            .0
    };
    let pick = maglev_pick6(&AFF6_TABLE, other, vip, TCP, false);
    let forced = [101, 106, 107].into_iter().find(|i| *i != pick).unwrap();
    put_affinity6(&env, 110, *other.ip(), forced, now_ns());
    let (_, _, out) = run6(&env, &Frame6::tcp(other, vip).build());
    assert_eq!(id_of(check_frame6(&out).unwrap().dst), forced, "live entry");
    clear_ct6(&env);
    put_affinity6(&env, 110, *other.ip(), forced, now_ns() - 101_000_000_000);
    let (_, _, out) = run6(&env, &Frame6::tcp(other, vip).build());
    assert_eq!(
        id_of(check_frame6(&out).unwrap().dst),
        pick,
        "expired entry"
    );
    assert_eq!(affinity6(&env, 110, *other.ip()), Some(pick), "rewritten");
    // without affinity the whole flow's hash picks the slot
    let a = XLB_KIND_ADDR as u8;
    service6(
        &env,
        *vip6_n(0x70, 0).ip(),
        80,
        TCP,
        a,
        113,
        720,
        &AFF6_TABLE,
        0,
        11,
        0,
    );
    let mut spread = std::collections::BTreeSet::new();
    for port in 41000..41040 {
        let src = SocketAddrV6::new(CLIENT6, port, 0, 0);
        let f = Frame6::tcp(src, vip6_n(0x70, 80));
        let id = maglev_pick6(&AFF6_TABLE, src, vip6_n(0x70, 80), TCP, false);
        let to = [(101, BE6_LOCAL), (106, BE6_5), (107, BE6_6)]
            .into_iter()
            .find(|(i, _)| *i == id)
            .unwrap()
            .1;
        assert_local(&env, &f, to, "Maglev pick");
        spread.insert(id);
    }
    assert_eq!(spread.len(), 3, "the flows spread over the table");
    // source ranges: allowed inside 2001:db8:18::/120, dropped outside
    assert_local(
        &env,
        &syn6(vip6_n(0x50, 80)),
        BE6_LOCAL,
        "source range allows",
    );
    let out_of_range = Frame6::tcp(sa6("[2001:db8:19::1]:40000"), vip6_n(0x50, 80));
    let (rc, r, _) = run6(&env, &out_of_range.build());
    assert_eq!((rc, r), (XDP_DROP, XLB_R_DROP_SRC_RANGE));
    // externalTrafficPolicy Local without local endpoint: an external client
    // is dropped; a pod (by tunnel) uses the internal entry
    let (rc, r, _) = run6(&env, &syn6(vip6_n(0x40, 80)).build());
    assert_eq!((rc, r), (XDP_DROP, XLB_R_DROP_ETP_LOCAL));
    let pod = sa6("[fd00:244:2::77]:45000");
    let inner = Frame6::tcp(pod, vip6_n(0x40, 80)).macs(VTEP_MAC, NODE_MAC);
    let v = vxlan6(&inner.build(), PEER6, NODE6, VNI, false, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL), "internal entry");
    let mut want = inner.clone();
    want.dst = sa6(BE6_LOCAL);
    want.dst_mac = NODE_MAC;
    assert_eq!(out, want.build());
    let t = ct6(&env, pod, vip6_n(0x40, 80), TCP).unwrap();
    assert_eq!((t.svc_id, t.tunnel_peer), (112, PEER6));
    assert_ne!(t.flags & XLB_CT_F_TUNNEL, 0);
}

#[test]
fn services_without_endpoints_are_rejected() {
    let Some(env) = env6() else { return };
    let vip = vip6_n(0x30, 80);
    // TCP: RST from the frontend, ACK of the SYN
    let mut f = syn6(vip);
    f.payload = b"data".to_vec();
    let (rc, r, out) = run6(&env, &f.build());
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REJECT));
    check_frame6(&out).unwrap();
    let mut rst = Frame6::tcp(vip, client6()).macs(NODE_MAC, CLIENT_MAC);
    rst.tcp_flags = 0x14;
    rst.seq = 0;
    rst.ack = 1000 + 4 + 1;
    rst.window = 0;
    assert_eq!(out, rst.build(), "RST");
    // a segment with ACK: RST with its ack as sequence number, no ACK
    let mut a = syn6(vip);
    a.tcp_flags = 0x10;
    a.ack = 777;
    let (rc, _, out) = run6(&env, &a.build());
    assert_eq!(rc, XDP_TX);
    let mut rst = Frame6::tcp(vip, client6()).macs(NODE_MAC, CLIENT_MAC);
    rst.tcp_flags = 0x04;
    rst.seq = 777;
    rst.ack = 0;
    rst.window = 0;
    assert_eq!(out, rst.build(), "RST of an ACK");
    // no answer to a RST
    let mut r0 = syn6(vip);
    r0.tcp_flags = 0x04;
    let (rc, r, _) = run6(&env, &r0.build());
    assert_eq!((rc, r), (XDP_DROP, XLB_R_DROP_NO_BACKEND));
    // UDP: ICMPv6 port unreachable quoting the datagram
    let u = Frame6::udp(client6(), vip6_n(0x30, 53)).build();
    let (rc, r, out) = run6(&env, &u);
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REJECT));
    let p = check_frame6(&out).unwrap();
    assert_eq!(
        (p.src, p.dst, p.proto),
        (*vip6_n(0x30, 0).ip(), CLIENT6, ICMP6)
    );
    let want = swap_macs(icmp6_error(
        *vip6_n(0x30, 0).ip(),
        CLIENT6,
        1,
        4,
        0,
        &u,
        1232,
    ));
    assert_eq!(out, want, "port unreachable");
    // a large datagram: the quote stops at 1232 bytes (1280 in all)
    let big = Frame6::udp(client6(), vip6_n(0x30, 53))
        .payload(&[0x5a; 1400])
        .build();
    let (rc, _, out) = run6(&env, &big);
    assert_eq!(rc, XDP_TX);
    assert_eq!(out.len(), 14 + 1280);
    let want = swap_macs(icmp6_error(
        *vip6_n(0x30, 0).ip(),
        CLIENT6,
        1,
        4,
        0,
        &big,
        1232,
    ));
    assert_eq!(out, want);
    check_frame6(&out).unwrap();
    // reject off: a counted drop
    let mut c = env.config();
    c.flags &= !XLB_CFG_F_REJECT;
    env.maps().put_config(&c).unwrap();
    let (rc, r, _) = run6(&env, &syn6(vip).build());
    assert_eq!((rc, r), (XDP_DROP, XLB_R_DROP_NO_BACKEND));
}

#[test]
fn ipv6_ethertype_reaches_the_ipv6_path_only() {
    let Some(env) = env6() else { return };
    // an IPv4 frame never reaches the IPv6 maps
    let f = Frame::tcp(sa("198.18.0.100:40000"), sa("10.96.0.99:80")).build();
    let (rc, out) = env.xdp(&f);
    assert_eq!((rc, out.as_slice()), (XDP_PASS, f.as_slice()));
    // an IPv6 ethertype with a bad version nibble: counted, untouched
    let mut bad = syn6(vip6(80)).build();
    bad[14] = 0x40;
    assert_untouched(
        &env,
        &bad,
        XLB_R_PASS_TRUNC_IP,
        "version 4 in an IPv6 ethertype",
    );
    // the IPv6 path is the program in xdp6_prog: without it, IPv6 is not IP
    use libbpf_rs::MapCore;
    env.dp
        .xdp
        .maps
        .xdp6_prog
        .delete(&0u32.to_ne_bytes())
        .unwrap();
    let f = syn6(vip6(80)).build();
    assert_untouched(&env, &f, XLB_R_PASS_NOT_IP, "no IPv6 program");
    assert_eq!(ct6_count(&env), 0);
}

/// Every raw record waiting in the events ring buffer.
fn drain_raw(mon: &xlb_bpf::monitor::MonitorMaps) -> Vec<Vec<u8>> {
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = got.clone();
    let mut b = libbpf_rs::RingBufferBuilder::new();
    b.add(&mon.events, move |d: &[u8]| {
        sink.borrow_mut().push(d.to_vec());
        0
    })
    .unwrap();
    let rb = b.build().unwrap();
    rb.consume().unwrap();
    drop(rb);
    std::rc::Rc::try_unwrap(got).unwrap().into_inner()
}

/// struct xlb_event: family at 30, saddr/daddr at 16/20, sport/dport at
/// 24/26, saddr6/daddr6 at 40/56 (72 bytes).
#[test]
fn drops_are_events_with_their_family() {
    let Some(env) = env6() else { return };
    let mon = xlb_bpf::monitor::MonitorMaps::from_skel(&env.dp.xdp).unwrap();
    mon.set(true, 0).unwrap();
    let src = sa6("[2001:db8:19::1]:40000");
    let f = Frame6::tcp(src, vip6_n(0x50, 80)).build();
    let (rc, r, _) = run6(&env, &f);
    assert_eq!((rc, r), (XDP_DROP, XLB_R_DROP_SRC_RANGE));
    let ev = drain_raw(&mon);
    assert_eq!(ev.len(), 1);
    let e = &ev[0];
    assert_eq!(e.len(), 72);
    assert_eq!(
        u32::from_ne_bytes(e[8..12].try_into().unwrap()),
        XLB_R_DROP_SRC_RANGE
    );
    assert_eq!(
        u32::from_ne_bytes(e[12..16].try_into().unwrap()),
        109,
        "svc_id"
    );
    assert_eq!(e[30], 6, "family");
    assert_eq!(&e[16..24], &[0; 8], "no IPv4 addresses");
    assert_eq!(&e[24..28], &[0x9c, 0x40, 0, 80], "ports");
    assert_eq!(e[28], TCP);
    assert_eq!(&e[40..56], &src.ip().octets());
    assert_eq!(&e[56..72], &vip6_n(0x50, 0).ip().octets());
    // an IPv4 drop: family 0
    env.service(
        tcp_key("10.96.0.50:80"),
        9,
        0,
        &[1; 7],
        XLB_SVC_F_SRC_RANGES,
    );
    env.backend(1, "10.244.1.10:8080", None);
    let f4 = Frame::tcp(sa("198.18.0.100:40000"), sa("10.96.0.50:80")).build();
    let (rc, _) = env.xdp_in(&f4, Some(env.uplink));
    assert_eq!(rc, XDP_DROP);
    let ev = drain_raw(&mon);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0][30], 0, "family");
    assert_eq!(&ev[0][16..20], &[198, 18, 0, 100]);
}
