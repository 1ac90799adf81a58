//! Redirect, header operations, mirrors and delegation on a real Envoy: what a client
//! and the next hop see, as on Istio 1.26 (the configuration is snapshotted in
//! mesh_translate/actions.rs).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::mesh::{serial, start};
use crate::mesh_translate::actions::{ACTIONS, DELEGATE};

use super::LIMIT;

/// One GET over a fresh connection: status, response headers (names lower-cased),
/// body and latency.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    latency: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    assert!(addr.ip().is_loopback(), "loopback only");
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let latency = t.elapsed();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
        latency,
    }
}

const FRONT: &str = "front.acme.com";

/// istiod's ApplyRedirect on Envoy: the code and Location a client gets, and the
/// upstream never called.
#[test]
fn a_redirect_answers_with_its_code_and_location() {
    let _s = serial();
    let mesh = start(ACTIONS);
    let addr = mesh.ingress_addr();
    let a = get(addr, FRONT, "/old/page", &[]);
    assert_eq!(a.status, 302, "{:?}", a.headers);
    assert_eq!(a.header("location"), Some("http://new.acme.com/new"));
    let a = get(addr, FRONT, "/secure", &[]);
    assert_eq!(a.status, 301, "{:?}", a.headers);
    assert_eq!(
        a.header("location"),
        Some("https://front.acme.com:8443/secure")
    );
    // derivePort FROM_REQUEST_PORT at the gateway's port 80: no port in the Location.
    let a = get(addr, FRONT, "/derive/x", &[]);
    assert_eq!(a.status, 301, "{:?}", a.headers);
    assert_eq!(a.header("location"), Some("http://other.acme.com/derive/x"));
    let s = mesh.stats().expect("stats");
    let back = s
        .cluster("outbound|80|v1|back.default.svc.cluster.local")
        .map_or(0, |c| c.upstream_requests);
    assert_eq!(back, 0, "a redirect calls no upstream");
    // `mesh get` shows the redirect where a destination would be.
    let view = meshdrill::mesh::view::view(mesh.dir()).expect("view");
    let moved = view
        .routes
        .iter()
        .find(|r| r.name == "moved.old")
        .expect("moved.old in mesh get");
    assert_eq!(
        moved.destinations[0].cluster,
        "redirect FOUND to new.acme.com/new"
    );
}

/// A request header the ingress route sets (`end-user: jason`) reaches front, which
/// passes it on; back's VirtualService routes on it at the next hop (v2 = replica 1).
/// Response headers are set and removed as the route says.
#[test]
fn a_header_set_by_a_route_reaches_the_next_hop() {
    let _s = serial();
    let mesh = start(ACTIONS);
    let addr = mesh.ingress_addr();
    for _ in 0..5 {
        let a = get(addr, FRONT, "/jason", &[]);
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, "hello from back replica 1\n")
        );
        assert_eq!(a.header("x-served-by"), Some("front"), "{:?}", a.headers);
        assert_eq!(a.header("x-dest"), Some("front"), "{:?}", a.headers);
        assert_eq!(
            a.header("x-meshdrill-replica"),
            None,
            "removed: {:?}",
            a.headers
        );
        // The same call without the route's headers: back's default route, v1.
        let a = get(addr, FRONT, "/plain", &[]);
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, "hello from back replica 0\n")
        );
        assert!(a.header("x-meshdrill-replica").is_some(), "{:?}", a.headers);
    }
}

/// A mirror at 100% (no mirrorPercentage) sends every request to the shadow service
/// too, counted by Envoy's shadow cluster; a route without a mirror sends none.
#[test]
fn a_mirror_sends_every_request_to_the_shadow_service() {
    let _s = serial();
    let mesh = start(ACTIONS);
    let addr = mesh.ingress_addr();
    let shadow = |s: &meshdrill::mesh::stats::MeshStats| {
        s.cluster("outbound|80||shadow.default.svc.cluster.local")
            .map_or(0, |c| c.upstream_requests)
    };
    let before = mesh.stats().expect("stats");
    for _ in 0..20 {
        assert_eq!(get(addr, FRONT, "/plain", &[]).status, 200);
    }
    assert_eq!(shadow(&mesh.stats().expect("stats").since(&before)), 0);
    for _ in 0..40 {
        let a = get(addr, FRONT, "/mirror", &[]);
        assert_eq!(a.status, 200, "the primary answers");
    }
    // Mirrors are sent alongside; wait (bounded) until all have been counted.
    let deadline = Instant::now() + LIMIT;
    let mut n = 0;
    while Instant::now() < deadline {
        n = shadow(&mesh.stats().expect("stats").since(&before));
        if n >= 40 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(n, 40, "shadow requests");
}

/// A root route delegating to a VirtualService with no hosts: the delegate's route
/// (match merged with the root's) reaches the delegate's destination (back v2 =
/// replica 1) with the delegate's fault (a 300 ms delay); a missing delegate's route
/// is left out, so its path falls through to the catch-all.
#[test]
fn a_delegate_route_reaches_its_destination_with_its_fault() {
    let _s = serial();
    let mesh = start(DELEGATE);
    let addr = mesh.ingress_addr();
    let shop = "shop.acme.com";
    let before = mesh.stats().expect("stats");
    for _ in 0..3 {
        let a = get(addr, shop, "/reviews/v2", &[("x-shop", "1")]);
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, "hello from back replica 1\n")
        );
        // Envoy's delay can fire a few ms early (FACTS.md).
        assert!(a.latency >= Duration::from_millis(290), "{:?}", a.latency);
        let a = get(addr, shop, "/reviews/x", &[("x-shop", "1")]);
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, "hello from back replica 0\n")
        );
        assert!(a.latency < Duration::from_millis(290), "{:?}", a.latency);
        let a = get(addr, shop, "/gone", &[]);
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, "hello from front replica 0\n")
        );
    }
    let d = mesh.stats().expect("stats").since(&before);
    let hop = d.hop("ingress").expect("ingress");
    assert_eq!(hop.delays_injected, 3, "{hop:?}");
}

/// A JWT-claim match (istiod's jwt_authn dynamic-metadata matcher) is accepted by
/// Envoy and never matches here (no JWT filter runs: no request carries claims), so
/// the request falls through to the next route, as on Istio without a valid JWT.
/// A directResponse body given as bytes is served decoded.
#[test]
fn a_jwt_claim_match_is_accepted_and_never_matches_without_a_jwt() {
    let _s = serial();
    let mesh = start(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: jwt}
spec:
  services:
  - name: api
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.acme.com]
  gateways: [gw]
  http:
  - match: [{headers: {'@request.auth.claims.group': {exact: admin}}}]
    directResponse: {status: 418}
  - directResponse: {status: 200, body: {bytes: aGVsbG8=}}
",
    );
    let versions = meshdrill::mesh::envoy::route_versions(mesh.admin()).expect("versions");
    assert!(versions.iter().all(|(_, v)| v == "1"), "{versions:?}");
    let a = get(
        mesh.ingress_addr(),
        "api.acme.com",
        "/",
        // `@` is no header-name character: a client cannot send the claim as a header.
        &[("group", "admin")],
    );
    assert_eq!((a.status, a.body.as_str()), (200, "hello"));
}
