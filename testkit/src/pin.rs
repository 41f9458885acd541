//! bpffs pin directories made by a test, removed on drop.
use std::path::{Path, PathBuf};

const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// A unique directory under /sys/fs/bpf (mounted there first if it is not
/// bpffs yet); removed on drop with every pin in it, which releases pinned
/// links and so detaches their programs. Files the code under test keeps
/// beside the directory (`also`) are removed too.
pub struct PinDir {
    pub path: PathBuf,
    pub also: Vec<PathBuf>,
}

impl PinDir {
    pub fn new() -> Self {
        if !is_bpffs(Path::new(BPFFS)) {
            crate::sh(&["mount", "-t", "bpf", "bpf", BPFFS]);
        }
        let path = Path::new(BPFFS).join(crate::unique_name("xlb-t-"));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self {
            path,
            also: Vec::new(),
        }
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        for f in &self.also {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn is_bpffs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}
