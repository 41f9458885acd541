//! The data plane's maps for a bench run: K Services, their backends on the
//! remote node, and connection tracking sized for the flows.

use anyhow::{Context, Result};
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::{be16, be32};
use xlb_bpf::Maps;
use xlb_pktgen::Template;

use super::args::{RunArgs, Scenario};
use super::frames::*;
use super::topo::*;
use super::topo6::*;

/// Connection-tracking entries for `flows` flows: every flow holds two (its
/// forward entry and the reverse one its replies use), and an LRU map evicts
/// before it is full, so 4 per flow rounded up to a power of two, never below
/// the data plane's default. An operator sizes ct for their connection count
/// the same way (`LoadOptions::ct_entries`).
pub fn ct_entries(flows: u32) -> u32 {
    (u64::from(flows) * 4)
        .next_power_of_two()
        .min(1 << 31)
        .max(u64::from(XLB_CT_ENTRIES)) as u32
}

/// The ct entries a scenario's flows live in: `ct` sized for the flows
/// ([`ct_entries`]), or `ct6` (IPv6 scenarios), which the data plane
/// allocates at its fixed `XLB_CT6_ENTRIES`.
pub fn scenario_ct_entries(s: Scenario, flows: u32) -> u32 {
    if s.is_v6() {
        XLB_CT6_ENTRIES
    } else {
        ct_entries(flows)
    }
}

pub(super) use xlb_bpf::maps::monotonic_ns;

/// Writes the Maglev region of bench Service `i` (of either family): the
/// backends round-robin over its slots (the data plane only reads slots;
/// Maglev's permutation is the agent's business). `table` is scratch.
fn put_table(m: &Maps, table: &mut [u32], i: u32) -> Result<()> {
    for (k, slot) in table.iter_mut().enumerate() {
        *slot = 1 + (i + k as u32) % BACKENDS;
    }
    m.write_maglev(i * TABLE, table)?;
    Ok(())
}

/// The `services` value of bench Service `i`'s frontend of kind `fe`.
fn svc_val(i: u32, fe: xlb_bpf::Kind) -> xlb_svc_val {
    xlb_svc_val {
        svc_id: i + 1,
        table_off: i * TABLE,
        table_size: TABLE,
        fe_type: fe.fe_type(),
        ..Default::default()
    }
}

/// The `svc_stable` entry of bench Service `i` (IPv4, UDP or TCP): its own
/// table, window closed (a brand-new Service has no flows to protect),
/// written before its `services` entries as the agent does (docs/ctl.md,
/// "Stateless flows"); no ct entry of it can exist yet (`ct_seen` 0: the
/// data plane skips the ct lookup from the first packet, as it does for an
/// agent's Service once its protocol's timeout has passed).
fn put_stable(m: &Maps, i: u32) -> Result<()> {
    if m.has_svc_stable() {
        let v = svc_val(i, xlb_bpf::Kind::ClusterIp);
        m.put_svc_stable_new(
            v.svc_id,
            &xlb_svc_stable {
                table_off: v.table_off,
                table_size: v.table_size,
                window_end: 0,
                ..Default::default()
            },
        )?;
    }
    Ok(())
}

/// Fills the data plane's maps: config, local addresses, tunnel, backends on
/// the remote node, K ClusterIP Services (each with its own Maglev region; the
/// target one also as NodePort) and, for reply-revnat, a reverse ct entry per flow.
pub(super) fn fill_maps(
    m: &Maps,
    t: &Topo,
    s: Scenario,
    a: &RunArgs,
    services: u32,
    tmpl: &Template,
) -> Result<()> {
    m.put_config(&xlb_config {
        node_addr: be32(NODE),
        vxlan_port: be16(XLB_VXLAN_PORT_DEFAULT as u16),
        mtu: MTU,
        vni: XLB_VNI_DEFAULT,
        ifindex: match t.egress {
            Egress::Same => t.ifindex_n0,
            Egress::Other => t.ifindex_n1,
        },
        // decapsulated frames are passed up on the node's port: its MAC
        mac: t.mac_n0,
        flags: XLB_CFG_F_VXLAN | XLB_CFG_F_TNAT,
        ..Default::default()
    })?;
    m.put_local_addr(NODE)?;
    m.put_local_addr(NODE_SINK_SIDE)?;
    if s.is_v6() {
        return fill_maps6(m, t, a, services);
    }
    m.put_tunnel(
        &xlb_tunnel_key::new(REMOTE_PODS, 24),
        &xlb_tunnel_val::new(REMOTE_NODE, t.remote_mac()),
    )?;
    m.put_tunnel(
        &xlb_tunnel_key::new(CLIENT_PODS, 24),
        &xlb_tunnel_val::new(CLIENT, t.mac_c0),
    )?;
    for j in 0..BACKENDS {
        m.put_backend(
            j + 1,
            &xlb_backend::new(backend_addr(j), Some(REMOTE_NODE), 0),
        )?;
    }
    let p = proto(a.proto);
    let tgt = target(services);
    let mut table = vec![0u32; TABLE as usize];
    for i in 0..services {
        put_table(m, &mut table, i)?;
        put_stable(m, i)?;
        m.put_service(
            &xlb_svc_key::addr(svc_addr(i), p),
            &svc_val(i, xlb_bpf::Kind::ClusterIp),
        )?;
        if i == tgt {
            m.put_service(
                &xlb_svc_key::nodeport(NODEPORT, p),
                &svc_val(i, xlb_bpf::Kind::NodePort),
            )?;
        }
    }
    if a.new_flows {
        // the Service of the established flows (`put_established`): one
        // more ClusterIP after the K, with a Maglev region of its own
        let i = services;
        put_table(m, &mut table, i)?;
        put_stable(m, i)?;
        m.put_service(
            &xlb_svc_key::addr(svc_addr(i), p),
            &svc_val(i, xlb_bpf::Kind::ClusterIp),
        )?;
    }
    if s == Scenario::ReplyRevnat {
        let now = monotonic_ns();
        for f in 0..tmpl.flows() {
            let std::net::SocketAddr::V4(client) = tmpl.flow(f) else {
                anyhow::bail!("reply-revnat: an IPv4 template")
            };
            let key = xlb_ct_key::new(backend_addr(0), client, p.number());
            m.put_ct(
                &key,
                &xlb_ct_val {
                    backend_id: 1,
                    svc_id: tgt + 1,
                    flags: XLB_CT_F_REVERSE,
                    nat_addr: be32(NODE),
                    nat_port: be16(NODEPORT),
                    last_seen: now,
                    ..Default::default()
                },
            )
            .with_context(|| format!("ct reverse entry {f}"))?;
        }
    }
    Ok(())
}

/// The IPv6 scenarios' part: config6, local addresses, tunnel6 to the remote
/// node and to the client's node, backends6 there and K IPv6 ClusterIP Services (the target one also
/// as NodePort), the IPv4 config (VXLAN port, MTU, uplink) as filled above.
fn fill_maps6(m: &Maps, t: &Topo, a: &RunArgs, services: u32) -> Result<()> {
    use xlb_bpf::types::{
        xlb_backend6, xlb_config6, xlb_svc6_key, xlb_tunnel6_key, xlb_tunnel6_val,
    };
    m.put_config6(&xlb_config6 {
        node_addr: xlb_bpf::wire6::be128(NODE6),
        ..Default::default()
    })?;
    m.put_local_addr6(NODE6)?;
    m.put_local_addr6(NODE_SINK_SIDE6)?;
    m.put_tunnel6(
        &xlb_tunnel6_key::new(REMOTE_PODS6, 64),
        &xlb_tunnel6_val::new(REMOTE_NODE6, t.remote_mac()),
    )?;
    m.put_tunnel6(
        &xlb_tunnel6_key::new(CLIENT_PODS6, 64),
        &xlb_tunnel6_val::new(CLIENT6, t.mac_c0),
    )?;
    for j in 0..BACKENDS {
        m.put_backend6(
            j + 1,
            &xlb_backend6::new(backend_addr6(j), Some(REMOTE_NODE6), 0),
        )?;
    }
    let p = proto(a.proto);
    let tgt = target(services);
    let mut table = vec![0u32; TABLE as usize];
    for i in 0..services {
        put_table(m, &mut table, i)?;
        m.put_service6(
            &xlb_svc6_key::addr(svc_addr6(i), p),
            &svc_val(i, xlb_bpf::Kind::ClusterIp),
        )?;
        if i == tgt {
            m.put_service6(
                &xlb_svc6_key::nodeport(NODEPORT, p),
                &svc_val(i, xlb_bpf::Kind::NodePort),
            )?;
        }
    }
    Ok(())
}

/// Established flows of another Service, idle through a `--new-flows` run.
pub(super) const ESTABLISHED: u32 = 10_000;

/// Writes [`ESTABLISHED`] flows of the Service after the K (see `fill_maps`)
/// as the data plane does at a flow's first packet: a forward entry (client ->
/// ClusterIP, its backend) and the reverse one. Returns the forward keys and
/// backends.
pub(super) fn put_established(
    m: &Maps,
    services: u32,
    a: &RunArgs,
) -> Result<Vec<(xlb_ct_key, u32)>> {
    let p = proto(a.proto);
    let svc = svc_addr(services);
    let now = monotonic_ns();
    let mut out = Vec::with_capacity(ESTABLISHED as usize);
    for i in 0..ESTABLISHED {
        let client = std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::from(u32::from(CLIENTS) + i % 64),
            CLIENT_PORT + (i / 64) as u16,
        );
        let j = i % BACKENDS;
        let fwd = xlb_ct_key::new(client, svc, p.number());
        m.put_ct(
            &fwd,
            &xlb_ct_val {
                backend_id: j + 1,
                svc_id: services + 1,
                flags: XLB_CT_F_REMOTE,
                last_seen: now,
                ..Default::default()
            },
        )
        .with_context(|| format!("established flow {i}"))?;
        m.put_ct(
            &xlb_ct_key::new(backend_addr(j), client, p.number()),
            &xlb_ct_val {
                backend_id: j + 1,
                svc_id: services + 1,
                flags: XLB_CT_F_REVERSE,
                nat_addr: be32(*svc.ip()),
                nat_port: be16(svc.port()),
                last_seen: now,
                ..Default::default()
            },
        )
        .with_context(|| format!("established flow {i} (reverse)"))?;
        out.push((fwd, j + 1));
    }
    Ok(out)
}

/// Of `flows`, those whose forward entry is still there with its backend.
pub(super) fn established_kept(m: &Maps, flows: &[(xlb_ct_key, u32)]) -> Result<u64> {
    let mut kept = 0;
    for (k, b) in flows {
        if m.ct_entry(k)?.is_some_and(|v| v.backend_id == *b) {
            kept += 1;
        }
    }
    Ok(kept)
}

/// `ct_syn` slots in use (a non-zero check word: struct xlb_syn, maps.h).
pub(super) fn half_open_live(dp: &xlb_loader::DataPlane) -> Result<u64> {
    use libbpf_rs::MapCore;
    let map = &dp.xdp.maps.ct_syn;
    let mut n = 0;
    for i in 0..XLB_SYN_SLOTS {
        let v = map
            .lookup(&i.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .context("ct_syn lookup")?;
        if v.is_some_and(|v| v[..4] != [0; 4]) {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_holds_two_entries_per_flow_with_headroom() {
        assert_eq!(ct_entries(1), XLB_CT_ENTRIES);
        assert_eq!(ct_entries(100_000), XLB_CT_ENTRIES);
        assert_eq!(ct_entries(300_000), 1 << 21);
        assert_eq!(ct_entries(1_000_000), 1 << 22);
        for f in [1, 1000, 262_145, 1_000_000] {
            assert!(ct_entries(f) >= 4 * f && ct_entries(f).is_power_of_two());
        }
    }
}
