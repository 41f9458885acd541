//! Typed constructors and accessors for the IPv6 structs (docs/ipv6.md):
//! the one place where an `Ipv6Addr` becomes the four network-order words
//! of a `__be32 addr[4]` and back.

use std::net::{Ipv6Addr, SocketAddrV6};

use crate::consts::*;
use crate::types::*;
use crate::wire::{be16, port, Proto};

/// Address stored as `__be32[4]` (as `struct in6_addr`'s `s6_addr32`): the
/// octets in memory order.
pub fn be128(addr: Ipv6Addr) -> [u32; 4] {
    let o = addr.octets();
    std::array::from_fn(|i| u32::from_ne_bytes(o[4 * i..4 * i + 4].try_into().expect("4 bytes")))
}

/// Inverse of [`be128`].
pub fn ip6(w: [u32; 4]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    for (i, word) in w.iter().enumerate() {
        o[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Ipv6Addr::from(o)
}

/// `addr` with the bits past `prefix` cleared.
pub fn mask6(addr: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let p = u32::from(prefix.min(128));
    let mask = u128::MAX.checked_shl(128 - p).unwrap_or(0);
    Ipv6Addr::from(u128::from(addr) & mask)
}

impl xlb_svc6_key {
    /// A frontend matched by address (ClusterIP, LoadBalancer ingress, ExternalIP).
    pub fn addr(addr: SocketAddrV6, proto: Proto) -> Self {
        Self {
            addr: be128(*addr.ip()),
            port: be16(addr.port()),
            proto: proto.number(),
            kind: XLB_KIND_ADDR as u8,
        }
    }

    /// A NodePort frontend (any address in `local_addrs6`).
    pub fn nodeport(port: u16, proto: Proto) -> Self {
        Self {
            addr: [0; 4],
            port: be16(port),
            proto: proto.number(),
            kind: XLB_KIND_NODEPORT as u8,
        }
    }

    pub fn ip(&self) -> Ipv6Addr {
        ip6(self.addr)
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

    /// The same frontend's entry for clients inside the cluster.
    pub fn internal(mut self) -> Self {
        self.kind |= XLB_KIND_F_INTERNAL as u8;
        self
    }

    pub fn is_internal(&self) -> bool {
        self.kind as u32 & XLB_KIND_F_INTERNAL != 0
    }
}

impl xlb_backend6 {
    /// A live backend; `node` is `None` for this node.
    pub fn new(addr: SocketAddrV6, node: Option<Ipv6Addr>, generation: u32) -> Self {
        Self {
            addr: be128(*addr.ip()),
            port: be16(addr.port()),
            flags: XLB_BE_F_ACTIVE as u8,
            pad: 0,
            generation,
            node: node.map(be128).unwrap_or([0; 4]),
        }
    }

    pub fn sockaddr(&self) -> SocketAddrV6 {
        SocketAddrV6::new(ip6(self.addr), port(self.port), 0, 0)
    }

    pub fn node(&self) -> Option<Ipv6Addr> {
        (self.node != [0; 4]).then(|| ip6(self.node))
    }

    pub fn is_active(&self) -> bool {
        self.flags as u32 & XLB_BE_F_ACTIVE != 0
    }
}

impl xlb_ct6_key {
    pub fn new(src: SocketAddrV6, dst: SocketAddrV6, proto: u8) -> Self {
        Self {
            saddr: be128(*src.ip()),
            daddr: be128(*dst.ip()),
            sport: be16(src.port()),
            dport: be16(dst.port()),
            proto,
            pad: [0; 3],
        }
    }

    pub fn src(&self) -> SocketAddrV6 {
        SocketAddrV6::new(ip6(self.saddr), port(self.sport), 0, 0)
    }

    pub fn dst(&self) -> SocketAddrV6 {
        SocketAddrV6::new(ip6(self.daddr), port(self.dport), 0, 0)
    }
}

impl xlb_ct6_val {
    pub fn is_reverse(&self) -> bool {
        self.flags & XLB_CT_F_REVERSE != 0
    }

    pub fn nat(&self) -> SocketAddrV6 {
        SocketAddrV6::new(ip6(self.nat_addr), port(self.nat_port), 0, 0)
    }

    pub fn tunnel_peer(&self) -> Option<Ipv6Addr> {
        (self.tunnel_peer != [0; 4]).then(|| ip6(self.tunnel_peer))
    }
}

impl xlb_affinity6_key {
    pub fn new(svc_id: u32, client: Ipv6Addr) -> Self {
        Self {
            svc_id,
            client: be128(client),
        }
    }

    pub fn client(&self) -> Ipv6Addr {
        ip6(self.client)
    }
}

impl xlb_src_range6_key {
    /// `net` is masked to `prefix` (at most 128).
    pub fn new(svc_id: u32, net: Ipv6Addr, prefix: u8) -> Self {
        let prefix = prefix.min(128);
        Self {
            prefixlen: 32 + u32::from(prefix),
            svc_id: svc_id.to_be(),
            addr: be128(mask6(net, prefix)),
        }
    }

    pub fn svc_id(&self) -> u32 {
        u32::from_be(self.svc_id)
    }

    pub fn net(&self) -> (Ipv6Addr, u8) {
        (ip6(self.addr), self.prefixlen.saturating_sub(32) as u8)
    }
}

impl xlb_tunnel6_key {
    /// `net` is masked to `prefix` (at most 128).
    pub fn new(net: Ipv6Addr, prefix: u8) -> Self {
        let prefix = prefix.min(128);
        Self {
            prefixlen: u32::from(prefix),
            addr: be128(mask6(net, prefix)),
        }
    }

    pub fn net(&self) -> (Ipv6Addr, u8) {
        (ip6(self.addr), self.prefixlen as u8)
    }
}

impl xlb_tunnel6_val {
    pub fn new(node: Ipv6Addr, vtep_mac: [u8; 6]) -> Self {
        Self {
            node: be128(node),
            vtep_mac,
            pad: [0; 2],
        }
    }

    pub fn node(&self) -> Ipv6Addr {
        ip6(self.node)
    }
}

impl xlb_addr6 {
    pub fn new(a: Ipv6Addr) -> Self {
        Self { addr: be128(a) }
    }

    pub fn ip(&self) -> Ipv6Addr {
        ip6(self.addr)
    }
}

impl xlb_config6 {
    /// This node's IPv6 underlay address; `None` when unset.
    pub fn node_addr(&self) -> Option<Ipv6Addr> {
        (self.node_addr != [0; 4]).then(|| ip6(self.node_addr))
    }

    pub fn with_node_addr(mut self, a: Option<Ipv6Addr>) -> Self {
        self.node_addr = a.map(be128).unwrap_or([0; 4]);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_byte_order_is_the_wire_order() {
        let a: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
        let w = be128(a);
        // SAFETY: [u32; 4] is plain integers.
        let bytes: [u8; 16] = unsafe { std::mem::transmute(w) };
        assert_eq!(bytes, a.octets());
        assert_eq!(ip6(w), a);

        let k = xlb_svc6_key::addr(SocketAddrV6::new(a, 443, 0, 0), Proto::Tcp);
        let kb = unsafe { plain::as_bytes(&k) };
        assert_eq!(&kb[..16], &a.octets());
        assert_eq!(&kb[16..18], &[1, 187]);
        assert_eq!(k.ip(), a);
        assert_eq!(k.port(), 443);
        assert!(!k.is_nodeport());
        assert!(xlb_svc6_key::nodeport(30080, Proto::Udp).is_nodeport());

        let r = xlb_src_range6_key::new(9, "2001:db8:ff::1".parse().unwrap(), 48);
        assert_eq!(r.svc_id(), 9);
        assert_eq!(r.prefixlen, 80);
        assert_eq!(r.net(), ("2001:db8:ff::".parse().unwrap(), 48));
        let rb = unsafe { plain::as_bytes(&r) };
        assert_eq!(&rb[4..8], &[0, 0, 0, 9]);

        let t = xlb_tunnel6_key::new("fd00:10:244:1::5".parse().unwrap(), 64);
        assert_eq!(t.net(), ("fd00:10:244:1::".parse().unwrap(), 64));

        let b = xlb_backend6::new(SocketAddrV6::new(a, 8080, 0, 0), None, 3);
        assert!(b.is_active());
        assert_eq!(b.node(), None);
        assert_eq!(b.sockaddr().port(), 8080);
    }

    #[test]
    fn mask6_clears_host_bits() {
        let a: Ipv6Addr = "2001:db8:abcd:1234::1".parse().unwrap();
        assert_eq!(mask6(a, 32), "2001:db8::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(mask6(a, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(mask6(a, 128), a);
        assert_eq!(mask6(a, 200), a);
    }
}
