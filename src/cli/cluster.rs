//! The cluster target (default when neither -f nor --mesh is given) and the cluster
//! commands: `status`, `recover`, `cluster check`, `pods kill`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::change::{Output, TargetArgs, pretty, record_meta};
use super::{CliResult, Exit, Failure, io_err};
use crate::cluster::{self, Cleared, Cluster, ConnectOptions, VsApi};
use crate::istio::{Change, DrillRecord, manifest};

// === Arguments ===

/// How to reach the cluster (kubectl's flags; `KUBERNETES_HOST` and friends win when set).
#[derive(Debug, Clone, Default, Args)]
pub struct ConnArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config); refused when KUBERNETES_HOST is set, since the KUBERNETES_* variables win.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Do not verify the API server's certificate (insecure; prints a warning).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// How long to wait for each API server answer (Go duration; 0 = no limit).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub request_timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    crate::istio::types::parse_go_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?}: use Go syntax such as 5s or 1m"))
}

/// Cluster flags of the changing commands (`fault`, `retries`, `timeout`, `clear`).
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print what would be sent (the patch, or -o yaml|json the object) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Hold the change for the --for duration, then roll it back; Ctrl-C/SIGTERM rolls back at once (exit 130).
    #[arg(long)]
    pub wait: bool,
}

/// Output of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Namespace (default: the context's).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: ListOutput,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Namespace (default: the context's).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Also restore drills whose owner process is gone (known only for drills started on this host).
    #[arg(long)]
    pub orphans: bool,
    /// Print what would be restored and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Which server, user and namespace; which VirtualService versions; may I get/patch them?
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Namespace (default: the context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PodsCommand {
    /// Terminate pods chosen at random by label selector (chaostoolkit's terminate-pod).
    Kill(KillArgs),
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Label selector, e.g. app=go-demo-8.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: String,
    /// How many pods to kill (default 1).
    #[arg(long, value_name = "N", group = "howmany", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// Share of the matching pods to kill, rounded up.
    #[arg(long, value_name = "PERCENT", group = "howmany", value_parser = parse_percent)]
    pub percent: Option<f64>,
    /// Namespace (default: the context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Print which pods would be killed and kill none.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage in (0, 100]")),
    }
}

// === Helpers ===

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::target(anyhow!("cannot start the async runtime: {e}")))
}

fn fail(e: cluster::Error) -> Failure {
    if e.is_input() {
        Failure::input(e)
    } else {
        Failure::target(e)
    }
}

async fn connect(
    conn: &ConnArgs,
    namespace: Option<&str>,
    err: &mut impl Write,
) -> Result<Cluster, Failure> {
    let opts = ConnectOptions {
        kubeconfig: conn.kubeconfig.clone(),
        context: conn.context.clone(),
        namespace: namespace.map(str::to_string),
        insecure_skip_tls_verify: conn.insecure_skip_tls_verify,
        request_timeout: Some(conn.request_timeout),
    };
    let c = Cluster::connect(&opts).await.map_err(fail)?;
    for w in &c.warnings {
        // A warning that cannot be shown must not stop the command.
        let _ = writeln!(err, "warning: {w}");
    }
    Ok(c)
}

fn resource(name: &str) -> String {
    format!("virtualservice.{}/{name}", cluster::GROUP)
}

fn routes_text(routes: &[usize]) -> String {
    let list: Vec<String> = routes.iter().map(|i| format!("#{i}")).collect();
    if routes.len() == 1 {
        format!("route {}", list.join(""))
    } else {
        format!("routes {}", list.join(", "))
    }
}

fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn human(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Prints the object or the patch (with -o), and the kubectl-like line.
fn report(
    output: Option<Output>,
    object: &Value,
    patch: &json_patch::Patch,
    line: &str,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), Failure> {
    report_io(output, object, patch, line, out, err).map_err(io_err)
}

/// [`report`], returning the first write error (both writes are tried).
fn report_io(
    output: Option<Output>,
    object: &Value,
    patch: &json_patch::Patch,
    line: &str,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    let text = match output {
        None => return writeln!(out, "{line}"),
        Some(Output::Yaml) => Ok(manifest::to_yaml(&[object])),
        Some(Output::Json) => pretty(object),
        Some(Output::Patch) => pretty(patch),
    };
    let a = match text {
        Ok(t) => out.write_all(t.as_bytes()),
        Err(f) => Err(std::io::Error::other(f.to_string())),
    };
    let b = writeln!(err, "{line}");
    a.and(b)
}

/// Output errors once something was changed on the cluster: they must never keep
/// meshdrill from holding and rolling the change back, so they are kept until the end.
#[derive(Default)]
struct OutputErrors(Option<std::io::Error>);

impl OutputErrors {
    fn keep(&mut self, r: std::io::Result<()>) {
        if let (Err(e), None) = (r, &self.0) {
            self.0 = Some(e);
        }
    }

    /// The outcome; a failed write is reported only when nothing worse happened.
    fn finish(self, r: CliResult) -> CliResult {
        match (r, self.0) {
            (Ok(_), Some(e)) => Err(io_err(e)),
            (r, _) => r,
        }
    }
}

/// How long a rollback keeps trying through 429/5xx/no answer: 2 minutes, or
/// `MESHDRILL_ROLLBACK_DEADLINE` (a Go duration; meant for tests).
fn rollback_budget() -> Duration {
    std::env::var("MESHDRILL_ROLLBACK_DEADLINE")
        .ok()
        .and_then(|s| crate::istio::types::parse_go_duration(&s))
        .unwrap_or(Duration::from_secs(120))
}

fn retry_note(what: &str) -> impl FnMut(&cluster::Error, Duration) + '_ {
    move |e, wait| {
        tracing::warn!(
            "rollback of {what} not done yet ({e}); trying again in {:.1}s",
            wait.as_secs_f64()
        );
    }
}

// === fault / retries / timeout / clear ===

/// Applies `change` (or clears, when `None`) to the VirtualService `t.name` on the
/// cluster.
pub fn apply_change(
    t: &TargetArgs,
    change: Option<&Change>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    runtime()?.block_on(apply_async(t, change, out, err))
}

/// Why a hold ended.
enum Held {
    Expired,
    Signal(&'static str),
}

/// SIGINT, SIGTERM and SIGHUP, counted by a task from the moment they are installed.
struct Signals {
    rx: cluster::Interrupts,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Signals {
    fn new() -> Result<Self, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let e = |e: std::io::Error| Failure::target(anyhow!("cannot handle signals: {e}"));
        let mut int = signal(SignalKind::interrupt()).map_err(e)?;
        let mut term = signal(SignalKind::terminate()).map_err(e)?;
        let mut hup = signal(SignalKind::hangup()).map_err(e)?;
        let (tx, rx) = tokio::sync::watch::channel(cluster::Signalled::default());
        let task = tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = int.recv() => "SIGINT",
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = hup.recv() => "SIGHUP",
                    else => break,
                };
                tx.send_modify(|s| {
                    s.count += 1;
                    s.last = name;
                });
            }
        });
        Ok(Self { rx, task })
    }

    fn seen(&self) -> cluster::Signalled {
        *self.rx.borrow()
    }

    /// Waits for a signal beyond the first `after`.
    async fn next(&mut self, after: u32) -> cluster::Signalled {
        cluster::signalled_after(&mut self.rx, after).await
    }

    /// Holds for `d`, or until a signal (one that came during the apply counts).
    async fn hold(&mut self, d: Duration) -> Held {
        tokio::select! {
            _ = tokio::time::sleep(d) => Held::Expired,
            s = self.next(0) => Held::Signal(s.last),
        }
    }
}

fn interrupted_before(sig: &str, ns: &str, name: &str) -> Failure {
    Failure::interrupted(anyhow!(
        "interrupted by {sig} before the patch was sent; VirtualService {ns}/{name} was not changed"
    ))
}

async fn apply_async(
    t: &TargetArgs,
    change: Option<&Change>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    let flags = &t.cluster;
    let hold = flags.wait && !flags.dry_run && change.is_some();
    // Installed before anything is changed: a signal before the PATCH stops the run
    // with nothing changed, one after it rolls the change back.
    let mut signals = if hold { Some(Signals::new()?) } else { None };
    let stop = signals.as_ref().map(|s| s.rx.clone());
    let Some(name) = t.name.as_deref() else {
        return Err(Failure::input(anyhow!(
            "name the VirtualService: meshdrill ... <VS> [-n NS]"
        )));
    };
    let setup = async {
        let c = connect(&flags.conn, t.namespace.as_deref(), err).await?;
        let api = c.virtual_services().await.map_err(fail)?;
        Ok::<_, Failure>((c, api))
    };
    let (c, api) = match stop.clone() {
        Some(mut rx) => tokio::select! {
            r = setup => r?,
            s = cluster::signalled(&mut rx) => {
                let ns = t.namespace.as_deref().unwrap_or("(default namespace)");
                return Err(interrupted_before(s.last, ns, name));
            }
        },
        None => setup.await?,
    };
    let ns = c.namespace.clone();
    let output = t.output.or(flags.dry_run.then_some(Output::Patch));
    let dry = if flags.dry_run {
        " (dry run: nothing sent)"
    } else {
        ""
    };

    let Some(change) = change else {
        return clear_one(&c, &api, &ns, name, flags.dry_run, output, out, err).await;
    };
    let mut meta = record_meta(t.ttl);
    if !hold {
        // No process holds a one-shot change: it lives until its expiry, and
        // `recover --orphans` must not take it for an orphan (see owner_gone).
        meta.owner.pid = 0;
    }
    let applied = match c
        .apply_change(
            &api,
            &ns,
            name,
            &t.selector(),
            change,
            &meta,
            flags.dry_run,
            stop.as_ref(),
        )
        .await
    {
        Ok(a) => a,
        Err(cluster::Error::Interrupted { .. }) => {
            let sig = stop.as_ref().map_or("a signal", |s| s.borrow().last);
            return Err(interrupted_before(sig, &ns, name));
        }
        Err(e @ cluster::Error::MayStillApply { .. }) if hold => {
            return late_landing(&c, &api, &ns, name, e, err).await;
        }
        Err(e) => return Err(fail(e)),
    };

    // From here on the change is on the cluster: no output error may keep it there.
    let mut outs = OutputErrors::default();
    for w in &applied.warnings {
        outs.keep(writeln!(err, "warning: {w}"));
    }
    let line = format!(
        "{} patched ({change}, {}, expires {}){dry}",
        resource(name),
        routes_text(&applied.routes),
        when(applied.record.expires)
    );
    outs.keep(report_io(
        output,
        &applied.object,
        &applied.patch,
        &line,
        out,
        err,
    ));
    let Some(signals) = signals.as_mut() else {
        return outs.finish(Ok(Exit::Ok));
    };

    outs.keep(writeln!(
        err,
        "holding the change on {ns}/{name} for {} (run {}); Ctrl-C rolls it back now",
        human(jiff::SignedDuration::try_from(t.ttl).unwrap_or(jiff::SignedDuration::MAX)),
        applied.record.run_id
    ));
    let held = signals.hold(t.ttl).await;
    let expires = when(applied.record.expires);
    let what = format!("{ns}/{name}");
    let rollback = c.rollback(&api, &ns, name, rollback_budget(), retry_note(&what));
    tokio::pin!(rollback);
    let mut seen = signals.seen().count;
    let abandon_hint = format!(
        "rolling back; press Ctrl-C again to abandon (the change stays until {expires}; `meshdrill recover -n {ns}` removes it)"
    );
    // After the signal that ended the hold, the next one abandons the rollback; after
    // an expiry, the first one only prints the hint.
    let mut warned = matches!(held, Held::Signal(_));
    if warned {
        outs.keep(writeln!(err, "{abandon_hint}"));
    }
    let cleared = loop {
        tokio::select! {
            r = &mut rollback => break Some(r),
            s = signals.next(seen) => {
                seen = s.count;
                if warned {
                    break None;
                }
                warned = true;
                outs.keep(writeln!(err, "{abandon_hint}"));
            }
        }
    };
    let Some(cleared) = cleared else {
        return outs.finish(Err(Failure::target(anyhow!(
            "rollback abandoned by {}: the change on {ns}/{name} stays until {expires}; `meshdrill recover -n {ns}` removes it then (or `meshdrill clear {name} -n {ns}` now)",
            signals.seen().last
        ))));
    };
    let restored_line = |c: &Cleared| match c {
        Cleared::Restored { record, .. } => format!(
            "{} restored (run {}: {})",
            resource(name),
            record.run_id,
            changes_text(record)
        ),
        Cleared::Nothing { .. } => format!(
            "{} restored (no meshdrill drill on it any more)",
            resource(name)
        ),
        Cleared::Gone => format!(
            "{} is gone (deleted meanwhile): nothing to restore",
            resource(name)
        ),
    };
    // With -o the object or patch owns stdout; the status lines go to stderr.
    let mut say = |line: String| match output {
        None => outs.keep(writeln!(out, "{line}")),
        Some(_) => outs.keep(writeln!(err, "{line}")),
    };
    let result = match (held, cleared) {
        (Held::Expired, Ok(cl)) => {
            say(restored_line(&cl));
            Ok(Exit::Ok)
        }
        (Held::Signal(sig), Ok(cl)) => {
            say(restored_line(&cl));
            Err(Failure::interrupted(anyhow!(
                "interrupted by {sig}; the change on {ns}/{name} was rolled back"
            )))
        }
        (held, Err(e)) => {
            let why = match held {
                Held::Expired => "the hold ended".to_string(),
                Held::Signal(s) => format!("interrupted by {s}"),
            };
            Err(Failure::target(anyhow!(
                "{why}, but the rollback failed: {e}. The drill record stays on the object; `meshdrill recover -n {ns}` restores it after {expires}"
            )))
        }
    };
    outs.finish(result)
}

/// `--wait` after a PATCH that got no answer in time: the server may still apply
/// it. Reads the object a few times (bounded); if the change shows up, rolls it back.
async fn late_landing(
    c: &Cluster,
    api: &VsApi,
    ns: &str,
    name: &str,
    e: cluster::Error,
    err: &mut impl Write,
) -> CliResult {
    const POLLS: usize = 5;
    let cluster::Error::MayStillApply { run_id, .. } = &e else {
        return Err(fail(e));
    };
    let _ = writeln!(
        err,
        "the patch of {ns}/{name} got no answer in time; checking whether it lands after all"
    );
    for _ in 0..POLLS {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(now) = c.get_vs(api, ns, name).await else {
            continue;
        };
        if !matches!(crate::istio::read_record(&now), Ok(Some(r)) if r.run_id == *run_id) {
            continue;
        }
        let what = format!("{ns}/{name}");
        return match c
            .rollback(api, ns, name, rollback_budget(), retry_note(&what))
            .await
        {
            Ok(_) => Err(Failure::target(anyhow!(
                "{e}\nThe change landed after the timeout and was rolled back; nothing is left on {ns}/{name}"
            ))),
            Err(r) => Err(Failure::target(anyhow!(
                "{e}\nThe change landed after the timeout, and rolling it back failed: {r}; `meshdrill recover -n {ns}` restores it after its expiry"
            ))),
        };
    }
    Err(fail(e))
}

fn changes_text(r: &DrillRecord) -> String {
    let list: Vec<String> = r
        .changes
        .iter()
        .map(|c| format!("{} on {}", c.change, routes_text(&c.routes)))
        .collect();
    format!("{} rolled back", list.join("; "))
}

#[allow(clippy::too_many_arguments)]
async fn clear_one(
    c: &Cluster,
    api: &VsApi,
    ns: &str,
    name: &str,
    dry_run: bool,
    output: Option<Output>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> CliResult {
    let dry = if dry_run {
        " (dry run: nothing sent)"
    } else {
        ""
    };
    let cleared = if dry_run {
        c.clear(api, ns, name, true).await
    } else {
        // A rollback: tried again through 429/5xx/no answer, like the one of --wait.
        let what = format!("{ns}/{name}");
        c.rollback(api, ns, name, rollback_budget(), retry_note(&what))
            .await
    };
    match cleared.map_err(fail)? {
        Cleared::Gone => {
            return Err(Failure::target(anyhow!(
                "VirtualService {ns}/{name} not found (HTTP 404 NotFound): nothing to clear; check the name and -n"
            )));
        }
        Cleared::Nothing { object } => {
            let line = format!(
                "{} unchanged (it carries no meshdrill drill; nothing to clear)",
                resource(name)
            );
            report(
                output,
                &object,
                &json_patch::Patch(Vec::new()),
                &line,
                out,
                err,
            )?;
        }
        Cleared::Restored {
            object,
            patch,
            record,
        } => {
            let line = format!(
                "{} restored (run {}: {}){dry}",
                resource(name),
                record.run_id,
                changes_text(&record)
            );
            report(output, &object, &patch, &line, out, err)?;
        }
    }
    Ok(Exit::Ok)
}

// === status ===

fn owner_text(r: &DrillRecord) -> String {
    if r.owner.pid == 0 {
        format!("{}@{} (until expiry)", r.owner.user, r.owner.host)
    } else {
        format!("{}@{} pid {}", r.owner.user, r.owner.host, r.owner.pid)
    }
}

fn status_json(d: &cluster::DrillInfo, now: jiff::Timestamp) -> Value {
    match &d.record {
        Ok(r) => json!({
            "namespace": d.namespace,
            "name": d.name,
            "runId": r.run_id,
            "routes": r.changes.iter().flat_map(|c| c.routes.clone()).collect::<std::collections::BTreeSet<_>>(),
            "changes": r.changes.iter().map(|c| json!({"change": c.change, "routes": c.routes, "at": c.at})).collect::<Vec<_>>(),
            "owner": r.owner,
            "ownerGone": cluster::owner_gone(&r.owner),
            "started": r.started,
            "expires": r.expires,
            "ageSeconds": now.duration_since(r.started).as_secs(),
            "expired": r.is_expired(now),
        }),
        Err(e) => json!({"namespace": d.namespace, "name": d.name, "error": e}),
    }
}

fn table(rows: &[Vec<String>], out: &mut impl Write) -> Result<(), Failure> {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cols {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0))
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end()).map_err(io_err)?;
    }
    Ok(())
}

pub fn run_status(a: StatusArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    runtime()?.block_on(async {
        let c = connect(&a.conn, a.namespace.as_deref(), err).await?;
        let api = c.virtual_services().await.map_err(fail)?;
        let scope = (!a.all_namespaces).then_some(c.namespace.as_str());
        let drills = c.drills(&api, scope).await.map_err(fail)?;
        let now = jiff::Timestamp::now();
        if a.output == ListOutput::Json {
            let all: Vec<Value> = drills.iter().map(|d| status_json(d, now)).collect();
            out.write_all(pretty(&all)?.as_bytes()).map_err(io_err)?;
            return Ok(Exit::Ok);
        }
        if drills.is_empty() {
            let where_ = scope.map_or("any namespace".into(), |n| format!("namespace {n}"));
            writeln!(err, "no meshdrill drills in {where_}").map_err(io_err)?;
            return Ok(Exit::Ok);
        }
        let mut rows = vec![
            [
                "NAMESPACE",
                "VIRTUALSERVICE",
                "ROUTES",
                "CHANGE",
                "OWNER",
                "AGE",
                "EXPIRES",
                "EXPIRED",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for d in &drills {
            let row = match &d.record {
                Ok(r) => {
                    let routes: std::collections::BTreeSet<usize> =
                        r.changes.iter().flat_map(|c| c.routes.clone()).collect();
                    let routes: Vec<String> = routes.iter().map(|i| format!("#{i}")).collect();
                    let change: Vec<&str> = r.changes.iter().map(|c| c.change.as_str()).collect();
                    let expired = r.is_expired(now);
                    let left = r.expires.duration_since(now);
                    vec![
                        d.namespace.clone(),
                        d.name.clone(),
                        routes.join(","),
                        change.join("; "),
                        owner_text(r),
                        human(now.duration_since(r.started)),
                        if expired {
                            format!("{} ({} ago)", when(r.expires), human(left))
                        } else {
                            format!("{} (in {})", when(r.expires), human(left))
                        },
                        if expired { "yes" } else { "no" }.into(),
                    ]
                }
                Err(e) => vec![
                    d.namespace.clone(),
                    d.name.clone(),
                    "?".into(),
                    format!("unreadable record: {e}"),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                ],
            };
            rows.push(row);
        }
        table(&rows, out)?;
        Ok(Exit::Ok)
    })
}

// === recover ===

pub fn run_recover(a: RecoverArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    runtime()?.block_on(async {
        let c = connect(&a.conn, a.namespace.as_deref(), err).await?;
        let api = c.virtual_services().await.map_err(fail)?;
        let scope = (!a.all_namespaces).then_some(c.namespace.as_str());
        let drills = c.drills(&api, scope).await.map_err(fail)?;
        let now = jiff::Timestamp::now();
        let dry = if a.dry_run {
            " (dry run: nothing sent)"
        } else {
            ""
        };
        let (mut restored, mut failed) = (0usize, Vec::new());
        for d in &drills {
            let r = match &d.record {
                Ok(r) => r,
                Err(e) => {
                    // Cannot be rolled back automatically: fail so a CronJob shows it.
                    writeln!(err, "error: skipped {}/{}: {e}", d.namespace, d.name)
                        .map_err(io_err)?;
                    failed.push(format!("{}/{}", d.namespace, d.name));
                    continue;
                }
            };
            let why = if r.is_expired(now) {
                format!("expired {}", when(r.expires))
            } else if a.orphans && cluster::owner_gone(&r.owner) == Some(true) {
                format!("owner {} is gone", owner_text(r))
            } else {
                writeln!(
                    err,
                    "kept {}/{} (run {}, expires {}, owner {})",
                    d.namespace,
                    d.name,
                    r.run_id,
                    when(r.expires),
                    owner_text(r)
                )
                .map_err(io_err)?;
                continue;
            };
            let what = format!("{}/{}", d.namespace, d.name);
            let cleared = if a.dry_run {
                c.clear(&api, &d.namespace, &d.name, true).await
            } else {
                c.rollback(
                    &api,
                    &d.namespace,
                    &d.name,
                    rollback_budget(),
                    retry_note(&what),
                )
                .await
            };
            match cleared {
                Ok(Cleared::Gone) => {
                    writeln!(
                        err,
                        "{} in {} is gone (deleted meanwhile): nothing to restore",
                        resource(&d.name),
                        d.namespace
                    )
                    .map_err(io_err)?;
                }
                Ok(Cleared::Restored { record, .. }) => {
                    restored += 1;
                    writeln!(
                        out,
                        "{} restored in {} ({why}; run {}: {}){dry}",
                        resource(&d.name),
                        d.namespace,
                        record.run_id,
                        changes_text(&record)
                    )
                    .map_err(io_err)?;
                }
                Ok(Cleared::Nothing { .. }) => {}
                Err(e) => {
                    writeln!(err, "error: {e}").map_err(io_err)?;
                    failed.push(format!("{}/{}", d.namespace, d.name));
                }
            }
        }
        if !failed.is_empty() {
            return Err(Failure::target(anyhow!(
                "could not restore {} drill(s): {}; restored {restored}",
                failed.len(),
                failed.join(", ")
            )));
        }
        if restored == 0 {
            writeln!(err, "nothing to recover").map_err(io_err)?;
        }
        Ok(Exit::Ok)
    })
}

// === cluster check ===

pub fn run_cluster(c: ClusterCommand, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    match c {
        ClusterCommand::Check(a) => runtime()?.block_on(check(a, out, err)),
    }
}

async fn check(a: CheckArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    let c = connect(&a.conn, a.namespace.as_deref(), err).await?;
    let w = |out: &mut dyn Write, k: &str, v: &str| writeln!(out, "{k:<11} {v}").map_err(io_err);
    w(out, "server:", &c.server)?;
    w(out, "settings:", &c.origin)?;
    w(out, "user:", &c.user)?;
    w(out, "namespace:", &c.namespace)?;
    let api = c.virtual_services().await.map_err(fail)?;
    w(
        out,
        "istio:",
        &format!(
            "virtualservices.{}/{} (served: {})",
            cluster::GROUP,
            api.version,
            api.served.join(", ")
        ),
    )?;
    let mut denied = Vec::new();
    for verb in ["get", "list", "patch"] {
        let ans = c.can_i(verb, &c.namespace).await.map_err(fail)?;
        let mut line = format!(
            "can-i {verb} virtualservices.{} -n {}: {}",
            cluster::GROUP,
            c.namespace,
            if ans.allowed { "yes" } else { "no" }
        );
        if !ans.reason.is_empty() {
            line.push_str(&format!(" ({})", ans.reason));
        }
        writeln!(out, "{line}").map_err(io_err)?;
        if !ans.allowed {
            denied.push(verb);
        }
    }
    if !denied.is_empty() {
        return Err(Failure::target(anyhow!(
            "this identity may not {} virtualservices in {}; meshdrill needs get, list and patch",
            denied.join("/"),
            c.namespace
        )));
    }
    Ok(Exit::Ok)
}

// === pods kill ===

pub fn run_pods(c: PodsCommand, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    match c {
        PodsCommand::Kill(a) => runtime()?.block_on(kill(a, out, err)),
    }
}

async fn kill(a: KillArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    let c = connect(&a.conn, a.namespace.as_deref(), err).await?;
    let ns = c.namespace.clone();
    let pods = c.list_pods(&ns, &a.selector).await.map_err(fail)?;
    if pods.is_empty() {
        return Err(Failure::target(anyhow!(
            "no running pod in namespace {ns} matches -l {}; nothing was killed",
            a.selector
        )));
    }
    let total = pods.len();
    let victims = cluster::pick_victims(pods, a.count.map(|n| n as usize), a.percent);
    let dry = if a.dry_run {
        " (dry run: nothing sent)"
    } else {
        ""
    };
    for p in &victims {
        if !a.dry_run {
            c.delete_pod(&ns, p).await.map_err(fail)?;
        }
        writeln!(out, "pod/{p} deleted{dry}").map_err(io_err)?;
    }
    writeln!(
        err,
        "{} of {total} pod(s) matching -l {} in {ns} killed{dry}",
        victims.len(),
        a.selector
    )
    .map_err(io_err)?;
    Ok(Exit::Ok)
}
