//! Restarts and upgrades keep every established flow.
//!
//! Steady sequence-numbered streams ([`stream_support`]) run through the
//! lab's Services on every path the data plane has:
//! - the external client to NodePort 30080 of both nodes and to the
//!   LoadBalancer IP (XDP on the uplink; backends local and across the
//!   VXLAN overlay), TCP and UDP;
//! - pods on both nodes to the ClusterIP 10.96.0.10:80 (tc on the pod veth);
//! - node1's own namespace to the same ClusterIP (the cgroup socket hooks).
//!
//! While they run, each case does one thing to the agents of both nodes:
//! - `sigkill`: SIGKILL, traffic flows with no agent, `xlb lab up` restarts them;
//! - `sigterm`: SIGTERM (the agent exits cleanly and leaves the data plane
//!   attached), then restart;
//! - `attach`: `xlb attach` over the live pins from a copy of the xlb binary
//!   (the stand-in for a new build: a different file, the same code), with
//!   the agents running;
//! - `private_layout`: SIGTERM, the pinned private caches (`flow_cache`,
//!   `nh_cache`, `vtep_cache`) swapped for maps of another layout, as a build
//!   whose caches changed leaves them, then the agents started from the copy
//!   of the binary, which replace those caches and attach;
//! - `tunnel_nat_rollout`: the two rollouts of docs/dp.md ("Mixed versions"),
//!   backwards and forwards, one node at a time: each agent restarted with
//!   `XLB_NO_TUNNEL_NAT`, then each without it, so flows cross every mix of
//!   a node sending the frontend trailer (and flows with no state on it) and
//!   one sending without (both ct entries).
//!
//! Every case asserts: no TCP connection reset, closed, stalled or moved to
//! another backend; no UDP datagram lost (the count per flow is printed),
//! duplicated or answered by another backend; every flow made progress
//! during the disturbance and after it; and every hook of both nodes runs a
//! new program afterwards (the streams really crossed a program swap).

mod e2e_support;
mod stream_support;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use e2e_support::*;
use stream_support::{Streams, SERIAL};
use xlb_lab::{self as lab, daemons, netns, procs, Lab};
use xlb_loader::attach;

/// Messages each flow must have answered before, during and after a case's action.
const STEP: u64 = 100;

static LAB: Mutex<Weak<LabGuard>> = Mutex::new(Weak::new());

const CACHES: [&str; 3] = ["flow_cache", "nh_cache", "vtep_cache"];

/// Every flow of the lab's paths (see the file comment).
fn start_streams(l: &Lab) -> Streams {
    let mut s = Streams::new();
    let cip = sa([10, 96, 0, 10], 80);
    let client = l.ns_client();
    for n in 1..=2 {
        s.tcp(
            &format!("client->node{n}:30080"),
            &client,
            Some(lab::CLIENT_ADDR),
            node(n, 30080),
            3,
        );
        s.udp(
            &format!("client->node{n}:30080"),
            &client,
            node(n, 30080),
            2,
        );
    }
    s.tcp(
        "client->lb 10.96.100.17:80",
        &client,
        Some(lab::CLIENT_ADDR),
        sa([10, 96, 100, 17], 80),
        2,
    );
    for (n, k) in [(1, 1), (2, 2)] {
        let ns = l.ns_pod(n, k);
        let label = format!("pod {}->{cip}", lab::pod_name(n, k));
        s.tcp(&label, &ns, None, cip, 2);
        s.udp(&label, &ns, cip, 2);
    }
    let label = format!("node1->{cip} (socket lb)");
    s.tcp(&label, &l.ns_node(1), None, cip, 2);
    s.udp(&label, &l.ns_node(1), cip, 2);
    s
}

/// (iface, hook, program id) of every link pinned for node `n`: uplink,
/// pod veths and the cgroup socket hooks.
fn hooks(l: &Lab, n: u8) -> Vec<(String, String, u32)> {
    let pin = l.pin_dir(n);
    let p = pin.clone();
    let mut v = netns::run(&l.ns_node(n), move || attach::list(&p))
        .unwrap()
        .unwrap();
    v.sort_by(|a, b| a.pin.cmp(&b.pin));
    let mut out: Vec<_> = v
        .into_iter()
        .map(|a| (a.iface, a.hook.describe(), a.prog_id))
        .collect();
    for (hook, path) in xlb_loader::cgroup::list(&pin) {
        let fd = xlb_loader::sys::obj_get(&path).unwrap();
        let info = libbpf_rs::query::LinkInfo::from_fd(fd.as_fd()).unwrap();
        out.push(("cgroup".into(), hook.name().into(), info.prog_id));
    }
    out
}

/// [`hooks`] of both nodes.
fn all_hooks(l: &Lab) -> Vec<Vec<(String, String, u32)>> {
    (1..=2).map(|n| hooks(l, n)).collect()
}

/// Stops both agents with `sig` and lets every flow go on without them:
/// the hooks stay as they were (same programs) and keep forwarding.
fn stop_agents(g: &LabGuard, s: &Streams, sig: i32) {
    let attached = all_hooks(&g.lab);
    signal_agents(g, sig);
    s.advance(STEP)
        .unwrap_or_else(|e| panic!("no agent: {e}\n{}", g.logs()));
    assert_eq!(
        all_hooks(&g.lab),
        attached,
        "the stopped agents left the hooks as they were"
    );
}

/// A copy of the xlb binary in the lab's state directory: the "new build".
fn new_binary(l: &Lab) -> PathBuf {
    // A name per copy: an earlier copy may be running as an agent.
    let p = l.state_dir().join(xlb_testkit::unique_name("xlb-next"));
    std::fs::copy(XLB, &p).unwrap();
    p
}

fn lab_up(g: &LabGuard, xlb_bin: Option<&Path>) {
    lab_up_env(g, xlb_bin, &[]);
}

/// `xlb lab up` with `env` set for the agents it starts (those not running),
/// with info logs: the agents' logs tell how they stopped and started.
fn lab_up_env(g: &LabGuard, xlb_bin: Option<&Path>, env: &[(&str, &str)]) {
    let mut all = vec![("RUST_LOG", "info")];
    all.extend_from_slice(env);
    g.up_with(xlb_bin, &all);
}

/// Agents of both nodes running (an earlier case may have failed half-way).
fn agents_up(g: &LabGuard) {
    if (1..=2).any(|n| daemons::agent_daemon(&g.lab, n).running().is_none()) {
        lab_up(g, None);
    }
}

fn signal_agents(g: &LabGuard, sig: i32) {
    signal_agents_of(g, &[1, 2], sig);
}

fn signal_agents_of(g: &LabGuard, nodes: &[u8], sig: i32) {
    let mut pids = Vec::new();
    for &n in nodes {
        let d = daemons::agent_daemon(&g.lab, n);
        let pid = d.running().expect("agent running");
        // SAFETY: plain kill(2) of a process of our lab.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
        pids.push(pid);
    }
    eventually("agents gone", Duration::from_secs(30), || {
        pids.iter().all(|&p| !procs::alive(p)).then_some(())
    });
}

/// Runs one case: streams up, `act`, streams on, then the assertions of the
/// file comment.
fn case(name: &str, act: impl FnOnce(&LabGuard, &Streams)) {
    if !xlb_testkit::privileged() {
        return;
    }
    let g = shared(&LAB, || {
        let g = LabGuard {
            lab: Lab::new(&xlb_testkit::unique_name("xup"), 2, 2).unwrap(),
        };
        lab_up(&g, None);
        g
    });
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    agents_up(&g);
    let before = all_hooks(&g.lab);
    let s = start_streams(&g.lab);
    s.advance(STEP)
        .unwrap_or_else(|e| panic!("{name}, before: {e}\n{}", g.logs()));
    act(&g, &s);
    let progress = s.advance(STEP);
    let r = s.finish();
    r.print(name);
    if let Err(e) = progress {
        panic!("{name}, after: {e}\n{}", g.logs());
    }

    let failures = r.tcp_failures();
    assert!(
        failures.is_empty(),
        "{name}: TCP connections failed: {failures:#?}\n{}",
        g.logs()
    );
    let faults = r.udp_faults();
    assert!(
        faults.is_empty(),
        "{name}: UDP flows: {faults:#?}\n{}",
        g.logs()
    );
    assert_eq!(
        r.lost(),
        0,
        "{name}: UDP datagrams lost (see the lines above)"
    );
    let after = all_hooks(&g.lab);
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        let shape = |v: &[(String, String, u32)]| -> Vec<(String, String)> {
            v.iter().map(|h| (h.0.clone(), h.1.clone())).collect()
        };
        assert_eq!(shape(b), shape(a), "node{}: hooks changed", n + 1);
        assert!(
            b.len() >= 9,
            "node{}: uplink, pod and socket hooks: {b:?}",
            n + 1
        );
        for (x, y) in b.iter().zip(a) {
            assert_ne!(x.2, y.2, "node{}: {} {} kept its program", n + 1, x.0, x.1);
        }
    }
}

#[test]
fn sigkill_and_restart_keep_every_flow() {
    case("sigkill", |g, s| {
        stop_agents(g, s, libc::SIGKILL);
        lab_up(g, None);
    });
}

#[test]
fn sigterm_and_restart_keep_every_flow() {
    case("sigterm", |g, s| {
        let logs: Vec<_> = (1..=2)
            .map(|n| daemons::agent_daemon(&g.lab, n).log_file)
            .collect();
        let len = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len() as usize);
        let offsets: Vec<usize> = logs.iter().map(len).collect();
        stop_agents(g, s, libc::SIGTERM);
        for (p, off) in logs.iter().zip(offsets) {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(
                text[off..].contains("agent stopped; the data plane keeps forwarding"),
                "{}: no clean stop:\n{}",
                p.display(),
                &text[off..]
            );
        }
        lab_up(g, None);
    });
}

#[test]
fn attach_from_a_new_binary_keeps_every_flow() {
    case("attach", |g, s| {
        let bin = new_binary(&g.lab);
        let scratch = g.lab.state_dir().join(".bpffs-upgrade");
        std::fs::create_dir_all(&scratch).unwrap();
        // Three upgrades in a row, traffic flowing between them.
        for round in 0..3 {
            for n in 1..=2 {
                let mut c = netns::command(&g.lab.ns_node(n), &bin, Some(&scratch)).unwrap();
                c.arg("--pin-dir")
                    .arg(g.lab.pin_dir(n))
                    .args(["attach", "--iface", lab::UPLINK, "--pod-ifaces"])
                    .arg(daemons::POD_VETH_PATTERN);
                let out = c.output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success()
                        && text.contains("replaced")
                        && !text.contains(" attached"),
                    "round {round}, node{n}: xlb attach: {text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            s.advance(STEP / 2)
                .unwrap_or_else(|e| panic!("after upgrade {round}: {e}\n{}", g.logs()));
        }
    });
}

/// Map id and value size of a pinned map.
fn map_info(path: &Path) -> (u32, u32) {
    let fd = xlb_loader::sys::obj_get(path).unwrap();
    let info = libbpf_rs::MapInfo::new(fd.as_fd()).unwrap();
    (info.info.id, info.info.value_size)
}

/// Replaces the pin at `path` with a fresh map of the same kind whose values
/// are 8 bytes longer (what another build's cache layout looks like here).
fn pin_other_layout(path: &Path) -> u32 {
    let fd = xlb_loader::sys::obj_get(path).unwrap();
    let info = libbpf_rs::MapInfo::new(fd.as_fd()).unwrap();
    let m = libbpf_rs::MapHandle::create(
        info.map_type(),
        Some(info.name().unwrap()),
        info.info.key_size,
        info.info.value_size + 8,
        info.info.max_entries,
        &libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::remove_file(path).unwrap();
    let mut m = m;
    m.pin(path).unwrap();
    map_info(path).0
}

#[test]
fn new_binary_with_another_private_layout_keeps_every_flow() {
    case("private_layout", |g, s| {
        stop_agents(g, s, libc::SIGTERM);
        let mut swapped = Vec::new();
        for n in 1..=2 {
            for name in CACHES {
                let p = xlb_loader::pin::private_dir(&g.lab.pin_dir(n)).join(name);
                let old = map_info(&p);
                let decoy = pin_other_layout(&p);
                swapped.push((p, old, decoy));
            }
        }
        lab_up(g, Some(&new_binary(&g.lab)));
        // The new agents replaced every cache of another layout with a
        // fresh one of their own layout (not the decoy, not the old map).
        for (p, (old_id, old_size), decoy) in &swapped {
            let (id, size) = map_info(p);
            assert_eq!(size, *old_size, "{}: layout", p.display());
            assert_ne!(id, *decoy, "{}: the decoy was kept", p.display());
            assert_ne!(id, *old_id, "{}: not a fresh map", p.display());
        }
    });
}

/// Whether node `n`'s data plane sends remote flows with tunnel NAT.
fn tunnel_nat(l: &Lab, n: u8) -> bool {
    let m = xlb_bpf::Maps::from_pin_dir(&l.pin_dir(n)).unwrap();
    m.config().unwrap().flags & xlb_bpf::consts::XLB_CFG_F_TNAT != 0
}

#[test]
fn tunnel_nat_rollout_node_by_node_keeps_every_flow() {
    case("tunnel_nat_rollout", |g, s| {
        for no_tnat in [true, false] {
            for n in 1..=2 {
                signal_agents_of(g, &[n], libc::SIGTERM);
                let env: &[(&str, &str)] = if no_tnat {
                    &[("XLB_NO_TUNNEL_NAT", "true")]
                } else {
                    &[]
                };
                lab_up_env(g, None, env);
                let mode = if no_tnat { "off" } else { "on" };
                let other = 3 - n;
                // The step really took (and the other node kept its mode):
                // node1 first, so the mixes are (off, on) and (on, off).
                assert_eq!(
                    tunnel_nat(&g.lab, n),
                    !no_tnat,
                    "node{n}: tunnel NAT {mode}"
                );
                assert_eq!(
                    tunnel_nat(&g.lab, other),
                    (other < n) != no_tnat,
                    "node{other} kept its mode"
                );
                s.advance(STEP / 2).unwrap_or_else(|e| {
                    panic!("node{n} with tunnel NAT {mode}: {e}\n{}", g.logs())
                });
            }
        }
    });
}
