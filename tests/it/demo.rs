//! `meshdrill demo`: the whole drill on a real Envoy, judged with statistical bounds.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{meshdrill, run};

#[test]
fn the_demo_drill_shows_the_fault_the_retries_and_the_recovery() {
    crate::common::mesh::with_second_sample(demo_drill_once);
}

fn demo_drill_once() {
    let (code, out, err) =
        run(meshdrill().args(["demo", "--phase", "2s", "--rate", "60", "-o", "json"]));
    assert_eq!(code, 0, "{err}\n{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let phases = v["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 4);
    let success = |i: usize| phases[i]["success"].as_f64().expect("success");
    let n = |i: usize| phases[i]["requests"].as_u64().expect("requests");
    for i in 0..4 {
        assert!(n(i) >= 100, "phase {i}: {} requests at 60/s for 2 s", n(i));
    }
    assert_eq!(success(0), 1.0, "steady state: {}", phases[0]);
    // 50% aborts, 10 retries at the ingress: a request fails with p = 0.5^11.
    assert!(success(1) >= 0.98, "{}", phases[1]);
    assert!(phases[1]["aborts_injected"].as_u64().expect("aborts") > 0);
    assert!(phases[1]["retries"].as_u64().expect("retries") > 0);
    // retries off: success within 3 sigma of 0.5
    let sigma = (0.25 / n(2) as f64).sqrt();
    assert!(
        (success(2) - 0.5).abs() <= 3.0 * sigma,
        "retries off: success outside 0.5 ± {:.3} (3σ): {}",
        3.0 * sigma,
        phases[2]
    );
    assert_eq!(phases[2]["retries"], 0);
    assert_eq!(success(3), 1.0, "recovery: {}", phases[3]);
    assert_eq!(phases[3]["aborts_injected"], 0);
}

#[test]
fn ctrl_c_during_the_demo_rolls_back_and_exits_130() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = meshdrill()
        .args(["demo", "--phase", "3s", "--rate", "20"])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // wait (bounded) until the fault is live, then interrupt
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("live change: abort") {
            break;
        }
    }
    assert!(seen.contains("live change: abort"), "{seen}");
    // Envoy and the replicas of this run.
    let started = crate::common::mesh::descendants(child.id());
    assert!(started.len() >= 4, "envoy + 3 replicas: {started:?}");
    assert_eq!(crate::common::mesh::mesh_temp_dirs(tmp.path()).len(), 1);
    interrupt_and_check_nothing_is_left(
        child,
        &started,
        tmp.path(),
        "every change was rolled back",
    );
}

#[test]
fn a_signal_during_mesh_up_start_up_stops_everything_and_exits_130() {
    let _s = crate::common::mesh::serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = crate::common::write(
        tmp.path(),
        "slow.yaml",
        "apiVersion: meshdrill.io/v1alpha1
kind: Mesh
metadata: {name: slow-start}
spec:
  services:
  - name: fast
  - name: slow
    command: [sh, -c, 'sleep 30; exec python3 -m http.server {port} --bind 127.0.0.1']
",
    );
    let child = meshdrill()
        .args(["mesh", "up"])
        .arg(&file)
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Bounded wait until start-up is under way: Envoy and the replicas spawned (the
    // slow one sleeps before it listens).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut started = Vec::new();
    while Instant::now() < deadline {
        started = crate::common::mesh::descendants(child.id());
        // envoy, the fast demo replica, sh and its sleep
        if started.len() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.len() >= 4, "{started:?}");
    assert_eq!(crate::common::mesh::mesh_temp_dirs(tmp.path()).len(), 1);
    interrupt_and_check_nothing_is_left(child, &started, tmp.path(), "interrupted during start-up");
}

/// SIGINT to a running `meshdrill`: exit 130 with `says` on stderr, and none of the
/// processes it `started` nor any mesh temp dir under `tmp` is left.
fn interrupt_and_check_nothing_is_left(
    child: std::process::Child,
    started: &[u32],
    tmp: &std::path::Path,
    says: &str,
) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains(says), "{err}");
    assert_eq!(
        crate::common::mesh::wait_all_gone(started),
        Vec::<u32>::new()
    );
    assert_eq!(
        crate::common::mesh::mesh_temp_dirs(tmp),
        Vec::<String>::new()
    );
}
