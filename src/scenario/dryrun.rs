//! `--dry-run`: the plan and every patch, computed step after step on the objects as
//! they are now (each change planned on the result of the one before), sending nothing.

use std::collections::BTreeMap;

use serde_json::Value;

use super::journal::Ending;
use super::model::{Step, StepKind, VsRef};
use super::runner::{Event, Runner, human};
use crate::istio::{Change, RouteSelector};
use crate::target::Changed;

impl Runner<'_> {
    pub(super) async fn dry_run(&mut self) -> Ending {
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

    pub(super) async fn plan_step(
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
}
