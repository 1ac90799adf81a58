//! Changes as RFC 6902 JSON Patches with `test` guards, and their exact inverse.
//!
//! A change is planned against the object *as read*. The forward patch tests every
//! route it touches (and `metadata.resourceVersion` when there is one) before changing
//! it, so a concurrent edit makes the patch fail instead of being overwritten. The
//! inverse — which restores each touched route exactly as it was before meshdrill first
//! changed it — is recorded on the object itself in the [`ANNOTATION`] annotation,
//! together with who made the change and when it expires. The same record serves a
//! manifest file, a cluster object and the local mesh.
//!
//! Changes stack: a delay added to a route that meshdrill already aborted keeps the
//! abort, and the record still restores the route as it was before either.

use std::time::Duration;

use json_patch::Patch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::manifest::escape_pointer;
use super::spec::{Change, RouteSelector, describe_routes};

/// The annotation that holds a [`DrillRecord`].
pub const ANNOTATION: &str = "meshdrill.io/drill";

/// Errors planning a change or its rollback.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The object has no `spec.http` routes to change.
    #[error(
        "{object}: spec.http is missing or empty: meshdrill changes HTTP routes only (TCP/TLS routes have no faults or retries)"
    )]
    NoHttpRoutes { object: String },
    /// The object has no `metadata` mapping.
    #[error("{object}: metadata is missing or not a mapping")]
    NoMetadata { object: String },
    /// The route selector matched no route.
    #[error("{object}: no {selector}; the routes are:\n{routes}")]
    NoSuchRoute {
        object: String,
        selector: String,
        routes: String,
    },
    /// The drill annotation could not be read.
    #[error(
        "{object}: annotation {ANNOTATION} is not a meshdrill record ({reason}); remove it by hand if it was not written by meshdrill"
    )]
    BadRecord { object: String, reason: String },
    /// What meshdrill changed was changed again by someone else.
    #[error(
        "{object}: conflict: {detail}; nothing was changed. Inspect the object, then re-run, or remove the {ANNOTATION} annotation by hand to keep the current routes"
    )]
    Conflict { object: String, detail: String },
    /// The planner produced a patch that does not yield the planned object (a bug).
    #[error("{object}: internal error: planned patch does not apply: {reason}")]
    Internal { object: String, reason: String },
}

/// Who made a change, so `status` can show it and `recover --orphans` can tell whether
/// the owner still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    pub user: String,
}

impl Owner {
    /// This process on this host.
    pub fn current() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        Self {
            host,
            pid: std::process::id(),
            user: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .or_else(uid_label)
                .unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// `uid:N` from /proc, for processes without `$USER` (cron jobs, containers).
fn uid_label() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let uid = line.split_whitespace().nth(1)?;
    Some(format!("uid:{uid}"))
}

/// One applied change, as listed in the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeNote {
    /// Indices into `spec.http`.
    pub routes: Vec<usize>,
    /// Human summary, e.g. `abort HTTP 503 on 50%`.
    pub change: String,
    pub at: jiff::Timestamp,
}

/// What meshdrill keeps on an object it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillRecord {
    pub run_id: String,
    pub owner: Owner,
    pub started: jiff::Timestamp,
    pub expires: jiff::Timestamp,
    pub changes: Vec<ChangeNote>,
    /// Restores every changed route (`test` ops first); touches only `/spec`.
    pub inverse: Patch,
    /// `metadata.annotations` did not exist before meshdrill added it.
    #[serde(default)]
    pub created_annotations: bool,
}

impl DrillRecord {
    pub fn is_expired(&self, now: jiff::Timestamp) -> bool {
        self.expires <= now
    }
}

/// Identity and lifetime of a change.
#[derive(Debug, Clone)]
pub struct RecordMeta {
    pub run_id: String,
    pub owner: Owner,
    pub now: jiff::Timestamp,
    /// How long until `recover` may roll the change back.
    pub ttl: Duration,
}

/// A planned change.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The guarded forward patch, to send as `application/json-patch+json`.
    pub patch: Patch,
    /// The object after the patch.
    pub after: Value,
    pub record: DrillRecord,
    /// Indices of the routes changed.
    pub routes: Vec<usize>,
    /// Things the user should know (e.g. fault and retries on one route).
    pub warnings: Vec<String>,
}

/// A planned rollback.
#[derive(Debug, Clone)]
pub struct ClearPlan {
    pub patch: Patch,
    pub after: Value,
    pub record: DrillRecord,
}

/// `VirtualService ns/name` for messages.
pub fn object_label(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("object");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn annotation_pointer() -> String {
    format!("/metadata/annotations/{}", escape_pointer(ANNOTATION))
}

/// Reads the drill record, if any.
pub fn read_record(obj: &Value) -> Result<Option<DrillRecord>, PlanError> {
    let Some(raw) = obj.pointer(&annotation_pointer()) else {
        return Ok(None);
    };
    let bad = |reason: String| PlanError::BadRecord {
        object: object_label(obj),
        reason,
    };
    let s = raw.as_str().ok_or_else(|| bad("not a string".into()))?;
    serde_json::from_str(s)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// Applies a patch to a copy.
pub fn apply(obj: &Value, patch: &Patch) -> Result<Value, json_patch::PatchError> {
    let mut out = obj.clone();
    json_patch::patch(&mut out, &patch.0)?;
    Ok(out)
}

fn op(v: Value) -> Result<json_patch::PatchOperation, serde_json::Error> {
    serde_json::from_value(v)
}

fn ops(values: Vec<Value>) -> Patch {
    // Each value is built here with a valid op/path shape; a failure is a bug caught by
    // the tests, surfaced as an empty patch rather than a panic.
    Patch(values.into_iter().filter_map(|v| op(v).ok()).collect())
}

/// `diff(from, to)` with every path moved under `prefix`.
fn prefixed_diff(prefix: &str, from: &Value, to: &Value) -> Vec<Value> {
    json_patch::diff(from, to)
        .0
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .map(|mut v| {
            if let Some(Value::String(p)) = v.get_mut("path") {
                *p = format!("{prefix}{p}");
            }
            if let Some(Value::String(p)) = v.get_mut("from") {
                *p = format!("{prefix}{p}");
            }
            v
        })
        .collect()
}

fn http_routes<'a>(obj: &'a Value, object: &str) -> Result<&'a Vec<Value>, PlanError> {
    match obj.pointer("/spec/http") {
        Some(Value::Array(a)) if !a.is_empty() => Ok(a),
        _ => Err(PlanError::NoHttpRoutes {
            object: object.to_string(),
        }),
    }
}

/// Ops that turn `from`'s routes into `to`'s, each changed route guarded by a `test`
/// of its whole current value. Route lists must have the same length.
fn route_ops(from: &[Value], to: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, (a, b)) in from.iter().zip(to).enumerate() {
        if a != b {
            let prefix = format!("/spec/http/{i}");
            out.push(json!({"op": "test", "path": prefix, "value": a}));
            out.extend(prefixed_diff(&prefix, a, b));
        }
    }
    out
}

fn rv_test(obj: &Value) -> Option<Value> {
    obj.pointer("/metadata/resourceVersion")
        .map(|rv| json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}))
}

/// Plans `change` on the routes `selector` picks.
pub fn plan_change(
    obj: &Value,
    selector: &RouteSelector,
    change: &Change,
    meta: &RecordMeta,
) -> Result<Plan, PlanError> {
    let object = object_label(obj);
    let current = http_routes(obj, &object)?;
    let annotations = match obj.get("metadata") {
        Some(Value::Object(m)) => m.get("annotations"),
        _ => return Err(PlanError::NoMetadata { object }),
    };
    let indices = selector.select(current);
    if indices.is_empty() {
        return Err(PlanError::NoSuchRoute {
            object,
            selector: selector.to_string(),
            routes: describe_routes(current),
        });
    }

    // The routes as they were before meshdrill touched them.
    let existing = read_record(obj)?;
    let original: Vec<Value> = match &existing {
        Some(rec) => {
            let restored = apply(obj, &rec.inverse).map_err(|e| PlanError::Conflict {
                object: object.clone(),
                detail: format!(
                    "the routes meshdrill changed earlier (run {}) were edited since: {e}",
                    rec.run_id
                ),
            })?;
            http_routes(&restored, &object)?.clone()
        }
        None => current.clone(),
    };

    let mut new_routes = current.clone();
    for &i in &indices {
        if let Value::Object(route) = &mut new_routes[i] {
            change.apply_to_route(route);
        } else {
            return Err(PlanError::Conflict {
                object,
                detail: format!("spec.http[{i}] is not a mapping"),
            });
        }
    }

    let ttl = jiff::SignedDuration::try_from(meta.ttl).unwrap_or(jiff::SignedDuration::MAX);
    let expires = meta.now.checked_add(ttl).unwrap_or(jiff::Timestamp::MAX);
    let mut changes = existing
        .as_ref()
        .map(|r| r.changes.clone())
        .unwrap_or_default();
    changes.push(ChangeNote {
        routes: indices.clone(),
        change: change.to_string(),
        at: meta.now,
    });
    let record = DrillRecord {
        run_id: meta.run_id.clone(),
        owner: meta.owner.clone(),
        started: existing.as_ref().map(|r| r.started).unwrap_or(meta.now),
        expires,
        changes,
        inverse: ops(route_ops(&new_routes, &original)),
        created_annotations: match &existing {
            Some(r) => r.created_annotations,
            None => annotations.is_none(),
        },
    };
    let record_json = serde_json::to_string(&record).map_err(|e| PlanError::Internal {
        object: object.clone(),
        reason: e.to_string(),
    })?;

    let mut fwd: Vec<Value> = rv_test(obj).into_iter().collect();
    fwd.extend(route_ops(current, &new_routes));
    let ann = annotation_pointer();
    match annotations {
        Some(Value::Object(m)) if m.contains_key(ANNOTATION) => {
            fwd.push(json!({"op": "test", "path": ann, "value": m[ANNOTATION]}));
            fwd.push(json!({"op": "replace", "path": ann, "value": record_json}));
        }
        Some(Value::Object(_)) => {
            fwd.push(json!({"op": "add", "path": ann, "value": record_json}));
        }
        Some(_) => {
            return Err(PlanError::NoMetadata {
                object: format!("{object} (metadata.annotations is not a mapping)"),
            });
        }
        None => {
            let mut m = Map::new();
            m.insert(ANNOTATION.into(), Value::String(record_json));
            fwd.push(json!({"op": "add", "path": "/metadata/annotations", "value": m}));
        }
    }
    let patch = ops(fwd);
    let after = apply(obj, &patch).map_err(|e| PlanError::Internal {
        object: object.clone(),
        reason: e.to_string(),
    })?;
    let warnings = route_warnings(&after, &indices);
    Ok(Plan {
        patch,
        after,
        record,
        routes: indices,
        warnings,
    })
}

/// Warnings about the changed routes: a fault and retries on one route.
fn route_warnings(obj: &Value, indices: &[usize]) -> Vec<String> {
    let Some(http) = obj.pointer("/spec/http").and_then(Value::as_array) else {
        return Vec::new();
    };
    indices
        .iter()
        .filter_map(|&i| {
            let r = http.get(i)?;
            let has_fault = r.get("fault").is_some_and(|f| f.as_object().is_some_and(|m| !m.is_empty()));
            let retries = r.pointer("/retries/attempts").and_then(Value::as_i64).unwrap_or(0);
            (has_fault && retries > 0).then(|| {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("-");
                format!(
                    "{}: spec.http[{i}] (name {name}) has both a fault and retries: Istio does not retry faults injected on the same hop (istio#13705); put the retries on the calling route instead",
                    object_label(obj)
                )
            })
        })
        .collect()
}

/// Plans the rollback of everything meshdrill changed on `obj`; `None` when there is
/// no drill record.
pub fn plan_clear(obj: &Value) -> Result<Option<ClearPlan>, PlanError> {
    let object = object_label(obj);
    let Some(record) = read_record(obj)? else {
        return Ok(None);
    };
    let mut all: Vec<Value> = rv_test(obj).into_iter().collect();
    all.extend(
        record
            .inverse
            .0
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok()),
    );
    let ann = annotation_pointer();
    all.push(json!({"op": "test", "path": ann, "value": obj.pointer(&ann)}));
    let only_ours = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|m| m.len() == 1);
    if record.created_annotations && only_ours {
        all.push(json!({"op": "remove", "path": "/metadata/annotations"}));
    } else {
        all.push(json!({"op": "remove", "path": ann}));
    }
    let patch = ops(all);
    let after = apply(obj, &patch).map_err(|e| PlanError::Conflict {
        object: object.clone(),
        detail: conflict_detail(obj, &record, &e),
    })?;
    Ok(Some(ClearPlan {
        patch,
        after,
        record,
    }))
}

/// Says which route differs from what meshdrill left there.
fn conflict_detail(obj: &Value, record: &DrillRecord, err: &json_patch::PatchError) -> String {
    for o in &record.inverse.0 {
        if let json_patch::PatchOperation::Test(t) = o {
            let path = t.path.to_string();
            let now = obj.pointer(&path);
            if now != Some(&t.value) {
                let what = match now {
                    None => "was removed".to_string(),
                    Some(cur) => {
                        let fields: Vec<String> = json_patch::diff(&t.value, cur)
                            .0
                            .iter()
                            .map(|d| format!("{}{}", path, d.path()))
                            .collect();
                        format!("was edited at {}", fields.join(", "))
                    }
                };
                return format!(
                    "{path} {what} since meshdrill changed it (run {}, {})",
                    record.run_id, record.started
                );
            }
        }
    }
    format!("the patch no longer applies: {err}")
}

#[cfg(test)]
mod tests;
