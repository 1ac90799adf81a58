//! The server-side (inbound) sidecar on a real Envoy: a replica whose application
//! died while its sidecar lives answers callers with the sidecar's 503 (flags UF,URX,
//! after istiod's inbound `reset-before-request` retries, Istio ≥ 1.24), not with a
//! connect failure — so what the caller does is up to its retry policy, as in Istio.
//! Loopback only; each test holds `serial()`.

use std::time::{Duration, Instant};

use meshdrill::mesh::RunningMesh;
use meshdrill::mesh::envoy;
use serde_json::Value;

use crate::common::mesh::{Outcome, load, serial, share, start, statuses};

const LIMIT: Duration = Duration::from_secs(40);
const FRONT: &str = "front.default.svc.cluster.local";

/// `front` forwards `?addr=URL` through its sidecar; `back` (no VirtualService:
/// Istio's default retry policy) and `back5xx` (`retryOn: 5xx`) have 2 replicas each.
/// The ingress calls `front` with no retries, so what reaches the client is what
/// front's sidecar made of the call.
fn mesh(inbound_sidecars: bool) -> String {
    format!(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {{name: inbound}}
spec:
  inboundSidecars: {inbound_sidecars}
  services:
  - name: front
    demo: {{forward: true}}
  - name: back
    replicas: 2
  - name: back5xx
    replicas: 2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front}}
spec:
  hosts: [front]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: front}}}}]
    retries: {{attempts: 0}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: back5xx}}
spec:
  hosts: [back5xx]
  http:
  - route: [{{destination: {{host: back5xx}}}}]
    retries: {{attempts: 2, retryOn: 5xx}}
"
    )
}

fn call(mesh: &RunningMesh, service: &str, n: usize) -> Vec<Outcome> {
    load(
        mesh.ingress_addr(),
        FRONT,
        &format!("/?addr=http://{service}/"),
        n,
        1,
        LIMIT,
    )
}

fn access_log(mesh: &RunningMesh) -> std::path::PathBuf {
    meshdrill::mesh::state::StateDir::new(mesh.dir()).access_log()
}

/// The access-log lines of `hop` after byte `from`, once at least `n` are there
/// (bounded wait: Envoy flushes the log every 250 ms).
fn logged(mesh: &RunningMesh, hop: &str, from: usize, n: usize) -> Vec<Value> {
    let log = access_log(mesh);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read(&log).unwrap_or_default();
        let new = String::from_utf8_lossy(text.get(from..).unwrap_or_default()).into_owned();
        let lines: Vec<Value> = new
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["hop"] == hop)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn counter(mesh: &RunningMesh, name: &str) -> u64 {
    let (_, text) = envoy::get(mesh.admin(), "/stats?filter=^cluster\\.").expect("stats");
    let key = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        // A counter Envoy does not show is a wrong name, not a zero.
        .unwrap_or_else(|| panic!("no Envoy stat {key:?} in:\n{text}"))
}

#[test]
fn a_dead_app_behind_a_live_sidecar_answers_503_and_the_caller_s_policy_decides() {
    let _s = serial();
    let mut m = start(&mesh(true));
    assert_eq!(share(&call(&m, "back", 20), 200), 1.0, "all up");
    // Envoy flushes the access log every 250 ms: let the lines so far land first.
    std::thread::sleep(Duration::from_millis(600));
    let from = std::fs::metadata(access_log(&m)).map_or(0, |md| md.len() as usize);
    assert_eq!(m.kill("back", Some(0)).expect("kill"), vec![0]);
    assert_eq!(m.kill("back5xx", Some(0)).expect("kill"), vec![0]);
    let n = 200;

    // Istio's default retry policy (1.24+: connect-failure, refused-stream,
    // unavailable, cancelled; no 503): the sidecar's 503 is not retried, so every call
    // balanced to the dead replica fails — one in two here (one request at a time:
    // LEAST_REQUEST sees no active requests and picks either replica).
    let out = call(&m, "back", n);
    let failed = share(&out, 503);
    assert_eq!(failed + share(&out, 200), 1.0, "{:?}", statuses(&out));
    // About one in two (σ = 3.5 points at n = 200); the bound is 8σ wide, as the
    // question is whether the 503 is retried (0%) or not, not the balancer's share.
    assert!(
        (0.2..=0.8).contains(&failed),
        "503 share, default policy: {failed} of {n}: {:?}",
        statuses(&out)
    );
    // The 503 is the inbound sidecar's own answer: its connect to the application
    // failed (UF) on every one of its 3 tries (URX: reset-before-request, 2 retries).
    let dead = out.iter().filter(|o| o.status == 503).count();
    let inbound = logged(&m, "inbound_back_0", from, dead);
    assert_eq!(inbound.len(), dead, "one inbound answer per failed call");
    assert!(!inbound.is_empty(), "the dead replica's sidecar was called");
    for l in &inbound {
        assert_eq!(l["status"], 503, "{l}");
        let flags = l["flags"].as_str().unwrap_or("");
        assert!(flags.contains("UF") && flags.contains("URX"), "{l}");
        assert_eq!(l["attempts"], 3, "{l}");
    }
    // The caller got an answer (no connect failure of its own) and did not retry it.
    assert_eq!(
        counter(
            &m,
            "cluster.outbound|80||back.default.svc.cluster.local.upstream_cx_connect_fail"
        ),
        0
    );
    assert_eq!(
        counter(
            &m,
            "cluster.outbound|80||back.default.svc.cluster.local.upstream_rq_retry"
        ),
        0
    );
    assert_eq!(
        counter(&m, "cluster.inbound|80||back-0.upstream_rq_retry"),
        2 * inbound.len() as u64
    );

    // retryOn: 5xx, 2 attempts, previous hosts: the 503 is retried on the live
    // replica, so every call succeeds.
    let out = call(&m, "back5xx", n);
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    assert!(
        counter(
            &m,
            "cluster.outbound|80||back5xx.default.svc.cluster.local.upstream_rq_retry"
        ) > 0
    );

    // Restarted, the replica answers through its sidecar again.
    m.restart("back", Some(0)).expect("restart");
    assert_eq!(share(&call(&m, "back", 40), 200), 1.0);
}

/// `inboundSidecars: false`, the model before Istio's inbound hop: the caller meets
/// the dead replica's closed port itself (a connect failure) and Istio's default
/// policy retries it on the other replica — every call succeeds. The contrast with
/// the test above is what the inbound hop changes.
#[test]
fn without_inbound_sidecars_the_caller_retries_the_connect_failure() {
    let _s = serial();
    let mut m = start(&mesh(false));
    assert_eq!(m.kill("back", Some(0)).expect("kill"), vec![0]);
    let out = call(&m, "back", 100);
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    assert!(
        counter(
            &m,
            "cluster.outbound|80||back.default.svc.cluster.local.upstream_cx_connect_fail"
        ) > 0
    );
}
