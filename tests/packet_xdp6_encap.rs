//! # XDP packet tests, IPv6: tunnels and the MTU
//!
//! Remote IPv6 backends (DNAT + VXLAN over the IPv6 underlay, a computed
//! outer UDP checksum, no neighbour, no tunnel entry), Packet Too Big when
//! the encapsulated frame would not fit, and VXLAN over IPv6 from the
//! underlay: tunnel-return replies (decap + reverse NAT), xlb-marked frames
//! for a local backend (tunnel return entry), frames that are not ours.
mod packet_util;

use packet_util::v6::*;
use packet_util::*;
use xlb_bpf::consts::*;

/// The exact frame xlb sends to node `peer` for inner frame `inner` (already
/// NATed; its MACs are rewritten to NODE_MAC -> VTEP_MAC): outer Ethernet
/// NODE_MAC -> PEER_MAC, IPv6 NODE6 -> peer, UDP from the flow hash's port
/// to 8472 with its checksum, VXLAN (I flag, `marked`), VNI.
fn encap6(inner: &Frame6, hash: u32, marked: bool, inner_dmac: [u8; 6]) -> Vec<u8> {
    let inner = inner.clone().macs(NODE_MAC, inner_dmac).build();
    let mut u = Vec::new();
    u.extend_from_slice(&(0xc000 | (hash & 0x3fff) as u16).to_be_bytes());
    u.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    u.extend_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&[0x08, 0, 0, u8::from(marked)]);
    u.extend_from_slice(&(VNI << 8).to_be_bytes());
    u.extend_from_slice(&inner);
    let c = match l4_csum6(NODE6, PEER6, UDP, &u) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv6_packet((NODE_MAC, PEER_MAC), NODE6, PEER6, UDP, 64, &u)
}

#[test]
fn remote_backends_are_encapsulated() {
    let Some(env) = env6() else { return };
    let vip = vip6_n(0x20, 80);
    let f = Frame6::tcp(client6(), vip);
    let (rc, r, out) = run6(&env, &f.build());
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REMOTE));
    check_frame6(&out).unwrap();
    let mut inner = f.clone();
    inner.dst = sa6(BE6_REMOTE);
    let hash = flow_hash6(client6(), vip, TCP, false);
    assert_eq!(out, encap6(&inner, hash, true, VTEP_MAC), "exact encap");
    let fwd = ct6(&env, client6(), vip, TCP).unwrap();
    assert_eq!(fwd.flags, XLB_CT_F_REMOTE | XLB_CT_F_SYN);
    // UDP, and an established flow's next packet the same way
    let u = Frame6::udp(client6(), vip6_n(0x20, 53)).payload(&[1; 333]);
    for _ in 0..2 {
        let (rc, r, out) = run6(&env, &u.build());
        assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REMOTE));
        let mut inner = u.clone();
        inner.dst = sa6("[fd00:244:2::10]:8080");
        let hash = flow_hash6(client6(), vip6_n(0x20, 53), UDP, false);
        assert_eq!(out, encap6(&inner, hash, true, VTEP_MAC));
    }
    // the outer checksum is checked: a flipped inner byte breaks it
    let mut bad = out.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(check_frame6(&bad).is_err());
    // no neighbour for the node: DNAT, passed once to the stack
    let g = Frame6::tcp(client6(), vip6_n(0x21, 80));
    let (rc, r, out) = run6(&env, &g.build());
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_FIB_NO_NEIGH));
    assert_eq!(out, dnat6(&g, sa6(BE6_NONEIGH)));
    // no tunnel entry for the backend: dropped
    let (rc, r, _) = run6(&env, &Frame6::tcp(client6(), vip6_n(0x22, 80)).build());
    assert_eq!((rc, r), (XDP_DROP, XLB_R_DROP_NO_TUNNEL));
    // no IPv6 node address configured: no outer source, dropped
    put_config6(&env, std::net::Ipv6Addr::UNSPECIFIED);
    clear_ct6(&env);
    let (rc, r, _) = run6(&env, &f.build());
    assert_eq!((rc, r), (XDP_DROP, XLB_R_DROP_NO_TUNNEL));
}

#[test]
fn packet_too_big_when_encap_exceeds_the_mtu() {
    let Some(env) = env6() else { return };
    let vip = vip6_n(0x20, 80);
    // 40 + 20 + payload + 70 = 1500: fits exactly
    let fits = Frame6::tcp(client6(), vip).payload(&vec![0xab; 1500 - 70 - 60]);
    let (rc, r, out) = run6(&env, &fits.build());
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REMOTE));
    assert_eq!(out.len(), 14 + 1500);
    check_frame6(&out).unwrap();
    // one byte more: Packet Too Big from the frontend, MTU 1430, quoting
    // the packet (at most 1232 bytes)
    clear_ct6(&env);
    let big = Frame6::tcp(client6(), vip)
        .payload(&vec![0xab; 1500 - 70 - 60 + 1])
        .build();
    let (rc, r, out) = run6(&env, &big);
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_FRAG_NEEDED));
    let p = check_frame6(&out).unwrap();
    assert_eq!((p.src, p.dst, p.proto), (*vip.ip(), CLIENT6, ICMP6));
    let want = swap_macs(icmp6_error(*vip.ip(), CLIENT6, 2, 0, 1430, &big, 1232));
    assert_eq!(out, want, "Packet Too Big");
}

#[test]
fn vxlan6_from_the_underlay() {
    let Some(env) = env6() else { return };
    let vip = vip6_n(0x20, 80);
    // a flow to the remote backend, then its reply by tunnel return
    let (rc, _, _) = run6(&env, &Frame6::tcp(client6(), vip).build());
    assert_eq!(rc, XDP_TX);
    let mut reply = Frame6::tcp(sa6(BE6_REMOTE), client6()).macs(PEER_MAC, NODE_MAC);
    reply.tcp_flags = 0x12;
    reply.ack = 1001;
    for zero_csum in [false, true] {
        let v = vxlan6(&reply.build(), PEER6, NODE6, VNI, false, zero_csum);
        let (rc, r, out) = run6(&env, &v);
        assert_eq!(
            (rc, r),
            (XDP_PASS, XLB_R_PASS_REVNAT),
            "zero outer csum {zero_csum}"
        );
        let mut want = reply.clone();
        want.src = vip;
        assert_eq!(out, want.build(), "decap + reverse NAT");
        check_frame6(&out).unwrap();
    }
    // xlb-marked VXLAN for a local backend (a remote node chose it): decap,
    // and the replies go back to that node
    let pod_client = sa6("[2001:db8:99::5]:41000");
    let inner = Frame6::tcp(pod_client, sa6(BE6_LOCAL)).macs(VTEP_MAC, VTEP_MAC);
    let v = vxlan6(&inner.build(), PEER6, NODE6, VNI, true, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_DECAP));
    assert_eq!(out, inner.clone().macs(VTEP_MAC, NODE_MAC).build());
    let t = ct6(&env, sa6(BE6_LOCAL), pod_client, TCP).expect("tunnel return entry");
    assert_eq!(t.flags, XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL | XLB_CT_F_SYN);
    assert_eq!(t.tunnel_peer, PEER6);
    // unmarked VXLAN of no Service and no flow: left for the kernel
    let other = Frame6::tcp(pod_client, sa6("[fd00:244:1::99]:80")).build();
    let v = vxlan6(&other, PEER6, NODE6, VNI, false, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r, out == v), (XDP_PASS, XLB_R_PASS_NOT_SERVICE, true));
    // another VNI, another node's address, an IPv4 inner frame: not ours
    let v = vxlan6(&inner.build(), PEER6, NODE6, 7, true, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r, out == v), (XDP_PASS, XLB_R_PASS_VXLAN_OTHER, true));
    let v = vxlan6(&inner.build(), PEER6, NONEIGH6, VNI, true, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r, out == v), (XDP_PASS, XLB_R_PASS_VXLAN_OTHER, true));
    let v4 = Frame::tcp(sa("10.244.2.5:40000"), sa("10.96.0.10:80")).build();
    let v = vxlan6(&v4, PEER6, NODE6, VNI, true, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r, out == v), (XDP_PASS, XLB_R_PASS_VXLAN_OTHER, true));
    // a pod on another node to a ClusterIP, through the tunnel: DNAT to the
    // local backend, replies through the tunnel
    let pod = sa6("[fd00:244:2::8]:42000");
    let inner = Frame6::tcp(pod, vip6(80)).macs(VTEP_MAC, VTEP_MAC);
    let v = vxlan6(&inner.build(), PEER6, NODE6, VNI, false, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL));
    let mut want = inner.clone().macs(VTEP_MAC, NODE_MAC);
    want.dst = sa6(BE6_LOCAL);
    assert_eq!(out, want.build());
    let rev = ct6(&env, sa6(BE6_LOCAL), pod, TCP).unwrap();
    assert_eq!((rev.tunnel_peer, rev.nat), (PEER6, vip6(80)));
    assert_ne!(rev.flags & XLB_CT_F_TUNNEL, 0);
}

#[test]
fn tunnel_return_reencapsulates_to_the_peer() {
    let Some(env) = env6() else { return };
    // a pod on PEER6 reached a ClusterIP whose backend is also on PEER6 via
    // this node: the backend's reply comes back here by tunnel and returns
    // to the pod's node, reverse-NATed, unmarked
    let pod = sa6("[fd00:244:2::8]:42000");
    let vip = vip6_n(0x20, 80);
    let inner = Frame6::tcp(pod, vip).macs(VTEP_MAC, VTEP_MAC);
    let v = vxlan6(&inner.build(), PEER6, NODE6, VNI, false, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REMOTE));
    check_frame6(&out).unwrap();
    let mut reply = Frame6::tcp(sa6(BE6_REMOTE), pod).macs(VTEP_MAC, VTEP_MAC);
    reply.tcp_flags = 0x12;
    let v = vxlan6(&reply.build(), PEER6, NODE6, VNI, false, false);
    let (rc, r, out) = run6(&env, &v);
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_TUNNEL_RETURN));
    let mut want = reply.clone();
    want.src = vip;
    let hash = flow_hash6(sa6(BE6_REMOTE), pod, TCP, false);
    assert_eq!(out, encap6(&want, hash, false, NODE_MAC), "re-encapsulated");
    check_frame6(&out).unwrap();
}

/// The IPv6 encapsulation keeps the fib's next hop per CPU for 50 ms
/// (nh6.h): a changed neighbour MAC, and a neighbour that disappeared, reach
/// the fast path once that has passed. (The sleeps only let the cache
/// expire; nothing here asserts on speed.)
#[test]
fn next_hop_cache_follows_neighbour_changes() {
    let Some(env) = env6() else { return };
    let f = Frame6::udp(client6(), vip6_n(0x20, 53));
    let outer_dst = |env: &Env| -> [u8; 6] {
        let (rc, r, out) = run6(env, &f.build());
        assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REMOTE), "encapsulated");
        out[0..6].try_into().unwrap()
    };
    assert_eq!(outer_dst(&env), PEER_MAC, "first frame: the fib's next hop");
    assert_eq!(outer_dst(&env), PEER_MAC, "cached next hop");
    let moved = [0x02, 0, 0xc6, 0x12, 0, 0x22];
    let neigh = |op: &str, mac: Option<&str>| {
        let mut a = vec!["-6", "neigh", op, "2001:db8:18::2"];
        if let Some(m) = mac {
            a.extend_from_slice(&["lladdr", m]);
        }
        a.extend_from_slice(&["dev", "v0"]);
        if mac.is_some() {
            a.extend_from_slice(&["nud", "permanent"]);
        }
        sh(&a);
    };
    neigh("replace", Some("02:00:c6:12:00:22"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        outer_dst(&env),
        moved,
        "the neighbour's new MAC after the TTL"
    );
    neigh("del", None);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (rc, r, _) = run6(&env, &f.build());
    assert_eq!(
        (rc, r),
        (XDP_PASS, XLB_R_PASS_FIB_NO_NEIGH),
        "no neighbour any more: passed to the stack"
    );
}

/// A remote IPv6 backend's VTEP MAC (tunnel6) is kept per CPU for 50 ms
/// too: a changed and a removed tunnel entry reach the fast path after that.
#[test]
fn vtep_cache_follows_tunnel_changes() {
    let Some(env) = env6() else { return };
    let f = Frame6::udp(client6(), vip6_n(0x20, 53));
    let inner_dst = |env: &Env| -> [u8; 6] {
        let (rc, r, out) = run6(env, &f.build());
        assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REMOTE), "encapsulated");
        // outer Ethernet 14 + IPv6 40 + UDP 8 + VXLAN 8: the inner frame
        out[70..76].try_into().unwrap()
    };
    assert_eq!(inner_dst(&env), VTEP_MAC);
    assert_eq!(inner_dst(&env), VTEP_MAC, "cached");
    let new_vtep = [0x02, 0xee, 0, 0, 0, 0x22];
    let prefix: std::net::Ipv6Addr = "fd00:244:2::".parse().unwrap();
    tunnel6(&env, prefix, 64, PEER6, new_vtep);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(inner_dst(&env), new_vtep, "the new VTEP MAC after the TTL");
    let mut k = 64u32.to_ne_bytes().to_vec();
    k.extend_from_slice(&prefix.octets());
    libbpf_rs::MapCore::delete(&env.dp.xdp.maps.tunnel6, &k).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (rc, r, _) = run6(&env, &f.build());
    assert_eq!(
        (rc, r),
        (XDP_DROP, XLB_R_DROP_NO_TUNNEL),
        "no tunnel entry any more"
    );
}
