//! Per-flow state: connection tracking (`ct`, with `ct_epoch` voiding the
//! XDP flow cache's copies) and session affinity (`affinity`).

use super::access::{del, entries, get, put};
use super::{Maps, Result};
use crate::types::*;

impl Maps {
    pub fn ct_entry(&self, k: &xlb_ct_key) -> Result<Option<xlb_ct_val>> {
        get(&self.ct, "ct", k)
    }
    /// Writes a ct entry, then voids the XDP flow cache's copies (`ct_epoch`).
    pub fn put_ct(&self, k: &xlb_ct_key, v: &xlb_ct_val) -> Result<()> {
        put(&self.ct, "ct", k, v)?;
        self.bump_ct_epoch()
    }
    /// Deletes a ct entry, then voids the XDP flow cache's copies.
    pub fn delete_ct(&self, k: &xlb_ct_key) -> Result<bool> {
        let gone = del(&self.ct, "ct", k)?;
        self.bump_ct_epoch()?;
        Ok(gone)
    }
    /// Adds 1 << 32 to `ct_epoch` (the data plane adds 1): whatever the data
    /// plane did meanwhile, the value written was never seen before.
    pub(super) fn bump_ct_epoch(&self) -> Result<()> {
        let Some(h) = &self.ct_epoch else {
            return Ok(());
        };
        let old: u64 = get(h, "ct_epoch", &0u32)?.unwrap_or(0);
        put(h, "ct_epoch", &0u32, &old.wrapping_add(1 << 32))
    }
    pub fn ct(&self) -> Result<Vec<(xlb_ct_key, xlb_ct_val)>> {
        entries(&self.ct, "ct")
    }

    pub fn affinity_entry(&self, k: &xlb_affinity_key) -> Result<Option<xlb_affinity_val>> {
        get(&self.affinity, "affinity", k)
    }
    pub fn put_affinity(&self, k: &xlb_affinity_key, v: &xlb_affinity_val) -> Result<()> {
        put(&self.affinity, "affinity", k, v)
    }
    pub fn delete_affinity(&self, k: &xlb_affinity_key) -> Result<bool> {
        del(&self.affinity, "affinity", k)
    }
    pub fn affinities(&self) -> Result<Vec<(xlb_affinity_key, xlb_affinity_val)>> {
        entries(&self.affinity, "affinity")
    }
}
