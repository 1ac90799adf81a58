//! `meshdrill run SCENARIO`: a drill from a file, on the scenario's target or the one
//! given here, judged, rolled back, journaled.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use clap::{Parser, ValueEnum};

use super::args::{ConnArgs, fail, mesh_fail, parse_ttl, runtime};
use super::drill::{View, outcome, with_printer, write_summary};
use super::outputs::{OutputArgs, Recording};
use super::term::{Paint, live_terminal, stdout_colour};
use super::{CliResult, Failure, io_err};
use crate::cancel::Cancel;
use crate::mesh::{MeshOptions, MeshSpec};
use crate::scenario::journal::Journal;
use crate::scenario::model::{Scenario, TargetSpec};
use crate::scenario::{RollbackStrategy, RunOptions};
use crate::target::{ClusterTarget, FileTarget, MeshTarget, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunOutput {
    /// Progress lines, then the SLO table and the verdict.
    Text,
    /// The journal (one JSON object) on stdout; progress on stderr.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    Always,
    Deviated,
    Never,
    /// chaostoolkit's default (experiment files only): unless the run failed or was
    /// interrupted.
    Default,
}

#[derive(Debug, Parser)]
#[command(
    after_help = "Exit codes: 0 every judged phase met its objectives, 1 an SLO was \
violated (or a step that expects a breach saw none, or a stop condition fired, or the steady \
state did not hold), 2 usage or input error (file:line: field), 3 target error (cluster, \
Envoy, network) or a rollback that did not complete, 4 inconclusive (the sample cannot tell; \
the output says how many requests would), 130 interrupted (after the rollback).

Experiment files (chaostoolkit): 0 the steady state held, 1 it did not hold before the method \
(nothing was injected), during it or after it, 2 input error (file:line: field, an unknown python \
function, a missing configuration variable), 3 an action failed (403, 404, no route or pod \
matched, PATCH rejected) or the clean-up failed, 130 interrupted (after the rollbacks). Whatever \
the rollbacks leave changed, meshdrill undoes at the end (unless --keep-faults)."
)]
pub struct RunArgs {
    /// The scenario file (`kind: Scenario`), or a chaostoolkit experiment file
    /// (`title`, `description`, `method`; .yaml, .yml or .json).
    #[arg(value_name = "SCENARIO|EXPERIMENT")]
    pub file: PathBuf,
    /// Run on a local mesh instead of the scenario's target: a mesh file (started for
    /// the run) or the --dir of a running `meshdrill mesh up`.
    #[arg(long, value_name = "FILE|DIR", conflicts_with = "cluster")]
    pub mesh: Option<PathBuf>,
    /// Run on the cluster (kubeconfig / KUBERNETES_* variables) instead of the
    /// scenario's target.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Scenario files: namespace of the VirtualServices on a cluster (default: the
    /// scenario's, else the context's). An experiment's actions name theirs (`ns`).
    #[arg(short = 'n', long, value_parser = super::args::parse_namespace)]
    pub namespace: Option<String>,
    /// Scenario files: what {ingress} in load URLs stands for on a cluster (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub ingress: Option<String>,
    /// When the file's `rollbacks` run (meshdrill's own changes are undone anyway).
    /// Default: always (an experiment's `runtime.rollbacks.strategy` if it sets one).
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub rollback_strategy: Option<Strategy>,
    /// Experiment files: set a declared configuration key (TYPE: str, int, float, bool,
    /// json).
    #[arg(long, value_name = "NAME[:TYPE]=VALUE")]
    pub var: Vec<String>,
    /// Experiment files: configuration and secrets from a YAML/JSON file, or
    /// environment variables from a .env file.
    #[arg(long, value_name = "FILE")]
    pub var_file: Vec<PathBuf>,
    /// Experiment files: when the steady-state hypothesis is checked: default (before
    /// and after), before-method-only, after-method-only, during-method-only,
    /// continuously.
    #[arg(long, value_name = "STRATEGY")]
    pub hypothesis_strategy: Option<String>,
    /// Experiment files: seconds between checks of the hypothesis during the method
    /// (default: the experiment's `runtime.hypothesis.freq`, else 1).
    #[arg(long, value_name = "SECONDS")]
    pub hypothesis_frequency: Option<f64>,
    /// Experiment files: the first miss of the hypothesis during the method fails the
    /// run.
    #[arg(long)]
    pub fail_fast: bool,
    /// Experiment files: leave the faults meshdrill injected in place at the end (by
    /// default everything it changed is undone, whatever the rollbacks did).
    #[arg(long)]
    pub keep_faults: bool,
    /// Scenario files: print the plan and every patch; touch nothing (a mesh file is not
    /// started).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", hide_default_value = true, value_name = "client", value_parser = super::args::dry_run_mode, action = clap::ArgAction::Set)]
    pub dry_run: bool,
    /// Write the journal (JSON: phases, patches, SLO results, series, verdict; for an
    /// experiment, chaostoolkit's journal) here.
    #[arg(long, value_name = "FILE", alias = "journal-path")]
    pub journal: Option<PathBuf>,
    /// Output: text, or the journal as JSON.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: RunOutput,
    /// Expiry of every change's drill record (default: the drill's planned length + 5m).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    /// The Envoy binary for a local mesh.
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Scenario files: print every second of the background load.
    #[arg(long)]
    pub intervals: bool,
    /// Scenario files: no live view on a terminal — the plain lines a pipe gets (one
    /// per phase, change and rollback action), then the summary. Not with --intervals.
    #[arg(short = 'q', long, conflicts_with = "intervals")]
    pub quiet: bool,
    #[command(flatten)]
    pub outputs: OutputArgs,
}

pub fn run(a: RunArgs, out: &mut (impl Write + Send), err: &mut (impl Write + Send)) -> CliResult {
    if crate::experiment::file_is_experiment(&a.file) {
        if let Some(flag) = a.outputs.given().first() {
            return Err(Failure::input(anyhow!(
                "{flag} is for scenario files; {} is a chaostoolkit experiment (its journal, --journal, is chaostoolkit's)",
                a.file.display()
            )));
        }
        return super::experiment::run(a, out, err);
    }
    let experiment_only = [
        (!a.var.is_empty(), "--var"),
        (!a.var_file.is_empty(), "--var-file"),
        (a.hypothesis_strategy.is_some(), "--hypothesis-strategy"),
        (a.hypothesis_frequency.is_some(), "--hypothesis-frequency"),
        (a.fail_fast, "--fail-fast"),
        (a.keep_faults, "--keep-faults"),
        (
            a.rollback_strategy == Some(Strategy::Default),
            "--rollback-strategy default",
        ),
    ];
    if let Some((_, flag)) = experiment_only.iter().find(|(on, _)| *on) {
        return Err(Failure::input(anyhow!(
            "{flag} is for chaostoolkit experiment files; {} is not one (a scenario's steady state and rollbacks are in the file)",
            a.file.display()
        )));
    }
    let mut s = crate::scenario::parse_file(&a.file).map_err(Failure::input)?;
    a.conn.check()?;
    if a.mesh.is_some() && a.conn.any() {
        return Err(Failure::input(anyhow!(
            "--kubeconfig, --context, --insecure-skip-tls-verify and --request-timeout are for the cluster, not --mesh"
        )));
    }
    if let Some(m) = &a.mesh {
        s.target = TargetSpec::Mesh { file: m.clone() };
    } else if a.cluster || a.conn.any() || a.namespace.is_some() || a.ingress.is_some() {
        // The command line wins field by field; what it does not say, the scenario's
        // cluster target does.
        let (context, namespace, kubeconfig, ingress) = match &s.target {
            TargetSpec::Cluster {
                context,
                namespace,
                kubeconfig,
                ingress,
            } => (
                context.clone(),
                namespace.clone(),
                kubeconfig.clone(),
                ingress.clone(),
            ),
            TargetSpec::Mesh { .. } if a.cluster => (None, None, None, None),
            TargetSpec::Mesh { .. } => {
                return Err(Failure::input(anyhow!(
                    "-n, --ingress and the cluster flags are for a cluster target; the scenario runs on a local mesh (add --cluster to run it on the cluster)"
                )));
            }
        };
        s.target = TargetSpec::Cluster {
            context: a.conn.context.clone().or(context),
            namespace: a.namespace.clone().or(namespace),
            kubeconfig: a.conn.kubeconfig.clone().or(kubeconfig),
            ingress: a.ingress.clone().or(ingress),
        };
    }
    match &s.target {
        TargetSpec::Mesh { .. } if a.namespace.is_some() || a.ingress.is_some() => {
            return Err(Failure::input(anyhow!(
                "-n and --ingress are for a cluster target; on a mesh, steps name their namespace (`namespace:`) and {{ingress}} is the mesh's own"
            )));
        }
        TargetSpec::Cluster { .. } if a.envoy.is_some() => {
            return Err(Failure::input(anyhow!(
                "--envoy is for a local mesh; this drill runs on a cluster"
            )));
        }
        _ => {}
    }
    // The journal's file is checked before anything starts: a drill whose record
    // cannot be written is not run.
    if let Some(p) = &a.journal {
        check_writable(p)?;
    }
    if a.dry_run
        && let Some(flag) = a.outputs.given().first()
    {
        return Err(Failure::input(anyhow!(
            "{flag} records a drill that ran; --dry-run runs nothing (it prints the plan and every patch)"
        )));
    }
    a.outputs.check()?;
    let recording = a.outputs.start(&format!("meshdrill run {}", s.name))?;
    let opts = RunOptions {
        dry_run: a.dry_run,
        rollback_strategy: match a.rollback_strategy {
            Some(Strategy::Always | Strategy::Default) | None => RollbackStrategy::Always,
            Some(Strategy::Deviated) => RollbackStrategy::Deviated,
            Some(Strategy::Never) => RollbackStrategy::Never,
        },
        ttl: a.ttl,
        ingress: match &s.target {
            TargetSpec::Cluster { ingress, .. } => ingress.clone(),
            TargetSpec::Mesh { .. } => None,
        },
        exclusive: true,
        histograms: recording.sink(),
    };
    let d = Drill {
        conn: Some(&a.conn),
        envoy: a.envoy.clone(),
        output: a.output,
        intervals: a.intervals,
        quiet: a.quiet,
    };
    let journal = drill(&s, d, &opts, out, err)?;
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

/// Fails (exit 2) when `p` cannot be written, leaving nothing behind: a file that was
/// there is opened, not truncated; one that was not is created and removed again.
pub fn check_writable(p: &Path) -> CliResult<()> {
    check_writable_as(p, "the journal")
}

/// [`check_writable`], naming the file as `what` (`the journal`, `--report`).
pub fn check_writable_as(p: &Path, what: &str) -> CliResult<()> {
    let existed = p.exists();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| Failure::input(anyhow!("cannot write {what} {}: {e}", p.display())))?;
    if !existed {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Writes the journal file and the summary; returns the drill's exit.
pub fn finish(
    j: &Journal,
    journal: Option<&Path>,
    outputs: &OutputArgs,
    recording: Recording,
    output: RunOutput,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    if let Some(p) = journal {
        let text = serde_json::to_vec_pretty(j)
            .map_err(|e| Failure::target(anyhow!("cannot encode the journal: {e}")))?;
        std::fs::write(p, text).map_err(|e| {
            Failure::target(anyhow!("cannot write the journal {}: {e}", p.display()))
        })?;
    }
    // The other files come before the summary, so a reader of the summary finds them.
    let others = outputs.write(recording, j, err);
    let written = match output {
        RunOutput::Json => {
            let text = serde_json::to_string_pretty(j)
                .map_err(|e| Failure::target(anyhow!("cannot encode the journal: {e}")))?;
            writeln!(out, "{text}")
        }
        RunOutput::Text => write_summary(
            out,
            j,
            Paint {
                on: stdout_colour(),
            },
        ),
    };
    others?;
    match (outcome(j), written) {
        // A reader that went away (`| head`) does not change the verdict's exit code.
        (r, Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => r,
        (Ok(_), Err(e)) => Err(io_err(e)),
        (r, _) => r,
    }
}

/// How a drill command shows its progress and where its target comes from.
pub struct Drill<'a> {
    pub conn: Option<&'a ConnArgs>,
    pub envoy: Option<PathBuf>,
    pub output: RunOutput,
    pub intervals: bool,
    /// No live view, even on a terminal (`--quiet`).
    pub quiet: bool,
}

/// A cancellation that SIGINT, SIGTERM and SIGHUP trigger, and the watch behind it
/// (keep it alive as long as the command runs).
pub fn watch(rt: &tokio::runtime::Runtime) -> CliResult<(Cancel, crate::cancel::SignalWatch)> {
    let cancel = Cancel::new();
    let _g = rt.enter();
    let w = cancel
        .watch_signals()
        .map_err(|e| Failure::target(anyhow!("cannot handle signals: {e}")))?;
    Ok((cancel, w))
}

/// Starts a mesh owned by the command (blocking until it is ready); a signal during
/// start-up ends it with exit 130.
pub fn start_mesh(
    spec: MeshSpec,
    envoy: Option<PathBuf>,
    cancel: &Cancel,
    rt: &tokio::runtime::Runtime,
) -> CliResult<MeshTarget> {
    let opts = MeshOptions {
        envoy,
        cancel: Some(cancel.clone()),
        ..MeshOptions::default()
    };
    rt.block_on(rt.spawn_blocking(move || MeshTarget::start(spec, opts)))
        .map_err(|e| Failure::target(anyhow!("mesh start-up failed: {e}")))?
        .map_err(|e| {
            if e.is_interrupted() {
                Failure::interrupted(anyhow!("{e}"))
            } else {
                fail(e)
            }
        })
}

/// Opens the target (starting a mesh file), runs the drill with signals watched from
/// the start, stops what it started.
pub fn drill(
    s: &Scenario,
    d: Drill<'_>,
    opts: &RunOptions,
    out: &mut (impl Write + Send),
    err: &mut (impl Write + Send),
) -> CliResult<Journal> {
    let rt = runtime()?;
    let (cancel, _signals) = watch(&rt)?;
    let target = open_target(s, d.conn, d.envoy, opts.dry_run, &cancel, &rt)?;
    // The live view goes where the progress lines go, when that is a terminal.
    let (w, term): (&mut (dyn Write + Send), _) = match d.output {
        RunOutput::Text => (out, console::Term::stdout()),
        RunOutput::Json => (err, console::Term::stderr()),
    };
    let view = View {
        intervals: d.intervals,
        live: if d.quiet || opts.dry_run {
            None
        } else {
            live_terminal(term)
        },
        planned: crate::scenario::planned_length(s),
    };
    let (journal, failed) = with_printer(w, view, |progress| {
        rt.block_on(crate::scenario::run(s, &target, opts, &cancel, progress))
    });
    if let Some(e) = failed {
        tracing::warn!("progress output failed: {e}");
    }
    if let Target::Mesh(m) = target {
        m.stop();
    }
    rt.shutdown_background();
    Ok(journal)
}

/// The scenario's target: a mesh started from its file (or a running mesh's
/// directory), or the cluster. A signal during start-up stops it (exit 130).
fn open_target(
    s: &Scenario,
    conn: Option<&ConnArgs>,
    envoy: Option<PathBuf>,
    dry_run: bool,
    cancel: &Cancel,
    rt: &tokio::runtime::Runtime,
) -> CliResult<Target> {
    match &s.target {
        TargetSpec::Mesh { file } if file.is_dir() => {
            let t = MeshTarget::open(file).map_err(fail)?;
            let spec = t.spec().map_err(fail)?;
            crate::scenario::check_against_mesh(s, &spec).map_err(Failure::input)?;
            Ok(Target::Mesh(t))
        }
        TargetSpec::Mesh { file } => {
            let loaded = MeshSpec::load(std::slice::from_ref(file)).map_err(mesh_fail)?;
            crate::scenario::check_against_mesh(s, &loaded.spec).map_err(Failure::input)?;
            if dry_run {
                // Nothing is started: the plan reads the mesh file's VirtualServices.
                let label = file.display().to_string();
                return Ok(Target::File(FileTarget::from_values(
                    &label,
                    loaded.spec.virtual_services.clone(),
                )));
            }
            start_mesh(loaded.spec, envoy, cancel, rt).map(Target::Mesh)
        }
        TargetSpec::Cluster {
            context,
            namespace,
            kubeconfig,
            ..
        } => {
            let mut conn = conn.cloned().unwrap_or_default();
            if conn.kubeconfig.is_none() {
                conn.kubeconfig = kubeconfig.clone();
            }
            if conn.context.is_none() {
                conn.context = context.clone();
            }
            let options = conn.options(namespace.as_deref());
            rt.block_on(ClusterTarget::connect(&options, Some(cancel), ""))
                .map(Target::Cluster)
                .map_err(|e| {
                    if e.is_interrupted() {
                        Failure::interrupted(anyhow!("{e}"))
                    } else {
                        fail(e)
                    }
                })
        }
    }
}
