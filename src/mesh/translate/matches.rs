//! Match clauses: an Istio HTTPMatchRequest as an Envoy RouteMatch (uri, headers,
//! withoutHeaders, method/authority/scheme, queryParams), as istiod's
//! translateRouteMatch does.

use serde_json::{Map, Value, json};

use super::Translator;
use super::claims::{claim_matcher, routing_claim};

impl Translator<'_> {
    pub(super) fn route_match(&mut self, label: &str, i: usize, j: usize, m: &Value) -> Value {
        let mut out = Map::new();
        if m.get("ignoreUriCase").and_then(Value::as_bool) == Some(true) {
            out.insert("case_sensitive".into(), json!(false));
        }
        match m.get("uri").and_then(string_match) {
            Some(("exact", v)) => {
                out.insert("path".into(), json!(v));
            }
            Some(("prefix", v)) => {
                out.insert("prefix".into(), json!(v));
            }
            Some(("regex", v)) => {
                out.insert("safe_regex".into(), json!({"regex": v}));
            }
            _ => {
                out.insert("prefix".into(), json!("/"));
            }
        }
        let mut headers = Vec::new();
        let mut claims = Vec::new();
        if let Some(hs) = m.get("headers").and_then(Value::as_object) {
            for (name, v) in hs {
                match routing_claim(name) {
                    Some(c) => claims.push(claim_matcher(&c, v)),
                    None => headers.push(header_matcher(name, v)),
                }
            }
        }
        // As istiod: withoutHeaders inverts the matcher; a missing header counts as
        // empty unless it is a presence match.
        if let Some(hs) = m.get("withoutHeaders").and_then(Value::as_object) {
            for (name, v) in hs {
                if let Some(c) = routing_claim(name) {
                    let mut c = claim_matcher(&c, v);
                    c["invert"] = json!(true);
                    claims.push(c);
                    continue;
                }
                let mut h = header_matcher(name, v);
                h["invert_match"] = json!(true);
                if h.get("present_match").is_none() {
                    h["treat_missing_header_as_empty"] = json!(true);
                }
                headers.push(h);
            }
        }
        for (key, header) in [
            ("method", ":method"),
            ("authority", ":authority"),
            ("scheme", ":scheme"),
        ] {
            if let Some(v) = m.get(key) {
                headers.push(header_matcher(header, v));
            }
        }
        if !headers.is_empty() {
            out.insert("headers".into(), Value::Array(headers));
        }
        if !claims.is_empty() {
            self.warnings.push(format!(
                "{label}: spec.http[{i}].match[{j}] matches JWT claims (@request.auth.claims): the local mesh runs no JWT authentication, so requests carry no claims (as on Istio without a valid JWT)"
            ));
            out.insert("dynamic_metadata".into(), Value::Array(claims));
        }
        if let Some(qs) = m.get("queryParams").and_then(Value::as_object) {
            let params: Vec<Value> = qs
                .iter()
                .map(|(name, v)| {
                    if can_be_present_match(v) {
                        json!({"name": name, "present_match": true})
                    } else {
                        json!({"name": name, "string_match": envoy_string_match(v)})
                    }
                })
                .collect();
            out.insert("query_parameters".into(), Value::Array(params));
        }
        // sourceLabels / sourceNamespace pick the proxies a clause is built for
        // (routes.rs `applies_on`); they are no part of Envoy's match.
        for key in ["statPrefix"] {
            if m.get(key).is_some() {
                self.warnings.push(format!("{label}: spec.http[{i}].match[{j}].{key} is not supported by the local mesh; ignored"));
            }
        }
        Value::Object(out)
    }
}

fn string_match(v: &Value) -> Option<(&'static str, &str)> {
    for k in ["exact", "prefix", "regex"] {
        if let Some(s) = v.get(k).and_then(Value::as_str) {
            return Some((k, s));
        }
    }
    None
}

fn envoy_string_match(v: &Value) -> Value {
    match string_match(v) {
        Some(("exact", s)) => json!({"exact": s}),
        Some(("prefix", s)) => json!({"prefix": s}),
        Some((_, s)) => json!({"safe_regex": {"regex": s}}),
        None => json!({"safe_regex": {"regex": ".*"}}),
    }
}

/// istiod's canBeConvertedToPresentMatch: no match type, or `regex: "*"` (not RE2;
/// Istio's catch-all), is a presence match.
fn can_be_present_match(v: &Value) -> bool {
    string_match(v).is_none() || v.get("regex").and_then(Value::as_str) == Some("*")
}

fn header_matcher(name: &str, v: &Value) -> Value {
    // As istiod: `prefix: ""`, `regex: "*"` or no match type mean "present".
    if v.get("prefix").and_then(Value::as_str) == Some("") || can_be_present_match(v) {
        return json!({"name": name, "present_match": true});
    }
    json!({"name": name, "string_match": envoy_string_match(v)})
}
