//! This node's network facts: interfaces, their addresses, MAC and MTU; the
//! addresses NodePorts answer on (followed through netlink). The sockets
//! listening on the node (which a frontend on a node address may shadow) are
//! in [`super::shadow`], re-exported here.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::model::in_cidrs;

pub use super::shadow::{listeners, parse_proc_net, shadows, Listener, Shadow};

/// What the data plane needs to know about the uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub addrs: Vec<Ipv4Addr>,
    /// Its global IPv6 addresses (no link-local one).
    pub addrs6: Vec<Ipv6Addr>,
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

/// `--nodeport-addresses`: the CIDRs whose node addresses take NodePorts
/// (empty: every address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePortCidrs(pub Vec<(IpAddr, u8)>);

impl std::str::FromStr for NodePortCidrs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_cidrs(s).map(NodePortCidrs)
    }
}

impl std::fmt::Display for NodePortCidrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v: Vec<String> = self.0.iter().map(|(a, l)| format!("{a}/{l}")).collect();
        f.write_str(&v.join(","))
    }
}

/// `--nodeport-addresses`: comma-separated IPv4 CIDRs ('' = every address).
pub fn parse_cidrs(s: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, len) = part.split_once('/').ok_or_else(|| {
            format!("{part:?}: expected a CIDR such as 10.0.0.0/8 or 2001:db8::/64")
        })?;
        let a: IpAddr = a
            .parse()
            .map_err(|_| format!("{part:?}: {a:?} is no IP address"))?;
        let max = if a.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{part:?}: prefix length {len:?} is not 0..={max}"))?;
        out.push((a, len));
    }
    Ok(out)
}

/// The node addresses NodePorts answer on: every IPv4 address of this
/// network namespace but loopback (127.0.0.0/8 is the socket hooks'
/// business: XLB_SOCK_F_LOOPBACK) and every global IPv6 one (no loopback,
/// no link-local), inside `cidrs` when any are given (a family without a
/// CIDR in them then has none, as kube-proxy).
pub fn nodeport_addrs(cidrs: &[(IpAddr, u8)]) -> std::io::Result<Vec<IpAddr>> {
    let v4 = ipv4_addrs()?
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .map(IpAddr::V4);
    let v6 = super::net6::ipv6_addrs()?
        .into_iter()
        .map(|(_, a)| a)
        .filter(super::net6::is_node_addr6)
        .map(IpAddr::V6);
    let set: BTreeSet<IpAddr> = v4
        .chain(v6)
        .filter(|a| cidrs.is_empty() || in_cidrs(*a, cidrs))
        .collect();
    Ok(set.into_iter().collect())
}

/// Whether node processes get NodePorts on 127.0.0.1 (kube-proxy's
/// localhost NodePorts): unless `--nodeport-addresses` leaves it out.
pub fn loopback_nodeports(cidrs: &[(IpAddr, u8)]) -> bool {
    cidrs.is_empty() || in_cidrs(IpAddr::V4(Ipv4Addr::LOCALHOST), cidrs)
}

/// Wakes up when an address is added or removed in this network
/// namespace (rtnetlink groups RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR). What changed is read
/// again with [`nodeport_addrs`]: the messages are only a signal.
pub struct AddrWatcher {
    fd: OwnedFd,
}

impl AddrWatcher {
    pub fn new() -> std::io::Result<Self> {
        const RTMGRP_IPV4_IFADDR: u32 = 0x10;
        const RTMGRP_IPV6_IFADDR: u32 = 0x100;
        // SAFETY: plain socket creation; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid; family and groups set below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        // SAFETY: valid fd and sockaddr of the given length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Waits up to `timeout` for address events; true when any came (all
    /// pending ones are read). An overrun socket (ENOBUFS) counts as a change.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(false);
        }
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: valid fd and buffer.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) => Ok(true),
                    _ => Err(e),
                };
            }
        }
    }
}

/// A thread that bumps `tx` whenever an IPv4 address of this network
/// namespace is added or removed (until `stop`).
pub fn watch_addrs(
    tx: tokio::sync::watch::Sender<u64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let w = AddrWatcher::new().context("opening a netlink socket for address events")?;
    std::thread::Builder::new()
        .name("xlb-addrs".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match w.wait(Duration::from_millis(500)) {
                    Ok(true) => {
                        tx.send_modify(|n| *n += 1);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!("following node addresses stopped: {e}");
                        return;
                    }
                }
            }
        })
        .context("starting the address thread")
}

/// Logs the NodePort addresses when they differ from `old` (None: the first time).
pub fn log_nodeport_addrs(old: Option<&[IpAddr]>, new: &[IpAddr]) {
    if old == Some(new) {
        return;
    }
    let old = old.unwrap_or_default();
    let added: Vec<_> = new.iter().filter(|a| !old.contains(a)).collect();
    let removed: Vec<_> = old.iter().filter(|a| !new.contains(a)).collect();
    tracing::info!(?added, ?removed, "NodePort addresses: {new:?}");
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
        addrs6: super::net6::iface_addrs6(name)?,
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
    fn cidrs_parse_and_match() {
        let c = parse_cidrs("10.0.0.0/8, 198.18.0.1/32").unwrap();
        assert_eq!(
            c,
            vec![
                (Ipv4Addr::new(10, 0, 0, 0).into(), 8),
                (Ipv4Addr::new(198, 18, 0, 1).into(), 32)
            ]
        );
        assert!(in_cidrs(Ipv4Addr::new(10, 9, 8, 7).into(), &c));
        assert!(!in_cidrs(Ipv4Addr::new(198, 18, 0, 2).into(), &c));
        assert!(in_cidrs(
            Ipv4Addr::new(1, 2, 3, 4).into(),
            &[(Ipv4Addr::UNSPECIFIED.into(), 0)]
        ));
        assert_eq!(parse_cidrs("").unwrap(), vec![]);
        assert!(!loopback_nodeports(&c));
        assert!(loopback_nodeports(&[]));
        assert!(loopback_nodeports(&parse_cidrs("127.0.0.0/8").unwrap()));
        // IPv6 CIDRs too; never matching across families
        let c6 = parse_cidrs("2001:db8::/32,10.0.0.0/8").unwrap();
        assert!(in_cidrs("2001:db8:1::5".parse().unwrap(), &c6));
        assert!(!in_cidrs("2001:db9::5".parse().unwrap(), &c6));
        assert!(!in_cidrs("::ffff:10.0.0.1".parse().unwrap(), &c6));
        assert!(!in_cidrs("2001:db8::1".parse().unwrap(), &c));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "x/8",
            "10.0.0.0/",
            "2001:db8::/129",
        ] {
            assert!(parse_cidrs(bad).is_err(), "{bad}");
        }
    }

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
