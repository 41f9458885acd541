//! # Network namespaces: enter, run in, list
//!
//! Named namespaces live under `/run/netns` (iproute2's convention). A thread
//! enters one with `setns(CLONE_NEWNET)`; a child process enters it between
//! fork and exec. Unlike `ip netns exec`, [`command`] can keep the host's
//! bpffs visible at /sys/fs/bpf (it mounts a sysfs for the namespace and binds
//! the host's bpffs back over /sys/fs/bpf), so pins made inside outlive the
//! process.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io_ctx, Error, Result};

/// Where iproute2 keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether the named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Names of every named namespace.
pub fn list() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Inode of a named namespace (what /proc/PID/ns/net points at).
pub fn inode(name: &str) -> Option<u64> {
    std::fs::metadata(path(name)).ok().map(|m| m.ino())
}

fn open(name: &str) -> Result<File> {
    File::open(path(name)).map_err(io_ctx(format!("opening namespace {name}")))
}

/// Moves the calling thread into the named namespace (for good: use [`run`]
/// to keep the caller where it is).
pub fn enter(name: &str) -> Result<()> {
    let f = open(name)?;
    // SAFETY: a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(Error::Io {
            what: format!("entering namespace {name}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside the named namespace. Sockets made there
/// stay in that namespace and may be used from any thread afterwards.
pub fn run<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let name = name.to_owned();
    let h = std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || -> Result<T> {
            enter(&name)?;
            Ok(f())
        })
        .map_err(io_ctx("spawning a thread"))?;
    match h.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A `Command` that runs `program` inside the named namespace.
///
/// With `host_bpffs`, the child also gets its own mount namespace with a sysfs
/// of the network namespace on /sys (so /sys/class/net is right) and the
/// host's bpffs bound back on /sys/fs/bpf (so pins are shared with the host).
/// `scratch` must be an existing empty directory used for that bind.
pub fn command(
    name: &str,
    program: impl AsRef<std::ffi::OsStr>,
    host_bpffs: Option<&Path>,
) -> Result<Command> {
    let ns = open(name)?;
    let mut cmd = Command::new(program);
    let scratch = match host_bpffs {
        Some(dir) => Some(
            CString::new(dir.as_os_str().as_encoded_bytes())
                .map_err(|_| Error::Invalid(format!("bad path {}", dir.display())))?,
        ),
        None => None,
    };
    let bpffs_mounted = xlb_loader::is_bpffs(Path::new(crate::BPFFS_ROOT));
    // The fd must stay open until exec; the closure owns it.
    let ns_fd = ns;
    // SAFETY: the closure only makes async-signal-safe syscalls on data prepared
    // before the fork (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(scratch) = &scratch {
                remount_sys(scratch, bpffs_mounted)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// In the child: private mounts, sysfs of the new netns, host bpffs kept.
fn remount_sys(scratch: &CString, bpffs: bool) -> std::io::Result<()> {
    let err = || Err(std::io::Error::last_os_error());
    let sys = c"/sys";
    let bpf = c"/sys/fs/bpf";
    // SAFETY: plain syscalls on NUL-terminated constants and a prepared CString.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return err();
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_SLAVE | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return err();
        }
        if bpffs
            && libc::mount(
                bpf.as_ptr(),
                scratch.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
        {
            return err();
        }
        if libc::mount(
            c"sysfs".as_ptr(),
            sys.as_ptr(),
            c"sysfs".as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return err();
        }
        if bpffs {
            if libc::mount(
                scratch.as_ptr(),
                bpf.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return err();
            }
            libc::umount2(scratch.as_ptr(), libc::MNT_DETACH);
        }
    }
    Ok(())
}

/// Runs a command to completion inside the named namespace; error with its
/// stderr when it fails.
pub fn output(name: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = command(name, program, None)?;
    cmd.args(args);
    crate::cmd::checked(cmd, &format!("[{name}] {program} {}", args.join(" ")))
}
