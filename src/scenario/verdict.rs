//! The end of a run: the phases judged against their expectations, recovery times, the
//! drill's verdict in words, and the journal.

use serde_json::json;

use super::collect::SECOND;
use super::journal::{
    DrillVerdict, Ending, FORMAT, IntervalSummary, Journal, PhaseKind, PhaseRecord,
};
use super::model::{Expect, Scenario, StepKind};
use super::runner::{Event, Runner};
use crate::slo::{self, Metric, SloResult, Verdict};
use std::time::Duration;

impl Runner<'_> {
    pub(super) async fn finish(mut self, ending: Ending) -> Journal {
        // Recovery is judged on the series as it is before the rollback, so that
        // `--rollback-strategy deviated` knows about a drill that broke only there.
        let recovery = self.recovery(&ending);
        let deviated = !matches!(self.judged(&ending, &recovery).0, DrillVerdict::Held);
        let rb = self.rollback(&ending, deviated).await;
        // Stop the load; its last second closes the series.
        if let Some(l) = self.load.take() {
            l.stop.cancel();
            let _ = l.handle.await;
        }
        if let Some(rx) = self.intervals.as_mut() {
            while let Ok(i) = rx.try_recv() {
                self.obs.event(Event::Interval(&i));
            }
        }
        if let Some(c) = &self.collector
            && let Ok(mut c) = c.lock()
        {
            c.finish();
        }
        let ending = match (rb, ending) {
            (Some(Ending::RollbackFailed { message }), e) => Ending::RollbackFailed {
                message: format!("{}, but the rollback failed: {message}", ending_text(&e)),
            },
            (Some(rb), _) => rb,
            (None, e) => e,
        };
        let (verdict, text) = self.judged(&ending, &recovery);
        let mut series: Vec<IntervalSummary> = self
            .collector
            .as_ref()
            .and_then(|c| c.lock().ok().map(|mut c| std::mem::take(&mut c.series)))
            .unwrap_or_default();
        for iv in &mut series {
            if let Some(values) = self.prom_series.get(&(iv.t as u64)) {
                iv.slos.extend(values.clone());
            }
        }
        let stop_condition = self
            .collector
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|c| c.fired().cloned()));
        let exit_code = Journal::exit_code_for(verdict, &ending);
        Journal {
            format: FORMAT,
            meshdrill: env!("CARGO_PKG_VERSION").into(),
            versions: std::mem::take(&mut self.versions),
            scenario: self.s.name.clone(),
            source: self.s.source.clone(),
            target: self.target.label(),
            target_kind: self.target.kind(),
            started: self.started,
            ended: jiff::Timestamp::now(),
            dry_run: self.opts.dry_run,
            rollback_strategy: self.opts.rollback_strategy.name().into(),
            confidence: self.s.confidence,
            load: self.load_json.take(),
            objectives: self
                .s
                .slos
                .iter()
                .map(|o| json!({"name": o.name, "objective": o.describe()}))
                .collect(),
            steps: std::mem::take(&mut self.steps),
            phases: std::mem::take(&mut self.phases),
            changes: std::mem::take(&mut self.changes),
            rollbacks: std::mem::take(&mut self.rollbacks),
            stop_condition,
            recovery,
            searches: std::mem::take(&mut self.searches),
            retry_chains: std::mem::take(&mut self.retry_chains),
            series,
            warnings: std::mem::take(&mut self.warnings),
            verdict,
            verdict_text: text,
            ending,
            exit_code,
        }
    }

    /// The drill's verdict: its phases and how it ended, then its recovery times.
    pub(super) fn judged(&self, ending: &Ending, recovery: &[SloResult]) -> (DrillVerdict, String) {
        let (mut verdict, mut text) = self.verdict(ending);
        if matches!(ending, Ending::Completed) {
            for r in recovery {
                match r.verdict {
                    Verdict::Fail if verdict != DrillVerdict::Broke => {
                        verdict = DrillVerdict::Broke;
                        text = format!("broke: {} {} ({})", r.name, r.measured_text, r.objective);
                    }
                    Verdict::Inconclusive if verdict == DrillVerdict::Held => {
                        verdict = DrillVerdict::Inconclusive;
                        text = format!("inconclusive: {}", r.detail);
                    }
                    _ => {}
                }
            }
        }
        (verdict, text)
    }

    /// Recovery-time objectives over the series after the last recovery event.
    pub(super) fn recovery(&self, ending: &Ending) -> Vec<SloResult> {
        if !matches!(ending, Ending::Completed) {
            return Vec::new();
        }
        let Some(from) = self.last_recovery.or(self.method_done_at) else {
            return Vec::new();
        };
        let Some(c) = &self.collector else {
            return Vec::new();
        };
        let Ok(c) = c.lock() else {
            return Vec::new();
        };
        let first = from.as_secs_f64().ceil();
        self.s
            .slos
            .iter()
            .filter_map(|o| match &o.metric {
                Metric::RecoveryTime { slo: target, .. } => {
                    let t = self.s.slos.iter().find(|x| &x.name == target)?;
                    let values: Vec<Option<f64>> = c
                        .series
                        .iter()
                        .filter(|i| i.t >= first)
                        .map(|i| i.slos.get(target).copied().flatten())
                        .collect();
                    Some(slo::recovery_time(o, t, &values, SECOND, self.s.confidence))
                }
                _ => None,
            })
            .collect()
    }

    /// The drill's verdict from its phases and how it ended.
    pub(super) fn verdict(&self, ending: &Ending) -> (DrillVerdict, String) {
        match ending {
            Ending::DryRun => {
                return (
                    DrillVerdict::NotJudged,
                    "dry run: nothing was touched".into(),
                );
            }
            Ending::SteadyStateFailed => {
                let why = self
                    .phases
                    .iter()
                    .find(|p| p.kind == PhaseKind::SteadyStateBefore)
                    .map(|p| p.verdict_text.clone())
                    .unwrap_or_default();
                let v = if self.phases.iter().any(|p| {
                    p.kind == PhaseKind::SteadyStateBefore
                        && p.verdict == Some(Verdict::Inconclusive)
                }) {
                    DrillVerdict::Inconclusive
                } else {
                    DrillVerdict::Broke
                };
                return (
                    v,
                    format!(
                        "the steady state did not hold before the method, so nothing was injected: {why}"
                    ),
                );
            }
            Ending::StopCondition { condition } => {
                return (
                    DrillVerdict::Broke,
                    format!(
                        "stopped by the stop condition {condition}; everything was rolled back"
                    ),
                );
            }
            Ending::Completed => {}
            other => return (DrillVerdict::NotJudged, ending_text(other)),
        }
        let judged: Vec<&PhaseRecord> = self
            .phases
            .iter()
            .filter(|p| p.kind != PhaseKind::SearchProbe && p.verdict.is_some())
            .collect();
        if let Some(p) = judged.iter().find(|p| p.verdict == Some(Verdict::Fail)) {
            let at = p
                .step
                .map(|i| format!("step {} ({})", i + 1, p.name))
                .unwrap_or_else(|| p.name.clone());
            return (
                DrillVerdict::Broke,
                format!("broke at {at}: {}", p.verdict_text),
            );
        }
        if let Some(p) = judged
            .iter()
            .find(|p| p.verdict == Some(Verdict::Inconclusive))
        {
            return (
                DrillVerdict::Inconclusive,
                format!("inconclusive at {}: {}", p.name, p.verdict_text),
            );
        }
        if judged.is_empty() {
            return (DrillVerdict::NotJudged, "done (nothing was judged)".into());
        }
        (
            DrillVerdict::Held,
            "held: every judged phase met its objectives".into(),
        )
    }
}

pub(super) fn expect_text(e: &Expect) -> String {
    match e {
        Expect::Hold => "hold".into(),
        Expect::Breach { slos } if slos.is_empty() => "breach".into(),
        Expect::Breach { slos } => format!("breach: {}", slos.join(", ")),
        Expect::Ignore => "ignore".into(),
    }
}

pub(super) fn combine_v(a: Verdict, b: Verdict) -> Verdict {
    match (a, b) {
        (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
        (Verdict::Inconclusive, _) | (_, Verdict::Inconclusive) => Verdict::Inconclusive,
        _ => Verdict::Pass,
    }
}

pub(super) fn combine(a: Option<Verdict>, b: Option<Verdict>) -> Option<Verdict> {
    match (a, b) {
        (Some(a), Some(b)) => Some(combine_v(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

pub(super) fn miss(r: &SloResult) -> String {
    format!("{} {} (objective {})", r.name, r.measured_text, r.objective)
}

/// A phase's verdict against its expectation, and why.
pub(super) fn expectation(e: &Expect, slos: &[SloResult]) -> (Option<Verdict>, String) {
    match e {
        Expect::Ignore => (None, "measured, not judged".into()),
        Expect::Hold => {
            if slos.is_empty() {
                return (Some(Verdict::Pass), "no objective to judge".into());
            }
            let failed: Vec<String> = slos
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .map(miss)
                .collect();
            if !failed.is_empty() {
                return (Some(Verdict::Fail), failed.join("; "));
            }
            let open: Vec<String> = slos
                .iter()
                .filter(|r| r.verdict == Verdict::Inconclusive)
                .map(|r| format!("{}: {}", r.name, r.detail))
                .collect();
            if !open.is_empty() {
                return (Some(Verdict::Inconclusive), open.join("; "));
            }
            (Some(Verdict::Pass), "every objective held".into())
        }
        Expect::Breach { slos: names } if names.is_empty() => {
            // At least one objective breaks.
            let broke: Vec<String> = slos
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .map(miss)
                .collect();
            if !broke.is_empty() {
                (
                    Some(Verdict::Pass),
                    format!("breached as expected: {}", broke.join("; ")),
                )
            } else if slos.iter().all(|r| r.verdict == Verdict::Pass) {
                let held: Vec<String> = slos.iter().map(miss).collect();
                (
                    Some(Verdict::Fail),
                    format!(
                        "expected a breach, but the objectives held: {}",
                        held.join("; ")
                    ),
                )
            } else {
                (
                    Some(Verdict::Inconclusive),
                    "expected a breach; the sample cannot tell".into(),
                )
            }
        }
        Expect::Breach { slos: names } => {
            // The named objectives break; every other one still holds.
            let (named, others): (Vec<&SloResult>, Vec<&SloResult>) =
                slos.iter().partition(|r| names.contains(&r.name));
            let held: Vec<String> = named
                .iter()
                .filter(|r| r.verdict == Verdict::Pass)
                .map(|r| miss(r))
                .collect();
            let also: Vec<String> = others
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .map(|r| miss(r))
                .collect();
            if !held.is_empty() {
                (
                    Some(Verdict::Fail),
                    format!(
                        "expected a breach, but the objectives held: {}",
                        held.join("; ")
                    ),
                )
            } else if !also.is_empty() {
                (
                    Some(Verdict::Fail),
                    format!(
                        "only {} were to break, but so did: {}",
                        names.join(", "),
                        also.join("; ")
                    ),
                )
            } else if named.iter().all(|r| r.verdict == Verdict::Fail)
                && others.iter().all(|r| r.verdict == Verdict::Pass)
            {
                let broke: Vec<String> = named.iter().map(|r| miss(r)).collect();
                (
                    Some(Verdict::Pass),
                    format!("breached as expected: {}", broke.join("; ")),
                )
            } else {
                (
                    Some(Verdict::Inconclusive),
                    "expected a breach of some objectives and the others to hold; the sample cannot tell".into(),
                )
            }
        }
    }
}

pub fn ending_text(e: &Ending) -> String {
    match e {
        Ending::Completed => "completed".into(),
        Ending::SteadyStateFailed => "the steady state did not hold".into(),
        Ending::StopCondition { condition } => format!("stopped by {condition}"),
        Ending::Interrupted { signal } => format!("interrupted by {signal}"),
        Ending::InterruptedBeforeChange { signal } => {
            format!("interrupted by {signal} before anything was changed")
        }
        Ending::InputError { message } | Ending::TargetError { message } => message.clone(),
        Ending::RollbackFailed { message } => message.clone(),
        Ending::RollbackAbandoned { signal } => format!("rollback abandoned by {signal}"),
        Ending::DryRun => "dry run".into(),
        Ending::Unknown => "not recorded (the journal stops before its end)".into(),
    }
}

/// The planned length of a drill: steady states, holds, pauses, floods and search
/// probes (bounds the drill records' expiry).
pub fn planned_length(s: &Scenario) -> Duration {
    let mut t = Duration::ZERO;
    if let Some(ss) = s.steady_state {
        t += ss.duration * (u32::from(ss.before) + u32::from(ss.after));
    }
    for st in &s.method {
        t += match &st.kind {
            StepKind::Hold(h) => h.duration,
            StepKind::Pause(d) => *d,
            StepKind::Flood(f) => f.duration,
            StepKind::Search(x) => x.probe * x.max_probes,
            _ => Duration::ZERO,
        };
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, verdict: Verdict) -> SloResult {
        SloResult {
            name: name.into(),
            objective: format!("{name} objective"),
            measured: Some(0.5),
            measured_text: "50%".into(),
            requests: 100,
            ci: None,
            confidence: 0.95,
            verdict,
            needed: None,
            detail: String::new(),
        }
    }

    fn breach(names: &[&str]) -> Expect {
        Expect::Breach {
            slos: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_named_breach_needs_the_named_to_break_and_the_others_to_hold() {
        use Verdict::{Fail, Inconclusive, Pass};
        let e = breach(&["availability"]);
        let v = |a, l| expectation(&e, &[r("availability", a), r("latency", l)]).0;
        assert_eq!(v(Fail, Pass), Some(Pass));
        assert_eq!(v(Pass, Pass), Some(Fail), "the breach did not happen");
        assert_eq!(v(Fail, Fail), Some(Fail), "latency was to hold");
        assert_eq!(v(Fail, Inconclusive), Some(Inconclusive));
        assert_eq!(v(Inconclusive, Pass), Some(Inconclusive));
    }

    #[test]
    fn any_breach_needs_one_objective_to_break() {
        use Verdict::{Fail, Inconclusive, Pass};
        let e = breach(&[]);
        let v = |a, l| expectation(&e, &[r("availability", a), r("latency", l)]).0;
        assert_eq!(v(Fail, Pass), Some(Pass));
        assert_eq!(v(Pass, Fail), Some(Pass));
        assert_eq!(v(Fail, Fail), Some(Pass));
        assert_eq!(v(Pass, Pass), Some(Fail));
        assert_eq!(v(Pass, Inconclusive), Some(Inconclusive));
    }

    #[test]
    fn hold_fails_on_any_failure_and_is_inconclusive_on_any_doubt() {
        use Verdict::{Fail, Inconclusive, Pass};
        let v = |a, l| expectation(&Expect::Hold, &[r("a", a), r("b", l)]).0;
        assert_eq!(v(Pass, Pass), Some(Pass));
        assert_eq!(v(Pass, Fail), Some(Fail));
        assert_eq!(v(Inconclusive, Fail), Some(Fail));
        assert_eq!(v(Inconclusive, Pass), Some(Inconclusive));
        assert_eq!(expectation(&Expect::Ignore, &[r("a", Fail)]).0, None);
    }
}
