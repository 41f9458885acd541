//! # tc egress: replies of a host-network endpoint to a flow another node balanced
//!
//! The node (NODE) runs a process on its own address (`NODE:6443`, a
//! host-network endpoint) that another node (PEER) balanced a client's flow
//! to and sent here by tunnel. The process's replies leave through the
//! uplink's egress program (`xlb_tc_egress`, bpf/include/tc_egress.h), which
//! returns them through the tunnel as the pod-veth program does for a pod:
//! under tunnel NAT reverse-NATed and marked `XLATED`, without it untranslated.
//! Exact output bytes; the node's other traffic passes untouched and
//! uncounted. The last two tests run both nodes (two data planes): the
//! client sees the frontend it dialled, with and without tunnel NAT.
mod packet_util;

use std::net::Ipv4Addr;

use packet_util::tnat::{self, vxlan_fe, VX_XLATED};
use packet_util::xdp::CLIENT_SA;
use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_testkit::csum::checksum;

/// The host-network endpoint on this node's own address.
const API: &str = "198.18.0.1:6443";
/// The same endpoint as PEER's (the second data plane's) own address.
const API_PEER: &str = "198.18.0.2:6443";
/// The frontend the client dialled (balanced by the other node).
const FE: &str = "10.96.0.1:443";

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// This node as the endpoint's node: the endpoint is a backend here too (every
/// node holds every Service), so the backend filter knows its address.
fn setup(env: &Env) -> Vec<u64> {
    fixture(env);
    env.backend(30, API, None);
    env.reasons()
}

fn seg(src: &str, dst: &str, flags: u8) -> Frame {
    let mut f = Frame::tcp(sa(src), sa(dst));
    f.tcp_flags = flags;
    f
}

/// The endpoint's reply as this node's stack sends it out of the uplink.
fn reply(flags: u8) -> Frame {
    seg(API, CLIENT_SA, flags)
        .macs(NODE_MAC, CLIENT_MAC)
        .payload(b"reply of a host-network endpoint")
}

/// The peer sends the client's segment here: marked, with the frontend
/// trailer under tunnel NAT.
fn from_peer(env: &Env, flags: u8, tnat: bool) {
    let inner = seg(CLIENT_SA, API, flags).build();
    let f = if tnat {
        vxlan_fe(&inner, PEER, NODE, sa(FE))
    } else {
        vxlan(&inner, PEER, NODE, VNI, true)
    };
    let (rc, out) = env.xdp(&f);
    assert_eq!(rc, XDP_PASS, "decapsulated for the local stack");
    assert_eq!(check_eth_ipv4(&out, "decapsulated").2.dst(), sa(API));
}

/// Runs `f` through tc egress: the tunnel frame it sends to PEER, with the
/// expected flags and inner frame, and exactly `tx_tunnel_return` counted.
fn returned(env: &Env, f: &Frame, flags: u32, inner: &Frame) {
    let before = env.reasons();
    let (rc, out) = env.tc_egress(&f.build());
    assert_eq!(rc, TC_ACT_REDIRECT, "back through the tunnel");
    let v = check_vxlan(&out, "tunnel return");
    assert_eq!(Ipv4Addr::from(v.ip.source), NODE);
    assert_eq!(
        Ipv4Addr::from(v.ip.destination),
        PEER,
        "to the node that balanced it"
    );
    assert_eq!(v.vni, VNI);
    assert_eq!(v.flags, flags);
    assert_eq!(v.fe, None);
    assert_eq!(v.inner, inner.build(), "inner frame, exact bytes");
    check_eth_ipv4(&v.inner, "inner");
    assert_eq!(
        moved(&before, &env.reasons()),
        [("tx_tunnel_return".to_string(), 1)]
    );
}

#[test]
fn a_tunnel_nat_entrys_reply_is_reverse_natted_and_returned_xlated() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    from_peer(&env, ACK, true);
    tnat::assert_tnat_entry(&env, API, CLIENT_SA, FE, PEER, TCP);
    let r = reply(PSH_ACK);
    let want = Frame {
        src: sa(FE),
        ..r.clone()
    };
    returned(&env, &r, VX_XLATED, &want);
}

#[test]
fn a_tunnel_return_entrys_reply_without_tunnel_nat_goes_back_untranslated() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    from_peer(&env, ACK, false);
    let rev = tnat::ct_at(&env, API, CLIENT_SA, TCP).expect("tunnel-return entry");
    assert_eq!(
        rev.flags & !XLB_CT_F_TCP_STATE,
        XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL
    );
    let r = reply(PSH_ACK);
    returned(&env, &r, 0x0800_0000, &r);
}

/// The SYN is kept half-open (ctsyn.h, `xlb_syn_tunnel`): the endpoint's
/// SYN-ACK finds the slot, with the frontend under tunnel NAT.
#[test]
fn a_half_open_tunnel_flows_syn_ack_is_returned() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    from_peer(&env, SYN, true);
    assert!(
        tnat::ct_at(&env, API, CLIENT_SA, TCP).is_none(),
        "half-open: no ct entry"
    );
    let h = env.half_open(CLIENT_SA).expect("half-open slot");
    assert_ne!(h.flags & XLB_CT_F_TNAT, 0);
    let r = reply(SYN | ACK);
    let want = Frame {
        src: sa(FE),
        ..r.clone()
    };
    returned(&env, &r, VX_XLATED, &want);
    // without tunnel NAT: untranslated
    env.clear_state();
    from_peer(&env, SYN, false);
    assert!(env.half_open(CLIENT_SA).is_some());
    returned(&env, &r, 0x0800_0000, &r);
}

/// A reply that does not fit the uplink's MTU once encapsulated (and is not
/// GSO): ICMP fragmentation needed (next-hop MTU = MTU - 50) about it, as sent,
/// from the client to the endpoint, into the uplink's ingress for this node's
/// stack; counted `tx_frag_needed`.
#[test]
fn a_reply_too_big_for_the_tunnel_gets_fragmentation_needed_for_the_sender() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    from_peer(&env, ACK, true);
    let big = reply(PSH_ACK).payload(&[7u8; 1460]).build();
    assert_eq!(big.len(), 14 + usize::from(MTU), "a full-size frame");
    let before = env.reasons();
    let (rc, out) = env.tc_egress(&big);
    assert_eq!(rc, TC_ACT_REDIRECT);
    let mut want = Vec::new();
    want.extend_from_slice(&NODE_MAC); // to this node's stack
    want.extend_from_slice(&CLIENT_MAC);
    want.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 56, 0, 0, 0x40, 0, 64, 1, 0, 0];
    ip.extend_from_slice(&CLIENT.octets());
    ip.extend_from_slice(&NODE.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    want.extend_from_slice(&ip);
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&(MTU - 50).to_be_bytes());
    icmp.extend_from_slice(&big[14..14 + 28]); // the sender's packet, untranslated
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    want.extend_from_slice(&icmp);
    assert_eq!(out, want, "ICMP fragmentation needed, exact bytes");
    assert_eq!(
        moved(&before, &env.reasons()),
        [("tx_frag_needed".to_string(), 1)]
    );
    // one byte less than the limit fits
    let fits = reply(PSH_ACK).payload(&[7u8; 1410]).build();
    let (rc, out) = env.tc_egress(&fits);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(out.len(), 14 + usize::from(MTU));
    assert_eq!(check_vxlan(&out, "fits").flags, VX_XLATED);
}

/// The node's own traffic around a live tunnel entry: nothing changes, no
/// reason is counted, the entry keeps its state.
#[test]
fn the_nodes_other_traffic_passes_untouched_and_uncounted() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    from_peer(&env, ACK, true);
    let entry = tnat::ct_at(&env, API, CLIENT_SA, TCP).unwrap();
    let mut frag = reply(PSH_ACK);
    frag.mf = true;
    let mut later = reply(PSH_ACK);
    later.frag_off = 185;
    let to_peer = vxlan(&reply(ACK).build(), NODE, PEER, VNI, false);
    let frames = vec![
        // the same endpoint to the same client on another port (a direct connection)
        seg(API, "198.18.0.100:40001", PSH_ACK)
            .macs(NODE_MAC, CLIENT_MAC)
            .build(),
        // another local port of the node to the client
        seg("198.18.0.1:22", CLIENT_SA, PSH_ACK)
            .macs(NODE_MAC, CLIENT_MAC)
            .build(),
        // UDP on the entry's ports
        Frame::udp(sa(API), sa(CLIENT_SA))
            .macs(NODE_MAC, CLIENT_MAC)
            .build(),
        // the node's traffic to elsewhere, and from an address that is no backend
        seg("198.18.0.1:50000", "203.0.113.9:443", SYN)
            .macs(NODE_MAC, CLIENT_MAC)
            .build(),
        seg("198.18.0.5:6443", CLIENT_SA, PSH_ACK)
            .macs(NODE_MAC, CLIENT_MAC)
            .build(),
        // fragments of the entry's flow: untranslated (docs/dp.md)
        frag.build(),
        later.build(),
        // a tunnel frame the node sends (the kernel's overlay, or xlb's own)
        to_peer,
        arp_frame(),
    ];
    let before = env.reasons();
    for (i, f) in frames.iter().enumerate() {
        let (rc, out) = env.tc_egress(f);
        assert_eq!(rc, TC_ACT_OK, "frame {i}");
        assert_eq!(&out, f, "frame {i} unchanged");
    }
    assert_eq!(moved(&before, &env.reasons()), [], "nothing counted");
    let after = tnat::ct_at(&env, API, CLIENT_SA, TCP).unwrap();
    assert_eq!(after.flags, entry.flags, "entry state untouched");
}

/// An uplink client's flow balanced by this node's XDP to its own
/// host-network endpoint (local backend): the reply leaving the uplink is
/// reverse-NATed to the frontend and passed on.
#[test]
fn a_local_host_network_endpoints_reply_to_an_uplink_client_is_reverse_natted() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    env.service(tcp_key(FE), 20, 400, &[30; 7], 0);
    let (rc, out) = env.xdp_in(&seg(CLIENT_SA, FE, ACK).build(), Some(env.uplink));
    assert_eq!(rc, XDP_PASS);
    assert_eq!(check_eth_ipv4(&out, "DNAT").2.dst(), sa(API));
    let r = reply(PSH_ACK);
    let before = env.reasons();
    let (rc, out) = env.tc_egress(&r.build());
    assert_eq!(rc, TC_ACT_OK);
    let want = Frame {
        src: sa(FE),
        ..r.clone()
    };
    assert_eq!(out, want.build(), "source := the frontend");
    assert_eq!(
        moved(&before, &env.reasons()),
        [("pass_revnat".to_string(), 1)]
    );
}

/// Both nodes: B (NODE) balances the client's connection to C's (PEER's)
/// host-network endpoint, C's tc egress returns the endpoint's segments, and
/// the client gets them from the frontend. `tnat`: tunnel NAT on both nodes.
fn two_nodes(tnat: bool) {
    let Some(b) = Env::new() else { return };
    fixture(&b);
    let c = Env::second_node(&b);
    for env in [&b, &c] {
        let mut cfg = env.dp.maps.config().unwrap();
        if !tnat {
            cfg.flags &= !XLB_CFG_F_TNAT;
        }
        env.dp.maps.put_config(&cfg).unwrap();
    }
    // B: the endpoint is C's address on C (host network), reached through
    // C's tunnel (the model's entry for a node address).
    let mut be = xlb_backend::new(sa(API_PEER), Some(PEER), 1);
    be.flags |= XLB_BE_F_HOST_NETWORK as u8;
    b.maps().put_backend(40, &be).unwrap();
    b.maps()
        .put_tunnel(
            &xlb_tunnel_key::new(PEER, 32),
            &xlb_tunnel_val::new(PEER, VTEP_MAC),
        )
        .unwrap();
    b.service(tcp_key(FE), 20, 400, &[40; 7], 0);
    // C: the same endpoint, local.
    let mut local = xlb_backend::new(sa(API_PEER), None, 1);
    local.flags |= XLB_BE_F_HOST_NETWORK as u8;
    c.maps().put_backend(40, &local).unwrap();
    for (client_flags, answer_flags) in [(SYN, SYN | ACK), (ACK, PSH_ACK), (PSH_ACK, PSH_ACK | 1)] {
        let (rc, out) = b.xdp_in(&seg(CLIENT_SA, FE, client_flags).build(), Some(b.uplink));
        assert_eq!(rc, XDP_TX, "B -> C");
        let v = check_vxlan(&out, "B -> C");
        assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
        assert_eq!(
            v.fe,
            tnat.then(|| sa(FE)),
            "the frontend only under tunnel NAT"
        );
        let (rc, at_c) = c.xdp(&out);
        assert_eq!(rc, XDP_PASS);
        assert_eq!(check_eth_ipv4(&at_c, "at C").2.dst(), sa(API_PEER));
        // C's endpoint answers out of C's uplink
        let answer = seg(API_PEER, CLIENT_SA, answer_flags).macs(PEER_MAC, CLIENT_MAC);
        let (rc, back) = c.tc_egress(&answer.build());
        assert_eq!(rc, TC_ACT_REDIRECT, "C returns it through the tunnel");
        let v = check_vxlan(&back, "C -> B");
        assert_eq!(Ipv4Addr::from(v.ip.destination), NODE);
        assert_eq!(v.flags, if tnat { VX_XLATED } else { 0x0800_0000 });
        let before = b.reasons();
        let (rc, to_client) = b.xdp_in(&back, Some(b.uplink));
        assert_eq!(rc, XDP_PASS);
        let (_, _, p) = check_eth_ipv4(&to_client, "to the client");
        assert_eq!(
            (p.src(), p.dst()),
            (sa(FE), sa(CLIENT_SA)),
            "the client sees the frontend"
        );
        let reason = if tnat { "pass_decap" } else { "pass_revnat" };
        assert!(
            moved(&before, &b.reasons())
                .iter()
                .any(|(n, k)| n == reason && *k == 1),
            "B: {reason}"
        );
    }
}

#[test]
fn two_nodes_host_network_endpoint_under_tunnel_nat() {
    two_nodes(true);
}

#[test]
fn two_nodes_host_network_endpoint_without_tunnel_nat() {
    two_nodes(false);
}
