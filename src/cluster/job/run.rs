//! Running a worker Job: create, follow the pods, stream their logs, delete.
//!
//! # How a worker's end is decided (from its pod, as the watch delivers it)
//! - the `worker` container `terminated`: exit code 0 or any code the worker chose →
//!   `Exited{code}`; `OOMKilled`, a signal (`signal` set, or a code above 128) →
//!   `Failed` with the last [`TAIL`] log lines;
//! - the pod `Failed` without a terminated container (`Evicted`, `DeadlineExceeded`)
//!   → `Failed{reason: message}`;
//! - the container `waiting` in `ErrImagePull`, `ImagePullBackOff`,
//!   `InvalidImageName`, `CreateContainerConfigError` or `CreateContainerError`, or
//!   `PodScheduled=False` with reason `Unschedulable` → `NeverStarted` with the
//!   kubelet's (or scheduler's) message — the first time it is seen: a drill's load
//!   has a start time, and a worker that missed it would send a late, wrong share;
//! - the pod deleted before its container ended → `Failed`.
//!
//! The `Ended` event of a worker comes after its last `Line`: the log stream (followed
//! from when the container runs until the kubelet closes it) is read to its end first.
//! A worker never seen to end by the Job's deadline (plus a minute) is `Failed`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures_util::io::{AsyncBufReadExt, AsyncReadExt};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy, WatchEvent,
    WatchParams,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{CONTAINER, JobError, JobOutcome, hint};
use crate::cancel::Cancel;
use crate::cluster::{ApiFailure, Cluster};
use crate::fleet::{Event, WorkerEnd};

/// Log lines kept per worker for a `Failed` end.
pub const TAIL: usize = 20;
/// A log line longer than this is cut (a worker's wire lines are far shorter).
const MAX_LINE: usize = 1 << 20;
/// How long deleting the Job may take before it is reported as not deleted.
const DELETE_TIMEOUT: Duration = Duration::from_secs(15);
/// Waiting reasons that mean the container will not start by itself.
const NEVER_STARTS: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What a pod says about its worker right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodView {
    /// Not running yet (scheduling, pulling, creating).
    Pending,
    /// The container runs: its log can be followed.
    Running,
    /// It ended; a `Failed` end has no tail yet.
    Ended(WorkerEnd),
}

/// The completion index of a Job pod: its `batch.kubernetes.io/job-completion-index`
/// annotation (or label, Kubernetes 1.28+).
pub(crate) fn pod_index(pod: &Pod) -> Option<u32> {
    const KEY: &str = "batch.kubernetes.io/job-completion-index";
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(KEY))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(KEY)))
        .and_then(|v| v.parse().ok())
}

/// How the pod's worker stands (see the module doc for the rules).
pub(crate) fn pod_view(pod: &Pod) -> PodView {
    let Some(status) = pod.status.as_ref() else {
        return PodView::Pending;
    };
    let cs = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER);
    let state = cs.and_then(|c| c.state.as_ref());
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        let reason = t.reason.clone().unwrap_or_default();
        let signal = t.signal.or((t.exit_code > 128).then(|| t.exit_code - 128));
        let end = if reason == "OOMKilled" {
            WorkerEnd::Failed {
                reason: format!("OOMKilled (exit code {})", t.exit_code),
                tail: Vec::new(),
            }
        } else if let Some(sig) = signal {
            WorkerEnd::Failed {
                reason: format!("killed by signal {sig} (exit code {})", t.exit_code),
                tail: Vec::new(),
            }
        } else {
            WorkerEnd::Exited { code: t.exit_code }
        };
        return PodView::Ended(end);
    }
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.clone().unwrap_or_else(|| "Failed".into());
        let message = status.message.clone().unwrap_or_default();
        return PodView::Ended(WorkerEnd::Failed {
            reason: join(&reason, &message),
            tail: Vec::new(),
        });
    }
    if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = w.reason.clone().unwrap_or_default();
        if NEVER_STARTS.contains(&reason.as_str()) {
            return PodView::Ended(WorkerEnd::NeverStarted {
                reason: join(&reason, w.message.as_deref().unwrap_or_default()),
            });
        }
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return PodView::Ended(WorkerEnd::NeverStarted {
            reason: join("Unschedulable", c.message.as_deref().unwrap_or_default()),
        });
    }
    if state.is_some_and(|s| s.running.is_some()) {
        return PodView::Running;
    }
    PodView::Pending
}

fn join(reason: &str, message: &str) -> String {
    if message.is_empty() {
        reason.to_string()
    } else {
        format!("{reason}: {message}")
    }
}

/// One worker as followed.
#[derive(Default)]
struct Worker {
    /// The pod followed for this index (the first seen).
    pod: Option<String>,
    /// Its log is being (or was) read.
    logging: bool,
    /// The log was read to its end; the tail.
    log_done: Option<Vec<String>>,
    /// How it ended, once seen (sent when the log is done too).
    end: Option<WorkerEnd>,
    /// `Ended` was sent.
    sent: bool,
}

/// What the pod follower reports.
enum PodUpdate {
    Changed(Pod),
    Deleted(Pod),
}

impl Cluster {
    /// Creates `job` (from [`job_manifest`](super::job_manifest)) in `namespace`, sends
    /// each worker's log lines and end on `tx`, and deletes the Job (background
    /// propagation: its pods go too) whatever happens: all workers ended, an error,
    /// `cancel`, or the receiver of `tx` dropped. Cancel stops within the time of one
    /// DELETE (at most 15 s).
    ///
    /// Errors: the Job could not be created ([`JobError::CreateJob`], with what to do
    /// for 403, 404 and 409), or its pods could not be followed
    /// ([`JobError::WatchPods`], after the Job was deleted). A failed delete at the end
    /// is in [`JobOutcome::not_deleted`].
    pub async fn run_job(
        &self,
        namespace: &str,
        job: &Job,
        tx: mpsc::Sender<Event>,
        cancel: &Cancel,
    ) -> Result<JobOutcome, JobError> {
        let name = job
            .metadata
            .name
            .clone()
            .ok_or_else(|| JobError::Manifest("metadata.name is not set".into()))?;
        let spec = job
            .spec
            .as_ref()
            .ok_or_else(|| JobError::Manifest("spec is not set".into()))?;
        let n = spec
            .completions
            .and_then(|c| u32::try_from(c).ok())
            .filter(|c| *c > 0)
            .ok_or_else(|| {
                JobError::Manifest("spec.completions is not a positive number".into())
            })?;
        let deadline = spec
            .active_deadline_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(|s| Duration::from_secs(s.saturating_add(60)));

        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        if cancel.is_cancelled() {
            return Ok(self.outcome(namespace, &name, n, BTreeMap::new(), true, None));
        }
        let pp = PostParams::default();
        let created = tokio::select! {
            r = jobs.create(&pp, job) => r,
            () = cancel.cancelled() => {
                // The POST may have landed: delete to be sure.
                let not_deleted = self.delete_job(&jobs, namespace, &name).await.err();
                return Ok(self.outcome(namespace, &name, n, BTreeMap::new(), true, not_deleted));
            }
        };
        if let Err(e) = created {
            let mut failure = self.failure(&e);
            failure.hint = hint(failure.status, namespace, &name);
            return Err(JobError::CreateJob {
                namespace: namespace.into(),
                name,
                failure,
            });
        }

        let followed = self
            .follow(namespace, &name, n, deadline, &tx, cancel)
            .await;
        let not_deleted = self.delete_job(&jobs, namespace, &name).await.err();
        match followed {
            Ok((ends, cancelled)) => {
                Ok(self.outcome(namespace, &name, n, ends, cancelled, not_deleted))
            }
            Err(mut failure) => {
                if failure.hint.is_none() {
                    failure.hint = hint(failure.status, namespace, &name);
                }
                Err(JobError::WatchPods {
                    namespace: namespace.into(),
                    name,
                    failure,
                    cleanup: match not_deleted {
                        None => "the Job was deleted".into(),
                        Some(e) => e.to_string(),
                    },
                })
            }
        }
    }

    fn outcome(
        &self,
        namespace: &str,
        name: &str,
        n: u32,
        mut ends: BTreeMap<u32, WorkerEnd>,
        cancelled: bool,
        not_deleted: Option<JobError>,
    ) -> JobOutcome {
        for i in 0..n {
            ends.entry(i).or_insert_with(|| WorkerEnd::Failed {
                reason: if cancelled {
                    "cancelled before it ended".into()
                } else {
                    "not seen to end by the Job's deadline".into()
                },
                tail: Vec::new(),
            });
        }
        JobOutcome {
            namespace: namespace.into(),
            name: name.into(),
            ends,
            cancelled,
            not_deleted,
        }
    }

    /// Deletes the Job with background propagation; a 404 (already gone) is fine.
    async fn delete_job(
        &self,
        jobs: &Api<Job>,
        namespace: &str,
        name: &str,
    ) -> Result<(), JobError> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let failure = match tokio::time::timeout(DELETE_TIMEOUT, jobs.delete(name, &dp)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => return Ok(()),
            Ok(Err(e)) => {
                let mut f = self.failure(&e);
                if f.hint.is_none() && f.status == Some(403) {
                    f.hint = hint(f.status, namespace, name);
                }
                f
            }
            Err(_) => Box::new(ApiFailure {
                status: None,
                reason: String::new(),
                message: format!("no answer within {}s", DELETE_TIMEOUT.as_secs()),
                via: None,
                causes: Vec::new(),
                fields: Vec::new(),
                hint: None,
            }),
        };
        Err(JobError::DeleteJob {
            namespace: namespace.into(),
            name: name.into(),
            failure,
        })
    }

    /// Follows the Job's pods until every worker ended, `cancel`, the receiver went
    /// away, or the deadline: (ends, cancelled).
    async fn follow(
        &self,
        namespace: &str,
        name: &str,
        n: u32,
        deadline: Option<Duration>,
        tx: &mpsc::Sender<Event>,
        cancel: &Cancel,
    ) -> Result<(BTreeMap<u32, WorkerEnd>, bool), Box<ApiFailure>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let selector = format!("job-name={name}");
        let (upd_tx, mut upd_rx) = mpsc::channel::<PodUpdate>(64);
        let mut watcher = tokio::spawn(watch_pods(pods.clone(), selector, upd_tx));
        let mut logs: JoinSet<(u32, Vec<String>)> = JoinSet::new();
        let mut workers: BTreeMap<u32, Worker> = (0..n).map(|i| (i, Worker::default())).collect();
        let mut ends = BTreeMap::new();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let mut sleep = std::pin::pin!(sleep);
        let mut watch_result: Option<Result<(), kube::Error>> = None;
        let result = loop {
            if ends.len() as u64 >= u64::from(n) {
                break Ok(false);
            }
            tokio::select! {
                () = cancel.cancelled() => break Ok(true),
                () = &mut sleep => break Ok(false),
                () = tx.closed() => break Ok(true),
                Some(u) = upd_rx.recv() => {
                    let (pod, deleted) = match u {
                        PodUpdate::Changed(p) => (p, false),
                        PodUpdate::Deleted(p) => (p, true),
                    };
                    let (Some(i), Some(pod_name)) = (pod_index(&pod), pod.metadata.name.clone()) else {
                        continue;
                    };
                    let Some(w) = workers.get_mut(&i) else { continue };
                    if w.end.is_some() || w.pod.as_ref().is_some_and(|p| *p != pod_name) {
                        continue;
                    }
                    w.pod = Some(pod_name.clone());
                    let view = pod_view(&pod);
                    match &view {
                        PodView::Running | PodView::Ended(WorkerEnd::Exited { .. } | WorkerEnd::Failed { .. })
                            if !w.logging =>
                        {
                            w.logging = true;
                            logs.spawn(stream_log(pods.clone(), pod_name, i, tx.clone(), cancel.clone()));
                        }
                        _ => {}
                    }
                    match view {
                        PodView::Ended(end) => {
                            if matches!(end, WorkerEnd::NeverStarted { .. }) {
                                w.log_done = Some(Vec::new());
                            }
                            w.end = Some(end);
                        }
                        _ if deleted => {
                            w.end = Some(WorkerEnd::Failed {
                                reason: "its pod was deleted before the worker ended".into(),
                                tail: Vec::new(),
                            });
                            if !w.logging {
                                w.log_done = Some(Vec::new());
                            }
                        }
                        _ => {}
                    }
                    if send_if_done(i, w, tx, &mut ends).await.is_err() {
                        break Ok(true);
                    }
                }
                Some(done) = logs.join_next() => {
                    if let Ok((i, tail)) = done
                        && let Some(w) = workers.get_mut(&i)
                    {
                        w.log_done = Some(tail);
                        if send_if_done(i, w, tx, &mut ends).await.is_err() {
                            break Ok(true);
                        }
                    }
                }
                r = &mut watcher, if watch_result.is_none() => {
                    let r = r.unwrap_or(Ok(()));
                    if let Err(e) = r {
                        break Err(self.failure(&e));
                    }
                    watch_result = Some(Ok(()));
                }
            }
        };
        watcher.abort();
        logs.abort_all();
        result.map(|cancelled| (ends, cancelled))
    }
}

/// Sends `Ended` for worker `i` once both its end and its log's end are known.
async fn send_if_done(
    i: u32,
    w: &mut Worker,
    tx: &mpsc::Sender<Event>,
    ends: &mut BTreeMap<u32, WorkerEnd>,
) -> Result<(), mpsc::error::SendError<Event>> {
    if w.sent {
        return Ok(());
    }
    let (Some(end), Some(tail)) = (w.end.as_ref(), w.log_done.as_ref()) else {
        return Ok(());
    };
    let end = match end.clone() {
        WorkerEnd::Failed { reason, .. } => WorkerEnd::Failed {
            reason,
            tail: tail.clone(),
        },
        other => other,
    };
    w.sent = true;
    ends.insert(i, end.clone());
    tx.send(Event::Ended { worker: i, end }).await
}

/// Lists the pods matching `selector`, then watches them from that list's
/// resourceVersion, re-watching from the last one seen when a watch ends or its
/// connection breaks (a quiet watch outlives the client's read timeout: the API
/// server sends nothing between events), and re-listing on 410 Gone. Ends when the
/// receiver is gone; an error when the server refuses a list or watch (a status), or
/// when [`WATCH_TRIES`] attempts in a row to open a watch get no answer.
async fn watch_pods(
    pods: Api<Pod>,
    selector: String,
    out: mpsc::Sender<PodUpdate>,
) -> Result<(), kube::Error> {
    let lp = ListParams::default().labels(&selector);
    let wp = WatchParams::default().labels(&selector).timeout(290);
    let mut broken = 0u32;
    'relist: loop {
        let list = pods.list(&lp).await?;
        let mut rv = list.metadata.resource_version.clone().unwrap_or_default();
        for p in list.items {
            if out.send(PodUpdate::Changed(p)).await.is_err() {
                return Ok(());
            }
        }
        loop {
            let mut stream = match pods.watch(&wp, &rv).await {
                Ok(s) => s.boxed(),
                Err(e) => {
                    broken = transport_retry(e, broken).await?;
                    continue;
                }
            };
            broken = 0;
            loop {
                let ev = match stream.try_next().await {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    // The connection of an open watch broke (a quiet watch reaches the
                    // read timeout): watch again from the last resourceVersion.
                    Err(kube::Error::Api(s)) => return Err(kube::Error::Api(s)),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                let (upd, new_rv) = match ev {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                        let v = p.metadata.resource_version.clone();
                        (Some(PodUpdate::Changed(p)), v)
                    }
                    WatchEvent::Deleted(p) => {
                        let v = p.metadata.resource_version.clone();
                        (Some(PodUpdate::Deleted(p)), v)
                    }
                    WatchEvent::Bookmark(b) => (None, Some(b.metadata.resource_version)),
                    WatchEvent::Error(e) if e.code == 410 => continue 'relist,
                    WatchEvent::Error(e) => return Err(kube::Error::Api(e)),
                };
                if let Some(v) = new_rv {
                    rv = v;
                }
                if let Some(u) = upd
                    && out.send(u).await.is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Attempts in a row to open a watch before giving up.
const WATCH_TRIES: u32 = 5;

/// A status from the server is final; a broken connection (a read timeout, a reset)
/// is tried again after a pause (0.2 s, doubling), up to [`WATCH_TRIES`] in a row.
/// Returns the new count of broken connections in a row.
async fn transport_retry(e: kube::Error, broken: u32) -> Result<u32, kube::Error> {
    if matches!(e, kube::Error::Api(_)) || broken + 1 >= WATCH_TRIES {
        return Err(e);
    }
    tokio::time::sleep(Duration::from_millis(200 << broken)).await;
    Ok(broken + 1)
}

/// Follows the log of the worker container of `pod`, sending each line as
/// `Event::Line` for worker `i`; returns the last [`TAIL`] lines when the stream
/// ends. Opening is tried up to 5 times in a row (the container may not be ready for
/// its log yet). A connection that breaks (a worker quiet for longer than the
/// client's read timeout) is opened again from the last line's timestamp (the log is
/// read with `timestamps=true`), skipping the lines already sent. A log that cannot
/// be read leaves a note in the tail.
async fn stream_log(
    pods: Api<Pod>,
    pod: String,
    i: u32,
    tx: mpsc::Sender<Event>,
    cancel: Cancel,
) -> (u32, Vec<String>) {
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL + 1);
    let push = |tail: &mut VecDeque<String>, line: String| {
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    // The timestamp of the last line sent, and how many lines carried it.
    let mut last: Option<(jiff::Timestamp, usize)> = None;
    let mut failures = 0u32;
    let mut last_err = String::new();
    'open: while failures < 5 {
        if failures > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200 << failures)) => {}
                () = cancel.cancelled() => break,
            }
        }
        let lp = LogParams {
            container: Some(CONTAINER.into()),
            follow: true,
            timestamps: true,
            // A second early: sinceTime is rounded to the second.
            since_time: last.map(|(t, _)| t - jiff::SignedDuration::from_secs(1)),
            ..LogParams::default()
        };
        let reader = tokio::select! {
            r = pods.log_stream(&pod, &lp) => r,
            () = cancel.cancelled() => break,
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                last_err = e.to_string();
                failures += 1;
                continue;
            }
        };
        let mut reader = std::pin::pin!(reader);
        // Lines at the resume timestamp already sent, still to skip.
        let mut skip_at_last = last.map_or(0, |(_, n)| n);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let mut limited = (&mut reader).take(MAX_LINE as u64);
            let read = tokio::select! {
                r = limited.read_until(b'\n', &mut buf) => r,
                () = cancel.cancelled() => break 'open,
            };
            match read {
                Ok(0) => break 'open,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    let text = String::from_utf8_lossy(&buf);
                    let (ts, line) = split_timestamp(&text);
                    if let (Some(ts), Some((lt, n))) = (ts, last.as_mut()) {
                        if ts < *lt {
                            continue;
                        }
                        if ts == *lt {
                            if skip_at_last > 0 {
                                skip_at_last -= 1;
                                continue;
                            }
                            *n += 1;
                        } else {
                            *lt = ts;
                            *n = 1;
                            skip_at_last = 0;
                        }
                    } else if let Some(ts) = ts {
                        last = Some((ts, 1));
                    }
                    failures = 0;
                    let line = line.to_string();
                    push(&mut tail, line.clone());
                    if tx.send(Event::Line { worker: i, line }).await.is_err() {
                        break 'open;
                    }
                }
                Err(e) => {
                    last_err = format!("broke off: {e}");
                    failures += 1;
                    continue 'open;
                }
            }
        }
    }
    if failures >= 5 {
        push(
            &mut tail,
            format!("(the log of pod {pod} cannot be read: {last_err})"),
        );
    }
    (i, tail.into())
}

/// Splits `2026-01-01T00:00:01.123456789Z text` into its timestamp and text (the
/// whole line and no timestamp when it does not start with one).
fn split_timestamp(line: &str) -> (Option<jiff::Timestamp>, &str) {
    if let Some((ts, rest)) = line.split_once(' ')
        && let Ok(t) = ts.parse::<jiff::Timestamp>()
    {
        return (Some(t), rest);
    }
    match line.parse::<jiff::Timestamp>() {
        Ok(t) => (Some(t), ""),
        Err(_) => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "annotations": {"batch.kubernetes.io/job-completion-index": "3"}},
            "status": status,
        }))
        .expect("pod")
    }

    fn terminated(code: i32, reason: &str) -> Pod {
        pod(
            serde_json::json!({"phase": "Failed", "containerStatuses": [{
            "name": CONTAINER, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason}}}]}),
        )
    }

    #[test]
    fn ends_by_the_rules() {
        assert_eq!(pod_index(&terminated(0, "Completed")), Some(3));
        assert_eq!(
            pod_view(&terminated(0, "Completed")),
            PodView::Ended(WorkerEnd::Exited { code: 0 })
        );
        assert_eq!(
            pod_view(&terminated(3, "Error")),
            PodView::Ended(WorkerEnd::Exited { code: 3 })
        );
        for (code, reason, want) in [
            (137, "OOMKilled", "OOMKilled (exit code 137)"),
            (143, "Error", "killed by signal 15 (exit code 143)"),
        ] {
            match pod_view(&terminated(code, reason)) {
                PodView::Ended(WorkerEnd::Failed { reason, .. }) => assert_eq!(reason, want),
                other => panic!("{code}: {other:?}"),
            }
        }
        let evicted = pod(serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(
            pod_view(&evicted),
            PodView::Ended(WorkerEnd::Failed {
                reason: "Evicted: The node was low on resource: memory.".into(),
                tail: Vec::new()
            })
        );
        let creating = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{
            "name": CONTAINER, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(pod_view(&creating), PodView::Pending);
        assert_eq!(pod_view(&pod(serde_json::json!({}))), PodView::Pending);
    }

    #[test]
    fn timestamps_split_off_log_lines() {
        let (t, rest) = split_timestamp("2026-01-01T00:00:01.300000000Z {\"a\":1} b");
        assert!(t.is_some());
        assert_eq!(rest, "{\"a\":1} b");
        assert_eq!(
            split_timestamp("no timestamp here"),
            (None, "no timestamp here")
        );
    }
}
