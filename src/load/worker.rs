//! The hot loop. Connections are grouped into shards, one per OS thread, each thread
//! running its own single-threaded Tokio runtime (wrk's model: a thread is an event
//! loop over many connections). A shard owns one recorder that all its connections
//! record into — an `Rc<RefCell<_>>` borrowed for a few instructions, never across an
//! await, so no lock and nothing shared between threads but the plan's atomic slot
//! counter. Memory is therefore flat in the number of connections: a connection costs
//! its task, its socket and its read buffer, never histograms of its own.
//!
//! A connection draws slots from the shared [`Plan`], waits for the intended start
//! (open loop), runs one exchange under a single reusable timer, and records. At each
//! interval boundary the shard hands its interval data to the coordinator (one message
//! per shard per interval, none per request): the first connection that completes a
//! request after the boundary does it, or the shard's ticker when none does. It never
//! prints, locks or stores per-request samples.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
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

/// Shard → coordinator.
pub(crate) enum Msg {
    /// The shard's data for interval `index` (None when it recorded nothing).
    Flush {
        worker: usize,
        index: u64,
        data: Option<Box<Recorded>>,
    },
    /// The shard stopped; it sends nothing more. `failed` says why when a connection
    /// task panicked (a bug): the results are then incomplete.
    Done {
        worker: usize,
        failed: Option<String>,
    },
}

enum Guarded<T> {
    Done(T),
    Deadline,
    Cancelled,
}

/// A shard's recorder: the current interval's data and clock, shared by the shard's
/// connections (one thread, so a `RefCell`).
struct Recorder {
    id: usize,
    tx: UnboundedSender<Msg>,
    rec: Box<Recorded>,
    index: u64,
    boundary: Instant,
    interval: Duration,
    open_loop: bool,
    ok_latency: bool,
}

type SharedRecorder = Rc<RefCell<Recorder>>;

impl Recorder {
    /// Hands over every interval that ended before `now`.
    #[inline]
    fn roll(&mut self, now: Instant) {
        while now >= self.boundary {
            let data = if self.rec.counts.requests() > 0 || self.rec.counts.abandoned > 0 {
                let fresh = Box::new(Recorded::with(self.open_loop, self.ok_latency));
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
            self.boundary += self.interval;
        }
    }
}

/// Awaits `fut` until `deadline`, honouring cancellation, with one timer reset per
/// wake. A wait that outlasts [`CANCEL_ARM`] waits on the cancel notification instead
/// of polling the flag, so an idle connection wakes only at its deadline.
async fn guard<F: Future>(
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
    loop {
        let wake = if armed {
            deadline
        } else {
            deadline.min(now + CANCEL_ARM)
        };
        timer.as_mut().reset(tokio::time::Instant::from_std(wake));
        tokio::select! {
            biased;
            out = &mut fut => return Guarded::Done(out),
            () = &mut cancelled, if armed => return Guarded::Cancelled,
            _ = timer.as_mut() => {}
        }
        if cancel.is_cancelled() {
            return Guarded::Cancelled;
        }
        armed = true;
        if Instant::now() >= deadline {
            return Guarded::Deadline;
        }
    }
}

/// How many shards (threads) `conns` connections use: one per CPU this process may
/// run on, never more than there are connections.
pub(crate) fn shard_count(conns: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.min(conns).max(1)
}

/// Shard `id`: runs `conns` connections as tasks on the current thread's runtime
/// (inside a [`LocalSet`](tokio::task::LocalSet)) until the plan says done, then hands
/// over its last data and says it is done.
pub(crate) async fn run_shard(
    id: usize,
    conns: usize,
    shared: Arc<Shared>,
    tx: UnboundedSender<Msg>,
) {
    let recorder: SharedRecorder = Rc::new(RefCell::new(Recorder {
        id,
        tx: tx.clone(),
        rec: Box::new(Recorded::with(shared.open_loop, shared.ok_latency)),
        index: 0,
        boundary: shared.plan.start() + shared.interval,
        interval: shared.interval,
        open_loop: shared.open_loop,
        ok_latency: shared.ok_latency,
    }));
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::task::spawn_local(run_conn(shared.clone(), recorder.clone())))
        .collect();
    // The ticker hands over intervals in which no connection completed a request.
    let ticker = {
        let recorder = recorder.clone();
        let interval = shared.interval;
        let mut next = shared.plan.start() + interval;
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                recorder.borrow_mut().roll(Instant::now());
                next = recorder.borrow().boundary;
            }
        })
    };
    let mut failed = None;
    for t in tasks {
        if let Err(e) = t.await {
            failed.get_or_insert(e.to_string());
        }
    }
    ticker.abort();
    let last = {
        let mut r = recorder.borrow_mut();
        let rec = std::mem::replace(&mut r.rec, Box::new(Recorded::with(false, false)));
        let data = (rec.counts.requests() > 0 || rec.counts.abandoned > 0).then_some(rec);
        (r.index, data)
    };
    let _ = tx.send(Msg::Flush {
        worker: id,
        index: last.0,
        data: last.1,
    });
    let _ = tx.send(Msg::Done { worker: id, failed });
}

/// One connection: requests one after the other, until the plan says done.
async fn run_conn(shared: Arc<Shared>, recorder: SharedRecorder) {
    let mut conn: Option<Conn> = None;
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    let mut timer = pin!(timer);
    loop {
        let now = Instant::now();
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
                    match guard(
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
        let res = guard(fut, sent, deadline, &mut timer, &shared.cancel).await;
        let done = Instant::now();
        // A closed loop's HTTP/1.1 send waits for the runtime's pass over the other
        // ready connections (batching, see `h1`): its latency counts from the write.
        let (intended, sent) = match conn.as_ref().and_then(Conn::sent_at) {
            Some(at) if !shared.open_loop && at > sent && at <= done => (at, at),
            _ => (intended, sent),
        };
        let mut r = recorder.borrow_mut();
        r.roll(done);
        let rec = &mut r.rec;
        rec.counts.resent += resent;
        if let Guarded::Cancelled = res {
            // Abandoned in flight: sent, but neither answered nor failed.
            rec.counts.abandoned += 1;
            break;
        }
        rec.sent(lag, shared.plan.end().is_some_and(|end| sent >= end));
        if let Some(watch) = &shared.refusals {
            watch.note(matches!(res, Guarded::Done(Err(ErrorKind::ConnectRefused))));
        }
        match res {
            Guarded::Done(Ok((status, bytes))) => rec.answer(
                status,
                done.saturating_duration_since(intended),
                done.saturating_duration_since(sent),
                bytes,
            ),
            Guarded::Done(Err(kind)) => rec.failure(
                kind,
                done.saturating_duration_since(intended),
                done.saturating_duration_since(sent),
            ),
            Guarded::Deadline => {
                conn = None;
                rec.failure(
                    ErrorKind::Timeout,
                    done.saturating_duration_since(intended),
                    done.saturating_duration_since(sent),
                );
            }
            Guarded::Cancelled => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_future<F: Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A connection's task is most of what a connection costs (with its socket and its
    /// read buffer): thousands of them must stay small. The TLS and HTTP/2 handshakes
    /// (~6.6 KiB of future) run boxed for that; held inline they made every
    /// connection's task ~14 KiB and `-c 5000` ~90 MiB. (In a release build the
    /// future is smaller still.)
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let cfg = crate::load::LoadConfig::builder("http://127.0.0.1:9/")
            .build()
            .expect("valid config");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        let start = Instant::now();
        let shared = Arc::new(Shared {
            plan: Plan::new(
                crate::load::Rate::Max,
                crate::load::Stop::Requests(1),
                start,
                Duration::from_secs(1),
            ),
            cancel: Cancel::new(),
            refusals: None,
            connector: Connector::new(&cfg, addr).expect("plain http needs no TLS set-up"),
            template: Template::new(&cfg),
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            open_loop: false,
            ok_latency: false,
        });
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let recorder = Rc::new(RefCell::new(Recorder {
            id: 0,
            tx,
            rec: Box::new(Recorded::with(false, false)),
            index: 0,
            boundary: start,
            interval: Duration::from_secs(1),
            open_loop: false,
            ok_latency: false,
        }));
        let task = run_conn(shared, recorder);
        let size = size_of_future(&task);
        eprintln!("a connection's future is {size} bytes");
        assert!(size <= 2048, "a connection's future is {size} bytes");
    }
}
