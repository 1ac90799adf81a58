//! Promises of the README that had no test on some target (issue 15 §4; the table is
//! tests/README.md): an operator's edits made during a drill survive its rollback (a
//! `-f` file and a running mesh, `mesh apply` included); two `fault --wait` on one
//! mesh; a fault left by a killed `--wait` and a killed `mesh up`; `demo` killed with
//! -9 or failing; bad input that changes nothing, re-read byte for byte.
//! Real processes throughout: the built binary, a real Envoy, files.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::mesh::{
    KillOnDrop, descendants, load, load_with, serial, share, spawn_up, statuses, wait_all_gone,
};
use crate::common::{meshdrill, root, run, write};

const LIMIT: Duration = Duration::from_secs(30);
const ANN: &str = "/metadata/annotations/meshdrill.io~1drill";
const INGRESS_HOST: &str = "reviews.default.svc.cluster.local";

/// One route splitting reviews between v1 (all of it) and v2 (none).
const SPLIT_VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  gateways: [gw]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 100}
    - {destination: {host: reviews, subset: v2}, weight: 0}
";

/// An abort and a delay on reviews: each must leave what was there before it intact.
const PRESERVING_CHANGES: [&[&str]; 2] = [
    &[
        "fault",
        "abort",
        "reviews",
        "--status",
        "503",
        "--percent",
        "50",
    ],
    &[
        "fault",
        "delay",
        "reviews",
        "--fixed",
        "2s",
        "--percent",
        "50",
    ],
];

/// reviews v1 (replica 0) and v2 (replica 1) behind [`SPLIT_VS`].
fn reviews_mesh(dir: &Path) -> PathBuf {
    crate::common::mesh::reviews_v1_v2_mesh(dir, SPLIT_VS)
}

/// What an operator does during an incident, on the object as it is live (drill
/// record and fault included, as `kubectl get -o yaml` shows it): a route for one user
/// put in front, and all the traffic of the old route shifted to v2.
fn operator_edit(vs: &mut Value) {
    let http = vs["spec"]["http"].as_array_mut().expect("spec.http");
    http.insert(
        0,
        json!({"name": "jason",
               "match": [{"headers": {"end-user": {"exact": "jason"}}}],
               "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}),
    );
    http[1]["route"][0]["weight"] = json!(0);
    http[1]["route"][1]["weight"] = json!(100);
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("yaml")
}

/// The VirtualService `name` as the running mesh stores it (what Envoy runs).
fn state_vs(dir: &Path, name: &str) -> Value {
    let st: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("state.json"))
            .expect("json");
    st["spec"]["virtualServices"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["metadata"]["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no VirtualService {name}"))
}

/// Polls `cond` every 50 ms for at most `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn md_mesh(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run(meshdrill().args(args).arg("--mesh").arg(dir))
}

/// `fault … --for 60s --wait --mesh DIR` in the background.
fn spawn_wait(dir: &Path, args: &[&str]) -> Child {
    meshdrill()
        .args(args)
        .args(["--for", "60s", "--wait", "--mesh"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Signals `child` and returns (exit code, stdout, stderr).
fn stop(child: Child, sig: &str) -> (Option<i32>, String, String) {
    signal(child.id(), sig);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn replicas(out: &[crate::common::mesh::Outcome]) -> std::collections::BTreeMap<Option<u8>, usize> {
    let mut m = std::collections::BTreeMap::new();
    for o in out {
        *m.entry(o.replica).or_default() += 1;
    }
    m
}

/// Entries of `dir` a mesh or a demo leaves: `meshdrill-mesh-*`, `meshdrill-demo-*`.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with("meshdrill-mesh-") || n.starts_with("meshdrill-demo-"))
        .collect();
    v.sort();
    v
}

/// Live processes whose environment carries `MESHDRILL_TEST_TAG=tag` (a process and
/// everything it started, wherever they were reparented).
fn tagged(tag: &str) -> Vec<u32> {
    let needle = format!("MESHDRILL_TEST_TAG={tag}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .filter(|p| crate::common::mesh::pid_alive(*p))
        .collect()
}

fn unique_tag(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    )
}

// === an operator's edits during a drill ===

/// `-f`: fault a file, edit the result as an operator would (a route put in front, the
/// weights of the faulted route changed), clear it: the operator's edits stay, only
/// the fault and the record go.
#[test]
fn an_operators_new_route_and_weights_survive_clear_on_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "vs.yaml", SPLIT_VS);
    let (code, out, err) = run(meshdrill()
        .args([
            "fault",
            "abort",
            "--status",
            "503",
            "--percent",
            "100",
            "-o",
            "json",
            "-f",
        ])
        .arg(&f));
    assert_eq!(code, 0, "{err}");
    let mut faulted: Value = serde_json::from_str(&out).expect("the faulted object as JSON");
    assert_eq!(
        faulted["spec"]["http"][0]["fault"]["abort"]["httpStatus"], 503,
        "{faulted}"
    );
    assert!(faulted.pointer(ANN).is_some(), "{faulted}");
    let mut fault_edited = faulted.clone();
    operator_edit(&mut faulted);
    let edited = write(
        dir.path(),
        "edited.json",
        serde_json::to_string_pretty(&faulted).expect("json"),
    );
    let (code, out, err) = run(meshdrill().args(["clear", "-o", "json", "-f"]).arg(&edited));
    assert_eq!(code, 0, "{err}");
    let cleared: Value = serde_json::from_str(&out).expect("the cleared object as JSON");
    let mut want = yaml(SPLIT_VS);
    operator_edit(&mut want);
    assert_eq!(cleared, want, "the original, with the operator's edits");

    // The operator edits the fault itself: `clear` refuses (the file is the input: exit
    // 2), names the edit and prints nothing (a conflict is reported, not forced).
    fault_edited["spec"]["http"][0]["fault"]["abort"]["httpStatus"] = json!(418);
    let edited = write(
        dir.path(),
        "edited-fault.json",
        serde_json::to_string_pretty(&fault_edited).expect("json"),
    );
    let before = std::fs::read(&edited).expect("read");
    let (code, out, err) = run(meshdrill().args(["clear", "-f"]).arg(&edited));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("conflict") && err.contains("httpStatus: 503 -> 418"),
        "names the edit: {err}"
    );
    assert_eq!(std::fs::read(&edited).expect("read"), before);
    // `clear --force` restores the fault meshdrill set over the edit, says so, and
    // still changes no file (it prints the result).
    let (code, out, err) = run(meshdrill()
        .args(["clear", "--force", "-o", "json", "-f"])
        .arg(&edited));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("overwrote") && err.contains("httpStatus: 503 -> 418"),
        "names the overwritten edit: {err}"
    );
    let forced: Value = serde_json::from_str(&out).expect("the cleared object as JSON");
    assert_eq!(forced, yaml(SPLIT_VS), "the original");
    assert_eq!(std::fs::read(&edited).expect("read"), before);
}

/// A drill (`run --mesh`) holds a total abort; meanwhile an operator `mesh apply`s the
/// live object with a route put in front and the weights shifted to v2. The rollback
/// (SIGTERM) removes the fault only: the operator's route and weights stay, as Envoy
/// shows.
#[test]
fn an_operators_new_route_and_weights_survive_the_rollback_of_a_mesh_drill() {
    let _s = serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("mesh");
    let (child, addr, _drain) = spawn_up(&reviews_mesh(tmp.path()), &state);
    let mut up = KillOnDrop(child);
    let original = state_vs(&state, "reviews");
    write(
        tmp.path(),
        "unused.yaml",
        "# --mesh DIR replaces the target\n",
    );
    let drill = write(
        tmp.path(),
        "drill.yaml",
        "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {name: operator-meanwhile}
spec:
  target: {mesh: unused.yaml}
  method:
  - fault: {virtualService: reviews, abort: {httpStatus: 503, percentage: 100}}
  - pause: 60s
",
    );
    let journal = tmp.path().join("j.json");
    let mut drill = meshdrill()
        .arg("run")
        .arg(&drill)
        .arg("--mesh")
        .arg(&state)
        .arg("--journal")
        .arg(&journal)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(
        wait_until(LIMIT, || state_vs(&state, "reviews").pointer(ANN).is_some()),
        "the fault went live"
    );
    let aborted = load(addr, INGRESS_HOST, "/", 20, 2, LIMIT);
    assert_eq!(share(&aborted, 503), 1.0, "{:?}", statuses(&aborted));

    // The operator's change, on the live object.
    let mut live = state_vs(&state, "reviews");
    operator_edit(&mut live);
    let op = write(
        tmp.path(),
        "op.json",
        serde_json::to_string_pretty(&live).expect("json"),
    );
    let (code, out, err) = md_mesh(&state, &["mesh", "apply", op.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}\n{err}");
    // It landed during the drill: the drill still runs, the fault still aborts the
    // old route, the new route answers from v2.
    assert!(
        drill.try_wait().expect("drill").is_none(),
        "the drill still runs"
    );
    let still = load(addr, INGRESS_HOST, "/", 20, 2, LIMIT);
    assert_eq!(share(&still, 503), 1.0, "{:?}", statuses(&still));
    let jason = load_with(
        addr,
        INGRESS_HOST,
        "/",
        &[("end-user", "jason")],
        20,
        2,
        LIMIT,
    );
    assert_eq!(share(&jason, 200), 1.0, "{:?}", statuses(&jason));

    let (code, o, e) = stop(drill, "TERM");
    assert_eq!(code, Some(130), "{o}\n{e}");
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    let outcomes: Vec<&Value> = j["rollbacks"]
        .as_array()
        .expect("rollbacks")
        .iter()
        .map(|r| &r["outcome"])
        .collect();
    assert_eq!(outcomes, [&json!("restored")], "{}", j["rollbacks"]);
    let mut want = original.clone();
    operator_edit(&mut want);
    assert_eq!(
        state_vs(&state, "reviews"),
        want,
        "the original, with the operator's edits"
    );
    // Envoy runs it: no fault, the old route's traffic all on v2 (replica 1).
    let after = load(addr, INGRESS_HOST, "/", 100, 4, LIMIT);
    assert_eq!(share(&after, 200), 1.0, "{:?}", statuses(&after));
    assert_eq!(
        replicas(&after).get(&Some(1)),
        Some(&100),
        "{:?}",
        replicas(&after)
    );
    assert!(
        up.0.try_wait().expect("mesh up").is_none(),
        "the mesh still runs"
    );
}

/// `mesh apply` during a drill, then `clear`: what remains is what `mesh apply` set,
/// minus the fault. Both ways an operator applies: the live object edited (the fault
/// and record in it: `clear` removes them and keeps the rest), and a file of their own
/// (no fault, no record: the drill's rollback finds nothing of its own and leaves the
/// applied object alone).
#[test]
fn mesh_apply_during_a_drill_then_clear_leaves_what_apply_set_minus_the_fault() {
    let _s = serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("mesh");
    let (child, addr, _drain) = spawn_up(&reviews_mesh(tmp.path()), &state);
    let _up = KillOnDrop(child);

    // A one-shot fault, then the live object applied with a new route, new weights
    // and a timeout, then `clear`.
    let (code, _, err) = md_mesh(
        &state,
        &[
            "fault",
            "abort",
            "reviews",
            "--status",
            "503",
            "--percent",
            "100",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut applied = state_vs(&state, "reviews");
    operator_edit(&mut applied);
    applied["spec"]["http"][1]["timeout"] = json!("2s");
    let op = write(
        tmp.path(),
        "op.json",
        serde_json::to_string_pretty(&applied).expect("json"),
    );
    let (code, _, err) = md_mesh(&state, &["mesh", "apply", op.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(state_vs(&state, "reviews"), applied);
    let (code, out, err) = md_mesh(&state, &["clear", "reviews"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("routes restored"), "{out}");
    let mut want = applied.clone();
    want["spec"]["http"][1]
        .as_object_mut()
        .expect("route")
        .remove("fault");
    // The annotations map was meshdrill's alone: it goes with the record.
    want["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("annotations");
    assert_eq!(
        state_vs(&state, "reviews"),
        want,
        "applied, minus the fault"
    );
    let ok = load(addr, INGRESS_HOST, "/", 50, 4, LIMIT);
    assert_eq!(share(&ok, 200), 1.0, "{:?}", statuses(&ok));

    // A `--wait` drill, and the operator's own file applied over it.
    let holder = spawn_wait(
        &state,
        &[
            "fault",
            "abort",
            "reviews",
            "--status",
            "503",
            "--percent",
            "100",
        ],
    );
    assert!(wait_until(LIMIT, || state_vs(&state, "reviews")
        .pointer(ANN)
        .is_some()));
    let theirs = write(
        tmp.path(),
        "theirs.yaml",
        SPLIT_VS
            .replace("weight: 100}", "weight: 50}")
            .replace("weight: 0}", "weight: 50}"),
    );
    let (code, _, err) = md_mesh(&state, &["mesh", "apply", theirs.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let set = state_vs(&state, "reviews");
    assert!(set.pointer(ANN).is_none(), "{set}");
    let (code, o, e) = stop(holder, "INT");
    assert_eq!(code, Some(130), "{o}\n{e}");
    assert_eq!(
        state_vs(&state, "reviews"),
        set,
        "what apply set, untouched"
    );
    let (code, out, err) = md_mesh(&state, &["clear", "reviews"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to clear"), "{out}");
    assert_eq!(state_vs(&state, "reviews"), set);

    // The operator edits the very fault meshdrill set: `clear` refuses, naming the
    // edit, and the operator's value stays (a conflict is reported, not forced).
    let (code, _, err) = md_mesh(
        &state,
        &[
            "fault",
            "abort",
            "reviews",
            "--status",
            "503",
            "--percent",
            "50",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut edited = state_vs(&state, "reviews");
    edited["spec"]["http"][0]["fault"]["abort"]["httpStatus"] = json!(418);
    let op = write(
        tmp.path(),
        "op2.json",
        serde_json::to_string_pretty(&edited).expect("json"),
    );
    let (code, _, err) = md_mesh(&state, &["mesh", "apply", op.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = md_mesh(&state, &["clear", "reviews"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("httpStatus: 503 -> 418"),
        "names the edit: {err}"
    );
    assert_eq!(state_vs(&state, "reviews"), edited, "nothing overwritten");
    // `clear --force` takes the fault back over the edit, naming it: what apply set
    // before the fault is what runs.
    let (code, out, err) = md_mesh(&state, &["clear", "reviews", "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("overwrote") && err.contains("httpStatus: 503 -> 418"),
        "names the overwritten edit: {err}"
    );
    assert_eq!(state_vs(&state, "reviews"), set);
}

// === two drills on one mesh ===

/// Two `fault --wait` at once on one mesh: on different VirtualServices both hold, and
/// each rollback restores only its own; on the VirtualService another live drill
/// holds, the second is refused with exit 2 and changes nothing (its rollback would
/// remove the first one's fault too).
#[test]
fn two_fault_wait_on_one_mesh_hold_side_by_side_and_a_third_on_a_held_service_is_refused() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let (child, addr, _drain) =
        spawn_up(&root().join("scenarios/meshes/go-demo-8.yaml"), dir.path());
    let _up = KillOnDrop(child);
    let original_back = state_vs(dir.path(), "go-demo-8");
    let original_limiter = state_vs(dir.path(), "go-demo-8-limiter");

    let first = spawn_wait(
        dir.path(),
        &[
            "fault",
            "abort",
            "go-demo-8",
            "--status",
            "500",
            "--percent",
            "100",
        ],
    );
    let second = spawn_wait(
        dir.path(),
        &[
            "fault",
            "abort",
            "go-demo-8-limiter",
            "--status",
            "503",
            "--percent",
            "100",
        ],
    );
    assert!(wait_until(LIMIT, || {
        state_vs(dir.path(), "go-demo-8").pointer(ANN).is_some()
            && state_vs(dir.path(), "go-demo-8-limiter")
                .pointer(ANN)
                .is_some()
    }));
    let held = state_vs(dir.path(), "go-demo-8");

    // A third on the VirtualService the first holds: refused, nothing changed.
    let (code, _, err) = run(meshdrill()
        .args([
            "fault",
            "delay",
            "go-demo-8",
            "--fixed",
            "1s",
            "--for",
            "60s",
            "--wait",
        ])
        .arg("--mesh")
        .arg(dir.path()));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already carries a drill"), "{err}");
    assert!(err.contains("go-demo-8"), "{err}");
    assert_eq!(state_vs(dir.path(), "go-demo-8"), held);

    // Both faults live.
    let back = load(addr, "repeater.acme.com", "/", 20, 2, LIMIT);
    assert_eq!(share(&back, 200), 0.0, "{:?}", statuses(&back));
    let limiter = load(addr, "go-demo-8.acme.com", "/limiter", 5, 1, LIMIT);
    assert_eq!(share(&limiter, 503), 1.0, "{:?}", statuses(&limiter));

    // The first ends: its own fault goes, the other drill's stays.
    let (code, o, e) = stop(first, "INT");
    assert_eq!(code, Some(130), "{o}\n{e}");
    assert_eq!(state_vs(dir.path(), "go-demo-8"), original_back);
    assert!(
        state_vs(dir.path(), "go-demo-8-limiter")
            .pointer(ANN)
            .is_some()
    );
    let limiter = load(addr, "go-demo-8.acme.com", "/limiter", 5, 1, LIMIT);
    assert_eq!(share(&limiter, 503), 1.0, "{:?}", statuses(&limiter));
    let back = load(addr, "repeater.acme.com", "/", 20, 2, LIMIT);
    assert_eq!(share(&back, 200), 1.0, "{:?}", statuses(&back));

    let (code, o, e) = stop(second, "TERM");
    assert_eq!(code, Some(130), "{o}\n{e}");
    assert_eq!(state_vs(dir.path(), "go-demo-8-limiter"), original_limiter);
    let (code, _, err) = md_mesh(dir.path(), &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no meshdrill drills"), "{err}");
}

// === kill -9 ===

/// `kill -9` of `fault --wait` leaves its fault (nothing can roll back a killed
/// process), and `status` finds it; `kill -9` of `mesh up` then takes Envoy and the
/// replicas with it; the next `mesh up` on the directory runs the routes of the mesh
/// file — the fault is gone, Envoy serves every request.
#[test]
fn a_fault_left_by_a_killed_wait_does_not_survive_into_the_next_mesh_up() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let mesh = root().join("scenarios/meshes/go-demo-8.yaml");
    let (child, addr, _drain) = spawn_up(&mesh, dir.path());
    let mut up = KillOnDrop(child);
    let original = state_vs(dir.path(), "go-demo-8");
    let mut holder = spawn_wait(
        dir.path(),
        &[
            "fault",
            "abort",
            "go-demo-8",
            "--status",
            "500",
            "--percent",
            "100",
        ],
    );
    assert!(wait_until(LIMIT, || state_vs(dir.path(), "go-demo-8")
        .pointer(ANN)
        .is_some()));
    holder.kill().expect("kill -9");
    holder.wait().expect("reap");
    let failing = load(addr, "repeater.acme.com", "/", 20, 2, LIMIT);
    assert_eq!(
        share(&failing, 200),
        0.0,
        "the fault stayed: {:?}",
        statuses(&failing)
    );
    let (code, out, err) = md_mesh(dir.path(), &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("go-demo-8") && out.contains("abort HTTP 500"),
        "{out}"
    );

    let started = descendants(up.0.id());
    assert!(started.len() >= 4, "envoy + 3 replicas: {started:?}");
    up.0.kill().expect("kill -9");
    up.0.wait().expect("reap");
    assert_eq!(wait_all_gone(&started), Vec::<u32>::new());

    let (child, addr, _drain) = spawn_up(&mesh, dir.path());
    let _up = KillOnDrop(child);
    let now = state_vs(dir.path(), "go-demo-8");
    assert!(now.pointer(ANN).is_none(), "{now}");
    assert_eq!(now, original);
    let ok = load(addr, "repeater.acme.com", "/", 50, 4, LIMIT);
    assert_eq!(share(&ok, 200), 1.0, "{:?}", statuses(&ok));
    let (code, _, err) = md_mesh(dir.path(), &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no meshdrill drills"), "{err}");
}

// === demo ===

/// `kill -9` of `demo` mid-fault: Envoy and the demo services die with it, and the
/// next start (`mesh up`) removes what the killed demo left in the temp dir — its
/// mesh directory and its scenario directory — so nothing is left behind.
#[test]
fn kill_9_of_the_demo_leaves_no_process_and_the_next_start_no_directory() {
    let _s = serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let tag = unique_tag("demo-kill");
    let mut child = meshdrill()
        .args(["demo", "--phase", "3s", "--rate", "100"])
        .env("TMPDIR", tmp.path())
        .env("MESHDRILL_TEST_TAG", &tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let seen = crate::common::mesh::read_until(&mut child, "1. fault default/go-demo-8: abort");
    assert!(seen.contains("1. fault default/go-demo-8: abort"), "{seen}");
    let started = descendants(child.id());
    assert!(started.len() >= 4, "envoy + 3 replicas: {started:?}");
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert_eq!(wait_all_gone(&started), Vec::<u32>::new());
    assert_eq!(
        tagged(&tag),
        Vec::<u32>::new(),
        "no process of the demo is left"
    );
    assert_eq!(
        leftovers(tmp.path()).len(),
        2,
        "{:?}",
        leftovers(tmp.path())
    );

    // The next start cleans up after it.
    let next = meshdrill()
        .args(["mesh", "up"])
        .arg(root().join("scenarios/meshes/go-demo-8.yaml"))
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mesh up");
    let mut up = KillOnDrop(next);
    let mut line = String::new();
    let mut r = std::io::BufReader::new(up.0.stdout.take().expect("stdout"));
    std::io::BufRead::read_line(&mut r, &mut line).expect("read");
    assert!(line.contains("is up"), "{line}");
    let left = leftovers(tmp.path());
    assert_eq!(left.len(), 1, "only the new mesh's directory: {left:?}");
    assert!(left[0].starts_with("meshdrill-mesh-"), "{left:?}");
    up.terminate();
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

/// `demo` failing: no Envoy where it is asked for (exit 2, naming it), an Envoy that
/// dies at start (exit 3), and Envoy killed in mid-drill (a target error, exit 3, once
/// the rest is stopped): never a process or a temp directory left behind.
#[test]
fn a_failing_demo_leaves_no_process_and_no_directory() {
    let _s = serial();
    let tmp = tempfile::tempdir().expect("tmp");

    // No Envoy there.
    let tag = unique_tag("demo-no-envoy");
    let (code, out, err) = run(meshdrill()
        .args(["demo", "--envoy", "/nonexistent/envoy"])
        .env("TMPDIR", tmp.path())
        .env("MESHDRILL_TEST_TAG", &tag));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("/nonexistent/envoy"), "{err}");
    assert_eq!(tagged(&tag), Vec::<u32>::new());
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());

    // An Envoy that exits at once.
    let fake = write(
        tmp.path(),
        "envoy",
        "#!/bin/sh\necho 'fake envoy: cannot start' >&2\nexit 1\n",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let tag = unique_tag("demo-bad-envoy");
    let (code, out, err) = run(meshdrill()
        .arg("demo")
        .arg("--envoy")
        .arg(&fake)
        .env("TMPDIR", tmp.path())
        .env("MESHDRILL_TEST_TAG", &tag));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.to_lowercase().contains("envoy"), "{err}");
    assert_eq!(tagged(&tag), Vec::<u32>::new());
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());

    // Envoy killed while the fault is live.
    let tag = unique_tag("demo-envoy-killed");
    let mut child = meshdrill()
        .args(["demo", "--phase", "3s", "--rate", "100"])
        .env("TMPDIR", tmp.path())
        .env("MESHDRILL_TEST_TAG", &tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let seen = crate::common::mesh::read_until(&mut child, "1. fault default/go-demo-8: abort");
    assert!(seen.contains("1. fault default/go-demo-8: abort"), "{seen}");
    let started = descendants(child.id());
    let envoy: Vec<u32> = started
        .iter()
        .copied()
        .filter(|p| {
            crate::common::mesh::pid_alive(*p)
                && std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("envoy-bootstrap"))
        })
        .collect();
    assert_eq!(envoy.len(), 1, "one Envoy among {started:?}");
    signal(envoy[0], "KILL");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(wait_all_gone(&started), Vec::<u32>::new());
    assert_eq!(tagged(&tag), Vec::<u32>::new());
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

// === bad input changes nothing ===

/// Refused input changes nothing on any target, checked where it would show: the input
/// file byte for byte, a running mesh's whole state (routes, versions, records) byte
/// for byte, and the requests a cluster received (no PATCH, PUT, POST or DELETE).
#[test]
fn bad_input_changes_nothing_on_a_file_a_mesh_or_a_cluster() {
    let tmp = tempfile::tempdir().expect("tmp");
    let vs = write(tmp.path(), "vs.yaml", SPLIT_VS);
    let bad_vs = write(
        tmp.path(),
        "bad-vs.yaml",
        SPLIT_VS.replace("  - route:\n", "  - timout: 2s\n    route:\n"),
    );
    let bad_scenario = write(
        tmp.path(),
        "bad-drill.yaml",
        "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {name: bad}
spec:
  target: {cluster: {}}
  method:
  - fault: {virtualService: reviews, abort: {httpStatus: 503}}
  - fault: {virtualService: reviews, route: nope, delay: {fixedDelay: 1s}}
",
    );
    let inputs = [&vs, &bad_vs, &bad_scenario];
    let bytes = |p: &PathBuf| std::fs::read(p).expect("read");
    let before: Vec<Vec<u8>> = inputs.iter().map(|p| bytes(p)).collect();
    let unchanged = |what: &str| {
        for (p, b) in inputs.iter().zip(&before) {
            assert_eq!(&bytes(p), b, "{what}: {} was changed", p.display());
        }
    };

    // -f: refused, nothing printed, the file as it was.
    let refused_on_file: [&[&str]; 4] = [
        &["fault", "abort", "--status", "700"],
        &["fault", "abort", "--status", "503", "--route", "nope"],
        &[
            "fault",
            "abort",
            "--status",
            "503",
            "--destination",
            "reviews/v2",
        ],
        &["retries", "--attempts", "-1"],
    ];
    for args in refused_on_file {
        let (code, out, err) = run(meshdrill().args(args).arg("-f").arg(&vs));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        unchanged(&format!("{args:?} -f"));
    }
    let (code, out, err) = run(meshdrill()
        .args(["fault", "abort", "--status", "503", "-f"])
        .arg(&bad_vs));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("bad-vs.yaml:8"), "file and line: {err}");
    unchanged("a bad manifest with -f");

    // A running mesh: its state file is byte for byte what it was.
    {
        let _s = serial();
        let state = tmp.path().join("mesh");
        let (child, _addr, _drain) = spawn_up(&reviews_mesh(tmp.path()), &state);
        let _up = KillOnDrop(child);
        let st = || std::fs::read(state.join("state.json")).expect("state.json");
        let was = st();
        let s = state.to_str().expect("utf8");
        let bad_file = bad_vs.to_str().expect("utf8");
        let refused_on_mesh: [&[&str]; 5] = [
            &["fault", "abort", "reviews", "--status", "700", "--mesh", s],
            &[
                "fault", "abort", "reviews", "--status", "503", "--route", "nope", "--mesh", s,
            ],
            &[
                "fault",
                "abort",
                "reviews",
                "--status",
                "503",
                "--destination",
                "reviews/v2",
                "--mesh",
                s,
            ],
            &["fault", "abort", "nope", "--status", "503", "--mesh", s],
            &["mesh", "apply", bad_file, "--mesh", s],
        ];
        for args in refused_on_mesh {
            let (code, _, err) = run(meshdrill().args(args));
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(st() == was, "{args:?}: the mesh's state changed");
        }
        let (code, out, err) = run(meshdrill()
            .arg("run")
            .arg(&bad_scenario)
            .arg("--mesh")
            .arg(&state));
        assert_eq!(code, 2, "{out}\n{err}");
        assert!(err.contains("nope"), "{err}");
        assert!(st() == was, "run: the mesh's state changed");
        unchanged("on a mesh");
    }

    // A cluster: reads only.
    use crate::common::fake_kube::{Auth, FakeKube, reviews};
    let kube = FakeKube::start();
    let was = kube.put_vs(reviews("default"));
    let cmd = |args: &[&str]| {
        let mut c = meshdrill();
        kube.env(&mut c, Auth::Token);
        c.args(args);
        c
    };
    let (code, out, err) = run(&mut cmd(&["run", bad_scenario.to_str().expect("utf8")]));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("bad-drill.yaml:8"), "the step's line: {err}");
    let (code, _, err) = run(&mut cmd(&[
        "fault", "abort", "reviews", "--status", "503", "--route", "nope",
    ]));
    assert_eq!(code, 2, "{err}");
    let writes: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "only reads reached the API server"
    );
    assert_eq!(kube.vs("default", "reviews"), Some(was));
    unchanged("on a cluster");
}

// === SIGHUP ===

/// Whether this process ignores SIGHUP (under `nohup`): its children inherit that, and
/// meshdrill then rightly leaves SIGHUP alone.
fn sighup_ignored() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & 1 != 0)
}

/// SIGHUP (the terminal went away) rolls back as SIGINT and SIGTERM do, exit 130: a
/// `fault --wait` and a `run` on a running mesh, and `demo` with its own mesh (no
/// process and no directory left).
#[test]
fn sighup_rolls_back_fault_wait_run_and_demo_on_a_mesh() {
    if sighup_ignored() {
        eprintln!("SIGHUP is ignored here (nohup): its handling cannot be tested");
        return;
    }
    let _s = serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("mesh");
    let (child, addr, _drain) = spawn_up(&root().join("scenarios/meshes/go-demo-8.yaml"), &state);
    let up = KillOnDrop(child);
    let original = state_vs(&state, "go-demo-8");
    let applied = || state_vs(&state, "go-demo-8").pointer(ANN).is_some();

    // fault --wait
    let holder = spawn_wait(
        &state,
        &[
            "fault",
            "abort",
            "go-demo-8",
            "--status",
            "500",
            "--percent",
            "100",
        ],
    );
    assert!(wait_until(LIMIT, applied));
    let (code, o, e) = stop(holder, "HUP");
    assert_eq!(code, Some(130), "{o}\n{e}");
    assert!(e.contains("SIGHUP"), "{e}");
    assert_eq!(state_vs(&state, "go-demo-8"), original);

    // run --mesh
    write(
        tmp.path(),
        "unused.yaml",
        "# --mesh DIR replaces the target\n",
    );
    let drill = write(
        tmp.path(),
        "drill.yaml",
        "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {name: hangup}
spec:
  target: {mesh: unused.yaml}
  method:
  - fault: {virtualService: go-demo-8, abort: {httpStatus: 500, percentage: 100}}
  - pause: 60s
",
    );
    let child = meshdrill()
        .arg("run")
        .arg(&drill)
        .arg("--mesh")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(wait_until(LIMIT, applied));
    let (code, o, e) = stop(child, "HUP");
    assert_eq!(code, Some(130), "{o}\n{e}");
    assert!(e.contains("interrupted by SIGHUP"), "{e}");
    assert_eq!(state_vs(&state, "go-demo-8"), original);
    let ok = load(addr, "repeater.acme.com", "/", 50, 4, LIMIT);
    assert_eq!(share(&ok, 200), 1.0, "{:?}", statuses(&ok));
    drop(up);

    // demo
    let demo_tmp = tempfile::tempdir().expect("tmp");
    let mut child = meshdrill()
        .args(["demo", "--phase", "3s", "--rate", "100"])
        .env("TMPDIR", demo_tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let seen = crate::common::mesh::read_until(&mut child, "1. fault default/go-demo-8: abort");
    assert!(seen.contains("1. fault default/go-demo-8: abort"), "{seen}");
    let started = descendants(child.id());
    assert!(started.len() >= 4, "envoy + 3 replicas: {started:?}");
    let (code, _, e) = stop(child, "HUP");
    assert_eq!(code, Some(130), "{e}");
    assert!(
        e.contains("everything meshdrill changed was rolled back"),
        "{e}"
    );
    assert_eq!(wait_all_gone(&started), Vec::<u32>::new());
    assert_eq!(leftovers(demo_tmp.path()), Vec::<String>::new());
}

// === a cluster drill that breaks ===

/// A `run` on a cluster whose system breaks: a judged phase that breaches its SLO
/// (exit 1) and a stop condition that halts the method (exit 1) both end with the
/// VirtualService exactly as it was (the rollback restored it), as on a mesh. The load
/// target is a loopback server answering 500 to everything.
#[test]
fn an_slo_breach_and_a_stop_condition_on_a_cluster_roll_back_and_exit_1() {
    use crate::common::fake_kube::{Auth, FakeKube, reviews};
    use crate::common::servers::{Behavior, spawn};
    // Load, if light: not beside the tests that measure latency.
    let _s = serial();
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let essence = |v: &Value| {
        json!({"spec": v.get("spec"), "labels": v.pointer("/metadata/labels"),
               "annotations": v.pointer("/metadata/annotations")})
    };
    let server = spawn(Behavior::Pattern(vec![500]));
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = |hold: &str, stop: &str| {
        format!(
            "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {{name: cluster-breaks}}
spec:
  target: {{cluster: {{}}}}
  targets: [127.0.0.1]
  load: {{url: 'http://127.0.0.1:{}/', rate: 50, connections: 4}}
  slos:
  - {{name: availability, metric: availability, objective: '>= 90%'}}
  method:
  - fault: {{virtualService: reviews, abort: {{httpStatus: 503, percentage: 50}}}}
  - hold: {hold}
{stop}",
            server.addr.port()
        )
    };
    for (what, text, reason) in [
        ("breach", scenario("2s", ""), "completed"),
        (
            "stop condition",
            scenario(
                "60s",
                "  stopConditions:\n  - {slo: availability, below: 50%, for: 1s}\n",
            ),
            "stopCondition",
        ),
    ] {
        let file = write(tmp.path(), "drill.yaml", text);
        let journal = tmp.path().join("j.json");
        let mut c = meshdrill();
        kube.env(&mut c, Auth::Token);
        let (code, out, err) = run(c.arg("run").arg(&file).arg("--journal").arg(&journal));
        assert_eq!(code, 1, "{what}: {out}\n{err}");
        let j: Value =
            serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
        assert_eq!(j["ending"]["reason"], reason, "{what}: {}", j["ending"]);
        assert_eq!(j["verdict"], "broke", "{what}: {}", j["verdictText"]);
        assert!(
            j["changes"].as_array().is_some_and(|c| c.len() == 1),
            "{what}: the fault was applied: {}",
            j["changes"]
        );
        let outcomes: Vec<&Value> = j["rollbacks"]
            .as_array()
            .expect("rollbacks")
            .iter()
            .map(|r| &r["outcome"])
            .collect();
        assert_eq!(outcomes, [&json!("restored")], "{what}: {}", j["rollbacks"]);
        assert_eq!(
            essence(&kube.vs("default", "reviews").expect("vs")),
            essence(&before),
            "{what}: the original routes are back"
        );
    }
}

/// A run on a cluster: load to a host its `targets:` does not list is refused before
/// anything is sent (exit 2, no write request); a sample too small to decide is
/// inconclusive (exit 4), after the rollback restored the object.
#[test]
fn a_cluster_run_refuses_load_outside_its_targets_and_an_undecided_one_exits_4() {
    use crate::common::fake_kube::{Auth, FakeKube, reviews};
    use crate::common::servers::{Behavior, spawn};
    let _s = serial();
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let server = spawn(Behavior::Ok);
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = |targets: &str| {
        format!(
            "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {{name: cluster-undecided}}
spec:
  target: {{cluster: {{}}}}
  targets: [{targets}]
  load: {{url: 'http://127.0.0.1:{}/', rate: 20, connections: 2}}
  slos:
  - {{name: availability, metric: availability, objective: '>= 99.9%'}}
  method:
  - fault: {{virtualService: reviews, abort: {{httpStatus: 503, percentage: 50}}}}
  - hold: 1s
",
            server.addr.port()
        )
    };
    let md = |file: &Path, journal: &Path| {
        let mut c = meshdrill();
        kube.env(&mut c, Auth::Token);
        c.arg("run").arg(file).arg("--journal").arg(journal);
        c
    };
    let journal = tmp.path().join("j.json");

    let file = write(tmp.path(), "outside.yaml", scenario("shop.example.com"));
    let (code, out, err) = run(&mut md(&file, &journal));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("outside.yaml:7") && err.contains("outside spec.targets"),
        "{err}"
    );
    let writes: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "nothing was sent");

    let file = write(tmp.path(), "undecided.yaml", scenario("127.0.0.1"));
    let (code, out, err) = run(&mut md(&file, &journal));
    assert_eq!(code, 4, "{out}\n{err}");
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_eq!(j["verdict"], "inconclusive", "{}", j["verdictText"]);
    assert_eq!(
        j["rollbacks"][0]["outcome"], "restored",
        "{}",
        j["rollbacks"]
    );
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(now.get("spec"), before.get("spec"));
    assert!(now.pointer(ANN).is_none(), "{now}");
}

/// `fault --wait --mesh` whose output pipe closed (`… | head -0`): the change is held
/// and rolled back all the same, and a closed pipe is a quiet exit 0.
#[test]
fn closed_output_during_wait_on_a_mesh_still_rolls_back() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let (child, addr, _drain) =
        spawn_up(&root().join("scenarios/meshes/go-demo-8.yaml"), dir.path());
    let _up = KillOnDrop(child);
    let original = state_vs(dir.path(), "go-demo-8");
    let mut holder = meshdrill()
        .args([
            "fault",
            "abort",
            "go-demo-8",
            "--status",
            "500",
            "--percent",
            "100",
            "--for",
            "2s",
            "--wait",
            "--mesh",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(holder.stdout.take());
    drop(holder.stderr.take());
    assert!(
        wait_until(LIMIT, || state_vs(dir.path(), "go-demo-8")
            .pointer(ANN)
            .is_some()),
        "the fault was applied"
    );
    let status = holder.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert_eq!(state_vs(dir.path(), "go-demo-8"), original);
    let ok = load(addr, "repeater.acme.com", "/", 50, 4, LIMIT);
    assert_eq!(share(&ok, 200), 1.0, "{:?}", statuses(&ok));
}

/// What was on the object before the drill — a fault meshdrill did not set, an
/// annotation of another tool — is there after `clear`, on a mesh (stacked on and
/// replaced by a drill's abort and delay) and on a cluster.
#[test]
fn a_fault_and_an_annotation_that_were_there_before_survive_clear_on_a_mesh_and_a_cluster() {
    let _s = serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("mesh");
    let (child, _addr, _drain) = spawn_up(&reviews_mesh(tmp.path()), &state);
    let _up = KillOnDrop(child);
    let mut theirs = yaml(SPLIT_VS);
    theirs["metadata"]["annotations"] = json!({"team": "payments"});
    theirs["spec"]["http"][0]["fault"] =
        json!({"delay": {"fixedDelay": "1ms", "percentage": {"value": 10.0}}});
    let f = write(
        tmp.path(),
        "theirs.json",
        serde_json::to_string_pretty(&theirs).expect("json"),
    );
    let (code, _, err) = md_mesh(&state, &["mesh", "apply", f.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let original = state_vs(&state, "reviews");
    for change in PRESERVING_CHANGES {
        let (code, _, err) = md_mesh(&state, change);
        assert_eq!(code, 0, "{change:?}: {err}");
        let now = state_vs(&state, "reviews");
        assert_ne!(now, original, "{change:?}: applied");
        assert_eq!(now["metadata"]["annotations"]["team"], "payments", "{now}");
        let (code, _, err) = md_mesh(&state, &["clear", "reviews"]);
        assert_eq!(code, 0, "{change:?}: {err}");
        assert_eq!(state_vs(&state, "reviews"), original, "{change:?}");
    }

    use crate::common::fake_kube::{Auth, FakeKube, reviews};
    let kube = FakeKube::start();
    let mut obj = reviews("default");
    obj["metadata"]["annotations"] = json!({"team": "payments"});
    obj["spec"]["http"][1]["fault"] =
        json!({"delay": {"fixedDelay": "1ms", "percentage": {"value": 10.0}}});
    let before = kube.put_vs(obj);
    for change in PRESERVING_CHANGES {
        let mut c = meshdrill();
        kube.env(&mut c, Auth::Token);
        let (code, _, err) = run(c.args(change).args(["--route", "default"]));
        assert_eq!(code, 0, "{change:?}: {err}");
        let mut c = meshdrill();
        kube.env(&mut c, Auth::Token);
        let (code, _, err) = run(c.args(["clear", "reviews"]));
        assert_eq!(code, 0, "{change:?}: {err}");
        let now = kube.vs("default", "reviews").expect("vs");
        assert_eq!(now.get("spec"), before.get("spec"), "{change:?}");
        assert_eq!(
            now.pointer("/metadata/annotations"),
            before.pointer("/metadata/annotations"),
            "{change:?}"
        );
    }
}

/// A chaostoolkit experiment that cannot run (an unknown function) is refused on a
/// cluster as on a mesh: exit 2 naming it, before anything runs — the API server sees
/// no write request, and the file is unchanged.
#[test]
fn a_bad_experiment_on_a_cluster_is_refused_and_sends_nothing() {
    use crate::common::fake_kube::{Auth, FakeKube};
    let kube = FakeKube::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let base = std::fs::read_to_string(root().join("experiments/network.yaml")).expect("read");
    let f = write(
        tmp.path(),
        "unknown-func.yaml",
        base.replacen("func: add_abort_fault", "func: add_latency", 1),
    );
    let before = std::fs::read(&f).expect("read");
    let mut c = meshdrill();
    kube.env(&mut c, Auth::Token);
    let (code, out, err) = run(c.arg("run").arg(&f).env("INGRESS_HOST", "127.0.0.1:9"));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("cannot run the python function chaosistio.fault.actions.add_latency"),
        "{err}"
    );
    let writes: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "nothing was sent");
    assert_eq!(std::fs::read(&f).expect("read"), before);
}
