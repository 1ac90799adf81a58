//! `meshdrill run EXPERIMENT`: a chaostoolkit experiment file, run unchanged on a
//! cluster or (`--mesh`) on a local mesh, with chaostoolkit's journal.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;

use super::args::{fail, mesh_fail, runtime};
use super::run::{RunArgs, RunOutput, Strategy, check_writable, start_mesh, watch};
use super::{CliResult, Exit, Failure};
use crate::experiment::journal::Journal;
use crate::experiment::model::Provider;
use crate::experiment::run::mesh_url;
use crate::experiment::{
    Event, Experiment, HypothesisStrategy, LoadOptions, Observer, RollbackStrategy, RunOptions,
};
use crate::mesh::MeshSpec;
use crate::target::{ClusterTarget, MeshTarget, Target};

/// Flags of `run` that only a scenario file takes.
fn refuse_scenario_flags(a: &RunArgs) -> CliResult<()> {
    let refused = [
        (a.dry_run, "--dry-run"),
        (a.intervals, "--intervals"),
        (a.quiet, "--quiet"),
        (a.ingress.is_some(), "--ingress"),
        (a.namespace.is_some(), "-n/--namespace"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(on, _)| *on) {
        return Err(Failure::input(anyhow!(
            "{flag} is for scenario files; {} is a chaostoolkit experiment (its actions name their namespace in `ns`; URLs come from its configuration)",
            a.file.display()
        )));
    }
    a.conn.check()?;
    if a.mesh.is_some() && a.conn.any() {
        return Err(Failure::input(anyhow!(
            "--kubeconfig, --context, --insecure-skip-tls-verify and --request-timeout are for the cluster, not --mesh"
        )));
    }
    if a.mesh.is_some() && a.cluster {
        return Err(Failure::input(anyhow!("--mesh and --cluster: choose one")));
    }
    Ok(())
}

pub fn run(a: RunArgs, out: &mut (impl Write + Send), err: &mut (impl Write + Send)) -> CliResult {
    refuse_scenario_flags(&a)?;
    let mut vars = Vec::new();
    for v in &a.var {
        vars.push(crate::experiment::parse_var(v).map_err(|e| Failure::input(anyhow!(e)))?);
    }
    let on_mesh = a.mesh.is_some();
    let wants = crate::experiment::load::env_keys(&a.file);
    let unset = |k: &str| std::env::var(k).map(|v| v.is_empty()).unwrap_or(true);
    // On a mesh the ingress stands in for INGRESS_HOST (and INGRESS_PORT) when the
    // experiment reads them and they are not set. Checked first with a stand-in port:
    // nothing starts before the file is known to be usable.
    let ingress_defaults = |port: u16| {
        let mut m = BTreeMap::new();
        if !on_mesh {
            return m;
        }
        let host_asked = wants.iter().any(|k| k == "INGRESS_HOST") && unset("INGRESS_HOST");
        let port_asked = wants.iter().any(|k| k == "INGRESS_PORT") && unset("INGRESS_PORT");
        if host_asked && port_asked {
            m.insert("INGRESS_HOST".into(), "127.0.0.1".into());
        } else if host_asked {
            m.insert("INGRESS_HOST".into(), format!("127.0.0.1:{port}"));
        }
        if port_asked {
            m.insert("INGRESS_PORT".into(), port.to_string());
        }
        m
    };
    let mut lo = LoadOptions {
        vars,
        var_files: a.var_file.clone(),
        env_defaults: ingress_defaults(1),
        on_mesh,
    };
    let exp = crate::experiment::load(&a.file, &lo).map_err(Failure::input)?;
    if let Some(p) = &a.journal {
        check_writable(p)?;
    }
    let rollback_strategy = match a.rollback_strategy {
        Some(s) => strategy(s),
        None => exp.runtime_rollbacks.unwrap_or(RollbackStrategy::Always),
    };
    let hypothesis_strategy = match &a.hypothesis_strategy {
        Some(s) => HypothesisStrategy::parse(s).ok_or_else(|| {
            Failure::input(anyhow!(
                "--hypothesis-strategy {s:?}: one of default, before-method-only, after-method-only, during-method-only, continuously"
            ))
        })?,
        None => exp.runtime_hypothesis.unwrap_or(HypothesisStrategy::Default),
    };
    let frequency = a.hypothesis_frequency.or(exp.runtime_freq).unwrap_or(1.0);
    if !(0.1..=3600.0).contains(&frequency) {
        return Err(Failure::input(anyhow!(
            "--hypothesis-frequency is seconds, from 0.1 to 3600"
        )));
    }
    let rt = runtime()?;
    let (cancel, _signals) = watch(&rt)?;
    let w: &mut (dyn Write + Send) = match a.output {
        RunOutput::Text => out,
        RunOutput::Json => err,
    };

    // The target: the mesh asked for, else the cluster when an activity needs one.
    let target = if let Some(m) = &a.mesh {
        let t = if m.is_dir() {
            MeshTarget::open(m).map_err(fail)?
        } else {
            let loaded = MeshSpec::load(std::slice::from_ref(m)).map_err(mesh_fail)?;
            start_mesh(loaded.spec, a.envoy.clone(), &cancel, &rt)?
        };
        Some(Target::Mesh(t))
    } else if exp.needs_target() {
        let options = a.conn.options(None);
        // chaostoolkit's lookup: the experiment's KUBERNETES_* secrets, then the
        // environment.
        let secrets = exp.k8s_secrets.clone();
        let env = move |k: &str| secrets.get(k).cloned().or_else(|| std::env::var(k).ok());
        let c = rt
            .block_on(ClusterTarget::connect_with(
                &options,
                Some(&cancel),
                "",
                &env,
            ))
            .map_err(|e| {
                if e.is_interrupted() {
                    Failure::interrupted(anyhow!("{e}"))
                } else {
                    fail(e)
                }
            })?;
        for wmsg in &c.cluster.warnings {
            let _ = writeln!(w, "warning: {wmsg}");
        }
        Some(Target::Cluster(c))
    } else {
        None
    };

    let result = (|| -> CliResult<(Journal, crate::experiment::Exit)> {
        // On the mesh, load the file again with the real ingress, and check that every
        // URL goes somewhere the mesh has.
        let exp = match &target {
            Some(Target::Mesh(m)) => {
                let st = m.state().map_err(fail)?;
                lo.env_defaults = ingress_defaults(st.ingress_port);
                let exp = crate::experiment::load(&a.file, &lo).map_err(Failure::input)?;
                check_mesh_urls(&exp, &st)?;
                exp
            }
            _ => exp,
        };
        let opts = RunOptions {
            rollback_strategy,
            hypothesis_strategy,
            hypothesis_frequency: Duration::from_secs_f64(frequency),
            fail_fast: a.fail_fast || exp.runtime_fail_fast.unwrap_or(false),
            keep_faults: a.keep_faults,
            ttl: a
                .ttl
                .unwrap_or_else(|| planned(&exp) + Duration::from_secs(600)),
        };
        let _ = writeln!(
            w,
            "experiment {:?} ({}) on {}",
            exp.title,
            a.file.display(),
            target.as_ref().map_or(
                "no target (http and process activities only)".into(),
                Target::label
            )
        );
        for (k, v) in &lo.env_defaults {
            let _ = writeln!(
                w,
                "note: {k}={v} (the local mesh's ingress; it was not set)"
            );
        }
        if opts.rollback_strategy == RollbackStrategy::Always
            && a.rollback_strategy.is_none()
            && exp.runtime_rollbacks.is_none()
        {
            let _ = writeln!(
                w,
                "note: rollbacks run in every case (--rollback-strategy always, meshdrill's default; chaostoolkit's is `default`), and whatever they leave changed meshdrill undoes at the end{}",
                if a.keep_faults {
                    " — except with --keep-faults"
                } else {
                    ""
                }
            );
        }
        let mut p = Printer { w, failed: None };
        let res = rt.block_on(crate::experiment::run(
            &exp,
            target.as_ref(),
            &opts,
            &cancel,
            &mut p,
        ));
        Ok(res)
    })();
    if let Some(Target::Mesh(m)) = target {
        m.stop();
    }
    rt.shutdown_background();
    let (journal, exit) = result?;
    finish(&journal, exit, &a, out)
}

fn strategy(s: Strategy) -> RollbackStrategy {
    match s {
        Strategy::Always => RollbackStrategy::Always,
        Strategy::Never => RollbackStrategy::Never,
        Strategy::Deviated => RollbackStrategy::Deviated,
        Strategy::Default => RollbackStrategy::Default,
    }
}

/// The longest the experiment plans to take: pauses and load durations.
fn planned(exp: &Experiment) -> Duration {
    exp.all()
        .map(|a| {
            let load = match &a.provider {
                Provider::Load(l) => match l.stop {
                    crate::experiment::model::LoadStop::Duration(d) => d,
                    crate::experiment::model::LoadStop::Requests(_) => Duration::from_secs(60),
                },
                _ => Duration::ZERO,
            };
            a.pause_before.unwrap_or_default() + a.pause_after.unwrap_or_default() + load
        })
        .sum()
}

/// Every http and load URL of the experiment goes somewhere on the mesh (exit 2
/// before anything runs otherwise).
fn check_mesh_urls(exp: &Experiment, st: &crate::mesh::state::MeshState) -> CliResult<()> {
    for a in exp.all() {
        let url = match &a.provider {
            Provider::Http(h) => &h.url,
            Provider::Load(l) => &l.url,
            _ => continue,
        };
        mesh_url(url, st).map_err(|e| Failure::input(anyhow!("{}: {:?}: {e}", a.at, a.name)))?;
    }
    Ok(())
}

struct Printer<'a> {
    w: &'a mut (dyn Write + Send),
    failed: Option<std::io::Error>,
}

impl Printer<'_> {
    fn line(&mut self, s: &str) {
        if self.failed.is_none()
            && let Err(e) = writeln!(self.w, "{s}")
        {
            self.failed = Some(e);
        }
    }
}

impl Observer for Printer<'_> {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Section(s) => self.line(&s),
            Event::Note(n) => self.line(&format!("note: {n}")),
            Event::Done {
                kind,
                name,
                record,
                summary,
            } => {
                let ok = match record.tolerance_met {
                    Some(m) => m,
                    None => record.status == crate::experiment::journal::RunStatus::Succeeded,
                };
                let mark = if ok { "✓" } else { "✗" };
                self.line(&format!(
                    "  {mark} {:<6} {name}  {:.2}s  {summary}",
                    kind.as_str(),
                    record.duration
                ));
            }
        }
    }
}

/// Writes the journal, prints the verdict, maps the exit.
fn finish(
    j: &Journal,
    exit: crate::experiment::Exit,
    a: &RunArgs,
    out: &mut impl Write,
) -> CliResult {
    if let Some(p) = &a.journal {
        let text = serde_json::to_vec_pretty(j)
            .map_err(|e| Failure::target(anyhow!("cannot encode the journal: {e}")))?;
        std::fs::write(p, text).map_err(|e| {
            Failure::target(anyhow!("cannot write the journal {}: {e}", p.display()))
        })?;
    }
    let written = match a.output {
        RunOutput::Json => serde_json::to_string_pretty(j)
            .map_err(|e| Failure::target(anyhow!("cannot encode the journal: {e}")))
            .map(|t| writeln!(out, "{t}"))?,
        RunOutput::Text => {
            let status = serde_json::to_value(j.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            writeln!(
                out,
                "verdict: {} (status {status}, deviated {})",
                j.meshdrill.verdict, j.deviated
            )
        }
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(super::io_err(e));
    }
    match exit {
        crate::experiment::Exit::Held => Ok(Exit::Ok),
        crate::experiment::Exit::NotMet => Ok(Exit::SloViolated),
        crate::experiment::Exit::Failed => Err(Failure::target(anyhow!("{}", j.meshdrill.verdict))),
        crate::experiment::Exit::Interrupted => {
            Err(Failure::interrupted(anyhow!("{}", j.meshdrill.verdict)))
        }
    }
}
