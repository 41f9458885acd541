//! Health checks as kube-proxy serves them: `healthCheckNodePort` listeners
//! per eTP-Local LoadBalancer Service (real sockets on 127.0.0.1), their
//! local-endpoint counts from EndpointSlices, and the node health endpoint.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xlb::agent::health::{self, HealthCheck, ServiceHealth};
use xlb::agent::healthz::{self, ProxyHealth};
use xlb::metrics::Metrics;
use xlb::model::{Model, ModelConfig, Snapshot};

/// Each Service its own ClusterIP and NodePort (the model gives a shared
/// frontend to one Service only).
static NEXT: AtomicU32 = AtomicU32::new(1);

fn lb_service(name: &str, etp: &str, hc_port: Option<i32>, labels: &[(&str, &str)]) -> Service {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            cluster_ip: Some(format!("10.96.0.{n}")),
            external_traffic_policy: Some(etp.into()),
            health_check_node_port: hc_port,
            ports: Some(vec![ServicePort {
                port: 80,
                node_port: Some(30000 + n as i32),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// (address, nodeName, ready) endpoints; `ready: None` leaves it unset.
fn slice(
    name: &str,
    svc: &str,
    with_port: bool,
    eps: &[(&str, &str, Option<bool>)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            labels: Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(a, n, ready)| Endpoint {
                addresses: vec![a.to_string()],
                node_name: Some(n.to_string()),
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    serving: Some(true),
                    terminating: Some(*ready == Some(false)),
                }),
                ..Default::default()
            })
            .collect(),
        ports: with_port.then(|| {
            vec![EndpointPort {
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]
        }),
    }
}

fn snap(services: Vec<Service>, slices: Vec<EndpointSlice>) -> Snapshot {
    Snapshot {
        services: services.into_iter().map(Arc::new).collect(),
        slices: slices.into_iter().map(|s| Arc::new(s.into())).collect(),
        nodes: vec![],
    }
}

/// What the health server serves on `node` for `s`, through the model as
/// the agent computes it.
fn wanted(s: &Snapshot, node: &str) -> Vec<HealthCheck> {
    let cfg = ModelConfig {
        node_name: node.into(),
        ..Default::default()
    };
    health::wanted(Model::from_snapshot(s, cfg).desired())
}

fn hc(name: &str, port: u16, n: usize) -> HealthCheck {
    HealthCheck {
        namespace: "shop".into(),
        name: name.into(),
        port,
        local_endpoints: n,
    }
}

#[test]
fn wanted_counts_local_ready_endpoints_as_kube_proxy() {
    let s = snap(
        vec![
            lb_service("web", "Local", Some(31001), &[]),
            lb_service("drain", "Local", Some(31002), &[]),
            lb_service("cluster", "Cluster", Some(31003), &[]),
            lb_service("noport", "Local", None, &[]),
            lb_service(
                "other",
                "Local",
                Some(31004),
                &[("service.kubernetes.io/service-proxy-name", "x")],
            ),
            lb_service(
                "headless",
                "Local",
                Some(31005),
                &[("service.kubernetes.io/headless", "")],
            ),
            lb_service("portless", "Local", Some(31006), &[]),
        ],
        vec![
            // web: two ready local (one with the condition unset), the same
            // address again in a second slice, a remote one, a not-ready one.
            slice(
                "web-a",
                "web",
                true,
                &[
                    ("10.244.1.5", "node-a", Some(true)),
                    ("10.244.1.6", "node-a", None),
                    ("10.244.2.5", "node-b", Some(true)),
                    ("10.244.1.7", "node-a", Some(false)),
                ],
            ),
            slice(
                "web-b",
                "web",
                true,
                &[("10.244.1.5", "node-a", Some(true))],
            ),
            // drain: only terminating endpoints here, ready ones elsewhere.
            slice(
                "drain-a",
                "drain",
                true,
                &[
                    ("10.244.1.8", "node-a", Some(false)),
                    ("10.244.2.8", "node-b", Some(true)),
                ],
            ),
            slice(
                "cluster-a",
                "cluster",
                true,
                &[("10.244.1.9", "node-a", Some(true))],
            ),
            // portless: its slice has no port, so nothing counts.
            slice(
                "portless-a",
                "portless",
                false,
                &[("10.244.1.10", "node-a", Some(true))],
            ),
        ],
    );
    let mut s_with_plain_service = s.clone();
    let mut plain = lb_service("plain", "Local", Some(31007), &[]);
    plain.spec.as_mut().unwrap().type_ = Some("NodePort".into());
    s_with_plain_service.services.push(Arc::new(plain));

    assert_eq!(
        wanted(&s_with_plain_service, "node-a"),
        vec![
            hc("drain", 31002, 0),
            hc("portless", 31006, 0),
            hc("web", 31001, 2)
        ]
    );
    assert_eq!(
        wanted(&s, "node-b"),
        vec![
            hc("drain", 31002, 1),
            hc("portless", 31006, 0),
            hc("web", 31001, 1)
        ]
    );
}

#[test]
fn wanted_counts_local_endpoints_of_both_families() {
    // A dual-stack Service whose only local endpoints are IPv6 ones.
    let mut svc = lb_service("dual", "Local", Some(31010), &[]);
    let spec = svc.spec.as_mut().unwrap();
    spec.ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
    spec.ip_family_policy = Some("RequireDualStack".into());
    let ip4 = spec.cluster_ip.clone().unwrap();
    spec.cluster_ips = Some(vec![ip4, "fd00:96::10".into()]);
    let v4 = slice(
        "dual-v4",
        "dual",
        true,
        &[("10.244.2.5", "node-b", Some(true))],
    );
    let mut v6 = slice(
        "dual-v6",
        "dual",
        true,
        &[
            ("fd00:244:1::5", "node-a", Some(true)),
            ("fd00:244:1::6", "node-a", None),
            ("fd00:244:1::7", "node-a", Some(false)),
            ("fd00:244:2::5", "node-b", Some(true)),
        ],
    );
    v6.address_type = "IPv6".into();
    let s = snap(vec![svc], vec![v4, v6]);
    assert_eq!(wanted(&s, "node-a"), vec![hc("dual", 31010, 2)]);
    assert_eq!(wanted(&s, "node-b"), vec![hc("dual", 31010, 2)]);
    assert_eq!(wanted(&s, "node-c"), vec![hc("dual", 31010, 0)]);
}

/// Two ports no other test of this process uses (bound, then released).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// GET `path`: (status, body); `None` when nothing listens.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

#[tokio::test]
async fn health_check_ports_open_answer_move_and_close() {
    let (p1, p2) = free_ports();
    let proxy = ProxyHealth::new(Duration::from_secs(3600));
    let metrics = Metrics::new();
    let mut hs = ServiceHealth::new(
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        proxy.clone(),
        metrics.clone(),
    );

    hs.sync(&[hc("web", p1, 2)]).await;
    let (st, body) = get(p1, "/").await.expect("health check is listening");
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"service": {"namespace": "shop", "name": "web"},
                           "localEndpoints": 2, "serviceProxyHealthy": true})
    );
    // Any path, as kube-proxy.
    assert_eq!(get(p1, "/healthz").await.unwrap().0, 200);

    // No local ready endpoint: 503 with the count.
    hs.sync(&[hc("web", p1, 0)]).await;
    let (st, body) = get(p1, "/").await.unwrap();
    assert_eq!(st, 503);
    assert!(body.contains("\"localEndpoints\": 0"), "{body}");

    // Endpoints, but the proxy itself is unhealthy: 503.
    let sick = ProxyHealth::new(Duration::ZERO);
    sick.queued_update();
    let mut hs2 = ServiceHealth::new(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], sick, metrics.clone());
    hs2.sync(&[hc("db", p2, 3)]).await;
    let (st, body) = get(p2, "/").await.unwrap();
    assert_eq!(st, 503);
    assert!(body.contains("\"serviceProxyHealthy\": false"), "{body}");
    hs2.close_all().await;
    assert!(get(p2, "/").await.is_none(), "closed");

    // The port moves to another Service in one change: closed first, so
    // the newcomer can open it.
    hs.sync(&[hc("web", p2, 1), hc("api", p1, 4)]).await;
    let (st, body) = get(p1, "/").await.unwrap();
    assert_eq!(st, 200);
    assert!(body.contains("\"name\": \"api\""), "{body}");
    assert!(get(p2, "/").await.unwrap().1.contains("\"name\": \"web\""));
    assert_eq!(
        hs.serving(),
        BTreeMap::from([("shop/api".to_string(), p1), ("shop/web".to_string(), p2)])
    );

    // The Services go: nothing listens.
    hs.sync(&[]).await;
    assert!(get(p1, "/").await.is_none());
    assert!(get(p2, "/").await.is_none());
    assert_eq!(metrics.listen_errors("health_check_node_port"), 0);
}

#[tokio::test]
async fn a_taken_port_is_a_counted_error_not_a_crash() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().port();
    let (free, _) = free_ports();
    let metrics = Metrics::new();
    let mut hs = ServiceHealth::new(
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ProxyHealth::new(Duration::from_secs(3600)),
        metrics.clone(),
    )
    .with_retry(Duration::ZERO);
    hs.sync(&[hc("web", taken, 1), hc("db", free, 1)]).await;
    assert_eq!(metrics.listen_errors("health_check_node_port"), 1);
    assert!(hs.has_failed());
    // The other Service is not affected.
    assert_eq!(get(free, "/").await.unwrap().0, 200);
    let text = metrics.render();
    assert!(
        text.contains("xlb_health_check_node_ports{state=\"failed\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("xlb_listen_errors_total{server=\"health_check_node_port\"} 1\n"));

    // Retried by the next sync; opens once the port is free.
    hs.sync(&[hc("web", taken, 1), hc("db", free, 1)]).await;
    assert_eq!(metrics.listen_errors("health_check_node_port"), 2);
    drop(blocker);
    hs.sync(&[hc("web", taken, 1), hc("db", free, 1)]).await;
    assert!(!hs.has_failed());
    assert_eq!(get(taken, "/").await.unwrap().0, 200);
    assert!(metrics
        .render()
        .contains("xlb_health_check_node_ports{state=\"serving\"} 2\n"));
    hs.close_all().await;
}

#[tokio::test]
async fn node_health_endpoint_answers_like_kube_proxy() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = ProxyHealth::new(Duration::ZERO);
    tokio::spawn(healthz::serve_on(l, h.clone()));

    let (st, body) = get(port, "/healthz").await.unwrap();
    assert_eq!(st, 200, "healthy while starting");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["nodeEligible"], true);
    assert!(v["lastUpdated"].is_string() && v["currentTime"].is_string());
    let (st, body) = get(port, "/livez").await.unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("nodeEligible").is_none());

    // An update queued and not applied within the timeout (zero here).
    h.queued_update();
    assert_eq!(get(port, "/healthz").await.unwrap().0, 503);
    assert_eq!(get(port, "/livez").await.unwrap().0, 503);
    h.updated();
    assert_eq!(get(port, "/healthz").await.unwrap().0, 200);
    assert_eq!(get(port, "/nope").await.unwrap().0, 404);
}

#[tokio::test]
async fn node_health_endpoint_on_a_taken_address_keeps_trying() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = blocker.local_addr().unwrap();
    let metrics = Metrics::new();
    let task = tokio::spawn(healthz::serve(
        addr,
        ProxyHealth::new(Duration::from_secs(3600)),
        metrics.clone(),
    ));
    for _ in 0..500 {
        if metrics.listen_errors("healthz") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.listen_errors("healthz"), 1);
    assert!(!task.is_finished(), "the server task waits to retry");
    task.abort();
}
