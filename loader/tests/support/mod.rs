//! Test scaffolding: network namespaces and pin directories that clean up
//! after themselves (Drop), and running code inside a namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = xlb_loader::testutil::unique_name("xlbt");
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v);
    }

    pub fn ip_out(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh_out(&v)
    }

    /// A veth pair `a` <-> `b`, both up.
    pub fn veth(&self, a: &str, b: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Id of the XDP program on `iface` in this namespace (0: none).
    pub fn xdp_prog(&self, iface: &'static str) -> u32 {
        self.run(move || {
            let idx = xlb_loader::sys::ifindex(iface).expect("interface");
            xlb_loader::sys::xdp_query(idx).expect("xdp query").1
        })
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in netns panicked")
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: valid fd; CLONE_NEWNET affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A unique pin directory under /sys/fs/bpf, removed (with every link in it) on drop.
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new() -> Self {
        let path = Path::new("/sys/fs/bpf").join(xlb_loader::testutil::unique_name("xlb-t-"));
        xlb_loader::pin::ensure_pin_dir(&path).expect("pin dir");
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Unpinning a link releases it, which detaches its program; classic
        // tc filters go with the namespace. (No detach by ifindex here: this
        // runs in the test's own namespace, not the one the hooks are in.)
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `f` (at most ~10 s) until it holds; for kernel objects freed asynchronously.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
