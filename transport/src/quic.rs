//! quinn configuration built from a [`TransportConfig`] and a node's TLS
//! material.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionId, ConnectionIdGenerator, EndpointConfig, IdleTimeout, VarInt};

use crate::tls::{NodeTls, TlsError};
use crate::{TransportConfig, TransportError};

/// Application error codes this transport closes connections and stops
/// streams with. Peers only log them.
pub(crate) mod codes {
    use quinn::VarInt;
    /// Orderly shutdown of the endpoint.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// A frame exceeded `max_message_bytes`.
    pub const FRAME_TOO_LARGE: VarInt = VarInt::from_u32(2);
    /// A frame was not completed within the message timeout.
    pub const STREAM_TIMEOUT: VarInt = VarInt::from_u32(3);
    /// The peer's authenticated identity is not acceptable.
    pub const REFUSED: VarInt = VarInt::from_u32(4);
    /// `max_connections` authenticated connections are open.
    pub const CONNECTION_LIMIT: VarInt = VarInt::from_u32(7);
    /// After a reload, the peer's certificate no longer verifies against
    /// the new CA or CRL.
    pub const CERTIFICATE_INVALID: VarInt = VarInt::from_u32(8);
}

/// Buffer of received but unread, and of queued unsent, datagrams per
/// connection.
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// Largest datagram payload that always fits one packet: the 1200-byte
/// minimum QUIC path MTU less the short header (1 byte, an 8-byte
/// connection id, up to 4 bytes of packet number), the AEAD tag (16 bytes),
/// the DATAGRAM frame header (3 bytes) and our frame tag (1 byte), with a
/// margin for an ACK frame sharing the packet. MTU discovery is off, so
/// this never shrinks. A sealed fast-path packet adds 34 bytes to it.
pub const MAX_DATAGRAM: usize = 1100;

/// QUIC transport parameters shared by both directions.
pub(crate) fn transport_config(
    cfg: &TransportConfig,
) -> Result<quinn::TransportConfig, TransportError> {
    let mut t = quinn::TransportConfig::default();
    let idle =
        IdleTimeout::try_from(cfg.idle_timeout).map_err(|e| TransportError::InvalidConfig {
            field: "idle_timeout",
            reason: e.to_string(),
        })?;
    t.max_idle_timeout(Some(idle));
    // One unidirectional stream per message, datagrams for heartbeats and
    // probes; no bidirectional streams.
    t.max_concurrent_uni_streams(VarInt::from_u32(cfg.max_incoming_streams));
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    // Datagrams not yet read by the connection's task: a few seconds of
    // heartbeats from one peer; quinn drops the oldest beyond this.
    t.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
    t.datagram_send_buffer_size(DATAGRAM_BUFFER);
    // Heartbeats are far below the 1200-byte minimum path MTU, so MTU
    // probing would only add packets; the usable datagram size then stays
    // fixed (see `MAX_DATAGRAM`).
    t.mtu_discovery_config(None);
    // No keep-alive: heartbeats keep wanted connections up, the rest idle
    // out. No timers of our own.
    t.keep_alive_interval(None);
    if cfg.ack_frequency {
        let mut ack = quinn::AckFrequencyConfig::default();
        // Acknowledge after a handful of packets or the largest delay the
        // peer allows (quinn caps it at max(RTT, 25 ms)): an ACK then often
        // rides on a packet the peer sends anyway.
        ack.ack_eliciting_threshold(VarInt::from_u32(8))
            .max_ack_delay(Some(std::time::Duration::from_millis(500)));
        t.ack_frequency_config(Some(ack));
    }
    let per_stream = cfg.max_message_bytes as u64 + 1;
    let per_conn = per_stream.saturating_mul(u64::from(cfg.max_incoming_streams));
    let window = |n: u64, field| {
        VarInt::from_u64(n).map_err(|_| TransportError::InvalidConfig {
            field,
            reason: "flow-control window out of range".into(),
        })
    };
    t.stream_receive_window(window(per_stream, "max_message_bytes")?);
    t.receive_window(window(per_conn, "max_incoming_streams")?);
    Ok(t)
}

pub(crate) fn server_config(
    tls: &NodeTls,
    transport: &Arc<quinn::TransportConfig>,
    cfg: &TransportConfig,
) -> Result<quinn::ServerConfig, TransportError> {
    let crypto = QuicServerConfig::try_from(tls.server_config()?)
        .map_err(|e| TransportError::Tls(TlsError::Quic(e.to_string())))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport.clone());
    // Handshakes queued for the accept loop (which decides at once);
    // beyond this quinn refuses them before spending any crypto.
    server.max_incoming(cfg.max_handshakes.saturating_mul(2).max(64));
    // What an unaccepted handshake may buffer: a client's first flight.
    server.incoming_buffer_size(16 * 1024);
    server.incoming_buffer_size_total(4 * 1024 * 1024);
    // Nodes have fixed addresses; migration would only let an
    // authenticated peer move its traffic elsewhere.
    server.migration(false);
    Ok(server)
}

pub(crate) fn client_config(
    tls: &NodeTls,
    transport: &Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(tls.client_config()?)
        .map_err(|e| TransportError::Tls(TlsError::Quic(e.to_string())))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport.clone());
    Ok(client)
}

/// Endpoint configuration whose stateless-reset key is derived from the
/// node's private key, so it survives restarts of the same node: when a
/// node restarts on the same address, peers still holding a connection to
/// the old process get a valid stateless reset at their next packet and
/// reconnect at once, instead of losing messages until the idle timeout.
pub(crate) fn endpoint_config(tls: &NodeTls) -> EndpointConfig {
    let derived = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"phimon quic stateless reset v1"),
        tls.key_der(),
    );
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
    let mut ep = EndpointConfig::new(Arc::new(reset_key));

    // quinn's default connection-id generator is keyed per process and
    // silently drops packets for ids it did not issue, so a restarted node
    // would never send the reset above. Random ids accept any id as
    // plausible; resets stay rate-limited by quinn.
    ep.cid_generator(|| Box::new(RandomCids));
    // Never invite peers to clear the fixed bit: a packet with it clear is
    // then never QUIC, which is how the socket tells fast-path packets
    // apart (see `fastpath`).
    ep.grease_quic_bit(false);
    ep
}

struct RandomCids;

/// Length of our connection ids: 8 random bytes make collisions between
/// live connections negligible.
const CID_LEN: usize = 8;

impl ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let bytes: [u8; CID_LEN] = rand::random();
        ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}
