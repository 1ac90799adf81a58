//! batch/v1 Jobs in the fake API server, with a Job controller and a kubelet emulated
//! just enough for meshdrill's Indexed worker Jobs.
//!
//! - `POST .../jobs` validates what kube-apiserver validates where meshdrill depends on
//!   it (pkg/apis/batch/validation): a name that is a DNS-1123 subdomain of at most 63
//!   characters (it becomes the `job-name` label), a container image, `completions`
//!   with `completionMode: Indexed`, `restartPolicy` `Never` or `OnFailure`, non-negative
//!   `parallelism`/`completions`; a taken name is 409 AlreadyExists, a namespace marked
//!   absent 404. (kube-apiserver does not require `parallelism <= completions`, so
//!   neither does this.)
//! - The controller then creates one pod per index `0..completions` (named
//!   `<job>-<index>-<suffix>`, labels `job-name`, `batch.kubernetes.io/job-name`,
//!   `controller-uid`, `batch.kubernetes.io/job-completion-index` and the template's;
//!   the index also as an annotation) and plays each index's scripted [`Fate`]:
//!   Pending → Running → its log lines → terminated with an exit code (or OOMKilled),
//!   or stuck waiting with a kubelet reason, or unschedulable, or running for ever.
//!   Lines are written only once a log follower is attached (or after 10 s), so a
//!   client that follows the log while the pod runs is what gets tested.
//! - Pods: `GET .../pods?watch=true` streams `WatchEvent`s (chunked JSON lines) from
//!   the given `resourceVersion` (empty or `0`: the current pods as ADDED first), with
//!   `labelSelector`, until `timeoutSeconds`; `GET .../pods/NAME/log` with
//!   `container` and `follow=true` streams the log until the container terminates or
//!   the pod is deleted (400 while the container is waiting, as the kubelet answers);
//!   `timestamps=true` prefixes each line with its time (lines 300 ms apart) and
//!   `sinceTime` leaves out the earlier ones.
//! - `DELETE .../jobs/NAME` records its `propagationPolicy` (DeleteOptions body or
//!   query); `Background` or `Foreground` delete the Job's pods too (DELETED events),
//!   none or `Orphan` leaves them — batch/v1 Jobs orphan by default.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};

use super::{Resp, State, not_found, reply, select, status};
use crate::common::label_selector::Selector;

/// What the pod of one index does.
#[derive(Debug, Clone)]
pub enum Fate {
    /// Runs, prints `lines`, exits with `code`.
    Exit { lines: Vec<String>, code: i32 },
    /// Runs, prints `lines`, is OOM-killed (exit code 137, reason OOMKilled).
    OomKilled { lines: Vec<String> },
    /// Never starts: the container waits with this kubelet reason and message.
    Waiting { reason: String, message: String },
    /// Never scheduled: `PodScheduled=False`, reason Unschedulable, this message.
    Unschedulable { message: String },
    /// Runs, prints `lines`, and keeps running until deleted.
    Hang { lines: Vec<String> },
    /// Runs, prints `before`, is quiet for `pause` (nothing in its log, no pod
    /// change), prints `after`, exits 0.
    Quiet {
        before: Vec<String>,
        pause: Duration,
        after: Vec<String>,
    },
}

/// One Job deletion as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDeletion {
    pub namespace: String,
    pub name: String,
    /// `propagationPolicy` as sent (`None`: not given).
    pub propagation_policy: Option<String>,
}

#[derive(Debug, Default)]
struct PodLog {
    lines: Vec<String>,
    closed: bool,
    followers: usize,
}

/// The Job part of the fake's state.
#[derive(Default)]
pub(super) struct Jobs {
    jobs: BTreeMap<(String, String), Value>,
    /// Fates by index for the Jobs created from now on (default: exit 0, no lines).
    fates: BTreeMap<u32, Fate>,
    deletions: Vec<JobDeletion>,
    /// Every pod change: (resourceVersion, type, pod).
    events: Vec<(u64, &'static str, Value)>,
    logs: BTreeMap<(String, String), PodLog>,
    absent_namespaces: Vec<String>,
    /// Bumped on every change watchers and log followers wait for.
    changed: tokio::sync::watch::Sender<u64>,
}

/// A streaming answer handle() asks the connection to send.
#[derive(Debug, Clone)]
pub(super) enum Stream {
    Watch {
        ns: String,
        selector: Option<String>,
        rv: String,
        timeout: Duration,
    },
    Log {
        ns: String,
        pod: String,
        follow: bool,
        timestamps: bool,
        since: Option<jiff::Timestamp>,
    },
}

// === Hooks (called through FakeKube) ===

impl super::FakeKube {
    /// Scripts what the pod of worker `index` does in the Jobs created from now on.
    pub fn job_fate(&self, index: u32, fate: Fate) {
        self.lock().jobs.fates.insert(index, fate);
    }

    /// Makes `ns` absent: creating a Job in it answers 404.
    pub fn absent_namespace(&self, ns: &str) {
        self.lock().jobs.absent_namespaces.push(ns.into());
    }

    /// Denies `verb` on `resource` (`jobs`, `pods`, `pods/log`, ...) only: 403.
    pub fn forbid_on(&self, verb: &str, resource: &str) {
        self.lock().forbidden.insert(format!("{verb} {resource}"));
    }

    /// Stores a Job as if created earlier (no pods are made for it).
    pub fn put_job(&self, ns: &str, mut job: Value) {
        let mut st = self.lock();
        let rv = st.next_rv();
        job["metadata"]["namespace"] = json!(ns);
        job["metadata"]["resourceVersion"] = json!(rv);
        let name = job["metadata"]["name"].as_str().unwrap_or("").to_string();
        st.jobs.jobs.insert((ns.to_string(), name), job);
    }

    /// The stored Jobs in `ns`.
    pub fn jobs(&self, ns: &str) -> Vec<Value> {
        self.lock()
            .jobs
            .jobs
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, j)| j.clone())
            .collect()
    }

    /// Every Job deletion so far, in order.
    pub fn job_deletions(&self) -> Vec<JobDeletion> {
        self.lock().jobs.deletions.clone()
    }

    /// How many log followers (`follow=true`) have attached so far.
    pub fn log_followers(&self) -> usize {
        self.lock().jobs.logs.values().map(|l| l.followers).sum()
    }
}

// === Requests ===

/// Routes the batch/v1 and pod-stream requests; `None` when the path is not one.
pub(super) fn route(
    state: &Arc<Mutex<State>>,
    st: &mut State,
    method: &str,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Option<Resp> {
    Some(match (method, seg) {
        ("GET", ["apis", "batch"]) => {
            let mut g = batch_group();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            reply(200, &g)
        }
        ("GET", ["apis", "batch", "v1"]) => reply(200, &batch_resources()),
        ("POST", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            create_job(state, st, ns, body)
        }
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            let items = match select(&st.jobs.jobs, ns, q("labelSelector").as_deref()) {
                Ok(items) => items,
                Err(resp) => return Some(*resp),
            };
            reply(
                200,
                &json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            )
        }
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            match st.jobs.jobs.get(&(ns.to_string(), name.to_string())) {
                Some(j) => reply(200, j),
                None => not_found("jobs", "batch", name),
            }
        }
        ("DELETE", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            delete_job(st, ns, name, body, q("propagationPolicy"))
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"])
            if q("watch").as_deref() == Some("true") =>
        {
            if let Some(Err(e)) = q("labelSelector").as_deref().map(Selector::parse) {
                return Some(status(400, "BadRequest", &e, None));
            }
            let timeout = q("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1800u64);
            stream_marker(Stream::Watch {
                ns: ns.to_string(),
                selector: q("labelSelector"),
                rv: q("resourceVersion").unwrap_or_default(),
                timeout: Duration::from_secs(timeout),
            })
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name, "log"]) => {
            log_request(st, ns, name, q)
        }
        _ => return None,
    })
}

fn stream_marker(s: Stream) -> Resp {
    let mut r = reply(200, &json!({}));
    r.extensions_mut().insert(s);
    r
}

fn batch_group() -> Value {
    json!({"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}})
}

/// The batch entry of `/apis`.
pub(super) fn batch_group_entry() -> Value {
    batch_group()
}

fn batch_resources() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1", "resources": [
        {"name": "jobs", "singularName": "job", "namespaced": true, "kind": "Job",
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
         "categories": ["all"]},
        {"name": "jobs/status", "singularName": "", "namespaced": true, "kind": "Job",
         "verbs": ["get", "patch", "update"]},
        {"name": "cronjobs", "singularName": "cronjob", "namespaced": true, "kind": "CronJob",
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
         "shortNames": ["cj"], "categories": ["all"]}
    ]})
}

fn invalid(name: &str, causes: &[(&str, String, String)]) -> Resp {
    let text: Vec<String> = causes
        .iter()
        .map(|(_, field, msg)| format!("{field}: {msg}"))
        .collect();
    let message = if text.len() == 1 {
        text[0].clone()
    } else {
        format!("[{}]", text.join(", "))
    };
    status(
        422,
        "Invalid",
        &format!("Job.batch {name:?} is invalid: {message}"),
        Some(json!({"name": name, "group": "batch", "kind": "Job",
            "causes": causes.iter().map(|(reason, field, msg)| json!({"reason": reason, "message": msg, "field": field})).collect::<Vec<_>>()})),
    )
}

/// A DNS-1123 subdomain (`[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`).
fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn validate(job: &Value) -> Result<(), Box<Resp>> {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut causes: Vec<(&str, String, String)> = Vec::new();
    if name.is_empty() {
        causes.push((
            "FieldValueRequired",
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
    } else if name.len() > 63 {
        causes.push((
            "FieldValueInvalid",
            "metadata.name".into(),
            format!("Invalid value: {name:?}: must be no more than 63 characters"),
        ));
    } else if !dns1123_subdomain(name) {
        causes.push(("FieldValueInvalid", "metadata.name".into(), format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")));
    }
    let spec = job.get("spec").cloned().unwrap_or(Value::Null);
    let int = |k: &str| spec.get(k).and_then(Value::as_i64);
    for k in ["parallelism", "completions", "backoffLimit"] {
        if int(k).is_some_and(|v| v < 0) {
            causes.push((
                "FieldValueInvalid",
                format!("spec.{k}"),
                "Invalid value: must be greater than or equal to 0".into(),
            ));
        }
    }
    if spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && int("completions").is_none()
    {
        causes.push((
            "FieldValueRequired",
            "spec.completions".into(),
            "Required value: when completion mode is Indexed".into(),
        ));
    }
    let pod = spec
        .pointer("/template/spec")
        .cloned()
        .unwrap_or(Value::Null);
    match pod.get("restartPolicy").and_then(Value::as_str) {
        Some("Never" | "OnFailure") => {}
        other => causes.push((
            "FieldValueNotSupported",
            "spec.template.spec.restartPolicy".into(),
            format!(
                "Unsupported value: {:?}: supported values: \"OnFailure\", \"Never\"",
                other.unwrap_or("Always")
            ),
        )),
    }
    let containers = pod
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        causes.push((
            "FieldValueRequired",
            "spec.template.spec.containers".into(),
            "Required value".into(),
        ));
    }
    for (i, c) in containers.iter().enumerate() {
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push((
                "FieldValueRequired",
                format!("spec.template.spec.containers[{i}].image"),
                "Required value".into(),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(Box::new(invalid(name, &causes)))
    }
}

fn create_job(state: &Arc<Mutex<State>>, st: &mut State, ns: &str, body: &[u8]) -> Resp {
    if st.jobs.absent_namespaces.iter().any(|n| n == ns) {
        return not_found("namespaces", "", ns);
    }
    let Ok(mut job) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not a JSON object", None);
    };
    if let Err(resp) = validate(&job) {
        return *resp;
    }
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let key = (ns.to_string(), name.clone());
    if st.jobs.jobs.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            &format!("jobs.batch {name:?} already exists"),
            Some(json!({"name": name, "group": "batch", "kind": "jobs"})),
        );
    }
    let rv = st.next_rv();
    let uid = format!("uid-job-{ns}-{name}");
    job["apiVersion"] = json!("batch/v1");
    job["kind"] = json!("Job");
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["resourceVersion"] = json!(rv);
    job["metadata"]["uid"] = json!(uid);
    job["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    job["status"] = json!({});
    st.jobs.jobs.insert(key, job.clone());
    let fates = st.jobs.fates.clone();
    tokio::spawn(controller(state.clone(), job.clone(), fates));
    reply(201, &job)
}

fn delete_job(
    st: &mut State,
    ns: &str,
    name: &str,
    body: &[u8],
    query_policy: Option<String>,
) -> Resp {
    let body_policy = serde_json::from_slice::<Value>(body).ok().and_then(|o| {
        o.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let policy = body_policy.or(query_policy);
    let Some(job) = st.jobs.jobs.remove(&(ns.to_string(), name.to_string())) else {
        return not_found("jobs", "batch", name);
    };
    st.jobs.deletions.push(JobDeletion {
        namespace: ns.into(),
        name: name.into(),
        propagation_policy: policy.clone(),
    });
    if matches!(policy.as_deref(), Some("Background" | "Foreground")) {
        let doomed: Vec<(String, String)> = st
            .pods
            .iter()
            .filter(|((n, _), p)| {
                n == ns
                    && p.pointer("/metadata/labels/job-name")
                        .and_then(Value::as_str)
                        == Some(name)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            if let Some(mut p) = st.pods.remove(&key) {
                p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                pod_event(st, "DELETED", p);
            }
            if let Some(l) = st.jobs.logs.get_mut(&key) {
                l.closed = true;
            }
        }
        bump(st);
    }
    reply(
        200,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": "batch", "kind": "jobs", "uid": job.pointer("/metadata/uid")}}),
    )
}

fn log_request(st: &mut State, ns: &str, name: &str, q: &dyn Fn(&str) -> Option<String>) -> Resp {
    let Some(pod) = st.pods.get(&(ns.to_string(), name.to_string())) else {
        return not_found("pods", "", name);
    };
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let container = match q("container") {
        Some(c) => c,
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return status(
                400,
                "BadRequest",
                &format!(
                    "a container name must be specified for pod {name}, choose one of: {containers:?}"
                ),
                None,
            );
        }
    };
    if !containers.contains(&container) {
        return status(
            400,
            "BadRequest",
            &format!("container {container} is not valid for pod {name}"),
            None,
        );
    }
    let waiting = pod
        .pointer("/status/containerStatuses/0/state/waiting/reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let has_state = pod.pointer("/status/containerStatuses/0/state").is_some();
    if let Some(reason) = waiting.or_else(|| (!has_state).then(|| "ContainerCreating".into())) {
        return status(
            400,
            "BadRequest",
            &format!("container {container:?} in pod {name:?} is waiting to start: {reason}"),
            None,
        );
    }
    let since = match q("sinceTime").map(|t| t.parse::<jiff::Timestamp>()) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            return status(
                400,
                "BadRequest",
                "sinceTime: cannot parse as RFC 3339",
                None,
            );
        }
    };
    stream_marker(Stream::Log {
        ns: ns.into(),
        pod: name.into(),
        follow: q("follow").as_deref() == Some("true"),
        timestamps: q("timestamps").as_deref() == Some("true"),
        since,
    })
}

// === Streams ===

/// The streaming response for `s`: chunks sent as they come.
pub(super) fn respond(state: Arc<Mutex<State>>, s: Stream) -> Response<BoxBody<Bytes, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let content_type = match &s {
        Stream::Watch { .. } => "application/json",
        Stream::Log { .. } => "text/plain",
    };
    match s {
        Stream::Watch {
            ns,
            selector,
            rv,
            timeout,
        } => {
            tokio::spawn(watch_task(state, ns, selector, rv, timeout, tx));
        }
        Stream::Log {
            ns,
            pod,
            follow,
            timestamps,
            since,
        } => {
            tokio::spawn(log_task(state, ns, pod, follow, timestamps, since, tx));
        }
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn watch_task(
    state: Arc<Mutex<State>>,
    ns: String,
    selector: Option<String>,
    rv: String,
    timeout: Duration,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let sel = selector.as_deref().and_then(|s| Selector::parse(s).ok());
    let matches = |p: &Value| {
        p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns.as_str())
            && sel.as_ref().is_none_or(|s| s.matches_object(p))
    };
    let mut changed = lock(&state).jobs.changed.subscribe();
    let (mut cursor, initial) = {
        let st = lock(&state);
        match rv.parse::<u64>() {
            Ok(v) if v > 0 => (v, Vec::new()),
            _ => (
                st.rv,
                st.pods.values().filter(|p| matches(p)).cloned().collect(),
            ),
        }
    };
    for p in initial {
        if send_event(&tx, "ADDED", &p).await.is_err() {
            return;
        }
    }
    let end = tokio::time::Instant::now() + timeout;
    loop {
        let batch: Vec<(u64, &'static str, Value)> = {
            let st = lock(&state);
            st.jobs
                .events
                .iter()
                .filter(|(v, _, p)| *v > cursor && matches(p))
                .cloned()
                .collect()
        };
        changed.borrow_and_update();
        for (v, kind, p) in batch {
            cursor = v;
            if send_event(&tx, kind, &p).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = tokio::time::sleep_until(end) => return,
            () = tx.closed() => return,
        }
    }
}

async fn send_event(
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    kind: &str,
    p: &Value,
) -> Result<(), tokio::sync::mpsc::error::SendError<Bytes>> {
    let line = format!("{}\n", super::go_json(&json!({"type": kind, "object": p})));
    tx.send(Bytes::from(line)).await
}

/// When log line `k` was written: 300 ms apart from 00:00:01, so several lines share
/// a second (what `sinceTime`, whole seconds, cannot tell apart).
fn line_time(k: usize) -> jiff::Timestamp {
    let base: jiff::Timestamp = "2026-01-01T00:00:01Z".parse().unwrap_or_default();
    base + jiff::SignedDuration::from_millis(300 * k as i64)
}

async fn log_task(
    state: Arc<Mutex<State>>,
    ns: String,
    pod: String,
    follow: bool,
    timestamps: bool,
    since: Option<jiff::Timestamp>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let key = (ns, pod);
    let mut changed = {
        let mut st = lock(&state);
        let rx = st.jobs.changed.subscribe();
        st.jobs.logs.entry(key.clone()).or_default().followers += usize::from(follow);
        bump(&mut st);
        rx
    };
    let mut sent = 0;
    loop {
        let (lines, closed) = {
            let st = lock(&state);
            match st.jobs.logs.get(&key) {
                Some(l) => (l.lines[sent.min(l.lines.len())..].to_vec(), l.closed),
                None => (Vec::new(), true),
            }
        };
        changed.borrow_and_update();
        for l in lines {
            let at = line_time(sent);
            sent += 1;
            if since.is_some_and(|s| at < s) {
                continue;
            }
            let text = if timestamps {
                format!("{} {l}\n", at.strftime("%Y-%m-%dT%H:%M:%S%.9fZ"))
            } else {
                format!("{l}\n")
            };
            if tx.send(Bytes::from(text)).await.is_err() {
                return;
            }
        }
        if closed || !follow {
            return;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

// === The controller and the kubelet ===

fn bump(st: &mut State) {
    let rv = st.rv;
    st.jobs.changed.send_replace(rv);
}

fn pod_event(st: &mut State, kind: &'static str, mut pod: Value) {
    let rv = st.next_rv();
    pod["metadata"]["resourceVersion"] = json!(rv);
    let v = st.rv;
    st.jobs.events.push((v, kind, pod));
}

/// Stores `pod` (a new resourceVersion) and records the event.
fn put_pod(st: &mut State, kind: &'static str, mut pod: Value) {
    let rv = st.next_rv();
    pod["metadata"]["resourceVersion"] = json!(rv);
    let key = (
        pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
    );
    let v = st.rv;
    st.jobs.events.push((v, kind, pod.clone()));
    st.pods.insert(key, pod);
    bump(st);
}

/// Changes the stored pod (if it is still there) with `f`.
fn edit_pod(state: &Arc<Mutex<State>>, key: &(String, String), f: impl FnOnce(&mut Value)) -> bool {
    let mut st = lock(state);
    let Some(mut pod) = st.pods.get(key).cloned() else {
        return false;
    };
    f(&mut pod);
    put_pod(&mut st, "MODIFIED", pod);
    true
}

async fn controller(state: Arc<Mutex<State>>, job: Value, fates: BTreeMap<u32, Fate>) {
    let n = job
        .pointer("/spec/completions")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let i = i as u32;
        let fate = fates.get(&i).cloned().unwrap_or(Fate::Exit {
            lines: Vec::new(),
            code: 0,
        });
        set.spawn(kubelet(state.clone(), job.clone(), i, fate));
    }
    while set.join_next().await.is_some() {}
}

async fn kubelet(state: Arc<Mutex<State>>, job: Value, i: u32, fate: Fate) {
    let ns = job["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let job_name = job["metadata"]["name"].as_str().unwrap_or("").to_string();
    let name = format!("{job_name}-{i}-x{i:04}");
    let key = (ns.clone(), name.clone());
    let mut labels = job
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let index = i.to_string();
    let uid = job["metadata"]["uid"].clone();
    labels["job-name"] = json!(job_name);
    labels["batch.kubernetes.io/job-name"] = json!(job_name);
    labels["controller-uid"] = uid.clone();
    labels["batch.kubernetes.io/controller-uid"] = uid.clone();
    labels["batch.kubernetes.io/job-completion-index"] = json!(index);
    let mut annotations = job
        .pointer("/spec/template/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    annotations["batch.kubernetes.io/job-completion-index"] = json!(index);
    let spec = job
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(json!({}));
    let container = spec
        .pointer("/containers/0/name")
        .and_then(Value::as_str)
        .unwrap_or("main")
        .to_string();
    let image = spec
        .pointer("/containers/0/image")
        .cloned()
        .unwrap_or(Value::Null);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations,
                     "uid": format!("uid-pod-{name}"), "creationTimestamp": "2026-01-01T00:00:00Z",
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                          "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": spec,
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    });
    {
        let mut st = lock(&state);
        st.jobs.logs.insert(key.clone(), PodLog::default());
        put_pod(&mut st, "ADDED", pod);
    }
    tokio::task::yield_now().await;
    let status = |state: Value| json!([{"name": container, "image": image, "ready": false, "restartCount": 0, "state": state}]);
    let lines = match fate {
        Fate::Waiting { reason, message } => {
            let s = status(json!({"waiting": {"reason": reason, "message": message}}));
            edit_pod(&state, &key, |p| p["status"]["containerStatuses"] = s);
            return;
        }
        Fate::Unschedulable { message } => {
            edit_pod(&state, &key, |p| {
                p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": message}]);
            });
            return;
        }
        Fate::Exit { ref lines, .. } | Fate::OomKilled { ref lines } | Fate::Hang { ref lines } => {
            lines.clone()
        }
        Fate::Quiet { ref before, .. } => before.clone(),
    };
    let running = status(json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}}));
    if !edit_pod(&state, &key, |p| {
        p["status"]["phase"] = json!("Running");
        p["status"]["containerStatuses"] = running;
    }) {
        return;
    }
    // Print once someone follows the log (bounded: 10 s), so the test covers a log
    // streamed while the pod runs.
    let mut changed = lock(&state).jobs.changed.subscribe();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let followed = lock(&state)
            .jobs
            .logs
            .get(&key)
            .is_none_or(|l| l.followers > 0);
        changed.borrow_and_update();
        if followed {
            break;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = tokio::time::sleep_until(until) => break,
        }
    }
    for l in lines {
        {
            let mut st = lock(&state);
            if let Some(log) = st.jobs.logs.get_mut(&key) {
                log.lines.push(l);
            }
            bump(&mut st);
        }
        tokio::task::yield_now().await;
    }
    if let Fate::Quiet { pause, after, .. } = &fate {
        tokio::time::sleep(*pause).await;
        for l in after {
            let mut st = lock(&state);
            if let Some(log) = st.jobs.logs.get_mut(&key) {
                log.lines.push(l.clone());
            }
            bump(&mut st);
        }
    }
    let (code, reason, phase) = match fate {
        Fate::Quiet { .. } => (0, "Completed", "Succeeded"),
        Fate::Exit { code, .. } => (
            code,
            if code == 0 { "Completed" } else { "Error" },
            if code == 0 { "Succeeded" } else { "Failed" },
        ),
        Fate::OomKilled { .. } => (137, "OOMKilled", "Failed"),
        _ => return,
    };
    {
        let mut st = lock(&state);
        if let Some(log) = st.jobs.logs.get_mut(&key) {
            log.closed = true;
        }
        bump(&mut st);
    }
    let done = status(json!({"terminated": {"exitCode": code, "reason": reason,
        "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z"}}));
    edit_pod(&state, &key, |p| {
        p["status"]["phase"] = json!(phase);
        p["status"]["containerStatuses"] = done;
    });
}
