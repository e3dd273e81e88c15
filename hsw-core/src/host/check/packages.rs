//! The `packages` check: the tools the clusters are built with, and the packages `install-deps.sh full` installs.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Check, Status};
use crate::host::env::{read_optional, Host};
use crate::host::parse::{self, DpkgPackage};
use crate::host::run::{CommandSpec, RunOutcome};

/// The runtime packages `scripts/install-deps.sh full` installs (its `full_pkgs`), in its order.
/// A test keeps the two lists equal.
pub const FULL_PACKAGES: &[&str] = &[
    "libvirt-daemon-system",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "dnsmasq-base",
    "iproute2",
    "mmdebstrap",
    "e2fsprogs",
    "cloud-image-utils",
    "genisoimage",
    "openssh-client",
    "packer",
    "ansible",
    "mdevctl",
    "jq",
    "busybox-static",
];

/// A tool the clusters cannot be built without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// Name for people.
    pub name: &'static str,
    /// Debian packages that provide it (any one).
    pub packages: &'static [&'static str],
    /// Executables that show it is there without a package (any one).
    pub binaries: &'static [&'static str],
}

/// The tools `packages` requires (missing ones fail).
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "libvirt daemon",
        packages: &["libvirt-daemon-system"],
        binaries: &["libvirtd", "virtqemud"],
    },
    Tool {
        name: "QEMU",
        packages: &["qemu-system-x86"],
        binaries: &["qemu-system-x86_64"],
    },
    Tool {
        name: "qemu-img",
        packages: &["qemu-utils"],
        binaries: &["qemu-img"],
    },
    Tool {
        name: "Terraform",
        packages: &["terraform"],
        binaries: &["terraform"],
    },
    Tool {
        name: "Ansible",
        packages: &["ansible", "ansible-core"],
        binaries: &["ansible-playbook"],
    },
];

/// Where one tool was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Installed as a Debian package: (package, version).
    Package(String, String),
    /// An executable on the search path: (host path, version when it could be read).
    Binary(String, Option<String>),
    /// Not found.
    Missing,
}

/// What is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageState {
    /// The dpkg database, when the host has one.
    pub dpkg: Option<BTreeMap<String, DpkgPackage>>,
    /// Each of [`TOOLS`], and where it was found.
    pub tools: Vec<(Tool, Found)>,
    /// [`FULL_PACKAGES`] that dpkg does not list as installed (empty without a dpkg database).
    pub missing_packages: Vec<&'static str>,
}

/// Looks up [`TOOLS`] (dpkg, then the search path) and [`FULL_PACKAGES`].
pub fn package_state(host: &dyn Host) -> PackageState {
    let dpkg = read_optional(&host.var_lib_dpkg_status())
        .ok()
        .flatten()
        .map(|t| parse::dpkg_status(&t));
    let installed = |p: &str| {
        dpkg.as_ref()
            .and_then(|d| d.get(p))
            .filter(|e| e.installed)
            .map(|e| e.version.clone())
    };
    let tools = TOOLS
        .iter()
        .map(|tool| {
            if let Some((p, v)) = tool
                .packages
                .iter()
                .find_map(|p| installed(p).map(|v| (p, v)))
            {
                return (*tool, Found::Package((*p).to_owned(), v));
            }
            match tool.binaries.iter().find_map(|b| host.find_tool(b)) {
                Some(path) => {
                    let version = tool_version(host, tool, &path);
                    (*tool, Found::Binary(path, version))
                }
                None => (*tool, Found::Missing),
            }
        })
        .collect();
    let missing_packages = match &dpkg {
        Some(_) => FULL_PACKAGES
            .iter()
            .copied()
            .filter(|p| installed(p).is_none())
            .collect(),
        None => Vec::new(),
    };
    PackageState {
        dpkg,
        tools,
        missing_packages,
    }
}

/// Asks a tool found outside dpkg for its version (real root only: the runner skips elsewhere).
fn tool_version(host: &dyn Host, tool: &Tool, path: &str) -> Option<String> {
    if !host.is_real_root() {
        return None;
    }
    let cmd = if tool.name == "Terraform" {
        CommandSpec::new(path, &["version", "-json"]).with_env("CHECKPOINT_DISABLE", "1")
    } else {
        CommandSpec::new(path, &["--version"])
    };
    match host.runner().run(&cmd, Duration::from_secs(10)) {
        RunOutcome::Ran {
            code: Some(0),
            stdout,
            ..
        } => {
            if tool.name == "Terraform" {
                serde_json::from_str::<serde_json::Value>(&stdout)
                    .ok()
                    .and_then(|v| {
                        v.get("terraform_version")
                            .and_then(|s| s.as_str())
                            .map(str::to_owned)
                    })
            } else {
                stdout
                    .lines()
                    .next()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
            }
        }
        _ => None,
    }
}

pub(super) fn check_packages(host: &dyn Host) -> Check {
    const ID: &str = "packages";
    let st = package_state(host);
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for (tool, found) in &st.tools {
        match found {
            Found::Package(p, v) => present.push(format!("{} {v} ({p})", tool.name)),
            Found::Binary(path, Some(v)) => present.push(format!("{} {v} ({path})", tool.name)),
            Found::Binary(path, None) => {
                let why = if host.is_real_root() {
                    "version unknown"
                } else {
                    "version not read under an alternate root"
                };
                present.push(format!("{} at {path} ({why})", tool.name));
            }
            Found::Missing => missing.push(*tool),
        }
    }
    let others: Vec<&str> = st
        .missing_packages
        .iter()
        .copied()
        .filter(|p| !missing.iter().any(|t| t.packages.contains(p)))
        .filter(|p| {
            !st.tools
                .iter()
                .any(|(t, f)| t.packages.contains(p) && !matches!(f, Found::Missing))
        })
        .collect();
    let mut msg = String::new();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|t| t.name).collect();
        msg.push_str(&format!("Missing: {}. ", names.join(", ")));
    }
    if !present.is_empty() {
        msg.push_str(&format!("Found: {}.", present.join("; ")));
    }
    if !others.is_empty() {
        msg.push_str(&format!(
            " Not installed (image building and the sandbox use them): {}.",
            others.join(", ")
        ));
    }
    if st.dpkg.is_none() {
        msg.push_str(
            " There is no dpkg database (/var/lib/dpkg/status): tools were looked up on PATH only.",
        );
    }
    let mut remedy = Vec::new();
    let apt: Vec<&str> = missing
        .iter()
        .flat_map(|t| t.packages.first().copied())
        .filter(|p| *p != "terraform")
        .chain(others.iter().copied())
        .collect();
    if !apt.is_empty() {
        remedy.push(format!(
            "Install with `sudo apt-get install -y --no-install-recommends {}` (or `sudo hsw-cli prepare --apply`); when \
             qemu-system-x86 is among them, install qemu-utils at the same version in the same call.",
            apt.join(" ")
        ));
    }
    if missing.iter().any(|t| t.name == "Terraform") {
        remedy.push(
            "Terraform is not a Debian package: install Terraform >= 1.0 from HashiCorp (https://developer.hashicorp.com/terraform/install) into /usr/local/bin."
                .to_owned(),
        );
    }
    let status = if !missing.is_empty() {
        Status::Fail
    } else if !others.is_empty() {
        Status::Warn
    } else {
        Status::Pass
    };
    Check::new(ID, status, msg.trim().to_owned(), remedy.join(" "))
}
