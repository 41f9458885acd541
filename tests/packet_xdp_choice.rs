//! # XDP packet tests: the backend choice
//!
//! The uplink program through BPF_PROG_RUN (table rows as in `packet_xdp.rs`):
//! Maglev, session affinity, ct entries that keep (or lose) their backend,
//! per-Service counters, and which flow owns a shared reverse ct entry.
mod packet_util;

use std::net::Ipv4Addr;

use packet_util::xdp::*;
use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::be32;

fn cases() -> Vec<Case> {
    vec![
        // --- choice -----------------------------------------------------------------
        Case {
            name: "Maglev: backend = table[hash(5-tuple) % M]",
            setup: no_setup,
            frame: || syn("10.96.0.70:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&MULTI_TABLE, sa(CLIENT_SA), sa("10.96.0.70:80"), TCP, false);
                assert_dnat(syn("10.96.0.70:80"), &backend_sa(env, id), out);
                assert_eq!(ct_backend(env, CLIENT_SA, "10.96.0.70:80", TCP), id);
            },
        },
        Case {
            name: "affinity: source port left out of the hash, affinity entry written",
            setup: no_setup,
            frame: || syn("10.96.0.60:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&AFF_TABLE, sa(CLIENT_SA), sa("10.96.0.60:80"), TCP, true);
                assert_dnat(syn("10.96.0.60:80"), &backend_sa(env, id), out);
                assert_eq!(ct_backend(env, CLIENT_SA, "10.96.0.60:80", TCP), id);
                let a = env
                    .maps()
                    .affinity_entry(&xlb_affinity_key::new(10, CLIENT))
                    .unwrap()
                    .expect("affinity entry");
                assert_eq!(a.backend_id, id);
            },
        },
        Case {
            name: "affinity: a new connection of the client keeps its backend",
            setup: |env| {
                let id = maglev_pick(&AFF_TABLE, sa(CLIENT_SA), sa("10.96.0.60:80"), TCP, true);
                let other = if id == 6 { 5 } else { 6 };
                env.maps()
                    .put_affinity(
                        &xlb_affinity_key::new(10, CLIENT),
                        &xlb_affinity_val {
                            backend_id: other,
                            generation: 1,
                            last_seen: now_ns(),
                        },
                    )
                    .unwrap();
            },
            frame: || Frame::tcp(sa("198.18.0.100:41111"), sa("10.96.0.60:80")).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&AFF_TABLE, sa(CLIENT_SA), sa("10.96.0.60:80"), TCP, true);
                let other = if id == 6 { 5 } else { 6 };
                let f = Frame::tcp(sa("198.18.0.100:41111"), sa("10.96.0.60:80"));
                assert_dnat(f, &backend_sa(env, other), out);
                assert_eq!(
                    ct_backend(env, "198.18.0.100:41111", "10.96.0.60:80", TCP),
                    other
                );
            },
        },
        Case {
            name: "affinity expired: a fresh choice from the whole flow",
            setup: |env| {
                // The expired entry holds what the client's address alone picks.
                let by_client =
                    maglev_pick(&AFF_TABLE, expiry_client(), sa("10.96.0.60:80"), TCP, true);
                env.maps()
                    .put_affinity(
                        &xlb_affinity_key::new(10, CLIENT),
                        &xlb_affinity_val {
                            backend_id: by_client,
                            generation: 1,
                            last_seen: now_ns() - 200_000_000_000,
                        },
                    )
                    .unwrap();
            },
            frame: || Frame::tcp(expiry_client(), sa("10.96.0.60:80")).build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let c = expiry_client();
                let id = maglev_pick(&AFF_TABLE, c, sa("10.96.0.60:80"), TCP, false);
                assert_dnat(
                    Frame::tcp(c, sa("10.96.0.60:80")),
                    &backend_sa(env, id),
                    out,
                );
                assert_eq!(ct_backend(env, &c.to_string(), "10.96.0.60:80", TCP), id);
                let a = env
                    .maps()
                    .affinity_entry(&xlb_affinity_key::new(10, CLIENT))
                    .unwrap()
                    .unwrap();
                assert_eq!(a.backend_id, id);
            },
        },
        Case {
            name: "CT hit keeps its backend after the Maglev table changes",
            setup: |env| {
                open(env, "10.96.0.70:80");
                let id = ct_backend(env, CLIENT_SA, "10.96.0.70:80", TCP);
                let other = if id == 6 { 5 } else { 6 };
                env.maps().write_maglev(160, &[other; 13]).unwrap();
            },
            frame: || syn("10.96.0.70:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                let id = maglev_pick(&MULTI_TABLE, sa(CLIENT_SA), sa("10.96.0.70:80"), TCP, false);
                assert_dnat(syn("10.96.0.70:80"), &backend_sa(env, id), out);
            },
        },
        Case {
            name: "removed backend: its CT entry is chosen again",
            setup: |env| {
                open(env, "10.96.0.10:80");
                let mut b = env.maps().backend(1).unwrap().unwrap();
                b.flags = 0;
                b.generation += 1;
                env.maps().put_backend(1, &b).unwrap();
                env.maps().write_maglev(0, &[5; 7]).unwrap();
            },
            frame: || syn("10.96.0.10:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(syn("10.96.0.10:80"), BE_5, out);
                assert_ct_pair(env, CLIENT_SA, "10.96.0.10:80", 5, BE_5);
            },
        },
        Case {
            name: "reused backend id (generation bumped): CT entry chosen again",
            setup: |env| {
                open(env, "10.96.0.10:80");
                env.maps()
                    .put_backend(1, &xlb_backend::new(sa("10.244.1.50:8080"), None, 2))
                    .unwrap();
            },
            frame: || syn("10.96.0.10:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, _, out| {
                assert_dnat(syn("10.96.0.10:80"), "10.244.1.50:8080", out);
                let fwd = env
                    .maps()
                    .ct_entry(&xlb_ct_key::new(sa(CLIENT_SA), sa("10.96.0.10:80"), TCP))
                    .unwrap()
                    .unwrap();
                assert_eq!(fwd.generation, 2);
            },
        },
        Case {
            name: "Maglev slot naming an inactive backend: dropped, counted",
            setup: no_setup,
            frame: || syn("10.96.0.80:80").build(),
            on_uplink: false,
            rc: XDP_DROP,
            reason: XLB_R_DROP_BAD_MAGLEV,
            check: |_, _, _| {},
        },
        Case {
            name: "per-Service counters count packets and bytes",
            setup: no_setup,
            frame: || syn("10.96.0.10:80").build(),
            on_uplink: false,
            rc: XDP_PASS,
            reason: XLB_R_PASS_LOCAL,
            check: |env, input, _| {
                let before = env.maps().svc_counter(1).unwrap();
                env.xdp(input);
                let after = env.maps().svc_counter(1).unwrap();
                assert_eq!(after.packets - before.packets, 1);
                assert_eq!(after.bytes - before.bytes, input.len() as u64);
            },
        },
    ]
}

#[test]
fn xdp_choice_table() {
    let Some(env) = Env::new() else { return };
    let cases = cases();
    assert!(cases.len() >= 9, "{} cases", cases.len());
    run_table(&env, Prog::Xdp, &cases);
}

/// Many flows: the choice is always the Maglev slot of the flow hash.
#[test]
fn xdp_maglev_choice_matches_hash() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    for port in 20000..20200u16 {
        let src = std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, (port % 200) as u8), port);
        let f = Frame::tcp(src, sa("10.96.0.70:80"));
        let (rc, _) = env.xdp(&f.build());
        assert_eq!(rc, XDP_PASS);
        let want = maglev_pick(&MULTI_TABLE, src, sa("10.96.0.70:80"), TCP, false);
        let got = env.half_open(&src.to_string()).unwrap().backend_id;
        assert_eq!(got, want, "flow {src}");
    }
    let _ = be32(NODE);
}

/// Two flows of one client source port to two frontends that chose the same
/// backend share one reverse key (backend -> client). The newest flow takes
/// it; the other flow's next packet takes it back (its forward entry was
/// flagged), so each flow's replies are reverse-NATed to the frontend its
/// packets went to. A reverse entry lost without a flag (LRU eviction) is
/// restored at the flow's once-a-second refresh.
#[test]
fn reverse_entry_follows_the_flow_that_sent_last() {
    let Some(env) = Env::new() else { return };
    fixture(&env);
    let node_port = std::net::SocketAddrV4::new(NODE, 30080);
    let rev_key = xlb_ct_key::new(sa(BE_LOCAL), sa(CLIENT_SA), TCP);
    let rev_nat = |env: &Env| {
        env.maps()
            .ct_entry(&rev_key)
            .unwrap()
            .expect("reverse entry")
            .nat()
    };
    send(&env, sa("10.96.0.10:80"));
    assert_eq!(rev_nat(&env), sa("10.96.0.10:80"));
    send(&env, node_port);
    assert_eq!(
        rev_nat(&env),
        node_port,
        "the newest flow takes the reverse key"
    );
    assert_eq!(reply_src(&env), node_port);
    send(&env, sa("10.96.0.10:80"));
    assert_eq!(
        rev_nat(&env),
        sa("10.96.0.10:80"),
        "taken back at the next packet"
    );
    assert_eq!(reply_src(&env), sa("10.96.0.10:80"));
    send(&env, node_port);
    assert_eq!(rev_nat(&env), node_port, "and back again");
    // Lost without a flag: restored once the forward entry is due a refresh.
    assert!(env.maps().delete_ct(&rev_key).unwrap());
    let fwd_key = xlb_ct_key::new(sa(CLIENT_SA), node_port, TCP);
    let mut fwd = env.maps().ct_entry(&fwd_key).unwrap().unwrap();
    fwd.last_seen = now_ns() - 2_000_000_000;
    env.maps().put_ct(&fwd_key, &fwd).unwrap();
    send(&env, node_port);
    assert_eq!(rev_nat(&env), node_port, "restored at the refresh");
}
