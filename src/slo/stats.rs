//! Confidence intervals and sample sizes for the verdicts.
//!
//! Every function here is total: a confidence outside (0, 1), a NaN, `n = 0` or a
//! quantile outside (0, 1] gives the "cannot tell" answer (the widest interval, an
//! unbounded rank, the capped sample size), never a panic.

/// The largest sample size [`needed_for_rate`] and [`needed_for_quantile`] report:
/// "more than anyone will send".
pub const NEEDED_CAP: u64 = 1_000_000_000_000;

/// The standard normal quantile: `x` with Φ(x) = `p`, for 0 < `p` < 1 (±∞ at 0 and
/// 1, NaN outside [0, 1]). Wichura's algorithm AS241 (PPND16, Applied Statistics 37
/// (1988) 477–484), accurate to about 1e-16.
pub fn inverse_normal(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        let num = (((((((2.509_080_928_730_122_7e3 * r + 3.343_057_558_358_813e4) * r
            + 6.726_577_092_700_87e4)
            * r
            + 4.592_195_393_154_987e4)
            * r
            + 1.373_169_376_550_946e4)
            * r
            + 1.971_590_950_306_551_3e3)
            * r
            + 1.331_416_678_917_843_8e2)
            * r
            + 3.387_132_872_796_366_5)
            * q;
        let den = ((((((5.226_495_278_852_854e3 * r + 2.872_908_573_572_194_3e4) * r
            + 3.930_789_580_009_271e4)
            * r
            + 2.121_379_430_158_659_7e4)
            * r
            + 5.394_196_021_424_751e3)
            * r
            + 6.871_870_074_920_579e2)
            * r
            + 4.231_333_070_160_091e1)
            * r
            + 1.0;
        return num / den;
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let mut r = (-tail.ln()).sqrt();
    let x = if r <= 5.0 {
        r -= 1.6;
        let num = ((((((7.745_450_142_783_414e-4 * r + 2.272_384_498_926_918_4e-2) * r
            + 2.417_807_251_774_506e-1)
            * r
            + 1.270_458_252_452_368_4)
            * r
            + 3.647_848_324_763_204_5)
            * r
            + 5.769_497_221_460_691)
            * r
            + 4.630_337_846_156_546)
            * r
            + 1.423_437_110_749_683_5;
        let den = ((((((1.050_750_071_644_416_9e-9 * r + 5.475_938_084_995_345e-4) * r
            + 1.519_866_656_361_645_7e-2)
            * r
            + 1.481_039_764_274_800_8e-1)
            * r
            + 6.897_673_349_851e-1)
            * r
            + 1.676_384_830_183_803_8)
            * r
            + 2.053_191_626_637_759)
            * r
            + 1.0;
        num / den
    } else {
        r -= 5.0;
        let num = ((((((2.010_334_399_292_288_1e-7 * r + 2.711_555_568_743_487_6e-5) * r
            + 1.242_660_947_388_078_4e-3)
            * r
            + 2.653_218_952_657_612_4e-2)
            * r
            + 2.965_605_718_285_048_7e-1)
            * r
            + 1.784_826_539_917_291_3)
            * r
            + 5.463_784_911_164_114)
            * r
            + 6.657_904_643_501_103;
        let den = ((((((2.044_263_103_389_939_7e-15 * r + 1.421_511_758_316_446e-7) * r
            + 1.846_318_317_510_054_8e-5)
            * r
            + 7.868_691_311_456_133e-4)
            * r
            + 1.487_536_129_085_061_5e-2)
            * r
            + 1.369_298_809_227_358e-1)
            * r
            + 5.998_322_065_558_88e-1)
            * r
            + 1.0;
        num / den
    };
    if q < 0.0 { -x } else { x }
}

/// The two-sided critical value for `confidence` (0.95 → 1.959964). A confidence
/// that is NaN or not below 1 gives +∞ (an interval that covers everything); one at
/// or below 0 gives 0.
pub fn z_value(confidence: f64) -> f64 {
    if confidence.is_nan() || confidence >= 1.0 {
        return f64::INFINITY;
    }
    if confidence <= 0.0 {
        return 0.0;
    }
    inverse_normal((1.0 + confidence) / 2.0)
}

/// The Wilson score interval of a binomial proportion: `successes` of `n` at the
/// two-sided confidence `confidence` (0.95). `(0, 1)` when `n == 0`.
pub fn wilson(successes: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let s = successes.min(n);
    let (lo, hi) = wilson_at(s as f64 / n as f64, n as f64, z_value(confidence));
    // All successes (none) put the interval's end exactly at 1 (0); floating point
    // would leave it a hair inside.
    (if s == 0 { 0.0 } else { lo }, if s == n { 1.0 } else { hi })
}

/// The Wilson interval around a proportion `p` observed in `n` trials (`n` may be
/// any positive real: [`needed_for_rate`] searches over it), clamped to [0, 1].
fn wilson_at(p: f64, n: f64, z: f64) -> (f64, f64) {
    if !z.is_finite() || p.is_nan() || n.is_nan() || n <= 0.0 {
        return (0.0, 1.0);
    }
    let p = p.clamp(0.0, 1.0);
    let z2 = z * z;
    let den = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / den;
    let half = z / den * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // The interval always holds p; rounding must not push an end past it (at p = 0
    // the lower end would otherwise come out a hair above 0).
    ((center - half).clamp(0.0, p), (center + half).clamp(p, 1.0))
}

/// The 1-based ranks `(lo, hi)` bracketing quantile `q` among `n` sorted samples at the
/// two-sided `confidence` (normal approximation of the binomial order statistic);
/// `hi` may exceed `n` (then the sample cannot bound the quantile from above) and `lo`
/// may be 0 (cannot bound it from below).
///
/// `lo = ⌊nq − z·√(nq(1−q))⌋`, `hi = ⌈nq + z·√(nq(1−q))⌉ + 1`; for `q = 1` (the
/// max) `lo = hi = n`. `n = 0`, or `q` outside (0, 1]: `(0, n + 1)`, bounded on
/// neither side.
pub fn quantile_ranks(q: f64, n: u64, confidence: f64) -> (u64, u64) {
    let unbounded = (0, n.saturating_add(1));
    if n == 0 || q.is_nan() || q <= 0.0 || q > 1.0 {
        return unbounded;
    }
    if q == 1.0 {
        return (n, n);
    }
    let z = z_value(confidence);
    let nf = n as f64;
    let mean = nf * q;
    let spread = z * (mean * (1.0 - q)).sqrt();
    // `as` saturates: a negative lower rank becomes 0 (unbounded), an infinite upper
    // one u64::MAX.
    let lo = (mean - spread).floor() as u64;
    let hi = ((mean + spread).ceil() + 1.0) as u64;
    (lo.min(n), hi.max(lo))
}

/// Requests needed for a proportion observed as `p_hat` to be told apart from
/// `threshold` at `confidence` (Wilson), or `None` when `p_hat == threshold`.
///
/// The smallest `n` at which the Wilson interval around `p_hat` (held fixed) no longer
/// contains `threshold`, capped at [`NEEDED_CAP`] (also the answer when no sample can
/// decide, e.g. `p_hat = 0` against a threshold of 0 or a confidence of 1). `None`
/// too when either value is NaN.
pub fn needed_for_rate(p_hat: f64, threshold: f64, confidence: f64) -> Option<u64> {
    if p_hat.is_nan() || threshold.is_nan() || p_hat == threshold {
        return None;
    }
    let z = z_value(confidence);
    let decides = |n: u64| {
        let (lo, hi) = wilson_at(p_hat, n as f64, z);
        threshold < lo || threshold > hi
    };
    Some(smallest(decides))
}

/// Requests needed before the upper rank of quantile `q` fits in the sample at
/// `confidence`, i.e. before a sample can show that the quantile is below anything.
///
/// The smallest `n` with `hi <= n` in [`quantile_ranks`] (1 for the max), capped at
/// [`NEEDED_CAP`] (also for `q` outside (0, 1]).
pub fn needed_for_quantile(q: f64, confidence: f64) -> u64 {
    smallest(|n| quantile_ranks(q, n, confidence).1 <= n)
}

/// Requests needed before the lower rank of quantile `q` is at least 1 at
/// `confidence`: before a sample can show that the quantile is above anything.
pub fn needed_for_quantile_lower(q: f64, confidence: f64) -> u64 {
    smallest(|n| quantile_ranks(q, n, confidence).0 >= 1)
}

/// The smallest `n` in `1..=NEEDED_CAP` with `ok(n)`, for a monotone `ok` (false, then
/// true); [`NEEDED_CAP`] when even that is not enough.
fn smallest(ok: impl Fn(u64) -> bool) -> u64 {
    let mut hi = 1;
    while !ok(hi) {
        if hi >= NEEDED_CAP {
            return NEEDED_CAP;
        }
        hi = (hi * 2).min(NEEDED_CAP);
    }
    // ok(hi); not ok(lo) unless hi == 1.
    let mut lo = hi / 2;
    if lo == 0 {
        return hi;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Reference quantiles: published normal-table values, each checked with the
    /// C library's erfc (Python `0.5 * math.erfc(-x / math.sqrt(2))` gives back p).
    #[test]
    fn inverse_normal_matches_reference_values() {
        for (p, x) in [
            (0.975, 1.959_963_984_540_054),
            (0.995, 2.575_829_303_548_900_4),
            (0.95, 1.644_853_626_951_472_2),
            (0.5, 0.0),
            (0.025, -1.959_963_984_540_054),
            (1e-10, -6.361_340_902_404_056),
            (1e-15, -7.941_345_326_170_995),
        ] {
            let got = inverse_normal(p);
            assert!(close(got, x, 1e-9), "Φ⁻¹({p}) = {got}, want {x}");
        }
        assert!(close(z_value(0.95), 1.959_964, 1e-6));
        assert!(inverse_normal(f64::NAN).is_nan());
        assert!(inverse_normal(1.5).is_nan());
        assert_eq!(inverse_normal(1.0), f64::INFINITY);
        assert_eq!(z_value(f64::NAN), f64::INFINITY);
    }

    /// References from the closed-form Wilson formula evaluated independently in
    /// Python (z = 1.959963984540054, checked with libm's erfc).
    #[test]
    fn wilson_matches_reference_values() {
        let (lo, hi) = wilson(0, 10, 0.95);
        assert_eq!(lo, 0.0);
        assert!(close(hi, 0.277_532_799_862_889, 1e-9), "{hi}");
        let (lo, hi) = wilson(81, 263, 0.95);
        assert!(close(lo, 0.255_288_519_878_274, 1e-9), "{lo}");
        assert!(close(hi, 0.366_209_576_982_800, 1e-9), "{hi}");
        let (lo, hi) = wilson(950, 1000, 0.95);
        assert!(close(lo, 0.934_686_179_755_749, 1e-9), "{lo}");
        assert!(close(hi, 0.961_869_737_607_251, 1e-9), "{hi}");
        let (lo, hi) = wilson(500, 500, 0.95);
        assert!(close(lo, 0.992_375_659_538_448, 1e-9), "{lo}");
        assert_eq!(hi, 1.0);
        assert_eq!(wilson(0, 0, 0.95), (0.0, 1.0));
        assert_eq!(wilson(3, 10, f64::NAN), (0.0, 1.0));
        // More successes than trials is clamped, not a panic.
        assert_eq!(wilson(11, 10, 0.95).1, 1.0);
    }

    #[test]
    fn quantile_ranks_follow_the_normal_approximation() {
        // n = 1000, q = 0.99: nq = 990, sd = √9.9 = 3.146, z·sd = 6.167
        assert_eq!(quantile_ranks(0.99, 1000, 0.95), (983, 998));
        // p999 of 500: nq = 499.5, z·sd = 1.385 → hi 502 > 500: unbounded above
        assert_eq!(quantile_ranks(0.999, 500, 0.95), (498, 502));
        assert_eq!(quantile_ranks(1.0, 7, 0.95), (7, 7));
        assert_eq!(quantile_ranks(0.5, 0, 0.95), (0, 1));
        assert_eq!(quantile_ranks(f64::NAN, 10, 0.95), (0, 11));
        assert_eq!(quantile_ranks(1.5, 10, 0.95), (0, 11));
        assert_eq!(quantile_ranks(0.0, 10, 0.95), (0, 11));
        let (lo, hi) = quantile_ranks(0.5, 10, 1.0);
        assert_eq!((lo, hi), (0, u64::MAX));
    }

    #[test]
    fn needed_for_rate_at_the_brief_example() {
        // 0 failures: the Wilson lower bound is n / (n + z²); it exceeds 0.999 once
        // n > 999·z² = 3837.6.
        assert_eq!(needed_for_rate(1.0, 0.999, 0.95), Some(3838));
        assert_eq!(needed_for_rate(0.5, 0.5, 0.95), None);
        assert_eq!(needed_for_rate(f64::NAN, 0.5, 0.95), None);
        // 0 against 0 can never be told apart.
        assert_eq!(needed_for_rate(0.0, 1e-300, 0.95), Some(NEEDED_CAP));
        assert_eq!(needed_for_rate(0.9, 0.5, 1.0), Some(NEEDED_CAP));
        // A big difference is decided at once.
        assert_eq!(needed_for_rate(1.0, 0.0, 0.95), Some(1));
    }

    #[test]
    fn needed_for_quantile_is_where_the_upper_rank_fits() {
        for q in [0.5, 0.9, 0.99, 0.999, 0.9999] {
            let n = needed_for_quantile(q, 0.95);
            assert!(quantile_ranks(q, n, 0.95).1 <= n, "q {q} n {n}");
            assert!(quantile_ranks(q, n - 1, 0.95).1 > n - 1, "q {q} n {n}");
        }
        assert_eq!(needed_for_quantile(1.0, 0.95), 1);
        assert_eq!(needed_for_quantile(f64::NAN, 0.95), NEEDED_CAP);
        let n = needed_for_quantile_lower(0.01, 0.95);
        assert!(quantile_ranks(0.01, n, 0.95).0 >= 1);
        assert_eq!(quantile_ranks(0.01, n - 1, 0.95).0, 0);
    }

    proptest! {
        #[test]
        fn wilson_contains_p_hat_and_shrinks_with_n(
            s in 0u64..2000, extra in 0u64..2000, k in 2u64..6, c in 0.5f64..0.999,
        ) {
            let n = s + extra + 1;
            let p = s as f64 / n as f64;
            let (lo, hi) = wilson(s, n, c);
            prop_assert!(lo <= p + 1e-12 && p <= hi + 1e-12, "{lo} {p} {hi}");
            prop_assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
            // The same proportion in k times the sample: a narrower interval.
            let (lo2, hi2) = wilson(s * k, n * k, c);
            prop_assert!(hi2 - lo2 < hi - lo, "{lo2}..{hi2} vs {lo}..{hi}");
            // Higher confidence: a wider interval.
            let (lo3, hi3) = wilson(s, n, (c + 1.0) / 2.0);
            prop_assert!(hi3 - lo3 > hi - lo);
        }

        #[test]
        fn needed_for_rate_decides_and_is_the_smallest(
            p in 0.0f64..=1.0, t in 0.001f64..0.999,
        ) {
            prop_assume!((p - t).abs() > 0.01);
            let n = needed_for_rate(p, t, 0.95).expect("differ");
            let z = z_value(0.95);
            let (lo, hi) = wilson_at(p, n as f64, z);
            prop_assert!(t < lo || t > hi);
            if n > 1 {
                let (lo, hi) = wilson_at(p, (n - 1) as f64, z);
                prop_assert!(lo <= t && t <= hi);
            }
        }

        #[test]
        fn quantile_ranks_bracket_nq(q in 0.001f64..0.999, n in 1u64..100_000) {
            let (lo, hi) = quantile_ranks(q, n, 0.95);
            let nq = n as f64 * q;
            prop_assert!((lo as f64) <= nq && nq <= hi as f64);
        }
    }
}
