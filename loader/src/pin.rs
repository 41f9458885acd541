//! # The pin directory
//!
//! Layout under the pin directory (default `/sys/fs/bpf/xlb`):
//!
//! ```text
//! <pin>/services, ct, ... stats         the contract maps ([`CONTRACT_MAPS`], by name): reused
//!                                       by every later load, a different layout is refused
//! <pin>/private/flow_cache, ...         the data plane's own caches and clock ([`PRIVATE_MAPS`]):
//!                                       reused while their layout matches, else replaced
//! <pin>/progs/xdp, <pin>/progs/tc       the programs last attached (the agent attaches
//!                                       new pod veths with them; replaced on upgrade)
//! <pin>/links/xdp_<ifname>              bpf_link of the uplink XDP program
//! <pin>/links/tcx_<ifname>              bpf_link of a pod veth's tcx ingress program
//! <pin>/links/tc_<ifname>               classic tc (clsact) fallback: the program, pinned
//!                                       so detach knows the filter is ours
//! (Service names live outside bpffs, in /run/xlb: see [`crate::names`])
//! ```
//!
//! bpffs holds only BPF objects, directories and symlinks.
//!
//! Here: the layout (map roles and paths), object kinds, pin and unpin. The
//! directory itself (checks, bpffs mount) is in `dir`; pinned maps against
//! the object's specs in `maps`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use crate::{sys, Error, Result};

mod dir;
mod maps;

pub use dir::*;
pub use maps::*;

/// The maps userspace reads or writes (`xlb_bpf::Maps`), or whose contents
/// must outlive a restart (connection tracking, the filters' counts,
/// `ct_epoch`). Pinned at `<pin>/<name>` and reused by every later load; one
/// pinned with another layout fails the load ([`check_pinned_maps`]), as
/// recreating it would drop state.
pub const CONTRACT_MAPS: [&str; 31] = [
    "services",
    "fe_filter",
    "be_filter",
    "backends",
    "maglev",
    "ct",
    "ct_epoch",
    "affinity",
    "src_ranges",
    "tunnel",
    "local_addrs",
    "remote_addrs",
    "config",
    "stats",
    "sock_config",
    "sock_rnat",
    "backend_stats",
    "monitor",
    "monitor_cpu",
    "events",
    "svc_stable",
    // IPv6 (docs/ipv6.md)
    "services6",
    "backends6",
    "ct6",
    "affinity6",
    "src_ranges6",
    "tunnel6",
    "local_addrs6",
    "remote_addrs6",
    "config6",
    "sock_rnat6",
];

/// The data plane's private maps: per-CPU caches rebuilt within their entries'
/// lifetime, the timer clock, and `frag`, `frag6` (the ports of datagrams whose first
/// fragment was translated: lost on a replacement, a datagram in flight then
/// loses its later fragments, counted as `pass_frag_no_first`). Pinned under `<pin>/private/` only because a
/// map timer runs only while a pin or file descriptor holds its map; reused
/// while the layout matches, replaced without complaint when it does not
/// ([`replace_stale_private`]).
pub const PRIVATE_MAPS: [&str; 13] = [
    "flow_cache",
    "nh_cache",
    "vtep_cache",
    "nh6_cache",
    "vtep6_cache",
    "clock",
    "clock_reads",
    "frag",
    "ct_syn",
    "frag6",
    "scratch6",
    "xdp6_prog",
    "tc6_progs",
];

/// Which list a map of the objects is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapRole {
    Contract,
    Private,
}

/// The role of the map called `name`; `None` for a map in neither list
/// (libbpf's `.rodata`/`.bss`, which belong to one object and are never pinned).
pub fn map_role(name: &str) -> Option<MapRole> {
    if CONTRACT_MAPS.contains(&name) {
        Some(MapRole::Contract)
    } else if PRIVATE_MAPS.contains(&name) {
        Some(MapRole::Private)
    } else {
        None
    }
}

/// Where a map is pinned: `<pin>/<name>` for the contract, `<pin>/private/<name>`
/// for the private maps.
pub fn map_pin_path(pin_dir: &Path, name: &str, role: MapRole) -> PathBuf {
    match role {
        MapRole::Contract => pin_dir.join(name),
        MapRole::Private => private_dir(pin_dir).join(name),
    }
}

/// Directory of the pinned private maps.
pub fn private_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("private")
}

/// Directory of the pinned links.
pub fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

/// Directory of the pinned programs.
pub fn progs_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("progs")
}

/// Kind of object pinned at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjKind {
    Map,
    Prog,
    Link,
}

/// What a pinned fd is, from `/proc/self/fdinfo`.
pub fn obj_kind(fd: impl AsFd) -> Option<ObjKind> {
    let s =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
    if s.contains("\nlink_type:") {
        Some(ObjKind::Link)
    } else if s.contains("\nprog_type:") {
        Some(ObjKind::Prog)
    } else if s.contains("\nmap_type:") {
        Some(ObjKind::Map)
    } else {
        None
    }
}

/// Removes a pin; absent is fine.
pub fn unpin(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Pins `fd` at `path`, replacing a pin already there.
pub fn repin(fd: impl AsFd, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            what: format!("creating {}", dir.display()),
            err: e,
            hint: "is the pin directory on bpffs? `xlb doctor` checks".into(),
        })?;
    }
    // Pin under a temporary name and rename over the old pin: there is never
    // a moment without one.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("new_{name}"));
    unpin(&tmp).ok();
    sys::obj_pin(fd.as_fd(), &tmp).map_err(|e| Error::Io {
        what: format!("pinning {}", tmp.display()),
        err: e,
        hint: "is the pin directory on bpffs? `xlb doctor` checks".into(),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Io {
        what: format!("renaming pin {} to {}", tmp.display(), path.display()),
        err: e,
        hint: "remove the stale pin with `xlb detach --all`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::skel::{OpenSkel, SkelBuilder};
    use std::mem::MaybeUninit;

    /// Every map of both objects is in exactly one list, so a new map must be
    /// classified (contract or private) before it can be pinned.
    #[test]
    fn every_map_is_contract_or_private() {
        let mut names = Vec::new();
        let mut st = MaybeUninit::uninit();
        let xdp = xlb_bpf::xdp::XdpSkelBuilder::default()
            .open(&mut st)
            .unwrap();
        names.extend(
            xdp.open_object()
                .maps()
                .map(|m| m.name().to_string_lossy().into_owned()),
        );
        let mut st = MaybeUninit::uninit();
        let tc = xlb_bpf::tc::TcSkelBuilder::default().open(&mut st).unwrap();
        names.extend(
            tc.open_object()
                .maps()
                .map(|m| m.name().to_string_lossy().into_owned()),
        );
        for n in names.iter().filter(|n| !n.contains('.')) {
            assert!(map_role(n).is_some(), "map {n} is in no list");
        }
        for n in CONTRACT_MAPS.iter().chain(PRIVATE_MAPS.iter()) {
            assert!(
                names.iter().any(|m| m == n),
                "{n} is listed but no object has it"
            );
        }
        assert!(!CONTRACT_MAPS.iter().any(|n| PRIVATE_MAPS.contains(n)));
        // What userspace opens by name is part of the contract.
        for n in xlb_bpf::maps::MAP_NAMES {
            assert_eq!(map_role(n), Some(MapRole::Contract), "{n}");
        }
    }
}
