//! Validation of VirtualService manifests with Istio's rules (FACTS.md), reporting every
//! problem with its file, line, field path, bad value and what is allowed.

use std::fmt;

use serde_json::Value;

use super::manifest::{Document, json_type};
use super::schema;
use super::types::{GrpcStatus, HttpStatus, IstioDuration, Percentage, RetryOn};

/// The VirtualService API versions meshdrill reads.
pub const VS_API_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// `file:line`.
    pub location: String,
    /// `spec.http[0].fault.abort.httpStatus`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.field, self.message)
    }
}

/// Turns `/spec/http/0/fault` into `spec.http[0].fault`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() {
        "(document)".into()
    } else {
        out
    }
}

struct Checker<'a> {
    doc: &'a Document,
    /// Each issue with the pointer of its field.
    issues: Vec<(String, Issue)>,
}

impl Checker<'_> {
    fn issue(&mut self, pointer: &str, message: impl Into<String>) {
        self.issues.push((
            pointer.to_string(),
            Issue {
                location: self.doc.locate(pointer),
                field: dotted(pointer),
                message: message.into(),
            },
        ));
    }

    /// Unknown fields and wrong types (Istio's structural schema): every unknown
    /// field, and each wrong type that a rule above did not already report (on the
    /// field itself or inside it); then every issue in the order of the file.
    fn finish(mut self) -> Vec<Issue> {
        let mut extra = Vec::new();
        for m in schema::check(&self.doc.value, &schema::VIRTUAL_SERVICE) {
            let within = |p: &String| {
                *p == m.pointer
                    || (p.starts_with(&m.pointer)
                        && p.as_bytes().get(m.pointer.len()) == Some(&b'/'))
            };
            if m.unknown || !self.issues.iter().any(|(p, _)| within(p)) {
                extra.push((m.unknown, m.pointer, m.message));
            }
        }
        let found = std::mem::take(&mut self.issues);
        for (_, p, message) in extra.iter().filter(|e| e.0) {
            self.issue(p, message.clone());
        }
        // An unknown field first: it is often why a rule below fails (`attemps`).
        self.issues.extend(found);
        for (_, p, message) in extra.iter().filter(|e| !e.0) {
            self.issue(p, message.clone());
        }
        let doc = self.doc;
        self.issues
            .sort_by_key(|(p, _)| doc.line_of(p).unwrap_or(u64::MAX));
        self.issues.into_iter().map(|(_, i)| i).collect()
    }

    fn get(&self, pointer: &str) -> Option<&Value> {
        self.doc.value.pointer(pointer)
    }

    fn expect_type(&mut self, pointer: &str, v: &Value, want: &str, ok: bool) -> bool {
        if !ok {
            self.issue(pointer, format!("expected {want}, found {}", json_type(v)));
        }
        ok
    }

    /// A duration field: Go syntax, at least 1 ms (Istio's ValidateDuration).
    fn duration(&mut self, p: &str) {
        let Some(v) = self.get(p).cloned() else {
            return;
        };
        let Some(s) = v.as_str() else {
            self.issue(
                p,
                format!(
                    "expected a duration string such as \"2s\", found {}",
                    json_type(&v)
                ),
            );
            return;
        };
        if let Err(e) = s.parse::<IstioDuration>() {
            self.issue(p, e.to_string());
        }
    }

    fn percentage(&mut self, base: &str, integer_percent_allowed: bool) {
        let pp = format!("{base}/percentage");
        if let Some(pv) = self.get(&pp).cloned() {
            if !self.expect_type(&pp, &pv, "a mapping {value: N}", pv.is_object()) {
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
                    let other = other.clone();
                    self.issue(
                        &vp,
                        format!(
                            "expected a number from 0.0001 to 100, found {}",
                            json_type(&other)
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
        if let Some(v) = self.get(&ip).cloned() {
            match v.as_i64() {
                Some(n) if (0..=100).contains(&n) => {}
                _ => self.issue(&ip, format!("invalid value {v}: the deprecated `percent` is an integer from 0 to 100; prefer percentage.value")),
            }
        }
    }

    fn fault(&mut self, base: &str, fault: &Value) {
        if !self.expect_type(base, fault, "a mapping", fault.is_object()) {
            return;
        }
        let delay = fault.get("delay").cloned();
        let abort = fault.get("abort").cloned();
        if delay.is_none() && abort.is_none() {
            self.issue(base, "a fault needs a delay or an abort");
        }
        if let Some(d) = delay {
            let dp = format!("{base}/delay");
            if self.expect_type(&dp, &d, "a mapping", d.is_object()) {
                if d.get("exponentialDelay").is_some() {
                    self.issue(
                        &format!("{dp}/exponentialDelay"),
                        "exponentialDelay is not supported by Istio; use fixedDelay",
                    );
                }
                if d.get("fixedDelay").is_none() {
                    self.issue(&dp, "fixedDelay is required (a duration such as \"2s\")");
                }
                self.duration(&format!("{dp}/fixedDelay"));
                self.percentage(&dp, true);
            }
        }
        if let Some(a) = abort {
            let ap = format!("{base}/abort");
            if self.expect_type(&ap, &a, "a mapping", a.is_object()) {
                if a.get("http2Error").is_some() {
                    self.issue(
                        &format!("{ap}/http2Error"),
                        "http2Error is not supported by Istio; use httpStatus or grpcStatus",
                    );
                }
                let kinds = ["httpStatus", "grpcStatus", "http2Error"]
                    .iter()
                    .filter(|k| a.get(**k).is_some())
                    .count();
                if kinds == 0 {
                    self.issue(&ap, "an abort needs httpStatus (200-599) or grpcStatus");
                } else if kinds > 1 {
                    self.issue(&ap, "set only one of httpStatus, grpcStatus");
                }
                if let Some(s) = a.get("httpStatus") {
                    let r = match s.as_i64() {
                        Some(n) => HttpStatus::new(n).map(|_| ()),
                        None => Err(super::types::ValueError {
                            value: s.to_string(),
                            allowed: "an integer from 200 to 599 (not a string)".into(),
                        }),
                    };
                    if let Err(e) = r {
                        self.issue(
                            &format!("{ap}/httpStatus"),
                            format!("invalid value {s}: {}", e.allowed),
                        );
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
                self.percentage(&ap, false);
            }
        }
    }

    fn retries(&mut self, base: &str, r: &Value) {
        if !self.expect_type(base, r, "a mapping", r.is_object()) {
            return;
        }
        // Istio reads a missing `attempts` as 0 and an empty `retryOn` as unset.
        let attempts = match r.get("attempts") {
            None => Some(0),
            Some(v) => match v.as_i64().map(super::types::attempts) {
                Some(Ok(n)) => Some(i64::from(n)),
                _ => {
                    self.issue(
                        &format!("{base}/attempts"),
                        format!(
                            "invalid value {v}: attempts is an integer from 0 to {}",
                            super::types::MAX_ATTEMPTS
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

    fn route(&mut self, base: &str, route: &Value) {
        if !self.expect_type(base, route, "a mapping", route.is_object()) {
            return;
        }
        if let Some(n) = route.get("name")
            && !n.is_string()
        {
            self.issue(&format!("{base}/name"), "expected a string");
        }
        let has_target = ["redirect", "directResponse", "delegate"]
            .iter()
            .any(|k| route.get(*k).is_some())
            || route
                .get("route")
                .is_some_and(|r| r.as_array().is_none_or(|a| !a.is_empty()));
        if !has_target {
            self.issue(
                base,
                "an HTTP route needs at least one route destination, or a redirect, directResponse or delegate",
            );
        }
        if let Some(ds) = route.get("route") {
            let rp = format!("{base}/route");
            if let Some(list) = ds.as_array() {
                for (i, d) in list.iter().enumerate() {
                    let dp = format!("{rp}/{i}");
                    match d.pointer("/destination/host") {
                        Some(Value::String(h)) if !h.is_empty() => {}
                        Some(h) if !h.is_string() && !h.is_null() => {
                            let h = h.clone();
                            self.issue(
                                &format!("{dp}/destination/host"),
                                format!(
                                    "expected a string (a service host name such as \"reviews\"), found {}",
                                    json_type(&h)
                                ),
                            )
                        }
                        _ => self.issue(
                            &format!("{dp}/destination/host"),
                            "each destination needs a host",
                        ),
                    }
                    if let Some(w) = d.get("weight")
                        && !w
                            .as_i64()
                            .is_some_and(|w| (0..=i64::from(i32::MAX)).contains(&w))
                    {
                        self.issue(
                            &format!("{dp}/weight"),
                            format!("invalid value {w}: weight is an integer >= 0"),
                        );
                    }
                }
            } else {
                self.issue(
                    &rp,
                    format!("expected a list of destinations, found {}", json_type(ds)),
                );
            }
        }
        if let Some(m) = route.get("match")
            && !m.is_array()
        {
            self.issue(
                &format!("{base}/match"),
                "expected a list of match conditions",
            );
        }
        self.duration(&format!("{base}/timeout"));
        if let Some(r) = route.get("retries") {
            self.retries(&format!("{base}/retries"), r);
        }
        if let Some(f) = route.get("fault") {
            self.fault(&format!("{base}/fault"), f);
        }
    }
}

/// Validates one VirtualService document; an empty result means Istio would accept it
/// (for the fields meshdrill knows).
pub fn validate_virtual_service(doc: &Document) -> Vec<Issue> {
    let mut c = Checker {
        doc,
        issues: Vec::new(),
    };
    let v = &doc.value;
    let api = doc.api_version();
    if !VS_API_VERSIONS.contains(&api) {
        c.issue(
            "/apiVersion",
            format!(
                "unsupported apiVersion {api:?}: use one of {}",
                VS_API_VERSIONS.join(", ")
            ),
        );
    }
    match v.pointer("/metadata/name") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => c.issue("/metadata/name", "metadata.name is required"),
    }
    let Some(spec) = v.get("spec") else {
        c.issue("/spec", "spec is required");
        return c.finish();
    };
    if !c.expect_type("/spec", spec, "a mapping", spec.is_object()) {
        return c.finish();
    }
    match spec.get("hosts") {
        Some(Value::Array(h)) if !h.is_empty() => {
            for (i, host) in h.iter().enumerate() {
                if host.as_str().is_none_or(|s| s.is_empty()) {
                    c.issue(
                        &format!("/spec/hosts/{i}"),
                        "each host is a non-empty string",
                    );
                }
            }
        }
        // No hosts: a delegate VirtualService (Istio accepts it; it is used from another).
        None => {}
        Some(Value::Array(_)) => {}
        Some(other) => {
            let t = json_type(other);
            c.issue(
                "/spec/hosts",
                format!("expected a list of hosts, found {t}"),
            );
        }
    }
    if let Some(g) = spec.get("gateways")
        && !g.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        c.issue("/spec/gateways", "expected a list of gateway names");
    }
    if ["http", "tcp", "tls"]
        .iter()
        .all(|k| spec.get(*k).is_none())
    {
        c.issue("/spec", "http, tcp or tls routes are required");
    }
    if let Some(http) = spec.get("http") {
        match http.as_array() {
            Some(routes) => {
                for (i, r) in routes.iter().enumerate() {
                    c.route(&format!("/spec/http/{i}"), r);
                }
            }
            None => c.issue(
                "/spec/http",
                format!("expected a list of routes, found {}", json_type(http)),
            ),
        }
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::istio::manifest::{Source, parse_str};

    fn issues(src: &str) -> Vec<Issue> {
        let docs = parse_str(src, Source("vs.yaml".into())).expect("parse");
        validate_virtual_service(&docs[0])
    }

    const HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n";

    #[test]
    fn a_good_route_passes() {
        let src = format!(
            "{HEAD}    fault:\n      abort: {{httpStatus: 503, percentage: {{value: 50}}}}\n      delay: {{fixedDelay: 2s, percent: 10}}\n    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: '5xx,connect-failure,503'}}\n    timeout: 10s\n"
        );
        assert_eq!(issues(&src), vec![]);
    }

    #[test]
    fn bad_values_name_line_field_and_rule() {
        let src = format!(
            "{HEAD}    fault:\n      abort:\n        httpStatus: 600\n        percentage: {{value: 101}}\n    retries: {{attempts: 0, retryOn: '5xx, reset'}}\n    timeout: 1.5ms\n"
        );
        let got = issues(&src);
        let text: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t
                .starts_with("vs.yaml:11: spec.http[0].fault.abort.httpStatus: invalid value 600")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("vs.yaml:12: spec.http[0].fault.abort.percentage.value")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("spec.http[0].retries.attempts: attempts is 0")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("retryOn") && t.contains("spaces")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t.contains("spec.http[0].timeout")),
            "{text:#?}"
        );
    }

    #[test]
    fn unsupported_istio_fields() {
        let src = format!(
            "{HEAD}    fault:\n      abort: {{http2Error: REFUSED_STREAM}}\n      delay: {{exponentialDelay: 1s}}\n"
        );
        let text: Vec<String> = issues(&src).iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("http2Error is not supported")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("exponentialDelay is not supported")),
            "{text:#?}"
        );
    }

    #[test]
    fn rules_checked_against_istio_sources() {
        let route = |extra: &str| format!("{HEAD}{extra}");
        let has = |src: String, needle: &str| {
            let text: Vec<String> = issues(&src).iter().map(ToString::to_string).collect();
            assert!(
                text.iter().any(|t| t.contains(needle)),
                "{needle:?} in {text:#?}"
            );
        };
        let clean = |src: String| assert_eq!(issues(&src), vec![], "{src}");
        has(route("    timeout: 0s\n"), "spec.http[0].timeout");
        has(
            route("    retries: {retryOn: 5xx}\n"),
            "missing attempts means 0",
        );
        clean(route("    retries: {attempts: 0, retryOn: ''}\n"));
        clean(route("    retries: {attempts: 2, retryOn: ''}\n"));
        has(
            route("    retries: {attempts: 2, retryOn: '5xx,599'}\n"),
            "retryOn",
        );
        has(
            route("    retries: {attempts: 2, backoff: 0.5ms}\n"),
            "retries.backoff",
        );
        has(
            route("    fault: {abort: {httpStatus: 503, percent: 50}}\n"),
            "abort has no `percent`",
        );
        clean(route("    fault: {delay: {fixedDelay: 1s, percent: 50}}\n"));
        has(
            route("    fault: {abort: {httpStatus: '503', percentage: {value: 5}}}\n"),
            "not a string",
        );
        has(
            route("    retries: {attempts: 3000000000}\n"),
            "attempts is an integer",
        );
        let weights = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: 900\n    - destination: {host: b}\n      weight: 100\n";
        clean(weights.to_string());
        let empty = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route: []\n";
        has(empty.to_string(), "at least one route destination");
        let delegate = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  http:\n  - route:\n    - destination: {host: a}\n";
        clean(delegate.to_string());
    }

    #[test]
    fn dotted_paths() {
        assert_eq!(dotted("/spec/http/0/fault"), "spec.http[0].fault");
        assert_eq!(
            dotted("/metadata/annotations/meshdrill.io~1drill"),
            "metadata.annotations.meshdrill.io/drill"
        );
    }
}
