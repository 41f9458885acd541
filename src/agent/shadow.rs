//! The sockets listening on the node (`/proc/net/{tcp,udp,tcp6,udp6}`) and
//! the frontends that shadow them: a frontend on a node address takes the
//! traffic of a process listening there (the Service wins, as with
//! kube-proxy); the agent logs and counts each such pair.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xlb_bpf::Proto;

use crate::model::{Desired, Family};

/// A socket listening (TCP) or bound (UDP) in this network namespace. A
/// v4-mapped address of an IPv6 socket is its IPv4 address; `::` is an
/// IPv6 socket on every address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub proto: Proto,
    pub addr: IpAddr,
    pub port: u16,
}

impl Listener {
    /// Whether a packet to `dst` (a node address of either family) reaches
    /// it: its own address, or any address of the family. An IPv6 socket
    /// on `::` takes IPv4 too (the kernel's default `bindv6only=0`; a
    /// socket's `IPV6_V6ONLY` does not show in /proc).
    fn takes(&self, dst: IpAddr) -> bool {
        self.addr == dst
            || match self.addr {
                IpAddr::V4(a) => a.is_unspecified() && dst.is_ipv4(),
                IpAddr::V6(a) => a.is_unspecified(),
            }
    }
}

/// The address of a `/proc/net/{tcp,udp}{,6}` local_address: the kernel
/// prints each `__be32` word as a host-order number (so its native-endian
/// bytes are the address bytes), one word for IPv4, four for IPv6.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let a = Ipv6Addr::from(b);
            Some(match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a),
            })
        }
        _ => None,
    }
}

/// Listeners of `/proc/net/{tcp,udp}` or `{tcp6,udp6}` text: TCP in state
/// LISTEN, UDP bound and unconnected (state 07, remote port 0).
pub fn parse_proc_net(text: &str, proto: Proto) -> Vec<Listener> {
    let want = match proto {
        Proto::Tcp => "0A",
        _ => "07",
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            let remote = f.next()?;
            let state = f.next()?;
            if state != want {
                return None;
            }
            if proto != Proto::Tcp {
                let (ra, rp) = remote.split_once(':')?;
                if rp != "0000" || ra.bytes().any(|c| c != b'0') {
                    return None;
                }
            }
            let (a, p) = local.split_once(':')?;
            Some(Listener {
                proto,
                addr: parse_addr(a)?,
                port: u16::from_str_radix(p, 16).ok()?,
            })
        })
        .collect()
}

/// Every TCP listener and bound UDP socket of the calling thread's network
/// namespace, both families.
pub fn listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    for (file, proto) in [
        ("tcp", Proto::Tcp),
        ("udp", Proto::Udp),
        ("tcp6", Proto::Tcp),
        ("udp6", Proto::Udp),
    ] {
        if let Ok(t) = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
            out.extend(parse_proc_net(&t, proto));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A frontend on a node address that takes the traffic of a process
/// listening on the node (the Service wins, as with kube-proxy).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shadow {
    /// The frontend, as `addr:port/proto` (`*` for a NodePort).
    pub frontend: String,
    pub listener: Listener,
}

/// Frontends that cover a node listener: a NodePort on a port some process
/// listens on at a node address of the NodePort's family (or any address),
/// an address frontend on a node address and a listened port. `loopback`:
/// IPv4 NodePorts also answer on 127.0.0.0/8 (the socket hooks).
pub fn shadows(
    desired: &Desired,
    node_addrs: &BTreeSet<IpAddr>,
    loopback: bool,
    listeners: &[Listener],
) -> Vec<Shadow> {
    let mut out = Vec::new();
    for (_, f) in desired.frontends() {
        let k = &f.key;
        for l in listeners {
            if l.port != k.port || l.proto != k.proto {
                continue;
            }
            let covered = match k.addr {
                None => {
                    let fam = |a: &IpAddr| {
                        matches!(
                            (a, k.family),
                            (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6)
                        )
                    };
                    node_addrs.iter().any(|a| fam(a) && l.takes(*a))
                        || (loopback
                            && k.family == Family::V4
                            && matches!(l.addr, IpAddr::V4(a) if a.is_loopback()))
                }
                Some(a) => node_addrs.contains(&a) && l.takes(a),
            };
            if covered {
                out.push(Shadow {
                    frontend: k.to_string(),
                    listener: *l,
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[path = "shadow_tests.rs"]
mod tests;
