//! This node's network facts: interfaces, their addresses, MAC and MTU.

use std::net::Ipv4Addr;

/// What the data plane needs to know about the uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub addrs: Vec<Ipv4Addr>,
}

/// Every interface's IPv4 addresses (getifaddrs), in kernel order.
pub fn ipv4_addrs() -> std::io::Result<Vec<(String, Ipv4Addr)>> {
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
            if i32::from(fam) == libc::AF_INET {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                // SAFETY: ifa_name is a NUL-terminated string.
                let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                    .to_string_lossy()
                    .into_owned();
                out.push((name, Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The interface that holds `addr`, if any.
pub fn iface_with_addr(addr: Ipv4Addr) -> std::io::Result<Option<String>> {
    Ok(ipv4_addrs()?
        .into_iter()
        .find(|(_, a)| *a == addr)
        .map(|(n, _)| n))
}

/// An `ifreq` ioctl on `name` (in the calling thread's network namespace:
/// no sysfs involved, so it works under `nsenter` too).
fn ifreq_ioctl(name: &str, req: libc::c_ulong) -> std::io::Result<libc::ifreq> {
    // SAFETY: a zeroed ifreq is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = name.as_bytes();
    if b.len() >= ifr.ifr_name.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "name too long",
        ));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is ours; ifr is a valid ifreq for SIOCGIF* requests.
    let rc = unsafe { libc::ioctl(fd, req as _, &mut ifr) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(err);
    }
    Ok(ifr)
}

/// Looks up an interface by name.
pub fn iface(name: &str) -> std::io::Result<Iface> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: valid C string.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no interface {name}"),
        ));
    }
    let hw = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    let mut mac = [0u8; 6];
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let data = unsafe { hw.ifr_ifru.ifru_hwaddr.sa_data };
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    let m = ifreq_ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { m.ifr_ifru.ifru_mtu }.clamp(0, i32::from(u16::MAX)) as u16;
    let addrs = ipv4_addrs()?
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, a)| a)
        .collect();
    Ok(Iface {
        name: name.to_owned(),
        ifindex,
        mac,
        mtu,
        addrs,
    })
}

/// The host name (the kubelet's default node name).
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found() {
        let lo = iface("lo").unwrap();
        assert!(lo.ifindex > 0);
        assert!(lo.addrs.contains(&Ipv4Addr::LOCALHOST));
        assert_eq!(lo.mac, [0; 6]);
        assert!(lo.mtu >= 1500);
        assert_eq!(
            iface_with_addr(Ipv4Addr::LOCALHOST).unwrap().as_deref(),
            Some("lo")
        );
        assert!(iface("no-such-if0").is_err());
    }
}
