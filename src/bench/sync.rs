//! `xlb bench sync`: how fast the control plane turns Kubernetes objects into
//! map contents, measured into real (private, unpinned) BPF maps.
//!
//! 1. Full sync: N Services (ClusterIP) with M ready endpoints each, in
//!    EndpointSlices of at most 100 endpoints (the EndpointSlice controller's
//!    default `--max-endpoints-per-slice`), spread over 8 nodes (this node is
//!    one of them), fed to the incremental model one object at a time as a
//!    watcher's initial list would (each Service after its EndpointSlices: the
//!    model computes it once, as from the agent's first snapshot), then one
//!    [`Syncer::apply`] into empty maps. `full_sync_ms` covers
//!    both (objects -> maps); each object is made (deserialized) off the
//!    clock, as a source hands it over (an EndpointSlice's conversion to the
//!    compact [`Slice`] the sources keep is timed), and [`Syncer::adopt`] of the empty
//!    maps is timed on its own (`adopt_ms`: reading the backend slots).
//! 2. Changes: `--changes` times, one random endpoint of a random Service is
//!    replaced by a new address (its EndpointSlice is the one that changes);
//!    the latency of model update + apply
//!    (new backend, new Maglev region, the services switch, old region freed,
//!    old backend retired) goes into an HDR histogram: `change_p50_us`,
//!    `change_p99_us`; the CPU time the process spent on each (every
//!    thread) into another: `change_cpu_p50_us`, `change_cpu_p99_us` (what
//!    a busy machine does not inflate); the model's part of each (wall):
//!    `change_model_p50_us`, `change_model_p99_us`, of which the
//!    conversion of the EndpointSlice to a [`Slice`] (the source's work in
//!    the agent): `change_convert_p50_us`.
//! 3. `full_sync_cpu_ms`: the CPU time (user + system, every thread of the
//!    process) spent in the timed parts of the full sync: the work, which a
//!    busy machine does not inflate as it does the wall-clock figures.
//! 4. `rss_mb`: the process's peak resident set (VmHWM), which includes the
//!    model, the syncer and the generated objects, minus the memory-mapped
//!    `maglev` array (kernel memory that exists whether or not it is mapped;
//!    it is mapped before the run so that it is resident throughout);
//!    `rss_with_maps_mb` is VmHWM itself; `rss_model_mb` the same as
//!    `rss_mb` once every object is in the model (before the maps are
//!    grown and the syncer writes them).
//!
//! The maps are the agent's: the compiled-in sizes, grown by the agent's
//! rule ([`crate::agent::sizing`]) for the desired state before the apply
//! (`grow_ms`, and the sizes reached: `maglev_slots`, `max_frontends`,
//! `max_backends`).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::agent::sizing;
use crate::model::{MaglevConfig, Model, ModelConfig, Slice};
use crate::sync::{SyncOptions, Syncer};

const NODES: u32 = 8;

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Number of Services (one port each), 1..=100000.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub services: u32,
    /// Ready endpoints per Service (in EndpointSlices of at most 100), 0..=5000;
    /// at most 8,000,000 endpoints in all (Kubernetes' envelope: 150,000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=5000))]
    pub endpoints: u32,
    /// Single-EndpointSlice changes to time after the full sync.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub changes: u32,
    /// Also time the agent's path for one-slice changes: the source's whole
    /// snapshot (all N Services and slices) diffed against the previous one
    /// (`Model::apply_snapshot`), then the sync; and, for comparison, the old
    /// way (`model::build` of the whole snapshot, then the sync). Holds the
    /// whole snapshot in memory (raises `rss_mb`).
    #[arg(long)]
    pub agent_path: bool,
    /// UDP Services instead of TCP: each is eligible for stateless flows,
    /// so the sync also keeps its `svc_stable` entry, and every change opens
    /// a window that holds the previous table's region (docs/ctl.md,
    /// "Stateless flows").
    #[arg(long)]
    pub udp: bool,
    /// Print one JSON object: {"services", "full_sync_ms", "change_p50_us", "change_p99_us", "change_cpu_p50_us", "change_cpu_p99_us", "change_model_p50_us", "change_model_p99_us", "change_convert_p50_us", "rss_mb", "rss_model_mb", "model_ms", "apply_ms", "adopt_ms", "rss_with_maps_mb", "full_sync_cpu_ms", "grow_ms", "maglev_slots", "max_frontends", "max_backends", "udp", "stable_retained_slots" (Maglev slots held by open stable-table windows at the end)}.
    #[arg(long)]
    pub json: bool,
}

fn svc_ip(i: u32) -> Ipv4Addr {
    // 10.96.0.0/12, the default Service range, holds them all (i <= 100000)
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i)
}

/// Endpoint addresses: a unique address per (Service, endpoint, version)
/// in 10.128.0.0/9 (map contents only: no traffic is sent).
fn ep_ip(serial: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + serial)
}

/// The protocol of every Service port.
fn proto(udp: bool) -> &'static str {
    if udp {
        "UDP"
    } else {
        "TCP"
    }
}

fn service(i: u32, udp: bool) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
        "spec": {"clusterIP": svc_ip(i).to_string(),
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": proto(udp)}]}
    }))
    .expect("static Service")
}

/// Endpoints per EndpointSlice at most: the EndpointSlice controller's
/// default (`--max-endpoints-per-slice` 100).
const PER_SLICE: usize = 100;

/// The EndpointSlices of Service `i` (`serials`: its endpoints), as many as
/// [`PER_SLICE`] needs (one when there are none).
fn slice_count(serials: &[u32]) -> usize {
    serials.len().div_ceil(PER_SLICE).max(1)
}

/// EndpointSlice `part` of Service `i`: its endpoints
/// `part * PER_SLICE ..` of `serials`.
fn slice(i: u32, part: usize, serials: &[u32], udp: bool) -> EndpointSlice {
    let chunk = serials.chunks(PER_SLICE).nth(part).unwrap_or(&[]);
    let eps: Vec<_> = chunk
        .iter()
        .map(|s| {
            json!({"addresses": [ep_ip(*s).to_string()], "nodeName": format!("node-{}", s % NODES),
                   "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}-{part}"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": proto(udp)}],
        "endpoints": eps,
    }))
    .expect("static EndpointSlice")
}

fn node(n: u32) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{n}"),
                     "annotations": {"xlb.io/vtep-mac": format!("02:00:c6:12:00:{:02x}", n + 1)}},
        "spec": {"podCIDR": format!("10.244.{n}.0/24")},
        "status": {"addresses": [{"type": "InternalIP", "address": format!("198.18.0.{}", n + 1)}]}
    }))
    .expect("static Node")
}

/// CPU time (user + system) of the whole process so far.
fn cpu_time() -> std::time::Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the whole process so far (every thread), to the nanosecond.
fn process_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Peak resident set in MiB, from /proc/self/status VmHWM.
pub fn peak_rss_mb() -> anyhow::Result<f64> {
    let s = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb / 1024.0)
}

/// Resident MiB of this process's mappings of BPF maps (the memory-mapped
/// `maglev` array), from /proc/self/smaps.
pub fn mapped_bpf_maps_mb() -> anyhow::Result<f64> {
    let s = std::fs::read_to_string("/proc/self/smaps").context("reading /proc/self/smaps")?;
    let mut in_map = false;
    let mut kb = 0.0;
    for l in s.lines() {
        let mut f = l.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_map = l.contains("anon_inode:bpf-map");
        } else if in_map && first == "Rss:" {
            kb += f.next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    Ok(kb / 1024.0)
}

/// Latencies of the agent's path for one-slice changes.
struct AgentPath {
    incr_p50: f64,
    incr_p99: f64,
    /// Of which the snapshot diff + model.
    incr_model_p50: f64,
    incr_n: u32,
    full_p50: f64,
    full_p99: f64,
    full_n: u32,
    snap_p50: f64,
}

/// One-slice changes the way `xlb agent` handles them: the source publishes
/// the whole snapshot, the agent diffs it against the previous one into the
/// model and syncs. Continues from the bench's synced state.
fn agent_path(
    model: &mut Model,
    syncer: &mut Syncer<&mut xlb_bpf::Maps>,
    serials: &mut [Vec<u32>],
    rng: &mut Rng,
    next_serial: &mut u32,
    changes: u32,
    udp: bool,
) -> anyhow::Result<AgentPath> {
    let n = serials.len() as u32;
    // As the API server hands them over: every object with a resourceVersion.
    fn rv<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(mut o: K, v: u32) -> std::sync::Arc<K> {
        o.metadata_mut().resource_version = Some(v.to_string());
        std::sync::Arc::new(o)
    }
    let mut snap = crate::model::Snapshot {
        services: (0..n).map(|i| rv(service(i, udp), 1)).collect(),
        slices: (0..n)
            .flat_map(|i| {
                let s = &serials[i as usize];
                (0..slice_count(s))
                    .map(move |p| Arc::new(Slice::from(&*rv(slice(i, p, s, udp), 1))))
            })
            .collect(),
        nodes: (0..NODES).map(|i| rv(node(i), 1)).collect(),
    };
    crate::sources::sort_snapshot(&mut snap);
    let index: std::collections::HashMap<String, usize> = snap
        .slices
        .iter()
        .enumerate()
        .map(|(j, s)| (s.metadata.name.clone().unwrap_or_default(), j))
        .collect();
    // The agent's model after its first snapshot; same state as `model`.
    let mut agent_model = Model::from_snapshot(&snap, model.config().clone());
    let r = syncer.apply(agent_model.desired())?;
    if r.writes != 0 || !r.failed.is_empty() {
        bail!("agent model differs from the bench model: {r:?}");
    }
    let new_hist = || hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
    let (mut incr, mut full, mut snaps) = (new_hist()?, new_hist()?, new_hist()?);
    let mut incr_model = new_hist()?;
    let mut change = |snap: &mut crate::model::Snapshot| {
        let i = rng.below(n);
        let s = &mut serials[i as usize];
        let mut part = 0;
        if !s.is_empty() {
            let j = rng.below(s.len() as u32) as usize;
            s[j] = *next_serial;
            *next_serial += 1;
            part = j / PER_SLICE;
        }
        snap.slices[index[&format!("svc-{i}-{part}")]] =
            Arc::new(Slice::from(&*rv(slice(i, part, s, udp), *next_serial)));
    };
    // The agent's way: diff the snapshot into the model, sync.
    for _ in 0..changes {
        change(&mut snap);
        let t = Instant::now();
        agent_model.apply_snapshot(&snap);
        let t_model = t.elapsed();
        let r = syncer.apply(agent_model.desired())?;
        incr.record((t.elapsed().as_micros() as u64).max(1))?;
        incr_model.record((t_model.as_micros() as u64).max(1))?;
        if !r.failed.is_empty() {
            bail!("change failed: {:?}", r.failed[0]);
        }
    }
    // What the kube source does per publish: copy the stores, sort.
    let full_n = (changes / 10).max(1);
    for _ in 0..full_n {
        let t = Instant::now();
        let mut copy = snap.clone();
        crate::sources::sort_snapshot(&mut copy);
        snaps.record((t.elapsed().as_micros() as u64).max(1))?;
    }
    // The old way: model::build of the whole snapshot, then the sync.
    for _ in 0..full_n {
        change(&mut snap);
        let t = Instant::now();
        let d = crate::model::build(&snap, agent_model.config());
        let r = syncer.apply(&d)?;
        full.record((t.elapsed().as_micros() as u64).max(1))?;
        if !r.failed.is_empty() {
            bail!("change failed: {:?}", r.failed[0]);
        }
    }
    agent_model.apply_snapshot(&snap);
    // The bench's own model follows, for anyone using it after.
    *model = agent_model;
    Ok(AgentPath {
        incr_p50: incr.value_at_quantile(0.5) as f64,
        incr_p99: incr.value_at_quantile(0.99) as f64,
        incr_model_p50: incr_model.value_at_quantile(0.5) as f64,
        incr_n: changes,
        full_p50: full.value_at_quantile(0.5) as f64,
        full_p99: full.value_at_quantile(0.99) as f64,
        full_n,
        snap_p50: snaps.value_at_quantile(0.5) as f64,
    })
}

/// Deterministic xorshift for picking Services.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

pub fn run(a: SyncArgs) -> anyhow::Result<()> {
    let n = a.services;
    let m = a.endpoints;
    // endpoint addresses come from 10.128.0.0/9, one per (Service, endpoint, version)
    let total = u64::from(n) * u64::from(m) + u64::from(a.changes) * 2;
    if total > 8_000_000 {
        bail!(
            "{n} Services x {m} endpoints (+ the changes) is {total} endpoints: at most 8,000,000 \
             (Kubernetes' envelope is 150,000 in a cluster)"
        );
    }
    let mcfg = ModelConfig {
        node_name: "node-0".into(),
        node_addrs: vec![Ipv4Addr::new(198, 18, 0, 1).into()],
        maglev: MaglevConfig::default(),
        ..Default::default()
    };
    // The agent's maps: the compiled-in sizes, grown by the agent's own rule
    // (crate::agent::sizing) for the desired state, as `xlb agent` without
    // size flags does.
    let mut dp = xlb_loader::DataPlane::load(&xlb_loader::LoadOptions::default())
        .context("loading the data plane (needs root)")?;

    // Full sync: each object is made (deserialized) off the clock, as a
    // source hands it over, and fed to the model on it (an EndpointSlice
    // converted to the compact Slice on the clock, as the sources do).
    let mut model = Model::new(mcfg);
    let mut t_model = std::time::Duration::ZERO;
    let mut cpu = std::time::Duration::ZERO;
    for i in 0..NODES {
        let nd = node(i);
        let (c, t) = (cpu_time(), Instant::now());
        model.upsert_node(&nd);
        t_model += t.elapsed();
        cpu += cpu_time().saturating_sub(c);
    }
    let mut serials: Vec<Vec<u32>> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let s: Vec<u32> = (0..m).map(|j| i * m + j).collect();
        let svc = Arc::new(service(i, a.udp));
        let sls: Vec<EndpointSlice> = (0..slice_count(&s))
            .map(|p| slice(i, p, &s, a.udp))
            .collect();
        // CPU time first: its syscall stays off the wall clock
        let (c, t) = (cpu_time(), Instant::now());
        for sl in sls {
            model.upsert_slice_shared(Arc::new(Slice::from(sl)));
        }
        model.upsert_service_shared(svc);
        t_model += t.elapsed();
        cpu += cpu_time().saturating_sub(c);
        serials.push(s);
    }
    // What the objects and the model hold, before the maps and the syncer.
    let rss_model = peak_rss_mb()? - mapped_bpf_maps_mb()?;
    let table = model.config().maglev.table_size(m as usize);
    let t_grow = Instant::now();
    let want = sizing::plan(
        &sizing::need(model.desired()),
        &dp.sizes(),
        &sizing::Fixed::default(),
        &[],
    );
    if let Some(grown) = dp.grow(&want).context("growing the maps")? {
        dp = grown;
    }
    let t_grow = t_grow.elapsed();
    let sizes = dp.sizes();

    // Map the maglev array now, so that it is resident for the whole run.
    dp.maps.read_maglev(0, 1)?;
    let t_adopt = Instant::now();
    let mut syncer = Syncer::adopt(&mut dp.maps, SyncOptions::default())?;
    let t_adopt = t_adopt.elapsed();

    let (c1, t1) = (cpu_time(), Instant::now());
    let rep = syncer.apply(model.desired())?;
    let t_apply = t1.elapsed();
    cpu += cpu_time().saturating_sub(c1);
    let full = t_model + t_apply;
    if !rep.failed.is_empty() {
        bail!(
            "full sync failed for {} ports, first: {:?}",
            rep.failed.len(),
            rep.failed[0]
        );
    }

    // Single-slice changes.
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut hist_cpu = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut hist_model = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut hist_convert = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_serial = n * m;
    for _ in 0..a.changes {
        let i = rng.below(n);
        let s = &mut serials[i as usize];
        let mut part = 0;
        if m > 0 {
            let j = rng.below(m) as usize;
            s[j] = next_serial;
            next_serial += 1;
            part = j / PER_SLICE;
        }
        let obj = slice(i, part, s, a.udp);
        let (c, t) = (process_cpu(), Instant::now());
        let obj = Arc::new(Slice::from(obj));
        hist_convert.record((t.elapsed().as_micros() as u64).max(1))?;
        model.upsert_slice_shared(obj);
        hist_model.record((t.elapsed().as_micros() as u64).max(1))?;
        let r = syncer.apply(model.desired())?;
        let us = t.elapsed().as_micros() as u64;
        hist_cpu.record((process_cpu().saturating_sub(c).as_micros() as u64).max(1))?;
        if !r.failed.is_empty() {
            bail!("change failed: {:?}", r.failed[0]);
        }
        hist.record(us.max(1))?;
    }
    let agent = if a.agent_path {
        Some(agent_path(
            &mut model,
            &mut syncer,
            &mut serials,
            &mut rng,
            &mut next_serial,
            a.changes.min(500),
            a.udp,
        )?)
    } else {
        None
    };

    let retained = syncer.retained_slots();
    let rss_all = peak_rss_mb()?;
    let mapped = mapped_bpf_maps_mb()?;
    let rss = rss_all - mapped;
    let full_ms = full.as_secs_f64() * 1e3;
    let model_ms = t_model.as_secs_f64() * 1e3;
    let apply_ms = t_apply.as_secs_f64() * 1e3;
    let adopt_ms = t_adopt.as_secs_f64() * 1e3;
    let grow_ms = t_grow.as_secs_f64() * 1e3;
    let p50 = hist.value_at_quantile(0.50) as f64;
    let p99 = hist.value_at_quantile(0.99) as f64;
    let cpu50 = hist_cpu.value_at_quantile(0.50) as f64;
    let cpu99 = hist_cpu.value_at_quantile(0.99) as f64;
    if a.json {
        let mut out = json!({"services": n, "full_sync_ms": full_ms, "change_p50_us": p50,
               "change_p99_us": p99, "rss_mb": rss, "model_ms": model_ms,
               "apply_ms": apply_ms, "adopt_ms": adopt_ms, "rss_with_maps_mb": rss_all,
               "grow_ms": grow_ms, "maglev_slots": sizes.maglev, "max_frontends": sizes.services,
               "max_backends": sizes.backends,
               "full_sync_cpu_ms": cpu.as_secs_f64() * 1e3,
               "change_cpu_p50_us": cpu50, "change_cpu_p99_us": cpu99,
               "udp": a.udp, "stable_retained_slots": retained,
               "rss_model_mb": rss_model,
               "change_model_p50_us": hist_model.value_at_quantile(0.50),
               "change_model_p99_us": hist_model.value_at_quantile(0.99),
               "change_convert_p50_us": hist_convert.value_at_quantile(0.50)});
        if let Some(ag) = &agent {
            out["agent_change_p50_us"] = json!(ag.incr_p50);
            out["agent_change_p99_us"] = json!(ag.incr_p99);
            out["agent_change_model_p50_us"] = json!(ag.incr_model_p50);
            out["agent_rebuild_p50_us"] = json!(ag.full_p50);
            out["agent_rebuild_p99_us"] = json!(ag.full_p99);
            out["source_snapshot_p50_us"] = json!(ag.snap_p50);
        }
        println!("{out}");
    } else {
        println!("services            {n} x {m} endpoints (table {table} slots each)");
        println!(
            "full sync           {full_ms:.1} ms (model {model_ms:.1} ms, apply {apply_ms:.1} ms; {} map writes, {} slots)",
            rep.writes,
            rep.slots_written
        );
        println!(
            "  CPU time          {:.1} ms (user + system, all threads)",
            cpu.as_secs_f64() * 1e3
        );
        println!("adopt (empty maps)  {adopt_ms:.1} ms");
        println!(
            "agent map sizes     maglev {} slots, services {}, backends {} (grown in {grow_ms:.1} ms)",
            sizes.maglev, sizes.services, sizes.backends
        );
        println!(
            "one-slice change    p50 {p50:.0} us, p99 {p99:.0} us, max {} us ({} changes); CPU time p50 {cpu50:.0} us, p99 {cpu99:.0} us",
            hist.max(),
            a.changes
        );
        if let Some(ag) = &agent {
            println!(
                "agent path, 1 slice p50 {:.0} us, p99 {:.0} us: snapshot diff + model + sync ({} changes; diff + model p50 {:.0} us)",
                ag.incr_p50, ag.incr_p99, ag.incr_n, ag.incr_model_p50
            );
            println!(
                "  old way           p50 {:.0} us, p99 {:.0} us: model::build of the snapshot + sync ({} changes)",
                ag.full_p50, ag.full_p99, ag.full_n
            );
            println!(
                "  source side       p50 {:.0} us: copying and sorting the whole snapshot (kube stores)",
                ag.snap_p50
            );
        }
        println!(
            "peak RSS            {rss:.1} MiB ({rss_all:.1} MiB with the {mapped:.1} MiB mapped maglev array)"
        );
    }
    Ok(())
}
