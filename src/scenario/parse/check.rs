//! A parsed scenario checked against the mesh it will run on.

use serde_json::Value;

use super::ScenarioError;
use crate::istio::Change;
use crate::mesh::MeshSpec;
use crate::scenario::model::{FailureSource, Scenario, SearchOver, Step, StepKind, VsRef};

/// Checks the scenario against the mesh it will run on: every VirtualService a step
/// names exists there (in its namespace), every service a kill or restart names is a
/// mesh service and every replica index exists.
pub fn check_against_mesh(s: &Scenario, mesh: &MeshSpec) -> Result<(), ScenarioError> {
    for (list, steps) in [("spec.method", &s.method), ("spec.rollbacks", &s.rollbacks)] {
        for step in steps {
            check_step(list, step, mesh)?;
        }
    }
    Ok(())
}

fn check_step(list: &str, step: &Step, mesh: &MeshSpec) -> Result<(), ScenarioError> {
    let invalid = |rest: &str, message: String| ScenarioError::Invalid {
        location: step.at.clone(),
        field: format!("{list}[{}].{rest}", step.index),
        message,
    };
    let vs = |rest: &str, r: &VsRef| match missing_vs(r, mesh) {
        Some(message) => Err(invalid(rest, message)),
        None => Ok(()),
    };
    match &step.kind {
        StepKind::Change { vs: r, change, .. } => {
            let key = match change {
                Change::Delay(_) | Change::Abort(_) | Change::RemoveFault(_) => "fault",
                Change::Retries { .. } => "retries",
                Change::Timeout(_) => "timeout",
            };
            vs(&format!("{key}.virtualService"), r)
        }
        StepKind::Clear { vs: r } => vs("clear", r),
        StepKind::Hold(h) => match &h.retry_check {
            None => Ok(()),
            Some(rc) => {
                vs("hold.retryCheck.virtualService", &rc.vs)?;
                match &rc.failure {
                    FailureSource::Upstream(u) => vs("hold.retryCheck.upstream", u),
                    FailureSource::Rate(_) => Ok(()),
                }
            }
        },
        StepKind::Search(se) => match &se.over {
            SearchOver::Abort { vs: r, .. } => vs("search.abort.virtualService", r),
            SearchOver::Delay { vs: r, .. } => vs("search.delay.virtualService", r),
            SearchOver::FloodRate { .. } => Ok(()),
        },
        StepKind::Kill {
            service,
            selector,
            replica,
            count,
        } => {
            if selector.is_some() {
                return Err(invalid(
                    "kill.selector",
                    format!(
                        "selector is for cluster targets; on a mesh give service (one of: {})",
                        mesh.service_names().join(", ")
                    ),
                ));
            }
            let Some(service) = service else {
                return Ok(());
            };
            let n = replicas(service, mesh).map_err(|m| invalid("kill.service", m))?;
            if let Some(r) = replica
                && *r >= n
            {
                return Err(invalid("kill.replica", no_replica(service, *r, n)));
            }
            if let Some(c) = count
                && *c as usize > n
            {
                return Err(invalid(
                    "kill.count",
                    format!("count {c}, but {service} has {n} replica(s) in the mesh"),
                ));
            }
            Ok(())
        }
        StepKind::Restart { service, replica } => {
            let n = replicas(service, mesh).map_err(|m| invalid("restart.service", m))?;
            match replica {
                Some(r) if *r >= n => Err(invalid("restart.replica", no_replica(service, *r, n))),
                _ => Ok(()),
            }
        }
        StepKind::Pause(_) | StepKind::Flood(_) => Ok(()),
    }
}

/// Why `r` is not a VirtualService of the mesh, or `None` when it is.
fn missing_vs(r: &VsRef, mesh: &MeshSpec) -> Option<String> {
    let all: Vec<(&str, &str)> = mesh
        .virtual_services
        .iter()
        .map(|v| {
            let name = v
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ns = v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(&mesh.namespace);
            (name, ns)
        })
        .collect();
    let found = all
        .iter()
        .any(|(n, ns)| *n == r.name && r.namespace.as_deref().is_none_or(|want| want == *ns));
    if found {
        return None;
    }
    let list = if all.is_empty() {
        "none".to_string()
    } else {
        all.iter()
            .map(|(n, ns)| format!("{n} (namespace {ns})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(match &r.namespace {
        Some(ns) => format!(
            "no VirtualService {} in namespace {ns} of mesh {}; the mesh has: {list}",
            r.name, mesh.name
        ),
        None => format!(
            "no VirtualService {} in mesh {}; the mesh has: {list}",
            r.name, mesh.name
        ),
    })
}

/// The number of replicas of `service`, or why it is not a mesh service.
fn replicas(service: &str, mesh: &MeshSpec) -> Result<usize, String> {
    if !mesh.service_names().contains(&service) {
        return Err(format!(
            "no service {service} in mesh {}; it has: {}",
            mesh.name,
            mesh.service_names().join(", ")
        ));
    }
    Ok(mesh.replicas_of(service).len())
}

fn no_replica(service: &str, r: usize, n: usize) -> String {
    match n {
        0 => format!("{service} has no replicas in the mesh: replica {r} does not exist"),
        n => format!(
            "{service} has {n} replica(s), numbered 0 to {}: replica {r} does not exist",
            n - 1
        ),
    }
}
