//! # The metrics listener
//!
//! `/metrics`, `/healthz` and `/readyz` over the agent's minimal HTTP/1.1
//! ([`crate::agent::http`]); at most [`super::MAX_SCRAPES`] scrapes render at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::Metrics;
use crate::agent::http::{read_request, respond};

/// Binds the metrics listener (done before anything else so that a port
/// clash fails the agent at start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let m = metrics.clone();
                tokio::spawn(async move {
                    let r = tokio::time::timeout(Duration::from_secs(10), handle(s, m)).await;
                    if let Ok(Err(e)) = r {
                        tracing::debug!("metrics connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut s: TcpStream, m: Arc<Metrics>) -> std::io::Result<()> {
    let Some(req) = read_request(&mut s).await? else {
        return Ok(());
    };
    let head_only = req.head_only();
    if req.method != "GET" && !head_only {
        return respond(
            &mut s,
            "405 Method Not Allowed",
            "text/plain",
            "GET or HEAD\n",
            false,
        )
        .await;
    }
    match req.path.as_str() {
        "/metrics" => {
            // Bounded: waits for a permit within the connection's timeout.
            let Ok(_permit) = m.scrapes.0.acquire().await else {
                return Ok(());
            };
            let m2 = m.clone();
            let body = tokio::task::spawn_blocking(move || m2.render())
                .await
                .unwrap_or_else(|e| format!("# render failed: {e}\n"));
            respond(
                &mut s,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head_only,
            )
            .await
        }
        "/healthz" => respond(&mut s, "200 OK", "text/plain", "ok\n", head_only).await,
        "/readyz" => match m.not_ready() {
            None => respond(&mut s, "200 OK", "text/plain", "ready\n", head_only).await,
            Some(why) => {
                respond(
                    &mut s,
                    "503 Service Unavailable",
                    "text/plain",
                    &format!("{why}\n"),
                    head_only,
                )
                .await
            }
        },
        _ => {
            respond(
                &mut s,
                "404 Not Found",
                "text/plain",
                "try /metrics, /healthz, /readyz\n",
                head_only,
            )
            .await
        }
    }
}
