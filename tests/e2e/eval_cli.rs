//! `phimon eval` end to end: the real binary on traces in the repo.

use crate::common::{phimon, row, succeed};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// `phimon eval --trace traces/<name>`, for the caller to add arguments to.
fn eval_trace(name: &str) -> Command {
    let mut cmd = phimon();
    cmd.args(["eval", "--trace"])
        .arg(repo(&format!("traces/{name}")));
    cmd
}

/// Detection time at threshold `th`, ms: the report's second column.
fn detection_ms(report: &str, th: &str) -> f64 {
    row(report, th)[1].parse().unwrap()
}

/// ln Q(y) for y >= 0 from the continued fraction of erfc (Lentz), and for
/// y < 0 from the series of erf: independent of the detector's code.
fn ln_q(y: f64) -> f64 {
    use std::f64::consts::{PI, SQRT_2};
    let x = y / SQRT_2;
    if x.abs() < 2.0 {
        // erf by its Taylor series, converges fast for |x| < 2.
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        let erf = 2.0 / PI.sqrt() * sum;
        return (0.5 * (1.0 - erf)).ln();
    }
    assert!(x > 0.0, "reference only covers y > -2.8");
    let (mut f, mut c, mut d) = (x, x, 0.0f64);
    for n in 1..10_000 {
        let a = n as f64 / 2.0;
        d = 1.0 / (x + a * d);
        c = x + a / c;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    -x * x - PI.sqrt().ln() - f.ln() - std::f64::consts::LN_2
}

#[test]
fn steady_trace_phi_matches_the_exact_normal_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[detector]\nmin_std_dev = \"100ms\"\nacceptable_pause = \"0s\"\ndistribution = \"normal\"\n",
    )
    .unwrap();
    let csv = dir.path().join("phi.csv");
    succeed(
        eval_trace("steady-1s.trace")
            .arg("--config")
            .arg(&cfg)
            .arg("--phi-out")
            .arg(&csv),
    );

    // Reference: mean and std of the recorded intervals, std floored.
    let text = std::fs::read_to_string(repo("traces/steady-1s.trace")).unwrap();
    let arrivals: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#') && *l != "arrival_ms" && !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect();
    let last = *arrivals.last().unwrap();
    let iv: Vec<f64> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = iv.iter().sum::<f64>() / iv.len() as f64;
    let std = (iv.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / iv.len() as f64)
        .sqrt()
        .max(100.0);

    let rows: Vec<(f64, f64)> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (t, p) = l.split_once(',').unwrap();
            (t.parse().unwrap(), p.parse().unwrap())
        })
        .collect();
    let mut checked = 0;
    let mut prev = f64::NEG_INFINITY;
    for &(t, phi) in rows
        .iter()
        .filter(|(t, _)| *t >= last && *t <= last + 60_000.0)
    {
        assert!(phi.is_finite(), "phi({t}) = {phi}");
        assert!(
            phi > prev || t == last,
            "phi not increasing at {t}: {phi} <= {prev}"
        );
        prev = phi;
        let y = (t - last - mean) / std;
        if y < -2.5 {
            // phi < 0.003 here: nothing an operator could read.
            assert!(phi < 0.003, "t={t}: {phi}");
            checked += 1;
            continue;
        }
        let want = -ln_q(y) / std::f64::consts::LN_10;
        {
            let rel = ((phi - want) / want).abs();
            assert!(rel < 0.01, "t={t}: phi {phi} vs exact {want} (rel {rel})");
        }
        checked += 1;
    }
    assert!(
        checked >= 6000,
        "only {checked} samples in the 60 s after the last heartbeat"
    );
    // At 60 s of silence phi is huge but finite.
    assert!(prev > 1e4 && prev.is_finite(), "{prev}");
}

#[test]
fn bad_traces_exit_2_with_the_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "# interval_ms=1000\n# end_ms=5000\narrival_ms\n0\n1000\nfoo\n",
            "line 6",
        ),
        (
            "# interval_ms=1000\n# end_ms=5000\narrival_ms\n0\n2000\n1000\n",
            "line 6",
        ),
        ("arrival_ms\n0\n", "missing header"),
        ("# interval_ms=1000\n# end_ms=5000\n0\n", "line 3"),
        (
            "# interval_ms=1000\n# end_ms=5000\n# outage_ms=3000-2000\narrival_ms\n0\n",
            "line 3: outage_ms",
        ),
        (
            "# interval_ms=1000\n# end_ms=5000\n# outage_ms=1000-2000\n# outage_ms=1500-2500\narrival_ms\n0\n",
            "line 4: outage_ms",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.trace"));
        std::fs::write(&p, text).unwrap();
        let out = phimon().args(["eval", "--trace"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        assert!(err.contains(want), "case {i}: {err:?} lacks {want:?}");
    }
    let out = phimon()
        .args(["eval", "--trace", "/nonexistent.trace"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn broken_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[detector]\nthreshold = -1.0\n").unwrap();
    let out = eval_trace("steady-1s.trace")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("detector.threshold"));
}

#[test]
fn report_lists_qos_per_threshold() {
    // The analytic figure below is the normal model's; pin it, since the
    // default model is now `adaptive`.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[detector]\ndistribution = \"normal\"\n").unwrap();
    let s = succeed(
        eval_trace("steady-1s.trace")
            .arg("--config")
            .arg(&cfg)
            .args(["--thresholds", "1,8"]),
    );
    assert!(
        s.contains("detection_ms") && s.contains("query_accuracy"),
        "{s}"
    );
    // Threshold 8 on a steady 1 s trace: ~1.56 s after the last heartbeat,
    // i.e. ~1.06 s after the crash at last + 500 ms.
    let det = detection_ms(&s, "8");
    assert!((1000.0..1150.0).contains(&det), "{det}\n{s}");
}

#[test]
fn outages_are_reported_apart_from_mistakes() {
    let s = succeed(eval_trace("partition.trace").args(["--thresholds", "2,30"]));
    assert!(
        s.contains("outage_detect_ms") && s.contains("1200000-1208000"),
        "{s}"
    );
    // At a threshold the 8 s partition reaches, it is an outage detection,
    // not a mistake; at one it never reaches, nothing is. Column 6 is
    // outage_detect_ms.
    let low = row(&s, "2");
    let outage_ms: f64 = low[6].parse().unwrap();
    assert!((0.0..8000.0).contains(&outage_ms), "{low:?}");
    assert_eq!(row(&s, "30")[6], "-");
}

fn compare_json(corpus: &Path) -> serde_json::Value {
    let out = succeed(
        phimon()
            .args(["eval", "--compare", "--json", "--corpus"])
            .arg(corpus),
    );
    serde_json::from_str(&out).unwrap()
}

fn mean_at_zero(v: &serde_json::Value, name: &str) -> Option<f64> {
    v["contenders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no contender {name}"))["zero_mistakes"]["mean_detection_ms"]
        .as_f64()
}

#[test]
fn compare_ranks_detectors_at_equal_mistakes() {
    let v = compare_json(&repo("traces"));
    assert_eq!(v["crashes"].as_u64(), Some(11));
    for c in v["contenders"].as_array().unwrap() {
        let z = &c["zero_mistakes"];
        if z["threshold"].is_null() {
            // Only Akka's phi can be infinite while the sender is alive.
            assert!(c["name"].as_str().unwrap().contains("akka"), "{c}");
            continue;
        }
        assert_eq!(z["mistakes"].as_u64(), Some(0), "{c}");
        assert_eq!(z["undetected"].as_u64(), Some(0), "{c}");
        let h = &c["hourly"];
        assert!(h["mistakes_per_hour"].as_f64().unwrap() <= 1.0, "{c}");
        // A looser budget never detects later.
        assert!(
            h["mean_detection_ms"].as_f64().unwrap() <= z["mean_detection_ms"].as_f64().unwrap(),
            "{c}"
        );
    }
    // The old default (normal over a 1000-interval window) needs a huge
    // threshold to survive the GC pauses and interval changes.
    let adaptive = mean_at_zero(&v, "phimon adaptive").unwrap();
    let normal = mean_at_zero(&v, "phimon normal").unwrap();
    assert!(
        adaptive < 0.5 * normal,
        "adaptive {adaptive} vs normal {normal}"
    );
    // The default beats the best baseline at zero mistakes on the corpus
    // (0.87 with the current prior, chosen for random hostile networks;
    // the previous default's 0.72 came with false suspicions there).
    let best = v["contenders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["baseline"] == true)
        .filter_map(|c| c["zero_mistakes"]["mean_detection_ms"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert!(
        adaptive <= 0.95 * best,
        "adaptive {adaptive} vs best baseline {best}"
    );
    // The partition is an outage: detected, and not a mistake.
    let ours = &v["contenders"][0]["zero_mistakes"];
    assert_eq!(ours["outages"].as_u64(), Some(1), "{ours}");
    assert_eq!(ours["outages_detected"].as_u64(), Some(1), "{ours}");
    // The text report carries the same table.
    let s = succeed(
        phimon()
            .args(["eval", "--compare", "--corpus"])
            .arg(repo("traces")),
    );
    assert!(
        s.contains("zero mistakes") && s.contains("baseline cassandra"),
        "{s}"
    );
}

#[test]
fn a_clean_link_is_detected_within_seconds_at_the_default_threshold() {
    // The default threshold 8 makes no mistake on the committed corpus,
    // the recorded traces and the direct-heartbeat set, and suspects a
    // crash on a clean 1 s link ~4.5 s after it; 5 ~2.1 s after it.
    let s = succeed(eval_trace("steady-lan.trace").args(["--thresholds", "5,8"]));
    assert!((1500.0..3000.0).contains(&detection_ms(&s, "5")), "{s}");
    assert!((3500.0..5500.0).contains(&detection_ms(&s, "8")), "{s}");
}

#[test]
fn compare_needs_a_corpus_with_traces() {
    let dir = tempfile::tempdir().unwrap();
    let out = phimon()
        .args(["eval", "--compare", "--corpus"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no *.trace"));
}
