//! Serving the [`router`](crate::router) on a TCP listener with limits an
//! operator's sidecar needs on an open port: a client that sends its
//! request slowly (slowloris), sends a large body, opens many connections
//! or reads its answer slowly is cut off, and cannot keep Prometheus or
//! the kubelet's probes out.
//!
//! - **Header timeout** ([`HttpLimits::header_timeout`]): a connection
//!   must deliver a request's complete headers within this long of
//!   opening, and of finishing its previous request (an idle keep-alive
//!   connection is closed after it too). hyper's HTTP/1 header read
//!   timer.
//! - **Request timeout** ([`HttpLimits::request_timeout`]): the body and
//!   the answer must be done within this long of the headers (408
//!   otherwise); tower-http's timeout layers.
//! - **Connection lifetime** ([`HttpLimits::max_connection_age`]): a
//!   connection is closed this long after it opened, whatever it is doing
//!   (a client that never reads its answer holds nothing longer).
//! - **Connection limits** ([`HttpLimits::max_connections`],
//!   [`HttpLimits::max_connections_per_ip`]): connections beyond them are
//!   closed as soon as they are accepted.
//! - **Body and header size** ([`HttpLimits::max_body_bytes`],
//!   [`HttpLimits::max_header_bytes`]): no endpoint reads a body; a
//!   larger one is answered 413, larger headers close the connection.
//!
//! HTTP/1.1 only (what Prometheus and probes speak). Every connection cut
//! off is counted in `phimon_http_connections_dropped_total{reason}`.

use crate::http::{HttpState, router};
use crate::metrics::Metrics;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// Limits of the HTTP server. The defaults suit `/metrics`, `/readyz`
/// and `/v1/peers` scraped every few seconds by a handful of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time allowed for a request's headers, counted from the connection
    /// opening or the previous answer (default 5 s). Must exceed the
    /// round trip of the slowest scraper; idle keep-alive connections are
    /// closed after it.
    pub header_timeout: Duration,
    /// Time allowed, once the headers are in, for the body and the answer
    /// (default 10 s): the longest a scrape may take.
    pub request_timeout: Duration,
    /// A connection is closed this long after it opened (default 60 s).
    pub max_connection_age: Duration,
    /// Connections served at once (default 64).
    pub max_connections: usize,
    /// Connections served at once from one IP address (default 16), so
    /// one client cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Largest request body accepted (default 16 KiB); no endpoint reads
    /// one.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers) buffered (default
    /// 16 KiB; hyper's minimum is 8 KiB).
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(60),
            max_connections: 64,
            max_connections_per_ip: 16,
            max_body_bytes: 16 * 1024,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// `reason` label values of `phimon_http_connections_dropped_total`.
pub mod dropped {
    /// `max_connections` connections were open.
    pub const LIMIT: &str = "limit";
    /// `max_connections_per_ip` connections from this IP were open.
    pub const PER_IP_LIMIT: &str = "per_ip_limit";
    /// The client was too slow: headers not in within
    /// `header_timeout`, or the connection outlived `max_connection_age`.
    pub const TIMEOUT: &str = "timeout";
    /// Every reason, to pre-create series.
    pub const ALL: [&str; 3] = [LIMIT, PER_IP_LIMIT, TIMEOUT];
}

/// Open connections per client IP; an entry leaves with its last
/// connection.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its IP until dropped.
struct IpSlot(Arc<PerIp>, IpAddr);

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Serves [`router`] over `state` on `listener` until the task is
/// dropped, one task per connection, with `limits`. Accept errors (out of
/// file descriptors) are logged and retried after a pause, never fatal.
pub async fn serve(listener: TcpListener, state: HttpState, limits: HttpLimits) {
    let metrics = state.metrics.clone();
    let app = router(state)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(limits.request_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = Arc::new(PerIp::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            metrics.http_dropped(dropped::LIMIT);
            continue;
        };
        let Some(ip_slot) = per_ip.take(peer.ip(), limits.max_connections_per_ip.max(1)) else {
            drop(stream);
            metrics.http_dropped(dropped::PER_IP_LIMIT);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _held = (slot, ip_slot);
            let _open = metrics.http_connection_opened();
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.max_connection_age, conn).await {
                Err(_) => metrics.http_dropped(dropped::TIMEOUT),
                Ok(Err(e)) if e.is_timeout() => metrics.http_dropped(dropped::TIMEOUT),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTP connection ended"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// Used by [`serve`] through [`Metrics`].
impl Metrics {
    fn http_dropped(&self, reason: &'static str) {
        self.http_connections_dropped
            .with_label_values(&[reason])
            .inc();
    }

    fn http_connection_opened(&self) -> OpenConnection {
        self.http_connections_open.inc();
        OpenConnection(self.http_connections_open.clone())
    }
}

/// Counts a connection in `phimon_http_connections_open` while it lives.
struct OpenConnection(prometheus::IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
