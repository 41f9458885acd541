//! The `backends` array and the `maglev` slot array, both written through
//! their memory mappings so a reader never sees half a backend or half a
//! table before the switch that names it.

use std::sync::atomic::Ordering;

use libbpf_rs::{MapCore, MapFlags};

use super::access::{bytes, check_index, from_bytes, get, map_err};
use super::mmap_array::MmapArray;
use super::{Maps, Result};
use crate::types::*;

impl Maps {
    pub fn backend(&self, id: u32) -> Result<Option<xlb_backend>> {
        let id = check_index("backends", &self.backends, id.into())?;
        get(&self.backends, "backends", &id)
    }
    /// Writes backend `id` through the memory-mapped array: one aligned
    /// 32-bit store per word, then a release fence, so the backend is
    /// complete before a table names it. (The update syscall on an array is
    /// no more atomic for a concurrent reader than this.)
    ///
    /// `be_filter` counts the new address before the write and uncounts the
    /// one it replaces after, so the data plane never takes a backend's
    /// address for no backend's.
    pub fn put_backend(&self, id: u32, v: &xlb_backend) -> Result<()> {
        let id = check_index("backends", &self.backends, id.into())?;
        let mem = MmapArray::lazy(
            &self.backends_mem,
            &self.backends,
            "backends",
            std::mem::size_of::<xlb_backend>(),
        )?;
        // `addr` is the first word of xlb_backend
        let old_addr = mem.word(id, 0).load(Ordering::Relaxed);
        // The generation is the last word: a new one names another endpoint
        // (or none), whose counters start from zero.
        let old_gen = mem.word(id, 3).load(Ordering::Relaxed);
        if old_gen != v.generation {
            let words = std::mem::size_of::<xlb_backend>() / 4;
            let blank = |i: u32| (0..words).all(|w| mem.word(i, w).load(Ordering::Relaxed) == 0);
            self.reset_for_new_generation(id, blank)?;
        }
        let filter = self.be_filter.counts()?.filter(|_| old_addr != v.addr);
        if let Some(f) = filter.filter(|_| v.addr != 0) {
            f.add(crate::wire::be_slot(v.addr), 1);
        }
        for (w, b) in bytes(v).chunks_exact(4).enumerate() {
            let word = u32::from_ne_bytes(b.try_into().expect("4 bytes"));
            mem.word(id, w).store(word, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
        if let Some(f) = filter.filter(|_| old_addr != 0) {
            f.add(crate::wire::be_slot(old_addr), -1);
        }
        Ok(())
    }
    /// Every slot whose backend is active.
    pub fn backends(&self) -> Result<Vec<(u32, xlb_backend)>> {
        let n = self.backends.max_entries();
        let mut out = Vec::new();
        for (kb, vb) in self
            .backends
            .lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)
            .map_err(map_err("lookup_batch", "backends"))?
        {
            let id: u32 = from_bytes("backends", &kb)?;
            let b: xlb_backend = from_bytes("backends", &vb)?;
            if id < n && b.is_active() {
                out.push((id, b));
            }
        }
        Ok(out)
    }
    /// Every slot, active or not, with its generation (for adoption after restart).
    pub fn backend_slots(&self) -> Result<Vec<xlb_backend>> {
        let mut out = vec![xlb_backend::default(); self.backends.max_entries() as usize];
        for (kb, vb) in self
            .backends
            .lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)
            .map_err(map_err("lookup_batch", "backends"))?
        {
            let id: u32 = from_bytes("backends", &kb)?;
            if let Some(slot) = out.get_mut(id as usize) {
                *slot = from_bytes("backends", &vb)?;
            }
        }
        Ok(out)
    }

    // --- maglev -----------------------------------------------------------

    /// The memory-mapped `maglev` array, mapped on first use.
    fn maglev_mem(&self) -> Result<&MmapArray> {
        MmapArray::lazy(&self.maglev_mem, &self.maglev, "maglev", 4)
    }

    /// Checks `[off, off + len)` against the array; returns the last slot.
    fn check_maglev_range(&self, off: u32, len: usize) -> Result<u32> {
        let end = u64::from(off) + len as u64 - 1;
        check_index("maglev", &self.maglev, end)
    }

    /// Writes `table` at slots `[off, off + table.len())`, through the
    /// memory-mapped array: one aligned atomic 32-bit store per slot, then a
    /// release fence, so the table is complete before the caller switches a
    /// Service entry to it.
    pub fn write_maglev(&self, off: u32, table: &[u32]) -> Result<()> {
        if table.is_empty() {
            return Ok(());
        }
        self.check_maglev_range(off, table.len())?;
        let mem = self.maglev_mem()?;
        for (i, v) in table.iter().enumerate() {
            // off + i <= the last slot, checked above.
            mem.slot(off + i as u32).store(*v, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
        Ok(())
    }

    /// Reads slots `[off, off + len)` from the memory-mapped array.
    pub fn read_maglev(&self, off: u32, len: u32) -> Result<Vec<u32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.check_maglev_range(off, len as usize)?;
        let mem = self.maglev_mem()?;
        std::sync::atomic::fence(Ordering::Acquire);
        Ok((off..off + len)
            .map(|i| mem.slot(i).load(Ordering::Relaxed))
            .collect())
    }

    /// One slot through the ordinary map lookup syscall (not the mapping):
    /// what the kernel, and so the data plane, sees.
    pub fn maglev_slot_syscall(&self, slot: u32) -> Result<Option<u32>> {
        let slot = check_index("maglev", &self.maglev, slot.into())?;
        get(&self.maglev, "maglev", &slot)
    }
}
