//! Per-backend forward counters (`backend_stats`, a per-CPU array indexed by
//! backend id): the packets and bytes the data plane forwarded to each
//! backend, counted where the forward verdict is final (DNAT and pass, VXLAN
//! to the backend's node, hairpin), on connection-tracking hits, flow-cache
//! hits and new flows alike.
//!
//! An id given to another endpoint (its generation changes in
//! [`Maps::put_backend`]) has its counters reset first, so a reused id never
//! shows the previous endpoint's traffic.

use std::collections::BTreeMap;

use libbpf_rs::{MapCore, MapFlags};

use crate::maps::{from_bytes, Error, Maps, Result};
use crate::types::xlb_counter;

const MAP: &str = "backend_stats";

fn map_err(op: &'static str) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |source| Error::Map {
        op,
        map: MAP,
        source,
    }
}

fn sum(per_cpu: &[Vec<u8>]) -> Result<xlb_counter> {
    let mut s = xlb_counter::default();
    for b in per_cpu {
        let c: xlb_counter = from_bytes(MAP, b)?;
        s.packets += c.packets;
        s.bytes += c.bytes;
    }
    Ok(s)
}

impl Maps {
    /// Whether the pinned data plane has per-backend counters (an older
    /// xlb's has not).
    pub fn has_backend_counters(&self) -> bool {
        self.backend_stats.is_some()
    }

    /// Backend `id`'s forward packets/bytes summed over CPUs; zero when the
    /// map is missing (older pins) or `id` is beyond it.
    pub fn backend_counter(&self, id: u32) -> Result<xlb_counter> {
        let Some(h) = &self.backend_stats else {
            return Ok(xlb_counter::default());
        };
        if id >= h.max_entries() {
            return Ok(xlb_counter::default());
        }
        let per_cpu = h
            .lookup_percpu(&id.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("lookup_percpu"))?
            .unwrap_or_default();
        sum(&per_cpu)
    }

    /// The counters of several backends (ids in ascending order).
    pub fn backend_counters(
        &self,
        ids: impl IntoIterator<Item = u32>,
    ) -> Result<BTreeMap<u32, xlb_counter>> {
        ids.into_iter()
            .map(|id| Ok((id, self.backend_counter(id)?)))
            .collect()
    }

    /// The `backend_stats` map itself (tests write counters through it).
    ///
    /// # Panics
    /// When the pins are of an xlb without it ([`Maps::has_backend_counters`]).
    pub fn backend_stats_handle(&self) -> &libbpf_rs::MapHandle {
        self.backend_stats
            .as_ref()
            .expect("backend_stats: pins of an older xlb")
    }

    /// Zeroes backend `id`'s counters on every CPU.
    pub(crate) fn reset_backend_counter(&self, id: u32) -> Result<()> {
        let Some(h) = &self.backend_stats else {
            return Ok(());
        };
        if id >= h.max_entries() {
            return Ok(());
        }
        let cpus = libbpf_rs::num_possible_cpus().map_err(map_err("num_possible_cpus"))?;
        let zero = vec![vec![0u8; std::mem::size_of::<xlb_counter>()]; cpus];
        h.update_percpu(&id.to_ne_bytes(), &zero, MapFlags::ANY)
            .map_err(map_err("update_percpu"))
    }
}
