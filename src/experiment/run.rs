//! Runs an [`Experiment`] with chaostoolkit's order — steady state before, method,
//! steady state after, rollbacks — and meshdrill's guarantees on top: a failed action
//! fails the run, a steady state that does not hold before the method injects
//! nothing, and at the end every change meshdrill made is undone (unless the user
//! asked to keep it), whatever the rollbacks did.
//!
//! What it owns: the run order, each provider's execution on the target, the journal.
//! What it must not do: print (events go to an [`Observer`]), or read files.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};

use super::http::{self, HttpRequest};
use super::journal::*;
use super::model::*;
use super::pods::{self, Deployment, Pod, Selector};
use super::tolerance::{self, Checked};
use crate::cancel::Cancel;
use crate::istio::{Change, RecordMeta, read_record};
use crate::target::{Cleared, Target, rollback_budget};

/// How the run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub rollback_strategy: RollbackStrategy,
    pub hypothesis_strategy: HypothesisStrategy,
    /// How often the hypothesis is checked during the method.
    pub hypothesis_frequency: Duration,
    /// The first miss during the method fails the run.
    pub fail_fast: bool,
    /// Leave meshdrill's changes in place at the end.
    pub keep_faults: bool,
    /// Expiry of every change's drill record.
    pub ttl: Duration,
}

/// How the run ended, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The steady state held (0).
    Held,
    /// The steady state did not hold before the method (nothing injected), or deviated
    /// after it, or missed during it with --fail-fast (1).
    NotMet,
    /// An action failed, or the clean-up could not undo a change (3).
    Failed,
    /// Ctrl-C / SIGTERM; rolled back (130).
    Interrupted,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Held => 0,
            Exit::NotMet => 1,
            Exit::Failed => 3,
            Exit::Interrupted => 130,
        }
    }
}

/// What the runner tells the command while it works.
#[derive(Debug)]
pub enum Event<'a> {
    /// A section starts: `steady state before: TITLE`, `method`, `rollbacks`, …
    Section(String),
    /// An activity finished.
    Done {
        kind: Kind,
        name: &'a str,
        record: &'a RunRecord,
        /// One line: the output in brief, or why it failed.
        summary: String,
    },
    /// A one-line note (where meshdrill differs from chaostoolkit, what it undid).
    Note(&'a str),
}

pub trait Observer {
    fn event(&mut self, e: Event<'_>);
}

/// Runs `exp` on `target` (`None`: only http/process activities, nothing to change).
pub async fn run(
    exp: &Experiment,
    target: Option<&Target>,
    opts: &RunOptions,
    cancel: &Cancel,
    obs: &mut dyn Observer,
) -> (Journal, Exit) {
    let started = jiff::Timestamp::now();
    let t0 = Instant::now();
    let r = Runner {
        exp,
        target,
        opts,
        run_id: crate::istio::new_run_id(),
        owner: crate::istio::Owner::current(),
        shared: Mutex::new(Shared::default()),
    };
    for n in &exp.notes {
        r.note(n);
    }
    r.flush(obs);
    let mut steady = SteadyStates::default();
    let mut runs = Vec::new();
    let mut status = Status::Completed;
    let mut deviated = false;
    let mut exit = Exit::Held;
    let mut verdict = String::new();

    // 1. The steady state before: nothing is injected when it does not hold.
    let mut gate_ok = true;
    if let Some(h) = &exp.hypothesis
        && opts.hypothesis_strategy.before()
    {
        obs.event(Event::Section(format!("steady state before: {}", h.title)));
        match r.hypothesis(h, cancel, obs).await {
            Checked2::Met(s) => steady.before = Some(s),
            Checked2::NotMet(s, raised) => {
                steady.before = Some(s);
                gate_ok = false;
                status = if raised {
                    Status::Failed
                } else {
                    Status::Completed
                };
                exit = Exit::NotMet;
                verdict =
                    "the steady state did not hold before the method: nothing was injected".into();
            }
            Checked2::Interrupted(s) => {
                steady.before = Some(s);
                gate_ok = false;
                status = Status::Interrupted;
                exit = Exit::Interrupted;
                verdict = "interrupted before the method: nothing was injected".into();
            }
        }
    }

    // 2. The method (with the hypothesis checked alongside when asked).
    if gate_ok {
        obs.event(Event::Section("method".into()));
        let method_cancel = cancel.child();
        let (outcome, during) = r.method(&method_cancel, cancel, &mut runs, obs).await;
        steady.during = during.states;
        match outcome {
            MethodEnd::Done => {}
            MethodEnd::ActionFailed(what) => {
                status = Status::Failed;
                exit = Exit::Failed;
                verdict = format!("{what}: the method stopped and everything was rolled back");
            }
            MethodEnd::Interrupted => {
                status = Status::Interrupted;
                exit = Exit::Interrupted;
                verdict = "interrupted during the method; rolled back".into();
            }
        }
        if during.failed_fast && exit == Exit::Held {
            status = Status::Failed;
            exit = Exit::NotMet;
            verdict = "the steady state did not hold during the method (--fail-fast)".into();
        }
        // 3. The steady state after.
        if exit == Exit::Held
            && let Some(h) = &exp.hypothesis
            && opts.hypothesis_strategy.after()
        {
            obs.event(Event::Section(format!("steady state after: {}", h.title)));
            match r.hypothesis(h, cancel, obs).await {
                Checked2::Met(s) => steady.after = Some(s),
                Checked2::NotMet(s, raised) => {
                    steady.after = Some(s);
                    deviated = true;
                    if raised {
                        status = Status::Failed;
                    }
                    exit = Exit::NotMet;
                    verdict = "the steady state deviated after the method".into();
                }
                Checked2::Interrupted(s) => {
                    steady.after = Some(s);
                    status = Status::Interrupted;
                    exit = Exit::Interrupted;
                    verdict = "interrupted while checking the steady state after".into();
                }
            }
        }
    }
    if exit == Exit::Held {
        verdict = match &exp.hypothesis {
            Some(_) => "the steady state held".into(),
            None => "the method ran (the experiment has no steady-state hypothesis)".into(),
        };
    }

    // 4. Rollbacks, by strategy; they are not cut short by a signal that already came.
    let play = match opts.rollback_strategy {
        RollbackStrategy::Always => true,
        RollbackStrategy::Never => false,
        RollbackStrategy::Deviated => deviated,
        RollbackStrategy::Default => !matches!(status, Status::Failed | Status::Interrupted),
    };
    let mut rollbacks = Vec::new();
    if !exp.rollbacks.is_empty() {
        if play {
            obs.event(Event::Section("rollbacks".into()));
            let rb_cancel = Cancel::new();
            for a in &exp.rollbacks {
                let (rec, fail) = r.exec(a, &rb_cancel, None).await;
                let summary = summary_of(a, &rec, fail.as_deref());
                obs.event(Event::Done {
                    kind: a.kind,
                    name: &a.name,
                    record: &rec,
                    summary,
                });
                r.flush(obs);
                if let Some(f) = fail
                    && a.kind == Kind::Action
                    && exit == Exit::Held
                {
                    exit = Exit::Failed;
                    verdict = format!("rollback {:?} failed: {f}", a.name);
                }
                rollbacks.push(rec);
            }
        } else {
            let why = format!(
                "rollbacks not played (strategy {}, run {})",
                strategy_name(opts.rollback_strategy),
                status_name(status)
            );
            r.note(&why);
            r.flush(obs);
        }
    }

    // 5. meshdrill's own clean-up: whatever is still changed is undone.
    let cleanup = r.cleanup(opts.keep_faults, obs).await;
    if let Err(e) = &cleanup
        && exit != Exit::Interrupted
    {
        exit = Exit::Failed;
        verdict = format!("{verdict}; the clean-up failed: {e}");
    }

    let sh = r
        .shared
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let end = jiff::Timestamp::now();
    let journal = Journal {
        chaoslib_version: format!("meshdrill {}", env!("CARGO_PKG_VERSION")),
        platform: platform(),
        node: crate::istio::Owner::current().host,
        experiment: exp.document.clone(),
        start: iso(started),
        end: iso(end),
        duration: t0.elapsed().as_secs_f64(),
        status,
        deviated,
        steady_states: steady,
        run: runs,
        rollbacks,
        meshdrill: Extra {
            version: env!("CARGO_PKG_VERSION").into(),
            target: target.map_or("none".into(), Target::label),
            rollback_strategy: strategy_name(opts.rollback_strategy).into(),
            hypothesis_strategy: format!("{:?}", opts.hypothesis_strategy),
            verdict,
            exit_code: exit.code(),
            notes: sh.notes,
            changes: sh.changes,
            cleanup: sh.cleanup,
            kept_faults: opts.keep_faults,
        },
    };
    (journal, exit)
}

pub fn strategy_name(s: RollbackStrategy) -> &'static str {
    match s {
        RollbackStrategy::Default => "default",
        RollbackStrategy::Always => "always",
        RollbackStrategy::Never => "never",
        RollbackStrategy::Deviated => "deviated",
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Aborted => "aborted",
        Status::Interrupted => "interrupted",
    }
}

/// What the runner shares between concurrent activities.
#[derive(Default)]
struct Shared {
    /// VirtualServices changed (name, namespace on the target; `None` on a mesh).
    touched: Vec<(String, Option<String>)>,
    /// Mesh replicas killed (service, index).
    killed: Vec<(String, usize)>,
    changes: Vec<ChangeLog>,
    notes: Vec<String>,
    /// Notes not yet shown.
    pending: Vec<String>,
    cleanup: Vec<String>,
}

struct Runner<'a> {
    exp: &'a Experiment,
    target: Option<&'a Target>,
    opts: &'a RunOptions,
    run_id: String,
    owner: crate::istio::Owner,
    shared: Mutex<Shared>,
}

enum Checked2 {
    Met(State),
    /// Not met; `true` when a probe raised (chaostoolkit's `failed`).
    NotMet(State, bool),
    Interrupted(State),
}

enum MethodEnd {
    Done,
    ActionFailed(String),
    Interrupted,
}

#[derive(Default)]
struct During {
    states: Vec<State>,
    failed_fast: bool,
}

type Boxed<'f> =
    Pin<Box<dyn std::future::Future<Output = (usize, RunRecord, Option<String>)> + 'f>>;

impl Runner<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note(&self, n: &str) {
        let mut sh = self.lock();
        sh.notes.push(n.to_string());
        sh.pending.push(n.to_string());
    }

    /// Shows the notes activities left since the last call.
    fn flush(&self, obs: &mut dyn Observer) {
        let pending = std::mem::take(&mut self.lock().pending);
        for n in &pending {
            obs.event(Event::Note(n));
        }
    }

    fn meta(&self) -> RecordMeta {
        RecordMeta {
            run_id: self.run_id.clone(),
            owner: self.owner.clone(),
            now: jiff::Timestamp::now(),
            ttl: self.opts.ttl,
        }
    }

    /// Checks every probe in order, stopping at the first that raises or misses.
    async fn hypothesis(
        &self,
        h: &Hypothesis,
        cancel: &Cancel,
        obs: &mut dyn Observer,
    ) -> Checked2 {
        let mut probes = Vec::new();
        for p in &h.probes {
            let (mut rec, fail) = self.exec(p, cancel, None).await;
            if cancel.is_cancelled() {
                probes.push(rec);
                return Checked2::Interrupted(State {
                    steady_state_met: false,
                    probes,
                });
            }
            let (met, why) = match &fail {
                Some(f) => (false, Some(f.clone())),
                None => self.check(p, &rec.output, cancel).await,
            };
            rec.tolerance_met = Some(met);
            let summary = match (&fail, &why) {
                (Some(f), _) => format!("failed: {f}"),
                (None, Some(w)) => format!("{} — tolerance not met: {w}", brief(&rec.output)),
                (None, None) => format!("{} — tolerance met", brief(&rec.output)),
            };
            obs.event(Event::Done {
                kind: p.kind,
                name: &p.name,
                record: &rec,
                summary,
            });
            self.flush(obs);
            probes.push(rec);
            if !met {
                return Checked2::NotMet(
                    State {
                        steady_state_met: false,
                        probes,
                    },
                    fail.is_some(),
                );
            }
        }
        Checked2::Met(State {
            steady_state_met: true,
            probes,
        })
    }

    /// The tolerance check of a hypothesis probe: (met, why not).
    async fn check(&self, p: &Activity, output: &Value, cancel: &Cancel) -> (bool, Option<String>) {
        let Some(t) = &p.tolerance else {
            return (true, None);
        };
        match tolerance::within(t, output, &self.exp.vars) {
            Ok(Checked::Met(true)) => (true, None),
            Ok(Checked::Met(false)) => (false, Some(format!("expected {}", short(t)))),
            Ok(Checked::Probe(probe)) => {
                // A `type: probe` tolerance: that probe, given the output as `value`.
                let a = match super::load::tolerance_probe(
                    &probe,
                    &self.exp.vars,
                    matches!(self.target, Some(Target::Mesh(_))),
                ) {
                    Ok(a) => a,
                    Err(e) => return (false, Some(e)),
                };
                let (rec, fail) = Box::pin(self.exec(&a, cancel, None)).await;
                match fail {
                    Some(f) => (
                        false,
                        Some(format!("tolerance probe {:?} failed: {f}", a.name)),
                    ),
                    None if tolerance::truthy(&rec.output) => (true, None),
                    None => (
                        false,
                        Some(format!(
                            "tolerance probe {:?} returned {}",
                            a.name,
                            short(&rec.output)
                        )),
                    ),
                }
            }
            Err(e) => (false, Some(e)),
        }
    }

    /// The method: activities in order, background ones alongside, the hypothesis
    /// checked every `hypothesis_frequency` when the strategy says so. Stops at the
    /// first failed action (chaostoolkit goes on) and on a signal.
    async fn method(
        &self,
        method_cancel: &Cancel,
        cancel: &Cancel,
        runs: &mut Vec<RunRecord>,
        obs: &mut dyn Observer,
    ) -> (MethodEnd, During) {
        let mut background: FuturesUnordered<Boxed<'_>> = FuturesUnordered::new();
        let mut during = During::default();
        let mut failed: Option<String> = None;
        let mut next_check = Instant::now();
        let check_during = self.opts.hypothesis_strategy.during() && self.exp.hypothesis.is_some();
        let mut finished: Vec<(usize, RunRecord, Option<String>)> = Vec::new();
        let report = |obs: &mut dyn Observer,
                      runs: &mut Vec<RunRecord>,
                      failed: &mut Option<String>,
                      (i, rec, fail): (usize, RunRecord, Option<String>)| {
            let a = &self.exp.method[i];
            obs.event(Event::Done {
                kind: a.kind,
                name: &a.name,
                record: &rec,
                summary: summary_of(a, &rec, fail.as_deref()),
            });
            self.flush(obs);
            // An activity cut short because the method was already stopping (a
            // failed action, --fail-fast, a signal) is not a failure of its own.
            if let Some(f) = fail
                && a.kind == Kind::Action
                && failed.is_none()
                && !method_cancel.is_cancelled()
            {
                *failed = Some(format!("action {:?} failed: {f}", a.name));
                method_cancel.cancel();
            }
            runs.push(rec);
        };
        for (i, a) in self.exp.method.iter().enumerate() {
            if failed.is_some() || cancel.is_cancelled() {
                break;
            }
            if a.background {
                background.push(Box::pin(async move {
                    let (rec, fail) = self.exec(a, method_cancel, None).await;
                    (i, rec, fail)
                }));
                continue;
            }
            let fg = self.exec(a, method_cancel, None);
            tokio::pin!(fg);
            let res = loop {
                tokio::select! {
                    r = &mut fg => break r,
                    Some(done) = background.next(), if !background.is_empty() => finished.push(done),
                    () = tokio::time::sleep_until(next_check.into()), if check_during => {
                        self.during(&mut during, cancel, method_cancel, obs, &mut next_check).await;
                    }
                }
            };
            for d in finished.drain(..) {
                report(obs, runs, &mut failed, d);
            }
            report(obs, runs, &mut failed, (i, res.0, res.1));
        }
        while !background.is_empty() {
            tokio::select! {
                Some(done) = background.next() => report(obs, runs, &mut failed, done),
                () = tokio::time::sleep_until(next_check.into()), if check_during => {
                    self.during(&mut during, cancel, method_cancel, obs, &mut next_check).await;
                }
            }
        }
        let end = if cancel.is_cancelled() {
            MethodEnd::Interrupted
        } else if let Some(f) = failed {
            MethodEnd::ActionFailed(f)
        } else {
            MethodEnd::Done
        };
        (end, during)
    }

    async fn during(
        &self,
        during: &mut During,
        cancel: &Cancel,
        method_cancel: &Cancel,
        obs: &mut dyn Observer,
        next: &mut Instant,
    ) {
        *next = Instant::now() + self.opts.hypothesis_frequency;
        let Some(h) = &self.exp.hypothesis else {
            return;
        };
        let state = match self.hypothesis(h, cancel, obs).await {
            Checked2::Met(s) | Checked2::NotMet(s, _) | Checked2::Interrupted(s) => s,
        };
        if !state.steady_state_met && self.opts.fail_fast && !during.failed_fast {
            during.failed_fast = true;
            method_cancel.cancel();
        }
        during.states.push(state);
    }

    /// Runs one activity (pauses included): its record, and why it failed.
    async fn exec(
        &self,
        a: &Activity,
        cancel: &Cancel,
        _arg_value: Option<&Value>,
    ) -> (RunRecord, Option<String>) {
        let start = jiff::Timestamp::now();
        let t0 = Instant::now();
        let result = async {
            if let Some(p) = a.pause_before {
                pause(p, cancel).await?;
            }
            let r = tokio::select! {
                r = self.provider(a, cancel) => r,
                () = cancel.cancelled() => Err("interrupted".to_string()),
            };
            // The after-pause runs even when the activity failed.
            if let Some(p) = a.pause_after {
                pause(p, cancel).await?;
            }
            r
        }
        .await;
        let end = jiff::Timestamp::now();
        let (output, status, exception, fail) = match result {
            Ok(v) => (v, RunStatus::Succeeded, None, None),
            Err(e) => (
                Value::Null,
                RunStatus::Failed,
                Some(vec![format!("chaoslib.exceptions.ActivityFailed: {e}\n")]),
                Some(e),
            ),
        };
        (
            RunRecord {
                activity: a.raw.clone(),
                output,
                start: iso(start),
                end: iso(end),
                duration: t0.elapsed().as_secs_f64(),
                status,
                exception,
                tolerance_met: None,
            },
            fail,
        )
    }

    async fn provider(&self, a: &Activity, cancel: &Cancel) -> Result<Value, String> {
        match &a.provider {
            Provider::Http(h) => self.http(h).await,
            Provider::Process(p) => process(p).await,
            Provider::Load(l) => self.load(l, cancel).await,
            Provider::Target(t) => self.target_call(a, t, cancel).await,
        }
    }

    async fn http(&self, h: &HttpCall) -> Result<Value, String> {
        let mut req = HttpRequest {
            url: h.url.clone(),
            method: h.method.clone(),
            headers: h.headers.clone(),
            arguments: h.arguments.clone(),
            connect_timeout: h.connect_timeout,
            read_timeout: h.read_timeout,
            verify_tls: h.verify_tls,
        };
        if let Some(Target::Mesh(m)) = self.target {
            let st = m.state().map_err(|e| e.to_string())?;
            let (url, host) = mesh_url(&h.url, &st)?;
            req.url = url;
            if let Some(host) = host
                && !req
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("host"))
            {
                req.headers.push(("Host".into(), host));
            }
        }
        http::call(&req).await.map_err(|e| e.to_string())
    }

    async fn load(&self, l: &LoadCall, cancel: &Cancel) -> Result<Value, String> {
        let (url, host) = match self.target {
            Some(Target::Mesh(m)) => {
                let st = m.state().map_err(|e| e.to_string())?;
                mesh_url(&l.url, &st)?
            }
            _ if l.in_cluster.is_some() => {
                return Err(format!(
                    "`{}` runs inside the cluster; meshdrill cannot start load in a cluster yet (it comes with distributed load) — run the experiment with --mesh, or send the load from this machine with `siege …` against the ingress",
                    l.command
                ));
            }
            _ => (l.url.clone(), None),
        };
        let mut b = crate::load::LoadConfig::builder(url.clone())
            .conns(l.connections)
            .rate(crate::load::Rate::Max)
            .timeout(Duration::from_secs(30))
            .stop(match l.stop {
                LoadStop::Duration(d) => crate::load::Stop::Duration(d),
                LoadStop::Requests(n) => crate::load::Stop::Requests(n),
            });
        for h in &l.headers {
            b = b.header(h.clone());
        }
        if let Some(h) = host
            && !l
                .headers
                .iter()
                .any(|x| x.to_ascii_lowercase().starts_with("host:"))
        {
            b = b.header(format!("Host: {h}"));
        }
        let config = b.build().map_err(|e| format!("`{}`: {e}", l.command))?;
        let report = crate::load::run(config, cancel.child(), |_| {})
            .await
            .map_err(|e| format!("`{}`: {e}", l.command))?;
        let n = report.requests();
        let ok: u64 = report
            .data
            .counts
            .statuses()
            .filter(|(c, _)| (200..400).contains(c))
            .map(|(_, n)| n)
            .sum();
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        let p = |q: f64| report.latency_at(q).as_secs_f64();
        let codes: Vec<String> = report
            .data
            .counts
            .statuses()
            .map(|(c, k)| format!("{c}: {k}"))
            .collect();
        let errors: Vec<String> = report
            .data
            .counts
            .error_kinds()
            .map(|(e, k)| format!("{}: {k}", e.name()))
            .collect();
        // meshdrill's own figures (not siege's): every request counted, failures and
        // timeouts in the latency at the time they took.
        let stdout = format!(
            "Requests:\t\t{n}\nSuccessful (2xx/3xx):\t{ok} ({:.2} %)\nStatus codes:\t\t{}\nErrors:\t\t\t{}\nElapsed time:\t\t{secs:.2} secs\nResponse time:\t\t{:.3} secs (p50), {:.3} secs (p99), {:.3} secs (max)\nRequest rate:\t\t{:.2} req/sec\nConcurrency:\t\t{}\n",
            if n == 0 {
                0.0
            } else {
                100.0 * ok as f64 / n as f64
            },
            if codes.is_empty() {
                "none".into()
            } else {
                codes.join(", ")
            },
            if errors.is_empty() {
                "none".into()
            } else {
                errors.join(", ")
            },
            p(0.5),
            p(0.99),
            p(1.0),
            n as f64 / secs,
            l.connections,
        );
        Ok(json!({"status": 0, "stdout": stdout, "stderr": ""}))
    }

    fn target(&self) -> Result<&Target, String> {
        self.target.ok_or_else(|| {
            "this activity needs a cluster or a local mesh (a bug: none was opened)".to_string()
        })
    }

    /// The namespace a call names, as the target takes it (`None` on a mesh).
    fn ns<'n>(&self, ns: &'n str) -> Option<&'n str> {
        match self.target {
            Some(Target::Mesh(_)) => None,
            _ => Some(ns),
        }
    }

    async fn target_call(
        &self,
        a: &Activity,
        t: &TargetCall,
        cancel: &Cancel,
    ) -> Result<Value, String> {
        let target = self.target()?;
        match t {
            TargetCall::AddFault {
                vs,
                ns,
                selector,
                fault,
            } => {
                let change = match fault {
                    Fault::Delay(d) => Change::Delay(d.clone()),
                    Fault::Abort(ab) => Change::Abort(ab.clone()),
                };
                self.change(a, target, vs, self.ns(ns), selector, &change, cancel)
                    .await
            }
            TargetCall::RemoveFault {
                vs,
                ns,
                selector,
                kind,
            } => {
                let ns = self.ns(ns);
                let now = target.current(vs, ns).await.map_err(|e| e.to_string())?;
                let http = now
                    .pointer("/spec/http")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if selector.select(&http).is_empty() {
                    return Err(format!(
                        "VirtualService {vs}: no {selector}; the routes are:\n{}",
                        crate::istio::spec::describe_routes(&http)
                    ));
                }
                match read_record(&now) {
                    Ok(Some(r)) if r.run_id == self.run_id => {}
                    _ => {
                        let n = format!(
                            "{}: {:?}: VirtualService {vs} carries no {} fault of this run: nothing removed (a fault that was there before the experiment stays)",
                            a.at,
                            a.name,
                            kind_name(*kind)
                        );
                        self.note(&n);
                        return Ok(now);
                    }
                }
                let change = remove_change(*kind);
                self.change(a, target, vs, ns, selector, &change, cancel)
                    .await
            }
            TargetCall::GetVirtualService { vs, ns } => {
                let obj = target
                    .current(vs, self.ns(ns))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({"status": 200, "body": obj, "headers": {}}))
            }
            TargetCall::TerminatePods(tp) => self.terminate(a, target, tp).await,
            TargetCall::Pods(p) => self.pods_probe(target, p).await,
            TargetCall::Deployments(d) => self.deployments_probe(target, d).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn change(
        &self,
        a: &Activity,
        target: &Target,
        vs: &str,
        ns: Option<&str>,
        selector: &crate::istio::RouteSelector,
        change: &Change,
        cancel: &Cancel,
    ) -> Result<Value, String> {
        // Another run's drill on it: refuse rather than stack (our clean-up would undo
        // theirs).
        let before = target.current(vs, ns).await.map_err(|e| e.to_string())?;
        if let Ok(Some(r)) = read_record(&before)
            && r.run_id != self.run_id
        {
            return Err(format!(
                "VirtualService {vs} carries another drill (run {}, {}@{}, pid {}): nothing was changed. See `meshdrill status`",
                r.run_id, r.owner.user, r.owner.host, r.owner.pid
            ));
        }
        // Marked before the PATCH: one whose outcome is unknown is cleared too.
        {
            let mut sh = self.lock();
            let key = (vs.to_string(), ns.map(str::to_string));
            if !sh.touched.contains(&key) {
                sh.touched.push(key);
            }
        }
        let changed = target
            .apply(vs, ns, selector, Some(change), &self.meta(), Some(cancel))
            .await
            .map_err(|e| e.to_string())?;
        // Both kinds on one route: chaostoolkit would have kept only the last.
        if matches!(change, Change::Delay(_) | Change::Abort(_)) {
            let both: Vec<usize> = changed
                .routes
                .iter()
                .copied()
                .filter(|i| {
                    changed
                        .object
                        .pointer(&format!("/spec/http/{i}/fault"))
                        .is_some_and(|f| f.get("delay").is_some() && f.get("abort").is_some())
                })
                .collect();
            if !both.is_empty() {
                let n = format!(
                    "{}: VirtualService {vs} route(s) {both:?} now have both a delay and an abort: meshdrill keeps both (chaostoolkit replaces the whole fault block, so the earlier fault would be gone)",
                    a.at
                );
                self.note(&n);
            }
        }
        {
            let mut sh = self.lock();
            sh.notes.extend(changed.warnings.iter().cloned());
            sh.pending.extend(changed.warnings.iter().cloned());
            sh.changes.push(ChangeLog {
                activity: a.name.clone(),
                object: format!("VirtualService {}/{vs}", changed.namespace),
                change: format!("{change} on routes {:?}", changed.routes),
                patch: serde_json::to_value(&changed.patch).unwrap_or(Value::Null),
            });
        }
        Ok(changed.object)
    }

    async fn list_pods(
        &self,
        target: &Target,
        ns: &str,
        selector: Option<&str>,
    ) -> Result<Vec<Pod>, String> {
        let sel = match selector {
            Some(s) => Some(Selector::parse(s)?),
            None => None,
        };
        match target {
            // The API server selects on a cluster.
            Target::Cluster(c) => cluster_pods(c, ns, selector).await,
            Target::Mesh(m) => Ok(pods::mesh_pods(&m.state().map_err(|e| e.to_string())?)
                .into_iter()
                .filter(|p| sel.as_ref().is_none_or(|s| s.matches(&p.labels)))
                .collect()),
            Target::File(_) => Err("a manifest file has no pods".into()),
        }
    }

    async fn terminate(
        &self,
        a: &Activity,
        target: &Target,
        tp: &Terminate,
    ) -> Result<Value, String> {
        let mut pods = self
            .list_pods(target, &tp.ns, tp.label_selector.as_deref())
            .await?;
        if let Some(pat) = &tp.name_pattern {
            let re = regex::Regex::new(pat).map_err(|e| e.to_string())?;
            pods.retain(|p| re.is_match(&p.name));
        }
        if pods.is_empty() {
            return Err(format!(
                "no pod matched (label_selector {:?}, name_pattern {:?}{}): nothing was terminated",
                tp.label_selector.as_deref().unwrap_or(""),
                tp.name_pattern.as_deref().unwrap_or(""),
                match target {
                    Target::Mesh(_) => ", on the local mesh: replicas SERVICE-N with their service's labels and app=SERVICE".to_string(),
                    _ => format!(", namespace {}", tp.ns),
                }
            ));
        }
        if tp.oldest {
            pods.sort_by_key(|p| p.created);
        }
        let n = pods.len();
        let victims: Vec<Pod> = if tp.all {
            pods
        } else {
            let mut qty = tp.qty as usize;
            if tp.percentage {
                qty = ((tp.qty as f64) * n as f64 / 100.0).ceil() as usize;
            }
            let qty = qty.min(n);
            if tp.rand {
                use rand::seq::SliceRandom;
                let mut p = pods;
                p.shuffle(&mut rand::rng());
                p.truncate(qty);
                p
            } else {
                pods.into_iter().take(qty).collect()
            }
        };
        let mut names = Vec::new();
        for p in &victims {
            match (target, &p.replica) {
                (Target::Mesh(m), Some((svc, i))) => {
                    let killed = m.kill(svc, Some(*i)).await.map_err(|e| e.to_string())?;
                    let mut sh = self.lock();
                    for k in killed {
                        sh.killed.push((svc.clone(), k));
                    }
                    sh.changes.push(ChangeLog {
                        activity: a.name.clone(),
                        object: format!("replica {svc}/{i}"),
                        change: "killed (SIGKILL)".into(),
                        patch: Value::Null,
                    });
                }
                (Target::Cluster(c), _) => {
                    cluster_delete(c, &tp.ns, &p.name, tp.grace_period).await?;
                    self.lock().changes.push(ChangeLog {
                        activity: a.name.clone(),
                        object: format!("pod {}/{}", tp.ns, p.name),
                        change: match tp.grace_period {
                            Some(g) => format!("deleted (grace period {g}s)"),
                            None => "deleted".into(),
                        },
                        patch: Value::Null,
                    });
                }
                _ => return Err("pods can only be terminated on a cluster or a local mesh".into()),
            }
            names.push(p.name.clone());
        }
        Ok(json!(names))
    }

    async fn pods_probe(&self, target: &Target, p: &PodsProbe) -> Result<Value, String> {
        match p {
            PodsProbe::InPhase {
                selector,
                phase,
                ns,
            }
            | PodsProbe::NotInPhase {
                selector,
                phase,
                ns,
            } => {
                let pods = self.list_pods(target, ns, Some(selector)).await?;
                if pods.is_empty() {
                    return Err(format!("no pods '{selector}' were found"));
                }
                let want_in = matches!(p, PodsProbe::InPhase { .. });
                for pod in &pods {
                    if want_in && &pod.phase != phase {
                        return Err(format!(
                            "pod '{}' is in phase '{}' but should be '{phase}'",
                            pod.name, pod.phase
                        ));
                    }
                    if !want_in && &pod.phase == phase {
                        return Err(format!(
                            "pod '{}' should not be in phase '{phase}'",
                            pod.name
                        ));
                    }
                }
                Ok(Value::Bool(true))
            }
            PodsProbe::Count {
                selector,
                phase,
                ns,
            } => {
                let pods = self.list_pods(target, ns, Some(selector)).await?;
                Ok(json!(
                    pods.iter()
                        .filter(|p| phase.as_ref().is_none_or(|ph| &p.phase == ph))
                        .count()
                ))
            }
            PodsProbe::AllHealthy { ns } => {
                let pods = self.list_pods(target, ns, None).await?;
                let bad: Vec<String> = pods
                    .iter()
                    .filter(|p| !matches!(p.phase.as_str(), "Running" | "Succeeded"))
                    .map(|p| format!("{} ({})", p.name, p.phase))
                    .collect();
                if bad.is_empty() {
                    Ok(Value::Bool(true))
                } else {
                    Err(format!("the system is unhealthy: {}", bad.join(", ")))
                }
            }
        }
    }

    async fn deployments_probe(
        &self,
        target: &Target,
        d: &DeploymentsProbe,
    ) -> Result<Value, String> {
        let list = |ns: String| async move {
            match target {
                Target::Mesh(m) => Ok(pods::mesh_deployments(
                    &m.state().map_err(|e| e.to_string())?,
                )),
                Target::Cluster(c) => cluster_deployments(c, &ns).await,
                Target::File(_) => Err("a manifest file has no deployments".to_string()),
            }
        };
        match d {
            DeploymentsProbe::AvailableAndHealthy {
                name,
                ns,
                label_selector,
                raise,
            } => {
                let sel = match label_selector {
                    Some(s) => Some(Selector::parse(s)?),
                    None => None,
                };
                let found: Vec<Deployment> = list(ns.clone())
                    .await?
                    .into_iter()
                    .filter(|d| {
                        &d.name == name && sel.as_ref().is_none_or(|s| s.matches(&d.labels))
                    })
                    .collect();
                if found.is_empty() {
                    return Err(format!("deployment '{name}' was not found"));
                }
                for dep in &found {
                    if !dep.healthy() {
                        if *raise {
                            return Err(format!(
                                "deployment '{name}' is not healthy: {} of {} replicas available",
                                dep.available, dep.replicas
                            ));
                        }
                        return Ok(Value::Bool(false));
                    }
                }
                Ok(Value::Bool(true))
            }
            DeploymentsProbe::AllHealthy { ns } => {
                let bad: Vec<String> = list(ns.clone())
                    .await?
                    .iter()
                    .filter(|d| !d.healthy())
                    .map(|d| format!("{} ({}/{} available)", d.name, d.available, d.replicas))
                    .collect();
                if bad.is_empty() {
                    Ok(Value::Bool(true))
                } else {
                    Err(format!("the system is unhealthy: {}", bad.join(", ")))
                }
            }
        }
    }

    /// Undoes whatever meshdrill still has changed: every VirtualService it touched is
    /// restored, every mesh replica it killed is started again.
    async fn cleanup(&self, keep: bool, obs: &mut dyn Observer) -> Result<(), String> {
        let (touched, killed) = {
            let sh = self.lock();
            (sh.touched.clone(), sh.killed.clone())
        };
        let Some(target) = self.target else {
            return Ok(());
        };
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        for (vs, ns) in &touched {
            if keep {
                match target.current(vs, ns.as_deref()).await {
                    Ok(obj) if matches!(read_record(&obj), Ok(Some(r)) if r.run_id == self.run_id) =>
                    {
                        lines.push(format!(
                            "kept: VirtualService {vs} still carries this run's faults (--keep-faults); undo with `meshdrill clear {vs}{}`",
                            ns.as_ref().map(|n| format!(" -n {n}")).unwrap_or_default()
                        ));
                    }
                    _ => {}
                }
                continue;
            }
            match target.clear(vs, ns.as_deref(), rollback_budget()).await {
                Ok(Cleared::Restored { patch, .. }) => {
                    lines.push(format!(
                        "meshdrill restored VirtualService {vs}: the experiment's rollbacks had left its changes in place"
                    ));
                    self.lock().changes.push(ChangeLog {
                        activity: "meshdrill clean-up".into(),
                        object: format!("VirtualService {vs}"),
                        change: "restored as it was before the experiment".into(),
                        patch: serde_json::to_value(&patch).unwrap_or(Value::Null),
                    });
                }
                Ok(Cleared::Nothing { .. }) | Ok(Cleared::Gone) => {}
                Err(e) => failures.push(format!("VirtualService {vs}: {e}")),
            }
        }
        if let Target::Mesh(m) = target {
            for (svc, i) in &killed {
                if keep {
                    lines.push(format!(
                        "kept: replica {svc}/{i} stays down (--keep-faults)"
                    ));
                    continue;
                }
                match m.restart(svc, Some(*i)).await {
                    Ok(_) => lines.push(format!(
                        "meshdrill restarted replica {svc}/{i} (terminated by the experiment)"
                    )),
                    Err(e) => failures.push(format!("replica {svc}/{i}: {e}")),
                }
            }
        }
        if !lines.is_empty() || !failures.is_empty() {
            obs.event(Event::Section("clean-up".into()));
        }
        for l in &lines {
            obs.event(Event::Note(l));
        }
        let mut sh = self.lock();
        sh.cleanup.extend(lines);
        if failures.is_empty() {
            Ok(())
        } else {
            sh.cleanup
                .extend(failures.iter().map(|f| format!("FAILED: {f}")));
            Err(failures.join("; "))
        }
    }
}

fn kind_name(k: FaultKind) -> &'static str {
    match k {
        FaultKind::Delay => "delay",
        FaultKind::Abort => "abort",
    }
}

fn remove_change(k: FaultKind) -> Change {
    Change::RemoveFault(k)
}

async fn cluster_pods(
    c: &crate::target::ClusterTarget,
    ns: &str,
    selector: Option<&str>,
) -> Result<Vec<Pod>, String> {
    let pods = c
        .cluster
        .pods(ns, selector)
        .await
        .map_err(|e| e.to_string())?;
    Ok(pods
        .into_iter()
        .map(|p| Pod {
            // A terminating pod is a candidate (chaosk8s has no phase filter), but it
            // is not running.
            phase: if p.deleting && p.phase == "Running" {
                "Terminating".into()
            } else {
                p.phase
            },
            name: p.name,
            created: p.created,
            ready: p.ready,
            labels: p.labels,
            replica: None,
        })
        .collect())
}

async fn cluster_delete(
    c: &crate::target::ClusterTarget,
    ns: &str,
    name: &str,
    grace: Option<u32>,
) -> Result<(), String> {
    c.cluster
        .delete_pod_grace(ns, name, grace)
        .await
        .map_err(|e| e.to_string())
}

async fn cluster_deployments(
    c: &crate::target::ClusterTarget,
    ns: &str,
) -> Result<Vec<Deployment>, String> {
    let ds = c
        .cluster
        .deployments(ns, None, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ds
        .into_iter()
        .map(|d| Deployment {
            name: d.name,
            replicas: i64::from(d.replicas),
            // Available and ready, as chaosk8s reads them.
            available: i64::from(d.available.min(d.ready)),
            labels: d.labels,
        })
        .collect())
}

/// On a local mesh, where a URL goes: loopback as it is; a mesh service's name (short
/// or FQDN) through that service's sidecar, as a pod in the namespace would call it;
/// a VirtualService host through the ingress. Returns the URL to connect to and the
/// `Host` to send.
pub fn mesh_url(
    url: &str,
    st: &crate::mesh::state::MeshState,
) -> Result<(String, Option<String>), String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    let host = u
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_string();
    if matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
        return Ok((url.to_string(), None));
    }
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let rewrite = |port: u16| -> String {
        let mut v = u.clone();
        let _ = v.set_host(Some("127.0.0.1"));
        let _ = v.set_port(Some(port));
        v.to_string()
    };
    let ns = &st.spec.namespace;
    let short = host
        .strip_suffix(&format!(".{ns}.svc.cluster.local"))
        .or_else(|| {
            host.strip_suffix(".svc.cluster.local")
                .and_then(|h| h.split('.').next())
        })
        .or_else(|| host.strip_suffix(&format!(".{ns}.svc")))
        .or_else(|| host.strip_suffix(&format!(".{ns}")))
        .unwrap_or(&host);
    if let Some(port) = st.sidecar_ports.get(short) {
        return Ok((rewrite(*port), Some(authority)));
    }
    let vs_hosts = st
        .spec
        .virtual_services
        .iter()
        .filter_map(|v| v.pointer("/spec/hosts").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str);
    for h in vs_hosts {
        let hit = h == host || (h.starts_with("*.") && host.ends_with(&h[1..])) || h == "*";
        if hit {
            return Ok((rewrite(st.ingress_port), Some(authority)));
        }
    }
    Err(format!(
        "{url}: on the local mesh only loopback, the mesh's services ({}) and its VirtualService hosts are reachable; {host:?} is none of them",
        st.sidecar_ports
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

async fn pause(d: Duration, cancel: &Cancel) -> Result<(), String> {
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = cancel.cancelled() => Err("interrupted".into()),
    }
}

/// chaostoolkit's process provider: argv (or `sh -c` for a string), the timeout,
/// `{status, stdout, stderr}`; a non-zero exit is not a failure.
async fn process(p: &ProcessCall) -> Result<Value, String> {
    let mut cmd = match &p.shell {
        Some(line) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(line);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(&p.argv[0]);
            c.args(&p.argv[1..]);
            c
        }
    };
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .process_group(0);
    let run = cmd.output();
    let out = match p.timeout {
        Some(t) => tokio::time::timeout(t, run)
            .await
            .map_err(|_| format!("{} timed out after {}s", p.argv[0], t.as_secs_f64()))?,
        None => run.await,
    }
    .map_err(|e| format!("cannot run {}: {e}", p.argv[0]))?;
    Ok(json!({
        "status": out.status.code().unwrap_or(-1),
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
    }))
}

/// A value in one short line.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// The output in brief: an HTTP/process status, a list, a value.
fn brief(v: &Value) -> String {
    if let Some(s) = v.get("status")
        && (v.get("body").is_some() || v.get("stdout").is_some())
    {
        return format!("status {s}");
    }
    if v.get("kind").and_then(Value::as_str) == Some("VirtualService") {
        return format!(
            "VirtualService {}",
            v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
    }
    short(v)
}

fn summary_of(a: &Activity, rec: &RunRecord, fail: Option<&str>) -> String {
    match (fail, &a.provider) {
        (Some(f), _) => format!("failed: {f}"),
        (
            None,
            Provider::Target(TargetCall::AddFault {
                vs,
                selector,
                fault,
                ..
            }),
        ) => {
            let change = match fault {
                Fault::Delay(d) => Change::Delay(d.clone()),
                Fault::Abort(ab) => Change::Abort(ab.clone()),
            };
            format!("{change} on VirtualService {vs}, {selector}")
        }
        (
            None,
            Provider::Target(TargetCall::RemoveFault {
                vs, selector, kind, ..
            }),
        ) => format!(
            "removed this run's {} from VirtualService {vs}, {selector}",
            kind_name(*kind)
        ),
        (None, Provider::Load(l)) => format!(
            "{} on meshdrill's load engine: {}",
            l.command,
            rec.output["stdout"]
                .as_str()
                .and_then(|s| s
                    .lines()
                    .take(3)
                    .map(|l| l.replace('\t', " "))
                    .reduce(|a, b| format!("{a}, {b}")))
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ),
        (None, _) => brief(&rec.output),
    }
}
