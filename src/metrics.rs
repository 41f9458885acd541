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
//!     `backend_stats` map (see [`backend_ports`]). Which ids serve which
//!     port takes reading every Maglev table: that is sampled with the map
//!     occupancy (a backend added since shows from the next sample); a
//!     scrape reads the counters of all ids in a few batch syscalls and
//!     shows the sampled backends whose slot still holds the same
//!     generation (an id retired or given to another endpoint since is left
//!     out until the next sample, never shown under the old name);
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
//!
//! Here: the figures and readiness. The text is rendered in `render`, map
//! occupancy sampled in `maps`, and the listener is `server`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use xlb_bpf::Maps;

mod maps;
mod render;
mod server;
pub use maps::{count_entries, map_usage, map_usage_with, MapSample, LRU_MAPS, LRU_SAMPLE_RATIO};
pub use render::backend_ports;
pub use server::{bind, serve};

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
    /// Which backend ids serve which Service port, as last sampled
    /// ([`render::BackendRows`]); `None` after the maps or the Service ports
    /// changed.
    backend_rows: Mutex<Option<Arc<render::BackendRows>>>,
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
        *self.backend_rows.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn maps(&self) -> Option<Arc<Maps>> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the last sync could not program: `/readyz` fails while there is
    /// any, and `xlb_unprogrammed{reason}` counts them.
    pub fn set_unprogrammed(&self, list: Vec<crate::unprogrammed::Unprogrammed>) {
        *self.unprogrammed.lock().unwrap_or_else(|e| e.into_inner()) = list;
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
        *self.backend_rows.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
