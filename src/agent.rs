//! # `xlb agent`: sources -> model -> sync, with metrics and health
//!
//! One agent per node. At start it
//! 1. binds the metrics/health listener (a port clash fails at once);
//! 2. loads the data plane with its maps pinned under `--pin-dir`, *reusing*
//!    the maps already pinned there (a restart or upgrade keeps every entry,
//!    connection tracking included), and pins the programs;
//! 3. adopts what the maps hold ([`Syncer::adopt`]: nothing is written yet);
//! 4. starts the source: `--manifests DIR`, or the Kubernetes API
//!    (`--kubeconfig`, else KUBECONFIG / ~/.kube/config / in-cluster);
//! 5. on the source's first *complete* snapshot: works out this node's
//!    address and uplink, writes the data-plane config, attaches XDP to the
//!    uplink (replacing an older xlb program in place, atomically) and tc to
//!    the pod veths (and keeps following new ones), then syncs. Only this
//!    first full sync removes stale entries; `/readyz` turns 200 after it.
//! 6. before every sync the maps that follow the cluster are grown when the
//!    desired state outgrows them ([`sizing`], [`capacity`]); what cannot be
//!    programmed fails `/readyz` ([`crate::unprogrammed`]);
//! 7. every later snapshot (debounced) is synced the same way, incrementally:
//!    only the objects that differ from the previous snapshot reach the model
//!    ([`Model::apply_snapshot`]) and only their Services reach the maps.
//!
//! SIGTERM / SIGINT stop the agent and leave the data plane as it is: maps
//! and links stay pinned and keep forwarding until the next agent adopts
//! them. `xlb agent --cleanup` is the uninstall: it detaches every hook and
//! removes every pin.
//!
//! Here: start-up, the event loop and shutdown. The flags are in [`flags`],
//! one sync in [`snapshot`], the node's facts and the `config` map in
//! [`node`], attaching in [`hooks`], map sizes in [`capacity`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use xlb_bpf::Maps;
use xlb_loader::attach;
use xlb_loader::DataPlane;

use crate::metrics::Metrics;
use crate::model::{Model, Snapshot};
use crate::sources::SourceOptions;
use crate::sync::{SyncOptions, Syncer};
use crate::unprogrammed;
pub use args::{parse_port_range, OptAddr, PortRange};
pub use flags::AgentArgs;
use node::NodeNet;

pub mod args;
mod capacity;
pub mod ct_timeouts;
mod flags;
pub mod health;
pub mod healthz;
mod hooks;
pub mod http;
pub mod net;
pub mod net6;
mod node;
pub mod shadow;
pub mod sizing;
mod snapshot;
pub mod sock_term;

/// A sync taking longer than this replaced much of the model: memory is
/// trimmed after it.
const BIG_SYNC: Duration = Duration::from_millis(100);

/// Delay before a failed or partial sync is retried with the last snapshot.
const RETRY: Duration = Duration::from_secs(5);

pub fn run(a: AgentArgs, pin_dir: &Path) -> anyhow::Result<()> {
    if a.print_config {
        println!("{}", serde_json::to_string_pretty(&a.config_json(pin_dir))?);
        return Ok(());
    }
    if a.cleanup {
        return cleanup(pin_dir);
    }
    // Two malloc arenas instead of glibc's 8 per core: the agent's big
    // allocations (a relist of 20,000 objects, a full model rebuild) happen
    // on whichever runtime or blocking thread runs them, and per-thread
    // arenas keep the freed memory of each such burst.
    // SAFETY: mallopt before any thread is started.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(Agent::run(a, pin_dir.to_owned()))
}

/// `--cleanup`: every hook of xlb's off, its pins (maps, programs, links)
/// and names file removed; nothing else (see `xlb detach --all`).
fn cleanup(pin_dir: &Path) -> anyhow::Result<()> {
    crate::cli::attach::remove_everything(pin_dir)
}

struct Agent {
    args: AgentArgs,
    pin_dir: PathBuf,
    node_name: String,
    dp: DataPlane,
    syncer: Syncer<Maps>,
    metrics: Arc<Metrics>,
    node: Option<NodeNet>,
    attached: bool,
    pods: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    names: BTreeMap<u32, String>,
    /// Frontends shadowing a node listener, as last reported.
    shadows: Vec<net::Shadow>,
    /// The incremental model, fed each snapshot's changes
    /// ([`Model::apply_snapshot`]); rebuilt when its config changes.
    model: Option<Model>,
    /// Service proxy health: the node health endpoint and health checks.
    proxy_health: Arc<healthz::ProxyHealth>,
    /// healthCheckNodePort listeners, and what the last snapshot wants.
    health_checks: health::ServiceHealth,
    health_wanted: Vec<health::HealthCheck>,
    /// What the last sync could not program.
    unprogrammed: Vec<unprogrammed::Unprogrammed>,
    /// Terminates node processes' UDP sockets of removed backends.
    sock_term: sock_term::Terminator,
}

impl Agent {
    async fn run(args: AgentArgs, pin_dir: PathBuf) -> anyhow::Result<()> {
        let metrics = Metrics::new();
        let listener = crate::metrics::bind(args.metrics_addr)
            .await
            .with_context(|| format!("listening on {} for metrics", args.metrics_addr))?;
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
        let proxy_health = healthz::ProxyHealth::new(healthz::DEFAULT_TIMEOUT);
        if let Some(addr) = args.healthz_addr.0 {
            tokio::spawn(healthz::serve(addr, proxy_health.clone(), metrics.clone()));
        }
        // kube-proxy without --nodeport-addresses: every address.
        let health_checks = health::ServiceHealth::new(
            vec![std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            proxy_health.clone(),
            metrics.clone(),
        );

        let dp = DataPlane::load(&capacity::load_options(&args, &pin_dir)).map_err(|e| {
            let eperm = e.to_string().contains("Operation not permitted");
            anyhow::Error::new(e).context(format!(
                "loading the data plane with maps pinned under {}{}",
                pin_dir.display(),
                if eperm {
                    " (not permitted: the agent needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, \
                     or root; kernels older than 5.8 need CAP_SYS_ADMIN)"
                } else {
                    ""
                }
            ))
        })?;
        if let Some(m) = &dp.mounted {
            tracing::warn!("{}", m.note());
        }
        attach::pin_programs(&pin_dir, &dp).context("pinning the programs")?;
        metrics.set_maps(Maps::from_pin_dir(&pin_dir)?);
        metrics.spawn_sampler(crate::metrics::SAMPLE_EVERY);
        let syncer = Syncer::adopt(
            Maps::from_pin_dir(&pin_dir)?,
            SyncOptions {
                names_file: Some(crate::names::path(&pin_dir)),
                ct_udp: args.ct_timeouts.udp,
                ct_tcp_established: args.ct_timeouts.tcp_established,
                ..Default::default()
            },
        )
        .context("adopting the pinned maps")?;
        let occ = syncer.occupancy();
        tracing::info!(
            pin_dir = %pin_dir.display(),
            frontends = occ.frontends,
            backends = occ.backends,
            "data plane loaded; adopted what the maps hold (stale entries go after the first full sync)"
        );

        let opts = SourceOptions {
            debounce: Duration::from_millis(args.debounce_ms),
            service_selector: args.service_selector.clone(),
            ..Default::default()
        };
        metrics.set_source_status(opts.status.clone());
        proxy_health.watch_source(opts.status.clone());
        if let Some(sel) = &opts.service_selector {
            tracing::info!(selector = %sel, "handling only the Services this selector matches");
        }
        let mut rx = match &args.manifests {
            Some(dir) => crate::sources::manifests::watch_dir(dir.clone(), opts)
                .with_context(|| format!("reading manifests from {}", dir.display()))?,
            None => {
                let client = crate::sources::kube::client(args.kubeconfig.as_deref()).await?;
                crate::sources::kube::watch(client, opts)
            }
        };

        let left_unprogrammed =
            unprogrammed::read(&unprogrammed::path(&pin_dir)).unwrap_or_default();
        let sock_term = if args.no_socket_lb {
            sock_term::Terminator::off()
        } else {
            sock_term::Terminator::load(&dp, &metrics)
        };
        let mut agent = Agent {
            node_name: args.node_name(),
            args,
            pin_dir,
            dp,
            syncer,
            metrics,
            node: None,
            attached: false,
            pods: None,
            names: BTreeMap::new(),
            shadows: Vec::new(),
            model: None,
            proxy_health,
            health_checks,
            health_wanted: Vec::new(),
            // What an earlier agent left: replaced by the first sync's.
            unprogrammed: left_unprogrammed,
            sock_term,
        };
        // A pinned map smaller than its flag: grown to it now.
        agent.grow_maps(&sizing::Need::default(), &[]);
        tracing::info!(node = %agent.node_name, "agent started");

        // A source may hold a complete snapshot already (a manifest directory
        // is read before it returns): handle it as a change.
        rx.mark_changed();
        let (addrs_tx, mut addrs_rx) = tokio::sync::watch::channel(0u64);
        let addrs_stop = Arc::new(AtomicBool::new(false));
        let addrs_thread = net::watch_addrs(addrs_tx, addrs_stop.clone())?;
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        // A sync that failed (maps unusable) or left ports unapplied (a full
        // map) is retried with the last snapshot, not only on the next change.
        let mut last: Option<Arc<Snapshot>> = None;
        let mut retry: Option<tokio::time::Instant> = None;
        let mut health_retry = tokio::time::interval(health::RETRY);
        health_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let retry_at = retry;
            // The next stable-table window to end (docs/ctl.md, "Stateless
            // flows"): one deadline, whatever the number of Services.
            let window_at = agent.syncer.next_window_end().map(|end| {
                let now = xlb_bpf::maps::monotonic_ns();
                tokio::time::Instant::now() + Duration::from_nanos(end.saturating_sub(now))
            });
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = async { tokio::time::sleep_until(window_at.unwrap()).await }, if window_at.is_some() => {
                    tokio::task::block_in_place(|| agent.syncer.tick());
                }
                _ = health_retry.tick(), if agent.health_checks.has_failed() => {
                    agent.health_checks.sync(&agent.health_wanted).await;
                }
                _ = async { tokio::time::sleep_until(retry_at.unwrap()).await }, if retry_at.is_some() => {
                    retry = None;
                    if let Some(snap) = last.clone() {
                        tracing::info!("retrying the last sync");
                        match tokio::task::block_in_place(|| agent.on_snapshot(&snap)) {
                            Ok(true) => retry = Some(tokio::time::Instant::now() + RETRY),
                            Ok(false) => {}
                            Err(e) => break Err(e),
                        }
                    }
                }
                _ = addrs_rx.changed() => {
                    // A node address came or went: node facts again.
                    if let Some(snap) = last.clone() {
                        match tokio::task::block_in_place(|| agent.on_snapshot(&snap)) {
                            Ok(true) => retry = Some(tokio::time::Instant::now() + RETRY),
                            Ok(false) => {}
                            Err(e) => break Err(e),
                        }
                    }
                }
                r = rx.changed() => {
                    if r.is_err() {
                        break Err(anyhow::anyhow!("the source stopped"));
                    }
                    let snap = rx.borrow_and_update().clone();
                    if let Some(snap) = snap {
                        agent.proxy_health.queued_update();
                        let started = Instant::now();
                        let synced = tokio::task::block_in_place(|| agent.on_snapshot(&snap));
                        if started.elapsed() > BIG_SYNC {
                            // A big sync (a relist, a rebuild) freed the
                            // previous generation of its structures: give
                            // the pages back.
                            // SAFETY: malloc_trim has no preconditions.
                            unsafe { libc::malloc_trim(0) };
                        }
                        agent.sync_health_checks(&snap).await;
                        match synced {
                            Ok(true) => retry = Some(tokio::time::Instant::now() + RETRY),
                            Ok(false) => retry = None,
                            // Fatal: the data plane cannot be set up (attach, config).
                            Err(e) => break Err(e),
                        }
                        last = Some(snap);
                    }
                }
            }
        };
        agent.health_checks.close_all().await;
        agent.stop();
        addrs_stop.store(true, Ordering::Relaxed);
        let _ = addrs_thread.join();
        result
    }

    /// Stops the agent's threads; the data plane stays.
    fn stop(&mut self) {
        if let Some((stop, h)) = self.pods.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        tracing::info!(
            pin_dir = %self.pin_dir.display(),
            "agent stopped; the data plane keeps forwarding (maps and links stay pinned; \
             `xlb agent --cleanup` removes them)"
        );
    }
}
