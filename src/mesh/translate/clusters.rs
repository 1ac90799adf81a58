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
            // Each replica's inbound sidecar when it has one, else the replica itself.
            let ports = layout.endpoint_ports(name);
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
            let mut c = static_cluster(&cluster_name(port, None, &fqdn), &all);
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
                    let mut c = static_cluster(&cluster_name(port, Some(&sub.name), &fqdn), &eps);
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
                    if ![
                        "connectionPool",
                        "outlierDetection",
                        "loadBalancer",
                        "retryBudget",
                    ]
                    .contains(&k.as_str())
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
        // As istiod's applyTrafficPolicy: applyConnectionPool runs with or without a
        // connectionPool section, and applies the retry budget to the same thresholds.
        if let Some(rb) = section("retryBudget") {
            self.retry_budget(c, label, rb);
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

    /// istiod's applyRetryBudget (pilot/pkg/networking/core/cluster_traffic_policy.go,
    /// Istio 1.27+; `retryBudget` is a 1.27 field): `percent` (a DoubleValue, 0–100) →
    /// `budget_percent`, default 20%; `minRetryConcurrency` > 0 →
    /// `min_retry_concurrency`, default 3. Envoy then ignores `max_retries`.
    ///
    /// The default follows the fix of istio#59505 (1.28.6, 1.29.2 and later): 1.27.x,
    /// 1.28.0–1.28.5 and 1.29.0–1.29.1 wrote 0.2 (0.2%, not 20%). A subset's
    /// `retryBudget` overrides the rule's, which it otherwise inherits, as the
    /// mergeTrafficPolicy of the same releases (earlier ones dropped the rule's budget
    /// when the subset had a trafficPolicy of its own).
    pub(super) fn retry_budget(&mut self, c: &mut Value, label: &str, rb: &Value) {
        let mut percent = 20.0;
        match rb.get("percent") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_f64().filter(|p| (0.0..=100.0).contains(p)) {
                Some(p) => percent = p,
                None => self.warnings.push(format!(
                    "{label}: trafficPolicy.retryBudget.percent {v} is not a percentage (0–100); using istiod's default 20"
                )),
            },
        }
        let mut min = 3;
        match rb.get("minRetryConcurrency") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                // As istiod: 0 cannot be told from unset and leaves the default.
                Some(0) => {}
                Some(n) => min = n,
                None => self.warnings.push(format!(
                    "{label}: trafficPolicy.retryBudget.minRetryConcurrency {v} is not a 32-bit unsigned integer; using istiod's default 3"
                )),
            },
        }
        if let Some(o) = rb.as_object() {
            for k in o
                .keys()
                .filter(|k| !["percent", "minRetryConcurrency"].contains(&k.as_str()))
            {
                self.warnings.push(format!(
                    "{label}: trafficPolicy.retryBudget.{k} is not supported by the local mesh; ignored"
                ));
            }
        }
        c["circuit_breakers"]["thresholds"][0]["retry_budget"] = json!({
            "budget_percent": {"value": percent},
            "min_retry_concurrency": min
        });
    }

    /// istiod's applyOutlierDetection (pilot/pkg/networking/core/cluster_traffic_policy.go,
    /// Istio 1.24–1.27, unchanged since): only the fields given are set, so Envoy's own
    /// defaults hold for the rest — notably `consecutive_5xx` 5 (enforced 100%) when
    /// `consecutive5xxErrors` is absent.
    pub(super) fn outlier_detection(&mut self, c: &mut Value, label: &str, od: &Value) {
        let mut out = Map::new();
        // As istiod: success-rate ejection off.
        out.insert("enforcing_success_rate".into(), json!(0));
        let five_xx = self.u32_field(label, od, "consecutive5xxErrors");
        if let Some(n) = five_xx {
            out.insert("consecutive_5xx".into(), json!(n));
            out.insert(
                "enforcing_consecutive_5xx".into(),
                json!(if n > 0 { 100 } else { 0 }),
            );
        }
        // Gateway errors (502, 503, 504 and local connect failures/timeouts) are
        // counted apart, and are 5xx too: whichever threshold is reached first ejects.
        // With consecutiveGatewayErrors ≥ consecutive5xxErrors (Envoy's 5 when unset
        // and not 0), the 5xx count ejects first and the gateway count has no effect —
        // as the Istio API reference says.
        if let Some(n) = self.u32_field(label, od, "consecutiveGatewayErrors") {
            out.insert("consecutive_gateway_failure".into(), json!(n));
            out.insert(
                "enforcing_consecutive_gateway_failure".into(),
                json!(if n > 0 { 100 } else { 0 }),
            );
            let five = five_xx.unwrap_or(ENVOY_CONSECUTIVE_5XX);
            if n > 0 && five > 0 && n >= five {
                self.warnings.push(format!(
                    "{label}: trafficPolicy.outlierDetection.consecutiveGatewayErrors {n} is not below consecutive5xxErrors {five}{}: 5xx ejection comes first, so it has no effect (as in Istio)",
                    if five_xx.is_none() { " (Envoy's default when unset)" } else { "" }
                ));
            }
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
        // Local-origin errors (connect failures, resets, timeouts of this Envoy's own
        // connection) counted apart only when split; otherwise they count as 5xx and
        // gateway errors. consecutiveLocalOriginFailures has no effect unsplit.
        let local = self.u32_field(label, od, "consecutiveLocalOriginFailures");
        if od
            .get("splitExternalLocalOriginErrors")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("split_external_local_origin_errors".into(), json!(true));
            if let Some(n) = local.filter(|n| *n > 0) {
                out.insert("consecutive_local_origin_failure".into(), json!(n));
                out.insert(
                    "enforcing_consecutive_local_origin_failure".into(),
                    json!(100),
                );
            }
            out.insert("enforcing_local_origin_success_rate".into(), json!(0));
        } else if local.is_some_and(|n| n > 0) {
            self.warnings.push(format!(
                "{label}: trafficPolicy.outlierDetection.consecutiveLocalOriginFailures has no effect without splitExternalLocalOriginErrors: true (as in istiod)"
            ));
        }
        const KNOWN: [&str; 8] = [
            "consecutive5xxErrors",
            "consecutiveGatewayErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
            "minHealthPercent",
            "splitExternalLocalOriginErrors",
            "consecutiveLocalOriginFailures",
        ];
        if let Some(o) = od.as_object() {
            for k in o.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
                self.warnings.push(format!(
                    "{label}: trafficPolicy.outlierDetection.{k} is not supported by the local mesh; ignored"
                ));
            }
        }
        c["outlier_detection"] = Value::Object(out);
        // As istiod: healthy_panic_threshold is set even when minHealthPercent is
        // absent (0, which disables panic mode: Envoy's default would be 50%); a value
        // given is used as is ("FIXME: we can't distinguish between it being unset or
        // being explicitly set to 0").
        let min_health = match od.get("minHealthPercent") {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_u64().filter(|n| *n <= 100) {
                Some(n) => n,
                None => {
                    self.warnings.push(format!(
                        "{label}: trafficPolicy.outlierDetection.minHealthPercent {v} is not a percentage (0–100); using 0, as unset"
                    ));
                    0
                }
            },
        };
        c["common_lb_config"] = json!({"healthy_panic_threshold": {"value": min_health as f64}});
    }

    /// A UInt32Value field of a traffic policy section; a value that is no 32-bit
    /// unsigned integer is warned about and read as unset.
    fn u32_field(&mut self, label: &str, section: &Value, k: &str) -> Option<u32> {
        let v = section.get(k).filter(|v| !v.is_null())?;
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.warnings.push(format!(
                    "{label}: trafficPolicy.outlierDetection.{k} {v} is not a 32-bit unsigned integer; ignored"
                ));
                None
            }
        }
    }
}

/// Envoy's `consecutive_5xx` when the cluster's outlier detection leaves it unset.
const ENVOY_CONSECUTIVE_5XX: u32 = 5;

/// A STATIC cluster of loopback endpoints with Istio's circuit-breaker defaults
/// (getDefaultCircuitBreakerThresholds) and connect timeout (10 s, MeshConfig default).
pub(super) fn static_cluster(name: &str, ports: &[u16]) -> Value {
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
