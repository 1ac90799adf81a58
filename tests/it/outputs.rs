//! `--junit`, `--notify` and `--hist-log` on `meshdrill run`: one small drill on a
//! real Envoy writes JUnit XML and an HdrHistogram interval log that agree with its
//! journal, and posts its verdict to a local webhook — while a webhook that answers
//! 500 and one that refuses the connection are warnings that leave the exit code the
//! verdict's. Bad URLs and experiment files are refused (exit 2) before anything runs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::common::servers::refused_port;
use crate::common::{meshdrill, root, run, write};

/// (method, content-type, body) of each request a [`Webhook`] received.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A webhook receiver on 127.0.0.1:0 answering every POST with `status` and `body`;
/// dropping it stops it.
struct Webhook {
    addr: SocketAddr,
    got: Received,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    fn start(status: u16, answer: &'static str) -> Webhook {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let got: Received = Arc::default();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let g = got.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let conn = tokio::select! {
                        _ = &mut stopped => return,
                        c = l.accept() => c,
                    };
                    let Ok((s, _)) = conn else { return };
                    let g = g.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let g = g.clone();
                            async move {
                                let method = req.method().to_string();
                                let ct = req
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().to_vec())
                                    .unwrap_or_default();
                                g.lock().expect("lock").push((method, ct, body));
                                let mut r =
                                    Response::new(Full::new(Bytes::from_static(answer.as_bytes())));
                                *r.status_mut() =
                                    hyper::StatusCode::from_u16(status).expect("a status");
                                Ok::<_, Infallible>(r)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
        });
        Webhook {
            addr,
            got,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/secret-key", self.addr)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A drill with a certain verdict (BROKE, exit 1): a breach that is expected (it
/// passes), then the same total failure where the objectives must hold (it fails).
const DRILL: &str = "apiVersion: meshdrill.io/v1alpha1
kind: Scenario
metadata: {name: ci-outputs}
spec:
  target: {mesh: mesh.yaml}
  targets: [repeater.acme.com]
  load: {url: 'http://{ingress}/', headers: {Host: repeater.acme.com}, rate: 50, connections: 64, timeout: 2s}
  slos:
  - {name: availability, metric: availability, objective: '>= 90%'}
  - {name: latency, metric: p50, objective: '< 10s'}
  steadyState: {duration: 2s}
  method:
  - retries: {virtualService: repeater, attempts: 0}
  - fault: {virtualService: go-demo-8, abort: {httpStatus: 500, percentage: 100}}
  - name: total failure, breach expected
    hold: {duration: 2s, expect: {breach: [availability]}}
  - name: total failure, must hold
    hold: 2s
  - clear: go-demo-8
";

/// (element name, attributes) of every start or empty element.
fn elements(xml: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut r = Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match r.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("an attribute");
                        (
                            a.key.into_inner().to_string(),
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .expect("a value")
                                .into_owned(),
                        )
                    })
                    .collect();
                out.push((e.name().into_inner().to_string(), attrs));
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

/// What the journal says JUnit must count: (tests, failures, skipped). Each objective
/// of each judged phase (a breach the phase expected passes; a named objective that
/// held fails), plus recovery objectives and retry checks.
fn expected_counts(j: &Value) -> (usize, usize, usize) {
    let (mut tests, mut failures, mut skipped) = (0, 0, 0);
    for p in j["phases"].as_array().expect("phases") {
        let expect = p["expect"].as_str().expect("expect");
        if expect == "ignore" {
            continue;
        }
        let named: Vec<&str> = expect
            .strip_prefix("breach: ")
            .map(|n| n.split(", ").collect())
            .unwrap_or_default();
        for r in p["slos"].as_array().expect("slos") {
            tests += 1;
            let to_break = expect == "breach" || named.contains(&r["name"].as_str().unwrap_or(""));
            match (r["verdict"].as_str(), to_break) {
                (Some("fail"), false) => failures += 1,
                (Some("pass"), true) if expect != "breach" => failures += 1,
                (Some("inconclusive"), _) => skipped += 1,
                _ => {}
            }
        }
    }
    for r in j["recovery"].as_array().expect("recovery") {
        tests += 1;
        match r["verdict"].as_str() {
            Some("fail") => failures += 1,
            Some("inconclusive") => skipped += 1,
            _ => {}
        }
    }
    (tests, failures, skipped)
}

#[test]
fn a_drill_writes_junit_and_interval_logs_that_agree_with_its_journal_and_posts_its_verdict() {
    let _s = crate::common::mesh::serial();
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "mesh.yaml",
        std::fs::read_to_string(root().join("scenarios/meshes/go-demo-8.yaml")).expect("mesh"),
    );
    let f = write(tmp.path(), "s.yaml", DRILL);
    let (journal, junit, hist) = (
        tmp.path().join("j.json"),
        tmp.path().join("junit.xml"),
        tmp.path().join("drill.hlog"),
    );
    let ok = Webhook::start(200, "ok");
    let broken = Webhook::start(500, "internal error\nstack trace");
    let refused = format!("http://127.0.0.1:{}/hooks/x", refused_port());
    let (code, out, err) = run(meshdrill()
        .arg("run")
        .arg(&f)
        .arg("--journal")
        .arg(&journal)
        .arg("--junit")
        .arg(&junit)
        .arg("--hist-log")
        .arg(&hist)
        .args([
            "--notify",
            &ok.url(),
            "--notify",
            &broken.url(),
            "--notify",
            &refused,
        ])
        .env("TMPDIR", tmp.path()));
    let j: Value =
        serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    crate::scenarios::assert_journal_schema(&j);

    // The verdict's exit code, whatever the webhooks did.
    assert_eq!(j["verdict"], "broke", "{}", j["verdictText"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(j["exitCode"], 1);
    assert!(
        err.contains(&format!(
            "warning: --notify http://{}/hooks/…: HTTP 500: internal error",
            broken.addr
        )),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: --notify http://127.0.0.1:")
                && l.contains("cannot connect")),
        "{err}"
    );
    assert!(
        !err.contains("secret-key"),
        "the webhook's secret stays out: {err}"
    );

    // JUnit: the journal's counts.
    let xml = std::fs::read_to_string(&junit).expect("junit");
    let els = elements(&xml);
    let suite = &els
        .iter()
        .find(|e| e.0 == "testsuite")
        .expect("a testsuite")
        .1;
    let n = |k: &str| suite[k].parse::<usize>().expect("a count");
    let (tests, failures, skipped) = expected_counts(&j);
    assert_eq!(
        (n("tests"), n("failures"), n("skipped"), n("errors")),
        (tests, failures, skipped, 0),
        "{xml}"
    );
    let cases = els.iter().filter(|e| e.0 == "testcase").count();
    assert_eq!(cases, tests);
    assert_eq!(els.iter().filter(|e| e.0 == "failure").count(), failures);
    assert!(failures >= 1, "the must-hold phase broke: {xml}");
    assert_eq!(suite["name"], "ci-outputs");
    assert!(
        els.iter().any(|e| e.0 == "testcase"
            && e.1["classname"] == "ci-outputs.total failure, must hold"
            && e.1["name"] == "availability >= 90%"),
        "{xml}"
    );

    // The interval log: one tag per measured phase, its counts the phase's requests.
    let bytes = std::fs::read(&hist).expect("hist log");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("#[StartTime: ") && text.contains("#[BaseTime: "),
        "{text}"
    );
    let mut per_tag: BTreeMap<String, u64> = BTreeMap::new();
    let mut d = Deserializer::new();
    let mut last_start = BTreeMap::new();
    for e in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(i) = e.expect("a log line") {
            let tag = i
                .tag()
                .expect("every interval is tagged")
                .as_str()
                .to_string();
            let raw = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                i.encoded_histogram(),
            )
            .expect("base64");
            let h: Histogram<u64> = d.deserialize(&mut raw.as_slice()).expect("a histogram");
            assert!(
                i.duration() <= std::time::Duration::from_millis(1100),
                "{:?}",
                i.duration()
            );
            // In order within a tag.
            let prev = last_start.insert(tag.clone(), i.start_timestamp());
            assert!(prev.is_none_or(|p| p < i.start_timestamp()));
            *per_tag.entry(tag).or_default() += h.len();
        }
    }
    let phases: BTreeMap<String, u64> = j["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter(|p| p["summary"]["requests"].as_u64() > Some(0))
        .map(|p| {
            (
                meshdrill::report::histlog::tag_for(p["name"].as_str().expect("name")),
                p["summary"]["requests"].as_u64().expect("requests"),
            )
        })
        .collect();
    assert_eq!(per_tag, phases, "{text}");
    assert!(
        phases.len() >= 4,
        "steady before, two holds, steady after: {phases:?}"
    );

    // The webhook: one JSON POST, the verdict in the text, the SLO table as fields.
    let got = ok.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    let (method, ct, body) = &got[0];
    assert_eq!(method, "POST");
    assert_eq!(ct, "application/json");
    let msg: Value = serde_json::from_slice(body).expect("a JSON body");
    let t = msg["text"].as_str().expect("text");
    assert!(t.starts_with("meshdrill: ci-outputs BROKE on "), "{t}");
    assert!(t.ends_with("(exit 1)"), "{t}");
    let fields = msg["attachments"][0]["fields"].as_array().expect("fields");
    let slos: usize = j["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["slos"].as_array().map_or(0, Vec::len))
        .sum::<usize>()
        + j["recovery"].as_array().map_or(0, Vec::len);
    assert_eq!(fields.len(), slos);
    assert_eq!(
        broken.got.lock().expect("lock").len(),
        1,
        "the 500 was posted to"
    );
}

#[test]
fn a_bad_webhook_url_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "mesh.yaml",
        std::fs::read_to_string(root().join("scenarios/meshes/go-demo-8.yaml")).expect("mesh"),
    );
    let f = write(tmp.path(), "s.yaml", DRILL);
    for (url, says) in [
        ("ftp://example.com/hook", "webhooks are http:// or https://"),
        ("hooks.example.com/x", "not a webhook URL"),
    ] {
        let (code, out, err) = run(meshdrill()
            .arg("run")
            .arg(&f)
            .args(["--notify", url])
            .env("TMPDIR", tmp.path()));
        assert_eq!(code, 2, "{url}: {out}\n{err}");
        assert!(err.contains("--notify") && err.contains(says), "{err}");
        assert!(!out.contains("load:"), "nothing ran: {out}");
    }
    let (code, _, err) = run(meshdrill()
        .arg("run")
        .arg(&f)
        .args(["--junit", "/nonexistent-dir/x.xml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--junit /nonexistent-dir/x.xml"), "{err}");
}

#[test]
fn the_flags_are_refused_on_experiment_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = write(
        tmp.path(),
        "e.yaml",
        "title: t\ndescription: d\nmethod:\n- type: action\n  name: a\n  provider: {type: process, path: 'true'}\n",
    );
    for flags in [
        ["--junit", "x.xml"],
        ["--notify", "http://127.0.0.1:9/x"],
        ["--hist-log", "x.hlog"],
    ] {
        let (code, _, err) = run(meshdrill()
            .arg("run")
            .arg(&f)
            .args(flags)
            .current_dir(tmp.path()));
        assert_eq!(code, 2, "{flags:?}: {err}");
        assert!(
            err.contains(&format!("{} is for scenario files", flags[0])),
            "{err}"
        );
        assert!(!tmp.path().join(flags[1]).exists());
    }
}
