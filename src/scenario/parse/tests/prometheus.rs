//! `prometheus: {url, query, objective}` SLOs: what they become, and every field error
//! with its line.

use super::*;
use crate::slo::{Metric, Over};

/// `targets`, `load` and a Prometheus SLO (its fields on lines 10–12) after an
/// availability one; `method:` on line 13.
fn prom(fields: &str) -> String {
    format!(
        "targets: [repeater.acme.com]
load: {{url: \"http://{{ingress}}/\", headers: {{Host: repeater.acme.com}}, rate: 10}}
slos:
- {{name: availability, metric: availability, objective: \">= 99%\"}}
- name: overflow
{fields}{}",
        method("- hold: 1s")
    )
}

const GOOD: &str = "  prometheus:
    url: http://127.0.0.1:9090/
    query: sum(rate(envoy_cluster_upstream_rq_retry_overflow[10s]))
    objective: \"< 1\"
";

#[test]
fn a_prometheus_slo_keeps_its_url_query_and_where_they_are() {
    let s = ok(&prom(GOOD));
    let o = &s.slos[1];
    let Metric::Prometheus(q) = &o.metric else {
        panic!("{:?}", o.metric)
    };
    assert_eq!(q.url, "http://127.0.0.1:9090");
    assert_eq!(
        q.query,
        "sum(rate(envoy_cluster_upstream_rq_retry_overflow[10s]))"
    );
    assert_eq!(q.url_at, "s.yaml:12: spec.slos[1].prometheus.url");
    assert_eq!(q.query_at, "s.yaml:13: spec.slos[1].prometheus.query");
    assert_eq!((o.cmp, o.threshold), (Cmp::Lt, 1.0));
    assert_eq!(o.over, Over::Interval { allow_bad: 0 });
    assert_eq!(
        o.describe(),
        "prometheus(sum(rate(envoy_cluster_upstream_rq_retry_overflow[10s]))) < 1 in every interval"
    );
    // A percentage is a share of 1; allowBad lets points miss.
    let s = ok(&prom(
        "  allowBad: 2\n  prometheus: {url: 'http://prom:9090/p', query: up, objective: '>= 99.5%'}\n",
    ));
    assert_eq!(s.slos[1].threshold, 0.995);
    assert_eq!(s.slos[1].over, Over::Interval { allow_bad: 2 });
}

#[test]
fn prometheus_field_errors_name_the_line_and_field() {
    let f = |fields: &str, line: u64, field: &str, message: &str| {
        fails(&prom(fields), line, field, message)
    };
    let with = |url: &str, query: &str, objective: &str| {
        format!("  prometheus:\n    url: {url}\n    query: {query}\n    objective: {objective}\n")
    };
    f(
        &with("127.0.0.1:9090", "up", "'< 1'"),
        12,
        "spec.slos[1].prometheus.url",
        "give the base of Prometheus' HTTP API",
    );
    f(
        &with("https://prom.example.com", "up", "'< 1'"),
        12,
        "spec.slos[1].prometheus.url",
        "https is not supported yet",
    );
    f(
        &with("http://prom:9090/api/v1/query", "up", "'< 1'"),
        12,
        "spec.slos[1].prometheus.url",
        "already names the API",
    );
    f(
        &with("http://prom:9090", "'  '", "'< 1'"),
        13,
        "spec.slos[1].prometheus.query",
        "must not be empty",
    );
    f(
        &with("http://prom:9090", "up", "'< 1ms'"),
        14,
        "spec.slos[1].prometheus.objective",
        "a PromQL value is a plain number",
    );
    f(
        &with("http://prom:9090", "up", "'about 1'"),
        14,
        "spec.slos[1].prometheus.objective",
        "no comparison",
    );
    f(
        "  prometheus: {url: 'http://p:9090', query: up}\n",
        11,
        "spec.slos[1].prometheus.objective",
        "required",
    );
    f(
        "  prometheus: {url: 'http://p:9090', query: up, objective: '< 1', step: 5s}\n",
        11,
        "spec.slos[1].prometheus.step",
        "unknown field",
    );
    f(
        &format!("  metric: availability\n{GOOD}"),
        11,
        "spec.slos[1].metric",
        "takes its objective inside it",
    );
    f(
        &format!("  objective: '< 1'\n{GOOD}"),
        11,
        "spec.slos[1].objective",
        "takes its objective inside it",
    );
    f(
        &format!("  over: phase\n{GOOD}"),
        11,
        "spec.slos[1].over",
        "judged at each 1 s point",
    );
    f(
        &format!("  latency: service\n{GOOD}"),
        11,
        "spec.slos[1].latency",
        "not to a Prometheus objective",
    );
}

#[test]
fn a_prometheus_slo_cannot_stop_a_drill_or_time_a_recovery() {
    let text = format!(
        "{}\nstopConditions:\n- {{slo: overflow, above: 5}}\n",
        prom(GOOD)
    );
    fails(
        &text,
        18,
        "spec.stopConditions[0].slo",
        "overflow is a Prometheus objective, read from Prometheus when a phase ends",
    );
    let recovery = prom(GOOD).replace(
        "method:",
        "- {name: back, metric: recovery_time, slo: overflow, objective: '<= 10s'}\nmethod:",
    );
    fails(
        &recovery,
        15,
        "spec.slos[2].slo",
        "overflow is a Prometheus objective",
    );
}

#[test]
fn a_floods_slos_cannot_read_prometheus() {
    let text = format!(
        "targets: [repeater.acme.com]
{}- flood:
    url: \"http://{{ingress}}/\"
    headers: {{Host: repeater.acme.com}}
    rate: 10
    duration: 2s
    slos:
    - {{name: p, prometheus: {{url: 'http://p:9090', query: up, objective: '< 1'}}}}
",
        method("")
    );
    fails(
        &text,
        14,
        "spec.method[0].flood.slos[0].prometheus",
        "Prometheus objectives belong in spec.slos",
    );
}
