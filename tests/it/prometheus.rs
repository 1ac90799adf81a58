//! Prometheus as an SLO source, against a real Prometheus (Debian package
//! `prometheus`; `make deps` installs it) started here on loopback, scraping the local
//! mesh's Envoy admin `/stats/prometheus` every second — never a mock.
//!
//! Lag: a PromQL value sees the past scrape interval and rate window, so the drills
//! below judge a steady phase before any fault (the 5xx rate is 0) and a fault phase
//! of 8 s at 100% abort (the rate climbs to the load's 20/s within a few seconds),
//! and have no steady state after the fault (the rate window still holds it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::mesh::{KillOnDrop, serial, spawn_up};
use crate::common::{meshdrill, root, run, write};
use crate::scenarios::assert_journal_schema;

const LIMIT: Duration = Duration::from_secs(60);
const ANN: &str = "/metadata/annotations/meshdrill.io~1drill";
/// The ingress' 5xx answers per second: one series, present (at 0) from Envoy's start.
const INGRESS_5XX: &str = "sum(rate(envoy_http_downstream_rq_xx{envoy_response_code_class=\"5\",envoy_http_conn_manager_prefix=\"ingress\"}[5s]))";
/// The same per listener: several series.
const PER_LISTENER_5XX: &str =
    "rate(envoy_http_downstream_rq_xx{envoy_response_code_class=\"5\"}[5s])";

/// `prometheus` on PATH, if installed.
fn prometheus_bin() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// A Prometheus this test started: killed by PID when dropped, also on a failed
/// assertion.
struct Prom {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prom {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// GET `path` from `addr` (loopback), bounded in time: the body, when the answer is
/// 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    assert!(addr.ip().is_loopback());
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Polls `cond` every 100 ms for at most `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// Starts Prometheus scraping Envoy's admin every second; returns once the target is
/// up and `query` has a value (a rate needs two scrapes).
fn start_prometheus(bin: &Path, envoy_admin: &str, query: &str) -> Prom {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write(
        dir.path(),
        "prometheus.yml",
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
- job_name: envoy
  metrics_path: /stats/prometheus
  static_configs:
  - targets: ['{envoy_admin}']
"
        ),
    );
    let port = crate::common::servers::refused_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let prom = Prom {
        child,
        addr,
        _dir: dir,
    };
    let up = wait_until(LIMIT, || {
        get(addr, "/api/v1/targets").is_some_and(|b| b.contains("\"health\":\"up\""))
    });
    let log =
        || std::fs::read_to_string(prom._dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(up, "the scrape target never came up:\n{}", log());
    let path = format!("/api/v1/query?query={}", encode(query));
    let has_value = wait_until(LIMIT, || {
        get(addr, &path).is_some_and(|b| b.contains("\"value\":["))
    });
    assert!(has_value, "{query} never had a value:\n{}", log());
    prom
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A drill on the mesh in `--mesh DIR` with an availability SLO and a Prometheus one
/// (its `prometheus:` on line 11, url on 12, query on 13).
fn drill(url: &str, query: &str) -> String {
    format!(
        "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {{name: prometheus-slo}}
spec:
  target: {{mesh: unused.yaml}}
  targets: [repeater.acme.com]
  load: {{url: 'http://{{ingress}}/', headers: {{Host: repeater.acme.com}}, rate: 20, connections: 16}}
  slos:
  - {{name: availability, metric: availability, objective: '>= 90%'}}
  - name: ingress-5xx
    prometheus:
      url: {url}
      query: '{}'
      objective: '< 1'
  steadyState: {{duration: 5s, after: false}}
  method:
  - retries: {{virtualService: repeater, attempts: 0}}
  - fault: {{virtualService: go-demo-8, abort: {{httpStatus: 500, percentage: 100}}}}
  - hold: {{duration: 8s, expect: {{breach: [availability, ingress-5xx]}}}}
  - clear: go-demo-8
",
        query.replace('\'', "''")
    )
}

/// The mesh's VirtualServices as Envoy runs them.
fn virtual_services(dir: &Path) -> Vec<Value> {
    let st: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("state.json"))
            .expect("json");
    st["spec"]["virtualServices"]
        .as_array()
        .cloned()
        .expect("virtualServices")
}

/// `meshdrill run FILE --mesh DIR --journal J`: (code, stdout, stderr, journal).
fn run_drill(tmp: &Path, mesh: &Path, text: &str) -> (i32, String, String, Value) {
    write(tmp, "unused.yaml", "# --mesh DIR replaces the target\n");
    let f = write(tmp, "s.yaml", text);
    let journal = tmp.join("j.json");
    let _ = std::fs::remove_file(&journal);
    let (code, out, err) = run(meshdrill()
        .arg("run")
        .arg(&f)
        .arg("--mesh")
        .arg(mesh)
        .arg("--journal")
        .arg(&journal));
    let j: Value = std::fs::read(&journal)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (code, out, err, j)
}

fn phase<'a>(j: &'a Value, kind: &str) -> &'a Value {
    j["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} phase in {}", j["phases"]))
}

fn slo<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["slos"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no slo {name} in {p}"))
}

/// The Prometheus SLO's values in the series seconds wholly inside a phase.
fn series_in(j: &Value, p: &Value) -> Vec<Option<f64>> {
    let (a, b) = (
        p["startS"].as_f64().expect("startS"),
        p["endS"].as_f64().expect("endS"),
    );
    j["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|i| i["t"].as_f64().is_some_and(|t| t >= a && t + 1.0 <= b))
        .map(|i| i["slos"]["ingress-5xx"].as_f64())
        .collect()
}

/// Starts the go-demo-8 mesh in `dir` and returns it with Envoy's admin address.
fn mesh_up(dir: &Path) -> (KillOnDrop, String) {
    let (child, _ingress, _drain) = spawn_up(&root().join("scenarios/meshes/go-demo-8.yaml"), dir);
    let admin = std::fs::read_to_string(dir.join("envoy-admin.address"))
        .expect("the mesh dir names Envoy's admin address")
        .trim()
        .to_string();
    (KillOnDrop(child), admin)
}

#[test]
fn a_prometheus_slo_holds_in_the_steady_state_and_breaches_under_a_fault() {
    let Some(bin) = prometheus_bin() else {
        eprintln!("skipping: prometheus not installed (make deps installs it)");
        return;
    };
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let tmp = tempfile::tempdir().expect("tmp");
    let (_mesh, admin) = mesh_up(dir.path());
    let prom = start_prometheus(&bin, &admin, INGRESS_5XX);
    let original = virtual_services(dir.path());

    // Unreachable Prometheus: exit 3 before anything changes, naming the url.
    let closed = format!(
        "http://127.0.0.1:{}",
        crate::common::servers::refused_port()
    );
    let (code, out, err, j) = run_drill(tmp.path(), dir.path(), &drill(&closed, INGRESS_5XX));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "s.yaml:12: spec.slos[1].prometheus.url: cannot reach Prometheus at {closed}"
        )),
        "{err}"
    );
    assert_eq!(j["ending"]["reason"], "targetError", "{}", j["ending"]);
    assert_eq!(j["changes"], serde_json::json!([]), "nothing was changed");
    assert_eq!(j["phases"], serde_json::json!([]), "no phase ran");
    assert_eq!(
        j["series"],
        serde_json::json!([]),
        "checked before the load started, not at the steady state's end"
    );
    assert_eq!(virtual_services(dir.path()), original);

    // Several series: exit 2 naming file:line, field and the series, before anything.
    let (code, out, err, j) = run_drill(
        tmp.path(),
        dir.path(),
        &drill(&prom.url(), PER_LISTENER_5XX),
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("s.yaml:13: spec.slos[1].prometheus.query: rate(envoy_http_downstream_rq_xx"),
        "{err}"
    );
    assert!(err.contains("series ({"), "{err}");
    assert!(err.contains("aggregate it (sum, max) to one"), "{err}");
    assert_eq!(j["ending"]["reason"], "inputError", "{}", j["ending"]);
    assert_eq!(j["changes"], serde_json::json!([]));
    assert_eq!(virtual_services(dir.path()), original);

    // The drill: 0 5xx/s before the fault, the load's rate of 5xx/s under it.
    let (code, out, err, j) = run_drill(tmp.path(), dir.path(), &drill(&prom.url(), INGRESS_5XX));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_journal_schema(&j);
    let steady = phase(&j, "steadyStateBefore");
    let s = slo(steady, "ingress-5xx");
    assert_eq!(s["verdict"], "pass", "{s}");
    assert!(s["measured"].as_f64().is_some_and(|v| v < 1.0), "{s}");
    assert_eq!(s["ci"], Value::Null, "no invented confidence interval: {s}");
    assert!(
        s["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no confidence interval")),
        "{s}"
    );
    let values = series_in(&j, steady);
    assert!(values.len() >= 3, "{values:?}");
    assert!(
        values.iter().all(|v| v.is_some_and(|v| v < 1.0)),
        "{values:?}"
    );

    let hold = phase(&j, "hold");
    assert_eq!(hold["verdict"], "pass", "breached as expected: {hold}");
    let s = slo(hold, "ingress-5xx");
    assert_eq!(s["verdict"], "fail", "{s}");
    // 20 req/s, all answered 500 at the ingress: the rate climbs well past 1/s.
    assert!(s["measured"].as_f64().is_some_and(|v| v >= 5.0), "{s}");
    let values = series_in(&j, hold);
    assert!(
        values.iter().flatten().any(|v| *v >= 5.0),
        "the series carries the breach: {values:?}"
    );
    assert!(out.contains("ingress-5xx"), "{out}");
    for r in j["rollbacks"].as_array().expect("rollbacks") {
        assert_eq!(r["ok"], true, "{r}");
    }
    assert_eq!(virtual_services(dir.path()), original);
}

#[test]
fn prometheus_gone_mid_drill_ends_it_as_a_target_error_after_the_rollback() {
    let Some(bin) = prometheus_bin() else {
        eprintln!("skipping: prometheus not installed (make deps installs it)");
        return;
    };
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let tmp = tempfile::tempdir().expect("tmp");
    let (_mesh, admin) = mesh_up(dir.path());
    let mut prom = start_prometheus(&bin, &admin, INGRESS_5XX);
    let original = virtual_services(dir.path());
    write(
        tmp.path(),
        "unused.yaml",
        "# --mesh DIR replaces the target\n",
    );
    let f = write(tmp.path(), "s.yaml", drill(&prom.url(), INGRESS_5XX));
    let journal = tmp.path().join("j.json");
    let child = meshdrill()
        .arg("run")
        .arg(&f)
        .arg("--mesh")
        .arg(dir.path())
        .arg("--journal")
        .arg(&journal)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = KillOnDrop(child);
    let applied = || {
        virtual_services(dir.path())
            .iter()
            .filter(|v| v.pointer(ANN).is_some())
            .count()
            == 2
    };
    assert!(wait_until(LIMIT, applied), "the fault went live");
    // Prometheus goes away during the fault phase: its end cannot be judged.
    let _ = prom.child.kill();
    let _ = prom.child.wait();
    let mut status = None;
    assert!(
        wait_until(LIMIT, || {
            status = child.0.try_wait().ok().flatten();
            status.is_some()
        }),
        "the drill ended"
    );
    let mut err = String::new();
    if let Some(e) = child.0.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{err}");
    assert!(err.contains("cannot reach Prometheus"), "{err}");
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_journal_schema(&j);
    assert_eq!(j["ending"]["reason"], "targetError", "{}", j["ending"]);
    assert!(
        j["changes"].as_array().is_some_and(|c| c.len() >= 2),
        "the fault was on: {}",
        j["changes"]
    );
    for r in j["rollbacks"].as_array().expect("rollbacks") {
        assert_eq!(r["ok"], true, "{r}");
    }
    assert_eq!(
        virtual_services(dir.path()),
        original,
        "the rollback restored the routes"
    );
}

#[test]
fn a_prometheus_slo_as_a_stop_condition_is_refused_before_anything_starts() {
    // Needs no Prometheus: the file is refused as it is read.
    let tmp = tempfile::tempdir().expect("tmp");
    let text = format!(
        "{}  stopConditions:\n  - {{slo: ingress-5xx, above: 5}}\n",
        drill("http://127.0.0.1:9", INGRESS_5XX)
    );
    let (code, out, err, j) = run_drill(tmp.path(), tmp.path(), &text);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(
            "s.yaml:22: spec.stopConditions[0].slo: ingress-5xx is a Prometheus objective"
        ),
        "{err}"
    );
    assert_eq!(j, Value::Null, "nothing ran, no journal");
}
