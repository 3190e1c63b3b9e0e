//! Helpers shared by the end-to-end modules: running the `phimon` binary
//! cargo built for them, a webhook sink, and a [`LocalCluster`] created,
//! started and converged in one call.

use phimon_testkit::local_cluster::{ClusterSpec, LocalCluster};
use phimon_testkit::sink::WebhookSink;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The `phimon` binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_phimon"))
}

/// `phimon` without a terminal on stdin, for the caller to add arguments
/// to.
pub fn phimon() -> Command {
    let mut cmd = Command::new(bin());
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, fails the test (showing both outputs) unless it exits 0,
/// and returns its stdout.
pub fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The columns of the row for threshold `th` in an `eval` report (the
/// threshold is a row's first column).
pub fn row<'a>(report: &'a str, th: &str) -> Vec<&'a str> {
    report
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&th))
        .unwrap_or_else(|| panic!("no row for threshold {th}:\n{report}"))
}

/// A webhook receiver on loopback that checks signatures with the
/// secret every [`ClusterSpec`] uses unless told otherwise.
pub async fn sink() -> WebhookSink {
    WebhookSink::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &ClusterSpec::default().secret,
    )
    .await
    .unwrap()
}

/// The spec of a cluster of `nodes` nodes with 500 ms heartbeats (the
/// tests' time bounds assume it) that pages `sink`.
pub fn paging(nodes: usize, sink: &WebhookSink) -> ClusterSpec {
    ClusterSpec {
        nodes,
        interval: Duration::from_millis(500),
        webhook_url: Some(sink.url()),
        ..ClusterSpec::default()
    }
}

/// [`launch`] with nothing to prepare, converged within 30 s.
pub async fn converged(dir: &Path, spec: &ClusterSpec) -> LocalCluster {
    launch(dir, spec, Duration::from_secs(30), |_| {}).await
}

/// Creates `spec`'s cluster in `dir`, lets `prepare` change it before any
/// node runs (configs, environment, a proxy's backends), starts every
/// node and fails the test unless all running nodes see each other alive
/// within `converge_within`.
pub async fn launch(
    dir: &Path,
    spec: &ClusterSpec,
    converge_within: Duration,
    prepare: impl FnOnce(&mut LocalCluster),
) -> LocalCluster {
    let mut c = LocalCluster::create(bin(), dir, spec).unwrap();
    prepare(&mut c);
    c.start_all().unwrap();
    c.wait_converged(converge_within).await.unwrap();
    c
}

/// Replaces each `(old, new)` in the text file at `path`; fails the test
/// if an `old` is not there, so an edit cannot silently miss.
pub fn rewrite(path: &Path, edits: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (old, new) in edits {
        assert!(
            text.contains(old),
            "{} lacks {old:?}:\n{text}",
            path.display()
        );
        text = text.replace(old, new);
    }
    std::fs::write(path, text).unwrap();
}
