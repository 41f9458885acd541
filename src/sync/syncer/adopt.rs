//! Taking over the maps a previous agent left (restart), and reconciling
//! them at the first apply.

use std::collections::{BTreeMap, BTreeSet};

use super::{HashMap, HashSet};

use xlb_bpf::consts::XLB_MAX_SVC;

use super::family::{delete_service, delete_src_range, key_of_svc6, src_ranges, tunnels};
use super::{
    hash_ids, key_of_svc, BeState, BeVal, FeState, MapOps, PortState, Result, SyncOptions,
    SyncReport, Syncer, Table,
};

/// An adopted backend's identity: its port's svc_id and its address.
type BeKey = (u32, std::net::SocketAddr);
use crate::model::{Desired, Family, SvcKey};
use crate::sync::Regions;

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
            gens: vec![0; be_cap as usize],
            next_be: 1,
            free_be: BTreeSet::new(),
            orphans: HashMap::default(),
            svc_ids: HashMap::default(),
            names: BTreeMap::new(),
            next_svc: 1,
            free_svc: BTreeSet::new(),
            names_dirty: false,
            ports: HashMap::default(),
            fe_owner: HashMap::default(),
            applied: BTreeMap::new(),
            retry: BTreeSet::new(),
            tunnels: BTreeMap::new(),
            local_addrs: BTreeSet::new(),
            remote_addrs: BTreeSet::new(),
            adopting: true,
            stray_services: Vec::new(),
            stray_src: Vec::new(),
            prebuilt: HashMap::default(),
            st: super::stable::StableBook::new(
                maps.has_svc_stable(),
                opts.ct_udp,
                opts.ct_tcp_established,
                opts.clock.clone(),
            ),
            opts,
            maps,
        };

        // Backend slots: generations kept; the highest id seen bounds the
        // fresh ones, inactive ones below it are free. Active ones belong to
        // the Service port whose table names them (below).
        // One id space over `backends` and `backends6`: an id's generation
        // is the higher of its two slots' (the one written last).
        let slots = s.maps.backend_slots()?;
        let slots6 = s.maps.backend6_slots()?;
        let mut max_seen = 0;
        for id in 1..s.gens.len() {
            let g4 = slots.get(id).map_or(0, |b| b.generation);
            let g6 = slots6.get(id).map_or(0, |b| b.generation);
            let active = slots.get(id).is_some_and(|b| b.is_active())
                || slots6.get(id).is_some_and(|b| b.is_active());
            s.gens[id] = g4.max(g6);
            if g4 != 0 || g6 != 0 || active {
                max_seen = id as u32;
            }
        }
        s.next_be = max_seen + 1;
        // The active value of id in the array of `fam`.
        let active_in = |id: u32, fam: Family| -> Option<BeVal> {
            match fam {
                Family::V4 => slots
                    .get(id as usize)
                    .filter(|b| b.is_active())
                    .map(|b| BeVal::V4(*b)),
                Family::V6 => slots6
                    .get(id as usize)
                    .filter(|b| b.is_active())
                    .map(|b| BeVal::V6(*b)),
            }
        };
        // Active in either (an id is active in one array at most; IPv4 first).
        let active = |id: u32| active_in(id, Family::V4).or_else(|| active_in(id, Family::V6));
        // id -> the Service port it is adopted for.
        let mut owner_of: HashMap<u32, BeKey> = HashMap::default();
        // The backend ids adopted, by port and address (moved into their
        // ports' lists below).
        let mut adopted: HashMap<BeKey, BeState> = HashMap::default();

        // Frontends, their regions and the backends their tables name.
        let mut used_regions = Vec::new();
        let v4 = s
            .maps
            .services()?
            .into_iter()
            .map(|(k, v)| (SvcKey::V4(k), key_of_svc(&k), v));
        let v6 = s
            .maps
            .services6()?
            .into_iter()
            .map(|(k, v)| (SvcKey::V6(k), key_of_svc6(&k), v));
        let all: Vec<_> = v4.chain(v6).collect();
        for (k, key, v) in all {
            let Some(key) = key else {
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
                    // Complete when every slot names an active backend that
                    // is this port's (or no other port's yet).
                    let mut backends = Vec::with_capacity(ids.len());
                    let mut complete = !ids.is_empty();
                    for id in &ids {
                        let Some(b) = active_in(*id, key.family) else {
                            complete = false;
                            break;
                        };
                        let bk = (v.svc_id, b.sockaddr());
                        match owner_of.get(id) {
                            Some(o) if *o != bk => {
                                complete = false;
                                break;
                            }
                            Some(_) => {}
                            None if adopted.contains_key(&bk) => {
                                // another id for the same address: stale
                                complete = false;
                                break;
                            }
                            None => {
                                owner_of.insert(*id, bk);
                                adopted.insert(
                                    bk,
                                    BeState {
                                        id: *id,
                                        refs: 0,
                                        listed: false,
                                        val: b,
                                    },
                                );
                            }
                        }
                        backends.push(bk.1);
                    }
                    backends.sort();
                    backends.dedup();
                    port.tables.push(Table {
                        off: v.table_off,
                        size: v.table_size,
                        backends: if complete { backends } else { Vec::new() },
                        refs: 1,
                        adopted_hash: Some(if complete { hash_ids(&ids) } else { 0 }),
                        held: false,
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
                    if let Some(be) = adopted.get_mut(&(p.svc_id, *b)) {
                        be.refs += 1;
                    }
                }
            }
        }
        let named: HashSet<u32> = adopted.values().map(|b| b.id).collect();
        {
            let mut by_svc: HashMap<u32, &mut PortState> =
                s.ports.values_mut().map(|p| (p.svc_id, p)).collect();
            for ((svc_id, _), be) in adopted {
                if let Some(p) = by_svc.get_mut(&svc_id) {
                    p.bes.push(be);
                }
            }
            for p in by_svc.into_values() {
                p.bes.sort_by_key(|b| b.addr());
            }
        }
        // Stable tables: open windows keep running, their regions and ids held.
        s.adopt_stable(&mut used_regions)?;
        // Active slots no complete table names: orphans (a port listing the
        // address takes one over), and ids whose tables turned out stale.
        for id in 1..s.next_be {
            if named.contains(&id) {
                continue;
            }
            match active(id) {
                Some(b) => s.orphans.entry(b.sockaddr()).or_default().push((id, b)),
                None => {
                    if !s.st.quarantine(id) {
                        s.free_be.insert(id);
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
        for (svc_id, r) in src_ranges(&s.maps)? {
            match by_svc.get(&svc_id) {
                Some(n) => {
                    s.ports.get_mut(n).unwrap().src_ranges.insert(r);
                }
                None => s.stray_src.push((svc_id, r)),
            }
        }
        s.tunnels = tunnels(&s.maps)?.into_iter().collect();
        s.local_addrs = s.maps.local_addrs()?.into_iter().collect();
        s.remote_addrs = s.maps.remote_addrs()?.into_iter().collect();
        s.names_dirty = true;
        Ok(s)
    }

    /// End of the first apply after adopt: whatever nothing desired claimed
    /// is removed (in the same order as any removal).
    pub(super) fn finish_adopt(&mut self, d: &Desired, rep: &mut SyncReport) {
        let wanted: HashSet<&str> = d.ports().map(|p| p.name.as_str()).collect();
        let stale: Vec<String> = self
            .ports
            .keys()
            .filter(|n| !wanted.contains(n.as_str()))
            .cloned()
            .collect();
        for n in stale {
            self.apply_port(&n, None, d, rep);
        }
        for k in std::mem::take(&mut self.stray_services) {
            match delete_service(&mut self.maps, &k) {
                Ok(_) => rep.writes += 1,
                Err(e) => rep
                    .failed
                    .push(("stale services entry".into(), e.to_string())),
            }
        }
        for (svc_id, r) in std::mem::take(&mut self.stray_src) {
            match delete_src_range(&mut self.maps, svc_id, r) {
                Ok(_) => rep.writes += 1,
                Err(e) => rep
                    .failed
                    .push(("stale src_ranges entry".into(), e.to_string())),
            }
        }
        let mut unref: Vec<(u32, BeVal)> = Vec::new();
        for p in self.ports.values_mut() {
            p.bes.retain(|b| {
                if b.refs == 0 {
                    unref.push((b.id, b.val));
                }
                b.refs > 0
            });
        }
        for (id, v) in unref {
            self.retire(id, v, rep);
        }
        let orphans: Vec<(u32, BeVal)> = self.orphans.drain().flat_map(|(_, v)| v).collect();
        for (id, v) in orphans {
            self.retire(id, v, rep);
        }
        self.adopting = false;
    }
}
