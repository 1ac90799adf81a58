//! The Kubernetes backend put together: one load run's workers as an Indexed Job
//! ([`crate::cluster::job`]), their pod logs merged by the coordinator — for
//! `meshdrill load --workers N --in-cluster` and for chaostoolkit's
//! `kubectl run … siege …` activities.

use std::time::{Duration, SystemTime};

use super::{Backend, FleetError, FleetReport};
use crate::cluster::Cluster;
use crate::cluster::job::{
    DEFAULT_IMAGE, JobError, ManifestError, PodOwner, WorkerJob, job_manifest,
};
use crate::load::{Cancel, IntervalSnapshot, LoadConfig, MAX_START_SKEW, Stop};

/// How long after the Job is created its workers start: time to schedule the pods and
/// pull the image. A pod that starts later sends its overdue requests late, and they
/// count so.
pub const START_MARGIN: Duration = Duration::from_secs(30);

/// Where the Job goes and what it runs.
#[derive(Debug, Clone)]
pub struct InCluster {
    pub namespace: String,
    /// The workers' image ([`DEFAULT_IMAGE`] when `None`).
    pub image: Option<String>,
}

/// Why an in-cluster run could not happen (a worker that fails is not an error: the
/// report is partial).
#[derive(Debug, thiserror::Error)]
pub enum InClusterError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// The merged result, and the Job's delete failure if there was one (the error names
/// the `kubectl delete` that removes it).
pub struct InClusterReport {
    pub fleet: FleetReport,
    pub not_deleted: Option<JobError>,
}

/// Runs `config` on `n` workers in a Job in `target.namespace`, reading their results
/// from the pod logs; the Job is deleted however the run ends (cancel included).
pub async fn run<F>(
    cluster: &Cluster,
    target: &InCluster,
    config: &LoadConfig,
    n: u32,
    cancel: Cancel,
    on_interval: F,
) -> Result<InClusterReport, InClusterError>
where
    F: FnMut(&IntervalSnapshot),
{
    let start_at = super::start_time(n) + START_MARGIN;
    let bound = match config.stop() {
        Stop::Duration(d) => d,
        // A count: as long as a worker may run (the Job's deadline stops it).
        Stop::Requests(_) => MAX_START_SKEW,
    } + config.timeout()
        + START_MARGIN;
    let job = WorkerJob {
        run_id: run_id(),
        namespace: target.namespace.clone(),
        image: target
            .image
            .clone()
            .unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
        workers: n,
        args: super::worker_args(config, n, start_at),
        bound,
        owner: PodOwner::from_env(&|k| std::env::var(k).ok()),
        sidecar: false,
    };
    let manifest = job_manifest(&job)?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let runner = cluster.run_job(&target.namespace, &manifest, tx, &cancel);
    let merged = super::run(
        config,
        n,
        start_at,
        Backend::Events(rx),
        cancel.clone(),
        on_interval,
    );
    let (job, merged) = tokio::join!(runner, merged);
    let outcome = job?;
    Ok(InClusterReport {
        fleet: merged?,
        not_deleted: outcome.not_deleted,
    })
}

/// A run id for the Job's name: 10 lowercase hex digits from the clock and the pid.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("{:010x}", mixed & 0xff_ffff_ffff)
}
