//! Per-sidecar route configurations (`sourceLabels` / `sourceNamespace`) and
//! destinations istiod routes to no cluster: snapshotted as the rest of
//! `mesh_translate`, whose helpers this module uses.

use serde_json::Value;

use super::{config, routes};

/// Route names of the virtual host `vhost` in route configuration `rc`.
fn route_names(c: &meshdrill::mesh::translate::EnvoyConfig, rc: &str, vhost: &str) -> Vec<String> {
    routes(c, rc)
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"] == vhost)
        .flat_map(|v| v["routes"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect()
}

const SOURCES: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: t}
spec:
  services:
  - name: a
    labels: {app: a}
  - name: b
    labels: {app: b}
  - name: c
    labels: {app: c, version: v1}
  - name: c
    labels: {app: c, version: v2}
  - name: api
  - name: solo
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  gateways: [gw, mesh]
  http:
  - name: from-a
    match: [{sourceLabels: {app: a}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: api}}]
  - name: from-other-ns
    match: [{sourceNamespace: other}]
    route: [{destination: {host: api}}]
  - name: from-default-ns
    match: [{sourceNamespace: default, uri: {prefix: /ns}}]
    route: [{destination: {host: api}}]
  - name: c-v2
    match: [{sourceLabels: {version: v2}}]
    route: [{destination: {host: api}}]
  - name: c-all
    match: [{sourceLabels: {app: c}, uri: {prefix: /c}}]
    route: [{destination: {host: api}}]
  - name: gateways-first
    match: [{gateways: [mesh], sourceLabels: {app: nobody}, uri: {prefix: /gw}}]
    route: [{destination: {host: api}}]
  - route: [{destination: {host: api}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: solo}
spec:
  hosts: [solo]
  http:
  - match: [{sourceLabels: {app: a}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: solo}}]
";

/// istiod builds the outbound routes per proxy (route.go
/// `BuildSidecarVirtualHostWrapper` → `BuildHTTPRoutesForVirtualService` →
/// `TranslateRoute`, Istio 1.26): `sourceMatchHTTP` keeps a clause when its
/// `sourceLabels` are a subset of the proxy's labels and its `sourceNamespace` is the
/// proxy's; `match.gateways`, when set, decides alone.
#[test]
fn each_sidecar_gets_the_routes_its_source_labels_and_namespace_select() {
    let c = config(SOURCES);
    // One route configuration per sidecar, named as its listener.
    for l in c.listeners.iter().filter(|l| {
        l["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("sidecar_"))
    }) {
        let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["rds"]["route_config_name"], l["name"], "{l}");
        assert!(
            hcm["rds"]["config_source"]["path_config_source"]["path"]
                .as_str()
                .is_some_and(
                    |p| p.ends_with(&format!("/{}.json", l["name"].as_str().unwrap_or("")))
                )
        );
    }
    let names: Vec<&String> = c.routes.keys().collect();
    assert_eq!(
        names,
        [
            "ingress",
            "sidecar_a",
            "sidecar_api",
            "sidecar_b",
            "sidecar_c",
            "sidecar_solo"
        ]
    );
    let api = |rc: &str| route_names(&c, rc, "default/api");
    assert_eq!(
        api("sidecar_a"),
        ["from-a", "from-default-ns", "gateways-first", "api.6"]
    );
    assert_eq!(
        api("sidecar_b"),
        ["from-default-ns", "gateways-first", "api.6"]
    );
    assert_eq!(api("sidecar_api"), api("sidecar_b"));
    // c's two deployments: {app: c} fits both, {version: v2} only one — left out
    // (one sidecar per service), with a warning.
    assert_eq!(
        api("sidecar_c"),
        ["from-default-ns", "c-all", "gateways-first", "api.6"]
    );
    let w = c.warnings.join("\n");
    assert!(
        w.contains("spec.http[3].match[0].sourceLabels fits only some deployments of c ({app=c,version=v2})"),
        "{w}"
    );
    assert_eq!(w.matches("fits only some").count(), 1, "said once: {w}");
    assert!(!w.contains("sourceLabels is not supported"), "{w}");
    // The ingress gateway's pod (app: istio-ingressgateway, istio-system) fits no
    // source condition here.
    assert_eq!(route_names(&c, "ingress", "default/api"), ["api.6"]);
    // solo's only route is for a's sidecar: elsewhere the VirtualService makes no
    // virtual host and solo keeps Istio's default route.
    assert!(route_names(&c, "sidecar_a", "default/solo") == ["solo.0"]);
    assert!(route_names(&c, "sidecar_b", "default/solo").is_empty());
    assert_eq!(route_names(&c, "sidecar_b", "solo:80"), ["default"]);
    let fault = |rc: &str| -> Value {
        routes(&c, rc)
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "default/api")
            .map(|v| v["routes"][0].clone())
            .unwrap_or_default()
    };
    assert!(fault("sidecar_a")["typed_per_filter_config"].is_object());
    assert!(fault("sidecar_b").get("typed_per_filter_config").is_none());
    crate::mesh_translate::snap!("sources_sidecar_a", &routes(&c, "sidecar_a"));
    crate::mesh_translate::snap!("sources_sidecar_b", &routes(&c, "sidecar_b"));
    crate::mesh_translate::snap!("sources_sidecar_c", &routes(&c, "sidecar_c"));
}

/// A destination port the service does not have names a cluster that does not exist
/// (istiod's GetDestinationCluster builds `outbound|<destination port>||host`):
/// Envoy answers 503 NC. A route's only destination takes all traffic whatever its
/// weight (applyHTTPRouteDestination, `len(in.Route) == 1`, Istio 1.26).
#[test]
fn a_missing_destination_port_is_no_cluster_and_a_lone_zero_weight_is_ignored() {
    let c = config(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: t}
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
  http:
  - name: wrong-port
    match: [{uri: {prefix: /wrong}}]
    route: [{destination: {host: api, port: {number: 9090}}}]
  - name: right-port
    match: [{uri: {prefix: /right}}]
    route: [{destination: {host: api, port: {number: 8080}}}]
  - name: zero
    route: [{destination: {host: api}, weight: 0}]
",
    );
    let vh = routes(&c, "mesh");
    let r = &vh[0]["routes"];
    assert_eq!(
        r[0]["route"]["cluster"],
        "outbound|9090||api.default.svc.cluster.local"
    );
    assert!(
        !c.clusters
            .iter()
            .any(|x| x["name"] == "outbound|9090||api.default.svc.cluster.local")
    );
    assert_eq!(
        r[1]["route"]["cluster"],
        "outbound|8080||api.default.svc.cluster.local"
    );
    assert_eq!(
        r[2]["route"]["cluster"],
        "outbound|8080||api.default.svc.cluster.local"
    );
    let w = c.warnings.join("\n");
    assert!(
        w.contains(
            "names port 9090 of api, which has only port 8080: requests get 503 (no cluster)"
        ),
        "{w}"
    );
    assert!(!w.contains("no destination with a weight"), "{w}");
    assert_eq!(c.warnings.len(), 1, "{w}");
    crate::mesh_translate::snap!("destination_port_and_zero_weight", &vh);
}
