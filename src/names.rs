//! # Service names for the pinned maps
//!
//! The maps only know numeric `svc_id`s. The agent's sync, which assigns
//! them, records `svc_id -> "namespace/name:port/PROTO"` here so that
//! `xlb maps` can print names, and so that a restarted agent keeps the ids:
//!
//! ```json
//! {"version": 1, "services": {"7": "default/web:80/TCP", "9": "kube-system/kube-dns:53/UDP"}}
//! ```
//!
//! bpffs holds no regular files, so the file lives under `/run/xlb/`:
//! `/run/xlb/names.json` for the default pin directory,
//! `/run/xlb/<pin dir with '/' as '_'>.names.json` otherwise ([`path`]). A
//! missing file means "no names yet"; an unreadable or malformed one is an
//! [`Error`], which each reader turns into "ids only" with a warning. A flat
//! `{"7": "..."}` object is accepted too.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Directory of the names files.
pub use xlb_loader::STATE_DIR;

/// A names file that cannot be read, parsed or written.
#[derive(Debug, thiserror::Error)]
#[error("Service names file {}: {source}", path.display())]
pub struct Error {
    pub path: PathBuf,
    pub source: io::Error,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The names file of a pin directory.
pub fn path(pin_dir: &Path) -> PathBuf {
    if pin_dir == Path::new(xlb_loader::DEFAULT_PIN_DIR) {
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

/// The names of `pin_dir`'s Services for a command that prints them: a
/// names file that cannot be read is a warning on stderr, and Services are
/// then shown by id.
pub fn read_or_warn(pin_dir: &Path) -> BTreeMap<u32, String> {
    read(&path(pin_dir)).unwrap_or_else(|e| {
        eprintln!("warning: {e}; Services are shown by id");
        BTreeMap::new()
    })
}

/// Reads a names file: absent = empty.
pub fn read(path: &Path) -> Result<BTreeMap<u32, String>> {
    let err = |source| Error {
        path: path.to_owned(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(err(e)),
    };
    parse(&text).ok_or_else(|| {
        err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a names file ({\"version\":1,\"services\":{..}})",
        ))
    })
}

/// Writes a names file atomically (temp file + rename), creating its directory.
pub fn write(path: &Path, names: &BTreeMap<u32, String>) -> Result<()> {
    let err = |source| Error {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let services: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    let text = serde_json::json!({"version": 1, "services": services}).to_string();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// Removes a names file; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
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
            path(Path::new("/sys/fs/bpf/xlb")),
            Path::new("/run/xlb/names.json")
        );
        assert_eq!(
            path(Path::new("/sys/fs/bpf/xlb-t-1")),
            Path::new("/run/xlb/sys_fs_bpf_xlb-t-1.names.json")
        );
    }

    #[test]
    fn round_trip_absent_and_malformed() {
        let dir = std::env::temp_dir().join(format!("xlb-names-{}", std::process::id()));
        let f = dir.join("n.names.json");
        assert!(read(&f).unwrap().is_empty(), "absent = empty");
        let names: BTreeMap<u32, String> = [(7, "default/web:80/TCP".to_string())].into();
        write(&f, &names).unwrap();
        assert_eq!(read(&f).unwrap(), names);
        std::fs::write(&f, "{").unwrap();
        let e = read(&f).unwrap_err();
        assert!(e.to_string().contains("not a names file"), "{e}");
        remove(&f).unwrap();
        remove(&f).unwrap();
        assert!(!f.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
