//! Tests of the Maglev fill: pinned outputs, the reference fill, balance
//! and disruption.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;

fn be(i: u32) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(0x0af4_0000 + (i / 7) * 3 + 1),
        8000 + (i % 7) as u16,
    )
}

fn owners(backends: &[SocketAddrV4], m: u32) -> Vec<SocketAddrV4> {
    table(backends, m)
        .into_iter()
        .map(|i| backends[i as usize])
        .collect()
}

#[test]
fn reducer_is_the_remainder() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for m in [1u32, 2, 3, 251, 65537, 1_453_957, u32::MAX - 4, u32::MAX] {
        let red = Reducer::new(m);
        for v in [
            0u64,
            1,
            u64::from(m) - 1,
            u64::from(m),
            u64::MAX,
            u64::MAX - 1,
        ] {
            assert_eq!(red.rem(v) as u64, v % u64::from(m), "{v} mod {m}");
        }
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(red.rem(x) as u64, x % u64::from(m), "{x} mod {m}");
            let small = x % (u64::from(m) * u64::from(m));
            assert_eq!(red.rem(small) as u64, small % u64::from(m));
        }
    }
}

#[test]
fn primes_are_prime_and_sorted() {
    for w in PRIMES.windows(2) {
        assert!(w[0] < w[1]);
    }
    assert!(PRIMES.iter().all(|&p| is_prime(p)));
    assert!(is_prime(65537));
    assert!(!is_prime(65535));
}

#[test]
fn table_sizes() {
    let c = MaglevConfig::default();
    assert_eq!(c.table_size(0), 0);
    assert_eq!(c.table_size(1), 251);
    assert_eq!(c.table_size(2), 251);
    assert_eq!(c.table_size(3), 359);
    assert_eq!(c.table_size(10), 1009);
    assert_eq!(c.table_size(11), 1423);
    assert_eq!(c.table_size(600), 64271);
    assert_eq!(c.table_size(650), 65003);
    assert_eq!(c.table_size(1000), 65537);
    assert_eq!(c.table_size(100_000), 100_003);
    let small = MaglevConfig {
        floor: 7,
        ceiling: 100,
        factor: 10,
    };
    assert_eq!(small.table_size(1), 11);
    assert_eq!(small.table_size(3), 31);
    assert_eq!(small.table_size(20), 97);
    for n in 1..2000 {
        let m = c.table_size(n);
        assert!(is_prime(m), "{n} -> {m}");
        assert!(m as usize >= n);
    }
}

const PINNED_PERM: (u32, u32) = (31, 199);
const PINNED_HEAD: [u32; 12] = [0, 0, 1, 0, 2, 2, 2, 0, 1, 0, 0, 1];

#[test]
fn fixed_vectors() {
    // Pinned outputs: any change here changes every table in a cluster.
    let b = SocketAddrV4::new(Ipv4Addr::new(10, 244, 1, 5), 8080);
    assert_eq!(identity(&b), 0x0af4_0105_1f90);
    let t = owners(&[b, be(1), be(2)], 251);
    assert_eq!(t.len(), 251);
    let again = owners(&[be(2), b, be(1)], 251);
    assert_eq!(t, again);
    assert_eq!(permutation(&b, 251), PINNED_PERM);
    assert_eq!(&table(&[b, be(1), be(2)], 251)[..12], &PINNED_HEAD);
}

#[test]
fn every_slot_filled_and_duplicates_ignored() {
    let bs = [be(1), be(2), be(1), be(3)];
    let t = table(&bs, 251);
    assert_eq!(t.len(), 251);
    assert!(t.iter().all(|&i| (i as usize) < bs.len() && i != 2));
    assert!(table::<SocketAddrV4>(&[], 251).is_empty());
    assert!(table(&bs, 0).is_empty());
}

fn counts(t: &[SocketAddrV4]) -> HashMap<SocketAddrV4, usize> {
    let mut c = HashMap::new();
    for b in t {
        *c.entry(*b).or_default() += 1;
    }
    c
}

/// Small N, many sets each (the proptests below see few small sets):
/// removing one backend moves < 5% of M beyond its own slots in every set
/// (measured: mean ~2%, worst ~4%). With the paper's plain progressions
/// single sets reached ~19% (n = 5): two backends sharing a skip.
#[test]
fn removal_disruption_small_n() {
    let c = MaglevConfig::default();
    let mut x: u64 = 88172645463325252;
    for n in 2..16usize {
        let (mut worst, mut sum) = (0f64, 0f64);
        for _ in 0..300 {
            let bs: Vec<SocketAddrV4> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    SocketAddrV4::new(
                        Ipv4Addr::from(0x0af4_0000 + (x % 200_000) as u32),
                        (x >> 40) as u16 | 1,
                    )
                })
                .collect();
            let m = c.table_size(n);
            let rest: Vec<_> = bs[1..].to_vec();
            let before = owners(&bs, m);
            let after = owners(&rest, m);
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| **a != bs[0] && a != b)
                .count() as f64
                / m as f64;
            worst = worst.max(moved);
            sum += moved;
        }
        assert!(sum / 300.0 < 0.03, "n {n}: mean {}", sum / 300.0);
        assert!(worst < 0.05, "n {n}: worst {worst}");
    }
}

fn backend_set() -> impl Strategy<Value = Vec<SocketAddrV4>> {
    prop::collection::btree_set((0u32..200_000, 1u16..=65535), 1..60).prop_map(|s| {
        s.into_iter()
            .map(|(a, p)| SocketAddrV4::new(Ipv4Addr::from(0x0af4_0000 + a), p))
            .collect()
    })
}

/// The fill written as plainly as possible (k-th preference =
/// offset + skip * k^e mod m, recomputed per probe): `table` must give
/// exactly its output.
fn reference_table(backends: &[SocketAddrV4], m: u32) -> Vec<u32> {
    let mut order: Vec<u32> = (0..backends.len() as u32).collect();
    order.sort_by_key(|&i| identity(&backends[i as usize]));
    order.dedup_by_key(|i| identity(&backends[*i as usize]));
    let perm: Vec<(u32, u32)> = order
        .iter()
        .map(|&i| permutation(&backends[i as usize], m))
        .collect();
    let mut next: Vec<u64> = order
        .iter()
        .map(|&i| u64::from(shift(&backends[i as usize], m)))
        .collect();
    let mut entry = vec![u32::MAX; m as usize];
    let mut filled = 0;
    'outer: loop {
        for j in 0..order.len() {
            let (o, k) = (u64::from(perm[j].0), u64::from(perm[j].1));
            let e = sigma_exponent(m).unwrap_or(1);
            let m64 = u64::from(m);
            let pref = |i: u64| (o + k * (0..e).fold(1, |r, _| r * (i % m64) % m64)) % m64;
            let mut c = pref(next[j]) as usize;
            while entry[c] != u32::MAX {
                next[j] += 1;
                c = pref(next[j]) as usize;
            }
            entry[c] = order[j];
            next[j] += 1;
            filled += 1;
            if filled == m {
                break 'outer;
            }
        }
    }
    entry
}

#[test]
fn same_tables_as_the_reference_fill() {
    for (n, m) in [
        (1, 251),
        (3, 251),
        (10, 1009),
        (100, 10007),
        (1000, 65537),
        (7, 2),
        (1, 1),
    ] {
        let bs: Vec<SocketAddrV4> = (0..n).map(be).collect();
        assert_eq!(table(&bs, m), reference_table(&bs, m), "n {n} m {m}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn same_tables_as_the_reference_fill_random(bs in backend_set(), big in any::<bool>()) {
        let m = if big { 65537 } else { MaglevConfig::default().table_size(bs.len()) };
        prop_assert_eq!(table(&bs, m), reference_table(&bs, m));
    }

    #[test]
    fn order_independent(bs in backend_set(), seed in any::<u64>()) {
        let m = MaglevConfig::default().table_size(bs.len());
        let mut shuffled = bs.clone();
        // Deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(owners(&bs, m), owners(&shuffled, m));
    }

    #[test]
    fn balanced(bs in backend_set()) {
        let m = MaglevConfig::default().table_size(bs.len());
        prop_assert!(m as usize >= 100 * bs.len());
        let c = counts(&owners(&bs, m));
        prop_assert_eq!(c.len(), bs.len());
        let max = *c.values().max().unwrap() as f64;
        let min = *c.values().min().unwrap() as f64;
        prop_assert!(max / min <= 1.05, "max {} min {}", max, min);
    }

    #[test]
    fn removing_one_moves_little_else(bs in backend_set(), pick in any::<prop::sample::Index>()) {
        let m = MaglevConfig::default().table_size(bs.len());
        let gone = bs[pick.index(bs.len())];
        let rest: Vec<_> = bs.iter().copied().filter(|b| *b != gone).collect();
        let before = owners(&bs, m);
        let after = owners(&rest, m);
        let mut others_moved = 0;
        for (a, b) in before.iter().zip(&after) {
            if *a == gone {
                prop_assert!(*b != gone);
            } else if a != b {
                others_moved += 1;
            }
        }
        prop_assert!((others_moved as f64) < 0.05 * m as f64, "moved {} of {}", others_moved, m);
    }

    #[test]
    fn adding_one_takes_its_share(bs in backend_set(), extra in (300_000u32..400_000, 1u16..=65535)) {
        // Same M before and after (the table size is per band, so a real
        // Service usually keeps it; sized here for N + 1).
        let m = MaglevConfig::default().table_size(bs.len() + 1);
        let new = SocketAddrV4::new(Ipv4Addr::from(0x0af4_0000 + extra.0), extra.1);
        let mut more = bs.clone();
        more.push(new);
        let before = owners(&bs, m);
        let after = owners(&more, m);
        let mut taken = 0usize;
        let mut others_moved = 0usize;
        for (a, b) in before.iter().zip(&after) {
            if *b == new {
                taken += 1;
            } else if a != b {
                others_moved += 1;
            }
        }
        let share = m as f64 / (bs.len() + 1) as f64;
        prop_assert!((taken as f64 - share).abs() <= share * 0.05 + 1.0, "took {} share {}", taken, share);
        prop_assert!((others_moved as f64) < 0.05 * m as f64, "moved {} of {}", others_moved, m);
    }
}
