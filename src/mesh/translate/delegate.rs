//! VirtualService delegation, as istiod 1.26 merges it before building any route
//! (pilot/pkg/model/virtualservice.go `mergeVirtualServicesIfNeeded`,
//! `mergeHTTPRoutes`, `mergeHTTPRoute`, `mergeHTTPMatchRequests`,
//! `mergeHTTPMatchRequest`, `hasConflict`, `stringMatchConflict`).
//!
//! A VirtualService with no `hosts` is a delegate: never translated on its own. A root's
//! route with `delegate: {name, namespace}` is replaced by the delegate's HTTP routes,
//! each with its match merged into the root's; a delegate route whose match conflicts
//! with every root match is dropped, and so is a root route whose delegate is missing
//! or not exported to the root's namespace. Pure: JSON in, JSON out.

use serde_json::{Map, Value, json};

use super::hosts::{resolve_host, vs_namespace};
use super::vs_hosts;
use crate::istio::patch::object_label;

/// The VirtualServices istiod builds routes from: delegates left out, roots with their
/// delegates merged in. Warnings name what istiod drops (it only logs them).
pub(super) fn merge_delegates(vss: &[Value], warnings: &mut Vec<String>) -> Vec<Value> {
    let is_delegate = |vs: &Value| vs_hosts(vs).is_empty();
    let mut used = Vec::new();
    let mut out = Vec::new();
    for vs in vss.iter().filter(|v| !is_delegate(v)) {
        let http = vs
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !http.iter().any(|r| r.get("delegate").is_some()) {
            out.push(vs.clone());
            continue;
        }
        let label = object_label(vs);
        let root_ns = vs_namespace(vs);
        let mut merged = Vec::new();
        for (i, route) in http.iter().enumerate() {
            let Some(d) = route.get("delegate") else {
                merged.push(route.clone());
                continue;
            };
            let name = d.get("name").and_then(Value::as_str).unwrap_or("");
            let ns = d
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(root_ns);
            let found = vss.iter().find(|v| {
                is_delegate(v)
                    && vs_namespace(v) == ns
                    && v.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
            });
            let Some(delegate) = found else {
                warnings.push(format!(
                    "{label}: spec.http[{i}].delegate names VirtualService {ns}/{name}, which is not a delegate (a VirtualService with no hosts) of the mesh: the route is left out, as istiod does"
                ));
                continue;
            };
            used.push((ns.to_string(), name.to_string()));
            if !exported_to(delegate, root_ns) {
                warnings.push(format!(
                    "{label}: spec.http[{i}].delegate {ns}/{name} is not exported to namespace {root_ns}: the route is left out, as istiod does"
                ));
                continue;
            }
            let subs = delegate
                .pointer("/spec/http")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, sub) in subs.into_iter().enumerate() {
                if sub.get("delegate").is_some() {
                    warnings.push(format!(
                        "{label}: delegate {ns}/{name} spec.http[{j}] delegates again, which Istio rejects; left out"
                    ));
                    continue;
                }
                let sub = resolve_delegate_hosts(sub, ns);
                match merge_http_route(route, sub) {
                    Some(m) => merged.push(m),
                    None => warnings.push(format!(
                        "{label}: spec.http[{i}] and delegate {ns}/{name} spec.http[{j}] have conflicting matches: the delegate's route is left out, as istiod does"
                    )),
                }
            }
        }
        let mut root = vs.clone();
        root["spec"]["http"] = Value::Array(merged);
        out.push(root);
    }
    for vs in vss.iter().filter(|v| is_delegate(v)) {
        let ns = vs_namespace(vs).to_string();
        let name = vs
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !used.contains(&(ns, name)) {
            warnings.push(format!(
                "{}: no hosts, so a delegate, and no root VirtualService delegates to it: it routes nothing",
                object_label(vs)
            ));
        }
    }
    out
}

/// Whether a delegate is visible from `ns`: its exportTo (`.` = its own namespace,
/// `*` = all); none means the default, every namespace.
fn exported_to(delegate: &Value, ns: &str) -> bool {
    let Some(list) = delegate
        .pointer("/spec/exportTo")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return true;
    };
    let own = vs_namespace(delegate);
    list.iter()
        .filter_map(Value::as_str)
        .any(|e| e == "*" || e == ns || (e == "." && own == ns))
}

/// istiod resolves short hosts in each VirtualService's own namespace before merging
/// (ResolveVirtualServiceShortnames): a delegate's destinations keep meaning its
/// namespace's services once in the root.
fn resolve_delegate_hosts(mut route: Value, ns: &str) -> Value {
    let fix = |v: &mut Value| {
        if let Some(h) = v.as_str() {
            *v = json!(resolve_host(h, ns));
        }
    };
    if let Some(ds) = route.get_mut("route").and_then(Value::as_array_mut) {
        for d in ds {
            if let Some(h) = d.pointer_mut("/destination/host") {
                fix(h);
            }
        }
    }
    if let Some(h) = route.pointer_mut("/mirror/host") {
        fix(h);
    }
    if let Some(ms) = route.get_mut("mirrors").and_then(Value::as_array_mut) {
        for m in ms {
            if let Some(h) = m.pointer_mut("/destination/host") {
                fix(h);
            }
        }
    }
    route
}

/// istiod's mergeHTTPRoute: the delegate route with the root's match merged in and the
/// root's fields where the delegate has none; `None` on a match conflict.
fn merge_http_route(root: &Value, delegate: Value) -> Option<Value> {
    let Value::Object(mut out) = delegate else {
        return None;
    };
    let root_matches = list(root.get("match"));
    let sub_matches = list(out.get("match"));
    let merged = merge_matches(&root_matches, &sub_matches)?;
    if merged.is_empty() {
        out.remove("match");
    } else {
        out.insert("match".into(), Value::Array(merged));
    }
    join_names(&mut out, root);
    inherit(
        &mut out,
        root,
        &[
            "rewrite",
            "directResponse",
            "timeout",
            "retries",
            "fault",
            "mirror",
            "mirrorPercent",
            "mirrorPercentage",
            "corsPolicy",
            "mirrors",
            "headers",
        ],
    );
    Some(Value::Object(out))
}

/// istiod's name merge: the root's name, or `<root>-<delegate>` when both have one.
fn join_names(out: &mut Map<String, Value>, root: &Value) {
    match (str_of(root.get("name")), str_of(out.get("name"))) {
        (Some(r), None) => {
            out.insert("name".into(), json!(r));
        }
        (Some(r), Some(d)) => {
            let n = format!("{r}-{d}");
            out.insert("name".into(), json!(n));
        }
        _ => {}
    }
}

/// The root's `keys` where the delegate's object has none.
fn inherit(out: &mut Map<String, Value>, root: &Value, keys: &[&str]) {
    for k in keys {
        if !out.contains_key(*k)
            && let Some(v) = root.get(*k)
        {
            out.insert((*k).into(), v.clone());
        }
    }
}

fn list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// istiod's mergeHTTPMatchRequests: every delegate match must merge with at least one
/// root match (one merged match per compatible pair); `None` on a conflict.
fn merge_matches(root: &[Value], delegate: &[Value]) -> Option<Vec<Value>> {
    if root.is_empty() {
        return Some(delegate.to_vec());
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for sub in delegate {
        let mut found = false;
        for r in root {
            if has_conflict(r, sub) {
                continue;
            }
            out.push(merge_match(r, sub));
            found = true;
        }
        if !found {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// istiod's mergeHTTPMatchRequest: the delegate's match, the root's fields where it has
/// none, maps merged (the delegate's entries win).
fn merge_match(root: &Value, delegate: &Value) -> Value {
    let mut out = delegate.as_object().cloned().unwrap_or_default();
    join_names(&mut out, root);
    inherit(
        &mut out,
        root,
        &[
            "uri",
            "scheme",
            "method",
            "authority",
            "sourceNamespace",
            "statPrefix",
        ],
    );
    if out.get("port").and_then(Value::as_u64).unwrap_or(0) == 0
        && let Some(p) = root.get("port")
    {
        out.insert("port".into(), p.clone());
    }
    if out
        .get("gateways")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
        && let Some(g) = root.get("gateways")
    {
        out.insert("gateways".into(), g.clone());
    }
    for k in ["headers", "withoutHeaders", "queryParams", "sourceLabels"] {
        let mut m: Map<String, Value> = root
            .get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(d) = delegate.get(k).and_then(Value::as_object) {
            m.extend(d.iter().map(|(a, b)| (a.clone(), b.clone())));
        }
        if m.is_empty() {
            out.remove(k);
        } else {
            out.insert(k.into(), Value::Object(m));
        }
    }
    Value::Object(out)
}

/// istiod's hasConflict: whether a delegate match cannot narrow a root match.
fn has_conflict(root: &Value, leaf: &Value) -> bool {
    for k in ["uri", "scheme", "method", "authority"] {
        if string_match_conflict(root.get(k), leaf.get(k)) {
            return true;
        }
    }
    for k in ["headers", "withoutHeaders", "queryParams"] {
        if let Some(leaf_map) = leaf.get(k).and_then(Value::as_object) {
            for (name, v) in leaf_map {
                if string_match_conflict(root.get(k).and_then(|m| m.get(name)), Some(v)) {
                    return true;
                }
            }
        }
    }
    let flag = |m: &Value| m.get("ignoreUriCase").and_then(Value::as_bool) == Some(true);
    if flag(root) != flag(leaf) {
        return true;
    }
    let port = |m: &Value| m.get("port").and_then(Value::as_u64).unwrap_or(0);
    if port(root) > 0 && port(leaf) > 0 && port(root) != port(leaf) {
        return true;
    }
    if let Some(ns) = str_of(root.get("sourceNamespace"))
        && str_of(leaf.get("sourceNamespace")) != Some(ns)
    {
        return true;
    }
    if let Some(leaf_labels) = leaf.get("sourceLabels").and_then(Value::as_object) {
        for (k, v) in leaf_labels {
            if let Some(rv) = root.pointer(&format!("/sourceLabels/{}", escape(k)))
                && rv != v
            {
                return true;
            }
        }
    }
    let gws = |m: &Value| -> Vec<String> {
        m.get("gateways")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect()
    };
    let (rg, lg) = (gws(root), gws(leaf));
    if !rg.is_empty() && !lg.is_empty() {
        if rg.len() < lg.len() {
            return true;
        }
        if lg.iter().any(|g| !rg.contains(g)) {
            return true;
        }
    }
    false
}

fn escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// istiod's stringMatchConflict, case for case (an empty string counts as unset, as
/// protobuf getters return it).
fn string_match_conflict(root: Option<&Value>, leaf: Option<&Value>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let get = |m: &Value, k: &str| -> String {
        m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
    };
    let (r_exact, r_prefix, r_regex) =
        (get(root, "exact"), get(root, "prefix"), get(root, "regex"));
    let (l_exact, l_prefix, l_regex) =
        (get(leaf, "exact"), get(leaf, "prefix"), get(leaf, "regex"));
    if !r_regex.is_empty() && (!l_regex.is_empty() || !l_prefix.is_empty() || !l_exact.is_empty()) {
        return true;
    }
    if !l_regex.is_empty() && (!r_regex.is_empty() || !r_prefix.is_empty() || !r_exact.is_empty()) {
        return true;
    }
    if !r_exact.is_empty() {
        if !l_prefix.is_empty() {
            return true;
        }
        return l_exact != r_exact;
    }
    if !r_prefix.is_empty() {
        if !l_prefix.is_empty() {
            return !l_prefix.starts_with(&r_prefix);
        }
        if !l_exact.is_empty() {
            return !l_exact.starts_with(&r_prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from istiod's TestMergeHTTPMatchRequests / stringMatchConflict
    /// (pilot/pkg/model/virtualservice_test.go, Istio 1.26).
    #[test]
    fn string_match_conflicts_as_istiod() {
        let c = |r: Value, l: Value| string_match_conflict(Some(&r), Some(&l));
        assert!(!c(
            json!({"prefix": "/productpage"}),
            json!({"prefix": "/productpage/v1"})
        ));
        assert!(c(
            json!({"prefix": "/productpage/v1"}),
            json!({"prefix": "/productpage"})
        ));
        assert!(!c(json!({"prefix": "/a"}), json!({"exact": "/a/b"})));
        assert!(c(json!({"exact": "/a"}), json!({"prefix": "/a"})));
        assert!(c(json!({"exact": "/a"}), json!({"exact": "/b"})));
        assert!(!c(json!({"exact": "/a"}), json!({"exact": "/a"})));
        assert!(c(json!({"regex": "/a.*"}), json!({"prefix": "/a"})));
        assert!(c(json!({"prefix": "/a"}), json!({"regex": "/a.*"})));
        assert!(!string_match_conflict(None, Some(&json!({"exact": "/x"}))));
        assert!(!string_match_conflict(Some(&json!({"exact": "/x"})), None));
    }

    #[test]
    fn matches_merge_field_by_field() {
        let root =
            [json!({"name": "r", "uri": {"prefix": "/reviews"}, "headers": {"a": {"exact": "1"}}})];
        let sub = [
            json!({"name": "d", "uri": {"prefix": "/reviews/v2"}, "headers": {"b": {"exact": "2"}}}),
        ];
        let m = merge_matches(&root, &sub).expect("merged");
        assert_eq!(
            m,
            [
                json!({"name": "r-d", "uri": {"prefix": "/reviews/v2"}, "headers": {"a": {"exact": "1"}, "b": {"exact": "2"}}})
            ]
        );
        // A delegate match no root match admits: the route conflicts.
        assert!(merge_matches(&root, &[json!({"uri": {"prefix": "/other"}})]).is_none());
        // No delegate match: the root's.
        assert_eq!(merge_matches(&root, &[]), Some(root.to_vec()));
        // Different ignoreUriCase: a conflict.
        assert!(merge_matches(&root, &[json!({"ignoreUriCase": true})]).is_none());
    }
}
