//! Load workers as a Kubernetes Indexed Job: the manifest ([`job_manifest`]) and the
//! run ([`Cluster::run_job`](super::Cluster::run_job), in `job/run.rs`) that turns
//! what the Job's pods print and how they end into [`fleet::Event`](crate::fleet::Event)s.
//!
//! # What it owns
//! - the Job meshdrill creates: `completionMode: Indexed`, `completions = parallelism =
//!   N`, no retries (`backoffLimit: 0`: a retried worker would send its share twice),
//!   a deadline, a TTL, an owner reference to meshdrill's own pod when it runs in one,
//!   and a locked-down worker container;
//! - creating it, following its pods (list + watch by `job-name`), streaming their
//!   logs, deciding how each worker ended, and deleting the Job (background
//!   propagation, so its pods go too) however the run ends.
//!
//! It does not know the worker protocol: the worker argv comes from `fleet`, and the
//! lines go back to `fleet` unparsed. Must not print.

mod run;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::ApiFailure;
use crate::fleet::WorkerEnd;

/// The image workers run unless `--image` says otherwise.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/meshdrill/meshdrill:", env!("CARGO_PKG_VERSION"));
/// Name of the worker container in each pod.
pub const CONTAINER: &str = "worker";
/// Label every meshdrill Job and worker pod carries: the run id.
pub const RUN_ID_LABEL: &str = "meshdrill.io/run-id";
/// How long a finished Job stays (if meshdrill could not delete it) before the TTL
/// controller removes it.
pub const TTL_AFTER_FINISHED: i32 = 600;
/// Added to the run's bound for `activeDeadlineSeconds`: pulling the image,
/// scheduling, starting the pods.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(120);
/// Exactly the requests a run sends, as RBAC rules (API group, resource, verbs): for
/// error hints, and `deploy/load-rbac.yaml` grants these and no more.
pub const RBAC: [(&str, &str, &[&str]); 3] = [
    ("batch", "jobs", &["create", "delete"]),
    ("", "pods", &["list", "watch"]),
    ("", "pods/log", &["get"]),
];

/// meshdrill's own pod, to own the Job (read from the downward API variables
/// `POD_NAME`, `POD_UID`, `POD_NAMESPACE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOwner {
    pub name: String,
    pub uid: String,
    pub namespace: String,
}

impl PodOwner {
    /// The owner pod from `POD_NAME`, `POD_UID` and `POD_NAMESPACE` (all three set and
    /// non-empty), as looked up by `env`; `None` outside a pod.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        Some(Self {
            name: get("POD_NAME")?,
            uid: get("POD_UID")?,
            namespace: get("POD_NAMESPACE")?,
        })
    }
}

/// What [`job_manifest`] needs: one load run split across `workers` pods.
#[derive(Debug, Clone)]
pub struct WorkerJob {
    /// The run id: lowercase letters, digits and `-`, 1 to 40 characters (it names the
    /// Job `meshdrill-load-<run_id>` and labels it).
    pub run_id: String,
    pub namespace: String,
    /// The image (`--image`); [`DEFAULT_IMAGE`] by default.
    pub image: String,
    /// N: pods, one per worker index `0..N`.
    pub workers: u32,
    /// The worker argv after `meshdrill`, without `--worker-index` (each pod adds
    /// its own from `JOB_COMPLETION_INDEX`).
    pub args: Vec<String>,
    /// How long the run may take: its duration (or a cap for `-n` runs) + the request
    /// timeout + the start margin. The Job's deadline adds [`DEADLINE_SLACK`].
    pub bound: Duration,
    /// meshdrill's own pod, when it runs in one: it owns the Job if it is in the
    /// same namespace (an owner in another namespace is not allowed, and the garbage
    /// collector would delete the Job at once).
    pub owner: Option<PodOwner>,
    /// Inject the Istio sidecar into the workers (`sidecar.istio.io/inject`). Off by
    /// default: without native sidecars a sidecar keeps the pod running after the
    /// worker ended.
    pub sidecar: bool,
}

/// The name of the Job for `run_id`.
pub fn job_name(run_id: &str) -> String {
    format!("meshdrill-load-{run_id}")
}

/// The Job that runs `w`'s workers. Pure; [`ManifestError`] when `w` cannot make a
/// valid Job (a run id that is no DNS label, no workers, an empty image).
pub fn job_manifest(w: &WorkerJob) -> Result<Job, ManifestError> {
    let ok_id = !w.run_id.is_empty()
        && w.run_id.len() <= 40
        && w.run_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !w.run_id.starts_with('-')
        && !w.run_id.ends_with('-');
    if !ok_id {
        return Err(ManifestError::RunId(w.run_id.clone()));
    }
    if w.workers == 0 || w.workers > 1000 {
        return Err(ManifestError::Workers(w.workers));
    }
    if w.image.trim().is_empty() || w.image.chars().any(char::is_whitespace) {
        return Err(ManifestError::Image(w.image.clone()));
    }
    let name = job_name(&w.run_id);
    let n = i32::try_from(w.workers).map_err(|_| ManifestError::Workers(w.workers))?;
    let labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name", "meshdrill"),
        ("app.kubernetes.io/component", "load-worker"),
        (RUN_ID_LABEL, w.run_id.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let owner_references = w
        .owner
        .as_ref()
        .filter(|o| o.namespace == w.namespace)
        .map(|o| {
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: o.name.clone(),
                uid: o.uid.clone(),
                controller: Some(false),
                block_owner_deletion: Some(false),
            }]
        });
    let deadline = w.bound.saturating_add(DEADLINE_SLACK).as_secs().max(1);
    let mut args = w.args.clone();
    args.push("--worker-index=$(JOB_COMPLETION_INDEX)".into());
    let q = |s: &str| Quantity(s.to_string());
    let container = Container {
        name: CONTAINER.into(),
        image: Some(w.image.clone()),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                        .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        // No CPU limit: CFS throttling would show up as latency in the worker's own
        // measurements.
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), q("500m")),
                    ("memory".to_string(), q("64Mi")),
                ]
                .into(),
            ),
            limits: Some([("memory".to_string(), q("256Mi"))].into()),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let annotations: BTreeMap<String, String> =
        [("sidecar.istio.io/inject".to_string(), w.sidecar.to_string())].into();
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(w.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references,
            ..Default::default()
        },
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(n),
            parallelism: Some(n),
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::try_from(deadline).unwrap_or(i64::MAX)),
            ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(10),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// Why [`job_manifest`] cannot make a Job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The run id cannot name a Job.
    #[error(
        "run id {0:?} cannot name a Job: use 1 to 40 lowercase letters, digits or '-', not starting or ending with '-'"
    )]
    RunId(String),
    /// Zero workers, or more than meshdrill runs in one Job.
    #[error("--workers {0}: give 1 to 1000 workers")]
    Workers(u32),
    /// An empty image reference.
    #[error("--image {0:?}: give an image reference such as {DEFAULT_IMAGE}")]
    Image(String),
}

/// How a Job run went: each worker's end, and whether the Job is gone.
#[derive(Debug)]
pub struct JobOutcome {
    pub namespace: String,
    /// The Job's name.
    pub name: String,
    /// How each worker ended, by index (every index `0..N`; a worker the run did not
    /// see end — cancelled, or past the deadline — is a `Failed` saying so).
    pub ends: BTreeMap<u32, WorkerEnd>,
    /// The run was cancelled (Ctrl-C, or the receiver of the events went away).
    pub cancelled: bool,
    /// The Job could not be deleted: the error names the command that removes it.
    pub not_deleted: Option<JobError>,
}

/// Errors of a Job run, one variant per operation.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The manifest lacks what a run needs (a name, `spec.completions`).
    #[error("the Job manifest cannot be run: {0}")]
    Manifest(String),
    /// Creating the Job failed; nothing was created.
    #[error("cannot create Job {namespace}/{name}: {failure}")]
    CreateJob {
        namespace: String,
        name: String,
        failure: Box<ApiFailure>,
    },
    /// Listing or watching the Job's pods failed; `cleanup` says whether the Job was
    /// deleted.
    #[error("cannot follow the pods of Job {namespace}/{name}: {failure}; {cleanup}")]
    WatchPods {
        namespace: String,
        name: String,
        failure: Box<ApiFailure>,
        cleanup: String,
    },
    /// Deleting the Job failed: it (and its pods) may still be there.
    #[error(
        "cannot delete Job {namespace}/{name}: {failure}; remove it with: kubectl delete job {name} -n {namespace}"
    )]
    DeleteJob {
        namespace: String,
        name: String,
        failure: Box<ApiFailure>,
    },
}

impl JobError {
    /// The HTTP status the API server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            JobError::CreateJob { failure, .. }
            | JobError::WatchPods { failure, .. }
            | JobError::DeleteJob { failure, .. } => failure.status,
            JobError::Manifest(_) => None,
        }
    }
}

/// `verb on resource.group, ...` for the RBAC hint, e.g. `create, get, list, watch,
/// delete on jobs.batch; get, list, watch on pods; get on pods/log`.
pub fn rbac_summary() -> String {
    RBAC.iter()
        .map(|(group, res, verbs)| {
            let what = if group.is_empty() {
                res.to_string()
            } else {
                format!("{res}.{group}")
            };
            format!("{} on {what}", verbs.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What to do about a failed request, by status.
fn hint(status: Option<u16>, namespace: &str, name: &str) -> Option<String> {
    match status {
        Some(403) => Some(format!(
            "meshdrill needs, in namespace {namespace}: {}. Bind a Role such as deploy/load-rbac.yaml to this identity",
            rbac_summary()
        )),
        Some(404) => Some(format!(
            "does namespace {namespace} exist? Check with: kubectl get namespace {namespace}"
        )),
        Some(409) => Some(format!(
            "a Job named {name} already exists in {namespace} (a run with the same run id?); remove it with: kubectl delete job {name} -n {namespace}"
        )),
        _ => None,
    }
}
