//! An experiment as the runner takes it: every activity checked, every argument typed
//! and substituted, every python function mapped to what meshdrill does for it.
//! [`super::load`] builds it from a file and is the only place that knows the format.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub use super::http::HttpRequest;
use super::substitute::Vars;
pub use crate::istio::FaultKind;
use crate::istio::{AbortSpec, DelaySpec, RouteSelector};

/// chaostoolkit's rollback strategies (`--rollback-strategy`, `runtime.rollbacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackStrategy {
    /// chaostoolkit's default: rollbacks unless the run failed or was interrupted.
    Default,
    /// In every case (meshdrill's default).
    Always,
    Never,
    /// Only when the steady state deviated after the method.
    Deviated,
}

impl RollbackStrategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "always" => Self::Always,
            "never" => Self::Never,
            "deviated" => Self::Deviated,
            _ => return None,
        })
    }
}

/// When the steady-state hypothesis is checked (`--hypothesis-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypothesisStrategy {
    Default,
    BeforeMethodOnly,
    AfterMethodOnly,
    DuringMethodOnly,
    Continuously,
}

impl HypothesisStrategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "before-method-only" => Self::BeforeMethodOnly,
            "after-method-only" => Self::AfterMethodOnly,
            "during-method-only" => Self::DuringMethodOnly,
            "continuously" => Self::Continuously,
            _ => return None,
        })
    }
    pub fn before(self) -> bool {
        matches!(
            self,
            Self::Default | Self::BeforeMethodOnly | Self::Continuously
        )
    }
    pub fn after(self) -> bool {
        matches!(
            self,
            Self::Default | Self::AfterMethodOnly | Self::Continuously
        )
    }
    pub fn during(self) -> bool {
        matches!(self, Self::DuringMethodOnly | Self::Continuously)
    }
}

/// A whole experiment, ready to run.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub source: PathBuf,
    /// `title`, substituted.
    pub title: String,
    pub description: String,
    /// The document as read (for the journal's `experiment`).
    pub document: Value,
    /// Configuration and secrets, resolved: what `${name}` stands for.
    pub vars: Vars,
    pub hypothesis: Option<Hypothesis>,
    pub method: Vec<Activity>,
    pub rollbacks: Vec<Activity>,
    /// `runtime.rollbacks.strategy` / `runtime.hypothesis.strategy` of the file.
    pub runtime_rollbacks: Option<RollbackStrategy>,
    pub runtime_hypothesis: Option<HypothesisStrategy>,
    /// `runtime.hypothesis.freq` (seconds) and `runtime.hypothesis.fail_fast`.
    pub runtime_freq: Option<f64>,
    pub runtime_fail_fast: Option<bool>,
    /// Things the user should know before it runs (one line each).
    pub notes: Vec<String>,
    /// Secrets named `KUBERNETES_*` (any scope): chaostoolkit's Kubernetes client reads
    /// them before the environment.
    pub k8s_secrets: std::collections::BTreeMap<String, String>,
}

impl Experiment {
    /// Whether any activity acts on or reads a cluster (VirtualServices, pods), or
    /// runs load inside it (`kubectl run … siege …`).
    pub fn needs_target(&self) -> bool {
        self.all().any(|a| match &a.provider {
            Provider::Target(_) => true,
            Provider::Load(l) => l.in_cluster.is_some(),
            _ => false,
        })
    }

    /// Every activity: hypothesis probes, method, rollbacks.
    pub fn all(&self) -> impl Iterator<Item = &Activity> {
        self.hypothesis
            .iter()
            .flat_map(|h| h.probes.iter())
            .chain(&self.method)
            .chain(&self.rollbacks)
    }
}

#[derive(Debug, Clone)]
pub struct Hypothesis {
    pub title: String,
    /// Each with its tolerance (a `ref` entry: the referenced probe with the entry's
    /// tolerance).
    pub probes: Vec<Activity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Probe,
    Action,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Probe => "probe",
            Kind::Action => "action",
        }
    }
}

/// One probe or action.
#[derive(Debug, Clone)]
pub struct Activity {
    pub kind: Kind,
    pub name: String,
    pub provider: Provider,
    pub pause_before: Option<Duration>,
    pub pause_after: Option<Duration>,
    pub background: bool,
    /// In the hypothesis: what the output must meet (raw; substituted when checked).
    pub tolerance: Option<Value>,
    /// `file:line` of the activity (of the `ref` entry for a ref).
    pub at: String,
    /// The activity as written (the referenced one for a `ref`), for the journal.
    pub raw: Value,
}

/// What an activity does.
#[derive(Debug, Clone)]
pub enum Provider {
    /// A real HTTP request (chaostoolkit's http provider).
    Http(HttpRequest),
    /// A real process (chaostoolkit's process provider).
    Process(ProcessCall),
    /// A load tool's command line, run by meshdrill's own load engine.
    Load(LoadCall),
    /// A chaostoolkit-istio / chaostoolkit-kubernetes function, done on the target.
    Target(TargetCall),
}

#[derive(Debug, Clone)]
pub struct ProcessCall {
    /// `path` and the arguments (a string argument list runs through `sh -c`).
    pub argv: Vec<String>,
    pub shell: Option<String>,
    pub timeout: Option<Duration>,
}

/// `siege -c N -t T URL`, or the same inside `kubectl run … -- …`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadCall {
    /// The command line as written, for messages.
    pub command: String,
    pub url: String,
    pub connections: usize,
    pub stop: LoadStop,
    pub headers: Vec<String>,
    /// Run inside the cluster (`kubectl run`): from a pod in `namespace`.
    pub in_cluster: Option<String>,
    /// Flags meshdrill's engine does not reproduce (said in the run output).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadStop {
    Duration(Duration),
    /// siege `-r N`: N repetitions per connection.
    Requests(u64),
}

/// A python function mapped to a target operation.
#[derive(Debug, Clone)]
pub enum TargetCall {
    /// add_delay_fault / add_abort_fault.
    AddFault {
        vs: String,
        ns: String,
        selector: RouteSelector,
        fault: Fault,
    },
    /// remove_delay_fault / remove_abort_fault.
    RemoveFault {
        vs: String,
        ns: String,
        selector: RouteSelector,
        kind: FaultKind,
    },
    GetVirtualService {
        vs: String,
        ns: String,
    },
    TerminatePods(Terminate),
    /// pods_in_phase / pods_not_in_phase / count_pods / all_pods_healthy /
    /// all_microservices_healthy.
    Pods(PodsProbe),
    /// deployment_available_and_healthy / microservice_available_and_healthy.
    Deployments(DeploymentsProbe),
}

#[derive(Debug, Clone)]
pub enum Fault {
    Delay(DelaySpec),
    Abort(AbortSpec),
}

/// chaosk8s `terminate_pods`, its whole signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminate {
    pub label_selector: Option<String>,
    pub name_pattern: Option<String>,
    pub all: bool,
    pub rand: bool,
    /// `percentage` mode: `qty` is a percentage of the matching pods (rounded up).
    pub percentage: bool,
    pub qty: u64,
    pub grace_period: Option<u32>,
    pub ns: String,
    /// `oldest` first (else API order).
    pub oldest: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PodsProbe {
    InPhase {
        selector: String,
        phase: String,
        ns: String,
    },
    NotInPhase {
        selector: String,
        phase: String,
        ns: String,
    },
    Count {
        selector: String,
        phase: Option<String>,
        ns: String,
    },
    /// Every pod Running or Succeeded (`raise`: else a failure, not `false`).
    AllHealthy { ns: String, raise: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeploymentsProbe {
    AvailableAndHealthy {
        name: String,
        ns: String,
        label_selector: Option<String>,
        raise: bool,
        /// Healthy answers `null` (chaosk8s' microservice probe), not `true`.
        returns_none: bool,
    },
}
