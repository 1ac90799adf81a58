//! Helpers for local-mesh tests: start a mesh from YAML with the built binary as the
//! demo service, a bounded concurrent HTTP client (loopback only), and statistics.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshdrill::istio::{RecordMeta, RouteSelector};
use meshdrill::mesh::{MeshOptions, MeshSpec, RunningMesh};

static SERIAL: Mutex<()> = Mutex::new(());

/// One process-wide lock for the tests whose verdict a busy CPU can change: every test
/// that runs Envoy or a drill, and every load run judged on rates, latencies,
/// timeouts or schedules (or that loads the CPU for a while: full-speed or
/// multi-process runs). Such tests run one at a time; tests of files, of the fake API
/// server and short counted runs stay parallel.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a mesh from YAML text; it stops (and kills everything) when dropped, also
/// when the test panics.
pub fn start(yaml: &str) -> RunningMesh {
    start_in(yaml, None)
}

pub fn start_in(yaml: &str, dir: Option<&std::path::Path>) -> RunningMesh {
    let loaded = MeshSpec::parse(yaml, "test-mesh.yaml").expect("mesh yaml");
    RunningMesh::start(
        loaded.spec,
        MeshOptions {
            exe: Some(env!("CARGO_BIN_EXE_meshdrill").into()),
            dir: dir.map(Into::into),
            ..MeshOptions::default()
        },
    )
    .expect("mesh starts")
}

/// Starts a mesh in a temp dir, returning the error instead of panicking.
pub fn try_start(spec: MeshSpec) -> Result<RunningMesh, meshdrill::mesh::MeshError> {
    RunningMesh::start(
        spec,
        MeshOptions {
            exe: Some(env!("CARGO_BIN_EXE_meshdrill").into()),
            ..MeshOptions::default()
        },
    )
}

pub fn meta() -> RecordMeta {
    RecordMeta {
        run_id: "test00000000".into(),
        owner: meshdrill::istio::Owner::current(),
        now: jiff::Timestamp::now(),
        ttl: Duration::from_secs(600),
        stacking: meshdrill::istio::Stacking::Any,
    }
}

pub fn all() -> RouteSelector {
    RouteSelector::All
}

/// One request's outcome: status (0 = transport error) and latency.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: u16,
    /// The index of the demo replica that answered (from `x-meshdrill-replica`).
    pub replica: Option<u8>,
    pub latency: Duration,
    /// When it started, from the start of the run.
    pub at: Duration,
}

/// Sends up to `requests` GETs with `Host: host` over `concurrency` connections, for at
/// most `max_time`. Loopback only.
pub fn load(
    addr: SocketAddr,
    host: &str,
    path: &str,
    requests: usize,
    concurrency: usize,
    max_time: Duration,
) -> Vec<Outcome> {
    load_with(addr, host, path, &[], requests, concurrency, max_time)
}

/// [`load`] with extra request headers.
pub fn load_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    requests: usize,
    concurrency: usize,
    max_time: Duration,
) -> Vec<Outcome> {
    let progress = Arc::new(Progress::default());
    load_live(
        addr,
        host,
        path,
        headers,
        requests,
        concurrency,
        max_time,
        &progress,
    )
}

/// What a running [`load_live`] has done so far, and a way to stop it: tests wait on
/// requests seen (events), not on time passing.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicUsize,
    stop: AtomicBool,
    start: OnceLock<Instant>,
}

impl Progress {
    /// Requests completed so far.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Asks the load to stop after the requests in flight.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Time since the load started, on the clock of [`Outcome::at`] (zero before).
    pub fn elapsed(&self) -> Duration {
        self.start.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    /// Waits (bounded by `limit`) until at least `n` requests have completed; whether
    /// they have.
    pub fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.done() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.done() >= n
    }
}

/// [`load_with`] that reports to `progress` and stops early when asked to.
#[allow(clippy::too_many_arguments)]
pub fn load_live(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    requests: usize,
    concurrency: usize,
    max_time: Duration,
    progress: &Arc<Progress>,
) -> Vec<Outcome> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        addr.ip().is_loopback(),
        "tests send traffic to loopback only"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let budget = Arc::new(AtomicUsize::new(requests));
    let start = *progress.start.get_or_init(Instant::now);
    let uri = format!("http://{addr}{path}");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let client = client.clone();
            let budget = budget.clone();
            let uri = uri.clone();
            let host = host.to_string();
            let headers = headers.clone();
            let progress = progress.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while start.elapsed() < max_time
                    && !progress.stop.load(Ordering::SeqCst)
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_ok()
                {
                    let at = start.elapsed();
                    let t = Instant::now();
                    let mut b = http::Request::get(&uri).header(http::header::HOST, &host);
                    for (k, v) in &headers {
                        b = b.header(k, v);
                    }
                    let Ok(req) = b.body(Empty::<Bytes>::new()) else {
                        break;
                    };
                    let call = async {
                        let resp = client.request(req).await.ok()?;
                        let status = resp.status().as_u16();
                        let replica = resp
                            .headers()
                            .get("x-meshdrill-replica")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.rsplit('-').next())
                            .and_then(|i| i.parse::<u8>().ok());
                        resp.into_body().collect().await.ok()?;
                        Some((status, replica))
                    };
                    let (status, replica) = tokio::time::timeout(Duration::from_secs(10), call)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or((0, None));
                    out.push(Outcome {
                        status,
                        replica,
                        latency: t.elapsed(),
                        at,
                    });
                    progress.done.fetch_add(1, Ordering::SeqCst);
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all.sort_by_key(|o| o.at);
        all
    })
}

/// Share of outcomes with `status`.
pub fn share(out: &[Outcome], status: u16) -> f64 {
    out.iter().filter(|o| o.status == status).count() as f64 / out.len().max(1) as f64
}

/// The latency percentile `q` (0–1) in milliseconds.
pub fn percentile_ms(out: &[Outcome], q: f64) -> f64 {
    let mut v: Vec<f64> = out
        .iter()
        .map(|o| o.latency.as_secs_f64() * 1000.0)
        .collect();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// Whether `pid` still runs the command it ran when recorded.
pub fn alive(rec: &meshdrill::mesh::state::ProcRecord) -> bool {
    meshdrill::mesh::process::is_ours(rec)
}

/// Status code counts, for assertion messages.
pub fn statuses(out: &[Outcome]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for o in out {
        *m.entry(o.status).or_default() += 1;
    }
    m
}

/// `(ppid, pgrp, state)` of a live process, from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(u32, u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((
        rest.get(1)?.parse().ok()?,
        rest.get(2)?.parse().ok()?,
        rest.first()?.to_string(),
    ))
}

/// Whether `pid` is a live process (not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    stat_of(pid).is_some_and(|(_, _, s)| s != "Z")
}

/// The live descendants of `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter_map(|p| {
            stat_of(p)
                .filter(|(_, _, s)| s != "Z")
                .map(|(pp, _, _)| (p, pp))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (c, _) in all.iter().filter(|(_, pp)| *pp == p) {
            if !out.contains(c) {
                out.push(*c);
                frontier.push(*c);
            }
        }
    }
    out
}

/// Waits (bounded, 5 s) until none of `pids` is alive; returns those still alive.
pub fn wait_all_gone(pids: &[u32]) -> Vec<u32> {
    let start = std::time::Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        if left.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Entries of `dir` whose name starts with `meshdrill-mesh-`.
pub fn mesh_temp_dirs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with("meshdrill-mesh-"))
        .collect()
}

/// A child process killed (by its own PID) and reaped when the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// SIGTERM (the child is not reaped yet, so its PID is still ours), then wait.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        self.0.wait().expect("wait")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `meshdrill mesh up FILE --dir DIR` in the background, once it is up: the child, its
/// ingress address, and the thread draining its stdout.
pub fn spawn_up(
    file: &std::path::Path,
    dir: &std::path::Path,
) -> (
    std::process::Child,
    std::net::SocketAddr,
    std::thread::JoinHandle<std::io::Result<u64>>,
) {
    let mut child = super::meshdrill()
        .args(["mesh", "up"])
        .arg(file)
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mesh up");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).expect("read");
    let drain = std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line
        .split("ingress: http://")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ingress URL in {line:?}"));
    (child, addr, drain)
}

/// Reads `child`'s stdout until a line holds `needle` (or the output ends) and returns
/// what it read; the rest of the output is drained by a thread, so the child never
/// writes into a closed pipe.
pub fn read_until(child: &mut std::process::Child, needle: &str) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut seen = String::new();
    while let Some(Ok(l)) = lines.next() {
        seen.push_str(&l);
        seen.push('\n');
        if l.contains(needle) {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    seen
}
/// A mesh file in `dir`: reviews v1 (replica 0) and v2 (replica 1), a DestinationRule
/// with subsets v1 and v2, and the VirtualService `vs` (YAML).
pub fn reviews_v1_v2_mesh(dir: &std::path::Path, vs: &str) -> std::path::PathBuf {
    super::write(
        dir,
        "mesh.yaml",
        format!(
            "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {{name: bookinfo}}
spec:
  services:
  - name: reviews
    labels: {{version: v1}}
  - name: reviews
    labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
{vs}"
        ),
    )
}
