//! # XDP packet tests: caches, filters and the clock
//!
//! The uplink program through BPF_PROG_RUN: the ct clock, the per-CPU flow
//! cache, the frontend and backend filters, and flows of deleted Services.
mod packet_util;

use std::net::Ipv4Addr;

use packet_util::xdp::*;
use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::be32;

/// ct timestamps come from the timer-driven clock (clock.h): CLOCK_MONOTONIC,
/// at most a few ms behind, and moving (a refresh after a second of silence
/// writes the new time). The bounds are wide: nothing here measures speed.
#[test]
fn ct_timestamps_follow_the_monotonic_clock() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let key = xlb_ct_key::new(sa(CLIENT_SA), sa("10.96.0.10:80"), TCP);
    let t0 = now_ns();
    open(&env, "10.96.0.10:80");
    let first = env.maps().ct_entry(&key).unwrap().unwrap().last_seen;
    assert!(
        first + 500_000_000 > t0 && first <= now_ns(),
        "created at {first}, clock {t0}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1200));
    open(&env, "10.96.0.10:80");
    let second = env.maps().ct_entry(&key).unwrap().unwrap().last_seen;
    assert!(
        second >= first + 1_000_000_000 && second <= now_ns(),
        "refreshed at {second} (first {first}, clock {})",
        now_ns()
    );
}

/// The per-CPU flow cache (flowcache.h) serves a flow's second and later
/// packets. It must see everything the ct entry would: a forward entry
/// flagged by a takeover of its reverse key, a reverse entry rewritten by
/// the data plane or by userspace, and a backend whose generation moved.
#[test]
fn flow_cache_sees_takeovers_ct_writes_and_backend_changes() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let vip = sa("10.96.0.10:80");
    let node_port = std::net::SocketAddrV4::new(NODE, 30080);
    let rev_key = xlb_ct_key::new(sa(BE_LOCAL), sa(CLIENT_SA), TCP);
    // Both flows and the replies are cached (second packets on).
    for _ in 0..3 {
        send(&env, vip);
    }
    for _ in 0..3 {
        assert_eq!(reply_src(&env), vip);
    }
    // The NodePort flow takes the reverse key: the cached reverse entry must
    // not answer for it any more.
    send(&env, node_port);
    assert_eq!(reply_src(&env), node_port, "cached reverse entry voided");
    assert_eq!(reply_src(&env), node_port);
    // The ClusterIP flow was flagged: its cached forward hit must not hide
    // the flag, so its next packet takes the reverse key back.
    send(&env, vip);
    assert_eq!(
        env.maps().ct_entry(&rev_key).unwrap().unwrap().nat(),
        vip,
        "flag seen through the cache"
    );
    assert_eq!(reply_src(&env), vip);
    // Userspace rewrites the reverse entry (xlb_bpf::Maps bumps ct_epoch).
    let mut rev = env.maps().ct_entry(&rev_key).unwrap().unwrap();
    rev.nat_addr = be32(Ipv4Addr::new(10, 96, 0, 99));
    env.maps().put_ct(&rev_key, &rev).unwrap();
    assert_eq!(reply_src(&env), sa("10.96.0.99:80"), "userspace write seen");
    // A cached forward hit still checks the backend's generation.
    for _ in 0..3 {
        send(&env, vip);
    }
    let mut be = env.maps().backend(1).unwrap().unwrap();
    be.generation += 1;
    env.maps().put_backend(1, &be).unwrap();
    send(&env, vip);
    let fwd = env
        .maps()
        .ct_entry(&xlb_ct_key::new(sa(CLIENT_SA), vip, TCP))
        .unwrap()
        .unwrap();
    assert_eq!(
        fwd.generation, be.generation,
        "re-chosen at the new generation, not served from the cache"
    );
}

/// fe_filter counts the services keys: an insert counts once (a rewrite of
/// the same key does not), a delete uncounts, and the data plane skips a
/// frontend only when its slot is 0. Adopted maps written without counting
/// are recounted by fe_filter_repair.
#[test]
fn fe_filter_counts_services_keys() {
    let Some(env) = Env::new() else { return };
    let m = env.maps();
    let key = tcp_key("10.96.9.1:80");
    let count = |m: &xlb_bpf::Maps| m.fe_filter_count(&key).unwrap().expect("fe_filter");
    let base = count(m);
    env.backend(1, BE_LOCAL, None);
    m.put_config(&env.config()).unwrap();
    env.service(key, 1, 0, &[1; 7], 0);
    assert_eq!(count(m), base + 1);
    env.service(key, 1, 0, &[1; 7], 0);
    assert_eq!(
        count(m),
        base + 1,
        "rewriting a key does not count it again"
    );
    let (rc, _) = env.xdp(&syn("10.96.9.1:80").build());
    assert_eq!(rc, XDP_PASS);
    assert_eq!(ct_backend(&env, CLIENT_SA, "10.96.9.1:80", TCP), 1);
    assert!(m.delete_service(&key).unwrap());
    assert_eq!(count(m), base);
    assert!(!m.delete_service(&key).unwrap());
    assert_eq!(count(m), base, "deleting a missing key uncounts nothing");
    // A key inserted behind the filter's back (an older xlb's pins): the
    // repair recounts it, and only when the filter is empty.
    env.clear_state();
    let raw = &m.services;
    let val = xlb_svc_val {
        svc_id: 1,
        table_size: 7,
        ..Default::default()
    };
    use libbpf_rs::MapCore;
    raw.update(
        unsafe { plain::as_bytes(&key) },
        unsafe { plain::as_bytes(&val) },
        libbpf_rs::MapFlags::ANY,
    )
    .unwrap();
    assert_eq!(count(m), 0);
    assert!(m.filters_repair().unwrap());
    assert_eq!(count(m), 1);
    assert!(!m.filters_repair().unwrap(), "not empty: nothing to do");
    let (rc, _) = env.xdp(&Frame::tcp(sa("198.18.0.100:40001"), sa("10.96.9.1:80")).build());
    assert_eq!(rc, XDP_PASS);
    assert_eq!(
        ct_backend(&env, "198.18.0.100:40001", "10.96.9.1:80", TCP),
        1
    );
}

/// be_filter counts the addresses the backends slots hold: a write counts
/// the new address and uncounts the one it replaced; rewriting a slot with
/// the same address (a flag or generation change) leaves the count alone.
#[test]
fn be_filter_follows_the_backends_slots() {
    let Some(env) = Env::new() else { return };
    let m = env.maps();
    let a = Ipv4Addr::new(10, 244, 9, 1);
    let b = Ipv4Addr::new(10, 244, 9, 2);
    let count = |addr| m.be_filter_count(addr).unwrap().expect("be_filter");
    let (a0, b0) = (count(a), count(b));
    let be = |addr: Ipv4Addr| xlb_backend::new(std::net::SocketAddrV4::new(addr, 8080), None, 1);
    m.put_backend(9, &be(a)).unwrap();
    assert_eq!(count(a), a0 + 1);
    let mut again = be(a);
    again.generation = 2;
    again.flags = 0;
    m.put_backend(9, &again).unwrap();
    assert_eq!(count(a), a0 + 1, "same address: counted once");
    m.put_backend(9, &be(b)).unwrap();
    assert_eq!((count(a), count(b)), (a0, b0 + 1), "the slot moved to b");
    m.put_backend(9, &xlb_backend::default()).unwrap();
    assert_eq!(count(b), b0, "an empty slot counts nothing");
    // A reply from a backend on the uplink (untunneled) still finds its
    // reverse entry; a frame from any other source to no frontend passes
    // as not ours without one.
    fixture(&env);
    open(&env, "10.96.0.10:80");
    let (rc, out) = env.xdp(&reply_from(BE_LOCAL).build());
    assert_eq!(rc, XDP_PASS);
    assert_eq!(check_eth_ipv4(&out, "revnat").2.src(), sa("10.96.0.10:80"));
    let stranger = Frame::tcp(sa("198.18.0.77:5000"), sa(CLIENT_SA)).build();
    let (rc, out) = env.xdp(&stranger);
    assert_eq!((rc, out.as_slice()), (XDP_PASS, stranger.as_slice()));
}

/// A deleted Service's flows are no longer translated (as in Cilium): with its
/// frontend gone from fe_filter and the client no backend, the frame cannot
/// match a ct entry and passes untouched, without a lookup.
#[test]
fn a_deleted_services_flows_pass_untranslated() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let f = syn("10.96.0.70:80");
    let (rc, out) = env.xdp(&f.build());
    assert_eq!(rc, XDP_PASS);
    assert_ne!(out, f.build(), "balanced while the Service exists");
    assert!(env
        .maps()
        .delete_service(&tcp_key("10.96.0.70:80"))
        .unwrap());
    let before = env.reasons();
    let (rc, out) = env.xdp(&f.build());
    assert_eq!((rc, out), (XDP_PASS, f.build()));
    let after = env.reasons();
    let r = XLB_R_PASS_NOT_SERVICE as usize;
    assert_eq!(after[r] - before[r], 1, "counted as not ours");
}
