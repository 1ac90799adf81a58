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
