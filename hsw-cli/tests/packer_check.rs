//! The Packer image template (`packer/base.pkr.hcl`, one per role through `-var role=hpc|cloud`), checked
//! offline by `packer/check.sh`: `packer validate` (full, not `-syntax-only`, in an empty network namespace when
//! possible) for each role and `packer fmt -check`, `debconf-set-selections -c` on both preseeds, the preseeds'
//! `pkgsel/include` and the template's `local.packages` for each role against `packer/packages/*.list`, what the
//! role picks, and the variables' validation blocks (the role among them).
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
            "packer {major}.{minor} needs `packer plugins install github.com/hashicorp/qemu`; the template targets 1.6.6"
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
        "ok   packer validate -var role=hpc base.pkr.hcl",
        "ok   packer validate -var role=cloud base.pkr.hcl",
        "ok   debconf-set-selections -c http/preseed-hpc.cfg",
        "ok   debconf-set-selections -c http/preseed-cloud.cfg",
        "ok   http/preseed-hpc.cfg: pkgsel/include = packages/{common,hpc}.list",
        "ok   http/preseed-cloud.cfg: pkgsel/include = packages/{common,cloud}.list",
        "ok   base.pkr.hcl -var role=hpc: local.packages = packages/list.sh hpc",
        "ok   base.pkr.hcl -var role=cloud: local.packages = packages/list.sh cloud",
        "ok   base.pkr.hcl -var role=hpc: builds output/hpc-base/hpc-base.qcow2 with http/preseed-hpc.cfg and provision/40-hpc.sh",
        "ok   base.pkr.hcl -var role=cloud: builds output/cloud-base/cloud-base.qcow2 with http/preseed-cloud.cfg and provision/40-cloud.sh",
        "ok   packer validate refuses no role, role=gpu,",
        "ok   files/: ",
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
        "libpmix-dev",
        "slurmdbd",
        "mariadb-server",
        "nfs-kernel-server",
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

/// `scripts/build-image.sh` installs its configuration files from `packer/files/` (one copy of each), and its
/// cache key follows them: changing a file's content or its mode in the script's `FILES` table gives another
/// key, as a package list change does. Run on a copy of the script, the lists and the files.
#[test]
fn build_image_cache_key_follows_the_installed_files() {
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    for dir in ["scripts", "packer/packages", "packer/files"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let copy_dir = |dir: &str| {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, root.join(dir).join(path.file_name().unwrap())).unwrap();
        }
    };
    copy_dir("packer/packages");
    copy_dir("packer/files");
    let script = root.join("scripts/build-image.sh");
    std::fs::copy(repo().join("scripts/build-image.sh"), &script).unwrap();
    let key = || -> String {
        let o = Command::new("bash")
            .arg(&script)
            .args(["--role", "hpc", "--print-key"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };

    let original = key();
    let source = std::fs::read_to_string(&script).unwrap();
    let installs: Vec<&str> = source
        .lines()
        .skip_while(|l| *l != "FILES=(")
        .skip(1)
        .take_while(|l| *l != ")")
        .collect();
    assert!(
        installs
            .iter()
            .any(|l| l.contains("\"sshd-10-hsw.conf /etc/ssh/sshd_config.d/10-hsw.conf 0644\"")),
        "build-image.sh does not install packer/files/sshd-10-hsw.conf: {installs:?}"
    );
    assert!(
        !source
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("PasswordAuthentication") || l.contains("datasource_list")),
        "build-image.sh writes an sshd or cloud-init setting itself instead of installing packer/files/"
    );

    let sshd = root.join("packer/files/sshd-10-hsw.conf");
    let text = std::fs::read_to_string(&sshd).unwrap();
    std::fs::write(&sshd, format!("{text}X11Forwarding yes\n")).unwrap();
    let edited = key();
    assert_ne!(edited, original, "a changed file must change the key");
    std::fs::write(&sshd, &text).unwrap();
    assert_eq!(key(), original, "the key depends on the content only");

    std::fs::write(
        &script,
        source.replace(
            "\"sshd-10-hsw.conf /etc/ssh/sshd_config.d/10-hsw.conf 0644\"",
            "\"sshd-10-hsw.conf /etc/ssh/sshd_config.d/10-hsw.conf 0600\"",
        ),
    )
    .unwrap();
    assert_ne!(key(), original, "a changed mode must change the key");

    std::fs::write(&script, &source).unwrap();
    std::fs::remove_file(&sshd).unwrap();
    let o = Command::new("bash")
        .arg(&script)
        .arg("--print-key")
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a missing packer/files/ file must fail"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sshd-10-hsw.conf is missing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
