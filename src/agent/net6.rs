//! This node's IPv6 addresses (docs/ipv6.md): the global ones of its
//! interfaces (getifaddrs), which NodePorts answer on and whose first one
//! on the uplink is the node's IPv6 underlay address when nothing else
//! names one. Link-local addresses (fe80::/10) are never used: they mean
//! nothing without an interface and are not a node's address to others.

use std::net::Ipv6Addr;

/// Every interface's IPv6 addresses (getifaddrs), in kernel order.
pub fn ipv6_addrs() -> std::io::Result<Vec<(String, Ipv6Addr)>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family we check.
            let fam = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(fam) == libc::AF_INET6 {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                // SAFETY: ifa_name is a NUL-terminated string.
                let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                    .to_string_lossy()
                    .into_owned();
                out.push((name, Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// An address a node can be reached at from other hosts: not loopback,
/// unspecified, link-local, multicast or v4-mapped.
pub fn is_node_addr6(a: &Ipv6Addr) -> bool {
    !(a.is_loopback()
        || a.is_unspecified()
        || a.is_unicast_link_local()
        || a.is_multicast()
        || a.to_ipv4_mapped().is_some())
}

/// The node-usable IPv6 addresses of interface `name`, in kernel order.
pub fn iface_addrs6(name: &str) -> std::io::Result<Vec<Ipv6Addr>> {
    Ok(ipv6_addrs()?
        .into_iter()
        .filter(|(n, a)| n == name && is_node_addr6(a))
        .map(|(_, a)| a)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addrs6_are_global_ones() {
        for (a, ok) in [
            ("2001:db8::1", true),
            ("fd00::5", true),
            ("fe80::1", false),
            ("::1", false),
            ("::", false),
            ("ff02::1", false),
            ("::ffff:10.0.0.1", false),
        ] {
            assert_eq!(is_node_addr6(&a.parse().unwrap()), ok, "{a}");
        }
    }

    #[test]
    fn loopback_has_an_ipv6_address_but_no_node_one() {
        // ::1 on lo (when the namespace has IPv6 at all) is never a node address.
        let all = ipv6_addrs().unwrap();
        if all.iter().any(|(n, _)| n == "lo") {
            assert!(iface_addrs6("lo").unwrap().is_empty());
        }
    }
}
