//! A BPF array (`BPF_F_MMAPABLE`) mapped into this process, shared and
//! writable, read and written as 32-bit words.
//!
//! The kernel lays an array's values out `round_up(value_size, 8)` bytes
//! apart from offset 0 of the mapping, so word `w` of value `i` is the `u32`
//! at byte `i * stride + 4 * w`. The data plane reads the values
//! concurrently: every access is one aligned 32-bit atomic, so a word is
//! never torn and no store is elided or merged away. Used for the `maglev`
//! slots, the `backends` array and the count filters.

use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use libbpf_rs::{MapCore, MapHandle};

use super::{Error, Result};

/// An array map's values, mapped shared and writable (unmapped on drop).
#[derive(Debug)]
pub(super) struct MmapArray {
    base: NonNull<u8>,
    len: usize,
    stride: usize,
    entries: u32,
}

// SAFETY: the mapping is shared memory owned by this value (unmapped on
// drop); every access goes through `AtomicU32`, so it may be used from any
// thread.
unsafe impl Send for MmapArray {}
unsafe impl Sync for MmapArray {}

impl MmapArray {
    /// Maps array `name` whose values are `want` bytes (a multiple of 4).
    fn map(h: &MapHandle, name: &'static str, want: usize) -> Result<Self> {
        let value_size = h.value_size() as usize;
        if value_size != want || !want.is_multiple_of(4) {
            return Err(Error::Size {
                map: name,
                got: value_size,
                want,
            });
        }
        let stride = value_size.next_multiple_of(8);
        let entries = h.max_entries();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| *p > 0)
            .unwrap_or(4096);
        let len = (entries as usize * stride).next_multiple_of(page);
        // SAFETY: a fresh mapping chosen by the kernel over the map's fd; the
        // result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                h.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Mmap {
                map: name,
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| Error::Mmap {
            map: name,
            len,
            source: std::io::Error::other("mmap returned NULL"),
        })?;
        Ok(Self {
            base,
            len,
            stride,
            entries,
        })
    }

    /// The mapping of array `h` held in `cell`, made on first use, or
    /// shared with another handle of the same map in this process (the
    /// kernel maps every page of a BPF array at mmap time, so each mapping
    /// of the same map would count its whole size in the resident set
    /// again: the agent's syncer and its metrics each hold a [`super::Maps`]).
    pub(super) fn lazy<'a>(
        cell: &'a OnceLock<Arc<MmapArray>>,
        h: &MapHandle,
        name: &'static str,
        value_size: usize,
    ) -> Result<&'a MmapArray> {
        if let Some(m) = cell.get() {
            return Ok(m);
        }
        let m = shared(h, name, value_size)?;
        // A concurrent first use may have won: its mapping is kept.
        let _ = cell.set(m);
        Ok(cell.get().expect("set above"))
    }

    /// Number of values.
    pub(super) fn entries(&self) -> u32 {
        self.entries
    }

    /// The first word of value `i` (the whole value of a u32 array).
    pub(super) fn slot(&self, i: u32) -> &AtomicU32 {
        self.word(i, 0)
    }

    /// 32-bit word `w` of value `i` (w < value_size / 4).
    pub(super) fn word(&self, i: u32, w: usize) -> &AtomicU32 {
        assert!(
            i < self.entries && w * 4 < self.stride,
            "index checked by the caller"
        );
        // SAFETY: i < entries and w * 4 + 4 <= value_size <= stride, so the
        // word lies inside the mapping; the kernel aligns the array's values
        // to 8 bytes and the mapping to a page.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(i as usize * self.stride + w * 4)
                .cast::<AtomicU32>()
        }
    }
}

/// Mappings alive in this process, by map id. A mapping holds a reference
/// to its map, so an id found here with a live mapping is still that map's.
static SHARED: Mutex<Vec<(u32, Weak<MmapArray>)>> = Mutex::new(Vec::new());

/// The live mapping of `h`'s map, or a new one (registered).
fn shared(h: &MapHandle, name: &'static str, value_size: usize) -> Result<Arc<MmapArray>> {
    let id = libbpf_rs::MapInfo::new(h.as_fd())
        .map_err(|source| Error::Map {
            op: "map info",
            map: name,
            source,
        })?
        .info
        .id;
    let mut reg = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|(_, w)| w.strong_count() > 0);
    let live = reg
        .iter()
        .filter(|(i, _)| *i == id)
        .find_map(|(_, w)| w.upgrade());
    // (a wrong value size is refused by `map`, whatever is shared)
    if let Some(m) = live.filter(|_| value_size == h.value_size() as usize) {
        return Ok(m);
    }
    let m = Arc::new(MmapArray::map(h, name, value_size)?);
    reg.push((id, Arc::downgrade(&m)));
    Ok(m)
}

impl Drop for MmapArray {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in `map`, and no
        // reference into it outlives self (word() borrows self).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
