//! `fault`, `retries`, `timeout`, `clear`, `validate` on manifest files.

use crate::common::{data, meshdrill, run, write};

#[test]
fn abort_then_clear_restores_the_file_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let (code, faulted, err) = run(meshdrill()
        .args(["fault", "abort", "reviews", "-f"])
        .arg(data("bookinfo-reviews.yaml"))
        .args([
            "--percent",
            "50",
            "--status",
            "500",
            "--route",
            "default",
            "-o",
            "yaml",
        ]));
    assert_eq!(code, 0, "{err}");
    assert!(faulted.contains("httpStatus: 500"), "{faulted}");
    assert!(
        faulted.contains("fixedDelay: 7s"),
        "pre-existing delay kept: {faulted}"
    );
    let f = write(dir.path(), "faulted.yaml", &faulted);
    let (code, cleared, err) = run(meshdrill()
        .args(["clear", "-f"])
        .arg(&f)
        .args(["-o", "json"]));
    assert_eq!(code, 0, "{err}");
    let (code, original, err) = run(meshdrill()
        .args(["clear", "reviews", "-f"])
        .arg(data("bookinfo-reviews.yaml"))
        .args(["-o", "json"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to clear"), "{err}");
    let a: serde_json::Value = serde_json::from_str(&cleared).expect("json");
    let b: serde_json::Value = serde_json::from_str(&original).expect("json");
    assert_eq!(a, b);
}
