//! # tc egress packet tests
//!
//! The pod veth's egress program through BPF_PROG_RUN: the reply that a
//! host-network endpoint of this node (here the `kubernetes` Service's API
//! server on the node's own address) sends into a pod gets the Service
//! address back as its source; every other frame passes unchanged.
mod packet_util;

use packet_util::*;
use xlb_bpf::consts::*;

const POD: &str = "10.244.1.20:33000";
/// The node's own address (the fixture's underlay address): a host-network endpoint.
const API: &str = "198.18.0.1:6443";
const KUBERNETES: &str = "10.96.0.1:443";

fn setup(env: &Env) {
    fixture(env);
    env.backend(30, API, None);
    env.service(tcp_key(KUBERNETES), 30, 3000, &[30; 7], 0);
}

fn revnat_count(env: &Env) -> u64 {
    env.reasons()[XLB_R_PASS_REVNAT as usize]
}

#[test]
fn reply_of_a_local_host_network_endpoint_gets_the_service_address_back() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    // The pod's SYN, at the veth's ingress: DNAT to the node's own address.
    let syn = Frame::tcp(sa(POD), sa(KUBERNETES));
    let (rc, out) = env.tc(&syn.build());
    assert_eq!(rc, TC_ACT_OK);
    let dnat = Frame {
        dst: sa(API),
        ..syn.clone()
    };
    assert_eq!(out, dnat.build(), "DNAT output bytes");
    // The API server's answer, as the node's stack sends it into the veth.
    let before = revnat_count(&env);
    let (rc, out) = env.tc_egress(&Frame::tcp(sa(API), sa(POD)).build());
    assert_eq!(rc, TC_ACT_OK);
    check_eth_ipv4(&out, "egress reverse NAT");
    assert_eq!(
        out,
        Frame::tcp(sa(KUBERNETES), sa(POD)).build(),
        "reverse NAT output bytes"
    );
    assert_eq!(revnat_count(&env), before + 1);
}

#[test]
fn frames_without_a_reverse_entry_pass_unchanged() {
    let Some(env) = Env::new() else { return };
    setup(&env);
    let (rc, _) = env.tc(&Frame::tcp(sa(POD), sa(KUBERNETES)).build());
    assert_eq!(rc, TC_ACT_OK);
    let before = revnat_count(&env);
    for f in [
        // already translated (a pod backend's reply, or one through XDP)
        Frame::tcp(sa(KUBERNETES), sa(POD)),
        // pod-to-pod traffic
        Frame::tcp(sa("10.244.2.5:8080"), sa(POD)),
        // the API server to another port of the pod: no flow of the Service
        Frame::tcp(sa(API), sa("10.244.1.20:33001")),
        Frame::udp(sa(API), sa(POD)),
    ] {
        let (rc, out) = env.tc_egress(&f.build());
        assert_eq!(rc, TC_ACT_OK);
        assert_eq!(out, f.build(), "unchanged");
    }
    assert_eq!(revnat_count(&env), before);
}
