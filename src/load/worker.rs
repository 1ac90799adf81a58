//! The hot loop: one generic worker per connection, for every schedule (open/closed ×
//! count/duration). It draws slots from the shared [`Plan`], waits for the intended
//! start (open loop), runs one exchange under a single reusable timer, and records into
//! its own histograms. At each interval boundary it hands its interval data to the
//! coordinator (one message per worker per interval, none per request). It never
//! prints, locks or stores per-request samples.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Sleep;

use super::Cancel;
use super::client::{Conn, Connector, Template, exchange};
use super::record::{ErrorKind, Recorded};
use super::schedule::{Plan, Slot};

/// A wait longer than this registers on the cancel [`Notify`](tokio::sync::Notify)
/// (and then sleeps until its deadline, the interval boundary or a cancel); shorter
/// ones (most exchanges) never touch it. Bounds how late a cancel is seen.
pub(crate) const CANCEL_ARM: Duration = Duration::from_millis(50);

/// Timers fire up to ~2 ms late (millisecond ticks, rounded up): an open-loop worker
/// wakes this much before a slot and sends as soon as it wakes. A request sent early
/// counts its latency from the actual send, one sent late from its slot, so timer
/// slack never shows up as latency while real lateness always does.
const TIMER_LEAD: Duration = Duration::from_millis(2);

/// What every worker shares (read-only but for the plan's atomic counter and the
/// refusal watch's two flags, each written at most once).
pub(crate) struct Shared {
    pub plan: Plan,
    /// The workers' token: a child of the caller's, so the coordinator can stop them
    /// (nothing listens) without the run counting as interrupted.
    pub cancel: Cancel,
    /// Watched only when the run stops once every connection is refused.
    pub refusals: Option<RefusalWatch>,
    pub connector: Connector,
    pub template: Template,
    pub timeout: Duration,
    pub interval: Duration,
    pub open_loop: bool,
    /// Record 2xx-only latency too ([`Recorded::ok`]).
    pub ok_latency: bool,
}

/// Whether every request so far ended in a refused connection: `refused` once one
/// did, `other` once one ended any other way (an answer or another error).
#[derive(Debug, Default)]
pub(crate) struct RefusalWatch {
    pub refused: AtomicBool,
    pub other: AtomicBool,
}

impl RefusalWatch {
    /// Notes one outcome. Each flag is written once; after that this is a relaxed load.
    #[inline]
    fn note(&self, refused: bool) {
        let flag = if refused { &self.refused } else { &self.other };
        if !flag.load(Ordering::Relaxed) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Something was refused and nothing else happened.
    pub fn only_refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed) && !self.other.load(Ordering::Relaxed)
    }
}

/// Worker → coordinator.
pub(crate) enum Msg {
    /// The worker's data for interval `index` (None when it recorded nothing).
    Flush {
        worker: usize,
        index: u64,
        data: Option<Box<Recorded>>,
    },
    /// The worker stopped; it sends nothing more.
    Done { worker: usize },
}

enum Guarded<T> {
    Done(T),
    Deadline,
    Cancelled,
}

/// Per-worker state: the current interval's recorder and clock.
struct Worker {
    id: usize,
    shared: Arc<Shared>,
    tx: UnboundedSender<Msg>,
    rec: Box<Recorded>,
    index: u64,
    boundary: Instant,
}

impl Worker {
    /// Hands over every interval that ended before `now`.
    #[inline]
    fn roll(&mut self, now: Instant) {
        while now >= self.boundary {
            let data = if self.rec.counts.requests() > 0 {
                let fresh = Box::new(Recorded::with(
                    self.shared.open_loop,
                    self.shared.ok_latency,
                ));
                Some(std::mem::replace(&mut self.rec, fresh))
            } else {
                None
            };
            let _ = self.tx.send(Msg::Flush {
                worker: self.id,
                index: self.index,
                data,
            });
            self.index += 1;
            self.boundary += self.shared.interval;
        }
    }

    /// Awaits `fut` until `deadline`, keeping the interval clock running and honouring
    /// cancellation, with one timer reset per wake. A wait that outlasts
    /// [`CANCEL_ARM`] waits on the cancel notification instead of polling the flag, so
    /// an idle worker wakes only at its deadline or an interval boundary.
    async fn guard<F: Future>(
        &mut self,
        fut: F,
        now: Instant,
        deadline: Instant,
        timer: &mut Pin<&mut Sleep>,
        cancel: &Cancel,
    ) -> Guarded<F::Output> {
        let mut fut = pin!(fut);
        // Not polled (so not registered) until armed.
        let mut cancelled = pin!(cancel.cancelled());
        let mut armed = false;
        let mut now = now;
        loop {
            let mut wake = deadline.min(self.boundary);
            if !armed {
                wake = wake.min(now + CANCEL_ARM);
            }
            timer.as_mut().reset(tokio::time::Instant::from_std(wake));
            tokio::select! {
                biased;
                out = &mut fut => return Guarded::Done(out),
                () = &mut cancelled, if armed => return Guarded::Cancelled,
                _ = timer.as_mut() => {}
            }
            now = Instant::now();
            if cancel.is_cancelled() {
                return Guarded::Cancelled;
            }
            armed = true;
            self.roll(now);
            if now >= deadline {
                return Guarded::Deadline;
            }
        }
    }
}

/// One worker: one connection, requests one after the other, until the plan says done.
pub(crate) async fn run_worker(id: usize, shared: Arc<Shared>, tx: UnboundedSender<Msg>) {
    let start = shared.plan.start();
    let mut w = Worker {
        id,
        rec: Box::new(Recorded::with(shared.open_loop, shared.ok_latency)),
        index: 0,
        boundary: start + shared.interval,
        tx,
        shared: shared.clone(),
    };
    let mut conn: Option<Conn> = None;
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    let mut timer = pin!(timer);
    loop {
        let now = Instant::now();
        w.roll(now);
        if shared.cancel.is_cancelled() {
            break;
        }
        let (intended, sent, lag) = match shared.plan.next(now) {
            Slot::Done => break,
            Slot::Now => (now, now, Duration::ZERO),
            Slot::At(at) => {
                let mut now = now;
                if at > now + TIMER_LEAD {
                    let wake = at - TIMER_LEAD;
                    match w
                        .guard(
                            std::future::pending::<()>(),
                            now,
                            wake,
                            &mut timer,
                            &shared.cancel,
                        )
                        .await
                    {
                        Guarded::Cancelled => break,
                        Guarded::Deadline | Guarded::Done(()) => now = Instant::now(),
                    }
                }
                // Overdue slots (due before the end) are sent late, latency counted from
                // their slot, until the plan's grace after the end runs out.
                (at.min(now), now, now.saturating_duration_since(at))
            }
        };
        let mut resent = 0;
        let fut = exchange(&mut conn, &shared.connector, &shared.template, &mut resent);
        // Nothing runs past the drain end: a run stops within `-d` plus the timeout.
        let deadline = match shared.plan.drain_end() {
            Some(end) => end.min(sent + shared.timeout),
            None => sent + shared.timeout,
        };
        let res = w
            .guard(fut, sent, deadline, &mut timer, &shared.cancel)
            .await;
        let done = Instant::now();
        w.roll(done);
        w.rec.counts.resent += resent;
        if let Guarded::Cancelled = res {
            // Abandoned in flight: sent, but neither answered nor failed.
            w.rec.counts.abandoned += 1;
            break;
        }
        w.rec
            .sent(lag, shared.plan.end().is_some_and(|end| sent >= end));
        if let Some(watch) = &shared.refusals {
            watch.note(matches!(res, Guarded::Done(Err(ErrorKind::ConnectRefused))));
        }
        match res {
            Guarded::Done(Ok((status, bytes))) => w.rec.answer(
                status,
                done.saturating_duration_since(intended),
                done.saturating_duration_since(sent),
                bytes,
            ),
            Guarded::Done(Err(kind)) => w.rec.failure(
                kind,
                done.saturating_duration_since(intended),
                done.saturating_duration_since(sent),
            ),
            Guarded::Deadline => {
                conn = None;
                w.rec.failure(
                    ErrorKind::Timeout,
                    done.saturating_duration_since(intended),
                    done.saturating_duration_since(sent),
                );
            }
            Guarded::Cancelled => break,
        }
    }
    let Worker { rec, index, tx, .. } = w;
    let data = (rec.counts.requests() > 0 || rec.counts.abandoned > 0).then_some(rec);
    let _ = tx.send(Msg::Flush {
        worker: id,
        index,
        data,
    });
    let _ = tx.send(Msg::Done { worker: id });
}
