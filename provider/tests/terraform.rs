//! Real Terraform driving the test provider of `support/`: init, validate, plan, apply, plan-is-empty, update in
//! place, replace, import, drift, logs without secrets, destroy, and attaching to a `--debug` provider. Run
//! against every Terraform found:
//!
//! - `HSW_TERRAFORM` or `terraform` on `PATH` (1.11.4 on the development machines);
//! - `HSW_TERRAFORM_1_0`, or Terraform 1.0.3 as `scripts/install-tools.sh main` installs it (pinned by
//!   sha256, in `/opt/hsw/tools/terraform-1.0.3`; `testkit::terraform::TF_1_0_PATH`).
//!
//! A missing Terraform is skipped with a message, unless `HSW_REQUIRE_TERRAFORM=1` (CI), which makes it a
//! failure. Everything runs offline: providers come from a filesystem mirror, checkpoint calls are disabled.
//!
//! This test has no libtest harness (`harness = false`): the test binary is also the provider. When Terraform
//! starts it (with its magic cookie in the environment), or with `HSW_TEST_PROVIDER_SERVE=1`, it serves the test
//! provider instead of running the tests. So the real `terraform-provider-hsw` never contains test resources.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use terraform_provider_hsw::protocol::{serve, ServeOptions};
use testkit::terraform::{self, DebugProvider, Run, Terraform, PROVIDER_ADDRESS as ADDRESS};

fn main() -> ExitCode {
    if std::env::var_os("TF_PLUGIN_MAGIC_COOKIE").is_some()
        || std::env::var_os("HSW_TEST_PROVIDER_SERVE").is_some()
    {
        return serve(
            support::TestProvider::default(),
            &ServeOptions::new(ADDRESS, "0.1.0"),
        );
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("terraform_end_to_end: test");
        return ExitCode::SUCCESS;
    }
    let mut failed = false;
    for (label, found) in terraform::candidates() {
        let Some(tf) = found else {
            failed |= testkit::require::missing(
                testkit::require::TERRAFORM,
                &terraform::not_found(label),
            );
            continue;
        };
        let version = terraform::version(&tf);
        println!("--- {label}: {} ({version})", tf.display());
        match scenario(&tf) {
            Ok(()) => println!("ok {version}"),
            Err(e) => {
                println!("FAILED {version}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A Terraform working directory with its own CLI configuration and provider mirror.
struct Work {
    tf: Terraform,
    _root: tempfile::TempDir,
    dir: PathBuf,
    state_dir: PathBuf,
}

impl Work {
    fn new(tf: &Path) -> Result<Work, String> {
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        // This test binary is the provider (see `main`).
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let cli_config = terraform::mirror(root.path(), &exe)?;
        let dir = root.path().join("tf");
        let state_dir = root.path().join("state");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&state_dir).map_err(|e| e.to_string())?;
        Ok(Work {
            tf: Terraform::new(tf, cli_config),
            dir,
            state_dir,
            _root: root,
        })
    }

    fn write_config(&self, name: &str, content: &str) -> Result<(), String> {
        let tf = format!(
            r#"
terraform {{
  required_providers {{
    hsw = {{ source = "hyperscaler/hsw", version = "0.1.0" }}
  }}
}}

provider "hsw" {{
  state_dir = "{state}"
}}

resource "hsw_test_file" "a" {{
  name    = "{name}"
  content = "{content}"
  tags    = {{ env = "dev", team = "infra" }}
  labels  = {{}}
  secret  = "s3cr3t-value"
  rule {{
    port = 22
  }}
  rule {{
    port = 80
    note = "web"
  }}
}}

data "hsw_test_file" "a" {{
  id = hsw_test_file.a.id
}}

output "size" {{
  value = data.hsw_test_file.a.size
}}

output "env" {{
  value = data.hsw_test_file.a.tags["env"]
}}
"#,
            state = self.state_dir.display()
        );
        std::fs::write(self.dir.join("main.tf"), tf).map_err(|e| e.to_string())
    }

    fn command(&self, args: &[&str]) -> Command {
        self.tf.command(&self.dir, args)
    }

    fn run_with(&self, mut c: Command) -> Result<Run, String> {
        let out_path = self.dir.join(".out");
        let err_path = self.dir.join(".err");
        let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
        let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
        let mut child = c
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run Terraform: {e}"))?;
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if start.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                let _ = child.wait();
                return Err("Terraform took more than 5 minutes".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(Run {
            code: status.code(),
            stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
        })
    }

    fn run(&self, args: &[&str]) -> Result<Run, String> {
        self.run_with(self.command(args))
    }

    /// Runs and requires exit code `want`.
    fn expect(&self, args: &[&str], want: i32) -> Result<Run, String> {
        let r = self.run(args)?;
        if r.code != Some(want) {
            return Err(format!(
                "terraform {} exited {:?}, expected {want}\n--- stdout\n{}\n--- stderr\n{}",
                args.join(" "),
                r.code,
                r.stdout,
                r.stderr
            ));
        }
        Ok(r)
    }

    fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.state_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".json")
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn check(cond: bool, what: &str, r: &Run) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!(
            "{what}\n--- stdout\n{}\n--- stderr\n{}",
            r.stdout, r.stderr
        ))
    }
}

fn scenario(tf: &Path) -> Result<(), String> {
    let w = Work::new(tf)?;
    w.write_config("alpha", "hello")?;
    w.expect(&["init", "-no-color", "-input=false"], 0)?;
    step("init");
    w.expect(&["validate", "-no-color"], 0)?;
    step("validate");

    let r = w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        2,
    )?;
    check(
        r.stdout.contains("hsw_test_file.a will be created"),
        "plan should create",
        &r,
    )?;
    check(
        r.stdout.contains("(sensitive value)") && !r.stdout.contains("s3cr3t"),
        "the secret should be hidden",
        &r,
    )?;
    check(
        r.stdout.contains("(known after apply)"),
        "computed values should be unknown",
        &r,
    )?;
    step("plan (create)");

    let r = w.expect(&["apply", "-no-color", "-input=false", "-auto-approve"], 0)?;
    check(w.objects().len() == 1, "apply should store one object", &r)?;
    let r = w.expect(&["output", "-raw", "size"], 0)?;
    check(r.stdout.trim() == "5", "size output should be 5", &r)?;
    let r = w.expect(&["output", "-raw", "env"], 0)?;
    check(
        r.stdout.trim() == "dev",
        "the data source should read the tags",
        &r,
    )?;
    step("apply (create)");

    w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        0,
    )?;
    step("plan is empty");

    w.write_config("alpha", "hello world")?;
    let r = w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        2,
    )?;
    check(
        r.stdout.contains("updated in-place"),
        "a content change should update in place",
        &r,
    )?;
    w.expect(&["apply", "-no-color", "-input=false", "-auto-approve"], 0)?;
    let r = w.expect(&["output", "-raw", "size"], 0)?;
    check(
        r.stdout.trim() == "11",
        "size should follow the content",
        &r,
    )?;
    w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        0,
    )?;
    step("update in place");

    w.write_config("beta", "hello world")?;
    let r = w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        2,
    )?;
    check(
        r.stdout.contains("forces replacement") || r.stdout.contains("must be replaced"),
        "a name change should replace",
        &r,
    )?;
    let r = w.expect(&["apply", "-no-color", "-input=false", "-auto-approve"], 0)?;
    check(
        w.objects().len() == 1 && w.objects()[0].starts_with("beta-"),
        "replace should leave one new object",
        &r,
    )?;
    w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        0,
    )?;
    step("replace");

    let id = w.objects().remove(0);
    w.expect(&["state", "rm", "-no-color", "hsw_test_file.a"], 0)?;
    let r = w.expect(
        &[
            "import",
            "-no-color",
            "-input=false",
            "hsw_test_file.a",
            &id,
        ],
        0,
    )?;
    check(
        r.stdout.contains("Import successful"),
        "import should succeed",
        &r,
    )?;
    let r = w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        0,
    )?;
    check(
        !r.stdout.contains("will be"),
        "plan after import should be empty",
        &r,
    )?;
    let r = w.run(&[
        "import",
        "-no-color",
        "-input=false",
        "hsw_test_file.b",
        "nope",
    ])?;
    check(
        r.code == Some(1),
        "importing a missing object should fail",
        &r,
    )?;
    step("import");

    std::fs::remove_file(w.state_dir.join(format!("{id}.json"))).map_err(|e| e.to_string())?;
    let r = w.expect(
        &["plan", "-no-color", "-input=false", "-detailed-exitcode"],
        2,
    )?;
    check(
        r.stdout.contains("hsw_test_file.a will be created"),
        "an object deleted outside Terraform should be recreated",
        &r,
    )?;
    step("drift");

    let mut c = w.command(&["apply", "-no-color", "-input=false", "-auto-approve"]);
    c.env("TF_LOG_PROVIDER", "DEBUG");
    let r = w.run_with(c)?;
    check(
        r.code == Some(0),
        "apply with provider logs should succeed",
        &r,
    )?;
    check(
        r.stderr.contains("provider.hsw") && r.stderr.contains("ApplyResourceChange"),
        "provider logs should reach Terraform",
        &r,
    )?;
    check(
        !r.stderr.contains("s3cr3t"),
        "the secret must not be logged",
        &r,
    )?;
    step("provider logs, no secrets");

    reattach(&w)?;
    step("--debug reattach");

    let r = w.expect(
        &["destroy", "-no-color", "-input=false", "-auto-approve"],
        0,
    )?;
    check(
        w.objects().is_empty(),
        "destroy should delete the object",
        &r,
    )?;
    step("destroy");
    Ok(())
}

fn step(name: &str) {
    println!("  {name}: ok");
}

/// Starts this binary as the test provider with `--debug` and runs `terraform plan` attached to it.
fn reattach(w: &Work) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut serve = Command::new(exe);
    serve.env("HSW_TEST_PROVIDER_SERVE", "1");
    let mut provider = DebugProvider::start(serve)?;
    let mut c = w.command(&["plan", "-no-color", "-input=false", "-detailed-exitcode"]);
    c.env("TF_REATTACH_PROVIDERS", &provider.reattach);
    let r = w.run_with(c)?;
    check(
        r.code == Some(0),
        "plan through the debug provider should be empty",
        &r,
    )?;
    // The provider keeps serving after Terraform is done.
    check(
        provider.is_running(),
        "the debug provider should still run",
        &r,
    )
}
