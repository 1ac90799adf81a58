//! Distributed load: one load run split across N workers — meshdrill child processes
//! on this machine, or the pods of a Kubernetes Indexed Job — whose per-interval HDR
//! histograms are merged exactly (added, never averaged).
//!
//! # What it owns
//! - the worker protocol ([`Event`], and the worker's stdout line format in `wire`);
//! - splitting one [`LoadConfig`](crate::load::LoadConfig) into N worker shares;
//! - the coordinator that merges worker intervals into the same
//!   [`IntervalSnapshot`](crate::load::IntervalSnapshot)s and
//!   [`LoadReport`](crate::load::LoadReport) a single run gives, marking a run partial
//!   when a worker failed.
//!
//! Backends (local child processes here, the Kubernetes Job in `cluster::job`) only
//! start the workers and turn what they print and how they end into [`Event`]s.

/// What a backend reports about worker `worker` (0-based index, < N).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One line the worker printed on stdout (without the newline).
    Line { worker: u32, line: String },
    /// The worker ended; no more lines come from it.
    Ended { worker: u32, end: WorkerEnd },
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// It exited with this code (0 = its load ran to its end).
    Exited { code: i32 },
    /// It was killed or failed without an exit code of its own (a signal, an evicted
    /// or OOM-killed pod, a Job deadline). `reason` says which; `tail` holds the last
    /// lines of its stderr / log, oldest first.
    Failed { reason: String, tail: Vec<String> },
    /// It never ran (image pull error, unschedulable, cannot execute).
    NeverStarted { reason: String },
}

pub mod in_cluster;
mod local;
mod merge;
pub mod wire;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::cancel::Cancel;
use crate::load::{ConfigError, IntervalSnapshot, LoadConfig, LoadReport, Rate, Stop};

/// Most workers one run starts.
pub const MAX_WORKERS: u32 = 1024;

/// After a cancel, how long workers get to stop by themselves (they were told to by
/// closing their stdin) before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Why a distributed run could not happen. A worker that fails is not an error: the
/// run completes with the others and is marked partial.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The run does not split across this many workers (or there are none / too many).
    #[error(transparent)]
    Split(#[from] ConfigError),
    /// More workers than [`MAX_WORKERS`].
    #[error("--workers {0} is more than the limit of {MAX_WORKERS}")]
    TooManyWorkers(u32),
    /// `run` was called outside a Tokio runtime.
    #[error("the fleet coordinator must run inside a Tokio runtime")]
    NoRuntime,
}

/// Where the workers run.
#[derive(Debug)]
pub enum Backend {
    /// meshdrill child processes of `exe` (normally `std::env::current_exe()`) on this
    /// machine, started with [`worker_args`] plus `--worker-index=I --stdin-lifeline`.
    Local { exe: PathBuf },
    /// Workers started by someone else (the Kubernetes Job backend), which feeds their
    /// output as [`Event`]s: every stdout line of worker I as `Line`, then one `Ended`.
    /// It starts them with [`worker_args`] for the same `start_at`, and stops them
    /// itself when the run's [`Cancel`] fires; the coordinator waits for their `Ended`
    /// for at most [`STOP_GRACE`] × 4 after a cancel.
    Events(mpsc::Receiver<Event>),
}

/// One worker's part of the result.
#[derive(Debug, Clone)]
pub struct WorkerSummary {
    pub index: u32,
    /// Requests it completed (answered or failed), as far as it reported them.
    pub requests: u64,
    /// Its achieved rate: sent in its window per second of it.
    pub rps: f64,
    /// Its p99 latency (None without a request).
    pub p99: Option<Duration>,
    /// How it ended (None: it never reported an end).
    pub end: Option<WorkerEnd>,
    /// Whether its whole share is in the figures: its end line was read and it exited 0.
    pub complete: bool,
    /// A protocol error in its output (its lines after it were ignored).
    pub problem: Option<String>,
    /// The last lines of its stderr / log, oldest first.
    pub tail: Vec<String>,
}

impl WorkerSummary {
    /// `exited 0`, `failed: killed by SIGKILL`, `never started: ...`.
    pub fn ended(&self) -> String {
        match &self.end {
            Some(WorkerEnd::Exited { code }) => format!("exited {code}"),
            Some(WorkerEnd::Failed { reason, .. }) => format!("failed: {reason}"),
            Some(WorkerEnd::NeverStarted { reason }) => format!("never started: {reason}"),
            None => "failed: did not stop in time".to_string(),
        }
    }
}

/// The merged result of a distributed run.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// The exact merge: histograms added, counts and schedules summed. Only what the
    /// workers reported: a failed worker's share is (partly) missing.
    pub report: LoadReport,
    pub workers: Vec<WorkerSummary>,
    /// Whether some worker's share is missing or incomplete.
    pub partial: bool,
}

/// The common start time for `n` workers started now: 300 ms + 50 ms per worker
/// ahead (time to start the processes and open their connections), on a whole
/// millisecond (what `--start-at` carries).
pub fn start_time(n: u32) -> SystemTime {
    let margin = Duration::from_millis(300 + 50 * u64::from(n.min(MAX_WORKERS)));
    let at = SystemTime::now() + margin;
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn ns(d: Duration) -> String {
    format!("{}ns", d.as_nanos())
}

/// The `meshdrill` arguments (after the program name, starting with `load`) that run
/// one worker's share of `config` among `n` starting at `start_at` (whole
/// milliseconds): every setting of the config as a flag, `--workers N --start-at MS`;
/// the caller appends `--worker-index=I` (or `--worker-index=$(JOB_COMPLETION_INDEX)`).
/// Values are given as `--flag=value` so that none is read as a flag; the body as
/// `--body-base64` (exact bytes).
pub fn worker_args(config: &LoadConfig, n: u32, start_at: SystemTime) -> Vec<String> {
    let mut a = vec![
        "load".to_string(),
        config.url().to_string(),
        format!("--connections={}", config.total_conns()),
        format!("--method={}", config.method()),
    ];
    match config.rate() {
        Rate::Max => {}
        Rate::Fixed(r) => a.push(format!("--rate={r}")),
        Rate::Ramp { from, to, over } => {
            a.push(format!("--rate={from}"));
            a.push(format!("--ramp-to={to}"));
            a.push(format!("--ramp={}", ns(over)));
        }
    }
    match config.stop() {
        Stop::Duration(d) => a.push(format!("--duration={}", ns(d))),
        Stop::Requests(n) => a.push(format!("--requests={n}")),
    }
    for (name, value) in config.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        a.push(format!("--header={name}: {value}"));
    }
    if !config.body().is_empty() {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(config.body());
        a.push(format!("--body-base64={b}"));
    }
    a.push(format!("--timeout={}", ns(config.timeout())));
    a.push(format!("--interval={}", ns(config.interval())));
    if config.is_http2() {
        a.push("--http2".into());
    }
    if config.is_insecure() {
        a.push("--insecure".into());
    }
    if !config.stops_when_refused() {
        a.push("--keep-going".into());
    }
    if config.ok_latency() {
        a.push("--latency-2xx".into());
    }
    a.push(format!("--workers={n}"));
    let ms = start_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    a.push(format!("--start-at={ms}"));
    a
}

/// Runs `config` split across `n` workers on `backend`, all starting at `start_at`
/// (see [`start_time`]), calling `on_interval` with each merged interval (the same
/// [`IntervalSnapshot`]s a single run gives: interval k once every live worker has sent
/// it), and returns the exact merge. `cancel` stops the workers (local ones by closing
/// their stdin, then killed after [`STOP_GRACE`]); the report is then marked cancelled.
pub async fn run<F>(
    config: &LoadConfig,
    n: u32,
    start_at: SystemTime,
    backend: Backend,
    cancel: Cancel,
    on_interval: F,
) -> Result<FleetReport, FleetError>
where
    F: FnMut(&IntervalSnapshot),
{
    if n > MAX_WORKERS {
        return Err(FleetError::TooManyWorkers(n));
    }
    config.check_split(n)?;
    tokio::runtime::Handle::try_current().map_err(|_| FleetError::NoRuntime)?;
    let (run_start, _) = config.with_start_at(start_at).anchor();
    let mut merge = merge::Merge::new(config, n, run_start, start_at, on_interval);
    let (mut rx, mut local) = match backend {
        Backend::Events(rx) => (rx, None),
        Backend::Local { exe } => {
            let (tx, rx) = mpsc::channel(256);
            let args = worker_args(config, n, start_at);
            (rx, Some(local::Local::spawn(&exe, &args, n, tx)))
        }
    };
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + crate::load::MAX_SPAN;
    loop {
        if merge.all_ended() {
            break;
        }
        let deadline = tokio::time::sleep_until(stop_deadline.unwrap_or(far));
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => merge.on(ev),
                None => break,
            },
            () = cancel.cancelled(), if stop_deadline.is_none() => {
                merge.cancelled();
                let grace = if local.is_some() { STOP_GRACE } else { STOP_GRACE * 4 };
                stop_deadline = Some(tokio::time::Instant::now() + grace);
                if let Some(l) = local.as_mut() {
                    l.stop();
                }
            }
            () = deadline, if stop_deadline.is_some() => {
                match local.as_mut() {
                    // Killed: their Ended events follow.
                    Some(l) if !l.killed() => {
                        l.kill();
                        stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                    }
                    _ => break,
                }
            }
        }
    }
    if let Some(l) = local {
        l.finish().await;
    }
    Ok(merge.finish())
}
