//! Real Terraform (every version found: `terraform` on `PATH` or `HSW_TERRAFORM`, and 1.0.3 from `/opt/hsw/tools/terraform-1.0.3`
//! or `HSW_TERRAFORM_1_0`) driving `hsw_mig_instance` and `hsw_gpus` through the real provider binary on the
//! simulated GPU backend.
//!
//! Terraform starts a new provider process per command (installed from a filesystem mirror): the simulated GPUs
//! live in the state directory, so every command sees the same "hardware". Covers create, empty plan, import,
//! drift (an instance destroyed behind Terraform's back is created again), refusals at plan and apply time that
//! leave nothing behind, and destroy leaving nothing. A missing Terraform is skipped with a message unless
//! `HSW_REQUIRE_TERRAFORM=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use hsw_gpu_backend::mig::GpuBackend;
use hsw_gpu_backend::simulated::SimulatedBackend;
use testkit::terraform::{self, Terraform, Workdir};

fn config(root: &Path, extra: &str) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    hsw = {{ source = "hyperscaler/hsw" }}
  }}
}}

provider "hsw" {{
  uri           = "test:///default"
  pool_dir      = "{root}/pool"
  gpu_backend   = "simulated"
  gpu_state_dir = "{root}/state"
  sysfs_root    = "{root}/sysfs"
}}

data "hsw_gpus" "this" {{}}

resource "hsw_mig_instance" "hpc" {{
  gpu     = "0000:41:00.0"
  profile = "3g.40gb"
}}

resource "hsw_mig_instance" "cloud" {{
  gpu             = "0"
  profile         = "2g.20gb"
  placement_start = 4
  compute_profile = "1c"
}}
{extra}
output "backend" {{
  value = data.hsw_gpus.this.backend
}}

output "hpc_gi" {{
  value = hsw_mig_instance.hpc.gi_id
}}

output "hpc_uuid" {{
  value = hsw_mig_instance.hpc.mig_device_uuid
}}
"#,
        root = root.display()
    )
}

fn scenario(tf: &Path) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("pool")).unwrap();
    std::fs::create_dir_all(r.join("sysfs")).unwrap();
    let dir = r.join("tf");
    std::fs::create_dir_all(&dir).unwrap();
    let cli_config =
        terraform::mirror(r, Path::new(env!("CARGO_BIN_EXE_terraform-provider-hsw"))).unwrap();
    std::fs::write(dir.join("main.tf"), config(r, "")).unwrap();
    let w = Workdir {
        // The overlap refusal below waits for room that never comes: 2 s, not the provider's 120.
        tf: Terraform::new(tf, cli_config).env("HSW_LOCK_WAIT_SECS", "2"),
        dir,
    };
    let gis = || {
        SimulatedBackend::open(&r.join("state"), None)
            .unwrap()
            .gpu_instances(0)
            .unwrap()
    };
    let plan = ["plan", "-no-color", "-input=false", "-detailed-exitcode"];
    let apply = ["apply", "-no-color", "-input=false", "-auto-approve"];

    w.expect(&["init", "-no-color", "-input=false"], 0);
    w.expect(&plan, 2);
    w.expect(&apply, 0);
    assert_eq!(
        w.expect(&["output", "-raw", "backend"], 0).trim(),
        "simulated"
    );
    assert!(w
        .expect(&["output", "-raw", "hpc_uuid"], 0)
        .starts_with("MIG-"));
    let now = gis();
    assert_eq!(now.len(), 2);
    assert!(now
        .iter()
        .any(|g| g.placement.start == 0 && g.placement.size == 4));
    assert!(now
        .iter()
        .any(|g| g.placement.start == 4 && g.compute_instances[0].compute_slices == 1));
    w.expect(&plan, 0);

    // Import back, then nothing to change.
    let gi = w.expect(&["output", "-raw", "hpc_gi"], 0).trim().to_owned();
    w.expect(&["state", "rm", "-no-color", "hsw_mig_instance.hpc"], 0);
    w.expect(
        &[
            "import",
            "-no-color",
            "-input=false",
            "hsw_mig_instance.hpc",
            &format!("0000:41:00.0/{gi}"),
        ],
        0,
    );
    let (code, out, err) = w.run(&plan).parts();
    assert!(
        code == 0 || (code == 2 && !out.contains("will be") && !out.contains("must be")),
        "plan after import should change no resource\n{out}{err}"
    );
    w.expect(&apply, 0);

    // Drift: the instance destroyed behind Terraform's back is planned and created again.
    let sim = SimulatedBackend::open(&r.join("state"), None).unwrap();
    hsw_gpu_backend::ops::destroy(
        &sim,
        &r.join("state/locks"),
        "0",
        gi.parse().unwrap(),
        &hsw_gpu_backend::ops::Expect::default(),
    )
    .unwrap();
    let out = w.expect(&plan, 2);
    assert!(
        out.contains("hsw_mig_instance.hpc will be created"),
        "{out}"
    );
    w.expect(&apply, 0);
    w.expect(&plan, 0);
    assert_eq!(gis().len(), 2);

    // Refused at plan time: a profile of another GPU model.
    let bad = r#"
resource "hsw_mig_instance" "bad" {
  gpu     = "0000:41:00.0"
  profile = "1g.5gb"
}
"#;
    std::fs::write(w.dir.join("main.tf"), config(r, bad)).unwrap();
    let (code, out, err) = w.run(&["plan", "-no-color", "-input=false"]).parts();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("Profile not on this GPU") && err.contains("Did you mean"),
        "{err}"
    );

    // Refused at apply time: 4g at 0 overlaps the 3g; nothing is half-made.
    let overlap = r#"
resource "hsw_mig_instance" "big" {
  gpu             = "0000:41:00.0"
  profile         = "4g.40gb"
  placement_start = 0
}
"#;
    std::fs::write(w.dir.join("main.tf"), config(r, overlap)).unwrap();
    let (code, out, err) = w.run(&apply).parts();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("Not enough room on the GPU"), "{err}");
    assert_eq!(gis().len(), 2);

    std::fs::write(w.dir.join("main.tf"), config(r, "")).unwrap();
    w.expect(
        &["destroy", "-no-color", "-input=false", "-auto-approve"],
        0,
    );
    assert!(gis().is_empty(), "nothing left");
}

#[test]
fn terraform_drives_mig_instances_on_the_simulated_backend() {
    let tfs = terraform::binaries();
    for (_, tf) in tfs {
        println!("--- {}", tf.display());
        scenario(&tf);
    }
}
