//! Per-sidecar route configurations: each service's sidecar gets the outbound routes
//! istiod builds for that proxy (route.go `BuildSidecarVirtualHostWrapper` →
//! `BuildHTTPRoutesForVirtualService` → `TranslateRoute`, Istio 1.26): a match clause
//! with `sourceLabels` / `sourceNamespace` is kept only when `sourceMatchHTTP` accepts
//! the proxy — the labels a subset of the proxy's workload labels, the namespace the
//! proxy's namespace (the mesh namespace here).
//!
//! One proxy per *service*, not per deployment. A service with several entries
//! (`reviews` v1 and v2 with different `labels`) has one sidecar listener in the local
//! mesh, so it has one route table; a `sourceLabels` clause applies on it only when it
//! fits every entry's labels (the labels all its replicas carry). One that fits some
//! entries but not others — where istiod would give the v2 pods a route the v1 pods do
//! not get — is left out, with a warning naming the entries it fits. One listener per
//! entry would need a replica to know its own outbound port and would split the
//! service's sidecar stats; the warning keeps the difference visible instead.
//!
//! As in istiod, a VirtualService none of whose routes applies to the proxy makes no
//! virtual host there: its services get Istio's default route on that sidecar
//! (`BuildSidecarVirtualHostWrapper` only drops services that got a virtual host).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::hosts::{service_fqdn, vs_namespace};
use super::policy::default_retry_policy;
use super::routes::{Hop, route_configuration, vhost_name};
use super::{Translator, bound_to_mesh, cluster_name, sidecar_listener, vs_hosts};
use crate::istio::patch::object_label;
use crate::mesh::spec::MeshSpec;

/// The proxy a sidecar route configuration is built for: the workload labels of each
/// entry (deployment) of the service, and its namespace.
#[derive(Debug, Clone)]
pub(super) struct Proxy<'a> {
    pub service: &'a str,
    pub namespace: &'a str,
    pub entries: Vec<&'a BTreeMap<String, String>>,
}

/// How a match clause's source conditions fit a proxy's entries.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SourceFit {
    /// Every entry (or no source condition): the clause applies.
    All,
    /// Some entries only (their indices): left out, with a warning.
    Some(Vec<usize>),
    /// None: left out, as istiod leaves it out for this proxy.
    None,
}

impl<'a> Proxy<'a> {
    /// The proxy of `service`'s sidecar in `spec`.
    pub(super) fn of(spec: &'a MeshSpec, service: &'a str) -> Self {
        Proxy {
            service,
            namespace: &spec.namespace,
            entries: spec
                .services
                .iter()
                .filter(|s| s.name == service)
                .map(|s| &s.labels)
                .collect(),
        }
    }

    /// istiod's `sourceMatchHTTP` (route.go, Istio 1.26) for the part that is about
    /// the proxy: `sourceLabels` a subset of its labels and `sourceNamespace` empty or
    /// its namespace. (`match.gateways`, checked first by istiod, is the caller's.)
    pub(super) fn fit(&self, m: &Value) -> SourceFit {
        let labels = m.get("sourceLabels").and_then(Value::as_object);
        let ns_ok = m
            .get("sourceNamespace")
            .and_then(Value::as_str)
            .is_none_or(|ns| ns.is_empty() || ns == self.namespace);
        if !ns_ok {
            return SourceFit::None;
        }
        let Some(labels) = labels.filter(|l| !l.is_empty()) else {
            return SourceFit::All;
        };
        let fits: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, have)| {
                labels.iter().all(|(k, v)| {
                    v.as_str()
                        .is_some_and(|v| have.get(k).is_some_and(|h| h == v))
                })
            })
            .map(|(i, _)| i)
            .collect();
        if fits.is_empty() {
            SourceFit::None
        } else if fits.len() == self.entries.len() {
            SourceFit::All
        } else {
            SourceFit::Some(fits)
        }
    }
}

/// The workload labels and namespace of Istio's default ingress gateway pods
/// (`istio: ingressgateway`, `app: istio-ingressgateway` in `istio-system`), which
/// `sourceMatchHTTP` compares a match's source conditions with at the gateway.
const INGRESS_GATEWAY_LABELS: [(&str, &str); 2] =
    [("app", "istio-ingressgateway"), ("istio", "ingressgateway")];
const INGRESS_GATEWAY_NAMESPACE: &str = "istio-system";

/// Whether a match clause's `sourceLabels` / `sourceNamespace` accept the ingress
/// gateway proxy (istiod's sourceMatchHTTP with the gateway pod's labels).
pub(super) fn ingress_gateway_fits(m: &Value) -> bool {
    let ns_ok = m
        .get("sourceNamespace")
        .and_then(Value::as_str)
        .is_none_or(|ns| ns.is_empty() || ns == INGRESS_GATEWAY_NAMESPACE);
    let labels_ok = m
        .get("sourceLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| {
            INGRESS_GATEWAY_LABELS
                .iter()
                .any(|(gk, gv)| gk == k && v.as_str() == Some(*gv))
        });
    ns_ok && labels_ok
}

/// The route configuration (and listener) name of a service's sidecar.
pub fn sidecar_routes(service: &str) -> String {
    sidecar_listener(service)
}

impl Translator<'_> {
    /// Warns about the match clauses of `vs` whose source labels fit only some of the
    /// entries of `proxy`'s service.
    fn warn_partial_fits(&mut self, vs: &Value, proxy: &Proxy<'_>) {
        let http = vs
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, r) in http.iter().enumerate() {
            for (j, m) in r
                .get("match")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let SourceFit::Some(fits) = proxy.fit(m) {
                    let which: Vec<String> = fits
                        .iter()
                        .filter_map(|e| proxy.entries.get(*e))
                        .map(|l| {
                            let kv: Vec<String> =
                                l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            format!("{{{}}}", kv.join(","))
                        })
                        .collect();
                    self.warnings.push(format!(
                        "{}: spec.http[{i}].match[{j}].sourceLabels fits only some deployments of {} ({}); the local mesh has one sidecar per service, so it is left out for all of them (istiod would apply it to those pods only)",
                        object_label(vs),
                        proxy.service,
                        which.join(", ")
                    ));
                }
            }
        }
    }

    /// The route configuration of one service's sidecar (the former shared `mesh`
    /// table, now per proxy): for each VirtualService that applies to mesh traffic, its
    /// routes that apply to this proxy; for services no such VirtualService covers,
    /// Istio's default route (default retry policy, no timeout).
    pub(super) fn sidecar_route_config(
        &mut self,
        proxy: &Proxy<'_>,
        clusters: &BTreeSet<String>,
    ) -> Value {
        let mut vhosts = Vec::new();
        let mut used = BTreeSet::new();
        let spec = self.spec;
        let mut covering: Vec<&Value> = Vec::new();
        for vs in spec.virtual_services.iter().filter(|v| bound_to_mesh(v)) {
            self.warn_partial_fits(vs, proxy);
            // The port the calls are made to: the (first) service the VS names.
            let ns = vs_namespace(vs);
            let port = vs_hosts(vs)
                .iter()
                .find_map(|h| self.services_named(h, ns).first().map(|s| s.to_string()))
                .map_or(80, |s| self.service_port(&s));
            let routes = self.routes(vs, clusters, Hop::Sidecar { port, proxy });
            // As istiod: no route for this proxy, no virtual host (and the services
            // keep their default route).
            if routes.is_empty() {
                continue;
            }
            covering.push(vs);
            let domains = self.sidecar_domains(vs, &mut used);
            if domains.is_empty() {
                continue;
            }
            vhosts.push(json!({"name": vhost_name(vs), "domains": domains, "routes": routes}));
        }
        for name in spec.service_names() {
            let covered = covering.iter().any(|vs| {
                let ns = vs_namespace(vs);
                vs_hosts(vs)
                    .iter()
                    .any(|h| self.services_named(h, ns).contains(&name))
            });
            if covered {
                continue;
            }
            let port = self.service_port(name);
            let domains = self.service_domains(name, &mut used);
            let route = json!({
                "name": "default",
                "match": {"prefix": "/"},
                "route": {
                    "cluster": cluster_name(port, None, &service_fqdn(name, &self.spec.namespace)),
                    "timeout": "0s",
                    "max_grpc_timeout": "0s",
                    "retry_policy": default_retry_policy(),
                }
            });
            vhosts.push(
                json!({"name": format!("{name}:{port}"), "domains": domains, "routes": [route]}),
            );
        }
        route_configuration(&sidecar_routes(proxy.service), vhosts)
    }
}
