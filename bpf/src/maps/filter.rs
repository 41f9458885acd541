//! The counting filters (`fe_filter`, `be_filter`, see `maps.h`): arrays of
//! u32 counts the data plane reads to skip a lookup that cannot hit. A
//! count is raised before the entry it stands for exists and lowered after
//! it is gone, so the data plane never skips an entry that is there.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use libbpf_rs::MapHandle;

use super::mmap_array::MmapArray;
use super::Result;

/// A count filter map, memory-mapped on first use; absent (`None` handle) in
/// pins of an older xlb.
#[derive(Debug)]
pub(super) struct CountFilter {
    name: &'static str,
    handle: Option<MapHandle>,
    mem: OnceLock<std::sync::Arc<MmapArray>>,
}

impl CountFilter {
    pub(super) fn new(name: &'static str, handle: Option<MapHandle>) -> Self {
        Self {
            name,
            handle,
            mem: OnceLock::new(),
        }
    }

    /// The counts; `None` without the filter map.
    pub(super) fn counts(&self) -> Result<Option<Counts<'_>>> {
        self.handle
            .as_ref()
            .map(|h| MmapArray::lazy(&self.mem, h, self.name, 4).map(Counts))
            .transpose()
    }
}

/// The counts of a mapped filter.
#[derive(Clone, Copy)]
pub(super) struct Counts<'a>(&'a MmapArray);

impl Counts<'_> {
    /// Adds `d` to count `i` (wrapping: an uncount below zero reads as "maybe").
    pub(super) fn add(&self, i: u32, d: i32) {
        self.0.slot(i).fetch_add(d as u32, Ordering::SeqCst);
    }

    pub(super) fn get(&self, i: u32) -> u32 {
        self.0.slot(i).load(Ordering::Relaxed)
    }

    pub(super) fn is_empty(&self) -> bool {
        (0..self.0.entries()).all(|i| self.get(i) == 0)
    }

    /// (slots with a count, slots).
    pub(super) fn used(&self) -> (u64, u32) {
        let n = self.0.entries();
        ((0..n).filter(|&i| self.get(i) != 0).count() as u64, n)
    }
}
