//! `phimon run --record-arrivals DIR`: writes, per peer and generation,
//! the times this node saw the peer's heartbeat advance, in the trace
//! format `phimon eval` replays (`DIR/<peer>.<generation>.trace`).
//!
//! These are exactly the arrivals the node's detector learns from, so an
//! operator can replay their own fleet's traffic through every model and
//! threshold (`phimon eval --compare --corpus DIR`) instead of trusting
//! generated traces. Times are milliseconds since the sidecar started
//! (monotonic); `started_unix_ms` lines them up with the wall clock (to
//! add a `crash_ms` for a peer that was killed on purpose).
//!
//! Lines are buffered per peer and appended every [`FLUSH_EVERY`], so a
//! fleet of peers does not hold a file descriptor each and the loop does
//! one small write per peer and flush. A stall of this process becomes an
//! `outage_ms` range (the peers were alive but could not be heard), a
//! clean stop appends `end_ms`. Each file is capped at
//! [`MAX_FILE_BYTES`]: a forgotten recorder cannot fill the disk.

use phimon_detector::Timestamp;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often buffered lines are appended to the files.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Size at which a peer's file stops growing (about 3 months of 1 s
/// heartbeats).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Traces one run writes at most: a member that gossips thousands of
/// invented ids must not make the recorder create a file for each.
pub const MAX_TRACES: usize = 4096;

/// One open trace: a peer's generation.
struct PeerTrace {
    path: PathBuf,
    generation: u64,
    pending: String,
    /// The latest time buffered (an arrival or a stall's end): messages of
    /// several connections can be handled slightly out of their arrival
    /// order, and a trace must not go back in time (the detector takes the
    /// later of the two as well).
    last: Timestamp,
    /// `last` as of the latest append: where the file ends if recording
    /// stops.
    flushed: Timestamp,
    written: u64,
    /// Stopped because of the size cap or a write error (reported once).
    stopped: bool,
}

/// The recorder the driving loop feeds.
pub struct ArrivalRecorder {
    dir: PathBuf,
    header: String,
    peers: HashMap<String, PeerTrace>,
    last_flush: Timestamp,
    /// Traces started so far, and whether the cap was reported.
    started: usize,
    capped: bool,
    /// [`MAX_FILE_BYTES`], smaller in tests.
    max_file_bytes: u64,
}

/// A file name for a node id: ids are DNS-like names, but nothing in a
/// name taken from the network may steer a path.
fn file_stem(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

impl ArrivalRecorder {
    /// A recorder writing into `dir` (created if missing). `interval` is
    /// the gossip interval, written as the traces' `interval_ms`.
    pub fn create(
        dir: &Path,
        observer: &str,
        interval: Duration,
        started_unix_ms: u128,
    ) -> std::io::Result<ArrivalRecorder> {
        std::fs::create_dir_all(dir)?;
        // Fail now, not at the first heartbeat, if the directory is not
        // writable.
        let probe = dir.join(".phimon-record-probe");
        std::fs::write(&probe, b"")?;
        let _ = std::fs::remove_file(&probe);
        let mut header = String::new();
        let _ = writeln!(
            header,
            "# recorded_by=phimon {} run --record-arrivals",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(header, "# observer={observer}");
        let _ = writeln!(header, "# interval_ms={}", interval.as_secs_f64() * 1000.0);
        let _ = writeln!(header, "# started_unix_ms={started_unix_ms}");
        Ok(ArrivalRecorder {
            dir: dir.to_owned(),
            header,
            peers: HashMap::new(),
            last_flush: Timestamp::ZERO,
            started: 0,
            capped: false,
            max_file_bytes: MAX_FILE_BYTES,
        })
    }

    /// `node`'s heartbeat (of `generation`) advanced at `at`. A new
    /// generation closes the previous one's trace (the old process is
    /// gone) and starts another.
    pub fn heartbeat(&mut self, node: &str, generation: u64, at: Timestamp) {
        if let Some(p) = self.peers.get(node) {
            if p.generation != generation {
                self.close(node, at);
            }
        }
        if !self.peers.contains_key(node) {
            if self.started >= MAX_TRACES {
                if !self.capped {
                    self.capped = true;
                    tracing::warn!(
                        "{MAX_TRACES} arrival traces written: no new peers are recorded"
                    );
                }
                return;
            }
            self.started += 1;
        }
        let p = self.peers.entry(node.to_owned()).or_insert_with(|| {
            let path = self
                .dir
                .join(format!("{}.{generation}.trace", file_stem(node)));
            let mut pending = format!("{}# peer={node}\n# generation={generation}\n", self.header);
            pending.push_str("arrival_ms\n");
            PeerTrace {
                path,
                generation,
                pending,
                last: Timestamp::ZERO,
                flushed: Timestamp::ZERO,
                written: 0,
                stopped: false,
            }
        });
        if !p.stopped {
            p.last = p.last.max(at);
            let _ = writeln!(p.pending, "{:.3}", p.last.as_millis_f64());
        }
    }

    /// This process was stalled from `from` to `to`: every peer was alive
    /// but unheard for that span.
    pub fn observer_stalled(&mut self, from: Timestamp, to: Timestamp) {
        if to <= from {
            return;
        }
        for p in self.peers.values_mut().filter(|p| !p.stopped) {
            let _ = writeln!(
                p.pending,
                "# outage_ms={:.3}-{:.3}",
                from.as_millis_f64(),
                to.as_millis_f64()
            );
            // Arrivals handled after the stall are written at its end at
            // the earliest, and the trace cannot end inside the outage.
            p.last = p.last.max(to);
        }
    }

    /// `node` left or was forgotten: its trace ends at `at`.
    pub fn close(&mut self, node: &str, at: Timestamp) {
        if let Some(mut p) = self.peers.remove(node) {
            if !p.stopped {
                let _ = writeln!(p.pending, "# end_ms={:.3}", at.as_millis_f64());
                Self::append(&mut p, self.max_file_bytes);
            }
        }
    }

    /// Appends what is buffered, at most every [`FLUSH_EVERY`].
    pub fn tick(&mut self, now: Timestamp) {
        if now.saturating_duration_since(self.last_flush) < FLUSH_EVERY {
            return;
        }
        self.last_flush = now;
        for p in self.peers.values_mut() {
            Self::append(p, self.max_file_bytes);
        }
    }

    /// Clean stop: every trace ends now.
    pub fn finish(&mut self, now: Timestamp) {
        let nodes: Vec<String> = self.peers.keys().cloned().collect();
        for node in nodes {
            self.close(&node, now);
        }
    }

    /// Appends the buffered lines. A stopped trace already has its end.
    fn append(p: &mut PeerTrace, max_bytes: u64) {
        if p.pending.is_empty() || p.stopped {
            return;
        }
        if p.written + p.pending.len() as u64 > max_bytes {
            tracing::warn!(
                "arrival trace {} reached {max_bytes} bytes: no longer recorded",
                p.path.display()
            );
            // The trace stays valid: it ends where what is on disk ends.
            p.pending.clear();
            let _ = writeln!(p.pending, "# end_ms={:.3}", p.flushed.as_millis_f64());
            p.stopped = true;
        }
        let len = p.pending.len() as u64;
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.path)
            .and_then(|mut f| f.write_all(p.pending.as_bytes()));
        match result {
            Ok(()) => {
                p.written += len;
                p.flushed = p.last;
            }
            Err(e) => {
                tracing::warn!(
                    "cannot write arrival trace {}: {e}; no longer recorded",
                    p.path.display()
                );
                p.stopped = true;
            }
        }
        p.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phimon_eval::trace::Trace;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn writes_traces_eval_can_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut r =
            ArrivalRecorder::create(dir.path(), "node-a", Duration::from_millis(500), 7).unwrap();
        for i in 0..10 {
            r.heartbeat("node-b", 3, t(i * 500));
        }
        r.tick(t(4_600));
        r.observer_stalled(t(4_700), t(6_000));
        r.heartbeat("node-b", 3, t(6_100));
        // Handled after a later one: written at the later time.
        r.heartbeat("node-b", 3, t(6_050));
        // A restart: the old generation's trace ends, a new one starts.
        r.heartbeat("node-b", 4, t(9_000));
        r.heartbeat("../evil/x", 1, t(9_100));
        r.finish(t(10_000));

        let old = std::fs::read_to_string(dir.path().join("node-b.3.trace")).unwrap();
        let trace = Trace::parse(&old).unwrap();
        assert_eq!(trace.arrivals_ms.len(), 12);
        assert_eq!(trace.arrivals_ms[10..], [6_100.0, 6_100.0]);
        assert_eq!(trace.interval_ms, 500.0);
        assert_eq!(trace.end_ms, 9_000.0);
        assert_eq!(trace.outages_ms, vec![(4_700.0, 6_000.0)]);
        assert_eq!(trace.meta("observer"), Some("node-a"));
        assert_eq!(trace.meta("started_unix_ms"), Some("7"));

        let new =
            Trace::parse(&std::fs::read_to_string(dir.path().join("node-b.4.trace")).unwrap())
                .unwrap();
        assert_eq!(
            (new.arrivals_ms.clone(), new.end_ms),
            (vec![9_000.0], 10_000.0)
        );
        // Path separators in a node id do not escape the directory.
        assert!(dir.path().join("_evil_x.1.trace").exists());
    }

    #[test]
    fn invented_ids_cannot_create_unbounded_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ArrivalRecorder::create(dir.path(), "a", Duration::from_secs(1), 0).unwrap();
        for i in 0..MAX_TRACES + 50 {
            r.heartbeat(&format!("junk-{i}"), 1, t(1));
        }
        // Known peers keep being recorded.
        r.heartbeat("junk-0", 1, t(2));
        r.finish(t(3));
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, MAX_TRACES);
        let first = std::fs::read_to_string(dir.path().join("junk-0.1.trace")).unwrap();
        assert_eq!(Trace::parse(&first).unwrap().arrivals_ms, vec![1.0, 2.0]);
    }

    #[test]
    fn a_full_trace_stops_where_its_file_ends_and_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ArrivalRecorder::create(dir.path(), "a", Duration::from_secs(1), 0).unwrap();
        r.max_file_bytes = 400;
        let mut now = 0;
        for _ in 0..60 {
            now += 1_000;
            r.heartbeat("b", 1, t(now));
            r.tick(t(now));
        }
        r.observer_stalled(t(now), t(now + 500));
        r.finish(t(now + 1_000));
        let text = std::fs::read_to_string(dir.path().join("b.1.trace")).unwrap();
        assert!(text.len() <= 420, "{} bytes", text.len());
        let trace = Trace::parse(&text).unwrap();
        // It ends at the last arrival on disk: no silence is made up.
        let last = *trace.arrivals_ms.last().unwrap();
        assert!(last < 60_000.0, "{last}");
        assert_eq!(trace.end_ms, last);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        assert!(ArrivalRecorder::create(&file, "a", Duration::from_secs(1), 0).is_err());
    }
}
