//! The Kubernetes API source under API server faults, against the scripted
//! server of `tests/kube_support`: stalled and broken lists, 5xx for many
//! retry rounds, watches cut mid-object, silent or sending garbage, a large
//! list; plus TCP keepalive on the client's connections. Every wait here is a
//! condition with a generous bound; the source's own bounds are scaled down
//! (seconds instead of minutes) through `KubeOptions`.

mod kube_support;

use std::sync::Arc;
use std::time::Duration;

use kube_support::*;
use xlb::sources::{KubeOptions, Snapshot, SnapshotRx, SourceOptions, SourceStatus};

fn fast() -> KubeOptions {
    KubeOptions {
        connect_timeout: Duration::from_secs(2),
        keepalive: Duration::from_secs(7),
        read_timeout: Duration::from_secs(5),
        list_timeout: Duration::from_millis(800),
        page_size: 500,
        watch_timeout: Duration::from_secs(1),
        watch_idle: Duration::from_millis(1500),
        progress: Duration::from_secs(3),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    }
}

struct Source {
    rx: SnapshotRx,
    status: SourceStatus,
}

fn start(url: &str, kube: KubeOptions) -> Source {
    let status = SourceStatus::default();
    let opts = SourceOptions {
        debounce: Duration::from_millis(20),
        kube: kube.clone(),
        status: status.clone(),
        ..Default::default()
    };
    let client =
        xlb::sources::kube::client_from_config(kube::Config::new(url.parse().unwrap()), &kube)
            .unwrap();
    Source {
        rx: xlb::sources::kube::watch(client, opts),
        status,
    }
}

fn names(s: &Snapshot) -> Vec<String> {
    s.services
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect()
}

/// Waits until the published snapshot's Service names are `want`.
async fn expect_services(rx: &mut SnapshotRx, step: &str, want: &[&str]) {
    let mut last = None;
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                let n = names(&s);
                if n == want {
                    return;
                }
                last = Some(n);
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    assert!(r.is_ok(), "step {step}: wanted {want:?}, last {last:?}");
}

fn current(rx: &SnapshotRx) -> Vec<String> {
    names(rx.borrow().as_ref().expect("a snapshot"))
}

async fn seeded() -> (Arc<FakeApi>, String) {
    let (api, url) = FakeApi::start().await;
    api.put(service("web", "10.96.0.10", 80), true);
    api.put(node("node-a", "10.244.1.0/24"), true);
    (api, url)
}

/// A relist whose response stops halfway (headers and half the body, then
/// nothing): abandoned after the page timeout and retried; meanwhile the
/// last good state stays published and the source reports itself behind;
/// once the server answers again the missed changes arrive and it is not
/// behind any more.
#[tokio::test]
async fn stalled_relist_is_abandoned_retried_and_reported() {
    let (api, url) = seeded().await;
    let mut src = start(&url, fast());
    expect_services(&mut src.rx, "initial", &["web"]).await;
    assert!(src.status.behind().is_none());

    api.fault(SERVICES, false, Some(Fault::Stall));
    api.put(service("db", "10.96.0.20", 5432), false);
    api.expire();
    wait_for(|| api.list_requests(SERVICES) >= 3).await;
    wait_for(|| src.status.behind().is_some()).await;
    let why = src.status.behind().unwrap();
    assert!(why.contains("services"), "{why}");
    assert!(why.contains("no complete page"), "{why}");
    assert_eq!(current(&src.rx), ["web"], "the last good state stays");

    api.fault(SERVICES, false, None);
    expect_services(&mut src.rx, "after the stall", &["db", "web"]).await;
    wait_for(|| src.status.behind().is_none()).await;
}

/// 5xx, garbage and truncated list bodies, each for many retry rounds: the
/// source keeps the last good state, says why it is behind, and recovers.
#[tokio::test]
async fn broken_lists_keep_the_last_state_and_recover() {
    let (api, url) = seeded().await;
    let mut src = start(&url, fast());
    expect_services(&mut src.rx, "initial", &["web"]).await;
    let mut want = vec!["web".to_string()];
    for (i, (fault, says)) in [
        (Fault::Status(500), "500"),
        (Fault::Status(503), "503"),
        (Fault::Garbage, "list failed"),
        (Fault::Truncated, "list failed"),
    ]
    .into_iter()
    .enumerate()
    {
        api.fault(SERVICES, false, Some(fault));
        api.fault(SERVICES, true, Some(fault));
        let name = format!("svc-{i}");
        api.put(service(&name, &format!("10.96.1.{i}"), 80), false);
        let before = api.list_requests(SERVICES);
        api.expire();
        // Many failed rounds, past the progress bound.
        wait_for(|| api.list_requests(SERVICES) >= before + 5).await;
        wait_for(|| src.status.behind().is_some()).await;
        let why = src.status.behind().unwrap();
        assert!(why.contains(says), "{fault:?}: {why}");
        let cur = current(&src.rx);
        assert_eq!(cur, want, "{fault:?}: the last good state stays");

        api.fault(SERVICES, false, None);
        api.fault(SERVICES, true, None);
        want.push(name);
        want.sort();
        let w: Vec<&str> = want.iter().map(String::as_str).collect();
        expect_services(&mut src.rx, &format!("after {fault:?}"), &w).await;
        wait_for(|| src.status.behind().is_none()).await;
    }
}

/// A watch cut in the middle of an object: resumed from the last version,
/// the event is delivered again, no relist.
#[tokio::test]
async fn watch_cut_mid_object_resumes_without_relist() {
    let (api, url) = seeded().await;
    let mut src = start(&url, fast());
    expect_services(&mut src.rx, "initial", &["web"]).await;
    api.fault(SERVICES, true, Some(Fault::CutMidObject));
    api.put(service("db", "10.96.0.20", 5432), true);
    wait_for(|| api.state.lock().unwrap().cut_mid_object >= 2).await;
    assert_eq!(current(&src.rx), ["web"], "half an object is no object");
    api.fault(SERVICES, true, None);
    expect_services(&mut src.rx, "after the cut", &["db", "web"]).await;
    assert_eq!(api.list_requests(SERVICES), 1, "resumed, not relisted");
}

/// A watch that answers and then never sends anything (not even the end at
/// its timeout): dropped after the idle bound and, with no progress, the
/// resource is relisted, which brings what the watch never said.
#[tokio::test]
async fn silent_watch_is_dropped_and_relisted() {
    let (api, url) = seeded().await;
    let mut src = start(&url, fast());
    expect_services(&mut src.rx, "initial", &["web"]).await;
    // Healthy quiet watches end at the server's timeout: that is progress.
    wait_for(|| api.watch_requests(SERVICES).len() >= 3).await;
    assert!(src.status.behind().is_none());

    api.fault(SERVICES, true, Some(Fault::Stall));
    let watches = api.watch_requests(SERVICES).len();
    // The open watch goes; the next one is silent.
    api.cut_connections();
    wait_for(|| api.watch_requests(SERVICES).len() > watches).await;
    let watches = api.watch_requests(SERVICES).len();
    api.put(service("db", "10.96.0.20", 5432), true);
    expect_services(&mut src.rx, "relisted", &["db", "web"]).await;
    assert!(api.list_requests(SERVICES) >= 2, "relisted");
    assert!(api.watch_requests(SERVICES).len() > watches, "re-watched");
}

/// An event line that is not JSON: the source cannot know what it missed,
/// so it relists.
#[tokio::test]
async fn garbage_watch_event_relists() {
    let (api, url) = seeded().await;
    let mut src = start(&url, fast());
    expect_services(&mut src.rx, "initial", &["web"]).await;
    api.fault(SERVICES, true, Some(Fault::Garbage));
    api.put(service("db", "10.96.0.20", 5432), false);
    wait_for(|| api.list_requests(SERVICES) >= 2).await;
    expect_services(&mut src.rx, "relisted", &["db", "web"]).await;
}

/// 20,000 Services in one list, then a relist of them.
#[tokio::test]
async fn twenty_thousand_services() {
    let (api, url) = FakeApi::start().await;
    for i in 0..20_000u32 {
        api.put(
            service(
                &format!("s{i:05}"),
                &format!("10.{}.{}.{}", 96 + i / 65536, (i / 256) % 256, i % 256),
                80,
            ),
            false,
        );
    }
    api.put(node("node-a", "10.244.1.0/24"), true);
    let kube = KubeOptions {
        list_timeout: Duration::from_secs(30),
        ..fast()
    };
    let mut src = start(&url, kube);
    let n = |rx: &mut SnapshotRx| {
        rx.borrow_and_update()
            .as_ref()
            .map_or(0, |s| s.services.len())
    };
    let r = tokio::time::timeout(Duration::from_secs(120), async {
        while n(&mut src.rx) != 20_000 {
            src.rx.changed().await.unwrap();
        }
    })
    .await;
    assert!(r.is_ok(), "20,000 Services listed");
    api.delete(service("s00000", "", 0), false);
    api.expire();
    let r = tokio::time::timeout(Duration::from_secs(120), async {
        while n(&mut src.rx) != 19_999 {
            src.rx.changed().await.unwrap();
        }
    })
    .await;
    assert!(r.is_ok(), "relisted");
}

/// Every connection the client opens to the API server has TCP keepalive
/// with the configured idle time.
#[tokio::test]
async fn client_connections_use_tcp_keepalive() {
    let (_api, url) = seeded().await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let mut src = start(&url, fast());
    expect_services(&mut src.rx, "initial", &["web"]).await;
    let mut checked = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: getpeername/getsockopt on an fd of this process; the
        // buffers are sized for the options read.
        unsafe {
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::getpeername(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) != 0
                || i32::from(sa.sin_family) != libc::AF_INET
                || u16::from_be(sa.sin_port) != port
            {
                continue;
            }
            let get = |level, opt| {
                let mut v: libc::c_int = 0;
                let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                assert_eq!(
                    libc::getsockopt(fd, level, opt, (&mut v as *mut i32).cast(), &mut l),
                    0
                );
                v
            };
            assert_eq!(get(libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1, "fd {fd}");
            assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 7, "fd {fd}");
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "the three watches' connections were found ({checked})"
    );
}
