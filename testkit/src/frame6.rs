//! IPv6 frame builders: Ethernet / IPv6 (extension headers: hop-by-hop,
//! routing, destination options, fragment) / TCP, UDP or ICMPv6 with valid
//! checksums (RFC 8200 pseudo header), VXLAN over IPv6, neighbour discovery
//! and ICMPv6 errors quoting a frame, on a fixed IPv6 underlay addressing
//! plan. Checks of emitted frames are in `check6`.
use std::net::{Ipv6Addr, SocketAddrV6};

use crate::csum::{finish, pseudo_sum6, sum16};
use crate::frame::{CLIENT_MAC, NODE_MAC, PEER_MAC, TCP, UDP, VXLAN_PORT};

pub const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 1);
/// Another node, with a permanent neighbour entry.
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 2);
/// A node on the underlay without neighbour entry.
pub const NONEIGH6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 3);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 0x64);

pub const ICMP6: u8 = 58;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const NH_HOP: u8 = 0;
pub const NH_ROUTING: u8 = 43;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_DEST: u8 = 60;
pub const NH_NONE: u8 = 59;

pub fn sa6(s: &str) -> SocketAddrV6 {
    s.parse().unwrap()
}

/// An IPv6 extension header, serialised with its Next Header filled in.
#[derive(Clone, Debug)]
pub enum Ext {
    /// Hop-by-hop options: `units` 8-octet units after the first 8 (PadN).
    HopByHop(u8),
    /// Destination options, as HopByHop.
    DestOpts(u8),
    /// Routing header of `rtype` with segments left 0 and `units` extra units.
    Routing(u8, u8),
    /// Fragment header: offset in 8-octet units, more fragments, id.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext {
    pub fn code(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => NH_HOP,
            Ext::DestOpts(_) => NH_DEST,
            Ext::Routing(..) => NH_ROUTING,
            Ext::Fragment { .. } => NH_FRAGMENT,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        match *self {
            Ext::HopByHop(units) | Ext::DestOpts(units) => {
                let len = 8 + 8 * usize::from(units);
                let mut b = vec![next, units, 1, (len - 4) as u8];
                b.resize(len, 0);
                b
            }
            Ext::Routing(rtype, units) => {
                let mut b = vec![next, units, rtype, 0];
                b.resize(8 + 8 * usize::from(units), 0);
                b
            }
            Ext::Fragment { offset, more, id } => {
                let mut b = vec![next, 0];
                b.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
                b.extend_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

/// Serialises the extension headers `ext` followed by upper-layer `last`.
pub fn ext_chain(ext: &[Ext], last: u8) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, e) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(last, Ext::code);
        out.extend_from_slice(&e.bytes(next));
    }
    (ext.first().map_or(last, Ext::code), out)
}

/// Ethernet + IPv6 header (+ extension bytes) around `payload`; `nh` is the
/// IPv6 header's Next Header.
pub fn ipv6_packet(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    nh: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (src_mac, dst_mac) = macs;
    let mut f = Vec::with_capacity(54 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[nh, hop_limit]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(payload);
    f
}

/// The checksum of upper-layer data `l4` (its checksum field zero) in an
/// IPv6 pseudo header (RFC 8200 8.1).
pub fn l4_csum6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> u16 {
    finish(pseudo_sum6(src.octets(), dst.octets(), proto, l4.len()) + sum16(l4))
}

/// How a UDP/IPv6 datagram's checksum is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpCsum {
    /// Computed (0 sent as 0xffff).
    Valid,
    /// 0: invalid over IPv6 (RFC 8200 8.1) but seen in the wild.
    Zero,
}

/// A frame to build: Ethernet / IPv6 (extension headers) / TCP or UDP.
#[derive(Clone, Debug)]
pub struct Frame6 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddrV6,
    pub dst: SocketAddrV6,
    pub proto: u8,
    pub ext: Vec<Ext>,
    pub hop_limit: u8,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload: Vec<u8>,
    pub udp_csum: UdpCsum,
}

impl Frame6 {
    pub fn tcp(src: SocketAddrV6, dst: SocketAddrV6) -> Self {
        Frame6 {
            src_mac: CLIENT_MAC,
            dst_mac: NODE_MAC,
            src,
            dst,
            proto: TCP,
            ext: vec![],
            hop_limit: 64,
            tcp_flags: 0x02,
            seq: 1000,
            ack: 0,
            window: 64240,
            payload: vec![],
            udp_csum: UdpCsum::Valid,
        }
    }

    pub fn udp(src: SocketAddrV6, dst: SocketAddrV6) -> Self {
        Frame6 {
            proto: UDP,
            payload: b"xlb-udp6-payload".to_vec(),
            ..Frame6::tcp(src, dst)
        }
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn ext(mut self, ext: Vec<Ext>) -> Self {
        self.ext = ext;
        self
    }

    /// The whole upper-layer datagram (TCP or UDP header and payload) with
    /// its checksum.
    pub fn l4(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.src.port().to_be_bytes());
        l4.extend_from_slice(&self.dst.port().to_be_bytes());
        if self.proto == TCP {
            l4.extend_from_slice(&self.seq.to_be_bytes());
            l4.extend_from_slice(&self.ack.to_be_bytes());
            l4.push(5 << 4);
            l4.push(self.tcp_flags);
            l4.extend_from_slice(&self.window.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(&self.payload);
        let c = l4_csum6(*self.src.ip(), *self.dst.ip(), self.proto, &l4);
        let c = match (self.proto, self.udp_csum, c) {
            (UDP, UdpCsum::Zero, _) => 0,
            (UDP, UdpCsum::Valid, 0) => 0xffff,
            (_, _, c) => c,
        };
        let at = if self.proto == TCP { 16 } else { 6 };
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        l4
    }

    /// Serialises the frame with its extension headers and the whole datagram.
    pub fn build(&self) -> Vec<u8> {
        self.build_with(&self.l4())
    }

    /// Serialises the frame with `body` after the extension headers.
    pub fn build_with(&self, body: &[u8]) -> Vec<u8> {
        let (nh, mut p) = ext_chain(&self.ext, self.proto);
        p.extend_from_slice(body);
        ipv6_packet(
            (self.src_mac, self.dst_mac),
            *self.src.ip(),
            *self.dst.ip(),
            nh,
            self.hop_limit,
            &p,
        )
    }

    /// The datagram in two fragments (RFC 8200 4.5): the first carries
    /// `first_len` bytes of it (a multiple of 8), the second the rest.
    /// `ext` is kept before each fragment header.
    pub fn fragments(&self, first_len: usize, id: u32) -> (Vec<u8>, Vec<u8>) {
        assert!(first_len.is_multiple_of(8));
        let l4 = self.l4();
        let mut a = self.clone();
        a.ext.push(Ext::Fragment {
            offset: 0,
            more: true,
            id,
        });
        let mut b = self.clone();
        b.ext.push(Ext::Fragment {
            offset: (first_len / 8) as u16,
            more: false,
            id,
        });
        (
            a.build_with(&l4[..first_len]),
            b.build_with(&l4[first_len..]),
        )
    }
}

/// An ICMPv6 message (type, code, rest of header and body) with its checksum.
pub fn icmp6_msg(src: Ipv6Addr, dst: Ipv6Addr, typ: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(rest);
    let c = l4_csum6(src, dst, ICMP6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Ethernet / IPv6 / ICMPv6 frame from the client's MAC to the node's.
pub fn icmp6_frame(src: Ipv6Addr, dst: Ipv6Addr, typ: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let m = icmp6_msg(src, dst, typ, code, rest);
    ipv6_packet((CLIENT_MAC, NODE_MAC), src, dst, ICMP6, 64, &m)
}

/// `f` with its Ethernet source and destination swapped (an answer).
pub fn swap_macs(mut f: Vec<u8>) -> Vec<u8> {
    let (d, s) = (f[0..6].to_vec(), f[6..12].to_vec());
    f[0..6].copy_from_slice(&s);
    f[6..12].copy_from_slice(&d);
    f
}

pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    icmp6_frame(src, dst, 128, 0, &[0, 1, 0, 1, b'p', b'i', b'n', b'g'])
}

/// A neighbour solicitation for `target` (hop limit 255, source link-layer
/// address option), to its solicited-node multicast address.
pub fn neighbour_solicitation(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let dst = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut rest = vec![0u8; 4];
    rest.extend_from_slice(&t);
    rest.extend_from_slice(&[1, 1]);
    rest.extend_from_slice(&CLIENT_MAC);
    let m = icmp6_msg(src, dst, 135, 0, &rest);
    let mut f = ipv6_packet((CLIENT_MAC, NODE_MAC), src, dst, ICMP6, 255, &m);
    f[..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f
}

/// An ICMPv6 error (`typ`, `code`, 4-byte `word`: MTU or pointer) from `src`
/// to `dst` quoting `quoted` (an Ethernet frame; its IPv6 packet is quoted,
/// cut to `max_quote` bytes).
pub fn icmp6_error(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    typ: u8,
    code: u8,
    word: u32,
    quoted: &[u8],
    max_quote: usize,
) -> Vec<u8> {
    let q = &quoted[14..];
    let q = &q[..q.len().min(max_quote)];
    let mut rest = word.to_be_bytes().to_vec();
    rest.extend_from_slice(q);
    icmp6_frame(src, dst, typ, code, &rest)
}

/// Wraps `inner` (a whole Ethernet frame) in Ethernet/IPv6/UDP/VXLAN from
/// `src` to `dst` with a valid outer UDP checksum (`zero_csum`: 0, as
/// RFC 6935 allows for tunnels).
pub fn vxlan6(
    inner: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    vni: u32,
    marked: bool,
    zero_csum: bool,
) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&51000u16.to_be_bytes());
    u.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    u.extend_from_slice(&((8 + 8 + inner.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&[0x08, 0, 0, u8::from(marked)]);
    u.extend_from_slice(&(vni << 8).to_be_bytes());
    u.extend_from_slice(inner);
    if !zero_csum {
        let c = match l4_csum6(src, dst, UDP, &u) {
            0 => 0xffff,
            c => c,
        };
        u[6..8].copy_from_slice(&c.to_be_bytes());
    }
    ipv6_packet((PEER_MAC, NODE_MAC), src, dst, UDP, 64, &u)
}
