//! `phimon eval`: replay a recorded heartbeat trace through the detector.

use crate::UsageError;
use anyhow::Context as _;
use phimon_config::{Config, Scope};
use phimon_detector::{DetectorConfig, PeerDetector};
use phimon_eval::compare::{self, Comparison};
use phimon_eval::qos::{self, Qos};
use phimon_eval::trace::Trace;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `phimon eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Arrival trace: `# key=value` headers (interval_ms, end_ms, optional
    /// crash_ms, optional repeatable outage_ms=START-END), a line
    /// `arrival_ms`, then one arrival time (ms) per line; or a line
    /// `arrival_ms,seq` and `ARRIVAL,SEQ` lines (heartbeat sequence
    /// numbers: a gap is a lost heartbeat).
    #[arg(long, value_name = "FILE", required_unless_present = "compare")]
    pub trace: Option<PathBuf>,
    /// Compare phimon's detector with the baselines (Akka, Cassandra,
    /// chitchat) over every `*.trace` of --corpus: one threshold per
    /// detector for the whole corpus, at zero mistakes and at
    /// --budget mistakes per hour.
    #[arg(long, conflicts_with_all = ["trace", "phi_out", "thresholds"])]
    pub compare: bool,
    /// Directory of traces for --compare.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "traces",
        requires = "compare"
    )]
    pub corpus: PathBuf,
    /// Mistake budget of --compare's second table, per hour of alive time
    /// summed over the corpus.
    #[arg(long, value_name = "N", default_value_t = 1.0, requires = "compare")]
    pub budget: f64,
    /// Print the --compare results as one JSON object.
    #[arg(long, requires = "compare")]
    pub json: bool,
    /// Take the `[detector]` settings from this config file (defaults
    /// otherwise; PHIMON_DETECTOR_* environment overrides apply).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sampling step of --phi-out, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    pub sample_ms: f64,
    /// Write phi over time as CSV `t_ms,phi`, one row every --sample-ms
    /// from the first arrival to end_ms inclusive.
    #[arg(long, value_name = "FILE")]
    pub phi_out: Option<PathBuf>,
    /// Comma-separated thresholds to report (default: 0.5 to 16).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub thresholds: Vec<f64>,
}

/// Loads the `[detector]` section of `path` (or the defaults) and returns
/// it with the threshold.
pub fn load_detector_section(
    path: Option<&Path>,
) -> anyhow::Result<phimon_config::DetectorSection> {
    let config = match path {
        Some(p) => {
            let c = Config::load(p).map_err(|e| UsageError(e.to_string()))?;
            c.validate(Scope::Detector, &p.display().to_string())
                .map_err(|e| UsageError(e.to_string()))?;
            c
        }
        None => Config::default(),
    };
    Ok(config.detector)
}

/// Reads and parses a trace file; errors name the file and line.
pub fn read_trace(path: &Path) -> anyhow::Result<Trace> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read trace {}: {e}", path.display())))?;
    Trace::parse(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

/// Detector settings for a trace: the config's, with the trace's heartbeat
/// interval as the cold-start prior.
pub fn detector_for(section: &phimon_config::DetectorSection, trace: &Trace) -> DetectorConfig {
    section.detector_config(Duration::from_secs_f64(trace.interval_ms / 1000.0))
}

/// Runs `phimon eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if !(args.sample_ms.is_finite() && args.sample_ms > 0.0) {
        return Err(UsageError(format!(
            "--sample-ms must be a number > 0, got {}",
            args.sample_ms
        ))
        .into());
    }
    if let Some(t) = args
        .thresholds
        .iter()
        .find(|t| !(t.is_finite() && **t > 0.0))
    {
        return Err(UsageError(format!("--thresholds: {t} is not a number > 0")).into());
    }
    let section = load_detector_section(args.config.as_deref())?;
    if args.compare {
        return run_compare(&args, &section);
    }
    let Some(trace_path) = args.trace.as_deref() else {
        return Err(UsageError("--trace FILE is required (or use --compare)".into()).into());
    };
    let trace = read_trace(trace_path)?;
    let detector = detector_for(&section, &trace);

    if let Some(out) = &args.phi_out {
        write_phi_csv(out, &detector, &trace, args.sample_ms)?;
    }

    let thresholds = if args.thresholds.is_empty() {
        qos::DEFAULT_THRESHOLDS.to_vec()
    } else {
        args.thresholds.clone()
    };
    let results = qos::evaluate(PeerDetector::new(&detector), &trace, &thresholds);
    print!(
        "{}",
        render(trace_path, &trace, &detector, section.threshold, &results)
    );
    Ok(())
}

fn write_phi_csv(
    out: &Path,
    detector: &DetectorConfig,
    trace: &Trace,
    step: f64,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "t_ms,phi")?;
    let mut err = None;
    qos::sample_phi(PeerDetector::new(detector), trace, step, |t, phi| {
        if err.is_none() {
            if let Err(e) = writeln!(w, "{t},{phi}") {
                err = Some(e);
            }
        }
    });
    if let Some(e) = err {
        return Err(e).with_context(|| format!("cannot write {}", out.display()));
    }
    w.flush()
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

fn fmt_opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

/// The human-readable report.
fn render(
    path: &Path,
    trace: &Trace,
    d: &DetectorConfig,
    configured: f64,
    results: &[Qos],
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let n = trace.arrivals_ms.len();
    let span = trace.end_ms - trace.arrivals_ms.first().copied().unwrap_or(0.0);
    let _ = writeln!(s, "trace      {}", path.display());
    let _ = writeln!(
        s,
        "           {n} arrivals over {:.1} s, heartbeat interval {} ms, crash {}",
        span / 1000.0,
        trace.interval_ms,
        trace
            .crash_ms
            .map_or("none".to_string(), |c| format!("at {c} ms"))
    );
    if let Some(seqs) = &trace.seqs {
        // Numbers never seen between the lowest and the highest.
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let span = match (sorted.first(), sorted.last()) {
            (Some(lo), Some(hi)) => hi - lo + 1,
            _ => 0,
        };
        let _ = writeln!(
            s,
            "           sequence numbers: {} heartbeats missing from the sequence (lost)",
            span.saturating_sub(sorted.len() as u64)
        );
    }
    if !trace.outages_ms.is_empty() {
        let spans: Vec<String> = trace
            .outages_ms
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        let _ = writeln!(
            s,
            "           outages (sender alive but unreachable; suspecting it is not a mistake): {} ms",
            spans.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "detector   {} window={} min_std_dev={} acceptable_pause={}",
        d.distribution,
        d.window,
        humantime::format_duration(d.min_std_dev),
        humantime::format_duration(d.acceptable_pause)
    );
    let _ = writeln!(s);
    let outages = !trace.outages_ms.is_empty();
    let _ = write!(
        s,
        "{:>9}  {:>12}  {:>8}  {:>10}  {:>14}  {:>14}",
        "threshold", "detection_ms", "mistakes", "mistakes/h", "mistake_avg_ms", "query_accuracy"
    );
    if outages {
        let _ = write!(s, "  {:>16}", "outage_detect_ms");
    }
    let _ = writeln!(s);
    for q in results {
        let mark = if q.threshold == configured {
            " <- configured"
        } else {
            ""
        };
        let _ = write!(
            s,
            "{:>9}  {:>12}  {:>8}  {:>10.2}  {:>14.0}  {:>14.6}",
            q.threshold,
            fmt_opt_ms(q.detection_ms),
            q.mistakes,
            q.mistakes_per_hour(),
            q.mistake_mean_ms(),
            q.query_accuracy(),
        );
        if outages {
            let cell = match q.outage_detection_mean_ms() {
                Some(d) if q.outage_detections < q.outages => {
                    format!("{d:.0} ({}/{})", q.outage_detections, q.outages)
                }
                Some(d) => format!("{d:.0}"),
                None => "-".to_string(),
            };
            let _ = write!(s, "  {cell:>16}");
        }
        let _ = writeln!(s, "{mark}");
    }
    let _ = writeln!(s);
    if trace.crash_ms.is_some() && results.iter().all(|q| !q.detected) {
        let _ = writeln!(
            s,
            "the crash was not detected before end_ms at any threshold"
        );
    }
    match results.iter().find(|q| q.mistakes == 0) {
        Some(q) => {
            let _ = writeln!(
                s,
                "lowest threshold without mistakes: {}{}",
                q.threshold,
                q.detection_ms.map_or(String::new(), |d| format!(
                    " (detects this crash in {d:.0} ms)"
                ))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "every threshold listed makes mistakes on this trace; try higher ones with --thresholds"
            );
        }
    }
    s
}

/// Reads every `*.trace` of `dir`, sorted by file name; the name of a
/// trace is its file stem.
pub fn read_corpus(dir: &Path) -> anyhow::Result<Vec<(String, Trace)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| UsageError(format!("cannot read corpus {}: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| UsageError(format!("cannot read corpus {}: {e}", dir.display())))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "trace") {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(UsageError(format!("no *.trace files in {}", dir.display())).into());
    }
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            Ok((name, read_trace(p)?))
        })
        .collect()
}

/// `phimon eval --compare`.
fn run_compare(args: &EvalArgs, section: &phimon_config::DetectorSection) -> anyhow::Result<()> {
    if !(args.budget.is_finite() && args.budget >= 0.0) {
        return Err(UsageError(format!(
            "--budget must be a number >= 0, got {}",
            args.budget
        ))
        .into());
    }
    let corpus = read_corpus(&args.corpus)?;
    // The prior is set per trace from its interval; the rest is the config's.
    let config = section.detector_config(Duration::from_secs(1));
    let contenders = compare::default_contenders(&config);
    let result = compare::compare(&corpus, &contenders, args.budget);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render_comparison(&args.corpus, &result));
    }
    Ok(())
}

fn fmt_ms(v: Option<f64>, censored: bool) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if censored => format!(">={v:.0}"),
        Some(v) => format!("{v:.0}"),
    }
}

/// Mean outage detection time, with the count when some went unsuspected.
fn fmt_outages(b: &compare::BudgetOutcome) -> String {
    if b.outages == 0 || b.threshold.is_none() {
        return "-".to_string();
    }
    let mean = b
        .outage_detection_mean_ms
        .map_or_else(|| "-".to_string(), |d| format!("{d:.0}"));
    if b.outages_detected < b.outages {
        format!("{mean} ({}/{})", b.outages_detected, b.outages)
    } else {
        mean
    }
}

fn fmt_threshold(v: Option<f64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| format!("{v:.4}"))
}

/// The human-readable comparison.
pub fn render_comparison(dir: &Path, c: &Comparison) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "corpus     {} ({} traces, {} with a crash, {:.2} alive hours)",
        dir.display(),
        c.traces.len(),
        c.crashes,
        c.alive_hours
    );
    let _ = writeln!(
        s,
        "           one threshold per detector for the whole corpus; detection is crash -> permanent suspicion"
    );
    let _ = writeln!(
        s,
        "           suspicions during outage_ms spans (alive but unreachable) are not mistakes; outage_detect_ms is outage start -> suspicion"
    );
    let name_w = c
        .contenders
        .iter()
        .map(|x| x.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "zero mistakes (lowest threshold with no false suspicion on any trace)"
    );
    let _ = writeln!(
        s,
        "{:<name_w$}  {:>12}  {:>14}  {:>12}  {:>10}  {:>16}",
        "detector",
        "threshold",
        "mean_detect_ms",
        "max_detect_ms",
        "undetected",
        "outage_detect_ms"
    );
    for x in &c.contenders {
        let z = &x.zero_mistakes;
        let censored = z.undetected > 0;
        let _ = writeln!(
            s,
            "{:<name_w$}  {:>12}  {:>14}  {:>12}  {:>10}  {:>16}",
            x.name,
            fmt_threshold(z.threshold),
            fmt_ms(z.mean_detection_ms, censored),
            fmt_ms(z.max_detection_ms, censored),
            if z.threshold.is_some() {
                z.undetected.to_string()
            } else {
                "-".into()
            },
            fmt_outages(z),
        );
    }
    let budget = c
        .contenders
        .first()
        .map_or(1.0, |x| x.hourly.budget_per_hour);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "at most {budget} mistake(s) per alive hour ({} allowed over the corpus)",
        (budget * c.alive_hours).floor()
    );
    let _ = writeln!(
        s,
        "{:<name_w$}  {:>12}  {:>14}  {:>8}  {:>10}  {:>14}  {:>14}",
        "detector",
        "threshold",
        "mean_detect_ms",
        "mistakes",
        "mistakes/h",
        "mistake_avg_ms",
        "query_accuracy"
    );
    for x in &c.contenders {
        let h = &x.hourly;
        if h.threshold.is_none() {
            let _ = writeln!(s, "{:<name_w$}  {:>12}", x.name, "none");
            continue;
        }
        let _ = writeln!(
            s,
            "{:<name_w$}  {:>12}  {:>14}  {:>8}  {:>10.2}  {:>14.0}  {:>14.6}",
            x.name,
            fmt_threshold(h.threshold),
            fmt_ms(h.mean_detection_ms, h.undetected > 0),
            h.mistakes,
            h.mistakes_per_hour,
            h.mistake_mean_ms,
            h.query_accuracy,
        );
    }

    // Per-trace detection at zero mistakes.
    let _ = writeln!(s);
    let _ = writeln!(s, "detection time per trace at zero mistakes, ms");
    let trace_w = c.traces.iter().map(String::len).max().unwrap_or(5).max(5);
    let _ = write!(s, "{:<trace_w$}", "trace");
    let col_w: Vec<usize> = c.contenders.iter().map(|x| x.name.len().max(8)).collect();
    for (x, w) in c.contenders.iter().zip(&col_w) {
        let _ = write!(s, "  {:>w$}", x.name);
    }
    let _ = writeln!(s);
    for (i, t) in c.traces.iter().enumerate() {
        let _ = write!(s, "{t:<trace_w$}");
        for (x, w) in c.contenders.iter().zip(&col_w) {
            let cell = x
                .zero_mistakes
                .traces
                .get(i)
                .and_then(|o| o.detection_ms)
                .map_or_else(|| "-".to_string(), |d| format!("{d:.0}"));
            let _ = write!(s, "  {cell:>w$}");
        }
        let _ = writeln!(s);
    }

    // The headline: phimon's configured detector against the best baseline.
    let best = c.best_baseline(|x| &x.zero_mistakes);
    if let (Some(ours), Some((base, base_ms))) = (c.contenders.first(), best) {
        if let Some(ms) = ours.zero_mistakes.mean_detection_ms {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{} detects in {:.0} ms on average at zero mistakes; the best baseline, {}, in {:.0} ms: ratio {:.2}",
                ours.name,
                ms,
                base.name,
                base_ms,
                ms / base_ms
            );
        }
    }
    s
}
