//! Test scaffolding for the socket-hook tests that drive the loader in
//! process (sock_lb, sock_term): a private data plane with its socket hooks
//! attached to the cgroup v2 root for the calling thread's namespace,
//! detached on drop. Each test file adds its own Service writers on top
//! (they differ per hook under test); the load, attach and teardown live
//! here once, and so do the UDP server and socket options that the
//! termination tests of both families (sock_term, sock_term6) use.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xlb_bpf::types::{xlb_backend, xlb_config};
use xlb_bpf::wire::be32;
use xlb_loader::cgroup::{self, SockAttached, SockLb};
use xlb_loader::{DataPlane, LoadOptions};
use xlb_testkit::PinDir;

/// A data plane pinned in a directory of its own with its socket hooks
/// attached to the cgroup v2 root; detached (and the pins removed) on drop.
pub struct SockHooks {
    pub dp: DataPlane,
    pub sock: SockLb,
    pub pin: PinDir,
    pub cgroup: PathBuf,
    /// What `cgroup::attach` reported.
    pub attached: Vec<SockAttached>,
}

impl SockHooks {
    /// Loads the data plane and its socket hooks, attaches them with `flags`
    /// (`XLB_SOCK_F_*`) and writes a config whose node address is `node`.
    /// Call on a thread inside the namespace the hooks are for.
    pub fn attach(flags: u32, node: Ipv4Addr) -> Self {
        let pin = PinDir::new();
        let dp = DataPlane::load(&LoadOptions {
            pin_dir: Some(pin.path.clone()),
            maglev_slots: Some(4096),
            ct_entries: Some(4096),
            backends: Some(1024),
            ..Default::default()
        })
        .expect("loading the data plane");
        let sock = SockLb::load(&dp).expect("loading the socket hooks");
        let cgroup = cgroup::cgroup2_root().expect("cgroup2 mount");
        let attached = cgroup::attach(&pin.path, &sock, &cgroup, flags).expect("attach");
        dp.maps
            .put_config(&xlb_config {
                node_addr: be32(node),
                ..Default::default()
            })
            .unwrap();
        SockHooks {
            dp,
            sock,
            pin,
            cgroup,
            attached,
        }
    }

    /// Backend `id` at `addr`, on this node (generation 1).
    pub fn backend(&self, id: u32, addr: SocketAddrV4) {
        self.dp
            .maps
            .put_backend(id, &xlb_backend::new(addr, None, 1))
            .unwrap();
    }
}

impl Drop for SockHooks {
    fn drop(&mut self) {
        let _ = cgroup::detach(&self.pin.path);
    }
}

/// A UDP server on `addr` answering every datagram with `name`, until drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    h: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn new(addr: SocketAddr, name: &'static str) -> Self {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !st.load(Ordering::Relaxed) {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(name.as_bytes(), from);
                }
            }
        });
        Server { stop, h: Some(h) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
    }
}

pub fn sockopt<T: Default>(s: &UdpSocket, opt: libc::c_int) -> T {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: valid fd, out buffer of len bytes.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
    v
}

pub fn cookie(s: &UdpSocket) -> u64 {
    sockopt(s, libc::SO_COOKIE)
}

/// The pending error of `s` (SO_ERROR reads and clears it).
pub fn so_error(s: &UdpSocket) -> i32 {
    sockopt(s, libc::SO_ERROR)
}
