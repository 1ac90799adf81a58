//! Where a change goes — a manifest file (`-f`), a local mesh (`--mesh`) or a cluster —
//! behind one interface: plan (a dry run), apply, clear (a rollback), read the current
//! object, list drills, recover. Every command that changes a VirtualService, and the
//! drill runner, go through [`Target`], so a flag means the same on every target or is
//! refused.
//!
//! What it owns: choosing the object (`name`, `-n`), carrying out what
//! [`crate::istio`] plans on the chosen target, and the rollback's persistence (a
//! cluster rollback tries again through 429, 5xx and timeouts). What it must not do:
//! print (it returns values), or decide when to roll back (the runner does).

mod file;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use json_patch::Patch;
use serde_json::Value;

pub use file::FileTarget;

use crate::cancel::Cancel;
use crate::cluster::{self, Cluster, ConnectOptions, VsApi};
use crate::istio::{Change, DrillInfo, DrillRecord, RecordMeta, RouteSelector, read_record};
use crate::mesh::{MeshDir, MeshError, MeshOptions, MeshSpec, MeshStats, RunningMesh};

/// Errors of a target. [`Error::is_input`] tells the user's input (exit 2) from the
/// target's failure (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster refused, failed or could not be reached.
    #[error(transparent)]
    Cluster(cluster::Error),
    /// The local mesh failed (or the input names something it does not have).
    #[error(transparent)]
    Mesh(MeshError),
    /// A manifest file cannot be used as asked (`file:line: what`).
    #[error("{0}")]
    Input(String),
    /// The operation does not exist on this kind of target.
    #[error("{what} is not possible on {target}: {hint}")]
    Unsupported {
        what: String,
        target: String,
        hint: String,
    },
    /// A mesh operation's worker thread died (a bug).
    #[error("the local mesh operation did not finish: {0}")]
    Join(String),
}

impl Error {
    /// Whether the user's input (not the target) is at fault.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Cluster(e) => e.is_input(),
            Error::Mesh(e) => e.is_input(),
            Error::Input(_) | Error::Unsupported { .. } => true,
            Error::Join(_) => false,
        }
    }

    /// A signal came before anything was sent: nothing was changed.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            Error::Cluster(cluster::Error::Interrupted { .. })
                | Error::Mesh(MeshError::Interrupted)
        )
    }
}

/// The kind of a target, for messages and for refusing what a kind cannot do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    File,
    Mesh,
    Cluster,
}

/// A change planned or carried out on one VirtualService.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The namespace the VirtualService is in.
    pub namespace: String,
    /// The object after the change: as the target returned it, or as planned.
    pub object: Value,
    /// The guarded RFC 6902 patch (empty when nothing changes).
    pub patch: Patch,
    /// Indices of the routes changed.
    pub routes: Vec<usize>,
    pub warnings: Vec<String>,
    /// The drill record the object carries after the change (`None` after a clear
    /// that found nothing to clear).
    pub record: Option<DrillRecord>,
    /// Local mesh: the route version Envoy confirmed, and how long it took.
    pub envoy: Option<(u64, Duration)>,
}

/// The outcome of a rollback of one VirtualService (the same on every target).
pub use crate::cluster::Cleared;

/// A local mesh: one this process started (stopped with the target) or one running in
/// a `mesh up --dir` directory.
#[derive(Debug, Clone)]
pub struct MeshTarget {
    dir: MeshDir,
    owned: Option<Arc<Mutex<RunningMesh>>>,
}

/// A cluster and the VirtualService API version it serves.
pub struct ClusterTarget {
    pub cluster: Cluster,
    pub api: VsApi,
}

/// Where changes go. One per command or drill, never stored in bulk: the size of the
/// cluster variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    File(FileTarget),
    Mesh(MeshTarget),
    Cluster(ClusterTarget),
}

// === impl MeshTarget ===

impl MeshTarget {
    /// The mesh running in `dir` (started by `meshdrill mesh up --dir DIR`).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        Ok(Self {
            dir: MeshDir::open(dir).map_err(Error::Mesh)?,
            owned: None,
        })
    }

    /// Starts a mesh owned by this target (blocking until it is ready; `opts.cancel`
    /// abandons the start-up). Stop it with [`MeshTarget::stop`]; it also stops when
    /// the last clone is dropped, and dies with the process.
    pub fn start(spec: MeshSpec, opts: MeshOptions) -> Result<Self, Error> {
        let mesh = RunningMesh::start(spec, opts).map_err(Error::Mesh)?;
        let dir = MeshDir::open(mesh.dir()).map_err(Error::Mesh)?;
        Ok(Self {
            dir,
            owned: Some(Arc::new(Mutex::new(mesh))),
        })
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:PORT` of the ingress.
    pub fn ingress_url(&self) -> Result<String, Error> {
        Ok(self.dir.state().map_err(Error::Mesh)?.ingress_url())
    }

    /// The mesh's state: ports, replicas (alive or killed), the spec as it runs now.
    pub fn state(&self) -> Result<crate::mesh::state::MeshState, Error> {
        self.dir.state().map_err(Error::Mesh)
    }

    /// The mesh as it runs now: services, VirtualServices with their drill records.
    pub fn spec(&self) -> Result<MeshSpec, Error> {
        Ok(self.dir.state().map_err(Error::Mesh)?.spec)
    }

    /// Translation warnings of an owned mesh at start.
    pub fn warnings(&self) -> Vec<String> {
        self.owned
            .as_ref()
            .and_then(|m| m.lock().ok().map(|m| m.warnings().to_vec()))
            .unwrap_or_default()
    }

    /// The Envoy version the mesh runs (`1.40.0`), from its admin `/server_info`.
    pub async fn envoy_version(&self) -> Option<String> {
        let dir = self.dir.clone();
        let info = blocking(move || {
            let st = dir.state()?;
            crate::mesh::envoy::get_json(st.admin, "/server_info")
        })
        .await
        .ok()?;
        let v = info.get("version")?.as_str()?;
        Some(v.split('/').nth(1).unwrap_or(v).to_string())
    }

    /// Envoy's counters and the access log, cumulative.
    pub async fn stats(&self) -> Result<MeshStats, Error> {
        let dir = self.dir.clone();
        blocking(move || dir.stats()).await
    }

    /// Kills replicas of `service` (all, or one) with SIGKILL, like a crashed pod.
    pub async fn kill(&self, service: &str, replica: Option<usize>) -> Result<Vec<usize>, Error> {
        let service = service.to_string();
        match &self.owned {
            Some(m) => {
                let m = m.clone();
                blocking(move || {
                    m.lock()
                        .map_err(|_| MeshError::Control("the mesh lock is poisoned".into()))?
                        .kill(&service, replica)
                })
                .await
            }
            None => {
                let dir = self.dir.clone();
                blocking(move || dir.kill(&service, replica)).await
            }
        }
    }

    /// Starts replicas of `service` (all, or one) again on their ports.
    pub async fn restart(
        &self,
        service: &str,
        replica: Option<usize>,
    ) -> Result<Vec<usize>, Error> {
        let service = service.to_string();
        match &self.owned {
            Some(m) => {
                let m = m.clone();
                blocking(move || {
                    m.lock()
                        .map_err(|_| MeshError::Control("the mesh lock is poisoned".into()))?
                        .restart(&service, replica)
                })
                .await
            }
            None => {
                let dir = self.dir.clone();
                blocking(move || dir.request_restart(&service, replica)).await
            }
        }
    }

    /// Stops an owned mesh (every process, its files); a mesh run by `mesh up` is
    /// left running.
    pub fn stop(self) {
        if let Some(m) = self.owned
            && let Ok(m) = Arc::try_unwrap(m)
            && let Ok(m) = m.into_inner()
        {
            let _ = m.stop();
        }
    }
}

/// Runs a blocking mesh operation off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MeshError> + Send + 'static,
) -> Result<T, Error> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h
            .spawn_blocking(f)
            .await
            .map_err(|e| Error::Join(e.to_string()))?
            .map_err(Error::Mesh),
        Err(_) => f().map_err(Error::Mesh),
    }
}

// === impl ClusterTarget ===

impl ClusterTarget {
    /// Connects and discovers the VirtualService API. A cancellation of `stop` before
    /// both are done ends it with [`cluster::Error::Interrupted`] (nothing was sent
    /// that changes anything). Warnings (e.g. TLS checks off) are in
    /// `cluster.warnings`.
    pub async fn connect(
        opts: &ConnectOptions,
        stop: Option<&Cancel>,
        what: &str,
    ) -> Result<Self, Error> {
        Self::connect_with(opts, stop, what, &|k| std::env::var(k).ok()).await
    }

    /// [`ClusterTarget::connect`] with the `KUBERNETES_*` variables looked up by `env`
    /// (an experiment's secrets, then the environment, as chaostoolkit does).
    pub async fn connect_with(
        opts: &ConnectOptions,
        stop: Option<&Cancel>,
        what: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let setup = async {
            let cluster = Cluster::connect_with(opts, env)
                .await
                .map_err(Error::Cluster)?;
            let api = cluster.virtual_services().await.map_err(Error::Cluster)?;
            Ok(Self { cluster, api })
        };
        match stop {
            None => setup.await,
            Some(stop) => tokio::select! {
                r = setup => r,
                () = stop.cancelled() => Err(Error::Cluster(cluster::Error::Interrupted {
                    namespace: opts.namespace.clone().unwrap_or_else(|| "(default namespace)".into()),
                    name: what.to_string(),
                })),
            },
        }
    }

    /// Plans `change` on the object as it is now and (unless `dry_run`) sends the
    /// guarded patch.
    #[allow(clippy::too_many_arguments)]
    async fn change(
        &self,
        ns: &str,
        name: &str,
        selector: &RouteSelector,
        change: &Change,
        meta: &RecordMeta,
        stop: Option<&Cancel>,
        dry_run: bool,
    ) -> Result<Changed, Error> {
        let a = self
            .cluster
            .apply_change(&self.api, ns, name, selector, change, meta, dry_run, stop)
            .await
            .map_err(Error::Cluster)?;
        Ok(Changed {
            namespace: ns.to_string(),
            object: a.object,
            patch: a.patch,
            routes: a.routes,
            warnings: a.warnings,
            record: Some(a.record),
            envoy: None,
        })
    }

    /// After a PATCH that got no answer in time ([`cluster::Error::MayStillApply`]):
    /// reads the object a few times (bounded, about 5 s); if the change shows up,
    /// rolls it back. `Ok(true)`: it landed and was rolled back; `Ok(false)`: it did
    /// not show up.
    pub async fn settle_late_landing(
        &self,
        ns: &str,
        name: &str,
        run_id: &str,
        budget: Duration,
    ) -> Result<bool, Error> {
        const POLLS: usize = 5;
        for _ in 0..POLLS {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Ok(now) = self.cluster.get_vs(&self.api, ns, name).await else {
                continue;
            };
            if !matches!(read_record(&now), Ok(Some(r)) if r.run_id == run_id) {
                continue;
            }
            return self
                .cluster
                .rollback(&self.api, ns, name, budget, false, |e, wait| {
                    tracing::warn!(
                        "rollback of {ns}/{name} not done yet ({e}); trying again in {:.1}s",
                        wait.as_secs_f64()
                    );
                })
                .await
                .map(|_| true)
                .map_err(Error::Cluster);
        }
        Ok(false)
    }
}

// === impl Target ===

impl Target {
    pub fn kind(&self) -> Kind {
        match self {
            Target::File(_) => Kind::File,
            Target::Mesh(_) => Kind::Mesh,
            Target::Cluster(_) => Kind::Cluster,
        }
    }

    /// `mesh /tmp/shop`, `cluster https://127.0.0.1:6443`, `file vs.yaml`.
    pub fn label(&self) -> String {
        match self {
            Target::File(f) => format!("file {}", f.path.display()),
            Target::Mesh(m) => format!("local mesh {}", m.path().display()),
            Target::Cluster(c) => format!("cluster {}", c.cluster.server),
        }
    }

    /// The namespace a VirtualService is looked up in when the step gives none
    /// (`None` on a mesh: a unique name in any namespace).
    pub fn default_namespace(&self) -> Option<&str> {
        match self {
            Target::Cluster(c) => Some(&c.cluster.namespace),
            _ => None,
        }
    }

    fn cluster_ns<'a>(c: &'a ClusterTarget, ns: Option<&'a str>) -> &'a str {
        ns.unwrap_or(&c.cluster.namespace)
    }

    /// Plans `change` (or a clear, `None`) on the object as it is now and returns what
    /// would be sent: changes nothing.
    pub async fn plan(
        &self,
        name: &str,
        ns: Option<&str>,
        selector: &RouteSelector,
        change: Option<&Change>,
        meta: &RecordMeta,
    ) -> Result<Changed, Error> {
        match self {
            Target::File(f) => f.plan(name, ns, selector, change, meta),
            Target::Mesh(m) => {
                let (dir, name_, ns_, sel, change_, meta_) = (
                    m.dir.clone(),
                    name.to_string(),
                    ns.map(str::to_string),
                    selector.clone(),
                    change.cloned(),
                    meta.clone(),
                );
                let p = blocking(move || {
                    dir.plan(&name_, ns_.as_deref(), &sel, change_.as_ref(), &meta_)
                })
                .await?;
                Ok(Changed {
                    namespace: crate::mesh::control::vs_namespace(&p.before).to_string(),
                    object: p.after,
                    patch: p.patch,
                    routes: p.routes,
                    warnings: p.warnings,
                    record: p.record,
                    envoy: None,
                })
            }
            Target::Cluster(c) => {
                let ns = Self::cluster_ns(c, ns);
                match change {
                    Some(change) => c.change(ns, name, selector, change, meta, None, true).await,
                    None => {
                        let cl = c
                            .cluster
                            .clear(&c.api, ns, name, true, meta.force)
                            .await
                            .map_err(Error::Cluster)?;
                        Ok(cleared_to_changed(ns, cl))
                    }
                }
            }
        }
    }

    /// Carries out `change` (or a clear, `None`). `stop` (cluster): a cancellation
    /// before the patch is sent ends it with nothing changed. A file target changes
    /// nothing: the result is the plan.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        name: &str,
        ns: Option<&str>,
        selector: &RouteSelector,
        change: Option<&Change>,
        meta: &RecordMeta,
        stop: Option<&Cancel>,
    ) -> Result<Changed, Error> {
        match self {
            Target::File(f) => f.plan(name, ns, selector, change, meta),
            Target::Mesh(m) => {
                let (dir, name_, ns_, sel, change_, meta_) = (
                    m.dir.clone(),
                    name.to_string(),
                    ns.map(str::to_string),
                    selector.clone(),
                    change.cloned(),
                    meta.clone(),
                );
                let a = blocking(move || {
                    dir.apply(&name_, ns_.as_deref(), &sel, change_.as_ref(), &meta_)
                })
                .await?;
                let record = read_record(&a.object).ok().flatten();
                Ok(Changed {
                    namespace: crate::mesh::control::vs_namespace(&a.object).to_string(),
                    record,
                    object: a.object,
                    patch: a.patch,
                    routes: a.routes,
                    warnings: a.warnings,
                    envoy: a.changed.then_some((a.version, a.confirmed_in)),
                })
            }
            Target::Cluster(c) => {
                let ns = Self::cluster_ns(c, ns);
                match change {
                    Some(change) => {
                        c.change(ns, name, selector, change, meta, stop, false)
                            .await
                    }
                    None => {
                        let cl = self
                            .restore(name, Some(ns), rollback_budget(), meta.force)
                            .await?;
                        Ok(cleared_to_changed(ns, cl))
                    }
                }
            }
        }
    }

    /// Rolls back everything meshdrill changed on the VirtualService. On a cluster it
    /// tries again through 429, 5xx and timeouts for about `budget` (re-read and
    /// re-planned each time, so it cannot apply twice); a 404 is [`Cleared::Gone`].
    pub async fn clear(
        &self,
        name: &str,
        ns: Option<&str>,
        budget: Duration,
    ) -> Result<Cleared, Error> {
        self.restore(name, ns, budget, false).await
    }

    /// [`Target::clear`]; `force` (`clear --force`) restores meshdrill's fields over
    /// edits made since ([`crate::istio::plan_clear`]).
    async fn restore(
        &self,
        name: &str,
        ns: Option<&str>,
        budget: Duration,
        force: bool,
    ) -> Result<Cleared, Error> {
        match self {
            Target::File(f) => Ok(f.clear(name, ns, force)?),
            Target::Mesh(m) => {
                let (dir, name_, ns_) = (m.dir.clone(), name.to_string(), ns.map(str::to_string));
                let before = {
                    let (dir, name_, ns_) = (dir.clone(), name_.clone(), ns_.clone());
                    blocking(move || dir.virtual_service(&name_, ns_.as_deref())).await?
                };
                let record = match read_record(&before) {
                    Ok(Some(r)) => r,
                    Ok(None) => return Ok(Cleared::Nothing { object: before }),
                    Err(e) => return Err(Error::Mesh(MeshError::Plan(e))),
                };
                let meta = RecordMeta {
                    force,
                    ..clear_meta()
                };
                let a = blocking(move || {
                    dir.apply(&name_, ns_.as_deref(), &RouteSelector::All, None, &meta)
                })
                .await?;
                Ok(Cleared::Restored {
                    object: a.object,
                    patch: a.patch,
                    record,
                    overwritten: a.warnings,
                })
            }
            Target::Cluster(c) => {
                let ns = Self::cluster_ns(c, ns);
                let r = c
                    .cluster
                    .rollback(&c.api, ns, name, budget, force, |e, wait| {
                        tracing::warn!(
                            "rollback of {ns}/{name} not done yet ({e}); trying again in {:.1}s",
                            wait.as_secs_f64()
                        );
                    })
                    .await
                    .map_err(Error::Cluster)?;
                Ok(r)
            }
        }
    }

    /// The VirtualService as it is now.
    pub async fn current(&self, name: &str, ns: Option<&str>) -> Result<Value, Error> {
        match self {
            Target::File(f) => f.current(name, ns),
            Target::Mesh(m) => {
                let (dir, name_, ns_) = (m.dir.clone(), name.to_string(), ns.map(str::to_string));
                blocking(move || dir.virtual_service(&name_, ns_.as_deref())).await
            }
            Target::Cluster(c) => c
                .cluster
                .get_vs(&c.api, Self::cluster_ns(c, ns), name)
                .await
                .map_err(Error::Cluster),
        }
    }

    /// VirtualServices that carry a drill record, in `ns` (`None`: every namespace).
    pub async fn drills(&self, ns: Option<&str>) -> Result<Vec<DrillInfo>, Error> {
        match self {
            Target::File(f) => Ok(f.drills(ns)),
            Target::Mesh(m) => {
                let (dir, ns_) = (m.dir.clone(), ns.map(str::to_string));
                blocking(move || dir.drills(ns_.as_deref())).await
            }
            Target::Cluster(c) => c.cluster.drills(&c.api, ns).await.map_err(Error::Cluster),
        }
    }
}

fn cleared_to_changed(ns: &str, c: Cleared) -> Changed {
    let (object, patch, record, warnings) = match c {
        Cleared::Nothing { object } => (object, Patch(Vec::new()), None, Vec::new()),
        Cleared::Gone => (Value::Null, Patch(Vec::new()), None, Vec::new()),
        Cleared::Restored {
            object,
            patch,
            record,
            overwritten,
        } => (object, patch, Some(record), overwritten),
    };
    Changed {
        namespace: ns.to_string(),
        object,
        patch,
        routes: Vec::new(),
        warnings,
        record,
        envoy: None,
    }
}

/// How long a cluster rollback keeps trying through 429/5xx/no answer: 2 minutes, or
/// `MESHDRILL_ROLLBACK_DEADLINE` (a Go duration; meant for tests).
pub fn rollback_budget() -> Duration {
    std::env::var("MESHDRILL_ROLLBACK_DEADLINE")
        .ok()
        .and_then(|s| crate::istio::types::parse_go_duration(&s))
        .unwrap_or(Duration::from_secs(120))
}

/// The identity a clear needs (a clear writes no record; only its time is read).
fn clear_meta() -> RecordMeta {
    RecordMeta {
        run_id: String::new(),
        owner: crate::istio::Owner::current(),
        now: jiff::Timestamp::now(),
        ttl: Duration::from_secs(1),
        stacking: crate::istio::Stacking::Any,
        force: false,
    }
}
