//! A scripted Kubernetes API server for the source tests (see
//! `tests/sources_kube.rs`): its state, scripting and fault modes here, its
//! HTTP side in `serve`; object builders in `objects`; snapshot digests and a
//! fake data plane in `observe`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use xlb::model::{self, ModelConfig};
use xlb::sources::{Snapshot, SnapshotRx, SourceOptions};
use xlb::sync::{FakeMaps, SyncOptions, Syncer};

mod objects;
mod observe;
mod serve;

// Each test binary uses a part of the kit (as with dead_code above).
#[allow(unused_imports)]
pub use objects::*;
#[allow(unused_imports)]
pub use observe::*;
#[allow(unused_imports)]
pub use serve::*;

pub const SERVICES: &str = "/api/v1/services";

pub const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

pub const NODES: &str = "/api/v1/nodes";

pub fn list_kind(path: &str) -> (&'static str, &'static str) {
    match path {
        SERVICES => ("v1", "ServiceList"),
        SLICES => ("discovery.k8s.io/v1", "EndpointSliceList"),
        NODES => ("v1", "NodeList"),
        _ => unreachable!(),
    }
}

pub fn path_of(obj: &Value) -> &'static str {
    match obj["kind"].as_str().unwrap() {
        "Service" => SERVICES,
        "EndpointSlice" => SLICES,
        "Node" => NODES,
        k => panic!("unexpected kind {k}"),
    }
}

pub fn key_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap()
    )
}

/// One watch event as the API server sends it.
#[derive(Clone)]
pub struct Ev {
    pub rv: u64,
    pub path: &'static str,
    pub line: Value,
}

#[derive(Default)]
pub struct State {
    /// etcd-style global revision, shared by all resources.
    pub rv: u64,
    pub objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Replayable events (ADDED/MODIFIED/DELETED) in order.
    pub log: Vec<Ev>,
    /// Live-only events (BOOKMARK, ERROR) for open watches, with a sequence.
    pub live: Vec<(u64, Ev)>,
    /// Watches from a version below this get 410 Gone.
    pub compacted: u64,
    pub bookmarks_sent: u32,
    /// Watch events cut in the middle ([`Fault::CutMidObject`]).
    pub cut_mid_object: u32,
    /// Request targets seen (path?query), in order.
    pub targets: Vec<String>,
    /// Requests seen: (path, watch?, resourceVersion param).
    pub requests: Vec<(String, bool, Option<String>)>,
}

/// A misbehaviour of the server for one kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers with this HTTP status and a JSON Status body.
    Status(u16),
    /// 200 with a body that is not JSON (a list) or an event line that is
    /// not JSON (a watch, after which it goes on normally).
    Garbage,
    /// 200 with a Content-Length, half the body, then the connection closes.
    Truncated,
    /// 200, headers and half the body (a list) or nothing (a watch), then
    /// silence with the connection open.
    Stall,
    /// A watch: the first event is sent up to the middle of the object,
    /// then the connection closes.
    CutMidObject,
}

pub struct FakeApi {
    pub state: Mutex<State>,
    /// (path, watch?) -> fault, applied to every such request until cleared.
    pub faults: Mutex<BTreeMap<(&'static str, bool), Fault>>,
    pub wake: Notify,
    /// Bumped to cut every open watch connection.
    pub cut: watch::Sender<u64>,
}

impl FakeApi {
    pub async fn start() -> (Arc<Self>, String) {
        let api = Arc::new(FakeApi {
            state: Mutex::new(State::default()),
            faults: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            cut: watch::channel(0).0,
        });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let a = api.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(a.clone().serve(s));
            }
        });
        (api, url)
    }

    pub fn client(url: &str) -> kube::Client {
        let cfg = kube::Config::new(url.parse().unwrap());
        kube::Client::try_from(cfg).unwrap()
    }

    /// Stores an object (new rv); `logged` = whether watchers get the event
    /// (false simulates a change whose event was compacted away).
    pub fn put(&self, obj: impl serde::Serialize, logged: bool) {
        let mut v = serde_json::to_value(obj).unwrap();
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        v["metadata"]["resourceVersion"] = json!(rv.to_string());
        let path = path_of(&v);
        let key = key_of(&v);
        let existed = st
            .objects
            .entry(path)
            .or_default()
            .insert(key, v.clone())
            .is_some();
        if logged {
            let ty = if existed { "MODIFIED" } else { "ADDED" };
            st.log.push(Ev {
                rv,
                path,
                line: json!({"type": ty, "object": v}),
            });
        }
        drop(st);
        self.wake.notify_waiters();
    }

    pub fn delete(&self, kind_obj: impl serde::Serialize, logged: bool) {
        let v = serde_json::to_value(kind_obj).unwrap();
        let path = path_of(&v);
        let key = key_of(&v);
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let mut old = st.objects.entry(path).or_default().remove(&key).unwrap();
        old["metadata"]["resourceVersion"] = json!(rv.to_string());
        if logged {
            st.log.push(Ev {
                rv,
                path,
                line: json!({"type": "DELETED", "object": old}),
            });
        }
        drop(st);
        self.wake.notify_waiters();
    }

    /// Sends a BOOKMARK at the current revision to open watches of `path`.
    pub fn bookmark(&self, path: &'static str) -> u64 {
        let mut st = self.state.lock().unwrap();
        let rv = st.rv;
        let (api_version, list) = list_kind(path);
        let kind = list.trim_end_matches("List");
        let seq = st.live.len() as u64;
        st.live.push((
            seq,
            Ev {
                rv,
                path,
                line: json!({"type": "BOOKMARK", "object": {
                    "apiVersion": api_version, "kind": kind,
                    "metadata": {"resourceVersion": rv.to_string()}}}),
            },
        ));
        drop(st);
        self.wake.notify_waiters();
        rv
    }

    /// Compacts history: every open watch gets ERROR 410 and ends, and any
    /// watch from an older version is refused the same way.
    pub fn expire(&self) {
        let mut st = self.state.lock().unwrap();
        st.compacted = st.rv;
        let rv = st.rv;
        st.log.clear();
        for path in [SERVICES, SLICES, NODES] {
            let seq = st.live.len() as u64;
            st.live.push((
                seq,
                Ev {
                    rv,
                    path,
                    line: gone(rv),
                },
            ));
        }
        drop(st);
        self.wake.notify_waiters();
    }

    /// Cuts every open watch connection (no terminating chunk).
    pub fn cut_connections(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn watch_requests(&self, path: &str) -> Vec<Option<String>> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|(p, w, _)| p == path && *w)
            .map(|(_, _, rv)| rv.clone())
            .collect()
    }

    pub fn list_requests(&self, path: &str) -> usize {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|(p, w, _)| p == path && !*w)
            .count()
    }

    /// Sets (or with `None` clears) the fault of `path` lists or watches.
    pub fn fault(&self, path: &'static str, watch: bool, f: Option<Fault>) {
        let mut g = self.faults.lock().unwrap();
        match f {
            Some(f) => g.insert((path, watch), f),
            None => g.remove(&(path, watch)),
        };
    }
}
