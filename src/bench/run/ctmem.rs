//! Connection-tracking state on the balancing node: live entries, the bytes
//! one entry costs in the kernel, bytes per flow.
//!
//! `ct` is a `BPF_MAP_TYPE_LRU_HASH`. Every element the kernel keeps for it is
//! a `struct htab_elem` (kernel/bpf/hashtab.c) followed by the key and the
//! value, each rounded up to 8 bytes:
//!
//! ```text
//! struct htab_elem {
//!     struct hlist_nulls_node hash_node;   16  (bucket chain)
//!     struct bpf_lru_node lru_node;        24  (LRU list head 16, cpu 2, type 1, ref 1, pad 4)
//!     u32 hash;                             8  (4 + padding: the key is 8-aligned)
//!     char key[] __aligned(8);
//! };                                       48 bytes before the key
//! elem_size = 48 + round_up(key_size, 8) + round_up(value_size, 8)
//! ```
//!
//! The kernel reports the map's memory in `/proc/self/fdinfo/<fd>` (`memlock`:
//! `htab_map_mem_usage`): an LRU hash preallocates all `max_entries` elements
//! plus one 16-byte `struct bucket` per bucket (buckets = max_entries rounded
//! up to a power of two) and a few hundred bytes of headers and locks. The
//! element size is read back from that figure ([`elem_bytes_from_memlock`]),
//! the layout above being the fallback, so a kernel with another layout is
//! measured, not assumed.
//!
//! `ct_bytes_per_flow` = live entries × element size / live flows: the memory
//! the flows' state occupies (the preallocated rest of the map is headroom the
//! operator sizes, reported whole as `ct_map_bytes`).

use anyhow::Result;
use libbpf_rs::MapCore;

/// `struct htab_elem` up to its key (see the module docs).
pub const HTAB_ELEM_HEADER: u64 = 48;
/// `struct bucket`: a nulls list head and a raw spinlock.
pub const HTAB_BUCKET: u64 = 16;

/// What the node's ct map holds after a measured phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtMem {
    /// Entries in the map.
    pub live: u64,
    /// Bytes one element costs (kernel header, key, value).
    pub elem_bytes: u64,
    /// The whole map as the kernel accounts it (`memlock`), if reported.
    pub map_bytes: Option<u64>,
}

impl CtMem {
    /// Bytes of ct state per live flow (`None` without flows).
    pub fn bytes_per_flow(&self, flows: u64) -> Option<f64> {
        (flows > 0).then(|| (self.live * self.elem_bytes) as f64 / flows as f64)
    }
}

fn round8(x: u64) -> u64 {
    x.div_ceil(8) * 8
}

/// One element of a (non-per-CPU) hash map by the kernel's layout.
pub fn elem_bytes(key_size: u32, value_size: u32) -> u64 {
    HTAB_ELEM_HEADER + round8(u64::from(key_size)) + round8(u64::from(value_size))
}

/// One element, from the kernel's accounting of a preallocated hash map of
/// `max_entries`: what is left after the buckets, per entry (the map's
/// header and locks are far smaller than `max_entries` bytes, so they fall
/// out of the integer division).
pub fn elem_bytes_from_memlock(memlock: u64, max_entries: u32) -> Option<u64> {
    let n = u64::from(max_entries);
    let buckets = HTAB_BUCKET * n.next_power_of_two();
    (n > 0 && memlock > buckets).then(|| (memlock - buckets) / n)
}

/// Counts the entries of `map` and reads its size from the kernel.
pub fn measure<M: MapCore>(map: &M) -> Result<CtMem> {
    // key by key: libbpf-rs 0.27's batched iterator undercounted large maps here
    let live = map.keys().count() as u64;
    let layout = elem_bytes(map.key_size(), map.value_size());
    let map_bytes = map.query_fdinfo().ok().and_then(|i| i.memlock);
    let elem_bytes = map_bytes
        .and_then(|m| elem_bytes_from_memlock(m, map.max_entries()))
        .unwrap_or(layout);
    Ok(CtMem {
        live,
        elem_bytes,
        map_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_size_follows_the_kernel_layout() {
        // xlb_ct_key 16 bytes, xlb_ct_val 40
        assert_eq!(elem_bytes(16, 40), 104);
        assert_eq!(elem_bytes(13, 33), 48 + 16 + 40);
    }

    #[test]
    fn element_size_is_read_back_from_memlock() {
        // 1 Mi entries of 104 bytes, 1 Mi buckets, 1 KiB of headers and locks
        let n = 1u32 << 20;
        let memlock = 104 * u64::from(n) + 16 * u64::from(n) + 1024;
        assert_eq!(elem_bytes_from_memlock(memlock, n), Some(104));
        // 3 Mi entries: 4 Mi buckets
        let n = 3u32 << 20;
        let memlock = 104 * u64::from(n) + 16 * (4 << 20) + 1024;
        assert_eq!(elem_bytes_from_memlock(memlock, n), Some(104));
        assert_eq!(elem_bytes_from_memlock(10, 0), None);
        assert_eq!(elem_bytes_from_memlock(10, 1 << 20), None);
    }

    #[test]
    fn bytes_per_flow_is_live_state_over_flows() {
        let m = CtMem {
            live: 2_000,
            elem_bytes: 104,
            map_bytes: None,
        };
        assert_eq!(m.bytes_per_flow(1_000), Some(208.0));
        assert_eq!(m.bytes_per_flow(0), None);
    }
}
