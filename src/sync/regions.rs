//! Allocator of regions of the one `maglev` slot array: best fit over free
//! extents, freed regions coalesced with their neighbours and reused.

use std::collections::{BTreeMap, BTreeSet};

/// Free extents of `[0, capacity)`.
#[derive(Clone, Debug)]
pub struct Regions {
    capacity: u32,
    /// offset -> length
    by_off: BTreeMap<u32, u32>,
    /// (length, offset)
    by_len: BTreeSet<(u32, u32)>,
    used: u64,
}

impl Regions {
    /// Everything free.
    pub fn new(capacity: u32) -> Self {
        let mut r = Self {
            capacity,
            by_off: BTreeMap::new(),
            by_len: BTreeSet::new(),
            used: 0,
        };
        if capacity > 0 {
            r.insert_free(0, capacity);
        }
        r
    }

    /// Everything free except `used` (`(off, len)`, may overlap each other:
    /// adopted from maps a crashed agent left behind).
    pub fn with_used(capacity: u32, used: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut spans: Vec<(u32, u32)> = used
            .into_iter()
            .filter(|(_, l)| *l > 0)
            .map(|(o, l)| (o.min(capacity), o.saturating_add(l).min(capacity)))
            .collect();
        spans.sort();
        let mut r = Self {
            capacity,
            by_off: BTreeMap::new(),
            by_len: BTreeSet::new(),
            used: 0,
        };
        let mut at = 0u32;
        for (s, e) in spans {
            if s > at {
                r.insert_free(at, s - at);
            }
            at = at.max(e);
        }
        if at < capacity {
            r.insert_free(at, capacity - at);
        }
        r.used = u64::from(capacity) - r.by_off.values().map(|l| u64::from(*l)).sum::<u64>();
        r
    }

    fn insert_free(&mut self, off: u32, len: u32) {
        self.by_off.insert(off, len);
        self.by_len.insert((len, off));
    }

    fn remove_free(&mut self, off: u32, len: u32) {
        self.by_off.remove(&off);
        self.by_len.remove(&(len, off));
    }

    /// A region of `len` slots (best fit, lowest offset among equals), or
    /// `None` when no free extent is big enough.
    pub fn alloc(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return Some(0);
        }
        let &(flen, off) = self.by_len.range((len, 0)..).next()?;
        self.remove_free(off, flen);
        if flen > len {
            self.insert_free(off + len, flen - len);
        }
        self.used += u64::from(len);
        Some(off)
    }

    /// Returns `[off, off + len)`, coalescing with free neighbours.
    pub fn free(&mut self, off: u32, len: u32) {
        if len == 0 {
            return;
        }
        debug_assert!(u64::from(off) + u64::from(len) <= u64::from(self.capacity));
        self.used = self.used.saturating_sub(u64::from(len));
        let (mut start, mut end) = (off, off + len);
        if let Some((&po, &pl)) = self.by_off.range(..off).next_back() {
            if po + pl == off {
                self.remove_free(po, pl);
                start = po;
            }
        }
        if let Some(&nl) = self.by_off.get(&end) {
            self.remove_free(end, nl);
            end += nl;
        }
        self.insert_free(start, end - start);
    }

    /// Extends the array to `capacity` slots (the new ones free, joined to
    /// a free extent at the old end); a smaller capacity changes nothing.
    pub fn grow(&mut self, capacity: u32) {
        if capacity <= self.capacity {
            return;
        }
        let (old, add) = (self.capacity, capacity - self.capacity);
        self.capacity = capacity;
        // Counted as used for a moment, then freed: `free` coalesces it.
        self.used += u64::from(add);
        self.free(old, add);
    }

    /// Slots in use.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Largest free extent.
    pub fn largest_free(&self) -> u32 {
        self.by_len.iter().next_back().map(|(l, _)| *l).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_coalesce_reuse() {
        let mut r = Regions::new(100);
        let a = r.alloc(30).unwrap();
        let b = r.alloc(30).unwrap();
        let c = r.alloc(30).unwrap();
        assert_eq!((a, b, c), (0, 30, 60));
        assert_eq!(r.alloc(11), None);
        assert_eq!(r.used(), 90);
        r.free(b, 30);
        // best fit: the 10-slot tail for 10, the freed hole for 25
        assert_eq!(r.alloc(10), Some(90));
        assert_eq!(r.alloc(25), Some(30));
        r.free(30, 25);
        r.free(a, 30);
        r.free(c, 30);
        r.free(90, 10);
        assert_eq!(r.used(), 0);
        assert_eq!(r.largest_free(), 100);
        assert_eq!(r.alloc(100), Some(0));
    }

    #[test]
    fn grow_joins_the_free_tail() {
        let mut r = Regions::new(100);
        assert_eq!(r.alloc(90), Some(0));
        assert_eq!(r.alloc(20), None);
        r.grow(150);
        assert_eq!((r.capacity(), r.used(), r.largest_free()), (150, 90, 60));
        assert_eq!(r.alloc(60), Some(90));
        r.grow(10);
        assert_eq!(r.capacity(), 150);
    }

    #[test]
    fn adopted_spans() {
        let mut r = Regions::with_used(100, [(10, 10), (15, 10), (50, 5), (0, 0)]);
        assert_eq!(r.used(), 20);
        assert_eq!(r.alloc(10), Some(0));
        assert_eq!(r.alloc(45), Some(55));
        assert_eq!(r.alloc(25), Some(25));
        assert_eq!(r.alloc(1), None);
    }
}
