//! `fault`, `retries`, `timeout`, `clear`: parse flags into an [`istio::Change`] and
//! carry it out on the chosen target (a manifest file for now).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{CliResult, Exit, Failure, io_err};
use crate::istio::manifest::{self, Document};
use crate::istio::{
    AbortCode, AbortSpec, Change, DelaySpec, GrpcStatus, HttpStatus, IstioDuration, Percentage,
    RecordMeta, RetryOn, RetrySpec, RouteSelector, plan_change, plan_clear,
    validate_virtual_service,
};

/// Output formats of commands that change a VirtualService.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The changed object as YAML.
    Yaml,
    /// The changed object as JSON.
    Json,
    /// The RFC 6902 JSON Patch (with its `test` guards).
    Patch,
}

/// Where a change goes, and which routes it touches (shared by every changing command).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The VirtualService name (optional with -f when the file holds only one).
    #[arg(value_name = "VS")]
    pub name: Option<String>,
    /// Change a manifest file instead of the cluster: print the result, change nothing.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        conflicts_with = "mesh"
    )]
    pub file: Option<PathBuf>,
    /// Change a running local mesh (the --dir of `meshdrill mesh up`).
    #[arg(long, value_name = "DIR")]
    pub mesh: Option<PathBuf>,
    /// Output: yaml|json (the changed object) or patch (the RFC 6902 patch). With -f the default is yaml.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Output>,
    /// Namespace of the VirtualService (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only the route with this name.
    #[arg(long, value_name = "NAME", group = "routesel")]
    pub route: Option<String>,
    /// Only the route at this 0-based index of spec.http.
    #[arg(long, value_name = "N", group = "routesel")]
    pub route_index: Option<usize>,
    /// Only routes with a destination to HOST (short name or FQDN), optionally HOST/SUBSET.
    #[arg(long, value_name = "HOST[/SUBSET]", group = "routesel")]
    pub destination: Option<String>,
    /// How long the change may stay: after this, `meshdrill recover` rolls it back.
    #[arg(long = "for", value_name = "DURATION", default_value = "10m", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub cluster: super::cluster::ClusterArgs,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    crate::istio::types::parse_go_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid duration {s:?}: use Go syntax such as 90s, 10m or 1h"))
}

impl TargetArgs {
    pub fn selector(&self) -> RouteSelector {
        if let Some(n) = &self.route {
            RouteSelector::Name(n.clone())
        } else if let Some(i) = self.route_index {
            RouteSelector::Index(i)
        } else if let Some(d) = &self.destination {
            let (host, subset) = match d.split_once('/') {
                Some((h, s)) => (h.to_string(), Some(s.to_string())),
                None => (d.clone(), None),
            };
            RouteSelector::Destination { host, subset }
        } else {
            RouteSelector::All
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Abort a share of requests with an HTTP or gRPC status.
    Abort(AbortArgs),
    /// Delay a share of requests by a fixed time.
    Delay(DelayArgs),
    /// Network failure presets: --partial [PERCENT] (default 50%) or --total (100%), 503 by default.
    Network(NetworkArgs),
}

#[derive(Debug, Parser)]
pub struct AbortArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// HTTP status to answer with (200-599).
    #[arg(
        long,
        value_name = "CODE",
        conflicts_with = "grpc_status",
        required_unless_present = "grpc_status"
    )]
    pub status: Option<HttpStatus>,
    /// gRPC status name to answer with (e.g. UNAVAILABLE).
    #[arg(long, value_name = "NAME")]
    pub grpc_status: Option<GrpcStatus>,
    /// Share of requests to abort, 0.0001-100.
    #[arg(long, value_name = "PERCENT", default_value = "100")]
    pub percent: Percentage,
}

#[derive(Debug, Parser)]
pub struct DelayArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The delay (Go duration, whole milliseconds, e.g. 2s or 150ms).
    #[arg(long, value_name = "DURATION")]
    pub fixed: IstioDuration,
    /// Share of requests to delay, 0.0001-100.
    #[arg(long, value_name = "PERCENT", default_value = "100")]
    pub percent: Percentage,
}

#[derive(Debug, Parser)]
pub struct NetworkArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Partial failure: this share of requests fail (default 50).
    #[arg(long, value_name = "PERCENT", num_args = 0..=1, default_missing_value = "50", group = "kind", required = true)]
    pub partial: Option<Percentage>,
    /// Total failure: every request fails.
    #[arg(long, group = "kind")]
    pub total: bool,
    /// The status failed requests get (default 503).
    #[arg(long, value_name = "CODE")]
    pub status: Option<HttpStatus>,
}

#[derive(Debug, Parser)]
pub struct RetriesArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Retries per request (0 = no retries at all).
    #[arg(long)]
    pub attempts: u32,
    /// Timeout of each try (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub per_try_timeout: Option<IstioDuration>,
    /// Conditions, comma-separated, no spaces: 5xx,gateway-error,connect-failure,... or status codes.
    #[arg(long, value_name = "LIST")]
    pub retry_on: Option<RetryOn>,
    /// Allow retries to other localities.
    #[arg(long, value_name = "BOOL")]
    pub retry_remote_localities: Option<bool>,
    /// Whole-request timeout of the route (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<IstioDuration>,
}

#[derive(Debug, Parser)]
pub struct TimeoutArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Whole-request timeout of the route (Go duration).
    #[arg(long, value_name = "DURATION")]
    pub timeout: IstioDuration,
}

#[derive(Debug, Parser)]
pub struct ClearArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run_fault(c: FaultCommand, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    let (target, change) = match c {
        FaultCommand::Abort(a) => {
            let code = match (a.status, a.grpc_status) {
                (_, Some(g)) => AbortCode::Grpc(g),
                (Some(s), None) => AbortCode::Http(s),
                (None, None) => {
                    return Err(Failure::input(anyhow!("give --status or --grpc-status")));
                }
            };
            (
                a.target,
                Change::Abort(AbortSpec {
                    code,
                    percentage: a.percent,
                }),
            )
        }
        FaultCommand::Delay(a) => (
            a.target,
            Change::Delay(DelaySpec {
                fixed: a.fixed,
                percentage: a.percent,
            }),
        ),
        FaultCommand::Network(a) => {
            let spec = if a.total {
                AbortSpec::total(a.status)
            } else {
                AbortSpec::partial(a.partial, a.status)
            };
            (a.target, Change::Abort(spec))
        }
    };
    apply(&target, Some(change), out, err)
}

pub fn run_retries(a: RetriesArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    if a.attempts == 0
        && (a.per_try_timeout.is_some()
            || a.retry_on.is_some()
            || a.retry_remote_localities.is_some())
    {
        return Err(Failure::input(anyhow!(
            "--attempts 0 disables retries; --per-try-timeout, --retry-on and --retry-remote-localities need --attempts > 0 (Istio rejects them together)"
        )));
    }
    let change = Change::Retries {
        retries: RetrySpec {
            attempts: a.attempts,
            per_try_timeout: a.per_try_timeout,
            retry_on: a.retry_on,
            retry_remote_localities: a.retry_remote_localities,
        },
        timeout: a.timeout,
    };
    apply(&a.target, Some(change), out, err)
}

pub fn run_timeout(a: TimeoutArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    apply(&a.target, Some(Change::Timeout(a.timeout)), out, err)
}

pub fn run_clear(a: ClearArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    if a.target.selector() != RouteSelector::All {
        return Err(Failure::input(anyhow!(
            "clear restores every route meshdrill changed on the VirtualService, as one drill record; it takes no --route, --route-index or --destination"
        )));
    }
    apply(&a.target, None, out, err)
}

/// Identity of this run for the drill record.
pub fn record_meta(ttl: Duration) -> RecordMeta {
    RecordMeta {
        run_id: crate::istio::new_run_id(),
        owner: crate::istio::Owner::current(),
        now: jiff::Timestamp::now(),
        ttl,
    }
}

fn apply(
    t: &TargetArgs,
    change: Option<Change>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    if let Some(file) = &t.file {
        if t.cluster.wait || t.cluster.dry_run {
            return Err(Failure::input(anyhow!(
                "--wait and --dry-run are for the cluster; with -f nothing is changed anyway: the result is printed"
            )));
        }
        return apply_file(file, t, change.as_ref(), out, err);
    }
    if let Some(dir) = &t.mesh {
        return super::mesh::apply_change(dir, t, change.as_ref(), out, err);
    }
    super::cluster::apply_change(t, change.as_ref(), out, err)
}

/// Picks the VirtualService named `name` (or the only one) from a file's documents.
pub fn pick_virtual_service<'a>(
    docs: &'a [Document],
    name: Option<&str>,
    ns: Option<&str>,
    file: &Path,
) -> Result<&'a Document, Failure> {
    let vss: Vec<&Document> = docs.iter().filter(|d| d.is_virtual_service()).collect();
    let names = || {
        vss.iter()
            .map(|d| d.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found: Vec<&&Document> = vss
        .iter()
        .filter(|d| {
            name.is_none_or(|n| d.name() == n)
                && ns.is_none_or(|n| d.namespace().is_none_or(|dn| dn == n))
        })
        .collect();
    match (found.as_slice(), name) {
        ([d], _) => Ok(d),
        ([], None) if !vss.is_empty() => Err(Failure::input(anyhow!(
            "{}: no VirtualService in namespace {:?}; the file has: {}",
            file.display(),
            ns.unwrap_or_default(),
            names()
        ))),
        ([], _) if vss.is_empty() => Err(Failure::input(anyhow!(
            "{}: no VirtualService in this file",
            file.display()
        ))),
        ([], Some(n)) => Err(Failure::input(anyhow!(
            "{}: no VirtualService named {n:?}; the file has: {}",
            file.display(),
            names()
        ))),
        (_, _) => Err(Failure::input(anyhow!(
            "{}: several VirtualServices ({}); name one: meshdrill ... <VS> -f {}",
            file.display(),
            names(),
            file.display()
        ))),
    }
}

/// Reads and validates the VirtualService a command should change.
pub fn load_for_change(file: &Path, t: &TargetArgs) -> Result<Document, Failure> {
    let docs = manifest::read_file(file).map_err(Failure::input)?;
    let doc = pick_virtual_service(&docs, t.name.as_deref(), t.namespace.as_deref(), file)?;
    let issues = validate_virtual_service(doc);
    if !issues.is_empty() {
        let list: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
        return Err(Failure::input(anyhow!(
            "{}: VirtualService {} is not valid; nothing was changed:\n{}",
            file.display(),
            doc.name(),
            list.join("\n")
        )));
    }
    Ok(doc.clone())
}

fn apply_file(
    file: &Path,
    t: &TargetArgs,
    change: Option<&Change>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    let doc = load_for_change(file, t)?;
    let located = |e: crate::istio::PlanError| {
        let at = match e {
            crate::istio::PlanError::BadRecord { .. } => {
                doc.locate("/metadata/annotations/meshdrill.io~1drill")
            }
            _ => doc.locate("/spec/http"),
        };
        Failure::input(anyhow!("{at}: {e}"))
    };
    let (patch, after) = match change {
        Some(c) => {
            let plan =
                plan_change(&doc.value, &t.selector(), c, &record_meta(t.ttl)).map_err(located)?;
            for w in &plan.warnings {
                writeln!(err, "warning: {w}").map_err(io_err)?;
            }
            (plan.patch, plan.after)
        }
        None => match plan_clear(&doc.value).map_err(located)? {
            Some(p) => (p.patch, p.after),
            None => {
                writeln!(
                    err,
                    "{}: VirtualService {} carries no meshdrill change; nothing to clear",
                    file.display(),
                    doc.name()
                )
                .map_err(io_err)?;
                (json_patch::Patch(Vec::new()), doc.value.clone())
            }
        },
    };
    let text = match t.output.unwrap_or(Output::Yaml) {
        Output::Yaml => manifest::to_yaml(&[&after]),
        Output::Json => pretty(&after)?,
        Output::Patch => pretty(&patch)?,
    };
    out.write_all(text.as_bytes()).map_err(io_err)?;
    Ok(Exit::Ok)
}

pub fn pretty(v: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Failure::target(anyhow!("cannot render JSON: {e}")))
}
