//! The schedule: when each request is meant to start, and when the run stops.
//!
//! Workers draw request slots from one shared atomic counter ([`Plan::next`]); an open
//! loop turns slot `i` into its intended start time `t(i)`, the inverse of the cumulative
//! request count `N(t)` (fixed rate: `N(t) = r·t`; ramp: `r0·t + (r1−r0)·t²/2T`, then
//! `r1`). No locks, no allocation.

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
            next: AtomicU64::new(0),
        }
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
        let i = self.next.fetch_add(1, Ordering::Relaxed);
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
    /// for a cancelled run, those due before it stopped.
    pub fn due(&self, elapsed: Duration, reached_end: bool) -> Option<u64> {
        if !self.rate.is_open() {
            return None;
        }
        Some(match (self.stop, reached_end) {
            (Stop::Duration(d), true) => self.rate.slots_before(d.as_secs_f64()),
            (Stop::Duration(d), false) => self.rate.slots_before(elapsed.min(d).as_secs_f64()),
            (Stop::Requests(n), true) => n,
            (Stop::Requests(n), false) => self.rate.slots_before(elapsed.as_secs_f64()).min(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
