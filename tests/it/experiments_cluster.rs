//! chaostoolkit experiments on the cluster path: the fake API server (real HTTPS, the
//! KUBERNETES_* variables chaostoolkit users set) for the VirtualService, pods and
//! deployments, and a local HTTP server standing in for the ingress. Asserted: the
//! patches the server received, the journal, the exit code, and that the objects are
//! exactly as they were afterwards — holds, deviates, fails before the method, action
//! fails, SIGTERM mid-method, terminate_pods.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::fake_kube::{Auth, DeploymentSeed, FakeKube};
use crate::common::mesh::{KillOnDrop, read_until};
use crate::common::servers::{Behavior, Server, spawn};
use crate::common::{meshdrill, root, run, write};
use crate::experiments::{DELAY_ROUTE, LONG_PAUSE, variant};

fn go_demo_8() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "go-demo-8", "namespace": "go-demo-8"},
        "spec": {
            "hosts": ["go-demo-8"],
            "http": [
                {"name": "primary", "route": [{"destination": {"host": "go-demo-8", "subset": "primary"}}]},
                {"name": "other", "route": [{"destination": {"host": "repeater"}}]}
            ]
        }
    })
}

struct Cluster {
    kube: FakeKube,
    ingress: Server,
    original: Value,
}

fn cluster(ingress: Behavior) -> Cluster {
    let kube = FakeKube::start();
    let original = kube.put_vs(go_demo_8());
    Cluster {
        kube,
        ingress: spawn(ingress),
        original,
    }
}

impl Cluster {
    fn cmd(&self, file: &std::path::Path, journal: &std::path::Path) -> Command {
        let mut c = meshdrill();
        self.kube.env(&mut c, Auth::Cert);
        c.arg("run")
            .arg(file)
            .arg("--journal")
            .arg(journal)
            .env("INGRESS_HOST", self.ingress.addr.to_string());
        c
    }

    fn run(&self, file: &std::path::Path) -> (i32, String, String, Value) {
        let tmp = tempfile::tempdir().expect("tmp");
        let journal = tmp.path().join("j.json");
        let (code, out, err) = run(&mut self.cmd(file, &journal));
        let j = std::fs::read(&journal)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if !j.is_null() {
            crate::experiments::assert_ctk_journal(&j);
        }
        (code, out, err, j)
    }

    /// The network experiment with a 60 s pause after its delay, spawned and followed
    /// until the delay is on (the method is then in that pause).
    fn spawn_mid_method(&self, dir: &std::path::Path, journal: &std::path::Path) -> KillOnDrop {
        let f = variant(dir, "network.yaml", "long.yaml", LONG_PAUSE.0, LONG_PAUSE.1);
        let child = self
            .cmd(&f, journal)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut child = KillOnDrop(child);
        let seen = read_until(&mut child.0, "✓ action abort-failure");
        assert!(seen.contains("✓ action abort-failure"), "{seen}");
        let start = std::time::Instant::now();
        while self
            .kube
            .vs("go-demo-8", "go-demo-8")
            .and_then(|v| v.pointer("/spec/http/0/fault/delay").cloned())
            .is_none()
        {
            assert!(start.elapsed().as_secs() < 20, "the delay never landed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    /// The JSON patches sent to the VirtualService, in order.
    fn patches(&self) -> Vec<Value> {
        self.kube
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/virtualservices/go-demo-8"))
            .map(|r| {
                assert_eq!(r.content_type, "application/json-patch+json", "{r:?}");
                serde_json::from_str(&r.body).expect("patch JSON")
            })
            .collect()
    }

    /// The VirtualService is exactly as it was (spec, annotations).
    fn assert_restored(&self) {
        let now = self.kube.vs("go-demo-8", "go-demo-8").expect("vs");
        assert_eq!(now["spec"], self.original["spec"]);
        assert_eq!(
            now.pointer("/metadata/annotations"),
            self.original.pointer("/metadata/annotations"),
            "{now}"
        );
    }
}

fn network() -> std::path::PathBuf {
    root().join("experiments/network.yaml")
}

/// The patch ops of `p` that are not `test`s, as (op, path) pairs.
fn changes(p: &Value) -> Vec<(String, String)> {
    p.as_array()
        .expect("ops")
        .iter()
        .filter(|o| o["op"] != "test")
        .map(|o| {
            (
                o["op"].as_str().unwrap_or("").to_string(),
                o["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn holds_on_the_cluster_with_guarded_patches_and_both_faults() {
    let c = cluster(Behavior::Ok);
    let (code, out, err, j) = c.run(&network());
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(j["status"], "completed");
    let patches = c.patches();
    // abort, delay, remove abort, remove delay — each guarded by `test` ops.
    assert_eq!(patches.len(), 4, "{patches:#?}");
    for p in &patches {
        assert!(
            p.as_array().expect("ops").iter().any(|o| o["op"] == "test"),
            "unguarded: {p}"
        );
        // Only the go-demo-8 route (index 0) is touched, never `other`.
        assert!(
            changes(p)
                .iter()
                .all(|(_, path)| !path.starts_with("/spec/http/1")),
            "{p}"
        );
    }
    // The delay kept the abort: the VirtualService the probe read had both.
    let fault = &j["run"][2]["output"]["body"]["spec"]["http"][0]["fault"];
    assert_eq!(fault["abort"]["httpStatus"], 500, "{fault}");
    assert_eq!(fault["delay"]["fixedDelay"], "15ms", "{fault}");
    assert!(out.contains("keeps both"), "{out}");
    // The last removal took the drill record away with the fault.
    assert!(
        changes(&patches[3])
            .iter()
            .any(|(op, path)| op == "remove" && path.contains("annotations")),
        "{}",
        patches[3]
    );
    c.assert_restored();
}

#[test]
fn deviation_after_the_method_exits_1_and_rolls_back() {
    // Three 200s for the three probes before; the first probe after gets a 500.
    let c = cluster(Behavior::Pattern(vec![200, 200, 200, 500]));
    let (code, out, err, j) = c.run(&network());
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["deviated"], true);
    assert_eq!(j["status"], "completed");
    assert_eq!(j["steady_states"]["after"]["steady_state_met"], false);
    assert_eq!(j["rollbacks"].as_array().map(Vec::len), Some(2));
    c.assert_restored();
}

#[test]
fn a_failed_steady_state_first_sends_no_patch() {
    let c = cluster(Behavior::Pattern(vec![503]));
    let (code, out, err, j) = c.run(&network());
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["run"], json!([]));
    assert!(c.patches().is_empty(), "{:#?}", c.patches());
    c.assert_restored();
}

#[test]
fn a_refused_patch_fails_the_run_and_the_rest_is_rolled_back() {
    let c = cluster(Behavior::Ok);
    // The first PATCH (the abort) gets a 403.
    let tmp = tempfile::tempdir().expect("tmp");
    let f = variant(
        tmp.path(),
        "network.yaml",
        "network.yaml",
        "    after: 1\n",
        "    after: 0\n",
    );
    c.kube.fail_next("PATCH", 403);
    let (code, out, err, j) = c.run(&f);
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(j["status"], "failed");
    assert_eq!(j["run"][0]["status"], "failed", "{}", j["run"][0]);
    assert!(
        j["run"][0]["exception"][0]
            .as_str()
            .is_some_and(|e| e.contains("403")),
        "{}",
        j["run"][0]
    );
    assert_eq!(
        j["run"].as_array().map(Vec::len),
        Some(1),
        "the method stopped"
    );
    c.assert_restored();

    // A route list that matches nothing: a failure, and nothing is sent for it.
    let c = cluster(Behavior::Ok);
    let to = DELAY_ROUTE.replace("go-demo-8", "nowhere");
    let f = variant(tmp.path(), "network.yaml", "nowhere.yaml", DELAY_ROUTE, &to);
    let (code, out, err, _j) = c.run(&f);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("nowhere"), "{err}");
    // The abort, then its rollback (remove abort); remove-delay finds nothing of ours.
    assert_eq!(c.patches().len(), 2, "{:#?}", c.patches());
    c.assert_restored();
}

#[test]
fn sigterm_mid_method_on_the_cluster() {
    let c = cluster(Behavior::Ok);
    let tmp = tempfile::tempdir().expect("tmp");
    let journal = tmp.path().join("j.json");
    let mut child = c.spawn_mid_method(tmp.path(), &journal);
    let status = child.terminate();
    assert_eq!(status.code(), Some(130));
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_eq!(j["status"], "interrupted");
    c.assert_restored();
}

#[test]
fn terminate_pods_with_its_whole_signature() {
    let c = cluster(Behavior::Ok);
    let k = &c.kube;
    for (name, created) in [
        ("go-demo-8-c", "2026-01-03T00:00:00Z"),
        ("go-demo-8-a", "2026-01-01T00:00:00Z"),
        ("go-demo-8-b", "2026-01-02T00:00:00Z"),
    ] {
        k.add_pod_with(
            "go-demo-8",
            name,
            json!({"app": "go-demo-8"}),
            "Running",
            created,
        );
    }
    k.add_pod_with(
        "go-demo-8",
        "repeater-a",
        json!({"app": "repeater"}),
        "Running",
        "2026-01-01T00:00:00Z",
    );
    k.add_deployment(
        "go-demo-8",
        DeploymentSeed {
            name: "go-demo-8".into(),
            labels: json!({"app": "go-demo-8"}),
            replicas: Some(3),
            available: 3,
            ready: 3,
            updated: 3,
            available_condition: Some(true),
        },
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(root().join("experiments/terminate-pod.yaml"))
        .expect("read")
        .replacen(
            "      rand: true\n",
            "      mode: percentage\n      qty: 50\n      order: oldest\n      grace_period: 5\n",
            1,
        );
    let f = write(tmp.path(), "terminate.yaml", text);
    let (code, out, err, j) = c.run(&f);
    assert_eq!(code, 0, "{out}\n{err}");
    // 50% of 3 rounds up to 2: the two oldest, with the grace period asked.
    let deleted: Vec<(String, Option<i64>)> = k
        .pod_deletions()
        .into_iter()
        .map(|d| (d.name, d.grace_period_seconds))
        .collect();
    assert_eq!(
        deleted,
        [
            ("go-demo-8-a".to_string(), Some(5)),
            ("go-demo-8-b".to_string(), Some(5))
        ]
    );
    assert_eq!(j["run"][0]["output"], json!(["go-demo-8-a", "go-demo-8-b"]));
    assert_eq!(j["run"][1]["output"], 1, "count_pods after the deletion");

    // No pod matched: a failure (chaosk8s returns [] and calls it a success).
    let text = std::fs::read_to_string(root().join("experiments/terminate-pod.yaml"))
        .expect("read")
        .replacen(
            "label_selector: app=go-demo-8\n      rand",
            "label_selector: app=nothing\n      rand",
            1,
        );
    let f = write(tmp.path(), "none.yaml", text);
    let (code, out, err, _j) = c.run(&f);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("no pod matched"), "{err}");
    assert_eq!(k.pod_deletions().len(), 2, "nothing more was deleted");
}

/// The chaostoolkit user's own command line, with `meshdrill` for `chaos`: the
/// KUBERNETES_* variables of a minikube profile, `--rollback-strategy=always`. Without
/// the CA the error names the file to set; with it, the experiment runs.
#[test]
fn the_chaostoolkit_command_line_with_minikube_files() {
    let c = cluster(Behavior::Ok);
    let home = tempfile::tempdir().expect("tmp");
    let mk = home.path().join(".minikube");
    let profile = mk.join("profiles").join("minikube");
    std::fs::create_dir_all(&profile).expect("mkdir");
    std::fs::copy(&c.kube.ca_file, mk.join("ca.crt")).expect("ca");
    std::fs::copy(&c.kube.client_cert_file, profile.join("client.crt")).expect("crt");
    std::fs::copy(&c.kube.client_key_file, profile.join("client.key")).expect("key");
    let mut cmd = meshdrill();
    cmd.env("KUBERNETES_KEY_FILE", profile.join("client.key"))
        .env("KUBERNETES_CERT_FILE", profile.join("client.crt"))
        .env("KUBERNETES_HOST", c.kube.url())
        .env("HOME", home.path())
        .env("INGRESS_HOST", c.ingress.addr.to_string())
        .env_remove("KUBERNETES_CA_CERT_FILE")
        .arg("run")
        .arg(network())
        .arg("--rollback-strategy=always");
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 3, "{out}\n{err}");
    let line = format!("KUBERNETES_CA_CERT_FILE={}", mk.join("ca.crt").display());
    assert!(err.contains(&line), "{err}");
    assert!(c.patches().is_empty());

    cmd.env("KUBERNETES_CA_CERT_FILE", mk.join("ca.crt"));
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(c.patches().len(), 4);
    c.assert_restored();
}

#[test]
fn a_fault_that_was_there_before_survives_the_removals() {
    let kube = FakeKube::start();
    let mut vs = go_demo_8();
    vs["spec"]["http"][0]["fault"] =
        json!({"delay": {"fixedDelay": "2s", "percentage": {"value": 1.0}}});
    let original = kube.put_vs(vs);
    let c = Cluster {
        kube,
        ingress: spawn(Behavior::Ok),
        original,
    };
    let (code, out, err, j) = c.run(&network());
    assert_eq!(code, 0, "{out}\n{err}");
    // During the method: the run's abort and delay (the delay replaced the 2s one).
    let fault = &j["run"][2]["output"]["body"]["spec"]["http"][0]["fault"];
    assert_eq!(fault["delay"]["fixedDelay"], "15ms", "{fault}");
    // After remove_abort_fault and remove_delay_fault: the 2s delay is back, exactly.
    c.assert_restored();
    assert!(
        c.kube.vs("go-demo-8", "go-demo-8").expect("vs")["spec"]["http"][0]["fault"]["delay"]["fixedDelay"]
            == "2s"
    );
}

#[test]
fn kubernetes_settings_from_the_experiments_secrets() {
    let c = cluster(Behavior::Ok);
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(network()).expect("read").replacen(
        "steady-state-hypothesis:",
        &format!(
            "secrets:\n  k8s:\n    KUBERNETES_HOST: {}\n    KUBERNETES_CA_CERT_FILE: {}\n    KUBERNETES_API_KEY:\n      type: env\n      key: MY_TOKEN\nsteady-state-hypothesis:",
            c.kube.url(),
            c.kube.ca_file.display()
        ),
        1,
    );
    let f = write(tmp.path(), "secrets.yaml", text);
    let (code, out, err) = run(meshdrill()
        .arg("run")
        .arg(&f)
        .env("INGRESS_HOST", c.ingress.addr.to_string())
        .env("MY_TOKEN", FakeKube::TOKEN)
        .env_remove("KUBERNETES_CERT_FILE")
        .env_remove("KUBERNETES_KEY_FILE")
        .env_remove("KUBERNETES_API_KEY")
        .env_remove("KUBERNETES_CA_CERT_FILE"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(c.patches().len(), 4);
    assert!(
        c.kube
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .all(|r| r.user == FakeKube::TOKEN_USER)
    );
    c.assert_restored();
}

/// meshdrill killed with SIGKILL mid-method (no rollback can run): the drill record it
/// left names its dead process, and `meshdrill recover --orphans` restores the object.
#[test]
fn after_a_crash_recover_restores_what_the_experiment_changed() {
    let c = cluster(Behavior::Ok);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = c.spawn_mid_method(tmp.path(), &tmp.path().join("j.json"));
    let _ = child.0.kill();
    let _ = child.0.wait();
    assert_ne!(
        c.kube.vs("go-demo-8", "go-demo-8").expect("vs")["spec"],
        c.original["spec"],
        "the fault is on"
    );
    let mut cmd = meshdrill();
    c.kube.env(&mut cmd, Auth::Cert);
    let (code, out, err) = run(cmd.args(["recover", "-n", "go-demo-8", "--orphans"]));
    assert_eq!(code, 0, "{out}\n{err}");
    c.assert_restored();
}

/// `kubectl run … siege …` with a cluster: the load runs there as a one-pod Job in the
/// activity's namespace (the fake's kubelet replays real worker output), its figures
/// come back in the activity's output, and the Job is deleted.
#[test]
fn siege_in_kubectl_run_runs_as_a_job_in_the_cluster() {
    let c = cluster(Behavior::Ok);
    // What the pod prints: a real worker of this siege call (-c 2 -r 5), on loopback.
    let upstream = spawn(Behavior::Ok);
    let out = meshdrill()
        .arg("load")
        .arg(format!("http://{}/", upstream.addr))
        .args([
            "-c",
            "2",
            "-n",
            "10",
            "--workers",
            "1",
            "--worker-index",
            "0",
        ])
        .output()
        .expect("worker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    c.kube
        .job_fate(0, crate::common::fake_kube::Fate::Exit { lines, code: 0 });
    let dir = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(root().join("experiments/siege.yaml"))
        .expect("siege.yaml")
        .replace(
            "    - --concurrent\n    - 50\n    - --time\n    - 5S\n",
            "    - --concurrent\n    - 2\n    - --reps\n    - 5\n",
        );
    assert!(text.contains("--reps"), "the experiment changed: {text}");
    let f = dir.path().join("siege.yaml");
    std::fs::write(&f, text).expect("write");
    let (code, out, err, j) = c.run(&f);
    assert_eq!(code, 0, "{out}\n{err}");
    let siege = j["run"]
        .as_array()
        .and_then(|r| r.iter().find(|a| a["activity"]["name"] == "siege"))
        .expect("the siege activity ran");
    let stdout = siege["output"]["stdout"].as_str().unwrap_or("");
    assert!(stdout.contains("Requests:\t\t10\n"), "{siege}");
    let jobs: Vec<_> = c
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/jobs"))
        .collect();
    assert_eq!(jobs.len(), 1);
    assert!(
        jobs[0].path.contains("/namespaces/go-demo-8/"),
        "{:?}",
        jobs[0]
    );
    let dels = c.kube.job_deletions();
    assert_eq!(dels.len(), 1, "{dels:?}");
    assert!(
        c.patches().is_empty(),
        "the experiment changes no VirtualService"
    );
}
