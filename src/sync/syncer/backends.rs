//! Backend ids: one per (Service port, endpoint address), reference counted
//! by the tables naming it and by its port's listing. The last reference
//! gone, the slot is deactivated and its generation bumped, so the flows of
//! that Service port to it are re-chosen (TCP at once, UDP at its next
//! datagram), whatever other Services still use the address.

use std::net::SocketAddr;

use super::family::backend_val;
use super::{BeState, BeVal, MapOps, PortState, SyncReport, Syncer};
use crate::model::Backend;

impl<M: MapOps> Syncer<M> {
    /// Step 1 of a port update: every backend it lists gets (or keeps) its
    /// id and the port's reference; values of existing ones are refreshed in
    /// place at the same generation (a terminating or draining endpoint
    /// keeps its flows). When an id cannot be had (map full), the ones taken
    /// here are given back: the port keeps what it had and is retried.
    pub(super) fn list_backends(
        &mut self,
        st: &mut PortState,
        name: &str,
        backends: &[Backend],
        rep: &mut SyncReport,
    ) {
        let mut taken = Vec::new();
        for b in backends {
            if st.listed.contains(&b.addr) {
                let be = self.backends.get_mut(&(st.svc_id, b.addr));
                let Some(be) = be else { continue };
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
                continue;
            }
            match self.acquire(st.svc_id, b, rep) {
                Ok(()) => taken.push(b.addr),
                Err(e) => {
                    rep.failed.push((name.to_string(), e));
                    self.release_all(st.svc_id, &taken, rep);
                    return;
                }
            }
        }
        st.listed.extend(taken);
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
        let gone: Vec<SocketAddr> = st
            .listed
            .iter()
            .filter(|a| keep.binary_search_by(|b| b.addr.cmp(a)).is_err())
            .copied()
            .collect();
        for a in gone {
            st.listed.remove(&a);
            self.release(st.svc_id, a, rep);
        }
    }

    /// One more reference on the port's backend `b`: an existing id, an
    /// adopted orphan of the same address (same id and generation), or a
    /// new id at a bumped generation.
    pub(super) fn acquire(
        &mut self,
        svc_id: u32,
        b: &Backend,
        rep: &mut SyncReport,
    ) -> std::result::Result<(), String> {
        if let Some(be) = self.backends.get_mut(&(svc_id, b.addr)) {
            be.refs += 1;
            return Ok(());
        }
        if let Some((id, old)) = self.take_orphan(b.addr) {
            let want = backend_val(b, old.generation());
            if !want.same(&old) {
                if let Err(e) = want.put(&mut self.maps, id) {
                    self.orphans.entry(b.addr).or_default().push((id, old));
                    return Err(e.to_string());
                }
                rep.writes += 1;
            }
            self.backends.insert(
                (svc_id, b.addr),
                BeState {
                    id,
                    refs: 1,
                    val: want,
                },
            );
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
        if let Err(e) = val.put(&mut self.maps, id) {
            self.free_be.insert(id);
            return Err(e.to_string());
        }
        self.gens[id as usize] = generation;
        rep.writes += 1;
        rep.backends_added += 1;
        self.backends
            .insert((svc_id, b.addr), BeState { id, refs: 1, val });
        Ok(())
    }

    fn take_orphan(&mut self, addr: SocketAddr) -> Option<(u32, BeVal)> {
        let list = self.orphans.get_mut(&addr)?;
        let o = list.pop();
        if list.is_empty() {
            self.orphans.remove(&addr);
        }
        o
    }

    pub(super) fn release_all(&mut self, svc_id: u32, addrs: &[SocketAddr], rep: &mut SyncReport) {
        for a in addrs {
            self.release(svc_id, *a, rep);
        }
    }

    /// Drops one ref; the last one deactivates the slot and bumps its generation.
    pub(super) fn release(&mut self, svc_id: u32, addr: SocketAddr, rep: &mut SyncReport) {
        let Some(be) = self.backends.get_mut(&(svc_id, addr)) else {
            return;
        };
        be.refs = be.refs.saturating_sub(1);
        if be.refs > 0 {
            return;
        }
        let (id, dead) = (be.id, be.val);
        self.retire(id, dead, rep);
        self.backends.remove(&(svc_id, addr));
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
