//! `phimon record --peer ID --out FILE`: an observed peer's detector
//! window, exported from the local sidecar (`GET /v1/peers/{id}/trace`)
//! as an arrival trace, so that `phimon eval --trace FILE` can replay it
//! at any threshold and against the baselines.
//!
//! It holds what the window holds (at most `detector.window` intervals,
//! about 17 minutes at 1 s heartbeats with the default 1000), without
//! sequence numbers. For longer recordings with losses marked, run the
//! sidecar with `--record-arrivals DIR`.

use anyhow::{Context as _, bail};
use std::path::PathBuf;

/// Arguments of `phimon record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The peer whose heartbeats to export (this node must observe it:
    /// `phimon peers` lists a peer's observers).
    #[arg(long, value_name = "ID")]
    pub peer: String,
    /// Where to write the trace (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The sidecar's HTTP address (its `http.listen`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
    pub addr: String,
    /// Read the address from this configuration's `http.listen` instead.
    #[arg(long, value_name = "FILE", conflicts_with = "addr")]
    pub config: Option<PathBuf>,
}

/// Runs `phimon record`.
pub fn run(args: RecordArgs) -> anyhow::Result<()> {
    let addr = crate::peers::address(&args.addr, args.config.as_deref())?;
    // Node ids are DNS-like names; anything else cannot be a peer and
    // must not reach the request line.
    if args.peer.is_empty()
        || !args
            .peer
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(crate::UsageError(format!("--peer {:?}: not a node id", args.peer)).into());
    }
    let path = format!("/v1/peers/{}/trace", args.peer);
    let (status, body) = crate::peers::get(&addr, &path)?;
    if status != 200 {
        let why = serde_json::from_str::<phimon_exporter::ApiError>(&body)
            .map_or_else(|_| body.trim().to_owned(), |e| e.error);
        bail!("the sidecar at {addr} answered {status}: {why}");
    }
    let trace = phimon_eval::trace::Trace::parse(&body)
        .with_context(|| format!("the sidecar at {addr} sent a trace that does not parse"))?;
    if args.out.as_os_str() == "-" {
        print!("{body}");
        return Ok(());
    }
    std::fs::write(&args.out, &body).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} arrivals of {} ({:.0} s) to {}; replay it with `phimon eval --trace {}`",
        trace.arrivals_ms.len(),
        args.peer,
        trace.end_ms / 1000.0,
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
