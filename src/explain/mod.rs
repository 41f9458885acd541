//! # Explain: what the data plane would do with one frame
//!
//! A pure walk over the maps (read through [`View`]) in the data plane's own
//! order (docs/dp.md, "What the XDP program does"): the filters, connection
//! tracking, the Service match, source ranges, endpoints, traffic policy,
//! session affinity, the Maglev slot of the same flow hash, the backend, and
//! the tunnel entry of a remote one. Each step is recorded with what it found;
//! the [`Outcome`] names the verdict, the reason counter the frame would move,
//! and the backend and rewritten addresses. `tests/explain_prog.rs` checks the
//! outcome against the programs themselves (BPF_PROG_RUN) for random maps
//! and frames.
//!
//! Modelled: an untunneled TCP/UDP frame arriving on the uplink (XDP) or from
//! a pod (tc). Not modelled: frames that arrive VXLAN-encapsulated, the
//! per-CPU caches (copies of what the walk reads), the fib lookup of a remote
//! backend's next hop (the kernel's routing: [`Outcome::note`] says so).
//!
//! IPv6: [`explain6`] walks the IPv6 maps for a frame from the uplink (the
//! XDP program's IPv6 path), in `walk6`; `tests/explain_prog6.rs` checks it.
//!
//! Here: the walk. What it reports is in `outcome`, how a handled frame
//! ends (reject, reverse NAT, forward) in `ends`, the map reads in [`view`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use serde::Serialize;
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::{be32, hash3, ip};
use xlb_bpf::Proto;

mod ends;
mod outcome;
pub mod view;
mod view6;
mod walk6;

use ends::*;
pub use outcome::*;
pub use view::MapsView;
pub use walk6::{explain6, flow_hash6, View6};

/// Reads of the maps the walk needs. `Err` is a map that could not be read.
pub trait View {
    fn config(&self) -> anyhow::Result<xlb_config>;
    /// `fe_filter`'s count at the slot of `k`; `None` without the filter.
    fn fe_filter(&self, k: &xlb_svc_key) -> anyhow::Result<Option<u32>>;
    /// `be_filter`'s count at the slot of `addr`; `None` without the filter.
    fn be_filter(&self, addr: Ipv4Addr) -> anyhow::Result<Option<u32>>;
    fn service(&self, k: &xlb_svc_key) -> anyhow::Result<Option<xlb_svc_val>>;
    fn is_local_addr(&self, a: Ipv4Addr) -> anyhow::Result<bool>;
    /// Whether `a` is in `remote_addrs` (another node's address).
    fn is_remote_addr(&self, a: Ipv4Addr) -> anyhow::Result<bool>;
    /// Whether `src_ranges` allows `client` for `svc_id` (longest prefix).
    fn src_range_allows(&self, svc_id: u32, client: Ipv4Addr) -> anyhow::Result<bool>;
    fn affinity(&self, k: &xlb_affinity_key) -> anyhow::Result<Option<xlb_affinity_val>>;
    fn ct(&self, k: &xlb_ct_key) -> anyhow::Result<Option<xlb_ct_val>>;
    fn maglev(&self, slot: u32) -> anyhow::Result<Option<u32>>;
    /// The slot `id` of `backends`, active or not; `None` beyond the array.
    fn backend(&self, id: u32) -> anyhow::Result<Option<xlb_backend>>;
    /// The `tunnel` entry covering `addr` (longest prefix).
    fn tunnel(&self, addr: Ipv4Addr) -> anyhow::Result<Option<xlb_tunnel_val>>;
    /// CLOCK_MONOTONIC ns (the clock of `last_seen`).
    fn now(&self) -> u64;
    /// `svc_stable[svc_id]` when the Service has a stateless path.
    fn svc_stable(&self, svc_id: u32) -> anyhow::Result<Option<xlb_svc_stable>>;
}

/// The data plane's flow hash (hash.h `xlb_flow_hash`): words as stored
/// (network order); with session affinity the source port is left out.
pub fn flow_hash(t: &xlb_ct_key, no_sport: bool) -> u32 {
    let sport = if no_sport { 0 } else { u32::from(t.sport) };
    hash3(
        t.saddr,
        t.daddr,
        (sport << 16) | u32::from(t.dport),
        u32::from(t.proto),
    )
}

/// The entry a client inside the cluster (a pod) uses, as lb.h's
/// `xlb_service_internal`: an eTP-Local frontend's internal entry (over the
/// cluster-wide endpoints) when it has one.
fn internal_entry(
    v: &dyn View,
    key: xlb_svc_key,
    svc: xlb_svc_val,
    steps: &mut Vec<Step>,
) -> anyhow::Result<xlb_svc_val> {
    if svc.flags & XLB_SVC_F_EXT_LOCAL == 0 {
        return Ok(svc);
    }
    let Some(i) = v.service(&key.internal())? else {
        return Ok(svc);
    };
    steps.push(Step {
        step: "service",
        found: format!(
            "internal entry (svc_id {}): a pod is inside the cluster, eTP Local does not apply",
            i.svc_id
        ),
    });
    Ok(i)
}

/// The Service port a frame to `dst` matches, as lb.h's `xlb_service_of`:
/// the address frontend first, then the NodePort when `dst` is one of this
/// node's addresses, or (`remote`: a pod's frame) another node's. The one
/// place explain matches Services.
pub fn match_service(
    v: &dyn View,
    cfg: &xlb_config,
    dst: SocketAddrV4,
    proto: Proto,
    remote: bool,
    steps: &mut Vec<Step>,
) -> anyhow::Result<Option<(xlb_svc_key, xlb_svc_val)>> {
    let k = xlb_svc_key::addr(dst, proto);
    if v.fe_filter(&k)? != Some(0) {
        if let Some(s) = v.service(&k)? {
            steps.push(Step {
                step: "service",
                found: format!("frontend {dst}/{} -> svc_id {}", proto.name(), s.svc_id),
            });
            return Ok(Some((k, s)));
        }
    }
    let np = xlb_svc_key::nodeport(dst.port(), proto);
    let s = if v.fe_filter(&np)? != Some(0) {
        v.service(&np)?
    } else {
        None
    };
    let Some(s) = s else {
        steps.push(Step {
            step: "service",
            found: format!(
                "no frontend {dst}/{} and no NodePort {}",
                proto.name(),
                dst.port()
            ),
        });
        return Ok(None);
    };
    let local =
        (cfg.node_addr != 0 && be32(*dst.ip()) == cfg.node_addr) || v.is_local_addr(*dst.ip())?;
    let other = !local && remote && v.is_remote_addr(*dst.ip())?;
    if !local && !other {
        steps.push(Step {
            step: "service",
            found: format!(
                "NodePort {} (svc_id {}) exists, but {} is no address of this node",
                dst.port(),
                s.svc_id,
                dst.ip()
            ),
        });
        return Ok(None);
    }
    steps.push(Step {
        step: "service",
        found: format!(
            "NodePort {} on {} address {} -> svc_id {}",
            dst.port(),
            if local { "local" } else { "another node's" },
            dst.ip(),
            s.svc_id
        ),
    });
    Ok(Some((np, s)))
}

fn age(now: u64, then: u64) -> u64 {
    now.saturating_sub(then)
}

/// How long a ct entry with `flags` lives without a packet, as ct.h's
/// `xlb_ct_timeout` (the `config` map's timeouts, else the defaults).
fn ct_timeout(cfg: &xlb_config, flags: u32, proto: u8) -> u64 {
    let or = |v: u32, d: u32| u64::from(if v != 0 { v } else { d });
    let closed = flags & XLB_CT_F_RST != 0
        || flags & (XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV) == (XLB_CT_F_FIN_FWD | XLB_CT_F_FIN_REV);
    let s = if u32::from(proto) != u32::from(Proto::Tcp.number()) {
        or(cfg.ct_udp, XLB_CT_UDP_S)
    } else if flags & XLB_CT_F_TCP_STATE == 0 {
        or(cfg.ct_tcp_established, XLB_CT_TCP_ESTABLISHED_S)
    } else if closed {
        or(cfg.ct_tcp_close, XLB_CT_TCP_CLOSE_S)
    } else if flags & XLB_CT_F_SYN != 0 {
        u64::from(XLB_CT_TCP_SYN_S)
    } else {
        or(cfg.ct_tcp_established, XLB_CT_TCP_ESTABLISHED_S)
    };
    s * XLB_NSEC
}

/// The active backend at `id`, as lb.h's `xlb_backend_get`.
fn active_backend(v: &dyn View, id: u32) -> anyhow::Result<Option<xlb_backend>> {
    Ok(v.backend(id)?.filter(|b| b.is_active()))
}

/// Walks the maps for `f`.
pub fn explain(v: &dyn View, f: &Flow) -> anyhow::Result<Explanation> {
    let mut steps = Vec::new();
    let outcome = walk(v, f, &mut steps)?;
    Ok(Explanation { steps, outcome })
}

fn walk(v: &dyn View, f: &Flow, steps: &mut Vec<Step>) -> anyhow::Result<Outcome> {
    let cfg = v.config()?;
    let now = v.now();
    let t = xlb_ct_key::new(f.src, f.dst, f.proto.number());
    let xdp = f.iface == Iface::Uplink;
    let (pass, drop) = (Verdict::Pass, Verdict::Drop);
    if xdp {
        let be = v.be_filter(*f.src.ip())? != Some(0);
        let fe = v.fe_filter(&xlb_svc_key::addr(f.dst, f.proto))? != Some(0)
            || v.fe_filter(&xlb_svc_key::nodeport(f.dst.port(), f.proto))? != Some(0);
        steps.push(Step {
            step: "filters",
            found: format!(
                "source {} a backend's address; destination {} a frontend",
                if be { "may be" } else { "is not" },
                if fe { "may be" } else { "is not" }
            ),
        });
        if !be && !fe {
            return Ok(Outcome::new(pass, "pass_not_service"));
        }
    }
    if let Some(c) = v.ct(&t)? {
        let live = age(now, c.last_seen) < ct_timeout(&cfg, c.flags, t.proto);
        if c.is_reverse() {
            steps.push(Step {
                step: "ct",
                found: format!(
                    "reverse entry (a reply): nat {}, flags {:#x}{}",
                    c.nat(),
                    c.flags,
                    if live { "" } else { ", timed out" }
                ),
            });
            if live {
                return Ok(reply(f, &c, xdp));
            }
        } else {
            let b = active_backend(v, c.backend_id)?;
            let ok = live && b.is_some_and(|b| b.generation == c.generation);
            steps.push(Step {
                step: "ct",
                found: format!(
                    "forward entry: backend {} generation {} ({})",
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
                let mut o = forward(v, &cfg, f, c.backend_id, &b, steps)?;
                o.svc_id = Some(c.svc_id);
                return Ok(o);
            }
        }
    } else {
        steps.push(Step {
            step: "ct",
            found: format!("no entry for {} -> {} (a new flow)", f.src, f.dst),
        });
    }
    let pod = f.iface == Iface::Pod;
    let Some((key, svc)) = match_service(v, &cfg, f.dst, f.proto, pod, steps)? else {
        return Ok(Outcome::new(pass, "pass_not_service"));
    };
    let svc = if pod {
        internal_entry(v, key, svc, steps)?
    } else {
        svc
    };
    let with_svc = |mut o: Outcome| {
        o.svc_id = Some(svc.svc_id);
        o
    };
    if svc.flags & XLB_SVC_F_SRC_RANGES != 0 {
        let ok = v.src_range_allows(svc.svc_id, *f.src.ip())?;
        steps.push(Step {
            step: "source ranges",
            found: format!(
                "{} {}",
                f.src.ip(),
                if ok {
                    "allowed"
                } else {
                    "not in loadBalancerSourceRanges"
                }
            ),
        });
        if !ok {
            return Ok(with_svc(Outcome::new(drop, "drop_src_range")));
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
            return Ok(with_svc(Outcome::new(drop, reason)));
        }
    }
    if svc.table_size == 0 {
        steps.push(Step {
            step: "endpoints",
            found: "none (table size 0)".into(),
        });
        return Ok(with_svc(reject(&cfg, f.iface, f.proto, f.rst)));
    }
    let aff = svc.flags & XLB_SVC_F_AFFINITY != 0;
    // By the client's address alone, unless an affinity entry expired or
    // went stale: then a fresh choice from the whole flow (lb.h).
    let mut by_client = aff;
    if aff {
        let timeout = u64::from(if svc.affinity_timeout != 0 {
            svc.affinity_timeout
        } else {
            XLB_AFFINITY_DEFAULT_S
        });
        let a = v.affinity(&xlb_affinity_key::new(svc.svc_id, *f.src.ip()))?;
        let hit = match a {
            Some(a) if age(now, a.last_seen) < timeout * XLB_NSEC => {
                active_backend(v, a.backend_id)?
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
                (None, _) => format!("ClientIP ({timeout} s): no entry for {}", f.src.ip()),
                (Some(a), Some(_)) => format!(
                    "ClientIP ({timeout} s): {} stays on backend {}",
                    f.src.ip(),
                    a.backend_id
                ),
                (Some(a), None) => format!(
                    "ClientIP ({timeout} s): entry for backend {} expired or backend gone",
                    a.backend_id
                ),
            },
        });
        if let Some((id, b)) = hit {
            return Ok(with_svc(forward(v, &cfg, f, id, &b, steps)?));
        }
        by_client = a.is_none();
    }
    let h = flow_hash(&t, by_client);
    let slot = svc.table_off.wrapping_add(h % svc.table_size);
    let id = v.maglev(slot)?;
    let b = match id {
        Some(id) => active_backend(v, id)?,
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
        (Some(id), Some(b)) => {
            let (id, b) = if xdp && !aff {
                stateless(v, &cfg, svc.svc_id, h, now, (id, b), steps)?
            } else {
                (id, b)
            };
            Ok(with_svc(forward(v, &cfg, f, id, &b, steps)?))
        }
        _ => Ok(with_svc(Outcome::new(drop, "drop_bad_maglev"))),
    }
}

/// A UDP or TCP flow from the uplink without a ct entry, of a Service with a
/// stateless path (stateless.h): in a window, the stable table's backend
/// while it lives; whether the flow gets a ct entry. The frame is any but a
/// TCP SYN without ACK, which opens its connection on the current table.
fn stateless(
    v: &dyn View,
    cfg: &xlb_config,
    svc_id: u32,
    h: u32,
    now: u64,
    (id, b): (u32, xlb_backend),
    steps: &mut Vec<Step>,
) -> anyhow::Result<(u32, xlb_backend)> {
    let Some(st) = v.svc_stable(svc_id)? else {
        return Ok((id, b));
    };
    let mut chosen = (id, b);
    let mut kept = false;
    let window = now < st.window_end;
    if window {
        let slot = st.table_off.wrapping_add(h % st.table_size);
        if let Some(sid) = v.maglev(slot)? {
            if sid != id {
                kept = true;
                if let Some(sb) = active_backend(v, sid)? {
                    chosen = (sid, sb);
                }
            }
        }
    }
    // no ct entry only under tunnel NAT (the backend's node reverse-NATs)
    let remote = chosen.1.node != 0 && cfg.flags & XLB_CFG_F_TNAT != 0;
    let what = if window {
        format!(
            "a window for {} s more (the table changed): the stable table (at {}) names backend {}",
            (st.window_end - now) / XLB_NSEC,
            st.table_off,
            chosen.0
        )
    } else {
        "the table is stable".to_string()
    };
    steps.push(Step {
        step: "stateless",
        found: format!(
            "{what}; {}",
            if kept || !remote {
                "the flow is kept in ct"
            } else {
                "no ct entry (the backend's node reverse-NATs the replies)"
            }
        ),
    });
    Ok(chosen)
}
