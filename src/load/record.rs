//! What a run records: latency histograms (nanoseconds) and counters, per worker and
//! per interval, merged by the coordinator into [`IntervalSnapshot`]s and a
//! [`LoadReport`]. Fixed-size arrays only: nothing grows with the number of requests.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

/// Largest latency recorded (longer ones are recorded as this): one hour, in ns.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A new latency histogram: nanoseconds, 3 significant digits, 1 µs resolution,
/// growing only as far as the largest value seen (memory stays small for fast targets).
/// It starts at the smallest size (16 KiB, values up to ~1 ms) rather than 48 KiB
/// (~10 ms): with thousands of mostly idle workers, each holding one or two per
/// interval, the initial size is most of the generator's memory.
pub fn new_histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    let mut h =
        Histogram::new_with_bounds(1_000, 2_000, 3).expect("constant histogram bounds are valid");
    h.auto(true);
    h
}

/// A send-lag histogram: nanoseconds, 2 significant digits (lags matter to ~1%),
/// starting small and growing with the largest lag seen.
fn new_lag_histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    let mut h =
        Histogram::new_with_bounds(1_000, 2_000, 2).expect("constant histogram bounds are valid");
    h.auto(true);
    h
}

/// Why a request got no HTTP answer. Counted in arrays indexed by `kind as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The TCP connection was refused (nothing listens on the port).
    ConnectRefused,
    /// Any other failure to connect (unreachable, address in use, ...).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No answer within the per-request timeout (connect included).
    Timeout,
    /// The peer reset or closed the connection before the answer was complete.
    Reset,
    /// The answer was not valid HTTP (or an HTTP/2 protocol error).
    Protocol,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in index order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::ConnectRefused,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::Other,
    ];
    /// Number of kinds (array length).
    pub const COUNT: usize = Self::ALL.len();

    /// The kind with this [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A stable snake_case name (JSON keys).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }
}

/// Number of status-code slots (codes 0..=999; hyper accepts 100..=999).
const STATUS_SLOTS: usize = 1000;

/// Request counters: answers by status code, failures by [`ErrorKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    status: Box<[u64; STATUS_SLOTS]>,
    errors: [u64; ErrorKind::COUNT],
    /// Answers received (any status).
    pub responses: u64,
    /// Response body bytes received.
    pub body_bytes: u64,
    /// Re-sends: an idempotent request found its kept-alive connection closed by the
    /// server before any byte of the answer and was sent again on a new connection.
    /// Not a request of its own (the retried request counts once, by its outcome).
    pub resent: u64,
    /// Requests (answered or failed) sent after the end of the send window: overdue
    /// open-loop slots sent during the drain because the target or the generator fell
    /// behind. Included in [`requests`](Self::requests).
    pub late: u64,
    /// Requests in flight when the run was interrupted: sent, then abandoned; not in
    /// [`requests`](Self::requests).
    pub abandoned: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            status: Box::new([0; STATUS_SLOTS]),
            errors: [0; ErrorKind::COUNT],
            responses: 0,
            body_bytes: 0,
            resent: 0,
            late: 0,
            abandoned: 0,
        }
    }
}

impl Counts {
    /// Counts one answer.
    #[inline]
    pub fn status(&mut self, code: u16) {
        if let Some(c) = self.status.get_mut(code as usize) {
            *c += 1;
        }
        self.responses += 1;
    }
    /// Counts one failure.
    #[inline]
    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }
    /// Requests completed: answered or failed.
    pub fn requests(&self) -> u64 {
        self.responses + self.errors()
    }
    /// Requests that got no HTTP answer.
    pub fn errors(&self) -> u64 {
        self.errors.iter().sum()
    }
    /// Failures of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }
    /// Answers with this status code.
    pub fn of_status(&self, code: u16) -> u64 {
        self.status.get(code as usize).copied().unwrap_or(0)
    }
    /// `(status, count)` for every status seen, ascending.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code as u16, *n))
    }
    /// `(kind, count)` for every kind seen.
    pub fn error_kinds(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .into_iter()
            .map(|k| (k, self.errors[k as usize]))
            .filter(|(_, n)| *n > 0)
    }
    /// Adds `n` answers with status `code` to the per-status counts (not to
    /// `responses`, which is set on its own); false if `code` is not 0..=999. For
    /// rebuilding counts read back from a worker.
    pub fn add_status(&mut self, code: u16, n: u64) -> bool {
        match self.status.get_mut(code as usize) {
            Some(c) => {
                *c += n;
                true
            }
            None => false,
        }
    }
    /// Adds `n` failures of one kind.
    pub fn add_errors(&mut self, kind: ErrorKind, n: u64) {
        self.errors[kind as usize] += n;
    }
    /// Adds another set of counts.
    pub fn add(&mut self, o: &Counts) {
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
        self.responses += o.responses;
        self.body_bytes += o.body_bytes;
        self.resent += o.resent;
        self.late += o.late;
        self.abandoned += o.abandoned;
    }
}

/// One worker's measurements for one interval.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Latency of every request (answered or failed): from the intended start at a
    /// fixed rate, else from the send.
    pub latency: Histogram<u64>,
    /// Service time, from the actual send (open loop only).
    pub service: Option<Histogram<u64>>,
    /// Send lag: how long after its intended start each request left (open loop
    /// only). Near zero while the schedule is kept.
    pub lag: Option<Histogram<u64>>,
    /// Latency of 2xx answers only (when asked for): 429s answered in 0.8 ms during a
    /// flood pull the all-request percentiles down; this shows what users who got an
    /// answer waited. The all-request histogram stays the one judged.
    pub ok: Option<Histogram<u64>>,
    pub counts: Counts,
}

impl Recorded {
    pub fn new(open_loop: bool) -> Self {
        Self::with(open_loop, false)
    }

    /// [`Recorded::new`], with a 2xx-only latency histogram when `ok_latency`.
    pub fn with(open_loop: bool, ok_latency: bool) -> Self {
        Self {
            latency: new_histogram(),
            service: open_loop.then(new_histogram),
            lag: open_loop.then(new_lag_histogram),
            ok: ok_latency.then(new_histogram),
            counts: Counts::default(),
        }
    }

    /// Records an answered request.
    #[inline]
    pub fn answer(&mut self, status: u16, latency: Duration, service: Duration, bytes: u64) {
        // Auto-resizing histograms only fail to record past usize limits; the clamp
        // keeps values far below that.
        let _ = self.latency.record(nanos(latency).min(MAX_LATENCY_NS));
        if let Some(s) = &mut self.service {
            let _ = s.record(nanos(service).min(MAX_LATENCY_NS));
        }
        if let (Some(h), 200..=299) = (&mut self.ok, status) {
            let _ = h.record(nanos(latency).min(MAX_LATENCY_NS));
        }
        self.counts.status(status);
        self.counts.body_bytes += bytes;
    }

    /// Records a request that got no answer (refused, reset, timed out, ...). It counts
    /// in the latency histograms at the time it took — a timed-out request at least the
    /// timeout — so a percentile never hides a request that failed or hung.
    #[inline]
    pub fn failure(&mut self, kind: ErrorKind, latency: Duration, service: Duration) {
        let _ = self.latency.record(nanos(latency).min(MAX_LATENCY_NS));
        if let Some(s) = &mut self.service {
            let _ = s.record(nanos(service).min(MAX_LATENCY_NS));
        }
        self.counts.error(kind);
    }

    /// Records when a completed request left: `lag` after its intended start (open
    /// loop), `late` if after the end of the send window.
    #[inline]
    pub fn sent(&mut self, lag: Duration, late: bool) {
        if let Some(h) = &mut self.lag {
            let _ = h.record(nanos(lag).min(MAX_LATENCY_NS));
        }
        self.counts.late += u64::from(late);
    }

    /// Adds another worker's data (histograms grow as needed).
    pub fn add(&mut self, o: &Recorded) {
        let _ = self.latency.add(&o.latency);
        if let (Some(a), Some(b)) = (&mut self.service, &o.service) {
            let _ = a.add(b);
        }
        if let (Some(a), Some(b)) = (&mut self.lag, &o.lag) {
            let _ = a.add(b);
        }
        if let (Some(a), Some(b)) = (&mut self.ok, &o.ok) {
            let _ = a.add(b);
        }
        self.counts.add(&o.counts);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The merged measurements of all workers for one interval.
#[derive(Debug, Clone)]
pub struct IntervalSnapshot {
    /// 0-based interval number.
    pub index: u64,
    /// When the run started: `run_start + start` is when this interval began, on the
    /// clock callers time their own events with.
    pub run_start: std::time::Instant,
    /// Start of the interval, from the start of the run.
    pub start: Duration,
    /// Length of the interval (the last one may be shorter).
    pub duration: Duration,
    /// Requests completed in this interval, by completion time.
    pub data: Recorded,
    /// The target rate at the start of this interval (open loop).
    pub target_rps: Option<f64>,
}

impl IntervalSnapshot {
    /// Interval `index` (of length `interval`, this one `duration` long) of a run at
    /// `rate` that started at `run_start`.
    pub fn new(
        index: u64,
        interval: Duration,
        run_start: std::time::Instant,
        duration: Duration,
        data: Recorded,
        rate: super::Rate,
    ) -> Self {
        let start = interval.saturating_mul(u32::try_from(index).unwrap_or(u32::MAX));
        Self {
            index,
            run_start,
            start,
            duration,
            data,
            target_rps: rate.rate_at(start.as_secs_f64()),
        }
    }

    /// Completed requests per second in this interval.
    pub fn rps(&self) -> f64 {
        per_sec(self.data.counts.requests(), self.duration)
    }
}

/// The result of a run: merged histograms and counts, and how the schedule went.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Wall-clock start of the run.
    pub started_at: SystemTime,
    /// From the start until the last worker stopped (the last answers included).
    pub elapsed: Duration,
    /// The send window: for a duration run, `d` (`min(elapsed, d)` if cancelled); for
    /// a count run, `elapsed`. Rates are computed over it; the rest
    /// of `elapsed` is the [`drain`](Self::drain), waiting for requests in flight.
    pub window: Duration,
    /// Everything recorded.
    pub data: Recorded,
    /// Number of intervals reported.
    pub intervals: u64,
    /// The mean target rate over the run (open loop), requests/s.
    pub target_rps: Option<f64>,
    /// Requests that were due by the end (open loop).
    pub scheduled: Option<u64>,
    /// Whether the run was cancelled before its end.
    pub cancelled: bool,
    /// Whether the run stopped early because every connection was refused for
    /// [`REFUSED_STOP`](super::REFUSED_STOP) from the start (nothing listens).
    pub refused_stop: bool,
    /// A stopped run (cancelled or stopped early): the slots that fell due in the last
    /// 50 ms before the stop, while the workers were still seeing it. They count in
    /// `scheduled` (and, unsent, in `missed`) but are not held against the schedule in
    /// [`behind_schedule`](Self::behind_schedule).
    pub stop_slack: u64,
}

impl LoadReport {
    /// Requests completed (answered or failed).
    pub fn requests(&self) -> u64 {
        self.data.counts.requests()
    }
    /// Requests with no HTTP answer.
    pub fn errors(&self) -> u64 {
        self.data.counts.errors()
    }
    /// Requests (answered or failed) sent inside the send [`window`](Self::window).
    pub fn sent_in_window(&self) -> u64 {
        self.requests().saturating_sub(self.data.counts.late)
    }
    /// Requests sent after the window, during the drain: overdue open-loop slots the
    /// target or the generator could not send in time.
    pub fn late(&self) -> u64 {
        self.data.counts.late
    }
    /// The achieved rate: requests sent inside the send [`window`](Self::window) per
    /// second of it. A request hanging past the end does not dilute it, and a backlog
    /// sent late, during the drain, does not inflate it.
    pub fn rps(&self) -> f64 {
        per_sec(self.sent_in_window(), self.window)
    }
    /// Open loop: whether the schedule could not be kept — more than 0.1% of the due
    /// requests were sent late (after the window) or never sent (for a stopped run,
    /// not counting the [`stop_slack`](Self::stop_slack)).
    pub fn behind_schedule(&self) -> Option<bool> {
        let (scheduled, missed) = (self.scheduled?, self.missed()?);
        let missed = missed.saturating_sub(self.stop_slack);
        Some((missed + self.late()).saturating_mul(1000) > scheduled)
    }
    /// Time after the send window spent waiting for requests in flight (bounded by the
    /// timeout).
    pub fn drain(&self) -> Duration {
        self.elapsed.saturating_sub(self.window)
    }
    /// Scheduled requests that were never sent because the generator (or the target)
    /// could not keep up (open loop). Requests abandoned in flight by an interruption
    /// were sent: they are not missed.
    pub fn missed(&self) -> Option<u64> {
        self.scheduled.map(|s| {
            s.saturating_sub(self.requests())
                .saturating_sub(self.data.counts.abandoned)
        })
    }
    /// Latency at quantile `q` (0..=1).
    pub fn latency_at(&self, q: f64) -> Duration {
        Duration::from_nanos(self.data.latency.value_at_quantile(q))
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_kind() {
        let mut a = Counts::default();
        a.status(200);
        a.status(200);
        a.status(503);
        a.error(ErrorKind::Timeout);
        let mut b = Counts::default();
        b.status(429);
        b.error(ErrorKind::ConnectRefused);
        a.add(&b);
        assert_eq!(a.requests(), 6);
        assert_eq!(a.errors(), 2);
        assert_eq!(
            a.statuses().collect::<Vec<_>>(),
            vec![(200, 2), (429, 1), (503, 1)]
        );
        assert_eq!(a.errors_of(ErrorKind::Timeout), 1);
    }

    fn report(scheduled: u64, sent: u64, late: u64, cancelled: bool, slack: u64) -> LoadReport {
        let mut data = Recorded::new(true);
        for i in 0..sent + late {
            data.answer(200, Duration::from_millis(1), Duration::from_millis(1), 0);
            data.sent(Duration::ZERO, i >= sent);
        }
        LoadReport {
            started_at: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(2),
            window: Duration::from_secs(1),
            data,
            intervals: 1,
            target_rps: Some(scheduled as f64),
            scheduled: Some(scheduled),
            cancelled,
            refused_stop: false,
            stop_slack: slack,
        }
    }

    /// rps is what was sent inside the window; late and never-sent requests flag the
    /// run past 0.1% of the schedule.
    #[test]
    fn achieved_rate_and_schedule_flag() {
        let r = report(2000, 1000, 500, false, 0);
        assert_eq!(
            (r.sent_in_window(), r.late(), r.missed()),
            (1000, 500, Some(500))
        );
        assert_eq!(
            r.rps(),
            1000.0,
            "not the 1500 completed, nor the 2000 asked"
        );
        assert_eq!(r.behind_schedule(), Some(true));
        assert_eq!(
            report(2000, 1998, 0, false, 0).behind_schedule(),
            Some(false)
        );
        assert_eq!(
            report(2000, 1997, 0, false, 0).behind_schedule(),
            Some(true)
        );
        assert_eq!(
            report(2000, 1999, 1, false, 0).behind_schedule(),
            Some(false)
        );
        // A stopped run: slots due while the stop was seen are not held against it.
        assert_eq!(
            report(2000, 1990, 0, true, 10).behind_schedule(),
            Some(false)
        );
        assert_eq!(report(2000, 1990, 0, true, 5).behind_schedule(), Some(true));
        let mut r = report(2000, 1990, 0, true, 0);
        r.data.counts.abandoned = 10;
        assert_eq!(r.missed(), Some(0), "abandoned in flight were sent");
    }

    #[test]
    fn histograms_merge_and_clamp() {
        let mut a = Recorded::new(true);
        a.answer(200, Duration::from_millis(5), Duration::from_millis(1), 12);
        let mut b = Recorded::new(true);
        b.answer(
            200,
            Duration::from_secs(100_000),
            Duration::from_secs(2),
            12,
        );
        a.add(&b);
        assert_eq!(a.latency.len(), 2);
        assert!(a.latency.max() >= MAX_LATENCY_NS / 2);
        assert!(a.service.as_ref().is_some_and(|s| s.max() >= 1_999_000_000));
    }

    #[test]
    fn the_2xx_histogram_holds_only_2xx_answers() {
        let mut r = Recorded::with(false, true);
        r.answer(200, Duration::from_millis(10), Duration::ZERO, 0);
        r.answer(204, Duration::from_millis(12), Duration::ZERO, 0);
        r.answer(429, Duration::from_millis(1), Duration::ZERO, 0);
        r.answer(302, Duration::from_millis(1), Duration::ZERO, 0);
        r.failure(ErrorKind::Timeout, Duration::from_secs(1), Duration::ZERO);
        let ok = r.ok.as_ref().expect("asked for");
        assert_eq!((ok.len(), r.latency.len()), (2, 5));
        assert!(ok.min() >= 9_000_000 && ok.max() < 13_000_000);
        let mut total = Recorded::with(false, true);
        total.add(&r);
        assert_eq!(total.ok.as_ref().map(|h| h.len()), Some(2));
        assert!(
            Recorded::new(false).ok.is_none(),
            "not recorded unless asked"
        );
    }
}
