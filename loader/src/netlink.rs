//! # Pod interfaces: name patterns and an rtnetlink watcher
//!
//! Pod veths are found by name (`veth*,lxc*,cali*` by default: plain CNI
//! bridges, Cilium, Calico). [`PodIfaceWatcher`] subscribes to
//! `RTMGRP_LINK` on a `NETLINK_ROUTE` socket *before* listing the current
//! interfaces, so none that appears in between is missed, and turns
//! `RTM_NEWLINK`/`RTM_DELLINK` into [`IfaceEvent`]s. When the socket's buffer
//! overflows (`ENOBUFS`) it re-lists the interfaces and reports the
//! difference. [`follow_pods`] keeps the tc program attached to every
//! matching interface until told to stop.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{sys, Error, Result};

/// Default pod interface patterns.
pub const DEFAULT_POD_PATTERNS: &str = "veth*,lxc*,cali*";

/// Comma-separated interface-name globs (`*` any run, `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfacePatterns(Vec<String>);

impl Default for IfacePatterns {
    fn default() -> Self {
        DEFAULT_POD_PATTERNS.parse().expect("valid default")
    }
}

impl std::str::FromStr for IfacePatterns {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut v = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if p.len() >= libc::IF_NAMESIZE * 2
                || p.chars()
                    .any(|c| c == '/' || c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "bad interface pattern {p:?}: use names with * and ?, e.g. {DEFAULT_POD_PATTERNS}"
                ));
            }
            v.push(p.to_owned());
        }
        Ok(Self(v))
    }
}

impl std::fmt::Display for IfacePatterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl IfacePatterns {
    /// No pattern: match nothing.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| glob(p.as_bytes(), name.as_bytes()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An interface appeared or went away (in the watcher's network namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfaceEvent {
    Added { index: u32, name: String },
    Removed { index: u32, name: String },
}

/// One `RTM_NEWLINK` / `RTM_DELLINK` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkMsg {
    pub new: bool,
    pub index: u32,
    pub name: Option<String>,
}

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// Parses the link messages of one netlink datagram; anything truncated or
/// malformed ends the parse (never panics, never reads out of bounds).
pub fn parse_link_messages(buf: &[u8]) -> Vec<LinkMsg> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            break;
        };
        let Some(ty) = u16_at(buf, off + 4) else {
            break;
        };
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let msg = &buf[off + NLMSG_HDRLEN..off + len];
        if (ty == RTM_NEWLINK || ty == RTM_DELLINK) && msg.len() >= IFINFOMSG_LEN {
            let index = u32_at(msg, 4).unwrap_or(0);
            let mut name = None;
            let mut a = IFINFOMSG_LEN;
            while a + 4 <= msg.len() {
                let alen = u16_at(msg, a).unwrap_or(0) as usize;
                let aty = u16_at(msg, a + 2).unwrap_or(0) & 0x3fff;
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                if aty == IFLA_IFNAME {
                    let v = &msg[a + 4..a + alen];
                    let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                    name = std::str::from_utf8(&v[..end]).ok().map(str::to_owned);
                }
                a += align4(alen);
            }
            if index != 0 {
                out.push(LinkMsg {
                    new: ty == RTM_NEWLINK,
                    index,
                    name,
                });
            }
        }
        off += align4(len);
    }
    out
}

/// Follows interfaces whose names match the patterns.
pub struct PodIfaceWatcher {
    sock: OwnedFd,
    patterns: IfacePatterns,
    known: BTreeMap<u32, String>,
}

impl PodIfaceWatcher {
    /// Subscribes to link events of the calling thread's network namespace.
    pub fn new(patterns: IfacePatterns) -> io::Result<Self> {
        // SAFETY: plain socket call; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_nl is valid.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: valid socket and address.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let rcvbuf: libc::c_int = 1 << 20;
        // SAFETY: valid socket and option value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        Ok(Self {
            sock,
            patterns,
            known: BTreeMap::new(),
        })
    }

    /// The socket, for an event loop (readable = call [`Self::poll`] with a zero timeout).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Matching interfaces now (and the baseline for later events), as `Added` events.
    pub fn initial(&mut self) -> Vec<IfaceEvent> {
        self.resync()
    }

    fn resync(&mut self) -> Vec<IfaceEvent> {
        let now: BTreeMap<u32, String> = sys::interfaces()
            .into_iter()
            .filter(|(_, n)| self.patterns.matches(n))
            .collect();
        let mut ev = Vec::new();
        for (i, n) in &self.known {
            if now.get(i) != Some(n) {
                ev.push(IfaceEvent::Removed {
                    index: *i,
                    name: n.clone(),
                });
            }
        }
        for (i, n) in &now {
            if self.known.get(i) != Some(n) {
                ev.push(IfaceEvent::Added {
                    index: *i,
                    name: n.clone(),
                });
            }
        }
        self.known = now;
        ev
    }

    fn apply(&mut self, m: LinkMsg, ev: &mut Vec<IfaceEvent>) {
        let old = self.known.get(&m.index).cloned();
        let name = m.name.or_else(|| old.clone());
        if !m.new {
            if let Some(n) = self.known.remove(&m.index) {
                ev.push(IfaceEvent::Removed {
                    index: m.index,
                    name: n,
                });
            }
            return;
        }
        let Some(name) = name else {
            return;
        };
        if old.as_deref() == Some(name.as_str()) {
            return; // a flag or address change
        }
        if let Some(o) = old {
            // Renamed.
            self.known.remove(&m.index);
            ev.push(IfaceEvent::Removed {
                index: m.index,
                name: o,
            });
        }
        if self.patterns.matches(&name) {
            self.known.insert(m.index, name.clone());
            ev.push(IfaceEvent::Added {
                index: m.index,
                name,
            });
        }
    }

    /// Waits up to `timeout` for link events and returns them (maybe none).
    pub fn poll(&mut self, timeout: Duration) -> io::Result<Vec<IfaceEvent>> {
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        let mut ev = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: valid socket and buffer.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        tracing::warn!("netlink overflow: re-listing interfaces");
                        ev.extend(self.resync());
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            for m in parse_link_messages(&buf[..n as usize]) {
                self.apply(m, &mut ev);
            }
        }
        Ok(ev)
    }
}

/// Brings the pins in line with one event: attaches the pinned tc program to
/// an added interface, removes the (now defunct) pins of a removed one.
pub fn apply_event(pin_dir: &Path, ev: &IfaceEvent) -> Result<()> {
    match ev {
        IfaceEvent::Added { name, .. } => {
            let prog = crate::attach::pinned_tc_prog(pin_dir)?;
            let a = crate::attach::attach_pod(pin_dir, prog.as_fd(), name)?;
            if let Some(e) = crate::attach::pinned_tc_egress_prog(pin_dir) {
                crate::attach::attach_pod_egress(pin_dir, e.as_fd(), name)?;
            }
            tracing::info!(iface = %name, hook = %a.hook.describe(), "pod interface attached");
            Ok(())
        }
        IfaceEvent::Removed { name, .. } => {
            for a in crate::attach::list(pin_dir)? {
                if &a.iface == name && !matches!(a.hook, crate::attach::Hook::Xdp(_)) {
                    crate::pin::unpin(&a.pin).map_err(|e| Error::Io {
                        what: format!("removing pin {}", a.pin.display()),
                        err: e,
                        hint: "run as root".into(),
                    })?;
                }
            }
            tracing::info!(iface = %name, "pod interface gone");
            Ok(())
        }
    }
}

/// Keeps the pinned tc program on every interface matching `patterns` until
/// `stop` is set (checked every `tick`). Errors on one interface are logged
/// and do not stop the others.
pub fn follow_pods(
    pin_dir: &Path,
    patterns: IfacePatterns,
    stop: &AtomicBool,
    tick: Duration,
) -> Result<()> {
    let mut w = PodIfaceWatcher::new(patterns).map_err(|e| Error::Io {
        what: "opening a NETLINK_ROUTE socket".into(),
        err: e,
        hint: "run as root (CAP_NET_ADMIN)".into(),
    })?;
    let mut events = w.initial();
    while !stop.load(Ordering::Relaxed) {
        for ev in events.drain(..) {
            if let Err(e) = apply_event(pin_dir, &ev) {
                tracing::warn!(?ev, "pod interface: {e}");
            }
        }
        events = w.poll(tick).map_err(|e| Error::Io {
            what: "reading link events".into(),
            err: e,
            hint: "run as root".into(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let p: IfacePatterns = "veth*,lxc*,cali*,eth?".parse().unwrap();
        for yes in ["veth0", "veth", "lxc12ab", "cali1234", "eth1"] {
            assert!(p.matches(yes), "{yes}");
        }
        for no in ["eth0x", "lo", "xveth0", "br0", ""] {
            assert!(!p.matches(no), "{no}");
        }
        let star: IfacePatterns = "*a*b".parse().unwrap();
        assert!(star.matches("xxaxxb"));
        assert!(!star.matches("xxbxxa"));
        assert!("bad pattern,veth*".parse::<IfacePatterns>().is_err());
        assert!(IfacePatterns::none().is_empty());
        assert!(!IfacePatterns::none().matches("veth0"));
    }

    fn nlmsg(ty: u16, index: u32, name: Option<&str>) -> Vec<u8> {
        let mut payload = vec![0u8; IFINFOMSG_LEN];
        payload[4..8].copy_from_slice(&index.to_ne_bytes());
        // an unrelated attribute first (IFLA_MTU = 4)
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&4u16.to_ne_bytes());
        payload.extend_from_slice(&1500u32.to_ne_bytes());
        if let Some(n) = name {
            let alen = 4 + n.len() + 1;
            payload.extend_from_slice(&(alen as u16).to_ne_bytes());
            payload.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
            payload.extend_from_slice(n.as_bytes());
            payload.push(0);
            while !payload.len().is_multiple_of(4) {
                payload.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn parses_link_messages_and_survives_garbage() {
        let mut buf = nlmsg(RTM_NEWLINK, 7, Some("veth1234"));
        buf.extend(nlmsg(RTM_DELLINK, 9, Some("lxc1")));
        buf.extend(nlmsg(3, 0, None)); // NLMSG_DONE-like, ignored
        let got = parse_link_messages(&buf);
        assert_eq!(
            got,
            vec![
                LinkMsg {
                    new: true,
                    index: 7,
                    name: Some("veth1234".into())
                },
                LinkMsg {
                    new: false,
                    index: 9,
                    name: Some("lxc1".into())
                },
            ]
        );
        // Every truncation parses without panicking and never invents messages.
        for cut in 0..buf.len() {
            assert!(parse_link_messages(&buf[..cut]).len() <= 2);
        }
        // A header that claims more than there is.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_link_messages(&bad).is_empty());
        // An attribute with length 0 stops the attribute walk, not the program.
        let mut zero = nlmsg(RTM_NEWLINK, 3, Some("veth0"));
        zero[NLMSG_HDRLEN + IFINFOMSG_LEN..NLMSG_HDRLEN + IFINFOMSG_LEN + 2]
            .copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(
            parse_link_messages(&zero),
            vec![LinkMsg {
                new: true,
                index: 3,
                name: None
            }]
        );
    }

    #[test]
    fn events_follow_renames_and_removals() {
        let mut w = PodIfaceWatcher {
            sock: std::fs::File::open("/dev/null").unwrap().into(),
            patterns: "veth*".parse().unwrap(),
            known: BTreeMap::new(),
        };
        let mut ev = Vec::new();
        let msg = |new, index, name: &str| LinkMsg {
            new,
            index,
            name: Some(name.into()),
        };
        w.apply(msg(true, 5, "veth5"), &mut ev);
        w.apply(msg(true, 5, "veth5"), &mut ev); // flags change: nothing
        w.apply(msg(true, 6, "eth6"), &mut ev); // not ours
        w.apply(msg(true, 5, "other"), &mut ev); // renamed away
        w.apply(msg(true, 5, "veth9"), &mut ev); // renamed back in
        w.apply(msg(false, 5, "veth9"), &mut ev);
        w.apply(msg(false, 6, "eth6"), &mut ev);
        let added = |i, n: &str| IfaceEvent::Added {
            index: i,
            name: n.into(),
        };
        let removed = |i, n: &str| IfaceEvent::Removed {
            index: i,
            name: n.into(),
        };
        assert_eq!(
            ev,
            vec![
                added(5, "veth5"),
                removed(5, "veth5"),
                added(5, "veth9"),
                removed(5, "veth9")
            ]
        );
    }
}
