//! Independent checks of output frames: IPv4 (and its L4) parsed with
//! etherparse and every checksum recomputed, Ethernet + IPv4, VXLAN, and
//! the expected frame after DNAT.

use super::*;

// --- independent checks ---------------------------------------------------

/// An IPv4 packet (starting at the IP header) parsed and checked with
/// etherparse: header checksum, lengths, L4 checksum. Returns its parts.
pub struct Parsed {
    pub ip: Ipv4Header,
    pub l4: Vec<u8>,
}

impl Parsed {
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.l4[0], self.l4[1]])
    }
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.l4[2], self.l4[3]])
    }
    pub fn src(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip.source.into(), self.src_port())
    }
    pub fn dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip.destination.into(), self.dst_port())
    }
    pub fn l4_csum(&self) -> u16 {
        let at = if self.ip.protocol.0 == TCP { 16 } else { 6 };
        u16::from_be_bytes([self.l4[at], self.l4[at + 1]])
    }
}

/// Parses `b` as IPv4 and verifies every checksum it carries; panics with
/// `what` on any inconsistency. First fragments skip the L4 check (the
/// checksum covers data that is not here).
pub fn check_ipv4(b: &[u8], what: &str) -> Parsed {
    let (ip, rest) = Ipv4Header::from_slice(b).unwrap_or_else(|e| panic!("{what}: ipv4: {e}"));
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "{what}: IPv4 header checksum"
    );
    let l4_len = usize::from(ip.total_len) - ip.header_len();
    assert!(rest.len() >= l4_len, "{what}: total_len beyond the frame");
    let l4 = rest[..l4_len].to_vec();
    let p = Parsed { ip, l4 };
    if p.ip.more_fragments || p.ip.fragment_offset.value() != 0 {
        return p;
    }
    match p.ip.protocol.0 {
        TCP => {
            let (th, payload) =
                TcpHeader::from_slice(&p.l4).unwrap_or_else(|e| panic!("{what}: tcp: {e}"));
            let want = th.calc_checksum_ipv4(&p.ip, payload).unwrap();
            assert_eq!(th.checksum, want, "{what}: TCP checksum");
        }
        UDP => {
            let (uh, payload) =
                UdpHeader::from_slice(&p.l4).unwrap_or_else(|e| panic!("{what}: udp: {e}"));
            assert_eq!(usize::from(uh.length), p.l4.len(), "{what}: UDP length");
            if uh.checksum != 0 {
                let want = uh.calc_checksum_ipv4(&p.ip, payload).unwrap();
                assert_eq!(uh.checksum, want, "{what}: UDP checksum");
            }
        }
        1 => {
            assert_eq!(
                xlb_testkit::csum::checksum(&p.l4),
                0,
                "{what}: ICMP checksum"
            );
        }
        _ => {}
    }
    p
}

/// An Ethernet frame carrying IPv4: (dst mac, src mac, parsed IPv4).
pub fn check_eth_ipv4(f: &[u8], what: &str) -> ([u8; 6], [u8; 6], Parsed) {
    assert!(f.len() >= 14, "{what}: short frame");
    assert_eq!(&f[12..14], &[0x08, 0x00], "{what}: ethertype");
    let dst: [u8; 6] = f[..6].try_into().unwrap();
    let src: [u8; 6] = f[6..12].try_into().unwrap();
    (dst, src, check_ipv4(&f[14..], what))
}

/// A VXLAN frame: checks outer headers and returns (outer eth dst, outer eth src,
/// outer ip, outer udp source port, vxlan flags word, vni, the frontend
/// trailer when the flags carry XLB_VXLAN_F_FE, inner frame).
pub struct Vxlan {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub ip: Ipv4Header,
    pub sport: u16,
    pub flags: u32,
    pub vni: u32,
    pub fe: Option<SocketAddrV4>,
    pub inner: Vec<u8>,
}

pub fn check_vxlan(f: &[u8], what: &str) -> Vxlan {
    let (dst_mac, src_mac, p) = check_eth_ipv4(f, what);
    assert_eq!(p.ip.protocol.0, UDP, "{what}: outer proto");
    assert_eq!(p.ip.header_len(), 20, "{what}: outer ihl");
    assert_eq!(
        usize::from(p.ip.total_len) + 14,
        f.len(),
        "{what}: outer length"
    );
    let udp = &p.l4;
    assert_eq!(p.dst_port(), VXLAN_PORT, "{what}: vxlan port");
    assert_eq!(&udp[6..8], &[0, 0], "{what}: outer UDP checksum 0");
    let flags = u32::from_be_bytes(udp[8..12].try_into().unwrap());
    let vni = u32::from_be_bytes(udp[12..16].try_into().unwrap()) >> 8;
    let (fe, inner_at) = if flags & 0x0000_0002 != 0 {
        assert!(udp.len() >= 24, "{what}: frontend trailer");
        let a: [u8; 4] = udp[16..20].try_into().unwrap();
        let port = u16::from_be_bytes([udp[20], udp[21]]);
        assert_eq!(&udp[22..24], &[0, 0], "{what}: trailer padding");
        (Some(SocketAddrV4::new(a.into(), port)), 24)
    } else {
        (None, 16)
    };
    Vxlan {
        dst_mac,
        src_mac,
        sport: p.src_port(),
        ip: p.ip,
        flags,
        vni,
        fe,
        inner: udp[inner_at..].to_vec(),
    }
}

/// `f` as it must leave after DNAT to `to`: destination rewritten, checksums
/// right, the same bytes otherwise.
pub fn dnat(f: &Frame, to: &str) -> Vec<u8> {
    Frame {
        dst: sa(to),
        ..f.clone()
    }
    .build()
}

/// `out` is `f` after DNAT to `to`, byte for byte.
pub fn assert_dnat(f: Frame, to: &str, out: &[u8]) {
    check_eth_ipv4(out, "dnat");
    assert_eq!(out, dnat(&f, to).as_slice(), "DNAT output bytes");
}
