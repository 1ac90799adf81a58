//! Rules shared by the kinds: host names (DNS-1123, wildcards, IPs), ports, durations,
//! label maps, `exportTo`, workload selectors, gateway names, destinations, header names
//! and values, string matches and RE2 regexes — each as Istio 1.26 writes it
//! (`pkg/config/validation/validation.go`, `agent/validation.go`,
//! `header_value_validator.go`, `pkg/config/labels`, `pkg/config/host`).

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::Checker;
use crate::istio::manifest::escape_pointer;
use crate::istio::types::{IstioDuration, parse_go_duration};

// === names ===

const DNS1123_LABEL: &str = "[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?";
const QUALIFIED_NAME: &str = "(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

fn re(src: &str) -> Regex {
    // The patterns are constants of this file (covered by the unit tests).
    Regex::new(src).unwrap_or_else(|_| Regex::new("$^").expect("empty regex"))
}

static LABEL_RE: LazyLock<Regex> = LazyLock::new(|| re(&format!("^{DNS1123_LABEL}$")));
static WILDCARD_LABEL_RE: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"^(\*|(\*|\*-)?{DNS1123_LABEL})$")));
static TAG_KEY_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"^({DNS1123_LABEL}(?:\.{DNS1123_LABEL})*/)?({QUALIFIED_NAME})$"
    ))
});
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| re(&format!("^({QUALIFIED_NAME})?$")));
/// RFC 7230 token characters (validHeaderNameRegex).
static HEADER_NAME_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$"));

/// labels.IsDNS1123Label.
pub(super) fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && LABEL_RE.is_match(s)
}

/// agent.ValidateDNS1123Labels: each label valid, the last not all digits.
fn dns1123_labels(domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts.last().copied().unwrap_or("");
    // Go's strconv.Atoi: an optional sign and digits, in 64 bits.
    if tld.parse::<i64>().is_ok() {
        return Err(format!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        // The last label may be empty (`istio.io.`).
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

fn dns1123_preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    Ok(())
}

/// agent.ValidateFQDN.
pub(super) fn fqdn(name: &str) -> Result<(), String> {
    dns1123_preconditions(name)?;
    dns1123_labels(name)
}

/// agent.ValidateWildcardDomain: a DNS name whose first label may be `*`, `*foo` or
/// `*-foo`.
pub(super) fn wildcard_domain(domain: &str) -> Result<(), String> {
    dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !(first.len() <= 63 && WILDCARD_LABEL_RE.is_match(first)) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => dns1123_labels(r),
        None => Ok(()),
    }
}

/// agent.ValidateWildcardDomainForVirtualServiceBoundToGateway: also takes the
/// `outbound_.<PORT>_._.<HOSTNAME>` SNI form of AUTO_PASSTHROUGH gateways.
pub(super) fn wildcard_domain_at_gateway(sni: bool, domain: &str) -> Result<(), String> {
    dns1123_preconditions(domain)?;
    if sni && domain.starts_with("outbound_") {
        let parts: Vec<&str> = domain.split('_').collect();
        let format = "outbound_.<PORT>_._.<HOSTNAME>";
        if parts.len() < 4 {
            return Err(format!(
                "domain name {domain} invalid, should follow '{format}' format"
            ));
        }
        let port = parts[1].trim_matches('.');
        let host = parts[3].trim_matches('.');
        if !port.bytes().any(|b| b.is_ascii_digit()) {
            return Err(format!(
                "domain name {domain:?} invalid (label {port:?} invalid). should follow {format} format"
            ));
        }
        if !host.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "domain name {domain:?} invalid (label {host:?} invalid). should follow {format} format"
            ));
        }
        return Ok(());
    }
    wildcard_domain(domain)
}

/// netutil.IsValidIPAddress.
pub(super) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// agent.ValidateIPSubnet: `a.b.c.d/nn`, `2001:1::1/64` or a bare address.
pub(super) fn ip_subnet(s: &str) -> Result<(), String> {
    if s.matches('/').count() == 1 {
        let ok = s.split_once('/').is_some_and(|(ip, bits)| {
            let max = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
        });
        return if ok {
            Ok(())
        } else {
            Err(format!("{s} is not a valid CIDR block"))
        };
    }
    if is_ip(s) {
        Ok(())
    } else {
        Err(format!("{s} is not a valid IP"))
    }
}

/// host.Name.Matches: equal, or one wildcard covers the other.
pub(super) fn hosts_match(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => {
            if a.len() < b.len() {
                sb.ends_with(sa)
            } else {
                sa.ends_with(sb)
            }
        }
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

pub(super) use crate::istio::spec::host_subset_of;

/// agent.ValidatePort.
pub(super) fn port(n: i64) -> Result<(), String> {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err(format!("port number {n} must be in the range 1..65535"))
    }
}

// === headers ===

/// jwt.ToRoutingClaim(name).Match: `@request.auth.claims.x` or `@request.auth.claims[x]`.
pub(super) fn is_jwt_claim(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    let Some(rest) = name
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .and_then(|_| name.get(PREFIX.len()..))
    else {
        return false;
    };
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// ValidateHTTPHeaderNameOrJwtClaimRoute: match keys: a token, a JWT claim, or one of
/// the HTTP/2 pseudo-headers.
pub(super) fn match_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_jwt_claim(name)
        || [":method", ":scheme", ":authority", ":path", ":status"].contains(&name)
        || HEADER_NAME_RE.is_match(name)
    {
        return Ok(());
    }
    Err(format!("header name {name} is not a valid header name"))
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// isAuthorityHeader.
pub(super) fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// ValidateHTTPHeaderWithAuthorityOperationName: request `set`/`add` may name
/// `:authority` or `host`, no other `:` header.
pub(super) fn header_set_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_internal_header(name) && !is_authority_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// ValidateHTTPHeaderOperationName: request `remove` and every response operation.
pub(super) fn header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if is_internal_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// ValidateCORSHTTPHeaderName.
pub(super) fn cors_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name == "*" || HEADER_NAME_RE.is_match(name) {
        return Ok(());
    }
    Err(format!("header name {name} is not a valid header name"))
}

/// ValidateHTTPHeaderValue: no control characters but tab, and Envoy's `%VAR%`
/// syntax well formed (validateHeaderValue, a port of Envoy's parser).
pub(super) fn header_value(value: &str) -> Result<(), String> {
    if value
        .chars()
        .any(|c| matches!(c, '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}'))
    {
        return Err(format!("header value configuration {value} is invalid"));
    }
    envoy_header_format(value).map_err(|e| format!("header value configuration: {e}"))
}

fn envoy_header_format(v: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum S {
        Literal,
        VarName,
        ExpectArray,
        ExpectString,
        InString,
        ExpectDelimOrEnd,
        ExpectArgsEnd,
        ExpectVarEnd,
    }
    let b = v.as_bytes();
    let mut s = S::Literal;
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        let has_next = i + 1 < b.len();
        match s {
            S::Literal => {
                if ch == b'%' {
                    if !has_next {
                        return Err("invalid header configuration. Un-escaped %".into());
                    }
                    if b[i + 1] == b'%' {
                        i += 1;
                    } else {
                        s = S::VarName;
                    }
                }
            }
            S::VarName => {
                if ch == b'%' {
                    s = S::Literal;
                } else if ch == b'(' {
                    s = S::ExpectArray;
                }
            }
            S::ExpectArray => {
                if ch == b'[' {
                    s = S::ExpectString;
                } else if ch != b' ' {
                    s = S::InString;
                }
            }
            S::ExpectDelimOrEnd => {
                if ch == b',' {
                    s = S::ExpectString;
                } else if ch == b']' {
                    s = S::ExpectArgsEnd;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting ',', ']', or whitespace".into(),
                    );
                }
            }
            S::ExpectString => {
                if ch == b'"' {
                    s = S::InString;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting '\"'".into());
                }
            }
            S::InString => {
                if ch == b'\\' {
                    if !has_next {
                        return Err(
                            "invalid header configuration. Un-terminated backslash in JSON string"
                                .into(),
                        );
                    }
                    i += 1;
                } else if ch == b')' {
                    s = S::ExpectVarEnd;
                } else if ch == b'"' {
                    s = S::ExpectDelimOrEnd;
                }
            }
            S::ExpectArgsEnd => {
                if ch == b')' {
                    s = S::ExpectVarEnd;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting ')' or whitespace".into());
                }
            }
            S::ExpectVarEnd => {
                if ch == b'%' {
                    s = S::Literal;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting '%' or whitespace after".into(),
                    );
                }
            }
        }
        i += 1;
    }
    if s != S::Literal {
        return Err(format!(
            "invalid header configuration. Un-terminated variable expression '{v}'"
        ));
    }
    Ok(())
}

/// validateStringRegexp: at most 1024 characters and an RE2 regex (checked with
/// Rust's `regex`, which takes RE2 syntax).
pub(super) fn regexp(re: &str, wh: &str) -> Result<(), String> {
    if re.len() > 1024 {
        return Err(format!(
            "{wh:?}: regex is too large, max length allowed is 1024"
        ));
    }
    Regex::new(re).map(|_| ()).map_err(|e| {
        let e = e.to_string().lines().last().unwrap_or_default().to_string();
        format!("{wh:?}: invalid regex {re:?} ({e}); Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)")
    })
}

/// The Istio 1.26 CORS methods (Go's net/http method names, and `*`).
const CORS_METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

// === impl Checker ===

impl Checker<'_> {
    /// Reports `r` at `p` as an error.
    pub(super) fn check(&mut self, p: &str, r: Result<(), String>) {
        if let Err(e) = r {
            self.issue(p, e);
        }
    }

    /// A duration field (agent.ValidateDuration): Go syntax, at least 1 ms, whole ms.
    pub(super) fn duration(&mut self, p: &str) {
        let Some(v) = self.get(p) else {
            return;
        };
        let Some(s) = v.as_str() else {
            self.issue(
                p,
                format!(
                    "expected a duration string such as \"2s\", found {}",
                    crate::istio::manifest::json_type(v)
                ),
            );
            return;
        };
        if let Err(e) = s.parse::<IstioDuration>() {
            self.issue(p, e.to_string());
        }
    }

    /// A duration where `0s` means "disabled" (tcp.idleTimeout).
    pub(super) fn duration_or_zero(&mut self, p: &str) {
        if self
            .str_at(p)
            .and_then(parse_go_duration)
            .is_some_and(|d| d.as_millis() == 0)
        {
            return;
        }
        self.duration(p);
    }

    /// An integer field that must be >= 0.
    pub(super) fn non_negative(&mut self, p: &str, what: &str) {
        if let Some(n) = self.int_at(p)
            && n < 0
        {
            self.issue(p, format!("invalid value {n}: {what} must be non-negative"));
        }
    }

    /// ValidatePercent: an integer from 0 to 100.
    pub(super) fn percent_int(&mut self, p: &str) {
        if let Some(n) = self.int_at(p)
            && !(0..=100).contains(&n)
        {
            self.issue(p, format!("percentage {n} is not in range 0..100"));
        }
    }

    /// A number field from `min` to `max` (the CRD's kubebuilder Minimum/Maximum).
    pub(super) fn number_range(&mut self, p: &str, min: f64, max: f64) {
        if let Some(n) = self.get(p).and_then(Value::as_f64)
            && !(min..=max).contains(&n)
        {
            self.issue(p, format!("invalid value {n}: must be from {min} to {max}"));
        }
    }

    /// A port number (agent.ValidatePort), when set; a missing one is 0 (proto3). A
    /// value that is not a `uint32` is left to the schema check.
    pub(super) fn port_at(&mut self, p: &str) {
        match self.get(p) {
            None => self.check(p, port(0)),
            Some(v) => {
                if let Some(n) = v.as_i64().filter(|n| (0..=i64::from(u32::MAX)).contains(n)) {
                    self.check(p, port(n));
                }
            }
        }
    }

    /// labels.Instance.Validate: Kubernetes label keys and values.
    pub(super) fn labels(&mut self, p: &str) {
        let Some(m) = self.get(p).and_then(Value::as_object) else {
            return;
        };
        for (k, v) in m {
            let kp = format!("{p}/{}", escape_pointer(k));
            match TAG_KEY_RE.captures(k) {
                None => self.issue(&kp, format!("invalid tag key: {k:?}")),
                Some(c) => {
                    if c.get(1).is_some_and(|m| m.as_str().len() - 1 > 253) {
                        self.issue(
                            &kp,
                            format!("invalid tag key: {k:?} (DNS prefix is too long)"),
                        );
                    }
                    if c.get(2).is_some_and(|m| m.as_str().len() > 63) {
                        self.issue(&kp, format!("invalid tag key: {k:?} (name is too long)"));
                    }
                }
            }
            if let Some(v) = v.as_str()
                && !LABEL_VALUE_RE.is_match(v)
            {
                self.issue(&kp, format!("invalid tag value: {v:?}"));
            }
        }
    }

    /// validateExportTo: `.`, `*` or namespace names, no duplicates, `*` alone; a
    /// DestinationRule with a workload selector only to its own namespace.
    pub(super) fn export_to(&mut self, p: &str, namespace: &str, dr_with_selector: bool) {
        let list = self.list_at(p);
        if list.is_empty() {
            return;
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let Some(e) = e.as_str() else { continue };
            let ep = format!("{p}/{i}");
            let key = if e == "." { namespace } else { e };
            if seen.contains(&key) {
                if key != e {
                    self.issue(
                        &ep,
                        format!(
                            "duplicate entries in exportTo: . and current namespace {namespace}"
                        ),
                    );
                } else {
                    self.issue(&ep, format!("duplicate entries in exportTo for entry {e}"));
                }
            } else if key == "~" {
                self.issue(
                    &ep,
                    "exportTo ~ (none) is not allowed for Istio configuration objects",
                );
            } else if key != "*" && key != "." && !is_dns1123_label(key) {
                self.issue(
                    &ep,
                    "only .,*, or a valid DNS 1123 label is allowed as exportTo entry",
                );
            } else {
                seen.push(key);
            }
        }
        if dr_with_selector && !seen.is_empty() {
            if seen.contains(&namespace) {
                if seen.len() > 1 {
                    self.issue(p, "destination rule with workload selector cannot have multiple entries in exportTo");
                }
            } else {
                self.issue(p, "destination rule with workload selector cannot have exportTo beyond current namespace");
            }
        }
        if seen.contains(&"*") && list.len() > 1 {
            self.issue(
                p,
                "cannot have both public (*) and non-public exportTo values for a resource",
            );
        }
    }

    /// validateWorkloadSelector: no empty key, no `*`; no labels is a warning.
    pub(super) fn workload_selector(&mut self, p: &str) {
        let Some(sel) = self.get(p) else { return };
        let labels = sel.get("matchLabels").and_then(Value::as_object);
        for (k, v) in labels.into_iter().flatten() {
            let kp = format!("{p}/matchLabels/{}", escape_pointer(k));
            let v = v.as_str().unwrap_or("");
            if k.is_empty() {
                self.issue(
                    &kp,
                    format!("empty key is not supported in selector: \"{k}={v}\""),
                );
            }
            if k.contains('*') || v.contains('*') {
                self.issue(
                    &kp,
                    format!("wildcard is not supported in selector: \"{k}={v}\""),
                );
            }
        }
        if labels.is_none_or(|l| l.is_empty()) {
            self.warn(p, "workload selector specified without labels");
        }
    }

    /// validateGatewayNames: `namespace/name` (DNS labels), or the legacy FQDN form
    /// (a warning). Like Istio, checking stops at the first name without a `/`.
    pub(super) fn gateway_names(&mut self, p: &str) {
        for (i, g) in self.list_at(p).iter().enumerate() {
            let Some(g) = g.as_str() else { continue };
            let gp = format!("{p}/{i}");
            let Some((ns, name)) = g.split_once('/') else {
                if let Some((a, b)) = g.split_once('.') {
                    let b = b.split('.').next().unwrap_or("");
                    self.warn(&gp, format!("using legacy gatewayName format {g:?}; prefer the <namespace>/<name> format: \"{b}/{a}\""));
                }
                self.check(&gp, fqdn(g));
                return;
            };
            if ns.is_empty() || name.is_empty() {
                self.issue(&gp, "config namespace and gateway name cannot be empty");
            }
            if !is_dns1123_label(ns) {
                self.issue(&gp, format!("invalid value for namespace: {ns:?}"));
            }
            if !is_dns1123_label(name) {
                self.issue(&gp, format!("invalid value for gateway name: {name:?}"));
            }
        }
    }

    /// validateDestination: a host (not `*`), a subset name that is a DNS label, a
    /// port from 1 to 65535.
    pub(super) fn destination(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        let hp = format!("{p}/host");
        let host = self.str_at(&hp).unwrap_or("");
        if host == "*" {
            self.issue(&hp, format!("invalid destination host {host}"));
        } else if self.get(&hp).is_none_or(Value::is_string) {
            let r = wildcard_domain(host);
            self.check(&hp, r.map_err(|e| format!("{e} (a service host name such as \"reviews\" or \"reviews.default.svc.cluster.local\")")));
        }
        let sp = format!("{p}/subset");
        if let Some(s) = self.str_at(&sp)
            && !s.is_empty()
            && !is_dns1123_label(s)
        {
            self.issue(&sp, format!("subset name is invalid: {s}"));
        }
        if self.get(&format!("{p}/port")).is_some() {
            self.port_at(&format!("{p}/port/number"));
        }
    }

    /// Header operations (`headers: {request, response}`) on a route or a destination
    /// (validateHTTPRoute, validateHTTPRouteDestinations).
    pub(super) fn header_ops(&mut self, p: &str) {
        for dir in ["request", "response"] {
            for op in ["set", "add"] {
                let mp = format!("{p}/{dir}/{op}");
                let Some(m) = self.get(&mp).and_then(Value::as_object) else {
                    continue;
                };
                for (k, v) in m {
                    let kp = format!("{mp}/{}", escape_pointer(k));
                    let name = if dir == "request" {
                        header_set_name(k)
                    } else {
                        header_op_name(k)
                    };
                    self.check(&kp, name);
                    if let Some(v) = v.as_str() {
                        self.check(&kp, header_value(v));
                    }
                }
            }
            let rp = format!("{p}/{dir}/remove");
            for (i, k) in self.list_at(&rp).iter().enumerate() {
                if let Some(k) = k.as_str() {
                    self.check(&format!("{rp}/{i}"), header_op_name(k));
                }
            }
        }
    }

    /// validateStringMatch: a `prefix` may not be empty, a `regex` must compile.
    /// With `uri_rules` (validateStringMatchRegexp, for `uri`), only the regex.
    pub(super) fn string_match(&mut self, p: &str, wh: &str, uri_rules: bool) {
        if !uri_rules && self.str_at(&format!("{p}/prefix")) == Some("") {
            self.issue(
                &format!("{p}/prefix"),
                format!("{wh:?}: prefix string match should not be empty (to match any value, drop the match or use regex: \".*\")"),
            );
        }
        let rp = format!("{p}/regex");
        if let Some(re) = self.str_at(&rp) {
            if re.is_empty() {
                self.issue(
                    &rp,
                    format!("{wh:?}: regex string match should not be empty"),
                );
            } else {
                self.check(&rp, regexp(re, wh));
            }
        }
        let set = ["exact", "prefix", "regex"]
            .iter()
            .filter(|k| self.get(&format!("{p}/{k}")).is_some())
            .count();
        if set > 1 {
            self.issue(p, "set only one of exact, prefix, regex");
        }
    }

    /// A CORS method (validateCORSHTTPMethod).
    pub(super) fn cors_method(&mut self, p: &str, m: &str) {
        if !CORS_METHODS.contains(&m) {
            self.issue(p, format!("{m:?} is not a supported HTTP method"));
        }
    }
}
