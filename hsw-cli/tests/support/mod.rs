//! Helpers the hsw-cli integration tests share (`mod support;` in each test file that needs them).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (canonical: it is compared with paths the CLI prints).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Whether `tool --version` runs; with `HSW_REQUIRE_ANSIBLE` set its absence fails the test.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("HSW_REQUIRE_ANSIBLE").is_none(),
            "{tool} is not installed and HSW_REQUIRE_ANSIBLE is set"
        );
        eprintln!(
            "{tool} is not installed: test skipped (HSW_REQUIRE_ANSIBLE=1 makes this a failure)"
        );
    }
    ok
}

/// The stdout of a command that must have succeeded (its output is shown when it did not).
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}
