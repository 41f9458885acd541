//! # Maglev consistent hashing
//!
//! Per the Maglev paper (Eisenbud et al., NSDI 2016, section 3.4): each backend
//! gets a permutation of the table's `M` slots from two hashes of its *stable
//! identity* (its `address:port`, never a map id or a list position), and the
//! table is filled round-robin, each backend taking its next preferred slot
//! that is still empty.
//!
//! One departure from the paper: backend `b`'s `k`-th preference is
//! `(offset_b + skip_b * σ((k + shift_b) mod M)) mod M` instead of
//! `(offset_b + skip_b * k) mod M`, where `σ(k) = k^e mod M` is a fixed
//! permutation of `0..M` (a power map, a bijection for prime `M` when
//! `gcd(e, M - 1) = 1`; `e` is the smallest of 3, 5, 7, ... that is) and
//! `shift_b` a third hash. The paper's arithmetic progressions make two
//! backends that happen to draw the same `skip` (about `N^2 / 2M` of sets: 2%
//! at N = 5) walk the same cycle one behind the other, and removing a third
//! backend then shifts the border between them: up to a fifth of the table
//! moved for N = 5 (and two backends with the same offset *and* skip, one set
//! in ~40,000 at N = 11, share one list outright). With `σ` and the shift,
//! every backend's order is unrelated to every other's, and removing one of N
//! moves its own slots plus ~2% of `M` (at most ~4% over thousands of random
//! sets), from N = 2 up. Balance is unchanged (the round-robin fill gives
//! every backend `M/N` slots, +-1).
//!
//! Everything here is deterministic and version-independent, so that every
//! node builds the identical table from the same endpoints in any order (a
//! flow that ECMP sends to any node lands on the same backend):
//!
//! - identity bytes: the 4 address octets then the port, big endian, packed
//!   into a `u64` as `addr << 16 | port` (IPv4; an IPv6 `addr:port` is
//!   folded into one by [`Identity`]'s fixed hash of its 18 bytes);
//! - the three hashes: MurmurHash3's 64-bit finaliser (`fmix64`) of the
//!   identity XOR three fixed seeds ([`SEED_OFFSET`], [`SEED_SKIP`],
//!   [`SEED_SHIFT`]); `offset = h1 % M`, `skip = h2 % (M - 1) + 1`,
//!   `shift = h3 % M`;
//! - the index permutation `σ(k) = k^e mod M` above (identity for a
//!   non-prime `M`, where it would not be a bijection);
//! - ties: backends are filled in ascending identity order, whatever the
//!   order they were given in.
//!
//! Changing any of these changes every table in the cluster: do not.
//!
//! The table size `M` is a prime from [`PRIMES`] (about sqrt(2) apart, so a
//! Service's `M` — and with it every flow's slot — stays put while its backend
//! count moves within a band) with `M >= factor x N`, bounded by a configurable
//! floor and ceiling ([`MaglevConfig`]).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

/// Seed of the fold of an IPv6 backend's address and port into its identity.
pub const SEED_V6: u64 = 0x6d61_676c_6576_3676; // "maglev6v"

/// A backend's stable identity as one integer, the same on every node.
pub trait Identity {
    fn identity(&self) -> u64;
}

impl Identity for SocketAddrV4 {
    /// `addr << 16 | port`.
    fn identity(&self) -> u64 {
        (u64::from(u32::from(*self.ip())) << 16) | u64::from(self.port())
    }
}

impl Identity for SocketAddrV6 {
    /// The address's two halves and the port, each mixed in with `fmix64`
    /// (a fixed function of the bytes: the same on every node).
    fn identity(&self) -> u64 {
        let a = u128::from(*self.ip());
        let h = fmix64((a >> 64) as u64 ^ SEED_V6);
        let h = fmix64(h ^ a as u64);
        fmix64(h ^ u64::from(self.port()))
    }
}

impl Identity for SocketAddr {
    fn identity(&self) -> u64 {
        match self {
            SocketAddr::V4(a) => a.identity(),
            SocketAddr::V6(a) => a.identity(),
        }
    }
}

mod tail;

/// A slot no backend has taken yet (while a table is filled).
const EMPTY: u32 = u32::MAX;

/// Seed of the hash that picks a backend's first slot.
pub const SEED_OFFSET: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
/// Seed of the hash that picks a backend's stride.
pub const SEED_SKIP: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
/// Seed of the hash that picks where a backend starts along `σ`.
pub const SEED_SHIFT: u64 = 0x6d61_676c_6576_7368; // "maglevsh"

/// Table sizes: the smallest prime >= 251 x 2^(k/2), k = 0, 1, 2, ...
pub const PRIMES: [u32; 26] = [
    251, 359, 503, 719, 1009, 1423, 2011, 2843, 4019, 5683, 8039, 11369, 16067, 22721, 32141,
    45439, 64271, 90887, 128519, 181751, 257053, 363491, 514049, 726983, 1028099, 1453957,
];

/// How big a Service's table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevConfig {
    /// Smallest table (default 251).
    pub floor: u32,
    /// Largest table (default 65537); above `ceiling / factor` backends the
    /// balance guarantee weakens, the table never grows past it.
    pub ceiling: u32,
    /// Slots per backend at least (default 100).
    pub factor: u32,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self {
            floor: 251,
            ceiling: 65537,
            factor: 100,
        }
    }
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2u64;
    while i * i <= u64::from(n) {
        if u64::from(n) % i == 0 {
            return false;
        }
        i += 1;
    }
    true
}

impl MaglevConfig {
    /// `M` for `n` backends: 0 for none, else the first prime of [`PRIMES`]
    /// (or the floor/ceiling themselves when prime) in `[floor, ceiling]` with
    /// `M >= factor x n`; the largest prime `<= ceiling` when none is big
    /// enough.
    pub fn table_size(&self, n: usize) -> u32 {
        if n == 0 {
            return 0;
        }
        let ceiling = self.ceiling.max(2);
        let floor = self.floor.clamp(2, ceiling);
        let want = (n as u64 * u64::from(self.factor.max(1))).max(u64::from(floor));
        if let Some(&p) = PRIMES
            .iter()
            .find(|&&p| p >= floor && p <= ceiling && u64::from(p) >= want)
        {
            return p;
        }
        // Off the list (custom floor/ceiling, or past the list's band): the
        // next prime >= want if it fits under the ceiling, else the largest
        // prime <= ceiling (but never fewer slots than backends).
        let mut p = want.min(u64::from(u32::MAX)) as u32;
        while p <= ceiling && !is_prime(p) {
            p += 1;
        }
        if p <= ceiling {
            return p;
        }
        p = ceiling;
        while p > 2 && !is_prime(p) {
            p -= 1;
        }
        if (p as usize) < n {
            p = n as u32;
            while !is_prime(p) {
                p += 1;
            }
        }
        p
    }
}

/// MurmurHash3 fmix64.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The stable identity of a backend as one integer: address then port.
pub fn identity<B: Identity>(b: &B) -> u64 {
    b.identity()
}

/// `(offset, skip)` of a backend's permutation in a table of `m` slots.
pub fn permutation<B: Identity>(b: &B, m: u32) -> (u32, u32) {
    let id = identity(b);
    let m64 = u64::from(m);
    let offset = (fmix64(id ^ SEED_OFFSET) % m64) as u32;
    let skip = if m > 1 {
        (fmix64(id ^ SEED_SKIP) % (m64 - 1) + 1) as u32
    } else {
        1
    };
    (offset, skip)
}

/// The exponent of the index permutation `σ(k) = k^e mod m`: the smallest odd
/// prime with `gcd(e, m - 1) = 1` (one of the first ten always is, for any
/// `m < 2^32`); `None` when `m` is not a prime > 3 (then `σ` is the identity).
pub fn sigma_exponent(m: u32) -> Option<u32> {
    if m <= 3 || !is_prime(m) {
        return None;
    }
    [3u32, 5, 7, 11, 13, 17, 19, 23, 29, 31]
        .into_iter()
        .find(|&e| !(m - 1).is_multiple_of(e))
}

/// `σ` for one table size: `fwd[k] = σ(k mod m)` for `k < 2m`, and `inv`
/// its inverse when `m` is prime (what [`tail::finish`] needs). Cached per
/// `m` (a process uses a handful of table sizes; 12 bytes per slot: 768 KiB
/// for the default ceiling of 65,537).
struct Sigma {
    fwd: Vec<u32>,
    inv: Option<Vec<u32>>,
}

fn sigma(m: u32) -> std::sync::Arc<Sigma> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<u32, Arc<Sigma>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&m) {
        return s.clone();
    }
    let fwd: Vec<u32> = match sigma_exponent(m) {
        None => (0..m).collect(),
        Some(e) => {
            let m64 = u64::from(m);
            (0..m)
                .map(|k| {
                    let k = u64::from(k);
                    let mut r = 1u64;
                    for _ in 0..e {
                        r = r * k % m64;
                    }
                    r as u32
                })
                .collect()
        }
    };
    let inv = is_prime(m).then(|| {
        let mut inv = vec![0u32; fwd.len()];
        for (k, &s) in fwd.iter().enumerate() {
            inv[s as usize] = k as u32;
        }
        inv
    });
    // Two periods: a probe run from any k < m reads on without wrapping.
    let fwd = [&fwd[..], &fwd[..]].concat();
    let s = Arc::new(Sigma { fwd, inv });
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(m, s.clone());
    s
}

/// Where a backend starts along the index permutation `σ` (see the module docs).
pub fn shift<B: Identity>(b: &B, m: u32) -> u32 {
    if m == 0 {
        return 0;
    }
    (fmix64(identity(b) ^ SEED_SHIFT) % u64::from(m)) as u32
}

/// `x mod m` without a division (Barrett: one 64x64->128-bit multiply by
/// `floor((2^64 - 1) / m)` gives the quotient or slightly less; the
/// remainder is then corrected by subtracting `m`). The probe loop of
/// [`table`] takes one per probe.
#[derive(Clone, Copy, Debug)]
struct Reducer {
    m: u64,
    r: u64,
}

impl Reducer {
    fn new(m: u32) -> Self {
        let m = u64::from(m.max(1));
        Self { m, r: u64::MAX / m }
    }

    #[inline]
    fn rem(&self, x: u64) -> usize {
        let q = ((u128::from(x) * u128::from(self.r)) >> 64) as u64;
        let mut r = x - q * self.m;
        while r >= self.m {
            r -= self.m;
        }
        r as usize
    }
}

/// The fill order (indices into `backends` by ascending identity,
/// duplicates dropped) and each one's (offset, skip) for `m` slots.
fn fill_order<B: Identity>(backends: &[B], m: u32) -> (Vec<u32>, Vec<(u32, u32)>) {
    let mut order: Vec<u32> = (0..backends.len() as u32).collect();
    order.sort_by_key(|&i| identity(&backends[i as usize]));
    order.dedup_by_key(|i| identity(&backends[*i as usize]));
    let perm = order
        .iter()
        .map(|&i| permutation(&backends[i as usize], m))
        .collect();
    (order, perm)
}

/// Builds a table of `m` slots for `backends` (duplicates are ignored).
/// Each slot holds an index into `backends` (as given). Empty when there are
/// no backends or `m` is 0. `m` should be prime (see
/// [`MaglevConfig::table_size`]) and `>= backends.len()`.
pub fn table<B: Identity>(backends: &[B], m: u32) -> Vec<u32> {
    if backends.is_empty() || m == 0 {
        return Vec::new();
    }
    let (order, perm) = fill_order(backends, m);
    let n = order.len();
    // Where each backend is along σ: its k-th preference is
    // (offset + skip * σ((k + shift) mod m)) mod m.
    let sig = sigma(m);
    let mut next: Vec<usize> = order
        .iter()
        .map(|&i| shift(&backends[i as usize], m) as usize)
        .collect();
    let mut entry = vec![EMPTY; m as usize];
    let red = Reducer::new(m);
    let m_us = m as usize;
    // Probing finds the next empty slot in m / E probes on average when E
    // slots are empty: the last sqrt(m) slots are taken by tail::finish,
    // in E steps each (identical result, see there).
    let tail_at = match sig.inv {
        Some(_) => (m as f64).sqrt() as usize,
        None => 0,
    };
    let mut left = m_us;
    let mut j = 0;
    let at = |j: usize, k: usize| {
        red.rem(u64::from(perm[j].0) + u64::from(perm[j].1) * u64::from(sig.fwd[k]))
    };
    if sig.inv.is_none() {
        // m not prime (σ is the identity): a backend's list may not visit
        // every slot; probed plainly.
        while left > 0 {
            let mut k = next[j];
            while entry[at(j, k)] != EMPTY {
                k = if k + 1 == m_us { 0 } else { k + 1 };
            }
            entry[at(j, k)] = order[j];
            next[j] = if k + 1 == m_us { 0 } else { k + 1 };
            left -= 1;
            j = if j + 1 == n { 0 } else { j + 1 };
        }
        return entry;
    }
    // (position, slot) of the next claim's first probe.
    let mut pre = (next[0], at(0, next[0]));
    while left > tail_at {
        let (offset, skip) = (u64::from(perm[j].0), u64::from(perm[j].1));
        let j1 = if j + 1 == n { 0 } else { j + 1 };
        // The first probe of the claim after this one, computed ahead of
        // this claim's probe loop, whose exit branch mispredicts often: work
        // before a mispredicted branch is kept, so that claim starts with
        // its slot known (the position is checked: with one backend the
        // claim after is this one's, from further on).
        let pre1 = (next[j1], at(j1, next[j1]));
        let from = next[j];
        let (mut k, mut c) = if pre.0 == from {
            pre
        } else {
            (from, at(j, from))
        };
        // Next slot in j's preference list that is still empty. With m
        // prime, the list visits every slot (σ and k -> offset + skip * k
        // are both bijections), so one period from next[j] holds one (σ is
        // stored twice over: no wrap inside the run).
        while entry[c] != EMPTY {
            k += 1;
            c = red.rem(offset + skip * u64::from(sig.fwd[k]));
        }
        entry[c] = order[j];
        next[j] = if k + 1 >= m_us { k + 1 - m_us } else { k + 1 };
        left -= 1;
        pre = pre1;
        j = j1;
    }
    if let (Some(inv), true) = (&sig.inv, left > 0) {
        tail::finish(
            &mut entry,
            tail::Fill {
                order: &order,
                perm: &perm,
                next: &mut next,
                j,
                inv,
                red,
            },
        );
    }
    entry
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_golden;
