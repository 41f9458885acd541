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

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use crate::{sys, Error, Result};

/// The maps userspace reads or writes (`xlb_bpf::Maps`), or whose contents
/// must outlive a restart (connection tracking, the filters' counts,
/// `ct_epoch`). Pinned at `<pin>/<name>` and reused by every later load; one
/// pinned with another layout fails the load ([`check_pinned_maps`]), as
/// recreating it would drop state.
pub const CONTRACT_MAPS: [&str; 20] = [
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
];

/// The data plane's private maps: per-CPU caches rebuilt within their entries'
/// lifetime, the timer clock, and `frag` (the ports of datagrams whose first
/// fragment was translated: lost on a replacement, a datagram in flight then
/// loses its later fragments, counted as `pass_frag_no_first`). Pinned under `<pin>/private/` only because a
/// map timer runs only while a pin or file descriptor holds its map; reused
/// while the layout matches, replaced without complaint when it does not
/// ([`replace_stale_private`]).
pub const PRIVATE_MAPS: [&str; 6] = [
    "flow_cache",
    "nh_cache",
    "vtep_cache",
    "clock",
    "clock_reads",
    "frag",
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

/// A bpf filesystem xlb mounted for its pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    /// The mount point (the pin directory's parent).
    pub dir: PathBuf,
    /// Whether pid 1's mount namespace has it too (`None`: cannot tell); a
    /// private one goes away, pins and links with it, when this mount
    /// namespace ends.
    pub hosts: Option<bool>,
}

impl Mounted {
    /// What an operator must know about this mount.
    pub fn note(&self) -> String {
        let private = match self.hosts {
            Some(false) => {
                ", which is not the host's (pid 1's): this is what `ip netns exec` does, and the \
                 pins and the attached programs go away when this command exits"
            }
            _ => "",
        };
        format!(
            "mounted a bpf filesystem at {}; it lives only as long as the current mount \
             namespace{private}; to avoid it, {}",
            self.dir.display(),
            crate::mounts::PRIVATE_BPFFS_FIX
        )
    }
}

fn usage(pin_dir: &Path, why: String) -> Error {
    Error::PinDir {
        path: pin_dir.to_owned(),
        why,
    }
}

/// Checks a pin directory path before anything is created or mounted: the
/// pin directory and every ancestor that exists are directories.
pub fn check_pin_dir_path(pin_dir: &Path) -> Result<()> {
    let mut p = pin_dir;
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(usage(
                    pin_dir,
                    format!(
                        "{} is a file, not a directory; pass a directory on a bpf filesystem, \
                         e.g. --pin-dir {}",
                        p.display(),
                        crate::DEFAULT_PIN_DIR
                    ),
                ))
            }
            // ENOTDIR: an ancestor is a file; it is found further up.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                match p.parent().filter(|q| !q.as_os_str().is_empty()) {
                    Some(q) => p = q,
                    None => return Ok(()),
                }
            }
            Err(e) => {
                return Err(Error::Io {
                    what: format!("inspecting {}", p.display()),
                    err: e,
                    hint: "pass a --pin-dir this user can read".into(),
                })
            }
        }
    }
}

/// Whether `dir` (an existing directory) has no entries.
fn is_empty_dir(dir: &Path) -> Result<bool> {
    let mut rd = std::fs::read_dir(dir).map_err(|e| Error::Io {
        what: format!("reading {}", dir.display()),
        err: e,
        hint: "pass a --pin-dir this user can read".into(),
    })?;
    Ok(rd.next().is_none())
}

/// Makes sure `pin_dir` exists on a bpf filesystem. When the nearest
/// existing ancestor is not on bpffs, mounts one at the pin directory's
/// parent, but only on a new or empty directory (never over files), and
/// returns what it mounted. A pin directory that is (or lies under) a file
/// is [`Error::PinDir`]; a failure leaves no mount behind.
pub fn ensure_pin_dir(pin_dir: &Path) -> Result<Option<Mounted>> {
    check_pin_dir_path(pin_dir)?;
    if crate::is_bpffs(pin_dir) {
        return Ok(None);
    }
    let parent = pin_dir.parent().filter(|p| !p.as_os_str().is_empty());
    let Some(parent) = parent else {
        return Err(usage(
            pin_dir,
            format!(
                "it has no parent to mount bpffs on; use e.g. --pin-dir {}",
                crate::DEFAULT_PIN_DIR
            ),
        ));
    };
    let mut anc = parent;
    while !anc.exists() {
        match anc.parent() {
            Some(p) => anc = p,
            None => break,
        }
    }
    if crate::is_bpffs(anc) {
        return create_pin_dir(pin_dir).map(|()| None);
    }
    if parent.exists() && !is_empty_dir(parent)? {
        return Err(usage(
            pin_dir,
            format!(
                "{} is not on a bpf filesystem and has files in it; xlb mounts bpffs only on a \
                 new or empty directory, never over files. Pass a --pin-dir on a bpffs (e.g. {}) \
                 or under a new directory, or mount one yourself: `mount -t bpf bpf DIR`",
                parent.display(),
                crate::DEFAULT_PIN_DIR
            ),
        ));
    }
    // The directories made here go again when the mount fails.
    let mut made = Vec::new();
    let mut d = parent;
    while !d.exists() {
        made.push(d.to_owned());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    let undo = |made: &[PathBuf]| {
        for d in made {
            let _ = std::fs::remove_dir(d);
        }
    };
    std::fs::create_dir_all(parent).map_err(|e| {
        undo(&made);
        Error::Io {
            what: format!("creating {}", parent.display()),
            err: e,
            hint: "pass a --pin-dir under a writable directory".into(),
        }
    })?;
    tracing::info!(dir = %parent.display(), "mounting bpffs");
    if let Err(e) = sys::mount_bpffs(parent) {
        undo(&made);
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            format!(
                "mounting needs CAP_SYS_ADMIN: run as root, or mount it yourself: \
                 `mount -t bpf bpf {}`",
                parent.display()
            )
        } else {
            format!("mount it yourself: `mount -t bpf bpf {}`", parent.display())
        };
        return Err(Error::Io {
            what: format!("mounting bpffs at {}", parent.display()),
            err: e,
            hint,
        });
    }
    if let Err(e) = create_pin_dir(pin_dir) {
        let _ = sys::umount(parent);
        undo(&made);
        return Err(e);
    }
    Ok(Some(Mounted {
        dir: parent.to_owned(),
        hosts: crate::mounts::bpffs_is_hosts(parent),
    }))
}

fn create_pin_dir(pin_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(pin_dir).map_err(|e| Error::Io {
        what: format!("creating pin directory {}", pin_dir.display()),
        err: e,
        hint: "bpffs needs CAP_SYS_ADMIN or a delegated mount: run as root".into(),
    })
}

/// The shape a map must have to be reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// max_entries of the map pinned at `path`, if one is (any error: `None`,
/// and [`check_pinned_maps`] reports what is wrong with it).
pub fn pinned_max_entries(path: &Path) -> Option<u32> {
    let fd = sys::obj_get(path).ok()?;
    (obj_kind(&fd)? == ObjKind::Map).then_some(())?;
    Some(libbpf_rs::MapInfo::new(fd.as_fd()).ok()?.info.max_entries)
}

/// How the object pinned at `path` differs from `spec`: `None` when nothing
/// is pinned there or it has the same layout, else why it cannot be reused.
fn pinned_mismatch(path: &Path, spec: &MapSpec) -> Option<String> {
    std::fs::symlink_metadata(path).ok()?;
    let fd = match sys::obj_get(path) {
        Ok(fd) => fd,
        Err(e) => return Some(format!("it cannot be opened as a BPF object ({e})")),
    };
    match obj_kind(&fd) {
        Some(ObjKind::Map) => {}
        Some(k) => return Some(format!("it is a {k:?}, not a map")),
        None => return Some("it is not a BPF map".into()),
    }
    let info = match libbpf_rs::MapInfo::new(fd.as_fd()) {
        Ok(i) => i.info,
        Err(e) => return Some(format!("its map info cannot be read ({e})")),
    };
    let mut diffs = Vec::new();
    let mut cmp = |what: &str, have: u32, want: u32| {
        if have != want {
            diffs.push(format!("{what} {have} (expected {want})"));
        }
    };
    cmp("type", info.type_, spec.map_type);
    cmp("key size", info.key_size, spec.key_size);
    cmp("value size", info.value_size, spec.value_size);
    cmp("max entries", info.max_entries, spec.max_entries);
    cmp("flags", info.map_flags, spec.flags);
    let mmapable = libbpf_sys::BPF_F_MMAPABLE;
    if spec.flags & mmapable != 0 && info.map_flags & mmapable == 0 {
        diffs.push(format!(
            "it lacks BPF_F_MMAPABLE ({mmapable:#x}): this xlb writes {} as memory",
            spec.name
        ));
    }
    (!diffs.is_empty()).then(|| {
        format!(
            "it was made by another xlb version or with other sizes: {}",
            diffs.join(", ")
        )
    })
}

/// Checks every contract map already pinned under `pin_dir` against what
/// this xlb would create; a mismatch is a [`Error::StalePin`] naming the fix.
pub fn check_pinned_maps(pin_dir: &Path, specs: &[MapSpec]) -> Result<()> {
    for spec in specs {
        let path = pin_dir.join(&spec.name);
        if let Some(why) = pinned_mismatch(&path, spec) {
            return Err(Error::StalePin {
                path,
                why,
                pin_dir: pin_dir.to_owned(),
            });
        }
    }
    Ok(())
}

/// Removes the pins of private maps that this xlb cannot reuse: one under
/// `<pin>/private/` of another layout, and one an older xlb left at
/// `<pin>/<name>` (where it pinned every map). The load then creates and pins
/// them afresh. Returns what was removed.
pub fn replace_stale_private(pin_dir: &Path, specs: &[MapSpec]) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for spec in specs {
        let legacy = pin_dir.join(&spec.name);
        let path = map_pin_path(pin_dir, &spec.name, MapRole::Private);
        let stale = [
            (std::fs::symlink_metadata(&legacy).is_ok()).then_some(legacy),
            pinned_mismatch(&path, spec).map(|_| path),
        ];
        for p in stale.into_iter().flatten() {
            unpin(&p).map_err(|e| Error::Io {
                what: format!("removing the stale private map pin {}", p.display()),
                err: e,
                hint: "is the pin directory writable (root)?".into(),
            })?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Contract maps whose value only ever grows at its end (a new build appends
/// fields whose zero means "the default"): `config`. A pinned one of an older,
/// shorter layout is migrated instead of refused ([`take_grown`]).
pub const GROWING_MAPS: [&str; 1] = ["config"];

/// For each of [`GROWING_MAPS`] pinned with a shorter value than `specs` say
/// (an older xlb's, otherwise alike): reads its one value and removes the pin,
/// so that the load creates this build's layout; the caller writes the old
/// bytes back, zero-extended ([`crate::DataPlane::load`]). Every other
/// contract pin is checked first ([`check_pinned_maps`]): a load refused for
/// another map's layout leaves the older pin where it was.
pub fn take_grown(pin_dir: &Path, specs: &[MapSpec]) -> Result<Vec<(String, Vec<u8>)>> {
    use libbpf_rs::MapCore;
    let mut older = Vec::new();
    for spec in specs
        .iter()
        .filter(|s| GROWING_MAPS.contains(&s.name.as_str()))
    {
        let path = map_pin_path(pin_dir, &spec.name, MapRole::Contract);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let Ok(m) = libbpf_rs::MapHandle::from_pinned_path(&path) else {
            continue; // not a map: check_pinned_maps says so
        };
        let is_older = m.map_type() as u32 == spec.map_type
            && m.key_size() == spec.key_size
            && m.value_size() < spec.value_size
            && m.max_entries() == spec.max_entries;
        if !is_older {
            continue;
        }
        let old = m
            .lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .ok()
            .flatten()
            .unwrap_or_default();
        older.push((spec.name.clone(), path, old));
    }
    let others: Vec<MapSpec> = specs
        .iter()
        .filter(|s| !older.iter().any(|(n, _, _)| *n == s.name))
        .cloned()
        .collect();
    check_pinned_maps(pin_dir, &others)?;
    let mut out = Vec::new();
    for (name, path, old) in older {
        unpin(&path).map_err(|e| Error::Io {
            what: format!("replacing the older {name} pin {}", path.display()),
            err: e,
            hint: "is the pin directory writable (root)?".into(),
        })?;
        out.push((name, old));
    }
    Ok(out)
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

    /// A temporary directory of ordinary files, removed on drop.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("xlb-pin-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Self(d)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn is_usage(r: Result<Option<Mounted>>) -> String {
        match r {
            Err(e @ Error::PinDir { .. }) => e.to_string(),
            other => panic!("expected a --pin-dir usage error, got {other:?}"),
        }
    }

    #[test]
    fn a_file_as_pin_dir_or_ancestor_is_a_usage_error() {
        let t = Tmp::new("file");
        let f = t.0.join("f");
        std::fs::write(&f, b"keep").unwrap();
        for p in [f.clone(), f.join("xlb"), f.join("a/b")] {
            let e = is_usage(ensure_pin_dir(&p));
            assert!(e.contains("is a file, not a directory"), "{e}");
            assert!(!e.contains("root"), "{e}");
        }
        assert_eq!(std::fs::read(&f).unwrap(), b"keep");
        assert!(!crate::is_bpffs(&t.0), "nothing mounted");
        check_pin_dir_path(&t.0.join("new/xlb")).unwrap();
    }

    #[test]
    fn never_mounts_over_a_directory_with_files() {
        let t = Tmp::new("full");
        std::fs::write(t.0.join("keep.txt"), b"keep").unwrap();
        let e = is_usage(ensure_pin_dir(&t.0.join("xlb")));
        assert!(e.contains("has files in it"), "{e}");
        assert!(!crate::is_bpffs(&t.0));
        assert!(!t.0.join("xlb").exists(), "nothing created");
        assert_eq!(std::fs::read(t.0.join("keep.txt")).unwrap(), b"keep");
        // The pin directory itself an ordinary directory: its parent is checked.
        let e = is_usage(ensure_pin_dir(&t.0));
        assert!(e.contains("has files in it"), "{e}");
    }

    #[test]
    fn the_mount_note_names_the_namespace_and_the_way_out() {
        let private = Mounted {
            dir: "/sys/fs/bpf".into(),
            hosts: Some(false),
        }
        .note();
        assert!(private.contains("only as long as the current mount namespace"));
        assert!(private.contains("not the host's") && private.contains("ip netns exec"));
        assert!(private.contains("nsenter --net=/run/netns/NAME"));
        let host = Mounted {
            dir: "/sys/fs/bpf".into(),
            hosts: Some(true),
        }
        .note();
        assert!(host.contains("only as long as the current mount namespace"));
        assert!(!host.contains("not the host's"));
    }
}
