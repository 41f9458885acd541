//! # Node health: kube-proxy's `--healthz-bind-address` endpoint
//!
//! Cloud load balancers (and eTP-Cluster LoadBalancer Services in general)
//! probe `http://NODE:10256/healthz` to tell whether the node's service
//! proxy works. [`ProxyHealth`] keeps the same state as kube-proxy's
//! `ProxyHealthServer`:
//!
//! - a change from the source that is not yet in the maps is *pending*
//!   ([`ProxyHealth::queued_update`]), and a sync that applied it clears it
//!   ([`ProxyHealth::updated`]); so does nothing else. While the source is
//!   behind (its progress watchdog fired) the agent queues an update too.
//! - the proxy is healthy unless a pending update is older than the timeout
//!   (kube-proxy: twice its sync period, 60 s by default): an idle agent
//!   stays healthy, one whose syncs fail or whose source is stuck does not.
//! - `/healthz` also requires the node to be *eligible*: its Node object is
//!   not being deleted and has no `ToBeDeletedByClusterAutoscaler` taint
//!   (draining a node for scale-down takes it out of load balancers first).
//!   `/livez` ignores eligibility.
//!
//! Bodies are kube-proxy's JSON: `{"lastUpdated": "..","currentTime": "..",
//! "nodeEligible": true}` (`/livez` without `nodeEligible`); `lastUpdated`
//! is the current time while healthy, as kube-proxy reports it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Node;
use tokio::net::TcpListener;

use super::http::{self, go_time};
use crate::metrics::Metrics;

/// kube-proxy's health timeout: 2 x its default 30 s sync period.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The Cluster Autoscaler's taint on nodes it is about to delete.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
/// Time between attempts to bind a `--healthz-addr` that is taken.
const REBIND: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct State {
    last_updated: Option<SystemTime>,
    oldest_pending: Option<Instant>,
    node_eligible: bool,
}

/// The service proxy's health, shared by the node and Service health servers.
#[derive(Debug)]
pub struct ProxyHealth {
    timeout: Duration,
    state: Mutex<State>,
    source: std::sync::OnceLock<crate::sources::SourceStatus>,
}

impl ProxyHealth {
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            timeout,
            state: Mutex::new(State {
                last_updated: None,
                oldest_pending: None,
                // Eligible while starting, until the Node says otherwise.
                node_eligible: true,
            }),
            source: std::sync::OnceLock::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A change arrived that the maps do not hold yet (keeps the oldest).
    pub fn queued_update(&self) {
        let mut s = self.lock();
        s.oldest_pending.get_or_insert_with(Instant::now);
    }

    /// The maps hold everything queued so far.
    pub fn updated(&self) {
        let mut s = self.lock();
        s.oldest_pending = None;
        s.last_updated = Some(SystemTime::now());
    }

    /// Counts the source being behind as an update pending since it fell
    /// behind (set once).
    pub fn watch_source(&self, s: crate::sources::SourceStatus) {
        let _ = self.source.set(s);
    }

    /// Eligibility from this node's Node object (`None`: not seen, eligible).
    pub fn sync_node(&self, node: Option<&Node>) {
        let eligible = node.is_none_or(|n| {
            n.metadata.deletion_timestamp.is_none()
                && !n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == TO_BE_DELETED_TAINT))
        });
        self.lock().node_eligible = eligible;
    }

    pub fn node_eligible(&self) -> bool {
        self.lock().node_eligible
    }

    /// The proxy's own health (node eligibility not included).
    pub fn is_healthy(&self) -> bool {
        self.status().0
    }

    fn status(&self) -> (bool, Option<SystemTime>) {
        let s = self.lock();
        let behind = self.source.get().and_then(|s| s.behind_since());
        let late = s
            .oldest_pending
            .into_iter()
            .chain(behind)
            .any(|t| t.elapsed() >= self.timeout);
        (!late, s.last_updated)
    }

    /// Status code and body of `/healthz` (`livez == false`) or `/livez`.
    pub fn answer(&self, livez: bool) -> (&'static str, String) {
        let (healthy, last) = self.status();
        let eligible = self.node_eligible();
        let now = SystemTime::now();
        let ok = healthy && (livez || eligible);
        // Healthy: lastUpdated is "now", as kube-proxy reports it.
        let last = if ok {
            now
        } else {
            last.unwrap_or(SystemTime::UNIX_EPOCH)
        };
        let body = if livez {
            format!(
                r#"{{"lastUpdated": "{}","currentTime": "{}"}}"#,
                go_time(last),
                go_time(now)
            )
        } else {
            format!(
                r#"{{"lastUpdated": "{}","currentTime": "{}", "nodeEligible": {eligible}}}"#,
                go_time(last),
                go_time(now)
            )
        };
        let status = if ok {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        (status, body)
    }
}

/// Serves `/healthz` and `/livez` on `addr` until the task is dropped. A
/// taken address (kube-proxy still running on the node, say) is logged and
/// counted, and binding is retried every 10 s: it never stops the agent.
pub async fn serve(addr: SocketAddr, health: Arc<ProxyHealth>, metrics: Arc<Metrics>) {
    let mut logged = false;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                metrics.count_listen_error("healthz");
                if !logged {
                    tracing::warn!(
                        "node health endpoint: cannot listen on {addr}: {e}; \
                         retrying every {REBIND:?}"
                    );
                    logged = true;
                }
                tokio::time::sleep(REBIND).await;
            }
        }
    };
    tracing::info!(%addr, "node health endpoint serving /healthz and /livez");
    serve_on(listener, health).await
}

/// Serves `/healthz` and `/livez` on a bound listener.
pub async fn serve_on(listener: TcpListener, health: Arc<ProxyHealth>) {
    loop {
        let (mut s, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("node health accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let h = health.clone();
        tokio::spawn(async move {
            let r = tokio::time::timeout(http::REQUEST_TIMEOUT, async {
                let Some(req) = http::read_request(&mut s).await? else {
                    return Ok(());
                };
                let (status, body) = match req.path.as_str() {
                    "/healthz" => h.answer(false),
                    "/livez" => h.answer(true),
                    _ => ("404 Not Found", "404 page not found\n".to_owned()),
                };
                http::respond(&mut s, status, "application/json", &body, req.head_only()).await
            })
            .await;
            if let Ok(Err(e)) = r {
                tracing::debug!("node health connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn pending_updates_turn_unhealthy_only_when_late() {
        // A timeout no test run reaches: pending but not late.
        let h = ProxyHealth::new(Duration::from_secs(3600));
        assert!(h.is_healthy(), "healthy while starting");
        h.queued_update();
        assert!(h.is_healthy());
        assert_eq!(h.answer(false).0, "200 OK");
        // Zero timeout: any pending update is late.
        let h = ProxyHealth::new(Duration::ZERO);
        h.updated();
        assert!(h.is_healthy(), "nothing pending");
        h.queued_update();
        assert!(!h.is_healthy());
        let (st, body) = h.answer(false);
        assert_eq!(st, "503 Service Unavailable");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["nodeEligible"], true);
        assert!(v["lastUpdated"].as_str().unwrap().ends_with(" +0000 UTC"));
        assert_eq!(h.answer(true).0, "503 Service Unavailable");
        h.updated();
        assert!(h.is_healthy());
    }

    #[test]
    fn node_eligibility() {
        let h = ProxyHealth::new(Duration::from_secs(3600));
        let mut n = Node {
            spec: Some(NodeSpec {
                taints: Some(vec![Taint {
                    key: TO_BE_DELETED_TAINT.into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        h.sync_node(Some(&n));
        assert!(!h.node_eligible());
        let (st, body) = h.answer(false);
        assert_eq!(st, "503 Service Unavailable");
        assert!(body.contains(r#""nodeEligible": false"#), "{body}");
        // /livez ignores eligibility.
        assert_eq!(h.answer(true).0, "200 OK");
        n.spec = None;
        h.sync_node(Some(&n));
        assert!(h.node_eligible());
        n.metadata.deletion_timestamp = Some(Time(Default::default()));
        h.sync_node(Some(&n));
        assert!(!h.node_eligible());
        h.sync_node(None);
        assert!(h.node_eligible());
    }
}
