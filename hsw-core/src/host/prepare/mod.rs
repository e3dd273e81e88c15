//! `prepare`: failed (or warned) checks turned into host changes, applied with backups, undone exactly.
//!
//! [`plan`] runs the checks and maps each one a change can help to [`Step`]s: file writes (the
//! whole new content, shown as a unified diff) and commands (argv, never a shell). It changes
//! nothing. [`apply`] first backs up every file it will touch under
//! `<root>/var/lib/hsw/prepare/<run-id>/` with a manifest (path, existed before, mode, owner,
//! sha256 before/after), then writes the files and runs the commands; under a root other than
//! `/` commands are recorded as "skipped: alternate root" and never reach a runner.
//! [`rollback`] restores the newest run not yet rolled back: files that did not exist are removed,
//! contents, modes and owners come back byte for byte; it refuses when a file changed since the
//! run (unless forced), and records the rollback in the manifest.

use std::fs;
use std::io;
use std::time::Duration;

use super::check::{
    self, group_state, iommu_state, nouveau_state, package_state, Check, CheckReport, Found,
    Policy, Status, NOUVEAU_BLACKLIST, NOUVEAU_BLACKLIST_FILE,
};
use super::diff;
use super::env::Host;
use super::run::{CommandSpec, RunOutcome, ALTERNATE_ROOT};
use crate::config::ClusterConfig;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Replace (or create) a text file.
    Write {
        /// The check this answers.
        check: String,
        /// Why, as a sentence.
        why: String,
        /// Host path (`/etc/group`).
        path: String,
        /// Content when planned (`None`: the file does not exist).
        before: Option<String>,
        /// New content.
        after: String,
        /// Mode for a new file (an existing file keeps its own).
        mode: u32,
    },
    /// Run a command.
    Run {
        /// The check this answers.
        check: String,
        /// Why, as a sentence.
        why: String,
        /// The command.
        command: CommandSpec,
        /// How long it may take.
        timeout_s: u64,
        /// Whether `--rollback` runs it again (it regenerates something from the files restored).
        rerun_on_rollback: bool,
    },
}

/// What `prepare` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The changes, in order.
    pub steps: Vec<Step>,
    /// What a person must do afterwards or instead (reboot, install Terraform).
    pub notes: Vec<String>,
    /// Non-passing checks that prepare does not change (each with its remedy).
    pub manual: Vec<Check>,
}

impl Plan {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan for people: numbered steps with diffs and commands, then notes and manual checks.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        if self.steps.is_empty() {
            out.push_str("Nothing to change.\n");
        } else {
            out.push_str(&format!(
                "{} change{}:\n",
                self.steps.len(),
                if self.steps.len() == 1 { "" } else { "s" }
            ));
        }
        for (n, step) in self.steps.iter().enumerate() {
            match step {
                Step::Write {
                    check,
                    why,
                    path,
                    before,
                    after,
                    mode,
                } => {
                    out.push_str(&format!("\n{}. [{check}] {why}\n", n + 1));
                    let (what, old_name) = match before {
                        None => (
                            format!("   create {path} (mode {mode:04o})\n"),
                            "/dev/null".to_owned(),
                        ),
                        Some(_) => (format!("   edit {path}\n"), path.clone()),
                    };
                    out.push_str(&what);
                    let d =
                        diff::unified(before.as_deref().unwrap_or(""), after, &old_name, path, 3);
                    for line in d.lines() {
                        out.push_str("   ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                Step::Run {
                    check,
                    why,
                    command,
                    ..
                } => {
                    out.push_str(&format!(
                        "\n{}. [{check}] {why}\n   run: {}\n",
                        n + 1,
                        command.display()
                    ));
                }
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nThen, by hand:\n");
            for note in &self.notes {
                out.push_str(&format!("  - {note}\n"));
            }
        }
        if !self.manual.is_empty() {
            out.push_str("\nNot changed by prepare (see `hsw-cli check`):\n");
            for c in &self.manual {
                out.push_str(&format!("  {} {}: {}\n", c.status.as_str(), c.id, c.remedy));
            }
        }
        out
    }

    /// The plan as JSON: `{"steps": [...], "notes": [...], "manual": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Write { check, why, path, before, after, mode } => serde_json::json!({
                    "kind": "write",
                    "check": check,
                    "why": why,
                    "path": path,
                    "new_file": before.is_none(),
                    "mode": format!("{mode:04o}"),
                    "diff": diff::unified(before.as_deref().unwrap_or(""), after, if before.is_some() { path } else { "/dev/null" }, path, 3),
                }),
                Step::Run { check, why, command, .. } => serde_json::json!({
                    "kind": "run",
                    "check": check,
                    "why": why,
                    "argv": std::iter::once(command.program.clone()).chain(command.args.iter().cloned()).collect::<Vec<_>>(),
                    "env": command.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                }),
            })
            .collect();
        serde_json::json!({ "steps": steps, "notes": self.notes, "manual": self.manual })
    }
}

/// Plans the changes for `config` on `host`. Reads only (on the real root it may ask
/// `apt-cache madison` for a version, which changes nothing).
pub fn plan(host: &dyn Host, config: &ClusterConfig) -> Plan {
    let report = check::run_checks(host, config);
    plan_from(host, config, &report)
}

/// Plans the changes for an already computed check report.
pub fn plan_from(host: &dyn Host, config: &ClusterConfig, report: &CheckReport) -> Plan {
    let policy = Policy::from_config(config);
    let mut plan = Plan {
        steps: Vec::new(),
        notes: Vec::new(),
        manual: Vec::new(),
    };
    for c in &report.checks {
        if matches!(c.status, Status::Pass | Status::Skip) {
            continue;
        }
        let handled = match c.id.as_str() {
            "nouveau" => plan_nouveau(host, &mut plan),
            "groups" => plan_groups(host, &policy, &mut plan),
            "iommu" => plan_iommu(host, &mut plan),
            "packages" => plan_packages(host, &mut plan),
            _ => false,
        };
        if !handled {
            plan.manual.push(c.clone());
        }
    }
    plan
}

fn tool_or_name(host: &dyn Host, name: &str) -> String {
    if host.is_real_root() {
        host.find_tool(name).unwrap_or_else(|| name.to_owned())
    } else {
        name.to_owned()
    }
}

fn read_text(host: &dyn Host, abs: &str) -> Result<Option<String>, String> {
    let path = host.path(abs);
    match fs::read(&path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{abs} is not UTF-8 text, so prepare leaves it alone")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {abs}: {e}")),
    }
}

const REBOOT_NOTE: &str = "Reboot: the changes above take effect at the next boot.";

fn plan_nouveau(host: &dyn Host, plan: &mut Plan) -> bool {
    let st = nouveau_state(host);
    if !st.blacklisted() {
        match read_text(host, NOUVEAU_BLACKLIST_FILE) {
            Ok(before) => {
                plan.steps.push(Step::Write {
                    check: "nouveau".into(),
                    why: "Blacklist nouveau so it cannot take the NVIDIA GPUs at boot.".into(),
                    path: NOUVEAU_BLACKLIST_FILE.into(),
                    before,
                    after: NOUVEAU_BLACKLIST.into(),
                    mode: 0o644,
                });
                plan.steps.push(Step::Run {
                    check: "nouveau".into(),
                    why: "Rebuild the initramfs so the blacklist also applies there.".into(),
                    command: CommandSpec::new(&tool_or_name(host, "update-initramfs"), &["-u"]),
                    timeout_s: 600,
                    rerun_on_rollback: true,
                });
            }
            Err(e) => {
                plan.notes.push(format!(
                    "{e}: blacklist nouveau by hand (see `hsw-cli check`)."
                ));
                return true;
            }
        }
    } else if st.is_loaded() {
        plan.notes.push(
            "nouveau is blacklisted but still loaded: run `sudo update-initramfs -u` if it was not run since, then reboot.".into(),
        );
        return true;
    }
    push_once(&mut plan.notes, REBOOT_NOTE);
    true
}

fn push_once(notes: &mut Vec<String>, note: &str) {
    if !notes.iter().any(|n| n == note) {
        notes.push(note.to_owned());
    }
}

fn plan_groups(host: &dyn Host, policy: &Policy, plan: &mut Plan) -> bool {
    let st = group_state(host, policy);
    if st.error.is_some() || st.unknown_user || st.user.is_root() {
        return false;
    }
    if !st.absent.is_empty() {
        plan.notes.push(format!(
            "The {} group{} will exist once libvirt is installed: run `hsw-cli prepare` again then to join {}.",
            st.absent.join(" and "),
            if st.absent.len() == 1 { "" } else { "s" },
            if st.absent.len() == 1 { "it" } else { "them" }
        ));
    }
    if st.missing.is_empty() {
        return !st.absent.is_empty();
    }
    let user = st.user.name.clone();
    let groups_text = st.missing.join(" and ");
    for abs in ["/etc/group", "/etc/gshadow"] {
        let text = match read_text(host, abs) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                plan.notes.push(format!(
                    "{e}: run `sudo usermod -aG {} {user}` instead.",
                    st.missing.join(",")
                ));
                return true;
            }
        };
        let mut edited = text.clone();
        for g in &st.missing {
            match crate::host::parse::add_group_member(&edited, g, &user) {
                Ok(Some(next)) => edited = next,
                Ok(None) => {}
                // gshadow may lack a group that /etc/group has; leave that file's line alone.
                Err(e) if abs == "/etc/gshadow" => {
                    plan.notes
                        .push(format!("{abs}: {e}; `grpck` can add the missing line."));
                }
                Err(e) => {
                    plan.notes.push(format!(
                        "{abs}: {e}; run `sudo usermod -aG {} {user}` instead.",
                        st.missing.join(",")
                    ));
                    return true;
                }
            }
        }
        if edited != text {
            plan.steps.push(Step::Write {
                check: "groups".into(),
                why: format!(
                    "Add {user} to the {groups_text} group{} ({abs}).",
                    if st.missing.len() == 1 { "" } else { "s" }
                ),
                path: abs.into(),
                before: Some(text),
                after: edited,
                mode: 0o644,
            });
        }
    }
    plan.notes.push(format!(
        "{user} must log out and back in for the new group membership to take effect."
    ));
    true
}

fn plan_iommu(host: &dyn Host, plan: &mut Plan) -> bool {
    let st = iommu_state(host);
    let params = st.wanted_params();
    const GRUB: &str = "/etc/default/grub";
    let text = match read_text(host, GRUB) {
        Ok(Some(t)) => t,
        Ok(None) => {
            plan.notes.push(format!(
                "There is no {GRUB}: add `{}` to the kernel command line of your boot loader, then reboot.",
                params.join(" ")
            ));
            return true;
        }
        Err(e) => {
            plan.notes.push(format!(
                "{e}: add `{}` to the kernel command line by hand.",
                params.join(" ")
            ));
            return true;
        }
    };
    match crate::host::parse::grub_add_tokens(&text, &params) {
        Some(after) => {
            plan.steps.push(Step::Write {
                check: "iommu".into(),
                why: format!("Turn the IOMMU on at boot: add `{}` to GRUB_CMDLINE_LINUX_DEFAULT.", params.join(" ")),
                path: GRUB.into(),
                before: Some(text),
                after,
                mode: 0o644,
            });
            plan.steps.push(Step::Run {
                check: "iommu".into(),
                why: "Regenerate the GRUB configuration with the new kernel command line.".into(),
                command: CommandSpec::new(&tool_or_name(host, "update-grub"), &[]),
                timeout_s: 300,
                rerun_on_rollback: true,
            });
            push_once(&mut plan.notes, REBOOT_NOTE);
            plan.notes.push("If the IOMMU is still off after the reboot, enable VT-d / AMD-Vi in the firmware setup.".into());
        }
        None => plan.notes.push(format!(
            "{GRUB} already has `{}`: run `sudo update-grub` if it was not run since, reboot, and enable VT-d / AMD-Vi in the firmware if the IOMMU stays off.",
            params.join(" ")
        )),
    }
    true
}

fn plan_packages(host: &dyn Host, plan: &mut Plan) -> bool {
    let st = package_state(host);
    if st
        .tools
        .iter()
        .any(|(t, f)| t.name == "Terraform" && *f == Found::Missing)
    {
        plan.notes.push(
            "Install Terraform >= 1.0 from HashiCorp (https://developer.hashicorp.com/terraform/install) into /usr/local/bin: it is not a Debian package."
                .into(),
        );
    }
    if st.dpkg.is_none() {
        let missing: Vec<&str> = st
            .tools
            .iter()
            .filter(|(_, f)| *f == Found::Missing)
            .map(|(t, _)| t.name)
            .collect();
        if !missing.is_empty() {
            plan.notes.push(format!(
                "There is no dpkg database: install {} with this system's package manager.",
                missing.join(", ")
            ));
        }
        return true;
    }
    if st.missing_packages.is_empty() {
        return true;
    }
    let mut pkgs: Vec<String> = st
        .missing_packages
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    // Same caveat as scripts/install-deps.sh: qemu-utils must come in the same call as
    // qemu-system-x86, at its version (a backported qemu-utils Breaks Debian 12's qemu-system-common).
    if st.missing_packages.contains(&"qemu-system-x86") {
        let installed = |p: &str| {
            st.dpkg
                .as_ref()
                .and_then(|d| d.get(p))
                .is_some_and(|e| e.installed)
        };
        match candidate_version(host, "qemu-system-x86") {
            Some(v) => {
                pkgs.retain(|p| p != "qemu-utils");
                pkgs.push(format!("qemu-utils={v}"));
                if installed("qemu-block-extra") {
                    pkgs.push(format!("qemu-block-extra={v}"));
                }
            }
            None => {
                if !pkgs.iter().any(|p| p == "qemu-utils") {
                    pkgs.push("qemu-utils".into());
                }
                let why = if host.is_real_root() {
                    "apt-cache madison did not answer"
                } else {
                    ALTERNATE_ROOT
                };
                plan.notes.push(format!(
                    "qemu-utils is installed with qemu-system-x86 but not pinned to its version ({why}): if apt refuses, run `apt-cache madison qemu-system-x86` and add `qemu-utils=VERSION`."
                ));
            }
        }
    }
    let mut args: Vec<&str> = vec![
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "--allow-downgrades",
    ];
    args.extend(pkgs.iter().map(String::as_str));
    plan.steps.push(Step::Run {
        check: "packages".into(),
        why: "Refresh the package lists.".into(),
        command: CommandSpec::new("apt-get", &["update", "-qq"])
            .with_env("DEBIAN_FRONTEND", "noninteractive"),
        timeout_s: 600,
        rerun_on_rollback: false,
    });
    plan.steps.push(Step::Run {
        check: "packages".into(),
        why: format!(
            "Install the missing packages of scripts/install-deps.sh full: {}.",
            st.missing_packages.join(", ")
        ),
        command: CommandSpec::new("apt-get", &args).with_env("DEBIAN_FRONTEND", "noninteractive"),
        timeout_s: 1800,
        rerun_on_rollback: false,
    });
    true
}

/// The version `apt-get install` would pick (first line of `apt-cache madison`), real root only.
fn candidate_version(host: &dyn Host, package: &str) -> Option<String> {
    if !host.is_real_root() {
        return None;
    }
    match host.runner().run(
        &CommandSpec::new("apt-cache", &["madison", package]),
        Duration::from_secs(60),
    ) {
        RunOutcome::Ran {
            code: Some(0),
            stdout,
            ..
        } => stdout
            .lines()
            .next()
            .and_then(|l| l.split('|').nth(1))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
        _ => None,
    }
}

mod apply;
pub use apply::{
    apply, list_runs, rollback, run_dir, utc_fields, utc_stamp, ApplyReport, CommandRecord,
    FileRecord, Manifest, RollbackOutcome, RollbackRecord,
};
