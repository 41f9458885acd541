//! Typed constructors and accessors for the shared structs: the one place where
//! host order becomes network order and back.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::consts::*;
use crate::types::*;

/// Address stored as `__be32`: the octets in memory order.
pub fn be32(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// Inverse of [`be32`].
pub fn ip(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(be.to_ne_bytes())
}

/// Port stored as `__be16`.
pub fn be16(port: u16) -> u16 {
    port.to_be()
}

/// Inverse of [`be16`].
pub fn port(be: u16) -> u16 {
    u16::from_be(be)
}

/// L4 protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => libc::IPPROTO_TCP as u8,
            Proto::Udp => libc::IPPROTO_UDP as u8,
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        match n as i32 {
            libc::IPPROTO_TCP => Some(Proto::Tcp),
            libc::IPPROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Jenkins lookup3 final mix of three words: lb.h's `xlb_hash3`.
pub fn hash3(a: u32, b: u32, c: u32, init: u32) -> u32 {
    let init = 0xdead_beef_u32.wrapping_add(init);
    let (mut a, mut b, mut c) = (
        a.wrapping_add(init),
        b.wrapping_add(init),
        c.wrapping_add(init),
    );
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

/// The IPv6 flow hash (hash6.h `xlb_flow_hash6`): each address (16 bytes,
/// four words as stored) folds to `hash3` of its words, then the two folds,
/// the ports (network order as stored) and the protocol mix as in the IPv4
/// hash; with session affinity the source port is left out.
pub fn flow_hash6(
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    no_sport: bool,
) -> u32 {
    let fold = |a: [u8; 16]| {
        let w = |i: usize| u32::from_ne_bytes(a[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        hash3(w(0), w(1), w(2), w(3))
    };
    let sport = if no_sport {
        0
    } else {
        u32::from(sport.to_be())
    };
    let ports = (sport << 16) | u32::from(dport.to_be());
    hash3(fold(saddr), fold(daddr), ports, u32::from(proto))
}

/// The `fe_filter` slot of a services key: lb.h's `xlb_fe_slot` (the key's
/// two 32-bit words as stored in memory).
pub fn fe_slot(k: &crate::types::xlb_svc_key) -> u32 {
    // SAFETY: xlb_svc_key is Plain (8 bytes of integers).
    let b = unsafe { plain::as_bytes(k) };
    let w0 = u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes"));
    let w1 = u32::from_ne_bytes(b[4..8].try_into().expect("4 bytes"));
    hash3(w0, w1, 0, 0) & (crate::consts::XLB_FE_FILTER_SLOTS - 1)
}

/// The `be_filter` slot of a backend address (as stored, network order):
/// lb.h's `xlb_be_maybe`.
pub fn be_slot(addr: u32) -> u32 {
    hash3(addr, 0, 0, 1) & (crate::consts::XLB_BE_FILTER_SLOTS - 1)
}

/// Name of an IP protocol number, for tables.
pub fn proto_name(n: u8) -> String {
    match Proto::from_number(n) {
        Some(p) => p.name().to_string(),
        None if n == libc::IPPROTO_ICMP as u8 => "ICMP".into(),
        None => n.to_string(),
    }
}

/// What a frontend was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalIp,
}

impl Kind {
    pub fn fe_type(self) -> u8 {
        (match self {
            Kind::ClusterIp => XLB_FE_CLUSTERIP,
            Kind::NodePort => XLB_FE_NODEPORT,
            Kind::LoadBalancer => XLB_FE_LOADBALANCER,
            Kind::ExternalIp => XLB_FE_EXTERNALIP,
        }) as u8
    }

    pub fn from_fe_type(t: u8) -> Option<Self> {
        [
            Kind::ClusterIp,
            Kind::NodePort,
            Kind::LoadBalancer,
            Kind::ExternalIp,
        ]
        .into_iter()
        .find(|k| k.fe_type() == t)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::ClusterIp => "ClusterIP",
            Kind::NodePort => "NodePort",
            Kind::LoadBalancer => "LoadBalancer",
            Kind::ExternalIp => "ExternalIP",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A data-plane reason counter (`enum xlb_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reason(pub u32);

impl Reason {
    /// Every reason the data plane knows, in order.
    pub fn all() -> impl Iterator<Item = Reason> {
        REASONS.iter().map(|(v, _)| Reason(*v))
    }

    /// Short name: `XLB_R_DROP_NO_BACKEND` -> `drop_no_backend`.
    pub fn name(self) -> String {
        REASONS
            .iter()
            .find(|(v, _)| *v == self.0)
            .map(|(_, n)| n.trim_start_matches("XLB_R_").to_ascii_lowercase())
            .unwrap_or_else(|| format!("reason_{}", self.0))
    }

    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::all().find(|r| r.name() == name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl xlb_svc_key {
    /// A frontend matched by address (ClusterIP, LoadBalancer ingress, ExternalIP).
    pub fn addr(addr: SocketAddrV4, proto: Proto) -> Self {
        Self {
            addr: be32(*addr.ip()),
            port: be16(addr.port()),
            proto: proto.number(),
            kind: XLB_KIND_ADDR as u8,
        }
    }

    /// A NodePort frontend (any address in `local_addrs`).
    pub fn nodeport(port: u16, proto: Proto) -> Self {
        Self {
            addr: 0,
            port: be16(port),
            proto: proto.number(),
            kind: XLB_KIND_NODEPORT as u8,
        }
    }

    pub fn ip(&self) -> Ipv4Addr {
        ip(self.addr)
    }

    pub fn port(&self) -> u16 {
        port(self.port)
    }

    pub fn proto(&self) -> Option<Proto> {
        Proto::from_number(self.proto)
    }

    pub fn is_nodeport(&self) -> bool {
        self.kind as u32 & !XLB_KIND_F_INTERNAL == XLB_KIND_NODEPORT
    }

    /// The same frontend's entry for clients inside the cluster (see
    /// `XLB_SVC_F_EXT_LOCAL`).
    pub fn internal(mut self) -> Self {
        self.kind |= XLB_KIND_F_INTERNAL as u8;
        self
    }

    /// Whether this is an entry for clients inside the cluster.
    pub fn is_internal(&self) -> bool {
        self.kind as u32 & XLB_KIND_F_INTERNAL != 0
    }
}

impl xlb_svc_val {
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_fe_type(self.fe_type)
    }
}

impl xlb_backend {
    /// A live backend; `node` is `None` for this node.
    pub fn new(addr: SocketAddrV4, node: Option<Ipv4Addr>, generation: u32) -> Self {
        Self {
            addr: be32(*addr.ip()),
            port: be16(addr.port()),
            flags: XLB_BE_F_ACTIVE as u8,
            pad: 0,
            node: node.map(be32).unwrap_or(0),
            generation,
        }
    }

    pub fn sockaddr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip(self.addr), port(self.port))
    }

    pub fn node(&self) -> Option<Ipv4Addr> {
        (self.node != 0).then(|| ip(self.node))
    }

    pub fn is_active(&self) -> bool {
        self.flags as u32 & XLB_BE_F_ACTIVE != 0
    }
}

impl xlb_ct_key {
    pub fn new(src: SocketAddrV4, dst: SocketAddrV4, proto: u8) -> Self {
        Self {
            saddr: be32(*src.ip()),
            daddr: be32(*dst.ip()),
            sport: be16(src.port()),
            dport: be16(dst.port()),
            proto,
            pad: [0; 3],
        }
    }

    pub fn src(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip(self.saddr), port(self.sport))
    }

    pub fn dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip(self.daddr), port(self.dport))
    }
}

impl xlb_ct_val {
    pub fn is_reverse(&self) -> bool {
        self.flags & XLB_CT_F_REVERSE != 0
    }

    pub fn nat(&self) -> SocketAddrV4 {
        SocketAddrV4::new(ip(self.nat_addr), port(self.nat_port))
    }

    pub fn tunnel_peer(&self) -> Option<Ipv4Addr> {
        (self.tunnel_peer != 0).then(|| ip(self.tunnel_peer))
    }
}

impl xlb_affinity_key {
    pub fn new(svc_id: u32, client: Ipv4Addr) -> Self {
        Self {
            svc_id,
            client: be32(client),
        }
    }

    pub fn client(&self) -> Ipv4Addr {
        ip(self.client)
    }
}

impl xlb_src_range_key {
    pub fn new(svc_id: u32, net: Ipv4Addr, prefix: u8) -> Self {
        Self {
            prefixlen: 32 + u32::from(prefix.min(32)),
            svc_id: svc_id.to_be(),
            addr: be32(net),
        }
    }

    pub fn svc_id(&self) -> u32 {
        u32::from_be(self.svc_id)
    }

    pub fn net(&self) -> (Ipv4Addr, u8) {
        (ip(self.addr), self.prefixlen.saturating_sub(32) as u8)
    }
}

impl xlb_tunnel_key {
    pub fn new(net: Ipv4Addr, prefix: u8) -> Self {
        Self {
            prefixlen: u32::from(prefix.min(32)),
            addr: be32(net),
        }
    }

    pub fn net(&self) -> (Ipv4Addr, u8) {
        (ip(self.addr), self.prefixlen as u8)
    }
}

impl xlb_tunnel_val {
    pub fn new(node: Ipv4Addr, vtep_mac: [u8; 6]) -> Self {
        Self {
            node: be32(node),
            vtep_mac,
            pad: [0; 2],
        }
    }

    pub fn node(&self) -> Ipv4Addr {
        ip(self.node)
    }
}

impl xlb_config {
    pub fn node_addr(&self) -> Ipv4Addr {
        ip(self.node_addr)
    }

    pub fn vxlan_port(&self) -> u16 {
        port(self.vxlan_port)
    }
}

/// `aa:bb:cc:dd:ee:ff`
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_round_trips() {
        let k = xlb_svc_key::addr("10.96.0.10:53".parse().unwrap(), Proto::Udp);
        assert_eq!(k.ip(), Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(k.port(), 53);
        let bytes = unsafe { plain::as_bytes(&k) };
        assert_eq!(&bytes[..6], &[10, 96, 0, 10, 0, 53]);
        let r = xlb_src_range_key::new(7, Ipv4Addr::new(192, 0, 2, 0), 24);
        assert_eq!(r.svc_id(), 7);
        assert_eq!(r.net(), (Ipv4Addr::new(192, 0, 2, 0), 24));
        let rb = unsafe { plain::as_bytes(&r) };
        assert_eq!(&rb[4..8], &[0, 0, 0, 7]);
    }

    #[test]
    fn macs_parse_and_print() {
        let m = parse_mac("02:00:c6:12:00:0a").unwrap();
        assert_eq!(mac_string(&m), "02:00:c6:12:00:0a");
        assert!(parse_mac("02:00").is_none());
        assert!(parse_mac("02:00:c6:12:00:0a:01").is_none());
        assert!(parse_mac("zz:00:c6:12:00:0a").is_none());
    }

    #[test]
    fn reason_names() {
        assert_eq!(Reason(XLB_R_DROP_NO_BACKEND).name(), "drop_no_backend");
        assert_eq!(
            Reason::from_name("pass_not_ip"),
            Some(Reason(XLB_R_PASS_NOT_IP))
        );
    }
}
