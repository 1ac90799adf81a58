//! DestinationRule, as Istio 1.26's webhook validates it: `ValidateDestinationRule`
//! and `validateTrafficPolicy` with its parts (outlier detection, connection pool,
//! load balancer and locality settings, client TLS, port-level settings, tunnel,
//! PROXY protocol), subsets, exportTo and the workload selector. `retryBudget`
//! (Istio 1.27's API) counts as a traffic-policy field, its `percent` 0–100 (the CRD's
//! Minimum/Maximum).

use serde_json::Value;

use super::common::{fqdn, is_dns1123_label, is_ip, port, wildcard_domain};
use super::{Checker, Issue};
use crate::istio::manifest::{Document, escape_pointer};
use crate::istio::schema;

/// Validates one DestinationRule document; an empty result means Istio accepts it.
pub fn validate_destination_rule(doc: &Document) -> Vec<Issue> {
    let mut c = Checker::new(doc);
    c.header("DestinationRule");
    if c.spec().is_some() {
        c.destination_rule(doc.namespace().unwrap_or("default"));
    }
    c.finish(&schema::DESTINATION_RULE)
}

/// The topology labels `failoverPriority` may not name together with `failover`.
const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

impl Checker<'_> {
    /// Istio 1.26 ValidateDestinationRule.
    fn destination_rule(&mut self, namespace: &str) {
        let host = self.str_at("/spec/host").unwrap_or("");
        if let Err(e) = wildcard_domain(host) {
            let e = if host.is_empty() {
                "spec.host is required: the service the rule applies to, such as \"reviews\" or \"reviews.default.svc.cluster.local\"".to_string()
            } else {
                e
            };
            self.issue("/spec/host", e);
        }
        self.traffic_policy("/spec/trafficPolicy", namespace);
        let mut names: Vec<&str> = Vec::new();
        for (i, s) in self.list_at("/spec/subsets").iter().enumerate() {
            let p = format!("/spec/subsets/{i}");
            if !s.is_object() {
                self.issue(&p, "subset may not be null");
                continue;
            }
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            let np = format!("{p}/name");
            if names.contains(&name) {
                self.issue(&np, format!("duplicate subset names: {name}"));
            }
            names.push(name);
            // validateSubset: validateSubsetName, labels, traffic policy.
            if name.is_empty() {
                self.issue(&np, "subset name cannot be empty");
            } else if !is_dns1123_label(name) {
                self.issue(&np, format!("subset name is invalid: {name} (a DNS-1123 label: lower-case letters, digits and '-')"));
            }
            self.labels(&format!("{p}/labels"));
            self.traffic_policy(&format!("{p}/trafficPolicy"), namespace);
        }
        let selector = self.get("/spec/workloadSelector").is_some();
        self.export_to("/spec/exportTo", namespace, selector);
        self.workload_selector("/spec/workloadSelector");
    }

    /// validateTrafficPolicy.
    fn traffic_policy(&mut self, p: &str, namespace: &str) {
        let Some(tp) = self.get(p) else { return };
        let has = |k: &str| tp.get(k).is_some_and(|v| !v.is_null());
        let fields = [
            "outlierDetection",
            "connectionPool",
            "loadBalancer",
            "tls",
            "portLevelSettings",
            "tunnel",
            "proxyProtocol",
            "retryBudget",
        ];
        if !fields.iter().any(|k| has(k)) {
            self.issue(p, "traffic policy must have at least one field");
            return;
        }
        if has("tunnel") && has("proxyProtocol") {
            self.issue(p, "tunnel and proxyProtocol must not be set together");
            return;
        }
        self.outlier_detection(&format!("{p}/outlierDetection"));
        self.connection_pool(&format!("{p}/connectionPool"));
        self.load_balancer(&format!("{p}/loadBalancer"), has("outlierDetection"));
        self.client_tls(&format!("{p}/tls"), namespace);
        self.port_level_settings(&format!("{p}/portLevelSettings"), namespace);
        self.tunnel(&format!("{p}/tunnel"));
        self.number_range(&format!("{p}/retryBudget/percent"), 0.0, 100.0);
    }

    /// validateOutlierDetection.
    fn outlier_detection(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        self.duration(&format!("{p}/baseEjectionTime"));
        let ce = format!("{p}/consecutiveErrors");
        if self.int_at(&ce).is_some_and(|n| n != 0) {
            self.warn(&ce, "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead");
        }
        let lf = format!("{p}/consecutiveLocalOriginFailures");
        if !self.bool_at(&format!("{p}/splitExternalLocalOriginErrors"))
            && self.int_at(&lf).is_some_and(|n| n > 0)
        {
            self.issue(&lf, "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false");
        }
        self.duration(&format!("{p}/interval"));
        self.percent_int(&format!("{p}/maxEjectionPercent"));
        self.percent_int(&format!("{p}/minHealthPercent"));
    }

    /// validateConnectionPool.
    fn connection_pool(&mut self, p: &str) {
        let Some(cp) = self.get(p) else { return };
        let http = cp.get("http").is_some_and(|v| !v.is_null());
        let tcp = cp.get("tcp").is_some_and(|v| !v.is_null());
        if !http && !tcp {
            self.issue(
                p,
                "connection pool must have at least one field (http or tcp)",
            );
            return;
        }
        let h = format!("{p}/http");
        for (k, what) in [
            ("http1MaxPendingRequests", "http1 max pending requests"),
            ("http2MaxRequests", "http2 max requests"),
            ("maxRequestsPerConnection", "max requests per connection"),
            ("maxRetries", "max retries"),
            ("maxConcurrentStreams", "max concurrent streams"),
        ] {
            self.non_negative(&format!("{h}/{k}"), what);
        }
        self.duration(&format!("{h}/idleTimeout"));
        if self.str_at(&format!("{h}/h2UpgradePolicy")) == Some("UPGRADE")
            && self.bool_at(&format!("{h}/useClientProtocol"))
        {
            self.issue(
                &format!("{h}/useClientProtocol"),
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            );
        }
        let t = format!("{p}/tcp");
        self.non_negative(&format!("{t}/maxConnections"), "max connections");
        self.duration(&format!("{t}/connectTimeout"));
        self.duration(&format!("{t}/maxConnectionDuration"));
        self.duration_or_zero(&format!("{t}/idleTimeout"));
        self.duration(&format!("{t}/tcpKeepalive/time"));
        self.duration(&format!("{t}/tcpKeepalive/interval"));
    }

    /// validateLoadBalancer (and the CRD's oneOf for `simple` / `consistentHash`).
    fn load_balancer(&mut self, p: &str, has_outlier: bool) {
        let Some(lb) = self.get(p) else { return };
        if lb.get("simple").is_some() && lb.get("consistentHash").is_some() {
            self.issue(p, "set only one of simple, consistentHash");
        }
        let ch = format!("{p}/consistentHash");
        if self.get(&ch).is_some() {
            let cookie = format!("{ch}/httpCookie");
            if self.get(&cookie).is_some() && !self.set(&format!("{cookie}/name")) {
                self.issue(&cookie, "name required for HttpCookie");
            }
            let keys = [
                "httpHeaderName",
                "httpCookie",
                "useSourceIp",
                "httpQueryParameterName",
            ];
            if keys
                .iter()
                .filter(|k| self.get(&format!("{ch}/{k}")).is_some())
                .count()
                > 1
            {
                self.issue(&ch, format!("set only one of {}", keys.join(", ")));
            }
            let mrs = format!("{ch}/minimumRingSize");
            let algo = self.get(&format!("{ch}/ringHash")).is_some()
                || self.get(&format!("{ch}/maglev")).is_some();
            if self.int_at(&mrs).is_some_and(|n| n != 0) {
                self.warn(&mrs, "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead");
                if algo {
                    self.issue(
                        &mrs,
                        "only one of MinimumRingSize or Maglev/Ringhash can be specified",
                    );
                }
            }
            let ml = format!("{ch}/maglev");
            if self.get(&ml).is_some() {
                let tp = format!("{ml}/tableSize");
                let n = self.get(&tp).and_then(Value::as_u64).unwrap_or(0);
                if n == 0 {
                    self.issue(&tp, "tableSize must be set for maglev");
                }
                if n >= 5_000_011 {
                    self.issue(&tp, "tableSize must be less than 5000011 for maglev");
                }
                if !is_prime(n) {
                    self.issue(&tp, "tableSize must be a prime number for maglev");
                }
            }
        }
        self.locality_lb(&format!("{p}/localityLbSetting"), has_outlier);
        let w = format!("{p}/warmup");
        if self.get(&w).is_some() {
            if self.get(&format!("{w}/duration")).is_none() {
                self.issue(&w, "duration is required");
            } else {
                self.duration(&format!("{w}/duration"));
            }
            let mp = format!("{w}/minimumPercent");
            if self
                .get(&mp)
                .and_then(Value::as_f64)
                .is_some_and(|v| v > 100.0)
            {
                self.issue(
                    &mp,
                    "minimumPercent value should be less than or equal to 100",
                );
            }
            let ap = format!("{w}/aggression");
            if self
                .get(&ap)
                .and_then(Value::as_f64)
                .is_some_and(|v| v < 1.0)
            {
                self.issue(&ap, "aggression should be greater than or equal to 1");
            }
            if self.get(&format!("{p}/warmupDurationSecs")).is_some() {
                self.issue(&w, "only one of warmupDurationSecs or warmup can be set");
            }
        }
        self.duration(&format!("{p}/warmupDurationSecs"));
    }

    /// agent.ValidateLocalityLbSetting.
    fn locality_lb(&mut self, p: &str, has_outlier: bool) {
        if self.get(p).is_none() {
            return;
        }
        let dp = format!("{p}/distribute");
        let fp = format!("{p}/failover");
        let pp = format!("{p}/failoverPriority");
        if self.set(&dp) && self.set(&fp) {
            self.issue(
                p,
                "can not simultaneously specify 'distribute' and 'failover'",
            );
            return;
        }
        if self.set(&fp) {
            for (i, l) in self.list_at(&pp).iter().enumerate() {
                if let Some(l) = l.as_str()
                    && TOPOLOGY_LABELS.contains(&l)
                {
                    self.issue(&format!("{pp}/{i}"), format!("can not simultaneously set 'failover' and topology label '{l}' in 'failover_priority'"));
                    return;
                }
            }
        }
        let mut sources = Vec::new();
        for (i, d) in self.list_at(&dp).iter().enumerate() {
            let ip = format!("{dp}/{i}");
            sources.push(d.get("from").and_then(Value::as_str).unwrap_or(""));
            let to = d.get("to").and_then(Value::as_object);
            let mut total: i64 = 0;
            for (loc, w) in to.into_iter().flatten() {
                let w = w.as_i64().unwrap_or(0);
                if !(1..=100).contains(&w) {
                    self.issue(
                        &format!("{ip}/to/{}", escape_pointer(loc)),
                        "locality weight must be in range [1, 100]",
                    );
                    return;
                }
                total += w;
            }
            if total != 100 {
                self.issue(
                    &format!("{ip}/to"),
                    format!("total locality weight {total} != 100"),
                );
                return;
            }
            let dests: Vec<&str> = to.into_iter().flatten().map(|(k, _)| k.as_str()).collect();
            if let Err(e) = localities(&dests) {
                self.issue(&format!("{ip}/to"), e);
            }
        }
        if let Err(e) = localities(&sources) {
            self.issue(&dp, e);
        }
        if (self.set(&fp) || self.set(&pp)) && !has_outlier {
            self.warn(p, "outlier detection policy must be provided for failover");
        }
        for (i, f) in self.list_at(&fp).iter().enumerate() {
            let from = f.get("from").and_then(Value::as_str).unwrap_or("");
            let to = f.get("to").and_then(Value::as_str).unwrap_or("");
            let ip = format!("{fp}/{i}");
            if from == to {
                self.issue(
                    &ip,
                    "locality lb failover settings must specify different regions",
                );
            }
            if from.contains('/') || to.contains('/') {
                self.issue(&ip, "locality lb failover only specify region");
            }
            if from.contains('*') || to.contains('*') {
                self.issue(
                    &ip,
                    "locality lb failover region should not contain '*' wildcard",
                );
            }
        }
    }

    /// agent.ValidateTLS (client side).
    fn client_tls(&mut self, p: &str, _namespace: &str) {
        if self.get(p).is_none() {
            return;
        }
        let mode = self.str_at(&format!("{p}/mode")).unwrap_or("DISABLE");
        let set = |c: &Self, k: &str| c.set(&format!("{p}/{k}"));
        let cred = set(self, "credentialName");
        if self.bool_at(&format!("{p}/insecureSkipVerify")) {
            if mode == "SIMPLE"
                && (set(self, "caCertificates") || cred || set(self, "subjectAltNames"))
            {
                self.issue(p, "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true");
            }
            if mode == "MUTUAL" && (set(self, "caCertificates") || set(self, "subjectAltNames")) {
                self.issue(p, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true");
            }
        }
        if (mode == "SIMPLE" || mode == "MUTUAL") && cred {
            if ["clientCertificate", "caCertificates", "privateKey", "caCrl"]
                .iter()
                .any(|k| set(self, k))
            {
                self.issue(p, "cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
            }
            return;
        }
        if mode == "MUTUAL" {
            if !set(self, "clientCertificate") {
                self.issue(
                    p,
                    "client certificate required for mutual tls (or set credentialName)",
                );
            }
            if !set(self, "privateKey") {
                self.issue(
                    p,
                    "private key required for mutual tls (or set credentialName)",
                );
            }
        }
    }

    /// validatePortTrafficPolicies.
    fn port_level_settings(&mut self, p: &str, namespace: &str) {
        for (i, t) in self.list_at(p).iter().enumerate() {
            let tp = format!("{p}/{i}");
            if !t.is_object() {
                self.issue(&tp, "traffic policy may not be null");
                continue;
            }
            if t.get("port").is_none_or(Value::is_null) {
                self.issue(&tp, "portTrafficPolicy must have valid port");
            }
            let has = |k: &str| t.get(k).is_some_and(|v| !v.is_null());
            if !["outlierDetection", "connectionPool", "loadBalancer", "tls"]
                .iter()
                .any(|k| has(k))
            {
                self.issue(&tp, "port traffic policy must have at least one field");
            } else {
                self.outlier_detection(&format!("{tp}/outlierDetection"));
                self.connection_pool(&format!("{tp}/connectionPool"));
                self.load_balancer(&format!("{tp}/loadBalancer"), has("outlierDetection"));
                self.client_tls(&format!("{tp}/tls"), namespace);
            }
        }
    }

    /// validateTunnelSettings.
    fn tunnel(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        let pp = format!("{p}/protocol");
        if let Some(proto) = self.str_at(&pp)
            && !["", "CONNECT", "POST"].contains(&proto)
        {
            self.issue(&pp, "tunnel protocol must be \"CONNECT\" or \"POST\"");
        }
        let hp = format!("{p}/targetHost");
        let host = self.str_at(&hp).unwrap_or("");
        if let Err(e) = fqdn(host)
            && !is_ip(host)
        {
            self.issue(
                &hp,
                format!("tunnel target host must be valid FQDN or IP address: {e}"),
            );
        }
        let tp = format!("{p}/targetPort");
        let n = match self.get(&tp) {
            None => Some(0),
            Some(v) => v.as_i64(),
        };
        if let Some(Err(e)) = n.map(port) {
            self.issue(&tp, format!("tunnel target port is invalid: {e}"));
        }
    }
}

/// isPrime, as Envoy (and Istio) write it.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut f = 3u64;
    while f.saturating_mul(f) <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

/// agent.validateLocalities: `region[/zone[/subzone]]`, a `*` only at the end, no
/// overlap between entries.
fn localities(list: &[&str]) -> Result<(), String> {
    // (region, zone, subzone) entries seen, "*" for "any".
    let mut seen: Vec<[&str; 3]> = Vec::new();
    for &loc in list {
        let stars = loc.matches('*').count();
        if stars > 1 || (stars == 1 && !loc.ends_with('*')) {
            return Err(format!(
                "locality {loc} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        if seen.iter().any(|s| s[0] == "*") {
            return Err(format!(
                "locality {loc} overlap with previous specified ones"
            ));
        }
        let parts: Vec<&str> = loc.splitn(3, '/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "locality {loc} must not contain empty region/zone/subzone info"
            ));
        }
        let entry = [
            parts[0],
            parts.get(1).copied().unwrap_or("*"),
            parts.get(2).copied().unwrap_or("*"),
        ];
        let overlaps = seen.iter().any(|s| {
            s[0] == entry[0]
                && (s[1] == "*" || entry[1] == "*" || s[1] == entry[1])
                && (s[1] != entry[1] || s[2] == "*" || entry[2] == "*" || s[2] == entry[2])
        });
        if overlaps {
            return Err(format!(
                "locality {loc} overlap with previous specified ones"
            ));
        }
        seen.push(entry);
    }
    Ok(())
}
