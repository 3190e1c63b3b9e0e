//! The wire format: messages, their exact encoded size, encoding and the
//! size-capped, total decoder.
//!
//! A frame is one version byte ([`PROTOCOL_VERSION`]) followed by a
//! MessagePack body (rmp-serde, structs as arrays). The whole frame is
//! checked against `max_message_bytes` before anything is decoded, and
//! [`decode`] returns a typed error for every bad input instead of
//! panicking. [`Message::wire_size`] computes the encoded length without
//! encoding, which is how the core keeps every message under the cap and
//! how the simulator counts bytes; a property test holds it equal to the
//! real encoding.
//!
//! Nodes are named two ways. By id (a [`DigestEntry`], a [`NodeDelta`]):
//! always understood. By position in the sender's table (its members
//! sorted by id), in a message's [`Positions`]: only when the receiver's
//! table is the same list of ids, which the table's fingerprint
//! ([`Positions::table`]) tells; a receiver with another table ignores
//! positions. In a settled cluster every node knows the same nodes, and
//! positions spare the ids on the wire and the id comparisons of merging.

use crate::node_id::{cmp_keyed, shared_str};
use crate::{GossipError, NodeId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The protocol version this build speaks: the first byte of every frame.
///
/// Version 2 added [`Positions`] to the digest; version 1 frames are
/// rejected (`UnsupportedVersion`), so a cluster upgrades all at once.
pub const PROTOCOL_VERSION: u8 = 2;

/// Longest accepted advertised address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 255;

/// Longest accepted key/value key, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A node's own declaration of its state. Within one generation it only
/// moves forward (alive → leaving → left); only a new generation (a
/// restart) brings a node back to alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Status {
    /// Running and gossiping.
    Alive,
    /// Shutting down gracefully: do not route to it, do not page for it.
    Leaving,
    /// Gone gracefully: final for this generation, never judged dead.
    Left,
}

impl Status {
    /// The name used in APIs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Leaving => "leaving",
            Status::Left => "left",
        }
    }
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        match s {
            Status::Alive => 0,
            Status::Leaving => 1,
            Status::Left => 2,
        }
    }
}

impl TryFrom<u8> for Status {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(Status::Alive),
            1 => Ok(Status::Leaving),
            2 => Ok(Status::Left),
            _ => Err(format!("unknown status {v}")),
        }
    }
}

/// Which step of the scuttlebutt exchange a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Kind {
    /// Opens an exchange: the sender's digest (or a slice of it).
    Syn,
    /// Answers a SYN: what the initiator lacks (delta) and what the
    /// responder lacks (its digest entries for those nodes, the request).
    Ack,
    /// Closes the exchange: the delta the ACK's request asked for.
    Ack2,
}

impl From<Kind> for u8 {
    fn from(k: Kind) -> u8 {
        match k {
            Kind::Syn => 0,
            Kind::Ack => 1,
            Kind::Ack2 => 2,
        }
    }
}

impl TryFrom<u8> for Kind {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(Kind::Syn),
            1 => Ok(Kind::Ack),
            2 => Ok(Kind::Ack2),
            _ => Err(format!("unknown message kind {v}")),
        }
    }
}

/// What the sender knows of one node: enough to tell who is behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The node.
    pub node_id: NodeId,
    /// Its generation (0 in a request: "I know nothing of it").
    pub generation: u64,
    /// Its heartbeat counter.
    pub heartbeat: u64,
    /// Its metadata version (key/values and status).
    pub version: u64,
}

/// A digest: entries sorted by node id, strictly ascending, covering the
/// id range `[from, to)` (`None` = unbounded). A node of the range that
/// the digest omits is one the sender does not know. A slice rather than
/// the whole table is sent when the table does not fit one message.
///
/// In an ACK the digest is the *request*: only the nodes the responder
/// lacks, with what it knows of them; its range is unused (`None`).
///
/// Every message the core sends carries its table's fingerprint in
/// [`positions`](Self::positions); the positional parts replace the
/// id-named ones when the sender expects the receiver to hold the same
/// table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// First id covered (inclusive), `None` from the start.
    pub from: Option<NodeId>,
    /// First id not covered, `None` to the end.
    pub to: Option<NodeId>,
    /// The entries.
    pub entries: DigestEntries,
    /// The sender's table fingerprint and what is said by position.
    pub positions: Positions,
}

/// What a node knows of one node, without its id: a digest entry named by
/// its position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    /// Its generation (0: "I know nothing of it").
    pub generation: u64,
    /// Its heartbeat counter.
    pub heartbeat: u64,
    /// Its metadata version.
    pub version: u64,
}

/// One entry of a positional request: what the responder knows of the
/// node at `position` of the shared table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PositionEntry {
    /// Position in the table (0-based, in id order).
    pub position: u32,
    /// What the responder knows of it.
    pub known: Versions,
}

/// Heartbeat-only news of the node at `position`: in the common case a
/// delta brings nothing but a newer counter, and this is all of it.
/// Applied only within `generation`; the metadata version is unchanged
/// (a status or key/value change travels as a [`NodeDelta`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Beat {
    /// Position in the table (0-based, in id order).
    pub position: u32,
    /// The generation the counter belongs to.
    pub generation: u64,
    /// The heartbeat counter.
    pub heartbeat: u64,
}

/// The positional part of a message. Positions index the sender's table:
/// every node it holds, itself included, sorted by id. A receiver whose
/// own table has the same fingerprint holds the same ids in the same
/// order and reads the positions against its table; any other receiver
/// ignores them (a SYN it cannot read is answered with an empty ACK, and
/// the initiator repeats it by id).
///
/// Encoded as `[table, states, request, beats]`, each list flattened into
/// one array of integers: `states` as `generation, heartbeat, version`
/// per position; `request` as `gap, generation, heartbeat, version`;
/// `beats` as `gap, generation, heartbeat`, where a gap is the position
/// minus the previous entry's (the first entry's gap is its position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    /// Fingerprint of the sender's table when it sent the message (a
    /// hash of its ids in order); 0 when not given, and then the other
    /// parts are empty.
    pub table: u64,
    /// SYN only: what the sender knows of every position of its table, in
    /// order (generation 0 where it vouches for nothing: a node only heard
    /// of). A SYN carrying states carries no id-named entries.
    pub states: PositionStates,
    /// ACK only: the request by position, strictly ascending.
    pub request: Vec<PositionEntry>,
    /// ACK and ACK2: heartbeat-only news by position, strictly ascending.
    pub beats: Vec<Beat>,
}

/// The states of a positional SYN: shared between copies like
/// [`DigestEntries`], since a node sends the same table to every peer of
/// a round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionStates(Arc<Vec<Versions>>);

impl std::ops::Deref for PositionStates {
    type Target = Vec<Versions>;
    fn deref(&self) -> &Vec<Versions> {
        &self.0
    }
}

impl std::ops::DerefMut for PositionStates {
    fn deref_mut(&mut self) -> &mut Vec<Versions> {
        Arc::make_mut(&mut self.0)
    }
}

impl From<Vec<Versions>> for PositionStates {
    fn from(v: Vec<Versions>) -> Self {
        PositionStates(Arc::new(v))
    }
}

/// Serialises `items` flattened: `width` integers per item.
struct Flat<'a, T> {
    items: &'a [T],
    width: usize,
    each: fn(&T, u32) -> [u64; 4],
    position: fn(&T) -> u32,
}

impl<T> Flat<'_, T> {
    /// The integers of each item, in order (positions as gaps).
    fn values(&self) -> impl Iterator<Item = [u64; 4]> + '_ {
        let mut prev = 0;
        self.items.iter().map(move |it| {
            let p = (self.position)(it);
            let values = (self.each)(it, p.wrapping_sub(prev));
            prev = p;
            values
        })
    }

    /// Encoded size: exactly what [`Serialize`] writes.
    fn size(&self) -> usize {
        size::array(self.width * self.items.len())
            + self
                .values()
                .map(|v| {
                    v[..self.width]
                        .iter()
                        .map(|&x| size::uint(x))
                        .sum::<usize>()
                })
                .sum::<usize>()
    }
}

impl<T> Serialize for Flat<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.items.len() * self.width))?;
        for values in self.values() {
            for v in &values[..self.width] {
                seq.serialize_element(v)?;
            }
        }
        seq.end()
    }
}

impl Serialize for Positions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.table)?;
        t.serialize_element(&self.flat_states())?;
        t.serialize_element(&self.flat_request())?;
        t.serialize_element(&self.flat_beats())?;
        t.end()
    }
}

/// Positions from their gaps; `None` when one exceeds `u32`.
fn positions_from_gaps(gaps: impl Iterator<Item = u64>) -> Option<Vec<u32>> {
    let mut at: u64 = 0;
    gaps.map(|g| {
        at = at.checked_add(g)?;
        u32::try_from(at).ok()
    })
    .collect()
}

impl<'de> Deserialize<'de> for Positions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let (table, states, request, beats): (u64, Vec<u64>, Vec<u64>, Vec<u64>) =
            Deserialize::deserialize(d)?;
        if states.len() % 3 != 0 || request.len() % 4 != 0 || beats.len() % 3 != 0 {
            return Err(D::Error::custom("positional list of a wrong length"));
        }
        let overflow = || D::Error::custom("position beyond u32");
        let req_pos =
            positions_from_gaps(request.iter().step_by(4).copied()).ok_or_else(overflow)?;
        let beat_pos =
            positions_from_gaps(beats.iter().step_by(3).copied()).ok_or_else(overflow)?;
        Ok(Positions {
            table,
            states: states
                .chunks_exact(3)
                .map(|c| Versions {
                    generation: c[0],
                    heartbeat: c[1],
                    version: c[2],
                })
                .collect::<Vec<_>>()
                .into(),
            request: request
                .chunks_exact(4)
                .zip(req_pos)
                .map(|(c, position)| PositionEntry {
                    position,
                    known: Versions {
                        generation: c[1],
                        heartbeat: c[2],
                        version: c[3],
                    },
                })
                .collect(),
            beats: beats
                .chunks_exact(3)
                .zip(beat_pos)
                .map(|(c, position)| Beat {
                    position,
                    generation: c[1],
                    heartbeat: c[2],
                })
                .collect(),
        })
    }
}

impl Positions {
    /// Encoded size of the positional part.
    pub fn wire_size(&self) -> usize {
        size::array(4)
            + size::uint(self.table)
            + self.states_size()
            + self.request_size()
            + self.beats_size()
    }

    /// Encoded size of [`states`](Self::states).
    pub(crate) fn states_size(&self) -> usize {
        self.flat_states().size()
    }

    /// Encoded size of [`request`](Self::request).
    pub(crate) fn request_size(&self) -> usize {
        self.flat_request().size()
    }

    /// Encoded size of [`beats`](Self::beats).
    pub(crate) fn beats_size(&self) -> usize {
        self.flat_beats().size()
    }

    /// How [`states`](Self::states) is encoded: generation, heartbeat and
    /// version per position.
    fn flat_states(&self) -> Flat<'_, Versions> {
        Flat {
            items: &self.states,
            width: 3,
            each: |v, _| [v.generation, v.heartbeat, v.version, 0],
            position: |_| 0,
        }
    }

    /// How [`request`](Self::request) is encoded: the gap to the previous
    /// position, then what the responder knows.
    fn flat_request(&self) -> Flat<'_, PositionEntry> {
        Flat {
            items: &self.request,
            width: 4,
            each: |r, gap| {
                [
                    u64::from(gap),
                    r.known.generation,
                    r.known.heartbeat,
                    r.known.version,
                ]
            },
            position: |r| r.position,
        }
    }

    /// How [`beats`](Self::beats) is encoded: the gap to the previous
    /// position, generation and counter.
    fn flat_beats(&self) -> Flat<'_, Beat> {
        Flat {
            items: &self.beats,
            width: 3,
            each: |b, gap| [u64::from(gap), b.generation, b.heartbeat, 0],
            position: |b| b.position,
        }
    }

    /// True when nothing is said by position (the fingerprint aside).
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.request.is_empty() && self.beats.is_empty()
    }
}

/// A list shared between copies: a node sends the same digest to every
/// peer of a round, and the same full state (with its key/values) to many
/// peers, so copies share one allocation. Reads go through `Deref` to the
/// `Vec`; changes (`DerefMut`) copy it first if it is shared. Encoded
/// exactly as a plain `Vec<T>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedList<T>(Arc<Vec<T>>);

/// The entries of a [`Digest`].
pub type DigestEntries = SharedList<DigestEntry>;

/// One key/value pair of a node's published metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key (1..=255 bytes).
    pub key: String,
    /// The value.
    pub value: String,
    /// The owner's metadata version when it was set: a receiver keeps the
    /// value with the highest version, so old values never win.
    pub version: u64,
}

/// A node's key/values in a [`NodeDelta`]. A full state carries every
/// key/value of its node: the sender hands out its own list (no string is
/// copied), and a receiver that admits the state keeps that list as it is.
pub type KvEntries = SharedList<KvEntry>;

impl<T> SharedList<T> {
    /// True when `a` and `b` are the same shared list (not only equal).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T> Default for SharedList<T> {
    fn default() -> Self {
        SharedList(Arc::default())
    }
}

impl<T> std::ops::Deref for SharedList<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Clone> std::ops::DerefMut for SharedList<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

impl<'a, T> IntoIterator for &'a SharedList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> From<Vec<T>> for SharedList<T> {
    fn from(v: Vec<T>) -> Self {
        SharedList(Arc::new(v))
    }
}

impl<T> FromIterator<T> for SharedList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        SharedList::from(it.into_iter().collect::<Vec<_>>())
    }
}

impl<T: Serialize> Serialize for SharedList<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SharedList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(SharedList::from)
    }
}

/// What a receiver lacks of one node's state.
///
/// The key/values are those with a version in `(from_version, version]`;
/// `from_version == 0` means the full state (then `address` is present).
/// The heartbeat and status always travel. A future origin signature
/// would be one more field here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDelta {
    /// The node.
    pub node_id: NodeId,
    /// Its generation.
    pub generation: u64,
    /// Its heartbeat counter.
    pub heartbeat: u64,
    /// Its declared status.
    pub status: Status,
    /// The receiver's version this delta starts after.
    pub from_version: u64,
    /// The node's metadata version this delta brings the receiver to.
    pub version: u64,
    /// Its advertised address; present in a full state only (an address
    /// never changes within a generation).
    pub address: Option<String>,
    /// Key/values newer than `from_version`, sorted by key.
    pub kv: KvEntries,
}

/// One gossip message, as the core builds and consumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Step of the exchange.
    pub kind: Kind,
    /// The sender's cluster name.
    #[serde(with = "shared_str")]
    pub cluster: Arc<str>,
    /// The sender, as it claims itself; checked against the certificate.
    pub sender: NodeId,
    /// SYN: the sender's digest. ACK: the request. ACK2: empty.
    pub digest: Digest,
    /// ACK and ACK2: node states the receiver lacks, sorted by node id.
    pub delta: Vec<NodeDelta>,
}

/// Encoded size of an empty digest without a fingerprint: no range, no
/// entries, empty positions.
pub(crate) const EMPTY_DIGEST_SIZE: usize = size::array(4)
    + 2 * size::NIL
    + size::array(0)
    + size::array(4)
    + size::uint(0)
    + 3 * size::array(0);

/// Exact MessagePack sizes, mirroring rmp's compact encodings.
pub mod size {
    /// Encoded size of an unsigned integer.
    pub const fn uint(v: u64) -> usize {
        if v < 128 {
            1
        } else if v <= u8::MAX as u64 {
            2
        } else if v <= u16::MAX as u64 {
            3
        } else if v <= u32::MAX as u64 {
            5
        } else {
            9
        }
    }

    /// Encoded size of a string of `len` bytes.
    pub const fn str(len: usize) -> usize {
        len + if len < 32 {
            1
        } else if len <= u8::MAX as usize {
            2
        } else if len <= u16::MAX as usize {
            3
        } else {
            5
        }
    }

    /// Encoded size of an array (or struct) header of `n` elements.
    pub const fn array(n: usize) -> usize {
        if n < 16 {
            1
        } else if n <= u16::MAX as usize {
            3
        } else {
            5
        }
    }

    /// Encoded size of an absent optional value.
    pub const NIL: usize = 1;

    /// Largest possible array header: what a budget reserves for a list
    /// whose final length is not known yet.
    pub const MAX_ARRAY_HEADER: usize = 5;
}

impl DigestEntry {
    /// Encoded size of this entry.
    pub fn wire_size(&self) -> usize {
        digest_entry_size(
            self.node_id.len(),
            self.generation,
            self.heartbeat,
            self.version,
        )
    }
}

/// Encoded size of a digest entry with these fields.
pub(crate) fn digest_entry_size(
    id_len: usize,
    generation: u64,
    heartbeat: u64,
    version: u64,
) -> usize {
    size::array(4)
        + size::str(id_len)
        + size::uint(generation)
        + size::uint(heartbeat)
        + size::uint(version)
}

impl Digest {
    /// Encoded size of the digest apart from its entries' array and its
    /// positions: the range bounds and the struct header.
    fn head_size(&self) -> usize {
        size::array(4) + opt_id_size(self.from.as_ref()) + opt_id_size(self.to.as_ref())
    }

    /// Encoded size of this digest.
    pub fn wire_size(&self) -> usize {
        self.head_size()
            + size::array(self.entries.len())
            + self
                .entries
                .iter()
                .map(DigestEntry::wire_size)
                .sum::<usize>()
            + self.positions.wire_size()
    }
}

fn opt_id_size(id: Option<&NodeId>) -> usize {
    id.map_or(size::NIL, |i| size::str(i.len()))
}

impl KvEntry {
    /// Encoded size of this entry.
    pub fn wire_size(&self) -> usize {
        kv_entry_size(self.key.len(), self.value.len(), self.version)
    }
}

/// Encoded size of a key/value entry with these fields.
pub(crate) fn kv_entry_size(key_len: usize, value_len: usize, version: u64) -> usize {
    size::array(3) + size::str(key_len) + size::str(value_len) + size::uint(version)
}

impl NodeDelta {
    /// Encoded size of this delta.
    pub fn wire_size(&self) -> usize {
        node_delta_head_size(
            self.node_id.len(),
            self.generation,
            self.heartbeat,
            self.from_version,
            self.version,
            self.address.as_ref().map(String::len),
        ) + size::array(self.kv.len())
            + self.kv.iter().map(KvEntry::wire_size).sum::<usize>()
    }
}

/// Encoded size of a node delta without its key/value array.
pub(crate) fn node_delta_head_size(
    id_len: usize,
    generation: u64,
    heartbeat: u64,
    from_version: u64,
    version: u64,
    address_len: Option<usize>,
) -> usize {
    size::array(8)
        + size::str(id_len)
        + size::uint(generation)
        + size::uint(heartbeat)
        + 1 // status: a positive fixint
        + size::uint(from_version)
        + size::uint(version)
        + address_len.map_or(size::NIL, size::str)
}

impl Message {
    /// Encoded size of the frame of an empty message from `sender` in
    /// `cluster` with table fingerprint `table` (version byte, header,
    /// kind, names, empty digest with no range, empty delta).
    pub(crate) fn empty_size(cluster_len: usize, sender_len: usize, table: u64) -> usize {
        1 + size::array(5)
            + 1 // kind
            + size::str(cluster_len)
            + size::str(sender_len)
            + EMPTY_DIGEST_SIZE
            + size::uint(table)
            - size::uint(0)
            + size::array(0) // empty delta
    }

    /// Exact length of [`encode`]'s output for this message, computed
    /// without encoding.
    pub fn wire_size(&self) -> usize {
        1 + size::array(5)
            + 1
            + size::str(self.cluster.len())
            + size::str(self.sender.len())
            + self.digest.wire_size()
            + size::array(self.delta.len())
            + self.delta.iter().map(NodeDelta::wire_size).sum::<usize>()
    }

    /// Checks the rules a decoded message must follow beyond its shape:
    /// valid ids, entries sorted and unique, digests within their range,
    /// bounded fields, and the parts each kind may carry.
    pub fn validate(&self) -> Result<(), GossipError> {
        let invalid = |reason: String| Err(GossipError::Invalid { reason });
        if !self.sender.is_valid() {
            return invalid("sender id is empty or longer than 255 bytes".into());
        }
        let p = &self.digest.positions;
        match self.kind {
            Kind::Syn if !self.delta.is_empty() => return invalid("SYN carries a delta".into()),
            Kind::Syn if !p.request.is_empty() || !p.beats.is_empty() => {
                return invalid("SYN carries a positional request or beats".into());
            }
            Kind::Syn
                if !p.states.is_empty()
                    && (!self.digest.entries.is_empty()
                        || self.digest.from.is_some()
                        || self.digest.to.is_some()) =>
            {
                return invalid("SYN mixes positional states with id-named entries".into());
            }
            Kind::Ack | Kind::Ack2 if !p.states.is_empty() => {
                return invalid("only a SYN carries positional states".into());
            }
            Kind::Ack2 if !p.request.is_empty() => {
                return invalid("ACK2 carries a positional request".into());
            }
            Kind::Ack2 if !self.digest.entries.is_empty() => {
                return invalid("ACK2 carries a digest".into());
            }
            Kind::Ack | Kind::Ack2 if self.digest.from.is_some() || self.digest.to.is_some() => {
                return invalid("only a SYN digest has a range".into());
            }
            _ => {}
        }
        if p.table == 0 && !p.is_empty() {
            return invalid("positions without a table fingerprint".into());
        }
        if p.request.windows(2).any(|w| w[0].position >= w[1].position)
            || p.beats.windows(2).any(|w| w[0].position >= w[1].position)
        {
            return invalid("positions not strictly ascending".into());
        }
        let d = &self.digest;
        for bound in [&d.from, &d.to].into_iter().flatten() {
            if !bound.is_valid() {
                return invalid("digest range bound is not a valid id".into());
            }
        }
        if let (Some(from), Some(to)) = (&d.from, &d.to) {
            if from >= to {
                return invalid(format!("empty digest range [{from}, {to})"));
            }
        }
        // Order checks compare 8-byte prefixes first (`cmp_keyed`).
        let mut prev: Option<(&NodeId, u64)> = None;
        for e in &d.entries {
            if !e.node_id.is_valid() {
                return invalid("digest entry id is empty or longer than 255 bytes".into());
            }
            let key = e.node_id.prefix_key();
            if prev.is_some_and(|(p, pk)| cmp_keyed(p, pk, &e.node_id, key).is_ge()) {
                return invalid(format!(
                    "digest entries not strictly ascending at {}",
                    e.node_id
                ));
            }
            if d.from.as_ref().is_some_and(|f| &e.node_id < f)
                || d.to.as_ref().is_some_and(|t| &e.node_id >= t)
            {
                return invalid(format!(
                    "digest entry {} outside the digest range",
                    e.node_id
                ));
            }
            prev = Some((&e.node_id, key));
        }
        let mut prev: Option<(&NodeId, u64)> = None;
        for n in &self.delta {
            if !n.node_id.is_valid() {
                return invalid("delta id is empty or longer than 255 bytes".into());
            }
            let key = n.node_id.prefix_key();
            if prev.is_some_and(|(p, pk)| cmp_keyed(p, pk, &n.node_id, key).is_ge()) {
                return invalid(format!(
                    "delta entries not strictly ascending at {}",
                    n.node_id
                ));
            }
            prev = Some((&n.node_id, key));
            if n.from_version > n.version {
                return invalid(format!("delta of {} starts after its end", n.node_id));
            }
            if n.address
                .as_ref()
                .is_some_and(|a| a.len() > MAX_ADDRESS_LEN)
            {
                return invalid(format!(
                    "address of {} longer than {MAX_ADDRESS_LEN} bytes",
                    n.node_id
                ));
            }
            let mut prev_key: Option<&str> = None;
            for kv in &n.kv {
                if kv.key.is_empty() || kv.key.len() > MAX_KEY_LEN {
                    return invalid(format!("key of {} is empty or too long", n.node_id));
                }
                if prev_key.is_some_and(|p| p >= kv.key.as_str()) {
                    return invalid(format!("keys of {} not strictly ascending", n.node_id));
                }
                if kv.version <= n.from_version || kv.version > n.version {
                    return invalid(format!(
                        "key {:?} of {} has a version outside its delta",
                        kv.key, n.node_id
                    ));
                }
                prev_key = Some(&kv.key);
            }
        }
        Ok(())
    }
}

/// Encodes `msg` as a frame: the version byte, then the MessagePack body.
pub fn encode(msg: &Message) -> Result<Vec<u8>, GossipError> {
    let mut out = Vec::with_capacity(msg.wire_size());
    out.push(PROTOCOL_VERSION);
    rmp_serde::encode::write(&mut out, msg).map_err(|e| GossipError::Malformed {
        reason: format!("cannot encode: {e}"),
    })?;
    Ok(out)
}

/// Decodes and validates a frame of at most `max_len` bytes. The length
/// is checked before anything is read; decoding reads only from the
/// frame, so no declared length can make it allocate more than the frame
/// holds (plus serde's bounded pre-allocation). Never panics.
pub fn decode(frame: &[u8], max_len: usize) -> Result<Message, GossipError> {
    if frame.len() > max_len {
        return Err(GossipError::TooLarge {
            len: frame.len(),
            max: max_len,
        });
    }
    let Some((&version, body)) = frame.split_first() else {
        return Err(GossipError::Empty);
    };
    if version != PROTOCOL_VERSION {
        return Err(GossipError::UnsupportedVersion {
            version,
            supported: PROTOCOL_VERSION,
        });
    }
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
    let msg = Message::deserialize(&mut de).map_err(|e| GossipError::Malformed {
        reason: e.to_string(),
    })?;
    let used = de.position();
    if used != body.len() as u64 {
        return Err(GossipError::Malformed {
            reason: format!("{} trailing bytes", body.len() as u64 - used),
        });
    }
    msg.validate()?;
    Ok(msg)
}
