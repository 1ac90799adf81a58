//! `meshdrill demo`: the network-failure drill (`scenarios/network-failure.yaml`) on
//! the go-demo-8 local mesh, with verdicts, and no setup.
//!
//! The ingress routes to `repeater` (retrying 5xx ×10), which calls `go-demo-8`
//! through its sidecar. Steady state; 50% of go-demo-8's answers aborted (the
//! retries absorb it: the SLOs hold); 100% aborted (total failure: the SLOs must
//! break — proof that the monitor sees it); cleared (recovery). The same runner as
//! `meshdrill run`: every change is rolled back on success, error and Ctrl-C.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;

use super::run::{Drill, RunOutput, drill, finish};
use super::{CliResult, Failure};
use crate::scenario::RunOptions;
use crate::scenario::model::{StepKind, TargetSpec};

/// The scenario and mesh `demo` runs, as shipped in scenarios/.
pub const SCENARIO: &str = include_str!("../../scenarios/network-failure.yaml");
pub const MESH: &str = include_str!("../../scenarios/meshes/go-demo-8.yaml");

#[derive(Debug, Parser)]
pub struct DemoArgs {
    /// Requests per second through the ingress (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Length of each judged phase (Go duration, 1s to 10m).
    #[arg(long, default_value = "5s", value_parser = parse_phase)]
    pub phase: Duration,
    /// Envoy binary (default: $MESHDRILL_ENVOY, the project's .venv, then PATH).
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Output: text, or the journal as JSON.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: RunOutput,
    /// Write the journal here.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// No live view on a terminal: the plain lines a pipe gets (one per phase, change
    /// and rollback action), then the summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub outputs: super::outputs::OutputArgs,
}

fn parse_phase(s: &str) -> Result<Duration, String> {
    crate::istio::types::parse_go_duration(s)
        .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(600))
        .ok_or_else(|| format!("invalid phase {s:?}: a Go duration from 1s to 10m"))
}

pub fn run(a: DemoArgs, out: &mut (impl Write + Send), err: &mut (impl Write + Send)) -> CliResult {
    if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 10_000.0) {
        return Err(Failure::input(anyhow!(
            "--rate {}: give a rate from 0 (exclusive) to 10000 requests per second",
            a.rate
        )));
    }
    // The shipped files, written out so they are read exactly as `meshdrill run` reads
    // them (and the binary needs no checkout).
    let dir = tempfile::Builder::new()
        .prefix(crate::mesh::running::DEMO_TEMP_PREFIX)
        .tempdir()
        .map_err(|e| Failure::target(anyhow!("cannot create a temporary directory: {e}")))?;
    // Removed when the demo ends; after a `kill -9`, by the next mesh started.
    crate::mesh::running::mark_temp_owner(dir.path()).map_err(|e| Failure::target(anyhow!(e)))?;
    let meshes = dir.path().join("meshes");
    let write = |p: PathBuf, text: &str| {
        std::fs::write(&p, text)
            .map_err(|e| Failure::target(anyhow!("cannot write {}: {e}", p.display())))
    };
    std::fs::create_dir_all(&meshes)
        .map_err(|e| Failure::target(anyhow!("cannot create {}: {e}", meshes.display())))?;
    write(meshes.join("go-demo-8.yaml"), MESH)?;
    let file = dir.path().join("network-failure.yaml");
    write(file.clone(), SCENARIO)?;
    if let Some(p) = &a.journal {
        super::run::check_writable(p)?;
    }
    a.outputs.check()?;
    let mut s = crate::scenario::parse_file(&file).map_err(Failure::input)?;
    s.source = "scenarios/network-failure.yaml (built in)".into();
    if let Some(l) = s.load.as_mut() {
        l.rate = Some(a.rate);
    }
    if let Some(ss) = s.steady_state.as_mut() {
        ss.duration = a.phase;
    }
    for st in &mut s.method {
        if let StepKind::Hold(h) = &mut st.kind {
            h.duration = a.phase;
            st.label = st
                .label
                .replace("5s", &super::super::scenario::runner::human(a.phase));
        }
    }
    debug_assert!(matches!(s.target, TargetSpec::Mesh { .. }));

    let d = Drill {
        conn: None,
        envoy: a.envoy.clone(),
        output: a.output,
        intervals: false,
        quiet: a.quiet,
    };
    let recording = a.outputs.start("meshdrill demo")?;
    let opts = RunOptions {
        histograms: recording.sink(),
        ..RunOptions::default()
    };
    let journal = drill(&s, d, &opts, out, err)?;
    drop(dir);
    finish(
        &journal,
        a.journal.as_deref(),
        &a.outputs,
        recording,
        a.output,
        out,
        err,
    )
}
