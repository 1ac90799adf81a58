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
    /// The policy istiod gives one HTTP route of a VirtualService (`spec.http[i]`):
    /// its `retries` block, Istio's default policy without one, no retries for
    /// `attempts: 0`.
    pub fn of_route(route: &serde_json::Value) -> RetryPolicy {
        todo!("{route}")
    }

    /// Attempts per request at most (`num_retries + 1`).
    pub fn attempts(&self) -> u32 {
        self.num_retries.saturating_add(1)
    }

    /// Whether an upstream answer with `status` is retried (`5xx`: 500–599;
    /// `gateway-error`: 502–504; `retriable-4xx`: 409; `retriable-status-codes`: the
    /// listed codes).
    pub fn retries_status(&self, status: u16) -> bool {
        todo!("{status}")
    }

    /// Whether an attempt that times out (per-try timeout) or is reset is retried
    /// (`5xx`, `gateway-error`, `reset`; per-try timeouts also under
    /// `retriable-status-codes` with 504 listed is *not* enough: Envoy needs one of the
    /// first three).
    pub fn retries_timeouts(&self) -> bool {
        todo!()
    }

    /// `attempts 3 (retryOn 5xx)`, for messages.
    pub fn describe(&self) -> String {
        todo!()
    }
}

/// What a policy promises, per request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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
pub fn predict(p_fail: f64, retries: u32) -> Prediction {
    todo!("{p_fail} {retries}")
}

/// What was measured while the failure was on.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    todo!("{policy:?} {p_fail} {retried} {m:?}")
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
        todo!()
    }
}
