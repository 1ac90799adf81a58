//! Retry chains: how retries multiply along the call paths of a local mesh.
//!
//! A request enters at the ingress; each VirtualService route on the way may try the
//! next hop up to `retries + 1` times, and a forwarding service makes its own call for
//! each attempt it receives. The worst case at the end of a path is the product of
//! the attempts of its hops (the ingress's 11 attempts at `repeater`, each making up
//! to 3 to `go-demo-8`: 33 calls). Pure: reads the [`MeshSpec`], never the running
//! mesh.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::spec::{MeshSpec, Workload};
use super::translate::{bound_to_ingress, bound_to_mesh, resolve_host, service_fqdn};
use crate::slo::retry::Chain;

/// The name of the first caller of every chain.
pub const INGRESS: &str = "ingress";

/// The inbound sidecar of each replica is no hop here: its retries
/// (`reset-before-request`) re-send only requests the replica never received, so they
/// multiply no calls a service handles.
///
/// Every maximal call path from the ingress through the mesh, with the worst-case
/// attempts per hop and their product, sorted by amplification (largest first).
///
/// Hops: the ingress to each destination of the VirtualServices bound to it; a
/// service whose demo configuration forwards (`forwardTo`, only its host matters) to
/// the destinations of the VirtualService that routes that host on the sidecar — or,
/// with none, to the service itself under Istio's default retry policy. Per hop the
/// route with the most attempts counts. A path ends at a service that does not
/// forward (or runs a user command, or forwards to `?addr=` only), at a host that is
/// no mesh service, or before a service already on the path (a cycle).
pub fn retry_chains(spec: &MeshSpec) -> Vec<Chain> {
    let mut first: BTreeMap<String, u32> = BTreeMap::new();
    for vs in spec.virtual_services.iter().filter(|v| bound_to_ingress(v)) {
        for (service, attempts) in destinations(spec, vs) {
            merge(&mut first, service, attempts);
        }
    }
    let mut out = Vec::new();
    for (service, attempts) in first {
        let mut path = vec![(format!("{INGRESS} → {service}"), attempts)];
        let mut visited = vec![service.clone()];
        walk(spec, &service, &mut path, &mut visited, &mut out);
    }
    out.sort_by(|a, b| {
        b.amplification
            .cmp(&a.amplification)
            .then_with(|| a.hops.cmp(&b.hops))
    });
    out
}

/// Depth-first from `service` (the last callee of `path`): pushes a chain for every
/// path that ends.
fn walk(
    spec: &MeshSpec,
    service: &str,
    path: &mut Vec<(String, u32)>,
    visited: &mut Vec<String>,
    out: &mut Vec<Chain>,
) {
    let next: Vec<(String, u32)> = calls_of(spec, service)
        .into_iter()
        .filter(|(callee, _)| !visited.contains(callee))
        .collect();
    if next.is_empty() {
        let amplification = path
            .iter()
            .fold(1u64, |acc, (_, n)| acc.saturating_mul(u64::from(*n)));
        out.push(Chain {
            hops: path.clone(),
            amplification,
        });
        return;
    }
    for (callee, attempts) in next {
        path.push((format!("{service} → {callee}"), attempts));
        visited.push(callee.clone());
        walk(spec, &callee, path, visited, out);
        visited.pop();
        path.pop();
    }
}

fn merge(into: &mut BTreeMap<String, u32>, service: String, attempts: u32) {
    let e = into.entry(service).or_insert(attempts);
    *e = (*e).max(attempts);
}

/// The services `service` calls (through its sidecar), with the most attempts a
/// route gives each.
fn calls_of(spec: &MeshSpec, service: &str) -> Vec<(String, u32)> {
    let mut out = BTreeMap::new();
    for entry in spec.services.iter().filter(|s| s.name == service) {
        let Workload::Demo(cfg) = &entry.workload else {
            continue;
        };
        if !cfg.forward {
            continue;
        }
        let Some(host) = cfg.forward_to.as_deref().and_then(url_host) else {
            continue;
        };
        match sidecar_virtual_service(spec, &host) {
            Some(vs) => {
                for (callee, attempts) in destinations(spec, vs) {
                    merge(&mut out, callee, attempts);
                }
            }
            None => {
                if let Some(s) = service_of_alias(spec, &host) {
                    let attempts = super::translate::route_retry_policy(&json!({})).attempts();
                    merge(&mut out, s, attempts);
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The host of a forward URL, without port, lowercase.
fn url_host(u: &str) -> Option<String> {
    url::Url::parse(u)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}

/// The mesh service a Host header names on a sidecar: `svc`, `svc.ns`, `svc.ns.svc`
/// or `svc.ns.svc.cluster.local` (the aliases istiod gives a service's virtual host).
fn service_of_alias(spec: &MeshSpec, host: &str) -> Option<String> {
    let ns = &spec.namespace;
    spec.service_names()
        .into_iter()
        .find(|s| {
            [
                s.to_string(),
                format!("{s}.{ns}"),
                format!("{s}.{ns}.svc"),
                service_fqdn(s, ns),
            ]
            .iter()
            .any(|a| a == host)
        })
        .map(String::from)
}

/// The VirtualService that routes `host` on the sidecars, as Envoy picks the virtual
/// host among the domains translate gives them: a host naming a mesh service matches
/// all its aliases, another host its literal name; exact domains before wildcards
/// (the longest suffix first), the first VirtualService in file order on a tie.
fn sidecar_virtual_service<'a>(spec: &'a MeshSpec, host: &str) -> Option<&'a Value> {
    let target = service_of_alias(spec, host);
    let mut best: Option<(usize, &Value)> = None;
    for vs in spec.virtual_services.iter().filter(|v| bound_to_mesh(v)) {
        let ns = vs_namespace(vs);
        for h in vs_hosts(vs) {
            let fqdn = resolve_host(h, ns);
            // Exact: usize::MAX; a wildcard: the length of its suffix.
            let score = if !h.contains('*') {
                let names_target = target
                    .as_ref()
                    .is_some_and(|t| service_fqdn(t, &spec.namespace) == fqdn);
                (names_target || fqdn == host).then_some(usize::MAX)
            } else if fqdn == "*" {
                Some(0)
            } else {
                fqdn.strip_prefix('*')
                    .filter(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
                    .map(str::len)
            };
            if let Some(sc) = score
                && best.is_none_or(|(b, _)| sc > b)
            {
                best = Some((sc, vs));
            }
        }
    }
    best.map(|(_, vs)| vs)
}

/// For each HTTP route of a VirtualService: its destinations that are mesh services,
/// with the route's attempts (the most per service).
fn destinations(spec: &MeshSpec, vs: &Value) -> Vec<(String, u32)> {
    let ns = vs_namespace(vs);
    let mut out = BTreeMap::new();
    let routes = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for route in routes {
        let attempts = super::translate::route_retry_policy(route).attempts();
        let list = route
            .get("route")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let single = list.len() == 1;
        for d in list {
            // As translate (one rule): without a weight, all traffic when alone, else none.
            let weight = crate::istio::spec::destination_weight(d, single);
            if weight == 0 {
                continue;
            }
            let Some(host) = d.pointer("/destination/host").and_then(Value::as_str) else {
                continue;
            };
            let fqdn = resolve_host(host, ns);
            let service = spec
                .service_names()
                .into_iter()
                .find(|s| service_fqdn(s, &spec.namespace) == fqdn);
            if let Some(s) = service {
                merge(&mut out, s.to_string(), attempts);
            }
        }
    }
    out.into_iter().collect()
}

fn vs_namespace(vs: &Value) -> &str {
    vs.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
}

fn vs_hosts(vs: &Value) -> Vec<&str> {
    vs.pointer("/spec/hosts")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::spec::{DemoConfig, ServiceSpec};

    #[test]
    fn the_demo_mesh_multiplies_to_33() {
        let spec = crate::mesh::demo_mesh().expect("demo mesh");
        let chains = retry_chains(&spec);
        // And the ingress's direct route to go-demo-8's /limiter, Istio's default
        // retries (2) on one hop.
        assert_eq!(chains.len(), 2, "{chains:?}");
        assert_eq!(chains[1].hops, vec![("ingress → go-demo-8".to_string(), 3)]);
        let c = &chains[0];
        assert_eq!(
            c.hops,
            vec![
                ("ingress → repeater".to_string(), 11),
                ("repeater → go-demo-8".to_string(), 3),
            ]
        );
        assert_eq!(c.amplification, 33);
        assert_eq!(
            c.describe(),
            "ingress → repeater (11 attempts) → go-demo-8 (3 attempts): up to 33 calls per request"
        );
    }

    fn service(name: &str, forward_to: Option<&str>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            port: 80,
            replicas: 1,
            labels: Default::default(),
            workload: Workload::Demo(DemoConfig {
                forward: forward_to.is_some(),
                forward_to: forward_to.map(String::from),
                ..Default::default()
            }),
        }
    }

    fn mesh(services: Vec<ServiceSpec>, vss: Vec<Value>) -> MeshSpec {
        MeshSpec {
            name: "t".into(),
            namespace: "default".into(),
            ingress_port: 0,
            inbound_sidecars: true,
            services,
            virtual_services: vss,
            destination_rules: vec![],
            gateways: vec![],
        }
    }

    #[test]
    fn worst_route_counts_and_paths_sort_by_amplification() {
        let spec = mesh(
            vec![
                service("a", Some("http://b.default.svc.cluster.local:80/x")),
                service("b", None),
                service("c", Some("http://a/")),
                ServiceSpec {
                    workload: Workload::Command(vec!["./x".into()]),
                    ..service("d", Some("http://a/"))
                },
            ],
            vec![
                json!({"metadata": {"name": "in"}, "spec": {"hosts": ["shop.example.com"], "gateways": ["gw"], "http": [
                    {"match": [{"uri": {"prefix": "/a"}}], "route": [{"destination": {"host": "a"}}], "retries": {"attempts": 1}},
                    {"route": [{"destination": {"host": "a"}, "weight": 50}, {"destination": {"host": "c"}, "weight": 50}], "retries": {"attempts": 4}},
                    {"route": [{"destination": {"host": "d"}}], "retries": {"attempts": 0}},
                    {"route": [{"destination": {"host": "b"}}, {"destination": {"host": "a"}}]},
                    {"route": [{"destination": {"host": "nowhere.example.com"}}]}
                ]}}),
                // Two catch-alls: the first in file order routes (as translate
                // claims domains); both lose to an exact host.
                json!({"metadata": {"name": "all"}, "spec": {"hosts": ["*"], "http": [
                    {"route": [{"destination": {"host": "c"}}], "retries": {"attempts": 7}}
                ]}}),
                json!({"metadata": {"name": "all2"}, "spec": {"hosts": ["*"], "http": [
                    {"route": [{"destination": {"host": "d"}}], "retries": {"attempts": 9}}
                ]}}),
                json!({"metadata": {"name": "a"}, "spec": {"hosts": ["a"], "http": [
                    {"route": [{"destination": {"host": "a"}}], "retries": {"attempts": 5}}
                ]}}),
            ],
        );
        let chains = retry_chains(&spec);
        let got: Vec<(String, u64)> = chains
            .iter()
            .map(|c| (c.describe(), c.amplification))
            .collect();
        assert_eq!(
            got,
            vec![
                // a calls b's FQDN, which only the catch-alls route: to c. c calls
                // a, already on the path.
                (
                    "ingress → a (5 attempts) → c (8 attempts): up to 40 calls per request"
                        .to_string(),
                    40
                ),
                // c calls a: the exact VirtualService; a's call to b goes to c again.
                (
                    "ingress → c (5 attempts) → a (6 attempts): up to 30 calls per request"
                        .to_string(),
                    30
                ),
                // A user command's calls are unknown: its path ends there.
                (
                    "ingress → d (1 attempt): up to 1 call per request".to_string(),
                    1
                ),
            ]
        );
    }

    #[test]
    fn a_cycle_ends_the_path_and_no_virtual_service_means_istio_defaults() {
        let spec = mesh(
            vec![
                service("a", Some("http://b/")),
                service("b", Some("http://a.default:8080/")),
            ],
            vec![
                json!({"metadata": {"name": "in"}, "spec": {"hosts": ["x.example.com"], "gateways": ["gw", "mesh"], "http": [
                    {"route": [{"destination": {"host": "a"}}]}
                ]}}),
            ],
        );
        let chains = retry_chains(&spec);
        assert_eq!(chains.len(), 1, "{chains:?}");
        assert_eq!(
            chains[0].describe(),
            "ingress → a (3 attempts) → b (3 attempts): up to 9 calls per request"
        );
    }
}
