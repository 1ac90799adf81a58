//! A journal built by hand for the report tests: a steady state that held, a hold
//! whose availability broke, a step that expected a breach and saw one, an
//! inconclusive steady state after, a retry check, a recovery objective and a stop
//! condition.

use serde_json::json;

use crate::scenario::journal::*;
use crate::slo::retry::{Prediction, RetryValidation};
use crate::slo::{SloResult, Verdict};

pub fn slo(name: &str, objective: &str, measured_text: &str, verdict: Verdict) -> SloResult {
    SloResult {
        name: name.into(),
        objective: objective.into(),
        measured: Some(0.5),
        measured_text: measured_text.into(),
        requests: 500,
        ci: Some((0.4561, 0.5439)),
        confidence: 0.95,
        verdict,
        needed: (verdict == Verdict::Inconclusive).then_some(1800),
        detail: format!("{name}: {verdict}"),
    }
}

pub fn phase(
    name: &str,
    expect: &str,
    slos: Vec<SloResult>,
    verdict: Option<Verdict>,
) -> PhaseRecord {
    PhaseRecord {
        name: name.into(),
        kind: PhaseKind::Hold,
        step: Some(0),
        start_s: 1.0,
        end_s: 6.5,
        expect: expect.into(),
        summary: Summary {
            requests: 500,
            ..Summary::default()
        },
        slos,
        verdict,
        verdict_text: "as judged".into(),
        retry_check: None,
        flood: None,
        mesh: None,
    }
}

pub fn journal() -> Journal {
    use Verdict::*;
    let avail = |v| slo("availability", "availability >= 99%", "51.40%", v);
    let p99 = |v| slo("latency", "p99 < 500ms", "23.0 ms", v);
    let mut hold = phase(
        "step 1: hold 5s (50% abort)",
        "hold",
        vec![avail(Fail), p99(Pass)],
        Some(Fail),
    );
    hold.retry_check = Some(RetryValidation {
        policy: "3 × 5xx".into(),
        failure_rate: 0.5,
        retried: true,
        predicted: Prediction {
            success: 0.9375,
            amplification: 1.875,
            success_sd: 0.24,
            amplification_sd: 1.0,
        },
        measured_success: Some(0.514),
        success_band: (0.90, 0.97),
        measured_amplification: None,
        amplification_band: None,
        retry_overflow: None,
        verdict: Fail,
        detail: "success 51.40% outside the band".into(),
    });
    Journal {
        format: FORMAT,
        meshdrill: "0.0.0".into(),
        versions: json!({}),
        scenario: "network-failure".into(),
        source: "network-failure.yaml".into(),
        target: "mesh go-demo-8".into(),
        target_kind: crate::target::Kind::Mesh,
        started: "2026-12-02T00:10:00Z".parse().expect("a timestamp"),
        ended: "2026-12-02T00:10:31.5Z".parse().expect("a timestamp"),
        dry_run: false,
        rollback_strategy: "always".into(),
        confidence: 0.95,
        load: None,
        objectives: vec![],
        steps: vec![],
        phases: vec![
            phase(
                "steady state before",
                "hold",
                vec![avail(Pass), p99(Pass)],
                Some(Pass),
            ),
            hold,
            phase(
                "step 2: hold 5s (100% abort)",
                "breach: availability",
                vec![avail(Fail), p99(Pass)],
                Some(Pass),
            ),
            phase("pause", "ignore", vec![], None),
            phase(
                "steady state after",
                "hold",
                vec![avail(Inconclusive), p99(Pass)],
                Some(Inconclusive),
            ),
        ],
        changes: vec![],
        rollbacks: vec![],
        stop_condition: Some(StopRecord {
            condition: "availability < 50% for 2 s".into(),
            at_s: 12.0,
            values: vec![Some(0.4), Some(0.3)],
        }),
        recovery: vec![slo("recovered", "recovery_time <= 10s", "4 s", Pass)],
        searches: vec![],
        retry_chains: vec![],
        series: vec![],
        warnings: vec![],
        verdict: DrillVerdict::Broke,
        verdict_text: "broke at step 1 (hold 5s): availability 51.40% < 99%".into(),
        ending: Ending::StopCondition {
            condition: "availability < 50% for 2 s".into(),
        },
        exit_code: 1,
    }
}
