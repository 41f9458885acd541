//! Frame builders: Ethernet / IPv4 (options, fragment fields) / TCP or UDP
//! with valid checksums, VXLAN encapsulation, and a few non-IPv4 frames, on a
//! fixed underlay addressing plan (node, peer, client).
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::csum::{checksum, finish, sum16};

pub const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Another node, with a permanent neighbour entry.
pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// A node on the underlay without neighbour entry.
pub const NONEIGH: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0xc6, 0x12, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0xc6, 0x12, 0, 0x02];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0xc6, 0x12, 0, 0x64];
pub const VTEP_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x02];
pub const VXLAN_PORT: u16 = 8472;
pub const VNI: u32 = 1;
pub const MTU: u16 = 1500;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

pub fn sa(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

/// A frame to build: Ethernet / IPv4 (options, fragment fields) / TCP or UDP.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub proto: u8,
    pub options: Vec<u8>,
    pub ttl: u8,
    pub df: bool,
    pub mf: bool,
    pub frag_off: u16,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: Vec<u8>,
    /// UDP: send checksum 0 (none).
    pub udp_no_csum: bool,
}

impl Frame {
    pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        Frame {
            src_mac: CLIENT_MAC,
            dst_mac: NODE_MAC,
            src,
            dst,
            proto: TCP,
            options: vec![],
            ttl: 64,
            df: true,
            mf: false,
            frag_off: 0,
            tcp_flags: 0x02,
            seq: 1000,
            ack: 0,
            payload: vec![],
            udp_no_csum: false,
        }
    }

    pub fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        Frame {
            proto: UDP,
            payload: b"xlb-udp-payload".to_vec(),
            ..Frame::tcp(src, dst)
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

    /// Serialises with valid IPv4 and L4 checksums.
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.src.port().to_be_bytes());
        l4.extend_from_slice(&self.dst.port().to_be_bytes());
        if self.proto == TCP {
            l4.extend_from_slice(&self.seq.to_be_bytes());
            l4.extend_from_slice(&self.ack.to_be_bytes());
            l4.push(5 << 4);
            l4.push(self.tcp_flags);
            l4.extend_from_slice(&64240u16.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0]); // csum, urg
        } else {
            l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(&self.payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&self.src.ip().octets());
        pseudo.extend_from_slice(&self.dst.ip().octets());
        pseudo.extend_from_slice(&[0, self.proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        let csum = finish(sum16(&pseudo) + sum16(&l4));
        let at = if self.proto == TCP { 16 } else { 6 };
        let csum = if self.proto == UDP && self.udp_no_csum {
            0
        } else if self.proto == UDP && csum == 0 {
            0xffff
        } else {
            csum
        };
        l4[at..at + 2].copy_from_slice(&csum.to_be_bytes());

        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let hl = 20 + opts.len();
        let mut ip = vec![0u8; 20];
        ip[0] = 0x40 | (hl / 4) as u8;
        ip[2..4].copy_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        let frag = (u16::from(self.df) << 14) | (u16::from(self.mf) << 13) | self.frag_off;
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[8] = self.ttl;
        ip[9] = self.proto;
        ip[12..16].copy_from_slice(&self.src.ip().octets());
        ip[16..20].copy_from_slice(&self.dst.ip().octets());
        ip.extend_from_slice(&opts);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());

        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f
    }
}

/// Wraps `inner` (a whole Ethernet frame) in Ethernet/IPv4/UDP/VXLAN from
/// `src` to `dst` (outer UDP checksum 0, as Linux and flannel send it).
pub fn vxlan(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, vni: u32, marked: bool) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let tot = 20 + 8 + 8 + inner.len();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(tot as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, UDP, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&51000u16.to_be_bytes());
    f.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    f.extend_from_slice(&((8 + 8 + inner.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[0x08, 0, 0, u8::from(marked)]);
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(inner);
    f
}

pub fn arp_frame() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&CLIENT.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&NODE.octets());
    f
}

pub fn ipv6_frame() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    let payload = [0u8; 8];
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[UDP, 64]);
    f.extend_from_slice(&[0xfd; 16]);
    f.extend_from_slice(&[0xfe; 16]);
    f.extend_from_slice(&payload);
    f
}

pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'];
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}
