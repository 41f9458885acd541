//! The per-CPU `stats` counters: reasons and Service ports, summed over CPUs.

use libbpf_rs::{MapCore, MapFlags};

use super::access::{check_index, from_bytes, map_err};
use super::{Maps, Result};
use crate::consts::*;
use crate::types::*;

impl Maps {
    fn counter(&self, index: u32) -> Result<xlb_counter> {
        let per_cpu = self
            .stats
            .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("lookup_percpu", "stats"))?
            .unwrap_or_default();
        let mut sum = xlb_counter::default();
        for b in per_cpu {
            let c: xlb_counter = from_bytes("stats", &b)?;
            sum.packets += c.packets;
            sum.bytes += c.bytes;
        }
        Ok(sum)
    }

    /// A reason counter summed over CPUs.
    pub fn reason(&self, r: crate::Reason) -> Result<xlb_counter> {
        self.counter(r.0)
    }

    /// Every reason counter, summed over CPUs.
    pub fn reasons(&self) -> Result<Vec<(crate::Reason, xlb_counter)>> {
        crate::Reason::all()
            .map(|r| Ok((r, self.counter(r.0)?)))
            .collect()
    }

    /// A Service port's packets/bytes summed over CPUs.
    pub fn svc_counter(&self, svc_id: u32) -> Result<xlb_counter> {
        let i = u64::from(XLB_STATS_SVC_BASE) + u64::from(svc_id);
        let i = check_index("stats", &self.stats, i)?;
        self.counter(i)
    }
}
