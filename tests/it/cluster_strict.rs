//! The cluster target against a fake API server as strict as kube-apiserver: a refused
//! write told apart (a failed `test`, the CRD schema, an admission webhook), a
//! namespaced Role with `-A`, and the `--wait` cells of the promise table on a cluster
//! (SIGHUP, a conflict at the rollback, a patch landing after the polling window,
//! `recover` through the in-cluster configuration the CronJob uses).

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{ANN, Spawned, essence, md, patches, wait_until};
use crate::common::fake_kube::{Auth, FakeKube, reviews};
use crate::common::{meshdrill, run};

/// `meshdrill fault abort reviews --route jason --status 503` (the first route only).
fn abort(kube: &FakeKube) -> (i32, String, String) {
    run(md(kube, Auth::Token).args([
        "fault", "abort", "reviews", "--route", "jason", "--status", "503",
    ]))
}

/// What every refused write must leave: the object as it was, no drill record.
fn assert_untouched(kube: &FakeKube, before: &Value) {
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(essence(&now), essence(before));
    assert!(now.pointer(ANN).is_none(), "no drill record left: {now}");
}

// === Refusals told apart ===

#[test]
fn a_failed_test_op_is_diagnosed_as_one_and_changes_nothing() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    kube.fail_next_test();
    let (code, out, err) = abort(&kube);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(
            "HTTP 422 Invalid: the server rejected our request due to an error in our request"
        ),
        "the generic Status of a failed test: {err}"
    );
    assert!(
        err.contains("a `test` operation of the patch failed"),
        "{err}"
    );
    assert!(err.contains("default/reviews"), "{err}");
    assert!(!err.contains("schema") && !err.contains("webhook"), "{err}");
    assert_eq!(patches(&kube).len(), 1, "never forced with a second PATCH");
    assert_untouched(&kube, &before);
}

#[test]
fn a_schema_rejection_names_the_field_and_changes_nothing() {
    let kube = FakeKube::start();
    // Stored before the CRD had a structural schema: the whole object is checked on
    // every update (before validation ratcheting), so the fault on route 0 is refused.
    let mut old = reviews("default");
    old["spec"]["http"][1]["timeout"] = json!(3);
    let before = kube.put_vs(old);
    let (code, out, err) = abort(&kube);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("HTTP 422 Invalid: VirtualService.networking.istio.io \"reviews\" is invalid: spec.http[1].timeout: Invalid value: \"integer\": spec.http[1].timeout in body must be of type string"),
        "{err}"
    );
    assert!(
        err.contains("schema (its CRD) rejects the changed object at spec.http[1].timeout"),
        "{err}"
    );
    assert!(
        err.contains("kubectl edit virtualservice"),
        "what to do: {err}"
    );
    assert!(
        !err.contains("`test` operation") && !err.contains("webhook"),
        "{err}"
    );
    assert_untouched(&kube, &before);
}

#[test]
fn a_webhook_denial_is_reported_with_its_reason_and_changes_nothing() {
    let kube = FakeKube::start();
    // Stored while the webhook was down (failurePolicy: Ignore): Istio's webhook checks
    // the whole object, so a fault on route 0 is denied for route 1's retryOn.
    let mut old = reviews("default");
    old["spec"]["http"][1]["retries"] = json!({"attempts": 3, "retryOn": "5xx, reset"});
    let before = kube.put_vs(old);
    let (code, out, err) = abort(&kube);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("HTTP 400: admission webhook \"validation.istio.io\" denied the request: configuration is invalid: \" reset\" is not a valid retryOn policy"),
        "{err}"
    );
    assert!(err.contains("Istio's validating webhook"), "{err}");
    assert!(err.contains("istioctl validate"), "what to do: {err}");
    assert!(
        !err.contains("`test` operation") && !err.contains("schema"),
        "{err}"
    );
    assert_untouched(&kube, &before);

    // An operator's own policy webhook (Gatekeeper answers 403).
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    kube.webhook_denies_next(
        "validation.gatekeeper.sh",
        403,
        "[no-friday-drills] faults are not allowed on Fridays",
    );
    let (code, out, err) = abort(&kube);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("HTTP 403 Forbidden: admission webhook \"validation.gatekeeper.sh\" denied the request: [no-friday-drills]"),
        "{err}"
    );
    assert!(err.contains("a policy of this cluster"), "{err}");
    assert!(
        !err.contains("`test` operation") && !err.contains("Istio's validating"),
        "{err}"
    );
    assert_untouched(&kube, &before);
}

#[test]
fn the_fake_checks_types_then_istio_rules_on_every_write() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let _in_rt = rt.enter();
    let api = crate::cluster::vs_api(&kube);
    let patch = |ops: Value| {
        let p: json_patch::Patch = serde_json::from_value(ops).expect("patch");
        let api = api.clone();
        async move {
            api.patch(
                "reviews",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::<()>::Json(p),
            )
            .await
        }
    };
    let add = |value: Value| json!([{"op": "add", "path": "/spec/http/0/fault", "value": value}]);
    // A type error: 422 with one cause per field.
    let e = rt
        .block_on(patch(add(
            json!({"abort": {"httpStatus": "503", "percentage": {"value": "50"}}}),
        )))
        .expect_err("type error");
    let kube::Error::Api(s) = e else {
        panic!("expected an API Status")
    };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message.contains(
            "is invalid: [spec.http[0].fault.abort.httpStatus: Invalid value: \"string\""
        ),
        "{}",
        s.message
    );
    let fields: Vec<String> = s
        .details
        .iter()
        .flat_map(|d| d.causes.iter().map(|c| c.field.clone()))
        .collect();
    assert_eq!(
        fields,
        [
            "spec.http[0].fault.abort.httpStatus",
            "spec.http[0].fault.abort.percentage.value"
        ]
    );
    // Istio's rules: 400 with every problem listed.
    let e = rt
        .block_on(patch(add(
            json!({"abort": {"httpStatus": 700, "percentage": {"value": 150}},
                                   "delay": {"fixedDelay": "0.5ms", "percentage": {"value": 10}}}),
        )))
        .expect_err("istio rules");
    let kube::Error::Api(s) = e else {
        panic!("expected an API Status")
    };
    assert_eq!(s.code, 400);
    assert!(s.message.starts_with("admission webhook \"validation.istio.io\" denied the request: configuration is invalid: 3 errors occurred:\n\t* percentage 150 is neither 0.0, nor in range [0.0001, 100.0]\n\t* HTTP status 700 is not in range 200-599\n\t* duration must be greater than 1ms"), "{}", s.message);
    // A valid fault passes, and nothing before it was stored.
    rt.block_on(patch(add(
        json!({"abort": {"httpStatus": 503, "percentage": {"value": 50.5}}}),
    )))
    .expect("a valid fault");
}

// === A namespaced Role ===

#[test]
fn recover_and_status_across_namespaces_with_a_namespaced_role_say_what_to_do() {
    let kube = FakeKube::start();
    let default = kube.put_vs(reviews("default"));
    kube.put_vs(reviews("shop"));
    let (code, _, err) = run(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "500", "--for", "1s",
    ]));
    assert_eq!(code, 0, "{err}");
    // The record expires 1 s after it was planned, before the PATCH went out.
    std::thread::sleep(Duration::from_millis(1100));
    // deploy/recover-cronjob.yaml: a Role in `default`, not a ClusterRole.
    kube.role_only_in(&["default"]);
    for cmd in ["recover", "status"] {
        let (code, out, err) = run(md(&kube, Auth::Token).args([cmd, "-A"]));
        assert_eq!(code, 3, "{cmd} -A: {out}\n{err}");
        assert!(
            err.contains("cannot list VirtualServices in all namespaces: HTTP 403 Forbidden"),
            "{err}"
        );
        assert!(err.contains("at the cluster scope"), "{err}");
        assert!(
            err.contains("needs `list virtualservices.networking.istio.io` at the cluster scope"),
            "the missing permission: {err}"
        );
        assert!(
            err.contains("`-n NAMESPACE` (this identity's namespace: default)"),
            "the namespaced alternative: {err}"
        );
    }
    assert!(patches(&kube).len() == 1, "only the fault's PATCH so far");
    assert!(
        kube.vs("default", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_some()
    );
    // The alternative works where the Role grants, and is a plain 403 elsewhere.
    let (code, out, err) = run(md(&kube, Auth::Token).args(["recover", "-n", "default"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored in default"), "{out}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&default)
    );
    let (code, _, err) = run(md(&kube, Auth::Token).args(["recover", "-n", "shop"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("in the namespace \"shop\""), "{err}");
    assert!(!err.contains("hint: -A"), "{err}");
    let (_, out, _) = run(md(&kube, Auth::Token).args(["cluster", "check", "-n", "shop"]));
    assert!(
        out.contains("can-i patch virtualservices.networking.istio.io -n shop: no"),
        "{out}"
    );
    let (code, out, err) = run(md(&kube, Auth::Token).args(["cluster", "check", "-n", "default"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("can-i patch virtualservices.networking.istio.io -n default: yes"),
        "{out}"
    );
}

// === --wait on a cluster: the promise table's cells ===

fn spawn_wait(kube: &FakeKube, hold: &str) -> Spawned {
    Spawned::start(md(kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "503", "--for", hold, "--wait",
    ]))
}

fn has_drill(kube: &FakeKube) -> bool {
    kube.vs("default", "reviews")
        .is_some_and(|o| o.pointer(ANN).is_some())
}

fn signal(child: &Spawned, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), child.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Whether this process ignores SIGHUP (`nohup`): a child then inherits that, and
/// meshdrill leaves it so.
fn hup_ignored() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    mask & 1 != 0
}

#[test]
fn sighup_during_wait_on_a_cluster_rolls_back_and_exits_130() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let mut child = spawn_wait(&kube, "60s");
    assert!(wait_until(Duration::from_secs(20), || has_drill(&kube)));
    signal(&child, "HUP");
    if hup_ignored() {
        // Under nohup the hang-up is the user's choice: the drill holds on, and
        // SIGTERM still rolls it back.
        assert!(!wait_until(Duration::from_millis(500), || !has_drill(
            &kube
        )));
        signal(&child, "TERM");
    }
    let (code, out, err) = child.finish(Duration::from_secs(20));
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(out.contains("restored"), "{out}");
    let sig = if hup_ignored() { "SIGTERM" } else { "SIGHUP" };
    assert!(err.contains(&format!("interrupted by {sig}")), "{err}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

#[test]
fn a_rollback_that_meets_a_conflict_under_wait_keeps_the_operators_change() {
    // An unrelated edit between the rollback's read and its PATCH: the rollback reads
    // again, plans again and restores, keeping the operator's edit.
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let mut child = spawn_wait(&kube, "2s");
    assert!(wait_until(Duration::from_secs(20), || has_drill(&kube)));
    kube.edit_before_next("PATCH", "default", "reviews", |o| {
        o["metadata"]["labels"]["owner"] = json!("operator");
    });
    // The edit lands as the rollback's PATCH arrives, and the server answers 409.
    kube.fail_next("PATCH", 409);
    let (code, out, err) = child.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("restored"), "{out}");
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(
        now.pointer("/metadata/labels/owner"),
        Some(&json!("operator"))
    );
    assert_eq!(now.get("spec"), before.get("spec"));
    assert!(now.pointer(ANN).is_none());
    let p = patches(&kube);
    assert_eq!(
        p.len(),
        3,
        "the fault, the refused rollback, the re-planned one"
    );

    // The operator changed the injected fault itself: the rollback does not force its
    // way over it; it names the field and leaves the record for `recover`/`clear`.
    let kube = FakeKube::start();
    let before_edit = kube.put_vs(reviews("default"));
    let mut child = spawn_wait(&kube, "60s");
    assert!(wait_until(Duration::from_secs(20), || has_drill(&kube)));
    kube.edit_vs("default", "reviews", |o| {
        o["spec"]["http"][0]["fault"]["abort"]["percentage"]["value"] = json!(80.0);
    });
    signal(&child, "TERM");
    let (code, out, err) = child.finish(Duration::from_secs(30));
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains("spec.http[0]"), "names the route: {err}");
    assert!(err.contains("fault"), "names the field: {err}");
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(
        now.pointer("/spec/http/0/fault/abort/percentage/value"),
        Some(&json!(80.0)),
        "the operator's change is kept"
    );
    assert!(now.pointer(ANN).is_some(), "the record stays for recover");
    // `recover` meets the same conflict once expired; `clear --force` restores the
    // original over the operator's edit, naming it, and the record goes.
    let (code, out, err) = run(md(&kube, Auth::Token).args(["clear", "reviews"]));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("meshdrill clear reviews -n default --force"),
        "says what to do: {err}"
    );
    let patches_before = patches(&kube).len();
    let (code, out, err) = run(md(&kube, Auth::Token).args(["clear", "reviews", "--force"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("overwrote") && err.contains("percentage.value: 100 -> 80.0"),
        "names the overwritten edit: {err}"
    );
    assert_eq!(patches(&kube).len(), patches_before + 1, "one PATCH");
    let now = kube.vs("default", "reviews").expect("vs");
    assert!(now.pointer(ANN).is_none(), "{now}");
    assert_eq!(now.get("spec"), before_edit.get("spec"));
}

#[test]
fn a_patch_landing_after_the_polling_window_is_left_to_recover() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    // The 504's change lands 12 s later: well after the ~5 s meshdrill watches for it.
    kube.fail_next_then_apply("PATCH", 504, Duration::from_secs(12));
    let mut child = spawn_wait(&kube, "1s");
    let (code, out, err) = child.finish(Duration::from_secs(60));
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("HTTP 504"), "{err}");
    assert!(err.contains("checking whether it lands after all"), "{err}");
    assert!(err.contains("may still apply"), "{err}");
    assert!(err.contains("meshdrill recover"), "what to do: {err}");
    assert!(!has_drill(&kube), "not landed yet when meshdrill gave up");
    // It lands later, with its record and expiry: `recover` restores it.
    assert!(wait_until(Duration::from_secs(20), || has_drill(&kube)));
    let (code, out, err) = run(md(&kube, Auth::Token).args(["recover"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored in default"), "{out}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

#[test]
fn ctrl_c_in_the_polling_window_ends_it_and_says_what_may_still_land() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    kube.fail_next_then_apply("PATCH", 504, Duration::from_secs(6));
    let mut child = spawn_wait(&kube, "1s");
    // In the window: the object read again after the failed PATCH.
    assert!(wait_until(Duration::from_secs(20), || {
        let seen = kube.requests();
        seen.iter()
            .position(|r| r.method == "PATCH")
            .is_some_and(|i| {
                seen[i..]
                    .iter()
                    .any(|r| r.method == "GET" && r.path.ends_with("/virtualservices/reviews"))
            })
    }));
    signal(&child, "INT");
    let (code, out, err) = child.finish(Duration::from_secs(30));
    // The PATCH failed before the signal: a target error, not an interrupted drill.
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("may still apply"), "{err}");
    assert!(
        err.contains("SIGINT ended the watch for it before it showed up"),
        "{err}"
    );
    assert!(
        err.contains("`meshdrill recover -n default` restores"),
        "{err}"
    );
    // Whatever lands later carries its record: recover restores it.
    assert!(wait_until(Duration::from_secs(20), || has_drill(&kube)));
    let (code, _, err) = run(md(&kube, Auth::Token).args(["recover"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

// === In-cluster configuration (the recover CronJob) ===

/// Runs `meshdrill args…` as in a pod: the service-account files at
/// /var/run/secrets/kubernetes.io/serviceaccount (a private tmpfs in a user and mount
/// namespace of its own), `KUBERNETES_SERVICE_HOST`/`_PORT` at the fake, no kubeconfig.
fn in_pod(kube: &FakeKube, token: &str, namespace: &str, args: &[&str]) -> (i32, String, String) {
    let sa = kube.dir().join("sa");
    std::fs::create_dir_all(&sa).expect("sa dir");
    std::fs::write(sa.join("token"), token).expect("token");
    std::fs::copy(&kube.ca_file, sa.join("ca.crt")).expect("ca");
    std::fs::write(sa.join("namespace"), namespace).expect("namespace");
    let home = kube.dir().join("pod-home");
    std::fs::create_dir_all(&home).expect("home");
    let script = r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
cp "$SA"/token "$SA"/ca.crt "$SA"/namespace /run/secrets/kubernetes.io/serviceaccount/
exec "$@""#;
    let bin = meshdrill().get_program().to_owned();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(bin)
    .args(args)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOME", &home)
    .env("NO_COLOR", "1")
    .env("SA", &sa)
    .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    .env("KUBERNETES_SERVICE_PORT", kube.addr.port().to_string());
    run(&mut cmd)
}

/// Whether this machine lets an unprivileged process make a user and mount namespace
/// with a private tmpfs (containers without user namespaces do not).
fn pods_can_be_emulated() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /run")
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
fn recover_runs_on_the_in_cluster_service_account_as_the_cronjob_does() {
    if let Err(why) = pods_can_be_emulated() {
        // Said loudly: the in-cluster path is then untested on this machine.
        eprintln!("SKIPPED: no user+mount namespace here to emulate a pod ({why})");
        return;
    }
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let (code, _, err) = run(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "500", "--for", "1s",
    ]));
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(1100));
    let seen_before = kube.requests().len();
    // deploy/recover-cronjob.yaml's arguments, with its Role's rights.
    kube.role_only_in(&["default"]);
    let (code, out, err) = in_pod(
        &kube,
        FakeKube::TOKEN,
        "default",
        &["recover", "-n", "default"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("restored in default"), "{out}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
    let pod = &kube.requests()[seen_before..];
    assert!(
        !pod.is_empty() && pod.iter().all(|r| r.user == FakeKube::TOKEN_USER),
        "every request with the mounted token: {pod:?}"
    );
    // The namespace file is the default namespace, as kubectl in a pod uses it.
    let seen_before = kube.requests().len();
    let (code, _, err) = in_pod(&kube, FakeKube::TOKEN, "default", &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        kube.requests()[seen_before..]
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/namespaces/default/virtualservices")),
        "listed in the namespace file's namespace"
    );
    // A token the server refuses: 401, naming the in-cluster settings.
    let (code, _, err) = in_pod(
        &kube,
        "not-the-token",
        "default",
        &["recover", "-n", "default"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("in-cluster service account"), "{err}");
}
