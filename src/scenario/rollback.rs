//! The rollback, always: every VirtualService meshdrill changed restored first (the
//! faults go before anything else), then every killed replica restarted, then the
//! scenario's `rollbacks` (as the strategy says, and only when the method began). A
//! signal during it warns; the next one abandons what is left.

use serde_json::Value;

use super::journal::{Ending, RollbackRecord};
use super::model::{Step, StepKind};
use super::runner::{Event, RollbackStrategy, Runner, Touched, secs};
use crate::target::{self, Cleared, Target};

impl Runner<'_> {
    pub(super) async fn rollback(&mut self, ending: &Ending, deviated: bool) -> Option<Ending> {
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
        // A drill that never began (bad input, an unreachable target, an unsteady
        // system) has nothing the scenario's rollbacks could be for.
        let user = self.method_began
            && match self.opts.rollback_strategy {
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
        let mut seen = cancel.count();
        // After a signal, the next one abandons; after none, the first only warns.
        let mut warned = signalled;
        let mut failed: Vec<String> = Vec::new();
        // The actions, in order: every VirtualService meshdrill changed (last changed
        // first), restarts of killed replicas, then the scenario's rollbacks.
        let mut actions: Vec<Action> = Vec::new();
        for t in self.touched.clone().into_iter().rev() {
            actions.push(Action::Clear(t));
        }
        for (svc, r) in self.killed.clone() {
            actions.push(Action::Restart(svc, r));
        }
        if user {
            for st in &self.s.rollbacks {
                actions.push(Action::Step(st));
            }
        }
        for a in actions {
            let label = a.label();
            let fut = rollback_one(tgt, &a);
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
}

/// One rollback action: (ok, outcome text, patch, what a clear found).
pub(super) async fn rollback_one(
    tgt: &Target,
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
            _ => (false, "not a rollback step".into(), Value::Null, None),
        },
    }
}

/// One rollback action.
pub(super) enum Action<'s> {
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
