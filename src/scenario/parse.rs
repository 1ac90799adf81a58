//! Reading a scenario file into a [`Scenario`], with the file, line and field of every
//! problem. Nothing is started before the whole file is known to be valid.
//!
//! What it owns: the YAML form of a scenario (see `schema/scenario.json`) and every rule
//! a scenario must follow on its own. What it must not do: start, connect to or change
//! anything. The only I/O is reading the file and checking that `spec.target.mesh`
//! exists.
//!
//! The first problem found is reported as `file:line: field: message`, with the dotted
//! field path (`spec.method[2].hold.duration`) and what to write instead.

mod check;
mod load;
mod phases;
mod slos;
mod steps;
#[cfg(test)]
mod tests;
mod values;

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use self::load::is_host_pattern;
use self::values::{Obj, item, shown};
use super::model::{Scenario, SteadyState, TargetSpec};
use crate::istio::manifest::{self, Document, ManifestError};
use crate::istio::validate::dotted;
use crate::load::Target;

pub use check::check_against_mesh;

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read or is not YAML/JSON.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The file holds no `kind: Scenario` document (or more than one).
    #[error("{source_name}: {message}")]
    NotAScenario {
        source_name: String,
        message: String,
    },
    /// A field is missing, unknown or has a value that cannot be used.
    #[error("{location}: {field}: {message}")]
    Invalid {
        /// `file:line`.
        location: String,
        /// The dotted field path (`spec.method[2].hold.duration`).
        field: String,
        message: String,
    },
}

/// Whether a document is a scenario (`kind: Scenario` of [`super::API_VERSION`]'s group).
pub fn is_scenario(doc: &Document) -> bool {
    doc.kind() == super::KIND && doc.api_version().starts_with("meshdrill.io/")
}

/// Reads and checks the one scenario in `path`. A relative mesh file in
/// `spec.target.mesh` resolves against `path`'s directory.
pub fn parse_file(path: &Path) -> Result<Scenario, ScenarioError> {
    let docs = manifest::read_file(path)?;
    let source_name = path.display().to_string();
    let not_a_scenario = |message: String| ScenarioError::NotAScenario {
        source_name: source_name.clone(),
        message,
    };
    let describe = |d: &Document| {
        let name = d.name();
        let what = if name.is_empty() {
            d.kind().to_string()
        } else {
            format!("{} {name}", d.kind())
        };
        format!("{what} (at {})", d.locate(""))
    };
    let scenarios: Vec<&Document> = docs.iter().filter(|d| is_scenario(d)).collect();
    let others: Vec<String> = docs
        .iter()
        .filter(|d| !is_scenario(d))
        .map(describe)
        .collect();
    let doc = match scenarios.as_slice() {
        [] if others.is_empty() => {
            return Err(not_a_scenario(format!(
                "the file is empty: a scenario file holds one document with apiVersion: {} and kind: {}",
                super::API_VERSION,
                super::KIND
            )));
        }
        [] => {
            return Err(not_a_scenario(format!(
                "no kind: {} here; the file has {}. Run a scenario file (apiVersion: {}, kind: {})",
                super::KIND,
                others.join(", "),
                super::API_VERSION,
                super::KIND
            )));
        }
        [one] => *one,
        several => {
            let list: Vec<String> = several.iter().map(|d| describe(d)).collect();
            return Err(not_a_scenario(format!(
                "{} scenarios in one file ({}): put each in a file of its own",
                several.len(),
                list.join(", ")
            )));
        }
    };
    if !others.is_empty() {
        return Err(not_a_scenario(format!(
            "a scenario file holds only the scenario; it also has {}: put meshes and Istio objects in the mesh file that spec.target.mesh names",
            others.join(", ")
        )));
    }
    let base = path.parent().unwrap_or(Path::new(""));
    parse_document(doc, base)
}

/// Checks one `kind: Scenario` document; `base` is the directory relative paths
/// resolve against.
pub fn parse_document(doc: &Document, base: &Path) -> Result<Scenario, ScenarioError> {
    Parser {
        d: doc,
        hosts: Vec::new(),
        slos: Vec::new(),
        recovery: Vec::new(),
        relative_ok: false,
        has_load: false,
    }
    .scenario(base)
}

// === Keys ===

const TOP_KEYS: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];
const SPEC_KEYS: [&str; 9] = [
    "target",
    "targets",
    "load",
    "confidence",
    "slos",
    "steadyState",
    "method",
    "stopConditions",
    "rollbacks",
];
const CLUSTER_KEYS: [&str; 4] = ["context", "namespace", "kubeconfig", "ingress"];
/// The keys of a load (`spec.load`, a flood, a search's flood).
const LOAD_KEYS: [&str; 8] = [
    "url",
    "method",
    "headers",
    "body",
    "rate",
    "connections",
    "timeout",
    "http2",
];
const SLO_KEYS: [&str; 10] = [
    "name",
    "metric",
    "prometheus",
    "objective",
    "latency",
    "statuses",
    "slo",
    "consecutive",
    "over",
    "allowBad",
];
/// The keys of an SLO's `prometheus`.
const PROM_KEYS: [&str; 3] = ["url", "query", "objective"];
const STEADY_KEYS: [&str; 3] = ["duration", "before", "after"];
const STOP_KEYS: [&str; 4] = ["slo", "below", "above", "for"];

const DEFAULT_CONFIDENCE: f64 = 0.95;
const DEFAULT_STEADY: Duration = Duration::from_secs(5);

/// The parser of one document: the document (for locations) and what later parts
/// of the spec are checked against.
struct Parser<'d> {
    pub d: &'d Document,
    /// `spec.targets`.
    pub hosts: Vec<String>,
    /// Names of `spec.slos`.
    pub slos: Vec<String>,
    /// Names of the `recovery_time` ones among them (judged after the drill, never in
    /// a phase).
    pub recovery: Vec<String>,
    /// Whether relative throughput SLOs can be judged (`spec.load` has a rate).
    pub relative_ok: bool,
    /// Whether `spec.load` is given.
    pub has_load: bool,
}

type R<T> = Result<T, ScenarioError>;

impl Parser<'_> {
    fn err(&self, p: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            location: self.d.locate(p),
            field: dotted(p),
            message: message.into(),
        }
    }

    fn at(&self, p: &str) -> String {
        self.d.locate(p)
    }

    fn scenario(&mut self, base: &Path) -> R<Scenario> {
        let root = self.mapping(
            "",
            &self.d.value,
            &TOP_KEYS,
            "apiVersion: meshdrill.io/v1alpha1, kind: Scenario, metadata, spec",
        )?;
        match root.m.get("apiVersion") {
            Some(Value::String(s)) if s == super::API_VERSION => {}
            Some(v) => {
                return Err(self.err(
                    "/apiVersion",
                    format!(
                        "{} is not a scenario version this meshdrill reads: write apiVersion: {}",
                        shown(v),
                        super::API_VERSION
                    ),
                ));
            }
            None => {
                return Err(self.err(
                    "/apiVersion",
                    format!("apiVersion is required: {}", super::API_VERSION),
                ));
            }
        }
        if root.m.get("kind").and_then(Value::as_str) != Some(super::KIND) {
            return Err(self.err(
                "/kind",
                format!("this is not a scenario: write kind: {}", super::KIND),
            ));
        }
        let (mp, mv) = self.req(
            &root,
            "metadata",
            "a mapping with name, e.g. {name: network-failure}",
        )?;
        let meta = self.mapping(&mp, mv, &["name"], "{name: network-failure}")?;
        let name = self
            .req_str(&meta, "name", "the scenario's name, e.g. network-failure")?
            .to_string();

        let (sp, sv) = self.req(&root, "spec", "a mapping with target, method and so on")?;
        let spec = self.mapping(
            &sp,
            sv,
            &SPEC_KEYS,
            "{target: {mesh: mesh.yaml}, method: [...]}",
        )?;

        let target = self.target(&spec, base)?;
        self.hosts = self.targets(&spec)?;

        let load = match spec.get("load") {
            None => None,
            Some((p, v)) => {
                let o =
                    self.mapping(&p, v, &LOAD_KEYS, "{url: \"http://{ingress}/\", rate: 100}")?;
                Some(self.load(&o, false)?)
            }
        };
        self.has_load = load.is_some();
        self.relative_ok = load.as_ref().is_some_and(|l| l.rate.is_some());

        let confidence = match spec.get("confidence") {
            None => DEFAULT_CONFIDENCE,
            Some((p, v)) => {
                let c = self.share(&p, v)?;
                if !(0.5..=0.9999).contains(&c) {
                    return Err(self.err(
                        &p,
                        format!(
                            "invalid confidence {}: from 50% to 99.99% (0.5 to 0.9999); 95% is usual",
                            shown(v)
                        ),
                    ));
                }
                c
            }
        };

        let (slos, raw_slos) = match spec.get("slos") {
            None => (Vec::new(), Vec::new()),
            Some((p, v)) => self.slos(&p, v, self.relative_ok, "spec.load")?,
        };
        if !slos.is_empty() && load.is_none() {
            return Err(self.err(
                &spec.at("slos"),
                "SLOs judge the background load and there is none: add spec.load (e.g. {url: \"http://{ingress}/\", rate: 100}) or remove spec.slos",
            ));
        }
        self.slos = slos.iter().map(|o| o.name.clone()).collect();
        self.recovery = slos
            .iter()
            .filter(|o| matches!(o.metric, crate::slo::Metric::RecoveryTime { .. }))
            .map(|o| o.name.clone())
            .collect();

        let steady_state = spec
            .get("steadyState")
            .map(|(p, v)| self.steady_state(&p, v))
            .transpose()?;

        let (mp, mv) = self.req(
            &spec,
            "method",
            "the steps of the drill, e.g. [{fault: ...}, {hold: 10s}, {clear: my-vs}]",
        )?;
        let list = self.list(&mp, mv, "[{fault: ...}, {hold: 10s}]")?;
        if list.is_empty() {
            return Err(self.err(
                &mp,
                "the method needs at least one step, e.g. [{fault: ...}, {hold: 10s}]",
            ));
        }
        let mut method = Vec::new();
        for (i, v) in list.iter().enumerate() {
            method.push(self.step(&item(&mp, i), v, i, false)?);
        }

        let mut stop_conditions = Vec::new();
        if let Some((p, v)) = spec.get("stopConditions") {
            let list = self.list(&p, v, "[{slo: availability, below: 90%, for: 3s}]")?;
            for (i, v) in list.iter().enumerate() {
                stop_conditions.push(self.stop_condition(&item(&p, i), v, &slos, &raw_slos)?);
            }
        }

        let mut rollbacks = Vec::new();
        if let Some((p, v)) = spec.get("rollbacks") {
            let list = self.list(&p, v, "[{clear: my-vs}]")?;
            for (i, v) in list.iter().enumerate() {
                rollbacks.push(self.step(&item(&p, i), v, i, true)?);
            }
        }

        Ok(Scenario {
            name,
            source: self.d.source.to_string(),
            target,
            allowed_hosts: self.hosts.clone(),
            load,
            slos,
            confidence,
            steady_state,
            method,
            stop_conditions,
            rollbacks,
        })
    }

    fn target(&self, spec: &Obj<'_>, base: &Path) -> R<TargetSpec> {
        const EXAMPLE: &str =
            "{mesh: meshes/shop.yaml} or {cluster: {context: minikube, namespace: shop}}";
        let (p, v) = self.req(spec, "target", &format!("where the drill runs: {EXAMPLE}"))?;
        let t = self.mapping(&p, v, &["mesh", "cluster"], EXAMPLE)?;
        let Some((key, p, v)) =
            self.pick(&t, &["mesh", "cluster"], true, "where the drill runs")?
        else {
            return Err(self.err(&t.p, format!("give mesh or cluster: {EXAMPLE}")));
        };
        if key == "mesh" {
            let s = self.string(
                &p,
                v,
                "the path of a kind: Mesh file, e.g. meshes/shop.yaml",
            )?;
            let file = base.join(s);
            return match std::fs::metadata(&file) {
                Ok(m) if m.is_file() => Ok(TargetSpec::Mesh { file }),
                Ok(_) => Err(self.err(
                    &p,
                    format!(
                        "{} is not a file: give the kind: Mesh file (a running mesh's directory is given on the command line instead)",
                        file.display()
                    ),
                )),
                Err(e) => Err(self.err(
                    &p,
                    format!(
                        "cannot read the mesh file {}: {e} (a relative path is relative to the scenario file's directory)",
                        file.display()
                    ),
                )),
            };
        }
        let c = match v {
            Value::Null => Obj {
                p: p.clone(),
                m: &EMPTY,
            },
            v => self.mapping(&p, v, &CLUSTER_KEYS, "{context: minikube, namespace: shop}")?,
        };
        let context = self.opt_str(&c, "context", "a kubeconfig context name")?;
        let namespace = self.opt_str(&c, "namespace", "a Kubernetes namespace")?;
        if let Some(ns) = namespace
            && !is_dns_label(ns)
        {
            return Err(self.err(
                &c.at("namespace"),
                format!("invalid namespace {ns:?}: a DNS label (lowercase letters, digits, '-')"),
            ));
        }
        let kubeconfig = match self.opt_str(&c, "kubeconfig", "the path of a kubeconfig file")? {
            None => None,
            Some(k) if k.starts_with('~') => {
                return Err(self.err(
                    &c.at("kubeconfig"),
                    format!("{k:?}: ~ is not expanded; give an absolute path or one relative to the scenario file's directory"),
                ));
            }
            Some(k) => Some(base.join(k)),
        };
        let ingress = self.opt_str(&c, "ingress", "host:port, e.g. 127.0.0.1:8080")?;
        if let Some(i) = ingress
            && (i.contains(['/', '@', '?', '#', ' '])
                || Target::parse(&format!("http://{i}/")).is_err())
        {
            return Err(self.err(
                &c.at("ingress"),
                format!("invalid ingress {i:?}: host:port that {{ingress}} in load URLs stands for, e.g. 127.0.0.1:8080 (no scheme or path)"),
            ));
        }
        Ok(TargetSpec::Cluster {
            context: context.map(String::from),
            namespace: namespace.map(String::from),
            kubeconfig,
            ingress: ingress.map(String::from),
        })
    }

    /// `spec.targets`, required when any load is sent.
    fn targets(&self, spec: &Obj<'_>) -> R<Vec<String>> {
        const EXAMPLE: &str = "[shop.example.com, \"*.acme.com\"]";
        let sends_load = spec.has("load")
            || spec
                .m
                .get("method")
                .and_then(Value::as_array)
                .is_some_and(|steps| steps.iter().any(step_sends_load));
        let required = || {
            self.err(
                &spec.at("targets"),
                format!("spec.targets is required when the drill sends load: list the hosts it may send traffic to, e.g. {EXAMPLE}"),
            )
        };
        let Some((p, v)) = spec.get("targets") else {
            return if sends_load {
                Err(required())
            } else {
                Ok(Vec::new())
            };
        };
        let list = self.list(&p, v, EXAMPLE)?;
        if list.is_empty() && sends_load {
            return Err(required());
        }
        let mut out = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let ip = item(&p, i);
            let s = self.string(&ip, v, "a host name such as shop.example.com or *.acme.com")?;
            if !is_host_pattern(s) {
                return Err(self.err(
                    &ip,
                    format!("invalid host {s:?}: a host name such as shop.example.com, or *.acme.com for its subdomains (no scheme, port or path)"),
                ));
            }
            out.push(s.to_string());
        }
        Ok(out)
    }

    fn steady_state(&self, p: &str, v: &Value) -> R<SteadyState> {
        let o = self.mapping(
            p,
            v,
            &STEADY_KEYS,
            "{duration: 5s, before: true, after: true}",
        )?;
        let duration = match o.get("duration") {
            None => DEFAULT_STEADY,
            Some((p, v)) => self.duration(&p, v)?.0,
        };
        let before = self.opt_bool(&o, "before")?.unwrap_or(true);
        let after = self.opt_bool(&o, "after")?.unwrap_or(true);
        if !before && !after {
            return Err(self.err(
                p,
                "before and after are both false: remove steadyState instead",
            ));
        }
        Ok(SteadyState {
            duration,
            before,
            after,
        })
    }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// Whether a raw step sends load of its own (a flood, or a search over a flood's rate).
fn step_sends_load(step: &Value) -> bool {
    step.get("flood").is_some() || step.get("search").and_then(|s| s.get("flood")).is_some()
}

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
