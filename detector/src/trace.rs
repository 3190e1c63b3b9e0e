//! Heartbeat arrival traces: the input of `phimon eval`.
//!
//! Format: `# key=value` header lines (`interval_ms` and `end_ms` required,
//! `crash_ms` optional, other keys kept as metadata), then a line
//! `arrival_ms`, then one arrival time per line in milliseconds (float,
//! non-decreasing). Lines starting with `#` without `=` are comments; blank
//! lines are ignored.
//!
//! ```text
//! # interval_ms=1000
//! # end_ms=65000
//! # crash_ms=5200
//! arrival_ms
//! 0
//! 1001.5
//! ```

use std::fmt::Write as _;

/// Why a trace was rejected. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A required `# key=value` header is absent.
    #[error("missing header `# {key}=...` (required before the `arrival_ms` line)")]
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
    /// A data line came before the `arrival_ms` column line.
    #[error("line {line}: expected the column line `arrival_ms`, found {text:?}")]
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
    /// Other header keys, in file order (e.g. `scenario=gc-pauses`).
    pub metadata: Vec<(String, String)>,
    /// Arrival times, ms, non-decreasing.
    pub arrivals_ms: Vec<f64>,
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

impl Trace {
    /// Parses a trace from its text.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let mut interval = None;
        let mut end = None;
        let mut crash = None;
        let mut metadata: Vec<(String, String)> = Vec::new();
        let mut in_data = false;
        let mut arrivals: Vec<f64> = Vec::new();
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
                if s != "arrival_ms" {
                    return Err(TraceError::MissingColumn {
                        line,
                        text: s.to_string(),
                    });
                }
                in_data = true;
                continue;
            }
            let value = parse_number(s).ok_or_else(|| TraceError::BadArrival {
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
        Ok(Trace {
            interval_ms,
            end_ms,
            crash_ms: crash,
            metadata,
            arrivals_ms: arrivals,
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
        out.push_str("arrival_ms\n");
        for a in &self.arrivals_ms {
            let _ = writeln!(out, "{a}");
        }
        out
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
}
