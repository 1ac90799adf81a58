//! What needs `Objective::parse`: SLOs, stop conditions, breaches, searches, and the
//! example fixtures (which all have SLOs).

use std::time::Duration;

use super::*;

/// `targets`, an open-loop `load` and three SLOs on lines 6–11; `method:` follows.
const SLOS: &str = "targets: [repeater.acme.com]
load: {url: \"http://{ingress}/\", headers: {Host: repeater.acme.com}, rate: 100}
slos:
- {name: availability, metric: availability, objective: \">= 99%\"}
- {name: latency, metric: p99, objective: \"< 500ms\"}
- {name: recovery, metric: recovery_time, slo: availability, objective: \"<= 20s\"}
";

/// SLOS, then `method:` on line 12 with `steps` from line 13.
fn with_slos(steps: &str) -> String {
    format!("{SLOS}{}", method(steps))
}

fn stop(cond: &str) -> String {
    format!("{}\nstopConditions:\n- {cond}", with_slos("- pause: 1s"))
}

#[test]
fn full_fixture() {
    let s = parse_file(&testdata().join("full.yaml")).expect("parses");
    assert_eq!(s.name, "network-failure");
    assert_eq!(s.allowed_hosts, ["repeater.acme.com", "*.acme.com"]);
    assert!((s.confidence - 0.95).abs() < 1e-12);
    let names: Vec<&str> = s.slos.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["availability", "latency", "no-5xx", "recovery", "rate"]
    );
    assert_eq!(s.slos[0].metric, Metric::Availability);
    assert!((s.slos[0].threshold - 0.99).abs() < 1e-12);
    assert_eq!(s.slos[1].threshold, 500.0);
    assert_eq!(s.slos[4].metric, Metric::Throughput { relative: true });
    let load = s.load.as_ref().expect("load");
    assert_eq!(load.headers, ["Host: repeater.acme.com", "X-Drill: 1"]);
    assert_eq!((load.rate, load.connections), (Some(100.0), 8));
    let ss = s.steady_state.expect("steady state");
    assert_eq!(
        (ss.duration, ss.before, ss.after),
        (Duration::from_secs(3), true, false)
    );
    assert_eq!(s.method.len(), 23);
    let k = steps(&s);
    assert_eq!(s.method[9].label, "total failure");
    assert!(matches!(k[9], StepKind::Hold(h) if h.expect == Expect::Breach { slos: vec![] }));
    assert_eq!(
        s.method[10].label,
        "hold 5s (expect breach of availability, no-5xx)"
    );
    assert!(
        matches!(k[10], StepKind::Hold(h) if h.expect == Expect::Breach { slos: vec!["availability".into(), "no-5xx".into()] })
    );
    assert_eq!(s.method[11].label, "hold 5s (not judged)");
    let StepKind::Flood(f) = k[20] else {
        panic!("{:?}", k[20])
    };
    assert_eq!(f.slos.len(), 2);
    assert_eq!(
        f.slos[1].metric,
        Metric::StatusRate {
            statuses: vec![crate::slo::StatusClass::Code(429)]
        }
    );
    assert_eq!(f.load.headers, ["host: api.acme.com"]);
    assert_eq!(s.method[20].label, "flood 50→400/s for 10s");
    let StepKind::Search(se) = k[21] else {
        panic!("{:?}", k[21])
    };
    assert!(
        matches!(&se.over, SearchOver::Abort { vs: v, selector: RouteSelector::All, code: AbortCode::Http(c) } if *v == vs("go-demo-8") && c.code() == 500)
    );
    assert_eq!(
        (se.low, se.high, se.resolution, se.probe, se.max_probes),
        (0.0, 100.0, 2.0, Duration::from_secs(5), 8)
    );
    assert_eq!(s.method[21].label, "search abort % on go-demo-8");
    let sc: Vec<(&str, Cmp, f64, &str, u32)> = s
        .stop_conditions
        .iter()
        .map(|c| {
            (
                c.slo.as_str(),
                c.breach,
                c.threshold,
                c.text.as_str(),
                c.intervals,
            )
        })
        .collect();
    assert_eq!(sc.len(), 3);
    assert_eq!(sc[0].0, "availability");
    assert_eq!((sc[0].1, sc[0].3, sc[0].4), (Cmp::Lt, "below 90%", 3));
    assert!((sc[0].2 - 0.9).abs() < 1e-12);
    assert_eq!(sc[1], ("latency", Cmp::Gt, 2000.0, "above 2s", 1));
    assert_eq!((sc[2].3, sc[2].4), ("below 50%", 2));
    assert!((sc[2].2 - 0.5).abs() < 1e-12);
    assert!(
        s.stop_conditions[0].at.ends_with("full.yaml:65"),
        "{}",
        s.stop_conditions[0].at
    );
    let labels: Vec<&str> = s.rollbacks.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["clear repeater", "restart go-demo-8", "pause 1s"]);
    super::check_against_mesh(&s, &super::shop()).expect("the fixture fits its mesh");
}

#[test]
fn cluster_fixture() {
    let s = parse_file(&testdata().join("cluster.yaml")).expect("parses");
    assert_eq!(
        s.target,
        TargetSpec::Cluster {
            context: Some("minikube".into()),
            namespace: Some("shop".into()),
            kubeconfig: Some(testdata().join("kube/config")),
            ingress: Some("127.0.0.1:8080".into()),
        }
    );
    let load = s.load.as_ref().expect("load");
    assert_eq!(
        (load.method.as_str(), load.body.as_deref(), load.rate),
        ("POST", Some("{\"q\": 1}"), None)
    );
    assert!((s.confidence - 0.99).abs() < 1e-12);
    let k = steps(&s);
    assert_eq!(s.method[0].label, "one pod down");
    assert!(
        matches!(k[1], StepKind::Kill { selector: Some(sel), count: Some(2), .. } if sel == "app=reviews,version=v2")
    );
    assert_eq!(s.method[1].label, "kill 2 pods app=reviews,version=v2");
    let StepKind::Flood(f) = k[3] else { panic!() };
    assert_eq!((f.duration, f.load.http2), (Duration::from_secs(60), true));
    let StepKind::Search(d) = k[4] else { panic!() };
    assert!(matches!(&d.over, SearchOver::Delay { fixed, .. } if *fixed == ms(300)));
    assert_eq!((d.low, d.high, d.resolution), (10.0, 90.0, 2.0));
    let StepKind::Search(r) = k[5] else { panic!() };
    assert!(matches!(&r.over, SearchOver::FloodRate { load } if load.rate.is_none()));
    assert_eq!(
        (r.low, r.high, r.resolution, r.probe),
        (100.0, 900.0, 25.0, Duration::from_secs(10))
    );
    assert_eq!(s.method[5].label, "search flood rate");
    assert_eq!(s.stop_conditions[0].threshold, 1000.0);
    assert_eq!(s.stop_conditions[0].intervals, 2);
}

#[test]
fn every_fixture_parses() {
    for f in super::schema::fixtures() {
        parse_file(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn slo_errors() {
    fails(
        &format!(
            "slos: [{{name: a, metric: availability, objective: \">= 99%\"}}]\n{}",
            method("- pause: 1s")
        ),
        6,
        "spec.slos",
        "SLOs judge the background load and there is none: add spec.load",
    );
    let slo = |extra: &str| format!("{SLOS}{extra}\n{}", method("- pause: 1s"));
    fails(
        &slo("- {name: latency, metric: p50, objective: \"< 1s\"}"),
        12,
        "spec.slos[3].name",
        "the name \"latency\" is already used by spec.slos[1]",
    );
    fails(
        &slo("- {name: r2, metric: recovery_time, slo: nope, objective: \"<= 1s\"}"),
        12,
        "spec.slos[3].slo",
        "\"nope\" is not one (SLOs: availability, latency)",
    );
    fails(
        &slo("- {name: r2, metric: recovery_time, slo: recovery, objective: \"<= 1s\"}"),
        12,
        "spec.slos[3].slo",
        "\"recovery\" is not one",
    );
    fails(
        &slo("- {metric: p50, objective: \"< 1s\"}"),
        12,
        "spec.slos[3].name",
        "name is required",
    );
    fails(
        &slo("- {name: x, metric: p50, objective: 0.5}"),
        12,
        "spec.slos[3].objective",
        "found a number",
    );
    fails(
        &slo("- {name: x, metric: status_rate, statuses: 500, objective: \"< 1%\"}"),
        12,
        "spec.slos[3].statuses",
        "expected a list such as",
    );
    fails(
        &slo("- {name: x, metric: p50, objective: \"< 1s\", consecutive: 0}"),
        12,
        "spec.slos[3].consecutive",
        "from 1 to",
    );
    fails(
        &slo("- {name: x, metric: p50, objective: \"< 1s\", overr: phase}"),
        12,
        "spec.slos[3].overr",
        "did you mean over?",
    );
    fails(
        &slo("- {name: x, metric: p50, objective: \"< 1s\", allowBad: -1}"),
        12,
        "spec.slos[3].allowBad",
        "from 0 to",
    );
    // Objective::parse's own errors land on its field.
    let e = parse(&doc(&slo(
        "- {name: x, metric: median, objective: \"< 1s\"}",
    )))
    .expect_err("median")
    .to_string();
    assert!(e.starts_with("s.yaml:12: spec.slos[3]."), "{e}");
    let closed = format!(
        "targets: [a.com]\nload: {{url: \"http://a.com/\"}}\nslos:\n- {{name: t, metric: throughput, objective: \">= 95%\"}}\n{}",
        method("- pause: 1s")
    );
    fails(
        &closed,
        9,
        "spec.slos[0].objective",
        "spec.load has no rate (closed loop): give spec.load.rate, or write the objective in requests/s",
    );
    ok(&closed.replace("95%", "150/s"));
}

#[test]
fn flood_slos() {
    let flood = |slos: &str| {
        with_slos(&format!(
            "- flood:\n    url: \"http://{{ingress}}/\"\n    headers: {{Host: repeater.acme.com}}\n    rate: 10\n    duration: 5s\n    slos:\n{slos}"
        ))
    };
    let s = ok(&flood(
        "    - {name: availability, metric: availability, objective: \">= 90%\"}\n    - {name: t, metric: throughput, objective: \">= 95%\"}",
    ));
    let StepKind::Flood(f) = &s.method[0].kind else {
        panic!()
    };
    assert_eq!(f.slos.len(), 2);
    assert_eq!(f.slos[1].metric, Metric::Throughput { relative: true });
    fails(
        &flood(
            "    - {name: a, metric: availability, objective: \">= 90%\"}\n    - {name: a, metric: p99, objective: \"< 1s\"}",
        ),
        20,
        "spec.method[0].flood.slos[1].name",
        "already used by spec.method[0].flood.slos[0]",
    );
    fails(
        &flood("    - {name: back, metric: recovery_time, slo: latency, objective: \"<= 5s\"}"),
        19,
        "spec.method[0].flood.slos[0].slo",
        "\"latency\" is not one (SLOs: (none))",
    );
    // A flood's SLOs judge its own traffic while it runs: no recovery time there.
    fails(
        &flood(
            "    - {name: t, metric: throughput, objective: \">= 95%\"}\n    - {name: back, metric: recovery_time, slo: t, objective: \"<= 5s\"}",
        ),
        20,
        "spec.method[0].flood.slos[1].metric",
        "recovery_time belongs in spec.slos",
    );
}

#[test]
fn expectations_name_known_slos() {
    // A recovery time is judged after the drill: it cannot be a step's breach.
    fails(
        &with_slos("- hold: {duration: 1s, expect: {breach: [recovery]}}"),
        13,
        "spec.method[0].hold.expect.breach[0]",
        "recovery is a recovery_time SLO",
    );
    let s = ok(&with_slos(
        "- hold: {duration: 1s, expect: breach}\n- hold: {duration: 1s, expect: {breach: [latency]}}",
    ));
    let k = steps(&s);
    assert!(matches!(k[0], StepKind::Hold(h) if h.expect == Expect::Breach { slos: vec![] }));
    assert_eq!(s.method[0].label, "hold 1s (expect breach)");
    fails(
        &with_slos("- hold: {duration: 1s, expect: {breach: [latency, nope]}}"),
        13,
        "spec.method[0].hold.expect.breach[1]",
        "no SLO named \"nope\" in spec.slos (availability, latency, recovery)",
    );
    let f = with_slos(
        "- flood: {url: \"http://{ingress}/\", headers: {Host: repeater.acme.com}, rate: 1, duration: 1s, expect: {breach: [x]}}",
    );
    fails(
        &f,
        13,
        "spec.method[0].flood.expect.breach[0]",
        "no SLO named \"x\"",
    );
}

#[test]
fn searches() {
    let s = ok(&with_slos(
        "- search: {abort: {virtualService: a, route: r, grpcStatus: INTERNAL}, low: 10, high: 20}
- search: {delay: {virtualService: a, fixedDelay: 2s}, high: 1, resolution: 0.1, maxProbes: 20}
- search: {flood: {url: \"http://{ingress}/\", headers: {Host: repeater.acme.com}, rate: 5}, low: 10, high: 42}",
    ));
    let k = steps(&s);
    let StepKind::Search(a) = k[0] else { panic!() };
    assert!(
        matches!(&a.over, SearchOver::Abort { selector: RouteSelector::Name(r), code: AbortCode::Grpc(g), .. } if r == "r" && g.name() == "INTERNAL")
    );
    assert_eq!(
        (a.low, a.high, a.resolution, a.max_probes),
        (10.0, 20.0, 2.0, 8)
    );
    let StepKind::Search(d) = k[1] else { panic!() };
    assert_eq!(
        (d.low, d.high, d.resolution, d.max_probes),
        (0.0, 1.0, 0.1, 20)
    );
    let StepKind::Search(f) = k[2] else { panic!() };
    assert_eq!(f.resolution, 1.0);
    assert!(matches!(&f.over, SearchOver::FloodRate { load } if load.rate == Some(5.0)));
    assert_eq!(s.method[1].label, "search delay % on a");
}

#[test]
fn stop_conditions() {
    let s = ok(&stop("{slo: latency, above: 1.5s, for: 2500ms}"));
    let c = &s.stop_conditions[0];
    assert_eq!(
        (
            c.slo.as_str(),
            c.breach,
            c.threshold,
            c.text.as_str(),
            c.intervals
        ),
        ("latency", Cmp::Gt, 1500.0, "above 1.5s", 3)
    );
    assert_eq!(c.at, "s.yaml:15");
    let f = |cond: &str, field: &str, message: &str| fails(&stop(cond), 15, field, message);
    f(
        "{slo: nope, below: 90%}",
        "spec.stopConditions[0].slo",
        "no SLO named \"nope\" in spec.slos (availability, latency, recovery)",
    );
    f(
        "{slo: recovery, above: 30s}",
        "spec.stopConditions[0].slo",
        "recovery_time",
    );
    f(
        "{slo: availability, below: 90%, above: 99%}",
        "spec.stopConditions[0].above",
        "below and above exclude each other",
    );
    f(
        "{slo: availability}",
        "spec.stopConditions[0]",
        "give one of below, above",
    );
    f(
        "{slo: availability, below: 2s}",
        "spec.stopConditions[0].below",
        "below 2s: ",
    );
    f(
        "{slo: availability, below: 2s}",
        "spec.stopConditions[0].below",
        "write it in the unit of availability's objective (>= 99%)",
    );
    f(
        "{slo: latency, above: 90%}",
        "spec.stopConditions[0].above",
        "above 90%",
    );
    f(
        "{slo: availability, below: [1]}",
        "spec.stopConditions[0].below",
        "found a list",
    );
    f(
        "{slo: availability, below: 90%, for: 0s}",
        "spec.stopConditions[0].for",
        "more than 0",
    );
    f(
        "{slo: availability, below: 90%, after: 1s}",
        "spec.stopConditions[0].after",
        "unknown field \"after\"; allowed: slo, below, above, for",
    );
    fails(
        &format!("{}\nstopConditions: {{}}", with_slos("- pause: 1s")),
        14,
        "spec.stopConditions",
        "expected a list",
    );
    // Absolute and relative throughput keep their units.
    let t = format!(
        "targets: [a.com]\nload: {{url: \"http://a.com/\", rate: 200}}\nslos:\n- {{name: abs, metric: throughput, objective: \">= 150/s\"}}\n- {{name: rel, metric: throughput, objective: \">= 95%\"}}\n{}\nstopConditions:\n- {{slo: abs, below: 100/s}}\n- {{slo: rel, below: 50%}}",
        method("- pause: 1s")
    );
    let s = ok(&t);
    assert_eq!(s.stop_conditions[0].threshold, 100.0);
    assert!((s.stop_conditions[1].threshold - 0.5).abs() < 1e-12);
    fails(
        &t.replace("below: 100/s", "below: 50%"),
        14,
        "spec.stopConditions[0].below",
        "write it in the unit of abs's objective",
    );
}

#[test]
fn with_slos_poison_and_unknown_keys_are_errors_everywhere() {
    let docs = manifest::read_file(&testdata().join("full.yaml")).expect("YAML");
    super::fuzz::poison_everywhere(&docs[0].value);
}
