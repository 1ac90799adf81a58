//! Gateway objects: one ingress listener per HTTP server port, VirtualServices bound
//! by `gateways`, hosts intersected with the servers' and several VirtualServices for
//! one host merged — as istiod's gateway.go `buildGatewayHTTPRouteConfig` (Istio
//! 1.26).

use serde_json::Value;

use super::{config, routes};

const GATEWAYS: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: t}
spec:
  services:
  - name: web
  - name: api
  - name: admin
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.acme.com']
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: acme}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: internal}
spec:
  servers:
  - port: {number: 8080, name: http-internal, protocol: HTTP}
    hosts: [default/shop.acme.com, prod/x.acme.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-api}
spec:
  hosts: [shop.acme.com, other.io]
  gateways: [public, default/internal]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: api}}]
  - name: admin-on-8080
    match: [{port: 8080, uri: {prefix: /admin}}]
    route: [{destination: {host: admin}}]
  - name: api-rest
    route: [{destination: {host: web}}]
  - name: never
    match: [{uri: {prefix: /never}}]
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-web}
spec:
  hosts: [shop.acme.com]
  gateways: [public]
  http:
  - name: static
    match: [{uri: {prefix: /static}}]
    route: [{destination: {host: web}}]
  - name: web-rest
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: lost}
spec:
  hosts: [lost.acme.com]
  gateways: [nowhere]
  http:
  - route: [{destination: {host: web}}]
";

fn route_names(vhost: &Value) -> Vec<&str> {
    vhost["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect()
}

#[test]
fn two_gateways_on_two_ports_intersect_hosts_and_merge_virtual_services() {
    let c = config(GATEWAYS);
    // One listener per HTTP server port: `ingress` (spec.ingress.port) for 80,
    // `ingress_8080` on a free port; the HTTPS server is not served.
    let ingress: Vec<(&str, &Value, &Value)> = c
        .listeners
        .iter()
        .filter(|l| l["name"].as_str().is_some_and(|n| n.starts_with("ingress")))
        .map(|l| {
            let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
            (
                l["name"].as_str().unwrap_or(""),
                &hcm["rds"]["route_config_name"],
                &l["address"]["socket_address"]["port_value"],
            )
        })
        .collect();
    assert_eq!(
        ingress,
        [
            ("ingress", &Value::from("ingress"), &Value::from(0)),
            (
                "ingress_8080",
                &Value::from("ingress_8080"),
                &Value::from(0)
            ),
        ]
    );
    let w = c.warnings.join("\n");
    assert!(
        w.contains("Gateway default/public: server port 443 (https, HTTPS) with tls: not served"),
        "{w}"
    );
    assert!(
        w.contains("VirtualService lost: gateway default/nowhere is no Gateway in the given files"),
        "{w}"
    );
    let on80 = routes(&c, "ingress");
    let vh = |vhosts: &Value, name: &str| -> Value {
        vhosts
            .as_array()
            .and_then(|a| a.iter().find(|v| v["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no vhost {name} in {vhosts:#}"))
    };
    // Port 80: server *.acme.com ∩ {shop.acme.com, other.io} = shop.acme.com; both
    // VirtualServices merged, each cut at its first catch-all, catch-alls last
    // (SortVHostRoutes); the port-8080 match is not on 80.
    let shop80 = vh(&on80, "shop.acme.com:80");
    assert_eq!(shop80["domains"], serde_json::json!(["shop.acme.com"]));
    assert_eq!(
        route_names(&shop80),
        ["api", "static", "api-rest", "web-rest"]
    );
    // The VirtualService naming a missing Gateway: as before, on the default ingress.
    assert_eq!(
        vh(&on80, "default/lost")["domains"],
        serde_json::json!(["lost.acme.com"])
    );
    assert_eq!(on80.as_array().map(Vec::len), Some(2), "{on80:#}");
    // Port 8080: only shop-api is bound to `internal`, whose host list names
    // shop.acme.com for namespace default (prod/x.acme.com is another namespace's).
    let on8080 = routes(&c, "ingress_8080");
    assert_eq!(on8080.as_array().map(Vec::len), Some(1), "{on8080:#}");
    let shop8080 = vh(&on8080, "shop.acme.com:8080");
    assert_eq!(route_names(&shop8080), ["api", "admin-on-8080", "api-rest"]);
    super::snap!("gateways_port_80", &on80);
    super::snap!("gateways_port_8080", &on8080);
}

#[test]
fn without_gateway_objects_the_ingress_is_as_before() {
    // The same VirtualServices without the Gateway documents: one ingress, hosts as
    // written, the second VirtualService for shop.acme.com dropped with a warning.
    let yaml: String = GATEWAYS
        .split("---\n")
        .filter(|d| !d.contains("kind: Gateway"))
        .collect::<Vec<_>>()
        .join("---\n");
    let c = config(&yaml);
    assert_eq!(
        c.routes.keys().filter(|k| k.starts_with("ingress")).count(),
        1
    );
    let on80 = routes(&c, "ingress");
    let names: Vec<&str> = on80
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["default/shop-api", "default/lost"]);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("host shop.acme.com is already routed by another VirtualService")),
        "{:#?}",
        c.warnings
    );
}
