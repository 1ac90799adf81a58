//! The journal of an experiment run, in chaostoolkit's structure (the same keys and
//! status values, so tools that read chaostoolkit journals keep working), with
//! meshdrill's own additions under the one extra key `meshdrill`.

use serde::Serialize;
use serde_json::Value;

/// `status` of the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Completed,
    Failed,
    Aborted,
    Interrupted,
}

/// `status` of one activity run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

/// One activity run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub activity: Value,
    pub output: Value,
    pub start: String,
    pub end: String,
    pub duration: f64,
    pub status: RunStatus,
    /// Why it failed (chaostoolkit: the exception's lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Vec<String>>,
    /// Hypothesis probes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance_met: Option<bool>,
}

/// One check of the steady-state hypothesis.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub steady_state_met: bool,
    pub probes: Vec<RunRecord>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SteadyStates {
    pub before: Option<State>,
    pub after: Option<State>,
    pub during: Vec<State>,
}

/// A change meshdrill made (or undid) on the target.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeLog {
    /// The activity's name (or `meshdrill clean-up`).
    pub activity: String,
    /// `VirtualService ns/name`, or `pod ns/name`, or `replica service/N`.
    pub object: String,
    pub change: String,
    /// The RFC 6902 patch sent (VirtualServices).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub patch: Value,
}

/// meshdrill's additions.
#[derive(Debug, Clone, Serialize)]
pub struct Extra {
    pub version: String,
    /// `local mesh DIR`, `cluster URL`, or `none` (nothing but http/process activities).
    pub target: String,
    pub rollback_strategy: String,
    pub hypothesis_strategy: String,
    /// The run's verdict in words.
    pub verdict: String,
    pub exit_code: i32,
    /// One-line notes where meshdrill behaves differently from chaostoolkit.
    pub notes: Vec<String>,
    /// Every change made, in order.
    pub changes: Vec<ChangeLog>,
    /// What the final clean-up undid (or, with --keep-faults, left in place).
    pub cleanup: Vec<String>,
    pub kept_faults: bool,
}

/// The whole journal.
#[derive(Debug, Clone, Serialize)]
pub struct Journal {
    #[serde(rename = "chaoslib-version")]
    pub chaoslib_version: String,
    pub platform: String,
    pub node: String,
    pub experiment: Value,
    pub start: String,
    pub end: String,
    pub duration: f64,
    pub status: Status,
    pub deviated: bool,
    pub steady_states: SteadyStates,
    pub run: Vec<RunRecord>,
    pub rollbacks: Vec<RunRecord>,
    pub meshdrill: Extra,
}

/// chaostoolkit's time format (`datetime.utcnow().isoformat()`, no zone).
pub fn iso(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// `Linux-6.1.0-x86_64`, like Python's `platform.platform()` in spirit.
pub fn platform() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!(
        "{}-{}-{}",
        capitalise(std::env::consts::OS),
        release,
        std::env::consts::ARCH
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
