use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::load::{ErrorKind, Recorded};

// === helpers ===

fn parts<'a>(metric: &'a str, objective: &'a str) -> ObjectiveParts<'a> {
    ObjectiveParts {
        name: "slo",
        metric,
        objective,
        ..Default::default()
    }
}

fn obj(metric: &str, objective: &str) -> Objective {
    Objective::parse(&parts(metric, objective)).expect("valid objective")
}

fn status_obj(statuses: &[Value], objective: &str) -> Objective {
    Objective::parse(&ObjectiveParts {
        statuses,
        ..parts("status_rate", objective)
    })
    .expect("valid objective")
}

fn parse_err(p: &ObjectiveParts<'_>) -> ObjectiveError {
    Objective::parse(p).expect_err("invalid objective")
}

/// `n` answers with `status` at `ms` (service time a tenth of it).
fn answer(r: &mut Recorded, n: u64, status: u16, ms: u64) {
    for _ in 0..n {
        r.answer(
            status,
            Duration::from_millis(ms),
            Duration::from_millis(ms / 10),
            0,
        );
    }
}

fn fail(r: &mut Recorded, n: u64, kind: ErrorKind) {
    for _ in 0..n {
        r.counts.error(kind);
    }
}

/// `ok` 200s and `bad` 503s at 10 ms.
fn rates(ok: u64, bad: u64) -> Recorded {
    let mut r = Recorded::new(true);
    answer(&mut r, ok, 200, 10);
    answer(&mut r, bad, 503, 10);
    r
}

fn window(data: &Recorded) -> Window<'_> {
    Window {
        data,
        duration: Duration::from_secs(10),
        asked_rps: None,
    }
}

fn judge(o: &Objective, data: &Recorded) -> SloResult {
    evaluate(o, &window(data), 0.95)
}

// === parse ===

#[test]
fn metrics_parse_to_quantiles_and_kinds() {
    let q = |m: &str| match obj(m, "< 1s").metric {
        Metric::Latency { quantile, .. } => quantile,
        other => panic!("{other:?}"),
    };
    assert_eq!(q("p50"), 0.5);
    assert_eq!(q("p99"), 0.99);
    assert_eq!(q("p999"), 0.999);
    assert_eq!(q("p99.9"), 0.999);
    assert_eq!(q("p9999"), 0.9999);
    assert_eq!(q("p99.99"), 0.9999);
    assert_eq!(q("p5"), 0.05);
    assert_eq!(q("max"), 1.0);
    assert_eq!(obj("availability", ">= 99%").metric, Metric::Availability);
    assert_eq!(obj("success_rate", ">= 99%").metric, Metric::SuccessRate);
    assert_eq!(obj("error_rate", "< 1%").metric, Metric::ErrorRate);
    for bad in [
        "p99x", "p0", "p100", "p", "p99.", "p.5", "P99", "latency", "",
    ] {
        let e = parse_err(&parts(bad, "< 1s"));
        assert_eq!(e.field, "metric", "{bad}");
        assert_eq!(
            e.message,
            format!(
                "unknown metric {bad:?}: use p50, p90, p95, p99, p999, max, success_rate, availability, error_rate, status_rate, throughput, recovery_time"
            )
        );
    }
}

#[test]
fn objectives_parse_with_units_and_spaces() {
    let o = obj("p99", "<500ms");
    assert_eq!((o.cmp, o.threshold), (Cmp::Lt, 500.0));
    assert_eq!(o.text, "<500ms");
    let o = obj("p99", "  <=  1.5 s ");
    assert_eq!((o.cmp, o.threshold), (Cmp::Le, 1500.0));
    assert_eq!(o.text, "<=  1.5 s");
    assert_eq!(obj("p50", "> 250us").threshold, 0.25);
    assert_eq!(obj("p50", ">= 1m").cmp, Cmp::Ge);
    assert_eq!(obj("p50", ">= 1m").threshold, 60_000.0);
    assert_eq!(obj("availability", ">= 99.5%").threshold, 0.995);
    assert_eq!(obj("error_rate", "<= 0%").threshold, 0.0);
    let o = Objective::parse(&ObjectiveParts {
        slo: Some("avail"),
        ..parts("recovery_time", "<= 20s")
    })
    .expect("recovery");
    assert_eq!(o.threshold, 20.0);
    assert_eq!(
        o.metric,
        Metric::RecoveryTime {
            slo: "avail".into(),
            consecutive: 3
        }
    );
    let t = obj("throughput", ">= 95%");
    assert_eq!(
        (t.metric, t.threshold),
        (Metric::Throughput { relative: true }, 0.95)
    );
    for abs in [">= 150/s", ">=150", "> 150 rps"] {
        let t = obj("throughput", abs);
        assert_eq!(t.metric, Metric::Throughput { relative: false }, "{abs}");
        assert_eq!(t.threshold, 150.0, "{abs}");
    }
}

#[test]
fn objective_errors_say_what_is_allowed() {
    let e = parse_err(&parts("availability", ">= 99.5"));
    assert_eq!(e.field, "objective");
    assert!(e.message.contains("write 99.5%"), "{}", e.message);
    let e = parse_err(&parts("p99", "< 50%"));
    assert!(e.message.contains("not a percentage"), "{}", e.message);
    let e = parse_err(&parts("p99", "< 500"));
    assert!(e.message.contains("500ms"), "{}", e.message);
    let e = parse_err(&parts("p99", "< 5 days"));
    assert!(e.message.contains("unknown time unit"), "{}", e.message);
    let e = parse_err(&parts("availability", ">= 101%"));
    assert!(e.message.contains("0% to 100%"), "{}", e.message);
    for bad in [
        "",
        "500ms",
        "= 5ms",
        "== 5ms",
        "=> 5ms",
        "<< 5ms",
        "< -5ms",
        "< ms",
        "< 1.2.3ms",
        "<",
    ] {
        let e = parse_err(&parts("p99", bad));
        assert_eq!(e.field, "objective", "{bad:?}");
    }
    let e = parse_err(&parts("throughput", ">= 5 apples"));
    assert!(e.message.contains("150/s"), "{}", e.message);
    // Very long numbers are refused, not infinite.
    let long = format!("< {}ms", "9".repeat(400));
    assert_eq!(parse_err(&parts("p99", &long)).field, "objective");
}

#[test]
fn optional_parts_are_checked_per_metric() {
    let o = Objective::parse(&ObjectiveParts {
        latency: Some("service"),
        ..parts("p99", "< 1s")
    })
    .expect("service");
    assert!(matches!(
        o.metric,
        Metric::Latency {
            basis: LatencyBasis::Service,
            ..
        }
    ));
    let field = |p: ObjectiveParts<'_>| parse_err(&p).field;
    assert_eq!(
        field(ObjectiveParts {
            latency: Some("wall"),
            ..parts("p99", "< 1s")
        }),
        "latency"
    );
    assert_eq!(
        field(ObjectiveParts {
            latency: Some("service"),
            ..parts("availability", ">= 99%")
        }),
        "latency"
    );
    let s = [json!(429)];
    assert_eq!(
        field(ObjectiveParts {
            statuses: &s,
            ..parts("availability", ">= 99%")
        }),
        "statuses"
    );
    assert_eq!(field(parts("status_rate", "<= 1%")), "statuses");
    for bad in [
        json!(600),
        json!(99),
        json!("6xx"),
        json!("0xx"),
        json!("abc"),
        json!(4.5),
        json!(null),
        json!("600"),
    ] {
        let s = [bad.clone()];
        assert_eq!(
            field(ObjectiveParts {
                statuses: &s,
                ..parts("status_rate", "<= 1%")
            }),
            "statuses",
            "{bad}"
        );
    }
    // slo and consecutive: recovery_time only, slo required and not itself.
    assert_eq!(field(parts("recovery_time", "<= 20s")), "slo");
    assert_eq!(
        field(ObjectiveParts {
            name: "rt",
            slo: Some("rt"),
            ..parts("recovery_time", "<= 20s")
        }),
        "slo"
    );
    assert_eq!(
        field(ObjectiveParts {
            slo: Some("a"),
            ..parts("p99", "< 1s")
        }),
        "slo"
    );
    assert_eq!(
        field(ObjectiveParts {
            slo: Some("a"),
            consecutive: Some(0),
            ..parts("recovery_time", "<= 20s")
        }),
        "consecutive"
    );
    assert_eq!(
        field(ObjectiveParts {
            consecutive: Some(2),
            ..parts("p99", "< 1s")
        }),
        "consecutive"
    );
    // over and allowBad
    let o = Objective::parse(&ObjectiveParts {
        over: Some("interval"),
        allow_bad: Some(2),
        ..parts("p99", "< 1s")
    })
    .expect("interval");
    assert_eq!(o.over, Over::Interval { allow_bad: 2 });
    assert_eq!(
        field(ObjectiveParts {
            over: Some("minute"),
            ..parts("p99", "< 1s")
        }),
        "over"
    );
    assert_eq!(
        field(ObjectiveParts {
            allow_bad: Some(1),
            ..parts("p99", "< 1s")
        }),
        "allowBad"
    );
    assert_eq!(
        field(ObjectiveParts {
            slo: Some("a"),
            over: Some("interval"),
            ..parts("recovery_time", "<= 20s")
        }),
        "over"
    );
}

#[test]
fn statuses_parse_codes_classes_and_error() {
    let s = [
        json!("5xx"),
        json!("error"),
        json!(429),
        json!("503"),
        json!("5XX"),
    ];
    let o = status_obj(&s, "<= 1%");
    assert_eq!(
        o.metric,
        Metric::StatusRate {
            statuses: vec![
                StatusClass::Class(5),
                StatusClass::Error,
                StatusClass::Code(429),
                StatusClass::Code(503)
            ]
        }
    );
}

#[test]
fn descriptions_are_stable() {
    assert_eq!(obj("p99", "<500 ms").describe(), "p99 < 500ms");
    assert_eq!(obj("p99.9", "<1s").describe(), "p999 < 1s");
    assert_eq!(obj("p95", "<1s").describe(), "p95 < 1s");
    assert_eq!(obj("max", "<= 2s").describe(), "max <= 2s");
    assert_eq!(
        obj("availability", ">=99.5%").describe(),
        "availability >= 99.5%"
    );
    let s = [json!("5xx"), json!("error")];
    assert_eq!(
        status_obj(&s, "<= 0%").describe(),
        "status_rate[5xx,error] <= 0%"
    );
    let o = Objective::parse(&ObjectiveParts {
        slo: Some("availability"),
        ..parts("recovery_time", "<= 20s")
    })
    .expect("rt");
    assert_eq!(
        o.describe(),
        "recovery_time(availability, 3 in a row) <= 20s"
    );
    assert_eq!(
        obj("throughput", ">= 95%").describe(),
        "throughput >= 95% of asked"
    );
    assert_eq!(
        obj("throughput", ">= 150").describe(),
        "throughput >= 150/s"
    );
    let o = Objective::parse(&ObjectiveParts {
        latency: Some("service"),
        over: Some("interval"),
        allow_bad: Some(2),
        ..parts("p99", "< 1s")
    })
    .expect("o");
    assert_eq!(o.describe(), "p99(service) < 1s in all intervals but 2");
    // A hand-built objective whose text does not carry the threshold.
    let mut o = obj("p99", "< 1s");
    o.text = String::new();
    o.threshold = 250.0;
    assert_eq!(o.describe(), "p99 < 250ms");
}

// === rates ===

#[test]
fn availability_verdicts_from_the_wilson_interval() {
    let o = obj("availability", ">= 99.9%");
    // 500 of 500: the lower bound 500/(500 + z²) = 99.24% < 99.9%.
    let r = judge(&o, &rates(500, 0));
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    // n/(n + z²) > 0.999 from n > 999·z² = 3837.6 on.
    assert_eq!(r.needed, Some(3838));
    assert_eq!(r.measured_text, "100%");
    assert!(
        r.detail.contains("straddles 99.9%") && r.detail.contains("about 3,838 requests"),
        "{}",
        r.detail
    );
    let r = judge(&o, &rates(10_000, 0));
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    assert_eq!(r.needed, None);
    let r = judge(&obj("availability", ">= 99%"), &rates(950, 50));
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    assert_eq!(r.measured, Some(0.95));
    assert_eq!(r.requests, 1000);
    let r = judge(&obj("availability", ">= 99%"), &rates(998, 2));
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(
        r.detail,
        "99.80% of 1,000 requests (95% CI 99.27%–99.95%) >= 99%"
    );
    let (lo, hi) = r.ci.expect("ci");
    assert!(lo < 0.998 && 0.998 < hi);
}

#[test]
fn comparisons_below_a_threshold_use_the_other_end() {
    let o = obj("error_rate", "< 10%");
    assert_eq!(judge(&o, &rates(950, 50)).verdict, Verdict::Pass);
    assert_eq!(judge(&o, &rates(800, 200)).verdict, Verdict::Fail);
    let r = judge(&o, &rates(90, 10));
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(r.needed.is_none(), "p̂ = threshold: {r:?}");
    assert_eq!(judge(&o, &rates(92, 8)).verdict, Verdict::Inconclusive);
}

#[test]
fn rates_count_as_the_module_doc_says() {
    let mut r = Recorded::new(true);
    answer(&mut r, 80, 200, 1);
    answer(&mut r, 5, 301, 1);
    answer(&mut r, 5, 429, 1);
    answer(&mut r, 4, 503, 1);
    answer(&mut r, 1, 500, 1);
    fail(&mut r, 3, ErrorKind::Timeout);
    fail(&mut r, 2, ErrorKind::ConnectRefused);
    let w = window(&r);
    let v = |o: &Objective| point_value(o, &w).expect("value");
    assert_eq!(v(&obj("availability", ">= 1%")), 0.90);
    assert_eq!(v(&obj("success_rate", ">= 1%")), 0.85);
    assert_eq!(v(&obj("error_rate", "<= 1%")), 0.10);
    let classes = [json!("5xx"), json!("error")];
    assert_eq!(v(&status_obj(&classes, "<= 1%")), 0.10);
    assert_eq!(v(&status_obj(&[json!(429)], "<= 1%")), 0.05);
    assert_eq!(v(&status_obj(&[json!("2xx"), json!("429")], ">= 1%")), 0.85);
    assert_eq!(v(&status_obj(&[json!("error")], "<= 1%")), 0.05);
    // A code and its class count each answer once.
    assert_eq!(v(&status_obj(&[json!("5xx"), json!(503)], "<= 1%")), 0.05);
}

#[test]
fn boundary_thresholds_are_judged_on_the_sample() {
    let none = [json!("5xx"), json!("error")];
    let o = status_obj(&none, "<= 0%");
    let r = judge(&o, &rates(1000, 0));
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    assert!(r.detail.contains("judged on the sample"), "{}", r.detail);
    let r = judge(&o, &rates(1000, 1));
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    let mut timeouts = rates(1000, 0);
    fail(&mut timeouts, 1, ErrorKind::Timeout);
    assert_eq!(judge(&o, &timeouts).verdict, Verdict::Fail);
    let all = obj("success_rate", ">= 100%");
    assert_eq!(judge(&all, &rates(20, 0)).verdict, Verdict::Pass);
    assert_eq!(judge(&all, &rates(20, 1)).verdict, Verdict::Fail);
    let some = obj("error_rate", "> 0%");
    assert_eq!(judge(&some, &rates(20, 0)).verdict, Verdict::Fail);
    assert_eq!(judge(&some, &rates(20, 1)).verdict, Verdict::Pass);
}

// === latency ===

/// 1000 answers: `slow` of them at 900 ms, the rest at 100 ms.
fn latencies(slow: u64) -> Recorded {
    let mut r = Recorded::new(true);
    answer(&mut r, 1000 - slow, 200, 100);
    answer(&mut r, slow, 200, 900);
    r
}

#[test]
fn p99_verdicts_from_order_statistics() {
    let o = obj("p99", "< 500ms");
    // Ranks 983..998 at 95% for n = 1000.
    let r = judge(&o, &latencies(1));
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    let m = r.measured.expect("measured");
    assert!((m - 100.0).abs() < 0.1, "{m}");
    assert_eq!(r.measured_text, "100.0 ms");
    let r = judge(&o, &latencies(50));
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    assert!(r.detail.contains(": not < 500ms"), "{}", r.detail);
    // 10 slow: rank 983 is fast, 998 slow.
    let r = judge(&o, &latencies(10));
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    assert_eq!(r.needed, None);
    let (lo, hi) = r.ci.expect("ci");
    assert!(lo < 500.0 && hi > 500.0, "{lo} {hi}");
    // 100 requests cannot bound p99 from above: hi rank 102 > 100.
    let mut few = Recorded::new(true);
    answer(&mut few, 100, 200, 100);
    let r = judge(&o, &few);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    let needed = r.needed.expect("needed");
    assert_eq!(needed, needed_for_quantile(0.99, 0.95));
    assert!((400..800).contains(&needed), "{needed}");
    assert_eq!(r.ci.expect("ci").1, f64::INFINITY);
    // ... but can show it is above 50 ms.
    assert_eq!(judge(&obj("p99", "> 50ms"), &few).verdict, Verdict::Pass);
    // ... but not that it is below 1 s: the upper rank is past the sample.
    let r = judge(&obj("p99", ">= 1s"), &few);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    assert_eq!(r.needed, Some(needed));
    assert!(r.detail.contains("to bound p99 from above"), "{}", r.detail);
    // A low quantile of a small sample cannot be bounded from below.
    let r = judge(&obj("p1", "< 50ms"), &few);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    assert_eq!(r.needed, Some(needed_for_quantile_lower(0.01, 0.95)));
    assert_eq!(judge(&obj("p1", "< 500ms"), &few).verdict, Verdict::Pass);
}

#[test]
fn service_latency_and_the_closed_loop_fallback() {
    let mut r = Recorded::new(true);
    answer(&mut r, 1000, 200, 2000); // service 200 ms
    assert_eq!(judge(&obj("p99", "< 500ms"), &r).verdict, Verdict::Fail);
    let service = Objective::parse(&ObjectiveParts {
        latency: Some("service"),
        ..parts("p99", "< 500ms")
    })
    .expect("o");
    assert_eq!(judge(&service, &r).verdict, Verdict::Pass);
    let mut closed = Recorded::new(false);
    answer(&mut closed, 1000, 200, 2000);
    let res = judge(&service, &closed);
    assert_eq!(res.verdict, Verdict::Fail);
    assert!(
        res.detail.contains("corrected latency used"),
        "{}",
        res.detail
    );
}

#[test]
fn requests_without_a_latency_rank_above_every_answer() {
    let mut r = Recorded::new(true);
    answer(&mut r, 980, 200, 100);
    fail(&mut r, 20, ErrorKind::Timeout);
    let res = judge(&obj("p99", "< 500ms"), &r);
    assert_eq!(res.verdict, Verdict::Fail, "{res:?}");
    assert_eq!(res.measured, None);
    assert_eq!(res.measured_text, "no answer (20 of 1,000 requests failed)");
    assert_eq!(
        point_value(&obj("p99", "< 500ms"), &window(&r)),
        Some(f64::INFINITY)
    );
    assert_eq!(judge(&obj("p50", "< 500ms"), &r).verdict, Verdict::Pass);
}

#[test]
fn max_is_a_fact_of_the_sample() {
    let o = obj("max", "< 1s");
    let r = judge(&o, &latencies(3));
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    assert!(r.detail.contains("fact of the sample"), "{}", r.detail);
    let mut slow = latencies(0);
    answer(&mut slow, 1, 200, 2000);
    assert_eq!(judge(&o, &slow).verdict, Verdict::Fail);
}

#[test]
fn sub_millisecond_latency_reads_in_hundredths() {
    let mut r = Recorded::new(true);
    for _ in 0..10 {
        r.answer(
            200,
            Duration::from_micros(850),
            Duration::from_micros(80),
            0,
        );
    }
    let res = judge(&obj("p50", "< 1ms"), &r);
    assert_eq!(res.measured_text, "0.85 ms");
}

// === throughput ===

#[test]
fn throughput_absolute_and_relative() {
    let data = rates(1500, 0);
    let w = window(&data); // 10 s: 150/s
    let r = evaluate(&obj("throughput", ">= 150/s"), &w, 0.95);
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.measured_text, "150.0/s");
    assert_eq!(
        evaluate(&obj("throughput", ">= 200"), &w, 0.95).verdict,
        Verdict::Fail
    );
    let rel = obj("throughput", ">= 95%");
    let r = evaluate(&rel, &w, 0.95);
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(r.detail.contains("open-loop"), "{}", r.detail);
    let asked = Window {
        asked_rps: Some(150.0),
        ..w
    };
    let r = evaluate(&rel, &asked, 0.95);
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.measured_text, "100.0% of 150/s");
    let short = Window {
        asked_rps: Some(200.0),
        ..w
    };
    let r = evaluate(&rel, &short, 0.95);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.measured, Some(0.75));
    let zero = Window {
        duration: Duration::ZERO,
        ..w
    };
    assert_eq!(
        evaluate(&obj("throughput", ">= 1/s"), &zero, 0.95).verdict,
        Verdict::Inconclusive
    );
}

// === nothing to judge ===

#[test]
fn empty_windows_and_unusable_inputs_are_inconclusive() {
    let empty = Recorded::new(true);
    for o in [
        obj("p99", "< 1s"),
        obj("availability", ">= 99%"),
        obj("throughput", ">= 1/s"),
    ] {
        let r = judge(&o, &empty);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert_eq!(r.measured, None);
        assert_eq!(r.measured_text, "no requests");
        assert_eq!(point_value(&o, &window(&empty)), None);
    }
    let data = rates(100, 0);
    let mut nan = obj("availability", ">= 99%");
    nan.threshold = f64::NAN;
    assert_eq!(judge(&nan, &data).verdict, Verdict::Inconclusive);
    let mut q = obj("p99", "< 1s");
    for bad in [1.5, 0.0, -1.0, f64::NAN] {
        q.metric = Metric::Latency {
            quantile: bad,
            basis: LatencyBasis::Corrected,
        };
        assert_eq!(judge(&q, &data).verdict, Verdict::Inconclusive);
        assert_eq!(point_value(&q, &window(&data)), None);
    }
    let o = obj("availability", ">= 99%");
    for c in [0.0, 1.0, f64::NAN, -3.0] {
        assert_eq!(
            evaluate(&o, &window(&data), c).verdict,
            Verdict::Inconclusive
        );
    }
    let rt = Objective::parse(&ObjectiveParts {
        slo: Some("x"),
        ..parts("recovery_time", "<= 20s")
    })
    .expect("rt");
    assert_eq!(judge(&rt, &data).verdict, Verdict::Inconclusive);
}

// === intervals ===

#[test]
fn interval_objectives_count_bad_intervals() {
    let good = rates(100, 0);
    let bad = rates(50, 50);
    let empty = Recorded::new(true);
    let o = Objective::parse(&ObjectiveParts {
        over: Some("interval"),
        allow_bad: Some(1),
        ..parts("availability", ">= 99%")
    })
    .expect("o");
    let ws = |list: &[&Recorded]| -> Vec<SloResult> {
        let windows: Vec<Window<'_>> = list.iter().map(|d| window(d)).collect();
        let values: Vec<Option<f64>> = windows.iter().map(|w| point_value(&o, w)).collect();
        let requests = windows.iter().map(|w| w.data.counts.requests()).sum();
        vec![evaluate_intervals(&o, &values, requests, 0.95)]
    };
    let r = &ws(&[&good, &bad, &empty, &good])[0];
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    assert_eq!(r.measured, Some(0.5));
    assert!(
        r.detail
            .starts_with("1 of 3 intervals missed >= 99% (1 allowed); worst 50.00% in interval 2"),
        "{}",
        r.detail
    );
    assert!(
        r.detail.contains("1 without requests skipped"),
        "{}",
        r.detail
    );
    let r = &ws(&[&good, &bad, &bad])[0];
    assert_eq!(r.verdict, Verdict::Fail);
    let r = &ws(&[&empty])[0];
    assert_eq!(r.verdict, Verdict::Inconclusive);
}

// === recovery ===

fn rt(objective: &str, consecutive: u32) -> Objective {
    Objective::parse(&ObjectiveParts {
        name: "recovery",
        slo: Some("availability"),
        consecutive: Some(consecutive),
        ..parts("recovery_time", objective)
    })
    .expect("rt")
}

/// The availability values of a pattern of intervals: `g`ood, `b`ad, or empty.
fn series(pattern: &str, good: &Recorded, bad: &Recorded, empty: &Recorded) -> Vec<Option<f64>> {
    let target = obj("availability", ">= 99%");
    pattern
        .chars()
        .map(|c| {
            let w = window(match c {
                'g' => good,
                'b' => bad,
                _ => empty,
            });
            point_value(&target, &w)
        })
        .collect()
}

#[test]
fn recovery_time_is_the_start_of_the_first_good_run() {
    let (good, bad, empty) = (rates(100, 0), rates(50, 50), Recorded::new(true));
    let target = obj("availability", ">= 99%");
    let s = Duration::from_secs(1);
    let r = recovery_time(
        &rt("<= 20s", 3),
        &target,
        &series("bbggg", &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    assert_eq!((r.measured, r.measured_text.as_str()), (Some(2.0), "2 s"));
    let r = recovery_time(
        &rt("<= 1s", 3),
        &target,
        &series("bbggg", &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.verdict, Verdict::Fail);
    // A good run broken by a bad interval, then one broken by an empty interval.
    let r = recovery_time(
        &rt("<= 20s", 3),
        &target,
        &series("bggbgg.ggg", &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.measured, Some(7.0), "{r:?}");
    // consecutive 1: the first good interval; half-second intervals.
    let r = recovery_time(
        &rt("<= 20s", 1),
        &target,
        &series("bbbg", &good, &bad, &empty),
        Duration::from_millis(500),
        0.95,
    );
    assert_eq!(r.measured_text, "1.5 s");
}

#[test]
fn never_recovered_fails_only_when_the_series_proves_it() {
    let (good, bad, empty) = (rates(100, 0), rates(50, 50), Recorded::new(true));
    let target = obj("availability", ">= 99%");
    let s = Duration::from_secs(1);
    let long = "b".repeat(30);
    let r = recovery_time(
        &rt("<= 20s", 3),
        &target,
        &series(&long, &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    assert_eq!(r.measured, None);
    assert_eq!(r.measured_text, "not recovered within 30 s");
    // 5 s observed cannot fail a 20 s objective.
    let r = recovery_time(
        &rt("<= 20s", 3),
        &target,
        &series("bbbbb", &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    assert_eq!(r.measured_text, "not recovered within 5 s");
    // A trailing good run may go on: recovery is at least its start (21 s > 20 s).
    let tail = format!("{}gg", "b".repeat(21));
    let r = recovery_time(
        &rt("<= 20s", 3),
        &target,
        &series(&tail, &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    let tail = format!("{}gg", "b".repeat(20));
    let r = recovery_time(
        &rt("<= 20s", 3),
        &target,
        &series(&tail, &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    // Not a recovery objective: inconclusive, no panic.
    let r = recovery_time(
        &target,
        &target,
        &series("ggg", &good, &bad, &empty),
        s,
        0.95,
    );
    assert_eq!(r.verdict, Verdict::Inconclusive);
}

// === Prometheus objectives ===

mod prometheus {
    use crate::slo::{
        Metric, Objective, ObjectiveParts, Over, PromQuery, Verdict, evaluate_points, point_value,
    };

    fn objective(text: &str, allow_bad: Option<u32>) -> Objective {
        Objective::parse(&ObjectiveParts {
            name: "overflow",
            objective: text,
            allow_bad,
            prometheus: Some(PromQuery {
                url: "http://127.0.0.1:9090".into(),
                query: "sum(rate(x[10s]))".into(),
                url_at: String::new(),
                query_at: String::new(),
            }),
            ..ObjectiveParts::default()
        })
        .expect("parses")
    }

    #[test]
    fn every_point_must_meet_the_objective_and_no_interval_is_invented() {
        let o = objective("< 1", None);
        assert!(matches!(o.metric, Metric::Prometheus(_)));
        assert_eq!(o.over, Over::Interval { allow_bad: 0 });
        let r = evaluate_points(&o, &[Some(0.0), Some(0.5), Some(0.2)], 0.95);
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.measured, Some(0.5));
        assert_eq!(r.measured_text, "0.5");
        assert_eq!(r.ci, None);
        assert!(r.detail.contains("no confidence interval"), "{}", r.detail);
        assert!(r.detail.starts_with("0 of 3 points"), "{}", r.detail);
        let r = evaluate_points(&o, &[Some(0.0), Some(4.0), None], 0.95);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.measured, Some(4.0));
        assert!(
            r.detail.contains("1 point(s) without a value"),
            "{}",
            r.detail
        );
        // allowBad lets points miss.
        let lenient = objective("< 1", Some(1));
        let r = evaluate_points(&lenient, &[Some(0.0), Some(4.0)], 0.95);
        assert_eq!(r.verdict, Verdict::Pass);
    }

    #[test]
    fn infinities_are_judged_and_no_value_is_inconclusive() {
        let o = objective(">= 99.5%", None);
        assert_eq!(o.threshold, 0.995);
        let r = evaluate_points(&o, &[Some(1.0), Some(f64::NEG_INFINITY)], 0.95);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.measured, None, "∞ has no JSON number");
        assert_eq!(r.measured_text, "-Inf");
        let r = evaluate_points(&o, &[None, None], 0.95);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert_eq!(r.measured_text, "no value");
        assert!(r.detail.contains("gave no value"), "{}", r.detail);
        let r = evaluate_points(&o, &[], 0.95);
        assert_eq!(r.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn the_loads_window_holds_no_prometheus_value() {
        let o = objective("< 1", None);
        let data = crate::load::Recorded::new(false);
        let w = crate::slo::Window {
            data: &data,
            duration: std::time::Duration::from_secs(1),
            asked_rps: None,
        };
        assert_eq!(point_value(&o, &w), None);
        let r = crate::slo::evaluate(&o, &w, 0.95);
        assert_eq!(r.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn parse_errors_name_the_prometheus_fields() {
        let bad = |text: &str, url: &str, metric: &str| {
            Objective::parse(&ObjectiveParts {
                name: "p",
                metric,
                objective: text,
                prometheus: Some(PromQuery {
                    url: url.into(),
                    query: "up".into(),
                    url_at: String::new(),
                    query_at: String::new(),
                }),
                ..ObjectiveParts::default()
            })
            .expect_err("refused")
        };
        assert_eq!(bad("< 1", "ftp://p", "").field, "prometheus.url");
        assert_eq!(bad("< 1", "http://u:pw@p:9090", "").field, "prometheus.url");
        assert_eq!(
            bad("< 5s", "http://p:9090", "").field,
            "prometheus.objective"
        );
        assert_eq!(bad("1", "http://p:9090", "").field, "prometheus.objective");
        assert_eq!(bad("< 1", "http://p:9090", "p99").field, "metric");
    }
}
