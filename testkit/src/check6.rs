//! Independent checks of IPv6 frames a program emits: the IPv6 header and its
//! payload length, the extension header chain, the TCP/UDP/ICMPv6 checksum
//! over the IPv6 pseudo header, UDP checksum never 0 (RFC 8200 8.1), and,
//! for VXLAN, the inner frame. Written apart from the builders (`frame6`)
//! and from the data plane.
use std::net::Ipv6Addr;

use crate::csum::{pseudo_sum6, sum16, verifies};
use crate::frame::{TCP, UDP, VXLAN_PORT};
use crate::frame6::{ETH_P_IPV6, ICMP6, NH_DEST, NH_FRAGMENT, NH_HOP, NH_ROUTING};

/// What a well-formed Ethernet/IPv6 frame holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The upper-layer protocol after the extension headers.
    pub proto: u8,
    /// Offset of the upper-layer header in the frame.
    pub l4_off: usize,
    /// Fragment header: (offset in 8-octet units, more fragments, id).
    pub frag: Option<(u16, bool, u32)>,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Parses Ethernet/IPv6 and its extension headers at `f[at..]` (`at` is the
/// IPv6 header; 14 for a plain frame). The payload length must match the
/// bytes present exactly.
pub fn parse6_at(f: &[u8], at: usize) -> Result<Parsed6, String> {
    if f.len() < at + 40 {
        return Err(format!("{} bytes: no IPv6 header at {at}", f.len()));
    }
    let ip = &f[at..];
    if ip[0] >> 4 != 6 {
        return Err(format!("IP version {}", ip[0] >> 4));
    }
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if plen + 40 != ip.len() {
        return Err(format!(
            "payload length {plen}, {} bytes follow the header",
            ip.len() - 40
        ));
    }
    let mut nh = ip[6];
    let mut off = 40;
    let mut frag = None;
    for _ in 0..16 {
        match nh {
            NH_HOP | NH_ROUTING | NH_DEST => {
                if off + 8 > ip.len() {
                    return Err(format!("extension header {nh} truncated"));
                }
                let len = 8 + 8 * usize::from(ip[off + 1]);
                if off + len > ip.len() {
                    return Err(format!("extension header {nh} of {len} bytes truncated"));
                }
                nh = ip[off];
                off += len;
            }
            NH_FRAGMENT => {
                if off + 8 > ip.len() {
                    return Err("fragment header truncated".into());
                }
                let w = u16::from_be_bytes([ip[off + 2], ip[off + 3]]);
                let id = u32::from_be_bytes([ip[off + 4], ip[off + 5], ip[off + 6], ip[off + 7]]);
                frag = Some((w >> 3, w & 1 == 1, id));
                nh = ip[off];
                off += 8;
            }
            _ => break,
        }
    }
    Ok(Parsed6 {
        src: addr(&ip[8..]),
        dst: addr(&ip[24..]),
        hop_limit: ip[7],
        proto: nh,
        l4_off: at + off,
        frag,
    })
}

/// Parses an Ethernet/IPv6 frame (see `parse6_at`).
pub fn parse6(f: &[u8]) -> Result<Parsed6, String> {
    if f.len() < 14 || u16::from_be_bytes([f[12], f[13]]) != ETH_P_IPV6 {
        return Err("not an Ethernet/IPv6 frame".into());
    }
    parse6_at(f, 14)
}

/// Checks the upper-layer checksum of a whole (unfragmented) datagram `l4`.
pub fn check_l4_6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> Result<(), String> {
    let (min, at) = match proto {
        TCP => (20, 16),
        UDP => (8, 6),
        ICMP6 => (4, 2),
        _ => return Ok(()),
    };
    if l4.len() < min {
        return Err(format!("protocol {proto}: {} bytes", l4.len()));
    }
    if proto == UDP {
        let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
        if ulen != l4.len() {
            return Err(format!("UDP length {ulen} for {} bytes", l4.len()));
        }
        if l4[at] == 0 && l4[at + 1] == 0 {
            return Err("UDP/IPv6 checksum 0".into());
        }
    }
    let s = pseudo_sum6(src.octets(), dst.octets(), proto, l4.len()) + sum16(l4);
    if !verifies(s) {
        return Err(format!(
            "protocol {proto}: bad checksum {:02x}{:02x}",
            l4[at],
            l4[at + 1]
        ));
    }
    Ok(())
}

/// Checks an emitted Ethernet/IPv6 frame: header, chain, upper-layer
/// checksum (fragments: only the first one's header is present, so only
/// its length is checked) and a VXLAN frame's inner IPv6 frame.
pub fn check_frame6(f: &[u8]) -> Result<Parsed6, String> {
    let p = parse6(f)?;
    let l4 = &f[p.l4_off..];
    if let Some((off, more, _)) = p.frag {
        if off != 0 || more {
            return Ok(p);
        }
    }
    check_l4_6(p.src, p.dst, p.proto, l4)?;
    if p.proto == UDP && u16::from_be_bytes([l4[2], l4[3]]) == VXLAN_PORT && l4.len() >= 16 + 14 {
        let inner = &l4[16..];
        if u16::from_be_bytes([inner[12], inner[13]]) == ETH_P_IPV6 {
            check_frame6(inner).map_err(|e| format!("inner frame: {e}"))?;
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame6::*;

    #[test]
    fn builders_verify_and_breakage_is_seen() {
        let f = Frame6::tcp(sa6("[2001:db8::64]:40000"), sa6("[fd00::10]:80")).build();
        let p = check_frame6(&f).unwrap();
        assert_eq!(p.proto, TCP);
        assert_eq!(p.l4_off, 54);
        let mut bad = f.clone();
        bad[60] ^= 1;
        assert!(check_frame6(&bad).is_err());
        let u = Frame6::udp(sa6("[2001:db8::64]:40000"), sa6("[fd00::10]:53"));
        check_frame6(&u.build()).unwrap();
        let mut z = u.clone();
        z.udp_csum = UdpCsum::Zero;
        assert!(check_frame6(&z.build()).unwrap_err().contains("checksum 0"));
    }

    #[test]
    fn extension_chain_and_fragments() {
        let u = Frame6::udp(sa6("[2001:db8::64]:40000"), sa6("[fd00::10]:53"))
            .ext(vec![Ext::HopByHop(0), Ext::Routing(4, 2), Ext::DestOpts(1)])
            .payload(&[7u8; 100]);
        let p = check_frame6(&u.build()).unwrap();
        assert_eq!(p.l4_off, 14 + 40 + 8 + 24 + 16);
        assert_eq!(p.proto, UDP);
        let (a, b) = u.fragments(64, 7);
        let pa = parse6(&a).unwrap();
        let pb = parse6(&b).unwrap();
        assert_eq!(pa.frag, Some((0, true, 7)));
        assert_eq!(pb.frag, Some((8, false, 7)));
        let mut whole = a[pa.l4_off..].to_vec();
        whole.extend_from_slice(&b[pb.l4_off..]);
        check_l4_6(pa.src, pa.dst, UDP, &whole).unwrap();
    }

    #[test]
    fn icmp6_and_vxlan6() {
        let e = icmp6_echo(CLIENT6, NODE6);
        assert_eq!(check_frame6(&e).unwrap().proto, ICMP6);
        let ns = neighbour_solicitation(CLIENT6, NODE6);
        check_frame6(&ns).unwrap();
        let inner = Frame6::tcp(sa6("[fd00:1::5]:40000"), sa6("[fd00::10]:80")).build();
        let ptb = icmp6_error(NODE6, CLIENT6, 2, 0, 1280, &inner, 1232);
        check_frame6(&ptb).unwrap();
        let v = vxlan6(&inner, PEER6, NODE6, 1, false, false);
        check_frame6(&v).unwrap();
        let mut bad = v.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x10;
        assert!(check_frame6(&bad).unwrap_err().contains("checksum"));
    }
}
