use serde_json::{Value, json};

use super::*;

fn vars() -> Vars {
    let mut v = Vars::default();
    v.insert("code", json!(200));
    v.insert("codes", json!([200, 204]));
    v.insert("word", json!("ok"));
    v.insert("ratio", json!(0.5));
    v.insert("host", json!("example.com"));
    v.insert("field", json!("name"));
    v.insert("want", json!("a"));
    v
}

fn met(t: Value, output: Value) -> bool {
    match within(&t, &output, &vars()) {
        Ok(Checked::Met(m)) => m,
        other => panic!("{t} on {output}: {other:?}"),
    }
}

fn err(t: Value, output: Value) -> String {
    match within(&t, &output, &vars()) {
        Err(e) => e,
        other => panic!("{t} on {output}: expected an error, got {other:?}"),
    }
}

fn http(status: u16, body: Value) -> Value {
    json!({"status": status, "headers": {"Content-Type": "application/json"}, "body": body})
}

// === bool, int, str ===

#[test]
fn bool_is_python_equality() {
    assert!(met(json!(true), json!(true)));
    assert!(!met(json!(true), json!(false)));
    assert!(met(json!(false), json!(false)));
    // chaoslib does `value == tolerance`, and in Python True == 1 == 1.0 and
    // False == 0: an output of 1 meets `true`.
    assert!(met(json!(true), json!(1)));
    assert!(met(json!(true), json!(1.0)));
    assert!(met(json!(false), json!(0)));
    assert!(!met(json!(true), json!(2)));
    assert!(!met(json!(true), json!("true")));
    assert!(!met(json!(false), json!(null)));
    // No status lookup for bools.
    assert!(!met(json!(true), json!({"status": true})));
}

#[test]
fn int_compares_the_status_of_a_map() {
    assert!(met(json!(200), http(200, json!("x"))));
    assert!(!met(json!(200), http(503, json!("x"))));
    assert!(met(
        json!(0),
        json!({"status": 0, "stdout": "", "stderr": ""})
    ));
    // A map without status is compared whole (never equal to an int).
    assert!(!met(json!(200), json!({"code": 200})));
    // Python equality: 200 == 200.0, True == 1.
    assert!(met(json!(200), json!(200.0)));
    assert!(met(json!(200), json!({"status": 200.0})));
    assert!(!met(json!(200), json!(200.5)));
    assert!(met(json!(1), json!(true)));
    assert!(!met(json!(200), json!("200")));
    // Exact int/float comparison, as Python: 2^53 + 1 != 2.0^53.
    assert!(!met(
        json!(9_007_199_254_740_993_i64),
        json!(9_007_199_254_740_992.0)
    ));
    assert!(met(json!(u64::MAX), json!(u64::MAX)));
}

#[test]
fn str_is_substituted_then_compared() {
    assert!(met(json!("ok"), json!("ok")));
    assert!(!met(json!("ok"), json!("OK")));
    assert!(met(json!("${word}"), json!("ok")));
    assert!(met(json!("said $word"), json!("said ok")));
    assert!(met(json!("${unknown}"), json!("${unknown}")));
    // A str never looks at a status.
    assert!(!met(json!("200"), http(200, json!(""))));
}

#[test]
fn str_that_becomes_another_type_is_dispatched_again() {
    // "${code}" is the int 200: the int rule, status lookup included.
    assert!(met(json!("${code}"), http(200, json!(""))));
    assert!(!met(json!("${code}"), http(500, json!(""))));
    // A list: membership of the status.
    assert!(met(json!("${codes}"), http(204, json!(""))));
    // A float has no handler in chaoslib: not met, even when equal.
    assert!(!met(json!("${ratio}"), json!(0.5)));
}

// === lists ===

#[test]
fn list_with_a_status_map_is_membership_of_the_status() {
    assert!(met(json!([200, 201]), http(201, json!(""))));
    assert!(!met(json!([200, 201]), http(500, json!(""))));
    // Two items, but a status map: membership, not a range.
    assert!(!met(json!([200, 299]), http(250, json!(""))));
    assert!(met(json!([200, 204, 301]), http(301, json!(""))));
}

#[test]
fn two_item_list_is_an_inclusive_range() {
    assert!(met(json!([1, 5]), json!(1)));
    assert!(met(json!([1, 5]), json!(5)));
    assert!(met(json!([1, 5]), json!(2.5)));
    assert!(!met(json!([1, 5]), json!(5.000001)));
    assert!(!met(json!([1, 5]), json!(0)));
    assert!(met(json!([0.5, 1]), json!(true)));
    // Strings compare as Python strings do.
    assert!(met(json!(["a", "m"]), json!("hello")));
    assert!(!met(json!(["a", "m"]), json!("zebra")));
    // Lists compare item by item.
    assert!(met(json!([[1, 0], [1, 9]]), json!([1, 2, 3])));
}

#[test]
fn range_list_against_an_incomparable_value_is_an_error() {
    // Python: '<=' not supported between instances of 'int' and 'str'.
    let e = err(json!([200, 299]), json!("abc"));
    assert!(
        e.contains("'<=' not supported between instances of 'int' and 'str'"),
        "{e}"
    );
    assert!(err(json!([1, 5]), json!(null)).contains("'int' and 'NoneType'"));
    // Chained comparison short-circuits: 10 <= 3 is False, 3 <= "x" never runs.
    assert!(!met(json!([10, "x"]), json!(3)));
}

#[test]
fn other_list_lengths_are_membership() {
    assert!(met(json!([1, 2, 3]), json!(2)));
    assert!(met(json!([1, 2, 3]), json!(2.0)));
    assert!(!met(json!([1, 2, 3]), json!(4)));
    assert!(met(json!(["a"]), json!("a")));
    assert!(!met(json!([]), json!(null)));
    assert!(met(json!([null, "x", [1]]), json!([1])));
}

// === range ===

#[test]
fn range_compares_decimals_inclusively() {
    let r = |lo: Value, hi: Value| json!({"type": "range", "range": [lo, hi]});
    assert!(met(r(json!(0), json!(10)), json!(0)));
    assert!(met(r(json!(0), json!(10)), json!(10)));
    assert!(met(r(json!(0), json!(10)), json!(9.99)));
    assert!(!met(r(json!(0), json!(10)), json!(10.000_000_1)));
    assert!(!met(r(json!(0), json!(10)), json!(-1)));
    assert!(met(r(json!(-5.5), json!(-1)), json!(-3)));
    // Decimal("0.1") is exactly 0.1, below the float 0.1000000000000000055…
    assert!(!met(r(json!(0.1), json!(1)), json!("0.1")));
    assert!(met(r(json!(0.1), json!(1)), json!(0.1)));
    // Numeric strings are numbers to Decimal; whitespace, exponents, underscores too.
    assert!(met(r(json!(0), json!(10)), json!(" 7 ")));
    assert!(met(r(json!(0), json!(2000)), json!("1_000")));
    assert!(met(r(json!(0), json!(2000)), json!("1.5e3")));
    assert!(!met(r(json!(0), json!(2000)), json!("1.5e4")));
    assert!(met(r(json!(0), json!(1)), json!(true)));
    assert!(!met(r(json!(0), json!(1e300)), json!("Infinity")));
    assert!(!met(r(json!(1e300), json!(1e308)), json!(u64::MAX)));
    // Big integers compare exactly.
    assert!(met(r(json!(0), json!(u64::MAX)), json!(u64::MAX)));
    assert!(!met(r(json!(0), json!(u64::MAX - 1)), json!(u64::MAX)));
}

#[test]
fn range_on_a_non_number_is_not_met() {
    let t = json!({"type": "range", "range": [0, 10]});
    assert!(!met(t.clone(), json!("abc")));
    assert!(!met(t.clone(), json!("1__0")));
    assert!(!met(t.clone(), json!("")));
    // chaoslib raises TypeError here (documented difference): not met.
    assert!(!met(t.clone(), json!(null)));
    assert!(!met(t.clone(), json!([1])));
    assert!(!met(t.clone(), json!({"status": 5})));
    // Decimal NaN cannot be ordered: Python raises InvalidOperation.
    assert!(err(t, json!("NaN")).contains("NaN"));
}

#[test]
fn range_target_picks_a_key_of_a_map() {
    let t = json!({"type": "range", "range": [200, 299], "target": "status"});
    assert!(met(t.clone(), http(204, json!(""))));
    assert!(!met(t.clone(), http(404, json!(""))));
    // A missing key falls back to the whole value (`value.get(target, value)`).
    let t2 = json!({"type": "range", "range": [0, 9], "target": "missing"});
    assert!(!met(t2, json!({"a": 1})));
    // An empty target is ignored; a target on a non-map raises AttributeError.
    assert!(met(
        json!({"type": "range", "range": [0, 9], "target": ""}),
        json!(3)
    ));
    assert!(err(t, json!(3)).contains("not a map"));
}

// === regex ===

#[test]
fn regex_searches_the_target_or_the_value() {
    let t = json!({"type": "regex", "pattern": "^hel+o", "target": "body"});
    assert!(met(t.clone(), http(200, json!("hello world"))));
    assert!(!met(t.clone(), http(200, json!("say hello"))));
    // re.search, not re.match: anywhere in the string.
    assert!(met(
        json!({"type": "regex", "pattern": "wor"}),
        json!("hello world")
    ));
    // The pattern is substituted first.
    assert!(met(
        json!({"type": "regex", "pattern": "${host}$", "target": "body"}),
        http(200, json!("at example.com"))
    ));
}

#[test]
fn regex_on_a_non_string_is_an_error() {
    // Without target, an http output is a dict: Python's re.search raises TypeError.
    let e = err(
        json!({"type": "regex", "pattern": "x"}),
        http(200, json!("x")),
    );
    assert!(e.contains("target"), "{e}");
    // A JSON body that is a map is not searched either.
    let e = err(
        json!({"type": "regex", "pattern": "x", "target": "body"}),
        http(200, json!({"x": 1})),
    );
    assert!(e.contains("dict"), "{e}");
    let e = err(json!({"type": "regex", "pattern": "(?<=a)b"}), json!("ab"));
    assert!(e.contains("look-around"), "{e}");
}

// === jsonpath ===

#[test]
fn jsonpath_needs_one_match() {
    let body = json!({"items": [{"name": "a", "ok": true}, {"name": "b", "ok": false}]});
    let t = |p: &str| json!({"type": "jsonpath", "path": p, "target": "body"});
    assert!(met(t("$.items[0].name"), http(200, body.clone())));
    assert!(!met(t("$.missing"), http(200, body.clone())));
    assert!(met(t("$.items[?@.ok == true]"), http(200, body.clone())));
    assert!(!met(t("$.items[?@.name == 'z']"), http(200, body.clone())));
    // The path is substituted.
    assert!(met(t("$.items[*].${field}"), http(200, body)));
}

#[test]
fn jsonpath_parses_a_string_value_as_json() {
    let t = json!({"type": "jsonpath", "path": "$.a", "expect": 1, "target": "body"});
    assert!(met(t.clone(), json!({"status": 200, "body": "{\"a\": 1}"})));
    // Not JSON: queried as a string, where `$.a` finds nothing.
    assert!(!met(t, json!({"status": 200, "body": "a=1"})));
    // Without target, the whole output is queried.
    assert!(met(
        json!({"type": "jsonpath", "path": "$.status"}),
        http(503, json!(""))
    ));
}

#[test]
fn jsonpath_count_is_exact() {
    let body = json!({"xs": [1, 2, 3]});
    let t = |count: Value| json!({"type": "jsonpath", "path": "$.xs[*]", "count": count});
    assert!(met(t(json!(3)), body.clone()));
    assert!(!met(t(json!(2)), body.clone()));
    assert!(met(t(json!(3.0)), body.clone()));
    // count: 0 turns "at least one" into "none".
    assert!(met(
        json!({"type": "jsonpath", "path": "$.nope", "count": 0}),
        body
    ));
}

#[test]
fn jsonpath_expect_compares_the_matched_values() {
    let body = json!({"items": [{"name": "a"}, {"name": "b"}], "one": {"name": "a"}});
    let t = |path: &str, expect: Value| json!({"type": "jsonpath", "path": path, "expect": expect});
    // A scalar expect: exactly one match equal to it.
    assert!(met(t("$.one.name", json!("a")), body.clone()));
    assert!(!met(t("$.items[*].name", json!("a")), body.clone()));
    // A list expect: the matched values, in order.
    assert!(met(t("$.items[*].name", json!(["a", "b"])), body.clone()));
    assert!(!met(t("$.items[*].name", json!(["b", "a"])), body.clone()));
    // expect is substituted; a map expect compares one matched map.
    assert!(met(t("$.one.name", json!("${want}")), body.clone()));
    assert!(met(t("$.one", json!({"name": "a"})), body.clone()));
    // expect: null is present, so it is [None]; no match with an expect is not met.
    assert!(!met(t("$.one.name", json!(null)), body.clone()));
    assert!(met(t("$.one.missing", json!([])), body.clone()));
    // expect overrides count (chaoslib assigns the result again).
    let both = json!({"type": "jsonpath", "path": "$.one.name", "count": 5, "expect": "a"});
    assert!(met(both, body));
}

#[test]
fn jsonpath_path_that_does_not_parse_after_substitution_is_an_error() {
    let mut v = vars();
    v.insert("bad", json!("[[["));
    let t = json!({"type": "jsonpath", "path": "$${bad}"});
    assert!(within(&t, &json!({}), &v).is_err());
}

// === probe and others ===

#[test]
fn probe_tolerance_is_returned_with_the_value_set() {
    let t = json!({
        "type": "probe", "name": "check",
        "provider": {"type": "python", "module": "m", "func": "f", "arguments": {"x": 1}}
    });
    let out = http(200, json!("hi"));
    let Ok(Checked::Probe(p)) = within(&t, &out, &vars()) else {
        panic!("not a probe");
    };
    assert_eq!(p["provider"]["arguments"], json!({"x": 1, "value": out}));
    assert_eq!(p["name"], "check");

    // No arguments yet: created (chaoslib would raise KeyError).
    let t = json!({"type": "probe", "name": "c", "provider": {"type": "http", "url": "u"}});
    let Ok(Checked::Probe(p)) = within(&t, &json!(3), &vars()) else {
        panic!("not a probe");
    };
    assert_eq!(p["provider"]["arguments"], json!({"value": 3}));
}

#[test]
fn unknown_object_type_null_and_float_are_not_met() {
    assert!(!met(json!({"type": "nope"}), json!(1)));
    assert!(!met(json!({}), json!({})));
    assert!(!met(json!(null), json!(null)));
    assert!(!met(json!(0.5), json!(0.5)));
}

#[test]
fn truthiness_is_pythons() {
    for v in [
        json!(false),
        json!(0),
        json!(0.0),
        json!(""),
        json!([]),
        json!({}),
        json!(null),
    ] {
        assert!(!truthy(&v), "{v}");
    }
    for v in [
        json!(true),
        json!(-1),
        json!(0.1),
        json!("0"),
        json!([0]),
        json!({"a": 0}),
    ] {
        assert!(truthy(&v), "{v}");
    }
}

// === validate ===

#[test]
fn validate_accepts_the_valid_forms() {
    for t in [
        json!(true),
        json!(200),
        json!("ok"),
        json!([200, 201]),
        json!({"type": "range", "range": [0, 1.5]}),
        json!({"type": "range", "range": [true, 3]}),
        json!({"type": "regex", "pattern": "^ok$"}),
        json!({"type": "regex", "pattern": "${prefix}(?<=x)"}),
        json!({"type": "jsonpath", "path": "$.items[*].name"}),
        json!({"type": "jsonpath", "path": " $.a "}),
        json!({"type": "probe", "name": "p", "provider": {"type": "python", "module": "m", "func": "f"}}),
    ] {
        assert_eq!(validate(&t), Ok(()), "{t}");
    }
}

#[test]
fn validate_rejects_with_what_to_write_instead() {
    let cases = [
        (json!(0.5), "range: [low, high]"),
        (json!(null), "write a bool"),
        (json!({"range": [0, 1]}), "needs a type"),
        (
            json!({"type": "between"}),
            "range, regex, jsonpath or probe",
        ),
        (json!({"type": "range"}), "range: [low, high]"),
        (json!({"type": "range", "range": [1, 2, 3]}), "write two"),
        (json!({"type": "range", "range": "1-2"}), "must be a list"),
        (
            json!({"type": "range", "range": ["1", 2]}),
            "lower bound must be a number",
        ),
        (json!({"type": "regex"}), "needs a pattern"),
        (json!({"type": "regex", "pattern": 5}), "must be a string"),
        (
            json!({"type": "regex", "pattern": "(a"}),
            "does not compile",
        ),
        (
            json!({"type": "regex", "pattern": "(?<=a)b"}),
            "no look-around",
        ),
        (json!({"type": "jsonpath"}), "needs a path"),
        (json!({"type": "jsonpath", "path": "  "}), "is empty"),
        (
            json!({"type": "jsonpath", "path": "$.a[?(@.b = 1)]"}),
            "RFC 9535",
        ),
        (json!({"type": "probe"}), "needs a provider"),
        (
            json!({"type": "probe", "provider": {"arguments": [1]}}),
            "must be a map",
        ),
    ];
    for (t, want) in cases {
        match validate(&t) {
            Err(e) => assert!(e.contains(want), "{t}: {e:?} lacks {want:?}"),
            Ok(()) => panic!("{t} accepted"),
        }
    }
}

#[test]
fn decimal_parsing_follows_python() {
    let d = |s: &str| Dec::parse(s);
    assert_eq!(d("1.50"), d("1.5"));
    assert_eq!(d("0001.5e0"), d("15e-1"));
    assert_eq!(d("-0"), d("0.000"));
    assert!(d(".5").is_some() && d("5.").is_some());
    for bad in [
        "", ".", "e5", "1e", "1_", "_1", "1__0", "0x10", "1.2.3", "--1",
    ] {
        assert_eq!(d(bad), None, "{bad:?}");
    }
    assert_eq!(d("-inf"), Some(Dec::Inf { neg: true }));
    assert_eq!(d("NaN"), Some(Dec::NaN));
    let ord = |a: &str, b: &str| d(a).zip(d(b)).map(|(a, b)| a.compare(&b));
    assert_eq!(ord("-2", "-10"), Some(Ordering::Greater));
    assert_eq!(ord("0.12", "0.125"), Some(Ordering::Less));
    assert_eq!(ord("-0", "0"), Some(Ordering::Equal));
    assert_eq!(ord("1e2", "99.9"), Some(Ordering::Greater));
    assert_eq!(ord("-inf", "-1e999"), Some(Ordering::Less));
}
