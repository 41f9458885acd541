//! # Socket hooks on the cgroup v2 root
//!
//! The socket programs of `sock.bpf.c` (connect4, sendmsg4, recvmsg4,
//! getpeername4, and their IPv6 twins connect6, sendmsg6, recvmsg6,
//! getpeername6) balance what the node's own processes send. They are loaded
//! as a third object sharing the data plane's maps ([`SockLb::load`]),
//! attached to the root of the cgroup v2 hierarchy through bpf_links pinned
//! as `<pin>/links/cgroup_<hook>` ([`attach`]: a second run swaps the program
//! inside each link, [`detach`] removes them), and act only in the network
//! namespace whose cookie [`attach`] writes into `sock_config`: the root
//! cgroup holds every process of the machine, whatever its namespace.
//! Links are multi-attach, so several xlb instances (the lab's nodes, one
//! per namespace) coexist on one cgroup.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use xlb_bpf::sock::{SockSkel, SockSkelBuilder};
use xlb_bpf::types::xlb_sock_config;

use crate::pin::{self, links_dir};
use crate::{ctx, storage, sys, DataPlane, Error, Result};

/// Prefix of the socket hooks' link pins under `<pin>/links/`.
pub const LINK_PREFIX: &str = "cgroup_";

/// One socket hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockHook {
    Connect4,
    Sendmsg4,
    Recvmsg4,
    Getpeername4,
    Connect6,
    Sendmsg6,
    Recvmsg6,
    Getpeername6,
}

impl SockHook {
    pub const ALL: [SockHook; 8] = [
        SockHook::Connect4,
        SockHook::Sendmsg4,
        SockHook::Recvmsg4,
        SockHook::Getpeername4,
        SockHook::Connect6,
        SockHook::Sendmsg6,
        SockHook::Recvmsg6,
        SockHook::Getpeername6,
    ];

    /// The kernel's name of the hook (libbpf section `cgroup/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            SockHook::Connect4 => "connect4",
            SockHook::Sendmsg4 => "sendmsg4",
            SockHook::Recvmsg4 => "recvmsg4",
            SockHook::Getpeername4 => "getpeername4",
            SockHook::Connect6 => "connect6",
            SockHook::Sendmsg6 => "sendmsg6",
            SockHook::Recvmsg6 => "recvmsg6",
            SockHook::Getpeername6 => "getpeername6",
        }
    }

    pub fn attach_type(self) -> libbpf_sys::bpf_attach_type {
        match self {
            SockHook::Connect4 => libbpf_sys::BPF_CGROUP_INET4_CONNECT,
            SockHook::Sendmsg4 => libbpf_sys::BPF_CGROUP_UDP4_SENDMSG,
            SockHook::Recvmsg4 => libbpf_sys::BPF_CGROUP_UDP4_RECVMSG,
            SockHook::Getpeername4 => libbpf_sys::BPF_CGROUP_INET4_GETPEERNAME,
            SockHook::Connect6 => libbpf_sys::BPF_CGROUP_INET6_CONNECT,
            SockHook::Sendmsg6 => libbpf_sys::BPF_CGROUP_UDP6_SENDMSG,
            SockHook::Recvmsg6 => libbpf_sys::BPF_CGROUP_UDP6_RECVMSG,
            SockHook::Getpeername6 => libbpf_sys::BPF_CGROUP_INET6_GETPEERNAME,
        }
    }

    /// Name of the program in `sock.bpf.c` (as the kernel shows it).
    pub fn prog_name(self) -> &'static str {
        match self {
            SockHook::Connect4 => "xlb_connect4",
            SockHook::Sendmsg4 => "xlb_sendmsg4",
            SockHook::Recvmsg4 => "xlb_recvmsg4",
            SockHook::Getpeername4 => "xlb_getpeer4",
            SockHook::Connect6 => "xlb_connect6",
            SockHook::Sendmsg6 => "xlb_sendmsg6",
            SockHook::Recvmsg6 => "xlb_recvmsg6",
            SockHook::Getpeername6 => "xlb_getpeer6",
        }
    }

    fn pin_name(self) -> String {
        format!("{LINK_PREFIX}{}", self.name())
    }

    fn from_pin_name(name: &str) -> Option<SockHook> {
        let hook = name.strip_prefix(LINK_PREFIX)?;
        SockHook::ALL.into_iter().find(|h| h.name() == hook)
    }
}

/// The loaded socket programs, sharing the data plane's maps.
pub struct SockLb {
    pub skel: SockSkel<'static>,
}

impl SockLb {
    /// Opens and loads `sock.bpf.c` over the data plane's maps: every map
    /// is declared in maps.h, so `dp` has it (pinned, `sock_config`,
    /// `sock_rnat` and `sock_rnat6` included, when `dp` has a pin directory) and it is shared
    /// (reuse_fd).
    pub fn load(dp: &DataPlane) -> Result<Self> {
        let mut open = SockSkelBuilder::default()
            .open(storage())
            .map_err(ctx("opening the socket object"))?;
        share_maps(open.open_object_mut(), dp, &[], "socket")?;
        let skel = open.load().map_err(ctx("loading the socket object"))?;
        Ok(Self { skel })
    }

    /// The program of `hook`.
    pub fn prog(&self, hook: SockHook) -> BorrowedFd<'_> {
        let p = &self.skel.progs;
        match hook {
            SockHook::Connect4 => p.xlb_connect4.as_fd(),
            SockHook::Sendmsg4 => p.xlb_sendmsg4.as_fd(),
            SockHook::Recvmsg4 => p.xlb_recvmsg4.as_fd(),
            SockHook::Getpeername4 => p.xlb_getpeer4.as_fd(),
            SockHook::Connect6 => p.xlb_connect6.as_fd(),
            SockHook::Sendmsg6 => p.xlb_sendmsg6.as_fd(),
            SockHook::Recvmsg6 => p.xlb_recvmsg6.as_fd(),
            SockHook::Getpeername6 => p.xlb_getpeer6.as_fd(),
        }
    }

    /// What `sock_config` holds.
    pub fn config(&self) -> Result<xlb_sock_config> {
        let v = self
            .skel
            .maps
            .sock_config
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("reading sock_config"))?
            .unwrap_or_default();
        let mut c = xlb_sock_config::default();
        plain::copy_from_bytes(&mut c, &v)
            .map_err(|_| Error::Other("sock_config: value of the wrong size".into()))?;
        Ok(c)
    }

    /// Writes `sock_config`: the namespace the hooks act in (0: none) and
    /// the `XLB_SOCK_F_*` flags.
    pub fn set_config(&self, netns_cookie: u64, flags: u32) -> Result<()> {
        let c = xlb_sock_config {
            netns_cookie,
            flags,
            ..Default::default()
        };
        // SAFETY: xlb_sock_config is Plain (integers, explicit padding).
        let bytes = unsafe { plain::as_bytes(&c) };
        self.skel
            .maps
            .sock_config
            .update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(ctx("writing sock_config"))
    }
}

/// Points every map of `obj` (an object built over maps.h, opened, not yet
/// loaded) at the data plane's map of that name (reuse_fd), but the object's
/// own: `.rodata`/`.bss` and the maps named in `own`. Every map of maps.h is
/// in the XDP object (and pinned under the pin directory when there is one).
pub(crate) fn share_maps(
    obj: &mut libbpf_rs::OpenObject,
    dp: &DataPlane,
    own: &[&str],
    what: &str,
) -> Result<()> {
    let shared = dp.xdp.object().maps();
    let mut by_name: std::collections::HashMap<_, _> =
        shared.map(|m| (m.name().to_owned(), m)).collect();
    for mut map in obj.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if name.contains('.') || own.contains(&name.as_str()) {
            continue;
        }
        let src = by_name.remove(map.name()).ok_or_else(|| {
            Error::Other(format!(
                "map {name} of the {what} object is not the data plane's"
            ))
        })?;
        map.reuse_fd(src.as_fd())
            .map_err(ctx(format!("sharing map {name}")))?;
    }
    Ok(())
}

/// The network namespace cookie of the calling thread (`SO_NETNS_COOKIE` on
/// a socket made here; the socket hooks compare `bpf_get_netns_cookie`).
pub fn netns_cookie() -> io::Result<u64> {
    // SAFETY: plain socket creation; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nobody else.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd, out buffer of len bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The cgroup v2 mount point from `mountinfo` (`/proc/self/mountinfo`
/// format): the mount of the hierarchy's root (`/`), shortest path first.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mut f = pre.split_whitespace();
            let root = f.nth(3)?;
            let point = f.next()?;
            (fstype == "cgroup2" && root == "/").then(|| unescape_mount(point))
        })
        .min_by_key(|p| p.as_os_str().len())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Whether `dir` is on a cgroup v2 filesystem (a mount listed in mountinfo
/// may be hidden under a later mount, e.g. a fresh sysfs on /sys).
fn is_cgroup2(dir: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid out buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
}

/// Where [`cgroup2_root`] mounts the hierarchy when the mount it lists is
/// hidden.
pub const PRIVATE_CGROUP2: &str = "/run/xlb/cgroup2";

/// The root of this machine's cgroup v2 hierarchy (where the socket hooks
/// go): its mount point from `/proc/self/mountinfo`. A process whose /sys was
/// mounted over in a private mount namespace (`ip netns exec`, the lab's
/// node processes) still lists the hidden cgroup2 mount but cannot reach it:
/// then the hierarchy is mounted again at [`PRIVATE_CGROUP2`] (in that
/// namespace), the same hierarchy seen from another place.
pub fn cgroup2_root() -> Result<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Io {
        what: "reading /proc/self/mountinfo".into(),
        err: e,
        hint: "is /proc mounted?".into(),
    })?;
    let none = || {
        Error::Other(
            "no cgroup v2 hierarchy is mounted (the socket hooks need one): mount it, e.g. \
             `mount -t cgroup2 none /sys/fs/cgroup`, or run without socket LB (--no-socket-lb)"
                .into(),
        )
    };
    let listed = cgroup2_mount(&mi).ok_or_else(none)?;
    if is_cgroup2(&listed) {
        return Ok(listed);
    }
    let private = Path::new(PRIVATE_CGROUP2);
    if is_cgroup2(private) {
        return Ok(private.to_owned());
    }
    std::fs::create_dir_all(private).map_err(|e| Error::Io {
        what: format!("creating {}", private.display()),
        err: e,
        hint: "run as root".into(),
    })?;
    let c = std::ffi::CString::new(PRIVATE_CGROUP2).expect("no NUL");
    // SAFETY: NUL-terminated constants and a prepared path.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c.as_ptr(),
            c"cgroup2".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        return Err(Error::Io {
            what: format!(
                "mounting cgroup2 at {PRIVATE_CGROUP2} ({} is listed but hidden)",
                listed.display()
            ),
            err: io::Error::last_os_error(),
            hint: "run in the host's mount namespace, or with --no-socket-lb".into(),
        });
    }
    tracing::info!(
        hidden = %listed.display(),
        "cgroup2 mounted at {PRIVATE_CGROUP2} (its mount is hidden in this mount namespace)"
    );
    Ok(private.to_owned())
}

fn open_cgroup(cgroup: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(cgroup)
        .map_err(|e| Error::Io {
            what: format!("opening cgroup {}", cgroup.display()),
            err: e,
            hint: "run as root; `--no-socket-lb` leaves host traffic alone".into(),
        })
}

/// One socket hook as attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockAttached {
    pub hook: SockHook,
    pub cgroup: PathBuf,
    pub prog_id: u32,
    /// An xlb program was there already and was replaced inside its link.
    pub replaced: bool,
}

/// Points the socket hooks at `sock`'s programs on `cgroup` (the cgroup v2
/// root for a node), for the calling thread's network namespace only:
/// writes that namespace's cookie and `flags` into `sock_config` first, then
/// creates a pinned link per hook, or swaps the program inside the link
/// pinned by an earlier attach (atomic: no connect sees no program).
pub fn attach(
    pin_dir: &Path,
    sock: &SockLb,
    cgroup: &Path,
    flags: u32,
) -> Result<Vec<SockAttached>> {
    let cookie = netns_cookie().map_err(|e| Error::Io {
        what: "reading this network namespace's cookie (SO_NETNS_COOKIE)".into(),
        err: e,
        hint: "the socket hooks need kernel >= 5.14; `--no-socket-lb` runs without them".into(),
    })?;
    sock.set_config(cookie, flags)?;
    let cg = open_cgroup(cgroup)?;
    let mut out = Vec::new();
    for hook in SockHook::ALL {
        let prog = sock.prog(hook);
        let prog_id = sys::prog_id(prog).unwrap_or(0);
        let path = links_dir(pin_dir).join(hook.pin_name());
        if let Ok(link) = sys::obj_get(&path) {
            match sys::link_update(link.as_fd(), prog) {
                Ok(()) => {
                    out.push(SockAttached {
                        hook,
                        cgroup: cgroup.to_owned(),
                        prog_id,
                        replaced: true,
                    });
                    continue;
                }
                Err(e) => {
                    // A defunct link (its cgroup gone) or another kind of
                    // object: replaced by a new link below.
                    tracing::info!(pin = %path.display(), "replacing a stale socket-hook link: {e}");
                    let _ = sys::link_detach(link.as_fd());
                    pin::unpin(&path).ok();
                }
            }
        }
        let link = sys::link_create(prog, cg.as_raw_fd(), hook.attach_type(), 0).map_err(|e| {
            Error::Io {
                what: format!("attaching {} to cgroup {}", hook.name(), cgroup.display()),
                err: e,
                hint:
                    "cgroup socket hooks need CAP_SYS_ADMIN or CAP_NET_ADMIN + CAP_BPF and kernel \
                       >= 5.18 (bpf_set_retval); `--no-socket-lb` leaves host traffic alone"
                        .into(),
            }
        })?;
        if let Err(e) = pin::repin(&link, &path) {
            let _ = sys::link_detach(link.as_fd());
            return Err(e);
        }
        out.push(SockAttached {
            hook,
            cgroup: cgroup.to_owned(),
            prog_id,
            replaced: false,
        });
    }
    Ok(out)
}

/// The socket hooks pinned under `pin_dir`: (hook, pin path).
pub fn list(pin_dir: &Path) -> Vec<(SockHook, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(links_dir(pin_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            SockHook::from_pin_name(&name.to_string_lossy()).map(|h| (h, e.path()))
        })
        .collect();
    out.sort_by_key(|(h, _)| SockHook::ALL.iter().position(|x| x == h));
    out
}

/// Detaches every socket hook pinned under `pin_dir` and removes the pins
/// (the maps stay). Returns the hooks removed.
pub fn detach(pin_dir: &Path) -> Result<Vec<SockHook>> {
    let mut out = Vec::new();
    for (hook, path) in list(pin_dir) {
        if let Ok(fd) = sys::obj_get(&path) {
            if pin::obj_kind(&fd) == Some(pin::ObjKind::Link) {
                // Defunct (cgroup removed): nothing left to detach.
                let _ = sys::link_detach(fd.as_fd());
            }
        }
        pin::unpin(&path).map_err(|e| Error::Io {
            what: format!("removing pin {}", path.display()),
            err: e,
            hint: "run as root".into(),
        })?;
        out.push(hook);
    }
    Ok(out)
}

/// Ids of the programs attached directly to `cgroup` at `hook`.
pub fn query(cgroup: &Path, hook: SockHook) -> Result<Vec<u32>> {
    let cg = open_cgroup(cgroup)?;
    let mut ids = vec![0u32; 64];
    let mut cnt = ids.len() as u32;
    let mut attach_flags = 0u32;
    // SAFETY: valid fd, out buffers of cnt entries.
    let rc = unsafe {
        libbpf_sys::bpf_prog_query(
            cg.as_raw_fd(),
            hook.attach_type(),
            0,
            &mut attach_flags,
            ids.as_mut_ptr(),
            &mut cnt,
        )
    };
    if rc < 0 {
        return Err(Error::Io {
            what: format!("querying {} programs of {}", hook.name(), cgroup.display()),
            err: io::Error::from_raw_os_error(-rc),
            hint: "run as root".into(),
        });
    }
    ids.truncate(cnt as usize);
    Ok(ids)
}

/// Name of the loaded program `id` (as the kernel keeps it: 15 bytes at most).
pub fn prog_name(id: u32) -> Option<String> {
    // SAFETY: plain syscall wrapper; a returned fd is owned below.
    let rc = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if rc < 0 {
        return None;
    }
    // SAFETY: fresh fd owned by nobody else.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(rc) };
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: valid fd, buffer and length.
    let rc = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return None;
    }
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    Some(String::from_utf8_lossy(&name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_mount_is_the_hierarchy_root() {
        let mi = "\
24 1 0:22 / / rw - ext4 /dev/root rw
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
41 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
52 24 0:38 /kubepods /var/lib/x rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let plain = "29 24 0:25 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(plain), Some(PathBuf::from("/sys/fs/cgroup")));
        let spaced = "29 24 0:25 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/cg two")));
        assert_eq!(
            cgroup2_mount("30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"),
            None
        );
        assert_eq!(cgroup2_mount("garbage\n\n - \n"), None);
    }

    #[test]
    fn pin_names_round_trip() {
        for h in SockHook::ALL {
            assert_eq!(SockHook::from_pin_name(&h.pin_name()), Some(h));
            assert!(h.prog_name().len() <= 15, "{h:?}");
        }
        assert_eq!(SockHook::from_pin_name("xdp_eth0"), None);
        assert_eq!(SockHook::from_pin_name("cgroup_bind4"), None);
    }
}
