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
mod steps;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::model::{LoadSpec, Scenario, SteadyState, StopCondition, TargetSpec};
use crate::istio::manifest::{self, Document, ManifestError, escape_pointer, json_type};
use crate::istio::types::parse_go_duration;
use crate::istio::validate::dotted;
use crate::istio::{IstioDuration, Percentage};
use crate::load::{MAX_CONNS, MAX_SPAN, Target};
use crate::slo::{Cmp, Metric, Objective, ObjectiveParts};

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
const SLO_KEYS: [&str; 9] = [
    "name",
    "metric",
    "objective",
    "latency",
    "statuses",
    "slo",
    "consecutive",
    "over",
    "allowBad",
];
const STEADY_KEYS: [&str; 3] = ["duration", "before", "after"];
const STOP_KEYS: [&str; 4] = ["slo", "below", "above", "for"];

const DEFAULT_CONNECTIONS: u64 = 16;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CONFIDENCE: f64 = 0.95;
const DEFAULT_STEADY: Duration = Duration::from_secs(5);

// === Helpers ===

/// The pointer of `key` under `p`.
pub(super) fn child(p: &str, key: &str) -> String {
    format!("{p}/{}", escape_pointer(key))
}

/// The pointer of item `i` under `p`.
pub(super) fn item(p: &str, i: usize) -> String {
    format!("{p}/{i}")
}

/// `unknown field "x"; allowed: a, b`, with a suggestion when the key is close to an
/// allowed one (case, `_`/`-`, or a typo or two).
fn unknown_key(key: &str, allowed: &[&str]) -> String {
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let list = allowed.join(", ");
    let k = norm(key);
    let near = |a: &&&str| {
        let a = norm(a);
        a == k || (k.len() > 3 && edit_distance(&a, &k) <= if k.len() > 6 { 2 } else { 1 })
    };
    match allowed.iter().find(near) {
        Some(a) => format!("unknown field {key:?}: did you mean {a}? Allowed: {list}"),
        None => format!("unknown field {key:?}; allowed: {list}"),
    }
}

/// Levenshtein distance (short keys only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `allow_bad` → `allowBad`: the scenario key of an [`crate::slo::ObjectiveError`] field.
fn camel(field: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in field.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A value as it appears in a message: strings quoted, others as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A mapping of the document with its pointer.
#[derive(Debug, Clone)]
pub(super) struct Obj<'v> {
    pub p: String,
    pub m: &'v Map<String, Value>,
}

impl<'v> Obj<'v> {
    /// The value of `key`, with its pointer.
    pub fn get(&self, key: &str) -> Option<(String, &'v Value)> {
        self.m.get(key).map(|v| (child(&self.p, key), v))
    }
    pub fn at(&self, key: &str) -> String {
        child(&self.p, key)
    }
    pub fn has(&self, key: &str) -> bool {
        self.m.contains_key(key)
    }
}

/// The parser of one document: the document (for locations) and what later parts
/// of the spec are checked against.
pub(super) struct Parser<'d> {
    pub d: &'d Document,
    /// `spec.targets`.
    pub hosts: Vec<String>,
    /// Names of `spec.slos`.
    pub slos: Vec<String>,
    /// Whether relative throughput SLOs can be judged (`spec.load` has a rate).
    pub relative_ok: bool,
    /// Whether `spec.load` is given.
    pub has_load: bool,
}

type R<T> = Result<T, ScenarioError>;

impl<'d> Parser<'d> {
    pub fn err(&self, p: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            location: self.d.locate(p),
            field: dotted(p),
            message: message.into(),
        }
    }

    pub fn at(&self, p: &str) -> String {
        self.d.locate(p)
    }

    /// `v` as a mapping whose keys are all in `allowed`.
    pub fn mapping<'v>(
        &self,
        p: &str,
        v: &'v Value,
        allowed: &[&str],
        example: &str,
    ) -> R<Obj<'v>> {
        let Some(m) = v.as_object() else {
            return Err(self.err(
                p,
                format!(
                    "expected a mapping such as {example}, found {}",
                    json_type(v)
                ),
            ));
        };
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(&child(p, k), unknown_key(k, allowed)));
            }
        }
        Ok(Obj {
            p: p.to_string(),
            m,
        })
    }

    /// `v` as a list.
    pub fn list<'v>(&self, p: &str, v: &'v Value, example: &str) -> R<&'v [Value]> {
        match v {
            Value::Array(a) => Ok(a),
            other => Err(self.err(
                p,
                format!(
                    "expected a list such as {example}, found {}",
                    json_type(other)
                ),
            )),
        }
    }

    /// The value of a required key.
    pub fn req<'v>(&self, o: &Obj<'v>, key: &str, hint: &str) -> R<(String, &'v Value)> {
        o.get(key)
            .ok_or_else(|| self.err(&o.at(key), format!("{key} is required: {hint}")))
    }

    /// A non-empty string.
    pub fn string<'v>(&self, p: &str, v: &'v Value, hint: &str) -> R<&'v str> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Ok(s),
            Value::String(_) => Err(self.err(p, format!("must not be empty: {hint}"))),
            Value::Bool(b) => Err(self.err(
                p,
                format!("expected {hint}, found a boolean (YAML reads {b}, yes, no, y, n, on and off as booleans: put text in quotes)"),
            )),
            other => Err(self.err(
                p,
                format!("expected {hint}, found {}", json_type(other)),
            )),
        }
    }

    pub fn req_str<'v>(&self, o: &Obj<'v>, key: &str, hint: &str) -> R<&'v str> {
        let (p, v) = self.req(o, key, hint)?;
        self.string(&p, v, hint)
    }

    pub fn opt_str<'v>(&self, o: &Obj<'v>, key: &str, hint: &str) -> R<Option<&'v str>> {
        o.get(key)
            .map(|(p, v)| self.string(&p, v, hint))
            .transpose()
    }

    pub fn boolean(&self, p: &str, v: &Value) -> R<bool> {
        v.as_bool()
            .ok_or_else(|| self.err(p, format!("expected true or false, found {}", json_type(v))))
    }

    pub fn opt_bool(&self, o: &Obj<'_>, key: &str) -> R<Option<bool>> {
        o.get(key).map(|(p, v)| self.boolean(&p, v)).transpose()
    }

    /// A whole number from `min` to `max`.
    pub fn integer(&self, p: &str, v: &Value, min: u64, max: u64) -> R<u64> {
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => {
                let found = match v {
                    Value::Number(_) => format!("{v}"),
                    other => json_type(other).to_string(),
                };
                Err(self.err(
                    p,
                    format!("expected a whole number from {min} to {max}, found {found}"),
                ))
            }
        }
    }

    pub fn opt_integer(&self, o: &Obj<'_>, key: &str, min: u64, max: u64) -> R<Option<u64>> {
        o.get(key)
            .map(|(p, v)| self.integer(&p, v, min, max))
            .transpose()
    }

    /// A finite number.
    pub fn number(&self, p: &str, v: &Value, hint: &str) -> R<f64> {
        match v.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            _ => Err(self.err(p, format!("expected {hint}, found {}", json_type(v)))),
        }
    }

    /// A rate in requests/s: a finite number > 0.
    pub fn rate(&self, p: &str, v: &Value) -> R<f64> {
        let r = self.number(p, v, "a rate in requests per second such as 100")?;
        if r <= 0.0 {
            return Err(self.err(
                p,
                format!("invalid rate {r}: requests per second, more than 0"),
            ));
        }
        Ok(r)
    }

    /// A Go duration (`500ms`, `10s`, `1m30s`), more than 0 and at most a year.
    /// Returns it with its text as written.
    pub fn duration<'v>(&self, p: &str, v: &'v Value) -> R<(Duration, &'v str)> {
        const HINT: &str = "a duration such as 500ms, 10s or 1m30s";
        let Value::String(s) = v else {
            let fix = match v {
                Value::Number(n) => format!(" (write {n}s for seconds)"),
                _ => String::new(),
            };
            return Err(self.err(p, format!("expected {HINT}, found {}{fix}", json_type(v))));
        };
        let d = parse_go_duration(s).ok_or_else(|| {
            self.err(
                p,
                format!("invalid duration {s:?}: {HINT} (units h, m, s, ms, us, ns)"),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(p, format!("invalid duration {s:?}: must be more than 0")));
        }
        if d > MAX_SPAN {
            return Err(self.err(p, format!("invalid duration {s:?}: at most a year (8760h)")));
        }
        Ok((d, s))
    }

    /// A duration as Istio accepts it (whole milliseconds, at least 1ms).
    pub fn istio_duration(&self, p: &str, v: &Value) -> R<IstioDuration> {
        let Value::String(s) = v else {
            return Err(self.err(
                p,
                format!(
                    "expected a duration such as 500ms or 2s, found {}",
                    json_type(v)
                ),
            ));
        };
        s.parse::<IstioDuration>()
            .map_err(|e| self.err(p, e.to_string()))
    }

    /// A fault percentage: a number (`50`, `0.5` = half a percent) or `"50%"`.
    pub fn percentage(&self, p: &str, v: &Value) -> R<Percentage> {
        let r = match v {
            Value::Number(n) => n.as_f64().map(Percentage::new),
            Value::String(s) => Some(s.trim().parse::<Percentage>()),
            _ => None,
        };
        match r {
            Some(Ok(pc)) => Ok(pc),
            Some(Err(e)) => Err(self.err(p, format!("{e} (50 or \"50%\" is half the requests)"))),
            None => Err(self.err(
                p,
                format!(
                    "expected a percentage such as 50 or \"50%\", found {}",
                    json_type(v)
                ),
            )),
        }
    }

    /// A share: a number from 0 to 1 (`0.95`) or a percentage string (`"95%"`).
    pub fn share(&self, p: &str, v: &Value) -> R<f64> {
        const HINT: &str = "a share from 0 to 1 such as 0.95, or a percentage such as \"95%\"";
        let s = match v {
            Value::Number(n) => n.as_f64().filter(|x| (0.0..=1.0).contains(x)),
            Value::String(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|x| x.trim().parse::<f64>().ok())
                .filter(|x| (0.0..=100.0).contains(x))
                .map(|x| x / 100.0),
            _ => {
                return Err(self.err(p, format!("expected {HINT}, found {}", json_type(v))));
            }
        };
        s.ok_or_else(|| self.err(p, format!("invalid value {}: {HINT}", shown(v))))
    }

    /// Of `keys`, the one `o` has. Two or more: an error at the second. None: an
    /// error when `required` (`what` says what the keys are for).
    pub fn pick<'k, 'v>(
        &self,
        o: &Obj<'v>,
        keys: &[&'k str],
        required: bool,
        what: &str,
    ) -> R<Option<(&'k str, String, &'v Value)>> {
        let present: Vec<&'k str> = keys.iter().copied().filter(|k| o.has(k)).collect();
        let list = keys.join(", ");
        match present.as_slice() {
            [] if required => Err(self.err(&o.p, format!("give one of {list}: {what}"))),
            [] => Ok(None),
            [k] => Ok(o.get(k).map(|(p, v)| (*k, p, v))),
            [a, b, ..] => Err(self.err(
                &o.at(b),
                format!("{a} and {b} exclude each other: give only one of {list}"),
            )),
        }
    }

    // === The document ===

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

    // === Loads ===

    /// A load's keys of `o` (the caller checked that `o` has no others).
    pub fn load(&self, o: &Obj<'_>, rate_required: bool) -> R<LoadSpec> {
        const URL_HINT: &str =
            "an http(s) URL such as \"http://{ingress}/\" or \"https://shop.example.com/\"";
        let (up, uv) = self.req(o, "url", URL_HINT)?;
        let url = self.string(&up, uv, URL_HINT)?;
        if let Some(host) = self.url_host(&up, url)? {
            self.check_blast(&up, &host)?;
        }
        let method = match o.get("method") {
            None => "GET".to_string(),
            Some((p, v)) => {
                let m = self.string(&p, v, "an HTTP method such as GET or POST")?;
                if http::Method::from_bytes(m.as_bytes()).is_err() {
                    return Err(self.err(
                        &p,
                        format!("invalid HTTP method {m:?}: a token such as GET, POST or PUT"),
                    ));
                }
                m.to_string()
            }
        };
        let headers = match o.get("headers") {
            None => Vec::new(),
            Some((p, v)) => self.headers(&p, v)?,
        };
        let body = match o.get("body") {
            None => None,
            Some((_, Value::String(s))) => Some(s.clone()),
            Some((p, v)) => {
                return Err(self.err(
                    &p,
                    format!(
                        "expected the request body as a string, found {}",
                        json_type(v)
                    ),
                ));
            }
        };
        let rate = match o.get("rate") {
            Some((p, v)) => Some(self.rate(&p, v)?),
            None if rate_required => {
                return Err(self.err(
                    &o.at("rate"),
                    "rate is required: requests per second (a flood is an open-loop load)",
                ));
            }
            None => None,
        };
        let connections = self
            .opt_integer(o, "connections", 1, MAX_CONNS as u64)?
            .unwrap_or(DEFAULT_CONNECTIONS) as usize;
        let timeout = match o.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some((p, v)) => self.duration(&p, v)?.0,
        };
        let http2 = self.opt_bool(o, "http2")?.unwrap_or(false);
        Ok(LoadSpec {
            url: url.to_string(),
            method,
            headers,
            body,
            rate,
            ramp: None,
            connections,
            timeout,
            http2,
            at: self.at(&o.p),
        })
    }

    /// Checks a load URL; returns its host, or `None` for `{ingress}`.
    fn url_host(&self, p: &str, url: &str) -> R<Option<String>> {
        const FORM: &str =
            "{ingress} stands for the whole host:port of the URL, as in http://{ingress}/path";
        let bad = |why: String| {
            self.err(
                p,
                format!("invalid URL {url:?}: {why}; e.g. \"http://{{ingress}}/\" or \"https://shop.example.com/\""),
            )
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("not an absolute http:// or https:// URL".into()));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(bad(format!("scheme {scheme:?} is not http or https")));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if tail.contains("{ingress}") || (authority != "{ingress}" && authority.contains('{')) {
            return Err(self.err(p, format!("invalid URL {url:?}: {FORM}")));
        }
        if authority == "{ingress}" {
            Target::parse(&format!("{scheme}://ingress.invalid{tail}"))
                .map_err(|e| bad(e.to_string()))?;
            return Ok(None);
        }
        let t = Target::parse(url).map_err(|e| bad(e.to_string()))?;
        Ok(Some(t.host))
    }

    fn headers(&self, p: &str, v: &Value) -> R<Vec<String>> {
        let Some(m) = v.as_object() else {
            return Err(self.err(
                p,
                format!(
                    "expected a mapping of header names to values such as {{Host: shop.example.com}}, found {}",
                    json_type(v)
                ),
            ));
        };
        let mut out = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in m {
            let hp = child(p, name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.err(
                    &hp,
                    format!(
                        "invalid header name {name:?}: letters, digits and !#$%&'*+-.^_`|~ only"
                    ),
                ));
            }
            if let Some(first) = seen.iter().find(|s| s.eq_ignore_ascii_case(name)) {
                return Err(self.err(
                    &hp,
                    format!("header {name} is also given as {first} (header names are case-insensitive): give it once"),
                ));
            }
            seen.push(name);
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(self.err(
                        &hp,
                        format!(
                            "expected the header value as a string, found {}",
                            json_type(other)
                        ),
                    ));
                }
            };
            if http::HeaderValue::from_str(value.trim()).is_err() {
                return Err(self.err(
                    &hp,
                    format!("invalid header value {value:?}: visible ASCII text, no line breaks"),
                ));
            }
            if name.eq_ignore_ascii_case("host") {
                self.check_blast(&hp, strip_port(value.trim()))?;
            }
            out.push(format!("{name}: {}", value.trim()));
        }
        Ok(out)
    }

    fn check_blast(&self, p: &str, host: &str) -> R<()> {
        if host_allowed(host, &self.hosts) {
            return Ok(());
        }
        let list = if self.hosts.is_empty() {
            "none".to_string()
        } else {
            self.hosts.join(", ")
        };
        Err(self.err(
            p,
            format!("load to {host} is outside spec.targets ({list}): add it to spec.targets if this drill may send traffic there"),
        ))
    }

    // === SLOs ===

    /// A list of SLOs (`spec.slos` or a flood's): names unique, recovery times naming
    /// an SLO of the same list. `relative_ok`: the load they judge has a rate
    /// (`load` names it in messages).
    pub fn slos<'v>(
        &self,
        p: &str,
        v: &'v Value,
        relative_ok: bool,
        load: &str,
    ) -> R<(Vec<Objective>, Vec<Obj<'v>>)> {
        let list = self.list(
            p,
            v,
            "[{name: availability, metric: availability, objective: \">= 99%\"}]",
        )?;
        let mut out: Vec<Objective> = Vec::new();
        let mut raw = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let ip = item(p, i);
            let o = self.mapping(
                &ip,
                v,
                &SLO_KEYS,
                "{name: availability, metric: availability, objective: \">= 99%\"}",
            )?;
            let parts = self.objective_parts(&o)?;
            if let Some(j) = out.iter().position(|x| x.name == parts.name) {
                return Err(self.err(
                    &o.at("name"),
                    format!(
                        "the name {:?} is already used by {}: SLO names must be unique",
                        parts.name,
                        dotted(&item(p, j))
                    ),
                ));
            }
            let obj = Objective::parse(&parts).map_err(|e| {
                let at = if e.field.is_empty() {
                    o.p.clone()
                } else {
                    o.at(&camel(e.field))
                };
                self.err(&at, e.message)
            })?;
            if matches!(obj.metric, Metric::Throughput { relative: true }) && !relative_ok {
                return Err(self.err(
                    &o.at("objective"),
                    format!("{:?} is relative to the rate asked for, and {load} has no rate (closed loop): give {load}.rate, or write the objective in requests/s (e.g. \">= 150/s\")", obj.text),
                ));
            }
            out.push(obj);
            raw.push(o);
        }
        for (o, obj) in raw.iter().zip(&out) {
            if let Metric::RecoveryTime { slo, .. } = &obj.metric {
                let others: Vec<&str> = out
                    .iter()
                    .filter(|x| !matches!(x.metric, Metric::RecoveryTime { .. }))
                    .map(|x| x.name.as_str())
                    .collect();
                if !others.contains(&slo.as_str()) {
                    let list = if others.is_empty() {
                        "(none)".to_string()
                    } else {
                        others.join(", ")
                    };
                    return Err(self.err(
                        &o.at("slo"),
                        format!("recovery_time measures until another SLO of this list holds again; {slo:?} is not one (SLOs: {list})"),
                    ));
                }
            }
        }
        Ok((out, raw))
    }

    fn objective_parts<'v>(&self, o: &Obj<'v>) -> R<ObjectiveParts<'v>> {
        let name = self.req_str(o, "name", "a name for the SLO, e.g. availability")?;
        let metric = self.req_str(
            o,
            "metric",
            "what is measured: p50, p90, p95, p99, p999, max, success_rate, availability, error_rate, status_rate, throughput or recovery_time",
        )?;
        let objective = self.req_str(
            o,
            "objective",
            "a comparison and a threshold in quotes, such as \">= 99.5%\", \"< 500ms\" or \"<= 20s\"",
        )?;
        let latency = self.opt_str(o, "latency", "corrected or service")?;
        let statuses: &'v [Value] = match o.get("statuses") {
            None => &[],
            Some((p, v)) => self.list(&p, v, "[\"5xx\", 429, error]")?,
        };
        let slo = self.opt_str(o, "slo", "the name of the SLO that must hold again")?;
        let consecutive = self
            .opt_integer(o, "consecutive", 1, u64::from(u32::MAX))?
            .map(|n| n as u32);
        let over = self.opt_str(o, "over", "phase or interval")?;
        let allow_bad = self
            .opt_integer(o, "allowBad", 0, u64::from(u32::MAX))?
            .map(|n| n as u32);
        Ok(ObjectiveParts {
            name,
            metric,
            objective,
            latency,
            statuses,
            slo,
            consecutive,
            over,
            allow_bad,
        })
    }

    /// Whether `name` is in `spec.slos`; an error naming the SLOs otherwise.
    pub fn known_slo(&self, p: &str, name: &str) -> R<()> {
        if self.slos.iter().any(|s| s == name) {
            return Ok(());
        }
        let list = if self.slos.is_empty() {
            "there are none".to_string()
        } else {
            self.slos.join(", ")
        };
        Err(self.err(p, format!("no SLO named {name:?} in spec.slos ({list})")))
    }

    fn stop_condition(
        &self,
        p: &str,
        v: &Value,
        slos: &[Objective],
        raw: &[Obj<'_>],
    ) -> R<StopCondition> {
        let o = self.mapping(p, v, &STOP_KEYS, "{slo: availability, below: 90%, for: 3s}")?;
        let name = self.req_str(&o, "slo", "the name of an SLO in spec.slos")?;
        self.known_slo(&o.at("slo"), name)?;
        let found = slos.iter().zip(raw).find(|(s, _)| s.name == name);
        let Some((slo, slo_raw)) = found else {
            return Err(self.err(&o.at("slo"), format!("no SLO named {name:?} in spec.slos")));
        };
        if matches!(slo.metric, Metric::RecoveryTime { .. }) {
            return Err(self.err(
                &o.at("slo"),
                format!("{name} is a recovery_time SLO, measured after an event, not each second: a stop condition watches a rate, latency or throughput SLO"),
            ));
        }
        let Some((key, kp, kv)) = self.pick(
            &o,
            &["below", "above"],
            true,
            "the threshold whose breach stops the drill, e.g. below: 90% or above: 2s",
        )?
        else {
            return Err(self.err(&o.p, "give below or above"));
        };
        let written = match kv {
            Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(self.err(
                    &kp,
                    format!(
                        "expected a threshold in the SLO's unit (90%, 2s, 150/s), found {}",
                        json_type(other)
                    ),
                ));
            }
        };
        let (breach, sym) = if key == "below" {
            (Cmp::Lt, "<")
        } else {
            (Cmp::Gt, ">")
        };
        let synthetic = format!("{sym} {written}");
        let parts = ObjectiveParts {
            name,
            metric: slo_raw
                .m
                .get("metric")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            objective: &synthetic,
            latency: slo_raw.m.get("latency").and_then(Value::as_str),
            statuses: slo_raw
                .m
                .get("statuses")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            ..ObjectiveParts::default()
        };
        let unit_hint = format!("write it in the unit of {name}'s objective ({})", slo.text);
        let threshold = match Objective::parse(&parts) {
            Ok(t) if t.metric == slo.metric => t.threshold,
            Ok(_) => {
                return Err(self.err(&kp, format!("{key} {written}: {unit_hint}")));
            }
            Err(e) => {
                return Err(self.err(&kp, format!("{key} {written}: {}; {unit_hint}", e.message)));
            }
        };
        let intervals = match o.get("for") {
            None => 1,
            Some((fp, fv)) => {
                let (d, _) = self.duration(&fp, fv)?;
                let n = d.as_nanos().div_ceil(1_000_000_000);
                u32::try_from(n).unwrap_or(u32::MAX).max(1)
            }
        };
        Ok(StopCondition {
            slo: name.to_string(),
            breach,
            threshold,
            text: format!("{key} {written}"),
            intervals,
            at: self.at(p),
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

/// A `spec.targets` entry: a host name, an IP address, or `*.suffix`.
fn is_host_pattern(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = s.strip_prefix("*.").unwrap_or(s);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A Host header's host, without its port.
fn strip_port(v: &str) -> &str {
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']').map_or(v, |(h, _)| h);
    }
    match v.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => v,
    }
}

/// Whether `host` matches an entry of `allowed`: exactly (case-insensitive), or a
/// subdomain of a `*.suffix` entry.
pub(super) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim_end_matches('.').to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(suffix) => h
                .strip_suffix(suffix)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => h == a,
        }
    })
}
