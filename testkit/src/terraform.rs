//! Real Terraform in tests, offline:
//!
//! - which Terraform to test against ([`candidates`], [`binaries`]): `HSW_TERRAFORM` or `terraform` on `PATH`
//!   (the newest available), and `HSW_TERRAFORM_1_0` or Terraform 1.0.3 at `/opt/hsw/tools/terraform-1.0.3`
//!   (`scripts/install-tools.sh`, root-owned and hash-checked); a missing one is skipped unless
//!   `HSW_REQUIRE_TERRAFORM=1`; and, for the tests of the user's path ([`with_opentofu`]), OpenTofu: `HSW_TOFU`,
//!   else 1.9.4 at `/opt/hsw/tools/tofu-1.9.4` (`scripts/install-tools.sh`), else `tofu` on `PATH` (skipped
//!   unless `HSW_REQUIRE_TOFU=1`);
//! - the provider to install ([`provider_binary`] for tests outside the provider crate) through a filesystem
//!   mirror named by a private CLI configuration ([`mirror`]): no registry is contacted;
//! - [`Terraform::command`]: Terraform with that configuration, checkpoint calls off, no input, and the
//!   inherited `TF_*` logging/plugin/reattach variables and `HSW_*` removed;
//! - [`DebugProvider`]: a provider started with `--debug`, whose `TF_REATTACH_PROVIDERS` value every command can
//!   attach to (one provider process for a whole scenario).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The provider's registry address, as the modules and the mirror name it.
pub const PROVIDER_ADDRESS: &str = "registry.terraform.io/hyperscaler/hsw";
/// The version the mirror serves it as.
pub const PROVIDER_VERSION: &str = "0.1.0";

/// Inherited variables that would change what Terraform does or prints.
const SCRUBBED: [&str; 8] = [
    "TF_LOG",
    "TF_LOG_PROVIDER",
    "TF_LOG_CORE",
    "TF_DATA_DIR",
    "TF_PLUGIN_CACHE_DIR",
    "TF_WORKSPACE",
    "TF_REATTACH_PROVIDERS",
    "TF_PLUGIN_MAGIC_COOKIE",
];

/// `HSW_TERRAFORM`, else `terraform` on `PATH`.
pub fn on_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HSW_TERRAFORM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    crate::require::on_path("terraform")
}

/// Where `scripts/install-tools.sh` installs Terraform 1.0.3 (root-owned, checked against its sha256).
pub const TF_1_0_PATH: &str = "/opt/hsw/tools/terraform-1.0.3/terraform";

/// `HSW_TERRAFORM_1_0`, else Terraform 1.0.3 from [`TF_1_0_PATH`].
pub fn v1_0() -> Option<PathBuf> {
    let p = std::env::var_os("HSW_TERRAFORM_1_0")
        .map_or_else(|| PathBuf::from(TF_1_0_PATH), PathBuf::from);
    Some(p).filter(|p| p.is_file())
}

/// Every Terraform to test against, labelled, found or not.
pub fn candidates() -> [(&'static str, Option<PathBuf>); 2] {
    [("Terraform on PATH", on_path()), ("Terraform 1.0", v1_0())]
}

/// Why a candidate is missing, for [`crate::require`].
pub fn not_found(label: &str) -> String {
    format!("{label} not found (set HSW_TERRAFORM / HSW_TERRAFORM_1_0, or run scripts/install-tools.sh)")
}

/// Where `scripts/install-tools.sh` builds OpenTofu 1.9.4 (root-owned).
pub const TOFU_PATH: &str = "/opt/hsw/tools/tofu-1.9.4/tofu";

/// `HSW_TOFU`, else OpenTofu from [`TOFU_PATH`], else `tofu` on `PATH`.
pub fn opentofu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HSW_TOFU") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    Some(PathBuf::from(TOFU_PATH))
        .filter(|p| p.is_file())
        .or_else(|| crate::require::on_path("tofu"))
}

/// [`binaries`], then OpenTofu (labelled `OpenTofu`); a missing OpenTofu is skipped, or with
/// `HSW_REQUIRE_TOFU=1` fails the test. For the tests of what a user runs (install, init, plan), which must hold
/// for OpenTofu users alike.
pub fn with_opentofu() -> Vec<(&'static str, PathBuf)> {
    let mut all = binaries();
    match opentofu() {
        Some(t) => all.push(("OpenTofu", t)),
        None => crate::require::skip(
            crate::require::TOFU,
            "OpenTofu not found (set HSW_TOFU, or run scripts/install-tools.sh)",
        ),
    }
    all
}

/// The Terraforms found; each one missing is skipped, or with `HSW_REQUIRE_TERRAFORM=1` fails the test.
pub fn binaries() -> Vec<(&'static str, PathBuf)> {
    candidates()
        .into_iter()
        .filter_map(|(label, bin)| {
            if bin.is_none() {
                crate::require::skip(crate::require::TERRAFORM, &not_found(label));
            }
            bin.map(|b| (label, b))
        })
        .collect()
}

/// The locally built `terraform-provider-hsw`, for tests outside its crate: `HSW_PROVIDER_BIN`, else
/// `$CARGO_TARGET_DIR` or `target/`, debug then release. Fails the test when it is not built.
pub fn provider_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HSW_PROVIDER_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::repo().join("target"), PathBuf::from);
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("terraform-provider-hsw"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("terraform-provider-hsw is not built: run `cargo build -p terraform-provider-hsw` (or set HSW_PROVIDER_BIN)")
        })
}

/// Installs `provider` (linked) as hsw [`PROVIDER_VERSION`] in a filesystem mirror under `root`, and writes
/// `root/cli.tfrc`, a CLI configuration whose only provider source is that mirror; returns its path.
pub fn mirror(root: &Path, provider: &Path) -> Result<PathBuf, String> {
    let mirror = root.join("mirror");
    let plat = mirror
        .join(PROVIDER_ADDRESS)
        .join(PROVIDER_VERSION)
        .join("linux_amd64");
    std::fs::create_dir_all(&plat).map_err(|e| format!("cannot create {}: {e}", plat.display()))?;
    let provider = provider.canonicalize().map_err(|e| {
        format!(
            "the provider binary {} cannot be found: {e}",
            provider.display()
        )
    })?;
    std::os::unix::fs::symlink(&provider, plat.join("terraform-provider-hsw"))
        .map_err(|e| format!("cannot link the provider into {}: {e}", plat.display()))?;
    let cli_config = root.join("cli.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"{PROVIDER_ADDRESS}\"]\n  }}\n}}\n",
            mirror.display()
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", cli_config.display()))?;
    Ok(cli_config)
}

/// A Terraform binary with its private CLI configuration (from [`mirror`]).
#[derive(Debug, Clone)]
pub struct Terraform {
    /// The binary.
    pub bin: PathBuf,
    /// The CLI configuration (`TF_CLI_CONFIG_FILE`).
    pub cli_config: PathBuf,
    /// Variables set on every command, after the scrubbing.
    pub env: Vec<(String, String)>,
}

/// What one Terraform command did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    /// The exit code (-1 when killed by a signal), stdout and stderr.
    pub fn parts(self) -> (i32, String, String) {
        (self.code.unwrap_or(-1), self.stdout, self.stderr)
    }
}

/// A Terraform working directory: every command runs there, and a failure to run fails the test.
#[derive(Debug, Clone)]
pub struct Workdir {
    /// The Terraform.
    pub tf: Terraform,
    /// The directory.
    pub dir: PathBuf,
}

impl Workdir {
    /// `terraform ARGS`, whatever its exit code.
    pub fn run(&self, args: &[&str]) -> Run {
        self.tf
            .run(&self.dir, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `terraform ARGS`, which must exit with `code`; its stdout.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        self.tf
            .expect(&self.dir, args, code)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Terraform {
    /// `bin` with the CLI configuration `cli_config`.
    pub fn new(bin: impl Into<PathBuf>, cli_config: impl Into<PathBuf>) -> Terraform {
        Terraform {
            bin: bin.into(),
            cli_config: cli_config.into(),
            env: Vec::new(),
        }
    }

    /// Sets `key` on every command.
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Terraform {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `terraform ARGS` in `dir`, offline, with the environment scrubbed; add to it and run it.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).current_dir(dir).stdin(Stdio::null());
        crate::cli::scrub_hsw(&mut c);
        for v in SCRUBBED {
            c.env_remove(v);
        }
        c.env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `c` (from [`Terraform::command`]) to the end.
    pub fn output(&self, mut c: Command) -> Result<Run, String> {
        let o = c
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        Ok(Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }

    /// `terraform ARGS` in `dir`, whatever its exit code.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Result<Run, String> {
        self.output(self.command(dir, args))
    }

    /// `terraform ARGS` in `dir`, which must exit with `code`; its stdout, or the whole story as the error.
    pub fn expect(&self, dir: &Path, args: &[&str], code: i32) -> Result<String, String> {
        let r = self.run(dir, args)?;
        if r.code == Some(code) {
            Ok(r.stdout)
        } else {
            Err(format!(
                "{} {} in {} exited {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
                self.bin.display(),
                args.join(" "),
                dir.display(),
                r.code,
                r.stdout,
                r.stderr
            ))
        }
    }

    /// The first line of `terraform version`.
    pub fn version(&self) -> String {
        version(&self.bin)
    }
}

/// The first line of `BIN version` ("unknown version" when it cannot tell).
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown version".into())
}

/// A provider serving in `--debug` mode, killed when dropped.
#[derive(Debug)]
pub struct DebugProvider {
    child: Child,
    /// The value of `TF_REATTACH_PROVIDERS` that attaches Terraform to it.
    pub reattach: String,
}

impl DebugProvider {
    /// Starts `c` (a provider command; `--debug` is added, its logs are turned off) and reads the
    /// `TF_REATTACH_PROVIDERS` line it prints.
    pub fn start(mut c: Command) -> Result<DebugProvider, String> {
        let mut child = c
            .arg("--debug")
            .env("TF_LOG_PROVIDER", "off")
            .env_remove("TF_PLUGIN_MAGIC_COOKIE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the debug provider: {e}"))?;
        let reattach = child.stdout.take().and_then(|stdout| {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .take(20)
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("TF_REATTACH_PROVIDERS='")
                        .map(|r| r.trim_end_matches('\'').to_owned())
                })
        });
        let mut provider = DebugProvider {
            child,
            reattach: String::new(),
        };
        provider.reattach =
            reattach.ok_or("the debug provider printed no TF_REATTACH_PROVIDERS line")?;
        Ok(provider)
    }

    /// Whether it is still serving.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for DebugProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_mirror_links_the_provider_and_the_configuration_names_only_the_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let provider = dir.path().join("provider-bin");
        std::fs::write(&provider, "x").unwrap();
        let cli = mirror(dir.path(), &provider).unwrap();
        let text = std::fs::read_to_string(&cli).unwrap();
        assert!(
            text.contains("filesystem_mirror") && text.contains(PROVIDER_ADDRESS),
            "{text}"
        );
        let installed = dir.path().join(
            "mirror/registry.terraform.io/hyperscaler/hsw/0.1.0/linux_amd64/terraform-provider-hsw",
        );
        assert_eq!(std::fs::read_to_string(installed).unwrap(), "x");
    }

    #[test]
    fn commands_are_offline_and_scrubbed() {
        let tf = Terraform::new("terraform", "/x/cli.tfrc").env("TF_REATTACH_PROVIDERS", "{}");
        let c = tf.command(Path::new("/"), &["plan"]);
        let envs: Vec<(String, Option<String>)> = c
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        for want in [
            ("TF_CLI_CONFIG_FILE", Some("/x/cli.tfrc")),
            ("CHECKPOINT_DISABLE", Some("1")),
            ("TF_INPUT", Some("0")),
            ("TF_LOG", None),
            ("TF_REATTACH_PROVIDERS", Some("{}")),
        ] {
            assert!(
                envs.contains(&(want.0.to_owned(), want.1.map(str::to_owned))),
                "{want:?} in {envs:?}"
            );
        }
    }
}
