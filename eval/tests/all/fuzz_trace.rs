//! Fuzz targets for the arrival-trace parser (`phimon eval --trace`), on
//! stable Rust (proptest).
//!
//! Named `fuzz_*` so `cargo test --workspace fuzz_` runs them with the
//! other decoders' targets; `PHIMON_FUZZ_CASES` sets the cases per target
//! (default 256). See docs/reliability.md for the nightly command.
//!
//! Fed to [`Trace::parse`]: arbitrary text, trace-shaped text with hostile
//! numbers (NaN, infinities, negatives, 1e308, -0, hex, empty), and valid
//! traces mutated line by line. What must hold: no panic; an error names
//! its line where it has one (1-based, within the text); a parsed trace
//! keeps the documented invariants (finite non-negative non-decreasing
//! arrivals, end and crash consistent with them), renders back to text
//! that parses to the same trace, and replays through a detector
//! without a NaN.

use phimon_detector::{DetectorConfig, PeerDetector, Timestamp};
use phimon_eval::trace::{Trace, TraceError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Cases per target: `PHIMON_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("PHIMON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..100_000).prop_map(|v| v.to_string()),
        2 => (0.0f64..1e6).prop_map(|v| format!("{v}")),
        1 => prop::sample::select(vec![
            "NaN", "nan", "inf", "-inf", "infinity", "-1", "-0", "0", "1e308", "1e309",
            "1.7976931348623157e308", "4.9e-324", "0x10", "", " ", "1_000", "+5", "1e-400",
            "18446744073709551616", "١٢", "5ms",
        ])
        .prop_map(str::to_owned),
        1 => any::<f64>().prop_map(|v| format!("{v}")),
    ]
}

fn trace_line() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec![
                "interval_ms",
                "end_ms",
                "crash_ms",
                "outage_ms",
                "scenario",
                "",
                "=",
            ]),
            prop_oneof![
                number(),
                (number(), number()).prop_map(|(a, b)| format!("{a}-{b}"))
            ],
        )
            .prop_map(|(k, v)| format!("# {k}={v}")),
        Just("arrival_ms".to_owned()),
        Just("# a comment".to_owned()),
        Just(String::new()),
        number(),
        ".{0,20}".prop_map(String::from),
    ]
}

/// A valid trace's text: what the mutations start from.
fn valid_text() -> impl Strategy<Value = String> {
    (
        1u32..2000,
        prop::collection::vec(0.0f64..3000.0, 1..60),
        prop::option::of(0.0f64..1.0),
    )
        .prop_map(|(interval, gaps, crash)| {
            let mut t = 0.0;
            let arrivals: Vec<f64> = gaps
                .iter()
                .map(|g| {
                    t += g;
                    t
                })
                .collect();
            let end = t + 5000.0;
            let mut s = format!("# interval_ms={interval}\n# end_ms={end}\n");
            if let Some(f) = crash {
                s.push_str(&format!(
                    "# crash_ms={}\n",
                    arrivals[0] + f * (end - arrivals[0])
                ));
            }
            s.push_str("# scenario=fuzz\narrival_ms\n");
            for a in arrivals {
                s.push_str(&format!("{a}\n"));
            }
            s
        })
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, String),
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Swap(prop::sample::Index, prop::sample::Index),
    Insert(prop::sample::Index, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    use prop::sample::Index;
    prop_oneof![
        (any::<Index>(), trace_line()).prop_map(|(i, l)| Edit::Replace(i, l)),
        any::<Index>().prop_map(Edit::Delete),
        any::<Index>().prop_map(Edit::Duplicate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<Index>(), trace_line()).prop_map(|(i, l)| Edit::Insert(i, l)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match e {
            Edit::Replace(i, l) => lines[i.index(n)] = l.clone(),
            Edit::Delete(i) => {
                lines.remove(i.index(n));
            }
            Edit::Duplicate(i) => {
                let l = lines[i.index(n)].clone();
                lines.insert(i.index(n), l);
            }
            Edit::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            Edit::Insert(i, l) => lines.insert(i.index(n + 1), l.clone()),
        }
    }
    lines.join("\n")
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let line_count = text.lines().count();
    match Trace::parse(text) {
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(!shown.is_empty());
            // Every variant that has a line says so first: "line N: ...".
            if let Some(rest) = shown.strip_prefix("line ") {
                let n: usize = rest.split(':').next().unwrap().parse().unwrap();
                prop_assert!(
                    (1..=line_count).contains(&n),
                    "line {n} of a {line_count}-line text: {shown}"
                );
            }
            if let TraceError::MissingHeader { key } = &e {
                prop_assert!(["interval_ms", "end_ms"].contains(key));
            }
        }
        Ok(t) => {
            prop_assert!(t.interval_ms.is_finite() && t.interval_ms > 0.0);
            prop_assert!(!t.arrivals_ms.is_empty());
            prop_assert!(t.arrivals_ms.iter().all(|a| a.is_finite() && *a >= 0.0));
            prop_assert!(t.arrivals_ms.windows(2).all(|w| w[0] <= w[1]));
            let last = *t.arrivals_ms.last().unwrap();
            prop_assert!(t.end_ms.is_finite() && t.end_ms >= last);
            if let Some(c) = t.crash_ms {
                prop_assert!(c >= t.arrivals_ms[0] && c <= t.end_ms);
            }
            let again = Trace::parse(&t.to_text());
            prop_assert_eq!(again.as_ref(), Ok(&t), "to_text does not round-trip");
            // What `phimon eval` does with it, on a bounded prefix.
            let d = DetectorConfig {
                first_heartbeat_estimate: std::time::Duration::from_secs_f64(
                    (t.interval_ms / 1000.0).min(1e9),
                ),
                ..DetectorConfig::default()
            };
            let mut det = PeerDetector::new(&d);
            for a in t.arrivals_ms.iter().take(1000) {
                det.record(Timestamp::from_millis_f64(*a));
            }
            let phi = det.phi(Timestamp::from_millis_f64(t.end_ms));
            prop_assert!(!phi.is_nan(), "phi NaN at end of {:?}", t.to_text());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_trace_arbitrary_text(text in ".{0,400}") {
        check(&text)?;
    }

    #[test]
    fn fuzz_trace_shaped_lines(lines in prop::collection::vec(trace_line(), 0..40)) {
        check(&lines.join("\n"))?;
    }

    #[test]
    fn fuzz_trace_mutated_valid(text in valid_text(), edits in prop::collection::vec(edit(), 0..5)) {
        check(&apply(&text, &edits))?;
    }
}
