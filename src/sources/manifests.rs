//! # Manifest directory source
//!
//! Reads every `*.yaml`, `*.yml` and `*.json` file of a directory (and its
//! subdirectories, in name order) as ordinary Kubernetes manifests: several
//! documents per file separated by `---`, and `kind: List` with `items`.
//! Services (`v1`), EndpointSlices (`discovery.k8s.io/v1`) and Nodes (`v1`)
//! are kept; other kinds are ignored (debug log). A document that is not
//! valid YAML, lacks `kind`/`apiVersion`, or does not fit its type is skipped
//! with a logged reason and the rest of the file is kept. When the same
//! object (kind, namespace, name) appears twice, the later one wins (warned).
//!
//! [`watch_dir`] polls the files' (path, target, inode, size, mtime) every
//! [`SourceOptions::poll`] and re-reads the directory when that changes,
//! debounced: editors that write a file in several steps cause one reload.
//! A ConfigMap volume, which swaps its `..data` symlink to a new directory
//! in one step, is a change like any other (the visible names resolve to new
//! files). When the directory is removed, or a manifest in it cannot be read
//! (I/O error, dangling symlink), the previous snapshot stays in force, the
//! error is logged once, and the source reports itself behind
//! ([`super::SourceStatus`], name `manifests`) until a complete read
//! succeeds again. A document that does not parse is content, not an
//! outage: it is skipped and the rest is used.
//!
//! ```no_run
//! # async fn f() -> xlb::sources::Result<()> {
//! use xlb::sources::{manifests, SourceOptions};
//! let mut rx = manifests::watch_dir("deploy/examples".into(), SourceOptions::default())?;
//! rx.changed().await.unwrap();
//! let snap = rx.borrow().clone().unwrap();
//! println!("{} services", snap.services.len());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::{watch, Notify};

use super::{object_key, sort_snapshot, Error, Result, Snapshot, SnapshotRx, SourceOptions};
use crate::model::Slice;

/// This source's name in [`super::SourceStatus`].
pub const WHAT: &str = "manifests";

/// A document that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// File (or other origin) and 1-based document number.
    pub origin: String,
    pub doc: usize,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} document {}: {}", self.origin, self.doc, self.reason)
    }
}

/// The result of reading manifests: the objects kept, the documents skipped,
/// and how many documents of other kinds were ignored.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub snapshot: Snapshot,
    pub skipped: Vec<Skipped>,
    pub ignored: usize,
}

#[derive(Default)]
struct Collector {
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
    nodes: BTreeMap<String, Node>,
    skipped: Vec<Skipped>,
    ignored: usize,
}

impl Collector {
    fn finish(self) -> Parsed {
        let mut snapshot = Snapshot {
            services: self.services.into_values().map(Arc::new).collect(),
            slices: self
                .slices
                .into_values()
                .map(|s| Arc::new(Slice::from(s)))
                .collect(),
            nodes: self.nodes.into_values().map(Arc::new).collect(),
        };
        sort_snapshot(&mut snapshot);
        Parsed {
            snapshot,
            skipped: self.skipped,
            ignored: self.ignored,
        }
    }

    fn skip(&mut self, origin: &str, doc: usize, reason: String) {
        let s = Skipped {
            origin: origin.to_owned(),
            doc,
            reason,
        };
        tracing::warn!("skipping {s}");
        self.skipped.push(s);
    }

    fn add_text(&mut self, text: &str, origin: &str) {
        for (i, doc) in split_documents(text).into_iter().enumerate() {
            let n = i + 1;
            let value: serde_yaml::Value = match serde_yaml::from_str(doc) {
                Ok(v) => v,
                Err(e) => {
                    self.skip(origin, n, format!("not valid YAML: {e}"));
                    continue;
                }
            };
            if value.is_null() {
                continue; // empty document (comments only, trailing ---)
            }
            let json = match serde_json::to_value(&value) {
                Ok(j) => j,
                Err(e) => {
                    self.skip(origin, n, format!("not representable as JSON: {e}"));
                    continue;
                }
            };
            self.add_value(json, origin, n);
        }
    }

    fn add_value(&mut self, v: serde_json::Value, origin: &str, n: usize) {
        let Some(obj) = v.as_object() else {
            self.skip(origin, n, "not a mapping".into());
            return;
        };
        let kind = obj.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let api = obj.get("apiVersion").and_then(|k| k.as_str()).unwrap_or("");
        if kind.is_empty() || api.is_empty() {
            self.skip(origin, n, "missing kind or apiVersion".into());
            return;
        }
        match (api, kind) {
            ("v1", "List") => {
                let items = obj.get("items").and_then(|i| i.as_array()).cloned();
                match items {
                    Some(items) => {
                        for it in items {
                            self.add_value(it, origin, n);
                        }
                    }
                    None => self.skip(origin, n, "List without items".into()),
                }
            }
            ("v1", "Service") => match serde_json::from_value::<Service>(v) {
                Ok(o) => {
                    let key = namespaced(&o.metadata);
                    if self.services.insert(key.clone(), o).is_some() {
                        tracing::warn!("{origin} document {n}: Service {key} defined twice, the later one wins");
                    }
                }
                Err(e) => self.skip(origin, n, format!("bad Service: {e}")),
            },
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                match serde_json::from_value::<EndpointSlice>(v) {
                    Ok(o) => {
                        let key = namespaced(&o.metadata);
                        if self.slices.insert(key.clone(), o).is_some() {
                            tracing::warn!("{origin} document {n}: EndpointSlice {key} defined twice, the later one wins");
                        }
                    }
                    Err(e) => self.skip(origin, n, format!("bad EndpointSlice: {e}")),
                }
            }
            ("v1", "Node") => {
                match serde_json::from_value::<Node>(v) {
                    Ok(o) => {
                        let key = object_key(&o.metadata);
                        if self.nodes.insert(key.clone(), o).is_some() {
                            tracing::warn!("{origin} document {n}: Node {key} defined twice, the later one wins");
                        }
                    }
                    Err(e) => self.skip(origin, n, format!("bad Node: {e}")),
                }
            }
            (api, kind) => {
                tracing::debug!("{origin} document {n}: ignoring {api} {kind}");
                self.ignored += 1;
            }
        }
    }
}

/// `namespace/name`, with the namespace defaulted to `default` as kubectl does.
fn namespaced(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let ns = meta.namespace.as_deref().unwrap_or("default");
    format!("{ns}/{}", meta.name.as_deref().unwrap_or(""))
}

/// Splits YAML text at document markers (`---` lines, optionally followed by
/// a comment or content, and `...` end markers). Splitting here rather than
/// in the YAML parser keeps one broken document from hiding the next ones.
pub fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        let is_start = l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
        let is_end = l == "...";
        if is_start || is_end {
            docs.push(&text[start..pos]);
            // Content after `--- ` on the same line belongs to the next document.
            start = if is_start && l.len() > 3 {
                pos + 4
            } else {
                pos + line.len()
            };
        }
        pos += line.len();
    }
    docs.push(&text[start..]);
    docs
}

/// Parses manifest text (one file). `origin` names it in skip reasons.
pub fn parse_str(text: &str, origin: &str) -> Parsed {
    let mut c = Collector::default();
    c.add_text(text, origin);
    c.finish()
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Every manifest file under `dir`, recursively, in path order. Hidden files
/// and directories are skipped (editor swap files; a ConfigMap volume's
/// `..data` copies, whose files are reached through the visible symlinks).
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) -> Result<()> {
        let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        for e in rd.flatten() {
            let p = e.path();
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if p.is_dir() {
                if depth < 8 {
                    walk(&p, out, depth + 1)?;
                }
            } else if is_manifest(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    if !dir.is_dir() {
        return Err(Error::NotADir(dir.to_owned()));
    }
    let mut out = Vec::new();
    walk(dir, &mut out, 0)?;
    out.sort();
    Ok(out)
}

/// Reads every manifest under `dir`. A file that is not UTF-8 is skipped
/// (logged) like a bad document; a directory or file that cannot be read is
/// an error (using the rest would delete that file's Services).
pub fn load_dir(dir: &Path) -> Result<Parsed> {
    let mut c = Collector::default();
    for f in manifest_files(dir)? {
        let origin = f.display().to_string();
        let bytes = std::fs::read(&f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => c.add_text(&text, &origin),
            Err(_) => c.skip(&origin, 0, "not UTF-8".into()),
        }
    }
    Ok(c.finish())
}

/// What identifies one file's content: its path, the file it resolves to,
/// inode, size and mtime.
pub type FileStamp = (PathBuf, Option<PathBuf>, u64, u64, Option<SystemTime>);

/// What identifies the directory's state: each file's [`FileStamp`].
pub fn fingerprint(dir: &Path) -> Result<Vec<FileStamp>> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(manifest_files(dir)?
        .into_iter()
        .map(|p| {
            let target = std::fs::canonicalize(&p).ok();
            let md = std::fs::metadata(&p).ok();
            let ino = md.as_ref().map_or(0, |m| m.ino());
            let len = md.as_ref().map_or(0, |m| m.len());
            let mtime = md.and_then(|m| m.modified().ok());
            (p, target, ino, len, mtime)
        })
        .collect())
}

/// How long the directory may stay unreadable before the source is behind.
fn behind_bound(poll: std::time::Duration) -> std::time::Duration {
    (poll * 4).max(std::time::Duration::from_secs(2))
}

/// Reads `dir` now and keeps watching it. The first snapshot is published
/// immediately (a directory is complete as soon as it is read); later ones
/// after a change, debounced. Fails at once when `dir` is not a readable
/// directory; later read errors are logged and the last snapshot stays.
///
/// Must be called inside a Tokio runtime; the watch task ends when every
/// receiver is dropped.
pub fn watch_dir(dir: PathBuf, opts: SourceOptions) -> Result<SnapshotRx> {
    let mut first = load_dir(&dir)?;
    opts.filter(&mut first.snapshot);
    let mut last = fingerprint(&dir)?;
    tracing::info!(
        dir = %dir.display(),
        services = first.snapshot.services.len(),
        slices = first.snapshot.slices.len(),
        nodes = first.snapshot.nodes.len(),
        skipped = first.skipped.len(),
        "manifests loaded"
    );
    let (tx, rx) = watch::channel(Some(Arc::new(first.snapshot)));
    let changed = Arc::new(Notify::new());
    let status = opts.status.clone();
    status.register(WHAT, behind_bound(opts.poll));
    // Set while the last reload failed: every poll retries it.
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let poll_changed = changed.clone();
    let poll_dir = dir.clone();
    let poll_tx = tx.clone();
    let poll_status = status.clone();
    let poll_failing = failing.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(opts.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unreadable = false;
        loop {
            tick.tick().await;
            if poll_tx.is_closed() {
                return;
            }
            match fingerprint(&poll_dir) {
                Ok(fp) => {
                    if unreadable {
                        tracing::info!(dir = %poll_dir.display(), "manifest directory readable again");
                        unreadable = false;
                    }
                    if fp != last {
                        tracing::debug!(dir = %poll_dir.display(), "manifest directory changed");
                        last = fp;
                        poll_changed.notify_one();
                    } else if poll_failing.load(std::sync::atomic::Ordering::Relaxed) {
                        poll_changed.notify_one();
                    } else {
                        poll_status.progress(WHAT);
                    }
                }
                Err(e) => {
                    if !unreadable {
                        tracing::warn!(
                            "watching manifests: {e}; keeping the previous snapshot until it is readable"
                        );
                        unreadable = true;
                    }
                    poll_status.error(WHAT, e.to_string());
                }
            }
        }
    });

    let debounce = opts.debounce;
    tokio::spawn(super::publish_debounced(
        tx,
        changed,
        debounce,
        move || match load_dir(&dir) {
            Ok(mut p) => {
                failing.store(false, std::sync::atomic::Ordering::Relaxed);
                status.progress(WHAT);
                opts.filter(&mut p.snapshot);
                tracing::info!(
                    services = p.snapshot.services.len(),
                    slices = p.snapshot.slices.len(),
                    nodes = p.snapshot.nodes.len(),
                    skipped = p.skipped.len(),
                    "manifests reloaded"
                );
                Some(p.snapshot)
            }
            Err(e) => {
                if !failing.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!("reloading manifests: {e}; keeping the previous snapshot");
                }
                status.error(WHAT, format!("reloading: {e}"));
                None
            }
        },
    ));
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_handles_markers() {
        let t = "a: 1\n---\nb: 2\n--- # c\nc: 3\n...\n---\n";
        let d = split_documents(t);
        assert_eq!(d, vec!["a: 1\n", "b: 2\n", "# c\nc: 3\n", "", ""]);
        assert_eq!(split_documents("x: 1"), vec!["x: 1"]);
        // `---` inside a block scalar line is not a marker unless at column 0.
        assert_eq!(split_documents("a: |\n  ---\n").len(), 1);
    }
}
