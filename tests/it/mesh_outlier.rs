//! DestinationRule outlier detection on a real Envoy, judged from Envoy's outlier
//! counters: `consecutiveGatewayErrors` ejects on 502/503/504 only, `minHealthPercent`
//! turns panic mode back on (istiod's applyOutlierDetection, Istio 1.24–1.27: the
//! panic threshold is 0 unless given). Loopback only; each test holds `serial()`.

use std::time::Duration;

use meshdrill::mesh::RunningMesh;
use meshdrill::mesh::envoy;

use crate::common::mesh::{load, serial, share, start, statuses};

const LIMIT: Duration = Duration::from_secs(40);
const HOST: &str = "back.default.svc.cluster.local";

/// `back`: one replica (v1) answering every request with `fail_status`, one healthy
/// (v2); the ingress routes to it with no retries, through a DestinationRule whose
/// outlierDetection is `outlier` (YAML flow mapping).
fn mesh(fail_status: u16, outlier: &str) -> String {
    format!(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {{name: outlier}}
spec:
  services:
  - name: back
    labels: {{version: v1}}
    demo: {{failRate: 1.0, failStatus: {fail_status}}}
  - name: back
    labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: back}}
spec:
  hosts: [back]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: back}}}}]
    retries: {{attempts: 0}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: back}}
spec:
  host: back
  trafficPolicy:
    outlierDetection: {outlier}
"
    )
}

/// Envoy's counters and gauges of the outbound cluster of `back`.
fn cluster_stat(mesh: &RunningMesh, stat: &str) -> u64 {
    let (status, text) =
        envoy::get(mesh.admin(), "/stats?filter=^cluster\\.outbound").expect("stats");
    assert_eq!(status, 200, "{text}");
    let key = format!("cluster.outbound|80||back.default.svc.cluster.local.{stat}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        // A counter Envoy does not show is a wrong name, not a zero.
        .unwrap_or_else(|| panic!("no Envoy stat {key:?} in:\n{text}"))
}

fn count(out: &[crate::common::mesh::Outcome], status: u16) -> usize {
    out.iter().filter(|o| o.status == status).count()
}

#[test]
fn consecutive_gateway_errors_eject_on_gateway_errors_only() {
    let _s = serial();
    // 5xx ejection off (0), gateway errors after 3 in a row.
    let od = "{consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}";
    // 503 is a gateway error: the failing replica is ejected, then all answers are 200.
    let mesh503 = start(&mesh(503, od));
    let first = load(mesh503.ingress_addr(), HOST, "/", 60, 1, LIMIT);
    // One request at a time: the failing host is ejected at its third 503 in a row
    // (answers of the other host do not reset its count); the ejection is posted to
    // Envoy's main thread, so one more request may reach the host first.
    assert!(
        (3..=4).contains(&count(&first, 503)),
        "{:?}",
        statuses(&first)
    );
    assert_eq!(
        cluster_stat(
            &mesh503,
            "outlier_detection.ejections_enforced_consecutive_gateway_failure"
        ),
        1
    );
    assert_eq!(
        cluster_stat(
            &mesh503,
            "outlier_detection.ejections_enforced_consecutive_5xx"
        ),
        0
    );
    assert_eq!(
        cluster_stat(&mesh503, "outlier_detection.ejections_active"),
        1
    );
    let after = load(mesh503.ingress_addr(), HOST, "/", 40, 2, LIMIT);
    assert_eq!(share(&after, 200), 1.0, "{:?}", statuses(&after));
    drop(mesh503);
    // 500 is a 5xx but no gateway error: with 5xx ejection off, nothing is ejected.
    let mesh500 = start(&mesh(500, od));
    let out = load(mesh500.ingress_addr(), HOST, "/", 60, 1, LIMIT);
    let failed = share(&out, 500);
    assert!(failed > 0.2, "{:?}", statuses(&out));
    assert_eq!(
        cluster_stat(&mesh500, "outlier_detection.ejections_enforced_total"),
        0,
        "500s ejected a host"
    );
    drop(mesh500);
    // consecutive5xxErrors unset: Envoy's default (5, enforced) counts the 500s — as
    // on Istio, which sets only the fields given.
    let default5xx = start(&mesh(
        500,
        "{consecutiveGatewayErrors: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}",
    ));
    let out = load(default5xx.ingress_addr(), HOST, "/", 60, 1, LIMIT);
    assert!((5..=6).contains(&count(&out, 500)), "{:?}", statuses(&out));
    assert_eq!(
        cluster_stat(
            &default5xx,
            "outlier_detection.ejections_enforced_consecutive_5xx"
        ),
        1
    );
    assert_eq!(
        cluster_stat(
            &default5xx,
            "outlier_detection.ejections_enforced_consecutive_gateway_failure"
        ),
        0
    );
}

#[test]
fn min_health_percent_brings_back_panic_mode() {
    let _s = serial();
    // One of two hosts ejected leaves 50% healthy.
    let od = |extra: &str| {
        format!(
            "{{consecutiveGatewayErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100{extra}}}"
        )
    };
    // istiod's default (0): no panic; all traffic goes to the healthy host.
    let calm = start(&mesh(503, &od("")));
    let _ = load(calm.ingress_addr(), HOST, "/", 20, 1, LIMIT);
    assert_eq!(cluster_stat(&calm, "outlier_detection.ejections_active"), 1);
    let out = load(calm.ingress_addr(), HOST, "/", 100, 2, LIMIT);
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    assert_eq!(cluster_stat(&calm, "lb_healthy_panic"), 0);
    drop(calm);
    // minHealthPercent 60 > 50% healthy: panic mode, the ejected host is used again.
    let panic = start(&mesh(503, &od(", minHealthPercent: 60")));
    let _ = load(panic.ingress_addr(), HOST, "/", 20, 1, LIMIT);
    assert_eq!(
        cluster_stat(&panic, "outlier_detection.ejections_active"),
        1
    );
    let before = cluster_stat(&panic, "lb_healthy_panic");
    let out = load(panic.ingress_addr(), HOST, "/", 100, 2, LIMIT);
    assert!(
        cluster_stat(&panic, "lb_healthy_panic") - before >= 100,
        "every request balanced in panic mode"
    );
    assert!(share(&out, 503) > 0.2, "{:?}", statuses(&out));
}
