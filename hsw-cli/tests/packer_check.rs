//! The Packer image templates (`packer/`), checked offline by `packer/check.sh`: `packer validate` (full, not
//! `-syntax-only`, in an empty network namespace when possible) and `packer fmt -check` of both templates,
//! `debconf-set-selections -c` on both preseeds, the preseeds' `pkgsel/include` and the templates'
//! `local.packages` against `packer/packages/*.list`, and the variables' validation blocks.
//! Skipped when `packer` is not installed (or is 1.10+, which needs the qemu plugin), unless
//! `HSW_REQUIRE_PACKER=1`, which makes that a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use testkit::repo;

/// Packer's version as (major, minor), or why it cannot be used.
fn packer_version() -> Result<(u32, u32), String> {
    let out = Command::new("packer")
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .map_err(|e| format!("packer is not installed ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "Packer v1.6.6"
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .ok_or_else(|| format!("cannot read `packer version`: {text:?}"))?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Ok((major, minor)),
        _ => Err(format!("cannot read `packer version`: {text:?}")),
    }
}

/// Whether the test can run; with `HSW_REQUIRE_PACKER=1` a reason not to is a failure (`testkit::require`).
fn usable() -> bool {
    let reason = match packer_version() {
        Ok((1, minor)) if minor < 10 => return true,
        Ok((major, minor)) => format!(
            "packer {major}.{minor} needs `packer plugins install github.com/hashicorp/qemu`; the templates target 1.6.6"
        ),
        Err(e) => e,
    };
    testkit::require::skip(testkit::require::PACKER, &reason);
    false
}

#[test]
fn packer_check_script_passes() {
    if !usable() {
        return;
    }
    let out = Command::new("bash")
        .arg(repo().join("packer/check.sh"))
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "packer/check.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for want in [
        "ok   packer fmt -check .",
        "ok   packer validate hpc-base.pkr.hcl",
        "ok   packer validate cloud-base.pkr.hcl",
        "ok   debconf-set-selections -c http/preseed-hpc.cfg",
        "ok   debconf-set-selections -c http/preseed-cloud.cfg",
        "ok   http/preseed-hpc.cfg: pkgsel/include = packages/{common,hpc}.list",
        "ok   http/preseed-cloud.cfg: pkgsel/include = packages/{common,cloud}.list",
        "ok   hpc-base.pkr.hcl: local.packages = packages/list.sh hpc",
        "ok   cloud-base.pkr.hcl: local.packages = packages/list.sh cloud",
        "packer/check.sh: all checks passed",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

/// The package lists are the one source of truth: both roles share common.list, and the lists name the
/// packages the issue asks for.
#[test]
fn package_lists_hold_the_required_packages() {
    let list = |role: &str| -> Vec<String> {
        let out = Command::new("bash")
            .arg(repo().join("packer/packages/list.sh"))
            .arg(role)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "list.sh {role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let common = list("common");
    let hpc = list("hpc");
    let cloud = list("cloud");
    for p in [
        "openssh-server",
        "cloud-init",
        "nftables",
        "auditd",
        "unattended-upgrades",
        "prometheus-node-exporter",
    ] {
        assert!(common.iter().any(|c| c == p), "{p} not in common.list");
    }
    assert!(hpc.starts_with(&common) && cloud.starts_with(&common));
    for p in [
        "munge",
        "slurm-wlm",
        "slurmd",
        "slurmctld",
        "slurm-client",
        "openmpi-bin",
        "libopenmpi-dev",
        "nfs-common",
    ] {
        assert!(hpc.iter().any(|c| c == p), "{p} not in the hpc set");
    }
    for p in ["containerd", "runc"] {
        assert!(cloud.iter().any(|c| c == p), "{p} not in the cloud set");
    }
    // --csv is what scripts/build-image.sh --packages takes.
    let csv = Command::new("bash")
        .arg(repo().join("packer/packages/list.sh"))
        .args(["--csv", "hpc"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(csv.stdout).unwrap().trim_end(),
        hpc.join(",")
    );
}
