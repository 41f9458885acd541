//! # Fuzz-style test of both programs
//!
//! Pushes well over 100,000 random, structured and mutated frames (seeded, so a
//! failure reproduces) through the XDP and the tc program against the packet
//! tests' fixture, and checks that
//! - BPF_PROG_RUN never fails and the verdict is one the program may return;
//! - every frame counts exactly one outcome reason (no event reasons fire);
//! - every frame the program changed is well formed: Ethernet + IPv4 with a
//!   valid header checksum (when the input's was valid; always for headers the
//!   program builds), consistent lengths (VXLAN outer lengths exact), and a
//!   valid TCP/UDP/ICMP checksum wherever the input's L4 checksum was valid.
//!
//! The egress program gets its own run (`fuzz_tc_egress`): replies of a
//! host-network endpoint against live tunnel entries and half-open slots.
//!
//! The IPv6 path gets its own run (`fuzz_xdp_ipv6`, frames from `fuzz6`):
//! every IPv6 frame the program changed is well formed (payload length,
//! extension chain, TCP/UDP/ICMPv6 checksum over the IPv6 pseudo header
//! when the input's was valid, never a zero UDP checksum; the VXLAN headers
//! and the answers it builds always exact).
mod fuzz6;
mod packet_util;

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{Ipv4Header, TcpHeader, UdpHeader};
use packet_util::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x786c_6200_2026;
const XDP_FRAMES: usize = 100_000;
const TC_FRAMES: usize = 40_000;

const VIPS: [&str; 14] = [
    "10.96.0.10:80",
    "10.96.0.10:53",
    "10.96.0.20:80",
    "10.96.0.20:53",
    "10.96.0.21:80",
    "10.96.0.22:80",
    "10.96.0.30:80",
    "10.96.0.30:53",
    "10.96.0.40:80",
    "10.96.0.50:80",
    "10.96.0.60:80",
    "10.96.0.70:80",
    "198.18.0.1:30080",
    "10.96.0.80:80",
];
const BACKENDS: [&str; 6] = [BE_LOCAL, BE_UDP, BE_REMOTE, BE_NONEIGH, BE_5, BE_6];

fn client(rng: &mut StdRng) -> SocketAddrV4 {
    // A small pool, so flows repeat and replies hit ct entries.
    let host = [100u8, 5, 101, 7][rng.random_range(0..4)];
    SocketAddrV4::new(
        Ipv4Addr::new(198, 18, 0, host),
        40000 + rng.random_range(0..16),
    )
}

fn random_frame(rng: &mut StdRng) -> Frame {
    let proto_udp = rng.random_bool(0.4);
    let (src, dst) = match rng.random_range(0..10) {
        // to a Service
        0..=5 => (client(rng), sa(VIPS[rng.random_range(0..VIPS.len())])),
        // a reply from a backend
        6..=7 => (
            sa(BACKENDS[rng.random_range(0..BACKENDS.len())]),
            client(rng),
        ),
        // anything
        _ => (
            SocketAddrV4::new(Ipv4Addr::from(rng.random::<u32>()), rng.random()),
            SocketAddrV4::new(Ipv4Addr::from(rng.random::<u32>()), rng.random()),
        ),
    };
    let mut f = if proto_udp {
        Frame::udp(src, dst)
    } else {
        Frame::tcp(src, dst)
    };
    f.tcp_flags = [0x02, 0x10, 0x18, 0x11, 0x04, 0x12, rng.random()][rng.random_range(0..7)];
    f.seq = rng.random();
    f.ack = rng.random();
    // Mostly small; sometimes right at the encapsulation MTU boundary.
    let n = if rng.random_bool(0.06) {
        [1410usize, 1411, 1460][rng.random_range(0..3)]
    } else {
        [0usize, 0, 1, 17, 100][rng.random_range(0..5)]
    };
    f.payload = vec![0u8; n];
    rng.fill(&mut f.payload[..]);
    if rng.random_bool(0.2) {
        let words = rng.random_range(1..=10);
        f.options = vec![1u8; words * 4];
    }
    if rng.random_bool(0.05) {
        f.mf = true;
        f.df = false;
    }
    if rng.random_bool(0.05) {
        f.frag_off = rng.random_range(1..0x1fff);
        f.df = false;
    }
    if proto_udp && rng.random_bool(0.2) {
        f.udp_no_csum = true;
    }
    f
}

fn ip_header_sum_ok(b: &[u8]) -> bool {
    if b.len() < 20 {
        return false;
    }
    let hl = usize::from(b[0] & 0xf) * 4;
    if hl < 20 || b.len() < hl {
        return false;
    }
    let mut s: u32 = b[..hl]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// Some(valid) for an unfragmented TCP/UDP datagram whose lengths parse.
fn l4_csum_ok(ip: &[u8]) -> Option<bool> {
    let (h, rest) = Ipv4Header::from_slice(ip).ok()?;
    if h.more_fragments || h.fragment_offset.value() != 0 {
        return None;
    }
    let len = usize::from(h.total_len).checked_sub(h.header_len())?;
    let l4 = rest.get(..len)?;
    match h.protocol.0 {
        TCP => {
            let (t, payload) = TcpHeader::from_slice(l4).ok()?;
            Some(t.calc_checksum_ipv4(&h, payload).ok()? == t.checksum)
        }
        UDP => {
            let (u, payload) = UdpHeader::from_slice(l4).ok()?;
            if usize::from(u.length) != l4.len() {
                return None;
            }
            Some(u.checksum == 0 || u.calc_checksum_ipv4(&h, payload).ok()? == u.checksum)
        }
        _ => None,
    }
}

/// The innermost IPv4 packet of a frame (inside VXLAN when it is VXLAN).
fn innermost_ip(f: &[u8]) -> Option<&[u8]> {
    if f.len() < 34 || f[12..14] != [8, 0] {
        return None;
    }
    let ip = &f[14..];
    let hl = usize::from(ip[0] & 0xf) * 4;
    if ip.len() >= hl + 16 + 34 && ip[9] == UDP && ip[hl + 2..hl + 4] == VXLAN_PORT.to_be_bytes() {
        // the frontend trailer (XLB_VXLAN_F_FE) sits before the inner frame
        let at = hl + 16 + vxlan_trailer_len(ip[hl + 11]);
        if ip.len() >= at + 34 && ip[at + 12..at + 14] == [8, 0] {
            return Some(&ip[at + 14..]);
        }
    }
    Some(ip)
}

/// Bytes between the VXLAN header and the inner frame: the frontend trailer
/// when the flags' last byte carries XLB_VXLAN_F_FE.
fn vxlan_trailer_len(flags_low: u8) -> usize {
    if flags_low & 0x02 != 0 {
        8
    } else {
        0
    }
}

fn mutate(rng: &mut StdRng, mut f: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..6) {
            0 if !f.is_empty() => {
                let i = rng.random_range(0..f.len());
                f[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !f.is_empty() => {
                // a byte in the headers
                let i = rng.random_range(0..f.len().min(80));
                f[i] = rng.random();
            }
            2 => {
                let n = rng.random_range(14..=f.len().max(14));
                f.truncate(n);
            }
            3 => {
                let mut junk = vec![0u8; rng.random_range(1..64)];
                rng.fill(&mut junk[..]);
                f.extend_from_slice(&junk);
            }
            4 if f.len() > 18 => {
                // IPv4 length fields
                let v: u16 = rng.random_range(0..(f.len() as u16 + 40));
                f[16..18].copy_from_slice(&v.to_be_bytes());
            }
            _ if f.len() > 14 => {
                // version / ihl
                f[14] = rng.random();
            }
            _ => {}
        }
    }
    if rng.random_bool(0.5) && f.len() >= 34 {
        let hl = usize::from(f[14] & 0xf) * 4;
        if hl >= 20 && f.len() >= 14 + hl {
            f[24..26].copy_from_slice(&[0, 0]);
            let mut s: u32 = f[14..14 + hl]
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum();
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            f[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
        }
    }
    f
}

fn generate(rng: &mut StdRng, pod: bool) -> Vec<u8> {
    match rng.random_range(0..10) {
        // structured, valid
        0..=3 => {
            let mut f = random_frame(rng);
            if pod {
                f = f.macs([0x0a, 0x58, 0, 0, 0, 1], [0xee; 6]);
            }
            let b = f.build();
            if !pod && rng.random_bool(0.3) {
                let dst = if rng.random_bool(0.9) { NODE } else { PEER };
                let vni = if rng.random_bool(0.9) { VNI } else { 2 };
                vxlan(&b, PEER, dst, vni, rng.random_bool(0.5))
            } else {
                b
            }
        }
        // mutated
        4..=8 => {
            let b = random_frame(rng).build();
            let b = if !pod && rng.random_bool(0.3) {
                vxlan(&b, PEER, NODE, VNI, rng.random_bool(0.5))
            } else {
                b
            };
            mutate(rng, b)
        }
        // noise
        _ => {
            let n = rng.random_range(14..200);
            let mut b = vec![0u8; n];
            rng.fill(&mut b[..]);
            if rng.random_bool(0.5) {
                b[12] = 8;
                b[13] = 0;
                if b.len() > 14 && rng.random_bool(0.5) {
                    b[14] = 0x45;
                }
            }
            b
        }
    }
}

/// Checks one (input, output) pair; returns a description of what is wrong.
fn check(input: &[u8], out: &[u8]) -> Result<(), String> {
    if out == input {
        return Ok(());
    }
    if out.len() < 34 || out[12..14] != [8, 0] {
        return Err("changed frame is not Ethernet + IPv4".into());
    }
    let in_inner = innermost_ip(input).ok_or("changed a frame that is not IPv4")?;
    let in_hdr_ok = ip_header_sum_ok(in_inner);
    let in_l4_ok = l4_csum_ok(in_inner);
    let ip = &out[14..];
    let hl = usize::from(ip[0] & 0xf) * 4;
    if ip[0] >> 4 != 4 || hl < 20 || ip.len() < hl {
        return Err("bad IPv4 header".into());
    }
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if tot < hl || tot > ip.len() {
        return Err(format!("IPv4 total length {tot} vs {} bytes", ip.len()));
    }
    // Encapsulated by the program (remote backend, tunnel return): the frame
    // grows (or keeps its size when it arrived encapsulated).
    let is_vxlan = ip[9] == UDP
        && ip.len() >= hl + 8
        && ip[hl + 2..hl + 4] == VXLAN_PORT.to_be_bytes()
        && out.len() >= input.len();
    let inner = if is_vxlan {
        // Built by the program: must be exact.
        if !ip_header_sum_ok(ip) {
            return Err("outer IPv4 checksum".into());
        }
        if tot != ip.len() {
            return Err("outer total length".into());
        }
        let udp_len = usize::from(u16::from_be_bytes([ip[hl + 4], ip[hl + 5]]));
        if udp_len != tot - hl {
            return Err("outer UDP length".into());
        }
        if ip.len() < hl + 16 {
            return Err("VXLAN header".into());
        }
        let at = hl + 16 + vxlan_trailer_len(ip[hl + 11]);
        if ip.len() < at + 14 + 20 || ip[at + 12..at + 14] != [8, 0] {
            return Err("inner frame".into());
        }
        &ip[at + 14..]
    } else {
        ip
    };
    let ihl = usize::from(inner[0] & 0xf) * 4;
    let itot = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
    if inner[0] >> 4 != 4 || ihl < 20 || itot < ihl || itot > inner.len() {
        return Err("inner IPv4 lengths".into());
    }
    // ICMP built by the program (an answer to TCP/UDP) must be exact; ICMP it
    // relays (an error about a balanced flow, translated or decapsulated)
    // keeps what was valid on input.
    let in_icmp = in_inner.len() > 9 && in_inner[9] == 1;
    let answer = inner[9] == 1 && !in_icmp;
    if (in_hdr_ok || answer) && !ip_header_sum_ok(inner) {
        return Err("IPv4 header checksum".into());
    }
    if inner[9] == 1 {
        if (answer || icmp_sum_ok(in_inner)) && !icmp_sum_ok(inner) {
            return Err("ICMP checksum".into());
        }
        return Ok(());
    }
    if in_l4_ok == Some(true) || answer {
        match l4_csum_ok(inner) {
            Some(true) => {}
            Some(false) => return Err("L4 checksum broken".into()),
            None => return Err("L4 no longer parses".into()),
        }
    }
    Ok(())
}

/// The ICMP checksum over the whole message of an IPv4 packet.
fn icmp_sum_ok(ip: &[u8]) -> bool {
    if ip.len() < 20 {
        return false;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let itot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || itot < ihl || itot > ip.len() {
        return false;
    }
    let mut s: u32 = ip[ihl..itot]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

fn total(env: &Env) -> u64 {
    env.reasons().iter().sum()
}

#[test]
fn fuzz_xdp_and_tc() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut failures = Vec::new();
    let mut changed = 0usize;
    let start = total(&env);
    for i in 0..XDP_FRAMES {
        let f = generate(&mut rng, false);
        let on_uplink = i % 2 == 0;
        let (rc, out) = env.xdp_in(&f, on_uplink.then_some(env.uplink));
        if ![XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT].contains(&rc) {
            failures.push(format!("xdp #{i}: verdict {rc}"));
        }
        if out != f {
            changed += 1;
        }
        if let Err(e) = check(&f, &out) {
            failures.push(format!("xdp #{i}: {e}\n  in  {f:02x?}\n  out {out:02x?}"));
        }
        if failures.len() > 5 {
            break;
        }
    }
    let xdp_counted = total(&env) - start;
    let start = total(&env);
    let mut tc_runs = 0u64;
    for i in 0..TC_FRAMES {
        let f = generate(&mut rng, true);
        let Ok((rc, out)) = env.try_tc(&f) else {
            // refused by the kernel before the program ran (IPv4 header cut)
            continue;
        };
        tc_runs += 1;
        if ![TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&rc) {
            failures.push(format!("tc #{i}: verdict {rc}"));
        }
        if out != f {
            changed += 1;
        }
        if let Err(e) = check(&f, &out) {
            failures.push(format!("tc #{i}: {e}\n  in  {f:02x?}\n  out {out:02x?}"));
        }
        if failures.len() > 5 {
            break;
        }
    }
    let tc_counted = total(&env) - start;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(xdp_counted, XDP_FRAMES as u64, "one reason per XDP frame");
    assert_eq!(tc_counted, tc_runs, "one reason per tc frame");
    assert!(tc_runs > 30_000);
    assert!(
        changed > 10_000,
        "the fuzz must exercise rewriting paths ({changed})"
    );
    eprintln!("fuzz: {XDP_FRAMES} xdp + {tc_runs} tc frames, {changed} rewritten");
}

const EGRESS_FRAMES: usize = 30_000;

/// A frame the node's stack might send out of the uplink: mostly replies of
/// its host-network endpoint (NODE:6443) to the client pool, some other
/// traffic of the node; structured, mutated or noise.
fn egress_frame(rng: &mut StdRng) -> Vec<u8> {
    let src = match rng.random_range(0..10) {
        0..=6 => sa("198.18.0.1:6443"),
        7 => sa("198.18.0.1:22"),
        _ => SocketAddrV4::new(Ipv4Addr::from(rng.random::<u32>()), rng.random()),
    };
    let mut f = random_frame(rng);
    f.src = src;
    f.dst = client(rng);
    f.src_mac = NODE_MAC;
    f.dst_mac = CLIENT_MAC;
    match rng.random_range(0..10) {
        0..=5 => f.build(),
        6..=8 => mutate(rng, f.build()),
        _ => generate(rng, false),
    }
}

/// The egress program (tc_egress.h) against live tunnel entries, tunnel NAT
/// and not, and half-open tunnel slots of the client pool: every frame it
/// changes is well formed (reverse-NATed, encapsulated, or an ICMP
/// fragmentation needed it built), counts exactly one reason, and every frame
/// it leaves alone counts none.
#[test]
fn fuzz_tc_egress() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    env.backend(30, "198.18.0.1:6443", None);
    let mut rng = StdRng::seed_from_u64(SEED ^ 0xe9);
    for host in [100u8, 5, 101, 7] {
        for port in 40000..40016u16 {
            let c = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, host), port);
            let mut inner = Frame::tcp(c, sa("198.18.0.1:6443"));
            inner.tcp_flags = if port % 3 == 0 { 0x02 } else { 0x10 };
            let f = if port % 2 == 0 {
                packet_util::tnat::vxlan_fe(&inner.build(), PEER, NODE, sa("10.96.0.1:443"))
            } else {
                vxlan(&inner.build(), PEER, NODE, VNI, true)
            };
            assert_eq!(env.xdp(&f).0, XDP_PASS);
        }
    }
    let mut failures = Vec::new();
    let (mut runs, mut changed) = (0u64, 0usize);
    for i in 0..EGRESS_FRAMES {
        let f = egress_frame(&mut rng);
        let before = total(&env);
        let mut buf = vec![0u8; f.len() + 512];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(&f),
            data_out: Some(&mut buf),
            ..Default::default()
        };
        let Ok(o) = env.dp.tc_egress_prog().test_run(input) else {
            continue; // refused by the kernel before the program ran
        };
        runs += 1;
        let rc = o.return_value;
        let n = o.data.map(|d| d.len()).unwrap_or(0);
        buf.truncate(n);
        let out = buf;
        let counted = total(&env) - before;
        if ![TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&rc) {
            failures.push(format!("egress #{i}: verdict {rc}"));
        }
        let untouched = rc == TC_ACT_OK && out == f;
        if !untouched {
            changed += 1;
        }
        if counted != u64::from(!untouched) {
            failures.push(format!(
                "egress #{i}: {counted} reasons (untouched: {untouched})"
            ));
        }
        if let Err(e) = check(&f, &out) {
            failures.push(format!(
                "egress #{i}: {e}\n  in  {f:02x?}\n  out {out:02x?}"
            ));
        }
        if failures.len() > 5 {
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(runs > 25_000);
    assert!(
        changed > 3_000,
        "the fuzz must exercise the translating paths ({changed})"
    );
    eprintln!("fuzz: {runs} tc egress frames, {changed} translated");
}

const XDP6_FRAMES: usize = 120_000;

#[test]
fn fuzz_xdp_ipv6() {
    let Some(env) = Env::new() else { return };
    packet_util::v6::fixture6(&env);
    let mut rng = StdRng::seed_from_u64(SEED ^ 6);
    let mut failures = Vec::new();
    let mut changed = 0usize;
    let mut sent = 0usize;
    let start = total(&env);
    for i in 0..XDP6_FRAMES {
        let f = fuzz6::generate6(&mut rng);
        let (rc, out) = env.xdp_in(&f, (i % 2 == 0).then_some(env.uplink));
        if ![XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT].contains(&rc) {
            failures.push(format!("xdp6 #{i}: verdict {rc}"));
        }
        if out != f {
            changed += 1;
        }
        if rc == XDP_TX || rc == XDP_REDIRECT {
            sent += 1;
        }
        if let Err(e) = fuzz6::check6(&f, &out) {
            failures.push(format!("xdp6 #{i}: {e}\n  in  {f:02x?}\n  out {out:02x?}"));
        }
        if failures.len() > 5 {
            break;
        }
    }
    let counted = total(&env) - start;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(counted, XDP6_FRAMES as u64, "one reason per IPv6 frame");
    assert!(
        changed > 10_000,
        "the fuzz must exercise rewriting paths ({changed})"
    );
    assert!(sent > 1_000, "and the encapsulation and answers ({sent})");
    eprintln!("fuzz6: {XDP6_FRAMES} xdp frames, {changed} rewritten, {sent} sent");
}
