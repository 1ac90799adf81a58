//! `--mesh DIR` target and `meshdrill mesh ...` commands (the local mesh).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};

use super::args::mesh_fail;
use super::change::pretty;
use super::{CliResult, Exit, Failure, io_err};
use crate::istio::manifest;
use crate::istio::validate_virtual_service;
use crate::mesh::demo::DemoServer;
use crate::mesh::stats::MeshStats;
use crate::mesh::{DemoConfig, MeshDir, MeshError, MeshOptions, MeshSpec, RunningMesh};

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Start a local mesh on a real Envoy; prints the ingress URL and runs until Ctrl-C.
    Up(UpArgs),
    /// Kill replicas of a service (SIGKILL, like a crashed pod).
    Kill(ReplicaArgs),
    /// Restart replicas of a service on their ports.
    Restart(ReplicaArgs),
    /// Faults injected, retries, timeouts, retry amplification and response flags.
    Stats(StatsArgs),
    /// Services and replicas, the ingress Host names, the routes as Envoy runs them, drills.
    #[command(visible_alias = "routes")]
    Get(GetArgs),
    /// Replace or add whole VirtualServices in a running mesh (like kubectl apply).
    Apply(ApplyArgs),
    /// Run one replica of the built-in demo service (started by `mesh up`).
    #[command(hide = true)]
    ServeDemo(ServeDemoArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Mesh file(s) plus VirtualService / DestinationRule manifests.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Keep state (config, logs, PIDs) here for later `--mesh DIR` commands.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The Envoy binary (default: $MESHDRILL_ENVOY, .venv/bin/envoy, envoy on PATH).
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// The service.
    pub service: String,
    /// Only this replica (0-based); default: all of them.
    #[arg(long, value_name = "N")]
    pub replica: Option<usize>,
    /// The running mesh (the --dir of `meshdrill mesh up`).
    #[arg(long, value_name = "DIR", required = true)]
    pub mesh: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The running mesh (the --dir of `meshdrill mesh up`).
    #[arg(long, value_name = "DIR", required = true)]
    pub mesh: PathBuf,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: StatsOutput,
    /// Save the current counters as a baseline (in the mesh dir) for --since-reset.
    #[arg(long, conflicts_with = "since_reset")]
    pub reset: bool,
    /// Show only what happened after the last --reset (default: since the mesh started).
    #[arg(long, visible_alias = "since")]
    pub since_reset: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The running mesh (the --dir of `meshdrill mesh up`).
    #[arg(long, value_name = "DIR", required = true, visible_alias = "dir")]
    pub mesh: PathBuf,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: StatsOutput,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifests holding VirtualServices.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The running mesh (the --dir of `meshdrill mesh up`).
    #[arg(long, value_name = "DIR", required = true)]
    pub mesh: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeDemoArgs {
    #[arg(long)]
    pub service: String,
    #[arg(long)]
    pub replica: usize,
    #[arg(long)]
    pub port: u16,
    /// The service's sidecar listener, 127.0.0.1:PORT.
    #[arg(long)]
    pub outbound: SocketAddr,
    /// The demo configuration as JSON.
    #[arg(long)]
    pub config: String,
}

pub fn run(c: MeshCommand, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    match c {
        MeshCommand::Up(a) => run_up(a, out, err),
        MeshCommand::Kill(a) => {
            let md = MeshDir::open(&a.mesh).map_err(mesh_fail)?;
            let killed = md.kill(&a.service, a.replica).map_err(mesh_fail)?;
            if killed.is_empty() && configured_replicas(&md, &a.service) == 0 {
                writeln!(
                    out,
                    "{}: 0 replicas (replicas: 0 in the mesh file); nothing to kill",
                    a.service
                )
                .map_err(io_err)?;
            } else if killed.is_empty() {
                writeln!(out, "{}: no running replica to kill", a.service).map_err(io_err)?;
            } else {
                writeln!(out, "killed {} replica(s) {}", a.service, list(&killed))
                    .map_err(io_err)?;
            }
            Ok(Exit::Ok)
        }
        MeshCommand::Restart(a) => {
            let done = MeshDir::open(&a.mesh)
                .map_err(mesh_fail)?
                .request_restart(&a.service, a.replica)
                .map_err(mesh_fail)?;
            if done.is_empty() {
                writeln!(
                    out,
                    "{}: 0 replicas (replicas: 0 in the mesh file); nothing to restart",
                    a.service
                )
                .map_err(io_err)?;
            } else {
                writeln!(out, "restarted {} replica(s) {}", a.service, list(&done))
                    .map_err(io_err)?;
            }
            Ok(Exit::Ok)
        }
        MeshCommand::Stats(a) => run_stats(a, out),
        MeshCommand::Get(a) => {
            let v = crate::mesh::view::view(&a.mesh).map_err(mesh_fail)?;
            match a.output {
                StatsOutput::Json => {
                    let j = serde_json::to_value(&v)
                        .map_err(|e| Failure::target(anyhow!("cannot encode the view: {e}")))?;
                    out.write_all(pretty(&j)?.as_bytes()).map_err(io_err)?;
                }
                StatsOutput::Text => write_view(&v, jiff::Timestamp::now(), out).map_err(io_err)?,
            }
            Ok(Exit::Ok)
        }
        MeshCommand::Apply(a) => run_apply(a, out, err),
        MeshCommand::ServeDemo(a) => {
            let config: DemoConfig = serde_json::from_str(&a.config).map_err(|e| {
                Failure::input(anyhow!("--config is not a demo configuration: {e}"))
            })?;
            DemoServer {
                service: a.service,
                replica: a.replica,
                port: a.port,
                outbound: a.outbound,
                config,
            }
            .run()
            .map_err(mesh_fail)?;
            Ok(Exit::Ok)
        }
    }
}

/// How many replicas the mesh file gives `service`.
fn configured_replicas(md: &MeshDir, service: &str) -> usize {
    md.state()
        .map(|st| st.spec.replicas_of(service).len())
        .unwrap_or(usize::MAX)
}

fn list(v: &[usize]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_up(a: UpArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    let loaded = MeshSpec::load(&a.files).map_err(mesh_fail)?;
    for n in &loaded.notes {
        writeln!(err, "note: {n}").map_err(io_err)?;
    }
    let name = loaded.spec.name.clone();
    // Signals first: one during start-up stops what was started and removes its files.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure::target(anyhow!("cannot start the signal handler: {e}")))?;
    let cancel = crate::cancel::Cancel::new();
    let _signals = {
        let _guard = rt.enter();
        cancel
            .watch_signals()
            .map_err(|e| Failure::target(anyhow!("cannot watch SIGINT/SIGTERM: {e}")))?
    };
    let started = RunningMesh::start(
        loaded.spec,
        MeshOptions {
            envoy: a.envoy,
            dir: a.dir.clone(),
            cancel: Some(cancel.clone()),
            ..MeshOptions::default()
        },
    );
    let mut mesh = match started {
        Ok(m) => m,
        Err(MeshError::Interrupted) => {
            return Err(Failure::interrupted(anyhow!(
                "mesh {name}: {}",
                MeshError::Interrupted
            )));
        }
        Err(e) => return Err(mesh_fail(e)),
    };
    for w in mesh.warnings() {
        writeln!(err, "warning: {w}").map_err(io_err)?;
    }
    let st = mesh.state().map_err(mesh_fail)?;
    // The banner is best effort: a closed stdout (`mesh up | head -1`) must not stop
    // the mesh.
    let _ = write_banner(&name, &mesh, &st, a.dir.as_deref(), out);

    let result: Result<&str, MeshError> = rt.block_on(async {
        loop {
            if let Some(why) = cancel.reason() {
                return Ok(match why {
                    crate::cancel::Reason::Interrupt => "interrupt",
                    other => other.name(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            for e in mesh.supervise()? {
                let _ = writeln!(err, "{e}");
            }
        }
    });
    mesh.stop().map_err(mesh_fail)?;
    match result {
        // Stopped by a signal, during start-up or after: one rule, exit 130 once
        // everything is stopped.
        Ok(why) => {
            writeln!(err, "mesh {name} stopped ({why})").map_err(io_err)?;
            Ok(Exit::Interrupted)
        }
        Err(e) => Err(mesh_fail(e)),
    }
}

/// `curl` lines for the ingress Host names.
fn host_hint(hosts: &[String], url: &str) -> String {
    match hosts.first() {
        Some(h) => format!(
            "answers Host: {} (e.g. curl -H 'Host: {h}' {url}/; any other Host gets 404)",
            hosts.join(", ")
        ),
        None => "answers no Host: no VirtualService is bound to the ingress gateway".into(),
    }
}

fn write_view(
    v: &crate::mesh::view::MeshView,
    now: jiff::Timestamp,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "mesh {}: running (meshdrill pid {}), state in {}",
        v.name, v.owner_pid, v.dir
    )?;
    writeln!(
        out,
        "ingress {} {}",
        v.ingress_url,
        host_hint(&v.ingress_hosts, &v.ingress_url)
    )?;
    for l in v.ingress_listeners.iter().skip(1) {
        writeln!(
            out,
            "ingress (Gateway port {}) {} {}",
            l.server_port,
            l.url,
            host_hint(&l.hosts, &l.url)
        )?;
    }
    writeln!(out, "Envoy admin {}", v.admin)?;
    writeln!(out)?;
    writeln!(out, "SERVICES")?;
    let mut rows = vec![[
        "SERVICE".to_string(),
        "REPLICA".into(),
        "STATUS".into(),
        "PORT".into(),
        "PID".into(),
        "LABELS".into(),
        "OUTBOUND".into(),
    ]];
    for s in &v.services {
        if s.replicas.is_empty() {
            rows.push([
                s.name.clone(),
                "-".into(),
                "0 replicas".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                s.outbound.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        for r in &s.replicas {
            let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            rows.push([
                s.name.clone(),
                r.index.to_string(),
                if r.up { "up" } else { "down" }.into(),
                r.port.to_string(),
                r.pid.filter(|_| r.up).map_or("-".into(), |p| p.to_string()),
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels.join(",")
                },
                s.outbound.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    table(&rows, out)?;
    writeln!(out)?;
    let versions: Vec<String> = v
        .route_versions
        .iter()
        .map(|(k, ver)| format!("{k} v{ver}"))
        .collect();
    writeln!(out, "ROUTES (as Envoy runs them: {})", versions.join(", "))?;
    let mut rows = vec![[
        "HOP".to_string(),
        "VIRTUALHOST".into(),
        "ROUTE".into(),
        "MATCH".into(),
        "DESTINATIONS".into(),
        "FAULT".into(),
        "RETRIES".into(),
        "TIMEOUT".into(),
    ]];
    for r in &v.routes {
        let dests: Vec<String> = r
            .destinations
            .iter()
            .map(|d| format!("{} {}%", d.cluster, d.weight))
            .collect();
        let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        rows.push([
            r.hop.clone(),
            r.virtual_host.clone(),
            r.name.clone(),
            r.matches.clone(),
            dests.join(", "),
            dash(&r.fault),
            dash(&r.retries).replace(
                "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                "Istio's default conditions",
            ),
            dash(&r.timeout),
        ]);
    }
    table(&rows, out)?;
    writeln!(out)?;
    if v.drills.is_empty() {
        writeln!(out, "DRILLS: none")?;
    } else {
        writeln!(out, "DRILLS")?;
        for d in &v.drills {
            match (&d.error, d.expires) {
                (Some(e), _) => {
                    writeln!(out, "  {}: unreadable drill record: {e}", d.virtual_service)?
                }
                (None, Some(exp)) => {
                    let left = exp.duration_since(now).as_secs();
                    let when = if left > 0 {
                        format!("expires {exp} (in {left}s)")
                    } else {
                        format!("expired {exp} (mesh up rolls it back within a second)")
                    };
                    writeln!(
                        out,
                        "  {}: {} — run {}, {}, {when}",
                        d.virtual_service,
                        d.changes.join("; "),
                        d.run_id.as_deref().unwrap_or("?"),
                        match d.owner_pid {
                            Some(0) | None => "no owning process".to_string(),
                            Some(p) => format!("owner pid {p}"),
                        },
                    )?;
                }
                (None, None) => writeln!(out, "  {}", d.virtual_service)?,
            }
        }
    }
    out.flush()
}

/// Left-aligned columns, two spaces apart, indented by two.
fn table<const N: usize>(rows: &[[String; N]], out: &mut impl Write) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::from(" ");
        for (i, (w, c)) in widths.iter().zip(r).enumerate() {
            line.push(' ');
            line.push_str(c);
            if i + 1 < N {
                line.push_str(&" ".repeat(w - c.chars().count() + 1));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn write_banner(
    name: &str,
    mesh: &RunningMesh,
    st: &crate::mesh::state::MeshState,
    dir: Option<&Path>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(out, "mesh {name} is up; ingress: {}", mesh.ingress_url())?;
    if let Ok(v) = crate::mesh::view::view(mesh.dir()) {
        writeln!(
            out,
            "  ingress {}",
            host_hint(&v.ingress_hosts, &mesh.ingress_url())
        )?;
        for l in v.ingress_listeners.iter().skip(1) {
            writeln!(
                out,
                "  ingress for Gateway port {}: {} {}",
                l.server_port,
                l.url,
                host_hint(&l.hosts, &l.url)
            )?;
        }
    }
    for s in st.spec.service_names() {
        let ports: Vec<String> = st
            .replica_ports
            .get(s)
            .into_iter()
            .flatten()
            .map(|p| p.to_string())
            .collect();
        let inbound: Vec<String> = st
            .inbound_ports
            .get(s)
            .into_iter()
            .flatten()
            .map(|p| p.to_string())
            .collect();
        writeln!(
            out,
            "  {s}: {} replica(s) on 127.0.0.1:{{{}}}{}, outbound via 127.0.0.1:{}",
            ports.len(),
            ports.join(","),
            if inbound.is_empty() {
                String::new()
            } else {
                format!(
                    " behind inbound sidecars 127.0.0.1:{{{}}}",
                    inbound.join(",")
                )
            },
            st.sidecar_ports.get(s).copied().unwrap_or(0)
        )?;
    }
    writeln!(out, "  Envoy admin: http://{}", mesh.admin())?;
    match dir {
        Some(d) => writeln!(
            out,
            "state in {}: e.g. meshdrill fault abort <VS> --status 503 --percent 50 --mesh {}; meshdrill mesh get --mesh {} shows routes and replicas",
            mesh.dir().display(),
            d.display(),
            d.display()
        )?,
        None => writeln!(
            out,
            "state in a temporary directory (use --dir DIR to change faults live)"
        )?,
    }
    writeln!(out, "Ctrl-C to stop")?;
    out.flush()
}

fn run_apply(a: ApplyArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    let md = MeshDir::open(&a.mesh).map_err(mesh_fail)?;
    let mut n = 0;
    for f in &a.files {
        let docs = manifest::read_file(f).map_err(Failure::input)?;
        for d in docs.iter().filter(|d| d.is_virtual_service()) {
            let issues = validate_virtual_service(d);
            // What Istio rejects, or Envoy would: the running mesh keeps its routes.
            if issues.iter().any(|i| i.blocks_envoy()) {
                let list: Vec<String> = issues
                    .iter()
                    .filter(|i| i.blocks_envoy())
                    .map(|i| format!("  {i}"))
                    .collect();
                return Err(Failure::input(anyhow!(
                    "VirtualService {} is not valid; nothing was changed:\n{}",
                    d.name(),
                    list.join("\n")
                )));
            }
            for i in &issues {
                writeln!(err, "warning: {i}").map_err(io_err)?;
            }
            let applied = md.put_virtual_service(d.value.clone()).map_err(mesh_fail)?;
            for w in &applied.warnings {
                writeln!(err, "warning: {w}").map_err(io_err)?;
            }
            writeln!(
                out,
                "VirtualService {}: applied; Envoy runs route version {}",
                d.name(),
                applied.version
            )
            .map_err(io_err)?;
            n += 1;
        }
    }
    if n == 0 {
        return Err(Failure::input(anyhow!(
            "no VirtualService in the given files"
        )));
    }
    Ok(Exit::Ok)
}

/// What `amplification` means, in the text and JSON output.
const AMPLIFICATION_IS: &str = "upstream attempts per request that reached the route's upstream (requests answered by an injected abort or matching no route are left out)";

fn run_stats(a: StatsArgs, out: &mut impl Write) -> CliResult {
    let md = MeshDir::open(&a.mesh).map_err(mesh_fail)?;
    if a.reset {
        let b = md.reset_stats().map_err(mesh_fail)?;
        match a.output {
            StatsOutput::Json => out
                .write_all(pretty(&serde_json::json!({"baseline_taken_at": b.taken_at}))?.as_bytes())
                .map_err(io_err)?,
            StatsOutput::Text => writeln!(
                out,
                "stats baseline saved at {}; `meshdrill mesh stats --since-reset --mesh {}` shows what happens after it",
                b.taken_at,
                a.mesh.display()
            )
            .map_err(io_err)?,
        }
        return Ok(Exit::Ok);
    }
    let (s, since) = if a.since_reset {
        let Some((s, b)) = md.stats_since_reset().map_err(mesh_fail)? else {
            return Err(Failure::input(anyhow!(
                "{}: no stats baseline for this mesh: save one with `meshdrill mesh stats --reset --mesh {}`",
                a.mesh.display(),
                a.mesh.display()
            )));
        };
        (s, Some(b.taken_at))
    } else {
        (md.stats().map_err(mesh_fail)?, None)
    };
    match a.output {
        StatsOutput::Json => out
            .write_all(pretty(&stats_json(&s, since))?.as_bytes())
            .map_err(io_err)?,
        StatsOutput::Text => write_stats(&s, since, out).map_err(io_err)?,
    }
    Ok(Exit::Ok)
}

fn stats_json(s: &MeshStats, since: Option<jiff::Timestamp>) -> serde_json::Value {
    let hops: Vec<serde_json::Value> = s
        .hops
        .iter()
        .map(|h| {
            let mut v = serde_json::to_value(h).unwrap_or_default();
            v["amplification"] = serde_json::json!(h.amplification());
            v
        })
        .collect();
    serde_json::json!({
        "window": match since {
            Some(t) => serde_json::json!({"since": "reset", "reset_at": t}),
            None => serde_json::json!({"since": "start"}),
        },
        "amplification_is": AMPLIFICATION_IS,
        "hops": hops,
        "clusters": s.clusters,
        "totals": s.totals(),
    })
}

fn write_stats(
    s: &MeshStats,
    since: Option<jiff::Timestamp>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match since {
        Some(t) => writeln!(out, "since the reset at {t}:")?,
        None => writeln!(
            out,
            "since the mesh started (`--reset`, then `--since-reset`, for one window):"
        )?,
    }
    writeln!(
        out,
        "hops (downstream requests, requests routed upstream, faults injected, amplification, response flags):"
    )?;
    for h in &s.hops {
        let flags: Vec<String> = h
            .response_flags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(
            out,
            "  {:<24} requests {:>7}  routed {:>7}  aborts {:>6}  delays {:>6}  amplification {:>5}  flags {}",
            h.name,
            h.downstream_requests,
            h.routed_requests,
            h.aborts_injected,
            h.delays_injected,
            h.amplification()
                .map(|a| format!("{a:.2}"))
                .unwrap_or_else(|| "-".into()),
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(",")
            }
        )?;
    }
    writeln!(
        out,
        "clusters (upstream requests, retries, retry overflow, timeouts, per-try timeouts, connect failures):"
    )?;
    for c in &s.clusters {
        writeln!(
            out,
            "  {:<36} requests {:>7}  retries {:>6} (ok {}, limit {})  overflow {}  timeouts {}  per-try {}  connect-fail {}",
            c.name,
            c.upstream_requests,
            c.retries,
            c.retry_success,
            c.retry_limit_exceeded,
            c.retry_overflow,
            c.timeouts,
            c.per_try_timeouts,
            c.connect_failures
        )?;
    }
    writeln!(out, "amplification: {AMPLIFICATION_IS}")?;
    let t = s.totals();
    if t.retry_overflow > 0 {
        writeln!(
            out,
            "warning: {} retries overflowed the circuit breaker (max_retries)",
            t.retry_overflow
        )?;
    }
    Ok(())
}
