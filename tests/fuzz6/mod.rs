//! IPv6 frames for the fuzz test (`fuzz_programs.rs`): structured frames
//! to the IPv6 fixture's Services and from its backends (extension headers,
//! fragments, zero UDP checksums, VXLAN over IPv6, ICMPv6 errors and
//! neighbour discovery), their mutations and noise; and the check of what
//! the program emits (the test kit's independent IPv6 checker).

use std::net::{Ipv6Addr, SocketAddrV6};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::packet_util::v6::*;
use crate::packet_util::*;

const VIPS6: [(u16, u16); 12] = [
    (0x10, 80),
    (0x10, 53),
    (0x20, 80),
    (0x20, 53),
    (0x21, 80),
    (0x22, 80),
    (0x30, 80),
    (0x30, 53),
    (0x40, 80),
    (0x50, 80),
    (0x60, 80),
    (0x10, 81),
];
const BACKENDS6: [&str; 6] = [BE6_LOCAL, BE6_UDP, BE6_REMOTE, BE6_NONEIGH, BE6_5, BE6_6];

fn client6(rng: &mut StdRng) -> SocketAddrV6 {
    let host = [0x64u16, 0x65, 0x66, 0x1234][rng.random_range(0..4)];
    let net = if rng.random_bool(0.9) { 0x18 } else { 0x19 };
    SocketAddrV6::new(
        Ipv6Addr::new(0x2001, 0xdb8, net, 0, 0, 0, 0, host),
        40000 + rng.random_range(0..16),
        0,
        0,
    )
}

fn random_frame6(rng: &mut StdRng) -> Frame6 {
    let (src, dst) = match rng.random_range(0..10) {
        0..=5 => {
            let (n, p) = VIPS6[rng.random_range(0..VIPS6.len())];
            (client6(rng), vip6_n(n, p))
        }
        6..=7 => (
            sa6(BACKENDS6[rng.random_range(0..BACKENDS6.len())]),
            client6(rng),
        ),
        8 => (client6(rng), SocketAddrV6::new(NODE6, 30080, 0, 0)),
        _ => (
            SocketAddrV6::new(Ipv6Addr::from(rng.random::<u128>()), rng.random(), 0, 0),
            SocketAddrV6::new(Ipv6Addr::from(rng.random::<u128>()), rng.random(), 0, 0),
        ),
    };
    let mut f = if rng.random_bool(0.4) {
        Frame6::udp(src, dst)
    } else {
        Frame6::tcp(src, dst)
    };
    f.tcp_flags = [0x02, 0x10, 0x18, 0x11, 0x04, 0x12, rng.random()][rng.random_range(0..7)];
    f.seq = rng.random();
    f.ack = rng.random();
    let n = if rng.random_bool(0.06) {
        [1350usize, 1370, 1371, 1440][rng.random_range(0..4)]
    } else {
        [0usize, 0, 1, 17, 100][rng.random_range(0..5)]
    };
    f.payload = vec![0u8; n];
    rng.fill(&mut f.payload[..]);
    if rng.random_bool(0.2) {
        let pick = [
            Ext::HopByHop(rng.random_range(0..3)),
            Ext::DestOpts(rng.random_range(0..3)),
            Ext::Routing(4, rng.random_range(0..3)),
        ];
        f.ext = (0..rng.random_range(1..=7))
            .map(|_| pick[rng.random_range(0..3)].clone())
            .collect();
    }
    if f.proto == UDP && rng.random_bool(0.1) {
        f.udp_csum = UdpCsum::Zero;
    }
    f
}

fn structured6(rng: &mut StdRng) -> Vec<u8> {
    let f = random_frame6(rng);
    let b = match rng.random_range(0..20) {
        0 | 1 => {
            let len = f.l4().len();
            if len >= 16 {
                let cut = 8 * rng.random_range(1..=len / 8).min(len / 8);
                let (a, b) = f.fragments(cut.min(len - len % 8).max(8), rng.random_range(0..4));
                if rng.random_bool(0.5) {
                    a
                } else {
                    b
                }
            } else {
                f.build()
            }
        }
        2 => {
            // an ICMPv6 error quoting a (possibly balanced) flow
            let q = random_frame6(rng).build();
            let typ = rng.random_range(1..=4);
            icmp6_error(
                *client6(rng).ip(),
                *f.dst.ip(),
                typ,
                0,
                rng.random(),
                &q,
                [48, 60, 1232][rng.random_range(0..3)],
            )
        }
        3 => neighbour_solicitation(*client6(rng).ip(), NODE6),
        4 => icmp6_echo(*client6(rng).ip(), *f.dst.ip()),
        _ => f.build(),
    };
    if rng.random_bool(0.3) {
        let dst = if rng.random_bool(0.9) { NODE6 } else { PEER6 };
        let vni = if rng.random_bool(0.9) { VNI } else { 2 };
        vxlan6(
            &b,
            PEER6,
            dst,
            vni,
            rng.random_bool(0.5),
            rng.random_bool(0.3),
        )
    } else {
        b
    }
}

fn mutate6(rng: &mut StdRng, mut f: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..6) {
            0 if !f.is_empty() => {
                let i = rng.random_range(0..f.len());
                f[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !f.is_empty() => {
                let i = rng.random_range(0..f.len().min(130));
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
            4 if f.len() > 20 => {
                // payload length
                let v: u16 = rng.random_range(0..(f.len() as u16 + 40));
                f[18..20].copy_from_slice(&v.to_be_bytes());
            }
            _ if f.len() > 20 => {
                // next header
                f[20] = [0, 6, 17, 43, 44, 58, 59, 60, rng.random()][rng.random_range(0..9)];
            }
            _ => {}
        }
    }
    f
}

pub fn generate6(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..10) {
        0..=4 => structured6(rng),
        5..=8 => {
            let b = structured6(rng);
            mutate6(rng, b)
        }
        _ => {
            let n = rng.random_range(14..200);
            let mut b = vec![0u8; n];
            rng.fill(&mut b[..]);
            b[12] = 0x86;
            b[13] = 0xdd;
            if b.len() > 14 && rng.random_bool(0.5) {
                b[14] = 0x60;
            }
            b
        }
    }
}

/// `f` cut to its IPv6 payload length (bytes after it are padding a
/// program may carry along, as it does for IPv4).
fn trim6(f: &[u8]) -> &[u8] {
    if f.len() >= 54 && f[12..14] == [0x86, 0xdd] {
        let end = 54 + usize::from(u16::from_be_bytes([f[18], f[19]]));
        if end <= f.len() {
            return &f[..end];
        }
    }
    f
}

/// check_frame6 on the frame cut to its payload length, and on a VXLAN
/// frame's inner IPv6 frame cut the same way.
fn well_formed(f: &[u8]) -> Result<Parsed6, String> {
    let t = trim6(f);
    let p = parse6(t)?;
    if let Some((off, more, _)) = p.frag {
        if off != 0 || more {
            return Ok(p);
        }
    }
    let l4 = &t[p.l4_off..];
    check_l4_6(p.src, p.dst, p.proto, l4)?;
    if p.proto == UDP && l4[2..4] == VXLAN_PORT.to_be_bytes() && l4.len() >= 16 + 14 {
        let inner = &l4[16..];
        if inner[12..14] == [0x86, 0xdd] {
            well_formed(inner).map_err(|e| format!("inner: {e}"))?;
        }
    }
    Ok(p)
}

/// The frame inside VXLAN over IPv6 when `f` is that (to the VXLAN port).
fn inner6(f: &[u8]) -> &[u8] {
    let t = trim6(f);
    match parse6(t) {
        Ok(p) if p.proto == UDP && t.len() >= p.l4_off + 16 + 14 => {
            let l4 = &t[p.l4_off..];
            if l4[2..4] == VXLAN_PORT.to_be_bytes() {
                &l4[16..]
            } else {
                f
            }
        }
        _ => f,
    }
}

/// Checks one (input, output) pair of the IPv6 path.
pub fn check6(input: &[u8], out: &[u8]) -> Result<(), String> {
    if out == input {
        return Ok(());
    }
    let t = trim6(out);
    let p = parse6(t).map_err(|e| format!("changed frame: {e}"))?;
    let in_inner = inner6(input);
    let in_ok = well_formed(in_inner).is_ok();
    let q = parse6(trim6(in_inner)).ok();
    let in_icmp = q.as_ref().is_some_and(|q| q.proto == ICMP6);
    // answers the program builds (RST, ICMPv6 errors about TCP/UDP: from
    // the frame's destination back to its source) and the VXLAN headers it
    // writes are exact whatever the input
    let answer = !in_icmp && q.as_ref().is_some_and(|q| p.src == q.dst && p.dst == q.src);
    let built_vxlan = p.proto == UDP
        && t.len() >= p.l4_off + 16 + 14
        && t[p.l4_off + 2..p.l4_off + 4] == VXLAN_PORT.to_be_bytes()
        && p.src == NODE6;
    if built_vxlan {
        check_l4_6(p.src, p.dst, UDP, &t[p.l4_off..]).map_err(|e| format!("outer: {e}"))?;
        parse6(trim6(&t[p.l4_off + 16..])).map_err(|e| format!("inner: {e}"))?;
    }
    if in_ok || answer {
        well_formed(out).map_err(|e| format!("emitted: {e}"))?;
    }
    Ok(())
}

#[allow(dead_code)]
pub fn rng6(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
