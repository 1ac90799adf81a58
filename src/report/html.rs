//! The HTML report: one self-contained page (inline CSS and SVG, no script, no
//! fetches — a Content-Security-Policy of `default-src 'none'` says so to the browser)
//! built from a journal: the verdict in words, a timeline of phases and fault
//! windows, latency / rate / status charts over time, latency percentile plots per
//! phase, the SLO table, retry validations, searches, and every patch applied and
//! reverted. The page is an askama template (`templates/report.html`), so every
//! string from the journal is HTML-escaped.

use askama::Template;

use super::chart::{Chart, DASHES, PALETTE, Scale};
use super::{SloOutcome, ci_text, phase_verdict, slo_outcome};
use crate::scenario::journal::{
    DrillVerdict, Ending, IntervalSummary, Journal, PhaseKind, PhaseRecord,
};
use crate::slo::Verdict;

/// Renders the page. `problems` are what reading the journal found wrong (the page
/// then says it is incomplete, and why).
pub fn render(j: &Journal, problems: &[String]) -> Result<String, askama::Error> {
    Page::new(j, problems).render()
}

#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    j: &'a Journal,
    title: String,
    headline: String,
    detail: String,
    verdict_class: &'static str,
    incomplete: &'a [String],
    facts: Vec<(&'static str, String)>,
    glance: Vec<String>,
    phases: Vec<PhaseRow>,
    charts: Vec<Chart>,
    slos: Vec<SloRow>,
    retries: Vec<RetryRow>,
    changes: Vec<ChangeRow>,
    rollbacks: Vec<RollbackRow>,
    notes: Vec<String>,
}

struct PhaseRow {
    name: String,
    window: String,
    expect: String,
    requests: u64,
    success: String,
    p50: String,
    p99: String,
    max: String,
    verdict: &'static str,
    class: &'static str,
}

struct SloRow {
    phase: String,
    objective: String,
    measured: String,
    ci: String,
    verdict: String,
    class: &'static str,
    detail: String,
}

struct RetryRow {
    phase: String,
    policy: String,
    predicted: String,
    measured: String,
    band: String,
    amplification: String,
    verdict: &'static str,
    class: &'static str,
    detail: String,
}

struct ChangeRow {
    at: String,
    step: String,
    action: String,
    object: String,
    change: String,
    envoy: String,
    patch: String,
}

struct RollbackRow {
    at: String,
    action: String,
    outcome: String,
    ok: bool,
    patch: String,
}

fn secs(v: f64) -> String {
    format!("{v:.1} s")
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1} ms"))
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "unsure",
    }
}

/// How a phase came out, in words. A search's probes are measurements, not
/// expectations: a probe that does not hold is the search's answer, not a break.
fn outcome(p: &PhaseRecord) -> &'static str {
    if p.kind != PhaseKind::SearchProbe {
        return phase_verdict(p);
    }
    match p.verdict {
        Some(Verdict::Pass) => "probe: holds",
        Some(Verdict::Fail) => "probe: does not hold",
        Some(Verdict::Inconclusive) => "probe: cannot tell",
        None => "not judged",
    }
}

/// The phase's class for colour: as expected, not, undecided, not judged.
fn phase_class(p: &PhaseRecord) -> &'static str {
    if p.expect == "ignore" {
        return p
            .retry_check
            .as_ref()
            .map_or("none", |r| verdict_class(r.verdict));
    }
    p.verdict.map_or("none", verdict_class)
}

fn pretty(v: &serde_json::Value) -> String {
    if v.is_null() {
        return String::new();
    }
    serde_json::to_string_pretty(v).unwrap_or_default()
}

impl<'a> Page<'a> {
    fn new(j: &'a Journal, problems: &'a [String]) -> Self {
        let (headline, verdict_class) = match j.verdict {
            DrillVerdict::Held => ("Held".to_string(), "pass"),
            DrillVerdict::Broke => ("Broke".to_string(), "fail"),
            DrillVerdict::Inconclusive => ("Inconclusive".to_string(), "unsure"),
            DrillVerdict::NotJudged => ("Not judged".to_string(), "none"),
        };
        let mut detail = j.verdict_text.clone();
        if detail.is_empty() {
            detail = crate::scenario::ending_text(&j.ending);
        }
        if !matches!(j.ending, Ending::Completed) {
            let end = crate::scenario::ending_text(&j.ending);
            if !detail.contains(&end) {
                detail = format!("{detail} — {end}");
            }
        }
        let mut facts = vec![
            (
                "target",
                format!("{} ({:?})", j.target, j.target_kind).to_lowercase(),
            ),
            ("scenario file", j.source.clone()),
            (
                "ran",
                format!(
                    "{} → {} ({:.0} s)",
                    j.started.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    j.ended.strftime("%H:%M:%S UTC"),
                    j.ended.duration_since(j.started).as_secs_f64()
                ),
            ),
            ("exit code", j.exit_code.to_string()),
            ("confidence", format!("{}%", j.confidence * 100.0)),
        ];
        if let Some(l) = &j.load {
            let rate = l["rate"]
                .as_f64()
                .map_or("closed loop".into(), |r| format!("{r} req/s (open loop)"));
            facts.push((
                "load",
                format!(
                    "{} {} at {rate}, {} connection(s)",
                    l["method"].as_str().unwrap_or("GET"),
                    l["url"].as_str().unwrap_or("?"),
                    l["connections"].as_u64().unwrap_or(0)
                ),
            ));
        }
        if let Some(v) = j.versions.as_object() {
            let text: Vec<String> = v
                .iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect();
            facts.push(("versions", text.join(", ")));
        }
        let mut notes: Vec<String> = j.warnings.clone();
        notes.extend(
            j.retry_chains
                .iter()
                .map(|c| format!("retries multiply along {c}")),
        );
        if let Some(s) = &j.stop_condition {
            notes.push(format!(
                "stop condition {} fired at {}",
                s.condition,
                secs(s.at_s)
            ));
        }
        Self {
            j,
            title: format!("meshdrill: {}", j.scenario),
            headline,
            detail,
            verdict_class,
            incomplete: problems,
            facts,
            glance: at_a_glance(j),
            phases: j.phases.iter().map(phase_row).collect(),
            charts: charts(j),
            slos: slo_rows(j),
            retries: retry_rows(j),
            changes: j
                .changes
                .iter()
                .map(|c| ChangeRow {
                    at: secs(c.at_s),
                    step: c.step.map_or("–".into(), |s| (s + 1).to_string()),
                    action: c.action.clone(),
                    object: c.object_path(),
                    change: c.change.clone(),
                    envoy: match (c.envoy_version, c.confirmed_ms) {
                        (Some(v), Some(ms)) => format!("route version {v}, confirmed in {ms} ms"),
                        (Some(v), None) => format!("route version {v}"),
                        _ => String::new(),
                    },
                    patch: pretty(&c.patch),
                })
                .collect(),
            rollbacks: j
                .rollbacks
                .iter()
                .map(|r| RollbackRow {
                    at: secs(r.at_s),
                    action: r.action.clone(),
                    outcome: r.outcome.clone(),
                    ok: r.ok,
                    patch: pretty(&r.patch),
                })
                .collect(),
            notes,
        }
    }
}

/// One sentence per judged phase: success and p99 against the first phase's (the
/// steady state the others are compared with), and how it came out.
fn at_a_glance(j: &Journal) -> Vec<String> {
    let judged: Vec<&PhaseRecord> = j
        .phases
        .iter()
        .filter(|p| !p.slos.is_empty() || p.retry_check.is_some())
        .filter(|p| p.kind != PhaseKind::SearchProbe)
        .collect();
    let base = judged.first().copied();
    let searches = j
        .searches
        .iter()
        .map(|s| format!("search over {}: {}", s.over, s.answer));
    judged
        .iter()
        .map(|p| {
            let mut s = format!("{}: ", p.name);
            match p.summary.success_percent() {
                Some(v) => s.push_str(&format!(
                    "{v:.2}% of {} requests succeeded",
                    p.summary.requests
                )),
                None => s.push_str("no requests"),
            }
            if let Some(p99) = p.summary.latency_ms.p99 {
                s.push_str(&format!(", p99 {p99:.1} ms"));
                if let Some(b) = base.filter(|b| !std::ptr::eq(*b, *p))
                    && let Some(b99) = b.summary.latency_ms.p99
                {
                    s.push_str(&format!(" (was {b99:.1} ms in {})", b.name));
                }
            }
            s.push_str(&format!(" — {}", phase_verdict(p)));
            s
        })
        .chain(searches)
        .collect()
}

fn phase_row(p: &PhaseRecord) -> PhaseRow {
    let s = &p.summary;
    PhaseRow {
        name: p.name.clone(),
        window: format!("{:.1}–{:.1} s", p.start_s, p.end_s),
        expect: p.expect.clone(),
        requests: s.requests,
        success: s
            .success_percent()
            .map_or("–".into(), |v| format!("{v:.2}%")),
        p50: ms(s.latency_ms.p50),
        p99: ms(s.latency_ms.p99),
        max: ms(s.latency_ms.max),
        verdict: outcome(p),
        class: phase_class(p),
    }
}

fn slo_rows(j: &Journal) -> Vec<SloRow> {
    let mut rows = Vec::new();
    for p in &j.phases {
        // A flood's own objectives must hold, whatever the phase expects.
        let flood = p
            .flood
            .iter()
            .flat_map(|f| f.slos.iter().map(|r| (r, "hold")));
        for (r, expect) in p.slos.iter().map(|r| (r, p.expect.as_str())).chain(flood) {
            let (verdict, class) = match slo_outcome(r, expect) {
                SloOutcome::NotJudged => ("not judged".to_string(), "none"),
                SloOutcome::Met => ("pass".into(), "pass"),
                SloOutcome::BreachedAsExpected => ("breached, as expected".into(), "pass"),
                SloOutcome::DidNotBreach => ("DID NOT BREACH".into(), "fail"),
                SloOutcome::Violated => ("FAIL".into(), "fail"),
                SloOutcome::Inconclusive => (
                    match r.needed {
                        Some(n) => format!("inconclusive (about {n} requests would decide)"),
                        None => "inconclusive".into(),
                    },
                    "unsure",
                ),
            };
            rows.push(SloRow {
                phase: p.name.clone(),
                objective: r.objective.clone(),
                measured: r.measured_text.clone(),
                ci: ci_text(r).unwrap_or_else(|| "–".into()),
                verdict,
                class,
                detail: r.detail.clone(),
            });
        }
    }
    for r in &j.recovery {
        rows.push(SloRow {
            phase: "recovery".into(),
            objective: r.objective.clone(),
            measured: r.measured_text.clone(),
            ci: "–".into(),
            verdict: match r.verdict {
                Verdict::Pass => "pass".into(),
                Verdict::Fail => "FAIL".into(),
                Verdict::Inconclusive => "inconclusive".into(),
            },
            class: verdict_class(r.verdict),
            detail: r.detail.clone(),
        });
    }
    rows
}

fn retry_rows(j: &Journal) -> Vec<RetryRow> {
    j.phases
        .iter()
        .filter_map(|p| p.retry_check.as_ref().map(|r| (p, r)))
        .map(|(p, r)| RetryRow {
            phase: p.name.clone(),
            policy: format!(
                "{} — upstream failing {:.1}% of attempts{}",
                r.policy,
                r.failure_rate * 100.0,
                if r.retried { "" } else { " (not retried)" }
            ),
            predicted: format!("{:.2}%", r.predicted.success * 100.0),
            measured: r
                .measured_success
                .map_or("–".into(), |m| format!("{:.2}%", m * 100.0)),
            band: format!(
                "{:.2}%–{:.2}%",
                r.success_band.0 * 100.0,
                r.success_band.1 * 100.0
            ),
            amplification: match (r.measured_amplification, r.amplification_band) {
                (Some(m), Some((lo, hi))) => format!(
                    "predicted {:.3}, measured {m:.3} (3σ {lo:.3}–{hi:.3})",
                    r.predicted.amplification
                ),
                _ => format!("predicted {:.3}", r.predicted.amplification),
            },
            verdict: match r.verdict {
                Verdict::Pass => "as predicted",
                Verdict::Fail => "NOT as predicted",
                Verdict::Inconclusive => "inconclusive",
            },
            class: verdict_class(r.verdict),
            detail: r.detail.clone(),
        })
        .collect()
}

/// A stretch of time something was changed on one object.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    from: f64,
    to: f64,
    object: String,
    label: String,
    /// A fault (shaded on every time chart), not a retry policy or timeout.
    fault: bool,
}

/// Change windows per object: a change opens (or replaces) its object's window; a
/// `clear`, a `restart` or a rollback of the object closes it; the run's end closes
/// what is left.
fn windows(j: &Journal, end: f64) -> Vec<Window> {
    let mut open: Vec<Window> = Vec::new();
    let mut done = Vec::new();
    // (when, object, the window it opens: label and whether it is a fault)
    type Event = (f64, String, Option<(String, bool)>);
    let mut events: Vec<Event> = Vec::new();
    for c in &j.changes {
        let object = c.object_path();
        let opens = match c.action.as_str() {
            "clear" | "restart" => None,
            a => Some((format!("{a}: {}", c.change), matches!(a, "fault" | "kill"))),
        };
        events.push((c.at_s, object, opens));
    }
    for r in &j.rollbacks {
        // `clear default/go-demo-8`, `restart go-demo-8 replica 0`.
        if let Some(obj) = r.action.split_whitespace().nth(1) {
            events.push((r.at_s, obj.to_string(), None));
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (at, object, opens) in events {
        if let Some(i) = open
            .iter()
            .position(|w| w.object == object || w.object.ends_with(&format!("/{object}")))
        {
            let mut w = open.remove(i);
            w.to = at;
            done.push(w);
        }
        if let Some((label, fault)) = opens {
            open.push(Window {
                from: at,
                to: end,
                object,
                label,
                fault,
            });
        }
    }
    done.extend(open);
    // A flood is the fault of a DoS drill: its own lane, shaded like a fault.
    for p in &j.phases {
        if let Some(f) = &p.flood {
            done.push(Window {
                from: p.start_s,
                to: p.end_s,
                object: "flood".into(),
                label: format!("flood: {:.0} req/s to {}", f.summary.rps, f.url),
                fault: true,
            });
        }
    }
    done.sort_by(|a, b| a.from.total_cmp(&b.from));
    done
}

/// The time axis: from 0 to the last thing recorded.
fn run_end(j: &Journal) -> f64 {
    let series = j.series.last().map_or(0.0, |s| s.t + 1.0);
    let phases = j.phases.iter().map(|p| p.end_s).fold(0.0, f64::max);
    let changes = j.changes.iter().map(|c| c.at_s).fold(0.0, f64::max);
    let rollbacks = j.rollbacks.iter().map(|r| r.at_s).fold(0.0, f64::max);
    [series, phases, changes, rollbacks, 1.0]
        .into_iter()
        .fold(0.0, f64::max)
}

fn time_axis(c: &mut Chart, end: f64) -> Scale {
    let xs = c.x_scale(0.0, end, false);
    let ticks = xs.ticks(10);
    c.set_x_ticks(&xs, &ticks, |v| format!("{} s", super::chart::number(v)));
    c.x_label = "time since the drill started".into();
    xs
}

fn shade_faults(c: &mut Chart, xs: &Scale, windows: &[Window]) {
    for w in windows.iter().filter(|w| w.fault) {
        c.band(xs, w.from, w.to, &format!("{} on {}", w.label, w.object));
    }
}

fn charts(j: &Journal) -> Vec<Chart> {
    let end = run_end(j);
    let windows = windows(j, end);
    let mut out = vec![timeline(j, end, &windows)];
    if !j.series.is_empty() {
        out.push(latency_chart(&j.series, end, &windows));
        out.push(rate_chart(j, end, &windows));
        out.push(status_chart(&j.series, end, &windows));
    }
    if j.phases
        .iter()
        .any(|p| p.summary.latency_distribution.len() >= 2)
    {
        out.push(distribution_chart(&j.phases));
    }
    out
}

const LANE: f64 = 30.0;

fn timeline(j: &Journal, end: f64, windows: &[Window]) -> Chart {
    // One lane for phases, then one per changed object.
    let mut objects: Vec<&str> = Vec::new();
    for w in windows {
        if !objects.contains(&w.object.as_str()) {
            objects.push(&w.object);
        }
    }
    let lanes = 1 + objects.len();
    let height = 12.0 + lanes as f64 * (LANE + 6.0) + 40.0;
    let mut c = Chart::new(
        "timeline",
        "Timeline",
        "The drill's phases (coloured by verdict) and, below, what was changed on each object and for how long; faults are hatched.",
        height,
    );
    let xs = time_axis(&mut c, end);
    let lane_y = |i: usize| 12.0 + i as f64 * (LANE + 6.0);
    for p in &j.phases {
        let x = xs.px(p.start_s);
        let class = phase_class(p);
        c.blocks.push(super::chart::Block {
            x,
            y: lane_y(0),
            w: (xs.px(p.end_s) - x).max(2.0),
            h: LANE,
            colour: match class {
                "pass" => PALETTE[5],
                "fail" => PALETTE[1],
                "unsure" => PALETTE[6],
                _ => "#BBBBBB",
            },
            label: p.name.clone(),
            title: format!(
                "{} ({:.1}–{:.1} s): {}",
                p.name,
                p.start_s,
                p.end_s,
                outcome(p)
            ),
            hatched: false,
        });
        c.points += 1;
    }
    for w in windows {
        let lane = 1 + objects.iter().position(|o| *o == w.object).unwrap_or(0);
        let x = xs.px(w.from);
        c.blocks.push(super::chart::Block {
            x,
            y: lane_y(lane),
            w: (xs.px(w.to) - x).max(2.0),
            h: LANE,
            colour: if w.fault { PALETTE[2] } else { PALETTE[3] },
            label: w.label.clone(),
            title: format!(
                "{} on {} from {:.1} s to {:.1} s",
                w.label, w.object, w.from, w.to
            ),
            hatched: w.fault,
        });
        c.points += 1;
    }
    c.y_ticks = std::iter::once("phases")
        .chain(objects.iter().copied())
        .enumerate()
        .map(|(i, name)| super::chart::Tick {
            pos: lane_y(i) + LANE / 2.0,
            label: name.rsplit('/').next().unwrap_or(name).to_string(),
        })
        .collect();
    c
}

fn mid(s: &IntervalSummary) -> f64 {
    s.t + 0.5
}

fn latency_chart(series: &[IntervalSummary], end: f64, windows: &[Window]) -> Chart {
    let mut c = Chart::new(
        "latency",
        "Latency over time",
        "Per second: p50, p99 and max from each request's intended start (timeouts and errors included at the time they took), and p50/p99 service time from the actual send (dashed). Log scale.",
        300.0,
    );
    let xs = time_axis(&mut c, end);
    let values = series
        .iter()
        .flat_map(|s| {
            [
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.service_p50_ms,
                s.service_p99_ms,
            ]
        })
        .flatten();
    let ys = c.latency_axis(values);
    shade_faults(&mut c, &xs, windows);
    type Pick = fn(&IntervalSummary) -> Option<f64>;
    let lines: [(&str, Pick, &'static str, &'static str, f64); 5] = [
        ("max", |s| s.max_ms, "#777777", "2 3", 1.0),
        ("p99", |s| s.p99_ms, PALETTE[1], "", 2.0),
        ("p50", |s| s.p50_ms, PALETTE[0], "", 2.0),
        (
            "p99 service time",
            |s| s.service_p99_ms,
            PALETTE[1],
            "6 3",
            1.2,
        ),
        (
            "p50 service time",
            |s| s.service_p50_ms,
            PALETTE[0],
            "6 3",
            1.2,
        ),
    ];
    for (label, pick, colour, dash, width) in lines {
        if series.iter().any(|s| pick(s).is_some()) {
            c.line(
                (&xs, &ys),
                series.iter().map(|s| (mid(s), pick(s))),
                (colour, dash, width),
                label,
            );
        }
    }
    c
}

fn rate_chart(j: &Journal, end: f64, windows: &[Window]) -> Chart {
    let series = &j.series;
    let floods: Vec<&[IntervalSummary]> = j
        .phases
        .iter()
        .filter_map(|p| p.flood.as_ref().map(|f| f.series.as_slice()))
        .filter(|s| !s.is_empty())
        .collect();
    let mut c = Chart::new(
        "rate",
        "Request rate",
        if floods.is_empty() {
            "Requests completed per second, and the rate the load was asked for (dashed)."
        } else {
            "Requests completed per second, and the rate asked for (dashed): the drill's load, and the flood's."
        },
        220.0,
    );
    let xs = time_axis(&mut c, end);
    let hi = series
        .iter()
        .chain(floods.iter().flat_map(|f| f.iter()))
        .flat_map(|s| [Some(s.rps), s.target_rps])
        .flatten()
        .fold(1.0f64, f64::max);
    let ys = c.count_axis(hi, "requests / s");
    shade_faults(&mut c, &xs, windows);
    let mut rates = vec![(series.as_slice(), "", PALETTE[0])];
    rates.extend(floods.iter().map(|f| (*f, "flood ", PALETTE[2])));
    for (i, (s, who, colour)) in rates.into_iter().enumerate() {
        // One legend entry per kind of line.
        let label = |what: &str| {
            if i <= 1 {
                format!("{who}{what}")
            } else {
                String::new()
            }
        };
        if s.iter().any(|s| s.target_rps.is_some()) {
            c.line(
                (&xs, &ys),
                s.iter().map(|s| (mid(s), s.target_rps)),
                (PALETTE[7], "6 3", 1.2),
                &label("asked"),
            );
        }
        c.line(
            (&xs, &ys),
            s.iter().map(|s| (mid(s), Some(s.rps))),
            (colour, "", 2.0),
            &label("completed"),
        );
    }
    c
}

fn status_chart(series: &[IntervalSummary], end: f64, windows: &[Window]) -> Chart {
    let mut c = Chart::new(
        "status",
        "Responses per second by status class",
        "Stacked: 2xx/3xx answers, 4xx, 5xx, and requests with no HTTP answer (timeouts, refused or reset connections).",
        240.0,
    );
    let xs = time_axis(&mut c, end);
    let hi = series
        .iter()
        .map(|s| (s.ok + s.client_errors + s.server_errors + s.failed) as f64)
        .fold(1.0f64, f64::max);
    let ys = c.count_axis(hi, "responses / s");
    shade_faults(&mut c, &xs, windows);
    type Pick = fn(&IntervalSummary) -> u64;
    let classes: [(&str, Pick, &'static str); 4] = [
        ("2xx/3xx", |s| s.ok, PALETTE[0]),
        ("4xx", |s| s.client_errors, PALETTE[2]),
        ("5xx", |s| s.server_errors, PALETTE[1]),
        ("no answer", |s| s.failed, "#444444"),
    ];
    let mut base: Vec<f64> = vec![0.0; series.len()];
    for (label, pick, colour) in classes {
        if series.iter().all(|s| pick(s) == 0) {
            continue;
        }
        // Steps: each second is flat from t to t + 1.
        let mut pts = Vec::with_capacity(series.len() * 2);
        for (i, s) in series.iter().enumerate() {
            let lo = base[i];
            let hi = lo + pick(s) as f64;
            pts.push((s.t, lo, hi));
            pts.push((s.t + 1.0, lo, hi));
            base[i] = hi;
        }
        c.area((&xs, &ys), &pts, colour, label);
    }
    c
}

fn distribution_chart(phases: &[PhaseRecord]) -> Chart {
    let mut c = Chart::new(
        "distribution",
        "Latency distribution per phase",
        "Latency at each percentile (from the intended start), one line per phase, so before, during and after compare at a glance. Both axes log scale; a line stops where the phase had too few requests to resolve the percentile.",
        320.0,
    );
    // x: 1 / (1 - p), from 50% (2) to 99.99% (10 000).
    let xs = Scale {
        log: true,
        d0: 2.0,
        d1: 10_000.0,
        r0: c.x0,
        r1: c.x1,
    };
    c.set_x_ticks(&xs, &[2.0, 10.0, 100.0, 1000.0, 10_000.0], |x| {
        let p = (1.0 - 1.0 / x) * 100.0;
        format!("{}%", super::chart::number((p * 100.0).round() / 100.0))
    });
    c.x_label = "percentile".into();
    let values = phases
        .iter()
        .flat_map(|p| p.summary.latency_distribution.iter().map(|d| d[1]));
    let ys = c.latency_axis(values);
    for (i, p) in phases
        .iter()
        .filter(|p| p.summary.latency_distribution.len() >= 2)
        .enumerate()
    {
        let pts = p
            .summary
            .latency_distribution
            .iter()
            .map(|d| (1.0 / (1.0 - d[0] / 100.0).max(1e-9), Some(d[1])));
        c.line(
            (&xs, &ys),
            pts,
            (PALETTE[i % PALETTE.len()], DASHES[i % DASHES.len()], 2.0),
            &p.name,
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::journal::{ChangeRecord, RollbackRecord};

    fn change(at: f64, action: &str, change: &str) -> ChangeRecord {
        ChangeRecord {
            at_s: at,
            action: action.into(),
            object: "go-demo-8".into(),
            namespace: Some("default".into()),
            change: change.into(),
            ..ChangeRecord::default()
        }
    }

    #[test]
    fn fault_windows_run_from_a_change_to_the_next_change_or_clear_of_the_object() {
        let j = Journal {
            changes: vec![
                change(3.0, "fault", "abort HTTP 500 on 50%"),
                change(7.0, "fault", "abort HTTP 500 on 100%"),
                change(10.0, "clear", "cleared"),
                change(12.0, "retries", "3 attempts"),
            ],
            rollbacks: vec![RollbackRecord {
                action: "clear default/go-demo-8".into(),
                at_s: 15.0,
                ..RollbackRecord::default()
            }],
            ..Journal::default()
        };
        let w = windows(&j, 20.0);
        let spans: Vec<(f64, f64, bool)> = w.iter().map(|w| (w.from, w.to, w.fault)).collect();
        assert_eq!(
            spans,
            vec![(3.0, 7.0, true), (7.0, 10.0, true), (12.0, 15.0, false)]
        );
        assert_eq!(w[0].label, "fault: abort HTTP 500 on 50%");
        assert_eq!(w[0].object, "default/go-demo-8");
    }

    #[test]
    fn a_fault_never_cleared_lasts_to_the_end_of_the_run() {
        let j = Journal {
            changes: vec![change(3.0, "fault", "delay 2s on 50%")],
            ..Journal::default()
        };
        let w = windows(&j, 9.0);
        assert_eq!((w[0].from, w[0].to), (3.0, 9.0));
    }

    #[test]
    fn every_journal_string_is_escaped() {
        let j = Journal {
            scenario: "<script>alert(1)</script>".into(),
            verdict_text: "a & b".into(),
            ..Journal::default()
        };
        let html = render(&j, &["<b>bad</b>".into()]).expect("renders");
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("Drill: &#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(html.contains("a &#38; b"));
        assert!(html.contains("&#60;b&#62;bad"));
    }

    /// A 10-minute drill at a second per point, 12 phases, 20 changes: the page stays
    /// small enough to attach to a ticket.
    #[test]
    fn a_ten_minute_drill_is_well_under_500_kib() {
        use crate::scenario::journal::Summary;
        let series: Vec<IntervalSummary> = (0..600)
            .map(|t| IntervalSummary {
                t: f64::from(t),
                requests: 1000,
                rps: 1000.0,
                target_rps: Some(1000.0),
                ok: 990,
                server_errors: 7,
                failed: 3,
                p50_ms: Some(12.345 + f64::from(t % 7)),
                p99_ms: Some(123.456 + f64::from(t % 13)),
                max_ms: Some(1234.567),
                service_p50_ms: Some(11.111),
                service_p99_ms: Some(99.999),
                ..IntervalSummary::default()
            })
            .collect();
        let distribution: Vec<[f64; 2]> = (0..49)
            .map(|k| [50.0 + f64::from(k), 10.0 + f64::from(k)])
            .collect();
        let phases = (0..12)
            .map(|i| PhaseRecord {
                name: format!("phase {i}"),
                start_s: f64::from(i) * 50.0,
                end_s: f64::from(i) * 50.0 + 45.0,
                summary: Summary {
                    requests: 45_000,
                    latency_distribution: distribution.clone(),
                    ..Summary::default()
                },
                ..PhaseRecord::default()
            })
            .collect();
        let j = Journal {
            series,
            phases,
            changes: (0..20)
                .map(|i| change(f64::from(i) * 30.0, "fault", "abort HTTP 503 on 30%"))
                .collect(),
            ..Journal::default()
        };
        let html = render(&j, &[]).expect("renders");
        assert!(html.len() < 500 * 1024, "{} bytes", html.len());
        assert!(
            html.len() > 100 * 1024,
            "every point is drawn: {} bytes",
            html.len()
        );
    }

    #[test]
    fn a_flood_is_a_fault_window_of_its_own_and_probes_do_not_break() {
        use crate::scenario::journal::FloodRecord;
        let flood = PhaseRecord {
            name: "flood".into(),
            start_s: 5.0,
            end_s: 10.0,
            flood: Some(FloodRecord {
                url: "http://127.0.0.1:1/limiter".into(),
                ..FloodRecord::default()
            }),
            ..PhaseRecord::default()
        };
        let probe = PhaseRecord {
            name: "search abort % = 50".into(),
            kind: PhaseKind::SearchProbe,
            expect: "hold".into(),
            verdict: Some(Verdict::Fail),
            ..PhaseRecord::default()
        };
        let j = Journal {
            phases: vec![flood, probe.clone()],
            ..Journal::default()
        };
        let w = windows(&j, 20.0);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].from, w[0].to, w[0].fault), (5.0, 10.0, true));
        assert!(
            w[0].label.contains("http://127.0.0.1:1/limiter"),
            "{}",
            w[0].label
        );
        assert_eq!(outcome(&probe), "probe: does not hold");
        assert_eq!(phase_row(&probe).verdict, "probe: does not hold");
    }
}
