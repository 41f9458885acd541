//! # One sync: a complete snapshot into the maps
//!
//! Node facts, attach (the first time), config, the incremental model, map
//! growth, the sync itself, and what follows from its outcome: readiness,
//! what could not be programmed, metrics, and the healthCheckNodePorts.

use std::net::IpAddr;
use std::time::Instant;

use crate::metrics::ServiceLabel;
use crate::model::{Model, ModelConfig, Snapshot};
use crate::unprogrammed;

use super::{health, net, sizing, Agent, RETRY};

impl Agent {
    /// One complete snapshot: node facts, attach (first time), config, sync.
    /// `Ok(true)`: something was not applied and is worth retrying.
    pub(super) fn on_snapshot(&mut self, snap: &Snapshot) -> anyhow::Result<bool> {
        let started = Instant::now();
        let node = self.resolve_node(snap)?;
        if !self.attached {
            if let Some(iface) = &node.iface {
                self.attach(iface)?;
            }
            self.attached = true;
        }
        self.write_config(&node)?;
        net::log_nodeport_addrs(
            self.node.as_ref().map(|n| n.nodeport_addrs.as_slice()),
            &node.nodeport_addrs,
        );
        self.node = Some(node.clone());

        let cfg = ModelConfig {
            node_name: self.node_name.clone(),
            node_addrs: node
                .addr
                .map(IpAddr::V4)
                .into_iter()
                .chain(node.addr6.map(IpAddr::V6))
                .chain(node.nodeport_addrs.iter().copied())
                .collect(),
            nodeport_cidrs: self.args.nodeport_addresses.0.clone(),
            nodeport_range: self.args.nodeport_range.lo..=self.args.nodeport_range.hi,
            vtep_mac_annotation: self.args.vtep_annotation.clone(),
            ..Default::default()
        };
        // Only the objects that differ from the last snapshot are fed to the
        // model, which recomputes only their Services; unchanged Services
        // keep their Arc and the syncer skips them by pointer.
        let model = match &mut self.model {
            Some(m) if *m.config() == cfg => {
                let delta = m.apply_snapshot(snap);
                tracing::debug!(?delta, "snapshot applied to the model");
                m
            }
            slot => {
                if slot.is_some() {
                    tracing::info!("node facts changed: rebuilding the model");
                }
                slot.insert(Model::from_snapshot(snap, cfg))
            }
        };
        let desired = model.desired();
        for (obj, why) in &desired.skipped {
            tracing::debug!("model skipped {obj}: {why}");
        }
        self.metrics.set_frontend_conflicts(desired.conflicts.len());
        let shadows = net::shadows(
            desired,
            &desired.local_addrs,
            !self.args.no_socket_lb && net::loopback_nodeports(&self.args.nodeport_addresses.0),
            &net::listeners(),
        );
        for s in &shadows {
            if !self.shadows.contains(s) {
                tracing::warn!(
                    frontend = %s.frontend,
                    listener = %format!("{}/{}", std::net::SocketAddr::new(s.listener.addr, s.listener.port), s.listener.proto),
                    "a Service frontend on a node address takes the traffic of a process listening on the node (the Service wins, as with kube-proxy)"
                );
            }
        }
        self.metrics.set_shadows(shadows.len());
        self.shadows = shadows;
        // Room for the desired state first; once more when a sync still
        // finds a map full (a fragmented slot array), and the sync again.
        let mut need = sizing::need(desired);
        // Stable tables held for their windows take slots too.
        need.maglev += self.syncer.retained_slots();
        self.grow_maps(&need, &[]);
        let model = self.model.as_ref().expect("set above");
        let mut res = self.syncer.apply(model.desired());
        if let Ok(rep) = &res {
            let full = sizing::full_maps(&unprogrammed::from_failed(&rep.failed));
            if !full.is_empty() && self.grow_maps(&need, &full) {
                let model = self.model.as_ref().expect("set above");
                res = self.syncer.apply(model.desired());
            }
        }
        let desired = self.model.as_ref().expect("set above").desired();
        let retry = match res {
            Ok(rep) => {
                let took = started.elapsed();
                self.metrics.observe_sync(took, true);
                self.proxy_health.updated();
                tracing::debug!(?rep, ?took, "synced");
                let udp6 = super::sock_term::pairs6(&desired.services);
                self.sock_term
                    .synced_dual(&desired.services, &udp6, &self.metrics);
                if !self.metrics.is_ready() {
                    self.metrics.set_ready();
                    tracing::info!(
                        services = snap.services.len(),
                        ports = desired.ports().count(),
                        ?took,
                        "first complete sync applied"
                    );
                }
                self.report_unprogrammed(unprogrammed::from_failed(&rep.failed));
                !rep.failed.is_empty()
            }
            Err(e) => {
                self.metrics.observe_sync(started.elapsed(), false);
                tracing::error!("sync failed: {e}; retrying in {RETRY:?} or with the next change");
                true
            }
        };
        self.metrics
            .set_objects(snap.services.len(), snap.slices.len(), snap.nodes.len());
        let names = self.syncer.service_names();
        if *names != self.names {
            self.names = names.clone();
            self.metrics.set_services(
                self.names
                    .iter()
                    .map(|(id, n)| ServiceLabel::parse(*id, n))
                    .collect(),
            );
        }
        Ok(retry)
    }

    /// What the last sync could not program: metric, readiness, the file
    /// `xlb doctor` and `xlb maps` read, and a log line when it changes.
    pub(super) fn report_unprogrammed(&mut self, list: Vec<unprogrammed::Unprogrammed>) {
        if list != self.unprogrammed {
            match unprogrammed::summary(&list) {
                Some(s) => tracing::warn!("not ready: {s}"),
                None => tracing::info!("everything desired is programmed: ready"),
            }
            for u in &list {
                tracing::warn!("not programmed: {}: {}", u.what, u.why);
            }
            let path = unprogrammed::path(&self.pin_dir);
            if let Err(e) = unprogrammed::write(&path, &list) {
                tracing::warn!("writing {}: {e}", path.display());
            }
        }
        self.metrics.set_unprogrammed(list.clone());
        self.unprogrammed = list;
    }

    /// The healthCheckNodePort listeners and this node's eligibility, for
    /// the snapshot just synced.
    pub(super) async fn sync_health_checks(&mut self, snap: &Snapshot) {
        let own = snap
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.node_name.as_str()));
        self.proxy_health.sync_node(own.map(|n| &**n));
        // The model of the last snapshot the agent could build one for (a
        // snapshot that fails before the model, say on node facts, keeps the
        // previous counts).
        if let Some(model) = &self.model {
            self.health_wanted = health::wanted(model.desired());
        }
        self.health_checks.sync(&self.health_wanted).await;
    }
}
