//! `--dry-run`: the plan and every patch, computed step after step on the objects as
//! they are now (each change planned on the result of the one before), sending nothing.
//! The same planning runs silently before every real drill (the preflight), so a
//! route that is not there or a VirtualService another drill holds stops the drill
//! before anything is injected — never halfway through it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::journal::Ending;
use super::model::{SearchOver, Step, StepKind, VsRef};
use super::runner::{Event, Runner, human};
use crate::istio::{AbortSpec, Change, DelaySpec, Percentage, RouteSelector};
use crate::target::Changed;

/// A VirtualService in the plan: (name, namespace).
type Key = (String, String);
/// The objects as the planned steps leave them.
type Store = BTreeMap<Key, Value>;

/// A step that cannot be planned: the user's input (no such route) is exit 2, the
/// object's state (a conflict, a record too large, an unreadable record) exit 3 — as
/// the same error would be when the step runs.
fn plan_failed(step: &Step, e: crate::istio::PlanError) -> Ending {
    let message = format!("{}: {e}", step.at);
    if e.is_input() {
        Ending::InputError { message }
    } else {
        Ending::TargetError { message }
    }
}

impl Runner<'_> {
    pub(super) async fn dry_run(&mut self) -> Ending {
        // What a real run would refuse before injecting anything, a dry run refuses too.
        if let Err(e) = self.preflight(self.opts.exclusive).await {
            return e;
        }
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
        let mut store: Store = BTreeMap::new();
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

    /// Plans every step of the method and every rollback on the objects as they are,
    /// sending nothing: the drill stops here (exit 2) on a VirtualService or route that
    /// is not there, a search over a VirtualService an earlier step changed (its end
    /// would undo that change), or — when `exclusive` — a VirtualService that already
    /// carries a drill (a rollback would remove the other drill's changes too).
    pub(super) async fn preflight(&mut self, exclusive: bool) -> Result<(), Ending> {
        let mut store: Store = BTreeMap::new();
        for step in &self.s.method {
            match &step.kind {
                StepKind::Change {
                    vs,
                    selector,
                    change,
                } => {
                    self.read(step, vs, &mut store, exclusive).await?;
                    self.plan_on_store(step, vs, selector, Some(change), &mut store)?;
                }
                StepKind::Clear { vs } => {
                    self.read(step, vs, &mut store, exclusive).await?;
                    self.plan_on_store(step, vs, &RouteSelector::All, None, &mut store)?;
                }
                StepKind::Search(x) => {
                    if let SearchOver::Abort { vs, selector, .. }
                    | SearchOver::Delay { vs, selector, .. } = &x.over
                    {
                        let obj = self.read(step, vs, &mut store, exclusive).await?;
                        if matches!(crate::istio::read_record(&obj), Ok(Some(_))) {
                            return Err(Ending::InputError {
                                message: format!(
                                    "{}: search: an earlier step changed VirtualService {} and the search's end restores it as it was before the drill: clear it before the search, or search another one",
                                    step.at, vs.name
                                ),
                            });
                        }
                        let probe = match &x.over {
                            SearchOver::Delay { fixed, .. } => Change::Delay(DelaySpec {
                                fixed: *fixed,
                                percentage: Percentage::FIFTY,
                            }),
                            SearchOver::Abort { code, .. } => Change::Abort(AbortSpec {
                                code: *code,
                                percentage: Percentage::FIFTY,
                            }),
                            SearchOver::FloodRate { .. } => continue,
                        };
                        crate::istio::plan_change(&obj, selector, &probe, &self.meta)
                            .map_err(|e| plan_failed(step, e))?;
                    }
                }
                StepKind::Hold(h) => {
                    if let Some(rc) = &h.retry_check {
                        self.read(step, &rc.vs, &mut store, false).await?;
                        if let super::model::FailureSource::Upstream(up) = &rc.failure {
                            self.read(step, up, &mut store, false).await?;
                        }
                    }
                }
                _ => {}
            }
        }
        for step in &self.s.rollbacks {
            if let StepKind::Clear { vs } = &step.kind {
                self.read(step, vs, &mut store, false).await?;
            }
        }
        Ok(())
    }

    /// The key a step's VirtualService has in `store`: the stored one of that name
    /// whose namespace fits (a step without one means the target's default, or on a
    /// mesh the one VirtualService of that name).
    fn key_of(&self, vs: &VsRef, store: &Store) -> Option<Key> {
        let ns = vs
            .namespace
            .as_deref()
            .or_else(|| self.target.default_namespace());
        store
            .keys()
            .find(|(n, k)| n == &vs.name && ns.is_none_or(|ns| k == ns))
            .cloned()
    }

    /// The object a step acts on: as the earlier steps left it in `store`, else read
    /// from the target — and refused if another drill holds it: any other drill when
    /// `exclusive` (`run`), one whose process still runs otherwise (`fault --wait`
    /// stacks on a one-shot change, as `fault` does).
    async fn read(
        &self,
        step: &Step,
        vs: &VsRef,
        store: &mut Store,
        exclusive: bool,
    ) -> Result<Value, Ending> {
        if let Some(k) = self.key_of(vs, store)
            && let Some(o) = store.get(&k)
        {
            return Ok(o.clone());
        }
        let obj = self
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
            })?;
        let stacking = if exclusive {
            crate::istio::Stacking::Never
        } else {
            crate::istio::Stacking::OnFinished
        };
        if let Ok(Some(r)) = crate::istio::read_record(&obj)
            && stacking.refuses(&r, &self.meta.run_id)
        {
            return Err(Ending::InputError {
                message: format!(
                    "{}: VirtualService {} already carries a drill (run {}, {}@{}, expires {}): a drill does not stack on another, whose changes its rollback would remove too. Clear it (`meshdrill clear {}`), or after its expiry `meshdrill recover`",
                    step.at,
                    vs.name,
                    r.run_id,
                    r.owner.user,
                    r.owner.host,
                    r.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    vs.name
                ),
            });
        }
        let ns = vs
            .namespace
            .clone()
            .or_else(|| self.target.default_namespace().map(str::to_string))
            .unwrap_or_else(|| crate::mesh::control::vs_namespace(&obj).to_string());
        store.insert((vs.name.clone(), ns), obj.clone());
        Ok(obj)
    }

    /// Plans a change (or clear) on the stored object and keeps the result.
    fn plan_on_store(
        &self,
        step: &Step,
        vs: &VsRef,
        selector: &RouteSelector,
        change: Option<&Change>,
        store: &mut Store,
    ) -> Result<(), Ending> {
        let Some(key) = self.key_of(vs, store) else {
            return Ok(());
        };
        let Some(obj) = store.get(&key) else {
            return Ok(());
        };
        let after = match change {
            Some(c) => crate::istio::plan_change(obj, selector, c, &self.meta).map(|p| p.after),
            None => {
                crate::istio::plan_clear(obj, false).map(|p| p.map_or(obj.clone(), |p| p.after))
            }
        }
        .map_err(|e| plan_failed(step, e))?;
        store.insert(key, after);
        Ok(())
    }

    pub(super) async fn plan_step(
        &mut self,
        step: &Step,
        vs: &VsRef,
        selector: &RouteSelector,
        change: Option<&Change>,
        store: &mut Store,
    ) -> Result<(), Ending> {
        let obj = self.read(step, vs, store, self.opts.exclusive).await?;
        let key = self
            .key_of(vs, store)
            .unwrap_or_else(|| (vs.name.clone(), vs.namespace.clone().unwrap_or_default()));
        let planned = match change {
            Some(c) => crate::istio::plan_change(&obj, selector, c, &self.meta)
                .map(|p| (p.after, p.patch, p.routes, p.warnings, Some(p.record))),
            None => crate::istio::plan_clear(&obj, false).map(|p| match p {
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
        let (after, patch, routes, warnings, record) = planned.map_err(|e| plan_failed(step, e))?;
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
}
