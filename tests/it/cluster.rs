//! The cluster target against the fake API server (`common::fake_kube`): connection
//! settings, guarded patches, conflicts, errors, `--wait` with signals, `status`,
//! `recover`, `cluster check`, `pods kill`, `Cluster::pods`/`deployments`, the TLS hint.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::fake_kube::{Auth, FakeKube, reviews};
use crate::common::{meshdrill, run};

pub(crate) const ANN: &str = "/metadata/annotations/meshdrill.io~1drill";

pub(crate) fn md(kube: &FakeKube, auth: Auth) -> Command {
    let mut c = meshdrill();
    kube.env(&mut c, auth);
    c
}

/// What a rollback must bring back exactly: spec, labels, annotations.
pub(crate) fn essence(v: &Value) -> Value {
    json!({
        "spec": v.get("spec"),
        "labels": v.pointer("/metadata/labels"),
        "annotations": v.pointer("/metadata/annotations"),
    })
}

/// Polls `cond` every 50 ms for at most `limit`.
pub(crate) fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A spawned meshdrill, killed (by its own PID) if the test ends early.
pub(crate) struct Spawned(Option<Child>);

impl Spawned {
    pub(crate) fn start(cmd: &mut Command) -> Self {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshdrill");
        Self(Some(child))
    }
    pub(crate) fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
    fn kill9(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
        }
    }
    /// Waits at most `limit` for the exit; returns (code, stdout, stderr).
    pub(crate) fn finish(&mut self, limit: Duration) -> (Option<i32>, String, String) {
        let Some(mut c) = self.0.take() else {
            return (None, String::new(), String::new());
        };
        let start = Instant::now();
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if start.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = c.kill();
                    break;
                }
            }
        }
        let out = c.wait_with_output().expect("collect output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GETs of VirtualService paths (lists and objects) so far.
fn vs_reads(kube: &FakeKube) -> usize {
    kube.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/virtualservices"))
        .count()
}

pub(crate) fn patches(kube: &FakeKube) -> Vec<crate::common::fake_kube::Seen> {
    kube.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

#[test]
fn cert_auth_fault_then_clear_restores_the_object_exactly() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let (code, out, err) = run(md(&kube, Auth::Cert).args([
        "fault",
        "abort",
        "reviews",
        "--status",
        "503",
        "--percent",
        "50",
        "--route",
        "default",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "virtualservice.networking.istio.io/reviews patched (abort HTTP 503 on 50%, route #1, expires "
        ),
        "{out}"
    );
    let faulted = kube.vs("default", "reviews").expect("vs");
    assert_eq!(
        faulted.pointer("/spec/http/1/fault/abort/httpStatus"),
        Some(&json!(503))
    );
    assert_eq!(
        faulted.pointer("/spec/http/0"),
        before.pointer("/spec/http/0")
    );
    assert!(
        faulted.pointer(ANN).is_some(),
        "drill recorded on the object"
    );
    let p = patches(&kube);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].content_type, "application/json-patch+json");
    let ops: Vec<Value> = serde_json::from_str(&p[0].body).expect("a JSON Patch");
    assert_eq!(ops[0]["op"], "test", "guarded first: {ops:?}");
    assert!(
        ops.iter()
            .all(|o| o["path"] != "/spec/http" && o["path"] != "/spec" && o["op"] != "move"),
        "never replaces spec.http wholesale: {ops:?}"
    );
    assert!(
        ops.iter().all(|o| o["path"] == "/metadata/resourceVersion"
            || o["path"].as_str().is_some_and(
                |p| p.starts_with("/spec/http/1") || p.starts_with("/metadata/annotations")
            )),
        "touches route #1 and the record only: {ops:?}"
    );
    assert_eq!(p[0].user, FakeKube::CERT_USER);
    assert!(
        p[0].path
            .ends_with("/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews")
    );

    let (code, out, err) = run(md(&kube, Auth::Cert).args(["clear", "reviews"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reviews restored"), "{out}");
    let after = kube.vs("default", "reviews").expect("vs");
    assert_eq!(essence(&after), essence(&before));

    let (code, out, err) = run(md(&kube, Auth::Cert).args(["clear", "reviews"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unchanged"), "{out}");
}

#[test]
fn token_auth_and_output_formats() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("shop"));
    let (code, out, err) = run(md(&kube, Auth::Token).args([
        "fault",
        "delay",
        "reviews",
        "-n",
        "shop",
        "--fixed",
        "2s",
        "--percent",
        "10",
        "-o",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    let obj: Value = serde_json::from_str(&out).expect("json object on stdout");
    assert_eq!(
        obj.pointer("/spec/http/0/fault/delay/fixedDelay"),
        Some(&json!("2s"))
    );
    assert!(err.contains("patched (delay 2s on 10%"), "{err}");
    assert!(
        patches(&kube)
            .iter()
            .all(|r| r.user == FakeKube::TOKEN_USER)
    );

    let faulted = kube.vs("shop", "reviews").expect("vs");
    let (code, out, err) =
        run(md(&kube, Auth::Token).args(["clear", "reviews", "-n", "shop", "-o", "patch"]));
    assert_eq!(code, 0, "{err}");
    let patch: Value = serde_json::from_str(&out).expect("patch json");
    assert!(
        patch
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o["op"] == "test")),
        "{out}"
    );
    // The clear was carried out, not only printed: the object is restored exactly,
    // and the printed patch is the one that did it (applied to the faulted object, it
    // gives the same result).
    let after = kube.vs("shop", "reviews").expect("vs");
    assert_eq!(essence(&after), essence(&before));
    assert!(after.pointer(ANN).is_none(), "{after}");
    let ops: json_patch::Patch = serde_json::from_value(patch).expect("an RFC 6902 patch");
    let mut replayed = faulted;
    json_patch::patch(&mut replayed, &ops.0)
        .expect("the printed patch applies to the faulted object");
    assert_eq!(essence(&replayed), essence(&before));
    assert_eq!(patches(&kube).len(), 2, "the fault and the clear");
}

#[test]
fn kubeconfig_auth_uses_the_context_and_its_namespace() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("shop"));
    let dir = tempfile::tempdir().expect("tmp");
    let kc = kube.kubeconfig(dir.path(), "shop");
    let mut c = meshdrill();
    c.env("HOME", dir.path())
        .arg("fault")
        .args(["network", "reviews", "--total", "--kubeconfig"])
        .arg(&kc)
        .args(["--context", "fake-ctx"]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("abort HTTP 503 on 100%"), "{out}");
    assert!(
        kube.vs("shop", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_some()
    );

    // KUBECONFIG with its current-context, which points at a closed port.
    let mut c = meshdrill();
    c.env("HOME", dir.path())
        .env("KUBECONFIG", &kc)
        .args(["status"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("context other"),
        "names the kubeconfig entry: {err}"
    );

    // KUBERNETES_HOST wins over KUBECONFIG.
    let mut c = md(&kube, Auth::Token);
    c.env("KUBECONFIG", &kc)
        .args(["status", "-n", "shop", "-o", "json"]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"name\": \"reviews\""), "{out}");
}

#[test]
fn wrong_ca_fails_tls_verification_with_exit_3() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    let mut c = md(&kube, Auth::Token);
    c.env("KUBERNETES_CA_CERT_FILE", &kube.wrong_ca_file)
        .args(["fault", "abort", "reviews", "--status", "500"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("KUBERNETES_CA_CERT_FILE"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(
        kube.vs("default", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_none()
    );

    // A missing file names the variable.
    let mut c = md(&kube, Auth::Cert);
    c.env("KUBERNETES_KEY_FILE", "/nonexistent/client.key")
        .args(["status"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("KUBERNETES_KEY_FILE=/nonexistent/client.key"),
        "{err}"
    );

    // Refused credentials name their source.
    let mut c = md(&kube, Auth::Token);
    c.env("KUBERNETES_API_KEY", "not-the-token")
        .args(["status"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 401 Unauthorized"), "{err}");
    assert!(err.contains("KUBERNETES_API_KEY"), "{err}");

    // No credentials at all: a real server answers 403 as system:anonymous (not 401);
    // the error still says where the connection settings came from.
    let (code, _, err) = run(md(&kube, Auth::Anonymous).args(["status"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 403 Forbidden"), "{err}");
    assert!(err.contains("system:anonymous"), "{err}");
    assert!(err.contains("connection settings from"), "{err}");

    // Skipping verification works, loudly.
    let mut c = md(&kube, Auth::Token);
    c.env("KUBERNETES_CA_CERT_FILE", &kube.wrong_ca_file)
        .args(["status", "--insecure-skip-tls-verify"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: --insecure-skip-tls-verify"), "{err}");
}

#[test]
fn concurrent_change_is_a_conflict_and_nothing_is_overwritten() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    // Someone edits route #1 between meshdrill's GET and its PATCH.
    kube.edit_before_next("PATCH", "default", "reviews", |o| {
        o["spec"]["http"][1]["timeout"] = json!("9s");
    });
    let (code, _, err) = run(md(&kube, Auth::Cert).args([
        "fault",
        "abort",
        "reviews",
        "--status",
        "503",
        "--route-index",
        "1",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("conflict"), "{err}");
    assert!(
        err.contains("spec.http[1].timeout: \"3s\" -> \"9s\""),
        "names what changed: {err}"
    );
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(now.pointer("/spec/http/1/timeout"), Some(&json!("9s")));
    assert!(now.pointer("/spec/http/1/fault").is_none());
    assert!(now.pointer(ANN).is_none());

    // A fault applied, then the faulted route edited: clear refuses and keeps both.
    let (code, _, err) = run(md(&kube, Auth::Cert).args([
        "fault",
        "abort",
        "reviews",
        "--status",
        "503",
        "--route-index",
        "1",
    ]));
    assert_eq!(code, 0, "{err}");
    kube.edit_vs("default", "reviews", |o| {
        o["spec"]["http"][1]["fault"]["abort"]["httpStatus"] = json!(418);
    });
    let (code, _, err) = run(md(&kube, Auth::Cert).args(["clear", "reviews"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("conflict"), "{err}");
    assert!(
        err.contains("spec.http[1].fault.abort.httpStatus: 503 -> 418"),
        "names the edited field and both values: {err}"
    );
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(
        now.pointer("/spec/http/1/fault/abort/httpStatus"),
        Some(&json!(418))
    );
    assert!(now.pointer(ANN).is_some());
}

#[test]
fn unrelated_concurrent_change_is_kept_and_the_patch_retried() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    kube.edit_before_next("PATCH", "default", "reviews", |o| {
        o["metadata"]["labels"]["team"] = json!("payments");
    });
    let (code, _, err) = run(md(&kube, Auth::Cert).args([
        "fault", "abort", "reviews", "--status", "503", "--route", "jason",
    ]));
    assert_eq!(code, 0, "{err}");
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(
        now.pointer("/metadata/labels/team"),
        Some(&json!("payments"))
    );
    assert!(now.pointer("/spec/http/0/fault/abort").is_some());
    assert_eq!(patches(&kube).len(), 2);
}

#[test]
fn forbidden_patch_is_exit_3_and_leaves_no_annotation() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    kube.forbid("patch");
    let (code, out, err) =
        run(md(&kube, Auth::Token).args(["fault", "abort", "reviews", "--status", "503"]));
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty(), "nothing reported as done: {out}");
    assert!(err.contains("HTTP 403 Forbidden"), "{err}");
    assert!(
        err.contains("cannot patch resource"),
        "the Status message: {err}"
    );
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(essence(&now), essence(&before));
}

#[test]
fn api_errors_are_reported_and_only_reads_are_retried() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    // A 503 on a read of the VirtualServices (not discovery) is retried: the list is
    // asked for twice.
    kube.fail_next_on("GET", "/virtualservices", 503);
    let (code, _, err) = run(md(&kube, Auth::Token).args(["status"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(vs_reads(&kube), 2, "the failed read and its retry");
    // A 503 on the patch is not retried, and nothing is recorded.
    kube.fail_next("PATCH", 503);
    let (code, _, err) =
        run(md(&kube, Auth::Token).args(["fault", "abort", "reviews", "--status", "503"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 503"), "{err}");
    assert_eq!(patches(&kube).len(), 1);
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
    // A 422 from validation is reported with its message.
    kube.fail_next("PATCH", 422);
    let (code, _, err) =
        run(md(&kube, Auth::Token).args(["fault", "abort", "reviews", "--status", "503"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is invalid"), "{err}");
    // An invalid object is not taken for a failed `test` (a concurrent edit).
    assert!(
        err.contains("schema (its CRD) rejects the changed object at spec.http[0].fault")
            && !err.contains("`test` operation"),
        "{err}"
    );
    // 404.
    let (code, _, err) =
        run(md(&kube, Auth::Token).args(["fault", "abort", "ratings", "--status", "503"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 404 NotFound"), "{err}");
    assert!(err.contains("\"ratings\" not found"), "{err}");
    // No such route is an input error (not clap's exit 2 for a bad flag), and nothing
    // is sent.
    let sent = patches(&kube).len();
    let (code, _, err) = run(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "503", "--route", "nope",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no route named \"nope\""), "{err}");
    assert!(err.contains("the routes are"), "{err}");
    assert_eq!(
        patches(&kube).len(),
        sent,
        "no PATCH for a route that is not there"
    );
}

#[test]
fn timeouts_retry_reads_and_a_patch_that_landed_is_found() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    // A read of the VirtualServices that times out is retried.
    kube.delay_next_on("GET", "/virtualservices", Duration::from_secs(3));
    let (code, _, err) = run(md(&kube, Auth::Token).args(["status", "--request-timeout", "1s"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(vs_reads(&kube), 2, "the slow read and its retry");
    // A patch carried out whose answer is lost: meshdrill reads the object again and
    // finds its own record instead of reporting a failure (or patching twice).
    kube.delay_next("PATCH", Duration::from_secs(3));
    let (code, out, err) = run(md(&kube, Auth::Token).args([
        "fault",
        "abort",
        "reviews",
        "--status",
        "503",
        "--request-timeout",
        "1s",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("patched"), "{out}");
    assert_eq!(patches(&kube).len(), 1, "a PATCH is never retried");
    // The same for the rollback.
    kube.delay_next("PATCH", Duration::from_secs(3));
    let (code, out, err) =
        run(md(&kube, Auth::Token).args(["clear", "reviews", "--request-timeout", "1s"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    assert!(
        kube.vs("default", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_none()
    );
    // A 504 Timeout Status that did not land is an error, with its message.
    kube.fail_next("PATCH", 504);
    let (code, _, err) =
        run(md(&kube, Auth::Token).args(["fault", "abort", "reviews", "--status", "503"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 504 Timeout"), "{err}");
    // The record is not there yet, but a 504 means the server may still apply it.
    assert!(err.contains("may still apply"), "{err}");
    assert!(err.contains("meshdrill status"), "{err}");
    assert!(!err.contains("nothing was changed"), "{err}");
}

#[test]
fn a_patch_that_lands_after_a_504_is_rolled_back_under_wait() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    kube.fail_next_then_apply("PATCH", 504, Duration::from_millis(1500));
    let mut child = Spawned::start(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "503", "--for", "60s", "--wait",
    ]));
    let (code, out, err) = child.finish(Duration::from_secs(30));
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("HTTP 504"), "{err}");
    assert!(
        err.contains("landed after the timeout and was rolled back"),
        "{err}"
    );
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

#[test]
fn dry_run_prints_the_patch_and_sends_nothing() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let (code, out, err) = run(md(&kube, Auth::Token).args([
        "retries",
        "reviews",
        "--attempts",
        "3",
        "--retry-on",
        "5xx",
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{err}");
    let patch: Value = serde_json::from_str(&out).expect("patch on stdout");
    assert_eq!(patch[0]["op"], "test");
    assert!(err.contains("dry run"), "{err}");
    assert!(patches(&kube).is_empty());
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

/// Waits (bounded, 20 s) until `status -A` shows the drill on `ns`/reviews as expired:
/// a TTL is wall-clock time that must pass, but the test waits on what meshdrill
/// itself says about it rather than on a sleep that assumes it.
fn wait_expired(kube: &FakeKube, ns: &str) {
    let expired = wait_until(Duration::from_secs(20), || {
        let (code, out, _) = run(md(kube, Auth::Token).args(["status", "-A", "-o", "json"]));
        code == 0
            && serde_json::from_str::<Value>(&out).is_ok_and(|v| {
                v.as_array().is_some_and(|rows| {
                    rows.iter()
                        .any(|r| r["namespace"] == ns && r["expired"] == true)
                })
            })
    });
    assert!(expired, "the drill on {ns}/reviews never expired");
}

#[test]
fn kill_9_during_wait_then_recover_after_expiry_restores() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let kept = kube.put_vs(reviews("keep"));
    // Two held drills whose process is killed: a short one (2 s) and a long one (10 m).
    for (ns, ttl) in [("default", "2s"), ("keep", "10m")] {
        let mut child = Spawned::start(md(&kube, Auth::Cert).args([
            "fault", "abort", "reviews", "-n", ns, "--status", "503", "--for", ttl, "--wait",
        ]));
        assert!(applied(&kube, ns), "the fault on {ns} was applied");
        child.kill9();
        let _ = child.finish(Duration::from_secs(5));
        assert!(
            kube.vs(ns, "reviews").expect("vs").pointer(ANN).is_some(),
            "killed: the drill on {ns} stays"
        );
    }

    // The long drill cannot have expired, however slow this machine: recover keeps it
    // (checked every time, not only when the machine was fast enough).
    let (code, early, err) = run(md(&kube, Auth::Cert).args(["recover", "-A"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kept keep/reviews"), "{err}");
    assert!(!early.contains("restored in keep"), "{early}");
    assert!(
        kube.vs("keep", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_some()
    );

    // The short one, once expired, is restored; the long one is still kept.
    wait_expired(&kube, "default");
    let (code, late, err) = run(md(&kube, Auth::Cert).args(["recover", "-A"]));
    assert_eq!(code, 0, "{err}");
    let out = early + &late;
    assert!(out.contains("restored in default (expired"), "{out}");
    assert!(err.contains("kept keep/reviews"), "{err}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
    let still = kube.vs("keep", "reviews").expect("vs");
    assert!(still.pointer(ANN).is_some());
    assert_ne!(
        essence(&still),
        essence(&kept),
        "the long drill's fault stays"
    );
}

#[test]
fn recover_orphans_restores_a_drill_whose_owner_is_gone() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let mut child = Spawned::start(md(&kube, Auth::Cert).args([
        "fault", "delay", "reviews", "--fixed", "1s", "--for", "10m", "--wait",
    ]));
    assert!(wait_until(Duration::from_secs(20), || {
        kube.vs("default", "reviews")
            .is_some_and(|o| o.pointer(ANN).is_some())
    }));
    child.kill9();
    let _ = child.finish(Duration::from_secs(5));
    let (code, _, err) = run(md(&kube, Auth::Cert).args(["recover"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kept default/reviews"), "{err}");
    // A one-shot change (no --wait) has no owning process: never an orphan.
    kube.put_vs(reviews("solo"));
    let (code, _, err) =
        run(md(&kube, Auth::Cert)
            .args(["fault", "abort", "reviews", "-n", "solo", "--status", "503"]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(md(&kube, Auth::Cert).args(["recover", "-A", "--orphans"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is gone"), "{out}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
    assert!(
        kube.vs("solo", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_some()
    );
    assert!(err.contains("kept solo/reviews"), "{err}");
}

#[test]
fn sigterm_or_ctrl_c_during_wait_rolls_back_and_exits_130() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    for sig in ["TERM", "INT"] {
        let mut child = Spawned::start(md(&kube, Auth::Token).args([
            "fault", "abort", "reviews", "--status", "503", "--for", "60s", "--wait",
        ]));
        assert!(wait_until(Duration::from_secs(20), || {
            kube.vs("default", "reviews")
                .is_some_and(|o| o.pointer(ANN).is_some())
        }));
        let pid = child.pid().to_string();
        let status = Command::new("kill")
            .args([format!("-{sig}"), pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let (code, out, err) = child.finish(Duration::from_secs(20));
        assert_eq!(code, Some(130), "{out}\n{err}");
        assert!(out.contains("restored"), "{out}");
        assert!(err.contains(&format!("SIG{sig}")), "{err}");
        assert_eq!(
            essence(&kube.vs("default", "reviews").expect("vs")),
            essence(&before)
        );
    }
}

#[test]
fn wait_holds_for_the_duration_then_clears() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let (code, out, err) = run(md(&kube, Auth::Token).args([
        "timeout",
        "reviews",
        "--timeout",
        "1s",
        "--for",
        "1s",
        "--wait",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("patched (timeout 1s"), "{out}");
    assert!(out.contains("restored"), "{out}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

#[test]
fn discovery_picks_v1alpha3_on_an_old_server() {
    let kube = FakeKube::with_versions(&["v1alpha3"]);
    kube.put_vs(reviews("default"));
    let (code, _, err) =
        run(md(&kube, Auth::Cert).args(["fault", "abort", "reviews", "--status", "503"]));
    assert_eq!(code, 0, "{err}");
    let p = patches(&kube);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].path.starts_with("/apis/networking.istio.io/v1alpha3/"),
        "{p:?}"
    );

    let kube = FakeKube::with_versions(&["v1beta1", "v1alpha3"]);
    kube.put_vs(reviews("default"));
    let (code, out, err) = run(md(&kube, Auth::Cert).args(["cluster", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("networking.istio.io/v1beta1 (served: v1beta1, v1alpha3)"),
        "{out}"
    );

    let kube = FakeKube::with_versions(&[]);
    let (code, _, err) = run(md(&kube, Auth::Cert).args(["status"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is Istio installed"), "{err}");
}

#[test]
fn status_lists_and_recover_restores_only_expired_drills() {
    let kube = FakeKube::start();
    let a = kube.put_vs(reviews("a"));
    kube.put_vs(reviews("b"));
    for (ns, ttl) in [("a", "1s"), ("b", "10m")] {
        let (code, _, err) = run(md(&kube, Auth::Token).args([
            "fault",
            "abort",
            "reviews",
            "-n",
            ns,
            "--status",
            "500",
            "--percent",
            "5",
            "--for",
            ttl,
        ]));
        assert_eq!(code, 0, "{err}");
    }
    wait_expired(&kube, "a");
    let (code, out, err) = run(md(&kube, Auth::Token).args(["status", "-A", "-o", "json"]));
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).expect("json");
    let rows = list.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["namespace"], "a");
    assert_eq!(rows[0]["expired"], true);
    assert_eq!(rows[1]["expired"], false);
    assert_eq!(rows[1]["routes"], json!([0, 1]));
    assert_eq!(rows[1]["changes"][0]["change"], "abort HTTP 500 on 5%");
    assert!(rows[1]["owner"]["pid"].is_u64());

    let (code, out, err) = run(md(&kube, Auth::Token).args(["status", "-n", "b"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("NAMESPACE"), "{out}");
    assert!(out.contains("abort HTTP 500 on 5%"), "{out}");
    assert!(!out.contains("\na "), "only namespace b: {out}");

    let (code, out, err) = run(md(&kube, Auth::Token).args(["recover", "-A"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored in a"), "{out}");
    assert!(!out.contains("restored in b"), "{out}");
    assert_eq!(essence(&kube.vs("a", "reviews").expect("vs")), essence(&a));
    assert!(kube.vs("b", "reviews").expect("vs").pointer(ANN).is_some());

    // A record meshdrill cannot read is shown, and recover fails loudly on it.
    let mut broken = reviews("c");
    broken["metadata"]["annotations"] = json!({"meshdrill.io/drill": "{not json"});
    kube.put_vs(broken);
    let (code, out, err) = run(md(&kube, Auth::Token).args(["status", "-n", "c"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unreadable record"), "{out}");
    let (code, _, err) = run(md(&kube, Auth::Token).args(["recover", "-n", "c"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("skipped c/reviews"), "{err}");
}

#[test]
fn cluster_check_reports_permissions_like_can_i() {
    let kube = FakeKube::start();
    let (code, out, err) = run(md(&kube, Auth::Cert).args(["cluster", "check", "-n", "shop"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("server:     {}", kube.url())),
        "{out}"
    );
    assert!(out.contains("namespace:  shop"), "{out}");
    assert!(
        out.contains("can-i patch virtualservices.networking.istio.io -n shop: yes"),
        "{out}"
    );
    kube.forbid("patch");
    let (code, out, err) = run(md(&kube, Auth::Cert).args(["cluster", "check"]));
    assert_eq!(code, 3, "{err}");
    assert!(
        out.contains("can-i get virtualservices.networking.istio.io -n default: yes"),
        "{out}"
    );
    assert!(
        out.contains("can-i patch virtualservices.networking.istio.io -n default: no"),
        "{out}"
    );
}

#[test]
fn pods_kill_by_label_count_percent_and_dry_run() {
    let kube = FakeKube::start();
    for i in 0..4 {
        kube.add_pod(
            "default",
            &format!("go-demo-8-{i}"),
            json!({"app": "go-demo-8"}),
        );
    }
    kube.add_pod("default", "db-0", json!({"app": "db"}));
    let (code, out, err) = run(md(&kube, Auth::Token).args([
        "pods",
        "kill",
        "-l",
        "app=go-demo-8",
        "--percent",
        "50",
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(kube.pods("default").len(), 5);
    let (code, out, err) =
        run(md(&kube, Auth::Token).args(["pods", "kill", "-l", "app=go-demo-8", "--count", "3"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("deleted").count(), 3, "{out}");
    let left = kube.pods("default");
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"db-0".to_string()));
    let (code, _, err) = run(md(&kube, Auth::Token).args(["pods", "kill", "-l", "app=nope"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("nothing was killed"), "{err}");
    kube.forbid("delete");
    let (code, _, err) = run(md(&kube, Auth::Token).args(["pods", "kill", "-l", "app=db"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 403 Forbidden"), "{err}");
}

/// A kube client for the fake server, in-process (token auth, its CA).
fn kube_client(kube: &FakeKube) -> kube::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = kube::Config::new(kube.url().parse().expect("url"));
    cfg.root_cert = Some(
        CertificateDer::pem_file_iter(&kube.ca_file)
            .expect("ca file")
            .map(|c| c.expect("pem").as_ref().to_vec())
            .collect(),
    );
    cfg.default_retry = false;
    cfg.auth_info = serde_json::from_value(json!({"token": FakeKube::TOKEN})).expect("auth");
    kube::Client::try_from(cfg).expect("client")
}

/// VirtualServices in `default` on the fake, through kube-rs (call inside a runtime).
pub(crate) fn vs_api(kube: &FakeKube) -> kube::Api<kube::api::DynamicObject> {
    let ar = kube::discovery::ApiResource {
        group: "networking.istio.io".into(),
        version: "v1".into(),
        api_version: "networking.istio.io/v1".into(),
        kind: "VirtualService".into(),
        plural: "virtualservices".into(),
    };
    kube::Api::namespaced_with(kube_client(kube), "default", &ar)
}

fn api_status(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason, s.message),
        other => panic!("expected an API Status, got {other}"),
    }
}

/// The fake answers POST/PUT/DELETE/PATCH the way kube-apiserver does, as kube-rs sees it.
#[test]
fn fake_server_answers_like_the_apiserver() {
    use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
    let kube = FakeKube::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let api = vs_api(&kube);
        let obj: DynamicObject = serde_json::from_value(reviews("default")).expect("vs");
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .expect("POST");
        let rv = created.metadata.resource_version.clone().expect("rv");
        let (code, reason, msg) = api_status(
            api.create(&PostParams::default(), &obj)
                .await
                .expect_err("exists"),
        );
        assert_eq!((code, reason.as_str()), (409, "AlreadyExists"), "{msg}");

        let mut stale = created.clone();
        stale.data["spec"]["hosts"] = json!(["reviews.default.svc.cluster.local"]);
        let replaced = api
            .replace("reviews", &PostParams::default(), &stale)
            .await
            .expect("PUT");
        assert_ne!(
            replaced.metadata.resource_version.as_deref(),
            Some(rv.as_str())
        );
        let (code, reason, msg) = api_status(
            api.replace("reviews", &PostParams::default(), &stale)
                .await
                .expect_err("stale resourceVersion"),
        );
        assert_eq!((code, reason.as_str()), (409, "Conflict"), "{msg}");
        assert!(msg.contains("the object has been modified"), "{msg}");

        let failing: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/spec/hosts/0", "value": "nope"},
            {"op": "replace", "path": "/spec/hosts/0", "value": "x"}
        ]))
        .expect("patch");
        let (code, reason, msg) = api_status(
            api.patch(
                "reviews",
                &PatchParams::default(),
                &Patch::Json::<()>(failing),
            )
            .await
            .expect_err("failed test op"),
        );
        assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");

        api.delete("reviews", &DeleteParams::default())
            .await
            .expect("DELETE");
        let (code, reason, msg) = api_status(api.get("reviews").await.expect_err("gone"));
        assert_eq!((code, reason.as_str()), (404, "NotFound"), "{msg}");
        assert_eq!(
            msg,
            "virtualservices.networking.istio.io \"reviews\" not found"
        );
    });
}

/// Spawns `cmd` (stdout and stderr piped) and closes the read ends at once: every
/// write of meshdrill's then fails (EPIPE), as with `2>&-` or `| head -0`.
fn spawn_with_closed_output(cmd: &mut Command) -> Spawned {
    let mut child = Spawned::start(cmd);
    if let Some(c) = child.0.as_mut() {
        drop(c.stdout.take());
        drop(c.stderr.take());
    }
    child
}

fn applied(kube: &FakeKube, ns: &str) -> bool {
    wait_until(Duration::from_secs(20), || {
        kube.vs(ns, "reviews")
            .is_some_and(|o| o.pointer(ANN).is_some())
    })
}

#[test]
fn rollback_under_wait_retries_through_429_and_503() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    // The API server is overloaded when the rollback comes: the apply goes through,
    // the next two PATCHes fail (queued before the start: no race with the 2 s hold).
    kube.fail_after("PATCH", 1, 429);
    kube.fail_next("PATCH", 503);
    let mut child = Spawned::start(
        md(&kube, Auth::Token)
            .env("MESHDRILL_ROLLBACK_DEADLINE", "30s")
            .args([
                "fault", "abort", "reviews", "--status", "503", "--for", "2s", "--wait",
            ]),
    );
    assert!(applied(&kube, "default"), "the fault was applied");
    let (code, out, err) = child.finish(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("restored"), "{out}");
    assert!(err.contains("trying again"), "{err}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
    assert_eq!(patches(&kube).len(), 4, "apply, 429, 503, rollback");
}

#[test]
fn rollback_gives_up_after_its_deadline_and_says_how_to_recover() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    // Every PATCH after the apply fails (queued before the start: the 1 s hold cannot
    // end before they are).
    kube.fail_after("PATCH", 1, 503);
    for _ in 0..40 {
        kube.fail_next("PATCH", 503);
    }
    let mut child = Spawned::start(
        md(&kube, Auth::Token)
            .env("MESHDRILL_ROLLBACK_DEADLINE", "1s")
            .args([
                "fault", "abort", "reviews", "--status", "503", "--for", "1s", "--wait",
            ]),
    );
    assert!(applied(&kube, "default"));
    let (code, out, err) = child.finish(Duration::from_secs(30));
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("rollback failed"), "{err}");
    assert!(err.contains("meshdrill recover"), "{err}");
    let tries = patches(&kube).len();
    assert!((2..10).contains(&tries), "bounded by the deadline: {tries}");
}

#[test]
fn a_second_ctrl_c_abandons_a_long_rollback() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    let mut child = Spawned::start(
        md(&kube, Auth::Token)
            .env("MESHDRILL_ROLLBACK_DEADLINE", "60s")
            .args([
                "fault", "abort", "reviews", "--status", "503", "--for", "60s", "--wait",
            ]),
    );
    assert!(applied(&kube, "default"));
    for _ in 0..40 {
        kube.fail_next("PATCH", 503);
    }
    let int = |pid: u32| {
        let status = Command::new("kill")
            .args(["-INT".to_string(), pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    int(child.pid());
    // The rollback is under way (and failing): apply + at least two tries.
    assert!(wait_until(Duration::from_secs(20), || patches(&kube).len() >= 3));
    int(child.pid());
    let (code, out, err) = child.finish(Duration::from_secs(20));
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("press Ctrl-C again to abandon"), "{err}");
    assert!(err.contains("rollback abandoned by SIGINT"), "{err}");
    assert!(err.contains("meshdrill recover"), "{err}");
    assert!(
        kube.vs("default", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_some(),
        "abandoned: the drill stays, with its expiry"
    );
}

#[test]
fn clear_replans_after_an_unrelated_edit() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let (code, _, err) =
        run(md(&kube, Auth::Cert).args(["fault", "abort", "reviews", "--status", "503"]));
    assert_eq!(code, 0, "{err}");
    kube.edit_before_next("PATCH", "default", "reviews", |o| {
        o["metadata"]["labels"]["team"] = json!("payments");
    });
    let (code, out, err) = run(md(&kube, Auth::Cert).args(["clear", "reviews"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    // `clear` of a name that does not exist is still an error.
    let (code, _, err) = run(md(&kube, Auth::Cert).args(["clear", "ratings"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("404"), "{err}");
    let now = kube.vs("default", "reviews").expect("vs");
    assert_eq!(
        now.pointer("/metadata/labels/team"),
        Some(&json!("payments"))
    );
    assert_eq!(now.get("spec"), before.get("spec"));
    assert!(now.pointer(ANN).is_none());
    assert_eq!(
        patches(&kube).len(),
        3,
        "apply, refused clear, re-planned clear"
    );
}

#[test]
fn a_signal_before_the_patch_exits_130_and_changes_nothing() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    // The first read (discovery) is slow: meshdrill is still waiting when the signal comes.
    kube.delay_next("GET", Duration::from_secs(3));
    let mut child = Spawned::start(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "503", "--for", "60s", "--wait",
    ]));
    // Its signal handlers are in place before its first request (cli/change.rs).
    assert!(wait_until(Duration::from_secs(20), || {
        kube.requests().iter().any(|r| r.method == "GET")
    }));
    let status = Command::new("kill")
        .args(["-INT".to_string(), child.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, out, err) = child.finish(Duration::from_secs(20));
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(err.contains("before the patch was sent"), "{err}");
    assert!(patches(&kube).is_empty(), "no PATCH was sent");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

#[test]
fn recover_takes_a_virtualservice_deleted_meanwhile_in_its_stride() {
    let kube = FakeKube::start();
    let b = kube.put_vs(reviews("b"));
    for ns in ["a", "b", "c"] {
        kube.put_vs(reviews(ns));
        let (code, _, err) = run(md(&kube, Auth::Token).args([
            "fault", "abort", "reviews", "-n", ns, "--status", "500", "--for", "1s",
        ]));
        assert_eq!(code, 0, "{err}");
    }
    for ns in ["a", "b", "c"] {
        wait_expired(&kube, ns);
    }
    // Deleted between recover's list and its read (a), and between read and patch (c).
    kube.delete_before_next("GET", "a", "reviews");
    kube.delete_before_next("PATCH", "c", "reviews");
    let (code, out, err) = run(md(&kube, Auth::Token).args(["recover", "-A"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("in a is gone"), "{err}");
    assert!(err.contains("in c is gone"), "{err}");
    assert!(out.contains("restored in b"), "{out}");
    assert_eq!(essence(&kube.vs("b", "reviews").expect("vs")), essence(&b));
}

#[test]
fn closed_output_during_wait_still_rolls_back() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let mut child = spawn_with_closed_output(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "503", "--for", "1s", "--wait",
    ]));
    assert!(applied(&kube, "default"), "the fault was applied");
    let (code, _, _) = child.finish(Duration::from_secs(20));
    // A closed pipe is a quiet exit 0 (see io_err); the rollback happened first.
    assert_eq!(code, Some(0));
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
    assert_eq!(patches(&kube).len(), 2, "applied, then rolled back");

    // `meshdrill status | head -0`: a broken pipe is no error.
    let mut cmd = md(&kube, Auth::Token);
    cmd.args(["status", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A route whose match holds `<`, `>` and `&`: the stored object (written by Go) has
/// them escaped, and evanphx/json-patch compares `test` values byte for byte.
fn html_route_vs() -> Value {
    let mut vs = reviews("default");
    vs["spec"]["http"][0] = json!({
        "name": "api",
        "match": [{"uri": {"regex": "/v(?P<v>[0-9]+)/.*"},
                   "headers": {"x-team": {"exact": "a&b"}, "x-cmp": {"exact": "1<2>0"}}}],
        "route": [{"destination": {"host": "reviews", "subset": "v2"}}]
    });
    vs
}

#[test]
fn a_route_with_html_characters_faults_and_clears_against_a_go_faithful_server() {
    let kube = FakeKube::start();
    let before = kube.put_vs(html_route_vs());
    let (code, out, err) = run(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "503", "--route", "api",
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    let p = patches(&kube);
    assert!(
        p[0].body.contains("\\u003c") && p[0].body.contains("\\u0026"),
        "{}",
        p[0].body
    );
    assert!(!p[0].body.contains(['<', '>', '&']), "{}", p[0].body);
    let (code, out, err) = run(md(&kube, Auth::Token).args(["clear", "reviews"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

/// The fake is as strict as the real server: a `test` sent with raw `&` fails (422),
/// the same value escaped as Go escapes it passes.
#[test]
fn fake_server_compares_test_values_by_raw_bytes_like_evanphx() {
    use kube::api::{DynamicObject, Patch, PatchParams};
    let kube = FakeKube::start();
    kube.put_vs(html_route_vs());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let api = vs_api(&kube);
        let raw: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/spec/http/0/match/0/headers/x-team/exact", "value": "a&b"},
            {"op": "add", "path": "/spec/http/0/timeout", "value": "1s"}
        ]))
        .expect("patch");
        let (code, reason, msg) = api_status(
            api.patch("reviews", &PatchParams::default(), &Patch::Json::<()>(raw))
                .await
                .expect_err("a raw & does not equal the stored \\u0026"),
        );
        assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
        // An object compares exactly: a `test` value with an extra key fails (a subset
        // comparison would pass it here and fail on a cluster).
        let extra: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/spec/http/0/route/0/destination",
             "value": {"host": "reviews", "subset": "v2", "port": {"number": 9080}}},
            {"op": "add", "path": "/spec/http/0/timeout", "value": "1s"}
        ]))
        .expect("patch");
        let (code, reason, msg) = api_status(
            api.patch("reviews", &PatchParams::default(), &Patch::Json::<()>(extra))
                .await
                .expect_err("an extra key is not equal"),
        );
        assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
        // The same test, escaped as Go escapes it, passes (sent as raw bytes).
        let body = r#"[{"op":"test","path":"/spec/http/0/match/0/headers/x-team/exact","value":"a\u0026b"},{"op":"add","path":"/spec/http/0/timeout","value":"1s"}]"#;
        let req = http::Request::patch(
            "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews",
        )
        .header("Content-Type", "application/json-patch+json")
        .body(body.as_bytes().to_vec())
        .expect("request");
        kube_client(&kube)
            .request::<DynamicObject>(req)
            .await
            .expect("the escaped test passes");
    });
    assert_eq!(
        kube.vs("default", "reviews")
            .expect("vs")
            .pointer("/spec/http/0/timeout"),
        Some(&json!("1s"))
    );
}

/// The fake is as strict as kube-apiserver for custom resources: an update (PUT)
/// without a resourceVersion is 422, and a patch that changes nothing keeps the
/// resourceVersion (a client that waits for a new one would wait forever).
#[test]
fn fake_server_refuses_blind_updates_and_keeps_the_version_on_a_no_op() {
    use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
    let kube = FakeKube::start();
    let stored = kube.put_vs(reviews("default"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let api = vs_api(&kube);
        let mut blind: DynamicObject = serde_json::from_value(stored.clone()).expect("object");
        blind.metadata.resource_version = None;
        let (code, reason, msg) = api_status(
            api.replace("reviews", &PostParams::default(), &blind)
                .await
                .expect_err("no resourceVersion"),
        );
        assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
        assert!(msg.contains("must be specified for an update"), "{msg}");
        // A patch whose result equals the object: same resourceVersion.
        let same: json_patch::Patch = serde_json::from_value(json!([
            {"op": "replace", "path": "/spec/http/1/timeout", "value": "3s"}
        ]))
        .expect("patch");
        let after = api
            .patch("reviews", &PatchParams::default(), &Patch::Json::<()>(same))
            .await
            .expect("no-op patch");
        assert_eq!(
            after.metadata.resource_version.as_deref(),
            stored
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
        );
    });
}

// === meshdrill run on a cluster ===

/// A drill on the cluster: background load against a local server (loopback), a
/// fault on `reviews`, a long hold.
fn cluster_drill(dir: &std::path::Path, port: u16, hold: &str) -> std::path::PathBuf {
    crate::common::write(
        dir,
        "drill.yaml",
        format!(
            "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {{name: cluster-drill}}
spec:
  target: {{cluster: {{}}}}
  targets: [127.0.0.1]
  load: {{url: 'http://127.0.0.1:{port}/', rate: 20, connections: 4}}
  slos:
  - {{name: availability, metric: availability, objective: '>= 90%'}}
  method:
  - fault: {{virtualService: reviews, abort: {{httpStatus: 503, percentage: 50}}}}
  - hold: {hold}
"
        ),
    )
}

#[test]
fn sigterm_mid_method_on_a_cluster_rolls_back_and_exits_130() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let server = crate::common::servers::spawn(crate::common::servers::Behavior::Ok);
    let tmp = tempfile::tempdir().expect("tmp");
    let port = server.addr.port();
    let file = cluster_drill(tmp.path(), port, "60s");
    let journal = tmp.path().join("j.json");
    for sig in ["TERM", "INT"] {
        let mut child = Spawned::start(
            md(&kube, Auth::Token)
                .arg("run")
                .arg(&file)
                .arg("--journal")
                .arg(&journal),
        );
        assert!(applied(&kube, "default"), "the fault was applied");
        let status = Command::new("kill")
            .args([format!("-{sig}"), child.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let (code, out, err) = child.finish(Duration::from_secs(30));
        assert_eq!(code, Some(130), "{out}\n{err}");
        assert!(err.contains(&format!("interrupted by SIG{sig}")), "{err}");
        assert_eq!(
            essence(&kube.vs("default", "reviews").expect("vs")),
            essence(&before),
            "the original routes are back"
        );
        let j: Value = serde_json::from_slice(&std::fs::read(&journal).expect("journal"))
            .expect("journal json");
        crate::scenarios::assert_journal_schema(&j);
        assert_eq!(j["ending"]["reason"], "interrupted", "{}", j["ending"]);
        assert_eq!(j["exitCode"], 130);
        assert_eq!(
            j["rollbacks"][0]["outcome"], "restored",
            "{}",
            j["rollbacks"]
        );
        assert!(j["rollbacks"][0]["patch"].is_array());
    }
}

#[test]
fn kill_9_mid_method_on_a_cluster_then_recover_restores() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let server = crate::common::servers::spawn(crate::common::servers::Behavior::Ok);
    let tmp = tempfile::tempdir().expect("tmp");
    let port = server.addr.port();
    let file = cluster_drill(tmp.path(), port, "60s");
    let mut child = Spawned::start(md(&kube, Auth::Token).arg("run").arg(&file));
    assert!(applied(&kube, "default"), "the fault was applied");
    child.kill9();
    let _ = child.finish(Duration::from_secs(5));
    assert!(
        kube.vs("default", "reviews")
            .expect("vs")
            .pointer(ANN)
            .is_some(),
        "killed: the drill stays, with its expiry and owner"
    );
    let (code, out, err) = run(md(&kube, Auth::Token).args(["recover", "--orphans"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored in default (owner"), "{out}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

#[test]
fn a_scenario_dry_run_on_a_cluster_reads_and_sends_nothing() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let tmp = tempfile::tempdir().expect("tmp");
    let file = cluster_drill(tmp.path(), 9, "10s");
    let (code, out, err) = run(md(&kube, Auth::Token)
        .arg("run")
        .arg(&file)
        .arg("--dry-run"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("patch of default/reviews (dry run: not sent)"),
        "{out}"
    );
    assert!(out.contains("\"op\":\"test\""), "{out}");
    assert!(patches(&kube).is_empty(), "nothing was sent");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

/// A scenario on the cluster with `extra` method steps after a fault on `reviews`.
fn cluster_scenario(
    dir: &std::path::Path,
    target: &str,
    method: &str,
    rollbacks: &str,
) -> std::path::PathBuf {
    crate::common::write(
        dir,
        "drill.yaml",
        format!(
            "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {{name: checks}}
spec:
  target: {target}
  method:
{method}{rollbacks}"
        ),
    )
}

#[test]
fn run_merges_the_command_line_into_the_scenarios_cluster_target() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("shop"));
    let tmp = tempfile::tempdir().expect("tmp");
    let file = cluster_scenario(
        tmp.path(),
        "{cluster: {namespace: shop}}",
        "  - fault: {virtualService: reviews, abort: {httpStatus: 503}}\n",
        "",
    );
    // A cluster flag on the command line keeps the scenario's namespace.
    let (code, out, err) = run(md(&kube, Auth::Token).arg("run").arg(&file).args([
        "--dry-run",
        "--request-timeout",
        "10s",
    ]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("patch of shop/reviews"), "{out}");
    // -n wins over it.
    kube.put_vs(reviews("other"));
    let (code, out, err) =
        run(md(&kube, Auth::Token)
            .arg("run")
            .arg(&file)
            .args(["--dry-run", "-n", "other"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("patch of other/reviews"), "{out}");
    // A mesh-only flag on a cluster drill is refused.
    let (code, _, err) = run(md(&kube, Auth::Token)
        .arg("run")
        .arg(&file)
        .args(["--envoy", "/bin/true"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--envoy is for a local mesh"), "{err}");
    assert!(patches(&kube).is_empty());
}

#[test]
fn a_drill_is_planned_whole_before_anything_is_injected() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let tmp = tempfile::tempdir().expect("tmp");
    // Step 3 names a route that is not there: refused before step 1 injects.
    let file = cluster_scenario(
        tmp.path(),
        "{cluster: {}}",
        "  - fault: {virtualService: reviews, abort: {httpStatus: 503}}
  - pause: 1s
  - fault: {virtualService: reviews, route: nope, delay: {fixedDelay: 1s}}
",
        "",
    );
    let (code, out, err) = run(md(&kube, Auth::Token).arg("run").arg(&file));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("drill.yaml:9"), "the step's line: {err}");
    assert!(err.contains("nope"), "{err}");
    assert!(patches(&kube).is_empty(), "nothing was injected");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );

    // A VirtualService that carries another drill: refused, not stacked on (its
    // rollback would remove the other drill's changes too).
    let (code, _, err) =
        run(md(&kube, Auth::Token).args(["fault", "delay", "reviews", "--fixed", "1s"]));
    assert_eq!(code, 0, "{err}");
    let file = cluster_scenario(
        tmp.path(),
        "{cluster: {}}",
        "  - fault: {virtualService: reviews, abort: {httpStatus: 503}}\n",
        "",
    );
    let (code, out, err) = run(md(&kube, Auth::Token).arg("run").arg(&file));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("already carries a drill"), "{err}");
    assert_eq!(patches(&kube).len(), 1, "only the one-shot delay");
}

#[test]
fn a_drill_refused_before_it_began_runs_none_of_its_rollbacks() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    let tmp = tempfile::tempdir().expect("tmp");
    // `restart` is for a local mesh: refused (exit 2); the rollbacks are not tried.
    let file = cluster_scenario(
        tmp.path(),
        "{cluster: {}}",
        "  - fault: {virtualService: reviews, abort: {httpStatus: 503}}\n  - restart: {service: reviews}\n",
        "  rollbacks:\n  - clear: reviews\n",
    );
    let journal = tmp.path().join("j.json");
    let (code, out, err) = run(md(&kube, Auth::Token)
        .arg("run")
        .arg(&file)
        .arg("--journal")
        .arg(&journal));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("restart is for the local mesh"), "{err}");
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_eq!(j["rollbacks"], json!([]), "{}", j["rollbacks"]);
    assert!(patches(&kube).is_empty());
}

#[test]
fn the_preflight_sees_what_the_steps_would_do_on_every_path() {
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    let tmp = tempfile::tempdir().expect("tmp");
    // A search over a VirtualService an earlier step changed — named once without and
    // once with its namespace — would undo that change at its end: refused.
    let file = cluster_scenario(
        tmp.path(),
        "{cluster: {}}",
        "  - fault: {virtualService: reviews, abort: {httpStatus: 503}}
  - search: {abort: {virtualService: reviews, namespace: default, httpStatus: 503}, probe: 1s, maxProbes: 1}
",
        "",
    );
    let text = std::fs::read_to_string(&file).expect("scenario");
    let file = crate::common::write(
        tmp.path(),
        "drill.yaml",
        text.replace(
            "  method:",
            "  targets: [127.0.0.1]\n  load: {url: 'http://127.0.0.1:9/', rate: 1}\n  slos:\n  - {name: a, metric: availability, objective: '>= 90%'}\n  method:",
        ),
    );
    for extra in [&[][..], &["--dry-run"][..]] {
        let (code, out, err) = run(md(&kube, Auth::Token).arg("run").arg(&file).args(extra));
        assert_eq!(code, 2, "{extra:?}: {out}\n{err}");
        assert!(
            err.contains("an earlier step changed VirtualService reviews"),
            "{err}"
        );
    }
    // A flood at {ingress} on a cluster without an ingress: refused before step 1.
    let file = cluster_scenario(
        tmp.path(),
        "{cluster: {}}",
        "  - fault: {virtualService: reviews, abort: {httpStatus: 503}}
  - flood: {url: 'http://{ingress}/', rate: 10, duration: 1s}
",
        "",
    );
    let text = std::fs::read_to_string(&file).expect("scenario");
    let file = crate::common::write(
        tmp.path(),
        "drill.yaml",
        text.replace("  method:", "  targets: [127.0.0.1]\n  method:"),
    );
    let (code, out, err) = run(md(&kube, Auth::Token).arg("run").arg(&file));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("the cluster target has no ingress"), "{err}");
    assert!(patches(&kube).is_empty(), "nothing was injected");

    // A held drill (its process runs): a second `fault --wait` does not stack on it
    // (its rollback would remove the first one's change), a dry run of a scenario
    // is refused like the run.
    let mut holder = Spawned::start(md(&kube, Auth::Token).args([
        "fault", "delay", "reviews", "--fixed", "1s", "--for", "60s", "--wait",
    ]));
    assert!(applied(&kube, "default"));
    let (code, _, err) = run(md(&kube, Auth::Token).args([
        "fault", "abort", "reviews", "--status", "503", "--for", "5s", "--wait",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already carries a drill"), "{err}");
    let file = cluster_scenario(
        tmp.path(),
        "{cluster: {}}",
        "  - fault: {virtualService: reviews, abort: {httpStatus: 503}}\n",
        "",
    );
    let (code, out, err) = run(md(&kube, Auth::Token)
        .arg("run")
        .arg(&file)
        .arg("--dry-run"));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("already carries a drill"), "{err}");
    assert_eq!(patches(&kube).len(), 1, "only the held delay");
    let status = Command::new("kill")
        .args(["-TERM".to_string(), holder.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, _, err) = holder.finish(Duration::from_secs(20));
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&before)
    );
}

// === pods(), deployments(), and the TLS hint ===

/// Runs `f` with a [`Cluster`] connected in-process to the fake (token auth, its CA).
fn with_cluster<F, Fut>(kube: &FakeKube, f: F)
where
    F: FnOnce(meshdrill::cluster::Cluster) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = kube.url();
    let ca = kube.ca_file.display().to_string();
    let env = move |k: &str| match k {
        "KUBERNETES_HOST" => Some(url.clone()),
        "KUBERNETES_CA_CERT_FILE" => Some(ca.clone()),
        "KUBERNETES_API_KEY" => Some(FakeKube::TOKEN.to_string()),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = meshdrill::cluster::Cluster::connect_with(
            &meshdrill::cluster::ConnectOptions::default(),
            &env,
        )
        .await
        .expect("connect");
        f(c).await;
    });
}

fn seed_pods(kube: &FakeKube) {
    // Names sort differently from creation times, so API order is not age order.
    let pods = [
        (
            "web-a",
            json!({"app": "web", "tier": "front"}),
            "Running",
            "2026-01-03T00:00:00Z",
        ),
        (
            "web-b",
            json!({"app": "web", "tier": "back"}),
            "Pending",
            "2026-01-01T00:00:00Z",
        ),
        (
            "web-c",
            json!({"app": "web"}),
            "Running",
            "2026-01-02T00:00:00Z",
        ),
        (
            "db-0",
            json!({"app": "db", "tier": "back"}),
            "Running",
            "2025-12-01T00:00:00Z",
        ),
    ];
    for (name, labels, phase, created) in pods {
        kube.add_pod_with("shop", name, labels, phase, created);
    }
    kube.mark_terminating("shop", "web-c");
    kube.add_pod("other", "web-z", json!({"app": "web"}));
}

#[test]
fn pods_lists_in_api_order_with_phase_age_and_terminating_pods() {
    let kube = FakeKube::start();
    seed_pods(&kube);
    with_cluster(&kube, |c| async move {
        let all = c.pods("shop", None).await.expect("pods");
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["db-0", "web-a", "web-b", "web-c"],
            "API order, all phases"
        );
        let b = &all[2];
        assert_eq!(
            (b.phase.as_str(), b.ready, b.deleting),
            ("Pending", false, false)
        );
        assert_eq!(b.created, Some("2026-01-01T00:00:00Z".parse().expect("ts")));
        assert_eq!(b.namespace, "shop");
        assert_eq!(b.labels.get("tier").map(String::as_str), Some("back"));
        assert!(all[3].deleting, "terminating pods are listed");
        assert!(all[1].ready);

        let sel = |s: &'static str| {
            let c = &c;
            async move {
                c.pods("shop", Some(s))
                    .await
                    .expect(s)
                    .into_iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(sel("app=web").await, ["web-a", "web-b", "web-c"]);
        assert_eq!(sel("app==web,tier!=back").await, ["web-a", "web-c"]);
        assert_eq!(
            sel("tier in (front, back)").await,
            ["db-0", "web-a", "web-b"]
        );
        assert_eq!(sel("tier notin (back)").await, ["web-a", "web-c"]);
        assert_eq!(sel("tier").await, ["db-0", "web-a", "web-b"]);
        assert_eq!(sel("!tier").await, ["web-c"]);
        assert!(sel("app=nope").await.is_empty());
        // the old view: running names only, terminating pods left out
        assert_eq!(
            c.list_pods("shop", "app=web").await.expect("list"),
            ["web-a", "web-b"]
        );

        let err = c
            .pods("shop", Some("app=web,"))
            .await
            .expect_err("bad selector");
        assert_eq!(err.status(), Some(400), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("cannot list pods in shop"), "{msg}");
        assert!(msg.contains("HTTP 400 BadRequest"), "{msg}");
    });
}

#[test]
fn delete_pod_grace_sends_the_grace_period() {
    use crate::common::fake_kube::PodDeletion;
    let kube = FakeKube::start();
    seed_pods(&kube);
    with_cluster(&kube, |c| async move {
        c.delete_pod_grace("shop", "web-a", Some(0))
            .await
            .expect("delete");
        c.delete_pod_grace("shop", "web-b", Some(7))
            .await
            .expect("delete");
        c.delete_pod("shop", "db-0").await.expect("delete");
        let err = c
            .delete_pod_grace("shop", "web-a", Some(1))
            .await
            .expect_err("gone");
        assert_eq!(err.status(), Some(404), "{err}");
    });
    let d = |name: &str, g: Option<i64>| PodDeletion {
        namespace: "shop".into(),
        name: name.into(),
        grace_period_seconds: g,
    };
    assert_eq!(
        kube.pod_deletions(),
        [d("web-a", Some(0)), d("web-b", Some(7)), d("db-0", None)]
    );
    assert_eq!(kube.pods("shop"), ["web-c"]);

    // The fake also reads `?gracePeriodSeconds=` when there is no body, as the apiserver does.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = kube_client(&kube);
        let req = http::Request::delete("/api/v1/namespaces/shop/pods/web-c?gracePeriodSeconds=5")
            .body(Vec::new())
            .expect("request");
        client
            .request::<serde_json::Value>(req)
            .await
            .expect("DELETE with a query");
    });
    assert_eq!(kube.pod_deletions().last(), Some(&d("web-c", Some(5))));
}

#[test]
fn deployments_by_name_and_selector() {
    use crate::common::fake_kube::DeploymentSeed;
    let kube = FakeKube::start();
    let seed =
        |name: &str, labels: Value, replicas: Option<i32>, avail: i32, cond: Option<bool>| {
            DeploymentSeed {
                name: name.into(),
                labels,
                replicas,
                available: avail,
                ready: avail,
                updated: avail,
                available_condition: cond,
            }
        };
    kube.add_deployment(
        "shop",
        seed("web", json!({"app": "web"}), Some(3), 3, Some(true)),
    );
    kube.add_deployment(
        "shop",
        seed(
            "api",
            json!({"app": "api", "tier": "back"}),
            Some(2),
            0,
            Some(false),
        ),
    );
    kube.add_deployment(
        "shop",
        seed("batch", json!({"app": "batch"}), None, 0, None),
    );
    kube.add_deployment(
        "other",
        seed("web", json!({"app": "web"}), Some(1), 1, Some(true)),
    );
    with_cluster(&kube, |c| async move {
        let all = c.deployments("shop", None, None).await.expect("list");
        let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["api", "batch", "web"]);
        let api = &all[0];
        assert_eq!(
            (
                api.replicas,
                api.available,
                api.ready,
                api.updated,
                api.available_condition
            ),
            (2, 0, 0, 0, Some(false))
        );
        assert_eq!(api.labels.get("tier").map(String::as_str), Some("back"));
        assert_eq!(
            (all[1].replicas, all[1].available_condition),
            (1, None),
            "defaults"
        );

        let web = c.deployments("shop", Some("web"), None).await.expect("get");
        assert_eq!(web.len(), 1);
        assert_eq!(
            (
                web[0].namespace.as_str(),
                web[0].available,
                web[0].available_condition
            ),
            ("shop", 3, Some(true))
        );
        assert!(
            c.deployments("shop", Some("nope"), None)
                .await
                .expect("404")
                .is_empty()
        );
        let sel = c
            .deployments("shop", None, Some("app in (web,api)"))
            .await
            .expect("sel");
        assert_eq!(
            sel.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["api", "web"]
        );
        assert!(
            c.deployments("shop", Some("web"), Some("app=api"))
                .await
                .expect("both")
                .is_empty()
        );
        let err = c
            .deployments("shop", None, Some("app in ()"))
            .await
            .expect_err("bad");
        assert_eq!(err.status(), Some(400), "{err}");
        assert!(
            err.to_string()
                .contains("cannot read deployments in shop (selector"),
            "{err}"
        );
    });
}

/// Settings as chaostoolkit users have them for minikube: KUBERNETES_HOST and the
/// profile's client certificate, no CA. meshdrill verifies TLS, so it fails — and says
/// which CA file to set.
#[test]
fn minikube_without_a_ca_file_names_the_ca_to_set() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    let home = tempfile::tempdir().expect("tmp");
    let mk = home.path().join(".minikube");
    let profile = mk.join("profiles").join("minikube");
    std::fs::create_dir_all(&profile).expect("mkdir");
    std::fs::copy(&kube.ca_file, mk.join("ca.crt")).expect("ca");
    std::fs::copy(&kube.client_cert_file, profile.join("client.crt")).expect("crt");
    std::fs::copy(&kube.client_key_file, profile.join("client.key")).expect("key");

    let mut c = meshdrill();
    c.env("KUBERNETES_HOST", kube.url())
        .env("KUBERNETES_CERT_FILE", profile.join("client.crt"))
        .env("KUBERNETES_KEY_FILE", profile.join("client.key"))
        .env("HOME", home.path())
        .env_remove("KUBERNETES_CA_CERT_FILE")
        .env_remove("KUBERNETES_API_KEY")
        .args(["status"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "{err}");
    let line = format!("KUBERNETES_CA_CERT_FILE={}", mk.join("ca.crt").display());
    assert!(err.contains(&line), "{err}");
    assert!(err.contains("meshdrill verifies TLS"), "{err}");

    c.env("KUBERNETES_CA_CERT_FILE", mk.join("ca.crt"));
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");

    // A CA file that is set but wrong gets no minikube hint: it names the file in use.
    c.env("KUBERNETES_CA_CERT_FILE", &kube.wrong_ca_file);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains(&line), "{err}");
}

/// A flood step with `workers: 2` runs as two local meshdrill worker processes whose
/// histograms are merged exactly: the flood's journal counts exactly the requests the
/// target saw, and its phase says so in its name.
#[test]
fn a_flood_split_across_two_workers_counts_exactly_what_the_target_saw() {
    let _s = crate::common::mesh::serial();
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    let server = crate::common::servers::spawn(crate::common::servers::Behavior::Ok);
    let tmp = tempfile::tempdir().expect("tmp");
    let method = format!(
        "  - fault: {{virtualService: reviews, abort: {{httpStatus: 503}}}}
  - flood: {{url: 'http://{}/', rate: 200, duration: 1s, connections: 4, workers: 2}}
",
        server.addr
    );
    let file = cluster_scenario(tmp.path(), "{cluster: {}}", &method, "");
    let text = std::fs::read_to_string(&file).expect("scenario");
    let file = crate::common::write(
        tmp.path(),
        "drill.yaml",
        text.replace("  method:", "  targets: [127.0.0.1]\n  method:"),
    );
    let journal = tmp.path().join("j.json");
    let (code, out, err) = run(md(&kube, Auth::Token)
        .arg("-v")
        .arg("run")
        .arg(&file)
        .arg("--journal")
        .arg(&journal));
    assert_eq!(code, 0, "{out}\n{err}");
    // Two worker processes ran it (the coordinator logs each one it starts).
    assert_eq!(err.matches("started a load worker").count(), 2, "{err}");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    let phase = j["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["flood"].is_object()))
        .expect("a flood phase");
    assert!(
        phase["name"]
            .as_str()
            .unwrap_or("")
            .contains("on 2 workers"),
        "{}",
        phase["name"]
    );
    let requests = phase["flood"]["summary"]["requests"].as_u64().unwrap_or(0);
    assert_eq!(requests, server.hits(), "{}", phase["flood"]);
    assert_eq!(requests, 200, "200/s for 1 s: {}", phase["flood"]);
    assert_eq!(
        essence(&kube.vs("default", "reviews").expect("vs")),
        essence(&reviews("default")),
        "rolled back"
    );
}
