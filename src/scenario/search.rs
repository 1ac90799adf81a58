//! `search` steps: bisect a fault percentage or a flood rate for the largest value at
//! which every SLO still holds, stating how sure each probe is.
//!
//! Each probe holds the value for `probe` and is judged like a hold. A probe that
//! cannot be decided counts as not holding: the answer claims only what was shown
//! with confidence. Probes do not count in the drill's verdict (a search is meant to
//! find where things break), and stop conditions do not watch them.

use super::journal::{PhaseKind, ProbeRecord, SearchRecord};
use super::model::{Expect, Flood, Search, SearchOver, Step};
use super::runner::{Event, Halt, Runner};
use crate::istio::{AbortSpec, Change, DelaySpec, Percentage, RouteSelector};
use crate::slo::Verdict;

impl Runner<'_> {
    pub(super) async fn search(&mut self, step: &Step, x: &Search) -> Result<(), Halt> {
        let (over, unit) = match &x.over {
            SearchOver::Abort { vs, .. } => (format!("abort % on {}", vs.name), "%"),
            SearchOver::Delay { vs, .. } => (format!("delay % on {}", vs.name), "%"),
            SearchOver::FloodRate { .. } => ("flood rate".to_string(), " req/s"),
        };
        let (mut lo, mut hi) = (x.low, x.high);
        let mut probes = Vec::new();
        let (mut holds, mut breaks) = (None, None);
        for _ in 0..x.max_probes {
            if hi - lo <= x.resolution {
                break;
            }
            let v = round_to((lo + hi) / 2.0, x.resolution);
            let (verdict, detail) = self.probe(step, x, v).await?;
            if verdict == Verdict::Pass {
                lo = v;
                holds = Some(v);
            } else {
                hi = v;
                breaks = Some(v);
            }
            probes.push(ProbeRecord {
                value: v,
                verdict,
                detail,
            });
        }
        // The last probe's fault must not run on into the next steps.
        if let SearchOver::Abort { vs, .. } | SearchOver::Delay { vs, .. } = &x.over {
            self.change(step, vs, &RouteSelector::All, None).await?;
        }
        let objectives = self.slo_names();
        let upper = probes.iter().find(|p| Some(p.value) == breaks);
        let objectives = objectives.join(", ");
        let answer = match (holds, upper) {
            (Some(h), Some(u)) if u.verdict == Verdict::Fail => format!(
                "{objectives} hold up to {h}{unit} and break at {}{unit}: the margin is {} ± {}{unit}",
                u.value,
                round_to((h + u.value) / 2.0, x.resolution / 4.0),
                round_to((u.value - h) / 2.0, x.resolution / 4.0)
            ),
            (Some(h), Some(u)) => format!(
                "{objectives} shown to hold up to {h}{unit}; at {}{unit} the sample could not tell (longer probes would narrow it)",
                u.value
            ),
            (Some(h), None) => format!(
                "{objectives} hold at every probe, up to {h}{unit} (the search range ends at {}{unit})",
                x.high
            ),
            (None, Some(u)) => format!(
                "{objectives} were not shown to hold at any probe: at {}{unit} they {} (the search range starts at {}{unit})",
                u.value,
                if u.verdict == Verdict::Fail {
                    "break"
                } else {
                    "could not be shown to hold"
                },
                x.low
            ),
            (None, None) => "no probe ran (the range is narrower than the resolution)".into(),
        };
        let rec = SearchRecord {
            step: step.index,
            over,
            unit: unit.trim().to_string(),
            probes,
            holds_up_to: holds,
            breaks_at: breaks,
            answer,
        };
        self.obs.event(Event::Searched(&rec));
        self.searches.push(rec);
        Ok(())
    }

    pub(super) async fn probe(
        &mut self,
        step: &Step,
        x: &Search,
        v: f64,
    ) -> Result<(Verdict, String), Halt> {
        let name = format!("{} = {v}", step.label);
        let rec = match &x.over {
            SearchOver::Abort { vs, selector, code } => {
                let change = Change::Abort(AbortSpec {
                    code: *code,
                    percentage: Percentage::new(v.max(0.0001)).unwrap_or(Percentage::FIFTY),
                });
                self.change(step, vs, selector, Some(&change)).await?;
                self.measure_probe(name, step, x, None).await?
            }
            SearchOver::Delay {
                vs,
                selector,
                fixed,
            } => {
                let change = Change::Delay(DelaySpec {
                    fixed: *fixed,
                    percentage: Percentage::new(v.max(0.0001)).unwrap_or(Percentage::FIFTY),
                });
                self.change(step, vs, selector, Some(&change)).await?;
                self.measure_probe(name, step, x, None).await?
            }
            SearchOver::FloodRate { load } => {
                let mut load = load.clone();
                load.rate = Some(v);
                load.ramp = None;
                let flood = Flood {
                    load,
                    duration: x.probe,
                    slos: Vec::new(),
                    expect: Expect::Hold,
                    workers: 1,
                };
                self.measure_probe(name, step, x, Some(&flood)).await?
            }
        };
        let verdict = rec.0.unwrap_or(Verdict::Inconclusive);
        Ok((verdict, rec.1))
    }

    pub(super) async fn measure_probe(
        &mut self,
        name: String,
        step: &Step,
        x: &Search,
        flood: Option<&Flood>,
    ) -> Result<(Option<Verdict>, String), Halt> {
        let rec = self
            .measure(
                PhaseKind::SearchProbe,
                name,
                Some(step.index),
                x.probe,
                &Expect::Hold,
                flood,
            )
            .await?;
        let out = (rec.verdict, rec.verdict_text.clone());
        self.record_phase(rec);
        Ok(out)
    }
}

/// `v` rounded to a power of ten at most a tenth of the resolution, so probes read
/// as 18.8, not 18.75000001 (divided, not multiplied, by the power: 21.9, not
/// 21.900000000000002).
pub(super) fn round_to(v: f64, resolution: f64) -> f64 {
    let digits = if resolution > 0.0 && resolution.is_finite() {
        (-(resolution / 10.0).log10().floor()).clamp(0.0, 6.0)
    } else {
        2.0
    };
    let k = 10f64.powf(digits);
    (v * k).round() / k
}
