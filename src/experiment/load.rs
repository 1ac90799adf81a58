//! Reading a chaostoolkit experiment file into an [`Experiment`]: the shape checked as
//! chaostoolkit validates it, configuration and secrets resolved, `${name}` substituted
//! where chaostoolkit substitutes, `ref`s resolved, and every provider mapped. Nothing
//! runs before the whole file is known to be usable; every problem is reported as
//! `file:line: field: message`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::model::*;
use super::siege;
use super::substitute::{Vars, names_in, py_str, substitute, substitute_str};
use super::tolerance;
use crate::istio::manifest::{self, Document, ManifestError};
use crate::istio::validate::dotted;
use crate::istio::{AbortCode, AbortSpec, DelaySpec, HttpStatus, IstioDuration, Percentage};

/// An http provider with no `timeout` waits forever in chaostoolkit; meshdrill caps the
/// connect and each read at these, so a hung probe cannot hold a fault on.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an experiment cannot be run (all exit 2: nothing was started).
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A field is missing, unknown or unusable.
    #[error("{location}: {field}: {message}")]
    Invalid {
        location: String,
        field: String,
        message: String,
    },
    /// A `--var` / `--var-file` problem.
    #[error("{0}")]
    Vars(String),
}

/// What the command line adds.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var NAME[:TYPE]=VALUE`, parsed.
    pub vars: Vec<(String, Value)>,
    /// `--var-file`: a YAML/JSON `{configuration, secrets}` file or a `.env` file.
    pub var_files: Vec<PathBuf>,
    /// Values the target supplies for environment keys that are not set (the local
    /// mesh's `INGRESS_HOST`).
    pub env_defaults: BTreeMap<String, String>,
    /// On a local mesh, a namespace in an action means the mesh's.
    pub on_mesh: bool,
}

/// Whether a parsed document has an experiment's shape (`title`, `description`,
/// `method`, no `kind`).
pub fn is_experiment(v: &Value) -> bool {
    v.get("kind").is_none()
        && v.get("apiVersion").is_none()
        && v.get("title").is_some()
        && v.get("method").is_some()
}

/// Whether `path` holds one experiment (read failures: false; the scenario parser
/// reports them).
pub fn file_is_experiment(path: &Path) -> bool {
    matches!(manifest::read_plain(path), Ok(d) if d.len() == 1 && is_experiment(&d[0].value))
}

/// The environment keys the configuration reads (`{type: env, key}`), to tell whether
/// an experiment asks for `INGRESS_HOST`.
pub fn env_keys(path: &Path) -> Vec<String> {
    let Ok(docs) = manifest::read_plain(path) else {
        return Vec::new();
    };
    let Some(Value::Object(cfg)) = docs.first().and_then(|d| d.value.get("configuration")) else {
        return Vec::new();
    };
    cfg.values()
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("env"))
        .filter_map(|v| v.get("key").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Reads, checks and resolves the experiment in `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Experiment, ExperimentError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !matches!(ext.as_str(), "yaml" | "yml" | "json") {
        return Err(ExperimentError::Vars(format!(
            "{}: an experiment file must end in .yaml, .yml or .json (as chaostoolkit requires)",
            path.display()
        )));
    }
    let docs = manifest::read_plain(path)?;
    let doc = match docs.as_slice() {
        [one] => one,
        [] => {
            return Err(ExperimentError::Vars(format!(
                "{}: the file is empty",
                path.display()
            )));
        }
        _ => {
            return Err(ExperimentError::Vars(format!(
                "{}: {} YAML documents: an experiment file holds one",
                path.display(),
                docs.len()
            )));
        }
    };
    let mut env = opts.env_defaults.clone();
    let mut var_config = Map::new();
    let mut var_secrets = Map::new();
    for f in &opts.var_files {
        read_var_file(f, &mut env, &mut var_config, &mut var_secrets)?;
    }
    let p = P {
        d: doc,
        env: &env,
        on_mesh: opts.on_mesh,
    };
    p.experiment(path, opts, &var_config, &var_secrets)
}

/// A `--var-file`: `.env` lines go to the environment the configuration reads; a
/// YAML/JSON file gives `configuration` and `secrets` values.
fn read_var_file(
    f: &Path,
    env: &mut BTreeMap<String, String>,
    config: &mut Map<String, Value>,
    secrets: &mut Map<String, Value>,
) -> Result<(), ExperimentError> {
    let bad = |m: String| ExperimentError::Vars(format!("--var-file {}: {m}", f.display()));
    let is_env = f
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == ".env" || n.ends_with(".env"));
    if is_env {
        let text = std::fs::read_to_string(f).map_err(|e| bad(e.to_string()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(format!("line {}: expected KEY=VALUE", i + 1)));
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            env.insert(k.trim().to_string(), v.to_string());
        }
        return Ok(());
    }
    let docs = manifest::read_plain(f)?;
    let Some(Value::Object(m)) = docs.first().map(|d| &d.value) else {
        return Err(bad(
            "expected a mapping with `configuration` and/or `secrets`, or a .env file".into(),
        ));
    };
    for (k, v) in m {
        match (k.as_str(), v) {
            ("configuration", Value::Object(c)) => config.extend(c.clone()),
            ("secrets", Value::Object(s)) => secrets.extend(s.clone()),
            _ => {
                return Err(bad(format!(
                    "unknown key {k:?}: a var file holds `configuration` and `secrets` mappings"
                )));
            }
        }
    }
    Ok(())
}

/// Parses `--var NAME[:TYPE]=VALUE` (types: str, int, float, bool, json).
pub fn parse_var(s: &str) -> Result<(String, Value), String> {
    let (lhs, raw) = s
        .split_once('=')
        .ok_or_else(|| format!("--var {s:?}: expected NAME=VALUE or NAME:TYPE=VALUE"))?;
    let (name, ty) = lhs.split_once(':').unwrap_or((lhs, "str"));
    if name.is_empty() {
        return Err(format!("--var {s:?}: the name is empty"));
    }
    let v = typed(raw, ty).map_err(|e| format!("--var {s:?}: {e}"))?;
    Ok((name.to_string(), v))
}

/// A string converted as chaostoolkit's `env_var_type` / `--var` type does.
fn typed(raw: &str, ty: &str) -> Result<Value, String> {
    Ok(match ty {
        "str" | "string" => Value::String(raw.to_string()),
        "int" | "integer" => Value::from(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| format!("{raw:?} is not an int"))?,
        ),
        "float" | "number" => serde_json::Number::from_f64(
            raw.trim()
                .parse::<f64>()
                .map_err(|_| format!("{raw:?} is not a float"))?,
        )
        .map(Value::Number)
        .ok_or_else(|| format!("{raw:?} is not a finite float"))?,
        "bool" | "boolean" => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Bool(true),
            "false" | "0" | "no" | "off" => Value::Bool(false),
            _ => return Err(format!("{raw:?} is not a bool")),
        },
        "json" => serde_json::from_str(raw).map_err(|e| format!("{raw:?} is not JSON: {e}"))?,
        other => {
            return Err(format!(
                "unknown type {other:?}: use str, int, float, bool or json"
            ));
        }
    })
}

/// The python functions meshdrill runs, with their parameters (required first).
struct Func {
    module: &'static str,
    func: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

const FUNCS: &[Func] = &[
    Func {
        module: "chaosistio.fault.actions",
        func: "add_delay_fault",
        required: &["virtual_service_name", "fixed_delay", "routes"],
        optional: &["percentage", "ns", "version"],
    },
    Func {
        module: "chaosistio.fault.actions",
        func: "add_abort_fault",
        required: &["virtual_service_name", "http_status", "routes"],
        optional: &["percentage", "ns", "version"],
    },
    Func {
        module: "chaosistio.fault.actions",
        func: "remove_delay_fault",
        required: &["virtual_service_name", "routes"],
        optional: &["ns", "version"],
    },
    Func {
        module: "chaosistio.fault.actions",
        func: "remove_abort_fault",
        required: &["virtual_service_name", "routes"],
        optional: &["ns", "version"],
    },
    Func {
        module: "chaosistio.fault.probes",
        func: "get_virtual_service",
        required: &["virtual_service_name"],
        optional: &["ns", "version"],
    },
    Func {
        module: "chaosk8s.pod.actions",
        func: "terminate_pods",
        required: &[],
        optional: &[
            "label_selector",
            "name_pattern",
            "all",
            "rand",
            "mode",
            "qty",
            "grace_period",
            "ns",
            "order",
        ],
    },
    Func {
        module: "chaosk8s.pod.probes",
        func: "pods_in_phase",
        required: &["label_selector"],
        optional: &["phase", "ns"],
    },
    Func {
        module: "chaosk8s.pod.probes",
        func: "pods_not_in_phase",
        required: &["label_selector"],
        optional: &["phase", "ns"],
    },
    Func {
        module: "chaosk8s.pod.probes",
        func: "count_pods",
        required: &["label_selector"],
        optional: &["phase", "ns"],
    },
    Func {
        module: "chaosk8s.pod.probes",
        func: "all_pods_healthy",
        required: &[],
        optional: &["ns", "raise_on_any_unhealthy"],
    },
    Func {
        module: "chaosk8s.deployment.probes",
        func: "deployment_available_and_healthy",
        required: &["name"],
        optional: &["ns", "label_selector", "raise_on_unavailable"],
    },
    Func {
        module: "chaosk8s.probes",
        func: "microservice_available_and_healthy",
        required: &["name"],
        optional: &["ns", "label_selector"],
    },
    Func {
        module: "chaosk8s.probes",
        func: "all_microservices_healthy",
        required: &[],
        optional: &["ns"],
    },
];

/// `module.func, …` of everything supported, for messages.
pub fn supported_functions() -> String {
    FUNCS
        .iter()
        .map(|f| format!("{}.{}", f.module, f.func))
        .collect::<Vec<_>>()
        .join(", ")
}

const TOP_KEYS: &[&str] = &[
    "version",
    "title",
    "description",
    "tags",
    "contributions",
    "configuration",
    "secrets",
    "steady-state-hypothesis",
    "method",
    "rollbacks",
    "controls",
    "extensions",
    "runtime",
    "dry",
];

struct P<'a> {
    d: &'a Document,
    env: &'a BTreeMap<String, String>,
    on_mesh: bool,
}

type R<T> = Result<T, ExperimentError>;

impl P<'_> {
    fn err(&self, ptr: &str, message: impl Into<String>) -> ExperimentError {
        ExperimentError::Invalid {
            location: self.d.locate(ptr),
            field: dotted(ptr),
            message: message.into(),
        }
    }

    fn at(&self, ptr: &str) -> Option<&Value> {
        self.d.value.pointer(ptr)
    }

    /// The environment, then what the target supplies (a var file's `.env`, the mesh's
    /// ingress) — which also wins over a variable set but empty.
    fn env_get(&self, key: &str) -> Option<String> {
        match std::env::var(key) {
            Ok(v) if !v.is_empty() => Some(v),
            other => self.env.get(key).cloned().or(other.ok()),
        }
    }

    fn experiment(
        &self,
        path: &Path,
        opts: &LoadOptions,
        var_config: &Map<String, Value>,
        var_secrets: &Map<String, Value>,
    ) -> R<Experiment> {
        let Value::Object(top) = &self.d.value else {
            return Err(self.err(
                "",
                "an experiment is a mapping with title, description and method",
            ));
        };
        for k in top.keys() {
            if !TOP_KEYS.contains(&k.as_str()) {
                return Err(self.err(
                    &format!("/{k}"),
                    format!("unknown key; an experiment has {}", TOP_KEYS.join(", ")),
                ));
            }
        }
        if let Some(c) = top.get("controls")
            && !c.as_array().is_some_and(Vec::is_empty)
        {
            return Err(self.err(
                "/controls",
                "controls are Python hooks meshdrill cannot run; remove them (meshdrill's own journal and output record every activity)",
            ));
        }
        let title = self.non_empty_str("/title")?;
        let description = self.non_empty_str("/description")?;
        if let Some(tags) = top.get("tags") {
            let ok = tags
                .as_array()
                .is_some_and(|a| a.iter().all(|t| t.as_str().is_some_and(|s| !s.is_empty())));
            if !ok {
                return Err(self.err("/tags", "tags is a list of non-empty strings"));
            }
        }

        let mut k8s_secrets = BTreeMap::new();
        let vars = self.vars(opts, var_config, var_secrets, &mut k8s_secrets)?;
        let (runtime_rollbacks, runtime_hypothesis) = self.runtime()?;
        let runtime_freq = match self.at("/runtime/hypothesis/freq") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(f) if (0.1..=3600.0).contains(&f) => Some(f),
                _ => {
                    return Err(self.err(
                        "/runtime/hypothesis/freq",
                        "seconds between checks, 0.1 to 3600",
                    ));
                }
            },
        };
        let runtime_fail_fast = match self.at("/runtime/hypothesis/fail_fast") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(self.err("/runtime/hypothesis/fail_fast", "true or false"));
            }
        };

        // Activities by name, for `ref`s: method activities, then hypothesis probes; a
        // later duplicate wins (chaostoolkit's cache).
        let method_raw = match top.get("method") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(self.err("/method", "method is a list of activities (it may be [])")),
        };
        let mut cache: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for (i, a) in method_raw.iter().enumerate() {
            if a.get("ref").is_none()
                && let Some(n) = a.get("name").and_then(Value::as_str)
            {
                cache.insert(n.to_string(), (format!("/method/{i}"), a.clone()));
            }
        }
        let hyp_raw = top.get("steady-state-hypothesis");
        if let Some(h) = hyp_raw
            && let Some(Value::Array(ps)) = h.get("probes")
        {
            for (i, a) in ps.iter().enumerate() {
                if a.get("ref").is_none()
                    && let Some(n) = a.get("name").and_then(Value::as_str)
                {
                    cache.insert(
                        n.to_string(),
                        (format!("/steady-state-hypothesis/probes/{i}"), a.clone()),
                    );
                }
            }
        }

        let mut notes = Vec::new();
        let hypothesis = match hyp_raw {
            None | Some(Value::Null) => None,
            Some(Value::Object(h)) => {
                if h.contains_key("controls") {
                    return Err(self.err(
                        "/steady-state-hypothesis/controls",
                        "controls are Python hooks meshdrill cannot run; remove them",
                    ));
                }
                let title = self.non_empty_str("/steady-state-hypothesis/title")?;
                let mut probes = Vec::new();
                match h.get("probes") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(ps)) => {
                        for i in 0..ps.len() {
                            let ptr = format!("/steady-state-hypothesis/probes/{i}");
                            let a = self.activity(&ptr, &cache, &vars, true, &mut notes)?;
                            if a.kind != Kind::Probe {
                                return Err(self.err(
                                    &format!("{ptr}/type"),
                                    "the steady-state hypothesis holds probes only",
                                ));
                            }
                            probes.push(a);
                        }
                    }
                    Some(_) => {
                        return Err(self.err(
                            "/steady-state-hypothesis/probes",
                            "probes is a list of probes",
                        ));
                    }
                }
                Some(Hypothesis { title, probes })
            }
            Some(_) => {
                return Err(self.err(
                    "/steady-state-hypothesis",
                    "expected a mapping with title and probes",
                ));
            }
        };
        let mut method = Vec::new();
        for i in 0..method_raw.len() {
            method.push(self.activity(
                &format!("/method/{i}"),
                &cache,
                &vars,
                false,
                &mut notes,
            )?);
        }
        let mut rollbacks = Vec::new();
        match top.get("rollbacks") {
            None | Some(Value::Null) => {}
            Some(Value::Array(rs)) => {
                for i in 0..rs.len() {
                    let ptr = format!("/rollbacks/{i}");
                    let a = self.activity(&ptr, &cache, &vars, false, &mut notes)?;
                    if a.background {
                        notes.push(format!(
                            "{}: rollback {:?} is `background`: meshdrill runs rollbacks one after the other",
                            a.at, a.name
                        ));
                    }
                    rollbacks.push(a);
                }
            }
            Some(_) => return Err(self.err("/rollbacks", "rollbacks is a list of actions")),
        }
        let title = match substitute_str(&title, &vars) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        notes.dedup();
        Ok(Experiment {
            source: path.to_path_buf(),
            title,
            description,
            document: self.d.value.clone(),
            vars,
            hypothesis,
            method,
            rollbacks,
            runtime_rollbacks,
            runtime_hypothesis,
            runtime_freq,
            runtime_fail_fast,
            notes,
            k8s_secrets,
        })
    }

    fn non_empty_str(&self, ptr: &str) -> R<String> {
        match self.at(ptr) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(self.err(ptr, "must be a non-empty string")),
            None => Err(self.err(ptr, "is required (a non-empty string)")),
        }
    }

    fn runtime(&self) -> R<(Option<RollbackStrategy>, Option<HypothesisStrategy>)> {
        for (ptr, keys) in [
            ("/runtime", &["rollbacks", "hypothesis"][..]),
            ("/runtime/rollbacks", &["strategy"][..]),
            (
                "/runtime/hypothesis",
                &["strategy", "freq", "fail_fast"][..],
            ),
        ] {
            match self.at(ptr) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    if let Some(k) = m.keys().find(|k| !keys.contains(&k.as_str())) {
                        return Err(self.err(
                            &format!("{ptr}/{k}"),
                            format!("unknown key; allowed: {}", keys.join(", ")),
                        ));
                    }
                }
                Some(_) => {
                    return Err(self.err(ptr, format!("a mapping with {}", keys.join(", "))));
                }
            }
        }
        let rb = match self.at("/runtime/rollbacks/strategy") {
            None => None,
            Some(Value::String(s)) => Some(RollbackStrategy::parse(s).ok_or_else(|| {
                self.err(
                    "/runtime/rollbacks/strategy",
                    "one of default, always, never, deviated",
                )
            })?),
            Some(_) => {
                return Err(self.err(
                    "/runtime/rollbacks/strategy",
                    "one of default, always, never, deviated",
                ));
            }
        };
        let hy = match self.at("/runtime/hypothesis/strategy") {
            None => None,
            Some(Value::String(s)) => Some(HypothesisStrategy::parse(s).ok_or_else(|| {
                self.err(
                    "/runtime/hypothesis/strategy",
                    "one of default, before-method-only, after-method-only, during-method-only, continuously",
                )
            })?),
            Some(_) => {
                return Err(self.err(
                    "/runtime/hypothesis/strategy",
                    "one of default, before-method-only, after-method-only, during-method-only, continuously",
                ));
            }
        };
        Ok((rb, hy))
    }

    /// Configuration, then secrets (flattened, as chaostoolkit's ChainMap sees them).
    fn vars(
        &self,
        opts: &LoadOptions,
        var_config: &Map<String, Value>,
        var_secrets: &Map<String, Value>,
        k8s: &mut BTreeMap<String, String>,
    ) -> R<Vars> {
        let mut vars = Vars::default();
        let declared: Map<String, Value> = match self.at("/configuration") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(self.err("/configuration", "configuration is a mapping")),
        };
        let overridden =
            |k: &str| var_config.contains_key(k) || opts.vars.iter().any(|(n, _)| n == k);
        for (k, v) in &declared {
            let ptr = format!("/configuration/{k}");
            // A value given by --var / --var-file needs no environment variable
            // (chaostoolkit validates the environment first and fails).
            if overridden(k) {
                continue;
            }
            let value = match v {
                Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("env") => {
                    let key = m.get("key").and_then(Value::as_str).ok_or_else(|| {
                        self.err(
                            &format!("{ptr}/key"),
                            "an env entry needs the variable's name in `key`",
                        )
                    })?;
                    match self.env_get(key) {
                        Some(raw) => match m.get("env_var_type").and_then(Value::as_str) {
                            Some(ty) => typed(&raw, ty).map_err(|e| {
                                self.err(&format!("{ptr}/env_var_type"), format!("${key}: {e}"))
                            })?,
                            None => Value::String(raw),
                        },
                        None => match m.get("default") {
                            Some(d) => d.clone(),
                            None => {
                                return Err(self.err(
                                    &ptr,
                                    format!(
                                        "configuration {k:?} reads the environment variable {key}, which is not set and has no `default`: export {key}=… (or add `default:`)"
                                    ),
                                ));
                            }
                        },
                    }
                }
                Value::Object(m) if m.contains_key("type") => {
                    return Err(self.err(
                        &format!("{ptr}/type"),
                        "meshdrill reads configuration of `type: env` (or literal values)",
                    ));
                }
                other => other.clone(),
            };
            vars.insert(k.clone(), value);
        }
        for (k, v) in var_config {
            vars.insert(k.clone(), v.clone());
        }
        for (k, v) in &opts.vars {
            if !declared.contains_key(k) && !var_config.contains_key(k) {
                let known: Vec<&String> = declared.keys().collect();
                return Err(ExperimentError::Vars(format!(
                    "--var {k}: the experiment declares no configuration {k:?} (it has: {}); --var sets declared keys only",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )));
            }
            vars.insert(k.clone(), v.clone());
        }
        // Secrets: scope → name → literal | {type: env, key}.
        let secrets = match self.at("/secrets") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(self.err("/secrets", "secrets is a mapping of scope → mapping")),
        };
        for (scope, entries) in secrets.iter().chain(var_secrets.iter()) {
            let sptr = format!("/secrets/{scope}");
            let Value::Object(entries) = entries else {
                return Err(self.err(&sptr, "a secrets scope is a mapping of name → value"));
            };
            for (name, v) in entries {
                let ptr = format!("{sptr}/{name}");
                let value = match v {
                    Value::Object(m) => match m.get("type").and_then(Value::as_str) {
                        Some("env") => {
                            let key = m.get("key").and_then(Value::as_str).ok_or_else(|| {
                                self.err(&format!("{ptr}/key"), "an env secret needs `key`")
                            })?;
                            match self.env_get(key) {
                                Some(s) => Value::String(s),
                                None => {
                                    return Err(self.err(
                                        &ptr,
                                        format!(
                                            "secret {name:?} reads the environment variable {key}, which is not set: export {key}=…"
                                        ),
                                    ));
                                }
                            }
                        }
                        Some(other) => {
                            return Err(self.err(
                                &format!("{ptr}/type"),
                                format!("secrets of type {other:?} are not supported; use `type: env` or a literal"),
                            ));
                        }
                        None => v.clone(),
                    },
                    other => other.clone(),
                };
                if name.starts_with("KUBERNETES_")
                    && let Value::String(s) = &value
                {
                    k8s.insert(name.clone(), s.clone());
                }
                if vars.get(name).is_none() {
                    vars.insert(name.clone(), value);
                }
            }
        }
        Ok(vars)
    }

    /// One activity at `ptr` (a `ref` resolved through `cache`).
    fn activity(
        &self,
        ptr: &str,
        cache: &BTreeMap<String, (String, Value)>,
        vars: &Vars,
        in_hypothesis: bool,
        notes: &mut Vec<String>,
    ) -> R<Activity> {
        let Some(Value::Object(entry)) = self.at(ptr) else {
            return Err(self.err(
                ptr,
                "an activity is a mapping (type, name, provider) or {ref: NAME}",
            ));
        };
        // A `ref` runs the referenced activity; in the hypothesis, with this entry's
        // tolerance.
        let (aptr, raw) = match entry.get("ref") {
            Some(Value::String(name)) => match cache.get(name) {
                Some((p, v)) => (p.clone(), v.clone()),
                None => {
                    return Err(self.err(
                        &format!("{ptr}/ref"),
                        format!(
                            "no method activity or hypothesis probe is named {name:?}{}",
                            if cache.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " (named: {})",
                                    cache.keys().cloned().collect::<Vec<_>>().join(", ")
                                )
                            }
                        ),
                    ));
                }
            },
            Some(_) => return Err(self.err(&format!("{ptr}/ref"), "ref is an activity's name")),
            None => (ptr.to_string(), Value::Object(entry.clone())),
        };
        if raw.get("controls").is_some() {
            return Err(self.err(
                &format!("{aptr}/controls"),
                "controls are Python hooks meshdrill cannot run; remove them",
            ));
        }
        let kind = match raw.get("type").and_then(Value::as_str) {
            Some("probe") => Kind::Probe,
            Some("action") => Kind::Action,
            _ => return Err(self.err(&format!("{aptr}/type"), "type is `probe` or `action`")),
        };
        let name = match raw.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(self.err(&format!("{aptr}/name"), "name is a non-empty string")),
        };
        let tolerance = if in_hypothesis {
            let t = entry.get("tolerance").cloned().ok_or_else(|| {
                self.err(
                    &format!("{ptr}/tolerance"),
                    "every hypothesis probe needs a tolerance (e.g. `tolerance: 200` for an HTTP status)",
                )
            })?;
            tolerance::validate(&t).map_err(|m| self.err(&format!("{ptr}/tolerance"), m))?;
            // A `type: probe` tolerance is a probe of its own: it must be one meshdrill
            // can run (checked with a stand-in for the output it will get).
            if t.get("type").and_then(Value::as_str) == Some("probe") {
                let mut probe = t.clone();
                if let Some(args) = probe
                    .pointer_mut("/provider")
                    .and_then(Value::as_object_mut)
                    .map(|p| {
                        p.entry("arguments")
                            .or_insert_with(|| Value::Object(Map::new()))
                    })
                    && let Value::Object(m) = args
                {
                    m.insert("value".into(), Value::Null);
                }
                tolerance_probe(&probe, vars, self.on_mesh).map_err(|m| {
                    self.err(
                        &format!("{ptr}/tolerance"),
                        format!("the tolerance's probe: {m}"),
                    )
                })?;
            }
            Some(t)
        } else {
            None
        };
        let pause = |which: &str| -> R<Option<Duration>> {
            let pp = format!("{aptr}/pauses/{which}");
            match raw.pointer(&format!("/pauses/{which}")) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => {
                    let v = substitute(v, vars);
                    let secs = match &v {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.trim().parse::<f64>().ok(),
                        _ => None,
                    };
                    match secs {
                        Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                            Ok(Some(Duration::from_secs_f64(s)))
                        }
                        _ => {
                            Err(self.err(&pp, format!("a pause is seconds (0 to 86400), got {v}")))
                        }
                    }
                }
            }
        };
        let pause_before = pause("before")?;
        let pause_after = pause("after")?;
        let background = match raw.get("background") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(self.err(&format!("{aptr}/background"), "background is true or false"));
            }
        };
        let provider = self.provider(&aptr, &raw, vars, notes)?;
        Ok(Activity {
            kind,
            name,
            provider,
            pause_before,
            pause_after,
            background,
            tolerance,
            at: self.d.locate(ptr),
            raw,
        })
    }

    fn provider(
        &self,
        aptr: &str,
        raw: &Value,
        vars: &Vars,
        notes: &mut Vec<String>,
    ) -> R<Provider> {
        let pptr = format!("{aptr}/provider");
        let Some(Value::Object(p)) = raw.get("provider") else {
            return Err(self.err(
                &pptr,
                "provider is a mapping with type python, process or http",
            ));
        };
        let substituted_args = |ptr: &str| -> Option<Value> {
            p.get("arguments").map(|a| {
                // chaostoolkit substitutes process and python arguments only when there
                // is configuration or there are secrets.
                if vars.values.is_empty() {
                    a.clone()
                } else {
                    let _ = ptr;
                    substitute(a, vars)
                }
            })
        };
        match p.get("type").and_then(Value::as_str) {
            Some("http") => self.http(&pptr, p, vars, notes).map(Provider::Http),
            Some("process") => {
                let path = match p.get("path") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => {
                        return Err(self.err(&format!("{pptr}/path"), "path is the program to run"));
                    }
                };
                let args = substituted_args(&pptr);
                let timeout = match p.get("timeout") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => n
                        .as_f64()
                        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                        .map(Duration::from_secs_f64),
                    Some(_) => None,
                }
                .map(Some)
                .or_else(|| p.get("timeout").is_none().then_some(None))
                .ok_or_else(|| self.err(&format!("{pptr}/timeout"), "timeout is seconds"))?;
                let argv_tail: Option<Result<Vec<String>, String>> = match &args {
                    None | Some(Value::Null) => Some(Ok(Vec::new())),
                    Some(Value::Array(items)) => Some(Ok(items
                        .iter()
                        .filter(|v| !v.is_null() && v.as_str() != Some(""))
                        .map(py_str)
                        .collect())),
                    Some(Value::String(_)) => None,
                    // chaoslib flattens a mapping into `key value` pairs.
                    Some(Value::Object(m)) => Some(Ok(m
                        .iter()
                        .flat_map(|(k, v)| {
                            std::iter::once(k.clone())
                                .chain((!v.is_null() && v.as_str() != Some("")).then(|| py_str(v)))
                        })
                        .collect())),
                    Some(_) => Some(Err("arguments is a list, a mapping or a string".into())),
                };
                let program = Path::new(&path)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(&path)
                    .to_string();
                let (argv, shell) = match argv_tail {
                    Some(Ok(tail)) => {
                        let mut argv = vec![path.clone()];
                        argv.extend(tail);
                        (argv, None)
                    }
                    Some(Err(m)) => return Err(self.err(&format!("{pptr}/arguments"), m)),
                    None => {
                        // The shell runs it; words are split here only to recognise a
                        // load tool's command line.
                        let s = args.as_ref().and_then(Value::as_str).unwrap_or("");
                        let mut argv = vec![path.clone()];
                        if matches!(program.as_str(), "siege" | "kubectl") {
                            argv.extend(siege::split_words(s).unwrap_or_default());
                        }
                        (argv, Some(format!("{path} {s}")))
                    }
                };
                // A load tool runs on meshdrill's own engine.
                match siege::recognise(&program, &argv[1..]) {
                    Ok(Some(load)) => {
                        if !load.ignored.is_empty() {
                            notes.push(format!(
                                "{}: {} runs on meshdrill's load engine; not reproduced: {}",
                                self.d.locate(aptr),
                                program,
                                load.ignored.join(", ")
                            ));
                        }
                        return Ok(Provider::Load(load));
                    }
                    Ok(None) => {}
                    Err(m) => return Err(self.err(&format!("{pptr}/arguments"), m)),
                }
                if self.on_mesh
                    && matches!(
                        program.as_str(),
                        "kubectl" | "helm" | "istioctl" | "oc" | "kubectx"
                    )
                {
                    return Err(self.err(
                        &format!("{pptr}/path"),
                        format!(
                            "{program} talks to a cluster, and this run is on the local mesh: it would reach your current kube context. Run the experiment on the cluster, or replace the step (meshdrill maps `kubectl run … siege …` itself)"
                        ),
                    ));
                }
                if which(&path).is_none() {
                    return Err(self.err(
                        &format!("{pptr}/path"),
                        format!(
                            "{path:?} is not on PATH (chaostoolkit needs it too); meshdrill runs siege (directly or in `kubectl run`) on its own load engine, other programs must be installed"
                        ),
                    ));
                }
                Ok(Provider::Process(ProcessCall {
                    argv,
                    shell,
                    timeout,
                }))
            }
            Some("python") => {
                let module = p.get("module").and_then(Value::as_str).unwrap_or("");
                let func = p.get("func").and_then(Value::as_str).unwrap_or("");
                let Some(f) = FUNCS.iter().find(|f| f.module == module && f.func == func) else {
                    return Err(self.err(
                        &format!("{pptr}/func"),
                        format!(
                            "meshdrill cannot run the python function {module}.{func}; it runs: {}",
                            supported_functions()
                        ),
                    ));
                };
                let args = match substituted_args(&pptr) {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(m)) => m,
                    Some(_) => {
                        return Err(self.err(
                            &format!("{pptr}/arguments"),
                            "python arguments are a mapping of parameter → value",
                        ));
                    }
                };
                self.python(&pptr, f, &args).map(Provider::Target)
            }
            _ => Err(self.err(&format!("{pptr}/type"), "type is python, process or http")),
        }
    }

    fn http(
        &self,
        pptr: &str,
        p: &Map<String, Value>,
        vars: &Vars,
        notes: &mut Vec<String>,
    ) -> R<HttpRequest> {
        let url_raw = match p.get("url") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(self.err(&format!("{pptr}/url"), "url is required")),
        };
        // A variable that is empty (an unset INGRESS_HOST exported as "") makes a URL
        // that cannot work: say which.
        for n in names_in(&url_raw) {
            // An unknown name stays as written (chaostoolkit's safe_substitute), e.g.
            // `?$filter=x`.
            if let Some(Value::String(s)) = vars.get(&n)
                && s.trim().is_empty()
            {
                return Err(self.err(
                    &format!("{pptr}/url"),
                    format!("${{{n}}} is empty, so the URL {url_raw:?} cannot work: set the variable it reads (e.g. export INGRESS_HOST=HOST:PORT)"),
                ));
            }
        }
        let url = match substitute_str(&url_raw, vars) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(self.err(
                    &format!("{pptr}/url"),
                    format!("{url:?} is not an http(s) URL with a host"),
                ));
            }
        }
        let method = match p.get("method") {
            None => "GET".to_string(),
            Some(Value::String(m)) if !m.is_empty() => m.to_ascii_uppercase(),
            Some(_) => {
                return Err(self.err(
                    &format!("{pptr}/method"),
                    "method is a string (GET, POST, …)",
                ));
            }
        };
        let mut headers = Vec::new();
        match p.get("headers").map(|h| substitute(h, vars)) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    headers.push((k.clone(), py_str(&v)));
                }
            }
            Some(_) => {
                return Err(self.err(
                    &format!("{pptr}/headers"),
                    "headers is a mapping of name → value",
                ));
            }
        }
        let arguments = p.get("arguments").map(|a| substitute(a, vars));
        let secs = |v: &Value| -> Option<Duration> {
            let s = match v {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => s.trim().parse().ok()?,
                _ => return None,
            };
            (s.is_finite() && s > 0.0 && s <= 86_400.0).then(|| Duration::from_secs_f64(s))
        };
        let (connect_timeout, read_timeout) = match p.get("timeout").map(|t| substitute(t, vars)) {
            None | Some(Value::Null) => {
                notes.push(format!(
                    "http providers without a timeout wait forever in chaostoolkit; meshdrill gives up after {}s to connect and {}s per read (set `timeout:` to choose)",
                    DEFAULT_CONNECT_TIMEOUT.as_secs(),
                    DEFAULT_READ_TIMEOUT.as_secs()
                ));
                (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
            }
            Some(Value::Array(a)) if a.len() == 2 => match (secs(&a[0]), secs(&a[1])) {
                (Some(c), Some(r)) => (c, r),
                _ => {
                    return Err(self.err(
                        &format!("{pptr}/timeout"),
                        "timeout is seconds, or [connect, read] seconds",
                    ));
                }
            },
            Some(v) => match secs(&v) {
                Some(t) => (t, t),
                None => {
                    return Err(self.err(
                        &format!("{pptr}/timeout"),
                        "timeout is seconds, or [connect, read] seconds",
                    ));
                }
            },
        };
        let verify_tls = match p.get("verify_tls") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(self.err(&format!("{pptr}/verify_tls"), "verify_tls is true or false"));
            }
        };
        Ok(HttpRequest {
            url,
            method,
            headers,
            arguments,
            connect_timeout,
            read_timeout,
            verify_tls,
        })
    }

    fn python(&self, pptr: &str, f: &Func, args: &Map<String, Value>) -> R<TargetCall> {
        let aptr = format!("{pptr}/arguments");
        for k in args.keys() {
            if !f.required.contains(&k.as_str())
                && !f.optional.contains(&k.as_str())
                && k != "secrets"
                && k != "configuration"
            {
                let mut all: Vec<&str> = f.required.to_vec();
                all.extend(f.optional);
                return Err(self.err(
                    &format!("{aptr}/{k}"),
                    format!(
                        "{}.{}() takes no argument {k:?}; it takes {}",
                        f.module,
                        f.func,
                        all.join(", ")
                    ),
                ));
            }
        }
        for r in f.required {
            if !args.contains_key(*r) {
                return Err(self.err(&aptr, format!("{}() needs `{r}`", f.func)));
            }
        }
        let a = Args {
            p: self,
            ptr: &aptr,
            args,
        };
        if let Some(sel) = a.opt_str("label_selector")? {
            super::pods::Selector::parse(&sel)
                .map_err(|m| self.err(&format!("{aptr}/label_selector"), m))?;
        }
        let ns = || -> R<String> {
            Ok(if self.on_mesh {
                a.opt_str("ns")?; // still checked
                String::new()
            } else {
                a.opt_str("ns")?.unwrap_or_else(|| "default".into())
            })
        };
        if let Some(v) = a.opt_str("version")?
            && !matches!(
                v.as_str(),
                "networking.istio.io/v1alpha3"
                    | "networking.istio.io/v1beta1"
                    | "networking.istio.io/v1"
            )
        {
            return Err(self.err(
                &format!("{aptr}/version"),
                format!("{v:?} is not a VirtualService API version (networking.istio.io/v1, v1beta1 or v1alpha3); meshdrill uses the one the cluster serves"),
            ));
        }
        Ok(match f.func {
            "add_delay_fault" | "add_abort_fault" => {
                let percentage = match a.opt_f64("percentage")? {
                    None => Percentage::HUNDRED,
                    Some(p) => Percentage::new(p)
                        .map_err(|e| self.err(&format!("{aptr}/percentage"), e.to_string()))?,
                };
                let fault = if f.func == "add_delay_fault" {
                    let d = a.str("fixed_delay")?;
                    let fixed: IstioDuration =
                        d.parse().map_err(|e: crate::istio::ValueError| {
                            self.err(&format!("{aptr}/fixed_delay"), e.to_string())
                        })?;
                    Fault::Delay(DelaySpec { fixed, percentage })
                } else {
                    let s = a.i64("http_status")?;
                    let code = HttpStatus::new(s)
                        .map_err(|e| self.err(&format!("{aptr}/http_status"), e.to_string()))?;
                    Fault::Abort(AbortSpec {
                        code: AbortCode::Http(code),
                        percentage,
                    })
                };
                TargetCall::AddFault {
                    vs: a.str("virtual_service_name")?,
                    ns: ns()?,
                    selector: a.routes()?,
                    fault,
                }
            }
            "remove_delay_fault" | "remove_abort_fault" => TargetCall::RemoveFault {
                vs: a.str("virtual_service_name")?,
                ns: ns()?,
                selector: a.routes()?,
                kind: if f.func == "remove_delay_fault" {
                    FaultKind::Delay
                } else {
                    FaultKind::Abort
                },
            },
            "get_virtual_service" => TargetCall::GetVirtualService {
                vs: a.str("virtual_service_name")?,
                ns: ns()?,
            },
            "terminate_pods" => {
                let mode = a.opt_str("mode")?.unwrap_or_else(|| "fixed".into());
                let percentage = match mode.as_str() {
                    "fixed" => false,
                    "percentage" => true,
                    _ => {
                        return Err(
                            self.err(&format!("{aptr}/mode"), "mode is `fixed` or `percentage`")
                        );
                    }
                };
                let order = a.opt_str("order")?.unwrap_or_else(|| "alphabetic".into());
                let oldest = match order.as_str() {
                    "alphabetic" => false,
                    "oldest" => true,
                    _ => {
                        return Err(self.err(
                            &format!("{aptr}/order"),
                            "order is `alphabetic` or `oldest`",
                        ));
                    }
                };
                let qty = match a.opt_i64("qty")? {
                    None => 1,
                    Some(q) if q >= 0 => q as u64,
                    Some(_) => {
                        return Err(self.err(&format!("{aptr}/qty"), "qty cannot be negative"));
                    }
                };
                let grace_period = match a.opt_i64("grace_period")? {
                    None => None,
                    Some(g) if g < 0 => None,
                    Some(g) => Some(
                        u32::try_from(g)
                            .map_err(|_| self.err(&format!("{aptr}/grace_period"), "too large"))?,
                    ),
                };
                let name_pattern = a.opt_str("name_pattern")?;
                if let Some(pat) = &name_pattern {
                    regex::Regex::new(pat).map_err(|e| {
                        self.err(
                            &format!("{aptr}/name_pattern"),
                            format!("not a regular expression: {e}"),
                        )
                    })?;
                }
                let label_selector = a.opt_str("label_selector")?;
                if label_selector.is_none() && name_pattern.is_none() {
                    return Err(self.err(
                        &aptr,
                        "terminate_pods without label_selector or name_pattern would pick from every pod in the namespace; give one of them",
                    ));
                }
                TargetCall::TerminatePods(Terminate {
                    label_selector,
                    name_pattern,
                    all: a.opt_bool("all")?.unwrap_or(false),
                    rand: a.opt_bool("rand")?.unwrap_or(false),
                    percentage,
                    qty,
                    grace_period,
                    ns: ns()?,
                    oldest,
                })
            }
            "pods_in_phase" => TargetCall::Pods(PodsProbe::InPhase {
                selector: a.str("label_selector")?,
                phase: a.opt_str("phase")?.unwrap_or_else(|| "Running".into()),
                ns: ns()?,
            }),
            "pods_not_in_phase" => TargetCall::Pods(PodsProbe::NotInPhase {
                selector: a.str("label_selector")?,
                phase: a.opt_str("phase")?.unwrap_or_else(|| "Running".into()),
                ns: ns()?,
            }),
            "count_pods" => TargetCall::Pods(PodsProbe::Count {
                selector: a.str("label_selector")?,
                phase: a.opt_str("phase")?,
                ns: ns()?,
            }),
            "all_pods_healthy" => TargetCall::Pods(PodsProbe::AllHealthy {
                ns: ns()?,
                raise: a.opt_bool("raise_on_any_unhealthy")?.unwrap_or(true),
            }),
            "deployment_available_and_healthy" | "microservice_available_and_healthy" => {
                TargetCall::Deployments(DeploymentsProbe::AvailableAndHealthy {
                    name: a.str("name")?,
                    ns: ns()?,
                    label_selector: a.opt_str("label_selector")?,
                    raise: a.opt_bool("raise_on_unavailable")?.unwrap_or(true),
                    // chaosk8s's microservice probe returns None when healthy.
                    returns_none: f.func == "microservice_available_and_healthy",
                })
            }
            // chaosk8s: all_microservices_healthy is the pods check.
            _ => TargetCall::Pods(PodsProbe::AllHealthy {
                ns: ns()?,
                raise: true,
            }),
        })
    }
}

/// Typed python arguments.
struct Args<'a> {
    p: &'a P<'a>,
    ptr: &'a str,
    args: &'a Map<String, Value>,
}

impl Args<'_> {
    fn err(&self, k: &str, m: impl Into<String>) -> ExperimentError {
        self.p.err(&format!("{}/{k}", self.ptr), m)
    }
    fn opt_str(&self, k: &str) -> R<Option<String>> {
        match self.args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(k, format!("expected a string, found {v}"))),
        }
    }
    fn str(&self, k: &str) -> R<String> {
        match self.opt_str(k)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.err(k, "expected a non-empty string")),
        }
    }
    fn opt_f64(&self, k: &str) -> R<Option<f64>> {
        match self.args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.err(k, format!("expected a number, found {s:?}"))),
            Some(v) => Err(self.err(k, format!("expected a number, found {v}"))),
        }
    }
    fn opt_i64(&self, k: &str) -> R<Option<i64>> {
        match self.args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.err(k, format!("expected an integer, found {s:?}"))),
            Some(v) => Err(self.err(k, format!("expected an integer, found {v}"))),
        }
    }
    fn i64(&self, k: &str) -> R<i64> {
        self.opt_i64(k)?
            .ok_or_else(|| self.err(k, "expected an integer"))
    }
    fn opt_bool(&self, k: &str) -> R<Option<bool>> {
        match self.args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(self.err(k, format!("expected true or false, found {v}"))),
        }
    }
    /// `routes: [{destination: {host, subset?}}, …]`.
    fn routes(&self) -> R<crate::istio::RouteSelector> {
        let Some(Value::Array(rs)) = self.args.get("routes") else {
            return Err(self.err(
                "routes",
                "routes is a list of {destination: {host, subset}}",
            ));
        };
        let mut dests = Vec::new();
        for (i, r) in rs.iter().enumerate() {
            let host = r.pointer("/destination/host").and_then(Value::as_str);
            let subset = r.pointer("/destination/subset");
            match (host, subset) {
                (Some(h), None | Some(Value::Null)) if !h.is_empty() => {
                    dests.push((h.to_string(), None))
                }
                (Some(h), Some(Value::String(s))) if !h.is_empty() => {
                    dests.push((h.to_string(), Some(s.clone())))
                }
                _ => {
                    return Err(self.err(
                        &format!("routes/{i}"),
                        "each route is {destination: {host: NAME, subset: NAME?}}",
                    ));
                }
            }
        }
        if dests.is_empty() {
            return Err(self.err("routes", "routes is empty: name at least one destination"));
        }
        Ok(routes_selector(dests))
    }
}

fn routes_selector(dests: Vec<(String, Option<String>)>) -> crate::istio::RouteSelector {
    crate::istio::RouteSelector::Destinations(dests)
}

/// The probe of a `type: probe` tolerance (its `provider.arguments.value` already
/// set to the output), as an activity.
pub fn tolerance_probe(v: &Value, vars: &Vars, on_mesh: bool) -> Result<Activity, String> {
    let d = Document::from_value(manifest::Source("tolerance".into()), v.clone());
    let env = BTreeMap::new();
    let p = P {
        d: &d,
        env: &env,
        on_mesh,
    };
    let mut notes = Vec::new();
    p.activity("", &BTreeMap::new(), vars, false, &mut notes)
        .map_err(|e| e.to_string())
}

/// `shutil.which`.
pub fn which(program: &str) -> Option<PathBuf> {
    let runnable = |p: &PathBuf| crate::mesh::envoy::is_executable(p);
    if program.contains('/') {
        let p = PathBuf::from(program);
        return runnable(&p).then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(runnable)
}
