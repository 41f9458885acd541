//! Maglev table build: N = 1000 backends, M = 65537 (the default ceiling),
//! and a typical Service (N = 10, M = 1009).

use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, Criterion};

fn backends(n: u32) -> Vec<SocketAddrV4> {
    (0..n)
        .map(|i| SocketAddrV4::new(Ipv4Addr::from(0x0af4_0000 + i), 8080))
        .collect()
}

fn build(c: &mut Criterion) {
    let cfg = xlb::maglev::MaglevConfig::default();
    let big = backends(1000);
    assert_eq!(cfg.table_size(big.len()), 65537);
    c.bench_function("maglev table N=1000 M=65537", |b| {
        b.iter(|| xlb::maglev::table(std::hint::black_box(&big), 65537))
    });
    let small = backends(10);
    c.bench_function("maglev table N=10 M=1009", |b| {
        b.iter(|| xlb::maglev::table(std::hint::black_box(&small), 1009))
    });
}

criterion_group!(benches, build);
criterion_main!(benches);
