//! VirtualService → Envoy configuration, as istiod builds it for the fields meshdrill
//! supports (FACTS.md; istio pilot/pkg/networking/core/route/route.go `TranslateFault`,
//! route/retry/retry.go `ConvertPolicy`). Pure: values in, JSON out.
//!
//! Topology (one Envoy, a listener per hop):
//! - `ingress`: the ingress gateway. Its routes ([`INGRESS_ROUTES`]) come from the
//!   VirtualServices bound to a gateway — `gateways` names anything besides `mesh`.
//!   Hosts no such VirtualService names get Envoy's 404, as at an Istio gateway.
//! - `sidecar_<service>`: each service's outbound calls, as its sidecar. All sidecars
//!   share the routes [`MESH_ROUTES`]: for each service, the VirtualService that applies
//!   to mesh traffic (`gateways` absent, empty or listing `mesh`), else Istio's default
//!   route (default retry policy, no timeout).
//! - one cluster per service and DestinationRule subset, `outbound|<port>|<subset>|<host>`,
//!   with replicas as static endpoints and Istio's circuit-breaker thresholds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::spec::{MeshSpec, ServiceSpec};
use crate::istio::patch::object_label;
use crate::istio::types::{GrpcStatus, IstioDuration, RetryOn};

/// The ingress listener's route configuration.
pub const INGRESS_ROUTES: &str = "ingress";
/// The sidecars' shared route configuration.
pub const MESH_ROUTES: &str = "mesh";
/// The ingress listener (and its stats prefix).
pub const INGRESS_LISTENER: &str = "ingress";
/// Istio sets every circuit-breaker threshold to 2^32 − 1.
pub const ISTIO_MAX: u64 = u32::MAX as u64;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// Where the generated configuration refers to files and ports.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The watched directory holding the RDS files.
    pub rds_dir: PathBuf,
    pub access_log: PathBuf,
    /// Loopback port of each replica, per service name, in replica order.
    pub replica_ports: BTreeMap<String, Vec<u16>>,
}

impl Layout {
    pub fn rds_file(&self, route_config: &str) -> PathBuf {
        self.rds_dir.join(format!("{route_config}.json"))
    }
}

/// The generated Envoy resources (xDS resources, each with its `@type`).
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyConfig {
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    /// Route configurations by name.
    pub routes: BTreeMap<String, Value>,
    /// What the user should know: unknown hosts, missing subsets, unsupported fields.
    pub warnings: Vec<String>,
}

/// The sidecar listener (and stats prefix) of a service.
pub fn sidecar_listener(service: &str) -> String {
    format!("sidecar_{service}")
}

/// Istio's cluster name for a service port and subset.
pub fn cluster_name(port: u16, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// The retry policy istiod gives one HTTP route of a VirtualService (`spec.http[i]`):
/// its `retries` block, Istio's default policy without one, no retries for
/// `attempts: 0`.
pub fn route_retry_policy(route: &Value) -> crate::slo::retry::RetryPolicy {
    crate::slo::retry::RetryPolicy::from_envoy(retry_policy(route.get("retries")).as_ref())
}

/// The Envoy cluster of the first destination of one HTTP route of `vs`: where a
/// retry validation reads that hop's upstream requests, retries and overflow.
/// `None` when the destination is not a service of the mesh.
pub fn route_cluster(spec: &MeshSpec, vs: &Value, route: &Value) -> Option<String> {
    let d = route.get("route")?.as_array()?.first()?;
    let host = d.pointer("/destination/host")?.as_str()?;
    let subset = d.pointer("/destination/subset").and_then(Value::as_str);
    let fqdn = resolve_host(host, vs_namespace(vs));
    let s = spec
        .services
        .iter()
        .find(|s| service_fqdn(&s.name, &spec.namespace) == fqdn)?;
    Some(cluster_name(s.port, subset, &s.name))
}

/// Whether a VirtualService applies at the ingress gateway.
pub fn bound_to_ingress(vs: &Value) -> bool {
    gateways(vs).is_some_and(|g| g.iter().any(|x| *x != "mesh"))
}

/// Whether a VirtualService applies to sidecar (service-to-service) traffic.
pub fn bound_to_mesh(vs: &Value) -> bool {
    match gateways(vs) {
        None => true,
        Some(g) => g.is_empty() || g.contains(&"mesh"),
    }
}

fn gateways(vs: &Value) -> Option<Vec<&str>> {
    vs.pointer("/spec/gateways")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
}

fn hosts(vs: &Value) -> Vec<&str> {
    vs.pointer("/spec/hosts")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A proto-JSON duration: `0.200s`.
pub fn proto_duration(ms: u128) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// Translates the whole mesh.
pub fn translate(spec: &MeshSpec, layout: &Layout) -> EnvoyConfig {
    let mut t = Translator {
        spec,
        warnings: Vec::new(),
    };
    let clusters = t.clusters(layout);
    let cluster_names: BTreeSet<String> = clusters
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect();
    let mut listeners = vec![listener(
        INGRESS_LISTENER,
        spec.ingress_port,
        INGRESS_ROUTES,
        layout,
    )];
    for s in spec.service_names() {
        listeners.push(listener(&sidecar_listener(s), 0, MESH_ROUTES, layout));
    }
    let mut routes = BTreeMap::new();
    routes.insert(INGRESS_ROUTES.to_string(), t.ingress_routes(&cluster_names));
    routes.insert(MESH_ROUTES.to_string(), t.mesh_routes(&cluster_names));
    EnvoyConfig {
        listeners,
        clusters,
        routes,
        warnings: t.warnings,
    }
}

/// Wraps resources in the DiscoveryResponse that a path config source reads.
pub fn discovery_response(version: u64, resources: &[Value]) -> Value {
    json!({"version_info": version.to_string(), "resources": resources})
}

fn listener(name: &str, port: u16, route_config: &str, layout: &Layout) -> Value {
    let rds_file = layout.rds_file(route_config);
    json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                // As istiod's buildHTTPConnectionManager with the default mesh config
                // (pathNormalization DEFAULT = BASE).
                "normalize_path": true,
                "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                "rds": {
                    "route_config_name": route_config,
                    "config_source": {
                        "path_config_source": {
                            "path": rds_file.display().to_string(),
                            "watched_directory": {"path": layout.rds_dir.display().to_string()}
                        },
                        "resource_api_version": "V3"
                    }
                },
                // As istiod: an empty fault filter before the router on every HTTP
                // listener, so per-route fault configuration takes effect.
                "http_filters": [
                    {"name": FAULT_FILTER, "typed_config": {"@type": FAULT_TYPE}},
                    {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                ],
                "access_log": [{
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": layout.access_log.display().to_string(),
                        "log_format": {"json_format": {
                            "hop": name,
                            "status": "%RESPONSE_CODE%",
                            "flags": "%RESPONSE_FLAGS%",
                            "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                            "duration_ms": "%DURATION%",
                            "cluster": "%UPSTREAM_CLUSTER%",
                            "authority": "%REQ(:AUTHORITY)%",
                            "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
                        }}
                    }
                }]
            }
        }]}]
    })
}

struct Translator<'a> {
    spec: &'a MeshSpec,
    warnings: Vec<String>,
}

impl Translator<'_> {
    /// The mesh service a host names, resolved in `ns` as istiod does: only when it
    /// resolves to `<service>.<mesh namespace>.svc.cluster.local`.
    fn service_for(&self, host: &str, ns: &str) -> Option<&ServiceSpec> {
        let fqdn = resolve_host(host, ns);
        self.spec
            .services
            .iter()
            .find(|s| service_fqdn(&s.name, &self.spec.namespace) == fqdn)
    }

    /// The services a (resolved) VirtualService host names; wildcards name every
    /// service they match.
    fn services_named(&self, host: &str, ns: &str) -> Vec<&str> {
        let fqdn = resolve_host(host, ns);
        self.spec
            .service_names()
            .into_iter()
            .filter(|s| wildcard_matches(&fqdn, &service_fqdn(s, &self.spec.namespace)))
            .collect()
    }

    fn clusters(&mut self, layout: &Layout) -> Vec<Value> {
        let mut out = Vec::new();
        for name in self.spec.service_names() {
            let entries: Vec<&ServiceSpec> = self
                .spec
                .services
                .iter()
                .filter(|s| s.name == name)
                .collect();
            let port = entries.first().map(|s| s.port).unwrap_or(80);
            let ports = layout.replica_ports.get(name).cloned().unwrap_or_default();
            // Replica i of the service, with the labels of its entry.
            let mut replicas = Vec::new();
            for e in &entries {
                for _ in 0..e.replicas {
                    let i = replicas.len();
                    if let Some(p) = ports.get(i) {
                        replicas.push((*p, &e.labels));
                    }
                }
            }
            let all: Vec<u16> = replicas.iter().map(|(p, _)| *p).collect();
            let spec = self.spec;
            let rules: Vec<&super::spec::DestinationRule> = spec
                .destination_rules
                .iter()
                .filter(|d| {
                    resolve_host(&d.host, &d.namespace) == service_fqdn(name, &spec.namespace)
                })
                .collect();
            let mut c = cluster(&cluster_name(port, None, name), &all);
            if let Some(dr) = rules.first() {
                let label = format!("DestinationRule {}", dr.name);
                self.traffic_policy(&mut c, &label, dr.traffic_policy.as_ref(), None);
            }
            out.push(c);
            for dr in rules {
                for sub in &dr.subsets {
                    let eps: Vec<u16> = replicas
                        .iter()
                        .filter(|(_, l)| sub.labels.iter().all(|(k, v)| l.get(k) == Some(v)))
                        .map(|(p, _)| *p)
                        .collect();
                    if eps.is_empty() {
                        self.warnings.push(format!(
                            "DestinationRule {}: subset {} of {} selects no replica (labels {:?})",
                            dr.name, sub.name, dr.host, sub.labels
                        ));
                    }
                    let mut c = cluster(&cluster_name(port, Some(&sub.name), name), &eps);
                    let label = format!("DestinationRule {} subset {}", dr.name, sub.name);
                    self.traffic_policy(
                        &mut c,
                        &label,
                        dr.traffic_policy.as_ref(),
                        sub.traffic_policy.as_ref(),
                    );
                    out.push(c);
                }
            }
        }
        out
    }

    /// Applies a DestinationRule's trafficPolicy (a subset's sections override the
    /// rule's) to a cluster, as istiod's cluster builder does for the supported fields;
    /// warns for the rest.
    fn traffic_policy(
        &mut self,
        c: &mut Value,
        label: &str,
        rule: Option<&Value>,
        subset: Option<&Value>,
    ) {
        let section = |k: &str| {
            subset
                .and_then(|s| s.get(k))
                .or_else(|| rule.and_then(|r| r.get(k)))
        };
        for p in [rule, subset].into_iter().flatten() {
            if let Some(o) = p.as_object() {
                for k in o.keys() {
                    if !["connectionPool", "outlierDetection", "loadBalancer"].contains(&k.as_str())
                    {
                        self.warnings.push(format!(
                            "{label}: trafficPolicy.{k} is not supported by the local mesh; ignored"
                        ));
                    }
                }
            }
        }
        if let Some(cp) = section("connectionPool") {
            self.connection_pool(c, label, cp);
        }
        if let Some(od) = section("outlierDetection") {
            self.outlier_detection(c, label, od);
        }
        if let Some(lb) = section("loadBalancer") {
            match lb.get("simple").and_then(Value::as_str) {
                Some("ROUND_ROBIN") => c["lb_policy"] = json!("ROUND_ROBIN"),
                Some("LEAST_REQUEST" | "LEAST_CONN") => c["lb_policy"] = json!("LEAST_REQUEST"),
                Some("RANDOM") => c["lb_policy"] = json!("RANDOM"),
                Some("UNSPECIFIED") | None => {}
                Some(other) => self.warnings.push(format!(
                    "{label}: loadBalancer.simple {other} is not supported by the local mesh; ignored"
                )),
            }
            if let Some(o) = lb.as_object() {
                for k in o.keys().filter(|k| *k != "simple") {
                    self.warnings.push(format!(
                        "{label}: trafficPolicy.loadBalancer.{k} is not supported by the local mesh; ignored"
                    ));
                }
            }
        }
    }

    fn connection_pool(&mut self, c: &mut Value, label: &str, cp: &Value) {
        let u = |p: &str| cp.pointer(p).and_then(Value::as_u64);
        let t = &mut c["circuit_breakers"]["thresholds"][0];
        for (p, k) in [
            ("/tcp/maxConnections", "max_connections"),
            ("/http/http1MaxPendingRequests", "max_pending_requests"),
            ("/http/http2MaxRequests", "max_requests"),
            ("/http/maxRetries", "max_retries"),
        ] {
            match u(p) {
                // As istiod's applyConnectionPool: 0 cannot be told from unset, and
                // leaves Istio's default (2^32 − 1).
                Some(0) => self.warnings.push(format!(
                    "{label}: trafficPolicy.connectionPool{} 0 is read as unset, as istiod does: the limit stays {ISTIO_MAX}",
                    p.replace('/', ".")
                )),
                Some(n) => t[k] = json!(n),
                None => {}
            }
        }
        if let Some(d) = cp
            .pointer("/tcp/connectTimeout")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IstioDuration>().ok())
        {
            c["connect_timeout"] = json!(proto_duration(d.as_duration().as_millis()));
        }
        let known: [(&str, &[&str]); 2] = [
            ("tcp", &["maxConnections", "connectTimeout"]),
            (
                "http",
                &["http1MaxPendingRequests", "http2MaxRequests", "maxRetries"],
            ),
        ];
        let Some(o) = cp.as_object() else { return };
        for (k, v) in o {
            let fields = known.iter().find(|(n, _)| n == k).map(|(_, f)| *f);
            match (fields, v.as_object()) {
                (Some(fields), Some(inner)) => {
                    for f in inner.keys().filter(|f| !fields.contains(&f.as_str())) {
                        self.warnings.push(format!(
                            "{label}: trafficPolicy.connectionPool.{k}.{f} is not supported by the local mesh; ignored"
                        ));
                    }
                }
                _ => self.warnings.push(format!(
                    "{label}: trafficPolicy.connectionPool.{k} is not supported by the local mesh; ignored"
                )),
            }
        }
    }

    /// istiod's applyOutlierDetection for the supported fields.
    fn outlier_detection(&mut self, c: &mut Value, label: &str, od: &Value) {
        let mut out = Map::new();
        out.insert("enforcing_success_rate".into(), json!(0));
        if let Some(n) = od.get("consecutive5xxErrors").and_then(Value::as_u64) {
            out.insert("consecutive_5xx".into(), json!(n));
            out.insert(
                "enforcing_consecutive_5xx".into(),
                json!(if n > 0 { 100 } else { 0 }),
            );
        }
        for (k, envoy_k) in [
            ("interval", "interval"),
            ("baseEjectionTime", "base_ejection_time"),
        ] {
            if let Some(d) = od
                .get(k)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<IstioDuration>().ok())
            {
                out.insert(
                    envoy_k.into(),
                    json!(proto_duration(d.as_duration().as_millis())),
                );
            }
        }
        if let Some(n) = od
            .get("maxEjectionPercent")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
        {
            out.insert("max_ejection_percent".into(), json!(n));
        }
        const KNOWN: [&str; 4] = [
            "consecutive5xxErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
        ];
        if let Some(o) = od.as_object() {
            for k in o.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
                self.warnings.push(format!(
                    "{label}: trafficPolicy.outlierDetection.{k} is not supported by the local mesh; ignored"
                ));
            }
        }
        c["outlier_detection"] = Value::Object(out);
        // As istiod: the panic threshold is disabled (minHealthPercent 0 by default).
        c["common_lb_config"] = json!({"healthy_panic_threshold": {"value": 0.0}});
    }

    fn ingress_routes(&mut self, clusters: &BTreeSet<String>) -> Value {
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

    fn mesh_routes(&mut self, clusters: &BTreeSet<String>) -> Value {
        let mut vhosts = Vec::new();
        let mut used = BTreeSet::new();
        let spec = self.spec;
        let mesh_vss: Vec<&Value> = spec
            .virtual_services
            .iter()
            .filter(|v| bound_to_mesh(v))
            .collect();
        for vs in &mesh_vss {
            let domains = self.sidecar_domains(vs, &mut used);
            if domains.is_empty() {
                continue;
            }
            // The port the calls are made to: the (first) service the VS names.
            let ns = vs_namespace(vs);
            let port = hosts(vs)
                .iter()
                .find_map(|h| self.services_named(h, ns).first().map(|s| s.to_string()))
                .map_or(80, |s| self.service_port(&s));
            let routes = self.routes(vs, clusters, Hop::Sidecar { port });
            vhosts.push(json!({"name": vhost_name(vs), "domains": domains, "routes": routes}));
        }
        // Services no VirtualService covers get Istio's default route.
        for name in spec.service_names() {
            let covered = mesh_vss.iter().any(|vs| {
                let ns = vs_namespace(vs);
                hosts(vs)
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
                    "cluster": cluster_name(port, None, name),
                    "timeout": "0s",
                    "retry_policy": default_retry_policy(),
                }
            });
            vhosts.push(
                json!({"name": format!("{name}:{port}"), "domains": domains, "routes": [route]}),
            );
        }
        route_configuration(MESH_ROUTES, vhosts)
    }

    fn service_port(&self, name: &str) -> u16 {
        self.spec
            .services
            .iter()
            .find(|s| s.name == name)
            .map_or(80, |s| s.port)
    }

    /// At a gateway istiod matches the VirtualService's hosts as resolved: a short
    /// name only as its FQDN (`repeater` → `repeater.default.svc.cluster.local`). One
    /// domain per host, no port forms: the route configuration ignores the port
    /// (gateway.go buildGatewayHTTPRouteConfig).
    fn gateway_domains(&mut self, vs: &Value, used: &mut BTreeSet<String>) -> Vec<String> {
        let ns = vs_namespace(vs);
        let mut out = Vec::new();
        for h in hosts(vs) {
            let fqdn = resolve_host(h, ns);
            self.claim(vs, h, vec![fqdn], used, &mut out);
        }
        out
    }

    /// On a sidecar a host naming a mesh service gets the service's whole alias set
    /// (as istiod's sidecar virtual hosts); other hosts keep their literal domains.
    fn sidecar_domains(&mut self, vs: &Value, used: &mut BTreeSet<String>) -> Vec<String> {
        let ns = vs_namespace(vs);
        let mut out = Vec::new();
        for h in hosts(vs) {
            let services: Vec<String> = self
                .services_named(h, ns)
                .into_iter()
                .map(String::from)
                .collect();
            let fqdn = resolve_host(h, ns);
            let forms = if !services.is_empty() && !h.contains('*') {
                services.iter().flat_map(|s| self.aliases(s)).collect()
            } else {
                if services.is_empty() && !h.contains('*') {
                    self.warnings.push(format!(
                        "{}: host {h} ({fqdn}) is not a service of the mesh (namespace {}); it is routed by its literal name only",
                        object_label(vs),
                        self.spec.namespace
                    ));
                }
                let mut f: Vec<String> = vec![fqdn];
                for s in &services {
                    f.extend(self.aliases(s));
                }
                f
            };
            self.claim(vs, h, forms, used, &mut out);
        }
        out
    }

    fn claim(
        &mut self,
        vs: &Value,
        h: &str,
        forms: Vec<String>,
        used: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        let mut fresh: Vec<String> = forms
            .into_iter()
            .filter(|f| !out.contains(f) && used.insert(f.clone()))
            .collect();
        if fresh.is_empty() {
            self.warnings.push(format!(
                "{}: host {h} is already routed by another VirtualService on this hop; ignored here",
                object_label(vs)
            ));
        }
        out.append(&mut fresh);
    }

    /// A service's Host header forms on a sidecar, as istiod's
    /// generateVirtualHostDomains for a proxy in the service's namespace: the FQDN, then
    /// `svc`, `svc.ns.svc`, `svc.ns` — no port forms, as the sidecar's route
    /// configuration ignores the port (`ignore_port_in_host_matching`).
    fn aliases(&self, name: &str) -> Vec<String> {
        let ns = &self.spec.namespace;
        vec![
            service_fqdn(name, ns),
            name.to_string(),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}"),
        ]
    }

    fn service_domains(&self, name: &str, used: &mut BTreeSet<String>) -> Vec<String> {
        self.aliases(name)
            .into_iter()
            .filter(|f| used.insert(f.clone()))
            .collect()
    }

    fn routes(&mut self, vs: &Value, clusters: &BTreeSet<String>, hop: Hop) -> Vec<Value> {
        let label = object_label(vs);
        let vs_name = vs
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("vs");
        let mut out = Vec::new();
        let Some(http) = vs.pointer("/spec/http").and_then(Value::as_array) else {
            self.warnings.push(format!(
                "{label}: no spec.http routes; the local mesh routes HTTP only"
            ));
            return out;
        };
        for (i, r) in http.iter().enumerate() {
            for key in [
                "redirect",
                "rewrite",
                "mirror",
                "mirrorPercentage",
                "corsPolicy",
                "headers",
                "delegate",
            ] {
                if r.get(key).is_some() {
                    self.warnings.push(format!(
                        "{label}: spec.http[{i}].{key} is not supported by the local mesh; ignored"
                    ));
                }
            }
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
            let action = self.action(&label, i, r, vs_namespace(vs), clusters);
            let fault = r.get("fault").and_then(fault_config);
            let matches: Vec<Value> = match r.get("match").and_then(Value::as_array) {
                Some(ms) if !ms.is_empty() => {
                    let kept: Vec<Value> = ms
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| applies_on(m, vs, hop))
                        .map(|(j, m)| self.route_match(&label, i, j, m))
                        .collect();
                    // As istiod: a route none of whose matches applies on this hop
                    // is left out here.
                    if kept.is_empty() {
                        continue;
                    }
                    kept
                }
                _ => vec![json!({"prefix": "/"})],
            };
            for m in matches {
                let mut route = Map::new();
                route.insert("name".into(), json!(name));
                route.insert("match".into(), m);
                let (k, v) = action.clone();
                route.insert(k, v);
                if let Some(f) = &fault {
                    route.insert("typed_per_filter_config".into(), json!({ FAULT_FILTER: f }));
                }
                out.push(Value::Object(route));
            }
        }
        out
    }

    fn route_match(&mut self, label: &str, i: usize, j: usize, m: &Value) -> Value {
        let mut out = Map::new();
        if m.get("ignoreUriCase").and_then(Value::as_bool) == Some(true) {
            out.insert("case_sensitive".into(), json!(false));
        }
        match m.get("uri").and_then(string_match) {
            Some(("exact", v)) => {
                out.insert("path".into(), json!(v));
            }
            Some(("prefix", v)) => {
                out.insert("prefix".into(), json!(v));
            }
            Some(("regex", v)) => {
                out.insert("safe_regex".into(), json!({"regex": v}));
            }
            _ => {
                out.insert("prefix".into(), json!("/"));
            }
        }
        let mut headers = Vec::new();
        if let Some(hs) = m.get("headers").and_then(Value::as_object) {
            for (name, v) in hs {
                headers.push(header_matcher(name, v));
            }
        }
        // As istiod: withoutHeaders inverts the matcher; a missing header counts as
        // empty unless it is a presence match.
        if let Some(hs) = m.get("withoutHeaders").and_then(Value::as_object) {
            for (name, v) in hs {
                let mut h = header_matcher(name, v);
                h["invert_match"] = json!(true);
                if h.get("present_match").is_none() {
                    h["treat_missing_header_as_empty"] = json!(true);
                }
                headers.push(h);
            }
        }
        for (key, header) in [
            ("method", ":method"),
            ("authority", ":authority"),
            ("scheme", ":scheme"),
        ] {
            if let Some(v) = m.get(key) {
                headers.push(header_matcher(header, v));
            }
        }
        if !headers.is_empty() {
            out.insert("headers".into(), Value::Array(headers));
        }
        if let Some(qs) = m.get("queryParams").and_then(Value::as_object) {
            let params: Vec<Value> = qs
                .iter()
                .map(|(name, v)| {
                    if can_be_present_match(v) {
                        json!({"name": name, "present_match": true})
                    } else {
                        json!({"name": name, "string_match": envoy_string_match(v)})
                    }
                })
                .collect();
            out.insert("query_parameters".into(), Value::Array(params));
        }
        for key in ["sourceLabels", "sourceNamespace", "statPrefix"] {
            if m.get(key).is_some() {
                self.warnings.push(format!("{label}: spec.http[{i}].match[{j}].{key} is not supported by the local mesh; ignored"));
            }
        }
        Value::Object(out)
    }

    /// `("route", {...})` or `("direct_response", {...})`.
    fn action(
        &mut self,
        label: &str,
        i: usize,
        r: &Value,
        vs_ns: &str,
        clusters: &BTreeSet<String>,
    ) -> (String, Value) {
        if let Some(dr) = r.get("directResponse") {
            let status = dr.get("status").and_then(Value::as_u64).unwrap_or(200);
            let mut out = json!({"status": status});
            if let Some(body) = dr.pointer("/body/string").and_then(Value::as_str) {
                out["body"] = json!({"inline_string": body});
            }
            return ("direct_response".into(), out);
        }
        let mut dests: Vec<(String, u64)> = Vec::new();
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
                Some(s) => (s.name.clone(), s.port),
                None => {
                    self.warnings.push(format!(
                        "{label}: spec.http[{i}] routes to host {host}, which is not a service of the mesh: requests get 503 (no cluster)"
                    ));
                    (
                        host.to_string(),
                        d.pointer("/destination/port/number")
                            .and_then(Value::as_u64)
                            .unwrap_or(80) as u16,
                    )
                }
            };
            if let Some(p) = d
                .pointer("/destination/port/number")
                .and_then(Value::as_u64)
                && p != u64::from(port)
            {
                self.warnings.push(format!("{label}: spec.http[{i}] names port {p} of {host}, which listens on {port}; using {port}"));
            }
            let cluster = cluster_name(port, subset, &name);
            if let Some(sub) = subset
                && self.service_for(host, vs_ns).is_some()
                && !clusters.contains(&cluster)
            {
                self.warnings.push(format!(
                    "{label}: spec.http[{i}] names subset {sub} of {host}, which no DestinationRule defines: requests get 503 (no cluster), as in Istio"
                ));
            }
            if weight > 0 {
                dests.push((cluster, weight));
            }
        }
        let mut route = Map::new();
        match dests.as_slice() {
            [] => {
                self.warnings.push(format!(
                    "{label}: spec.http[{i}] has no destination with a weight > 0"
                ));
                route.insert("cluster".into(), json!("blackhole"));
            }
            [(c, _)] => {
                route.insert("cluster".into(), json!(c));
            }
            many => {
                let cs: Vec<Value> = many
                    .iter()
                    .map(|(c, w)| json!({"name": c, "weight": w}))
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
        route.insert("timeout".into(), json!(timeout));
        if let Some(p) = retry_policy(r.get("retries")) {
            route.insert("retry_policy".into(), p);
        }
        ("route".into(), Value::Object(route))
    }
}

/// The hop a route configuration is for.
#[derive(Debug, Clone, Copy)]
enum Hop {
    /// The ingress gateway, taken to listen on port 80 (an Istio ingress gateway's
    /// HTTP server port).
    Ingress,
    /// A sidecar's outbound calls to a service port.
    Sidecar { port: u16 },
}

/// The gateway port `match.port` is compared with at the ingress.
const INGRESS_MATCH_PORT: u64 = 80;

/// Whether a match clause applies on a hop, as istiod's sourceMatchHTTP (`gateways`)
/// and its per-port route building (`port`) decide.
fn applies_on(m: &Value, vs: &Value, hop: Hop) -> bool {
    if let Some(p) = m.get("port").and_then(Value::as_u64) {
        let hop_port = match hop {
            Hop::Ingress => INGRESS_MATCH_PORT,
            Hop::Sidecar { port } => u64::from(port),
        };
        if p != hop_port {
            return false;
        }
    }
    let Some(gws) = m.get("gateways").and_then(Value::as_array) else {
        return true;
    };
    if gws.is_empty() {
        return true;
    }
    // `ns/name` and `name` name the same gateway here.
    let short = |g: &str| g.rsplit('/').next().unwrap_or(g).to_string();
    let listed: Vec<String> = gws.iter().filter_map(Value::as_str).map(short).collect();
    match hop {
        Hop::Sidecar { .. } => listed.iter().any(|g| g == "mesh"),
        Hop::Ingress => gateways(vs).is_some_and(|vg| {
            vg.iter()
                .filter(|g| **g != "mesh")
                .any(|g| listed.contains(&short(g)))
        }),
    }
}

/// A VirtualService's namespace (`default` when absent).
fn vs_namespace(vs: &Value) -> &str {
    vs.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
}

/// A service's FQDN in a namespace.
pub fn service_fqdn(name: &str, ns: &str) -> String {
    format!("{name}.{ns}.svc.cluster.local")
}

/// istiod's ResolveShortnameToFQDN: `*`, IP addresses and names with a dot stay as
/// they are; a short name becomes `<name>.<namespace>.svc.cluster.local`.
pub fn resolve_host(host: &str, ns: &str) -> String {
    if host.is_empty()
        || host == "*"
        || host.contains('.')
        || host.contains(':')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return host.to_string();
    }
    service_fqdn(host, ns)
}

/// Whether a (resolved) host, possibly a wildcard (`*`, `*.suffix`), matches a name.
fn wildcard_matches(host: &str, name: &str) -> bool {
    if host == "*" {
        return true;
    }
    match host.strip_prefix('*') {
        Some(suffix) => name.ends_with(suffix) && name.len() > suffix.len(),
        None => host == name,
    }
}

fn vhost_name(vs: &Value) -> String {
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
fn route_configuration(name: &str, vhosts: Vec<Value>) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": name,
        "virtual_hosts": vhosts,
        "validate_clusters": false,
        "ignore_port_in_host_matching": true
    })
}

fn cluster(name: &str, ports: &[u16]) -> Value {
    let eps: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}))
        .collect();
    json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [{
            "max_connections": ISTIO_MAX,
            "max_pending_requests": ISTIO_MAX,
            "max_requests": ISTIO_MAX,
            "max_retries": ISTIO_MAX,
            "track_remaining": true
        }]},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]}
    })
}

fn string_match(v: &Value) -> Option<(&'static str, &str)> {
    for k in ["exact", "prefix", "regex"] {
        if let Some(s) = v.get(k).and_then(Value::as_str) {
            return Some((k, s));
        }
    }
    None
}

fn envoy_string_match(v: &Value) -> Value {
    match string_match(v) {
        Some(("exact", s)) => json!({"exact": s}),
        Some(("prefix", s)) => json!({"prefix": s}),
        Some((_, s)) => json!({"safe_regex": {"regex": s}}),
        None => json!({"safe_regex": {"regex": ".*"}}),
    }
}

/// istiod's canBeConvertedToPresentMatch: no match type, or `regex: "*"` (not RE2;
/// Istio's catch-all), is a presence match.
fn can_be_present_match(v: &Value) -> bool {
    string_match(v).is_none() || v.get("regex").and_then(Value::as_str) == Some("*")
}

fn header_matcher(name: &str, v: &Value) -> Value {
    // As istiod: `prefix: ""`, `regex: "*"` or no match type mean "present".
    if v.get("prefix").and_then(Value::as_str) == Some("") || can_be_present_match(v) {
        return json!({"name": name, "present_match": true});
    }
    json!({"name": name, "string_match": envoy_string_match(v)})
}

fn fractional(v: &Value) -> Option<Value> {
    if let Some(p) = v.pointer("/percentage/value").and_then(Value::as_f64) {
        // istiod: uint32(value * 10000), truncated, per million.
        let n = crate::istio::Percentage::new(p)
            .map(|p| p.per_million())
            .unwrap_or(0);
        return Some(json!({"numerator": n, "denominator": "MILLION"}));
    }
    v.get("percent")
        .and_then(Value::as_u64)
        .map(|n| json!({"numerator": n, "denominator": "HUNDRED"}))
}

/// The per-route HTTPFault, or `None` when the route has neither delay nor abort.
pub fn fault_config(f: &Value) -> Option<Value> {
    let mut out = Map::new();
    out.insert("@type".into(), json!(FAULT_TYPE));
    if let Some(d) = f.get("delay") {
        let mut delay = Map::new();
        if let Some(ms) = d
            .get("fixedDelay")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IstioDuration>().ok())
        {
            delay.insert(
                "fixed_delay".into(),
                json!(proto_duration(ms.as_duration().as_millis())),
            );
        }
        if let Some(p) = fractional(d) {
            delay.insert("percentage".into(), p);
        }
        // A delay with no fixed delay is dropped, as istiod's TranslateFault does (Istio
        // 1.26 route.go); Envoy would reject it.
        if delay.contains_key("fixed_delay") {
            out.insert("delay".into(), Value::Object(delay));
        }
    }
    if let Some(a) = f.get("abort") {
        let mut abort = Map::new();
        if let Some(s) = a.get("httpStatus") {
            let code = s
                .as_u64()
                .or_else(|| s.as_str().and_then(|x| x.parse().ok()));
            if let Some(c) = code {
                abort.insert("http_status".into(), json!(c));
            }
        } else if let Some(g) = a
            .get("grpcStatus")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<GrpcStatus>().ok())
        {
            abort.insert("grpc_status".into(), json!(g.code()));
        }
        if let Some(p) = fractional(a) {
            abort.insert("percentage".into(), p);
        }
        // An abort with no error type is dropped, as istiod's TranslateFault does
        // (Istio validation only warns about it); Envoy would reject it.
        if abort.contains_key("http_status") || abort.contains_key("grpc_status") {
            out.insert("abort".into(), Value::Object(abort));
        }
    }
    (out.len() > 1).then_some(Value::Object(out))
}

fn previous_hosts() -> Value {
    json!([{
        "name": "envoy.retry_host_predicates.previous_hosts",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}
    }])
}

/// Istio's policy for routes with no `retries` block (retry/retry.go `defaultPolicy`).
/// No retriable status codes: 503 left the default in Istio 1.24
/// (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, true by default in 1.24–1.26).
pub fn default_retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": previous_hosts(),
        "host_selection_retry_max_attempts": 5
    })
}

/// istiod's ConvertPolicy: absent → default; attempts ≤ 0 → none; else the default
/// overridden by the given fields.
pub fn retry_policy(retries: Option<&Value>) -> Option<Value> {
    let Some(r) = retries else {
        return Some(default_retry_policy());
    };
    let attempts = r.get("attempts").and_then(Value::as_i64).unwrap_or(0);
    if attempts <= 0 {
        return None;
    }
    let mut p = default_retry_policy();
    p["num_retries"] = json!(attempts);
    if let Some(on) = r
        .get("retryOn")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<RetryOn>().ok())
    {
        // As ConvertPolicy: a given retryOn sets both the conditions and the codes.
        let (names, codes) = on.to_envoy();
        p["retry_on"] = json!(names);
        if !codes.is_empty() {
            p["retriable_status_codes"] = json!(codes);
        }
    }
    if let Some(b) = r
        .get("backoff")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IstioDuration>().ok())
    {
        p["retry_back_off"] = json!({"base_interval": proto_duration(b.as_duration().as_millis())});
    }
    if let Some(t) = r
        .get("perTryTimeout")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IstioDuration>().ok())
    {
        p["per_try_timeout"] = json!(proto_duration(t.as_duration().as_millis()));
    }
    // Istio >= 1.26: false drops the previous-hosts predicate, true keeps it.
    if let Some(keep) = r.get("retryIgnorePreviousHosts").and_then(Value::as_bool)
        && !keep
        && let Some(o) = p.as_object_mut()
    {
        o.remove("retry_host_predicate");
    }
    if r.get("retryRemoteLocalities").and_then(Value::as_bool) == Some(true) {
        p["retry_priority"] = json!({
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 2
            }
        });
    }
    Some(p)
}

#[cfg(test)]
mod retry_policy_tests {
    use super::*;

    /// istiod's ConvertPolicy (pilot/pkg/networking/core/route/retry/retry.go).
    #[test]
    fn convert_policy_rules() {
        // Istio >= 1.24: no status codes in the default policy
        let default = retry_policy(None).expect("default");
        assert!(default.get("retriable_status_codes").is_none(), "{default}");
        // attempts only: the default conditions stay
        let p = retry_policy(Some(&json!({"attempts": 4}))).expect("p");
        assert_eq!(p["num_retries"], 4);
        assert_eq!(p["retry_on"], default["retry_on"]);
        let p = retry_policy(Some(&json!({"attempts": 2, "retryOn": "5xx"}))).expect("p");
        assert_eq!(p["retry_on"], "5xx");
        assert!(p.get("retriable_status_codes").is_none(), "{p}");
        let p = retry_policy(Some(
            &json!({"attempts": 2, "retryOn": "gateway-error,429", "backoff": "25ms"}),
        ))
        .expect("p");
        assert_eq!(p["retry_on"], "gateway-error,retriable-status-codes");
        assert_eq!(p["retriable_status_codes"], json!([429]));
        assert_eq!(p["retry_back_off"]["base_interval"], "0.025s");
        assert!(retry_policy(Some(&json!({"attempts": 0}))).is_none());
    }
}
