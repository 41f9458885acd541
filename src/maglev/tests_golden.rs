//! Golden checks of the fill: the tables of many random backend sets, as a
//! plain reference fill builds them (each data plane, `xlb explain` and the
//! stateless flows of running nodes depend on the exact table: a faster
//! fill must give the same one, slot for slot).

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The fill written out plainly (one probe at a time, every slot by
/// probing, σ from a table, no probe made ahead, no tail): the reference a
/// faster fill is checked against. The order and permutations are the
/// fill's own (`fill_order`); the pinned digests check those.
fn reference_table<B: Identity>(backends: &[B], m: u32) -> Vec<u32> {
    if backends.is_empty() || m == 0 {
        return Vec::new();
    }
    let (order, perm) = fill_order(backends, m);
    let n = order.len();
    let m64 = u64::from(m);
    let sigma: Vec<u64> = match sigma_exponent(m) {
        None => (0..m64).collect(),
        Some(e) => (0..m64)
            .map(|k| (0..e).fold(1u64, |r, _| r * k % m64))
            .collect(),
    };
    let mut next: Vec<u64> = order
        .iter()
        .map(|&i| u64::from(shift(&backends[i as usize], m)))
        .collect();
    let mut entry = vec![u32::MAX; m as usize];
    let mut j = 0;
    for _ in 0..m {
        let (o, s) = (u64::from(perm[j].0), u64::from(perm[j].1));
        let mut k = next[j];
        let mut c = ((o + s * sigma[k as usize]) % m64) as usize;
        while entry[c] != u32::MAX {
            k = (k + 1) % m64;
            c = ((o + s * sigma[k as usize]) % m64) as usize;
        }
        entry[c] = order[j];
        next[j] = (k + 1) % m64;
        j = (j + 1) % n;
    }
    entry
}

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `count` random IPv4 backend sets of `n` (possibly with duplicates).
fn sets_v4(rng: &mut Xorshift, count: usize, n: usize) -> Vec<Vec<SocketAddrV4>> {
    (0..count)
        .map(|_| {
            (0..n)
                .map(|_| {
                    let x = rng.next();
                    SocketAddrV4::new(
                        Ipv4Addr::from(0x0a00_0000 + (x % 4_000_000) as u32),
                        8000 + (x >> 40) as u16 % 4,
                    )
                })
                .collect()
        })
        .collect()
}

/// One number for a list of tables (FNV-1a over every slot).
fn digest(tables: &[Vec<u32>]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for t in tables {
        h = (h ^ t.len() as u64).wrapping_mul(0x100_0000_01b3);
        for &s in t {
            h = (h ^ u64::from(s)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// (sets, backends per set, table size, digest of the reference fill's
/// tables): sizes the agent uses (the default config's bands) and odd ones.
const GOLDEN: [(usize, usize, u32, u64); 9] = [
    (400, 1, 251, 0x416635cd6dc1b7a5),
    (400, 2, 251, 0xf1f71564b528af33),
    (300, 3, 359, 0x4a3e98b71aba62e8),
    (200, 15, 2011, 0x4b1a4bc22fb7d2c9),
    (100, 60, 8039, 0xa76a5f0e87bdbefd),
    (20, 300, 32141, 0xf78e62628a73ca2c),
    (6, 1000, 65537, 0x2c32c82a599c8dd7),
    (3, 5000, 65537, 0xa7e40b6b4cc01aab),
    (200, 7, 13, 0x17094b88bdf45612),
];

#[test]
fn same_tables_as_the_reference_fill() {
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    for (count, n, m, _) in GOLDEN {
        for bs in sets_v4(&mut rng, count, n) {
            assert_eq!(table(&bs, m), reference_table(&bs, m), "n {n} m {m}");
        }
    }
    // IPv6 backends (their identity is a hash of the address and port)
    for n in [1, 5, 40, 700] {
        let m = MaglevConfig::default().table_size(n);
        for _ in 0..8 {
            let bs: Vec<SocketAddrV6> = (0..n)
                .map(|_| {
                    let x = rng.next();
                    SocketAddrV6::new(
                        Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0000_0000 | u128::from(x)),
                        443,
                        0,
                        0,
                    )
                })
                .collect();
            assert_eq!(table(&bs, m), reference_table(&bs, m), "v6 n {n} m {m}");
        }
    }
}

/// The digests pin the tables themselves: a change to the fill and to its
/// reference at once still fails here.
#[test]
fn pinned_digests() {
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    for (count, n, m, want) in GOLDEN {
        let tables: Vec<Vec<u32>> = sets_v4(&mut rng, count, n)
            .iter()
            .map(|bs| table(bs, m))
            .collect();
        assert_eq!(digest(&tables), want, "{count} sets of {n} at m {m}");
    }
}
