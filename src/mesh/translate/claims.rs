//! JWT-claim header matches (`headers: {"@request.auth.claims.group": ...}`), as
//! istiod 1.26 translates them: a dynamic-metadata matcher on the JWT filter's payload
//! (pilot/pkg/networking/core/route/route.go `translateMetadataMatch`,
//! pkg/jwt/routing.go `ToRoutingClaim`, security/authz/model `MetadataMatcherForJWTClaims`).
//!
//! The local mesh runs no JWT authentication (no RequestAuthentication), so no request
//! carries claims: such a match never matches here — as on Istio for a request without
//! a valid JWT. The translator says so in a warning.

use serde_json::{Value, json};

/// istiod's ToRoutingClaim: the claim path of `@request.auth.claims.a.b` or
/// `@request.auth.claims[a][b]`; `None` for any other header name.
pub(super) fn routing_claim(name: &str) -> Option<Vec<String>> {
    const PREFIX: &str = "@request.auth.claims";
    let head = name.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &name[PREFIX.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
        return Some(dotted.split('.').map(String::from).collect());
    }
    let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
    if inner.is_empty() {
        return None;
    }
    Some(inner.split("][").map(String::from).collect())
}

/// The Envoy MetadataMatcher for a claim path and an Istio StringMatch, as
/// MetadataMatcherForJWTClaims (extended JWT: the claim, or one element of a list
/// claim, matches).
pub(super) fn claim_matcher(claims: &[String], m: &Value) -> Value {
    let string_match = if let Some(s) = m.get("exact").and_then(Value::as_str) {
        json!({"exact": s})
    } else if let Some(s) = m.get("prefix").and_then(Value::as_str) {
        json!({"prefix": s})
    } else if let Some(s) = m.get("regex").and_then(Value::as_str) {
        json!({"safe_regex": {"regex": s}})
    } else {
        json!({"safe_regex": {"regex": ".*"}})
    };
    let value = json!({"string_match": string_match});
    let mut path = vec![json!({"key": "payload"})];
    path.extend(claims.iter().map(|c| json!({"key": c})));
    json!({
        "filter": "envoy.filters.http.jwt_authn",
        "path": path,
        "value": {"or_match": {"value_matchers": [
            {"list_match": {"one_of": value.clone()}},
            value
        ]}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_claims_as_istiod_parses_them() {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(routing_claim("@request.auth.claims.group"), v(&["group"]));
        assert_eq!(routing_claim("@request.auth.claims.a.b"), v(&["a", "b"]));
        assert_eq!(
            routing_claim("@request.auth.claims[a][b.c]"),
            v(&["a", "b.c"])
        );
        assert_eq!(routing_claim("@Request.Auth.Claims.x"), v(&["x"]));
        assert_eq!(routing_claim("@request.auth.claims"), None);
        assert_eq!(routing_claim("@request.auth.claims."), None);
        assert_eq!(routing_claim("@request.auth.claims[]"), None);
        assert_eq!(routing_claim("end-user"), None);
    }
}
