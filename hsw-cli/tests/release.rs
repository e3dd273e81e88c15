//! `scripts/release.sh --bin-dir` (from the debug binaries, to stay fast): the zip, SHA256SUMS and the manifest
//! are what Terraform's registries expect, the SHA256SUMS checks, and real Terraform (1.11 on PATH and 1.0.3)
//! installs the provider from the script's mirror, offline, both with `terraform init -plugin-dir` and as a
//! packed `filesystem_mirror` named in a temporary CLI configuration.
//!
//! Needs `zip` (scripts/install-deps.sh base) and the built provider (`cargo build -p terraform-provider-hsw`, or
//! `HSW_PROVIDER_BIN`); a missing Terraform is skipped unless `HSW_REQUIRE_TERRAFORM=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::repo;
use testkit::terraform::{self, Terraform};

/// `hsw-cli provider layout` as a map.
fn layout() -> BTreeMap<String, String> {
    support::hsw()
        .ok(&["provider", "layout"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs `scripts/release.sh --bin-dir` over hsw-cli and the built provider; returns the output directory.
fn release(tmp: &Path) -> PathBuf {
    let bin_dir = tmp.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hsw-cli"), bin_dir.join("hsw-cli")).unwrap();
    std::os::unix::fs::symlink(
        terraform::provider_binary().canonicalize().unwrap(),
        bin_dir.join("terraform-provider-hsw"),
    )
    .unwrap();
    let out = tmp.join("dist");
    let o = Command::new("bash")
        .arg(repo().join("scripts/release.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", testkit::describe(&o));
    out
}

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

const ROOT: &str = r#"terraform {
  required_providers {
    hsw = {
      source  = "registry.terraform.io/hyperscaler/hsw"
      version = "VERSION"
    }
  }
}

provider "hsw" {
  uri = "test:///default"
}
"#;

#[test]
fn the_release_layout_installs_with_plugin_dir_and_a_packed_filesystem_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let out = release(tmp.path());
    let l = layout();
    let (v, plat) = (&l["version"], &l["platform"]);

    // The registry's files.
    let zip = out.join(&l["zip"]);
    assert_eq!(
        l["zip"],
        format!("terraform-provider-hsw_{v}_{plat}.zip"),
        "{l:?}"
    );
    let sums = std::fs::read_to_string(out.join(&l["sums"])).unwrap();
    assert_eq!(sums, format!("{}  {}\n", sha256(&zip), l["zip"]));
    let check = Command::new("sha256sum")
        .args(["-c", &l["sums"]])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", testkit::describe(&check));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(&l["manifest"])).unwrap()).unwrap();
    assert_eq!(
        manifest,
        serde_json::json!({"version": 1, "metadata": {"protocol_versions": ["6.0"]}})
    );
    let listing = Command::new("unzip").arg("-Z1").arg(&zip).output();
    if let Ok(listing) = listing {
        assert_eq!(
            String::from_utf8_lossy(&listing.stdout),
            format!("terraform-provider-hsw_v{v}\n")
        );
    }
    // The network mirror's JSON beside the packed mirror.
    for host in ["registry.terraform.io", "registry.opentofu.org"] {
        let d = out.join("mirror").join(host).join("hyperscaler/hsw");
        assert_eq!(sha256(&d.join(&l["zip"])), sha256(&zip));
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("index.json")).unwrap()).unwrap();
        assert_eq!(index, serde_json::json!({"versions": {v.as_str(): {}}}));
        let ver: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(format!("{v}.json"))).unwrap())
                .unwrap();
        assert_eq!(
            ver,
            serde_json::json!({"archives": {plat.as_str(): {"url": l["zip"], "hashes": [format!("zh:{}", sha256(&zip))]}}})
        );
    }
    // A second run gives the same zip.
    let again = release(&tmp.path().join("again"));
    assert_eq!(sha256(&again.join(&l["zip"])), sha256(&zip));

    // Real Terraform and OpenTofu install from it.
    let tfs = terraform::with_opentofu();
    let mirror = out.join("mirror");
    let cli_config = tmp.path().join("packed.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/hyperscaler/hsw\"]\n  }}\n}}\n",
            mirror.display()
        ),
    )
    .unwrap();
    let empty_config = tmp.path().join("empty.tfrc");
    std::fs::write(&empty_config, "").unwrap();
    let mut failures = Vec::new();
    for (label, bin) in tfs {
        for (how, config, extra) in [
            (
                "-plugin-dir",
                &empty_config,
                Some(format!("-plugin-dir={}", mirror.display())),
            ),
            ("filesystem_mirror", &cli_config, None),
        ] {
            let dir = tmp.path().join(format!(
                "{}-{}",
                label.replace(' ', "-"),
                how.trim_start_matches('-')
            ));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("main.tf"), ROOT.replace("VERSION", v)).unwrap();
            let tf = Terraform::new(&bin, config);
            let mut args = vec!["init", "-input=false", "-no-color"];
            if let Some(e) = &extra {
                args.push(e);
            }
            let r = tf
                .expect(&dir, &args, 0)
                .and_then(|_| tf.expect(&dir, &["providers", "-no-color"], 0).map(drop))
                .and_then(|()| {
                    let lock = std::fs::read_to_string(dir.join(".terraform.lock.hcl"))
                        .map_err(|e| e.to_string())?;
                    // A local archive is locked by its package hash (h1:), at the released version.
                    let want = format!(
                        "provider \"registry.terraform.io/hyperscaler/hsw\" {{\n  version     = \"{v}\""
                    );
                    if lock.contains(&want) && lock.contains("\"h1:") {
                        Ok(())
                    } else {
                        Err(format!("the lock file lacks `{want}` or an h1: hash:\n{lock}"))
                    }
                })
                .and_then(|()| tf.expect(&dir, &["validate", "-no-color"], 0).map(drop));
            if let Err(e) = r {
                failures.push(format!("{label} ({how}): {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn release_refuses_a_bin_dir_without_the_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(repo().join("scripts/release.sh"))
        .arg("--bin-dir")
        .arg(tmp.path())
        .arg("--out")
        .arg(tmp.path().join("dist"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", testkit::describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("hsw-cli is not an executable: build it or give --bin-dir"),
        "{err}"
    );
    assert!(!tmp.path().join("dist").exists());
}
