//! JUnit XML (`--junit FILE`): a drill as a test suite, so GitLab, Jenkins and GitHub
//! show it with their other tests. The common Ant JUnit shape:
//! `testsuites/testsuite(name, tests, failures, errors, skipped, time,
//! timestamp)/testcase(classname, name, time)` with `failure(message, type)`,
//! `skipped(message)` or `error(message, type)`.
//!
//! # The cases
//! - each objective of each judged phase (`classname` = scenario + phase, `name` = the
//!   objective as written), judged against the phase's expectation
//!   ([`slo_outcome`]): a breach the phase expected passes; a violation, or a named
//!   objective that did not breach, is a `failure` carrying measured vs objective and
//!   the confidence interval; a flood's own objectives are cases of their phase;
//! - a phase that expects any one objective to break (`expect: breach`): one more case
//!   for that expectation (no single objective can fail it);
//! - each retry validation, each recovery-time objective, and a stop condition that
//!   fired (a failure: the method was halted);
//! - a run that did not complete (interrupted, input or target error, failed rollback):
//!   one `error` case naming the ending.
//!
//! # Inconclusive is `skipped`
//! An inconclusive objective was not decided either way: the sample was too small
//! (the message says how many requests would decide). A `failure` would report a
//! violation the drill did not find — and its exit code, 4, says exactly that it did
//! not (1 is for violations). `skipped` is JUnit's "ran, but not decided", shown
//! apart from passes by every CI; the run's exit code 4 still fails the job, so an
//! inconclusive drill is never green.

use std::io::Write;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::{SloOutcome, ci_text, slo_outcome};
use crate::scenario::journal::{Ending, Journal, PhaseRecord};
use crate::slo::{SloResult, Verdict};

/// Why the XML could not be written.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    /// `type` and `message` attributes, and a longer text.
    Failure {
        kind: &'static str,
        message: String,
        text: String,
    },
    Skipped {
        message: String,
    },
    Error {
        kind: &'static str,
        message: String,
    },
}

/// One test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub classname: String,
    pub name: String,
    /// Seconds.
    pub time: f64,
    pub outcome: Outcome,
    /// What was measured, for passing cases too.
    pub out: Option<String>,
}

/// The suite's counts (as written in its attributes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of(cases: &[Case]) -> Counts {
        let mut c = Counts {
            tests: cases.len(),
            ..Counts::default()
        };
        for k in cases {
            match k.outcome {
                Outcome::Passed => {}
                Outcome::Failure { .. } => c.failures += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
                Outcome::Error { .. } => c.errors += 1,
            }
        }
        c
    }
}

/// `measured 51.40% (95% CI 48.10%–54.60%, 500 requests), objective availability >= 99%`.
fn measured(r: &SloResult) -> String {
    let ci = ci_text(r)
        .map(|c| format!("{:.0}% CI {c}, ", r.confidence * 100.0))
        .unwrap_or_default();
    format!(
        "measured {} ({ci}{} requests), objective {}",
        r.measured_text, r.requests, r.objective
    )
}

/// A dot separates package from class in Jenkins' view: none inside a part.
fn class(scenario: &str, part: &str) -> String {
    format!("{}.{}", scenario.replace('.', "_"), part.replace('.', "_"))
}

fn slo_case(classname: &str, name: String, r: &SloResult, expect: &str, time: f64) -> Case {
    let what = measured(r);
    let outcome = match slo_outcome(r, expect) {
        SloOutcome::Met | SloOutcome::NotJudged => Outcome::Passed,
        SloOutcome::BreachedAsExpected => Outcome::Passed,
        SloOutcome::Violated => Outcome::Failure {
            kind: "slo violated",
            message: what.clone(),
            text: r.detail.clone(),
        },
        SloOutcome::DidNotBreach => Outcome::Failure {
            kind: "expected breach",
            message: format!("expected a breach, but it held: {what}"),
            text: r.detail.clone(),
        },
        SloOutcome::Inconclusive => Outcome::Skipped {
            message: format!(
                "inconclusive: {what}; {}",
                match r.needed {
                    Some(n) => format!("about {n} requests would decide"),
                    None => r.detail.clone(),
                }
            ),
        },
    };
    let out = match slo_outcome(r, expect) {
        SloOutcome::BreachedAsExpected => Some(format!("breached, as expected: {what}")),
        SloOutcome::Met => Some(what),
        _ => None,
    };
    Case {
        classname: classname.to_string(),
        name,
        time,
        outcome,
        out,
    }
}

fn phase_cases(scenario: &str, p: &PhaseRecord, cases: &mut Vec<Case>) {
    let classname = class(scenario, &p.name);
    let time = (p.end_s - p.start_s).max(0.0);
    let judged = p.expect != "ignore";
    let flood = p.flood.iter().flat_map(|f| f.slos.iter());
    let all = p
        .slos
        .iter()
        .map(|r| (r.objective.clone(), r, p.expect.as_str()))
        .chain(flood.map(|r| (format!("flood: {}", r.objective), r, "hold")));
    for (name, r, expect) in all {
        if !judged {
            continue;
        }
        if p.verdict.is_none() {
            // Stopped before its end: measured, not judged.
            cases.push(Case {
                classname: classname.clone(),
                name,
                time,
                outcome: Outcome::Skipped {
                    message: format!("not judged: {}", p.verdict_text),
                },
                out: Some(measured(r)),
            });
            continue;
        }
        cases.push(slo_case(&classname, name, r, expect, time));
    }
    if p.expect == "breach"
        && let Some(v) = p.verdict
    {
        cases.push(Case {
            classname: classname.clone(),
            name: "expect: breach (any objective)".into(),
            time,
            outcome: match v {
                Verdict::Pass => Outcome::Passed,
                Verdict::Fail => Outcome::Failure {
                    kind: "expected breach",
                    message: p.verdict_text.clone(),
                    text: String::new(),
                },
                Verdict::Inconclusive => Outcome::Skipped {
                    message: format!("inconclusive: {}", p.verdict_text),
                },
            },
            out: (v == Verdict::Pass).then(|| p.verdict_text.clone()),
        });
    }
    if let Some(r) = &p.retry_check {
        let band = format!(
            "policy {}, upstream failing {:.1}% of attempts: success predicted {:.2}% (3σ band {:.2}%–{:.2}%), measured {}",
            r.policy,
            r.failure_rate * 100.0,
            r.predicted.success * 100.0,
            r.success_band.0 * 100.0,
            r.success_band.1 * 100.0,
            r.measured_success
                .map_or("-".into(), |m| format!("{:.2}%", m * 100.0)),
        );
        cases.push(Case {
            classname,
            name: format!("retry validation: {}", r.policy),
            time,
            outcome: match r.verdict {
                Verdict::Pass => Outcome::Passed,
                Verdict::Fail => Outcome::Failure {
                    kind: "retries not as predicted",
                    message: band.clone(),
                    text: r.detail.clone(),
                },
                Verdict::Inconclusive => Outcome::Skipped {
                    message: format!("inconclusive: {band}; {}", r.detail),
                },
            },
            out: Some(format!("{band}\n{}", r.detail)),
        });
    }
}

/// Every case of the drill, in the journal's order.
pub fn cases(j: &Journal) -> Vec<Case> {
    let mut cases = Vec::new();
    for p in &j.phases {
        phase_cases(&j.scenario, p, &mut cases);
    }
    let recovery = class(&j.scenario, "recovery");
    for r in &j.recovery {
        cases.push(slo_case(&recovery, r.objective.clone(), r, "hold", 0.0));
    }
    if let Some(s) = &j.stop_condition {
        let values: Vec<String> = s
            .values
            .iter()
            .map(|v| v.map_or("-".into(), |v| format!("{v}")))
            .collect();
        cases.push(Case {
            classname: class(&j.scenario, "stop conditions"),
            name: s.condition.clone(),
            time: 0.0,
            outcome: Outcome::Failure {
                kind: "stop condition",
                message: format!(
                    "fired at {:.0} s (values {}): the method was halted",
                    s.at_s,
                    values.join(", ")
                ),
                text: String::new(),
            },
            out: None,
        });
    }
    let error = match &j.ending {
        Ending::Completed
        | Ending::SteadyStateFailed
        | Ending::StopCondition { .. }
        | Ending::DryRun => None,
        Ending::Interrupted { signal } | Ending::InterruptedBeforeChange { signal } => Some((
            "interrupted",
            format!("interrupted by {signal}: {}", j.verdict_text),
        )),
        Ending::InputError { message } => Some(("input error", message.clone())),
        Ending::TargetError { message } => Some(("target error", message.clone())),
        Ending::RollbackFailed { message } => Some(("rollback failed", message.clone())),
        Ending::RollbackAbandoned { signal } => Some((
            "rollback abandoned",
            format!("rollback abandoned by {signal}"),
        )),
        Ending::Unknown => Some((
            "no ending",
            "the journal does not say how the drill ended".to_string(),
        )),
    };
    if let Some((kind, message)) = error {
        cases.push(Case {
            classname: class(&j.scenario, "run"),
            name: "the drill ran to its end".into(),
            time: seconds(j),
            outcome: Outcome::Error {
                kind,
                message: format!("{message} (exit {})", j.exit_code),
            },
            out: None,
        });
    }
    cases
}

fn seconds(j: &Journal) -> f64 {
    j.ended.duration_since(j.started).as_secs_f64().max(0.0)
}

/// Characters XML 1.0 cannot carry at all (escaping does not help): replaced.
fn xml_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn time(t: f64) -> String {
    format!("{t:.3}")
}

/// Writes the drill's JUnit XML to `w`; returns its counts.
pub fn write<W: Write>(j: &Journal, w: W) -> Result<Counts, JunitError> {
    let cases = cases(j);
    let counts = Counts::of(&cases);
    let mut x = Writer::new_with_indent(w, b' ', 2);
    x.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let total = time(seconds(j));
    let n = |v: usize| v.to_string();
    let name = xml_chars(&j.scenario);
    // Ant's timestamp: ISO 8601 without a zone (UTC here).
    let timestamp = j.started.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let properties = [
        ("source", j.source.clone()),
        ("target", j.target.clone()),
        ("verdict", j.verdict_text.clone()),
        ("exit code", j.exit_code.to_string()),
        ("confidence", j.confidence.to_string()),
    ];
    x.create_element("testsuites")
        .with_attribute(("name", name.as_str()))
        .with_attribute(("tests", n(counts.tests).as_str()))
        .with_attribute(("failures", n(counts.failures).as_str()))
        .with_attribute(("errors", n(counts.errors).as_str()))
        .with_attribute(("skipped", n(counts.skipped).as_str()))
        .with_attribute(("time", total.as_str()))
        .write_inner_content(|x| {
            x.create_element("testsuite")
                .with_attribute(("name", name.as_str()))
                .with_attribute(("tests", n(counts.tests).as_str()))
                .with_attribute(("failures", n(counts.failures).as_str()))
                .with_attribute(("errors", n(counts.errors).as_str()))
                .with_attribute(("skipped", n(counts.skipped).as_str()))
                .with_attribute(("time", total.as_str()))
                .with_attribute(("timestamp", timestamp.as_str()))
                .write_inner_content(|x| {
                    x.create_element("properties").write_inner_content(|x| {
                        for (k, v) in &properties {
                            x.create_element("property")
                                .with_attribute(("name", *k))
                                .with_attribute(("value", xml_chars(v).as_str()))
                                .write_empty()?;
                        }
                        Ok(())
                    })?;
                    for c in &cases {
                        write_case(x, c)?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    let mut w = x.into_inner();
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(counts)
}

fn write_case<W: Write>(x: &mut Writer<W>, c: &Case) -> std::io::Result<()> {
    let e = x
        .create_element("testcase")
        .with_attribute(("classname", xml_chars(&c.classname).as_str()))
        .with_attribute(("name", xml_chars(&c.name).as_str()))
        .with_attribute(("time", time(c.time).as_str()));
    if c.outcome == Outcome::Passed && c.out.is_none() {
        e.write_empty()?;
        return Ok(());
    }
    e.write_inner_content(|x| {
        match &c.outcome {
            Outcome::Passed => {}
            Outcome::Failure {
                kind,
                message,
                text,
            } => {
                let f = x
                    .create_element("failure")
                    .with_attribute(("message", xml_chars(message).as_str()))
                    .with_attribute(("type", *kind));
                if text.is_empty() {
                    f.write_empty()?;
                } else {
                    f.write_text_content(BytesText::new(&xml_chars(text)))?;
                }
            }
            Outcome::Skipped { message } => {
                x.create_element("skipped")
                    .with_attribute(("message", xml_chars(message).as_str()))
                    .write_empty()?;
            }
            Outcome::Error { kind, message } => {
                x.create_element("error")
                    .with_attribute(("message", xml_chars(message).as_str()))
                    .with_attribute(("type", *kind))
                    .write_empty()?;
            }
        }
        if let Some(out) = &c.out {
            x.create_element("system-out")
                .write_text_content(BytesText::new(&xml_chars(out)))?;
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
