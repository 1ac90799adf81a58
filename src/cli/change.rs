//! `fault`, `retries`, `timeout`, `clear`: flags → an [`istio::Change`](Change), carried
//! out on the chosen [`Target`] — once, as a dry run, or held with `--wait` by the
//! drill runner (which rolls it back on expiry, error, Ctrl-C and SIGTERM).

use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use serde_json::Value;

use super::args::{Output, TargetArgs, fail, runtime};
use super::{CliResult, Exit, Failure, io_err};
use crate::cancel::Cancel;
use crate::istio::manifest;
use crate::istio::{
    AbortCode, AbortSpec, Change, DelaySpec, DrillRecord, GrpcStatus, HttpStatus, IstioDuration,
    Percentage, RecordMeta, RetryOn, RetrySpec,
};
use crate::scenario::journal::{Ending, RollbackRecord};
use crate::scenario::model::{Expect, Hold, Scenario, Step, StepKind, TargetSpec, VsRef};
use crate::scenario::{Event, Observer, RunOptions};
use crate::target::{Changed, Cleared, Kind, Target};

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Abort a share of requests with an HTTP or gRPC status.
    Abort(AbortArgs),
    /// Delay a share of requests by a fixed time.
    Delay(DelayArgs),
    /// Network failure presets: --partial [PERCENT] (default 50%) or --total (100%), 503 by default.
    Network(NetworkArgs),
}

/// Parses a flag with an Istio type's own rules; the error says only what is allowed
/// (clap already prints "invalid value 'X' for '--flag'").
fn flag<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = crate::istio::types::ValueError>,
{
    s.parse()
        .map_err(|e: crate::istio::types::ValueError| e.allowed)
}

/// `--attempts`, with the validator's bounds.
fn attempts(s: &str) -> Result<u32, String> {
    crate::istio::types::parse_attempts(s).map_err(|e| e.allowed)
}

#[derive(Debug, Parser)]
pub struct AbortArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// HTTP status to answer with (200-599).
    #[arg(
        long,
        value_name = "CODE",
        allow_negative_numbers = true,
        conflicts_with = "grpc_status",
        required_unless_present = "grpc_status",
        value_parser = flag::<HttpStatus>
    )]
    pub status: Option<HttpStatus>,
    /// gRPC status name to answer with (e.g. UNAVAILABLE).
    #[arg(long, value_name = "NAME", value_parser = flag::<GrpcStatus>)]
    pub grpc_status: Option<GrpcStatus>,
    /// Share of requests to abort, 0.0001-100.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value = "100",
        allow_negative_numbers = true,
        value_parser = flag::<Percentage>
    )]
    pub percent: Percentage,
}

#[derive(Debug, Parser)]
pub struct DelayArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The delay (Go duration, whole milliseconds, e.g. 2s or 150ms).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = flag::<IstioDuration>)]
    pub fixed: IstioDuration,
    /// Share of requests to delay, 0.0001-100.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value = "100",
        allow_negative_numbers = true,
        value_parser = flag::<Percentage>
    )]
    pub percent: Percentage,
}

#[derive(Debug, Parser)]
pub struct NetworkArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Partial failure: this share of requests fail (default 50).
    #[arg(long, value_name = "PERCENT", num_args = 0..=1, default_missing_value = "50", group = "kind", required = true, allow_negative_numbers = true, value_parser = flag::<Percentage>)]
    pub partial: Option<Percentage>,
    /// Total failure: every request fails.
    #[arg(long, group = "kind")]
    pub total: bool,
    /// The status failed requests get (default 503).
    #[arg(long, value_name = "CODE", allow_negative_numbers = true, value_parser = flag::<HttpStatus>)]
    pub status: Option<HttpStatus>,
}

#[derive(Debug, Parser)]
pub struct RetriesArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Retries per request (0 = no retries at all; at most 2147483647).
    #[arg(long, value_name = "N", value_parser = attempts, allow_negative_numbers = true)]
    pub attempts: u32,
    /// Timeout of each try (Go duration).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = flag::<IstioDuration>)]
    pub per_try_timeout: Option<IstioDuration>,
    /// Conditions, comma-separated, no spaces: 5xx,gateway-error,connect-failure,... or status codes.
    #[arg(long, value_name = "LIST", value_parser = flag::<RetryOn>)]
    pub retry_on: Option<RetryOn>,
    /// Allow retries to other localities.
    #[arg(long, value_name = "BOOL")]
    pub retry_remote_localities: Option<bool>,
    /// Whole-request timeout of the route (Go duration).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = flag::<IstioDuration>)]
    pub timeout: Option<IstioDuration>,
}

#[derive(Debug, Parser)]
pub struct TimeoutArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Whole-request timeout of the route (Go duration).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = flag::<IstioDuration>)]
    pub timeout: IstioDuration,
}

#[derive(Debug, Parser)]
pub struct ClearArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Restore meshdrill's fault, retries and timeout even where someone edited them
    /// since meshdrill set them (without it such an edit is a conflict and nothing
    /// changes); each overwritten edit is named on stderr. Other fields and routes are
    /// kept as always
    #[arg(long)]
    pub force: bool,
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
    apply(&target, Some(change), false, out, err)
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
    apply(&a.target, Some(change), false, out, err)
}

pub fn run_timeout(a: TimeoutArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    apply(&a.target, Some(Change::Timeout(a.timeout)), false, out, err)
}

pub fn run_clear(a: ClearArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    if a.target.selector() != crate::istio::RouteSelector::All {
        return Err(Failure::input(anyhow!(
            "clear restores every route meshdrill changed on the VirtualService, as one drill record; it takes no --route, --route-index or --destination"
        )));
    }
    if a.target.wait || a.target.ttl.is_some() {
        return Err(Failure::input(anyhow!(
            "clear takes no --wait and no --for: it restores at once, there is nothing to hold or expire"
        )));
    }
    apply(&a.target, None, a.force, out, err)
}

/// Identity of a one-shot change (no --wait): no process holds it, so it lives until
/// its expiry and `recover --orphans` must not take it for an orphan (see `owner_gone`).
pub fn one_shot_meta(ttl: Duration) -> RecordMeta {
    let mut owner = crate::istio::Owner::current();
    owner.pid = 0;
    RecordMeta {
        run_id: crate::istio::new_run_id(),
        owner,
        now: jiff::Timestamp::now(),
        ttl,
        stacking: crate::istio::Stacking::Any,
        force: false,
    }
}

fn apply(
    t: &TargetArgs,
    change: Option<Change>,
    force: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    t.check()?;
    if t.file.is_none() && t.name.is_none() {
        let hint = match &t.mesh {
            Some(d) => format!("--mesh {}", d.display()),
            None => "[-n NS]".into(),
        };
        return Err(Failure::input(anyhow!(
            "name the VirtualService: meshdrill ... <VS> {hint}"
        )));
    }
    let rt = runtime()?;
    if t.wait && change.is_some() {
        return rt.block_on(hold(t, change, out, err));
    }
    rt.block_on(async {
        let target = t.open(None).await?;
        for w in cluster_warnings(&target) {
            let _ = writeln!(err, "warning: {w}");
        }
        let name = t.name.clone().unwrap_or_default();
        let ns = t.namespace.as_deref();
        let meta = RecordMeta {
            force,
            ..one_shot_meta(t.ttl())
        };
        let changed = if t.dry_run {
            target
                .plan(&name, ns, &t.selector(), change.as_ref(), &meta)
                .await
        } else {
            target
                .apply(&name, ns, &t.selector(), change.as_ref(), &meta, None)
                .await
        }
        .map_err(fail)?;
        for w in &changed.warnings {
            writeln!(err, "warning: {w}").map_err(io_err)?;
        }
        let mut view = View::new(t, &target, &name);
        view.changed(change.as_ref(), &changed, out, err)?;
        view.outs.finish(Ok(Exit::Ok))
    })
}

fn cluster_warnings(t: &Target) -> Vec<String> {
    match t {
        Target::Cluster(c) => c.cluster.warnings.clone(),
        _ => Vec::new(),
    }
}

/// `--wait`: the drill runner holds the change for `--for` and rolls it back.
async fn hold(
    t: &TargetArgs,
    change: Option<Change>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    let Some(change) = change else {
        return Ok(Exit::Ok);
    };
    let name = t.name.clone().unwrap_or_default();
    // Signals first: one before the patch is sent stops with nothing changed, one
    // after it rolls the change back.
    let cancel = Cancel::new();
    let _signals = cancel
        .watch_signals()
        .map_err(|e| Failure::target(anyhow!("cannot handle signals: {e}")))?;
    let target = match t.open(Some(&cancel)).await {
        Ok(t) => t,
        Err(_) if cancel.signal().is_some() => {
            let sig = cancel.signal().map_or("a signal", |s| s.name());
            let ns = t.namespace.as_deref().unwrap_or("(default namespace)");
            return Err(interrupted_before(sig, ns, &name));
        }
        Err(e) => return Err(e),
    };
    for w in cluster_warnings(&target) {
        let _ = writeln!(err, "warning: {w}");
    }
    let vs = VsRef {
        name: name.clone(),
        namespace: t.namespace.clone(),
    };
    let label = format!("{change} on {name}");
    let scenario = Scenario {
        name: label.clone(),
        source: "command line".into(),
        target: TargetSpec::Mesh {
            file: Default::default(),
        },
        allowed_hosts: Vec::new(),
        load: None,
        slos: Vec::new(),
        confidence: 0.95,
        steady_state: None,
        method: vec![
            Step {
                index: 0,
                label,
                at: "command line".into(),
                kind: StepKind::Change {
                    vs,
                    selector: t.selector(),
                    change: change.clone(),
                },
            },
            Step {
                index: 1,
                label: format!("hold {}", crate::scenario::runner::human(t.ttl())),
                at: "command line".into(),
                kind: StepKind::Hold(Hold {
                    duration: t.ttl(),
                    expect: Expect::Ignore,
                    retry_check: None,
                }),
            },
        ],
        stop_conditions: Vec::new(),
        rollbacks: Vec::new(),
    };
    let opts = RunOptions {
        ttl: Some(t.ttl()),
        exclusive: false,
        ..RunOptions::default()
    };
    let mut view = View::new(t, &target, &name);
    let journal = {
        let mut obs = WaitObserver {
            view: &mut view,
            change: &change,
            out,
            err,
        };
        crate::scenario::run(&scenario, &target, &opts, &cancel, &mut obs).await
    };
    let ns = view.ns.clone();
    let expires = view.expires.clone().unwrap_or_else(|| "its expiry".into());
    let result = match journal.ending {
        Ending::Completed => Ok(Exit::Ok),
        Ending::Interrupted { signal } => Err(Failure::interrupted(anyhow!(
            "interrupted by {signal}; the change on {ns}/{name} was rolled back"
        ))),
        Ending::InterruptedBeforeChange { signal } => Err(interrupted_before(&signal, &ns, &name)),
        Ending::RollbackAbandoned { signal } => Err(Failure::target(anyhow!(
            "rollback abandoned by {signal}: the change on {ns}/{name} stays until {expires}; `meshdrill recover -n {ns}` removes it then (or `meshdrill clear {name} -n {ns}` now)"
        ))),
        Ending::RollbackFailed { message } => Err(Failure::target(anyhow!(
            "{message}. The drill record stays on the object; `meshdrill recover -n {ns}` restores it after {expires}"
        ))),
        Ending::InputError { message } => Err(Failure::input(anyhow!("{message}"))),
        Ending::TargetError { message } => Err(Failure::target(anyhow!("{message}"))),
        // A hold without load is never judged, stopped by a condition or dry-run.
        Ending::SteadyStateFailed | Ending::StopCondition { .. } | Ending::DryRun => Ok(Exit::Ok),
        // Only a journal read back from a file lacks its ending.
        Ending::Unknown => Err(Failure::target(anyhow!(
            "the drill on {ns}/{name} ended without a record of how"
        ))),
    };
    if let Target::Mesh(m) = target {
        m.stop();
    }
    view.outs.finish(result)
}

fn interrupted_before(sig: &str, ns: &str, name: &str) -> Failure {
    Failure::interrupted(anyhow!(
        "interrupted by {sig} before the patch was sent; VirtualService {ns}/{name} was not changed"
    ))
}

/// Output errors once something was changed: they must never keep meshdrill from
/// holding and rolling the change back, so they are kept until the end.
#[derive(Default)]
pub(crate) struct OutputErrors(Option<std::io::Error>);

impl OutputErrors {
    pub fn keep(&mut self, r: std::io::Result<()>) {
        if let (Err(e), None) = (r, &self.0) {
            self.0 = Some(e);
        }
    }

    /// The outcome; a failed write is reported only when nothing worse happened.
    pub fn finish(self, r: CliResult) -> CliResult {
        match (r, self.0) {
            (Ok(_), Some(e)) => Err(io_err(e)),
            (r, _) => r,
        }
    }
}

/// How a change is shown, per target kind (kubectl-like lines on a cluster, Envoy's
/// confirmation on a mesh, the object on a file).
struct View {
    kind: Kind,
    output: Option<Output>,
    dry_run: bool,
    name: String,
    ns: String,
    source: String,
    expires: Option<String>,
    outs: OutputErrors,
}

fn resource(name: &str) -> String {
    format!("virtualservice.{}/{name}", crate::cluster::GROUP)
}

fn routes_text(routes: &[usize]) -> String {
    let list: Vec<String> = routes.iter().map(|i| format!("#{i}")).collect();
    if routes.len() == 1 {
        format!("route {}", list.join(""))
    } else {
        format!("routes {}", list.join(", "))
    }
}

pub fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn human(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn changes_text(r: &DrillRecord) -> String {
    let list: Vec<String> = r
        .changes
        .iter()
        .map(|c| format!("{} on {}", c.change, routes_text(&c.routes)))
        .collect();
    format!("{} rolled back", list.join("; "))
}

pub fn pretty(v: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Failure::target(anyhow!("cannot render JSON: {e}")))
}

fn render(output: Output, object: &Value, patch: &json_patch::Patch, name: &str) -> String {
    match output {
        Output::Name => format!(
            "{}\n",
            resource(
                object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
            )
        ),
        Output::Yaml => manifest::to_yaml(&[object]),
        Output::Json => pretty(object).unwrap_or_default(),
        Output::Patch => pretty(patch).unwrap_or_default(),
    }
}

impl View {
    fn new(t: &TargetArgs, target: &Target, name: &str) -> Self {
        let kind = target.kind();
        let output = match kind {
            Kind::File => Some(t.output.unwrap_or(if t.dry_run {
                Output::Patch
            } else {
                Output::Yaml
            })),
            _ => t.output.or(t.dry_run.then_some(Output::Patch)),
        };
        let ns = t
            .namespace
            .clone()
            .or_else(|| target.default_namespace().map(str::to_string))
            .unwrap_or_else(|| "default".into());
        Self {
            kind,
            output,
            dry_run: t.dry_run,
            name: name.to_string(),
            ns,
            source: t
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            expires: None,
            outs: OutputErrors::default(),
        }
    }

    fn dry(&self) -> &'static str {
        if self.dry_run {
            " (dry run: nothing sent)"
        } else {
            ""
        }
    }

    /// Prints the outcome of a change (or a clear, `change == None`).
    fn changed(
        &mut self,
        change: Option<&Change>,
        c: &Changed,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> CliResult<()> {
        self.ns = c.namespace.clone();
        if let Some(r) = &c.record {
            self.expires = Some(when(r.expires));
        }
        let line = match (self.kind, change) {
            (Kind::File, None) if c.record.is_none() => Some(format!(
                "{}: VirtualService {} carries no meshdrill change; nothing to clear",
                self.source,
                c.object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or(&self.name)
            )),
            (Kind::File, _) => self.dry_run.then(|| "dry run: nothing changed".to_string()),
            (Kind::Cluster, Some(ch)) => Some(format!(
                "{} patched ({ch}, {}, expires {}){}",
                resource(&self.name),
                routes_text(&c.routes),
                c.record.as_ref().map_or("?".into(), |r| when(r.expires)),
                self.dry()
            )),
            (Kind::Cluster, None) if c.object.is_null() => {
                return Err(Failure::target(anyhow!(
                    "VirtualService {}/{} not found (HTTP 404 NotFound): nothing to clear; check the name and -n",
                    self.ns,
                    self.name
                )));
            }
            (Kind::Cluster, None) => Some(match &c.record {
                Some(r) => format!(
                    "{} restored (run {}: {}){}",
                    resource(&self.name),
                    r.run_id,
                    changes_text(r),
                    self.dry()
                ),
                None => format!(
                    "{} unchanged (it carries no meshdrill drill; nothing to clear)",
                    resource(&self.name)
                ),
            }),
            (Kind::Mesh, _) => Some(self.mesh_line(change, c)),
        };
        let text = self
            .output
            .map(|o| render(o, &c.object, &c.patch, &self.name));
        // `-o name` prints the name and nothing else, as kubectl does.
        let line = line.filter(|_| self.output != Some(Output::Name));
        match (text, line) {
            (Some(t), line) => {
                self.outs.keep(out.write_all(t.as_bytes()));
                if let Some(l) = line {
                    self.outs.keep(writeln!(err, "{l}"));
                }
            }
            (None, Some(l)) => self.outs.keep(writeln!(out, "{l}")),
            (None, None) => {}
        }
        Ok(())
    }

    fn mesh_line(&self, change: Option<&Change>, c: &Changed) -> String {
        let name = &self.name;
        let what = match change {
            Some(ch) => format!(
                "{ch} on route(s) {}",
                c.routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None if c.patch.0.is_empty() => {
                "carries no meshdrill change; nothing to clear".to_string()
            }
            None => "meshdrill's changes removed; routes restored".to_string(),
        };
        if self.dry_run {
            return format!("VirtualService {name}: would apply {what} (dry run: nothing changed)");
        }
        match c.envoy {
            Some((v, d)) => format!(
                "VirtualService {name}: {what}; Envoy runs route version {v} (confirmed in {} ms)",
                d.as_millis()
            ),
            None => format!("VirtualService {name}: {what}; Envoy's routes are unchanged"),
        }
    }

    /// The line after a rollback.
    fn restored(&mut self, rec: &RollbackRecord, cleared: Option<&Cleared>) -> Option<String> {
        let name = &self.name;
        Some(match (self.kind, cleared) {
            (Kind::Mesh, Some(Cleared::Restored { .. })) => {
                format!("VirtualService {name}: meshdrill's changes removed; routes restored")
            }
            (_, Some(Cleared::Restored { record, .. })) => format!(
                "{} restored (run {}: {})",
                resource(name),
                record.run_id,
                changes_text(record)
            ),
            (_, Some(Cleared::Nothing { .. })) => format!(
                "{} restored (no meshdrill drill on it any more)",
                resource(name)
            ),
            (_, Some(Cleared::Gone)) => format!(
                "{} is gone (deleted meanwhile): nothing to restore",
                resource(name)
            ),
            (_, None) if rec.ok => return None,
            (_, None) => return None,
        })
    }
}

/// Prints the events of `fault … --wait`.
struct WaitObserver<'v, 'c, O: Write, E: Write> {
    view: &'v mut View,
    change: &'c Change,
    out: &'v mut O,
    err: &'v mut E,
}

impl<O: Write, E: Write> Observer for WaitObserver<'_, '_, O, E> {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Changed { changed, .. } => {
                for w in &changed.warnings {
                    self.view.outs.keep(writeln!(self.err, "warning: {w}"));
                }
                let _ = self
                    .view
                    .changed(Some(self.change), changed, self.out, self.err);
            }
            Event::Holding {
                vs,
                namespace,
                duration,
                run_id,
            } => {
                let d =
                    jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX);
                self.view.outs.keep(writeln!(
                    self.err,
                    "holding the change on {namespace}/{vs} for {} (run {run_id}); Ctrl-C rolls it back now",
                    human(d)
                ));
            }
            Event::LateLanding { vs, namespace } => {
                self.view.outs.keep(writeln!(
                    self.err,
                    "the patch of {namespace}/{vs} got no answer in time; checking whether it lands after all"
                ));
            }
            Event::RollbackStarted {
                signalled: true, ..
            }
            | Event::RollbackSignal { .. } => {
                let ns = self.view.ns.clone();
                let expires = self.view.expires.clone().unwrap_or_default();
                self.view.outs.keep(writeln!(
                    self.err,
                    "rolling back; press Ctrl-C again to abandon (the change stays until {expires}; `meshdrill recover -n {ns}` removes it)"
                ));
            }
            Event::RolledBack { record, cleared } => {
                if let Some(line) = self.view.restored(record, cleared) {
                    // With -o the object or patch owns stdout; the status lines go to stderr.
                    let r = match self.view.output {
                        None => writeln!(self.out, "{line}"),
                        Some(_) => writeln!(self.err, "{line}"),
                    };
                    self.view.outs.keep(r);
                }
            }
            Event::Warning(w) => self.view.outs.keep(writeln!(self.err, "warning: {w}")),
            _ => {}
        }
    }
}
