//! Stable tables of stateless flows (docs/ctl.md, "Stateless flows"): per
//! eligible Service port, `svc_stable[svc_id]` names the Maglev table a flow
//! without a ct entry follows. While the port's table has not changed within
//! a window (the protocol's idle timeout: `ct_udp`, `ct_tcp_established`),
//! that is the live table (window closed, `window_end` 0); at a change it
//! names the table in force before it until `window_end`, and that region
//! (and the backend ids it names) stays the port's until the window has
//! ended.
//!
//! Eligible: UDP or TCP, no sessionAffinity, no Local traffic policy
//! (`XLB_SVC_F_LOCAL` / `XLB_SVC_F_EXT_LOCAL`) on any frontend, and every
//! IPv4 frontend on one region. Anything else keeps the entry all zero.

use std::collections::{BTreeSet, HashMap};

use xlb_bpf::consts::{
    XLB_CT_TCP_ESTABLISHED_S, XLB_CT_UDP_S, XLB_SVC_F_AFFINITY, XLB_SVC_F_EXT_LOCAL,
    XLB_SVC_F_LOCAL,
};
use xlb_bpf::types::xlb_svc_stable;
use xlb_bpf::Proto;

use super::{MapOps, PortState, SyncReport, Syncer};
use crate::model::{Family, ServicePort};
use crate::sync::Clock;

/// After `window_end`, the agent waits this long before it points the entry
/// back at the live table and frees the stable region (the data plane reads
/// the region while its coarse clock is before `window_end`).
pub(super) const MARGIN_NS: u64 = 1_000_000_000;

/// What `svc_stable[svc_id]` of a port holds.
#[derive(Clone, Debug)]
pub(super) struct Stable {
    pub off: u32,
    pub size: u32,
    /// CLOCK_MONOTONIC ns; 0: closed.
    pub window_end: u64,
    /// The region is held for the window (it is not, or not only, the live
    /// table): the backend ids it names, unique. Given back when the window
    /// ends or the entry is cleared.
    pub retained: Option<Vec<u32>>,
}

/// The syncer's bookkeeping of stable tables.
#[derive(Debug)]
pub(super) struct StableBook {
    /// `svc_stable` exists (pins of an older xlb have none: nothing is kept).
    pub on: bool,
    /// Window lengths: UDP ports, TCP ports.
    pub window_udp_ns: u64,
    pub window_tcp_ns: u64,
    pub clock: Clock,
    /// `(window_end, svc_id)` of every open window.
    pub deadlines: BTreeSet<(u64, u32)>,
    /// Backend id -> retained regions naming it.
    pub ids: HashMap<u32, u32>,
    /// Retired ids a retained region still names: free once none does.
    pub quarantined: BTreeSet<u32>,
    /// Slots of retained regions.
    pub retained_slots: u64,
    /// Adopted entries of svc_ids without a port: zeroed at the first apply.
    pub stray: Vec<u32>,
}

impl StableBook {
    /// `ct_udp`, `ct_tcp_established`: the data plane's timeouts in
    /// seconds (0: the defaults, as ct.h).
    pub fn new(on: bool, ct_udp: u32, ct_tcp_established: u32, clock: Clock) -> Self {
        let ns = |s: u32, d: u32| u64::from(if s == 0 { d } else { s }) * 1_000_000_000;
        Self {
            on,
            window_udp_ns: ns(ct_udp, XLB_CT_UDP_S),
            window_tcp_ns: ns(ct_tcp_established, XLB_CT_TCP_ESTABLISHED_S),
            clock,
            deadlines: BTreeSet::new(),
            ids: HashMap::new(),
            quarantined: BTreeSet::new(),
            retained_slots: 0,
            stray: Vec::new(),
        }
    }

    /// The window of a port of protocol `p` (as long as an idle flow keeps
    /// its ct entry).
    pub fn window_ns(&self, p: Proto) -> u64 {
        if p == Proto::Tcp {
            self.window_tcp_ns
        } else {
            self.window_udp_ns
        }
    }

    /// Counts `ids` as named by one more retained region of `size` slots.
    pub fn hold(&mut self, ids: &[u32], size: u32) {
        for id in ids {
            *self.ids.entry(*id).or_default() += 1;
        }
        self.retained_slots += u64::from(size);
    }

    /// Whether a retired id must wait (a retained region names it).
    pub fn quarantine(&mut self, id: u32) -> bool {
        let named = self.ids.contains_key(&id);
        if named {
            self.quarantined.insert(id);
        }
        named
    }
}

/// What a port update asks of its stable table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
    /// Not eligible: all zero.
    Zero,
    /// Eligible, its IPv4 frontends on `(off, size)`.
    Table(u32, u32),
    /// Eligible but its table could not be had: left as it is.
    Keep,
}

/// What `new` wants, given the region of each of its frontends (`None`: its
/// table failed; frontends without a table: `Some(None)`).
pub(super) fn want(new: &ServicePort, regions: &[Option<Option<(u32, u32)>>]) -> Want {
    let flags = XLB_SVC_F_AFFINITY | XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL;
    if new.frontends.iter().any(|f| f.flags & flags != 0) {
        return Want::Zero;
    }
    let mut at: Option<Option<(u32, u32)>> = None;
    for (f, r) in new.frontends.iter().zip(regions) {
        if f.key.family != Family::V4 {
            continue;
        }
        let Some(r) = r else {
            return Want::Keep;
        };
        if r.is_none() || at.is_some_and(|a| a != *r) {
            return Want::Zero;
        }
        at = Some(*r);
    }
    match at.flatten() {
        Some((off, size)) => Want::Table(off, size),
        None => Want::Zero,
    }
}

fn entry(off: u32, size: u32, window_end: u64) -> xlb_svc_stable {
    xlb_svc_stable {
        table_off: off,
        table_size: size,
        window_end,
        ..Default::default()
    }
}

/// The region every IPv4 frontend of the port points at, if one.
pub(super) fn live_region(st: &PortState) -> Option<(u32, u32)> {
    let mut at = None;
    for (k, fe) in &st.frontends {
        if k.family != Family::V4 {
            continue;
        }
        let r = (fe.val.table_off, fe.val.table_size);
        if r.1 == 0 || at.is_some_and(|a| a != r) {
            return None;
        }
        at = Some(r);
    }
    at
}

impl<M: MapOps> Syncer<M> {
    /// Before the port's services entries switch: `svc_stable` as `want`
    /// says (module docs). `false`: the write failed, the frontends must
    /// keep what they have (retried with the port).
    pub(super) fn stable_before_switch(
        &mut self,
        st: &mut PortState,
        name: &str,
        want: Want,
        rep: &mut SyncReport,
    ) -> bool {
        if !self.st.on {
            return true;
        }
        let (off, size) = match want {
            Want::Keep => return true,
            Want::Zero => {
                return st.stable.is_none() || self.stable_clear(st, name, rep);
            }
            Want::Table(off, size) => (off, size),
        };
        let live = live_region(st);
        let Some(s) = st.stable.clone() else {
            // First programming (or the port just became eligible: every
            // flow it has is in ct): nothing to protect, window closed.
            return self.stable_put(st, name, entry(off, size, 0), None, rep);
        };
        let Some((loff, lsize)) = live else {
            // No single live table (none yet, or a partial switch failed):
            // start over from the new one.
            return self.stable_put(st, name, entry(off, size, 0), None, rep);
        };
        if (loff, lsize) == (off, size) {
            return true; // no change (a region is never rewritten in place)
        }
        // A table change: the stable table is the one in force until now
        // (window closed), or the one an open window already names.
        let now = self.st.clock.now();
        let proto = st.frontends.keys().next().map_or(Proto::Udp, |k| k.proto);
        let end = now.saturating_add(self.st.window_ns(proto));
        if now < s.window_end && s.retained.is_some() {
            return self.stable_put(st, name, entry(s.off, s.size, end), s.retained, rep);
        }
        // A table the syncer wrote names each of its backends (M >= N: every
        // backend takes a slot in the fill's first round); an adopted one
        // not yet verified is read.
        let known = st
            .tables
            .iter()
            .any(|t| t.off == loff && t.adopted_hash.is_none() && !t.backends.is_empty());
        let ids = match known {
            true => self.live_ids(st, loff),
            false => match self.maps.read_maglev(loff, lsize) {
                Ok(mut ids) => {
                    ids.sort_unstable();
                    ids.dedup();
                    ids
                }
                Err(_) => self.live_ids(st, loff),
            },
        };
        self.stable_put(st, name, entry(loff, lsize, end), Some(ids), rep)
    }

    /// The backend ids of the port's live table at `off`, unique.
    fn live_ids(&self, st: &PortState, off: u32) -> Vec<u32> {
        let Some(t) = st.tables.iter().find(|t| t.off == off) else {
            return Vec::new();
        };
        let mut ids = st.ids_present(&t.backends);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Writes `v` and makes it the port's: `retained` (the ids of a region
    /// held for the window, `v`'s own) replaces what the port retained.
    fn stable_put(
        &mut self,
        st: &mut PortState,
        name: &str,
        v: xlb_svc_stable,
        retained: Option<Vec<u32>>,
        rep: &mut SyncReport,
    ) -> bool {
        if let Err(e) = self.maps.put_svc_stable(st.svc_id, &v) {
            rep.failed.push((name.to_string(), e.to_string()));
            return false;
        }
        rep.writes += 1;
        let old = st.stable.take();
        let keep_old = old
            .as_ref()
            .is_some_and(|o| o.retained.is_some() && o.off == v.table_off && retained.is_some());
        if let Some(o) = &old {
            self.st.deadlines.remove(&(o.window_end, st.svc_id));
        }
        if !keep_old {
            if let Some(o) = old {
                self.release_retained(st, &o, rep);
            }
            if retained.is_some() {
                // The live table becomes the held one.
                if let Some(t) = st.tables.iter_mut().find(|t| t.off == v.table_off) {
                    t.held = true;
                }
                self.st
                    .hold(retained.as_deref().unwrap_or_default(), v.table_size);
            }
        }
        if v.window_end != 0 {
            self.st.deadlines.insert((v.window_end, st.svc_id));
        }
        st.stable = Some(Stable {
            off: v.table_off,
            size: v.table_size,
            window_end: v.window_end,
            retained,
        });
        true
    }

    /// Zeroes the port's entry and gives back what it retained. `false`:
    /// the write failed (kept, retried with the port).
    pub(super) fn stable_clear(
        &mut self,
        st: &mut PortState,
        name: &str,
        rep: &mut SyncReport,
    ) -> bool {
        let Some(s) = st.stable.clone() else {
            return true;
        };
        if self.st.on {
            if let Err(e) = self
                .maps
                .put_svc_stable(st.svc_id, &xlb_svc_stable::default())
            {
                rep.failed.push((name.to_string(), e.to_string()));
                return false;
            }
            rep.writes += 1;
        }
        self.st.deadlines.remove(&(s.window_end, st.svc_id));
        self.release_retained(st, &s, rep);
        st.stable = None;
        true
    }

    /// Gives back a region `s` retained: still a live table of the port
    /// (a frontend whose switch failed points at it): no longer held; else
    /// freed. Its ids leave quarantine once no retained region names them.
    fn release_retained(&mut self, st: &mut PortState, s: &Stable, rep: &mut SyncReport) {
        let Some(ids) = &s.retained else {
            return;
        };
        if let Some(t) = st.tables.iter_mut().find(|t| t.off == s.off) {
            t.held = false;
        } else {
            self.regions.free(s.off, s.size);
            rep.regions_freed += 1;
        }
        self.st.retained_slots = self.st.retained_slots.saturating_sub(u64::from(s.size));
        for id in ids {
            let Some(n) = self.st.ids.get_mut(id) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                self.st.ids.remove(id);
                if self.st.quarantined.remove(id) {
                    self.free_be.insert(*id);
                }
            }
        }
    }

    /// After a port's switches and frees: an entry that names neither the
    /// live table nor a held region (a switch that failed part-way, every
    /// IPv4 frontend gone to another port) is zeroed: every flow to ct
    /// until the port's next first programming.
    pub(super) fn stable_settle(&mut self, st: &mut PortState, name: &str, rep: &mut SyncReport) {
        let stale = st
            .stable
            .as_ref()
            .is_some_and(|s| s.retained.is_none() && live_region(st) != Some((s.off, s.size)));
        if stale {
            self.stable_clear(st, name, rep);
        }
    }

    /// At adopt, after the frontends and their tables: each port's
    /// `svc_stable` entry as it is. A region an open window names (or one
    /// whose end is within the margin) that is not the live table is held
    /// (pushed to `used`) with its ids; entries of svc_ids without a port
    /// are zeroed at the first apply. Nothing is written here.
    pub(super) fn adopt_stable(&mut self, used: &mut Vec<(u32, u32)>) -> crate::sync::Result<()> {
        if !self.st.on {
            return Ok(());
        }
        let now = self.st.clock.now();
        let by_id: HashMap<u32, String> = self
            .ports
            .iter()
            .map(|(n, p)| (p.svc_id, n.clone()))
            .collect();
        let cap = u64::from(self.maps.maglev_capacity());
        for (svc_id, v) in self.maps.svc_stables()? {
            let Some(st) = by_id.get(&svc_id).and_then(|n| self.ports.get_mut(n)) else {
                self.st.stray.push(svc_id);
                continue;
            };
            let fits = v.table_size > 0 && u64::from(v.table_off) + u64::from(v.table_size) <= cap;
            if !fits {
                self.st.stray.push(svc_id);
                continue;
            }
            let live = live_region(st) == Some((v.table_off, v.table_size));
            let open = now <= v.window_end.saturating_add(MARGIN_NS);
            let mut retained = None;
            if !live && open {
                if let Ok(mut ids) = self.maps.read_maglev(v.table_off, v.table_size) {
                    ids.sort_unstable();
                    ids.dedup();
                    if let Some(t) = st.tables.iter_mut().find(|t| t.off == v.table_off) {
                        t.held = true;
                    }
                    used.push((v.table_off, v.table_size));
                    self.st.hold(&ids, v.table_size);
                    retained = Some(ids);
                }
            }
            // A window to end (or an entry not naming the live table, whose
            // window is over): the first apply or tick puts it right.
            if v.window_end != 0 || !live {
                self.st.deadlines.insert((v.window_end, svc_id));
            }
            st.stable = Some(Stable {
                off: v.table_off,
                size: v.table_size,
                window_end: v.window_end,
                retained,
            });
        }
        Ok(())
    }

    /// First apply after adopt: entries of svc_ids no port had are zeroed
    /// (no services entry names those ids).
    pub(super) fn zero_stray_stable(&mut self, rep: &mut SyncReport) {
        for svc_id in std::mem::take(&mut self.st.stray) {
            match self.maps.put_svc_stable(svc_id, &xlb_svc_stable::default()) {
                Ok(()) => rep.writes += 1,
                Err(e) => rep
                    .failed
                    .push(("stale svc_stable entry".into(), e.to_string())),
            }
        }
    }

    /// When the next window ends (CLOCK_MONOTONIC ns of the clock in
    /// [`crate::sync::SyncOptions`]): call [`Syncer::tick`] then.
    /// `None` until the first apply after adopt (nothing is written before).
    pub fn next_window_end(&self) -> Option<u64> {
        if self.adopting {
            return None;
        }
        self.st
            .deadlines
            .first()
            .map(|(end, _)| end.saturating_add(MARGIN_NS + 1))
    }

    /// Ends the windows that are over: each such entry names its port's live
    /// table again (window closed), then the region it held is freed.
    pub fn tick(&mut self) -> SyncReport {
        let mut rep = SyncReport::default();
        if self.adopting {
            return rep; // the first apply ends them
        }
        self.end_windows(&mut rep);
        for (what, why) in &rep.failed {
            tracing::warn!(what = %what, "stable tables: {why}");
        }
        rep
    }

    pub(super) fn end_windows(&mut self, rep: &mut SyncReport) {
        let Some(&(first, _)) = self.st.deadlines.first() else {
            return;
        };
        let now = self.st.clock.now();
        if now <= first.saturating_add(MARGIN_NS) {
            return;
        }
        let mut retry = Vec::new();
        while let Some(&(end, svc_id)) = self.st.deadlines.first() {
            if now <= end.saturating_add(MARGIN_NS) {
                break;
            }
            self.st.deadlines.pop_first();
            let Some(name) = self.names.get(&svc_id).cloned() else {
                continue;
            };
            let Some(mut st) = self.ports.remove(&name) else {
                continue;
            };
            if st.stable.as_ref().map(|s| s.window_end) == Some(end) {
                let ok = match live_region(&st) {
                    Some((off, size)) => {
                        self.stable_put(&mut st, &name, entry(off, size, 0), None, rep)
                    }
                    None => self.stable_clear(&mut st, &name, rep),
                };
                if !ok {
                    // Again a margin later (the entry names the same table).
                    if let Some(s) = &mut st.stable {
                        s.window_end = now;
                    }
                    retry.push((now, svc_id));
                }
            }
            self.ports.insert(name, st);
        }
        self.st.deadlines.extend(retry);
    }
}
