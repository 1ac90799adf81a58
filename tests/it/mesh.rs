//! The local mesh on a real Envoy: statistics of faults and retries, live changes,
//! killed replicas, rejected configurations, and process hygiene. Loopback only; every
//! load is bounded in count and time; every mesh stops on drop (also on panic).

use std::sync::Arc;
use std::time::Duration;

use meshdrill::istio::{
    AbortCode, AbortSpec, Change, DelaySpec, HttpStatus, IstioDuration, Percentage, RetrySpec,
};
use meshdrill::mesh::envoy;
use meshdrill::mesh::stats::MeshStats;
use meshdrill::mesh::{MeshError, MeshSpec};

use crate::common::mesh::{
    KillOnDrop, Progress, alive, all, load, load_live, meta, percentile_ms, pid_alive, serial,
    share, spawn_up, start, start_in, statuses,
};
use crate::common::stats::{Tally, judge};
use crate::common::{meshdrill, root, run, write};

mod actions;

const LIMIT: Duration = Duration::from_secs(40);

fn abort(status: i64, percent: f64) -> Change {
    Change::Abort(AbortSpec {
        code: AbortCode::Http(HttpStatus::new(status).expect("status")),
        percentage: Percentage::new(percent).expect("percent"),
    })
}

fn delay(ms: u64, percent: f64) -> Change {
    Change::Delay(DelaySpec {
        fixed: IstioDuration::from_millis(ms).expect("ms"),
        percentage: Percentage::new(percent).expect("percent"),
    })
}

fn retries(attempts: u32, on: &str) -> Change {
    Change::Retries {
        retries: RetrySpec {
            attempts,
            per_try_timeout: None,
            retry_on: Some(on.parse().expect("retryOn")),
            retry_remote_localities: None,
        },
        timeout: None,
    }
}

/// One demo service `web` behind the ingress.
const WEB: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: web}
spec:
  services:
  - name: web
    replicas: 2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  gateways: [gw]
  http:
  - route:
    - destination: {host: web}
";

#[test]
fn abort_30_percent_of_5000_requests() {
    judge("abort 30%", abort_30_percent_of_5000_requests_once);
}

fn abort_30_percent_of_5000_requests_once() -> Vec<Tally> {
    let _s = serial();
    let mesh = start(WEB);
    let applied = mesh
        .apply("web", &all(), Some(&abort(503, 30.0)), &meta())
        .expect("apply");
    assert!(applied.changed);
    let before = mesh.stats().expect("stats");
    let out = load(
        mesh.ingress_addr(),
        "web.default.svc.cluster.local",
        "/",
        5000,
        16,
        LIMIT,
    );
    assert_eq!(out.len(), 5000, "all requests sent in time");
    let aborted = out.iter().filter(|o| o.status == 503).count();
    assert_eq!(share(&out, 200) + share(&out, 503), 1.0, "only 200 and 503");
    // Envoy's own count of what it injected is what the client saw.
    let d = mesh.stats().expect("stats").since(&before);
    let hop = d.hop("ingress").expect("ingress hop");
    assert_eq!(hop.aborts_injected as usize, aborted);
    assert_eq!(hop.downstream_requests as usize, out.len());
    vec![Tally::share(
        "aborted share",
        hop.aborts_injected,
        hop.downstream_requests,
        0.30,
    )]
}

#[test]
fn delay_200ms_at_100_percent_sets_the_median() {
    let _s = serial();
    let mesh = start(WEB);
    mesh.apply("web", &all(), Some(&delay(200, 100.0)), &meta())
        .expect("apply");
    let out = load(
        mesh.ingress_addr(),
        "web.default.svc.cluster.local",
        "/",
        300,
        30,
        LIMIT,
    );
    assert_eq!(out.len(), 300);
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    let p50 = percentile_ms(&out, 0.5);
    assert!((195.0..=230.0).contains(&p50), "p50 {p50:.1} ms");
    eprintln!("delay 200ms: p50 {p50:.1} ms");
}

#[test]
fn delay_and_abort_on_one_route_apply_independently() {
    judge(
        "delay and abort",
        delay_and_abort_on_one_route_apply_independently_once,
    );
}

/// The response flags (`%RESPONSE_FLAGS%`) of each request the `hop` logged after
/// byte `from` of the mesh's access log.
fn logged_flags(mesh: &meshdrill::mesh::RunningMesh, hop: &str, from: u64) -> Vec<String> {
    let log = meshdrill::mesh::state::StateDir::new(mesh.dir()).access_log();
    let text = std::fs::read(&log).expect("access log");
    let new = text.get(from as usize..).unwrap_or_default();
    String::from_utf8_lossy(new)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["hop"] == hop)
        .map(|v| v["flags"].as_str().unwrap_or("").to_string())
        .collect()
}

fn access_log_len(mesh: &meshdrill::mesh::RunningMesh) -> u64 {
    let log = meshdrill::mesh::state::StateDir::new(mesh.dir()).access_log();
    std::fs::metadata(log).map_or(0, |m| m.len())
}

fn delay_and_abort_on_one_route_apply_independently_once() -> Vec<Tally> {
    let _s = serial();
    let mesh = start(WEB);
    mesh.apply("web", &all(), Some(&delay(100, 50.0)), &meta())
        .expect("delay");
    let a = mesh
        .apply("web", &all(), Some(&abort(503, 50.0)), &meta())
        .expect("abort");
    // The second change keeps the first: both on the route.
    let fault = &a.object["spec"]["http"][0]["fault"];
    assert!(
        fault.get("delay").is_some() && fault.get("abort").is_some(),
        "{fault}"
    );
    let before = mesh.stats().expect("stats");
    let from = access_log_len(&mesh);
    let out = load(
        mesh.ingress_addr(),
        "web.default.svc.cluster.local",
        "/",
        2000,
        40,
        LIMIT,
    );
    assert_eq!(out.len(), 2000);
    // Which requests Envoy delayed and aborted, from its own records: the access log's
    // response flags per request (DI: delay injected, FI: abort injected), checked
    // against the fault filter's counters and the statuses the client saw.
    let d = mesh.stats().expect("stats").since(&before);
    let hop = d.hop("ingress").expect("ingress hop");
    let flags = logged_flags(&mesh, "ingress", from);
    assert_eq!(flags.len(), out.len(), "one access-log line per request");
    let has = |f: &str, flag: &str| f.split(',').any(|x| x == flag);
    let aborted: Vec<&String> = flags.iter().filter(|f| has(f, "FI")).collect();
    let served: Vec<&String> = flags.iter().filter(|f| !has(f, "FI")).collect();
    let delayed = |v: &[&String]| v.iter().filter(|f| has(f, "DI")).count() as u64;
    assert_eq!(hop.aborts_injected, aborted.len() as u64);
    assert_eq!(
        hop.delays_injected,
        delayed(&aborted) + delayed(&served),
        "{flags:?}"
    );
    assert_eq!(
        out.iter().filter(|o| o.status == 503).count(),
        aborted.len()
    );
    assert_eq!(out.iter().filter(|o| o.status == 200).count(), served.len());
    // Independent draws: half aborted; half of the aborted and half of the served
    // delayed.
    vec![
        Tally::share("aborted", aborted.len() as u64, flags.len() as u64, 0.5),
        Tally::share(
            "delayed among aborted",
            delayed(&aborted),
            aborted.len() as u64,
            0.5,
        ),
        Tally::share(
            "delayed among served",
            delayed(&served),
            served.len() as u64,
            0.5,
        ),
    ]
}

/// front (retries 5xx x2 at the ingress) -> back (fails 50% with 500), as the go-demo-8
/// demo's repeater -> go-demo-8; `front-noretry` is the same front without retries.
const TWO_HOPS: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: two-hops}
spec:
  services:
  - name: front
    demo: {forward: 'http://back/'}
  - name: back
    demo: {failRate: 0.5, failStatus: 500}
  - name: back-ok
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front]
  gateways: [gw]
  http:
  - route: [{destination: {host: front}}]
    retries: {attempts: 2, retryOn: 5xx}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front-noretry}
spec:
  hosts: [front-noretry]
  gateways: [gw]
  http:
  - route: [{destination: {host: front}}]
    retries: {attempts: 0}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: back-ok}
spec:
  hosts: [back-ok]
  http:
  - route: [{destination: {host: back-ok}}]
";

#[test]
fn two_hop_retries_match_the_math_and_faults_are_not_retried_on_their_own_hop() {
    judge(
        "two-hop retries",
        two_hop_retries_match_the_math_and_faults_are_not_retried_on_their_own_hop_once,
    );
}

fn two_hop_retries_match_the_math_and_faults_are_not_retried_on_their_own_hop_once() -> Vec<Tally> {
    let _s = serial();
    let mesh = start(TWO_HOPS);
    let front = "outbound|80||front.default.svc.cluster.local";

    // 1. back fails 50%; the ingress retries 5xx twice: success 1 - 0.5^3 = 0.875,
    //    upstream requests per request 1 + 0.5 + 0.25 = 1.75.
    let before = mesh.stats().expect("stats");
    let out = load(
        mesh.ingress_addr(),
        "front.default.svc.cluster.local",
        "/",
        4000,
        16,
        LIMIT,
    );
    assert_eq!(out.len(), 4000);
    let n = out.len() as u64;
    let ok = out.iter().filter(|o| o.status == 200).count() as u64;
    let d = mesh.stats().expect("stats").since(&before);
    let upstream = d.cluster(front).expect("front").upstream_requests;
    assert_eq!(
        d.totals().retry_overflow,
        0,
        "Istio's max_retries: no overflow"
    );
    // Attempts per request K: 1, 2 or 3 with probabilities 1/2, 1/4, 1/4; E[K] 1.75,
    // Var[K] 3.75 − 1.75² = 0.6875.
    let mut tallies = vec![
        Tally::share("success with 2 retries", ok, n, 0.875),
        Tally::mean(
            "upstream requests per request",
            upstream as f64,
            n,
            1.75,
            0.6875f64.sqrt(),
        ),
    ];

    // 2. A fault on back-ok's own hop, with retries on that same route: the aborts
    //    are not retried (and meshdrill says so). No retries at the ingress here.
    mesh.apply("back-ok", &all(), Some(&abort(500, 50.0)), &meta())
        .expect("abort");
    let a = mesh
        .apply("back-ok", &all(), Some(&retries(2, "5xx")), &meta())
        .expect("retries");
    assert!(
        a.warnings.iter().any(|w| w.contains("istio#13705")),
        "warned: {:?}",
        a.warnings
    );
    let before = mesh.stats().expect("stats");
    let out = load(
        mesh.ingress_addr(),
        "front-noretry.default.svc.cluster.local",
        "/?addr=http://back-ok/",
        2000,
        16,
        LIMIT,
    );
    assert_eq!(out.len(), 2000);
    let ok = out.iter().filter(|o| o.status == 200).count() as u64;
    tallies.push(Tally::share(
        "success with the fault's own-hop retries",
        ok,
        out.len() as u64,
        0.5,
    ));
    let d = mesh.stats().expect("stats").since(&before);
    assert_eq!(
        d.cluster("outbound|80||back-ok.default.svc.cluster.local")
            .expect("back-ok")
            .retries,
        0
    );
    assert_eq!(
        d.hop("sidecar_front").expect("hop").aborts_injected as usize,
        out.iter().filter(|o| o.status == 500).count()
    );
    tallies
}

#[test]
fn live_changes_under_load_fail_no_request_and_clear_restores() {
    let _s = serial();
    let mesh = start(WEB);
    let original = envoy::active_route_config(mesh.admin(), "ingress").expect("dump");
    let vs_before = mesh.state().expect("state").spec.virtual_services;
    let before = mesh.stats().expect("stats");
    let addr = mesh.ingress_addr();
    let progress = Arc::new(Progress::default());
    let loader = {
        let progress = progress.clone();
        std::thread::spawn(move || {
            load_live(
                addr,
                "web.default.svc.cluster.local",
                "/",
                &[],
                100_000,
                8,
                Duration::from_secs(60),
                &progress,
            )
        })
    };
    // Each change lands while the load runs, and the load goes on over it: waited on
    // requests seen, not on time (a change landing after the load would pass "0
    // failed" without testing anything).
    assert!(progress.wait_for(100, LIMIT), "the load got going");
    let changes = [
        delay(5, 100.0),
        retries(3, "5xx,connect-failure"),
        Change::Timeout(IstioDuration::from_millis(3000).expect("ms")),
        delay(1, 50.0),
    ];
    let mut confirmed = Vec::new();
    let mut landed = Vec::new();
    for c in changes.iter().map(Some).chain([None]) {
        let a = mesh.apply("web", &all(), c, &meta()).expect("apply");
        landed.push(progress.elapsed());
        confirmed.push(a.confirmed_in.as_millis());
        let seen = progress.done();
        assert!(
            progress.wait_for(seen + 100, LIMIT),
            "the load went on after change {}",
            landed.len()
        );
    }
    progress.stop();
    let out = loader.join().expect("loader");
    let (first, last) = (landed[0], landed[landed.len() - 1]);
    assert!(
        out.iter().filter(|o| o.at < first).count() >= 50,
        "requests before the first change"
    );
    for (i, at) in landed.iter().enumerate() {
        assert!(
            out.iter().filter(|o| o.at > *at).count() >= 50,
            "the load saw requests after change {i} (landed at {at:?})"
        );
    }
    assert!(last > first);
    let failed = out.iter().filter(|o| o.status != 200).count();
    assert_eq!(
        failed,
        0,
        "requests failed during {} reloads",
        changes.len() + 1
    );
    // The delays were live under the load: Envoy injected some.
    let d = mesh.stats().expect("stats").since(&before);
    assert!(
        d.hop("ingress").expect("ingress").delays_injected >= 50,
        "{:?}",
        d.hop("ingress")
    );
    // Clear restored the VirtualService and Envoy's routes exactly.
    assert_eq!(
        mesh.state().expect("state").spec.virtual_services,
        vs_before
    );
    let now = envoy::active_route_config(mesh.admin(), "ingress").expect("dump");
    assert_eq!(now, original);
    eprintln!(
        "live changes: {} requests, 0 failed, confirmed in {confirmed:?} ms",
        out.len()
    );
}

const KILL: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: kill}
spec:
  services:
  - name: three
    replicas: 3
    demo: {latency: 2ms}
  - name: one
    replicas: 1
    demo: {latency: 2ms}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: three}
spec:
  hosts: [three]
  gateways: [gw]
  http:
  - route: [{destination: {host: three}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: one}
spec:
  hosts: [one]
  gateways: [gw]
  http:
  - route: [{destination: {host: one}}]
";

/// Load with replica 0 of `host` killed once the load runs (200 requests seen), going
/// on until 300 requests were sent after `GRACE` past the kill: the outcomes, and when
/// the kill had been carried out — measured on the load's clock, so a slow box that
/// kills late cannot make requests before the kill count as after it.
fn load_while_killing(
    mesh: &mut meshdrill::mesh::RunningMesh,
    host: &'static str,
) -> (Vec<crate::common::mesh::Outcome>, Duration) {
    let addr = mesh.ingress_addr();
    // At a gateway a short VirtualService host matches only as its FQDN.
    let fqdn = format!("{host}.default.svc.cluster.local");
    let progress = Arc::new(Progress::default());
    let loader = {
        let progress = progress.clone();
        std::thread::spawn(move || {
            load_live(
                addr,
                &fqdn,
                "/",
                &[],
                100_000,
                8,
                Duration::from_secs(60),
                &progress,
            )
        })
    };
    assert!(progress.wait_for(200, LIMIT), "the load got going");
    let killed = mesh.kill(host, Some(0)).expect("kill");
    let killed_at = progress.elapsed();
    assert_eq!(killed, vec![0]);
    // The grace for Envoy to see the closed port is wall-clock time on purpose; then
    // the requests after it are counted, not timed.
    while progress.elapsed() < killed_at + GRACE {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = progress.done();
    let went_on = progress.wait_for(seen + 300, LIMIT);
    progress.stop();
    let out = loader.join().expect("loader");
    assert!(went_on, "the load went on after the kill");
    assert!(
        out.iter().any(|o| o.at < killed_at)
            && out.iter().filter(|o| o.at > killed_at + GRACE).count() > 200,
        "the load overlapped the kill (at {killed_at:?})"
    );
    (out, killed_at)
}

/// Time for Envoy to see a killed replica's closed port.
const GRACE: Duration = Duration::from_millis(500);

#[test]
fn killing_a_replica_under_load_three_replicas_vs_one() {
    let _s = serial();
    let mut mesh = start(KILL);
    // 3 replicas + Istio's default retries. Changed with the inbound sidecar (issue 13
    // point 7): this used to be almost free (at most 16 failed) because the caller met
    // the killed replica's closed port itself, a connect failure the default policy
    // retries on another replica. In Istio the pod's sidecar outlives its application
    // and answers 503 (UF,URX) after its own reset-before-request retries, and the
    // default policy (1.24+: no 503) does not retry that: calls balanced to the dead
    // replica fail until Kubernetes takes the pod out of the endpoints (not modelled;
    // outlier detection, or retryOn 5xx, hides it — see mesh_inbound.rs). Least
    // requests sends the slow-failing replica less than a third.
    let (out, killed_at) = load_while_killing(&mut mesh, "three");
    let failed = out.iter().filter(|o| o.status != 200).count();
    let after: Vec<_> = out.iter().filter(|o| o.at > killed_at + GRACE).collect();
    assert!(after.len() > 200, "load continued after the kill");
    let after_failed = after.iter().filter(|o| o.status == 503).count() as f64 / after.len() as f64;
    assert!(
        after_failed > 0.02 && after_failed < 0.5,
        "3 replicas: {after_failed:.3} failed after the kill"
    );
    assert!(
        out.iter().all(|o| o.status == 200 || o.status == 503),
        "{:?}",
        statuses(&out)
    );
    // 1 replica: an outage from the kill on.
    let (out1, killed_at) = load_while_killing(&mut mesh, "one");
    // Requests sent after the kill (with time for Envoy to see the closed port).
    let after1: Vec<_> = out1.iter().filter(|o| o.at > killed_at + GRACE).collect();
    assert!(after1.len() > 200, "load continued after the kill");
    let down = after1.iter().filter(|o| o.status == 503).count() as f64 / after1.len() as f64;
    assert!(
        down > 0.99,
        "1 replica: only {down:.3} failed after the kill"
    );
    // Restart brings it back.
    mesh.restart("one", Some(0)).expect("restart");
    let back = load(
        mesh.ingress_addr(),
        "one.default.svc.cluster.local",
        "/",
        50,
        2,
        LIMIT,
    );
    assert_eq!(share(&back, 200), 1.0, "{:?}", statuses(&back));
    eprintln!(
        "kill: 3 replicas {failed}/{} failed; 1 replica {:.1}% failed after the kill",
        out.len(),
        down * 100.0
    );
}

#[test]
fn an_invalid_change_is_rejected_and_the_old_config_keeps_serving() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let mesh = start_in(WEB, Some(dir.path()));
    let before = mesh.state().expect("state").rds_version;
    // Istio's validation accepts this regex (it compiles, under 1024 characters);
    // Envoy refuses its RE2 program size. (A regex that does not compile, `([`, is
    // refused before Envoy, as Istio's webhook refuses it: exit 2.)
    let bad = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  gateways: [gw]
  http:
  - match: [{uri: {regex: '/[a-z]{1000}'}}]
    route: [{destination: {host: web}}]
";
    let uncompiled = write(dir.path(), "re.yaml", bad.replace("/[a-z]{1000}", "(["));
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "apply"])
        .arg(&uncompiled)
        .arg("--mesh")
        .arg(dir.path()));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("uri.regex") && err.contains("RE2"), "{err}");
    let f = write(dir.path(), "bad.yaml", bad);
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "apply"])
        .arg(&f)
        .arg("--mesh")
        .arg(dir.path()));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("rejected") && err.contains("program size"),
        "{err}"
    );
    // Library form: the same error, typed.
    let doc = meshdrill::istio::manifest::parse_str(bad, meshdrill::istio::Source("bad".into()))
        .expect("yaml");
    match mesh.put_virtual_service(doc[0].value.clone()) {
        Err(MeshError::EnvoyRejected { reason, .. }) => {
            assert!(reason.contains("program size"), "{reason}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The ingress routes by Host: a host no VirtualService names gets 404.
    let out = load(mesh.ingress_addr(), "nope", "/", 5, 1, LIMIT);
    assert_eq!(share(&out, 404), 1.0, "{:?}", statuses(&out));
    // The old routes serve; the files and state agree with what Envoy runs.
    let out = load(
        mesh.ingress_addr(),
        "web.default.svc.cluster.local",
        "/anything",
        100,
        4,
        LIMIT,
    );
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    let st = mesh.state().expect("state");
    assert!(st.rds_version > before);
    assert!(
        st.spec.virtual_services[0]
            .pointer("/spec/http/0/match")
            .is_none()
    );

    // The CLI on the same mesh: fault, stats, clear.
    let (code, o, err) = run(meshdrill()
        .args([
            "fault",
            "abort",
            "web",
            "--status",
            "503",
            "--percent",
            "100",
            "--mesh",
        ])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(o.contains("Envoy runs route version"), "{o}");
    let out = load(
        mesh.ingress_addr(),
        "web.default.svc.cluster.local",
        "/",
        20,
        2,
        LIMIT,
    );
    assert_eq!(share(&out, 503), 1.0, "{:?}", statuses(&out));
    let (code, o, err) = run(meshdrill()
        .args(["mesh", "stats", "-o", "json", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&o).expect("json");
    assert!(v["hops"][0]["aborts_injected"].as_u64() >= Some(20), "{o}");
    let (code, _, err) = run(meshdrill().args(["clear", "web", "--mesh"]).arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let out = load(
        mesh.ingress_addr(),
        "web.default.svc.cluster.local",
        "/",
        20,
        2,
        LIMIT,
    );
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    let (code, _, err) = run(meshdrill()
        .args(["clear", "nope", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no VirtualService \"nope\" in the mesh") && err.contains("web"),
        "names the missing one and what there is: {err}"
    );
}

#[test]
fn everything_started_is_stopped_also_when_a_test_panics() {
    let _s = serial();
    let mut recs = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mesh = start(WEB);
        let st = mesh.state().expect("state");
        recs.push(st.envoy.clone());
        recs.extend(st.replicas.iter().filter_map(|r| r.process.clone()));
        assert!(recs.iter().all(alive));
        panic!("a failing test");
    }));
    assert!(r.is_err());
    assert_eq!(recs.len(), 3);
    let pids: Vec<u32> = recs.iter().map(|r| r.pid).collect();
    assert_eq!(
        crate::common::mesh::wait_all_gone(&pids),
        Vec::<u32>::new(),
        "left running: {recs:?}"
    );
    assert!(!recs.iter().any(alive), "left running: {recs:?}");
}

#[test]
fn mesh_up_runs_the_demo_scenario_until_sigterm_and_cleans_stale_state() {
    let _s = serial();
    let scenario = root().join("scenarios/meshes/go-demo-8.yaml");
    let loaded = MeshSpec::load(std::slice::from_ref(&scenario)).expect("scenario");
    assert!(loaded.notes.is_empty(), "{:?}", loaded.notes);
    let dir = tempfile::tempdir().expect("tmp");

    // Stale state: a "replica" that still runs (what we started) and a recorded PID
    // whose command line is not ours (must not be touched).
    let mut stale = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let mut other = std::process::Command::new("sleep")
        .arg("31")
        .spawn()
        .expect("sleep");
    let rec = |pid: u32, cmd: &[&str]| serde_json::json!({"pid": pid, "cmdline": cmd});
    let state = serde_json::json!({
        "format": 1,
        "owner": rec(1, &["not-meshdrill"]),
        "admin": "127.0.0.1:9",
        "ingressPort": 1,
        "sidecarPorts": {},
        "envoy": rec(other.id(), &["envoy", "-c", "x"]),
        "replicas": [{"service": "s", "index": 0, "port": 1, "process": rec(stale.id(), &["sleep", "30"])}],
        "rdsVersion": 1,
        "replicaPorts": {},
        "spec": loaded.spec,
    });
    write(
        dir.path(),
        "state.json",
        serde_json::to_vec(&state).expect("json"),
    );

    let (child, addr, drain) = spawn_up(&scenario, dir.path());
    let mut child = KillOnDrop(child);

    assert!(
        stale.try_wait().expect("wait").is_some(),
        "stale replica killed"
    );
    assert!(
        other.try_wait().expect("wait").is_none(),
        "a foreign PID is left alone"
    );
    let _ = other.kill();
    let _ = other.wait();

    let out = load(addr, "repeater.acme.com", "/", 50, 4, LIMIT);
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    // The go-demo-8 drill: 50% aborts on the sidecar hop, absorbed by the ingress retries.
    let (code, _, err) = run(meshdrill()
        .args([
            "fault",
            "abort",
            "go-demo-8",
            "--status",
            "500",
            "--percent",
            "50",
            "--mesh",
        ])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let out = load(addr, "repeater.acme.com", "/", 400, 8, LIMIT);
    assert!(
        share(&out, 200) > 0.99,
        "retries absorb the aborts: {}",
        share(&out, 200)
    );
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).expect("state"))
            .expect("json");
    let pids: Vec<meshdrill::mesh::state::ProcRecord> = std::iter::once(st["envoy"].clone())
        .chain(
            st["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["process"].clone()),
        )
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    assert_eq!(pids.len(), 4);
    // kill and restart, judged by their effect (not only their exit code): the
    // replica's process is gone and recorded as down, then a new one runs, is
    // recorded, and answers on the replica's port and through Envoy.
    let replica_1 = |st: &meshdrill::mesh::state::MeshState| {
        st.replicas
            .iter()
            .find(|r| r.service == "go-demo-8" && r.index == 1)
            .cloned()
            .expect("go-demo-8 replica 1")
    };
    let state = || {
        meshdrill::mesh::state::StateDir::new(dir.path())
            .read()
            .expect("state")
    };
    let old = replica_1(&state()).process.expect("replica 1 runs");
    assert!(alive(&old));
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "kill", "go-demo-8", "--replica", "1", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        crate::common::mesh::wait_all_gone(&[old.pid]),
        Vec::<u32>::new(),
        "mesh kill left replica 1 running"
    );
    let down = replica_1(&state());
    assert!(down.process.is_none(), "recorded as down: {down:?}");
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "restart", "go-demo-8", "--replica", "1", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let up = replica_1(&state());
    let new = up.process.clone().expect("restarted replica recorded");
    assert_ne!(new.pid, old.pid, "a new process");
    assert!(alive(&new), "{new:?}");
    let port = std::net::SocketAddr::from(([127, 0, 0, 1], up.port));
    let (status, body) = get_body(port, "go-demo-8", "/", &[]);
    assert_eq!(status, 200, "the restarted replica answers: {body}");
    assert!(body.contains("replica 1"), "{body}");
    // Envoy serves again (its pools may still hold connections to the killed
    // process for a moment: waited on, bounded).
    let deadline = std::time::Instant::now() + LIMIT;
    let mut out = load(addr, "repeater.acme.com", "/", 50, 4, LIMIT);
    while share(&out, 200) < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        out = load(addr, "repeater.acme.com", "/", 50, 4, LIMIT);
    }
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    let pids: Vec<meshdrill::mesh::state::ProcRecord> = pids
        .into_iter()
        .filter(|p| p.pid != old.pid)
        .chain([new])
        .collect();

    let status = child.terminate();
    let _ = drain.join();
    // Stopped by a signal: exit 130, after everything is stopped.
    assert_eq!(status.code(), Some(130), "{status}");
    let left = crate::common::mesh::wait_all_gone(&pids.iter().map(|p| p.pid).collect::<Vec<_>>());
    assert_eq!(left, Vec::<u32>::new(), "left running after SIGTERM");
    assert!(!pids.iter().any(alive), "left running after SIGTERM");
    assert!(!dir.path().join("state.json").exists());
}

/// Owns a spawned `mesh up` and kills it if the test fails before it stops it (std
/// never signals a child it has already reaped).
#[test]
fn envoy_accepts_every_translated_case() {
    let _s = serial();
    let yaml = format!(
        "{}---\n{}",
        "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {name: all}\nspec:\n  namespace: bookinfo\n  services:\n  - name: reviews\n    labels: {version: v1}\n  - name: reviews\n    labels: {version: v2}\n  - name: reviews\n    labels: {version: v3}\n  - name: api\n",
        std::fs::read_to_string(crate::common::data("bookinfo-reviews.yaml")).expect("fixture")
    ) + "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: api, namespace: bookinfo}\nspec:\n  hosts: [api]\n  gateways: [gw, mesh]\n  http:\n  - match: [{uri: {regex: '/c/[0-9]+'}, headers: {x-a: {}}, queryParams: {q: {exact: '1'}}, method: {exact: GET}}]\n    retries: {attempts: 3, perTryTimeout: 250ms, retryOn: '5xx,connect-failure,503', retryRemoteLocalities: true}\n    timeout: 2s\n    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.5}}, delay: {fixedDelay: 1ms, percent: 1}}\n    route: [{destination: {host: api}}]\n  - route: [{destination: {host: reviews, subset: v1}, weight: 70}, {destination: {host: reviews, subset: v2}, weight: 30}]\n";
    let mesh = start(&yaml);
    let versions = envoy::route_versions(mesh.admin()).expect("versions");
    // The ingress's route configuration and one per sidecar (reviews, api).
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(versions.iter().all(|(_, v)| v == "1"), "{versions:?}");
    // jason's route (fault delay 7s) vs the weighted default route.
    let out = load(
        mesh.ingress_addr(),
        "api.bookinfo.svc.cluster.local",
        "/",
        20,
        2,
        LIMIT,
    );
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    let s: MeshStats = mesh.stats().expect("stats");
    assert!(
        s.hop("ingress")
            .is_some_and(|h| h.downstream_requests >= 20)
    );
}

/// Starts `meshdrill mesh up FILE --dir DIR`; returns the child, the ingress address
/// and a thread draining its stdout.
fn recorded_processes(dir: &std::path::Path) -> Vec<meshdrill::mesh::state::ProcRecord> {
    let st = meshdrill::mesh::state::StateDir::new(dir)
        .read()
        .expect("state");
    std::iter::once(st.envoy)
        .chain(st.replicas.into_iter().filter_map(|r| r.process))
        .collect()
}

#[test]
fn kill_9_of_meshdrill_takes_envoy_and_services_with_it_and_up_reuses_the_dir() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = root().join("scenarios/meshes/go-demo-8.yaml");
    let (child, addr, drain) = spawn_up(&scenario, dir.path());
    let mut child = KillOnDrop(child);
    let procs = recorded_processes(dir.path());
    assert_eq!(procs.len(), 4);
    assert!(procs.iter().all(alive));
    assert_eq!(
        share(&load(addr, "repeater.acme.com", "/", 10, 1, LIMIT), 200),
        1.0
    );
    // kill -9: no chance to clean up; the parent-death signal does it.
    child.0.kill().expect("kill -9");
    let _ = child.0.wait();
    let _ = drain.join();
    let start = std::time::Instant::now();
    while procs.iter().any(alive) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!procs.iter().any(alive), "orphans: {procs:?}");
    assert!(dir.path().join("state.json").exists(), "stale state left");
    // Commands on the dead mesh say so (exit 3) instead of timing out.
    let (code, _, err) = run(meshdrill()
        .args(["fault", "abort", "go-demo-8", "--status", "500", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not running"), "{err}");
    // A new mesh on the same --dir cleans the stale state and runs.
    let (child, addr, drain) = spawn_up(&scenario, dir.path());
    let mut child = KillOnDrop(child);
    let out = load(addr, "repeater.acme.com", "/", 10, 1, LIMIT);
    let statuses: Vec<(u16, Option<u8>)> = out.iter().map(|o| (o.status, o.replica)).collect();
    assert_eq!(
        share(&out, 200),
        1.0,
        "second mesh on the reused dir: {statuses:?}"
    );
    assert_eq!(child.terminate().code(), Some(130));
    let _ = drain.join();
}

const SLOW: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: slow}
spec:
  services:
  - name: slow
    demo: {latency: 300ms}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: slow}
spec:
  hosts: [slow]
  gateways: [gw]
  http:
  - route: [{destination: {host: slow}}]
";

/// The mesh's stats since `before` once `ready` holds of them (polled, at most
/// `LIMIT`); the last reading either way, for the caller's assertions to judge.
fn stats_until(
    mesh: &meshdrill::mesh::RunningMesh,
    before: &MeshStats,
    ready: impl Fn(&MeshStats) -> bool,
) -> MeshStats {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let d = mesh.stats().expect("stats").since(before);
        if ready(&d) || std::time::Instant::now() > deadline {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn timeouts_and_per_try_timeouts_are_enforced_and_counted() {
    let _s = serial();
    let mesh = start(SLOW);
    let cluster = "outbound|80||slow.default.svc.cluster.local";
    let timeout = Change::Timeout(IstioDuration::from_millis(100).expect("ms"));
    mesh.apply("slow", &all(), Some(&timeout), &meta())
        .expect("timeout");
    let before = mesh.stats().expect("stats");
    let out = load(
        mesh.ingress_addr(),
        "slow.default.svc.cluster.local",
        "/",
        20,
        4,
        LIMIT,
    );
    assert_eq!(share(&out, 504), 1.0, "{:?}", statuses(&out));
    // Waited on the access log holding the 20 lines, not on its flush interval.
    let d = stats_until(&mesh, &before, |d| {
        d.hop("ingress").is_some_and(|h| h.logged_requests >= 20)
    });
    assert_eq!(d.cluster(cluster).expect("cluster").timeouts, 20);
    assert_eq!(
        d.hop("ingress").expect("hop").response_flags.get("UT"),
        Some(&20)
    );

    // Each try gets 50 ms and is retried (5xx covers a per-try timeout): 3 tries.
    let per_try = Change::Retries {
        retries: RetrySpec {
            attempts: 2,
            per_try_timeout: Some(IstioDuration::from_millis(50).expect("ms")),
            retry_on: Some("5xx".parse().expect("retryOn")),
            retry_remote_localities: None,
        },
        timeout: Some(IstioDuration::from_millis(2000).expect("ms")),
    };
    mesh.apply("slow", &all(), Some(&per_try), &meta())
        .expect("retries");
    let before = mesh.stats().expect("stats");
    let out = load(
        mesh.ingress_addr(),
        "slow.default.svc.cluster.local",
        "/",
        10,
        2,
        LIMIT,
    );
    assert_eq!(share(&out, 504), 1.0, "{:?}", statuses(&out));
    let d = stats_until(&mesh, &before, |d| {
        d.hop("ingress").is_some_and(|h| h.logged_requests >= 10)
    });
    let c = d.cluster(cluster).expect("cluster");
    assert_eq!(c.per_try_timeouts, 30, "{c:?}");
    assert_eq!(c.retries, 20, "{c:?}");
    let hop = d.hop("ingress").expect("hop");
    assert_eq!(hop.amplification(), Some(3.0), "{hop:?}");
}

/// `mesh up --dir` on `dir` is refused, and the user's files there are untouched.
fn refused_and_left_alone(dir: &std::path::Path) {
    let loaded = MeshSpec::parse(WEB, "web.yaml").expect("yaml");
    let e = meshdrill::mesh::RunningMesh::start(
        loaded.spec,
        meshdrill::mesh::MeshOptions {
            dir: Some(dir.into()),
            ..Default::default()
        },
    )
    .expect_err("refused");
    assert!(
        e.to_string().contains("not a meshdrill mesh directory"),
        "{e}"
    );
    assert!(dir.join("logs").exists() && dir.join("notes.txt").exists());
}

#[test]
fn a_dir_that_is_not_a_mesh_dir_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "notes.txt", "mine");
    std::fs::create_dir(dir.path().join("logs")).expect("mkdir");
    refused_and_left_alone(dir.path());
    // A state.json that is not a meshdrill state does not make the dir ours either.
    write(dir.path(), "state.json", "{\"format\": \"theirs\"}");
    refused_and_left_alone(dir.path());
    assert!(dir.path().join("state.json").exists());
}

#[test]
fn a_second_mesh_up_on_a_dir_in_use_is_refused_and_leaves_the_first_running() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let mesh = start_in(WEB, Some(dir.path()));
    let host = "web.default.svc.cluster.local";
    // Same process (so the owner-PID check cannot tell them apart): the lock does.
    let loaded = MeshSpec::parse(WEB, "web.yaml").expect("yaml");
    let e = meshdrill::mesh::RunningMesh::start(
        loaded.spec,
        meshdrill::mesh::MeshOptions {
            exe: Some(env!("CARGO_BIN_EXE_meshdrill").into()),
            dir: Some(dir.path().into()),
            ..Default::default()
        },
    )
    .expect_err("busy");
    assert!(matches!(e, MeshError::Busy { .. }), "{e}");
    // And from the CLI.
    let f = write(dir.path(), "web.yaml", WEB);
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "up"])
        .arg(&f)
        .arg("--dir")
        .arg(dir.path()));
    assert_eq!(
        code, 2,
        "a usage error, not a panic (101) or a target error: {err}"
    );
    assert!(err.contains("already running"), "{err}");
    let out = load(mesh.ingress_addr(), host, "/", 10, 1, LIMIT);
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    assert!(dir.path().join("state.json").exists());
}

#[test]
fn header_matches_and_subsets_pick_replicas_by_label() {
    judge(
        "subsets",
        header_matches_and_subsets_pick_replicas_by_label_once,
    );
}

fn header_matches_and_subsets_pick_replicas_by_label_once() -> Vec<Tally> {
    let _s = serial();
    let mesh = start(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: bookinfo}
spec:
  services:
  - name: reviews
    replicas: 2
    labels: {version: v1}
  - name: reviews
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [gw]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: split
    match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
  - name: default
    route: [{destination: {host: reviews, subset: v1}}]
",
    );
    let jason = crate::common::mesh::load_with(
        mesh.ingress_addr(),
        "reviews.default.svc.cluster.local",
        "/",
        &[("end-user", "jason")],
        40,
        4,
        LIMIT,
    );
    assert!(
        jason
            .iter()
            .all(|o| o.status == 200 && o.replica == Some(2)),
        "{jason:?}"
    );
    let others = load(
        mesh.ingress_addr(),
        "reviews.default.svc.cluster.local",
        "/",
        40,
        4,
        LIMIT,
    );
    assert!(
        others
            .iter()
            .all(|o| o.status == 200 && matches!(o.replica, Some(0 | 1))),
        "{others:?}"
    );
    // Both v1 replicas serve the default route.
    assert!(
        others.iter().any(|o| o.replica == Some(0)) && others.iter().any(|o| o.replica == Some(1))
    );
    let split = load(
        mesh.ingress_addr(),
        "reviews.default.svc.cluster.local",
        "/split",
        1000,
        8,
        LIMIT,
    );
    assert_eq!(split.len(), 1000);
    assert!(
        split.iter().all(|o| o.status == 200),
        "{:?}",
        statuses(&split)
    );
    let v2 = split.iter().filter(|o| o.replica == Some(2)).count() as u64;
    vec![Tally::share(
        "v2 in the 50/50 weighted split",
        v2,
        split.len() as u64,
        0.5,
    )]
}

#[test]
fn a_bad_mesh_file_names_file_line_and_field_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {name: x}\nspec:\n  services:\n  - name: web\n    demo:\n      failRate: 2\n",
    );
    let (code, _, err) = run(meshdrill().args(["mesh", "up"]).arg(&f));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.yaml:8: spec.services[0].demo.failRate: invalid value 2"),
        "{err}"
    );
}

#[test]
fn a_user_command_replica_gets_its_port() {
    let _s = serial();
    let mesh = start(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: user}
spec:
  services:
  - name: files
    command: [python3, -m, http.server, '{port}', --bind, 127.0.0.1]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: files}
spec:
  hosts: [files]
  gateways: [gw]
  http:
  - route: [{destination: {host: files}}]
",
    );
    let out = load(
        mesh.ingress_addr(),
        "files.default.svc.cluster.local",
        "/",
        5,
        1,
        LIMIT,
    );
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    let st = mesh.state().expect("state");
    let rec = st.replicas[0].process.clone().expect("running");
    assert!(
        rec.cmdline
            .iter()
            .any(|a| *a == st.replicas[0].port.to_string()),
        "{rec:?}"
    );
    drop(mesh);
    assert!(!alive(&rec), "the user's process is stopped with the mesh");
}

#[test]
fn an_fqdn_virtual_service_applies_to_a_call_by_short_name_and_other_namespaces_do_not() {
    let _s = serial();
    let mesh = start(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: fqdn}
spec:
  services:
  - name: front
    demo: {forward: http://back/}
  - name: front2
    demo: {forward: http://ratings/}
  - name: back
  - name: ratings
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: [front.acme.com, front2.acme.com]
  gateways: [gw]
  http:
  - match: [{authority: {exact: front.acme.com}}]
    route: [{destination: {host: front}}]
  - route: [{destination: {host: front2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: back}
spec:
  hosts: [back.default.svc.cluster.local]
  http:
  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: back.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: prod}
spec:
  hosts: [ratings]
  http:
  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
",
    );
    // front calls `back` by its short name: the FQDN VirtualService's fault applies.
    let out = load(mesh.ingress_addr(), "front.acme.com", "/", 20, 2, LIMIT);
    assert_eq!(share(&out, 418), 1.0, "{:?}", statuses(&out));
    // A VirtualService of namespace prod does not touch the local (default) ratings.
    let out = load(mesh.ingress_addr(), "front2.acme.com", "/", 20, 2, LIMIT);
    assert_eq!(share(&out, 200), 1.0, "{:?}", statuses(&out));
    // At the gateway a short name matches only as its FQDN.
    let out = load(mesh.ingress_addr(), "front", "/", 5, 1, LIMIT);
    assert_eq!(share(&out, 404), 1.0, "{:?}", statuses(&out));
}

#[test]
fn an_empty_match_is_a_presence_match_and_a_rejected_initial_config_fails_start() {
    let _s = serial();
    // A header or query match with no match type is a presence match, which Envoy
    // accepts. (`regex: "*"` means "present" only under withoutHeaders: Istio's
    // validation rejects it in headers and queryParams, and so does the local mesh.)
    let mesh = start(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: star}
spec:
  services:
  - name: web
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  gateways: [gw]
  http:
  - match: [{headers: {x-user: {}}, queryParams: {debug: {}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - route: [{destination: {host: web}}]
",
    );
    let host = "web.default.svc.cluster.local";
    let with = crate::common::mesh::load_with(
        mesh.ingress_addr(),
        host,
        "/?debug=1",
        &[("x-user", "anyone")],
        10,
        1,
        LIMIT,
    );
    assert_eq!(share(&with, 418), 1.0, "{:?}", statuses(&with));
    let without = load(mesh.ingress_addr(), host, "/?debug=1", 10, 1, LIMIT);
    assert_eq!(share(&without, 200), 1.0, "{:?}", statuses(&without));
    drop(mesh);
    // A configuration Envoy rejects (an RE2 program over Envoy's size limit) fails
    // start-up with Envoy's reason instead of serving nothing.
    let yaml = format!("{WEB}    match: [{{uri: {{regex: '/[a-z]{{1000}}'}}}}]\n");
    let loaded = MeshSpec::parse(&yaml, "big.yaml").expect("parse");
    let e = crate::common::mesh::try_start(loaded.spec).expect_err("rejected");
    assert!(matches!(e, MeshError::InitialRejected { .. }), "{e}");
    assert!(e.to_string().contains("program size"), "{e}");
}

#[test]
fn ignore_uri_case_without_headers_port_and_gateways_pick_traffic_on_envoy() {
    let _s = serial();
    let mesh = start(crate::mesh_translate::MATCH_FIELDS);
    let versions = envoy::route_versions(mesh.admin()).expect("versions");
    assert!(versions.iter().all(|(_, v)| v == "1"), "{versions:?}");
    let host = "api.default.svc.cluster.local";
    let get = |path: &str, headers: &[(&str, &str)]| {
        let out =
            crate::common::mesh::load_with(mesh.ingress_addr(), host, path, headers, 3, 1, LIMIT);
        statuses(&out)
    };
    let only = |s: std::collections::BTreeMap<u16, usize>| -> Vec<u16> { s.into_keys().collect() };
    assert_eq!(only(get("/API/x", &[])), [201], "ignoreUriCase");
    assert_eq!(only(get("/w", &[])), [202], "withoutHeaders, header absent");
    assert_eq!(only(get("/w", &[("x-canary", "no")])), [202]);
    assert_eq!(only(get("/w", &[("x-canary", "yes")])), [200]);
    assert_eq!(only(get("/w", &[("x-debug", "1")])), [200]);
    assert_eq!(
        only(get("/p", &[])),
        [200],
        "match.port 8080 is not the gateway's"
    );
    assert_eq!(
        only(get("/m", &[])),
        [200],
        "gateways: [mesh] is not the ingress"
    );
    assert_eq!(only(get("/g", &[])), [452], "gateways: [default/gw]");
}

/// A DestinationRule's `maxRetries` is Envoy's retry circuit breaker: at 1, the
/// retries of concurrent failing requests overflow it. (`maxRetries: 0` is read as
/// unset by istiod, like the fixture's — checked here on Envoy too; see tests/data/istiod/.)
#[test]
fn destination_rule_max_retries_overflows_retries_on_envoy() {
    let _s = serial();
    let yaml = crate::mesh_translate::TRAFFIC_POLICY.replace("maxRetries: 0", "maxRetries: 1");
    let front = front_after_600_requests(&yaml);
    assert!(front.retry_overflow > 0, "{front:?}");
    assert!(front.retries > 0, "{front:?}");

    // The fixture as written, `maxRetries: 0`: read as unset (2^32 − 1), as istiod
    // does, so the same load retries and nothing overflows. (Copied as 0, every retry
    // overflowed: this went red before the fix.)
    let front = front_after_600_requests(crate::mesh_translate::TRAFFIC_POLICY);
    assert!(front.retries > 0, "{front:?}");
    assert_eq!(front.retry_overflow, 0, "{front:?}");
}

/// The `front` cluster's counters over 600 requests on 8 connections to a new mesh.
fn front_after_600_requests(yaml: &str) -> meshdrill::mesh::stats::ClusterStats {
    let mesh = start(yaml);
    let before = mesh.stats().expect("stats");
    let out = load(
        mesh.ingress_addr(),
        "front.default.svc.cluster.local",
        "/",
        600,
        8,
        LIMIT,
    );
    assert_eq!(out.len(), 600);
    let d = mesh.stats().expect("stats").since(&before);
    d.cluster("outbound|80||front.default.svc.cluster.local")
        .expect("front")
        .clone()
}

/// PIDs of the live (non-zombie) processes in process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        if rest.first() != Some(&"Z") && rest.get(2).and_then(|g| g.parse().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

fn wait_group_gone(pgid: u32) -> Vec<u32> {
    let start = std::time::Instant::now();
    loop {
        let m = group_members(pgid);
        if m.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mesh_kill_and_stop_take_a_user_command_s_children_with_it() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let mesh = start_in(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: forking}
spec:
  services:
  - name: files
    replicas: 2
    command: [sh, -c, 'sleep 297 & exec python3 -m http.server {port} --bind 127.0.0.1']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: files}
spec:
  hosts: [files]
  gateways: [gw]
  http:
  - route: [{destination: {host: files}}]
",
        Some(dir.path()),
    );
    let st = mesh.state().expect("state");
    let groups: Vec<u32> = st
        .replicas
        .iter()
        .filter_map(|r| r.process.as_ref().and_then(|p| p.pgid))
        .collect();
    assert_eq!(groups.len(), 2, "{:?}", st.replicas);
    for g in &groups {
        assert!(
            group_members(*g).len() >= 2,
            "server and sleep in group {g}"
        );
    }
    // `mesh kill` (another process, from the state file) kills the whole group.
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "kill", "files", "--replica", "0", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        wait_group_gone(groups[0]),
        Vec::<u32>::new(),
        "left after mesh kill"
    );
    assert!(group_members(groups[1]).len() >= 2);
    // Stopping the mesh stops the other group, children included.
    drop(mesh);
    assert_eq!(
        wait_group_gone(groups[1]),
        Vec::<u32>::new(),
        "left after stop"
    );
}

#[test]
fn stats_wait_for_the_access_log_to_hold_every_completed_request() {
    let _s = serial();
    let mesh = start(WEB);
    let before = mesh.stats().expect("stats");
    let out = load(
        mesh.ingress_addr(),
        "web.default.svc.cluster.local",
        "/",
        300,
        8,
        LIMIT,
    );
    assert_eq!(out.len(), 300);
    // Read at once: Envoy flushes its access log every 250 ms, stats wait for it.
    let d = mesh.stats().expect("stats").since(&before);
    let h = d.hop("ingress").expect("ingress");
    assert_eq!(h.completed_requests, 300, "{h:?}");
    assert_eq!(h.logged_requests, 300, "{h:?}");
    assert_eq!(h.amplification(), Some(1.0), "{h:?}");
}

/// Waits (bounded) until `pid` is gone or a zombie; whether it is gone.
fn wait_pid_gone(pid: u32) -> bool {
    let start = std::time::Instant::now();
    loop {
        let live = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| st.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z'));
        if !live {
            return true;
        }
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) for the PID a replica wrote to `file`.
fn read_pid_file(file: &std::path::Path) -> u32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no PID in {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A mesh file whose replica's shell starts a background `sleep` (a grandchild of
/// meshdrill) and writes its PID to `pid_file`.
fn forking_mesh(pid_file: &std::path::Path) -> String {
    format!(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {{name: forking}}
spec:
  services:
  - name: files
    command: [/bin/sh, -c, 'sleep 296 & echo $! > {}; exec python3 -m http.server {{port}} --bind 127.0.0.1']
",
        pid_file.display()
    )
}

#[test]
fn kill_9_of_mesh_up_takes_a_user_command_s_grandchildren_with_it() {
    let _s = serial();
    let files = tempfile::tempdir().expect("tmp");
    let dir = tempfile::tempdir().expect("tmp");
    let pid_file = files.path().join("grandchild.pid");
    let f = write(files.path(), "forking.yaml", forking_mesh(&pid_file));
    let (child, _addr, drain) = spawn_up(&f, dir.path());
    let mut child = KillOnDrop(child);
    let grandchild = read_pid_file(&pid_file);
    assert!(pid_alive(grandchild), "the sleep runs");
    let g = meshdrill::mesh::state::StateDir::new(dir.path())
        .read()
        .expect("state")
        .replicas[0]
        .process
        .as_ref()
        .and_then(|p| p.pgid)
        .expect("pgid");
    child.0.kill().expect("kill -9");
    let _ = child.0.wait();
    let _ = drain.join();
    // No later command runs: the replica's guard takes the whole group.
    assert!(
        wait_pid_gone(grandchild),
        "the grandchild {grandchild} outlived kill -9 of meshdrill"
    );
    assert_eq!(wait_group_gone(g), Vec::<u32>::new());
}

#[test]
fn mesh_kill_and_a_signalled_mesh_up_take_a_user_command_s_grandchildren_with_them() {
    let _s = serial();
    let files = tempfile::tempdir().expect("tmp");
    let dir = tempfile::tempdir().expect("tmp");
    let pid_file = files.path().join("grandchild.pid");
    let f = write(files.path(), "forking.yaml", forking_mesh(&pid_file));
    let (child, _addr, drain) = spawn_up(&f, dir.path());
    let mut child = KillOnDrop(child);
    let first = read_pid_file(&pid_file);
    std::fs::remove_file(&pid_file).expect("rm");
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "kill", "files", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(wait_pid_gone(first), "left after mesh kill: {first}");
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "restart", "files", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let second = read_pid_file(&pid_file);
    assert!(pid_alive(second));
    let status = child.terminate();
    let _ = drain.join();
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(
        wait_pid_gone(second),
        "left after SIGTERM of mesh up: {second}"
    );
}

/// `mesh restart` whose replica cannot come back (its command now exits at once) fails
/// with mesh up's reason and a non-zero exit; it used to exit 0 ("restarted") because
/// it only waited for its request to be taken. Red without the failure file.
#[test]
fn a_restart_that_fails_in_mesh_up_fails_mesh_restart_with_the_reason() {
    let _s = serial();
    let files = tempfile::tempdir().expect("tmp");
    let dir = tempfile::tempdir().expect("tmp");
    let flag = write(files.path(), "may-start", "");
    let f = write(
        files.path(),
        "flaky.yaml",
        format!(
            "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {{name: flaky}}
spec:
  services:
  - name: files
    command: [/bin/sh, -c, 'test -e {} || {{ echo no flag file; exit 7; }}; exec python3 -m http.server {{port}} --bind 127.0.0.1']
",
            flag.display()
        ),
    );
    let (child, _addr, drain) = spawn_up(&f, dir.path());
    let mut child = KillOnDrop(child);
    std::fs::remove_file(&flag).expect("rm flag");
    let (code, out, err) = run(meshdrill()
        .args(["mesh", "restart", "files", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("could not restart files replica 0"), "{err}");
    assert!(!out.contains("restarted"), "{out}");
    // A restart that can succeed again succeeds, and says so.
    write(files.path(), "may-start", "");
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "restart", "files", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let status = child.terminate();
    let _ = drain.join();
    assert_eq!(status.code(), Some(130), "{status}");
}

#[test]
fn a_dir_that_is_a_file_or_a_foreign_dir_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = write(tmp.path(), "web.yaml", WEB);
    let file = write(tmp.path(), "a-file", "mine");
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    write(&foreign, "notes.txt", "mine");
    for (dir, says) in [
        (&file, "not a directory"),
        (&foreign, "not a meshdrill mesh directory"),
    ] {
        let (code, _, err) = run(meshdrill()
            .args(["mesh", "up"])
            .arg(&f)
            .arg("--dir")
            .arg(dir));
        assert_eq!(code, 2, "{}: {err}", dir.display());
        assert!(err.contains(says) && err.contains("--dir"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "mine");
    assert_eq!(
        std::fs::read_dir(&foreign).expect("dir").count(),
        1,
        "nothing was added to the foreign dir"
    );
}

#[test]
fn mesh_kill_and_restart_of_a_service_with_0_replicas_say_so() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let _mesh = start_in(
        &WEB.replace(
            "    replicas: 2\n",
            "    replicas: 2\n  - name: idle\n    replicas: 0\n",
        ),
        Some(dir.path()),
    );
    for (verb, says) in [
        ("kill", "nothing to kill"),
        ("restart", "nothing to restart"),
    ] {
        let (code, out, err) = run(meshdrill()
            .args(["mesh", verb, "idle", "--mesh"])
            .arg(dir.path()));
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out,
            format!("idle: 0 replicas (replicas: 0 in the mesh file); {says}\n")
        );
        assert!(!err.contains("no service"), "{err}");
    }
    // An unknown service is still one.
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "kill", "nope", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no service \"nope\""), "{err}");
}

#[test]
fn amplification_leaves_aborted_requests_out_and_a_reset_window_counts_only_what_follows() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let mesh = start_in(WEB, Some(dir.path()));
    let host = "web.default.svc.cluster.local";
    mesh.apply("web", &all(), Some(&abort(503, 50.0)), &meta())
        .expect("apply");
    let stats = |args: &[&str]| {
        let (code, out, err) = run(meshdrill()
            .args(["mesh", "stats", "-o", "json"])
            .args(args)
            .arg("--mesh")
            .arg(dir.path()));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).expect("json")
    };
    // --since-reset before any --reset: a usage error that says what to do.
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "stats", "--since-reset", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("mesh stats --reset"), "{err}");

    let out = load(mesh.ingress_addr(), host, "/", 400, 8, LIMIT);
    assert_eq!(out.len(), 400);
    let aborted = out.iter().filter(|o| o.status == 503).count() as u64;
    assert!(aborted > 100 && aborted < 300, "{aborted}");
    let j = stats(&[]);
    assert_eq!(j["window"]["since"], "start");
    assert!(
        j["amplification_is"]
            .as_str()
            .is_some_and(|s| s.contains("injected abort")),
        "{j}"
    );
    let ingress = &j["hops"][0];
    assert_eq!(ingress["name"], "ingress");
    assert_eq!(ingress["aborts_injected"], aborted);
    assert_eq!(ingress["routed_requests"], 400 - aborted, "{ingress}");
    // No retries: every request that went upstream went once, aborts or not.
    assert_eq!(ingress["amplification"], 1.0, "{ingress}");

    let (code, text, err) = run(meshdrill()
        .args(["mesh", "stats", "--reset", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("baseline saved"), "{text}");
    let out = load(mesh.ingress_addr(), host, "/", 60, 2, LIMIT);
    assert_eq!(out.len(), 60);
    let aborted = out.iter().filter(|o| o.status == 503).count() as u64;
    for flag in ["--since-reset", "--since"] {
        let j = stats(&[flag]);
        assert_eq!(j["window"]["since"], "reset", "{j}");
        let ingress = &j["hops"][0];
        assert_eq!(ingress["downstream_requests"], 60, "{ingress}");
        assert_eq!(ingress["logged_requests"], 60, "{ingress}");
        assert_eq!(ingress["aborts_injected"], aborted, "{ingress}");
        assert_eq!(ingress["routed_requests"], 60 - aborted, "{ingress}");
    }
    let (code, text, err) = run(meshdrill()
        .args(["mesh", "stats", "--since-reset", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(text.starts_with("since the reset at "), "{text}");
    assert!(text.contains("routed"), "{text}");
}

/// One GET through the ingress with `Host: host` and `headers`; the status and body.
fn get_body(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_demo_forward_mode_passes_request_headers_on_to_header_matched_routes() {
    let _s = serial();
    let mesh = start(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: bookinfo}
spec:
  services:
  - name: productpage
    demo: {forward: http://reviews/}
  - name: reviews
    labels: {version: v1}
  - name: reviews
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage.acme.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: default
    route: [{destination: {host: reviews, subset: v1}}]
",
    );
    let addr = mesh.ingress_addr();
    for _ in 0..5 {
        let (status, body) = get_body(addr, "productpage.acme.com", "/", &[("end-user", "jason")]);
        assert_eq!(
            (status, body.as_str()),
            (200, "hello from reviews replica 1\n")
        );
        let (status, body) = get_body(addr, "productpage.acme.com", "/", &[("end-user", "bob")]);
        assert_eq!(
            (status, body.as_str()),
            (200, "hello from reviews replica 0\n")
        );
    }
}

#[test]
fn the_demo_mesh_exposes_the_rate_limited_limiter_at_the_ingress() {
    let _s = serial();
    let yaml =
        std::fs::read_to_string(root().join("scenarios/meshes/go-demo-8.yaml")).expect("demo");
    let mesh = start(&yaml);
    let addr = mesh.ingress_addr();
    let (status, body) = get_body(addr, "go-demo-8.acme.com", "/limiter", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("hello from go-demo-8 replica"), "{body}");
    // 2 replicas, burst 10 and 5 req/s each: 200 requests cannot all pass.
    let out = load(addr, "go-demo-8.acme.com", "/limiter", 200, 4, LIMIT);
    let st = statuses(&out);
    assert!(st.get(&429).is_some_and(|n| *n > 0), "{st:?}");
    assert!(st.keys().all(|s| *s == 200 || *s == 429), "{st:?}");
    // Only /limiter is exposed on that host.
    assert_eq!(get_body(addr, "go-demo-8.acme.com", "/", &[]).0, 404);
}

#[test]
fn mesh_get_shows_replicas_ingress_hosts_envoy_routes_and_drills() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let mesh = start_in(
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: bookinfo}
spec:
  services:
  - name: reviews
    replicas: 2
    labels: {version: v1}
  - name: reviews
    labels: {version: v2}
  - name: idle
    replicas: 0
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews.acme.com]
  gateways: [gw]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
    timeout: 3s
  - name: split
    route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
    retries: {attempts: 4, retryOn: 5xx}
",
        Some(dir.path()),
    );
    let get = |args: &[&str]| {
        run(meshdrill()
            .args(["mesh"])
            .args(args)
            .arg("--mesh")
            .arg(dir.path()))
    };
    // Nothing drilled, nothing killed.
    let (code, text, err) = get(&["get"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains(&format!(
            "ingress {} answers Host: reviews.acme.com (e.g. curl -H 'Host: reviews.acme.com' {}/",
            mesh.ingress_url(),
            mesh.ingress_url()
        )),
        "{text}"
    );
    assert!(text.contains("DRILLS: none"), "{text}");
    assert!(text.contains("0 replicas"), "{text}");

    mesh.apply("reviews", &all(), Some(&abort(503, 25.0)), &meta())
        .expect("apply");
    let (code, _, err) = run(meshdrill()
        .args(["mesh", "kill", "reviews", "--replica", "1", "--mesh"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = get(&["routes", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["ingress_hosts"], serde_json::json!(["reviews.acme.com"]));
    assert_eq!(j["ingress_url"], mesh.ingress_url());
    let st = mesh.state().expect("state");
    let reviews = &j["services"][0];
    assert_eq!(reviews["name"], "reviews");
    let reps: Vec<(bool, u64, serde_json::Value)> = reviews["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| {
            (
                r["up"].as_bool().unwrap_or(true),
                r["port"].as_u64().unwrap_or(0),
                r["labels"]["version"].clone(),
            )
        })
        .collect();
    let ports = &st.replica_ports["reviews"];
    assert_eq!(
        reps,
        vec![
            (true, u64::from(ports[0]), "v1".into()),
            (false, u64::from(ports[1]), "v1".into()),
            (true, u64::from(ports[2]), "v2".into()),
        ]
    );
    assert_eq!(
        reviews["replicas"][0]["pid"],
        st.replicas[0].process.as_ref().expect("up").pid
    );
    assert_eq!(reviews["replicas"][1]["pid"], serde_json::Value::Null);
    assert_eq!(j["services"][1]["name"], "idle");
    assert_eq!(j["services"][1]["replicas"], serde_json::json!([]));
    let ingress: Vec<&serde_json::Value> = j["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter(|r| r["hop"] == "ingress")
        .collect();
    assert_eq!(ingress.len(), 2, "{ingress:?}");
    let (jason, split) = (ingress[0], ingress[1]);
    assert_eq!(jason["name"], "jason");
    assert_eq!(jason["virtual_host"], "default/reviews");
    assert_eq!(jason["match"], "prefix /, header end-user = jason");
    assert_eq!(jason["timeout"], "3s");
    assert_eq!(jason["fault"], "abort 503 on 25%");
    let dests = |r: &serde_json::Value| -> Vec<(String, u64)> {
        r["destinations"]
            .as_array()
            .expect("destinations")
            .iter()
            .map(|d| {
                (
                    d["cluster"].as_str().unwrap_or("").to_string(),
                    d["weight"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(dests(jason).len(), 1);
    assert!(dests(jason)[0].0.contains("v2") && dests(jason)[0].1 == 100);
    let sd = dests(split);
    assert_eq!(
        sd.iter().map(|d| d.1).collect::<Vec<_>>(),
        [80, 20],
        "{sd:?}"
    );
    assert!(sd[0].0.contains("v1") && sd[1].0.contains("v2"), "{sd:?}");
    assert_eq!(split["retries"], "4 on 5xx");
    assert_eq!(split["fault"], "abort 503 on 25%");
    let drills = j["drills"].as_array().expect("drills");
    assert_eq!(drills.len(), 1);
    assert_eq!(drills[0]["virtual_service"], "default/reviews");
    assert!(drills[0]["expires"].is_string());
    let (code, text, err) = get(&["get"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("DRILLS\n  default/reviews: abort HTTP 503 on 25%"),
        "{text}"
    );
    assert!(text.contains(" down "), "{text}");
    // --dir is accepted as --mesh is.
    let (code, _, err) = run(meshdrill().args(["mesh", "get", "--dir"]).arg(dir.path()));
    assert_eq!(code, 0, "{err}");
}
