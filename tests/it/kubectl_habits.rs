//! kubectl habits that carry over: `-o name` prints `virtualservice.networking.istio.io/NAME`
//! and nothing else, and `--dry-run=client` is `--dry-run` (`=server` is refused, not
//! taken for a client-side dry run) — on a file, the local mesh and a cluster.

use serde_json::Value;

use crate::common::fake_kube::{Auth, FakeKube, reviews};
use crate::common::mesh::{KillOnDrop, serial, spawn_up};
use crate::common::{meshdrill, root, run, write};

const NAME: &str = "virtualservice.networking.istio.io/reviews\n";

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
";

#[test]
fn on_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "vs.yaml", VS);
    let (code, out, err) = run(meshdrill()
        .args(["fault", "abort", "--status", "503", "-o", "name", "-f"])
        .arg(&f));
    assert_eq!((code, out.as_str()), (0, NAME), "{err}");
    assert!(err.is_empty(), "nothing else: {err}");

    let (code, out, err) = run(meshdrill()
        .args(["timeout", "--timeout", "2s", "--dry-run=client", "-f"])
        .arg(&f));
    assert_eq!(code, 0, "{err}");
    let patch: Value = serde_json::from_str(&out).expect("the patch, as with --dry-run");
    assert_eq!(patch[0]["op"], "test", "{out}");
    assert!(err.contains("dry run: nothing changed"), "{err}");

    let (code, out, err) = run(meshdrill()
        .args(["timeout", "--timeout", "2s", "--dry-run=server", "-f"])
        .arg(&f));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("server-side dry run is not supported"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&f).expect("read"), VS);
}

#[test]
fn on_a_cluster() {
    let kube = FakeKube::start();
    kube.put_vs(reviews("default"));
    let md = || {
        let mut c = meshdrill();
        kube.env(&mut c, Auth::Token);
        c
    };
    let (code, out, err) = run(md().args([
        "fault",
        "delay",
        "reviews",
        "--fixed",
        "1s",
        "--dry-run=client",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"op\": \"test\""), "{out}");
    assert!(
        kube.requests().iter().all(|r| r.method == "GET"),
        "a client dry run sends no change"
    );

    let (code, out, err) =
        run(md().args(["fault", "delay", "reviews", "--fixed", "1s", "-o", "name"]));
    assert_eq!((code, out.as_str()), (0, NAME), "{err}");
    let (code, out, err) = run(md().args(["clear", "reviews", "-o", "name"]));
    assert_eq!((code, out.as_str()), (0, NAME), "{err}");
    let vs = kube.vs("default", "reviews").expect("vs");
    assert_eq!(vs["spec"], reviews("default")["spec"], "cleared");
}

#[test]
fn on_a_mesh() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let (child, _addr, _drain) =
        spawn_up(&root().join("scenarios/meshes/go-demo-8.yaml"), dir.path());
    let _up = KillOnDrop(child);
    let md = |args: &[&str]| run(meshdrill().args(args).arg("--mesh").arg(dir.path()));
    let (code, out, err) = md(&[
        "fault",
        "abort",
        "go-demo-8",
        "--status",
        "500",
        "-o",
        "name",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (0, "virtualservice.networking.istio.io/go-demo-8\n"),
        "{err}"
    );
    let (code, out, err) = md(&["clear", "go-demo-8", "--dry-run=client"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"op\""), "the rollback patch: {out}");
    let (code, out, err) = md(&["clear", "go-demo-8", "-o", "name"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "virtualservice.networking.istio.io/go-demo-8\n"),
        "{err}"
    );
}
