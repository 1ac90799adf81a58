//! The journal: everything a drill did and measured, as one JSON document (`--journal
//! FILE`): phases with their SLO results, every patch applied and reverted, the 1 s
//! interval series, stop conditions, rollbacks, the verdict and why the run ended.
//! Reports (text, HTML) are built from it; nothing here prints.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::slo::retry::RetryValidation;
use crate::slo::{SloResult, Verdict};

/// Format version of the journal (`journal.format`).
pub const FORMAT: u32 = 1;

/// Why the run ended, and the exit code that goes with it (README "Exit codes").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Ending {
    /// Not recorded (a journal read back that stops before its end).
    #[default]
    Unknown,
    /// The drill ran to its end and was judged.
    Completed,
    /// The steady state before the method did not hold: nothing was injected.
    SteadyStateFailed,
    /// A stop condition halted the method.
    StopCondition { condition: String },
    /// A signal stopped the run (after the rollback).
    Interrupted { signal: String },
    /// A signal came before anything was changed.
    InterruptedBeforeChange { signal: String },
    /// The input turned out unusable once the target was known (no such route, ...).
    InputError { message: String },
    /// The target failed (cluster, Envoy, network).
    TargetError { message: String },
    /// The rollback failed: the drill record stays, with its expiry, for `recover`.
    RollbackFailed { message: String },
    /// A second signal abandoned a slow rollback.
    RollbackAbandoned { signal: String },
    /// `--dry-run`: the plan was printed, nothing was touched.
    DryRun,
}

/// Exit codes of the CLI contract.
pub mod exit {
    /// All SLOs held / done.
    pub const OK: u8 = 0;
    /// An SLO was violated (or an expected breach did not happen).
    pub const VIOLATED: u8 = 1;
    /// Usage or input error.
    pub const INPUT: u8 = 2;
    /// Target error (cluster, Envoy, network), or a rollback that did not complete.
    pub const TARGET: u8 = 3;
    /// The sample could not tell whether the SLOs hold.
    pub const INCONCLUSIVE: u8 = 4;
    /// Interrupted (after rollback).
    pub const INTERRUPTED: u8 = 130;
}

/// The drill's verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DrillVerdict {
    /// Every judged phase met its expectation.
    Held,
    /// Some phase did not (or a stop condition fired, or the steady state failed).
    Broke,
    /// No phase failed, but some could not be decided from the sample.
    Inconclusive,
    /// Not judged (interrupted, error, dry run, nothing to judge).
    #[default]
    NotJudged,
}

/// What a phase is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PhaseKind {
    SteadyStateBefore,
    #[default]
    Hold,
    Flood,
    Pause,
    SearchProbe,
    SteadyStateAfter,
}

/// A measured stretch of the drill.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PhaseRecord {
    pub name: String,
    pub kind: PhaseKind,
    /// The method step it belongs to.
    pub step: Option<usize>,
    /// Seconds from the start of the load.
    pub start_s: f64,
    pub end_s: f64,
    /// `hold`, `breach`, `breach: a, b`, `ignore`.
    pub expect: String,
    pub summary: Summary,
    pub slos: Vec<SloResult>,
    /// The phase's verdict against its expectation (`Pass` = as expected).
    pub verdict: Option<Verdict>,
    /// Why, in words.
    pub verdict_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_check: Option<RetryValidation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodRecord>,
    /// Local mesh: Envoy's counters over the phase (faults, retries, overflow, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh: Option<Value>,
}

/// A flood step's own traffic and objectives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FloodRecord {
    pub url: String,
    pub summary: Summary,
    pub slos: Vec<SloResult>,
    pub series: Vec<IntervalSummary>,
}

/// Counts and percentiles of a stretch of load.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Summary {
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub target_rps: Option<f64>,
    /// Answers by status code, and `error_kinds` for requests with no answer.
    pub status_codes: std::collections::BTreeMap<String, u64>,
    pub errors: u64,
    pub error_kinds: std::collections::BTreeMap<String, u64>,
    /// From the intended start (open loop), failed requests included at the time
    /// they took.
    pub latency_ms: Percentiles,
    /// From the actual send (open loop only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_time_ms: Option<Percentiles>,
    /// The latency distribution (as `latency_ms`) for percentile plots: `[percentile,
    /// ms]` pairs at log-spaced points from 50% to 99.99%, as far as the sample
    /// resolves (a point needs 1/(1 − p) requests).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_distribution: Vec<[f64; 2]>,
}

impl Summary {
    /// Requests answered 2xx or 3xx.
    pub fn succeeded(&self) -> u64 {
        self.status_codes
            .iter()
            .filter(|(k, _)| k.parse::<u16>().is_ok_and(|c| (200..400).contains(&c)))
            .map(|(_, n)| *n)
            .sum()
    }

    /// The share of requests answered 2xx or 3xx, in percent (`None` without requests).
    pub fn success_percent(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.succeeded() as f64 * 100.0 / self.requests as f64)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

/// One second of the background load.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IntervalSummary {
    /// Start, seconds from the start of the load.
    pub t: f64,
    pub requests: u64,
    pub rps: f64,
    pub target_rps: Option<f64>,
    /// 2xx and 3xx answers.
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// Requests with no HTTP answer.
    pub failed: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub service_p50_ms: Option<f64>,
    pub service_p99_ms: Option<f64>,
    /// Each SLO's value in this second (in its unit), where it has one.
    pub slos: std::collections::BTreeMap<String, Option<f64>>,
}

/// One change a step made, and its rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChangeRecord {
    pub step: Option<usize>,
    /// `fault`, `retries`, `timeout`, `clear`, `kill`, `restart`.
    pub action: String,
    pub object: String,
    pub namespace: Option<String>,
    pub change: String,
    /// Seconds from the start of the run.
    pub at_s: f64,
    pub routes: Vec<usize>,
    /// The guarded RFC 6902 patch sent (empty for kills and restarts).
    pub patch: Value,
    /// Local mesh: the route version Envoy confirmed and how long it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_ms: Option<f64>,
    pub warnings: Vec<String>,
}

impl ChangeRecord {
    /// `namespace/name`, or the name where no namespace was recorded.
    pub fn object_path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.object),
            None => self.object.clone(),
        }
    }
}

/// One rollback action.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RollbackRecord {
    /// `clear go-demo-8`, `restart go-demo-8 replica 0`, or a rollback step's label.
    pub action: String,
    pub at_s: f64,
    /// `restored`, `nothing to restore`, `gone`, `restarted`, `failed: …`, `abandoned`.
    pub outcome: String,
    /// The patch that restored the object (when one was sent).
    pub patch: Value,
    pub ok: bool,
}

/// A stop condition that fired.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StopRecord {
    pub condition: String,
    pub at_s: f64,
    /// The SLO's value in each interval of the run that fired it.
    pub values: Vec<Option<f64>>,
}

/// One probe of a search.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProbeRecord {
    pub value: f64,
    pub verdict: Verdict,
    /// The deciding SLO results, in words.
    pub detail: String,
}

/// A search step's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SearchRecord {
    pub step: usize,
    /// `abort % on go-demo-8`, `flood rate`.
    pub over: String,
    pub unit: String,
    pub probes: Vec<ProbeRecord>,
    /// The largest probed value at which every SLO held (with confidence).
    pub holds_up_to: Option<f64>,
    /// The smallest probed value at which they did not.
    pub breaks_at: Option<f64>,
    /// In words: `availability >= 99% holds up to 37 ± 2 % upstream failure`.
    pub answer: String,
}

/// A step as it was carried out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StepRecord {
    pub index: usize,
    pub label: String,
    pub at: String,
    pub start_s: f64,
    pub end_s: f64,
    /// `done`, `failed: …`, `stopped`, `skipped`.
    pub status: String,
}

/// Everything about one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Journal {
    pub format: u32,
    pub meshdrill: String,
    /// What ran: meshdrill, the scenario format, Envoy (local mesh), the VirtualService
    /// API version (cluster).
    pub versions: Value,
    pub scenario: String,
    pub source: String,
    pub target: String,
    pub target_kind: crate::target::Kind,
    pub started: jiff::Timestamp,
    pub ended: jiff::Timestamp,
    pub dry_run: bool,
    pub rollback_strategy: String,
    pub confidence: f64,
    /// The background load as run (URL with `{ingress}` resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<Value>,
    pub objectives: Vec<Value>,
    pub steps: Vec<StepRecord>,
    pub phases: Vec<PhaseRecord>,
    pub changes: Vec<ChangeRecord>,
    pub rollbacks: Vec<RollbackRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_condition: Option<StopRecord>,
    /// Recovery-time objectives, judged over the series after the last recovery event.
    pub recovery: Vec<SloResult>,
    pub searches: Vec<SearchRecord>,
    /// Worst-case retry amplification along the mesh's call chains.
    pub retry_chains: Vec<String>,
    /// The background load, second by second.
    pub series: Vec<IntervalSummary>,
    pub warnings: Vec<String>,
    pub verdict: DrillVerdict,
    /// `held`, `broke at step 3 (hold 5s): availability 51.40% < 99%`, ...
    pub verdict_text: String,
    pub ending: Ending,
    pub exit_code: u8,
}

impl Journal {
    /// The exit code for a verdict and an ending (README "Exit codes").
    pub fn exit_code_for(verdict: DrillVerdict, ending: &Ending) -> u8 {
        match ending {
            Ending::Completed | Ending::SteadyStateFailed | Ending::StopCondition { .. } => {
                match verdict {
                    DrillVerdict::Held | DrillVerdict::NotJudged => exit::OK,
                    DrillVerdict::Broke => exit::VIOLATED,
                    DrillVerdict::Inconclusive => exit::INCONCLUSIVE,
                }
            }
            Ending::DryRun => exit::OK,
            Ending::Interrupted { .. } | Ending::InterruptedBeforeChange { .. } => {
                exit::INTERRUPTED
            }
            Ending::InputError { .. } | Ending::Unknown => exit::INPUT,
            Ending::TargetError { .. }
            | Ending::RollbackFailed { .. }
            | Ending::RollbackAbandoned { .. } => exit::TARGET,
        }
    }
}
