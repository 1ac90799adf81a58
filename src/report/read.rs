//! Reading a journal file back (`meshdrill report JOURNAL`), as much of it as can be
//! read: a journal cut short (a crash, a full disk) or damaged is read up to the damage
//! and closed; a field this version cannot read (a journal from another version) is
//! left out; each of these is a [`Loaded::problems`] line, and the report says it is
//! incomplete. Only a file that is not a meshdrill scenario journal at all is refused.

use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_path_to_error::Segment;

use crate::scenario::journal::{Ending, FORMAT, Journal};

/// The largest journal read (a 10-minute drill writes well under 1 MiB).
pub const MAX_JOURNAL: usize = 256 << 20;

/// Fields left out before giving up on a journal.
const MAX_LEFT_OUT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the journal {}: {cause}", path.display())]
    Io { path: PathBuf, cause: String },
    #[error(
        "{}: {what}; `meshdrill report` reads the journal of a scenario run (`meshdrill run SCENARIO --journal FILE`)",
        path.display()
    )]
    NotAJournal { path: PathBuf, what: String },
}

/// A journal as read, and what was wrong with it.
#[derive(Debug)]
pub struct Loaded {
    pub journal: Journal,
    /// Empty when the journal was read whole.
    pub problems: Vec<String>,
}

/// Reads and parses the journal at `path`.
pub fn read(path: &Path) -> Result<Loaded, ReadError> {
    use crate::istio::manifest::{io_cause, read_at_most};
    let io = |cause: String| ReadError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(|e| io(io_cause(&e)))?;
    let bytes = read_at_most(file, MAX_JOURNAL)
        .map_err(|e| io(io_cause(&e)))?
        .ok_or_else(|| io(format!("larger than {} MiB", MAX_JOURNAL >> 20)))?;
    let text = String::from_utf8_lossy(&bytes);
    parse(&text).map_err(|what| ReadError::NotAJournal {
        path: path.to_path_buf(),
        what,
    })
}

/// Parses a journal's text; `Err` says why it is not a journal at all.
pub fn parse(text: &str) -> Result<Loaded, String> {
    let mut problems = Vec::new();
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = offset(text, e.line(), e.column());
            let closed = close_prefix(&text[..at]).ok_or_else(|| format!("not JSON ({e})"))?;
            let v = serde_json::from_str(&closed).map_err(|_| format!("not JSON ({e})"))?;
            problems.push(if e.is_eof() {
                format!(
                    "the journal stops at line {}, column {} (cut short): what follows is missing",
                    e.line(),
                    e.column()
                )
            } else {
                format!(
                    "the journal is damaged at line {}, column {} ({e}): what follows is left out",
                    e.line(),
                    e.column()
                )
            });
            v
        }
    };
    let Value::Object(map) = &value else {
        return Err("not a journal (a JSON object with phases, changes and a verdict)".into());
    };
    if map.contains_key("experiment") && map.contains_key("run") {
        return Err("a chaostoolkit journal, not a scenario journal".into());
    }
    let known = [
        "format", "phases", "changes", "series", "verdict", "scenario",
    ];
    if !known.iter().any(|k| map.contains_key(*k)) {
        return Err(
            "not a meshdrill journal (it has none of format, scenario, phases, changes, series, verdict)"
                .into(),
        );
    }
    match map.get("format").and_then(Value::as_u64) {
        Some(f) if f == u64::from(FORMAT) => {}
        Some(f) => problems.push(format!(
            "the journal is format {f}; this meshdrill reads format {FORMAT}: what it does not know is left out"
        )),
        None => problems.push(format!(
            "the journal has no format (this meshdrill reads format {FORMAT})"
        )),
    }
    let journal = lenient(value, &mut problems)?;
    if matches!(journal.ending, Ending::Unknown) {
        problems.push("the journal does not say how the drill ended".into());
    }
    Ok(Loaded { journal, problems })
}

/// Deserialises `value`, leaving out (with a problem line each) the fields this
/// version cannot read.
fn lenient(mut value: Value, problems: &mut Vec<String>) -> Result<Journal, String> {
    for _ in 0..MAX_LEFT_OUT {
        match serde_path_to_error::deserialize::<_, Journal>(&value) {
            Ok(j) => return Ok(j),
            Err(e) => {
                let path = e.path().clone();
                let segments: Vec<&Segment> = path.iter().collect();
                if segments.is_empty() || !remove(&mut value, &segments) {
                    return Err(format!("not a journal ({})", e.inner()));
                }
                problems.push(format!("{path}: {} — left out", e.inner()));
            }
        }
    }
    Err(format!(
        "not a journal (more than {MAX_LEFT_OUT} fields this version cannot read)"
    ))
}

/// Removes the value at `path` (an object's field, or an array's element).
fn remove(v: &mut Value, path: &[&Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = v;
    for s in parents {
        cur = match (s, cur) {
            (Segment::Map { key }, Value::Object(m)) => match m.get_mut(key) {
                Some(x) => x,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(a)) => match a.get_mut(*index) {
                Some(x) => x,
                None => return false,
            },
            // An enum's variant names no place of its own in the JSON.
            (Segment::Enum { .. }, x) => x,
            _ => return false,
        };
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Object(m)) => m.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

/// The byte offset of a 1-based line and column (serde_json's error position).
fn offset(text: &str, line: usize, column: usize) -> usize {
    let mut at = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let mut col = column.min(l.len());
            while !l.is_char_boundary(col) {
                col -= 1;
            }
            return at + col;
        }
        at += l.len();
    }
    text.len()
}

/// The longest prefix of a damaged JSON text that closes into a valid document: cut
/// after the last complete element and close the containers still open there.
/// `None` when not even the outermost container opened.
pub fn close_prefix(text: &str) -> Option<String> {
    let mut stack: Vec<u8> = Vec::new();
    let (mut in_str, mut esc) = (false, false);
    // Where to cut, and how many containers are open there (always a prefix of
    // `stack`: a container closed after the cut would have made a later cut).
    let mut cut: Option<(usize, usize)> = None;
    for (i, &c) in text.as_bytes().iter().enumerate() {
        if in_str {
            match c {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                stack.push(if c == b'{' { b'}' } else { b']' });
                // Only the outermost container is kept empty: an element cut
                // right after it opened is left out, not kept as `{}`.
                if stack.len() == 1 {
                    cut = Some((i + 1, 1));
                }
            }
            b'}' | b']' => {
                if stack.pop() != Some(c) {
                    break;
                }
                if stack.is_empty() {
                    return Some(text[..=i].to_string());
                }
                cut = Some((i + 1, stack.len()));
            }
            b',' => cut = Some((i, stack.len())),
            _ => {}
        }
    }
    let (at, depth) = cut?;
    let mut out = text[..at].to_string();
    out.extend(stack[..depth].iter().rev().map(|&c| c as char));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"{
  "format": 1,
  "scenario": "net\"work {failure}",
  "phases": [
    {"name": "before", "startS": 0.0, "endS": 5.0, "summary": {"requests": 490, "statusCodes": {"200": 490}}},
    {"name": "during [x]", "startS": 5.0, "endS": 10.0, "summary": {"requests": 485}}
  ],
  "series": [{"t": 0.0, "requests": 100, "rps": 100.0, "ok": 100}, {"t": 1.0, "requests": 99, "rps": 99.0, "ok": 99}],
  "verdict": "held",
  "verdictText": "held",
  "ending": {"reason": "completed"},
  "exitCode": 0
}"#;

    #[test]
    fn a_whole_journal_reads_without_problems() {
        let l = parse(SAMPLE).expect("a journal");
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.journal.phases.len(), 2);
        assert_eq!(l.journal.phases[0].summary.requests, 490);
    }

    #[test]
    fn a_journal_cut_short_keeps_what_came_before_the_cut() {
        let cut = SAMPLE.find("during [x]").expect("in sample");
        let l = parse(&SAMPLE[..cut + 3]).expect("still a journal");
        assert_eq!(l.journal.phases.len(), 1, "the cut phase is left out");
        assert_eq!(l.journal.phases[0].summary.requests, 490);
        assert!(l.problems[0].contains("cut short"), "{:?}", l.problems);
        assert!(l.problems.iter().any(|p| p.contains("how the drill ended")));
        assert_eq!(l.journal.ending, Ending::Unknown);
    }

    #[test]
    fn a_field_of_another_type_is_left_out_and_named() {
        let text = SAMPLE
            .replace("\"format\": 1", "\"format\": 2")
            .replace("\"requests\": 485", "\"requests\": \"many\"")
            .replace("\"verdict\": \"held\"", "\"verdict\": \"sort of\"");
        let l = parse(&text).expect("still a journal");
        let all = l.problems.join("\n");
        assert!(all.contains("format 2"), "{all}");
        assert!(all.contains("phases[1].summary.requests"), "{all}");
        assert!(all.contains("verdict: unknown variant"), "{all}");
        assert_eq!(l.journal.phases.len(), 2);
        assert_eq!(l.journal.phases[1].summary.requests, 0);
    }

    #[test]
    fn what_is_not_a_scenario_journal_is_refused() {
        assert!(
            parse("[1, 2]")
                .expect_err("refused")
                .contains("not a journal")
        );
        assert!(parse("hello").expect_err("refused").contains("not JSON"));
        assert!(
            parse(r#"{"kind": "Scenario"}"#)
                .expect_err("refused")
                .contains("not a meshdrill journal")
        );
        let ctk =
            r#"{"chaoslib-version": "1.0", "experiment": {}, "run": [], "status": "completed"}"#;
        assert!(parse(ctk).expect_err("refused").contains("chaostoolkit"));
    }

    proptest! {
        /// Cut anywhere after the opening brace, a journal still closes into JSON
        /// whose phases are a prefix of the whole journal's.
        #[test]
        fn any_cut_closes_into_valid_json(at in 1usize..SAMPLE.len()) {
            prop_assume!(SAMPLE.is_char_boundary(at));
            // Before the first comma only `{}` is left: no journal field at all.
            prop_assume!(at > SAMPLE.find(',').unwrap_or(0));
            let closed = close_prefix(&SAMPLE[..at]).expect("opened");
            let v: Value = serde_json::from_str(&closed).expect("valid JSON");
            prop_assert!(v.is_object());
            let l = parse(&SAMPLE[..at]).expect("a journal");
            let whole = parse(SAMPLE).expect("a journal");
            prop_assert!(l.journal.phases.len() <= whole.journal.phases.len());
            for (a, b) in l.journal.phases.iter().zip(&whole.journal.phases) {
                prop_assert!(b.name.starts_with(&a.name));
            }
        }
    }
}
