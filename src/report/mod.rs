//! Reports: what a drill's journal looks like to people and to other tools — the
//! self-contained HTML page (inline SVG charts), JUnit XML for CI, HdrHistogram
//! interval logs, and the webhook message. Everything here is built from a
//! [`Journal`](crate::scenario::journal::Journal) (or the histograms the runner hands
//! over); nothing here prints.

pub mod chart;
pub mod html;
pub mod read;

use crate::scenario::journal::PhaseRecord;
use crate::slo::{SloResult, Verdict};

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

pub fn slo_mark(r: &SloResult, expect: &str) -> &'static str {
    // `breach` (any objective) or `breach: a, b` (those).
    let expected_to_break = expect == "breach"
        || expect
            .strip_prefix("breach: ")
            .is_some_and(|names| names.split(", ").any(|n| n == r.name));
    match (expect, r.verdict) {
        ("ignore", _) => "",
        (_, Verdict::Fail) if expected_to_break => " breached",
        (_, Verdict::Pass) => " ok",
        (_, Verdict::Fail) => " FAIL",
        (_, Verdict::Inconclusive) => " ??",
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
