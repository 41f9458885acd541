//! # Which bpf filesystem a path is on, and whose it is
//!
//! Pins live exactly as long as the bpffs mount holding them. A bpffs that
//! xlb mounts inside a private mount namespace (the one `ip netns exec`
//! makes, remounting `/sys`) goes away with that namespace, and with it
//! every pin and pinned link: the programs are detached the moment the
//! command exits. This module tells the two apart: a bpffs is the host's
//! when the mount namespace of pid 1 has it mounted too.

use std::path::Path;

/// `statfs` magic of a bpf filesystem.
pub const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Whether `dir` is on a bpf filesystem (`statfs` magic [`BPF_FS_MAGIC`]).
pub fn is_bpffs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: zero is a valid statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// `(major, minor)` of the filesystem `path` is on.
pub fn device_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    Some((libc::major(dev), libc::minor(dev)))
}

/// The devices of the bpf filesystems mounted in a `mountinfo` text
/// (`/proc/PID/mountinfo`: field 3 is `major:minor`, the type follows ` - `).
pub fn bpffs_devices(mountinfo: &str) -> Vec<(u32, u32)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            if fs.split_whitespace().next()? != "bpf" {
                return None;
            }
            let (maj, min) = mount.split_whitespace().nth(2)?.split_once(':')?;
            Some((maj.parse().ok()?, min.parse().ok()?))
        })
        .collect()
}

/// Whether the bpffs that holds `dir` is mounted in pid 1's mount namespace
/// (the host's, or the container's when xlb runs in one): `None` when that
/// cannot be told (`dir` not on bpffs, `/proc/1/mountinfo` unreadable).
pub fn bpffs_is_hosts(dir: &Path) -> Option<bool> {
    if !is_bpffs(dir) {
        return None;
    }
    let dev = device_of(dir)?;
    let init = std::fs::read_to_string("/proc/1/mountinfo").ok()?;
    Some(bpffs_devices(&init).contains(&dev))
}

/// Whether this process shares pid 1's mount namespace: by the namespace
/// links where they can be read, else by comparing the two mount tables
/// (a copied namespace numbers its mounts anew). `None`: cannot tell.
pub fn same_mount_ns_as_init() -> Option<bool> {
    if let (Ok(a), Ok(b)) = (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        return Some(a == b);
    }
    let mine = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let init = std::fs::read_to_string("/proc/1/mountinfo").ok()?;
    Some(mine == init)
}

/// How to keep pins when the bpffs is private to this mount namespace.
pub const PRIVATE_BPFFS_FIX: &str = "run xlb in the host's mount namespace: instead of \
    `ip netns exec NAME xlb ...` (which remounts /sys privately) use \
    `nsenter --net=/run/netns/NAME xlb ...`, or mount bpffs on the host first \
    (`mount -t bpf bpf /sys/fs/bpf`)";

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
44 23 0:40 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:12 - bpf bpf rw,mode=700
61 27 0:55 / /tmp/x rw,relatime - bpf none rw
62 27 0:56 / /tmp/y\\040z rw,relatime - tmpfs bpf rw
";

    #[test]
    fn bpffs_devices_are_read_from_mountinfo() {
        // The type is the first field after " - "; a tmpfs whose source is
        // called "bpf" is not a bpffs.
        assert_eq!(bpffs_devices(MOUNTINFO), vec![(0, 40), (0, 55)]);
        assert_eq!(bpffs_devices(""), Vec::<(u32, u32)>::new());
        assert_eq!(bpffs_devices("garbage\n1 2 x:y / /a - bpf bpf rw"), vec![]);
    }

    #[test]
    fn an_ordinary_directory_is_not_bpffs() {
        let d = std::env::temp_dir();
        assert!(!is_bpffs(&d));
        assert_eq!(bpffs_is_hosts(&d), None);
        assert!(!is_bpffs(Path::new("/nonexistent/xlb")));
        assert!(device_of(&d).is_some());
    }
}
