//! # tc packet tests: NodePorts of other nodes
//!
//! A pod's NodePort traffic to another node's address (`remote_addrs`) is
//! balanced by the pod-veth program, at the source, like traffic to this
//! node's addresses; the uplink's XDP program never answers for those
//! addresses. In the fixture PEER (198.18.0.2) is the other node.
mod packet_util;

use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::Proto;

const POD: &str = "10.244.1.20:33000";
const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x14];
const VETH_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x01];

/// PEER's NodePorts: 30080/TCP (fixture: backend 1, local), 30080/UDP
/// (backend 2, local), 30081/TCP (backend 3 on PEER), 30082/TCP
/// externalTrafficPolicy Local (no endpoint on this node; cluster-wide:
/// backend 1).
const NP_TCP: &str = "198.18.0.2:30080";
const NP_UDP: &str = "198.18.0.2:30080";
const NP_REMOTE: &str = "198.18.0.2:30081";
const NP_ETP_LOCAL: &str = "198.18.0.2:30082";

fn np(port: u16, proto: Proto) -> xlb_svc_key {
    xlb_svc_key::nodeport(port, proto)
}

fn with_fe_type(env: &Env, key: xlb_svc_key, fe_type: u32) {
    let mut v = env.maps().service(&key).unwrap().unwrap();
    v.fe_type = fe_type as u8;
    env.maps().put_service(&key, &v).unwrap();
}

fn remote_setup(env: &Env) {
    env.maps().put_remote_addr(PEER).unwrap();
    env.service(np(30080, Proto::Udp), 40, 640, &[2; 7], 0);
    env.service(np(30081, Proto::Tcp), 41, 656, &[3; 7], 0);
    env.service(
        np(30082, Proto::Tcp),
        42,
        672,
        &[3; 7],
        XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL,
    );
    with_fe_type(env, np(30082, Proto::Tcp), XLB_FE_NODEPORT);
    env.service(np(30082, Proto::Tcp).internal(), 42, 688, &[1; 7], 0);
    with_fe_type(env, np(30082, Proto::Tcp).internal(), XLB_FE_NODEPORT);
}

fn from_pod(dst: &str) -> Frame {
    Frame::tcp(sa(POD), sa(dst)).macs(POD_MAC, VETH_MAC)
}

fn udp_from_pod(dst: &str) -> Frame {
    Frame::udp(sa(POD), sa(dst)).macs(POD_MAC, VETH_MAC)
}

fn ct(env: &Env, src: &str, dst: &str, proto: u8) -> Option<xlb_ct_val> {
    env.maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(dst), proto))
        .unwrap()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "pod -> another node's address:NodePort, TCP: balanced here (DNAT), ct pair with that address",
            setup: remote_setup,
            frame: || from_pod(NP_TCP).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                check_eth_ipv4(out, "dnat");
                assert_eq!(out, dnat(&from_pod(NP_TCP), BE_LOCAL).as_slice());
                let h = env.half_open(POD).expect("the SYN is half-open");
                assert_eq!((h.frontend, h.backend_id), (sa(NP_TCP), 1));
                // The pod's ACK promotes it: a ct pair with the dialled address.
                let ack = Frame {
                    tcp_flags: 0x10,
                    ..from_pod(NP_TCP)
                };
                let (rc, out) = env.tc(&ack.build());
                assert_eq!(rc, TC_ACT_OK);
                assert_eq!(out, dnat(&ack, BE_LOCAL).as_slice());
                assert_eq!(ct(env, POD, NP_TCP, TCP).unwrap().backend_id, 1);
                let rev = ct(env, BE_LOCAL, POD, TCP).expect("reverse entry");
                assert!(rev.is_reverse());
                assert_eq!(rev.nat(), sa(NP_TCP));
            },
        },
        Case {
            name: "pod -> another node's address:NodePort, UDP: DNAT, checksum updated",
            setup: remote_setup,
            frame: || udp_from_pod(NP_UDP).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                check_eth_ipv4(out, "dnat");
                assert_eq!(out, dnat(&udp_from_pod(NP_UDP), BE_UDP).as_slice());
                assert_eq!(ct(env, BE_UDP, POD, UDP).unwrap().nat(), sa(NP_UDP));
            },
        },
        Case {
            name: "pod -> another node's address:NodePort, backend on a third node: DNAT, to the stack (overlay)",
            setup: remote_setup,
            frame: || from_pod(NP_REMOTE).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_TX_REMOTE,
            check: |_, _, out| {
                assert_eq!(out, dnat(&from_pod(NP_REMOTE), BE_REMOTE).as_slice());
            },
        },
        Case {
            name: "pod -> another node's externalTrafficPolicy Local NodePort: the cluster-wide entry",
            setup: remote_setup,
            frame: || from_pod(NP_ETP_LOCAL).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_eq!(out, dnat(&from_pod(NP_ETP_LOCAL), BE_LOCAL).as_slice());
                let h = env.half_open(POD).expect("the SYN is half-open");
                assert_eq!((h.frontend, h.svc_id), (sa(NP_ETP_LOCAL), 42));
            },
        },
        Case {
            name: "the local backend's reply: from the address:NodePort the pod dialled",
            setup: |env| {
                remote_setup(env);
                let (rc, _) = env.tc(&from_pod(NP_TCP).build());
                assert_eq!(rc, TC_ACT_OK);
            },
            frame: || {
                Frame::tcp(sa(BE_LOCAL), sa(POD))
                    .macs(POD_MAC, VETH_MAC)
                    .build()
            },
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_REVNAT,
            check: |_, _, out| {
                let want = Frame::tcp(sa(NP_TCP), sa(POD)).macs(POD_MAC, VETH_MAC);
                assert_eq!(out, want.build().as_slice());
            },
        },
        Case {
            name: "pod -> NodePort on an address of no node: unchanged",
            setup: remote_setup,
            frame: || from_pod("198.18.0.3:30080").build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
        Case {
            name: "pod -> a node address no longer in remote_addrs: unchanged",
            setup: |env| {
                remote_setup(env);
                assert!(env.maps().delete_remote_addr(PEER).unwrap());
            },
            frame: || from_pod(NP_TCP).build(),
            on_uplink: false,
            rc: TC_ACT_OK,
            reason: XLB_R_PASS_NOT_SERVICE,
            check: unchanged,
        },
    ]
}

#[test]
fn tc_nodeport_of_other_nodes_table() {
    let Some(env) = Env::new() else { return };
    run_table(&env, Prog::Tc, &cases());
}

/// The uplink answers only for this node's addresses: a frame to another
/// node's address:NodePort (routed through this node) passes untouched.
#[test]
fn xdp_leaves_other_nodes_nodeports_alone() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    remote_setup(&env);
    let f = Frame::tcp(sa("198.18.0.100:40000"), sa(NP_TCP)).build();
    let before = env.reasons();
    let (rc, out) = env.xdp_in(&f, Some(env.uplink));
    assert_eq!(rc, XDP_PASS);
    assert_eq!(out, f);
    assert_eq!(
        moved(&before, &env.reasons()),
        vec![("pass_not_service".to_string(), 1)]
    );
    assert!(ct(&env, "198.18.0.100:40000", NP_TCP, TCP).is_none());
}

/// A pod on node B dials node C's address:NodePort and the backend is on C.
/// B balances at the pod's veth; C's data plane leaves the flow alone both
/// ways (it holds no state of it); the reply reaches B over the overlay and
/// B's XDP reverse-NATs it: the pod sees C's address:NodePort.
#[test]
fn two_nodes_pod_to_other_nodes_nodeport_end_to_end() {
    let Some(b) = Env::new() else { return };
    fixture(&b);
    remote_setup(&b);
    let c = Env::second_node(&b);
    // C: the same NodePort, its backend local there; B is the other node.
    c.backend(3, BE_REMOTE, None);
    c.service(np(30081, Proto::Tcp), 41, 0, &[3; 7], 0);
    c.maps().put_local_addr(PEER).unwrap();
    c.maps().put_remote_addr(NODE).unwrap();

    let syn = from_pod(NP_REMOTE);
    let (rc, out) = b.tc(&syn.build());
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(out, dnat(&syn, BE_REMOTE));
    // B's kernel sends it to C through its VXLAN device (not xlb-marked).
    let on_wire = vxlan(&out, NODE, PEER, VNI, false);
    let (rc, at_c) = c.xdp_in(&on_wire, Some(c.uplink));
    assert_eq!((rc, &at_c), (XDP_PASS, &on_wire), "C passes it untouched");
    // The backend on C answers the pod; C's tc leaves it to the stack.
    let answer = Frame::tcp(sa(BE_REMOTE), sa(POD)).macs(POD_MAC, VETH_MAC);
    let (rc, back) = c.tc(&answer.build());
    assert_eq!((rc, back), (TC_ACT_OK, answer.build()));
    // C's kernel sends it to B through the overlay; B reverse-NATs it.
    let inner = Frame::tcp(sa(BE_REMOTE), sa(POD)).macs(VTEP_MAC, NODE_MAC);
    let (rc, to_pod) = b.xdp_in(
        &vxlan(&inner.build(), PEER, NODE, VNI, false),
        Some(b.uplink),
    );
    assert_eq!(rc, XDP_PASS);
    let (_, _, p) = check_eth_ipv4(&to_pod, "to the pod");
    assert_eq!(
        p.src(),
        sa(NP_REMOTE),
        "the pod sees the address it dialled"
    );
    assert_eq!(p.dst(), sa(POD));
}
