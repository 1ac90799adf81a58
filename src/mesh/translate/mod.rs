//! VirtualService → Envoy configuration, as istiod builds it for the fields meshdrill
//! supports (FACTS.md; istio pilot/pkg/networking/core/route/route.go `TranslateFault`,
//! route/retry/retry.go `ConvertPolicy`). Pure: values in, JSON out.
//!
//! Topology (one Envoy, a listener per hop):
//! - `ingress`: the ingress gateway. Its routes ([`INGRESS_ROUTES`]) come from the
//!   VirtualServices bound to a gateway — `gateways` names anything besides `mesh`.
//!   Hosts no such VirtualService names get Envoy's 404, as at an Istio gateway.
//!   With Gateway objects, one ingress listener per HTTP server port, `ingress` for
//!   port 80 and `ingress_<port>` for the others ([`gateway`]).
//! - `sidecar_<service>`: each service's outbound calls, as its sidecar, with its own
//!   route configuration of the same name ([`sidecar_routes`]): for each service, the
//!   VirtualService that applies to mesh traffic (`gateways` absent, empty or listing
//!   `mesh`), with only the match clauses whose `sourceLabels` / `sourceNamespace` fit
//!   this proxy ([`sidecar`]), else Istio's default route (default retry policy, no
//!   timeout).
//! - one cluster per service and DestinationRule subset, `outbound|<port>|<subset>|<host>`,
//!   with replicas as static endpoints and Istio's circuit-breaker thresholds.
//! - `inbound_<service>_<i>`: each replica's server-side sidecar, the endpoint callers'
//!   clusters list for it, in front of the cluster `inbound|<port>||<service>-<i>`
//!   holding the application's port ([`inbound`]).
//!
//! One file per concern: [`listeners`] (the HTTP connection managers), [`clusters`]
//! (clusters and DestinationRule traffic policy), [`hosts`] (host resolution and
//! virtual-host domains), [`routes`] (route configurations and route actions),
//! [`matches`] (match clauses), [`policy`] (fault and retry policy), [`actions`]
//! (redirect, rewrite, header operations, mirrors), [`delegate`] (delegate
//! VirtualServices merged into their roots), [`sidecar`] (per-proxy sidecar route
//! configurations), [`gateway`] (Gateway servers and their ingress listeners),
//! [`inbound`] (each replica's server-side sidecar).

mod actions;
mod claims;
mod clusters;
mod delegate;
mod gateway;
mod hosts;
mod inbound;
mod listeners;
mod matches;
mod policy;
mod routes;
mod sidecar;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};

use super::spec::MeshSpec;
use listeners::listener;

pub use gateway::{IngressListener, ingress_listeners};
use hosts::vs_namespace;
pub use hosts::{resolve_host, service_fqdn};
pub use inbound::{inbound_cluster, inbound_listener, inbound_retry_policy, is_inbound_cluster};
pub use policy::{default_retry_policy, fault_config, retry_policy};
pub use sidecar::sidecar_routes;

/// The ingress listener's route configuration.
pub const INGRESS_ROUTES: &str = "ingress";
/// The ingress listener (and its stats prefix).
pub const INGRESS_LISTENER: &str = "ingress";
/// Istio sets every circuit-breaker threshold to 2^32 − 1.
pub const ISTIO_MAX: u64 = u32::MAX as u64;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// Where the generated configuration refers to files and ports.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The watched directory holding the RDS files.
    pub rds_dir: PathBuf,
    pub access_log: PathBuf,
    /// Loopback port of each replica, per service name, in replica order.
    pub replica_ports: BTreeMap<String, Vec<u16>>,
    /// Loopback port of each replica's inbound sidecar listener, as `replica_ports`.
    /// A service without them has no inbound sidecars: callers reach its replicas
    /// directly (`spec.inboundSidecars: false`).
    pub inbound_ports: BTreeMap<String, Vec<u16>>,
}

impl Layout {
    /// The ports a caller's outbound cluster lists for `service`, in replica order:
    /// the inbound sidecars', else the replicas'.
    pub fn endpoint_ports(&self, service: &str) -> Vec<u16> {
        self.inbound_ports
            .get(service)
            .or_else(|| self.replica_ports.get(service))
            .cloned()
            .unwrap_or_default()
    }

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

/// Istio's cluster name for a service port and subset: `host` is the FQDN
/// (`outbound|80||go-demo-8.default.svc.cluster.local`, as istiod's
/// model.BuildSubsetKey), so Envoy's stats read as on a cluster.
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
    Some(cluster_name(s.port, subset, &fqdn))
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

fn vs_hosts(vs: &Value) -> Vec<&str> {
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
    // `inboundSidecars: false`: callers reach the replicas directly.
    let direct;
    let layout = if spec.inbound_sidecars || layout.inbound_ports.is_empty() {
        layout
    } else {
        direct = Layout {
            inbound_ports: BTreeMap::new(),
            ..layout.clone()
        };
        &direct
    };
    // As istiod: delegates merged into their roots before any route is built.
    let mut warnings = Vec::new();
    let merged = MeshSpec {
        virtual_services: delegate::merge_delegates(&spec.virtual_services, &mut warnings),
        ..spec.clone()
    };
    let spec = &merged;
    let mut t = Translator { spec, warnings };
    let clusters = t.clusters(layout);
    let cluster_names: BTreeSet<String> = clusters
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect();
    let mut listeners = Vec::new();
    let mut routes = BTreeMap::new();
    if spec.gateways.is_empty() {
        listeners.push(listener(
            INGRESS_LISTENER,
            spec.ingress_port,
            INGRESS_ROUTES,
            layout,
        ));
        routes.insert(INGRESS_ROUTES.to_string(), t.ingress_routes(&cluster_names));
    } else {
        t.warn_gateways();
        for l in ingress_listeners(spec) {
            let rc = t.gateway_route_config(&l, &cluster_names);
            let (port, rc_name) = if l.primary {
                (spec.ingress_port, INGRESS_ROUTES.to_string())
            } else {
                (0, l.name.clone())
            };
            listeners.push(listener(&l.name, port, &rc_name, layout));
            routes.insert(rc_name, rc);
        }
    }
    for s in spec.service_names() {
        listeners.push(listener(
            &sidecar_listener(s),
            0,
            &sidecar_routes(s),
            layout,
        ));
        let proxy = sidecar::Proxy::of(spec, s);
        let rc = t.sidecar_route_config(&proxy, &cluster_names);
        routes.insert(sidecar_routes(s), rc);
    }
    let (inbound_listeners, inbound_clusters) = t.inbound(layout);
    listeners.extend(inbound_listeners);
    let mut clusters = clusters;
    clusters.extend(inbound_clusters);
    // Each sidecar's table is built from the same VirtualServices: say each thing once.
    let mut warnings: Vec<String> = Vec::new();
    for w in t.warnings {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    EnvoyConfig {
        listeners,
        clusters,
        routes,
        warnings,
    }
}

/// Wraps resources in the DiscoveryResponse that a path config source reads.
pub fn discovery_response(version: u64, resources: &[Value]) -> Value {
    json!({"version_info": version.to_string(), "resources": resources})
}

struct Translator<'a> {
    spec: &'a MeshSpec,
    warnings: Vec<String>,
}
