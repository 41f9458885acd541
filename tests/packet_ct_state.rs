//! # TCP-aware connection-tracking timeouts
//!
//! A half-open entry (SYN only) lives 60 s, a closed one (FIN from both
//! sides, or a RST) `config.ct_tcp_close` (10 s), an established one
//! `config.ct_tcp_established` (24 h), UDP `config.ct_udp` (120 s); the state
//! bits are set by SYN / FIN / RST packets in both entries of a flow
//! (bpf/include/ct.h). Ages are simulated by writing `last_seen` in the past;
//! an expired forward entry shows as the flow being balanced again (the test
//! entry names a backend the Maglev table would not choose).
mod packet_util;

use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

const CLIENT_SA: &str = "198.18.0.100:40000";
const POD: &str = "10.244.1.20:33000";
/// Service 11: backends 1, 5, 6 (MULTI_TABLE).
const MULTI: &str = "10.96.0.70:80";
const S: u64 = 1_000_000_000;

/// The fixture, plus MULTI as a UDP Service with the same backends.
fn setup(env: &Env) {
    env.clear_state();
    fixture(env);
    env.service(udp_key(MULTI), 15, 240, &MULTI_TABLE, 0);
}

fn fresh() -> Option<Env> {
    let env = Env::new()?;
    setup(&env);
    Some(env)
}

fn be_addr(id: u32) -> &'static str {
    match id {
        1 => BE_LOCAL,
        5 => BE_5,
        6 => BE_6,
        _ => unreachable!(),
    }
}

/// The backend Maglev gives the client's flow to MULTI, and another one.
fn pick_and_other(proto: u8) -> (u32, u32) {
    let id = maglev_pick(&MULTI_TABLE, sa(CLIENT_SA), sa(MULTI), proto, false);
    (id, if id == 5 { 6 } else { 5 })
}

fn fwd_key(proto: u8) -> xlb_ct_key {
    xlb_ct_key::new(sa(CLIENT_SA), sa(MULTI), proto)
}

/// A forward entry of the client's flow to MULTI naming `backend`, with
/// `flags`, last seen `age_s` seconds ago.
fn put_fwd(env: &Env, proto: u8, backend: u32, flags: u32, age_s: u64) {
    let v = xlb_ct_val {
        backend_id: backend,
        generation: 1,
        svc_id: 11,
        flags,
        last_seen: now_ns() - age_s * S,
        ..Default::default()
    };
    env.maps().put_ct(&fwd_key(proto), &v).unwrap();
}

/// The backend the client's next packet (TCP flags) goes to.
fn sent_to(env: &Env, proto: u8, tcp_flags: u8) -> u32 {
    let mut f = if proto == TCP {
        Frame::tcp(sa(CLIENT_SA), sa(MULTI))
    } else {
        Frame::udp(sa(CLIENT_SA), sa(MULTI))
    };
    f.tcp_flags = tcp_flags;
    let (rc, out) = env.xdp(&f.build());
    assert_eq!(rc, XDP_PASS);
    let dst = check_eth_ipv4(&out, "dnat").2.dst();
    [1, 5, 6]
        .into_iter()
        .find(|id| sa(be_addr(*id)).ip() == dst.ip())
        .unwrap_or_else(|| panic!("DNAT to {dst}"))
}

/// Whether an entry with `flags` aged `age_s` is still used (else the flow
/// is balanced again).
fn kept(env: &Env, proto: u8, flags: u32, age_s: u64, tcp_flags: u8) -> bool {
    setup(env);
    let (pick, other) = pick_and_other(proto);
    put_fwd(env, proto, other, flags, age_s);
    let to = sent_to(env, proto, tcp_flags);
    assert!(to == other || to == pick);
    to == other
}

const ACK: u8 = 0x10;
const SYN: u8 = 0x02;

#[test]
fn timeouts_follow_the_tcp_state() {
    let Some(env) = fresh() else { return };
    // half-open: 60 s
    assert!(kept(&env, TCP, XLB_CT_F_SYN, 59, SYN));
    assert!(!kept(&env, TCP, XLB_CT_F_SYN, 61, SYN));
    // established: 24 h (an hour of silence no longer re-balances). Ages
    // cannot go back before boot: the oldest this machine can show; the
    // config test checks the bound itself.
    let oldest = (now_ns() / S).saturating_sub(5);
    assert!(kept(&env, TCP, 0, oldest.min(3601), ACK));
    assert!(kept(&env, TCP, 0, oldest.min(86_399), ACK));
    // closed: FIN from both sides, or a RST: 10 s
    let both = XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV;
    assert!(kept(&env, TCP, both, 9, ACK));
    assert!(!kept(&env, TCP, both, 11, ACK));
    assert!(!kept(&env, TCP, XLB_CT_F_RST, 11, ACK));
    // one FIN: half-closed, still established
    assert!(kept(&env, TCP, XLB_CT_F_FIN_FWD, 11, ACK));
    assert!(kept(&env, TCP, XLB_CT_F_FIN_REV, 11, ACK));
    // a new SYN on a closed connection's ports is a new connection
    assert!(!kept(&env, TCP, both, 1, SYN));
    assert!(kept(&env, TCP, XLB_CT_F_FIN_FWD, 1, SYN));
    // UDP: 120 s
    assert!(kept(&env, UDP, 0, 119, 0));
    assert!(!kept(&env, UDP, 0, 121, 0));
}

#[test]
fn timeouts_come_from_the_config_map() {
    let Some(env) = fresh() else { return };
    let mut c = env.config();
    c.ct_tcp_established = 100;
    c.ct_tcp_close = 30;
    c.ct_udp = 300;
    let with = |env: &Env, flags, age, proto, tcp| {
        setup(env);
        env.maps().put_config(&c).unwrap();
        let (pick, other) = pick_and_other(proto);
        put_fwd(env, proto, other, flags, age);
        let to = sent_to(env, proto, tcp);
        assert!(to == other || to == pick);
        to == other
    };
    assert!(with(&env, 0, 99, TCP, ACK));
    assert!(!with(&env, 0, 101, TCP, ACK));
    let both = XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV;
    assert!(with(&env, both, 29, TCP, ACK));
    assert!(!with(&env, both, 31, TCP, ACK));
    assert!(with(&env, 0, 299, UDP, 0));
    assert!(!with(&env, 0, 301, UDP, 0));
}

fn flags_of(env: &Env, src: &str, dst: &str) -> u32 {
    env.maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(dst), TCP))
        .unwrap()
        .expect("ct entry")
        .flags
        & XLB_CT_F_TCP_STATE
}

fn tc_send(env: &Env, src: &str, dst: &str, tcp_flags: u8) {
    let mut f = Frame::tcp(sa(src), sa(dst));
    f.tcp_flags = tcp_flags;
    let (rc, _) = env.tc(&f.build());
    assert_eq!(rc, TC_ACT_OK);
}

/// SYN, SYN-ACK, ACK, FIN, FIN through tc (pod client, local backend): the
/// SYN is half-open in ct_syn (no ct entry), its SYN-ACK is reverse-NATed
/// from there, the client's ACK promotes the flow into ct (both entries
/// established); then the closing bits of both entries at every step, and a
/// SYN on the same ports opens a new connection.
#[test]
fn state_bits_follow_a_connection_through_tc() {
    let Some(env) = fresh() else { return };
    let vip = "10.96.0.10:80";
    let has = |src: &str, dst: &str| {
        env.maps()
            .ct_entry(&xlb_ct_key::new(sa(src), sa(dst), TCP))
            .unwrap()
            .is_some()
    };
    tc_send(&env, POD, vip, SYN);
    assert!(
        !has(POD, vip) && !has(BE_LOCAL, POD),
        "a SYN writes no ct entry"
    );
    let h = env.half_open(POD).expect("half-open");
    assert_eq!(h.flags, XLB_CT_F_SYN);
    assert_eq!(h.backend, sa(BE_LOCAL));
    assert_eq!(h.frontend, sa(vip));
    let mut synack = Frame::tcp(sa(BE_LOCAL), sa(POD));
    synack.tcp_flags = SYN | ACK;
    let (rc, out) = env.tc(&synack.build());
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(
        check_eth_ipv4(&out, "syn-ack").2.src(),
        sa(vip),
        "the SYN-ACK is reverse-NATed from the half-open entry"
    );
    assert!(!has(BE_LOCAL, POD));
    tc_send(&env, POD, vip, ACK);
    assert_eq!(flags_of(&env, POD, vip), 0, "the client's ACK promotes");
    assert_eq!(flags_of(&env, BE_LOCAL, POD), 0);
    tc_send(&env, POD, vip, ACK | 0x01);
    assert_eq!(flags_of(&env, POD, vip), XLB_CT_F_FIN_FWD);
    assert_eq!(flags_of(&env, BE_LOCAL, POD), XLB_CT_F_FIN_FWD);
    tc_send(&env, BE_LOCAL, POD, ACK | 0x01);
    let both = XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV;
    assert_eq!(flags_of(&env, POD, vip), both);
    assert_eq!(flags_of(&env, BE_LOCAL, POD), both);
    tc_send(&env, POD, vip, SYN);
    assert_eq!(flags_of(&env, POD, vip), XLB_CT_F_SYN, "a new connection");
}

/// On the uplink: a RST closes both entries, and a FIN is not served from the
/// flow cache's copy (it reaches the ct entry even while the flow is cached).
#[test]
fn rst_and_fin_reach_the_ct_entry_past_the_flow_cache() {
    let Some(env) = fresh() else { return };
    let vip = "10.96.0.10:80";
    let send = |flags: u8| {
        let mut f = Frame::tcp(sa(CLIENT_SA), sa(vip));
        f.tcp_flags = flags;
        let (rc, _) = env.xdp(&f.build());
        assert_eq!(rc, XDP_PASS);
    };
    send(SYN);
    send(ACK); // promoted from ct_syn: both entries established
    send(ACK); // cached
    assert_eq!(flags_of(&env, CLIENT_SA, vip), 0);
    assert_eq!(flags_of(&env, BE_LOCAL, CLIENT_SA), 0);
    send(ACK | 0x01);
    assert_eq!(flags_of(&env, CLIENT_SA, vip), XLB_CT_F_FIN_FWD);
    assert_eq!(flags_of(&env, BE_LOCAL, CLIENT_SA), XLB_CT_F_FIN_FWD);
    send(0x04);
    assert_eq!(
        flags_of(&env, CLIENT_SA, vip),
        XLB_CT_F_FIN_FWD | XLB_CT_F_RST
    );
    assert_eq!(
        flags_of(&env, BE_LOCAL, CLIENT_SA),
        XLB_CT_F_FIN_FWD | XLB_CT_F_RST
    );
}
