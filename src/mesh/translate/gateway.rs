//! Ingress listeners from Gateway objects, as istiod builds a gateway proxy's HTTP
//! route configurations (gateway.go `buildGatewayHTTPRouteConfig`, Istio 1.26).
//!
//! - One ingress listener per distinct plain-HTTP server port. The mesh file's
//!   `spec.ingress.port` serves the port-80 server (else the first HTTP server's
//!   port) as listener and route configuration [`INGRESS_ROUTES`]; every other server
//!   port gets `ingress_<port>` on a free loopback port.
//! - A VirtualService binds to a server through its `gateways` (`name` resolved in
//!   the VirtualService's namespace, or `ns/name`: istiod's resolveGatewayName).
//! - Its virtual hosts are the intersection of the server's hosts (`ns/host` only for
//!   VirtualServices in `ns`: `host.NamesForNamespace`) with the VirtualService's
//!   hosts (`host.Names.Intersection`: the more specific of each matching pair).
//! - Several VirtualServices for one host are merged: their routes concatenated in
//!   order, then catch-all routes moved last (`SortVHostRoutes` / `IsCatchAllRoute`,
//!   route.go); each VirtualService's routes stop at its first catch-all, as
//!   `BuildHTTPRoutesForVirtualService` stops there.
//! - `match.port` is compared with the server's port.
//! - HTTPS / TLS (and TCP) servers are not served: a warning names each.
//! - A VirtualService naming a Gateway that is in none of the files keeps the local
//!   mesh's former behaviour — all its hosts on the default ingress, as port 80 —
//!   with a warning naming the missing Gateway.
//!
//! Without any Gateway object, [`Translator::ingress_routes`] alone builds the ingress,
//! as before.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::hosts::{resolve_host, vs_namespace};
use super::routes::{Hop, route_configuration, vhost_name};
use super::{INGRESS_LISTENER, INGRESS_ROUTES, Translator, gateways, vs_hosts};
use crate::istio::patch::object_label;
use crate::istio::spec::host_subset_of;
use crate::mesh::gateway::GatewayServer;
use crate::mesh::spec::MeshSpec;

/// One ingress listener: its name (also its route configuration's and stats
/// prefix), the gateway server port it serves, and whether it is the mesh file's
/// ingress (`spec.ingress.port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressListener {
    pub name: String,
    pub server_port: u16,
    pub primary: bool,
}

/// The ingress listeners of a mesh: the primary one first. Without Gateway objects,
/// the one `ingress` listener (taken as port 80).
pub fn ingress_listeners(spec: &MeshSpec) -> Vec<IngressListener> {
    let mut ports: Vec<u16> = Vec::new();
    for s in spec
        .gateways
        .iter()
        .flat_map(|g| &g.servers)
        .filter(|s| s.is_plain_http())
    {
        if !ports.contains(&s.port) {
            ports.push(s.port);
        }
    }
    let primary = if ports.contains(&80) {
        80
    } else {
        ports.first().copied().unwrap_or(80)
    };
    let mut out = vec![IngressListener {
        name: INGRESS_LISTENER.to_string(),
        server_port: primary,
        primary: true,
    }];
    out.extend(
        ports
            .into_iter()
            .filter(|p| *p != primary)
            .map(|p| IngressListener {
                name: format!("{INGRESS_LISTENER}_{p}"),
                server_port: p,
                primary: false,
            }),
    );
    out
}

/// istiod's resolveGatewayName (model/config.go): `name` → `<vs ns>/name`,
/// `./name` → `<vs ns>/name`, `name.ns.svc.cluster.local` → `ns/name`, `ns/name` as is.
pub(super) fn resolve_gateway_name(g: &str, vs_ns: &str) -> String {
    if let Some((ns, name)) = g.split_once('/') {
        return if ns == "." {
            format!("{vs_ns}/{name}")
        } else {
            g.to_string()
        };
    }
    match g.split_once('.') {
        None => format!("{vs_ns}/{g}"),
        Some((name, rest)) => {
            let ns = rest.split('.').next().unwrap_or(rest);
            format!("{ns}/{name}")
        }
    }
}

/// `host.NamesForNamespace(server.Hosts, vsNamespace).Intersection(vsHosts)`.
fn intersect(server_hosts: &[String], vs_ns: &str, vs_hosts: &[String]) -> Vec<String> {
    let server: Vec<&str> = server_hosts
        .iter()
        .filter_map(|h| match h.split_once('/') {
            Some((ns, name)) if ns == vs_ns || ns == "*" => Some(name),
            Some(_) => None,
            None => Some(h.as_str()),
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    for s in &server {
        for v in vs_hosts {
            let pick = if host_subset_of(s, v) {
                Some(s.to_string())
            } else if host_subset_of(v, s) {
                Some(v.clone())
            } else {
                None
            };
            if let Some(p) = pick.map(|p| p.to_ascii_lowercase())
                && !out.contains(&p)
            {
                out.push(p);
            }
        }
    }
    out
}

/// route.go IsCatchAllRoute: prefix `/` (or regex `.*`) and no header or query match.
fn is_catch_all(r: &Value) -> bool {
    let m = &r["match"];
    let path = m.get("prefix").and_then(Value::as_str) == Some("/")
        || m.get("path_separated_prefix").and_then(Value::as_str) == Some("/")
        || m.pointer("/safe_regex/regex").and_then(Value::as_str) == Some(".*");
    let none = |k: &str| m.get(k).and_then(Value::as_array).is_none_or(Vec::is_empty);
    path && none("headers") && none("query_parameters")
}

impl Translator<'_> {
    /// Warnings about Gateway servers the local mesh does not serve, and about
    /// VirtualServices naming a Gateway that is in none of the files.
    pub(super) fn warn_gateways(&mut self) {
        let spec = self.spec;
        for g in &spec.gateways {
            for s in g.servers.iter().filter(|s| !s.is_plain_http()) {
                self.warnings.push(format!(
                    "Gateway {}: server {}{}: not served by the local mesh (it serves plain HTTP only); VirtualServices bound to it get no route there",
                    g.full_name(),
                    s.label(),
                    if s.tls { " with tls" } else { "" }
                ));
            }
        }
        for vs in &spec.virtual_services {
            for m in self.missing_gateways(vs) {
                self.warnings.push(format!(
                    "{}: gateway {m} is no Gateway in the given files; its hosts are served on the default ingress (port 80), as without Gateway objects",
                    object_label(vs)
                ));
            }
        }
    }

    /// The gateways a VirtualService names that are no Gateway object (`mesh` aside).
    fn missing_gateways(&self, vs: &Value) -> Vec<String> {
        let ns = vs_namespace(vs);
        gateways(vs)
            .unwrap_or_default()
            .into_iter()
            .filter(|g| *g != "mesh")
            .map(|g| resolve_gateway_name(g, ns))
            .filter(|g| !self.spec.gateways.iter().any(|x| x.full_name() == *g))
            .collect()
    }

    /// The route configuration of one ingress listener: buildGatewayHTTPRouteConfig
    /// for every plain-HTTP server on its port.
    pub(super) fn gateway_route_config(
        &mut self,
        l: &IngressListener,
        clusters: &BTreeSet<String>,
    ) -> Value {
        let spec = self.spec;
        let servers: Vec<(String, &GatewayServer)> = spec
            .gateways
            .iter()
            .flat_map(|g| g.servers.iter().map(move |s| (g.full_name(), s)))
            .filter(|(_, s)| s.is_plain_http() && s.port == l.server_port)
            .collect();
        // (host, routes), in the order hosts first appear.
        let mut vhosts: Vec<(String, Vec<Value>)> = Vec::new();
        for (gw, server) in &servers {
            for vs in &spec.virtual_services {
                let ns = vs_namespace(vs);
                let bound = gateways(vs)
                    .unwrap_or_default()
                    .iter()
                    .any(|g| resolve_gateway_name(g, ns) == *gw);
                if !bound {
                    continue;
                }
                let hosts: Vec<String> = vs_hosts(vs).iter().map(|h| resolve_host(h, ns)).collect();
                let shared = intersect(&server.hosts, ns, &hosts);
                if shared.is_empty() {
                    continue;
                }
                let mut routes = self.routes(
                    vs,
                    clusters,
                    Hop::Gateway {
                        port: l.server_port,
                        name: gw,
                    },
                );
                if let Some(i) = routes.iter().position(is_catch_all) {
                    routes.truncate(i + 1);
                }
                if routes.is_empty() {
                    continue;
                }
                for h in shared {
                    match vhosts.iter_mut().find(|(x, _)| *x == h) {
                        Some((_, rs)) => rs.extend(routes.iter().cloned()),
                        None => vhosts.push((h, routes.clone())),
                    }
                }
            }
        }
        let port = l.server_port;
        let mut out: Vec<Value> = vhosts
            .into_iter()
            .map(|(h, rs)| {
                // SortVHostRoutes: catch-alls last, the others in order.
                let (catch_all, mut rest): (Vec<Value>, Vec<Value>) =
                    rs.into_iter().partition(is_catch_all);
                rest.extend(catch_all);
                json!({"name": format!("{h}:{port}"), "domains": [h], "routes": rest})
            })
            .collect();
        if l.primary {
            self.missing_gateway_vhosts(&mut out, clusters);
        }
        if out.is_empty() {
            // As istiod: a route configuration with no virtual host gets a blackhole
            // one (Envoy answers 404 NR).
            out.push(json!({"name": format!("blackhole:{port}"), "domains": ["*"], "routes": []}));
        }
        let name = if l.primary {
            INGRESS_ROUTES.to_string()
        } else {
            l.name.clone()
        };
        route_configuration(&name, out)
    }

    /// VirtualServices naming a Gateway that is in none of the files: on the primary
    /// ingress as without Gateway objects (port 80, all hosts), a host already served
    /// there left out with a warning.
    fn missing_gateway_vhosts(&mut self, out: &mut Vec<Value>, clusters: &BTreeSet<String>) {
        let spec = self.spec;
        let mut used: BTreeSet<String> = out
            .iter()
            .flat_map(|v| v["domains"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d.as_str().map(String::from))
            .collect();
        for vs in &spec.virtual_services {
            if self.missing_gateways(vs).is_empty() {
                continue;
            }
            let domains = self.gateway_domains(vs, &mut used);
            if domains.is_empty() {
                continue;
            }
            let routes = self.routes(vs, clusters, Hop::Ingress);
            out.push(json!({"name": vhost_name(vs), "domains": domains, "routes": routes}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_names_resolve_as_istiod() {
        assert_eq!(resolve_gateway_name("gw", "shop"), "shop/gw");
        assert_eq!(resolve_gateway_name("./gw", "shop"), "shop/gw");
        assert_eq!(resolve_gateway_name("infra/gw", "shop"), "infra/gw");
        assert_eq!(
            resolve_gateway_name("gw.infra.svc.cluster.local", "shop"),
            "infra/gw"
        );
    }

    #[test]
    fn hosts_intersect_as_istiod() {
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Server *.acme.com, VS a.acme.com: the VS host.
        assert_eq!(
            intersect(
                &h(&["*.acme.com"]),
                "default",
                &h(&["a.acme.com", "b.other.io"])
            ),
            ["a.acme.com"]
        );
        // Server a.acme.com, VS *.acme.com: the server host.
        assert_eq!(
            intersect(&h(&["a.acme.com"]), "default", &h(&["*.acme.com"])),
            ["a.acme.com"]
        );
        // ns/ qualifies the VirtualService's namespace; */ any.
        assert!(intersect(&h(&["prod/a.acme.com"]), "default", &h(&["a.acme.com"])).is_empty());
        assert_eq!(
            intersect(&h(&["*/a.acme.com", "*"]), "default", &h(&["A.acme.com"])),
            ["a.acme.com"]
        );
    }
}
