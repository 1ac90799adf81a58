//! `meshdrill run EXPERIMENT`: chaostoolkit experiment files run unchanged on the local
//! mesh (a real Envoy) — holds, deviates, fails before the method, action fails,
//! SIGTERM mid-method — and bad files are refused before anything runs. After every
//! run, the mesh's VirtualServices are exactly as they were and every replica is up.
//! (The cluster path, against the fake API server, is at the end of cluster.rs.)

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::common::mesh::{KillOnDrop, read_until, serial, spawn_up};
use crate::common::{meshdrill, root, run, write};

fn go_demo_8() -> PathBuf {
    root().join("scenarios/meshes/go-demo-8.yaml")
}

pub fn experiment(name: &str) -> PathBuf {
    root().join("experiments").join(name)
}

/// `experiments/<name>` with the first `from` replaced by `to`, written to `dir/<as_>`.
pub fn variant(dir: &Path, name: &str, as_: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(experiment(name)).expect("read the example");
    assert!(text.contains(from), "{name} has no {from:?}");
    write(dir, as_, text.replacen(from, to, 1))
}

/// network.yaml with the delay action's route list pointed at a host no route has.
fn bad_route(dir: &Path) -> PathBuf {
    let to = DELAY_ROUTE.replace("go-demo-8", "no-such-service");
    variant(dir, "network.yaml", "bad-route.yaml", DELAY_ROUTE, &to)
}

/// The delay action's pause, made long enough to interrupt the method during it.
pub const LONG_PAUSE: (&str, &str) = ("    after: 1\n", "    after: 60\n");

/// The delay action's route list (to point it elsewhere).
pub const DELAY_ROUTE: &str =
    "      fixed_delay: 15ms\n      routes:\n      - destination:\n          host: go-demo-8";

/// The running mesh's state (VirtualServices as they are now, replicas).
fn state(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("state.json"))
        .expect("state is JSON")
}

fn virtual_services(dir: &Path) -> Value {
    state(dir)["spec"]["virtualServices"].clone()
}

fn replicas_alive(dir: &Path) -> usize {
    state(dir)["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter(|r| !r["process"].is_null())
        .count()
}

/// A mesh up in a temp dir: (the `mesh up` child, its dir, the VirtualServices at
/// start, the replicas alive at start).
struct Mesh {
    _child: KillOnDrop,
    dir: tempfile::TempDir,
    vs: Value,
    alive: usize,
}

fn mesh() -> Mesh {
    let dir = tempfile::tempdir().expect("tmp");
    let (child, _addr, _drain) = spawn_up(&go_demo_8(), dir.path());
    let vs = virtual_services(dir.path());
    let alive = replicas_alive(dir.path());
    Mesh {
        _child: KillOnDrop(child),
        dir,
        vs,
        alive,
    }
}

impl Mesh {
    /// Nothing left behind: every VirtualService as at start, every replica up.
    fn assert_untouched(&self) {
        assert_eq!(
            virtual_services(self.dir.path()),
            self.vs,
            "the VirtualServices are not as they were"
        );
        assert_eq!(
            replicas_alive(self.dir.path()),
            self.alive,
            "a replica is still down"
        );
    }

    fn run(&self, file: &Path, extra: &[&str]) -> (i32, String, String, Value) {
        let tmp = tempfile::tempdir().expect("tmp");
        let journal = tmp.path().join("journal.json");
        let (code, out, err) = run(meshdrill()
            .arg("run")
            .arg(file)
            .arg("--mesh")
            .arg(self.dir.path())
            .arg("--journal")
            .arg(&journal)
            .args(extra)
            .env_remove("INGRESS_HOST"));
        let j = std::fs::read(&journal)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if !j.is_null() {
            assert_ctk_journal(&j);
        }
        (code, out, err, j)
    }
}

fn names(runs: &Value) -> Vec<String> {
    runs.as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["activity"]["name"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// chaostoolkit's journal keys and values, and meshdrill's under `meshdrill`.
pub fn assert_ctk_journal(j: &Value) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/experiment-journal.json"))
            .expect("schema/experiment-journal.json"),
    )
    .expect("the schema is JSON");
    let errors = crate::common::schema::check(&schema, &schema, j, "$");
    assert!(errors.is_empty(), "{errors:#?}");
    for k in ["before", "after"] {
        let s = &j["steady_states"][k];
        if !s.is_null() {
            let errors = crate::common::schema::check(&schema, &schema["$defs"]["state"], s, k);
            assert!(errors.is_empty(), "{errors:#?}");
        }
    }
    for k in [
        "chaoslib-version",
        "platform",
        "node",
        "experiment",
        "start",
        "end",
        "duration",
        "status",
        "deviated",
        "steady_states",
        "run",
        "rollbacks",
        "meshdrill",
    ] {
        assert!(j.get(k).is_some(), "journal has no {k:?}: {j}");
    }
    assert!(
        ["completed", "failed", "aborted", "interrupted"]
            .contains(&j["status"].as_str().unwrap_or("")),
        "{}",
        j["status"]
    );
    for r in j["run"]
        .as_array()
        .into_iter()
        .chain(j["rollbacks"].as_array())
        .flatten()
    {
        for k in ["activity", "output", "start", "end", "duration", "status"] {
            assert!(r.get(k).is_some(), "run record has no {k:?}: {r}");
        }
        assert!(["succeeded", "failed"].contains(&r["status"].as_str().unwrap_or("")));
    }
}

#[test]
fn abort_then_delay_holds_keeps_both_faults_and_leaves_nothing() {
    let _s = serial();
    let m = mesh();
    let (code, out, err, j) = m.run(&experiment("network.yaml"), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_ctk_journal(&j);
    assert_eq!(j["status"], "completed");
    assert_eq!(j["deviated"], false);
    assert_eq!(j["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(j["steady_states"]["after"]["steady_state_met"], true);
    // The ref entry ran the referenced probe with its own tolerance.
    assert_eq!(
        j["steady_states"]["before"]["probes"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        names(&j["run"]),
        ["abort-failure", "delay", "the-fault-is-there"]
    );
    // What get_virtual_service saw during the method: the delay did not wipe the
    // abort (chaostoolkit replaces the whole fault block).
    let fault = &j["run"][2]["output"]["body"]["spec"]["http"][0]["fault"];
    assert_eq!(fault["abort"]["httpStatus"], 500, "{fault}");
    assert_eq!(fault["delay"]["fixedDelay"], "15ms", "{fault}");
    assert!(out.contains("keeps both"), "{out}");
    assert_eq!(
        names(&j["rollbacks"]),
        ["remove-abort-failure", "remove-delay"]
    );
    for r in j["rollbacks"].as_array().expect("rollbacks") {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    // The rollbacks restored it: meshdrill's clean-up had nothing left to do.
    assert_eq!(j["meshdrill"]["cleanup"], serde_json::json!([]));
    m.assert_untouched();
}

#[test]
fn without_rollbacks_meshdrill_still_undoes_its_changes() {
    let _s = serial();
    let m = mesh();
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(experiment("network.yaml")).expect("read");
    let cut = text.find("rollbacks:").expect("rollbacks");
    let f = write(tmp.path(), "no-rollbacks.yaml", &text[..cut]);
    let (code, out, err, j) = m.run(&f, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("meshdrill restored VirtualService go-demo-8"),
        "{out}"
    );
    assert_eq!(j["meshdrill"]["cleanup"].as_array().map(Vec::len), Some(1));
    m.assert_untouched();

    // --keep-faults leaves them, says so, and `clear` undoes them.
    let (code, out, _err, _j) = m.run(&f, &["--keep-faults"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kept: VirtualService go-demo-8"), "{out}");
    assert_ne!(virtual_services(m.dir.path()), m.vs);
    let (code, out, err) = run(meshdrill()
        .args(["clear", "go-demo-8", "--mesh"])
        .arg(m.dir.path()));
    assert_eq!(code, 0, "{out}\n{err}");
    m.assert_untouched();
}

#[test]
fn terminate_pods_deviates_and_the_replica_comes_back() {
    let _s = serial();
    let m = mesh();
    let (code, out, err, j) = m.run(&experiment("terminate-pod.yaml"), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_ctk_journal(&j);
    assert_eq!(j["deviated"], true, "{}", j["steady_states"]);
    assert_eq!(
        j["status"], "failed",
        "a probe raised: chaostoolkit's `failed`"
    );
    let killed = j["run"][0]["output"].as_array().expect("names");
    assert_eq!(killed.len(), 1, "{}", j["run"][0]);
    assert!(
        killed[0]
            .as_str()
            .is_some_and(|n| n.starts_with("go-demo-8-")),
        "{killed:?}"
    );
    // count_pods during the method saw one of the two replicas.
    assert_eq!(j["run"][1]["output"], 1);
    assert!(out.contains("restarted replica go-demo-8/"), "{out}");
    m.assert_untouched();
}

#[test]
fn a_steady_state_that_fails_first_injects_nothing() {
    let _s = serial();
    let m = mesh();
    let tmp = tempfile::tempdir().expect("tmp");
    let f = variant(
        tmp.path(),
        "network.yaml",
        "gate.yaml",
        "tolerance: 200",
        "tolerance: 503",
    );
    let (code, out, err, j) = m.run(&f, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["status"], "completed", "a tolerance miss, not a raise");
    assert_eq!(j["deviated"], false);
    assert_eq!(j["steady_states"]["before"]["steady_state_met"], false);
    assert_eq!(j["run"], serde_json::json!([]), "the method did not run");
    assert_eq!(j["meshdrill"]["changes"], serde_json::json!([]));
    assert!(out.contains("nothing was injected"), "{out}");
    m.assert_untouched();
}

#[test]
fn a_failed_action_fails_the_run_and_rolls_back() {
    let _s = serial();
    let m = mesh();
    let tmp = tempfile::tempdir().expect("tmp");
    // The second action's route list matches nothing: chaostoolkit would PATCH
    // anyway and call it a success.
    let f = bad_route(tmp.path());
    let (code, out, err, j) = m.run(&f, &[]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(j["status"], "failed");
    assert_eq!(
        names(&j["run"]),
        ["abort-failure", "delay"],
        "the method stopped"
    );
    assert_eq!(j["run"][1]["status"], "failed");
    assert!(
        j["run"][1]["exception"][0]
            .as_str()
            .is_some_and(|e| e.contains("no-such-service")),
        "{}",
        j["run"][1]
    );
    m.assert_untouched();
}

#[test]
fn sigterm_mid_method_rolls_back_and_exits_130() {
    let _s = serial();
    let m = mesh();
    let tmp = tempfile::tempdir().expect("tmp");
    let journal = tmp.path().join("j.json");
    let f = variant(
        tmp.path(),
        "network.yaml",
        "long.yaml",
        LONG_PAUSE.0,
        LONG_PAUSE.1,
    );
    let mut child = meshdrill()
        .arg("run")
        .arg(&f)
        .arg("--mesh")
        .arg(m.dir.path())
        .arg("--journal")
        .arg(&journal)
        .env_remove("INGRESS_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let seen = read_until(&mut child, "abort-failure");
    assert!(seen.contains("✓ action abort-failure"), "{seen}");
    let mut child = KillOnDrop(child);
    // Interrupt once the delay is on (its 60 s pause has begun).
    let start = std::time::Instant::now();
    while virtual_services(m.dir.path())
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["metadata"]["name"] == "go-demo-8"))
        .and_then(|v| v.pointer("/spec/http/0/fault/delay"))
        .is_none()
    {
        assert!(start.elapsed().as_secs() < 20, "the delay never landed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = child.terminate();
    assert_eq!(status.code(), Some(130));
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_eq!(j["status"], "interrupted");
    assert_eq!(
        names(&j["rollbacks"]),
        ["remove-abort-failure", "remove-delay"],
        "rollbacks play on an interruption (strategy always)"
    );
    m.assert_untouched();
}

#[test]
fn siege_in_kubectl_run_goes_through_the_mesh() {
    let _s = serial();
    let m = mesh();
    let (code, out, err, j) = m.run(&experiment("siege.yaml"), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let o = &j["run"][0]["output"];
    assert_eq!(o["status"], 0, "{o}");
    let stdout = o["stdout"].as_str().unwrap_or("");
    assert!(stdout.contains("Requests:"), "{stdout}");
    assert!(
        stdout.contains("429: "),
        "the limiter shed the flood: {stdout}"
    );
    assert!(stdout.contains("Concurrency:\t\t50"), "{stdout}");
    m.assert_untouched();
}

#[test]
fn bad_experiments_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = std::fs::read_to_string(experiment("network.yaml")).expect("read");
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown-func.yaml",
            base.replacen("func: add_abort_fault", "func: add_latency", 1),
            &[("INGRESS_HOST", "127.0.0.1:9")],
            "cannot run the python function chaosistio.fault.actions.add_latency",
        ),
        (
            "unknown-module.yaml",
            base.replacen(
                "module: chaosistio.fault.probes",
                "module: chaosaws.ec2.probes",
                1,
            ),
            &[("INGRESS_HOST", "127.0.0.1:9")],
            "chaosk8s.pod.actions.terminate_pods",
        ),
        (
            "missing-env.yaml",
            base.clone(),
            &[],
            "INGRESS_HOST, which is not set",
        ),
        (
            "empty-env.yaml",
            base.clone(),
            &[("INGRESS_HOST", "")],
            "${ingress_host} is empty",
        ),
        (
            "float-tolerance.yaml",
            base.replacen("tolerance: 200", "tolerance: 200.5", 1),
            &[("INGRESS_HOST", "127.0.0.1:9")],
            "tolerance",
        ),
        (
            "bad-arg.yaml",
            base.replacen("http_status: 500", "http_status: 500\n      colour: red", 1),
            &[("INGRESS_HOST", "127.0.0.1:9")],
            "takes no argument \"colour\"",
        ),
    ];
    for (name, text, env, want) in cases {
        let f = write(tmp.path(), name, text);
        let mut cmd = meshdrill();
        cmd.arg("run").arg(&f).env_remove("INGRESS_HOST");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (code, out, err) = run(&mut cmd);
        assert_eq!(code, 2, "{name}: {out}\n{err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}:")),
            "{name}: names the file: {err}"
        );
    }
    // In-cluster load needs a cluster: with no cluster settings at all it says so
    // before anything runs, never skipped.
    let home = tempfile::tempdir().expect("tmp");
    let (code, _out, err) = run(meshdrill()
        .arg("run")
        .arg(experiment("siege.yaml"))
        .env("INGRESS_HOST", "127.0.0.1:9")
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_HOST")
        .env_remove("KUBERNETES_SERVICE_HOST"));
    // Exactly 3 (no cluster to reach), not any non-zero code: a panic is 101.
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("/.kube/config") && err.contains("set KUBECONFIG"),
        "says where it looked and what to set: {err}"
    );
    // Scenario-only flags on an experiment, and experiment-only flags on a scenario.
    let (code, _o, err) = run(meshdrill()
        .arg("run")
        .arg(experiment("network.yaml"))
        .arg("--dry-run"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--dry-run is for scenario files"), "{err}");
    let (code, _o, err) = run(meshdrill()
        .arg("run")
        .arg(root().join("scenarios/network-failure.yaml"))
        .args(["--var", "x=1"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--var is for chaostoolkit experiment files"),
        "{err}"
    );
}

// === without a target: http and process activities only, against a local server ===

use crate::common::servers::{Behavior, spawn};

/// Runs `text` (an experiment) with `args`; (code, stdout, stderr, journal).
fn run_text(text: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, Value) {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = write(tmp.path(), "exp.yaml", text);
    let journal = tmp.path().join("journal.json");
    let mut cmd = meshdrill();
    cmd.arg("run")
        .arg(&f)
        .arg("--journal-path")
        .arg(&journal)
        .args(args)
        .current_dir(tmp.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, out, err) = run(&mut cmd);
    let j = std::fs::read(&journal)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if !j.is_null() {
        assert_ctk_journal(&j);
    }
    (code, out, err, j)
}

/// An experiment whose hypothesis asks `url` for a 200, with `method` activities.
fn http_experiment(url_var: &str, method: &str) -> String {
    format!(
        r#"title: t
description: d
configuration:
  base:
    type: env
    key: {url_var}
  wanted:
    type: env
    key: WANTED
    default: 200
    env_var_type: int
steady-state-hypothesis:
  title: up
  probes:
  - type: probe
    name: up
    tolerance: ${{wanted}}
    provider:
      type: http
      url: ${{base}}/health
      timeout: 2
method:
{method}
"#
    )
}

#[test]
fn configuration_vars_and_var_files_are_chaostoolkits() {
    let srv = spawn(Behavior::Ok);
    let url = srv.url("");
    let text = http_experiment(
        "BASE_URL",
        "- type: action\n  name: nothing\n  provider: {type: process, path: 'true'}\n",
    );
    // The env key, with the default typed by env_var_type.
    let (code, out, err, j) = run_text(&text, &[], &[("BASE_URL", &url)]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        j["steady_states"]["before"]["probes"][0]["tolerance_met"],
        true
    );
    // --var overrides a declared key (typed); the probe now misses its tolerance.
    let (code, _out, _err, j) =
        run_text(&text, &["--var", "wanted:int=503"], &[("BASE_URL", &url)]);
    assert_eq!(code, 1);
    assert_eq!(
        j["steady_states"]["before"]["probes"][0]["tolerance_met"],
        false
    );
    // ... and only a declared one.
    let (code, _out, err, _j) = run_text(&text, &["--var", "nope=1"], &[("BASE_URL", &url)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("declares no configuration \"nope\""), "{err}");
    // A .env var file fills the environment the configuration reads.
    let tmp = tempfile::tempdir().expect("tmp");
    let env = write(
        tmp.path(),
        "ci.env",
        format!("# comment\nexport BASE_URL={url}\n"),
    );
    let (code, out, err, _j) = run_text(&text, &["--var-file", env.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    // A YAML var file sets configuration.
    let vf = write(
        tmp.path(),
        "vars.yaml",
        format!("configuration:\n  base: {url}\n  wanted: 200\n"),
    );
    let (code, out, err, _j) = run_text(&text, &["--var-file", vf.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn hypothesis_strategies_and_fail_fast() {
    // The server answers 200, 200, 500, 200, …: the third check misses.
    let srv = spawn(Behavior::Pattern(vec![
        200, 200, 500, 200, 200, 200, 200, 200,
    ]));
    let url = srv.url("");
    let text = http_experiment(
        "BASE_URL",
        "- type: action\n  name: wait\n  provider: {type: process, path: sleep, arguments: ['1.6']}\n",
    );
    let env = [("BASE_URL", url.as_str())];
    let (code, out, err, j) = run_text(
        &text,
        &[
            "--hypothesis-strategy",
            "continuously",
            "--hypothesis-frequency",
            "0.5",
        ],
        &env,
    );
    // before (200), during ×~3 (200, 500, 200), after (200): a miss during the method
    // never sets chaostoolkit's `deviated`, but meshdrill exits 1 and says why.
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("did not hold during the method"), "{out}");
    assert_eq!(j["status"], "completed");
    let during = j["steady_states"]["during"].as_array().expect("during");
    assert!(during.len() >= 2, "{during:?}");
    assert!(
        during.iter().any(|s| s["steady_state_met"] == false),
        "{during:?}"
    );
    assert_eq!(j["deviated"], false);
    assert!(j["steady_states"]["after"]["steady_state_met"] == true);

    let srv = spawn(Behavior::Pattern(vec![200, 500, 200, 200, 200, 200]));
    let url = srv.url("");
    let (code, out, err, j) = run_text(
        &text,
        &[
            "--hypothesis-strategy",
            "continuously",
            "--hypothesis-frequency",
            "0.3",
            "--fail-fast",
        ],
        &[("BASE_URL", url.as_str())],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["status"], "failed");
    assert!(
        j["steady_states"]["after"].is_null(),
        "{}",
        j["steady_states"]
    );

    // before-method-only: one check only.
    let srv = spawn(Behavior::Ok);
    let url = srv.url("");
    let (code, _o, _e, j) = run_text(
        &text,
        &["--hypothesis-strategy", "before-method-only"],
        &[("BASE_URL", url.as_str())],
    );
    assert_eq!(code, 0);
    assert!(j["steady_states"]["after"].is_null());
    assert_eq!(srv.hits(), 1);
}

#[test]
fn background_activities_run_alongside_and_processes_report_their_exit() {
    let srv = spawn(Behavior::Ok);
    let url = srv.url("");
    let method = r#"- type: action
  name: slow-in-background
  background: true
  provider: {type: process, path: sleep, arguments: ['1']}
- type: action
  name: also-slow
  provider: {type: process, path: sleep, arguments: ['1']}
- type: probe
  name: exits-3
  provider: {type: process, path: sh, arguments: "-c 'echo out; echo err >&2; exit 3'"}
- type: probe
  name: too-slow
  provider: {type: process, path: sleep, arguments: ['5'], timeout: 0.3}
"#;
    let text = http_experiment("BASE_URL", method);
    let (code, out, err, j) = run_text(&text, &[], &[("BASE_URL", url.as_str())]);
    assert_eq!(
        code, 0,
        "probes that fail in the method do not fail the run: {out}\n{err}"
    );
    let runs = j["run"].as_array().expect("run");
    let by = |n: &str| {
        runs.iter()
            .find(|r| r["activity"]["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {runs:?}"))
    };
    // The two 1 s sleeps overlapped: they started within half a second.
    let start = |n: &str| by(n)["start"].as_str().expect("start").to_string();
    let t = |s: String| s.parse::<jiff::civil::DateTime>().expect("iso time");
    let gap = t(start("also-slow")).duration_since(t(start("slow-in-background")));
    assert!(gap.as_secs_f64().abs() < 0.5, "{gap:?}");
    let e = &by("exits-3")["output"];
    assert_eq!(e["status"], 3);
    assert_eq!(e["stdout"], "out\n");
    assert_eq!(e["stderr"], "err\n");
    assert_eq!(
        by("exits-3")["status"],
        "succeeded",
        "a non-zero exit is not a failure"
    );
    assert_eq!(by("too-slow")["status"], "failed");
}

#[test]
fn tolerances_of_every_form_are_checked_against_real_answers() {
    let srv = spawn(Behavior::Ok);
    let url = srv.url("");
    let text = format!(
        r#"title: tolerances
description: each form
steady-state-hypothesis:
  title: t
  probes:
  - {{type: probe, name: status-list, tolerance: [200, 204], provider: {{type: http, url: "{url}/a", timeout: 2}}}}
  - {{type: probe, name: regex, tolerance: {{type: regex, pattern: "^hello", target: body}}, provider: {{type: http, url: "{url}/b", timeout: 2}}}}
  - {{type: probe, name: range, tolerance: {{type: range, range: [200, 299], target: status}}, provider: {{type: http, url: "{url}/c", timeout: 2}}}}
  - {{type: probe, name: jsonpath, tolerance: {{type: jsonpath, path: "$.status", expect: 200}}, provider: {{type: http, url: "{url}/d", timeout: 2}}}}
  - {{type: probe, name: exit, tolerance: 0, provider: {{type: process, path: "true"}}}}
  - {{type: probe, name: bool, tolerance: true, provider: {{type: process, path: "true"}}}}
method: []
"#
    );
    let (code, out, err, j) = run_text(&text, &[], &[]);
    let probes = &j["steady_states"]["before"]["probes"];
    // The last probe's output is {status, stdout, stderr}, not `true`: it misses.
    assert_eq!(code, 1, "{out}\n{err}");
    for i in 0..5 {
        assert_eq!(probes[i]["tolerance_met"], true, "{}", probes[i]);
    }
    assert_eq!(probes[5]["tolerance_met"], false);
    assert_eq!(j["status"], "completed", "a miss, not a raise");
    assert_eq!(j["run"], serde_json::json!([]));
}

#[test]
fn a_probe_that_cannot_connect_fails_the_gate_as_chaostoolkits_failed() {
    let port = crate::common::servers::refused_port();
    let text = http_experiment(
        "BASE_URL",
        "- type: action\n  name: nothing\n  provider: {type: process, path: 'true'}\n",
    );
    let (code, out, err, j) = run_text(
        &text,
        &[],
        &[("BASE_URL", &format!("http://127.0.0.1:{port}"))],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["status"], "failed");
    let p = &j["steady_states"]["before"]["probes"][0];
    assert_eq!(p["status"], "failed");
    assert!(
        p["exception"][0]
            .as_str()
            .is_some_and(|e| e.contains("ActivityFailed")),
        "{p}"
    );
    // -o json prints the same journal on stdout.
    let (_code, out, _err, _j) = run_text(
        &text,
        &["-o", "json"],
        &[("BASE_URL", &format!("http://127.0.0.1:{port}"))],
    );
    let printed: Value = serde_json::from_str(&out).expect("journal on stdout");
    assert_eq!(printed["status"], "failed");
}

#[test]
fn validate_checks_experiments_as_run_loads_them() {
    let (code, out, err) = run(meshdrill()
        .arg("validate")
        .arg(experiment("network.yaml"))
        .env("INGRESS_HOST", "127.0.0.1:9"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("experiment \"What happens if we abort and delay responses\": valid (3 hypothesis probe(s), 3 method activities, 2 rollback(s))"), "{out}");
    let (code, _out, err) = run(meshdrill()
        .arg("validate")
        .arg(experiment("network.yaml"))
        .env_remove("INGRESS_HOST"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("network.yaml:16: configuration.ingress_host"),
        "{err}"
    );
}

#[test]
fn fail_fast_stops_the_method_and_nothing_further_starts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().display();
    // The hypothesis holds until the first action creates `flag`; with --fail-fast the
    // miss during the method stops it: a2 and a3 never run.
    let text = format!(
        r#"title: t
description: d
steady-state-hypothesis:
  title: h
  probes:
  - {{type: probe, name: flip, tolerance: 0, provider: {{type: process, path: sh, arguments: ["-c", "test ! -e {d}/flag"]}}}}
method:
- {{type: action, name: set, provider: {{type: process, path: touch, arguments: ["{d}/flag"]}}}}
- {{type: action, name: wait, pauses: {{before: 2}}, provider: {{type: process, path: "true"}}}}
- {{type: action, name: a2, provider: {{type: process, path: touch, arguments: ["{d}/a2"]}}}}
- {{type: action, name: a3, provider: {{type: process, path: touch, arguments: ["{d}/a3"]}}}}
"#
    );
    let (code, out, err, j) = run_text(
        &text,
        &[
            "--hypothesis-strategy",
            "during-method-only",
            "--hypothesis-frequency",
            "0.2",
            "--fail-fast",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["status"], "failed");
    assert!(
        !tmp.path().join("a2").exists() && !tmp.path().join("a3").exists(),
        "{out}"
    );
    let ran = names(&j["run"]);
    assert!(!ran.iter().any(|n| n == "a2" || n == "a3"), "{ran:?}");
}

#[test]
fn processes_chaostoolkit_style_and_a_timeout_kills_the_whole_group() {
    let marker = format!("{}.{}", 30 + std::process::id() % 1000, std::process::id());
    let text = format!(
        r#"title: t
description: d
method:
- {{type: probe, name: map-args, provider: {{type: process, path: echo, arguments: {{--flag: value, --bare: null, last: ""}}}}}}
- {{type: probe, name: grandchild, provider: {{type: process, path: sh, arguments: "-c 'sleep {marker}; echo never'", timeout: 0.3}}}}
- {{type: probe, name: signalled, provider: {{type: process, path: sh, arguments: ["-c", "kill -TERM $$"]}}}}
"#
    );
    let (code, out, err, j) = run_text(&text, &[], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        j["run"][0]["output"]["stdout"],
        "--flag value --bare last\n"
    );
    assert_eq!(j["run"][1]["status"], "failed");
    assert_eq!(j["run"][2]["output"]["status"], -15, "Python's -signum");
    // The shell's child (sleep) went with it.
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn default_strategy_plays_rollbacks_after_a_failed_action_and_a_signal_cuts_them() {
    let _s = serial();
    let m = mesh();
    let tmp = tempfile::tempdir().expect("tmp");
    let f = bad_route(tmp.path());
    // chaostoolkit's `default` plays rollbacks after a failed action (its status stays
    // completed there); meshdrill's exit is still 3.
    let (code, out, err, j) = m.run(&f, &["--rollback-strategy", "default"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(j["rollbacks"].as_array().map(Vec::len), Some(2), "{out}");
    assert!(err.contains("the rollbacks ran"), "{err}");
    m.assert_untouched();

    // A rollback that hangs: a signal cuts it, meshdrill's clean-up still restores.
    let text = std::fs::read_to_string(&f).expect("read");
    let cut = text.find("rollbacks:").expect("rollbacks");
    let f = write(
        tmp.path(),
        "hang.yaml",
        format!(
            "{}rollbacks:\n- {{type: action, name: hang, provider: {{type: process, path: sleep, arguments: ['1000']}}}}\n",
            &text[..cut]
        ),
    );
    let mut child = KillOnDrop(
        meshdrill()
            .arg("run")
            .arg(&f)
            .arg("--mesh")
            .arg(m.dir.path())
            .env_remove("INGRESS_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    // Once the rollbacks have started (their section line), interrupt.
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l == "rollbacks"),
        "no rollbacks section"
    );
    std::thread::spawn(move || lines.for_each(drop));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status();
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    m.assert_untouched();
}

#[test]
fn cluster_service_names_go_through_the_mesh_as_from_a_pod() {
    let _s = serial();
    let m = mesh();
    let text = r#"title: t
description: d
steady-state-hypothesis:
  title: h
  probes:
  - {type: probe, name: short, tolerance: 200, provider: {type: http, url: "http://go-demo-8/demo/hello", timeout: 5}}
  - {type: probe, name: ns, tolerance: 200, provider: {type: http, url: "http://go-demo-8.default/demo/hello", timeout: 5}}
  - {type: probe, name: fqdn, tolerance: 200, provider: {type: http, url: "http://go-demo-8.default.svc.cluster.local/demo/hello", timeout: 5}}
  - {type: probe, name: gateway-host, tolerance: 200, provider: {type: http, url: "http://repeater.acme.com/", timeout: 5}}
method: []
"#;
    let tmp = tempfile::tempdir().expect("tmp");
    let f = write(tmp.path(), "names.yaml", text);
    let (code, out, err, j) = m.run(&f, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(j["steady_states"]["before"]["steady_state_met"], true);
    // Anything else is refused before anything runs.
    let f = write(
        tmp.path(),
        "out.yaml",
        text.replace("repeater.acme.com", "example.com"),
    );
    let (code, _out, err, _j) = m.run(&f, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"example.com\" is none of them"), "{err}");
}
