//! # Sync: desired state -> maps
//!
//! [`Syncer`] owns the maps the agent writes (`services`, `backends`,
//! `maglev`, `src_ranges`, `tunnel`, `local_addrs`) through [`MapOps`],
//! implemented for the real maps ([`xlb_bpf::Maps`]) and for an in-memory fake
//! ([`fake::FakeMaps`], which also records every write for ordering tests).
//!
//! ## Order
//! Per Service port, in an order that never lets a packet see missing data:
//! 1. backends: every endpoint the port lists gets its id (new ids written,
//!    ACTIVE) before any table names it; existing ones are rewritten in place
//!    at the same generation when their flags change (terminating,
//!    draining: the flows that use them keep them);
//! 2. each frontend group's Maglev table into a *free* region of the `maglev`
//!    slot array (frontends of a port with the same backend set share one);
//!    then `svc_stable` (stateless flows, docs/ctl.md): an eligible
//!    port's entry names its new table (window closed) before its first
//!    switch, or, at a table change, the table in force (window open for
//!    `ct_udp` or `ct_tcp_established`; the region held); a port turning ineligible is zeroed;
//! 3. source ranges to add;
//! 4. one `services` update per frontend switches it to the new region (one
//!    map update = one atomic switch);
//! 5. removed frontends' `services` entries deleted;
//! 6. source ranges to remove;
//! 7. regions no frontend points at any more freed (reusable), except a
//!    region `svc_stable` holds (freed when its window ends, [`Syncer::tick`]);
//! 8. backends neither a region nor the port's list names any more: ACTIVE
//!    cleared and the generation bumped (connection-tracking entries pointing
//!    at them are re-chosen: TCP at once, UDP at the next datagram); an id
//!    a held region names is not reused until that region is freed.
//!
//! A deleted port's `svc_stable` entry is zeroed after its `services`
//! entries are gone.
//!
//! ## Ids
//! svc_id is stable per Service port name (`"ns/name:port/PROTO"`) while the
//! port exists (and across restarts through the names file); a backend id
//! belongs to one Service port and one `addr:port`, stable while the port
//! lists the endpoint (so an endpoint leaving one Service retires that
//! Service's id only, whatever other Services still use the address). Id 0
//! of `backends` is never used (an unwritten Maglev slot reads 0 and finds
//! an inactive backend).
//!
//! ## Restart
//! [`Syncer::adopt`] reads what the maps hold (frontends, their regions and
//! table contents, backend slots and generations, source ranges, tunnels,
//! local addresses) without writing anything; an active backend no table
//! names (a draining one) is taken over by the first port that lists its
//! address, at the same id and generation; the first [`Syncer::apply`]
//! keeps every entry that is already right (same ids, same regions) and
//! removes the stale rest. Call it only with a complete desired state (after
//! the sources' first full sync).
//!
//! ## Failures
//! A full map (services, backends, maglev region, svc_id space) fails that
//! Service port only: its frontends keep what they had (or are not created),
//! nothing half-written is ever pointed at, and the failure is counted in
//! [`SyncReport::failed`] with the reason; the other ports go on.

use std::path::PathBuf;
use std::sync::Arc;

pub mod fake;
mod ops;
mod regions;
mod syncer;

pub use fake::FakeMaps;
pub use ops::MapOps;
pub use regions::Regions;
pub use syncer::Syncer;

/// Errors of sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Map(#[from] xlb_bpf::Error),
    #[error("{what} is full ({max})")]
    Full { what: &'static str, max: u32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What one [`Syncer::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Service ports (re)programmed.
    pub ports_changed: usize,
    /// Service ports removed.
    pub ports_removed: usize,
    /// Map writes (updates + deletes, a Maglev region write counts once).
    pub writes: usize,
    /// `services` entries written / deleted.
    pub frontends_written: usize,
    pub frontends_deleted: usize,
    /// Backend ids allocated / released (generation bumped).
    pub backends_added: usize,
    pub backends_removed: usize,
    /// Maglev regions written / freed, and slots written.
    pub regions_written: usize,
    pub regions_freed: usize,
    pub slots_written: usize,
    /// `(Service port or object, error)` for what could not be applied.
    pub failed: Vec<(String, String)>,
}

/// Options of a [`Syncer`].
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// Where svc_id -> name is persisted (and read back on adopt); `None`:
    /// not persisted. See [`crate::names`].
    pub names_file: Option<PathBuf>,
    /// The data plane's UDP ct timeout in seconds (`config.ct_udp`; 0: the
    /// default `XLB_CT_UDP_S`): the length of a stable-table window.
    pub ct_udp: u32,
    /// The data plane's established-TCP ct timeout in seconds
    /// (`config.ct_tcp_established`; 0: `XLB_CT_TCP_ESTABLISHED_S`): the
    /// length of a TCP port's window.
    pub ct_tcp_established: u32,
    /// The clock of `svc_stable` windows (CLOCK_MONOTONIC ns; tests drive
    /// their own).
    pub clock: Clock,
}

/// A CLOCK_MONOTONIC-ns clock: the real one, or a test's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// A clock reading `f`.
    pub fn new(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
    /// Now, in ns.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    /// CLOCK_MONOTONIC, the data plane's.
    fn default() -> Self {
        Self::new(xlb_bpf::maps::monotonic_ns)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Occupancy of the agent-owned maps, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub frontends: usize,
    pub backends: usize,
    pub backend_capacity: u32,
    pub maglev_used: u64,
    pub maglev_capacity: u32,
    pub svc_ids: usize,
    pub tunnels: usize,
}
