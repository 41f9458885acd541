//! Typed access to every map of the data plane.
//!
//! [`Maps`] holds one [`MapHandle`] per map, taken either from a loaded object
//! (tests, the loader) or from the pin directory (CLI, a restarted agent), so
//! sync, the CLI and the tests share one implementation and never poke bytes.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::consts::*;
use crate::types::*;
use crate::wire::be32;

/// Errors of map access.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening pinned map {path}: {source} (is xlb attached? try `xlb attach --iface IF`, or pass the right --pin-dir)")]
    OpenPinned {
        path: PathBuf,
        source: libbpf_rs::Error,
    },
    #[error("{op} on map {map}: {source}")]
    Map {
        op: &'static str,
        map: &'static str,
        source: libbpf_rs::Error,
    },
    #[error("map {map} is full ({max} entries)")]
    Full { map: &'static str, max: u32 },
    #[error("{map}: index {index} out of range (max {max})")]
    OutOfRange {
        map: &'static str,
        index: u64,
        max: u32,
    },
    #[error("map {map}: value of {got} bytes, expected {want}")]
    Size {
        map: &'static str,
        got: usize,
        want: usize,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names of every map, as pinned under the pin directory.
pub const MAP_NAMES: [&str; 10] = [
    "services",
    "backends",
    "maglev",
    "ct",
    "affinity",
    "src_ranges",
    "tunnel",
    "local_addrs",
    "config",
    "stats",
];

/// One handle per data-plane map.
#[derive(Debug)]
pub struct Maps {
    pub services: MapHandle,
    pub backends: MapHandle,
    pub maglev: MapHandle,
    pub ct: MapHandle,
    pub affinity: MapHandle,
    pub src_ranges: MapHandle,
    pub tunnel: MapHandle,
    pub local_addrs: MapHandle,
    pub config: MapHandle,
    pub stats: MapHandle,
}

fn bytes<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain: a C struct of integers, every byte initialised.
    unsafe { plain::as_bytes(v) }
}

fn from_bytes<T: plain::Plain + Default + Copy>(map: &'static str, b: &[u8]) -> Result<T> {
    let mut v = T::default();
    plain::copy_from_bytes(&mut v, b).map_err(|_| Error::Size {
        map,
        got: b.len(),
        want: std::mem::size_of::<T>(),
    })?;
    Ok(v)
}

fn is_full(e: &libbpf_rs::Error) -> bool {
    matches!(e.kind(), libbpf_rs::ErrorKind::Other) && e.to_string().contains("No space left")
        || e.to_string().contains("os error 7")
        || e.to_string().contains("os error 28")
}

fn is_not_found(e: &libbpf_rs::Error) -> bool {
    matches!(e.kind(), libbpf_rs::ErrorKind::NotFound)
}

macro_rules! map_err {
    ($op:expr, $map:expr) => {
        |source| Error::Map {
            op: $op,
            map: $map,
            source,
        }
    };
}

impl Maps {
    /// Opens every map pinned under `dir` (default `/sys/fs/bpf/xlb`).
    pub fn from_pin_dir(dir: &Path) -> Result<Self> {
        let open = |name: &str| {
            let path = dir.join(name);
            MapHandle::from_pinned_path(&path).map_err(|source| Error::OpenPinned { path, source })
        };
        Ok(Self {
            services: open("services")?,
            backends: open("backends")?,
            maglev: open("maglev")?,
            ct: open("ct")?,
            affinity: open("affinity")?,
            src_ranges: open("src_ranges")?,
            tunnel: open("tunnel")?,
            local_addrs: open("local_addrs")?,
            config: open("config")?,
            stats: open("stats")?,
        })
    }

    /// Duplicates the handles of a loaded XDP skeleton's maps.
    pub fn from_skel(skel: &crate::xdp::XdpSkel<'_>) -> Result<Self> {
        let m = &skel.maps;
        let dup = |map: &libbpf_rs::MapMut<'_>, name: &'static str| {
            MapHandle::try_from(map).map_err(map_err!("dup fd", name))
        };
        Ok(Self {
            services: dup(&m.services, "services")?,
            backends: dup(&m.backends, "backends")?,
            maglev: dup(&m.maglev, "maglev")?,
            ct: dup(&m.ct, "ct")?,
            affinity: dup(&m.affinity, "affinity")?,
            src_ranges: dup(&m.src_ranges, "src_ranges")?,
            tunnel: dup(&m.tunnel, "tunnel")?,
            local_addrs: dup(&m.local_addrs, "local_addrs")?,
            config: dup(&m.config, "config")?,
            stats: dup(&m.stats, "stats")?,
        })
    }

    /// (name, handle) of every map, in [`MAP_NAMES`] order.
    pub fn all(&self) -> [(&'static str, &MapHandle); 10] {
        [
            ("services", &self.services),
            ("backends", &self.backends),
            ("maglev", &self.maglev),
            ("ct", &self.ct),
            ("affinity", &self.affinity),
            ("src_ranges", &self.src_ranges),
            ("tunnel", &self.tunnel),
            ("local_addrs", &self.local_addrs),
            ("config", &self.config),
            ("stats", &self.stats),
        ]
    }

    fn put<K: plain::Plain, V: plain::Plain>(
        map: &MapHandle,
        name: &'static str,
        k: &K,
        v: &V,
    ) -> Result<()> {
        map.update(bytes(k), bytes(v), MapFlags::ANY)
            .map_err(|source| {
                if is_full(&source) {
                    Error::Full {
                        map: name,
                        max: map.max_entries(),
                    }
                } else {
                    Error::Map {
                        op: "update",
                        map: name,
                        source,
                    }
                }
            })
    }

    fn get<K: plain::Plain, V: plain::Plain + Default + Copy>(
        map: &MapHandle,
        name: &'static str,
        k: &K,
    ) -> Result<Option<V>> {
        match map.lookup(bytes(k), MapFlags::ANY) {
            Ok(Some(b)) => Ok(Some(from_bytes(name, &b)?)),
            Ok(None) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(Error::Map {
                op: "lookup",
                map: name,
                source,
            }),
        }
    }

    /// Deletes `k`; `Ok(false)` when it was not there.
    fn del<K: plain::Plain>(map: &MapHandle, name: &'static str, k: &K) -> Result<bool> {
        match map.delete(bytes(k)) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(source) => Err(Error::Map {
                op: "delete",
                map: name,
                source,
            }),
        }
    }

    fn entries<K, V>(map: &MapHandle, name: &'static str) -> Result<Vec<(K, V)>>
    where
        K: plain::Plain + Default + Copy,
        V: plain::Plain + Default + Copy,
    {
        let mut out = Vec::new();
        for kb in map.keys() {
            // An entry may vanish between keys() and lookup (LRU, agent): skip it.
            if let Some(vb) = map
                .lookup(&kb, MapFlags::ANY)
                .or_else(|e| if is_not_found(&e) { Ok(None) } else { Err(e) })
                .map_err(map_err!("lookup", name))?
            {
                out.push((from_bytes(name, &kb)?, from_bytes(name, &vb)?));
            }
        }
        Ok(out)
    }

    // --- services ---------------------------------------------------------

    pub fn service(&self, k: &xlb_svc_key) -> Result<Option<xlb_svc_val>> {
        Self::get(&self.services, "services", k)
    }
    pub fn put_service(&self, k: &xlb_svc_key, v: &xlb_svc_val) -> Result<()> {
        Self::put(&self.services, "services", k, v)
    }
    pub fn delete_service(&self, k: &xlb_svc_key) -> Result<bool> {
        Self::del(&self.services, "services", k)
    }
    pub fn services(&self) -> Result<Vec<(xlb_svc_key, xlb_svc_val)>> {
        Self::entries(&self.services, "services")
    }

    // --- backends ---------------------------------------------------------

    fn check_index(&self, map: &'static str, h: &MapHandle, i: u64) -> Result<u32> {
        if i >= u64::from(h.max_entries()) {
            return Err(Error::OutOfRange {
                map,
                index: i,
                max: h.max_entries(),
            });
        }
        Ok(i as u32)
    }

    pub fn backend(&self, id: u32) -> Result<Option<xlb_backend>> {
        let id = self.check_index("backends", &self.backends, id.into())?;
        Self::get(&self.backends, "backends", &id)
    }
    pub fn put_backend(&self, id: u32, v: &xlb_backend) -> Result<()> {
        let id = self.check_index("backends", &self.backends, id.into())?;
        Self::put(&self.backends, "backends", &id, v)
    }
    /// Every slot whose backend is active.
    pub fn backends(&self) -> Result<Vec<(u32, xlb_backend)>> {
        let n = self.backends.max_entries();
        let mut out = Vec::new();
        for (kb, vb) in self
            .backends
            .lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)
            .map_err(map_err!("lookup_batch", "backends"))?
        {
            let id: u32 = from_bytes("backends", &kb)?;
            let b: xlb_backend = from_bytes("backends", &vb)?;
            if id < n && b.is_active() {
                out.push((id, b));
            }
        }
        Ok(out)
    }
    /// Every slot, active or not, with its generation (for adoption after restart).
    pub fn backend_slots(&self) -> Result<Vec<xlb_backend>> {
        let mut out = vec![xlb_backend::default(); self.backends.max_entries() as usize];
        for (kb, vb) in self
            .backends
            .lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)
            .map_err(map_err!("lookup_batch", "backends"))?
        {
            let id: u32 = from_bytes("backends", &kb)?;
            if let Some(slot) = out.get_mut(id as usize) {
                *slot = from_bytes("backends", &vb)?;
            }
        }
        Ok(out)
    }

    // --- maglev -----------------------------------------------------------

    /// Writes `table` at slots `[off, off + table.len())` in one batch.
    pub fn write_maglev(&self, off: u32, table: &[u32]) -> Result<()> {
        if table.is_empty() {
            return Ok(());
        }
        let end = u64::from(off) + table.len() as u64 - 1;
        self.check_index("maglev", &self.maglev, end)?;
        let keys: Vec<u32> = (off..off + table.len() as u32).collect();
        let kb: Vec<u8> = keys.iter().flat_map(|k| k.to_ne_bytes()).collect();
        let vb: Vec<u8> = table.iter().flat_map(|v| v.to_ne_bytes()).collect();
        self.maglev
            .update_batch(&kb, &vb, table.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .map_err(map_err!("update_batch", "maglev"))
    }

    /// Reads slots `[off, off + len)`.
    pub fn read_maglev(&self, off: u32, len: u32) -> Result<Vec<u32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.check_index("maglev", &self.maglev, u64::from(off) + u64::from(len) - 1)?;
        let mut out = Vec::with_capacity(len as usize);
        for k in off..off + len {
            let v: Option<u32> = Self::get(&self.maglev, "maglev", &k)?;
            out.push(v.unwrap_or(0));
        }
        Ok(out)
    }

    // --- ct / affinity ----------------------------------------------------

    pub fn ct_entry(&self, k: &xlb_ct_key) -> Result<Option<xlb_ct_val>> {
        Self::get(&self.ct, "ct", k)
    }
    pub fn put_ct(&self, k: &xlb_ct_key, v: &xlb_ct_val) -> Result<()> {
        Self::put(&self.ct, "ct", k, v)
    }
    pub fn delete_ct(&self, k: &xlb_ct_key) -> Result<bool> {
        Self::del(&self.ct, "ct", k)
    }
    pub fn ct(&self) -> Result<Vec<(xlb_ct_key, xlb_ct_val)>> {
        Self::entries(&self.ct, "ct")
    }

    pub fn affinity_entry(&self, k: &xlb_affinity_key) -> Result<Option<xlb_affinity_val>> {
        Self::get(&self.affinity, "affinity", k)
    }
    pub fn put_affinity(&self, k: &xlb_affinity_key, v: &xlb_affinity_val) -> Result<()> {
        Self::put(&self.affinity, "affinity", k, v)
    }
    pub fn delete_affinity(&self, k: &xlb_affinity_key) -> Result<bool> {
        Self::del(&self.affinity, "affinity", k)
    }
    pub fn affinities(&self) -> Result<Vec<(xlb_affinity_key, xlb_affinity_val)>> {
        Self::entries(&self.affinity, "affinity")
    }

    // --- src_ranges / tunnel / local_addrs ---------------------------------

    pub fn put_src_range(&self, k: &xlb_src_range_key) -> Result<()> {
        Self::put(&self.src_ranges, "src_ranges", k, &1u32)
    }
    pub fn delete_src_range(&self, k: &xlb_src_range_key) -> Result<bool> {
        Self::del(&self.src_ranges, "src_ranges", k)
    }
    pub fn src_ranges(&self) -> Result<Vec<xlb_src_range_key>> {
        Ok(
            Self::entries::<xlb_src_range_key, u32>(&self.src_ranges, "src_ranges")?
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
        )
    }

    pub fn put_tunnel(&self, k: &xlb_tunnel_key, v: &xlb_tunnel_val) -> Result<()> {
        Self::put(&self.tunnel, "tunnel", k, v)
    }
    pub fn delete_tunnel(&self, k: &xlb_tunnel_key) -> Result<bool> {
        Self::del(&self.tunnel, "tunnel", k)
    }
    pub fn tunnels(&self) -> Result<Vec<(xlb_tunnel_key, xlb_tunnel_val)>> {
        Self::entries(&self.tunnel, "tunnel")
    }

    pub fn put_local_addr(&self, a: Ipv4Addr) -> Result<()> {
        Self::put(&self.local_addrs, "local_addrs", &be32(a), &1u32)
    }
    pub fn delete_local_addr(&self, a: Ipv4Addr) -> Result<bool> {
        Self::del(&self.local_addrs, "local_addrs", &be32(a))
    }
    pub fn local_addrs(&self) -> Result<Vec<Ipv4Addr>> {
        let mut v: Vec<Ipv4Addr> = Self::entries::<u32, u32>(&self.local_addrs, "local_addrs")?
            .into_iter()
            .map(|(k, _)| crate::wire::ip(k))
            .collect();
        v.sort();
        Ok(v)
    }

    // --- config -----------------------------------------------------------

    pub fn config(&self) -> Result<xlb_config> {
        Ok(Self::get(&self.config, "config", &0u32)?.unwrap_or_default())
    }
    pub fn put_config(&self, c: &xlb_config) -> Result<()> {
        Self::put(&self.config, "config", &0u32, c)
    }

    // --- stats ------------------------------------------------------------

    fn counter(&self, index: u32) -> Result<xlb_counter> {
        let per_cpu = self
            .stats
            .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err!("lookup_percpu", "stats"))?
            .unwrap_or_default();
        let mut sum = xlb_counter::default();
        for b in per_cpu {
            let c: xlb_counter = from_bytes("stats", &b)?;
            sum.packets += c.packets;
            sum.bytes += c.bytes;
        }
        Ok(sum)
    }

    /// A reason counter summed over CPUs.
    pub fn reason(&self, r: crate::Reason) -> Result<xlb_counter> {
        self.counter(r.0)
    }

    /// Every reason counter, summed over CPUs.
    pub fn reasons(&self) -> Result<Vec<(crate::Reason, xlb_counter)>> {
        crate::Reason::all()
            .map(|r| Ok((r, self.counter(r.0)?)))
            .collect()
    }

    /// A Service port's packets/bytes summed over CPUs.
    pub fn svc_counter(&self, svc_id: u32) -> Result<xlb_counter> {
        let i = u64::from(XLB_STATS_SVC_BASE) + u64::from(svc_id);
        let i = self.check_index("stats", &self.stats, i)?;
        self.counter(i)
    }

    /// Number of entries in a hash-like map (for occupancy metrics).
    pub fn count(map: &MapHandle) -> usize {
        map.keys().count()
    }
}
