//! The coordinator's merge: worker lines in, the single run's [`IntervalSnapshot`]s
//! and an exact [`LoadReport`] out. Histograms are added (never percentiles averaged);
//! interval k is emitted once every live worker has sent it (a worker that ended, or
//! whose output broke the protocol, no longer holds the others up).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use super::wire::{End, Item, Stream};
use super::{Event, FleetReport, WorkerEnd, WorkerSummary};
use crate::load::{IntervalSnapshot, LoadConfig, LoadReport, Rate, Recorded, Stop};

/// Diagnostic lines (not protocol lines) kept per worker.
const NOTES: usize = 20;

struct Worker {
    stream: Stream,
    /// The next interval index it will send.
    next: u64,
    /// Still expected to send (not ended, no protocol error).
    live: bool,
    data: Recorded,
    end_line: Option<End>,
    end: Option<WorkerEnd>,
    problem: Option<String>,
    notes: VecDeque<String>,
}

struct Pending {
    data: Recorded,
    duration: Duration,
}

pub(super) struct Merge<F> {
    open_loop: bool,
    ok_latency: bool,
    interval: Duration,
    rate: Rate,
    stop: Stop,
    run_start: Instant,
    started_at: SystemTime,
    workers: Vec<Worker>,
    pending: VecDeque<Pending>,
    first: u64,
    total: Recorded,
    emitted: u64,
    cancelled: bool,
    on_interval: F,
}

impl<F: FnMut(&IntervalSnapshot)> Merge<F> {
    pub(super) fn new(
        c: &LoadConfig,
        n: u32,
        run_start: Instant,
        started_at: SystemTime,
        on_interval: F,
    ) -> Self {
        let (open_loop, ok_latency) = (c.rate().is_open(), c.ok_latency());
        Self {
            open_loop,
            ok_latency,
            interval: c.interval(),
            rate: c.rate(),
            stop: c.stop(),
            run_start,
            started_at,
            workers: (0..n)
                .map(|i| Worker {
                    stream: Stream::new(i, n),
                    next: 0,
                    live: true,
                    data: Recorded::with(open_loop, ok_latency),
                    end_line: None,
                    end: None,
                    problem: None,
                    notes: VecDeque::new(),
                })
                .collect(),
            pending: VecDeque::new(),
            first: 0,
            total: Recorded::with(open_loop, ok_latency),
            emitted: 0,
            cancelled: false,
            on_interval,
        }
    }

    /// The run was cancelled by the coordinator's caller.
    pub(super) fn cancelled(&mut self) {
        self.cancelled = true;
    }

    /// Whether every worker has ended.
    pub(super) fn all_ended(&self) -> bool {
        self.workers.iter().all(|w| w.end.is_some())
    }

    pub(super) fn on(&mut self, ev: Event) {
        match ev {
            Event::Line { worker, line } => self.line(worker, &line),
            Event::Ended { worker, end } => {
                if let Some(w) = self.workers.get_mut(worker as usize) {
                    w.live = false;
                    w.end.get_or_insert(end);
                }
            }
        }
        self.emit_ready();
    }

    fn line(&mut self, worker: u32, line: &str) {
        let Some(w) = self.workers.get_mut(worker as usize) else {
            return;
        };
        if w.problem.is_some() {
            return;
        }
        match w.stream.feed(line) {
            Ok(Item::Header(_)) => {}
            Ok(Item::Note(n)) => {
                if w.notes.len() == NOTES {
                    w.notes.pop_front();
                }
                w.notes.push_back(n.chars().take(500).collect());
            }
            Ok(Item::End(e)) => w.end_line = Some(e),
            Ok(Item::Interval(i)) => {
                w.next = i.index + 1;
                w.data.add(&i.data);
                match i.index.checked_sub(self.first) {
                    // Only a worker counted out (then back) could be late; keep its data.
                    None => self.total.add(&i.data),
                    Some(slot) => {
                        let slot = usize::try_from(slot).unwrap_or(usize::MAX);
                        if slot > 1 << 20 {
                            w.problem = Some(format!(
                                "worker {worker}: interval {} is far beyond the run",
                                i.index
                            ));
                            w.live = false;
                            return;
                        }
                        while self.pending.len() <= slot {
                            self.pending.push_back(Pending {
                                data: Recorded::with(self.open_loop, self.ok_latency),
                                duration: Duration::ZERO,
                            });
                        }
                        if let Some(p) = self.pending.get_mut(slot) {
                            p.data.add(&i.data);
                            p.duration = p.duration.max(i.duration.min(self.interval));
                        }
                    }
                }
            }
            Err(e) => {
                w.problem = Some(e.to_string());
                w.live = false;
            }
        }
    }

    fn emit_ready(&mut self) {
        while !self.pending.is_empty()
            && self.workers.iter().all(|w| !w.live || w.next > self.first)
        {
            self.emit();
        }
    }

    fn emit(&mut self) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        let snap = IntervalSnapshot::new(
            self.first,
            self.interval,
            self.run_start,
            p.duration,
            p.data,
            self.rate,
        );
        (self.on_interval)(&snap);
        self.total.add(&snap.data);
        self.first += 1;
        self.emitted += 1;
    }

    /// Emits what is left and builds the report.
    pub(super) fn finish(mut self) -> FleetReport {
        while !self.pending.is_empty() {
            self.emit();
        }
        let ends: Vec<&End> = self
            .workers
            .iter()
            .filter_map(|w| w.end_line.as_ref())
            .collect();
        let measured = self.run_start.elapsed();
        let elapsed = ends.iter().map(|e| e.elapsed).max().unwrap_or(measured);
        let window = ends
            .iter()
            .map(|e| e.window)
            .max()
            .unwrap_or(match self.stop {
                Stop::Duration(d) => d.min(elapsed),
                Stop::Requests(_) => elapsed,
            });
        let scheduled = self
            .open_loop
            .then(|| ends.iter().filter_map(|e| e.scheduled).sum());
        let target_rps = match self.rate {
            Rate::Max => None,
            Rate::Fixed(r) => Some(r),
            rate @ Rate::Ramp { .. } => {
                let t = window.as_secs_f64();
                (t > 0.0).then(|| rate.due_by(t) / t)
            }
        };
        let cancelled = self.cancelled || ends.iter().any(|e| e.cancelled);
        let refused_stop = !ends.is_empty() && ends.iter().all(|e| e.refused_stop);
        let stop_slack = ends.iter().map(|e| e.stop_slack).sum();
        let workers: Vec<WorkerSummary> = self
            .workers
            .into_iter()
            .enumerate()
            .map(|(i, w)| summary(i, w))
            .collect();
        let partial = workers.iter().any(|w| !w.complete);
        FleetReport {
            report: LoadReport {
                started_at: self.started_at,
                elapsed,
                window,
                data: self.total,
                intervals: self.emitted,
                target_rps,
                scheduled,
                cancelled,
                refused_stop,
                stop_slack,
            },
            workers,
            partial,
        }
    }
}

fn summary(i: usize, w: Worker) -> WorkerSummary {
    let complete = w.problem.is_none()
        && w.end_line.is_some()
        && matches!(w.end, Some(WorkerEnd::Exited { code: 0 }));
    let requests = w.data.counts.requests();
    let window = w.end_line.as_ref().map_or(Duration::ZERO, |e| e.window);
    let sent = requests.saturating_sub(w.data.counts.late);
    let rps = if window.is_zero() {
        0.0
    } else {
        sent as f64 / window.as_secs_f64()
    };
    let p99 = (!w.data.latency.is_empty())
        .then(|| Duration::from_nanos(w.data.latency.value_at_quantile(0.99)));
    let mut tail: Vec<String> = match &w.end {
        Some(WorkerEnd::Failed { tail, .. }) if !tail.is_empty() => tail.clone(),
        _ => Vec::new(),
    };
    if tail.is_empty() {
        tail = w.notes.into_iter().collect();
    }
    WorkerSummary {
        index: u32::try_from(i).unwrap_or(u32::MAX),
        requests,
        rps,
        p99,
        end: w.end,
        complete,
        problem: w.problem,
        tail,
    }
}
