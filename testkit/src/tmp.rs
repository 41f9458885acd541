//! Unique temporary directories that leave nothing behind.

use std::path::{Path, PathBuf};

/// A unique directory under the system's temporary directory, removed with
/// everything in it when dropped (also when the test fails). Whatever is
/// mounted on it or below (a test's bpffs) is detached first, deepest first,
/// so the removal never reaches into a mounted filesystem.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/<prefix><unique>`, created empty.
    pub fn new(prefix: &str) -> Self {
        let d = std::env::temp_dir().join(format!("{prefix}{}", crate::unique_name("")));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        Self(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        for m in mounts_under(&self.0) {
            umount(&m);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Detaches the mount at `p` (lazily: busy mounts go when their last user
/// does).
pub fn umount(p: &Path) {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: a valid C string; an error (not mounted, not root) is ignored.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Mount points at or under `dir` in this mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    v
}
