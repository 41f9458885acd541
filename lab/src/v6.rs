//! # IPv6 addresses of a dual-stack lab (`xlb lab up --dual-stack`)
//!
//! Every IPv4 address of the lab has one IPv6 counterpart, derived by
//! [`to_v6`]: the IPv4 octets after the first ones become hex groups whose
//! text repeats the decimal octet, so the IPv6 address reads like the IPv4 one:
//!
//! | IPv4 | IPv6 | what |
//! |---|---|---|
//! | 198.18.0.N | fd00:198:18::N | underlay (client .1/.3, node n .1n) |
//! | 10.244.N.M | fd00:10:244:N::M | pod CIDR of node N (fd00:10:244:N::/64), pods, gateway |
//! | 10.96.X.Y | fd00:10:96:X::Y | ClusterIPs (fd00:10:96::/112), LoadBalancer and external IPs |
//!
//! All of it is unique local (fd00::/8) and lives only inside the lab's
//! namespaces.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Hex group whose text is the decimal `v` (12 -> 0x12).
fn group(v: u8) -> u16 {
    u16::from_str_radix(&v.to_string(), 16).expect("decimal digits are hex digits")
}

/// The IPv6 counterpart of a lab IPv4 address: `None` outside the lab's
/// ranges (198.18.0.0/24, 10.244.0.0/16, 10.96.0.0/16).
pub fn to_v6(a: Ipv4Addr) -> Option<Ipv6Addr> {
    let [a, b, c, d] = a.octets();
    match (a, b, c) {
        (198, 18, 0) => Some(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, group(d))),
        (10, 244, n) => Some(Ipv6Addr::new(
            0xfd00,
            0x10,
            0x244,
            group(n),
            0,
            0,
            0,
            group(d),
        )),
        (10, 96, x) => Some(Ipv6Addr::new(
            0xfd00,
            0x10,
            0x96,
            group(x),
            0,
            0,
            0,
            group(d),
        )),
        _ => None,
    }
}

/// [`to_v6`] for addresses known to be the lab's.
pub fn v6(a: Ipv4Addr) -> Ipv6Addr {
    to_v6(a).unwrap_or_else(|| panic!("{a} is not a lab address"))
}

/// Prefix length of the IPv6 underlay.
pub const UNDERLAY_PREFIX_LEN: u8 = 64;
/// Prefix length of a node's IPv6 pod CIDR.
pub const POD_PREFIX_LEN: u8 = 64;
/// Where the IPv6 Service addresses of the examples live (ClusterIPs in
/// fd00:10:96::/112, LoadBalancer fd00:10:96:100::/64, external fd00:10:96:200::/64),
/// routed from the client to node 1.
pub const SERVICE_CIDR6: &str = "fd00:10:96::/48";
/// Kernel VXLAN device for IPv6 (flannel's name for VNI 1).
pub const VXLAN6_DEV: &str = "flannel-v6.1";
/// MTU of the IPv6 overlay: 1500 minus 70 bytes of VXLAN over IPv6.
pub const POD_MTU6: u32 = 1430;

pub fn client_addr6() -> Ipv6Addr {
    v6(crate::CLIENT_ADDR)
}
pub fn client_alt_addr6() -> Ipv6Addr {
    v6(crate::CLIENT_ALT_ADDR)
}
/// Node `n`'s IPv6 underlay address (its second InternalIP, `public-ipv6`).
pub fn node_addr6(n: u8) -> Ipv6Addr {
    v6(crate::node_addr(n))
}
/// Node `n`'s IPv6 pod CIDR: fd00:10:244:n::/64.
pub fn pod_cidr6(n: u8) -> String {
    format!("{}/{POD_PREFIX_LEN}", vtep_addr6(n))
}
/// Node `n`'s IPv6 pod gateway (on its `lo`).
pub fn pod_gateway6(n: u8) -> Ipv6Addr {
    v6(crate::pod_gateway(n))
}
/// Node `n`'s address on `flannel-v6.1` (flannel: the network address of its IPv6 pod CIDR).
pub fn vtep_addr6(n: u8) -> Ipv6Addr {
    v6(crate::vtep_addr(n))
}
/// Pod `k` of node `n`.
pub fn pod_addr6(n: u8, k: u8) -> Ipv6Addr {
    v6(crate::pod_addr(n, k))
}
/// MAC of node `n`'s `flannel-v6.1` (the `backend-v6-data` VtepMAC).
pub fn vtep_mac6(n: u8) -> String {
    format!("0e:18:00:00:06:{n:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_addresses_map_readably() {
        assert_eq!(node_addr6(1).to_string(), "fd00:198:18::11");
        assert_eq!(client_addr6().to_string(), "fd00:198:18::1");
        assert_eq!(pod_addr6(2, 1).to_string(), "fd00:10:244:2::2");
        assert_eq!(pod_gateway6(1).to_string(), "fd00:10:244:1::1");
        assert_eq!(pod_cidr6(2), "fd00:10:244:2::/64");
        assert_eq!(
            v6(Ipv4Addr::new(10, 96, 0, 10)).to_string(),
            "fd00:10:96::10"
        );
        assert_eq!(
            v6(Ipv4Addr::new(10, 96, 100, 17)).to_string(),
            "fd00:10:96:100::17"
        );
        assert_eq!(pod_addr6(1, 50).to_string(), "fd00:10:244:1::51");
        assert_eq!(to_v6(Ipv4Addr::new(8, 8, 8, 8)), None);
        assert_eq!(vtep_mac6(2), "0e:18:00:00:06:02");
        assert_ne!(vtep_mac6(1), crate::vtep_mac(1));
    }
}
