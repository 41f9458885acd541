//! # Metrics and health endpoints
//!
//! A small HTTP/1.1 server (GET and HEAD only, one request per connection)
//! that serves:
//!
//! - `/metrics`: Prometheus text format 0.0.4, read from the maps at scrape
//!   time (nothing on the packet path):
//!   - `xlb_service_packets_total` / `xlb_service_bytes_total`
//!     `{namespace, service, port, protocol}`: per Service port (all its
//!     frontends), from the `stats` map (summed over CPUs);
//!   - `xlb_backend_packets_total` / `xlb_backend_bytes_total`
//!     `{namespace, service, port, protocol, backend}`: frames forwarded to
//!     each backend (`backend` = `address:port`) of a Service port, from the
//!     `backend_stats` map (see [`backend_ports`]);
//!   - `xlb_reason_packets_total{action, reason}`: every reason counter
//!     (`action` is the name's first word: `pass`, `drop`, `tx` or `sock` for a
//!     frame's outcome, `event` for something counted on the way such as
//!     `event_ct_full`; `reason` the `xlb_bpf::Reason` name such as
//!     `drop_no_backend`; docs/dp.md lists them), and
//!     `xlb_reason_bytes_total` likewise;
//!   - `xlb_sync_duration_seconds` (histogram), `xlb_syncs_total{result}`,
//!     `xlb_last_sync_timestamp_seconds`;
//!   - `xlb_map_entries{map}` and `xlb_map_max_entries{map}`: occupancy of
//!     each map (for the `maglev` slot array: slots owned by Services; for
//!     `backends`: active slots; `config`/`stats` are fixed arrays), as
//!     *sampled* by a background task ([`Metrics::spawn_sampler`], every 10 s
//!     in the agent; `xlb_map_sample_timestamp_seconds` says when): a scrape
//!     never walks a map, so its cost does not grow with connection tracking;
//!   - `xlb_source_objects{kind}`: objects in the last snapshot;
//!   - `xlb_frontend_conflicts`: frontends a Service claims that another owns;
//!   - `xlb_unprogrammed{reason}`: desired entries the last sync could not
//!     program (a full map, ...: [`crate::unprogrammed`]);
//!   - `xlb_ready`: 1 once the first complete sync is in the maps.
//! - `/healthz`: 200 while the process serves requests (liveness).
//! - `/readyz`: 200 once the first complete sync from the source has been
//!   applied, 503 before, while the source is behind, and while something
//!   desired is not programmed, with the reason (readiness).
//!
//! Metrics are cheap to update (a mutex around a few integers per sync). At
//! scrape time only the per-Service and per-reason counters are read (one
//! lookup each), on a blocking thread, and at most [`MAX_SCRAPES`] scrapes
//! render at once (others wait their turn, within the request timeout).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use libbpf_rs::MapCore as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xlb_bpf::Maps;

mod maps;
pub use maps::{count_entries, map_usage, map_usage_with, MapSample, LRU_MAPS, LRU_SAMPLE_RATIO};

/// How often the agent samples map occupancy.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Scrapes rendered at the same time; more wait.
pub const MAX_SCRAPES: usize = 2;

/// The scrape limiter ([`MAX_SCRAPES`] permits).
struct Scrapes(tokio::sync::Semaphore);

impl Default for Scrapes {
    fn default() -> Self {
        Self(tokio::sync::Semaphore::new(MAX_SCRAPES))
    }
}

/// Upper bounds (seconds) of the sync latency histogram buckets.
pub const SYNC_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Labels of one Service port (one `svc_id`; its counters cover every
/// frontend of the port: ClusterIP, NodePort, LoadBalancer, ExternalIPs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLabel {
    pub svc_id: u32,
    pub namespace: String,
    pub service: String,
    /// The Service port number.
    pub port: String,
    /// `TCP` / `UDP`.
    pub protocol: String,
}

impl ServiceLabel {
    /// From sync's Service port name `"namespace/name:port/PROTO"`.
    pub fn parse(svc_id: u32, port_name: &str) -> Self {
        let (svc, port_proto) = port_name.rsplit_once(':').unwrap_or((port_name, ""));
        let (namespace, service) = svc.split_once('/').unwrap_or(("", svc));
        let (port, protocol) = port_proto.split_once('/').unwrap_or((port_proto, ""));
        Self {
            svc_id,
            namespace: namespace.into(),
            service: service.into(),
            port: port.into(),
            protocol: protocol.into(),
        }
    }
}

#[derive(Default)]
struct SyncStats {
    buckets: [u64; SYNC_BUCKETS.len()],
    count: u64,
    sum: f64,
    errors: u64,
    last_ok_unix: f64,
}

/// Everything the agent reports. Share it as `Arc<Metrics>`.
#[derive(Default)]
pub struct Metrics {
    ready: AtomicBool,
    sync: Mutex<SyncStats>,
    objects: Mutex<[usize; 3]>,
    /// Frontends a Service claims and another one owns (model).
    frontend_conflicts: std::sync::atomic::AtomicUsize,
    services: Mutex<Vec<ServiceLabel>>,
    /// Replaced when the maps grow.
    maps: Mutex<Option<Arc<Maps>>>,
    /// Desired entries the last sync could not program.
    unprogrammed: Mutex<Vec<crate::unprogrammed::Unprogrammed>>,
    shadows: std::sync::atomic::AtomicUsize,
    /// Node processes' UDP sockets destroyed because their backend left
    /// (`sock_term.bpf.c`), and whether this kernel can (`None`: not tried).
    sockets_terminated: std::sync::atomic::AtomicU64,
    sock_term: Mutex<Option<bool>>,
    /// `server` label -> failed attempts to bind its listener.
    listen_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Health check node ports (serving, failed).
    health_ports: Mutex<(usize, usize)>,
    /// The source's progress: `/readyz` fails while it is behind.
    source: OnceLock<crate::sources::SourceStatus>,
    /// Map occupancy, sampled off the scrape path.
    map_sample: Mutex<Option<MapSample>>,
    scrapes: Scrapes,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The maps to read counters and occupancy from (again when they grow).
    pub fn set_maps(&self, maps: Maps) {
        *self.maps.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(maps));
    }

    fn maps(&self) -> Option<Arc<Maps>> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the last sync could not program: `/readyz` fails while there is
    /// any, and `xlb_unprogrammed{reason}` counts them.
    pub fn set_unprogrammed(&self, list: Vec<crate::unprogrammed::Unprogrammed>) {
        *self.unprogrammed.lock().unwrap_or_else(|e| e.into_inner()) = list;
    }

    /// Counts every map's entries now (walks hash maps: call it off the
    /// request path); scrapes report the result until the next sample.
    pub fn sample_maps(&self) -> xlb_bpf::Result<()> {
        self.sample(true)
    }

    /// Like [`Self::sample_maps`]; without `lru` the [`LRU_MAPS`] keep their
    /// previous figures (counted anyway when there are none yet).
    pub fn sample(&self, lru: bool) -> xlb_bpf::Result<()> {
        let Some(maps) = self.maps() else {
            return Ok(());
        };
        let maps = &*maps;
        let prev: BTreeMap<&str, u64> = self
            .map_sample()
            .map(|s| s.maps.iter().map(|(n, u, _)| (*n, *u)).collect())
            .unwrap_or_default();
        let keep = |n: &str| {
            if lru || !LRU_MAPS.contains(&n) {
                None
            } else {
                prev.get(n).copied()
            }
        };
        let usage = map_usage_with(maps, &keep)?;
        let max: BTreeMap<&str, u32> = maps
            .all()
            .into_iter()
            .map(|(n, h)| (n, h.max_entries()))
            .collect();
        let sample = MapSample {
            at_unix: unix_now(),
            maps: usage
                .into_iter()
                .map(|(n, used)| (n, used, max.get(n).copied().unwrap_or(0)))
                .collect(),
        };
        *self.map_sample.lock().unwrap_or_else(|e| e.into_inner()) = Some(sample);
        Ok(())
    }

    /// The last map sample, if any.
    pub fn map_sample(&self) -> Option<MapSample> {
        self.map_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Samples the maps now and then every `every` (the [`LRU_MAPS`] every
    /// [`LRU_SAMPLE_RATIO`] times), on a blocking thread.
    pub fn spawn_sampler(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let m = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u32.. {
                tick.tick().await;
                let m2 = m.clone();
                let lru = n % LRU_SAMPLE_RATIO == 0;
                match tokio::task::spawn_blocking(move || m2.sample(lru)).await {
                    Ok(Err(e)) => tracing::warn!("sampling map occupancy: {e}"),
                    Err(e) => tracing::warn!("sampling map occupancy: {e}"),
                    Ok(Ok(())) => {}
                }
            }
        })
    }

    /// Marks the first complete sync as done: `/readyz` answers 200.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The source whose progress readiness follows (set once).
    pub fn set_source_status(&self, s: crate::sources::SourceStatus) {
        let _ = self.source.set(s);
    }

    /// Why the agent is not ready, or `None` when it is: before the first
    /// complete sync, while the source is behind (the data plane keeps the
    /// last good state meanwhile), and while something desired is not
    /// programmed ([`Self::set_unprogrammed`]).
    pub fn not_ready(&self) -> Option<String> {
        if !self.is_ready() {
            return Some("waiting for the first complete sync".into());
        }
        if let Some(behind) = self.source.get().and_then(|s| s.behind()) {
            return Some(format!("the source is behind: {behind}"));
        }
        let list = self.unprogrammed.lock().unwrap_or_else(|e| e.into_inner());
        crate::unprogrammed::summary(&list)
    }

    /// Records one sync (source snapshot to maps) and whether it succeeded.
    pub fn observe_sync(&self, took: Duration, ok: bool) {
        let mut s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        if !ok {
            s.errors += 1;
            return;
        }
        let secs = took.as_secs_f64();
        for (i, b) in SYNC_BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
        s.last_ok_unix = unix_now();
    }

    /// Object counts of the last snapshot (services, slices, nodes).
    pub fn set_objects(&self, services: usize, slices: usize, nodes: usize) {
        *self.objects.lock().unwrap_or_else(|e| e.into_inner()) = [services, slices, nodes];
    }

    /// How many frontends a Service claims that another one owns
    /// ([`crate::model::Desired::conflicts`]).
    pub fn set_frontend_conflicts(&self, n: usize) {
        self.frontend_conflicts.store(n, Ordering::Relaxed);
    }

    /// Frontends on a node address that take a node listener's traffic.
    pub fn set_shadows(&self, n: usize) {
        self.shadows.store(n, Ordering::Relaxed);
    }

    /// Sockets destroyed by one run of the socket iterator.
    pub fn count_sockets_terminated(&self, n: u64) {
        self.sockets_terminated.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether socket termination runs (the iterator loaded).
    pub fn set_socket_termination(&self, on: bool) {
        *self.sock_term.lock().unwrap_or_else(|e| e.into_inner()) = Some(on);
    }

    /// One failed attempt to bind a listener of `server` (`healthz`,
    /// `health_check_node_port`).
    pub fn count_listen_error(&self, server: &'static str) {
        *self
            .listen_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(server)
            .or_default() += 1;
    }

    /// Failed listener binds so far, for `server`.
    pub fn listen_errors(&self, server: &str) -> u64 {
        let m = self.listen_errors.lock().unwrap_or_else(|e| e.into_inner());
        m.get(server).copied().unwrap_or(0)
    }

    /// Health check node ports being served and failing to open.
    pub fn set_health_check_ports(&self, serving: usize, failed: usize) {
        *self.health_ports.lock().unwrap_or_else(|e| e.into_inner()) = (serving, failed);
    }

    /// The Service ports currently in the maps, for per-Service counters.
    pub fn set_services(&self, mut labels: Vec<ServiceLabel>) {
        labels.sort_by_key(|l| l.svc_id);
        *self.services.lock().unwrap_or_else(|e| e.into_inner()) = labels;
    }

    /// The Prometheus text exposition. Reads the maps (blocking syscalls).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        self.render_agent(&mut o);
        if let Some(maps) = self.maps() {
            if let Err(e) = self.render_maps(&maps, &mut o) {
                tracing::warn!("reading maps for /metrics: {e}");
                let _ = writeln!(o, "# error reading maps: {e}");
            }
        }
        o
    }

    fn render_agent(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "# HELP xlb_ready 1 once the first complete sync from the source is in the maps."
        );
        let _ = writeln!(o, "# TYPE xlb_ready gauge");
        let _ = writeln!(o, "xlb_ready {}", u8::from(self.is_ready()));
        let behind = self.source.get().is_some_and(|s| s.behind().is_some());
        let _ = writeln!(o, "# HELP xlb_source_behind 1 while the source made no progress (list, event, bookmark) within its bound.");
        let _ = writeln!(o, "# TYPE xlb_source_behind gauge");
        let _ = writeln!(o, "xlb_source_behind {}", u8::from(behind));

        let s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "# HELP xlb_sync_duration_seconds Time from a source snapshot to the maps holding it (model + diff + map writes).");
        let _ = writeln!(o, "# TYPE xlb_sync_duration_seconds histogram");
        for (b, n) in SYNC_BUCKETS.iter().zip(s.buckets) {
            let _ = writeln!(o, "xlb_sync_duration_seconds_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "xlb_sync_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(o, "xlb_sync_duration_seconds_sum {}", s.sum);
        let _ = writeln!(o, "xlb_sync_duration_seconds_count {}", s.count);
        let _ = writeln!(o, "# HELP xlb_syncs_total Syncs by result.");
        let _ = writeln!(o, "# TYPE xlb_syncs_total counter");
        let _ = writeln!(o, "xlb_syncs_total{{result=\"ok\"}} {}", s.count);
        let _ = writeln!(o, "xlb_syncs_total{{result=\"error\"}} {}", s.errors);
        let _ = writeln!(
            o,
            "# HELP xlb_last_sync_timestamp_seconds Unix time of the last successful sync."
        );
        let _ = writeln!(o, "# TYPE xlb_last_sync_timestamp_seconds gauge");
        let _ = writeln!(o, "xlb_last_sync_timestamp_seconds {}", s.last_ok_unix);
        drop(s);

        let [sv, sl, nd] = *self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            o,
            "# HELP xlb_source_objects Objects in the last snapshot from the source."
        );
        let _ = writeln!(o, "# TYPE xlb_source_objects gauge");
        let _ = writeln!(o, "xlb_source_objects{{kind=\"Service\"}} {sv}");
        let _ = writeln!(o, "xlb_source_objects{{kind=\"EndpointSlice\"}} {sl}");
        let _ = writeln!(o, "xlb_source_objects{{kind=\"Node\"}} {nd}");
        let _ = writeln!(
            o,
            "# HELP xlb_frontend_conflicts Frontends a Service claims that another Service owns (the older one; see the agent log and skipped objects)."
        );
        let _ = writeln!(o, "# TYPE xlb_frontend_conflicts gauge");
        let _ = writeln!(
            o,
            "xlb_frontend_conflicts {}",
            self.frontend_conflicts.load(Ordering::Relaxed)
        );
        let _ = writeln!(o, "# HELP xlb_unprogrammed Desired entries (Service ports, frontends) the last sync could not put in the maps, by reason; /readyz fails while any.");
        let _ = writeln!(o, "# TYPE xlb_unprogrammed gauge");
        let counts = crate::unprogrammed::by_reason(
            &self.unprogrammed.lock().unwrap_or_else(|e| e.into_inner()),
        );
        for (r, n) in counts {
            let _ = writeln!(o, "xlb_unprogrammed{{reason=\"{r}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP xlb_frontend_shadows_listener (frontend, node listener) pairs where a Service frontend on a node address takes the traffic of a process listening on the node (the Service wins).");
        let _ = writeln!(o, "# TYPE xlb_frontend_shadows_listener gauge");
        let _ = writeln!(
            o,
            "xlb_frontend_shadows_listener {}",
            self.shadows.load(Ordering::Relaxed)
        );

        let _ = writeln!(o, "# HELP xlb_sockets_terminated_total Connected UDP sockets of node processes destroyed (ECONNABORTED) because their backend left the Service they were balanced to.");
        let _ = writeln!(o, "# TYPE xlb_sockets_terminated_total counter");
        let _ = writeln!(
            o,
            "xlb_sockets_terminated_total {}",
            self.sockets_terminated.load(Ordering::Relaxed)
        );
        if let Some(on) = *self.sock_term.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = writeln!(o, "# HELP xlb_socket_termination Whether the agent terminates node processes' UDP sockets of removed backends (0: the kernel has no bpf_sock_destroy, see the log).");
            let _ = writeln!(o, "# TYPE xlb_socket_termination gauge");
            let _ = writeln!(o, "xlb_socket_termination {}", u8::from(on));
        }

        let (serving, failed) = *self.health_ports.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "# HELP xlb_health_check_node_ports healthCheckNodePorts of eTP-Local LoadBalancer Services, by state.");
        let _ = writeln!(o, "# TYPE xlb_health_check_node_ports gauge");
        let _ = writeln!(
            o,
            "xlb_health_check_node_ports{{state=\"serving\"}} {serving}"
        );
        let _ = writeln!(
            o,
            "xlb_health_check_node_ports{{state=\"failed\"}} {failed}"
        );
        let errs = self
            .listen_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = writeln!(o, "# HELP xlb_listen_errors_total Failed attempts to open a listener (address in use...), by server.");
        let _ = writeln!(o, "# TYPE xlb_listen_errors_total counter");
        for server in ["healthz", "health_check_node_port"] {
            let n = errs.get(server).copied().unwrap_or(0);
            let _ = writeln!(o, "xlb_listen_errors_total{{server=\"{server}\"}} {n}");
        }
    }

    fn render_maps(&self, maps: &Maps, o: &mut String) -> xlb_bpf::Result<()> {
        let labels = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut pk = String::new();
        let mut by = String::new();
        for l in &labels {
            let c = maps.svc_counter(l.svc_id)?;
            let lab = format!(
                "namespace=\"{}\",service=\"{}\",port=\"{}\",protocol=\"{}\"",
                esc(&l.namespace),
                esc(&l.service),
                esc(&l.port),
                esc(&l.protocol)
            );
            let _ = writeln!(pk, "xlb_service_packets_total{{{lab}}} {}", c.packets);
            let _ = writeln!(by, "xlb_service_bytes_total{{{lab}}} {}", c.bytes);
        }
        let _ = writeln!(
            o,
            "# HELP xlb_service_packets_total Packets balanced per Service port."
        );
        let _ = writeln!(o, "# TYPE xlb_service_packets_total counter");
        o.push_str(&pk);
        let _ = writeln!(
            o,
            "# HELP xlb_service_bytes_total Bytes balanced per Service port."
        );
        let _ = writeln!(o, "# TYPE xlb_service_bytes_total counter");
        o.push_str(&by);

        render_backends(maps, &labels, o)?;

        let reasons = maps.reasons()?;
        let _ = writeln!(
            o,
            "# HELP xlb_reason_packets_total Packets by data-plane verdict reason."
        );
        let _ = writeln!(o, "# TYPE xlb_reason_packets_total counter");
        for (r, c) in &reasons {
            let name = r.name();
            let action = name.split('_').next().unwrap_or("other");
            let _ = writeln!(
                o,
                "xlb_reason_packets_total{{action=\"{action}\",reason=\"{name}\"}} {}",
                c.packets
            );
        }
        let _ = writeln!(
            o,
            "# HELP xlb_reason_bytes_total Bytes by data-plane verdict reason."
        );
        let _ = writeln!(o, "# TYPE xlb_reason_bytes_total counter");
        for (r, c) in &reasons {
            let name = r.name();
            let action = name.split('_').next().unwrap_or("other");
            let _ = writeln!(
                o,
                "xlb_reason_bytes_total{{action=\"{action}\",reason=\"{name}\"}} {}",
                c.bytes
            );
        }

        if let Some(sample) = self.map_sample() {
            let _ = writeln!(
                o,
                "# HELP xlb_map_entries Entries in use per map (sampled, see xlb_map_sample_timestamp_seconds)."
            );
            let _ = writeln!(o, "# TYPE xlb_map_entries gauge");
            for (name, used, _) in &sample.maps {
                let _ = writeln!(o, "xlb_map_entries{{map=\"{name}\"}} {used}");
            }
            let _ = writeln!(o, "# HELP xlb_map_max_entries Capacity per map.");
            let _ = writeln!(o, "# TYPE xlb_map_max_entries gauge");
            for (name, _, max) in &sample.maps {
                let _ = writeln!(o, "xlb_map_max_entries{{map=\"{name}\"}} {max}");
            }
            let _ = writeln!(
                o,
                "# HELP xlb_map_sample_timestamp_seconds Unix time of the map occupancy sample."
            );
            let _ = writeln!(o, "# TYPE xlb_map_sample_timestamp_seconds gauge");
            let _ = writeln!(o, "xlb_map_sample_timestamp_seconds {}", sample.at_unix);
        }
        Ok(())
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Which backends serve which Service port: (Service port, backend id,
/// backend address) for every backend in a Maglev table of one of the
/// port's frontends. The one place that maps backend ids to Service ports
/// for the per-backend metrics. A backend id is the backend's in every
/// Service port that names it, so while ids are shared between ports (one
/// endpoint address:port in two Services) its counts show under each.
pub fn backend_ports(
    maps: &Maps,
    labels: &[ServiceLabel],
) -> xlb_bpf::Result<Vec<(ServiceLabel, u32, std::net::SocketAddrV4)>> {
    use std::collections::{BTreeMap, BTreeSet};
    let by_id: BTreeMap<u32, &ServiceLabel> = labels.iter().map(|l| (l.svc_id, l)).collect();
    let backends: BTreeMap<u32, xlb_bpf::types::xlb_backend> =
        maps.backends()?.into_iter().collect();
    let mut seen = BTreeSet::new();
    for (_, v) in maps.services()? {
        if !by_id.contains_key(&v.svc_id) {
            continue;
        }
        for id in maps.read_maglev(v.table_off, v.table_size)? {
            if backends.contains_key(&id) {
                seen.insert((v.svc_id, id));
            }
        }
    }
    Ok(seen
        .into_iter()
        .map(|(svc, id)| ((*by_id[&svc]).clone(), id, backends[&id].sockaddr()))
        .collect())
}

/// `xlb_backend_packets_total` / `xlb_backend_bytes_total`.
fn render_backends(maps: &Maps, labels: &[ServiceLabel], o: &mut String) -> xlb_bpf::Result<()> {
    let mut pk = String::new();
    let mut by = String::new();
    for (l, id, addr) in backend_ports(maps, labels)? {
        let c = maps.backend_counter(id)?;
        let lab = format!(
            "namespace=\"{}\",service=\"{}\",port=\"{}\",protocol=\"{}\",backend=\"{addr}\"",
            esc(&l.namespace),
            esc(&l.service),
            esc(&l.port),
            esc(&l.protocol)
        );
        let _ = writeln!(pk, "xlb_backend_packets_total{{{lab}}} {}", c.packets);
        let _ = writeln!(by, "xlb_backend_bytes_total{{{lab}}} {}", c.bytes);
    }
    let _ = writeln!(
        o,
        "# HELP xlb_backend_packets_total Packets forwarded to each backend of a Service port."
    );
    let _ = writeln!(o, "# TYPE xlb_backend_packets_total counter");
    o.push_str(&pk);
    let _ = writeln!(
        o,
        "# HELP xlb_backend_bytes_total Bytes forwarded to each backend of a Service port."
    );
    let _ = writeln!(o, "# TYPE xlb_backend_bytes_total counter");
    o.push_str(&by);
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Binds the metrics listener (done before anything else so that a port
/// clash fails the agent at start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let m = metrics.clone();
                tokio::spawn(async move {
                    let r = tokio::time::timeout(Duration::from_secs(10), handle(s, m)).await;
                    if let Ok(Err(e)) = r {
                        tracing::debug!("metrics connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut s: TcpStream, m: Arc<Metrics>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > 16 * 1024 {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
                false,
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut s,
            "405 Method Not Allowed",
            "text/plain",
            "GET or HEAD\n",
            false,
        )
        .await;
    }
    match path {
        "/metrics" => {
            // Bounded: waits for a permit within the connection's timeout.
            let Ok(_permit) = m.scrapes.0.acquire().await else {
                return Ok(());
            };
            let m2 = m.clone();
            let body = tokio::task::spawn_blocking(move || m2.render())
                .await
                .unwrap_or_else(|e| format!("# render failed: {e}\n"));
            respond(
                &mut s,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head_only,
            )
            .await
        }
        "/healthz" => respond(&mut s, "200 OK", "text/plain", "ok\n", head_only).await,
        "/readyz" => match m.not_ready() {
            None => respond(&mut s, "200 OK", "text/plain", "ready\n", head_only).await,
            Some(why) => {
                respond(
                    &mut s,
                    "503 Service Unavailable",
                    "text/plain",
                    &format!("{why}\n"),
                    head_only,
                )
                .await
            }
        },
        _ => {
            respond(
                &mut s,
                "404 Not Found",
                "text/plain",
                "try /metrics, /healthz, /readyz\n",
                head_only,
            )
            .await
        }
    }
}

async fn respond(
    s: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    if !head_only {
        s.write_all(body.as_bytes()).await?;
    }
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::new();
        m.observe_sync(Duration::from_micros(300), true);
        m.observe_sync(Duration::from_millis(30), true);
        m.observe_sync(Duration::from_secs(60), true);
        m.observe_sync(Duration::from_millis(1), false);
        let t = m.render();
        assert!(
            t.contains("xlb_sync_duration_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("xlb_sync_duration_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(t.contains("xlb_sync_duration_seconds_bucket{le=\"10\"} 2\n"));
        assert!(t.contains("xlb_sync_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(t.contains("xlb_sync_duration_seconds_count 3\n"));
        assert!(t.contains("xlb_syncs_total{result=\"error\"} 1\n"));
        assert!(t.contains("xlb_ready 0\n"));
        m.set_ready();
        assert!(m.render().contains("xlb_ready 1\n"));
        assert!(m.render().contains("xlb_frontend_conflicts 0\n"));
        m.set_frontend_conflicts(2);
        assert!(m.render().contains("xlb_frontend_conflicts 2\n"));
    }

    #[test]
    fn readiness_follows_the_source() {
        let m = Metrics::new();
        assert!(m.not_ready().unwrap().contains("first complete sync"));
        m.set_ready();
        assert_eq!(m.not_ready(), None);
        let st = crate::sources::SourceStatus::default();
        m.set_source_status(st.clone());
        st.register("services", Duration::ZERO);
        st.error("services", "list failed: 503".into());
        std::thread::sleep(Duration::from_millis(2));
        let why = m.not_ready().unwrap();
        assert!(why.contains("services") && why.contains("503"), "{why}");
        assert!(m.render().contains("xlb_source_behind 1\n"));
        st.register("services", Duration::from_secs(3600));
        assert_eq!(m.not_ready(), None);
        assert!(m.render().contains("xlb_source_behind 0\n"));
    }

    #[test]
    fn readiness_fails_while_something_is_not_programmed() {
        let m = Metrics::new();
        m.set_ready();
        assert!(m
            .render()
            .contains("xlb_unprogrammed{reason=\"maglev_full\"} 0\n"));
        m.set_unprogrammed(crate::unprogrammed::from_failed(&[(
            "a/b:80/TCP".into(),
            "maglev slot array full: no free region of 1009 slots".into(),
        )]));
        let why = m.not_ready().unwrap();
        assert!(
            why.contains("1 desired entries not programmed (1 maglev_full)"),
            "{why}"
        );
        assert!(why.contains("a/b:80/TCP"), "{why}");
        assert!(m
            .render()
            .contains("xlb_unprogrammed{reason=\"maglev_full\"} 1\n"));
        m.set_unprogrammed(Vec::new());
        assert_eq!(m.not_ready(), None);
    }

    #[test]
    fn service_label_from_port_name() {
        let l = ServiceLabel::parse(7, "shop/web:80/TCP");
        assert_eq!(
            (
                l.namespace.as_str(),
                l.service.as_str(),
                l.port.as_str(),
                l.protocol.as_str()
            ),
            ("shop", "web", "80", "TCP")
        );
        assert_eq!(ServiceLabel::parse(1, "odd").service, "odd");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
