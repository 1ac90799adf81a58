//! Command-line definitions and handlers: the only place that prints.
//!
//! clap structs stop here; handlers turn them into validated domain values (`istio`
//! specs) and map every outcome to the exit codes of the CLI contract.

mod change;
mod cluster;
mod completions;
mod demo;
pub mod load;
mod mesh;
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

/// SIGINT/SIGTERM as a flag, installed (on `rt`'s worker threads) before anything is
/// started, so a signal during start-up is seen between steps and cleaned up after.
pub(crate) struct Signals {
    /// Set on the first signal.
    pub flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// 1 = SIGINT, 2 = SIGTERM.
    pub which: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl Signals {
    /// `rt` must be a multi-thread runtime: the handler task runs while the caller
    /// blocks. `on_signal` runs once, on the first signal.
    pub fn install(
        rt: &tokio::runtime::Runtime,
        on_signal: impl FnOnce() + Send + 'static,
    ) -> CliResult<Signals> {
        use std::sync::atomic::Ordering;
        use tokio::signal::unix::{SignalKind, signal};
        let (mut int, mut term) = rt
            .block_on(async {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                ))
            })
            .map_err(|e| Failure::target(anyhow::anyhow!("cannot watch SIGINT/SIGTERM: {e}")))?;
        let s = Signals {
            flag: Default::default(),
            which: Default::default(),
        };
        let (flag, which) = (s.flag.clone(), s.which.clone());
        rt.spawn(async move {
            let w = tokio::select! {
                _ = int.recv() => 1,
                _ = term.recv() => 2,
            };
            which.store(w, Ordering::Release);
            flag.store(true, Ordering::Release);
            on_signal();
            // Later signals are absorbed: the first one already asked for a clean stop.
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
        });
        Ok(s)
    }

    pub fn raised(&self) -> Option<&'static str> {
        match self.which.load(std::sync::atomic::Ordering::Acquire) {
            1 => Some("interrupt"),
            2 => Some("SIGTERM"),
            _ if self.flag.load(std::sync::atomic::Ordering::Acquire) => Some("signal"),
            _ => None,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "meshdrill",
    version,
    about = "Resilience drills for Istio/Envoy: reversible VirtualService faults, load, SLO verdicts",
    long_about = "meshdrill injects VirtualService faults (delay, abort, network failure), retries and \
timeouts as reversible RFC 6902 patches — on a manifest file (-f), a local mesh on a real Envoy \
(--mesh), or a cluster through the Kubernetes API — drives load with a coordinated-omission-free \
generator, and judges SLOs.\n\nExit codes: 0 done / SLOs held, 1 SLO violated, 2 usage or input \
error, 3 target error (cluster, Envoy, network), 130 interrupted (after rollback).",
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
    /// Run a whole drill on a local mesh, with no setup.
    Demo(demo::DemoArgs),
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
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> CliResult {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
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
        Command::Demo(a) => demo::run(a, &mut out, &mut err),
        Command::Load(a) => load::run(a, &mut out, &mut err),
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
