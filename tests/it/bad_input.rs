//! Bad input that must be refused (issue 14): the malformed-manifest corpus in
//! tests/data/bad-input, standard input for `-f -`, bounded reads, and flags held to
//! the same bounds as files.

use std::io::Write;
use std::process::Stdio;

use crate::common::{data, meshdrill, run, write};

const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - name: primary\n    route:\n    - destination: {host: reviews}\n";

/// Runs meshdrill with `input` on standard input.
fn run_stdin(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = meshdrill()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshdrill");
    if let Some(mut stdin) = child.stdin.take() {
        // A refused input may close the pipe early: that is not the test's failure.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file of the corpus is refused by `validate` and by a `-f` command with exit 2,
/// the message its `.err` file names, no output, and the file unchanged.
#[test]
fn every_malformed_manifest_is_refused_with_its_message() {
    let dir = data("bad-input");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data/bad-input")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.ends_with(".err") && name != "README.md"
        })
        .collect();
    files.sort();
    assert!(files.len() >= 25, "corpus too small: {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let expected = std::fs::read_to_string(dir.join(format!("{name}.err")))
            .unwrap_or_else(|_| panic!("{name}: no {name}.err beside it"));
        let before = std::fs::read(path).expect("read");
        for (cmd, args) in [
            ("validate", vec!["validate", name]),
            (
                "-f",
                vec![
                    "fault", "abort", "-f", name, "--status", "503", "-o", "yaml",
                ],
            ),
        ] {
            let (code, out, err) = run(meshdrill().current_dir(&dir).args(&args));
            let mut problems = Vec::new();
            if code != 2 {
                problems.push(format!("exit {code}, want 2"));
            }
            if cmd == "-f" && !out.is_empty() {
                problems.push(format!("output on stdout: {out}"));
            }
            if cmd == "validate" && out.contains(": valid") {
                problems.push(format!("called valid: {out}"));
            }
            if err.contains("panicked") {
                problems.push("panicked".into());
            }
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                let line = match (line.strip_prefix("validate: "), line.strip_prefix("-f: ")) {
                    (Some(l), _) if cmd == "validate" => l,
                    (None, Some(l)) if cmd == "-f" => l,
                    (None, None) => line,
                    _ => continue,
                };
                let line = line.replace("{file}", name);
                match line.strip_prefix('!') {
                    Some(not) if err.contains(not) => problems.push(format!("says {not:?}")),
                    Some(_) => {}
                    None if !err.contains(&line) => problems.push(format!("lacks {line:?}")),
                    None => {}
                }
            }
            if std::fs::read(path).expect("read") != before {
                problems.push("the file was changed".into());
            }
            if !problems.is_empty() {
                failures.push(format!("{name} ({cmd}): {}\n{err}", problems.join("; ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `-f -` reads the manifest from standard input, for every command that takes -f, with
/// the same result as the file (was: `-: cannot read: No such file or directory`).
#[test]
fn dash_f_dash_reads_standard_input_for_every_command() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "vs.yaml", VS);
    let commands: [&[&str]; 6] = [
        &["fault", "abort", "--status", "503"],
        &["fault", "delay", "--fixed", "2s"],
        &["fault", "network", "--total"],
        &["retries", "--attempts", "3"],
        &["timeout", "--timeout", "5s"],
        &["clear"],
    ];
    for args in commands {
        let with = |file: &str| -> Vec<String> {
            let mut v: Vec<String> = args.iter().map(ToString::to_string).collect();
            v.extend(["-f", file, "-o", "patch"].map(String::from));
            v
        };
        let (code, from_file, err) = run(meshdrill().args(with(f.to_str().expect("utf8"))));
        assert_eq!(code, 0, "{args:?}: {err}");
        let dash = with("-");
        let dash: Vec<&str> = dash.iter().map(String::as_str).collect();
        let (code, from_stdin, err) = run_stdin(&dash, VS.as_bytes());
        assert_eq!(code, 0, "{args:?} -f -: {err}");
        // Run ids and times differ between runs; the operations must not.
        let ops = |s: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(s).expect("patch JSON");
            v.as_array()
                .expect("ops")
                .iter()
                .map(|o| format!("{} {}", o["op"], o["path"]))
                .collect()
        };
        assert_eq!(ops(&from_stdin), ops(&from_file), "{args:?}");
    }
    // validate names standard input and its lines.
    let (code, out, err) = run_stdin(&["validate", "-"], VS.as_bytes());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("<stdin>:1: VirtualService reviews: valid"),
        "{out}"
    );
    let bad = VS.replace("    route:\n", "    timout: 5s\n    route:\n");
    let (code, _, err) = run_stdin(&["retries", "-f", "-", "--attempts", "2"], bad.as_bytes());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("<stdin>:9: spec.http[0].timout: unknown field; did you mean `timeout`?"),
        "{err}"
    );
    let (code, _, err) = run_stdin(&["validate", "-"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("<stdin>: no manifest: the file is empty"),
        "{err}"
    );
}

/// The 3 MiB limit holds while reading: an endless input is refused after the limit
/// instead of growing memory until killed (was: `validate /dev/zero` never returned).
#[test]
fn endless_input_is_refused_at_the_size_limit() {
    for args in [
        &["validate", "/dev/zero"][..],
        &["fault", "abort", "--status", "503", "-f", "/dev/zero"],
        &["run", "/dev/zero"],
        &["mesh", "up", "/dev/zero"],
    ] {
        let (code, out, err) = run(meshdrill().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.contains("/dev/zero: more than 3145728 bytes: too large for a manifest"),
            "{args:?}: {err}"
        );
    }
    // Standard input too, from a pipe that never ends on its own.
    let mut child = meshdrill()
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let chunk = vec![b'#'; 64 * 1024];
    // 4 MiB at most: meshdrill stops reading (closing the pipe) after 3 MiB + 1.
    for _ in 0..64 {
        if stdin.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("<stdin>: more than 3145728 bytes"), "{err}");
}

/// Flags are held to the bounds `validate` applies to files (was: `--attempts
/// 2147483648` and `--timeout 2562048h` accepted, the latter then refused by Envoy).
#[test]
fn flags_use_the_validators_bounds_and_name_themselves() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "vs.yaml", VS);
    let f = f.to_str().expect("utf8");
    let cases: [(&[&str], &str); 10] = [
        (
            &["retries", "-f", f, "--attempts", "2147483648"],
            "invalid value '2147483648' for '--attempts <N>'",
        ),
        (
            &["retries", "-f", f, "--attempts", "-1"],
            "invalid value '-1' for '--attempts <N>'",
        ),
        (
            &["timeout", "-f", f, "--timeout", "2562048h"],
            "invalid value '2562048h' for '--timeout <DURATION>'",
        ),
        (
            &["timeout", "-f", f, "--timeout", "-1s"],
            "invalid value '-1s' for '--timeout <DURATION>'",
        ),
        (
            &[
                "retries",
                "-f",
                f,
                "--attempts",
                "2",
                "--per-try-timeout",
                "2562048h",
            ],
            "invalid value '2562048h' for '--per-try-timeout <DURATION>'",
        ),
        (
            &["fault", "delay", "-f", f, "--fixed", "9999999999s"],
            "invalid value '9999999999s' for '--fixed <DURATION>'",
        ),
        (
            &[
                "fault",
                "delay",
                "-f",
                f,
                "--fixed",
                "1s",
                "--percent",
                "-5",
            ],
            "invalid value '-5' for '--percent <PERCENT>'",
        ),
        (
            &["fault", "abort", "-f", f, "--status", "-1"],
            "invalid value '-1' for '--status <CODE>'",
        ),
        (
            &["fault", "network", "-f", f, "--partial", "-5"],
            "invalid value '-5' for '--partial [<PERCENT>]'",
        ),
        (
            &["timeout", "-f", f, "--timeout", "1s", "--route-index", "-1"],
            "invalid value '-1' for '--route-index <N>'",
        ),
    ];
    for (args, needle) in cases {
        let (code, out, err) = run(meshdrill().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert_eq!(
            err.matches("invalid value").count(),
            1,
            "said once, then what is allowed: {err}"
        );
    }
    // The largest values allowed pass, and `validate` accepts what they produce.
    for args in [
        &["retries", "--attempts", "2147483647"][..],
        &["timeout", "--timeout", "9223372036s"],
    ] {
        let (code, out, err) = run(meshdrill().args(args).args(["-f", f]));
        assert_eq!(code, 0, "{args:?}: {err}");
        let g = write(dir.path(), "out.yaml", &out);
        let (code, _, err) = run(meshdrill().arg("validate").arg(&g));
        assert_eq!(code, 0, "{args:?}: {err}");
    }
}

/// Usage errors exit 2, not 3: a namespace that is not a name, and a --kubeconfig the
/// KUBERNETES_* variables would override.
#[test]
fn namespace_and_kubeconfig_conflicts_are_usage_errors() {
    let (code, _, err) =
        run(meshdrill().args(["retries", "r", "-n", "Bad_NS!", "--attempts", "2"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a namespace name"), "{err}");
    for args in [
        &[
            "retries",
            "r",
            "--attempts",
            "2",
            "--kubeconfig",
            "/nonexistent",
        ][..],
        &["status", "--context", "x"],
        &["cluster", "check", "--kubeconfig", "/nonexistent"],
        &["pods", "kill", "-l", "app=x", "--context", "x"],
        &["run", "experiments/network.yaml", "--context", "x"],
        &["run", "scenarios/delay.yaml", "--cluster", "--context", "x"],
    ] {
        let (code, _, err) = run(meshdrill()
            .current_dir(crate::common::root())
            .env("KUBERNETES_HOST", "https://127.0.0.1:1")
            .args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("KUBERNETES_HOST is set"), "{args:?}: {err}");
    }
}

/// Messages in a user's words: one copy of the OS error, no parser internals.
#[test]
fn read_errors_are_said_once() {
    for args in [
        &["run", "/nonexistent/s.yaml"][..],
        &["mesh", "up", "/nonexistent/s.yaml"],
        &["validate", "/nonexistent/s.yaml"],
    ] {
        let (code, _, err) = run(meshdrill().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("/nonexistent/s.yaml: cannot read: no such file"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("os error"), "{args:?}: {err}");
    }
    let (code, _, err) = run(meshdrill().args(["validate", "/"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/: cannot read: it is a directory"), "{err}");
}

/// `--route NAME` matching several routes says so (was: silently changed them all).
#[test]
fn a_route_name_on_two_routes_warns() {
    let dir = tempfile::tempdir().expect("tmp");
    let twice = VS.replace(
        "    - destination: {host: reviews}\n",
        "    - destination: {host: reviews}\n  - name: primary\n    route:\n    - destination: {host: reviews, subset: v2}\n",
    );
    let f = write(dir.path(), "vs.yaml", &twice);
    let (code, out, err) = run(meshdrill()
        .args([
            "fault", "abort", "--status", "503", "--route", "primary", "-f",
        ])
        .arg(&f));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("httpStatus: 503"), "{out}");
    assert!(
        err.contains("warning: ")
            && err.contains("2 routes are named \"primary\" (spec.http[0], spec.http[1])"),
        "{err}"
    );
}

/// Bad input changes nothing on a cluster either: flags out of bounds, an unknown
/// route, a shared route picked by --destination — the API server sees no PATCH, and
/// the object is as it was.
#[test]
fn bad_input_sends_no_patch_to_a_cluster() {
    use crate::common::fake_kube::{Auth, FakeKube, reviews};
    let kube = FakeKube::start();
    let before = kube.put_vs(reviews("default"));
    for args in [
        &["fault", "abort", "reviews", "--status", "700"][..],
        &["fault", "delay", "reviews", "--fixed", "2562048h"],
        &["retries", "reviews", "--attempts", "2147483648"],
        &["timeout", "reviews", "--timeout", "-1s"],
        &[
            "fault", "abort", "reviews", "--status", "503", "--route", "nope",
        ],
        &[
            "fault",
            "abort",
            "reviews",
            "--status",
            "503",
            "--route-index",
            "9",
        ],
        &[
            "fault", "abort", "reviews", "--status", "503", "-n", "Bad_NS!",
        ],
    ] {
        let mut c = meshdrill();
        kube.env(&mut c, Auth::Token);
        let (code, out, err) = run(c.args(args));
        assert_eq!(code, 2, "{args:?}: {out}\n{err}");
    }
    let methods: Vec<String> = kube.requests().into_iter().map(|r| r.method).collect();
    assert!(
        methods.iter().all(|m| m == "GET"),
        "only reads reached the API server: {methods:?}"
    );
    assert_eq!(kube.vs("default", "reviews"), Some(before));
}
