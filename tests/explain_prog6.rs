//! # `xlb explain` agrees with the data plane, IPv6
//!
//! As `explain_prog.rs` for the uplink program's IPv6 path: for random
//! contents of the IPv6 maps (services6 with every flag, empty and broken
//! Maglev tables, local, remote and inactive backends6, missing tunnel6
//! entries, src_ranges6, affinity6 and ct6 entries that are live, of an old
//! generation, or of deleted frontends, reverse entries with and without a
//! tunnel peer) and random IPv6 frames, `xlb::explain::explain6` predicts
//! what BPF_PROG_RUN of the XDP program then does: the verdict, the reason
//! counter, and the rewritten destination or source. Seeded.
mod packet_util;

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use packet_util::v6::*;
use packet_util::*;
use xlb::explain::{explain6, Flow6, MapsView, Verdict, View};
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire6::be128;
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

const NODEPORT: u16 = 30080;
const NBACKENDS: u32 = 8;
const SPORTS: [u16; 3] = [40000, 40001, 8080];

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn vips() -> [Ipv6Addr; 3] {
    [a6("fd00:96::1"), a6("fd00:96::2"), a6("fd00:96::3")]
}

fn clients() -> [Ipv6Addr; 4] {
    [
        a6("2001:db8:18::64"),
        a6("2001:db8:18::65"),
        a6("2001:db8:77::c8"),
        a6("fd00:244:1::3"),
    ]
}

fn extra_local() -> Ipv6Addr {
    a6("2001:db8:18::32")
}

fn sa(a: Ipv6Addr, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(a, port, 0, 0)
}

/// Empties every IPv6 map the walk reads (backends6 are overwritten).
fn reset(env: &Env) {
    let m = env.maps();
    for (k, _) in m.services6().unwrap() {
        m.delete_service6(&k).unwrap();
    }
    clear_ct6(env);
    for k in m.src_ranges6().unwrap() {
        m.delete_src_range6(&k).unwrap();
    }
    for (k, _) in m.tunnels6().unwrap() {
        m.delete_tunnel6(&k).unwrap();
    }
    for a in m.local_addrs6().unwrap() {
        m.delete_local_addr6(a).unwrap();
    }
    // the next-hop and VTEP answers the last case left (kept 50 ms, nh6.h)
    env.clear_caches();
}

/// Random IPv6 maps; returns the backends' addresses and the (source,
/// destination) of the reverse ct6 entries (for reply frames).
#[allow(clippy::type_complexity)]
fn fill(env: &Env, r: &mut Rng) -> (Vec<SocketAddrV6>, Vec<(SocketAddrV6, SocketAddrV6, Proto)>) {
    let m = env.maps();
    let now = MapsView(m).now();
    let mut addrs = Vec::new();
    for id in 1..=NBACKENDS {
        // fd00:244:1::x local, fd00:244:2::x on PEER6
        let remote = r.chance(35);
        let host = if id == 3 { 3 } else { 0x10 + id as u16 };
        let a = sa(
            Ipv6Addr::new(0xfd00, 0x244, if remote { 2 } else { 1 }, 0, 0, 0, 0, host),
            8080,
        );
        let mut b = xlb_backend6::new(a, remote.then_some(PEER6), 1 + r.below(3) as u32);
        if r.chance(15) {
            b.flags = 0;
        }
        m.put_backend6(id, &b).unwrap();
        addrs.push(a);
    }
    if r.chance(80) {
        m.put_tunnel6(
            &xlb_tunnel6_key::new(a6("fd00:244:2::"), 64),
            &xlb_tunnel6_val::new(PEER6, VTEP_MAC),
        )
        .unwrap();
    }
    if r.chance(50) {
        m.put_local_addr6(extra_local()).unwrap();
    }
    let mut keys = Vec::new();
    for vip in vips() {
        for p in [Proto::Tcp, Proto::Udp] {
            if r.chance(80) {
                keys.push(xlb_svc6_key::addr(sa(vip, 80), p));
            }
        }
    }
    keys.push(xlb_svc6_key::nodeport(
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
        m.put_service6(
            k,
            &xlb_svc_val {
                svc_id,
                flags,
                table_off: off,
                table_size: size,
                affinity_timeout: r.pick(&[0, 100]),
                n_local: r.below(3) as u32,
                fe_type: r.pick(&[XLB_FE_CLUSTERIP as u8, XLB_FE_NODEPORT as u8]),
                ..Default::default()
            },
        )
        .unwrap();
        if flags & XLB_SVC_F_SRC_RANGES != 0 {
            m.put_src_range6(&xlb_src_range6_key::new(svc_id, a6("2001:db8:18::"), 64))
                .unwrap();
        }
        for c in clients() {
            if r.chance(20) {
                m.put_affinity6(
                    &xlb_affinity6_key::new(svc_id, c),
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
    // ct6: forward entries (some for frontends that do not exist), reverse ones.
    for _ in 0..6 {
        let proto = r.pick(&[Proto::Tcp, Proto::Udp]);
        let src = sa(r.pick(&clients()), r.pick(&SPORTS));
        let dst = sa(r.pick(&vips()), if r.chance(80) { 80 } else { 81 });
        m.put_ct6(
            &xlb_ct6_key::new(src, dst, proto.number()),
            &xlb_ct6_val {
                backend_id: 1 + r.below(u64::from(NBACKENDS)) as u32,
                generation: 1 + r.below(3) as u32,
                svc_id: 1,
                last_seen: now,
                ..Default::default()
            },
        )
        .unwrap();
    }
    let mut replies = Vec::new();
    for _ in 0..4 {
        let proto = r.pick(&[Proto::Tcp, Proto::Udp]);
        let be = r.pick(&addrs);
        let client = sa(r.pick(&clients()), r.pick(&SPORTS));
        let tunnel = r.chance(30);
        let nat = !tunnel || r.chance(50);
        let mut v = xlb_ct6_val {
            svc_id: 1,
            flags: XLB_CT_F_REVERSE | if tunnel { XLB_CT_F_TUNNEL } else { 0 },
            last_seen: now,
            ..Default::default()
        };
        // (a tunnel entry without its peer returns nothing: decap, pass)
        if tunnel && r.chance(75) {
            v.tunnel_peer = be128(PEER6);
        }
        if nat {
            v.nat_addr = be128(r.pick(&vips()));
            v.nat_port = 80u16.to_be();
        }
        m.put_ct6(&xlb_ct6_key::new(be, client, proto.number()), &v)
            .unwrap();
        replies.push((be, client, proto));
    }
    (addrs, replies)
}

fn random_flow(
    r: &mut Rng,
    backends: &[SocketAddrV6],
    replies: &[(SocketAddrV6, SocketAddrV6, Proto)],
) -> Flow6 {
    let mut proto = r.pick(&[Proto::Tcp, Proto::Udp]);
    let client = sa(r.pick(&clients()), r.pick(&SPORTS));
    let (src, dst) = match r.below(10) {
        // a reply of a flow in ct6
        0 | 1 if r.chance(75) => {
            let (s, d, p) = r.pick(replies);
            proto = p;
            (s, d)
        }
        // a reply: backend -> client
        0 | 1 => (r.pick(backends), client),
        // a NodePort on the node's, an extra local or a foreign address
        2 | 3 => (
            client,
            sa(
                r.pick(&[NODE6, extra_local(), PEER6, a6("2001:db8:18::99")]),
                NODEPORT,
            ),
        ),
        // nothing of ours
        4 => (client, sa(a6("2001:db8:ff::1"), 80)),
        _ => (
            client,
            sa(r.pick(&vips()), if r.chance(90) { 80 } else { 81 }),
        ),
    };
    Flow6 {
        src,
        dst,
        proto,
        rst: false,
    }
}

fn code(v: Verdict) -> u32 {
    match v {
        Verdict::Pass => XDP_PASS,
        Verdict::Drop => XDP_DROP,
        Verdict::Tx => XDP_TX,
        Verdict::Redirect => XDP_REDIRECT,
    }
}

fn ports(f: &[u8], l4: usize) -> (u16, u16) {
    (
        u16::from_be_bytes([f[l4], f[l4 + 1]]),
        u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
    )
}

/// (source, destination) of the frame the program let go: the inner frame
/// of a VXLAN one.
fn addrs_out(out: &[u8], what: &str) -> (SocketAddr, SocketAddr) {
    let p = parse6(out).unwrap_or_else(|e| panic!("{e}; {what}"));
    let (sp, dp) = ports(out, p.l4_off);
    if p.proto == UDP && dp == VXLAN_PORT {
        let inner = &out[p.l4_off + 16..];
        return addrs_out(inner, what);
    }
    (
        SocketAddrV6::new(p.src, sp, 0, 0).into(),
        SocketAddrV6::new(p.dst, dp, 0, 0).into(),
    )
}

#[test]
fn explain6_outcome_equals_the_program() {
    let Some(env) = Env::new() else { return };
    underlay6(&env);
    let mut r = Rng(0x0b5e_55ed_0000_0606);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    let mut cases = 0;
    for round in 0..24 {
        reset(&env);
        let (backends, replies) = fill(&env, &mut r);
        for case in 0..30 {
            let f = random_flow(&mut r, &backends, &replies);
            let e = explain6(&MapsView(env.maps()), &f).expect("explain6");
            let o = &e.outcome;
            // TCP: an established connection's segment (ACK).
            let frame = match f.proto {
                Proto::Tcp => {
                    let mut t = Frame6::tcp(f.src, f.dst);
                    t.tcp_flags = 0x10;
                    t
                }
                _ => Frame6::udp(f.src, f.dst),
            }
            .build();
            let before = env.reasons();
            let (rc, out) = env.xdp_in(&frame, Some(env.uplink));
            let moved: Vec<String> = moved(&before, &env.reasons())
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| !n.starts_with("event_"))
                .collect();
            let what = format!("round {round} case {case}: {f:?}\n{e:#?}");
            assert_eq!(moved, std::slice::from_ref(&o.reason), "reason; {what}");
            assert_eq!(rc, code(o.verdict), "verdict; {what}");
            if o.reason != "tx_reject" && o.verdict != Verdict::Drop {
                let (src, dst) = addrs_out(&out, &what);
                assert_eq!(
                    dst,
                    o.new_dst.unwrap_or(f.dst.into()),
                    "destination; {what}"
                );
                assert_eq!(src, o.new_src.unwrap_or(f.src.into()), "source; {what}");
            }
            *seen.entry(o.reason.clone()).or_default() += 1;
            cases += 1;
        }
    }
    // The random maps reach the interesting outcomes.
    for r in [
        "pass_local",
        "tx_remote",
        "pass_not_service",
        "pass_revnat",
        "pass_decap",
        "tx_tunnel_return",
        "tx_reject",
        "drop_bad_maglev",
        "drop_src_range",
        "drop_no_tunnel",
    ] {
        assert!(seen.contains_key(r), "no case reached {r}: {seen:?}");
    }
    assert_eq!(cases, 720);
}
