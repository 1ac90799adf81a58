//! The schedule: when each request is meant to start, and when the run stops.
//!
//! Workers draw request slots from one shared atomic counter ([`Plan::next`]); an open
//! loop turns slot `i` into its intended start time `t(i)`, the inverse of the cumulative
//! request count `N(t)` (fixed rate: `N(t) = r·t`; ramp: `r0·t + (r1−r0)·t²/2T`, then
//! `r1`). No locks, no allocation.
//!
//! A distributed run ([`Share`]) splits that one schedule across N workers: worker `i`
//! takes the global slots `m ≡ i (mod N)` (its `k`-th slot is `m = k·N + i`), so the
//! union of the workers' slots, intended times and request budgets is exactly the
//! single run's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::ConfigError;

/// How fast requests are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Closed loop: each connection sends its next request as soon as the last answer
    /// arrives. Latency is the service time.
    Max,
    /// Open loop at a fixed rate (requests/s over all connections). Latency counts from
    /// each request's intended start (free of coordinated omission).
    Fixed(f64),
    /// Open loop whose rate moves linearly from `from` to `to` over `over`, then holds
    /// `to` (flood / DoS drills).
    Ramp { from: f64, to: f64, over: Duration },
}

/// When a run stops (besides cancellation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No new request is due after this much time; requests in flight finish (up to
    /// the timeout). At a fixed rate, requests due before the end that are still unsent
    /// when it comes (the target stalled) are sent late, latency counted from their
    /// intended start, for up to the timeout after the end; only what is still unsent
    /// then is reported as missed. Nothing runs past the end plus the timeout: a late
    /// request still in flight then counts as a timeout (it is then more than the
    /// timeout past its slot).
    Duration(Duration),
    /// Exactly this many requests (answered or failed).
    Requests(u64),
}

impl Rate {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let check = |what, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::Rate { what, value: v })
            }
        };
        match *self {
            Rate::Max => Ok(()),
            Rate::Fixed(r) => check("the rate", r),
            Rate::Ramp { from, to, over } => {
                check("the ramp start rate", from)?;
                check("the ramp end rate", to)?;
                if over.is_zero() || over > super::config::MAX_SPAN {
                    return Err(ConfigError::RampDuration);
                }
                Ok(())
            }
        }
    }

    /// Whether this is an open loop (latency from the intended start).
    pub fn is_open(&self) -> bool {
        !matches!(self, Rate::Max)
    }

    /// The target rate at `t` seconds into the run (None for a closed loop).
    pub fn rate_at(&self, t: f64) -> Option<f64> {
        match *self {
            Rate::Max => None,
            Rate::Fixed(r) => Some(r),
            Rate::Ramp { from, to, over } => {
                let big_t = over.as_secs_f64();
                Some(if t >= big_t {
                    to
                } else {
                    from + (to - from) * t.max(0.0) / big_t
                })
            }
        }
    }

    /// `N(t)`: how many requests are due in the first `t` seconds (open loop).
    pub fn due_by(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        match *self {
            Rate::Max => 0.0,
            Rate::Fixed(r) => r * t,
            Rate::Ramp { from, to, over } => {
                let big_t = over.as_secs_f64();
                let a = (to - from) / (2.0 * big_t);
                if t <= big_t {
                    from * t + a * t * t
                } else {
                    from * big_t + a * big_t * big_t + to * (t - big_t)
                }
            }
        }
    }

    /// `t(i)`: the intended start of slot `i`, in seconds from the start (open loop).
    pub fn intended(&self, i: u64) -> f64 {
        let i = i as f64;
        match *self {
            Rate::Max => 0.0,
            Rate::Fixed(r) => i / r,
            Rate::Ramp { from, to, over } => {
                let big_t = over.as_secs_f64();
                let a = (to - from) / (2.0 * big_t);
                let n_t = from * big_t + a * big_t * big_t;
                if i <= n_t {
                    // Root of a·t² + from·t − i = 0, in the form that stays exact as a → 0.
                    let disc = (from * from + 4.0 * a * i).max(0.0);
                    2.0 * i / (from + disc.sqrt())
                } else {
                    big_t + (i - n_t) / to
                }
            }
        }
    }

    /// How many slots fall strictly before `t` seconds: `ceil(N(t))`.
    pub fn slots_before(&self, t: f64) -> u64 {
        let n = self.due_by(t);
        // Guard against N(t) landing a hair above an integer through rounding.
        let r = n.round();
        if (n - r).abs() < 1e-6 {
            r as u64
        } else {
            n.ceil() as u64
        }
    }
}

/// One worker's part of a distributed run: worker `index` of `count` takes the global
/// slots `m ≡ index (mod count)`. Checked: `count >= 1`, `index < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    index: u32,
    count: u32,
}

impl Share {
    /// The whole run (one worker).
    pub const WHOLE: Share = Share { index: 0, count: 1 };

    /// Worker `index` of `count`; None unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Share> {
        (index < count).then_some(Share { index, count })
    }
    /// An unchecked share, for the builder to check in `build` (never reaches a plan).
    pub(crate) fn unchecked(index: u32, count: u32) -> Share {
        Share { index, count }
    }
    /// 0-based worker index.
    pub fn index(self) -> u32 {
        self.index
    }
    /// Number of workers.
    pub fn count(self) -> u32 {
        self.count
    }
    /// The global slot of this share's `k`-th slot (None past `u64`).
    pub fn global(self, k: u64) -> Option<u64> {
        k.checked_mul(u64::from(self.count))?
            .checked_add(u64::from(self.index))
    }
    /// How many of the global slots `0..total` are this share's.
    pub fn of(self, total: u64) -> u64 {
        let i = u64::from(self.index);
        if total > i {
            (total - i - 1) / u64::from(self.count) + 1
        } else {
            0
        }
    }
    /// This share of `total` connections: `total / count`, one more for the first
    /// `total % count` workers.
    pub fn conns(self, total: usize) -> usize {
        let (n, i) = (self.count as usize, self.index as usize);
        total / n + usize::from(i < total % n)
    }
}

/// What a worker does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Send now (closed loop).
    Now,
    /// Send at this instant (open loop), measuring latency from it.
    At(Instant),
    /// The run is over for this worker.
    Done,
}

/// The shared schedule: one atomic slot counter for all workers.
#[derive(Debug)]
pub struct Plan {
    rate: Rate,
    stop: Stop,
    start: Instant,
    end: Option<Instant>,
    share: Share,
    /// Open loop: overdue slots (due before `end`) are still handed out until this.
    drain_end: Option<Instant>,
    next: AtomicU64,
}

impl Plan {
    /// `grace`: how long after the end of a duration run overdue open-loop slots are
    /// still sent (the per-request timeout).
    pub fn new(rate: Rate, stop: Stop, start: Instant, grace: Duration) -> Self {
        let end = match stop {
            Stop::Duration(d) => start.checked_add(d),
            Stop::Requests(_) => None,
        };
        let drain_end = end.and_then(|e| e.checked_add(grace));
        Self {
            rate,
            stop,
            start,
            end,
            drain_end,
            share: Share::WHOLE,
            next: AtomicU64::new(0),
        }
    }

    /// This plan restricted to one worker's [`Share`] of the global slots.
    pub fn shared(mut self, share: Share) -> Self {
        self.share = share;
        self
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// The end of the send window (duration runs): a request sent at or after it was
    /// sent late (an overdue open-loop slot, sent during the drain).
    pub fn end(&self) -> Option<Instant> {
        self.end
    }

    /// `grace` after the end (duration runs): no request runs past it, so a run stops
    /// within `-d` plus the timeout however far the generator fell behind.
    pub fn drain_end(&self) -> Option<Instant> {
        self.drain_end
    }

    /// Claims the next slot. A closed loop stops at the end; an open loop keeps handing
    /// out slots due before the end (overdue ones included) until `grace` after it, so
    /// a stall near the end shows in the latency instead of vanishing as missed.
    pub fn next(&self, now: Instant) -> Slot {
        let stop_at = if self.rate.is_open() {
            self.drain_end
        } else {
            self.end
        };
        if stop_at.is_some_and(|end| now >= end) {
            return Slot::Done;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(i) = self.share.global(k) else {
            return Slot::Done;
        };
        if matches!(self.stop, Stop::Requests(n) if i >= n) {
            return Slot::Done;
        }
        if !self.rate.is_open() {
            return Slot::Now;
        }
        let t = self.rate.intended(i);
        if matches!(self.stop, Stop::Duration(d) if t >= d.as_secs_f64()) {
            return Slot::Done;
        }
        // Durations up to ~584 years fit; clamp absurd values instead of panicking.
        match Duration::try_from_secs_f64(t)
            .ok()
            .and_then(|d| self.start.checked_add(d))
        {
            Some(at) => Slot::At(at),
            None => Slot::Done,
        }
    }

    /// Slots due by `elapsed` (open loop): for a run that reached its end, all of them;
    /// for a cancelled run, those due before it stopped. A share counts its own slots.
    pub fn due(&self, elapsed: Duration, reached_end: bool) -> Option<u64> {
        if !self.rate.is_open() {
            return None;
        }
        Some(self.share.of(match (self.stop, reached_end) {
            (Stop::Duration(d), true) => self.rate.slots_before(d.as_secs_f64()),
            (Stop::Duration(d), false) => self.rate.slots_before(elapsed.min(d).as_secs_f64()),
            (Stop::Requests(n), true) => n,
            (Stop::Requests(n), false) => self.rate.slots_before(elapsed.as_secs_f64()).min(n),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every slot a plan hands out (as seconds from the start, open loop), or the
    /// number of `Now` slots (closed loop), drawn until it says done.
    fn draw(p: &Plan, now: Instant) -> (Vec<Duration>, u64) {
        let (mut at, mut now_slots) = (Vec::new(), 0);
        for _ in 0..100_000 {
            match p.next(now) {
                Slot::At(t) => at.push(t - p.start()),
                Slot::Now => now_slots += 1,
                Slot::Done => break,
            }
        }
        (at, now_slots)
    }

    fn rate_strategy() -> impl Strategy<Value = Rate> {
        prop_oneof![
            (1.0f64..5000.0).prop_map(Rate::Fixed),
            (1.0f64..3000.0, 1.0f64..3000.0, 1u64..5000).prop_map(|(from, to, ms)| {
                Rate::Ramp {
                    from,
                    to,
                    over: Duration::from_millis(ms),
                }
            }),
        ]
    }

    fn stop_strategy() -> impl Strategy<Value = Stop> {
        prop_oneof![
            (1u64..3000).prop_map(Stop::Requests),
            (1u64..2000).prop_map(|ms| Stop::Duration(Duration::from_millis(ms))),
        ]
    }

    proptest! {
        /// The union of the N shares' intended times is exactly the single schedule's
        /// (same instants, same count), and each share's `due` adds up to the whole.
        #[test]
        fn shares_partition_the_single_schedule(
            rate in rate_strategy(),
            stop in stop_strategy(),
            n in 1u32..9,
            cut_ms in 0u64..3000,
        ) {
            let start = Instant::now();
            let whole = Plan::new(rate, stop, start, Duration::ZERO);
            let (mut single, _) = draw(&whole, start);
            let mut union = Vec::new();
            let mut due = (0, 0);
            let cut = Duration::from_millis(cut_ms);
            for i in 0..n {
                let share = Share::new(i, n).expect("i < n");
                let p = Plan::new(rate, stop, start, Duration::ZERO).shared(share);
                union.extend(draw(&p, start).0);
                due.0 += p.due(cut, true).unwrap_or(0);
                due.1 += p.due(cut, false).unwrap_or(0);
            }
            single.sort();
            union.sort();
            prop_assert_eq!(&union, &single);
            prop_assert_eq!(due.0, whole.due(cut, true).unwrap_or(0));
            prop_assert_eq!(due.1, whole.due(cut, false).unwrap_or(0));
        }

        /// Closed loop with -n: the shares' budgets add up to n; connections to the
        /// total, each within one of the others.
        #[test]
        fn shares_split_counts_and_connections(total in 1u64..10_000, n in 1u32..17, conns in 1usize..5000) {
            let start = Instant::now();
            let mut sum = 0;
            let mut c = Vec::new();
            for i in 0..n {
                let share = Share::new(i, n).expect("i < n");
                let p = Plan::new(Rate::Max, Stop::Requests(total), start, Duration::ZERO)
                    .shared(share);
                let (_, got) = draw(&p, start);
                prop_assert_eq!(got, share.of(total));
                sum += got;
                c.push(share.conns(conns));
            }
            prop_assert_eq!(sum, total);
            prop_assert_eq!(c.iter().sum::<usize>(), conns);
            let (lo, hi) = (c.iter().min().copied(), c.iter().max().copied());
            prop_assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 1);
        }
    }

    #[test]
    fn a_share_takes_every_nth_slot() {
        let start = Instant::now();
        let share = Share::new(1, 3).expect("1 < 3");
        let p =
            Plan::new(Rate::Fixed(10.0), Stop::Requests(8), start, Duration::ZERO).shared(share);
        let (at, _) = draw(&p, start);
        let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 400, 700], "global slots 1, 4, 7 of 0..8");
        assert_eq!(p.due(Duration::ZERO, true), Some(3));
        assert_eq!(p.due(Duration::from_millis(450), false), Some(2));
        assert_eq!(Share::new(3, 3), None);
        assert_eq!((share.conns(7), Share::WHOLE.conns(7)), (2, 7));
    }

    #[test]
    fn fixed_rate_slots_are_evenly_spaced() {
        let r = Rate::Fixed(1000.0);
        assert_eq!(r.intended(0), 0.0);
        assert!((r.intended(1500) - 1.5).abs() < 1e-12);
        assert_eq!(r.slots_before(10.0), 10_000);
        assert_eq!(Rate::Fixed(20_000.0).slots_before(10.0), 200_000);
    }

    #[test]
    fn ramp_intended_inverts_due_by() {
        for (from, to) in [(100.0, 5000.0), (5000.0, 100.0), (50.0, 50.0)] {
            let r = Rate::Ramp {
                from,
                to,
                over: Duration::from_secs(30),
            };
            for i in [0u64, 1, 10, 999, 12_345, 76_000, 200_000] {
                let t = r.intended(i);
                let back = r.due_by(t);
                assert!(
                    (back - i as f64).abs() < 1e-6 * (1.0 + i as f64),
                    "{i} {t} {back}"
                );
            }
            // Rate is monotone along the ramp and holds `to` afterwards.
            assert_eq!(r.rate_at(31.0), Some(to));
        }
    }

    #[test]
    fn plan_hands_out_exact_counts() {
        let start = Instant::now();
        let p = Plan::new(Rate::Max, Stop::Requests(3), start, Duration::ZERO);
        let got: Vec<_> = (0..5).map(|_| p.next(start)).collect();
        assert_eq!(got[..3], [Slot::Now; 3]);
        assert_eq!(got[3..], [Slot::Done; 2]);

        let p = Plan::new(
            Rate::Fixed(10.0),
            Stop::Duration(Duration::from_secs(1)),
            start,
            Duration::ZERO,
        );
        let n = (0..20)
            .filter(|_| matches!(p.next(start), Slot::At(_)))
            .count();
        assert_eq!(n, 10);
        assert_eq!(p.due(Duration::from_secs(5), true), Some(10));
        assert_eq!(p.due(Duration::from_millis(450), false), Some(5));
    }

    /// Regression: overdue slots due before the end were dropped (counted as missed)
    /// once the end had passed, hiding a stall near the end of a run.
    #[test]
    fn overdue_open_loop_slots_are_handed_out_until_the_grace_ends() {
        let start = Instant::now();
        let d = Duration::from_secs(1);
        let p = Plan::new(Rate::Fixed(10.0), Stop::Duration(d), start, d);
        let late = start + Duration::from_millis(1500);
        let n = (0..20)
            .filter(|_| matches!(p.next(late), Slot::At(at) if at < start + d))
            .count();
        assert_eq!(n, 10, "every slot due before the end, sent late");
        let p = Plan::new(Rate::Fixed(10.0), Stop::Duration(d), start, d);
        assert_eq!(p.next(start + Duration::from_secs(2)), Slot::Done);
        let p = Plan::new(Rate::Max, Stop::Duration(d), start, d);
        assert_eq!(p.next(late), Slot::Done, "a closed loop stops at the end");
    }
}
