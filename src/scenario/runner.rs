//! The drill lifecycle, for every caller (`meshdrill run`, `demo`, `fault … --wait`):
//! background load → steady state before (nothing is injected unless it holds) →
//! method (stop conditions watching) → steady state after → rollbacks, always →
//! verdict and journal.
//!
//! One [`Cancel`] stops it: the first signal ends the method and starts the rollback,
//! a second one abandons a slow rollback (the drill records keep their expiry for
//! `recover`). Nothing here prints: progress goes to an [`Observer`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::collect::{Collector, FINE, Measured, SECOND, summarize};
use super::journal::{
    ChangeRecord, DrillVerdict, Ending, FORMAT, IntervalSummary, Journal, PhaseKind, PhaseRecord,
    RollbackRecord, StepRecord,
};
use super::model::{
    Expect, FailureSource, Flood, Hold, LoadSpec, Scenario, Step, StepKind, TargetSpec, VsRef,
};
use crate::cancel::Cancel;
use crate::istio::{Change, RecordMeta, RouteSelector};
use crate::load::{self, LoadConfig, LoadReport, Rate, Stop};
use crate::slo::retry::{RetryMeasurement, RetryPolicy, RetryValidation};
use crate::slo::{self, Metric, SloResult, Verdict};
use crate::target::{self, Changed, Cleared, Kind, Target};

/// What happens to the scenario's `rollbacks` (meshdrill's own changes are undone
/// whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackStrategy {
    /// Always, also after a failure or an interrupt (the default).
    #[default]
    Always,
    /// Only when the drill did not hold (broke, stopped, interrupted, failed).
    Deviated,
    /// Never (meshdrill's own changes are still undone).
    Never,
}

impl RollbackStrategy {
    pub fn name(self) -> &'static str {
        match self {
            RollbackStrategy::Always => "always",
            RollbackStrategy::Deviated => "deviated",
            RollbackStrategy::Never => "never",
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Print the plan and every patch; touch nothing.
    pub dry_run: bool,
    pub rollback_strategy: RollbackStrategy,
    /// The expiry of every change's drill record (after it, `recover` may roll it
    /// back). Default: the planned length of the drill plus 5 minutes.
    pub ttl: Option<Duration>,
    /// What `{ingress}` in load URLs stands for (`127.0.0.1:PORT`); the mesh target
    /// fills it in itself.
    pub ingress: Option<String>,
    /// Record owner pid 0 (a change no process holds) — never set by the runner's
    /// callers today; kept for symmetry with one-shot changes.
    pub detached: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            rollback_strategy: RollbackStrategy::Always,
            ttl: None,
            ingress: None,
            detached: false,
        }
    }
}

/// Progress, for the caller to show. Events come in order, from the runner's task.
#[derive(Debug)]
pub enum Event<'a> {
    /// The drill starts on the target.
    Started { scenario: &'a str, target: String },
    /// A line of the plan (`--dry-run`, and the head of a run).
    Plan(String),
    /// A change planned by `--dry-run`: nothing was sent.
    Planned {
        step: &'a Step,
        vs: &'a str,
        changed: &'a Changed,
    },
    /// The background load started.
    LoadStarted { description: String },
    /// A judged or measured phase starts.
    PhaseStarted {
        name: &'a str,
        kind: PhaseKind,
        duration: Duration,
    },
    /// A change step was carried out.
    Changed {
        step: &'a Step,
        vs: &'a str,
        changed: &'a Changed,
        record: &'a ChangeRecord,
    },
    /// Replicas killed or restarted, pods deleted.
    Workload { step: &'a Step, what: String },
    /// A change is held (`fault --wait`): until `until`, or a signal.
    Holding {
        vs: &'a str,
        namespace: &'a str,
        duration: Duration,
        run_id: &'a str,
    },
    /// One second of the background load.
    Interval(&'a IntervalSummary),
    /// A phase was judged.
    PhaseEnded(&'a PhaseRecord),
    /// A stop condition fired: the method stops.
    StopFired(&'a super::journal::StopRecord),
    /// A PATCH got no answer in time; the runner checks whether it lands late.
    LateLanding { vs: &'a str, namespace: &'a str },
    /// The rollback starts (`signalled`: after a signal, so the next one abandons it).
    RollbackStarted { signalled: bool, hint: String },
    /// The first signal during a rollback that began without one.
    RollbackSignal { hint: String },
    /// One rollback action done.
    RolledBack {
        record: &'a RollbackRecord,
        cleared: Option<&'a Cleared>,
    },
    /// A search step found its answer.
    Searched(&'a super::journal::SearchRecord),
    /// Something the user should know.
    Warning(String),
}

/// Receives the runner's progress.
pub trait Observer {
    fn event(&mut self, e: Event<'_>);
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: Event<'_>) {}
}

/// Why the method stopped early.
pub(super) enum Halt {
    /// The method's token was cancelled (a signal or a stop condition).
    Cancelled,
    /// A step ended the run.
    End(Ending),
}

/// A VirtualService meshdrill changed, in the order first changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Touched {
    name: String,
    namespace: Option<String>,
}

/// The background load, running.
struct Running {
    handle: tokio::task::JoinHandle<Result<LoadReport, load::LoadError>>,
    stop: Cancel,
    /// Instant the load started, as an offset from the run's start.
    offset: Duration,
}

/// Runs `s` on `target` until done, stopped or cancelled, and always rolls back.
/// `cancel` is the run's token: cancel it (or let a signal do it, see
/// [`Cancel::watch_signals`]) to stop; a second cancellation abandons a slow
/// rollback.
pub async fn run(
    s: &Scenario,
    target: &Target,
    opts: &RunOptions,
    cancel: &Cancel,
    obs: &mut dyn Observer,
) -> Journal {
    let mut r = Runner::new(s, target, opts, cancel, obs);
    let ending = r.drive().await;
    r.finish(ending).await
}

pub(super) struct Runner<'a> {
    s: &'a Scenario,
    target: &'a Target,
    opts: &'a RunOptions,
    cancel: &'a Cancel,
    /// Cancelled by a signal (through `cancel`) or a stop condition.
    method: Cancel,
    obs: &'a mut dyn Observer,
    t0: Instant,
    started: jiff::Timestamp,
    meta: RecordMeta,
    ingress: Option<String>,
    collector: Option<Arc<Mutex<Collector>>>,
    intervals: Option<UnboundedReceiver<IntervalSummary>>,
    load: Option<Running>,
    load_json: Option<Value>,
    touched: Vec<Touched>,
    killed: Vec<(String, Option<usize>)>,
    last_recovery: Option<Duration>,
    method_done_at: Option<Duration>,
    anything_changed: bool,
    steps: Vec<StepRecord>,
    phases: Vec<PhaseRecord>,
    changes: Vec<ChangeRecord>,
    rollbacks: Vec<RollbackRecord>,
    searches: Vec<super::journal::SearchRecord>,
    warnings: Vec<String>,
    retry_chains: Vec<String>,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl<'a> Runner<'a> {
    fn new(
        s: &'a Scenario,
        target: &'a Target,
        opts: &'a RunOptions,
        cancel: &'a Cancel,
        obs: &'a mut dyn Observer,
    ) -> Self {
        let ttl = opts
            .ttl
            .unwrap_or_else(|| planned_length(s) + Duration::from_secs(300));
        let mut owner = crate::istio::Owner::current();
        if opts.detached {
            owner.pid = 0;
        }
        let meta = RecordMeta {
            run_id: crate::istio::new_run_id(),
            owner,
            now: jiff::Timestamp::now(),
            ttl,
        };
        Self {
            s,
            target,
            opts,
            cancel,
            method: cancel.child(),
            obs,
            t0: Instant::now(),
            started: jiff::Timestamp::now(),
            meta,
            ingress: opts.ingress.clone(),
            collector: None,
            intervals: None,
            load: None,
            load_json: None,
            touched: Vec::new(),
            killed: Vec::new(),
            last_recovery: None,
            method_done_at: None,
            anything_changed: false,
            steps: Vec::new(),
            phases: Vec::new(),
            changes: Vec::new(),
            rollbacks: Vec::new(),
            searches: Vec::new(),
            warnings: Vec::new(),
            retry_chains: Vec::new(),
        }
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The load's clock (what the collector measures against).
    fn load_now(&self) -> Duration {
        let offset = self.load.as_ref().map_or(Duration::ZERO, |l| l.offset);
        self.t0.elapsed().saturating_sub(offset)
    }

    /// The run's ending when the method's token was cancelled.
    fn halted(&self) -> Ending {
        if let Some(sig) = self.cancel.signal() {
            if self.anything_changed {
                Ending::Interrupted {
                    signal: sig.name().into(),
                }
            } else {
                Ending::InterruptedBeforeChange {
                    signal: sig.name().into(),
                }
            }
        } else if let Some(f) = self
            .collector
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|c| c.fired().cloned()))
        {
            Ending::StopCondition {
                condition: f.condition,
            }
        } else {
            Ending::Interrupted {
                signal: "a request".into(),
            }
        }
    }

    // === the flow ===

    async fn drive(&mut self) -> Ending {
        self.obs.event(Event::Started {
            scenario: &self.s.name,
            target: self.target.label(),
        });
        if let Err(m) = self.check_target() {
            return Ending::InputError { message: m };
        }
        if let Target::Mesh(m) = self.target {
            if self.ingress.is_none() {
                match m.ingress_url() {
                    Ok(u) => self.ingress = Some(u.trim_start_matches("http://").to_string()),
                    Err(e) => {
                        return Ending::TargetError {
                            message: e.to_string(),
                        };
                    }
                }
            }
            if let Ok(spec) = m.spec() {
                self.retry_chains = crate::mesh::chain::retry_chains(&spec)
                    .iter()
                    .filter(|c| c.hops.len() > 1 && c.amplification > 1)
                    .map(|c| c.describe())
                    .collect();
            }
        }
        if self.opts.dry_run {
            return self.dry_run().await;
        }
        if let Some(l) = &self.s.load
            && let Err(e) = self.start_load(l)
        {
            return e;
        }
        // Steady state before: nothing is injected unless it holds.
        if let Some(ss) = self.s.steady_state.filter(|s| s.before) {
            match self
                .phase(
                    PhaseKind::SteadyStateBefore,
                    "steady state before".into(),
                    None,
                    ss.duration,
                    &Expect::Hold,
                )
                .await
            {
                Err(Halt::Cancelled) => return self.halted(),
                Err(Halt::End(e)) => return e,
                Ok(v) if v != Some(Verdict::Pass) => return Ending::SteadyStateFailed,
                Ok(_) => {}
            }
        }
        if let Some(c) = &self.collector
            && let Ok(mut c) = c.lock()
        {
            c.arm(self.method.clone());
        }
        let method = self.method_steps().await;
        self.method_done_at = Some(self.load_now());
        if let Some(c) = &self.collector
            && let Ok(mut c) = c.lock()
        {
            c.disarm();
        }
        if let Some(f) = self
            .collector
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|c| c.fired().cloned()))
        {
            self.obs.event(Event::StopFired(&f));
        }
        match method {
            Err(Halt::Cancelled) => return self.halted(),
            Err(Halt::End(e)) => return e,
            Ok(()) => {}
        }
        if let Some(ss) = self.s.steady_state.filter(|s| s.after) {
            match self
                .phase(
                    PhaseKind::SteadyStateAfter,
                    "steady state after".into(),
                    None,
                    ss.duration,
                    &Expect::Hold,
                )
                .await
            {
                Err(Halt::Cancelled) => return self.halted(),
                Err(Halt::End(e)) => return e,
                Ok(_) => {}
            }
        }
        Ending::Completed
    }

    /// Refuses steps the target cannot carry out, before anything starts.
    fn check_target(&self) -> Result<(), String> {
        let kind = self.target.kind();
        for step in self.s.method.iter().chain(&self.s.rollbacks) {
            let bad = match (&step.kind, kind) {
                (
                    StepKind::Kill {
                        selector: Some(_), ..
                    },
                    Kind::Mesh,
                ) => Some(
                    "kill: selector is for cluster targets; on a local mesh give service (and replica)",
                ),
                (
                    StepKind::Kill {
                        service: Some(_), ..
                    },
                    Kind::Cluster,
                ) => Some(
                    "kill: service is for the local mesh; on a cluster give selector (a label selector such as app=reviews)",
                ),
                (StepKind::Restart { .. }, Kind::Cluster) => Some(
                    "restart is for the local mesh; on a cluster the pods' controller starts them again",
                ),
                (StepKind::Kill { .. } | StepKind::Restart { .. }, Kind::File)
                    if !self.opts.dry_run =>
                {
                    Some("kill and restart need a running target")
                }
                _ => None,
            };
            if let Some(why) = bad {
                return Err(format!("{}: {why}", step.at));
            }
        }
        if let Some(l) = &self.s.load
            && l.url.contains("{ingress}")
            && self.ingress.is_none()
            && kind == Kind::Cluster
        {
            return Err(format!(
                "{}: the load URL uses {{ingress}}, but the cluster target has no ingress: set spec.target.cluster.ingress or pass --ingress HOST:PORT",
                l.at
            ));
        }
        Ok(())
    }

    fn resolve_url(&self, url: &str) -> String {
        match &self.ingress {
            Some(i) => url.replace("{ingress}", i),
            None => url.to_string(),
        }
    }

    fn load_config(&self, l: &LoadSpec, rate: Rate, stop: Stop) -> Result<LoadConfig, Ending> {
        let mut b = LoadConfig::builder(self.resolve_url(&l.url))
            .method(l.method.clone())
            .conns(l.connections)
            .timeout(l.timeout)
            .http2(l.http2)
            .interval(FINE)
            .rate(rate)
            .stop(stop);
        for h in &l.headers {
            b = b.header(h.clone());
        }
        if let Some(body) = &l.body {
            b = b.body(body.clone().into_bytes());
        }
        b.build().map_err(|e| Ending::InputError {
            message: format!("{}: load: {e}", l.at),
        })
    }

    fn rate_of(l: &LoadSpec) -> Rate {
        match (l.rate, l.ramp) {
            (None, _) => Rate::Max,
            (Some(r), None) => Rate::Fixed(r),
            (Some(from), Some(ramp)) => Rate::Ramp {
                from,
                to: ramp.to,
                over: ramp.over,
            },
        }
    }

    fn start_load(&mut self, l: &LoadSpec) -> Result<(), Ending> {
        // Runs until the drill stops it (bounded by a day in any case).
        let config = self.load_config(l, Self::rate_of(l), Stop::Duration(DAY))?;
        let stops: Vec<_> = self
            .s
            .stop_conditions
            .iter()
            .filter_map(|c| {
                let o = self.s.slos.iter().find(|o| o.name == c.slo)?.clone();
                Some((c.clone(), o))
            })
            .collect();
        let (tx, rx) = unbounded_channel();
        let collector = Arc::new(Mutex::new(Collector::new(
            l.rate.is_some(),
            self.s.slos.clone(),
            stops,
        )));
        let c2 = collector.clone();
        let stop = self.cancel.child();
        let offset = self.now();
        let handle = load::spawn(config, stop.clone(), move |snap| {
            forward(&c2, snap, &tx);
        });
        let description = format!(
            "{} {}{} over {} connection(s), timeout {}",
            l.method,
            self.resolve_url(&l.url),
            match l.rate {
                Some(r) => format!(" at {r} req/s (open loop)"),
                None => " closed loop".into(),
            },
            l.connections,
            human(l.timeout)
        );
        self.load_json = Some(json!({
            "url": self.resolve_url(&l.url),
            "method": l.method,
            "headers": l.headers,
            "rate": l.rate,
            "connections": l.connections,
            "timeoutS": l.timeout.as_secs_f64(),
        }));
        self.obs.event(Event::LoadStarted { description });
        self.collector = Some(collector);
        self.intervals = Some(rx);
        self.load = Some(Running {
            handle,
            stop,
            offset,
        });
        Ok(())
    }

    /// Waits `d` (forwarding interval events); `Err` when the method's token is
    /// cancelled first.
    async fn wait(&mut self, d: Duration) -> Result<(), Halt> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let method = self.method.clone();
            let next = async {
                match self.intervals.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = method.cancelled() => return Err(Halt::Cancelled),
                () = tokio::time::sleep_until(deadline) => return Ok(()),
                Some(i) = next => self.obs.event(Event::Interval(&i)),
            }
        }
    }

    /// Waits until the load's measurements reach `at` (bounded).
    async fn settle(&mut self, at: Duration) {
        let Some(c) = self.collector.clone() else {
            return;
        };
        let limit = Instant::now() + Duration::from_secs(3) + FINE;
        while Instant::now() < limit {
            if c.lock().map_or(true, |c| c.covered >= at) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn mesh_stats(&self) -> Option<crate::mesh::MeshStats> {
        match self.target {
            Target::Mesh(m) if self.load.is_some() => m.stats().await.ok(),
            _ => None,
        }
    }

    /// Measures a phase of `d` and judges it against `expect`. Returns the verdict
    /// (`None`: not judged).
    async fn phase(
        &mut self,
        kind: PhaseKind,
        name: String,
        step: Option<usize>,
        d: Duration,
        expect: &Expect,
    ) -> Result<Option<Verdict>, Halt> {
        let rec = self.measure(kind, name, step, d, expect, None).await?;
        Ok(self.record_phase(rec))
    }

    /// Measures a phase; `extra` (a flood) runs meanwhile and is judged with it.
    async fn measure(
        &mut self,
        kind: PhaseKind,
        name: String,
        step: Option<usize>,
        d: Duration,
        expect: &Expect,
        flood: Option<&Flood>,
    ) -> Result<PhaseRecord, Halt> {
        self.obs.event(Event::PhaseStarted {
            name: &name,
            kind,
            duration: d,
        });
        let suppress = matches!(expect, Expect::Breach { .. }) || kind == PhaseKind::SearchProbe;
        if suppress
            && let Some(c) = &self.collector
            && let Ok(mut c) = c.lock()
        {
            c.suppress(true);
        }
        let before = self.mesh_stats().await;
        let start_run = self.now();
        let start = self.load_now();
        let id = self
            .collector
            .as_ref()
            .and_then(|c| c.lock().ok().map(|mut c| c.open_phase(start)));
        let flood_run = match flood {
            Some(f) => Some(self.start_flood(f)?),
            None => None,
        };
        let waited = self.wait(d).await;
        let end = self.load_now();
        let end_run = self.now();
        if let (Some(id), Some(c)) = (id, &self.collector)
            && let Ok(mut c) = c.lock()
        {
            c.end_phase(id, end);
        }
        let flood_rec = match flood_run {
            Some(fr) => Some(self.finish_flood(fr, flood).await),
            None => None,
        };
        self.settle(end).await;
        if suppress
            && let Some(c) = &self.collector
            && let Ok(mut c) = c.lock()
        {
            c.suppress(false);
        }
        let measured = match (id, &self.collector) {
            (Some(id), Some(c)) => c.lock().ok().and_then(|mut c| c.take_phase(id)),
            _ => None,
        };
        let after = self.mesh_stats().await;
        let mesh = match (before, after) {
            (Some(b), Some(a)) => serde_json::to_value(a.since(&b)).ok(),
            _ => None,
        };
        let interval_values = self.interval_values(start, end);
        let mut rec = self.judge(
            kind,
            name,
            step,
            (secs(start_run), secs(end_run)),
            expect,
            measured.as_ref(),
            &interval_values,
            flood_rec,
        );
        rec.mesh = mesh;
        if waited.is_err() {
            rec.verdict = None;
            rec.verdict_text = "stopped before its end: not judged".into();
        }
        match waited {
            Ok(()) => Ok(rec),
            Err(h) => {
                self.obs.event(Event::PhaseEnded(&rec));
                self.phases.push(rec);
                Err(h)
            }
        }
    }

    /// Reports a judged phase and keeps it.
    fn record_phase(&mut self, rec: PhaseRecord) -> Option<Verdict> {
        self.obs.event(Event::PhaseEnded(&rec));
        let v = rec.verdict;
        self.phases.push(rec);
        v
    }

    /// Each SLO's point values in the seconds wholly inside `[start, end)` (load
    /// clock), and the requests of those seconds.
    fn interval_values(&self, start: Duration, end: Duration) -> IntervalValues {
        let mut out: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
        let mut requests = 0;
        let Some(c) = &self.collector else {
            return (out, 0);
        };
        let Ok(c) = c.lock() else {
            return (out, 0);
        };
        let (a, b) = (start.as_secs_f64(), end.as_secs_f64());
        for iv in c
            .series
            .iter()
            .filter(|i| i.t >= a && i.t + 1.0 <= b + 1e-9)
        {
            requests += iv.requests;
            for (k, v) in &iv.slos {
                out.entry(k.clone()).or_default().push(*v);
            }
        }
        (out, requests)
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        kind: PhaseKind,
        name: String,
        step: Option<usize>,
        (start_s, end_s): (f64, f64),
        expect: &Expect,
        m: Option<&Measured>,
        (intervals, interval_requests): &IntervalValues,
        flood: Option<super::journal::FloodRecord>,
    ) -> PhaseRecord {
        let conf = self.s.confidence;
        let slos: Vec<SloResult> = match m {
            Some(m) => self
                .s
                .slos
                .iter()
                .filter(|o| !matches!(o.metric, Metric::RecoveryTime { .. }))
                .map(|o| match o.over {
                    slo::Over::Phase => slo::evaluate(o, &m.window(), conf),
                    slo::Over::Interval { .. } => slo::evaluate_intervals(
                        o,
                        intervals.get(&o.name).map_or(&[][..], Vec::as_slice),
                        *interval_requests,
                        conf,
                    ),
                })
                .collect(),
            None => Vec::new(),
        };
        let summary = m
            .map(|m| summarize(&m.data, m.duration, m.asked_rps))
            .unwrap_or_default();
        let (verdict, mut text) = expectation(expect, &slos);
        let mut verdict = verdict;
        if let Some(f) = &flood
            && !f.slos.is_empty()
        {
            let (fv, ft) = expectation(&Expect::Hold, &f.slos);
            verdict = combine(verdict, fv);
            text = format!("{text}; flood: {ft}");
        }
        PhaseRecord {
            name,
            kind,
            step,
            start_s,
            end_s,
            expect: expect_text(expect),
            summary,
            slos,
            verdict,
            verdict_text: text,
            retry_check: None,
            flood,
            mesh: None,
        }
    }

    // === the method ===

    async fn method_steps(&mut self) -> Result<(), Halt> {
        for step in &self.s.method {
            if self.method.is_cancelled() {
                return Err(Halt::Cancelled);
            }
            let start = self.now();
            let r = self.step(step).await;
            let status = match &r {
                Ok(()) => "done".to_string(),
                Err(Halt::Cancelled) => "stopped".to_string(),
                Err(Halt::End(e)) => format!("failed: {}", ending_text(e)),
            };
            self.steps.push(StepRecord {
                index: step.index,
                label: step.label.clone(),
                at: step.at.clone(),
                start_s: secs(start),
                end_s: secs(self.now()),
                status,
            });
            r?;
        }
        Ok(())
    }

    async fn step(&mut self, step: &Step) -> Result<(), Halt> {
        match &step.kind {
            StepKind::Change {
                vs,
                selector,
                change,
            } => self.change(step, vs, selector, Some(change)).await,
            StepKind::Clear { vs } => {
                self.change(step, vs, &RouteSelector::All, None).await?;
                self.last_recovery = Some(self.load_now());
                Ok(())
            }
            StepKind::Kill {
                service,
                selector,
                replica,
                count,
            } => {
                self.kill(
                    step,
                    service.as_deref(),
                    selector.as_deref(),
                    *replica,
                    *count,
                )
                .await
            }
            StepKind::Restart { service, replica } => {
                self.restart(step, service, *replica).await?;
                self.last_recovery = Some(self.load_now());
                Ok(())
            }
            StepKind::Hold(h) => self.hold(step, h).await,
            StepKind::Pause(d) => self.wait(*d).await,
            StepKind::Flood(f) => {
                let rec = self
                    .measure(
                        PhaseKind::Flood,
                        step.label.clone(),
                        Some(step.index),
                        f.duration,
                        &f.expect,
                        Some(f),
                    )
                    .await?;
                self.record_phase(rec);
                self.last_recovery = Some(self.load_now());
                Ok(())
            }
            StepKind::Search(x) => self.search(step, x).await,
        }
    }

    pub(super) fn obs_event(&mut self, e: Event<'_>) {
        self.obs.event(e);
    }

    pub(super) fn push_search(&mut self, r: super::journal::SearchRecord) {
        self.searches.push(r);
    }

    pub(super) fn push_phase(&mut self, r: PhaseRecord) -> Option<Verdict> {
        self.record_phase(r)
    }

    pub(super) fn slo_names(&self) -> Vec<String> {
        self.s
            .slos
            .iter()
            .filter(|o| !matches!(o.metric, Metric::RecoveryTime { .. }))
            .map(|o| o.describe())
            .collect()
    }

    pub(super) async fn change_step(
        &mut self,
        step: &Step,
        vs: &VsRef,
        selector: &RouteSelector,
        change: Option<&Change>,
    ) -> Result<(), Halt> {
        self.change(step, vs, selector, change).await
    }

    pub(super) async fn measure_phase(
        &mut self,
        kind: PhaseKind,
        name: String,
        step: Option<usize>,
        d: Duration,
        expect: &Expect,
        flood: Option<&Flood>,
    ) -> Result<PhaseRecord, Halt> {
        self.measure(kind, name, step, d, expect, flood).await
    }

    /// Applies a change (or a clear) and records it.
    async fn change(
        &mut self,
        step: &Step,
        vs: &VsRef,
        selector: &RouteSelector,
        change: Option<&Change>,
    ) -> Result<(), Halt> {
        let ns = vs.namespace.as_deref();
        let res = self
            .target
            .apply(
                &vs.name,
                ns,
                selector,
                change,
                &self.meta,
                Some(self.cancel),
            )
            .await;
        let changed = match res {
            Ok(c) => c,
            Err(e) if e.is_interrupted() => return Err(Halt::Cancelled),
            Err(target::Error::Cluster(e @ crate::cluster::Error::MayStillApply { .. })) => {
                return Err(Halt::End(self.late_landing(vs, e).await));
            }
            Err(e) if e.is_input() => {
                return Err(Halt::End(Ending::InputError {
                    message: format!("{}: {e}", step.at),
                }));
            }
            Err(e) => {
                return Err(Halt::End(Ending::TargetError {
                    message: e.to_string(),
                }));
            }
        };
        if change.is_some() {
            self.anything_changed = true;
        }
        let t = Touched {
            name: vs.name.clone(),
            namespace: Some(changed.namespace.clone()),
        };
        if change.is_some() && !self.touched.contains(&t) {
            self.touched.push(t);
        }
        let record = ChangeRecord {
            step: Some(step.index),
            action: match change {
                Some(Change::Retries { .. }) => "retries",
                Some(Change::Timeout(_)) => "timeout",
                Some(_) => "fault",
                None => "clear",
            }
            .into(),
            object: vs.name.clone(),
            namespace: Some(changed.namespace.clone()),
            change: change.map_or("cleared: routes restored".into(), |c| c.to_string()),
            at_s: secs(self.now()),
            routes: changed.routes.clone(),
            patch: serde_json::to_value(&changed.patch).unwrap_or(Value::Null),
            envoy_version: changed.envoy.map(|(v, _)| v),
            confirmed_ms: changed.envoy.map(|(_, d)| secs(d) * 1000.0),
            warnings: changed.warnings.clone(),
        };
        self.obs.event(Event::Changed {
            step,
            vs: &vs.name,
            changed: &changed,
            record: &record,
        });
        self.warnings.extend(changed.warnings.iter().cloned());
        self.changes.push(record);
        Ok(())
    }

    /// A PATCH that may still land: watch for it and roll it back if it does.
    async fn late_landing(&mut self, vs: &VsRef, e: crate::cluster::Error) -> Ending {
        let Target::Cluster(c) = self.target else {
            return Ending::TargetError {
                message: e.to_string(),
            };
        };
        let ns = vs
            .namespace
            .clone()
            .unwrap_or_else(|| c.cluster.namespace.clone());
        self.obs.event(Event::LateLanding {
            vs: &vs.name,
            namespace: &ns,
        });
        let crate::cluster::Error::MayStillApply { run_id, .. } = &e else {
            return Ending::TargetError {
                message: e.to_string(),
            };
        };
        let message = match c
            .settle_late_landing(&ns, &vs.name, run_id, target::rollback_budget())
            .await
        {
            Ok(true) => format!(
                "{e}\nThe change landed after the timeout and was rolled back; nothing is left on {ns}/{}",
                vs.name
            ),
            Ok(false) => e.to_string(),
            Err(r) => format!(
                "{e}\nThe change landed after the timeout, and rolling it back failed: {r}; `meshdrill recover -n {ns}` restores it after its expiry"
            ),
        };
        Ending::TargetError { message }
    }

    async fn kill(
        &mut self,
        step: &Step,
        service: Option<&str>,
        selector: Option<&str>,
        replica: Option<usize>,
        count: Option<u32>,
    ) -> Result<(), Halt> {
        let what = match (self.target, service, selector) {
            (Target::Mesh(m), Some(svc), _) => {
                let targets = match (replica, count) {
                    (Some(r), _) => Some(r),
                    _ => None,
                };
                let mut done = Vec::new();
                if let Some(n) = count.filter(|_| replica.is_none()) {
                    for i in 0..n as usize {
                        match m.kill(svc, Some(i)).await {
                            Ok(k) => done.extend(k),
                            Err(e) => return Err(self.step_error(step, e)),
                        }
                    }
                } else {
                    match m.kill(svc, targets).await {
                        Ok(k) => done.extend(k),
                        Err(e) => return Err(self.step_error(step, e)),
                    }
                }
                for i in &done {
                    self.killed.push((svc.to_string(), Some(*i)));
                }
                format!("killed {svc} replica(s) {done:?}")
            }
            (Target::Cluster(c), _, Some(sel)) => {
                let ns = c.cluster.namespace.clone();
                let pods = match c.cluster.list_pods(&ns, sel).await {
                    Ok(p) => p,
                    Err(e) => return Err(self.step_error(step, target::Error::Cluster(e))),
                };
                if pods.is_empty() {
                    return Err(Halt::End(Ending::TargetError {
                        message: format!(
                            "{}: no running pod in namespace {ns} matches -l {sel}; nothing was killed",
                            step.at
                        ),
                    }));
                }
                let victims =
                    crate::cluster::pick_victims(pods, Some(count.unwrap_or(1) as usize), None);
                for p in &victims {
                    if let Err(e) = c.cluster.delete_pod(&ns, p).await {
                        return Err(self.step_error(step, target::Error::Cluster(e)));
                    }
                }
                format!("deleted pod(s) {} in {ns}", victims.join(", "))
            }
            _ => {
                return Err(Halt::End(Ending::InputError {
                    message: format!(
                        "{}: kill: nothing to kill on {}",
                        step.at,
                        self.target.label()
                    ),
                }));
            }
        };
        self.anything_changed = true;
        self.changes.push(ChangeRecord {
            step: Some(step.index),
            action: "kill".into(),
            object: service.or(selector).unwrap_or_default().to_string(),
            namespace: None,
            change: what.clone(),
            at_s: secs(self.now()),
            routes: Vec::new(),
            patch: Value::Null,
            envoy_version: None,
            confirmed_ms: None,
            warnings: Vec::new(),
        });
        self.obs.event(Event::Workload { step, what });
        Ok(())
    }

    async fn restart(
        &mut self,
        step: &Step,
        service: &str,
        replica: Option<usize>,
    ) -> Result<(), Halt> {
        let Target::Mesh(m) = self.target else {
            return Err(Halt::End(Ending::InputError {
                message: format!("{}: restart is for the local mesh", step.at),
            }));
        };
        let done = match m.restart(service, replica).await {
            Ok(d) => d,
            Err(e) => return Err(self.step_error(step, e)),
        };
        self.killed
            .retain(|(s, r)| !(s == service && (replica.is_none() || *r == replica)));
        let what = format!("restarted {service} replica(s) {done:?}");
        self.obs.event(Event::Workload { step, what });
        Ok(())
    }

    fn step_error(&self, step: &Step, e: target::Error) -> Halt {
        if e.is_input() {
            Halt::End(Ending::InputError {
                message: format!("{}: {e}", step.at),
            })
        } else {
            Halt::End(Ending::TargetError {
                message: e.to_string(),
            })
        }
    }

    async fn hold(&mut self, step: &Step, h: &Hold) -> Result<(), Halt> {
        if self.load.is_none() {
            // Nothing is measured: the hold keeps the change for its duration
            // (`fault --wait`), until it ends or a signal comes.
            if let Some(c) = self.changes.last() {
                let (vs, ns, run_id) = (
                    c.object.clone(),
                    c.namespace.clone().unwrap_or_default(),
                    self.meta.run_id.clone(),
                );
                self.obs.event(Event::Holding {
                    vs: &vs,
                    namespace: &ns,
                    duration: h.duration,
                    run_id: &run_id,
                });
            }
            return self.wait(h.duration).await;
        }
        let (check, measured) = match &h.retry_check {
            Some(rc) => {
                // Requests sent under the previous route configuration finish first:
                // their retries would count against the new policy.
                let settle = RETRY_SETTLE.min(h.duration / 2);
                self.wait(settle).await?;
                (Some(self.retry_inputs(rc).await?), h.duration - settle)
            }
            None => (None, h.duration),
        };
        let mut rec = self
            .measure(
                PhaseKind::Hold,
                step.label.clone(),
                Some(step.index),
                measured,
                &h.expect,
                None,
            )
            .await?;
        if let Some((policy, p, retried, cluster)) = check {
            let v = self.retry_validation(&rec, &policy, p, retried, cluster.as_deref());
            // The retry check is judged even when the SLOs are not (`expect: ignore`).
            rec.verdict_text = match rec.verdict {
                Some(_) => format!("{}; retries: {}", rec.verdict_text, v.detail),
                None => format!("retries: {}", v.detail),
            };
            rec.verdict = Some(match rec.verdict {
                Some(x) => combine_v(x, v.verdict),
                None => v.verdict,
            });
            rec.retry_check = Some(v);
        }
        self.record_phase(rec);
        Ok(())
    }

    /// The retry policy, failure probability and whether it is retried, and the
    /// Envoy cluster of the retrying hop (mesh), read when a hold starts.
    async fn retry_inputs(
        &mut self,
        rc: &super::model::RetryCheck,
    ) -> Result<(RetryPolicy, f64, bool, Option<String>), Halt> {
        let vs = self
            .target
            .current(&rc.vs.name, rc.vs.namespace.as_deref())
            .await
            .map_err(|e| {
                Halt::End(Ending::TargetError {
                    message: e.to_string(),
                })
            })?;
        let http = vs
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let route = rc
            .selector
            .select(&http)
            .first()
            .and_then(|i| http.get(*i).cloned())
            .unwrap_or(Value::Null);
        let policy = RetryPolicy::of_route(&route);
        let (p, retried) = match &rc.failure {
            FailureSource::Rate(p) => (*p, true),
            FailureSource::Upstream(up) => {
                let uv = self
                    .target
                    .current(&up.name, up.namespace.as_deref())
                    .await
                    .map_err(|e| {
                        Halt::End(Ending::TargetError {
                            message: e.to_string(),
                        })
                    })?;
                let abort = uv.pointer("/spec/http/0/fault/abort");
                let pct = abort
                    .and_then(|a| a.pointer("/percentage/value").or_else(|| a.get("percent")))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let status = abort
                    .and_then(|a| a.get("httpStatus"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u16;
                // A fault on the retrying hop itself is not retried (istio#13705).
                let same_hop = up.name == rc.vs.name;
                (pct / 100.0, !same_hop && policy.retries_status(status))
            }
        };
        let cluster = match self.target {
            Target::Mesh(m) => m
                .spec()
                .ok()
                .and_then(|spec| crate::mesh::translate::route_cluster(&spec, &vs, &route)),
            _ => None,
        };
        Ok((policy, p, retried, cluster))
    }

    fn retry_validation(
        &self,
        rec: &PhaseRecord,
        policy: &RetryPolicy,
        p: f64,
        retried: bool,
        cluster: Option<&str>,
    ) -> RetryValidation {
        let ok: u64 = rec
            .summary
            .status_codes
            .iter()
            .filter(|(k, _)| k.parse::<u16>().is_ok_and(|c| (200..400).contains(&c)))
            .map(|(_, n)| *n)
            .sum();
        let mut m = RetryMeasurement {
            requests: rec.summary.requests,
            succeeded: ok,
            ..RetryMeasurement::default()
        };
        if let (Some(mesh), Some(cluster)) = (&rec.mesh, cluster)
            && let Some(c) = mesh
                .get("clusters")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|c| c.get("name").and_then(Value::as_str) == Some(cluster))
                })
        {
            let n = |k: &str| c.get(k).and_then(Value::as_u64);
            if let (Some(total), Some(retries)) = (n("upstream_requests"), n("retries")) {
                m.downstream = Some(total.saturating_sub(retries));
                m.upstream_attempts = Some(total);
                m.retries = Some(retries);
            }
            m.retry_overflow = n("retry_overflow");
        }
        slo::retry::validate(policy, p, retried, &m)
    }

    // === floods ===

    fn start_flood(&mut self, f: &Flood) -> Result<FloodRun, Halt> {
        let config = self
            .load_config(&f.load, Self::rate_of(&f.load), Stop::Duration(f.duration))
            .map_err(Halt::End)?;
        let collector = Arc::new(Mutex::new(Collector::new(true, f.slos.clone(), Vec::new())));
        let id = collector
            .lock()
            .map(|mut c| c.open_phase(Duration::ZERO))
            .unwrap_or(0);
        let c2 = collector.clone();
        let stop = self.method.child();
        let handle = load::spawn(config, stop.clone(), move |snap| {
            if let Ok(mut c) = c2.lock() {
                c.on_snapshot(snap);
            }
        });
        Ok(FloodRun {
            handle,
            collector,
            id,
            url: self.resolve_url(&f.load.url),
            stop,
        })
    }

    async fn finish_flood(
        &mut self,
        fr: FloodRun,
        f: Option<&Flood>,
    ) -> super::journal::FloodRecord {
        fr.stop.cancel();
        let _ = fr.handle.await;
        let (measured, series) = match fr.collector.lock() {
            Ok(mut c) => {
                c.finish();
                (c.take_phase(fr.id), std::mem::take(&mut c.series))
            }
            Err(_) => (None, Vec::new()),
        };
        let conf = self.s.confidence;
        let slos = match (&measured, f) {
            (Some(m), Some(f)) => f
                .slos
                .iter()
                .map(|o| slo::evaluate(o, &m.window(), conf))
                .collect(),
            _ => Vec::new(),
        };
        super::journal::FloodRecord {
            url: fr.url,
            summary: measured
                .as_ref()
                .map(|m| summarize(&m.data, m.duration, m.asked_rps))
                .unwrap_or_default(),
            slos,
            series,
        }
    }

    // === dry run ===

    async fn dry_run(&mut self) -> Ending {
        if let Some(l) = &self.s.load {
            self.obs.event(Event::Plan(format!(
                "load: {} {}{} over {} connection(s), timeout {}",
                l.method,
                self.resolve_url(&l.url),
                l.rate
                    .map(|r| format!(" at {r} req/s"))
                    .unwrap_or_else(|| " closed loop".into()),
                l.connections,
                human(l.timeout)
            )));
        }
        for o in &self.s.slos {
            self.obs
                .event(Event::Plan(format!("slo {}: {}", o.name, o.describe())));
        }
        if let Some(ss) = self.s.steady_state {
            self.obs.event(Event::Plan(format!(
                "steady state: {} {}{}",
                human(ss.duration),
                if ss.before { "before" } else { "" },
                if ss.after {
                    " and after the method"
                } else {
                    ""
                }
            )));
        }
        let mut store: BTreeMap<(String, Option<String>), Value> = BTreeMap::new();
        for step in &self.s.method {
            match &step.kind {
                StepKind::Change {
                    vs,
                    selector,
                    change,
                } => {
                    if let Err(e) = self
                        .plan_step(step, vs, selector, Some(change), &mut store)
                        .await
                    {
                        return e;
                    }
                }
                StepKind::Clear { vs } => {
                    if let Err(e) = self
                        .plan_step(step, vs, &RouteSelector::All, None, &mut store)
                        .await
                    {
                        return e;
                    }
                }
                _ => self
                    .obs
                    .event(Event::Plan(format!("{}. {}", step.index + 1, step.label))),
            }
        }
        for c in &self.s.stop_conditions {
            self.obs.event(Event::Plan(format!(
                "stop condition: {} {} for {} s",
                c.slo, c.text, c.intervals
            )));
        }
        for step in &self.s.rollbacks {
            self.obs
                .event(Event::Plan(format!("rollback: {}", step.label)));
        }
        let own: Vec<String> = store
            .iter()
            .filter(|(_, v)| matches!(crate::istio::read_record(v), Ok(Some(_))))
            .map(|((n, _), _)| n.clone())
            .collect();
        if !own.is_empty() {
            self.obs.event(Event::Plan(format!(
                "then meshdrill restores what it changed: {}",
                own.join(", ")
            )));
        }
        Ending::DryRun
    }

    async fn plan_step(
        &mut self,
        step: &Step,
        vs: &VsRef,
        selector: &RouteSelector,
        change: Option<&Change>,
        store: &mut BTreeMap<(String, Option<String>), Value>,
    ) -> Result<(), Ending> {
        let key = (vs.name.clone(), vs.namespace.clone());
        let obj = match store.get(&key) {
            Some(o) => o.clone(),
            None => self
                .target
                .current(&vs.name, vs.namespace.as_deref())
                .await
                .map_err(|e| {
                    if e.is_input() {
                        Ending::InputError {
                            message: format!("{}: {e}", step.at),
                        }
                    } else {
                        Ending::TargetError {
                            message: e.to_string(),
                        }
                    }
                })?,
        };
        let planned = match change {
            Some(c) => crate::istio::plan_change(&obj, selector, c, &self.meta)
                .map(|p| (p.after, p.patch, p.routes, p.warnings, Some(p.record))),
            None => crate::istio::plan_clear(&obj).map(|p| match p {
                Some(p) => (p.after, p.patch, Vec::new(), Vec::new(), Some(p.record)),
                None => (
                    obj.clone(),
                    json_patch::Patch(Vec::new()),
                    Vec::new(),
                    Vec::new(),
                    None,
                ),
            }),
        };
        let (after, patch, routes, warnings, record) = planned.map_err(|e| Ending::InputError {
            message: format!("{}: {e}", step.at),
        })?;
        let changed = Changed {
            namespace: vs
                .namespace
                .clone()
                .or_else(|| self.target.default_namespace().map(str::to_string))
                .unwrap_or_else(|| crate::mesh::control::vs_namespace(&obj).to_string()),
            object: after.clone(),
            patch,
            routes,
            warnings,
            record,
            applied: false,
            envoy: None,
        };
        self.obs.event(Event::Planned {
            step,
            vs: &vs.name,
            changed: &changed,
        });
        store.insert(key, after);
        Ok(())
    }

    // === the end ===

    async fn rollback(&mut self, ending: &Ending, deviated: bool) -> Option<Ending> {
        let signalled = self.cancel.signal().is_some();
        let expires = self
            .meta
            .now
            .checked_add(
                jiff::SignedDuration::try_from(self.meta.ttl).unwrap_or(jiff::SignedDuration::ZERO),
            )
            .unwrap_or(self.meta.now);
        let hint = format!(
            "rolling back; press Ctrl-C again to abandon (the change stays until {}; `meshdrill recover` removes it)",
            expires.strftime("%Y-%m-%dT%H:%M:%SZ")
        );
        let user = match self.opts.rollback_strategy {
            RollbackStrategy::Always => true,
            RollbackStrategy::Deviated => deviated,
            RollbackStrategy::Never => false,
        };
        let has_work = (user && !self.s.rollbacks.is_empty())
            || !self.touched.is_empty()
            || !self.killed.is_empty();
        if !has_work || matches!(ending, Ending::DryRun) {
            return None;
        }
        self.obs.event(Event::RollbackStarted {
            signalled,
            hint: hint.clone(),
        });
        let cancel = self.cancel;
        let tgt = self.target;
        let meta = self.meta.clone();
        let mut seen = cancel.count();
        // After a signal, the next one abandons; after none, the first only warns.
        let mut warned = signalled;
        let mut failed: Vec<String> = Vec::new();
        // The actions, in order: the scenario's rollbacks, then restarts of killed
        // replicas, then every VirtualService meshdrill changed (last changed first).
        let mut actions: Vec<Action> = Vec::new();
        if user {
            for st in &self.s.rollbacks {
                actions.push(Action::Step(st));
            }
        }
        for (svc, r) in self.killed.clone() {
            actions.push(Action::Restart(svc, r));
        }
        for t in self.touched.clone().into_iter().rev() {
            actions.push(Action::Clear(t));
        }
        for a in actions {
            let label = a.label();
            let fut = rollback_one(tgt, &meta, &a);
            tokio::pin!(fut);
            let outcome = loop {
                tokio::select! {
                    r = &mut fut => break Some(r),
                    () = cancel.cancelled_after(seen) => {
                        seen = cancel.count();
                        if warned {
                            break None;
                        }
                        warned = true;
                        self.obs.event(Event::RollbackSignal { hint: hint.clone() });
                    }
                }
            };
            let Some((ok, outcome, patch, cleared)) = outcome else {
                let rec = RollbackRecord {
                    action: label,
                    at_s: secs(self.now()),
                    outcome: "abandoned".into(),
                    patch: Value::Null,
                    ok: false,
                };
                self.obs.event(Event::RolledBack {
                    record: &rec,
                    cleared: None,
                });
                self.rollbacks.push(rec);
                return Some(Ending::RollbackAbandoned {
                    signal: cancel.reason().map_or("a signal", |r| r.name()).to_string(),
                });
            };
            let rec = RollbackRecord {
                action: label.clone(),
                at_s: secs(self.now()),
                outcome: outcome.clone(),
                patch,
                ok,
            };
            self.obs.event(Event::RolledBack {
                record: &rec,
                cleared: cleared.as_ref(),
            });
            self.rollbacks.push(rec);
            if !ok {
                failed.push(format!("{label}: {outcome}"));
            }
        }
        if failed.is_empty() {
            None
        } else {
            Some(Ending::RollbackFailed {
                message: failed.join("; "),
            })
        }
    }

    async fn finish(mut self, ending: Ending) -> Journal {
        let verdict_before = self.verdict(&ending);
        let deviated = !matches!(verdict_before.0, DrillVerdict::Held);
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
        let recovery = self.recovery(&ending);
        let ending = match (rb, ending) {
            (Some(Ending::RollbackFailed { message }), e) => Ending::RollbackFailed {
                message: format!("{}, but the rollback failed: {message}", ending_text(&e)),
            },
            (Some(rb), _) => rb,
            (None, e) => e,
        };
        let (mut verdict, mut text) = self.verdict(&ending);
        if matches!(ending, Ending::Completed) {
            for r in &recovery {
                match r.verdict {
                    Verdict::Fail => {
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
        let offset = self.load.as_ref().map_or(0.0, |l| secs(l.offset));
        let series: Vec<IntervalSummary> = self
            .collector
            .as_ref()
            .and_then(|c| c.lock().ok().map(|mut c| std::mem::take(&mut c.series)))
            .unwrap_or_default()
            .into_iter()
            .map(|mut i| {
                i.t += offset;
                i
            })
            .collect();
        let stop_condition = self
            .collector
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|c| c.fired().cloned()));
        let exit_code = Journal::exit_code_for(verdict, &ending);
        Journal {
            format: FORMAT,
            meshdrill: env!("CARGO_PKG_VERSION").into(),
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

    /// Recovery-time objectives over the series after the last recovery event.
    fn recovery(&self, ending: &Ending) -> Vec<SloResult> {
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
    fn verdict(&self, ending: &Ending) -> (DrillVerdict, String) {
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

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long a hold with a retry check waits before it measures (see `hold`).
const RETRY_SETTLE: Duration = Duration::from_secs(1);

/// Per SLO, its value in each second of a phase; and the requests of those seconds.
type IntervalValues = (BTreeMap<String, Vec<Option<f64>>>, u64);

/// One rollback action: (ok, outcome text, patch, what a clear found).
async fn rollback_one(
    tgt: &Target,
    meta: &RecordMeta,
    a: &Action<'_>,
) -> (bool, String, Value, Option<Cleared>) {
    match a {
        Action::Clear(t) => {
            match tgt
                .clear(&t.name, t.namespace.as_deref(), target::rollback_budget())
                .await
            {
                Ok(c) => {
                    let (text, patch) = match &c {
                        Cleared::Restored { patch, .. } => (
                            "restored".to_string(),
                            serde_json::to_value(patch).unwrap_or(Value::Null),
                        ),
                        Cleared::Nothing { .. } => ("nothing left to restore".into(), Value::Null),
                        Cleared::Gone => (
                            "gone (deleted meanwhile): nothing to restore".into(),
                            Value::Null,
                        ),
                    };
                    (true, text, patch, Some(c))
                }
                Err(e) => (false, format!("failed: {e}"), Value::Null, None),
            }
        }
        Action::Restart(svc, r) => match tgt {
            Target::Mesh(m) => match m.restart(svc, *r).await {
                Ok(d) => (
                    true,
                    format!("restarted replica(s) {d:?}"),
                    Value::Null,
                    None,
                ),
                Err(e) => (false, format!("failed: {e}"), Value::Null, None),
            },
            _ => (true, "nothing to do".into(), Value::Null, None),
        },
        Action::Step(st) => match &st.kind {
            StepKind::Clear { vs } => match tgt
                .clear(&vs.name, vs.namespace.as_deref(), target::rollback_budget())
                .await
            {
                Ok(_) => (true, "done".into(), Value::Null, None),
                Err(e) => (false, format!("failed: {e}"), Value::Null, None),
            },
            StepKind::Restart { service, replica } => match tgt {
                Target::Mesh(m) => match m.restart(service, *replica).await {
                    Ok(_) => (true, "done".into(), Value::Null, None),
                    Err(e) => (false, format!("failed: {e}"), Value::Null, None),
                },
                _ => (
                    false,
                    "restart is for the local mesh".into(),
                    Value::Null,
                    None,
                ),
            },
            StepKind::Pause(d) => {
                tokio::time::sleep(*d).await;
                (true, "done".into(), Value::Null, None)
            }
            StepKind::Change {
                vs,
                selector,
                change,
            } => match tgt
                .apply(
                    &vs.name,
                    vs.namespace.as_deref(),
                    selector,
                    Some(change),
                    meta,
                    None,
                )
                .await
            {
                Ok(_) => (true, "done".into(), Value::Null, None),
                Err(e) => (false, format!("failed: {e}"), Value::Null, None),
            },
            _ => (false, "not a rollback step".into(), Value::Null, None),
        },
    }
}

/// One rollback action.
enum Action<'s> {
    Step(&'s Step),
    Restart(String, Option<usize>),
    Clear(Touched),
}

impl Action<'_> {
    fn label(&self) -> String {
        match self {
            Action::Step(s) => s.label.clone(),
            Action::Restart(svc, Some(r)) => format!("restart {svc} replica {r}"),
            Action::Restart(svc, None) => format!("restart {svc}"),
            Action::Clear(t) => match &t.namespace {
                Some(ns) => format!("clear {ns}/{}", t.name),
                None => format!("clear {}", t.name),
            },
        }
    }
}

struct FloodRun {
    handle: tokio::task::JoinHandle<Result<LoadReport, load::LoadError>>,
    collector: Arc<Mutex<Collector>>,
    id: usize,
    url: String,
    stop: Cancel,
}

fn forward(
    c: &Arc<Mutex<Collector>>,
    snap: &load::IntervalSnapshot,
    tx: &UnboundedSender<IntervalSummary>,
) {
    let Ok(mut c) = c.lock() else {
        return;
    };
    let before = c.series.len();
    c.on_snapshot(snap);
    for i in c.series.iter().skip(before) {
        let _ = tx.send(i.clone());
    }
}

/// `5s`, `1m30s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

fn expect_text(e: &Expect) -> String {
    match e {
        Expect::Hold => "hold".into(),
        Expect::Breach { slos } if slos.is_empty() => "breach".into(),
        Expect::Breach { slos } => format!("breach: {}", slos.join(", ")),
        Expect::Ignore => "ignore".into(),
    }
}

fn combine_v(a: Verdict, b: Verdict) -> Verdict {
    match (a, b) {
        (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
        (Verdict::Inconclusive, _) | (_, Verdict::Inconclusive) => Verdict::Inconclusive,
        _ => Verdict::Pass,
    }
}

fn combine(a: Option<Verdict>, b: Option<Verdict>) -> Option<Verdict> {
    match (a, b) {
        (Some(a), Some(b)) => Some(combine_v(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn miss(r: &SloResult) -> String {
    format!("{} {} (objective {})", r.name, r.measured_text, r.objective)
}

/// A phase's verdict against its expectation, and why.
fn expectation(e: &Expect, slos: &[SloResult]) -> (Option<Verdict>, String) {
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
        Expect::Breach { slos: names } => {
            let chosen: Vec<&SloResult> = slos
                .iter()
                .filter(|r| names.is_empty() || names.contains(&r.name))
                .collect();
            let broke: Vec<String> = chosen
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .map(|r| miss(r))
                .collect();
            let held: Vec<String> = chosen
                .iter()
                .filter(|r| r.verdict == Verdict::Pass)
                .map(|r| miss(r))
                .collect();
            let all_named_broke = !names.is_empty() && broke.len() == chosen.len();
            if (names.is_empty() && !broke.is_empty()) || all_named_broke {
                (
                    Some(Verdict::Pass),
                    format!("breached as expected: {}", broke.join("; ")),
                )
            } else if (names.is_empty() && held.len() == chosen.len())
                || (!names.is_empty() && !held.is_empty())
            {
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
    }
}

fn ending_text(e: &Ending) -> String {
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

/// What `{ingress}` means for a scenario's target given on the command line.
pub fn target_ingress(t: &TargetSpec) -> Option<String> {
    match t {
        TargetSpec::Cluster { ingress, .. } => ingress.clone(),
        TargetSpec::Mesh { .. } => None,
    }
}
