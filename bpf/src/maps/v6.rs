//! The IPv6 maps (docs/ipv6.md): `services6`, `backends6` (memory-mapped,
//! indexed by the ids of `backends`), `ct6`, `affinity6`, `src_ranges6`,
//! `tunnel6`, `local_addrs6`, `remote_addrs6` and `config6`, with the IPv4
//! API's shapes. Pins of an xlb without IPv6 lack them: reads give nothing,
//! writes [`Error::MissingMap`].

use std::net::Ipv6Addr;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::access::{bytes, check_index, del, entries, from_bytes, get, map_err, put};
use super::mmap_array::MmapArray;
use super::{Error, Maps, Result};
use crate::types::*;

/// Names of the IPv6 maps the agent and the CLI use, as pinned.
pub const MAP_NAMES6: [&str; 9] = [
    "services6",
    "backends6",
    "ct6",
    "affinity6",
    "src_ranges6",
    "tunnel6",
    "local_addrs6",
    "remote_addrs6",
    "config6",
];

/// One handle per IPv6 map.
#[derive(Debug)]
pub struct Maps6 {
    pub services6: MapHandle,
    pub backends6: MapHandle,
    pub ct6: MapHandle,
    pub affinity6: MapHandle,
    pub src_ranges6: MapHandle,
    pub tunnel6: MapHandle,
    pub local_addrs6: MapHandle,
    pub remote_addrs6: MapHandle,
    pub config6: MapHandle,
    /// `backends6` mapped into memory (`BPF_F_MMAPABLE`), on first write.
    backends6_mem: OnceLock<std::sync::Arc<MmapArray>>,
}

impl Maps6 {
    /// From one opener per name (pinned path or a skeleton's map).
    pub(super) fn open(mut open: impl FnMut(&'static str) -> Result<MapHandle>) -> Result<Self> {
        Ok(Self {
            services6: open("services6")?,
            backends6: open("backends6")?,
            ct6: open("ct6")?,
            affinity6: open("affinity6")?,
            src_ranges6: open("src_ranges6")?,
            tunnel6: open("tunnel6")?,
            local_addrs6: open("local_addrs6")?,
            remote_addrs6: open("remote_addrs6")?,
            config6: open("config6")?,
            backends6_mem: OnceLock::new(),
        })
    }

    /// (name, handle) of every IPv6 map, in [`MAP_NAMES6`] order.
    pub fn all(&self) -> [(&'static str, &MapHandle); 9] {
        [
            ("services6", &self.services6),
            ("backends6", &self.backends6),
            ("ct6", &self.ct6),
            ("affinity6", &self.affinity6),
            ("src_ranges6", &self.src_ranges6),
            ("tunnel6", &self.tunnel6),
            ("local_addrs6", &self.local_addrs6),
            ("remote_addrs6", &self.remote_addrs6),
            ("config6", &self.config6),
        ]
    }
}

impl Maps {
    /// The IPv6 maps; `None` for pins of an xlb without IPv6.
    pub fn v6(&self) -> Option<&Maps6> {
        self.v6.as_ref()
    }

    /// The IPv6 maps, or [`Error::MissingMap`] naming `map`.
    fn need6(&self, map: &'static str) -> Result<&Maps6> {
        self.v6.as_ref().ok_or_else(|| Error::MissingMap {
            name: map,
            dir: self.pin_dir.clone().unwrap_or_default(),
            feature: "IPv6 Services",
        })
    }

    // --- services6 --------------------------------------------------------

    pub fn service6(&self, k: &xlb_svc6_key) -> Result<Option<xlb_svc_val>> {
        match &self.v6 {
            Some(m) => get(&m.services6, "services6", k),
            None => Ok(None),
        }
    }
    /// Inserts or replaces an IPv6 frontend (one update: an atomic switch).
    pub fn put_service6(&self, k: &xlb_svc6_key, v: &xlb_svc_val) -> Result<()> {
        put(&self.need6("services6")?.services6, "services6", k, v)
    }
    pub fn delete_service6(&self, k: &xlb_svc6_key) -> Result<bool> {
        del(&self.need6("services6")?.services6, "services6", k)
    }
    pub fn services6(&self) -> Result<Vec<(xlb_svc6_key, xlb_svc_val)>> {
        match &self.v6 {
            Some(m) => entries(&m.services6, "services6"),
            None => Ok(Vec::new()),
        }
    }
    /// Capacity of `services6` (0 without it).
    pub fn services6_capacity(&self) -> u32 {
        self.v6.as_ref().map_or(0, |m| m.services6.max_entries())
    }

    // --- backends6 --------------------------------------------------------

    pub fn backend6(&self, id: u32) -> Result<Option<xlb_backend6>> {
        let Some(m) = &self.v6 else { return Ok(None) };
        let id = check_index("backends6", &m.backends6, id.into())?;
        get(&m.backends6, "backends6", &id)
    }
    /// Writes IPv6 backend `id` through the memory-mapped array, as
    /// [`Maps::put_backend`]: one aligned 32-bit store per word, then a
    /// release fence, so the backend is complete before a table names it.
    /// A new generation resets the id's counters (`backend_stats` is one
    /// array for both families).
    pub fn put_backend6(&self, id: u32, v: &xlb_backend6) -> Result<()> {
        let m = self.need6("backends6")?;
        let id = check_index("backends6", &m.backends6, id.into())?;
        let mem = MmapArray::lazy(
            &m.backends6_mem,
            &m.backends6,
            "backends6",
            std::mem::size_of::<xlb_backend6>(),
        )?;
        // `generation` is word 5 of xlb_backend6 (addr[4], port/flags/pad)
        let old_gen = mem.word(id, 5).load(Ordering::Relaxed);
        if old_gen != v.generation {
            self.reset_backend_counter(id)?;
        }
        for (w, b) in bytes(v).chunks_exact(4).enumerate() {
            let word = u32::from_ne_bytes(b.try_into().expect("4 bytes"));
            mem.word(id, w).store(word, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
        Ok(())
    }
    /// Every slot of `backends6` (index = id), active or not; empty without it.
    pub fn backend6_slots(&self) -> Result<Vec<xlb_backend6>> {
        let Some(m) = &self.v6 else {
            return Ok(Vec::new());
        };
        let mut out = vec![xlb_backend6::default(); m.backends6.max_entries() as usize];
        for (kb, vb) in m
            .backends6
            .lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)
            .map_err(map_err("lookup_batch", "backends6"))?
        {
            let id: u32 = from_bytes("backends6", &kb)?;
            if let Some(slot) = out.get_mut(id as usize) {
                *slot = from_bytes("backends6", &vb)?;
            }
        }
        Ok(out)
    }
    /// Every slot whose IPv6 backend is active.
    pub fn backends6(&self) -> Result<Vec<(u32, xlb_backend6)>> {
        Ok(self
            .backend6_slots()?
            .into_iter()
            .enumerate()
            .filter(|(_, b)| b.is_active())
            .map(|(i, b)| (i as u32, b))
            .collect())
    }

    // --- ct6, affinity6 ---------------------------------------------------

    pub fn ct6_entry(&self, k: &xlb_ct6_key) -> Result<Option<xlb_ct6_val>> {
        match &self.v6 {
            Some(m) => get(&m.ct6, "ct6", k),
            None => Ok(None),
        }
    }
    pub fn ct6(&self) -> Result<Vec<(xlb_ct6_key, xlb_ct6_val)>> {
        match &self.v6 {
            Some(m) => entries(&m.ct6, "ct6"),
            None => Ok(Vec::new()),
        }
    }
    /// Writes an IPv6 ct entry (the data plane's job; tests, tools), then
    /// voids the XDP flow cache's copies.
    pub fn put_ct6(&self, k: &xlb_ct6_key, v: &xlb_ct6_val) -> Result<()> {
        put(&self.need6("ct6")?.ct6, "ct6", k, v)?;
        self.bump_ct_epoch()
    }
    /// Deletes an IPv6 ct entry, then voids the XDP flow cache's copies.
    pub fn delete_ct6(&self, k: &xlb_ct6_key) -> Result<bool> {
        let gone = del(&self.need6("ct6")?.ct6, "ct6", k)?;
        self.bump_ct_epoch()?;
        Ok(gone)
    }
    pub fn affinity6_entry(&self, k: &xlb_affinity6_key) -> Result<Option<xlb_affinity_val>> {
        match &self.v6 {
            Some(m) => get(&m.affinity6, "affinity6", k),
            None => Ok(None),
        }
    }
    pub fn put_affinity6(&self, k: &xlb_affinity6_key, v: &xlb_affinity_val) -> Result<()> {
        put(&self.need6("affinity6")?.affinity6, "affinity6", k, v)
    }
    pub fn affinities6(&self) -> Result<Vec<(xlb_affinity6_key, xlb_affinity_val)>> {
        match &self.v6 {
            Some(m) => entries(&m.affinity6, "affinity6"),
            None => Ok(Vec::new()),
        }
    }

    // --- src_ranges6, tunnel6 ---------------------------------------------

    pub fn put_src_range6(&self, k: &xlb_src_range6_key) -> Result<()> {
        put(
            &self.need6("src_ranges6")?.src_ranges6,
            "src_ranges6",
            k,
            &1u32,
        )
    }
    pub fn delete_src_range6(&self, k: &xlb_src_range6_key) -> Result<bool> {
        del(&self.need6("src_ranges6")?.src_ranges6, "src_ranges6", k)
    }
    pub fn src_ranges6(&self) -> Result<Vec<xlb_src_range6_key>> {
        let Some(m) = &self.v6 else {
            return Ok(Vec::new());
        };
        Ok(
            entries::<xlb_src_range6_key, u32>(&m.src_ranges6, "src_ranges6")?
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
        )
    }

    pub fn put_tunnel6(&self, k: &xlb_tunnel6_key, v: &xlb_tunnel6_val) -> Result<()> {
        put(&self.need6("tunnel6")?.tunnel6, "tunnel6", k, v)
    }
    pub fn delete_tunnel6(&self, k: &xlb_tunnel6_key) -> Result<bool> {
        del(&self.need6("tunnel6")?.tunnel6, "tunnel6", k)
    }
    pub fn tunnels6(&self) -> Result<Vec<(xlb_tunnel6_key, xlb_tunnel6_val)>> {
        match &self.v6 {
            Some(m) => entries(&m.tunnel6, "tunnel6"),
            None => Ok(Vec::new()),
        }
    }

    // --- local_addrs6, remote_addrs6 --------------------------------------

    pub fn put_local_addr6(&self, a: Ipv6Addr) -> Result<()> {
        let m = self.need6("local_addrs6")?;
        put(&m.local_addrs6, "local_addrs6", &xlb_addr6::new(a), &1u32)
    }
    pub fn delete_local_addr6(&self, a: Ipv6Addr) -> Result<bool> {
        let m = self.need6("local_addrs6")?;
        del(&m.local_addrs6, "local_addrs6", &xlb_addr6::new(a))
    }
    /// This node's IPv6 addresses, sorted; none without the map.
    pub fn local_addrs6(&self) -> Result<Vec<Ipv6Addr>> {
        addrs6(self.v6.as_ref().map(|m| &m.local_addrs6), "local_addrs6")
    }

    pub fn put_remote_addr6(&self, a: Ipv6Addr) -> Result<()> {
        let m = self.need6("remote_addrs6")?;
        put(&m.remote_addrs6, "remote_addrs6", &xlb_addr6::new(a), &1u32)
    }
    pub fn delete_remote_addr6(&self, a: Ipv6Addr) -> Result<bool> {
        let m = self.need6("remote_addrs6")?;
        del(&m.remote_addrs6, "remote_addrs6", &xlb_addr6::new(a))
    }
    /// Whether `a` is in `remote_addrs6` (never without the map).
    pub fn is_remote_addr6(&self, a: Ipv6Addr) -> Result<bool> {
        let Some(m) = &self.v6 else { return Ok(false) };
        Ok(get::<_, u32>(&m.remote_addrs6, "remote_addrs6", &xlb_addr6::new(a))?.is_some())
    }
    /// The other nodes' IPv6 addresses, sorted; none without the map.
    pub fn remote_addrs6(&self) -> Result<Vec<Ipv6Addr>> {
        addrs6(self.v6.as_ref().map(|m| &m.remote_addrs6), "remote_addrs6")
    }

    // --- config6 ----------------------------------------------------------

    /// `config6` (all zero without the map).
    pub fn config6(&self) -> Result<xlb_config6> {
        match &self.v6 {
            Some(m) => Ok(get(&m.config6, "config6", &0u32)?.unwrap_or_default()),
            None => Ok(xlb_config6::default()),
        }
    }
    pub fn put_config6(&self, c: &xlb_config6) -> Result<()> {
        put(&self.need6("config6")?.config6, "config6", &0u32, c)
    }
}

fn addrs6(m: Option<&MapHandle>, name: &'static str) -> Result<Vec<Ipv6Addr>> {
    let Some(m) = m else { return Ok(Vec::new()) };
    let mut v: Vec<Ipv6Addr> = entries::<xlb_addr6, u32>(m, name)?
        .into_iter()
        .map(|(k, _)| k.ip())
        .collect();
    v.sort();
    Ok(v)
}
