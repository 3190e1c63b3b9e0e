//! A webhook receiver for `generic` pages that verifies their Standard
//! Webhooks signature: the demo's pager and the tests' witness.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// HMAC key of a Standard Webhooks secret: `whsec_<base64>` is decoded,
/// anything else is used as its bytes.
pub fn secret_key(secret: &str) -> Vec<u8> {
    let secret = secret.trim();
    match secret.strip_prefix("whsec_") {
        Some(b64) => B64
            .decode(b64)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// True when one of the space-separated `v1,<base64>` signatures in
/// `signature_header` is the HMAC-SHA256 of `id.timestamp.body` under `key`.
pub fn verify_signature(
    key: &[u8],
    id: &str,
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
) -> bool {
    signature_header.split_whitespace().any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = B64.decode(b64) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

/// One page as received.
#[derive(Debug, Clone)]
pub struct Page {
    /// `webhook-id` header: stable per event, receivers dedupe on it.
    pub webhook_id: String,
    /// `suspected`, `recovered`, `restarted`, ...
    pub event: String,
    /// The node the page is about.
    pub node_id: String,
    /// The node that sent it.
    pub observer: String,
    /// phi reported.
    pub phi: f64,
    /// Whether the signature verified.
    pub signature_valid: bool,
    /// When it arrived.
    pub received_at: Instant,
    /// The whole JSON body.
    pub body: serde_json::Value,
}

#[derive(Clone)]
struct SinkState {
    key: Arc<Vec<u8>>,
    pages: Arc<Mutex<Vec<Page>>>,
}

/// A running receiver. Pages survive [`shutdown`](Self::shutdown) and a
/// [`restart`](Self::restart) on the same address (to test outages).
pub struct WebhookSink {
    addr: SocketAddr,
    state: SinkState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn receive(State(state): State<SinkState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let valid = verify_signature(&state.key, &id, &ts, &body, &sig);
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let s = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let page = Page {
        webhook_id: id,
        event: s("event"),
        node_id: s("node_id"),
        observer: s("observer"),
        phi: json.get("phi").and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
        signature_valid: valid,
        received_at: Instant::now(),
        body: json,
    };
    if let Ok(mut pages) = state.pages.lock() {
        pages.push(page);
    }
    if valid {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

impl WebhookSink {
    /// Starts receiving `POST /hook` on `addr` (port 0 picks one).
    pub async fn start(addr: SocketAddr, secret: &str) -> std::io::Result<WebhookSink> {
        let state = SinkState {
            key: Arc::new(secret_key(secret)),
            pages: Arc::new(Mutex::new(Vec::new())),
        };
        let mut sink = WebhookSink {
            addr,
            state,
            stop: None,
        };
        sink.serve(addr).await?;
        Ok(sink)
    }

    async fn serve(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.addr = listener.local_addr()?;
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.stop = Some(tx);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(())
    }

    /// The URL to configure as the webhook.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections (the receiver is "down").
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Serves again on the same address after [`shutdown`](Self::shutdown).
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.shutdown();
        // The old listener closes asynchronously; retry the bind briefly.
        let mut last = None;
        for _ in 0..50 {
            match self.serve(self.addr).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
    }

    /// Every page received so far.
    pub fn pages(&self) -> Vec<Page> {
        self.state
            .pages
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's reference libraries.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = "1614265330";
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(verify_signature(&key, id, ts, body, sig));
        assert!(verify_signature(
            &key,
            id,
            ts,
            body,
            &format!("v1,bm90IGl0 {sig}")
        ));
        assert!(!verify_signature(&key, id, "1614265331", body, sig));
        assert!(!verify_signature(&key, id, ts, body, "v1,garbage"));
    }
}
