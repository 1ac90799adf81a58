//! VirtualService, as Istio 1.26's webhook validates it: `ValidateVirtualService`
//! (validation.go) and `validateHTTPRoute` (virtualservice.go) — hosts, gateways,
//! delegates, HTTP routes (conflicts, matches, headers, CORS, fault, mirror, redirect,
//! direct response, retries, rewrite, destinations, timeout), TLS and TCP routes,
//! exportTo. Faults and retries keep meshdrill's typed checks (FACTS.md).

use serde_json::Value;

use super::common::{
    self, host_subset_of, hosts_match, ip_subnet, is_authority_header, is_dns1123_label, is_ip,
    is_jwt_claim, match_header_name, wildcard_domain, wildcard_domain_at_gateway,
};
use super::{Checker, Issue, Severity};
use crate::istio::manifest::{Document, escape_pointer, json_type};
use crate::istio::schema;
use crate::istio::types::{GrpcStatus, Percentage, RetryOn};

/// Validates one VirtualService document; an empty result means Istio accepts it.
pub fn validate_virtual_service(doc: &Document) -> Vec<Issue> {
    let mut c = Checker::new(doc);
    c.header("VirtualService");
    if let Some(spec) = c.spec() {
        c.virtual_service(spec, doc.namespace().unwrap_or("default"));
    }
    c.finish(&schema::VIRTUAL_SERVICE)
}

/// Whether the VirtualService binds only to gateways (isGateway: `gateways` set and
/// without `mesh`).
fn bound_to_gateways_only(spec: &Value) -> bool {
    spec.get("gateways")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty() && !g.iter().any(|x| x.as_str() == Some("mesh")))
}

/// isSniHost: some TLS route matches on SNI hosts.
fn has_sni_hosts(spec: &Value) -> bool {
    spec.get("tls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("match").and_then(Value::as_array))
        .flatten()
        .any(|m| {
            m.get("sniHosts")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty())
        })
}

impl Checker<'_> {
    /// Istio 1.26 ValidateVirtualService.
    fn virtual_service(&mut self, spec: &Value, namespace: &str) {
        let hosts: Vec<(usize, &str)> = self
            .list_at("/spec/hosts")
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_str().map(|h| (i, h)))
            .collect();
        if let Some(h) = spec.get("hosts")
            && !h.is_array()
            && !h.is_null()
        {
            self.issue(
                "/spec/hosts",
                format!("expected a list of hosts, found {}", json_type(h)),
            );
        }
        let delegate = !self.set("/spec/hosts");
        if delegate {
            // A delegate VirtualService (used from another one's `delegate`).
            if self.set("/spec/gateways") {
                self.issue(
                    "/spec/gateways",
                    "delegate virtual service (no hosts) must have no gateways specified",
                );
            }
            if self.set("/spec/tls") {
                self.issue(
                    "/spec/tls",
                    "delegate virtual service (no hosts) must have no tls route specified",
                );
            }
            if self.set("/spec/tcp") {
                self.issue(
                    "/spec/tcp",
                    "delegate virtual service (no hosts) must have no tcp route specified",
                );
            }
        }
        let at_gateway = bound_to_gateways_only(spec);
        if self.set("/spec/gateways") {
            self.gateway_names("/spec/gateways");
        }
        if !at_gateway {
            for (i, _) in self.list_at("/spec/http").iter().enumerate() {
                for (j, _) in self
                    .list_at(&format!("/spec/http/{i}/match"))
                    .iter()
                    .enumerate()
                {
                    for key in ["headers", "withoutHeaders"] {
                        let p = format!("/spec/http/{i}/match/{j}/{key}");
                        let names: Vec<String> = self
                            .get(&p)
                            .and_then(Value::as_object)
                            .map(|m| m.keys().filter(|k| is_jwt_claim(k)).cloned().collect())
                            .unwrap_or_default();
                        for k in names {
                            self.issue(&format!("{p}/{}", escape_pointer(&k)), format!("JWT claim based routing (key: {k}) is only supported for gateway, found no gateways"));
                        }
                    }
                }
            }
        }
        let mut all_valid = true;
        let sni = has_sni_hosts(spec);
        for &(i, h) in &hosts {
            let p = format!("/spec/hosts/{i}");
            let r = if at_gateway {
                wildcard_domain_at_gateway(sni, h)
            } else {
                wildcard_domain(h)
            };
            match r {
                Err(e) if !is_ip(h) => {
                    self.issue(&p, e);
                    all_valid = false;
                }
                Err(_) => {}
                Ok(()) if !at_gateway && h == "*" => {
                    self.issue(&p, "wildcard host * is not allowed for virtual services bound to the mesh gateway (bind it to a Gateway, or name the hosts)");
                    all_valid = false;
                }
                Ok(()) => {}
            }
        }
        if all_valid {
            for (n, &(_, a)) in hosts.iter().enumerate() {
                for &(j, b) in &hosts[n + 1..] {
                    if hosts_match(a, b) {
                        self.issue(
                            &format!("/spec/hosts/{j}"),
                            format!("duplicate hosts in virtual service: {a} & {b}"),
                        );
                    }
                }
            }
        }
        if !["http", "tcp", "tls"]
            .iter()
            .any(|k| self.set(&format!("/spec/{k}")))
        {
            self.issue(
                "/spec",
                "http, tcp or tls must be provided in virtual service",
            );
        }
        if let Some(http) = spec.get("http") {
            match http.as_array() {
                Some(routes) => {
                    for (i, r) in routes.iter().enumerate() {
                        self.http_route(&format!("/spec/http/{i}"), r, delegate);
                    }
                }
                None => self.issue(
                    "/spec/http",
                    format!("expected a list of routes, found {}", json_type(http)),
                ),
            }
        }
        let host_names: Vec<&str> = hosts.iter().map(|(_, h)| *h).collect();
        for (i, _) in self.list_at("/spec/tls").iter().enumerate() {
            self.tls_route(&format!("/spec/tls/{i}"), at_gateway, &host_names);
        }
        for (i, _) in self.list_at("/spec/tcp").iter().enumerate() {
            self.tcp_route(&format!("/spec/tcp/{i}"));
        }
        self.export_to("/spec/exportTo", namespace, false);
    }

    /// Istio 1.26 validateHTTPRoute (virtualservice.go).
    fn http_route(&mut self, base: &str, route: &Value, in_delegate: bool) {
        if !self.expect_type(base, route, "a mapping", route.is_object()) {
            return;
        }
        self.http_route_conflicts(base, route, in_delegate);
        self.http_matches(base);
        self.header_ops(&format!("{base}/headers"));
        self.cors(&format!("{base}/corsPolicy"));
        if let Some(f) = route.get("fault") {
            self.fault(&format!("{base}/fault"), f);
        }
        let mp = format!("{base}/mirrorPercent");
        if let Some(v) = self.int_at(&mp) {
            if v > 100 {
                self.issue(
                    &mp,
                    format!("mirror_percent must have a max value of 100 (it has {v})"),
                );
            }
            self.warn(
                &mp,
                "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
            );
        }
        self.mirror_percentage(
            &format!("{base}/mirrorPercentage/value"),
            "mirror_percentage",
        );
        self.destination(&format!("{base}/mirror"));
        for (i, m) in self.list_at(&format!("{base}/mirrors")).iter().enumerate() {
            let p = format!("{base}/mirrors/{i}");
            if m.get("destination").is_none_or(Value::is_null) {
                self.issue(&p, "destination is required for mirrors");
                continue;
            }
            self.destination(&format!("{p}/destination"));
            self.mirror_percentage(&format!("{p}/percentage/value"), "mirror percentage");
        }
        self.redirect(&format!("{base}/redirect"));
        self.direct_response(&format!("{base}/directResponse"));
        if let Some(r) = route.get("retries") {
            self.retries(&format!("{base}/retries"), r);
        }
        self.rewrite(&format!("{base}/rewrite"));
        self.http_destinations(&format!("{base}/route"));
        self.duration(&format!("{base}/timeout"));
    }

    /// validateHTTPRouteConflict and validateAuthorityRewrite.
    fn http_route_conflicts(&mut self, base: &str, route: &Value, in_delegate: bool) {
        let has = |k: &str| route.get(k).is_some_and(|v| !v.is_null());
        let routes = route
            .get("route")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        if has("delegate") && !in_delegate {
            // A root route: only the delegate.
            if has("redirect") {
                self.issue(
                    &format!("{base}/redirect"),
                    "root HTTP route (with a delegate) must not specify redirect",
                );
            }
            if has("route") {
                self.issue(
                    &format!("{base}/route"),
                    "root HTTP route (with a delegate) must not specify route",
                );
            }
            return;
        }
        if in_delegate && has("delegate") {
            self.issue(
                &format!("{base}/delegate"),
                "delegate HTTP route cannot contain delegate",
            );
        }
        if has("redirect") {
            let rp = format!("{base}/redirect");
            if routes {
                self.issue(&rp, "HTTP route cannot contain both route and redirect");
            }
            if has("fault") {
                self.issue(
                    &format!("{base}/fault"),
                    "HTTP route cannot contain both fault and redirect (Istio rejects it)",
                );
            }
            if has("rewrite") {
                self.issue(
                    &rp,
                    "HTTP route rule cannot contain both rewrite and redirect",
                );
            }
            if has("directResponse") {
                self.issue(
                    &rp,
                    "HTTP route rule cannot contain both direct_response and redirect",
                );
            }
        } else if has("directResponse") {
            let dp = format!("{base}/directResponse");
            if routes {
                self.issue(
                    &dp,
                    "HTTP route cannot contain both route and direct_response",
                );
            }
            if has("fault") {
                self.issue(
                    &format!("{base}/fault"),
                    "HTTP route cannot contain both fault and direct_response (Istio rejects it)",
                );
            }
            if has("rewrite") {
                self.issue(
                    &dp,
                    "HTTP route rule cannot contain both rewrite and direct_response",
                );
            }
        } else if !routes {
            self.issue(base, "HTTP route, redirect or direct_response is required");
        }
        if has("mirror")
            && route
                .get("mirrors")
                .and_then(Value::as_array)
                .is_some_and(|m| !m.is_empty())
        {
            self.issue(
                &format!("{base}/mirrors"),
                "HTTP route cannot contain both mirror and mirrors",
            );
        }
        // validateAuthorityRewrite: the authority is rewritten in one place only.
        let mut current = self
            .str_at(&format!("{base}/rewrite/authority"))
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        for op in ["set", "add"] {
            let mp = format!("{base}/headers/request/{op}");
            let Some(m) = self.get(&mp).and_then(Value::as_object) else {
                continue;
            };
            for (k, v) in m {
                if !is_authority_header(k) {
                    continue;
                }
                let v = v.as_str().unwrap_or("").to_string();
                if let Some(have) = &current {
                    self.issue(&format!("{mp}/{}", escape_pointer(k)), format!("authority header cannot be set multiple times: have {have:?}, attempting to set {v:?}"));
                    return;
                }
                current = Some(v);
            }
        }
    }

    /// validateHTTPRouteMatchRequest.
    fn http_matches(&mut self, base: &str) {
        let mp = format!("{base}/match");
        if let Some(m) = self.get(&mp)
            && !m.is_array()
        {
            self.issue(&mp, "expected a list of match conditions");
            return;
        }
        for (i, m) in self.list_at(&mp).iter().enumerate() {
            let p = format!("{mp}/{i}");
            if !m.is_object() {
                continue;
            }
            for key in ["headers", "withoutHeaders"] {
                let hp = format!("{p}/{key}");
                let Some(h) = self.get(&hp).and_then(Value::as_object) else {
                    continue;
                };
                for (name, sm) in h {
                    let np = format!("{hp}/{}", escape_pointer(name));
                    if key == "headers" && sm.is_null() {
                        self.issue(&np, format!("header match {name} cannot be null"));
                    }
                    self.check(&np, match_header_name(name));
                    // withoutHeaders: `regex: "*"` means "present", not a regex.
                    if key == "headers" || sm.get("regex").and_then(Value::as_str) != Some("*") {
                        self.string_match(&np, key, false);
                    }
                }
            }
            self.string_match(&format!("{p}/uri"), "uri", true);
            for k in ["scheme", "method", "authority"] {
                self.string_match(&format!("{p}/{k}"), k, false);
            }
            let qp = format!("{p}/queryParams");
            let names: Vec<String> = self
                .get(&qp)
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for n in names {
                self.string_match(
                    &format!("{qp}/{}", escape_pointer(&n)),
                    "queryParams",
                    false,
                );
            }
            if self.int_at(&format!("{p}/port")).is_some_and(|n| n != 0) {
                self.port_at(&format!("{p}/port"));
            }
            self.labels(&format!("{p}/sourceLabels"));
            self.gateway_names(&format!("{p}/gateways"));
            let sp = format!("{p}/sourceNamespace");
            if let Some(ns) = self.str_at(&sp)
                && !ns.is_empty()
                && !is_dns1123_label(ns)
            {
                self.issue(&sp, format!("sourceNamespace match {ns} is invalid"));
            }
        }
    }

    /// validateCORSPolicy.
    fn cors(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        for (i, o) in self
            .list_at(&format!("{p}/allowOrigins"))
            .iter()
            .enumerate()
        {
            let op = format!("{p}/allowOrigins/{i}");
            let m = ["exact", "prefix", "regex"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .unwrap_or("");
            if m.is_empty() {
                self.issue(&op, "'' is not a valid match type for CORS allow origins");
            } else {
                self.string_match(&op, "corsPolicy.allowOrigins", true);
            }
        }
        for (i, m) in self
            .list_at(&format!("{p}/allowMethods"))
            .iter()
            .enumerate()
        {
            if let Some(m) = m.as_str() {
                self.cors_method(&format!("{p}/allowMethods/{i}"), m);
            }
        }
        for k in ["allowHeaders", "exposeHeaders"] {
            for (i, h) in self.list_at(&format!("{p}/{k}")).iter().enumerate() {
                if let Some(h) = h.as_str() {
                    self.check(&format!("{p}/{k}/{i}"), common::cors_header_name(h));
                }
            }
        }
        let ap = format!("{p}/maxAge");
        self.duration(&ap);
        if self
            .str_at(&ap)
            .and_then(crate::istio::types::parse_go_duration)
            .is_some_and(|d| d.subsec_nanos() != 0)
        {
            self.issue(
                &ap,
                "max_age duration is accurate only to seconds precision",
            );
        }
    }

    fn mirror_percentage(&mut self, p: &str, what: &str) {
        if let Some(v) = self.get(p).and_then(Value::as_f64) {
            if v > 100.0 {
                self.issue(
                    p,
                    format!("{what} must have a max value of 100 (it has {v})"),
                );
            }
            if v < 0.0 {
                self.issue(p, format!("{what} must have a min value of 0 (it has {v})"));
            }
        }
    }

    /// validateHTTPRedirect.
    fn redirect(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        if !["uri", "authority", "scheme"]
            .iter()
            .any(|k| self.set(&format!("{p}/{k}")))
            && !["port", "derivePort"]
                .iter()
                .any(|k| self.get(&format!("{p}/{k}")).is_some())
        {
            self.issue(p, "redirect must specify URI, authority, scheme, or port");
        }
        let cp = format!("{p}/redirectCode");
        if let Some(c) = self.int_at(&cp)
            && c != 0
            && !(300..=399).contains(&c)
        {
            self.issue(
                &cp,
                format!("{c} is not a valid redirect code, must be 3xx"),
            );
        }
        let sp = format!("{p}/scheme");
        if let Some(s) = self.str_at(&sp)
            && !["", "http", "https"].contains(&s)
        {
            self.issue(
                &sp,
                "invalid redirect scheme, must be \"http\" or \"https\"",
            );
        }
        if self.int_at(&format!("{p}/port")).is_some_and(|n| n > 0) {
            self.port_at(&format!("{p}/port"));
        }
        if self.get(&format!("{p}/port")).is_some()
            && self.get(&format!("{p}/derivePort")).is_some()
        {
            self.issue(p, "set only one of port, derivePort");
        }
    }

    /// validateHTTPDirectResponse.
    fn direct_response(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        let bp = format!("{p}/body");
        let size = ["string", "bytes"]
            .iter()
            .filter_map(|k| self.str_at(&format!("{bp}/{k}")))
            .map(str::len)
            .max()
            .unwrap_or(0);
        if size > 1024 * 1024 {
            self.issue(&bp, "large direct_responses may impact control plane performance, must be less than 1MB");
        } else if size > 100 * 1024 {
            self.warn(
                &bp,
                "large direct_responses may impact control plane performance",
            );
        }
        self.http_status(
            &format!("{p}/status"),
            self.int_at(&format!("{p}/status")).unwrap_or(0),
        );
    }

    /// validateHTTPStatus: Istio allows 200 to 600 (its message says 200-599); Envoy
    /// rejects 600 (`http_status` lt 600), so 600 reaches the proxies and is NACKed.
    fn http_status(&mut self, p: &str, n: i64) {
        if !(200..=600).contains(&n) {
            self.issue(p, format!("HTTP status {n} is not in range 200-599"));
        } else if n == 600 {
            self.push(p, Severity::EnvoyRejects, "HTTP status 600: Istio accepts it, but Envoy rejects it (200-599), so the proxies refuse the route configuration; the local mesh cannot run it");
        }
    }

    /// validateHTTPRewrite and validateURIRegexRewrite.
    fn rewrite(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        let rr = format!("{p}/uriRegexRewrite");
        let uri = self.set(&format!("{p}/uri"));
        let regex = self.get(&rr).is_some();
        if uri && regex {
            self.issue(p, "rewrite may only contain one of URI or UriRegexRewrite");
        }
        if !uri && !regex && !self.set(&format!("{p}/authority")) {
            self.issue(p, "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified");
        }
        if regex {
            let m = self.str_at(&format!("{rr}/match")).unwrap_or("");
            if m.is_empty() || !self.set(&format!("{rr}/rewrite")) {
                self.issue(
                    &rr,
                    "UriRegexRewrite requires both Rewrite and Match fields to be specified",
                );
            } else {
                self.check(
                    &format!("{rr}/match"),
                    common::regexp(m, "HTTPRewrite.UriRegexRewrite.Match"),
                );
            }
        }
    }

    /// validateHTTPRouteDestinations (and validateRouteDestinations without `headers`).
    fn http_destinations(&mut self, rp: &str) {
        let Some(ds) = self.get(rp) else { return };
        let Some(list) = ds.as_array() else {
            self.issue(
                rp,
                format!("expected a list of destinations, found {}", json_type(ds)),
            );
            return;
        };
        let mut total: i64 = 0;
        for (i, d) in list.iter().enumerate() {
            let dp = format!("{rp}/{i}");
            if d.get("destination").is_none_or(Value::is_null) {
                self.issue(&format!("{dp}/destination"), "destination is required");
            }
            self.header_ops(&format!("{dp}/headers"));
            self.destination(&format!("{dp}/destination"));
            let wp = format!("{dp}/weight");
            let w = match self.get(&wp) {
                None => 0,
                Some(v) => match v.as_i64() {
                    Some(w) => w,
                    None => {
                        self.issue(&wp, format!("invalid value {v}: weight is an integer >= 0"));
                        0
                    }
                },
            };
            if w < 0 {
                self.issue(&wp, format!("weight {w} < 0"));
            }
            total += w;
        }
        if list.len() > 1 && total == 0 {
            self.issue(rp, "total destination weight = 0");
        }
    }

    /// validateTLSRoute, validateTLSMatch, validateSniHost.
    fn tls_route(&mut self, base: &str, at_gateway: bool, hosts: &[&str]) {
        let mp = format!("{base}/match");
        if !self.set(&mp) {
            self.issue(base, "TLS route must have at least one match condition");
        }
        for (i, _) in self.list_at(&mp).iter().enumerate() {
            let p = format!("{mp}/{i}");
            let sp = format!("{p}/sniHosts");
            if !self.set(&sp) {
                self.issue(&p, "TLS match must have at least one SNI host");
            }
            for (j, s) in self.list_at(&sp).iter().enumerate() {
                let Some(s) = s.as_str() else { continue };
                let hp = format!("{sp}/{j}");
                let r = if at_gateway {
                    wildcard_domain_at_gateway(true, s)
                } else {
                    wildcard_domain(s)
                };
                if let Err(e) = r {
                    if is_ip(s) {
                        self.warn(&hp, format!("using an IP address ({s:?}) goes against SNI spec and most clients do not support this"));
                    } else {
                        self.issue(&hp, e);
                    }
                    continue;
                }
                if !hosts.iter().any(|h| host_subset_of(s, h)) {
                    self.issue(&hp, format!("SNI host {s:?} is not a compatible subset of any of the virtual service hosts: [{}]", hosts.join(", ")));
                }
            }
            self.l4_match(&p);
        }
        if !self.set(&format!("{base}/route")) {
            self.issue(base, "TLS route is required");
        }
        self.http_destinations(&format!("{base}/route"));
    }

    /// validateTCPRoute, validateTCPMatch.
    fn tcp_route(&mut self, base: &str) {
        for (i, _) in self.list_at(&format!("{base}/match")).iter().enumerate() {
            self.l4_match(&format!("{base}/match/{i}"));
        }
        if !self.set(&format!("{base}/route")) {
            self.issue(base, "TCP route is required");
        }
        self.http_destinations(&format!("{base}/route"));
    }

    /// The checks TLS and TCP matches share: subnets, port, source labels, gateways.
    fn l4_match(&mut self, p: &str) {
        for (i, s) in self
            .list_at(&format!("{p}/destinationSubnets"))
            .iter()
            .enumerate()
        {
            if let Some(s) = s.as_str() {
                self.check(&format!("{p}/destinationSubnets/{i}"), ip_subnet(s));
            }
        }
        if self.int_at(&format!("{p}/port")).is_some_and(|n| n != 0) {
            self.port_at(&format!("{p}/port"));
        }
        self.labels(&format!("{p}/sourceLabels"));
        self.gateway_names(&format!("{p}/gateways"));
    }

    /// validatePercentage (`percentage.value`) and the deprecated integer `percent`.
    fn percentage(&mut self, base: &str, integer_percent_allowed: bool) {
        let pp = format!("{base}/percentage");
        if let Some(pv) = self.get(&pp) {
            if !self.expect_type(&pp, pv, "a mapping {value: N}", pv.is_object()) {
                return;
            }
            let vp = format!("{pp}/value");
            match pv.get("value") {
                None => {}
                Some(Value::Number(n)) => {
                    if let Err(e) = Percentage::new(n.as_f64().unwrap_or(f64::NAN)) {
                        self.issue(&vp, e.to_string());
                    }
                }
                Some(other) => {
                    self.issue(
                        &vp,
                        format!(
                            "expected a number from 0.0001 to 100, found {}",
                            json_type(other)
                        ),
                    );
                }
            }
        }
        let ip = format!("{base}/percent");
        if !integer_percent_allowed && self.get(&ip).is_some() {
            self.issue(&ip, "an abort has no `percent` field (Istio drops it and the abort injects nothing): use percentage: {value: N}");
            return;
        }
        if let Some(v) = self.get(&ip) {
            match v.as_i64() {
                Some(n) if (0..=100).contains(&n) => {}
                _ => self.issue(&ip, format!("invalid value {v}: the deprecated `percent` is an integer from 0 to 100; prefer percentage.value")),
            }
        }
    }

    /// validateHTTPFaultInjection (abort and delay).
    fn fault(&mut self, base: &str, fault: &Value) {
        if !self.expect_type(base, fault, "a mapping", fault.is_object()) {
            return;
        }
        let delay = fault.get("delay").filter(|v| !v.is_null());
        let abort = fault.get("abort").filter(|v| !v.is_null());
        if delay.is_none() && abort.is_none() {
            self.issue(
                base,
                "HTTP fault injection must have an abort and/or a delay",
            );
        }
        if let Some(d) = delay {
            let dp = format!("{base}/delay");
            if self.expect_type(&dp, d, "a mapping", d.is_object()) {
                if d.get("exponentialDelay").is_some() {
                    self.duration(&format!("{dp}/exponentialDelay"));
                    self.issue(
                        &format!("{dp}/exponentialDelay"),
                        "exponentialDelay not supported yet (Istio rejects it); use fixedDelay",
                    );
                } else if d.get("fixedDelay").is_none() {
                    // Istio accepts a delay with no type, and TranslateFault drops it.
                    self.warn(&dp, "a delay with no fixedDelay injects nothing (Istio accepts it and drops the delay)");
                }
                self.duration(&format!("{dp}/fixedDelay"));
                self.percentage(&dp, true);
            }
        }
        if let Some(a) = abort {
            let ap = format!("{base}/abort");
            if self.expect_type(&ap, a, "a mapping", a.is_object()) {
                self.percentage(&ap, false);
                let kinds: Vec<&str> = ["httpStatus", "grpcStatus", "http2Error"]
                    .into_iter()
                    .filter(|k| a.get(*k).is_some_and(|v| !v.is_null()))
                    .collect();
                match kinds.as_slice() {
                    // validateHTTPFaultInjectionAbort: only a warning; TranslateFault
                    // then drops the abort.
                    [] => self.warn(&ap, "abort configured, but error type not set: the abort injects nothing (set httpStatus or grpcStatus)"),
                    [_] => {}
                    _ => self.issue(&ap, "set only one of httpStatus, grpcStatus"),
                }
                if a.get("http2Error").is_some() {
                    self.issue(&format!("{ap}/http2Error"), "HTTP/2 abort fault injection not supported yet (Istio rejects http2Error); use httpStatus or grpcStatus");
                }
                if let Some(s) = a.get("httpStatus") {
                    let sp = format!("{ap}/httpStatus");
                    match s.as_i64() {
                        Some(n) => self.http_status(&sp, n),
                        None => self.issue(
                            &sp,
                            format!("invalid value {s}: an integer from 200 to 599 (not a string)"),
                        ),
                    }
                }
                if let Some(g) = a.get("grpcStatus")
                    && let Err(e) = g.as_str().unwrap_or("").parse::<GrpcStatus>()
                {
                    self.issue(
                        &format!("{ap}/grpcStatus"),
                        format!("invalid value {g}: {}", e.allowed),
                    );
                }
            }
        }
    }

    /// validateHTTPRetry, with meshdrill's typed retryOn and attempts.
    fn retries(&mut self, base: &str, r: &Value) {
        if !self.expect_type(base, r, "a mapping", r.is_object()) {
            return;
        }
        // Istio reads a missing `attempts` as 0 and an empty `retryOn` as unset.
        let attempts = match r.get("attempts") {
            None => Some(0),
            Some(v) => match v.as_i64().map(crate::istio::types::attempts) {
                Some(Ok(n)) => Some(i64::from(n)),
                _ => {
                    self.issue(
                        &format!("{base}/attempts"),
                        format!(
                            "invalid value {v}: attempts is an integer from 0 to {}",
                            crate::istio::types::MAX_ATTEMPTS
                        ),
                    );
                    None
                }
            },
        };
        let retry_on_set = r.get("retryOn").is_some_and(|v| v.as_str() != Some(""));
        let others = retry_on_set
            || ["perTryTimeout", "retryRemoteLocalities"]
                .iter()
                .any(|k| r.get(*k).is_some());
        if attempts == Some(0) && others {
            let at = if r.get("attempts").is_some() {
                format!("{base}/attempts")
            } else {
                base.to_string()
            };
            self.issue(&at, "attempts is 0 (missing attempts means 0: no retries) but perTryTimeout, retryOn or retryRemoteLocalities is set: set attempts > 0 or remove them");
        }
        self.duration(&format!("{base}/perTryTimeout"));
        self.duration(&format!("{base}/backoff"));
        if let Some(v) = r.get("retryOn") {
            let p = format!("{base}/retryOn");
            match v.as_str() {
                Some("") => {}
                Some(s) => {
                    if let Err(e) = s.parse::<RetryOn>() {
                        self.issue(&p, e.to_string());
                    }
                }
                None => self.issue(
                    &p,
                    format!(
                        "expected a string such as \"5xx,connect-failure\", found {}",
                        json_type(v)
                    ),
                ),
            }
        }
        if let Some(v) = r.get("retryRemoteLocalities")
            && !v.is_boolean()
        {
            self.issue(
                &format!("{base}/retryRemoteLocalities"),
                "expected true or false",
            );
        }
    }
}
