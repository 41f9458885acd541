//! # tc packet tests, IPv6 tunnel return
//!
//! Flows that reached a local backend through the IPv6 VXLAN overlay (the
//! uplink XDP program decapsulated them and wrote ct6 with the tunnel peer)
//! are answered from the pod veth back through the tunnel: the reply (and
//! an ICMPv6 error about the flow) is encapsulated in VXLAN over IPv6 to
//! the peer node and redirected to the uplink, reverse-NATed first when
//! this node chose the backend. The exact outer headers are rebuilt here,
//! the outer UDP checksum by a full computation over the datagram (the
//! program derives it from the headers alone).
mod packet_util;

use packet_util::v6::*;
use packet_util::*;
use xlb_bpf::consts::*;

const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x10];
const VETH_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x02];

fn env6() -> Option<Env> {
    let env = Env::new()?;
    fixture6(&env);
    Some(env)
}

fn run_tc6(env: &Env, frame: &[u8]) -> (u32, u32, Vec<u8>) {
    let before = env.reasons();
    let (rc, out) = env.tc(frame);
    let r = one_reason(&before, &env.reasons());
    (rc, r, out)
}

/// What the pod veth program sends to PEER6 for `inner` (an Ethernet frame
/// as it left the pod, after any NAT): the frame's own Ethernet header in
/// front (bpf_redirect_neigh fills the outer MACs), IPv6 NODE6 -> PEER6,
/// UDP from the flow hash's port to the VXLAN port with its checksum,
/// VXLAN (I flag), the inner frame with the node's MAC as source.
fn encap6_tc(inner: &[u8], hash: u32) -> Vec<u8> {
    let mut inner = inner.to_vec();
    inner[6..12].copy_from_slice(&NODE_MAC);
    let mut u = Vec::new();
    u.extend_from_slice(&(0xc000 | (hash & 0x3fff) as u16).to_be_bytes());
    u.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    u.extend_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&[0x08, 0, 0, 0]);
    u.extend_from_slice(&(VNI << 8).to_be_bytes());
    u.extend_from_slice(&inner);
    let c = match l4_csum6(NODE6, PEER6, UDP, &u) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = ipv6_packet((POD_MAC, VETH_MAC), NODE6, PEER6, UDP, 64, &u);
    // the Ethernet header is the one the pod's frame had
    f[0..6].copy_from_slice(&inner[0..6]);
    f[6..12].copy_from_slice(&POD_MAC);
    f
}

#[test]
fn replies_to_a_flow_another_node_balanced_go_back_untranslated() {
    let Some(env) = env6() else { return };
    // PEER6 chose this node's BE6_LOCAL for a client (xlb-marked VXLAN).
    let client = sa6("[2001:db8:99::5]:41000");
    let inner = Frame6::tcp(client, sa6(BE6_LOCAL)).macs(VTEP_MAC, VTEP_MAC);
    let v = vxlan6(&inner.build(), PEER6, NODE6, VNI, true, false);
    let (rc, out) = env.xdp_in(&v, Some(env.uplink));
    assert_eq!(rc, XDP_PASS, "decapsulated for the pod");
    assert_eq!(out, inner.clone().macs(VTEP_MAC, NODE_MAC).build());
    // The backend's SYN-ACK leaves its pod: back to PEER6 as it is.
    let mut reply = Frame6::tcp(sa6(BE6_LOCAL), client).macs(POD_MAC, VETH_MAC);
    reply.tcp_flags = 0x12;
    reply.payload = vec![0x42; 333];
    let r = reply.build();
    let (rc, reason, out) = run_tc6(&env, &r);
    assert_eq!((rc, reason), (TC_ACT_REDIRECT, XLB_R_TX_TUNNEL_RETURN));
    check_frame6(&out).unwrap();
    let hash = flow_hash6(sa6(BE6_LOCAL), client, TCP, false);
    assert_eq!(out, encap6_tc(&r, hash), "exact encapsulation");
    // UDP with an odd payload length: the outer checksum still exact
    let inner = Frame6::udp(client, sa6(BE6_UDP)).macs(VTEP_MAC, VTEP_MAC);
    let v = vxlan6(&inner.build(), PEER6, NODE6, VNI, true, false);
    assert_eq!(env.xdp_in(&v, Some(env.uplink)).0, XDP_PASS);
    let ur = Frame6::udp(sa6(BE6_UDP), client)
        .macs(POD_MAC, VETH_MAC)
        .payload(b"odd length answer")
        .build();
    let (rc, reason, out) = run_tc6(&env, &ur);
    assert_eq!((rc, reason), (TC_ACT_REDIRECT, XLB_R_TX_TUNNEL_RETURN));
    check_frame6(&out).unwrap();
    let hash = flow_hash6(sa6(BE6_UDP), client, UDP, false);
    assert_eq!(out, encap6_tc(&ur, hash), "exact UDP encapsulation");
}

#[test]
fn replies_to_a_pod_of_another_node_are_reverse_natted_then_encapsulated() {
    let Some(env) = env6() else { return };
    // A pod on PEER6 reached a ClusterIP through the tunnel: this node chose
    // BE6_LOCAL.
    let pod = sa6("[fd00:244:2::8]:42000");
    let inner = Frame6::tcp(pod, vip6(80)).macs(VTEP_MAC, VTEP_MAC);
    let v = vxlan6(&inner.build(), PEER6, NODE6, VNI, false, false);
    let (rc, _) = env.xdp_in(&v, Some(env.uplink));
    assert_eq!(rc, XDP_PASS);
    let mut reply = Frame6::tcp(sa6(BE6_LOCAL), pod).macs(POD_MAC, VETH_MAC);
    reply.tcp_flags = 0x12;
    let (rc, reason, out) = run_tc6(&env, &reply.build());
    assert_eq!((rc, reason), (TC_ACT_REDIRECT, XLB_R_TX_TUNNEL_RETURN));
    check_frame6(&out).unwrap();
    let mut natted = reply.clone();
    natted.src = vip6(80);
    // (the outer port hashes the flow as it left the pod, as for IPv4)
    let hash = flow_hash6(sa6(BE6_LOCAL), pod, TCP, false);
    assert_eq!(
        out,
        encap6_tc(&natted.build(), hash),
        "reverse NAT, then encapsulation"
    );

    // The backend's ICMPv6 error about the pod's packet: translated toward
    // the pod (about the frontend, from the frontend), through the tunnel.
    let be = *sa6(BE6_LOCAL).ip();
    let mut seen = inner.clone();
    seen.dst = sa6(BE6_LOCAL);
    let err = icmp6_error(be, *pod.ip(), 1, 4, 0, &seen.build(), 1232);
    let (rc, reason, out) = run_tc6(&env, &err);
    assert_eq!((rc, reason), (TC_ACT_REDIRECT, XLB_R_TX_ICMP_RELATED));
    check_frame6(&out).unwrap();
    let want_inner = icmp6_error(VIP6, *pod.ip(), 1, 4, 0, &inner.build(), 1232);
    // the error's flow: its quote reversed, as it left the pod
    let hash = flow_hash6(sa6(BE6_LOCAL), pod, TCP, false);
    let mut want = encap6_tc(&want_inner, hash);
    want[0..12].copy_from_slice(&err[0..12]);
    assert_eq!(out, want, "translated error, encapsulated");
}

/// The IPv6 tail-call table (`tc6_progs`) is pinned: a program array loses
/// its entries when no user reference is left, and xlb_tc outlives the
/// process that loaded it (`xlb attach` exits, an agent stops).
#[test]
fn the_ipv6_tail_call_outlives_its_loader() {
    if !xlb_testkit::privileged() {
        return;
    }
    use libbpf_rs::{MapCore, MapFlags};
    use std::os::fd::AsFd;
    let pin = xlb_testkit::PinDir::new();
    let dp = xlb_loader::DataPlane::load(&xlb_loader::LoadOptions {
        pin_dir: Some(pin.path.clone()),
        maglev_slots: Some(4096),
        ct_entries: Some(4096),
        backends: Some(1024),
        ..Default::default()
    })
    .expect("loading the data plane");
    let want = xlb_loader::sys::prog_id(dp.tc.progs.xlb_tc6.as_fd()).unwrap();
    drop(dp);
    let m = libbpf_rs::MapHandle::from_pinned_path(pin.path.join("private/tc6_progs"))
        .expect("tc6_progs pinned");
    let v = m
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .unwrap()
        .expect("entry 0 kept after the loader let go");
    assert_eq!(u32::from_ne_bytes(v[..4].try_into().unwrap()), want);
}
