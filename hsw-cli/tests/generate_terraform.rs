//! Real Terraform over the modules and the generated root modules, offline:
//!
//! - `terraform fmt -check -recursive` over `modules/`, the committed `terraform/` and freshly generated roots;
//! - `terraform init` + `terraform validate` for every module, every module example, the committed `terraform/`
//!   and the root generated from every example in `examples/`;
//! - `terraform plan` of the embedded default's root against libvirt's in-memory test driver, with the simulated
//!   GPU backend seeded from the configuration (`hsw-cli gpu discover`): every expression, the GPU assignment
//!   and the `hsw_inventory` output evaluate; and of the same on NVML: MIG instance → vGPU (parent found at apply)
//!   → q35/UEFI VM.
//!
//! The provider is the locally built `terraform-provider-hsw` (`HSW_PROVIDER_BIN`, else
//! `$CARGO_TARGET_DIR/debug` or `target/debug`; `cargo test --workspace` builds it, `cargo build -p
//! terraform-provider-hsw` alone too), installed through a filesystem mirror in a private CLI configuration;
//! no registry is contacted and checkpoint calls are disabled.
//!
//! Terraform: `HSW_TERRAFORM` or `terraform` on `PATH`, and Terraform 1.0 (`HSW_TERRAFORM_1_0`, or the one
//! `scripts/install-tools.sh` puts in `/opt/hsw/tools/terraform-1.0.3`). A missing Terraform is skipped with a
//! message, unless `HSW_REQUIRE_TERRAFORM=1`, which makes it a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use testkit::terraform::{self, Terraform};
use testkit::{copy_tree_except, repo};

const MODULES: [&str; 4] = ["network", "vm-group", "gpu-partition", "cluster"];

/// Terraform with the label it is reported under.
struct Tf {
    tf: Terraform,
    label: String,
}

impl Tf {
    fn run(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
        let mut cmd = self.tf.command(dir, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let r = self.tf.output(cmd)?;
        let text = format!("{}{}", r.stdout, r.stderr);
        if r.code == Some(0) {
            Ok(text)
        } else {
            Err(format!(
                "{} `terraform {}` in {} failed:\n{text}",
                self.label,
                args.join(" "),
                dir.display()
            ))
        }
    }

    fn init_validate(&self, dir: &Path) -> Result<(), String> {
        let _ = std::fs::remove_dir_all(dir.join(".terraform"));
        let _ = std::fs::remove_file(dir.join(".terraform.lock.hcl"));
        self.run(dir, &["init", "-input=false", "-no-color"], &[])?;
        self.run(dir, &["validate", "-no-color"], &[])?;
        Ok(())
    }
}

/// Leaves out Terraform's working state when copying modules and roots.
fn not_state(name: &str) -> bool {
    name == ".terraform" || name == ".terraform.lock.hcl" || name.ends_with(".tfstate")
}

fn hsw(dir: &Path, args: &[&str]) {
    let o = support::hsw().dir(dir).run(args);
    assert!(
        o.status.success(),
        "hsw-cli {} failed: {}",
        args.join(" "),
        testkit::describe(&o)
    );
}

#[test]
fn modules_and_generated_roots_pass_terraform() {
    let tfs = terraform::binaries();
    if tfs.is_empty() {
        return;
    }
    let provider = terraform::provider_binary();

    // The mirror and the CLI configuration.
    let tmp = tempfile::tempdir().unwrap();
    let cli_config = terraform::mirror(tmp.path(), &provider).unwrap();

    // A copy of the modules, the committed root, and a root generated from every example.
    let work = tmp.path().join("work");
    copy_tree_except(&repo().join("modules"), &work.join("modules"), &not_state);
    copy_tree_except(
        &repo().join("terraform"),
        &work.join("terraform"),
        &not_state,
    );
    let mut roots = vec![work.join("terraform")];
    let examples = support::examples();
    for ex in &examples {
        let stem = ex.file_stem().unwrap().to_string_lossy().into_owned();
        let out = format!("roots/{stem}");
        hsw(
            &work,
            &[
                "generate",
                "--config",
                &ex.display().to_string(),
                "--out",
                &out,
            ],
        );
        roots.push(work.join(out));
    }
    // The default, planned against libvirt's test driver with simulated GPUs seeded from it.
    let pool = work.join("pool");
    for cluster in ["hpc", "cloud"] {
        let dir = pool.join("base").join(cluster);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["base.qcow2", "vmlinuz", "initrd.img"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
    }
    let planned = hsw_core::config::DEFAULT_CONFIG
        .replace("qemu:///system", "test:///default")
        .replace("/var/lib/hsw/images", &pool.display().to_string());
    std::fs::write(work.join("plan.yaml"), &planned).unwrap();
    // The same on NVML (absent here, which plan-time checks leave to apply): the units wired to their VMs.
    std::fs::write(
        work.join("plan-nvml.yaml"),
        planned.replace("gpu_backend: simulated", "gpu_backend: nvml"),
    )
    .unwrap();
    hsw(
        &work,
        &[
            "generate",
            "--config",
            "plan-nvml.yaml",
            "--out",
            "plan-nvml",
        ],
    );
    let state = work.join("gpu-state");
    hsw(
        &work,
        &[
            "gpu",
            "discover",
            "--config",
            "plan.yaml",
            "--backend",
            "simulated",
            "--state-dir",
            &state.display().to_string(),
        ],
    );
    hsw(
        &work,
        &["generate", "--config", "plan.yaml", "--out", "plan"],
    );
    let key = work.join("key.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGenerateTerraformTestKeyGenerateTerraformTe test\n",
    )
    .unwrap();

    let mut failures = Vec::new();
    for (label, bin) in tfs {
        let tf = Tf {
            tf: Terraform::new(bin, &cli_config),
            label: label.to_owned(),
        };
        let version = tf.tf.version();
        println!("--- {label}: {} ({version})", tf.tf.bin.display());
        let mut check = |r: Result<(), String>| {
            if let Err(e) = r {
                println!("FAILED {e}");
                failures.push(e);
            }
        };
        check(
            tf.run(
                &repo(),
                &["fmt", "-check", "-recursive", "-no-color", "modules"],
                &[],
            )
            .map(drop),
        );
        check(
            tf.run(
                &work,
                &["fmt", "-check", "-recursive", "-no-color", "roots"],
                &[],
            )
            .map(drop),
        );
        check(
            tf.run(&work, &["fmt", "-check", "-no-color", "terraform"], &[])
                .map(drop),
        );
        for m in MODULES {
            check(tf.init_validate(&work.join("modules").join(m)));
            check(tf.init_validate(&work.join("modules").join(m).join("examples/basic")));
        }
        for r in &roots {
            check(tf.init_validate(r));
        }
        let plan_dir = work.join("plan");
        let keys = format!(
            "ssh_public_key_files={{hpc = \"{0}\", cloud = \"{0}\"}}",
            key.display()
        );
        let state_s = state.display().to_string();
        let planned = tf.init_validate(&plan_dir).and_then(|()| {
            tf.run(
                &plan_dir,
                &["plan", "-input=false", "-no-color", "-var", &keys],
                &[("HSW_GPU_STATE_DIR", &state_s)],
            )
        });
        check(planned.and_then(|text| {
            for want in [
                "Plan: 10 to add, 0 to change, 0 to destroy.",
                "hsw_inventory",
                "name       = \"hsw-dev-gpu-worker-1\"",
                "id              = \"GPU-0-mig-4\"",
            ] {
                if !text.contains(want) {
                    return Err(format!("{label}: the plan lacks `{want}`:\n{text}"));
                }
            }
            hosts_in_node_order(&version, &text).map_err(|e| format!("{label}: {e}:\n{text}"))
        }));
        let nvml_dir = work.join("plan-nvml");
        let planned = tf.init_validate(&nvml_dir).and_then(|()| {
            tf.run(
                &nvml_dir,
                &["plan", "-input=false", "-no-color", "-var", &keys],
                &[],
            )
        });
        check(planned.and_then(|text| {
            for want in [
                "Plan: 13 to add, 0 to change, 0 to destroy.",
                "module.gpu_partition.hsw_mdev.this[\"GPU-0-mig-4\"] will be created",
                "type         = \"A100DX-3-40C\"",
                "machine             = \"q35\"",
                "firmware            = \"efi\"",
                "mmio64_gib          = 64",
            ] {
                if !text.contains(want) {
                    return Err(format!("{label}: the NVML plan lacks `{want}`:\n{text}"));
                }
            }
            Ok(())
        }));
        println!("done {version}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The planned `hsw_inventory` lists each cluster's hosts in node order (the controller or control plane
/// first, whatever the order of the cluster module's role names). Terraform 1.0 plans the output as unknown, so
/// only newer ones can show it.
fn hosts_in_node_order(version: &str, plan: &str) -> Result<(), String> {
    if version.starts_with("Terraform v1.0.") {
        return Ok(());
    }
    let outputs = plan
        .split("Changes to Outputs:")
        .nth(1)
        .ok_or("the plan shows no output changes")?;
    for cluster in [
        [
            "hsw-dev-controller-1",
            "hsw-dev-compute-1",
            "hsw-dev-compute-2",
        ]
        .as_slice(),
        ["hsw-dev-control-plane-1", "hsw-dev-gpu-worker-1"].as_slice(),
    ] {
        let at: Vec<Option<usize>> = cluster
            .iter()
            .map(|n| outputs.find(&format!("name       = \"{n}\"")))
            .collect();
        if at.iter().any(Option::is_none) || !at.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!(
                "the planned hsw_inventory does not list {} in this order",
                cluster.join(", ")
            ));
        }
    }
    Ok(())
}
