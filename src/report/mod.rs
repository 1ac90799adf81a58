//! Reports: what a drill's journal looks like to people and to other tools — the
//! self-contained HTML page (inline SVG charts), JUnit XML for CI, HdrHistogram
//! interval logs, and the webhook message. Everything here is built from a
//! [`Journal`](crate::scenario::journal::Journal) (or the histograms the runner hands
//! over); nothing here prints.

pub mod histlog;
pub mod junit;
pub mod notify;

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

/// The confidence interval as people read it: `99.12%–99.87%` for a share (an
/// objective written with `%`), `412.3–455.0` otherwise; `None` without one.
pub fn ci_text(r: &SloResult) -> Option<String> {
    let (lo, hi) = r.ci?;
    Some(if r.objective.contains('%') {
        format!("{:.2}%–{:.2}%", lo * 100.0, hi * 100.0)
    } else {
        format!("{lo:.1}–{hi:.1}")
    })
}

#[cfg(test)]
pub(crate) mod testdata;
