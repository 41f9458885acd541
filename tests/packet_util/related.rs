//! Frames of a datagram's life beyond one packet: IPv4 fragment trains and
//! ICMP errors quoting a packet, built from scratch (checksums computed here,
//! never by the code under test), and their reassembly for the checks.

use std::net::Ipv4Addr;

use super::{fixture, moved, reason_name, Env, Prog, CLIENT_MAC, NODE_MAC};
use xlb_testkit::csum::checksum as csum;

fn ip_csum(ip: &mut [u8]) {
    ip[10] = 0;
    ip[11] = 0;
    let c = csum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Splits a whole frame (Ethernet / IPv4 / L4, DF clear) into fragments whose
/// L4 parts are `sizes` bytes long (each a multiple of 8 but the last, which
/// takes the rest). Every fragment keeps the frame's Ethernet header, IPv4
/// header (options too) and IP ID; MF and the offset are set, lengths and the
/// header checksum recomputed.
pub fn fragments(frame: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let hl = usize::from(frame[14] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let payload = &frame[14 + hl..14 + tot];
    let mut out = Vec::new();
    let mut at = 0;
    for (i, &n) in sizes.iter().chain(std::iter::once(&usize::MAX)).enumerate() {
        if at >= payload.len() {
            break;
        }
        let last = i == sizes.len() || at + n >= payload.len();
        let n = if last { payload.len() - at } else { n };
        assert!(
            last || n.is_multiple_of(8),
            "fragment sizes are multiples of 8"
        );
        let mut f = frame[..14 + hl].to_vec();
        let ip = &mut f[14..];
        ip[2..4].copy_from_slice(&((hl + n) as u16).to_be_bytes());
        let flags = if last { 0 } else { 0x2000 };
        ip[6..8].copy_from_slice(&(flags | (at / 8) as u16).to_be_bytes());
        ip_csum(&mut f[14..14 + hl]);
        f.extend_from_slice(&payload[at..at + n]);
        out.push(f);
        at += n;
        if last {
            break;
        }
    }
    out
}

/// Reassembles fragments (any order) into one frame with MF/offset clear
/// and a recomputed header checksum: the datagram the receiver gets.
pub fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut parts: Vec<(usize, &[u8])> = Vec::new();
    let mut head: Option<&Vec<u8>> = None;
    for f in frags {
        let hl = usize::from(f[14] & 0x0f) * 4;
        let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
        let off = usize::from(u16::from_be_bytes([f[20], f[21]]) & 0x1fff) * 8;
        if off == 0 {
            head = Some(f);
        }
        parts.push((off, &f[14 + hl..14 + tot]));
    }
    parts.sort_by_key(|p| p.0);
    let head = head.expect("a first fragment");
    let hl = usize::from(head[14] & 0x0f) * 4;
    let mut f = head[..14 + hl].to_vec();
    let mut at = 0;
    for (off, data) in parts {
        assert_eq!(off, at, "fragments must be contiguous");
        f.extend_from_slice(data);
        at += data.len();
    }
    f[16..18].copy_from_slice(&((hl + at) as u16).to_be_bytes());
    f[20..22].copy_from_slice(&0u16.to_be_bytes());
    ip_csum(&mut f[14..14 + hl]);
    f
}

/// An ICMP error (type, code; `mtu` in the last two header bytes, for
/// fragmentation needed) from `src` to `dst`, quoting the first
/// `quote` bytes of the IPv4 packet of `about` (a whole frame).
pub fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    kind: (u8, u8),
    mtu: u16,
    about: &[u8],
    quote: usize,
) -> Vec<u8> {
    let q = &about[14..14 + quote.min(about.len() - 14)];
    let mut icmp = vec![kind.0, kind.1, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(q);
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0xc0];
    ip.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0x56, 0x78, 0, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip_csum(&mut ip);
    let mut f = Vec::new();
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// The frame with another IPv4 ID (header checksum recomputed).
pub fn with_ip_id(mut f: Vec<u8>, id: u16) -> Vec<u8> {
    let hl = usize::from(f[14] & 0x0f) * 4;
    f[18..20].copy_from_slice(&id.to_be_bytes());
    ip_csum(&mut f[14..14 + hl]);
    f
}

/// The same frame with other Ethernet addresses.
pub fn with_macs(mut f: Vec<u8>, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

pub const FRAG_NEEDED: (u8, u8) = (3, 4);
pub const PORT_UNREACH: (u8, u8) = (3, 3);
pub const TTL_EXCEEDED: (u8, u8) = (11, 0);

/// Runs `frame` through `prog` (XDP on ingress `xdp_ingress`, `None`: lo),
/// asserting the verdict `rc` and that `reason` counted it once.
pub fn step_via(
    env: &Env,
    prog: Prog,
    frame: &[u8],
    rc: u32,
    reason: u32,
    xdp_ingress: Option<u32>,
) -> Vec<u8> {
    let before = env.reasons();
    let (got, out) = match prog {
        Prog::Xdp => env.xdp_in(frame, xdp_ingress),
        Prog::Tc => env.tc(frame),
    };
    let after = env.reasons();
    assert_eq!(
        got,
        rc,
        "verdict; reasons moved: {:?}",
        moved(&before, &after)
    );
    let r = reason as usize;
    assert_eq!(
        after[r] - before[r],
        1,
        "reason {} must count the frame; moved: {:?}",
        reason_name(r),
        moved(&before, &after)
    );
    out
}

/// A private data plane with the packet tests' fixture.
pub fn fresh() -> Option<Env> {
    let env = Env::new()?;
    fixture(&env);
    Some(env)
}
