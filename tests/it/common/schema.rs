//! A small JSON Schema checker for the subset the project's schemas use: type,
//! required, properties, additionalProperties, propertyNames (pattern of literal chars
//! and `[a-b]` classes, enum), items, minimum, $ref to #/$defs.
#![allow(dead_code)]

use serde_json::Value;

pub fn check(root: &Value, s: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return check(root, &root["$defs"][name], v, at);
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| is_type(v, t)) {
            errs.push(format!("{at}: {v} is not {types:?}"));
            return errs;
        }
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && x < min
    {
        errs.push(format!("{at}: {x} < {min}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!("{at}: {v} not in {e:?}"));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str)
        && !v.as_str().is_some_and(|x| pattern(p, x))
    {
        errs.push(format!("{at}: {v} does not match {p}"));
    }
    if let (Some(items), Some(list)) = (s.get("items"), v.as_array()) {
        for (i, x) in list.iter().enumerate() {
            errs.extend(check(root, items, x, &format!("{at}[{i}]")));
        }
    }
    let Some(obj) = v.as_object() else {
        return errs;
    };
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = r.as_str()
            && !obj.contains_key(k)
        {
            errs.push(format!("{at}: missing {k}"));
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    for (k, x) in obj {
        let here = format!("{at}.{k}");
        if let Some(names) = s.get("propertyNames") {
            errs.extend(check(root, names, &Value::String(k.clone()), &here));
        }
        match props.and_then(|p| p.get(k)) {
            Some(ps) => errs.extend(check(root, ps, x, &here)),
            None => match s.get("additionalProperties") {
                Some(Value::Bool(false)) => errs.push(format!("{here}: not allowed")),
                Some(ap @ Value::Object(_)) => errs.extend(check(root, ap, x, &here)),
                _ => {}
            },
        }
    }
    errs
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        _ => false,
    }
}

/// Anchored patterns of literal characters and `[x-y]` classes only.
fn pattern(p: &str, s: &str) -> bool {
    let p = p.trim_start_matches('^').trim_end_matches('$');
    let mut chars = s.chars();
    let mut pc = p.chars().peekable();
    while let Some(c) = pc.next() {
        let Some(x) = chars.next() else { return false };
        if c == '[' {
            let (lo, _, hi, _) = (pc.next(), pc.next(), pc.next(), pc.next());
            match (lo, hi) {
                (Some(lo), Some(hi)) if (lo..=hi).contains(&x) => {}
                _ => return false,
            }
        } else if c != x {
            return false;
        }
    }
    chars.next().is_none()
}
