//! Maglev tables built ahead, in parallel, for batches of changed Services
//! (a full sync, a relist): a table's content as indexes into its backend
//! list depends on nothing but that list and its size, so it can be built
//! on any thread before the ordered, single-threaded writes of
//! [`Syncer::apply`] name it. While the writes of one batch are made, the
//! other CPUs build the next batch's tables (and the writing thread joins
//! them when its writes are done). Batches are small, so the tables held at
//! once (the batch being written and the next) stay a few MiB.

use super::HashSet;
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

/// Threads to build tables on (the CPUs this process may use, at most 8),
/// looked up once: `available_parallelism` reads cgroup files.
fn threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

/// Builds jobs off the shared cursor `next` until none is left.
fn build(jobs: &[Job<'_>], next: &AtomicUsize) -> Vec<(usize, Vec<u32>)> {
    let mut out = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((backends, size)) = jobs.get(i) else {
            break;
        };
        out.push((i, crate::maglev::table(backends, *size)));
    }
    out
}

impl<M: MapOps> Syncer<M> {
    /// Applies `changed` in order ([`Syncer::apply_service`] each), in
    /// batches whose tables are built ahead: the first batch's on every
    /// CPU, each later one's on the other CPUs while the batch before it is
    /// written.
    pub(super) fn apply_batches(
        &mut self,
        changed: &[(String, Option<Arc<ServiceDesired>>)],
        d: &crate::model::Desired,
        rep: &mut super::SyncReport,
    ) {
        let threads = threads();
        let (mut len, mut jobs) = self.plan(changed, threads);
        let mut built = {
            let next = AtomicUsize::new(0);
            std::thread::scope(|s| {
                let workers: Vec<_> = (1..threads.min(jobs.len()))
                    .map(|_| s.spawn(|| build(&jobs, &next)))
                    .collect();
                let mut out = if jobs.len() >= 2 {
                    build(&jobs, &next)
                } else {
                    Vec::new()
                };
                // A worker that panicked leaves its tables to be built in line.
                for w in workers {
                    out.extend(w.join().unwrap_or_default());
                }
                out
            })
        };
        let mut start = 0;
        while start < changed.len() {
            let end = start + len.max(1);
            for (i, t) in built {
                let (backends, size) = jobs[i];
                self.prebuilt.insert(job_key(backends, size), t);
            }
            let (next_len, next_jobs) = self.plan(&changed[end..], threads);
            let next = AtomicUsize::new(0);
            built = std::thread::scope(|s| {
                let workers: Vec<_> = (1..threads.min(next_jobs.len() + 1))
                    .map(|_| s.spawn(|| build(&next_jobs, &next)))
                    .collect();
                for (key, new) in &changed[start..end] {
                    self.apply_service(key, new.clone(), d, rep);
                }
                let mut out = if workers.is_empty() {
                    Vec::new()
                } else {
                    build(&next_jobs, &next)
                };
                for w in workers {
                    out.extend(w.join().unwrap_or_default());
                }
                out
            });
            self.prebuilt.clear();
            (len, jobs) = (next_len, next_jobs);
            start = end;
        }
    }

    /// The next batch off the front of `changed` (at least one Service when
    /// there is one; at most [`BATCH`], ending at the one whose tables reach
    /// [`BATCH_SLOTS`]) and the tables its ports will need and do not hold
    /// yet; no tables with one thread.
    fn plan<'a>(
        &self,
        changed: &'a [(String, Option<Arc<ServiceDesired>>)],
        threads: usize,
    ) -> (usize, Vec<Job<'a>>) {
        if threads < 2 {
            return (changed.len().min(BATCH), Vec::new());
        }
        let mut seen = HashSet::default();
        let mut jobs: Vec<Job<'a>> = Vec::new();
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
        (len, jobs)
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
