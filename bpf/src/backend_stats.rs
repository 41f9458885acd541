//! Per-backend forward counters (`backend_stats`, a per-CPU array indexed by
//! backend id): the packets and bytes the data plane forwarded to each
//! backend, counted where the forward verdict is final (DNAT and pass, VXLAN
//! to the backend's node, hairpin), on connection-tracking hits, flow-cache
//! hits and new flows alike.
//!
//! An id given to another endpoint (its generation changes in
//! [`Maps::put_backend`]) has its counters reset first, so a reused id never
//! shows the previous endpoint's traffic. Ids whose `backends` slot was never
//! written are zeroed ahead, thousands in one batch syscall (a full sync adds
//! one backend after another at fresh ids): the data plane counts only a
//! backend it chose or a flow holds, and both need a slot that was written
//! (active, generation >= 1), so a never-written id zeroed ahead stays zero
//! until its first write.

use std::collections::BTreeMap;
use std::sync::Mutex;

use libbpf_rs::{MapCore, MapFlags};

use crate::maps::{from_bytes, Error, Maps, Result};
use crate::types::xlb_counter;

const MAP: &str = "backend_stats";

/// Never-written ids zeroed in one batch, at most.
const ZERO_AHEAD: u32 = 4096;

/// The ids `[lo, hi)` whose counters were zeroed together while their
/// `backends` slots were blank (never written).
#[derive(Debug, Default)]
pub(crate) struct ZeroedAhead(Mutex<(u32, u32)>);

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

    /// Every backend id's forward packets/bytes summed over CPUs, indexed by
    /// id, read in batches of 4096 ids (one syscall each, not one per id);
    /// empty when the map is missing (older pins).
    pub fn all_backend_counters(&self) -> Result<Vec<xlb_counter>> {
        let Some(h) = &self.backend_stats else {
            return Ok(Vec::new());
        };
        const BATCH: u32 = 4096;
        let max = h.max_entries();
        let cpus = libbpf_rs::num_possible_cpus().map_err(map_err("num_possible_cpus"))?;
        let value = std::mem::size_of::<xlb_counter>().next_multiple_of(8);
        let mut out = vec![xlb_counter::default(); max as usize];
        let mut keys = vec![0u32; BATCH as usize];
        let mut vals = vec![0u8; BATCH as usize * cpus * value];
        let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // The batch token of an array: the next index.
        let (mut in_b, mut out_b) = (0u32, 0u32);
        let mut first = true;
        loop {
            let mut count = BATCH;
            // SAFETY: the buffers hold BATCH keys and per-CPU values of the
            // map's sizes and a key-sized token; `count` says how many fit.
            let rc = unsafe {
                libbpf_rs::libbpf_sys::bpf_map_lookup_batch(
                    std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(h)),
                    if first {
                        std::ptr::null_mut()
                    } else {
                        (&raw mut in_b).cast()
                    },
                    (&raw mut out_b).cast(),
                    keys.as_mut_ptr().cast(),
                    vals.as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            let err = std::io::Error::last_os_error();
            if rc < 0 && err.raw_os_error() != Some(libc::ENOENT) {
                return Err(Error::Map {
                    op: "lookup_batch",
                    map: MAP,
                    source: libbpf_rs::Error::from(err),
                });
            }
            for (i, &id) in keys.iter().take(count as usize).enumerate() {
                let Some(slot) = out.get_mut(id as usize) else {
                    continue;
                };
                for cpu in 0..cpus {
                    let at = (i * cpus + cpu) * value;
                    let c: xlb_counter = from_bytes(MAP, &vals[at..at + value])?;
                    slot.packets += c.packets;
                    slot.bytes += c.bytes;
                }
            }
            if rc < 0 || count == 0 {
                return Ok(out); // ENOENT: that was the last batch
            }
            std::mem::swap(&mut in_b, &mut out_b);
            first = false;
        }
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

    /// Zeroes backend `id`'s counters before its slot gets a new generation
    /// (see the module docs). `blank(i)`: slot `i` of `backends` was never
    /// written. A blank `id` inside the last batch zeroed ahead needs
    /// nothing; another blank one starts a batch: it and the blank ids right
    /// after it, up to [`ZERO_AHEAD`].
    pub(crate) fn reset_for_new_generation(
        &self,
        id: u32,
        blank: impl Fn(u32) -> bool,
    ) -> Result<()> {
        let Some(h) = &self.backend_stats else {
            return Ok(());
        };
        let max = h.max_entries();
        if id >= max {
            return Ok(());
        }
        if !blank(id) {
            return self.reset_backend_counter(id);
        }
        let mut z = self.be_zeroed.0.lock().unwrap_or_else(|e| e.into_inner());
        if (z.0..z.1).contains(&id) {
            return Ok(());
        }
        let mut end = id + 1;
        while end < max && end - id < ZERO_AHEAD && blank(end) {
            end += 1;
        }
        let cpus = libbpf_rs::num_possible_cpus().map_err(map_err("num_possible_cpus"))?;
        let keys: Vec<u8> = (id..end).flat_map(u32::to_ne_bytes).collect();
        // per-CPU values: one (8-byte aligned) value per possible CPU per key
        let value = std::mem::size_of::<xlb_counter>().next_multiple_of(8);
        let values = vec![0u8; (end - id) as usize * cpus * value];
        let mut count = end - id;
        let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: keys holds `count` keys and values `count` per-CPU values
        // of the map's sizes; the kernel reads nothing else.
        let ret = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_update_batch(
                std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(h)),
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        if ret != 0 {
            return Err(Error::Map {
                op: "update_batch",
                map: MAP,
                source: libbpf_rs::Error::from(std::io::Error::last_os_error()),
            });
        }
        *z = (id, end);
        Ok(())
    }
}
