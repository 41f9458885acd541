//! Typed access to every map of the data plane.
//!
//! [`Maps`] holds one [`MapHandle`] per map, taken either from a loaded object
//! (tests, the loader) or from the pin directory (CLI, a restarted agent), so
//! sync, the CLI and the tests share one implementation and never poke bytes.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

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
    #[error("pinned map {} was created by an older xlb without BPF_F_MMAPABLE (flags {flags:#x}); remove the old state with `xlb detach --all --pin-dir {}` or `xlb agent --cleanup --pin-dir {}` (this drops connection tracking), or delete that directory, then start xlb again", path.display(), dir.display(), dir.display())]
    NotMmapable {
        path: PathBuf,
        dir: PathBuf,
        flags: u32,
    },
    #[error("memory-mapping map {map} ({len} bytes): {source}")]
    Mmap {
        map: &'static str,
        len: usize,
        source: std::io::Error,
    },
    #[error("the pin directory {} has no map `{name}`: its data plane is of an older xlb, without {feature}; `xlb attach` with this xlb adds it (Services and connection tracking are kept)", dir.display())]
    MissingMap {
        name: &'static str,
        dir: PathBuf,
        feature: &'static str,
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
    /// `fe_filter`: counts of the services keys per slot (maps.h).
    fe_filter: CountFilter,
    /// `be_filter`: counts of the backends' addresses per slot (maps.h).
    be_filter: CountFilter,
    /// `ct_epoch` (voids the XDP flow cache); `None` for older pins.
    ct_epoch: Option<MapHandle>,
    /// `backend_stats` (per-backend forward counters, `crate::backend_stats`);
    /// `None` for older pins.
    pub(crate) backend_stats: Option<MapHandle>,
    /// `maglev` mapped into memory (`BPF_F_MMAPABLE`), on first table access.
    maglev_mem: OnceLock<MaglevMem>,
    /// `backends` mapped into memory (`BPF_F_MMAPABLE`), on first write.
    backends_mem: OnceLock<MaglevMem>,
}

/// The `maglev` array mapped shared and writable. The kernel lays an array's
/// values out `round_up(value_size, 8)` bytes apart from offset 0 of the
/// mapping, so slot `i` is the `u32` at byte `i * stride`. The data plane
/// reads slots concurrently: every access is one aligned 32-bit atomic, so a
/// slot is never torn and no store is elided or merged away.
#[derive(Debug)]
struct MaglevMem {
    base: NonNull<u8>,
    len: usize,
    stride: usize,
    slots: u32,
}

// SAFETY: the mapping is shared memory owned by this value (unmapped on
// drop); every access goes through `AtomicU32`, so it may be used from any
// thread.
unsafe impl Send for MaglevMem {}
unsafe impl Sync for MaglevMem {}

impl MaglevMem {
    /// Maps array `name` whose values are `want` bytes (a multiple of 4).
    fn map(h: &MapHandle, name: &'static str, want: usize) -> Result<Self> {
        let value_size = h.value_size() as usize;
        if value_size != want || !want.is_multiple_of(4) {
            return Err(Error::Size {
                map: name,
                got: value_size,
                want,
            });
        }
        let stride = value_size.next_multiple_of(8);
        let slots = h.max_entries();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| *p > 0)
            .unwrap_or(4096);
        let len = (slots as usize * stride).next_multiple_of(page);
        // SAFETY: a fresh mapping chosen by the kernel over the map's fd; the
        // result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                h.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Mmap {
                map: name,
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| Error::Mmap {
            map: name,
            len,
            source: std::io::Error::other("mmap returned NULL"),
        })?;
        Ok(Self {
            base,
            len,
            stride,
            slots,
        })
    }

    fn slot(&self, i: u32) -> &AtomicU32 {
        self.word(i, 0)
    }

    /// 32-bit word `w` of value `i` (w < value_size / 4).
    fn word(&self, i: u32, w: usize) -> &AtomicU32 {
        debug_assert!(i < self.slots && w * 4 < self.stride);
        // SAFETY: i < slots and w * 4 + 4 <= value_size <= stride, so the
        // word lies inside the mapping; the kernel aligns the array's values
        // to 8 bytes and the mapping to a page.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(i as usize * self.stride + w * 4)
                .cast::<AtomicU32>()
        }
    }
}

impl MaglevMem {
    /// The mapping of array `h` held in `cell`, made on first use.
    fn lazy<'a>(
        cell: &'a OnceLock<MaglevMem>,
        h: &MapHandle,
        name: &'static str,
        value_size: usize,
    ) -> Result<&'a MaglevMem> {
        if let Some(m) = cell.get() {
            return Ok(m);
        }
        let m = MaglevMem::map(h, name, value_size)?;
        // A concurrent first use may have won: its mapping is kept, ours unmapped.
        let _ = cell.set(m);
        Ok(cell.get().expect("set above"))
    }
}

impl Drop for MaglevMem {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in `map`, and no
        // reference into it outlives self (slot() borrows self).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A counting filter map (`fe_filter`, `be_filter`): a memory-mapped array
/// of u32 counts, mapped on first use; absent in pins of an older xlb.
#[derive(Debug)]
struct CountFilter {
    name: &'static str,
    handle: Option<MapHandle>,
    mem: OnceLock<MaglevMem>,
}

impl CountFilter {
    fn new(name: &'static str, handle: Option<MapHandle>) -> Self {
        Self {
            name,
            handle,
            mem: OnceLock::new(),
        }
    }

    fn mem(&self) -> Result<Option<&MaglevMem>> {
        self.handle
            .as_ref()
            .map(|h| MaglevMem::lazy(&self.mem, h, self.name, 4))
            .transpose()
    }
}

impl MaglevMem {
    /// Adds `d` to count `i` (wrapping: an uncount below zero reads as "maybe").
    fn add(&self, i: u32, d: i32) {
        self.slot(i).fetch_add(d as u32, Ordering::SeqCst);
    }

    fn get(&self, i: u32) -> u32 {
        self.slot(i).load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        (0..self.slots).all(|i| self.get(i) == 0)
    }
}

fn bytes<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain: a C struct of integers, every byte initialised.
    unsafe { plain::as_bytes(v) }
}

pub(crate) fn from_bytes<T: plain::Plain + Default + Copy>(
    map: &'static str,
    b: &[u8],
) -> Result<T> {
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
    ///
    /// A `maglev` or `backends` pinned by an older xlb (without `BPF_F_MMAPABLE`) is
    /// [`Error::NotMmapable`], which names the fix.
    pub fn from_pin_dir(dir: &Path) -> Result<Self> {
        let open = |name: &str| {
            let path = dir.join(name);
            MapHandle::from_pinned_path(&path).map_err(|source| Error::OpenPinned { path, source })
        };
        let mmapable = |name: &'static str| -> Result<MapHandle> {
            let h = open(name)?;
            let flags = libbpf_rs::MapInfo::new(h.as_fd())
                .map_err(map_err!("map info", name))?
                .info
                .map_flags;
            if flags & libbpf_rs::libbpf_sys::BPF_F_MMAPABLE == 0 {
                return Err(Error::NotMmapable {
                    path: dir.join(name),
                    dir: dir.to_owned(),
                    flags,
                });
            }
            Ok(h)
        };
        let maglev = mmapable("maglev")?;
        let backends = mmapable("backends")?;
        // Maps that older pin directories lack (their programs do not use them).
        let optional = |name: &'static str| -> Result<Option<MapHandle>> {
            if dir.join(name).exists() {
                open(name).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            fe_filter: CountFilter::new("fe_filter", optional("fe_filter")?),
            be_filter: CountFilter::new("be_filter", optional("be_filter")?),
            ct_epoch: optional("ct_epoch")?,
            backend_stats: optional("backend_stats")?,
            maglev_mem: OnceLock::new(),
            backends_mem: OnceLock::new(),
            services: open("services")?,
            backends,
            maglev,
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
            fe_filter: CountFilter::new("fe_filter", Some(dup(&m.fe_filter, "fe_filter")?)),
            be_filter: CountFilter::new("be_filter", Some(dup(&m.be_filter, "be_filter")?)),
            ct_epoch: Some(dup(&m.ct_epoch, "ct_epoch")?),
            backend_stats: Some(dup(&m.backend_stats, "backend_stats")?),
            maglev_mem: OnceLock::new(),
            backends_mem: OnceLock::new(),
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
        Self::put_flags(map, name, k, v, MapFlags::ANY)
    }

    fn put_flags<K: plain::Plain, V: plain::Plain>(
        map: &MapHandle,
        name: &'static str,
        k: &K,
        v: &V,
        flags: MapFlags,
    ) -> Result<()> {
        map.update(bytes(k), bytes(v), flags).map_err(|source| {
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
    /// Inserts or replaces a frontend. A new key is counted in `fe_filter`
    /// before it is inserted, so the data plane never skips a Service that
    /// is in the map (a count left by a failed insert is only a wasted lookup).
    pub fn put_service(&self, k: &xlb_svc_key, v: &xlb_svc_val) -> Result<()> {
        let Some(filter) = self.fe_filter.mem()? else {
            return Self::put(&self.services, "services", k, v);
        };
        let slot = crate::wire::fe_slot(k);
        filter.add(slot, 1);
        match Self::put_flags(&self.services, "services", k, v, MapFlags::NO_EXIST) {
            Ok(()) => Ok(()),
            Err(e) => {
                // already there (counted then) or not inserted: take ours back
                filter.add(slot, -1);
                match e {
                    Error::Map { source, .. }
                        if source.kind() == libbpf_rs::ErrorKind::AlreadyExists =>
                    {
                        Self::put(&self.services, "services", k, v)
                    }
                    e => Err(e),
                }
            }
        }
    }
    /// Deletes a frontend (then uncounts it in `fe_filter`).
    pub fn delete_service(&self, k: &xlb_svc_key) -> Result<bool> {
        let gone = Self::del(&self.services, "services", k)?;
        if gone {
            if let Some(filter) = self.fe_filter.mem()? {
                filter.add(crate::wire::fe_slot(k), -1);
            }
        }
        Ok(gone)
    }
    /// Recounts `fe_filter` and `be_filter` from the services and backends
    /// maps where they disagree in the one way that matters: entries present,
    /// filter empty (the pin directory of an xlb without the filters, adopted
    /// by this one). Returns whether it recounted. Call before any program
    /// uses the maps.
    pub fn filters_repair(&self) -> Result<bool> {
        let mut done = false;
        if let Some(f) = self.fe_filter.mem()? {
            if f.is_empty() {
                for (k, _) in &self.services()? {
                    f.add(crate::wire::fe_slot(k), 1);
                    done = true;
                }
            }
        }
        if let Some(f) = self.be_filter.mem()? {
            if f.is_empty() {
                for b in self.backend_slots()? {
                    if b.addr != 0 {
                        f.add(crate::wire::be_slot(b.addr), 1);
                        done = true;
                    }
                }
            }
        }
        Ok(done)
    }
    /// The `fe_filter` count of k's slot (tests); `None` without the filter.
    pub fn fe_filter_count(&self, k: &xlb_svc_key) -> Result<Option<u32>> {
        Ok(self
            .fe_filter
            .mem()?
            .map(|f| f.get(crate::wire::fe_slot(k))))
    }
    /// The `be_filter` count of addr's slot (tests); `None` without the filter.
    pub fn be_filter_count(&self, addr: Ipv4Addr) -> Result<Option<u32>> {
        Ok(self
            .be_filter
            .mem()?
            .map(|f| f.get(crate::wire::be_slot(be32(addr)))))
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
    /// Writes backend `id` through the memory-mapped array: one aligned
    /// 32-bit store per word, then a release fence, so the backend is
    /// complete before a table names it. (The update syscall on an array is
    /// no more atomic for a concurrent reader than this.)
    ///
    /// `be_filter` counts the new address before the write and uncounts the
    /// one it replaces after, so the data plane never takes a backend's
    /// address for no backend's.
    pub fn put_backend(&self, id: u32, v: &xlb_backend) -> Result<()> {
        let id = self.check_index("backends", &self.backends, id.into())?;
        let mem = MaglevMem::lazy(
            &self.backends_mem,
            &self.backends,
            "backends",
            std::mem::size_of::<xlb_backend>(),
        )?;
        // `addr` is the first word of xlb_backend
        let old_addr = mem.word(id, 0).load(Ordering::Relaxed);
        // The generation is the last word: a new one names another endpoint
        // (or none), whose counters start from zero.
        let old_gen = mem.word(id, 3).load(Ordering::Relaxed);
        if old_gen != v.generation {
            self.reset_backend_counter(id)?;
        }
        let filter = self.be_filter.mem()?.filter(|_| old_addr != v.addr);
        if let Some(f) = filter.filter(|_| v.addr != 0) {
            f.add(crate::wire::be_slot(v.addr), 1);
        }
        for (w, b) in bytes(v).chunks_exact(4).enumerate() {
            let word = u32::from_ne_bytes(b.try_into().expect("4 bytes"));
            mem.word(id, w).store(word, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
        if let Some(f) = filter.filter(|_| old_addr != 0) {
            f.add(crate::wire::be_slot(old_addr), -1);
        }
        Ok(())
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

    /// The memory-mapped `maglev` array, mapped on first use.
    fn maglev_mem(&self) -> Result<&MaglevMem> {
        MaglevMem::lazy(&self.maglev_mem, &self.maglev, "maglev", 4)
    }

    /// Checks `[off, off + len)` against the array; returns the last slot.
    fn check_maglev_range(&self, off: u32, len: usize) -> Result<u32> {
        let end = u64::from(off) + len as u64 - 1;
        self.check_index("maglev", &self.maglev, end)
    }

    /// Writes `table` at slots `[off, off + table.len())`, through the
    /// memory-mapped array: one aligned atomic 32-bit store per slot, then a
    /// release fence, so the table is complete before the caller switches a
    /// Service entry to it.
    pub fn write_maglev(&self, off: u32, table: &[u32]) -> Result<()> {
        if table.is_empty() {
            return Ok(());
        }
        self.check_maglev_range(off, table.len())?;
        let mem = self.maglev_mem()?;
        for (i, v) in table.iter().enumerate() {
            // off + i <= the last slot, checked above.
            mem.slot(off + i as u32).store(*v, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
        Ok(())
    }

    /// Reads slots `[off, off + len)` from the memory-mapped array.
    pub fn read_maglev(&self, off: u32, len: u32) -> Result<Vec<u32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.check_maglev_range(off, len as usize)?;
        let mem = self.maglev_mem()?;
        std::sync::atomic::fence(Ordering::Acquire);
        Ok((off..off + len)
            .map(|i| mem.slot(i).load(Ordering::Relaxed))
            .collect())
    }

    /// One slot through the ordinary map lookup syscall (not the mapping):
    /// what the kernel, and so the data plane, sees.
    pub fn maglev_slot_syscall(&self, slot: u32) -> Result<Option<u32>> {
        let slot = self.check_index("maglev", &self.maglev, slot.into())?;
        Self::get(&self.maglev, "maglev", &slot)
    }

    // --- ct / affinity ----------------------------------------------------

    pub fn ct_entry(&self, k: &xlb_ct_key) -> Result<Option<xlb_ct_val>> {
        Self::get(&self.ct, "ct", k)
    }
    /// Writes a ct entry, then voids the XDP flow cache's copies (`ct_epoch`).
    pub fn put_ct(&self, k: &xlb_ct_key, v: &xlb_ct_val) -> Result<()> {
        Self::put(&self.ct, "ct", k, v)?;
        self.bump_ct_epoch()
    }
    /// Deletes a ct entry, then voids the XDP flow cache's copies.
    pub fn delete_ct(&self, k: &xlb_ct_key) -> Result<bool> {
        let gone = Self::del(&self.ct, "ct", k)?;
        self.bump_ct_epoch()?;
        Ok(gone)
    }
    /// Adds 1 << 32 to `ct_epoch` (the data plane adds 1): whatever the data
    /// plane did meanwhile, the value written was never seen before.
    fn bump_ct_epoch(&self) -> Result<()> {
        let Some(h) = &self.ct_epoch else {
            return Ok(());
        };
        let old: u64 = Self::get(h, "ct_epoch", &0u32)?.unwrap_or(0);
        Self::put(h, "ct_epoch", &0u32, &old.wrapping_add(1 << 32))
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
