//! Any value at any field: an error (or a scenario), never a panic.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{LOAD, doc, method, testdata};
use crate::istio::{Document, Source, manifest};
use crate::scenario::parse::parse_document;

/// A valid scenario with every step kind that needs no SLO.
pub(super) fn base_without_slos() -> Value {
    let text = doc(&format!(
        "{LOAD}{}\nrollbacks:\n- clear: repeater\n- {{name: r, restart: {{service: go-demo-8}}}}",
        method(
            "- fault: {virtualService: go-demo-8, routeIndex: 0, abort: {httpStatus: 500, percentage: 50}}
- fault: {virtualService: go-demo-8, destination: a/b, delay: {fixedDelay: 1s}}
- fault: {virtualService: go-demo-8, network: {partial: 30, httpStatus: 502}}
- retries: {virtualService: repeater, route: front, attempts: 3, perTryTimeout: 2s, retryOn: 5xx, retryRemoteLocalities: true, timeout: 9s}
- timeout: {virtualService: repeater, timeout: 2s}
- clear: {virtualService: go-demo-8, namespace: default}
- kill: {service: go-demo-8, replica: 0}
- kill: {selector: app=x, count: 2}
- restart: {service: go-demo-8, replica: 1}
- {name: a hold, hold: {duration: 5s, expect: ignore, retryCheck: {virtualService: repeater, upstream: {virtualService: go-demo-8, namespace: default}}}}
- pause: 2s
- flood: {url: \"http://{ingress}/\", headers: {Host: repeater.acme.com}, rate: 5, rampTo: 9, ramp: 1s, duration: 2s, connections: 2, timeout: 1s, http2: true, method: PUT, body: x}"
        )
    ));
    let docs = manifest::parse_str(&text, Source("base.yaml".into())).expect("YAML");
    docs[0].value.clone()
}

/// Every pointer of `v` (the root included).
pub(super) fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, p: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    walk(x, super::super::values::child(&p, k), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{p}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(p);
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

fn run(v: Value) -> Result<crate::scenario::Scenario, super::ScenarioError> {
    parse_document(&Document::from_value(Source("f".into()), v), &testdata())
}

fn replaced(base: &Value, ptr: &str, with: Value) -> Value {
    let mut v = base.clone();
    *v.pointer_mut(ptr).expect("pointer") = with;
    v
}

/// Checks the poison values and unknown keys at every pointer of `base`.
pub(super) fn poison_everywhere(base: &Value) {
    run(base.clone()).expect("the base parses");
    // A list holding a mapping with an unknown key fits no field.
    let poison = json!([[{"zzz": 1}]]);
    for p in pointers(base) {
        assert!(
            run(replaced(base, &p, poison.clone())).is_err(),
            "accepted {poison} at {p}"
        );
    }
    // An unknown key in any mapping (but headers, whose keys are header names).
    for p in pointers(base) {
        let mut v = base.clone();
        let Some(Value::Object(m)) = v.pointer_mut(&p) else {
            continue;
        };
        if p.ends_with("/headers") {
            continue;
        }
        m.insert("zzz".into(), json!(1));
        match run(v) {
            Ok(_) => panic!("accepted an unknown key in {p}"),
            Err(e) => assert!(
                e.to_string().contains(".zzz: unknown field")
                    || e.to_string().contains("zzz: unknown field"),
                "{p}: {e}"
            ),
        }
    }
}

#[test]
fn poison_and_unknown_keys_are_errors_everywhere() {
    poison_everywhere(&base_without_slos());
}

fn arb_value() -> impl Strategy<Value = Value> {
    let words = vec![
        "",
        "0",
        "1",
        "1s",
        "0s",
        "1ms",
        "1.5us",
        "50%",
        "-1",
        "5xx",
        "breach",
        "hold",
        "ignore",
        "{ingress}",
        "http://{ingress}/",
        "http://evil.com/",
        "UNAVAILABLE",
        "go-demo-8",
        "a/b",
        "*.x",
        "1e400",
        "NaN",
        "∞",
        "9999999999h",
        "p99",
        ">= 99%",
        "< 90%",
        "GET",
        "Host",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(words).prop_map(|s| Value::String(s.into())),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    let keys = vec![
        "url",
        "rate",
        "duration",
        "virtualService",
        "httpStatus",
        "abort",
        "hold",
        "expect",
        "breach",
        "name",
        "partial",
        "total",
        "service",
        "replica",
        "count",
        "zzz",
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(keys.clone()), inner), 0..4).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

/// A pointer of `base` and a value to put there.
pub(super) fn arb_edit(base: Value) -> impl Strategy<Value = (String, Value)> {
    (prop::sample::select(pointers(&base)), arb_value())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_value_at_any_field_never_panics((ptr, v) in arb_edit(base_without_slos())) {
        let _ = run(replaced(&base_without_slos(), &ptr, v));
    }

    #[test]
    fn any_text_never_panics(text in "(apiVersion: meshdrill.io/v1alpha1\nkind: Scenario\n)?[ -~\n]{0,200}") {
        if let Ok(docs) = manifest::parse_str(&text, Source("t".into())) {
            for d in &docs {
                let _ = parse_document(d, &testdata());
            }
        }
    }
}
