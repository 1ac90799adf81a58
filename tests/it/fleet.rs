//! `meshdrill load --workers N`: local worker processes, the exact merge, and the
//! failure paths (a killed worker, Ctrl-C, workers that cannot start), with no
//! process left behind. Every run is bounded by -n or a short -d, on 127.0.0.1.

use std::io::Read as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use meshdrill::fleet::{self, Backend, Event, WorkerEnd, wire};
use meshdrill::load::{Cancel, LoadConfig, Rate, Stop};
use serde_json::Value;

use crate::common::servers::{self, Behavior, Server};
use crate::common::{meshdrill, root, run};

// === helpers ===

fn load_json(args: &[&str]) -> (i32, Value, String) {
    let (code, out, err) = run(meshdrill().arg("load").args(args).args(["-o", "json"]));
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("one JSON object on stdout ({e}): {out:?} / {err}"));
    (code, v, err)
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

fn workers(v: &Value) -> &Vec<Value> {
    v["workers"].as_array().expect("workers array")
}

fn schema_errors(v: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/load.json")).expect("schema/load.json"),
    )
    .expect("schema is JSON");
    crate::common::schema::check(&schema, &schema, v, "$")
}

/// The child PIDs of `pid` (every thread's `children` list).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `pid` is a running (not zombie) meshdrill process.
fn running_meshdrill(pid: u32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
    String::from_utf8_lossy(&cmd).contains("meshdrill") && !matches!(state, Some(Some('Z')) | None)
}

/// Waits (bounded) until the server has seen a request and `pid` has `want` children.
fn wait_for_hits_and_children(s: &Server, pid: u32, want: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kids = children(pid);
        if s.hits() > 0 && kids.len() >= want {
            return kids;
        }
        assert!(
            Instant::now() < deadline,
            "no hits / children within 30 s ({} hits, {kids:?})",
            s.hits()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

fn spawn_coordinator(args: &[&str]) -> Child {
    meshdrill()
        .arg("load")
        .args(args)
        .args(["-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshdrill")
}

fn finish(mut c: Child) -> (i32, Value, String) {
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(o) = c.stdout.as_mut() {
        o.read_to_string(&mut out).expect("stdout");
    }
    if let Some(e) = c.stderr.as_mut() {
        e.read_to_string(&mut err).expect("stderr");
    }
    let code = c.wait().expect("wait").code().unwrap_or(-1);
    let v = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("one JSON object on stdout ({e}): {out:?} / {err}"));
    (code, v, err)
}

// === merge ===

#[test]
fn two_workers_merge_to_exactly_what_the_server_saw() {
    let _s = crate::common::mesh::serial();
    let s = servers::spawn(Behavior::Pattern(vec![200, 200, 503]));
    let (code, v, err) = load_json(&[&s.url("/"), "-d", "1s", "-c", "4", "--workers", "2"]);
    assert_eq!(code, 0, "{err}");
    let per_worker: u64 = workers(&v).iter().map(|w| n(w, "requests")).sum();
    assert!(n(&v, "requests") > 0, "{v}");
    assert_eq!(n(&v, "requests"), per_worker, "merged = sum of the workers");
    assert_eq!(n(&v, "requests"), s.hits(), "merged = what the server saw");
    let statuses = &v["status_codes"];
    assert_eq!(n(statuses, "200") + n(statuses, "503"), s.hits());
    assert_eq!(n(&v, "connections"), 4, "the total, not a share");
    assert_eq!(v["partial"], false);
    for (i, w) in workers(&v).iter().enumerate() {
        assert_eq!(n(w, "index"), i as u64);
        assert_eq!(w["ended"], "exited 0");
        assert_eq!(w["complete"], true);
        assert!(n(w, "requests") > 0, "both workers sent: {v}");
    }
    let errors = schema_errors(&v);
    assert!(errors.is_empty(), "{errors:#?}\n{v}");
}

#[test]
fn an_open_loop_with_n_sends_exactly_n_across_workers() {
    let _s = crate::common::mesh::serial();
    let s = servers::spawn(Behavior::Ok);
    let (code, v, err) = load_json(&[
        &s.url("/"),
        "--rate",
        "400",
        "-n",
        "301",
        "-c",
        "3",
        "--workers",
        "3",
        "--latency-2xx",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&v, "requests"), 301);
    assert_eq!(s.hits(), 301);
    assert_eq!(n(&v, "scheduled"), 301);
    assert_eq!(n(&v, "missed"), 0);
    assert_eq!(n(&v["status_codes"], "200"), 301);
    let shares: Vec<u64> = workers(&v).iter().map(|w| n(w, "requests")).collect();
    assert_eq!(shares, [101, 100, 100], "slots m ≡ i (mod 3) of 0..301");
    assert_eq!(v["open_loop"], true);
    assert!(v["latency_2xx_ms"]["p99"].is_number(), "{v}");
    let errors = schema_errors(&v);
    assert!(errors.is_empty(), "{errors:#?}\n{v}");
}

#[test]
fn text_output_has_one_line_per_worker() {
    let s = servers::spawn(Behavior::Ok);
    let (code, out, err) =
        run(meshdrill().args(["load", &s.url("/"), "-n", "40", "-c", "2", "--workers", "2"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Requests:  40 sent"), "{out}");
    for i in 0..2 {
        assert!(out.contains(&format!("Worker {i}:  20 requests")), "{out}");
    }
    assert!(!out.contains("PARTIAL"), "{out}");
}

// === worker mode ===

#[test]
fn worker_mode_prints_only_the_protocol() {
    let s = servers::spawn(Behavior::Ok);
    // A start already past: the run starts at once.
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(2);
    let (code, out, err) = run(meshdrill().args([
        "load",
        &s.url("/"),
        "-n",
        "10",
        "-c",
        "2",
        "--workers",
        "2",
        "--worker-index",
        "1",
        "--start-at",
        &past.to_string(),
    ]));
    assert_eq!(code, 0, "{err}");
    let mut stream = wire::Stream::new(1, 2);
    let mut requests = 0;
    let mut ended = false;
    for line in out.lines() {
        match stream.feed(line).unwrap_or_else(|e| panic!("{e}: {line}")) {
            wire::Item::Interval(i) => requests += i.data.counts.requests(),
            wire::Item::End(_) => ended = true,
            wire::Item::Note(n) => panic!("stdout holds only protocol lines: {n}"),
            wire::Item::Header(h) => {
                let at = SystemTime::from(past);
                let ms = |t: SystemTime| {
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_millis())
                };
                assert_eq!(ms(h.start_at).ok(), ms(at).ok());
            }
        }
    }
    assert!(ended, "{out}");
    assert_eq!((requests, s.hits()), (5, 5), "slots 1, 3, 5, 7, 9 of 0..10");
}

// === failure paths ===

#[test]
fn a_worker_killed_mid_run_gives_a_partial_result_and_no_orphans() {
    let _s = crate::common::mesh::serial();
    let s = servers::spawn(Behavior::Ok);
    let c = spawn_coordinator(&[
        &s.url("/"),
        "-d",
        "4s",
        "--rate",
        "100",
        "-c",
        "2",
        "--workers",
        "2",
        "--timeout",
        "2s",
    ]);
    let pid = c.id();
    let kids = wait_for_hits_and_children(&s, pid, 2);
    assert_eq!(kids.len(), 2, "{kids:?}");
    signal("-KILL", kids[0]);
    let (code, v, err) = finish(c);
    assert_eq!(code, 3, "{err}");
    assert_eq!(v["partial"], true);
    let killed: Vec<&Value> = workers(&v)
        .iter()
        .filter(|w| w["complete"] == false)
        .collect();
    assert_eq!(killed.len(), 1, "{v}");
    assert_eq!(killed[0]["ended"], "failed: killed by SIGKILL");
    assert!(
        err.contains("failed (killed by SIGKILL); its share is missing"),
        "{err}"
    );
    assert_eq!(
        n(&v, "requests"),
        workers(&v).iter().map(|w| n(w, "requests")).sum::<u64>()
    );
    let errors = schema_errors(&v);
    assert!(errors.is_empty(), "{errors:#?}\n{v}");
    for k in kids {
        assert!(!running_meshdrill(k), "worker {k} outlived the coordinator");
    }
}

#[test]
fn sigint_stops_every_worker_and_prints_the_results_so_far() {
    let _s = crate::common::mesh::serial();
    let s = servers::spawn(Behavior::Ok);
    let c = spawn_coordinator(&[
        &s.url("/"),
        "-d",
        "60s",
        "--rate",
        "50",
        "-c",
        "2",
        "--workers",
        "2",
    ]);
    let pid = c.id();
    let kids = wait_for_hits_and_children(&s, pid, 2);
    signal("-INT", pid);
    let (code, v, err) = finish(c);
    assert_eq!(code, 130, "{err}");
    assert_eq!(v["cancelled"], true);
    assert_eq!(
        v["partial"], false,
        "both workers stopped and reported: {v}"
    );
    assert!(n(&v, "requests") > 0);
    for k in kids {
        assert!(!running_meshdrill(k), "worker {k} outlived the coordinator");
    }
}

#[test]
fn splits_that_leave_a_worker_nothing_are_refused() {
    let url = "http://127.0.0.1:9/";
    for (args, want) in [
        (vec![url, "-c", "2", "--workers", "3"], "give -c at least 3"),
        (
            vec![url, "-c", "8", "-n", "2", "--workers", "3"],
            "give -n at least 3",
        ),
        (
            vec![url, "--workers", "2", "--worker-index", "2"],
            "worker index 2 of 2",
        ),
        (vec![url, "--workers", "0"], "--workers"),
        (vec![url, "--worker-index", "0"], "--workers"),
        (
            vec![
                url,
                "--workers",
                "2",
                "--worker-index",
                "0",
                "--start-at",
                "soon",
            ],
            "unix milliseconds or RFC 3339",
        ),
        (
            vec![
                url,
                "--workers",
                "2",
                "--worker-index",
                "0",
                "--start-at",
                "1000",
            ],
            "--start-at is",
        ),
        (
            vec![url, "--body-base64", "***"],
            "--body-base64 is not valid base64",
        ),
    ] {
        let (code, out, err) = run(meshdrill().arg("load").args(&args));
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn small_config(s: &Server) -> LoadConfig {
    LoadConfig::builder(s.url("/"))
        .conns(2)
        .rate(Rate::Fixed(100.0))
        .stop(Stop::Requests(20))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("config")
}

/// Runs the library coordinator with local workers of `exe`, bounded.
fn run_local(config: &LoadConfig, exe: std::path::PathBuf) -> fleet::FleetReport {
    rt().block_on(async {
        let run = fleet::run(
            config,
            2,
            fleet::start_time(2),
            Backend::Local { exe },
            Cancel::new(),
            |_: &meshdrill::load::IntervalSnapshot| {},
        );
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the coordinator finished in time")
            .expect("run")
    })
}

#[test]
fn workers_with_bad_arguments_are_reported_with_their_error() {
    let s = servers::spawn(Behavior::Ok);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("bad-worker");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\" --no-such-flag\n",
            env!("CARGO_BIN_EXE_meshdrill")
        ),
    )
    .expect("write script");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let r = run_local(&small_config(&s), script);
    assert!(r.partial);
    assert_eq!(r.report.requests(), 0);
    for w in &r.workers {
        assert!(!w.complete);
        assert_eq!(w.ended(), "failed: exited with code 2");
        assert!(
            w.tail.iter().any(|l| l.contains("--no-such-flag")),
            "the worker's own error: {:?}",
            w.tail
        );
    }
    // A worker executable that does not exist never starts.
    let r = run_local(&small_config(&s), dir.path().join("missing"));
    assert!(r.partial);
    assert!(
        matches!(&r.workers[0].end, Some(WorkerEnd::NeverStarted { reason }) if reason.contains("missing")),
        "{:?}",
        r.workers[0].end
    );
    assert_eq!(s.hits(), 0);
}

/// The backend for the Kubernetes Job: the coordinator merges lines it is fed, and a
/// worker whose lines break the protocol makes the run partial.
#[test]
fn an_event_backend_is_merged_and_a_broken_worker_is_partial() {
    let s = servers::spawn(Behavior::Ok);
    let config = small_config(&s);
    let start = fleet::start_time(2);
    // Worker 0 really runs (its stdout becomes Line events); worker 1 prints garbage.
    let mut args = fleet::worker_args(&config, 2, start);
    args.push("--worker-index=0".into());
    let (code, out, err) = run(meshdrill().args(&args));
    assert_eq!(code, 0, "{err}");
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    for line in out.lines() {
        tx.try_send(Event::Line {
            worker: 0,
            line: line.into(),
        })
        .expect("send");
    }
    for ev in [
        Event::Ended {
            worker: 0,
            end: WorkerEnd::Exited { code: 0 },
        },
        Event::Line {
            worker: 1,
            line: "{\"type\":\"header\",\"version\":99}".into(),
        },
        Event::Ended {
            worker: 1,
            end: WorkerEnd::Exited { code: 0 },
        },
    ] {
        tx.try_send(ev).expect("send");
    }
    let r = rt().block_on(fleet::run(
        &config,
        2,
        start,
        Backend::Events(rx),
        Cancel::new(),
        |_: &meshdrill::load::IntervalSnapshot| {},
    ));
    let r = r.expect("run");
    assert_eq!(r.report.requests(), 10, "worker 0's share of -n 20");
    assert_eq!(r.report.requests(), s.hits());
    assert!(r.partial);
    assert!(r.workers[0].complete);
    let p = r.workers[1].problem.as_deref().unwrap_or_default();
    assert!(
        p.contains("worker 1, line 1") && p.contains("version 99"),
        "{p}"
    );
}
