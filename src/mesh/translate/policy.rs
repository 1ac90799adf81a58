//! Fault and retry policy: istiod's TranslateFault and retry.go ConvertPolicy.

use serde_json::{Map, Value, json};

use super::{FAULT_TYPE, proto_duration};
use crate::istio::types::{GrpcStatus, IstioDuration, RetryOn};

fn fractional(v: &Value) -> Option<Value> {
    if let Some(p) = v.pointer("/percentage/value").and_then(Value::as_f64) {
        // istiod: uint32(value * 10000), truncated, per million.
        let n = crate::istio::Percentage::new(p)
            .map(|p| p.per_million())
            .unwrap_or(0);
        return Some(json!({"numerator": n, "denominator": "MILLION"}));
    }
    v.get("percent")
        .and_then(Value::as_u64)
        .map(|n| json!({"numerator": n, "denominator": "HUNDRED"}))
}

/// The per-route HTTPFault, or `None` when the route has neither delay nor abort.
pub fn fault_config(f: &Value) -> Option<Value> {
    let mut out = Map::new();
    out.insert("@type".into(), json!(FAULT_TYPE));
    if let Some(d) = f.get("delay") {
        let mut delay = Map::new();
        if let Some(ms) = d
            .get("fixedDelay")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IstioDuration>().ok())
        {
            delay.insert(
                "fixed_delay".into(),
                json!(proto_duration(ms.as_duration().as_millis())),
            );
        }
        if let Some(p) = fractional(d) {
            delay.insert("percentage".into(), p);
        }
        // A delay with no fixed delay is dropped, as istiod's TranslateFault does (Istio
        // 1.26 route.go); Envoy would reject it.
        if delay.contains_key("fixed_delay") {
            out.insert("delay".into(), Value::Object(delay));
        }
    }
    if let Some(a) = f.get("abort") {
        let mut abort = Map::new();
        if let Some(s) = a.get("httpStatus") {
            let code = s
                .as_u64()
                .or_else(|| s.as_str().and_then(|x| x.parse().ok()));
            if let Some(c) = code {
                abort.insert("http_status".into(), json!(c));
            }
        } else if let Some(g) = a
            .get("grpcStatus")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<GrpcStatus>().ok())
        {
            abort.insert("grpc_status".into(), json!(g.code()));
        }
        if let Some(p) = fractional(a) {
            abort.insert("percentage".into(), p);
        }
        // An abort with no error type is dropped, as istiod's TranslateFault does
        // (Istio validation only warns about it); Envoy would reject it.
        if abort.contains_key("http_status") || abort.contains_key("grpc_status") {
            out.insert("abort".into(), Value::Object(abort));
        }
    }
    (out.len() > 1).then_some(Value::Object(out))
}

fn previous_hosts() -> Value {
    json!([{
        "name": "envoy.retry_host_predicates.previous_hosts",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}
    }])
}

/// Istio's policy for routes with no `retries` block (retry/retry.go `defaultPolicy`).
/// No retriable status codes: 503 left the default in Istio 1.24
/// (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, true by default in 1.24–1.26).
pub fn default_retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": previous_hosts(),
        "host_selection_retry_max_attempts": 5
    })
}

/// istiod's ConvertPolicy: absent → default; attempts ≤ 0 → none; else the default
/// overridden by the given fields.
pub fn retry_policy(retries: Option<&Value>) -> Option<Value> {
    let Some(r) = retries else {
        return Some(default_retry_policy());
    };
    let attempts = r.get("attempts").and_then(Value::as_i64).unwrap_or(0);
    if attempts <= 0 {
        return None;
    }
    let mut p = default_retry_policy();
    p["num_retries"] = json!(attempts);
    if let Some(on) = r
        .get("retryOn")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<RetryOn>().ok())
    {
        // As ConvertPolicy: a given retryOn sets both the conditions and the codes.
        let (names, codes) = on.to_envoy();
        p["retry_on"] = json!(names);
        if !codes.is_empty() {
            p["retriable_status_codes"] = json!(codes);
        }
    }
    if let Some(b) = r
        .get("backoff")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IstioDuration>().ok())
    {
        p["retry_back_off"] = json!({"base_interval": proto_duration(b.as_duration().as_millis())});
    }
    if let Some(t) = r
        .get("perTryTimeout")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IstioDuration>().ok())
    {
        p["per_try_timeout"] = json!(proto_duration(t.as_duration().as_millis()));
    }
    // Istio >= 1.26: false drops the previous-hosts predicate, true keeps it.
    if let Some(keep) = r.get("retryIgnorePreviousHosts").and_then(Value::as_bool)
        && !keep
        && let Some(o) = p.as_object_mut()
    {
        o.remove("retry_host_predicate");
    }
    if r.get("retryRemoteLocalities").and_then(Value::as_bool) == Some(true) {
        p["retry_priority"] = json!({
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 2
            }
        });
    }
    Some(p)
}

#[cfg(test)]
mod retry_policy_tests {
    use super::*;

    /// istiod's ConvertPolicy (pilot/pkg/networking/core/route/retry/retry.go).
    #[test]
    fn convert_policy_rules() {
        // Istio >= 1.24: no status codes in the default policy
        let default = retry_policy(None).expect("default");
        assert!(default.get("retriable_status_codes").is_none(), "{default}");
        // attempts only: the default conditions stay
        let p = retry_policy(Some(&json!({"attempts": 4}))).expect("p");
        assert_eq!(p["num_retries"], 4);
        assert_eq!(p["retry_on"], default["retry_on"]);
        let p = retry_policy(Some(&json!({"attempts": 2, "retryOn": "5xx"}))).expect("p");
        assert_eq!(p["retry_on"], "5xx");
        assert!(p.get("retriable_status_codes").is_none(), "{p}");
        let p = retry_policy(Some(
            &json!({"attempts": 2, "retryOn": "gateway-error,429", "backoff": "25ms"}),
        ))
        .expect("p");
        assert_eq!(p["retry_on"], "gateway-error,retriable-status-codes");
        assert_eq!(p["retriable_status_codes"], json!([429]));
        assert_eq!(p["retry_back_off"]["base_interval"], "0.025s");
        assert!(retry_policy(Some(&json!({"attempts": 0}))).is_none());
    }
}
