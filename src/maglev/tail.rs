//! The end of a Maglev fill, when few slots are left empty.
//!
//! Probing a backend's preference list finds its next empty slot after
//! `m / E` probes on average when `E` of `m` slots are empty, so the last
//! few slots cost most of a fill's probes. Here, for a prime `m`, each
//! remaining claim instead looks at every empty slot once: slot `c`
//! stands at position `k = σ⁻¹((c - offset) · skip⁻¹ mod m)` of the
//! backend's list (both maps are bijections of `0..m` for prime `m`), and
//! the backend takes the empty slot whose position comes first counting
//! from where its probing stopped (`next`). That is exactly the slot
//! probing would reach first: every position between `next` and it holds
//! a slot that is already taken (or it would be an empty slot coming
//! earlier), and a slot once taken stays taken. The round-robin order
//! carries on from the backend probing stopped at, so the table is
//! identical to the all-probing fill (test `same_tables_as_the_reference_fill`
//! and its property test compare them).

use super::{Reducer, EMPTY};

/// The state of a fill handed over from the probing loop.
pub(super) struct Fill<'a> {
    /// Backend index of each fill position (ascending identity).
    pub order: &'a [u32],
    /// `(offset, skip)` per fill position.
    pub perm: &'a [(u32, u32)],
    /// Per fill position: the index along σ its probing goes on from.
    pub next: &'a mut [usize],
    /// The fill position whose turn it is.
    pub j: usize,
    /// σ⁻¹.
    pub inv: &'a [u32],
    pub red: Reducer,
}

/// `a⁻¹ mod m` (extended Euclid; `a` and the prime `m` are coprime).
fn inv_mod(a: u64, m: u64) -> u64 {
    let (mut t, mut nt, mut r, mut nr) = (0i64, 1i64, m as i64, a as i64);
    while nr != 0 {
        let q = r / nr;
        (t, nt) = (nt, t - q * nt);
        (r, nr) = (nr, r - q * nr);
    }
    (if t < 0 { t + m as i64 } else { t }) as u64
}

/// Fills the empty slots of `entry`, round-robin from `f.j` (see the module
/// docs). `m = entry.len()` must be prime.
pub(super) fn finish(entry: &mut [u32], f: Fill<'_>) {
    let m = entry.len() as u64;
    let n = f.order.len();
    let mut empties: Vec<u32> = (0..entry.len() as u32)
        .filter(|&c| entry[c as usize] == EMPTY)
        .collect();
    // Per fill position, made when it first claims here: (a, b) with
    // (c - offset) · skip⁻¹ = c · a + b (mod m). a = 0 means not made yet
    // (skip⁻¹ is never 0).
    let mut ab: Vec<(u64, u64)> = vec![(0, 0); n];
    let mut j = f.j;
    while !empties.is_empty() {
        if ab[j].0 == 0 {
            let (offset, skip) = f.perm[j];
            let a = inv_mod(u64::from(skip), m);
            ab[j] = (a, (m - u64::from(offset)) % m * a % m);
        }
        let (a, b) = ab[j];
        let from = f.next[j] as u64;
        // (distance along j's list from `from`, index in `empties`): the
        // smallest distance wins (distances are distinct: one slot per
        // position).
        let mut best = u64::MAX;
        for (i, &c) in empties.iter().enumerate() {
            let k = u64::from(f.inv[f.red.rem(u64::from(c) * a + b)]);
            let d = if k >= from { k - from } else { k + m - from };
            best = best.min(d << 32 | i as u64);
        }
        let (d, i) = (best >> 32, (best & 0xffff_ffff) as usize);
        let c = empties.swap_remove(i);
        entry[c as usize] = f.order[j];
        let k = (from + d) % m;
        f.next[j] = ((k + 1) % m) as usize;
        j = if j + 1 == n { 0 } else { j + 1 };
    }
}
