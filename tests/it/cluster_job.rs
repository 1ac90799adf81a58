//! Load workers as a Kubernetes Indexed Job, against the fake API server: the manifest
//! (snapshot), a run where every pod succeeds, one that fails, one that never starts,
//! Ctrl-C, and the refusals (403, 404, 409, 422).

use std::collections::BTreeMap;
use std::time::Duration;

use meshdrill::cancel::Cancel;
use meshdrill::cluster::job::{
    JobError, JobOutcome, PodOwner, WorkerJob, job_manifest, job_name, rbac_summary,
};
use meshdrill::cluster::{Cluster, ConnectOptions};
use meshdrill::fleet::{Event, WorkerEnd};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::common::fake_kube::{FakeKube, Fate};

const NS: &str = "drills";

pub(crate) fn worker_job(workers: u32) -> WorkerJob {
    WorkerJob {
        run_id: "r4nd0m".into(),
        namespace: NS.into(),
        image: "ghcr.io/meshdrill/meshdrill:0.1.0".into(),
        workers,
        args: [
            "load",
            "http://reviews.drills.svc:9080/",
            "--rate",
            "100",
            "-d",
            "30s",
            "--workers",
            &workers.to_string(),
            "--start-at",
            "2026-01-01T00:00:10Z",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        bound: Duration::from_secs(45),
        owner: Some(PodOwner {
            name: "meshdrill-drill-29001-abcde".into(),
            uid: "0b5e-uid".into(),
            namespace: NS.into(),
        }),
        sidecar: false,
    }
}

fn lines(worker: u32, n: usize) -> Vec<String> {
    (0..n)
        .map(|k| format!("{{\"worker\":{worker},\"seq\":{k}}}"))
        .collect()
}

/// Connects in-process to the fake (token auth, its CA) and runs `f` on a runtime.
fn with_cluster<F, Fut, T>(kube: &FakeKube, f: F) -> T
where
    F: FnOnce(Cluster) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    with_cluster_opts(kube, &ConnectOptions::default(), f)
}

/// [`with_cluster`] with these connection options (e.g. a short `request_timeout`).
fn with_cluster_opts<F, Fut, T>(kube: &FakeKube, opts: &ConnectOptions, f: F) -> T
where
    F: FnOnce(Cluster) -> Fut,
    Fut: std::future::Future<Output = T>,
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = Cluster::connect_with(opts, &env).await.expect("connect");
        f(c).await
    })
}

/// Runs the Job for `w` to its end (bounded: 60 s), collecting every event.
pub(crate) fn run(
    kube: &FakeKube,
    w: &WorkerJob,
    cancel: Cancel,
) -> (Result<JobOutcome, JobError>, Vec<Event>) {
    run_opts(kube, w, cancel, &ConnectOptions::default())
}

fn run_opts(
    kube: &FakeKube,
    w: &WorkerJob,
    cancel: Cancel,
    opts: &ConnectOptions,
) -> (Result<JobOutcome, JobError>, Vec<Event>) {
    let job = job_manifest(w).expect("manifest");
    with_cluster_opts(kube, opts, |c| async move {
        let (tx, mut rx) = mpsc::channel(16);
        let collect = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(e) = rx.recv().await {
                events.push(e);
            }
            events
        });
        let r = tokio::time::timeout(Duration::from_secs(60), c.run_job(NS, &job, tx, &cancel))
            .await
            .expect("run_job ended within 60 s");
        let events = collect.await.expect("collector");
        (r, events)
    })
}

/// The events of worker `i`: its lines, then its end (asserted to come last, once).
fn of_worker(events: &[Event], i: u32) -> (Vec<String>, WorkerEnd) {
    let mut lines = Vec::new();
    let mut end = None;
    for e in events {
        match e {
            Event::Line { worker, line } if *worker == i => {
                assert!(end.is_none(), "worker {i}: a line after its end: {line}");
                lines.push(line.clone());
            }
            Event::Ended { worker, end: e } if *worker == i => {
                assert!(end.is_none(), "worker {i}: ended twice");
                end = Some(e.clone());
            }
            _ => {}
        }
    }
    (
        lines,
        end.unwrap_or_else(|| panic!("worker {i} never ended")),
    )
}

/// The Job is gone, deleted once with background propagation, and its pods with it.
fn assert_deleted(kube: &FakeKube, name: &str) {
    assert!(
        kube.jobs(NS).is_empty(),
        "the Job is left: {:?}",
        kube.jobs(NS)
    );
    let dels = kube.job_deletions();
    assert_eq!(dels.len(), 1, "{dels:?}");
    assert_eq!(dels[0].name, name);
    assert_eq!(dels[0].propagation_policy.as_deref(), Some("Background"));
    assert!(kube.pods(NS).is_empty(), "pods left: {:?}", kube.pods(NS));
}

// === The manifest ===

#[test]
fn manifest_snapshot() {
    let job = job_manifest(&worker_job(3)).expect("manifest");
    let v = serde_json::to_value(&job).expect("json");
    insta::assert_yaml_snapshot!("worker_job", v);
}

#[test]
fn manifest_owner_only_in_the_same_namespace() {
    let mut w = worker_job(2);
    w.owner = Some(PodOwner {
        name: "meshdrill-x".into(),
        uid: "u".into(),
        namespace: "elsewhere".into(),
    });
    let job = job_manifest(&w).expect("manifest");
    assert!(job.metadata.owner_references.is_none());
    w.owner = None;
    assert!(
        job_manifest(&w)
            .expect("manifest")
            .metadata
            .owner_references
            .is_none()
    );
}

#[test]
fn manifest_refuses_what_cannot_name_or_run_a_job() {
    use meshdrill::cluster::job::ManifestError;
    // Each refused for its own reason (an error for another cause would pass
    // `is_err()`).
    let mut w = worker_job(2);
    w.run_id = "Has_Upper".into();
    assert_eq!(
        job_manifest(&w).err(),
        Some(ManifestError::RunId("Has_Upper".into()))
    );
    w.run_id = "a".repeat(41);
    assert_eq!(
        job_manifest(&w).err(),
        Some(ManifestError::RunId("a".repeat(41)))
    );
    w = worker_job(0);
    assert_eq!(job_manifest(&w).err(), Some(ManifestError::Workers(0)));
    w = worker_job(2);
    w.image = " ".into();
    assert_eq!(
        job_manifest(&w).err(),
        Some(ManifestError::Image(" ".into()))
    );
    // The longest run id still names a Job the API server takes (<= 63 chars).
    assert!(job_name(&"a".repeat(40)).len() <= 63);
}

#[test]
fn owner_from_the_downward_api() {
    let env = |k: &str| match k {
        "POD_NAME" => Some("p".to_string()),
        "POD_UID" => Some("u".to_string()),
        "POD_NAMESPACE" => Some("n".to_string()),
        _ => None,
    };
    assert_eq!(
        PodOwner::from_env(&env),
        Some(PodOwner {
            name: "p".into(),
            uid: "u".into(),
            namespace: "n".into()
        })
    );
    let none = |k: &str| (k == "POD_NAME").then(|| "p".to_string());
    assert_eq!(PodOwner::from_env(&none), None);
}

// === Runs ===

#[test]
fn all_workers_succeed_lines_in_order_then_exit_0_and_job_deleted() {
    let kube = FakeKube::start();
    for i in 0..3 {
        kube.job_fate(
            i,
            Fate::Exit {
                lines: lines(i, 25),
                code: 0,
            },
        );
    }
    let w = worker_job(3);
    let (r, events) = run(&kube, &w, Cancel::new());
    let out = r.expect("run_job");
    assert!(!out.cancelled);
    assert!(out.not_deleted.is_none(), "{:?}", out.not_deleted);
    for i in 0..3 {
        let (got, end) = of_worker(&events, i);
        assert_eq!(got, lines(i, 25), "worker {i}");
        assert_eq!(end, WorkerEnd::Exited { code: 0 });
        assert_eq!(out.ends.get(&i), Some(&WorkerEnd::Exited { code: 0 }));
    }
    // Each log was followed (while the pod ran), not read once at the end.
    assert!(kube.log_followers() >= 3);
    assert_deleted(&kube, &job_name(&w.run_id));
    // The Job as the server stored it: Indexed, N, no retries.
    let created = kube
        .requests()
        .into_iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/jobs"))
        .expect("a POST of the Job");
    let body: Value = serde_json::from_str(&created.body).expect("json");
    assert_eq!(body["spec"]["completionMode"], "Indexed");
    assert_eq!(body["spec"]["completions"], 3);
    assert_eq!(body["spec"]["parallelism"], 3);
    assert_eq!(body["spec"]["backoffLimit"], 0);
}

/// A quiet worker outlives the client's read timeout: the pod watch and the log
/// stream both break (nothing is sent on them meanwhile) and are opened again; every
/// line still arrives exactly once, in order.
/// (Regression: a quiet watch past --request-timeout failed the whole run.)
#[test]
fn a_quiet_worker_outlives_the_read_timeout() {
    let kube = FakeKube::start();
    let all = lines(0, 12);
    kube.job_fate(
        0,
        Fate::Quiet {
            before: all[..7].to_vec(),
            pause: Duration::from_millis(2500),
            after: all[7..].to_vec(),
        },
    );
    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_secs(1)),
        ..ConnectOptions::default()
    };
    let w = worker_job(1);
    let (r, events) = run_opts(&kube, &w, Cancel::new(), &opts);
    r.expect("run_job");
    let (got, end) = of_worker(&events, 0);
    assert_eq!(got, all);
    assert_eq!(end, WorkerEnd::Exited { code: 0 });
    // The log was opened again, from a second before its last line.
    let resumed = kube
        .requests()
        .into_iter()
        .filter(|s| s.path.ends_with("/log") && s.query.contains("sinceTime="))
        .count();
    assert!(resumed >= 1, "the log was never resumed");
    assert_deleted(&kube, &job_name(&w.run_id));
}

#[test]
fn a_worker_exiting_non_zero_is_its_exit_code() {
    let kube = FakeKube::start();
    kube.job_fate(
        0,
        Fate::Exit {
            lines: lines(0, 2),
            code: 0,
        },
    );
    kube.job_fate(
        1,
        Fate::Exit {
            lines: lines(1, 2),
            code: 2,
        },
    );
    let (r, events) = run(&kube, &worker_job(2), Cancel::new());
    r.expect("run_job");
    assert_eq!(of_worker(&events, 1).1, WorkerEnd::Exited { code: 2 });
    assert_eq!(of_worker(&events, 0).1, WorkerEnd::Exited { code: 0 });
}

#[test]
fn an_oom_killed_worker_is_failed_with_reason_and_tail() {
    let kube = FakeKube::start();
    kube.job_fate(
        0,
        Fate::Exit {
            lines: lines(0, 3),
            code: 0,
        },
    );
    kube.job_fate(
        1,
        Fate::OomKilled {
            lines: lines(1, 30),
        },
    );
    let w = worker_job(2);
    let (r, events) = run(&kube, &w, Cancel::new());
    let out = r.expect("run_job");
    let (got, end) = of_worker(&events, 1);
    assert_eq!(got, lines(1, 30));
    match end {
        WorkerEnd::Failed { reason, tail } => {
            assert!(reason.contains("OOMKilled"), "{reason}");
            assert!(reason.contains("137"), "{reason}");
            // The last 20 lines, oldest first.
            assert_eq!(tail, lines(1, 30)[10..].to_vec());
        }
        other => panic!("worker 1: {other:?}"),
    }
    assert_eq!(of_worker(&events, 0).1, WorkerEnd::Exited { code: 0 });
    assert!(matches!(out.ends.get(&1), Some(WorkerEnd::Failed { .. })));
    assert_deleted(&kube, &job_name(&w.run_id));
}

#[test]
fn a_worker_whose_image_cannot_be_pulled_never_started() {
    let kube = FakeKube::start();
    kube.job_fate(
        0,
        Fate::Exit {
            lines: lines(0, 2),
            code: 0,
        },
    );
    let msg = "rpc error: code = NotFound desc = failed to pull and unpack image \"ghcr.io/meshdrill/meshdrill:0.1.0\": not found";
    kube.job_fate(
        1,
        Fate::Waiting {
            reason: "ErrImagePull".into(),
            message: msg.into(),
        },
    );
    let w = worker_job(2);
    let (r, events) = run(&kube, &w, Cancel::new());
    r.expect("run_job");
    let (got, end) = of_worker(&events, 1);
    assert!(got.is_empty());
    assert_eq!(
        end,
        WorkerEnd::NeverStarted {
            reason: format!("ErrImagePull: {msg}")
        }
    );
    assert_eq!(of_worker(&events, 0).1, WorkerEnd::Exited { code: 0 });
    assert_deleted(&kube, &job_name(&w.run_id));
}

#[test]
fn an_unschedulable_worker_never_started() {
    let kube = FakeKube::start();
    let msg = "0/3 nodes are available: 3 Insufficient cpu.";
    kube.job_fate(
        0,
        Fate::Unschedulable {
            message: msg.into(),
        },
    );
    let (r, events) = run(&kube, &worker_job(1), Cancel::new());
    r.expect("run_job");
    assert_eq!(
        of_worker(&events, 0).1,
        WorkerEnd::NeverStarted {
            reason: format!("Unschedulable: {msg}")
        }
    );
}

#[test]
fn cancel_mid_run_deletes_the_job_and_its_pods() {
    let kube = FakeKube::start();
    for i in 0..2 {
        kube.job_fate(i, Fate::Hang { lines: lines(i, 3) });
    }
    let w = worker_job(2);
    let job = job_manifest(&w).expect("manifest");
    let cancel = Cancel::new();
    let fake = &kube;
    let (r, events) = with_cluster(&kube, |c| {
        let for_run = cancel.clone();
        async move {
            let (tx, mut rx) = mpsc::channel(16);
            let run = tokio::spawn(async move { c.run_job(NS, &job, tx, &for_run).await });
            // Cancel once every worker printed all its lines: the Job is mid-run.
            let mut events = Vec::new();
            let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
            while let Some(e) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("lines within 30 s")
            {
                if let Event::Line { worker, .. } = &e {
                    *seen.entry(*worker).or_default() += 1;
                }
                events.push(e);
                if seen.values().filter(|n| **n == 3).count() == 2 {
                    break;
                }
            }
            assert!(fake.job_deletions().is_empty(), "deleted before the cancel");
            cancel.cancel_by(meshdrill::cancel::Reason::Interrupt);
            while let Some(e) = rx.recv().await {
                events.push(e);
            }
            let r = tokio::time::timeout(Duration::from_secs(30), run)
                .await
                .expect("run_job stops within 30 s of the cancel")
                .expect("task");
            (r, events)
        }
    });
    let out = r.expect("run_job");
    assert!(out.cancelled);
    assert!(out.not_deleted.is_none());
    for i in 0..2 {
        assert!(
            matches!(out.ends.get(&i), Some(WorkerEnd::Failed { reason, .. }) if reason.contains("cancelled")),
            "{:?}",
            out.ends
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Ended { worker, .. } if *worker == i)),
            "a cancelled worker did not end on its own"
        );
    }
    assert_deleted(&kube, &job_name(&w.run_id));
}

// === Refusals ===

#[test]
fn forbidden_create_names_the_verbs_and_resources_and_creates_nothing() {
    let kube = FakeKube::start();
    kube.forbid_on("create", "jobs");
    let (r, events) = run(&kube, &worker_job(2), Cancel::new());
    let e = r.expect_err("403");
    assert_eq!(e.status(), Some(403));
    let text = e.to_string();
    assert!(
        text.contains(&format!("cannot create Job {NS}/meshdrill-load-r4nd0m")),
        "{text}"
    );
    assert!(
        text.contains("cannot create resource \"jobs\" in API group \"batch\""),
        "{text}"
    );
    assert!(text.contains(&rbac_summary()), "{text}");
    assert!(text.contains("deploy/load-rbac.yaml"), "{text}");
    assert!(events.is_empty());
    assert!(kube.jobs(NS).is_empty());
}

#[test]
fn a_missing_namespace_and_a_taken_name_say_what_to_do() {
    let kube = FakeKube::start();
    kube.absent_namespace(NS);
    let e = run(&kube, &worker_job(1), Cancel::new())
        .0
        .expect_err("404");
    assert_eq!(e.status(), Some(404));
    assert!(
        e.to_string()
            .contains(&format!("kubectl get namespace {NS}")),
        "{e}"
    );

    let kube = FakeKube::start();
    let w = worker_job(1);
    // A Job of that name is there already (another run with the same run id).
    let job = job_manifest(&w).expect("manifest");
    kube.put_job(NS, serde_json::to_value(&job).expect("json"));
    let e = run(&kube, &w, Cancel::new()).0.expect_err("409");
    assert_eq!(e.status(), Some(409));
    assert!(
        e.to_string().contains(&format!(
            "kubectl delete job {} -n {NS}",
            job_name(&w.run_id)
        )),
        "{e}"
    );
}

#[test]
fn a_forbidden_pod_watch_deletes_the_job_and_says_so() {
    let kube = FakeKube::start();
    kube.forbid_on("watch", "pods");
    let w = worker_job(1);
    let e = run(&kube, &w, Cancel::new()).0.expect_err("403 on watch");
    let text = e.to_string();
    assert!(matches!(e, JobError::WatchPods { .. }), "{text}");
    assert!(text.contains("cannot watch resource \"pods\""), "{text}");
    assert!(text.contains("the Job was deleted"), "{text}");
    assert_deleted(&kube, &job_name(&w.run_id));
}

#[test]
fn a_failed_delete_names_the_kubectl_command() {
    let kube = FakeKube::start();
    kube.forbid_on("delete", "jobs");
    let w = worker_job(1);
    let out = run(&kube, &w, Cancel::new()).0.expect("run_job");
    let e = out.not_deleted.expect("a failed delete");
    assert!(
        e.to_string().contains(&format!(
            "kubectl delete job {} -n {NS}",
            job_name(&w.run_id)
        )),
        "{e}"
    );
    assert_eq!(kube.jobs(NS).len(), 1);
}

#[test]
fn the_fake_validates_jobs_as_the_apiserver_does() {
    let kube = FakeKube::start();
    let mut job =
        serde_json::to_value(job_manifest(&worker_job(2)).expect("manifest")).expect("json");
    job["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("image");
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always".into();
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job).expect("job");
    let r = with_cluster(&kube, |c| async move {
        let (tx, _rx) = mpsc::channel(16);
        c.run_job(NS, &job, tx, &Cancel::new()).await
    });
    let e = r.expect_err("422");
    assert_eq!(e.status(), Some(422));
    let text = e.to_string();
    assert!(
        text.contains("spec.template.spec.containers[0].image: Required value"),
        "{text}"
    );
    assert!(
        text.contains("spec.template.spec.restartPolicy: Unsupported value: \"Always\""),
        "{text}"
    );
    assert!(kube.jobs(NS).is_empty());

    // And run_job refuses an Indexed Job without completions before sending it.
    let mut job =
        serde_json::to_value(job_manifest(&worker_job(2)).expect("manifest")).expect("json");
    job["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("completions");
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job).expect("job");
    let r = with_cluster(&kube, |c| async move {
        let (tx, _rx) = mpsc::channel(16);
        c.run_job(NS, &job, tx, &Cancel::new()).await
    });
    assert!(matches!(r, Err(JobError::Manifest(_))), "{r:?}");
}

// === meshdrill load --workers N --in-cluster, end to end ===

/// What real worker `index` of `n` prints for `args` against `url` (run here, on
/// loopback): the lines a pod's log would hold.
fn worker_lines(url: &str, args: &[&str], n: u32, index: u32) -> Vec<String> {
    let out = crate::common::meshdrill()
        .arg("load")
        .arg(url)
        .args(args)
        .args([format!("--workers={n}"), format!("--worker-index={index}")])
        .output()
        .expect("run a worker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `meshdrill load URL ARGS --workers 2 --in-cluster --namespace NS -o json` against
/// `kube`: the exit code, the JSON report and stderr.
fn load_in_cluster(kube: &FakeKube, url: &str, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut cmd = crate::common::meshdrill();
    kube.env(&mut cmd, crate::common::fake_kube::Auth::Token);
    let out = cmd
        .arg("load")
        .arg(url)
        .args(args)
        .args([
            "--workers",
            "2",
            "--in-cluster",
            "--namespace",
            NS,
            "-o",
            "json",
        ])
        .output()
        .expect("run the coordinator");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, stderr)
}

/// The CLI creates the Job with the worker argv, merges what the pods print (real
/// worker output, replayed by the fake's kubelet) exactly, and deletes the Job.
#[test]
fn load_in_cluster_merges_the_pods_results_and_deletes_the_job() {
    let server = crate::common::servers::spawn(crate::common::servers::Behavior::Ok);
    let url = format!("http://{}/", server.addr);
    let args = ["--rate", "200", "-n", "61", "-c", "2"];
    let w0 = worker_lines(&url, &args, 2, 0);
    let w1 = worker_lines(&url, &args, 2, 1);
    assert_eq!(server.hits(), 61, "the two shares together are the run");
    let kube = FakeKube::start();
    kube.job_fate(0, Fate::Exit { lines: w0, code: 0 });
    kube.job_fate(1, Fate::Exit { lines: w1, code: 0 });
    let (code, v, stderr) = load_in_cluster(&kube, &url, &args);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v["requests"], 61, "{v}");
    assert_eq!(v["partial"], false, "{v}");
    let per: Vec<u64> = v["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["requests"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(per, vec![31, 30], "{v}");
    // The Job it created: N pods running this run's worker argv.
    let seen = kube.requests();
    let create = seen
        .iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/jobs"))
        .expect("a Job was created");
    let job: Value = serde_json::from_str(&create.body).expect("job json");
    assert_eq!(job["spec"]["completions"], 2);
    let cargs: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(cargs.contains(&"--workers=2"), "{cargs:?}");
    assert!(
        cargs.contains(&"--worker-index=$(JOB_COMPLETION_INDEX)"),
        "{cargs:?}"
    );
    assert!(cargs.contains(&url.as_str()), "{cargs:?}");
    let dels = kube.job_deletions();
    assert_eq!(dels.len(), 1, "{dels:?}");
    assert_eq!(dels[0].propagation_policy.as_deref(), Some("Background"));
}

/// A pod that is OOM-killed midway: the run is partial (exit 3), names the worker, and
/// the Job is still deleted.
#[test]
fn load_in_cluster_with_a_failed_pod_is_partial() {
    let server = crate::common::servers::spawn(crate::common::servers::Behavior::Ok);
    let url = format!("http://{}/", server.addr);
    let args = ["--rate", "200", "-n", "40", "-c", "2"];
    let w0 = worker_lines(&url, &args, 2, 0);
    let mut w1 = worker_lines(&url, &args, 2, 1);
    w1.truncate(1); // the header only: killed before its first interval
    let kube = FakeKube::start();
    kube.job_fate(0, Fate::Exit { lines: w0, code: 0 });
    kube.job_fate(1, Fate::OomKilled { lines: w1 });
    let (code, v, stderr) = load_in_cluster(&kube, &url, &args);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(v["partial"], true, "{v}");
    assert_eq!(v["requests"], 20, "only worker 0's share: {v}");
    assert!(stderr.contains("worker 1 of 2"), "{stderr}");
    assert!(stderr.contains("OOMKilled"), "{stderr}");
    assert_eq!(kube.job_deletions().len(), 1);
}

/// Cluster flags without --in-cluster would be ignored: refused.
#[test]
fn cluster_flags_without_in_cluster_are_refused() {
    let out = crate::common::meshdrill()
        .args([
            "load",
            "http://127.0.0.1:9/",
            "--context",
            "prod",
            "-n",
            "1",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--in-cluster"), "{stderr}");
    let out = crate::common::meshdrill()
        .args(["load", "http://127.0.0.1:9/", "--in-cluster", "-n", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
}
