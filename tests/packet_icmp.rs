//! # ICMP errors about balanced flows, both programs
//!
//! Fragmentation needed (3/4), port unreachable (3/3) and time exceeded
//! (11/0) quoting a packet of a balanced flow are translated (outer header,
//! quoted header, every checksum) and sent toward the client or the backend
//! like the flow's own packets (bpf/include/icmperr.h). Expected frames are
//! built from scratch with the quote of the packet as the receiver sent it,
//! so every output byte is checked; checksums are also verified with
//! etherparse and a recomputation of the ICMP sum.
mod packet_util;

use std::net::Ipv4Addr;

use packet_util::related::*;
use packet_util::*;

/// XDP frames arrive on the uplink (the ICMP paths check it).
fn step(env: &Env, prog: Prog, frame: &[u8], rc: u32, reason: u32) -> Vec<u8> {
    step_via(env, prog, frame, rc, reason, Some(env.uplink))
}
use xlb_bpf::consts::*;

const CLIENT_SA: &str = "198.18.0.100:40000";
const POD: &str = "10.244.1.20:33000";
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);

fn ip(s: &str) -> Ipv4Addr {
    *sa(s).ip()
}

/// Checks an ICMP error frame independently: IPv4 header checksum, ICMP
/// checksum, quoted IPv4 header checksum (etherparse), and the quoted UDP
/// checksum when the whole datagram is quoted.
fn check_icmp(out: &[u8], what: &str) {
    let (_, _, p) = check_eth_ipv4(out, what);
    assert_eq!(p.ip.protocol.0, 1, "{what}: ICMP");
    let quoted = &p.l4[8..];
    let (qh, _) = etherparse::Ipv4Header::from_slice(quoted).expect("quoted IPv4 header");
    assert_eq!(
        qh.header_checksum,
        qh.calc_header_checksum(),
        "{what}: quoted IPv4 header checksum"
    );
    if quoted.len() >= usize::from(qh.total_len) {
        check_ipv4(quoted, &format!("{what}: quoted packet"));
    }
}

fn open_udp(env: &Env, vip: &str) {
    let (rc, _) = env.xdp_in(
        &Frame::udp(sa(CLIENT_SA), sa(vip)).build(),
        Some(env.uplink),
    );
    assert!(rc == XDP_PASS || rc == XDP_TX, "opening {vip}: rc {rc}");
}

fn open_tcp(env: &Env, vip: &str) {
    let (rc, _) = env.xdp_in(
        &Frame::tcp(sa(CLIENT_SA), sa(vip)).build(),
        Some(env.uplink),
    );
    assert!(rc == XDP_PASS || rc == XDP_TX, "opening {vip}: rc {rc}");
}

/// Frag needed from a router between the node and the backend, toward the
/// client, quoting the DNATed TCP segment (Linux quotes the whole packet).
#[test]
fn xdp_frag_needed_from_a_router_toward_the_client() {
    let Some(env) = fresh() else { return };
    open_tcp(&env, "10.96.0.10:80");
    let sent = Frame::tcp(sa(CLIENT_SA), sa("10.96.0.10:80")).payload(&[7; 30]);
    let dnated = Frame {
        dst: sa(BE_LOCAL),
        ..sent.clone()
    }
    .build();
    let input = icmp_error(ROUTER, CLIENT, FRAG_NEEDED, 1400, &dnated, 576);
    let out = step(&env, Prog::Xdp, &input, XDP_PASS, XLB_R_PASS_ICMP_RELATED);
    check_icmp(&out, "frag needed");
    let want = icmp_error(
        ip("10.96.0.10:80"),
        CLIENT,
        FRAG_NEEDED,
        1400,
        &sent.build(),
        576,
    );
    assert_eq!(
        out, want,
        "outer source := VIP, quoted destination := VIP:80"
    );
}

/// Time exceeded (TTL) toward the client, minimal quote (IPv4 + 8 bytes: the
/// TCP checksum is not quoted).
#[test]
fn xdp_time_exceeded_toward_the_client_short_quote() {
    let Some(env) = fresh() else { return };
    open_tcp(&env, "10.96.0.10:80");
    let sent = Frame::tcp(sa(CLIENT_SA), sa("10.96.0.10:80"));
    let dnated = Frame {
        dst: sa(BE_LOCAL),
        ..sent.clone()
    }
    .build();
    let input = icmp_error(ROUTER, CLIENT, TTL_EXCEEDED, 0, &dnated, 28);
    let out = step(&env, Prog::Xdp, &input, XDP_PASS, XLB_R_PASS_ICMP_RELATED);
    check_icmp(&out, "time exceeded");
    let want = icmp_error(
        ip("10.96.0.10:80"),
        CLIENT,
        TTL_EXCEEDED,
        0,
        &sent.build(),
        28,
    );
    assert_eq!(out, want);
}

/// Port unreachable from a remote backend, sent back by its node through the
/// tunnel (tunnel return): decapsulated and translated toward the client.
#[test]
fn xdp_port_unreachable_from_a_remote_backend_by_tunnel() {
    let Some(env) = fresh() else { return };
    // a pod's flow (tc): this node keeps its reverse entry (the uplink's
    // flows to remote backends are translated at the backend's node: see
    // tnat_backend_error_is_translated_at_its_node)
    let (rc, _) = env.tc(&Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53")).build());
    assert_eq!(rc, TC_ACT_OK);
    let sent = Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53"));
    let dnated = Frame {
        dst: sa(BE_REMOTE),
        ..sent.clone()
    }
    .build();
    let inner = with_macs(
        icmp_error(ip(BE_REMOTE), CLIENT, PORT_UNREACH, 0, &dnated, 576),
        VTEP_MAC,
        PEER_MAC,
    );
    let input = vxlan(&inner, PEER, NODE, VNI, false);
    let out = step(&env, Prog::Xdp, &input, XDP_PASS, XLB_R_PASS_ICMP_RELATED);
    check_icmp(&out, "port unreachable");
    let want = with_macs(
        icmp_error(
            ip("10.96.0.20:53"),
            CLIENT,
            PORT_UNREACH,
            0,
            &sent.build(),
            576,
        ),
        NODE_MAC,
        PEER_MAC,
    );
    assert_eq!(out, want, "decapsulated, quoted UDP checksum kept right");
}

/// The client side answers a reply with port unreachable: toward the local
/// backend (outer destination and quoted source := the backend).
#[test]
fn xdp_port_unreachable_from_the_client_toward_a_local_backend() {
    let Some(env) = fresh() else { return };
    open_udp(&env, "10.96.0.10:53");
    let reply = Frame::udp(sa("10.96.0.10:53"), sa(CLIENT_SA)).build();
    let input = icmp_error(CLIENT, ip("10.96.0.10:53"), PORT_UNREACH, 0, &reply, 576);
    let out = step(&env, Prog::Xdp, &input, XDP_PASS, XLB_R_PASS_ICMP_RELATED);
    check_icmp(&out, "toward backend");
    let backend_sent = Frame::udp(sa(BE_UDP), sa(CLIENT_SA)).build();
    let want = icmp_error(CLIENT, ip(BE_UDP), PORT_UNREACH, 0, &backend_sent, 576);
    assert_eq!(out, want);
}

/// ... and toward a remote backend: into the tunnel, marked, like the flow.
#[test]
fn xdp_frag_needed_from_the_client_toward_a_remote_backend() {
    let Some(env) = fresh() else { return };
    open_tcp(&env, "10.96.0.20:80");
    let reply = Frame::tcp(sa("10.96.0.20:80"), sa(CLIENT_SA)).build();
    let input = icmp_error(CLIENT, ip("10.96.0.20:80"), FRAG_NEEDED, 1280, &reply, 48);
    let out = step(&env, Prog::Xdp, &input, XDP_TX, XLB_R_TX_ICMP_RELATED);
    let v = check_vxlan(&out, "encap");
    assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
    assert_eq!(v.flags, 0x0800_0003, "marked, with the frontend");
    assert_eq!(v.fe, Some(sa("10.96.0.20:80")), "the flow's frontend");
    check_icmp(&v.inner, "inner");
    let backend_sent = Frame::tcp(sa(BE_REMOTE), sa(CLIENT_SA)).build();
    let want = with_macs(
        icmp_error(CLIENT, ip(BE_REMOTE), FRAG_NEEDED, 1280, &backend_sent, 48),
        VTEP_MAC,
        NODE_MAC,
    );
    assert_eq!(v.inner, want);
}

/// Errors quoting no balanced flow pass untouched.
#[test]
fn icmp_errors_about_other_flows_pass_untouched() {
    let Some(env) = fresh() else { return };
    let other = Frame::udp(sa(CLIENT_SA), sa("10.244.1.11:5353")).build();
    let input = icmp_error(ROUTER, CLIENT, PORT_UNREACH, 0, &other, 576);
    let out = step(&env, Prog::Xdp, &input, XDP_PASS, XLB_R_PASS_L4_OTHER);
    assert_eq!(out, input);
    let out = step(&env, Prog::Tc, &input, TC_ACT_OK, XLB_R_PASS_L4_OTHER);
    assert_eq!(out, input);
}

/// tc: a local backend pod answers the client with port unreachable.
#[test]
fn tc_port_unreachable_from_a_local_backend_toward_the_client() {
    let Some(env) = fresh() else { return };
    open_udp(&env, "10.96.0.10:53");
    let sent = Frame::udp(sa(CLIENT_SA), sa("10.96.0.10:53"));
    let dnated = Frame {
        dst: sa(BE_UDP),
        ..sent.clone()
    }
    .build();
    let input = icmp_error(ip(BE_UDP), CLIENT, PORT_UNREACH, 0, &dnated, 576);
    let out = step(&env, Prog::Tc, &input, TC_ACT_OK, XLB_R_PASS_ICMP_RELATED);
    check_icmp(&out, "tc port unreachable");
    let want = icmp_error(
        ip("10.96.0.10:53"),
        CLIENT,
        PORT_UNREACH,
        0,
        &sent.build(),
        576,
    );
    assert_eq!(out, want);
}

/// tc: a client pod's time exceeded / frag needed about a reply it got from
/// the VIP goes to the backend.
#[test]
fn tc_errors_from_a_client_pod_toward_the_backend() {
    let Some(env) = fresh() else { return };
    let (rc, _) = env.tc(&Frame::tcp(sa(POD), sa("10.96.0.10:80")).build());
    assert_eq!(rc, TC_ACT_OK);
    let reply = Frame::tcp(sa("10.96.0.10:80"), sa(POD)).build();
    let backend_sent = Frame::tcp(sa(BE_LOCAL), sa(POD)).build();
    for kind in [TTL_EXCEEDED, FRAG_NEEDED] {
        let input = icmp_error(ip(POD), ip("10.96.0.10:80"), kind, 1400, &reply, 576);
        let out = step(&env, Prog::Tc, &input, TC_ACT_OK, XLB_R_PASS_ICMP_RELATED);
        check_icmp(&out, "tc toward backend");
        let want = icmp_error(ip(POD), ip(BE_LOCAL), kind, 1400, &backend_sent, 576);
        assert_eq!(out, want, "{kind:?}");
    }
}

/// tc on the backend's node of a tunneled flow: the backend's error goes
/// back, untranslated, to the node that chose it (which translates it, see
/// xdp_port_unreachable_from_a_remote_backend_by_tunnel).
#[test]
fn tc_error_of_a_tunneled_flow_returns_through_the_tunnel() {
    let Some(env) = fresh() else { return };
    let flow = Frame::udp(sa(CLIENT_SA), sa(BE_UDP)).build();
    let (rc, _) = env.xdp_in(&vxlan(&flow, PEER, NODE, VNI, true), Some(env.uplink));
    assert_eq!(rc, XDP_PASS, "marked tunnel in: tunnel-return entry");
    let input = icmp_error(ip(BE_UDP), CLIENT, PORT_UNREACH, 0, &flow, 576);
    let out = step(
        &env,
        Prog::Tc,
        &input,
        TC_ACT_REDIRECT,
        XLB_R_TX_ICMP_RELATED,
    );
    let v = check_vxlan(&out, "tunnel return");
    assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
    assert_eq!(v.flags, 0x0800_0000, "unmarked");
    assert_eq!(&v.inner[14..], &input[14..], "untranslated");
}

/// Tunnel NAT (two data planes: B balances, C holds the backend): the
/// backend's error about the client's packet is translated by C's tc (the
/// frontend C got with the flow) and sent back marked translated; B only
/// decapsulates it, and the client gets the error it would get from the VIP.
#[test]
fn tnat_backend_error_is_translated_at_its_node() {
    let Some(b) = fresh() else { return };
    let c = Env::second_node(&b);
    let sent = Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53"));
    let (rc, to_c) = b.xdp_in(&sent.build(), Some(b.uplink));
    assert_eq!(rc, XDP_TX);
    let (rc, at_c) = c.xdp(&to_c);
    assert_eq!(rc, XDP_PASS, "C: decap, tunnel NAT entry");
    let input = with_macs(
        icmp_error(ip(BE_REMOTE), CLIENT, PORT_UNREACH, 0, &at_c, 576),
        VETH_OF_POD,
        POD_MAC,
    );
    let out = step(&c, Prog::Tc, &input, TC_ACT_REDIRECT, XLB_R_TX_ICMP_RELATED);
    let v = check_vxlan(&out, "C -> B");
    assert_eq!(Ipv4Addr::from(v.ip.destination), NODE);
    assert_eq!(v.flags, 0x0800_0004, "translated at C");
    check_icmp(&v.inner, "inner");
    let want = icmp_error(
        ip("10.96.0.20:53"),
        CLIENT,
        PORT_UNREACH,
        0,
        &sent.build(),
        576,
    );
    assert_eq!(
        &v.inner[14..],
        &want[14..],
        "translated toward the client at C"
    );
    let out = step(&b, Prog::Xdp, &out, XDP_PASS, XLB_R_PASS_DECAP);
    assert_eq!(
        out,
        with_macs(want, NODE_MAC, PEER_MAC),
        "B only decapsulates"
    );
}

const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x0a];
const VETH_OF_POD: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x02];
