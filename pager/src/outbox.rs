//! The durable alert outbox: every alert event is on disk, fsynced,
//! before any delivery is attempted, and stays there until its receiver
//! accepted it.
//!
//! Layout: `<dir>/<webhook>/<seq>.rec`, one file per (event, webhook),
//! `seq` a zero-padded sequence number that orders the queue. Each
//! webhook has its own queue, so one receiver being down delays no other.
//!
//! **Priority.** Pages are [`Priority::Urgent`] (`suspected`,
//! `recovered`) or [`Priority::Routine`] (`restarted`). A queue delivers
//! every urgent page before any routine one, each class in order (so the
//! events of an incident keep their order), and a full queue drops the
//! oldest routine page first: a flood of `restarted` pages can neither
//! push a `suspected` page out of the queue nor hold it behind them.
//!
//! **Writing a record.** The record is written to `.<seq>.tmp` in every
//! queue and each is fsynced, then all are renamed to `<seq>.rec` and the
//! directories fsynced. The enqueue is all-or-nothing across webhooks:
//! when any step fails (disk full, read-only, quota) every file it made
//! is removed again, so the record is on disk for every webhook or for
//! none. A record that could not be written is not lost while the process
//! runs: it is held in memory in every queue, delivered as usual, counted
//! in [`Outbox::unsaved`], and written by [`Outbox::persist_unsaved`]
//! once the disk accepts it again. A `kill -9` or power loss mid-write
//! leaves at most a temp file, deleted at the next open (its enqueue never
//! returned, so nothing acknowledged is lost).
//!
//! **Reading at start-up.** Every record file carries a magic, a version,
//! its payload length and a checksum; a file that is short or garbled (a
//! filesystem that reorders writes, a bad disk) or cannot be read at all
//! (permissions, IO errors) is counted in [`OpenReport`], renamed to
//! `<seq>.corrupt` for inspection and skipped, never fatal to
//! [`Outbox::open`].
//!
//! Delivered records are unlinked (without a directory fsync: a record
//! that reappears after a crash is delivered again, and receivers dedupe
//! on its event id). Each queue holds at most
//! [`OutboxLimits::max_entries_per_webhook`] records; beyond it the
//! oldest routine record is dropped (counted), or, with none left, the
//! oldest urgent one for a new urgent record: during a long receiver
//! outage the newest state of the fleet is what on-call needs.

use phimon_alert::{AlertRecord, EventKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

const MAGIC: &[u8; 4] = b"PHOB";
const VERSION: u8 = 1;
/// magic, version, 3 reserved bytes, payload length (u32 BE), checksum.
const HEADER_LEN: usize = 4 + 1 + 3 + 4 + 8;
/// Largest record payload accepted on read, checked before allocating.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Size limits of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Records kept per webhook queue (default 10,000, about 10 MB);
    /// beyond it the oldest routine record is dropped.
    pub max_entries_per_webhook: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_entries_per_webhook: 10_000,
        }
    }
}

/// How urgent a page is: the order of delivery and of dropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// `suspected` and `recovered`: delivered first, dropped last.
    Urgent,
    /// `restarted`: informational, delivered when no urgent page waits,
    /// dropped first from a full queue.
    Routine,
}

impl Priority {
    /// The priority of a record's event.
    pub fn of(record: &AlertRecord) -> Priority {
        match record.event {
            EventKind::Suspected | EventKind::Recovered => Priority::Urgent,
            EventKind::Restarted => Priority::Routine,
        }
    }
}

/// Outbox failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A filesystem operation failed.
    #[error("outbox {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A webhook name cannot be used as a queue directory.
    #[error(
        "webhook name {name:?} must be 1-64 ASCII letters, digits, '-', '_' or '.', and not start with '.'"
    )]
    InvalidWebhookName {
        /// The name.
        name: String,
    },
    /// A record does not fit [`MAX_RECORD_BYTES`].
    #[error("alert record of {len} bytes exceeds the {max}-byte cap")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The webhook has no queue in this outbox.
    #[error("no outbox queue for webhook {name:?}")]
    UnknownWebhook {
        /// The name.
        name: String,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> OutboxError + 'a {
    move |source| OutboxError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A record and when it entered the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The alert event.
    pub record: AlertRecord,
    /// When it was enqueued, Unix milliseconds.
    pub enqueued_unix_ms: u64,
}

impl OutboxEntry {
    /// When it was enqueued.
    pub fn enqueued(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.enqueued_unix_ms)
    }
}

/// What [`Outbox::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records loaded, all queues.
    pub loaded: usize,
    /// Record files that failed the length or checksum check (renamed to
    /// `.corrupt` and skipped).
    pub corrupt: usize,
    /// Record files that could not be read at all (renamed to `.corrupt`
    /// when possible, and skipped).
    pub unreadable: usize,
    /// Temp files of interrupted writes, removed.
    pub temp_removed: usize,
}

/// What [`Outbox::enqueue`] did.
#[derive(Debug, Default)]
pub struct EnqueueReport {
    /// Webhooks whose queue was full and dropped a record (the oldest
    /// routine one, or the new record itself when it is routine and only
    /// urgent records are queued).
    pub dropped: Vec<String>,
    /// Why the record is not on disk, if it is not: it is then held in
    /// memory in every queue (delivered as usual) until
    /// [`Outbox::persist_unsaved`] writes it. `None`: durable.
    pub not_durable: Option<OutboxError>,
}

/// One queued record.
#[derive(Debug, Clone)]
struct Slot {
    entry: OutboxEntry,
    /// Its file exists (fsynced); `false` while it is held in memory only.
    durable: bool,
}

struct Queue {
    dir: PathBuf,
    urgent: BTreeMap<u64, Slot>,
    routine: BTreeMap<u64, Slot>,
    notify: Arc<Notify>,
}

impl Queue {
    fn len(&self) -> usize {
        self.urgent.len() + self.routine.len()
    }

    fn class(&mut self, p: Priority) -> &mut BTreeMap<u64, Slot> {
        match p {
            Priority::Urgent => &mut self.urgent,
            Priority::Routine => &mut self.routine,
        }
    }

    fn get(&self, seq: u64) -> Option<&Slot> {
        self.urgent.get(&seq).or_else(|| self.routine.get(&seq))
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        match self.urgent.get_mut(&seq) {
            Some(s) => Some(s),
            None => self.routine.get_mut(&seq),
        }
    }

    fn remove(&mut self, seq: u64) -> Option<Slot> {
        self.urgent
            .remove(&seq)
            .or_else(|| self.routine.remove(&seq))
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.rec"))
    }

    fn temp(&self, seq: u64) -> PathBuf {
        self.dir.join(format!(".{seq:020}.tmp"))
    }

    /// Makes room for a record of priority `p` in a queue holding `max`:
    /// returns whether it may be added (after dropping what had to go).
    fn make_room(&mut self, p: Priority, max: usize) -> (bool, usize) {
        let mut dropped = 0;
        while self.len() >= max {
            let victim = match (self.routine.keys().next(), self.urgent.keys().next()) {
                (Some(&r), _) => r,
                (None, Some(&u)) if p == Priority::Urgent => u,
                // Only urgent records, and a routine newcomer: it is the
                // one that goes.
                _ => return (false, dropped + 1),
            };
            if let Some(slot) = self.remove(victim) {
                if slot.durable {
                    let path = self.path(victim);
                    if let Err(e) = fs::remove_file(&path) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            // It comes back after a restart and is
                            // delivered then (receivers dedupe).
                            tracing::warn!(path = %path.display(), error = %e, "cannot remove a dropped outbox record");
                        }
                    }
                }
            }
            dropped += 1;
        }
        (true, dropped)
    }
}

struct Inner {
    queues: BTreeMap<String, Queue>,
    next_seq: u64,
    limits: OutboxLimits,
    /// Sequence numbers of records held in memory only, and the encoded
    /// file of each.
    unsaved: BTreeMap<u64, Arc<[u8]>>,
    /// The last write failure, for `/readyz`.
    last_error: Option<String>,
}

/// The durable outbox. Cheap to clone; all clones share the queues. Its
/// methods do blocking file IO (an fsync per queue per event): events are
/// rare, so async callers may call them directly or via
/// `spawn_blocking`.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Outbox")
            .field("queues", &inner.queues.keys().collect::<Vec<_>>())
            .field(
                "pending",
                &inner.queues.values().map(Queue::len).sum::<usize>(),
            )
            .field("unsaved", &inner.unsaved.len())
            .finish()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(payload);
    let mut c = [0u8; 8];
    c.copy_from_slice(&d[..8]);
    c
}

/// Encodes a record file: header then JSON payload.
fn encode(entry: &OutboxEntry) -> Result<Vec<u8>, OutboxError> {
    let payload = serde_json::to_vec(entry).map_err(|e| OutboxError::Io {
        op: "serialize",
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })?;
    if payload.len() > MAX_RECORD_BYTES {
        return Err(OutboxError::RecordTooLarge {
            len: payload.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    // Fits: checked against MAX_RECORD_BYTES above.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Why a record file was rejected.
#[derive(Debug, PartialEq, Eq)]
enum Corrupt {
    Short,
    Magic,
    Version(u8),
    Length(usize),
    Checksum,
    Json,
}

/// Decodes a record file; total over arbitrary bytes.
fn decode(bytes: &[u8]) -> Result<OutboxEntry, Corrupt> {
    if bytes.len() < HEADER_LEN {
        return Err(Corrupt::Short);
    }
    if &bytes[..4] != MAGIC {
        return Err(Corrupt::Magic);
    }
    if bytes[4] != VERSION {
        return Err(Corrupt::Version(bytes[4]));
    }
    let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if len > MAX_RECORD_BYTES || bytes.len() != HEADER_LEN + len {
        return Err(Corrupt::Length(len));
    }
    let payload = &bytes[HEADER_LEN..];
    if bytes[12..20] != checksum(payload) {
        return Err(Corrupt::Checksum);
    }
    serde_json::from_slice(payload).map_err(|_| Corrupt::Json)
}

fn fsync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

fn seq_of(name: &str) -> Option<u64> {
    name.strip_suffix(".rec")?.parse().ok()
}

/// Writes `bytes` as record `seq` into each of `dirs`, all or nothing:
/// on any failure every file this call made is removed again.
fn write_everywhere(dirs: &[&Queue], seq: u64, bytes: &[u8]) -> Result<(), OutboxError> {
    let mut temps: Vec<PathBuf> = Vec::new();
    let mut finals: Vec<PathBuf> = Vec::new();
    let undo = |temps: &[PathBuf], finals: &[PathBuf]| {
        for p in temps.iter().chain(finals) {
            let _ = fs::remove_file(p);
        }
    };
    for q in dirs {
        let tmp = q.temp(seq);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("create", &tmp))
            .and_then(|mut f| {
                // Recorded before writing: a partly written file goes too.
                temps.push(tmp.clone());
                f.write_all(bytes).map_err(io("write", &tmp))?;
                f.sync_all().map_err(io("fsync", &tmp))
            });
        if let Err(e) = written {
            undo(&temps, &finals);
            return Err(e);
        }
    }
    for q in dirs {
        let (tmp, fin) = (q.temp(seq), q.path(seq));
        if let Err(e) = fs::rename(&tmp, &fin) {
            undo(&temps, &finals);
            return Err(io("rename", &tmp)(e));
        }
        temps.retain(|t| *t != tmp);
        finals.push(fin);
    }
    for q in dirs {
        if let Err(e) = fsync_dir(&q.dir) {
            undo(&temps, &finals);
            return Err(e);
        }
    }
    Ok(())
}

impl Outbox {
    /// Opens (creating it if needed) the outbox in `dir` with one queue per
    /// webhook name, loading what a previous run left. Queue directories
    /// of webhooks no longer configured are left alone. Fails only when a
    /// queue directory cannot be created or listed; a bad record file is
    /// set aside and counted.
    pub fn open(
        dir: &Path,
        webhooks: &[String],
        limits: OutboxLimits,
    ) -> Result<(Outbox, OpenReport), OutboxError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut report = OpenReport::default();
        let mut queues = BTreeMap::new();
        let mut next_seq = 1;
        for name in webhooks {
            if !valid_name(name) {
                return Err(OutboxError::InvalidWebhookName { name: name.clone() });
            }
            let qdir = dir.join(name);
            fs::create_dir_all(&qdir).map_err(io("create", &qdir))?;
            let mut q = Queue {
                dir: qdir.clone(),
                urgent: BTreeMap::new(),
                routine: BTreeMap::new(),
                notify: Arc::new(Notify::new()),
            };
            for dirent in fs::read_dir(&qdir).map_err(io("list", &qdir))? {
                let dirent = match dirent {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(dir = %qdir.display(), error = %e, "outbox entry cannot be listed; skipped");
                        report.unreadable += 1;
                        continue;
                    }
                };
                let path = dirent.path();
                let file_name = dirent.file_name().to_string_lossy().into_owned();
                if file_name.ends_with(".tmp") {
                    match fs::remove_file(&path) {
                        Ok(()) => report.temp_removed += 1,
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot remove an interrupted outbox write")
                        }
                    }
                    continue;
                }
                let Some(seq) = seq_of(&file_name) else {
                    continue; // .corrupt files and strangers
                };
                next_seq = next_seq.max(seq.saturating_add(1));
                let why = match read_record(&path) {
                    Ok(Ok(entry)) => {
                        let p = Priority::of(&entry.record);
                        q.class(p).insert(
                            seq,
                            Slot {
                                entry,
                                durable: true,
                            },
                        );
                        continue;
                    }
                    Ok(Err(why)) => {
                        report.corrupt += 1;
                        format!("{why:?}")
                    }
                    Err(e) => {
                        report.unreadable += 1;
                        e.to_string()
                    }
                };
                let aside = path.with_extension("corrupt");
                match fs::rename(&path, &aside) {
                    Ok(()) => {
                        tracing::warn!(path = %path.display(), reason = %why, "bad outbox record set aside as .corrupt")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), reason = %why, error = %e, "bad outbox record skipped (it cannot be renamed)")
                    }
                }
            }
            report.loaded += q.len();
            queues.insert(name.clone(), q);
        }
        // The queue directories were created above: make them durable.
        // A failure here is the disk's, reported at the first enqueue.
        if let Err(e) = fsync_dir(dir) {
            tracing::warn!(error = %e, "outbox directory cannot be fsynced");
        }
        let outbox = Outbox {
            inner: Arc::new(Mutex::new(Inner {
                queues,
                next_seq,
                limits,
                unsaved: BTreeMap::new(),
                last_error: None,
            })),
        };
        Ok((outbox, report))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a single map operation after the file operation).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `record` for every webhook and wakes the delivery workers.
    /// The record is made durable in every queue (file and directory
    /// fsynced) or, when the disk refuses, in none: it is then held in
    /// memory ([`EnqueueReport::not_durable`] says why) and delivered all
    /// the same, and [`persist_unsaved`](Self::persist_unsaved) writes it
    /// later. An error means the record was not queued at all (it does not
    /// fit [`MAX_RECORD_BYTES`]).
    pub fn enqueue(
        &self,
        record: &AlertRecord,
        now: SystemTime,
    ) -> Result<EnqueueReport, OutboxError> {
        let entry = OutboxEntry {
            record: record.clone(),
            enqueued_unix_ms: now
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        };
        let bytes = encode(&entry)?;
        let priority = Priority::of(record);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let max = inner.limits.max_entries_per_webhook.max(1);
        let mut report = EnqueueReport::default();
        let mut targets = Vec::new();
        for (name, q) in inner.queues.iter_mut() {
            let (room, dropped) = q.make_room(priority, max);
            for _ in 0..dropped {
                report.dropped.push(name.clone());
            }
            if room {
                targets.push(name.clone());
            }
        }
        let dirs: Vec<&Queue> = targets.iter().filter_map(|n| inner.queues.get(n)).collect();
        let written = if dirs.is_empty() {
            Ok(())
        } else {
            write_everywhere(&dirs, seq, &bytes)
        };
        let durable = written.is_ok();
        if let Err(e) = written {
            inner.last_error = Some(e.to_string());
            inner.unsaved.insert(seq, Arc::from(bytes));
            report.not_durable = Some(e);
        }
        for name in &targets {
            if let Some(q) = inner.queues.get_mut(name) {
                q.class(priority).insert(
                    seq,
                    Slot {
                        entry: entry.clone(),
                        durable,
                    },
                );
                q.notify.notify_one();
            }
        }
        Ok(report)
    }

    /// Writes the records held in memory only (see
    /// [`enqueue`](Self::enqueue)), oldest first, each all-or-nothing
    /// across the queues that still hold it; stops at the first failure.
    /// Returns how many were written.
    pub fn persist_unsaved(&self) -> Result<usize, OutboxError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut written = 0;
        while let Some((&seq, bytes)) = inner.unsaved.iter().next() {
            let bytes = bytes.clone();
            let holders: Vec<String> = inner
                .queues
                .iter()
                .filter(|(_, q)| q.get(seq).is_some_and(|s| !s.durable))
                .map(|(n, _)| n.clone())
                .collect();
            if !holders.is_empty() {
                let dirs: Vec<&Queue> =
                    holders.iter().filter_map(|n| inner.queues.get(n)).collect();
                if let Err(e) = write_everywhere(&dirs, seq, &bytes) {
                    inner.last_error = Some(e.to_string());
                    return Err(e);
                }
                for n in &holders {
                    if let Some(slot) = inner.queues.get_mut(n).and_then(|q| q.get_mut(seq)) {
                        slot.durable = true;
                    }
                }
                written += 1;
            }
            inner.unsaved.remove(&seq);
        }
        inner.last_error = None;
        Ok(written)
    }

    /// Records held in memory only: enqueued while the disk refused them,
    /// and not delivered everywhere yet. 0 when every queued record is
    /// durable.
    pub fn unsaved(&self) -> usize {
        let inner = self.lock();
        inner
            .unsaved
            .keys()
            .filter(|&&seq| inner.queues.values().any(|q| q.get(seq).is_some()))
            .count()
    }

    /// Why the last write failed, while records are held in memory only.
    pub fn last_error(&self) -> Option<String> {
        let inner = self.lock();
        inner
            .last_error
            .clone()
            .filter(|_| !inner.unsaved.is_empty())
    }

    /// The next record to deliver to `webhook` — its oldest urgent one,
    /// else its oldest routine one — with its sequence number for
    /// [`ack`](Self::ack).
    pub fn peek(&self, webhook: &str) -> Option<(u64, OutboxEntry)> {
        let inner = self.lock();
        let q = inner.queues.get(webhook)?;
        q.urgent
            .iter()
            .next()
            .or_else(|| q.routine.iter().next())
            .map(|(s, slot)| (*s, slot.entry.clone()))
    }

    /// Removes a delivered (or permanently rejected) record.
    pub fn ack(&self, webhook: &str, seq: u64) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let q = inner
            .queues
            .get_mut(webhook)
            .ok_or_else(|| OutboxError::UnknownWebhook {
                name: webhook.to_string(),
            })?;
        let path = q.path(seq);
        // Forget it in memory even if the unlink fails, so delivery moves
        // on; the file then comes back after a restart and is delivered
        // again (receivers dedupe on the event id).
        let Some(slot) = q.remove(seq) else {
            return Ok(());
        };
        if !slot.durable {
            // Delivered everywhere: nothing left to write.
            if inner.queues.values().all(|q| q.get(seq).is_none()) {
                inner.unsaved.remove(&seq);
            }
            return Ok(());
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }

    /// Wakes when a record is enqueued for `webhook`.
    pub fn notifier(&self, webhook: &str) -> Option<Arc<Notify>> {
        self.lock().queues.get(webhook).map(|q| q.notify.clone())
    }

    /// Undelivered records, all queues.
    pub fn pending(&self) -> usize {
        self.lock().queues.values().map(Queue::len).sum()
    }

    /// Undelivered records of one webhook.
    pub fn pending_for(&self, webhook: &str) -> usize {
        self.lock().queues.get(webhook).map_or(0, Queue::len)
    }

    /// When the oldest undelivered record was enqueued.
    pub fn oldest_enqueued(&self) -> Option<SystemTime> {
        self.lock()
            .queues
            .values()
            .flat_map(|q| [q.urgent.values().next(), q.routine.values().next()])
            .flatten()
            .map(|s| s.entry.enqueued())
            .min()
    }

    /// The configured queues.
    pub fn webhooks(&self) -> Vec<String> {
        self.lock().queues.keys().cloned().collect()
    }
}

/// Reads and checks one record file; the outer error is IO, the inner a
/// corrupt file.
fn read_record(path: &Path) -> Result<Result<OutboxEntry, Corrupt>, OutboxError> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let len = f.metadata().map_err(io("stat", path))?.len();
    if len > (HEADER_LEN + MAX_RECORD_BYTES) as u64 {
        return Ok(Err(Corrupt::Length(
            usize::try_from(len).unwrap_or(usize::MAX),
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes).map_err(io("read", path))?;
    Ok(decode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phimon_alert::{EventKind, Scope};
    use proptest::prelude::*;

    fn rec(i: u64) -> AlertRecord {
        rec_of(i, EventKind::Suspected)
    }

    fn rec_of(i: u64, event: EventKind) -> AlertRecord {
        AlertRecord {
            incident_id: format!("inc_{i}"),
            event_id: format!("msg_{i}"),
            event,
            scope: Scope::Node,
            cluster: "c".into(),
            node_id: "n".into(),
            nodes: vec!["n".into()],
            observer: "o".into(),
            generation: 1,
            phi: 9.0,
            threshold: 8.0,
            at_unix_ms: 1_700_000_000_000 + i,
            started_unix_ms: 1_700_000_000_000,
            evidence: None,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const T0: SystemTime = UNIX_EPOCH;

    #[test]
    fn queues_are_independent_ordered_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = names(&["a", "b"]);
        let (ob, rep) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        assert_eq!(rep, OpenReport::default());
        for i in 0..5 {
            ob.enqueue(&rec(i), T0 + Duration::from_secs(i)).unwrap();
        }
        assert_eq!(ob.pending(), 10);
        // Deliver three to "a" only.
        for want in 0..3 {
            let (seq, e) = ob.peek("a").unwrap();
            assert_eq!(e.record, rec(want));
            ob.ack("a", seq).unwrap();
        }
        assert_eq!(ob.pending_for("a"), 2);
        assert_eq!(ob.pending_for("b"), 5);
        assert_eq!(ob.oldest_enqueued(), Some(T0));
        drop(ob);
        let (ob, rep) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        assert_eq!(rep.loaded, 7);
        assert_eq!(ob.peek("a").unwrap().1.record, rec(3));
        assert_eq!(ob.peek("b").unwrap().1.record, rec(0));
        // New sequence numbers continue after the old ones.
        ob.enqueue(&rec(9), T0).unwrap();
        let mut got = Vec::new();
        while let Some((seq, e)) = ob.peek("a") {
            got.push(e.record.event_id.clone());
            ob.ack("a", seq).unwrap();
        }
        assert_eq!(got, ["msg_3", "msg_4", "msg_9"]);
    }

    #[test]
    fn full_queue_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            max_entries_per_webhook: 3,
        };
        let (ob, _) = Outbox::open(dir.path(), &names(&["a"]), limits).unwrap();
        for i in 0..3 {
            assert!(ob.enqueue(&rec(i), T0).unwrap().dropped.is_empty());
        }
        let r = ob.enqueue(&rec(3), T0).unwrap();
        assert_eq!(r.dropped, ["a"]);
        assert_eq!(ob.pending(), 3);
        assert_eq!(ob.peek("a").unwrap().1.record, rec(1));
        let files = fs::read_dir(dir.path().join("a")).unwrap().count();
        assert_eq!(files, 3);
    }

    #[test]
    fn torn_and_garbled_records_are_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = names(&["a"]);
        let (ob, _) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        for i in 0..4 {
            ob.enqueue(&rec(i), T0).unwrap();
        }
        drop(ob);
        let q = dir.path().join("a");
        let mut files: Vec<PathBuf> = fs::read_dir(&q)
            .unwrap()
            .map(|d| d.unwrap().path())
            .collect();
        files.sort();
        // Torn: cut in the middle of the payload.
        let bytes = fs::read(&files[1]).unwrap();
        fs::write(&files[1], &bytes[..bytes.len() / 2]).unwrap();
        // Garbled: one payload bit flipped.
        let mut bytes = fs::read(&files[2]).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        fs::write(&files[2], &bytes).unwrap();
        // An interrupted write.
        fs::write(q.join(".00000000000000000099.tmp"), b"PHOB").unwrap();

        let (ob, rep) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        assert_eq!(
            rep,
            OpenReport {
                loaded: 2,
                corrupt: 2,
                unreadable: 0,
                temp_removed: 1
            }
        );
        let mut got = Vec::new();
        while let Some((seq, e)) = ob.peek("a") {
            got.push(e.record.event_id);
            ob.ack("a", seq).unwrap();
        }
        assert_eq!(got, ["msg_0", "msg_3"]);
        // Quarantined, not reloaded.
        let (_, rep) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        assert_eq!(rep.corrupt, 0);
        assert_eq!(rep.loaded, 0);
    }

    /// Event ids left in `webhook`'s queue, in delivery order (drains it).
    fn drain(ob: &Outbox, webhook: &str) -> Vec<String> {
        let mut got = Vec::new();
        while let Some((seq, e)) = ob.peek(webhook) {
            got.push(e.record.event_id);
            ob.ack(webhook, seq).unwrap();
        }
        got
    }

    #[test]
    fn urgent_pages_are_delivered_first_and_dropped_last() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            max_entries_per_webhook: 4,
        };
        let (ob, _) = Outbox::open(dir.path(), &names(&["a"]), limits).unwrap();
        ob.enqueue(&rec_of(0, EventKind::Restarted), T0).unwrap();
        ob.enqueue(&rec_of(1, EventKind::Suspected), T0).unwrap();
        // A flood of restarted pages after the suspected one.
        let mut dropped = 0;
        for i in 2..200 {
            let r = ob.enqueue(&rec_of(i, EventKind::Restarted), T0).unwrap();
            assert!(r.not_durable.is_none());
            dropped += r.dropped.len();
        }
        assert_eq!(dropped, 196, "every dropped page is counted");
        assert_eq!(ob.pending(), 4);
        // The suspected page survived the flood and goes first; only the
        // newest restarted pages are left behind it.
        assert_eq!(ob.peek("a").unwrap().1.record.event_id, "msg_1");
        // A recovery also overtakes the restarted backlog, in order after
        // the suspected page of its incident.
        ob.enqueue(&rec_of(200, EventKind::Recovered), T0).unwrap();
        drop(ob);
        // Priorities survive a restart (they are read back from the files).
        let (ob, rep) = Outbox::open(dir.path(), &names(&["a"]), limits).unwrap();
        assert_eq!(rep.loaded, 4);
        assert_eq!(drain(&ob, "a"), ["msg_1", "msg_200", "msg_198", "msg_199"]);
        let files = fs::read_dir(dir.path().join("a")).unwrap().count();
        assert_eq!(files, 0, "dropped records are removed from disk too");
    }

    #[test]
    fn a_queue_full_of_urgent_pages_refuses_routine_ones() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            max_entries_per_webhook: 2,
        };
        let (ob, _) = Outbox::open(dir.path(), &names(&["a"]), limits).unwrap();
        for i in 0..2 {
            ob.enqueue(&rec_of(i, EventKind::Suspected), T0).unwrap();
        }
        let r = ob.enqueue(&rec_of(2, EventKind::Restarted), T0).unwrap();
        assert_eq!(r.dropped, ["a"], "the routine newcomer is the one dropped");
        // A newer urgent page still gets in: the newest state matters.
        let r = ob.enqueue(&rec_of(3, EventKind::Recovered), T0).unwrap();
        assert_eq!(r.dropped, ["a"]);
        assert_eq!(drain(&ob, "a"), ["msg_1", "msg_3"]);
    }

    /// Files in a queue directory, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn enqueue_is_all_or_nothing_across_webhooks() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = names(&["a", "b"]);
        let (ob, _) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        ob.enqueue(&rec(0), T0).unwrap();
        // Queue b refuses the next record's temp file (the name is taken
        // by a directory: what any failing create looks like), queue a
        // accepts it.
        let blocker = dir.path().join("b").join(format!(".{:020}.tmp", 2));
        fs::create_dir(&blocker).unwrap();
        let r = ob.enqueue(&rec(1), T0).unwrap();
        assert!(r.not_durable.is_some(), "{r:?}");
        assert!(ob.last_error().is_some());
        // Nothing of it on disk, in either queue...
        assert_eq!(files(&dir.path().join("a")), [format!("{:020}.rec", 1)]);
        // ... but held in memory for both, and delivered as usual.
        assert_eq!(ob.unsaved(), 1);
        assert_eq!(ob.pending_for("a"), 2);
        assert_eq!(ob.pending_for("b"), 2);
        // A rename that fails on the second queue undoes the first.
        fs::remove_dir(&blocker).unwrap();
        let taken = dir.path().join("b").join(format!("{:020}.rec", 3));
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("x"), b"x").unwrap();
        let r = ob.enqueue(&rec(2), T0).unwrap();
        assert!(r.not_durable.is_some(), "{r:?}");
        assert_eq!(files(&dir.path().join("a")), [format!("{:020}.rec", 1)]);
        assert_eq!(ob.unsaved(), 2);
        // The disk is back: both are written, to both queues.
        fs::remove_dir_all(&taken).unwrap();
        assert_eq!(ob.persist_unsaved().unwrap(), 2);
        assert_eq!(ob.unsaved(), 0);
        assert!(ob.last_error().is_none());
        drop(ob);
        let (ob, rep) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        assert_eq!(rep.loaded, 6);
        for hook in ["a", "b"] {
            assert_eq!(drain(&ob, hook), ["msg_0", "msg_1", "msg_2"], "{hook}");
        }
    }

    #[test]
    fn a_record_delivered_before_the_disk_came_back_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = Outbox::open(dir.path(), &names(&["a"]), OutboxLimits::default()).unwrap();
        let blocker = dir.path().join("a").join(format!(".{:020}.tmp", 1));
        fs::create_dir(&blocker).unwrap();
        assert!(ob.enqueue(&rec(0), T0).unwrap().not_durable.is_some());
        assert_eq!(drain(&ob, "a"), ["msg_0"]);
        assert_eq!(ob.unsaved(), 0);
        assert!(ob.last_error().is_none());
        fs::remove_dir(&blocker).unwrap();
        assert_eq!(ob.persist_unsaved().unwrap(), 0);
        assert!(files(&dir.path().join("a")).is_empty());
    }

    #[test]
    fn unreadable_records_are_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = names(&["a"]);
        let (ob, _) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        for i in 0..3 {
            ob.enqueue(&rec(i), T0).unwrap();
        }
        drop(ob);
        // A record name that cannot be read as a file (EISDIR: the same
        // path an unreadable disk block takes), and a stray temp
        // directory that cannot be removed.
        let q = dir.path().join("a");
        let bad = q.join(format!("{:020}.rec", 2));
        fs::remove_file(&bad).unwrap();
        fs::create_dir(&bad).unwrap();
        fs::create_dir(q.join(".00000000000000000042.tmp")).unwrap();
        let (ob, rep) = Outbox::open(dir.path(), &hooks, OutboxLimits::default()).unwrap();
        assert_eq!(rep.loaded, 2);
        assert_eq!(rep.unreadable, 1);
        assert!(q.join(format!("{:020}.corrupt", 2)).exists(), "set aside");
        // Sequence numbers continue after every record name seen, so a new
        // record never reuses the quarantined one's.
        ob.enqueue(&rec(9), T0).unwrap();
        assert!(q.join(format!("{:020}.rec", 4)).exists());
        assert_eq!(drain(&ob, "a"), ["msg_0", "msg_2", "msg_9"]);
    }

    /// Child half of `a_full_disk_loses_nothing_once_space_is_back`: runs
    /// under a file size limit of a few hundred bytes (SIGXFSZ ignored),
    /// so every record write really fails with EFBIG, as on a full disk.
    #[test]
    #[ignore = "child half of a_full_disk_loses_nothing_once_space_is_back, which runs it"]
    fn full_disk_child() {
        let Ok(dir) = std::env::var("PHIMON_OUTBOX_FULL_CHILD_DIR") else {
            return;
        };
        let (ob, _) = Outbox::open(
            Path::new(&dir),
            &names(&["a", "b"]),
            OutboxLimits::default(),
        )
        .unwrap();
        let mut out = std::io::stdout();
        for i in 0..3 {
            let r = ob.enqueue(&rec(i), T0).unwrap();
            let e = r.not_durable.map(|e| e.to_string()).unwrap_or_default();
            writeln!(out, "ENQUEUED {i} {e}").unwrap();
        }
        writeln!(out, "UNSAVED {}", ob.unsaved()).unwrap();
        out.flush().unwrap();
        // The parent lifts the limit, then says so.
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        let n = ob.persist_unsaved().unwrap();
        writeln!(out, "PERSISTED {n} UNSAVED {}", ob.unsaved()).unwrap();
    }

    #[test]
    fn a_full_disk_loses_nothing_once_space_is_back() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        // `trap '' XFSZ` is inherited through exec: writes past the limit
        // fail with EFBIG instead of killing the child.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "trap '' XFSZ; exec prlimit --fsize=200:unlimited \"$0\" \"$@\"",
            ])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "outbox::tests::full_disk_child",
                "--nocapture",
            ])
            .env("PHIMON_OUTBOX_FULL_CHILD_DIR", dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |prefix: &str| loop {
            let l = lines.next().unwrap().unwrap();
            if l.starts_with(prefix) {
                return l;
            }
        };
        for i in 0..3 {
            let l = next("ENQUEUED");
            assert!(l.starts_with(&format!("ENQUEUED {i} outbox write")), "{l}");
            assert!(l.contains("File too large"), "{l}");
        }
        assert_eq!(next("UNSAVED"), "UNSAVED 3");
        assert!(
            files(&dir.path().join("a")).is_empty() && files(&dir.path().join("b")).is_empty(),
            "nothing half-written"
        );
        let pid = child.id().to_string();
        let lifted = std::process::Command::new("prlimit")
            .args(["--pid", &pid, "--fsize=unlimited:unlimited"])
            .status()
            .unwrap();
        assert!(lifted.success());
        writeln!(child.stdin.take().unwrap(), "go").unwrap();
        assert_eq!(next("PERSISTED"), "PERSISTED 3 UNSAVED 0");
        assert!(child.wait().unwrap().success());
        let (ob, rep) =
            Outbox::open(dir.path(), &names(&["a", "b"]), OutboxLimits::default()).unwrap();
        assert_eq!(rep.loaded, 6);
        for hook in ["a", "b"] {
            assert_eq!(drain(&ob, hook), ["msg_0", "msg_1", "msg_2"], "{hook}");
        }
    }

    #[test]
    fn bad_webhook_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "..", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(matches!(
                Outbox::open(dir.path(), &names(&[bad]), OutboxLimits::default()),
                Err(OutboxError::InvalidWebhookName { .. })
            ));
        }
    }

    proptest! {
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            // No panic, and whatever decodes is an entry that encodes
            // again to a record that decodes to the same entry.
            let mut framed = MAGIC.to_vec();
            framed.push(VERSION);
            framed.extend_from_slice(&bytes);
            for input in [&bytes, &framed] {
                if let Ok(entry) = decode(input) {
                    let again = decode(&encode(&entry).unwrap());
                    prop_assert_eq!(again.ok(), Some(entry));
                }
            }
        }

        #[test]
        fn any_truncation_is_detected(cut in 0usize..400) {
            let bytes = encode(&OutboxEntry { record: rec(1), enqueued_unix_ms: 5 }).unwrap();
            let cut = cut % bytes.len();
            prop_assert!(decode(&bytes[..cut]).is_err());
            prop_assert!(decode(&bytes).is_ok());
        }
    }

    /// Child half of `survives_kill_9`: enqueues forever, printing each
    /// acknowledged sequence. Ignored, so it is not listed as a passing
    /// test of its own; the parent runs it with `--ignored --exact`, and
    /// it does nothing without the parent's directory.
    #[test]
    #[ignore = "child half of survives_kill_9, which runs it"]
    fn kill_9_child() {
        let Ok(dir) = std::env::var("PHIMON_OUTBOX_KILL_CHILD_DIR") else {
            return;
        };
        let (ob, _) = Outbox::open(
            Path::new(&dir),
            &names(&["a", "b"]),
            OutboxLimits::default(),
        )
        .unwrap();
        let mut out = std::io::stdout();
        for i in 0.. {
            ob.enqueue(&rec(i), T0).unwrap();
            writeln!(out, "ACK {i}").unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn survives_kill_9() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "outbox::tests::kill_9_child",
                "--nocapture",
            ])
            .env("PHIMON_OUTBOX_KILL_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = 0u64;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ACK ") {
                acked = n.trim().parse::<u64>().unwrap() + 1;
                if acked >= 40 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL, mid-write most likely
        child.wait().unwrap();
        assert!(acked >= 40, "child acknowledged only {acked}");
        let (ob, rep) =
            Outbox::open(dir.path(), &names(&["a", "b"]), OutboxLimits::default()).unwrap();
        assert_eq!(rep.corrupt, 0, "{rep:?}");
        for hook in ["a", "b"] {
            let mut ids = Vec::new();
            while let Some((seq, e)) = ob.peek(hook) {
                ids.push(e.record.at_unix_ms - 1_700_000_000_000);
                ob.ack(hook, seq).unwrap();
            }
            // Every acknowledged record is there, in order, with nothing
            // missing in between.
            assert!(ids.len() as u64 >= acked, "{hook}: {} < {acked}", ids.len());
            assert!(
                ids.iter().enumerate().all(|(i, v)| *v == i as u64),
                "{ids:?}"
            );
        }
    }
}
