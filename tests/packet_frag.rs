//! # Fragment trains through both programs
//!
//! Real IPv4 fragment trains (first, middle, last; in order and out of
//! order) through BPF_PROG_RUN: the first fragment is balanced like a whole
//! datagram and the later ones follow it to the same backend with the same
//! translation (`frag` map, bpf/include/frag.h). Expected fragments are cut
//! from the translated datagram built from scratch, so every output byte is
//! checked; the outputs are also reassembled and their L4 checksum verified
//! with etherparse.
mod packet_util;

use packet_util::related::*;
use packet_util::*;

/// Runs one frame (XDP on lo), checks the verdict and that `reason` counted it.
fn step(env: &Env, prog: Prog, frame: &[u8], rc: u32, reason: u32) -> Vec<u8> {
    step_via(env, prog, frame, rc, reason, None)
}
use xlb_bpf::consts::*;

const CLIENT_SA: &str = "198.18.0.100:40000";
const POD: &str = "10.244.1.20:33000";

/// A UDP datagram of 100 bytes of payload, DF clear, so it can be fragmented.
fn big_udp(src: &str, dst: &str) -> Frame {
    let payload: Vec<u8> = (0..100u8).collect();
    let mut f = Frame::udp(sa(src), sa(dst)).payload(&payload);
    f.df = false;
    f
}

fn big_tcp(src: &str, dst: &str) -> Frame {
    let payload: Vec<u8> = (0..100u8).map(|b| b ^ 0x5a).collect();
    let mut f = Frame::tcp(sa(src), sa(dst)).payload(&payload);
    f.df = false;
    f.tcp_flags = 0x18;
    f
}

/// First 32 bytes of L4, then 40, then the rest: first, middle, last.
const CUTS: [usize; 2] = [32, 40];

/// The translated train must be the train of the translated datagram, and
/// reassemble into a datagram whose checksums are right.
fn assert_train(outs: &[Vec<u8>], want: &[Vec<u8>]) {
    assert_eq!(outs.len(), want.len());
    for (i, (o, w)) in outs.iter().zip(want).enumerate() {
        check_eth_ipv4(o, "fragment");
        assert_eq!(o, w, "fragment {i}: output bytes");
    }
    check_eth_ipv4(&reassemble(outs), "reassembled datagram");
}

#[test]
fn udp_train_follows_its_first_fragment_xdp() {
    let Some(env) = fresh() else { return };
    let f = big_udp(CLIENT_SA, "10.96.0.10:53");
    let train = fragments(&f.build(), &CUTS);
    assert_eq!(train.len(), 3);
    // the first fragment's UDP length runs past it: still balanced
    let outs: Vec<_> = train
        .iter()
        .map(|fr| step(&env, Prog::Xdp, fr, XDP_PASS, XLB_R_PASS_LOCAL))
        .collect();
    let want = fragments(
        &Frame {
            dst: sa(BE_UDP),
            ..f
        }
        .build(),
        &CUTS,
    );
    assert_train(&outs, &want);
}

#[test]
fn tcp_train_follows_its_first_fragment_xdp() {
    let Some(env) = fresh() else { return };
    let f = big_tcp(CLIENT_SA, "10.96.0.10:80");
    let train = fragments(&f.build(), &CUTS);
    let outs: Vec<_> = train
        .iter()
        .map(|fr| step(&env, Prog::Xdp, fr, XDP_PASS, XLB_R_PASS_LOCAL))
        .collect();
    let want = fragments(
        &Frame {
            dst: sa(BE_LOCAL),
            ..f
        }
        .build(),
        &CUTS,
    );
    assert_train(&outs, &want);
}

#[test]
fn out_of_order_fragment_before_its_first_passes_untranslated() {
    let Some(env) = fresh() else { return };
    let f = big_udp(CLIENT_SA, "10.96.0.10:53");
    let train = fragments(&f.build(), &CUTS);
    let want = fragments(
        &Frame {
            dst: sa(BE_UDP),
            ..f
        }
        .build(),
        &CUTS,
    );
    // last, then first, then middle
    let out = step(
        &env,
        Prog::Xdp,
        &train[2],
        XDP_PASS,
        XLB_R_PASS_FRAG_NO_FIRST,
    );
    assert_eq!(out, train[2], "passes untouched");
    let first = step(&env, Prog::Xdp, &train[0], XDP_PASS, XLB_R_PASS_LOCAL);
    assert_eq!(first, want[0]);
    let mid = step(&env, Prog::Xdp, &train[1], XDP_PASS, XLB_R_PASS_LOCAL);
    assert_eq!(mid, want[1]);
    // the last one again (a retransmission) follows now
    let last = step(&env, Prog::Xdp, &train[2], XDP_PASS, XLB_R_PASS_LOCAL);
    assert_eq!(last, want[2]);
    // another datagram (IP ID) of the same flow is not confused with it
    let other = with_ip_id(train[1].clone(), 0x4321);
    let out = step(&env, Prog::Xdp, &other, XDP_PASS, XLB_R_PASS_FRAG_NO_FIRST);
    assert_eq!(out, other);
}

#[test]
fn remote_backend_fragments_go_in_the_tunnel_like_the_first() {
    let Some(env) = fresh() else { return };
    let f = big_udp(CLIENT_SA, "10.96.0.20:53");
    let train = fragments(&f.build(), &CUTS);
    let inner = Frame {
        dst: sa(BE_REMOTE),
        src_mac: NODE_MAC,
        dst_mac: VTEP_MAC,
        ..f.clone()
    };
    let want = fragments(&inner.build(), &CUTS);
    let h = flow_hash(f.src, f.dst, UDP, false);
    let mut inners = Vec::new();
    for (i, fr) in train.iter().enumerate() {
        let (rc, out) = env.xdp_in(fr, Some(env.uplink));
        assert_eq!(rc, XDP_TX, "fragment {i}");
        let v = check_vxlan(&out, "encap");
        assert_eq!(std::net::Ipv4Addr::from(v.ip.destination), PEER);
        assert_eq!(
            v.flags, 0x0800_0003,
            "marked, with the frontend, like the first fragment"
        );
        assert_eq!(v.fe, Some(sa("10.96.0.20:53")), "frontend trailer");
        assert_eq!(v.sport, 0xc000 | (h & 0x3fff) as u16, "same outer port");
        assert_eq!(v.inner, want[i], "fragment {i}: inner bytes");
        inners.push(v.inner);
    }
    check_eth_ipv4(&reassemble(&inners), "reassembled inner datagram");
}

#[test]
fn reply_fragments_by_tunnel_are_reverse_natted() {
    let Some(env) = fresh() else { return };
    // the flow client -> 10.96.0.20:53 -> BE_REMOTE (node PEER), balanced
    // by tc (a pod's flow: this node keeps the reverse entry; the uplink's
    // flows to remote backends are reverse-NATed by the backend's node)
    let (rc, _) = env.tc(&Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53")).build());
    assert_eq!(rc, TC_ACT_OK);
    let r = big_udp(BE_REMOTE, CLIENT_SA).macs(PEER_MAC, NODE_MAC);
    let train = fragments(&r.build(), &CUTS);
    let want_frame = Frame {
        src: sa("10.96.0.20:53"),
        dst_mac: NODE_MAC,
        ..r
    };
    let want = fragments(&want_frame.build(), &CUTS);
    let outs: Vec<_> = train
        .iter()
        .map(|fr| {
            let v = vxlan(fr, PEER, NODE, VNI, false);
            step(&env, Prog::Xdp, &v, XDP_PASS, XLB_R_PASS_REVNAT)
        })
        .collect();
    assert_train(&outs, &want);
}

#[test]
fn marked_later_fragments_are_decapsulated() {
    let Some(env) = fresh() else { return };
    // node PEER chose BE_LOCAL on this node for the client: marked VXLAN
    let f = big_udp(CLIENT_SA, BE_LOCAL);
    let train = fragments(&f.build(), &CUTS);
    for (i, fr) in train.iter().enumerate() {
        let reason = XLB_R_PASS_DECAP;
        let out = step(
            &env,
            Prog::Xdp,
            &vxlan(fr, PEER, NODE, VNI, true),
            XDP_PASS,
            reason,
        );
        let mut want = fr.clone();
        want[..6].copy_from_slice(&NODE_MAC);
        assert_eq!(out, want, "fragment {i}: decapsulated, untranslated");
    }
}

#[test]
fn tc_pod_fragments_follow_and_replies_are_reverse_natted() {
    let Some(env) = fresh() else { return };
    let f = big_udp(POD, "10.96.0.10:53");
    let train = fragments(&f.build(), &CUTS);
    let outs: Vec<_> = train
        .iter()
        .map(|fr| step(&env, Prog::Tc, fr, TC_ACT_OK, XLB_R_PASS_LOCAL))
        .collect();
    let want = fragments(
        &Frame {
            dst: sa(BE_UDP),
            ..f
        }
        .build(),
        &CUTS,
    );
    assert_train(&outs, &want);

    // the backend's fragmented reply, out of order: middle first
    let r = big_udp(BE_UDP, POD);
    let rtrain = fragments(&r.build(), &CUTS);
    let rwant = fragments(
        &Frame {
            src: sa("10.96.0.10:53"),
            ..r
        }
        .build(),
        &CUTS,
    );
    let out = step(
        &env,
        Prog::Tc,
        &rtrain[1],
        TC_ACT_OK,
        XLB_R_PASS_FRAG_NO_FIRST,
    );
    assert_eq!(out, rtrain[1]);
    let mut routs = Vec::new();
    for fr in &rtrain {
        routs.push(step(&env, Prog::Tc, fr, TC_ACT_OK, XLB_R_PASS_REVNAT));
    }
    assert_train(&routs, &rwant);
}
