//! Turns the load engine's 100 ms snapshots into what the runner judges: the merged
//! measurements of each phase (a snapshot counts in a phase only when it lies wholly
//! inside it, so the moment a fault goes live does not straddle two phases), and a 1 s
//! series with each SLO's value per second, watched by the stop conditions.
//!
//! Times are durations since the run's origin (the runner's clock), whatever the load
//! engine's own start. Requests count by completion time, as the engine reports them:
//! a request sent in one phase that completes (or times out) in the next counts there —
//! which is why the runner lets in-flight requests drain before the steady state after.
//!
//! Memory stays flat in the length of a drill: phases keep one merged [`Recorded`]
//! each, the series keeps numbers only. A [`PhaseHistograms`] sink (`--hist-log`) gets
//! each phase's latency second by second, as the seconds close: nothing is kept.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::journal::{IntervalSummary, Percentiles, StopRecord, Summary};
use super::model::StopCondition;
use crate::cancel::Cancel;
use crate::load::{IntervalSnapshot, Recorded};
use crate::slo::{Objective, Window, point_value};

/// The load engine's snapshot interval for drills.
pub const FINE: Duration = Duration::from_millis(100);
/// The series' interval.
pub const SECOND: Duration = Duration::from_secs(1);

/// Where each phase's latency histograms go, one per second of the phase (`--hist-log`).
/// Called from the load engine's snapshot callback: an implementation must not block
/// for long (hand the histogram over, write to a buffer).
pub trait PhaseHistograms: Send + Sync + std::fmt::Debug {
    /// The run's origin, before the first interval: every `start` is relative to it.
    fn begin(&self, origin: std::time::SystemTime);
    /// The latency (corrected: from the intended start, failed requests included) of
    /// phase `phase` (named `name`) from `start` for `duration`: the snapshots of one
    /// second of the run's clock that lie wholly inside the phase — so the counts of a
    /// phase's intervals add up to its `summary.requests`.
    fn interval(
        &self,
        phase: usize,
        name: &str,
        start: Duration,
        duration: Duration,
        latency: &Histogram<u64>,
    );
}

/// A phase's histogram for the second being filled: (second, start, end, latency).
type Pending = (u64, Duration, Duration, Histogram<u64>);

/// One phase being measured.
#[derive(Debug)]
struct PhaseAcc {
    id: usize,
    name: String,
    /// Only with a sink.
    pending: Option<Pending>,
    start: Duration,
    end: Option<Duration>,
    data: Recorded,
    /// Sum of snapshot durations, and of target rate × duration (open loop).
    measured: Duration,
    asked: f64,
}

/// A phase's measurements, handed back when the phase is closed.
#[derive(Debug)]
pub struct Measured {
    pub data: Recorded,
    pub duration: Duration,
    pub asked_rps: Option<f64>,
}

impl Measured {
    pub fn window(&self) -> Window<'_> {
        Window {
            data: &self.data,
            duration: self.duration,
            asked_rps: self.asked_rps,
        }
    }
}

/// Stop-condition state.
#[derive(Debug)]
struct Watch {
    conditions: Vec<(StopCondition, Objective)>,
    /// Consecutive breaching seconds, per condition, and their values.
    runs: Vec<Vec<Option<f64>>>,
    active: bool,
    /// Stretches no stop condition watches: `[from, until)`, until open (`None`) while
    /// the step runs.
    quiet: Vec<(Duration, Option<Duration>)>,
    fired: Option<StopRecord>,
    /// Cancelled when a condition fires (the method's token).
    stop: Option<Cancel>,
}

/// Shared between the load's interval callback and the runner (behind a mutex,
/// touched once per 100 ms snapshot — never per request).
#[derive(Debug)]
pub struct Collector {
    open_loop: bool,
    slos: Vec<Objective>,
    phases: Vec<PhaseAcc>,
    next_id: usize,
    bucket: Option<(u64, Recorded, f64)>,
    pub series: Vec<IntervalSummary>,
    watch: Watch,
    /// The last snapshot's end: how far the measurements have got.
    pub covered: Duration,
    /// The run's origin: snapshot times are converted to durations since it.
    origin: std::time::Instant,
    sink: Option<std::sync::Arc<dyn PhaseHistograms>>,
}

impl Collector {
    pub fn new(
        origin: std::time::Instant,
        open_loop: bool,
        slos: Vec<Objective>,
        stops: Vec<(StopCondition, Objective)>,
    ) -> Self {
        let n = stops.len();
        Self {
            open_loop,
            slos,
            phases: Vec::new(),
            next_id: 0,
            bucket: None,
            series: Vec::new(),
            watch: Watch {
                conditions: stops,
                runs: vec![Vec::new(); n],
                active: false,
                quiet: Vec::new(),
                fired: None,
                stop: None,
            },
            covered: Duration::ZERO,
            origin,
            sink: None,
        }
    }

    /// Hands each phase's latency to `sink`, second by second.
    pub fn with_sink(mut self, sink: Option<std::sync::Arc<dyn PhaseHistograms>>) -> Self {
        self.sink = sink;
        self
    }

    /// Starts measuring a phase named `name` at `at` (from the start of the load).
    pub fn open_phase(&mut self, at: Duration, name: &str) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.phases.push(PhaseAcc {
            id,
            name: name.to_string(),
            pending: None,
            start: at,
            end: None,
            data: Recorded::new(self.open_loop),
            measured: Duration::ZERO,
            asked: 0.0,
        });
        id
    }

    /// Ends phase `id` at `at`; its measurements are complete once
    /// [`covered`](Self::covered) reaches `at`.
    pub fn end_phase(&mut self, id: usize, at: Duration) {
        if let Some(p) = self.phases.iter_mut().find(|p| p.id == id) {
            p.end = Some(at);
        }
    }

    /// Removes phase `id` and returns what it measured.
    pub fn take_phase(&mut self, id: usize) -> Option<Measured> {
        let i = self.phases.iter().position(|p| p.id == id)?;
        let mut p = self.phases.remove(i);
        flush(&self.sink, &mut p);
        let secs = p.measured.as_secs_f64();
        Some(Measured {
            data: p.data,
            duration: p.measured,
            asked_rps: (self.open_loop && secs > 0.0).then(|| p.asked / secs),
        })
    }

    /// Stop conditions watch from now on (the method runs), cancelling `stop` when one
    /// fires.
    pub fn arm(&mut self, stop: Cancel) {
        self.watch.active = true;
        self.watch.stop = Some(stop);
    }

    /// Stop conditions stop watching (the method is over).
    pub fn disarm(&mut self) {
        self.watch.active = false;
    }

    /// From `from` on, seconds are not watched (a step that expects a breach, a search
    /// probe) — until [`quiet_until`](Self::quiet_until) closes the stretch.
    pub fn quiet_from(&mut self, from: Duration) {
        self.watch.quiet.push((from, None));
        for r in &mut self.watch.runs {
            r.clear();
        }
    }

    /// Closes the open quiet stretch at `until` (the step's end plus the time its last
    /// requests may take to complete).
    pub fn quiet_until(&mut self, until: Duration) {
        if let Some(q) = self.watch.quiet.iter_mut().rev().find(|q| q.1.is_none()) {
            q.1 = Some(until);
        }
    }

    pub fn fired(&self) -> Option<&StopRecord> {
        self.watch.fired.as_ref()
    }

    /// One snapshot from the load engine.
    pub fn on_snapshot(&mut self, s: &IntervalSnapshot) {
        // On the run's clock.
        let start = (s.run_start + s.start).saturating_duration_since(self.origin);
        let end = start + s.duration;
        self.covered = self.covered.max(end);
        let asked = s.target_rps.unwrap_or(0.0) * s.duration.as_secs_f64();
        for p in &mut self.phases {
            if start >= p.start && p.end.is_none_or(|e| end <= e) {
                p.data.add(&s.data);
                p.measured += s.duration;
                p.asked += asked;
                if self.sink.is_some() {
                    let second = start.as_secs();
                    if p.pending.as_ref().is_some_and(|(sec, ..)| *sec != second) {
                        flush(&self.sink, p);
                    }
                    let (_, _, until, h) = p.pending.get_or_insert_with(|| {
                        (second, start, end, Histogram::new_from(&s.data.latency))
                    });
                    *until = end;
                    // Same bounds as the engine's (auto-resizing): cannot fail.
                    let _ = h.add(&s.data.latency);
                }
            }
        }
        let second = start.as_secs();
        if self.bucket.as_ref().is_some_and(|(i, _, _)| *i != second) {
            self.close_bucket();
        }
        let (_, data, asked_sum) = self
            .bucket
            .get_or_insert_with(|| (second, Recorded::new(s.data.service.is_some()), 0.0));
        data.add(&s.data);
        *asked_sum += asked;
    }

    /// Closes the last second (at the end of the load), and hands over what phases
    /// never taken (a drill that ended early) measured.
    pub fn finish(&mut self) {
        self.close_bucket();
        for p in &mut self.phases {
            flush(&self.sink, p);
        }
    }

    fn close_bucket(&mut self) {
        let Some((second, data, asked)) = self.bucket.take() else {
            return;
        };
        let w = Window {
            data: &data,
            duration: SECOND,
            asked_rps: self.open_loop.then_some(asked),
        };
        let slos: BTreeMap<String, Option<f64>> = self
            .slos
            .iter()
            .filter(|o| !matches!(o.metric, crate::slo::Metric::RecoveryTime { .. }))
            .map(|o| (o.name.clone(), point_value(o, &w)))
            .collect();
        let c = &data.counts;
        let class = |lo: u16, hi: u16| -> u64 {
            c.statuses()
                .filter(|(s, _)| (lo..hi).contains(s))
                .map(|(_, n)| n)
                .sum()
        };
        let ms =
            |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| ns_ms(h.value_at_quantile(q)));
        self.series.push(IntervalSummary {
            t: second as f64,
            requests: c.requests(),
            rps: c.requests() as f64,
            target_rps: self.open_loop.then_some(asked),
            ok: class(200, 400),
            client_errors: class(400, 500),
            server_errors: class(500, 1000),
            failed: c.errors(),
            p50_ms: ms(&data.latency, 0.5),
            p99_ms: ms(&data.latency, 0.99),
            max_ms: (!data.latency.is_empty()).then(|| ns_ms(data.latency.max())),
            service_p50_ms: data.service.as_ref().and_then(|h| ms(h, 0.5)),
            service_p99_ms: data.service.as_ref().and_then(|h| ms(h, 0.99)),
            slos,
        });
        self.watch_second(second, &w);
    }

    fn watch_second(&mut self, second: u64, w: &Window<'_>) {
        let watch = &mut self.watch;
        let (a, b) = (Duration::from_secs(second), Duration::from_secs(second + 1));
        let quiet = watch
            .quiet
            .iter()
            .any(|(from, until)| *from < b && until.is_none_or(|u| a < u));
        if !watch.active || quiet || watch.fired.is_some() {
            return;
        }
        for (i, (cond, slo)) in watch.conditions.iter().enumerate() {
            let v = point_value(slo, w);
            let breach = v.is_some_and(|v| cond.breach.holds(v, cond.threshold));
            let run = &mut watch.runs[i];
            if breach {
                run.push(v);
            } else {
                run.clear();
            }
            if run.len() >= cond.intervals.max(1) as usize {
                watch.fired = Some(StopRecord {
                    condition: format!("{} {} for {} s", cond.slo, cond.text, cond.intervals),
                    at_s: (second + 1) as f64,
                    values: run.clone(),
                });
                if let Some(stop) = &watch.stop {
                    stop.cancel();
                }
                return;
            }
        }
    }
}

/// Hands `p`'s pending second to the sink.
fn flush(sink: &Option<std::sync::Arc<dyn PhaseHistograms>>, p: &mut PhaseAcc) {
    if let (Some(sink), Some((_, start, end, h))) = (sink, p.pending.take()) {
        sink.interval(p.id, &p.name, start, end.saturating_sub(start), &h);
    }
}

/// Nanoseconds to milliseconds, rounded to the microsecond.
pub fn ns_ms(ns: u64) -> f64 {
    (ns as f64 / 1_000.0).round() / 1_000.0
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let q = |q: f64| (!h.is_empty()).then(|| ns_ms(h.value_at_quantile(q)));
    Percentiles {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p999: q(0.999),
        max: (!h.is_empty()).then(|| ns_ms(h.max())),
    }
}

/// Points of a percentile plot: log-spaced in 1/(1 − p) from 50% to 99.99%, up to
/// what `h`'s count resolves.
pub fn distribution(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    const POINTS: u32 = 48;
    let n = h.len() as f64;
    let top = 10_000f64.min(n);
    if top < 2.0 {
        return Vec::new();
    }
    (0..=POINTS)
        .map(|k| 2.0 * (5_000f64).powf(f64::from(k) / f64::from(POINTS)))
        .take_while(|x| *x <= top * 1.000_001)
        .map(|x| {
            let q = 1.0 - 1.0 / x;
            [(q * 1e6).round() / 1e4, ns_ms(h.value_at_quantile(q))]
        })
        .collect()
}

/// The counts and percentiles of some measurements.
pub fn summarize(data: &Recorded, duration: Duration, asked_rps: Option<f64>) -> Summary {
    let c = &data.counts;
    let secs = duration.as_secs_f64();
    Summary {
        requests: c.requests(),
        duration_s: (secs * 1000.0).round() / 1000.0,
        rps: if secs > 0.0 {
            ((c.requests() as f64 / secs) * 10.0).round() / 10.0
        } else {
            0.0
        },
        target_rps: asked_rps.map(|r| (r * 10.0).round() / 10.0),
        status_codes: c.statuses().map(|(s, n)| (s.to_string(), n)).collect(),
        errors: c.errors(),
        error_kinds: c
            .error_kinds()
            .map(|(k, n)| (k.name().to_string(), n))
            .collect(),
        latency_ms: percentiles(&data.latency),
        service_time_ms: data.service.as_ref().map(percentiles),
        latency_distribution: distribution(&data.latency),
    }
}
