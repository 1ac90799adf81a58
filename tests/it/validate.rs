//! `meshdrill validate` gives Istio 1.26's verdict for VirtualService, DestinationRule
//! and Gateway: errors name file:line:field and exit 2, warnings print and exit 0; the
//! local mesh and `fault -f` use the same rules.

use crate::common::{meshdrill, run, write};

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: -1}
    outlierDetection:
      maxEjectionPercent: 150
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1
    labels: {version: v2}
";

const GW: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, protocol: HTTP, name: http}
    hosts: [reviews]
  - port: {number: 443, protocol: HTTPS, name: http}
    hosts: ['*.example.com']
";

#[test]
fn destination_rule_errors_name_file_line_field_and_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "dr.yaml", DR);
    let (code, out, err) = run(meshdrill().arg("validate").arg(&f));
    assert_eq!(code, 2, "{err}");
    assert!(!out.contains("valid"), "{out}");
    for needle in [
        "dr.yaml:8: DestinationRule reviews: spec.trafficPolicy.connectionPool.tcp.maxConnections: invalid value -1",
        "dr.yaml:10: DestinationRule reviews: spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 150 is not in range 0..100",
        "dr.yaml:14: DestinationRule reviews: spec.subsets[1].name: duplicate subset names: v1",
    ] {
        assert!(err.contains(needle), "{needle:?} in:\n{err}");
    }
    assert!(err.lines().all(|l| l.starts_with("error: ")), "{err}");
}

#[test]
fn gateway_errors_name_file_line_field_and_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "gw.yaml", GW);
    let (code, _, err) = run(meshdrill().arg("validate").arg(&f));
    assert_eq!(code, 2, "{err}");
    for needle in [
        "gw.yaml:8: Gateway gw: spec.servers[0].hosts[0]: short names (non FQDN) are not allowed",
        "gw.yaml:9: Gateway gw: spec.servers[1]: server must have TLS settings for HTTPS/TLS protocols",
        "gw.yaml:9: Gateway gw: spec.servers[1].port.name: port names in servers must be unique",
    ] {
        assert!(err.contains(needle), "{needle:?} in:\n{err}");
    }
}

#[test]
fn warnings_print_and_exit_0() {
    // Istio only warns: an abort with no error type, a deprecated field, and
    // httpStatus 600 (Istio accepts it, Envoy does not).
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(
        dir.path(),
        "warn.yaml",
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route:
    - destination: {host: r}
    fault:
      abort: {percentage: {value: 5}}
  - route:
    - destination: {host: r}
    fault:
      abort: {httpStatus: 600, percentage: {value: 5}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: r
  trafficPolicy:
    outlierDetection: {consecutiveErrors: 5}
",
    );
    let (code, out, err) = run(meshdrill().arg("validate").arg(&f));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("VirtualService r: valid (2 warning(s))"),
        "{out}"
    );
    assert!(
        out.contains("DestinationRule r: valid (1 warning(s))"),
        "{out}"
    );
    for needle in [
        "warning: ",
        "warn.yaml:10: VirtualService r: spec.http[0].fault.abort: abort configured, but error type not set",
        "warn.yaml:14: VirtualService r: spec.http[1].fault.abort.httpStatus: HTTP status 600: Istio accepts it, but Envoy rejects it",
        "warn.yaml:22: DestinationRule r: spec.trafficPolicy.outlierDetection.consecutiveErrors: outlier detection consecutive errors is deprecated",
    ] {
        assert!(err.contains(needle), "{needle:?} in:\n{err}");
    }
    assert!(!err.contains("error:"), "{err}");
}

#[test]
fn fault_with_redirect_is_rejected_by_validate_and_fault_f() {
    // Issue 13 point 11: Istio rejects a fault together with a redirect.
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(
        dir.path(),
        "vs.yaml",
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - redirect: {uri: /new}
    fault:
      abort: {httpStatus: 503, percentage: {value: 5}}
",
    );
    let (code, _, err) = run(meshdrill().arg("validate").arg(&f));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("vs.yaml:9: VirtualService r: spec.http[0].fault: HTTP route cannot contain both fault and redirect"),
        "{err}"
    );
    let (code, out, err) = run(meshdrill()
        .args(["fault", "abort", "r", "--status", "503", "-f"])
        .arg(&f));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("both fault and redirect"), "{err}");
}

#[test]
fn a_mesh_file_with_a_bad_destination_rule_is_refused() {
    // `mesh up` reads the mesh file through MeshSpec::from_documents, which
    // `validate` runs too: the DestinationRule's first error stops the load.
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(
        dir.path(),
        "mesh.yaml",
        format!(
            "apiVersion: meshdrill.io/v1alpha1\nkind: Mesh\nmetadata: {{name: m}}\nspec:\n  services:\n  - name: reviews\n    demo: {{}}\n---\n{DR}"
        ),
    );
    let (code, _, err) = run(meshdrill().arg("validate").arg(&f));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mesh.yaml:16: DestinationRule reviews: spec.trafficPolicy.connectionPool.tcp.maxConnections: invalid value -1"),
        "{err}"
    );
    assert!(
        err.contains(
            "mesh.yaml:1: Mesh m: the local mesh refuses the Istio objects reported above"
        ),
        "{err}"
    );
    let e = meshdrill::mesh::MeshSpec::load(std::slice::from_ref(&f))
        .expect_err("the mesh loader (mesh up) refuses it too")
        .to_string();
    assert!(
        e.contains("mesh.yaml:16")
            && e.contains("max connections must be non-negative (DestinationRule reviews)"),
        "{e}"
    );
}
