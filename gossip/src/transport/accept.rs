//! Incoming side: accept connections (bounded), authenticate them, read
//! each message stream with a size cap and a deadline, deliver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc::error::TrySendError};

use super::quic::codes;
use super::{Inner, Received, Refusal, classify, identity_of};
use crate::tls::AuthFailure;

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    let slots = Arc::new(Semaphore::new(inner.cfg.max_incoming_connections));
    while let Some(incoming) = inner.endpoint.accept().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Refusing before the handshake costs us no crypto.
            inner.stats.connection_refused();
            tracing::debug!(remote = %incoming.remote_address(), "too many incoming connections: refused");
            incoming.refuse();
            continue;
        };
        inner
            .runtime
            .spawn(serve_connection(inner.clone(), incoming, permit));
    }
}

/// Completes one incoming handshake and reads its messages until it closes.
async fn serve_connection(
    inner: Arc<Inner>,
    incoming: quinn::Incoming,
    _permit: OwnedSemaphorePermit,
) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(inner.cfg.connect_timeout, incoming).await {
        Err(_) => {
            inner.stats.handshake_failure();
            tracing::debug!(%remote, "incoming handshake timed out");
            return;
        }
        Ok(Err(e)) => {
            match classify(&e) {
                Refusal::Ours(reason) => {
                    inner.stats.auth_failure(reason);
                    tracing::warn!(%remote, %reason, error = %e, "refused incoming peer");
                }
                Refusal::Theirs => {
                    inner.stats.handshake_failure();
                    tracing::warn!(%remote, error = %e, "incoming peer refused our certificate");
                }
                Refusal::NotTls => {
                    inner.stats.handshake_failure();
                    tracing::debug!(%remote, error = %e, "incoming handshake failed");
                }
            }
            return;
        }
        Ok(Ok(conn)) => conn,
    };
    let node_id: Arc<str> = match identity_of(&conn, &inner.policy) {
        Ok(id) => id.node_id.into(),
        Err(reason) => {
            inner.stats.auth_failure(AuthFailure::BadCertificate);
            tracing::warn!(%remote, %reason, "refused incoming peer identity");
            conn.close(codes::REFUSED, b"identity");
            return;
        }
    };
    let _open = inner.stats.connection_opened();
    tracing::debug!(%remote, node = %node_id, "accepted connection");
    inner.register(&node_id, &conn);
    read_streams(&inner, &conn, &node_id).await;
    inner.unregister(&node_id, &conn);
}

/// Reads the messages a peer sends on `conn` until it closes. Runs for
/// incoming connections and for the ones we dialled: a node may answer on
/// whichever connection it has with us.
pub(crate) async fn read_streams(inner: &Arc<Inner>, conn: &quinn::Connection, node_id: &Arc<str>) {
    let remote = conn.remote_address();
    // quinn grants at most `max_incoming_streams` concurrent streams, so
    // this spawns at most that many readers per connection.
    while let Ok(stream) = conn.accept_uni().await {
        inner
            .runtime
            .spawn(read_message(inner.clone(), stream, node_id.clone(), remote));
    }
}

/// Reads one message: at most `max_message_bytes` (flow control already
/// stops the peer from sending much more), within the exchange timeout.
async fn read_message(
    inner: Arc<Inner>,
    mut stream: quinn::RecvStream,
    node_id: Arc<str>,
    remote: SocketAddr,
) {
    let max = inner.cfg.max_message_bytes;
    match tokio::time::timeout(inner.cfg.exchange_timeout, stream.read_to_end(max)).await {
        Ok(Ok(payload)) => {
            let len = payload.len();
            let msg = Received {
                node_id: node_id.to_string(),
                remote,
                payload,
                received_at: Instant::now(),
            };
            match inner.inbox.try_send(msg) {
                Ok(()) => inner.stats.received(len),
                // The consumer is behind: dropping keeps memory bounded and
                // the connection flowing; gossip repairs the loss.
                Err(TrySendError::Full(_)) => inner.stats.receive_dropped(),
                Err(TrySendError::Closed(_)) => {}
            }
        }
        Ok(Err(quinn::ReadToEndError::TooLong)) => {
            inner.stats.frame_too_large();
            let _ = stream.stop(codes::FRAME_TOO_LARGE);
            tracing::warn!(%remote, node = %node_id, max, "refused frame over max_message_bytes");
        }
        Ok(Err(quinn::ReadToEndError::Read(e))) => {
            tracing::debug!(%remote, node = %node_id, error = %e, "message stream failed");
        }
        Err(_) => {
            inner.stats.stream_timeout();
            let _ = stream.stop(codes::STREAM_TIMEOUT);
            tracing::debug!(%remote, node = %node_id, "message not completed in time");
        }
    }
}
