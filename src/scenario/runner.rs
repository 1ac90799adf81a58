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

use super::collect::{Collector, FINE, Measured, PhaseHistograms, summarize};
use super::journal::{
    ChangeRecord, Ending, IntervalSummary, Journal, PhaseKind, PhaseRecord, RollbackRecord,
    StepRecord,
};
use super::model::{Expect, Flood, LoadSpec, Scenario, Step, StepKind};
use super::verdict::{combine, ending_text, expect_text, expectation, planned_length};
use crate::cancel::Cancel;
use crate::istio::{RecordMeta, RouteSelector};
use crate::load::{self, LoadConfig, LoadReport, Rate, Stop};
use crate::slo::{self, Metric, SloResult, Verdict};
use crate::target::{Changed, Cleared, Kind, Target};

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
    /// Refuse to start on a VirtualService that carries another drill (`run`,
    /// `demo`); `fault --wait` stacks on one, as a one-shot `fault` does.
    pub exclusive: bool,
    /// Each phase's latency histograms, second by second (`--hist-log`).
    pub histograms: Option<Arc<dyn PhaseHistograms>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            rollback_strategy: RollbackStrategy::Always,
            ttl: None,
            ingress: None,
            exclusive: true,
            histograms: None,
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

/// Why the method stopped early.
pub(super) enum Halt {
    /// The method's token was cancelled (a signal or a stop condition).
    Cancelled,
    /// A step ended the run.
    End(Ending),
}

/// A VirtualService meshdrill changed, in the order first changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Touched {
    pub(super) name: String,
    pub(super) namespace: Option<String>,
}

/// The background load, running.
pub(super) struct Running {
    pub(super) handle: tokio::task::JoinHandle<Result<LoadReport, load::LoadError>>,
    pub(super) stop: Cancel,
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
    pub(super) s: &'a Scenario,
    pub(super) target: &'a Target,
    pub(super) opts: &'a RunOptions,
    pub(super) cancel: &'a Cancel,
    /// Cancelled by a signal (through `cancel`) or a stop condition.
    pub(super) method: Cancel,
    pub(super) obs: &'a mut dyn Observer,
    pub(super) t0: Instant,
    pub(super) started: jiff::Timestamp,
    pub(super) meta: RecordMeta,
    pub(super) ingress: Option<String>,
    pub(super) collector: Option<Arc<Mutex<Collector>>>,
    pub(super) intervals: Option<UnboundedReceiver<IntervalSummary>>,
    pub(super) load: Option<Running>,
    pub(super) load_json: Option<Value>,
    pub(super) touched: Vec<Touched>,
    pub(super) killed: Vec<(String, Option<usize>)>,
    pub(super) last_recovery: Option<Duration>,
    pub(super) method_done_at: Option<Duration>,
    pub(super) anything_changed: bool,
    /// The method started (the steady state before held, or there was none).
    pub(super) method_began: bool,
    /// The slowest request of the method's phases (failed ones included).
    pub(super) slowest: Duration,
    /// A flood ran (its load on the target outlives its step by up to its timeout).
    pub(super) flooded: bool,
    pub(super) steps: Vec<StepRecord>,
    pub(super) phases: Vec<PhaseRecord>,
    pub(super) changes: Vec<ChangeRecord>,
    pub(super) rollbacks: Vec<RollbackRecord>,
    pub(super) searches: Vec<super::journal::SearchRecord>,
    pub(super) warnings: Vec<String>,
    pub(super) retry_chains: Vec<String>,
    pub(super) versions: Value,
    /// Prometheus objectives' values per second of the series (judged phases only),
    /// merged into the journal's series at the end.
    pub(super) prom_series: BTreeMap<u64, BTreeMap<String, Option<f64>>>,
}

pub(super) fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl<'a> Runner<'a> {
    pub(super) fn new(
        s: &'a Scenario,
        target: &'a Target,
        opts: &'a RunOptions,
        cancel: &'a Cancel,
        obs: &'a mut dyn Observer,
    ) -> Self {
        let ttl = opts
            .ttl
            .unwrap_or_else(|| planned_length(s) + Duration::from_secs(300));
        let owner = crate::istio::Owner::current();
        let meta = RecordMeta {
            run_id: crate::istio::new_run_id(),
            owner,
            now: jiff::Timestamp::now(),
            ttl,
            // As the preflight judges it: `run` stacks on no other drill, `fault --wait`
            // on a finished one only; checked again where the change is planned.
            stacking: if opts.exclusive {
                crate::istio::Stacking::Never
            } else {
                crate::istio::Stacking::OnFinished
            },
            force: false,
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
            method_began: false,
            slowest: Duration::ZERO,
            flooded: false,
            steps: Vec::new(),
            phases: Vec::new(),
            changes: Vec::new(),
            rollbacks: Vec::new(),
            searches: Vec::new(),
            warnings: Vec::new(),
            retry_chains: Vec::new(),
            prom_series: BTreeMap::new(),
            versions: json!({
                "meshdrill": env!("CARGO_PKG_VERSION"),
                "scenario": super::model::API_VERSION,
            }),
        }
    }

    pub(super) fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The run's ending when the method's token was cancelled.
    pub(super) fn halted(&self) -> Ending {
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

    pub(super) async fn drive(&mut self) -> Ending {
        self.obs.event(Event::Started {
            scenario: &self.s.name,
            target: self.target.label(),
        });
        if let Target::Mesh(m) = self.target {
            // What the translation could not do as istiod would (a mesh started here).
            for w in m.warnings() {
                self.obs.event(Event::Warning(w.clone()));
                self.warnings.push(w);
            }
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
        if let Err(m) = self.check_target() {
            return Ending::InputError { message: m };
        }
        match self.target {
            Target::Mesh(m) => {
                if let Some(v) = m.envoy_version().await {
                    self.versions["envoy"] = json!(v);
                }
            }
            Target::Cluster(c) => {
                self.versions["virtualServiceApi"] =
                    json!(format!("{}/{}", crate::cluster::GROUP, c.api.version))
            }
            Target::File(_) => {}
        }
        if self.opts.dry_run {
            return self.dry_run().await;
        }
        // Before anything changes: every Prometheus objective answers one value.
        if let Err(e) = self.check_prometheus().await {
            return e;
        }
        if let Err(e) = self.preflight(self.opts.exclusive).await {
            return e;
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
        // A signal during the preflight or start-up: the method never begins.
        if self.method.is_cancelled() {
            return self.halted();
        }
        self.method_began = true;
        if let Some(c) = &self.collector
            && let Ok(mut c) = c.lock()
        {
            c.arm(self.method.clone());
        }
        let method = self.method_steps().await;
        self.method_done_at = Some(self.now());
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
            // Requests sent while the fault was on finish (or time out) first: they are
            // the method's, not the steady state's.
            // How long: as long as a request may take (its timeout) once anything was
            // changed or flooded — requests still in flight at the method's end are
            // not seen anywhere yet — else the slowest the method saw.
            let timeout = self.s.load.as_ref().map_or(Duration::ZERO, |l| l.timeout);
            let drain = if self.anything_changed || self.flooded {
                timeout
            } else {
                self.slowest.min(timeout)
            };
            if drain >= Duration::from_millis(100) {
                self.obs.event(Event::Plan(format!(
                    "letting the requests sent during the method finish ({}) before the steady state after",
                    human(Duration::from_millis(drain.as_millis().div_ceil(100) as u64 * 100))
                )));
                if let Err(h) = self.wait(drain).await {
                    return match h {
                        Halt::Cancelled => self.halted(),
                        Halt::End(e) => e,
                    };
                }
            }
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
    pub(super) fn check_target(&self) -> Result<(), String> {
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
        // Every load of the drill (background, floods, flood searches): one that names
        // {ingress} needs one, and each must make a valid configuration — checked now,
        // not when its step comes.
        let floods = self.s.method.iter().filter_map(|st| match &st.kind {
            StepKind::Flood(f) => Some(&f.load),
            StepKind::Search(x) => match &x.over {
                super::model::SearchOver::FloodRate { load } => Some(load),
                _ => None,
            },
            _ => None,
        });
        for l in self.s.load.iter().chain(floods) {
            if l.url.contains("{ingress}") && self.ingress.is_none() && kind == Kind::Cluster {
                return Err(format!(
                    "{}: the load URL uses {{ingress}}, but the cluster target has no ingress: set spec.target.cluster.ingress or pass --ingress HOST:PORT",
                    l.at
                ));
            }
            if !l.url.contains("{ingress}") || self.ingress.is_some() {
                let rate = l.rate.map_or(Rate::Max, Rate::Fixed);
                if let Err(Ending::InputError { message }) =
                    self.load_config(l, rate, Stop::Duration(DAY))
                {
                    return Err(message);
                }
            }
        }
        Ok(())
    }

    pub(super) fn resolve_url(&self, url: &str) -> String {
        match &self.ingress {
            Some(i) => url.replace("{ingress}", i),
            None => url.to_string(),
        }
    }

    pub(super) fn load_config(
        &self,
        l: &LoadSpec,
        rate: Rate,
        stop: Stop,
    ) -> Result<LoadConfig, Ending> {
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

    pub(super) fn rate_of(l: &LoadSpec) -> Rate {
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

    pub(super) fn start_load(&mut self, l: &LoadSpec) -> Result<(), Ending> {
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
        if let Some(h) = &self.opts.histograms {
            h.begin(std::time::SystemTime::from(self.started));
        }
        let collector = Arc::new(Mutex::new(
            Collector::new(self.t0, l.rate.is_some(), self.s.slos.clone(), stops)
                .with_sink(self.opts.histograms.clone()),
        ));
        let c2 = collector.clone();
        let stop = self.cancel.child();
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
        self.load = Some(Running { handle, stop });
        Ok(())
    }

    /// Waits `d` (forwarding interval events); `Err` when the method's token is
    /// cancelled first.
    pub(super) async fn wait(&mut self, d: Duration) -> Result<(), Halt> {
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
    pub(super) async fn settle(&mut self, at: Duration) {
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

    pub(super) async fn mesh_stats(&self) -> Option<crate::mesh::MeshStats> {
        match self.target {
            Target::Mesh(m) if self.load.is_some() => m.stats().await.ok(),
            _ => None,
        }
    }

    /// Measures a phase of `d` and judges it against `expect`. Returns the verdict
    /// (`None`: not judged).
    pub(super) async fn phase(
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
    pub(super) async fn measure(
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
        let quiet = matches!(expect, Expect::Breach { .. }) || kind == PhaseKind::SearchProbe;
        let before = self.mesh_stats().await;
        let start = self.now();
        let flood_run = match flood {
            Some(f) => Some(self.start_flood(f)?),
            None => None,
        };
        let id = self.collector.as_ref().and_then(|c| {
            c.lock().ok().map(|mut c| {
                if quiet {
                    c.quiet_from(start);
                }
                c.open_phase(start, &name)
            })
        });
        let waited = self.wait(d).await;
        let mut end = self.now();
        if let (Some(id), Some(c)) = (id, &self.collector)
            && let Ok(mut c) = c.lock()
        {
            // Under the lock: no snapshot ending after `end` slips in meanwhile.
            end = self.t0.elapsed();
            c.end_phase(id, end);
        }
        let flood_rec = match flood_run {
            Some(fr) => {
                self.flooded = true;
                Some(self.finish_flood(fr, flood, waited.is_err()).await?)
            }
            None => None,
        };
        // The step's own requests (a flood's too) may complete up to a timeout after
        // it: stop conditions stay quiet until then.
        if quiet
            && let Some(c) = &self.collector
            && let Ok(mut c) = c.lock()
        {
            let drain = self.s.load.as_ref().map_or(Duration::ZERO, |l| l.timeout);
            c.quiet_until(self.t0.elapsed() + drain);
        }
        if waited.is_ok() {
            self.settle(end).await;
        }
        if let Some(e) = self.load_failed().await {
            return Err(Halt::End(Ending::TargetError {
                message: format!("the background load stopped: {e}"),
            }));
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
        let mut interval_values = self.interval_values(start, end);
        if waited.is_ok() {
            // Prometheus objectives: their points replace the (empty) load values.
            let points = self
                .prometheus_points(start, end)
                .await
                .map_err(Halt::End)?;
            interval_values.0.extend(points);
        }
        let mut rec = self.judge(
            kind,
            name,
            step,
            (secs(start), secs(end)),
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

    /// Why the background load stopped, if it did (it runs until the drill stops it:
    /// an early end is a failure, e.g. its host does not resolve).
    pub(super) async fn load_failed(&mut self) -> Option<String> {
        // Stopped on purpose (the drill's end, a signal): not a failure.
        if !self
            .load
            .as_ref()
            .is_some_and(|l| l.handle.is_finished() && !l.stop.is_cancelled())
        {
            return None;
        }
        let l = self.load.take()?;
        Some(match l.handle.await {
            Ok(Ok(_)) => "it ended before the drill did".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        })
    }

    /// Reports a judged phase and keeps it.
    pub(super) fn record_phase(&mut self, rec: PhaseRecord) -> Option<Verdict> {
        if !matches!(
            rec.kind,
            PhaseKind::SteadyStateBefore | PhaseKind::SteadyStateAfter
        ) && let Some(max) = rec.summary.latency_ms.max
        {
            self.slowest = self.slowest.max(Duration::from_secs_f64(max / 1000.0));
        }
        self.obs.event(Event::PhaseEnded(&rec));
        let v = rec.verdict;
        self.phases.push(rec);
        v
    }

    /// Each SLO's point values in the seconds wholly inside `[start, end)` (load
    /// clock), and the requests of those seconds.
    pub(super) fn interval_values(&self, start: Duration, end: Duration) -> IntervalValues {
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
    pub(super) fn judge(
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
                    _ if o.prometheus().is_some() => slo::evaluate_points(
                        o,
                        intervals.get(&o.name).map_or(&[][..], Vec::as_slice),
                        conf,
                    ),
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

    pub(super) async fn method_steps(&mut self) -> Result<(), Halt> {
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

    pub(super) async fn step(&mut self, step: &Step) -> Result<(), Halt> {
        match &step.kind {
            StepKind::Change {
                vs,
                selector,
                change,
            } => self.change(step, vs, selector, Some(change)).await,
            StepKind::Clear { vs } => {
                self.change(step, vs, &RouteSelector::All, None).await?;
                self.last_recovery = Some(self.now());
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
                self.last_recovery = Some(self.now());
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
                // Recovery counts from the end of the flood, not of its drain.
                self.last_recovery = Some(Duration::from_secs_f64(rec.end_s));
                self.record_phase(rec);
                Ok(())
            }
            StepKind::Search(x) => self.search(step, x).await,
        }
    }

    pub(super) fn slo_names(&self) -> Vec<String> {
        self.s
            .slos
            .iter()
            .filter(|o| !matches!(o.metric, Metric::RecoveryTime { .. }))
            .map(|o| o.describe())
            .collect()
    }
}

pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long a hold with a retry check waits before it measures (see `hold`).
pub(super) const RETRY_SETTLE: Duration = Duration::from_secs(1);

/// Per SLO, its value in each second of a phase; and the requests of those seconds.
pub(super) type IntervalValues = (BTreeMap<String, Vec<Option<f64>>>, u64);

pub(super) fn forward(
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
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}
