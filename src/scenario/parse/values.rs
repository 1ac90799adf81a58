//! The parser's primitives: typed values at a pointer, with errors that say what was
//! expected and what was found.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{Parser, R};
use crate::istio::manifest::{escape_pointer, json_type};
use crate::istio::types::parse_go_duration;
use crate::istio::{IstioDuration, Percentage};
use crate::load::MAX_SPAN;

/// The pointer of `key` under `p`.
pub(super) fn child(p: &str, key: &str) -> String {
    format!("{p}/{}", escape_pointer(key))
}

/// The pointer of item `i` under `p`.
pub(super) fn item(p: &str, i: usize) -> String {
    format!("{p}/{i}")
}

/// `unknown field "x"; allowed: a, b`, with a suggestion when the key is close to an
/// allowed one (case, `_`/`-`, a typo or two, or a prefix: `percent` → `percentage`).
pub(super) fn unknown_key(key: &str, allowed: &[&str]) -> String {
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let list = allowed.join(", ");
    let k = norm(key);
    let near = |a: &&&str| {
        let a = norm(a);
        a == k
            || (k.len() > 3 && edit_distance(&a, &k) <= if k.len() > 6 { 2 } else { 1 })
            || (k.len() > 3 && a.len() > 3 && (a.starts_with(&k) || k.starts_with(&a)))
    };
    match allowed.iter().find(near) {
        Some(a) => format!("unknown field {key:?}: did you mean {a}? Allowed: {list}"),
        None => format!("unknown field {key:?}; allowed: {list}"),
    }
}

/// Levenshtein distance (short keys only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `allow_bad` → `allowBad`: the scenario key of an [`crate::slo::ObjectiveError`] field.
pub(super) fn camel(field: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in field.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A value as it appears in a message: strings quoted, others as JSON.
pub(super) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A mapping of the document with its pointer.
#[derive(Debug, Clone)]
pub(super) struct Obj<'v> {
    pub p: String,
    pub m: &'v Map<String, Value>,
}

impl<'v> Obj<'v> {
    /// The value of `key`, with its pointer.
    pub(super) fn get(&self, key: &str) -> Option<(String, &'v Value)> {
        self.m.get(key).map(|v| (child(&self.p, key), v))
    }
    pub(super) fn at(&self, key: &str) -> String {
        child(&self.p, key)
    }
    pub(super) fn has(&self, key: &str) -> bool {
        self.m.contains_key(key)
    }
}

impl Parser<'_> {
    /// `v` as a mapping whose keys are all in `allowed`.
    pub(super) fn mapping<'v>(
        &self,
        p: &str,
        v: &'v Value,
        allowed: &[&str],
        example: &str,
    ) -> R<Obj<'v>> {
        let Some(m) = v.as_object() else {
            return Err(self.err(
                p,
                format!(
                    "expected a mapping such as {example}, found {}",
                    json_type(v)
                ),
            ));
        };
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(&child(p, k), unknown_key(k, allowed)));
            }
        }
        Ok(Obj {
            p: p.to_string(),
            m,
        })
    }

    /// `v` as a list.
    pub(super) fn list<'v>(&self, p: &str, v: &'v Value, example: &str) -> R<&'v [Value]> {
        match v {
            Value::Array(a) => Ok(a),
            other => Err(self.err(
                p,
                format!(
                    "expected a list such as {example}, found {}",
                    json_type(other)
                ),
            )),
        }
    }

    /// The value of a required key.
    pub(super) fn req<'v>(&self, o: &Obj<'v>, key: &str, hint: &str) -> R<(String, &'v Value)> {
        o.get(key)
            .ok_or_else(|| self.err(&o.at(key), format!("{key} is required: {hint}")))
    }

    /// A non-empty string.
    pub(super) fn string<'v>(&self, p: &str, v: &'v Value, hint: &str) -> R<&'v str> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Ok(s),
            Value::String(_) => Err(self.err(p, format!("must not be empty: {hint}"))),
            Value::Bool(b) => Err(self.err(
                p,
                format!("expected {hint}, found a boolean (YAML reads {b}, yes, no, y, n, on and off as booleans: put text in quotes)"),
            )),
            other => Err(self.err(
                p,
                format!("expected {hint}, found {}", json_type(other)),
            )),
        }
    }

    pub(super) fn req_str<'v>(&self, o: &Obj<'v>, key: &str, hint: &str) -> R<&'v str> {
        let (p, v) = self.req(o, key, hint)?;
        self.string(&p, v, hint)
    }

    pub(super) fn opt_str<'v>(&self, o: &Obj<'v>, key: &str, hint: &str) -> R<Option<&'v str>> {
        o.get(key)
            .map(|(p, v)| self.string(&p, v, hint))
            .transpose()
    }

    pub(super) fn boolean(&self, p: &str, v: &Value) -> R<bool> {
        v.as_bool()
            .ok_or_else(|| self.err(p, format!("expected true or false, found {}", json_type(v))))
    }

    pub(super) fn opt_bool(&self, o: &Obj<'_>, key: &str) -> R<Option<bool>> {
        o.get(key).map(|(p, v)| self.boolean(&p, v)).transpose()
    }

    /// A whole number from `min` to `max`.
    pub(super) fn integer(&self, p: &str, v: &Value, min: u64, max: u64) -> R<u64> {
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => {
                let found = match v {
                    Value::Number(_) => format!("{v}"),
                    other => json_type(other).to_string(),
                };
                Err(self.err(
                    p,
                    format!("expected a whole number from {min} to {max}, found {found}"),
                ))
            }
        }
    }

    pub(super) fn opt_integer(&self, o: &Obj<'_>, key: &str, min: u64, max: u64) -> R<Option<u64>> {
        o.get(key)
            .map(|(p, v)| self.integer(&p, v, min, max))
            .transpose()
    }

    /// A finite number.
    pub(super) fn number(&self, p: &str, v: &Value, hint: &str) -> R<f64> {
        match v.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            _ => Err(self.err(p, format!("expected {hint}, found {}", json_type(v)))),
        }
    }

    /// A rate in requests/s: a finite number > 0.
    pub(super) fn rate(&self, p: &str, v: &Value) -> R<f64> {
        let r = self.number(p, v, "a rate in requests per second such as 100")?;
        if r <= 0.0 {
            return Err(self.err(
                p,
                format!("invalid rate {r}: requests per second, more than 0"),
            ));
        }
        Ok(r)
    }

    /// A Go duration (`500ms`, `10s`, `1m30s`), more than 0 and at most a year.
    /// Returns it with its text as written.
    pub(super) fn duration<'v>(&self, p: &str, v: &'v Value) -> R<(Duration, &'v str)> {
        const HINT: &str = "a duration such as 500ms, 10s or 1m30s";
        let Value::String(s) = v else {
            let fix = match v {
                Value::Number(n) => format!(" (write {n}s for seconds)"),
                _ => String::new(),
            };
            return Err(self.err(p, format!("expected {HINT}, found {}{fix}", json_type(v))));
        };
        let d = parse_go_duration(s).ok_or_else(|| {
            self.err(
                p,
                format!("invalid duration {s:?}: {HINT} (units h, m, s, ms, us, ns)"),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(p, format!("invalid duration {s:?}: must be more than 0")));
        }
        if d > MAX_SPAN {
            return Err(self.err(p, format!("invalid duration {s:?}: at most a year (8760h)")));
        }
        Ok((d, s))
    }

    /// A duration as Istio accepts it (whole milliseconds, at least 1ms).
    pub(super) fn istio_duration(&self, p: &str, v: &Value) -> R<IstioDuration> {
        let Value::String(s) = v else {
            return Err(self.err(
                p,
                format!(
                    "expected a duration such as 500ms or 2s, found {}",
                    json_type(v)
                ),
            ));
        };
        s.parse::<IstioDuration>()
            .map_err(|e| self.err(p, e.to_string()))
    }

    /// A fault percentage: a number (`50`, `0.5` = half a percent) or `"50%"`.
    pub(super) fn percentage(&self, p: &str, v: &Value) -> R<Percentage> {
        let r = match v {
            Value::Number(n) => n.as_f64().map(Percentage::new),
            Value::String(s) => Some(s.trim().parse::<Percentage>()),
            _ => None,
        };
        match r {
            Some(Ok(pc)) => Ok(pc),
            Some(Err(e)) => Err(self.err(p, format!("{e} (50 or \"50%\" is half the requests)"))),
            None => Err(self.err(
                p,
                format!(
                    "expected a percentage such as 50 or \"50%\", found {}",
                    json_type(v)
                ),
            )),
        }
    }

    /// A share: a number from 0 to 1 (`0.95`) or a percentage string (`"95%"`).
    pub(super) fn share(&self, p: &str, v: &Value) -> R<f64> {
        const HINT: &str = "a share from 0 to 1 such as 0.95, or a percentage such as \"95%\"";
        let s = match v {
            Value::Number(n) => n.as_f64().filter(|x| (0.0..=1.0).contains(x)),
            Value::String(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|x| x.trim().parse::<f64>().ok())
                .filter(|x| (0.0..=100.0).contains(x))
                .map(|x| x / 100.0),
            _ => {
                return Err(self.err(p, format!("expected {HINT}, found {}", json_type(v))));
            }
        };
        s.ok_or_else(|| self.err(p, format!("invalid value {}: {HINT}", shown(v))))
    }

    /// Of `keys`, the one `o` has. Two or more: an error at the second. None: an
    /// error when `required` (`what` says what the keys are for).
    pub(super) fn pick<'k, 'v>(
        &self,
        o: &Obj<'v>,
        keys: &[&'k str],
        required: bool,
        what: &str,
    ) -> R<Option<(&'k str, String, &'v Value)>> {
        let present: Vec<&'k str> = keys.iter().copied().filter(|k| o.has(k)).collect();
        let list = keys.join(", ");
        match present.as_slice() {
            [] if required => Err(self.err(&o.p, format!("give one of {list}: {what}"))),
            [] => Ok(None),
            [k] => Ok(o.get(k).map(|(p, v)| (*k, p, v))),
            [a, b, ..] => Err(self.err(
                &o.at(b),
                format!("{a} and {b} exclude each other: give only one of {list}"),
            )),
        }
    }
}
