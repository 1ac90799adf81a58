//! chaostoolkit's `within_tolerance`: does a hypothesis probe's output meet its
//! tolerance? Dispatched on the tolerance's type as chaoslib's `singledispatch` does
//! (`chaoslib/hypothesis.py`), with Python's `==`, `<=`, `in` and `Decimal` semantics.
//!
//! # What it owns, and what it must not do
//! Pure: no I/O. A `{type: probe}` tolerance is not run here: [`within`] hands it back
//! as [`Checked::Probe`] with `provider.arguments.value` set, and the runner runs it.
//! `Err` is returned where chaoslib raises (a `TypeError` comparing a number with a
//! string, a pattern that does not compile after substitution, `target` on a
//! non-object); the runner reports it as chaostoolkit would report an exception.
//!
//! # Known differences from chaostoolkit
//! - `regex` uses Rust's `regex` crate, not Python's `re`: no look-around, no
//!   backreferences; `$` matches only at the very end (Python's also matches before a
//!   final newline); `\Z` is written `\z`.
//! - `jsonpath` uses RFC 9535 JSONPath (`serde_json_path`), not `jsonpath2`: filters are
//!   written `?@.a == 1` (jsonpath2: `?(@.a = 1)`), and the order of `..` matches may
//!   differ, which matters to a list `expect`.
//! - `range` on a null, list or object output is "not met"; chaoslib's `Decimal()`
//!   raises a `TypeError` there.
//! - A `{type: probe}` tolerance without `provider.arguments` gets one; chaoslib raises
//!   a `KeyError`.
//! - At load time a regex or JSONPath that does not compile but refers to `${name}` is
//!   accepted and checked after substitution; chaoslib checks the raw text only.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use super::substitute::{Vars, names_in, substitute, substitute_str};

/// The outcome of a tolerance check.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// Decided here.
    Met(bool),
    /// A `{type: probe, …}` tolerance, with `provider.arguments.value` set to the
    /// output: the runner runs it; met when it returns a truthy value and does not fail.
    Probe(Value),
}

const KNOWN_TYPES: &str = "range, regex, jsonpath or probe";

/// Python truthiness: `false`, `0`, `0.0`, `""`, `[]`, `{}` and `null` are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

// === validation ===

/// The load-time check chaoslib does (`ensure_hypothesis_tolerance_is_valid`): a bool,
/// an integer, a list, a string, or an object of a known `type` with its fields.
pub fn validate(t: &Value) -> Result<(), String> {
    match t {
        Value::Bool(_) | Value::String(_) | Value::Array(_) => Ok(()),
        Value::Number(n) if !n.is_f64() => Ok(()),
        Value::Number(n) => Err(format!(
            "tolerance {n} is a float, which chaostoolkit does not accept: write an integer, \
             a [low, high] list, or {{type: range, range: [low, high]}} for a number range"
        )),
        Value::Null => Err(
            "tolerance is null: write a bool, an integer, a string, a list, \
             or an object with a type (range, regex, jsonpath or probe)"
                .to_owned(),
        ),
        Value::Object(o) => validate_object(o),
    }
}

fn validate_object(o: &Map<String, Value>) -> Result<(), String> {
    match o.get("type").and_then(Value::as_str) {
        Some("probe") => match o.get("provider") {
            Some(Value::Object(p)) => match p.get("arguments") {
                None | Some(Value::Object(_)) => Ok(()),
                Some(_) => Err("a probe tolerance's provider.arguments must be a map \
                     (it receives the output as `value`)"
                    .to_owned()),
            },
            _ => Err(
                "a probe tolerance needs a provider: {type: probe, name: …, \
                 provider: {type: python|process|http, …}}"
                    .to_owned(),
            ),
        },
        Some("regex") => match o.get("pattern") {
            Some(Value::String(p)) => match Regex::new(p) {
                Ok(_) => Ok(()),
                // Checked again once `${name}`s are substituted.
                Err(_) if !names_in(p).is_empty() => Ok(()),
                Err(e) => Err(regex_error(p, &e)),
            },
            Some(other) => Err(format!(
                "a regex tolerance's pattern must be a string, not {}: quote it",
                py_type(other)
            )),
            None => Err(
                "a regex tolerance needs a pattern: {type: regex, pattern: \"…\", \
                 target: body}"
                    .to_owned(),
            ),
        },
        Some("jsonpath") => match o.get("path") {
            Some(Value::String(p)) if p.trim().is_empty() => Err(
                "a jsonpath tolerance's path is empty: write e.g. path: \"$.status\"".to_owned(),
            ),
            Some(Value::String(p)) => match JsonPath::parse(p.trim()) {
                Ok(_) => Ok(()),
                Err(_) if !names_in(p).is_empty() => Ok(()),
                Err(e) => Err(jsonpath_error(p, &e)),
            },
            Some(other) => Err(format!(
                "a jsonpath tolerance's path must be a string, not {}: write e.g. \
                 path: \"$.status\"",
                py_type(other)
            )),
            None => Err(
                "a jsonpath tolerance needs a path: {type: jsonpath, path: \"$.…\", \
                 expect: …}"
                    .to_owned(),
            ),
        },
        Some("range") => match o.get("range") {
            Some(Value::Array(r)) if r.len() == 2 => {
                for (bound, which) in r.iter().zip(["lower", "upper"]) {
                    if !matches!(bound, Value::Number(_) | Value::Bool(_)) {
                        return Err(format!(
                            "a range tolerance's {which} bound must be a number, not {}: \
                             write e.g. range: [0, 250]",
                            py_type(bound)
                        ));
                    }
                }
                Ok(())
            }
            Some(Value::Array(r)) => Err(format!(
                "a range tolerance's range has {} values; write two: range: [low, high]",
                r.len()
            )),
            Some(_) => {
                Err("a range tolerance's range must be a list: range: [low, high]".to_owned())
            }
            None => Err(
                "a range tolerance needs a range: {type: range, range: [low, high], \
                 target: …}"
                    .to_owned(),
            ),
        },
        Some(other) => Err(format!(
            "tolerance type {other:?} is unsupported: use {KNOWN_TYPES}"
        )),
        None => Err(format!("a tolerance object needs a type: {KNOWN_TYPES}")),
    }
}

fn regex_error(pattern: &str, e: &regex::Error) -> String {
    format!(
        "regex tolerance pattern {pattern:?} does not compile: {e}\n(meshdrill uses Rust regex \
         syntax: no look-around or backreferences; match the text directly, or use a \
         jsonpath tolerance on JSON bodies)"
    )
}

fn jsonpath_error(path: &str, e: &serde_json_path::ParseError) -> String {
    format!(
        "jsonpath tolerance path {path:?} does not parse: {e}\n(meshdrill uses RFC 9535 \
         JSONPath: filters are written [?@.field == 'x'], not [?(@.field = 'x')])"
    )
}

// === checking ===

/// Checks `output` against the tolerance `t`, substituting `${name}`s from `vars` where
/// chaoslib does (a string tolerance, a regex pattern, a JSONPath path and expect).
pub fn within(t: &Value, output: &Value, vars: &Vars) -> Result<Checked, String> {
    match t {
        // chaoslib substitutes a str tolerance, then dispatches on what it became
        // (`"${code}"` can be an int, a list, an object).
        Value::String(s) => match substitute_str(s, vars) {
            Value::String(s) => Ok(Checked::Met(py_eq(output, &Value::String(s)))),
            other => dispatch(&other, output, vars),
        },
        other => dispatch(other, output, vars),
    }
}

/// `within_tolerance` on an already substituted tolerance.
fn dispatch(t: &Value, output: &Value, vars: &Vars) -> Result<Checked, String> {
    match t {
        // `value == tolerance`, with Python's `==`: True == 1 and True == 1.0 hold, so
        // a `true` tolerance is met by an output of 1 (chaoslib does exactly this).
        Value::Bool(_) | Value::String(_) => Ok(Checked::Met(py_eq(output, t))),
        // A float (only reachable through `"${x}"`): chaoslib has no handler for it,
        // the fallback returns None, so the tolerance is not met. Null likewise.
        Value::Number(n) if n.is_f64() => Ok(Checked::Met(false)),
        Value::Null => Ok(Checked::Met(false)),
        // An http or process output is compared by its status (HTTP status, exit code).
        Value::Number(_) => Ok(Checked::Met(py_eq(status_or_value(output), t))),
        Value::Array(list) => within_list(list, output).map(Checked::Met),
        Value::Object(o) => within_object(o, output, vars),
    }
}

/// `value["status"]` if the output is an object with a status, else the output.
fn status_or_value(output: &Value) -> &Value {
    match output {
        Value::Object(o) => o.get("status").unwrap_or(output),
        _ => output,
    }
}

fn within_list(list: &[Value], output: &Value) -> Result<bool, String> {
    if let Value::Object(o) = output
        && let Some(status) = o.get("status")
    {
        return Ok(list.iter().any(|x| py_eq(x, status)));
    }
    if let [lo, hi] = list {
        // `t[0] <= value <= t[1]`, short-circuiting like Python's chained comparison.
        let le = |a, b| {
            py_le(a, b).map_err(|e| {
                format!(
                    "tolerance [{lo}, {hi}] is an inclusive range, and the output {output} \
                     cannot be compared with it: {e}"
                )
            })
        };
        return Ok(le(lo, output)? && le(output, hi)?);
    }
    Ok(list.iter().any(|x| py_eq(x, output)))
}

fn within_object(o: &Map<String, Value>, output: &Value, vars: &Vars) -> Result<Checked, String> {
    match o.get("type").and_then(Value::as_str) {
        Some("probe") => probe_with_value(o, output).map(Checked::Probe),
        Some("regex") => within_regex(o, output, vars).map(Checked::Met),
        Some("jsonpath") => within_jsonpath(o, output, vars).map(Checked::Met),
        Some("range") => within_range(o, output).map(Checked::Met),
        // chaoslib falls off the end of its if/elif chain: None, not met.
        _ => Ok(Checked::Met(false)),
    }
}

fn probe_with_value(o: &Map<String, Value>, output: &Value) -> Result<Value, String> {
    let mut probe = o.clone();
    let Some(Value::Object(provider)) = probe.get_mut("provider") else {
        return Err("the probe tolerance has no provider map".to_owned());
    };
    let arguments = provider
        .entry("arguments")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(arguments) = arguments else {
        return Err("the probe tolerance's provider.arguments is not a map".to_owned());
    };
    arguments.insert("value".to_owned(), output.clone());
    Ok(Value::Object(probe))
}

/// `value.get(target, value)` when `target` is truthy; chaoslib raises
/// `AttributeError` when the value is not a dict.
fn targeted<'a>(
    o: &Map<String, Value>,
    output: &'a Value,
    kind: &str,
) -> Result<&'a Value, String> {
    let Some(target) = o.get("target").filter(|t| truthy(t)) else {
        return Ok(output);
    };
    match output {
        Value::Object(map) => Ok(target.as_str().and_then(|t| map.get(t)).unwrap_or(output)),
        other => Err(format!(
            "{kind} tolerance has target {target}, but the output is {} (not a map); \
             remove target",
            py_type(other)
        )),
    }
}

fn within_regex(o: &Map<String, Value>, output: &Value, vars: &Vars) -> Result<bool, String> {
    let pattern = match o.get("pattern").map(|p| substitute(p, vars)) {
        Some(Value::String(p)) => p,
        other => {
            return Err(format!(
                "regex tolerance pattern must be a string, not {}",
                other.as_ref().map_or("nothing", py_type)
            ));
        }
    };
    let rx = Regex::new(&pattern).map_err(|e| regex_error(&pattern, &e))?;
    match targeted(o, output, "regex")? {
        Value::String(s) => Ok(rx.is_match(s)),
        other => Err(format!(
            "regex tolerance searches a string, but the value is {}: set target (e.g. \
             target: body for an http probe, stdout for a process)",
            py_type(other)
        )),
    }
}

fn within_jsonpath(o: &Map<String, Value>, output: &Value, vars: &Vars) -> Result<bool, String> {
    let path = match o.get("path").map(|p| substitute(p, vars)) {
        Some(Value::String(p)) => p,
        other => {
            return Err(format!(
                "jsonpath tolerance path must be a string, not {}",
                other.as_ref().map_or("nothing", py_type)
            ));
        }
    };
    let jp = JsonPath::parse(&path).map_err(|e| jsonpath_error(&path, &e))?;
    let value = targeted(o, output, "jsonpath")?;
    // A string is parsed as JSON if it is JSON (an http body with another
    // Content-Type), else queried as the string itself.
    let parsed;
    let value = match value {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                parsed = v;
                &parsed
            }
            Err(_) => value,
        },
        v => v,
    };
    let found: Vec<Value> = jp.query(value).all().into_iter().cloned().collect();
    let mut met = !found.is_empty();
    if let Some(count) = o.get("count").filter(|c| !c.is_null()) {
        met = py_eq(&Value::from(found.len()), count);
    }
    if let Some(expect) = o.get("expect") {
        // Replaces the count check, as in chaoslib.
        let found = Value::Array(found);
        met = match substitute(expect, vars) {
            list @ Value::Array(_) => py_eq(&found, &list),
            one => py_eq(&found, &Value::Array(vec![one])),
        };
    }
    Ok(met)
}

fn within_range(o: &Map<String, Value>, output: &Value) -> Result<bool, String> {
    let Some(Value::Array(range)) = o.get("range") else {
        return Err("range tolerance needs range: [low, high]".to_owned());
    };
    let [lo, hi] = range.as_slice() else {
        return Err("range tolerance needs range: [low, high] (two values)".to_owned());
    };
    let bound = |b: &Value| match Dec::from_value(b) {
        Some(Dec::NaN) => Err(format!("range bound {b} is NaN, which cannot be compared")),
        Some(d) => Ok(d),
        None => Err(format!("range bound {b} is not a number")),
    };
    let (lo, hi) = (bound(lo)?, bound(hi)?);
    let value = match Dec::from_value(targeted(o, output, "range")?) {
        // `Decimal(value)` raised InvalidOperation: "range check expects a number value".
        None => return Ok(false),
        // Comparing a Decimal NaN raises InvalidOperation in Python.
        Some(Dec::NaN) => return Err("range tolerance: the value is NaN".to_owned()),
        Some(v) => v,
    };
    Ok(lo.compare(&value) != Ordering::Greater && value.compare(&hi) != Ordering::Greater)
}

// === Python semantics ===

/// Python's type name for a JSON value, as its error messages say it.
fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// A Python number: bools are the ints 0 and 1.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::Int(i128::from(*b))),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Num::Int(i128::from(i)))
            } else if let Some(u) = n.as_u64() {
                Some(Num::Int(i128::from(u)))
            } else {
                n.as_f64().map(Num::Float)
            }
        }
        _ => None,
    }
}

/// Exact comparison, as Python compares an int with a float (no rounding of the int).
fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
        (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
        (Num::Int(i), Num::Float(f)) => cmp_int_float(i, f),
        (Num::Float(f), Num::Int(i)) => cmp_int_float(i, f).map(Ordering::reverse),
    }
}

fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    const LIMIT: f64 = 1.7e38; // < 2^127
    if f.is_nan() {
        return None;
    }
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f <= -LIMIT {
        return Some(Ordering::Greater);
    }
    let floor = f.floor();
    // Exact: |floor| < 2^127 and floor is an integer.
    #[allow(clippy::cast_possible_truncation)]
    let fi = floor as i128;
    Some(match i.cmp(&fi) {
        Ordering::Equal if f > floor => Ordering::Less,
        o => o,
    })
}

/// Python's `==` on JSON values: numbers (bools included) by value across int and
/// float, lists item by item, dicts by keys and values.
pub(crate) fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return cmp_num(x, y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| py_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => false,
    }
}

/// Python's `a <= b`; `Err` where Python raises `TypeError`.
fn py_le(a: &Value, b: &Value) -> Result<bool, String> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Ok(matches!(
            cmp_num(x, y),
            Some(Ordering::Less | Ordering::Equal)
        ));
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x <= y),
        (Value::Array(x), Value::Array(y)) => match x.iter().zip(y).find(|(x, y)| !py_eq(x, y)) {
            Some((x, y)) => py_le(x, y),
            None => Ok(x.len() <= y.len()),
        },
        _ => Err(format!(
            "'<=' not supported between instances of '{}' and '{}'",
            py_type(a),
            py_type(b)
        )),
    }
}

/// An exact decimal number, as Python's `Decimal` holds one: `0.d1d2…dn × 10^exp`
/// with no leading or trailing zero digit (no digits: zero).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dec {
    Finite {
        neg: bool,
        digits: Vec<u8>,
        exp: i64,
    },
    Inf {
        neg: bool,
    },
    NaN,
}

impl Dec {
    /// `Decimal(value)`: numbers and bools exactly, numeric strings as Python parses
    /// them; `None` for anything else.
    fn from_value(v: &Value) -> Option<Self> {
        match num(v) {
            // `{:.1100e}` prints a float's exact binary value (it has fewer digits).
            Some(Num::Int(i)) => Self::parse(&i.to_string()),
            Some(Num::Float(f)) if f.is_finite() => Self::parse(&format!("{f:.1100e}")),
            Some(Num::Float(f)) if f.is_nan() => Some(Dec::NaN),
            Some(Num::Float(f)) => Some(Dec::Inf { neg: f < 0.0 }),
            None => v.as_str().and_then(Self::parse),
        }
    }

    /// Python's `Decimal(str)` grammar: surrounding whitespace, a sign, digits with an
    /// optional point and exponent, `_` between digits, `Inf`/`Infinity`/`NaN`.
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (neg, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let lower = body.to_ascii_lowercase();
        if lower == "inf" || lower == "infinity" {
            return Some(Dec::Inf { neg });
        }
        let nan_digits = lower
            .strip_prefix("nan")
            .or_else(|| lower.strip_prefix("snan"));
        if let Some(rest) = nan_digits
            && rest.bytes().all(|c| c.is_ascii_digit())
        {
            return Some(Dec::NaN);
        }
        let (mantissa, exponent) = match lower.split_once('e') {
            Some((m, e)) => (m, Some(e)),
            None => (lower.as_str(), None),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let int_digits = digits_of(int_part)?;
        let frac_digits = digits_of(frac_part)?;
        if int_digits.is_empty() && frac_digits.is_empty() {
            return None;
        }
        let mut exp: i64 = match exponent {
            None => 0,
            Some(e) => {
                let (eneg, e) = match e.as_bytes().first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                let d = digits_of(e)?;
                if d.is_empty() {
                    return None;
                }
                // Exponents beyond i64 are far past any f64 and saturate harmlessly.
                let mag = d.iter().fold(0i64, |acc, x| {
                    acc.saturating_mul(10).saturating_add(i64::from(*x))
                });
                if eneg { -mag } else { mag }
            }
        };
        let mut digits = int_digits;
        exp = exp.saturating_add(i64::try_from(digits.len()).unwrap_or(i64::MAX));
        digits.extend(frac_digits);
        let lead = digits.iter().take_while(|d| **d == 0).count();
        digits.drain(..lead);
        exp = exp.saturating_sub(i64::try_from(lead).unwrap_or(0));
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            // One zero: -0 == 0.
            return Some(Dec::Finite {
                neg: false,
                digits,
                exp: 0,
            });
        }
        Some(Dec::Finite { neg, digits, exp })
    }

    /// The order of two non-NaN decimals.
    fn compare(&self, other: &Self) -> Ordering {
        use Dec::{Finite, Inf, NaN};
        match (self, other) {
            (NaN, _) | (_, NaN) => Ordering::Equal, // never reached: NaN is refused first
            (Inf { neg: a }, Inf { neg: b }) => b.cmp(a),
            (Inf { neg }, _) => {
                if *neg {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (_, Inf { neg }) => {
                if *neg {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (
                Finite {
                    neg: an,
                    digits: ad,
                    exp: ae,
                },
                Finite {
                    neg: bn,
                    digits: bd,
                    exp: be,
                },
            ) => {
                let sign = |neg: bool, d: &[u8]| match (d.is_empty(), neg) {
                    (true, _) => 0,
                    (false, true) => -1,
                    (false, false) => 1,
                };
                let (sa, sb) = (sign(*an, ad), sign(*bn, bd));
                if sa != sb || sa == 0 {
                    return sa.cmp(&sb);
                }
                let magnitude = ae.cmp(be).then_with(|| ad.cmp(bd));
                if sa < 0 {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
        }
    }
}

/// The digits of `s`, allowing a single `_` between two digits; `None` otherwise.
fn digits_of(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    for (i, c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => out.push(c - b'0'),
            b'_' if i > 0
                && b[i - 1].is_ascii_digit()
                && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
