//! # Service health checks: `healthCheckNodePort`
//!
//! A LoadBalancer Service with `externalTrafficPolicy: Local` gets a
//! `healthCheckNodePort` from the API server; the cloud load balancer probes
//! it on every node and sends traffic only to nodes that answer 200, which
//! are the nodes with a ready endpoint of the Service. This module is the
//! agent's equivalent of kube-proxy's service health server
//! (`pkg/proxy/healthcheck/service_health.go`):
//!
//! - [`wanted`] lists, from the model's desired state, every such Service
//!   with its port and its *local ready endpoints*: distinct `addr:port` of
//!   endpoints of either family whose `ready` condition is true (unset counts
//!   as true, as Kubernetes documents) and whose `nodeName` is this node,
//!   through a usable port (as kube-proxy's `LocalReadyEndpoints`).
//!   Terminating endpoints do not count, so a node with only terminating
//!   endpoints answers 503 and the load balancer drains it. Services
//!   kube-proxy must leave alone (labels
//!   `service.kubernetes.io/service-proxy-name` and
//!   `service.kubernetes.io/headless`) have no health check.
//! - [`ServiceHealth::sync`] opens a listener per Service on each bind
//!   address (all addresses by default, as kube-proxy without
//!   `--nodeport-addresses`), closes the ones of Services that went or moved
//!   to another port, and updates the counts the open ones answer with.
//! - Each listener answers any request with kube-proxy's JSON body
//!   `{"service": {"namespace": .., "name": ..}, "localEndpoints": N,
//!   "serviceProxyHealthy": true}`: 200 when N > 0 and the proxy is healthy
//!   ([`ProxyHealth`]), else 503.
//! - A port that cannot be bound (another process has it) is an error for
//!   that Service only: logged once, counted in
//!   `xlb_listen_errors_total{server="health_check_node_port"}`, shown in
//!   `xlb_health_check_node_ports{state="failed"}`, and retried by the next
//!   sync at least [`RETRY`] later.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::healthz::ProxyHealth;
use super::http;
use crate::metrics::Metrics;
use crate::model::Desired;

/// Least time between two attempts to open a port that failed.
pub const RETRY: Duration = Duration::from_secs(5);

/// One Service's health check as the node should serve it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    /// Ready endpoints on this node (distinct addresses).
    pub local_endpoints: usize,
}

/// Every health check the model's desired state asks of this node, sorted
/// by Service: [`Desired::health_checks`] holds the port and the count of
/// local ready endpoints (both families) of each such Service.
pub fn wanted(desired: &Desired) -> Vec<HealthCheck> {
    let mut want: Vec<HealthCheck> = desired
        .health_checks()
        .map(|(key, port, n)| {
            let (ns, name) = key.split_once('/').unwrap_or(("default", key));
            HealthCheck {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                port,
                local_endpoints: n as usize,
            }
        })
        .collect();
    want.sort();
    want
}

/// An open health check: its listeners and the count they answer with.
struct Open {
    port: u16,
    count: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

/// A health check whose port could not be opened.
struct Failed {
    port: u16,
    at: Instant,
}

/// The node's health check listeners, one set per Service.
pub struct ServiceHealth {
    bind: Vec<IpAddr>,
    proxy: Arc<ProxyHealth>,
    metrics: Arc<Metrics>,
    open: BTreeMap<(String, String), Open>,
    failed: BTreeMap<(String, String), Failed>,
    retry: Duration,
}

impl ServiceHealth {
    /// Health checks on each of `bind` (kube-proxy's default: `0.0.0.0`).
    pub fn new(bind: Vec<IpAddr>, proxy: Arc<ProxyHealth>, metrics: Arc<Metrics>) -> Self {
        Self {
            bind,
            proxy,
            metrics,
            open: BTreeMap::new(),
            failed: BTreeMap::new(),
            retry: RETRY,
        }
    }

    /// Least time between two attempts to open a failed port (default
    /// [`RETRY`]).
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// Whether some health check failed to open (and waits for a retry).
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Ports currently served, by `namespace/name`.
    pub fn serving(&self) -> BTreeMap<String, u16> {
        self.open
            .iter()
            .map(|((ns, n), o)| (format!("{ns}/{n}"), o.port))
            .collect()
    }

    /// Makes the open listeners exactly `want`: closes the ones no longer
    /// wanted (or wanted on another port) before opening new ones, so a port
    /// handed from one Service to another in one change is reusable.
    pub async fn sync(&mut self, want: &[HealthCheck]) {
        let by_key: BTreeMap<(String, String), &HealthCheck> = want
            .iter()
            .map(|h| ((h.namespace.clone(), h.name.clone()), h))
            .collect();
        let gone: Vec<(String, String)> = self
            .open
            .iter()
            .filter(|(k, o)| by_key.get(*k).is_none_or(|h| h.port != o.port))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(o) = self.open.remove(&k) {
                tracing::info!(service = %format!("{}/{}", k.0, k.1), port = o.port, "closing health check");
                for t in &o.tasks {
                    t.abort();
                }
                // Awaiting the aborted tasks drops their listeners: the port
                // is free when this returns.
                for t in o.tasks {
                    let _ = t.await;
                }
            }
        }
        self.failed
            .retain(|k, f| by_key.get(k).is_some_and(|h| h.port == f.port));
        for (k, h) in &by_key {
            if let Some(o) = self.open.get(k) {
                o.count.store(h.local_endpoints, Ordering::Relaxed);
                continue;
            }
            if self
                .failed
                .get(k)
                .is_some_and(|f| f.at.elapsed() < self.retry)
            {
                continue;
            }
            let count = Arc::new(AtomicUsize::new(h.local_endpoints));
            match self.listen(h, &count) {
                Ok(tasks) => {
                    let retried = self.failed.remove(k).is_some();
                    tracing::info!(
                        service = %format!("{}/{}", h.namespace, h.name),
                        port = h.port,
                        local_endpoints = h.local_endpoints,
                        retried,
                        "opened health check"
                    );
                    self.open.insert(
                        k.clone(),
                        Open {
                            port: h.port,
                            count,
                            tasks,
                        },
                    );
                }
                Err(e) => {
                    self.metrics.count_listen_error("health_check_node_port");
                    if !self.failed.contains_key(k) {
                        tracing::error!(
                            service = %format!("{}/{}", h.namespace, h.name),
                            port = h.port,
                            "cannot open health check port: {e}; retrying with later syncs"
                        );
                    }
                    self.failed.insert(
                        k.clone(),
                        Failed {
                            port: h.port,
                            at: Instant::now(),
                        },
                    );
                }
            }
        }
        self.metrics
            .set_health_check_ports(self.open.len(), self.failed.len());
    }

    /// Binds every address (all or nothing) and starts serving.
    fn listen(
        &self,
        h: &HealthCheck,
        count: &Arc<AtomicUsize>,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        let mut listeners = Vec::with_capacity(self.bind.len());
        for ip in &self.bind {
            let addr = SocketAddr::new(*ip, h.port);
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    TcpListener::from_std(l)
                })
                .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))?;
            listeners.push(l);
        }
        let body_service = serde_json::json!({"namespace": h.namespace, "name": h.name});
        Ok(listeners
            .into_iter()
            .map(|l| {
                tokio::spawn(serve(
                    l,
                    body_service.clone(),
                    count.clone(),
                    self.proxy.clone(),
                ))
            })
            .collect())
    }

    /// Closes every listener.
    pub async fn close_all(&mut self) {
        self.sync(&[]).await;
    }
}

/// kube-proxy's answer for a count and proxy health.
pub fn answer(
    service: &serde_json::Value,
    count: usize,
    proxy_healthy: bool,
) -> (&'static str, String) {
    let body = serde_json::to_string_pretty(&serde_json::json!({
        "service": service,
        "localEndpoints": count,
        "serviceProxyHealthy": proxy_healthy,
    }))
    .unwrap_or_default();
    let status = if count > 0 && proxy_healthy {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (status, body)
}

async fn serve(
    l: TcpListener,
    service: serde_json::Value,
    count: Arc<AtomicUsize>,
    proxy: Arc<ProxyHealth>,
) {
    let service = Arc::new(service);
    loop {
        let (mut s, _) = match l.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("health check accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (svc, count, proxy) = (service.clone(), count.clone(), proxy.clone());
        tokio::spawn(async move {
            let r = tokio::time::timeout(http::REQUEST_TIMEOUT, async {
                let Some(req) = http::read_request(&mut s).await? else {
                    return Ok(());
                };
                let (status, body) =
                    answer(&svc, count.load(Ordering::Relaxed), proxy.is_healthy());
                http::respond(&mut s, status, "application/json", &body, req.head_only()).await
            })
            .await;
            if let Ok(Err(e)) = r {
                tracing::debug!("health check connection: {e}");
            }
        });
    }
}
