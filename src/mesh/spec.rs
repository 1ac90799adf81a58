//! The mesh file: services, replicas, the demo service's behaviour, and the Istio
//! objects (VirtualServices, DestinationRules) that route between them.
//!
//! ```yaml
//! apiVersion: meshdrill.io/v1alpha1
//! kind: Mesh
//! metadata: {name: shop}
//! spec:
//!   ingress: {port: 0}
//!   services:
//!   - name: go-demo-8
//!     port: 80
//!     replicas: 3
//!     labels: {release: primary}
//!     demo: {latency: 5ms, failRate: 0.0, failStatus: 500}
//!   - name: repeater
//!     demo: {forward: true}
//!   - name: my-app
//!     command: ["./my-app", "--port", "{port}"]
//!   inboundSidecars: true   # default: each replica behind its own inbound sidecar
//! ```
//! Several entries with the same `name` are one service with several "deployments"
//! (e.g. `reviews` v1 and v2 with different `labels`), as Kubernetes Deployments
//! behind one Service; DestinationRule subsets pick replicas by these labels.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MeshError;
use super::parse::{invalid, parse_destination_rule, parse_mesh};
use crate::istio::manifest::{self, Document, Source};

/// A whole mesh: services and the Istio objects routing between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    pub name: String,
    /// Namespace of short host names (`default`).
    pub namespace: String,
    /// 0 = a free loopback port.
    pub ingress_port: u16,
    /// `spec.inboundSidecars` (default true): every replica gets its server-side
    /// sidecar, as an Istio pod has, and callers reach the replica through it; false
    /// sends callers straight to the replica processes.
    #[serde(default = "yes")]
    pub inbound_sidecars: bool,
    pub services: Vec<ServiceSpec>,
    /// VirtualService objects as read (and as changed since, with their drill record).
    pub virtual_services: Vec<Value>,
    pub destination_rules: Vec<DestinationRule>,
    /// Gateway objects as read (absent in state files written before they were read).
    #[serde(default)]
    pub gateways: Vec<super::gateway::Gateway>,
}

/// One service entry (a "deployment"): replicas of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// The host name VirtualServices use.
    pub name: String,
    /// The port destinations name (informational: replicas get free loopback ports).
    pub port: u16,
    pub replicas: usize,
    pub labels: BTreeMap<String, String>,
    pub workload: Workload,
}

/// What a replica runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Workload {
    /// meshdrill's built-in demo service.
    Demo(DemoConfig),
    /// A user's command; `{port}` in any argument is replaced by the replica's port.
    Command(Vec<String>),
}

/// A latency distribution: fixed when `p50 == p99`, else log-normal through both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The demo service's behaviour (fortio-server-like).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoConfig {
    pub latency: Latency,
    /// Share (0–1) of answers with `fail_status`.
    pub fail_rate: f64,
    pub fail_status: u16,
    /// Response body size in bytes (at least the greeting line).
    pub payload: usize,
    /// Forward mode: calls `?addr=URL` (or `forward_to` when no addr is given) through
    /// the mesh and answers with its response, like go-demo-8's `repeater`.
    pub forward: bool,
    pub forward_to: Option<String>,
    /// Behaviour of particular paths (exact match).
    pub paths: BTreeMap<String, PathBehaviour>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            latency: Latency::default(),
            fail_rate: 0.0,
            fail_status: 500,
            payload: 0,
            forward: false,
            forward_to: None,
            paths: BTreeMap::new(),
        }
    }
}

/// Overrides for one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PathBehaviour {
    pub latency: Option<Latency>,
    pub fail_rate: Option<f64>,
    pub fail_status: Option<u16>,
    pub payload: Option<usize>,
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket: `rps` refill, `burst` capacity; when empty every request gets
/// `status` for `cooldown_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub rps: f64,
    pub burst: u32,
    pub status: u16,
    pub cooldown_ms: u64,
}

/// A DestinationRule: subsets by labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationRule {
    pub name: String,
    /// The DestinationRule's namespace (short hosts resolve in it).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub host: String,
    pub subsets: Vec<Subset>,
    /// `spec.trafficPolicy` as read (translated to cluster settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Value>,
}

fn yes() -> bool {
    true
}

fn default_namespace() -> String {
    "default".to_string()
}

/// One subset of a DestinationRule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The subset's own `trafficPolicy`, overriding the rule's per section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Value>,
}

/// A mesh read from files, with notes about documents that were skipped.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: MeshSpec,
    pub notes: Vec<String>,
}

impl MeshSpec {
    /// Reads mesh files and Istio manifests (multi-document YAML or JSON).
    pub fn load(files: &[PathBuf]) -> Result<Loaded, MeshError> {
        let mut docs = Vec::new();
        for f in files {
            docs.extend(manifest::read_file(f)?);
        }
        Self::from_documents(&docs)
    }

    /// Parses text (e.g. an embedded scenario); `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Loaded, MeshError> {
        let docs = manifest::parse_str(text, Source(source.into()))?;
        Self::from_documents(&docs)
    }

    /// Builds a mesh from documents: exactly one `kind: Mesh`, any number of
    /// VirtualServices, DestinationRules and Gateways; other kinds are skipped with a
    /// note.
    pub fn from_documents(docs: &[Document]) -> Result<Loaded, MeshError> {
        let mut notes = Vec::new();
        let mut mesh_doc: Option<&Document> = None;
        let mut vss = Vec::new();
        let mut drs = Vec::new();
        let mut gws = Vec::new();
        for d in docs {
            match (d.kind(), d.api_version()) {
                ("Mesh", super::API_VERSION) => {
                    if let Some(first) = mesh_doc {
                        return Err(MeshError::NoMesh(format!(
                            "{}: a second kind: Mesh (the first is at {}); give one mesh",
                            d.locate(""),
                            first.locate("")
                        )));
                    }
                    mesh_doc = Some(d);
                }
                ("Mesh", other) => {
                    return Err(invalid(
                        d,
                        "/apiVersion",
                        format!("unsupported apiVersion {other:?} for kind Mesh: use {}", super::API_VERSION),
                    ));
                }
                _ if d.is_virtual_service() => {
                    istio_verdict(d, &mut notes)?;
                    vss.push(d);
                }
                ("DestinationRule", api) if api.starts_with("networking.istio.io/") => {
                    istio_verdict(d, &mut notes)?;
                    drs.push(parse_destination_rule(d)?);
                }
                ("Gateway", api)
                    if api.starts_with("networking.istio.io/")
                        && d.value.pointer("/spec/servers").is_none() =>
                {
                    notes.push(format!(
                        "{}: Gateway {}: skipped (no spec.servers; Istio rejects a Gateway without servers)",
                        d.locate(""),
                        d.name()
                    ));
                }
                ("Gateway", api) if api.starts_with("networking.istio.io/") => {
                    istio_verdict(d, &mut notes)?;
                    let g = super::gateway::parse_gateway(d)?;
                    if gws
                        .iter()
                        .any(|x: &super::gateway::Gateway| x.full_name() == g.full_name())
                    {
                        return Err(invalid(
                            d,
                            "/metadata/name",
                            format!("a second Gateway named {:?}", g.full_name()),
                        ));
                    }
                    gws.push(g);
                }
                (kind, _) => notes.push(format!(
                    "{}: {kind} {}: skipped (the local mesh reads Mesh, VirtualService, DestinationRule and Gateway)",
                    d.locate(""),
                    d.name()
                )),
            }
        }
        let Some(md) = mesh_doc else {
            return Err(MeshError::NoMesh(format!(
                "no `kind: Mesh` document (apiVersion {}) in the given files; see DESIGN.md \"The local mesh\"",
                super::API_VERSION
            )));
        };
        let mut spec = parse_mesh(md)?;
        let mut seen = Vec::<(String, String)>::new();
        for d in vss {
            let key = (
                d.namespace().unwrap_or("").to_string(),
                d.name().to_string(),
            );
            if seen.contains(&key) {
                return Err(invalid(
                    d,
                    "/metadata/name",
                    format!("a second VirtualService named {:?}", d.name()),
                ));
            }
            seen.push(key);
            spec.virtual_services.push(d.value.clone());
        }
        spec.destination_rules = drs;
        spec.gateways = gws;
        Ok(Loaded { spec, notes })
    }

    /// Service names, each once, in file order.
    pub fn service_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in &self.services {
            if !out.contains(&s.name.as_str()) {
                out.push(&s.name);
            }
        }
        out
    }

    /// `(entry, index within the service)` for every replica of `service`, in order.
    pub fn replicas_of(&self, service: &str) -> Vec<(&ServiceSpec, usize)> {
        let mut out = Vec::new();
        for s in self.services.iter().filter(|s| s.name == service) {
            for _ in 0..s.replicas {
                let n = out.len();
                out.push((s, n));
            }
        }
        out
    }
}

/// Istio's validation of an object the local mesh reads (VirtualService,
/// DestinationRule): the first error, or what Istio accepts but Envoy rejects, fails
/// the load; warnings become notes. Nothing Istio would reject reaches Envoy.
fn istio_verdict(d: &Document, notes: &mut Vec<String>) -> Result<(), MeshError> {
    let issues = crate::istio::validate(d).unwrap_or_default();
    if let Some(i) = issues.iter().find(|i| i.blocks_envoy()) {
        return Err(MeshError::Invalid {
            location: i.location.clone(),
            field: i.field.clone(),
            message: format!("{} ({} {})", i.message, d.kind(), d.name()),
        });
    }
    for i in issues {
        notes.push(format!(
            "{}: {} {}: {}: {}",
            i.location,
            d.kind(),
            d.name(),
            i.field,
            i.message
        ));
    }
    Ok(())
}
