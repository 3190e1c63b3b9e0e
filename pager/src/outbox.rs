//! The durable alert outbox: every alert event is on disk, fsynced,
//! before any delivery is attempted, and stays there until its receiver
//! accepted it.
//!
//! Layout: `<dir>/<webhook>/<seq>.rec`, one file per (event, webhook),
//! `seq` a zero-padded sequence number that orders the queue. Each
//! webhook has its own queue, so one receiver being down delays no other,
//! and a queue is delivered strictly in order, which preserves the order
//! of the events of every incident.
//!
//! Writing a record: write `.<seq>.tmp`, fsync it, rename it to
//! `<seq>.rec`, fsync the directory. A `kill -9` or power loss mid-write
//! leaves at most a temp file, deleted at the next open (its enqueue never
//! returned, so nothing acknowledged is lost). Every record file carries
//! a magic, a version, its payload length and a checksum; a file that is
//! short or garbled anyway (a filesystem that reorders writes, a bad disk)
//! is detected, counted in [`OpenReport::corrupt`], renamed to
//! `<seq>.corrupt` for inspection and skipped; never a panic.
//!
//! Delivered records are unlinked (without a directory fsync: a record
//! that reappears after a crash is delivered again, and receivers dedupe
//! on its event id). Each queue holds at most
//! [`OutboxLimits::max_entries_per_webhook`] records; when full, the
//! oldest record is dropped to make room (counted): during a long receiver
//! outage the newest state of the fleet is what on-call needs.

use phimon_alert::AlertRecord;
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
    /// beyond it the oldest record is dropped.
    pub max_entries_per_webhook: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_entries_per_webhook: 10_000,
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
    /// Temp files of interrupted writes, removed.
    pub temp_removed: usize,
}

/// What [`Outbox::enqueue`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Webhooks whose queue was full and dropped its oldest record.
    pub dropped: Vec<String>,
}

struct Queue {
    dir: PathBuf,
    entries: BTreeMap<u64, OutboxEntry>,
    notify: Arc<Notify>,
}

struct Inner {
    queues: BTreeMap<String, Queue>,
    next_seq: u64,
    limits: OutboxLimits,
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
                &inner
                    .queues
                    .values()
                    .map(|q| q.entries.len())
                    .sum::<usize>(),
            )
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

impl Outbox {
    /// Opens (creating it if needed) the outbox in `dir` with one queue per
    /// webhook name, loading what a previous run left. Queue directories
    /// of webhooks no longer configured are left alone.
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
            let mut entries = BTreeMap::new();
            for dirent in fs::read_dir(&qdir).map_err(io("list", &qdir))? {
                let dirent = dirent.map_err(io("list", &qdir))?;
                let path = dirent.path();
                let file_name = dirent.file_name().to_string_lossy().into_owned();
                if file_name.ends_with(".tmp") {
                    fs::remove_file(&path).map_err(io("remove", &path))?;
                    report.temp_removed += 1;
                    continue;
                }
                let Some(seq) = seq_of(&file_name) else {
                    continue; // .corrupt files and strangers
                };
                next_seq = next_seq.max(seq + 1);
                match read_record(&path)? {
                    Ok(entry) => {
                        entries.insert(seq, entry);
                    }
                    Err(why) => {
                        tracing::warn!(path = %path.display(), reason = ?why, "corrupt outbox record skipped");
                        report.corrupt += 1;
                        let aside = path.with_extension("corrupt");
                        fs::rename(&path, &aside).map_err(io("rename", &path))?;
                    }
                }
            }
            report.loaded += entries.len();
            queues.insert(
                name.clone(),
                Queue {
                    dir: qdir,
                    entries,
                    notify: Arc::new(Notify::new()),
                },
            );
        }
        fsync_dir(dir)?;
        let outbox = Outbox {
            inner: Arc::new(Mutex::new(Inner {
                queues,
                next_seq,
                limits,
            })),
        };
        Ok((outbox, report))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a single map operation after the file operation).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists `record` in every webhook's queue (file and directory
    /// fsynced) and wakes the delivery workers. When this returns `Ok` the
    /// event survives a crash.
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
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let max = inner.limits.max_entries_per_webhook.max(1);
        let mut report = EnqueueReport::default();
        for (name, q) in inner.queues.iter_mut() {
            while q.entries.len() >= max {
                let Some((&oldest, _)) = q.entries.iter().next() else {
                    break;
                };
                let path = q.dir.join(format!("{oldest:020}.rec"));
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("remove", &path)(e)),
                }
                q.entries.remove(&oldest);
                report.dropped.push(name.clone());
            }
            let tmp = q.dir.join(format!(".{seq:020}.tmp"));
            let fin = q.dir.join(format!("{seq:020}.rec"));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            f.write_all(&bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))?;
            drop(f);
            fs::rename(&tmp, &fin).map_err(io("rename", &tmp))?;
            fsync_dir(&q.dir)?;
            q.entries.insert(seq, entry.clone());
        }
        for q in inner.queues.values() {
            q.notify.notify_one();
        }
        Ok(report)
    }

    /// The oldest undelivered record of `webhook`, with its sequence
    /// number for [`ack`](Self::ack).
    pub fn peek(&self, webhook: &str) -> Option<(u64, OutboxEntry)> {
        let inner = self.lock();
        let q = inner.queues.get(webhook)?;
        q.entries.iter().next().map(|(s, e)| (*s, e.clone()))
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
        let path = q.dir.join(format!("{seq:020}.rec"));
        // Forget it in memory even if the unlink fails, so delivery moves
        // on; the file then comes back after a restart and is delivered
        // again (receivers dedupe on the event id).
        q.entries.remove(&seq);
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
        self.lock().queues.values().map(|q| q.entries.len()).sum()
    }

    /// Undelivered records of one webhook.
    pub fn pending_for(&self, webhook: &str) -> usize {
        self.lock()
            .queues
            .get(webhook)
            .map_or(0, |q| q.entries.len())
    }

    /// When the oldest undelivered record was enqueued.
    pub fn oldest_enqueued(&self) -> Option<SystemTime> {
        self.lock()
            .queues
            .values()
            .filter_map(|q| q.entries.values().next())
            .map(OutboxEntry::enqueued)
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
        AlertRecord {
            incident_id: format!("inc_{i}"),
            event_id: format!("msg_{i}"),
            event: EventKind::Suspected,
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
