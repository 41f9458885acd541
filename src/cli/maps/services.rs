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
