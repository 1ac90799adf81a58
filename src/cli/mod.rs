//! Command-line definitions and handlers: the only place that prints.
//!
//! clap structs stop here; handlers turn them into validated domain values (`istio`
//! specs) and map every outcome to the exit codes of the CLI contract.

mod args;
mod change;
mod cluster;
mod completions;
mod demo;
mod drill;
mod experiment;
mod fleet;
pub mod load;
mod mesh;
mod outputs;
mod report;
mod run;
mod term;
mod validate;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes of the CLI contract (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// All SLOs held / command done.
    Ok = 0,
    /// An SLO was violated.
    SloViolated = 1,
    /// Usage or input error.
    Input = 2,
    /// Target error (cluster, Envoy, network).
    Target = 3,
    /// The sample cannot tell whether the SLOs hold.
    Inconclusive = 4,
    /// Interrupted (after rollback).
    Interrupted = 130,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl Failure {
    pub fn input(e: impl Into<anyhow::Error>) -> Self {
        Self {
            exit: Exit::Input,
            error: e.into(),
        }
    }
    pub fn target(e: impl Into<anyhow::Error>) -> Self {
        Self {
            exit: Exit::Target,
            error: e.into(),
        }
    }
    pub fn interrupted(e: impl Into<anyhow::Error>) -> Self {
        Self {
            exit: Exit::Interrupted,
            error: e.into(),
        }
    }
}

pub type CliResult<T = Exit> = Result<T, Failure>;

/// `--version`: meshdrill's, and the Envoy and Istio releases it is tested against.
fn long_version() -> &'static str {
    let (envoy, istio) = crate::mesh::envoy::pinned_versions();
    Box::leak(
        format!(
            "{} (tested with Envoy {envoy}; the local mesh translates as Istio {istio})",
            env!("CARGO_PKG_VERSION")
        )
        .into_boxed_str(),
    )
}

#[derive(Debug, Parser)]
#[command(
    name = "meshdrill",
    version,
    long_version = long_version(),
    about = "Resilience drills for Istio/Envoy: reversible VirtualService faults, load, SLO verdicts",
    long_about = "meshdrill injects VirtualService faults (delay, abort, network failure), retries and \
timeouts as reversible RFC 6902 patches — on a manifest file (-f), a local mesh on a real Envoy \
(--mesh), or a cluster through the Kubernetes API — drives load with a coordinated-omission-free \
generator, and judges SLOs.\n\nExit codes: 0 done / SLOs held, 1 SLO violated, 2 usage or input \
error, 3 target error (cluster, Envoy, network), 4 inconclusive (the sample cannot tell whether \
the SLOs hold), 130 interrupted (after rollback).",
    propagate_version = true
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inject a fault (abort, delay, network failure) into a VirtualService.
    #[command(subcommand)]
    Fault(change::FaultCommand),
    /// Set a retry policy (attempts, perTryTimeout, retryOn) on VirtualService routes.
    Retries(change::RetriesArgs),
    /// Set a route timeout on VirtualService routes.
    Timeout(change::TimeoutArgs),
    /// Remove what meshdrill added; every route is restored as it was.
    Clear(change::ClearArgs),
    /// List the drills meshdrill left on cluster VirtualServices.
    Status(cluster::StatusArgs),
    /// Roll back every expired (and with --orphans, ownerless) drill on the cluster.
    Recover(cluster::RecoverArgs),
    /// Cluster connection and permission check.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Terminate pods by label selector (the terminate-pod experiment).
    #[command(subcommand)]
    Pods(cluster::PodsCommand),
    /// Check manifests with Istio's validation rules.
    Validate(validate::ValidateArgs),
    /// Run a drill from a scenario file (steady state, faults, SLO verdicts, rollback), or a
    /// chaostoolkit experiment file unchanged.
    Run(run::RunArgs),
    /// Run a whole drill on a local mesh, with no setup.
    Demo(demo::DemoArgs),
    /// A drill's journal as a report: the text summary, or a self-contained HTML page.
    Report(report::ReportArgs),
    /// Drive HTTP load at a target: closed loop or a fixed/ramping rate, HDR latency.
    Load(load::LoadArgs),
    /// Print shell completions.
    Completions(completions::CompletionsArgs),
    /// The local mesh: VirtualServices on a real Envoy, no cluster.
    #[command(subcommand)]
    Mesh(mesh::MeshCommand),
}

/// Parses, runs, prints the error chain, and returns the exit code.
pub fn main(cli: Cli) -> ExitCode {
    init_tracing(cli.verbose);
    // kube and the load engine's TLS use ring; install it once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli) {
        Ok(exit) => ExitCode::from(exit as u8),
        // A closed output pipe (see io_err): quiet, and not an error.
        Err(f) if f.exit == Exit::Ok => ExitCode::SUCCESS,
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "error: {f}");
            ExitCode::from(f.exit as u8)
        }
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn,kube_client=off",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHDRILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Colour in log lines only on a terminal, and not when `NO_COLOR` is set to a
/// non-empty value (no-color.org): a log file or pipe gets plain text.
fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> CliResult {
    // Not locked: a drill prints its progress from a thread of its own.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    if matches!(
        cli.command,
        Command::Load(_) | Command::Run(_) | Command::Demo(_)
    ) {
        // One socket per connection: `-c 5000` needs more descriptors than the usual
        // soft limit of 1024. The soft limit is raised to the hard one, as Go programs
        // do at start-up; when that fails the run goes on and reports connect errors.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
    }
    match cli.command {
        Command::Fault(c) => change::run_fault(c, &mut out, &mut err),
        Command::Retries(a) => change::run_retries(a, &mut out, &mut err),
        Command::Timeout(a) => change::run_timeout(a, &mut out, &mut err),
        Command::Clear(a) => change::run_clear(a, &mut out, &mut err),
        Command::Status(a) => cluster::run_status(a, &mut out, &mut err),
        Command::Recover(a) => cluster::run_recover(a, &mut out, &mut err),
        Command::Cluster(c) => cluster::run_cluster(c, &mut out, &mut err),
        Command::Pods(c) => cluster::run_pods(c, &mut out, &mut err),
        Command::Validate(a) => validate::run(a, &mut out, &mut err),
        Command::Run(a) => run::run(a, &mut out, &mut err),
        Command::Demo(a) => demo::run(a, &mut out, &mut err),
        Command::Load(a) => load::run(a, &mut out, &mut err),
        Command::Report(a) => report::run(a, &mut out, &mut err),
        Command::Completions(a) => completions::run(a, &mut out),
        Command::Mesh(c) => mesh::run(c, &mut out, &mut err),
    }
}

/// Writes to stdout/stderr, mapping a broken pipe to a clean exit.
///
/// A reader that stops early (`meshdrill status | head -1`) closes the pipe: that is
/// not an error of meshdrill's, so it exits 0 without a message (as ripgrep does; a Go
/// tool such as kubectl dies of SIGPIPE instead, which `set -o pipefail` scripts then
/// have to filter out). Any other write error is exit 3. Commands that changed
/// something still roll it back first: they collect output errors until the end.
pub(crate) fn io_err(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return Failure {
            exit: Exit::Ok,
            error: anyhow::anyhow!("output closed (broken pipe)"),
        };
    }
    Failure::target(anyhow::anyhow!("cannot write output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::log_colour;
    use std::ffi::OsStr;

    #[test]
    fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
    }
}
