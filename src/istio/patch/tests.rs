use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::istio::spec::{AbortCode, AbortSpec, DelaySpec, FaultKind, RetrySpec};
use crate::istio::types::{HttpStatus, IstioDuration, Percentage};

fn meta() -> RecordMeta {
    RecordMeta {
        run_id: "run1".into(),
        owner: Owner {
            host: "h".into(),
            pid: 1,
            user: "u".into(),
        },
        now: jiff::Timestamp::from_second(1_800_000_000).expect("ts"),
        ttl: Duration::from_secs(600),
        stacking: crate::istio::Stacking::Any,
        force: false,
    }
}

fn vs() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "7"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {"name": "v2", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                 "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                 "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 10}}}},
                {"name": "rest", "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
            ]
        }
    })
}

fn abort(p: f64) -> Change {
    Change::Abort(AbortSpec {
        code: AbortCode::Http(HttpStatus::new(503).expect("s")),
        percentage: Percentage::new(p).expect("p"),
    })
}

fn delay() -> Change {
    Change::Delay(DelaySpec {
        fixed: "2s".parse().expect("d"),
        percentage: Percentage::HUNDRED,
    })
}

#[test]
fn delay_keeps_existing_abort_and_clear_restores_it() {
    let obj = vs();
    let plan =
        plan_change(&obj, &RouteSelector::Name("v2".into()), &delay(), &meta()).expect("plan");
    let fault = &plan.after["spec"]["http"][0]["fault"];
    assert_eq!(fault["abort"]["httpStatus"], 500, "pre-existing abort kept");
    assert_eq!(fault["delay"]["fixedDelay"], "2s");
    assert_eq!(
        plan.after["spec"]["http"][1], obj["spec"]["http"][1],
        "other route untouched"
    );
    let clear = plan_clear(&plan.after, false)
        .expect("clear")
        .expect("record");
    assert_eq!(clear.after, obj);
}

#[test]
fn forward_patch_is_guarded() {
    let plan = plan_change(&vs(), &RouteSelector::All, &abort(50.0), &meta()).expect("plan");
    let text = serde_json::to_string(&plan.patch).expect("json");
    assert!(
        text.contains(r#"{"op":"test","path":"/metadata/resourceVersion","value":"7"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""op":"test","path":"/spec/http/0""#),
        "{text}"
    );
    // A concurrent edit to a route makes the forward patch fail.
    let mut stale = vs();
    stale["spec"]["http"][1]["timeout"] = json!("3s");
    stale["metadata"]["resourceVersion"] = json!("7");
    assert!(apply(&stale, &plan.patch).is_err());
}

#[test]
fn stacked_changes_restore_the_original() {
    let obj = vs();
    let p1 = plan_change(&obj, &RouteSelector::All, &abort(50.0), &meta()).expect("p1");
    let p2 = plan_change(&p1.after, &RouteSelector::Index(1), &delay(), &meta()).expect("p2");
    assert_eq!(p2.record.changes.len(), 2);
    assert_eq!(
        p2.after["spec"]["http"][1]["fault"]["abort"]["httpStatus"],
        503
    );
    let clear = plan_clear(&p2.after, false)
        .expect("clear")
        .expect("record");
    assert_eq!(clear.after, obj);
}

#[test]
fn clear_after_concurrent_edit_is_a_conflict_naming_the_field() {
    let plan = plan_change(&vs(), &RouteSelector::Index(1), &abort(50.0), &meta()).expect("plan");
    let mut edited = plan.after.clone();
    edited["spec"]["http"][1]["fault"]["abort"]["httpStatus"] = json!(502);
    let err = plan_clear(&edited, false).expect_err("conflict");
    let msg = err.to_string();
    assert!(matches!(err, PlanError::Conflict { .. }), "{msg}");
    assert!(
        msg.contains(
            "spec.http[1].fault was edited (spec.http[1].fault.abort.httpStatus: 503 -> 502)"
        ),
        "{msg}"
    );
    // Another route edited meanwhile does not block the clear.
    let mut other = plan.after.clone();
    other["spec"]["http"][0]["timeout"] = json!("9s");
    let clear = plan_clear(&other, false).expect("clear").expect("record");
    assert_eq!(clear.after["spec"]["http"][0]["timeout"], "9s");
    assert_eq!(clear.after["spec"]["http"][1], vs()["spec"]["http"][1]);
}

#[test]
fn unknown_route_lists_the_routes() {
    let err = plan_change(
        &vs(),
        &RouteSelector::Name("nope".into()),
        &delay(),
        &meta(),
    )
    .expect_err("no route");
    let msg = err.to_string();
    assert!(msg.contains("#0 name=v2 -> reviews/v2"), "{msg}");
    assert!(msg.contains("#1 name=rest -> reviews/v1"), "{msg}");
    let by_dest = RouteSelector::Destination {
        host: "reviews.shop.svc.cluster.local".into(),
        subset: Some("v1".into()),
    };
    assert_eq!(
        plan_change(&vs(), &by_dest, &delay(), &meta())
            .expect("dest")
            .routes,
        vec![1]
    );
}

#[test]
fn fault_plus_retries_warns() {
    let r = Change::Retries {
        retries: RetrySpec {
            attempts: 3,
            per_try_timeout: None,
            retry_on: Some("5xx".parse().expect("r")),
            retry_remote_localities: None,
        },
        timeout: Some(IstioDuration::from_millis(10_000).expect("t")),
    };
    let plan = plan_change(&vs(), &RouteSelector::All, &r, &meta()).expect("plan");
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan.warnings[0].contains("spec.http[0]"));
}

#[test]
fn annotations_map_created_and_removed() {
    let mut obj = vs();
    obj["metadata"]
        .as_object_mut()
        .expect("m")
        .remove("resourceVersion");
    let plan = plan_change(&obj, &RouteSelector::All, &abort(30.0), &meta()).expect("plan");
    assert!(plan.record.created_annotations);
    let clear = plan_clear(&plan.after, false).expect("c").expect("r");
    assert_eq!(clear.after, obj);
    assert!(clear.after["metadata"].get("annotations").is_none());
}

// === properties ===

fn arb_route() -> impl Strategy<Value = Value> {
    (
        proptest::option::of("[a-z]{1,6}"),
        proptest::option::of(0u32..4),
        proptest::option::of(prop_oneof![
            Just(json!({"abort": {"httpStatus": 500, "percentage": {"value": 5}}})),
            Just(json!({"delay": {"fixedDelay": "1s", "percent": 3}}))
        ]),
        proptest::option::of("[a-z]{1,4}"),
        proptest::bool::ANY,
    )
        .prop_map(|(name, attempts, fault, extra, timeout)| {
            let mut r = serde_json::Map::new();
            if let Some(n) = name {
                r.insert("name".into(), json!(n));
            }
            r.insert("route".into(), json!([{"destination": {"host": "svc"}}]));
            if let Some(a) = attempts {
                r.insert("retries".into(), json!({"attempts": a}));
            }
            if let Some(f) = fault {
                r.insert("fault".into(), f);
            }
            if let Some(x) = extra {
                r.insert("x-unknown".into(), json!({"keep": x}));
            }
            if timeout {
                r.insert("timeout".into(), json!("5s"));
            }
            Value::Object(r)
        })
}

fn arb_vs() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(arb_route(), 1..6),
        proptest::option::of(proptest::collection::btree_map(
            "[a-z]{1,5}",
            "[a-z]{0,5}",
            0..3,
        )),
        proptest::option::of("[0-9]{1,4}"),
    )
        .prop_map(|(mut http, ann, rv)| {
            // Real routes differ in their match conditions; the last may be a catch-all.
            let n = http.len();
            for (i, r) in http.iter_mut().enumerate().take(n.saturating_sub(1)) {
                r["match"] = json!([{"uri": {"prefix": format!("/r{i}<&>")}}]);
            }
            let mut meta = serde_json::Map::new();
            meta.insert("name".into(), json!("vs"));
            if let Some(a) = ann {
                meta.insert("annotations".into(), json!(a));
            }
            if let Some(rv) = rv {
                meta.insert("resourceVersion".into(), json!(rv));
            }
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                   "metadata": meta, "spec": {"hosts": ["svc"], "http": http}})
        })
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (1u64..5000, 0.0f64..=100.0).prop_map(|(ms, p)| Change::Delay(DelaySpec {
            fixed: IstioDuration::from_millis(ms).expect("ms"),
            percentage: Percentage::new(if p < 0.0001 { 0.0 } else { p }).expect("p"),
        })),
        (200i64..600, 0.0f64..=100.0).prop_map(|(s, p)| Change::Abort(AbortSpec {
            code: AbortCode::Http(HttpStatus::new(s).expect("s")),
            percentage: Percentage::new(if p < 0.0001 { 0.0 } else { p }).expect("p"),
        })),
        (0u32..6, proptest::option::of(1u64..9000)).prop_map(|(a, t)| Change::Retries {
            retries: RetrySpec {
                attempts: a,
                per_try_timeout: None,
                retry_on: (a > 0).then(|| "5xx,503".parse().expect("r")),
                retry_remote_localities: None
            },
            timeout: t.map(|t| IstioDuration::from_millis(t).expect("t")),
        }),
    ]
}

fn arb_selector() -> impl Strategy<Value = RouteSelector> {
    prop_oneof![
        Just(RouteSelector::All),
        (0usize..6).prop_map(RouteSelector::Index)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// apply(patch) then apply(inverse) == original, also for stacked changes.
    #[test]
    fn patch_then_inverse_is_identity(obj in arb_vs(), changes in proptest::collection::vec((arb_selector(), arb_change()), 1..4)) {
        let mut cur = obj.clone();
        let mut applied = 0;
        for (sel, ch) in &changes {
            match plan_change(&cur, sel, ch, &meta()) {
                Ok(plan) => {
                    let via_patch = apply(&cur, &plan.patch).expect("forward applies to the object it was planned on");
                    prop_assert_eq!(&via_patch, &plan.after);
                    cur = plan.after;
                    applied += 1;
                }
                Err(PlanError::NoSuchRoute { .. }) => {}
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
        let cleared = plan_clear(&cur, false).expect("clear plans");
        match cleared {
            Some(c) => {
                prop_assert!(applied > 0);
                prop_assert_eq!(apply(&cur, &c.patch).expect("inverse applies"), obj.clone());
                prop_assert_eq!(c.after, obj);
            }
            None => prop_assert_eq!(applied, 0),
        }
    }

    /// An edit to a field meshdrill owns makes the rollback a conflict; the forward
    /// patch no longer applies to an object edited before it was sent.
    #[test]
    fn stale_object_fails_the_tests(obj in arb_vs(), ch in arb_change(), idx in 0usize..6) {
        let Ok(plan) = plan_change(&obj, &RouteSelector::All, &ch, &meta()) else { return Ok(()) };
        let n = plan.after["spec"]["http"].as_array().map_or(0, Vec::len);
        let i = idx % n;
        let field = ch.owned_fields()[0];
        let mut stale = plan.after.clone();
        stale["spec"]["http"][i][field] = json!("edited");
        let conflict = matches!(plan_clear(&stale, false), Err(PlanError::Conflict { .. }));
        prop_assert!(conflict, "clear of a stale object must conflict");
        // a route the change really alters is guarded by a test of the route as read
        if plan.after["spec"]["http"][i] != obj["spec"]["http"][i] {
            let mut edited = obj.clone();
            edited["spec"]["http"][i]["x-edit"] = json!(1);
            prop_assert!(apply(&edited, &plan.patch).is_err());
        }
    }

    /// Operator edits that leave meshdrill's fields alone — a new route inserted
    /// anywhere, another field set on any route — survive the rollback:
    /// clear(edit(apply(obj))) == edit(obj).
    #[test]
    fn operator_edits_survive_clear(
        obj in arb_vs(),
        changes in proptest::collection::vec((arb_selector(), arb_change()), 1..3),
        insert_at in 0usize..7,
        edit_at in 0usize..7,
    ) {
        let mut cur = obj.clone();
        for (sel, ch) in &changes {
            if let Ok(plan) = plan_change(&cur, sel, ch, &meta()) {
                cur = plan.after;
            }
        }
        let edit = |v: &mut Value| {
            let http = v["spec"]["http"].as_array_mut().expect("http");
            let k = edit_at % http.len();
            http[k]["x-operator"] = json!({"weight-tuned": true});
            let at = insert_at % (http.len() + 1);
            http.insert(at, json!({"name": "zz-inserted", "match": [{"uri": {"exact": "/new"}}],
                                   "route": [{"destination": {"host": "canary"}}]}));
        };
        let mut expected = obj.clone();
        edit(&mut expected);
        let mut edited = cur.clone();
        edit(&mut edited);
        match plan_clear(&edited, false).expect("clear plans despite the edits") {
            Some(c) => prop_assert_eq!(c.after, expected),
            None => prop_assert_eq!(edited, expected),
        }
    }
}

#[test]
fn clear_survives_a_weight_edit_and_a_route_inserted_in_front() {
    let obj = vs();
    let plan = plan_change(
        &obj,
        &RouteSelector::Name("rest".into()),
        &abort(50.0),
        &meta(),
    )
    .expect("plan");
    let mut edited = plan.after.clone();
    edited["spec"]["http"][1]["route"][0]["weight"] = json!(100);
    edited["spec"]["http"].as_array_mut().expect("http").insert(
        0,
        json!({"name": "canary", "route": [{"destination": {"host": "reviews", "subset": "v3"}}]}),
    );
    let clear = plan_clear(&edited, false).expect("clear").expect("record");
    let routes = &clear.after["spec"]["http"];
    assert_eq!(routes[0]["name"], "canary", "inserted route kept");
    assert_eq!(
        routes[2]["route"][0]["weight"], 100,
        "operator's weight kept"
    );
    assert!(
        routes[2].get("fault").is_none(),
        "fault removed: {}",
        routes[2]
    );
    assert_eq!(
        routes[1], obj["spec"]["http"][0],
        "the other route untouched"
    );
}

#[test]
fn identical_unnamed_routes_after_an_insert_are_refused_not_guessed() {
    let mut obj = vs();
    let r = json!({"route": [{"destination": {"host": "reviews"}}]});
    obj["spec"]["http"] = json!([r.clone(), r.clone()]);
    let plan = plan_change(&obj, &RouteSelector::Index(1), &abort(50.0), &meta()).expect("plan");
    // without moves, the index is trusted
    assert_eq!(
        plan_clear(&plan.after, false)
            .expect("clear")
            .expect("rec")
            .after,
        obj
    );
    let mut moved = plan.after.clone();
    moved["spec"]["http"]
        .as_array_mut()
        .expect("http")
        .insert(0, json!({"name": "x", "route": []}));
    // one candidate carries the fault, so it is found even though routes moved
    let c = plan_clear(&moved, false).expect("clear").expect("rec");
    assert!(c.after["spec"]["http"][2].get("fault").is_none());
    // both identical routes faulted, then routes moved: which is which cannot be told
    let both = plan_change(&obj, &RouteSelector::All, &abort(50.0), &meta()).expect("plan");
    let mut moved = both.after.clone();
    moved["spec"]["http"]
        .as_array_mut()
        .expect("http")
        .insert(0, json!({"name": "x", "route": []}));
    let err = plan_clear(&moved, false).expect_err("ambiguous");
    assert!(err.to_string().contains("name the routes"), "{err}");
}

#[test]
fn stacking_keeps_the_earliest_expiry_and_a_running_holder() {
    let mut holder = meta();
    holder.owner.pid = 4242;
    holder.ttl = Duration::from_secs(120);
    let p1 = plan_change(&vs(), &RouteSelector::All, &abort(10.0), &holder).expect("p1");
    let mut later = meta();
    later.owner.pid = 0;
    later.run_id = "run2".into();
    later.ttl = Duration::from_secs(86_400);
    let p2 = plan_change(&p1.after, &RouteSelector::All, &delay(), &later).expect("p2");
    assert_eq!(
        p2.record.expires, p1.record.expires,
        "a stacked change never extends the fault"
    );
    assert_eq!(
        p2.record.owner.pid, 4242,
        "the running holder stays the owner"
    );
    assert_eq!(p2.record.run_id, "run1");
    assert_eq!(p2.record.changes[1].owner.as_ref().map(|o| o.pid), Some(0));
}

#[test]
fn a_record_too_large_for_the_api_server_is_refused() {
    let mut obj = vs();
    let big: Vec<Value> = (0..3000)
        .map(|i| json!({"name": format!("route-{i}"), "route": [{"destination": {"host": "reviews"}}]}))
        .collect();
    obj["spec"]["http"] = Value::Array(big);
    let err = plan_change(&obj, &RouteSelector::All, &abort(50.0), &meta()).expect_err("too large");
    assert!(matches!(err, PlanError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("select fewer routes"), "{err}");
    // one route of the same object is fine
    assert!(
        plan_change(
            &obj,
            &RouteSelector::Name("route-7".into()),
            &abort(50.0),
            &meta()
        )
        .is_ok()
    );
}

#[test]
fn null_annotations_are_treated_as_absent() {
    let mut obj = vs();
    obj["metadata"]["annotations"] = Value::Null;
    let plan = plan_change(&obj, &RouteSelector::All, &abort(50.0), &meta()).expect("plan");
    assert!(plan.after["metadata"]["annotations"].is_object());
}

// === fault removal and destination lists ===

fn plain_vs() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "7"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {"name": "v2", "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                {"name": "rest", "route": [{"destination": {"host": "ratings"}}], "timeout": "3s"}
            ]
        }
    })
}

fn remove(kind: FaultKind) -> Change {
    Change::RemoveFault(kind)
}

/// Plans and checks that the forward patch yields the planned object.
fn step(obj: &Value, sel: &RouteSelector, change: &Change) -> Value {
    let plan = plan_change(obj, sel, change, &meta()).expect("plan");
    assert_eq!(
        apply(obj, &plan.patch).expect("patch applies"),
        plan.after,
        "{change}"
    );
    plan.after
}

fn byte_eq(a: &Value, b: &Value) {
    assert_eq!(
        serde_json::to_string(a).expect("json"),
        serde_json::to_string(b).expect("json")
    );
}

#[test]
fn abort_then_delay_keeps_both_and_remove_abort_keeps_the_delay() {
    let obj = plain_vs();
    let v2 = RouteSelector::Name("v2".into());
    let both = step(&step(&obj, &v2, &abort(50.0)), &v2, &delay());
    let fault = &both["spec"]["http"][0]["fault"];
    assert_eq!(fault["abort"]["httpStatus"], 503);
    assert_eq!(fault["delay"]["fixedDelay"], "2s");

    let plan = plan_change(&both, &v2, &remove(FaultKind::Abort), &meta()).expect("plan");
    assert_eq!(plan.routes, vec![0]);
    let fault = &plan.after["spec"]["http"][0]["fault"];
    assert!(fault.get("abort").is_none(), "{fault}");
    assert_eq!(fault["delay"]["fixedDelay"], "2s");
    // the delay is still meshdrill's, and a clear still restores the original
    let rec = read_record(&plan.after).expect("r").expect("record");
    assert_eq!(rec.routes.len(), 1);
    assert_eq!(
        rec.changes.last().map(|c| c.change.as_str()),
        Some("remove abort")
    );
    let clear = plan_clear(&plan.after, false)
        .expect("clear")
        .expect("record");
    byte_eq(&clear.after, &obj);
}

#[test]
fn removing_every_fault_restores_the_object_byte_for_byte() {
    for no_annotations in [false, true] {
        let mut obj = plain_vs();
        if !no_annotations {
            obj["metadata"]["annotations"] = json!({"team": "shop"});
        }
        let all = RouteSelector::All;
        let one = step(&obj, &all, &abort(20.0));
        let back = step(&one, &all, &remove(FaultKind::Abort));
        byte_eq(&back, &obj);

        let two = step(
            &step(&obj, &all, &delay()),
            &RouteSelector::Index(1),
            &abort(5.0),
        );
        let no_delay = step(&two, &all, &remove(FaultKind::Delay));
        assert!(read_record(&no_delay).expect("r").is_some(), "abort left");
        assert!(no_delay["spec"]["http"][0].get("fault").is_none());
        let back = step(&no_delay, &all, &remove(FaultKind::Abort));
        byte_eq(&back, &obj);
        assert_eq!(read_record(&back).expect("r"), None);
    }
}

#[test]
fn a_fault_from_before_the_drill_survives_removal() {
    let mut obj = plain_vs();
    let pre = json!({"delay": {"fixedDelay": "1s", "percentage": {"value": 1}}});
    obj["spec"]["http"][0]["fault"] = pre.clone();
    let v2 = RouteSelector::Name("v2".into());

    // remove-delay on a route meshdrill never touched: nothing changes
    let plan = plan_change(&obj, &v2, &remove(FaultKind::Delay), &meta()).expect("plan");
    assert!(plan.routes.is_empty());
    byte_eq(&plan.after, &obj);

    // add-abort, then remove-delay: meshdrill owns no delay there, the old one stays
    let aborted = step(&obj, &v2, &abort(50.0));
    let kept = step(&aborted, &v2, &remove(FaultKind::Delay));
    assert_eq!(kept["spec"]["http"][0]["fault"]["delay"], pre["delay"]);
    assert_eq!(kept["spec"]["http"][0]["fault"]["abort"]["httpStatus"], 503);
    // then remove-abort: back to the original, pre-existing delay included
    byte_eq(&step(&kept, &v2, &remove(FaultKind::Abort)), &obj);

    // a delay meshdrill put over the old one: removing it brings the old one back
    let over = step(&obj, &v2, &delay());
    assert_eq!(
        over["spec"]["http"][0]["fault"]["delay"]["fixedDelay"],
        "2s"
    );
    byte_eq(&step(&over, &v2, &remove(FaultKind::Delay)), &obj);
}

#[test]
fn remove_on_an_untouched_route_changes_nothing() {
    let obj = plain_vs();
    // meshdrill's abort on route 0 only
    let one = step(&obj, &RouteSelector::Index(0), &abort(50.0));
    let mut with_own = one.clone();
    // someone else's fault on route 1, not meshdrill's
    with_own["spec"]["http"][1]["fault"] = json!({"abort": {"httpStatus": 418}});
    let plan = plan_change(
        &with_own,
        &RouteSelector::Index(1),
        &remove(FaultKind::Abort),
        &meta(),
    )
    .expect("plan");
    assert!(plan.routes.is_empty());
    assert_eq!(plan.after["spec"]["http"], with_own["spec"]["http"]);
    assert_eq!(plan.record.routes.len(), 1, "route 0 is still meshdrill's");
    // and with no record at all: no annotation appears
    let plan = plan_change(
        &obj,
        &RouteSelector::All,
        &remove(FaultKind::Abort),
        &meta(),
    )
    .expect("plan");
    byte_eq(&plan.after, &obj);
}

#[test]
fn removal_keeps_the_expiry_and_owner() {
    let mut holder = meta();
    holder.owner.pid = 0;
    holder.ttl = Duration::from_secs(120);
    let p1 = plan_change(&plain_vs(), &RouteSelector::All, &abort(10.0), &holder).expect("p1");
    let p2 = plan_change(&p1.after, &RouteSelector::All, &delay(), &holder).expect("p2");
    let mut later = meta();
    later.owner.pid = 99;
    later.run_id = "run2".into();
    later.ttl = Duration::from_secs(1);
    let p3 = plan_change(
        &p2.after,
        &RouteSelector::All,
        &remove(FaultKind::Abort),
        &later,
    )
    .expect("p3");
    assert_eq!(p3.record.expires, p2.record.expires);
    assert_eq!(p3.record.owner, p2.record.owner);
    assert_eq!(p3.record.changes.last().and_then(|c| c.expires), None);
}

#[test]
fn destinations_selector_matches_any_listed_destination() {
    let mut obj = plain_vs();
    obj["spec"]["http"]
        .as_array_mut()
        .expect("http")
        .push(json!({"name": "v1", "route": [{"destination": {"host": "reviews.shop.svc.cluster.local", "subset": "v1"}}]}));
    let sel = RouteSelector::Destinations(vec![
        ("reviews".into(), Some("v2".into())),
        ("ratings".into(), None),
    ]);
    assert_eq!(sel.to_string(), "routes to reviews/v2 or ratings");
    let http = obj["spec"]["http"].as_array().expect("http");
    assert_eq!(sel.select(http), vec![0, 1]);
    // FQDN against a short host, any subset when none is given
    let fq = RouteSelector::Destinations(vec![("reviews.shop.svc.cluster.local".into(), None)]);
    assert_eq!(fq.select(http), vec![0, 2]);
    // a subset must be equal when given
    let v3 = RouteSelector::Destinations(vec![("reviews".into(), Some("v3".into()))]);
    assert!(v3.select(http).is_empty());
    assert!(
        RouteSelector::Destinations(Vec::new())
            .select(http)
            .is_empty()
    );

    let err = plan_change(&obj, &v3, &delay(), &meta()).expect_err("no route");
    assert!(matches!(err, PlanError::NoSuchRoute { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("no routes to reviews/v3"), "{msg}");
    assert!(msg.contains("#0 name=v2 -> reviews/v2"), "{msg}");
    assert!(msg.contains("#1 name=rest -> ratings"), "{msg}");
    assert!(
        msg.contains("#2 name=v1 -> reviews.shop.svc.cluster.local/v1"),
        "{msg}"
    );
}

fn arb_fault_add() -> impl Strategy<Value = Change> {
    prop_oneof![
        (1u64..5000).prop_map(|ms| Change::Delay(DelaySpec {
            fixed: IstioDuration::from_millis(ms).expect("ms"),
            percentage: Percentage::HUNDRED,
        })),
        (200i64..600).prop_map(|s| Change::Abort(AbortSpec {
            code: AbortCode::Http(HttpStatus::new(s).expect("s")),
            percentage: Percentage::FIFTY,
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// add-delay/add-abort on random routes, then a removal of every kind added (on
    /// every route), gives back the original object — pre-existing faults, retries and
    /// unknown fields included; and a clear after any prefix of the sequence does too.
    #[test]
    fn removing_what_was_added_is_identity(
        obj in arb_vs(),
        adds in proptest::collection::vec((arb_selector(), arb_fault_add()), 1..5),
        removal_order_abort_first in proptest::bool::ANY,
    ) {
        let mut cur = obj.clone();
        let mut kinds = Vec::new();
        for (sel, ch) in &adds {
            match plan_change(&cur, sel, ch, &meta()) {
                Ok(plan) => {
                    prop_assert_eq!(&apply(&cur, &plan.patch).expect("forward applies"), &plan.after);
                    cur = plan.after;
                    kinds.push(match ch {
                        Change::Delay(_) => FaultKind::Delay,
                        _ => FaultKind::Abort,
                    });
                }
                Err(PlanError::NoSuchRoute { .. }) => {}
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
            match plan_clear(&cur, false).expect("clear plans") {
                Some(c) => prop_assert_eq!(&c.after, &obj),
                None => prop_assert_eq!(&cur, &obj),
            }
        }
        let mut order = vec![FaultKind::Delay, FaultKind::Abort];
        if removal_order_abort_first {
            order.reverse();
        }
        for kind in order.into_iter().filter(|k| kinds.contains(k)) {
            let plan = plan_change(&cur, &RouteSelector::All, &Change::RemoveFault(kind), &meta())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&apply(&cur, &plan.patch).expect("removal applies"), &plan.after);
            cur = plan.after;
            match plan_clear(&cur, false).expect("clear plans") {
                Some(c) => prop_assert_eq!(&c.after, &obj),
                None => prop_assert_eq!(&cur, &obj),
            }
        }
        prop_assert_eq!(&cur, &obj);
        prop_assert_eq!(read_record(&cur).expect("r"), None);
    }
}

#[test]
fn a_destination_on_a_split_route_is_refused_but_whole_route_selectors_and_removal_are_not() {
    let mut obj = vs();
    obj["spec"]["http"][1]["route"] = json!([
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
        {"destination": {"host": "reviews.shop.svc.cluster.local", "subset": "v2"}, "weight": 20}
    ]);
    let v2 = RouteSelector::Destination {
        host: "reviews".into(),
        subset: Some("v2".into()),
    };
    let err = plan_change(&obj, &v2, &abort(100.0), &meta()).expect_err("refused");
    match &err {
        PlanError::SharedRoute { index, weights, .. } => {
            assert_eq!(*index, 1);
            assert_eq!(
                weights,
                "   80% -> reviews/v1\n   20% -> reviews.shop.svc.cluster.local/v2  (chosen)\n"
            );
        }
        other => panic!("{other}"),
    }
    // The host alone names every destination of both routes: both are picked.
    let host = RouteSelector::Destination {
        host: "reviews".into(),
        subset: None,
    };
    let plan = plan_change(&obj, &host, &abort(100.0), &meta()).expect("plan");
    assert_eq!(
        plan.after["spec"]["http"][1]["fault"]["abort"]["httpStatus"],
        503
    );
    // Picking the whole route by index is the user's explicit choice.
    plan_change(&obj, &RouteSelector::Index(1), &abort(100.0), &meta()).expect("plan");
    // Removing meshdrill's own fault is never refused.
    plan_change(
        &plan.after,
        &v2,
        &Change::RemoveFault(FaultKind::Abort),
        &meta(),
    )
    .expect("removal");
    // A destination with weight 0 gets no traffic: the fault reaches only v2's.
    obj["spec"]["http"][1]["route"][0]["weight"] = json!(0);
    obj["spec"]["http"][1]["route"][1]["weight"] = json!(100);
    let plan = plan_change(&obj, &v2, &abort(100.0), &meta()).expect("plan");
    assert_eq!(
        plan.after["spec"]["http"][1]["fault"]["abort"]["httpStatus"],
        503
    );
}

/// Regression (issue 14): `--route primary` with two routes named `primary` changed both
/// without a word.
#[test]
fn a_route_name_matching_several_routes_warns() {
    let mut obj = vs();
    obj["spec"]["http"][1]["name"] = json!("v2");
    let plan =
        plan_change(&obj, &RouteSelector::Name("v2".into()), &delay(), &meta()).expect("plan");
    assert_eq!(plan.routes, [0, 1]);
    assert!(
        plan.warnings.iter().any(|w| w
            .contains("2 routes are named \"v2\" (spec.http[0], spec.http[1])")
            && w.contains("--route-index")),
        "{:?}",
        plan.warnings
    );
    let one =
        plan_change(&vs(), &RouteSelector::Name("v2".into()), &delay(), &meta()).expect("plan");
    assert!(one.warnings.is_empty(), "{:?}", one.warnings);
}

/// A drill does not stack on another run's drill where the change is planned (under
/// the mesh's lock, or guarded by the cluster patch's `test`), so two drills started at
/// once cannot both pass their preflight and stack: `run` never, `fault --wait` only on
/// a drill whose process is gone, a one-shot `fault` always; a run's own record is its.
#[test]
fn stacking_on_another_runs_drill_follows_the_change_s_policy() {
    use crate::istio::Stacking;
    let live = |pid: u32| {
        let mut m = meta();
        m.owner = Owner::current();
        m.owner.pid = pid;
        m
    };
    // The first drill, owned by this (live) process.
    let first = plan_change(
        &vs(),
        &RouteSelector::All,
        &delay(),
        &live(std::process::id()),
    )
    .expect("first")
    .after;
    let second = |stacking: Stacking, run_id: &str| {
        let mut m = live(std::process::id());
        m.run_id = run_id.into();
        m.stacking = stacking;
        plan_change(&first, &RouteSelector::All, &abort(50.0), &m)
    };
    assert!(
        second(Stacking::Any, "other").is_ok(),
        "a one-shot fault stacks"
    );
    let e = second(Stacking::OnFinished, "other").expect_err("a live drill is not stacked on");
    assert!(matches!(e, PlanError::Stacked { .. }), "{e}");
    assert!(e.is_input());
    assert!(
        e.to_string().contains("already carries a drill (run run1"),
        "{e}"
    );
    assert!(matches!(
        second(Stacking::Never, "other"),
        Err(PlanError::Stacked { .. })
    ));
    assert!(second(Stacking::Never, "run1").is_ok(), "its own drill");

    // A finished drill (a one-shot change's pid 0, or a process that is gone).
    let finished = plan_change(&vs(), &RouteSelector::All, &delay(), &live(0))
        .expect("one-shot")
        .after;
    let mut m = live(std::process::id());
    m.run_id = "other".into();
    m.stacking = Stacking::OnFinished;
    assert!(plan_change(&finished, &RouteSelector::All, &abort(50.0), &m).is_ok());
    m.stacking = Stacking::Never;
    assert!(plan_change(&finished, &RouteSelector::All, &abort(50.0), &m).is_err());
}

/// `clear --force`: an edit of meshdrill's own fault is overwritten (and named), the
/// rest of the object as others left it is kept, the record goes.
#[test]
fn a_forced_clear_restores_over_an_edit_of_meshdrill_s_fields_and_names_it() {
    let obj = vs();
    let plan = plan_change(&obj, &RouteSelector::All, &abort(50.0), &meta()).expect("plan");
    let mut edited = plan.after.clone();
    edited["spec"]["http"][0]["fault"]["abort"]["percentage"]["value"] = json!(80);
    edited["spec"]["http"][1]["timeout"] = json!("3s");
    assert!(plan_clear(&edited, false).is_err(), "a conflict unforced");
    let forced = plan_clear(&edited, true).expect("forced").expect("record");
    let mut want = obj.clone();
    want["spec"]["http"][1]["timeout"] = json!("3s");
    assert_eq!(
        forced.after, want,
        "meshdrill's fields restored, the rest kept"
    );
    assert_eq!(forced.overwritten.len(), 1, "{:?}", forced.overwritten);
    assert!(
        forced.overwritten[0].contains("spec.http[0].fault.abort.percentage.value: 50 -> 80"),
        "{:?}",
        forced.overwritten
    );
    // The resourceVersion is still tested: a write racing the rollback fails it.
    let text = serde_json::to_string(&forced.patch).expect("json");
    assert!(
        text.contains(r#""path":"/metadata/resourceVersion""#),
        "{text}"
    );
    // Unedited, a forced clear is the plain clear.
    let plain = plan_clear(&plan.after, false)
        .expect("clear")
        .expect("record");
    let forced_plain = plan_clear(&plan.after, true)
        .expect("forced")
        .expect("record");
    assert_eq!(forced_plain.after, plain.after);
    assert!(forced_plain.overwritten.is_empty());
}

#[test]
fn a_forced_clear_puts_back_a_removed_field_and_skips_a_removed_route() {
    let obj = vs();
    let plan = plan_change(&obj, &RouteSelector::All, &abort(50.0), &meta()).expect("plan");
    // Route v2's fault (there before the drill, 500 on 10%) was removed by hand; route
    // rest was deleted.
    let mut edited = plan.after.clone();
    edited["spec"]["http"][0]
        .as_object_mut()
        .expect("route")
        .remove("fault");
    edited["spec"]["http"]
        .as_array_mut()
        .expect("http")
        .truncate(1);
    let forced = plan_clear(&edited, true).expect("forced").expect("record");
    assert_eq!(
        forced.after["spec"]["http"][0], obj["spec"]["http"][0],
        "v2's own fault is back"
    );
    assert_eq!(
        forced.after["spec"]["http"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(forced.after.pointer("/metadata/annotations").is_none());
    let notes = forced.overwritten.join("\n");
    assert!(notes.contains("spec.http[0].fault was removed"), "{notes}");
    assert!(notes.contains("nothing to restore there"), "{notes}");
}

#[test]
fn a_forced_clear_does_not_guess_between_look_alike_routes() {
    let obj = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r"},
        "spec": {"hosts": ["r"], "http": [
            {"route": [{"destination": {"host": "r"}}]},
            {"route": [{"destination": {"host": "r"}}]}
        ]}
    });
    let plan = plan_change(&obj, &RouteSelector::Index(0), &abort(50.0), &meta()).expect("plan");
    // A third route like the drilled one, with the same fault, is inserted first.
    let mut edited = plan.after.clone();
    let copy = edited["spec"]["http"][0].clone();
    edited["spec"]["http"]
        .as_array_mut()
        .expect("http")
        .insert(0, copy);
    let err = plan_clear(&edited, true).expect_err("ambiguous");
    assert!(err.to_string().contains("look like"), "{err}");
}
