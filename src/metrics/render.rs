//! # The `/metrics` text
//!
//! The Prometheus text exposition (format 0.0.4) of [`Metrics`]: the agent's
//! own figures, then the counters read from the maps at scrape time and the
//! last map occupancy sample.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use xlb_bpf::Maps;

use super::{Metrics, ServiceLabel, SYNC_BUCKETS};

impl Metrics {
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

/// Which backends serve which Service port: (Service port, backend id,
/// backend address) for every backend in a Maglev table of one of the
/// port's frontends. The one place that maps backend ids to Service ports
/// for the per-backend metrics (both families: `services6` tables name
/// `backends6` slots). A backend id is the backend's in every
/// Service port that names it, so while ids are shared between ports (one
/// endpoint address:port in two Services) its counts show under each.
pub fn backend_ports(
    maps: &Maps,
    labels: &[ServiceLabel],
) -> xlb_bpf::Result<Vec<(ServiceLabel, u32, std::net::SocketAddr)>> {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::SocketAddr;
    let by_id: BTreeMap<u32, &ServiceLabel> = labels.iter().map(|l| (l.svc_id, l)).collect();
    let mut backends: BTreeMap<u32, SocketAddr> = maps
        .backends()?
        .into_iter()
        .map(|(id, b)| (id, SocketAddr::V4(b.sockaddr())))
        .collect();
    backends.extend(
        maps.backends6()?
            .into_iter()
            .map(|(id, b)| (id, SocketAddr::V6(b.sockaddr()))),
    );
    let regions = maps
        .services()?
        .into_iter()
        .map(|(_, v)| v)
        .chain(maps.services6()?.into_iter().map(|(_, v)| v));
    let mut seen = BTreeSet::new();
    for v in regions {
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
        .map(|(svc, id)| ((*by_id[&svc]).clone(), id, backends[&id]))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
