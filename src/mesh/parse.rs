//! Parsing the mesh file, with the file, line and field of every problem.

use std::collections::BTreeMap;

use serde_json::Value;

use super::MeshError;
use super::spec::{
    DemoConfig, DestinationRule, Latency, MeshSpec, PathBehaviour, RateLimit, ServiceSpec, Subset,
    Workload,
};
use crate::istio::manifest::{self, Document, json_type};
use crate::istio::types::parse_go_duration;
use crate::istio::validate::dotted;

pub(super) fn invalid(d: &Document, pointer: &str, message: impl Into<String>) -> MeshError {
    MeshError::Invalid {
        location: d.locate(pointer),
        field: dotted(pointer),
        message: message.into(),
    }
}

const SERVICE_KEYS: [&str; 6] = ["name", "port", "replicas", "labels", "demo", "command"];
const DEMO_KEYS: [&str; 7] = [
    "latency",
    "failRate",
    "failStatus",
    "payload",
    "forward",
    "paths",
    "forwardTo",
];
const PATH_KEYS: [&str; 5] = ["latency", "failRate", "failStatus", "payload", "rateLimit"];

pub(super) fn parse_mesh(d: &Document) -> Result<MeshSpec, MeshError> {
    let v = &d.value;
    let name = match v.pointer("/metadata/name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(invalid(d, "/metadata/name", "metadata.name is required")),
    };
    // The namespace of the mesh's services: spec.namespace, else metadata.namespace.
    let namespace = match v.pointer("/spec/namespace") {
        None => v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        Some(Value::String(s)) if !s.is_empty() && !s.contains('.') => s.clone(),
        Some(_) => {
            return Err(invalid(
                d,
                "/spec/namespace",
                "a Kubernetes namespace name (no dots)",
            ));
        }
    };
    let Some(spec) = v.get("spec").and_then(Value::as_object) else {
        return Err(invalid(
            d,
            "/spec",
            "spec is required: a mapping with `services`",
        ));
    };
    for k in spec.keys() {
        if !["ingress", "services", "namespace", "inboundSidecars"].contains(&k.as_str()) {
            return Err(invalid(
                d,
                &format!("/spec/{k}"),
                "unknown field; allowed: ingress, namespace, services, inboundSidecars",
            ));
        }
    }
    let ingress_port = match v.pointer("/spec/ingress/port") {
        None => 0,
        Some(p) => port(d, "/spec/ingress/port", p, true)?,
    };
    let inbound_sidecars = match spec.get("inboundSidecars") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(
                d,
                "/spec/inboundSidecars",
                format!("invalid value {other}: true or false"),
            ));
        }
    };
    let Some(list) = spec
        .get("services")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Err(invalid(
            d,
            "/spec/services",
            "a non-empty list of services is required",
        ));
    };
    let mut services = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let base = format!("/spec/services/{i}");
        services.push(parse_service(d, &base, s)?);
    }
    // Entries with the same name are one service: they must agree on the port.
    for (i, a) in services.iter().enumerate() {
        if let Some(b) = services[..i]
            .iter()
            .find(|b| b.name == a.name && b.port != a.port)
        {
            return Err(invalid(
                d,
                &format!("/spec/services/{i}/port"),
                format!(
                    "service {} is listed with port {} and {}: entries of one service share a port",
                    a.name, b.port, a.port
                ),
            ));
        }
    }
    Ok(MeshSpec {
        name,
        namespace,
        ingress_port,
        inbound_sidecars,
        services,
        virtual_services: Vec::new(),
        destination_rules: Vec::new(),
        gateways: Vec::new(),
    })
}

fn port(d: &Document, p: &str, v: &Value, zero_ok: bool) -> Result<u16, MeshError> {
    match v.as_u64() {
        Some(n) if n <= 65535 && (zero_ok || n > 0) => Ok(n as u16),
        _ => Err(invalid(
            d,
            p,
            format!(
                "invalid value {v}: a port from {} to 65535",
                u8::from(!zero_ok)
            ),
        )),
    }
}

fn parse_service(d: &Document, base: &str, s: &Value) -> Result<ServiceSpec, MeshError> {
    let Some(m) = s.as_object() else {
        return Err(invalid(
            d,
            base,
            format!("expected a mapping, found {}", json_type(s)),
        ));
    };
    for k in m.keys() {
        if !SERVICE_KEYS.contains(&k.as_str()) {
            return Err(invalid(
                d,
                &format!("{base}/{k}"),
                format!("unknown field; allowed: {}", SERVICE_KEYS.join(", ")),
            ));
        }
    }
    let name = match m.get("name") {
        Some(Value::String(n)) if is_dns_label(n) => n.clone(),
        Some(other) => {
            return Err(invalid(
                d,
                &format!("{base}/name"),
                format!("invalid value {other}: a DNS label (lowercase letters, digits, '-')"),
            ));
        }
        None => return Err(invalid(d, &format!("{base}/name"), "name is required")),
    };
    let port = match m.get("port") {
        None => 80,
        Some(p) => port(d, &format!("{base}/port"), p, false)?,
    };
    let replicas = match m.get("replicas") {
        None => 1,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 64 => n as usize,
            _ => {
                return Err(invalid(
                    d,
                    &format!("{base}/replicas"),
                    format!("invalid value {v}: an integer from 0 to 64"),
                ));
            }
        },
    };
    let labels = string_map(d, &format!("{base}/labels"), m.get("labels"))?;
    let workload = match (m.get("demo"), m.get("command")) {
        (Some(_), Some(_)) => {
            return Err(invalid(d, base, "give either demo or command, not both"));
        }
        (None, None) => Workload::Demo(DemoConfig::default()),
        (Some(demo), None) => Workload::Demo(parse_demo(d, &format!("{base}/demo"), demo)?),
        (None, Some(c)) => {
            let p = format!("{base}/command");
            let args: Option<Vec<String>> = c
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(String::from))
                        .collect::<Option<Vec<_>>>()
                })
                .unwrap_or(None);
            match args {
                Some(a) if !a.is_empty() && !a[0].is_empty() => {
                    if !a.iter().any(|x| x.contains("{port}")) {
                        return Err(invalid(
                            d,
                            &p,
                            "the command must take its port: put {port} in an argument",
                        ));
                    }
                    Workload::Command(a)
                }
                _ => {
                    return Err(invalid(
                        d,
                        &p,
                        "expected a non-empty list of strings, e.g. [\"./app\", \"--port\", \"{port}\"]",
                    ));
                }
            }
        }
    };
    Ok(ServiceSpec {
        name,
        port,
        replicas,
        labels,
        workload,
    })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn string_map(
    d: &Document,
    p: &str,
    v: Option<&Value>,
) -> Result<BTreeMap<String, String>, MeshError> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let Some(m) = v.as_object() else {
        return Err(invalid(
            d,
            p,
            format!("expected a mapping of strings, found {}", json_type(v)),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, x) in m {
        match x {
            Value::String(s) => out.insert(k.clone(), s.clone()),
            Value::Number(n) => out.insert(k.clone(), n.to_string()),
            Value::Bool(b) => out.insert(k.clone(), b.to_string()),
            other => {
                return Err(invalid(
                    d,
                    &format!("{p}/{}", manifest::escape_pointer(k)),
                    format!("expected a string, found {}", json_type(other)),
                ));
            }
        };
    }
    Ok(out)
}

fn millis(d: &Document, p: &str, v: &Value) -> Result<f64, MeshError> {
    let s = v.as_str().ok_or_else(|| {
        invalid(
            d,
            p,
            format!(
                "expected a duration string such as \"5ms\", found {}",
                json_type(v)
            ),
        )
    })?;
    parse_go_duration(s)
        .map(|d| d.as_secs_f64() * 1000.0)
        .filter(|ms| *ms <= 600_000.0)
        .ok_or_else(|| {
            invalid(
                d,
                p,
                format!("invalid value {s:?}: a Go duration such as 5ms or 1.5s, at most 10m"),
            )
        })
}

fn parse_latency(d: &Document, p: &str, v: &Value) -> Result<Latency, MeshError> {
    match v {
        Value::String(_) => {
            let ms = millis(d, p, v)?;
            Ok(Latency {
                p50_ms: ms,
                p99_ms: ms,
            })
        }
        Value::Object(m) => {
            for k in m.keys() {
                if k != "p50" && k != "p99" {
                    return Err(invalid(
                        d,
                        &format!("{p}/{k}"),
                        "unknown field; allowed: p50, p99",
                    ));
                }
            }
            let p50 = m
                .get("p50")
                .ok_or_else(|| invalid(d, p, "p50 is required"))?;
            let p50 = millis(d, &format!("{p}/p50"), p50)?;
            let p99 = match m.get("p99") {
                Some(x) => millis(d, &format!("{p}/p99"), x)?,
                None => p50,
            };
            if p99 < p50 {
                return Err(invalid(d, &format!("{p}/p99"), "p99 must be at least p50"));
            }
            Ok(Latency {
                p50_ms: p50,
                p99_ms: p99,
            })
        }
        other => Err(invalid(
            d,
            p,
            format!(
                "expected a duration (\"5ms\") or {{p50: 5ms, p99: 80ms}}, found {}",
                json_type(other)
            ),
        )),
    }
}

fn rate(d: &Document, p: &str, v: &Value) -> Result<f64, MeshError> {
    match v.as_f64() {
        Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(invalid(
            d,
            p,
            format!("invalid value {v}: a share from 0.0 to 1.0"),
        )),
    }
}

fn status(d: &Document, p: &str, v: &Value) -> Result<u16, MeshError> {
    match v.as_u64() {
        Some(s) if (200..=599).contains(&s) => Ok(s as u16),
        _ => Err(invalid(
            d,
            p,
            format!("invalid value {v}: an HTTP status from 200 to 599"),
        )),
    }
}

fn size(d: &Document, p: &str, v: &Value) -> Result<usize, MeshError> {
    match v.as_u64() {
        Some(s) if s <= 16 << 20 => Ok(s as usize),
        _ => Err(invalid(
            d,
            p,
            format!("invalid value {v}: a byte count up to 16777216"),
        )),
    }
}

fn parse_demo(d: &Document, base: &str, v: &Value) -> Result<DemoConfig, MeshError> {
    let Some(m) = v.as_object() else {
        return Err(invalid(
            d,
            base,
            format!("expected a mapping, found {}", json_type(v)),
        ));
    };
    for k in m.keys() {
        if !DEMO_KEYS.contains(&k.as_str()) {
            return Err(invalid(
                d,
                &format!("{base}/{k}"),
                format!("unknown field; allowed: {}", DEMO_KEYS.join(", ")),
            ));
        }
    }
    let mut c = DemoConfig::default();
    if let Some(x) = m.get("latency") {
        c.latency = parse_latency(d, &format!("{base}/latency"), x)?;
    }
    if let Some(x) = m.get("failRate") {
        c.fail_rate = rate(d, &format!("{base}/failRate"), x)?;
    }
    if let Some(x) = m.get("failStatus") {
        c.fail_status = status(d, &format!("{base}/failStatus"), x)?;
    }
    if let Some(x) = m.get("payload") {
        c.payload = size(d, &format!("{base}/payload"), x)?;
    }
    match m.get("forward") {
        None => {}
        Some(Value::Bool(b)) => c.forward = *b,
        Some(Value::String(u)) => {
            check_forward_url(d, &format!("{base}/forward"), u)?;
            c.forward = true;
            c.forward_to = Some(u.clone());
        }
        Some(other) => {
            return Err(invalid(
                d,
                &format!("{base}/forward"),
                format!(
                    "expected true/false or a URL such as http://go-demo-8/, found {}",
                    json_type(other)
                ),
            ));
        }
    }
    if let Some(x) = m.get("forwardTo") {
        let p = format!("{base}/forwardTo");
        let u = x
            .as_str()
            .ok_or_else(|| invalid(d, &p, "expected a URL such as http://go-demo-8/"))?;
        check_forward_url(d, &p, u)?;
        c.forward = true;
        c.forward_to = Some(u.to_string());
    }
    if let Some(paths) = m.get("paths") {
        let pp = format!("{base}/paths");
        let pm = paths
            .as_object()
            .ok_or_else(|| invalid(d, &pp, "expected a mapping of path -> behaviour"))?;
        for (path, b) in pm {
            let bp = format!("{pp}/{}", manifest::escape_pointer(path));
            if !path.starts_with('/') {
                return Err(invalid(d, &bp, "a path starts with /"));
            }
            c.paths.insert(path.clone(), parse_path(d, &bp, b)?);
        }
    }
    Ok(c)
}

fn check_forward_url(d: &Document, p: &str, u: &str) -> Result<(), MeshError> {
    match url::Url::parse(u) {
        Ok(parsed) if parsed.scheme() == "http" && parsed.host_str().is_some() => Ok(()),
        _ => Err(invalid(
            d,
            p,
            format!(
                "invalid value {u:?}: an http:// URL naming a mesh service, e.g. http://go-demo-8/"
            ),
        )),
    }
}

fn parse_path(d: &Document, base: &str, v: &Value) -> Result<PathBehaviour, MeshError> {
    let Some(m) = v.as_object() else {
        return Err(invalid(
            d,
            base,
            format!("expected a mapping, found {}", json_type(v)),
        ));
    };
    for k in m.keys() {
        if !PATH_KEYS.contains(&k.as_str()) {
            return Err(invalid(
                d,
                &format!("{base}/{k}"),
                format!("unknown field; allowed: {}", PATH_KEYS.join(", ")),
            ));
        }
    }
    let mut b = PathBehaviour::default();
    if let Some(x) = m.get("latency") {
        b.latency = Some(parse_latency(d, &format!("{base}/latency"), x)?);
    }
    if let Some(x) = m.get("failRate") {
        b.fail_rate = Some(rate(d, &format!("{base}/failRate"), x)?);
    }
    if let Some(x) = m.get("failStatus") {
        b.fail_status = Some(status(d, &format!("{base}/failStatus"), x)?);
    }
    if let Some(x) = m.get("payload") {
        b.payload = Some(size(d, &format!("{base}/payload"), x)?);
    }
    if let Some(rl) = m.get("rateLimit") {
        let p = format!("{base}/rateLimit");
        let r = rl.as_object().ok_or_else(|| {
            invalid(
                d,
                &p,
                "expected {rps: N, burst: N, status: 429, cooldown: 15s}",
            )
        })?;
        for k in r.keys() {
            if !["rps", "burst", "status", "cooldown"].contains(&k.as_str()) {
                return Err(invalid(
                    d,
                    &format!("{p}/{k}"),
                    "unknown field; allowed: rps, burst, status, cooldown",
                ));
            }
        }
        let rps = match r.get("rps").and_then(Value::as_f64) {
            Some(x) if x > 0.0 && x.is_finite() => x,
            _ => {
                return Err(invalid(
                    d,
                    &format!("{p}/rps"),
                    "rps is required: a number > 0",
                ));
            }
        };
        let burst = match r.get("burst") {
            None => rps.ceil().max(1.0) as u32,
            Some(x) => match x.as_u64() {
                Some(n) if (1..=1_000_000).contains(&n) => n as u32,
                _ => {
                    return Err(invalid(
                        d,
                        &format!("{p}/burst"),
                        format!("invalid value {x}: an integer from 1"),
                    ));
                }
            },
        };
        let status = match r.get("status") {
            None => 429,
            Some(x) => status(d, &format!("{p}/status"), x)?,
        };
        let cooldown_ms = match r.get("cooldown") {
            None => 0,
            Some(x) => millis(d, &format!("{p}/cooldown"), x)? as u64,
        };
        b.rate_limit = Some(RateLimit {
            rps,
            burst,
            status,
            cooldown_ms,
        });
    }
    Ok(b)
}

pub(super) fn parse_destination_rule(d: &Document) -> Result<DestinationRule, MeshError> {
    let v = &d.value;
    let host = match v.pointer("/spec/host") {
        Some(Value::String(h)) if !h.is_empty() => h.clone(),
        _ => {
            return Err(invalid(
                d,
                "/spec/host",
                "spec.host is required (DestinationRule)",
            ));
        }
    };
    let mut subsets = Vec::new();
    if let Some(list) = v.pointer("/spec/subsets") {
        let Some(list) = list.as_array() else {
            return Err(invalid(d, "/spec/subsets", "expected a list of subsets"));
        };
        for (i, s) in list.iter().enumerate() {
            let p = format!("/spec/subsets/{i}");
            let name = match s.get("name") {
                Some(Value::String(n)) if !n.is_empty() => n.clone(),
                _ => return Err(invalid(d, &format!("{p}/name"), "each subset needs a name")),
            };
            if subsets.iter().any(|x: &Subset| x.name == name) {
                return Err(invalid(
                    d,
                    &format!("{p}/name"),
                    format!("a second subset named {name:?}"),
                ));
            }
            let labels = string_map(d, &format!("{p}/labels"), s.get("labels"))?;
            let traffic_policy = s.get("trafficPolicy").cloned();
            subsets.push(Subset {
                name,
                labels,
                traffic_policy,
            });
        }
    }
    Ok(DestinationRule {
        name: d.name().to_string(),
        namespace: d.namespace().unwrap_or("default").to_string(),
        host,
        subsets,
        traffic_policy: v.pointer("/spec/trafficPolicy").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {name: shop}\nspec:\n  services:\n  - name: go-demo-8\n    replicas: 3\n    labels: {release: primary}\n    demo:\n      latency: {p50: 5ms, p99: 80ms}\n      failRate: 0.5\n      paths:\n        /limiter: {rateLimit: {rps: 5, burst: 10, status: 429, cooldown: 15s}}\n  - name: repeater\n    demo: {forward: true}\n  - name: app\n    command: [./app, --port, '{port}']\n---\napiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n";

    #[test]
    fn reads_the_design_example() {
        let l = MeshSpec::parse(MESH, "m.yaml").expect("parse");
        assert_eq!(l.spec.services.len(), 3);
        assert_eq!(l.spec.services[0].replicas, 3);
        assert_eq!(l.spec.services[0].port, 80);
        let Workload::Demo(c) = &l.spec.services[0].workload else {
            panic!("demo")
        };
        assert_eq!(
            c.latency,
            Latency {
                p50_ms: 5.0,
                p99_ms: 80.0
            }
        );
        assert_eq!(
            c.paths["/limiter"].rate_limit.map(|r| r.cooldown_ms),
            Some(15_000)
        );
        assert_eq!(l.notes.len(), 1, "{:?}", l.notes);
        assert!(l.notes[0].contains("Gateway gw: skipped"), "{:?}", l.notes);
    }

    #[test]
    fn errors_name_file_line_field() {
        let bad = MESH.replace("failRate: 0.5", "failRate: 5");
        let e = MeshSpec::parse(&bad, "m.yaml")
            .expect_err("bad")
            .to_string();
        assert!(
            e.starts_with("m.yaml:11: spec.services[0].demo.failRate: invalid value 5"),
            "{e}"
        );
        let bad = MESH.replace("replicas: 3", "replica: 3");
        let e = MeshSpec::parse(&bad, "m.yaml")
            .expect_err("bad")
            .to_string();
        assert!(
            e.contains("m.yaml:7: spec.services[0].replica: unknown field"),
            "{e}"
        );
        let bad = MESH.replace("'{port}'", "'8080'");
        let e = MeshSpec::parse(&bad, "m.yaml")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("spec.services[2].command"), "{e}");
        assert!(
            MeshSpec::parse("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", "x").is_err()
        );
    }
}
