//! The IPv6 paths of `xlb bench prog`: the maps an IPv6 Service needs
//! (services6, backends6, tunnel6, config6; written raw, as laid out in
//! bpf/include/types.h) and the frames of each path.

use std::net::Ipv6Addr;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use xlb_bpf::consts::*;
use xlb_loader::DataPlane;

use super::{fold, ip_cmd, sum16, ACK, NODE_MAC, SYN};

const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 2);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0xc6, 0x12, 0, 0x64];

/// The frames of the IPv6 paths.
pub(super) struct Frames6 {
    pub not_ours: Vec<u8>,
    pub hit: Vec<u8>,
    pub miss: Vec<Vec<u8>>,
    pub remote: Vec<u8>,
}

fn addr(s: &str) -> Ipv6Addr {
    s.parse().expect("an IPv6 address")
}

/// Ethernet / IPv6 / TCP (`flags`) with a valid checksum.
fn tcp6(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&src.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.1.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = sum16(&src.0.octets()) + sum16(&dst.0.octets()) + 20 + 6;
    let c = fold(pseudo + sum16(&tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(74);
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
    f.extend_from_slice(&src.0.octets());
    f.extend_from_slice(&dst.0.octets());
    f.extend_from_slice(&tcp);
    f
}

fn put(map: &libbpf_rs::MapMut, what: &str, k: &[u8], v: &[u8]) -> Result<()> {
    map.update(k, v, MapFlags::ANY)
        .with_context(|| format!("writing {what}"))
}

/// IPv6 on the bench veth (the node address, a permanent neighbour PEER6),
/// the IPv6 Services and backends (ids 11.., Maglev regions from 1024), and
/// the frames: `flows` new flows for the CT-miss path.
pub(super) fn setup(dp: &DataPlane, flows: usize) -> Result<Frames6> {
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
        .context("enabling IPv6 forwarding in the bench namespace")?;
    std::fs::write("/proc/sys/net/ipv6/conf/v0/forwarding", "1")
        .context("enabling IPv6 forwarding on the bench veth")?;
    ip_cmd(&[
        "-6",
        "addr",
        "add",
        "2001:db8:18::1/64",
        "dev",
        "v0",
        "nodad",
    ])?;
    ip_cmd(&[
        "-6",
        "neigh",
        "replace",
        "2001:db8:18::2",
        "lladdr",
        "02:00:c6:12:00:02",
        "dev",
        "v0",
        "nud",
        "permanent",
    ])?;
    let m = &dp.xdp.maps;
    let mut cfg = NODE6.octets().to_vec();
    cfg.extend_from_slice(&[0; 8]);
    put(&m.config6, "config6", &0u32.to_ne_bytes(), &cfg)?;
    let backend = |id: u32, a: Ipv6Addr, port: u16, node: Ipv6Addr| -> Result<()> {
        let mut v = a.octets().to_vec();
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&[XLB_BE_F_ACTIVE as u8, 0]);
        v.extend_from_slice(&1u32.to_ne_bytes());
        v.extend_from_slice(&node.octets());
        put(&m.backends6, "backends6", &id.to_ne_bytes(), &v)
    };
    // The CT-hit Service's backend is its own address (as for IPv4).
    backend(11, addr("fd00:96::10"), 80, Ipv6Addr::UNSPECIFIED)?;
    for (id, a) in [
        (12, "fd00:244:1::10"),
        (13, "fd00:244:1::11"),
        (14, "fd00:244:1::12"),
    ] {
        backend(id, addr(a), 8080, Ipv6Addr::UNSPECIFIED)?;
    }
    backend(15, addr("fd00:244:2::10"), 8080, PEER6)?;
    let mut tk = 64u32.to_ne_bytes().to_vec();
    tk.extend_from_slice(&addr("fd00:244:2::").octets());
    let mut tv = PEER6.octets().to_vec();
    tv.extend_from_slice(&[0x02, 0xee, 0, 0, 0, 2, 0, 0]);
    put(&m.tunnel6, "tunnel6", &tk, &tv)?;
    let svc = |vip: &str, id: u32, off: u32, table: &[u32]| -> Result<()> {
        dp.maps.write_maglev(off, table)?;
        let mut k = addr(vip).octets().to_vec();
        k.extend_from_slice(&80u16.to_be_bytes());
        k.extend_from_slice(&[6, XLB_KIND_ADDR as u8]);
        let mut v = Vec::new();
        for w in [id, 0, off, table.len() as u32, 0, table.len() as u32] {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        v.extend_from_slice(&[0; 8]);
        put(&m.services6, "services6", &k, &v)
    };
    svc("fd00:96::10", 11, 1024, &[11; 251])?;
    let multi: Vec<u32> = (0..251).map(|i| 12 + i % 3).collect();
    svc("fd00:96::11", 12, 1280, &multi)?;
    svc("fd00:96::20", 13, 1536, &[15; 251])?;
    let client = (addr("2001:db8:18::64"), 40000);
    let miss = (0..flows)
        .map(|i| {
            let src = Ipv6Addr::new(0x2001, 0xdb8, 0x19, 0, 0, 0, (i / 60000) as u16, i as u16);
            tcp6(
                (src, 1024 + (i % 60000) as u16),
                (addr("fd00:96::11"), 80),
                SYN,
            )
        })
        .collect();
    Ok(Frames6 {
        not_ours: tcp6(client, (addr("2001:db8:18::99"), 80), ACK),
        hit: tcp6(client, (addr("fd00:96::10"), 80), ACK),
        miss,
        remote: tcp6(client, (addr("fd00:96::20"), 80), ACK),
    })
}
