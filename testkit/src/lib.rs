//! The hsw test kit: what the workspace's tests share, so that no test file carries its own copy. A
//! `publish = false` crate, only ever a dev-dependency (of hsw-core, hsw-cli and terraform-provider-hsw).
//!
//! - [`golden`]: compare an output with its committed golden file, or rewrite the file with `UPDATE_EXPECT=1`.
//! - [`require`]: the skip/require policy for outside tools (Terraform, Ansible, ansible-lint, Packer, ...): a
//!   test whose tool is missing prints a `SKIPPED` line and passes, unless `HSW_REQUIRE_<TOOL>=1`, which makes
//!   the missing tool a failure (CI sets them).
//! - [`cli`]: runs a binary of the workspace (the caller passes `env!("CARGO_BIN_EXE_...")`) from the
//!   repository root with the environment scrubbed of `HSW_*` and colours off.
//! - [`terraform`]: finds the Terraform binaries to test against, installs a provider binary through a
//!   filesystem mirror in a private CLI configuration, runs Terraform offline with a scrubbed environment, and
//!   starts a provider in `--debug` mode for `TF_REATTACH_PROVIDERS`.
//!
//! Everything here panics with a message that says what failed and how to fix it: that is how a test fails.

#![allow(
    clippy::panic,
    reason = "a failed check in a test kit is a panic, with its reason"
)]

pub mod cli;
pub mod golden;
pub mod require;
pub mod terraform;

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root (canonical: tests compare it with paths the binaries print).
pub fn repo() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or_else(|e| {
        panic!(
            "the repository root {} cannot be resolved: {e}",
            root.display()
        )
    })
}

/// A command's exit status, stdout and stderr as one text, for failure messages.
pub fn describe(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The stdout of a command that must have succeeded; fails the test with its whole output when it did not.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "the command failed: {}", describe(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
