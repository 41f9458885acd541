//! [`View`] over the pinned (or a test's) maps.
//!
//! Every read is one lookup syscall and may race with the agent or the data
//! plane rewriting the maps: a missing entry is simply absent, an entry read
//! half-way through a rewrite is a consistent old or new value (the kernel
//! copies an element under its bucket lock, arrays word by word), and an error
//! is returned, never a panic.

use std::net::Ipv4Addr;

use anyhow::Context;
use libbpf_rs::{MapCore, MapFlags};
use xlb_bpf::types::*;
use xlb_bpf::wire::be32;
use xlb_bpf::Maps;

use super::View;

/// The maps of a pin directory or a loaded data plane.
pub struct MapsView<'a>(pub &'a Maps);

pub(super) fn lookup<K: plain::Plain, V: plain::Plain + Default>(
    map: &libbpf_rs::MapHandle,
    name: &str,
    k: &K,
) -> anyhow::Result<Option<V>> {
    // SAFETY: K is Plain.
    let kb = unsafe { plain::as_bytes(k) };
    let b = match map.lookup(kb, MapFlags::ANY) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading map {name}")),
    };
    let mut v = V::default();
    plain::copy_from_bytes(&mut v, &b)
        .map_err(|_| anyhow::anyhow!("map {name}: a value of {} bytes", b.len()))?;
    Ok(Some(v))
}

impl View for MapsView<'_> {
    fn config(&self) -> anyhow::Result<xlb_config> {
        Ok(self.0.config()?)
    }
    fn fe_filter(&self, k: &xlb_svc_key) -> anyhow::Result<Option<u32>> {
        Ok(self.0.fe_filter_count(k)?)
    }
    fn be_filter(&self, addr: Ipv4Addr) -> anyhow::Result<Option<u32>> {
        Ok(self.0.be_filter_count(addr)?)
    }
    fn service(&self, k: &xlb_svc_key) -> anyhow::Result<Option<xlb_svc_val>> {
        Ok(self.0.service(k)?)
    }
    fn is_local_addr(&self, a: Ipv4Addr) -> anyhow::Result<bool> {
        Ok(lookup::<u32, u32>(&self.0.local_addrs, "local_addrs", &be32(a))?.is_some())
    }
    fn is_remote_addr(&self, a: Ipv4Addr) -> anyhow::Result<bool> {
        Ok(self.0.is_remote_addr(a)?)
    }
    fn src_range_allows(&self, svc_id: u32, client: Ipv4Addr) -> anyhow::Result<bool> {
        let k = xlb_src_range_key::new(svc_id, client, 32);
        Ok(lookup::<xlb_src_range_key, u32>(&self.0.src_ranges, "src_ranges", &k)?.is_some())
    }
    fn affinity(&self, k: &xlb_affinity_key) -> anyhow::Result<Option<xlb_affinity_val>> {
        Ok(self.0.affinity_entry(k)?)
    }
    fn ct(&self, k: &xlb_ct_key) -> anyhow::Result<Option<xlb_ct_val>> {
        Ok(self.0.ct_entry(k)?)
    }
    fn maglev(&self, slot: u32) -> anyhow::Result<Option<u32>> {
        if slot >= self.0.maglev.max_entries() {
            return Ok(None);
        }
        Ok(self.0.maglev_slot_syscall(slot)?)
    }
    fn backend(&self, id: u32) -> anyhow::Result<Option<xlb_backend>> {
        if id >= self.0.backends.max_entries() {
            return Ok(None);
        }
        Ok(self.0.backend(id)?)
    }
    fn tunnel(&self, addr: Ipv4Addr) -> anyhow::Result<Option<xlb_tunnel_val>> {
        let k = xlb_tunnel_key::new(addr, 32);
        lookup(&self.0.tunnel, "tunnel", &k)
    }
    fn svc_stable(&self, svc_id: u32) -> anyhow::Result<Option<xlb_svc_stable>> {
        if !self.0.has_svc_stable() {
            return Ok(None);
        }
        let st = self.0.svc_stable(svc_id)?;
        Ok((st.table_size != 0).then_some(st))
    }
    fn now(&self) -> u64 {
        xlb_bpf::maps::monotonic_ns()
    }
}
