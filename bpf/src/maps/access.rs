//! Byte-level map operations under the typed accessors: a key or value is
//! a `plain::Plain` C struct, converted to and from bytes only here, and
//! every failure becomes an [`Error`] naming the map and the operation. A
//! full map is told apart by the errno the kernel returns for it.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::{Error, Result};

pub(super) fn bytes<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain: a C struct of integers, every byte initialised.
    unsafe { plain::as_bytes(v) }
}

pub(crate) fn from_bytes<T: plain::Plain + Default + Copy>(
    map: &'static str,
    b: &[u8],
) -> Result<T> {
    let mut v = T::default();
    plain::copy_from_bytes(&mut v, b).map_err(|_| Error::Size {
        map,
        got: b.len(),
        want: std::mem::size_of::<T>(),
    })?;
    Ok(v)
}

/// Whether an update's errno means "the map is full": `E2BIG` from a hash
/// or array map at max_entries, `ENOSPC` from an LPM trie.
pub(super) fn is_full_errno(errno: i32) -> bool {
    errno == libc::E2BIG || errno == libc::ENOSPC
}

pub(super) fn is_not_found(e: &libbpf_rs::Error) -> bool {
    matches!(e.kind(), libbpf_rs::ErrorKind::NotFound)
}

/// `Error::Map` for `op` on `map`.
pub(super) fn map_err(
    op: &'static str,
    map: &'static str,
) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |source| Error::Map { op, map, source }
}

/// `bpf_map_update_elem` with the errno kept (libbpf-rs folds `ENOSPC`
/// into a generic error kind).
fn update_raw(map: &MapHandle, k: &[u8], v: &[u8], flags: MapFlags) -> std::io::Result<()> {
    // SAFETY: the kernel reads key_size and value_size bytes: both checked
    // against the slices by the caller; the fd is the map's.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_map_update_elem(
            map.as_fd().as_raw_fd(),
            k.as_ptr().cast(),
            v.as_ptr().cast(),
            flags.bits(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

pub(super) fn put<K: plain::Plain, V: plain::Plain>(
    map: &MapHandle,
    name: &'static str,
    k: &K,
    v: &V,
) -> Result<()> {
    put_flags(map, name, k, v, MapFlags::ANY)
}

pub(super) fn put_flags<K: plain::Plain, V: plain::Plain>(
    map: &MapHandle,
    name: &'static str,
    k: &K,
    v: &V,
    flags: MapFlags,
) -> Result<()> {
    let (k, v) = (bytes(k), bytes(v));
    for (got, want) in [(k.len(), map.key_size()), (v.len(), map.value_size())] {
        if got != want as usize {
            return Err(Error::Size {
                map: name,
                got,
                want: want as usize,
            });
        }
    }
    update_raw(map, k, v, flags).map_err(|e| {
        if e.raw_os_error().is_some_and(is_full_errno) {
            Error::Full {
                map: name,
                max: map.max_entries(),
            }
        } else {
            Error::Map {
                op: "update",
                map: name,
                source: e.into(),
            }
        }
    })
}

pub(super) fn get<K: plain::Plain, V: plain::Plain + Default + Copy>(
    map: &MapHandle,
    name: &'static str,
    k: &K,
) -> Result<Option<V>> {
    match map.lookup(bytes(k), MapFlags::ANY) {
        Ok(Some(b)) => Ok(Some(from_bytes(name, &b)?)),
        Ok(None) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(source) => Err(Error::Map {
            op: "lookup",
            map: name,
            source,
        }),
    }
}

/// Deletes `k`; `Ok(false)` when it was not there.
pub(super) fn del<K: plain::Plain>(map: &MapHandle, name: &'static str, k: &K) -> Result<bool> {
    match map.delete(bytes(k)) {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(source) => Err(Error::Map {
            op: "delete",
            map: name,
            source,
        }),
    }
}

pub(super) fn entries<K, V>(map: &MapHandle, name: &'static str) -> Result<Vec<(K, V)>>
where
    K: plain::Plain + Default + Copy,
    V: plain::Plain + Default + Copy,
{
    let mut out = Vec::new();
    for kb in map.keys() {
        // An entry may vanish between keys() and lookup (LRU, agent): skip it.
        if let Some(vb) = map
            .lookup(&kb, MapFlags::ANY)
            .or_else(|e| if is_not_found(&e) { Ok(None) } else { Err(e) })
            .map_err(map_err("lookup", name))?
        {
            out.push((from_bytes(name, &kb)?, from_bytes(name, &vb)?));
        }
    }
    Ok(out)
}

/// `i` as an index of array `h`, or [`Error::OutOfRange`].
pub(super) fn check_index(map: &'static str, h: &MapHandle, i: u64) -> Result<u32> {
    if i >= u64::from(h.max_entries()) {
        return Err(Error::OutOfRange {
            map,
            index: i,
            max: h.max_entries(),
        });
    }
    Ok(i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_is_the_errno_not_the_message() {
        assert!(is_full_errno(libc::E2BIG));
        assert!(is_full_errno(libc::ENOSPC));
        assert!(!is_full_errno(libc::ENOENT));
        assert!(!is_full_errno(libc::EEXIST));
        assert!(!is_full_errno(libc::EPERM));
    }
}
