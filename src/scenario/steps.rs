//! The method's steps that act on the target: changes (and the PATCH that may land
//! late), kills and restarts, holds with their retry checks, floods.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::collect::Collector;
use super::collect::summarize;
use super::journal::{ChangeRecord, Ending, PhaseKind, PhaseRecord};
use super::model::{FailureSource, Flood, Hold, Step, VsRef};
use super::runner::{Event, Halt, RETRY_SETTLE, Runner, Touched, secs};
use super::verdict::combine_v;
use crate::cancel::Cancel;
use crate::istio::{Change, RouteSelector};
use crate::load::{self, LoadReport, Stop};
use crate::slo;
use crate::slo::retry::{RetryMeasurement, RetryPolicy, RetryValidation};
use crate::target::{self, Target};

impl Runner<'_> {
    /// Applies a change (or a clear) and records it.
    pub(super) async fn change(
        &mut self,
        step: &Step,
        vs: &VsRef,
        selector: &RouteSelector,
        change: Option<&Change>,
    ) -> Result<(), Halt> {
        let ns = vs.namespace.as_deref();
        if change.is_some() && self.opts.exclusive {
            // Another drill may have started on it since the preflight: refuse, as the
            // preflight does, rather than stack on it (our rollback would undo it).
            self.owned_by_us_or_free(step, vs).await?;
            // Touched before the PATCH: one whose outcome is unknown (no answer, and
            // the object could not be read again) is cleared at the rollback too — a
            // clear finds nothing if it never landed.
            self.touch(&vs.name, vs.namespace.as_deref());
        }
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
                // It may land later than anyone watches: the rollback clears it anyway
                // (a clear finds nothing if it never landed).
                self.touch(&vs.name, vs.namespace.as_deref());
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
            self.touch(&vs.name, Some(&changed.namespace));
        }
        let record = ChangeRecord {
            step: Some(step.index),
            action: match change {
                Some(Change::Retries { .. }) => "retries",
                Some(Change::Timeout(_)) => "timeout",
                Some(Change::Delay(_) | Change::Abort(_) | Change::RemoveFault(_)) => "fault",
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

    /// Records that the rollback must restore `name` (once: a namespace learnt later
    /// completes an entry that had none).
    pub(super) fn touch(&mut self, name: &str, namespace: Option<&str>) {
        if let Some(t) = self.touched.iter_mut().find(|t| {
            t.name == name
                && (t.namespace.is_none()
                    || namespace.is_none()
                    || t.namespace.as_deref() == namespace)
        }) {
            if t.namespace.is_none() {
                t.namespace = namespace.map(str::to_string);
            }
            return;
        }
        self.touched.push(Touched {
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
        });
    }

    /// Refuses a VirtualService that carries another run's drill.
    async fn owned_by_us_or_free(&self, step: &Step, vs: &VsRef) -> Result<(), Halt> {
        let obj = self
            .target
            .current(&vs.name, vs.namespace.as_deref())
            .await
            .map_err(|e| self.step_error(step, e))?;
        match crate::istio::read_record(&obj) {
            Ok(Some(r)) if r.run_id != self.meta.run_id => Err(Halt::End(Ending::TargetError {
                message: format!(
                    "{}: conflict: VirtualService {} took on another drill (run {}, {}@{}) since this one started; this step changed nothing. Check with `meshdrill status`",
                    step.at, vs.name, r.run_id, r.owner.user, r.owner.host
                ),
            })),
            _ => Ok(()),
        }
    }

    /// A PATCH that may still land: watch for it and roll it back if it does.
    pub(super) async fn late_landing(&mut self, vs: &VsRef, e: crate::cluster::Error) -> Ending {
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
        // A signal ends the watch: the rollback clears the VirtualService anyway, if
        // the change has landed by then.
        let settled = tokio::select! {
            r = c.settle_late_landing(&ns, &vs.name, run_id, target::rollback_budget()) => Some(r),
            () = self.cancel.cancelled() => None,
        };
        let message = match settled {
            Some(Ok(true)) => format!(
                "{e}\nThe change landed after the timeout and was rolled back; nothing is left on {ns}/{}",
                vs.name
            ),
            Some(Ok(false)) => e.to_string(),
            None => format!(
                "{e}\n{} ended the watch for it before it showed up: if it lands later, it carries its drill record and expiry, and `meshdrill recover -n {ns}` restores {ns}/{} then",
                self.cancel.signal().map_or("a signal", |s| s.name()),
                vs.name
            ),
            Some(Err(r)) => format!(
                "{e}\nThe change landed after the timeout, and rolling it back failed: {r}; `meshdrill recover -n {ns}` restores it after its expiry"
            ),
        };
        Ending::TargetError { message }
    }

    pub(super) async fn kill(
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
                let batches: Vec<Option<usize>> = match count.filter(|_| replica.is_none()) {
                    Some(n) => (0..n as usize).map(Some).collect(),
                    None => vec![targets],
                };
                for b in batches {
                    match m.kill(svc, b).await {
                        Ok(k) => {
                            // Each killed replica is restarted at the rollback, even
                            // when a later kill of this step fails.
                            for i in &k {
                                self.killed.push((svc.to_string(), Some(*i)));
                            }
                            done.extend(k);
                        }
                        Err(e) => return Err(self.step_error(step, e)),
                    }
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

    pub(super) async fn restart(
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

    pub(super) fn step_error(&self, step: &Step, e: target::Error) -> Halt {
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

    pub(super) async fn hold(&mut self, step: &Step, h: &Hold) -> Result<(), Halt> {
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
            let mut v = self.retry_validation(&rec, &policy, p, retried, cluster.as_deref());
            // Retries on several hops multiply: say so with every validation.
            for c in &self.retry_chains {
                v.detail
                    .push_str(&format!("\nworst case: retries multiply along {c}"));
            }
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
    pub(super) async fn retry_inputs(
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
        let policy = crate::mesh::translate::route_retry_policy(&route);
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
                // The first route of the upstream that injects an abort.
                let abort = uv
                    .pointer("/spec/http")
                    .and_then(Value::as_array)
                    .and_then(|routes| routes.iter().find_map(|r| r.pointer("/fault/abort")));
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

    pub(super) fn retry_validation(
        &self,
        rec: &PhaseRecord,
        policy: &RetryPolicy,
        p: f64,
        retried: bool,
        cluster: Option<&str>,
    ) -> RetryValidation {
        let mut m = RetryMeasurement {
            requests: rec.summary.requests,
            succeeded: rec.summary.succeeded(),
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

    pub(super) fn start_flood(&mut self, f: &Flood) -> Result<FloodRun, Halt> {
        let config = self
            .load_config(&f.load, Self::rate_of(&f.load), Stop::Duration(f.duration))
            .map_err(Halt::End)?;
        let collector = Arc::new(Mutex::new(Collector::new(
            self.t0,
            true,
            f.slos.clone(),
            Vec::new(),
        )));
        let id = collector
            .lock()
            .map(|mut c| c.open_phase(Duration::ZERO, "flood"))
            .unwrap_or(0);
        let c2 = collector.clone();
        let stop = self.method.child();
        let on_snapshot = move |snap: &load::IntervalSnapshot| {
            if let Ok(mut c) = c2.lock() {
                c.on_snapshot(snap);
            }
        };
        let handle = if f.workers > 1 {
            // Split across local meshdrill worker processes, merged exactly; a worker
            // that fails makes the flood's figures partial, which is an error here.
            let exe = std::env::current_exe().map_err(|e| {
                Halt::End(Ending::TargetError {
                    message: format!(
                        "cannot find the meshdrill executable to start the flood's workers: {e}"
                    ),
                })
            })?;
            let n = f.workers;
            let stop = stop.clone();
            tokio::spawn(async move {
                let backend = crate::fleet::Backend::Local { exe };
                let start_at = crate::fleet::start_time(n);
                let r = crate::fleet::run(&config, n, start_at, backend, stop, on_snapshot)
                    .await
                    .map_err(|e| e.to_string())?;
                if r.partial {
                    let why: Vec<String> = r
                        .workers
                        .iter()
                        .filter(|w| !w.complete)
                        .map(|w| {
                            let why = w.problem.clone().unwrap_or_else(|| w.ended());
                            format!("worker {} of {n} ({why})", w.index)
                        })
                        .collect();
                    return Err(format!(
                        "the flood is partial: {} failed; its share is missing",
                        why.join(", ")
                    ));
                }
                Ok(r.report)
            })
        } else {
            let h = load::spawn(config, stop.clone(), on_snapshot);
            tokio::spawn(async move {
                match h.await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            })
        };
        Ok(FloodRun {
            handle,
            collector,
            id,
            url: self.resolve_url(&f.load.url),
            stop,
        })
    }

    /// Waits for the flood's end — its own duration, then its requests in flight, up
    /// to its timeout, so hung requests count — or cancels it when the method halted.
    pub(super) async fn finish_flood(
        &mut self,
        fr: FloodRun,
        f: Option<&Flood>,
        halted: bool,
    ) -> Result<super::journal::FloodRecord, Halt> {
        if halted {
            fr.stop.cancel();
        }
        let failed = match fr.handle.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            return Err(Halt::End(Ending::TargetError {
                message: format!("the flood to {} failed: {e}", fr.url),
            }));
        }
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
        Ok(super::journal::FloodRecord {
            url: fr.url,
            summary: measured
                .as_ref()
                .map(|m| summarize(&m.data, m.duration, m.asked_rps))
                .unwrap_or_default(),
            slos,
            series,
        })
    }

    // === dry run ===
}

pub(super) struct FloodRun {
    handle: tokio::task::JoinHandle<Result<LoadReport, String>>,
    collector: Arc<Mutex<Collector>>,
    id: usize,
    url: String,
    stop: Cancel,
}
