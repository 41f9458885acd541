//! # Packet-test harness
//!
//! A private (unpinned) data plane, run through BPF_PROG_RUN inside a network
//! namespace private to the calling test thread (so `bpf_fib_lookup` sees a
//! known underlay: a veth `v0` with 198.18.0.1/24 and one permanent neighbour),
//! the test kit's frame builders, a fixture of Services/backends filled through the typed
//! `xlb_bpf::Maps`, and independent checks of checksums with etherparse.
//!
//! The namespace dies with the test thread: nothing to clean up, and nothing
//! the tests do can reach the host's interfaces.
//!
//! Here: the harness ([`Env`]). The fixture is in `fixture`, the output
//! checks in `checks`, the table runner in `table`, the XDP tests' shared
//! flows in [`xdp`], related-flow (ICMP error) frames in [`related`].
#![allow(dead_code)]

mod checks;
mod fixture;
pub mod related;
pub mod stateless;
mod table;
pub mod tnat;
pub mod v6;
pub mod xdp;

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{Ipv4Header, TcpHeader, UdpHeader};
use libbpf_rs::ProgramInput;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::be32;
use xlb_bpf::{Proto, Reason};
use xlb_loader::{DataPlane, LoadOptions};

pub use xlb_testkit::frame::*;

pub use checks::*;
pub use fixture::*;
pub use table::*;

pub const XDP_DROP: u32 = 1;

pub const XDP_PASS: u32 = 2;

pub const XDP_TX: u32 = 3;

pub const XDP_REDIRECT: u32 = 4;

pub const TC_ACT_OK: u32 = 0;

pub const TC_ACT_SHOT: u32 = 2;

pub const TC_ACT_REDIRECT: u32 = 7;

// --- environment -----------------------------------------------------------

/// `ip ARGS` in the calling thread's namespace; panics unless it succeeds.
pub fn sh(args: &[&str]) {
    let mut v = vec!["ip"];
    v.extend_from_slice(args);
    xlb_testkit::sh(&v);
}

/// Pins this thread to the CPU it runs on: the per-CPU flow cache, rate
/// limiter and caches then see every frame of the test.
pub fn pin_cpu() {
    // SAFETY: plain syscalls on this thread with valid arguments.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0);
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// A loaded data plane in a network namespace private to this thread.
pub struct Env {
    pub dp: DataPlane,
    /// ifindex of the uplink `v0` in the private namespace.
    pub uplink: u32,
}

pub const MAGLEV_SLOTS: u32 = 4096;

/// A `ct_syn` slot (struct xlb_syn, bpf/include/maps.h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfOpen {
    pub check: u32,
    pub flags: u32,
    pub client: SocketAddrV4,
    pub frontend: SocketAddrV4,
    pub backend: SocketAddrV4,
    pub tunnel_peer: Ipv4Addr,
    pub backend_id: u32,
    pub generation: u32,
    pub svc_id: u32,
    pub last_seen: u64,
}

impl Env {
    /// None when not privileged (the test then skips, or fails under CI).
    pub fn new() -> Option<Env> {
        if !xlb_testkit::privileged() {
            return None;
        }
        // SAFETY: unshare only affects this thread's network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        sh(&["link", "set", "lo", "up"]);
        sh(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        sh(&["link", "set", "v0", "address", "02:00:c6:12:00:01"]);
        sh(&["addr", "add", "198.18.0.1/24", "dev", "v0"]);
        sh(&["link", "set", "v0", "up"]);
        sh(&["link", "set", "v1", "up"]);
        // bpf_fib_lookup requires forwarding on the interface (as on any node).
        std::fs::write("/proc/sys/net/ipv4/conf/v0/forwarding", "1")
            .expect("enabling forwarding in the test namespace");
        sh(&[
            "neigh",
            "replace",
            "198.18.0.2",
            "lladdr",
            "02:00:c6:12:00:02",
            "dev",
            "v0",
            "nud",
            "permanent",
        ]);
        let name = std::ffi::CString::new("v0").unwrap();
        // SAFETY: valid C string.
        let uplink = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(uplink > 0);
        let dp = DataPlane::load(&LoadOptions {
            pin_dir: None,
            maglev_slots: Some(MAGLEV_SLOTS),
            ct_entries: Some(65536),
            backends: Some(1024),
            ..Default::default()
        })
        .expect("loading the data plane");
        let env = Env { dp, uplink };
        env.dp.maps.put_config(&env.config()).unwrap();
        Some(env)
    }

    pub fn config(&self) -> xlb_config {
        xlb_config {
            node_addr: be32(NODE),
            vxlan_port: VXLAN_PORT.to_be(),
            mtu: MTU,
            vni: VNI,
            ifindex: self.uplink,
            mac: NODE_MAC,
            flags: XLB_CFG_F_VXLAN | XLB_CFG_F_REJECT | XLB_CFG_F_TNAT,
            ..Default::default()
        }
    }

    pub fn maps(&self) -> &xlb_bpf::Maps {
        &self.dp.maps
    }

    /// Runs the XDP program once; ingress is `lo` (no ctx) or the given ifindex.
    pub fn xdp_in(&self, frame: &[u8], ingress: Option<u32>) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 512];
        let mut ctx = [0u32; 6];
        ctx[1] = frame.len() as u32;
        let mut ctx_bytes: Vec<u8> = Vec::new();
        let mut input = ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        if let Some(ifindex) = ingress {
            ctx[3] = ifindex;
            ctx_bytes = ctx.iter().flat_map(|w| w.to_ne_bytes()).collect();
            input.context_in = Some(&mut ctx_bytes);
        }
        let o = self.dp.xdp_prog().test_run(input).expect("xdp test_run");
        let rc = o.return_value;
        let n = o.data.map(|d| d.len()).unwrap_or(0);
        drop(ctx_bytes);
        out.truncate(n);
        (rc, out)
    }

    pub fn xdp(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.xdp_in(frame, None)
    }

    pub fn tc(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.try_tc(frame).expect("tc test_run")
    }

    /// Like [`Env::tc`]; Err when the kernel refuses the frame before running
    /// the program (BPF_PROG_RUN for skbs rejects some very short frames).
    pub fn try_tc(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), libbpf_rs::Error> {
        let mut out = vec![0u8; frame.len() + 512];
        let input = ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let o = self.dp.tc_prog().test_run(input)?;
        let rc = o.return_value;
        let n = o.data.map(|d| d.len()).unwrap_or(0);
        out.truncate(n);
        Ok((rc, out))
    }

    /// The pod veth's egress program on `frame`.
    pub fn tc_egress(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 512];
        let input = ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let o = self
            .dp
            .tc_egress_prog()
            .test_run(input)
            .expect("tc egress test_run");
        let rc = o.return_value;
        let n = o.data.map(|d| d.len()).unwrap_or(0);
        out.truncate(n);
        (rc, out)
    }

    /// Every reason counter (packets), indexed by reason number.
    pub fn reasons(&self) -> Vec<u64> {
        self.maps()
            .reasons()
            .unwrap()
            .into_iter()
            .map(|(_, c)| c.packets)
            .collect()
    }

    pub fn clear_state(&self) {
        for (k, _) in self.maps().ct().unwrap() {
            self.maps().delete_ct(&k).unwrap();
        }
        for (k, _) in self.maps().affinities().unwrap() {
            self.maps().delete_affinity(&k).unwrap();
        }
        self.clear_half_open();
    }

    /// Empties `ct_syn`, the half-open connections (bpf/include/ctsyn.h).
    pub fn clear_half_open(&self) {
        use libbpf_rs::MapCore;
        let n = XLB_SYN_SLOTS;
        let keys: Vec<u8> = (0..n).flat_map(|i| i.to_ne_bytes()).collect();
        let values = vec![0u8; n as usize * 64];
        self.dp
            .xdp
            .maps
            .ct_syn
            .update_batch(
                &keys,
                &values,
                n,
                libbpf_rs::MapFlags::ANY,
                libbpf_rs::MapFlags::ANY,
            )
            .expect("clearing ct_syn");
    }

    /// The half-open connection of `client` (`ct_syn`'s slot of its address
    /// and port), when the slot holds one of that client.
    pub fn half_open(&self, client: &str) -> Option<HalfOpen> {
        use libbpf_rs::MapCore;
        let c = sa(client);
        let port_raw = u32::from(u16::from_ne_bytes(c.port().to_be_bytes()));
        let w = u32::from(*c.ip()) ^ (port_raw << 16);
        let slot = w.wrapping_mul(0x9e37_79b1) >> (32 - XLB_SYN_BITS);
        let v = self
            .dp
            .xdp
            .maps
            .ct_syn
            .lookup(&slot.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .expect("ct_syn lookup")
            .expect("ct_syn slot");
        let u32_at = |o: usize| u32::from_ne_bytes(v[o..o + 4].try_into().unwrap());
        let addr_at = |o: usize| Ipv4Addr::from(<[u8; 4]>::try_from(&v[o..o + 4]).unwrap());
        let port_at = |o: usize| u16::from_be_bytes([v[o], v[o + 1]]);
        let h = HalfOpen {
            check: u32_at(0),
            flags: u32_at(4),
            client: SocketAddrV4::new(addr_at(8), port_at(24)),
            frontend: SocketAddrV4::new(addr_at(12), port_at(26)),
            backend: SocketAddrV4::new(addr_at(16), port_at(28)),
            tunnel_peer: addr_at(20),
            backend_id: u32_at(32),
            generation: u32_at(36),
            svc_id: u32_at(40),
            last_seen: u64::from_ne_bytes(v[48..56].try_into().unwrap()),
        };
        (h.check != 0 && h.client == c).then_some(h)
    }

    /// Writes `h` into its client's `ct_syn` slot with a valid check, as the
    /// data plane writes one (tests age a half-open connection this way).
    pub fn put_half_open(&self, h: &HalfOpen) {
        use libbpf_rs::MapCore;
        let port_raw = u32::from(u16::from_ne_bytes(h.client.port().to_be_bytes()));
        let w = u32::from(*h.client.ip()) ^ (port_raw << 16);
        let slot = w.wrapping_mul(0x9e37_79b1) >> (32 - XLB_SYN_BITS);
        let mut v = [0u8; 64];
        v[4..8].copy_from_slice(&h.flags.to_ne_bytes());
        v[8..12].copy_from_slice(&h.client.ip().octets());
        v[12..16].copy_from_slice(&h.frontend.ip().octets());
        v[16..20].copy_from_slice(&h.backend.ip().octets());
        v[20..24].copy_from_slice(&h.tunnel_peer.octets());
        v[24..26].copy_from_slice(&h.client.port().to_be_bytes());
        v[26..28].copy_from_slice(&h.frontend.port().to_be_bytes());
        v[28..30].copy_from_slice(&h.backend.port().to_be_bytes());
        v[32..36].copy_from_slice(&h.backend_id.to_ne_bytes());
        v[36..40].copy_from_slice(&h.generation.to_ne_bytes());
        v[40..44].copy_from_slice(&h.svc_id.to_ne_bytes());
        v[48..56].copy_from_slice(&h.last_seen.to_ne_bytes());
        // xlb_syn_sum (ctsyn.h)
        let k = 0x9e37_79b9_7f4a_7c15u64;
        let mut x = u64::from(h.flags + 1).wrapping_mul(k);
        for i in 1..8 {
            let word = u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
            x = (x ^ word).wrapping_mul(k);
        }
        let check = ((x ^ (x >> 32)) as u32) | 1;
        v[0..4].copy_from_slice(&check.to_ne_bytes());
        self.dp
            .xdp
            .maps
            .ct_syn
            .update(&slot.to_ne_bytes(), &v, libbpf_rs::MapFlags::ANY)
            .expect("ct_syn update");
    }

    /// Empties the XDP program's per-CPU next-hop and VTEP caches, IPv4 and
    /// IPv6 (they keep an answer for 50 ms, also after its tunnel entry is
    /// gone).
    pub fn clear_caches(&self) {
        use libbpf_rs::{MapCore, MapFlags};
        let cpus = libbpf_rs::num_possible_cpus().unwrap();
        let m = &self.dp.xdp.maps;
        for map in [&m.nh_cache, &m.vtep_cache, &m.nh6_cache, &m.vtep6_cache] {
            let zero = vec![vec![0u8; map.value_size() as usize]; cpus];
            for slot in 0..map.max_entries() {
                map.update_percpu(&slot.to_ne_bytes(), &zero, MapFlags::ANY)
                    .unwrap();
            }
        }
    }

    pub fn backend(&self, id: u32, addr: &str, node: Option<Ipv4Addr>) {
        self.maps()
            .put_backend(id, &xlb_backend::new(sa(addr), node, 1))
            .unwrap();
    }

    /// A frontend whose Maglev region holds `table` (backend ids).
    pub fn service(&self, key: xlb_svc_key, svc_id: u32, off: u32, table: &[u32], flags: u32) {
        self.maps().write_maglev(off, table).unwrap();
        let n_local = table
            .iter()
            .filter(|id| {
                self.maps()
                    .backend(**id)
                    .unwrap()
                    .is_some_and(|b| b.node == 0)
            })
            .count() as u32;
        self.maps()
            .put_service(
                &key,
                &xlb_svc_val {
                    svc_id,
                    flags,
                    table_off: off,
                    table_size: table.len() as u32,
                    affinity_timeout: 100,
                    n_local,
                    fe_type: 0,
                    ..Default::default()
                },
            )
            .unwrap();
    }
}

/// CLOCK_MONOTONIC in ns (what bpf_ktime_get_ns returns).
#[allow(unused_imports)] // not every test binary reads the clock
pub use xlb_bpf::maps::monotonic_ns as now_ns;

impl Env {
    /// A second data plane in the same namespace configured as node PEER
    /// (the backend node of the fixture's remote Service).
    pub fn second_node(first: &Env) -> Env {
        let dp = DataPlane::load(&LoadOptions {
            pin_dir: None,
            maglev_slots: Some(MAGLEV_SLOTS),
            ct_entries: Some(65536),
            backends: Some(1024),
            ..Default::default()
        })
        .expect("loading the second data plane");
        let env = Env {
            dp,
            uplink: first.uplink,
        };
        let mut c = first.config();
        c.node_addr = be32(PEER);
        c.mac = PEER_MAC;
        env.dp.maps.put_config(&c).unwrap();
        env
    }
}
