//! `xlb maps services`, `src-ranges` and `stats`: the frontends, each
//! Service's source ranges and its counters, and what the agent could not
//! program.

use super::*;

pub(super) fn services(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let svcs = frontends(maps)?;
    let mut t = Table::new(
        "frontends",
        &[
            "ID",
            "NAME",
            "FRONTEND",
            "PROTO",
            "TYPE",
            "TABLE",
            "LOCAL",
            "FLAGS",
            "AFFINITY",
            "STATELESS",
        ],
    );
    let backends = backends_by_id(maps)?;
    // svc_stable (absent in an older xlb's pins: no stateless flows).
    let stable: BTreeMap<u32, xlb_svc_stable> = if maps.has_svc_stable() {
        maps.svc_stables()?.into_iter().collect()
    } else {
        BTreeMap::new()
    };
    let now = xlb_bpf::maps::monotonic_ns();
    for k in svcs {
        let v = k.val;
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
        // IPv4 frontends only: the IPv6 path keeps every flow in ct.
        let st = stable.get(&v.svc_id).filter(|s| s.table_size > 0 && !k.v6);
        let (stateless, stateless_json) = stateless(st, now);
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
                stateless,
            ],
            json!({
                "svc_id": v.svc_id,
                "name": name,
                "frontend": frontend(&k),
                "addr": k.addr.map(|a| a.to_string()),
                "family": if k.v6 { "IPv6" } else { "IPv4" },
                "port": k.port,
                "proto": proto_name(k.proto),
                "type": kind,
                "nodeport": k.is_nodeport(),
                "table_off": v.table_off,
                "table_size": v.table_size,
                "n_local": v.n_local,
                "flags": flags,
                "affinity_timeout": v.affinity_timeout,
                "stateless": stateless_json,
            }),
        );
    }
    Ok(t)
}

/// The STATELESS cell and JSON of a frontend whose Service has the
/// `svc_stable` entry `st` (docs/ctl.md, "Stateless flows"): `-`
/// (none: every flow in ct), `yes` (flows without a ct entry follow the
/// frontend's table), `window:87s` (the table changed: until the window
/// ends, they follow the stable table, `stable:OFF+SIZE` in the JSON).
fn stateless(st: Option<&xlb_svc_stable>, now: u64) -> (String, Value) {
    let Some(s) = st else {
        return ("-".into(), Value::Null);
    };
    let left = s.window_end.saturating_sub(now);
    let window_s = (left > 0).then(|| left.div_ceil(1_000_000_000));
    let cell = match window_s {
        Some(w) => format!("window:{w}s"),
        None => "yes".into(),
    };
    (
        cell,
        json!({
            "table_off": s.table_off,
            "table_size": s.table_size,
            "window_end": s.window_end,
            "window_s": window_s,
        }),
    )
}

/// What the agent wants in the maps and could not put there
/// ([`crate::unprogrammed`]): after the table, and as `"unprogrammed"` in
/// the JSON.
pub(super) fn not_programmed(t: &mut Table, pin_dir: &Path) {
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

pub(super) fn src_ranges(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
) -> anyhow::Result<Table> {
    let mut entries = src_ranges_all(maps)?;
    entries.sort();
    let mut t = Table::new("source ranges", &["SVC", "ALLOWED"]);
    for (svc_id, net, len) in entries {
        if sel.is_some_and(|s| !s.id_matches(svc_id)) {
            continue;
        }
        t.push(
            vec![svc_label(names, svc_id), format!("{net}/{len}")],
            json!({"svc_id": svc_id, "name": names.get(&svc_id), "cidr": format!("{net}/{len}")}),
        );
    }
    Ok(t)
}

pub(super) fn stats(
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
    let ids: BTreeSet<u32> = frontends(maps)?
        .into_iter()
        .filter(|k| sel.is_none_or(|s| s.frontend_matches(k.val.svc_id, k)))
        .map(|k| k.val.svc_id)
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
