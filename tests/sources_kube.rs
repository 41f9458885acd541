//! The Kubernetes API source against a scripted API server.
//!
//! There is no kube-apiserver binary here, so this file runs a small one: a
//! plain-HTTP server on 127.0.0.1 that speaks the list/watch protocol the way
//! the real one does — lists carry the collection's resourceVersion, watches
//! stream chunked JSON events (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) from
//! a requested version, a version older than the compaction point gets an
//! ERROR event with a 410 Status, and connections can be cut. Objects are
//! real k8s-openapi objects, serialised. A kube `Client` built from a
//! `Config` pointing at the server drives `xlb::sources::kube::watch`, and
//! each step asserts the published Snapshot.

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

const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const NODES: &str = "/api/v1/nodes";

fn list_kind(path: &str) -> (&'static str, &'static str) {
    match path {
        SERVICES => ("v1", "ServiceList"),
        SLICES => ("discovery.k8s.io/v1", "EndpointSliceList"),
        NODES => ("v1", "NodeList"),
        _ => unreachable!(),
    }
}

fn path_of(obj: &Value) -> &'static str {
    match obj["kind"].as_str().unwrap() {
        "Service" => SERVICES,
        "EndpointSlice" => SLICES,
        "Node" => NODES,
        k => panic!("unexpected kind {k}"),
    }
}

fn key_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap()
    )
}

/// One watch event as the API server sends it.
#[derive(Clone)]
struct Ev {
    rv: u64,
    path: &'static str,
    line: Value,
}

#[derive(Default)]
struct State {
    /// etcd-style global revision, shared by all resources.
    rv: u64,
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Replayable events (ADDED/MODIFIED/DELETED) in order.
    log: Vec<Ev>,
    /// Live-only events (BOOKMARK, ERROR) for open watches, with a sequence.
    live: Vec<(u64, Ev)>,
    /// Watches from a version below this get 410 Gone.
    compacted: u64,
    bookmarks_sent: u32,
    /// Request targets seen (path?query), in order.
    targets: Vec<String>,
    /// Requests seen: (path, watch?, resourceVersion param).
    requests: Vec<(String, bool, Option<String>)>,
}

struct FakeApi {
    state: Mutex<State>,
    wake: Notify,
    /// Bumped to cut every open watch connection.
    cut: watch::Sender<u64>,
}

impl FakeApi {
    async fn start() -> (Arc<Self>, String) {
        let api = Arc::new(FakeApi {
            state: Mutex::new(State::default()),
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

    fn client(url: &str) -> kube::Client {
        let cfg = kube::Config::new(url.parse().unwrap());
        kube::Client::try_from(cfg).unwrap()
    }

    /// Stores an object (new rv); `logged` = whether watchers get the event
    /// (false simulates a change whose event was compacted away).
    fn put(&self, obj: impl serde::Serialize, logged: bool) {
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

    fn delete(&self, kind_obj: impl serde::Serialize, logged: bool) {
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
    fn bookmark(&self, path: &'static str) -> u64 {
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
    fn expire(&self) {
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
    fn cut_connections(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    fn watch_requests(&self, path: &str) -> Vec<Option<String>> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|(p, w, _)| p == path && *w)
            .map(|(_, _, rv)| rv.clone())
            .collect()
    }

    fn list_requests(&self, path: &str) -> usize {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|(p, w, _)| p == path && !*w)
            .count()
    }

    async fn serve(self: Arc<Self>, mut s: TcpStream) {
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
        if is_watch {
            self.watch(s, path, rv_param).await;
        } else {
            let body = {
                let st = self.state.lock().unwrap();
                let (api_version, kind) = list_kind(path);
                let items: Vec<Value> = st
                    .objects
                    .get(path)
                    .map(|m| {
                        m.values()
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
                       "metadata": {"resourceVersion": st.rv.to_string()}, "items": items})
                .to_string()
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    }

    async fn watch(&self, mut s: TcpStream, path: &'static str, rv: Option<String>) {
        let from: u64 = rv.and_then(|r| r.parse().ok()).unwrap_or(0);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
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
                _ = &mut wake => {}
            }
        }
    }
}

fn gone(rv: u64) -> Value {
    json!({"type": "ERROR", "object": {
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "reason": "Expired", "code": 410,
        "message": format!("too old resource version: {rv}")}})
}

async fn send_chunk(s: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
        .await
}

// --- objects -------------------------------------------------------------

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    }
}

fn service(name: &str, ip: &str, port: i32) -> Service {
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

fn slice(name: &str, svc: &str, addrs: &[&str]) -> EndpointSlice {
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

fn node(name: &str, cidr: &str) -> Node {
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
fn digest(s: &Snapshot) -> (Vec<String>, Vec<String>, Vec<String>) {
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

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Waits until the published snapshot has `want`; panics (with the last
/// snapshot seen) if it does not come within a generous bound.
async fn expect(
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
struct Plane(Syncer<FakeMaps>);

impl Plane {
    fn new() -> Self {
        Plane(Syncer::adopt(FakeMaps::small(), SyncOptions::default()).unwrap())
    }

    /// Applies `snap` and checks the frontends (`ip:port`) and active
    /// backends the maps then hold.
    fn check(&mut self, step: &str, snap: &Snapshot, frontends: &[&str], backends: &[&str]) {
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

fn opts() -> SourceOptions {
    SourceOptions {
        debounce: Duration::from_millis(20),
        ..Default::default()
    }
}

#[tokio::test]
async fn list_watch_bookmark_gone_and_reconnect() {
    let (api, url) = FakeApi::start().await;
    api.put(service("web", "10.96.0.10", 80), true);
    api.put(slice("web-1", "web", &["10.244.1.5"]), true);
    api.put(node("node-a", "10.244.1.0/24"), true);
    api.put(node("node-b", "10.244.2.0/24"), true);

    let mut rx = xlb::sources::kube::watch(FakeApi::client(&url), opts());
    let mut plane = Plane::new();

    // 1. Initial list of all three resources.
    let snap = expect(
        &mut rx,
        "initial list",
        (
            &["web=10.96.0.10:80"],
            &["web-1=10.244.1.5"],
            &["node-a=10.244.1.0/24", "node-b=10.244.2.0/24"],
        ),
    )
    .await;
    plane.check(
        "initial list",
        &snap,
        &["10.96.0.10:80"],
        &["10.244.1.5:8080"],
    );
    assert_eq!(api.list_requests(SERVICES), 1);

    // Wait for the watches to be open before streaming events.
    wait_for(|| {
        !api.watch_requests(SERVICES).is_empty()
            && !api.watch_requests(SLICES).is_empty()
            && !api.watch_requests(NODES).is_empty()
    })
    .await;
    // The watch resumes from the list's resourceVersion.
    assert_eq!(api.watch_requests(SERVICES)[0].as_deref(), Some("4"));

    // 2. ADDED, MODIFIED, DELETED over the watch.
    api.put(service("db", "10.96.0.20", 5432), true);
    api.put(slice("web-1", "web", &["10.244.1.5", "10.244.2.7"]), true);
    api.delete(node("node-b", ""), true);
    let snap = expect(
        &mut rx,
        "watch events",
        (
            &["db=10.96.0.20:5432", "web=10.96.0.10:80"],
            &["web-1=10.244.1.5,10.244.2.7"],
            &["node-a=10.244.1.0/24"],
        ),
    )
    .await;
    plane.check(
        "watch events",
        &snap,
        &["10.96.0.10:80", "10.96.0.20:5432"],
        &["10.244.1.5:8080", "10.244.2.7:8080"],
    );
    assert_eq!(api.list_requests(SERVICES), 1, "no relist for plain events");

    // 3. BOOKMARK: other resources move the global revision; a bookmark on
    // services carries it, and the next services watch resumes from there
    // (not from the older version of the last Service event).
    api.put(node("node-c", "10.244.3.0/24"), true);
    api.put(node("node-d", "10.244.4.0/24"), true);
    let bm = api.bookmark(SERVICES);
    let watches_before = api.watch_requests(SERVICES).len();
    let snap = expect(
        &mut rx,
        "nodes before bookmark",
        (
            &["db=10.96.0.20:5432", "web=10.96.0.10:80"],
            &["web-1=10.244.1.5,10.244.2.7"],
            &[
                "node-a=10.244.1.0/24",
                "node-c=10.244.3.0/24",
                "node-d=10.244.4.0/24",
            ],
        ),
    )
    .await;
    plane.check(
        "nodes before bookmark",
        &snap,
        &["10.96.0.10:80", "10.96.0.20:5432"],
        &["10.244.1.5:8080", "10.244.2.7:8080"],
    );
    wait_for(|| api.state.lock().unwrap().bookmarks_sent >= 1).await;
    // A bookmark produces no event to wait for; give the client a moment to
    // read it off the socket before the cut (the check below is exact).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 4. Dropped connection: cut every watch, change things meanwhile; the
    // watcher re-watches from its last version (the bookmark's) and gets the
    // missed events replayed, without relisting.
    api.cut_connections();
    api.put(service("cache", "10.96.0.30", 6379), true);
    api.put(node("node-e", "10.244.5.0/24"), true);
    let snap = expect(
        &mut rx,
        "after reconnect",
        (
            &[
                "cache=10.96.0.30:6379",
                "db=10.96.0.20:5432",
                "web=10.96.0.10:80",
            ],
            &["web-1=10.244.1.5,10.244.2.7"],
            &[
                "node-a=10.244.1.0/24",
                "node-c=10.244.3.0/24",
                "node-d=10.244.4.0/24",
                "node-e=10.244.5.0/24",
            ],
        ),
    )
    .await;
    plane.check(
        "after reconnect",
        &snap,
        &["10.96.0.10:80", "10.96.0.20:5432", "10.96.0.30:6379"],
        &["10.244.1.5:8080", "10.244.2.7:8080"],
    );
    let w = api.watch_requests(SERVICES);
    assert!(w.len() > watches_before, "services were re-watched");
    assert_eq!(
        w[watches_before].as_deref(),
        Some(bm.to_string().as_str()),
        "re-watch resumes from the bookmark's version"
    );
    assert_eq!(
        api.list_requests(SERVICES),
        1,
        "a reconnect does not relist"
    );

    // 5. 410 Gone: history is compacted while changes happen that no watch
    // event will ever report; the watchers must relist and see them.
    api.put(service("web", "10.96.0.11", 8080), false);
    api.delete(slice("web-1", "web", &[]), false);
    api.put(slice("web-2", "web", &["10.244.1.9"]), false);
    api.delete(node("node-a", ""), false);
    api.expire();
    let snap = expect(
        &mut rx,
        "after 410 relist",
        (
            &[
                "cache=10.96.0.30:6379",
                "db=10.96.0.20:5432",
                "web=10.96.0.11:8080",
            ],
            &["web-2=10.244.1.9"],
            &[
                "node-c=10.244.3.0/24",
                "node-d=10.244.4.0/24",
                "node-e=10.244.5.0/24",
            ],
        ),
    )
    .await;
    plane.check(
        "after 410 relist",
        &snap,
        &["10.96.0.11:8080", "10.96.0.20:5432", "10.96.0.30:6379"],
        &["10.244.1.9:8080"],
    );
    assert_eq!(api.list_requests(SERVICES), 2, "410 forced a relist");
    assert_eq!(api.list_requests(SLICES), 2);
    assert_eq!(api.list_requests(NODES), 2);

    // 6. Still watching after the relist.
    api.put(node("node-f", "10.244.6.0/24"), true);
    let snap = expect(
        &mut rx,
        "watch after relist",
        (
            &[
                "cache=10.96.0.30:6379",
                "db=10.96.0.20:5432",
                "web=10.96.0.11:8080",
            ],
            &["web-2=10.244.1.9"],
            &[
                "node-c=10.244.3.0/24",
                "node-d=10.244.4.0/24",
                "node-e=10.244.5.0/24",
                "node-f=10.244.6.0/24",
            ],
        ),
    )
    .await;
    plane.check(
        "watch after relist",
        &snap,
        &["10.96.0.11:8080", "10.96.0.20:5432", "10.96.0.30:6379"],
        &["10.244.1.9:8080"],
    );
}

/// Nothing is published until every resource has been listed: a partial view
/// would make sync delete live state.
#[tokio::test]
async fn no_snapshot_before_all_lists_complete() {
    // A server that answers services and nodes but never endpointslices.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (api, real_url) = FakeApi::start().await;
    api.put(service("web", "10.96.0.10", 80), true);
    let hits = Arc::new(Mutex::new(0u32));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let real = real_url.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.contains("endpointslices") {
                    *h.lock().unwrap() += 1;
                    let _ = s
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                        .await;
                    return;
                }
                // Proxy everything else to the fake API.
                let mut up = TcpStream::connect(real.trim_start_matches("http://"))
                    .await
                    .unwrap();
                up.write_all(&buf[..n]).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    let mut rx = xlb::sources::kube::watch(FakeApi::client(&url), opts());
    // Wait until the slices list has been refused at least twice (after a backoff).
    wait_for(|| *hits.lock().unwrap() >= 2).await;
    assert!(
        rx.borrow_and_update().is_none(),
        "published a snapshot without EndpointSlices"
    );
    assert!(!rx.has_changed().unwrap());
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "condition not reached");
}

/// `--service-selector`: sent to the API server as a labelSelector on the
/// Services list/watch (and applied again on the client, so a server that
/// ignored it would not widen what xlb handles).
#[tokio::test]
async fn service_selector_reaches_the_server_and_filters() {
    let (api, url) = FakeApi::start().await;
    let mut on = service("on", "10.96.0.1", 80);
    on.metadata.labels = Some([("xlb.io/enabled".to_string(), "true".to_string())].into());
    api.put(on, true);
    api.put(service("off", "10.96.0.2", 80), true);
    api.put(node("node-a", "10.244.1.0/24"), true);
    let opts = SourceOptions {
        service_selector: Some("xlb.io/enabled=true".parse().unwrap()),
        ..opts()
    };
    let mut rx = xlb::sources::kube::watch(FakeApi::client(&url), opts);
    expect(
        &mut rx,
        "selected only",
        (&["on=10.96.0.1:80"], &[], &["node-a=10.244.1.0/24"]),
    )
    .await;
    let targets = api.state.lock().unwrap().targets.clone();
    let svc: Vec<&String> = targets.iter().filter(|t| t.starts_with(SERVICES)).collect();
    assert!(!svc.is_empty());
    for t in svc {
        assert!(t.contains("labelSelector=xlb.io%2Fenabled%3Dtrue"), "{t}");
    }
    for t in targets.iter().filter(|t| !t.starts_with(SERVICES)) {
        assert!(!t.contains("labelSelector"), "{t}");
    }
}
