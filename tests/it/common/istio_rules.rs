//! Istio's validation (pkg/config/validation, Istio 1.26) and the API server's schema
//! for the VirtualService fields meshdrill writes, written down independently of
//! meshdrill's code (FACTS.md "What Istio's validation accepts"). One oracle for two
//! users: the fake API server's `validation.istio.io` webhook ([`webhook_problems`],
//! with Istio's own messages) and the tests that judge meshdrill's output by Istio's
//! rules rather than by meshdrill's validator ([`virtual_service`]).

use serde_json::Value;

/// Envoy's retry-on policies Istio accepts (`supportedRetryOnPolicies`).
pub const RETRY_ON: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// gRPC status names a fault may abort with.
pub const GRPC: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The codes Go's `http.StatusText` names (net/http status.go): a number in `retryOn`
/// is valid only when it is one of these (`strconv.Atoi`, so `0503` is 503).
fn defined_status(c: i64) -> bool {
    matches!(c, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

/// One token of `retryOn`, as validateHTTPRetry: a defined HTTP status code, or a
/// supported policy (no trimming: `5xx, reset` fails on " reset").
pub fn retry_on_token(tok: &str) -> bool {
    match tok.parse::<i64>() {
        Ok(c) => defined_status(c),
        Err(_) => RETRY_ON.contains(&tok),
    }
}

/// A Go duration (`1h2m3.5s`, `150ms`, `0`) in nanoseconds, as `time.ParseDuration`.
pub fn go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * unit;
    }
    Some(if neg { -total } else { total })
}

/// `ValidateDuration` of a duration field (an unparseable one fails decoding first).
fn duration_problem(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?;
    let Some(ns) = go_duration(s) else {
        return Some(format!(
            "error decoding configuration: bad Duration: time: invalid duration {s:?}"
        ));
    };
    if ns < 1e6 {
        Some("duration must be greater than 1ms".into())
    } else if ns % 1e6 != 0.0 {
        Some("only durations to ms precision are supported".into())
    } else {
        None
    }
}

fn percentage_problem(holder: &Value) -> Option<String> {
    let v = holder.pointer("/percentage/value")?.as_f64()?;
    (!(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001))
        .then(|| format!("percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"))
}

/// What Istio's webhook finds wrong in the routes (faults, retries, timeout).
pub fn webhook_problems(obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let routes = obj.pointer("/spec/http").and_then(Value::as_array);
    for r in routes.into_iter().flatten() {
        if let Some(a) = r.pointer("/fault/abort") {
            out.extend(percentage_problem(a));
            if let Some(s) = a.get("httpStatus").and_then(Value::as_i64)
                && !(200..=600).contains(&s)
            {
                out.push(format!("HTTP status {s} is not in range 200-599"));
            }
        }
        if let Some(d) = r.pointer("/fault/delay") {
            out.extend(percentage_problem(d));
            if let Some(p) = d.get("percent").and_then(Value::as_i64)
                && !(0..=100).contains(&p)
            {
                out.push(format!("percentage {p} is not in range 0..100"));
            }
            out.extend(duration_problem(d.get("fixedDelay")));
        }
        if let Some(x) = r.get("retries") {
            let attempts = x.get("attempts").and_then(Value::as_i64).unwrap_or(0);
            if attempts < 0 {
                out.push("attempts cannot be negative".into());
            }
            if attempts == 0
                && (x.get("perTryTimeout").is_some()
                    || x.get("retryOn")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                    || x.get("retryRemoteLocalities").is_some())
            {
                out.push(
                    "http retry policy configured when attempts are set to 0 (disabled)".into(),
                );
            }
            out.extend(duration_problem(x.get("perTryTimeout")));
            let on = x.get("retryOn").and_then(Value::as_str).unwrap_or("");
            for policy in on.split(',').filter(|_| !on.is_empty()) {
                if !retry_on_token(policy) {
                    out.push(format!("{policy:?} is not a valid retryOn policy"));
                }
            }
        }
        out.extend(duration_problem(r.get("timeout")));
    }
    out
}

/// A field the schema types as a string (a duration, say) holds one.
fn string(v: Option<&Value>, at: &str, out: &mut Vec<String>) {
    if let Some(v) = v.filter(|v| !v.is_string()) {
        out.push(format!("{at}: {v} is not a string"));
    }
}

fn known(v: &Value, keys: &[&str], at: &str, out: &mut Vec<String>) {
    match v.as_object() {
        Some(m) => {
            for k in m.keys().filter(|k| !keys.contains(&k.as_str())) {
                out.push(format!("{at}.{k}: unknown field"));
            }
        }
        None => out.push(format!("{at}: {v} is not an object")),
    }
}

/// `percentage: {value: <double>}` (its range is the webhook's).
fn percentage(v: Option<&Value>, at: &str, out: &mut Vec<String>) {
    let Some(v) = v else { return };
    known(v, &["value"], at, out);
    if !v.get("value").is_some_and(Value::is_number) {
        out.push(format!("{at}.value: {v} is not a number"));
    }
}

/// Everything the API server (schema: field names and types) and Istio's webhook
/// ([`webhook_problems`]: values) would reject in `vs`; empty when both accept it.
pub fn virtual_service(vs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let api = vs["apiVersion"].as_str().unwrap_or("");
    if ![
        "networking.istio.io/v1",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1alpha3",
    ]
    .contains(&api)
        || vs["kind"] != "VirtualService"
    {
        out.push(format!("apiVersion/kind: {api} {}", vs["kind"]));
    }
    if !vs.pointer("/metadata/name").is_some_and(Value::is_string) {
        out.push("metadata.name: missing".into());
    }
    // ObjectMeta: annotations map strings to strings.
    if let Some(a) = vs.pointer("/metadata/annotations")
        && !a
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
    {
        out.push(format!("metadata.annotations: {a} is not a map of strings"));
    }
    if !vs
        .pointer("/spec/hosts")
        .and_then(Value::as_array)
        .is_some_and(|h| !h.is_empty() && h.iter().all(Value::is_string))
    {
        out.push("spec.hosts: must be a non-empty list of strings".into());
    }
    for (i, r) in vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("spec.http[{i}]");
        known(
            r,
            &[
                "name",
                "match",
                "route",
                "redirect",
                "directResponse",
                "delegate",
                "rewrite",
                "timeout",
                "retries",
                "fault",
                "mirror",
                "mirrors",
                "mirrorPercentage",
                "corsPolicy",
                "headers",
            ],
            &at,
            &mut out,
        );
        string(r.get("timeout"), &format!("{at}.timeout"), &mut out);
        if let Some(t) = r.get("retries") {
            let at = format!("{at}.retries");
            known(
                t,
                &[
                    "attempts",
                    "perTryTimeout",
                    "retryOn",
                    "retryRemoteLocalities",
                    "retryIgnorePreviousHosts",
                    "backoff",
                ],
                &at,
                &mut out,
            );
            let attempts = t
                .get("attempts")
                .map(|a| a.as_i64().filter(|n| (0..=i64::from(i32::MAX)).contains(n)));
            if let Some(None) = attempts {
                out.push(format!("{at}.attempts: not an int32 >= 0"));
            }
            string(
                t.get("perTryTimeout"),
                &format!("{at}.perTryTimeout"),
                &mut out,
            );
            string(t.get("retryOn"), &format!("{at}.retryOn"), &mut out);
        }
        if let Some(f) = r.get("fault") {
            let at = format!("{at}.fault");
            known(f, &["abort", "delay"], &at, &mut out);
            if f.get("abort").is_none() && f.get("delay").is_none() {
                out.push(format!("{at}: neither abort nor delay"));
            }
            if let Some(a) = f.get("abort") {
                let at = format!("{at}.abort");
                known(
                    a,
                    &["httpStatus", "grpcStatus", "percentage"],
                    &at,
                    &mut out,
                );
                match (a.get("httpStatus"), a.get("grpcStatus")) {
                    (Some(h), None) => {
                        if !h.is_i64() {
                            out.push(format!("{at}.httpStatus: {h} is not an integer"));
                        }
                    }
                    (None, Some(g)) => {
                        if !g.as_str().is_some_and(|g| GRPC.contains(&g)) {
                            out.push(format!("{at}.grpcStatus: {g}"));
                        }
                    }
                    _ => out.push(format!("{at}: one of httpStatus, grpcStatus")),
                }
                percentage(a.get("percentage"), &format!("{at}.percentage"), &mut out);
            }
            if let Some(d) = f.get("delay") {
                let at = format!("{at}.delay");
                known(d, &["fixedDelay", "percent", "percentage"], &at, &mut out);
                if d.get("fixedDelay").is_none() {
                    out.push(format!("{at}.fixedDelay: required"));
                }
                string(d.get("fixedDelay"), &format!("{at}.fixedDelay"), &mut out);
                if let Some(p) = d.get("percent").filter(|p| !p.is_i64()) {
                    out.push(format!("{at}.percent: {p} is not an integer"));
                }
                percentage(d.get("percentage"), &format!("{at}.percentage"), &mut out);
            }
        }
    }
    out.extend(webhook_problems(vs));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_does() {
        assert_eq!(go_duration("150ms"), Some(150e6));
        assert_eq!(go_duration("1m30s"), Some(90e9));
        assert_eq!(go_duration("0"), Some(0.0));
        assert_eq!(go_duration("2x"), None);
        assert_eq!(go_duration("5"), None);
    }

    #[test]
    fn retry_on_numbers_are_go_s_defined_codes() {
        assert!(retry_on_token("503") && retry_on_token("0503") && retry_on_token("429"));
        assert!(!retry_on_token("599") && !retry_on_token("999") && !retry_on_token(" 5xx"));
    }
}
