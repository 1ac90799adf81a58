//! Judging objectives: one window with confidence intervals ([`evaluate`]), interval
//! series on their point values ([`evaluate_intervals`], [`recovery_time`]).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::format;
use super::parse::{describe, quantile_name, threshold_label};
use super::stats::{
    needed_for_quantile, needed_for_quantile_lower, needed_for_rate, quantile_ranks, wilson,
};
use super::{Cmp, LatencyBasis, Metric, Objective, Over, SloResult, StatusClass, Verdict, Window};
use crate::load::Counts;
use crate::load::Recorded;

/// A result with nothing measured yet: inconclusive, to be filled in.
fn blank(o: &Objective, confidence: f64, requests: u64, detail: impl Into<String>) -> SloResult {
    SloResult {
        name: o.name.clone(),
        objective: describe(o),
        measured: None,
        measured_text: String::new(),
        requests,
        ci: None,
        confidence,
        verdict: Verdict::Inconclusive,
        needed: None,
        detail: detail.into(),
    }
}

/// Why an objective cannot be judged at all, whatever the data (a hand-built objective
/// with a NaN threshold, a quantile outside (0, 1]).
fn unusable(o: &Objective) -> Option<String> {
    if !o.threshold.is_finite() {
        return Some(format!(
            "the threshold {} is not a number: nothing to judge",
            o.threshold
        ));
    }
    if let Metric::Latency { quantile: q, .. } = o.metric
        && !(q > 0.0 && q <= 1.0)
    {
        return Some(format!("quantile {q} is outside (0, 1]: nothing to judge"));
    }
    None
}

// === rates ===

/// Whether a status answers to a status set.
fn status_in(set: &[StatusClass], code: u16) -> bool {
    set.iter().any(|s| match *s {
        StatusClass::Code(c) => c == code,
        StatusClass::Class(d) => u16::from(d) == code / 100,
        StatusClass::Error => false,
    })
}

/// `(successes, n)` of a rate metric: what the module doc counts; `None` for other
/// metrics.
fn rate_counts(m: &Metric, c: &Counts) -> Option<(u64, u64)> {
    let n = c.requests();
    let answered = |f: &dyn Fn(u16) -> bool| -> u64 {
        c.statuses()
            .filter(|(code, _)| f(*code))
            .map(|(_, k)| k)
            .sum()
    };
    let s = match m {
        Metric::Availability => answered(&|code| code < 500),
        Metric::SuccessRate => answered(&|code| (200..=399).contains(&code)),
        // 1 − availability: 5xx (and the odd status above 599) and no answer.
        Metric::ErrorRate => n.saturating_sub(answered(&|code| code < 500)),
        Metric::StatusRate { statuses } => {
            let failed = if statuses.contains(&StatusClass::Error) {
                c.errors()
            } else {
                0
            };
            answered(&|code| status_in(statuses, code)) + failed
        }
        _ => return None,
    };
    Some((s.min(n), n))
}

fn evaluate_rate(o: &Objective, s: u64, n: u64, confidence: f64) -> SloResult {
    let mut r = blank(o, confidence, n, "");
    let p = s as f64 / n as f64;
    let (lo, hi) = wilson(s, n, confidence);
    let t = o.threshold;
    r.measured = Some(p);
    r.measured_text = format::percent(p);
    r.ci = Some((lo, hi));
    let want = format!("{} {}", o.cmp.symbol(), threshold_label(o));
    let seen = format!(
        "{} of {} requests ({} CI {}–{})",
        format::percent(p),
        format::count(n),
        format::confidence(confidence),
        format::percent(lo),
        format::percent(hi)
    );
    if t == 0.0 || t == 1.0 {
        // No interval ever excludes 0 or 1 when the sample sits on it: judge what
        // was counted.
        let holds = o.cmp.holds(p, t);
        r.verdict = if holds { Verdict::Pass } else { Verdict::Fail };
        r.detail = format!(
            "{} ({} of {} requests) {}{want}: a threshold of {} is judged on the sample as counted (no interval can decide it)",
            format::percent(p),
            format::count(s),
            format::count(n),
            if holds { "" } else { "not " },
            format::percent(t)
        );
        return r;
    }
    let (worst, best) = match o.cmp {
        Cmp::Lt | Cmp::Le => (hi, lo),
        Cmp::Gt | Cmp::Ge => (lo, hi),
    };
    if o.cmp.holds(worst, t) {
        r.verdict = Verdict::Pass;
        r.detail = format!("{seen} {want}");
    } else if !o.cmp.holds(best, t) {
        r.verdict = Verdict::Fail;
        r.detail = format!("{seen}: not {want}");
    } else {
        r.needed = needed_for_rate(p, t, confidence);
        r.detail = format!(
            "{}: the {} interval {}–{} straddles {}: {}",
            seen.split(" (").next().unwrap_or_default(),
            format::confidence(confidence),
            format::percent(lo),
            format::percent(hi),
            threshold_label(o),
            needed_text(r.needed, n)
        );
    }
    r
}

fn needed_text(needed: Option<u64>, n: u64) -> String {
    match needed {
        None => "the measured value sits on the threshold: no sample size can decide".into(),
        Some(k) if k >= super::stats::NEEDED_CAP => {
            "no practical number of requests would decide".into()
        }
        Some(k) if k <= n => "a few more requests would decide".into(),
        Some(k) => format!("about {} requests would decide", format::count(k)),
    }
}

// === latency ===

/// The latencies of a window: the histogram's recorded answers, and requests that
/// carry no latency (failures the load engine did not record), ranked above every
/// answer — a request that hung is never hidden by a percentile.
struct Latencies<'a> {
    hist: &'a Histogram<u64>,
    recorded: u64,
    /// All requests: recorded ones and those without a latency.
    n: u64,
}

impl<'a> Latencies<'a> {
    fn of(data: &'a Recorded, basis: LatencyBasis) -> Self {
        let hist = match basis {
            LatencyBasis::Corrected => &data.latency,
            LatencyBasis::Service => data.service.as_ref().unwrap_or(&data.latency),
        };
        let recorded = hist.len();
        Latencies {
            hist,
            recorded,
            n: data.counts.requests().max(recorded),
        }
    }

    fn unrecorded(&self) -> u64 {
        self.n - self.recorded
    }

    /// The value at 1-based rank `r` in ms; `None` outside 1..=n (unbounded), +∞ for
    /// a request with no latency.
    fn at_rank(&self, r: u64) -> Option<f64> {
        if r == 0 || r > self.n {
            return None;
        }
        if r > self.recorded {
            return Some(f64::INFINITY);
        }
        // (r − ½)/len: value_at_quantile takes ⌈q·len⌉, exactly r here whatever the
        // rounding of the division.
        let q = (r as f64 - 0.5) / self.recorded as f64;
        Some(self.hist.value_at_quantile(q) as f64 / 1e6)
    }

    /// The point estimate of quantile `q`: the value at rank ⌈q·n⌉ (as HdrHistogram
    /// takes it).
    fn point(&self, q: f64) -> f64 {
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n.max(1));
        self.at_rank(rank).unwrap_or(f64::INFINITY)
    }
}

fn latency_text(v: f64, l: &Latencies<'_>) -> String {
    if v.is_infinite() {
        format!(
            "no answer ({} of {} requests failed)",
            format::count(l.unrecorded()),
            format::count(l.n)
        )
    } else {
        format::millis(v)
    }
}

fn evaluate_latency(
    o: &Objective,
    w: &Window<'_>,
    q: f64,
    basis: LatencyBasis,
    confidence: f64,
) -> SloResult {
    let l = Latencies::of(w.data, basis);
    let mut r = blank(o, confidence, l.n, "");
    let name = quantile_name(q);
    let want = format!("{} {}", o.cmp.symbol(), threshold_label(o));
    let point = l.point(q);
    r.measured = point.is_finite().then_some(point);
    r.measured_text = latency_text(point, &l);
    let fallback = if basis == LatencyBasis::Service && w.data.service.is_none() {
        " (service time not recorded by a closed-loop load: corrected latency used)"
    } else {
        ""
    };
    if q == 1.0 {
        let holds = o.cmp.holds(point, o.threshold);
        r.verdict = if holds { Verdict::Pass } else { Verdict::Fail };
        r.ci = Some((point, point));
        r.detail = format!(
            "max {} of {} requests {}{want}: the max is a fact of the sample{fallback}",
            r.measured_text,
            format::count(l.n),
            if holds { "" } else { "not " },
        );
        return r;
    }
    let (lo, hi) = quantile_ranks(q, l.n, confidence);
    let lo_v = l.at_rank(lo);
    let hi_v = l.at_rank(hi);
    let (lo_f, hi_f) = (lo_v.unwrap_or(0.0), hi_v.unwrap_or(f64::INFINITY));
    r.ci = Some((lo_f, hi_f));
    let t = o.threshold;
    let range = format!(
        "{}–{} ms",
        if lo_v.is_some() {
            format::millis_number(lo_f)
        } else {
            "0".to_string()
        },
        format::millis_number(hi_f)
    );
    let seen = format!(
        "{name} {} of {} requests ({} CI {range})",
        r.measured_text,
        format::count(l.n),
        format::confidence(confidence),
    );
    let (pass, fail) = match o.cmp {
        Cmp::Lt | Cmp::Le => (
            hi_v.is_some_and(|v| o.cmp.holds(v, t)),
            lo_v.is_some_and(|v| !o.cmp.holds(v, t)),
        ),
        Cmp::Gt | Cmp::Ge => (
            lo_v.is_some_and(|v| o.cmp.holds(v, t)),
            hi_v.is_some_and(|v| !o.cmp.holds(v, t)),
        ),
    };
    if pass {
        r.verdict = Verdict::Pass;
        r.detail = format!("{seen} {want}{fallback}");
    } else if fail {
        r.verdict = Verdict::Fail;
        r.detail = format!("{seen}: not {want}{fallback}");
    } else {
        // A side the sample cannot bound: as many requests as bounding it takes.
        let above = hi_v.is_none().then(|| needed_for_quantile(q, confidence));
        let below = lo_v
            .is_none()
            .then(|| needed_for_quantile_lower(q, confidence));
        r.needed = above.max(below);
        let side = match (above, below) {
            (Some(_), Some(_)) => "on either side",
            (Some(_), None) => "from above",
            _ => "from below",
        };
        let why = match r.needed {
            Some(k) => format!(
                "too few requests to bound {name} {side}: {}",
                needed_text(Some(k), l.n)
            ),
            None => "more requests would narrow it".to_string(),
        };
        r.detail = format!(
            "{name} {}: the {} interval {range} straddles {}: {why}{fallback}",
            r.measured_text,
            format::confidence(confidence),
            threshold_label(o),
        );
    }
    r
}

// === throughput ===

/// Requests per second (or the share of the rate asked) of a window; `Err` says why
/// there is none.
fn throughput(w: &Window<'_>, relative: bool) -> Result<f64, String> {
    let secs = w.duration.as_secs_f64();
    if secs <= 0.0 {
        return Err("the window has no duration: no rate".into());
    }
    let rps = w.data.counts.requests() as f64 / secs;
    if !relative {
        return Ok(rps);
    }
    match w.asked_rps {
        Some(a) if a.is_finite() && a > 0.0 => Ok(rps / a),
        _ => Err(
            "throughput relative to the rate asked needs an open-loop load (no rate was asked): write an absolute rate such as 150/s"
                .into(),
        ),
    }
}

fn evaluate_throughput(
    o: &Objective,
    w: &Window<'_>,
    relative: bool,
    confidence: f64,
) -> SloResult {
    let n = w.data.counts.requests();
    let mut r = blank(o, confidence, n, "");
    let v = match throughput(w, relative) {
        Ok(v) => v,
        Err(why) => {
            r.detail = why;
            return r;
        }
    };
    r.measured = Some(v);
    r.measured_text = throughput_text(v, w, relative);
    let holds = o.cmp.holds(v, o.threshold);
    r.verdict = if holds { Verdict::Pass } else { Verdict::Fail };
    r.detail = format!(
        "{} ({} requests in {}) {}{} {}",
        r.measured_text,
        format::count(n),
        format::secs(w.duration.as_secs_f64()),
        if holds { "" } else { "not " },
        o.cmp.symbol(),
        threshold_label(o)
    );
    r
}

fn throughput_text(v: f64, w: &Window<'_>, relative: bool) -> String {
    match (relative, w.asked_rps) {
        (true, Some(a)) => format!("{:.1}% of {}/s", v * 100.0, format::number(a)),
        _ => format::per_sec(v),
    }
}

// === entry points ===

pub(super) fn evaluate(o: &Objective, w: &Window<'_>, confidence: f64) -> SloResult {
    let n = w.data.counts.requests();
    if let Some(why) = unusable(o) {
        return blank(o, confidence, n, why);
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return blank(
            o,
            confidence,
            n,
            format!("confidence {confidence} is not between 0 and 1: nothing to judge"),
        );
    }
    if let Metric::RecoveryTime { .. } = o.metric {
        return blank(
            o,
            confidence,
            n,
            "recovery_time is judged over the intervals after an event, not on one window",
        );
    }
    if let Metric::Prometheus(_) = o.metric {
        return blank(
            o,
            confidence,
            n,
            "a Prometheus objective is judged on the values Prometheus gives, not on the load's window",
        );
    }
    if n == 0 {
        let mut r = blank(
            o,
            confidence,
            0,
            "no requests in the window: nothing to judge",
        );
        r.measured_text = "no requests".into();
        return r;
    }
    match &o.metric {
        Metric::Latency { quantile, basis } => {
            evaluate_latency(o, w, *quantile, *basis, confidence)
        }
        Metric::Throughput { relative } => evaluate_throughput(o, w, *relative, confidence),
        m => match rate_counts(m, &w.data.counts) {
            Some((s, n)) => evaluate_rate(o, s, n, confidence),
            None => blank(o, confidence, n, "not a rate"),
        },
    }
}

pub(super) fn point_value(o: &Objective, w: &Window<'_>) -> Option<f64> {
    if w.data.counts.requests() == 0 {
        return None;
    }
    match &o.metric {
        Metric::Latency { quantile, basis } => {
            let q = *quantile;
            (q > 0.0 && q <= 1.0).then(|| Latencies::of(w.data, *basis).point(q))
        }
        Metric::Throughput { relative } => throughput(w, *relative).ok(),
        Metric::RecoveryTime { .. } | Metric::Prometheus(_) => None,
        m => rate_counts(m, &w.data.counts).map(|(s, n)| s as f64 / n as f64),
    }
}

/// A point value as people read it, in the objective's unit.
fn value_text(o: &Objective, v: f64, w: Option<&Window<'_>>) -> String {
    match &o.metric {
        Metric::Latency { .. } if v.is_infinite() => "no answer".to_string(),
        Metric::Latency { .. } => format::millis(v),
        Metric::Throughput { relative } => match w {
            Some(w) => throughput_text(v, w, *relative),
            None if *relative => format!("{:.1}% of asked", v * 100.0),
            None => format::per_sec(v),
        },
        Metric::RecoveryTime { .. } => format::secs(v),
        Metric::Prometheus(_) => format::plain(v),
        _ => format::percent(v),
    }
}

pub(super) fn evaluate_points(o: &Objective, values: &[Option<f64>], confidence: f64) -> SloResult {
    let Metric::Prometheus(q) = &o.metric else {
        return blank(
            o,
            confidence,
            0,
            "not a Prometheus objective: judge it with evaluate",
        );
    };
    // The judgement is the interval one (every point, but allowBad); only the words
    // differ: points have values, not requests, and no interval.
    let mut r = evaluate_intervals(o, values, 0, confidence);
    let judged = values.iter().filter(|v| v.is_some()).count();
    let missing = values.len() - judged;
    let allow_bad = match o.over {
        Over::Interval { allow_bad } => allow_bad,
        Over::Phase => 0,
    };
    if judged == 0 {
        r.measured_text = "no value".into();
        r.detail = format!(
            "Prometheus gave no value for {} at any of the phase's {} points: nothing to judge",
            q.query,
            values.len()
        );
        return r;
    }
    let bad = values
        .iter()
        .flatten()
        .filter(|v| !o.cmp.holds(**v, o.threshold))
        .count();
    let want = format!("{} {}", o.cmp.symbol(), threshold_label(o));
    r.detail = format!(
        "{bad} of {judged} points (1 s apart) missed {want} ({allow_bad} allowed); worst {}; no confidence interval: a PromQL value is read, not sampled",
        r.measured_text
    );
    if missing > 0 {
        r.detail.push_str(&format!(
            "; {missing} point(s) without a value (series absent or NaN) skipped"
        ));
    }
    r
}

pub(super) fn evaluate_intervals(
    o: &Objective,
    values: &[Option<f64>],
    requests: u64,
    confidence: f64,
) -> SloResult {
    if let Some(why) = unusable(o) {
        return blank(o, confidence, requests, why);
    }
    if let Metric::RecoveryTime { .. } = o.metric {
        return blank(
            o,
            confidence,
            requests,
            "recovery_time is judged over the intervals after an event, not interval by interval",
        );
    }
    let allow_bad = match o.over {
        Over::Interval { allow_bad } => allow_bad,
        Over::Phase => 0,
    };
    let mut judged = 0u64;
    let mut bad = 0u64;
    // (value, index) of the interval furthest on the wrong side.
    let mut worst: Option<(f64, usize)> = None;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = *v else { continue };
        judged += 1;
        if !o.cmp.holds(v, o.threshold) {
            bad += 1;
        }
        let worse = |a: f64, b: f64| match o.cmp {
            Cmp::Lt | Cmp::Le => a > b,
            Cmp::Gt | Cmp::Ge => a < b,
        };
        if worst.is_none_or(|(wv, _)| worse(v, wv)) {
            worst = Some((v, i));
        }
    }
    let mut r = blank(o, confidence, requests, "");
    let Some((wv, wi)) = worst else {
        r.measured_text = "no requests".into();
        r.detail = "no interval had requests (or a value): nothing to judge".into();
        return r;
    };
    r.measured = wv.is_finite().then_some(wv);
    r.measured_text = value_text(o, wv, None);
    let want = format!("{} {}", o.cmp.symbol(), threshold_label(o));
    r.verdict = if bad > u64::from(allow_bad) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    r.detail = format!(
        "{} of {} intervals missed {want} ({} allowed); worst {} in interval {}",
        bad,
        judged,
        allow_bad,
        r.measured_text,
        wi + 1
    );
    let skipped = values.len() as u64 - judged;
    if skipped > 0 {
        r.detail
            .push_str(&format!("; {skipped} without requests skipped"));
    }
    r
}

pub(super) fn recovery_time(
    o: &Objective,
    target: &Objective,
    series: &[Option<f64>],
    interval: Duration,
    confidence: f64,
) -> SloResult {
    let requests = series.len() as u64;
    let Metric::RecoveryTime { consecutive, .. } = o.metric else {
        return blank(
            o,
            confidence,
            requests,
            "not a recovery_time objective: judge it with evaluate",
        );
    };
    if let Some(why) = unusable(o).or_else(|| unusable(target)) {
        return blank(o, confidence, requests, why);
    }
    let step = interval.as_secs_f64();
    let want = format!("{} {}", o.cmp.symbol(), threshold_label(o));
    let holds: Vec<bool> = series
        .iter()
        .map(|v| v.is_some_and(|v| target.cmp.holds(v, target.threshold)))
        .collect();
    let need = consecutive.max(1) as usize;
    let mut run = 0usize;
    let mut start = None;
    for (i, ok) in holds.iter().enumerate() {
        run = if *ok { run + 1 } else { 0 };
        if run == need {
            start = Some(i + 1 - need);
            break;
        }
    }
    let mut r = blank(o, confidence, requests, "");
    let target_text = describe(target);
    match start {
        Some(i) => {
            let t = i as f64 * step;
            let ok = o.cmp.holds(t, o.threshold);
            r.measured = Some(t);
            r.measured_text = format::secs(t);
            r.verdict = if ok { Verdict::Pass } else { Verdict::Fail };
            r.detail = format!(
                "{target_text} held again from {} on ({need} intervals in a row): {}{want}",
                format::secs(t),
                if ok { "" } else { "not " },
            );
        }
        None => {
            // The trailing run may continue after the series: recovery is at least
            // its start (or the series' end).
            let observed = series.len() as f64 * step;
            let lower = (series.len() - run) as f64 * step;
            r.measured_text = format!("not recovered within {}", format::secs(observed));
            let decided = match o.cmp {
                Cmp::Lt | Cmp::Le => (!o.cmp.holds(lower, o.threshold)).then_some(Verdict::Fail),
                Cmp::Gt | Cmp::Ge => o.cmp.holds(lower, o.threshold).then_some(Verdict::Pass),
            };
            match decided {
                Some(v) => {
                    r.verdict = v;
                    r.detail = format!(
                        "{target_text} did not hold for {need} intervals in a row within {}: recovery takes at least {}, {}{want}",
                        format::secs(observed),
                        format::secs(lower),
                        if v == Verdict::Pass { "" } else { "not " },
                    );
                }
                None => {
                    r.detail = format!(
                        "{target_text} did not hold for {need} intervals in a row within {}: too short a series to judge {want}",
                        format::secs(observed),
                    );
                }
            }
        }
    }
    r
}
