//! # Service names for the pinned maps
//!
//! The maps only know numeric `svc_id`s. Whoever assigns them (the agent's
//! sync) records `svc_id -> "namespace/name:port/PROTO"` so that `xlb maps`
//! can print names. Format: one flat JSON object, keys are decimal svc_ids:
//!
//! ```json
//! {"1": "default/web:80/TCP", "2": "kube-system/kube-dns:53/UDP"}
//! ```
//!
//! bpffs holds no regular files, so the file lives in `/run/xlb/` and
//! `<pin_dir>/names` is a symlink to it (bpffs also refuses names with a
//! dot); readers just open `<pin_dir>/names`. A missing or unreadable file means "no names".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Directory of the name files.
pub const STATE_DIR: &str = "/run/xlb";

/// The link readers open.
pub fn link_path(pin_dir: &Path) -> PathBuf {
    pin_dir.join("names")
}

/// The real file for a pin directory (one per pin directory).
pub fn file_path(pin_dir: &Path) -> PathBuf {
    let flat: String = pin_dir
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    Path::new(STATE_DIR).join(format!("{flat}.names.json"))
}

/// Writes the names (atomically: temp file + rename) and the symlink.
pub fn write(pin_dir: &Path, names: &BTreeMap<u32, String>) -> Result<()> {
    let io = |what: String| {
        move |e| Error::Io {
            what,
            err: e,
            hint: "run as root; /run must be writable".into(),
        }
    };
    let file = file_path(pin_dir);
    std::fs::create_dir_all(STATE_DIR).map_err(io(format!("creating {STATE_DIR}")))?;
    let obj: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    let text = serde_json::to_string_pretty(&obj).expect("strings serialise");
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &file).map_err(io(format!("renaming {}", tmp.display())))?;
    let link = link_path(pin_dir);
    if std::fs::read_link(&link).ok().as_deref() != Some(file.as_path()) {
        crate::pin::unpin(&link).ok();
        std::os::unix::fs::symlink(&file, &link)
            .map_err(io(format!("linking {}", link.display())))?;
    }
    Ok(())
}

/// Reads the names; absent or malformed = empty (malformed is logged).
pub fn read(pin_dir: &Path) -> BTreeMap<u32, String> {
    let path = link_path(pin_dir);
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

/// Parses the format above; entries with a non-numeric key or a non-string
/// value are skipped.
pub fn parse(text: &str) -> Option<BTreeMap<u32, String>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let obj = v.as_object()?;
    Some(
        obj.iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_owned())))
            .collect(),
    )
}

/// Removes the file and the link (detach --all).
pub fn remove(pin_dir: &Path) {
    crate::pin::unpin(&link_path(pin_dir)).ok();
    crate::pin::unpin(&file_path(pin_dir)).ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_bad_entries() {
        let m = parse(r#"{"1":"default/web:80/TCP","x":"bad","2":7,"3":"ns/dns:53/UDP"}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&1], "default/web:80/TCP");
        assert_eq!(m[&3], "ns/dns:53/UDP");
        assert!(parse("[1,2]").is_none());
        assert!(parse("not json").is_none());
    }

    #[test]
    fn file_per_pin_dir() {
        assert_eq!(
            file_path(Path::new("/sys/fs/bpf/xlb")),
            Path::new("/run/xlb/sys_fs_bpf_xlb.names.json")
        );
    }
}
