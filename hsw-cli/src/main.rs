//! `hsw-cli`: the operator's command line. Commands write to an injected writer and return
//! an exit code; only `main` touches the process's stdout and exit status.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

mod ansible_cmd;
mod backup;
mod bundle;
mod completions;
mod error;
mod generate;
mod gpu_cmds;
mod graph;
mod host_cmds;
mod image;
mod inventory;
mod provider_cmd;
mod provider_mirror;
mod runner;
mod session;
mod status;
mod up;
mod validate;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// Machine-readable JSON.
    Json,
}

/// hsw: a hyperscaler on a workstation (Slurm and Kubernetes side by side, sharing GPUs).
#[derive(Debug, Parser)]
#[command(name = "hsw-cli", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a cluster.yaml (the embedded default when no FILE is given).
    Validate {
        /// The cluster definition to validate.
        file: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check that this host can run the clusters: virtualization, IOMMU, KVM, drivers, packages, resources.
    Check(host_cmds::CheckArgs),
    /// Turn failed checks into host changes (prints the plan; changes nothing without --apply).
    Prepare(host_cmds::PrepareArgs),
    /// GPU planning.
    #[command(subcommand)]
    Gpu(gpu_cmds::GpuCommand),
    /// Print the JSON Schema of cluster.yaml.
    Schema,
    /// Write the Terraform root module of a cluster definition (default directory `terraform/`).
    Generate(generate::GenerateArgs),
    /// Print the Ansible inventory of both clusters (from Terraform's outputs and cluster.yaml).
    Inventory(inventory::InventoryArgs),
    /// Configure the clusters' VMs with Ansible.
    #[command(subcommand)]
    Ansible(ansible_cmd::AnsibleCommand),
    /// Build the guest image (cached by content).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// The offline Kubernetes bundle: binaries and OCI images built from source modules (cached by content).
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Bring the clusters up: checks, image, sandbox, Terraform, inventory, playbook, and a Slurm test.
    Up(up::UpArgs),
    /// Draw the deployment: host, networks, VMs and each GPU's memory slices (SVG or DOT).
    Graph(graph::GraphArgs),
    /// Print the shell completion script of hsw-cli (bash, zsh or fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: completions::Shell,
    },
    /// Print hsw-cli's man page (roff); with --dir, write one page per command there.
    Man {
        /// Write `hsw-cli.1` and `hsw-cli-<command>.1` pages into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The Terraform provider: install it where Terraform and OpenTofu find it.
    #[command(subcommand)]
    Provider(provider_cmd::ProviderCommand),
    /// Show what runs: each VM's state, address and GPU units, the Slurm nodes, the services; exit 1 when
    /// something cluster.yaml promises is down.
    Status(status::StatusArgs),
    /// Remove everything `up` made: `terraform destroy`, then the sandbox; checks that nothing is left.
    Down(up::DownArgs),
    /// Back up a running deployment (config, keys, state, every VM's disks, application dumps), or verify or
    /// list backups.
    Backup(Box<backup::BackupArgs>),
    /// Bring a deployment back from a backup, in the places it was taken from.
    Restore(Box<backup::RestoreArgs>),
    /// Return the deployment to the snapshot `up` took before its last change that destroyed VMs (a shrink,
    /// a replacement): the deployment there now is removed, then restored from it.
    Rollback(backup::RollbackArgs),
}

/// Exit codes shared by every command.
pub mod exit {
    /// Success (warnings allowed).
    pub const OK: u8 = 0;
    /// The input or the host is not acceptable.
    pub const INVALID: u8 = 1;
    /// The command could not run (missing file, bad usage).
    pub const CANNOT_RUN: u8 = 2;
}

fn main() -> ExitCode {
    if let Some(code) = inventory::run_as_script() {
        return ExitCode::from(code);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::CANNOT_RUN
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = match cli.command {
        Command::Validate { file, format } => validate::run(file.as_deref(), format, &mut out),
        Command::Check(args) => host_cmds::run_check(&args, &mut out),
        Command::Prepare(args) => host_cmds::prepare(&args, &mut out),
        Command::Gpu(cmd) => gpu_cmds::run(&cmd, &mut out),
        Command::Generate(args) => generate::run(&args, &mut out),
        Command::Schema => {
            let _ = out.write_all(hsw_core::config::schema::EMBEDDED.as_bytes());
            exit::OK
        }
        Command::Inventory(args) => inventory::run(&args, &mut out),
        Command::Ansible(cmd) => ansible_cmd::run(&cmd, &mut out),
        Command::Image(cmd) => image::run(&cmd, &mut out),
        Command::Bundle(cmd) => bundle::run(&cmd, &mut out),
        Command::Up(args) => up::up(&args, &mut out),
        Command::Down(args) => up::down(&args, &mut out),
        Command::Backup(args) => backup::run(&args, &mut out),
        Command::Restore(args) => backup::restore(&args, &mut out),
        Command::Rollback(args) => backup::rollback(&args, &mut out),
        Command::Status(args) => status::run(&args, &mut out),
        Command::Completions { shell } => {
            completions::completions(shell, &mut Cli::command(), &mut out);
            exit::OK
        }
        Command::Man { dir } => match completions::man(&Cli::command(), dir.as_deref(), &mut out) {
            Ok(()) => exit::OK,
            Err(e) => e.report(),
        },
        Command::Graph(args) => graph::run(&args, &mut out),
        Command::Provider(cmd) => provider_cmd::run(&cmd, &mut out),
    };
    let _ = out.flush();
    ExitCode::from(code)
}
