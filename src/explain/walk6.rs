//! The walk for an IPv6 frame from the uplink, in `xlb_xdp6`'s order
//! (bpf/include/xdp6.h, lb6.h, ct6.h): ct6, the Service match on services6
//! (a NodePort on the config6 node address or one of local_addrs6), source
//! ranges (src_ranges6), traffic policy, endpoints, affinity6, the Maglev
//! slot of the IPv6 flow hash, the backend (backends6), and the tunnel6
//! entry of a remote one. The IPv6 path has no frontend or backend filter
//! and no per-CPU cache. Not modelled: frames from a pod (tc), frames that
//! arrive VXLAN-encapsulated, UDP with checksum 0 (`pass_udp6_no_csum`).

use super::*;

/// Reads of the IPv6 maps; the shared ones (config, maglev, the clock) are
/// [`View`]'s.
pub trait View6: View {
    /// config6's node address (`None` without one or without IPv6 maps).
    fn node_addr6(&self) -> anyhow::Result<Option<Ipv6Addr>>;
    fn service6(&self, k: &xlb_svc6_key) -> anyhow::Result<Option<xlb_svc_val>>;
    fn is_local_addr6(&self, a: Ipv6Addr) -> anyhow::Result<bool>;
    /// Whether `src_ranges6` allows `client` for `svc_id` (longest prefix).
    fn src_range6_allows(&self, svc_id: u32, client: Ipv6Addr) -> anyhow::Result<bool>;
    fn affinity6(&self, k: &xlb_affinity6_key) -> anyhow::Result<Option<xlb_affinity_val>>;
    fn ct6(&self, k: &xlb_ct6_key) -> anyhow::Result<Option<xlb_ct6_val>>;
    /// The slot `id` of `backends6`, active or not; `None` beyond the array.
    fn backend6(&self, id: u32) -> anyhow::Result<Option<xlb_backend6>>;
    /// The `tunnel6` entry covering `addr` (longest prefix).
    fn tunnel6(&self, addr: Ipv6Addr) -> anyhow::Result<Option<xlb_tunnel6_val>>;
}

/// The data plane's IPv6 flow hash (hash6.h `xlb_flow_hash6`).
pub fn flow_hash6(f: &Flow6, no_sport: bool) -> u32 {
    xlb_bpf::wire::flow_hash6(
        f.src.ip().octets(),
        f.dst.ip().octets(),
        f.src.port(),
        f.dst.port(),
        f.proto.number(),
        no_sport,
    )
}

/// Walks the IPv6 maps for `f`.
pub fn explain6(v: &dyn View6, f: &Flow6) -> anyhow::Result<Explanation> {
    let mut steps = Vec::new();
    let outcome = walk6(v, f, &mut steps)?;
    Ok(Explanation { steps, outcome })
}

/// The active backend at `id`, as lb6.h's `xlb_backend6_get`.
fn active_backend6(v: &dyn View6, id: u32) -> anyhow::Result<Option<xlb_backend6>> {
    Ok(v.backend6(id)?.filter(|b| b.is_active()))
}

/// The Service port of `f`, as lb6.h's `xlb_service6`: the address frontend
/// first, then the NodePort when the destination is this node's.
fn match_service6(
    v: &dyn View6,
    f: &Flow6,
    steps: &mut Vec<Step>,
) -> anyhow::Result<Option<xlb_svc_val>> {
    let dst = f.dst;
    if let Some(s) = v.service6(&xlb_svc6_key::addr(dst, f.proto))? {
        steps.push(Step {
            step: "service",
            found: format!("frontend {dst}/{} -> svc_id {}", f.proto.name(), s.svc_id),
        });
        return Ok(Some(s));
    }
    let Some(s) = v.service6(&xlb_svc6_key::nodeport(dst.port(), f.proto))? else {
        steps.push(Step {
            step: "service",
            found: format!(
                "no frontend {dst}/{} and no NodePort {}",
                f.proto.name(),
                dst.port()
            ),
        });
        return Ok(None);
    };
    let local = v
        .node_addr6()?
        .is_some_and(|a| !a.is_unspecified() && a == *dst.ip())
        || v.is_local_addr6(*dst.ip())?;
    steps.push(Step {
        step: "service",
        found: if local {
            format!(
                "NodePort {} on local address {} -> svc_id {}",
                dst.port(),
                dst.ip(),
                s.svc_id
            )
        } else {
            format!(
                "NodePort {} (svc_id {}) exists, but {} is no address of this node",
                dst.port(),
                s.svc_id,
                dst.ip()
            )
        },
    });
    Ok(local.then_some(s))
}

/// The frame sent through VXLAN over IPv6 to `peer` (xdp6.h `xlb6_to_peer`).
fn to_peer(v: &dyn View6, cfg: &xlb_config, o: &mut Outcome, peer: Ipv6Addr) -> anyhow::Result<()> {
    if v.node_addr6()?.is_none_or(|a| a.is_unspecified()) {
        *o = Outcome {
            verdict: Verdict::Drop,
            reason: "drop_no_tunnel".into(),
            note: Some("config6 has no node address: no IPv6 tunnel source".into()),
            ..o.clone()
        };
        return Ok(());
    }
    o.tunnel_to = Some(peer.into());
    let mtu = if cfg.mtu != 0 { cfg.mtu } else { 1500 };
    o.note = Some(format!(
        "VXLAN over IPv6 to {peer}; sent if the fib finds {peer}'s next hop (else passed \
         once to the stack: pass_fib_no_neigh), and if the frame plus 70 bytes fits the \
         MTU {mtu} (else tx_frag_needed)"
    ));
    Ok(())
}

/// Forwarding to backend `id` (xdp6.h `xlb6_forward`): DNAT, then the stack
/// (local) or VXLAN over IPv6 to its node.
fn forward6(
    v: &dyn View6,
    cfg: &xlb_config,
    id: u32,
    b: &xlb_backend6,
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
        o.node = node.map(IpAddr::V6);
        o.new_dst = Some(to.into());
        o
    };
    let Some(n) = node else {
        return Ok(o(Verdict::Pass, "pass_local"));
    };
    let tun = v.tunnel6(*to.ip())?;
    steps.push(Step {
        step: "tunnel",
        found: match &tun {
            Some(t) => format!(
                "{} -> VTEP MAC {} (node {})",
                to.ip(),
                xlb_bpf::wire::mac_string(&t.vtep_mac),
                t.node()
            ),
            None => format!("no tunnel6 entry covers {}", to.ip()),
        },
    });
    if tun.is_none() {
        return Ok(o(Verdict::Drop, "drop_no_tunnel"));
    }
    let mut r = o(Verdict::Tx, "tx_remote");
    to_peer(v, cfg, &mut r, n)?;
    Ok(r)
}

/// A reply of a balanced flow (reverse ct6 entry; xdp6.h `xlb6_reply`).
fn reply6(v: &dyn View6, cfg: &xlb_config, c: &xlb_ct6_val) -> anyhow::Result<Outcome> {
    let nat = c.nat_addr != [0; 4];
    let mut o = if c.flags & XLB_CT_F_TUNNEL != 0 && c.tunnel_peer != [0; 4] {
        let mut o = Outcome::new(Verdict::Tx, "tx_tunnel_return");
        if nat {
            o.new_src = Some(c.nat().into());
        }
        to_peer(v, cfg, &mut o, xlb_bpf::wire6::ip6(c.tunnel_peer))?;
        o
    } else if !nat {
        Outcome::new(Verdict::Pass, "pass_decap")
    } else {
        let mut o = Outcome::new(Verdict::Pass, "pass_revnat");
        o.new_src = Some(c.nat().into());
        o
    };
    o.svc_id = nat.then_some(c.svc_id);
    Ok(o)
}

fn walk6(v: &dyn View6, f: &Flow6, steps: &mut Vec<Step>) -> anyhow::Result<Outcome> {
    let cfg = v.config()?;
    let now = v.now();
    let t = xlb_ct6_key::new(f.src, f.dst, f.proto.number());
    if let Some(c) = v.ct6(&t)? {
        let live = age(now, c.last_seen) < ct_timeout(&cfg, c.flags, t.proto);
        if c.is_reverse() {
            steps.push(Step {
                step: "ct",
                found: format!(
                    "reverse ct6 entry (a reply): nat {}, flags {:#x}{}",
                    c.nat(),
                    c.flags,
                    if live { "" } else { ", timed out" }
                ),
            });
            if live {
                return reply6(v, &cfg, &c);
            }
        } else {
            let b = active_backend6(v, c.backend_id)?;
            let ok = live && b.is_some_and(|b| b.generation == c.generation);
            steps.push(Step {
                step: "ct",
                found: format!(
                    "forward ct6 entry: backend {} generation {} ({})",
                    c.backend_id,
                    c.generation,
                    if !live {
                        "timed out: choose again"
                    } else if ok {
                        "live: the connection keeps its backend"
                    } else {
                        "backend gone or reused: choose again"
                    }
                ),
            });
            if let (true, Some(b)) = (ok, b) {
                let mut o = forward6(v, &cfg, c.backend_id, &b, steps)?;
                o.svc_id = Some(c.svc_id);
                return Ok(o);
            }
        }
    } else {
        steps.push(Step {
            step: "ct",
            found: format!("no ct6 entry for {} -> {} (a new flow)", f.src, f.dst),
        });
    }
    let Some(svc) = match_service6(v, f, steps)? else {
        return Ok(Outcome::new(Verdict::Pass, "pass_not_service"));
    };
    let with_svc = |mut o: Outcome| {
        o.svc_id = Some(svc.svc_id);
        o
    };
    let client = *f.src.ip();
    if svc.flags & XLB_SVC_F_SRC_RANGES != 0 {
        let ok = v.src_range6_allows(svc.svc_id, client)?;
        steps.push(Step {
            step: "source ranges",
            found: format!(
                "{client} {}",
                if ok {
                    "allowed"
                } else {
                    "not in loadBalancerSourceRanges"
                }
            ),
        });
        if !ok {
            return Ok(with_svc(Outcome::new(Verdict::Drop, "drop_src_range")));
        }
    }
    if svc.flags & XLB_SVC_F_LOCAL != 0 {
        steps.push(Step {
            step: "traffic policy",
            found: format!("Local: {} backends on this node", svc.n_local),
        });
        if svc.n_local == 0 {
            let reason = if svc.fe_type == XLB_FE_CLUSTERIP as u8 {
                "drop_itp_local"
            } else {
                "drop_etp_local"
            };
            return Ok(with_svc(Outcome::new(Verdict::Drop, reason)));
        }
    }
    if svc.table_size == 0 {
        steps.push(Step {
            step: "endpoints",
            found: "none (table size 0)".into(),
        });
        return Ok(with_svc(reject(&cfg, Iface::Uplink, f.proto, f.rst)));
    }
    let aff = svc.flags & XLB_SVC_F_AFFINITY != 0;
    let mut by_client = aff;
    if aff {
        let timeout = u64::from(if svc.affinity_timeout != 0 {
            svc.affinity_timeout
        } else {
            XLB_AFFINITY_DEFAULT_S
        });
        let a = v.affinity6(&xlb_affinity6_key::new(svc.svc_id, client))?;
        let hit = match a {
            Some(a) if age(now, a.last_seen) < timeout * XLB_NSEC => {
                active_backend6(v, a.backend_id)?
                    .filter(|b| {
                        b.generation == a.generation && u32::from(b.flags) & XLB_BE_F_DRAINING == 0
                    })
                    .map(|b| (a.backend_id, b))
            }
            _ => None,
        };
        steps.push(Step {
            step: "affinity",
            found: match (&a, &hit) {
                (None, _) => format!("ClientIP ({timeout} s): no entry for {client}"),
                (Some(a), Some(_)) => format!(
                    "ClientIP ({timeout} s): {client} stays on backend {}",
                    a.backend_id
                ),
                (Some(a), None) => format!(
                    "ClientIP ({timeout} s): entry for backend {} expired or backend gone",
                    a.backend_id
                ),
            },
        });
        if let Some((id, b)) = hit {
            return Ok(with_svc(forward6(v, &cfg, id, &b, steps)?));
        }
        by_client = a.is_none();
    }
    let h = flow_hash6(f, by_client);
    let slot = svc.table_off.wrapping_add(h % svc.table_size);
    let id = v.maglev(slot)?;
    let b = match id {
        Some(id) => active_backend6(v, id)?,
        None => None,
    };
    steps.push(Step {
        step: "maglev",
        found: format!(
            "hash {h:#010x}{} -> slot {} of {} (table at {}) -> backend {}",
            if by_client {
                " (source port left out)"
            } else {
                ""
            },
            h % svc.table_size,
            svc.table_size,
            svc.table_off,
            match (id, &b) {
                (Some(id), Some(_)) => id.to_string(),
                (Some(id), None) => format!("{id}, which is not active"),
                (None, _) => "(slot beyond the array)".into(),
            }
        ),
    });
    match (id, b) {
        (Some(id), Some(b)) => Ok(with_svc(forward6(v, &cfg, id, &b, steps)?)),
        _ => Ok(with_svc(Outcome::new(Verdict::Drop, "drop_bad_maglev"))),
    }
}
