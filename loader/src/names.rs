//! # Service names for the pinned maps
//!
//! The maps only know numeric `svc_id`s. The agent's sync, which assigns
//! them, records `svc_id -> "namespace/name:port/PROTO"` so that `xlb maps`
//! can print names (the same file and format as `xlb::sync::names_path` /
//! `write_names`):
//!
//! ```json
//! {"version": 1, "services": {"7": "default/web:80/TCP", "9": "kube-system/kube-dns:53/UDP"}}
//! ```
//!
//! bpffs holds no regular files, so the file lives under `/run/xlb/`:
//! `/run/xlb/names.json` for the default pin directory,
//! `/run/xlb/<pin dir with '/' as '_'>.names.json` otherwise. A missing or
//! malformed file means "no names" (ids only); a flat `{"7": "..."}` object
//! is accepted too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Directory of the name files.
pub const STATE_DIR: &str = "/run/xlb";

/// The names file of a pin directory.
pub fn file_path(pin_dir: &Path) -> PathBuf {
    if pin_dir == Path::new(crate::DEFAULT_PIN_DIR) {
        return Path::new(STATE_DIR).join("names.json");
    }
    let flat: String = pin_dir
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    Path::new(STATE_DIR).join(format!("{flat}.names.json"))
}

/// Writes the names of a pin directory atomically (temp file + rename).
pub fn write(pin_dir: &Path, names: &BTreeMap<u32, String>) -> Result<()> {
    let file = file_path(pin_dir);
    write_file(&file, names).map_err(|err| Error::Io {
        what: format!("writing {}", file.display()),
        err,
        hint: "run as root; /run must be writable".into(),
    })
}

/// Writes a names file at `path` atomically (temp file + rename), creating
/// its directory.
pub fn write_file(path: &Path, names: &BTreeMap<u32, String>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let services: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    let text = serde_json::json!({"version": 1, "services": services}).to_string();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Reads the names; absent or malformed = empty (malformed is logged).
pub fn read(pin_dir: &Path) -> BTreeMap<u32, String> {
    let path = file_path(pin_dir);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return BTreeMap::new();
    };
    match parse(&text) {
        Some(m) => m,
        None => {
            tracing::warn!(path = %path.display(), "ignoring malformed Service names file");
            BTreeMap::new()
        }
    }
}

/// Parses `{"version":1,"services":{..}}` (or a flat `{"7": ".."}`); entries
/// with a non-numeric key or a non-string value are skipped.
pub fn parse(text: &str) -> Option<BTreeMap<u32, String>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let obj = match v.get("services") {
        Some(s) => s.as_object()?,
        None => v.as_object()?,
    };
    Some(
        obj.iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_owned())))
            .collect(),
    )
}

/// Removes the file (detach --all).
pub fn remove(pin_dir: &Path) {
    crate::pin::unpin(&file_path(pin_dir)).ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_bad_entries() {
        let m = parse(r#"{"version":1,"services":{"1":"default/web:80/TCP","x":"bad","2":7,"3":"ns/dns:53/UDP"}}"#)
            .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&1], "default/web:80/TCP");
        assert_eq!(m[&3], "ns/dns:53/UDP");
        assert_eq!(parse(r#"{"4":"a/b:1/UDP"}"#).unwrap()[&4], "a/b:1/UDP");
        assert!(parse("[1,2]").is_none());
        assert!(parse(r#"{"services":[1]}"#).is_none());
        assert!(parse("not json").is_none());
    }

    #[test]
    fn file_per_pin_dir() {
        assert_eq!(
            file_path(Path::new("/sys/fs/bpf/xlb")),
            Path::new("/run/xlb/names.json")
        );
        assert_eq!(
            file_path(Path::new("/sys/fs/bpf/xlb-t-1")),
            Path::new("/run/xlb/sys_fs_bpf_xlb-t-1.names.json")
        );
    }
}
