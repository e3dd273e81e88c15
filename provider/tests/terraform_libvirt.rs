//! Real Terraform driving the real `terraform-provider-hsw` binary against libvirt's test driver
//! (`uri = "test:///default"`: in-process, no daemon, no real network or VM) with real files (qemu-img overlays,
//! genisoimage seeds) in a temporary pool directory.
//!
//! The test driver keeps its objects only inside the process that opened it, and Terraform starts a new provider
//! process per command. So the provider is started once with `--debug` and every Terraform command attaches to it
//! with `TF_REATTACH_PROVIDERS`: one process, one connection, for the whole scenario.
//!
//! Runs against every Terraform found (as `terraform.rs`: `HSW_TERRAFORM` or `terraform` on `PATH`, and
//! `HSW_TERRAFORM_1_0` or `target/tf103`); a missing Terraform or tool is skipped with a message unless
//! `HSW_REQUIRE_TERRAFORM=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/terraforms.rs"]
mod terraforms;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real provider in debug mode; returns it and its `TF_REATTACH_PROVIDERS` value.
fn start_provider() -> (Provider, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_terraform-provider-hsw"))
        .arg("--debug")
        .env("TF_LOG_PROVIDER", "off")
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reattach = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take(20)
        .find_map(|l| {
            l.trim()
                .strip_prefix("TF_REATTACH_PROVIDERS='")
                .map(|r| r.trim_end_matches('\'').to_owned())
        })
        .expect("the debug provider prints TF_REATTACH_PROVIDERS");
    (Provider(child), reattach)
}

struct Work {
    tf: PathBuf,
    dir: PathBuf,
    reattach: String,
}

impl Work {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(&self.tf)
            .args(args)
            .current_dir(&self.dir)
            .env("TF_REATTACH_PROVIDERS", &self.reattach)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", self.dir.join("cli.tfrc"))
            .env_remove("TF_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn expect(&self, args: &[&str], code: i32) -> String {
        let (c, out, err) = self.run(args);
        assert_eq!(
            c,
            code,
            "terraform {} exited {c}\n--- stdout\n{out}\n--- stderr\n{err}",
            args.join(" ")
        );
        out
    }
}

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
    let plat = root
        .path()
        .join("mirror/registry.terraform.io/hyperscaler/hsw/0.1.0/linux_amd64");
    std::fs::create_dir_all(&plat).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_terraform-provider-hsw"),
        plat.join("terraform-provider-hsw"),
    )
    .unwrap();
    std::fs::write(
        dir.join("cli.tfrc"),
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"hyperscaler/hsw\"]\n  }}\n}}\n",
            root.path().join("mirror").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("main.tf"), config(&pool, 256)).unwrap();
    let (_provider, reattach) = start_provider();
    let w = Work {
        tf: tf.to_owned(),
        dir,
        reattach,
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
    let (code, out, err) = w.run(&["plan", "-no-color", "-input=false", "-detailed-exitcode"]);
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
    let (code, out, err) = w.run(&["plan", "-no-color", "-input=false"]);
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
    let required = std::env::var("HSW_REQUIRE_TERRAFORM").is_ok_and(|v| v == "1");
    if !have("qemu-img") || !(have("genisoimage") || have("cloud-localds")) {
        assert!(
            !required,
            "qemu-img and genisoimage are required (HSW_REQUIRE_TERRAFORM=1)"
        );
        println!("SKIPPED: qemu-img and genisoimage (or cloud-localds) are needed");
        return;
    }
    let tfs = terraforms::all();
    if tfs.is_empty() {
        assert!(!required, "no Terraform found (HSW_REQUIRE_TERRAFORM=1)");
        println!("SKIPPED: no Terraform found (see provider/tests/terraform.rs)");
        return;
    }
    for tf in tfs {
        println!("--- {}", tf.display());
        scenario(&tf);
    }
}
