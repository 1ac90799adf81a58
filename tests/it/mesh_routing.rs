//! Routing decisions made per proxy and per gateway server, on a real Envoy: a
//! `sourceLabels` fault hits only the caller it names, and Gateway servers on two
//! ports route the same host each its own way.

use std::time::Duration;

use crate::common::mesh::{load, serial, start, statuses};

const LIMIT: Duration = Duration::from_secs(40);

/// a and b both call api through their sidecars; api's VirtualService aborts only
/// calls from `app: a` (istiod's sourceMatchHTTP, Istio 1.26).
const SOURCE_LABELS: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: sources}
spec:
  services:
  - name: a
    labels: {app: a}
    demo: {forward: 'http://api/'}
  - name: b
    labels: {app: b}
    demo: {forward: 'http://api/'}
  - name: api
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: [a.acme.com, b.acme.com]
  gateways: [gw]
  http:
  - match: [{authority: {exact: a.acme.com}}]
    route: [{destination: {host: a}}]
  - route: [{destination: {host: b}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - name: from-a
    match: [{sourceLabels: {app: a}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: api}}]
  - route: [{destination: {host: api}}]
";

#[test]
fn a_source_labels_fault_hits_only_the_caller_it_names() {
    let _s = serial();
    let mesh = start(SOURCE_LABELS);
    assert!(mesh.warnings().is_empty(), "{:?}", mesh.warnings());
    let before = mesh.stats().expect("stats");
    let via_a = load(mesh.ingress_addr(), "a.acme.com", "/", 200, 8, LIMIT);
    let via_b = load(mesh.ingress_addr(), "b.acme.com", "/", 200, 8, LIMIT);
    let d = mesh.stats().expect("stats").since(&before);
    // 100%: exact counts, no statistics.
    assert_eq!(
        statuses(&via_a),
        [(503, 200)].into_iter().collect(),
        "via a"
    );
    assert_eq!(
        statuses(&via_b),
        [(200, 200)].into_iter().collect(),
        "via b"
    );
    let hop = |h: &str| d.hop(h).unwrap_or_else(|| panic!("hop {h}")).clone();
    assert_eq!(hop("sidecar_a").aborts_injected, 200);
    assert_eq!(hop("sidecar_a").downstream_requests, 200);
    assert_eq!(hop("sidecar_b").aborts_injected, 0);
    assert_eq!(hop("sidecar_b").downstream_requests, 200);
    assert_eq!(hop("ingress").aborts_injected, 0);
    // `mesh get` shows each distinct sidecar table once, named by who has it.
    let v = meshdrill::mesh::view::view(mesh.dir()).expect("view");
    let api: Vec<(&str, &str, bool)> = v
        .routes
        .iter()
        .filter(|r| r.virtual_host == "default/api")
        .map(|r| (r.hop.as_str(), r.name.as_str(), r.fault.is_some()))
        .collect();
    assert_eq!(
        api,
        [
            ("sidecar_a", "from-a", true),
            ("sidecar_a", "api.1", false),
            ("sidecar_b,sidecar_api", "api.1", false),
        ]
    );
    assert!(
        v.route_versions.contains_key("sidecar_b"),
        "{:?}",
        v.route_versions
    );
}
