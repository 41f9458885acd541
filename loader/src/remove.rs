//! # Removing xlb's pins, and nothing else
//!
//! `xlb detach --all` and `xlb agent --cleanup` take away what xlb pinned
//! under a pin directory. A wrong `--pin-dir` must cost nobody a file, so
//! they act only on a directory on a bpf filesystem (`statfs` magic), and
//! there only on the entries xlb names, each of the kind xlb pins there:
//!
//! ```text
//! <pin>/<map>                    a map declared by the data plane's objects,
//!                                whose kernel name is that name too
//! <pin>/private/<map>            the data plane's private caches
//! <pin>/progs/{xdp,tc,tc_egress} programs
//! <pin>/links/{xdp,tcx,tcxe}_<if> links
//! <pin>/links/{tc,tcq}_<if>      programs (the classic tc fallback)
//! new_<any of these>             a pin caught while being replaced
//! ```
//!
//! Anything else (another tool's pins: a `--pin-dir` that is a bpffs root
//! holding Cilium's `tc/globals/`, say) is kept and reported. Directories go
//! only when nothing is left in them.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::pin::{links_dir, obj_kind, private_dir, progs_dir, ObjKind};
use crate::{sys, Error, Result};

/// What [`remove_own_pins`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// xlb's pins, removed.
    pub removed: Vec<PathBuf>,
    /// Entries xlb did not make, left where they are.
    pub kept: Vec<PathBuf>,
    /// The pin directory itself went (it was left empty and is no mount point).
    pub dir_removed: bool,
}

fn refuse(pin_dir: &Path, why: String) -> Error {
    Error::PinDir {
        path: pin_dir.to_owned(),
        why,
    }
}

/// Whether there may be xlb pins to remove under `pin_dir`: `false` when it
/// does not exist; [`Error::PinDir`] when it is anything but a directory on
/// a bpf filesystem (xlb pins nowhere else, so nothing there is xlb's).
pub fn check(pin_dir: &Path) -> Result<bool> {
    let nothing_removed = "nothing was removed";
    match std::fs::metadata(pin_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(refuse(
            pin_dir,
            format!("a part of this path is a file, not a directory; {nothing_removed}"),
        )),
        Err(e) => Err(Error::Io {
            what: format!("inspecting {}", pin_dir.display()),
            err: e,
            hint: "pass the --pin-dir xlb was attached with".into(),
        }),
        Ok(m) if !m.is_dir() => Err(refuse(
            pin_dir,
            format!(
                "it is a file, not a pin directory; xlb removes only its own pins, in a \
                 directory on a bpf filesystem; {nothing_removed}"
            ),
        )),
        Ok(_) if !crate::is_bpffs(pin_dir) => Err(refuse(
            pin_dir,
            format!(
                "it is an ordinary directory, not on a bpf filesystem: xlb pins only on bpffs, \
                 so nothing in it is xlb's and {nothing_removed}; pass the --pin-dir xlb was \
                 attached with (default {})",
                crate::DEFAULT_PIN_DIR
            ),
        )),
        Ok(_) => Ok(true),
    }
}

/// What xlb pins under a directory by a name (`None`: not an xlb name).
type KindOf = fn(&str) -> Option<ObjKind>;

/// What xlb pins under `links/` by that name (`None`: not an xlb name).
fn links_entry_kind(name: &str) -> Option<ObjKind> {
    let n = name.strip_prefix("new_").unwrap_or(name);
    if n.starts_with("xdp_") || n.starts_with("tcx_") || n.starts_with("tcxe_") {
        Some(ObjKind::Link)
    } else if n.starts_with("tc_") || n.starts_with("tcq_") {
        Some(ObjKind::Prog)
    } else {
        None
    }
}

/// What xlb pins under `progs/` by that name.
fn progs_entry_kind(name: &str) -> Option<ObjKind> {
    match name.strip_prefix("new_").unwrap_or(name) {
        "xdp" | "tc" | "tc_egress" => Some(ObjKind::Prog),
        _ => None,
    }
}

/// The kernel keeps the first 15 bytes of a map's name.
fn kernel_name(name: &str) -> &str {
    let mut end = name.len().min(libbpf_sys::BPF_OBJ_NAME_LEN as usize - 1);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Whether the pin at `path` is a BPF object of `kind` (a map also named
/// `map_name` by the kernel).
fn pinned_is(path: &Path, kind: ObjKind, map_name: Option<&str>) -> bool {
    let Ok(fd) = sys::obj_get(path) else {
        return false; // a directory, a symlink, gone meanwhile
    };
    if obj_kind(&fd) != Some(kind) {
        return false;
    }
    match map_name {
        None => true,
        Some(want) => libbpf_rs::MapInfo::new(fd.as_fd())
            .ok()
            .and_then(|i| i.name().ok().map(|n| n == kernel_name(want)))
            .unwrap_or(false),
    }
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                what: format!("reading {}", dir.display()),
                err: e,
                hint: "run as root".into(),
            })
        }
    };
    let mut v: Vec<_> = rd
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn unpin(path: &Path, r: &mut Removal) -> Result<()> {
    crate::pin::unpin(path).map_err(|e| Error::Io {
        what: format!("removing pin {}", path.display()),
        err: e,
        hint: "run as root".into(),
    })?;
    r.removed.push(path.to_owned());
    Ok(())
}

/// Unpins `path` when it is a map that xlb declares by that `name`; keeps
/// (and lists) anything else.
fn unpin_map_named(
    name: &str,
    path: &Path,
    map_names: &BTreeSet<String>,
    r: &mut Removal,
) -> Result<()> {
    if map_names.contains(name) && pinned_is(path, ObjKind::Map, Some(name)) {
        unpin(path, r)
    } else {
        r.kept.push(path.to_owned());
        Ok(())
    }
}

/// Removes xlb's pins under `pin_dir` (checked with [`check`] first): the
/// maps named in `map_names`, the programs and the links; keeps and lists
/// everything else. Hooks are not detached here (see
/// [`crate::attach::detach_all`]).
pub fn remove_own_pins(pin_dir: &Path, map_names: &BTreeSet<String>) -> Result<Removal> {
    let mut r = Removal::default();
    if !check(pin_dir)? {
        return Ok(r);
    }
    let subdirs: [(PathBuf, KindOf); 2] = [
        (links_dir(pin_dir), links_entry_kind),
        (progs_dir(pin_dir), progs_entry_kind),
    ];
    for (dir, kind_of) in &subdirs {
        if !dir.is_dir() {
            continue; // absent, or an object by that name (kept below)
        }
        for (name, path) in entries(dir)? {
            match kind_of(&name) {
                Some(k) if pinned_is(&path, k, None) => unpin(&path, &mut r)?,
                _ => r.kept.push(path),
            }
        }
        let _ = std::fs::remove_dir(dir); // only when empty
    }
    // private/: the data plane's caches, pinned by their map names.
    let private = private_dir(pin_dir);
    if private.is_dir() {
        for (name, path) in entries(&private)? {
            unpin_map_named(&name, &path, map_names, &mut r)?;
        }
        let _ = std::fs::remove_dir(&private); // only when empty
    }
    for (name, path) in entries(pin_dir)? {
        if path == private {
            if path.exists() && !path.is_dir() {
                r.kept.push(path);
            }
            continue;
        }
        if subdirs.iter().any(|(d, _)| *d == path) {
            // emptied above; what is left in it is listed already
            if path.exists() && !path.is_dir() {
                r.kept.push(path);
            }
            continue;
        }
        unpin_map_named(&name, &path, map_names, &mut r)?;
    }
    // Fails when something is left, or on a mount point: both are kept.
    r.dir_removed = std::fs::remove_dir(pin_dir).is_ok();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_xlb_names_are_candidates() {
        assert_eq!(links_entry_kind("xdp_eth0"), Some(ObjKind::Link));
        assert_eq!(links_entry_kind("tcx_veth1%2e5"), Some(ObjKind::Link));
        assert_eq!(links_entry_kind("tcxe_veth1"), Some(ObjKind::Link));
        assert_eq!(links_entry_kind("tc_veth1"), Some(ObjKind::Prog));
        assert_eq!(links_entry_kind("tcq_veth1"), Some(ObjKind::Prog));
        assert_eq!(links_entry_kind("new_xdp_eth0"), Some(ObjKind::Link));
        assert_eq!(links_entry_kind("cilium_calls"), None);
        assert_eq!(links_entry_kind("xdp"), None);
        assert_eq!(progs_entry_kind("xdp"), Some(ObjKind::Prog));
        assert_eq!(progs_entry_kind("new_tc"), Some(ObjKind::Prog));
        assert_eq!(progs_entry_kind("tc_egress"), Some(ObjKind::Prog));
        assert_eq!(progs_entry_kind("tcx"), None);
        assert_eq!(kernel_name("local_addrs"), "local_addrs");
        assert_eq!(kernel_name("a_map_name_longer_than_15"), "a_map_name_long");
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xlb-rm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_ordinary_directory_or_file_is_refused_and_left_alone() {
        let d = temp_dir("ord");
        std::fs::create_dir_all(d.join("links")).unwrap();
        std::fs::write(d.join("services"), b"mine").unwrap();
        std::fs::write(d.join("links/xdp_eth0"), b"mine").unwrap();
        let names: BTreeSet<String> = ["services".to_string()].into();

        for p in [d.clone(), d.join("services"), d.join("services/x")] {
            let e = remove_own_pins(&p, &names).unwrap_err();
            assert!(matches!(e, Error::PinDir { .. }), "{p:?}: {e}");
            assert!(e.to_string().contains("nothing was removed"), "{e}");
            assert!(!e.to_string().contains("root"), "{e}");
        }
        assert_eq!(std::fs::read(d.join("services")).unwrap(), b"mine");
        assert_eq!(std::fs::read(d.join("links/xdp_eth0")).unwrap(), b"mine");
        // Absent: nothing to do.
        assert_eq!(
            remove_own_pins(&d.join("absent"), &names).unwrap(),
            Removal::default()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
