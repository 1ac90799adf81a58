//! Reports: what a drill's journal looks like to people and to other tools — the
//! self-contained HTML page (inline SVG charts), JUnit XML for CI, HdrHistogram
//! interval logs, and the webhook message. Everything here is built from a
//! [`Journal`](crate::scenario::journal::Journal) (or the histograms the runner hands
//! over); nothing here prints.

pub mod chart;
pub mod histlog;
pub mod html;
pub mod junit;
pub mod notify;
pub mod read;

use crate::scenario::journal::{DrillVerdict, PhaseRecord};
use crate::slo::{SloResult, Verdict};

/// One objective of a phase, judged against the phase's expectation (`hold`,
/// `breach`, `breach: a, b`, `ignore`) — what the text table marks, what JUnit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloOutcome {
    /// The phase is not judged (`ignore`).
    NotJudged,
    /// The objective held, as it should (or held where any one objective was to break:
    /// the phase's verdict says whether one did).
    Met,
    /// The objective broke, as the phase expected.
    BreachedAsExpected,
    /// The objective was named to break and held.
    DidNotBreach,
    /// The objective broke where it should have held.
    Violated,
    /// The sample cannot tell.
    Inconclusive,
}

impl SloOutcome {
    /// Whether this objective fails its phase's expectation.
    pub fn failed(self) -> bool {
        matches!(self, SloOutcome::DidNotBreach | SloOutcome::Violated)
    }
}

/// How `r` fares against `expect` (a [`PhaseRecord`]'s `expect`): `breach` expects any
/// one objective to break, `breach: a, b` those named (the others still hold).
///
/// [`PhaseRecord`]: crate::scenario::journal::PhaseRecord
pub fn slo_outcome(r: &SloResult, expect: &str) -> SloOutcome {
    if expect == "ignore" {
        return SloOutcome::NotJudged;
    }
    let named = expect
        .strip_prefix("breach: ")
        .is_some_and(|names| names.split(", ").any(|n| n == r.name));
    let expected_to_break = expect == "breach" || named;
    match r.verdict {
        Verdict::Fail if expected_to_break => SloOutcome::BreachedAsExpected,
        Verdict::Fail => SloOutcome::Violated,
        Verdict::Pass if named => SloOutcome::DidNotBreach,
        Verdict::Pass => SloOutcome::Met,
        Verdict::Inconclusive => SloOutcome::Inconclusive,
    }
}

/// The drill's verdict in one word, as the text summary and the webhook say it:
/// `HELD`, `BROKE`, `INCONCLUSIVE`, `not judged`.
pub fn verdict_word(v: DrillVerdict) -> &'static str {
    match v {
        DrillVerdict::Held => "HELD",
        DrillVerdict::Broke => "BROKE",
        DrillVerdict::Inconclusive => "INCONCLUSIVE",
        DrillVerdict::NotJudged => "not judged",
    }
}

/// A result's mark in the text table.
pub fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "ok",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "??",
    }
}

pub fn phase_verdict(p: &PhaseRecord) -> &'static str {
    if p.expect == "ignore" {
        return match p.retry_check.as_ref().map(|r| r.verdict) {
            None => "not judged",
            Some(Verdict::Pass) => "retries as predicted",
            Some(Verdict::Fail) => "RETRIES NOT AS PREDICTED",
            Some(Verdict::Inconclusive) => "retries: inconclusive",
        };
    }
    match (p.verdict, p.expect.starts_with("breach")) {
        (None, _) => "not judged",
        (Some(Verdict::Pass), false) => "held",
        (Some(Verdict::Pass), true) => "breached, as expected",
        (Some(Verdict::Fail), false) => "BROKE",
        (Some(Verdict::Fail), true) if p.verdict_text.starts_with("expected a breach") => {
            "DID NOT BREACH"
        }
        (Some(Verdict::Fail), true) => "BROKE",
        (Some(Verdict::Inconclusive), _) => "inconclusive",
    }
}

/// `availability 99.80% ok` per objective, marked against the phase's expectation
/// (`breached` where a breach was expected; no mark where nothing is judged).
pub fn slo_cells(slos: &[SloResult], expect: &str) -> String {
    slos.iter()
        .map(|r| format!("{} {}{}", r.name, r.measured_text, slo_mark(r, expect)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// An objective's mark in the text table. A named objective that held shows as held;
/// the phase says DID NOT BREACH.
pub fn slo_mark(r: &SloResult, expect: &str) -> &'static str {
    match slo_outcome(r, expect) {
        SloOutcome::NotJudged => "",
        SloOutcome::BreachedAsExpected => " breached",
        SloOutcome::Met | SloOutcome::DidNotBreach => " ok",
        SloOutcome::Violated => " FAIL",
        SloOutcome::Inconclusive => " ??",
    }
}

/// An objective's confidence interval in its unit (`99.22%–100.00%`, `12.6–17.4`).
/// An unbounded end reads `∞`.
pub fn ci_text(r: &SloResult) -> Option<String> {
    let pct = r.objective.contains('%');
    let end = |v: f64| match (v.is_finite(), pct) {
        (false, _) => "∞".to_string(),
        (true, true) => format!("{:.2}%", v * 100.0),
        (true, false) => format!("{v:.1}"),
    };
    r.ci.map(|(lo, hi)| format!("{}–{}", end(lo), end(hi)))
}

#[cfg(test)]
pub(crate) mod testdata;
