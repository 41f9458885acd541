//! The syncer: applied state, id allocators, and the ordered diff, one
//! concern per file: [`adopt`] (taking over pinned maps after a restart),
//! [`port`] (one Service port's frontends, tables and source ranges),
//! [`backends`] (backend ids per Service port), [`nodes`] (tunnels, local
//! and remote node addresses).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use xlb_bpf::consts::{XLB_KIND_F_INTERNAL, XLB_KIND_NODEPORT, XLB_MAX_SVC};
use xlb_bpf::types::{xlb_svc_key, xlb_svc_val};
use xlb_bpf::Proto;

use super::{MapOps, Occupancy, Regions, Result, SyncOptions, SyncReport};
use crate::model::{Desired, Family, Frontend, FrontendKey, ServiceDesired, SvcKey, TunnelEntry};

mod adopt;
mod backends;
mod family;
mod nodes;
mod port;
mod prebuild;
mod stable;

pub(crate) use family::BeVal;

/// The syncer's hash maps and sets: foldhash, seeded per process (keys
/// come from the cluster's objects).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A backend id in use, of one Service port (in its [`PortState::bes`]): a
/// backend's identity is its port and its address, so an endpoint that
/// leaves one Service retires only that Service's id: its flows there are
/// re-chosen, whatever other Services still use the same address.
#[derive(Clone, Debug)]
struct BeState {
    id: u32,
    /// Tables naming it, plus one while its port lists it.
    refs: u32,
    /// The port lists it (holds one of `refs`).
    listed: bool,
    /// What its slot holds (the address is the backend's).
    val: BeVal,
}

impl BeState {
    fn addr(&self) -> SocketAddr {
        self.val.sockaddr()
    }
}

/// A Maglev region owned by one Service port.
#[derive(Clone, Debug)]
struct Table {
    off: u32,
    size: u32,
    /// Sorted identities (all of one family); each holds one backend ref.
    backends: Vec<SocketAddr>,
    /// Frontends pointing at it.
    refs: u32,
    /// Adopted from the maps and not yet verified: hash of its content.
    adopted_hash: Option<u64>,
    /// The port's stable table (`svc_stable`): its region outlives the
    /// table (freed at the window's end, [`stable`]).
    held: bool,
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
    src_ranges: BTreeSet<(IpAddr, u8)>,
    /// Its backend ids, sorted by address: the ones it lists and the ones
    /// its tables still name (draining).
    bes: Vec<BeState>,
    /// What `svc_stable[svc_id]` holds; `None`: all zero.
    stable: Option<stable::Stable>,
}

fn val_bytes(v: &xlb_svc_val) -> &[u8] {
    // SAFETY: Plain struct.
    unsafe { plain::as_bytes(v) }
}

fn same_val(a: &xlb_svc_val, b: &xlb_svc_val) -> bool {
    val_bytes(a) == val_bytes(b)
}

fn hash_ids(ids: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ids.hash(&mut h);
    h.finish()
}

fn key_of_svc(k: &xlb_svc_key) -> Option<FrontendKey> {
    let kind = u32::from(k.kind);
    if kind & !(XLB_KIND_NODEPORT | XLB_KIND_F_INTERNAL) != 0 {
        return None;
    }
    Some(FrontendKey {
        addr: (kind & XLB_KIND_NODEPORT == 0).then(|| IpAddr::V4(k.ip())),
        port: k.port(),
        proto: Proto::from_number(k.proto)?,
        internal: kind & XLB_KIND_F_INTERNAL != 0,
        family: Family::V4,
    })
}

/// Keeps the maps equal to a [`Desired`], see the module docs.
pub struct Syncer<M: MapOps> {
    maps: M,
    opts: SyncOptions,
    regions: Regions,
    /// Generation of every backend slot.
    gens: Vec<u32>,
    /// Never-used ids from here up.
    next_be: u32,
    free_be: BTreeSet<u32>,
    /// Adopted active slots no table names yet (draining backends of the
    /// agent before a restart), by address: the first port that lists the
    /// address takes one over (same id and generation, so its flows keep
    /// it); the first apply retires the rest.
    orphans: HashMap<SocketAddr, Vec<(u32, BeVal)>>,
    svc_ids: HashMap<String, u32>,
    names: BTreeMap<u32, String>,
    next_svc: u32,
    free_svc: BTreeSet<u32>,
    names_dirty: bool,
    ports: HashMap<String, PortState>,
    fe_owner: HashMap<FrontendKey, String>,
    applied: BTreeMap<String, Arc<ServiceDesired>>,
    retry: BTreeSet<String>,
    tunnels: BTreeMap<(IpAddr, u8), TunnelEntry>,
    local_addrs: BTreeSet<IpAddr>,
    remote_addrs: BTreeSet<IpAddr>,
    /// Adopted state not yet reconciled by a first apply.
    adopting: bool,
    stray_services: Vec<SvcKey>,
    /// `(svc_id, range)` of ranges no port holds.
    stray_src: Vec<(u32, (IpAddr, u8))>,
    /// Maglev tables (as indexes) built ahead for the batch being applied,
    /// by the address of their backend list in the borrowed desired state
    /// ([`prebuild::job_key`]); emptied after every batch.
    prebuilt: HashMap<(usize, usize, u32), Vec<u32>>,
    /// Stable tables of stateless flows ([`stable`]).
    st: stable::StableBook,
}

impl<M: MapOps> Syncer<M> {
    /// The maps (read-only use: metrics, CLI-style reads).
    pub fn maps(&self) -> &M {
        &self.maps
    }

    /// Takes `maps` in place of the current ones: copies holding the same
    /// entries, at least as large (`xlb_loader::grow`). The new room is free.
    pub fn replace_maps(&mut self, maps: M) -> M {
        let old = std::mem::replace(&mut self.maps, maps);
        self.regions.grow(self.maps.maglev_capacity());
        let be_cap = self.maps.backend_capacity() as usize;
        if self.gens.len() < be_cap {
            self.gens.resize(be_cap, 0);
        }
        old
    }

    /// svc_id -> `"ns/name:port/PROTO"` of every programmed Service port.
    pub fn service_names(&self) -> &BTreeMap<u32, String> {
        &self.names
    }

    /// The svc_id of a Service port name.
    pub fn svc_id(&self, port_name: &str) -> Option<u32> {
        self.svc_ids.get(port_name).copied()
    }

    /// The backend id of an endpoint of a Service port.
    pub fn backend_id(&self, port_name: &str, addr: SocketAddr) -> Option<u32> {
        self.ports.get(port_name)?.backend_id(&addr)
    }

    /// Maglev slots held by stable tables no frontend points at any more
    /// (freed when their windows end): room the array needs beyond the
    /// desired state's tables.
    pub fn retained_slots(&self) -> u64 {
        self.st.retained_slots
    }

    /// How full the agent-owned maps are.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            frontends: self.fe_owner.len(),
            backends: self.ports.values().map(|p| p.bes.len()).sum(),
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
        if self.adopting {
            self.zero_stray_stable(&mut rep);
        }
        self.end_windows(&mut rep);
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
        // In batches, each batch's new Maglev tables built ahead in parallel.
        self.apply_batches(&changed, d, &mut rep);

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

    fn apply_service(
        &mut self,
        key: &str,
        new: Option<Arc<ServiceDesired>>,
        d: &Desired,
        rep: &mut SyncReport,
    ) {
        let old = self.applied.get(key).cloned();
        let failed_before = rep.failed.len();
        let new_names: HashSet<&str> = new
            .iter()
            .flat_map(|s| s.ports.iter().map(|p| p.name.as_str()))
            .collect();
        if let Some(n) = &new {
            for p in &n.ports {
                self.apply_port(&p.name, Some(p), d, rep);
            }
        }
        if let Some(o) = &old {
            for p in &o.ports {
                if !new_names.contains(p.name.as_str()) {
                    self.apply_port(&p.name, None, d, rep);
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
}

fn table_unref(st: &mut PortState, off: u32, size: u32) {
    if size == 0 {
        return;
    }
    if let Some(t) = st.tables.iter_mut().find(|t| t.off == off) {
        t.refs = t.refs.saturating_sub(1);
    }
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
