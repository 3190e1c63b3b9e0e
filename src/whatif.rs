//! `phimon whatif --threshold X[,Y...]`: the local sidecar's answer to
//! "what would another threshold have done?", from `GET /v1/whatif`: for
//! every peer it observes, its detector window replayed at each
//! threshold beside the current one (see docs/operator.md for what the
//! replay covers and its limits).

use crate::UsageError;
use anyhow::{Context as _, bail};
use phimon_exporter::{WhatIfOutcome, WhatIfReport};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// Arguments of `phimon whatif`.
#[derive(Debug, clap::Args)]
pub struct WhatIfArgs {
    /// Thresholds to compare with the current one, comma-separated
    /// (at most 8).
    #[arg(long, value_name = "X[,Y...]", value_delimiter = ',', required = true)]
    pub threshold: Vec<f64>,
    /// Print the `/v1/whatif` JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The sidecar's HTTP address (its `http.listen`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
    pub addr: String,
    /// Read the address from this configuration's `http.listen` instead.
    #[arg(long, value_name = "FILE", conflicts_with = "addr")]
    pub config: Option<PathBuf>,
}

/// Runs `phimon whatif`.
pub fn run(args: WhatIfArgs) -> anyhow::Result<()> {
    if let Some(bad) = args.threshold.iter().find(|t| !t.is_finite() || **t <= 0.0) {
        return Err(UsageError(format!("--threshold {bad}: must be a positive number")).into());
    }
    let addr = crate::peers::address(&args.addr, args.config.as_deref())?;
    let list: Vec<String> = args.threshold.iter().map(f64::to_string).collect();
    let path = format!("/v1/whatif?threshold={}", list.join(","));
    let (status, body) = crate::peers::get(&addr, &path)?;
    if status != 200 {
        bail!(
            "the sidecar at {addr} answered {status} to GET {path}: {}",
            body.trim()
        );
    }
    let report: WhatIfReport = serde_json::from_str(&body)
        .with_context(|| format!("the sidecar at {addr} answered GET {path} with bad JSON"))?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        table(&report)
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn detection(o: &WhatIfOutcome) -> String {
    match o.detection_ms {
        Some(ms) => format!("{:.2}s", ms / 1000.0),
        None => "never".to_owned(),
    }
}

/// One row per peer and threshold, then the node's summary.
pub fn table(r: &WhatIfReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: current threshold {}; each observed peer's detector window replayed \
         (detection: had it died right after its last heartbeat)",
        r.node_id, r.current_threshold
    );
    if r.peers.is_empty() {
        out.push_str("no observed peers yet: nothing to replay\n");
        return out;
    }
    let mark = |t: f64| {
        if t == r.current_threshold {
            format!("{t} (now)")
        } else {
            t.to_string()
        }
    };
    let mut rows: Vec<[String; 6]> = Vec::new();
    for p in &r.peers {
        for (i, o) in p.outcomes.iter().enumerate() {
            let (who, history) = if i == 0 {
                (
                    p.node_id.clone(),
                    format!("{} / {:.0}s", p.intervals, p.history_s),
                )
            } else {
                (String::new(), String::new())
            };
            rows.push([
                who,
                history,
                mark(o.threshold),
                detection(o),
                o.mistakes.to_string(),
                format!("{:.1}", o.mistakes_per_hour),
            ]);
        }
    }
    for (i, o) in r.node.iter().enumerate() {
        rows.push([
            if i == 0 {
                "(node)".to_owned()
            } else {
                String::new()
            },
            if i == 0 {
                "slowest, sum".to_owned()
            } else {
                String::new()
            },
            mark(o.threshold),
            detection(o),
            o.mistakes.to_string(),
            format!("{:.1}", o.mistakes_per_hour),
        ]);
    }
    let header = [
        "PEER",
        "INTERVALS / HISTORY",
        "THRESHOLD",
        "DETECTION",
        "MISTAKES",
        "MISTAKES/HOUR",
    ];
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: [&str; 6]| {
        let mut l = String::new();
        for (c, w) in cells.iter().zip(width) {
            let _ = write!(l, "{c:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}
