//! IPv6 for the packet tests: the namespace's IPv6 underlay (node address,
//! a permanent neighbour for PEER6, forwarding on), raw writes of the IPv6
//! contract maps (their layouts as in bpf/include/types.h, written here
//! byte by byte, independently of any typed accessor), the IPv6 fixture,
//! and the IPv6 flow hash the Maglev picks are checked against.

use std::net::{Ipv6Addr, SocketAddrV6};

use libbpf_rs::{MapCore, MapFlags};
use xlb_bpf::consts::*;

// (re-exported for the IPv6 tests; most packet test binaries use none)
#[allow(unused_imports)]
pub use xlb_testkit::check6::*;
#[allow(unused_imports)]
pub use xlb_testkit::frame6::*;

use super::*;

/// Turns on IPv6 on the namespace's uplink: NODE6/64 on v0, PEER6 a
/// permanent neighbour (NONEIGH6 none), forwarding (bpf_fib_lookup needs it).
pub fn underlay6(env: &Env) {
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").unwrap();
    std::fs::write("/proc/sys/net/ipv6/conf/v0/forwarding", "1").unwrap();
    sh(&[
        "-6",
        "addr",
        "add",
        "2001:db8:18::1/64",
        "dev",
        "v0",
        "nodad",
    ]);
    sh(&[
        "-6",
        "neigh",
        "replace",
        "2001:db8:18::2",
        "lladdr",
        "02:00:c6:12:00:02",
        "dev",
        "v0",
        "nud",
        "permanent",
    ]);
    put_config6(env, NODE6);
}

fn upd(map: &libbpf_rs::MapMut, k: &[u8], v: &[u8]) {
    map.update(k, v, MapFlags::ANY).expect("map update");
}

pub fn put_config6(env: &Env, node: Ipv6Addr) {
    let mut v = node.octets().to_vec();
    v.extend_from_slice(&[0; 8]);
    upd(&env.dp.xdp.maps.config6, &0u32.to_ne_bytes(), &v);
}

pub fn svc6_key(addr: Ipv6Addr, port: u16, proto: u8, kind: u8) -> Vec<u8> {
    let mut k = addr.octets().to_vec();
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[proto, kind]);
    k
}

/// struct xlb_svc_val
pub fn svc_val(svc_id: u32, flags: u32, off: u32, size: u32, n_local: u32, fe_type: u8) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [svc_id, flags, off, size, 100, n_local] {
        v.extend_from_slice(&w.to_ne_bytes());
    }
    v.extend_from_slice(&[fe_type, 0, 0, 0, 0, 0, 0, 0]);
    v
}

/// A services6 frontend (kind XLB_KIND_*) whose Maglev region holds `table`.
#[allow(clippy::too_many_arguments)]
pub fn service6(
    env: &Env,
    addr: Ipv6Addr,
    port: u16,
    proto: u8,
    kind: u8,
    svc_id: u32,
    off: u32,
    table: &[u32],
    flags: u32,
    n_local: u32,
    fe_type: u8,
) {
    env.maps().write_maglev(off, table).unwrap();
    upd(
        &env.dp.xdp.maps.services6,
        &svc6_key(addr, port, proto, kind),
        &svc_val(svc_id, flags, off, table.len() as u32, n_local, fe_type),
    );
}

/// struct xlb_backend6 at id (node None: this node).
pub fn backend6(env: &Env, id: u32, addr: SocketAddrV6, node: Option<Ipv6Addr>, flags: u8) {
    let mut v = addr.ip().octets().to_vec();
    v.extend_from_slice(&addr.port().to_be_bytes());
    v.extend_from_slice(&[flags, 0]);
    v.extend_from_slice(&1u32.to_ne_bytes());
    v.extend_from_slice(&node.unwrap_or(Ipv6Addr::UNSPECIFIED).octets());
    upd(&env.dp.xdp.maps.backends6, &id.to_ne_bytes(), &v);
}

pub fn tunnel6(env: &Env, prefix: Ipv6Addr, len: u32, node: Ipv6Addr, vtep: [u8; 6]) {
    let mut k = len.to_ne_bytes().to_vec();
    k.extend_from_slice(&prefix.octets());
    let mut v = node.octets().to_vec();
    v.extend_from_slice(&vtep);
    v.extend_from_slice(&[0, 0]);
    upd(&env.dp.xdp.maps.tunnel6, &k, &v);
}

pub fn local_addr6(env: &Env, a: Ipv6Addr) {
    upd(
        &env.dp.xdp.maps.local_addrs6,
        &a.octets(),
        &1u32.to_ne_bytes(),
    );
}

pub fn src_range6(env: &Env, svc_id: u32, prefix: Ipv6Addr, len: u32) {
    let mut k = (32 + len).to_ne_bytes().to_vec();
    k.extend_from_slice(&svc_id.to_be_bytes());
    k.extend_from_slice(&prefix.octets());
    upd(&env.dp.xdp.maps.src_ranges6, &k, &1u32.to_ne_bytes());
}

/// A ct6 key: 5-tuple as on the wire.
pub fn ct6_key(src: SocketAddrV6, dst: SocketAddrV6, proto: u8) -> Vec<u8> {
    let mut k = src.ip().octets().to_vec();
    k.extend_from_slice(&dst.ip().octets());
    k.extend_from_slice(&src.port().to_be_bytes());
    k.extend_from_slice(&dst.port().to_be_bytes());
    k.extend_from_slice(&[proto, 0, 0, 0]);
    k
}

/// A ct6 entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct6 {
    pub backend_id: u32,
    pub svc_id: u32,
    pub flags: u32,
    pub tunnel_peer: Ipv6Addr,
    pub nat: SocketAddrV6,
}

pub fn ct6(env: &Env, src: SocketAddrV6, dst: SocketAddrV6, proto: u8) -> Option<Ct6> {
    let v = env
        .dp
        .xdp
        .maps
        .ct6
        .lookup(&ct6_key(src, dst, proto), MapFlags::ANY)
        .unwrap()?;
    let u = |o: usize| u32::from_ne_bytes(v[o..o + 4].try_into().unwrap());
    let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&v[o..o + 16]).unwrap());
    Some(Ct6 {
        backend_id: u(0),
        svc_id: u(8),
        flags: u(12),
        tunnel_peer: a(16),
        nat: SocketAddrV6::new(a(32), u16::from_be_bytes([v[48], v[49]]), 0, 0),
    })
}

pub fn ct6_count(env: &Env) -> usize {
    env.dp.xdp.maps.ct6.keys().count()
}

pub fn clear_ct6(env: &Env) {
    let m = &env.dp.xdp.maps.ct6;
    let keys: Vec<Vec<u8>> = m.keys().collect();
    for k in keys {
        m.delete(&k).unwrap();
    }
    let m = &env.dp.xdp.maps.affinity6;
    let keys: Vec<Vec<u8>> = m.keys().collect();
    for k in keys {
        m.delete(&k).unwrap();
    }
}

/// The affinity6 entry of (svc_id, client): its backend id.
pub fn affinity6(env: &Env, svc_id: u32, client: Ipv6Addr) -> Option<u32> {
    let mut k = svc_id.to_ne_bytes().to_vec();
    k.extend_from_slice(&client.octets());
    let v = env
        .dp
        .xdp
        .maps
        .affinity6
        .lookup(&k, MapFlags::ANY)
        .unwrap()?;
    Some(u32::from_ne_bytes(v[0..4].try_into().unwrap()))
}

/// Writes the affinity6 entry of (svc_id, client): backend id, generation 1,
/// last_seen.
pub fn put_affinity6(env: &Env, svc_id: u32, client: Ipv6Addr, backend_id: u32, last_seen: u64) {
    let mut k = svc_id.to_ne_bytes().to_vec();
    k.extend_from_slice(&client.octets());
    let mut v = backend_id.to_ne_bytes().to_vec();
    v.extend_from_slice(&1u32.to_ne_bytes());
    v.extend_from_slice(&last_seen.to_ne_bytes());
    upd(&env.dp.xdp.maps.affinity6, &k, &v);
}

/// The data plane's IPv6 flow hash (hash6.h), to predict Maglev slots.
pub fn flow_hash6(src: SocketAddrV6, dst: SocketAddrV6, proto: u8, no_sport: bool) -> u32 {
    xlb_bpf::wire::flow_hash6(
        src.ip().octets(),
        dst.ip().octets(),
        src.port(),
        dst.port(),
        proto,
        no_sport,
    )
}

pub fn maglev_pick6(
    table: &[u32],
    src: SocketAddrV6,
    dst: SocketAddrV6,
    proto: u8,
    aff: bool,
) -> u32 {
    table[(flow_hash6(src, dst, proto, aff) % table.len() as u32) as usize]
}

// --- the IPv6 fixture -------------------------------------------------------

pub const CLIENT6_SA: &str = "[2001:db8:18::64]:40000";
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x10);
pub const BE6_LOCAL: &str = "[fd00:244:1::10]:8080";
pub const BE6_UDP: &str = "[fd00:244:1::11]:5353";
pub const BE6_REMOTE: &str = "[fd00:244:2::10]:8080";
pub const BE6_NONEIGH: &str = "[fd00:244:3::10]:8080";
pub const BE6_NOTUNNEL: &str = "[fd00:244:4::10]:8080";
pub const BE6_5: &str = "[fd00:244:1::12]:8080";
pub const BE6_6: &str = "[fd00:244:1::13]:8080";
/// Another of the node's addresses (local_addrs6).
pub const NODE6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 0xb);

pub fn vip6(port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(VIP6, port, 0, 0)
}

pub fn vip6_n(n: u16, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, n), port, 0, 0)
}

/// A test environment with [`fixture6`] written; None when not privileged
/// (see [`Env::new`]).
pub fn env6() -> Option<Env> {
    let env = Env::new()?;
    fixture6(&env);
    Some(env)
}

/// The fixture's client address.
pub fn client6() -> SocketAddrV6 {
    sa6(CLIENT6_SA)
}

/// IPv6 Services and backends (ids 101.. in the shared id space; Maglev
/// regions from 512):
///
/// | svc | frontend | backends |
/// |---|---|---|
/// | 101 | [fd00:96::10]:80/TCP | 101 (local) |
/// | 102 | [fd00:96::10]:53/UDP | 102 (local) |
/// | 103 | [fd00:96::20]:80/TCP, :53/UDP (104) | 103 (node PEER6) |
/// | 105 | [fd00:96::21]:80/TCP | 104 (node NONEIGH6) |
/// | 106 | [fd00:96::22]:80/TCP | 105 (PEER6, no tunnel entry) |
/// | 107, 108 | [fd00:96::30]:80/TCP, :53/UDP | none |
/// | 109 | [fd00:96::50]:80/TCP, source ranges 2001:db8:18::/120 | 101 |
/// | 110 | [fd00:96::60]:80/TCP, affinity | 101, 106, 107 |
/// | 111 | NodePort 30080/TCP | 101 |
/// | 112 | [fd00:96::40]:80/TCP eTP Local, none local; internal entry: 101 |
pub const AFF6_TABLE: [u32; 11] = [101, 106, 107, 101, 106, 107, 101, 106, 107, 101, 106];

pub fn fixture6(env: &Env) {
    underlay6(env);
    let a = XLB_BE_F_ACTIVE as u8;
    backend6(env, 101, sa6(BE6_LOCAL), None, a);
    backend6(env, 102, sa6(BE6_UDP), None, a);
    backend6(env, 103, sa6(BE6_REMOTE), Some(PEER6), a);
    backend6(env, 104, sa6(BE6_NONEIGH), Some(NONEIGH6), a);
    backend6(env, 105, sa6(BE6_NOTUNNEL), Some(PEER6), a);
    backend6(env, 106, sa6(BE6_5), None, a);
    backend6(env, 107, sa6(BE6_6), None, a);
    let p = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    tunnel6(env, p("fd00:244:2::"), 64, PEER6, VTEP_MAC);
    tunnel6(env, p("fd00:244:3::"), 64, NONEIGH6, VTEP_MAC);
    local_addr6(env, NODE6_B);
    let (t, u) = (TCP, UDP);
    let k = XLB_KIND_ADDR as u8;
    service6(env, VIP6, 80, t, k, 101, 512, &[101; 7], 0, 7, 0);
    service6(env, VIP6, 53, u, k, 102, 528, &[102; 7], 0, 7, 0);
    service6(
        env,
        vip6_n(0x20, 0).ip().to_owned(),
        80,
        t,
        k,
        103,
        544,
        &[103; 7],
        0,
        0,
        0,
    );
    service6(
        env,
        *vip6_n(0x20, 0).ip(),
        53,
        u,
        k,
        104,
        560,
        &[103; 7],
        0,
        0,
        0,
    );
    service6(
        env,
        *vip6_n(0x21, 0).ip(),
        80,
        t,
        k,
        105,
        576,
        &[104; 7],
        0,
        0,
        0,
    );
    service6(
        env,
        *vip6_n(0x22, 0).ip(),
        80,
        t,
        k,
        106,
        592,
        &[105; 7],
        0,
        0,
        0,
    );
    service6(env, *vip6_n(0x30, 0).ip(), 80, t, k, 107, 608, &[], 0, 0, 0);
    service6(env, *vip6_n(0x30, 0).ip(), 53, u, k, 108, 624, &[], 0, 0, 0);
    let sr = XLB_SVC_F_SRC_RANGES;
    service6(
        env,
        *vip6_n(0x50, 0).ip(),
        80,
        t,
        k,
        109,
        640,
        &[101; 7],
        sr,
        7,
        0,
    );
    src_range6(env, 109, p("2001:db8:18::"), 120);
    let aff = XLB_SVC_F_AFFINITY;
    service6(
        env,
        *vip6_n(0x60, 0).ip(),
        80,
        t,
        k,
        110,
        656,
        &AFF6_TABLE,
        aff,
        11,
        0,
    );
    let np = XLB_KIND_NODEPORT as u8;
    service6(
        env,
        Ipv6Addr::UNSPECIFIED,
        30080,
        t,
        np,
        111,
        672,
        &[101; 7],
        0,
        7,
        1,
    );
    let etp = XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL;
    let ext = XLB_FE_EXTERNALIP as u8;
    service6(
        env,
        *vip6_n(0x40, 0).ip(),
        80,
        t,
        k,
        112,
        688,
        &[103; 7],
        etp,
        0,
        ext,
    );
    let internal = (XLB_KIND_ADDR | XLB_KIND_F_INTERNAL) as u8;
    service6(
        env,
        *vip6_n(0x40, 0).ip(),
        80,
        t,
        internal,
        112,
        704,
        &[101; 7],
        0,
        7,
        ext,
    );
}

/// The reason counters' change from `before` (one frame: exactly one reason).
pub fn one_reason(before: &[u64], after: &[u64]) -> u32 {
    let moved: Vec<usize> = (0..after.len())
        .filter(|&i| after[i] != before[i])
        .collect();
    let outcomes: Vec<usize> = moved
        .iter()
        .copied()
        .filter(|&i| ![XLB_R_EVENT_CT_FULL, XLB_R_EVENT_AFFINITY_FULL].contains(&(i as u32)))
        .collect();
    assert_eq!(outcomes.len(), 1, "reasons moved: {moved:?}");
    outcomes[0] as u32
}

/// Runs one IPv6 frame (ingress: the uplink) and returns (verdict, reason, output).
pub fn run6(env: &Env, frame: &[u8]) -> (u32, u32, Vec<u8>) {
    let before = env.reasons();
    let (rc, out) = env.xdp_in(frame, Some(env.uplink));
    let r = one_reason(&before, &env.reasons());
    (rc, r, out)
}

/// `f` with its destination (address and port) replaced: what a DNAT makes.
pub fn dnat6(f: &Frame6, to: SocketAddrV6) -> Vec<u8> {
    let mut g = f.clone();
    g.dst = to;
    g.build()
}
