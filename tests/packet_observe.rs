//! # Observability of the data plane through BPF_PROG_RUN
//!
//! Per-backend counters (`backend_stats`): every forwarded frame counts on
//! its backend, whether its flow was new, a ct hit or a flow-cache hit, local
//! or remote, from XDP or tc; drops count on none; a reused id starts at zero.
//! Monitor events (`events`): written only while the monitor is on, only by
//! drop/reject paths, at most `rate` per second and CPU (the rest counted as
//! suppressed).
mod packet_util;

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::monitor::{Event, Hook, MonitorMaps};
use xlb_bpf::types::*;
use xlb_bpf::Reason;

#[test]
fn backend_counters_count_every_forwarded_frame() {
    let Some(env) = Env::new() else { return };
    pin_cpu();
    let m = env.maps();
    env.backend(1, "10.244.1.5:8080", None);
    env.backend(2, "10.244.2.7:8080", Some(PEER));
    m.put_tunnel(
        &xlb_tunnel_key::new(Ipv4Addr::new(10, 244, 2, 0), 24),
        &xlb_tunnel_val::new(PEER, VTEP_MAC),
    )
    .unwrap();
    env.service(tcp_key("10.96.0.10:80"), 1, 0, &[1; 7], 0);
    env.service(tcp_key("10.96.0.20:80"), 2, 7, &[2; 7], 0);
    env.service(
        tcp_key("10.96.0.30:80"),
        3,
        14,
        &[1; 7],
        XLB_SVC_F_SRC_RANGES,
    );

    // Local: a new flow, then ct hits and flow-cache hits of the same flow.
    let local = Frame::tcp(sa("198.18.0.100:40000"), sa("10.96.0.10:80")).build();
    for _ in 0..4 {
        assert_eq!(env.xdp_in(&local, Some(env.uplink)).0, XDP_PASS);
    }
    let c = m.backend_counter(1).unwrap();
    assert_eq!(
        (c.packets, c.bytes),
        (4, 4 * local.len() as u64),
        "local backend"
    );

    // Remote: encapsulated to the peer node.
    let remote = Frame::tcp(sa("198.18.0.100:40001"), sa("10.96.0.20:80")).build();
    for _ in 0..3 {
        assert_eq!(env.xdp_in(&remote, Some(env.uplink)).0, XDP_TX);
    }
    let c = m.backend_counter(2).unwrap();
    assert_eq!(
        (c.packets, c.bytes),
        (3, 3 * remote.len() as u64),
        "remote backend"
    );

    // A pod's frame to the Service through tc counts too.
    let pod = Frame::tcp(sa("10.244.1.9:5555"), sa("10.96.0.10:80")).build();
    assert_eq!(env.tc(&pod).0, TC_ACT_OK);
    assert_eq!(m.backend_counter(1).unwrap().packets, 5);

    // A dropped frame (source range denied) counts on no backend.
    let denied = Frame::tcp(sa("198.18.0.100:40002"), sa("10.96.0.30:80")).build();
    assert_eq!(env.xdp_in(&denied, Some(env.uplink)).0, XDP_DROP);
    assert_eq!(m.backend_counter(1).unwrap().packets, 5);

    // The id given to another endpoint (a new generation) starts at zero;
    // rewriting the same backend keeps its counts.
    m.put_backend(1, &xlb_backend::new(sa("10.244.1.5:8080"), None, 1))
        .unwrap();
    assert_eq!(m.backend_counter(1).unwrap().packets, 5);
    m.put_backend(1, &xlb_backend::new(sa("10.244.1.6:8080"), None, 2))
        .unwrap();
    let c = m.backend_counter(1).unwrap();
    assert_eq!((c.packets, c.bytes), (0, 0));
    assert_eq!(m.backend_counter(2).unwrap().packets, 3);
}

/// Every event waiting in the ring buffer.
fn drain(mon: &MonitorMaps) -> Vec<Event> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let sink = got.clone();
    let mut b = libbpf_rs::RingBufferBuilder::new();
    b.add(&mon.events, move |d: &[u8]| {
        sink.borrow_mut()
            .push(Event::parse(d).expect("an event record"));
        0
    })
    .unwrap();
    let rb = b.build().unwrap();
    rb.consume().unwrap();
    drop(rb);
    Rc::try_unwrap(got).unwrap().into_inner()
}

#[test]
fn monitor_events_only_while_on_only_drops_and_rate_limited() {
    let Some(env) = Env::new() else { return };
    pin_cpu();
    let m = env.maps();
    let mon = MonitorMaps::from_skel(&env.dp.xdp).unwrap();
    env.backend(1, "10.244.1.5:8080", None);
    env.service(tcp_key("10.96.0.10:80"), 1, 0, &[1; 7], 0);
    env.service(
        tcp_key("10.96.0.30:80"),
        3,
        7,
        &[1; 7],
        XLB_SVC_F_SRC_RANGES,
    );
    let denied = Frame::tcp(sa("198.18.0.100:40002"), sa("10.96.0.30:80")).build();
    let fine = Frame::tcp(sa("198.18.0.100:40003"), sa("10.96.0.10:80")).build();

    // Off: drops write nothing.
    for _ in 0..3 {
        assert_eq!(env.xdp_in(&denied, Some(env.uplink)).0, XDP_DROP);
    }
    assert!(drain(&mon).is_empty());
    assert_eq!(mon.counts().unwrap().sent, 0);

    // On, 5 per second: forwarded frames write nothing, drops do, up to the rate.
    mon.set(true, 5).unwrap();
    for _ in 0..3 {
        assert_eq!(env.xdp_in(&fine, Some(env.uplink)).0, XDP_PASS);
    }
    assert!(drain(&mon).is_empty(), "forwarded frames are no events");
    for _ in 0..20 {
        assert_eq!(env.xdp_in(&denied, Some(env.uplink)).0, XDP_DROP);
    }
    let ev = drain(&mon);
    let n = mon.counts().unwrap();
    assert_eq!(n.sent + n.suppressed, 20, "{n:?}");
    assert_eq!(ev.len() as u64, n.sent, "{n:?}");
    // 20 runs take far less than the 3 s that would let 15 through.
    assert!(n.sent >= 5 && n.suppressed >= 1, "{n:?}");
    let e = ev[0];
    assert_eq!(Reason::name(e.reason), "drop_src_range");
    assert_eq!(e.svc_id, Some(3));
    assert_eq!(
        (e.src, e.dst, e.proto),
        (sa("198.18.0.100:40002"), sa("10.96.0.30:80"), TCP)
    );
    assert_eq!((e.hook, e.ifindex), (Hook::Xdp, env.uplink));
    assert_eq!(e.len as usize, denied.len());
    assert_eq!(
        m.reason(Reason::from_name("drop_src_range").unwrap())
            .unwrap()
            .packets,
        23
    );

    // A reject (no endpoints: TCP RST) from tc is an event too, with its Service.
    env.service(tcp_key("10.96.0.40:80"), 4, 14, &[], 0);
    mon.set(true, 1000).unwrap();
    let pod = Frame::tcp(sa("10.244.1.9:5555"), sa("10.96.0.40:80")).build();
    env.tc(&pod);
    let ev = drain(&mon);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(Reason::name(ev[0].reason), "tx_reject");
    assert_eq!((ev[0].hook, ev[0].svc_id), (Hook::Tc, Some(4)));

    // Off again: nothing more.
    mon.set(false, 0).unwrap();
    env.xdp_in(&denied, Some(env.uplink));
    assert!(drain(&mon).is_empty());
}
