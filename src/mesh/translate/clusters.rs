//! Clusters: one per service and DestinationRule subset, with replicas as static
//! endpoints, Istio's circuit-breaker defaults and the DestinationRule's traffic policy
//! (istiod's cluster_traffic_policy.go).

use serde_json::{Map, Value, json};

use super::hosts::{resolve_host, service_fqdn};
use super::{ISTIO_MAX, Layout, Translator, cluster_name, proto_duration};
use crate::istio::types::IstioDuration;
use crate::mesh::spec::{DestinationRule, ServiceSpec};

impl Translator<'_> {
    pub(super) fn clusters(&mut self, layout: &Layout) -> Vec<Value> {
        let mut out = Vec::new();
        for name in self.spec.service_names() {
            let entries: Vec<&ServiceSpec> = self
                .spec
                .services
                .iter()
                .filter(|s| s.name == name)
                .collect();
            let port = entries.first().map(|s| s.port).unwrap_or(80);
            let fqdn = service_fqdn(name, &self.spec.namespace);
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
            let rules: Vec<&DestinationRule> = spec
                .destination_rules
                .iter()
                .filter(|d| {
                    resolve_host(&d.host, &d.namespace) == service_fqdn(name, &spec.namespace)
                })
                .collect();
            let mut c = cluster(&cluster_name(port, None, &fqdn), &all);
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
                    let mut c = cluster(&cluster_name(port, Some(&sub.name), &fqdn), &eps);
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
    pub(super) fn traffic_policy(
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

    pub(super) fn connection_pool(&mut self, c: &mut Value, label: &str, cp: &Value) {
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
    pub(super) fn outlier_detection(&mut self, c: &mut Value, label: &str, od: &Value) {
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
