//! What `meshdrill mesh get` shows: the services and their replicas (up or down, ports,
//! PIDs), the Host names the ingress answers, the routes as Envoy runs them (read from
//! its config dump, not from the files meshdrill wrote) and the active drills — the local
//! equivalent of `kubectl get vs` plus `istioctl proxy-config routes`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::MeshError;
use super::control::{drills_in, hops};
use super::envoy;
use super::process;
use super::state::StateDir;
use super::translate::{FAULT_FILTER, INGRESS_ROUTES, sidecar_routes};

/// The whole picture of a running mesh.
#[derive(Debug, Clone, Serialize)]
pub struct MeshView {
    pub name: String,
    pub dir: String,
    /// The meshdrill process that runs the mesh, and whether it still runs.
    pub owner_pid: u32,
    pub owner_running: bool,
    pub ingress_url: String,
    pub admin: String,
    /// The Host names the ingress routes (any other gets 404 there).
    pub ingress_hosts: Vec<String>,
    /// Every ingress listener (one per Gateway server port; the first is
    /// `ingress_url`), with the Host names it routes.
    pub ingress_listeners: Vec<IngressView>,
    pub services: Vec<ServiceView>,
    /// Active route configurations and their versions.
    pub route_versions: BTreeMap<String, String>,
    pub routes: Vec<RouteView>,
    pub drills: Vec<DrillView>,
    /// The listeners whose traffic `mesh stats` counts.
    pub hops: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngressView {
    /// The Gateway server port it serves (80 without Gateway objects).
    pub server_port: u16,
    pub url: String,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    /// The service's sidecar (outbound) listener, `127.0.0.1:PORT`.
    pub outbound: Option<String>,
    pub replicas: Vec<ReplicaView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    pub index: usize,
    pub port: u16,
    /// `None` while killed.
    pub pid: Option<u32>,
    pub up: bool,
    pub labels: BTreeMap<String, String>,
}

/// One route of Envoy's route configuration.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    /// `ingress` (the gateway); `mesh` (every sidecar, when they all have the same
    /// route table); else the sidecar route configurations (`sidecar_<service>`,
    /// comma-separated) that share this one.
    pub hop: String,
    /// The virtual host: `namespace/VirtualService`, or `SERVICE:PORT` for Istio's
    /// default route of a service no VirtualService covers.
    pub virtual_host: String,
    pub domains: Vec<String>,
    pub name: String,
    #[serde(rename = "match")]
    pub matches: String,
    pub destinations: Vec<Destination>,
    pub fault: Option<String>,
    pub retries: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    pub cluster: String,
    /// Percent of the route's traffic.
    pub weight: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillView {
    pub virtual_service: String,
    pub run_id: Option<String>,
    pub owner_pid: Option<u32>,
    pub expires: Option<jiff::Timestamp>,
    pub changes: Vec<String>,
    /// Why the drill record cannot be read, if it cannot.
    pub error: Option<String>,
}

/// Reads the state of the mesh in `dir` and Envoy's active routes.
pub fn view(dir: &std::path::Path) -> Result<MeshView, MeshError> {
    let sd = StateDir::new(dir);
    let st = sd.read()?;
    let owner_running = process::is_ours(&st.owner);
    if !owner_running {
        return Err(MeshError::State {
            dir: dir.to_path_buf(),
            reason: format!(
                "the mesh is not running (its meshdrill process {} is gone): start it again with `meshdrill mesh up FILE --dir {}`",
                st.owner.pid,
                dir.display()
            ),
        });
    }
    let mut services = Vec::new();
    for name in st.spec.service_names() {
        let replicas = st
            .spec
            .replicas_of(name)
            .iter()
            .enumerate()
            .map(|(index, (entry, _))| {
                let rec = st
                    .replicas
                    .iter()
                    .find(|r| r.service == name && r.index == index);
                let proc_ = rec.and_then(|r| r.process.as_ref());
                ReplicaView {
                    index,
                    port: rec.map_or(0, |r| r.port),
                    pid: proc_.map(|p| p.pid),
                    up: proc_.is_some_and(process::is_ours),
                    labels: entry.labels.clone(),
                }
            })
            .collect();
        services.push(ServiceView {
            name: name.to_string(),
            outbound: st.sidecar_ports.get(name).map(|p| format!("127.0.0.1:{p}")),
            replicas,
        });
    }
    let dump = envoy::get_json(st.admin, "/config_dump?resource=dynamic_route_configs")?;
    let mut route_versions = BTreeMap::new();
    let mut routes = Vec::new();
    let mut ingress_hosts = Vec::new();
    let configs: Vec<&Value> = arr(dump.get("configs")).collect();
    let name_of = |c: &Value| {
        c.pointer("/route_config/name")
            .and_then(Value::as_str)
            .map(String::from)
    };
    for c in &configs {
        if let (Some(n), Some(v)) = (name_of(c), c.get("version_info").and_then(Value::as_str)) {
            route_versions.insert(n, v.to_string());
        }
    }
    let urls = st.ingress_urls();
    let mut ingress_listeners: Vec<IngressView> = Vec::new();
    for l in super::translate::ingress_listeners(&st.spec) {
        let url = urls
            .iter()
            .find(|(p, _)| *p == l.server_port)
            .map(|(_, u)| u.clone())
            .unwrap_or_default();
        let hosts = configs
            .iter()
            .filter(|c| name_of(c).as_deref() == Some(l.name.as_str()))
            .flat_map(|c| arr(c.pointer("/route_config/virtual_hosts")))
            .flat_map(|vh| arr(vh.get("domains")))
            .filter_map(Value::as_str)
            .filter(|d| !d.contains(':') && *d != "*")
            .map(String::from)
            .collect();
        ingress_listeners.push(IngressView {
            server_port: l.server_port,
            url,
            hosts,
        });
    }
    for (hop, c) in route_groups(&st.spec, &configs) {
        for vh in arr(c.pointer("/route_config/virtual_hosts")) {
            let domains: Vec<String> = arr(vh.get("domains"))
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            if hop == INGRESS_ROUTES {
                for d in domains.iter().filter(|d| !d.contains(':')) {
                    if !ingress_hosts.contains(d) {
                        ingress_hosts.push(d.clone());
                    }
                }
            }
            for r in arr(vh.get("routes")) {
                routes.push(route_view(&hop, vh, &domains, r));
            }
        }
    }
    let drills = drills_in(&st.spec, None)
        .into_iter()
        .map(|d| {
            let virtual_service = format!("{}/{}", d.namespace, d.name);
            match d.record {
                Ok(r) => DrillView {
                    virtual_service,
                    run_id: Some(r.run_id),
                    owner_pid: Some(r.owner.pid),
                    expires: Some(r.expires),
                    changes: r.changes.into_iter().map(|c| c.change).collect(),
                    error: None,
                },
                Err(e) => DrillView {
                    virtual_service,
                    run_id: None,
                    owner_pid: None,
                    expires: None,
                    changes: Vec::new(),
                    error: Some(e),
                },
            }
        })
        .collect();
    Ok(MeshView {
        name: st.spec.name.clone(),
        dir: dir.display().to_string(),
        owner_pid: st.owner.pid,
        owner_running,
        ingress_url: st.ingress_url(),
        admin: format!("http://{}", st.admin),
        ingress_hosts,
        ingress_listeners,
        services,
        route_versions,
        routes,
        drills,
        hops: hops(&st.spec),
    })
}

/// The route configurations to show, each with the hop it is shown as: the ingress
/// first, then the sidecars' tables — those that are identical shown once, as `mesh`
/// when every sidecar has the same table (no `sourceLabels` / `sourceNamespace` tells
/// them apart), else as the comma-separated route configuration names sharing it.
fn route_groups<'a>(spec: &super::MeshSpec, configs: &[&'a Value]) -> Vec<(String, &'a Value)> {
    let find = |name: &str| {
        configs
            .iter()
            .copied()
            .find(|c| c.pointer("/route_config/name").and_then(Value::as_str) == Some(name))
    };
    let mut out = Vec::new();
    for l in super::translate::ingress_listeners(spec) {
        let name = if l.primary {
            INGRESS_ROUTES.to_string()
        } else {
            l.name
        };
        if let Some(c) = find(&name) {
            out.push((name, c));
        }
    }
    let mut groups: Vec<(Vec<String>, &Value)> = Vec::new();
    let services = spec.service_names();
    for s in &services {
        let name = sidecar_routes(s);
        let Some(c) = find(&name) else { continue };
        let vhosts = c.pointer("/route_config/virtual_hosts");
        match groups
            .iter_mut()
            .find(|(_, g)| g.pointer("/route_config/virtual_hosts") == vhosts)
        {
            Some((names, _)) => names.push(name),
            None => groups.push((vec![name], c)),
        }
    }
    let shared = groups.len() == 1 && groups[0].0.len() == services.len();
    for (names, c) in groups {
        let hop = if shared {
            "mesh".to_string()
        } else {
            names.join(",")
        };
        out.push((hop, c));
    }
    out
}

fn arr(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn route_view(hop: &str, vh: &Value, domains: &[String], r: &Value) -> RouteView {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
    let m = r.get("match");
    let mut parts = Vec::new();
    if let Some(p) = s(m.and_then(|m| m.get("prefix"))) {
        parts.push(format!("prefix {p}"));
    }
    if let Some(p) = s(m.and_then(|m| m.get("path"))) {
        parts.push(format!("path {p}"));
    }
    if let Some(p) = s(m.and_then(|m| m.pointer("/safe_regex/regex"))) {
        parts.push(format!("regex {p}"));
    }
    for h in arr(m.and_then(|m| m.get("headers"))) {
        let name = s(h.get("name")).unwrap_or_default();
        let how = h
            .get("string_match")
            .and_then(Value::as_object)
            .and_then(|o| {
                o.iter()
                    .find(|(k, _)| *k != "ignore_case")
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("safe_regex", v) => {
                            format!("~ {}", v.get("regex").and_then(Value::as_str).unwrap_or(""))
                        }
                        ("exact", Value::String(x)) => format!("= {x}"),
                        (k, Value::String(x)) => format!("{k} {x}"),
                        (k, v) => format!("{k} {v}"),
                    })
            })
            .unwrap_or_else(|| {
                if h.get("present_match").is_some() {
                    "present".into()
                } else {
                    "?".into()
                }
            });
        parts.push(format!("header {name} {how}"));
    }
    let action = r.get("route");
    let destinations = match action {
        Some(a) if a.get("weighted_clusters").is_some() => {
            let cs: Vec<(String, u64)> = arr(a.pointer("/weighted_clusters/clusters"))
                .map(|c| {
                    (
                        s(c.get("name")).unwrap_or_default(),
                        c.get("weight").and_then(Value::as_u64).unwrap_or(0),
                    )
                })
                .collect();
            let total: u64 = cs.iter().map(|(_, w)| w).sum();
            cs.into_iter()
                .map(|(cluster, w)| Destination {
                    cluster,
                    weight: (w * 100).checked_div(total).unwrap_or(0),
                })
                .collect()
        }
        Some(a) => s(a.get("cluster"))
            .map(|cluster| {
                vec![Destination {
                    cluster,
                    weight: 100,
                }]
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let fault = r
        .pointer(&format!(
            "/typed_per_filter_config/{}",
            FAULT_FILTER.replace('/', "~1")
        ))
        .map(describe_fault);
    let retries = action.and_then(|a| a.get("retry_policy")).map(|p| {
        let n = p.get("num_retries").and_then(Value::as_u64).unwrap_or(1);
        let on = s(p.get("retry_on")).unwrap_or_default();
        match s(p.get("per_try_timeout")) {
            Some(t) => format!("{n} on {on}, per try {t}"),
            None => format!("{n} on {on}"),
        }
    });
    let timeout = s(action.and_then(|a| a.get("timeout"))).filter(|t| t != "0s");
    let direct = r
        .get("direct_response")
        .map(|d| {
            format!(
                "direct response {}",
                d.get("status").and_then(Value::as_u64).unwrap_or(0)
            )
        })
        .or_else(|| r.get("redirect").map(describe_redirect));
    RouteView {
        hop: hop.to_string(),
        virtual_host: s(vh.get("name")).unwrap_or_default(),
        domains: domains.to_vec(),
        name: s(r.get("name")).unwrap_or_default(),
        matches: if parts.is_empty() {
            "any".into()
        } else {
            parts.join(", ")
        },
        destinations: if destinations.is_empty() {
            direct
                .map(|d| {
                    vec![Destination {
                        cluster: d,
                        weight: 100,
                    }]
                })
                .unwrap_or_default()
        } else {
            destinations
        },
        fault,
        retries,
        timeout,
    }
}

/// `abort 503 on 50%`, `delay 2s on 10%`, or both.
fn describe_fault(f: &Value) -> String {
    let pct = |p: Option<&Value>| {
        let n = p
            .and_then(|p| p.get("numerator"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let d = match p.and_then(|p| p.get("denominator")).and_then(Value::as_str) {
            Some("TEN_THOUSAND") => 10_000.0,
            Some("MILLION") => 1_000_000.0,
            _ => 100.0,
        };
        format!("{}%", n * 100.0 / d)
    };
    let mut out = Vec::new();
    if let Some(a) = f.get("abort") {
        let code = a
            .get("http_status")
            .and_then(Value::as_u64)
            .map(|c| c.to_string())
            .or_else(|| a.get("grpc_status").map(|g| format!("grpc {g}")))
            .unwrap_or_else(|| "?".into());
        out.push(format!("abort {code} on {}", pct(a.get("percentage"))));
    }
    if let Some(d) = f.get("delay") {
        let t = d.get("fixed_delay").and_then(Value::as_str).unwrap_or("?");
        out.push(format!("delay {t} on {}", pct(d.get("percentage"))));
    }
    out.join(", ")
}

/// `redirect FOUND to new.acme.com/new`: a redirect route's answer, as `mesh get`
/// shows it in place of a destination.
fn describe_redirect(d: &Value) -> String {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
    let mut to = String::new();
    if !s("scheme_redirect").is_empty() {
        to.push_str(&format!("{}://", s("scheme_redirect")));
    }
    to.push_str(s("host_redirect"));
    if let Some(p) = d.get("port_redirect").and_then(Value::as_u64) {
        to.push_str(&format!(":{p}"));
    }
    to.push_str(s("path_redirect"));
    let code = d
        .get("response_code")
        .and_then(Value::as_str)
        .unwrap_or("MOVED_PERMANENTLY");
    if to.is_empty() {
        format!("redirect {code}")
    } else {
        format!("redirect {code} to {to}")
    }
}
