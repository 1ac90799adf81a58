//! Changes to a running mesh through its state directory — from the process that runs
//! it or from another one (`meshdrill fault ... --mesh DIR`): plan the change on the
//! stored VirtualService with [`crate::istio::plan_change`] / [`crate::istio::plan_clear`]
//! (so the `meshdrill.io/drill` record lives on it exactly as on a file), re-translate,
//! write the route configuration with write + rename, and confirm that Envoy runs the
//! new version before reporting success. A rejection leaves the old version serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use json_patch::Patch;
use serde_json::Value;

use super::MeshError;
use super::envoy::{self, EnvoyFiles};
use super::process;
use super::spec::MeshSpec;
use super::state::{MeshState, StateDir};
use super::stats::{Baseline, MeshStats};
use super::translate::{self, Layout, discovery_response, sidecar_listener};
use crate::istio::{
    Change, DrillInfo, RecordMeta, RouteSelector, owner_gone, plan_change, plan_clear, read_record,
};

/// How long Envoy may take to confirm a route update.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of a live change.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The VirtualService after the change (with its drill record).
    pub object: Value,
    /// The RFC 6902 patch applied to it (empty when nothing changed).
    pub patch: Patch,
    /// Indices of the routes changed.
    pub routes: Vec<usize>,
    /// Planner and translation warnings (e.g. a fault and retries on one route).
    pub warnings: Vec<String>,
    /// The route configuration version Envoy confirmed (unchanged if nothing changed).
    pub version: u64,
    /// Whether Envoy's configuration changed.
    pub changed: bool,
    /// Time from writing the files to Envoy's confirmation.
    pub confirmed_in: Duration,
}

/// A mesh's state directory, as later commands see it.
#[derive(Debug, Clone)]
pub struct MeshDir {
    dir: StateDir,
}

/// The translation layout of a running mesh.
pub fn layout(dir: &Path, st: &MeshState) -> Layout {
    let files = EnvoyFiles::new(dir);
    Layout {
        rds_dir: files.rds_dir,
        access_log: StateDir::new(dir).access_log(),
        replica_ports: st.replica_ports.clone(),
        inbound_ports: st.inbound_ports.clone(),
    }
}

/// Listener (hop) names of a mesh.
pub fn hops(spec: &MeshSpec) -> Vec<String> {
    translate::ingress_listeners(spec)
        .into_iter()
        .map(|l| l.name)
        .chain(spec.service_names().into_iter().map(sidecar_listener))
        .collect()
}

/// A VirtualService's namespace: `metadata.namespace`, else `default` (where
/// `kubectl apply` without `-n` puts it; the translation reads it the same way).
pub fn vs_namespace(vs: &Value) -> &str {
    vs.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
}

fn vs_name(vs: &Value) -> &str {
    vs.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn vs_names(spec: &MeshSpec) -> String {
    let names: Vec<String> = spec
        .virtual_services
        .iter()
        .map(|v| format!("{}/{}", vs_namespace(v), vs_name(v)))
        .collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// The index of the VirtualService `name` in `namespace` (`-n`). Without a namespace,
/// the one VirtualService of that name in any namespace; several are an error that
/// asks for `-n`, never a guess.
pub fn find_virtual_service(
    spec: &MeshSpec,
    name: &str,
    namespace: Option<&str>,
) -> Result<usize, MeshError> {
    let found: Vec<usize> = spec
        .virtual_services
        .iter()
        .enumerate()
        .filter(|(_, v)| vs_name(v) == name && namespace.is_none_or(|n| vs_namespace(v) == n))
        .map(|(i, _)| i)
        .collect();
    match found.as_slice() {
        [i] => Ok(*i),
        [] => Err(MeshError::NoSuchVirtualService {
            name: match namespace {
                Some(n) => format!("{n}/{name}"),
                None => name.to_string(),
            },
            have: vs_names(spec),
        }),
        several => Err(MeshError::AmbiguousVirtualService {
            name: name.to_string(),
            namespaces: several
                .iter()
                .filter_map(|i| spec.virtual_services.get(*i))
                .map(|v| vs_namespace(v).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The drill records on the VirtualServices of `spec` (in `namespace`, or all).
pub fn drills_in(spec: &MeshSpec, namespace: Option<&str>) -> Vec<DrillInfo> {
    let mut out: Vec<DrillInfo> = spec
        .virtual_services
        .iter()
        .filter(|v| namespace.is_none_or(|n| vs_namespace(v) == n))
        .filter_map(|v| {
            let record = match read_record(v) {
                Ok(None) => return None,
                Ok(Some(r)) => Ok(r),
                Err(e) => Err(e.to_string()),
            };
            Some(DrillInfo {
                namespace: vs_namespace(v).to_string(),
                name: vs_name(v).to_string(),
                record,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// What `recover` did with one drill: rolled back (`Some`), kept (`None`: neither
/// expired nor orphaned), or failed.
#[derive(Debug)]
pub struct Recovery {
    pub info: DrillInfo,
    /// Why it was rolled back (`expired …`, `owner pid 123 is gone`).
    pub why: String,
    pub outcome: Result<Option<Applied>, MeshError>,
}

/// A planned (not applied) change on a mesh VirtualService.
#[derive(Debug, Clone)]
pub struct Planned {
    pub index: usize,
    pub before: Value,
    pub after: Value,
    pub patch: Patch,
    pub routes: Vec<usize>,
    pub warnings: Vec<String>,
    pub record: Option<crate::istio::DrillRecord>,
}

/// Plans `change` (or a clear, `None`) on the VirtualService `name` of `spec`.
pub fn plan_on(
    spec: &MeshSpec,
    name: &str,
    namespace: Option<&str>,
    selector: &RouteSelector,
    change: Option<&Change>,
    meta: &RecordMeta,
) -> Result<Planned, MeshError> {
    let index = find_virtual_service(spec, name, namespace)?;
    let obj = &spec.virtual_services[index];
    let (patch, after, routes, warnings, record) = match change {
        Some(c) => {
            let p = plan_change(obj, selector, c, meta)?;
            (p.patch, p.after, p.routes, p.warnings, Some(p.record))
        }
        None => match plan_clear(obj, meta.force)? {
            Some(p) => (p.patch, p.after, Vec::new(), p.overwritten, Some(p.record)),
            None => (Patch(Vec::new()), obj.clone(), Vec::new(), Vec::new(), None),
        },
    };
    Ok(Planned {
        index,
        before: obj.clone(),
        after,
        patch,
        routes,
        warnings,
        record,
    })
}

impl MeshDir {
    /// Opens the state directory of a running mesh.
    pub fn open(dir: &Path) -> Result<Self, MeshError> {
        let d = Self {
            dir: StateDir::new(dir),
        };
        let st = d.dir.read()?;
        if !process::is_ours(&st.envoy) {
            return Err(MeshError::State {
                dir: dir.to_path_buf(),
                reason: format!(
                    "the mesh recorded here is not running (Envoy pid {} is gone); start it again with `meshdrill mesh up FILE --dir {}`",
                    st.envoy.pid,
                    dir.display()
                ),
            });
        }
        Ok(d)
    }

    pub fn path(&self) -> &Path {
        &self.dir.dir
    }

    pub fn state(&self) -> Result<MeshState, MeshError> {
        self.dir.read()
    }

    /// Applies `change` (or clears meshdrill's changes when `None`) to the
    /// VirtualService `name`, and waits until Envoy runs the result.
    pub fn apply(
        &self,
        name: &str,
        namespace: Option<&str>,
        selector: &RouteSelector,
        change: Option<&Change>,
        meta: &RecordMeta,
    ) -> Result<Applied, MeshError> {
        let _lock = self.dir.lock()?;
        let mut st = self.dir.read()?;
        let Planned {
            index: idx,
            after,
            patch,
            routes,
            mut warnings,
            ..
        } = plan_on(&st.spec, name, namespace, selector, change, meta)?;
        let mut spec = st.spec.clone();
        spec.virtual_services[idx] = after.clone();
        let (changed, t_warn, confirmed_in) = self.update_routes(&mut st, &spec)?;
        // The planner already warns about a fault and retries on one route.
        let planned_13705 = warnings.iter().any(|w| w.contains("istio#13705"));
        warnings.extend(
            t_warn
                .into_iter()
                .filter(|w| !(planned_13705 && w.contains("istio#13705"))),
        );
        st.spec = spec;
        self.dir.write(&st)?;
        Ok(Applied {
            object: after,
            patch,
            routes,
            warnings,
            version: st.rds_version,
            changed,
            confirmed_in,
        })
    }

    /// Plans `change` (or a clear) without applying it: what `--dry-run` shows.
    pub fn plan(
        &self,
        name: &str,
        namespace: Option<&str>,
        selector: &RouteSelector,
        change: Option<&Change>,
        meta: &RecordMeta,
    ) -> Result<Planned, MeshError> {
        let st = self.dir.read()?;
        plan_on(&st.spec, name, namespace, selector, change, meta)
    }

    /// The VirtualService as it is now (with its drill record, if any).
    pub fn virtual_service(&self, name: &str, namespace: Option<&str>) -> Result<Value, MeshError> {
        let st = self.dir.read()?;
        let i = find_virtual_service(&st.spec, name, namespace)?;
        Ok(st.spec.virtual_services[i].clone())
    }

    /// VirtualServices that carry a drill record (in `namespace`, or all).
    pub fn drills(&self, namespace: Option<&str>) -> Result<Vec<DrillInfo>, MeshError> {
        let st = self.dir.read()?;
        Ok(drills_in(&st.spec, namespace))
    }

    /// Rolls back every drill that expired by `now` (and, with `orphans`, every drill
    /// whose owning process on this host is gone). A drill whose owner still runs on
    /// this host (a `fault --wait` holding it) is left to that owner until `owner_grace`
    /// after its expiry: the owner rolls back on time itself and reports it, and the
    /// two never race for the same rollback. Returns what it did per VirtualService;
    /// one that fails does not stop the others.
    pub fn recover(
        &self,
        namespace: Option<&str>,
        orphans: bool,
        now: jiff::Timestamp,
        owner_grace: Duration,
    ) -> Result<Vec<Recovery>, MeshError> {
        let mut out = Vec::new();
        for d in self.drills(namespace)? {
            let why = match &d.record {
                Err(e) => {
                    out.push(Recovery {
                        outcome: Err(MeshError::Control(format!(
                            "VirtualService {}/{}: unreadable drill record: {e}",
                            d.namespace, d.name
                        ))),
                        why: String::new(),
                        info: d,
                    });
                    continue;
                }
                Ok(r)
                    if r.is_expired(now)
                        && (owner_gone(&r.owner) != Some(false)
                            || now.checked_sub(owner_grace).is_ok_and(|t| r.is_expired(t))) =>
                {
                    format!("expired {}", r.expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
                }
                Ok(r) if orphans && owner_gone(&r.owner) == Some(true) => {
                    format!("owner pid {} is gone", r.owner.pid)
                }
                Ok(_) => {
                    out.push(Recovery {
                        outcome: Ok(None),
                        why: String::new(),
                        info: d,
                    });
                    continue;
                }
            };
            let meta = RecordMeta {
                run_id: String::new(),
                owner: crate::istio::Owner::current(),
                now,
                ttl: Duration::from_secs(1),
                stacking: crate::istio::Stacking::Any,
                force: false,
            };
            let outcome = self
                .apply(
                    &d.name,
                    Some(&d.namespace),
                    &RouteSelector::All,
                    None,
                    &meta,
                )
                .map(Some);
            out.push(Recovery {
                info: d,
                why,
                outcome,
            });
        }
        Ok(out)
    }

    /// Replaces (or adds) a whole VirtualService, as `kubectl apply` would.
    pub fn put_virtual_service(&self, vs: Value) -> Result<Applied, MeshError> {
        let _lock = self.dir.lock()?;
        let mut st = self.dir.read()?;
        let name = vs
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = vs
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from);
        let mut spec = st.spec.clone();
        let ns = ns.unwrap_or_else(|| "default".into());
        match spec
            .virtual_services
            .iter()
            .position(|v| vs_name(v) == name && vs_namespace(v) == ns)
        {
            Some(i) => spec.virtual_services[i] = vs.clone(),
            None => spec.virtual_services.push(vs.clone()),
        }
        let (changed, warnings, confirmed_in) = self.update_routes(&mut st, &spec)?;
        st.spec = spec;
        self.dir.write(&st)?;
        Ok(Applied {
            object: vs,
            patch: Patch(Vec::new()),
            routes: Vec::new(),
            warnings,
            version: st.rds_version,
            changed,
            confirmed_in,
        })
    }

    /// Writes the route configurations of `spec` that differ from the running ones
    /// and waits for Envoy. On rejection, the previous files are written back.
    fn update_routes(
        &self,
        st: &mut MeshState,
        spec: &MeshSpec,
    ) -> Result<(bool, Vec<String>, Duration), MeshError> {
        let layout = layout(&self.dir.dir, st);
        let old = translate::translate(&st.spec, &layout);
        let new = translate::translate(spec, &layout);
        let changed: Vec<&String> = new
            .routes
            .iter()
            .filter(|(k, v)| old.routes.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        let fresh: Vec<String> = new
            .warnings
            .iter()
            .filter(|w| !old.warnings.contains(w))
            .cloned()
            .collect();
        if changed.is_empty() {
            return Ok((false, fresh, Duration::ZERO));
        }
        let files = EnvoyFiles::new(&self.dir.dir);
        let version = st.rds_version + 1;
        let log_offset = envoy::file_len(&files.log);
        let start = Instant::now();
        for name in &changed {
            write_route(&layout, name, version, &new.routes[*name])?;
        }
        let names: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
        match confirm(st, &files, &names, version, log_offset) {
            Ok(()) => {
                st.rds_version = version;
                Ok((true, fresh, start.elapsed()))
            }
            Err(e) => {
                // Put the files back to what Envoy still runs, under a new version so
                // that the files and Envoy agree again.
                let back = version + 1;
                for name in &names {
                    if let Some(r) = old.routes.get(name) {
                        let _ = write_route(&layout, name, back, r);
                    }
                }
                let _ = confirm(st, &files, &names, back, envoy::file_len(&files.log));
                st.rds_version = back;
                let _ = self.dir.write(st);
                Err(e)
            }
        }
    }

    /// Kills replicas of `service` (all, or one) with SIGKILL, like a crashed pod.
    /// Returns the replica indices killed.
    pub fn kill(&self, service: &str, replica: Option<usize>) -> Result<Vec<usize>, MeshError> {
        let _lock = self.dir.lock()?;
        let mut st = self.dir.read()?;
        let targets = pick_replicas(&st, service, replica)?;
        let mut killed = Vec::new();
        for r in st
            .replicas
            .iter_mut()
            .filter(|r| r.service == service && targets.contains(&r.index))
        {
            if let Some(p) = r.process.take()
                && process::kill_recorded(&p)
            {
                killed.push(r.index);
            }
        }
        self.dir.write(&st)?;
        Ok(killed)
    }

    /// Asks the process that owns the mesh to restart replicas, and waits until it did.
    pub fn request_restart(
        &self,
        service: &str,
        replica: Option<usize>,
    ) -> Result<Vec<usize>, MeshError> {
        let st = self.dir.read()?;
        let targets = pick_replicas(&st, service, replica)?;
        if !process::is_ours(&st.owner) {
            return Err(MeshError::State {
                dir: self.dir.dir.clone(),
                reason: format!(
                    "the meshdrill process that runs this mesh (pid {}) is gone",
                    st.owner.pid
                ),
            });
        }
        let ctl = self.dir.control();
        std::fs::create_dir_all(&ctl).map_err(MeshError::io(&ctl))?;
        let reqs: Vec<PathBuf> = targets
            .iter()
            .map(|i| self.dir.restart_request(service, *i))
            .collect();
        let failures: Vec<PathBuf> = targets
            .iter()
            .map(|i| self.dir.restart_failure(service, *i))
            .collect();
        for f in &failures {
            let _ = std::fs::remove_file(f);
        }
        for r in &reqs {
            std::fs::write(r, b"").map_err(MeshError::io(r))?;
        }
        let start = Instant::now();
        while reqs.iter().any(|r| r.exists()) {
            if start.elapsed() > Duration::from_secs(20) {
                for r in &reqs {
                    let _ = std::fs::remove_file(r);
                }
                return Err(MeshError::Control(format!(
                    "the meshdrill process that runs the mesh (pid {}) did not restart {service} within 20 s; only `meshdrill mesh up` serves restart requests",
                    st.owner.pid
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let failed: Vec<String> = targets
            .iter()
            .zip(&failures)
            .filter_map(|(i, f)| {
                let reason = std::fs::read_to_string(f).ok()?;
                let _ = std::fs::remove_file(f);
                Some(format!("{service} replica {i}: {}", reason.trim()))
            })
            .collect();
        if !failed.is_empty() {
            return Err(MeshError::Control(format!(
                "the mesh could not restart {}; its log is in {}",
                failed.join("; "),
                self.dir.dir.display()
            )));
        }
        Ok(targets)
    }

    /// Envoy's stats and the access log.
    pub fn stats(&self) -> Result<MeshStats, MeshError> {
        let st = self.dir.read()?;
        MeshStats::collect(st.admin, &self.dir.access_log(), &hops(&st.spec))
    }

    /// Saves the current counters as the baseline later reads subtract
    /// (`mesh stats --reset`); Envoy's own counters are left as they are.
    pub fn reset_stats(&self) -> Result<Baseline, MeshError> {
        let st = self.dir.read()?;
        let b = Baseline {
            taken_at: jiff::Timestamp::now(),
            envoy_pid: st.envoy.pid,
            stats: MeshStats::collect(st.admin, &self.dir.access_log(), &hops(&st.spec))?,
        };
        let text = serde_json::to_vec_pretty(&b)
            .map_err(|e| MeshError::Control(format!("cannot encode the stats baseline: {e}")))?;
        super::envoy::write_atomic(&self.dir.stats_baseline(), &text)?;
        Ok(b)
    }

    /// The stats since the baseline of [`reset_stats`](Self::reset_stats), and that
    /// baseline. `Ok(None)` when no baseline was saved for this mesh.
    pub fn stats_since_reset(&self) -> Result<Option<(MeshStats, Baseline)>, MeshError> {
        let st = self.dir.read()?;
        let p = self.dir.stats_baseline();
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(MeshError::io(&p)(e)),
        };
        let b: Baseline = serde_json::from_slice(&text).map_err(|e| MeshError::State {
            dir: self.dir.dir.clone(),
            reason: format!(
                "{} is not a stats baseline ({e}); save a new one with `meshdrill mesh stats --reset`",
                p.display()
            ),
        })?;
        if b.envoy_pid != st.envoy.pid {
            // Another Envoy's counters started from zero: nothing to subtract.
            return Ok(None);
        }
        let now = MeshStats::collect(st.admin, &self.dir.access_log(), &hops(&st.spec))?;
        Ok(Some((now.since(&b.stats), b)))
    }
}

/// Replica indices of `service` to act on.
pub fn pick_replicas(
    st: &MeshState,
    service: &str,
    replica: Option<usize>,
) -> Result<Vec<usize>, MeshError> {
    let all: Vec<usize> = st
        .replicas
        .iter()
        .filter(|r| r.service == service)
        .map(|r| r.index)
        .collect();
    // A service of the mesh with `replicas: 0` has nothing to act on; not "no such
    // service".
    if all.is_empty() && replica.is_none() && st.spec.service_names().contains(&service) {
        return Ok(Vec::new());
    }
    if all.is_empty() && !st.spec.service_names().contains(&service) {
        return Err(MeshError::NoSuchService {
            name: service.to_string(),
            have: st.spec.service_names().join(", "),
        });
    }
    match replica {
        None => Ok(all),
        Some(i) if all.contains(&i) => Ok(vec![i]),
        Some(i) => Err(MeshError::NoSuchReplica {
            service: service.to_string(),
            replica: i,
            count: all.len(),
        }),
    }
}

/// Writes one route configuration file (write + rename).
pub fn write_route(layout: &Layout, name: &str, version: u64, rc: &Value) -> Result<(), MeshError> {
    let body = discovery_response(version, std::slice::from_ref(rc));
    let text = serde_json::to_vec_pretty(&body)
        .map_err(|e| MeshError::Control(format!("cannot encode routes: {e}")))?;
    envoy::write_atomic(&layout.rds_file(name), &text)
}

/// Waits until every route configuration in `names` runs `version`, or Envoy logs a
/// rejection.
pub(crate) fn confirm(
    st: &MeshState,
    files: &EnvoyFiles,
    names: &[String],
    version: u64,
    log_offset: u64,
) -> Result<(), MeshError> {
    let want = version.to_string();
    let start = Instant::now();
    loop {
        let active = envoy::route_versions(st.admin)?;
        let pending: Vec<&String> = names
            .iter()
            .filter(|n| !active.iter().any(|(a, v)| a == *n && *v == want))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let route_config = pending
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let rejected = envoy::rejections_since(&files.log, log_offset);
        if let Some(reason) = rejected.last() {
            return Err(MeshError::EnvoyRejected {
                route_config,
                version,
                reason: reason.clone(),
            });
        }
        if start.elapsed() > CONFIRM_TIMEOUT {
            let now = active
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(MeshError::NotConfirmed {
                route_config,
                version,
                active: now,
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
