//! # XDP packet tests: stateless TCP connections
//!
//! The uplink program through BPF_PROG_RUN with a TCP Service that has a
//! stateless path (`svc_stable`, bpf/include/stateless.h): a connection to a
//! remote backend leaves neither a half-open `ct_syn` slot nor a ct entry
//! while the table is stable. In a window after a table change an older
//! connection keeps the stable table's backend (pinned in ct, also when the
//! backend is terminating), while a SYN opens its connection on the current
//! table (half-open when the stable table names another backend, so its ACK
//! is not taken for an older connection's). ct is looked up for as long as
//! an established TCP entry of the Service may live, not a UDP timeout.
mod packet_util;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use packet_util::stateless::*;
use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

/// The stateless Service: 10.96.0.91:80/TCP, svc_id 21, backends on node PEER.
const VIP: &str = "10.96.0.91:80";
const SVC: u32 = 21;
const BE_A: (u32, &str) = (30, "10.244.2.30:8080");
const BE_B: (u32, &str) = (31, "10.244.2.31:8080");
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

fn setup(env: &Env, table: &[u32]) {
    env.clear_state();
    fixture(env);
    env.backend(BE_A.0, BE_A.1, Some(PEER));
    env.backend(BE_B.0, BE_B.1, Some(PEER));
    env.service(tcp_key(VIP), SVC, OLD_OFF, table, 0);
    stable(env, OLD_OFF, table.len() as u32, 0);
}

fn stable(env: &Env, off: u32, size: u32, window_end: u64) {
    put_stable(env, SVC, off, size, window_end);
}

fn client(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 101), port)
}

/// Sends one segment of `c` to VIP with `flags`; the backend it was
/// encapsulated to (with the frontend trailer: tunnel NAT).
fn send(env: &Env, c: SocketAddrV4, flags: u8) -> SocketAddrV4 {
    let mut f = Frame::tcp(c, sa(VIP));
    f.tcp_flags = flags;
    let (rc, out) = env.xdp(&f.build());
    assert!(rc == XDP_TX || rc == XDP_REDIRECT, "{c}: verdict {rc}");
    let v = check_vxlan(&out, "encap");
    assert_eq!(v.fe, Some(sa(VIP)), "the frontend trailer");
    check_eth_ipv4(&v.inner, "balanced").2.dst()
}

fn ct_fwd(env: &Env, c: SocketAddrV4) -> Option<xlb_ct_val> {
    env.maps()
        .ct_entry(&xlb_ct_key::new(c, sa(VIP), TCP))
        .unwrap()
}

fn pick(table: &[u32], c: SocketAddrV4) -> u32 {
    maglev_pick(table, c, sa(VIP), TCP, false)
}

fn addr_of(id: u32) -> SocketAddrV4 {
    sa([BE_A, BE_B].iter().find(|b| b.0 == id).unwrap().1)
}

/// Clients whose old and new picks differ (`differ`) or agree.
fn clients(from: u16, differ: bool, n: usize) -> Vec<SocketAddrV4> {
    (from..from + 1000)
        .map(client)
        .filter(|&c| (pick(&NEW, c) != pick(&OLD, c)) == differ)
        .take(n)
        .collect()
}

#[test]
fn a_connection_to_a_remote_backend_of_a_stable_service_leaves_no_state() {
    let Some(env) = Env::new() else { return };
    setup(&env, &NEW);
    for port in 41000..41012 {
        let c = client(port);
        let be = addr_of(pick(&NEW, c));
        for flags in [SYN, ACK, ACK, FIN | ACK, ACK] {
            assert_eq!(send(&env, c, flags), be, "{c} flags {flags:#x}");
        }
        assert!(ct_fwd(&env, c).is_none(), "{c}: no forward entry");
        assert!(
            env.half_open(&c.to_string()).is_none(),
            "{c}: no half-open slot"
        );
        let rk = xlb_ct_key::new(be, c, TCP);
        assert!(
            env.maps().ct_entry(&rk).unwrap().is_none(),
            "{c}: no reverse entry"
        );
    }
    // The same Service without svc_stable: half-open, then ct at the ACK.
    stable(&env, 0, 0, 0);
    let c = client(41100);
    let be = pick(&NEW, c);
    assert_eq!(send(&env, c, SYN), addr_of(be));
    assert_eq!(
        env.half_open(&c.to_string()).expect("half-open").backend_id,
        be
    );
    assert_eq!(send(&env, c, ACK), addr_of(be));
    assert_eq!(ct_fwd(&env, c).expect("forward entry").backend_id, be);
}

/// The table changes while A (the old table's only backend) terminates:
/// connections opened before keep A (pinned in ct; without the window they
/// would move), connections whose tables agree stay stateless, and a SYN in
/// the window goes by the current table, half-open when the stable table
/// differs, so its ACK stays on the backend its SYN chose.
#[test]
fn in_a_window_older_connections_keep_their_backend_and_a_syn_follows_the_current_table() {
    let Some(env) = Env::new() else { return };
    setup(&env, &OLD);
    let moved = clients(43000, true, 6);
    let kept = clients(43000, false, 3);
    for &c in moved.iter().chain(&kept) {
        assert_eq!(send(&env, c, SYN), sa(BE_A.1));
        assert_eq!(send(&env, c, ACK), sa(BE_A.1));
        assert!(ct_fwd(&env, c).is_none());
    }
    // A terminates (draining: active, no new connections); the sync writes
    // the window naming the old table, then switches the frontend.
    let mut draining = xlb_backend::new(sa(BE_A.1), Some(PEER), 1);
    draining.flags |= XLB_BE_F_DRAINING as u8;
    env.maps().put_backend(BE_A.0, &draining).unwrap();
    stable(
        &env,
        OLD_OFF,
        OLD.len() as u32,
        now_ns() + 3_600_000_000_000,
    );
    env.service(tcp_key(VIP), SVC, NEW_OFF, &NEW, 0);
    cache_lapse();
    for &c in &moved {
        assert_eq!(send(&env, c, ACK), sa(BE_A.1), "{c} keeps its backend");
        assert_eq!(ct_fwd(&env, c).expect("pinned").backend_id, BE_A.0);
    }
    for &c in &kept {
        assert_eq!(send(&env, c, ACK), sa(BE_A.1));
        assert!(ct_fwd(&env, c).is_none(), "{c}: both tables agree");
    }
    // New connections: by the current table, never to the draining A.
    for &c in &clients(44000, true, 6) {
        let now = pick(&NEW, c);
        assert_eq!(send(&env, c, SYN), addr_of(now), "{c}: its SYN");
        let h = env
            .half_open(&c.to_string())
            .expect("half-open in the window");
        assert_eq!(h.backend_id, now);
        cache_lapse();
        assert_eq!(send(&env, c, ACK), addr_of(now), "{c}: its ACK");
        assert_eq!(ct_fwd(&env, c).expect("promoted").backend_id, now);
    }
    for &c in &clients(45000, false, 3) {
        assert_eq!(send(&env, c, SYN), addr_of(pick(&NEW, c)));
        assert!(env.half_open(&c.to_string()).is_none(), "{c}: tables agree");
    }
}

/// With ct_udp = 1 s and ct_tcp_established = 600 s: a TCP Service's ct is
/// still looked up after silence longer than the UDP timeout (a pinned
/// connection idle for minutes keeps its backend), as long as an established
/// entry of the Service may live.
#[test]
fn ct_is_looked_up_for_as_long_as_an_established_entry_may_live() {
    let Some(env) = Env::new() else { return };
    setup(&env, &OLD);
    let mut cfg = env.config();
    cfg.ct_udp = 1;
    cfg.ct_tcp_established = 600;
    env.maps().put_config(&cfg).unwrap();
    let c = client(47000);
    let pin = xlb_ct_val {
        backend_id: BE_B.0,
        generation: 1,
        svc_id: SVC,
        flags: XLB_CT_F_REMOTE | XLB_CT_F_TNAT,
        last_seen: now_ns(),
        ..Default::default()
    };
    env.maps()
        .put_ct(&xlb_ct_key::new(c, sa(VIP), TCP), &pin)
        .unwrap();
    stable(&env, OLD_OFF, OLD.len() as u32, 0); // ct_seen := now
    assert_eq!(send(&env, c, ACK), sa(BE_B.1), "the pinned connection");
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(
        send(&env, c, ACK),
        sa(BE_B.1),
        "idle longer than ct_udp + 1 s: still looked up"
    );
}
