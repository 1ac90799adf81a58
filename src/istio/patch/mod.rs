//! Changes as RFC 6902 JSON Patches with `test` guards, and their exact inverse.
//!
//! A change is planned against the object *as read*. The forward patch tests every
//! route it touches (and `metadata.resourceVersion` when there is one) before changing
//! it, so a concurrent edit makes the patch fail instead of being overwritten.
//!
//! The record — kept on the object itself in the [`ANNOTATION`] annotation, with who
//! made the change and when it expires — holds, for each touched route, only what
//! meshdrill owns there: the `fault`, `retries` or `timeout` value it set and the value
//! before. It also holds the inverse patch as of the last change. A rollback re-locates
//! each route (by name, else by its owned values), tests only the owned values, and
//! restores them: an operator who edits a weight or inserts a route during a drill does
//! not block the rollback, while an edit to meshdrill's own fault is a conflict. The
//! same record serves a manifest file, a cluster object and the local mesh.
//!
//! Changes stack: a delay added to a route that meshdrill already aborted keeps the
//! abort, and the record still restores the route as it was before either. A stacked
//! record keeps the earliest expiry and the owner of a running holder.
//!
//! Changes also unstack: [`Change::RemoveFault`] sets one kind of meshdrill's fault
//! back to what the route had before meshdrill's first change, keeping the other kind,
//! and leaves routes meshdrill never changed alone. A route whose fault is back as it
//! was leaves the record; when no route is left the annotation goes too, so adding an
//! abort and removing it returns the object to exactly its original JSON.

use std::time::Duration;

use json_patch::Patch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::manifest::escape_pointer;
use super::spec::{
    Change, FaultKind, RouteSelector, describe_routes, destination_label, destination_weight,
};

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
    /// A `--destination` selector picked a route that also sends traffic elsewhere: a
    /// fault, retry policy or timeout applies to the whole route, so it would reach
    /// traffic the user did not choose.
    #[error(
        "{object}: {selector}: {route} also sends traffic to other destinations:\n{weights}a fault, retry policy or timeout applies to the whole route (Istio has no per-destination fault), so traffic you did not choose would be hit too; nothing was changed.\nTo drill only the chosen destination, give it a route of its own (e.g. a route with a header match ahead of this one, sending to it alone), or select the whole route with --route-index {index} if that is what you mean"
    )]
    SharedRoute {
        object: String,
        selector: String,
        route: String,
        index: usize,
        weights: String,
    },
    /// The drill annotation could not be read.
    #[error(
        "{object}: annotation {ANNOTATION} is not a meshdrill record ({reason}); remove it by hand if it was not written by meshdrill"
    )]
    BadRecord { object: String, reason: String },
    /// Another run's drill holds the object, and this change may not stack on it
    /// ([`Stacking`]): found where the change is planned, under the target's lock or
    /// guarded by the patch's `test`, so two drills started at once cannot both pass.
    #[error(
        "{object} already carries a drill (run {run_id}, {owner}, expires {expires}): a drill does not stack on another, whose changes its rollback would remove too. Clear it (`meshdrill clear`), or after its expiry `meshdrill recover`"
    )]
    Stacked {
        object: String,
        run_id: String,
        owner: String,
        expires: String,
    },
    /// What meshdrill changed was changed again by someone else.
    #[error(
        "{object}: conflict: {detail}; nothing was changed. Inspect the object, then re-run; `meshdrill clear --force` restores meshdrill's fields over the edit, or remove the {ANNOTATION} annotation by hand to keep the current routes"
    )]
    Conflict { object: String, detail: String },
    /// The record or patch would exceed what the Kubernetes API server accepts.
    #[error("{object}: {what}: select fewer routes (--route, --route-index, --destination)")]
    TooLarge { object: String, what: String },
    /// The planner produced a patch that does not yield the planned object (a bug).
    #[error("{object}: internal error: planned patch does not apply: {reason}")]
    Internal { object: String, reason: String },
}

impl PlanError {
    /// Whether the user's input is at fault (exit 2): a selector that picks no route or
    /// a shared one, an object without HTTP routes. The rest is the object's state.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            PlanError::NoSuchRoute { .. }
                | PlanError::NoHttpRoutes { .. }
                | PlanError::SharedRoute { .. }
                | PlanError::Stacked { .. }
        )
    }
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
    /// Indices into `spec.http` when the change was made.
    pub routes: Vec<usize>,
    /// Human summary, e.g. `abort HTTP 503 on 50%`.
    pub change: String,
    pub at: jiff::Timestamp,
    /// Who made this change (the record's `owner` may be an earlier holder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The expiry this change asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<jiff::Timestamp>,
}

/// A route field meshdrill owns: the value it set, and the value before (absent = the
/// field was not there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owned {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    pub after: Value,
}

/// What meshdrill owns on one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// Index in `spec.http` at the last change.
    pub index: usize,
    /// The route's `name`, used to find it again if routes move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions and destinations when changed (see `fingerprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// `fault`, `retries`, `timeout`: only the fields meshdrill changed, each an
    /// [`Owned`] `{before, after}`.
    pub fields: Map<String, Value>,
}

impl RouteRecord {
    fn owned(&self) -> impl Iterator<Item = (&str, Result<Owned, serde_json::Error>)> {
        self.fields
            .iter()
            .map(|(k, v)| (k.as_str(), serde_json::from_value::<Owned>(v.clone())))
    }
}

/// What meshdrill keeps on an object it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillRecord {
    pub run_id: String,
    pub owner: Owner,
    pub started: jiff::Timestamp,
    /// The earliest expiry of the stacked changes.
    pub expires: jiff::Timestamp,
    pub changes: Vec<ChangeNote>,
    /// `spec.http` length at the last change.
    pub http_len: usize,
    /// What meshdrill owns on each route it changed.
    pub routes: Vec<RouteRecord>,
    /// The inverse as of the last change: `test` then restore each owned field, at the
    /// route indices of that time. A rollback rebuilds it if routes have moved.
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

/// A VirtualService that carries a drill record.
#[derive(Debug, Clone)]
pub struct DrillInfo {
    pub namespace: String,
    pub name: String,
    /// The record, or why it cannot be read.
    pub record: Result<DrillRecord, String>,
}

/// Whether the process that owns a drill is gone: `Some` only when the owner ran on
/// this host (its `/proc/PID` is checked); `None` when it cannot be known from here, or
/// when the drill has no owning process (pid 0: a one-shot change that lives until its
/// expiry).
pub fn owner_gone(owner: &Owner) -> Option<bool> {
    let here = Owner::current();
    if owner.pid == 0 || owner.host != here.host {
        return None;
    }
    Some(!std::path::Path::new(&format!("/proc/{}", owner.pid)).exists())
}

/// Whether a change may go onto an object that carries another run's drill record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stacking {
    /// Always: a one-shot `fault` stacks by design; clears and recovery.
    #[default]
    Any,
    /// Only on a drill whose owning process is known to be gone (`fault --wait` stacks
    /// on a one-shot change, not on a live drill).
    OnFinished,
    /// Never (`run`, experiments): the rollback would remove the other drill's changes.
    Never,
}

impl Stacking {
    /// Whether a change of run `run_id` may not go onto an object carrying `rec`.
    pub fn refuses(self, rec: &DrillRecord, run_id: &str) -> bool {
        rec.run_id != run_id
            && match self {
                Stacking::Any => false,
                Stacking::OnFinished => rec.owner.pid != 0 && owner_gone(&rec.owner) != Some(true),
                Stacking::Never => true,
            }
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
    /// Whether the change may stack on another run's drill.
    pub stacking: Stacking,
    /// A clear (`clear --force`) restores meshdrill's fields even where someone edited
    /// them since meshdrill set them, and names each edit it overwrites. No effect on a
    /// change.
    pub force: bool,
}

/// A planned change.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The guarded forward patch, to send as `application/json-patch+json`.
    pub patch: Patch,
    /// The object after the patch.
    pub after: Value,
    /// The record the patch writes. When it owns no route any more (a
    /// [`Change::RemoveFault`] undid the last of meshdrill's changes), the patch
    /// removes the annotation instead and the object carries no record.
    pub record: DrillRecord,
    /// Indices of the routes changed; for [`Change::RemoveFault`], the selected routes
    /// whose fault meshdrill owned.
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
    /// Forced only: each edit of meshdrill's fields the rollback overwrites, and each
    /// route meshdrill changed that is gone (nothing to restore there).
    pub overwritten: Vec<String>,
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

/// Kubernetes refuses objects whose annotations total more than this (apimachinery's
/// `TotalAnnotationSizeLimitB`).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// The API server refuses JSON patches with more operations than this.
pub const MAX_PATCH_OPS: usize = 10_000;

fn route_name(route: &Value) -> Option<String> {
    route
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A stable fingerprint of what identifies a route besides its name: its match
/// conditions and destinations (hosts, subsets, ports — not weights, which operators
/// tune during incidents). FNV-1a over the canonical JSON.
fn fingerprint(route: &Value) -> String {
    let dests: Vec<&Value> = route
        .get("route")
        .and_then(Value::as_array)
        .map(|ds| ds.iter().filter_map(|d| d.get("destination")).collect())
        .unwrap_or_default();
    let key = json!({"match": route.get("match"), "destinations": dests}).to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn owned_values(rr: &RouteRecord) -> Result<Vec<(&str, Owned)>, String> {
    rr.owned()
        .map(|(k, o)| {
            o.map(|o| (k, o))
                .map_err(|e| format!("route entry {k}: {e}"))
        })
        .collect()
}

/// Finds the route `rr` describes in `http` now: by its name when unique; else among
/// routes whose match/destinations and owned fields are as meshdrill left them — its
/// old index when the route count is unchanged, or the only such route.
fn locate(http: &[Value], rr: &RouteRecord, http_len: usize) -> Result<usize, String> {
    let owned = owned_values(rr)?;
    if let Some(name) = &rr.name {
        let named: Vec<usize> = (0..http.len())
            .filter(|&i| route_name(&http[i]).as_deref() == Some(name))
            .collect();
        match named.as_slice() {
            [i] => return Ok(*i),
            [] => {
                return Err(format!(
                    "route {name:?} (spec.http[{}] when meshdrill changed it) is gone",
                    rr.index
                ));
            }
            _ => {}
        }
    }
    let as_left = |r: &Value| {
        owned.iter().all(|(k, o)| r.get(*k) == Some(&o.after))
            && rr
                .fingerprint
                .as_deref()
                .is_none_or(|f| f == fingerprint(r))
    };
    let candidates: Vec<usize> = (0..http.len()).filter(|&i| as_left(&http[i])).collect();
    if http.len() == http_len && candidates.contains(&rr.index) {
        return Ok(rr.index);
    }
    let fields: Vec<&str> = owned.iter().map(|(k, _)| *k).collect();
    // The route is where meshdrill left it, with its match and destinations, but what
    // meshdrill owns there was edited: name the edit.
    let same_route = http.len() == http_len
        && http.get(rr.index).is_some_and(|r| {
            rr.fingerprint
                .as_deref()
                .is_none_or(|f| f == fingerprint(r))
        });
    if candidates.is_empty() && same_route {
        let r = &http[rr.index];
        let changed: Vec<String> = owned
            .iter()
            .filter(|(k, o)| r.get(*k) != Some(&o.after))
            .map(|(k, o)| edits(&format!("/spec/http/{}/{k}", rr.index), &o.after, r.get(*k)))
            .collect();
        return Err(format!(
            "meshdrill's {} on spec.http[{}] was edited since it was set ({})",
            fields.join("/"),
            rr.index,
            changed.join(", ")
        ));
    }
    match candidates.as_slice() {
        [i] => Ok(*i),
        [] => Err(format!(
            "spec.http[{}] (as meshdrill left it) is no longer there: the route was removed, its match or destinations changed, or meshdrill's {} on it was edited",
            rr.index,
            fields.join("/")
        )),
        _ => Err(format!(
            "routes were added or removed and {} unnamed routes look like spec.http[{}] did; name the routes to let meshdrill tell them apart",
            candidates.len(),
            rr.index
        )),
    }
}

/// Whether [`locate`] found several routes `rr` could be: forcing cannot pick one.
fn ambiguous(http: &[Value], rr: &RouteRecord) -> bool {
    let Ok(owned) = owned_values(rr) else {
        return false;
    };
    let named = |i: &usize| {
        rr.name
            .as_deref()
            .is_some_and(|n| route_name(&http[*i]).as_deref() == Some(n))
    };
    let look_alike = (0..http.len())
        .filter(|&i| {
            owned.iter().all(|(k, o)| http[i].get(*k) == Some(&o.after))
                && rr
                    .fingerprint
                    .as_deref()
                    .is_none_or(|f| f == fingerprint(&http[i]))
        })
        .count();
    (0..http.len()).filter(named).count() > 1 || look_alike > 1
}

/// Ops that test each owned field of `rr` at route `i` and restore its old value.
fn restore_ops(i: usize, rr: &RouteRecord) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (k, o) in owned_values(rr)? {
        let path = format!("/spec/http/{i}/{}", escape_pointer(k));
        out.push(json!({"op": "test", "path": path, "value": o.after}));
        match o.before {
            None => out.push(json!({"op": "remove", "path": path})),
            Some(b) => out.push(json!({"op": "replace", "path": path, "value": b})),
        }
    }
    Ok(out)
}

/// Refuses a [`RouteSelector::Destination`] that picked a route whose traffic also
/// goes to destinations it does not name (`--destination reviews/v2` on a route split
/// v1 80 / v2 20): the change would apply to all of the route's traffic.
fn refuse_shared_routes(
    http: &[Value],
    selector: &RouteSelector,
    indices: &[usize],
    object: &str,
) -> Result<(), PlanError> {
    let RouteSelector::Destination { .. } = selector else {
        return Ok(());
    };
    for &i in indices {
        let Some(route) = http.get(i) else { continue };
        let weights = route_weights(route, selector);
        // A destination with weight 0 gets no traffic (as the mesh translates it).
        if weights.iter().all(|&(_, w, chosen)| chosen || w == 0) {
            continue;
        }
        let weights = weights
            .into_iter()
            .map(|(d, w, chosen)| {
                format!(
                    "  {w:>3}% -> {d}{}\n",
                    if chosen { "  (chosen)" } else { "" }
                )
            })
            .collect();
        let name = route.get("name").and_then(Value::as_str);
        return Err(PlanError::SharedRoute {
            object: object.to_string(),
            selector: selector.to_string(),
            route: match name {
                Some(n) => format!("route #{i} ({n:?})"),
                None => format!("route #{i}"),
            },
            index: i,
            weights,
        });
    }
    Ok(())
}

/// `(host[/subset], weight %, chosen by the selector)` of each destination of a route.
/// An omitted weight is 100 for a single destination, else 0, as the mesh translates it.
fn route_weights(route: &Value, selector: &RouteSelector) -> Vec<(String, u64, bool)> {
    let ds = route.get("route").and_then(Value::as_array);
    let single = ds.map_or(0, Vec::len) == 1;
    ds.into_iter()
        .flatten()
        .map(|d| {
            let dest = d.get("destination");
            let host = dest.and_then(|x| x.get("host")).and_then(Value::as_str);
            let subset = dest.and_then(|x| x.get("subset")).and_then(Value::as_str);
            let w = destination_weight(d, single);
            let label =
                host.map_or_else(|| "(no host)".to_string(), |h| destination_label(h, subset));
            let chosen = host.is_some_and(|h| selector.wants_destination(h, subset));
            (label, w, chosen)
        })
        .collect()
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
    if !matches!(change, Change::RemoveFault(_)) {
        refuse_shared_routes(current, selector, &indices, &object)?;
    }
    let conflict = |detail: String| PlanError::Conflict {
        object: object.clone(),
        detail,
    };

    // What earlier changes own, found again in the object as it is now.
    let existing = read_record(obj)?;
    if let Some(rec) = &existing
        && meta.stacking.refuses(rec, &meta.run_id)
    {
        return Err(PlanError::Stacked {
            object,
            run_id: rec.run_id.clone(),
            owner: format!(
                "{}@{} pid {}",
                rec.owner.user, rec.owner.host, rec.owner.pid
            ),
            expires: rec.expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        });
    }
    let mut routes: Vec<RouteRecord> = Vec::new();
    if let Some(rec) = &existing {
        for rr in &rec.routes {
            let at = |d: String| conflict(format!("{d} (run {}, {})", rec.run_id, rec.started));
            let i = locate(current, rr, rec.http_len).map_err(at)?;
            for (k, o) in owned_values(rr).map_err(at)? {
                if current[i].get(k) != Some(&o.after) {
                    return Err(at(format!(
                        "meshdrill's {k} on spec.http[{i}] was edited since it was set ({})",
                        edits(&format!("/spec/http/{i}/{k}"), &o.after, current[i].get(k))
                    )));
                }
            }
            let mut rr = rr.clone();
            rr.index = i;
            routes.push(rr);
        }
    }

    let mut new_routes = current.clone();
    let mut touched = Vec::new();
    for &i in &indices {
        let Value::Object(route) = &mut new_routes[i] else {
            return Err(conflict(format!("spec.http[{i}] is not a mapping")));
        };
        let found = routes.iter().position(|r| r.index == i);
        if let Change::RemoveFault(kind) = change {
            // Only meshdrill's own fault is undone: a route it never changed keeps
            // whatever fault it had before the drill.
            let Some(rr) = found.map(|p| &mut routes[p]) else {
                continue;
            };
            if remove_fault(route, rr, *kind).map_err(&conflict)? {
                touched.push(i);
            }
            continue;
        }
        change.apply_to_route(route);
        touched.push(i);
        let pos = match found {
            Some(p) => p,
            None => {
                routes.push(RouteRecord {
                    index: i,
                    name: route_name(&current[i]),
                    fingerprint: Some(fingerprint(&current[i])),
                    fields: Map::new(),
                });
                routes.len() - 1
            }
        };
        let rr = &mut routes[pos];
        for key in change.owned_fields() {
            let Some(after) = route.get(*key).cloned() else {
                continue;
            };
            let before = match rr.fields.get(*key) {
                Some(v) => {
                    serde_json::from_value::<Owned>(v.clone())
                        .map_err(|e| conflict(format!("unreadable record entry: {e}")))?
                        .before
                }
                None => current[i].get(*key).cloned(),
            };
            let owned = serde_json::to_value(Owned { before, after })
                .map_err(|e| conflict(e.to_string()))?;
            rr.fields.insert((*key).to_string(), owned);
        }
    }
    // A route whose every owned field is back as it was is no longer meshdrill's.
    routes.retain(|r| !r.fields.is_empty());
    routes.sort_by_key(|r| r.index);

    let mut inverse = Vec::new();
    for rr in &routes {
        inverse.extend(restore_ops(rr.index, rr).map_err(&conflict)?);
    }
    // A removal asks for no expiry and takes no ownership: what is left of the drill
    // keeps the lifetime and owner it had.
    let removal = matches!(change, Change::RemoveFault(_));
    let ttl = jiff::SignedDuration::try_from(meta.ttl).unwrap_or(jiff::SignedDuration::MAX);
    let asked = (!removal).then(|| meta.now.checked_add(ttl).unwrap_or(jiff::Timestamp::MAX));
    let mut changes = existing
        .as_ref()
        .map(|r| r.changes.clone())
        .unwrap_or_default();
    changes.push(ChangeNote {
        routes: touched.clone(),
        change: change.to_string(),
        at: meta.now,
        owner: Some(meta.owner.clone()),
        expires: asked,
    });
    // A running holder (pid != 0) stays the owner, so `recover --orphans` still sees
    // it die; the earliest expiry wins, so stacking never makes a fault live longer.
    let (run_id, owner) = match &existing {
        Some(r) if r.owner.pid != 0 || removal => (r.run_id.clone(), r.owner.clone()),
        _ => (meta.run_id.clone(), meta.owner.clone()),
    };
    let record = DrillRecord {
        run_id,
        owner,
        started: existing.as_ref().map(|r| r.started).unwrap_or(meta.now),
        expires: match (&existing, asked) {
            (Some(r), Some(a)) => r.expires.min(a),
            (Some(r), None) => r.expires,
            (None, a) => a.unwrap_or(meta.now),
        },
        changes,
        http_len: current.len(),
        routes,
        inverse: ops(inverse),
        created_annotations: match &existing {
            Some(r) => r.created_annotations,
            None => annotations.is_none(),
        },
    };
    let record_json = serde_json::to_string(&record).map_err(|e| PlanError::Internal {
        object: object.clone(),
        reason: e.to_string(),
    })?;
    let others: usize = annotations
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != ANNOTATION)
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum()
        })
        .unwrap_or(0);
    if others + ANNOTATION.len() + record_json.len() > MAX_ANNOTATIONS_BYTES {
        return Err(PlanError::TooLarge {
            object,
            what: format!(
                "the drill record would be {} bytes; with the other annotations that exceeds the API server's {MAX_ANNOTATIONS_BYTES}-byte limit on annotations",
                record_json.len()
            ),
        });
    }

    let mut fwd: Vec<Value> = rv_test(obj).into_iter().collect();
    fwd.extend(route_ops(current, &new_routes));
    let ann = annotation_pointer();
    match annotations {
        // Nothing meshdrill owns is left (every fault it added was removed): the
        // object goes back to carrying no record, as before the drill.
        Some(Value::Object(m)) if record.routes.is_empty() => {
            if let Some(v) = m.get(ANNOTATION) {
                fwd.push(json!({"op": "test", "path": ann, "value": v}));
                if record.created_annotations && m.len() == 1 {
                    fwd.push(json!({"op": "remove", "path": "/metadata/annotations"}));
                } else {
                    fwd.push(json!({"op": "remove", "path": ann}));
                }
            }
        }
        _ if record.routes.is_empty() => {}
        Some(Value::Object(m)) if m.contains_key(ANNOTATION) => {
            fwd.push(json!({"op": "test", "path": ann, "value": m[ANNOTATION]}));
            fwd.push(json!({"op": "replace", "path": ann, "value": record_json}));
        }
        Some(Value::Object(_)) => {
            fwd.push(json!({"op": "add", "path": ann, "value": record_json}));
        }
        Some(Value::Null) | None => {
            let mut m = Map::new();
            m.insert(ANNOTATION.into(), Value::String(record_json));
            fwd.push(json!({"op": "add", "path": "/metadata/annotations", "value": m}));
        }
        Some(_) => {
            return Err(PlanError::NoMetadata {
                object: format!("{object} (metadata.annotations is not a mapping)"),
            });
        }
    }
    if fwd.len() > MAX_PATCH_OPS {
        return Err(PlanError::TooLarge {
            object,
            what: format!(
                "the patch would have {} operations; the API server accepts at most {MAX_PATCH_OPS}",
                fwd.len()
            ),
        });
    }
    let patch = ops(fwd);
    let after = apply(obj, &patch).map_err(|e| PlanError::Internal {
        object: object.clone(),
        reason: e.to_string(),
    })?;
    let mut warnings = route_warnings(&after, &touched);
    if let RouteSelector::Name(n) = selector
        && indices.len() > 1
    {
        let at: Vec<String> = indices.iter().map(|i| format!("spec.http[{i}]")).collect();
        warnings.push(format!(
            "{object}: {} routes are named {n:?} ({}); the change applies to all of them. Route names should be unique; use --route-index N to change one",
            indices.len(),
            at.join(", ")
        ));
    }
    Ok(Plan {
        patch,
        after,
        record,
        routes: touched,
        warnings,
    })
}

/// [`Change::RemoveFault`] on one route: sets `fault.<kind>` back to what the record's
/// `before` held and updates the record's `fault` entry — dropped when the whole fault
/// is back as it was. `false` when the record owns no fault on this route.
fn remove_fault(
    route: &mut Map<String, Value>,
    rr: &mut RouteRecord,
    kind: FaultKind,
) -> Result<bool, String> {
    let Some(entry) = rr.fields.get("fault") else {
        return Ok(false);
    };
    let owned: Owned = serde_json::from_value(entry.clone())
        .map_err(|e| format!("unreadable record entry: {e}"))?;
    if kind.restore(route, owned.before.as_ref()) {
        rr.fields.shift_remove("fault");
    } else {
        let after = route.get("fault").cloned().unwrap_or(Value::Null);
        let owned = serde_json::to_value(Owned {
            before: owned.before,
            after,
        })
        .map_err(|e| e.to_string())?;
        rr.fields.insert("fault".into(), owned);
    }
    Ok(true)
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
            let has_fault = r
                .get("fault")
                .is_some_and(|f| f.as_object().is_some_and(|m| !m.is_empty()));
            let retries = r
                .pointer("/retries/attempts")
                .and_then(Value::as_i64)
                .unwrap_or(0);
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
/// no drill record. Routes are found again even if others were added, removed or
/// edited meanwhile; only meshdrill's own fields are tested and restored.
///
/// `force` (`clear --force`): where meshdrill's own fields were edited since, restore
/// them all the same (no `test` of them; the resourceVersion test stays, so a write
/// racing the rollback still fails it), and skip a route meshdrill changed that is
/// gone; [`ClearPlan::overwritten`] names each. Routes that cannot be told apart
/// (unnamed look-alikes) stay a conflict: forcing would pick one at random.
pub fn plan_clear(obj: &Value, force: bool) -> Result<Option<ClearPlan>, PlanError> {
    let object = object_label(obj);
    let Some(record) = read_record(obj)? else {
        return Ok(None);
    };
    let conflict = |detail: String| PlanError::Conflict {
        object: object.clone(),
        detail: format!("{detail} (run {}, {})", record.run_id, record.started),
    };
    let current = obj
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .ok_or_else(|| conflict("spec.http was removed since meshdrill changed it".into()))?;
    let mut all: Vec<Value> = rv_test(obj).into_iter().collect();
    let mut overwritten = Vec::new();
    for rr in &record.routes {
        let found = locate(current, rr, record.http_len);
        if force {
            match found.or_else(|e| forced_locate(current, rr, record.http_len).ok_or(e)) {
                Ok(i) => {
                    let (ops, edited) =
                        forced_restore_ops(i, rr, &current[i]).map_err(&conflict)?;
                    all.extend(ops);
                    overwritten.extend(edited);
                }
                Err(e) if ambiguous(current, rr) => return Err(conflict(e)),
                Err(e) => overwritten.push(format!("{e}: nothing to restore there")),
            }
            continue;
        }
        let i = found.map_err(&conflict)?;
        all.extend(restore_ops(i, rr).map_err(&conflict)?);
    }
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
    let after = apply(obj, &patch).map_err(|e| conflict(conflict_detail(obj, &patch, &e)))?;
    Ok(Some(ClearPlan {
        patch,
        after,
        record,
        overwritten,
    }))
}

/// For a forced clear, the route `rr` describes when [`locate`] refused it because
/// meshdrill's own fields were edited: the route of that name (when unique), else the
/// route at its old index when the route count and its match and destinations are
/// unchanged. `None` when the route is gone.
fn forced_locate(http: &[Value], rr: &RouteRecord, http_len: usize) -> Option<usize> {
    if let Some(name) = &rr.name {
        let named: Vec<usize> = (0..http.len())
            .filter(|&i| route_name(&http[i]).as_deref() == Some(name))
            .collect();
        if let [i] = named.as_slice() {
            return Some(*i);
        }
    }
    (http.len() == http_len
        && http.get(rr.index).is_some_and(|r| {
            rr.fingerprint
                .as_deref()
                .is_none_or(|f| f == fingerprint(r))
        }))
    .then_some(rr.index)
}

/// Ops that restore each owned field of `rr` at route `i` (now `route`) whatever it
/// holds now, and the edits they overwrite (`spec.http[0].fault.abort…: 100 -> 80`).
fn forced_restore_ops(
    i: usize,
    rr: &RouteRecord,
    route: &Value,
) -> Result<(Vec<Value>, Vec<String>), String> {
    let mut ops = Vec::new();
    let mut edited = Vec::new();
    for (k, o) in owned_values(rr)? {
        let path = format!("/spec/http/{i}/{}", escape_pointer(k));
        let now = route.get(k);
        if now != Some(&o.after) {
            edited.push(format!(
                "overwrote an edit made since meshdrill set it: {}",
                edits(&path, &o.after, now)
            ));
        }
        match (o.before, now) {
            (None, Some(_)) => ops.push(json!({"op": "remove", "path": path})),
            (None, None) => {}
            (Some(b), Some(_)) => ops.push(json!({"op": "replace", "path": path, "value": b})),
            (Some(b), None) => ops.push(json!({"op": "add", "path": path, "value": b})),
        }
    }
    Ok((ops, edited))
}

/// A JSON pointer as a dotted field path: `/spec/http/1/fault` -> `spec.http[1].fault`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// `spec.http[1].fault.abort.httpStatus: 503 -> 418`: each leaf of `now` that differs
/// from what meshdrill left (`left`) at `base` (a JSON pointer), dotted as kubectl
/// paths are, with both values, so a conflict names the edit and not only the route.
pub(crate) fn edits(base: &str, left: &Value, now: Option<&Value>) -> String {
    let short = |v: Option<&Value>| match v {
        None => "(none)".to_string(),
        Some(v) => {
            let t = v.to_string();
            if t.chars().count() > 60 {
                format!("{}…", t.chars().take(60).collect::<String>())
            } else {
                t
            }
        }
    };
    let Some(now) = now else {
        return format!("{} was removed", dotted(base));
    };
    let list: Vec<String> = json_patch::diff(left, now)
        .0
        .iter()
        .map(|d| {
            let p = d.path().to_string();
            format!(
                "{}: {} -> {}",
                dotted(&format!("{base}{p}")),
                short(left.pointer(&p)),
                short(now.pointer(&p))
            )
        })
        .collect();
    list.join(", ")
}

/// Says which tested value differs from what meshdrill left there.
fn conflict_detail(obj: &Value, patch: &Patch, err: &json_patch::PatchError) -> String {
    for o in &patch.0 {
        if let json_patch::PatchOperation::Test(t) = o {
            let path = t.path.to_string();
            let now = obj.pointer(&path);
            if now != Some(&t.value) {
                let what = match now {
                    None => "was removed".to_string(),
                    Some(cur) => format!("was edited ({})", edits(&path, &t.value, Some(cur))),
                };
                return format!("{} {what} since meshdrill changed it", dotted(&path));
            }
        }
    }
    format!("the patch no longer applies: {err}")
}

#[cfg(test)]
mod tests;
