//! Node-wide settings the agent writes: source ranges, tunnel peers, local
//! and remote node addresses and the `config` entry.

use std::net::Ipv4Addr;

use libbpf_rs::{MapCore, MapFlags};

use super::access::{del, entries, from_bytes, get, map_err, put};
use super::{Error, Maps, Result};
use crate::types::*;
use crate::wire::be32;

impl Maps {
    pub fn put_src_range(&self, k: &xlb_src_range_key) -> Result<()> {
        put(&self.src_ranges, "src_ranges", k, &1u32)
    }
    pub fn delete_src_range(&self, k: &xlb_src_range_key) -> Result<bool> {
        del(&self.src_ranges, "src_ranges", k)
    }
    pub fn src_ranges(&self) -> Result<Vec<xlb_src_range_key>> {
        Ok(
            entries::<xlb_src_range_key, u32>(&self.src_ranges, "src_ranges")?
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
        )
    }

    pub fn put_tunnel(&self, k: &xlb_tunnel_key, v: &xlb_tunnel_val) -> Result<()> {
        put(&self.tunnel, "tunnel", k, v)
    }
    pub fn delete_tunnel(&self, k: &xlb_tunnel_key) -> Result<bool> {
        del(&self.tunnel, "tunnel", k)
    }
    pub fn tunnels(&self) -> Result<Vec<(xlb_tunnel_key, xlb_tunnel_val)>> {
        entries(&self.tunnel, "tunnel")
    }

    pub fn put_local_addr(&self, a: Ipv4Addr) -> Result<()> {
        put(&self.local_addrs, "local_addrs", &be32(a), &1u32)
    }
    pub fn delete_local_addr(&self, a: Ipv4Addr) -> Result<bool> {
        del(&self.local_addrs, "local_addrs", &be32(a))
    }
    pub fn local_addrs(&self) -> Result<Vec<Ipv4Addr>> {
        let mut v: Vec<Ipv4Addr> = entries::<u32, u32>(&self.local_addrs, "local_addrs")?
            .into_iter()
            .map(|(k, _)| crate::wire::ip(k))
            .collect();
        v.sort();
        Ok(v)
    }

    /// `svc_stable`, or [`Error::MissingMap`] for pins of an older xlb.
    fn svc_stable_map(&self) -> Result<&libbpf_rs::MapHandle> {
        self.svc_stable.as_ref().ok_or_else(|| Error::MissingMap {
            name: "svc_stable",
            dir: self.pin_dir.clone().unwrap_or_default(),
            feature: "stateless UDP flows",
        })
    }
    /// Whether the pins have `svc_stable` (an older xlb's do not: every flow
    /// is then kept in ct).
    pub fn has_svc_stable(&self) -> bool {
        self.svc_stable.is_some()
    }
    /// The table Service port `svc_id`'s stateless UDP flows follow
    /// (docs/dp.md, "Stateless flows"); all zero when it has none.
    pub fn svc_stable(&self, svc_id: u32) -> Result<xlb_svc_stable> {
        Ok(get(self.svc_stable_map()?, "svc_stable", &svc_id)?.unwrap_or_default())
    }
    /// Writes `svc_stable[svc_id]`; `ct_seen` is set to the current
    /// CLOCK_MONOTONIC time whatever `v` says (the data plane must then look
    /// ct up for the Service's flows for one more ct_udp).
    pub fn put_svc_stable(&self, svc_id: u32, v: &xlb_svc_stable) -> Result<()> {
        let v = xlb_svc_stable {
            ct_seen: crate::maps::monotonic_ns(),
            ..*v
        };
        put(self.svc_stable_map()?, "svc_stable", &svc_id, &v)
    }
    /// Writes `svc_stable[svc_id]` of a Service no ct entry can exist of
    /// (a frontend just created: nothing was balanced to it yet), `ct_seen`
    /// 0: the data plane skips the ct lookup for its UDP flows from the start.
    pub fn put_svc_stable_new(&self, svc_id: u32, v: &xlb_svc_stable) -> Result<()> {
        let v = xlb_svc_stable { ct_seen: 0, ..*v };
        put(self.svc_stable_map()?, "svc_stable", &svc_id, &v)
    }
    /// Every `svc_stable` entry that is not all zero (`ct_seen` aside), by
    /// svc_id (one batched read of the array: a restarted agent adopts them).
    pub fn svc_stables(&self) -> Result<Vec<(u32, xlb_svc_stable)>> {
        let map = self.svc_stable_map()?;
        let mut out = Vec::new();
        for (kb, vb) in map
            .lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)
            .map_err(map_err("lookup_batch", "svc_stable"))?
        {
            let id: u32 = from_bytes("svc_stable", &kb)?;
            let v: xlb_svc_stable = from_bytes("svc_stable", &vb)?;
            if v.table_size != 0 || v.table_off != 0 || v.window_end != 0 {
                out.push((id, v));
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// `remote_addrs`, or [`Error::MissingMap`] for pins of an older xlb.
    fn remote_map(&self) -> Result<&libbpf_rs::MapHandle> {
        self.remote_addrs.as_ref().ok_or_else(|| Error::MissingMap {
            name: "remote_addrs",
            dir: self.pin_dir.clone().unwrap_or_default(),
            feature: "NodePorts of other nodes balanced for pods",
        })
    }
    pub fn put_remote_addr(&self, a: Ipv4Addr) -> Result<()> {
        put(self.remote_map()?, "remote_addrs", &be32(a), &1u32)
    }
    pub fn delete_remote_addr(&self, a: Ipv4Addr) -> Result<bool> {
        del(self.remote_map()?, "remote_addrs", &be32(a))
    }
    /// Whether `a` is in `remote_addrs` (never for pins of an older xlb).
    pub fn is_remote_addr(&self, a: Ipv4Addr) -> Result<bool> {
        let Some(m) = &self.remote_addrs else {
            return Ok(false);
        };
        Ok(super::access::get::<u32, u32>(m, "remote_addrs", &be32(a))?.is_some())
    }
    /// The other nodes' addresses, sorted; none for pins of an older xlb.
    pub fn remote_addrs(&self) -> Result<Vec<Ipv4Addr>> {
        let Some(m) = &self.remote_addrs else {
            return Ok(Vec::new());
        };
        let mut v: Vec<Ipv4Addr> = entries::<u32, u32>(m, "remote_addrs")?
            .into_iter()
            .map(|(k, _)| crate::wire::ip(k))
            .collect();
        v.sort();
        Ok(v)
    }

    // --- config -----------------------------------------------------------

    pub fn config(&self) -> Result<xlb_config> {
        Ok(get(&self.config, "config", &0u32)?.unwrap_or_default())
    }
    /// Writes `config`, then voids the XDP flow cache's copies (`ct_epoch`):
    /// a copy may carry a decision the old settings made (a flow kept out of
    /// ct under tunnel NAT, which must get its ct entries once it is off).
    pub fn put_config(&self, c: &xlb_config) -> Result<()> {
        put(&self.config, "config", &0u32, c)?;
        self.bump_ct_epoch()
    }
}
