//! # tc packet tests, IPv6
//!
//! The pod-veth program's IPv6 path (xlb_tc tail-calls xlb_tc6:
//! bpf/include/tc6.h, tc6_flow.h) through BPF_PROG_RUN: pod traffic to IPv6
//! ClusterIPs and NodePorts (this node's addresses and another node's,
//! remote_addrs6), reverse NAT of local backends' replies, hairpin, Services
//! without endpoints (TCP RST, ICMPv6 port unreachable into the veth),
//! ICMPv6 errors about balanced flows (also quoting extension headers),
//! fragments, and the egress program's
//! host-network replies. Tunnel return: `packet_tc6_tunnel.rs`. Expected
//! frames are rebuilt from scratch by the test kit (the program's
//! incremental checksums must equal a full computation) and checked by its
//! independent IPv6 checker.
mod packet_util;

use std::net::{Ipv6Addr, SocketAddrV6};

use libbpf_rs::{MapCore, MapFlags};
use packet_util::v6::*;
use packet_util::*;
use xlb_bpf::consts::*;

/// A pod of this node and the MACs of its veth pair.
const POD6: &str = "[fd00:244:1::20]:33000";
const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x20];
const VETH_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x01];
/// Another node's address (remote_addrs6): its NodePorts are balanced here.
const REMOTE_NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 0x2);
/// The hairpin source (ct6.h): 100::a9fe:2a01.
const HAIRPIN6: Ipv6Addr = Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0xa9fe, 0x2a01);
/// A Service whose one backend is the pod itself: [fd00:96::90]:80 ->
/// [fd00:244:1::20]:8080, and :53/UDP -> :5353.
const HAIRPIN_VIP: u16 = 0x90;

fn env6() -> Option<Env> {
    let env = Env::new()?;
    fixture6(&env);
    let a = XLB_BE_F_ACTIVE as u8;
    let k = XLB_KIND_ADDR as u8;
    backend6(&env, 120, pod_at(8080), None, a);
    backend6(&env, 121, pod_at(5353), None, a);
    let vip = *vip6_n(HAIRPIN_VIP, 0).ip();
    service6(&env, vip, 80, TCP, k, 120, 720, &[120; 7], 0, 7, 0);
    service6(&env, vip, 53, UDP, k, 121, 736, &[121; 7], 0, 7, 0);
    let key = REMOTE_NODE6.octets();
    env.dp
        .xdp
        .maps
        .remote_addrs6
        .update(&key, &1u32.to_ne_bytes(), MapFlags::ANY)
        .unwrap();
    Some(env)
}

fn pod() -> SocketAddrV6 {
    sa6(POD6)
}

fn pod_at(port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(*pod().ip(), port, 0, 0)
}

/// A TCP SYN (or `flags`) from the pod to `dst`, as its veth receives it.
fn from_pod(dst: SocketAddrV6) -> Frame6 {
    Frame6::tcp(pod(), dst).macs(POD_MAC, VETH_MAC)
}

fn udp_from_pod(dst: SocketAddrV6) -> Frame6 {
    Frame6::udp(pod(), dst).macs(POD_MAC, VETH_MAC)
}

/// Runs the pod-veth ingress program: (verdict, its one reason, output).
fn run_tc6(env: &Env, frame: &[u8]) -> (u32, u32, Vec<u8>) {
    let before = env.reasons();
    let (rc, out) = env.tc(frame);
    let r = one_reason(&before, &env.reasons());
    (rc, r, out)
}

fn assert_untouched(env: &Env, f: &[u8], reason: u32, what: &str) {
    let (rc, r, out) = run_tc6(env, f);
    assert_eq!(
        (rc, reason_name(r as usize)),
        (TC_ACT_OK, reason_name(reason as usize)),
        "{what}"
    );
    assert_eq!(out, f, "{what}: untouched");
}

/// `f` DNATed to `to` and handed to the stack with `reason`.
fn assert_dnat6(env: &Env, f: &Frame6, to: SocketAddrV6, reason: u32, what: &str) {
    let (rc, r, out) = run_tc6(env, &f.build());
    assert_eq!(
        (rc, reason_name(r as usize)),
        (TC_ACT_OK, reason_name(reason as usize)),
        "{what}"
    );
    check_frame6(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(out, dnat6(f, to), "{what}: exact DNAT");
}

/// `f` with its source (address and port) replaced: a reverse NAT.
fn snat6(f: &Frame6, from: SocketAddrV6) -> Vec<u8> {
    let mut g = f.clone();
    g.src = from;
    g.build()
}

#[test]
fn not_ours_passes_untouched() {
    let Some(env) = env6() else { return };
    let p = *pod().ip();
    assert_untouched(
        &env,
        &neighbour_solicitation(p, *vip6(80).ip()),
        XLB_R_PASS_L4_OTHER,
        "ND",
    );
    assert_untouched(
        &env,
        &icmp6_echo(p, VIP6),
        XLB_R_PASS_L4_OTHER,
        "echo to a ClusterIP",
    );
    let f = from_pod(vip6(81)).build();
    assert_untouched(&env, &f, XLB_R_PASS_NOT_SERVICE, "ClusterIP, another port");
    let f = from_pod(sa6("[fd00:244:2::7]:80")).build();
    assert_untouched(&env, &f, XLB_R_PASS_NOT_SERVICE, "a pod of another node");
    let f = from_pod(sa6("[2001:db8:18::77]:30080")).build();
    assert_untouched(
        &env,
        &f,
        XLB_R_PASS_NOT_SERVICE,
        "NodePort on no node's address",
    );
    // UDP with checksum 0 (invalid over IPv6): never translated
    let mut u = udp_from_pod(vip6(53));
    u.udp_csum = UdpCsum::Zero;
    assert_untouched(&env, &u.build(), XLB_R_PASS_UDP6_NO_CSUM, "UDP checksum 0");
    assert_eq!(ct6_count(&env), 0, "no ct6 entry");
}

#[test]
fn pod_to_services_dnat_and_replies_are_reverse_natted() {
    let Some(env) = env6() else { return };
    // ClusterIP, local backend: DNAT, both ct6 entries.
    let f = from_pod(vip6(80));
    assert_dnat6(&env, &f, sa6(BE6_LOCAL), XLB_R_PASS_LOCAL, "ClusterIP SYN");
    let fwd = ct6(&env, pod(), vip6(80), TCP).expect("forward entry");
    assert_eq!((fwd.backend_id, fwd.svc_id), (101, 101));
    let rev = ct6(&env, sa6(BE6_LOCAL), pod(), TCP).expect("reverse entry");
    assert_eq!(rev.nat, vip6(80));
    assert_ne!(rev.flags & XLB_CT_F_REVERSE, 0);
    // The backend's SYN-ACK: source back to the ClusterIP.
    let mut r = Frame6::tcp(sa6(BE6_LOCAL), pod()).macs(POD_MAC, VETH_MAC);
    r.tcp_flags = 0x12;
    r.seq = 5000;
    r.ack = 1001;
    let (rc, reason, out) = run_tc6(&env, &r.build());
    assert_eq!((rc, reason), (TC_ACT_OK, XLB_R_PASS_REVNAT), "reply");
    check_frame6(&out).unwrap();
    assert_eq!(out, snat6(&r, vip6(80)), "exact reverse NAT");
    // The client's next segment follows ct6.
    let mut a = from_pod(vip6(80));
    a.tcp_flags = 0x10;
    a.seq = 1001;
    a.ack = 5001;
    a.payload = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    assert_dnat6(
        &env,
        &a,
        sa6(BE6_LOCAL),
        XLB_R_PASS_LOCAL,
        "established segment",
    );

    // UDP to a ClusterIP, local backend; its answer.
    let u = udp_from_pod(vip6(53));
    assert_dnat6(&env, &u, sa6(BE6_UDP), XLB_R_PASS_LOCAL, "UDP ClusterIP");
    let ur = Frame6::udp(sa6(BE6_UDP), pod()).macs(POD_MAC, VETH_MAC);
    let (rc, reason, out) = run_tc6(&env, &ur.build());
    assert_eq!((rc, reason), (TC_ACT_OK, XLB_R_PASS_REVNAT));
    check_frame6(&out).unwrap();
    assert_eq!(out, snat6(&ur, vip6(53)), "UDP reverse NAT");

    // A remote backend: DNAT, handed to the stack (the overlay routes it).
    let f = from_pod(vip6_n(0x20, 80));
    assert_dnat6(&env, &f, sa6(BE6_REMOTE), XLB_R_TX_REMOTE, "remote backend");

    // NodePorts: on config6's address, another local address, and another
    // node's address (remote_addrs6): balanced here, at the source.
    for (n, node) in [NODE6, NODE6_B, REMOTE_NODE6].into_iter().enumerate() {
        let mut f = from_pod(SocketAddrV6::new(node, 30080, 0, 0));
        f.src = pod_at(34000 + n as u16);
        assert_dnat6(
            &env,
            &f,
            sa6(BE6_LOCAL),
            XLB_R_PASS_LOCAL,
            &format!("NodePort on {node}"),
        );
    }
    // the reply of the remote node's NodePort flow: back to what the pod dialled
    let mut r = Frame6::tcp(sa6(BE6_LOCAL), pod_at(34002)).macs(POD_MAC, VETH_MAC);
    r.tcp_flags = 0x12;
    let (_, reason, out) = run_tc6(&env, &r.build());
    assert_eq!(reason, XLB_R_PASS_REVNAT);
    assert_eq!(out, snat6(&r, SocketAddrV6::new(REMOTE_NODE6, 30080, 0, 0)));
    // eTP Local frontend without local endpoints: a pod uses the internal entry
    let f = from_pod(vip6_n(0x40, 80));
    assert_dnat6(
        &env,
        &f,
        sa6(BE6_LOCAL),
        XLB_R_PASS_LOCAL,
        "eTP Local, internal entry",
    );
}

#[test]
fn a_pod_reaching_itself_is_hairpinned() {
    let Some(env) = env6() else { return };
    let vip = vip6_n(HAIRPIN_VIP, 80);
    let f = from_pod(vip);
    let (rc, r, out) = run_tc6(&env, &f.build());
    assert_eq!((rc, r), (TC_ACT_REDIRECT, XLB_R_PASS_LOCAL), "hairpin");
    check_frame6(&out).unwrap();
    // From the hairpin address to the pod's backend port, back into the veth.
    let mut want = f.clone().macs(VETH_MAC, POD_MAC);
    want.src = SocketAddrV6::new(HAIRPIN6, pod().port(), 0, 0);
    want.dst = pod_at(8080);
    assert_eq!(out, want.build(), "exact hairpin frame");
    let rev = ct6(&env, pod_at(8080), want.src, TCP).expect("reverse entry to the hairpin address");
    assert_ne!(rev.flags & XLB_CT_F_HAIRPIN, 0);
    // The pod answers the hairpin address: from the frontend to itself.
    let mut r = Frame6::tcp(pod_at(8080), want.src).macs(POD_MAC, VETH_MAC);
    r.tcp_flags = 0x12;
    let (rc, reason, out) = run_tc6(&env, &r.build());
    assert_eq!(
        (rc, reason),
        (TC_ACT_REDIRECT, XLB_R_PASS_REVNAT),
        "hairpin reply"
    );
    check_frame6(&out).unwrap();
    let mut want = r.clone().macs(VETH_MAC, POD_MAC);
    want.src = vip;
    want.dst = pod();
    assert_eq!(out, want.build(), "exact hairpin reply");
    // UDP the same way
    let u = udp_from_pod(vip6_n(HAIRPIN_VIP, 53));
    let (rc, r, out) = run_tc6(&env, &u.build());
    assert_eq!((rc, r), (TC_ACT_REDIRECT, XLB_R_PASS_LOCAL));
    let mut want = u.clone().macs(VETH_MAC, POD_MAC);
    want.src = SocketAddrV6::new(HAIRPIN6, pod().port(), 0, 0);
    want.dst = pod_at(5353);
    assert_eq!(out, want.build(), "exact UDP hairpin frame");
}

#[test]
fn services_without_endpoints_are_rejected_into_the_veth() {
    let Some(env) = env6() else { return };
    let vip = vip6_n(0x30, 80);
    // TCP SYN with data: RST from the frontend, ACK of SYN and data
    let mut f = from_pod(vip);
    f.payload = b"data".to_vec();
    let (rc, r, out) = run_tc6(&env, &f.build());
    assert_eq!((rc, r), (TC_ACT_REDIRECT, XLB_R_TX_REJECT));
    check_frame6(&out).unwrap();
    let mut rst = Frame6::tcp(vip, pod()).macs(VETH_MAC, POD_MAC);
    rst.tcp_flags = 0x14;
    rst.seq = 0;
    rst.ack = 1000 + 4 + 1;
    rst.window = 0;
    assert_eq!(out, rst.build(), "RST");
    // a segment with ACK: RST with its ack as sequence number
    let mut a = from_pod(vip);
    a.tcp_flags = 0x10;
    a.ack = 777;
    let (rc, _, out) = run_tc6(&env, &a.build());
    assert_eq!(rc, TC_ACT_REDIRECT);
    let mut rst = Frame6::tcp(vip, pod()).macs(VETH_MAC, POD_MAC);
    rst.tcp_flags = 0x04;
    rst.seq = 777;
    rst.ack = 0;
    rst.window = 0;
    assert_eq!(out, rst.build(), "RST of an ACK");
    // no answer to a RST
    let mut r0 = from_pod(vip);
    r0.tcp_flags = 0x04;
    let (rc, r, _) = run_tc6(&env, &r0.build());
    assert_eq!((rc, r), (TC_ACT_SHOT, XLB_R_DROP_NO_BACKEND));
    // UDP: ICMPv6 port unreachable quoting the datagram
    let vip53 = vip6_n(0x30, 53);
    let u = udp_from_pod(vip53).build();
    let (rc, r, out) = run_tc6(&env, &u);
    assert_eq!((rc, r), (TC_ACT_REDIRECT, XLB_R_TX_REJECT));
    let p = check_frame6(&out).unwrap();
    assert_eq!((p.src, p.dst, p.proto), (*vip53.ip(), *pod().ip(), ICMP6));
    let want = ipv6_packet(
        (VETH_MAC, POD_MAC),
        *vip53.ip(),
        *pod().ip(),
        ICMP6,
        64,
        &icmp6_msg(
            *vip53.ip(),
            *pod().ip(),
            1,
            4,
            &[&[0u8; 4][..], &u[14..]].concat(),
        ),
    );
    assert_eq!(out, want, "port unreachable");
    // a large datagram: the quote stops at 1232 bytes (1280 in all)
    let big = udp_from_pod(vip53).payload(&[0x5a; 1400]).build();
    let (rc, _, out) = run_tc6(&env, &big);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(out.len(), 14 + 1280);
    check_frame6(&out).unwrap();
    assert_eq!(&out[14 + 48..], &big[14..14 + 1232], "the quote");
    // reject off: a counted drop
    let mut c = env.config();
    c.flags &= !XLB_CFG_F_REJECT;
    env.maps().put_config(&c).unwrap();
    let (rc, r, _) = run_tc6(&env, &from_pod(vip).build());
    assert_eq!((rc, r), (TC_ACT_SHOT, XLB_R_DROP_NO_BACKEND));
}

#[test]
fn icmpv6_errors_about_balanced_flows_are_translated() {
    let Some(env) = env6() else { return };
    let f = from_pod(vip6(80));
    assert_dnat6(&env, &f, sa6(BE6_LOCAL), XLB_R_PASS_LOCAL, "flow");
    // The backend's error about the client's packet (as it received it,
    // from the pod to the backend): toward the client, it is about the
    // frontend, from the frontend.
    let be = *sa6(BE6_LOCAL).ip();
    let seen = dnat6(&f, sa6(BE6_LOCAL));
    let err = icmp6_error(be, *pod().ip(), 1, 4, 0, &seen, 1232);
    let (rc, r, out) = run_tc6(&env, &err);
    assert_eq!(
        (rc, r),
        (TC_ACT_OK, XLB_R_PASS_ICMP_RELATED),
        "backend's error"
    );
    check_frame6(&out).unwrap();
    let want = icmp6_error(VIP6, *pod().ip(), 1, 4, 0, &f.build(), 1232);
    assert_eq!(out, want, "exact translated error");
    // A client pod's error about a reply (from the frontend, as it got it):
    // toward the backend, about the backend.
    let mut reply = Frame6::tcp(vip6(80), pod());
    reply.tcp_flags = 0x12;
    let err = icmp6_error(*pod().ip(), VIP6, 1, 4, 0, &reply.build(), 1232);
    let (rc, r, out) = run_tc6(&env, &err);
    assert_eq!(
        (rc, r),
        (TC_ACT_OK, XLB_R_PASS_ICMP_RELATED),
        "client's error"
    );
    check_frame6(&out).unwrap();
    let mut as_sent = reply.clone();
    as_sent.src = sa6(BE6_LOCAL);
    let want = icmp6_error(*pod().ip(), be, 1, 4, 0, &as_sent.build(), 1232);
    assert_eq!(out, want, "exact error toward the backend");
    // about no flow: untouched
    let other = from_pod(sa6("[fd00:244:2::9]:80")).build();
    let err = icmp6_error(be, *pod().ip(), 1, 4, 0, &other, 1232);
    assert_untouched(&env, &err, XLB_R_PASS_L4_OTHER, "error about no flow");
}

#[test]
fn icmpv6_errors_quoting_extension_headers_are_translated() {
    let Some(env) = env6() else { return };
    let be = *sa6(BE6_LOCAL).ip();
    let p = *pod().ip();
    let chains = [
        vec![Ext::DestOpts(0)],
        vec![Ext::HopByHop(1), Ext::Routing(4, 2)],
        vec![Ext::Fragment {
            offset: 0,
            more: false,
            id: 7,
        }],
    ];
    for (i, ext) in chains.iter().enumerate() {
        let src = pod_at(33100 + i as u16);
        let f = Frame6::tcp(src, vip6(80))
            .macs(POD_MAC, VETH_MAC)
            .ext(ext.clone())
            .payload(b"hello");
        assert_dnat6(&env, &f, sa6(BE6_LOCAL), XLB_R_PASS_LOCAL, "flow");
        // the backend's error about the pod's packet: about the frontend
        let seen = dnat6(&f, sa6(BE6_LOCAL));
        let err = icmp6_error(be, p, 1, 4, 0, &seen, 1232);
        let (rc, r, out) = run_tc6(&env, &err);
        assert_eq!((rc, r), (TC_ACT_OK, XLB_R_PASS_ICMP_RELATED), "{ext:?}");
        check_frame6(&out).unwrap();
        let want = icmp6_error(VIP6, p, 1, 4, 0, &f.build(), 1232);
        assert_eq!(out, want, "{ext:?}: exact translated error");
        // the pod's error about a reply: toward the backend, about it
        let mut reply = Frame6::tcp(vip6(80), src).ext(ext.clone());
        reply.tcp_flags = 0x12;
        let err = icmp6_error(p, VIP6, 1, 4, 0, &reply.build(), 1232);
        let (rc, r, out) = run_tc6(&env, &err);
        assert_eq!((rc, r), (TC_ACT_OK, XLB_R_PASS_ICMP_RELATED), "{ext:?}");
        check_frame6(&out).unwrap();
        let mut as_sent = reply.clone();
        as_sent.src = sa6(BE6_LOCAL);
        let want = icmp6_error(p, be, 1, 4, 0, &as_sent.build(), 1232);
        assert_eq!(out, want, "{ext:?}: exact error toward the backend");
    }
    // a quoted later fragment has no ports: untouched
    let later = Frame6::tcp(pod_at(33100), sa6(BE6_LOCAL))
        .ext(vec![Ext::Fragment {
            offset: 1,
            more: false,
            id: 7,
        }])
        .build();
    let err = icmp6_error(be, p, 1, 4, 0, &later, 1232);
    assert_untouched(&env, &err, XLB_R_PASS_L4_OTHER, "quoted later fragment");
}

#[test]
fn fragments_follow_their_first_fragment() {
    let Some(env) = env6() else { return };
    let u = udp_from_pod(vip6(53)).payload(&[0x33; 200]);
    let (first, later) = u.fragments(64, 0x1234_5678);
    let mut d = u.clone();
    d.dst = sa6(BE6_UDP);
    let (want_first, want_later) = d.fragments(64, 0x1234_5678);
    let (rc, r, out) = run_tc6(&env, &first);
    assert_eq!((rc, r), (TC_ACT_OK, XLB_R_PASS_LOCAL), "first fragment");
    assert_eq!(
        out, want_first,
        "first fragment: address, port, datagram checksum"
    );
    let (rc, r, out) = run_tc6(&env, &later);
    assert_eq!((rc, r), (TC_ACT_OK, XLB_R_PASS_LOCAL), "later fragment");
    assert_eq!(out, want_later, "later fragment: its address");
    // the datagram as reassembled: a valid checksum
    let hdr = 14 + 40 + 8;
    let mut dgram = out_l4(&want_first, hdr);
    dgram.extend_from_slice(&want_later[hdr..]);
    check_l4_6(*pod().ip(), *sa6(BE6_UDP).ip(), UDP, &dgram).unwrap();
    // a later fragment whose first one was never seen: untranslated
    let (_, stray) = udp_from_pod(vip6(53)).payload(&[1; 100]).fragments(64, 99);
    assert_untouched(&env, &stray, XLB_R_PASS_FRAG_NO_FIRST, "stray fragment");
}

fn out_l4(f: &[u8], hdr: usize) -> Vec<u8> {
    f[hdr..].to_vec()
}

#[test]
fn host_network_replies_into_the_pod_are_reverse_natted_at_egress() {
    let Some(env) = env6() else { return };
    // A Service whose endpoint is a process of the node: [NODE6]:6443.
    let host = SocketAddrV6::new(NODE6, 6443, 0, 0);
    backend6(&env, 122, host, None, XLB_BE_F_ACTIVE as u8);
    let vip = vip6_n(0x91, 443);
    service6(
        &env,
        *vip.ip(),
        443,
        TCP,
        XLB_KIND_ADDR as u8,
        122,
        752,
        &[122; 7],
        0,
        7,
        0,
    );
    let f = from_pod(vip);
    assert_dnat6(
        &env,
        &f,
        host,
        XLB_R_PASS_LOCAL,
        "to a host-network endpoint",
    );
    // The node's answer goes straight into the veth (egress).
    let mut r = Frame6::tcp(host, pod()).macs(VETH_MAC, POD_MAC);
    r.tcp_flags = 0x12;
    let before = env.reasons();
    let (rc, out) = env.tc_egress(&r.build());
    assert_eq!(one_reason(&before, &env.reasons()), XLB_R_PASS_REVNAT);
    assert_eq!(rc, TC_ACT_OK);
    check_frame6(&out).unwrap();
    assert_eq!(out, snat6(&r, vip), "exact reverse NAT at egress");
    // Anything else passes egress untouched and uncounted.
    let other = Frame6::tcp(sa6(BE6_REMOTE), pod())
        .macs(VETH_MAC, POD_MAC)
        .build();
    let before = env.reasons();
    let (rc, out) = env.tc_egress(&other);
    assert_eq!((rc, out), (TC_ACT_OK, other));
    assert_eq!(before, env.reasons());
}

#[test]
fn ipv6_reaches_its_program_by_the_tail_call_only() {
    let Some(env) = env6() else { return };
    let f = from_pod(vip6(80));
    assert_dnat6(
        &env,
        &f,
        sa6(BE6_LOCAL),
        XLB_R_PASS_LOCAL,
        "through xlb_tc6",
    );
    clear_ct6(&env);
    // Without the slot the IPv6 frame falls through xlb_tc: not IP, untouched.
    env.dp
        .tc
        .maps
        .tc6_progs
        .delete(&0u32.to_ne_bytes())
        .unwrap();
    assert_untouched(&env, &f.build(), XLB_R_PASS_NOT_IP, "empty slot");
    assert_eq!(ct6_count(&env), 0);
}
