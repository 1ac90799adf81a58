use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

use super::{CliResult, Exit, Failure, io_err};
use crate::istio;
use crate::istio::manifest;

#[derive(Debug, Parser)]
pub struct ValidateArgs {
    /// Manifest files (YAML, multi-document, or JSON): VirtualServices, DestinationRules,
    /// Gateways, Mesh and Scenario files, and chaostoolkit experiment files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(a: ValidateArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    let mut bad = 0usize;
    for file in &a.files {
        // A chaostoolkit experiment (`chaos validate`): loaded as `run` loads it, with
        // the environment as it is now.
        if crate::experiment::file_is_experiment(file) {
            match crate::experiment::load(file, &Default::default()) {
                Ok(x) => {
                    writeln!(
                        out,
                        "{}: experiment {:?}: valid ({} hypothesis probe(s), {} method activities, {} rollback(s))",
                        file.display(),
                        x.title,
                        x.hypothesis.as_ref().map_or(0, |h| h.probes.len()),
                        x.method.len(),
                        x.rollbacks.len()
                    )
                    .map_err(io_err)?;
                    for n in &x.notes {
                        writeln!(err, "note: {n}").map_err(io_err)?;
                    }
                }
                Err(e) => {
                    bad += 1;
                    writeln!(err, "error: {e}").map_err(io_err)?;
                }
            }
            continue;
        }
        let docs = match manifest::read_file(file) {
            Ok(d) => d,
            Err(e) => {
                writeln!(err, "error: {e}").map_err(io_err)?;
                bad += 1;
                continue;
            }
        };
        // The local mesh refuses what Istio (or Envoy) rejects: a Mesh file with such
        // an object is reported once, on the object, not again by the mesh loader.
        let refused = docs
            .iter()
            .filter_map(istio::validate)
            .flatten()
            .any(|i| i.blocks_envoy());
        for d in &docs {
            let what = format!("{} {}", d.kind(), d.name());
            if let Some(issues) = istio::validate(d) {
                // Istio's verdict: errors fail, warnings are printed and pass.
                let errors = issues.iter().filter(|i| i.is_error()).count();
                for i in &issues {
                    writeln!(
                        err,
                        "{}: {}: {what}: {}: {}",
                        i.label(),
                        i.location,
                        i.field,
                        i.message
                    )
                    .map_err(io_err)?;
                }
                if errors == 0 {
                    let warned = match issues.len() {
                        0 => String::new(),
                        n => format!(" ({n} warning(s))"),
                    };
                    writeln!(out, "{}: {what}: valid{warned}", d.locate("")).map_err(io_err)?;
                }
                bad += errors;
            } else if d.kind() == "Mesh" && refused {
                bad += 1;
                writeln!(
                    err,
                    "error: {}: {what}: the local mesh refuses the Istio objects reported above",
                    d.locate("")
                )
                .map_err(io_err)?;
            } else if d.kind() == "Mesh" {
                // A mesh file is checked together with everything in the same file (its
                // VirtualServices and DestinationRules), as `mesh up` reads it.
                match crate::mesh::MeshSpec::from_documents(&docs) {
                    Ok(loaded) => {
                        writeln!(out, "{}: {what}: valid", d.locate("")).map_err(io_err)?;
                        for c in crate::mesh::chain::retry_chains(&loaded.spec)
                            .iter()
                            .filter(|c| c.hops.len() > 1 && c.amplification > 1)
                        {
                            writeln!(err, "warning: retries multiply along {}", c.describe())
                                .map_err(io_err)?;
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        writeln!(err, "error: {e}").map_err(io_err)?;
                    }
                }
            } else if crate::scenario::is_scenario(d) {
                // Relative mesh paths resolve against the scenario's directory.
                let base = file.parent().unwrap_or(std::path::Path::new("."));
                let checked = crate::scenario::parse_document(d, base).and_then(|s| {
                    match &s.target {
                        crate::scenario::TargetSpec::Mesh { file } => {
                            match crate::mesh::MeshSpec::load(std::slice::from_ref(file)) {
                                Ok(m) => crate::scenario::check_against_mesh(&s, &m.spec),
                                // The mesh file's own problems are its own lines.
                                Err(e) => {
                                    bad += 1;
                                    let _ = writeln!(err, "error: {e}");
                                    Ok(())
                                }
                            }
                        }
                        crate::scenario::TargetSpec::Cluster { .. } => Ok(()),
                    }
                });
                match checked {
                    Ok(()) => writeln!(out, "{}: {what}: valid", d.locate("")).map_err(io_err)?,
                    Err(e) => {
                        bad += 1;
                        writeln!(err, "error: {e}").map_err(io_err)?;
                    }
                }
            } else {
                writeln!(
                    out,
                    "{}: {what}: skipped (meshdrill validates VirtualServices, DestinationRules, Gateways, Mesh and Scenario files)",
                    d.locate("")
                )
                .map_err(io_err)?;
            }
        }
    }
    if bad > 0 {
        return Err(Failure::input(anyhow::anyhow!(
            "{bad} problem(s) found; see above"
        )));
    }
    Ok(Exit::Ok)
}
