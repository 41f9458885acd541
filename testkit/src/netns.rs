//! Network namespaces and veth pairs made by a test, removed on drop.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::sh;

/// A network namespace with a unique name, `lo` up; deleted on drop (with
/// every interface in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace named by [`crate::unique_name`] with `prefix` (short: the
    /// name also prefixes interfaces in some tests).
    pub fn with_prefix(prefix: &str) -> Self {
        let name = crate::unique_name(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn new() -> Self {
        Self::with_prefix("xlbt")
    }

    /// A namespace shaped like a node for the attach tests: the uplink `up0`
    /// (peer `peer0`) and a pod veth `vethpod0` (peer `eth0p`), all up.
    pub fn node() -> Self {
        let ns = Self::new();
        ns.veth("up0", "peer0");
        ns.veth("vethpod0", "eth0p");
        ns
    }

    /// `ip -n NAME ARGS`; panics unless it succeeds.
    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// `ip -n NAME ARGS`; its stdout.
    pub fn ip_out(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        crate::cmd::sh_out(&v)
    }

    /// A veth pair `a` <-> `b`, both up, one queue each.
    pub fn veth(&self, a: &str, b: &str) {
        veth_pair(Some(&self.name), a, b, 1);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// ifindex of `iface` in this namespace (0: none).
    pub fn ifindex(&self, iface: &str) -> u32 {
        self.run(|| ifindex(iface))
    }

    /// Id of the XDP program on `iface` in this namespace (0: none), as
    /// iproute2 reports it.
    pub fn xdp_prog(&self, iface: &str) -> u32 {
        let out = self.ip_out(&["-d", "link", "show", "dev", iface]);
        assert!(!out.is_empty(), "no interface {iface} in {}", self.name);
        out.split("prog/xdp id ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map_or(0, |id| id.parse().expect("xdp program id"))
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                enter(&path);
                f()
            })
            .join()
            .expect("thread in netns panicked")
        })
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Creates a veth pair `a` <-> `b` with `queues` rx and tx queues on each end,
/// left down, in namespace `ns` (None: the caller's).
pub fn veth_pair(ns: Option<&str>, a: &str, b: &str, queues: u32) {
    let q = queues.to_string();
    let mut v = vec!["ip"];
    if let Some(ns) = ns {
        v.extend_from_slice(&["-n", ns]);
    }
    v.extend_from_slice(&[
        "link",
        "add",
        a,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ]);
    sh(&v);
}

/// ifindex of `iface` in the calling thread's namespace (0: none).
pub fn ifindex(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: valid fd; CLONE_NEWNET affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}
