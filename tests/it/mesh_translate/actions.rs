//! Redirect, rewrite, header operations, mirrors and delegation, snapshotted: each
//! case names the istiod 1.26 function it follows
//! (pilot/pkg/networking/core/route/route.go, pilot/pkg/model/virtualservice.go).

use serde_json::Value;

use super::{config, config_unvalidated, routes};

/// A front service that forwards to `back` (v1 = replica 0, v2 = replica 1), a
/// `shadow` service, and one gateway VirtualService with a route per action. `back`'s
/// own VirtualService sends `end-user: jason` to v2, so a header set at the ingress
/// shows at the next hop.
pub const ACTIONS: &str = r"apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: actions}
spec:
  services:
  - name: front
    demo: {forward: 'http://back/'}
  - name: back
    labels: {version: v1}
  - name: back
    labels: {version: v2}
  - name: shadow
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: back}
spec:
  host: back
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: back}
spec:
  hosts: [back]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: back, subset: v2}}]
  - route: [{destination: {host: back, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front.acme.com]
  gateways: [gw]
  http:
  - name: moved
    match: [{name: old, uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.acme.com, redirectCode: 302}
  - name: secure
    match: [{uri: {exact: /secure}}]
    redirect: {scheme: https, port: 8443}
  - name: derive
    match: [{uri: {prefix: /derive}}]
    redirect: {authority: other.acme.com, derivePort: FROM_REQUEST_PORT}
  - name: rewrite
    match: [{uri: {prefix: /api/v1}}]
    rewrite: {uri: /v1, authority: back.internal}
    route: [{destination: {host: back, subset: v1}}]
  - name: regex
    match: [{uri: {regex: '/r/[0-9]+'}}]
    rewrite: {uriRegexRewrite: {match: '^/r/([0-9]+)', rewrite: '/item/\1'}}
    route: [{destination: {host: back, subset: v1}}]
  - name: jason
    match: [{uri: {prefix: /jason}}]
    headers:
      request: {set: {end-user: jason, x-b: '1'}, add: {x-trace: a}, remove: [x-debug]}
      response: {set: {x-served-by: front}, remove: [x-meshdrill-replica]}
    route:
    - destination: {host: front}
      headers: {request: {add: {x-dest: front}}, response: {set: {x-dest: front}}}
  - name: mirrored
    match: [{uri: {prefix: /mirror}}]
    mirror: {host: shadow}
    route: [{destination: {host: back, subset: v1}}]
  - name: half-mirrored
    match: [{uri: {prefix: /half}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 50}
    route: [{destination: {host: back, subset: v1}}]
  - name: legacy-mirror
    match: [{uri: {prefix: /legacy}}]
    mirror: {host: shadow}
    mirrorPercent: 25
    route: [{destination: {host: back, subset: v1}}]
  - name: plain
    match: [{uri: {prefix: /plain}}]
    route: [{destination: {host: front}}]
  - name: split
    route:
    - destination: {host: back, subset: v1}
      weight: 80
      headers: {request: {set: {x-canary: 'no'}}, response: {add: {x-version: v1}}}
    - destination: {host: back, subset: v2}
      weight: 20
      headers: {request: {set: {x-canary: 'yes', host: v2.back}}}
    mirrors:
    - destination: {host: shadow}
    - destination: {host: shadow}
      percentage: {value: 12.5}
    - destination: {host: shadow}
      percentage: {value: 0}
";

fn route<'a>(vhosts: &'a Value, name: &str) -> &'a Value {
    vhosts[0]["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no route {name} in {vhosts}"))
}

macro_rules! snap {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => vec![(r"\b1[0-9]{4}\b", "[PORT]")]}, {
            insta::assert_yaml_snapshot!($name, $value);
        })
    };
}

/// istiod 1.26 ApplyRedirect: uri → path_redirect, authority → host_redirect, scheme,
/// port (derivePort FROM_REQUEST_PORT = the listener port, :80 for http left out),
/// redirectCode → response_code (default 301). A redirect route gets no timeout and
/// no retry policy (they belong to applyHTTPRouteDestination).
#[test]
fn redirects_as_istiod_apply_redirect() {
    let c = config(ACTIONS);
    let vh = routes(&c, "ingress");
    // TranslateRoute: `<route name>.<match name>`.
    let moved = route(&vh, "moved.old");
    assert_eq!(moved["redirect"]["path_redirect"], "/new");
    assert_eq!(moved["redirect"]["host_redirect"], "new.acme.com");
    assert_eq!(moved["redirect"]["response_code"], "FOUND");
    assert!(moved.get("route").is_none(), "{moved}");
    let secure = route(&vh, "secure");
    assert_eq!(secure["redirect"]["scheme_redirect"], "https");
    assert_eq!(secure["redirect"]["port_redirect"], 8443);
    assert_eq!(secure["redirect"]["response_code"], "MOVED_PERMANENTLY");
    let derive = route(&vh, "derive");
    assert!(
        derive["redirect"].get("port_redirect").is_none(),
        "{derive}"
    );
    let routes: Vec<&Value> = ["moved.old", "secure", "derive"]
        .iter()
        .map(|n| route(&vh, n))
        .collect();
    snap!("actions_redirects", &routes);
}

/// istiod 1.26 applyHTTPRouteDestination: rewrite.uri → prefix_rewrite,
/// uriRegexRewrite → regex_rewrite, rewrite.authority → host_rewrite_literal.
#[test]
fn rewrites_as_istiod_apply_http_route_destination() {
    let c = config(ACTIONS);
    let vh = routes(&c, "ingress");
    let rw = route(&vh, "rewrite");
    assert_eq!(rw["route"]["prefix_rewrite"], "/v1");
    assert_eq!(rw["route"]["host_rewrite_literal"], "back.internal");
    let re = route(&vh, "regex");
    assert_eq!(
        re["route"]["regex_rewrite"]["pattern"]["regex"],
        "^/r/([0-9]+)"
    );
    assert_eq!(re["route"]["regex_rewrite"]["substitution"], "/item/\\1");
    snap!("actions_rewrites", &[rw, re]);
}

/// istiod 1.26 TranslateHeadersOperations (set → OVERWRITE_IF_EXISTS_OR_ADD, add →
/// APPEND_IF_EXISTS_OR_ADD, sorted by name, `host`/pseudo headers dropped and read as
/// the authority), processDestination (a single destination's headers after the
/// route's, on the route) and processWeightedDestination (on the cluster weight).
#[test]
fn header_operations_on_routes_and_destinations_as_istiod() {
    let c = config(ACTIONS);
    let vh = routes(&c, "ingress");
    let j = route(&vh, "jason");
    let add = &j["request_headers_to_add"];
    assert_eq!(add[0]["header"]["key"], "end-user");
    assert_eq!(add[0]["append_action"], "OVERWRITE_IF_EXISTS_OR_ADD");
    assert_eq!(add[1]["header"]["key"], "x-b");
    assert_eq!(add[2]["header"]["key"], "x-trace");
    assert_eq!(add[2]["append_action"], "APPEND_IF_EXISTS_OR_ADD");
    assert_eq!(add[3]["header"]["key"], "x-dest", "destination's last");
    assert_eq!(
        j["request_headers_to_remove"],
        serde_json::json!(["x-debug"])
    );
    assert_eq!(
        j["response_headers_to_remove"],
        serde_json::json!(["x-meshdrill-replica"])
    );
    let split = route(&vh, "split");
    let cs = &split["route"]["weighted_clusters"]["clusters"];
    assert_eq!(cs[0]["request_headers_to_add"][0]["header"]["value"], "no");
    assert_eq!(
        cs[0]["response_headers_to_add"][0]["header"]["key"],
        "x-version"
    );
    assert_eq!(cs[1]["request_headers_to_add"][0]["header"]["value"], "yes");
    assert_eq!(cs[1]["host_rewrite_literal"], "v2.back");
    assert_eq!(
        cs[1]["request_headers_to_add"].as_array().map(Vec::len),
        Some(1),
        "host is an authority, not a header: {cs}"
    );
    snap!("actions_headers", &[j, split]);
}

/// istiod 1.26 MirrorPercent (mirrorPercentage per million, deprecated mirrorPercent
/// per hundred, absent = 100%), MirrorPercentByPolicy (each of `mirrors` its own
/// percentage; 0 mirrors nothing) and TranslateRequestMirrorPolicy.
#[test]
fn mirrors_as_istiod_translate_request_mirror_policy() {
    let c = config(ACTIONS);
    let vh = routes(&c, "ingress");
    let mp = |n: &str| route(&vh, n)["route"]["request_mirror_policies"].clone();
    let full = mp("mirrored");
    assert_eq!(
        full[0]["cluster"],
        "outbound|80||shadow.default.svc.cluster.local"
    );
    assert_eq!(
        full[0]["runtime_fraction"]["default_value"]["numerator"],
        100
    );
    assert_eq!(
        full[0]["runtime_fraction"]["default_value"]["denominator"],
        "HUNDRED"
    );
    let half = mp("half-mirrored");
    assert_eq!(
        half[0]["runtime_fraction"]["default_value"]["numerator"],
        500000
    );
    assert_eq!(
        half[0]["runtime_fraction"]["default_value"]["denominator"],
        "MILLION"
    );
    assert_eq!(
        mp("legacy-mirror")[0]["runtime_fraction"]["default_value"]["numerator"],
        25
    );
    let many = mp("split");
    assert_eq!(
        many.as_array().map(Vec::len),
        Some(2),
        "0% is no mirror: {many}"
    );
    assert_eq!(
        many[1]["runtime_fraction"]["default_value"]["numerator"],
        125000
    );
    let w = c.warnings.join("\n");
    assert!(
        w.contains("spec.http[8].mirrorPercent is deprecated"),
        "{w}"
    );
    snap!(
        "actions_mirrors",
        &[
            mp("mirrored"),
            mp("half-mirrored"),
            mp("legacy-mirror"),
            many
        ]
    );
}

/// A root VirtualService at the gateway and two delegates (one in another namespace),
/// as in Istio's delegate docs.
pub const DELEGATE: &str = r"apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: delegate}
spec:
  services:
  - name: front
  - name: back
    labels: {version: v1}
  - name: back
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: back}
spec:
  host: back
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.acme.com]
  gateways: [gw]
  http:
  - name: reviews
    match: [{uri: {prefix: /reviews}, headers: {x-shop: {exact: '1'}}}, {uri: {prefix: /r}}]
    timeout: 5s
    delegate: {name: reviews}
  - name: missing
    match: [{uri: {prefix: /gone}}]
    delegate: {name: nope}
  - name: hidden
    match: [{uri: {prefix: /hidden}}]
    delegate: {name: hidden, namespace: other}
  - name: rest
    route: [{destination: {host: front}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /reviews/v2}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
    route: [{destination: {host: back, subset: v2}}]
  - name: elsewhere
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: back, subset: v2}}]
  - name: v1
    route: [{destination: {host: back, subset: v1}}]
    timeout: 1s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hidden, namespace: other}
spec:
  exportTo: ['.']
  http:
  - route: [{destination: {host: back.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orphan}
spec:
  http:
  - route: [{destination: {host: back}}]
";

/// istiod 1.26 mergeVirtualServicesIfNeeded / mergeHTTPRoute /
/// mergeHTTPMatchRequests / mergeHTTPMatchRequest: each delegate route merged into the
/// root's route (root conditions + delegate conditions, one merged match per
/// compatible root match, the root's name and fields where the delegate has none); a
/// conflicting delegate route, a missing or unexported delegate drop the route.
#[test]
fn delegates_merge_into_the_root_as_istiod() {
    let c = config(DELEGATE);
    let vh = routes(&c, "ingress");
    assert_eq!(
        vh.as_array().map(Vec::len),
        Some(1),
        "delegates have no vhost: {vh}"
    );
    let names: Vec<&str> = vh[0]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    // /reviews/v2 merges only with the /reviews root match (not /r... it is a
    // prefix of /reviews/v2 too: both merge); /other conflicts with both; the
    // match-less v1 takes both root matches.
    assert_eq!(
        names,
        [
            "reviews-v2",
            "reviews-v2",
            "reviews-v1",
            "reviews-v1",
            "rest"
        ]
    );
    let r0 = &vh[0]["routes"][0];
    assert_eq!(r0["match"]["prefix"], "/reviews/v2");
    assert_eq!(r0["match"]["headers"][0]["name"], "x-shop");
    assert_eq!(
        r0["route"]["cluster"],
        "outbound|80|v2|back.default.svc.cluster.local"
    );
    assert_eq!(r0["route"]["timeout"], "5s", "the root's timeout");
    assert!(r0["typed_per_filter_config"]["envoy.filters.http.fault"]["delay"].is_object());
    let r2 = &vh[0]["routes"][2];
    assert_eq!(r2["route"]["timeout"], "1s", "the delegate's own timeout");
    let w = c.warnings.join("\n");
    assert!(
        w.contains("delegate names VirtualService default/nope"),
        "{w}"
    );
    assert!(w.contains("other/hidden is not exported"), "{w}");
    assert!(w.contains("spec.http[1] have conflicting matches"), "{w}");
    assert!(w.contains("VirtualService orphan: no hosts"), "{w}");
    snap!("delegate_merged", &vh);
}

/// Every HTTPRoute field is translated or warned about: corsPolicy (not modelled),
/// JWT-claim matches (translated; never match here), redirect beside route.
#[test]
fn untranslated_fields_are_named_in_warnings() {
    let c = config_unvalidated(
        "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {name: t}\nspec:\n  services:\n  - name: api\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: api}\nspec:\n  hosts: [api]\n  exportTo: ['*']\n  tcp: [{route: [{destination: {host: api}}]}]\n  http:\n  - match: [{headers: {'@request.auth.claims.group': {exact: admin}}}]\n    corsPolicy: {allowOrigins: [{exact: 'https://x'}]}\n    route: [{destination: {host: api}}]\n  - match: [{uri: {prefix: /f}}]\n    redirect: {uri: /y}\n    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n  - redirect: {uri: /x, redirectCode: 304}\n",
    );
    let w = c.warnings.join("\n");
    assert!(w.contains("spec.http[0].corsPolicy is not modelled"), "{w}");
    assert!(w.contains("spec.tcp: TCP routes are not served"), "{w}");
    assert!(w.contains("spec.exportTo: read only for delegates"), "{w}");
    assert!(
        w.contains("spec.http[0].match[0] matches JWT claims"),
        "{w}"
    );
    assert!(w.contains("redirectCode 304 is not supported"), "{w}");
    assert!(
        w.contains("spec.http[1] has both redirect and fault, which Istio's validation rejects"),
        "{w}"
    );
    let vh = routes(&c, "mesh");
    let m = &vh[0]["routes"][0]["match"];
    // istiod's translateMetadataMatch: a dynamic-metadata matcher, not a header.
    assert!(m.get("headers").is_none(), "{m}");
    assert_eq!(
        m["dynamic_metadata"][0]["filter"],
        "envoy.filters.http.jwt_authn"
    );
    assert_eq!(
        vh[0]["routes"].as_array().map(Vec::len),
        Some(2),
        "304: left out"
    );
    snap!("jwt_claim_match", m);
}
