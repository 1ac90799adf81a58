//! What an HTTP route does besides picking destinations: redirect, rewrite, header
//! operations and request mirrors — as istiod 1.26 builds them in
//! pilot/pkg/networking/core/route/route.go (`ApplyRedirect`,
//! `applyHTTPRouteDestination`, `processDestination`, `processWeightedDestination`,
//! `TranslateHeadersOperations`, `MirrorPercent`, `MirrorPercentByPolicy`,
//! `TranslateRequestMirrorPolicy`) — and the audit that warns about every HTTPRoute and
//! HTTPRouteDestination field the local mesh does not translate.
//!
//! Pure: JSON in, JSON out; nothing here looks at a running mesh.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::hosts::{resolve_host, service_fqdn};
use super::{Translator, cluster_name};

// === redirect ===

/// istiod's ApplyRedirect: an Envoy RedirectAction for a route built for `port` (the
/// listener port: 80 at the ingress, the service port on a sidecar). `Err(code)` when
/// the redirect code is one istiod does not translate (it then leaves the route
/// without an action).
pub(super) fn redirect(rd: &Value, port: u16) -> Result<Value, u64> {
    let s = |k: &str| rd.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let mut out = Map::new();
    if let Some(a) = s("authority") {
        out.insert("host_redirect".into(), json!(a));
    }
    if let Some(u) = s("uri") {
        out.insert("path_redirect".into(), json!(u));
    }
    if let Some(scheme) = s("scheme") {
        out.insert("scheme_redirect".into(), json!(scheme));
    }
    // `port` and `derivePort` are one oneof (redirect_port).
    let explicit = rd.get("port").and_then(Value::as_u64);
    let derive = rd.get("derivePort").and_then(Value::as_str);
    if explicit.is_some() || derive.is_some() {
        let mut p = match (explicit, derive) {
            (Some(p), _) => p,
            // Envoy cannot derive the port from the request; istiod uses the port the
            // route is built for. FROM_PROTOCOL_DEFAULT is Envoy's default: no port.
            (None, Some("FROM_REQUEST_PORT")) => u64::from(port),
            _ => 0,
        };
        // The local mesh serves plain HTTP (istiod's isTLS false).
        let scheme = s("scheme").unwrap_or("http");
        if (p == 80 && scheme == "http") || (p == 443 && scheme == "https") {
            p = 0;
        }
        if p != 0 {
            out.insert("port_redirect".into(), json!(p));
        }
    }
    let code = rd.get("redirectCode").and_then(Value::as_u64).unwrap_or(0);
    let response_code = match code {
        0 | 301 => "MOVED_PERMANENTLY",
        302 => "FOUND",
        303 => "SEE_OTHER",
        307 => "TEMPORARY_REDIRECT",
        308 => "PERMANENT_REDIRECT",
        other => return Err(other),
    };
    out.insert("response_code".into(), json!(response_code));
    Ok(Value::Object(out))
}

// === rewrite ===

/// istiod's applyHTTPRouteDestination for `rewrite`: `uriRegexRewrite` → regex_rewrite,
/// else `uri` → prefix_rewrite (Envoy replaces the matched prefix; on an exact-path or
/// regex match that is the whole path). Returns `rewrite.authority`, which overrides an
/// authority set by the route's headers.
pub(super) fn apply_rewrite(action: &mut Map<String, Value>, rw: &Value) -> Option<String> {
    if let Some(rr) = rw.get("uriRegexRewrite") {
        let pattern = rr.get("match").and_then(Value::as_str).unwrap_or("");
        let sub = rr.get("rewrite").and_then(Value::as_str).unwrap_or("");
        action.insert(
            "regex_rewrite".into(),
            json!({"pattern": {"regex": pattern}, "substitution": sub}),
        );
    } else if let Some(uri) = rw
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    {
        action.insert("prefix_rewrite".into(), json!(uri));
    }
    rw.get("authority")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(String::from)
}

/// Sets the route action's host rewrite to `authority` (HostRewriteLiteral).
pub(super) fn rewrite_host(action: &mut Map<String, Value>, authority: &str) {
    action.insert("host_rewrite_literal".into(), json!(authority));
}

// === headers ===

/// istiod's HeadersOperations: what one `headers` block (route or destination) does.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct HeaderOps {
    pub request_add: Vec<Value>,
    pub response_add: Vec<Value>,
    pub request_remove: Vec<Value>,
    pub response_remove: Vec<Value>,
    /// A `set`/`add` of `:authority` or `host`: a host rewrite, not a header.
    pub authority: Option<String>,
}

/// istiod's translateAppendHeaders: sorted by name; `set` overwrites
/// (OVERWRITE_IF_EXISTS_OR_ADD), `add` appends (APPEND_IF_EXISTS_OR_ADD); pseudo
/// headers and `host` are not headers to add (`:authority`/`host` become the
/// authority).
fn append_headers(m: Option<&Value>, append: bool) -> (Vec<Value>, Option<String>) {
    let Some(m) = m.and_then(Value::as_object) else {
        return (Vec::new(), None);
    };
    let mut authority = None;
    let mut out: Vec<(&str, Value)> = Vec::new();
    for (k, v) in m {
        let value = v.as_str().unwrap_or("");
        if k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host") {
            authority = Some(value.to_string());
        }
        if is_internal(k) {
            continue;
        }
        let action = if append {
            "APPEND_IF_EXISTS_OR_ADD"
        } else {
            "OVERWRITE_IF_EXISTS_OR_ADD"
        };
        out.push((
            k,
            json!({"header": {"key": k, "value": value}, "append_action": action}),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    (out.into_iter().map(|(_, v)| v).collect(), authority)
}

fn is_internal(k: &str) -> bool {
    k.starts_with(':') || k.eq_ignore_ascii_case("host")
}

fn removals(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|k| !is_internal(k))
        .map(|k| json!(k))
        .collect()
}

/// istiod's TranslateHeadersOperations.
pub(super) fn header_ops(h: &Value) -> HeaderOps {
    let req = h.get("request");
    let resp = h.get("response");
    let (mut request_add, set_auth) = append_headers(req.and_then(|r| r.get("set")), false);
    let (req_add, add_auth) = append_headers(req.and_then(|r| r.get("add")), true);
    request_add.extend(req_add);
    let (mut response_add, _) = append_headers(resp.and_then(|r| r.get("set")), false);
    response_add.extend(append_headers(resp.and_then(|r| r.get("add")), true).0);
    HeaderOps {
        request_add,
        response_add,
        request_remove: removals(req.and_then(|r| r.get("remove"))),
        response_remove: removals(resp.and_then(|r| r.get("remove"))),
        // `set` wins over `add`.
        authority: set_auth.or(add_auth),
    }
}

impl HeaderOps {
    /// Appends these operations to a route or a weighted cluster (Envoy's field names
    /// are the same on both); empty lists are left out.
    pub(super) fn append_to(&self, target: &mut Map<String, Value>) {
        for (k, list) in [
            ("request_headers_to_add", &self.request_add),
            ("response_headers_to_add", &self.response_add),
            ("request_headers_to_remove", &self.request_remove),
            ("response_headers_to_remove", &self.response_remove),
        ] {
            if list.is_empty() {
                continue;
            }
            let slot = target.entry(k).or_insert_with(|| json!([]));
            if let Some(a) = slot.as_array_mut() {
                a.extend(list.iter().cloned());
            }
        }
    }
}

// === mirrors ===

/// A RuntimeFractionalPercent from `percentage.value` (per million, truncated as
/// istiod's translatePercentToFractionalPercent); `None` for 0 ("do not mirror").
fn fraction_of_percentage(p: &Value) -> Option<Value> {
    let v = p.get("value").and_then(Value::as_f64).unwrap_or(0.0);
    if v <= 0.0 {
        return None;
    }
    let n = (v.min(100.0) * 10_000.0) as u32;
    Some(json!({"default_value": {"numerator": n, "denominator": "MILLION"}}))
}

fn fraction_of_integer(n: u64) -> Value {
    json!({"default_value": {"numerator": n, "denominator": "HUNDRED"}})
}

/// istiod's MirrorPercent for `mirror`: mirrorPercentage, else the deprecated integer
/// mirrorPercent, else 100%; an explicit 0 mirrors nothing.
fn mirror_percent(r: &Value) -> Option<Value> {
    if let Some(p) = r.get("mirrorPercentage") {
        return fraction_of_percentage(p);
    }
    if let Some(n) = r.get("mirrorPercent").and_then(Value::as_u64) {
        return (n > 0).then(|| fraction_of_integer(n));
    }
    Some(fraction_of_integer(100))
}

/// istiod's MirrorPercentByPolicy for one of `mirrors`: its own `percentage`, else
/// 100% (the route's mirrorPercentage does not apply to `mirrors`).
fn mirror_percent_by_policy(m: &Value) -> Option<Value> {
    match m.get("percentage") {
        Some(p) => fraction_of_percentage(p),
        None => Some(fraction_of_integer(100)),
    }
}

// === impl Translator ===

impl Translator<'_> {
    /// The request_mirror_policies of an HTTP route (`mirror` then `mirrors`), as
    /// istiod's applyHTTPRouteDestination with TranslateRequestMirrorPolicy.
    pub(super) fn mirror_policies(
        &mut self,
        label: &str,
        i: usize,
        r: &Value,
        vs_ns: &str,
        clusters: &BTreeSet<String>,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(d) = r.get("mirror")
            && let Some(fraction) = mirror_percent(r)
        {
            let c =
                self.mirror_cluster(label, &format!("spec.http[{i}].mirror"), d, vs_ns, clusters);
            out.push(json!({"cluster": c, "runtime_fraction": fraction, "trace_sampled": false}));
        }
        for (j, m) in r
            .get("mirrors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (Some(d), Some(fraction)) = (m.get("destination"), mirror_percent_by_policy(m))
            else {
                continue;
            };
            let field = format!("spec.http[{i}].mirrors[{j}]");
            let c = self.mirror_cluster(label, &field, d, vs_ns, clusters);
            out.push(json!({"cluster": c, "runtime_fraction": fraction, "trace_sampled": false}));
        }
        out
    }

    /// The cluster a mirror destination names, as for a route destination: a host
    /// that is no service of the mesh, or a subset no DestinationRule defines, names
    /// a cluster that does not exist — Envoy then mirrors nothing (as istiod's
    /// blackholed mirror), said in a warning.
    fn mirror_cluster(
        &mut self,
        label: &str,
        field: &str,
        d: &Value,
        vs_ns: &str,
        clusters: &BTreeSet<String>,
    ) -> String {
        let host = d.get("host").and_then(Value::as_str).unwrap_or("");
        let subset = d.get("subset").and_then(Value::as_str);
        let Some(s) = self.service_for(host, vs_ns) else {
            self.warnings.push(format!(
                "{label}: {field} names host {host}, which is not a service of the mesh: nothing is mirrored"
            ));
            let port = d
                .pointer("/port/number")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(80);
            return cluster_name(port, subset, &resolve_host(host, vs_ns));
        };
        let c = cluster_name(s.port, subset, &service_fqdn(&s.name, &self.spec.namespace));
        if let Some(sub) = subset
            && !clusters.contains(&c)
        {
            self.warnings.push(format!(
                "{label}: {field} names subset {sub} of {host}, which no DestinationRule defines: nothing is mirrored"
            ));
        }
        c
    }

    /// Warns about the fields of one HTTP route (`spec.http[i]`) and of its
    /// destinations that the local mesh does not translate — every field of Istio's
    /// HTTPRoute and HTTPRouteDestination is either translated or named here.
    pub(super) fn audit_route_fields(&mut self, label: &str, i: usize, r: &Value) {
        if r.get("corsPolicy").is_some() {
            self.warnings.push(format!(
                "{label}: spec.http[{i}].corsPolicy is not modelled by the local mesh (CORS is enforced for browsers' cross-origin calls; drills send none); ignored"
            ));
        }
        if r.get("redirect").is_some() {
            // What istiod's TranslateRoute would do with them, had validation let
            // them through: the redirect wins over route, rewrite and directResponse;
            // a fault stays on the route.
            for (k, effect) in [
                ("route", "the redirect is applied, the route ignored"),
                ("rewrite", "the redirect is applied, the rewrite ignored"),
                (
                    "directResponse",
                    "the redirect is applied, the direct response ignored",
                ),
                ("fault", "both are applied"),
            ] {
                if r.get(k).is_some() {
                    self.warnings.push(format!(
                        "{label}: spec.http[{i}] has both redirect and {k}, which Istio's validation rejects; here {effect}, as istiod would translate them"
                    ));
                }
            }
            if r.pointer("/redirect/prefixRewrite").is_some() {
                self.warnings.push(format!(
                    "{label}: spec.http[{i}].redirect.prefixRewrite is not read by istiod 1.26 for a VirtualService; ignored"
                ));
            }
        }
        if r.get("mirror").is_some() && r.get("mirrors").is_some() {
            self.warnings.push(format!(
                "{label}: spec.http[{i}] has both mirror and mirrors, which Istio's validation rejects; both are applied"
            ));
        }
        if r.get("mirrorPercent").is_some() {
            self.warnings.push(format!(
                "{label}: spec.http[{i}].mirrorPercent is deprecated (Istio warns); use mirrorPercentage"
            ));
        }
    }
}
