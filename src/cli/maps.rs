//! `xlb maps`: read the pinned maps as tables (or JSON), like `ipvsadm -Ln`.
//!
//! Everything goes through `xlb_bpf::Maps` (typed); addresses print as dotted
//! quads, ports in host order, protocols by name, Services by the name the
//! agent recorded in `/run/xlb/names.json` (see [`crate::names`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::{mac_string, proto_name};
use xlb_bpf::Maps;

/// Print the contents of the pinned maps.
///
/// Examples:
///   xlb maps services
///   xlb maps services --service default/web --json
///   xlb maps backends --service 10.96.0.10:53
///   xlb maps maglev default/web:80/TCP
///   xlb maps ct --backend 10.244.1.5 --limit 20
///   xlb maps stats
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct MapsArgs {
    #[command(subcommand)]
    pub which: Which,

    /// Machine-readable output: {"rows": [...], "count": N, "total": T}.
    #[arg(long, global = true)]
    pub json: bool,

    /// Only this Service: svc_id, name (ns/name or ns/name:port/PROTO), or frontend (IP or IP:port).
    #[arg(long, global = true, value_name = "S")]
    pub service: Option<String>,

    /// Only this backend: backend id, IP or IP:port.
    #[arg(long, global = true, value_name = "B")]
    pub backend: Option<String>,

    /// Print at most N rows (the count line still tells the total).
    #[arg(long, global = true, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Frontends (ClusterIP, NodePort, LoadBalancer, ExternalIP) -> Service ports.
    Services,
    /// Backend slots in use, with the packets and bytes forwarded to each.
    Backends,
    /// A Service's Maglev table: slots per backend, and the packets and bytes forwarded to each.
    Maglev {
        /// The Service: svc_id, name or frontend.
        svc: String,
    },
    /// Connection-tracking entries.
    Ct,
    /// Session-affinity (ClientIP) entries.
    Affinity,
    /// loadBalancerSourceRanges.
    SrcRanges,
    /// Pod CIDR -> node tunnel entries.
    Tunnel,
    /// Reason counters (pass_*, drop_*, tx_*: a frame's outcome; event_*:
    /// counted on the way, e.g. event_ct_full) and per-Service packets/bytes.
    Stats {
        /// Also the reasons whose counters are zero.
        #[arg(long)]
        all: bool,
    },
    /// Runtime configuration and this node's addresses.
    Config,
}

/// A table: header, rows (cells + JSON), and the noun for the count line.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<(Vec<String>, Value)>,
    noun: &'static str,
    extra: Option<String>,
    /// An extra member of the JSON object.
    json_extra: Option<(&'static str, Value)>,
}

impl Table {
    fn new(noun: &'static str, header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
            noun,
            extra: None,
            json_extra: None,
        }
    }

    fn push(&mut self, cells: Vec<String>, v: Value) {
        self.rows.push((cells, v));
    }

    fn print(self, json_out: bool, limit: Option<usize>) -> anyhow::Result<()> {
        let total = self.rows.len();
        let shown = limit.unwrap_or(total).min(total);
        if json_out {
            let rows: Vec<&Value> = self.rows.iter().take(shown).map(|(_, v)| v).collect();
            let mut v = json!({"rows": rows, "count": shown, "total": total});
            if let Some((k, x)) = self.json_extra {
                v[k] = x;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let mut w: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for (cells, _) in self.rows.iter().take(shown) {
            for (i, c) in cells.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<width$}  ", width = w[i]));
                }
            }
            println!("{}", s.trim_end());
        };
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        line(&header);
        for (cells, _) in self.rows.iter().take(shown) {
            line(cells);
        }
        // "frontends" -> "frontend" for exactly one.
        let noun = match (total, self.noun.strip_suffix("ies")) {
            (1, Some(stem)) => format!("{stem}y"),
            (1, None) => self.noun.strip_suffix('s').unwrap_or(self.noun).to_string(),
            _ => self.noun.to_string(),
        };
        if shown < total {
            println!("{shown} of {total} {noun}");
        } else {
            println!("{total} {noun}");
        }
        if let Some(e) = self.extra {
            println!("{e}");
        }
        Ok(())
    }
}

/// Which Services a `--service` selector names.
struct SvcSel<'a> {
    sel: &'a str,
    names: &'a BTreeMap<u32, String>,
}

impl SvcSel<'_> {
    fn name_matches(&self, svc_id: u32) -> bool {
        let Some(name) = self.names.get(&svc_id) else {
            return false;
        };
        // "ns/name:port/PROTO": match it whole, or "ns/name", or "ns/name:port".
        name == self.sel
            || name.split(':').next() == Some(self.sel)
            || name.rsplit_once('/').map(|(a, _)| a) == Some(self.sel)
    }

    fn id_matches(&self, svc_id: u32) -> bool {
        self.sel.parse::<u32>().ok() == Some(svc_id) || self.name_matches(svc_id)
    }

    fn frontend_matches(&self, svc_id: u32, k: &xlb_svc_key) -> bool {
        if self.id_matches(svc_id) {
            return true;
        }
        if k.is_nodeport() {
            return self.sel.strip_prefix(':').or(self.sel.strip_prefix("*:"))
                == Some(&k.port().to_string());
        }
        if let Ok(ip) = self.sel.parse::<Ipv4Addr>() {
            return ip == k.ip();
        }
        self.sel.parse::<SocketAddrV4>().ok() == Some(SocketAddrV4::new(k.ip(), k.port()))
    }
}

/// Which backends a `--backend` selector names.
fn backend_matches(sel: &str, id: u32, b: Option<&xlb_backend>) -> bool {
    if sel.parse::<u32>().ok() == Some(id) {
        return true;
    }
    let Some(b) = b else {
        return false;
    };
    if let Ok(ip) = sel.parse::<Ipv4Addr>() {
        return ip == *b.sockaddr().ip();
    }
    sel.parse::<SocketAddrV4>().ok() == Some(b.sockaddr())
}

fn frontend(k: &xlb_svc_key) -> String {
    let f = if k.is_nodeport() {
        format!("*:{}", k.port())
    } else {
        format!("{}:{}", k.ip(), k.port())
    };
    if k.is_internal() {
        // the entry of an externalTrafficPolicy Local frontend for clients inside the cluster
        format!("{f} (internal)")
    } else {
        f
    }
}

fn svc_flags(f: u32) -> Vec<&'static str> {
    let mut v = Vec::new();
    if f & XLB_SVC_F_AFFINITY != 0 {
        v.push("affinity");
    }
    if f & XLB_SVC_F_LOCAL != 0 {
        v.push("local");
    }
    if f & XLB_SVC_F_SRC_RANGES != 0 {
        v.push("src-ranges");
    }
    if f & XLB_SVC_F_EXT_LOCAL != 0 {
        v.push("ext-local");
    }
    v
}

fn be_state(b: &xlb_backend) -> &'static str {
    if !b.is_active() {
        "free"
    } else if u32::from(b.flags) & XLB_BE_F_TERMINATING != 0 {
        "terminating"
    } else if u32::from(b.flags) & XLB_BE_F_DRAINING != 0 {
        "draining"
    } else {
        "active"
    }
}

fn node_str(n: Option<Ipv4Addr>) -> String {
    n.map(|a| a.to_string()).unwrap_or_else(|| "local".into())
}

fn dash(v: &[&str]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer; bpf_ktime_get_ns() is CLOCK_MONOTONIC.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn age(last_seen: u64, now: u64) -> (String, Option<u64>) {
    if last_seen == 0 || last_seen > now {
        return ("-".into(), None);
    }
    let s = (now - last_seen) / 1_000_000_000;
    (format!("{s}s"), Some(s))
}

fn svc_label(names: &BTreeMap<u32, String>, id: u32) -> String {
    match names.get(&id) {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    }
}

pub fn run(a: MapsArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let maps = Maps::from_pin_dir(pin_dir)
        .with_context(|| format!("opening the maps under {}", pin_dir.display()))?;
    let names = crate::names::read_or_warn(pin_dir);
    let sel = a.service.as_deref().map(|s| SvcSel {
        sel: s,
        names: &names,
    });
    let bsel = a.backend.as_deref();
    let table = match &a.which {
        Which::Services => {
            let mut t = services(&maps, &names, sel.as_ref(), bsel)?;
            not_programmed(&mut t, pin_dir);
            t
        }
        Which::Backends => backends(&maps, sel.as_ref(), bsel)?,
        Which::Maglev { svc } => maglev(
            &maps,
            &names,
            &SvcSel {
                sel: svc,
                names: &names,
            },
            bsel,
        )?,
        Which::Ct => ct(&maps, &names, sel.as_ref(), bsel)?,
        Which::Affinity => affinity(&maps, &names, sel.as_ref(), bsel)?,
        Which::SrcRanges => src_ranges(&maps, &names, sel.as_ref())?,
        Which::Tunnel => tunnel(&maps)?,
        Which::Stats { all } => stats(&maps, &names, sel.as_ref(), *all)?,
        Which::Config => config(&maps)?,
    };
    table.print(a.json, a.limit)
}

fn services(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let mut svcs = maps.services().context("reading services")?;
    svcs.sort_by_key(|(k, v)| (v.svc_id, k.ip(), k.port(), k.proto));
    let mut t = Table::new(
        "frontends",
        &[
            "ID", "NAME", "FRONTEND", "PROTO", "TYPE", "TABLE", "LOCAL", "FLAGS", "AFFINITY",
        ],
    );
    let backends: BTreeMap<u32, xlb_backend> = maps.backends()?.into_iter().collect();
    for (k, v) in svcs {
        if sel.is_some_and(|s| !s.frontend_matches(v.svc_id, &k)) {
            continue;
        }
        if let Some(b) = bsel {
            let table = maps.read_maglev(v.table_off, v.table_size)?;
            if !table
                .iter()
                .any(|id| backend_matches(b, *id, backends.get(id)))
            {
                continue;
            }
        }
        let name = names.get(&v.svc_id).cloned();
        let kind = v.kind().map(|k| k.name()).unwrap_or("?");
        let flags = svc_flags(v.flags);
        let aff = if v.flags & XLB_SVC_F_AFFINITY != 0 {
            format!("{}s", v.affinity_timeout)
        } else {
            "-".into()
        };
        t.push(
            vec![
                v.svc_id.to_string(),
                name.clone().unwrap_or_else(|| "-".into()),
                frontend(&k),
                proto_name(k.proto),
                kind.into(),
                format!("{}+{}", v.table_off, v.table_size),
                v.n_local.to_string(),
                dash(&flags),
                aff,
            ],
            json!({
                "svc_id": v.svc_id,
                "name": name,
                "frontend": frontend(&k),
                "addr": if k.is_nodeport() { None } else { Some(k.ip().to_string()) },
                "port": k.port(),
                "proto": proto_name(k.proto),
                "type": kind,
                "nodeport": k.is_nodeport(),
                "table_off": v.table_off,
                "table_size": v.table_size,
                "n_local": v.n_local,
                "flags": flags,
                "affinity_timeout": v.affinity_timeout,
            }),
        );
    }
    Ok(t)
}

/// What the agent wants in the maps and could not put there
/// ([`crate::unprogrammed`]): after the table, and as `"unprogrammed"` in
/// the JSON.
fn not_programmed(t: &mut Table, pin_dir: &Path) {
    let path = crate::unprogrammed::path(pin_dir);
    let list = crate::unprogrammed::read(&path).unwrap_or_else(|e| {
        eprintln!("warning: {}: {e}", path.display());
        Vec::new()
    });
    if list.is_empty() {
        return;
    }
    let mut s = format!(
        "NOT PROGRAMMED ({} desired by the agent, not in the maps):",
        list.len()
    );
    for u in &list {
        s.push_str(&format!("\n  {}  {}: {}", u.what, u.reason, u.why));
    }
    t.extra = Some(match t.extra.take() {
        Some(e) => format!("{e}\n{s}"),
        None => s,
    });
    t.json_extra = Some(("unprogrammed", json!(list)));
}

fn backends(maps: &Maps, sel: Option<&SvcSel>, bsel: Option<&str>) -> anyhow::Result<Table> {
    let mut wanted: Option<BTreeSet<u32>> = None;
    if let Some(s) = sel {
        let mut ids = BTreeSet::new();
        for (k, v) in maps.services()? {
            if s.frontend_matches(v.svc_id, &k) {
                ids.extend(maps.read_maglev(v.table_off, v.table_size)?);
            }
        }
        wanted = Some(ids);
    }
    let mut t = Table::new(
        "backends",
        &["ID", "ADDRESS", "NODE", "STATE", "GEN", "PACKETS", "BYTES"],
    );
    for (id, b) in maps.backends().context("reading backends")? {
        if wanted.as_ref().is_some_and(|w| !w.contains(&id)) {
            continue;
        }
        if bsel.is_some_and(|s| !backend_matches(s, id, Some(&b))) {
            continue;
        }
        let c = maps.backend_counter(id).context("reading backend_stats")?;
        t.push(
            vec![
                id.to_string(),
                b.sockaddr().to_string(),
                node_str(b.node()),
                be_state(&b).into(),
                b.generation.to_string(),
                c.packets.to_string(),
                c.bytes.to_string(),
            ],
            json!({
                "id": id,
                "addr": b.sockaddr().ip().to_string(),
                "port": b.sockaddr().port(),
                "node": b.node().map(|n| n.to_string()),
                "state": be_state(&b),
                "generation": b.generation,
                "packets": c.packets,
                "bytes": c.bytes,
            }),
        );
    }
    Ok(t)
}

fn maglev(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: &SvcSel,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let mut fes: Vec<_> = maps
        .services()?
        .into_iter()
        .filter(|(k, v)| sel.frontend_matches(v.svc_id, k))
        .collect();
    if fes.is_empty() {
        anyhow::bail!(
            "no Service matches {:?}; `xlb maps services` lists svc_ids, names and frontends",
            sel.sel
        );
    }
    fes.sort_by_key(|(k, v)| (v.svc_id, k.ip(), k.port(), k.proto));
    let backends: BTreeMap<u32, xlb_backend> = maps.backends()?.into_iter().collect();
    let mut t = Table::new(
        "backend rows",
        &[
            "SVC", "FRONTEND", "BACKEND", "ADDRESS", "NODE", "SLOTS", "SHARE", "PACKETS", "BYTES",
        ],
    );
    let mut summary = Vec::new();
    for (k, v) in fes {
        let table = maps.read_maglev(v.table_off, v.table_size)?;
        let mut per: BTreeMap<u32, u32> = BTreeMap::new();
        for id in &table {
            *per.entry(*id).or_default() += 1;
        }
        summary.push(format!(
            "{} {}: table {} slots at {}, {} backends",
            svc_label(names, v.svc_id),
            frontend(&k),
            v.table_size,
            v.table_off,
            per.len()
        ));
        for (id, n) in per {
            let b = backends.get(&id);
            if bsel.is_some_and(|s| !backend_matches(s, id, b)) {
                continue;
            }
            let share = 100.0 * f64::from(n) / f64::from(v.table_size.max(1));
            // the backend's forward counters (all its Service ports' traffic
            // while backend ids are shared between ports)
            let c = maps.backend_counter(id).context("reading backend_stats")?;
            t.push(
                vec![
                    svc_label(names, v.svc_id),
                    frontend(&k),
                    id.to_string(),
                    b.map(|b| b.sockaddr().to_string())
                        .unwrap_or_else(|| "(free slot)".into()),
                    b.map(|b| node_str(b.node())).unwrap_or_else(|| "-".into()),
                    n.to_string(),
                    format!("{share:.1}%"),
                    c.packets.to_string(),
                    c.bytes.to_string(),
                ],
                json!({
                    "svc_id": v.svc_id,
                    "name": names.get(&v.svc_id),
                    "frontend": frontend(&k),
                    "table_off": v.table_off,
                    "table_size": v.table_size,
                    "backend_id": id,
                    "addr": b.map(|b| b.sockaddr().ip().to_string()),
                    "port": b.map(|b| b.sockaddr().port()),
                    "slots": n,
                    "packets": c.packets,
                    "bytes": c.bytes,
                }),
            );
        }
    }
    t.extra = Some(summary.join("\n"));
    Ok(t)
}

fn ct(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let now = now_ns();
    let backends: BTreeMap<u32, xlb_backend> = maps.backends()?.into_iter().collect();
    let mut entries = maps.ct().context("reading ct")?;
    entries.sort_by_key(|(k, v)| (v.svc_id, k.src(), k.dst(), k.proto));
    let mut t = Table::new(
        "connections",
        &[
            "SRC", "DST", "PROTO", "DIR", "SVC", "BACKEND", "NAT", "TUNNEL", "AGE",
        ],
    );
    for (k, v) in entries {
        if sel.is_some_and(|s| !s.id_matches(v.svc_id)) {
            continue;
        }
        let b = backends.get(&v.backend_id);
        if bsel.is_some_and(|s| !backend_matches(s, v.backend_id, b)) {
            continue;
        }
        let dir = if v.is_reverse() { "reply" } else { "orig" };
        let (age_s, age_n) = age(v.last_seen, now);
        let backend = match b {
            Some(b) => format!("{} ({})", v.backend_id, b.sockaddr()),
            None => v.backend_id.to_string(),
        };
        let nat = if v.is_reverse() {
            v.nat().to_string()
        } else {
            "-".into()
        };
        let tunnel = v.tunnel_peer().map(|p| p.to_string());
        t.push(
            vec![
                k.src().to_string(),
                k.dst().to_string(),
                proto_name(k.proto),
                dir.into(),
                svc_label(names, v.svc_id),
                backend,
                nat.clone(),
                tunnel.clone().unwrap_or_else(|| "-".into()),
                age_s,
            ],
            json!({
                "src": k.src().to_string(),
                "dst": k.dst().to_string(),
                "proto": proto_name(k.proto),
                "dir": dir,
                "svc_id": v.svc_id,
                "name": names.get(&v.svc_id),
                "backend_id": v.backend_id,
                "backend": b.map(|b| b.sockaddr().to_string()),
                "generation": v.generation,
                "nat": if v.is_reverse() { Some(nat) } else { None },
                "tunnel_peer": tunnel,
                "flags": v.flags,
                "age_s": age_n,
            }),
        );
    }
    Ok(t)
}

fn affinity(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let now = now_ns();
    let backends: BTreeMap<u32, xlb_backend> = maps.backends()?.into_iter().collect();
    let mut entries = maps.affinities().context("reading affinity")?;
    entries.sort_by_key(|(k, _)| (k.svc_id, k.client()));
    let mut t = Table::new(
        "affinity entries",
        &["SVC", "CLIENT", "BACKEND", "GEN", "AGE"],
    );
    for (k, v) in entries {
        if sel.is_some_and(|s| !s.id_matches(k.svc_id)) {
            continue;
        }
        let b = backends.get(&v.backend_id);
        if bsel.is_some_and(|s| !backend_matches(s, v.backend_id, b)) {
            continue;
        }
        let (age_s, age_n) = age(v.last_seen, now);
        t.push(
            vec![
                svc_label(names, k.svc_id),
                k.client().to_string(),
                match b {
                    Some(b) => format!("{} ({})", v.backend_id, b.sockaddr()),
                    None => v.backend_id.to_string(),
                },
                v.generation.to_string(),
                age_s,
            ],
            json!({
                "svc_id": k.svc_id,
                "name": names.get(&k.svc_id),
                "client": k.client().to_string(),
                "backend_id": v.backend_id,
                "backend": b.map(|b| b.sockaddr().to_string()),
                "generation": v.generation,
                "age_s": age_n,
            }),
        );
    }
    Ok(t)
}

fn src_ranges(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
) -> anyhow::Result<Table> {
    let mut entries = maps.src_ranges().context("reading src_ranges")?;
    entries.sort_by_key(|k| (k.svc_id(), k.net()));
    let mut t = Table::new("source ranges", &["SVC", "ALLOWED"]);
    for k in entries {
        if sel.is_some_and(|s| !s.id_matches(k.svc_id())) {
            continue;
        }
        let (net, len) = k.net();
        t.push(
            vec![svc_label(names, k.svc_id()), format!("{net}/{len}")],
            json!({"svc_id": k.svc_id(), "name": names.get(&k.svc_id()), "cidr": format!("{net}/{len}")}),
        );
    }
    Ok(t)
}

fn tunnel(maps: &Maps) -> anyhow::Result<Table> {
    let mut entries = maps.tunnels().context("reading tunnel")?;
    entries.sort_by_key(|(k, _)| k.net());
    let mut t = Table::new("tunnel entries", &["POD_CIDR", "NODE", "VTEP_MAC"]);
    for (k, v) in entries {
        let (net, len) = k.net();
        t.push(
            vec![format!("{net}/{len}"), v.node().to_string(), mac_string(&v.vtep_mac)],
            json!({"cidr": format!("{net}/{len}"), "node": v.node().to_string(), "vtep_mac": mac_string(&v.vtep_mac)}),
        );
    }
    Ok(t)
}

fn stats(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
    all: bool,
) -> anyhow::Result<Table> {
    let mut t = Table::new("counters", &["COUNTER", "PACKETS", "BYTES"]);
    if sel.is_none() {
        for (r, c) in maps.reasons().context("reading stats")? {
            if c.packets == 0 && !all {
                continue;
            }
            t.push(
                vec![r.name(), c.packets.to_string(), c.bytes.to_string()],
                json!({"kind": "reason", "name": r.name(), "packets": c.packets, "bytes": c.bytes}),
            );
        }
    }
    let ids: BTreeSet<u32> = maps
        .services()?
        .into_iter()
        .filter(|(k, v)| sel.is_none_or(|s| s.frontend_matches(v.svc_id, k)))
        .map(|(_, v)| v.svc_id)
        .collect();
    for id in ids {
        let c = maps.svc_counter(id)?;
        t.push(
            vec![
                format!("svc {}", svc_label(names, id)),
                c.packets.to_string(),
                c.bytes.to_string(),
            ],
            json!({"kind": "service", "svc_id": id, "name": names.get(&id), "packets": c.packets, "bytes": c.bytes}),
        );
    }
    Ok(t)
}

fn config(maps: &Maps) -> anyhow::Result<Table> {
    let c = maps.config().context("reading config")?;
    let mut t = Table::new("settings", &["SETTING", "VALUE"]);
    let mut kv = |k: &'static str, v: String, j: Value| {
        t.push(vec![k.into(), v], json!({"setting": k, "value": j}))
    };
    kv(
        "node_addr",
        c.node_addr().to_string(),
        json!(c.node_addr().to_string()),
    );
    kv(
        "vxlan_port",
        c.vxlan_port().to_string(),
        json!(c.vxlan_port()),
    );
    kv("vni", c.vni.to_string(), json!(c.vni));
    kv("mtu", c.mtu.to_string(), json!(c.mtu));
    kv("ifindex", c.ifindex.to_string(), json!(c.ifindex));
    kv("mac", mac_string(&c.mac), json!(mac_string(&c.mac)));
    kv("flags", format!("{:#x}", c.flags), json!(c.flags));
    let addrs: Vec<String> = maps.local_addrs()?.iter().map(|a| a.to_string()).collect();
    kv("local_addrs", addrs.join(","), json!(addrs));
    let addrs: Vec<String> = maps.remote_addrs()?.iter().map(|a| a.to_string()).collect();
    kv("remote_addrs", addrs.join(","), json!(addrs));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_selectors() {
        let mut names = BTreeMap::new();
        names.insert(3, "default/web:80/TCP".to_string());
        let k = xlb_svc_key::addr("10.96.0.10:80".parse().unwrap(), xlb_bpf::Proto::Tcp);
        let np = xlb_svc_key::nodeport(30080, xlb_bpf::Proto::Tcp);
        let m = |s: &str, id, k: &xlb_svc_key| {
            SvcSel {
                sel: s,
                names: &names,
            }
            .frontend_matches(id, k)
        };
        for s in [
            "3",
            "default/web",
            "default/web:80",
            "default/web:80/TCP",
            "10.96.0.10",
            "10.96.0.10:80",
        ] {
            assert!(m(s, 3, &k), "{s}");
        }
        for s in [
            "4",
            "default/we",
            "10.96.0.11",
            "10.96.0.10:81",
            "kube-system/web",
        ] {
            assert!(!m(s, 3, &k), "{s}");
        }
        assert!(m(":30080", 9, &np));
        assert!(m("*:30080", 9, &np));
        assert!(!m("10.96.0.10:30080", 9, &np));
        let b = xlb_backend::new("10.244.1.5:8080".parse().unwrap(), None, 1);
        assert!(backend_matches("7", 7, Some(&b)));
        assert!(backend_matches("10.244.1.5", 1, Some(&b)));
        assert!(backend_matches("10.244.1.5:8080", 1, Some(&b)));
        assert!(!backend_matches("10.244.1.5:80", 1, Some(&b)));
        assert!(!backend_matches("10.244.1.5", 1, None));
    }
}
