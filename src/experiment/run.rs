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

use super::http;
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
    // chaostoolkit's own status, for its `default` rollback strategy: a failed action
    // does not change it there.
    let mut action_failed = false;
    if gate_ok {
        obs.event(Event::Section("method".into()));
        let method_cancel = cancel.child();
        let (outcome, during) = r.method(&method_cancel, cancel, &mut runs, obs).await;
        steady.during = during.states;
        match outcome {
            MethodEnd::Done => {}
            MethodEnd::ActionFailed(what) => {
                status = Status::Failed;
                action_failed = true;
                exit = Exit::Failed;
                verdict = format!("{what}: the method stopped there");
            }
            MethodEnd::Interrupted => {
                status = Status::Interrupted;
                exit = Exit::Interrupted;
                verdict = "interrupted during the method".into();
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
    // Misses during the method: chaostoolkit sets neither `deviated` nor a failed
    // status for them (so the journal does not either), but a steady state that did not
    // hold while the fault was on is the finding: meshdrill exits 1.
    let missed = steady.during.iter().filter(|s| !s.steady_state_met).count();
    if exit == Exit::Held && missed > 0 {
        exit = Exit::NotMet;
        verdict = format!(
            "the steady state did not hold during the method ({missed} of {} checks missed)",
            steady.during.len()
        );
    }
    if exit == Exit::Held {
        verdict = match &exp.hypothesis {
            Some(_) => "the steady state held".into(),
            None => "the method ran (the experiment has no steady-state hypothesis)".into(),
        };
    }

    // 4. Rollbacks, by strategy. A signal that came before does not cut them; one that
    // comes while they run does (meshdrill's clean-up still runs).
    let ctk_failed = status == Status::Failed && !action_failed;
    let play = match opts.rollback_strategy {
        RollbackStrategy::Always => true,
        RollbackStrategy::Never => false,
        RollbackStrategy::Deviated => deviated,
        RollbackStrategy::Default => !ctk_failed && status != Status::Interrupted,
    };
    let mut rollbacks = Vec::new();
    if !exp.rollbacks.is_empty() {
        if play {
            // Counted before the section shows: a signal after it cuts the rollbacks.
            let signals_before = cancel.count();
            let rb_cancel = Cancel::new();
            obs.event(Event::Section("rollbacks".into()));
            // Cancels the rollbacks on a signal that comes after they started.
            let watch = async {
                while cancel.count() == signals_before {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                rb_cancel.cancel();
            };
            tokio::pin!(watch);
            for a in &exp.rollbacks {
                let exec = r.exec(a, &rb_cancel);
                tokio::pin!(exec);
                let ran = loop {
                    tokio::select! {
                        ran = &mut exec => break ran,
                        () = &mut watch, if !rb_cancel.is_cancelled() => {}
                    }
                };
                obs.event(Event::Done {
                    kind: a.kind,
                    name: &a.name,
                    record: &ran.rec,
                    summary: ran.summary,
                });
                r.flush(obs);
                rollbacks.push(ran.rec);
                if rb_cancel.is_cancelled() {
                    status = Status::Interrupted;
                    exit = Exit::Interrupted;
                    verdict = format!("{verdict}; the rollbacks were cut short by a signal");
                    break;
                }
                if let Some(f) = ran.fail
                    && a.kind == Kind::Action
                    && exit == Exit::Held
                {
                    exit = Exit::Failed;
                    verdict = format!("rollback {:?} failed: {f}", a.name);
                }
            }
            if exit != Exit::Held && !rb_cancel.is_cancelled() {
                verdict = format!("{verdict}; the rollbacks ran");
            }
        } else {
            let why = format!(
                "the rollbacks were not played (strategy {}, run {}{})",
                strategy_name(opts.rollback_strategy),
                status_name(status),
                if deviated { ", deviated" } else { "" }
            );
            r.note(&why);
            r.flush(obs);
            verdict = format!("{verdict}; {why}");
        }
    }

    // 5. meshdrill's own clean-up: whatever is still changed is undone.
    let cleanup = r.cleanup(opts.keep_faults, obs).await;
    match &cleanup {
        Err(e) => {
            if exit != Exit::Interrupted {
                exit = Exit::Failed;
            }
            verdict = format!("{verdict}; the clean-up failed: {e}");
        }
        Ok(true) => verdict = format!("{verdict}; meshdrill undid what was left changed"),
        Ok(false) => {}
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

type Boxed<'f> = Pin<Box<dyn std::future::Future<Output = (usize, Ran)> + 'f>>;

/// One activity run: its journal record, why it failed, and its line for the output.
struct Ran {
    rec: RunRecord,
    fail: Option<String>,
    summary: String,
}

impl Ran {
    fn new(
        a: &Activity,
        r: Result<(Value, Option<String>), String>,
        start: String,
        end: String,
        duration: f64,
    ) -> Self {
        let (output, status, exception, fail, line) = match r {
            Ok((v, line)) => (v, RunStatus::Succeeded, None, None, line),
            Err(e) => (
                Value::Null,
                RunStatus::Failed,
                Some(vec![format!("chaoslib.exceptions.ActivityFailed: {e}\n")]),
                Some(e),
                None,
            ),
        };
        let summary = match (&fail, line) {
            (Some(f), _) => format!("failed: {f}"),
            (None, Some(l)) => l,
            (None, None) => brief(&output),
        };
        Self {
            rec: RunRecord {
                activity: a.raw.clone(),
                output,
                start,
                end,
                duration,
                status,
                exception,
                tolerance_met: None,
            },
            fail,
            summary,
        }
    }
}

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
            stacking: crate::istio::Stacking::Never,
            force: false,
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
            let ran = self.exec(p, cancel).await;
            let (mut rec, fail) = (ran.rec, ran.fail);
            if cancel.is_cancelled() {
                probes.push(rec);
                return Checked2::Interrupted(State {
                    steady_state_met: false,
                    probes,
                });
            }
            // A tolerance check that cannot be made (chaostoolkit raises) counts as a
            // probe that raised.
            let (met, why, check_raised) = match &fail {
                Some(f) => (false, Some(f.clone()), false),
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
                    fail.is_some() || check_raised,
                );
            }
        }
        Checked2::Met(State {
            steady_state_met: true,
            probes,
        })
    }

    /// The tolerance check of a hypothesis probe: (met, why not, the check itself
    /// failed).
    async fn check(
        &self,
        p: &Activity,
        output: &Value,
        cancel: &Cancel,
    ) -> (bool, Option<String>, bool) {
        let Some(t) = &p.tolerance else {
            return (true, None, false);
        };
        match tolerance::within(t, output, &self.exp.vars) {
            Ok(Checked::Met(true)) => (true, None, false),
            Ok(Checked::Met(false)) => (false, Some(format!("expected {}", short(t))), false),
            Ok(Checked::Probe(probe)) => {
                // A `type: probe` tolerance: that probe, given the output as `value`.
                let a = match super::load::tolerance_probe(
                    &probe,
                    &self.exp.vars,
                    matches!(self.target, Some(Target::Mesh(_))),
                ) {
                    Ok(a) => a,
                    Err(e) => return (false, Some(e), true),
                };
                let ran = Box::pin(self.exec(&a, cancel)).await;
                match ran.fail {
                    Some(f) => (
                        false,
                        Some(format!("tolerance probe {:?} failed: {f}", a.name)),
                        false,
                    ),
                    None if tolerance::truthy(&ran.rec.output) => (true, None, false),
                    None => (
                        false,
                        Some(format!(
                            "tolerance probe {:?} returned {}",
                            a.name,
                            short(&ran.rec.output)
                        )),
                        false,
                    ),
                }
            }
            Err(e) => (
                false,
                Some(format!("the tolerance could not be checked: {e}")),
                true,
            ),
        }
    }

    /// The method: activities in order, background ones alongside, the hypothesis
    /// checked every `hypothesis_frequency` when the strategy says so. Stops at the
    /// first failed action (chaostoolkit goes on), on --fail-fast and on a signal:
    /// what runs then is cut, and nothing further starts.
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
        let report = |obs: &mut dyn Observer,
                      runs: &mut Vec<RunRecord>,
                      failed: &mut Option<String>,
                      (i, ran): (usize, Ran)| {
            let a = &self.exp.method[i];
            obs.event(Event::Done {
                kind: a.kind,
                name: &a.name,
                record: &ran.rec,
                summary: ran.summary,
            });
            self.flush(obs);
            // An activity cut short because the method was already stopping (a
            // failed action, --fail-fast, a signal) is not a failure of its own.
            if let Some(f) = ran.fail
                && a.kind == Kind::Action
                && failed.is_none()
                && !method_cancel.is_cancelled()
            {
                *failed = Some(format!("action {:?} failed: {f}", a.name));
                method_cancel.cancel();
            }
            runs.push(ran.rec);
        };
        for (i, a) in self.exp.method.iter().enumerate() {
            if method_cancel.is_cancelled() {
                break;
            }
            if a.background {
                background.push(Box::pin(
                    async move { (i, self.exec(a, method_cancel).await) },
                ));
                continue;
            }
            let fg = self.exec(a, method_cancel);
            tokio::pin!(fg);
            let ran = loop {
                tokio::select! {
                    r = &mut fg => break r,
                    // A background action that fails stops the foreground at once.
                    Some(done) = background.next(), if !background.is_empty() => {
                        report(obs, runs, &mut failed, done);
                    }
                    () = tokio::time::sleep_until(next_check.into()), if check_during => {
                        self.during(&mut during, cancel, method_cancel, obs, &mut next_check).await;
                    }
                }
            };
            report(obs, runs, &mut failed, (i, ran));
        }
        while !background.is_empty() {
            tokio::select! {
                Some(done) = background.next() => report(obs, runs, &mut failed, done),
                () = tokio::time::sleep_until(next_check.into()), if check_during && !method_cancel.is_cancelled() => {
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

    /// Runs one activity: the pause before, the provider, the pause after (which runs
    /// even when the activity failed). The journal's times cover the provider only, as
    /// chaostoolkit's do.
    async fn exec(&self, a: &Activity, cancel: &Cancel) -> Ran {
        let interrupted = |a: &Activity| {
            let now = iso(jiff::Timestamp::now());
            Ran::new(a, Err("interrupted".into()), now.clone(), now, 0.0)
        };
        if let Some(p) = a.pause_before
            && pause(p, cancel).await.is_err()
        {
            return interrupted(a);
        }
        if cancel.is_cancelled() {
            return interrupted(a);
        }
        let start = jiff::Timestamp::now();
        let t0 = Instant::now();
        let r = tokio::select! {
            biased;
            () = cancel.cancelled() => Err("interrupted".to_string()),
            r = self.provider(a, cancel) => r,
        };
        let duration = t0.elapsed().as_secs_f64();
        let end = jiff::Timestamp::now();
        if let Some(p) = a.pause_after {
            let _ = pause(p, cancel).await;
        }
        Ran::new(a, r, iso(start), iso(end), duration)
    }

    /// The provider's output, and (for changes) what it did in one line.
    async fn provider(
        &self,
        a: &Activity,
        cancel: &Cancel,
    ) -> Result<(Value, Option<String>), String> {
        match &a.provider {
            Provider::Http(h) => self.http(h).await.map(|v| (v, None)),
            Provider::Process(p) => process(p).await.map(|v| (v, None)),
            Provider::Load(l) => self.load(l, cancel).await.map(|v| {
                let line = load_line(l, &v);
                (v, Some(line))
            }),
            Provider::Target(t) => self.target_call(a, t, cancel).await,
        }
    }

    async fn http(&self, h: &HttpRequest) -> Result<Value, String> {
        let mut req = h.clone();
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
            Some(Target::Cluster(c)) if l.in_cluster.is_some() => {
                return self.load_in_cluster(l, c, cancel).await;
            }
            _ if l.in_cluster.is_some() => {
                return Err(format!(
                    "`{}` runs inside the cluster, and this experiment has no cluster to run it in",
                    l.command
                ));
            }
            _ => (l.url.clone(), None),
        };
        let config = load_config(l, url, host)?;
        let report = crate::load::run(config, cancel.child(), |_| {})
            .await
            .map_err(|e| format!("`{}`: {e}", l.command))?;
        Ok(json!({"status": 0, "stdout": siege_summary(&report, l.connections), "stderr": ""}))
    }

    /// `kubectl run … siege …` on a cluster: the load runs there, as one meshdrill
    /// worker in a Job in the activity's namespace (`kubectl run` starts one pod), its
    /// result read back from the pod's log; the Job is deleted however it ends.
    async fn load_in_cluster(
        &self,
        l: &LoadCall,
        c: &crate::target::ClusterTarget,
        cancel: &Cancel,
    ) -> Result<Value, String> {
        use crate::fleet::in_cluster::{self, InCluster};
        let config = load_config(l, l.url.clone(), None)?;
        let target = InCluster {
            namespace: l
                .in_cluster
                .clone()
                .unwrap_or_else(|| c.cluster.namespace.clone()),
            image: None,
        };
        let r = in_cluster::run(&c.cluster, &target, &config, 1, cancel.child(), |_| {})
            .await
            .map_err(|e| format!("`{}`: {e}", l.command))?;
        let mut stderr = String::new();
        if let Some(e) = &r.not_deleted {
            stderr.push_str(&format!("warning: {e}\n"));
        }
        let status = if r.fleet.partial {
            for w in r.fleet.workers.iter().filter(|w| !w.complete) {
                let why = w.problem.clone().unwrap_or_else(|| w.ended());
                stderr.push_str(&format!("the load pod did not complete: {why}\n"));
                for t in &w.tail {
                    stderr.push_str(t);
                    stderr.push('\n');
                }
            }
            1
        } else {
            0
        };
        Ok(json!({
            "status": status,
            "stdout": siege_summary(&r.fleet.report, l.connections),
            "stderr": stderr,
        }))
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
    ) -> Result<(Value, Option<String>), String> {
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
                let obj = self
                    .change(a, target, vs, self.ns(ns), selector, &change, cancel)
                    .await?;
                let line = format!("{change} on VirtualService {vs}, {selector}");
                Ok((obj, Some(line)))
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
                            kind.key()
                        );
                        self.note(&n);
                        let line = format!("nothing of this run on VirtualService {vs}: unchanged");
                        return Ok((now, Some(line)));
                    }
                }
                let change = Change::RemoveFault(*kind);
                let after = self
                    .change(a, target, vs, ns, selector, &change, cancel)
                    .await?;
                let kind = kind.key();
                let line = if after.get("spec") == now.get("spec") {
                    format!("no {kind} of this run on VirtualService {vs}, {selector}: unchanged")
                } else {
                    format!("removed this run's {kind} from VirtualService {vs}, {selector}")
                };
                Ok((after, Some(line)))
            }
            TargetCall::GetVirtualService { vs, ns } => {
                let obj = target
                    .current(vs, self.ns(ns))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((json!({"status": 200, "body": obj, "headers": {}}), None))
            }
            TargetCall::TerminatePods(tp) => self.terminate(a, target, tp).await.map(|v| (v, None)),
            TargetCall::Pods(p) => self.pods_probe(target, p).await.map(|v| (v, None)),
            TargetCall::Deployments(d) => {
                self.deployments_probe(target, d).await.map(|v| (v, None))
            }
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
        // On a mesh, a replica already down has no process to kill.
        if matches!(target, Target::Mesh(_)) {
            pods.retain(|p| p.ready);
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
            PodsProbe::AllHealthy { ns, raise } => {
                let pods = self.list_pods(target, ns, None).await?;
                let bad: Vec<String> = pods
                    .iter()
                    .filter(|p| !matches!(p.phase.as_str(), "Running" | "Succeeded"))
                    .map(|p| format!("{} ({})", p.name, p.phase))
                    .collect();
                match (bad.is_empty(), raise) {
                    (true, _) => Ok(Value::Bool(true)),
                    (false, true) => Err(format!("the system is unhealthy: {}", bad.join(", "))),
                    (false, false) => Ok(Value::Bool(false)),
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
                returns_none,
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
                Ok(if *returns_none {
                    Value::Null
                } else {
                    Value::Bool(true)
                })
            }
        }
    }

    /// Undoes whatever meshdrill still has changed: every VirtualService it touched is
    /// restored, every mesh replica it killed is started again.
    /// `Ok(true)` when it undid something.
    async fn cleanup(&self, keep: bool, obs: &mut dyn Observer) -> Result<bool, String> {
        let (touched, killed) = {
            let sh = self.lock();
            (sh.touched.clone(), sh.killed.clone())
        };
        let Some(target) = self.target else {
            return Ok(false);
        };
        let mut lines = Vec::new();
        let mut undid = false;
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
                    undid = true;
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
                    Ok(_) => {
                        undid = true;
                        lines.push(format!(
                            "meshdrill restarted replica {svc}/{i} (terminated by the experiment)"
                        ));
                    }
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
            Ok(undid)
        } else {
            sh.cleanup
                .extend(failures.iter().map(|f| format!("FAILED: {f}")));
            Err(failures.join("; "))
        }
    }
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
    // A host a gateway-bound VirtualService serves goes through the ingress (as from
    // outside the cluster).
    let gateway_hosts = st
        .spec
        .virtual_services
        .iter()
        .filter(|v| {
            v.pointer("/spec/gateways")
                .and_then(Value::as_array)
                .is_some_and(|g| g.iter().any(|g| g.as_str() != Some("mesh")))
        })
        .filter_map(|v| v.pointer("/spec/hosts").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str);
    for h in gateway_hosts {
        let hit = h == host || (h.starts_with("*.") && host.ends_with(&h[1..])) || h == "*";
        if hit {
            return Ok((rewrite(st.ingress_port), Some(authority)));
        }
    }
    // A service's name — short, `svc.NS`, `svc.NS.svc`, `svc.NS.svc.cluster.local` —
    // through that service's sidecar, as a pod calls it.
    let labels: Vec<&str> = host.split('.').collect();
    let service = match labels.as_slice() {
        [svc] => Some(*svc),
        [svc, _ns] => Some(*svc),
        [svc, _ns, "svc"] => Some(*svc),
        [svc, _ns, "svc", "cluster", "local"] => Some(*svc),
        _ => None,
    };
    if let Some(port) = service.and_then(|s| st.sidecar_ports.get(s)) {
        return Ok((rewrite(*port), Some(authority)));
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
/// `{status, stdout, stderr}`; a non-zero exit is not a failure. The process leads its
/// own process group (a terminal's Ctrl-C reaches meshdrill only); on a timeout or a
/// cancellation the whole group is killed, so nothing it started lingers.
async fn process(p: &ProcessCall) -> Result<Value, String> {
    use std::os::unix::process::ExitStatusExt;

    /// Kills the group unless the process ended by itself.
    struct Group(Option<u32>);
    impl Drop for Group {
        fn drop(&mut self) {
            if let Some(pgid) = self.0 {
                let _ = crate::mesh::sys::signal_group(pgid, libc::SIGKILL);
            }
        }
    }

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
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", p.argv[0]))?;
    let mut group = Group(child.id());
    let run = child.wait_with_output();
    let out = match p.timeout {
        Some(t) => tokio::time::timeout(t, run)
            .await
            .map_err(|_| format!("{} timed out after {}s", p.argv[0], t.as_secs_f64()))?,
        None => run.await,
    }
    .map_err(|e| format!("cannot run {}: {e}", p.argv[0]))?;
    group.0 = None;
    // Killed by a signal: Python's subprocess reports -signum.
    let status = out
        .status
        .code()
        .unwrap_or_else(|| -out.status.signal().unwrap_or(1));
    Ok(json!({
        "status": status,
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

/// A load step in one line: the command and meshdrill's first figures.
fn load_line(l: &LoadCall, output: &Value) -> String {
    let figures = output["stdout"]
        .as_str()
        .unwrap_or("")
        .lines()
        .take(3)
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{} on meshdrill's load engine: {figures}", l.command)
}

/// The load engine's configuration for a siege call (`url`, with `host` as the Host
/// header unless the call sets one).
fn load_config(
    l: &LoadCall,
    url: String,
    host: Option<String>,
) -> Result<crate::load::LoadConfig, String> {
    let mut b = crate::load::LoadConfig::builder(url)
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
    b.build().map_err(|e| format!("`{}`: {e}", l.command))
}

/// What a siege activity prints: meshdrill's own figures (not siege's), every request
/// counted, failures and timeouts in the latency at the time they took.
fn siege_summary(report: &crate::load::LoadReport, connections: usize) -> String {
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
        connections,
    );
    stdout
}
