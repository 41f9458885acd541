//! # Helpers of the XDP packet tests
//!
//! Frames, ct lookups and assertions shared by `packet_xdp*.rs`: the client
//! flow (`CLIENT_SA`), ct and VXLAN-encap expectations, and the short
//! exchanges (open, send, reply) the cache tests build on.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use xlb_bpf::types::*;

pub const CLIENT_SA: &str = "198.18.0.100:40000";

/// A source port of CLIENT whose whole-flow Maglev pick for 10.96.0.60:80
/// differs from the pick of its address alone (the expired-affinity case
/// then tells the two apart).
pub fn expiry_client() -> SocketAddrV4 {
    let vip = sa("10.96.0.60:80");
    (40000..41000)
        .map(|p| SocketAddrV4::new(CLIENT, p))
        .find(|&c| {
            maglev_pick(&AFF_TABLE, c, vip, TCP, false)
                != maglev_pick(&AFF_TABLE, c, vip, TCP, true)
        })
        .expect("a port whose two picks differ")
}

pub fn syn(dst: &str) -> Frame {
    Frame::tcp(sa(CLIENT_SA), sa(dst))
}

/// Forward and reverse ct entries of a client flow to `vip`.
pub fn assert_ct_pair(env: &Env, src: &str, vip: &str, backend_id: u32, backend: &str) {
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
pub fn assert_half_open(env: &Env, src: &str, vip: &str, backend_id: u32, backend: &str) {
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
pub fn ct_backend(env: &Env, src: &str, vip: &str, proto: u8) -> u32 {
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
pub fn backend_sa(env: &Env, id: u32) -> String {
    env.maps()
        .backend(id)
        .unwrap()
        .unwrap()
        .sockaddr()
        .to_string()
}

/// Sends the SYN of CLIENT_SA -> vip, then its ACK (which promotes the
/// half-open connection to the ct pair).
pub fn open(env: &Env, vip: &str) {
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

/// Encapsulation overhead of a frame B sends with the frontend trailer:
/// outer IPv4 + UDP + VXLAN + trailer + inner Ethernet.
pub const ENCAP_FE: usize = 20 + 8 + 8 + 8 + 14;

/// A SYN to the remote Service one byte too big for the MTU (1500) once
/// encapsulated with the trailer.
pub fn big_remote() -> Frame {
    syn("10.96.0.20:80").payload(&vec![0xab; 1500 - ENCAP_FE - 40 + 1])
}

pub fn options(n_words: usize) -> Vec<u8> {
    // NOPs then an End of options list, n_words * 4 bytes.
    let mut o = vec![1u8; n_words * 4];
    o[n_words * 4 - 1] = 0;
    o
}

pub fn with_options(mut f: Frame, words: usize) -> Frame {
    f.options = options(words);
    f
}

/// `out` is `input_frame` (from the uplink, untunneled) DNATed to `backend`
/// on node PEER: VXLAN marked with the frontend trailer (tunnel NAT), the
/// frontend being the frame's destination before DNAT.
pub fn check_encap_to_peer(env: &Env, input_frame: Frame, backend: &str, out: &[u8]) {
    let fe = input_frame.dst;
    check_encap(env, input_frame, backend, out, Some(fe));
}

/// The same for a frame that arrived by tunnel: marked, no trailer.
pub fn check_reencap_to_peer(env: &Env, input_frame: Frame, backend: &str, out: &[u8]) {
    check_encap(env, input_frame, backend, out, None);
}

fn check_encap(env: &Env, input_frame: Frame, backend: &str, out: &[u8], fe: Option<SocketAddrV4>) {
    let _ = env;
    let v = check_vxlan(out, "encap");
    assert_eq!(v.fe, fe, "frontend trailer");
    assert_eq!(v.dst_mac, PEER_MAC, "outer dst = next hop");
    assert_eq!(v.src_mac, NODE_MAC, "outer src = uplink");
    assert_eq!(Ipv4Addr::from(v.ip.source), NODE);
    assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
    assert_eq!(v.vni, VNI);
    let flags = if fe.is_some() {
        0x0800_0003
    } else {
        0x0800_0001
    };
    assert_eq!(v.flags, flags, "I flag + xlb mark (+ frontend trailer)");
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

pub fn reply_from(backend: &str) -> Frame {
    Frame::tcp(sa(backend), sa(CLIENT_SA)).macs(PEER_MAC, NODE_MAC)
}

/// A segment (ACK) of CLIENT_SA's established flow to `to`, which must be
/// DNATed to BE_LOCAL.
pub fn send(env: &Env, to: std::net::SocketAddrV4) {
    let mut f = Frame::tcp(sa(CLIENT_SA), to);
    f.tcp_flags = 0x10;
    let (rc, out) = env.xdp(&f.build());
    assert_eq!(rc, XDP_PASS);
    assert_dnat(f, BE_LOCAL, &out);
}

/// The source a reply of BE_LOCAL to the client is reverse-NATed to.
pub fn reply_src(env: &Env) -> std::net::SocketAddrV4 {
    let (rc, out) = env.xdp(&reply_from(BE_LOCAL).build());
    assert_eq!(rc, XDP_PASS);
    check_eth_ipv4(&out, "revnat").2.src()
}
