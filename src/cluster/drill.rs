//! VirtualServices on the cluster: discovery, reads, guarded patches, rollback, and
//! the drill records `status` and `recover` work from.

use json_patch::Patch;
use kube::api::{Api, DynamicObject, ListParams, PatchParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use super::{ApiFailure, Cluster, Error, GROUP, VERSIONS, go_escape, read_with_retry};
use crate::cancel::Cancel;
use crate::istio::manifest::escape_pointer;
use crate::istio::{
    ANNOTATION, Change, DrillInfo, DrillRecord, PlanError, RecordMeta, RouteSelector, plan_change,
    plan_clear, read_record,
};

/// Attempts of a patch whose only conflict is an unrelated change of resourceVersion.
const PATCH_ATTEMPTS: usize = 3;

const UNCHANGED: &str = "nothing was changed";
const UNKNOWN: &str = "the API server gave no usable answer and the object could not be read again: the patch may have been applied; check with `meshdrill status` (a change carries an expiry for `meshdrill recover`)";
/// A timeout or 5xx, and the object read again does not show the change (yet): the
/// API server may still carry it out ("may still be processing the request").
const MAYBE_LATER: &str = "the API server gave no answer in time and the object does not show the change yet, but the server may still apply it: check with `meshdrill status`; `meshdrill clear` or `meshdrill recover` removes it (it carries an expiry)";

/// The same for a rollback: the drill is still on the object, for now.
const ROLLBACK_LATER: &str = "the API server gave no answer in time and the object still carries the drill, but the server may still apply the rollback: check with `meshdrill status`, then run `meshdrill clear` again if needed";

/// Whether a failed PATCH (no HTTP status, or a 5xx) may still be carried out later.
fn may_land_later(f: &ApiFailure) -> bool {
    f.status.is_none_or(|c| c >= 500)
}

/// Whether a PATCH that got no usable answer may have landed.
enum Landed {
    /// The server answered with a client error: it did not apply the patch.
    No,
    /// The object as read again afterwards (the caller decides whether it landed).
    Yes(Value),
    /// It could not be read again.
    Unknown,
}

/// The VirtualService API the server serves.
#[derive(Debug, Clone)]
pub struct VsApi {
    resource: ApiResource,
    /// The version in use (v1 > v1beta1 > v1alpha3).
    pub version: String,
    /// Every served version that has VirtualServices.
    pub served: Vec<String>,
}

/// A change carried out (or, with dry run, planned).
#[derive(Debug, Clone)]
pub struct Applied {
    /// The object as the server returned it (or as planned, with dry run).
    pub object: Value,
    /// The patch sent (or that would be sent).
    pub patch: Patch,
    pub record: DrillRecord,
    pub routes: Vec<usize>,
    pub warnings: Vec<String>,
}

/// The outcome of a rollback.
// Returned once per rollback, never stored in bulk: boxing the record buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Cleared {
    /// The object carries no drill record: nothing to do.
    Nothing { object: Value },
    /// The object is gone (deleted meanwhile): there is nothing to restore.
    Gone,
    /// Every route meshdrill changed is back as it was.
    Restored {
        object: Value,
        patch: Patch,
        record: DrillRecord,
        /// A forced clear's overwritten edits ([`crate::istio::ClearPlan::overwritten`]).
        overwritten: Vec<String>,
    },
}

fn interrupted(ns: &str, name: &str) -> Error {
    Error::Interrupted {
        namespace: ns.into(),
        name: name.into(),
    }
}

/// Why the API server refused a write although nothing changed under it.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A JSON Patch `test` failed: on kube-apiserver a 422 whose Status is generic (no
    /// causes, no "is invalid": handlers/patch.go `NewGenericServerResponse`).
    TestFailed,
    /// The changed object breaks the CRD's schema: a 422 "… is invalid: FIELD: …" with
    /// `causes` naming the fields.
    Schema { fields: Vec<String> },
    /// An admission webhook denied it: `admission webhook "NAME" denied the request`
    /// (400, or the webhook's own code such as 403).
    Webhook { name: String },
    /// Anything else (RBAC 403, 404, ...): the Status says it all.
    Other,
}

fn refusal(f: &ApiFailure) -> Refusal {
    const DENIED: &str = "admission webhook \"";
    if let Some(rest) = f.message.split_once(DENIED).map(|(_, r)| r)
        && let Some((name, tail)) = rest.split_once('"')
        && tail.trim_start().starts_with("denied the request")
    {
        return Refusal::Webhook { name: name.into() };
    }
    match f.status {
        Some(422) if !f.fields.is_empty() || f.message.contains(" is invalid: ") => {
            Refusal::Schema {
                fields: f.fields.clone(),
            }
        }
        Some(422) => Refusal::TestFailed,
        _ => Refusal::Other,
    }
}

/// What a refused write means for the user, and what to do (the object is unchanged).
fn refused(f: &ApiFailure) -> String {
    match refusal(f) {
        Refusal::TestFailed => "a `test` operation of the patch failed although the object did not change since meshdrill read it; nothing was changed. Check the drill with `meshdrill status` and the object with `kubectl get virtualservice -o yaml`".into(),
        Refusal::Schema { fields } => {
            let at = if fields.is_empty() {
                "a field (named above)".to_string()
            } else {
                fields.join(", ")
            };
            format!(
                "the cluster's VirtualService schema (its CRD) rejects the changed object at {at}; nothing was changed. The CRD is checked on the whole object: fix that field on the object (`kubectl edit virtualservice`), or check the Istio CRDs installed (`kubectl get crd virtualservices.{GROUP} -o yaml`) against the cluster's Istio version"
            )
        }
        Refusal::Webhook { name } if name == "validation.istio.io" => "Istio's validating webhook (validation.istio.io) refused the changed object for the reason above; nothing was changed. The webhook checks the whole object, so the reason may be in a route meshdrill did not touch: check the object with `istioctl validate` or `meshdrill validate`, and the cluster's Istio version".into(),
        Refusal::Webhook { name } => format!(
            "the admission webhook {name:?} (a policy of this cluster, not Istio's validation) refused the change for the reason above; nothing was changed. Ask the cluster's operators whether drills may change this VirtualService"
        ),
        Refusal::Other => UNCHANGED.into(),
    }
}

fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

fn rv(o: &Value) -> Option<&Value> {
    o.pointer("/metadata/resourceVersion")
}

impl Cluster {
    /// Finds the VirtualService API: `networking.istio.io` v1, else v1beta1, else v1alpha3.
    pub async fn virtual_services(&self) -> Result<VsApi, Error> {
        let group = read_with_retry(|| kube::discovery::group(&self.client, GROUP)).await;
        let group = match group {
            Ok(g) => g,
            Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
                return Err(Error::NoVirtualServiceApi {
                    server: self.server.clone(),
                    served: "none".into(),
                });
            }
            Err(e) => {
                return Err(Error::Discover {
                    server: self.server.clone(),
                    failure: self.failure(&e),
                });
            }
        };
        let mut served = Vec::new();
        let mut found = Vec::new();
        for v in group.versions() {
            if let Some((ar, _)) = group
                .versioned_resources(v)
                .into_iter()
                .find(|(ar, _)| ar.kind == "VirtualService")
            {
                served.push(v.to_string());
                found.push(ar);
            }
        }
        let pick = VERSIONS
            .iter()
            .find_map(|want| found.iter().find(|ar| ar.version == *want))
            .cloned();
        match pick {
            Some(resource) => Ok(VsApi {
                version: resource.version.clone(),
                resource,
                served,
            }),
            None => Err(Error::NoVirtualServiceApi {
                server: self.server.clone(),
                served: if served.is_empty() {
                    group.versions().collect::<Vec<_>>().join(", ")
                } else {
                    served.join(", ")
                },
            }),
        }
    }

    fn vs(&self, api: &VsApi, ns: Option<&str>) -> Api<DynamicObject> {
        match ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &api.resource),
            None => Api::all_with(self.client.clone(), &api.resource),
        }
    }

    /// Reads one VirtualService.
    pub async fn get_vs(&self, api: &VsApi, ns: &str, name: &str) -> Result<Value, Error> {
        let vs = self.vs(api, Some(ns));
        read_with_retry(|| vs.get(name))
            .await
            .map(|o| to_value(&o))
            .map_err(|e| Error::GetVirtualService {
                namespace: ns.into(),
                name: name.into(),
                failure: self.failure(&e),
            })
    }

    /// Lists VirtualServices in `ns`, or in every namespace.
    pub async fn list_vs(&self, api: &VsApi, ns: Option<&str>) -> Result<Vec<Value>, Error> {
        let vs = self.vs(api, ns);
        let lp = ListParams::default();
        read_with_retry(|| vs.list(&lp))
            .await
            .map(|l| l.items.iter().map(to_value).collect())
            .map_err(|e| {
                let mut failure = self.failure(&e);
                if ns.is_none() && failure.status == Some(403) && failure.hint.is_none() {
                    failure.hint = Some(self.cluster_scope_hint());
                }
                Error::ListVirtualServices {
                    scope: ns.map_or("all namespaces".into(), |n| format!("namespace {n}")),
                    failure,
                }
            })
    }

    /// What to do when listing across all namespaces (`-A`) is forbidden: the rights
    /// are likely a namespaced Role (as `deploy/recover-cronjob.yaml` grants).
    fn cluster_scope_hint(&self) -> String {
        format!(
            "hint: -A lists VirtualServices across the cluster, which needs `list virtualservices.{GROUP}` at the cluster scope (a ClusterRole bound with a ClusterRoleBinding); these credentials ({user}) lack it, e.g. because their rights come from a namespaced Role. Run it per namespace instead: `-n NAMESPACE` (this identity's namespace: {ns}); `meshdrill cluster check -n NAMESPACE` shows what is allowed there",
            user = self.user,
            ns = self.namespace,
        )
    }

    /// Sends a JSON Patch (`application/json-patch+json`); never retried.
    ///
    /// The body is written as Go's encoding/json writes the stored object (`<`, `>`,
    /// `&`, U+2028, U+2029 escaped): the API server applies JSON Patch with
    /// evanphx/json-patch, which compares `test` values by their compacted raw bytes,
    /// so a `test` over a string holding `&` would fail if sent unescaped.
    async fn patch_vs(
        &self,
        api: &VsApi,
        ns: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<Value, Box<ApiFailure>> {
        let url = <DynamicObject as kube::Resource>::url_path(&api.resource, Some(ns));
        let p: kube::api::Patch<()> = kube::api::Patch::Json(patch.clone());
        let req = kube::core::Request::new(url)
            .patch(name, &PatchParams::default(), &p)
            .map_err(|e| self.failure(&kube::Error::BuildRequest(e)))?;
        let (parts, body) = req.into_parts();
        let mut req = http::Request::from_parts(parts, go_escape(&body));
        req.extensions_mut().insert("patch");
        self.client
            .request::<DynamicObject>(req)
            .await
            .map(|o| to_value(&o))
            .map_err(|e| self.failure(&e))
    }

    /// Reads the object unless `stop` was cancelled first (then [`Error::Interrupted`]).
    async fn get_unless_stopped(
        &self,
        api: &VsApi,
        ns: &str,
        name: &str,
        stop: Option<&Cancel>,
    ) -> Result<Value, Error> {
        let Some(stop) = stop else {
            return self.get_vs(api, ns, name).await;
        };
        tokio::select! {
            r = self.get_vs(api, ns, name) => r,
            () = stop.cancelled() => Err(interrupted(ns, name)),
        }
    }

    /// After a failed PATCH: a timeout, a reset or a 5xx may still have been carried
    /// out by the server ("may still be processing the request"), so read it again.
    async fn landed(&self, api: &VsApi, ns: &str, name: &str, f: &ApiFailure) -> Landed {
        if f.status.is_some_and(|c| c < 500) {
            return Landed::No;
        }
        match self.get_vs(api, ns, name).await {
            Ok(now) => Landed::Yes(now),
            Err(_) => Landed::Unknown,
        }
    }

    /// Plans `change` on the object as it is now and sends the guarded patch. A concurrent
    /// edit of the touched routes (or of the drill record) is a [`Error::Conflict`];
    /// an unrelated edit (resourceVersion only) is re-planned, at most a few times.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_change(
        &self,
        api: &VsApi,
        ns: &str,
        name: &str,
        selector: &RouteSelector,
        change: &Change,
        meta: &RecordMeta,
        dry_run: bool,
        stop: Option<&Cancel>,
    ) -> Result<Applied, Error> {
        let mut last = None;
        for _ in 0..PATCH_ATTEMPTS {
            let obj = self.get_unless_stopped(api, ns, name, stop).await?;
            let plan = plan_change(&obj, selector, change, meta).map_err(Error::Plan)?;
            if dry_run {
                return Ok(Applied {
                    object: plan.after,
                    patch: plan.patch,
                    record: plan.record,
                    routes: plan.routes,
                    warnings: plan.warnings,
                });
            }
            // The last moment a signal can stop the drill with nothing changed.
            if stop.is_some_and(Cancel::is_cancelled) {
                return Err(interrupted(ns, name));
            }
            match self.patch_vs(api, ns, name, &plan.patch).await {
                Ok(object) => {
                    return Ok(Applied {
                        object,
                        patch: plan.patch,
                        record: plan.record,
                        routes: plan.routes,
                        warnings: plan.warnings,
                    });
                }
                Err(f) if f.maybe_conflict() => {
                    let now = self.get_vs(api, ns, name).await?;
                    if let Some(detail) = what_changed(&obj, &now, &plan.routes) {
                        return Err(Error::Conflict {
                            namespace: ns.into(),
                            name: name.into(),
                            detail: format!("{detail} (the API server answered {f})"),
                        });
                    }
                    if rv(&obj) == rv(&now) {
                        return Err(Error::PatchVirtualService {
                            namespace: ns.into(),
                            name: name.into(),
                            outcome: refused(&f),
                            failure: f,
                        });
                    }
                    last = Some(f);
                }
                Err(f) => {
                    let outcome = match self.landed(api, ns, name, &f).await {
                        Landed::Yes(now) if landed_as_planned(&now, &plan.after) => {
                            return Ok(Applied {
                                object: now,
                                patch: plan.patch,
                                record: plan.record,
                                routes: plan.routes,
                                warnings: plan.warnings,
                            });
                        }
                        Landed::Unknown => UNKNOWN.to_string(),
                        Landed::Yes(_) if may_land_later(&f) => {
                            return Err(Error::MayStillApply {
                                namespace: ns.into(),
                                name: name.into(),
                                failure: f,
                                run_id: plan.record.run_id,
                                detail: MAYBE_LATER.into(),
                            });
                        }
                        Landed::No => refused(&f),
                        _ => UNCHANGED.to_string(),
                    };
                    return Err(Error::PatchVirtualService {
                        namespace: ns.into(),
                        name: name.into(),
                        failure: f,
                        outcome,
                    });
                }
            }
        }
        Err(Error::Conflict {
            namespace: ns.into(),
            name: name.into(),
            detail: format!(
                "the object kept changing while meshdrill patched it{}",
                last.map(|f| format!(" (last answer: {f})"))
                    .unwrap_or_default()
            ),
        })
    }

    /// Rolls back everything meshdrill changed on the object (its recorded inverse,
    /// with its own `test` ops). A route someone edited since is a conflict.
    pub async fn clear(
        &self,
        api: &VsApi,
        ns: &str,
        name: &str,
        dry_run: bool,
        force: bool,
    ) -> Result<Cleared, Error> {
        let conflict = |e: PlanError| match e {
            PlanError::Conflict { detail, .. } => Error::Conflict {
                namespace: ns.into(),
                name: name.into(),
                detail,
            },
            other => Error::Plan(other),
        };
        let mut last = None;
        for _ in 0..PATCH_ATTEMPTS {
            let obj = self.get_vs(api, ns, name).await?;
            let Some(plan) = plan_clear(&obj, force).map_err(conflict)? else {
                return Ok(Cleared::Nothing { object: obj });
            };
            if dry_run {
                return Ok(Cleared::Restored {
                    object: plan.after,
                    patch: plan.patch,
                    record: plan.record,
                    overwritten: plan.overwritten,
                });
            }
            match self.patch_vs(api, ns, name, &plan.patch).await {
                Ok(object) => {
                    return Ok(Cleared::Restored {
                        object,
                        patch: plan.patch,
                        record: plan.record,
                        overwritten: plan.overwritten,
                    });
                }
                Err(f) if f.maybe_conflict() => {
                    let now = self.get_vs(api, ns, name).await?;
                    match plan_clear(&now, force).map_err(conflict)? {
                        None => return Ok(Cleared::Nothing { object: now }),
                        Some(_) if rv(&obj) == rv(&now) => {
                            return Err(Error::PatchVirtualService {
                                namespace: ns.into(),
                                name: name.into(),
                                outcome: refused(&f),
                                failure: f,
                            });
                        }
                        Some(_) => last = Some(f),
                    }
                }
                Err(f) => {
                    let outcome = match self.landed(api, ns, name, &f).await {
                        Landed::Yes(now) if matches!(read_record(&now), Ok(None)) => {
                            return Ok(Cleared::Restored {
                                object: now,
                                patch: plan.patch,
                                record: plan.record,
                                overwritten: plan.overwritten,
                            });
                        }
                        Landed::Unknown => UNKNOWN.to_string(),
                        Landed::Yes(_) if may_land_later(&f) => ROLLBACK_LATER.to_string(),
                        Landed::No => refused(&f),
                        _ => UNCHANGED.to_string(),
                    };
                    return Err(Error::PatchVirtualService {
                        namespace: ns.into(),
                        name: name.into(),
                        failure: f,
                        outcome,
                    });
                }
            }
        }
        Err(Error::Conflict {
            namespace: ns.into(),
            name: name.into(),
            detail: format!(
                "the object kept changing while meshdrill restored it{}",
                last.map(|f| format!(" (last answer: {f})"))
                    .unwrap_or_default()
            ),
        })
    }

    /// [`Cluster::clear`] until it is done, for a rollback that must not give up on a
    /// throttled or failing API server: a 429, a 5xx or no answer is tried again
    /// (re-read and re-planned each time, so it cannot apply twice) with exponential
    /// backoff (0.2 s doubling to 15 s), at most 40 tries and for about `budget`. A 404
    /// means the
    /// object is gone: [`Cleared::Gone`]. `on_retry` hears about each retry.
    pub async fn rollback(
        &self,
        api: &VsApi,
        ns: &str,
        name: &str,
        budget: std::time::Duration,
        force: bool,
        mut on_retry: impl FnMut(&Error, std::time::Duration),
    ) -> Result<Cleared, Error> {
        const ATTEMPTS: u32 = 40;
        let start = tokio::time::Instant::now();
        let mut delay = std::time::Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self.clear(api, ns, name, false, force).await {
                Err(e) if e.status() == Some(404) => return Ok(Cleared::Gone),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    let left = budget.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(e);
                    }
                    let wait = delay.min(left);
                    on_retry(&e, wait);
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(15));
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// VirtualServices in `ns` (or all namespaces) that carry a drill record.
    pub async fn drills(&self, api: &VsApi, ns: Option<&str>) -> Result<Vec<DrillInfo>, Error> {
        let items = self.list_vs(api, ns).await?;
        let mut out = Vec::new();
        for o in items {
            let record = match read_record(&o) {
                Ok(None) => continue,
                Ok(Some(r)) => Ok(r),
                Err(e) => Err(e.to_string()),
            };
            let text = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            };
            out.push(DrillInfo {
                namespace: text("/metadata/namespace"),
                name: text("/metadata/name"),
                record,
            });
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(out)
    }
}

/// Whether the object read again after a failed PATCH carries the drill record the
/// patch writes — or, for a removal that ended the drill, carries none as planned.
fn landed_as_planned(now: &Value, planned: &Value) -> bool {
    matches!((read_record(now), read_record(planned)), (Ok(a), Ok(b)) if a == b)
}

/// What someone else changed between `before` (what the plan was made on) and `now`
/// among the things the plan guards: the touched routes and the drill record.
fn what_changed(before: &Value, now: &Value, routes: &[usize]) -> Option<String> {
    let mut found = Vec::new();
    for &i in routes {
        let p = format!("/spec/http/{i}");
        match (before.pointer(&p), now.pointer(&p)) {
            (Some(a), Some(b)) if a != b => found.push(format!(
                "spec.http[{i}] was edited ({})",
                crate::istio::patch::edits(&p, a, Some(b))
            )),
            (Some(_), None) => found.push(format!("spec.http[{i}] was removed")),
            _ => {}
        }
    }
    let ann = format!("/metadata/annotations/{}", escape_pointer(ANNOTATION));
    if before.pointer(&ann) != now.pointer(&ann) {
        found.push(
            "the meshdrill.io/drill annotation changed (another drill started or ended)".into(),
        );
    }
    if found.is_empty() {
        None
    } else {
        Some(format!("{} since meshdrill read it", found.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_changed_names_the_edited_route_field() {
        let a = json!({"spec": {"http": [{"route": [{"destination": {"host": "a"}}]}]}});
        let mut b = a.clone();
        b["spec"]["http"][0]["timeout"] = json!("1s");
        let d = what_changed(&a, &b, &[0]).expect("a change");
        assert!(d.contains("spec.http[0].timeout: (none) -> \"1s\""), "{d}");
        assert_eq!(what_changed(&a, &a, &[0]), None);
    }

    fn failure(status: u16, message: &str, fields: &[&str]) -> ApiFailure {
        ApiFailure {
            status: Some(status),
            reason: String::new(),
            message: message.into(),
            via: None,
            causes: Vec::new(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            hint: None,
        }
    }

    #[test]
    fn a_refusal_is_told_apart_by_its_status_causes_and_webhook() {
        let generic = "the server rejected our request due to an error in our request";
        assert_eq!(refusal(&failure(422, generic, &[])), Refusal::TestFailed);
        let schema = failure(
            422,
            "VirtualService.networking.istio.io \"r\" is invalid: spec.http[0].timeout: Invalid value: \"integer\": ...",
            &["spec.http[0].timeout"],
        );
        assert_eq!(
            refusal(&schema),
            Refusal::Schema {
                fields: vec!["spec.http[0].timeout".into()]
            }
        );
        assert!(refused(&schema).contains("at spec.http[0].timeout"));
        let istio = "admission webhook \"validation.istio.io\" denied the request: configuration is invalid: x";
        assert_eq!(
            refusal(&failure(400, istio, &[])),
            Refusal::Webhook {
                name: "validation.istio.io".into()
            }
        );
        let policy =
            "admission webhook \"validation.gatekeeper.sh\" denied the request: [no-drills] no";
        let r = refused(&failure(403, policy, &[]));
        assert!(r.contains("\"validation.gatekeeper.sh\""), "{r}");
        assert!(!r.contains("`test`"), "{r}");
        let rbac =
            "virtualservices.networking.istio.io \"r\" is forbidden: User \"u\" cannot patch";
        assert_eq!(refusal(&failure(403, rbac, &[])), Refusal::Other);
    }
}
