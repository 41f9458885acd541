//! Backend ids: one per (Service port, endpoint address), reference counted
//! by the tables naming it and by its port's listing. The last reference
//! gone, the slot is deactivated and its generation bumped, so the flows of
//! that Service port to it are re-chosen (TCP at once, UDP at its next
//! datagram), whatever other Services still use the same address.
//!
//! A port keeps its ids in [`PortState::bes`], sorted by address (the
//! address is the one in the slot's value): the model hands over a port's
//! backends and a frontend's table backends sorted by address too, so
//! listing, referencing and naming them are merge-joins, with no hashing and
//! no per-backend allocation.

use std::net::SocketAddr;

use super::family::backend_val;
use super::{BeState, BeVal, MapOps, PortState, SyncReport, Syncer};
use crate::model::Backend;

/// `id` of a [`BeState`] released to zero references, to be dropped from
/// its port's list (id 0 is never handed out).
const DEAD: u32 = 0;

/// Index of `a` in `bes` (sorted by address), searching from `from` on when
/// `a` is not before the entry at `from - 1` (ascending lookups cost a short
/// search each), else in the whole list.
fn find(bes: &[BeState], from: usize, a: &SocketAddr) -> Option<usize> {
    // A table names most of its port's backends: the next one is usually it.
    if bes.get(from).is_some_and(|b| b.addr() == *a) {
        return Some(from);
    }
    let from = if from > 0 && from <= bes.len() && bes[from - 1].addr() < *a {
        from
    } else {
        0
    };
    let i = from + bes[from..].partition_point(|b| b.addr() < *a);
    (i < bes.len() && bes[i].addr() == *a).then_some(i)
}

impl PortState {
    /// The id of the port's backend `a`.
    pub(super) fn backend_id(&self, a: &SocketAddr) -> Option<u32> {
        find(&self.bes, 0, a).map(|i| self.bes[i].id)
    }

    /// The ids of those of `addrs` (sorted by address, as a table's
    /// backends) that have one, in their order.
    pub(super) fn ids_present(&self, addrs: &[SocketAddr]) -> Vec<u32> {
        let mut at = 0;
        addrs
            .iter()
            .filter_map(|a| {
                let i = find(&self.bes, at, a)?;
                at = i + 1;
                Some(self.bes[i].id)
            })
            .collect()
    }

    /// The ids of `addrs` (sorted by address, as a table's backends), in
    /// their order; `None` when one has none.
    pub(super) fn ids_of(&self, addrs: &[SocketAddr]) -> Option<Vec<u32>> {
        let mut at = 0;
        addrs
            .iter()
            .map(|a| {
                let i = find(&self.bes, at, a)?;
                at = i + 1;
                Some(self.bes[i].id)
            })
            .collect()
    }
}

impl<M: MapOps> Syncer<M> {
    /// Step 1 of a port update: every backend it lists gets (or keeps) its
    /// id and the port's reference; values of existing ones are refreshed in
    /// place at the same generation (a terminating or draining endpoint
    /// keeps its flows). When an id cannot be had (map full), the ones taken
    /// here are given back: the port keeps what it had and is retried.
    /// `backends` is sorted by address and unique, as
    /// [`crate::model::ServicePort::backends`].
    pub(super) fn list_backends(
        &mut self,
        st: &mut PortState,
        name: &str,
        backends: &[Backend],
        rep: &mut SyncReport,
    ) {
        debug_assert!(backends.windows(2).all(|w| w[0].addr < w[1].addr));
        let old = std::mem::take(&mut st.bes);
        let mut out: Vec<BeState> = Vec::with_capacity(old.len().max(backends.len()) + 1);
        // Entries of `out` that took the port's reference here.
        let mut taken: Vec<usize> = Vec::new();
        let mut old = old.into_iter().peekable();
        let mut failed = false;
        for b in backends {
            while let Some(o) = old.next_if(|o| o.addr() < b.addr) {
                out.push(o);
            }
            match old.next_if(|o| o.addr() == b.addr) {
                Some(mut be) if be.listed => {
                    let want = backend_val(b, be.val.generation());
                    if !want.same(&be.val) {
                        match want.put(&mut self.maps, be.id) {
                            Ok(()) => {
                                rep.writes += 1;
                                be.val = want;
                            }
                            Err(e) => rep.failed.push((name.to_string(), e.to_string())),
                        }
                    }
                    out.push(be);
                }
                Some(mut be) => {
                    be.refs += 1;
                    be.listed = true;
                    taken.push(out.len());
                    out.push(be);
                }
                None => match self.acquire(b, rep) {
                    Ok(be) => {
                        taken.push(out.len());
                        out.push(be);
                    }
                    Err(e) => {
                        rep.failed.push((name.to_string(), e));
                        failed = true;
                        break;
                    }
                },
            }
        }
        out.extend(old);
        if failed {
            for i in taken {
                out[i].listed = false;
                self.release_at(&mut out[i], rep);
            }
            out.retain(|b| b.id != DEAD);
        }
        st.bes = out;
    }

    /// Step 8 of a port update: the port's reference on the backends it no
    /// longer lists (`keep`: the ones it still does, sorted by address and
    /// unique, as [`crate::model::ServicePort::backends`]) is dropped.
    pub(super) fn unlist_backends(
        &mut self,
        st: &mut PortState,
        keep: &[Backend],
        rep: &mut SyncReport,
    ) {
        debug_assert!(keep.windows(2).all(|w| w[0].addr < w[1].addr));
        let mut k = keep.iter().peekable();
        let mut any = false;
        for be in st.bes.iter_mut() {
            let a = be.addr();
            while k.next_if(|b| b.addr < a).is_some() {}
            let kept = k.next_if(|b| b.addr == a).is_some();
            if be.listed && !kept {
                be.listed = false;
                self.release_at(be, rep);
                any |= be.id == DEAD;
            }
        }
        if any {
            st.bes.retain(|b| b.id != DEAD);
        }
    }

    /// A new id for `b` with the port's reference: an adopted orphan of the
    /// same address (same id and generation), or a new id at a bumped
    /// generation.
    fn acquire(&mut self, b: &Backend, rep: &mut SyncReport) -> Result<BeState, String> {
        if let Some((id, old)) = self.take_orphan(b.addr) {
            let want = backend_val(b, old.generation());
            if !want.same(&old) {
                if let Err(e) = want.put(&mut self.maps, id) {
                    self.orphans.entry(b.addr).or_default().push((id, old));
                    return Err(e.to_string());
                }
                rep.writes += 1;
            }
            return Ok(BeState {
                id,
                refs: 1,
                listed: true,
                val: want,
            });
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
        if let Err(e) = val.put(&mut self.maps, id) {
            self.free_be.insert(id);
            return Err(e.to_string());
        }
        self.gens[id as usize] = generation;
        rep.writes += 1;
        rep.backends_added += 1;
        Ok(BeState {
            id,
            refs: 1,
            listed: true,
            val,
        })
    }

    fn take_orphan(&mut self, addr: SocketAddr) -> Option<(u32, BeVal)> {
        let list = self.orphans.get_mut(&addr)?;
        let o = list.pop();
        if list.is_empty() {
            self.orphans.remove(&addr);
        }
        o
    }

    /// One more reference on each of the port's backends `addrs` (sorted by
    /// address, as a table's); `Err` with the first that has no id, nothing
    /// taken.
    pub(super) fn ref_all(st: &mut PortState, addrs: &[SocketAddr]) -> Result<(), SocketAddr> {
        let mut at = Vec::with_capacity(addrs.len());
        let mut from = 0;
        for a in addrs {
            let Some(i) = find(&st.bes, from, a) else {
                return Err(*a);
            };
            at.push(i);
            from = i + 1;
        }
        for i in at {
            st.bes[i].refs += 1;
        }
        Ok(())
    }

    /// Drops one reference on each of the port's backends `addrs`.
    pub(super) fn release_all(
        &mut self,
        st: &mut PortState,
        addrs: &[SocketAddr],
        rep: &mut SyncReport,
    ) {
        let mut from = 0;
        let mut any = false;
        for a in addrs {
            let Some(i) = find(&st.bes, from, a) else {
                continue;
            };
            from = i + 1;
            self.release_at(&mut st.bes[i], rep);
            any |= st.bes[i].id == DEAD;
        }
        if any {
            st.bes.retain(|b| b.id != DEAD);
        }
    }

    /// Drops one ref; the last one deactivates the slot, bumps its
    /// generation and marks the entry [`DEAD`] (its owner drops it).
    fn release_at(&mut self, be: &mut BeState, rep: &mut SyncReport) {
        if be.id == DEAD {
            return;
        }
        be.refs = be.refs.saturating_sub(1);
        if be.refs > 0 {
            return;
        }
        self.retire(be.id, be.val, rep);
        be.id = DEAD;
    }

    /// Deactivates id `id` (holding `dead`) at a bumped generation, in its
    /// family's array.
    pub(super) fn retire(&mut self, id: u32, dead: BeVal, rep: &mut SyncReport) {
        let dead = dead.retired(self.gens[id as usize].wrapping_add(1));
        match dead.put(&mut self.maps, id) {
            Ok(()) => {
                self.gens[id as usize] = dead.generation();
                // Named by a stable table: reused once its window ended.
                if !self.st.quarantine(id) {
                    self.free_be.insert(id);
                }
                rep.writes += 1;
                rep.backends_removed += 1;
            }
            // The id stays out of the free list: never reused while it may
            // still read as active.
            Err(e) => rep.failed.push((format!("backend id {id}"), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_backend_ids() {
        // docs/perf.md counts 56 bytes per backend id.
        assert!(std::mem::size_of::<BeState>() <= 56);
    }

    #[test]
    fn find_from_a_hint() {
        use crate::model::Backend;
        let addrs: Vec<SocketAddr> = (1..=9)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect();
        let bes: Vec<BeState> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| BeState {
                id: i as u32 + 1,
                refs: 1,
                listed: true,
                val: super::backend_val(
                    &Backend {
                        addr: *a,
                        node: None,
                        terminating: false,
                        draining: false,
                        host_network: false,
                    },
                    1,
                ),
            })
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            // any hint: before, at, after the entry, past the end
            for from in [0, i, i + 1, 5, 9, 20] {
                assert_eq!(find(&bes, from, a), Some(i), "{a} from {from}");
            }
        }
        let missing: SocketAddr = "10.0.0.5:81".parse().unwrap();
        for from in [0, 4, 5, 9] {
            assert_eq!(find(&bes, from, &missing), None);
        }
        // ids_present: the ids of the listed addresses that have one, in
        // their order (sorted or not), the others skipped
        let st = PortState {
            bes,
            ..Default::default()
        };
        let some = [addrs[1], missing, addrs[4], addrs[8]];
        assert_eq!(st.ids_present(&some), vec![2, 5, 9]);
        let unsorted = [addrs[7], addrs[2], missing, addrs[3]];
        assert_eq!(st.ids_present(&unsorted), vec![8, 3, 4]);
        assert_eq!(st.ids_present(&addrs), (1..=9).collect::<Vec<u32>>());
    }
}
