//! Backend ids: one per (Service port, endpoint address), reference counted
//! by the tables naming it and by its port's listing. The last reference
//! gone, the slot is deactivated and its generation bumped, so the flows of
//! that Service port to it are re-chosen (TCP at once, UDP at its next
//! datagram), whatever other Services still use the address.

use std::net::SocketAddrV4;

use xlb_bpf::consts::{
    XLB_BE_F_ACTIVE, XLB_BE_F_DRAINING, XLB_BE_F_HOST_NETWORK, XLB_BE_F_TERMINATING,
};
use xlb_bpf::types::xlb_backend;

use super::{same_backend, BeState, MapOps, PortState, SyncReport, Syncer};
use crate::model::Backend;

/// The `backends` value of `b` at `generation`.
pub(super) fn backend_val(b: &Backend, generation: u32) -> xlb_backend {
    let mut v = xlb_backend::new(b.addr, b.node, generation);
    for (on, flag) in [
        (b.terminating, XLB_BE_F_TERMINATING),
        (b.draining, XLB_BE_F_DRAINING),
        (b.host_network, XLB_BE_F_HOST_NETWORK),
    ] {
        if on {
            v.flags |= flag as u8;
        }
    }
    v
}

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
                let want = backend_val(b, be.val.generation);
                if !same_backend(&want, &be.val) {
                    match self.maps.put_backend(be.id, &want) {
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
        let gone: Vec<SocketAddrV4> = st
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
            let want = backend_val(b, old.generation);
            if !same_backend(&want, &old) {
                if let Err(e) = self.maps.put_backend(id, &want) {
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
        if let Err(e) = self.maps.put_backend(id, &val) {
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

    fn take_orphan(&mut self, addr: SocketAddrV4) -> Option<(u32, xlb_backend)> {
        let list = self.orphans.get_mut(&addr)?;
        let o = list.pop();
        if list.is_empty() {
            self.orphans.remove(&addr);
        }
        o
    }

    pub(super) fn release_all(
        &mut self,
        svc_id: u32,
        addrs: &[SocketAddrV4],
        rep: &mut SyncReport,
    ) {
        for a in addrs {
            self.release(svc_id, *a, rep);
        }
    }

    /// Drops one ref; the last one deactivates the slot and bumps its generation.
    pub(super) fn release(&mut self, svc_id: u32, addr: SocketAddrV4, rep: &mut SyncReport) {
        let Some(be) = self.backends.get_mut(&(svc_id, addr)) else {
            return;
        };
        be.refs = be.refs.saturating_sub(1);
        if be.refs > 0 {
            return;
        }
        let id = be.id;
        let mut dead = be.val;
        self.retire(id, &mut dead, rep);
        self.backends.remove(&(svc_id, addr));
    }

    pub(super) fn retire(&mut self, id: u32, dead: &mut xlb_backend, rep: &mut SyncReport) {
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
}
