//! Test scaffolding for the socket-hook tests that drive the loader in
//! process (sock_lb, sock_term): a private data plane with its socket hooks
//! attached to the cgroup v2 root for the calling thread's namespace,
//! detached on drop. Each test file adds its own Service writers on top
//! (they differ per hook under test); the load, attach and teardown live
//! here once.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

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
