//! # The pin directory itself
//!
//! Checks of a `--pin-dir` path, and making it: on bpffs, mounting bpffs
//! there when it is not (never over a directory with files).

use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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
