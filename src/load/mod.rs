//! The load generator: a concurrent HTTP client that drives a target at full speed
//! (closed loop) or at a fixed or ramping rate (open loop, free of coordinated
//! omission), and records every latency in HDR histograms.
//!
//! # What it owns, and what it must not do
//! This module opens sockets and fills histograms; it never prints, draws progress bars
//! or judges SLOs — callers read the histograms ([`IntervalSnapshot`], [`LoadReport`]).
//! The hot loop (`worker.rs`) runs the connections in shards, one thread each, with
//! per-shard histograms; it shares only an atomic slot counter, takes no lock of its
//! own, sends no message per request, and stores no per-request samples: memory is
//! flat in the duration of a run and in the number of connections.
//!
//! # Model
//! - `conns` connections, each with one request in flight (HTTP/1.1 keep-alive, or
//!   one HTTP/2 connection each), spread over one thread per CPU the process may run
//!   on (`available_parallelism`, which honours `taskset`), each thread a
//!   single-threaded Tokio runtime recording into its own histograms.
//! - [`Rate::Max`] (closed loop): a worker sends its next request when the last answer
//!   arrives. Latency = service time.
//! - [`Rate::Fixed`] / [`Rate::Ramp`] (open loop): request `i` is due at `t(i)`;
//!   latency (`latency`) counts from `t(i)`, service time (`service`) from the actual
//!   send. When the target stalls, the requests that were due meanwhile wait in the
//!   generator and their latency includes that wait — what a closed loop hides. Timers
//!   tick in milliseconds, so a worker wakes up to 2 ms before a slot and sends at once;
//!   such a request counts from its actual send (never earlier than it left). When
//!   the generator cannot keep up, [`LoadReport::missed`] says how many due requests
//!   were never sent, [`LoadReport::late`] how many were sent after the window, the
//!   `lag` histogram how long after their slot requests left, and
//!   [`LoadReport::behind_schedule`] flags the run; [`LoadReport::rps`] counts only
//!   what was sent inside the window (achieved, not target rate).
//! - [`Stop::Duration`]: closed loop, no request starts after the end; open loop, no
//!   request is due after the end, but requests due before it and still unsent (the
//!   target stalled) are sent late, latency from their slot, for up to the timeout
//!   after the end — so `missed` counts only what the generator truly could not send.
//!   Requests in flight finish, but nothing runs past the end plus the timeout (a late
//!   request cut off there is a timeout): a run lasts at most `d` + timeout. [`Stop::Requests`]: exactly
//!   that many requests complete.
//! - Per-request timeout (connect included); failures are counted by [`ErrorKind`],
//!   answers by status code. Latency is recorded for every request: answers (any
//!   status) at their latency, failures at the time they took — a timed-out request
//!   at least the timeout — so no percentile can hide a request that hung. Values are
//!   nanoseconds.
//! - Every `interval` (1 s by default) the workers' data is merged into an
//!   [`IntervalSnapshot`] (requests counted by completion time) handed to the callback;
//!   the report holds the merge of all intervals.
//! - Cancelling ([`Cancel::cancel`], e.g. on Ctrl-C) stops within ~50 ms; requests in
//!   flight are abandoned (counted as `abandoned`, not as requests) and the report
//!   holds everything so far; the window and the due requests end at the moment of the
//!   cancel, so winding down is not counted as missed.
//! - With [`LoadConfigBuilder::stop_when_refused`], a run in which every connection has
//!   been refused for [`REFUSED_STOP`] from the start stops there
//!   ([`LoadReport::refused_stop`]).
//!
//! # Use from other modules (scenario runner, `meshdrill demo`)
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use meshdrill::load::{self, Cancel, LoadConfig, Rate, Stop};
//!
//! let config = LoadConfig::builder("http://127.0.0.1:8080/productpage")
//!     .conns(20)
//!     .rate(Rate::Fixed(200.0))
//!     .stop(Stop::Duration(Duration::from_secs(60)))
//!     .header("Host: bookinfo.local")
//!     .build()?;
//! let cancel = Cancel::new();
//! // Runs in the background while faults change; the callback sees each second.
//! let handle = load::spawn(config, cancel.clone(), |snap: &load::IntervalSnapshot| {
//!     let p99 = snap.data.latency.value_at_quantile(0.99);
//!     let _ = (snap.start, snap.rps(), snap.data.counts.of_status(503), p99);
//! });
//! // ... inject a fault, wait, clear it ...
//! cancel.cancel(); // or let it run to its end
//! let report = handle.await??;
//! println!("{} requests, p99 {:?}", report.requests(), report.latency_at(0.99));
//! # Ok(()) }
//! ```

mod client;
mod config;
mod h1;
mod record;
mod schedule;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::unbounded_channel;
use tokio::task::JoinHandle;

pub use crate::cancel::Cancel;
pub(crate) use client::AcceptAnyCert;
pub use client::TlsSetupError;
pub use config::{
    ConfigError, LoadConfig, LoadConfigBuilder, MAX_BODY, MAX_CONNS, MAX_SPAN, MAX_START_SKEW,
    Target,
};
pub use record::{
    Counts, ErrorKind, IntervalSnapshot, LoadReport, MAX_LATENCY_NS, Recorded, new_histogram,
};
pub use schedule::{Rate, Share, Stop};

use worker::{Msg, RefusalWatch, Shared};

/// With [`LoadConfigBuilder::stop_when_refused`], a run stops once every connection has
/// been refused for this long from its start.
pub const REFUSED_STOP: Duration = Duration::from_secs(1);

/// Why a run could not happen. Failed requests are not errors: they are counted.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `run` was called outside a Tokio runtime.
    #[error("the load generator must run inside a Tokio runtime")]
    NoRuntime,
    /// The target host name does not resolve.
    #[error("cannot resolve target host {host}:{port}")]
    Resolve {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// The TLS client configuration failed.
    #[error(transparent)]
    Tls(TlsSetupError),
    /// A worker task panicked (a bug); the results are incomplete.
    #[error("a load worker failed: {0}")]
    Worker(String),
}

// === run ===

/// Runs `config` to its end (or until `cancel`), calling `on_interval` with each
/// merged interval, and returns the merged report. Must be awaited inside a Tokio
/// runtime (it resolves the target and merges there; the connections run on threads
/// of their own). Dropping the future stops the workers.
pub async fn run<F>(
    config: LoadConfig,
    cancel: Cancel,
    mut on_interval: F,
) -> Result<LoadReport, LoadError>
where
    F: FnMut(&IntervalSnapshot),
{
    tokio::runtime::Handle::try_current().map_err(|_| LoadError::NoRuntime)?;
    let (host, port) = (config.target.host.clone(), config.target.port);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .and_then(|mut a| {
            a.next().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address found")
            })
        })
        .map_err(|source| LoadError::Resolve { host, port, source })?;
    let connector = client::Connector::new(&config, addr).map_err(LoadError::Tls)?;
    let open_loop = config.rate.is_open();
    // A distributed run's workers share one start time: wait for it (cancellable).
    let (start, started_at) = config.anchor();
    tokio::select! {
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(start)) => {}
        () = cancel.cancelled() => {}
    }
    // The workers stop on a child token: the caller's cancel (Ctrl-C) stops them, and
    // so does the coordinator when nothing listens, without that counting as cancelled.
    let stop_workers = cancel.child();
    let shared = Arc::new(Shared {
        plan: schedule::Plan::new(config.rate, config.stop, start, config.timeout)
            .shared(config.share),
        cancel: stop_workers.clone(),
        refusals: config.stop_when_refused.then(RefusalWatch::default),
        connector,
        template: client::Template::new(&config),
        timeout: config.timeout,
        interval: config.interval,
        open_loop,
        ok_latency: config.ok_latency,
    });
    let (tx, mut rx) = unbounded_channel();
    let shards = worker::shard_count(config.conns);
    let mut threads = StopOnDrop {
        cancel: stop_workers.clone(),
        threads: Vec::with_capacity(shards),
    };
    for id in 0..shards {
        // Connections split as evenly as possible: the first `conns % shards` get one more.
        let conns = config.conns / shards + usize::from(id < config.conns % shards);
        let (shared, tx) = (shared.clone(), tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("meshdrill-load-{id}"))
            .spawn(move || shard_thread(id, conns, shared, tx));
        match spawned {
            Ok(t) => threads.threads.push(t),
            Err(e) => {
                return Err(LoadError::Worker(format!(
                    "cannot start a load thread: {e}"
                )));
            }
        }
    }
    drop(tx);

    let mut agg = Aggregator::new(
        shards,
        (open_loop, config.ok_latency),
        config.interval,
        config.rate,
        start,
    );
    // Every worker holds a sender: the channel closes when the last one has stopped.
    // Meanwhile: note when the caller cancelled (the window ends there), and check once,
    // REFUSED_STOP after the start, whether every connection so far was refused.
    let mut stopped_at: Option<Duration> = None;
    let mut refused_stop = false;
    let refusal_check =
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + REFUSED_STOP));
    let mut refusal_check = std::pin::pin!(refusal_check);
    let mut check_refusals = shared.refusals.is_some();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => agg.on(msg, start.elapsed(), &mut on_interval),
                None => break,
            },
            () = cancel.cancelled(), if stopped_at.is_none() => {
                stopped_at = Some(start.elapsed());
            }
            () = &mut refusal_check, if check_refusals => {
                check_refusals = false;
                if shared.refusals.as_ref().is_some_and(RefusalWatch::only_refused) {
                    refused_stop = true;
                    stopped_at.get_or_insert_with(|| start.elapsed());
                    stop_workers.cancel();
                }
            }
        }
    }
    let elapsed = start.elapsed();
    // The channel closed: every shard has sent its last message and is ending.
    for t in std::mem::take(&mut threads.threads) {
        if t.join().is_err() {
            agg.failed
                .get_or_insert_with(|| "a load thread panicked".to_string());
        }
    }
    let failed = agg.failed.take();
    agg.finish(elapsed, &mut on_interval);
    if let Some(e) = failed {
        return Err(LoadError::Worker(e));
    }
    let cancelled = cancel.is_cancelled();
    // A duration run that reached its end sent over all of `d` (an open loop's last
    // worker may stop a hair before it, after the last slot); a stopped one (cancelled,
    // or nothing listens) up to the moment it was told to stop — not when its workers
    // had wound down, so requests due meanwhile are not counted as missed.
    let stopped = (cancelled || refused_stop).then(|| stopped_at.unwrap_or(elapsed).min(elapsed));
    let window = match (config.stop, stopped) {
        (Stop::Duration(d), None) => d,
        (Stop::Duration(d), Some(at)) => at.min(d),
        (Stop::Requests(_), at) => at.unwrap_or(elapsed),
    };
    let scheduled = shared
        .plan
        .due(stopped.unwrap_or(elapsed), stopped.is_none());
    // Slots that fell due while the stop was being seen (up to CANCEL_ARM): not held
    // against the schedule.
    let stop_slack = match (stopped, scheduled) {
        (Some(at), Some(due)) => {
            let before = shared
                .plan
                .due(at.saturating_sub(worker::CANCEL_ARM), false);
            due.saturating_sub(before.unwrap_or(due))
        }
        _ => 0,
    };
    let target_rps = match config.rate {
        Rate::Max => None,
        Rate::Fixed(r) => Some(r),
        rate @ Rate::Ramp { .. } => {
            let t = window.as_secs_f64();
            (t > 0.0).then(|| rate.due_by(t) / t)
        }
    }
    // A worker of a distributed run: its share of the target.
    .map(|r| r / f64::from(config.share.count()));
    Ok(LoadReport {
        started_at,
        elapsed,
        window,
        data: agg.total,
        intervals: agg.emitted,
        target_rps,
        scheduled,
        cancelled,
        refused_stop,
        stop_slack,
    })
}

/// [`run`] on the current Tokio runtime, in the background.
pub fn spawn<F>(
    config: LoadConfig,
    cancel: Cancel,
    on_interval: F,
) -> JoinHandle<Result<LoadReport, LoadError>>
where
    F: FnMut(&IntervalSnapshot) + Send + 'static,
{
    tokio::spawn(run(config, cancel, on_interval))
}

/// Runs shard `id` on this thread, on a runtime of its own.
fn shard_thread(
    id: usize,
    conns: usize,
    shared: Arc<Shared>,
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Msg::Done {
                worker: id,
                failed: Some(format!("cannot start a load runtime: {e}")),
            });
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, worker::run_shard(id, conns, shared, tx));
}

/// The shard threads; dropping this (the run's future dropped) tells them to stop.
struct StopOnDrop {
    cancel: Cancel,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.cancel.cancel();
        }
    }
}

// === impl Aggregator ===

/// Merges the workers' interval data; an interval is complete when every live worker
/// has handed it over and its wall-clock end has passed.
struct Aggregator {
    run_start: Instant,
    open_loop: bool,
    ok_latency: bool,
    interval: Duration,
    rate: Rate,
    /// Intervals not yet emitted, starting at index `first`.
    pending: VecDeque<Recorded>,
    first: u64,
    /// Per worker: the next interval index it will hand over.
    next_from: Vec<u64>,
    done: Vec<bool>,
    total: Recorded,
    emitted: u64,
    /// Why a shard failed (a panicked connection task), if one did.
    failed: Option<String>,
}

impl Aggregator {
    fn new(
        workers: usize,
        (open_loop, ok_latency): (bool, bool),
        interval: Duration,
        rate: Rate,
        run_start: Instant,
    ) -> Self {
        Self {
            run_start,
            open_loop,
            ok_latency,
            interval,
            rate,
            pending: VecDeque::new(),
            first: 0,
            next_from: vec![0; workers],
            done: vec![false; workers],
            total: Recorded::with(open_loop, ok_latency),
            emitted: 0,
            failed: None,
        }
    }

    fn on(&mut self, msg: Msg, elapsed: Duration, cb: &mut impl FnMut(&IntervalSnapshot)) {
        match msg {
            Msg::Flush {
                worker,
                index,
                data,
            } => {
                let Some(slot) = index.checked_sub(self.first) else {
                    // Late data for an interval already emitted: count it in the total.
                    if let Some(d) = data {
                        self.total.add(&d);
                    }
                    return;
                };
                let slot = usize::try_from(slot).unwrap_or(usize::MAX);
                while self.pending.len() <= slot {
                    self.pending
                        .push_back(Recorded::with(self.open_loop, self.ok_latency));
                }
                if let (Some(d), Some(p)) = (data, self.pending.get_mut(slot)) {
                    p.add(&d);
                }
                if let Some(n) = self.next_from.get_mut(worker) {
                    *n = (*n).max(index + 1);
                }
            }
            Msg::Done { worker, failed } => {
                if let Some(d) = self.done.get_mut(worker) {
                    *d = true;
                }
                if let Some(f) = failed {
                    self.failed.get_or_insert(f);
                }
            }
        }
        while !self.pending.is_empty()
            && self.interval_end(self.first) <= elapsed
            && self
                .next_from
                .iter()
                .zip(&self.done)
                .all(|(n, d)| *d || *n > self.first)
        {
            self.emit(self.interval, cb);
        }
    }

    fn interval_end(&self, index: u64) -> Duration {
        self.interval
            .saturating_mul(u32::try_from(index + 1).unwrap_or(u32::MAX))
    }

    fn emit(&mut self, duration: Duration, cb: &mut impl FnMut(&IntervalSnapshot)) {
        let Some(data) = self.pending.pop_front() else {
            return;
        };
        let snap = IntervalSnapshot::new(
            self.first,
            self.interval,
            self.run_start,
            duration,
            data,
            self.rate,
        );
        cb(&snap);
        self.total.add(&snap.data);
        self.first += 1;
        self.emitted += 1;
    }

    /// Emits what is left; the last interval ends at `elapsed`.
    fn finish(&mut self, elapsed: Duration, cb: &mut impl FnMut(&IntervalSnapshot)) {
        while !self.pending.is_empty() {
            let start = self.interval_end(self.first).saturating_sub(self.interval);
            let duration = elapsed.saturating_sub(start).min(self.interval);
            self.emit(duration, cb);
        }
    }
}
