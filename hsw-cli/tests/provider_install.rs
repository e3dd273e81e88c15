//! `hsw-cli provider install`, then the user's own path with real Terraform (1.11 on PATH and 1.0.3) and OpenTofu
//! 1.9, offline and with no CLI configuration at all (`TF_CLI_CONFIG_FILE` unset, `HOME` a fresh directory,
//! checkpoint calls off): `init` finds the provider in `~/.terraform.d/plugins` (an implied local mirror
//! directory, so no registry is asked for `hyperscaler/hsw`) and `plan` of a small root against libvirt's test
//! driver succeeds, with the provider named by its full source (`registry.terraform.io/hyperscaler/hsw`, as the
//! generated root and the modules name it) and by the short `hyperscaler/hsw` (which OpenTofu reads as
//! `registry.opentofu.org/hyperscaler/hsw`); the committed root in `terraform/` initialises and validates.
//!
//! The provider is the locally built one (`cargo build -p terraform-provider-hsw`, or `HSW_PROVIDER_BIN`); a
//! missing Terraform is skipped unless `HSW_REQUIRE_TERRAFORM=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use testkit::terraform::{self, Terraform};

/// A small root using the provider by `source`, against the test driver.
fn root(dir: &Path, pool: &Path, source: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!(
            r#"terraform {{
  required_providers {{
    hsw = {{
      source = "{source}"
    }}
  }}
}}

provider "hsw" {{
  uri      = "test:///default"
  pool_dir = "{}"
}}

resource "hsw_network" "n" {{
  name   = "hsw-install-test"
  mode   = "nat"
  bridge = "hswit0"
  subnet = "10.77.0.0/24"
}}
"#,
            pool.display()
        ),
    )
    .unwrap();
}

/// `terraform ARGS` in `dir` with no CLI configuration and `home` as `HOME`; its output, or the whole story.
fn tf(bin: &Path, home: &Path, dir: &Path, args: &[&str]) -> Result<String, String> {
    let t = Terraform::new(bin, "/unused");
    let mut c = t.command(dir, args);
    c.env_remove("TF_CLI_CONFIG_FILE")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DATA_DIRS")
        .env("HOME", home);
    let r = t.output(c)?;
    let text = format!("{}{}", r.stdout, r.stderr);
    if r.code == Some(0) {
        Ok(text)
    } else {
        Err(format!(
            "{} {} in {} exited {:?}:\n{text}",
            bin.display(),
            args.join(" "),
            dir.display(),
            r.code
        ))
    }
}

#[test]
fn terraform_init_and_plan_work_after_provider_install_with_no_cli_configuration() {
    let tfs = terraform::with_opentofu();
    if tfs.is_empty() {
        return;
    }
    let provider = terraform::provider_binary();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let install = |args: &[&str]| {
        let mut all = vec![
            "provider",
            "install",
            "--binary",
            provider.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        support::hsw().env("HOME", &home).run(&all)
    };
    let o = install(&[]);
    assert!(o.status.success(), "{}", testkit::describe(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(text.matches("installed: ").count(), 2, "{text}");
    assert!(text.contains("with no CLI configuration"), "{text}");
    // Idempotent.
    let o = install(&[]);
    assert!(o.status.success(), "{}", testkit::describe(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("unchanged (already this binary)")
            .count(),
        2
    );

    let pool = tmp.path().join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    let mut failures = Vec::new();
    let repo = testkit::repo();
    for (label, bin) in tfs {
        println!("--- {label}: {}", terraform::version(&bin));
        // The short source means the public registry of whoever runs it.
        let short_host = if label == "OpenTofu" {
            "registry.opentofu.org"
        } else {
            "registry.terraform.io"
        };
        for (source, locked) in [
            (
                "registry.terraform.io/hyperscaler/hsw",
                "registry.terraform.io/hyperscaler/hsw",
            ),
            ("hyperscaler/hsw", &format!("{short_host}/hyperscaler/hsw")),
        ] {
            let dir = tmp
                .path()
                .join(format!("{label}-{source}").replace([' ', '/'], "-"));
            root(&dir, &pool, source);
            let r = tf(&bin, &home, &dir, &["init", "-input=false", "-no-color"])
                .and_then(|init| {
                    let lock = std::fs::read_to_string(dir.join(".terraform.lock.hcl"))
                        .map_err(|e| format!("no lock file after init: {e}\n{init}"))?;
                    if !lock.contains(&format!("provider \"{locked}\"")) {
                        return Err(format!("the lock file lacks {locked}:\n{lock}"));
                    }
                    tf(&bin, &home, &dir, &["plan", "-input=false", "-no-color"])
                })
                .and_then(|plan| {
                    if plan.contains("Plan: 1 to add, 0 to change, 0 to destroy.") {
                        Ok(())
                    } else {
                        Err(format!("unexpected plan:\n{plan}"))
                    }
                });
            if let Err(e) = r {
                failures.push(format!("{label}, source {source}: {e}"));
            }
        }
        // The committed root, as the README has the user run it: `cd terraform && terraform init`.
        let copy = tmp.path().join(format!("{label}-repo").replace(' ', "-"));
        for d in ["terraform", "modules"] {
            // Without what a user's own init or apply left in the checkout.
            testkit::copy_tree_except(&repo.join(d), &copy.join(d), &|n| {
                n.starts_with(".terraform") || n.contains(".tfstate")
            });
        }
        let dir = copy.join("terraform");
        let r = tf(&bin, &home, &dir, &["init", "-input=false", "-no-color"])
            .and_then(|_| tf(&bin, &home, &dir, &["validate", "-no-color"]));
        if let Err(e) = r {
            failures.push(format!("{label}, the committed root terraform/: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_different_provider_of_the_same_version_is_kept_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::write(&a, "#!/bin/sh\n# provider A\n").unwrap();
    std::fs::write(&b, "#!/bin/sh\n# provider B\n").unwrap();
    let dir = tmp.path().join("plugins");
    let run = |bin: &Path, force: bool| {
        let mut args = vec![
            "provider",
            "install",
            "--dir",
            dir.to_str().unwrap(),
            "--binary",
            bin.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        support::hsw().run(&args)
    };
    assert!(run(&a, false).status.success());
    let o = run(&b, false);
    assert_eq!(o.status.code(), Some(1), "{}", testkit::describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--force"), "{err}");
    let installed: Vec<_> = ["registry.terraform.io", "registry.opentofu.org"]
        .iter()
        .map(|h| {
            dir.join(h)
                .join("hyperscaler/hsw")
                .join(env!("CARGO_PKG_VERSION"))
                .join(format!(
                    "{}_{}",
                    std::env::consts::OS,
                    if std::env::consts::ARCH == "x86_64" {
                        "amd64"
                    } else {
                        std::env::consts::ARCH
                    }
                ))
                .join(format!(
                    "terraform-provider-hsw_v{}",
                    env!("CARGO_PKG_VERSION")
                ))
        })
        .collect();
    for p in &installed {
        assert_eq!(std::fs::read(p).unwrap(), std::fs::read(&a).unwrap());
    }
    assert!(run(&b, true).status.success());
    for p in &installed {
        assert_eq!(std::fs::read(p).unwrap(), std::fs::read(&b).unwrap());
    }
}
