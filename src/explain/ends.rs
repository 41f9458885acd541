//! How a walk ends when the frame is handled: a reject (RST or ICMP), a
//! reply's reverse NAT, or a forward to the chosen backend (DNAT, and VXLAN to
//! a remote one).

use super::*;

/// A Service without endpoints: RST / ICMP port unreachable, or a drop.
/// (IPv4 and IPv6 alike: a TCP RST, or ICMP / ICMPv6 port unreachable.)
pub(super) fn reject(cfg: &xlb_config, iface: Iface, proto: Proto, rst: bool) -> Outcome {
    let answer = if iface == Iface::Uplink {
        Verdict::Tx
    } else {
        Verdict::Redirect
    };
    if cfg.flags & XLB_CFG_F_REJECT == 0 || (proto == Proto::Tcp && rst) {
        return Outcome::new(Verdict::Drop, "drop_no_backend");
    }
    let mut o = Outcome::new(answer, "tx_reject");
    o.note = Some(match proto {
        Proto::Tcp => "answered with a TCP RST".into(),
        _ => "answered with ICMP port unreachable".into(),
    });
    o
}

/// A reply of a balanced flow (reverse ct entry).
pub(super) fn reply(f: &Flow, c: &xlb_ct_val, xdp: bool) -> Outcome {
    let nat = c.nat_addr != 0;
    let mut o = if c.flags & XLB_CT_F_HAIRPIN != 0 && nat && !xdp {
        let mut o = Outcome::new(Verdict::Redirect, "pass_revnat");
        o.new_dst = Some(SocketAddrV4::new(*f.src.ip(), f.dst.port()).into());
        o
    } else if c.flags & XLB_CT_F_TUNNEL != 0 && c.tunnel_peer != 0 {
        let mut o = Outcome::new(
            if xdp { Verdict::Tx } else { Verdict::Redirect },
            "tx_tunnel_return",
        );
        o.tunnel_to = Some(ip(c.tunnel_peer).into());
        if xdp {
            o.note = Some("sent if the fib finds the tunnel peer's next hop".into());
        }
        o
    } else if !nat {
        Outcome::new(
            Verdict::Pass,
            if xdp {
                "pass_decap"
            } else {
                "pass_not_service"
            },
        )
    } else {
        Outcome::new(Verdict::Pass, "pass_revnat")
    };
    if nat {
        o.new_src = Some(c.nat().into());
    }
    o.svc_id = nat.then_some(c.svc_id);
    o
}

/// Forwarding to backend `id`: DNAT, then the stack (local) or VXLAN to its node.
pub(super) fn forward(
    v: &dyn View,
    cfg: &xlb_config,
    f: &Flow,
    id: u32,
    b: &xlb_backend,
    steps: &mut Vec<Step>,
) -> anyhow::Result<Outcome> {
    let to = b.sockaddr();
    let node = b.node();
    steps.push(Step {
        step: "backend",
        found: format!(
            "{id}: {to} on {} (generation {})",
            node.map_or("this node".to_string(), |n| format!("node {n}")),
            b.generation
        ),
    });
    let o = |verdict: Verdict, reason: &str| {
        let mut o = Outcome::new(verdict, reason);
        o.backend_id = Some(id);
        o.backend = Some(to.into());
        o.node = node.map(IpAddr::V4);
        o.new_dst = Some(to.into());
        o
    };
    if f.iface == Iface::Pod {
        if node.is_none() && to.ip() == f.src.ip() {
            let mut r = o(Verdict::Redirect, "pass_local");
            r.new_src =
                Some(SocketAddrV4::new(Ipv4Addr::from(XLB_HAIRPIN_ADDR), f.src.port()).into());
            r.note = Some("hairpin: the pod reaches itself, from 169.254.42.1".into());
            return Ok(r);
        }
        return Ok(if node.is_some() {
            let mut r = o(Verdict::Pass, "tx_remote");
            r.note = Some("to the stack, which routes it through the overlay device".into());
            r
        } else {
            o(Verdict::Pass, "pass_local")
        });
    }
    let Some(n) = node else {
        return Ok(o(Verdict::Pass, "pass_local"));
    };
    let tun = v.tunnel(*to.ip())?;
    steps.push(Step {
        step: "tunnel",
        found: match &tun {
            Some(t) => format!(
                "{} -> VTEP MAC {} (node {})",
                to.ip(),
                xlb_bpf::wire::mac_string(&t.vtep_mac),
                t.node()
            ),
            None => format!("no tunnel entry covers {}", to.ip()),
        },
    });
    if tun.is_none() {
        return Ok(o(Verdict::Drop, "drop_no_tunnel"));
    }
    let mut r = o(Verdict::Tx, "tx_remote");
    r.tunnel_to = Some(n.into());
    let mtu = if cfg.mtu != 0 { cfg.mtu } else { 1500 };
    let sport =
        0xc000 | (flow_hash(&xlb_ct_key::new(f.src, f.dst, f.proto.number()), false) & 0x3fff);
    r.note = Some(if cfg.flags & XLB_CFG_F_TNAT != 0 {
        format!(
            "VXLAN to {n} (UDP source port {sport:#06x}) with the frontend {} (tunnel NAT: {n} \
             reverse-NATs the replies, this node keeps the forward ct entry only); sent if the \
             fib finds {n}'s next hop (else passed once to the stack: pass_fib_no_neigh), and if \
             the frame plus 58 bytes fits the MTU {mtu} (else tx_frag_needed)",
            f.dst
        )
    } else {
        format!(
            "VXLAN to {n} (UDP source port {sport:#06x}; tunnel NAT off: this node reverse-NATs \
             the replies {n} returns); sent if the fib finds {n}'s next hop (else passed once to \
             the stack: pass_fib_no_neigh), and if the frame plus 50 bytes fits the MTU {mtu} \
             (else tx_frag_needed)"
        )
    });
    Ok(r)
}
