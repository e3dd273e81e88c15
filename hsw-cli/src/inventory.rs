//! `hsw-cli inventory`: the Ansible inventory of both clusters, from `terraform output -json` (run in the
//! Terraform directory, or read from a file) and `cluster.yaml`.
//!
//! The binary is also a dynamic inventory script: `ansible -i hsw-cli ...` runs `hsw-cli --list` (and,
//! without `_meta`, `hsw-cli --host NAME`). Then the config, the Terraform directory, a saved Terraform output
//! and the state directory come from `HSW_CONFIG`, `HSW_TERRAFORM_DIR` (default `terraform`),
//! `HSW_TF_OUTPUT` and `HSW_STATE_DIR`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, ValueEnum};
use hsw_core::ansible::hosts::{self, Deployment};
use hsw_core::ansible::{Inventory, StateLayout};
use hsw_core::config::ClusterConfig;

use crate::error::Error;
use crate::exit;
use crate::runner::{Cmd, Runner, SystemRunner};
use crate::session::Session;

/// Where the hosts come from, and where the state lives (shared by `inventory` and `ansible`).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// The cluster definition (the embedded default when absent).
    #[arg(long, env = "HSW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read `terraform output -json` from FILE instead of running Terraform.
    #[arg(long, value_name = "FILE", env = "HSW_TF_OUTPUT")]
    pub tf_output: Option<PathBuf>,
    /// The Terraform root module whose outputs list the VMs (`terraform output -json` runs there; the binary
    /// is `HSW_TERRAFORM` or `terraform`).
    #[arg(
        long,
        value_name = "DIR",
        env = "HSW_TERRAFORM_DIR",
        default_value = "terraform"
    )]
    pub terraform_dir: PathBuf,
    /// Use the hosts cluster.yaml plans (names, addresses, GPU units) instead of Terraform's outputs: for a
    /// look before `terraform apply`.
    #[arg(long)]
    pub planned: bool,
    /// The state directory (SSH keys, Munge keys, generated files); default `.hsw` in the Terraform
    /// directory's parent.
    #[arg(long, value_name = "DIR", env = "HSW_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Inventory file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InventoryFormat {
    /// Ansible's YAML inventory.
    Yaml,
    /// Ansible's INI inventory.
    Ini,
    /// The YAML inventory's structure as JSON (Ansible's YAML plugin reads `.json` files).
    Json,
}

/// `hsw-cli inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format of the inventory file.
    #[arg(long, value_enum, default_value_t = InventoryFormat::Yaml)]
    pub format: InventoryFormat,
    /// Print Ansible's dynamic-inventory JSON (groups and `_meta.hostvars`).
    #[arg(long)]
    pub list: bool,
    /// Print one host's variables as JSON (`{}` for a host the inventory does not have).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// The arguments of the binary run as an inventory script (`hsw-cli --list`, `hsw-cli --host NAME`).
#[derive(Debug, Parser)]
#[command(name = "hsw-cli")]
struct ScriptCli {
    #[command(flatten)]
    args: InventoryArgs,
}

/// When the process was started as an Ansible inventory script (its first argument is `--list` or
/// `--host`), runs the inventory and returns the exit code; otherwise `None`.
pub fn run_as_script() -> Option<u8> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let first = argv.get(1)?.to_str()?;
    if first != "--list" && first != "--host" && !first.starts_with("--host=") {
        return None;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = match ScriptCli::try_parse_from(argv) {
        Ok(cli) => run(&cli.args, &mut out),
        Err(e) => {
            let _ = e.print();
            exit::CANNOT_RUN
        }
    };
    let _ = out.flush();
    Some(code)
}

/// Everything a hand-off command needs.
#[derive(Debug)]
pub struct Loaded {
    /// The name the config is shown under (its file name, or the embedded default's).
    pub config_name: String,
    /// The valid config.
    pub config: ClusterConfig,
    /// The hosts, checked against the config.
    pub deployment: Deployment,
    /// Where the hosts came from, in words.
    pub hosts_from: String,
    /// The state directory (absolute).
    pub state: StateLayout,
}

/// Where the hosts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hosts {
    /// The hosts cluster.yaml plans (before `terraform apply`).
    Planned,
    /// A saved `terraform output -json`.
    Saved(PathBuf),
    /// `terraform output -json` run in this Terraform directory.
    Terraform(PathBuf),
}

impl SourceArgs {
    /// Where these arguments take the hosts from.
    pub fn hosts(&self) -> Hosts {
        if self.planned {
            Hosts::Planned
        } else if let Some(file) = &self.tf_output {
            Hosts::Saved(file.clone())
        } else {
            Hosts::Terraform(self.terraform_dir.clone())
        }
    }
}

/// The state directory for these arguments (absolute).
pub fn state_layout(source: &SourceArgs) -> StateLayout {
    let layout = match &source.state_dir {
        Some(d) => StateLayout::new(d),
        None => StateLayout::for_terraform_dir(&source.terraform_dir),
    };
    let root = layout.root();
    StateLayout::new(std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()))
}

/// The session of `--config`, then [`load`] with the hosts and state these arguments name.
pub fn load_args(source: &SourceArgs) -> Result<Loaded, Error> {
    let session = Session::load(source.config.as_deref())?;
    load(
        &session,
        &source.hosts(),
        state_layout(source),
        &SystemRunner,
    )
}

/// Gets the hosts of a session's config (Terraform's output, a saved output, or the plan), checked against it.
/// `runner` runs `terraform output -json` for [`Hosts::Terraform`].
pub fn load(
    session: &Session,
    hosts: &Hosts,
    state: StateLayout,
    runner: &dyn Runner,
) -> Result<Loaded, Error> {
    let cfg = &session.config;
    let plan = session.plan()?;
    let (deployment, hosts_from) = match hosts {
        Hosts::Planned => (
            hosts::planned_hosts(cfg, plan),
            "the hosts cluster.yaml plans".to_owned(),
        ),
        Hosts::Saved(file) => {
            let json = std::fs::read_to_string(file).map_err(|e| {
                Error::cannot_run(format!(
                    "cannot read the Terraform output {}: {e}",
                    file.display()
                ))
            })?;
            (
                resolve(session, &json)?,
                format!("the Terraform output in {}", file_name(file)),
            )
        }
        Hosts::Terraform(dir) => (
            resolve(session, &terraform_output(runner, dir)?)?,
            "the Terraform outputs".to_owned(),
        ),
    };
    Ok(Loaded {
        config_name: session.file_name(),
        config: cfg.clone(),
        deployment,
        hosts_from,
        state,
    })
}

/// The hosts of a `terraform output -json`, checked against the session's config and plan.
fn resolve(session: &Session, json: &str) -> Result<Deployment, Error> {
    let parsed =
        hosts::parse_terraform_output_str(json).map_err(|e| Error::invalid(e.to_string()))?;
    hosts::resolve(&session.config, session.plan()?, parsed)
        .map_err(|e| Error::invalid(e.to_string()))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Runs `terraform output -json` in `dir` (an argument vector; the binary is `HSW_TERRAFORM` or
/// `terraform`) and returns its standard output.
pub fn terraform_output(runner: &dyn Runner, dir: &Path) -> Result<String, Error> {
    if !dir.is_dir() {
        return Err(Error::cannot_run(format!(
            "the Terraform directory {} does not exist; run `hsw-cli generate` and `terraform apply` first, \
             or name it with --terraform-dir (or a saved output with --tf-output)",
            dir.display()
        )));
    }
    let bin = std::env::var_os("HSW_TERRAFORM").unwrap_or_else(|| "terraform".into());
    let cmd = Cmd::new(&bin)
        .args(["output", "-json"])
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1");
    let output = runner.capture(&cmd).map_err(|e| {
        Error::cannot_run(format!(
            "cannot run `{} output -json` ({e}); install Terraform, set HSW_TERRAFORM, or pass a saved \
             output with --tf-output",
            PathBuf::from(&bin).display()
        ))
    })?;
    if !output.status.success() {
        return Err(Error::cannot_run(format!(
            "`terraform output -json` failed in {} ({}): {}",
            dir.display(),
            output.status,
            output.stderr.trim()
        )));
    }
    Ok(output.stdout)
}

/// The comment lines on top of an inventory file.
pub fn header(loaded: &Loaded) -> Vec<String> {
    vec![
        format!(
            "Ansible inventory of `{}`, generated by hsw-cli from {} and {}.",
            loaded.config.metadata.name, loaded.config_name, loaded.hosts_from
        ),
        "Do not edit: `hsw-cli inventory` and `hsw-cli ansible` write it again.".to_owned(),
    ]
}

/// Runs `inventory`; returns the exit code.
pub fn run(args: &InventoryArgs, out: &mut dyn Write) -> u8 {
    let loaded = match load_args(&args.source) {
        Ok(l) => l,
        Err(e) => return e.report(),
    };
    let inventory = Inventory::build(&loaded.config, &loaded.deployment, &loaded.state);
    let text = if let Some(host) = &args.host {
        json_text(&inventory.host_json(host))
    } else if args.list {
        json_text(&inventory.to_list_json())
    } else {
        match args.format {
            InventoryFormat::Yaml => inventory.to_yaml(&header(&loaded)),
            InventoryFormat::Ini => inventory.to_ini(&header(&loaded)),
            InventoryFormat::Json => json_text(&inventory.to_static_json()),
        }
    };
    if out.write_all(text.as_bytes()).is_err() {
        return exit::CANNOT_RUN;
    }
    exit::OK
}

fn json_text(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;

    #[test]
    fn terraform_output_runs_in_the_terraform_directory() {
        let dir = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new();
        runner.on(&["output", "-json"], 0, "{}");
        assert_eq!(terraform_output(&runner, dir.path()).unwrap(), "{}");
        let c = &runner.calls()[0];
        assert_eq!(c.argv()[1..], ["output", "-json"]);
        assert_eq!(c.dir.as_deref(), Some(dir.path()));
        assert_eq!(
            c.env_value("TF_IN_AUTOMATION"),
            Some(std::ffi::OsStr::new("1"))
        );
        let failing = FakeRunner::new();
        failing.on_full(&["output"], Some(1), "", "Error: no state\n", None);
        let e = terraform_output(&failing, dir.path()).unwrap_err();
        assert_eq!(e.code(), exit::CANNOT_RUN);
        assert_eq!(
            e.to_string(),
            format!(
                "`terraform output -json` failed in {} (exit status: 1): Error: no state",
                dir.path().display()
            )
        );
        let e = terraform_output(&runner, &dir.path().join("missing")).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not exist; run `hsw-cli generate`"),
            "{e}"
        );
        assert_eq!(
            runner.calls().len(),
            1,
            "nothing runs for a missing directory"
        );
    }

    #[test]
    fn planned_hosts_need_no_terraform() {
        let session = crate::session::testing::default_session();
        let runner = FakeRunner::new();
        let loaded = load(&session, &Hosts::Planned, StateLayout::new("/s"), &runner).unwrap();
        assert!(runner.calls().is_empty());
        assert_eq!(loaded.hosts_from, "the hosts cluster.yaml plans");
        assert_eq!(loaded.config_name, session.name);
        assert!(!loaded.deployment.hosts.is_empty());
    }
}
