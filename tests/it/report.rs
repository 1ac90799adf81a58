//! The HTML report: written by a real drill (`demo --report`), the same page again from
//! its journal (`report --html`), opened in a real browser (headless Chromium): it
//! loads with no console error, every chart has data, the verdict is there. And
//! journals that are cut short, from another version, or not journals at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{meshdrill, run, write};

/// Chromium, where the machine has it (`make deps` installs Debian's).
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| {
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .find(|p| p.is_file())
}

/// What headless Chromium made of a page: the DOM after loading, the console
/// messages it logged, and a screenshot.
struct Rendered {
    dom: String,
    console: Vec<String>,
}

/// Runs headless Chromium on `page` (a file), bounded in time; `screenshot` is
/// written when given.
fn render(chromium: &Path, page: &Path, screenshot: Option<&Path>) -> Rendered {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1000,3600",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(png) => cmd.arg(format!("--screenshot={}", png.display())),
        None => cmd.arg("--dump-dom"),
    };
    let url = format!("file://{}", page.canonicalize().expect("page").display());
    let mut child = cmd
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read both pipes on threads so a chatty browser never blocks; bound the wait.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dom = out.join().unwrap_or_default();
    let log = err.join().unwrap_or_default();
    Rendered {
        dom,
        console: log
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}

/// Each chart's section of the page, and how many drawn points (polyline and
/// polygon vertices, timeline boxes) it has in the browser's DOM.
fn chart_points(dom: &str) -> Vec<(String, usize)> {
    dom.split("<figure class=\"chart-box\" id=\"")
        .skip(1)
        .map(|fig| {
            let id = fig.split('"').next().unwrap_or("").to_string();
            let fig = fig.split("</figure>").next().unwrap_or("");
            let vertices: usize = fig
                .split(" points=\"")
                .skip(1)
                .map(|p| p.split('"').next().unwrap_or("").split_whitespace().count())
                .sum();
            let blocks = fig.matches("<g class=\"block\">").count();
            (id, vertices + blocks)
        })
        .collect()
}

#[test]
fn a_drill_writes_a_report_that_a_browser_shows_whole() {
    let _s = crate::common::mesh::serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let journal = tmp.path().join("journal.json");
    let report = tmp.path().join("report.html");
    let (code, out, err) = run(meshdrill()
        .args(["demo", "--phase", "3s", "--journal"])
        .arg(&journal)
        .arg("--report")
        .arg(&report)
        .env("TMPDIR", tmp.path()));
    // The verdict is the demo test's business (a noisy machine can make a short phase
    // inconclusive); here the page must say whatever it is.
    assert!([0, 1, 4].contains(&code), "{err}\n{out}");
    assert!(err.contains("report: "), "the report is named: {err}");
    let page = std::fs::read_to_string(&report).expect("report written");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).expect("journal")).expect("json");

    // Self-contained: nothing to fetch, a policy that forbids fetching, no script.
    assert!(page.len() < 500 * 1024, "{} bytes", page.len());
    assert!(page.contains("default-src 'none'"));
    assert!(!page.contains("<script"));
    for attr in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!page.contains(attr), "the page fetches something: {attr}");
    }
    // The verdict in words, the faults, every phase.
    let verdict = j["verdictText"].as_str().expect("verdict text");
    let word = match j["verdict"].as_str() {
        Some("held") => "Held",
        Some("broke") => "Broke",
        Some("inconclusive") => "Inconclusive",
        _ => "Not judged",
    };
    assert!(
        page.contains(&format!("<div class=\"word\">{word}</div>")),
        "verdict word {word}"
    );
    assert!(page.contains(verdict), "verdict text {verdict:?}");
    assert!(page.contains("fault: abort HTTP 500 on 50%"));
    assert!(page.contains("fault: abort HTTP 500 on 100%"));
    for p in j["phases"].as_array().expect("phases") {
        assert!(page.contains(p["name"].as_str().expect("name")), "{p}");
    }

    // The same page from the journal alone.
    let again = tmp.path().join("again.html");
    let (code, _, err) = run(meshdrill()
        .arg("report")
        .arg(&journal)
        .arg("--html")
        .arg(&again));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&again).expect("again"),
        page,
        "`report --html` from the journal renders the page `--report` wrote"
    );

    let Some(chromium) = chromium() else {
        eprintln!(
            "skipping the browser check: chromium is not installed (`make deps` installs it)"
        );
        return;
    };
    let shown = render(&chromium, &report, None);
    assert!(shown.console.is_empty(), "console: {:#?}", shown.console);
    assert!(shown.dom.contains(verdict), "the browser shows the verdict");
    let charts = chart_points(&shown.dom);
    let ids: Vec<&str> = charts.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["timeline", "latency", "rate", "status", "distribution"]
    );
    for (id, n) in &charts {
        assert!(*n >= 4, "chart {id} has {n} data points");
    }
    let png = tmp.path().join("report.png");
    let shot = render(&chromium, &report, Some(&png));
    assert!(shot.console.is_empty(), "console: {:#?}", shot.console);
    let bytes = std::fs::read(&png).expect("screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    // A blank 1000×3600 page compresses to a few KiB; charts and tables do not.
    assert!(bytes.len() > 60_000, "screenshot of {} bytes", bytes.len());
}

/// The browser check catches what it claims to: a fetch the page's policy blocks,
/// and a console error, each show up as console messages.
#[test]
fn the_browser_check_sees_a_blocked_fetch_and_a_console_error() {
    let Some(chromium) = chromium() else {
        eprintln!("skipping: chromium is not installed (`make deps` installs it)");
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let fetches = write(
        tmp.path(),
        "fetches.html",
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"></head><body><img src=\"http://127.0.0.1:9/x.png\"></body></html>",
    );
    let errs = write(
        tmp.path(),
        "errs.html",
        "<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>",
    );
    assert!(!render(&chromium, &fetches, None).console.is_empty());
    assert!(!render(&chromium, &errs, None).console.is_empty());
    // An empty chart is seen as one.
    assert_eq!(
        chart_points("<figure class=\"chart-box\" id=\"x\"><svg class=\"chart\"></svg></figure>"),
        [("x".to_string(), 0)]
    );
}

/// A journal written by a real drill, for the bad-input tests (a small hand-written
/// one would not exercise every field).
fn real_journal() -> String {
    std::fs::read_to_string(crate::common::data("report/journal.json"))
        .expect("tests/data/report/journal.json")
}

#[test]
fn a_journal_cut_short_still_makes_a_report_marked_incomplete() {
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = real_journal();
    let cut = &whole[..whole.len() * 6 / 10];
    let j = write(tmp.path(), "cut.json", cut);
    let html = tmp.path().join("cut.html");
    let (code, _, err) = run(meshdrill().arg("report").arg(&j).arg("--html").arg(&html));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cut short"), "{err}");
    assert!(err.contains("incomplete"), "{err}");
    let page = std::fs::read_to_string(&html).expect("written anyway");
    assert!(page.contains("Incomplete report"));
    assert!(
        page.contains("steady state before"),
        "what the journal holds is shown"
    );
    // The text summary reads it too.
    let (code, out, _) = run(meshdrill().arg("report").arg(&j));
    assert_eq!(code, 2);
    assert!(out.contains("verdict: not judged"), "{out}");
}

#[test]
fn a_journal_from_another_version_is_read_as_far_as_it_goes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut v: serde_json::Value = serde_json::from_str(&real_journal()).expect("json");
    v["format"] = 2.into();
    v["phases"][1]["summary"] = "moved elsewhere in format 2".into();
    v["newThing"] = serde_json::json!({"a": 1});
    let j = write(tmp.path(), "v2.json", v.to_string());
    let html = tmp.path().join("v2.html");
    let (code, _, err) = run(meshdrill().arg("report").arg(&j).arg("--html").arg(&html));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("format 2"), "{err}");
    assert!(err.contains("phases[1].summary"), "{err}");
    let page = std::fs::read_to_string(&html).expect("written anyway");
    assert!(page.contains("Incomplete report"));
    assert!(
        page.contains("<div class=\"word\">Held</div>"),
        "the verdict still reads"
    );
}

#[test]
fn what_is_not_a_journal_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let html = tmp.path().join("out.html");
    let cases = [
        (
            "ctk.json",
            r#"{"chaoslib-version": "1.40", "experiment": {"title": "t"}, "run": [], "status": "completed"}"#,
            "chaostoolkit",
        ),
        (
            "scenario.yaml",
            "kind: Scenario\nmetadata: {name: x}\n",
            "not JSON",
        ),
        ("list.json", "[]", "not a journal"),
    ];
    for (name, text, says) in cases {
        let f = write(tmp.path(), name, text);
        let (code, _, err) = run(meshdrill().arg("report").arg(&f).arg("--html").arg(&html));
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(err.contains(name), "names the file: {err}");
        assert!(!html.exists(), "{name}: nothing written");
    }
    let (code, _, err) = run(meshdrill().args(["report", "/nonexistent/journal.json"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/journal.json"), "{err}");
    // A report that cannot be written: exit 3.
    let j = write(tmp.path(), "j.json", real_journal());
    let (code, _, err) = run(meshdrill()
        .arg("report")
        .arg(&j)
        .args(["--html", "/nonexistent/dir/out.html"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("/nonexistent/dir/out.html"), "{err}");
}

#[test]
fn a_report_that_cannot_be_written_stops_the_drill_before_it_starts() {
    let (code, _, err) = run(meshdrill().args([
        "demo",
        "--phase",
        "1s",
        "--report",
        "/nonexistent/dir/report.html",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot write --report /nonexistent/dir/report.html"),
        "{err}"
    );
}

#[test]
fn report_is_for_scenario_runs_not_chaostoolkit_experiments() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exp = write(
        tmp.path(),
        "exp.yaml",
        "title: t\ndescription: d\nmethod:\n  - type: action\n    name: a\n    provider: {type: process, path: \"true\"}\n",
    );
    let (code, _, err) = run(meshdrill()
        .arg("run")
        .arg(&exp)
        .arg("--report")
        .arg(tmp.path().join("r.html")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--report is for scenario files"), "{err}");
}

/// A dry run runs nothing: there is no drill to report, post or log.
#[test]
fn the_record_of_a_run_is_refused_on_a_dry_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let scenario = crate::common::root().join("scenarios/network-failure.yaml");
    for flag in [
        vec!["--report", "r.html"],
        vec!["--junit", "j.xml"],
        vec!["--hist-log", "h.hlog"],
        vec!["--notify", "http://127.0.0.1:9/hook"],
    ] {
        let (code, out, err) = run(meshdrill()
            .current_dir(tmp.path())
            .arg("run")
            .arg(&scenario)
            .arg("--dry-run")
            .args(&flag));
        assert_eq!(code, 2, "{flag:?}: {err}");
        assert!(
            err.contains(&format!("{} records a drill that ran", flag[0])),
            "{err}"
        );
        assert!(out.is_empty(), "no plan printed: {out}");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 0);
    }
}
