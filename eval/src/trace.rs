//! Heartbeat arrival traces: the input of `phimon eval`.
//!
//! Format: `# key=value` header lines (`interval_ms` and `end_ms` required,
//! `crash_ms` optional, `outage_ms` optional and repeatable, other keys
//! kept as metadata), then a line `arrival_ms`, then one arrival time per
//! line in milliseconds (float, non-decreasing). Lines starting with `#`
//! without `=` are comments; blank lines are ignored. Header lines may
//! also come after the data: `phimon run --record-arrivals` appends
//! `end_ms` (and `outage_ms` for its own stalls) as it goes.
//!
//! `# outage_ms=START-END` marks a time range during which the sender was
//! alive but its heartbeats could not reach the observer (a partition, a
//! cut link). Suspicion is the right reaction to it, so a suspicion that
//! starts inside an outage is not a mistake; [`crate::qos`] reports it as
//! an outage detection instead. The outage's silence lasts until the first
//! heartbeat that arrives at or after END (the heartbeats that were in
//! flight or queued still have to get through), so the exempt span is
//! START to that arrival. Ranges must be increasing, must not overlap, and
//! must end by `crash_ms` (or `end_ms`).
//!
//! ```text
//! # interval_ms=1000
//! # end_ms=65000
//! # crash_ms=5200
//! # outage_ms=2000-3500
//! arrival_ms
//! 0
//! 1001.5
//! ```
//!
//! Optionally each arrival carries the heartbeat's sequence number (the
//! sender's counter, one per heartbeat): the column line is then
//! `arrival_ms,seq` and every data line `ARRIVAL,SEQ`. Sequence numbers
//! need not increase (a delayed heartbeat arrives after a later one); a
//! gap in them is a lost heartbeat. Replays feed such traces to
//! [`AccrualDetector::record_seq`](crate::AccrualDetector::record_seq)
//! (see [`crate::qos::record_arrival`]), the others to `record`.
//!
//! ```text
//! # interval_ms=1000
//! # end_ms=65000
//! arrival_ms,seq
//! 0,0
//! 2001.5,2
//! ```

use std::fmt::Write as _;

/// Why a trace was rejected. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A required `# key=value` header is absent.
    #[error(
        "missing header `# {key}=...` (required; a header line may stand anywhere in the file)"
    )]
    MissingHeader {
        /// The missing key.
        key: &'static str,
    },
    /// A header's value is not a finite, non-negative number.
    #[error("line {line}: header `{key}` has value {value:?}; expected a finite number >= 0")]
    BadHeader {
        /// Line number.
        line: usize,
        /// Header key.
        key: String,
        /// The offending text.
        value: String,
    },
    /// The same header key appears twice.
    #[error("line {line}: header `{key}` given twice")]
    DuplicateHeader {
        /// Line number.
        line: usize,
        /// Header key.
        key: String,
    },
    /// A data line came before the column line (`arrival_ms`, or
    /// `arrival_ms,seq`).
    #[error(
        "line {line}: expected the column line `arrival_ms` (or `arrival_ms,seq`), found {text:?}"
    )]
    MissingColumn {
        /// Line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// An arrival is not a finite, non-negative number.
    #[error("line {line}: arrival {text:?} is not a finite number >= 0 (milliseconds)")]
    BadArrival {
        /// Line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// A sequence number is missing or not an integer in 0..2^64 (in a
    /// trace whose column line is `arrival_ms,seq`).
    #[error(
        "line {line}: expected `ARRIVAL,SEQ` with SEQ an integer >= 0 (the column line is `arrival_ms,seq`), found {text:?}"
    )]
    BadSeq {
        /// Line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// An arrival is earlier than the one before it.
    #[error(
        "line {line}: arrival {value} ms is earlier than the previous arrival {previous} ms; arrivals must not decrease"
    )]
    Decreasing {
        /// Line number.
        line: usize,
        /// The arrival.
        value: f64,
        /// The previous arrival.
        previous: f64,
    },
    /// The trace has no arrivals.
    #[error("the trace has no arrivals after the `arrival_ms` line")]
    NoArrivals,
    /// `end_ms` or `crash_ms` are inconsistent with the arrivals.
    #[error("inconsistent trace: {0}")]
    Inconsistent(String),
    /// An `outage_ms` header is not a valid range.
    #[error("line {line}: outage_ms={value:?}: {reason}")]
    BadOutage {
        /// Line number.
        line: usize,
        /// The offending text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A parsed arrival trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The sender's heartbeat interval, ms (the detector's prior).
    pub interval_ms: f64,
    /// End of observation, ms; the trace says nothing after it.
    pub end_ms: f64,
    /// When the sender crashed, ms, if it did.
    pub crash_ms: Option<f64>,
    /// Outages, `(start, end)` in ms, increasing and disjoint: the sender
    /// was alive but unreachable (see the module docs).
    pub outages_ms: Vec<(f64, f64)>,
    /// Other header keys, in file order (e.g. `scenario=gc-pauses`).
    pub metadata: Vec<(String, String)>,
    /// Arrival times, ms, non-decreasing.
    pub arrivals_ms: Vec<f64>,
    /// The sequence number of each arrival (as long as `arrivals_ms`), if
    /// the trace has the `seq` column.
    pub seqs: Option<Vec<u64>>,
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Parses the value of an `outage_ms` header, `START-END`, checking it
/// against the previous outage.
fn parse_outage(
    line: usize,
    v: &str,
    previous: Option<&(usize, f64, f64)>,
) -> Result<(usize, f64, f64), TraceError> {
    let bad = |reason: String| TraceError::BadOutage {
        line,
        value: v.to_string(),
        reason,
    };
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| bad("expected START-END in milliseconds, e.g. 1200000-1208000".into()))?;
    let start =
        parse_number(a).ok_or_else(|| bad(format!("start {a:?} is not a finite number >= 0")))?;
    let end =
        parse_number(b).ok_or_else(|| bad(format!("end {b:?} is not a finite number >= 0")))?;
    if end <= start {
        return Err(bad("the end must be after the start".into()));
    }
    if let Some(&(prev_line, _, prev_end)) = previous {
        if start < prev_end {
            return Err(bad(format!(
                "starts before the outage of line {prev_line} ends ({prev_end}); list outages in order, without overlap"
            )));
        }
    }
    Ok((line, start, end))
}

impl Trace {
    /// Parses a trace from its text.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let mut interval = None;
        let mut end = None;
        let mut crash = None;
        // (line, start, end) in file order, checked once end_ms is known.
        let mut outages: Vec<(usize, f64, f64)> = Vec::new();
        let mut metadata: Vec<(String, String)> = Vec::new();
        let mut in_data = false;
        let mut with_seq = false;
        let mut arrivals: Vec<f64> = Vec::new();
        let mut seqs: Vec<u64> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let s = raw.trim();
            if s.is_empty() {
                continue;
            }
            if let Some(rest) = s.strip_prefix('#') {
                let Some((k, v)) = rest.split_once('=') else {
                    continue; // a comment
                };
                let (k, v) = (k.trim(), v.trim());
                if k == "outage_ms" {
                    outages.push(parse_outage(line, v, outages.last())?);
                    continue;
                }
                let slot = match k {
                    "interval_ms" => Some(&mut interval),
                    "end_ms" => Some(&mut end),
                    "crash_ms" => Some(&mut crash),
                    _ => None,
                };
                match slot {
                    Some(slot) => {
                        if slot.is_some() {
                            return Err(TraceError::DuplicateHeader {
                                line,
                                key: k.to_string(),
                            });
                        }
                        let value = parse_number(v).ok_or_else(|| TraceError::BadHeader {
                            line,
                            key: k.to_string(),
                            value: v.to_string(),
                        })?;
                        *slot = Some(value);
                    }
                    None => metadata.push((k.to_string(), v.to_string())),
                }
                continue;
            }
            if !in_data {
                with_seq = match s.split(',').map(str::trim).collect::<Vec<_>>()[..] {
                    ["arrival_ms"] => false,
                    ["arrival_ms", "seq"] => true,
                    _ => {
                        return Err(TraceError::MissingColumn {
                            line,
                            text: s.to_string(),
                        });
                    }
                };
                in_data = true;
                continue;
            }
            let arrival = if with_seq {
                let bad = || TraceError::BadSeq {
                    line,
                    text: s.to_string(),
                };
                let (arrival, seq) = s.split_once(',').ok_or_else(bad)?;
                seqs.push(seq.trim().parse::<u64>().map_err(|_| bad())?);
                arrival
            } else {
                s
            };
            let value = parse_number(arrival).ok_or_else(|| TraceError::BadArrival {
                line,
                text: s.to_string(),
            })?;
            if let Some(&previous) = arrivals.last() {
                if value < previous {
                    return Err(TraceError::Decreasing {
                        line,
                        value,
                        previous,
                    });
                }
            }
            arrivals.push(value);
        }
        let interval_ms = interval.ok_or(TraceError::MissingHeader { key: "interval_ms" })?;
        let end_ms = end.ok_or(TraceError::MissingHeader { key: "end_ms" })?;
        if interval_ms <= 0.0 {
            return Err(TraceError::Inconsistent("interval_ms must be > 0".into()));
        }
        let (Some(&first), Some(&last)) = (arrivals.first(), arrivals.last()) else {
            return Err(TraceError::NoArrivals);
        };
        if end_ms < last {
            return Err(TraceError::Inconsistent(format!(
                "end_ms={end_ms} is before the last arrival {last}"
            )));
        }
        if let Some(c) = crash {
            if c < first || c > end_ms {
                return Err(TraceError::Inconsistent(format!(
                    "crash_ms={c} must lie between the first arrival {first} and end_ms={end_ms}"
                )));
            }
        }
        let alive_until = crash.unwrap_or(end_ms);
        if let Some(&(line, start, stop)) = outages.iter().find(|o| o.2 > alive_until) {
            let what = if crash.is_some() {
                "crash_ms"
            } else {
                "end_ms"
            };
            return Err(TraceError::BadOutage {
                line,
                value: format!("{start}-{stop}"),
                reason: format!(
                    "ends after {what}={alive_until}; an outage is a time the sender was alive"
                ),
            });
        }
        Ok(Trace {
            interval_ms,
            end_ms,
            crash_ms: crash,
            outages_ms: outages.into_iter().map(|(_, s, e)| (s, e)).collect(),
            metadata,
            arrivals_ms: arrivals,
            seqs: with_seq.then_some(seqs),
        })
    }

    /// Renders the trace in its text format (the inverse of [`parse`](Self::parse)).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.arrivals_ms.len() * 12 + 128);
        for (k, v) in &self.metadata {
            let _ = writeln!(out, "# {k}={v}");
        }
        let _ = writeln!(out, "# interval_ms={}", self.interval_ms);
        let _ = writeln!(out, "# end_ms={}", self.end_ms);
        if let Some(c) = self.crash_ms {
            let _ = writeln!(out, "# crash_ms={c}");
        }
        for (start, end) in &self.outages_ms {
            let _ = writeln!(out, "# outage_ms={start}-{end}");
        }
        match &self.seqs {
            Some(seqs) => {
                out.push_str("arrival_ms,seq\n");
                for (a, seq) in self.arrivals_ms.iter().zip(seqs) {
                    let _ = writeln!(out, "{a},{seq}");
                }
            }
            None => {
                out.push_str("arrival_ms\n");
                for a in &self.arrivals_ms {
                    let _ = writeln!(out, "{a}");
                }
            }
        }
        out
    }

    /// The sequence number of arrival `i`, if the trace has them.
    pub fn seq(&self, i: usize) -> Option<u64> {
        self.seqs.as_ref().and_then(|s| s.get(i).copied())
    }

    /// The spans, in microseconds, during which a suspicion is an outage
    /// detection rather than a mistake: from each outage's start to the
    /// first arrival at or after its end (to `end_ms` if none comes).
    pub fn outage_spans_micros(&self) -> Vec<(u64, u64)> {
        let us = |ms: f64| phimon_detector::Timestamp::from_millis_f64(ms).as_micros();
        self.outages_ms
            .iter()
            .map(|&(start, end)| {
                let i = self.arrivals_ms.partition_point(|&a| a < end);
                let resume = self.arrivals_ms.get(i).copied().unwrap_or(self.end_ms);
                (us(start), us(resume))
            })
            .collect()
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let text = "# scenario=lan\n# interval_ms=1000\n# end_ms=5000\n# crash_ms=3000\n# a comment\narrival_ms\n0\n1000.5\n\n2001\n";
        let t = Trace::parse(text).unwrap();
        assert_eq!(t.arrivals_ms, vec![0.0, 1000.5, 2001.0]);
        assert_eq!(t.crash_ms, Some(3000.0));
        assert_eq!(t.meta("scenario"), Some("lan"));
        assert_eq!(Trace::parse(&t.to_text()).unwrap(), t);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Trace::parse("# interval_ms=1000\n# end_ms=10\narrival_ms\n1\nabc\n").unwrap_err();
        assert_eq!(
            e,
            TraceError::BadArrival {
                line: 5,
                text: "abc".into()
            }
        );
        assert!(e.to_string().contains("line 5"));
        let e = Trace::parse("# interval_ms=1000\n# end_ms=10\narrival_ms\n5\n3\n").unwrap_err();
        assert!(matches!(e, TraceError::Decreasing { line: 5, .. }), "{e}");
        let e = Trace::parse("# end_ms=10\narrival_ms\n5\n").unwrap_err();
        assert_eq!(e, TraceError::MissingHeader { key: "interval_ms" });
        let e = Trace::parse("# interval_ms=1000\n# end_ms=10\n5\n").unwrap_err();
        assert!(
            matches!(e, TraceError::MissingColumn { line: 3, .. }),
            "{e}"
        );
        let e = Trace::parse("# interval_ms=x\n").unwrap_err();
        assert!(matches!(e, TraceError::BadHeader { line: 1, .. }), "{e}");
        let e = Trace::parse("# interval_ms=1\n# end_ms=1\narrival_ms\n").unwrap_err();
        assert_eq!(e, TraceError::NoArrivals);
        let e = Trace::parse("# interval_ms=1\n# end_ms=1\narrival_ms\nNaN\n").unwrap_err();
        assert!(matches!(e, TraceError::BadArrival { .. }));
        let e = Trace::parse("# interval_ms=1\n# end_ms=1\narrival_ms\n5\n").unwrap_err();
        assert!(matches!(e, TraceError::Inconsistent(_)));
    }

    #[test]
    fn sequence_numbers_are_an_optional_column() {
        let text = "# interval_ms=1000\n# end_ms=5000\narrival_ms, seq\n0,7\n2000.5, 9\n2001,8\n";
        let t = Trace::parse(text).unwrap();
        assert_eq!(t.arrivals_ms, vec![0.0, 2000.5, 2001.0]);
        assert_eq!(t.seqs, Some(vec![7, 9, 8]));
        assert_eq!((t.seq(1), t.seq(3)), (Some(9), None));
        assert_eq!(Trace::parse(&t.to_text()).unwrap(), t);
        assert!(t.to_text().contains("arrival_ms,seq\n0,7\n2000.5,9\n"));
        // Without the column: no sequence numbers, as before.
        let old = Trace::parse("# interval_ms=1\n# end_ms=1\narrival_ms\n0\n").unwrap();
        assert_eq!((&old.seqs, old.seq(0)), (&None, None));
        for (line, want) in [
            ("5\n", "BadSeq"),
            ("5,-1\n", "BadSeq"),
            ("5,x\n", "BadSeq"),
            ("5,1.5\n", "BadSeq"),
            ("5,18446744073709551616\n", "BadSeq"),
            ("x,1\n", "BadArrival"),
        ] {
            let e = Trace::parse(&format!(
                "# interval_ms=1\n# end_ms=9\narrival_ms,seq\n{line}"
            ))
            .unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{line}: {e:?}");
            assert!(e.to_string().contains("line 4"), "{e}");
        }
        let e = Trace::parse("# interval_ms=1\n# end_ms=9\narrival_ms,seqs\n").unwrap_err();
        assert!(
            matches!(e, TraceError::MissingColumn { line: 3, .. }),
            "{e}"
        );
    }

    const HEAD: &str = "# interval_ms=1000\n# end_ms=20000\n# crash_ms=15000\n";

    #[test]
    fn outages_parse_round_trip_and_span_to_the_next_arrival() {
        let text = format!(
            "{HEAD}# outage_ms=2500-6000\n# outage_ms = 9000.5-9500\narrival_ms\n0\n1000\n2000\n7000\n8000\n9000\n10000\n"
        );
        let t = Trace::parse(&text).unwrap();
        assert_eq!(t.outages_ms, vec![(2500.0, 6000.0), (9000.5, 9500.0)]);
        assert!(t.metadata.is_empty(), "{:?}", t.metadata);
        assert_eq!(Trace::parse(&t.to_text()).unwrap(), t);
        // The first outage's silence lasts until 7000, the first arrival
        // after its end; the second until 10000.
        assert_eq!(
            t.outage_spans_micros(),
            vec![(2_500_000, 7_000_000), (9_000_500, 10_000_000)]
        );
        // Old traces have none.
        let old = Trace::parse(&format!("{HEAD}arrival_ms\n0\n")).unwrap();
        assert!(old.outages_ms.is_empty() && old.outage_spans_micros().is_empty());
    }

    #[test]
    fn bad_outages_name_the_line_and_the_problem() {
        let cases = [
            ("# outage_ms=5000\n", "START-END"),
            ("# outage_ms=abc-5000\n", "start \"abc\""),
            ("# outage_ms=1000-x\n", "end \"x\""),
            ("# outage_ms=5000-4000\n", "after the start"),
            ("# outage_ms=5000-5000\n", "after the start"),
            ("# outage_ms=-1-5000\n", "start \"\""),
            ("# outage_ms=1000-5000\n# outage_ms=4000-6000\n", "line 4"),
            ("# outage_ms=14000-16000\n", "crash_ms=15000"),
        ];
        for (extra, want) in cases {
            let text = format!("{HEAD}{extra}arrival_ms\n0\n");
            let e = Trace::parse(&text).unwrap_err();
            assert!(matches!(e, TraceError::BadOutage { .. }), "{extra}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("line 4") || msg.contains("line 5"), "{msg}");
            assert!(msg.contains(want), "{extra}: {msg:?} lacks {want:?}");
        }
        // Without a crash the bound is end_ms.
        let e = Trace::parse("# interval_ms=1\n# end_ms=10\n# outage_ms=5-11\narrival_ms\n0\n")
            .unwrap_err();
        assert!(e.to_string().contains("end_ms=10"), "{e}");
    }
}
