//! # Socket termination (`sock_term.bpf.c`)
//!
//! When a backend leaves a Service, a node process's connected UDP socket
//! that connect4 pointed at it would keep sending there (no packet of a
//! connected socket meets the socket hooks again). [`SockTerm::run`] lists
//! the (frontend, backend) pairs that went in the object's own `sock_term`
//! map and runs the UDP socket iterator, which destroys the matching sockets
//! of the namespace the socket hooks act in (`bpf_sock_destroy`: the process
//! reads ECONNABORTED and connects again, to a live backend). The iterator
//! walks the sockets of the calling thread's network namespace.
//!
//! IPv6 sockets are matched the same way against `sock_rnat6`, `services6`
//! and the object's `sock_term6` ([`TermPair6`]); an IPv6 socket connected
//! to a v4-mapped address was balanced through the IPv4 maps and is matched
//! (and reported) as an IPv4 one.
//!
//! The object shares the data plane's maps (`sock_config`, `sock_rnat`,
//! `sock_rnat6`, `services`, `services6`) and is loaded by the process that runs it; nothing of it is
//! pinned or attached between runs. It needs the `bpf_sock_destroy` kfunc
//! (kernel 6.5): on an older kernel [`SockTerm::load`] fails.

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, IterOpts, MapCore, MapFlags};
use xlb_bpf::consts::{XLB_KIND_ADDR, XLB_KIND_NODEPORT, XLB_SOCK_TERM_ENTRIES};
use xlb_bpf::sock_term::types::{xlb_sock_term6_key, xlb_sock_term_key};
use xlb_bpf::sock_term::{SockTermSkel, SockTermSkelBuilder};
use xlb_bpf::types::{
    xlb_sock_rnat6_key, xlb_sock_rnat6_val, xlb_sock_rnat_key, xlb_sock_rnat_val,
};
use xlb_bpf::wire::{be16, be32, ip, port};

use crate::cgroup::share_maps;
use crate::{ctx, storage, DataPlane, Error, Result};

/// UDP sockets balanced through `frontend` (`None`: the NodePort `port` on
/// any node address) to `backend` are to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TermPair {
    pub frontend: Option<Ipv4Addr>,
    pub port: u16,
    pub backend: SocketAddrV4,
}

impl TermPair {
    fn key(&self) -> xlb_sock_term_key {
        xlb_sock_term_key {
            fe_addr: self.frontend.map(be32).unwrap_or(0),
            be_addr: be32(*self.backend.ip()),
            fe_port: be16(self.port),
            be_port: be16(self.backend.port()),
            proto: libc::IPPROTO_UDP as u8,
            kind: if self.frontend.is_some() {
                XLB_KIND_ADDR
            } else {
                XLB_KIND_NODEPORT
            } as u8,
            pad: [0; 2],
        }
    }
}

/// IPv6 UDP sockets balanced through `frontend` (`None`: the NodePort `port`
/// on any of the node's IPv6 addresses) to `backend` are to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TermPair6 {
    pub frontend: Option<Ipv6Addr>,
    pub port: u16,
    pub backend: SocketAddrV6,
}

impl TermPair6 {
    fn key(&self) -> xlb_sock_term6_key {
        xlb_sock_term6_key {
            fe_addr: self.frontend.map(be128).unwrap_or([0; 4]),
            be_addr: be128(*self.backend.ip()),
            fe_port: be16(self.port),
            be_port: be16(self.backend.port()),
            proto: libc::IPPROTO_UDP as u8,
            kind: if self.frontend.is_some() {
                XLB_KIND_ADDR
            } else {
                XLB_KIND_NODEPORT
            } as u8,
            pad: [0; 2],
        }
    }
}

/// An IPv6 address as the maps hold it: four network-order words.
pub fn be128(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    std::array::from_fn(|i| u32::from_ne_bytes(o[4 * i..4 * i + 4].try_into().expect("4 bytes")))
}

/// Inverse of [`be128`].
pub fn ip6(w: [u32; 4]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    for (i, x) in w.iter().enumerate() {
        o[4 * i..4 * i + 4].copy_from_slice(&x.to_ne_bytes());
    }
    Ipv6Addr::from(o)
}

/// A socket the iterator destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminated {
    /// Its socket cookie (`SO_COOKIE`).
    pub cookie: u64,
    /// The frontend it dialled, as dialled.
    pub frontend: SocketAddrV4,
    /// Its peer: the backend that left.
    pub backend: SocketAddrV4,
}

/// An IPv6 socket the iterator destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminated6 {
    pub cookie: u64,
    pub frontend: SocketAddrV6,
    pub backend: SocketAddrV6,
}

/// What one [`SockTerm::run`] / [`SockTerm::run_both`] did. IPv4 sockets
/// (and IPv6 ones connected to a v4-mapped address) in `terminated` /
/// `failed`, IPv6 ones in `terminated6` / `failed6`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TermReport {
    pub terminated: Vec<Terminated>,
    /// Sockets that matched but `bpf_sock_destroy` refused: (socket, errno).
    pub failed: Vec<(Terminated, i32)>,
    pub terminated6: Vec<Terminated6>,
    pub failed6: Vec<(Terminated6, i32)>,
}

/// Size of one record the iterator writes (`struct xlb_sock_term_rec`). A
/// record that does not fit the kernel's iterator buffer is lost (the
/// socket is destroyed all the same; shown again, it no longer matches): a
/// run that destroys more than a buffer's worth (several hundred) may
/// report a few less.
const REC: usize = 56;

const AF_INET6: u32 = 10;

/// The loaded socket iterator.
pub struct SockTerm {
    skel: SockTermSkel<'static>,
}

impl SockTerm {
    /// Opens and loads `sock_term.bpf.c` over `dp`'s maps. Fails on a kernel
    /// without `bpf_sock_destroy` (before 6.5) or without UDP socket
    /// iterators.
    pub fn load(dp: &DataPlane) -> Result<Self> {
        let mut open = SockTermSkelBuilder::default()
            .open(storage())
            .map_err(ctx("opening the socket-termination object"))?;
        share_maps(
            open.open_object_mut(),
            dp,
            &["sock_term", "sock_term6"],
            "socket-termination",
        )?;
        let skel = open.load().map_err(ctx(
            "loading the socket-termination object (bpf_sock_destroy needs kernel >= 6.5)",
        ))?;
        Ok(Self { skel })
    }

    /// Destroys the connected UDP sockets of the calling thread's network
    /// namespace that `pairs` name (only when it is the namespace the socket
    /// hooks act in: `sock_config`). `sock_term` is empty again afterwards,
    /// also on error.
    pub fn run(&self, pairs: &[TermPair]) -> Result<TermReport> {
        self.run_both(pairs, &[])
    }

    /// [`SockTerm::run`] for IPv4 `pairs` and IPv6 `pairs6` in one walk of
    /// the UDP sockets (per [`XLB_SOCK_TERM_ENTRIES`] pairs of each family).
    /// `sock_term` and `sock_term6` are empty again afterwards, also on
    /// error.
    pub fn run_both(&self, pairs: &[TermPair], pairs6: &[TermPair6]) -> Result<TermReport> {
        let mut report = TermReport::default();
        if pairs.is_empty() && pairs6.is_empty() {
            return Ok(report);
        }
        let link = self
            .skel
            .progs
            .xlb_sock_term
            .attach_iter_with_opts(IterOpts::None)
            .map_err(ctx("attaching the UDP socket iterator"))?;
        let n = XLB_SOCK_TERM_ENTRIES as usize;
        let rounds = pairs.len().div_ceil(n).max(pairs6.len().div_ceil(n));
        for r in 0..rounds {
            let part = |len: usize| (r * n).min(len)..((r + 1) * n).min(len);
            let keys: Vec<xlb_sock_term_key> =
                pairs[part(pairs.len())].iter().map(TermPair::key).collect();
            let keys6: Vec<xlb_sock_term6_key> = pairs6[part(pairs6.len())]
                .iter()
                .map(TermPair6::key)
                .collect();
            let res = self.fill(&keys, &keys6).and_then(|()| {
                let mut it = Iter::new(&link).map_err(ctx("creating a UDP socket iterator"))?;
                let mut out = Vec::new();
                it.read_to_end(&mut out).map_err(|e| Error::Io {
                    what: "running the UDP socket iterator".into(),
                    err: e,
                    hint: "the kernel walks the UDP sockets; retried at the next sync".into(),
                })?;
                Ok(out)
            });
            self.clear(&keys, &keys6);
            for rec in res?.chunks_exact(REC) {
                match parse(rec) {
                    (Rec::V4(t), 0) => report.terminated.push(t),
                    (Rec::V4(t), err) => report.failed.push((t, -err)),
                    (Rec::V6(t), 0) => report.terminated6.push(t),
                    (Rec::V6(t), err) => report.failed6.push((t, -err)),
                }
            }
        }
        Ok(report)
    }

    fn fill(&self, keys: &[xlb_sock_term_key], keys6: &[xlb_sock_term6_key]) -> Result<()> {
        let one = 1u32.to_ne_bytes();
        for k in keys {
            // SAFETY: xlb_sock_term_key is Plain.
            let kb = unsafe { plain::as_bytes(k) };
            self.skel
                .maps
                .sock_term
                .update(kb, &one, MapFlags::ANY)
                .map_err(ctx("writing sock_term"))?;
        }
        for k in keys6 {
            // SAFETY: xlb_sock_term6_key is Plain.
            let kb = unsafe { plain::as_bytes(k) };
            self.skel
                .maps
                .sock_term6
                .update(kb, &one, MapFlags::ANY)
                .map_err(ctx("writing sock_term6"))?;
        }
        Ok(())
    }

    fn clear(&self, keys: &[xlb_sock_term_key], keys6: &[xlb_sock_term6_key]) {
        for k in keys {
            // SAFETY: xlb_sock_term_key is Plain.
            let kb = unsafe { plain::as_bytes(k) };
            let _ = self.skel.maps.sock_term.delete(kb);
        }
        for k in keys6 {
            // SAFETY: xlb_sock_term6_key is Plain.
            let kb = unsafe { plain::as_bytes(k) };
            let _ = self.skel.maps.sock_term6.delete(kb);
        }
    }

    /// The UDP sockets the socket hooks balanced, as `sock_rnat` remembers
    /// them: (frontend as dialled, backend), each pair once. An agent that
    /// starts over hooks of an earlier run checks these against the
    /// Services it syncs.
    pub fn dialled(&self) -> Result<Vec<(SocketAddrV4, SocketAddrV4)>> {
        let m = &self.skel.maps.sock_rnat;
        let mut out = std::collections::BTreeSet::new();
        for kb in m.keys() {
            let mut k = xlb_sock_rnat_key::default();
            let mut v = xlb_sock_rnat_val::default();
            if plain::copy_from_bytes(&mut k, &kb).is_err() || k.proto != libc::IPPROTO_UDP as u8 {
                continue;
            }
            // Gone since the walk listed it (LRU, a terminated socket).
            let Some(vb) = m
                .lookup(&kb, MapFlags::ANY)
                .map_err(ctx("reading sock_rnat"))?
            else {
                continue;
            };
            if plain::copy_from_bytes(&mut v, &vb).is_err() {
                continue;
            }
            out.insert((
                SocketAddrV4::new(ip(v.addr), port(v.port)),
                SocketAddrV4::new(ip(k.addr), port(k.port)),
            ));
        }
        Ok(out.into_iter().collect())
    }

    /// [`SockTerm::dialled`] for the IPv6 sockets (`sock_rnat6`).
    pub fn dialled6(&self) -> Result<Vec<(SocketAddrV6, SocketAddrV6)>> {
        let m = &self.skel.maps.sock_rnat6;
        let mut out = std::collections::BTreeSet::new();
        for kb in m.keys() {
            let mut k = xlb_sock_rnat6_key::default();
            let mut v = xlb_sock_rnat6_val::default();
            if plain::copy_from_bytes(&mut k, &kb).is_err() || k.proto != libc::IPPROTO_UDP as u8 {
                continue;
            }
            let Some(vb) = m
                .lookup(&kb, MapFlags::ANY)
                .map_err(ctx("reading sock_rnat6"))?
            else {
                continue;
            };
            if plain::copy_from_bytes(&mut v, &vb).is_err() {
                continue;
            }
            out.insert((
                SocketAddrV6::new(ip6(v.addr), port(v.port), 0, 0),
                SocketAddrV6::new(ip6(k.addr), port(k.port), 0, 0),
            ));
        }
        Ok(out.into_iter().collect())
    }

    /// How many entries `sock_term` and `sock_term6` hold (0 between runs).
    pub fn pending(&self) -> usize {
        self.skel.maps.sock_term.keys().count() + self.skel.maps.sock_term6.keys().count()
    }
}

/// One record of the iterator, by family.
enum Rec {
    V4(Terminated),
    V6(Terminated6),
}

fn parse(rec: &[u8]) -> (Rec, i32) {
    let u32_at = |o: usize| u32::from_ne_bytes(rec[o..o + 4].try_into().expect("4 bytes"));
    let u16_at = |o: usize| u16::from_ne_bytes(rec[o..o + 2].try_into().expect("2 bytes"));
    let words = |o: usize| std::array::from_fn(|i| u32_at(o + 4 * i));
    let cookie = u64::from_ne_bytes(rec[0..8].try_into().expect("8 bytes"));
    let (be_port, fe_port) = (port(u16_at(40)), port(u16_at(42)));
    let t = if u32_at(48) == AF_INET6 {
        Rec::V6(Terminated6 {
            cookie,
            backend: SocketAddrV6::new(ip6(words(8)), be_port, 0, 0),
            frontend: SocketAddrV6::new(ip6(words(24)), fe_port, 0, 0),
        })
    } else {
        Rec::V4(Terminated {
            cookie,
            backend: SocketAddrV4::new(ip(u32_at(8)), be_port),
            frontend: SocketAddrV4::new(ip(u32_at(24)), fe_port),
        })
    };
    (t, u32_at(44) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_records_follow_the_c_layout() {
        let p = TermPair {
            frontend: None,
            port: 30080,
            backend: SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 8080),
        };
        let k = p.key();
        assert_eq!(u32::from(k.kind), XLB_KIND_NODEPORT);
        assert_eq!(k.fe_addr, 0);
        assert_eq!(port(k.fe_port), 30080);
        let k = TermPair {
            frontend: Some(Ipv4Addr::new(10, 96, 0, 10)),
            ..p
        }
        .key();
        assert_eq!(u32::from(k.kind), XLB_KIND_ADDR);
        assert_eq!(ip(k.fe_addr), Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(ip(k.be_addr), Ipv4Addr::new(10, 1, 2, 3));

        let mut rec = [0u8; REC];
        rec[0..8].copy_from_slice(&77u64.to_ne_bytes());
        rec[8..12].copy_from_slice(&be32(Ipv4Addr::new(10, 1, 2, 3)).to_ne_bytes());
        rec[24..28].copy_from_slice(&be32(Ipv4Addr::new(10, 96, 0, 10)).to_ne_bytes());
        rec[40..42].copy_from_slice(&be16(8080).to_ne_bytes());
        rec[42..44].copy_from_slice(&be16(53).to_ne_bytes());
        rec[44..48].copy_from_slice(&(-22i32).to_ne_bytes());
        rec[48..52].copy_from_slice(&2u32.to_ne_bytes());
        let (Rec::V4(t), err) = parse(&rec) else {
            panic!("an AF_INET record")
        };
        assert_eq!(t.cookie, 77);
        assert_eq!(
            t.backend,
            SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 8080)
        );
        assert_eq!(
            t.frontend,
            SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 53)
        );
        assert_eq!(err, -22);

        let (fe6, be6): (Ipv6Addr, Ipv6Addr) = (
            "fd00:96::a".parse().unwrap(),
            "fd00:10::1:2".parse().unwrap(),
        );
        let k = TermPair6 {
            frontend: Some(fe6),
            port: 53,
            backend: SocketAddrV6::new(be6, 5353, 0, 0),
        }
        .key();
        assert_eq!(u32::from(k.kind), XLB_KIND_ADDR);
        // SAFETY: Plain.
        let kb = unsafe { plain::as_bytes(&k) };
        assert_eq!(kb.len(), 40);
        assert_eq!(&kb[0..16], &fe6.octets());
        assert_eq!(&kb[16..32], &be6.octets());
        assert_eq!(&kb[32..36], &[0, 53, 0x14, 0xe9]);
        let k = TermPair6 {
            frontend: None,
            port: 30053,
            backend: SocketAddrV6::new(be6, 5353, 0, 0),
        }
        .key();
        assert_eq!(k.fe_addr, [0; 4]);
        assert_eq!(u32::from(k.kind), XLB_KIND_NODEPORT);

        let mut rec = [0u8; REC];
        rec[0..8].copy_from_slice(&78u64.to_ne_bytes());
        rec[8..24].copy_from_slice(&be6.octets());
        rec[24..40].copy_from_slice(&fe6.octets());
        rec[40..42].copy_from_slice(&be16(5353).to_ne_bytes());
        rec[42..44].copy_from_slice(&be16(53).to_ne_bytes());
        rec[48..52].copy_from_slice(&10u32.to_ne_bytes());
        let (Rec::V6(t), 0) = parse(&rec) else {
            panic!("a destroyed AF_INET6 record")
        };
        assert_eq!(t.cookie, 78);
        assert_eq!(t.backend, SocketAddrV6::new(be6, 5353, 0, 0));
        assert_eq!(t.frontend, SocketAddrV6::new(fe6, 53, 0, 0));
        assert_eq!(ip6(be128(be6)), be6);
    }
}
