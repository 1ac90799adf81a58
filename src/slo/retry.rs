//! Retry validation: what a retry policy promises against an upstream that fails a
//! share of attempts, and whether the measurement agrees.
//!
//! With `n` retries (so `n + 1` attempts at most) and each attempt failing
//! independently with probability `p`, a request fails only when every attempt does:
//! success = 1 − pⁿ⁺¹; the expected attempts per request (retry amplification) is
//! (1 − pⁿ⁺¹) / (1 − p) (`n + 1` when `p = 1`). A failure the policy does not retry
//! (a status outside `retryOn`, or a fault injected on the retrying hop itself,
//! istio#13705) gives success 1 − p and amplification 1.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::Verdict;

/// A route's retry policy as Envoy runs it, after Istio's defaults (istiod
/// `ConvertPolicy`, see `crate::mesh::translate::retry_policy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = none).
    pub num_retries: u32,
    /// Envoy `retry_on` conditions (`5xx`, `gateway-error`, `retriable-status-codes`, ...).
    pub retry_on: Vec<String>,
    /// Codes retried under `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    pub per_try_timeout: Option<Duration>,
}

impl RetryPolicy {
    /// The policy from Envoy's route `retry_policy` JSON (`None`: no retries at all).
    /// `crate::mesh::translate::route_retry_policy` reads one off a VirtualService
    /// route as istiod translates it.
    pub fn from_envoy(p: Option<&Value>) -> RetryPolicy {
        let Some(p) = p else {
            return RetryPolicy::none();
        };
        // Envoy's RetryPolicy.num_retries defaults to 1 when absent (istiod always
        // sets it).
        let num_retries = match p.get("num_retries").and_then(Value::as_u64) {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => 1,
        };
        let retry_on = p
            .get("retry_on")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let retriable_status_codes = p
            .get("retriable_status_codes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .filter_map(|c| u16::try_from(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        let per_try_timeout = p
            .get("per_try_timeout")
            .and_then(Value::as_str)
            .and_then(proto_duration);
        RetryPolicy {
            num_retries,
            retry_on,
            retriable_status_codes,
            per_try_timeout,
        }
    }

    /// No retry policy at all (`attempts: 0`).
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            num_retries: 0,
            retry_on: Vec::new(),
            retriable_status_codes: Vec::new(),
            per_try_timeout: None,
        }
    }

    fn retries_on(&self, condition: &str) -> bool {
        self.num_retries > 0 && self.retry_on.iter().any(|c| c == condition)
    }

    /// Attempts per request at most (`num_retries + 1`).
    pub fn attempts(&self) -> u32 {
        self.num_retries.saturating_add(1)
    }

    /// Whether an upstream answer with `status` is retried (`5xx`: 500–599;
    /// `gateway-error`: 502–504; `retriable-4xx`: 409; `retriable-status-codes`: the
    /// listed codes).
    pub fn retries_status(&self, status: u16) -> bool {
        (self.retries_on("5xx") && (500..=599).contains(&status))
            || (self.retries_on("gateway-error") && (502..=504).contains(&status))
            || (self.retries_on("retriable-4xx") && status == 409)
            || (self.retries_on("retriable-status-codes")
                && self.retriable_status_codes.contains(&status))
    }

    /// Whether an attempt that times out (per-try timeout) or is reset is retried
    /// (`5xx`, `gateway-error`, `reset`; per-try timeouts also under
    /// `retriable-status-codes` with 504 listed is *not* enough: Envoy needs one of the
    /// first three).
    pub fn retries_timeouts(&self) -> bool {
        ["5xx", "gateway-error", "reset"]
            .iter()
            .any(|c| self.retries_on(c))
    }

    /// `attempts 3 (retryOn 5xx)`, for messages.
    pub fn describe(&self) -> String {
        if self.num_retries == 0 {
            return "no retries (1 attempt)".to_string();
        }
        let mut on: Vec<String> = Vec::new();
        for c in &self.retry_on {
            if c == "retriable-status-codes" && !self.retriable_status_codes.is_empty() {
                let codes: Vec<String> = self
                    .retriable_status_codes
                    .iter()
                    .map(u16::to_string)
                    .collect();
                on.push(format!("{c} {}", codes.join(",")));
            } else {
                on.push(c.clone());
            }
        }
        let mut out = format!("attempts {}", self.attempts());
        let mut extra = Vec::new();
        if !on.is_empty() {
            extra.push(format!("retryOn {}", on.join(",")));
        }
        if let Some(t) = self.per_try_timeout {
            extra.push(format!("perTryTimeout {t:?}"));
        }
        if !extra.is_empty() {
            out.push_str(&format!(" ({})", extra.join("; ")));
        }
        out
    }
}

/// A proto-JSON duration (`2s`, `0.250s`) as a [`Duration`]; `None` when malformed.
fn proto_duration(s: &str) -> Option<Duration> {
    let digits = s.trim().strip_suffix('s')?;
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dotted = digits.contains('.');
    if (dotted && frac.is_empty()) || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(Duration::new(secs, nanos))
}

/// What a policy promises, per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Prediction {
    /// Probability that a request succeeds.
    pub success: f64,
    /// Expected attempts per request (upstream requests per downstream request).
    pub amplification: f64,
    /// Standard deviation of one request's success (Bernoulli).
    pub success_sd: f64,
    /// Standard deviation of one request's attempt count (truncated geometric).
    pub amplification_sd: f64,
}

/// The prediction for a per-attempt failure probability `p_fail` (0..=1) and
/// `retries` retries of each failure (pass 0 when the failure is not retried).
///
/// The attempts `K` of one request: `P(K = k) = pᵏ⁻¹(1 − p)` for `k ≤ n`, `P(K = n + 1)
/// = pⁿ`; so `P(K ≥ k) = pᵏ⁻¹`, `E[K] = Σ_{j<n+1} pʲ` and `E[K²] = Σ_{j<n+1} (2j + 1) pʲ`.
/// A `p_fail` outside [0, 1] (or NaN) gives NaN figures ([`validate`] refuses it).
pub fn predict(p_fail: f64, retries: u32) -> Prediction {
    let p = p_fail;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return Prediction {
            success: f64::NAN,
            amplification: f64::NAN,
            success_sd: f64::NAN,
            amplification_sd: f64::NAN,
        };
    }
    let attempts = f64::from(retries) + 1.0;
    let all_fail = p.powf(attempts);
    let success = 1.0 - all_fail;
    let (mean, second) = if p == 1.0 {
        (attempts, attempts * attempts)
    } else {
        attempt_moments(p, u64::from(retries) + 1)
    };
    Prediction {
        success,
        amplification: mean,
        success_sd: (success * all_fail).max(0.0).sqrt(),
        amplification_sd: (second - mean * mean).max(0.0).sqrt(),
    }
}

/// `(E[K], E[K²])` for at most `m` attempts and a failure probability `0 <= p < 1`:
/// the sums of `pʲ` and `(2j + 1)pʲ` over `j < m`, summed term by term (exact for
/// the small `m` of real policies) until the terms vanish, else in closed form.
fn attempt_moments(p: f64, m: u64) -> (f64, f64) {
    const TERMS: u64 = 1 << 20;
    let mut mean = 0.0;
    let mut second = 0.0;
    let mut pj = 1.0;
    let mut j = 0u64;
    while j < m {
        if pj < 1e-30 {
            return (mean, second);
        }
        if j == TERMS {
            // p so close to 1 that a million terms did not vanish, and a policy with
            // more than a million retries: the closed forms (cancellation is small
            // here, as pᵐ is far from 1 only when m(1 − p) is large).
            let q = 1.0 - p;
            let pm = p.powf(m as f64);
            let mean = (1.0 - pm) / q;
            let mf = m as f64;
            let sum_j = p * (1.0 - mf * pm / p + (mf - 1.0) * pm) / (q * q);
            return (mean, 2.0 * sum_j + mean);
        }
        let jf = j as f64;
        mean += pj;
        second += (2.0 * jf + 1.0) * pj;
        pj *= p;
        j += 1;
    }
    (mean, second)
}

/// What was measured while the failure was on.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryMeasurement {
    /// Requests the load sent (answered or not) and those that succeeded (2xx/3xx).
    pub requests: u64,
    pub succeeded: u64,
    /// On the local mesh, at the retrying hop: requests it received and the upstream
    /// attempts it made for them (Envoy's access log), its retries and retry overflow
    /// (Envoy counters `upstream_rq_retry`, `upstream_rq_retry_overflow`).
    pub downstream: Option<u64>,
    pub upstream_attempts: Option<u64>,
    pub retries: Option<u64>,
    pub retry_overflow: Option<u64>,
}

/// A retry validation: predicted vs measured, judged within 3σ.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryValidation {
    pub policy: String,
    /// The per-attempt failure probability the prediction used.
    pub failure_rate: f64,
    pub retried: bool,
    pub predicted: Prediction,
    pub measured_success: Option<f64>,
    /// predicted success ± 3σ for this many requests.
    pub success_band: (f64, f64),
    pub measured_amplification: Option<f64>,
    pub amplification_band: Option<(f64, f64)>,
    pub retry_overflow: Option<u64>,
    pub verdict: Verdict,
    /// One line per finding (inside/outside the band, overflow, too few requests).
    pub detail: String,
}

/// Fewest requests a validation is judged on; fewer are inconclusive.
pub const MIN_REQUESTS: u64 = 30;

/// Compares `m` with the prediction for `policy` against `p_fail`: pass when the
/// measured success (and, when measured, the amplification) is within 3σ of the
/// prediction and no retry overflowed; fail otherwise; inconclusive below
/// [`MIN_REQUESTS`]. `retried`: whether the failure is one the policy retries (see
/// [`RetryPolicy::retries_status`]); when not, the prediction is for no retries.
pub fn validate(
    policy: &RetryPolicy,
    p_fail: f64,
    retried: bool,
    m: &RetryMeasurement,
) -> RetryValidation {
    let retries = if retried { policy.num_retries } else { 0 };
    let predicted = predict(p_fail, retries);
    let measured_success =
        (m.requests > 0).then(|| m.succeeded.min(m.requests) as f64 / m.requests as f64);
    let success_band = band(
        predicted.success,
        predicted.success_sd,
        m.requests,
        Some((0.0, 1.0)),
    );
    let measured_amplification = match (m.upstream_attempts, m.downstream) {
        (Some(up), Some(down)) if down > 0 => Some(up as f64 / down as f64),
        _ => None,
    };
    let amplification_band = measured_amplification.and_then(|_| {
        m.downstream.map(|down| {
            band(
                predicted.amplification,
                predicted.amplification_sd,
                down,
                None,
            )
        })
    });
    let mut out = RetryValidation {
        policy: policy.describe(),
        failure_rate: p_fail,
        retried,
        predicted,
        measured_success,
        success_band,
        measured_amplification,
        amplification_band,
        retry_overflow: m.retry_overflow,
        verdict: Verdict::Inconclusive,
        detail: String::new(),
    };
    if p_fail.is_nan() || !(0.0..=1.0).contains(&p_fail) {
        out.detail =
            format!("failure rate {p_fail} is not a probability (0 to 1): nothing to predict");
        return out;
    }
    let what = if retried {
        format!(
            "{} against {} failing attempts",
            policy.describe(),
            pct(p_fail)
        )
    } else {
        format!(
            "{} failing, not retried by the policy ({})",
            pct(p_fail),
            policy.describe()
        )
    };
    let mut lines = Vec::new();
    let mut failed = false;
    if let Some(s) = measured_success {
        let inside = within(s, success_band);
        failed |= !inside;
        lines.push(format!(
            "success {} {} the predicted {} ± 3σ ({}–{}) for {what}",
            pct(s),
            if inside { "within" } else { "outside" },
            pct(predicted.success),
            pct(success_band.0),
            pct(success_band.1),
        ));
    }
    if let (Some(a), Some(b)) = (measured_amplification, amplification_band) {
        let inside = within(a, b);
        failed |= !inside;
        lines.push(format!(
            "amplification {a:.3} {} the predicted {:.3} ± 3σ ({:.3}–{:.3}) upstream requests per request",
            if inside { "within" } else { "outside" },
            predicted.amplification,
            b.0,
            b.1,
        ));
    }
    if let Some(o) = m.retry_overflow.filter(|o| *o > 0) {
        failed = true;
        lines.push(format!(
            "retry overflow {o}: Envoy's max_retries circuit breaker cut retries, the prediction assumes none"
        ));
    }
    if m.requests < MIN_REQUESTS {
        lines.insert(
            0,
            format!(
                "only {} requests: at least {MIN_REQUESTS} are needed to judge",
                m.requests
            ),
        );
        out.detail = lines.join("\n");
        return out;
    }
    out.verdict = if failed { Verdict::Fail } else { Verdict::Pass };
    out.detail = lines.join("\n");
    out
}

/// The smallest half-width a band gets, so that an exact prediction (p = 0 or 1,
/// where σ = 0) is met by an exact measurement despite rounding.
const BAND_EPSILON: f64 = 1e-9;

/// `center ± 3σ/√n`, widened to at least ±[`BAND_EPSILON`], clamped to `limits`.
fn band(center: f64, sd: f64, n: u64, limits: Option<(f64, f64)>) -> (f64, f64) {
    let half = if n == 0 {
        f64::INFINITY
    } else {
        (3.0 * sd / (n as f64).sqrt()).max(BAND_EPSILON)
    };
    let (lo, hi) = (center - half, center + half);
    match limits {
        Some((a, b)) => (lo.clamp(a, b), hi.clamp(a, b)),
        None => (lo, hi),
    }
}

fn within(x: f64, (lo, hi): (f64, f64)) -> bool {
    lo <= x && x <= hi
}

fn pct(x: f64) -> String {
    super::format::percent(x)
}

/// One call chain through the mesh and how retries multiply along it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    /// Each hop: who calls whom (`ingress → repeater`, `repeater → go-demo-8`) and the
    /// most attempts a request may get there (the route's retries + 1).
    pub hops: Vec<(String, u32)>,
    /// The product of the hops' attempts: upstream calls at the end of the chain per
    /// user request, worst case.
    pub amplification: u64,
}

impl Chain {
    /// `ingress → repeater (11 attempts) → go-demo-8 (3 attempts): up to 33 calls per request`.
    pub fn describe(&self) -> String {
        let Some(((first, n), rest)) = self.hops.split_first() else {
            return "no calls".to_string();
        };
        let mut out = format!("{first} ({})", attempts(*n));
        for (hop, n) in rest {
            let callee = hop.rsplit_once(" → ").map_or(hop.as_str(), |(_, c)| c);
            out.push_str(&format!(" → {callee} ({})", attempts(*n)));
        }
        let calls = if self.amplification == 1 {
            "call"
        } else {
            "calls"
        };
        out.push_str(&format!(
            ": up to {} {calls} per request",
            self.amplification
        ));
        out
    }
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_string()
    } else {
        format!("{n} attempts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    use crate::mesh::translate::route_retry_policy as route_policy;

    #[test]
    fn policies_as_istiod_gives_them() {
        let default = route_policy(&json!({"route": []}));
        assert_eq!(default.num_retries, 2);
        assert_eq!(default.attempts(), 3);
        assert_eq!(
            default.retry_on,
            [
                "connect-failure",
                "refused-stream",
                "unavailable",
                "cancelled",
                "retriable-status-codes"
            ]
        );
        assert!(default.retriable_status_codes.is_empty());
        // Istio >= 1.24: no 503 in the default; connect failures only.
        assert!(!default.retries_status(503));
        assert!(!default.retries_timeouts());

        let none = route_policy(&json!({"retries": {"attempts": 0}}));
        assert_eq!(none, RetryPolicy::none());
        assert_eq!(none.attempts(), 1);
        assert_eq!(none.describe(), "no retries (1 attempt)");

        let p = route_policy(&json!({"retries": {"attempts": 10, "retryOn": "5xx"}}));
        assert_eq!(
            (p.num_retries, p.retry_on.as_slice()),
            (10, &["5xx".to_string()][..])
        );
        assert!(p.retries_status(500) && p.retries_status(599) && p.retries_status(503));
        assert!(!p.retries_status(499) && !p.retries_status(429));
        assert!(p.retries_timeouts());
        assert_eq!(p.describe(), "attempts 11 (retryOn 5xx)");

        let p = route_policy(&json!({"retries": {
            "attempts": 2, "retryOn": "gateway-error,retriable-4xx,429", "perTryTimeout": "250ms"
        }}));
        assert_eq!(p.retriable_status_codes, [429]);
        assert_eq!(p.per_try_timeout, Some(Duration::from_millis(250)));
        for (code, retried) in [
            (502, true),
            (503, true),
            (504, true),
            (500, false),
            (409, true),
            (429, true),
            (430, false),
        ] {
            assert_eq!(p.retries_status(code), retried, "{code}");
        }
        assert!(p.retries_timeouts());
        assert_eq!(
            p.describe(),
            "attempts 3 (retryOn gateway-error,retriable-4xx,retriable-status-codes 429; perTryTimeout 250ms)"
        );

        // retriable-status-codes with 504 is not enough for timeouts; reset is.
        let p = route_policy(&json!({"retries": {"attempts": 2, "retryOn": "504"}}));
        assert!(p.retries_status(504));
        assert!(!p.retries_timeouts());
        let p = route_policy(&json!({"retries": {"attempts": 2, "retryOn": "reset"}}));
        assert!(p.retries_timeouts());
        assert!(!p.retries_status(503));
    }

    #[test]
    fn proto_durations() {
        assert_eq!(proto_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(proto_duration("0.200s"), Some(Duration::from_millis(200)));
        assert_eq!(proto_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "s", "2", ".5s", "1.s", "1.0000000001s", "-1s", "1e3s"] {
            assert_eq!(proto_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn predictions_at_the_edges_and_from_facts() {
        let p = predict(0.0, 5);
        assert_eq!(
            (p.success, p.amplification, p.success_sd, p.amplification_sd),
            (1.0, 1.0, 0.0, 0.0)
        );
        let p = predict(1.0, 5);
        assert_eq!(
            (p.success, p.amplification, p.success_sd, p.amplification_sd),
            (0.0, 6.0, 0.0, 0.0)
        );
        // FACTS.md: 50% failures × 2 retries: 0.875, 1.75 upstream requests each.
        let p = predict(0.5, 2);
        assert_eq!(p.success, 0.875);
        assert_eq!(p.amplification, 1.75);
        // K ∈ {1, 2, 3} with 1/2, 1/4, 1/4: E[K²] = 0.5 + 1 + 2.25 = 3.75.
        assert!((p.amplification_sd - (3.75f64 - 1.75 * 1.75).sqrt()).abs() < 1e-12);
        let p = predict(0.3, 0);
        assert!((p.success - 0.7).abs() < 1e-12);
        assert_eq!((p.amplification, p.amplification_sd), (1.0, 0.0));
        assert!(predict(f64::NAN, 2).success.is_nan());
        assert!(predict(1.5, 2).amplification.is_nan());
        // A huge retry count stays finite and fast.
        let p = predict(0.999_999_9, u32::MAX);
        assert!(
            p.amplification.is_finite() && p.amplification > 1e6,
            "{p:?}"
        );
    }

    proptest! {
        #[test]
        fn predict_follows_its_laws(p in 0.0f64..=1.0, n in 0u32..40) {
            let pr = predict(p, n);
            let expected = 1.0 - p.powi(n as i32 + 1);
            prop_assert!((pr.success - expected).abs() < 1e-12);
            prop_assert!(pr.amplification >= 1.0 - 1e-12);
            prop_assert!(pr.amplification <= f64::from(n) + 1.0 + 1e-9);
            let more = predict((p + 0.05).min(1.0), n);
            prop_assert!(more.amplification >= pr.amplification - 1e-12);
            prop_assert!(pr.success_sd >= 0.0 && pr.amplification_sd >= 0.0);
        }
    }

    /// The mean and sd of the attempt count against a simulation of the retry loop.
    #[test]
    fn predict_agrees_with_a_simulation() {
        let mut rng = SmallRng::seed_from_u64(7);
        const N: usize = 200_000;
        for (p, n) in [(0.5, 2u32), (0.1, 3), (0.9, 10), (0.3, 0)] {
            let pr = predict(p, n);
            let mut sum = 0.0;
            let mut sum2 = 0.0;
            let mut ok = 0u64;
            for _ in 0..N {
                let mut k = 1u32;
                let mut failed = rng.random::<f64>() < p;
                while failed && k <= n {
                    k += 1;
                    failed = rng.random::<f64>() < p;
                }
                if !failed {
                    ok += 1;
                }
                sum += f64::from(k);
                sum2 += f64::from(k * k);
            }
            let mean = sum / N as f64;
            let sd = (sum2 / N as f64 - mean * mean).sqrt();
            let succ = ok as f64 / N as f64;
            let se_mean = pr.amplification_sd / (N as f64).sqrt();
            assert!(
                (mean - pr.amplification).abs() <= 4.0 * se_mean + 1e-12,
                "p {p} n {n}: {mean} vs {}",
                pr.amplification
            );
            assert!(
                (succ - pr.success).abs() <= 4.0 * pr.success_sd / (N as f64).sqrt() + 1e-12,
                "p {p} n {n}: {succ}"
            );
            // The sd of a sample sd is about sd·√((κ − 1)/4N); 2% is far beyond 4σ here.
            assert!(
                (sd - pr.amplification_sd).abs() <= 0.02 * pr.amplification_sd + 1e-12,
                "p {p} n {n}: {sd} vs {}",
                pr.amplification_sd
            );
        }
    }

    fn five_xx(attempts: u32) -> RetryPolicy {
        route_policy(&json!({"retries": {"attempts": attempts, "retryOn": "5xx"}}))
    }

    #[test]
    fn validation_passes_inside_the_bands() {
        // FACTS.md: 10k requests, 0.8715 success, 1.76 upstream requests per request.
        let m = RetryMeasurement {
            requests: 10_000,
            succeeded: 8715,
            downstream: Some(10_000),
            upstream_attempts: Some(17_560),
            retries: Some(7_560),
            retry_overflow: Some(0),
        };
        let v = validate(&five_xx(2), 0.5, true, &m);
        assert_eq!(v.verdict, Verdict::Pass, "{}", v.detail);
        assert_eq!(v.measured_success, Some(0.8715));
        let (lo, hi) = v.success_band;
        assert!(lo < 0.8715 && 0.8715 < hi && hi < 0.886, "{lo} {hi}");
        assert!(v.detail.contains("within"), "{}", v.detail);
        // Exact predictions (p = 0) are met by exact measurements.
        let m = RetryMeasurement {
            requests: 100,
            succeeded: 100,
            downstream: Some(100),
            upstream_attempts: Some(100),
            ..Default::default()
        };
        assert_eq!(validate(&five_xx(2), 0.0, true, &m).verdict, Verdict::Pass);
        let m = RetryMeasurement {
            requests: 100,
            succeeded: 0,
            downstream: Some(100),
            upstream_attempts: Some(300),
            ..Default::default()
        };
        assert_eq!(validate(&five_xx(2), 1.0, true, &m).verdict, Verdict::Pass);
    }

    #[test]
    fn validation_fails_outside_a_band_or_on_overflow() {
        // Measured as if not retried: 50% success against 87.5%.
        let m = RetryMeasurement {
            requests: 10_000,
            succeeded: 5_000,
            ..Default::default()
        };
        let v = validate(&five_xx(2), 0.5, true, &m);
        assert_eq!(v.verdict, Verdict::Fail, "{}", v.detail);
        assert!(v.detail.contains("outside"), "{}", v.detail);
        // ... which is right for a failure the policy does not retry.
        assert_eq!(validate(&five_xx(2), 0.5, false, &m).verdict, Verdict::Pass);
        // Success in band, amplification not.
        let m = RetryMeasurement {
            requests: 10_000,
            succeeded: 8_750,
            downstream: Some(10_000),
            upstream_attempts: Some(12_000),
            ..Default::default()
        };
        let v = validate(&five_xx(2), 0.5, true, &m);
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(
            v.detail.contains("amplification 1.200 outside"),
            "{}",
            v.detail
        );
        // Overflow alone fails, and says why.
        let m = RetryMeasurement {
            requests: 10_000,
            succeeded: 8_750,
            retry_overflow: Some(12),
            ..Default::default()
        };
        let v = validate(&five_xx(2), 0.5, true, &m);
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(
            v.detail.contains("retry overflow 12: Envoy's max_retries circuit breaker cut retries, the prediction assumes none"),
            "{}",
            v.detail
        );
    }

    #[test]
    fn validation_needs_enough_requests_and_a_probability() {
        let m = RetryMeasurement {
            requests: MIN_REQUESTS - 1,
            succeeded: 0,
            ..Default::default()
        };
        let v = validate(&five_xx(2), 0.5, true, &m);
        assert_eq!(v.verdict, Verdict::Inconclusive);
        assert!(v.detail.starts_with("only 29 requests"), "{}", v.detail);
        let m = RetryMeasurement {
            requests: 1000,
            succeeded: 900,
            ..Default::default()
        };
        for p in [f64::NAN, -0.1, 1.1] {
            assert_eq!(
                validate(&five_xx(2), p, true, &m).verdict,
                Verdict::Inconclusive
            );
        }
        let none = RetryMeasurement::default();
        assert_eq!(
            validate(&five_xx(2), 0.5, true, &none).verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn a_zero_width_band_still_holds_its_center() {
        let (lo, hi) = band(1.0, 0.0, 100, None);
        assert!(lo < 1.0 && 1.0 < hi, "{lo} {hi}");
        // Clamped at the limits, it keeps the center.
        assert_eq!(band(1.0, 0.0, 100, Some((0.0, 1.0))).1, 1.0);
        assert_eq!(band(0.5, 0.1, 0, Some((0.0, 1.0))), (0.0, 1.0));
    }

    #[test]
    fn chains_describe_themselves() {
        let c = Chain {
            hops: vec![("ingress → a".into(), 1)],
            amplification: 1,
        };
        assert_eq!(
            c.describe(),
            "ingress → a (1 attempt): up to 1 call per request"
        );
        let c = Chain {
            hops: vec![],
            amplification: 1,
        };
        assert_eq!(c.describe(), "no calls");
    }
}
