//! The `services` map (frontends) and the count filters that go with it:
//! a frontend is counted in `fe_filter` before it is inserted and uncounted
//! after it is deleted.

use std::net::Ipv4Addr;

use super::access::{del, entries, get, put, put_flags};
use super::{Error, Maps, Result};
use crate::types::*;
use crate::wire::be32;
use libbpf_rs::MapFlags;

impl Maps {
    pub fn service(&self, k: &xlb_svc_key) -> Result<Option<xlb_svc_val>> {
        get(&self.services, "services", k)
    }
    /// Inserts or replaces a frontend. A new key is counted in `fe_filter`
    /// before it is inserted, so the data plane never skips a Service that
    /// is in the map (a count left by a failed insert is only a wasted lookup).
    pub fn put_service(&self, k: &xlb_svc_key, v: &xlb_svc_val) -> Result<()> {
        let Some(filter) = self.fe_filter.counts()? else {
            return put(&self.services, "services", k, v);
        };
        let slot = crate::wire::fe_slot(k);
        filter.add(slot, 1);
        match put_flags(&self.services, "services", k, v, MapFlags::NO_EXIST) {
            Ok(()) => Ok(()),
            Err(e) => {
                // already there (counted then) or not inserted: take ours back
                filter.add(slot, -1);
                match e {
                    Error::Map { source, .. }
                        if source.kind() == libbpf_rs::ErrorKind::AlreadyExists =>
                    {
                        put(&self.services, "services", k, v)
                    }
                    e => Err(e),
                }
            }
        }
    }
    /// Deletes a frontend (then uncounts it in `fe_filter`).
    pub fn delete_service(&self, k: &xlb_svc_key) -> Result<bool> {
        let gone = del(&self.services, "services", k)?;
        if gone {
            if let Some(filter) = self.fe_filter.counts()? {
                filter.add(crate::wire::fe_slot(k), -1);
            }
        }
        Ok(gone)
    }
    /// Recounts `fe_filter` and `be_filter` from the services and backends
    /// maps where they disagree in the one way that matters: entries present,
    /// filter empty (the pin directory of an xlb without the filters, adopted
    /// by this one). Returns whether it recounted. Call before any program
    /// uses the maps.
    pub fn filters_repair(&self) -> Result<bool> {
        let mut done = false;
        if let Some(f) = self.fe_filter.counts()? {
            if f.is_empty() {
                for (k, _) in &self.services()? {
                    f.add(crate::wire::fe_slot(k), 1);
                    done = true;
                }
            }
        }
        if let Some(f) = self.be_filter.counts()? {
            if f.is_empty() {
                for b in self.backend_slots()? {
                    if b.addr != 0 {
                        f.add(crate::wire::be_slot(b.addr), 1);
                        done = true;
                    }
                }
            }
        }
        Ok(done)
    }
    /// (filter, slots with a count, slots) of `fe_filter` and `be_filter`,
    /// those pinned: the share of frontends / source addresses each cannot
    /// rule out (such frames take the Service / ct lookup), for the metrics.
    pub fn filter_usage(&self) -> Result<Vec<(&'static str, u64, u32)>> {
        let mut out = Vec::new();
        for (name, f) in [
            ("fe_filter", &self.fe_filter),
            ("be_filter", &self.be_filter),
        ] {
            if let Some(c) = f.counts()? {
                let (used, slots) = c.used();
                out.push((name, used, slots));
            }
        }
        Ok(out)
    }
    /// The `fe_filter` count of k's slot (tests); `None` without the filter.
    pub fn fe_filter_count(&self, k: &xlb_svc_key) -> Result<Option<u32>> {
        Ok(self
            .fe_filter
            .counts()?
            .map(|f| f.get(crate::wire::fe_slot(k))))
    }
    /// The `be_filter` count of addr's slot (tests); `None` without the filter.
    pub fn be_filter_count(&self, addr: Ipv4Addr) -> Result<Option<u32>> {
        Ok(self
            .be_filter
            .counts()?
            .map(|f| f.get(crate::wire::be_slot(be32(addr)))))
    }
    pub fn services(&self) -> Result<Vec<(xlb_svc_key, xlb_svc_val)>> {
        entries(&self.services, "services")
    }
}
