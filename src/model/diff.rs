//! A snapshot against the objects the model holds: which objects changed,
//! which are gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Slice;

/// An object the model holds: its metadata, and content to compare.
pub(super) trait Object: PartialEq {
    fn object_meta(&self) -> &ObjectMeta;
}

impl Object for Service {
    fn object_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl Object for Node {
    fn object_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl Object for Slice {
    fn object_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

/// Whether a source's object is the one the model holds: the same `Arc`,
/// or else by resourceVersion / content. Objects from the
/// API server both carry a resourceVersion, which changes on every write of
/// the object: equal means unchanged, without comparing content (a deep
/// comparison of 20k objects costs tens of ms). Without one on either side
/// (manifest files) the content decides.
pub(super) fn same_object<K: Object>(old: &Arc<K>, new: &Arc<K>) -> bool {
    if Arc::ptr_eq(old, new) {
        return true; // the very object (kube-rs stores keep unchanged ones)
    }
    match (
        &old.object_meta().resource_version,
        &new.object_meta().resource_version,
    ) {
        (Some(a), Some(b)) => a == b,
        _ => old == new,
    }
}

pub(super) fn key_of(meta: &ObjectMeta) -> Option<String> {
    let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
    let ns = meta.namespace.as_deref().unwrap_or("default");
    Some(format!("{ns}/{name}"))
}

/// Writes [`key_of`] into `buf`; false when the object has no name.
fn key_into(meta: &ObjectMeta, buf: &mut String) -> bool {
    let Some(name) = meta.name.as_deref().filter(|n| !n.is_empty()) else {
        return false;
    };
    buf.clear();
    buf.push_str(meta.namespace.as_deref().unwrap_or("default"));
    buf.push('/');
    buf.push_str(name);
    true
}

/// One kind of a snapshot against the objects the model holds.
pub(super) struct KindDiff<'a, T> {
    /// `(key, object)` added or changed, in snapshot order (last wins).
    pub changed: Vec<(String, &'a Arc<T>)>,
    /// Keys held but no longer in the snapshot.
    pub gone: Vec<String>,
    /// Objects without a name.
    pub nameless: usize,
}

/// Diffs `objs` against `have`. The sources hand over snapshots sorted by
/// `namespace/name` ([`crate::sources::sort_snapshot`]): then one pass with
/// one lookup per object (no per-object allocation) finds the changes, and
/// a count tells whether anything is gone. Unsorted input or duplicate names
/// take the general path (last object of a name wins).
pub(super) fn diff_kind<'a, T, S>(
    have: &HashMap<String, Arc<T>, S>,
    objs: &'a [Arc<T>],
) -> KindDiff<'a, T>
where
    T: Object,
    S: std::hash::BuildHasher,
{
    let mut d = KindDiff {
        changed: Vec::new(),
        gone: Vec::new(),
        nameless: 0,
    };
    let (mut buf, mut prev) = (String::new(), String::new());
    let mut sorted = true;
    let mut matched = 0;
    for o in objs {
        if !key_into(o.object_meta(), &mut buf) {
            d.nameless += 1;
            continue;
        }
        if sorted && !prev.is_empty() && buf <= prev {
            sorted = false;
            break;
        }
        std::mem::swap(&mut prev, &mut buf);
        match have.get(prev.as_str()) {
            Some(old) => {
                matched += 1;
                if !same_object(old, o) {
                    d.changed.push((prev.clone(), o));
                }
            }
            None => d.changed.push((prev.clone(), o)),
        }
    }
    if sorted {
        if matched != have.len() {
            let mut present: HashSet<String> = HashSet::with_capacity(objs.len());
            for o in objs {
                if key_into(o.object_meta(), &mut buf) {
                    present.insert(buf.clone());
                }
            }
            d.gone = have
                .keys()
                .filter(|k| !present.contains(k.as_str()))
                .cloned()
                .collect();
        }
        return d;
    }
    // General path: last object of each name.
    d = KindDiff {
        changed: Vec::new(),
        gone: Vec::new(),
        nameless: 0,
    };
    let mut last: HashMap<String, &'a Arc<T>> = HashMap::with_capacity(objs.len());
    let mut order: Vec<String> = Vec::new();
    for o in objs {
        match key_of(o.object_meta()) {
            Some(k) => {
                if last.insert(k.clone(), o).is_none() {
                    order.push(k);
                }
            }
            None => d.nameless += 1,
        }
    }
    d.gone = have
        .keys()
        .filter(|k| !last.contains_key(k.as_str()))
        .cloned()
        .collect();
    for k in order {
        let o = last[&k];
        if !have.get(&k).is_some_and(|old| same_object(old, o)) {
            d.changed.push((k, o));
        }
    }
    d
}
