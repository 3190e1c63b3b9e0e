//! `phimon eval`: replay a recorded heartbeat trace through the detector.

use crate::UsageError;
use anyhow::Context as _;
use phimon_config::{Config, Scope};
use phimon_detector::qos::{self, Qos};
use phimon_detector::trace::Trace;
use phimon_detector::{DetectorConfig, PeerDetector};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `phimon eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Arrival trace: `# key=value` headers (interval_ms, end_ms, optional
    /// crash_ms), a line `arrival_ms`, then one arrival time (ms) per line.
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
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
    let trace = read_trace(&args.trace)?;
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
        render(&args.trace, &trace, &detector, section.threshold, &results)
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
    let _ = writeln!(
        s,
        "detector   {} window={} min_std_dev={} acceptable_pause={}",
        d.distribution,
        d.window,
        humantime::format_duration(d.min_std_dev),
        humantime::format_duration(d.acceptable_pause)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>9}  {:>12}  {:>8}  {:>10}  {:>14}  {:>14}",
        "threshold", "detection_ms", "mistakes", "mistakes/h", "mistake_avg_ms", "query_accuracy"
    );
    for q in results {
        let mark = if q.threshold == configured {
            " <- configured"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{:>9}  {:>12}  {:>8}  {:>10.2}  {:>14.0}  {:>14.6}{mark}",
            q.threshold,
            fmt_opt_ms(q.detection_ms),
            q.mistakes,
            q.mistakes_per_hour(),
            q.mistake_mean_ms(),
            q.query_accuracy(),
        );
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
