//! `status` and `recover` (on a cluster or a running mesh), and the cluster-only
//! commands `cluster check` and `pods kill`.

use std::io::Write;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::args::{self, ConnArgs, ScopeArgs};
use super::change::{changes_text, human, pretty, when};
use super::{CliResult, Exit, Failure, io_err};
use crate::cluster::{self, Cluster};
use crate::istio::{DrillRecord, RecordMeta, RouteSelector};
use crate::target::{Cleared, Target, rollback_budget};

/// The identity a planned clear needs (only its time is read).
fn clear_meta() -> RecordMeta {
    super::change::one_shot_meta(std::time::Duration::from_secs(1))
}

// === Arguments ===

/// Output of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: ListOutput,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Also restore drills whose owner process is gone (known only for drills started on this host).
    #[arg(long)]
    pub orphans: bool,
    /// Print what would be restored and change nothing.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", hide_default_value = true, value_name = "client", value_parser = super::args::dry_run_mode, action = clap::ArgAction::Set)]
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
    #[arg(short = 'n', long, value_parser = super::args::parse_namespace)]
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
    #[arg(short = 'n', long, value_parser = super::args::parse_namespace)]
    pub namespace: Option<String>,
    /// Print which pods would be killed and kill none.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", hide_default_value = true, value_name = "client", value_parser = super::args::dry_run_mode, action = clap::ArgAction::Set)]
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

pub(super) async fn connect(
    conn: &ConnArgs,
    namespace: Option<&str>,
    err: &mut impl Write,
) -> Result<Cluster, Failure> {
    conn.check()?;
    let c = Cluster::connect(&conn.options(namespace))
        .await
        .map_err(fail)?;
    for w in &c.warnings {
        // A warning that cannot be shown must not stop the command.
        let _ = writeln!(err, "warning: {w}");
    }
    Ok(c)
}

fn resource(name: &str) -> String {
    format!("virtualservice.{}/{name}", cluster::GROUP)
}

/// Opens the scope's target and shows the cluster's warnings.
async fn open_scope(scope: &ScopeArgs, err: &mut impl Write) -> Result<Target, Failure> {
    let t = scope.open().await?;
    if let Target::Cluster(c) = &t {
        for w in &c.cluster.warnings {
            let _ = writeln!(err, "warning: {w}");
        }
    }
    Ok(t)
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
        let t = open_scope(&a.scope, err).await?;
        let scope = a.scope.scope(&t);
        let drills = t.drills(scope).await.map_err(args::fail)?;
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
        let t = open_scope(&a.scope, err).await?;
        let scope = a.scope.scope(&t);
        let drills = t.drills(scope).await.map_err(args::fail)?;
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
            let cleared = if a.dry_run {
                t.plan(
                    &d.name,
                    Some(&d.namespace),
                    &RouteSelector::All,
                    None,
                    &clear_meta(),
                )
                .await
                .map(|c| match c.record {
                    Some(record) => Cleared::Restored {
                        object: c.object,
                        patch: c.patch,
                        record,
                        overwritten: c.warnings,
                    },
                    None => Cleared::Nothing { object: c.object },
                })
            } else {
                t.clear(&d.name, Some(&d.namespace), rollback_budget())
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
