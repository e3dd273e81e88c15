//! The skip/require policy for tests that need an outside tool (Terraform, Ansible, ansible-lint, Packer, qemu-img):
//! when the tool is missing the test prints one `SKIPPED` line and passes, unless its variable
//! (`HSW_REQUIRE_TERRAFORM`, `HSW_REQUIRE_TOFU`, `HSW_REQUIRE_ANSIBLE`, `HSW_REQUIRE_ANSIBLE_LINT`, `HSW_REQUIRE_PACKER`, `HSW_REQUIRE_VIRT_XML_VALIDATE`, `HSW_REQUIRE_SHELLS`) is set to
//! anything but `0` or empty, which makes the missing tool a failure. CI sets them all.

use std::path::{Path, PathBuf};

/// Makes a missing Terraform a failure.
pub const TERRAFORM: &str = "HSW_REQUIRE_TERRAFORM";
/// Makes a missing OpenTofu a failure.
pub const TOFU: &str = "HSW_REQUIRE_TOFU";
/// Makes a missing zsh or fish (whose completion scripts `hsw-cli completions` writes) a failure.
pub const SHELLS: &str = "HSW_REQUIRE_SHELLS";
/// Makes a missing Ansible (`ansible`, `ansible-playbook`, `ansible-inventory`) a failure.
pub const ANSIBLE: &str = "HSW_REQUIRE_ANSIBLE";
/// Makes a missing ansible-lint a failure.
pub const ANSIBLE_LINT: &str = "HSW_REQUIRE_ANSIBLE_LINT";
/// Makes a missing (or unusable) Packer a failure.
pub const PACKER: &str = "HSW_REQUIRE_PACKER";
/// Makes a missing `virt-xml-validate` (Debian's libvirt-clients) or its `xmllint` (libxml2-utils) a failure.
pub const VIRT_XML_VALIDATE: &str = "HSW_REQUIRE_VIRT_XML_VALIDATE";

/// Whether the variable `var` asks for the tool (set, and neither empty nor `0`).
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Reports a missing prerequisite without failing: prints the `SKIPPED` line, or with `var` set a `FAILED` line,
/// and returns whether it is a failure. For a `harness = false` test that goes on with what it has;
/// other tests use [`skip`].
pub fn missing(var: &str, reason: &str) -> bool {
    if required(var) {
        println!("FAILED: {reason}, and {var}=1 requires it");
        true
    } else {
        println!("SKIPPED: {reason} ({var}=1 makes this a failure)");
        false
    }
}

/// Skips for `reason` (the caller then returns), or with `var` set fails the test.
pub fn skip(var: &str, reason: &str) {
    assert!(!missing(var, reason), "{reason}, and {var}=1 requires it");
}

/// The executable `name` on `PATH`, if any.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The tool `name` on `PATH`; when it is missing, [`skip`]s (returns `None`) or with `var` set fails the test.
pub fn tool(name: &str, var: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        skip(var, &format!("{name} is not installed (not on PATH)"));
    }
    found
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_tool_is_found_and_a_missing_one_skips_unless_required() {
        assert!(on_path("sh").is_some(), "sh is on PATH");
        // An unset variable: the missing tool is a skip.
        assert_eq!(tool("hsw-no-such-tool", "HSW_TESTKIT_UNSET_REQUIRE"), None);
        assert!(!missing("HSW_TESTKIT_UNSET_REQUIRE", "nothing"));
    }

    #[test]
    fn a_required_tool_that_is_missing_fails() {
        // PATH is always set and not "0": it stands for a variable that is set.
        let failure = std::panic::catch_unwind(|| tool("hsw-no-such-tool", "PATH"))
            .expect_err("a required missing tool fails");
        let message = failure
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        assert!(
            message.contains("hsw-no-such-tool is not installed") && message.contains("PATH=1"),
            "{message}"
        );
    }
}
