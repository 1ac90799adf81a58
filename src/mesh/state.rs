//! The state directory of a running mesh: what later commands (`--mesh DIR`) need to
//! find Envoy, the replicas and the current VirtualServices.
//!
//! ```text
//! DIR/.meshdrill-mesh       marks the directory as ours (reuse cleans only such dirs)
//! DIR/state.json            MeshState (written with write + rename)
//! DIR/lock                  taken (flock) around every read-modify-write
//! DIR/envoy-bootstrap.json  DIR/envoy-admin.address  DIR/envoy.log  DIR/access.log
//! DIR/xds/{lds,cds}.json    DIR/xds/rds/{ingress,mesh}.json
//! DIR/stats-baseline.json  the counters saved by `mesh stats --reset`
//! DIR/logs/<service>-<n>.log
//! DIR/control/restart-<service>-<n>   requests for the `mesh up` process
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MeshError;
use super::envoy::write_atomic;
use super::spec::MeshSpec;

/// Format version of `state.json`.
pub const FORMAT: u32 = 1;

/// A process meshdrill started: its PID and its command line at start, so a later
/// command only signals it while it is still that process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcRecord {
    pub pid: u32,
    pub cmdline: Vec<String>,
    /// The process group the process leads (replicas), signalled as a whole so a
    /// user command's own children go with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
}

/// One replica of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub service: String,
    pub index: usize,
    pub port: u16,
    /// `None` while killed.
    pub process: Option<ProcRecord>,
}

/// Everything about a running mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshState {
    pub format: u32,
    /// The meshdrill process that owns the mesh (`mesh up`, a test, `demo`).
    pub owner: ProcRecord,
    pub admin: SocketAddr,
    pub ingress_port: u16,
    pub sidecar_ports: BTreeMap<String, u16>,
    /// Loopback port of each extra ingress listener (`ingress_<port>`), by the
    /// Gateway server port it serves; the port-80 server is `ingress_port`.
    #[serde(default)]
    pub gateway_ports: BTreeMap<u16, u16>,
    pub envoy: ProcRecord,
    pub replicas: Vec<ReplicaRecord>,
    /// Version of the last route configuration written.
    pub rds_version: u64,
    pub replica_ports: BTreeMap<String, Vec<u16>>,
    /// Each replica's inbound sidecar listener port, in replica order (none for a
    /// mesh with `inboundSidecars: false`).
    #[serde(default)]
    pub inbound_ports: BTreeMap<String, Vec<u16>>,
    pub spec: MeshSpec,
}

impl MeshState {
    pub fn ingress_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingress_port)
    }

    /// `(Gateway server port, http://127.0.0.1:PORT)` of every ingress listener, the
    /// mesh file's ingress first.
    pub fn ingress_urls(&self) -> Vec<(u16, String)> {
        let primary = super::translate::ingress_listeners(&self.spec)
            .first()
            .map_or(80, |l| l.server_port);
        std::iter::once((primary, self.ingress_url()))
            .chain(
                self.gateway_ports
                    .iter()
                    .map(|(s, p)| (*s, format!("http://127.0.0.1:{p}"))),
            )
            .collect()
    }
}

/// Paths inside a state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
    /// Marks a directory as a mesh state directory, so reuse may clean it.
    pub fn marker(&self) -> PathBuf {
        self.dir.join(".meshdrill-mesh")
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// Held (flock) by the `mesh up` that owns the directory, for its whole life.
    pub fn owner_lock_file(&self) -> PathBuf {
        self.dir.join("owner.lock")
    }
    pub fn access_log(&self) -> PathBuf {
        self.dir.join("access.log")
    }
    /// The counters saved by `mesh stats --reset`.
    pub fn stats_baseline(&self) -> PathBuf {
        self.dir.join("stats-baseline.json")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn replica_log(&self, service: &str, index: usize) -> PathBuf {
        self.logs().join(format!("{service}-{index}.log"))
    }
    pub fn control(&self) -> PathBuf {
        self.dir.join("control")
    }
    pub fn restart_request(&self, service: &str, index: usize) -> PathBuf {
        self.control().join(format!("restart-{service}-{index}"))
    }
    /// Written by `mesh up` (the reason) before it removes a restart request it could
    /// not serve, so `mesh restart` can tell a failed restart from a done one.
    pub fn restart_failure(&self, service: &str, index: usize) -> PathBuf {
        self.control().join(format!("failed-{service}-{index}"))
    }

    /// Takes the directory's lock until the guard drops.
    pub fn lock(&self) -> Result<File, MeshError> {
        let p = self.lock_file();
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(MeshError::io(&p))?;
        f.lock().map_err(MeshError::io(&p))?;
        Ok(f)
    }

    pub fn read(&self) -> Result<MeshState, MeshError> {
        let p = self.state_file();
        let text = std::fs::read_to_string(&p).map_err(|e| MeshError::State {
            dir: self.dir.clone(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "no running mesh here (no state.json): start one with `meshdrill mesh up FILE --dir DIR`".into()
            } else {
                format!("cannot read state.json: {e}")
            },
        })?;
        let st: MeshState = serde_json::from_str(&text).map_err(|e| MeshError::State {
            dir: self.dir.clone(),
            reason: format!("state.json is not a meshdrill mesh state: {e}"),
        })?;
        if st.format != FORMAT {
            return Err(MeshError::State {
                dir: self.dir.clone(),
                reason: format!(
                    "state.json has format {}, this meshdrill reads {FORMAT}",
                    st.format
                ),
            });
        }
        Ok(st)
    }

    pub fn write(&self, st: &MeshState) -> Result<(), MeshError> {
        let text = serde_json::to_vec_pretty(st).map_err(|e| MeshError::State {
            dir: self.dir.clone(),
            reason: format!("cannot serialize state: {e}"),
        })?;
        write_atomic(&self.state_file(), &text)
    }
}
