//! `xlb maps ct` and `xlb maps affinity`: connection tracking and session
//! affinity entries, with their ages.

use super::*;

pub(super) fn ct(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let now = now_ns();
    let backends = backends_by_id(maps)?;
    let mut entries = flows(maps)?;
    entries.sort_by_key(|f| (f.svc_id, f.src, f.dst, f.proto));
    let mut t = Table::new(
        "connections",
        &[
            "SRC", "DST", "PROTO", "DIR", "SVC", "BACKEND", "NAT", "TUNNEL", "AGE",
        ],
    );
    for v in entries {
        if sel.is_some_and(|s| !s.id_matches(v.svc_id)) {
            continue;
        }
        let b = backends.get(&v.backend_id);
        if bsel.is_some_and(|s| !backend_matches(s, v.backend_id, b)) {
            continue;
        }
        let dir = if v.reverse { "reply" } else { "orig" };
        let (age_s, age_n) = age(v.last_seen, now);
        let backend = match b {
            Some(b) => format!("{} ({})", v.backend_id, b.addr),
            None => v.backend_id.to_string(),
        };
        let nat = if v.reverse {
            v.nat.to_string()
        } else {
            "-".into()
        };
        let tunnel = v.tunnel_peer.map(|p| p.to_string());
        t.push(
            vec![
                v.src.to_string(),
                v.dst.to_string(),
                proto_name(v.proto),
                dir.into(),
                svc_label(names, v.svc_id),
                backend,
                nat.clone(),
                tunnel.clone().unwrap_or_else(|| "-".into()),
                age_s,
            ],
            json!({
                "src": v.src.to_string(),
                "dst": v.dst.to_string(),
                "proto": proto_name(v.proto),
                "dir": dir,
                "svc_id": v.svc_id,
                "name": names.get(&v.svc_id),
                "backend_id": v.backend_id,
                "backend": b.map(|b| b.addr.to_string()),
                "generation": v.generation,
                "nat": if v.reverse { Some(nat) } else { None },
                "tunnel_peer": tunnel,
                "flags": v.flags,
                "age_s": age_n,
            }),
        );
    }
    Ok(t)
}

pub(super) fn affinity(
    maps: &Maps,
    names: &BTreeMap<u32, String>,
    sel: Option<&SvcSel>,
    bsel: Option<&str>,
) -> anyhow::Result<Table> {
    let now = now_ns();
    let backends = backends_by_id(maps)?;
    let mut entries = affinities(maps)?;
    entries.sort_by_key(|(svc_id, client, _)| (*svc_id, *client));
    let mut t = Table::new(
        "affinity entries",
        &["SVC", "CLIENT", "BACKEND", "GEN", "AGE"],
    );
    for (svc_id, client, v) in entries {
        if sel.is_some_and(|s| !s.id_matches(svc_id)) {
            continue;
        }
        let b = backends.get(&v.backend_id);
        if bsel.is_some_and(|s| !backend_matches(s, v.backend_id, b)) {
            continue;
        }
        let (age_s, age_n) = age(v.last_seen, now);
        t.push(
            vec![
                svc_label(names, svc_id),
                client.to_string(),
                match b {
                    Some(b) => format!("{} ({})", v.backend_id, b.addr),
                    None => v.backend_id.to_string(),
                },
                v.generation.to_string(),
                age_s,
            ],
            json!({
                "svc_id": svc_id,
                "name": names.get(&svc_id),
                "client": client.to_string(),
                "backend_id": v.backend_id,
                "backend": b.map(|b| b.addr.to_string()),
                "generation": v.generation,
                "age_s": age_n,
            }),
        );
    }
    Ok(t)
}
