//! # tc packet tests
//!
//! The pod-veth program through BPF_PROG_RUN: pod-originated Service traffic,
//! reverse NAT of local backends' replies, and tunnel return. Same table
//! harness as the XDP tests.
mod packet_util;

use std::net::Ipv4Addr;

use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

const POD: &str = "10.244.1.20:33000";
const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x14];
const VETH_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x01];
const CLIENT_SA: &str = "198.18.0.100:40000";

/// The pod itself as a backend (hairpin), TCP and UDP.
const HAIRPIN_BE: &str = "10.244.1.20:8080";
const HAIRPIN_BE_UDP: &str = "10.244.1.20:5353";

fn hairpin_setup(env: &Env) {
    env.backend(20, HAIRPIN_BE, None);
    env.backend(21, HAIRPIN_BE_UDP, None);
    env.service(tcp_key("10.96.0.90:80"), 20, 400, &[20; 7], 0);
    env.service(udp_key("10.96.0.90:53"), 21, 416, &[21; 7], 0);
}

fn from_pod(dst: &str) -> Frame {
    Frame::tcp(sa(POD), sa(dst)).macs(POD_MAC, VETH_MAC)
}

/// `f` as a segment of an established connection (ACK).
fn established(mut f: Frame) -> Frame {
    f.tcp_flags = 0x10;
    f
}

fn udp_from_pod(dst: &str) -> Frame {
    Frame::udp(sa(POD), sa(dst)).macs(POD_MAC, VETH_MAC)
}

/// A reply of a backend pod to `client`.
fn reply(backend: &str, client: &str) -> Frame {
    Frame::tcp(sa(backend), sa(client)).macs(POD_MAC, VETH_MAC)
}

fn fwd(env: &Env, src: &str, dst: &str) -> Option<xlb_ct_val> {
    env.maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(dst), TCP))
        .unwrap()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "pod -> ClusterIP, local backend: DNAT, half-open entry (SYN), no ct pair",
            setup: no_setup,
            frame: || from_pod("10.96.0.10:80").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(from_pod("10.96.0.10:80"), BE_LOCAL, out);
                assert!(fwd(env, POD, "10.96.0.10:80").is_none());
                assert!(fwd(env, BE_LOCAL, POD).is_none());
                let h = env.half_open(POD).expect("half-open entry");
                assert_eq!(h.backend_id, 1);
                assert_eq!(h.frontend, sa("10.96.0.10:80"));
                assert_eq!(h.flags, XLB_CT_F_SYN);
            },
        },
        Case {
            name: "pod -> ClusterIP, local backend: the ACK promotes to a ct pair",
            setup: |env| {
                env.tc(&from_pod("10.96.0.10:80").build());
            },
            frame: || established(from_pod("10.96.0.10:80")).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(established(from_pod("10.96.0.10:80")), BE_LOCAL, out);
                assert_eq!(fwd(env, POD, "10.96.0.10:80").unwrap().backend_id, 1);
                let rev = fwd(env, BE_LOCAL, POD).expect("reverse entry");
                assert!(rev.is_reverse());
                assert_eq!(rev.nat(), sa("10.96.0.10:80"));
            },
        },
        Case {
            name: "pod -> ClusterIP UDP: DNAT, checksum updated",
            setup: no_setup,
            frame: || udp_from_pod("10.96.0.10:53").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| assert_dnat(udp_from_pod("10.96.0.10:53"), BE_UDP, out),
        },
        Case {
            name: "pod -> ClusterIP UDP without checksum: stays 0",
            setup: no_setup,
            frame: || {
                let mut f = udp_from_pod("10.96.0.10:53");
                f.udp_no_csum = true;
                f.build()
            },
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let mut f = udp_from_pod("10.96.0.10:53");
                f.udp_no_csum = true;
                assert_dnat(f, BE_UDP, out);
                assert_eq!(check_eth_ipv4(out, "udp").2.l4_csum(), 0);
            },
        },
        Case {
            name: "pod -> ClusterIP with IPv4 options: DNAT",
            setup: no_setup,
            frame: || {
                let mut f = from_pod("10.96.0.10:80");
                f.options = vec![1, 1, 1, 0];
                f.build()
            },
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let mut f = from_pod("10.96.0.10:80");
                f.options = vec![1, 1, 1, 0];
                assert_dnat(f, BE_LOCAL, out)
            },
        },
        Case {
            name: "pod -> ClusterIP, remote backend: DNAT, handed to the stack (overlay)",
            setup: no_setup,
            frame: || from_pod("10.96.0.20:80").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_TX_REMOTE,
            check: |_, _, out| assert_dnat(from_pod("10.96.0.20:80"), BE_REMOTE, out),
        },
        Case {
            name: "pod -> NodePort on the node address: DNAT",
            setup: no_setup,
            frame: || from_pod("198.18.0.1:30080").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| assert_dnat(from_pod("198.18.0.1:30080"), BE_LOCAL, out),
        },
        Case {
            name: "pod -> not a Service: unchanged",
            setup: no_setup,
            frame: || from_pod("10.244.2.7:80").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
        Case {
            name: "pod ARP: unchanged",
            setup: no_setup,
            frame: arp_frame,
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_NOT_IP,
            check: unchanged,
        },
        Case {
            // (its UDP header says 0 bytes: the IPv6 path, packet_tc6,
            // passes it as truncated)
            name: "pod IPv6, cut UDP header: unchanged",
            setup: no_setup,
            frame: ipv6_frame,
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_TRUNC_L4,
            check: unchanged,
        },
        Case {
            name: "pod ICMP to a ClusterIP: unchanged",
            setup: no_setup,
            frame: || icmp_echo(Ipv4Addr::new(10, 244, 1, 20), Ipv4Addr::new(10, 96, 0, 10)),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_L4_OTHER,
            check: unchanged,
        },
        Case {
            name: "pod -> Service without endpoints, TCP: RST back into the pod's veth",
            setup: no_setup,
            frame: || from_pod("10.96.0.30:80").build(),
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_TX_REJECT,
            check: |_, _, out| {
                let (dst, src, p) = check_eth_ipv4(out, "rst");
                assert_eq!((dst, src), (POD_MAC, VETH_MAC));
                assert_eq!(out.len(), 54);
                assert_eq!(p.src(), sa("10.96.0.30:80"));
                assert_eq!(p.dst(), sa(POD));
                let t = etherparse::TcpHeader::from_slice(&p.l4).unwrap().0;
                assert!(t.rst && t.ack);
                assert_eq!(t.acknowledgment_number, 1001);
            },
        },
        Case {
            name: "pod -> Service without endpoints, TCP with IPv4 options: RST",
            setup: no_setup,
            frame: || {
                let mut f = from_pod("10.96.0.30:80");
                f.options = vec![1; 12];
                f.build()
            },
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_TX_REJECT,
            check: |_, _, out| {
                let (_, _, p) = check_eth_ipv4(out, "rst");
                assert_eq!(p.ip.header_len(), 20);
                assert_eq!(p.dst(), sa(POD));
            },
        },
        Case {
            name: "pod -> Service without endpoints, UDP: ICMP port unreachable into the pod's veth",
            setup: no_setup,
            frame: || udp_from_pod("10.96.0.30:53").payload(&[7; 100]).build(),
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_TX_REJECT,
            check: |_, input, out| {
                let (dst, src, p) = check_eth_ipv4(out, "port unreachable");
                assert_eq!((dst, src), (POD_MAC, VETH_MAC));
                assert_eq!(Ipv4Addr::from(p.ip.source), Ipv4Addr::new(10, 96, 0, 30));
                assert_eq!(Ipv4Addr::from(p.ip.destination), Ipv4Addr::new(10, 244, 1, 20));
                assert_eq!(&p.l4[..2], &[3, 3]);
                assert_eq!(&p.l4[8..], &input[14..14 + 28]);
                assert_eq!(out.len(), 14 + 20 + 8 + 28);
            },
        },
        Case {
            name: "pod -> Service without endpoints, UDP with IPv4 options: ICMP quotes them",
            setup: no_setup,
            frame: || {
                let mut f = udp_from_pod("10.96.0.30:53");
                f.options = vec![1; 40];
                f.build()
            },
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_TX_REJECT,
            check: |_, input, out| {
                let (_, _, p) = check_eth_ipv4(out, "port unreachable");
                assert_eq!(p.ip.header_len(), 20);
                assert_eq!(&p.l4[8..], &input[14..14 + 60 + 8]);
            },
        },
        Case {
            name: "pod -> Service without endpoints, reject disabled: dropped, counted",
            setup: |env| {
                let mut c = env.config();
                c.flags &= !XLB_CFG_F_REJECT;
                env.maps().put_config(&c).unwrap();
            },
            frame: || udp_from_pod("10.96.0.30:53").build(),
            on_uplink: false,
            rc: TC_ACT_SHOT,
            reason: XLB_R_DROP_NO_BACKEND,
            check: |_, _, _| {},
        },
        Case {
            name: "pod -> a Service whose backend is the pod itself (hairpin): from 169.254.42.1, back into its veth",
            setup: hairpin_setup,
            frame: || from_pod("10.96.0.90:80").build(),
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let (dst, src, p) = check_eth_ipv4(out, "hairpin");
                assert_eq!((dst, src), (POD_MAC, VETH_MAC), "back to the pod");
                assert_eq!(p.src(), sa("169.254.42.1:33000"));
                assert_eq!(p.dst(), sa(HAIRPIN_BE));
                let rv = env
                    .maps()
                    .ct_entry(&xlb_ct_key::new(sa(HAIRPIN_BE), sa("169.254.42.1:33000"), TCP))
                    .unwrap()
                    .expect("reverse entry to the hairpin address");
                assert_eq!(rv.flags & XLB_CT_F_HAIRPIN, XLB_CT_F_HAIRPIN);
                assert_eq!(rv.nat_addr, xlb_bpf::wire::be32(Ipv4Addr::new(10, 96, 0, 90)));
            },
        },
        Case {
            name: "hairpin reply (pod -> 169.254.42.1): from the frontend, to the pod, back into its veth",
            setup: |env| {
                hairpin_setup(env);
                env.tc(&from_pod("10.96.0.90:80").build());
            },
            frame: || {
                Frame::tcp(sa(HAIRPIN_BE), sa("169.254.42.1:33000"))
                    .macs(POD_MAC, VETH_MAC)
                    .build()
            },
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_PASS_REVNAT,
            check: |_, _, out| {
                let (dst, src, p) = check_eth_ipv4(out, "hairpin reply");
                assert_eq!((dst, src), (POD_MAC, VETH_MAC));
                assert_eq!(p.src(), sa("10.96.0.90:80"));
                assert_eq!(p.dst(), sa(POD));
            },
        },
        Case {
            name: "hairpin, UDP: the second datagram (ct hit) goes the same way",
            setup: |env| {
                hairpin_setup(env);
                env.tc(&udp_from_pod("10.96.0.90:53").build());
            },
            frame: || udp_from_pod("10.96.0.90:53").build(),
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_PASS_LOCAL,
            check: |_, _, out| {
                let (_, _, p) = check_eth_ipv4(out, "hairpin udp");
                assert_eq!(p.src(), sa("169.254.42.1:33000"));
                assert_eq!(p.dst(), sa(HAIRPIN_BE_UDP));
            },
        },
        Case {
            name: "pod -> source-ranged Service from outside the ranges: dropped",
            setup: no_setup,
            frame: || from_pod("10.96.0.50:80").build(),
            on_uplink: false,
            rc: TC_ACT_SHOT,
            reason: XLB_R_DROP_SRC_RANGE,
            check: |_, _, _| {},
        },
        Case {
            name: "pod: CT hit keeps its backend after the Maglev table changes",
            setup: |env| {
                env.tc(&from_pod("10.96.0.70:80").build());
                env.tc(&established(from_pod("10.96.0.70:80")).build());
                let id = fwd(env, POD, "10.96.0.70:80").unwrap().backend_id;
                let other = if id == 6 { 5 } else { 6 };
                env.maps().write_maglev(160, &[other; 13]).unwrap();
            },
            frame: || from_pod("10.96.0.70:80").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&MULTI_TABLE, sa(POD), sa("10.96.0.70:80"), TCP, false);
                let be = env.maps().backend(id).unwrap().unwrap().sockaddr().to_string();
                assert_dnat(from_pod("10.96.0.70:80"), &be, out);
            },
        },
        Case {
            name: "pod: removed backend's CT entry chosen again",
            setup: |env| {
                env.tc(&from_pod("10.96.0.10:80").build());
                env.tc(&established(from_pod("10.96.0.10:80")).build());
                let mut b = env.maps().backend(1).unwrap().unwrap();
                b.flags = 0;
                env.maps().put_backend(1, &b).unwrap();
                env.maps().write_maglev(0, &[6; 7]).unwrap();
            },
            frame: || from_pod("10.96.0.10:80").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(from_pod("10.96.0.10:80"), BE_6, out);
                assert_eq!(fwd(env, POD, "10.96.0.10:80").unwrap().backend_id, 6);
            },
        },
        Case {
            name: "reply of a local backend to an external client: reverse NAT",
            setup: |env| {
                let (rc, _) = env.xdp(&Frame::tcp(sa(CLIENT_SA), sa("10.96.0.10:80")).build());
                assert_eq!(rc, XDP_PASS);
            },
            frame: || reply(BE_LOCAL, CLIENT_SA).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_REVNAT,
            check: |_, _, out| {
                check_eth_ipv4(out, "revnat");
                let want = Frame { src: sa("10.96.0.10:80"), ..reply(BE_LOCAL, CLIENT_SA) };
                assert_eq!(out, want.build().as_slice());
            },
        },
        Case {
            name: "reply of a local backend to a pod client: reverse NAT",
            setup: |env| {
                env.tc(&from_pod("10.96.0.10:80").build());
            },
            frame: || reply(BE_LOCAL, POD).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_REVNAT,
            check: |_, _, out| {
                let want = Frame { src: sa("10.96.0.10:80"), ..reply(BE_LOCAL, POD) };
                assert_eq!(out, want.build().as_slice());
            },
        },
        Case {
            name: "tunnel return: reply to a flow another node balanced here goes back encapsulated, not NATed",
            setup: |env| {
                // The peer chose BE_LOCAL for CLIENT -> VIP and sent it here, marked.
                let inner = Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL)).build();
                let (rc, _) = env.xdp(&vxlan(&inner, PEER, NODE, VNI, true));
                assert_eq!(rc, XDP_PASS);
            },
            frame: || reply(BE_LOCAL, CLIENT_SA).build(),
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_TX_TUNNEL_RETURN,
            check: |_, input, out| {
                let v = check_vxlan(out, "tunnel return");
                assert_eq!(Ipv4Addr::from(v.ip.source), NODE);
                assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
                assert_eq!(v.vni, VNI);
                assert_eq!(v.flags, 0x0800_0000, "I flag, unmarked");
                let mut want = input.to_vec();
                want[6..12].copy_from_slice(&NODE_MAC);
                assert_eq!(v.inner, want, "inner frame unchanged but for its source MAC");
                check_eth_ipv4(&v.inner, "inner");
            },
        },
        Case {
            name: "tunnel NAT: reply of a flow sent here with its frontend: reverse NAT here, back marked translated",
            setup: |env| {
                let mut inner = Frame::tcp(sa(CLIENT_SA), sa(BE_LOCAL));
                inner.tcp_flags = 0x10;
                let f = tnat::vxlan_fe(&inner.build(), PEER, NODE, sa("10.96.0.20:80"));
                assert_eq!(env.xdp(&f).0, XDP_PASS);
            },
            frame: || reply(BE_LOCAL, CLIENT_SA).build(),
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_TX_TUNNEL_RETURN,
            check: |env, _, out| {
                let v = check_vxlan(out, "tunnel NAT return");
                assert_eq!(Ipv4Addr::from(v.ip.source), NODE);
                assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
                assert_eq!(v.flags, tnat::VX_XLATED, "I flag + translated, no Service mark");
                assert_eq!(v.fe, None);
                let want = Frame {
                    src: sa("10.96.0.20:80"),
                    src_mac: NODE_MAC,
                    ..reply(BE_LOCAL, CLIENT_SA)
                };
                assert_eq!(v.inner, want.build(), "source := the frontend, checksums right");
                check_eth_ipv4(&v.inner, "inner");
                tnat::assert_tnat_entry(env, BE_LOCAL, CLIENT_SA, "10.96.0.20:80", PEER, TCP);
            },
        },
        Case {
            name: "tunnel return of a flow NATed here: reverse NAT, then back through the tunnel",
            setup: |env| {
                let inner = Frame::tcp(sa(CLIENT_SA), sa("10.96.0.10:80")).build();
                let (rc, _) = env.xdp(&vxlan(&inner, PEER, NODE, VNI, false));
                assert_eq!(rc, XDP_PASS);
            },
            frame: || reply(BE_LOCAL, CLIENT_SA).build(),
            on_uplink: false,
            rc: TC_ACT_REDIRECT,
            reason: XLB_R_TX_TUNNEL_RETURN,
            check: |_, _, out| {
                let v = check_vxlan(out, "tunnel return");
                assert_eq!(Ipv4Addr::from(v.ip.destination), PEER);
                let want = Frame {
                    src: sa("10.96.0.10:80"),
                    src_mac: NODE_MAC,
                    ..reply(BE_LOCAL, CLIENT_SA)
                };
                assert_eq!(v.inner, want.build());
            },
        },
    ]
}

#[test]
fn tc_table() {
    let Some(env) = Env::new() else { return };
    run_table(&env, Prog::Tc, &cases());
}

/// The whole path of a Service flow across two nodes, both running xlb (two
/// data planes in one namespace): node B balances a client's SYN to a backend
/// on node C and sends it with the frontend; C decapsulates it and keeps it
/// half-open, with the frontend; the backend's SYN-ACK is reverse-NATed by C
/// and sent back translated (B may keep nothing of the connection: a Service
/// with a stateless path), and B only decapsulates it. The client's ACK: B keeps the forward ct entry only,
/// C the tunnel NAT entry; the backend's data is reverse-NATed by C's tc and
/// sent back translated, and B only decapsulates it. The client sees the VIP
/// it dialled every time.
#[test]
fn two_nodes_tunnel_return_end_to_end() {
    let Some(b) = Env::new() else { return };
    fixture(&b);
    let c = Env::second_node(&b);
    let vip = "10.96.0.20:80";
    let seg = |src: &str, dst: &str, flags: u8| {
        let mut f = Frame::tcp(sa(src), sa(dst));
        f.tcp_flags = flags;
        f
    };
    // client -> B -> C, twice: the SYN (half-open on both nodes), then the ACK.
    let mut at_c = Vec::new();
    for flags in [0x02, 0x10] {
        let (rc, out) = b.xdp_in(&seg(CLIENT_SA, vip, flags).build(), Some(b.uplink));
        assert_eq!(rc, XDP_TX);
        let v = check_vxlan(&out, "B -> C");
        assert_eq!(v.fe, Some(sa(vip)), "sent with the frontend");
        // The frame as C receives it (outer addresses are B -> PEER; C is PEER).
        let (rc, decapped) = c.xdp(&out);
        assert_eq!(rc, XDP_PASS);
        let (_, _, p) = check_eth_ipv4(&decapped, "at C");
        assert_eq!(p.dst(), sa(BE_REMOTE));
        at_c.push(decapped);
        if flags == 0x02 {
            // The backend's SYN-ACK, before the client's ACK: reverse-NATed
            // by C's half-open slot.
            let syn_ack = seg(BE_REMOTE, CLIENT_SA, 0x12).macs(POD_MAC, VETH_MAC);
            let (rc, back) = c.tc(&syn_ack.build());
            assert_eq!(rc, TC_ACT_REDIRECT);
            let v = check_vxlan(&back, "C -> B");
            assert_eq!(v.flags, tnat::VX_XLATED, "translated at C");
            assert_eq!(check_eth_ipv4(&v.inner, "inner").2.src(), sa(vip));
            let before = b.reasons();
            let (rc, to_client) = b.xdp_in(&back, Some(b.uplink));
            assert_eq!(rc, XDP_PASS);
            let (_, _, p) = check_eth_ipv4(&to_client, "SYN-ACK to client");
            assert_eq!(p.src(), sa(vip), "as C translated it");
            assert_eq!(
                moved(&before, &b.reasons()),
                [("pass_decap".to_string(), 1)],
                "B only decapsulates"
            );
        }
    }
    tnat::assert_forward_only(&b, CLIENT_SA, vip, BE_REMOTE, TCP);
    tnat::assert_tnat_entry(&c, BE_REMOTE, CLIENT_SA, vip, NODE, TCP);
    // The backend pod on C answers the client: translated at C, marked.
    let answer = seg(BE_REMOTE, CLIENT_SA, 0x18).macs(POD_MAC, VETH_MAC);
    let (rc, back) = c.tc(&answer.build());
    assert_eq!(rc, TC_ACT_REDIRECT);
    let v = check_vxlan(&back, "C -> B");
    assert_eq!(Ipv4Addr::from(v.ip.destination), NODE);
    assert_eq!(v.flags, tnat::VX_XLATED, "reverse-NATed at C");
    let translated = Frame {
        src: sa(vip),
        src_mac: PEER_MAC,
        ..answer.clone()
    };
    assert_eq!(v.inner, translated.build(), "source := the VIP, at C");
    // B gets it (the outer Ethernet is filled by redirect_neigh on C; any will do here).
    let before = b.reasons();
    let (rc, to_client) = b.xdp_in(&back, Some(b.uplink));
    assert_eq!(rc, XDP_PASS);
    assert_eq!(
        b.reasons()[XLB_R_PASS_DECAP as usize] - before[XLB_R_PASS_DECAP as usize],
        1
    );
    let want = Frame {
        dst_mac: NODE_MAC,
        ..translated
    };
    assert_eq!(to_client, want.build(), "B decapsulates only");
    let (_, _, p) = check_eth_ipv4(&to_client, "to client");
    assert_eq!(p.src(), sa(vip), "client sees the VIP");
    assert_eq!(p.dst(), sa(CLIENT_SA));
    // The backend closes: C's tc passes the FIN on translated, B's forward
    // entry records it.
    let fin = seg(BE_REMOTE, CLIENT_SA, 0x11).macs(POD_MAC, VETH_MAC);
    let (rc, back) = c.tc(&fin.build());
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(b.xdp_in(&back, Some(b.uplink)).0, XDP_PASS);
    let fwd = tnat::assert_forward_only(&b, CLIENT_SA, vip, BE_REMOTE, TCP);
    assert_eq!(fwd.flags & XLB_CT_F_CLOSING, XLB_CT_F_FIN_REV);
    let rev = tnat::assert_tnat_entry(&c, BE_REMOTE, CLIENT_SA, vip, NODE, TCP);
    assert_eq!(rev.flags & XLB_CT_F_CLOSING, XLB_CT_F_FIN_REV);
}
