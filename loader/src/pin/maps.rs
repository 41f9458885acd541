//! # Pinned maps against the object
//!
//! Each pinned map compared with the object's spec: a contract map of
//! another layout fails the load, a stale private map is replaced, and a
//! map grown by an earlier run hands its size to the load.

use super::*;

/// The shape a map must have to be reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// max_entries of the map pinned at `path`, if one is (any error: `None`,
/// and [`check_pinned_maps`] reports what is wrong with it).
pub fn pinned_max_entries(path: &Path) -> Option<u32> {
    let fd = sys::obj_get(path).ok()?;
    (obj_kind(&fd)? == ObjKind::Map).then_some(())?;
    Some(libbpf_rs::MapInfo::new(fd.as_fd()).ok()?.info.max_entries)
}

/// How the object pinned at `path` differs from `spec`: `None` when nothing
/// is pinned there or it has the same layout, else why it cannot be reused.
fn pinned_mismatch(path: &Path, spec: &MapSpec) -> Option<String> {
    std::fs::symlink_metadata(path).ok()?;
    let fd = match sys::obj_get(path) {
        Ok(fd) => fd,
        Err(e) => return Some(format!("it cannot be opened as a BPF object ({e})")),
    };
    match obj_kind(&fd) {
        Some(ObjKind::Map) => {}
        Some(k) => return Some(format!("it is a {k:?}, not a map")),
        None => return Some("it is not a BPF map".into()),
    }
    let info = match libbpf_rs::MapInfo::new(fd.as_fd()) {
        Ok(i) => i.info,
        Err(e) => return Some(format!("its map info cannot be read ({e})")),
    };
    let mut diffs = Vec::new();
    let mut cmp = |what: &str, have: u32, want: u32| {
        if have != want {
            diffs.push(format!("{what} {have} (expected {want})"));
        }
    };
    cmp("type", info.type_, spec.map_type);
    cmp("key size", info.key_size, spec.key_size);
    cmp("value size", info.value_size, spec.value_size);
    cmp("max entries", info.max_entries, spec.max_entries);
    cmp("flags", info.map_flags, spec.flags);
    let mmapable = libbpf_sys::BPF_F_MMAPABLE;
    if spec.flags & mmapable != 0 && info.map_flags & mmapable == 0 {
        diffs.push(format!(
            "it lacks BPF_F_MMAPABLE ({mmapable:#x}): this xlb writes {} as memory",
            spec.name
        ));
    }
    (!diffs.is_empty()).then(|| {
        format!(
            "it was made by another xlb version or with other sizes: {}",
            diffs.join(", ")
        )
    })
}

/// Checks every contract map already pinned under `pin_dir` against what
/// this xlb would create; a mismatch is a [`Error::StalePin`] naming the fix.
pub fn check_pinned_maps(pin_dir: &Path, specs: &[MapSpec]) -> Result<()> {
    for spec in specs {
        let path = pin_dir.join(&spec.name);
        if let Some(why) = pinned_mismatch(&path, spec) {
            return Err(Error::StalePin {
                path,
                why,
                pin_dir: pin_dir.to_owned(),
            });
        }
    }
    Ok(())
}

/// Removes the pins of private maps that this xlb cannot reuse: one under
/// `<pin>/private/` of another layout, and one an older xlb left at
/// `<pin>/<name>` (where it pinned every map). The load then creates and pins
/// them afresh. Returns what was removed.
pub fn replace_stale_private(pin_dir: &Path, specs: &[MapSpec]) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for spec in specs {
        let legacy = pin_dir.join(&spec.name);
        let path = map_pin_path(pin_dir, &spec.name, MapRole::Private);
        let stale = [
            (std::fs::symlink_metadata(&legacy).is_ok()).then_some(legacy),
            pinned_mismatch(&path, spec).map(|_| path),
        ];
        for p in stale.into_iter().flatten() {
            unpin(&p).map_err(|e| Error::Io {
                what: format!("removing the stale private map pin {}", p.display()),
                err: e,
                hint: "is the pin directory writable (root)?".into(),
            })?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Contract maps whose value only ever grows at its end (a new build appends
/// fields whose zero means "the default"): `config`. A pinned one of an older,
/// shorter layout is migrated instead of refused ([`take_grown`]).
pub const GROWING_MAPS: [&str; 1] = ["config"];

/// For each of [`GROWING_MAPS`] pinned with a shorter value than `specs` say
/// (an older xlb's, otherwise alike): reads its one value and removes the pin,
/// so that the load creates this build's layout; the caller writes the old
/// bytes back, zero-extended ([`crate::DataPlane::load`]). Every other
/// contract pin is checked first ([`check_pinned_maps`]): a load refused for
/// another map's layout leaves the older pin where it was.
pub fn take_grown(pin_dir: &Path, specs: &[MapSpec]) -> Result<Vec<(String, Vec<u8>)>> {
    use libbpf_rs::MapCore;
    let mut older = Vec::new();
    for spec in specs
        .iter()
        .filter(|s| GROWING_MAPS.contains(&s.name.as_str()))
    {
        let path = map_pin_path(pin_dir, &spec.name, MapRole::Contract);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let Ok(m) = libbpf_rs::MapHandle::from_pinned_path(&path) else {
            continue; // not a map: check_pinned_maps says so
        };
        let is_older = m.map_type() as u32 == spec.map_type
            && m.key_size() == spec.key_size
            && m.value_size() < spec.value_size
            && m.max_entries() == spec.max_entries;
        if !is_older {
            continue;
        }
        let old = m
            .lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .ok()
            .flatten()
            .unwrap_or_default();
        older.push((spec.name.clone(), path, old));
    }
    let others: Vec<MapSpec> = specs
        .iter()
        .filter(|s| !older.iter().any(|(n, _, _)| *n == s.name))
        .cloned()
        .collect();
    check_pinned_maps(pin_dir, &others)?;
    let mut out = Vec::new();
    for (name, path, old) in older {
        unpin(&path).map_err(|e| Error::Io {
            what: format!("replacing the older {name} pin {}", path.display()),
            err: e,
            hint: "is the pin directory writable (root)?".into(),
        })?;
        out.push((name, old));
    }
    Ok(out)
}
