//! The server-side (inbound) sidecar of every replica, as istiod builds a pod's inbound
//! path: a listener in front of the replica, whose one route goes to the inbound
//! cluster holding the application's port. Callers' outbound clusters list these
//! listeners as their endpoints — one per replica, so load balancing, subsets and
//! outlier detection still see one endpoint per replica — and a dead application
//! behind its live sidecar answers the caller with the sidecar's 503 (flags UF,URX), as
//! in Istio, not with a connect failure the caller's retry policy would retry.
//!
//! - listener `inbound_<service>_<i>` (also its stats prefix and access-log hop) on a
//!   loopback port of its own ([`Layout::inbound_ports`]);
//! - route configuration, inline as istiod's inbound one: virtual host
//!   `inbound|http|<port>`, domains `*`, route `default` with no timeout and, since
//!   Istio 1.24, `retry_on: reset-before-request`, 2 retries
//!   (pilot/pkg/networking/core/route/route.go `BuildDefaultHTTPInboundRoute`, called
//!   by httproute.go `buildSidecarInboundHTTPRouteConfig`; ENABLE_INBOUND_RETRY_POLICY,
//!   true by default in 1.24–1.26, unconditional for HTTP from 1.27);
//! - cluster `inbound|<port>||<service>-<i>`: istiod names it `inbound|<port>||` per
//!   pod; the replica suffix tells apart the pods sharing this one Envoy. STATIC to the
//!   application's port, with the service DestinationRule's `connectionPool` and
//!   `retryBudget` (cluster_builder.go `buildInboundCluster` applies the rule's
//!   port-level policy to inbound clusters, connection pool only: applyTrafficPolicy
//!   skips outlier detection and load balancing for the inbound direction).

use serde_json::{Value, json};

use super::hosts::{resolve_host, service_fqdn};
use super::listeners::listener;
use super::{Layout, Translator, proto_duration};

/// The inbound listener (and stats prefix, access-log hop) of replica `index`.
pub fn inbound_listener(service: &str, index: usize) -> String {
    format!("inbound_{service}_{index}")
}

/// The inbound cluster of replica `index`: istiod's `inbound|<port>||`, with the replica.
pub fn inbound_cluster(port: u16, service: &str, index: usize) -> String {
    format!("inbound|{port}||{service}-{index}")
}

/// Whether a cluster name is an inbound cluster.
pub fn is_inbound_cluster(name: &str) -> bool {
    name.starts_with("inbound|")
}

/// istiod's route on every inbound HTTP route configuration (Istio ≥ 1.24).
pub fn inbound_retry_policy() -> Value {
    json!({"retry_on": "reset-before-request", "num_retries": 2})
}

impl Translator<'_> {
    /// The inbound listeners and clusters of every replica that has an inbound port.
    pub(super) fn inbound(&mut self, layout: &Layout) -> (Vec<Value>, Vec<Value>) {
        let mut listeners = Vec::new();
        let mut clusters = Vec::new();
        let spec = self.spec;
        for name in spec.service_names() {
            let (Some(app), Some(inbound)) = (
                layout.replica_ports.get(name),
                layout.inbound_ports.get(name),
            ) else {
                continue;
            };
            let port = spec
                .services
                .iter()
                .find(|s| s.name == name)
                .map_or(80, |s| s.port);
            let rule = spec.destination_rules.iter().find(|d| {
                resolve_host(&d.host, &d.namespace) == service_fqdn(name, &spec.namespace)
            });
            for (i, (app_port, listen)) in app.iter().zip(inbound).enumerate() {
                let cname = inbound_cluster(port, name, i);
                let mut c = super::clusters::static_cluster(&cname, &[*app_port]);
                if let Some(tp) = rule.and_then(|r| r.traffic_policy.as_ref()) {
                    // The outbound clusters already warned about these sections.
                    let n = self.warnings.len();
                    let label =
                        format!("DestinationRule {} (inbound)", rule.map_or("", |r| &r.name));
                    if let Some(cp) = tp.get("connectionPool") {
                        self.connection_pool(&mut c, &label, cp);
                    }
                    if let Some(rb) = tp.get("retryBudget") {
                        self.retry_budget(&mut c, &label, rb);
                    }
                    self.warnings.truncate(n);
                }
                clusters.push(c);
                listeners.push(inbound_listener_config(
                    &inbound_listener(name, i),
                    *listen,
                    port,
                    &cname,
                    layout,
                ));
            }
        }
        (listeners, clusters)
    }
}

/// An HTTP listener like every other hop's, with istiod's inbound route configuration
/// inline (istiod sends it with the listener, not by RDS; faults never apply here).
fn inbound_listener_config(
    name: &str,
    listen: u16,
    port: u16,
    cluster: &str,
    layout: &Layout,
) -> Value {
    let mut l = listener(name, listen, cluster, layout);
    let route_config = json!({
        "name": cluster,
        "virtual_hosts": [{
            "name": format!("inbound|http|{port}"),
            "domains": ["*"],
            "routes": [{
                "name": "default",
                "match": {"prefix": "/"},
                "route": {
                    "cluster": cluster,
                    // For inbound, configure with notimeout.
                    "timeout": proto_duration(0),
                    "max_stream_duration": {
                        "max_stream_duration": proto_duration(0),
                        "grpc_timeout_header_max": proto_duration(0)
                    },
                    "retry_policy": inbound_retry_policy()
                }
            }]
        }],
        "validate_clusters": false
    });
    if let Some(hcm) = l
        .pointer_mut("/filter_chains/0/filters/0/typed_config")
        .and_then(Value::as_object_mut)
    {
        hcm.remove("rds");
        hcm.insert("route_config".into(), route_config);
    }
    l
}
