//! # The Kubernetes client: timeouts and TCP keepalive
//!
//! kube's own `Client::try_from(Config)` has no TCP keepalive and, by
//! default, no read timeout: a connection whose peer vanished (a node's
//! route to the API server gone, a NAT entry expired, a stalled load
//! balancer) hangs a request forever. This builds the same HTTP stack
//! (rustls, the config's base URI, auth and headers) on a connector with
//! TCP keepalive and connect/read/write timeouts from [`KubeOptions`]. The
//! list/watch loop ([`super::reflect`]) bounds every request on top of this.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt as _;
use kube::{Client, Config};
use tower::ServiceBuilder;

use super::{Error, Result};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Timeouts and bounds of the Kubernetes API source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// TCP keepalive: idle time before the first probe (then every
    /// `keepalive / 3`, 3 probes).
    pub keepalive: Duration,
    /// Longest wait for the next bytes of any response (socket level).
    pub read_timeout: Duration,
    /// Longest time one list page may take, headers to last byte.
    pub list_timeout: Duration,
    /// Items per list page.
    pub page_size: u32,
    /// Server-side watch timeout (`timeoutSeconds`): a quiet watch ends
    /// normally this often, which proves the server alive.
    pub watch_timeout: Duration,
    /// Longest silence on a watch (no event, bookmark or end) before it is
    /// dropped and re-opened.
    pub watch_idle: Duration,
    /// Progress watchdog: a resource with no completed list, event,
    /// bookmark or normally ended watch for this long is *behind*: the
    /// agent reports not-ready and the resource is relisted.
    pub progress: Duration,
    /// Retry delay after an error: doubles from `backoff_min` to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            read_timeout: Duration::from_secs(90),
            list_timeout: Duration::from_secs(60),
            page_size: 500,
            watch_timeout: Duration::from_secs(60),
            watch_idle: Duration::from_secs(75),
            progress: Duration::from_secs(150),
            backoff_min: Duration::from_millis(800),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// A client for `config` with keepalive and the timeouts of `opts`.
pub fn client_from_config(config: Config, opts: &KubeOptions) -> Result<Client> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(opts.keepalive));
    http.set_keepalive_interval(Some(opts.keepalive / 3));
    http.set_keepalive_retries(Some(3));
    http.set_connect_timeout(Some(opts.connect_timeout));
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut conn = hyper_timeout::TimeoutConnector::new(https);
    conn.set_connect_timeout(Some(opts.connect_timeout));
    conn.set_read_timeout(Some(opts.read_timeout));
    conn.set_write_timeout(Some(opts.read_timeout));
    // The read timeout counts from the request, not from when a pooled
    // connection went idle.
    conn.set_reset_reader_on_write(true);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(conn);
    let auth = config
        .auth_layer()
        .map_err(|e| Error::KubeConfig(format!("authentication: {e}")))?;
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(auth)
        .layer(
            config
                .extra_headers_layer()
                .map_err(|e| Error::KubeConfig(format!("headers: {e}")))?,
        )
        .map_err(|e| -> BoxError { Box::new(e) })
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}
