//! `phimon eval` end to end: the real binary on traces in the repo.

#![allow(clippy::unwrap_used)] // Test helpers: a panic is a failed test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn phimon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_phimon"))
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
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
    let trace_path = repo("traces/steady-1s.trace");
    let out = phimon()
        .args(["eval", "--trace"])
        .arg(&trace_path)
        .arg("--config")
        .arg(&cfg)
        .arg("--phi-out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Reference: mean and std of the recorded intervals, std floored.
    let text = std::fs::read_to_string(&trace_path).unwrap();
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
    let out = phimon()
        .args(["eval", "--trace"])
        .arg(repo("traces/steady-1s.trace"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("detector.threshold"));
}

#[test]
fn report_lists_qos_per_threshold() {
    let out = phimon()
        .args(["eval", "--trace"])
        .arg(repo("traces/steady-1s.trace"))
        .args(["--thresholds", "1,8"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("detection_ms") && s.contains("query_accuracy"),
        "{s}"
    );
    // Threshold 8 on a steady 1 s trace: ~1.56 s after the last heartbeat,
    // i.e. ~1.06 s after the crash at last + 500 ms.
    let row = s
        .lines()
        .find(|l| l.trim_start().starts_with("8 "))
        .unwrap();
    let det: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((1000.0..1150.0).contains(&det), "{row}");
}
