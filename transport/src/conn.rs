//! One task per authenticated connection, either direction: it reads the
//! peer's QUIC datagrams (a caller's datagram, or a fast-path control
//! frame) and message streams, and delivers them. Sealed datagrams never
//! pass here: the socket delivers them (see [`crate::socket`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use phimon_gossip::NodeId;
use tokio::sync::mpsc::error::TrySendError;

use crate::fastpath::Frame;
use crate::quic::{MAX_DATAGRAM, codes};
use crate::stats::DatagramDrop;
use crate::transport::{Channel, Inner, Received, Refusal, classify, count_refusal};

/// Reads what the peer sends on `conn` until it closes, then forgets the
/// connection. `dialled` is the address we dialled, for outgoing ones.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    node: NodeId,
    dialled: Option<String>,
) {
    let remote = conn.remote_address();
    loop {
        tokio::select! {
            // Heartbeats first: their arrival time is what phi measures.
            biased;
            d = conn.read_datagram() => match d {
                Ok(datagram) => match Frame::decode(&datagram) {
                    Some(Frame::User(payload)) => {
                        if payload.len() > MAX_DATAGRAM {
                            inner.stats.frame_too_large();
                            continue;
                        }
                        let len = payload.len();
                        if deliver(&inner, &node, remote, Channel::Datagram, payload) {
                            inner.stats.datagram_received(len);
                        }
                    }
                    Some(control) => inner.on_control(&conn, &node, control),
                    None => inner.stats.datagram_dropped(DatagramDrop::Malformed),
                },
                Err(_) => break,
            },
            s = conn.accept_uni() => match s {
                // quinn grants at most `max_incoming_streams` concurrent
                // streams, so at most that many readers run per connection.
                Ok(stream) => {
                    inner.runtime.spawn(read_message(inner.clone(), stream, node.clone(), remote));
                }
                Err(_) => break,
            },
        }
    }
    inner.unregister(&conn);
    let reason = conn.closed().await;
    if let Some(addr) = dialled {
        // In TLS 1.3 the server judges our certificate after our side of
        // the handshake completed, so its refusal arrives as the close
        // reason of a connection that seemed established: count it, and
        // back off instead of dialling again at the next heartbeat.
        if let Refusal::Theirs(_) = classify(&reason) {
            count_refusal(&inner, remote, &reason);
            crate::dial::failed(&inner, &addr, "peer refused our certificate");
        }
    }
    tracing::debug!(%remote, %node, %reason, "connection closed");
}

/// Hands one datagram or message to the consumer; false when dropped.
fn deliver(
    inner: &Inner,
    node: &NodeId,
    remote: SocketAddr,
    channel: Channel,
    payload: Bytes,
) -> bool {
    let r = Received {
        node_id: node.clone(),
        remote,
        channel,
        payload,
        received_at: Instant::now(),
    };
    match inner.inbox.try_send(r) {
        Ok(()) => true,
        // The consumer is behind: dropping keeps memory bounded and the
        // connection flowing; a heartbeat lost here is a late one.
        Err(TrySendError::Full(_)) => {
            inner.stats.receive_dropped();
            false
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

/// Reads one message: at most `max_message_bytes` (flow control already
/// stops the peer from sending much more), within the message timeout.
async fn read_message(
    inner: Arc<Inner>,
    mut stream: quinn::RecvStream,
    node: NodeId,
    remote: SocketAddr,
) {
    let max = inner.cfg.max_message_bytes;
    match tokio::time::timeout(inner.cfg.message_timeout, stream.read_to_end(max)).await {
        Ok(Ok(payload)) => {
            let len = payload.len();
            if deliver(
                &inner,
                &node,
                remote,
                Channel::Message,
                Bytes::from(payload),
            ) {
                inner.stats.message_received(len);
            }
        }
        Ok(Err(quinn::ReadToEndError::TooLong)) => {
            inner.stats.frame_too_large();
            let _ = stream.stop(codes::FRAME_TOO_LARGE);
            tracing::warn!(%remote, %node, max, "refused frame over max_message_bytes");
        }
        Ok(Err(quinn::ReadToEndError::Read(e))) => {
            tracing::debug!(%remote, %node, error = %e, "message stream failed");
        }
        Err(_) => {
            inner.stats.stream_timeout();
            let _ = stream.stop(codes::STREAM_TIMEOUT);
            tracing::debug!(%remote, %node, "message not completed in time");
        }
    }
}
