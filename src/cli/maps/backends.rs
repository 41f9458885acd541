//! `xlb maps backends` and `xlb maps maglev`: the backend slots and a
//! Service's Maglev table.

use super::*;

pub(super) fn backends(
    maps: &Maps,
    sel: Option<&SvcSel>,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let mut wanted: Option<BTreeSet<u32>> = None;
    if let Some(s) = sel {
        let mut ids = BTreeSet::new();
        for k in frontends(maps)? {
            if s.frontend_matches(k.val.svc_id, &k) {
                ids.extend(maps.read_maglev(k.val.table_off, k.val.table_size)?);
            }
        }
        wanted = Some(ids);
    }
    let mut t = Table::new(
        "backends",
        &["ID", "ADDRESS", "NODE", "STATE", "GEN", "PACKETS", "BYTES"],
    );
    for (id, b) in backends_by_id(maps)? {
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
                b.addr.to_string(),
                node_str(b.node),
                be_state(&b).into(),
                b.generation.to_string(),
                c.packets.to_string(),
                c.bytes.to_string(),
            ],
            json!({
                "id": id,
                "addr": b.addr.ip().to_string(),
                "port": b.addr.port(),
                "node": b.node.map(|n| n.to_string()),
                "state": be_state(&b),
                "generation": b.generation,
                "packets": c.packets,
                "bytes": c.bytes,
            }),
        );
    }
    Ok(t)
}

pub(super) fn maglev(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: &SvcSel,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let fes: Vec<Fe> = frontends(maps)?
        .into_iter()
        .filter(|k| sel.frontend_matches(k.val.svc_id, k))
        .collect();
    if fes.is_empty() {
        anyhow::bail!(
            "no Service matches {:?}; `xlb maps services` lists svc_ids, names and frontends",
            sel.sel
        );
    }
    let backends = backends_by_id(maps)?;
    let mut t = Table::new(
        "backend rows",
        &[
            "SVC", "FRONTEND", "BACKEND", "ADDRESS", "NODE", "SLOTS", "SHARE", "PACKETS", "BYTES",
        ],
    );
    let mut summary = Vec::new();
    for k in fes {
        let v = k.val;
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
                    b.map(|b| b.addr.to_string())
                        .unwrap_or_else(|| "(free slot)".into()),
                    b.map(|b| node_str(b.node)).unwrap_or_else(|| "-".into()),
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
                    "addr": b.map(|b| b.addr.ip().to_string()),
                    "port": b.map(|b| b.addr.port()),
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
