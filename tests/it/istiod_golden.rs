//! The local mesh's Envoy configuration checked against what istiod generates for the
//! same VirtualServices and DestinationRules — not against itself, as the snapshots in
//! mesh_translate.rs are. The expected values live in tests/data/istiod/ (one file per
//! area, each naming the istiod functions and the Istio version they were derived
//! from; see its README); each test extracts the same semantic subset from meshdrill's
//! configuration, with Envoy's proto defaults filled in on both sides, and compares.

use std::collections::BTreeMap;
use std::path::PathBuf;

use meshdrill::mesh::MeshSpec;
use meshdrill::mesh::translate::{EnvoyConfig, Layout, translate};
use serde_json::{Value, json};

fn golden(name: &str) -> Value {
    let p = crate::common::data(&format!("istiod/{name}"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn cases(file: &Value) -> &[Value] {
    file["cases"].as_array().map_or(&[], Vec::as_slice)
}

fn config(yaml: &str) -> EnvoyConfig {
    let loaded = MeshSpec::parse(yaml, "golden.yaml").expect("parse");
    let mut ports = BTreeMap::new();
    // Each replica's inbound sidecar listens 50 ports above it.
    let mut inbound = BTreeMap::new();
    let mut next = 10000u16;
    for name in loaded.spec.service_names() {
        let n = loaded.spec.replicas_of(name).len();
        ports.insert(name.to_string(), (0..n).map(|i| next + i as u16).collect());
        inbound.insert(
            name.to_string(),
            (0..n).map(|i| next + 50 + i as u16).collect(),
        );
        next += 100;
    }
    translate(
        &loaded.spec,
        &Layout {
            rds_dir: PathBuf::from("/state/xds/rds"),
            access_log: PathBuf::from("/state/access.log"),
            replica_ports: ports,
            inbound_ports: inbound,
        },
    )
}

/// One service `api` and a VirtualService for it whose single route carries `extra`
/// (a `retries` or `fault` block), plus a DestinationRule with `traffic_policy`.
fn api_mesh(extra: &[(&str, &Value)], traffic_policy: &Value) -> EnvoyConfig {
    let mut route = json!({"route": [{"destination": {"host": "api"}}]});
    for (k, v) in extra {
        if !v.is_null() {
            route[*k] = (*v).clone();
        }
    }
    let vs = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "api"},
        "spec": {"hosts": ["api"], "http": [route]}
    });
    let mut yaml = format!(
        "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {{name: golden}}\nspec:\n  services:\n  - name: api\n---\n{vs}\n"
    );
    if !traffic_policy.is_null() {
        let dr = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "api"},
            "spec": {"host": "api", "trafficPolicy": traffic_policy}
        });
        yaml.push_str(&format!("---\n{dr}\n"));
    }
    config(&yaml)
}

/// The route action of the `api` VirtualService's route on the sidecars.
fn api_route(c: &EnvoyConfig) -> Value {
    c.routes["sidecar_api"]["virtual_hosts"]
        .as_array()
        .and_then(|vh| vh.iter().find(|v| v["name"] == "default/api"))
        .map(|v| v["routes"][0].clone())
        .unwrap_or_else(|| panic!("no api route: {:#}", c.routes["sidecar_api"]))
}

/// A proto-JSON duration (`"0.250s"`) in milliseconds.
fn ms(v: Option<&Value>) -> Value {
    match v.and_then(Value::as_str).and_then(|s| s.strip_suffix('s')) {
        Some(s) => s
            .parse::<f64>()
            .map_or(Value::Null, |x| json!((x * 1000.0).round() as u64)),
        None => Value::Null,
    }
}

/// Compares each case's `expected` with `actual(case)`; fails once, listing every
/// difference with the case's name.
fn compare(file: &str, actual: impl Fn(&Value) -> Value) {
    let g = golden(file);
    let mut diffs = Vec::new();
    for case in cases(&g) {
        let got = actual(case);
        if got != case["expected"] {
            diffs.push(format!(
                "{}:\n  istiod:    {}\n  meshdrill: {got}",
                case["name"], case["expected"]
            ));
        }
    }
    assert!(cases(&g).len() >= 4, "{file}: cases");
    assert!(
        diffs.is_empty(),
        "differs from istiod ({}):\n{}",
        g["from"],
        diffs.join("\n")
    );
}

/// A RetryPolicy's semantic subset, with Envoy's defaults for absent fields.
fn retry_subset(p: Option<&Value>) -> Value {
    let Some(p) = p else { return Value::Null };
    let predicates: Vec<Value> = p["retry_host_predicate"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x["name"].clone())
        .collect();
    json!({
        "num_retries": p["num_retries"].as_u64().unwrap_or(1),
        "retry_on": p["retry_on"].as_str().unwrap_or(""),
        "retriable_status_codes": p.get("retriable_status_codes").cloned().unwrap_or(json!([])),
        "per_try_timeout_ms": ms(p.get("per_try_timeout")),
        "retry_host_predicate": predicates,
        "host_selection_retry_max_attempts": p["host_selection_retry_max_attempts"].as_u64().unwrap_or(0),
        "retry_priority": p.pointer("/retry_priority/name").cloned().unwrap_or(Value::Null),
        "retry_back_off_base_ms": ms(p.pointer("/retry_back_off/base_interval")),
    })
}

#[test]
fn retry_policies_are_istiods() {
    compare("retries.json", |case| {
        let c = api_mesh(&[("retries", &case["retries"])], &Value::Null);
        retry_subset(api_route(&c)["route"].get("retry_policy"))
    });
}

/// An HTTPFault's semantic subset: an absent percentage is Envoy's default 0/HUNDRED.
fn fault_subset(f: Option<&Value>) -> Value {
    let Some(f) = f else { return Value::Null };
    let pct = |p: Option<&Value>| {
        json!({
            "numerator": p.and_then(|p| p["numerator"].as_u64()).unwrap_or(0),
            "denominator": p.and_then(|p| p["denominator"].as_str()).unwrap_or("HUNDRED"),
        })
    };
    let delay = f.get("delay").map_or(Value::Null, |d| {
        json!({"fixed_delay_ms": ms(d.get("fixed_delay")), "percentage": pct(d.get("percentage"))})
    });
    let abort = f.get("abort").map_or(Value::Null, |a| {
        json!({
            "http_status": a.get("http_status").cloned().unwrap_or(Value::Null),
            "grpc_status": a.get("grpc_status").cloned().unwrap_or(Value::Null),
            "percentage": pct(a.get("percentage")),
        })
    });
    json!({"delay": delay, "abort": abort})
}

#[test]
fn fault_filter_configs_are_istiods() {
    compare("faults.json", |case| {
        let c = api_mesh(&[("fault", &case["fault"])], &Value::Null);
        fault_subset(api_route(&c).pointer("/typed_per_filter_config/envoy.filters.http.fault"))
    });
}

#[test]
fn cluster_defaults_and_traffic_policies_are_istiods() {
    compare("clusters.json", |case| {
        let c = api_mesh(&[], &case["traffic_policy"]);
        let cl = c
            .clusters
            .iter()
            .find(|x| x["name"] == "outbound|80||api.default.svc.cluster.local")
            .cloned()
            .unwrap_or_default();
        let t = &cl["circuit_breakers"]["thresholds"][0];
        // Envoy's defaults: 1024 connections, pending and requests, 3 retries; 5 s.
        let n = |k: &str, d: u64| t[k].as_u64().unwrap_or(d);
        json!({
            "connect_timeout_ms": ms(cl.get("connect_timeout")).as_u64().unwrap_or(5000),
            "lb_policy": cl["lb_policy"].as_str().unwrap_or("ROUND_ROBIN"),
            "max_connections": n("max_connections", 1024),
            "max_pending_requests": n("max_pending_requests", 1024),
            "max_requests": n("max_requests", 1024),
            "max_retries": n("max_retries", 3),
            "track_remaining": t["track_remaining"].as_bool().unwrap_or(false),
        })
    });
}

#[test]
fn domains_port_matching_and_path_normalization_are_istiods() {
    let g = golden("routing.json");
    let c = config(g["mesh"].as_str().expect("mesh"));
    // Every HTTP connection manager normalizes paths as istiod's.
    for l in &c.listeners {
        let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
        let got = json!({
            "normalize_path": hcm["normalize_path"].as_bool().unwrap_or(false),
            "merge_slashes": hcm["merge_slashes"].as_bool().unwrap_or(false),
            "path_with_escaped_slashes_action": hcm["path_with_escaped_slashes_action"]
                .as_str()
                .unwrap_or("IMPLEMENTATION_SPECIFIC_DEFAULT"),
        });
        assert_eq!(got, g["hcm"], "listener {}", l["name"]);
    }
    // The domains that reach a VirtualService's (or a service's default) routes, and
    // whether the Host header's port is ignored.
    compare("routing.json", |case| {
        let rc = &c.routes[case["route_config"].as_str().expect("route config")];
        let of = case["routes_of"].as_str().expect("routes_of");
        let mut domains: Vec<&str> = rc["virtual_hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| {
                let name = v["name"].as_str().unwrap_or("");
                name == of || name.split(':').next() == Some(of)
            })
            .flat_map(|v| v["domains"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        domains.sort_unstable();
        json!({
            "ignore_port_in_host_matching": rc["ignore_port_in_host_matching"].as_bool().unwrap_or(false),
            "domains": domains,
        })
    });
}
