//! Both address families in one table: the frontends of `services` and
//! `services6`, the backend slots of `backends` and `backends6` (one id
//! space: an id is active in one of them at most), as family-neutral rows.
//! IPv6 addresses print in their canonical form (RFC 5952), in brackets
//! with a port: `[2001:db8::1]:80`.

use std::net::{IpAddr, SocketAddr};

use super::*;

/// A frontend of either services map.
#[derive(Clone, Debug)]
pub(super) struct Fe {
    /// `None` for a NodePort.
    pub(super) addr: Option<IpAddr>,
    pub(super) port: u16,
    pub(super) proto: u8,
    pub(super) v6: bool,
    pub(super) internal: bool,
    pub(super) val: xlb_svc_val,
}

impl Fe {
    pub(super) fn is_nodeport(&self) -> bool {
        self.addr.is_none()
    }

    /// `addr:port` (`[addr]:port` for IPv6), `*:port` (`[*]:port`) for a NodePort.
    pub(super) fn endpoint(&self) -> String {
        match self.addr {
            Some(a) => SocketAddr::new(a, self.port).to_string(),
            None if self.v6 => format!("[*]:{}", self.port),
            None => format!("*:{}", self.port),
        }
    }

    /// Sort key: svc_id, family, address, port, protocol.
    pub(super) fn order(&self) -> (u32, bool, Option<IpAddr>, u16, u8) {
        (self.val.svc_id, self.v6, self.addr, self.port, self.proto)
    }
}

/// Every frontend of `services` then `services6`.
pub(super) fn frontends(maps: &Maps) -> anyhow::Result<Vec<Fe>> {
    let v4 = maps.services().context("reading services")?;
    let v6 = maps.services6().context("reading services6")?;
    let mut out: Vec<Fe> = v4
        .into_iter()
        .map(|(k, val)| Fe {
            addr: (!k.is_nodeport()).then(|| IpAddr::V4(k.ip())),
            port: k.port(),
            proto: k.proto,
            v6: false,
            internal: k.is_internal(),
            val,
        })
        .collect();
    out.extend(v6.into_iter().map(|(k, val)| Fe {
        addr: (!k.is_nodeport()).then(|| IpAddr::V6(k.ip())),
        port: k.port(),
        proto: k.proto,
        v6: true,
        internal: k.is_internal(),
        val,
    }));
    out.sort_by_key(Fe::order);
    Ok(out)
}

/// A backend slot of either array.
#[derive(Clone, Copy, Debug)]
pub(super) struct Be {
    pub(super) addr: SocketAddr,
    pub(super) node: Option<IpAddr>,
    pub(super) flags: u8,
    pub(super) generation: u32,
}

/// The active backend slots of `backends` and `backends6`, by id.
pub(super) fn backends_by_id(maps: &Maps) -> anyhow::Result<BTreeMap<u32, Be>> {
    let mut out = BTreeMap::new();
    for (id, b) in maps.backends().context("reading backends")? {
        out.insert(
            id,
            Be {
                addr: SocketAddr::V4(b.sockaddr()),
                node: b.node().map(IpAddr::V4),
                flags: b.flags,
                generation: b.generation,
            },
        );
    }
    for (id, b) in maps.backends6().context("reading backends6")? {
        out.insert(
            id,
            Be {
                addr: SocketAddr::V6(b.sockaddr()),
                node: b.node().map(IpAddr::V6),
                flags: b.flags,
                generation: b.generation,
            },
        );
    }
    Ok(out)
}

/// A ct entry of either family, as printed.
pub(super) struct Flow {
    pub(super) src: SocketAddr,
    pub(super) dst: SocketAddr,
    pub(super) proto: u8,
    pub(super) reverse: bool,
    pub(super) svc_id: u32,
    pub(super) backend_id: u32,
    pub(super) generation: u32,
    pub(super) flags: u32,
    pub(super) nat: SocketAddr,
    pub(super) tunnel_peer: Option<IpAddr>,
    pub(super) last_seen: u64,
}

/// Every entry of `ct` then `ct6`.
pub(super) fn flows(maps: &Maps) -> anyhow::Result<Vec<Flow>> {
    let mut out: Vec<Flow> = maps
        .ct()
        .context("reading ct")?
        .into_iter()
        .map(|(k, v)| Flow {
            src: SocketAddr::V4(k.src()),
            dst: SocketAddr::V4(k.dst()),
            proto: k.proto,
            reverse: v.is_reverse(),
            svc_id: v.svc_id,
            backend_id: v.backend_id,
            generation: v.generation,
            flags: v.flags,
            nat: SocketAddr::V4(v.nat()),
            tunnel_peer: v.tunnel_peer().map(IpAddr::V4),
            last_seen: v.last_seen,
        })
        .collect();
    out.extend(
        maps.ct6()
            .context("reading ct6")?
            .into_iter()
            .map(|(k, v)| Flow {
                src: SocketAddr::V6(k.src()),
                dst: SocketAddr::V6(k.dst()),
                proto: k.proto,
                reverse: v.is_reverse(),
                svc_id: v.svc_id,
                backend_id: v.backend_id,
                generation: v.generation,
                flags: v.flags,
                nat: SocketAddr::V6(v.nat()),
                tunnel_peer: v.tunnel_peer().map(IpAddr::V6),
                last_seen: v.last_seen,
            }),
    );
    Ok(out)
}

/// Every entry of `affinity` then `affinity6`: (svc_id, client, value).
pub(super) fn affinities(maps: &Maps) -> anyhow::Result<Vec<(u32, IpAddr, xlb_affinity_val)>> {
    let mut out: Vec<(u32, IpAddr, xlb_affinity_val)> = maps
        .affinities()
        .context("reading affinity")?
        .into_iter()
        .map(|(k, v)| (k.svc_id, IpAddr::V4(k.client()), v))
        .collect();
    out.extend(
        maps.affinities6()
            .context("reading affinity6")?
            .into_iter()
            .map(|(k, v)| (k.svc_id, IpAddr::V6(k.client()), v)),
    );
    Ok(out)
}

/// Every source range of both families: (svc_id, network, prefix).
pub(super) fn src_ranges_all(maps: &Maps) -> anyhow::Result<Vec<(u32, IpAddr, u8)>> {
    let mut out: Vec<(u32, IpAddr, u8)> = maps
        .src_ranges()
        .context("reading src_ranges")?
        .into_iter()
        .map(|k| (k.svc_id(), IpAddr::V4(k.net().0), k.net().1))
        .collect();
    out.extend(
        maps.src_ranges6()
            .context("reading src_ranges6")?
            .into_iter()
            .map(|k| (k.svc_id(), IpAddr::V6(k.net().0), k.net().1)),
    );
    Ok(out)
}

/// A tunnel entry: ((network, prefix), node, VTEP MAC).
pub(super) type TunnelRow = ((IpAddr, u8), IpAddr, [u8; 6]);

/// Every tunnel entry of both families.
pub(super) fn tunnels_all(maps: &Maps) -> anyhow::Result<Vec<TunnelRow>> {
    let mut out: Vec<TunnelRow> = maps
        .tunnels()
        .context("reading tunnel")?
        .into_iter()
        .map(|(k, v)| {
            (
                (IpAddr::V4(k.net().0), k.net().1),
                IpAddr::V4(v.node()),
                v.vtep_mac,
            )
        })
        .collect();
    out.extend(
        maps.tunnels6()
            .context("reading tunnel6")?
            .into_iter()
            .map(|(k, v)| {
                (
                    (IpAddr::V6(k.net().0), k.net().1),
                    IpAddr::V6(v.node()),
                    v.vtep_mac,
                )
            }),
    );
    Ok(out)
}
