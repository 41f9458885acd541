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

mod kube_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xlb::sources::SourceOptions;

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
