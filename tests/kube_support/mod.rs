//! A scripted Kubernetes API server for the source tests (see
//! `tests/sources_kube.rs`), its fault modes, and object builders.
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

    pub async fn serve(self: Arc<Self>, mut s: TcpStream) {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        self.state.lock().unwrap().targets.push(target.clone());
        let is_watch = matches!(params.get("watch"), Some(&"true") | Some(&"1"));
        let rv_param = params.get("resourceVersion").map(|s| s.to_string());
        let path: &'static str = match path {
            SERVICES => SERVICES,
            SLICES => SLICES,
            NODES => NODES,
            _ => {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                return;
            }
        };
        self.state
            .lock()
            .unwrap()
            .requests
            .push((path.to_string(), is_watch, rv_param.clone()));
        let fault = self.faults.lock().unwrap().get(&(path, is_watch)).copied();
        if let Some(Fault::Status(code)) = fault {
            let body = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
                "status": "Failure", "reason": "InternalError", "code": code,
                "message": "scripted failure"})
            .to_string();
            let resp = format!(
                "HTTP/1.1 {code} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            return;
        }
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs);
        if is_watch {
            self.watch(s, path, rv_param, fault, timeout).await;
        } else {
            let body = {
                let st = self.state.lock().unwrap();
                let (api_version, kind) = list_kind(path);
                // Pages as the real server cuts them: `limit` items, and a
                // `continue` token (here: the offset) while more remain.
                let from: usize = params
                    .get("continue")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let limit: usize = params
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(usize::MAX);
                let total = st.objects.get(path).map_or(0, |m| m.len());
                let next = from.saturating_add(limit);
                let cont = if next < total {
                    next.to_string()
                } else {
                    String::new()
                };
                let items: Vec<Value> = st
                    .objects
                    .get(path)
                    .map(|m| {
                        m.values()
                            .skip(from)
                            .take(limit)
                            .map(|o| {
                                // Like the real server, list items carry no apiVersion/kind.
                                let mut o = o.clone();
                                o.as_object_mut().unwrap().remove("apiVersion");
                                o.as_object_mut().unwrap().remove("kind");
                                o
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"apiVersion": api_version, "kind": kind,
                       "metadata": {"resourceVersion": st.rv.to_string(), "continue": cont},
                       "items": items})
                .to_string()
            };
            let body = match fault {
                Some(Fault::Garbage) => {
                    "{\"kind\": \"ServiceList\", \"items\": [}}} <html>".to_string()
                }
                _ => body,
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            match fault {
                Some(Fault::Truncated) => {
                    let _ = s.write_all(&body.as_bytes()[..body.len() / 2]).await;
                }
                Some(Fault::Stall) => {
                    let _ = s.write_all(&body.as_bytes()[..body.len() / 2]).await;
                    let _ = s.flush().await;
                    self.hold(&mut s).await;
                }
                _ => {
                    let _ = s.write_all(body.as_bytes()).await;
                }
            }
        }
    }

    /// Keeps the connection open and silent until the client goes or the
    /// connections are cut.
    async fn hold(&self, s: &mut TcpStream) {
        let mut cut = self.cut.subscribe();
        cut.mark_unchanged();
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                _ = cut.changed() => return,
                r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
            }
        }
    }

    /// Sets (or with `None` clears) the fault of `path` lists or watches.
    pub fn fault(&self, path: &'static str, watch: bool, f: Option<Fault>) {
        let mut g = self.faults.lock().unwrap();
        match f {
            Some(f) => g.insert((path, watch), f),
            None => g.remove(&(path, watch)),
        };
    }

    pub async fn watch(
        &self,
        mut s: TcpStream,
        path: &'static str,
        rv: Option<String>,
        fault: Option<Fault>,
        timeout: Option<Duration>,
    ) {
        let from: u64 = rv.and_then(|r| r.parse().ok()).unwrap_or(0);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if fault == Some(Fault::Stall) {
            return self.hold(&mut s).await;
        }
        if fault == Some(Fault::Garbage) {
            let line = "this is { not json\n";
            let _ = s
                .write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
                .await;
        }
        // The server-side timeout (timeoutSeconds): the watch ends normally.
        let end = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
        let mut end = std::pin::pin!(end);
        let mut cut = self.cut.subscribe();
        cut.mark_unchanged();
        let (expired, mut live_seen) = {
            let st = self.state.lock().unwrap();
            (from < st.compacted, st.live.len() as u64)
        };
        if expired {
            let _ = send_chunk(&mut s, &gone(from)).await;
            let _ = s.write_all(b"0\r\n\r\n").await;
            return;
        }
        let mut sent_rv = from;
        loop {
            let wake = self.wake.notified();
            let mut wake = std::pin::pin!(wake);
            wake.as_mut().enable();
            let (events, live) = {
                let st = self.state.lock().unwrap();
                let events: Vec<Ev> = st
                    .log
                    .iter()
                    .filter(|e| e.path == path && e.rv > sent_rv)
                    .cloned()
                    .collect();
                let live: Vec<Ev> = st.live[live_seen as usize..]
                    .iter()
                    .filter(|(_, e)| e.path == path)
                    .map(|(_, e)| e.clone())
                    .collect();
                live_seen = st.live.len() as u64;
                (events, live)
            };
            for e in events {
                sent_rv = e.rv;
                if fault == Some(Fault::CutMidObject) {
                    let mut line = e.line.to_string();
                    line.push('\n');
                    let half = &line[..line.len() / 2];
                    let _ = s
                        .write_all(format!("{:x}\r\n{half}", line.len()).as_bytes())
                        .await;
                    self.state.lock().unwrap().cut_mid_object += 1;
                    return;
                }
                if send_chunk(&mut s, &e.line).await.is_err() {
                    return;
                }
            }
            for e in live {
                let is_error = e.line["type"] == "ERROR";
                if send_chunk(&mut s, &e.line).await.is_err() {
                    return;
                }
                if e.line["type"] == "BOOKMARK" {
                    self.state.lock().unwrap().bookmarks_sent += 1;
                }
                if is_error {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                    return;
                }
            }
            tokio::select! {
                biased;
                _ = cut.changed() => return, // drop the socket mid-stream
                _ = &mut end => {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                    return;
                }
                _ = &mut wake => {}
            }
        }
    }
}

pub fn gone(rv: u64) -> Value {
    json!({"type": "ERROR", "object": {
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "reason": "Expired", "code": 410,
        "message": format!("too old resource version: {rv}")}})
}

pub async fn send_chunk(s: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
        .await
}

// --- objects -------------------------------------------------------------

pub fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    }
}

pub fn service(name: &str, ip: &str, port: i32) -> Service {
    Service {
        metadata: meta(Some("default"), name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn slice(name: &str, svc: &str, addrs: &[&str]) -> EndpointSlice {
    let mut m = meta(Some("default"), name);
    m.labels = Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into());
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: addrs
            .iter()
            .map(|a| Endpoint {
                addresses: vec![a.to_string()],
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

pub fn node(name: &str, cidr: &str) -> Node {
    Node {
        metadata: meta(None, name),
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

// --- assertions ----------------------------------------------------------

/// A comparable digest of a snapshot: names plus the fields the steps change.
pub fn digest(s: &Snapshot) -> (Vec<String>, Vec<String>, Vec<String>) {
    let svcs = s
        .services
        .iter()
        .map(|o| {
            let sp = o.spec.as_ref().unwrap();
            format!(
                "{}={}:{}",
                o.metadata.name.as_ref().unwrap(),
                sp.cluster_ip.as_deref().unwrap_or(""),
                sp.ports.as_ref().unwrap()[0].port
            )
        })
        .collect();
    let slices = s
        .slices
        .iter()
        .map(|o| {
            let addrs: Vec<&str> = o
                .endpoints
                .iter()
                .map(|e| e.addresses[0].as_str())
                .collect();
            format!("{}={}", o.metadata.name.as_ref().unwrap(), addrs.join(","))
        })
        .collect();
    let nodes = s
        .nodes
        .iter()
        .map(|o| {
            format!(
                "{}={}",
                o.metadata.name.as_ref().unwrap(),
                o.spec.as_ref().unwrap().pod_cidr.as_deref().unwrap_or("")
            )
        })
        .collect();
    (svcs, slices, nodes)
}

pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Waits until the published snapshot has `want`; panics (with the last
/// snapshot seen) if it does not come within a generous bound.
pub async fn expect(
    rx: &mut SnapshotRx,
    step: &str,
    want: (&[&str], &[&str], &[&str]),
) -> std::sync::Arc<Snapshot> {
    let want = (strs(want.0), strs(want.1), strs(want.2));
    let mut last = None;
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                let d = digest(&s);
                if d == want {
                    return s;
                }
                last = Some(d);
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    match r {
        Ok(s) => s,
        Err(_) => panic!("step {step}: wanted {want:?}, last snapshot {last:?}"),
    }
}

/// The model and sync fed with each snapshot, on the in-memory map fake.
pub struct Plane(pub Syncer<FakeMaps>);

impl Plane {
    pub fn new() -> Self {
        Plane(Syncer::adopt(FakeMaps::small(), SyncOptions::default()).unwrap())
    }

    /// Applies `snap` and checks the frontends (`ip:port`) and active
    /// backends the maps then hold.
    pub fn check(&mut self, step: &str, snap: &Snapshot, frontends: &[&str], backends: &[&str]) {
        let cfg = ModelConfig {
            node_name: "node-a".into(),
            ..Default::default()
        };
        let rep = self.0.apply(&model::build(snap, &cfg)).unwrap();
        assert!(rep.failed.is_empty(), "{step}: {:?}", rep.failed);
        let m = self.0.maps();
        assert!(m.violations().is_empty(), "{step}: {:?}", m.violations());
        let mut fe: Vec<String> = m
            .services
            .values()
            .map(|(k, _)| format!("{}:{}", k.ip(), k.port()))
            .collect();
        fe.sort();
        let mut be: Vec<String> = m
            .backends
            .iter()
            .filter(|b| b.is_active())
            .map(|b| b.sockaddr().to_string())
            .collect();
        be.sort();
        assert_eq!(fe, strs(frontends), "{step}: frontends");
        assert_eq!(be, strs(backends), "{step}: backends");
    }
}

pub fn opts() -> SourceOptions {
    SourceOptions {
        debounce: Duration::from_millis(20),
        ..Default::default()
    }
}

pub async fn wait_for(mut f: impl FnMut() -> bool) {
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "condition not reached");
}
