//! Service-level objectives: what a drill promises, judged from the load engine's
//! histograms and counters — with the statistics to say when a sample cannot tell.
//!
//! # What it owns
//! - [`Objective`]: a metric, a comparison and a threshold (`p99 < 500ms`,
//!   `availability >= 99.5%`), parsed from the scenario's text form ([`Objective::parse`]);
//! - [`evaluate`]: one objective over one [`Window`] (a phase, or a 1 s interval) →
//!   [`SloResult`] with the measured value, its confidence interval, and a
//!   [`Verdict`] that is [`Verdict::Inconclusive`] when the sample cannot decide
//!   (with the number of requests it would take);
//! - recovery time over an interval series ([`recovery_time`]), the point value of
//!   an interval for stop conditions ([`point_value`]);
//! - Prometheus objectives ([`Metric::Prometheus`]): a PromQL expression and a
//!   threshold, judged by [`evaluate_points`] on values the caller fetched (this module
//!   never queries Prometheus: see [`crate::prometheus`]);
//! - retry validation ([`retry`]): predicted success rate and amplification of a retry
//!   policy against an upstream failure rate, compared with what was measured.
//!
//! # What it must not do
//! Pure: no I/O, no async, no printing. It reads [`crate::load::Recorded`] and returns
//! values; `scenario` decides what to judge when, `cli` prints.
//!
//! # Counting
//! A request is *answered* (an HTTP status) or *failed* (no answer: timeout, refused,
//! reset, ...). Rates count every request: `availability` = answered with a status
//! below 500 / all requests; `success_rate` = answered 2xx or 3xx / all; `error_rate` =
//! 1 − availability. Latency percentiles count every request, failed ones at the time
//! they took (a timed-out request at least the timeout), so a percentile can never
//! hide a request that hung.

mod eval;
mod format;
mod parse;
pub mod retry;
mod stats;
#[cfg(test)]
mod tests;

pub use stats::{
    NEEDED_CAP, inverse_normal, needed_for_quantile, needed_for_quantile_lower, needed_for_rate,
    quantile_ranks, wilson, z_value,
};

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::Recorded;

/// The outcome of judging one objective.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The objective holds, with the stated confidence.
    Pass,
    /// The objective is violated, with the stated confidence.
    Fail,
    /// The sample cannot tell (the confidence interval straddles the threshold).
    #[default]
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}

/// How a measured value must compare with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Cmp {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Cmp {
    /// Whether `value` meets `threshold` under this comparison.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Cmp::Lt => value < threshold,
            Cmp::Le => value <= threshold,
            Cmp::Gt => value > threshold,
            Cmp::Ge => value >= threshold,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// Which latency a percentile reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyBasis {
    /// From each request's intended start (open loop: free of coordinated omission).
    Corrected,
    /// From the actual send (what closed-loop tools report).
    Service,
}

/// One entry of a status set: a code (`429`), a class (`2xx`), or `error` (no HTTP
/// answer at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusClass {
    Code(u16),
    /// The hundreds digit: 2 = `2xx`.
    Class(u8),
    Error,
}

/// What an objective measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Metric {
    /// A latency quantile in milliseconds (`p50` … `p999`; `max` = quantile 1.0).
    Latency { quantile: f64, basis: LatencyBasis },
    /// Share of requests answered 2xx or 3xx (0..=1).
    SuccessRate,
    /// Share of requests answered with a status below 500 (0..=1).
    Availability,
    /// Share of requests answered 5xx or not answered (0..=1).
    ErrorRate,
    /// Share of requests whose outcome is in the set (0..=1), e.g. `[429]`, or
    /// `["2xx", 429]` with `>= 100%` for "only 200 or 429".
    StatusRate { statuses: Vec<StatusClass> },
    /// Completed requests per second over the window; `relative`: as a share of the
    /// rate asked for (open loop only).
    Throughput { relative: bool },
    /// Seconds from an event (a fault cleared, a flood ended) until the objective
    /// `slo` holds for `consecutive` 1 s intervals in a row.
    RecoveryTime { slo: String, consecutive: u32 },
    /// A PromQL expression's value, read from Prometheus' HTTP API at the end of each
    /// 1 s interval of a phase (see [`evaluate_points`]); a plain number.
    Prometheus(PromQuery),
}

/// Where a [`Metric::Prometheus`] objective reads its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromQuery {
    /// The base of Prometheus' HTTP API (`http://127.0.0.1:9090`); `/api/v1/…` is
    /// appended.
    pub url: String,
    /// The PromQL expression; it must give one series (or a scalar).
    pub query: String,
    /// `file:line: field` of `url` and of `query`, for messages (empty when the
    /// objective was not read from a file).
    #[serde(skip)]
    pub url_at: String,
    #[serde(skip)]
    pub query_at: String,
}

/// Whether an objective is judged over a whole phase or over each interval of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "over")]
pub enum Over {
    /// Over everything the phase measured (the default).
    Phase,
    /// Over each 1 s interval of the phase: fails when more than `allow_bad`
    /// intervals miss the objective (each judged on its measured value).
    Interval { allow_bad: u32 },
}

/// A service-level objective.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Objective {
    pub name: String,
    pub metric: Metric,
    pub cmp: Cmp,
    /// In the metric's unit: a share 0..=1 for rates (`99.5%` → 0.995), milliseconds
    /// for latency, requests/s (or a share, when relative) for throughput, seconds for
    /// recovery time.
    pub threshold: f64,
    /// The objective as written (`>= 99.5%`), for messages.
    pub text: String,
    pub over: Over,
}

/// Why an objective's text cannot be used. `field` names the part that is wrong
/// (`metric`, `objective`, `statuses`, ...) so the scenario parser can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ObjectiveError {
    pub field: &'static str,
    pub message: String,
}

/// The raw parts of an objective as a scenario file gives them.
#[derive(Debug, Clone, Default)]
pub struct ObjectiveParts<'a> {
    pub name: &'a str,
    /// `p50`, `p90`, `p95`, `p99`, `p999` (or `p99.9`), `max`, `success_rate`,
    /// `availability`, `error_rate`, `status_rate`, `throughput`, `recovery_time`.
    pub metric: &'a str,
    /// `>= 99.5%`, `< 500ms`, `<= 10s`, `>= 95%` (throughput relative to the rate
    /// asked), `>= 150/s` (absolute).
    pub objective: &'a str,
    /// `corrected` (default) or `service`, for latency metrics.
    pub latency: Option<&'a str>,
    /// For `status_rate`: codes (`429`), classes (`"2xx"`) or `"error"`.
    pub statuses: &'a [serde_json::Value],
    /// For `recovery_time`: the objective that must hold again, and for how many 1 s
    /// intervals in a row (default 3).
    pub slo: Option<&'a str>,
    pub consecutive: Option<u32>,
    /// `phase` (default) or `interval`, and the intervals allowed to miss.
    pub over: Option<&'a str>,
    pub allow_bad: Option<u32>,
    /// A Prometheus objective (`url`, `query`): `metric` is then empty and `objective`
    /// a plain number (`< 1`, `>= 99.5%` = 0.995).
    pub prometheus: Option<PromQuery>,
}

impl Objective {
    /// Builds an objective from its parts, checking every combination (a percentage
    /// for a latency metric, `statuses` on anything but `status_rate`, … are errors).
    pub fn parse(parts: &ObjectiveParts<'_>) -> Result<Objective, ObjectiveError> {
        parse::parse(parts)
    }

    /// `p99 < 500ms`, `availability >= 99.5%`: metric and objective, for tables.
    pub fn describe(&self) -> String {
        parse::describe(self)
    }

    /// Whether this objective reads latency (and so needs answers, not just counts).
    pub fn is_latency(&self) -> bool {
        matches!(self.metric, Metric::Latency { .. })
    }

    /// Its Prometheus query, when it reads its value from Prometheus.
    pub fn prometheus(&self) -> Option<&PromQuery> {
        match &self.metric {
            Metric::Prometheus(q) => Some(q),
            _ => None,
        }
    }
}

/// What an objective is judged on: the merged measurements of a phase or an interval.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub data: &'a Recorded,
    /// How long the window lasted (for throughput).
    pub duration: Duration,
    /// The mean rate the load was asked for over the window (open loop), requests/s.
    pub asked_rps: Option<f64>,
}

/// One objective judged on one window (or interval series).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SloResult {
    pub name: String,
    /// `p99 < 500ms`.
    pub objective: String,
    /// The measured value in the metric's unit (see [`Objective::threshold`]); `None`
    /// when there was nothing to measure.
    pub measured: Option<f64>,
    /// The measured value as people read it: `99.82%`, `412.3 ms`, `148.2/s`, `6 s`.
    pub measured_text: String,
    /// Requests the judgement rests on.
    pub requests: u64,
    /// The confidence interval of the measured value (same unit), where the metric
    /// has one (rates: Wilson score; latency quantiles: order statistics). JSON has
    /// no infinity: an unbounded end is written `null` and read back as ±∞.
    #[serde(deserialize_with = "ci_from_json")]
    pub ci: Option<(f64, f64)>,
    /// The confidence level of `ci` and of the verdict (0.95).
    pub confidence: f64,
    pub verdict: Verdict,
    /// For an inconclusive verdict: how many requests (at the measured rate) it would
    /// take to decide.
    pub needed: Option<u64>,
    /// One line: why the verdict is what it is.
    pub detail: String,
}

fn ci_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<(f64, f64)>, D::Error> {
    let ends = Option::<(Option<f64>, Option<f64>)>::deserialize(d)?;
    Ok(ends.map(|(lo, hi)| (lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY))))
}

/// Judges `o` over one window at the given confidence (0.95 = 95%).
///
/// Rates: pass when the whole Wilson interval meets the threshold, fail when none of
/// it does, inconclusive otherwise. Latency quantiles: the same with the
/// order-statistic interval of the quantile. Throughput: the point value (no
/// interval). A window with no requests is inconclusive. [`Metric::RecoveryTime`] is
/// judged by [`recovery_time`], not here (inconclusive with a detail saying so).
///
/// Never panics: a NaN threshold, a quantile outside (0, 1], a confidence outside
/// (0, 1) give an inconclusive result saying so. Rate thresholds of exactly 0% or
/// 100% are judged on the sample as counted (no interval can exclude them).
pub fn evaluate(o: &Objective, w: &Window<'_>, confidence: f64) -> SloResult {
    eval::evaluate(o, w, confidence)
}

/// Judges `o` with [`Over::Interval`]: `values` are its [`point_value`]s in each
/// interval (1 s; `None` for an interval without requests, skipped), `requests` how
/// many requests they cover. Fails when more than `allow_bad` intervals miss.
///
/// `measured` is the worst interval's value; `confidence` is only reported. Point
/// values, not histograms: the runner keeps numbers per second, so its memory stays
/// flat in the length of a drill.
pub fn evaluate_intervals(
    o: &Objective,
    values: &[Option<f64>],
    requests: u64,
    confidence: f64,
) -> SloResult {
    eval::evaluate_intervals(o, values, requests, confidence)
}

/// The measured value of `o` on one window, without statistics (stop conditions,
/// interval objectives, recovery). `None` when the window has no requests.
///
/// Latency: +∞ when the quantile falls on requests that got no answer and carry no
/// latency (they rank above every answer). Relative throughput: `None` without an
/// asked rate. Recovery time and Prometheus objectives: always `None` (the load's
/// window does not hold them).
pub fn point_value(o: &Objective, w: &Window<'_>) -> Option<f64> {
    eval::point_value(o, w)
}

/// Judges a [`Metric::Prometheus`] objective on its values at the end of each 1 s
/// interval of a phase (`None`: no value at that point — the series was absent or the
/// value NaN — skipped; ±∞ are values). Passes when every point meets the objective
/// (all but `allowBad` of them); `measured` is the worst point. No confidence
/// interval: a PromQL value is not a sample meshdrill drew, so `ci` is `None` and the
/// detail says so. No point with a value at all: inconclusive.
pub fn evaluate_points(o: &Objective, values: &[Option<f64>], confidence: f64) -> SloResult {
    eval::evaluate_points(o, values, confidence)
}

/// Judges a [`Metric::RecoveryTime`] objective `o`: `series` are `target`'s point
/// values in the intervals from the event on (the first one starts at the event;
/// `None` for an interval without requests); `target` is the objective named by
/// `o`'s `slo`. The recovery time is the start of the first run of
/// `consecutive` intervals in which `target`'s point value holds (intervals with no
/// requests break a run). Never recovered within the series: fail, with the series
/// length as a lower bound.
///
/// A series too short to tell (not recovered within 5 s against `<= 20s`) is
/// inconclusive rather than failed: only a lower bound that already misses the
/// objective fails it. Judged on point values; `confidence` is only reported.
pub fn recovery_time(
    o: &Objective,
    target: &Objective,
    series: &[Option<f64>],
    interval: Duration,
    confidence: f64,
) -> SloResult {
    eval::recovery_time(o, target, series, interval, confidence)
}
