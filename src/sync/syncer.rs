//! The syncer: applied state, id allocators, and the ordered diff.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use xlb_bpf::consts::{XLB_BE_F_ACTIVE, XLB_BE_F_TERMINATING, XLB_KIND_NODEPORT, XLB_MAX_SVC};
use xlb_bpf::types::{
    xlb_backend, xlb_src_range_key, xlb_svc_key, xlb_svc_val, xlb_tunnel_key, xlb_tunnel_val,
};
use xlb_bpf::Proto;

use super::{MapOps, Occupancy, Regions, Result, SyncOptions, SyncReport};
use crate::model::{
    Backend, Desired, Frontend, FrontendKey, ServiceDesired, ServicePort, TunnelEntry,
};

/// A backend id in use.
#[derive(Clone, Debug)]
struct BeState {
    id: u32,
    /// Tables naming it.
    refs: u32,
    val: xlb_backend,
}

/// A Maglev region owned by one Service port.
#[derive(Clone, Debug)]
struct Table {
    off: u32,
    size: u32,
    /// Sorted identities; each holds one backend ref.
    backends: Vec<SocketAddrV4>,
    /// Frontends pointing at it.
    refs: u32,
    /// Adopted from the maps and not yet verified: hash of its content.
    adopted_hash: Option<u64>,
}

#[derive(Clone, Debug)]
struct FeState {
    val: xlb_svc_val,
}

#[derive(Clone, Debug, Default)]
struct PortState {
    svc_id: u32,
    frontends: HashMap<FrontendKey, FeState>,
    tables: Vec<Table>,
    src_ranges: BTreeSet<(Ipv4Addr, u8)>,
}

fn val_bytes(v: &xlb_svc_val) -> &[u8] {
    // SAFETY: Plain struct.
    unsafe { plain::as_bytes(v) }
}

fn same_val(a: &xlb_svc_val, b: &xlb_svc_val) -> bool {
    val_bytes(a) == val_bytes(b)
}

fn same_backend(a: &xlb_backend, b: &xlb_backend) -> bool {
    // SAFETY: Plain structs.
    unsafe { plain::as_bytes(a) == plain::as_bytes(b) }
}

fn hash_ids(ids: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ids.hash(&mut h);
    h.finish()
}

fn key_of_svc(k: &xlb_svc_key) -> Option<FrontendKey> {
    Some(FrontendKey {
        addr: (u32::from(k.kind) != XLB_KIND_NODEPORT).then(|| k.ip()),
        port: k.port(),
        proto: Proto::from_number(k.proto)?,
    })
}

/// Keeps the maps equal to a [`Desired`], see the module docs.
pub struct Syncer<M: MapOps> {
    maps: M,
    opts: SyncOptions,
    regions: Regions,
    backends: HashMap<SocketAddrV4, BeState>,
    /// Generation of every backend slot.
    gens: Vec<u32>,
    /// Never-used ids from here up.
    next_be: u32,
    free_be: BTreeSet<u32>,
    svc_ids: HashMap<String, u32>,
    names: BTreeMap<u32, String>,
    next_svc: u32,
    free_svc: BTreeSet<u32>,
    names_dirty: bool,
    ports: HashMap<String, PortState>,
    fe_owner: HashMap<FrontendKey, String>,
    applied: BTreeMap<String, Arc<ServiceDesired>>,
    retry: BTreeSet<String>,
    tunnels: BTreeMap<(Ipv4Addr, u8), TunnelEntry>,
    local_addrs: BTreeSet<Ipv4Addr>,
    /// Adopted state not yet reconciled by a first apply.
    adopting: bool,
    stray_services: Vec<xlb_svc_key>,
    stray_src: Vec<xlb_src_range_key>,
    stray_backends: Vec<u32>,
}

impl<M: MapOps> Syncer<M> {
    /// Takes over `maps` and what they hold (nothing is written until
    /// [`Syncer::apply`]). Empty maps are fine.
    pub fn adopt(maps: M, opts: SyncOptions) -> Result<Self> {
        let names_file = match &opts.names_file {
            Some(p) => crate::names::read(p).unwrap_or_else(|e| {
                tracing::warn!("{e}: Service names start empty");
                BTreeMap::new()
            }),
            None => BTreeMap::new(),
        };
        let be_cap = maps.backend_capacity();
        let mut s = Self {
            regions: Regions::new(0),
            backends: HashMap::new(),
            gens: vec![0; be_cap as usize],
            next_be: 1,
            free_be: BTreeSet::new(),
            svc_ids: HashMap::new(),
            names: BTreeMap::new(),
            next_svc: 1,
            free_svc: BTreeSet::new(),
            names_dirty: false,
            ports: HashMap::new(),
            fe_owner: HashMap::new(),
            applied: BTreeMap::new(),
            retry: BTreeSet::new(),
            tunnels: BTreeMap::new(),
            local_addrs: BTreeSet::new(),
            adopting: true,
            stray_services: Vec::new(),
            stray_src: Vec::new(),
            stray_backends: Vec::new(),
            opts,
            maps,
        };

        // Backends: active slots keep their ids; the highest id seen bounds
        // the fresh ones, inactive ones below it are free.
        let slots = s.maps.backend_slots()?;
        let mut max_seen = 0;
        for (id, b) in slots.iter().enumerate().skip(1) {
            let id = id as u32;
            s.gens[id as usize] = b.generation;
            if b.generation != 0 || b.is_active() {
                max_seen = id;
            }
            if b.is_active() && !s.backends.contains_key(&b.sockaddr()) {
                s.backends.insert(
                    b.sockaddr(),
                    BeState {
                        id,
                        refs: 0,
                        val: *b,
                    },
                );
            }
        }
        s.next_be = max_seen + 1;
        let by_id: HashMap<u32, SocketAddrV4> =
            s.backends.iter().map(|(a, b)| (b.id, *a)).collect();
        for id in 1..s.next_be {
            if by_id.contains_key(&id) {
                continue;
            }
            if slots[id as usize].is_active() {
                // A second active slot for one address: released (generation
                // bumped) by the first apply, then reusable.
                s.stray_backends.push(id);
            } else {
                s.free_be.insert(id);
            }
        }

        // Frontends and their regions.
        let mut used_regions = Vec::new();
        for (k, v) in s.maps.services()? {
            let Some(key) = key_of_svc(&k) else {
                s.stray_services.push(k);
                continue;
            };
            let name = names_file
                .get(&v.svc_id)
                .cloned()
                .unwrap_or_else(|| format!("?{}", v.svc_id));
            if v.svc_id >= XLB_MAX_SVC {
                s.stray_services.push(k);
                continue;
            }
            let port = s.ports.entry(name.clone()).or_insert_with(|| PortState {
                svc_id: v.svc_id,
                ..Default::default()
            });
            if port.svc_id != v.svc_id {
                // Two ids under one name: keep the first; the other entry is stale.
                s.stray_services.push(k);
                continue;
            }
            if v.table_size > 0 {
                if let Some(t) = port.tables.iter_mut().find(|t| t.off == v.table_off) {
                    t.refs += 1;
                } else {
                    used_regions.push((v.table_off, v.table_size));
                    let ids = s
                        .maps
                        .read_maglev(v.table_off, v.table_size)
                        .unwrap_or_default();
                    let mut backends: Vec<SocketAddrV4> =
                        ids.iter().filter_map(|id| by_id.get(id).copied()).collect();
                    let complete = backends.len() == ids.len() && !ids.is_empty();
                    backends.sort();
                    backends.dedup();
                    port.tables.push(Table {
                        off: v.table_off,
                        size: v.table_size,
                        backends: if complete { backends } else { Vec::new() },
                        refs: 1,
                        adopted_hash: Some(if complete { hash_ids(&ids) } else { 0 }),
                    });
                }
            }
            port.frontends.insert(key, FeState { val: v });
            s.fe_owner.insert(key, name.clone());
            s.svc_ids.insert(name.clone(), v.svc_id);
            s.names.insert(v.svc_id, name);
        }
        for p in s.ports.values() {
            for t in &p.tables {
                for b in &t.backends {
                    if let Some(be) = s.backends.get_mut(b) {
                        be.refs += 1;
                    }
                }
            }
        }
        s.regions = Regions::with_used(s.maps.maglev_capacity(), used_regions);
        s.next_svc = s
            .names
            .keys()
            .next_back()
            .map(|m| m + 1)
            .unwrap_or(1)
            .max(1);
        for id in 1..s.next_svc {
            if !s.names.contains_key(&id) {
                s.free_svc.insert(id);
            }
        }

        // Source ranges: attach to their port, the rest are stray.
        let by_svc: HashMap<u32, String> =
            s.ports.iter().map(|(n, p)| (p.svc_id, n.clone())).collect();
        for k in s.maps.src_ranges()? {
            match by_svc.get(&k.svc_id()) {
                Some(n) => {
                    s.ports.get_mut(n).unwrap().src_ranges.insert(k.net());
                }
                None => s.stray_src.push(k),
            }
        }
        for (k, v) in s.maps.tunnels()? {
            s.tunnels.insert(
                k.net(),
                TunnelEntry {
                    node: v.node(),
                    vtep_mac: v.vtep_mac,
                },
            );
        }
        s.local_addrs = s.maps.local_addrs()?.into_iter().collect();
        s.names_dirty = true;
        Ok(s)
    }
}

/// Frontends of a port grouped by table: `(backends, size)`.
type Group<'a> = (&'a [SocketAddrV4], u32);

impl<M: MapOps> Syncer<M> {
    /// The maps (read-only use: metrics, CLI-style reads).
    pub fn maps(&self) -> &M {
        &self.maps
    }

    /// svc_id -> `"ns/name:port/PROTO"` of every programmed Service port.
    pub fn service_names(&self) -> &BTreeMap<u32, String> {
        &self.names
    }

    /// The svc_id of a Service port name.
    pub fn svc_id(&self, port_name: &str) -> Option<u32> {
        self.svc_ids.get(port_name).copied()
    }

    /// The backend id of an endpoint identity.
    pub fn backend_id(&self, addr: SocketAddrV4) -> Option<u32> {
        self.backends.get(&addr).map(|b| b.id)
    }

    /// How full the agent-owned maps are.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            frontends: self.fe_owner.len(),
            backends: self.backends.len(),
            backend_capacity: self.maps.backend_capacity(),
            maglev_used: self.regions.used(),
            maglev_capacity: self.maps.maglev_capacity(),
            svc_ids: self.names.len(),
            tunnels: self.tunnels.len(),
        }
    }

    /// Makes the maps hold `d`: only Services whose desired entry changed
    /// (by `Arc` pointer, then by value) are diffed, so a one-slice change
    /// costs O(that Service). Failures of single ports are listed in
    /// [`SyncReport::failed`] (and retried on the next apply); `Err` only when
    /// the maps cannot be used at all.
    pub fn apply(&mut self, d: &Desired) -> Result<SyncReport> {
        let mut rep = SyncReport::default();
        self.add_tunnels_and_addrs(d, &mut rep);

        // Merge-join desired and applied Services (both sorted by key).
        let mut changed: Vec<(String, Option<Arc<ServiceDesired>>)> = Vec::new();
        // Equal by value under another Arc (a rebuilt model): keep the new
        // Arc, so the next apply skips them by pointer.
        let mut relink: Vec<(String, Arc<ServiceDesired>)> = Vec::new();
        {
            let mut a = self.applied.iter().peekable();
            let mut b = d.services.iter().peekable();
            loop {
                match (a.peek(), b.peek()) {
                    (None, None) => break,
                    (Some((ka, _)), None) => {
                        changed.push(((*ka).clone(), None));
                        a.next();
                    }
                    (None, Some((kb, vb))) => {
                        changed.push(((*kb).clone(), Some((*vb).clone())));
                        b.next();
                    }
                    (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                        std::cmp::Ordering::Less => {
                            changed.push(((*ka).clone(), None));
                            a.next();
                        }
                        std::cmp::Ordering::Greater => {
                            changed.push(((*kb).clone(), Some((*vb).clone())));
                            b.next();
                        }
                        std::cmp::Ordering::Equal => {
                            let same_arc = Arc::ptr_eq(va, vb);
                            if !(same_arc || ***va == ***vb) || self.retry.contains(*ka) {
                                changed.push(((*kb).clone(), Some((*vb).clone())));
                            } else if !same_arc {
                                relink.push(((*kb).clone(), (*vb).clone()));
                            }
                            a.next();
                            b.next();
                        }
                    },
                }
            }
        }
        for (key, new) in relink {
            self.applied.insert(key, new);
        }
        for (key, new) in changed {
            self.apply_service(&key, new, &mut rep);
        }

        if self.adopting {
            self.finish_adopt(d, &mut rep);
        }
        self.remove_tunnels_and_addrs(d, &mut rep);
        if self.names_dirty {
            if let Some(path) = &self.opts.names_file {
                match crate::names::write(path, &self.names) {
                    Ok(()) => self.names_dirty = false,
                    Err(e) => rep.failed.push(("names file".into(), e.to_string())),
                }
            } else {
                self.names_dirty = false;
            }
        }
        for (what, why) in &rep.failed {
            tracing::warn!(what = %what, "sync: {why}");
        }
        Ok(rep)
    }

    fn apply_service(&mut self, key: &str, new: Option<Arc<ServiceDesired>>, rep: &mut SyncReport) {
        let old = self.applied.get(key).cloned();
        let failed_before = rep.failed.len();
        let new_names: HashSet<&str> = new
            .iter()
            .flat_map(|s| s.ports.iter().map(|p| p.name.as_str()))
            .collect();
        if let Some(n) = &new {
            for p in &n.ports {
                self.apply_port(&p.name, Some(p), rep);
            }
        }
        if let Some(o) = &old {
            for p in &o.ports {
                if !new_names.contains(p.name.as_str()) {
                    self.apply_port(&p.name, None, rep);
                }
            }
        }
        match new {
            Some(n) => {
                self.applied.insert(key.to_string(), n);
            }
            None => {
                self.applied.remove(key);
            }
        }
        if rep.failed.len() > failed_before {
            self.retry.insert(key.to_string());
        } else {
            self.retry.remove(key);
        }
    }

    fn alloc_svc_id(&mut self, name: &str) -> Option<u32> {
        let id = if self.next_svc < XLB_MAX_SVC {
            self.next_svc += 1;
            self.next_svc - 1
        } else {
            self.free_svc.pop_first()?
        };
        self.svc_ids.insert(name.to_string(), id);
        self.names.insert(id, name.to_string());
        self.names_dirty = true;
        Some(id)
    }

    fn free_svc_id(&mut self, name: &str) {
        if let Some(id) = self.svc_ids.remove(name) {
            self.names.remove(&id);
            self.free_svc.insert(id);
            self.names_dirty = true;
        }
    }

    /// Brings one Service port to `new` (`None`: removes it).
    fn apply_port(&mut self, name: &str, new: Option<&ServicePort>, rep: &mut SyncReport) {
        let mut st = match self.ports.remove(name) {
            Some(st) => st,
            None => {
                let Some(new) = new else { return };
                // An adopted port of unknown name holding one of our frontends
                // becomes this port (keeps its svc_id and regions).
                let adopted = new.frontends.iter().find_map(|f| {
                    self.fe_owner
                        .get(&f.key)
                        .filter(|o| o.starts_with('?'))
                        .cloned()
                });
                match adopted.and_then(|o| self.ports.remove(&o).map(|st| (o, st))) {
                    Some((o, st)) => {
                        self.svc_ids.remove(&o);
                        self.svc_ids.insert(name.to_string(), st.svc_id);
                        self.names.insert(st.svc_id, name.to_string());
                        self.names_dirty = true;
                        for k in st.frontends.keys() {
                            self.fe_owner.insert(*k, name.to_string());
                        }
                        st
                    }
                    None => match self.alloc_svc_id(name) {
                        Some(id) => PortState {
                            svc_id: id,
                            ..Default::default()
                        },
                        None => {
                            rep.failed.push((
                                name.to_string(),
                                format!("svc_id space full ({XLB_MAX_SVC})"),
                            ));
                            return;
                        }
                    },
                }
            }
        };
        let svc_id = st.svc_id;
        let mut touched = false;

        if let Some(new) = new {
            // 1. Backends (values of existing ones refreshed in place) and
            // 2. tables into free regions.
            let infos: HashMap<SocketAddrV4, &Backend> =
                new.backends.iter().map(|b| (b.addr, b)).collect();
            for b in &new.backends {
                if let Some(be) = self.backends.get(&b.addr) {
                    let want = backend_val(b, be.val.generation);
                    if !same_backend(&want, &be.val) {
                        let id = be.id;
                        match self.maps.put_backend(id, &want) {
                            Ok(()) => {
                                rep.writes += 1;
                                self.backends.get_mut(&b.addr).unwrap().val = want;
                            }
                            Err(e) => rep.failed.push((name.to_string(), e.to_string())),
                        }
                    }
                }
            }
            let mut groups: Vec<Group<'_>> = Vec::new();
            for f in &new.frontends {
                if f.table_size > 0 && !groups.contains(&(&f.backends[..], f.table_size)) {
                    groups.push((&f.backends[..], f.table_size));
                }
            }
            let mut group_off: Vec<Option<u32>> = Vec::with_capacity(groups.len());
            for (backends, size) in &groups {
                let reuse = self.reusable_table(&mut st, backends, *size);
                let off = match reuse {
                    Some(off) => Some(off),
                    None => match self.new_table(&mut st, backends, *size, &infos, rep) {
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

            // 3. Source ranges to add.
            let want_ranges: BTreeSet<(Ipv4Addr, u8)> = new.src_ranges.iter().copied().collect();
            for r in want_ranges.difference(&st.src_ranges.clone()) {
                match self
                    .maps
                    .put_src_range(&xlb_src_range_key::new(svc_id, r.0, r.1))
                {
                    Ok(()) => {
                        rep.writes += 1;
                        st.src_ranges.insert(*r);
                        touched = true;
                    }
                    Err(e) => rep.failed.push((name.to_string(), e.to_string())),
                }
            }

            // 4. One services update per frontend.
            let mut want_keys = HashSet::new();
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
                let Some(off) = off else {
                    continue; // its table failed: keeps what it had
                };
                let val = frontend_val(f, svc_id, off);
                let old_off = st
                    .frontends
                    .get(&f.key)
                    .map(|fs| (fs.val.table_off, fs.val.table_size));
                if st
                    .frontends
                    .get(&f.key)
                    .is_some_and(|fs| same_val(&fs.val, &val))
                {
                    continue;
                }
                if let Err(e) = self.maps.put_service(&f.key.svc_key(), &val) {
                    rep.failed
                        .push((format!("{name} {}", f.key), e.to_string()));
                    continue;
                }
                rep.writes += 1;
                rep.frontends_written += 1;
                touched = true;
                if let Some((o, s)) = old_off {
                    table_unref(&mut st, o, s);
                }
                if val.table_size > 0 {
                    if let Some(t) = st.tables.iter_mut().find(|t| t.off == off) {
                        t.refs += 1;
                    }
                }
                st.frontends.insert(f.key, FeState { val });
                if let Some(prev) = self.fe_owner.insert(f.key, name.to_string()) {
                    if prev != name {
                        self.steal(&prev, f.key, name, rep);
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
                touched |= self.delete_frontend(&mut st, name, k, rep);
            }

            // 6. Source ranges to remove.
            let extra: Vec<_> = st.src_ranges.difference(&want_ranges).copied().collect();
            for r in extra {
                touched |= self.delete_src_range(&mut st, name, r, rep);
            }
        } else {
            // Removal: services entries, then ranges, then regions, then backends.
            let keys: Vec<FrontendKey> = st.frontends.keys().copied().collect();
            for k in keys {
                touched |= self.delete_frontend(&mut st, name, k, rep);
            }
            let ranges: Vec<_> = st.src_ranges.iter().copied().collect();
            for r in ranges {
                touched |= self.delete_src_range(&mut st, name, r, rep);
            }
        }

        // 7-8. Free unreferenced regions, then their backends.
        touched |= self.gc_tables(&mut st, rep);

        if new.is_none()
            && st.frontends.is_empty()
            && st.src_ranges.is_empty()
            && st.tables.is_empty()
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

    /// A table of the port with these backends and size whose content is
    /// right (adopted ones are verified once against the computed table).
    fn reusable_table(
        &mut self,
        st: &mut PortState,
        backends: &[SocketAddrV4],
        size: u32,
    ) -> Option<u32> {
        let i = st
            .tables
            .iter()
            .position(|t| t.size == size && t.backends == backends)?;
        if let Some(h) = st.tables[i].adopted_hash {
            let ids = self.table_ids(backends, size)?;
            if hash_ids(&ids) != h {
                // Stale content: not reusable; freed once unreferenced.
                st.tables[i].backends.clear();
                st.tables[i].adopted_hash = Some(0);
                return None;
            }
            st.tables[i].adopted_hash = None;
        }
        Some(st.tables[i].off)
    }

    /// The Maglev table as backend ids (all backends must have ids).
    fn table_ids(&self, backends: &[SocketAddrV4], size: u32) -> Option<Vec<u32>> {
        let ids: Vec<u32> = backends
            .iter()
            .map(|b| self.backends.get(b).map(|s| s.id))
            .collect::<Option<_>>()?;
        Some(
            crate::maglev::table(backends, size)
                .into_iter()
                .map(|i| ids[i as usize])
                .collect(),
        )
    }

    /// Acquires the backends, allocates a region and writes the table. On
    /// failure everything taken is given back.
    fn new_table(
        &mut self,
        st: &mut PortState,
        backends: &[SocketAddrV4],
        size: u32,
        infos: &HashMap<SocketAddrV4, &Backend>,
        rep: &mut SyncReport,
    ) -> std::result::Result<u32, String> {
        let mut taken = Vec::with_capacity(backends.len());
        for b in backends {
            let Some(info) = infos.get(b) else {
                self.release_all(&taken, rep);
                return Err(format!("backend {b} not in the port's backend list"));
            };
            match self.acquire(info, rep) {
                Ok(()) => taken.push(*b),
                Err(e) => {
                    self.release_all(&taken, rep);
                    return Err(e);
                }
            }
        }
        let Some(off) = self.regions.alloc(size) else {
            self.release_all(&taken, rep);
            return Err(format!(
                "maglev slot array full: no free region of {size} slots ({} of {} used, largest free {})",
                self.regions.used(),
                self.regions.capacity(),
                self.regions.largest_free()
            ));
        };
        let ids = self.table_ids(backends, size).expect("backends acquired");
        if let Err(e) = self.maps.write_maglev(off, &ids) {
            self.regions.free(off, size);
            self.release_all(&taken, rep);
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
        });
        Ok(off)
    }

    fn acquire(&mut self, b: &Backend, rep: &mut SyncReport) -> std::result::Result<(), String> {
        if let Some(be) = self.backends.get_mut(&b.addr) {
            be.refs += 1;
            return Ok(());
        }
        let cap = self.maps.backend_capacity();
        let id = if self.next_be < cap {
            self.next_be += 1;
            self.next_be - 1
        } else if let Some(id) = self.free_be.pop_first() {
            id
        } else {
            return Err(format!("backends map full ({cap} ids)"));
        };
        let generation = self.gens[id as usize].wrapping_add(1);
        let val = backend_val(b, generation);
        if let Err(e) = self.maps.put_backend(id, &val) {
            self.free_be.insert(id);
            return Err(e.to_string());
        }
        self.gens[id as usize] = generation;
        rep.writes += 1;
        rep.backends_added += 1;
        self.backends.insert(b.addr, BeState { id, refs: 1, val });
        Ok(())
    }

    fn release_all(&mut self, addrs: &[SocketAddrV4], rep: &mut SyncReport) {
        for a in addrs {
            self.release(*a, rep);
        }
    }

    /// Drops one ref; the last one deactivates the slot and bumps its generation.
    fn release(&mut self, addr: SocketAddrV4, rep: &mut SyncReport) {
        let Some(be) = self.backends.get_mut(&addr) else {
            return;
        };
        be.refs = be.refs.saturating_sub(1);
        if be.refs > 0 {
            return;
        }
        let id = be.id;
        let mut dead = be.val;
        self.retire(id, &mut dead, rep);
        self.backends.remove(&addr);
    }

    fn retire(&mut self, id: u32, dead: &mut xlb_backend, rep: &mut SyncReport) {
        dead.flags &= !(XLB_BE_F_ACTIVE as u8);
        dead.generation = self.gens[id as usize].wrapping_add(1);
        match self.maps.put_backend(id, dead) {
            Ok(()) => {
                self.gens[id as usize] = dead.generation;
                self.free_be.insert(id);
                rep.writes += 1;
                rep.backends_removed += 1;
            }
            // The id stays out of the free list: never reused while it may
            // still read as active.
            Err(e) => rep.failed.push((format!("backend id {id}"), e.to_string())),
        }
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
            if let Err(e) = self.maps.delete_service(&k.svc_key()) {
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
        r: (Ipv4Addr, u8),
        rep: &mut SyncReport,
    ) -> bool {
        match self
            .maps
            .delete_src_range(&xlb_src_range_key::new(st.svc_id, r.0, r.1))
        {
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

    /// Another port's frontend `k` was just overwritten by `by`.
    fn steal(&mut self, victim: &str, k: FrontendKey, by: &str, rep: &mut SyncReport) {
        if !victim.starts_with('?') {
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
            self.ports.insert(victim.to_string(), vst);
        }
    }

    fn gc_tables(&mut self, st: &mut PortState, rep: &mut SyncReport) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < st.tables.len() {
            if st.tables[i].refs == 0 {
                let t = st.tables.swap_remove(i);
                self.regions.free(t.off, t.size);
                rep.regions_freed += 1;
                self.release_all(&t.backends, rep);
                any = true;
            } else {
                i += 1;
            }
        }
        any
    }

    /// End of the first apply after adopt: whatever nothing desired claimed
    /// is removed (in the same order as any removal).
    fn finish_adopt(&mut self, d: &Desired, rep: &mut SyncReport) {
        let wanted: HashSet<&str> = d.ports().map(|p| p.name.as_str()).collect();
        let stale: Vec<String> = self
            .ports
            .keys()
            .filter(|n| !wanted.contains(n.as_str()))
            .cloned()
            .collect();
        for n in stale {
            self.apply_port(&n, None, rep);
        }
        for k in std::mem::take(&mut self.stray_services) {
            match self.maps.delete_service(&k) {
                Ok(_) => rep.writes += 1,
                Err(e) => rep
                    .failed
                    .push(("stale services entry".into(), e.to_string())),
            }
        }
        for k in std::mem::take(&mut self.stray_src) {
            match self.maps.delete_src_range(&k) {
                Ok(_) => rep.writes += 1,
                Err(e) => rep
                    .failed
                    .push(("stale src_ranges entry".into(), e.to_string())),
            }
        }
        let unref: Vec<(SocketAddrV4, u32, xlb_backend)> = self
            .backends
            .iter()
            .filter(|(_, b)| b.refs == 0)
            .map(|(a, b)| (*a, b.id, b.val))
            .collect();
        for (a, id, mut v) in unref {
            self.retire(id, &mut v, rep);
            self.backends.remove(&a);
        }
        let strays = std::mem::take(&mut self.stray_backends);
        if let Ok(slots) = self.maps.backend_slots() {
            for id in strays {
                let mut v = slots[id as usize];
                self.retire(id, &mut v, rep);
            }
        }
        self.adopting = false;
    }

    fn add_tunnels_and_addrs(&mut self, d: &Desired, rep: &mut SyncReport) {
        if d.tunnels != self.tunnels {
            for (net, t) in &d.tunnels {
                if self.tunnels.get(net) == Some(t) {
                    continue;
                }
                match self.maps.put_tunnel(
                    &xlb_tunnel_key::new(net.0, net.1),
                    &xlb_tunnel_val::new(t.node, t.vtep_mac),
                ) {
                    Ok(()) => {
                        rep.writes += 1;
                        self.tunnels.insert(*net, t.clone());
                    }
                    Err(e) => rep
                        .failed
                        .push((format!("tunnel {}/{}", net.0, net.1), e.to_string())),
                }
            }
        }
        if d.local_addrs != self.local_addrs {
            for a in &d.local_addrs {
                if self.local_addrs.contains(a) {
                    continue;
                }
                match self.maps.put_local_addr(*a) {
                    Ok(()) => {
                        rep.writes += 1;
                        self.local_addrs.insert(*a);
                    }
                    Err(e) => rep.failed.push((format!("local addr {a}"), e.to_string())),
                }
            }
        }
    }

    fn remove_tunnels_and_addrs(&mut self, d: &Desired, rep: &mut SyncReport) {
        if d.tunnels != self.tunnels {
            let gone: Vec<_> = self
                .tunnels
                .keys()
                .filter(|k| !d.tunnels.contains_key(k))
                .copied()
                .collect();
            for net in gone {
                match self.maps.delete_tunnel(&xlb_tunnel_key::new(net.0, net.1)) {
                    Ok(_) => {
                        rep.writes += 1;
                        self.tunnels.remove(&net);
                    }
                    Err(e) => rep
                        .failed
                        .push((format!("tunnel {}/{}", net.0, net.1), e.to_string())),
                }
            }
        }
        if d.local_addrs != self.local_addrs {
            let gone: Vec<_> = self
                .local_addrs
                .difference(&d.local_addrs)
                .copied()
                .collect();
            for a in gone {
                match self.maps.delete_local_addr(a) {
                    Ok(_) => {
                        rep.writes += 1;
                        self.local_addrs.remove(&a);
                    }
                    Err(e) => rep.failed.push((format!("local addr {a}"), e.to_string())),
                }
            }
        }
    }
}

fn table_unref(st: &mut PortState, off: u32, size: u32) {
    if size == 0 {
        return;
    }
    if let Some(t) = st.tables.iter_mut().find(|t| t.off == off) {
        t.refs = t.refs.saturating_sub(1);
    }
}

fn backend_val(b: &Backend, generation: u32) -> xlb_backend {
    let mut v = xlb_backend::new(b.addr, b.node, generation);
    if b.terminating {
        v.flags |= XLB_BE_F_TERMINATING as u8;
    }
    v
}

fn frontend_val(f: &Frontend, svc_id: u32, off: u32) -> xlb_svc_val {
    xlb_svc_val {
        svc_id,
        flags: f.flags,
        table_off: if f.table_size == 0 { 0 } else { off },
        table_size: f.table_size,
        affinity_timeout: f.affinity_timeout,
        n_local: f.n_local,
        fe_type: f.kind.fe_type(),
        ..Default::default()
    }
}
