//! # Half-open TCP connections (`ct_syn`, bpf/include/ctsyn.h)
//!
//! A new connection's SYN writes one `ct_syn` slot and no ct entry; a
//! retransmitted SYN goes where the first went, the backend's SYN-ACK is
//! reverse-NATed from the slot, and the client's ACK promotes the flow into
//! ct with the backend the SYN went to, even when the Maglev table changed in
//! between. A SYN flood therefore never evicts established flows from ct.
mod packet_util;

use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

const CLIENT_SA: &str = "198.18.0.100:40000";
/// Service 11: backends 1, 5, 6 (MULTI_TABLE at 160).
const MULTI: &str = "10.96.0.70:80";
const S: u64 = 1_000_000_000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

fn fresh() -> Option<Env> {
    let env = Env::new()?;
    env.clear_state();
    fixture(&env);
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

/// The backend Maglev gives client's flow to MULTI, and another one.
fn pick_and_other(client: &str) -> (u32, u32) {
    let id = maglev_pick(&MULTI_TABLE, sa(client), sa(MULTI), TCP, false);
    (id, if id == 5 { 6 } else { 5 })
}

/// Sends client -> dst with tcp_flags through XDP; the backend id it was
/// DNATed to (MULTI's backends).
fn xdp_to(env: &Env, client: &str, dst: &str, tcp_flags: u8) -> u32 {
    let mut f = Frame::tcp(sa(client), sa(dst));
    f.tcp_flags = tcp_flags;
    let (rc, out) = env.xdp(&f.build());
    assert_eq!(rc, XDP_PASS);
    let to = check_eth_ipv4(&out, "dnat").2.dst();
    [1, 5, 6]
        .into_iter()
        .find(|id| sa(be_addr(*id)) == to)
        .unwrap_or_else(|| panic!("DNAT to {to}"))
}

fn ct_of(env: &Env, src: &str, dst: &str) -> Option<xlb_ct_val> {
    env.maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(dst), TCP))
        .unwrap()
}

/// MULTI's whole table names `id`.
fn table_all(env: &Env, id: u32) {
    env.service(tcp_key(MULTI), 11, 160, &[id; 13], 0);
}

#[test]
fn syn_is_half_open_and_its_ack_promotes_the_same_backend_across_a_table_change() {
    let Some(env) = fresh() else { return };
    let (pick, other) = pick_and_other(CLIENT_SA);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, SYN), pick);
    assert!(
        ct_of(&env, CLIENT_SA, MULTI).is_none(),
        "a SYN writes no ct entry"
    );
    let h = env.half_open(CLIENT_SA).expect("half-open");
    assert_eq!((h.backend_id, h.flags), (pick, XLB_CT_F_SYN));
    assert_eq!((h.frontend, h.backend), (sa(MULTI), sa(be_addr(pick))));
    assert_eq!(h.svc_id, 11);

    // Maglev now says `other`: the half-open entry pins the backend.
    table_all(&env, other);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, SYN), pick, "SYN retransmit");
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, ACK), pick, "the ACK");
    let fwd = ct_of(&env, CLIENT_SA, MULTI).expect("promoted forward entry");
    assert_eq!((fwd.backend_id, fwd.flags & XLB_CT_F_TCP_STATE), (pick, 0));
    let rev = ct_of(&env, be_addr(pick), CLIENT_SA).expect("promoted reverse entry");
    assert_eq!(
        rev.flags & (XLB_CT_F_REVERSE | XLB_CT_F_TCP_STATE),
        XLB_CT_F_REVERSE
    );
    assert_eq!(
        (rev.nat_addr, rev.nat_port),
        (xlb_bpf::wire::be32(*sa(MULTI).ip()), 80u16.to_be())
    );
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, ACK), pick);

    // Without the half-open entry the ACK would have gone to `other`.
    table_all(&env, pick);
    let c2 = "198.18.0.100:40001";
    let (p2, o2) = pick_and_other(c2);
    table_all(&env, p2);
    assert_eq!(xdp_to(&env, c2, MULTI, SYN), p2);
    env.clear_half_open();
    table_all(&env, o2);
    assert_eq!(xdp_to(&env, c2, MULTI, ACK), o2);
}

/// The backend's SYN-ACK (and RST) before the client's ACK: reverse-NATed
/// from the half-open entry, through tc (pod backend) and tc egress
/// (host-network backend); a RST closes the half-open entry.
#[test]
fn replies_to_a_half_open_connection_are_reverse_natted() {
    let Some(env) = fresh() else { return };
    let vip = "10.96.0.10:80";
    let mut syn = Frame::tcp(sa(CLIENT_SA), sa(vip));
    syn.tcp_flags = SYN;
    let (rc, _) = env.xdp(&syn.build());
    assert_eq!(rc, XDP_PASS);
    assert!(env.half_open(CLIENT_SA).is_some());
    let mut synack = Frame::tcp(sa(BE_LOCAL), sa(CLIENT_SA));
    synack.tcp_flags = SYN | ACK;
    let (rc, out) = env.tc(&synack.build());
    assert_eq!(rc, TC_ACT_OK);
    let p = check_eth_ipv4(&out, "syn-ack").2;
    assert_eq!((p.src(), p.dst()), (sa(vip), sa(CLIENT_SA)));
    let (rc, out) = env.tc_egress(&synack.build());
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(check_eth_ipv4(&out, "syn-ack egress").2.src(), sa(vip));
    assert!(
        ct_of(&env, BE_LOCAL, CLIENT_SA).is_none(),
        "a reply promotes nothing"
    );

    let mut rst = Frame::tcp(sa(BE_LOCAL), sa(CLIENT_SA));
    rst.tcp_flags = RST | ACK;
    let (rc, out) = env.tc(&rst.build());
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(check_eth_ipv4(&out, "rst").2.src(), sa(vip));
    let h = env.half_open(CLIENT_SA).unwrap();
    assert_eq!(h.flags, XLB_CT_F_SYN | XLB_CT_F_RST);
    // a new SYN on the ports of a reset half-open connection is a new one
    let (rc, _) = env.xdp(&syn.build());
    assert_eq!(rc, XDP_PASS);
    assert_eq!(env.half_open(CLIENT_SA).unwrap().flags, XLB_CT_F_SYN);
    // a reply that matches no half-open connection passes untranslated
    env.clear_half_open();
    let (rc, out) = env.tc(&synack.build());
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(check_eth_ipv4(&out, "stray").2.src(), sa(BE_LOCAL));
}

/// A half-open entry lives 60 s (config.ct_tcp_close after a RST): within
/// that the client's packets go to its backend, after it they are balanced
/// again. (The entry names a backend Maglev would not choose.)
#[test]
fn half_open_timeouts() {
    let Some(env) = fresh() else { return };
    let (pick, other) = pick_and_other(CLIENT_SA);
    let put = |flags: u32, age_s: u64| {
        env.clear_state();
        env.put_half_open(&HalfOpen {
            check: 0,
            flags,
            client: sa(CLIENT_SA),
            frontend: sa(MULTI),
            backend: sa(be_addr(other)),
            tunnel_peer: std::net::Ipv4Addr::UNSPECIFIED,
            backend_id: other,
            generation: 1,
            svc_id: 11,
            last_seen: now_ns() - age_s * S,
        });
    };
    put(XLB_CT_F_SYN, 59);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, SYN), other);
    put(XLB_CT_F_SYN, 61);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, SYN), pick);
    put(XLB_CT_F_SYN, 59);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, ACK), other);
    assert_eq!(ct_of(&env, CLIENT_SA, MULTI).unwrap().backend_id, other);
    // reset: 10 s, and a reset connection is not promoted
    put(XLB_CT_F_SYN | XLB_CT_F_RST, 9);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, ACK), other);
    assert!(ct_of(&env, CLIENT_SA, MULTI).is_none());
    put(XLB_CT_F_SYN | XLB_CT_F_RST, 11);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, ACK), pick);
    // a RST from the client is recorded in the half-open entry
    put(XLB_CT_F_SYN, 1);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, RST), other);
    assert_eq!(
        env.half_open(CLIENT_SA).unwrap().flags,
        XLB_CT_F_SYN | XLB_CT_F_RST
    );
    // a torn slot (check mismatch) is empty
    put(XLB_CT_F_SYN, 1);
    let mut h = env.half_open(CLIENT_SA).unwrap();
    h.backend_id = pick;
    h.backend = sa(be_addr(pick));
    env.put_half_open(&h);
    assert_eq!(xdp_to(&env, CLIENT_SA, MULTI, SYN), pick);
}

/// 1,000 established flows of one Service, then 100,000 SYNs from distinct
/// sources to another (the test's ct holds 65,536 entries): every
/// established flow keeps both its entries and its backend, and the flood
/// leaves nothing in ct.
#[test]
fn a_syn_flood_does_not_evict_established_flows() {
    let Some(env) = fresh() else { return };
    let vip = "10.96.0.10:80";
    let clients: Vec<String> = (0..1000)
        .map(|i| format!("198.18.0.{}:{}", 100 + i % 50, 41000 + i / 50))
        .collect();
    for c in &clients {
        for flags in [SYN, ACK] {
            let mut f = Frame::tcp(sa(c), sa(vip));
            f.tcp_flags = flags;
            assert_eq!(env.xdp(&f.build()).0, XDP_PASS);
        }
    }
    assert_eq!(env.maps().ct().unwrap().len(), 2000);
    let before = env.reasons();
    for i in 0u32..100_000 {
        let src = std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::from(0x6440_0000 + i),
            1024 + (i % 50_000) as u16,
        );
        let f = Frame::tcp(src, sa(MULTI)).build();
        assert_eq!(env.xdp(&f).0, XDP_PASS);
    }
    let moved = moved(&before, &env.reasons());
    assert_eq!(moved, vec![("pass_local".to_string(), 100_000)]);
    assert_eq!(
        env.maps().ct().unwrap().len(),
        2000,
        "the flood wrote no ct entry"
    );
    for c in &clients {
        let f = ct_of(&env, c, vip).expect("established forward entry");
        assert_eq!(f.backend_id, 1);
        assert!(ct_of(&env, BE_LOCAL, c).is_some(), "reverse entry of {c}");
    }
}

/// One client port, two frontends, one backend: flow A (ClusterIP) is
/// established and owns the reverse key backend -> client; flow B (NodePort)
/// sends a SYN. B's SYN-ACK is reverse-NATed to B's frontend (the half-open
/// entry is newer than A's reverse entry), B's ACK takes the reverse key, and
/// A's next packet takes it back (xlb_ct_flag_victim).
#[test]
fn a_syn_ack_follows_the_newer_half_open_flow_of_a_reused_port() {
    let Some(env) = fresh() else { return };
    let vip = "10.96.0.10:80";
    let node_port = "198.18.0.1:30080";
    let send = |dst: &str, flags: u8| {
        let mut f = Frame::tcp(sa(CLIENT_SA), sa(dst));
        f.tcp_flags = flags;
        let (rc, out) = env.xdp(&f.build());
        assert_eq!(rc, XDP_PASS);
        assert_eq!(check_eth_ipv4(&out, "dnat").2.dst(), sa(BE_LOCAL));
    };
    let reply = |flags: u8| {
        let mut f = Frame::tcp(sa(BE_LOCAL), sa(CLIENT_SA));
        f.tcp_flags = flags;
        let (rc, out) = env.tc(&f.build());
        assert_eq!(rc, TC_ACT_OK);
        check_eth_ipv4(&out, "revnat").2.src()
    };
    send(vip, SYN);
    send(vip, ACK);
    assert_eq!(reply(ACK), sa(vip));
    send(node_port, SYN);
    assert_eq!(
        reply(SYN | ACK),
        sa(node_port),
        "the newer half-open flow's SYN-ACK"
    );
    assert_eq!(
        reply(ACK),
        sa(vip),
        "established replies stay A's until B is promoted"
    );
    send(node_port, ACK);
    assert_eq!(
        reply(ACK),
        sa(node_port),
        "B promoted: it owns the reverse key"
    );
    send(vip, ACK);
    assert_eq!(reply(ACK), sa(vip), "A's next packet takes it back");
}

/// Client port p, flow A to a frontend of this node, promoted; then the same
/// port to another node's NodePort, whose backend is this node's (a marked
/// tunnelled SYN rewrites ct's reverse entry into a tunnel-return one). The
/// backend's SYN-ACK goes back through the tunnel: A's slot, left behind by
/// its promotion, is no newer half-open flow (`xlb lab spread` to three
/// frontends at once timed out on SYN-ACKs reverse-NATed to A's frontend).
#[test]
fn a_tunnelled_syn_ack_is_not_taken_by_the_promoted_flow_of_the_port() {
    let Some(env) = fresh() else { return };
    let vip = "10.96.0.10:80";
    for flags in [SYN, ACK] {
        let mut f = Frame::tcp(sa(CLIENT_SA), sa(vip));
        f.tcp_flags = flags;
        let (rc, out) = env.xdp(&f.build());
        assert_eq!(rc, XDP_PASS);
        assert_eq!(check_eth_ipv4(&out, "dnat").2.dst(), sa(BE_LOCAL));
    }
    assert!(
        env.half_open(CLIENT_SA).is_none(),
        "A promoted: its slot is over"
    );
    let mut syn = Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL));
    syn.tcp_flags = SYN;
    let (rc, _) = env.xdp(&vxlan(&syn.build(), PEER, NODE, VNI, true));
    assert_eq!(rc, XDP_PASS);
    let mut synack = Frame::tcp(sa(BE_LOCAL), sa(CLIENT_SA));
    synack.tcp_flags = SYN | ACK;
    let (rc, out) = env.tc(&synack.build());
    assert_eq!(
        rc, TC_ACT_REDIRECT,
        "back through the tunnel, not NATed to A's frontend"
    );
    let v = check_vxlan(&out, "tunnel return");
    assert_eq!(std::net::Ipv4Addr::from(v.ip.destination), PEER);
    assert_eq!(check_eth_ipv4(&v.inner, "inner").2.src(), sa(BE_LOCAL));
}

/// Client port p: a half-open flow A to one frontend, then flow B of the same
/// port and backend opened in ct (a SYN on B's ports whose ct entries are
/// still there, closed or live): B is the newer flow, and its SYN-ACK is
/// reverse-NATed to B's frontend, not from A's older slot.
#[test]
fn a_syn_ack_of_a_flow_opened_in_ct_is_not_taken_by_an_older_half_open_flow() {
    let Some(env) = fresh() else { return };
    let vip = "10.96.0.10:80";
    let node_port = "198.18.0.1:30080";
    let send = |dst: &str, flags: u8| {
        let mut f = Frame::tcp(sa(CLIENT_SA), sa(dst));
        f.tcp_flags = flags;
        let (rc, out) = env.xdp(&f.build());
        assert_eq!(rc, XDP_PASS);
        assert_eq!(check_eth_ipv4(&out, "dnat").2.dst(), sa(BE_LOCAL));
    };
    let synack = || {
        let mut f = Frame::tcp(sa(BE_LOCAL), sa(CLIENT_SA));
        f.tcp_flags = SYN | ACK;
        let (rc, out) = env.tc(&f.build());
        assert_eq!(rc, TC_ACT_OK);
        check_eth_ipv4(&out, "revnat").2.src()
    };
    for (name, close) in [("closed", Some(RST)), ("live", None)] {
        env.clear_state();
        // B's first connection on these ports: in ct
        send(node_port, SYN);
        send(node_port, ACK);
        if let Some(flags) = close {
            send(node_port, flags);
        }
        // A: half-open
        send(vip, SYN);
        assert_eq!(synack(), sa(vip), "{name}: A's SYN-ACK");
        // B again: a SYN on its ct entry's ports
        send(node_port, SYN);
        assert!(
            ct_of(&env, CLIENT_SA, node_port).is_some(),
            "{name}: B is in ct"
        );
        assert_eq!(synack(), sa(node_port), "{name}: B's SYN-ACK");
    }
}

/// Tunnel NAT (the frontend trailer): the backend's node keeps the SYN
/// half-open with the frontend and reverse-NATs the SYN-ACK itself, marked
/// XLB_VXLAN_F_XLATED, since the balancing node may keep nothing of the
/// connection (a Service with a stateless path); the client's ACK then writes
/// the tunnel-return entry, with the frontend, and empties the slot.
#[test]
fn a_tunnel_nat_syn_ack_is_reverse_natted_by_the_backends_node() {
    use packet_util::tnat::*;
    let Some(env) = fresh() else { return };
    let fe = "198.18.0.9:30080";
    let mut syn = Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL));
    syn.tcp_flags = SYN;
    let (rc, _) = env.xdp(&vxlan_fe(&syn.build(), PEER, NODE, sa(fe)));
    assert_eq!(rc, XDP_PASS);
    assert!(
        ct_of(&env, BE_LOCAL, CLIENT_SA).is_none(),
        "half-open: no ct entry"
    );
    let mut synack = Frame::tcp(sa(BE_LOCAL), sa(CLIENT_SA));
    synack.tcp_flags = SYN | ACK;
    let (rc, out) = env.tc(&synack.build());
    assert_eq!(rc, TC_ACT_REDIRECT, "back through the tunnel");
    let v = check_vxlan(&out, "tunnel return");
    assert_eq!(std::net::Ipv4Addr::from(v.ip.destination), PEER);
    assert_eq!(v.flags, VX_XLATED, "reverse-NATed here");
    let p = check_eth_ipv4(&v.inner, "inner").2;
    assert_eq!((p.src(), p.dst()), (sa(fe), sa(CLIENT_SA)));
    // the client's ACK: the tunnel-return entry, with the frontend
    let mut ack = Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL));
    ack.tcp_flags = ACK;
    let (rc, _) = env.xdp(&vxlan_fe(&ack.build(), PEER, NODE, sa(fe)));
    assert_eq!(rc, XDP_PASS);
    let rev = ct_of(&env, BE_LOCAL, CLIENT_SA).expect("tunnel-return entry");
    assert_eq!(rev.nat(), sa(fe));
    assert_ne!(rev.flags & XLB_CT_F_TNAT, 0, "{rev:?}");
    assert!(env.half_open(CLIENT_SA).is_none(), "the slot is over");
}
