//! # `xlb bench prog`: ns/packet of each data-plane path
//!
//! Loads a private data plane and the `xlb_base_drop` baseline, fills the maps
//! with one Service per path, and times each path with BPF_PROG_RUN in the same
//! run, interleaved in rounds so drift hits all of them alike.
//!
//! Method: one frame per BPF_PROG_RUN call (`repeat` = 1) and the kernel's own
//! per-run `duration` (ns, taken around the program inside the kernel, so no
//! syscall cost). Repeating a frame inside the kernel would not measure these
//! paths: a run rewrites the frame in place (DNAT, encapsulation, decap) and
//! the next repetition would see the rewritten frame, and a CT-miss path would
//! turn into a CT hit after the first repetition. The figure per path is the
//! interquartile mean over all calls (the middle half: the clock ticks in
//! steps of its resolution, which a median would round to). The baseline is
//! timed the same way, so its ns
//! includes the same fixed cost of one timed run (a clock read); the `ns`
//! difference to the baseline is what the path itself costs.
//!
//! The drop path is timed three times: with `xlb monitor` off (the events
//! flag is one array lookup on the drop path), on at its default rate (1000
//! events per second and CPU: in a flood nearly every frame is only counted
//! as suppressed), and on without a limit (every frame writes an event; the
//! bench drains the ring buffer between runs, outside the timed part). The
//! last is what one event costs; the rate bounds how many a CPU writes.
//!
//! The encapsulation path needs `bpf_fib_lookup` to find a neighbour: the
//! command moves itself into a private network namespace with a veth
//! (198.18.0.1/24 and 2001:db8:18::1/64, forwarding on) and permanent
//! neighbours 198.18.0.2 and 2001:db8:18::2.
//!
//! The `v6_*` paths are the IPv6 ones (`prog/v6.rs`): an IPv6 frame that is
//! no Service, a CT hit to a local backend, a CT miss with a Maglev choice,
//! and a CT hit encapsulated over IPv6 to a remote backend.

mod v6;

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::ProgramInput;
use serde::Serialize;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::be32;
use xlb_bpf::Proto;
use xlb_loader::{DataPlane, LoadOptions};

/// Time each data-plane path with BPF_PROG_RUN next to an XDP_DROP program.
///
/// Examples:
///   xlb bench prog
///   xlb bench prog --json --calls 50000
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ProgArgs {
    /// Print JSON: {"baseline_ns": f, "paths": [{"name": s, "ns": f, "ratio": f}]}.
    #[arg(long)]
    pub json: bool,
    /// BPF_PROG_RUN calls per path (split over rounds).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..=10_000_000))]
    pub calls: u32,
}

#[derive(Debug, Serialize)]
pub struct PathResult {
    pub name: String,
    pub ns: f64,
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub baseline_ns: f64,
    pub paths: Vec<PathResult>,
    /// Single kernel operations (`bpf/floor.bpf.c`), timed the same way: what
    /// the paths cannot go below on this machine.
    pub floors: Vec<PathResult>,
}

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const NODE_MAC: [u8; 6] = [0x02, 0, 0xc6, 0x12, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0xc6, 0x12, 0, 0x02];
const VXLAN_PORT: u16 = 8472;
const ROUNDS: u32 = 20;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_DROP: u32 = 1;

pub fn run(a: ProgArgs) -> Result<()> {
    let report = measure(a.calls)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{:<28} {:>10} {:>8}", "path", "ns/packet", "x drop");
        println!(
            "{:<28} {:>10.1} {:>8.2}",
            "xdp_drop (baseline)", report.baseline_ns, 1.0
        );
        for p in &report.paths {
            println!("{:<28} {:>10.1} {:>8.2}", p.name, p.ns, p.ratio);
        }
        println!("kernel floors (one operation, then XDP_DROP):");
        for p in &report.floors {
            println!("  {:<26} {:>10.1} {:>8.2}", p.name, p.ns, p.ratio);
        }
        println!(
            "(interquartile mean of {} single-frame BPF_PROG_RUN calls per path; kernel-timed, see --help)",
            a.calls
        );
    }
    Ok(())
}

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// TCP flags of the frames: a new connection's first segment, and an
/// established connection's (the CT-hit paths: a repeated SYN would measure a
/// half-open connection, which bypasses the flow cache; docs/dp.md).
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Ethernet / IPv4 / TCP (`flags`) with valid checksums.
fn tcp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    flags: u8,
) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    let c = fold(sum16(&pseudo) + sum16(&tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let c = fold(sum16(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(54);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

/// Ethernet / IPv4 / UDP with 18 bytes of payload and no UDP checksum (valid
/// over IPv4).
fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let mut udp = vec![0u8; 26];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let c = fold(sum16(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

fn vxlan(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, vni: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((36 + inner.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = fold(sum16(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&51000u16.to_be_bytes());
    f.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    f.extend_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0]);
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(inner);
    f
}

fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A private network namespace for this process with the underlay the
/// encapsulation path resolves its next hop in. Returns the uplink ifindex.
fn private_underlay() -> Result<u32> {
    // SAFETY: unshare has no memory-safety preconditions.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "unshare(CLONE_NEWNET): {} (xlb bench prog needs root)",
            std::io::Error::last_os_error()
        );
    }
    ip_cmd(&["link", "set", "lo", "up"])?;
    ip_cmd(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
    ip_cmd(&["link", "set", "v0", "address", "02:00:c6:12:00:01"])?;
    ip_cmd(&["addr", "add", "198.18.0.1/24", "dev", "v0"])?;
    ip_cmd(&["link", "set", "v0", "up"])?;
    ip_cmd(&["link", "set", "v1", "up"])?;
    ip_cmd(&[
        "neigh",
        "replace",
        "198.18.0.2",
        "lladdr",
        "02:00:c6:12:00:02",
        "dev",
        "v0",
        "nud",
        "permanent",
    ])?;
    std::fs::write("/proc/sys/net/ipv4/conf/v0/forwarding", "1")
        .context("enabling forwarding on the bench veth")?;
    let name = std::ffi::CString::new("v0")?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    ensure!(idx > 0, "no ifindex for v0");
    Ok(idx)
}

fn sa(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

/// One path: frames to run (cycled) and the verdict each must give.
struct Path<'p> {
    name: &'static str,
    prog: &'p libbpf_rs::ProgramMut<'p>,
    floor: bool,
    frames: Vec<Vec<u8>>,
    ingress: Option<u32>,
    verdict: u32,
    durations: Vec<u32>,
    /// Next of `frames` when each call takes a new one.
    next: usize,
    /// `xlb monitor` on at this rate (events/s per CPU; 0 = the default)
    /// while the path runs; `None`: off.
    monitor: Option<u32>,
}

impl<'p> Path<'p> {
    /// A data-plane path (not a floor), no samples yet.
    fn new(
        name: &'static str,
        prog: &'p libbpf_rs::ProgramMut<'p>,
        frames: Vec<Vec<u8>>,
        ingress: Option<u32>,
        verdict: u32,
    ) -> Self {
        Path {
            name,
            prog,
            floor: false,
            frames,
            ingress,
            verdict,
            durations: vec![],
            next: 0,
            monitor: None,
        }
    }

    /// The same with `xlb monitor` on at `rate`.
    fn monitored(self, name: &'static str, rate: u32) -> Self {
        Path {
            name,
            monitor: Some(rate),
            ..self
        }
    }
}

fn run_once(
    prog: &libbpf_rs::ProgramMut<'_>,
    frame: &[u8],
    ingress: Option<u32>,
) -> Result<(u32, u32)> {
    let mut out = vec![0u8; frame.len() + 256];
    let md = [0u32, frame.len() as u32, 0, ingress.unwrap_or(0), 0, 0];
    let mut ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut input = ProgramInput {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..Default::default()
    };
    if ingress.is_some() {
        input.context_in = Some(&mut ctx);
    }
    let o = prog.test_run(input).context("BPF_PROG_RUN")?;
    Ok((o.return_value, o.duration.as_nanos() as u32))
}

/// Interquartile mean: the mean of the middle half of the sorted samples.
/// The kernel's per-run durations come in steps of the clock's resolution
/// (on some machines as much as a whole path step), so a median
/// jumps a whole step between runs; averaging the middle half resolves the
/// steps while still ignoring the outliers (interrupts, preemption) at both ends.
fn interquartile_mean(v: &mut [u32]) -> f64 {
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let (lo, hi) = (n / 4, n - n / 4);
    let mid = &v[lo..hi.max(lo + 1)];
    mid.iter().map(|&d| f64::from(d)).sum::<f64>() / mid.len() as f64
}

pub fn measure(calls: u32) -> Result<Report> {
    let uplink = private_underlay()?;
    // Stay on one CPU: the per-CPU maps and caches stay warm, no migration noise.
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu >= 0 {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    let per_round = (calls / ROUNDS).max(1) as usize;
    let flows_needed = per_round * ROUNDS as usize + 16;
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: None,
        maglev_slots: Some(1 << 16),
        ct_entries: Some((4 * flows_needed as u32).next_power_of_two().max(1 << 16)),
        backends: Some(4096),
        ..Default::default()
    })
    .context("loading the data plane")?;
    let m = &dp.maps;
    m.put_config(&xlb_config {
        node_addr: be32(NODE),
        vxlan_port: VXLAN_PORT.to_be(),
        mtu: 1500,
        vni: 1,
        ifindex: uplink,
        mac: NODE_MAC,
        flags: XLB_CFG_F_VXLAN | XLB_CFG_F_REJECT | XLB_CFG_F_TNAT,
        ..Default::default()
    })?;
    m.put_local_addr(NODE)?;
    // Backends: 1..=3 local, 4 on the peer node.
    for (id, a) in [
        (1u32, [10, 244, 1, 10]),
        (2, [10, 244, 1, 11]),
        (3, [10, 244, 1, 12]),
    ] {
        m.put_backend(id, &xlb_backend::new(sa(a, 8080), None, 1))?;
    }
    m.put_backend(
        4,
        &xlb_backend::new(sa([10, 244, 2, 10], 8080), Some(PEER), 1),
    )?;
    m.put_tunnel(
        &xlb_tunnel_key::new(Ipv4Addr::new(10, 244, 2, 0), 24),
        &xlb_tunnel_val::new(PEER, [0x02, 0xee, 0, 0, 0, 2]),
    )?;
    let svc = |vip: [u8; 4], id: u32, off: u32, table: &[u32]| -> Result<()> {
        m.write_maglev(off, table)?;
        m.put_service(
            &xlb_svc_key::addr(sa(vip, 80), Proto::Tcp),
            &xlb_svc_val {
                svc_id: id,
                table_off: off,
                table_size: table.len() as u32,
                n_local: table.len() as u32,
                ..Default::default()
            },
        )?;
        Ok(())
    };
    // The CT-hit DNAT Service's backend is its own address: the rewrite does
    // all its work (lookups, checksum arithmetic, stores) but leaves the
    // frame as it was, so every call is the same CT hit.
    m.put_backend(5, &xlb_backend::new(sa([10, 96, 0, 10], 80), None, 1))?;
    svc([10, 96, 0, 10], 1, 0, &[5; 251])?;
    svc([10, 96, 0, 11], 2, 256, &maglev_like(251, &[1, 2, 3]))?;
    svc([10, 96, 0, 20], 3, 512, &[4; 251])?;
    // A Service whose source ranges admit nobody: the drop path.
    m.write_maglev(768, &[1; 251])?;
    m.put_service(
        &xlb_svc_key::addr(sa([10, 96, 0, 30], 80), Proto::Tcp),
        &xlb_svc_val {
            svc_id: 4,
            flags: XLB_SVC_F_SRC_RANGES,
            table_off: 768,
            table_size: 251,
            n_local: 251,
            ..Default::default()
        },
    )?;
    // Two UDP Services on the remote backend: one with a stateless path
    // (svc_stable; brand new, so no ct entry of it can exist), one without;
    // a TCP one with a stateless path.
    for (vip, id, off, stateless, p) in [
        ([10, 96, 0, 21], 5, 2048, true, Proto::Udp),
        ([10, 96, 0, 22], 6, 2304, false, Proto::Udp),
        ([10, 96, 0, 23], 7, 2560, true, Proto::Tcp),
    ] {
        m.write_maglev(off, &[4; 251])?;
        m.put_service(
            &xlb_svc_key::addr(sa(vip, 53), p),
            &xlb_svc_val {
                svc_id: id,
                table_off: off,
                table_size: 251,
                ..Default::default()
            },
        )?;
        if stateless {
            m.put_svc_stable_new(
                id,
                &xlb_svc_stable {
                    table_off: off,
                    table_size: 251,
                    ..Default::default()
                },
            )?;
        }
    }
    let mon = xlb_bpf::monitor::MonitorMaps::from_skel(&dp.xdp)?;
    let mut rb = libbpf_rs::RingBufferBuilder::new();
    rb.add(&mon.events, |_: &[u8]| 0)?;
    let rb = rb.build().context("the events ring buffer")?;

    let client = sa([198, 18, 0, 100], 40000);
    let cmac = [0x02, 0, 0xc6, 0x12, 0, 0x64];
    let hit = tcp_frame(cmac, NODE_MAC, client, sa([10, 96, 0, 10], 80), ACK);
    let remote = tcp_frame(cmac, NODE_MAC, client, sa([10, 96, 0, 20], 80), ACK);
    let reply_inner = tcp_frame(PEER_MAC, NODE_MAC, sa([10, 244, 2, 10], 8080), client, ACK);
    let decap = vxlan(&reply_inner, PEER, NODE, 1);
    // Open the flows the CT-hit paths use.
    for (f, want) in [(&hit, XDP_PASS), (&remote, XDP_TX)] {
        let (rc, _) = run_once(dp.xdp_prog(), f, Some(uplink))?;
        ensure!(
            rc == want,
            "setting up the bench flows: verdict {rc}, want {want}"
        );
    }
    // New flows for the CT-miss path: one per call.
    // the client of new flow i (a source never seen before)
    let new_src = |i: usize| {
        sa(
            [198, 18, 1 + (i / 60000) as u8, (i % 250) as u8 + 1],
            1024 + (i % 60000) as u16,
        )
    };
    let miss: Vec<Vec<u8>> = (0..flows_needed)
        .map(|i| tcp_frame(cmac, NODE_MAC, new_src(i), sa([10, 96, 0, 11], 80), SYN))
        .collect();
    let udp_new = |vip: [u8; 4]| -> Vec<Vec<u8>> {
        (0..flows_needed)
            .map(|i| udp_frame(cmac, NODE_MAC, new_src(i), sa(vip, 53)))
            .collect()
    };
    let syn_stateless: Vec<Vec<u8>> = (0..flows_needed)
        .map(|i| tcp_frame(cmac, NODE_MAC, new_src(i), sa([10, 96, 0, 23], 53), SYN))
        .collect();
    let not_ours = tcp_frame(cmac, NODE_MAC, client, sa([198, 18, 0, 99], 80), ACK);
    let f6 = v6::setup(&dp, flows_needed)?;
    for (f, want) in [(&f6.hit, XDP_PASS), (&f6.remote, XDP_TX)] {
        let (rc, _) = run_once(dp.xdp_prog(), f, Some(uplink))?;
        ensure!(
            rc == want,
            "setting up the IPv6 bench flows: verdict {rc}, want {want}"
        );
    }
    let denied = tcp_frame(cmac, NODE_MAC, client, sa([10, 96, 0, 30], 80), ACK);

    let mut storage = MaybeUninit::uninit();
    let base = xlb_bpf::baseline::BaselineSkelBuilder::default()
        .open(&mut storage)
        .context("opening the baseline object")?
        .load()
        .context("loading the baseline object")?;
    let drop_prog = &base.progs.xlb_base_drop;
    let mut floor_storage = MaybeUninit::uninit();
    let floor = xlb_bpf::floor::FloorSkelBuilder::default()
        .open(&mut floor_storage)
        .context("opening the floor object")?
        .load()
        .context("loading the floor object")?;
    let fl = &floor.progs;
    let floor_path = |name, prog, frames| Path {
        floor: true,
        ..Path::new(name, prog, frames, None, XDP_DROP)
    };
    let insert_frames = |salt: u8| -> Vec<Vec<u8>> {
        miss.iter()
            .map(|f| {
                let mut f = f.clone();
                // the protocol byte: a key of its own in the floor map
                f[14 + 9] = salt;
                f
            })
            .collect()
    };
    let xdp = dp.xdp_prog();
    let up = Some(uplink);
    let mut paths = vec![
        Path::new("not_ours_pass", xdp, vec![not_ours.clone()], up, XDP_PASS),
        Path::new("ct_hit_local_dnat", xdp, vec![hit], up, XDP_PASS),
        Path::new("ct_miss_maglev_choice", xdp, miss.clone(), up, XDP_PASS),
        Path::new("remote_vxlan_encap", xdp, vec![remote], up, XDP_TX),
        Path::new(
            "udp_new_flow_stateless",
            xdp,
            udp_new([10, 96, 0, 21]),
            up,
            XDP_TX,
        ),
        Path::new("udp_new_flow_ct", xdp, udp_new([10, 96, 0, 22]), up, XDP_TX),
        Path::new("tcp_syn_stateless", xdp, syn_stateless, up, XDP_TX),
        Path::new("vxlan_decap_reverse_nat", xdp, vec![decap], up, XDP_PASS),
        Path::new("drop_src_range", xdp, vec![denied.clone()], up, XDP_DROP),
        Path::new("drop_src_range", xdp, vec![denied.clone()], up, XDP_DROP)
            .monitored("drop_monitor_on", 0),
        Path::new("drop_src_range", xdp, vec![denied], up, XDP_DROP)
            .monitored("drop_monitor_every_event", u32::MAX),
        Path::new("v6_not_ours_pass", xdp, vec![f6.not_ours], up, XDP_PASS),
        Path::new("v6_ct_hit_local_dnat", xdp, vec![f6.hit], up, XDP_PASS),
        Path::new("v6_ct_miss_maglev_choice", xdp, f6.miss, up, XDP_PASS),
        Path::new("v6_remote_vxlan_encap", xdp, vec![f6.remote], up, XDP_TX),
        floor_path(
            "ct_lookup_miss",
            &fl.floor_ct_lookup,
            vec![not_ours.clone()],
        ),
        floor_path("ct_insert", &fl.floor_ct_insert, insert_frames(201)),
        floor_path(
            "ct_insert_pair",
            &fl.floor_ct_insert_pair,
            insert_frames(202),
        ),
        floor_path("adjust_head", &fl.floor_adjust_head, vec![not_ours.clone()]),
    ];

    let mut base_durations = Vec::new();

    for _ in 0..ROUNDS {
        for _ in 0..per_round {
            let (rc, d) = run_once(drop_prog, &not_ours, Some(uplink))?;
            ensure!(rc == XDP_DROP, "baseline verdict {rc}");
            base_durations.push(d);
        }
        for p in paths.iter_mut() {
            mon.set(p.monitor.is_some(), p.monitor.unwrap_or(0))?;
            for i in 0..per_round {
                let f = if p.frames.len() > 1 {
                    let k = p.next;
                    p.next += 1;
                    &p.frames[k]
                } else {
                    &p.frames[i % p.frames.len()]
                };
                let (rc, d) = run_once(p.prog, f, p.ingress)?;
                ensure!(
                    rc == p.verdict,
                    "{}: verdict {rc}, want {}",
                    p.name,
                    p.verdict
                );
                p.durations.push(d);
                if p.monitor.is_some() {
                    rb.consume().context("draining the events ring buffer")?;
                }
            }
        }
    }
    mon.set(false, 0)?;
    let baseline_ns = interquartile_mean(&mut base_durations);
    let (floors, paths): (Vec<Path>, Vec<Path>) = paths.into_iter().partition(|p| p.floor);
    let result = |mut p: Path| {
        let ns = interquartile_mean(&mut p.durations);
        PathResult {
            name: p.name.to_string(),
            ns,
            ratio: if baseline_ns > 0.0 {
                ns / baseline_ns
            } else {
                0.0
            },
        }
    };
    Ok(Report {
        baseline_ns,
        paths: paths.into_iter().map(result).collect(),
        floors: floors.into_iter().map(result).collect(),
    })
}

/// A table spreading slots over `ids` round-robin (the bench only needs a
/// multi-backend region; the real tables come from `crate::maglev`).
fn maglev_like(m: usize, ids: &[u32]) -> Vec<u32> {
    (0..m).map(|i| ids[i % ids.len()]).collect()
}

#[cfg(test)]
mod tests {
    use super::interquartile_mean;

    #[test]
    fn interquartile_mean_drops_both_quarters() {
        // 8 samples: the middle half is 20, 20, 30, 30.
        let mut v = [1000, 10, 20, 30, 20, 30, 5, 40];
        assert_eq!(interquartile_mean(&mut v), 25.0);
        assert_eq!(interquartile_mean(&mut [7]), 7.0);
        assert_eq!(interquartile_mean(&mut []), 0.0);
    }
}
