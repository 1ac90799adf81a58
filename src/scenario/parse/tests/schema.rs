//! `schema/scenario.json` against the fixtures and the parser's key lists, with a small
//! validator for the keywords the schema uses (no `pattern`: no regex crate here).

use serde_json::{Map, Value};

use super::super::{phases, steps};
use super::testdata;
use crate::istio::manifest;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/scenario.json");
    let text = std::fs::read_to_string(path).expect("schema/scenario.json");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn json_is(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("schema type {other:?} unknown to the test validator"),
    }
}

/// Appends to `errs` every way `v` (at `path`) fails `s`.
fn validate(root: &Value, s: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(s) = s.as_object() else {
        return;
    };
    if let Some(r) = s.get("$ref") {
        let target = r
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| root.pointer(p))
            .unwrap_or_else(|| panic!("unresolved $ref {r}"));
        validate(root, target, v, path, errs);
    }
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let mut fail = |m: String| errs.push(format!("{path}: {m}"));
    for (k, x) in s {
        match k.as_str() {
            "const" if v != x => fail(format!("not {x}")),
            "enum" if !x.as_array().is_some_and(|a| a.contains(v)) => fail(format!("not in {x}")),
            "type" => {
                let ok = match x {
                    Value::String(t) => json_is(v, t),
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| json_is(v, t)),
                    _ => true,
                };
                if !ok {
                    fail(format!("not of type {x}"));
                }
            }
            _ => {}
        }
    }
    if let Some(n) = v.as_f64() {
        if num("minimum").is_some_and(|m| n < m) || num("maximum").is_some_and(|m| n > m) {
            fail(format!("{n} out of range"));
        }
        if num("exclusiveMinimum").is_some_and(|m| n <= m) {
            fail(format!("{n} too small"));
        }
    }
    if let (Some(t), Some(m)) = (v.as_str(), num("minLength"))
        && (t.chars().count() as f64) < m
    {
        fail("too short".into());
    }
    validate_rest(root, s, v, path, errs);
}

fn validate_rest(
    root: &Value,
    s: &Map<String, Value>,
    v: &Value,
    path: &str,
    errs: &mut Vec<String>,
) {
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for (k, x) in o {
            let p = format!("{path}.{k}");
            match (
                props.and_then(|ps| ps.get(k)),
                s.get("additionalProperties"),
            ) {
                (Some(ps), _) => validate(root, ps, x, &p, errs),
                (None, Some(Value::Bool(false))) => errs.push(format!("{p}: not allowed")),
                (None, Some(extra)) => validate(root, extra, x, &p, errs),
                (None, None) => {}
            }
        }
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !o.contains_key(r)
            {
                errs.push(format!("{path}: {r} is required"));
            }
        }
        if let Some(m) = s.get("minProperties").and_then(Value::as_u64)
            && (o.len() as u64) < m
        {
            errs.push(format!("{path}: too few properties"));
        }
    }
    if let Some(a) = v.as_array() {
        if let Some(items) = s.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate(root, items, x, &format!("{path}[{i}]"), errs);
            }
        }
        if let Some(m) = s.get("minItems").and_then(Value::as_u64)
            && (a.len() as u64) < m
        {
            errs.push(format!("{path}: too few items"));
        }
    }
    let passes = |sub: &Value| {
        let mut e = Vec::new();
        validate(root, sub, v, path, &mut e);
        e.is_empty()
    };
    let subs = |k: &str| {
        s.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if s.contains_key("oneOf") && subs("oneOf").iter().filter(|x| passes(x)).count() != 1 {
        errs.push(format!("{path}: not exactly one of oneOf"));
    }
    if s.contains_key("anyOf") && !subs("anyOf").iter().any(&passes) {
        errs.push(format!("{path}: none of anyOf"));
    }
    for x in subs("allOf") {
        validate(root, &x, v, path, errs);
    }
    if let Some(n) = s.get("not")
        && passes(n)
    {
        errs.push(format!("{path}: matches `not`"));
    }
}

fn errors(v: &Value) -> Vec<String> {
    let root = schema();
    let mut errs = Vec::new();
    validate(&root, &root, v, "", &mut errs);
    errs
}

/// The example scenarios in `testdata/` (meshes excluded).
pub(super) fn fixtures() -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(testdata())
        .expect("testdata")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    assert!(out.len() >= 3, "{out:?}");
    out
}

#[test]
fn every_fixture_matches_the_schema() {
    for f in fixtures() {
        let docs = manifest::read_file(&f).expect("YAML");
        assert_eq!(docs.len(), 1, "{}", f.display());
        let errs = errors(&docs[0].value);
        assert!(errs.is_empty(), "{}: {errs:#?}", f.display());
    }
}

#[test]
fn the_schema_rejects_what_the_parser_rejects() {
    let docs = manifest::read_file(&testdata().join("minimal.yaml")).expect("YAML");
    let base = docs[0].value.clone();
    let with = |ptr: &str, v: Value| {
        let mut d = base.clone();
        *d.pointer_mut(ptr).expect("pointer") = v;
        d
    };
    for (bad, why) in [
        (
            with(
                "/spec/method/1",
                serde_json::json!({"pause": "1s", "hold": "1s"}),
            ),
            "two step kinds",
        ),
        (
            with("/spec/method/1", serde_json::json!({"paus": "1s"})),
            "unknown step key",
        ),
        (
            with(
                "/spec/method/0/fault/delay",
                serde_json::json!({"fixedDelay": "1s", "percent": 5}),
            ),
            "unknown key",
        ),
        (
            with("/spec/method/0/fault/virtualService", serde_json::json!(1)),
            "virtualService is a string",
        ),
        (
            with(
                "/spec/method/2",
                serde_json::json!({"clear": "a", "name": ""}),
            ),
            "empty name",
        ),
        (
            with(
                "/spec/target",
                serde_json::json!({"mesh": "m.yaml", "cluster": {}}),
            ),
            "two targets",
        ),
        (with("/kind", serde_json::json!("Mesh")), "kind"),
        (with("/spec/method", serde_json::json!([])), "empty method"),
    ] {
        assert!(!errors(&bad).is_empty(), "the schema accepts {why}: {bad}");
    }
    let mut both = base.clone();
    both["spec"]["method"][0]["fault"]["route"] = "r".into();
    both["spec"]["method"][0]["fault"]["routeIndex"] = 0.into();
    assert!(!errors(&both).is_empty(), "route and routeIndex together");
}

#[test]
fn the_schema_rejects_unknown_keys_where_the_parser_does() {
    for f in fixtures() {
        let docs = manifest::read_file(&f).expect("YAML");
        let base = &docs[0].value;
        for p in super::fuzz::pointers(base) {
            let mut v = base.clone();
            // Header names are free; everything else is a closed mapping.
            let Some(Value::Object(m)) = v.pointer_mut(&p) else {
                continue;
            };
            if p.ends_with("/headers") {
                continue;
            }
            m.insert("zzz".into(), Value::from(1));
            assert!(
                !errors(&v).is_empty(),
                "{}: the schema accepts an unknown key at {p}",
                f.display()
            );
        }
    }
}

fn props<'a>(root: &'a Value, ptr: &str) -> Vec<&'a str> {
    let mut keys: Vec<&str> = root
        .pointer(ptr)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no properties at {ptr}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn sorted(keys: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    let mut v: Vec<&str> = keys.iter().chain(extra).copied().collect();
    v.sort_unstable();
    v
}

#[test]
fn the_schema_has_the_parsers_keys() {
    let s = schema();
    let d = "/$defs";
    for (ptr, keys) in [
        ("".to_string(), sorted(&super::TOP_KEYS, &[])),
        (format!("{d}/spec"), sorted(&super::SPEC_KEYS, &[])),
        (
            format!("{d}/target/properties/cluster"),
            sorted(&super::CLUSTER_KEYS, &[]),
        ),
        (format!("{d}/load"), sorted(&super::LOAD_KEYS, &[])),
        (format!("{d}/slo"), sorted(&super::SLO_KEYS, &[])),
        (
            format!("{d}/slo/properties/prometheus"),
            sorted(&super::PROM_KEYS, &[]),
        ),
        (
            format!("{d}/spec/properties/steadyState"),
            sorted(&super::STEADY_KEYS, &[]),
        ),
        (format!("{d}/stopCondition"), sorted(&super::STOP_KEYS, &[])),
        (format!("{d}/step"), sorted(&steps::STEP_KINDS, &["name"])),
        (
            format!("{d}/rollbackStep"),
            sorted(&steps::ROLLBACK_KINDS, &["name"]),
        ),
        (format!("{d}/fault"), sorted(&steps::FAULT_KEYS, &[])),
        (
            format!("{d}/fault/properties/abort"),
            sorted(&steps::ABORT_KEYS, &[]),
        ),
        (
            format!("{d}/fault/properties/delay"),
            sorted(&steps::DELAY_KEYS, &[]),
        ),
        (
            format!("{d}/fault/properties/network"),
            sorted(&steps::NETWORK_KEYS, &[]),
        ),
        (format!("{d}/retries"), sorted(&steps::RETRIES_KEYS, &[])),
        (
            format!("{d}/timeoutStep"),
            sorted(&steps::TIMEOUT_KEYS, &[]),
        ),
        (
            format!("{d}/vsRef/anyOf/1"),
            sorted(&steps::VS_ONLY_KEYS, &[]),
        ),
        (format!("{d}/kill"), sorted(&steps::KILL_KEYS, &[])),
        (format!("{d}/restart"), sorted(&steps::RESTART_KEYS, &[])),
        (format!("{d}/hold/anyOf/1"), sorted(&phases::HOLD_KEYS, &[])),
        (
            format!("{d}/retryCheck"),
            sorted(&phases::RETRY_CHECK_KEYS, &[]),
        ),
        (format!("{d}/flood"), sorted(&phases::FLOOD_KEYS, &[])),
        (format!("{d}/search"), sorted(&phases::SEARCH_KEYS, &[])),
        (
            format!("{d}/search/properties/abort"),
            sorted(&phases::SEARCH_ABORT_KEYS, &[]),
        ),
        (
            format!("{d}/search/properties/delay"),
            sorted(&phases::SEARCH_DELAY_KEYS, &[]),
        ),
    ] {
        assert_eq!(props(&s, &ptr), keys, "{ptr}");
    }
}
