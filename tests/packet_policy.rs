//! # Traffic policy and draining packet tests
//!
//! The data plane's side of the Service semantics the model computes:
//! externalTrafficPolicy Local drops external clients without a local
//! endpoint while clients inside the cluster (a pod through tc, a pod of
//! another node through the tunnel) use the cluster-wide entry;
//! internalTrafficPolicy Local without a local endpoint drops; a draining
//! backend keeps its flows but is never chosen again, affinity included.
mod packet_util;

use packet_util::*;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;

const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x14];
const VETH_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0x01];
const EXT_VIP: &str = "10.96.1.40:80";
const ITP_VIP: &str = "10.96.1.41:80";

/// A frontend with `fe_type` (the fixture's helper writes ClusterIP ones).
fn put_fe(
    env: &Env,
    key: xlb_svc_key,
    svc_id: u32,
    off: u32,
    table: &[u32],
    flags: u32,
    fe_type: u32,
) {
    env.service(key, svc_id, off, table, flags);
    let mut v = env.maps().service(&key).unwrap().unwrap();
    v.fe_type = fe_type as u8;
    env.maps().put_service(&key, &v).unwrap();
}

/// An externalTrafficPolicy Local ExternalIP without local endpoint (drop
/// for external clients), whose internal entry balances over backend 3 (on
/// PEER); an internalTrafficPolicy Local ClusterIP without local endpoint.
fn policy_setup(env: &Env) {
    fixture(env);
    put_fe(
        env,
        tcp_key(EXT_VIP),
        30,
        600,
        &[],
        XLB_SVC_F_LOCAL | XLB_SVC_F_EXT_LOCAL,
        XLB_FE_EXTERNALIP,
    );
    put_fe(
        env,
        tcp_key(EXT_VIP).internal(),
        30,
        616,
        &[3; 7],
        0,
        XLB_FE_EXTERNALIP,
    );
    put_fe(
        env,
        tcp_key(ITP_VIP),
        31,
        632,
        &[],
        XLB_SVC_F_LOCAL,
        XLB_FE_CLUSTERIP,
    );
}

fn env() -> Option<Env> {
    let env = Env::new()?;
    policy_setup(&env);
    Some(env)
}

/// The backend of flow src -> dst: its ct forward entry, or its half-open
/// entry (the frames here are SYNs: ct_syn, bpf/include/ctsyn.h).
fn fwd_backend(env: &Env, src: &str, dst: &str) -> Option<u32> {
    env.maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(dst), TCP))
        .unwrap()
        .map(|v| v.backend_id)
        .or_else(|| {
            env.half_open(src)
                .filter(|h| h.frontend == sa(dst))
                .map(|h| h.backend_id)
        })
}

/// Runs `f` and returns the reasons that moved.
fn moved_by(env: &Env, f: impl FnOnce()) -> Vec<(String, u64)> {
    let before = env.reasons();
    f();
    moved(&before, &env.reasons())
}

#[test]
fn external_traffic_policy_local_drops_external_clients_only() {
    let Some(env) = env() else { return };
    // From the uplink: an external client, no local endpoint: dropped, counted.
    let m = moved_by(&env, || {
        let (rc, _) = env.xdp(&Frame::tcp(sa("198.18.0.100:40000"), sa(EXT_VIP)).build());
        assert_eq!(rc, XDP_DROP);
    });
    assert_eq!(m, vec![("drop_etp_local".to_string(), 1)]);
    assert_eq!(fwd_backend(&env, "198.18.0.100:40000", EXT_VIP), None);

    // From a pod (tc): inside the cluster, the cluster-wide entry.
    let pod = "10.244.1.20:33000";
    let m = moved_by(&env, || {
        let (rc, out) = env.tc(&Frame::tcp(sa(pod), sa(EXT_VIP))
            .macs(POD_MAC, VETH_MAC)
            .build());
        assert_eq!(rc, TC_ACT_OK);
        assert_eq!(check_eth_ipv4(&out, "dnat").2.dst(), sa(BE_REMOTE));
    });
    assert_eq!(m, vec![("tx_remote".to_string(), 1)]);
    assert_eq!(fwd_backend(&env, pod, EXT_VIP), Some(3));

    // From a pod of another node through the tunnel: inside the cluster too.
    let remote_pod = "10.244.2.20:33000";
    let inner = Frame::tcp(sa(remote_pod), sa(EXT_VIP)).build();
    let m = moved_by(&env, || {
        env.xdp(&vxlan(&inner, PEER, NODE, VNI, false));
    });
    assert!(!m.iter().any(|(r, _)| r.starts_with("drop")), "{m:?}");
    assert_eq!(fwd_backend(&env, remote_pod, EXT_VIP), Some(3));
}

#[test]
fn external_entry_without_internal_entry_is_used_by_everybody() {
    // (A frontend flagged EXT_LOCAL whose internal entry is missing, e.g.
    // mid-update: pods are treated as the frontend says, never crash or pass.)
    let Some(env) = env() else { return };
    env.maps()
        .delete_service(&tcp_key(EXT_VIP).internal())
        .unwrap();
    let pod = "10.244.1.20:33001";
    let m = moved_by(&env, || {
        let (rc, _) = env.tc(&Frame::tcp(sa(pod), sa(EXT_VIP))
            .macs(POD_MAC, VETH_MAC)
            .build());
        assert_eq!(rc, TC_ACT_SHOT);
    });
    assert_eq!(m, vec![("drop_etp_local".to_string(), 1)]);
}

#[test]
fn internal_traffic_policy_local_without_local_endpoint_drops() {
    let Some(env) = env() else { return };
    let m = moved_by(&env, || {
        let (rc, _) = env.tc(&Frame::tcp(sa("10.244.1.20:33002"), sa(ITP_VIP))
            .macs(POD_MAC, VETH_MAC)
            .build());
        assert_eq!(rc, TC_ACT_SHOT);
    });
    assert_eq!(m, vec![("drop_itp_local".to_string(), 1)]);
    // Without the LOCAL flag (no endpoint anywhere) it rejects instead.
    put_fe(&env, tcp_key(ITP_VIP), 31, 632, &[], 0, XLB_FE_CLUSTERIP);
    let m = moved_by(&env, || {
        env.tc(&Frame::tcp(sa("10.244.1.20:33003"), sa(ITP_VIP))
            .macs(POD_MAC, VETH_MAC)
            .build());
    });
    assert_eq!(m, vec![("tx_reject".to_string(), 1)]);
}

/// Marks backend `id` draining (and terminating) in place, same generation.
fn drain(env: &Env, id: u32) {
    let mut b = env.maps().backend(id).unwrap().unwrap();
    b.flags |= (XLB_BE_F_DRAINING | XLB_BE_F_TERMINATING) as u8;
    env.maps().put_backend(id, &b).unwrap();
}

#[test]
fn draining_backend_keeps_its_flows_until_retired() {
    let Some(env) = env() else { return };
    // 10.96.0.70 balances over 1, 5, 6 (MULTI_TABLE): find a flow on 5.
    let client = (40000..41000)
        .map(|p| format!("198.18.0.100:{p}"))
        .find(|c| maglev_pick(&MULTI_TABLE, sa(c), sa("10.96.0.70:80"), TCP, false) == 5)
        .unwrap();
    let f = Frame::tcp(sa(&client), sa("10.96.0.70:80")).build();
    env.xdp(&f);
    assert_eq!(fwd_backend(&env, &client, "10.96.0.70:80"), Some(5));
    // 5 terminates: out of the table (now 1 and 6 only), draining.
    drain(&env, 5);
    let table: Vec<u32> = MULTI_TABLE
        .iter()
        .map(|id| if *id == 5 { 1 } else { *id })
        .collect();
    env.service(tcp_key("10.96.0.70:80"), 11, 160, &table, 0);
    let (_, out) = env.xdp(&f);
    assert_eq!(
        check_eth_ipv4(&out, "dnat").2.dst(),
        sa(BE_5),
        "established flow moved"
    );
    // It leaves the slices: retired (generation bumped): the flow is re-chosen.
    let mut b = env.maps().backend(5).unwrap().unwrap();
    b.flags = 0;
    b.generation += 1;
    env.maps().put_backend(5, &b).unwrap();
    let (_, out) = env.xdp(&f);
    assert_ne!(check_eth_ipv4(&out, "dnat").2.dst(), sa(BE_5));
    assert_ne!(fwd_backend(&env, &client, "10.96.0.70:80"), Some(5));
}

#[test]
fn affinity_never_sends_a_new_connection_to_a_draining_backend() {
    let Some(env) = env() else { return };
    let vip = "10.96.0.60:80"; // affinity, AFF_TABLE over 1, 5, 6
    let client = std::net::Ipv4Addr::new(198, 18, 0, 100);
    let pin = |id: u32| {
        let generation = env.maps().backend(id).unwrap().unwrap().generation;
        env.maps()
            .put_affinity(
                &xlb_affinity_key::new(10, client),
                &xlb_affinity_val {
                    backend_id: id,
                    generation,
                    last_seen: now_ns(),
                },
            )
            .unwrap();
    };
    // The client's affinity names 6, which it keeps while 6 is live...
    pin(6);
    env.xdp(&Frame::tcp(sa("198.18.0.100:41000"), sa(vip)).build());
    assert_eq!(fwd_backend(&env, "198.18.0.100:41000", vip), Some(6));
    // ...but not once 6 drains: the new connection goes by the table.
    drain(&env, 6);
    let table: Vec<u32> = AFF_TABLE
        .iter()
        .map(|id| if *id == 6 { 1 } else { *id })
        .collect();
    env.service(tcp_key(vip), 10, 144, &table, XLB_SVC_F_AFFINITY);
    pin(6);
    env.xdp(&Frame::tcp(sa("198.18.0.100:41001"), sa(vip)).build());
    let got = fwd_backend(&env, "198.18.0.100:41001", vip).unwrap();
    assert_ne!(got, 6);
    // The established one still uses 6.
    env.xdp(&Frame::tcp(sa("198.18.0.100:41000"), sa(vip)).build());
    assert_eq!(fwd_backend(&env, "198.18.0.100:41000", vip), Some(6));
}
