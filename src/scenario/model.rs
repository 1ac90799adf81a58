//! The scenario as the runner takes it: every field checked, every value typed.
//! [`super::parse`] builds it from a file and is the only place that knows the YAML.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::istio::{AbortCode, Change, IstioDuration, RouteSelector};
use crate::slo::{Cmp, Objective};

/// `apiVersion` of scenario files.
pub const API_VERSION: &str = "meshdrill.io/v1alpha1";
/// `kind` of scenario files.
pub const KIND: &str = "Scenario";

/// A drill: where it runs, what load runs through it, what must hold, what happens.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `metadata.name`.
    pub name: String,
    /// The file it was read from (`<embedded>` for built-in ones).
    pub source: String,
    /// `spec.target`.
    pub target: TargetSpec,
    /// `spec.targets`: the only hosts load may go to (exact names, or `*.suffix`).
    /// Every load URL host (but `{ingress}`) and every `Host` header must be listed.
    pub allowed_hosts: Vec<String>,
    /// `spec.load`: the background load that runs through the whole drill and that
    /// the SLOs judge. `None`: nothing is measured (only allowed without SLOs).
    pub load: Option<LoadSpec>,
    /// `spec.slos`, in file order; names are unique.
    pub slos: Vec<Objective>,
    /// `spec.confidence`: of every interval and verdict (default 0.95).
    pub confidence: f64,
    /// `spec.steadyState`: judged before the method (nothing is injected if it does
    /// not hold) and after it.
    pub steady_state: Option<SteadyState>,
    /// `spec.method`: the steps, in order.
    pub method: Vec<Step>,
    /// `spec.stopConditions`: halt the method and roll back when one is met.
    pub stop_conditions: Vec<StopCondition>,
    /// `spec.rollbacks`: extra steps after the method (meshdrill's own changes are
    /// undone anyway). Only change, clear, restart and pause steps.
    pub rollbacks: Vec<Step>,
}

/// Where the drill runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetSpec {
    /// A local mesh started for the run from this file (a `kind: Mesh` file, resolved
    /// against the scenario's directory) — or, given on the command line as a
    /// directory, a mesh already running there (`meshdrill mesh up --dir`).
    Mesh { file: PathBuf },
    /// A Kubernetes cluster with Istio.
    Cluster {
        context: Option<String>,
        namespace: Option<String>,
        kubeconfig: Option<PathBuf>,
        /// What `{ingress}` in load URLs stands for (`host:port`, e.g. a
        /// port-forwarded ingress gateway).
        ingress: Option<String>,
    },
}

/// A load: the background load of the drill, or a flood step's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadSpec {
    /// `http://{ingress}/path`: `{ingress}` is the mesh's ingress (or the cluster
    /// target's `ingress`).
    pub url: String,
    pub method: String,
    /// `Name: value`, as `meshdrill load -H` takes them.
    pub headers: Vec<String>,
    pub body: Option<String>,
    /// Open loop at this rate (requests/s); `None`: closed loop.
    pub rate: Option<f64>,
    /// Ramp from `rate` to `to` over `over`, then hold `to` (floods).
    pub ramp: Option<Ramp>,
    pub connections: usize,
    /// Per-request timeout, connect included (default 5s).
    pub timeout: Duration,
    pub http2: bool,
    /// `file:line` of the load in the scenario, for messages.
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ramp {
    pub to: f64,
    pub over: Duration,
}

/// `spec.steadyState`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SteadyState {
    /// How long each check measures (default 5s).
    pub duration: Duration,
    /// Check before the method (default true) and after it (default true).
    pub before: bool,
    pub after: bool,
}

/// A VirtualService a step acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VsRef {
    pub name: String,
    /// `namespace:` of the step; default: the target's.
    pub namespace: Option<String>,
}

/// One step of the method or of the rollbacks.
#[derive(Debug, Clone)]
pub struct Step {
    /// 0-based position in its list.
    pub index: usize,
    /// `name:` if given, else a description (`fault abort 50% HTTP 500 on go-demo-8`).
    pub label: String,
    /// `file:line` of the step.
    pub at: String,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    /// `fault`, `retries`, `timeout`: a change to the selected routes of one
    /// VirtualService, recorded and reversible.
    Change {
        vs: VsRef,
        selector: RouteSelector,
        change: Change,
    },
    /// `clear`: everything meshdrill changed on the VirtualService, restored.
    Clear { vs: VsRef },
    /// `kill`: on a mesh, replicas of `service` (all, or `replica`, or `count` of
    /// them); on a cluster, pods matching the label `selector` (`count`, default 1).
    Kill {
        service: Option<String>,
        selector: Option<String>,
        replica: Option<usize>,
        count: Option<u32>,
    },
    /// `restart`: replicas of a mesh service started again (mesh only).
    Restart {
        service: String,
        replica: Option<usize>,
    },
    /// `hold`: a judged phase.
    Hold(Hold),
    /// `pause`: wait, judged by nothing (stop conditions still watch).
    Pause(Duration),
    /// `flood`: a second load for a while, judged by its own objectives; the
    /// background SLOs judge the same time as a phase.
    Flood(Flood),
    /// `search`: bisect a fault percentage or a flood rate for the largest value at
    /// which the SLOs hold.
    Search(Search),
}

/// What a judged phase expects of the SLOs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Expect {
    /// Every SLO holds (the default).
    Hold,
    /// These SLOs (all of them when empty: at least one) are breached — a step that
    /// proves the monitor sees a failure. Stop conditions do not apply during it.
    Breach { slos: Vec<String> },
    /// Measured and recorded, not judged.
    Ignore,
}

#[derive(Debug, Clone)]
pub struct Hold {
    pub duration: Duration,
    pub expect: Expect,
    /// `retryCheck`: validate a route's retry policy during this hold.
    pub retry_check: Option<RetryCheck>,
}

/// Validate the retry policy of the (first selected) route of `vs` against a known
/// upstream failure rate.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryCheck {
    pub vs: VsRef,
    pub selector: RouteSelector,
    pub failure: FailureSource,
}

/// The per-attempt failure probability a retry prediction uses.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureSource {
    /// `failureRate: 50%`.
    Rate(f64),
    /// `upstream: go-demo-8`: the abort percentage (and status) on that
    /// VirtualService's first route, as it is when the hold starts.
    Upstream(VsRef),
}

#[derive(Debug, Clone)]
pub struct Flood {
    pub load: LoadSpec,
    pub duration: Duration,
    /// Judged on the flood's own traffic (e.g. "429s appear, no 5xx").
    pub slos: Vec<Objective>,
    /// What the background SLOs should do meanwhile (default: hold).
    pub expect: Expect,
    /// Local meshdrill worker processes the flood is split across (1: in this process),
    /// their histograms merged exactly; a worker that fails leaves the flood partial,
    /// which ends the drill with an error.
    pub workers: u32,
}

/// A bisection for the largest value at which every SLO holds.
#[derive(Debug, Clone)]
pub struct Search {
    pub over: SearchOver,
    /// The range searched: `low` is assumed to hold, `high` to break (both probed
    /// when `probe_ends`).
    pub low: f64,
    pub high: f64,
    /// Stop when the bracket is this narrow (percent points, or requests/s).
    pub resolution: f64,
    /// How long each probe point holds (and is judged).
    pub probe: Duration,
    /// At most this many probes (default 8).
    pub max_probes: u32,
}

#[derive(Debug, Clone)]
pub enum SearchOver {
    /// The percentage of an abort on `vs`'s selected routes.
    Abort {
        vs: VsRef,
        selector: RouteSelector,
        code: AbortCode,
    },
    /// The percentage of a delay on `vs`'s selected routes.
    Delay {
        vs: VsRef,
        selector: RouteSelector,
        fixed: IstioDuration,
    },
    /// The rate of a flood (its `rate` is replaced by each probe's).
    FloodRate { load: LoadSpec },
}

/// Halt the method when `slo`'s 1 s value breaches `threshold` for `intervals`
/// intervals in a row (as AWS FIS stop conditions do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StopCondition {
    pub slo: String,
    /// The breach: `Lt` for `below: 90%`, `Gt` for `above: 2s`.
    pub breach: Cmp,
    /// In the SLO metric's unit (see [`Objective::threshold`]).
    pub threshold: f64,
    /// As written (`below 90%`).
    pub text: String,
    pub intervals: u32,
    pub at: String,
}
