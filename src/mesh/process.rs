//! Processes the mesh starts: Envoy and service replicas. Each dies with its owner
//! (parent-death signal, set from a dedicated spawner thread that lives as long as the
//! mesh), and a PID from a state file is signalled only while `/proc/PID/cmdline` still
//! shows the command meshdrill started.
//!
//! ## A replica's whole process tree dies with meshdrill
//!
//! The parent-death signal reaches only the process meshdrill spawned, not what a user
//! command starts itself (`sh -c 'sleep 600 & exec server'`). So each replica leads its
//! own process group (its children stay in it unless they call `setsid`/`setpgid`), and
//! a [`GroupGuard`] watches it: a tiny `/bin/sh` process without a parent-death signal,
//! blocked reading a pipe whose only write end is held by meshdrill (every descriptor
//! std opens is close-on-exec, so no other child inherits it). When meshdrill dies —
//! however, `kill -9` included — the kernel closes that end, the guard reads
//! end-of-file and runs `kill -s KILL -- -PGID`, taking every process left in the
//! replica's group, itself last. No root, cgroup or PID namespace is needed.
//!
//! The guard is itself a member of the replica's group: a process group ID is not
//! handed out again while any member lives, so the group the guard kills is always the
//! replica's, never a later group that reused the number, however long the guard has
//! waited (also after the replica died or was killed by `mesh kill` from another
//! process). The group is not the terminal's foreground group, so a Ctrl-C does not
//! reach it. On a normal stop (`mesh up` ending, `mesh kill`, `mesh restart`)
//! meshdrill signals the group itself — the guard goes with it — and reaps the guard.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::MeshError;
use super::spec::{ServiceSpec, Workload};
use super::state::ProcRecord;
use super::sys;

type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts processes from one long-lived thread, so their parent-death signal fires
/// when the mesh's owner goes away, not when some short-lived caller thread ends.
#[derive(Debug)]
pub struct Spawner {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("meshdrill-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    sys::die_with_parent(&mut cmd);
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok();
        Self {
            tx: Some(tx),
            thread,
        }
    }

    pub fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let gone = || std::io::Error::other("the spawner thread is gone");
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send((cmd, reply_tx))
            .map_err(|_| gone())?;
        reply_rx.recv().map_err(|_| gone())?
    }
}

impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Kills a replica's process group when meshdrill dies (see the module docs). Dropping
/// the guard disarms it: the watcher is killed and reaped, the rest of the group is
/// left alone.
#[derive(Debug)]
pub struct GroupGuard {
    watcher: Child,
}

/// The watcher's script: wait for end-of-file on stdin (meshdrill gone), then kill the
/// group given as `$0`. POSIX sh (dash, bash, busybox): `--` before the negative PID.
const GUARD_SCRIPT: &str =
    "trap '' HUP INT QUIT; while read -r _; do :; done; exec kill -s KILL -- -\"$0\"";

impl GroupGuard {
    /// Starts the watcher for process group `pgid`.
    pub fn watch(pgid: u32) -> std::io::Result<GroupGuard> {
        if pgid <= 1 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", GUARD_SCRIPT, &pgid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // In the replica's group: see the module docs. Fails (EPERM) if the group is
        // already empty, i.e. the replica died at once.
        std::os::unix::process::CommandExt::process_group(
            &mut cmd,
            i32::try_from(pgid)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?,
        );
        // Not through the spawner: a parent-death signal would kill the guard before
        // it could act.
        Ok(GroupGuard {
            watcher: cmd.spawn()?,
        })
    }

    /// The watcher's PID (for tests and diagnostics).
    pub fn pid(&self) -> u32 {
        self.watcher.id()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // Kill before the pipe closes (fields drop after this body): an end-of-file
        // now would make the watcher fire.
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
    }
}

/// The command line of a process, from `/proc/PID/cmdline`.
pub fn cmdline_of(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // a zombie or a kernel thread
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// The record of a process just started.
pub fn record(child: &Child, cmd: &Command) -> ProcRecord {
    let pid = child.id();
    let cmdline = cmdline_of(pid).unwrap_or_else(|| {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    });
    ProcRecord {
        pid,
        cmdline,
        pgid: None,
    }
}

/// Whether `rec.pid` is still the process meshdrill started.
pub fn is_ours(rec: &ProcRecord) -> bool {
    cmdline_of(rec.pid).is_some_and(|c| c == rec.cmdline)
}

/// Stops a recorded process that may not be our child (stale state, another
/// meshdrill): SIGTERM, then SIGKILL after `grace`. Does nothing unless [`is_ours`].
pub fn stop_recorded(rec: &ProcRecord, grace: Duration) {
    if !is_ours(rec) {
        return;
    }
    signal_recorded(rec, libc::SIGTERM);
    let start = Instant::now();
    while is_ours(rec) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The group too: the leader may have gone on SIGTERM and left its children.
    if is_ours(rec) || rec.pgid.is_some() {
        signal_recorded(rec, libc::SIGKILL);
    }
}

/// After a kill -9 of meshdrill the parent-death signal took each replica leader, but
/// not a user command's own children: they remain in the leader's process group.
/// Kills that group when its leader is gone and members remain (a PID in use as a
/// process group ID is not handed out again, so the members are the replica's).
pub fn kill_orphaned_group(rec: &ProcRecord) {
    let Some(g) = rec.pgid else { return };
    if is_ours(rec) || !group_has_members(g) {
        return;
    }
    let _ = sys::signal_group(g, libc::SIGKILL);
}

fn group_has_members(pgid: u32) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| {
                    let rest = st.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
}

/// Kills a recorded process (and its process group) at once, if it is still ours.
pub fn kill_recorded(rec: &ProcRecord) -> bool {
    is_ours(rec) && signal_recorded(rec, libc::SIGKILL)
}

/// Signals a recorded process's group when it leads one, else the process.
fn signal_recorded(rec: &ProcRecord, sig: libc::c_int) -> bool {
    match rec.pgid {
        Some(g) => sys::signal_group(g, sig).is_ok(),
        None => sys::signal(rec.pid, sig).is_ok(),
    }
}

/// Stops a replica, our child and the leader of its own process group: SIGTERM to
/// the group, SIGKILL to the group after `grace` (and to what the leader left
/// behind), then reaps it.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let pgid = child.id();
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = sys::signal_group(pgid, libc::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            // Children of the leader that ignored SIGTERM or outlived it.
            let _ = sys::signal_group(pgid, libc::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_group(child);
}

/// SIGKILLs a replica's whole process group (before reaping the leader, so the
/// group ID cannot have been reused), then reaps the leader.
pub fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = sys::signal_group(child.id(), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Stops one of our children: SIGTERM, SIGKILL after `grace`, then reaps it.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = sys::signal(child.id(), libc::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A free loopback port (bound and released; the kernel does not hand it out again
/// at once).
pub fn free_port() -> Result<u16, MeshError> {
    // A port is chosen here and bound later by Envoy or a replica. Ports the kernel
    // hands out for port 0 come from the ephemeral range, which every outgoing
    // connection on the machine also draws its local port from: under load (tests,
    // drills) such a port can be taken before it is bound. So pick outside that range,
    // checking each candidate with a bind, and fall back to port 0 only if that fails.
    let (lo, hi) = ephemeral_range();
    let mut candidates: Vec<(u16, u16)> = Vec::new();
    if lo > 10_000 {
        candidates.push((10_000, lo - 1));
    }
    if hi < 65_000 {
        candidates.push((hi + 1, 65_000));
    }
    let total: u32 = candidates.iter().map(|(a, b)| u32::from(b - a) + 1).sum();
    if total > 0 {
        for _ in 0..256 {
            let mut k = rand::random::<u32>() % total;
            let port = candidates
                .iter()
                .find_map(|(a, b)| {
                    let n = u32::from(b - a) + 1;
                    if k < n {
                        u16::try_from(u32::from(*a) + k).ok()
                    } else {
                        k -= n;
                        None
                    }
                })
                .unwrap_or(0);
            if port != 0 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(MeshError::io("127.0.0.1:0"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(MeshError::io("127.0.0.1:0"))
}

/// The kernel's ephemeral port range (Linux default 32768-60999).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or((32_768, 60_999))
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn free_ports_avoid_the_ephemeral_range() {
        let (lo, hi) = super::ephemeral_range();
        for _ in 0..50 {
            let p = super::free_port().expect("port");
            assert!(!(lo..=hi).contains(&p), "{p} in {lo}-{hi}");
            assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        }
    }
}

/// Waits until something accepts connections on `127.0.0.1:port`.
pub fn wait_listening(
    port: u16,
    child: &mut Child,
    timeout: Duration,
    cancel: Option<&crate::cancel::Cancel>,
) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        if cancel.is_some_and(crate::cancel::Cancel::is_cancelled) {
            return Err("interrupted".into());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("not listening after {} ms", timeout.as_millis()));
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// What a replica needs to know to start.
#[derive(Debug, Clone)]
pub struct ReplicaLaunch<'a> {
    pub entry: &'a ServiceSpec,
    pub index: usize,
    pub port: u16,
    /// The service's sidecar (outbound) listener.
    pub outbound_port: u16,
    /// The meshdrill binary that runs `mesh serve-demo`.
    pub exe: &'a Path,
    pub log: PathBuf,
}

/// The command of a replica: the demo service (`meshdrill mesh serve-demo ...`) or the
/// user's command with `{port}` replaced. Replicas learn their outbound listener from
/// `MESHDRILL_OUTBOUND` (`127.0.0.1:PORT`).
pub fn replica_command(l: &ReplicaLaunch<'_>) -> Result<Command, MeshError> {
    let mut cmd = match &l.entry.workload {
        Workload::Demo(cfg) => {
            let json = serde_json::to_string(cfg)
                .map_err(|e| MeshError::Control(format!("cannot encode demo config: {e}")))?;
            let mut c = Command::new(l.exe);
            c.args(["mesh", "serve-demo", "--service", &l.entry.name])
                .args(["--replica", &l.index.to_string()])
                .args(["--port", &l.port.to_string()])
                .args(["--outbound", &format!("127.0.0.1:{}", l.outbound_port)])
                .args(["--config", &json]);
            c
        }
        Workload::Command(argv) => {
            let port = l.port.to_string();
            let args: Vec<String> = argv.iter().map(|a| a.replace("{port}", &port)).collect();
            let Some((program, rest)) = args.split_first() else {
                return Err(MeshError::Control(format!(
                    "service {}: the command is empty",
                    l.entry.name
                )));
            };
            let mut c = Command::new(program);
            c.args(rest);
            c
        }
    };
    cmd.env(
        "MESHDRILL_OUTBOUND",
        format!("127.0.0.1:{}", l.outbound_port),
    )
    .env("MESHDRILL_SERVICE", &l.entry.name)
    .env("MESHDRILL_REPLICA", l.index.to_string())
    .env("PORT", l.port.to_string())
    .stdin(Stdio::null());
    // Its own process group, so stop and `mesh kill` reach the command's children.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&l.log)
        .map_err(MeshError::io(&l.log))?;
    let log2 = log.try_clone().map_err(MeshError::io(&l.log))?;
    cmd.stdout(log).stderr(log2);
    Ok(cmd)
}
