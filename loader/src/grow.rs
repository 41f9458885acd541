//! # Growing maps under a running data plane
//!
//! The maps whose size follows what the agent must hold ([`GROWABLE_MAPS`]:
//! frontends, backends and their counters, the Maglev slot array, session
//! affinity, source ranges, of both families) can be replaced by larger ones without a gap:
//!
//! 1. [`DataPlane::grow`] opens both objects again, gives the maps to grow
//!    their new size and shares every other map with the running data plane
//!    by file descriptor (connection tracking, config, stats, the filters,
//!    the private caches: the very same maps), loads the programs, and copies
//!    each grown map's entries into its larger successor. Nothing running
//!    sees any of it yet.
//! 2. [`commit`] pins the new maps over the old pins (rename: a pin is never
//!    missing) and swaps the programs inside every pinned link
//!    (`BPF_LINK_UPDATE` for XDP and tcx, `tc replace` for the clsact
//!    fallback; [`crate::attach::replace`]). A packet runs either the old
//!    programs on the old maps or the new programs on copies holding the
//!    same entries. A failure puts the old maps and programs back.
//!
//! Connection tracking is never grown this way: its size is a setting
//! (`--ct-entries`, `--ct6-entries`), changed only with a fresh pin directory.
//!
//! What the data plane itself writes into a grown map between the copy and
//! the swap (a new affinity entry, forward counters of `backend_stats`) stays
//! behind in the old map: an affinity entry is made again by the client's
//! next connection, and those counters lose the packets of that moment.
//! Whoever writes the agent-owned maps (`services`, `backends`, `maglev`,
//! `src_ranges`) must not write them between [`DataPlane::grow`] and
//! [`commit`], and must use the new data plane's maps afterwards.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapType};
use xlb_bpf::xdp::XdpSkelBuilder;
use xlb_bpf::Maps;

use crate::{ctx, pin, storage, DataPlane, Error, Result};

/// The maps that may be grown, in the order of [`Sizes`]' fields.
/// `backend_stats` and `backends6` follow `backends` (indexed by backend id alike).
pub const GROWABLE_MAPS: [&str; 10] = [
    "services",
    "backends",
    "backend_stats",
    "backends6",
    "maglev",
    "affinity",
    "src_ranges",
    "services6",
    "affinity6",
    "src_ranges6",
];

/// Sizes (max_entries) of the growable maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub services: u32,
    pub backends: u32,
    pub maglev: u32,
    pub affinity: u32,
    pub src_ranges: u32,
    pub services6: u32,
    pub affinity6: u32,
    pub src_ranges6: u32,
}

impl Sizes {
    /// The size of the map called `name` (`backend_stats` is `backends`).
    pub fn of(&self, name: &str) -> Option<u32> {
        Some(match name {
            "services" => self.services,
            "backends" | "backend_stats" | "backends6" => self.backends,
            "maglev" => self.maglev,
            "affinity" => self.affinity,
            "src_ranges" => self.src_ranges,
            "services6" => self.services6,
            "affinity6" => self.affinity6,
            "src_ranges6" => self.src_ranges6,
            _ => return None,
        })
    }

    /// Field-wise maximum.
    pub fn max(&self, o: &Sizes) -> Sizes {
        Sizes {
            services: self.services.max(o.services),
            backends: self.backends.max(o.backends),
            maglev: self.maglev.max(o.maglev),
            affinity: self.affinity.max(o.affinity),
            src_ranges: self.src_ranges.max(o.src_ranges),
            services6: self.services6.max(o.services6),
            affinity6: self.affinity6.max(o.affinity6),
            src_ranges6: self.src_ranges6.max(o.src_ranges6),
        }
    }
}

impl DataPlane {
    /// The current sizes of the growable maps.
    pub fn sizes(&self) -> Sizes {
        let m = &self.xdp.maps;
        Sizes {
            services: m.services.max_entries(),
            backends: m.backends.max_entries(),
            maglev: m.maglev.max_entries(),
            affinity: m.affinity.max_entries(),
            src_ranges: m.src_ranges.max_entries(),
            services6: m.services6.max_entries(),
            affinity6: m.affinity6.max_entries(),
            src_ranges6: m.src_ranges6.max_entries(),
        }
    }

    /// A data plane like this one whose growable maps are at least `want`
    /// (a smaller size keeps the map: maps never shrink), with their entries
    /// copied over and every other map shared; `None` when nothing grows.
    /// Neither pins nor links change: see [`commit`].
    pub fn grow(&self, want: &Sizes) -> Result<Option<DataPlane>> {
        let cur = self.sizes();
        let grown: Vec<(&str, u32)> = GROWABLE_MAPS
            .iter()
            .filter_map(|n| {
                let (c, w) = (cur.of(n)?, want.of(n)?);
                (w > c).then_some((*n, w))
            })
            .collect();
        if grown.is_empty() {
            return Ok(None);
        }
        let mut open = XdpSkelBuilder::default()
            .open(storage())
            .map_err(ctx("opening the XDP object"))?;
        {
            let old: HashMap<String, _> = self
                .xdp
                .object()
                .maps()
                .map(|m| (m.name().to_string_lossy().into_owned(), m))
                .collect();
            for mut map in open.open_object_mut().maps_mut() {
                let name = map.name().to_string_lossy().into_owned();
                if name.contains('.') {
                    continue; // .rodata/.bss: the object's own
                }
                if let Some((_, n)) = grown.iter().find(|(g, _)| *g == name) {
                    map.set_max_entries(*n)
                        .map_err(ctx(format!("sizing {name}")))?;
                } else {
                    let src = old.get(&name).ok_or_else(|| {
                        Error::Other(format!("map {name} is not in the running data plane"))
                    })?;
                    map.reuse_fd(src.as_fd())
                        .map_err(ctx(format!("sharing map {name}")))?;
                }
            }
        }
        let xdp = open
            .load()
            .map_err(ctx("loading the XDP object (grown maps)"))?;
        for (name, _) in &grown {
            let find = |o: &libbpf_rs::Object| {
                o.maps()
                    .find(|m| m.name() == *name)
                    .map(|m| libbpf_rs::MapHandle::try_from(&m))
            };
            let (Some(from), Some(to)) = (find(self.xdp.object()), find(xdp.object())) else {
                return Err(Error::Other(format!("map {name} missing")));
            };
            let from = from.map_err(ctx(format!("opening {name}")))?;
            let to = to.map_err(ctx(format!("opening the new {name}")))?;
            copy_entries(&from, &to).map_err(|e| match e {
                Error::Bpf { what, source } => Error::Bpf {
                    what: format!("copying {name} into its larger successor: {what}"),
                    source,
                },
                e => e,
            })?;
        }
        let tc = crate::load_tc(&xdp)?;
        let maps = Maps::from_skel(&xdp)?;
        Ok(Some(DataPlane {
            xdp,
            tc,
            maps,
            mounted: None,
        }))
    }
}

/// The id of a map.
fn map_id(fd: BorrowedFd<'_>) -> Option<u32> {
    libbpf_rs::MapInfo::new(fd).ok().map(|i| i.info.id)
}

/// Makes `new` (from [`DataPlane::grow`] of `old`) the data plane under
/// `pin_dir`: its grown maps pinned over the old ones, then its programs
/// swapped into every pinned link and pinned as the programs new pod
/// interfaces get. On failure the old pins and programs are put back and
/// the error is returned. (Socket hooks are the caller's:
/// [`crate::cgroup::attach`] with the new data plane.)
pub fn commit(pin_dir: &Path, old: &DataPlane, new: &DataPlane) -> Result<()> {
    let by_name = |dp: &DataPlane, name: &str| {
        dp.xdp
            .object()
            .maps()
            .find(|m| m.name() == name)
            .and_then(|m| libbpf_rs::MapHandle::try_from(&m).ok())
    };
    let mut repinned = Vec::new();
    let mut result = Ok(());
    for name in GROWABLE_MAPS {
        let (Some(o), Some(n)) = (by_name(old, name), by_name(new, name)) else {
            continue;
        };
        if map_id(o.as_fd()) == map_id(n.as_fd()) {
            continue; // shared, not grown
        }
        let path = pin::map_pin_path(pin_dir, name, pin::MapRole::Contract);
        if let Err(e) = pin::repin(n.as_fd(), &path) {
            result = Err(e);
            break;
        }
        repinned.push((path, o));
    }
    if result.is_ok() {
        result = crate::attach::replace(pin_dir, new).map(|_| ());
    }
    if result.is_ok() {
        result = crate::pin_tc6_progs(&new.tc, pin_dir);
    }
    if let Err(e) = result {
        for (path, o) in &repinned {
            if let Err(e) = pin::repin(o.as_fd(), path) {
                tracing::error!(pin = %path.display(), "putting the old map back: {e}");
            }
        }
        if let Err(e) = crate::attach::replace(pin_dir, old) {
            tracing::error!("putting the old programs back: {e}");
        }
        return Err(e);
    }
    Ok(())
}

/// Copies every entry of `from` into `to` (same type, key and value size;
/// `to` at least as large).
pub fn copy_entries(from: &libbpf_rs::MapHandle, to: &libbpf_rs::MapHandle) -> Result<()> {
    let flags = libbpf_rs::MapInfo::new(from.as_fd())
        .map_err(ctx("map info"))?
        .info
        .map_flags;
    match from.map_type() {
        MapType::Array if flags & libbpf_sys::BPF_F_MMAPABLE != 0 => {
            // Array elements are 8-byte aligned in the mapping.
            let elem = (from.value_size() as usize).div_ceil(8) * 8;
            let bytes = elem * from.max_entries() as usize;
            copy_mmap(from.as_fd(), to.as_fd(), bytes).map_err(|e| Error::Io {
                what: "copying a memory-mapped array".into(),
                err: e,
                hint: "is there enough memory for both copies?".into(),
            })
        }
        MapType::Array => {
            for i in 0..from.max_entries() {
                let k = i.to_ne_bytes();
                if let Some(v) = from.lookup(&k, MapFlags::ANY).map_err(ctx("lookup"))? {
                    if v.iter().any(|b| *b != 0) {
                        to.update(&k, &v, MapFlags::ANY).map_err(ctx("update"))?;
                    }
                }
            }
            Ok(())
        }
        MapType::PercpuArray => {
            for i in 0..from.max_entries() {
                let k = i.to_ne_bytes();
                if let Some(v) = from
                    .lookup_percpu(&k, MapFlags::ANY)
                    .map_err(ctx("lookup"))?
                {
                    if v.iter().flatten().any(|b| *b != 0) {
                        to.update_percpu(&k, &v, MapFlags::ANY)
                            .map_err(ctx("update"))?;
                    }
                }
            }
            Ok(())
        }
        _ => {
            // Hash, LRU hash, LPM trie: entry by entry. An entry that goes
            // between listing and lookup (an LRU eviction) is skipped.
            for k in from.keys() {
                if let Some(v) = from.lookup(&k, MapFlags::ANY).map_err(ctx("lookup"))? {
                    to.update(&k, &v, MapFlags::ANY).map_err(ctx("update"))?;
                }
            }
            Ok(())
        }
    }
}

/// Copies the first `bytes` of one memory-mappable array into another.
fn copy_mmap(from: BorrowedFd<'_>, to: BorrowedFd<'_>, bytes: usize) -> std::io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let len = bytes.div_ceil(page) * page;
    let map = |fd: BorrowedFd<'_>, prot| {
        // SAFETY: a fresh shared mapping of a BPF array of at least `len`
        // bytes (the kernel refuses a longer one); unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(p)
        }
    };
    let src = map(from, libc::PROT_READ)?;
    let dst = match map(to, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(p) => p,
        Err(e) => {
            // SAFETY: mapped above with this length.
            unsafe { libc::munmap(src, len) };
            return Err(e);
        }
    };
    // SAFETY: both mappings are at least `bytes` long and distinct.
    unsafe {
        std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes);
        libc::munmap(src, len);
        libc::munmap(dst, len);
    }
    Ok(())
}
