//! # XDP packet tests: stateless UDP flows
//!
//! The uplink program through BPF_PROG_RUN with a Service that has a
//! stateless path (`svc_stable`, bpf/include/stateless.h): a new UDP flow to a
//! remote backend writes no ct entry while the table is stable; a table
//! change keeps the flows that followed the old table on their backend for
//! the window (and fails without the stable table); a local backend keeps its
//! ct entries; ct is not looked up while no entry of the Service can be live.
mod packet_util;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use packet_util::stateless::*;
use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

/// The stateless Service: 10.96.0.90:53/UDP, svc_id 20, backends on node PEER.
const VIP: &str = "10.96.0.90:53";
const SVC: u32 = 20;
/// Two remote backends (node PEER) and a local one.
const BE_A: (u32, &str) = (30, "10.244.2.30:5353");
const BE_B: (u32, &str) = (31, "10.244.2.31:5353");
const BE_L: (u32, &str) = (32, "10.244.1.32:5353");

fn setup(env: &Env, table: &[u32]) {
    fixture(env);
    env.backend(BE_A.0, BE_A.1, Some(PEER));
    env.backend(BE_B.0, BE_B.1, Some(PEER));
    env.backend(BE_L.0, BE_L.1, None);
    env.service(udp_key(VIP), SVC, OLD_OFF, table, 0);
    stable(env, OLD_OFF, table.len() as u32, 0);
}

fn stable(env: &Env, off: u32, size: u32, window_end: u64) {
    put_stable(env, SVC, off, size, window_end);
}

fn client(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 100), port)
}

/// Sends one datagram of `c` to VIP; returns the backend address it was
/// sent to (the inner destination of the encapsulation, or the DNATed
/// destination of a local pass).
fn send(env: &Env, c: SocketAddrV4) -> SocketAddrV4 {
    let f = Frame::udp(c, sa(VIP));
    let (rc, out) = env.xdp(&f.build());
    let inner = match rc {
        XDP_TX | XDP_REDIRECT => {
            let v = check_vxlan(&out, "encap");
            assert_eq!(v.flags, 0x0800_0003, "xlb mark + frontend trailer");
            // the backend's node reverse-NATs the replies to the frontend
            assert_eq!(v.fe, Some(sa(VIP)), "the frontend trailer");
            v.inner
        }
        XDP_PASS => out,
        rc => panic!("{c}: verdict {rc}"),
    };
    check_eth_ipv4(&inner, "balanced").2.dst()
}

fn ct_fwd(env: &Env, c: SocketAddrV4) -> Option<xlb_ct_val> {
    env.maps()
        .ct_entry(&xlb_ct_key::new(c, sa(VIP), UDP))
        .unwrap()
}

fn pick(table: &[u32], c: SocketAddrV4) -> u32 {
    maglev_pick(table, c, sa(VIP), UDP, false)
}

fn addr_of(id: u32) -> SocketAddrV4 {
    sa([BE_A, BE_B, BE_L].iter().find(|b| b.0 == id).unwrap().1)
}

#[test]
fn a_new_udp_flow_to_a_remote_backend_of_a_stable_service_writes_no_ct_entry() {
    let Some(env) = Env::new() else { return };
    setup(&env, &NEW);
    for port in 41000..41020 {
        let c = client(port);
        for _ in 0..3 {
            assert_eq!(send(&env, c), addr_of(pick(&NEW, c)), "{c}");
        }
        assert!(ct_fwd(&env, c).is_none(), "{c}: no forward entry");
        for b in [BE_A.1, BE_B.1] {
            let rk = xlb_ct_key::new(sa(b), c, UDP);
            assert!(
                env.maps().ct_entry(&rk).unwrap().is_none(),
                "{c}: no reverse entry"
            );
        }
    }
    // The same Service without svc_stable keeps every flow in ct.
    stable(&env, 0, 0, 0);
    let c = client(41100);
    assert_eq!(send(&env, c), addr_of(pick(&NEW, c)));
    assert_eq!(
        ct_fwd(&env, c).expect("forward entry").backend_id,
        pick(&NEW, c)
    );
}

#[test]
fn a_local_backend_keeps_its_ct_entries() {
    let Some(env) = Env::new() else { return };
    setup(&env, &[32; 13]);
    let c = client(42000);
    assert_eq!(send(&env, c), sa(BE_L.1));
    assert_eq!(ct_fwd(&env, c).expect("forward entry").backend_id, BE_L.0);
    let rk = xlb_ct_key::new(sa(BE_L.1), c, UDP);
    assert!(env
        .maps()
        .ct_entry(&rk)
        .unwrap()
        .expect("reverse")
        .is_reverse());
}

/// The table changes under live stateless flows: each keeps the old
/// table's backend (now in a ct entry) through the window and after it; a
/// flow that both tables agree on stays stateless; once the window is over
/// a new flow follows the new table. Without the stable table (the window
/// not written) the flows would move: the last assertion block checks that
/// too, so the test fails if the data plane ignored svc_stable.
#[test]
fn a_table_change_keeps_the_flows_of_the_old_table_on_their_backend() {
    let Some(env) = Env::new() else { return };
    setup(&env, &OLD);
    let moved: Vec<_> = (43000..44000)
        .map(client)
        .filter(|&c| pick(&NEW, c) != pick(&OLD, c))
        .take(8)
        .collect();
    let kept: Vec<_> = (43000..44000)
        .map(client)
        .filter(|&c| pick(&NEW, c) == pick(&OLD, c))
        .take(4)
        .collect();
    for &c in moved.iter().chain(&kept) {
        assert_eq!(send(&env, c), sa(BE_A.1));
        assert!(ct_fwd(&env, c).is_none());
    }
    // The sync's order: the window naming the old table, then the new table,
    // then the switch of the frontend.
    stable(&env, OLD_OFF, OLD.len() as u32, now_ns() + 120_000_000_000);
    env.service(udp_key(VIP), SVC, NEW_OFF, &NEW, 0);
    cache_lapse();
    for &c in &moved {
        assert_eq!(send(&env, c), sa(BE_A.1), "{c} keeps its backend");
        assert_eq!(ct_fwd(&env, c).expect("pinned").backend_id, BE_A.0);
    }
    for &c in &kept {
        assert_eq!(send(&env, c), sa(BE_A.1));
        assert!(ct_fwd(&env, c).is_none(), "{c}: both tables agree");
    }
    // The window ends (the agent then names the current table).
    stable(&env, NEW_OFF, NEW.len() as u32, 0);
    cache_lapse();
    for &c in &moved {
        assert_eq!(
            send(&env, c),
            sa(BE_A.1),
            "{c}: its ct entry after the window"
        );
    }
    let fresh: Vec<_> = (44000..45000)
        .map(client)
        .filter(|&c| pick(&NEW, c) != pick(&OLD, c))
        .take(4)
        .collect();
    for &c in &fresh {
        assert_eq!(send(&env, c), addr_of(pick(&NEW, c)));
        assert!(ct_fwd(&env, c).is_none());
    }
    // Without the window the same change moves the flows of the old table.
    let others: Vec<_> = (45000..46000)
        .map(client)
        .filter(|&c| pick(&NEW, c) != pick(&OLD, c))
        .take(4)
        .collect();
    env.service(udp_key(VIP), SVC, OLD_OFF, &OLD, 0);
    stable(&env, OLD_OFF, OLD.len() as u32, 0);
    for &c in &others {
        assert_eq!(send(&env, c), sa(BE_A.1));
    }
    env.service(udp_key(VIP), SVC, NEW_OFF, &NEW, 0);
    stable(&env, NEW_OFF, NEW.len() as u32, 0);
    cache_lapse();
    for &c in &others {
        assert_eq!(
            send(&env, c),
            addr_of(pick(&NEW, c)),
            "{c} moved: no window"
        );
    }
}

/// In a window, a flow whose old backend is gone takes the new table's
/// choice and keeps it in ct.
#[test]
fn a_flow_whose_old_backend_left_takes_the_new_choice_in_the_window() {
    let Some(env) = Env::new() else { return };
    setup(&env, &OLD);
    let c = (46000..47000)
        .map(client)
        .find(|&c| pick(&NEW, c) == BE_B.0)
        .unwrap();
    assert_eq!(send(&env, c), sa(BE_A.1));
    stable(&env, OLD_OFF, OLD.len() as u32, now_ns() + 120_000_000_000);
    let mut gone = xlb_backend::new(sa(BE_A.1), Some(PEER), 2);
    gone.flags = 0;
    env.maps().put_backend(BE_A.0, &gone).unwrap();
    env.service(udp_key(VIP), SVC, NEW_OFF, &[31; 13], 0);
    cache_lapse();
    assert_eq!(send(&env, c), sa(BE_B.1));
    assert_eq!(ct_fwd(&env, c).expect("kept in ct").backend_id, BE_B.0);
}

/// be_filter takes a client for a backend when their addresses share a slot
/// (or when it is one: a host-network endpoint's node reaching a NodePort).
/// Its frames look ct up first; a miss still takes the stateless path (no
/// ct entry, as for any client), and a ct hit of a flow of it pinned in ct
/// refreshes the Service's ct_seen, as any flow's does.
#[test]
fn a_client_that_be_filter_takes_for_a_backend_is_stateless_too() {
    let Some(env) = Env::new() else { return };
    setup(&env, &NEW);
    // A backend (of no Service here) at the client's address.
    env.backend(33, "198.18.0.100:8080", Some(PEER));
    for port in 43000..43010 {
        let c = client(port);
        for _ in 0..3 {
            assert_eq!(send(&env, c), addr_of(pick(&NEW, c)), "{c}");
        }
        assert!(ct_fwd(&env, c).is_none(), "{c}: no forward entry");
    }
    // A flow of the client pinned in ct to B (the table would pick another).
    let d = (43100..)
        .map(client)
        .find(|d| pick(&NEW, *d) != BE_B.0)
        .unwrap();
    let pin = xlb_ct_val {
        backend_id: BE_B.0,
        generation: 1,
        svc_id: SVC,
        flags: XLB_CT_F_REMOTE,
        last_seen: now_ns(),
        ..Default::default()
    };
    env.maps()
        .put_ct(&xlb_ct_key::new(d, sa(VIP), UDP), &pin)
        .unwrap();
    let before = env.maps().svc_stable(SVC).unwrap().ct_seen;
    // ct_seen is written at most once a second.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(send(&env, d), sa(BE_B.1), "the pinned flow");
    let after = env.maps().svc_stable(SVC).unwrap().ct_seen;
    assert!(
        after > before,
        "a ct hit refreshes ct_seen ({before} -> {after})"
    );
}

/// With ct_udp = 2 s (the shortest that outlives the once-a-second refresh): once no ct entry of the Service was hit for ct_udp
/// and the one second ct_seen may lag,
/// ct is not looked up (an entry written behind the data plane's back is not
/// seen); a pinned flow that keeps sending keeps ct_seen fresh and its
/// backend after the window, where skipping ct would move it.
#[test]
fn ct_is_looked_up_while_an_entry_of_the_service_may_be_live() {
    let Some(env) = Env::new() else { return };
    setup(&env, &OLD);
    let mut cfg = env.config();
    cfg.ct_udp = 2;
    env.maps().put_config(&cfg).unwrap();
    // A flow pinned to B (not the table's choice), still sending.
    let c = client(47000);
    let pin = |last_seen| xlb_ct_val {
        backend_id: BE_B.0,
        generation: 1,
        svc_id: SVC,
        flags: XLB_CT_F_REMOTE,
        last_seen,
        ..Default::default()
    };
    env.maps()
        .put_ct(&xlb_ct_key::new(c, sa(VIP), UDP), &pin(now_ns()))
        .unwrap();
    stable(&env, OLD_OFF, OLD.len() as u32, 0); // ct_seen := now
    for i in 0..12 {
        let before = env.reasons();
        let got = send(&env, c);
        assert_eq!(
            got,
            sa(BE_B.1),
            "the pinned flow, packet {i}: {:?} {:?}",
            moved(&before, &env.reasons()),
            ct_fwd(&env, c)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Silence for longer than ct_udp + 1 s: the entry expired, ct_seen is stale.
    std::thread::sleep(Duration::from_millis(3500));
    let d = client(47001);
    env.maps()
        .put_ct(&xlb_ct_key::new(d, sa(VIP), UDP), &pin(now_ns()))
        .unwrap();
    assert_eq!(
        send(&env, d),
        sa(BE_A.1),
        "no ct lookup: the table's choice"
    );
}

/// The client's ICMP port unreachable about a stateless flow's reply (no ct
/// entry here) reaches the backend's node like the flow's own frames: the
/// quote translated back to the backend, with the frontend trailer.
#[test]
fn an_icmp_error_about_a_stateless_flow_goes_to_its_backend() {
    use packet_util::related::*;
    let Some(env) = Env::new() else { return };
    setup(&env, &NEW);
    let c = client(48000);
    let be = addr_of(pick(&NEW, c));
    assert_eq!(send(&env, c), be);
    assert!(ct_fwd(&env, c).is_none());
    let reply = Frame::udp(sa(VIP), c).build();
    let input = icmp_error(*c.ip(), *sa(VIP).ip(), PORT_UNREACH, 0, &reply, 576);
    let before = env.reasons();
    let (rc, out) = env.xdp(&input);
    assert!(rc == XDP_TX || rc == XDP_REDIRECT, "verdict {rc}");
    assert_eq!(
        moved(&before, &env.reasons()),
        [("tx_icmp_related".to_string(), 1)]
    );
    let v = check_vxlan(&out, "encap");
    assert_eq!(v.fe, Some(sa(VIP)));
    let backend_sent = Frame::udp(be, c).build();
    let want = with_macs(
        icmp_error(*c.ip(), *be.ip(), PORT_UNREACH, 0, &backend_sent, 576),
        VTEP_MAC,
        NODE_MAC,
    );
    assert_eq!(v.inner, want);
}

/// With tunnel NAT off (`xlb agent --no-tunnel-nat`, for a rolling upgrade
/// from a build without it) a remote flow goes as before it: no frontend
/// trailer, both ct entries here, so no stateless flow either.
#[test]
fn without_tunnel_nat_a_remote_flow_keeps_both_entries_and_no_trailer() {
    let Some(env) = Env::new() else { return };
    setup(&env, &NEW);
    let mut cfg = env.config();
    cfg.flags &= !XLB_CFG_F_TNAT;
    env.maps().put_config(&cfg).unwrap();
    let c = client(49000);
    let be = addr_of(pick(&NEW, c));
    let (rc, out) = env.xdp(&Frame::udp(c, sa(VIP)).build());
    assert!(rc == XDP_TX || rc == XDP_REDIRECT, "verdict {rc}");
    let v = check_vxlan(&out, "encap");
    assert_eq!(v.flags, 0x0800_0001, "the xlb mark, no trailer");
    assert_eq!(v.fe, None);
    assert_eq!(check_eth_ipv4(&v.inner, "inner").2.dst(), be);
    let fwd = ct_fwd(&env, c).expect("the forward entry");
    assert_eq!(fwd.flags & XLB_CT_F_TNAT, 0, "{fwd:?}");
    let rev = env
        .maps()
        .ct_entry(&xlb_ct_key::new(be, c, UDP))
        .unwrap()
        .expect("the reverse entry");
    assert_eq!(rev.nat(), sa(VIP));
}

/// Tunnel NAT turned off (an agent restarted with `--no-tunnel-nat`, the
/// first rollout of an upgrade) under a live stateless flow whose copy is in
/// the flow cache: its next frame gets the ct entries the node now needs
/// (the backend's node returns the replies untranslated, for this node to
/// reverse-NAT), not the cached stateless decision. The config write voids
/// the cache; without that the flow's replies would reach the client
/// untranslated for up to the copy's 50 ms.
#[test]
fn turning_tunnel_nat_off_voids_the_cached_stateless_flows() {
    let Some(env) = Env::new() else { return };
    setup(&env, &NEW);
    pin_cpu();
    let c = client(49100);
    let be = addr_of(pick(&NEW, c));
    for _ in 0..3 {
        assert_eq!(send(&env, c), be);
    }
    assert!(ct_fwd(&env, c).is_none(), "stateless, cached");
    let mut cfg = env.config();
    cfg.flags &= !XLB_CFG_F_TNAT;
    env.maps().put_config(&cfg).unwrap();
    let (rc, out) = env.xdp(&Frame::udp(c, sa(VIP)).build());
    assert!(rc == XDP_TX || rc == XDP_REDIRECT, "verdict {rc}");
    assert_eq!(check_vxlan(&out, "encap").flags, 0x0800_0001, "no trailer");
    assert!(
        ct_fwd(&env, c).is_some(),
        "the forward entry, not the cached copy"
    );
    let rev = env
        .maps()
        .ct_entry(&xlb_ct_key::new(be, c, UDP))
        .unwrap()
        .expect("the reverse entry: this node reverse-NATs the replies now");
    assert_eq!(rev.nat(), sa(VIP));
}
