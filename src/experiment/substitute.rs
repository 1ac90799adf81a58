//! chaostoolkit's `${name}` substitution: `string.Template.safe_substitute` over
//! `ChainMap(configuration, *secret scopes)`, with chaoslib's typed twist (a string
//! that is exactly `${name}` becomes the value itself, not its text).
//!
//! # What it owns, and what it must not do
//! Pure functions over JSON values: no I/O, no errors (unknown names and ill-formed
//! placeholders are left as written, as `safe_substitute` does). Where substitution
//! applies (http `url`, `headers`, …) is the runner's business, not this module's.
//!
//! # Rules
//! - `$$` → `$`; `${name}` and `$name` (a Python identifier, ASCII
//!   `[_a-zA-Z][_a-zA-Z0-9]*`) are replaced when `name` is known; unknown names and
//!   invalid placeholders (`$1`, `${ x }`, a lone `$`) stay verbatim.
//! - A string that is exactly `${name}` (known) becomes the typed value, cloned. `$name`
//!   alone does not: chaoslib only looks at the braced group there.
//! - Embedded non-string values use Python's `str()`: `True`/`False`, `None`, integers,
//!   floats as Python prints them (`1.0`, `1e+16`, `1e-05`).
//!
//! # Known difference from chaostoolkit
//! A list or map embedded in a longer string is written as JSON text (`["a", 1]` →
//! `["a",1]`, `{"k": true}` → `{"k":true}`), where Python writes its `repr`
//! (`['a', 1]`, `{'k': True}`).

use serde_json::{Map, Value};

/// The values `${name}` can refer to: configuration first, then each secret scope
/// (the runner merges them in that order, first found wins, like `ChainMap`).
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub values: Map<String, Value>,
}

impl Vars {
    /// The value of `name`, if known.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Sets `name` (replacing any earlier value).
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.values.insert(name.into(), value);
    }
}

/// Substitutes every string in `v`: object values (never keys) and array items
/// recursively; numbers, booleans and null are returned unchanged.
pub fn substitute(v: &Value, vars: &Vars) -> Value {
    match v {
        Value::String(s) => substitute_str(s, vars),
        Value::Array(items) => Value::Array(items.iter().map(|i| substitute(i, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Substitutes one string. Exactly `${name}` with `name` known gives the typed value;
/// anything else gives a string.
pub fn substitute_str(s: &str, vars: &Vars) -> Value {
    let pieces = scan(s);
    if let [Piece::Braced(name)] = pieces.as_slice()
        && let Some(v) = vars.get(name)
    {
        return v.clone();
    }
    let mut out = String::with_capacity(s.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Escaped | Piece::Invalid => out.push('$'),
            Piece::Named(name) => match vars.get(name) {
                Some(v) => out.push_str(&py_str(v)),
                None => {
                    out.push('$');
                    out.push_str(name);
                }
            },
            Piece::Braced(name) => match vars.get(name) {
                Some(v) => out.push_str(&py_str(v)),
                None => {
                    out.push_str("${");
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    Value::String(out)
}

/// The names `s` refers to with `$name` or `${name}` (not `$$`-escaped), each once, in
/// order of first use.
pub fn names_in(s: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for piece in scan(s) {
        if let Piece::Named(n) | Piece::Braced(n) = piece
            && !names.iter().any(|known| known == n)
        {
            names.push(n.to_owned());
        }
    }
    names
}

/// Python's `str()` of a JSON value, where Python's form is simple; lists and maps
/// as JSON text (see the module doc).
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => py_float(f),
            _ => n.to_string(),
        },
        Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, fixed notation for
/// exponents -4..16 (always with a fractional part), scientific otherwise with a
/// signed two-digit-minimum exponent.
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let fixed = if exp >= 0 {
            let int_len = usize::try_from(exp).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        };
        format!("{sign}{fixed}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let mant = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.unsigned_abs())
    }
}

// === the Template scanner ===

/// One part of a template, as Python's `Template.pattern` splits it.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    /// `$$`
    Escaped,
    /// `$name`
    Named(&'a str),
    /// `${name}`
    Braced(&'a str),
    /// A `$` that starts no valid placeholder; only the `$` is consumed.
    Invalid,
}

/// Length of the Python identifier at the start of `s` (0 if none).
fn ident_len(s: &[u8]) -> usize {
    match s.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => s
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .unwrap_or(s.len()),
        _ => 0,
    }
}

fn scan(s: &str) -> Vec<Piece<'_>> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if text_start < i {
            pieces.push(Piece::Text(&s[text_start..i]));
        }
        let rest = &bytes[i + 1..];
        let n = ident_len(rest);
        // All indices below fall on ASCII bytes, so they are char boundaries.
        let (piece, len) = if rest.first() == Some(&b'$') {
            (Piece::Escaped, 2)
        } else if n > 0 {
            (Piece::Named(&s[i + 1..i + 1 + n]), 1 + n)
        } else if rest.first() == Some(&b'{') {
            let m = ident_len(&rest[1..]);
            if m > 0 && rest.get(1 + m) == Some(&b'}') {
                (Piece::Braced(&s[i + 2..i + 2 + m]), 3 + m)
            } else {
                (Piece::Invalid, 1)
            }
        } else {
            (Piece::Invalid, 1)
        };
        pieces.push(piece);
        i += len;
        text_start = i;
    }
    if text_start < bytes.len() {
        pieces.push(Piece::Text(&s[text_start..]));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.insert("host", json!("example.com"));
        v.insert("port", json!(8080));
        v.insert("ratio", json!(1.0));
        v.insert("on", json!(true));
        v.insert("off", json!(false));
        v.insert("nothing", json!(null));
        v.insert("list", json!(["a", 1]));
        v.insert("map", json!({"k": true}));
        v.insert("empty", json!(""));
        v
    }

    fn sub(s: &str) -> Value {
        substitute_str(s, &vars())
    }

    #[test]
    fn whole_braced_placeholder_keeps_the_type() {
        assert_eq!(sub("${port}"), json!(8080));
        assert_eq!(sub("${on}"), json!(true));
        assert_eq!(sub("${nothing}"), json!(null));
        assert_eq!(sub("${list}"), json!(["a", 1]));
        assert_eq!(sub("${map}"), json!({"k": true}));
        assert_eq!(sub("${empty}"), json!(""));
    }

    #[test]
    fn bare_placeholder_alone_is_text() {
        // chaoslib's TypedTemplate only returns the typed value for the braced form.
        assert_eq!(sub("$port"), json!("8080"));
        assert_eq!(sub("$on"), json!("True"));
    }

    #[test]
    fn embedded_values_use_python_str() {
        assert_eq!(
            sub("http://${host}:$port/x"),
            json!("http://example.com:8080/x")
        );
        assert_eq!(sub("flag=${on},${off}"), json!("flag=True,False"));
        assert_eq!(sub("v=${nothing}"), json!("v=None"));
        assert_eq!(sub("r=${ratio}"), json!("r=1.0"));
        // Documented difference: JSON text where Python writes its repr.
        assert_eq!(sub("l=${list}"), json!("l=[\"a\",1]"));
        assert_eq!(sub("m=${map}"), json!("m={\"k\":true}"));
    }

    #[test]
    fn escapes_unknown_and_invalid_stay_verbatim() {
        assert_eq!(sub("$$"), json!("$"));
        assert_eq!(sub("$${host}"), json!("${host}"));
        assert_eq!(sub("$$$host"), json!("$example.com"));
        assert_eq!(sub("${unknown}"), json!("${unknown}"));
        assert_eq!(sub("a $unknown b"), json!("a $unknown b"));
        assert_eq!(sub("$"), json!("$"));
        assert_eq!(sub("cost: $5"), json!("cost: $5"));
        assert_eq!(sub("${ host }"), json!("${ host }"));
        assert_eq!(sub("${host"), json!("${host"));
        assert_eq!(sub("${1a}"), json!("${1a}"));
        assert_eq!(sub("end$"), json!("end$"));
    }

    #[test]
    fn named_is_greedy_and_ascii() {
        let mut v = Vars::default();
        v.insert("a", json!("A"));
        v.insert("a_b", json!("AB"));
        assert_eq!(substitute_str("$a_b.$a-$a2", &v), json!("AB.A-$a2"));
        assert_eq!(substitute_str("$aé", &v), json!("Aé"));
        assert_eq!(substitute_str("é${a}é", &v), json!("éAé"));
    }

    #[test]
    fn python_float_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (1e300, "1e+300"),
            (123.456, "123.456"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(py_float(f), want, "{f}");
        }
        assert_eq!(py_str(&json!(-3)), "-3");
        assert_eq!(py_str(&json!(u64::MAX)), u64::MAX.to_string());
    }

    #[test]
    fn substitute_recurses_into_values_not_keys() {
        let v = json!({
            "${host}": "${host}",
            "n": ["${port}", {"deep": "p=$port"}, 3, null],
            "b": false,
        });
        assert_eq!(
            substitute(&v, &vars()),
            json!({
                "${host}": "example.com",
                "n": [8080, {"deep": "p=8080"}, 3, null],
                "b": false,
            })
        );
        assert_eq!(substitute(&json!(2.5), &vars()), json!(2.5));
    }

    #[test]
    fn names_in_lists_references_once_in_order() {
        assert_eq!(
            names_in("${b} $a $$c ${b} $$${d} ${ e } $"),
            vec!["b", "a", "d"]
        );
        assert!(names_in("no placeholders").is_empty());
    }

    proptest! {
        #[test]
        fn strings_without_dollar_are_unchanged(s in "[^$]*") {
            prop_assert_eq!(substitute_str(&s, &vars()), Value::String(s.clone()));
        }

        #[test]
        fn doubled_dollars_round_trip(s in "[^$]*") {
            // Escaping every `$` of any text gives the text back.
            let raw = format!("{s}$x${{host}}$");
            let escaped = raw.replace('$', "$$");
            prop_assert_eq!(substitute_str(&escaped, &vars()), Value::String(raw));
        }
    }
}
