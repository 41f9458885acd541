//! One Service port: its backends, Maglev tables, source ranges and
//! frontends, in the order of the module docs of [`crate::sync`].

use std::collections::BTreeSet;

use super::HashSet;
use std::net::{IpAddr, SocketAddr};

use xlb_bpf::consts::XLB_MAX_SVC;

use super::family::{delete_service, delete_src_range, put_service, put_src_range};
use super::{
    frontend_val, hash_ids, same_val, table_unref, FeState, MapOps, PortState, SyncReport, Syncer,
    Table,
};
use crate::model::{Desired, FrontendKey, ServicePort};

/// Frontends of a port grouped by table: `(backends, size)`.
type Group<'a> = (&'a [SocketAddr], u32);

impl<M: MapOps> Syncer<M> {
    /// Brings one Service port to `new` (`None`: removes it). `d` is the
    /// whole desired state being applied (to tell a frontend handed over
    /// from another port from a conflict).
    pub(super) fn apply_port(
        &mut self,
        name: &str,
        new: Option<&ServicePort>,
        d: &Desired,
        rep: &mut SyncReport,
    ) {
        let Some(mut st) = self.port_state(name, new, rep) else {
            return;
        };
        let mut touched = match new {
            Some(new) => self.update_port(&mut st, name, new, d, rep),
            None => self.clear_port(&mut st, name, rep),
        };

        // 7-8. Free unreferenced regions, then the backends neither a
        // region nor the port's list names.
        // A port left without any frontend (all failed) holds nothing.
        touched |= self.gc_tables(&mut st, rep);
        if new.is_none() && st.frontends.is_empty() {
            // Its services entries gone: no stable table either.
            touched |= st.stable.is_some() && self.stable_clear(&mut st, name, rep);
        } else {
            self.stable_settle(&mut st, name, rep);
        }
        let keep = match new {
            Some(n) if !st.frontends.is_empty() => &n.backends[..],
            _ => &[],
        };
        self.unlist_backends(&mut st, keep, rep);

        if new.is_none()
            && st.frontends.is_empty()
            && st.src_ranges.is_empty()
            && st.tables.is_empty()
            && st.stable.is_none()
        {
            self.free_svc_id(name);
            rep.ports_removed += 1;
        } else {
            if touched {
                rep.ports_changed += 1;
            }
            self.ports.insert(name.to_string(), st);
        }
    }

    /// The port's state: held, adopted under an unknown name, or new (with
    /// a fresh svc_id). `None`: nothing to do, or no svc_id left.
    fn port_state(
        &mut self,
        name: &str,
        new: Option<&ServicePort>,
        rep: &mut SyncReport,
    ) -> Option<PortState> {
        if let Some(st) = self.ports.remove(name) {
            return Some(st);
        }
        let new = new?;
        // An adopted port of unknown name holding one of our frontends
        // becomes this port (keeps its svc_id and regions).
        let adopted = new.frontends.iter().find_map(|f| {
            self.fe_owner
                .get(&f.key)
                .filter(|o| o.starts_with('?'))
                .cloned()
        });
        if let Some((o, st)) = adopted.and_then(|o| self.ports.remove(&o).map(|st| (o, st))) {
            self.svc_ids.remove(&o);
            self.svc_ids.insert(name.to_string(), st.svc_id);
            self.names.insert(st.svc_id, name.to_string());
            self.names_dirty = true;
            for k in st.frontends.keys() {
                self.fe_owner.insert(*k, name.to_string());
            }
            return Some(st);
        }
        match self.alloc_svc_id(name) {
            Some(id) => Some(PortState {
                svc_id: id,
                ..Default::default()
            }),
            None => {
                rep.failed.push((
                    name.to_string(),
                    format!("svc_id space full ({XLB_MAX_SVC})"),
                ));
                None
            }
        }
    }

    /// Steps 1-6 for a port that stays; returns whether anything was written.
    fn update_port(
        &mut self,
        st: &mut PortState,
        name: &str,
        new: &ServicePort,
        d: &Desired,
        rep: &mut SyncReport,
    ) -> bool {
        // 1. Backends (values of existing ones refreshed in place).
        self.list_backends(st, name, &new.backends, rep);

        // 2. Tables into free regions, one per group of frontends.
        let mut touched = false;
        let mut groups: Vec<Group<'_>> = Vec::new();
        for f in &new.frontends {
            if f.table_size > 0 && !groups.contains(&(&f.backends[..], f.table_size)) {
                groups.push((&f.backends[..], f.table_size));
            }
        }
        let mut group_off: Vec<Option<u32>> = Vec::with_capacity(groups.len());
        for (backends, size) in &groups {
            let off = match self.reusable_table(st, backends, *size, rep) {
                Some(off) => Some(off),
                None => match self.new_table(st, backends, *size, rep) {
                    Ok(off) => {
                        touched = true;
                        Some(off)
                    }
                    Err(e) => {
                        rep.failed.push((name.to_string(), e));
                        None
                    }
                },
            };
            group_off.push(off);
        }

        // 2, end. The stable table of stateless flows, before any frontend
        // switches (module docs of `stable`).
        let regions: Vec<Option<Option<(u32, u32)>>> = new
            .frontends
            .iter()
            .map(|f| {
                if f.table_size == 0 {
                    return Some(None);
                }
                let i = groups
                    .iter()
                    .position(|g| *g == (&f.backends[..], f.table_size))?;
                group_off[i].map(|o| Some((o, f.table_size)))
            })
            .collect();
        let want = super::stable::want(new, &regions);
        let switch = self.stable_before_switch(st, name, want, rep);

        // 3. Source ranges to add.
        let want_ranges: BTreeSet<(IpAddr, u8)> = new.src_ranges.iter().copied().collect();
        for r in want_ranges.difference(&st.src_ranges.clone()) {
            match put_src_range(&mut self.maps, st.svc_id, *r) {
                Ok(()) => {
                    rep.writes += 1;
                    st.src_ranges.insert(*r);
                    touched = true;
                }
                Err(e) => rep.failed.push((name.to_string(), e.to_string())),
            }
        }

        // 4. One services update per frontend.
        let mut want_keys = HashSet::default();
        for f in &new.frontends {
            want_keys.insert(f.key);
            let off = if f.table_size == 0 {
                Some(0)
            } else {
                groups
                    .iter()
                    .position(|g| *g == (&f.backends[..], f.table_size))
                    .and_then(|i| group_off[i])
            };
            let Some(off) = off.filter(|_| switch) else {
                continue; // its table (or stable table) failed: keeps what it had
            };
            let val = frontend_val(f, st.svc_id, off);
            let old = st.frontends.get(&f.key).map(|fs| fs.val);
            if old.is_some_and(|o| same_val(&o, &val)) {
                continue;
            }
            if let Err(e) = put_service(&mut self.maps, &f.key, &val) {
                rep.failed
                    .push((format!("{name} {}", f.key), e.to_string()));
                continue;
            }
            rep.writes += 1;
            rep.frontends_written += 1;
            touched = true;
            if let Some(o) = old {
                table_unref(st, o.table_off, o.table_size);
            }
            if val.table_size > 0 {
                if let Some(t) = st.tables.iter_mut().find(|t| t.off == off) {
                    t.refs += 1;
                }
            }
            st.frontends.insert(f.key, FeState { val });
            if let Some(prev) = self.fe_owner.insert(f.key, name.to_string()) {
                if prev != name {
                    self.steal(&prev, f.key, name, d, rep);
                }
            }
        }

        // 5. Frontends no longer wanted.
        let gone: Vec<FrontendKey> = st
            .frontends
            .keys()
            .filter(|k| !want_keys.contains(k))
            .copied()
            .collect();
        for k in gone {
            touched |= self.delete_frontend(st, name, k, rep);
        }

        // 6. Source ranges to remove.
        let extra: Vec<_> = st.src_ranges.difference(&want_ranges).copied().collect();
        for r in extra {
            touched |= self.delete_src_range(st, name, r, rep);
        }
        touched
    }

    /// Removal of a port: services entries, then ranges (regions and
    /// backends follow in [`Syncer::apply_port`]).
    fn clear_port(&mut self, st: &mut PortState, name: &str, rep: &mut SyncReport) -> bool {
        let mut touched = false;
        let keys: Vec<FrontendKey> = st.frontends.keys().copied().collect();
        for k in keys {
            touched |= self.delete_frontend(st, name, k, rep);
        }
        let ranges: Vec<_> = st.src_ranges.iter().copied().collect();
        for r in ranges {
            touched |= self.delete_src_range(st, name, r, rep);
        }
        touched
    }

    /// A table of the port with these backends and size whose content is
    /// right (adopted ones are verified once against the computed table).
    fn reusable_table(
        &mut self,
        st: &mut PortState,
        backends: &[SocketAddr],
        size: u32,
        rep: &mut SyncReport,
    ) -> Option<u32> {
        let i = st
            .tables
            .iter()
            .position(|t| t.size == size && t.backends == backends)?;
        if let Some(h) = st.tables[i].adopted_hash {
            let ids = self.table_ids(st, backends, size)?;
            if hash_ids(&ids) != h {
                // Stale content: not reusable; freed once unreferenced.
                let t = &mut st.tables[i];
                let stale = std::mem::take(&mut t.backends);
                t.adopted_hash = Some(0);
                self.release_all(st, &stale, rep);
                return None;
            }
            st.tables[i].adopted_hash = None;
        }
        Some(st.tables[i].off)
    }

    /// The Maglev table as backend ids (all backends must have ids).
    fn table_ids(
        &mut self,
        st: &PortState,
        backends: &[SocketAddr],
        size: u32,
    ) -> Option<Vec<u32>> {
        let ids = st.ids_of(backends)?;
        // Indexes into `backends` become their ids in place (one table-sized
        // allocation per build).
        let mut t = self.index_table(backends, size);
        for slot in &mut t {
            *slot = ids[*slot as usize];
        }
        Some(t)
    }

    /// Takes a reference on each backend (listed by the port in step 1),
    /// allocates a region and writes the table. On failure everything taken
    /// is given back.
    fn new_table(
        &mut self,
        st: &mut PortState,
        backends: &[SocketAddr],
        size: u32,
        rep: &mut SyncReport,
    ) -> std::result::Result<u32, String> {
        if let Err(b) = Self::ref_all(st, backends) {
            return Err(format!("backend {b} has no id"));
        }
        let Some(off) = self.regions.alloc(size) else {
            self.release_all(st, backends, rep);
            return Err(format!(
                "maglev slot array full: no free region of {size} slots ({} of {} used, largest free {})",
                self.regions.used(),
                self.regions.capacity(),
                self.regions.largest_free()
            ));
        };
        let ids = self
            .table_ids(st, backends, size)
            .expect("backends have ids");
        if let Err(e) = self.maps.write_maglev(off, &ids) {
            self.regions.free(off, size);
            self.release_all(st, backends, rep);
            return Err(e.to_string());
        }
        rep.writes += 1;
        rep.regions_written += 1;
        rep.slots_written += size as usize;
        st.tables.push(Table {
            off,
            size,
            backends: backends.to_vec(),
            refs: 0,
            adopted_hash: None,
            held: false,
        });
        Ok(off)
    }

    fn delete_frontend(
        &mut self,
        st: &mut PortState,
        name: &str,
        k: FrontendKey,
        rep: &mut SyncReport,
    ) -> bool {
        let owned = self.fe_owner.get(&k).is_some_and(|o| o == name);
        if owned {
            if let Err(e) = delete_service(&mut self.maps, &k.svc_key()) {
                rep.failed.push((format!("{name} {k}"), e.to_string()));
                return false;
            }
            rep.writes += 1;
            rep.frontends_deleted += 1;
            self.fe_owner.remove(&k);
        }
        if let Some(fs) = st.frontends.remove(&k) {
            table_unref(st, fs.val.table_off, fs.val.table_size);
        }
        true
    }

    fn delete_src_range(
        &mut self,
        st: &mut PortState,
        name: &str,
        r: (IpAddr, u8),
        rep: &mut SyncReport,
    ) -> bool {
        match delete_src_range(&mut self.maps, st.svc_id, r) {
            Ok(_) => {
                rep.writes += 1;
                st.src_ranges.remove(&r);
                true
            }
            Err(e) => {
                rep.failed.push((name.to_string(), e.to_string()));
                false
            }
        }
    }

    /// Another port's frontend `k` was just overwritten by `by`. When `d`
    /// still gives it to `victim` that is a conflict (the model resolves
    /// those, so only a desired state built elsewhere has them); else a
    /// handover (the owner changed): nothing to report.
    fn steal(&mut self, victim: &str, k: FrontendKey, by: &str, d: &Desired, rep: &mut SyncReport) {
        let still_wanted = victim
            .rsplit_once(':')
            .and_then(|(svc, _)| d.services.get(svc))
            .and_then(|s| s.ports.iter().find(|p| p.name == victim))
            .is_some_and(|p| p.frontends.iter().any(|f| f.key == k));
        if still_wanted {
            rep.failed.push((
                format!("{victim} {k}"),
                format!("frontend also claimed by {by}, which now has it"),
            ));
        }
        if let Some(mut vst) = self.ports.remove(victim) {
            if let Some(fs) = vst.frontends.remove(&k) {
                table_unref(&mut vst, fs.val.table_off, fs.val.table_size);
            }
            self.gc_tables(&mut vst, rep);
            self.stable_settle(&mut vst, victim, rep);
            self.ports.insert(victim.to_string(), vst);
        }
    }

    fn gc_tables(&mut self, st: &mut PortState, rep: &mut SyncReport) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < st.tables.len() {
            if st.tables[i].refs == 0 {
                let t = st.tables.swap_remove(i);
                // A stable table's region stays until its window ends.
                if !t.held {
                    self.regions.free(t.off, t.size);
                    rep.regions_freed += 1;
                }
                self.release_all(st, &t.backends, rep);
                any = true;
            } else {
                i += 1;
            }
        }
        any
    }
}
