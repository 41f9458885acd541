//! Shared formatting of `xlb maps`: the table (text or JSON, with a row
//! limit) and how frontends, flags, states, ages and Services print.

use super::*;

/// A table: header, rows (cells + JSON), and the noun for the count line.
pub(super) struct Table {
    pub(super) header: Vec<&'static str>,
    pub(super) rows: Vec<(Vec<String>, Value)>,
    pub(super) noun: &'static str,
    pub(super) extra: Option<String>,
    /// An extra member of the JSON object.
    pub(super) json_extra: Option<(&'static str, Value)>,
}

impl Table {
    pub(super) fn new(noun: &'static str, header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
            noun,
            extra: None,
            json_extra: None,
        }
    }

    pub(super) fn push(&mut self, cells: Vec<String>, v: Value) {
        self.rows.push((cells, v));
    }

    pub(super) fn print(self, json_out: bool, limit: Option<usize>) -> anyhow::Result<()> {
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

pub(super) fn frontend(k: &Fe) -> String {
    let f = k.endpoint();
    if k.internal {
        // the entry of an externalTrafficPolicy Local frontend for clients inside the cluster
        format!("{f} (internal)")
    } else {
        f
    }
}

pub(super) fn svc_flags(f: u32) -> Vec<&'static str> {
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

pub(super) fn be_state(b: &Be) -> &'static str {
    if u32::from(b.flags) & XLB_BE_F_ACTIVE == 0 {
        "free"
    } else if u32::from(b.flags) & XLB_BE_F_TERMINATING != 0 {
        "terminating"
    } else if u32::from(b.flags) & XLB_BE_F_DRAINING != 0 {
        "draining"
    } else {
        "active"
    }
}

pub(super) fn node_str(n: Option<std::net::IpAddr>) -> String {
    n.map(|a| a.to_string()).unwrap_or_else(|| "local".into())
}

pub(super) fn dash(v: &[&str]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

pub(super) use xlb_bpf::maps::monotonic_ns as now_ns;

pub(super) fn age(last_seen: u64, now: u64) -> (String, Option<u64>) {
    if last_seen == 0 || last_seen > now {
        return ("-".into(), None);
    }
    let s = (now - last_seen) / 1_000_000_000;
    (format!("{s}s"), Some(s))
}

/// `-`: no Service of this node (`XLB_NO_SVC`: a tunnel NAT entry, whose
/// Service is the balancing node's).
pub(super) fn svc_label(names: &BTreeMap<u32, String>, id: u32) -> String {
    if id == xlb_bpf::consts::XLB_NO_SVC {
        return "-".into();
    }
    match names.get(&id) {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svc_labels() {
        let names = BTreeMap::from([(3, "default/web:80/TCP".to_string())]);
        assert_eq!(svc_label(&names, 3), "3 (default/web:80/TCP)");
        assert_eq!(svc_label(&names, 4), "4");
        assert_eq!(svc_label(&names, xlb_bpf::consts::XLB_NO_SVC), "-");
    }
}
