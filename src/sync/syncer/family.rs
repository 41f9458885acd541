//! Both address families through one syncer (docs/ipv6.md): a frontend's
//! key goes to `services` or `services6` by its family, a backend id's
//! value to `backends` or `backends6` by its endpoint's (one id space, so a
//! slot is active in at most one of them), a source range, tunnel entry or
//! node address to its family's map.

use std::net::{IpAddr, SocketAddr};

use xlb_bpf::consts::{
    XLB_BE_F_ACTIVE, XLB_BE_F_DRAINING, XLB_BE_F_HOST_NETWORK, XLB_BE_F_TERMINATING,
    XLB_KIND_F_INTERNAL, XLB_KIND_NODEPORT,
};
use xlb_bpf::types::{
    xlb_backend, xlb_backend6, xlb_src_range6_key, xlb_src_range_key, xlb_svc6_key, xlb_svc_val,
    xlb_tunnel6_key, xlb_tunnel6_val, xlb_tunnel_key, xlb_tunnel_val,
};
use xlb_bpf::Proto;

use super::MapOps;
use crate::model::{Backend, Family, FrontendKey, SvcKey, TunnelEntry};

/// A backend slot's value, in its family's array.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BeVal {
    V4(xlb_backend),
    V6(xlb_backend6),
}

impl BeVal {
    pub fn generation(&self) -> u32 {
        match self {
            BeVal::V4(v) => v.generation,
            BeVal::V6(v) => v.generation,
        }
    }

    pub fn sockaddr(&self) -> SocketAddr {
        match self {
            BeVal::V4(v) => SocketAddr::V4(v.sockaddr()),
            BeVal::V6(v) => SocketAddr::V6(v.sockaddr()),
        }
    }

    /// Inactive at `generation`: what a retired id holds.
    pub fn retired(mut self, generation: u32) -> Self {
        match &mut self {
            BeVal::V4(v) => {
                v.flags &= !(XLB_BE_F_ACTIVE as u8);
                v.generation = generation;
            }
            BeVal::V6(v) => {
                v.flags &= !(XLB_BE_F_ACTIVE as u8);
                v.generation = generation;
            }
        }
        self
    }

    /// Same family and bytes.
    pub fn same(&self, other: &BeVal) -> bool {
        // SAFETY: Plain structs.
        unsafe {
            match (self, other) {
                (BeVal::V4(a), BeVal::V4(b)) => plain::as_bytes(a) == plain::as_bytes(b),
                (BeVal::V6(a), BeVal::V6(b)) => plain::as_bytes(a) == plain::as_bytes(b),
                _ => false,
            }
        }
    }

    /// Writes the value into its family's array.
    pub fn put<M: MapOps>(&self, maps: &mut M, id: u32) -> xlb_bpf::Result<()> {
        match self {
            BeVal::V4(v) => maps.put_backend(id, v),
            BeVal::V6(v) => maps.put_backend6(id, v),
        }
    }
}

/// The backend slot value of `b` at `generation`.
pub(super) fn backend_val(b: &Backend, generation: u32) -> BeVal {
    let mut flags = XLB_BE_F_ACTIVE as u8;
    for (on, flag) in [
        (b.terminating, XLB_BE_F_TERMINATING),
        (b.draining, XLB_BE_F_DRAINING),
        (b.host_network, XLB_BE_F_HOST_NETWORK),
    ] {
        if on {
            flags |= flag as u8;
        }
    }
    match b.addr {
        SocketAddr::V4(a) => {
            let node = match b.node {
                Some(IpAddr::V4(n)) => Some(n),
                _ => None,
            };
            let mut v = xlb_backend::new(a, node, generation);
            v.flags = flags;
            BeVal::V4(v)
        }
        SocketAddr::V6(a) => {
            let node = match b.node {
                Some(IpAddr::V6(n)) => Some(n),
                _ => None,
            };
            let mut v = xlb_backend6::new(a, node, generation);
            v.flags = flags;
            BeVal::V6(v)
        }
    }
}

/// The frontend of a `services6` key, `None` for a kind sync never writes.
pub(super) fn key_of_svc6(k: &xlb_svc6_key) -> Option<FrontendKey> {
    let kind = u32::from(k.kind);
    if kind & !(XLB_KIND_NODEPORT | XLB_KIND_F_INTERNAL) != 0 {
        return None;
    }
    Some(FrontendKey {
        addr: (kind & XLB_KIND_NODEPORT == 0).then(|| IpAddr::V6(k.ip())),
        port: k.port(),
        proto: Proto::from_number(k.proto)?,
        internal: kind & XLB_KIND_F_INTERNAL != 0,
        family: Family::V6,
    })
}

pub(super) fn put_service<M: MapOps>(
    maps: &mut M,
    k: &FrontendKey,
    v: &xlb_svc_val,
) -> xlb_bpf::Result<()> {
    match k.svc_key() {
        SvcKey::V4(k) => maps.put_service(&k, v),
        SvcKey::V6(k) => maps.put_service6(&k, v),
    }
}

pub(super) fn delete_service<M: MapOps>(maps: &mut M, k: &SvcKey) -> xlb_bpf::Result<bool> {
    match k {
        SvcKey::V4(k) => maps.delete_service(k),
        SvcKey::V6(k) => maps.delete_service6(k),
    }
}

pub(super) fn put_src_range<M: MapOps>(
    maps: &mut M,
    svc_id: u32,
    r: (IpAddr, u8),
) -> xlb_bpf::Result<()> {
    match r.0 {
        IpAddr::V4(a) => maps.put_src_range(&xlb_src_range_key::new(svc_id, a, r.1)),
        IpAddr::V6(a) => maps.put_src_range6(&xlb_src_range6_key::new(svc_id, a, r.1)),
    }
}

pub(super) fn delete_src_range<M: MapOps>(
    maps: &mut M,
    svc_id: u32,
    r: (IpAddr, u8),
) -> xlb_bpf::Result<bool> {
    match r.0 {
        IpAddr::V4(a) => maps.delete_src_range(&xlb_src_range_key::new(svc_id, a, r.1)),
        IpAddr::V6(a) => maps.delete_src_range6(&xlb_src_range6_key::new(svc_id, a, r.1)),
    }
}

/// Every source range of both maps as `(svc_id, (network, prefix))`.
pub(super) fn src_ranges<M: MapOps>(maps: &M) -> xlb_bpf::Result<Vec<(u32, (IpAddr, u8))>> {
    let v4 = maps
        .src_ranges()?
        .into_iter()
        .map(|k| (k.svc_id(), (IpAddr::V4(k.net().0), k.net().1)));
    let v6 = maps
        .src_ranges6()?
        .into_iter()
        .map(|k| (k.svc_id(), (IpAddr::V6(k.net().0), k.net().1)));
    Ok(v4.chain(v6).collect())
}

pub(super) fn put_tunnel<M: MapOps>(
    maps: &mut M,
    net: (IpAddr, u8),
    t: &TunnelEntry,
) -> xlb_bpf::Result<()> {
    match (net.0, t.node) {
        (IpAddr::V4(a), IpAddr::V4(n)) => maps.put_tunnel(
            &xlb_tunnel_key::new(a, net.1),
            &xlb_tunnel_val::new(n, t.vtep_mac),
        ),
        (IpAddr::V6(a), IpAddr::V6(n)) => maps.put_tunnel6(
            &xlb_tunnel6_key::new(a, net.1),
            &xlb_tunnel6_val::new(n, t.vtep_mac),
        ),
        // The model pairs a pod CIDR with its family's underlay only.
        _ => Ok(()),
    }
}

pub(super) fn delete_tunnel<M: MapOps>(maps: &mut M, net: (IpAddr, u8)) -> xlb_bpf::Result<bool> {
    match net.0 {
        IpAddr::V4(a) => maps.delete_tunnel(&xlb_tunnel_key::new(a, net.1)),
        IpAddr::V6(a) => maps.delete_tunnel6(&xlb_tunnel6_key::new(a, net.1)),
    }
}

/// Every tunnel entry of both maps.
pub(super) fn tunnels<M: MapOps>(maps: &M) -> xlb_bpf::Result<Vec<((IpAddr, u8), TunnelEntry)>> {
    let v4 = maps.tunnels()?.into_iter().map(|(k, v)| {
        (
            (IpAddr::V4(k.net().0), k.net().1),
            TunnelEntry {
                node: IpAddr::V4(v.node()),
                vtep_mac: v.vtep_mac,
            },
        )
    });
    let v6 = maps.tunnels6()?.into_iter().map(|(k, v)| {
        (
            (IpAddr::V6(k.net().0), k.net().1),
            TunnelEntry {
                node: IpAddr::V6(v.node()),
                vtep_mac: v.vtep_mac,
            },
        )
    });
    Ok(v4.chain(v6).collect())
}
