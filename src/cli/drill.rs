//! How a drill looks in the terminal (`meshdrill run`, `meshdrill demo`): one line per
//! step and phase while it runs, then the SLO table, the retry validations, the
//! searches and the verdict in words — and the exit code the journal says.

use std::io::Write;

use anyhow::anyhow;

use super::term::{LiveState, Paint, Tone, fit};
use super::{CliResult, Exit, Failure};
use crate::report::{ci_text, mark, phase_verdict, slo_cells, slo_mark};
use crate::scenario::journal::{DrillVerdict, Ending, Journal, PhaseRecord};
use crate::scenario::{Event, Observer};
use crate::slo::Verdict;

/// Prints progress as the runner reports it — through a writer thread (see
/// [`with_printer`]), so a terminal or pipe that stops reading never holds up the
/// drill, and above all not its rollback.
pub struct Progress {
    lines: std::sync::mpsc::Sender<Msg>,
    /// Print each second of the load (`--intervals`).
    pub intervals: bool,
    start: std::time::Instant,
    /// The live view's state, when there is one (a terminal).
    live: Option<LiveState>,
}

/// What the drill's thread hands the writer thread.
enum Msg {
    Line(String),
    Live(LiveState),
}

impl Progress {
    fn line(&mut self, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        // The printer is gone only when its output failed: the drill goes on.
        let _ = self.lines.send(Msg::Line(format!("[{t:6.1}s] {text}")));
    }
}

/// How a drill shows its progress.
pub struct View {
    /// Print each second of the load (`--intervals`).
    pub intervals: bool,
    /// Draw the live view on this terminal (lines then go above it).
    pub live: Option<console::Term>,
    /// The drill's planned length, for the live view's countdown.
    pub planned: std::time::Duration,
}

/// How often the live view is redrawn when no event comes (its countdown).
const LIVE_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `f` with a [`Progress`] whose lines a scoped thread writes to `w`, and
/// returns `f`'s result with the first write error (a closed pipe is none). With
/// `view.live`, that thread also draws the live view below the lines, and clears it
/// before returning (on success, error and interrupt alike).
pub fn with_printer<T>(
    w: &mut (dyn Write + Send),
    view: View,
    f: impl FnOnce(&mut Progress) -> T,
) -> (T, Option<std::io::Error>) {
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let start = std::time::Instant::now();
    let live = view.live.map(live_bar);
    let state = live.is_some().then(|| LiveState::new(view.planned));
    std::thread::scope(|scope| {
        let printer = scope.spawn(move || {
            let mut shown: Option<LiveState> = None;
            let failed = loop {
                let msg = match &live {
                    None => match rx.recv() {
                        Ok(m) => Some(m),
                        Err(_) => break None,
                    },
                    Some(_) => match rx.recv_timeout(LIVE_TICK) {
                        Ok(m) => Some(m),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
                    },
                };
                match msg {
                    Some(Msg::Line(line)) => {
                        let mut write = || writeln!(w, "{line}").and_then(|()| w.flush());
                        let written = match &live {
                            Some((bar, _)) => bar.suspend(write),
                            None => write(),
                        };
                        if let Err(e) = written {
                            break (e.kind() != std::io::ErrorKind::BrokenPipe).then_some(e);
                        }
                    }
                    Some(Msg::Live(s)) => shown = Some(s),
                    None => {}
                }
                if let (Some((bar, term)), Some(s)) = (&live, &shown) {
                    // The spinner and its space, and Narrow's three columns.
                    let width = usize::from(term.size().1).saturating_sub(5).max(8);
                    bar.set_message(fit(&s.render(start.elapsed()), width));
                    bar.tick();
                }
            };
            if let Some((bar, _)) = &live {
                bar.finish_and_clear();
            }
            failed
        });
        let mut p = Progress {
            lines: tx,
            intervals: view.intervals,
            start,
            live: state,
        };
        let out = f(&mut p);
        drop(p);
        (out, printer.join().ok().flatten())
    })
}

/// An indicatif spinner with a one-line message on `term` (three columns narrower
/// than the terminal, see [`super::load::Narrow`]), and the terminal, whose width the
/// message is cut to.
fn live_bar(term: console::Term) -> (indicatif::ProgressBar, console::Term) {
    let target = indicatif::ProgressDrawTarget::term_like_with_hz(
        Box::new(super::load::Narrow(term.clone())),
        10,
    );
    let bar = indicatif::ProgressBar::with_draw_target(None, target);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    (bar, term)
}

/// How a phase came out, for its colour: the retry check's verdict where the phase
/// is not judged (`ignore`), else the phase's (`Pass` for a breach that was expected).
fn phase_outcome(p: &PhaseRecord) -> Option<Verdict> {
    if p.expect == "ignore" {
        p.retry_check.as_ref().map(|r| r.verdict)
    } else {
        p.verdict
    }
}

/// The colour of an objective's mark (`ok`, `breached`, `FAIL`, `??`; `-`: none).
fn mark_tone(m: &str) -> Option<Tone> {
    match m {
        "ok" | "breached" => Some(Tone::Good),
        "FAIL" => Some(Tone::Bad),
        "??" => Some(Tone::Unsure),
        _ => None,
    }
}

impl Observer for Progress {
    fn event(&mut self, e: Event<'_>) {
        if let Some(s) = self.live.as_mut()
            && s.apply(&e, self.start.elapsed())
        {
            let _ = self.lines.send(Msg::Live(s.clone()));
        }
        match e {
            Event::Started { scenario, target } => {
                self.line(&format!("drill {scenario} on {target}"))
            }
            Event::Plan(l) => self.line(&l),
            Event::Planned { step, vs, changed } => {
                let patch = serde_json::to_string(&changed.patch).unwrap_or_default();
                self.line(&format!(
                    "{}. {} → patch of {}/{vs} (dry run: not sent): {patch}",
                    step.index + 1,
                    step.label,
                    changed.namespace
                ));
            }
            Event::LoadStarted { description } => self.line(&format!("load: {description}")),
            Event::PhaseStarted { name, duration, .. } => self.line(&format!(
                "{name}: measuring for {}",
                crate::scenario::runner::human(duration)
            )),
            Event::Changed {
                step,
                changed,
                record,
                ..
            } => {
                let envoy = match changed.envoy {
                    Some((v, d)) => format!(
                        " (Envoy runs route version {v}, confirmed in {} ms)",
                        d.as_millis()
                    ),
                    None => String::new(),
                };
                let line = if record.action == "clear" {
                    format!(
                        "{}. clear {}/{}: routes restored{envoy}",
                        step.index + 1,
                        changed.namespace,
                        record.object
                    )
                } else {
                    format!(
                        "{}. {} {}/{}: {}{envoy}",
                        step.index + 1,
                        record.action,
                        changed.namespace,
                        record.object,
                        record.change
                    )
                };
                self.line(&line);
                for w in &changed.warnings {
                    self.line(&format!("warning: {w}"));
                }
            }
            Event::Workload { step, what } => {
                self.line(&format!("{}. {what}", step.index + 1))
            }
            Event::Holding { .. } => {}
            Event::Interval(i) => {
                if self.intervals {
                    self.line(&format!(
                        "  t={:>4.0}s {:>5} req  ok {:>5}  5xx {:>4}  failed {:>4}  p99 {}",
                        i.t,
                        i.requests,
                        i.ok,
                        i.server_errors,
                        i.failed,
                        i.p99_ms.map_or("-".into(), |v| format!("{v:.1} ms"))
                    ));
                }
            }
            Event::PhaseEnded(p) => {
                let mut text = format!(
                    "{}: {} ({} requests)  {}",
                    p.name,
                    phase_verdict(p),
                    p.summary.requests,
                    slo_cells(&p.slos, &p.expect)
                );
                if let Some(f) = &p.flood {
                    text.push_str(&format!(
                        "; flood {} requests at {:.0}/s {}",
                        f.summary.requests,
                        f.summary.rps,
                        slo_cells(&f.slos, "hold")
                    ));
                }
                self.line(&text);
                if let Some(r) = &p.retry_check {
                    self.line(&format!("  retries: {} {}", mark(r.verdict), r.detail));
                }
            }
            Event::StopFired(s) => self.line(&format!(
                "stop condition {} fired at {:.0}s: the method stops, everything is rolled back",
                s.condition, s.at_s
            )),
            Event::LateLanding { vs, namespace } => self.line(&format!(
                "the patch of {namespace}/{vs} got no answer in time; checking whether it lands after all"
            )),
            Event::RollbackStarted { signalled, hint } => {
                if signalled {
                    self.line(&hint);
                } else {
                    self.line("rolling back everything meshdrill changed");
                }
            }
            Event::RollbackSignal { hint } => self.line(&hint),
            Event::RolledBack { record, .. } => {
                self.line(&format!("rollback: {}: {}", record.action, record.outcome))
            }
            Event::Searched(s) => self.line(&format!("search {}: {}", s.over, s.answer)),
            Event::Warning(w) => self.line(&format!("warning: {w}")),
        }
    }
}

/// The summary after a drill: SLOs per judged phase, checks, verdict.
/// With `paint` on, verdicts and marks are coloured (the words stay the same).
pub fn write_summary(w: &mut impl Write, j: &Journal, paint: Paint) -> std::io::Result<()> {
    let judged: Vec<&PhaseRecord> = j
        .phases
        .iter()
        .filter(|p| !p.slos.is_empty() || p.flood.is_some())
        .collect();
    if !judged.is_empty() {
        writeln!(w)?;
        writeln!(
            w,
            "{:<34} {:>8} {:>10} {:>10} {:>10}  verdict",
            "phase", "requests", "success", "p50 ms", "p99 ms"
        )?;
        for p in &judged {
            let success = p
                .summary
                .success_percent()
                .map_or("-".into(), |v| format!("{v:.2}%"));
            let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
            writeln!(
                w,
                "{:<34} {:>8} {:>10} {:>10} {:>10}  {}",
                truncate(&p.name, 34),
                p.summary.requests,
                success,
                ms(p.summary.latency_ms.p50),
                ms(p.summary.latency_ms.p99),
                paint.tone(phase_verdict(p), phase_outcome(p).map(Tone::of))
            )?;
        }
        writeln!(w)?;
        writeln!(w, "objectives ({}% confidence):", j.confidence * 100.0)?;
        for p in &judged {
            for r in p
                .slos
                .iter()
                .chain(p.flood.iter().flat_map(|f| f.slos.iter()))
            {
                let ci = ci_text(r).map(|c| format!("  CI {c}")).unwrap_or_default();
                let needed = r
                    .needed
                    .map(|n| format!("  (about {n} requests would decide)"))
                    .unwrap_or_default();
                let m = match slo_mark(r, &p.expect).trim() {
                    "" => "-",
                    m => m,
                };
                writeln!(
                    w,
                    "  {:<28} {:<30} {:>14} {}{ci}{needed}",
                    truncate(&p.name, 28),
                    r.objective,
                    r.measured_text,
                    paint.padded(m, mark_tone(m), 5)
                )?;
            }
        }
    }
    for p in j.phases.iter().filter(|p| p.retry_check.is_some()) {
        if let Some(r) = &p.retry_check {
            writeln!(w)?;
            writeln!(
                w,
                "retry validation during {}: {}",
                p.name,
                paint.tone(mark(r.verdict), Some(Tone::of(r.verdict)))
            )?;
            writeln!(
                w,
                "  policy {}, upstream failing {:.1}% of attempts{}",
                r.policy,
                r.failure_rate * 100.0,
                if r.retried { "" } else { " (not retried)" }
            )?;
            writeln!(
                w,
                "  success: predicted {:.2}%, measured {}, 3σ band {:.2}%–{:.2}%",
                r.predicted.success * 100.0,
                r.measured_success
                    .map_or("-".into(), |m| format!("{:.2}%", m * 100.0)),
                r.success_band.0 * 100.0,
                r.success_band.1 * 100.0
            )?;
            if let (Some(m), Some((lo, hi))) = (r.measured_amplification, r.amplification_band) {
                writeln!(
                    w,
                    "  amplification: predicted {:.3} upstream requests per request, measured {m:.3}, 3σ band {lo:.3}–{hi:.3}",
                    r.predicted.amplification
                )?;
            }
            for line in r.detail.lines() {
                writeln!(w, "  {line}")?;
            }
        }
    }
    if !j.retry_chains.is_empty() {
        writeln!(w)?;
        for c in &j.retry_chains {
            writeln!(w, "warning: retries multiply along {c}")?;
        }
    }
    for r in &j.recovery {
        writeln!(
            w,
            "recovery ({}): {}: {}",
            r.objective,
            r.detail,
            paint.tone(mark(r.verdict), Some(Tone::of(r.verdict)))
        )?;
    }
    for s in &j.searches {
        writeln!(w)?;
        writeln!(w, "search over {}:", s.over)?;
        for p in &s.probes {
            writeln!(
                w,
                "  {:>8}{}  {:<12} {}",
                p.value, s.unit, p.verdict, p.detail
            )?;
        }
        writeln!(w, "  answer: {}", s.answer)?;
    }
    writeln!(w)?;
    let exit = j.exit_code;
    let tone = match j.verdict {
        DrillVerdict::Held => Some(Tone::Good),
        DrillVerdict::Broke => Some(Tone::Bad),
        DrillVerdict::Inconclusive => Some(Tone::Unsure),
        DrillVerdict::NotJudged => None,
    };
    let word = paint.tone(crate::report::verdict_word(j.verdict), tone);
    writeln!(w, "verdict: {word}: {} (exit {exit})", j.verdict_text)?;
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The exit of a drill command, from its journal.
pub fn outcome(j: &Journal) -> CliResult {
    match &j.ending {
        Ending::Completed
        | Ending::SteadyStateFailed
        | Ending::StopCondition { .. }
        | Ending::DryRun => Ok(match j.exit_code {
            0 => Exit::Ok,
            1 => Exit::SloViolated,
            4 => Exit::Inconclusive,
            _ => Exit::Target,
        }),
        Ending::Interrupted { signal } => Err(Failure::interrupted(anyhow!(
            "interrupted by {signal}; everything meshdrill changed was rolled back"
        ))),
        Ending::InterruptedBeforeChange { signal } => Err(Failure::interrupted(anyhow!(
            "interrupted by {signal} before anything was changed"
        ))),
        Ending::InputError { message } => Err(Failure::input(anyhow!("{message}"))),
        Ending::Unknown => Err(Failure::input(anyhow!(
            "the journal does not say how the drill ended"
        ))),
        Ending::TargetError { message } => Err(Failure::target(anyhow!("{message}"))),
        Ending::RollbackFailed { message } => Err(Failure::target(anyhow!(
            "{message}; the drill records stay (with their expiry): `meshdrill recover` (or the next `meshdrill mesh up`) removes them"
        ))),
        Ending::RollbackAbandoned { signal } => Err(Failure::target(anyhow!(
            "rollback abandoned by {signal}: the changes stay until their expiry; `meshdrill recover` removes them then (or `meshdrill clear VS` now)"
        ))),
    }
}
