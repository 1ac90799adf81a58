//! `meshdrill run`: every example drill under scenarios/ runs on a real Envoy with its
//! expected verdict and exit code, and bad scenario files are refused before anything
//! starts.
//!
//! The verdicts rest on statistics: each example's objectives sit far from what the
//! drill measures (e.g. 100% or 0% availability against 98%), except the retry
//! validation, whose 3σ bands a correct run misses with probability ~0.3% per check;
//! its test returns what each check measured, and a miss is judged on the pooled
//! first and second samples ([`crate::common::stats::judge`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{meshdrill, root, run, write};

/// Runs `scenarios/<name>.yaml` and returns (exit code, stdout, stderr, journal).
pub fn run_example(name: &str, extra: &[&str]) -> (i32, String, String, Value) {
    let tmp = tempfile::tempdir().expect("tmp");
    let journal = tmp.path().join("journal.json");
    let (code, out, err) = run(meshdrill()
        .arg("run")
        .arg(root().join("scenarios").join(format!("{name}.yaml")))
        .arg("--journal")
        .arg(&journal)
        .args(extra)
        .env("TMPDIR", tmp.path()));
    let j: Value = std::fs::read(&journal)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    assert_journal_schema(&j);
    // Whatever the verdict: nothing of the mesh is left behind.
    assert_eq!(
        crate::common::mesh::mesh_temp_dirs(tmp.path()),
        Vec::<String>::new(),
        "{name}: a mesh directory was left behind"
    );
    (code, out, err, j)
}

/// The journal has the shape schema/journal.json documents.
pub fn assert_journal_schema(j: &Value) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/journal.json")).expect("schema/journal.json"),
    )
    .expect("the schema is JSON");
    let errors = crate::common::schema::check(&schema, &schema, j, "$");
    assert!(errors.is_empty(), "{errors:#?}");
}

fn phase<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no phase {name:?} in {}", j["phases"]))
}

fn slo<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["slos"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no slo {name:?} in {p}"))
}

/// Every change the drill made was rolled back (or cleared by the method itself).
fn assert_nothing_left(j: &Value) {
    for r in j["rollbacks"].as_array().expect("rollbacks") {
        assert_eq!(r["ok"], true, "rollback failed: {r}");
    }
    assert!(
        j["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "the drill changed nothing: {}",
        j["changes"]
    );
}

// === the examples ===

#[test]
fn network_failure_holds_under_partial_failure_and_breaches_under_total() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("network-failure", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(j["verdict"], "held", "{}", j["verdictText"]);
    let partial = phase(&j, "partial failure, retries on (must hold)");
    assert_eq!(partial["verdict"], "pass");
    assert_eq!(slo(partial, "availability")["verdict"], "pass");
    let total = phase(&j, "total failure (must breach)");
    assert_eq!(total["verdict"], "pass", "the breach was seen: {total}");
    assert_eq!(slo(total, "availability")["verdict"], "fail");
    assert_eq!(j["recovery"][0]["verdict"], "pass", "{}", j["recovery"]);
    assert!(out.contains("verdict: HELD"), "{out}");
    assert_nothing_left(&j);
    // The interval series covers the drill, second by second.
    let series = j["series"].as_array().expect("series");
    assert!(series.len() >= 18, "{} seconds", series.len());
}

#[test]
fn total_network_failure_breaks_the_slos_and_exits_1() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("total-network-failure", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["verdict"], "broke");
    assert!(
        j["verdictText"]
            .as_str()
            .is_some_and(|t| t.contains("broke at step 2")),
        "{}",
        j["verdictText"]
    );
    let hold = phase(&j, "total failure, retries on");
    assert_eq!(slo(hold, "availability")["measuredText"], "0%");
    // The fault was cleared by the method and the steady state came back.
    assert_eq!(phase(&j, "steady state after")["verdict"], "pass");
    assert_nothing_left(&j);
}

#[test]
fn a_per_try_timeout_turns_a_15s_delay_into_a_fast_retry() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("delay", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let hold = phase(&j, "hold 10s");
    assert_eq!(hold["verdict"], "pass", "{hold}");
    // Half the first tries were slow: the p90 is a retry after 500 ms, far below 15 s.
    let p90 = slo(hold, "latency")["measured"].as_f64().expect("p90");
    assert!((500.0..2500.0).contains(&p90), "p90 {p90} ms");
    assert_nothing_left(&j);
}

#[test]
fn without_a_per_try_timeout_the_delay_breaks_the_slos() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("delay-no-per-try-timeout", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let hold = phase(&j, "hold 10s");
    assert_eq!(hold["verdict"], "fail");
    // Half the requests ran into the client's 5 s timeout: they count in the latency.
    let p90 = slo(hold, "latency")["measured"].as_f64().expect("p90");
    assert!(p90 >= 5000.0, "p90 {p90} ms");
    let timeouts = hold["summary"]["errorKinds"]["timeout"]
        .as_u64()
        .unwrap_or(0);
    assert!(timeouts > 50, "{}", hold["summary"]);
    assert_nothing_left(&j);
}

#[test]
fn a_flood_on_a_rate_limited_path_gets_429s_no_5xx_and_recovers() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("dos", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let flood = phase(&j, "flood, 20 → 150 req/s");
    assert_eq!(flood["verdict"], "pass", "{flood}");
    let f = &flood["flood"];
    assert!(f["summary"]["requests"].as_u64().unwrap_or(0) > 300, "{f}");
    assert!(
        f["summary"]["statusCodes"]["429"].as_u64().unwrap_or(0) > 0,
        "{f}"
    );
    assert_eq!(slo(f, "no-5xx")["measured"], 0.0);
    // The legitimate client was throttled during the flood (expected), and back to
    // 100% success within the limiter's 15 s cooldown.
    assert_eq!(slo(flood, "success")["verdict"], "fail");
    let rec = &j["recovery"][0];
    assert_eq!(rec["verdict"], "pass", "{rec}");
    assert!(rec["measured"].as_f64().is_some_and(|s| s <= 20.0), "{rec}");
}

#[test]
fn a_connection_pool_sheds_a_flood_while_the_neighbour_holds() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("dos-connection-pool", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let flood = phase(&j, "flood catalog at 200 req/s");
    assert_eq!(slo(flood, "availability")["verdict"], "pass");
    let shed = flood["flood"]["summary"]["statusCodes"]["503"]
        .as_u64()
        .unwrap_or(0);
    assert!(shed > 0, "no 503 shed: {}", flood["flood"]["summary"]);
    // Envoy's overflow flag on the ingress hop: the 503s are shed load, not errors.
    let flags = &flood["mesh"]["hops"][0]["response_flags"];
    assert!(flags["UO"].as_u64().unwrap_or(0) > 0, "{flags}");
}

#[test]
fn retry_validation_matches_three_policies_within_3_sigma() {
    crate::common::stats::judge("retry validation", retry_validation_once);
}

/// One run of the retry-validation drill: for each of its three checks, the success
/// and the amplification it measured (tallies, judged pooled by the caller), and the
/// product's own verdict, which must agree with the 3σ judgement of this sample.
fn retry_validation_once() -> Vec<crate::common::stats::Tally> {
    use crate::common::stats::Tally;
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("retry-validation", &[]);
    let holds: Vec<&Value> = j["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter(|p| !p["retryCheck"].is_null())
        .collect();
    assert_eq!(holds.len(), 3, "{out}\n{err}");
    let predicted: Vec<f64> = holds
        .iter()
        .map(|h| h["retryCheck"]["predicted"]["success"].as_f64().expect("p"))
        .collect();
    assert!((predicted[0] - 0.875).abs() < 1e-9, "{predicted:?}");
    assert!((predicted[1] - 0.5).abs() < 1e-9, "{predicted:?}");
    assert!(
        (predicted[2] - (1.0 - 0.3f64.powi(4))).abs() < 1e-9,
        "{predicted:?}"
    );
    let num = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("a number: {v}"));
    let mut tallies = Vec::new();
    let mut all_pass = true;
    for (i, h) in holds.iter().enumerate() {
        let c = &h["retryCheck"];
        assert_eq!(c["retryOverflow"], 0, "{c}");
        // Success: the phase's requests and their 2xx/3xx answers.
        let requests = h["summary"]["requests"].as_u64().expect("requests");
        let succeeded: u64 = h["summary"]["statusCodes"]
            .as_object()
            .expect("status codes")
            .iter()
            .filter(|(k, _)| k.parse::<u16>().is_ok_and(|s| (200..400).contains(&s)))
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        let p = &c["predicted"];
        let success = Tally::share(
            format!("policy {} success", i + 1),
            succeeded,
            requests,
            num(&p["success"]),
        );
        assert!(
            (num(&c["measuredSuccess"]) - success.observed()).abs() < 1e-9,
            "{c}"
        );
        // Amplification: Envoy's upstream requests and retries on the retrying hop's
        // cluster (the ingress calling repeater).
        let cluster = h["mesh"]["clusters"]
            .as_array()
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["name"] == "outbound|80||repeater.default.svc.cluster.local")
            })
            .unwrap_or_else(|| panic!("repeater's cluster: {}", h["mesh"]));
        let upstream = cluster["upstream_requests"].as_u64().expect("upstream");
        let retries = cluster["retries"].as_u64().expect("retries");
        let amplification = Tally::mean(
            format!("policy {} upstream requests per request", i + 1),
            upstream as f64,
            upstream - retries,
            num(&p["amplification"]),
            num(&p["amplificationSd"]),
        );
        assert!(
            (num(&c["measuredAmplification"]) - amplification.observed()).abs() < 1e-9,
            "{c}"
        );
        let within = success.within_3_sigma() && amplification.within_3_sigma();
        assert_eq!(
            c["verdict"] == "pass",
            within,
            "the drill's verdict is the 3σ judgement of its sample: {c}\n{out}"
        );
        all_pass &= within;
        tallies.push(success);
        tallies.push(amplification);
    }
    assert_eq!(code, if all_pass { 0 } else { 1 }, "{out}\n{err}");
    // The two-hop chain's worst case is reported.
    assert!(
        j["retryChains"][0]
            .as_str()
            .is_some_and(|c| c.contains("33 calls")),
        "{}",
        j["retryChains"]
    );
    tallies
}

#[test]
fn a_search_finds_the_failure_rate_a_retry_policy_absorbs() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("retry-margin", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let s = &j["searches"][0];
    // attempts 3 on 5xx: availability >= 99% holds in theory up to 1 - p^4 >= 0.99,
    // p <= 31.6%. With 500 requests a probe, the search can show it up to less.
    let holds = s["holdsUpTo"].as_f64().expect("some probe held");
    let breaks = s["breaksAt"].as_f64().expect("some probe did not");
    assert!(holds < breaks, "{s}");
    assert!((5.0..=31.6).contains(&holds), "{s}");
    assert!(breaks <= 50.0, "{s}");
    // Probes are not the drill's verdict; the steady states held.
    assert_eq!(j["verdict"], "held", "{}", j["verdictText"]);
    assert_nothing_left(&j);
}

#[test]
fn killing_one_of_three_replicas_holds() {
    let _s = crate::common::mesh::serial();
    let (code, out, err, j) = run_example("replica-kill", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(phase(&j, "one replica of three down")["verdict"], "pass");
    assert_eq!(phase(&j, "steady state after")["verdict"], "pass");
}

#[test]
fn killing_the_only_replica_breaks_and_exits_1() {
    let _s = crate::common::mesh::serial();
    // With its stdout closed (`meshdrill run ... | head -1`): the drill runs on, rolls
    // back, and the exit code is still the verdict's.
    let tmp = tempfile::tempdir().expect("tmp");
    let journal = tmp.path().join("journal.json");
    let mut child = meshdrill()
        .arg("run")
        .arg(root().join("scenarios/replica-kill-single.yaml"))
        .arg("--journal")
        .arg(&journal)
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_journal_schema(&j);
    let down = phase(&j, "the only replica down");
    assert_eq!(slo(down, "availability")["measuredText"], "0%");
    // Restarted by the method: the steady state is back.
    assert_eq!(phase(&j, "steady state after")["verdict"], "pass");
    assert_eq!(
        crate::common::mesh::mesh_temp_dirs(tmp.path()),
        Vec::<String>::new()
    );
}

#[test]
fn every_shipped_scenario_validates_and_dry_runs_without_touching_anything() {
    let dir = root().join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let (code, out, err) = run(meshdrill().arg("validate").args(&files));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches("Scenario").count(), files.len(), "{out}");
    for f in &files {
        let tmp = tempfile::tempdir().expect("tmp");
        let (code, out, err) = run(meshdrill()
            .arg("run")
            .arg(f)
            .arg("--dry-run")
            .env("TMPDIR", tmp.path()));
        assert_eq!(code, 0, "{}: {out}\n{err}", f.display());
        assert!(out.contains("dry run"), "{out}");
        // Nothing was started.
        assert_eq!(
            crate::common::mesh::mesh_temp_dirs(tmp.path()),
            Vec::<String>::new()
        );
    }
}

// === bad input: exit 2, file:line: field, nothing started ===

const GOOD: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {name: t}
spec:
  target: {mesh: mesh.yaml}
  targets: [repeater.acme.com]
  load: {url: 'http://{ingress}/', headers: {Host: repeater.acme.com}, rate: 10}
  slos:
  - {name: availability, metric: availability, objective: '>= 99%'}
  method:
  - fault: {virtualService: go-demo-8, abort: {httpStatus: 500, percentage: 50}}
  - hold: 1s
";

fn bad_scenario(dir: &Path, text: &str) -> (i32, String) {
    write(
        dir,
        "mesh.yaml",
        std::fs::read_to_string(root().join("scenarios/meshes/go-demo-8.yaml")).expect("mesh"),
    );
    let f = write(dir, "s.yaml", text);
    let (code, out, err) = run(meshdrill().arg("run").arg(&f).env("TMPDIR", dir));
    assert!(out.is_empty() || !out.contains("drill "), "started: {out}");
    assert_eq!(
        crate::common::mesh::mesh_temp_dirs(dir),
        Vec::<String>::new()
    );
    (code, err)
}

#[test]
fn bad_scenarios_are_refused_with_file_line_and_field_before_anything_starts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases: [(&str, String, &[&str]); 7] = [
        (
            "an unknown step type",
            GOOD.replace("- hold: 1s", "- sleep: 1s"),
            &["s.yaml:12", "spec.method[1]", "sleep"],
        ),
        (
            "an unknown SLO metric",
            GOOD.replace("metric: availability", "metric: uptime"),
            &["s.yaml:9", "metric", "uptime"],
        ),
        (
            "load outside the blast radius",
            GOOD.replace("Host: repeater.acme.com}", "Host: evil.example.com}"),
            &["s.yaml:7", "spec.load.headers.Host", "outside spec.targets"],
        ),
        (
            "an objective that cannot be measured (throughput of the rate asked, closed loop)",
            GOOD.replace(", rate: 10}", "}").replace(
                "metric: availability, objective: '>= 99%'",
                "metric: throughput, objective: '>= 95%'",
            ),
            &["s.yaml:9", "objective", "rate"],
        ),
        (
            "a mesh file that is not there",
            GOOD.replace("mesh: mesh.yaml", "mesh: nowhere.yaml"),
            &["s.yaml:5", "spec.target.mesh", "nowhere.yaml"],
        ),
        (
            "a YAML error",
            GOOD.replace("  - hold: 1s", "  - hold: [1s"),
            &["s.yaml:", "invalid YAML"],
        ),
        (
            "a VirtualService the mesh does not have",
            GOOD.replace("virtualService: go-demo-8", "virtualService: ratings"),
            &["s.yaml:11", "virtualService", "ratings"],
        ),
    ];
    for (what, text, wants) in cases {
        let (code, err) = bad_scenario(tmp.path(), &text);
        assert_eq!(code, 2, "{what}: {err}");
        for w in wants {
            assert!(err.contains(w), "{what}: wanted {w:?} in: {err}");
        }
    }
}

#[test]
fn a_flag_a_target_cannot_honour_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (code, err) = {
        write(
            tmp.path(),
            "mesh.yaml",
            std::fs::read_to_string(root().join("scenarios/meshes/go-demo-8.yaml")).expect("mesh"),
        );
        let f = write(tmp.path(), "s.yaml", GOOD);
        let (code, _, err) = run(meshdrill()
            .arg("run")
            .arg(&f)
            .args(["-n", "prod"])
            .env("TMPDIR", tmp.path()));
        (code, err)
    };
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("for a cluster target"), "{err}");
}

// === the runner's rules, on a real mesh ===

/// Runs an inline scenario on the go-demo-8 mesh; returns (code, stdout, stderr, journal).
fn run_inline(text: &str) -> (i32, String, String, Value) {
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "mesh.yaml",
        std::fs::read_to_string(root().join("scenarios/meshes/go-demo-8.yaml")).expect("mesh"),
    );
    let f = write(tmp.path(), "s.yaml", text);
    let journal = tmp.path().join("j.json");
    let (code, out, err) = run(meshdrill()
        .arg("run")
        .arg(&f)
        .arg("--journal")
        .arg(&journal)
        .env("TMPDIR", tmp.path()));
    let j = serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_journal_schema(&j);
    assert_eq!(
        crate::common::mesh::mesh_temp_dirs(tmp.path()),
        Vec::<String>::new()
    );
    (code, out, err, j)
}

#[test]
fn nothing_is_injected_when_the_steady_state_does_not_hold() {
    let _s = crate::common::mesh::serial();
    // 1 ms at p50 through two Envoy hops: never met.
    let (code, out, err, j) = run_inline(
        &GOOD
            .replace(
                "metric: availability, objective: '>= 99%'",
                "metric: p50, objective: '< 1us'",
            )
            .replace("  method:", "  steadyState: {duration: 3s}\n  method:")
            .replace("rate: 10}", "rate: 100}"),
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["ending"]["reason"], "steadyStateFailed");
    assert_eq!(j["changes"], serde_json::json!([]), "nothing was injected");
    assert_eq!(j["steps"], serde_json::json!([]), "no step ran");
    assert!(out.contains("nothing was injected"), "{out}");
}

#[test]
fn a_stop_condition_halts_the_method_and_rolls_back() {
    let _s = crate::common::mesh::serial();
    let text = "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {name: stop}
spec:
  target: {mesh: mesh.yaml}
  targets: [repeater.acme.com]
  load: {url: 'http://{ingress}/', headers: {Host: repeater.acme.com}, rate: 50, connections: 32}
  slos:
  - {name: availability, metric: availability, objective: '>= 98%'}
  method:
  - retries: {virtualService: repeater, attempts: 0}
  - fault: {virtualService: go-demo-8, abort: {httpStatus: 500, percentage: 100}}
  - hold: 30s
  - clear: go-demo-8
  stopConditions:
  - {slo: availability, below: 50%, for: 2s}
";
    let t = std::time::Instant::now();
    let (code, out, err, j) = run_inline(text);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "halted, not held 30 s"
    );
    assert_eq!(j["ending"]["reason"], "stopCondition", "{}", j["ending"]);
    assert!(
        j["stopCondition"]["condition"]
            .as_str()
            .is_some_and(|c| c.contains("availability below 50%")),
        "{}",
        j["stopCondition"]
    );
    assert_eq!(
        j["stopCondition"]["values"].as_array().map(Vec::len),
        Some(2)
    );
    // The clear step never ran; the rollback restored both VirtualServices.
    let restored = j["rollbacks"]
        .as_array()
        .expect("rollbacks")
        .iter()
        .filter(|r| r["outcome"] == "restored")
        .count();
    assert_eq!(restored, 2, "{}", j["rollbacks"]);
    assert!(out.contains("stop condition"), "{out}");
}
