//! Maglev tables built ahead, in parallel, for a batch of changed Services
//! (a full sync, a relist): a table's content as indexes into its backend
//! list depends on nothing but that list and its size, so it can be built
//! on any thread before the ordered, single-threaded writes of
//! [`Syncer::apply`] name it. Batches are small, so the tables held at once
//! stay a few MiB.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{MapOps, Syncer};
use crate::model::ServiceDesired;

/// Services per batch, at most.
const BATCH: usize = 64;
/// Slots of the tables built ahead at once, at most (4 MiB of tables): a
/// batch ends at the Service that reaches it.
const BATCH_SLOTS: u64 = 1 << 20;

/// A table to build: its backends (the frontend's own list, whose address
/// names it while the desired state is borrowed) and its size.
type Job<'a> = (&'a [SocketAddr], u32);

/// Where a table's backends live: the key of [`Syncer::prebuilt`].
pub(super) fn job_key(backends: &[SocketAddr], size: u32) -> (usize, usize, u32) {
    (backends.as_ptr() as usize, backends.len(), size)
}

impl<M: MapOps> Syncer<M> {
    /// Takes the next batch off the front of `changed` (at least one
    /// Service; at most [`BATCH`], ending at the one whose tables reach
    /// [`BATCH_SLOTS`]), builds the tables its ports will need and do not
    /// hold yet on up to [`std::thread::available_parallelism`] threads
    /// (nothing when one thread would do: fewer than two tables, one CPU),
    /// and returns the batch's length.
    pub(super) fn prebuild(&mut self, changed: &[(String, Option<Arc<ServiceDesired>>)]) -> usize {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads < 2 {
            return changed.len().min(BATCH);
        }
        let mut seen = HashSet::new();
        let mut jobs: Vec<Job<'_>> = Vec::new();
        let mut slots = 0u64;
        let mut len = 0;
        for (_, new) in changed.iter().take(BATCH) {
            if slots >= BATCH_SLOTS {
                break;
            }
            len += 1;
            for p in new.iter().flat_map(|s| s.ports.iter()) {
                let held = self.ports.get(&p.name);
                for f in p.frontends.iter().filter(|f| f.table_size > 0) {
                    let backends = &f.backends[..];
                    // the port keeps a table it holds (see reusable_table)
                    let reusable = held.is_some_and(|st| {
                        st.tables.iter().any(|t| {
                            t.size == f.table_size
                                && t.backends == backends
                                && t.adopted_hash.is_none()
                        })
                    });
                    if !reusable && seen.insert((backends, f.table_size)) {
                        jobs.push((backends, f.table_size));
                        slots += u64::from(f.table_size);
                    }
                }
            }
        }
        if jobs.len() < 2 {
            return len;
        }
        let next = AtomicUsize::new(0);
        let built: Vec<Vec<(usize, Vec<u32>)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.min(jobs.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((backends, size)) = jobs.get(i) else {
                                break;
                            };
                            out.push((i, crate::maglev::table(backends, *size)));
                        }
                        out
                    })
                })
                .collect();
            // A worker that panicked leaves its tables to be built in line.
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_default())
                .collect()
        });
        for (i, t) in built.into_iter().flatten() {
            let (backends, size) = jobs[i];
            self.prebuilt.insert(job_key(backends, size), t);
        }
        len
    }

    /// The table of `backends` (indexes into it) at `size`: prebuilt, or
    /// built now.
    pub(super) fn index_table(&mut self, backends: &[SocketAddr], size: u32) -> Vec<u32> {
        match self.prebuilt.remove(&job_key(backends, size)) {
            Some(t) => t,
            None => crate::maglev::table(backends, size),
        }
    }
}
