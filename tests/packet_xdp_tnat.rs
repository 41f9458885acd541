//! # XDP packet tests: tunnel NAT
//!
//! The uplink program through BPF_PROG_RUN (table rows as in `packet_xdp.rs`)
//! for the two ends of a tunnel NAT flow (docs/dp.md "Who reverse-NATs"): the
//! backend's node taking the frontend trailer (its tunnel NAT entry, the
//! trailer stripped, a truncated trailer counted), the balancing node taking
//! replies the backend's node translated (decap without a ct lookup; FIN and
//! RST recorded in the forward entry), and a flow-cache hit keeping the
//! trailer.
mod packet_util;

use packet_util::tnat::*;
use packet_util::xdp::*;
use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

fn cases() -> Vec<Case> {
    vec![
        // --- tunnel NAT: the backend's node (C) ----------------------------------
        Case {
            name: "VXLAN with the frontend trailer: decap (trailer stripped), tunnel NAT entry",
            setup: no_setup,
            frame: || vxlan_fe(&ack(BE_LOCAL).build(), PEER, NODE, sa("10.96.0.20:80")),
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_DECAP,
            check: |env, _, out| {
                let want = Frame {
                    dst_mac: NODE_MAC,
                    ..ack(BE_LOCAL)
                };
                assert_eq!(out, want.build().as_slice());
                assert_tnat_entry(env, BE_LOCAL, CLIENT_SA, "10.96.0.20:80", PEER, TCP);
            },
        },
        Case {
            name: "VXLAN with another frontend (or none before): the tunnel NAT entry is rewritten",
            setup: |env| {
                let plain = vxlan(&ack(BE_LOCAL).build(), PEER, NODE, VNI, true);
                assert_eq!(env.xdp(&plain).0, XDP_PASS);
                let f = vxlan_fe(&ack(BE_LOCAL).build(), PEER, NODE, sa("10.96.0.20:80"));
                assert_eq!(env.xdp(&f).0, XDP_PASS);
                assert_tnat_entry(env, BE_LOCAL, CLIENT_SA, "10.96.0.20:80", PEER, TCP);
            },
            frame: || vxlan_fe(&ack(BE_LOCAL).build(), PEER, NODE, sa("198.18.0.1:30080")),
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_DECAP,
            check: |env, _, _| {
                assert_tnat_entry(env, BE_LOCAL, CLIENT_SA, "198.18.0.1:30080", PEER, TCP);
            },
        },
        Case {
            name: "VXLAN with the frontend flag but a truncated trailer: counted, untouched",
            setup: no_setup,
            frame: || vxlan_with(&[], PEER, NODE, VX_SVC_FE, &[10, 96, 0, 20]),
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_TRUNC_VXLAN,
            check: unchanged,
        },
        Case {
            name: "VXLAN with the frontend flag but no Service mark: not xlb's",
            setup: no_setup,
            frame: || {
                let t = fe_trailer(sa("10.96.0.20:80"));
                vxlan_with(&ack(BE_LOCAL).build(), PEER, NODE, 0x0800_0002, &t)
            },
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_VXLAN_OTHER,
            check: unchanged,
        },
        // --- tunnel NAT: translated replies back at the balancing node (B) -------
        Case {
            name: "translated reply (XLATED): decap and pass, the forward entry untouched",
            setup: |env| open(env, "10.96.0.20:80"),
            frame: || vxlan_xlated(&ack_from("10.96.0.20:80").build(), PEER, NODE),
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_DECAP,
            check: |env, _, out| {
                let want = Frame {
                    dst_mac: NODE_MAC,
                    ..ack_from("10.96.0.20:80")
                };
                assert_eq!(out, want.build().as_slice());
                let fwd = assert_forward_only(env, CLIENT_SA, "10.96.0.20:80", BE_REMOTE, TCP);
                assert_eq!(fwd.flags, XLB_CT_F_REMOTE | XLB_CT_F_TNAT);
            },
        },
        Case {
            name: "translated FIN: the forward entry records the backend's FIN",
            setup: |env| open(env, "10.96.0.20:80"),
            frame: || {
                let mut f = ack_from("10.96.0.20:80");
                f.tcp_flags = 0x11;
                vxlan_xlated(&f.build(), PEER, NODE)
            },
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_DECAP,
            check: |env, _, _| {
                let fwd = assert_forward_only(env, CLIENT_SA, "10.96.0.20:80", BE_REMOTE, TCP);
                assert_eq!(
                    fwd.flags,
                    XLB_CT_F_REMOTE | XLB_CT_F_TNAT | XLB_CT_F_FIN_REV
                );
            },
        },
        Case {
            name: "translated RST: the forward entry is closed",
            setup: |env| open(env, "10.96.0.20:80"),
            frame: || {
                let mut f = ack_from("10.96.0.20:80");
                f.tcp_flags = 0x04;
                vxlan_xlated(&f.build(), PEER, NODE)
            },
            on_uplink: true,
            rc: XDP_PASS,
            reason: XLB_R_PASS_DECAP,
            check: |env, _, _| {
                let fwd = assert_forward_only(env, CLIENT_SA, "10.96.0.20:80", BE_REMOTE, TCP);
                assert_eq!(fwd.flags, XLB_CT_F_REMOTE | XLB_CT_F_TNAT | XLB_CT_F_RST);
            },
        },
    ]
}

/// The client's segment with ACK only.
fn ack(dst: &str) -> Frame {
    let mut f = syn(dst);
    f.tcp_flags = 0x10;
    f
}

/// A reply segment (ACK) from `src` to the client, as the client receives it.
fn ack_from(src: &str) -> Frame {
    let mut f = Frame::tcp(sa(src), sa(CLIENT_SA)).macs(PEER_MAC, NODE_MAC);
    f.tcp_flags = 0x10;
    f
}

#[test]
fn xdp_tnat_table() {
    let Some(env) = Env::new() else { return };
    let cases = cases();
    assert!(cases.len() >= 7, "{} cases", cases.len());
    run_table(&env, Prog::Xdp, &cases);
}

/// A flow-cache hit (flowcache.h) of a tunnel NAT flow is sent like a ct hit:
/// with the frontend trailer, its cached encapsulation reused. The hit is
/// proven by deleting the ct entry behind the cache's back (no ct_epoch
/// bump): served from the cache, the frame writes no ct entry again.
#[test]
fn flow_cache_hit_keeps_the_frontend_trailer() {
    use libbpf_rs::MapCore;
    let Some(env) = Env::new() else { return };
    fixture(&env);
    pin_cpu();
    let f = Frame::udp(sa(CLIENT_SA), sa("10.96.0.20:53"));
    for _ in 0..3 {
        let (rc, out) = env.xdp(&f.build());
        assert_eq!(rc, XDP_REDIRECT);
        check_encap_to_peer(&env, f.clone(), BE_REMOTE, &out);
    }
    let key = xlb_ct_key::new(sa(CLIENT_SA), sa("10.96.0.20:53"), UDP);
    // SAFETY: xlb_ct_key is a plain repr(C) struct of the map's key size.
    let raw = unsafe {
        std::slice::from_raw_parts(
            (&key as *const xlb_ct_key).cast::<u8>(),
            std::mem::size_of::<xlb_ct_key>(),
        )
    };
    env.dp.xdp.maps.ct.delete(raw).unwrap();
    let (rc, out) = env.xdp(&f.build());
    assert_eq!(rc, XDP_REDIRECT);
    check_encap_to_peer(&env, f.clone(), BE_REMOTE, &out);
    assert!(
        ct_at(&env, CLIENT_SA, "10.96.0.20:53", UDP).is_none(),
        "served from the flow cache (a ct miss would have written the entry again)"
    );
    assert!(
        ct_at(&env, BE_REMOTE, CLIENT_SA, UDP).is_none(),
        "no reverse entry"
    );
}
