//! Route configurations: the ingress gateway's and the sidecars', their virtual hosts,
//! and each HTTP route's action — destinations and weights, direct responses, timeout,
//! retry policy and fault (istiod's route.go BuildHTTPRoutesForVirtualService).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::actions::{self, HeaderOps, header_ops};
use super::hosts::{resolve_host, service_fqdn, vs_namespace};
use super::policy::{fault_config, retry_policy};
use super::sidecar::{Proxy, SourceFit};
use super::{
    FAULT_FILTER, INGRESS_ROUTES, Translator, bound_to_ingress, cluster_name, gateways,
    proto_duration,
};
use crate::istio::patch::object_label;
use crate::istio::types::IstioDuration;

impl Translator<'_> {
    pub(super) fn ingress_routes(&mut self, clusters: &BTreeSet<String>) -> Value {
        let mut vhosts = Vec::new();
        let mut used = BTreeSet::new();
        let spec = self.spec;
        for vs in spec.virtual_services.iter().filter(|v| bound_to_ingress(v)) {
            let domains = self.gateway_domains(vs, &mut used);
            if domains.is_empty() {
                continue;
            }
            let routes = self.routes(vs, clusters, Hop::Ingress);
            vhosts.push(json!({"name": vhost_name(vs), "domains": domains, "routes": routes}));
        }
        route_configuration(INGRESS_ROUTES, vhosts)
    }

    pub(super) fn routes(
        &mut self,
        vs: &Value,
        clusters: &BTreeSet<String>,
        hop: Hop<'_>,
    ) -> Vec<Value> {
        let label = object_label(vs);
        let vs_name = vs
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("vs");
        let mut out = Vec::new();
        // Every top-level field is translated or named: TCP and TLS routes are not
        // served (the local mesh's listeners are HTTP), and exportTo only decides a
        // delegate's visibility here (one mesh namespace, every sidecar sees every
        // VirtualService).
        for (k, why) in [
            (
                "tcp",
                "TCP routes are not served by the local mesh (HTTP only)",
            ),
            (
                "tls",
                "TLS routes are not served by the local mesh (HTTP only)",
            ),
            (
                "exportTo",
                "read only for delegates; every sidecar of the local mesh sees every VirtualService",
            ),
        ] {
            if vs.pointer(&format!("/spec/{k}")).is_some() {
                self.warnings.push(format!("{label}: spec.{k}: {why}"));
            }
        }
        let Some(http) = vs.pointer("/spec/http").and_then(Value::as_array) else {
            self.warnings.push(format!(
                "{label}: no spec.http routes; the local mesh routes HTTP only"
            ));
            return out;
        };
        for (i, r) in http.iter().enumerate() {
            self.audit_route_fields(&label, i, r);
            let name = r
                .get("name")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("{vs_name}.{i}"));
            let attempts = r
                .pointer("/retries/attempts")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if r.get("fault").is_some() && attempts > 0 {
                self.warnings.push(format!(
                    "{label}: spec.http[{i}] has both a fault and retries: the fault's own hop does not retry what it injects (istio#13705); put the retries on the calling route"
                ));
            }
            let Some((kind, body, headers)) =
                self.action(&label, i, r, vs_namespace(vs), hop.port(), clusters)
            else {
                continue;
            };
            let fault = r.get("fault").and_then(fault_config);
            let matches: Vec<(Value, Option<String>)> =
                match r.get("match").and_then(Value::as_array) {
                    Some(ms) if !ms.is_empty() => {
                        let kept: Vec<(Value, Option<String>)> = ms
                            .iter()
                            .enumerate()
                            .filter(|(_, m)| applies_on(m, vs, hop))
                            .map(|(j, m)| (self.route_match(&label, i, j, m), match_name(m)))
                            .collect();
                        // As istiod: a route none of whose matches applies on this hop
                        // is left out here.
                        if kept.is_empty() {
                            continue;
                        }
                        kept
                    }
                    _ => vec![(json!({"prefix": "/"}), None)],
                };
            for (m, match_name) in matches {
                let mut route = Map::new();
                // As istiod's TranslateRoute: `<route name>.<match name>`.
                let name = match match_name {
                    Some(n) => format!("{name}.{n}"),
                    None => name.clone(),
                };
                route.insert("name".into(), json!(name));
                route.insert("match".into(), m);
                route.insert(kind.clone(), body.clone());
                headers.append_to(&mut route);
                if let Some(f) = &fault {
                    route.insert("typed_per_filter_config".into(), json!({ FAULT_FILTER: f }));
                }
                out.push(Value::Object(route));
            }
        }
        out
    }

    /// `("route" | "redirect" | "direct_response", {...})` and the route-level header
    /// operations (the route's `headers`, then a single destination's), as istiod's
    /// TranslateRoute; `None` when istiod leaves the route without an action.
    /// `listen_port`: the port the route configuration is built for.
    pub(super) fn action(
        &mut self,
        label: &str,
        i: usize,
        r: &Value,
        vs_ns: &str,
        listen_port: u16,
        clusters: &BTreeSet<String>,
    ) -> Option<(String, Value, HeaderOps)> {
        let mut headers = r.get("headers").map(header_ops).unwrap_or_default();
        if let Some(rd) = r.get("redirect") {
            return match actions::redirect(rd, listen_port) {
                Ok(v) => Some(("redirect".into(), v, headers)),
                Err(code) => {
                    self.warnings.push(format!(
                        "{label}: spec.http[{i}].redirect.redirectCode {code} is not supported by istiod (301, 302, 303, 307, 308); the route is left out"
                    ));
                    None
                }
            };
        }
        if let Some(dr) = r.get("directResponse") {
            let status = dr.get("status").and_then(Value::as_u64).unwrap_or(200);
            let mut out = json!({"status": status});
            if let Some(body) = dr.pointer("/body/string").and_then(Value::as_str) {
                out["body"] = json!({"inline_string": body});
            } else if let Some(b) = dr.pointer("/body/bytes").and_then(Value::as_str) {
                // Base64 in both Istio's and Envoy's JSON.
                out["body"] = json!({"inline_bytes": b});
            }
            return Some(("direct_response".into(), out, headers));
        }
        let mut dests: Vec<(String, u64, Option<HeaderOps>)> = Vec::new();
        let list = r
            .get("route")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let single = list.len() == 1;
        for d in &list {
            let host = d
                .pointer("/destination/host")
                .and_then(Value::as_str)
                .unwrap_or("");
            let subset = d.pointer("/destination/subset").and_then(Value::as_str);
            let weight = crate::istio::spec::destination_weight(d, single);
            let (name, port) = match self.service_for(host, vs_ns) {
                Some(s) => (service_fqdn(&s.name, &self.spec.namespace), s.port),
                None => {
                    self.warnings.push(format!(
                        "{label}: spec.http[{i}] routes to host {host}, which is not a service of the mesh: requests get 503 (no cluster)"
                    ));
                    (
                        resolve_host(host, vs_ns),
                        d.pointer("/destination/port/number")
                            .and_then(Value::as_u64)
                            .unwrap_or(80) as u16,
                    )
                }
            };
            // As istiod's GetDestinationCluster (route.go, Istio 1.26): the cluster is
            // named by the destination's port; a port the service does not have names
            // no cluster, and Envoy answers 503 (NC).
            let port = match d
                .pointer("/destination/port/number")
                .and_then(Value::as_u64)
            {
                Some(p) if p != u64::from(port) => {
                    self.warnings.push(format!("{label}: spec.http[{i}] names port {p} of {host}, which has only port {port}: requests get 503 (no cluster), as in Istio"));
                    u16::try_from(p).unwrap_or(0)
                }
                _ => port,
            };
            let cluster = cluster_name(port, subset, &name);
            if let Some(sub) = subset
                && self
                    .service_for(host, vs_ns)
                    .is_some_and(|s| s.port == port)
                && !clusters.contains(&cluster)
            {
                self.warnings.push(format!(
                    "{label}: spec.http[{i}] names subset {sub} of {host}, which no DestinationRule defines: requests get 503 (no cluster), as in Istio"
                ));
            }
            if weight > 0 {
                dests.push((cluster, weight, d.get("headers").map(header_ops)));
            }
        }
        let mut route = Map::new();
        let mut dest_authority = None;
        match dests.as_slice() {
            [] => {
                self.warnings.push(format!(
                    "{label}: spec.http[{i}] has no destination with a weight > 0"
                ));
                route.insert("cluster".into(), json!("blackhole"));
            }
            [(c, _, ops)] => {
                route.insert("cluster".into(), json!(c));
                // As processDestination: a single destination's headers follow the
                // route's; its authority only when the route sets none.
                if let Some(ops) = ops {
                    headers.request_add.extend(ops.request_add.iter().cloned());
                    headers
                        .response_add
                        .extend(ops.response_add.iter().cloned());
                    headers
                        .request_remove
                        .extend(ops.request_remove.iter().cloned());
                    headers
                        .response_remove
                        .extend(ops.response_remove.iter().cloned());
                    dest_authority = ops.authority.clone();
                }
            }
            many => {
                let cs: Vec<Value> = many
                    .iter()
                    .map(|(c, w, ops)| {
                        // processWeightedDestination: headers on the cluster weight.
                        let mut cw = Map::new();
                        cw.insert("name".into(), json!(c));
                        cw.insert("weight".into(), json!(w));
                        if let Some(ops) = ops {
                            ops.append_to(&mut cw);
                            if let Some(a) = &ops.authority {
                                cw.insert("host_rewrite_literal".into(), json!(a));
                            }
                        }
                        Value::Object(cw)
                    })
                    .collect();
                route.insert("weighted_clusters".into(), json!({"clusters": cs}));
            }
        }
        let timeout = r
            .get("timeout")
            .and_then(Value::as_str)
            .and_then(|s| IstioDuration::parse_timeout(s).ok().flatten())
            .map(|d| proto_duration(d.as_duration().as_millis()))
            .unwrap_or_else(|| "0s".into());
        // As istiod's setTimeout: the route timeout also caps a gRPC caller's
        // grpc-timeout header (0s: the header is used as sent).
        route.insert("max_grpc_timeout".into(), json!(timeout));
        route.insert("timeout".into(), json!(timeout));
        if let Some(p) = retry_policy(r.get("retries")) {
            route.insert("retry_policy".into(), p);
        }
        // applyHTTPRouteDestination: rewrite.authority over the headers' authority,
        // a single destination's authority only when neither is set.
        let rewrite_authority = r
            .get("rewrite")
            .and_then(|rw| actions::apply_rewrite(&mut route, rw));
        if let Some(a) = rewrite_authority
            .or_else(|| headers.authority.clone())
            .or(dest_authority)
        {
            actions::rewrite_host(&mut route, &a);
        }
        let mirrors = self.mirror_policies(label, i, r, vs_ns, clusters);
        if !mirrors.is_empty() {
            route.insert("request_mirror_policies".into(), Value::Array(mirrors));
        }
        Some(("route".into(), Value::Object(route), headers))
    }
}

/// The hop a route configuration is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hop<'a> {
    /// The ingress gateway, taken to listen on port 80 (an Istio ingress gateway's
    /// HTTP server port).
    Ingress,
    /// A sidecar's outbound calls to a service port, for one proxy.
    Sidecar { port: u16, proxy: &'a Proxy<'a> },
    /// A Gateway object's server port; `name` is the Gateway's `ns/name`.
    Gateway { port: u16, name: &'a str },
}

impl Hop<'_> {
    /// The port routes on this hop are built for (istiod's listenPort).
    pub(super) fn port(self) -> u16 {
        match self {
            Hop::Ingress => INGRESS_MATCH_PORT as u16,
            Hop::Sidecar { port, .. } | Hop::Gateway { port, .. } => port,
        }
    }
}

/// A match clause's `name`, which istiod appends to the route's name.
fn match_name(m: &Value) -> Option<String> {
    m.get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(String::from)
}

/// The gateway port `match.port` is compared with at the ingress.
const INGRESS_MATCH_PORT: u64 = 80;

/// Whether a match clause applies on a hop, as istiod's TranslateRoute (`port`) and
/// sourceMatchHTTP (`gateways`, else `sourceLabels` / `sourceNamespace`) decide
/// (route.go, Istio 1.26).
pub(super) fn applies_on(m: &Value, vs: &Value, hop: Hop<'_>) -> bool {
    if let Some(p) = m.get("port").and_then(Value::as_u64) {
        let hop_port = match hop {
            Hop::Ingress => INGRESS_MATCH_PORT,
            Hop::Sidecar { port, .. } | Hop::Gateway { port, .. } => u64::from(port),
        };
        if p != hop_port {
            return false;
        }
    }
    let gws = m
        .get("gateways")
        .and_then(Value::as_array)
        .filter(|g| !g.is_empty());
    let Some(gws) = gws else {
        // As sourceMatchHTTP: without match.gateways, the source conditions decide.
        return match hop {
            Hop::Sidecar { proxy, .. } => proxy.fit(m) == SourceFit::All,
            Hop::Ingress | Hop::Gateway { .. } => super::sidecar::ingress_gateway_fits(m),
        };
    };
    // `ns/name` and `name` name the same gateway here.
    let short = |g: &str| g.rsplit('/').next().unwrap_or(g).to_string();
    let listed: Vec<String> = gws.iter().filter_map(Value::as_str).map(short).collect();
    match hop {
        Hop::Sidecar { .. } => listed.iter().any(|g| g == "mesh"),
        // match.gateways resolved as the VirtualService's (resolveGatewayName).
        Hop::Gateway { name, .. } => gws
            .iter()
            .filter_map(Value::as_str)
            .any(|g| super::gateway::resolve_gateway_name(g, vs_namespace(vs)) == name),
        Hop::Ingress => gateways(vs).is_some_and(|vg| {
            vg.iter()
                .filter(|g| **g != "mesh")
                .any(|g| listed.contains(&short(g)))
        }),
    }
}

pub(super) fn vhost_name(vs: &Value) -> String {
    let ns = vs
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = vs
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{ns}/{name}")
}

/// As istiod's outbound and gateway route configurations: the port of the Host header
/// is ignored when matching domains.
pub(super) fn route_configuration(name: &str, vhosts: Vec<Value>) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": name,
        "virtual_hosts": vhosts,
        "validate_clusters": false,
        "ignore_port_in_host_matching": true
    })
}
