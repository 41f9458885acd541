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
//! The object shares the data plane's maps (`sock_config`, `sock_rnat`,
//! `services`) and is loaded by the process that runs it; nothing of it is
//! pinned or attached between runs. It needs the `bpf_sock_destroy` kfunc
//! (kernel 6.5): on an older kernel [`SockTerm::load`] fails.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, IterOpts, MapCore, MapFlags};
use xlb_bpf::consts::{XLB_KIND_ADDR, XLB_KIND_NODEPORT, XLB_SOCK_TERM_ENTRIES};
use xlb_bpf::sock_term::types::xlb_sock_term_key;
use xlb_bpf::sock_term::{SockTermSkel, SockTermSkelBuilder};
use xlb_bpf::types::{xlb_sock_rnat_key, xlb_sock_rnat_val};
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

/// What one [`SockTerm::run`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TermReport {
    pub terminated: Vec<Terminated>,
    /// Sockets that matched but `bpf_sock_destroy` refused: (socket, errno).
    pub failed: Vec<(Terminated, i32)>,
}

/// Size of one record the iterator writes (`struct xlb_sock_term_rec`). A
/// record that does not fit the kernel's iterator buffer is lost (the
/// socket is destroyed all the same; shown again, it no longer matches): a
/// run that destroys more than a buffer's worth (over a thousand) may
/// report a few less.
const REC: usize = 24;

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
            &["sock_term"],
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
        let mut report = TermReport::default();
        if pairs.is_empty() {
            return Ok(report);
        }
        let link = self
            .skel
            .progs
            .xlb_sock_term
            .attach_iter_with_opts(IterOpts::None)
            .map_err(ctx("attaching the UDP socket iterator"))?;
        for chunk in pairs.chunks(XLB_SOCK_TERM_ENTRIES as usize) {
            let keys: Vec<xlb_sock_term_key> = chunk.iter().map(TermPair::key).collect();
            let res = self.fill(&keys).and_then(|()| {
                let mut it = Iter::new(&link).map_err(ctx("creating a UDP socket iterator"))?;
                let mut out = Vec::new();
                it.read_to_end(&mut out).map_err(|e| Error::Io {
                    what: "running the UDP socket iterator".into(),
                    err: e,
                    hint: "the kernel walks the UDP sockets; retried at the next sync".into(),
                })?;
                Ok(out)
            });
            self.clear(&keys);
            for rec in res?.chunks_exact(REC) {
                let (t, err) = parse(rec);
                if err == 0 {
                    report.terminated.push(t);
                } else {
                    report.failed.push((t, -err));
                }
            }
        }
        Ok(report)
    }

    fn fill(&self, keys: &[xlb_sock_term_key]) -> Result<()> {
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
        Ok(())
    }

    fn clear(&self, keys: &[xlb_sock_term_key]) {
        for k in keys {
            // SAFETY: xlb_sock_term_key is Plain.
            let kb = unsafe { plain::as_bytes(k) };
            let _ = self.skel.maps.sock_term.delete(kb);
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

    /// How many entries `sock_term` holds (0 between runs).
    pub fn pending(&self) -> usize {
        self.skel.maps.sock_term.keys().count()
    }
}

fn parse(rec: &[u8]) -> (Terminated, i32) {
    let u32_at = |o: usize| u32::from_ne_bytes(rec[o..o + 4].try_into().expect("4 bytes"));
    let u16_at = |o: usize| u16::from_ne_bytes(rec[o..o + 2].try_into().expect("2 bytes"));
    let t = Terminated {
        cookie: u64::from_ne_bytes(rec[0..8].try_into().expect("8 bytes")),
        backend: SocketAddrV4::new(ip(u32_at(8)), port(u16_at(16))),
        frontend: SocketAddrV4::new(ip(u32_at(12)), port(u16_at(18))),
    };
    (t, u32_at(20) as i32)
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
        rec[12..16].copy_from_slice(&be32(Ipv4Addr::new(10, 96, 0, 10)).to_ne_bytes());
        rec[16..18].copy_from_slice(&be16(8080).to_ne_bytes());
        rec[18..20].copy_from_slice(&be16(53).to_ne_bytes());
        rec[20..24].copy_from_slice(&(-22i32).to_ne_bytes());
        let (t, err) = parse(&rec);
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
    }
}
