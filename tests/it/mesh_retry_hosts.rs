//! `retries.retryIgnorePreviousHosts` (Istio ≥ 1.26) on a real Envoy: with the
//! previous-hosts predicate (the default, or `true`) a retry goes to another replica;
//! with `false` it may go back to the one that just failed — so with one bad replica
//! of two, a retry policy's success is overstated when the field is dropped (issue 13
//! point 4). Loopback only; each test holds `serial()`.

use std::time::Duration;

use crate::common::mesh::{load, serial, share, start, statuses};

const N: usize = 400;

/// `back` has two replicas, one answering 503 to everything; `front` calls it through
/// its sidecar with one retry on 5xx. The ingress calls `front` with no retries.
fn mesh(ignore_previous_hosts: Option<bool>) -> String {
    let field = ignore_previous_hosts
        .map(|b| format!(", retryIgnorePreviousHosts: {b}"))
        .unwrap_or_default();
    format!(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {{name: hosts}}
spec:
  services:
  - name: front
    demo: {{forward: true}}
  - name: back
    labels: {{health: good}}
  - name: back
    labels: {{health: bad}}
    demo: {{failRate: 1.0, failStatus: 503}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front}}
spec:
  hosts: [front]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: front}}}}]
    retries: {{attempts: 0}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: back}}
spec:
  hosts: [back]
  http:
  - route: [{{destination: {{host: back}}}}]
    retries: {{attempts: 1, retryOn: 5xx{field}}}
"
    )
}

/// The share of calls to `back` that fail, over N calls one at a time.
fn failed_share(yaml: &str) -> f64 {
    let m = start(yaml);
    let out = load(
        m.ingress_addr(),
        "front.default.svc.cluster.local",
        "/?addr=http://back/",
        N,
        1,
        Duration::from_secs(60),
    );
    assert_eq!(out.len(), N);
    let failed = share(&out, 503);
    assert_eq!(failed + share(&out, 200), 1.0, "{:?}", statuses(&out));
    failed
}

/// Expected failure shares (the balancer picks either replica with p = 1/2 at one
/// request at a time): with the predicate a call fails only when the first pick and
/// every one of the 5 re-picks (`host_selection_retry_max_attempts`) land on the bad
/// replica, ≈ 0.5⁷ < 1%; without it, when both the first try and the retry do, 25%.
/// The bounds (under 8%, over 15%) sit 4.5σ or more from either (σ ≤ 2.2 points at
/// N = 400): a translation that drops the field (predicate kept) fails the second, one
/// that drops the predicate always fails the first.
#[test]
fn retry_ignore_previous_hosts_false_lets_a_retry_go_back_to_the_bad_replica() {
    let _s = serial();
    let kept = failed_share(&mesh(None));
    assert!(kept < 0.08, "default (previous hosts avoided): {kept}");
    let kept = failed_share(&mesh(Some(true)));
    assert!(kept < 0.08, "retryIgnorePreviousHosts: true: {kept}");
    let dropped = failed_share(&mesh(Some(false)));
    assert!(
        dropped > 0.15,
        "retryIgnorePreviousHosts: false: {dropped} (a retry may go back to the bad replica)"
    );
}
