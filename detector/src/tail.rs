//! Upper tail of the standard normal distribution, in log space.
//!
//! phi = -log10(Q(y)) where Q(y) = P(Z > y) for a standard normal Z. Q
//! underflows `f64` near y = 38, so computing `Q` and then taking its log
//! (or using Akka's logistic approximation, which is off by 60 % at 10
//! sigma and reaches infinity) makes phi saturate. Here log Q is computed
//! directly: from `erfc` while it is representable and from the asymptotic
//! expansion of the scaled complementary error function beyond, so phi is
//! finite and strictly increasing for every finite y.

// Cody's coefficients are kept digit for digit as published, so they can
// be checked against the paper; the extra digits round away harmlessly.
#![allow(clippy::excessive_precision)]

use std::f64::consts::{FRAC_1_SQRT_2, LOG10_E};

/// 1 / sqrt(pi).
const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;

// W. J. Cody, "Rational Chebyshev approximations for the error function",
// Math. Comp. 23 (1969), coefficients as in SPECFUN's CALERF.

/// erf(x) on |x| <= 0.5: numerator.
const ERF_A: [f64; 5] = [
    3.161_123_743_870_565_6,
    1.138_641_541_510_501_6e2,
    3.774_852_376_853_020_2e2,
    3.209_377_589_138_469_5e3,
    1.857_777_061_846_031_5e-1,
];
/// erf(x) on |x| <= 0.5: denominator.
const ERF_B: [f64; 4] = [
    2.360_129_095_234_412e1,
    2.440_246_379_344_441_7e2,
    1.282_616_526_077_372_3e3,
    2.844_236_833_439_170_6e3,
];
/// erfcx(x) = exp(x^2) erfc(x) on 0.5 < x <= 4: numerator.
const ERFCX_C: [f64; 9] = [
    5.641_884_969_886_701e-1,
    8.883_149_794_388_376,
    6.611_919_063_714_163e1,
    2.986_351_381_974_001_3e2,
    8.819_522_212_417_69e2,
    1.712_047_612_634_070_6e3,
    2.051_078_377_826_071_5e3,
    1.230_339_354_797_997_2e3,
    2.153_115_354_744_038_5e-8,
];
/// erfcx(x) on 0.5 < x <= 4: denominator.
const ERFCX_D: [f64; 8] = [
    1.574_492_611_070_983_5e1,
    1.176_939_508_913_125e2,
    5.371_811_018_620_098_6e2,
    1.621_389_574_566_690_2e3,
    3.290_799_235_733_459_7e3,
    4.362_619_090_143_247e3,
    3.439_367_674_143_721_6e3,
    1.230_339_354_803_749_5e3,
];
/// erfcx(x) on x > 4, in z = 1/x^2: numerator.
const ERFCX_P: [f64; 6] = [
    3.053_266_349_612_323_4e-1,
    3.603_448_999_498_044_4e-1,
    1.257_817_261_112_292_5e-1,
    1.608_378_514_874_227_7e-2,
    6.587_491_615_298_378e-4,
    1.631_538_713_730_209_8e-2,
];
/// erfcx(x) on x > 4: denominator.
const ERFCX_Q: [f64; 5] = [
    2.568_520_192_289_822,
    1.872_952_849_923_467_3,
    5.279_051_029_514_284e-1,
    6.051_834_131_244_132e-2,
    2.335_204_976_268_691_8e-3,
];

/// erf(x) for |x| <= 0.5.
fn erf_small(x: f64) -> f64 {
    let z = x * x;
    let mut num = ERF_A[4] * z;
    let mut den = z;
    for i in 0..3 {
        num = (num + ERF_A[i]) * z;
        den = (den + ERF_B[i]) * z;
    }
    x * (num + ERF_A[3]) / (den + ERF_B[3])
}

/// The scaled complementary error function exp(x^2) erfc(x) for x > 0.5.
/// Never underflows: it decays like 1 / (x sqrt(pi)).
fn erfcx_large(x: f64) -> f64 {
    if x <= 4.0 {
        // Estrin's scheme: the same polynomials as Horner's, evaluated as
        // a shallow tree so the CPU overlaps the multiplications; this is
        // the hot path of phi for a peer that is late but not yet suspect.
        let x2 = x * x;
        let x4 = x2 * x2;
        let x8 = x4 * x4;
        let c = &ERFCX_C;
        let d = &ERFCX_D;
        let num = ((c[7] + c[6] * x) + (c[5] + c[4] * x) * x2)
            + ((c[3] + c[2] * x) + (c[1] + c[0] * x) * x2) * x4
            + c[8] * x8;
        let den = ((d[7] + d[6] * x) + (d[5] + d[4] * x) * x2)
            + ((d[3] + d[2] * x) + (d[1] + d[0] * x) * x2) * x4
            + x8;
        num / den
    } else {
        let z = 1.0 / (x * x);
        let mut num = ERFCX_P[5] * z;
        let mut den = z;
        for i in 0..4 {
            num = (num + ERFCX_P[i]) * z;
            den = (den + ERFCX_Q[i]) * z;
        }
        let r = z * (num + ERFCX_P[4]) / (den + ERFCX_Q[4]);
        (FRAC_1_SQRT_PI - r) / x
    }
}

/// Q(y) = P(Z > y) itself, for callers that stay in linear space while
/// it is representable: relative error ~1e-15, 0 beyond y ~ 38.6.
pub fn normal_sf(y: f64) -> f64 {
    let x = y * FRAC_1_SQRT_2;
    if x > 0.5 {
        0.5 * (-x * x).exp() * erfcx_large(x)
    } else if x >= -0.5 {
        0.5 - 0.5 * erf_small(x)
    } else {
        1.0 - 0.5 * (-x * x).exp() * erfcx_large(-x)
    }
}

/// Natural log of Q(y) = P(Z > y), Z standard normal. Relative error in Q
/// of a few ulps for all finite y (Cody's approximations are accurate to
/// ~1e-16); returns 0 for y = -inf and NaN for NaN.
///
/// On the upper tail it is computed as -x^2 + ln(erfcx(x) / 2) with
/// x = y / sqrt(2), which needs no `exp` and cannot underflow: phi stays
/// finite and strictly increasing however far out y goes.
pub fn ln_normal_sf(y: f64) -> f64 {
    let x = y * FRAC_1_SQRT_2;
    if x > 0.5 {
        -x * x + (erfcx_large(x) * 0.5).ln()
    } else if x >= -0.5 {
        (0.5 - 0.5 * erf_small(x)).ln()
    } else {
        // Q = 1 - e with e = erfc(|x|) / 2, tiny far out: ln_1p keeps it exact.
        let e = 0.5 * (-x * x).exp() * erfcx_large(-x);
        (-e).ln_1p()
    }
}

/// phi of a standard normal score: -log10 Q(y). Never negative, never NaN
/// for non-NaN input, finite for finite input, and strictly increasing in
/// y wherever `f64` can resolve the difference.
pub fn phi_normal(y: f64) -> f64 {
    // A multiplication: a division here would cost more than the log.
    let phi = -ln_normal_sf(y) * LOG10_E;
    // ln_1p can return -0.0 for y -> -inf; phi is a suspicion level >= 0.
    if phi > 0.0 { phi } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_tail_agrees_with_the_log_tail() {
        // Up to y = 37, where Q is still a normal (not subnormal) float.
        let mut y = -40.0;
        while y < 37.0 {
            let q = normal_sf(y);
            let want = ln_normal_sf(y).exp();
            assert!(((q - want) / want).abs() < 1e-13, "Q({y}) = {q} vs {want}");
            y += 0.01;
        }
    }
    use std::f64::consts::{LN_2, PI, SQRT_2};

    /// Q(y) by Lentz's continued fraction for erfc, an algorithm independent
    /// of both branches above, in log space.
    fn ln_q_reference(y: f64) -> f64 {
        assert!(y >= 3.0);
        let x = y * FRAC_1_SQRT_2;
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        let tiny = 1e-300;
        let mut f = x;
        let mut c = x;
        let mut d = 0.0;
        for n in 1..5000 {
            let a = n as f64 / 2.0;
            d = x + a * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = x + a / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        -x * x - PI.sqrt().ln() - f.ln() - LN_2
    }

    #[test]
    fn known_values() {
        // Q(y) from published tables (computed with arbitrary precision).
        let table = [
            (-10.0, 1.0 - 7.619853024160527e-24),
            (-1.0, 0.8413447460685429),
            (0.0, 0.5),
            (1.0, 0.15865525393145707),
            (2.0, 0.022750131948179195),
            (3.0, 0.0013498980316300946),
            (5.0, 2.866515718791939e-07),
            (8.0, 6.220960574271785e-16),
            (10.0, 7.619853024160527e-24),
        ];
        for (y, q) in table {
            let got = ln_normal_sf(y).exp();
            let rel = ((got - q) / q).abs();
            assert!(rel < 1e-12, "Q({y}) = {got}, expected {q}, rel err {rel}");
        }
    }

    #[test]
    fn matches_continued_fraction_over_the_whole_range() {
        // Relative error of log Q and of Q itself stays far below 1e-6
        // for y in [3, 1000], across the branch switch at x = 26.
        let mut y = 3.0;
        while y <= 1000.0 {
            let got = ln_normal_sf(y);
            let want = ln_q_reference(y);
            // Relative error in Q is |exp(got - want) - 1| ~ |got - want|.
            let q_rel = (got - want).abs();
            assert!(q_rel < 1e-9, "y={y}: ln Q {got} vs {want}");
            let phi_rel = ((got - want) / want).abs();
            assert!(phi_rel < 1e-12, "y={y}: phi rel err {phi_rel}");
            y += 0.37;
        }
    }

    #[test]
    fn matches_libm_erfc_where_it_is_representable() {
        // An independent implementation (fdlibm's) over the whole range
        // where erfc does not underflow, both signs, every branch.
        let mut y = -37.0;
        while y < 37.0 {
            let want = (0.5 * libm::erfc(y / SQRT_2)).ln();
            let got = ln_normal_sf(y);
            // Absolute error of ln Q is the relative error of Q.
            let err = (got - want).abs();
            assert!(err < 1e-13 * want.abs().max(1.0), "y={y}: {got} vs {want}");
            y += 0.013;
        }
    }

    #[test]
    fn continuous_at_branch_switches() {
        for x0 in [-0.5f64, 0.5, 4.0] {
            let y0 = x0 * SQRT_2;
            let below = ln_normal_sf(y0 - 1e-9);
            let above = ln_normal_sf(y0 + 1e-9);
            assert!(below >= above, "not monotone at {y0}");
            assert!((below - above).abs() < 1e-7, "{below} vs {above} at {y0}");
        }
    }

    #[test]
    fn phi_is_finite_and_monotone_far_out() {
        let mut prev = phi_normal(-50.0);
        assert!(prev >= 0.0);
        for i in 0..200_000 {
            let y = -50.0 + i as f64 * 0.5;
            let p = phi_normal(y);
            assert!(p.is_finite(), "phi({y}) = {p}");
            assert!(p >= prev, "phi({y}) = {p} < {prev}");
            if y > -5.0 {
                assert!(p > prev, "phi not strictly increasing at {y}");
            }
            prev = p;
        }
        assert!(phi_normal(1e12).is_finite());
    }
}
