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

/// Two Gateways, one server each: `public` on 80 (the mesh file's ingress) and
/// `internal` on 8080 (its own loopback port). The same host routes differently on
/// each; a VirtualService bound only to `internal` is not served on 80.
const TWO_GATEWAYS: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: gateways}
spec:
  services:
  - name: web
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: internal}
spec:
  servers:
  - port: {number: 8080, name: http-internal, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-public}
spec:
  hosts: [shop.acme.com]
  gateways: [public]
  http:
  - route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-internal}
spec:
  hosts: [shop.acme.com, ops.acme.com]
  gateways: [internal]
  http:
  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
";

#[test]
fn two_gateway_servers_route_one_host_each_their_way() {
    let _s = serial();
    let mesh = start(TWO_GATEWAYS);
    let st = mesh.state().expect("state");
    let internal = *st
        .gateway_ports
        .get(&8080)
        .expect("an ingress for port 8080");
    assert_ne!(internal, st.ingress_port);
    assert_eq!(
        st.ingress_urls(),
        [
            (80, mesh.ingress_url()),
            (8080, format!("http://127.0.0.1:{internal}")),
        ]
    );
    let internal = std::net::SocketAddr::from(([127, 0, 0, 1], internal));
    let before = mesh.stats().expect("stats");
    let shop80 = load(mesh.ingress_addr(), "shop.acme.com", "/", 100, 4, LIMIT);
    let shop8080 = load(internal, "shop.acme.com", "/", 100, 4, LIMIT);
    let ops80 = load(mesh.ingress_addr(), "ops.acme.com", "/", 50, 4, LIMIT);
    let ops8080 = load(internal, "ops.acme.com", "/", 50, 4, LIMIT);
    let d = mesh.stats().expect("stats").since(&before);
    assert_eq!(statuses(&shop80), [(200, 100)].into_iter().collect());
    assert_eq!(statuses(&shop8080), [(418, 100)].into_iter().collect());
    // ops.acme.com is bound to `internal` only: 404 on 80 (no virtual host).
    assert_eq!(statuses(&ops80), [(404, 50)].into_iter().collect());
    assert_eq!(statuses(&ops8080), [(418, 50)].into_iter().collect());
    let hop = |h: &str| d.hop(h).unwrap_or_else(|| panic!("hop {h}")).clone();
    assert_eq!(hop("ingress").downstream_requests, 150);
    assert_eq!(hop("ingress").aborts_injected, 0);
    assert_eq!(hop("ingress_8080").downstream_requests, 150);
    assert_eq!(hop("ingress_8080").aborts_injected, 150);
    let v = meshdrill::mesh::view::view(mesh.dir()).expect("view");
    let ls: Vec<(u16, Vec<String>)> = v
        .ingress_listeners
        .iter()
        .map(|l| (l.server_port, l.hosts.clone()))
        .collect();
    assert_eq!(
        ls,
        [
            (80, vec!["shop.acme.com".to_string()]),
            (8080, vec!["shop.acme.com".into(), "ops.acme.com".into()]),
        ]
    );
}
