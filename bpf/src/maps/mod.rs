//! # Typed access to every map of the data plane
//!
//! [`Maps`] holds one [`MapHandle`] per map, taken either from a loaded object
//! (tests, the loader) or from the pin directory (CLI, a restarted agent), so
//! sync, the CLI and the tests share one implementation and never poke bytes.
//!
//! By concern: [`access`] converts keys and values to bytes and errors
//! (a full map from its errno); [`mmap_array`] maps an array into memory
//! (`maglev`, `backends`, the filters); [`filter`] keeps the count filters;
//! then one file per group of maps: `services`, `tables` (backends and
//! Maglev slots), `flows` (ct, affinity), `settings` (source ranges,
//! tunnels, local and remote node addresses, config) and `stats`; `v6`
//! holds the IPv6 maps (docs/ipv6.md).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libbpf_rs::MapHandle;

mod access;
mod filter;
mod flows;
mod mmap_array;
mod services;
mod settings;
mod stats;
mod tables;
mod v6;

pub(crate) use access::from_bytes;
use access::map_err;
use filter::CountFilter;
use mmap_array::MmapArray;
pub use v6::{Maps6, MAP_NAMES6};

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
    /// Ids of `backend_stats` zeroed ahead (`crate::backend_stats`).
    pub(crate) be_zeroed: crate::backend_stats::ZeroedAhead,
    /// `remote_addrs` (the other nodes' addresses, for pods' NodePort
    /// traffic); `None` for older pins.
    remote_addrs: Option<MapHandle>,
    /// `svc_stable` (the tables stateless UDP flows follow); `None` for older
    /// pins.
    svc_stable: Option<MapHandle>,
    /// The IPv6 maps (docs/ipv6.md); `None` for pins of an xlb without IPv6.
    v6: Option<Maps6>,
    /// The pin directory the maps were opened from (for errors about maps
    /// older pins lack); `None` for a loaded object's.
    pin_dir: Option<PathBuf>,
    /// `maglev` mapped into memory (`BPF_F_MMAPABLE`), on first table access.
    maglev_mem: OnceLock<std::sync::Arc<MmapArray>>,
    /// `backends` mapped into memory (`BPF_F_MMAPABLE`), on first write.
    backends_mem: OnceLock<std::sync::Arc<MmapArray>>,
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
                .map_err(map_err("map info", name))?
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
            be_zeroed: Default::default(),
            remote_addrs: optional("remote_addrs")?,
            svc_stable: optional("svc_stable")?,
            v6: if dir.join("services6").exists() {
                Some(Maps6::open(|n| {
                    if n == "backends6" {
                        mmapable(n)
                    } else {
                        open(n)
                    }
                })?)
            } else {
                None
            },
            pin_dir: Some(dir.to_owned()),
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
            MapHandle::try_from(map).map_err(map_err("dup fd", name))
        };
        Ok(Self {
            fe_filter: CountFilter::new("fe_filter", Some(dup(&m.fe_filter, "fe_filter")?)),
            be_filter: CountFilter::new("be_filter", Some(dup(&m.be_filter, "be_filter")?)),
            ct_epoch: Some(dup(&m.ct_epoch, "ct_epoch")?),
            backend_stats: Some(dup(&m.backend_stats, "backend_stats")?),
            be_zeroed: Default::default(),
            remote_addrs: Some(dup(&m.remote_addrs, "remote_addrs")?),
            svc_stable: Some(dup(&m.svc_stable, "svc_stable")?),
            v6: Some(Maps6::open(|n| match n {
                "services6" => dup(&m.services6, n),
                "backends6" => dup(&m.backends6, n),
                "ct6" => dup(&m.ct6, n),
                "affinity6" => dup(&m.affinity6, n),
                "src_ranges6" => dup(&m.src_ranges6, n),
                "tunnel6" => dup(&m.tunnel6, n),
                "local_addrs6" => dup(&m.local_addrs6, n),
                "remote_addrs6" => dup(&m.remote_addrs6, n),
                _ => dup(&m.config6, n),
            })?),
            pin_dir: None,
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

    /// Number of entries in a hash-like map (for occupancy metrics).
    pub fn count(map: &MapHandle) -> usize {
        use libbpf_rs::MapCore;
        map.keys().count()
    }
}

/// CLOCK_MONOTONIC now, in ns: the clock of every timestamp in the maps
/// (ct `last_seen`, `svc_stable`; the data plane reads its coarse variant).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
