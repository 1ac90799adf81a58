//! What a terminal sees of a drill (under a pseudo-terminal from util-linux `script`)
//! and what a pipe sees: the live view and a coloured report only on a terminal, no
//! colour with NO_COLOR, no escape codes at all in a pipe.
//!
//! The drill is `demo --phase 1s --rate 100`: a steady state too short to decide, so
//! it stops there (exit 4, inconclusive) after about a second of load.

use std::process::Command;

use crate::common::{meshdrill, run};

/// SGR (colour/bold) sequences.
fn sgr() -> regex::Regex {
    regex::Regex::new("\x1b\\[[0-9;]*m").expect("regex")
}

/// `meshdrill ARGS` on a pseudo-terminal; (exit code, everything the terminal got).
/// None (and a note on stderr) when util-linux `script` is missing.
fn on_a_terminal(args: &str, no_color: bool) -> Option<(i32, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (for a pseudo-terminal) is not installed");
        return None;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    // Wide enough for the whole live line (script's pseudo-terminal is 80 columns
    // when there is no terminal to copy the size from).
    let line = format!(
        "stty cols 250 rows 50; exec '{}' {args}",
        env!("CARGO_BIN_EXE_meshdrill")
    );
    let mut c = Command::new("script");
    // -e: the command's exit code; -q: no "Script started" lines; the typescript file
    // is not needed (what the terminal got is script's stdout).
    c.args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .env("TMPDIR", tmp.path())
        .env("TERM", "xterm-256color")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("KUBECONFIG");
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let (code, out, err) = run(&mut c);
    assert!(err.is_empty(), "{err}");
    Some((code, out))
}

#[test]
fn a_terminal_gets_the_live_view_and_a_coloured_verdict() {
    let _s = crate::common::mesh::serial();
    let Some((code, out)) = on_a_terminal("demo --phase 1s --rate 100", false) else {
        return;
    };
    assert_eq!(code, 4, "{out}");
    // The live view: the phase with its countdown, redrawn in place (clear line).
    assert!(
        out.contains("steady state before: 1s left (drill ~"),
        "{out}"
    );
    assert!(out.contains(" · no fault active"), "{out}");
    assert!(
        out.contains("\r\x1b[2K"),
        "the view is redrawn in place: {out:?}"
    );
    // The progress lines are all there, as in a pipe.
    assert!(
        out.contains("] steady state before: inconclusive ("),
        "{out}"
    );
    // The verdict and the marks in colour (bold for inconclusive), words unchanged.
    assert!(
        out.contains("verdict: \x1b[1mINCONCLUSIVE\x1b[0m: "),
        "{out:?}"
    );
    assert!(out.contains(" \x1b[1m??\x1b[0m "), "{out:?}");
}

#[test]
fn no_color_keeps_the_live_view_and_drops_every_colour() {
    let _s = crate::common::mesh::serial();
    let Some((code, out)) = on_a_terminal("demo --phase 1s --rate 100", true) else {
        return;
    };
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("\r\x1b[2K"),
        "the live view is still drawn: {out:?}"
    );
    assert!(out.contains("verdict: INCONCLUSIVE: "), "{out}");
    assert!(!sgr().is_match(&out), "no SGR code with NO_COLOR: {out:?}");
}

#[test]
fn quiet_on_a_terminal_prints_the_pipe_lines_and_the_coloured_report() {
    let _s = crate::common::mesh::serial();
    let Some((code, out)) = on_a_terminal("demo --phase 1s --rate 100 --quiet", false) else {
        return;
    };
    assert_eq!(code, 4, "{out}");
    assert!(!out.contains("left (drill ~"), "no live view: {out}");
    assert!(!out.contains("\x1b[2K"), "nothing redrawn: {out:?}");
    assert!(
        out.contains("] steady state before: measuring for 1s"),
        "{out}"
    );
    assert!(
        sgr().is_match(&out),
        "the report is still coloured: {out:?}"
    );
}

#[test]
fn a_pipe_gets_no_escape_code_at_all() {
    let _s = crate::common::mesh::serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let (code, out, err) = run(meshdrill()
        .args(["demo", "--phase", "1s", "--rate", "100"])
        .env("TMPDIR", tmp.path())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR"));
    assert_eq!(code, 4, "{err}\n{out}");
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(out.contains("verdict: INCONCLUSIVE: "), "{out}");
    assert!(!out.contains("left (drill ~"), "{out}");
}

#[test]
fn ctrl_c_clears_the_live_view_rolls_back_and_exits_130_on_a_terminal() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let _s = crate::common::mesh::serial();
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (for a pseudo-terminal) is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    // A terminal wide enough for the whole live line (script's pseudo-terminal is 80
    // columns when it has no terminal to copy); exec: the shell that runs the command
    // is replaced by meshdrill, which gets the signal.
    let line = format!(
        "stty cols 250 rows 50; exec '{}' demo --phase 3s --rate 200",
        env!("CARGO_BIN_EXE_meshdrill")
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .env("TMPDIR", tmp.path())
        .env("TERM", "xterm-256color")
        .env("NO_COLOR", "1")
        .spawn()
        .expect("spawn script");
    let mut stdout = child.stdout.take().expect("stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    // Bounded wait until the live view shows the fault in place.
    let live = "fault default/go-demo-8: abort HTTP 500 on 50%";
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !text()
            .split("\r\x1b[2K")
            .any(|part| part.contains("left (drill ~") && part.contains(live))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text().contains(live), "{:?}", text());
    let pid = crate::common::mesh::descendants(child.id())
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "meshdrill")
        })
        .expect("meshdrill under script");
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let code = child.wait().expect("wait").code();
    reader.join().expect("reader");
    let out = text();
    assert_eq!(code, Some(130), "{out:?}");
    assert!(
        out.contains("] rollback: clear default/go-demo-8: restored"),
        "{out:?}"
    );
    // The live view was cleared before the summary, and not drawn again.
    let (_, tail) = out.rsplit_once("\r\x1b[2K").expect("the view was drawn");
    assert!(
        !tail.contains("drill ~") && !tail.contains("rolling back ·"),
        "{tail:?}"
    );
    assert!(
        tail.contains("verdict: not judged: interrupted by SIGINT"),
        "{tail:?}"
    );
    assert_eq!(
        crate::common::mesh::mesh_temp_dirs(tmp.path()),
        Vec::<String>::new()
    );
}

#[test]
fn load_draws_its_bar_on_a_terminal_unless_quiet() {
    let _s = crate::common::mesh::serial();
    use crate::common::servers::{self, Behavior};
    let s = servers::spawn(Behavior::Pattern(vec![200, 503]));
    let args = format!("load {} -d 2s --rate 20 -c 2", s.url("/"));
    let Some((code, out)) = on_a_terminal(&args, true) else {
        return;
    };
    assert_eq!(code, 0, "{out}");
    // Seconds done of the run's, then the last interval (about half its answers are
    // 503s; by completion time, so not exactly).
    assert!(out.contains("/2 s  "), "{out:?}");
    let bar = regex::Regex::new(r" \d+ req/s  [3-6]\d\.\d\d% ok  p99 [0-9.]+ ms  no answer 0")
        .expect("regex");
    assert!(bar.is_match(&out), "{out:?}");
    let Some((code, out)) = on_a_terminal(&format!("{args} --quiet"), true) else {
        return;
    };
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("/2 s  ") && !out.contains('\x1b'), "{out:?}");
    assert!(out.contains("Status:    200: 20  503: 20"), "{out}");
}
