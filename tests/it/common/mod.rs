//! Shared test helpers: the built binary, temp dirs, file fixtures.
#![allow(dead_code)]

pub mod fake_kube;
pub mod istio_rules;
pub mod label_selector;
pub mod schema;
pub mod servers;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A command for the built `meshdrill` binary.
pub fn meshdrill() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshdrill"));
    c.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_HOST")
        .env("NO_COLOR", "1");
    c
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("spawn meshdrill");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under tests/data.
pub fn data(name: &str) -> PathBuf {
    root().join("tests/data").join(name)
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write fixture");
    p
}
pub mod mesh;
