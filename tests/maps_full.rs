//! A full map is `xlb_bpf::Error::Full`, told from the errno the kernel
//! returns (`E2BIG` for a hash map at max_entries, `ENOSPC` for an LPM
//! trie), whatever the message says; what was there stays.

use std::net::Ipv4Addr;

use libbpf_rs::MapCore;

use xlb_bpf::types::{xlb_tunnel_key, xlb_tunnel_val};
use xlb_bpf::Error;
use xlb_loader::DataPlane;

#[test]
fn a_full_hash_map_and_a_full_lpm_trie_are_full() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = DataPlane::load_private().expect("load");
    let m = &dp.maps;

    // local_addrs: a hash map (E2BIG when full).
    let max = m.local_addrs.max_entries();
    for i in 0..max {
        m.put_local_addr(Ipv4Addr::from(0x0a00_0000 + i)).unwrap();
    }
    let e = m.put_local_addr(Ipv4Addr::new(192, 0, 2, 1)).unwrap_err();
    assert!(
        matches!(e, Error::Full { map: "local_addrs", max: n } if n == max),
        "{e:?}"
    );
    assert_eq!(m.local_addrs().unwrap().len(), max as usize);
    // Replacing an entry of a full map is no insert: it works.
    m.put_local_addr(Ipv4Addr::from(0x0a00_0000)).unwrap();

    // tunnel: an LPM trie (ENOSPC when full).
    let max = m.tunnel.max_entries();
    let val = xlb_tunnel_val::new(Ipv4Addr::new(192, 0, 2, 9), [2, 0, 0, 0, 0, 1]);
    for i in 0..max {
        let k = xlb_tunnel_key::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24);
        m.put_tunnel(&k, &val).unwrap();
    }
    let k = xlb_tunnel_key::new(Ipv4Addr::new(172, 16, 0, 0), 16);
    let e = m.put_tunnel(&k, &val).unwrap_err();
    assert!(
        matches!(e, Error::Full { map: "tunnel", max: n } if n == max),
        "{e:?}"
    );
    assert_eq!(m.tunnels().unwrap().len(), max as usize);
}
