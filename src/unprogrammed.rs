//! # Desired but not programmed
//!
//! What the agent's desired state asks for and the maps do not hold (a full
//! map, a frontend another Service holds, a failed write), as the last sync
//! reported it ([`crate::sync::SyncReport::failed`]: a failed Service port is
//! retried by every later sync, so the last report lists every one). The
//! agent fails `/readyz` with [`summary`], counts them in
//! `xlb_unprogrammed{reason}` and writes them next to the names file
//! ([`path`]) for `xlb doctor` and `xlb maps services`; the file is removed
//! when everything is programmed.
//!
//! ```json
//! {"version": 1, "unprogrammed": [{"what": "bench/svc-9:80/TCP", "reason": "maglev_full", "why": "maglev slot array full: .."}]}
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// One thing not programmed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unprogrammed {
    /// The Service port (`ns/name:port/PROTO`), frontend or object.
    pub what: String,
    /// One of [`REASONS`].
    pub reason: String,
    /// The error as sync reported it.
    pub why: String,
}

/// The `reason` label values.
pub const REASONS: [&str; 9] = [
    "maglev_full",
    "backends_full",
    "services_full",
    "src_ranges_full",
    "services6_full",
    "src_ranges6_full",
    "svc_ids_full",
    "conflict",
    "map_error",
];

/// The reason of a sync failure message.
pub fn reason(why: &str) -> &'static str {
    if why.contains("maglev slot array full") || why.contains("map maglev is full") {
        "maglev_full"
    } else if why.contains("backends map full") || why.contains("map backends is full") {
        "backends_full"
    } else if why.contains("map services is full") {
        "services_full"
    } else if why.contains("map src_ranges is full") {
        "src_ranges_full"
    } else if why.contains("map services6 is full") {
        "services6_full"
    } else if why.contains("map src_ranges6 is full") {
        "src_ranges6_full"
    } else if why.contains("svc_id space full") {
        "svc_ids_full"
    } else if why.contains("also claimed by") {
        "conflict"
    } else {
        "map_error"
    }
}

/// The failures of a sync report, with their reasons.
pub fn from_failed(failed: &[(String, String)]) -> Vec<Unprogrammed> {
    failed
        .iter()
        .map(|(what, why)| Unprogrammed {
            what: what.clone(),
            reason: reason(why).into(),
            why: why.clone(),
        })
        .collect()
}

/// Count per reason (every one of [`REASONS`], zeros included).
pub fn by_reason(list: &[Unprogrammed]) -> BTreeMap<&'static str, usize> {
    let mut m: BTreeMap<&'static str, usize> = REASONS.iter().map(|r| (*r, 0)).collect();
    for u in list {
        if let Some(r) = REASONS.iter().find(|r| **r == u.reason) {
            *m.entry(r).or_default() += 1;
        }
    }
    m
}

/// One line for `/readyz` and logs: `None` when the list is empty.
pub fn summary(list: &[Unprogrammed]) -> Option<String> {
    let first = list.first()?;
    let counts: Vec<String> = by_reason(list)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    Some(format!(
        "{} desired entries not programmed ({}); first: {}: {}",
        list.len(),
        counts.join(", "),
        first.what,
        first.why
    ))
}

/// The file of a pin directory: beside its names file.
pub fn path(pin_dir: &Path) -> PathBuf {
    let names = crate::names::path(pin_dir);
    let file = names
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .replace("names.json", "unprogrammed.json")
        })
        .unwrap_or_else(|| "unprogrammed.json".into());
    names.with_file_name(file)
}

/// Writes the list (atomically), or removes the file when it is empty.
pub fn write(path: &Path, list: &[Unprogrammed]) -> io::Result<()> {
    if list.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::json!({"version": 1, "unprogrammed": list}).to_string();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Reads the list: absent = empty.
pub fn read(path: &Path) -> io::Result<Vec<Unprogrammed>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    serde_json::from_value(v["unprogrammed"].clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_summary_and_file() {
        let failed = vec![
            (
                "a/b:80/TCP".to_string(),
                "maglev slot array full: no free region of 1009 slots (8 of 9 used, largest free 1)"
                    .to_string(),
            ),
            (
                "a/c:80/TCP".to_string(),
                "map services is full (4 entries)".to_string(),
            ),
            ("a/d:80/TCP".into(), "backends map full (8 ids)".into()),
            ("a/e:80/TCP".into(), "svc_id space full (131072)".into()),
            (
                "a/f:80/TCP [fd00::1]:80/TCP".into(),
                "map services6 is full (65536 entries)".into(),
            ),
            ("x".into(), "update on map services: EPERM".into()),
        ];
        let l = from_failed(&failed);
        let r: Vec<&str> = l.iter().map(|u| u.reason.as_str()).collect();
        assert_eq!(
            r,
            [
                "maglev_full",
                "services_full",
                "backends_full",
                "svc_ids_full",
                "services6_full",
                "map_error"
            ]
        );
        assert_eq!(by_reason(&l)["maglev_full"], 1);
        assert_eq!(by_reason(&l)["conflict"], 0);
        let s = summary(&l).unwrap();
        assert!(s.starts_with("6 desired entries not programmed"), "{s}");
        assert!(
            s.contains("first: a/b:80/TCP: maglev slot array full"),
            "{s}"
        );
        assert_eq!(summary(&[]), None);

        let dir = std::env::temp_dir().join(format!("xlb-unprog-{}", std::process::id()));
        let p = dir.join("x.unprogrammed.json");
        write(&p, &l).unwrap();
        assert_eq!(read(&p).unwrap(), l);
        write(&p, &[]).unwrap();
        assert!(!p.exists());
        assert_eq!(read(&p).unwrap(), vec![]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(path(Path::new(xlb_loader::DEFAULT_PIN_DIR)).ends_with("unprogrammed.json"));
        assert!(path(Path::new("/tmp/p")).ends_with("tmp_p.unprogrammed.json"));
    }
}
