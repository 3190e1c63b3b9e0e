//! `phimon run --record-arrivals`: two real sidecars on loopback record
//! each other's heartbeats, and `phimon eval` replays what they wrote.

use crate::common::{bin, phimon, row, succeed};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use phimon_eval::trace::Trace;
use phimon_testkit::local_cluster::{ClusterSpec, LocalCluster};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Children killed if the test fails half-way.
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(config: &Path, record: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    phimon()
        .args(["run", "--config"])
        .arg(config)
        .arg("--record-arrivals")
        .arg(record)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn terminate(c: &mut Child) {
    kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn traces_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "trace"))
        .collect();
    v.sort();
    v
}

#[test]
fn sidecars_record_traces_that_eval_replays() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 2,
        interval: Duration::from_millis(200),
        ..ClusterSpec::default()
    };
    let cluster = LocalCluster::create(bin(), dir.path(), &spec).unwrap();
    let rec: Vec<PathBuf> = cluster
        .nodes
        .iter()
        .map(|n| dir.path().join("rec").join(&n.id))
        .collect();
    let mut running = Running(
        cluster
            .nodes
            .iter()
            .zip(&rec)
            .map(|(n, r)| spawn(&n.config, r, &n.log))
            .collect(),
    );
    std::thread::sleep(Duration::from_secs(6));
    for c in &mut running.0 {
        terminate(c);
    }

    for (i, r) in rec.iter().enumerate() {
        let log = std::fs::read_to_string(&cluster.nodes[i].log).unwrap_or_default();
        let files = traces_in(r);
        assert_eq!(files.len(), 1, "{files:?}\n{log}");
        let peer = &cluster.nodes[1 - i].id;
        let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("{peer}.")), "{name}");
        let t = Trace::parse(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
        assert_eq!(t.interval_ms, 200.0);
        assert_eq!(t.meta("observer"), Some(cluster.nodes[i].id.as_str()));
        assert_eq!(t.meta("peer"), Some(peer.as_str()));
        // About 6 s of 200 ms heartbeats, minus the start-up and the
        // stop of whichever node went first.
        assert!(
            (10..=40).contains(&t.arrivals_ms.len()),
            "{} arrivals\n{log}",
            t.arrivals_ms.len()
        );
        let widest = t
            .arrivals_ms
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(0.0, f64::max);
        assert!(widest < 2_000.0, "a {widest} ms gap on loopback");
        assert!(t.end_ms >= *t.arrivals_ms.last().unwrap());

        let stdout = succeed(
            phimon()
                .args(["eval", "--thresholds", "4,8", "--trace"])
                .arg(&files[0]),
        );
        assert!(stdout.contains("<- configured"), "{stdout}");
    }
}

#[test]
fn an_unwritable_record_directory_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 1,
        ..ClusterSpec::default()
    };
    let cluster = LocalCluster::create(bin(), dir.path(), &spec).unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = phimon()
        .args(["run", "--config"])
        .arg(&cluster.nodes[0].config)
        .arg("--record-arrivals")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--record-arrivals"), "{stderr}");
}

/// The committed recordings (`traces/recorded/`, made with
/// `--record-arrivals` under CPU stress, sender SIGSTOPs and SIGKILLs):
/// at the default threshold the default model makes no false suspicion
/// on real traffic and detects both kills.
#[test]
fn default_threshold_is_clean_on_recorded_traffic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/recorded");
    let files = traces_in(&dir);
    assert!(files.len() >= 2, "{files:?}");
    for f in files {
        let t = Trace::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert!(t.crash_ms.is_some() && !t.outages_ms.is_empty(), "{f:?}");
        let stdout = succeed(
            phimon()
                .args(["eval", "--thresholds", "8", "--trace"])
                .arg(&f),
        );
        let row = row(&stdout, "8");
        let detection: f64 = row[1].parse().unwrap_or(f64::INFINITY);
        let mistakes: u64 = row[2].parse().unwrap();
        assert_eq!(mistakes, 0, "{f:?}\n{stdout}");
        assert!(detection < 10_000.0, "{f:?}\n{stdout}");
    }
}
