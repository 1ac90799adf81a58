//! Confidence intervals and sample sizes for the verdicts.

/// The Wilson score interval of a binomial proportion: `successes` of `n` at the
/// two-sided confidence `confidence` (0.95). `(0, 1)` when `n == 0`.
pub fn wilson(successes: u64, n: u64, confidence: f64) -> (f64, f64) {
    todo!("{successes} {n} {confidence}")
}

/// The 1-based ranks `(lo, hi)` bracketing quantile `q` among `n` sorted samples at the
/// two-sided `confidence` (normal approximation of the binomial order statistic);
/// `hi` may exceed `n` (then the sample cannot bound the quantile from above) and `lo`
/// may be 0 (cannot bound it from below).
pub fn quantile_ranks(q: f64, n: u64, confidence: f64) -> (u64, u64) {
    todo!("{q} {n} {confidence}")
}

/// Requests needed for a proportion observed as `p_hat` to be told apart from
/// `threshold` at `confidence` (Wilson), or `None` when `p_hat == threshold`.
pub fn needed_for_rate(p_hat: f64, threshold: f64, confidence: f64) -> Option<u64> {
    todo!("{p_hat} {threshold} {confidence}")
}

/// Requests needed before the upper rank of quantile `q` fits in the sample at
/// `confidence`, i.e. before a sample can show that the quantile is below anything.
pub fn needed_for_quantile(q: f64, confidence: f64) -> u64 {
    todo!("{q} {confidence}")
}
