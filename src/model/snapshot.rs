//! A whole snapshot at once: [`Model::apply_snapshot`] brings the model to
//! exactly the objects a source publishes, touching only the Services whose
//! objects differ (the object comparison is `diff`'s). Apart from the
//! per-object updates (`upsert_*`, `remove_*` in the module root): the agent
//! takes this path for every snapshot a source publishes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::diff::{diff_kind, same_object};
use super::*;

/// What [`Model::apply_snapshot`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDelta {
    /// Objects added or changed (each fed to the model).
    pub upserted: usize,
    /// Objects gone.
    pub removed: usize,
    /// Whether what the maps get changed (services, tunnels, local and
    /// remote addresses; not the skip reasons).
    pub changed: bool,
}

impl Model {
    /// Brings the model to exactly the objects of `snap` (what a source
    /// publishes: the complete current view), touching only what differs
    /// from the objects it holds: objects are matched by kind and
    /// `namespace/name`; one counts as changed when its resourceVersion
    /// differs, or, when it has none (manifest files), when its content
    /// differs. Only the Services a changed object belongs to are
    /// recomputed (every Service when a Node's addresses, pod CIDRs or VTEP
    /// MAC changed), so unchanged Services keep their `Arc` and
    /// [`crate::sync::Syncer::apply`] skips them. The result equals
    /// [`build`]`(snap)`. Duplicate names: the last object wins, as in
    /// [`build`].
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> SnapshotDelta {
        let mut delta = SnapshotDelta::default();
        // Nameless objects are re-reported from this snapshot alone.
        for owner in ["Service ?", "EndpointSlice ?", "Node ?"] {
            self.skipped.remove(owner);
        }

        // Nodes.
        let mut nodes: HashMap<&str, &Arc<Node>> = HashMap::with_capacity(snap.nodes.len());
        for n in &snap.nodes {
            match n.metadata.name.as_deref().filter(|n| !n.is_empty()) {
                Some(name) => {
                    nodes.insert(name, n);
                }
                None => self.skip_one("Node ?", "Node", "metadata.name missing"),
            }
        }
        let mut nodes_changed = false;
        let gone: Vec<String> = self
            .node_objs
            .keys()
            .filter(|k| !nodes.contains_key(k.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.skipped.remove(&format!("Node {name}"));
            self.node_objs.remove(&name);
            nodes_changed |= self.nodes.remove(&name).is_some();
            delta.removed += 1;
        }
        for (name, n) in nodes {
            if self
                .node_objs
                .get(name)
                .is_some_and(|old| same_object(old, n))
            {
                continue;
            }
            delta.upserted += 1;
            let mut reasons = Vec::new();
            let info = endpoints::node_info(n, &self.cfg, &mut reasons);
            self.set_reasons(&format!("Node {name}"), reasons);
            self.node_objs.insert(name.to_string(), n.clone());
            if self.nodes.get(name) != Some(&info) {
                self.nodes.insert(name.to_string(), info);
                nodes_changed = true;
            }
        }

        // EndpointSlices: every Service a changed slice left or joined is dirty.
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let sd = diff_kind(&self.slices, &snap.slices);
        for _ in 0..sd.nameless {
            self.skip_one("EndpointSlice ?", "EndpointSlice", "metadata.name missing");
        }
        for k in sd.gone {
            self.slices.remove(&k);
            self.skipped.remove(&format!("EndpointSlice {k}"));
            if let Some(o) = self.slice_owner.remove(&k) {
                if let Some(set) = self.slices_by_svc.get_mut(&o) {
                    set.remove(&k);
                    if set.is_empty() {
                        self.slices_by_svc.remove(&o);
                    }
                }
                dirty.insert(o);
            }
            delta.removed += 1;
        }
        for (k, sl) in sd.changed {
            delta.upserted += 1;
            if let Some(o) = self.slice_owner.get(&k) {
                dirty.insert(o.clone());
            }
            if let Some(o) = self.index_slice(sl.clone()) {
                dirty.insert(o);
            }
        }

        // Services.
        let vd = diff_kind(&self.services, &snap.services);
        for _ in 0..vd.nameless {
            self.skip_one("Service ?", "Service", "metadata.name missing");
        }
        for k in vd.gone {
            self.services.remove(&k);
            dirty.insert(k);
            delta.removed += 1;
        }
        for (k, sv) in vd.changed {
            delta.upserted += 1;
            self.services.insert(k.clone(), sv.clone());
            dirty.insert(k);
        }

        // Recompute what the changes touch.
        if nodes_changed {
            // Every Service there is; dirty ones gone are dropped below.
            delta.changed |= self.node_changed();
        }
        for k in &dirty {
            if !nodes_changed || !self.services.contains_key(k) {
                delta.changed |= self.recompute(k);
            }
        }
        self.rebuild_skipped();
        delta
    }
}
