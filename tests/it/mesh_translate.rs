//! VirtualService → Envoy translation, snapshotted (insta) for each supported case.
//! Inputs use a fixed layout (paths under /state, replica ports 10000+), so the
//! snapshots hold no machine-specific values; a filter still masks any port in case.

use std::collections::BTreeMap;
use std::path::PathBuf;

use meshdrill::mesh::MeshSpec;
use meshdrill::mesh::translate::{EnvoyConfig, Layout, translate};
use serde_json::Value;

pub mod actions;

const HEAD: &str =
    "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {name: t}\nspec:\n  services:\n";

/// A mesh whose services live in namespace `bookinfo`.
const HEAD_BOOKINFO: &str = "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {name: t}\nspec:\n  namespace: bookinfo\n  services:\n";

pub(crate) fn config(yaml: &str) -> EnvoyConfig {
    let loaded = MeshSpec::parse(yaml, "t.yaml").expect("parse");
    translate_with_layout(&loaded.spec)
}

/// As [`config`] for a Mesh document followed by VirtualServices that Istio's
/// validation rejects (so `mesh up` never translates them): the translator's own
/// defences against them, fed past the validation.
pub(crate) fn config_unvalidated(yaml: &str) -> EnvoyConfig {
    let docs = meshdrill::istio::manifest::parse_str(
        yaml,
        meshdrill::istio::manifest::Source("t.yaml".into()),
    )
    .expect("yaml");
    let mesh: Vec<_> = docs
        .iter()
        .filter(|d| d.kind() == "Mesh")
        .cloned()
        .collect();
    let mut spec = MeshSpec::from_documents(&mesh).expect("mesh").spec;
    spec.virtual_services = docs
        .iter()
        .filter(|d| d.kind() == "VirtualService")
        .map(|d| d.value.clone())
        .collect();
    translate_with_layout(&spec)
}

fn translate_with_layout(spec: &MeshSpec) -> EnvoyConfig {
    let mut ports = BTreeMap::new();
    // Each replica's inbound sidecar listens 50 ports above it.
    let mut inbound = BTreeMap::new();
    let mut next = 10000u16;
    for name in spec.service_names() {
        let n = spec.replicas_of(name).len();
        ports.insert(name.to_string(), (0..n).map(|i| next + i as u16).collect());
        inbound.insert(
            name.to_string(),
            (0..n).map(|i| next + 50 + i as u16).collect(),
        );
        next += 100;
    }
    translate(
        spec,
        &Layout {
            rds_dir: PathBuf::from("/state/xds/rds"),
            access_log: PathBuf::from("/state/access.log"),
            replica_ports: ports,
            inbound_ports: inbound,
        },
    )
}

/// The virtual hosts of route configuration `name`; `"mesh"`: those every sidecar
/// has, checked to be the same on each (true while no `sourceLabels` /
/// `sourceNamespace` tells the sidecars apart).
pub(crate) fn routes(c: &EnvoyConfig, name: &str) -> Value {
    if name == "mesh" {
        let tables: Vec<&Value> = c
            .routes
            .iter()
            .filter(|(k, _)| k.starts_with("sidecar_"))
            .map(|(_, v)| &v["virtual_hosts"])
            .collect();
        assert!(!tables.is_empty(), "no sidecar route configuration");
        assert!(
            tables.iter().all(|t| *t == tables[0]),
            "the sidecars' route tables differ"
        );
        return tables[0].clone();
    }
    c.routes[name]["virtual_hosts"].clone()
}

macro_rules! snap {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => vec![(r"\b1[0-9]{4}\b", "[PORT]")]}, {
            insta::assert_yaml_snapshot!($name, $value);
        })
    };
}
pub(crate) use snap;

#[path = "mesh_translate_sources.rs"]
mod sources;

#[path = "mesh_translate_gateways.rs"]
mod gateways;

#[test]
fn faults_percentages_and_the_listener_fault_filter() {
    let c = config(&format!(
        "{HEAD}  - name: web\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  gateways: [gw]\n  http:\n  - name: both\n    match: [{{headers: {{x-test: {{exact: both}}}}}}]\n    fault:\n      delay: {{fixedDelay: 1.5s, percentage: {{value: 33.33333}}}}\n      abort: {{httpStatus: 503, percentage: {{value: 0.0001}}}}\n    route: [{{destination: {{host: web}}}}]\n  - name: legacy\n    match: [{{uri: {{prefix: /legacy}}}}]\n    fault:\n      delay: {{fixedDelay: 200ms, percent: 10}}\n      abort: {{grpcStatus: UNAVAILABLE, percentage: {{value: 100}}}}\n    route: [{{destination: {{host: web}}}}]\n  - name: no-percentage\n    fault: {{abort: {{httpStatus: 500}}}}\n    route: [{{destination: {{host: web}}}}]\n"
    ));
    let vh = routes(&c, "ingress");
    let both = &vh[0]["routes"][0]["typed_per_filter_config"]["envoy.filters.http.fault"];
    // istiod: uint32(value * 10000), truncated, per million.
    assert_eq!(both["delay"]["percentage"]["numerator"], 333333);
    assert_eq!(both["abort"]["percentage"]["numerator"], 1);
    assert_eq!(both["delay"]["percentage"]["denominator"], "MILLION");
    let legacy = &vh[0]["routes"][1]["typed_per_filter_config"]["envoy.filters.http.fault"];
    assert_eq!(legacy["delay"]["percentage"]["denominator"], "HUNDRED");
    assert_eq!(legacy["abort"]["grpc_status"], 14);
    // Every HTTP listener has an empty fault filter before the router.
    for l in &c.listeners {
        let filters = &l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
        assert_eq!(filters[0]["name"], "envoy.filters.http.fault");
        assert_eq!(filters[1]["name"], "envoy.filters.http.router");
    }
    snap!("faults", &vh);
    snap!("ingress_listener", &c.listeners[0]);
}

#[test]
fn retries_and_timeouts_as_istio_converts_them() {
    let c = config(&format!(
        "{HEAD}  - name: api\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: api}}\nspec:\n  hosts: [api]\n  http:\n  - name: default-policy\n    match: [{{uri: {{exact: /a}}}}]\n    route: [{{destination: {{host: api}}}}]\n  - name: disabled\n    match: [{{uri: {{exact: /b}}}}]\n    retries: {{attempts: 0}}\n    route: [{{destination: {{host: api}}}}]\n  - name: custom\n    match: [{{uri: {{regex: '/c/[0-9]+'}}}}]\n    retries: {{attempts: 3, perTryTimeout: 250ms, retryOn: '5xx,connect-failure,503,429', retryRemoteLocalities: true}}\n    timeout: 2s\n    route: [{{destination: {{host: api}}}}]\n  - name: only-attempts\n    retries: {{attempts: 5}}\n    route: [{{destination: {{host: api}}}}]\n"
    ));
    let vh = routes(&c, "mesh");
    let r = &vh[0]["routes"];
    let p0 = &r[0]["route"]["retry_policy"];
    assert_eq!(p0["num_retries"], 2);
    assert_eq!(
        p0["retry_on"],
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(p0["host_selection_retry_max_attempts"], 5);
    assert_eq!(
        p0["retry_host_predicate"][0]["name"],
        "envoy.retry_host_predicates.previous_hosts"
    );
    assert_eq!(
        r[0]["route"]["timeout"], "0s",
        "Istio's default: no timeout"
    );
    assert!(
        r[1]["route"].get("retry_policy").is_none(),
        "attempts 0: none"
    );
    let p2 = &r[2]["route"]["retry_policy"];
    assert_eq!(p2["retry_on"], "5xx,connect-failure,retriable-status-codes");
    assert_eq!(p2["retriable_status_codes"], serde_json::json!([503, 429]));
    assert_eq!(p2["per_try_timeout"], "0.250s");
    assert_eq!(r[2]["route"]["timeout"], "2s");
    assert_eq!(r[3]["route"]["retry_policy"]["num_retries"], 5);
    // Istio's circuit breaker: max_retries 2^32-1 (Envoy's default 3 overflows).
    assert_eq!(
        c.clusters[0]["circuit_breakers"]["thresholds"][0]["max_retries"],
        4294967295u64
    );
    snap!("retries_timeouts", &vh);
    snap!("clusters_circuit_breaker", &c.clusters);
}

#[test]
fn matches_weights_subsets_and_gateway_binding() {
    let c = config(&format!(
        "{HEAD_BOOKINFO}  - name: reviews\n    replicas: 2\n    labels: {{version: v1}}\n  - name: reviews\n    labels: {{version: v2}}\n  - name: productpage\n---\n{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: productpage, namespace: bookinfo}}\nspec:\n  hosts: [productpage]\n  gateways: [bookinfo-gateway, mesh]\n  http:\n  - match:\n    - uri: {{exact: /productpage}}\n    - uri: {{prefix: /static}}\n      headers: {{end-user: {{regex: 'j.*'}}, x-any: {{}}}}\n    route: [{{destination: {{host: productpage, port: {{number: 80}}}}}}]\n",
        std::fs::read_to_string(crate::common::data("bookinfo-reviews.yaml")).expect("fixture")
    ));
    // reviews v3 has no replica here: said, not silently routed to nothing.
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    assert!(c.warnings[0].contains("subset v3 of reviews selects no replica"));
    let ingress = routes(&c, "ingress");
    let mesh = routes(&c, "mesh");
    // productpage lists a gateway and mesh: both hops; reviews has no gateways: mesh only.
    assert_eq!(ingress.as_array().map(Vec::len), Some(1));
    assert_eq!(ingress[0]["name"], "bookinfo/productpage");
    let names: Vec<&str> = mesh
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["bookinfo/reviews", "bookinfo/productpage"]);
    // Two match clauses: two Envoy routes with the same action, in order.
    assert_eq!(ingress[0]["routes"][0]["match"]["path"], "/productpage");
    assert_eq!(ingress[0]["routes"][1]["match"]["prefix"], "/static");
    // Subsets: v1 has two replicas, v2 one, v3 none.
    let eps = |name: &str| {
        c.clusters.iter().find(|x| x["name"] == name).map(|x| {
            x["load_assignment"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .map_or(0, Vec::len)
        })
    };
    assert_eq!(
        eps("outbound|80|v1|reviews.bookinfo.svc.cluster.local"),
        Some(2)
    );
    assert_eq!(
        eps("outbound|80|v2|reviews.bookinfo.svc.cluster.local"),
        Some(1)
    );
    assert_eq!(
        eps("outbound|80||reviews.bookinfo.svc.cluster.local"),
        Some(3)
    );
    snap!("matches_weights_subsets_mesh", &mesh);
    snap!("matches_weights_subsets_ingress", &ingress);
}

#[test]
fn gateway_only_virtual_service_is_not_on_sidecars_and_unknowns_warn() {
    let c = config(&format!(
        "{HEAD}  - name: web\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: web, subset: v9}}}}]\n  - route: [{{destination: {{host: elsewhere}}}}]\n"
    ));
    let mesh = routes(&c, "mesh");
    // The sidecars get Istio's default route for web, not the gateway's VirtualService.
    assert_eq!(mesh[0]["name"], "web:80");
    assert_eq!(
        mesh[0]["routes"][0]["route"]["cluster"],
        "outbound|80||web.default.svc.cluster.local"
    );
    let w = c.warnings.join("\n");
    assert!(w.contains("subset v9"), "{w}");
    assert!(w.contains("host elsewhere"), "{w}");
    snap!("default_sidecar_route", &mesh);
}

fn domains(vhost: &Value) -> Vec<&str> {
    vhost["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn vhost<'a>(vhosts: &'a Value, name: &str) -> Option<&'a Value> {
    vhosts
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == name))
}

#[test]
fn fqdn_hosts_route_the_service_by_every_alias_and_other_namespaces_do_not_hijack() {
    // An FQDN host names the local service: its VS vhost answers to the short name too.
    let c = config(&format!(
        "{HEAD}  - name: go-demo-8\n    port: 8080\n  - name: ratings\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: go-demo-8}}\nspec:\n  hosts: [go-demo-8.default.svc.cluster.local]\n  http:\n  - fault: {{abort: {{httpStatus: 500, percentage: {{value: 100}}}}}}\n    route: [{{destination: {{host: go-demo-8.default.svc.cluster.local}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: ratings, namespace: prod}}\nspec:\n  hosts: [ratings]\n  http:\n  - fault: {{abort: {{httpStatus: 500, percentage: {{value: 100}}}}}}\n    route: [{{destination: {{host: ratings}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: ext}}\nspec:\n  hosts: [ratings.example.com]\n  http:\n  - route: [{{destination: {{host: ratings}}}}]\n"
    ));
    let mesh = routes(&c, "mesh");
    let g = vhost(&mesh, "default/go-demo-8").expect("go-demo-8 vhost");
    let d = domains(g);
    // As istiod's generateVirtualHostDomains (no port forms: the port is ignored).
    assert_eq!(
        d,
        [
            "go-demo-8.default.svc.cluster.local",
            "go-demo-8",
            "go-demo-8.default.svc",
            "go-demo-8.default",
        ]
    );
    assert_eq!(
        c.routes["sidecar_go-demo-8"]["ignore_port_in_host_matching"],
        true
    );
    assert_eq!(
        g["routes"][0]["route"]["cluster"],
        "outbound|8080||go-demo-8.default.svc.cluster.local"
    );
    // ratings.prod is not the local ratings: the default route stays, fault-free.
    let local = vhost(&mesh, "ratings:80").expect("default ratings vhost");
    assert!(domains(local).contains(&"ratings"), "{local}");
    assert!(local["routes"][0].get("typed_per_filter_config").is_none());
    let prod = vhost(&mesh, "prod/ratings").expect("prod vhost");
    assert_eq!(domains(prod), ["ratings.prod.svc.cluster.local"]);
    // An external host keeps its literal name, with a note.
    let ext = vhost(&mesh, "default/ext").expect("ext vhost");
    assert_eq!(domains(ext), ["ratings.example.com"]);
    let w = c.warnings.join("\n");
    assert!(w.contains("host ratings.example.com"), "{w}");
    assert!(w.contains("ratings.prod.svc.cluster.local"), "{w}");
    snap!("fqdn_and_namespaces_mesh", &mesh);
}

#[test]
fn a_gateway_matches_short_hosts_only_as_their_fqdn() {
    let c = config(&format!(
        "{HEAD}  - name: repeater\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: repeater}}\nspec:\n  hosts: [repeater, repeater.acme.com]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: repeater}}}}]\n"
    ));
    let ingress = routes(&c, "ingress");
    assert_eq!(
        domains(&ingress[0]),
        ["repeater.default.svc.cluster.local", "repeater.acme.com"]
    );
    assert_eq!(c.routes["ingress"]["ignore_port_in_host_matching"], true);
}

#[test]
/// A match with no match type is a present match, as istiod converts it. `regex: '*'`
/// means "present" only under `withoutHeaders`: in `headers` and `queryParams` Istio
/// 1.26's validation rejects it (validateStringMatch: not an RE2 regex), so the local
/// mesh refuses it too.
fn an_empty_match_is_a_present_match_and_regex_star_is_refused() {
    let vs = |m: &str| {
        format!(
            "{HEAD}  - name: api\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: api}}\nspec:\n  hosts: [api]\n  http:\n  - match: [{{headers: {{x-user: {m}}}, queryParams: {{debug: {m}, q: {{exact: '1'}}}}}}]\n    route: [{{destination: {{host: api}}}}]\n"
        )
    };
    let refused = MeshSpec::parse(&vs("{regex: '*'}"), "t.yaml")
        .expect_err("Istio rejects regex '*' in headers")
        .to_string();
    assert!(
        refused.contains("headers.x-user.regex") && refused.contains("RE2"),
        "{refused}"
    );
    let c = config(&vs("{}"));
    let m = &routes(&c, "mesh")[0]["routes"][0]["match"];
    assert_eq!(m["headers"][0]["present_match"], true, "{m}");
    assert!(m["headers"][0].get("string_match").is_none(), "{m}");
    assert_eq!(m["query_parameters"][0]["present_match"], true, "{m}");
    assert_eq!(
        m["query_parameters"][1]["string_match"]["exact"], "1",
        "{m}"
    );
    snap!("regex_star_present_match", m);
}

/// ignoreUriCase, withoutHeaders, match.port and match.gateways, as istiod applies them.
pub const MATCH_FIELDS: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: m}
spec:
  services:
  - name: api
    port: 8080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  gateways: [gw, mesh]
  http:
  - name: case
    match: [{uri: {prefix: /api}, ignoreUriCase: true}]
    directResponse: {status: 201}
  - name: without
    match: [{uri: {prefix: /w}, withoutHeaders: {x-canary: {exact: 'yes'}, x-debug: {regex: '*'}}}]
    directResponse: {status: 202}
  - name: other-port
    match: [{port: 9999}]
    directResponse: {status: 203}
  - name: port-8080
    match: [{port: 8080, uri: {prefix: /p}}]
    directResponse: {status: 206}
  - name: mesh-only
    match: [{gateways: [mesh], uri: {prefix: /m}}]
    directResponse: {status: 451}
  - name: gw-only
    match: [{gateways: [default/gw], uri: {prefix: /g}}]
    directResponse: {status: 452}
  - route: [{destination: {host: api}}]
";

#[test]
fn match_fields_that_change_which_traffic_matches() {
    let c = config(MATCH_FIELDS);
    assert!(
        !c.warnings.iter().any(|w| w.contains("not supported")),
        "{:#?}",
        c.warnings
    );
    let names = |vh: &Value| -> Vec<String> {
        vh[0]["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(String::from))
            .collect()
    };
    let ingress = routes(&c, "ingress");
    let mesh = routes(&c, "mesh");
    // Port 9999 matches no hop; the ingress (port 80) has no 8080 route; gateways pick.
    assert_eq!(names(&ingress), ["case", "without", "gw-only", "api.6"]);
    assert_eq!(
        names(&mesh),
        ["case", "without", "port-8080", "mesh-only", "api.6"]
    );
    let m = &ingress[0]["routes"][0]["match"];
    assert_eq!(m["case_sensitive"], false, "{m}");
    let h = &ingress[0]["routes"][1]["match"]["headers"];
    assert_eq!(h[0]["name"], "x-canary");
    assert_eq!(h[0]["invert_match"], true);
    assert_eq!(h[0]["treat_missing_header_as_empty"], true);
    assert_eq!(h[1]["present_match"], true);
    assert_eq!(h[1]["invert_match"], true);
    assert!(h[1].get("treat_missing_header_as_empty").is_none());
    snap!("match_fields_ingress", &ingress);
    snap!("match_fields_mesh", &mesh);
}

/// A DestinationRule's trafficPolicy, as istiod's cluster builder applies it.
pub const TRAFFIC_POLICY: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: tp}
spec:
  services:
  - name: front
    demo: {forward: 'http://back/'}
  - name: back
    replicas: 2
    labels: {version: v1}
    demo: {failRate: 0.5, failStatus: 500}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front]
  gateways: [gw]
  http:
  - route: [{destination: {host: front}}]
    retries: {attempts: 2, retryOn: 5xx}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: front}
spec:
  host: front
  trafficPolicy:
    connectionPool:
      http: {maxRetries: 0, http1MaxPendingRequests: 100, http2MaxRequests: 200, idleTimeout: 1s}
      tcp: {maxConnections: 50, connectTimeout: 2s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: back}
spec:
  host: back.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50}
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
";

#[test]
fn destination_rule_traffic_policy_sets_circuit_breakers_outlier_detection_and_lb() {
    let c = config(TRAFFIC_POLICY);
    let cl = |name: &str| {
        c.clusters
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let front = cl("outbound|80||front.default.svc.cluster.local");
    let t = &front["circuit_breakers"]["thresholds"][0];
    // maxRetries 0: unset, as istiod reads it (see istiod_golden.rs).
    assert_eq!(t["max_retries"], 4294967295u64, "{front}");
    assert_eq!(t["max_pending_requests"], 100);
    assert_eq!(t["max_requests"], 200);
    assert_eq!(t["max_connections"], 50);
    assert_eq!(front["connect_timeout"], "2s");
    let back = cl("outbound|80||back.default.svc.cluster.local");
    assert_eq!(back["lb_policy"], "ROUND_ROBIN");
    assert_eq!(back["outlier_detection"]["consecutive_5xx"], 7);
    assert_eq!(back["outlier_detection"]["enforcing_consecutive_5xx"], 100);
    assert_eq!(back["outlier_detection"]["base_ejection_time"], "30s");
    assert_eq!(back["outlier_detection"]["max_ejection_percent"], 50);
    // The subset's loadBalancer overrides the rule's; its outlierDetection is inherited.
    let v1 = cl("outbound|80|v1|back.default.svc.cluster.local");
    assert_eq!(v1["lb_policy"], "RANDOM");
    assert_eq!(v1["outlier_detection"]["interval"], "5s");
    let w = c.warnings.join("\n");
    assert!(w.contains("connectionPool.http.idleTimeout"), "{w}");
    assert!(w.contains("trafficPolicy.tls"), "{w}");
    assert!(
        w.contains("connectionPool.http.maxRetries 0 is read as unset"),
        "{w}"
    );
    snap!("traffic_policy_clusters", &c.clusters);
}

/// DestinationRule fields a drill depends on, as istiod 1.27+ translates them
/// (pilot/pkg/networking/core/cluster_traffic_policy.go): `retryBudget`
/// (applyRetryBudget; default 20% and 3 as fixed by istio#59505 in 1.28.6/1.29.2),
/// `consecutiveGatewayErrors`, `minHealthPercent`, `splitExternalLocalOriginErrors` /
/// `consecutiveLocalOriginFailures` (applyOutlierDetection).
const DR_FIELDS: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: t}
spec:
  services:
  - name: back
    replicas: 2
    labels: {version: v1}
  - name: back
    labels: {version: v2}
  - name: front
  - name: side
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: back}
spec:
  host: back
  trafficPolicy:
    retryBudget: {percent: 25.5, minRetryConcurrency: 7}
    outlierDetection:
      consecutive5xxErrors: 10
      consecutiveGatewayErrors: 2
      minHealthPercent: 60
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 4
      interval: 1s
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      retryBudget: {}
      outlierDetection: {consecutiveGatewayErrors: 0}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: front}
spec:
  host: front
  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 5}
";

#[test]
fn destination_rule_retry_budget_gateway_errors_panic_threshold_and_local_origin() {
    let c = config(DR_FIELDS);
    let cl = |name: &str| {
        c.clusters
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let back = cl("outbound|80||back.default.svc.cluster.local");
    let t = &back["circuit_breakers"]["thresholds"][0];
    assert_eq!(t["retry_budget"]["budget_percent"]["value"], 25.5, "{back}");
    assert_eq!(t["retry_budget"]["min_retry_concurrency"], 7);
    let od = &back["outlier_detection"];
    assert_eq!(od["consecutive_5xx"], 10);
    assert_eq!(od["consecutive_gateway_failure"], 2);
    assert_eq!(od["enforcing_consecutive_gateway_failure"], 100);
    assert_eq!(od["split_external_local_origin_errors"], true);
    assert_eq!(od["consecutive_local_origin_failure"], 4);
    assert_eq!(od["enforcing_consecutive_local_origin_failure"], 100);
    assert_eq!(od["enforcing_local_origin_success_rate"], 0);
    assert_eq!(
        back["common_lb_config"]["healthy_panic_threshold"]["value"],
        60.0
    );
    // A subset inherits the rule's sections it does not give.
    let v1 = cl("outbound|80|v1|back.default.svc.cluster.local");
    assert_eq!(
        v1["circuit_breakers"]["thresholds"][0]["retry_budget"],
        t["retry_budget"]
    );
    // An empty retryBudget: istiod's defaults (20%, 3). Its own outlierDetection
    // replaces the rule's whole: gateway errors 0 = not enforced, panic threshold 0.
    let v2 = cl("outbound|80|v2|back.default.svc.cluster.local");
    let rb = &v2["circuit_breakers"]["thresholds"][0]["retry_budget"];
    assert_eq!(rb["budget_percent"]["value"], 20.0, "{v2}");
    assert_eq!(rb["min_retry_concurrency"], 3);
    assert_eq!(v2["outlier_detection"]["consecutive_gateway_failure"], 0);
    assert_eq!(
        v2["outlier_detection"]["enforcing_consecutive_gateway_failure"],
        0
    );
    assert!(v2["outlier_detection"].get("consecutive_5xx").is_none());
    assert_eq!(
        v2["common_lb_config"]["healthy_panic_threshold"]["value"],
        0.0
    );
    // Unsplit: local-origin failures are not counted apart.
    let front = cl("outbound|80||front.default.svc.cluster.local");
    assert!(
        front["outlier_detection"]
            .get("split_external_local_origin_errors")
            .is_none()
    );
    let w = c.warnings.join("\n");
    assert!(
        w.contains("consecutiveGatewayErrors 5 is not below consecutive5xxErrors 5 (Envoy's default when unset)"),
        "{w}"
    );
    assert!(!w.contains("not supported"), "{w}");
    snap!("destination_rule_fields_clusters", &c.clusters);

    // What Istio's validation rejects never reaches the translator: a local-origin
    // count without the split, a retry budget over 100%.
    for (bad, field) in [
        (
            "outlierDetection: {consecutiveLocalOriginFailures: 3}",
            "consecutiveLocalOriginFailures",
        ),
        ("retryBudget: {percent: 250}", "retryBudget.percent"),
    ] {
        let yaml = format!(
            "{HEAD}  - name: side\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: side}}\nspec:\n  host: side\n  trafficPolicy:\n    {bad}\n"
        );
        let err = MeshSpec::parse(&yaml, "t.yaml").expect_err(bad);
        assert!(err.to_string().contains(field), "{bad}: {err}");
    }
}

/// The server-side sidecar of each replica (Istio ≥ 1.24): an inbound listener in
/// front of the replica with istiod's inbound route — route.go
/// `BuildDefaultHTTPInboundRoute`: no timeout, `retry_on: reset-before-request`, 2
/// retries (ENABLE_INBOUND_RETRY_POLICY) — to the cluster `inbound|<port>||` holding
/// the application's port (cluster_builder.go `buildInboundCluster`, with the service
/// DestinationRule's connection pool). Callers' clusters list the inbound listeners.
#[test]
fn each_replica_has_an_inbound_sidecar_in_front_of_it() {
    let yaml = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: t}
spec:
  services:
  - name: api
    port: 8080
    replicas: 2
  - name: web
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 7}}
    outlierDetection: {consecutive5xxErrors: 3}
";
    let c = config(yaml);
    let names: Vec<&str> = c
        .listeners
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "ingress",
            "sidecar_api",
            "sidecar_web",
            "inbound_api_0",
            "inbound_api_1",
            "inbound_web_0"
        ]
    );
    let port = |v: &Value| v["socket_address"]["port_value"].as_u64().unwrap_or(0);
    let cluster = |name: &str| {
        c.clusters
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    // Callers reach replica i through inbound listener i (config(): replica port + 50).
    let out = cluster("outbound|8080||api.default.svc.cluster.local");
    let eps: Vec<u64> = out["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_array()
        .map(|a| a.iter().map(|e| port(&e["endpoint"]["address"])).collect())
        .unwrap_or_default();
    assert_eq!(eps, [10050, 10051]);
    let l1 = &c.listeners[4];
    assert_eq!(port(&l1["address"]), 10051);
    let hcm = &l1["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["stat_prefix"], "inbound_api_1");
    assert!(hcm.get("rds").is_none(), "inline, as istiod: {hcm}");
    let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"];
    assert_eq!(route["cluster"], "inbound|8080||api-1");
    assert_eq!(route["timeout"], "0s");
    assert_eq!(
        route["retry_policy"],
        serde_json::json!({"retry_on": "reset-before-request", "num_retries": 2})
    );
    // The inbound cluster holds the application's port, with the rule's connection
    // pool but not its outlier detection (applyTrafficPolicy, inbound direction).
    let in1 = cluster("inbound|8080||api-1");
    let ep = &in1["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
    assert_eq!(port(ep), 10001);
    assert_eq!(
        in1["circuit_breakers"]["thresholds"][0]["max_connections"],
        7
    );
    assert!(in1.get("outlier_detection").is_none(), "{in1}");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    snap!("inbound_listener", &c.listeners[4]);
    snap!("inbound_clusters", &c.clusters);

    // inboundSidecars: false — callers reach the replicas directly.
    let c = config(&yaml.replace("  services:", "  inboundSidecars: false\n  services:"));
    assert!(!c.listeners.iter().any(|l| {
        l["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("inbound_"))
    }));
    assert!(!c.clusters.iter().any(|x| {
        x["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("inbound|"))
    }));
    let out = c
        .clusters
        .iter()
        .find(|x| x["name"] == "outbound|8080||api.default.svc.cluster.local")
        .cloned()
        .unwrap_or_default();
    let eps: Vec<u64> = out["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_array()
        .map(|a| a.iter().map(|e| port(&e["endpoint"]["address"])).collect())
        .unwrap_or_default();
    assert_eq!(eps, [10000, 10001]);
}
