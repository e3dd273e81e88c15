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
//! - [`copy_tree`]: a copy of a fixture tree (modes and symlinks kept) for a test to change.
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

/// Copies the tree `from` to `to` (created), keeping file modes and symlinks.
pub fn copy_tree(from: &Path, to: &Path) {
    copy_tree_except(from, to, &|_| false);
}

/// [`copy_tree`], leaving out every entry (at any depth) whose name `skip` accepts.
pub fn copy_tree_except(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) {
    let fail = |what: &str, p: &Path, e: std::io::Error| -> ! {
        panic!(
            "cannot {what} {} while copying a test tree: {e}",
            p.display()
        )
    };
    std::fs::create_dir_all(to).unwrap_or_else(|e| fail("create", to, e));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| fail("read", from, e));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| fail("read", from, e));
        if skip(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ft = entry.file_type().unwrap_or_else(|e| fail("stat", &src, e));
        if ft.is_symlink() {
            let target =
                std::fs::read_link(&src).unwrap_or_else(|e| fail("read the link", &src, e));
            std::os::unix::fs::symlink(target, &dst)
                .unwrap_or_else(|e| fail("create the link", &dst, e));
        } else if ft.is_dir() {
            copy_tree_except(&src, &dst, skip);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| fail("copy", &src, e));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn copy_tree_keeps_modes_and_links_and_skips_what_it_is_told() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("sub/.terraform")).unwrap();
        std::fs::write(from.join("sub/run.sh"), "x").unwrap();
        std::fs::set_permissions(
            from.join("sub/run.sh"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/run.sh", from.join("link")).unwrap();
        let to = dir.path().join("to");
        copy_tree_except(&from, &to, &|n| n == ".terraform");
        let mode = std::fs::metadata(to.join("sub/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(
            std::fs::read_link(to.join("link")).unwrap(),
            Path::new("sub/run.sh")
        );
        assert!(!to.join("sub/.terraform").exists());
    }
}
