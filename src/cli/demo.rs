//! `meshdrill demo`: a whole drill on the local mesh, with no setup.
//!
//! The go-demo-8 chaos-engineering demo on a real Envoy: the ingress routes to
//! `repeater` (retrying 5xx), which calls `go-demo-8` through its sidecar. Four phases
//! of open-loop load through the ingress: the steady state; a 50% abort injected live
//! on go-demo-8 (the ingress retries absorb it); the same fault with the ingress
//! retries switched off (the fault reaches users); everything cleared (recovery).
//! Every change is rolled back on success, error and Ctrl-C, and the mesh is stopped.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::{Parser, ValueEnum};
use serde_json::json;

use super::change::record_meta;
use super::{CliResult, Exit, Failure, io_err};
use crate::istio::{
    AbortCode, AbortSpec, Change, HttpStatus, Percentage, RetrySpec, RouteSelector,
};
use crate::load::{self, Cancel, LoadConfig, LoadReport, Rate, Stop};
use crate::mesh::{self, MeshOptions, MeshStats, RunningMesh};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoOutput {
    Text,
    Json,
}

#[derive(Debug, Parser)]
pub struct DemoArgs {
    /// Requests per second through the ingress (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Length of each of the four phases (Go duration).
    #[arg(long, default_value = "5s", value_parser = parse_phase)]
    pub phase: Duration,
    /// Envoy binary (default: $MESHDRILL_ENVOY, the project's .venv, then PATH).
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Output: text (a table) or json (one object per phase, for scripts).
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: DemoOutput,
}

fn parse_phase(s: &str) -> Result<Duration, String> {
    crate::istio::types::parse_go_duration(s)
        .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(600))
        .ok_or_else(|| format!("invalid phase {s:?}: a Go duration from 1s to 10m"))
}

/// What one phase measured.
struct Phase {
    title: &'static str,
    report: LoadReport,
    stats: MeshStats,
}

impl Phase {
    fn ok(&self) -> u64 {
        self.report
            .data
            .counts
            .statuses()
            .filter(|(s, _)| (200..300).contains(s))
            .map(|(_, n)| n)
            .sum()
    }
    fn success(&self) -> f64 {
        match self.report.requests() {
            0 => 0.0,
            n => self.ok() as f64 / n as f64,
        }
    }
    fn aborts(&self) -> u64 {
        self.stats
            .hop("sidecar_repeater")
            .map_or(0, |h| h.aborts_injected)
    }
    fn retries(&self) -> u64 {
        self.stats.totals().retries
    }
    fn ms(&self, q: f64) -> f64 {
        self.report.latency_at(q).as_secs_f64() * 1000.0
    }
    fn to_json(&self) -> serde_json::Value {
        let codes: serde_json::Map<String, serde_json::Value> = self
            .report
            .data
            .counts
            .statuses()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({
            "phase": self.title,
            "requests": self.report.requests(),
            "errors": self.report.errors(),
            "success": self.success(),
            "status_codes": codes,
            "latency_ms": {"p50": self.ms(0.5), "p99": self.ms(0.99), "max": self.ms(1.0)},
            "aborts_injected": self.aborts(),
            "retries": self.retries(),
        })
    }
}

pub fn run(a: DemoArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 10_000.0) {
        return Err(Failure::input(anyhow!(
            "--rate {}: give a rate from 0 (exclusive) to 10000 requests per second",
            a.rate
        )));
    }
    let text = a.output == DemoOutput::Text;
    let spec = mesh::demo_mesh().map_err(Failure::input)?;
    // The runtime and the signal handler first: a signal during start-up stops what
    // was started, removes its files and exits 130.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::target(anyhow!("cannot start the async runtime: {e}")))?;
    let cancel = Cancel::new();
    let signals = {
        let cancel = cancel.clone();
        super::Signals::install(&rt, move || cancel.cancel())?
    };
    let opts = MeshOptions {
        envoy: a.envoy.clone(),
        cancel: Some(signals.flag.clone()),
        ..Default::default()
    };
    let started = Instant::now();
    let mesh = match RunningMesh::start(spec, opts) {
        Ok(m) => m,
        Err(crate::mesh::MeshError::Interrupted) => {
            return Err(Failure::interrupted(anyhow!(
                "{}",
                crate::mesh::MeshError::Interrupted
            )));
        }
        Err(e) => return Err(Failure::target(e)),
    };
    if text {
        writeln!(
            out,
            "meshdrill demo: the go-demo-8 drill on a local mesh (a real Envoy, no cluster)\n\n\
             mesh up in {:.1}s: ingress {} -> repeater (retries 5xx x10) -> go-demo-8 x2, Envoy on every hop\n\
             load: {} req/s, open loop (latency counts from each request's scheduled start), {}s per phase\n",
            started.elapsed().as_secs_f64(),
            mesh.ingress_url(),
            a.rate,
            a.phase.as_secs()
        )
        .map_err(io_err)?;
    }
    let outcome = drill(&a, &mesh, &rt, &cancel, out, text);
    // Always roll back, whatever happened: the record makes `clear` a no-op when
    // nothing is left, so both calls are safe to repeat.
    let meta = record_meta(Duration::from_secs(60));
    let mut rollback_errors = Vec::new();
    for vs in ["go-demo-8", "repeater"] {
        if let Err(e) = mesh.apply(vs, &RouteSelector::All, None, &meta) {
            rollback_errors.push(format!("{vs}: {e}"));
        }
    }
    let stopped = mesh.stop();
    if let Err(e) = stopped {
        let _ = writeln!(err, "warning: stopping the mesh: {e}");
    }
    if !rollback_errors.is_empty() {
        return Err(Failure::target(anyhow!(
            "rollback failed: {}",
            rollback_errors.join("; ")
        )));
    }
    let phases = outcome?;
    if cancel.is_cancelled() {
        return Err(Failure::interrupted(anyhow!(
            "interrupted after {} phase(s); every change was rolled back and the mesh stopped",
            phases.len()
        )));
    }
    if text {
        write_summary(out, &phases).map_err(io_err)?;
    } else {
        let v = json!({"phases": phases.iter().map(Phase::to_json).collect::<Vec<_>>()});
        writeln!(out, "{v:#}").map_err(io_err)?;
    }
    Ok(Exit::Ok)
}

/// A live change before a phase: the VirtualService and the change (`None` = clear).
type Step<'a> = (&'a str, Option<&'a Change>);

fn drill(
    a: &DemoArgs,
    mesh: &RunningMesh,
    rt: &tokio::runtime::Runtime,
    cancel: &Cancel,
    out: &mut impl Write,
    text: bool,
) -> Result<Vec<Phase>, Failure> {
    let meta = record_meta(Duration::from_secs(600));
    let abort = Change::Abort(AbortSpec {
        code: AbortCode::Http(HttpStatus::new(500).map_err(Failure::input)?),
        percentage: Percentage::new(50.0).map_err(Failure::input)?,
    });
    let no_retries = Change::Retries {
        retries: RetrySpec {
            attempts: 0,
            per_try_timeout: None,
            retry_on: None,
            retry_remote_localities: None,
        },
        timeout: None,
    };
    let mut phases = Vec::new();
    let steps: [(&'static str, Option<Step>); 4] = [
        ("1 steady state", None),
        (
            "2 abort 50% on go-demo-8, retries on",
            Some(("go-demo-8", Some(&abort))),
        ),
        (
            "3 same fault, ingress retries off",
            Some(("repeater", Some(&no_retries))),
        ),
        ("4 all cleared: recovery", Some(("go-demo-8", None))),
    ];
    for (title, change) in steps {
        if cancel.is_cancelled() {
            break;
        }
        if let Some((vs, change)) = change {
            let t = Instant::now();
            mesh.apply(vs, &RouteSelector::All, change, &meta)
                .map_err(Failure::target)?;
            if change.is_none() {
                // recovery: the ingress retries come back too
                mesh.apply("repeater", &RouteSelector::All, None, &meta)
                    .map_err(Failure::target)?;
            }
            if text {
                let what = match change {
                    Some(c) => format!("{c} on VirtualService {vs}"),
                    None => "cleared every change; routes restored as they were".into(),
                };
                writeln!(
                    out,
                    "  live change: {what} (Envoy confirmed it in {} ms)",
                    t.elapsed().as_millis()
                )
                .map_err(io_err)?;
            }
        }
        let before = mesh.stats().map_err(Failure::target)?;
        let config = LoadConfig::builder(format!("{}/", mesh.ingress_url()))
            .header("Host: repeater.acme.com")
            .conns(16)
            .rate(Rate::Fixed(a.rate))
            .stop(Stop::Duration(a.phase))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(Failure::input)?;
        let report = rt
            .block_on(load::run(config, cancel.clone(), |_| {}))
            .map_err(Failure::target)?;
        let stats = mesh.stats().map_err(Failure::target)?.since(&before);
        let phase = Phase {
            title,
            report,
            stats,
        };
        if text {
            writeln!(
                out,
                "  {:<40} {:>6} requests  {:>7.2}% ok  p99 {:>7.1} ms",
                phase.title,
                phase.report.requests(),
                phase.success() * 100.0,
                phase.ms(0.99)
            )
            .map_err(io_err)?;
        }
        phases.push(phase);
    }
    Ok(phases)
}

fn write_summary(out: &mut impl Write, phases: &[Phase]) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{:<40} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "phase", "requests", "success", "p50 ms", "p99 ms", "aborts", "retries"
    )?;
    for p in phases {
        writeln!(
            out,
            "{:<40} {:>8} {:>8.2}% {:>9.1} {:>9.1} {:>8} {:>8}",
            p.title,
            p.report.requests(),
            p.success() * 100.0,
            p.ms(0.5),
            p.ms(0.99),
            p.aborts(),
            p.retries()
        )?;
    }
    writeln!(
        out,
        "\naborts: injected by go-demo-8's fault on repeater's sidecar (Envoy stat fault.aborts_injected);\n\
         retries: Envoy's upstream_rq_retry. With 50% aborts, 10 ingress retries make failure\n\
         0.5^11 (about 0.05%); without them about half the calls fail."
    )?;
    if let (Some(steady), Some(fault)) = (phases.first(), phases.get(1)) {
        writeln!(
            out,
            "The retries are not free: p99 went from {:.1} ms to {:.1} ms under the fault, as each\n\
             retry waits out Envoy's back-off (25 ms base, doubling, jittered).",
            steady.ms(0.99),
            fault.ms(0.99)
        )?;
    }
    writeln!(out, "Every change was rolled back; the mesh is stopped.")
}
