use quick_xml::Reader;
use quick_xml::events::Event;

use super::*;
use crate::report::testdata::{journal, phase, slo};
use crate::scenario::journal::Ending;
use crate::slo::Verdict::*;

/// (element, attributes) of every start or empty element, in order.
fn elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut r = Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match r.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().into_inner().to_string();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("an attribute");
                        (
                            a.key.into_inner().to_string(),
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .expect("a value")
                                .into_owned(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

fn attr<'a>(e: &'a (String, Vec<(String, String)>), k: &str) -> &'a str {
    e.1.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{} has no {k}", e.0))
}

fn xml(j: &Journal) -> String {
    let mut buf = Vec::new();
    write(j, &mut buf).expect("written");
    String::from_utf8(buf).expect("utf-8")
}

#[test]
fn every_objective_of_every_judged_phase_is_a_case_and_the_counts_add_up() {
    let j = journal();
    let x = xml(&j);
    let els = elements(&x);
    let suite = els
        .iter()
        .find(|e| e.0 == "testsuite")
        .expect("a testsuite");
    assert_eq!(attr(suite, "name"), "network-failure");
    assert_eq!(attr(suite, "tests"), "11", "{x}");
    assert_eq!(attr(suite, "failures"), "3", "{x}");
    assert_eq!(attr(suite, "errors"), "0");
    assert_eq!(attr(suite, "skipped"), "1");
    assert_eq!(attr(suite, "time"), "31.500");
    assert_eq!(attr(suite, "timestamp"), "2026-12-02T00:10:00");
    let root = &els[0];
    assert_eq!(root.0, "testsuites");
    assert_eq!(attr(root, "tests"), "11");
    let cases: Vec<_> = els.iter().filter(|e| e.0 == "testcase").collect();
    assert_eq!(cases.len(), 11);
    assert_eq!(
        attr(cases[0], "classname"),
        "network-failure.steady state before"
    );
    assert_eq!(attr(cases[0], "name"), "availability >= 99%");
    assert_eq!(attr(cases[0], "time"), "5.500");
    // The ignored pause has no case.
    assert!(!cases.iter().any(|c| attr(c, "classname").contains("pause")));
    // The dot of `5.5s`-like names does not split Jenkins' package.
    assert!(
        cases
            .iter()
            .all(|c| attr(c, "classname").matches('.').count() == 1)
    );
}

#[test]
fn a_violation_carries_measured_objective_and_interval() {
    let x = xml(&journal());
    let els = elements(&x);
    let failures: Vec<_> = els.iter().filter(|e| e.0 == "failure").collect();
    assert_eq!(
        attr(failures[0], "message"),
        "measured 51.40% (95% CI 45.61%–54.39%, 500 requests), objective availability >= 99%"
    );
    assert_eq!(attr(failures[0], "type"), "slo violated");
    assert_eq!(attr(failures[1], "type"), "retries not as predicted");
    assert!(attr(failures[1], "message").contains("success predicted 93.75%"));
    assert_eq!(attr(failures[2], "type"), "stop condition");
    assert!(attr(failures[2], "message").starts_with("fired at 12 s"));
}

#[test]
fn an_expected_breach_passes_when_it_breached_and_fails_when_it_held() {
    let j = journal();
    let cs = cases(&j);
    let breach: Vec<_> = cs
        .iter()
        .filter(|c| c.classname.contains("100% abort"))
        .collect();
    assert_eq!(breach.len(), 2);
    assert!(breach.iter().all(|c| c.outcome == Outcome::Passed));
    assert!(
        breach[0]
            .out
            .as_deref()
            .is_some_and(|o| o.starts_with("breached, as expected"))
    );

    // The named objective held: a failure of that case, not of the others.
    let held = phase(
        "step 2",
        "breach: availability",
        vec![
            slo("availability", "availability >= 99%", "100%", Pass),
            slo("latency", "p99 < 500ms", "3 ms", Pass),
        ],
        Some(Fail),
    );
    let mut cs = Vec::new();
    phase_cases("s", &held, &mut cs);
    assert!(
        matches!(&cs[0].outcome, Outcome::Failure { kind: "expected breach", message, .. } if message.starts_with("expected a breach, but it held"))
    );
    assert_eq!(cs[1].outcome, Outcome::Passed);

    // `breach` (any): no objective fails alone; the expectation is its own case.
    let none = phase(
        "step 2",
        "breach",
        vec![slo("availability", "availability >= 99%", "100%", Pass)],
        Some(Fail),
    );
    let mut cs = Vec::new();
    phase_cases("s", &none, &mut cs);
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].outcome, Outcome::Passed);
    assert!(matches!(
        &cs[1].outcome,
        Outcome::Failure {
            kind: "expected breach",
            ..
        }
    ));
}

#[test]
fn inconclusive_is_skipped_and_says_how_many_requests_would_decide() {
    let x = xml(&journal());
    let els = elements(&x);
    let skipped: Vec<_> = els.iter().filter(|e| e.0 == "skipped").collect();
    assert_eq!(skipped.len(), 1);
    assert!(
        attr(skipped[0], "message").ends_with("about 1800 requests would decide"),
        "{x}"
    );
}

#[test]
fn an_interrupted_run_is_an_error_case_and_its_unfinished_phase_is_not_judged() {
    let mut j = journal();
    j.ending = Ending::Interrupted {
        signal: "SIGINT".into(),
    };
    j.exit_code = 130;
    j.stop_condition = None;
    j.phases[4].verdict = None;
    j.phases[4].verdict_text = "stopped before its end: not judged".into();
    let cs = cases(&j);
    let last = cs.last().expect("cases");
    assert!(
        matches!(&last.outcome, Outcome::Error { kind: "interrupted", message } if message.contains("SIGINT") && message.ends_with("(exit 130)"))
    );
    let c = Counts::of(&cs);
    assert_eq!((c.errors, c.skipped), (1, 2));
    let els = elements(&xml(&j));
    let suite = els
        .iter()
        .find(|e| e.0 == "testsuite")
        .expect("a testsuite");
    assert_eq!(attr(suite, "errors"), "1");
}

#[test]
fn text_from_servers_is_escaped_and_unrepresentable_characters_replaced() {
    let mut j = journal();
    j.scenario = "a <b> & \"c\"".into();
    j.ending = Ending::TargetError {
        message: "Envoy said <html>&\u{1}".into(),
    };
    let x = xml(&j);
    let els = elements(&x);
    assert_eq!(attr(&els[0], "name"), "a <b> & \"c\"");
    let e = els.iter().find(|e| e.0 == "error").expect("an error");
    assert_eq!(attr(e, "message"), "Envoy said <html>&\u{FFFD} (exit 1)");
}
