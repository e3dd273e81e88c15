//! Real Terraform driving the real `terraform-provider-hsw` binary against libvirt's test driver
//! (`uri = "test:///default"`: in-process, no daemon, no real network or VM) with real files (qemu-img overlays,
//! genisoimage seeds) in a temporary pool directory.
//!
//! The test driver keeps its objects only inside the process that opened it, and Terraform starts a new provider
//! process per command. So the provider is started once with `--debug` and every Terraform command attaches to it
//! with `TF_REATTACH_PROVIDERS`: one process, one connection, for the whole scenario.
//!
//! Runs against every Terraform found (as `terraform.rs`: `HSW_TERRAFORM` or `terraform` on `PATH`, and
//! `HSW_TERRAFORM_1_0` or `/opt/hsw/tools/terraform-1.0.3`); a missing Terraform or tool is skipped with a message unless
//! `HSW_REQUIRE_TERRAFORM=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::path::Path;
use std::process::Command;

use testkit::require;
use testkit::terraform::{self, DebugProvider, Terraform, Workdir};

fn config(pool: &Path, memory: u32) -> String {
    format!(
        r##"
terraform {{
  required_providers {{
    hsw = {{ source = "hyperscaler/hsw" }}
  }}
}}

provider "hsw" {{
  uri      = "test:///default"
  pool_dir = "{pool}"
}}

data "hsw_host" "this" {{}}

resource "hsw_network" "lab" {{
  name   = "tflab"
  mode   = "nat"
  subnet = "10.97.0.0/24"
  dhcp {{
    start = "10.97.0.100"
    end   = "10.97.0.200"
  }}
  dns_host {{
    ip        = "10.97.0.5"
    hostnames = ["api"]
  }}
}}

resource "hsw_vm" "node" {{
  name                = "tfnode"
  vcpu                = 1
  memory              = {memory}
  base_image          = "{pool}/images/base.qcow2"
  user_data           = "#cloud-config\npassword: s3cr3t\n"
  ssh_authorized_keys = ["ssh-ed25519 AAAA test"]
  network_interface {{
    network     = hsw_network.lab.name
    ip          = "10.97.0.20"
    wait_for_ip = true
  }}
}}

output "accelerator" {{
  value = data.hsw_host.this.auto_accelerator
}}

output "address" {{
  value = hsw_vm.node.network_interface[0].addresses[0]
}}
"##,
        pool = pool.display()
    )
}

fn scenario(tf: &Path) {
    let root = tempfile::tempdir().unwrap();
    let pool = root.path().join("pool");
    std::fs::create_dir_all(pool.join("images")).unwrap();
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(pool.join("images/base.qcow2"))
        .arg("64M")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = root.path().join("tf");
    std::fs::create_dir_all(&dir).unwrap();
    // `init` still wants the provider installable: a filesystem mirror holding the binary.
    let cli_config = terraform::mirror(
        root.path(),
        Path::new(env!("CARGO_BIN_EXE_terraform-provider-hsw")),
    )
    .unwrap();
    std::fs::write(dir.join("main.tf"), config(&pool, 256)).unwrap();
    let provider =
        DebugProvider::start(Command::new(env!("CARGO_BIN_EXE_terraform-provider-hsw"))).unwrap();
    let w = Workdir {
        tf: Terraform::new(tf, cli_config).env("TF_REATTACH_PROVIDERS", &provider.reattach),
        dir,
    };
    w.expect(&["init", "-no-color", "-input=false"], 0);
    let plan = w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        2,
    );
    assert!(
        plan.contains("(sensitive value)") && !plan.contains("s3cr3t"),
        "{plan}"
    );
    w.expect(&["apply", "-no-color", "-input=false", "-auto-approve"], 0);
    assert_eq!(
        w.expect(&["output", "-raw", "accelerator"], 0).trim(),
        "tcg"
    );
    assert!(
        !w.expect(&["output", "-raw", "address"], 0)
            .trim()
            .is_empty(),
        "an address was seen"
    );
    assert!(
        pool.join("vms/tfnode/root.qcow2").is_file()
            && pool.join("vms/tfnode/cidata.iso").is_file()
    );
    // No file of the VM is readable by others, and no directory listable (Terraform runs under umask 022).
    assert_eq!(
        harness::readable_by_others(&pool.join("vms")),
        Vec::<String>::new()
    );
    w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        0,
    );

    // Import both back and plan nothing.
    w.expect(
        &["state", "rm", "-no-color", "hsw_vm.node", "hsw_network.lab"],
        0,
    );
    w.expect(
        &[
            "import",
            "-no-color",
            "-input=false",
            "hsw_network.lab",
            "tflab",
        ],
        0,
    );
    w.expect(
        &[
            "import",
            "-no-color",
            "-input=false",
            "hsw_vm.node",
            "tfnode",
        ],
        0,
    );
    // Terraform 1.0 drops the outputs with `state rm`, and may plan to set them again: no resource may change.
    let (code, out, err) = w
        .run(&["plan", "-no-color", "-input=false", "-detailed-exitcode"])
        .parts();
    assert!(
        code == 0 || (code == 2 && !out.contains("will be") && !out.contains("must be")),
        "plan after import should change no resource\n{out}{err}"
    );
    w.expect(&["apply", "-no-color", "-input=false", "-auto-approve"], 0);

    // Memory changes in place.
    std::fs::write(w.dir.join("main.tf"), config(&pool, 512)).unwrap();
    let plan = w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        2,
    );
    assert!(
        plan.contains("updated in-place") && !plan.contains("must be replaced"),
        "{plan}"
    );
    w.expect(&["apply", "-no-color", "-input=false", "-auto-approve"], 0);
    w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        0,
    );

    // An injection is refused at plan time, naming the attribute.
    let bad = config(&pool, 512).replace("name   = \"tflab\"", "name   = \"tflab'/><x\"");
    std::fs::write(w.dir.join("main.tf"), bad).unwrap();
    let (code, out, err) = w.run(&["plan", "-no-color", "-input=false"]).parts();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("Invalid network name"), "{err}");

    std::fs::write(w.dir.join("main.tf"), config(&pool, 512)).unwrap();
    w.expect(
        &["destroy", "-no-color", "-input=false", "-auto-approve"],
        0,
    );
    let left: Vec<_> = std::fs::read_dir(pool.join("vms")).unwrap().collect();
    assert!(left.is_empty(), "nothing left in the pool: {left:?}");
    assert!(pool.join("images/base.qcow2").is_file());
}

#[test]
fn terraform_against_the_libvirt_test_driver() {
    let Some(_) = require::tool("qemu-img", require::TERRAFORM) else {
        return;
    };
    if require::on_path("genisoimage").is_none() && require::on_path("cloud-localds").is_none() {
        require::skip(
            require::TERRAFORM,
            "genisoimage (or cloud-localds) is not installed",
        );
        return;
    }
    let tfs = terraform::binaries();
    for (_, tf) in tfs {
        println!("--- {}", tf.display());
        scenario(&tf);
    }
}
