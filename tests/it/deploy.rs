//! The manifests in deploy/: they parse, their key fields are what the code expects,
//! their Roles grant what the code sends (checked against the requests of a real run
//! on the fake API server), and the drill CronJob's scenario passes `meshdrill validate`.

use std::collections::BTreeSet;

use meshdrill::cluster::job::{DEFAULT_IMAGE, RBAC};
use serde_json::Value;

use crate::common::fake_kube::{FakeKube, Fate};
use crate::common::{meshdrill, root, run};

/// The documents of `deploy/<file>`.
fn docs(file: &str) -> Vec<Value> {
    let path = root().join("deploy").join(file);
    let text = std::fs::read_to_string(&path).expect("read deploy file");
    serde_saphyr::from_multiple::<Value>(&text).expect("deploy YAML parses")
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

type Grant = (String, String, String);

/// (apiGroup, resource, verb) for every rule of a Role.
fn grants(role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    for rule in role["rules"].as_array().expect("rules") {
        for g in strs(&rule["apiGroups"]) {
            for r in strs(&rule["resources"]) {
                for v in strs(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

/// What the code says a worker run needs.
fn run_job_needs() -> BTreeSet<Grant> {
    RBAC.iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

/// (apiGroup, resource, verb) of each resource request the fake saw, as RBAC sees it.
fn sent(kube: &FakeKube) -> BTreeSet<Grant> {
    kube.requests()
        .into_iter()
        .filter_map(|s| {
            let seg: Vec<&str> = s.path.trim_matches('/').split('/').collect();
            let (group, rest) = match seg.as_slice() {
                ["api", _, "namespaces", _, rest @ ..] => ("", rest),
                ["apis", g, _, "namespaces", _, rest @ ..] => (*g, rest),
                _ => return None,
            };
            let (resource, named) = match rest {
                [r] => (r.to_string(), false),
                [r, _] => (r.to_string(), true),
                [r, _, sub] => (format!("{r}/{sub}"), true),
                _ => return None,
            };
            let verb = match s.method.as_str() {
                "GET" if !named => {
                    if s.query.contains("watch=true") {
                        "watch"
                    } else {
                        "list"
                    }
                }
                "GET" => "get",
                "POST" => "create",
                "DELETE" => "delete",
                "PATCH" => "patch",
                "PUT" => "update",
                _ => return None,
            };
            Some((group.to_string(), resource, verb.to_string()))
        })
        .collect()
}

#[test]
fn load_rbac_grants_exactly_what_a_worker_run_sends() {
    let d = docs("load-rbac.yaml");
    let role = kind(&d, "Role");
    assert_eq!(grants(role), run_job_needs());

    // A real run (one worker that prints and exits, one that OOMs) sends exactly those.
    let kube = FakeKube::start();
    kube.job_fate(
        0,
        Fate::Exit {
            lines: vec!["a".into()],
            code: 0,
        },
    );
    kube.job_fate(
        1,
        Fate::OomKilled {
            lines: vec!["b".into()],
        },
    );
    let w = crate::cluster_job::worker_job(2);
    let (r, _) = crate::cluster_job::run(&kube, &w, meshdrill::cancel::Cancel::new());
    r.expect("run_job");
    assert_eq!(sent(&kube), run_job_needs());

    // The binding gives the Role to the ServiceAccount.
    let sa = kind(&d, "ServiceAccount");
    let rb = kind(&d, "RoleBinding");
    assert_eq!(rb["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(rb["roleRef"]["kind"], "Role");
    assert_eq!(rb["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(rb["subjects"][0]["kind"], "ServiceAccount");
}

#[test]
fn drill_cronjob_runs_the_mounted_scenario_with_the_rights_it_needs() {
    let d = docs("drill-cronjob.yaml");
    let cj = kind(&d, "CronJob");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"], DEFAULT_IMAGE,
        "the same image as the load workers"
    );
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "/etc/meshdrill/drill.yaml"])
    );
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    // The downward API: meshdrill's own pod owns the worker Jobs it creates.
    for (var, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_UID", "metadata.uid"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("no {var}"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], path, "{var}");
    }
    // The ConfigMap is mounted where the args read it.
    let cm = kind(&d, "ConfigMap");
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"] == "/etc/meshdrill")
        .expect("a mount at /etc/meshdrill");
    let vol = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(vol["configMap"]["name"], cm["metadata"]["name"]);

    // Rights: the drill's VirtualService verbs plus everything a worker run sends.
    let sa = kind(&d, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    let role = kind(&d, "Role");
    let rb = kind(&d, "RoleBinding");
    assert_eq!(rb["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(rb["subjects"][0]["name"], sa["metadata"]["name"]);
    let mut want = run_job_needs();
    for v in ["get", "list", "patch"] {
        want.insert((
            "networking.istio.io".into(),
            "virtualservices".into(),
            v.into(),
        ));
    }
    assert_eq!(grants(role), want);

    // The scenario it mounts is one meshdrill accepts.
    let scenario = cm["data"]["drill.yaml"].as_str().expect("data.drill.yaml");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("drill.yaml");
    std::fs::write(&path, scenario).expect("write");
    let (code, out, err) = run(meshdrill().arg("validate").arg(&path));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": valid") && !out.contains("invalid"), "{out}");
}

#[test]
fn dockerfile_builds_the_binary_and_runs_it_as_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[1].contains("distroless") && froms[1].contains("nonroot"),
        "{froms:?}"
    );
    assert!(text.contains("--bin meshdrill"));
    assert!(text.contains("ENTRYPOINT [\"meshdrill\"]"));
    assert!(text.lines().any(|l| l.starts_with("USER 65532")));
    // Every file the binary embeds is copied into the build stage.
    for needed in [
        "src",
        "templates",
        "scenarios",
        "versions.env",
        "Cargo.lock",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("COPY ") && !l.contains("--from") && l.contains(needed)),
            "{needed} is not copied"
        );
    }
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for p in ["target/", ".venv/"] {
        assert!(ignore.lines().any(|l| l.trim() == p), "{p} not ignored");
    }
}
