//! The datagram fast path: once a QUIC connection with a peer is
//! established, its datagrams travel as plain UDP packets on the same
//! socket, sealed with keys exported from that connection's TLS session.
//! A heartbeat is then one packet: no ACK, no QUIC timer, no QUIC state.
//!
//! # Packet
//!
//! ```text
//! 0      type: 0x01 sealed datagram, 0x02 notice (both have 0xc0 clear)
//! 1      version: 1
//! 2..10  key id (u64, big-endian): which key, chosen by derivation
//! 10..18 counter (u64, big-endian): per key, from 0, never repeats
//! 18..   payload, encrypted (ChaCha20-Poly1305, nonce = 0^32 ‖ counter)
//! ..+16  tag over bytes 0..18 (additional data) and the payload
//! ```
//!
//! A notice is bytes 0..10 alone (type 0x02): "I hold no key with this
//! id", sent back to the source of a well-formed sealed packet whose key
//! id is unknown. It carries no authentication and asks nothing but a
//! QUIC round trip (below).
//!
//! QUIC packets always have the fixed bit (0x40) set: long headers also
//! have 0x80 set, and our endpoints do not offer greasing of the fixed bit
//! (`grease_quic_bit(false)`), so no compliant peer clears it towards us.
//! A first byte with both high bits clear is therefore never QUIC; the
//! socket (our [`quinn::AsyncUdpSocket`], given to
//! [`quinn::Endpoint::new_with_abstract_socket`]) hands such packets here
//! and the rest to quinn — one port, one socket.
//!
//! # Keys
//!
//! Per connection and direction, from the TLS 1.3 exporter
//! ([`quinn::Connection::export_keying_material`]): a 32-byte key under
//! [`KEY_LABEL`] and an 8-byte key id under [`ID_LABEL`], with the context
//! `role ‖ len ‖ sender ‖ len ‖ receiver` (role `c` when the sender is
//! the TLS client, `s` when the server; ids are the certificates' node
//! ids, length-prefixed). Both ends compute the same two keys; each seals
//! with one and opens with the other. A new connection has a new TLS
//! session and so new keys; when a connection ends its receive key is
//! removed, and packets sealed with it are refused as unknown.
//!
//! # Switching over, and back
//!
//! QUIC datagrams carry a one-byte frame tag (0: a caller's datagram,
//! 1: `Ready{key id}`, 2: `Check{key id, sent[, sent to the mailbox]}`,
//! 3: `Unavailable{key id}`, 4: `Mailbox{key id, port: u16}`,
//! 5: `MailboxUnavailable{key id}`, 6: `MailboxOk{key id}`, each id and
//! count a big-endian u64) so that both ends can coordinate without a
//! stream:
//!
//! - a receiver that installed its key sends `Ready{key id}` over QUIC;
//!   until it arrives the sender keeps using QUIC datagrams (so nothing is
//!   lost while the far end finishes its handshake, and a peer that does
//!   not speak the fast path is never sent to on it);
//! - the sender then seals. After its second fast-path packet, and then
//!   every `fast_path_check_interval`, one datagram goes over QUIC with a
//!   `Check{key id, sent}`: this keeps the QUIC connection out of its idle
//!   timeout, lets a restarted peer answer with a stateless reset, and
//!   tells the receiver how many packets it should have seen;
//! - a receiver that got none of at least two packets announced since the
//!   last check (a middlebox dropping non-QUIC UDP), or that holds no such
//!   key, answers `Unavailable{key id}`; the sender then stays on QUIC
//!   datagrams for the rest of the connection, logs it and counts it
//!   (`fast_path_fallbacks`).
//!
//! - a receiver with a heartbeat mailbox ([`crate::mailbox`]) sends
//!   `Mailbox{key id, port}` after `Ready`; the sender then seals
//!   heartbeats to that port. The first two make the next datagram carry
//!   a `Check`, which counts packets sent to the mailbox apart; the
//!   receiver answers `MailboxOk` once any arrived, or
//!   `MailboxUnavailable` when two were sent and none arrived (a
//!   firewall, NAT), after which heartbeats go to the main socket. Until
//!   one of the answers comes, a check goes every second, so a lost check
//!   or answer costs a second, not `fast_path_check_interval`. Later
//!   checks judge the two sockets apart the same way.
//!
//! A notice makes the sender send a `Check` at once (at most one a second
//! per connection): a peer that restarted answers it with a stateless
//! reset and the next datagram dials afresh.
//!
//! # Security
//!
//! What an outsider (no certificate of the cluster) can do:
//!
//! - **Forge or alter packets:** no. Every byte of a sealed packet is
//!   covered by the tag, under a key only the two ends of one TLS session
//!   know. A flipped bit is dropped as `bad_mac`.
//! - **Replay captured packets:** no. The receiver keeps a sliding window
//!   of the last 128 counters per key (as IPsec and WireGuard do); a
//!   counter seen, or older than the window, is dropped as `replay` before
//!   any MAC work. A replay of a packet of an ended connection is
//!   `unknown_key`.
//! - **Spoof source addresses:** gains nothing. The source must be the
//!   connection's address (else `wrong_source`, before any MAC work), and
//!   the tag still has to verify; identity comes from the key, never from
//!   the address.
//! - **Flood garbage:** each packet is dropped in order of cost: length,
//!   type and version (`malformed`), then one hash lookup of the key id
//!   (`unknown_key`), source, replay window, and only then the AEAD
//!   (about a thousand instructions for a heartbeat). To reach the AEAD an attacker needs a live key
//!   id, visible only on the path, and the peer's address. Nothing is
//!   allocated for a dropped packet. Notices answering unknown key ids are
//!   limited to [`NOTICES_PER_SECOND`] in all and are smaller than what
//!   triggers them (no amplification).
//! - **Forge notices:** it can make a sender send one extra QUIC `Check`
//!   per second per connection, if it knows a live key id and can spoof
//!   the peer's address. A notice never closes or changes anything.
//! - **Drop or delay packets (on path):** as with QUIC datagrams:
//!   heartbeats are late (reordering within the window is accepted).
//!   Dropping only fast-path packets leads to the fallback.
//! - **Turn the fast path off:** no. `Ready`, `Check` and `Unavailable`
//!   travel inside the authenticated QUIC connection; only the peer can
//!   send them.
//! - **Keep guessing tags:** after [`INTEGRITY_LIMIT`] forged packets
//!   (2^36, RFC 9001's limit for ChaCha20-Poly1305) a receive key is
//!   retired and its connection's datagrams go over QUIC.
//!
//! The heartbeat mailbox ([`crate::mailbox`]) receives the same packets
//! on a second port and passes them through the same tests; its one new
//! exposure, a queue that can overflow between reads, and how it is
//! bounded, are in its module docs. Which port heartbeats use is decided
//! by frames inside the QUIC connection, as above.
//!
//! What a member can do: speak only as itself. A receive key belongs to
//! one connection, whose peer proved its certificate; the delivered
//! `node_id` is that certificate's, never the packet's. A member cannot
//! derive other pairs' keys (they come from other TLS sessions). It can
//! send as many datagrams as it could over QUIC, each costing us one AEAD
//! open and a slot in the bounded receive queue (`receive_queue_len`;
//! beyond it datagrams are dropped and counted).
//!
//! Key lifetime: as long as the connection (keys do not rotate with QUIC's
//! key updates; reconnecting gives new ones). A key seals at most 2^63
//! packets (then the connection falls back to QUIC datagrams), and
//! counters never repeat, so a nonce is never reused; a receive key
//! accepts at most [`INTEGRITY_LIMIT`] forgeries. A connection closed by a
//! certificate reload (revocation, CA change) takes its keys with it.
//! The payload is encrypted like a QUIC datagram would be, though the
//! fast path does not depend on that: authenticity and freshness are
//! what it is for.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use phimon_gossip::NodeId;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::quic::MAX_DATAGRAM;
use crate::stats::{DatagramDrop, TransportStats};
use crate::transport::{Channel, Received, lock};

/// First byte of a sealed datagram.
pub(crate) const SEALED: u8 = 0x01;
/// First byte of a notice ("no such key here").
pub(crate) const NOTICE: u8 = 0x02;
/// Second byte of every fast-path packet.
pub(crate) const VERSION: u8 = 1;
/// Type, version, key id and counter.
pub(crate) const HEADER_LEN: usize = 18;
/// The AEAD tag.
pub(crate) const TAG_LEN: usize = 16;
/// Type, version and key id.
pub(crate) const NOTICE_LEN: usize = 10;
/// Largest sealed packet: a [`MAX_DATAGRAM`] payload, well within the
/// 1200-byte minimum path MTU that QUIC itself assumes.
pub(crate) const MAX_PACKET: usize = HEADER_LEN + MAX_DATAGRAM + TAG_LEN;

/// TLS exporter label of the 32-byte key of one direction.
pub const KEY_LABEL: &[u8] = b"EXPORTER-phimon-fast-path-key-v1";
/// TLS exporter label of the 8-byte key id of one direction.
pub const ID_LABEL: &[u8] = b"EXPORTER-phimon-fast-path-id-v1";

/// Notices sent per second at most, across all sources: enough for the
/// handful of peers that keep sending to a node that just restarted.
pub const NOTICES_PER_SECOND: u32 = 10;

/// Counters below this may seal; beyond it the sender falls back to QUIC
/// datagrams rather than ever reusing a nonce.
const COUNTER_LIMIT: u64 = 1 << 63;

/// The first check while sealing comes after this many sealed packets, so
/// that a path that drops them is found within a few heartbeats.
const FIRST_CHECK_AFTER: u64 = 2;

/// How often a sender still waiting for `Ready` asks again (the check
/// rides in a QUIC packet it sends anyway).
const PENDING_RETRY: Duration = Duration::from_secs(1);

/// Least time between two checks forced by notices, per connection.
const FORCED_CHECK_GAP: Duration = Duration::from_secs(1);

/// Window of counters remembered per receive key.
const WINDOW: u64 = 128;

/// Packets failing authentication that one receive key tolerates before
/// it is retired: RFC 9001's integrity limit for AEAD_CHACHA20_POLY1305
/// (6.6), which keeps the chance of any forgery succeeding below 2^-57.
pub const INTEGRITY_LIMIT: u64 = 1 << 36;

/// Whether a UDP packet belongs to the fast path (else to quinn).
pub(crate) fn is_fast_path(first: u8) -> bool {
    first & 0xc0 == 0
}

// ---------------------------------------------------------------------
// Frames on QUIC datagrams

/// Tag of a QUIC datagram carrying a caller's payload.
pub(crate) const FRAME_USER: u8 = 0;
const FRAME_READY: u8 = 1;
const FRAME_CHECK: u8 = 2;
const FRAME_UNAVAILABLE: u8 = 3;
const FRAME_MAILBOX: u8 = 4;
const FRAME_MAILBOX_UNAVAILABLE: u8 = 5;
const FRAME_MAILBOX_OK: u8 = 6;

/// What a QUIC datagram carries: its first byte says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A caller's datagram (the rest of the bytes).
    User(Bytes),
    /// "I hold the receive key with this id: seal to me."
    Ready(u64),
    /// "I sealed `sent` packets with this key so far, `mailbox` of them
    /// to your mailbox." (Without a mailbox in use the frame is the
    /// shorter one of senders that know no mailbox.)
    Check {
        /// The sender's key id.
        key_id: u64,
        /// Packets sealed with it.
        sent: u64,
        /// Of those, packets sealed to the mailbox.
        mailbox: u64,
    },
    /// "Do not seal to me with this key": unknown here, or its packets do
    /// not arrive.
    Unavailable(u64),
    /// "Seal heartbeats for this key to my mailbox, on this port" (see
    /// [`crate::mailbox`]); sent after `Ready`.
    Mailbox {
        /// The receiver's key id.
        key_id: u64,
        /// The mailbox's UDP port, on the connection's address.
        port: u16,
    },
    /// "Your packets to my mailbox with this key do not arrive: seal them
    /// to my main socket."
    MailboxUnavailable(u64),
    /// "Your packets to my mailbox with this key arrive."
    MailboxOk(u64),
}

impl Frame {
    /// Reads a received QUIC datagram; `None` when malformed.
    pub(crate) fn decode(d: &Bytes) -> Option<Frame> {
        let (&tag, rest) = d.split_first()?;
        let u64_at = |i: usize| {
            rest.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        match (tag, rest.len()) {
            (FRAME_USER, _) => Some(Frame::User(d.slice(1..))),
            (FRAME_READY, 8) => u64_at(0).map(Frame::Ready),
            (FRAME_CHECK, 16) => Some(Frame::Check {
                key_id: u64_at(0)?,
                sent: u64_at(8)?,
                mailbox: 0,
            }),
            (FRAME_CHECK, 24) => Some(Frame::Check {
                key_id: u64_at(0)?,
                sent: u64_at(8)?,
                mailbox: u64_at(16)?,
            }),
            (FRAME_MAILBOX_UNAVAILABLE, 8) => u64_at(0).map(Frame::MailboxUnavailable),
            (FRAME_MAILBOX_OK, 8) => u64_at(0).map(Frame::MailboxOk),
            (FRAME_UNAVAILABLE, 8) => u64_at(0).map(Frame::Unavailable),
            (FRAME_MAILBOX, 10) => Some(Frame::Mailbox {
                key_id: u64_at(0)?,
                port: u16::from_be_bytes(rest.get(8..10)?.try_into().ok()?),
            }),
            _ => None,
        }
    }

    /// Encodes a control frame (a user frame is built in place by the
    /// sender, see `Inner::tagged`).
    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(25);
        match self {
            Frame::User(p) => {
                b.put_u8(FRAME_USER);
                b.put_slice(p);
            }
            Frame::Ready(id) => {
                b.put_u8(FRAME_READY);
                b.put_u64(*id);
            }
            Frame::Check {
                key_id,
                sent,
                mailbox,
            } => {
                b.put_u8(FRAME_CHECK);
                b.put_u64(*key_id);
                b.put_u64(*sent);
                if *mailbox > 0 {
                    b.put_u64(*mailbox);
                }
            }
            Frame::MailboxUnavailable(id) => {
                b.put_u8(FRAME_MAILBOX_UNAVAILABLE);
                b.put_u64(*id);
            }
            Frame::MailboxOk(id) => {
                b.put_u8(FRAME_MAILBOX_OK);
                b.put_u64(*id);
            }
            Frame::Unavailable(id) => {
                b.put_u8(FRAME_UNAVAILABLE);
                b.put_u64(*id);
            }
            Frame::Mailbox { key_id, port } => {
                b.put_u8(FRAME_MAILBOX);
                b.put_u64(*key_id);
                b.put_u16(*port);
            }
        }
        b.freeze()
    }
}

// ---------------------------------------------------------------------
// Keys

/// The key of one direction of one connection.
pub(crate) struct DirectionKey {
    pub(crate) id: u64,
    key: LessSafeKey,
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionKey")
            .field("id", &format_args!("{:016x}", self.id))
            .finish_non_exhaustive()
    }
}

/// The TLS exporter of a connection could not give keys.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot export fast-path keys from the TLS session")]
pub(crate) struct ExportFailed;

/// The exporter context of the direction `sender → receiver`.
fn context(sender_is_client: bool, sender: &str, receiver: &str) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(5 + sender.len() + receiver.len());
    ctx.push(if sender_is_client { b'c' } else { b's' });
    for id in [sender, receiver] {
        // Node ids are at most 255 bytes (NodeId::MAX_LEN).
        ctx.extend_from_slice(&(id.len() as u16).to_be_bytes());
        ctx.extend_from_slice(id.as_bytes());
    }
    ctx
}

/// Derives the key of one direction with `export(output, label, context)`.
fn direction_key(
    export: &impl Fn(&mut [u8], &[u8], &[u8]) -> Result<(), ExportFailed>,
    sender_is_client: bool,
    sender: &str,
    receiver: &str,
) -> Result<DirectionKey, ExportFailed> {
    let ctx = context(sender_is_client, sender, receiver);
    let mut key = [0u8; 32];
    let mut id = [0u8; 8];
    export(&mut key, KEY_LABEL, &ctx)?;
    export(&mut id, ID_LABEL, &ctx)?;
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| ExportFailed)?;
    Ok(DirectionKey {
        id: u64::from_be_bytes(id),
        key: LessSafeKey::new(unbound),
    })
}

/// Both keys of a connection: `(send, receive)`. `local` and `peer` are
/// the node ids of the two certificates; `we_dialled` says we are the TLS
/// client.
pub(crate) fn derive_keys(
    export: impl Fn(&mut [u8], &[u8], &[u8]) -> Result<(), ExportFailed>,
    local: &str,
    peer: &str,
    we_dialled: bool,
) -> Result<(DirectionKey, DirectionKey), ExportFailed> {
    let tx = direction_key(&export, we_dialled, local, peer)?;
    let rx = direction_key(&export, !we_dialled, peer, local)?;
    Ok((tx, rx))
}

/// [`derive_keys`] from an established connection.
pub(crate) fn connection_keys(
    conn: &quinn::Connection,
    local: &str,
    peer: &str,
    we_dialled: bool,
) -> Result<(DirectionKey, DirectionKey), ExportFailed> {
    derive_keys(
        |out, label, ctx| {
            conn.export_keying_material(out, label, ctx)
                .map_err(|_| ExportFailed)
        },
        local,
        peer,
        we_dialled,
    )
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

// ---------------------------------------------------------------------
// Replay window

/// Which of the last [`WINDOW`] counters were accepted (RFC 6479's idea
/// in one `u128`): bit `i` is counter `top - i`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplayWindow {
    top: Option<u64>,
    seen: u128,
}

impl ReplayWindow {
    /// Whether `c` is new: ahead of the window, or inside it and unseen.
    /// Checked before the MAC, so that replays cost no crypto.
    pub(crate) fn is_fresh(&self, c: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if c > top => true,
            Some(top) => {
                let back = top - c;
                back < WINDOW && self.seen & (1u128 << back) == 0
            }
        }
    }

    /// Records `c` as accepted (after its MAC verified).
    pub(crate) fn accept(&mut self, c: u64) {
        match self.top {
            Some(top) if c <= top => {
                let back = top - c;
                if back < WINDOW {
                    self.seen |= 1u128 << back;
                }
            }
            Some(top) => {
                let shift = c - top;
                self.seen = if shift >= WINDOW {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.top = Some(c);
            }
            None => {
                self.top = Some(c);
                self.seen = 1;
            }
        }
    }
}

// ---------------------------------------------------------------------
// Sending side

/// Heartbeats go to the peer's mailbox, which has not said yet that they
/// arrive: checks come every [`PENDING_RETRY`] until it does (a check or
/// its answer may be lost).
const MAILBOX_UNCONFIRMED: u8 = 0;
/// The mailbox said they arrive: checks as usual.
const MAILBOX_CONFIRMED: u8 = 1;
/// They did not arrive: heartbeats go to the main socket.
const MAILBOX_OFF: u8 = 2;

const PENDING: u8 = 0;
const ACTIVE: u8 = 1;
const DISABLED: u8 = 2;

/// How a connection's datagrams travel now (see [`Transport::datagram_path`](crate::Transport::datagram_path)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatagramPath {
    /// QUIC datagrams, until the peer confirms it holds the fast-path key
    /// (normally one round trip after the handshake).
    Pending,
    /// Sealed UDP packets: one packet per datagram.
    Fast,
    /// QUIC datagrams for the rest of this connection: the fast path is
    /// off in our config, or the peer reported that fast-path packets do
    /// not arrive or that it cannot hold the key (logged at warn).
    Quic,
}

/// Which way one datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Seal and send on the socket, to this address (the peer's main
    /// socket or its mailbox).
    Fast(SocketAddr),
    /// A QUIC datagram; with a `Check` in the same packet when `check`.
    Quic { check: bool },
}

/// The sending half of a connection's fast path.
pub(crate) struct TxPath {
    key: DirectionKey,
    /// Counter of the next sealed packet: packets sealed so far.
    next: AtomicU64,
    state: AtomicU8,
    pub(crate) remote: SocketAddr,
    local_ip: Option<IpAddr>,
    pub(crate) conn: quinn::Connection,
    born: Instant,
    check_interval: Duration,
    /// Milliseconds after `born` of the last check sent.
    last_check_ms: AtomicU64,
    /// The early check is due once this many packets are sealed: after
    /// `Ready`, and again after the first packet sealed to the mailbox;
    /// then `u64::MAX` (done).
    early_check_at: AtomicU64,
    /// The peer's mailbox, once it announced one.
    mailbox: OnceLock<SocketAddr>,
    /// [`MAILBOX_UNCONFIRMED`], [`MAILBOX_CONFIRMED`] or [`MAILBOX_OFF`]
    /// (its packets did not arrive).
    mailbox_state: AtomicU8,
    /// Packets sealed to the mailbox.
    sent_mailbox: AtomicU64,
    /// Milliseconds after `born` of the last check forced by a notice, +1
    /// (0: never).
    last_forced_ms: AtomicU64,
}

impl std::fmt::Debug for TxPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxPath")
            .field("key", &self.key)
            .field("remote", &self.remote)
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

impl TxPath {
    pub(crate) fn new(
        key: DirectionKey,
        conn: &quinn::Connection,
        enabled: bool,
        check_interval: Duration,
    ) -> TxPath {
        TxPath {
            key,
            next: AtomicU64::new(0),
            state: AtomicU8::new(if enabled { PENDING } else { DISABLED }),
            remote: conn.remote_address(),
            local_ip: conn.local_ip(),
            conn: conn.clone(),
            born: Instant::now(),
            check_interval,
            last_check_ms: AtomicU64::new(0),
            early_check_at: AtomicU64::new(FIRST_CHECK_AFTER),
            mailbox: OnceLock::new(),
            mailbox_state: AtomicU8::new(MAILBOX_UNCONFIRMED),
            sent_mailbox: AtomicU64::new(0),
            last_forced_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn key_id(&self) -> u64 {
        self.key.id
    }

    pub(crate) fn local_ip(&self) -> Option<IpAddr> {
        self.local_ip
    }

    pub(crate) fn path(&self) -> DatagramPath {
        match self.state.load(Ordering::Acquire) {
            PENDING => DatagramPath::Pending,
            ACTIVE => DatagramPath::Fast,
            _ => DatagramPath::Quic,
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.born).as_millis()).unwrap_or(u64::MAX)
    }

    /// Claims the next check if the last one was at least `gap` ago.
    fn claim_check(&self, now_ms: u64, gap: Duration) -> bool {
        let last = self.last_check_ms.load(Ordering::Acquire);
        let gap = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(last) >= gap
            && self
                .last_check_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Which way the next datagram goes at `now`; `deferred`: the
    /// receiver may read it late (a heartbeat), so its mailbox will do.
    pub(crate) fn via(&self, now: Instant, deferred: bool) -> Via {
        let now_ms = self.ms(now);
        match self.state.load(Ordering::Acquire) {
            ACTIVE => {
                let early = self.next.load(Ordering::Acquire)
                    >= self.early_check_at.load(Ordering::Acquire);
                let probing = self.mailbox_state.load(Ordering::Acquire) == MAILBOX_UNCONFIRMED
                    && self.sent_mailbox.load(Ordering::Acquire) >= FIRST_CHECK_AFTER;
                let gap = if early {
                    Duration::ZERO
                } else if probing {
                    PENDING_RETRY
                } else {
                    self.check_interval
                };
                if self.claim_check(now_ms, gap) {
                    if early {
                        self.early_check_at.store(u64::MAX, Ordering::Release);
                    }
                    Via::Quic { check: true }
                } else {
                    Via::Fast(self.destination(deferred))
                }
            }
            PENDING => Via::Quic {
                check: self.claim_check(now_ms, PENDING_RETRY),
            },
            _ => Via::Quic { check: false },
        }
    }

    fn destination(&self, deferred: bool) -> SocketAddr {
        match self.live_mailbox() {
            Some(m) if deferred => m,
            _ => self.remote,
        }
    }

    /// The peer's mailbox, unless it has none or ours do not reach it.
    fn live_mailbox(&self) -> Option<SocketAddr> {
        self.mailbox
            .get()
            .copied()
            .filter(|_| self.mailbox_state.load(Ordering::Acquire) != MAILBOX_OFF)
    }

    /// Whether heartbeats go to the peer's mailbox now.
    pub(crate) fn uses_mailbox(&self) -> bool {
        self.path() == DatagramPath::Fast && self.live_mailbox().is_some()
    }

    /// The peer announced its mailbox port (for `key_id`, which must be
    /// ours); returns whether it was new.
    pub(crate) fn set_mailbox(&self, key_id: u64, port: u16) -> bool {
        key_id == self.key.id
            && port != 0
            && self
                .mailbox
                .set(SocketAddr::new(self.remote.ip(), port))
                .is_ok()
    }

    /// Seals `payload` into `buf`; returns the packet length, or `None`
    /// when this key has sealed all it may (the path is then disabled).
    pub(crate) fn seal(&self, payload: &[u8], buf: &mut [u8; MAX_PACKET]) -> Option<usize> {
        let len = HEADER_LEN + payload.len() + TAG_LEN;
        if len > MAX_PACKET {
            return None;
        }
        let counter = self.next.fetch_add(1, Ordering::AcqRel);
        if counter >= COUNTER_LIMIT {
            self.state.store(DISABLED, Ordering::Release);
            return None;
        }
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        head[0] = SEALED;
        head[1] = VERSION;
        head[2..10].copy_from_slice(&self.key.id.to_be_bytes());
        head[10..18].copy_from_slice(&counter.to_be_bytes());
        let (body, tail) = rest.split_at_mut(payload.len());
        body.copy_from_slice(payload);
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*head), body)
            .ok()?;
        tail[..TAG_LEN].copy_from_slice(tag.as_ref());
        Some(len)
    }

    /// The `Check` this sender would send now.
    pub(crate) fn check_frame(&self) -> Bytes {
        Frame::Check {
            key_id: self.key.id,
            sent: self.next.load(Ordering::Acquire).min(COUNTER_LIMIT),
            mailbox: self.sent_mailbox.load(Ordering::Acquire),
        }
        .encode()
    }

    /// Sends a `Check` on the connection now (a QUIC packet the peer must
    /// acknowledge, or answer with a stateless reset if it restarted).
    pub(crate) fn send_check(&self) {
        let _ = self.conn.send_datagram(self.check_frame());
    }

    /// The peer holds our key: start sealing. Returns whether it changed.
    pub(crate) fn ready(&self, key_id: u64) -> bool {
        if key_id != self.key.id {
            return false;
        }
        let changed = self
            .state
            .compare_exchange(PENDING, ACTIVE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if changed {
            // Checks count from here: the first comes after
            // FIRST_CHECK_AFTER sealed packets.
            self.last_check_ms
                .store(self.ms(Instant::now()), Ordering::Release);
        }
        changed
    }

    /// The peer cannot take our sealed packets: QUIC datagrams from now
    /// on. Returns whether it changed.
    pub(crate) fn unavailable(&self, key_id: u64) -> bool {
        key_id == self.key.id && self.state.swap(DISABLED, Ordering::AcqRel) != DISABLED
    }

    /// The peer's mailbox does not get our packets: heartbeats go to its
    /// main socket from now on. Returns whether it changed.
    pub(crate) fn mailbox_unavailable(&self, key_id: u64) -> bool {
        key_id == self.key.id
            && self.mailbox.get().is_some()
            && self.mailbox_state.swap(MAILBOX_OFF, Ordering::AcqRel) != MAILBOX_OFF
    }

    /// The peer's mailbox gets our packets: checks at the usual pace.
    pub(crate) fn mailbox_ok(&self, key_id: u64) -> bool {
        key_id == self.key.id
            && self
                .mailbox_state
                .compare_exchange(
                    MAILBOX_UNCONFIRMED,
                    MAILBOX_CONFIRMED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// A packet was just sealed to `to`. Packets to the mailbox are
    /// counted for checks, and the first makes the next check come early,
    /// after a second one: a mailbox that gets nothing is found within a
    /// few heartbeats.
    pub(crate) fn sealed_to(&self, to: SocketAddr) {
        if self.mailbox.get() != Some(&to) {
            return;
        }
        if self.sent_mailbox.fetch_add(1, Ordering::AcqRel) == 0 {
            let sealed = self.next.load(Ordering::Acquire);
            self.early_check_at.store(
                sealed.saturating_add(FIRST_CHECK_AFTER - 1),
                Ordering::Release,
            );
        }
    }

    /// A notice named our key: check at once, unless one was forced less
    /// than [`FORCED_CHECK_GAP`] ago. Returns whether to.
    fn force_check(&self, now: Instant) -> bool {
        let now_ms = self.ms(now).saturating_add(1);
        let last = self.last_forced_ms.load(Ordering::Acquire);
        let gap = u64::try_from(FORCED_CHECK_GAP.as_millis()).unwrap_or(u64::MAX);
        (last == 0 || now_ms.saturating_sub(last) >= gap)
            && self
                .last_forced_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

// ---------------------------------------------------------------------
// Receiving side

/// The receiving half of a connection's fast path.
#[derive(Debug)]
pub(crate) struct RxKey {
    key: DirectionKey,
    node_id: NodeId,
    remote: SocketAddr,
    conn_id: usize,
    window: ReplayWindow,
    /// Packets accepted.
    received: u64,
    /// Of those, packets read from the mailbox.
    received_mailbox: u64,
    /// Packets whose tag did not verify.
    forgeries: u64,
    /// What the last check said and what had arrived then.
    at_check: Counts,
}

impl RxKey {
    pub(crate) fn new(
        key: DirectionKey,
        node_id: NodeId,
        remote: SocketAddr,
        conn_id: usize,
    ) -> RxKey {
        RxKey {
            key,
            node_id,
            remote,
            conn_id,
            window: ReplayWindow::default(),
            received: 0,
            received_mailbox: 0,
            forgeries: 0,
            at_check: Counts::default(),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.key.id
    }
}

/// Sealed (per a check) and accepted packets of one receive key, on both
/// sockets.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    sent: u64,
    sent_mailbox: u64,
    received: u64,
    received_mailbox: u64,
}

/// A token bucket for notices.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(NOTICES_PER_SECOND);
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Hashes a key id by itself. Ids are PRF output, so uniform, and only
/// our own derivations insert them (an attacker only chooses ids to look
/// up, which cannot lengthen a bucket): SipHash would buy nothing for
/// its cost on every packet.
#[derive(Default)]
pub(crate) struct KeyIdHasher(u64);

impl Hasher for KeyIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyIdHasher>>;

/// Size of one receive arena chunk: delivered payloads are slices of it,
/// so a heartbeat costs an allocation only every few hundred packets.
const ARENA_CHUNK: usize = 16 * 1024;

struct RxState {
    keys: KeyMap<RxKey>,
    arena: BytesMut,
    notices: Bucket,
    /// Taken at shutdown, so that the inbox ends with the transport.
    inbox: Option<mpsc::Sender<Received>>,
}

/// What the socket should do after handing a packet to the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Nothing.
    None,
    /// Send this notice back to the packet's source.
    Notice([u8; NOTICE_LEN]),
}

/// The fast path's shared state: receive keys (used by the socket for
/// every fast-path packet) and an index of send keys (for notices).
pub(crate) struct FastPath {
    rx: Mutex<RxState>,
    /// Send keys by id. Weak: the connection table owns them, and a
    /// `TxPath` holds its connection, which holds the socket, which holds
    /// this.
    tx: Mutex<KeyMap<Weak<TxPath>>>,
    stats: Arc<TransportStats>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("rx_keys", &lock(&self.rx).keys.len())
            .finish_non_exhaustive()
    }
}

impl FastPath {
    pub(crate) fn new(
        stats: Arc<TransportStats>,
        inbox: mpsc::Sender<Received>,
        runtime: tokio::runtime::Handle,
    ) -> FastPath {
        FastPath {
            rx: Mutex::new(RxState {
                keys: KeyMap::default(),
                arena: BytesMut::new(),
                notices: Bucket {
                    tokens: f64::from(NOTICES_PER_SECOND),
                    at: Instant::now(),
                },
                inbox: Some(inbox),
            }),
            tx: Mutex::new(KeyMap::default()),
            stats,
            runtime,
        }
    }

    /// Stops delivering (shutdown).
    pub(crate) fn close(&self) {
        lock(&self.rx).inbox = None;
    }

    /// Installs a receive key; false if its id is taken (a 2^-64 chance
    /// per pair of live keys; the peer then hears `Unavailable` at its
    /// first check and stays on QUIC datagrams).
    pub(crate) fn install(&self, key: RxKey) -> bool {
        let mut rx = lock(&self.rx);
        if rx.keys.contains_key(&key.id()) {
            return false;
        }
        rx.keys.insert(key.id(), key);
        true
    }

    /// Indexes a send key so that notices naming it find it.
    pub(crate) fn index(&self, tx: &Arc<TxPath>) {
        lock(&self.tx).insert(tx.key_id(), Arc::downgrade(tx));
    }

    /// Forgets the keys of a connection that ended.
    pub(crate) fn remove(&self, conn_id: usize, rx_id: Option<u64>, tx_id: Option<u64>) {
        if let Some(id) = rx_id {
            let mut rx = lock(&self.rx);
            if rx.keys.get(&id).is_some_and(|k| k.conn_id == conn_id) {
                rx.keys.remove(&id);
            }
        }
        if let Some(id) = tx_id {
            lock(&self.tx).remove(&id);
        }
    }

    /// Handles one fast-path packet (first byte with 0xc0 clear) from
    /// `src`: delivers it, or counts why not. Never panics: every length
    /// is checked before it is used.
    pub(crate) fn on_packet(&self, pkt: &mut [u8], src: SocketAddr, now: Instant) -> Reply {
        self.on_packet_from(pkt, src, now, false)
    }

    /// [`FastPath::on_packet`], for a packet read from the main socket or
    /// (`mailbox`) the mailbox, which checks count apart.
    pub(crate) fn on_packet_from(
        &self,
        pkt: &mut [u8],
        src: SocketAddr,
        now: Instant,
        mailbox: bool,
    ) -> Reply {
        match pkt.first() {
            Some(&SEALED) => self.open(pkt, src, now, mailbox),
            Some(&NOTICE) => {
                self.on_notice(pkt, src, now);
                Reply::None
            }
            _ => {
                self.stats.datagram_dropped(DatagramDrop::Malformed);
                Reply::None
            }
        }
    }

    fn open(&self, pkt: &mut [u8], src: SocketAddr, now: Instant, mailbox: bool) -> Reply {
        if pkt.len() < HEADER_LEN + TAG_LEN || pkt.len() > MAX_PACKET || pkt[1] != VERSION {
            self.stats.datagram_dropped(DatagramDrop::Malformed);
            return Reply::None;
        }
        let key_id = be_u64(&pkt[2..10]);
        let counter = be_u64(&pkt[10..18]);
        let mut rx = lock(&self.rx);
        let rx = &mut *rx;
        let Some(k) = rx.keys.get_mut(&key_id) else {
            self.stats.datagram_dropped(DatagramDrop::UnknownKey);
            if rx.notices.take(now) {
                let mut notice = [0u8; NOTICE_LEN];
                notice[0] = NOTICE;
                notice[1] = VERSION;
                notice[2..10].copy_from_slice(&pkt[2..10]);
                return Reply::Notice(notice);
            }
            return Reply::None;
        };
        if k.remote != src {
            self.stats.datagram_dropped(DatagramDrop::WrongSource);
            return Reply::None;
        }
        if !k.window.is_fresh(counter) {
            self.stats.datagram_dropped(DatagramDrop::Replay);
            return Reply::None;
        }
        let (head, sealed) = pkt.split_at_mut(HEADER_LEN);
        let Ok(plain) = k
            .key
            .key
            .open_in_place(nonce(counter), Aad::from(&*head), sealed)
        else {
            self.stats.datagram_dropped(DatagramDrop::BadMac);
            k.forgeries += 1;
            if k.forgeries >= INTEGRITY_LIMIT {
                tracing::warn!(
                    node = %k.node_id,
                    remote = %k.remote,
                    "fast-path key retired after too many forged packets: \
                     this connection's datagrams move to QUIC at its next check"
                );
                rx.keys.remove(&key_id);
            }
            return Reply::None;
        };
        k.window.accept(counter);
        k.received += 1;
        k.received_mailbox += u64::from(mailbox);
        let node_id = k.node_id.clone();
        let len = plain.len();
        if rx.arena.capacity() - rx.arena.len() < len {
            rx.arena = BytesMut::with_capacity(ARENA_CHUNK);
        }
        rx.arena.extend_from_slice(plain);
        let payload = rx.arena.split().freeze();
        let Some(inbox) = &rx.inbox else {
            return Reply::None;
        };
        let r = Received {
            node_id,
            remote: src,
            channel: Channel::Datagram,
            payload,
            received_at: now,
        };
        match inbox.try_send(r) {
            Ok(()) => {
                self.stats.datagram_received(len);
                self.stats.fast_path_received();
            }
            // As for QUIC datagrams: a consumer that is behind loses
            // heartbeats rather than stalling the socket.
            Err(TrySendError::Full(_)) => self.stats.receive_dropped(),
            Err(TrySendError::Closed(_)) => {}
        }
        Reply::None
    }

    fn on_notice(&self, pkt: &[u8], src: SocketAddr, now: Instant) {
        if pkt.len() != NOTICE_LEN || pkt[1] != VERSION {
            self.stats.datagram_dropped(DatagramDrop::Malformed);
            return;
        }
        let key_id = be_u64(&pkt[2..10]);
        let tx = lock(&self.tx).get(&key_id).and_then(Weak::upgrade);
        let Some(tx) = tx else {
            self.stats.datagram_dropped(DatagramDrop::UnknownKey);
            return;
        };
        if tx.remote != src {
            self.stats.datagram_dropped(DatagramDrop::WrongSource);
            return;
        }
        self.stats.notice_received();
        if tx.force_check(now) {
            tracing::debug!(remote = %src, "peer does not know our fast-path key: checking the connection");
            // Not from here: this runs inside quinn's endpoint driver.
            self.runtime.spawn(async move { tx.send_check() });
        }
    }

    /// Answers a peer's `Check` on connection `conn_id`: `Some(frame)` to
    /// send back.
    /// `sent` packets sealed in all, `sent_mailbox` of them to the mailbox.
    /// The two sockets are judged apart: a firewall may open one and not
    /// the other.
    pub(crate) fn on_check(
        &self,
        conn_id: usize,
        key_id: u64,
        sent: u64,
        sent_mailbox: u64,
    ) -> Option<Frame> {
        let mut rx = lock(&self.rx);
        let Some(k) = rx.keys.get_mut(&key_id).filter(|k| k.conn_id == conn_id) else {
            return Some(Frame::Unavailable(key_id));
        };
        let before = k.at_check;
        let now = Counts {
            sent,
            sent_mailbox: sent_mailbox.min(sent),
            received: k.received,
            received_mailbox: k.received_mailbox,
        };
        k.at_check = now;
        if sent == 0 {
            // The sender is still waiting: our `Ready` was lost.
            return Some(Frame::Ready(key_id));
        }
        let main = |c: &Counts| {
            (
                c.sent.saturating_sub(c.sent_mailbox),
                c.received.saturating_sub(c.received_mailbox),
            )
        };
        let ((sent_main, got_main), (sent_main_before, got_main_before)) =
            (main(&now), main(&before));
        let mailbox_silent = now.sent_mailbox.saturating_sub(before.sent_mailbox)
            >= FIRST_CHECK_AFTER
            && now.received_mailbox == before.received_mailbox;
        if sent_main.saturating_sub(sent_main_before) >= FIRST_CHECK_AFTER
            && got_main == got_main_before
        {
            tracing::warn!(
                node = %k.node_id,
                remote = %k.remote,
                announced = sent_main - sent_main_before,
                "none of the peer's fast-path packets arrived since its last check \
                 (a firewall or middlebox dropping non-QUIC UDP?): it falls back to \
                 QUIC datagrams on this connection"
            );
            return Some(Frame::Unavailable(key_id));
        }
        // The first packets to the mailbox decide, counted from the start:
        // checks come every second until one of these answers arrives.
        let never_arrived = now.sent_mailbox >= FIRST_CHECK_AFTER && now.received_mailbox == 0;
        if now.sent_mailbox > 0 && now.received_mailbox > 0 && !mailbox_silent {
            return Some(Frame::MailboxOk(key_id));
        }
        if mailbox_silent || never_arrived {
            tracing::warn!(
                node = %k.node_id,
                remote = %k.remote,
                sent = now.sent_mailbox,
                arrived = now.received_mailbox,
                "none of the peer's heartbeats to our mailbox arrived since its last \
                 check (a firewall that opens only the main port, or NAT?): it seals \
                 them to the main port on this connection"
            );
            return Some(Frame::MailboxUnavailable(key_id));
        }
        None
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rand::{Rng, SeedableRng};

    /// An exporter stand-in: HMAC of the label and context under a
    /// session secret, so both "ends" of a session agree.
    fn exporter(
        secret: &'static [u8],
    ) -> impl Fn(&mut [u8], &[u8], &[u8]) -> Result<(), ExportFailed> {
        move |out, label, ctx| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            let mut msg = label.to_vec();
            msg.extend_from_slice(ctx);
            msg.push(out.len() as u8);
            let tag = ring::hmac::sign(&key, &msg);
            out.copy_from_slice(&tag.as_ref()[..out.len()]);
            Ok(())
        }
    }

    fn rx_key(key: DirectionKey, remote: SocketAddr) -> RxKey {
        RxKey::new(key, NodeId::from("node-a"), remote, 1)
    }

    /// A's send key, and B's matching receive key installed in `fp`
    /// (its id), for packets from `src`.
    fn installed_pair(fp: &FastPath) -> (DirectionKey, u64, SocketAddr) {
        let s = exporter(b"session");
        let (a_tx, _) = derive_keys(&s, "node-a", "node-b", true).unwrap();
        let (_, b_rx) = derive_keys(&s, "node-b", "node-a", false).unwrap();
        let id = b_rx.id;
        let src: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert!(fp.install(rx_key(b_rx, src)));
        (a_tx, id, src)
    }

    /// Seals like `TxPath::seal`, without a connection.
    fn seal(key: &DirectionKey, counter: u64, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![SEALED, VERSION];
        p.extend_from_slice(&key.id.to_be_bytes());
        p.extend_from_slice(&counter.to_be_bytes());
        let mut body = payload.to_vec();
        let tag = key
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&p[..]), &mut body)
            .unwrap();
        p.extend_from_slice(&body);
        p.extend_from_slice(tag.as_ref());
        p
    }

    fn fast_path() -> (FastPath, mpsc::Receiver<Received>, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel(64);
        let fp = FastPath::new(Arc::new(TransportStats::default()), tx, rt.handle().clone());
        (fp, rx, rt)
    }

    #[test]
    fn the_two_ends_derive_matching_keys_and_the_directions_differ() {
        let s = exporter(b"session one");
        let (a_tx, a_rx) = derive_keys(&s, "node-a", "node-b", true).unwrap();
        let (b_tx, b_rx) = derive_keys(&s, "node-b", "node-a", false).unwrap();
        assert_eq!(a_tx.id, b_rx.id);
        assert_eq!(b_tx.id, a_rx.id);
        assert_ne!(a_tx.id, a_rx.id);
        // What A seals, B opens; the reverse key does not.
        let pkt = seal(&a_tx, 0, b"beat");
        let mut body = pkt[HEADER_LEN..].to_vec();
        b_rx.key
            .open_in_place(nonce(0), Aad::from(&pkt[..HEADER_LEN]), &mut body)
            .unwrap();
        let mut body = pkt[HEADER_LEN..].to_vec();
        assert!(
            b_tx.key
                .open_in_place(nonce(0), Aad::from(&pkt[..HEADER_LEN]), &mut body)
                .is_err()
        );
        // Another session, other keys.
        let (c_tx, _) = derive_keys(exporter(b"session two"), "node-a", "node-b", true).unwrap();
        assert_ne!(c_tx.id, a_tx.id);
        // Even a node talking to itself gets two directions.
        let (self_tx, self_rx) = derive_keys(&s, "node-a", "node-a", true).unwrap();
        assert_ne!(self_tx.id, self_rx.id);
        // Ids are length-prefixed: "ab"+"c" is not "a"+"bc".
        assert_ne!(context(true, "ab", "c"), context(true, "a", "bc"));
    }

    #[test]
    fn the_replay_window_accepts_each_counter_once_and_refuses_old_ones() {
        let mut w = ReplayWindow::default();
        for c in [5, 3, 4, 10, 6, 200, 199, 73] {
            assert!(w.is_fresh(c), "{c}");
            w.accept(c);
            assert!(!w.is_fresh(c), "{c} again");
        }
        // 72 = 200 - 128 is outside the window; 80 is inside and unseen.
        assert!(!w.is_fresh(72));
        assert!(w.is_fresh(80));
        assert!(!w.is_fresh(3));
        // A jump beyond the window forgets it entirely.
        w.accept(10_000);
        assert!(!w.is_fresh(200));
        assert!(w.is_fresh(9_999));
        assert!(w.is_fresh(u64::MAX));
    }

    #[test]
    fn frames_round_trip_and_malformed_ones_are_none() {
        for f in [
            Frame::Ready(7),
            Frame::Mailbox {
                key_id: 9,
                port: 7801,
            },
            Frame::Check {
                key_id: u64::MAX,
                sent: 3,
                mailbox: 0,
            },
            Frame::Check {
                key_id: 1,
                sent: 9,
                mailbox: 4,
            },
            Frame::MailboxUnavailable(5),
            Frame::MailboxOk(6),
            Frame::Unavailable(0),
            Frame::User(Bytes::from_static(b"beat")),
            Frame::User(Bytes::new()),
        ] {
            assert_eq!(Frame::decode(&f.encode()), Some(f));
        }
        for bad in [&[][..], &[1, 0], &[2; 9], &[3; 10], &[9, 1, 2]] {
            assert_eq!(Frame::decode(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn sealed_packets_are_delivered_once_and_every_tampering_is_counted() {
        let (fp, mut inbox, _rt) = fast_path();
        let s = exporter(b"session");
        let (a_tx, _) = derive_keys(&s, "node-a", "node-b", true).unwrap();
        let (_, b_rx) = derive_keys(&s, "node-b", "node-a", false).unwrap();
        let src: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert!(fp.install(rx_key(b_rx, src)));
        let now = Instant::now();

        let good = seal(&a_tx, 0, b"beat-0");
        assert_eq!(fp.on_packet(&mut good.clone(), src, now), Reply::None);
        let r = inbox.try_recv().unwrap();
        assert_eq!(
            (&r.payload[..], r.node_id.as_str()),
            (&b"beat-0"[..], "node-a")
        );
        assert_eq!((r.remote, r.received_at), (src, now));

        let drops = |fp: &FastPath| fp.stats.snapshot().datagram_drops_by_reason;
        let count = |fp: &FastPath, d: DatagramDrop| {
            drops(fp)
                .iter()
                .find(|(r, _)| *r == d)
                .map_or(0, |(_, n)| *n)
        };
        // The same packet again.
        fp.on_packet(&mut good.clone(), src, now);
        assert_eq!(count(&fp, DatagramDrop::Replay), 1);
        // Any flipped byte: the header is covered too (a changed counter
        // passes the window, then fails the tag).
        let fresh = seal(&a_tx, 1, b"beat-1");
        for i in 10..fresh.len() {
            let mut p = fresh.clone();
            p[i] ^= 0x20;
            fp.on_packet(&mut p, src, now);
        }
        assert_eq!(count(&fp, DatagramDrop::BadMac), (fresh.len() - 10) as u64);
        // Another key id; another source; a bad version; too short.
        let mut p = fresh.clone();
        p[5] ^= 1;
        assert!(matches!(fp.on_packet(&mut p, src, now), Reply::Notice(_)));
        assert_eq!(count(&fp, DatagramDrop::UnknownKey), 1);
        fp.on_packet(&mut fresh.clone(), "127.0.0.1:7001".parse().unwrap(), now);
        assert_eq!(count(&fp, DatagramDrop::WrongSource), 1);
        let mut p = fresh.clone();
        p[1] = 9;
        fp.on_packet(&mut p, src, now);
        fp.on_packet(&mut fresh[..HEADER_LEN + TAG_LEN - 1].to_vec(), src, now);
        assert_eq!(count(&fp, DatagramDrop::Malformed), 2);
        assert!(inbox.try_recv().is_err(), "nothing tampered was delivered");
        // The untouched packet still goes through.
        fp.on_packet(&mut fresh.clone(), src, now);
        assert_eq!(&inbox.try_recv().unwrap().payload[..], b"beat-1");
        let s = fp.stats.snapshot();
        assert_eq!((s.datagrams_in, s.fast_path_in), (2, 2));
    }

    #[test]
    fn a_key_that_met_too_many_forgeries_is_retired() {
        let (fp, mut inbox, _rt) = fast_path();
        let (a_tx, id, src) = installed_pair(&fp);
        lock(&fp.rx).keys.get_mut(&id).unwrap().forgeries = INTEGRITY_LIMIT - 2;
        let mut forged = seal(&a_tx, 5, b"beat");
        *forged.last_mut().unwrap() ^= 1;
        fp.on_packet(&mut forged.clone(), src, Instant::now());
        fp.on_packet(&mut seal(&a_tx, 6, b"beat"), src, Instant::now());
        assert_eq!(&inbox.try_recv().unwrap().payload[..], b"beat");
        fp.on_packet(&mut forged, src, Instant::now());
        // Retired: even genuine packets are refused now, and the sender
        // hears `Unavailable` at its next check.
        fp.on_packet(&mut seal(&a_tx, 7, b"beat"), src, Instant::now());
        assert!(inbox.try_recv().is_err());
        assert_eq!(fp.on_check(1, id, 8, 0), Some(Frame::Unavailable(id)));
    }

    #[test]
    fn notices_are_rate_limited() {
        let (fp, _inbox, _rt) = fast_path();
        let (a_tx, _) = derive_keys(exporter(b"s"), "node-a", "node-b", true).unwrap();
        let src: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let now = Instant::now();
        let notices = (0..100)
            .filter(|&c| {
                matches!(
                    fp.on_packet(&mut seal(&a_tx, c, b"x"), src, now),
                    Reply::Notice(_)
                )
            })
            .count();
        assert_eq!(notices, NOTICES_PER_SECOND as usize);
        let later = now + Duration::from_millis(250);
        let more = (0..100)
            .filter(|&c| {
                matches!(
                    fp.on_packet(&mut seal(&a_tx, c, b"x"), src, later),
                    Reply::Notice(_)
                )
            })
            .count();
        assert!((2..=3).contains(&more), "{more}");
    }

    #[test]
    fn random_input_never_panics_and_is_never_delivered() {
        let (fp, mut inbox, _rt) = fast_path();
        let s = exporter(b"session");
        let (a_tx, _) = derive_keys(&s, "node-a", "node-b", true).unwrap();
        let (_, b_rx) = derive_keys(&s, "node-b", "node-a", false).unwrap();
        let src: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        fp.install(rx_key(b_rx, src));
        let good = seal(&a_tx, 0, &[7; 40]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        for i in 0..20_000 {
            let mut p: Vec<u8> = if i % 2 == 0 {
                // Pure noise of any length.
                let n = rng.random_range(0..1300);
                (0..n).map(|_| rng.random()).collect()
            } else {
                // A real packet with a few random bytes changed or cut.
                let mut p = good.clone();
                for _ in 0..rng.random_range(1..4) {
                    let j = rng.random_range(0..p.len());
                    p[j] = rng.random();
                }
                p.truncate(rng.random_range(0..=p.len()));
                p
            };
            if p.first().is_some_and(|b| is_fast_path(*b)) {
                let _ = fp.on_packet(&mut p, src, Instant::now());
            }
            if let Ok(r) = inbox.try_recv() {
                // Only an unchanged copy of the one good packet could pass.
                assert_eq!(&r.payload[..], &[7; 40]);
            }
        }
        for b in 0..=255u8 {
            let _ = fp.on_packet(&mut [b], src, Instant::now());
            let _ = fp.on_packet(&mut [], src, Instant::now());
        }
    }

    #[test]
    fn checks_detect_a_path_that_drops_sealed_packets() {
        let (fp, _inbox, _rt) = fast_path();
        let s = exporter(b"session");
        let (_, b_rx) = derive_keys(&s, "node-b", "node-a", false).unwrap();
        let id = b_rx.id;
        let src: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        fp.install(rx_key(b_rx, src));
        // Still pending: say Ready again.
        assert_eq!(fp.on_check(1, id, 0, 0), Some(Frame::Ready(id)));
        // Two announced, none arrived.
        assert_eq!(fp.on_check(1, id, 2, 0), Some(Frame::Unavailable(id)));
        // Unknown key, or another connection's.
        assert_eq!(fp.on_check(1, 99, 2, 0), Some(Frame::Unavailable(99)));
        assert_eq!(fp.on_check(2, id, 4, 0), Some(Frame::Unavailable(id)));
        fp.remove(1, Some(id), None);
        assert_eq!(fp.on_check(1, id, 4, 0), Some(Frame::Unavailable(id)));
    }

    #[test]
    fn checks_judge_the_mailbox_and_the_main_socket_apart() {
        let (fp, _inbox, _rt) = fast_path();
        let (a_tx, id, src) = installed_pair(&fp);
        let now = Instant::now();
        let mut c = 0;
        let mut deliver = |n: u64, mailbox: bool| {
            for _ in 0..n {
                fp.on_packet_from(&mut seal(&a_tx, c, b"x"), src, now, mailbox);
                c += 1;
            }
        };
        // Both arrive: the mailbox works.
        deliver(2, false);
        deliver(2, true);
        assert_eq!(fp.on_check(1, id, 4, 2), Some(Frame::MailboxOk(id)));
        // Two to the mailbox went missing while the main socket's came.
        deliver(2, false);
        assert_eq!(
            fp.on_check(1, id, 8, 4),
            Some(Frame::MailboxUnavailable(id))
        );
        // The mailbox's came, the main socket's did not: QUIC.
        deliver(2, true);
        assert_eq!(fp.on_check(1, id, 12, 6), Some(Frame::Unavailable(id)));
        // Only one missing is not yet a verdict (it may be late).
        assert_eq!(fp.on_check(1, id, 13, 7), Some(Frame::MailboxOk(id)));

        // A mailbox that never got anything is judged from the start, at
        // every check (a lost answer is asked again).
        let (_, c_rx) = derive_keys(exporter(b"other"), "node-b", "node-a", false).unwrap();
        let c_id = c_rx.id;
        fp.install(RxKey::new(c_rx, NodeId::from("node-a"), src, 2));
        assert_eq!(fp.on_check(2, c_id, 2, 1), None);
        for sent in [3, 4] {
            assert_eq!(
                fp.on_check(2, c_id, sent, 2),
                Some(Frame::MailboxUnavailable(c_id))
            );
        }
    }
}
