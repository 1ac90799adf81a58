//! What a terminal gets and a pipe does not: the live view of a drill (`run`, `demo`)
//! and the colours of its final report.
//!
//! The live view is a [`LiveState`] the progress observer keeps from the runner's
//! events, drawn (with indicatif) by the printer thread — never by the drill's own
//! thread, so a terminal that stops reading cannot hold up a rollback. Colour is
//! decided once per output by [`colour_wanted`]: a terminal, unless `NO_COLOR` is set
//! to a non-empty value (no-color.org); `CLICOLOR_FORCE` (non-empty, not `0`) forces it
//! where there is no terminal.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::IsTerminal;
use std::time::Duration;

use anstyle::{Ansi256Color, Style};

use crate::scenario::Event;
use crate::slo::Verdict;

// === colour ===

/// Colour on an output: on a terminal (or with `CLICOLOR_FORCE` non-empty and not
/// `0`), never with `NO_COLOR` non-empty — it wins over `CLICOLOR_FORCE`, as in
/// anstream.
pub fn colour_wanted(
    is_terminal: bool,
    no_color: Option<&OsStr>,
    clicolor_force: Option<&OsStr>,
) -> bool {
    let forced = clicolor_force.is_some_and(|v| !v.is_empty() && v != "0");
    super::log_colour(is_terminal || forced, no_color)
}

/// [`colour_wanted`] for stdout and this process's environment.
pub fn stdout_colour() -> bool {
    colour_wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("CLICOLOR_FORCE").as_deref(),
    )
}

/// How a mark reads: the words stay; colour only adds to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Held, ok, breached as expected: bold blue.
    Good,
    /// Broke, FAIL: bold orange (blue/orange stay apart for colour-blind readers).
    Bad,
    /// Inconclusive, `??`: bold, no colour.
    Unsure,
}

impl Tone {
    pub fn of(v: Verdict) -> Self {
        match v {
            Verdict::Pass => Self::Good,
            Verdict::Fail => Self::Bad,
            Verdict::Inconclusive => Self::Unsure,
        }
    }

    fn style(self) -> Style {
        match self {
            Self::Good => Style::new().bold().fg_color(Some(Ansi256Color(33).into())),
            Self::Bad => Style::new().bold().fg_color(Some(Ansi256Color(208).into())),
            Self::Unsure => Style::new().bold(),
        }
    }
}

/// Paints marks when colour is on; returns them as they are when it is off.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    pub fn tone(self, text: &str, tone: Option<Tone>) -> String {
        match tone {
            Some(t) if self.on && !text.is_empty() => {
                let s = t.style();
                format!("{s}{text}{s:#}")
            }
            _ => text.to_string(),
        }
    }

    /// `text` painted, then padded with spaces to `width` characters (the padding
    /// outside the colour, so columns line up either way).
    pub fn padded(self, text: &str, tone: Option<Tone>, width: usize) -> String {
        let pad = width.saturating_sub(text.chars().count());
        format!("{}{}", self.tone(text, tone), " ".repeat(pad))
    }
}

// === the live view ===

/// What the last second of load looked like.
#[derive(Debug, Clone, PartialEq)]
struct Second {
    rps: f64,
    requests: u64,
    ok: u64,
    p99_ms: Option<f64>,
}

/// What the live view shows, kept from the runner's events. Times are from the start
/// of the command's output (the `[  1.2s]` of the progress lines).
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    /// Planned length of the drill (phases, pauses, floods, searches).
    planned: Duration,
    drill_start: Option<Duration>,
    /// Name, start and length of the phase being measured.
    phase: Option<(String, Duration, Duration)>,
    /// Changes in place: (namespace/object, action) → what was changed.
    changes: BTreeMap<(String, String), String>,
    last: Option<Second>,
    rolling_back: bool,
}

impl LiveState {
    pub fn new(planned: Duration) -> Self {
        Self {
            planned,
            ..Self::default()
        }
    }

    /// Takes in an event seen at `at`; true when the view changed.
    pub fn apply(&mut self, e: &Event<'_>, at: Duration) -> bool {
        match e {
            Event::Started { .. } => self.drill_start = Some(at),
            Event::PhaseStarted { name, duration, .. } => {
                self.phase = Some((name.to_string(), at, *duration));
            }
            Event::PhaseEnded(_) => self.phase = None,
            Event::Changed {
                changed, record, ..
            } => self.changed(
                &changed.namespace,
                &record.object,
                &record.action,
                &record.change,
            ),
            Event::Interval(i) => {
                self.last = Some(Second {
                    rps: i.rps,
                    requests: i.requests,
                    ok: i.ok,
                    p99_ms: i.p99_ms,
                });
            }
            Event::RollbackStarted { .. } => {
                self.rolling_back = true;
                self.phase = None;
            }
            Event::RolledBack { record, .. } => self.rolled_back(&record.action),
            _ => return false,
        }
        true
    }

    /// A change step's change (`clear` removes what the object had).
    fn changed(&mut self, namespace: &str, object: &str, action: &str, change: &str) {
        let object = format!("{namespace}/{object}");
        if action == "clear" {
            self.changes.retain(|(o, _), _| *o != object);
        } else {
            self.changes
                .insert((object, action.to_string()), change.to_string());
        }
    }

    /// A rollback action: `clear default/go-demo-8` (or `clear go-demo-8`) leaves
    /// that object as it was.
    fn rolled_back(&mut self, action: &str) {
        if let Some(name) = action.strip_prefix("clear ") {
            self.changes
                .retain(|(o, _), _| o != name && o.rsplit('/').next() != Some(name));
        }
    }

    /// The view at `now`, one line: the phase and its time left (and the drill's),
    /// the last second of load (rate, share of 2xx/3xx, p99), the changes in place.
    /// One line, because the bar is drawn three columns short of the edge (so that a
    /// `^C` echo fits beside it) and indicatif starts a next line only by wrapping.
    pub fn render(&self, now: Duration) -> String {
        let secs = |d: Duration| format!("{}s", d.as_secs_f64().ceil() as u64);
        let mut head = match (&self.phase, self.rolling_back) {
            (_, true) => "rolling back".to_string(),
            (Some((name, start, len)), false) => format!(
                "{name}: {} left",
                secs(len.saturating_sub(now.saturating_sub(*start)))
            ),
            (None, false) => "between phases".to_string(),
        };
        if let (Some(start), false) = (self.drill_start, self.rolling_back) {
            let left = self.planned.saturating_sub(now.saturating_sub(start));
            head.push_str(&format!(" (drill ~{})", secs(left)));
        }
        let active = if self.changes.is_empty() {
            "no fault active".to_string()
        } else {
            self.changes
                .iter()
                .map(|((object, action), change)| format!("{action} {object}: {change}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let load = match &self.last {
            None => "no load measured yet".to_string(),
            Some(s) => format!(
                "{:.0} req/s, {} ok, p99 {}",
                s.rps,
                if s.requests == 0 {
                    "-".to_string()
                } else {
                    format!("{:.2}%", s.ok as f64 * 100.0 / s.requests as f64)
                },
                s.p99_ms.map_or("-".into(), |v| format!("{v:.1} ms"))
            ),
        };
        // The fault last: a narrow terminal cuts its end, not the numbers.
        format!("{head} · {load} · {active}")
    }
}

/// `s` cut to `width` characters: the view must not wrap (indicatif clears the rows
/// it drew, not the rows a wrapped line took).
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The live view's terminal: `TERM=dumb` (an editor's shell) gets plain lines.
pub fn live_terminal(term: console::Term) -> Option<console::Term> {
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    (term.is_term() && !dumb).then_some(term)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::journal::{IntervalSummary, PhaseKind};

    fn second(requests: u64, ok: u64, p99: Option<f64>) -> IntervalSummary {
        IntervalSummary {
            t: 3.0,
            requests,
            rps: requests as f64,
            target_rps: Some(100.0),
            ok,
            client_errors: 0,
            server_errors: requests - ok,
            failed: 0,
            p50_ms: None,
            p99_ms: p99,
            max_ms: None,
            service_p50_ms: None,
            service_p99_ms: None,
            slos: Default::default(),
        }
    }

    #[test]
    fn the_live_view_shows_the_phase_the_time_left_and_the_last_second() {
        let mut s = LiveState::new(Duration::from_secs(20));
        let at = Duration::from_secs;
        assert!(s.apply(
            &Event::Started {
                scenario: "x",
                target: "mesh".into()
            },
            at(0)
        ));
        assert!(s.apply(
            &Event::PhaseStarted {
                name: "total failure (must breach)",
                kind: PhaseKind::Hold,
                duration: at(5),
            },
            at(2)
        ));
        let i = second(200, 150, Some(12.34));
        assert!(s.apply(&Event::Interval(&i), at(3)));
        let view = s.render(Duration::from_millis(3500));
        assert_eq!(
            view,
            "total failure (must breach): 4s left (drill ~17s) · \
             200 req/s, 75.00% ok, p99 12.3 ms · no fault active"
        );
        // No answers in the last second: no success rate, no p99.
        let none = second(0, 0, None);
        s.apply(&Event::Interval(&none), at(4));
        assert!(s.render(at(4)).contains(" 0 req/s, - ok, p99 -"));
        // A fault, then retries on the same object: both show, where they are; a clear
        // of the object removes both.
        s.changed("default", "go-demo-8", "fault", "abort HTTP 500 on 50%");
        s.changed("default", "repeater", "retries", "3 attempts");
        assert!(
            s.render(at(4)).contains(
                " · fault default/go-demo-8: abort HTTP 500 on 50%; retries default/repeater: 3 attempts"
            ),
            "{}",
            s.render(at(4))
        );
        s.changed("default", "go-demo-8", "clear", "");
        assert!(!s.render(at(4)).contains("go-demo-8"));
        s.rolled_back("clear repeater");
        assert!(s.render(at(4)).ends_with(" · no fault active"));
        s.changed("default", "go-demo-8", "fault", "abort HTTP 500 on 50%");
        s.rolled_back("clear default/go-demo-8");
        assert!(s.render(at(4)).ends_with(" · no fault active"));
        // Rolling back: no phase, no countdown.
        s.apply(
            &Event::RollbackStarted {
                signalled: true,
                hint: String::new(),
            },
            at(5),
        );
        assert!(
            s.render(at(5)).starts_with("rolling back · "),
            "{}",
            s.render(at(5))
        );
        // Events the view does not show change nothing.
        assert!(!s.apply(&Event::Warning("w".into()), at(6)));
    }

    #[test]
    fn long_lines_are_cut_to_the_terminal() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abcd", 4), "abcd");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color_unless_forced() {
        let os = |s| Some(OsStr::new(s));
        assert!(colour_wanted(true, None, None));
        assert!(colour_wanted(true, os(""), None));
        assert!(!colour_wanted(true, os("1"), None));
        assert!(!colour_wanted(false, None, None));
        assert!(colour_wanted(false, None, os("1")));
        assert!(!colour_wanted(false, None, os("0")));
        assert!(!colour_wanted(false, None, os("")));
        // NO_COLOR wins over CLICOLOR_FORCE.
        assert!(!colour_wanted(true, os("1"), os("1")));
    }

    #[test]
    fn paint_adds_sgr_codes_only_when_on_and_keeps_the_words() {
        let on = Paint { on: true };
        let off = Paint { on: false };
        assert_eq!(off.tone("FAIL", Some(Tone::Bad)), "FAIL");
        assert_eq!(off.padded("ok", Some(Tone::Good), 5), "ok   ");
        let p = on.tone("FAIL", Some(Tone::Bad));
        assert!(
            p.starts_with("\x1b[") && p.contains("FAIL") && p.ends_with("\x1b[0m"),
            "{p:?}"
        );
        assert_eq!(on.tone("-", None), "-");
        assert!(
            on.padded("ok", Some(Tone::Good), 5)
                .ends_with("ok\x1b[0m   ")
        );
    }
}
