//! # `xlb explain` agrees with the data plane
//!
//! For random map contents (Services of every flag, empty and broken Maglev
//! tables, local, remote and inactive backends, missing tunnel entries,
//! source ranges, affinity and ct entries that are live, of an old
//! generation, or of deleted frontends) and random frames, the walk of
//! `xlb::explain` over the maps predicts what BPF_PROG_RUN of the programs
//! then does: the verdict, the reason counter, and the rewritten destination
//! or source (the chosen backend). XDP and tc, seeded, a few hundred cases.
mod packet_util;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use packet_util::*;
use xlb::explain::{explain, Flow, Iface, MapsView, Verdict, View};
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::be32;
use xlb_bpf::Proto;

/// xorshift64*: reproducible without a dependency on a generator's version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

const VIPS: [[u8; 4]; 3] = [[10, 96, 0, 1], [10, 96, 0, 2], [10, 96, 0, 3]];
const NODEPORT: u16 = 30080;
const EXTRA_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const CLIENTS: [[u8; 4]; 4] = [
    [198, 18, 0, 100],
    [198, 18, 0, 101],
    [198, 18, 0, 200],
    [10, 244, 1, 3],
];
const SPORTS: [u16; 3] = [40000, 40001, 8080];
const NBACKENDS: u32 = 8;

fn v4(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

fn proto_of(p: Proto) -> u8 {
    p.number()
}

/// Empties every map the walk reads (backends are overwritten instead).
fn reset(env: &Env) {
    let m = env.maps();
    for (k, _) in m.services().unwrap() {
        m.delete_service(&k).unwrap();
    }
    env.clear_state();
    for svc_id in 1..=16 {
        m.put_svc_stable(svc_id, &Default::default()).unwrap();
    }
    for k in m.src_ranges().unwrap() {
        m.delete_src_range(&k).unwrap();
    }
    for (k, _) in m.tunnels().unwrap() {
        m.delete_tunnel(&k).unwrap();
    }
    for a in m.local_addrs().unwrap() {
        m.delete_local_addr(a).unwrap();
    }
    for a in m.remote_addrs().unwrap() {
        m.delete_remote_addr(a).unwrap();
    }
    // A VTEP MAC the XDP program keeps for 50 ms would outlive its tunnel
    // entry, which explain does not model.
    env.clear_caches();
}

/// Random maps; returns the backends' addresses (for reply frames).
fn fill(env: &Env, r: &mut Rng) -> Vec<SocketAddrV4> {
    let m = env.maps();
    let now = MapsView(m).now();
    let mut addrs = Vec::new();
    for id in 1..=NBACKENDS {
        // 10.244.1.x local, 10.244.2.x on PEER; one may be a client (hairpin)
        let remote = r.chance(35);
        let host = if id == 3 { 3 } else { 10 + id as u8 };
        let a = v4([10, 244, if remote { 2 } else { 1 }, host], 8080);
        let mut b = xlb_backend::new(a, remote.then_some(PEER), 1 + r.below(3) as u32);
        if r.chance(15) {
            b.flags = 0;
        }
        m.put_backend(id, &b).unwrap();
        addrs.push(a);
    }
    if r.chance(80) {
        m.put_tunnel(
            &xlb_tunnel_key::new(Ipv4Addr::new(10, 244, 2, 0), 24),
            &xlb_tunnel_val::new(PEER, VTEP_MAC),
        )
        .unwrap();
    }
    m.put_local_addr(NODE).unwrap();
    if r.chance(50) {
        m.put_local_addr(EXTRA_LOCAL).unwrap();
    }
    // another node's address: a pod's NodePort traffic to it is balanced
    // (198.18.0.99 is no node's)
    m.put_remote_addr(PEER).unwrap();
    let mut keys = Vec::new();
    for vip in VIPS {
        for p in [Proto::Tcp, Proto::Udp] {
            if r.chance(80) {
                keys.push(xlb_svc_key::addr(v4(vip, 80), p));
            }
        }
    }
    keys.push(xlb_svc_key::nodeport(
        NODEPORT,
        r.pick(&[Proto::Tcp, Proto::Udp]),
    ));
    for (i, k) in keys.iter().enumerate() {
        let svc_id = 1 + i as u32;
        let off = 32 * i as u32;
        let size = r.pick(&[0u32, 7, 13]);
        let table: Vec<u32> = (0..size)
            .map(|_| {
                if r.chance(5) {
                    NBACKENDS + 1 // never written: not active
                } else {
                    1 + r.below(u64::from(NBACKENDS)) as u32
                }
            })
            .collect();
        m.write_maglev(off, &table).unwrap();
        let mut flags = 0;
        for (f, p) in [
            (XLB_SVC_F_AFFINITY, 30),
            (XLB_SVC_F_LOCAL, 25),
            (XLB_SVC_F_SRC_RANGES, 25),
        ] {
            if r.chance(p) {
                flags |= f;
            }
        }
        let n_local = r.below(3) as u32;
        m.put_service(
            k,
            &xlb_svc_val {
                svc_id,
                flags,
                table_off: off,
                table_size: size,
                affinity_timeout: r.pick(&[0, 100]),
                n_local,
                ..Default::default()
            },
        )
        .unwrap();
        // a stateless path (stateless.h) for some Services without
        // affinity: the window closed, or open with a stable table of its own
        if flags & XLB_SVC_F_AFFINITY == 0 && size > 0 && r.chance(60) {
            let window = r.chance(50);
            let stable: Vec<u32> = (0..size)
                .map(|_| 1 + r.below(u64::from(NBACKENDS) + 1) as u32)
                .collect();
            m.write_maglev(off + 16, &stable).unwrap();
            m.put_svc_stable(
                svc_id,
                &xlb_svc_stable {
                    table_off: if window { off + 16 } else { off },
                    table_size: size,
                    window_end: if window { now + 60 * 1_000_000_000 } else { 0 },
                    ct_seen: 0,
                },
            )
            .unwrap();
        }
        if flags & XLB_SVC_F_SRC_RANGES != 0 {
            m.put_src_range(&xlb_src_range_key::new(
                svc_id,
                Ipv4Addr::new(198, 18, 0, 0),
                25,
            ))
            .unwrap();
        }
        for c in CLIENTS {
            if r.chance(20) {
                m.put_affinity(
                    &xlb_affinity_key::new(svc_id, Ipv4Addr::from(c)),
                    &xlb_affinity_val {
                        backend_id: 1 + r.below(u64::from(NBACKENDS)) as u32,
                        generation: 1 + r.below(3) as u32,
                        last_seen: now,
                    },
                )
                .unwrap();
            }
        }
    }
    // ct: forward entries (some for frontends that do not exist), reverse ones.
    for _ in 0..6 {
        let proto = r.pick(&[Proto::Tcp, Proto::Udp]);
        let src = v4(r.pick(&CLIENTS), r.pick(&SPORTS));
        let dst = v4(r.pick(&VIPS), if r.chance(80) { 80 } else { 81 });
        m.put_ct(
            &xlb_ct_key::new(src, dst, proto_of(proto)),
            &xlb_ct_val {
                backend_id: 1 + r.below(u64::from(NBACKENDS)) as u32,
                generation: 1 + r.below(3) as u32,
                svc_id: 1,
                last_seen: now,
                ..Default::default()
            },
        )
        .unwrap();
    }
    for _ in 0..4 {
        let proto = r.pick(&[Proto::Tcp, Proto::Udp]);
        let be = r.pick(&addrs);
        let client = v4(r.pick(&CLIENTS), r.pick(&SPORTS));
        let tunnel = r.chance(30);
        let nat = !tunnel || r.chance(50);
        let mut v = xlb_ct_val {
            svc_id: 1,
            flags: XLB_CT_F_REVERSE | if tunnel { XLB_CT_F_TUNNEL } else { 0 },
            tunnel_peer: if tunnel { be32(PEER) } else { 0 },
            last_seen: now,
            ..Default::default()
        };
        if nat {
            v.nat_addr = be32(Ipv4Addr::from(r.pick(&VIPS)));
            v.nat_port = 80u16.to_be();
        }
        m.put_ct(&xlb_ct_key::new(be, client, proto_of(proto)), &v)
            .unwrap();
    }
    addrs
}

fn random_flow(r: &mut Rng, backends: &[SocketAddrV4]) -> Flow {
    let proto = r.pick(&[Proto::Tcp, Proto::Udp]);
    let iface = if r.chance(30) {
        Iface::Pod
    } else {
        Iface::Uplink
    };
    let client = v4(r.pick(&CLIENTS), r.pick(&SPORTS));
    let (src, dst) = match r.below(10) {
        // a reply: backend -> client
        0 | 1 => (r.pick(backends), client),
        // a NodePort on a local, an extra-local or a foreign address
        2 | 3 => (
            client,
            SocketAddrV4::new(
                r.pick(&[NODE, EXTRA_LOCAL, PEER, Ipv4Addr::new(198, 18, 0, 99)]),
                NODEPORT,
            ),
        ),
        // nothing of ours
        4 => (client, v4([203, 0, 113, 1], 80)),
        _ => (
            client,
            v4(r.pick(&VIPS), if r.chance(90) { 80 } else { 81 }),
        ),
    };
    Flow {
        src,
        dst,
        proto,
        iface,
        rst: false,
    }
}

fn code(v: Verdict, iface: Iface) -> u32 {
    match (iface, v) {
        (Iface::Uplink, Verdict::Pass) => XDP_PASS,
        (Iface::Uplink, Verdict::Drop) => XDP_DROP,
        (Iface::Uplink, Verdict::Tx) => XDP_TX,
        (Iface::Uplink, Verdict::Redirect) => XDP_REDIRECT,
        (Iface::Pod, Verdict::Pass) => TC_ACT_OK,
        (Iface::Pod, Verdict::Drop) => TC_ACT_SHOT,
        (Iface::Pod, _) => TC_ACT_REDIRECT,
    }
}

/// (source, destination) of the frame the program let go: the inner frame
/// of a VXLAN one.
fn addrs_out(out: &[u8], what: &str) -> (SocketAddrV4, SocketAddrV4) {
    let (_, _, p) = check_eth_ipv4(out, what);
    if p.ip.protocol.0 == UDP && p.dst_port() == VXLAN_PORT {
        let v = check_vxlan(out, what);
        let (_, _, q) = check_eth_ipv4(&v.inner, what);
        return (q.src(), q.dst());
    }
    (p.src(), p.dst())
}

#[test]
fn explain_outcome_equals_the_programs() {
    let Some(env) = Env::new() else { return };
    let mut r = Rng(0x0b5e_55ed_0000_0017);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    let mut cases = 0;
    for round in 0..24 {
        reset(&env);
        let backends = fill(&env, &mut r);
        for case in 0..30 {
            let f = random_flow(&mut r, &backends);
            let e = explain(&MapsView(env.maps()), &f).expect("explain");
            let o = &e.outcome;
            // TCP: an established connection's segment (ACK). A pure SYN
            // is half-open in ct_syn (bpf/include/ctsyn.h), which explain
            // does not read: it describes flows by the ct map.
            let frame = match f.proto {
                Proto::Tcp => {
                    let mut t = Frame::tcp(f.src, f.dst);
                    t.tcp_flags = 0x10;
                    t
                }
                _ => Frame::udp(f.src, f.dst),
            }
            .build();
            let before = env.reasons();
            let (rc, out) = match f.iface {
                Iface::Uplink => env.xdp_in(&frame, Some(env.uplink)),
                Iface::Pod => env.tc(&frame),
            };
            let moved: Vec<String> = moved(&before, &env.reasons())
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| !n.starts_with("event_"))
                .collect();
            let what = format!("round {round} case {case}: {f:?}\n{e:#?}");
            assert_eq!(moved, std::slice::from_ref(&o.reason), "reason; {what}");
            assert_eq!(rc, code(o.verdict, f.iface), "verdict; {what}");
            if o.reason != "tx_reject" && o.verdict != Verdict::Drop {
                let (src, dst) = addrs_out(&out, &what);
                assert_eq!(
                    SocketAddr::from(dst),
                    o.new_dst.unwrap_or(f.dst.into()),
                    "destination; {what}"
                );
                assert_eq!(
                    SocketAddr::from(src),
                    o.new_src.unwrap_or(f.src.into()),
                    "source; {what}"
                );
            }
            *seen.entry(o.reason.clone()).or_default() += 1;
            if e.steps.iter().any(|s| s.found.contains("another node's")) {
                *seen.entry("other node's NodePort".into()).or_default() += 1;
            }
            for (what, text) in [
                ("stateless", "no ct entry"),
                ("stable table kept", "stable table"),
            ] {
                if e.steps.iter().any(|s| s.found.contains(text)) {
                    *seen.entry(what.into()).or_default() += 1;
                }
            }
            cases += 1;
        }
    }
    // The random maps reach the interesting outcomes.
    for r in [
        "pass_local",
        "tx_remote",
        "pass_not_service",
        "pass_revnat",
        "tx_reject",
        "drop_bad_maglev",
        "drop_src_range",
        "drop_itp_local",
        "other node's NodePort",
        "stateless",
        "stable table kept",
    ] {
        assert!(seen.contains_key(r), "no case reached {r}: {seen:?}");
    }
    assert_eq!(cases, 720);
}
