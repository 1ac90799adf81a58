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
