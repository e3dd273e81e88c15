//! `hsw-cli up` and `hsw-cli down`: one command from cluster.yaml to a working Slurm cluster (and the
//! Kubernetes cluster's VMs), and one command to remove everything again.
//!
//! `up` runs, in order: the host checks, validation, the GPU plan, the guest images (one per cluster, from
//! its package list in `packer/packages/`, cached), the sandbox
//! (`scripts/sandbox.sh --name NAME start`: a network namespace with a private libvirtd; on by default), the
//! image in the pool directory, the clusters' SSH keys, `generate` (provider URI and pool directory of the
//! sandbox), the simulated GPUs' state, `terraform init` (a filesystem mirror of the locally built provider,
//! a private CLI configuration), `terraform plan` and `apply`, the inventory from `terraform output -json`, the
//! HPC playbook, and a check: every VM answers SSH, `sinfo` shows the compute nodes idle and `srun -N<n>
//! hostname` prints every compute node's name, then the HPC site checks (`verify/hpc.rs`: MPI across nodes, sacct,
//! QoS, a held job across a slurmctld restart; not yet run against guests). With a sandbox, Terraform, Ansible and SSH run inside it
//! (`scripts/sandbox.sh exec`), so no network object and no packet leaves its namespace.
//!
//! A second `up` changes nothing: the plan is empty (nothing is applied) and the playbook reports
//! `changed=0` on every host; `up` says so.
//!
//! Everything of one deployment is in its state directory (default `.hsw/up/<sandbox name>` in the
//! repository, `.hsw/up/host` without a sandbox): `terraform/` (the root module, state), `ssh/`, `munge/`,
//! `ansible/`, `slurm/`, `terraform-output.json`, `logs/`. The committed `terraform/` is not touched.
//!
//! `down` destroys what Terraform made, stops the sandbox and checks that no domain, network, volume or
//! network namespace is left.
//!
//! Each step is a function over the deployment's [`Ctx`] (places, and the [`Runner`] every process goes
//! through) and what the steps before it found ([`Up`]); [`UP_STEPS_TABLE`] lists them in order, one file
//! each: `checks`, `images`, `sandbox` (its URI, pool and log directories come from `scripts/sandbox.sh
//! --name NAME env`), `terraform` (root module, init, plan and apply), `inventory`, `playbooks`, `verify`,
//! then `summary`; `down` is in `down`. libvirt is reached only through `virsh::Virsh`. Their unit tests run
//! them over a fake runner (`runner::fake`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Instant;

use clap::Args;
use hsw_core::ansible::StateLayout;
use hsw_core::config::ClusterConfig;

use crate::error::Error;
use crate::exit;
use crate::generate::ClusterImages;
use crate::image::{self, Image, ImageRole};
use crate::inventory::Loaded;
use crate::runner::{Captured, Cmd, Runner, SystemRunner};
use crate::session::Session;

mod checks;
pub(crate) mod down;
mod images;
mod inventory;
mod playbooks;
pub(crate) mod sandbox;
mod scale;
mod summary;
pub(crate) mod terraform;
pub(crate) mod verify;
pub(crate) mod virsh;

pub use down::down;

/// The default sandbox name of `up` and `down`.
pub const DEFAULT_SANDBOX: &str = "hsw-up";

/// Which deployment: its config, sandbox and state directory (shared by `up`, `down`, `status`, `backup`).
#[derive(Debug, Clone, Args)]
pub struct Place {
    /// The cluster definition (the embedded default when absent).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run libvirtd, Terraform, Ansible and SSH inside a network namespace made by scripts/sandbox.sh (the
    /// default).
    #[arg(long, conflicts_with = "no_sandbox")]
    pub sandbox: bool,
    /// Use the host's libvirt (`host.libvirt_uri`) and network directly.
    #[arg(long)]
    pub no_sandbox: bool,
    /// The sandbox's name (its network namespace).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SANDBOX)]
    pub sandbox_name: String,
    /// The state directory of this deployment: keys, inventory, logs (default `.hsw/up/<sandbox name>` in the
    /// repository, `.hsw/up/host` with --no-sandbox).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Where `up` runs things: the deployment, and its Terraform root (shared by `up`, `down` and `status`).
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The deployment.
    #[command(flatten)]
    pub place: Place,
    /// The Terraform root module (default `<state dir>/terraform`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `hsw-cli up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub target: Target,
    /// The guest image cache (default `/var/cache/hsw/images`, or `HSW_IMAGE_DIR`).
    #[arg(long, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,
    /// The offline Kubernetes bundle for the cloud image: a directory `hsw-cli bundle build` made, here or on
    /// another machine (default: build it, or take it from the cache `/var/cache/hsw/bundles`).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Go on when host checks fail.
    #[arg(long)]
    pub skip_check: bool,
    /// Skip the final check (SSH to every VM, `sinfo`, `srun`).
    #[arg(long)]
    pub no_verify: bool,
    /// Seconds the final checks wait for the compute nodes to be idle, and for Prometheus to see every node
    /// exporter up.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub verify_timeout: u64,
    /// Seconds to wait for HPC compute nodes removed from cluster.yaml to finish their jobs (Slurm drain)
    /// before their VMs are destroyed; `up` stops, destroying nothing, when they are still busy. 0 removes
    /// them without draining.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub drain_timeout: u64,
    /// Apply a plan that replaces VMs (destroys them with their disks and makes them again), e.g. after a new
    /// guest image; without it `up` stops before such a plan and names the VMs and why.
    #[arg(long)]
    pub allow_replace: bool,
    /// Do not snapshot the deployment before a plan that destroys VMs (a smaller compute group, a
    /// replacement). By default `up` first takes a whole backup of the deployment as it was (into
    /// --snapshot-dir, the newest one kept), and `hsw-cli rollback` returns to it.
    #[arg(long)]
    pub no_snapshot: bool,
    /// Where that snapshot goes (default /var/backups/hsw/<sandbox name, or host>/pre-change).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Configure only the HPC cluster (Munge, Slurm): skip the platform playbooks (security, Kubernetes,
    /// MLOps, monitoring) and their checks.
    #[arg(long)]
    pub hpc_only: bool,
    /// The guests reach the internet: run the platform playbooks' downloads too (the tasks tagged `online`:
    /// kubeadm's packages, Helm charts, the GPU Operator, MinIO and MLflow on Kubernetes). Without it they are
    /// skipped and the summary says so.
    #[arg(long)]
    pub online: bool,
}

/// `hsw-cli down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub target: Target,
}

/// The deployment's places and how commands reach it.
#[derive(Debug, Clone)]
pub struct Ctx<'r> {
    /// Runs every process.
    pub runner: &'r dyn Runner,
    /// The repository root.
    pub repo: PathBuf,
    /// The sandbox's name (`None`: the host's libvirt and network).
    pub sandbox: Option<String>,
    /// The deployment's state directory.
    pub state: StateLayout,
    /// The Terraform root module.
    pub tf_dir: PathBuf,
    /// The Terraform binary (`HSW_TERRAFORM`, else `terraform`).
    pub terraform: PathBuf,
    /// A built provider to use (`HSW_PROVIDER_BIN`), instead of the newest in `target/` or one built now.
    pub provider_bin: Option<PathBuf>,
    /// Whether the output is a terminal that takes colour.
    pub color: bool,
}

impl<'r> Ctx<'r> {
    /// The places of `target`, from the environment (`HSW_REPO`, `HSW_TERRAFORM`, `HSW_PROVIDER_BIN`,
    /// `NO_COLOR`).
    pub fn new(target: &Target, runner: &'r dyn Runner) -> Result<Ctx<'r>, Error> {
        let repo = image::repo_root()?;
        let sandbox = if target.place.no_sandbox {
            None
        } else {
            let n = &target.place.sandbox_name;
            let ok = !n.is_empty()
                && n.len() <= 32
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && n.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(Error::cannot_run(format!(
                    "the sandbox name `{n}` is not valid: use letters, digits, `-` and `_` (at most 32, a letter or \
                     digit first)"
                )));
            }
            Some(n.clone())
        };
        let cwd = std::env::current_dir()
            .map_err(|e| Error::cannot_run(format!("cannot read the current directory: {e}")))?;
        let state_root = match &target.place.state_dir {
            Some(d) => cwd.join(d),
            None => repo
                .join(".hsw/up")
                .join(sandbox.as_deref().unwrap_or("host")),
        };
        let tf_dir = match &target.out {
            Some(d) => cwd.join(d),
            None => state_root.join("terraform"),
        };
        for p in [&state_root, &tf_dir] {
            let text = p.display().to_string();
            if text.contains(['"', '\\', '$', '\n']) || text.chars().any(char::is_whitespace) {
                return Err(Error::cannot_run(format!(
                    "the directory {text} has a quote, backslash, `$` or white space, which Terraform's \
                     configuration cannot hold; choose another with --state-dir or --out"
                )));
            }
        }
        Ok(Ctx {
            runner,
            repo,
            sandbox,
            state: StateLayout::new(state_root),
            tf_dir,
            terraform: std::env::var_os("HSW_TERRAFORM")
                .map_or_else(|| PathBuf::from("terraform"), PathBuf::from),
            provider_bin: std::env::var_os("HSW_PROVIDER_BIN").map(PathBuf::from),
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        })
    }

    /// `bash scripts/sandbox.sh --name NAME ARGS...`, in the repository.
    pub fn sandbox_cmd(&self, name: &str, args: &[&str]) -> Cmd {
        Cmd::new("bash")
            .arg(self.repo.join("scripts/sandbox.sh"))
            .args(["--name", name])
            .args(args)
            .current_dir(&self.repo)
    }

    /// A command that runs inside the sandbox (its netns and libvirtd's mount view), or directly without one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Cmd {
        let c = match &self.sandbox {
            Some(name) => self.sandbox_cmd(name, &["exec", "--"]).arg(program),
            None => Cmd::new(program),
        };
        c.current_dir(&self.repo)
    }

    fn tfrc(&self) -> PathBuf {
        self.state.root().join("terraformrc")
    }

    fn mirror(&self) -> PathBuf {
        self.state.root().join("terraform-mirror")
    }

    fn logs(&self) -> PathBuf {
        self.state.root().join("logs")
    }

    fn tf_output_file(&self) -> PathBuf {
        self.state.root().join("terraform-output.json")
    }

    /// Terraform in the root module, with the private CLI configuration and no registry or telemetry.
    pub fn terraform(&self, args: &[&str]) -> Cmd {
        let mut c = self
            .command(&self.terraform)
            .arg(format!("-chdir={}", self.tf_dir.display()))
            .args(args);
        for v in [
            "TF_LOG",
            "TF_LOG_PROVIDER",
            "TF_LOG_CORE",
            "TF_REATTACH_PROVIDERS",
            "TF_PLUGIN_CACHE_DIR",
            "TF_DATA_DIR",
            "TF_WORKSPACE",
        ] {
            c = c.env_remove(v);
        }
        c.env("TF_CLI_CONFIG_FILE", self.tfrc())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
    }

    pub(crate) fn no_color(&self) -> Option<&'static str> {
        (!self.color).then_some("-no-color")
    }

    /// Runs a command to completion, its output captured; a failure to start is an error naming the fix.
    pub fn capture(&self, cmd: &Cmd, what: &str, fix: &str) -> Result<Captured, Error> {
        self.runner
            .capture(cmd)
            .map_err(|e| Error::cannot_run(format!("cannot run {what} ({e}); {fix}")))
    }

    /// Runs a command with its output streaming through; a failure to start is an error naming the fix.
    pub fn stream(&self, cmd: &Cmd, what: &str, fix: &str) -> Result<ExitStatus, Error> {
        self.runner
            .stream(cmd)
            .map_err(|e| Error::cannot_run(format!("cannot run {what} ({e}); {fix}")))
    }

    fn write_log(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.logs();
        let path = dir.join(name);
        let _ = std::fs::create_dir_all(&dir)
            .and_then(|()| hsw_core::fsx::write_atomic(&path, text.as_bytes(), 0o600));
        path
    }
}

/// Where the provider reaches libvirt and keeps its files (the sandbox's, or the host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libvirt {
    /// libvirt's URI.
    pub uri: String,
    /// The provider's pool directory.
    pub pool: PathBuf,
    /// Where the guests' console logs are (a sandbox's `log/qemu/`).
    pub consoles: Option<PathBuf>,
}

impl Libvirt {
    /// ` in <consoles>/` or nothing: where to look at the guests' consoles, for messages.
    fn consoles_hint(&self, before: &str, after: &str) -> String {
        self.consoles
            .as_ref()
            .map(|d| format!("{before}{}/{after}", d.display()))
            .unwrap_or_default()
    }
}

/// The host's libvirt URI and pool directory for a config (`host.libvirt_uri`, `host.pool_dir`, or the
/// defaults).
pub fn host_libvirt(cfg: &ClusterConfig) -> (String, String) {
    (cfg.libvirt_uri().to_owned(), cfg.pool_dir().to_owned())
}

/// Prints a progress line (and flushes, so it comes before a child's output).
pub(crate) fn say(out: &mut dyn Write, text: impl AsRef<str>) {
    let _ = writeln!(out, "hsw: {}", text.as_ref());
    let _ = out.flush();
}

fn step_header(out: &mut dyn Write, n: usize, total: usize, text: &str) {
    let _ = writeln!(out, "\n==> [{n}/{total}] {text}");
    let _ = out.flush();
}

/// The last `n` lines of a text.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn secs(t: Instant) -> u64 {
    t.elapsed().as_secs()
}

/// Runs a command's body with the system's runner: on success it says `<what> finished in N s` and returns
/// exit 0, else it reports the error and returns its code (`down`, `restore`, `rollback`).
pub(crate) fn run_timed(
    what: &str,
    out: &mut dyn Write,
    body: impl FnOnce(&dyn Runner, &mut dyn Write) -> Result<(), Error>,
) -> u8 {
    let t0 = Instant::now();
    match body(&SystemRunner, out) {
        Ok(()) => {
            say(out, format!("{what} finished in {} s", secs(t0)));
            exit::OK
        }
        Err(e) => e.report(),
    }
}

// ---------------------------------------------------------------------------------------------- up

/// What `up` knows: its inputs, and what the steps before found.
#[derive(Debug)]
pub struct Up<'a> {
    /// The places and the runner.
    pub ctx: &'a Ctx<'a>,
    /// The config, validated and planned.
    pub session: &'a Session,
    /// The command's arguments.
    pub args: &'a UpArgs,
    /// The host's root directory the checks read (`None`: `/`).
    pub host_root: Option<PathBuf>,
    /// The guest images built, per cluster role.
    pub images: BTreeMap<ImageRole, Image>,
    /// Where libvirt is (from the sandbox step).
    pub libvirt: Option<Libvirt>,
    /// The images in the pool, per cluster (what the root module boots).
    pub cluster_images: ClusterImages,
    /// Whether `terraform apply` changed something.
    pub applied: bool,
    /// The inventory (from the inventory step).
    pub loaded: Option<Loaded>,
    /// What the HPC playbook changed (`None`: no HPC cluster).
    pub ansible_changed: Option<playbooks::Changes>,
    /// What the platform playbooks changed (`None`: not run).
    pub platform_changed: Option<playbooks::Changes>,
    /// Whether every VM answered SSH before the playbooks ([`verify::reach`]).
    pub reached: bool,
    /// What the final checks verified.
    pub verified: Vec<String>,
    /// The Terraform root's files as they were before the generate step wrote them again (for the snapshot
    /// before a plan that destroys VMs; `None`: there was no deployment).
    pub previous_root: Option<Vec<crate::backup::RootFile>>,
}

impl<'a> Up<'a> {
    /// Before any step ran.
    pub fn new(ctx: &'a Ctx<'a>, session: &'a Session, args: &'a UpArgs) -> Up<'a> {
        Up {
            ctx,
            session,
            args,
            host_root: None,
            images: BTreeMap::new(),
            libvirt: None,
            cluster_images: ClusterImages::new(),
            applied: false,
            loaded: None,
            ansible_changed: None,
            platform_changed: None,
            reached: false,
            verified: Vec::new(),
            previous_root: None,
        }
    }

    pub(crate) fn libvirt(&self) -> Result<&Libvirt, Error> {
        self.libvirt
            .as_ref()
            .ok_or_else(|| Error::cannot_run("up ran a step before the sandbox step"))
    }

    fn loaded(&self) -> Result<&Loaded, Error> {
        self.loaded
            .as_ref()
            .ok_or_else(|| Error::cannot_run("up ran a step before the inventory step"))
    }
}

/// What a step does: over what `up` knows, its header number, the output.
pub type StepFn = fn(&mut Up<'_>, usize, &mut dyn Write) -> Result<(), Error>;

/// One step of `up`: its number in the headers, its name in the timings, and what it does.
type Step = (usize, &'static str, StepFn);

/// The steps of `up`, in order (the summary, step [`UP_STEPS`], follows).
pub const UP_STEPS_TABLE: [Step; 10] = [
    (1, "checks", checks::checks),
    (2, "image", images::build),
    (3, "sandbox", sandbox::open),
    (4, "generate", terraform::generate_root),
    (5, "terraform init", terraform::init),
    (6, "terraform apply", terraform::plan_and_apply),
    (7, "inventory", inventory::inventory),
    (8, "ansible hpc", playbooks::hpc),
    (9, "ansible platform", playbooks::platform),
    (10, "verify", verify::verify),
];

/// The number of steps the headers count (the verify step has three, the summary one).
const UP_STEPS: usize = 13;

/// Runs `up`; returns the exit code.
pub fn up(args: &UpArgs, out: &mut dyn Write) -> u8 {
    let t0 = Instant::now();
    match up_steps(args, &SystemRunner, out) {
        Ok(summary) => {
            let _ = writeln!(out, "\n{summary}");
            say(out, format!("up finished in {} s", secs(t0)));
            exit::OK
        }
        Err(e) => {
            let code = e.report();
            eprintln!("hsw: up stopped after {} s", secs(t0));
            code
        }
    }
}

fn up_steps(args: &UpArgs, runner: &dyn Runner, out: &mut dyn Write) -> Result<String, Error> {
    let ctx = Ctx::new(&args.target, runner)?;
    let session = Session::load(args.target.place.config.as_deref()).map_err(|e| match e {
        Error::InvalidConfig { name, report, .. } => {
            eprint!("{report}");
            Error::invalid(format!(
                "{name} is not valid (above); fix it and run `hsw-cli up` again"
            ))
        }
        other => other,
    })?;
    if session.config.hosts.len() >= 2 {
        // Before any step (images, sandbox): what `generate` would refuse later.
        return Err(Error::invalid(
            hsw_core::render::terraform::RenderError::SeveralHosts(
                session.config.hosts.keys().cloned().collect(),
            )
            .to_string(),
        ));
    }
    let mut up = Up::new(&ctx, &session, args);
    let timings = run_steps(&mut up, out)?;
    step_header(out, UP_STEPS, UP_STEPS, "summary");
    summary::summary(&up, &timings)
}

/// Runs the steps of [`UP_STEPS_TABLE`] in order; returns how long each took (seconds).
fn run_steps(up: &mut Up<'_>, out: &mut dyn Write) -> Result<Vec<(String, u64)>, Error> {
    let mut timings = Vec::new();
    for (n, name, step) in UP_STEPS_TABLE {
        let t = Instant::now();
        step(up, n, out).map_err(|e| e.see(&step_help(name)))?;
        timings.push((name.to_owned(), secs(t)));
    }
    Ok(timings)
}

/// Where the troubleshooting page explains what a step of `up` stops with.
pub fn step_help(step: &str) -> String {
    crate::error::troubleshooting(&format!("up step: {step}"))
}

pub(crate) fn ssh_user(cfg: &ClusterConfig) -> String {
    cfg.login_user().to_owned()
}

/// What the steps' unit tests share.
#[cfg(test)]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::testing::{fixture, text, Fixture};
    use super::*;
    use crate::runner::fake::FakeRunner;
    use std::path::Path;

    #[test]
    fn commands_run_inside_the_sandbox_and_terraform_gets_its_own_environment() {
        let runner = FakeRunner::new();
        let f = Fixture::new(Some("sb"));
        let ctx = f.ctx(&runner);
        let c = ctx.terraform(&["plan", "-input=false"]);
        let argv = c.argv();
        let repo = ctx.repo.display().to_string();
        assert_eq!(
            argv,
            [
                "bash".to_owned(),
                format!("{repo}/scripts/sandbox.sh"),
                "--name".into(),
                "sb".into(),
                "exec".into(),
                "--".into(),
                "terraform".into(),
                format!("-chdir={}", ctx.tf_dir.display()),
                "plan".into(),
                "-input=false".into(),
            ]
        );
        assert_eq!(c.dir.as_deref(), Some(ctx.repo.as_path()));
        assert_eq!(
            c.env_value("TF_CLI_CONFIG_FILE")
                .map(|v| v.to_string_lossy().into_owned()),
            Some(ctx.state.root().join("terraformrc").display().to_string())
        );
        for (k, v) in [
            ("CHECKPOINT_DISABLE", "1"),
            ("TF_IN_AUTOMATION", "1"),
            ("TF_INPUT", "0"),
        ] {
            assert_eq!(c.env_value(k), Some(std::ffi::OsStr::new(v)), "{k}");
        }
        assert!(c.env.iter().any(|(k, v)| k == "TF_LOG" && v.is_none()));
        let direct = Fixture::new(None);
        let ctx = direct.ctx(&runner);
        assert_eq!(ctx.command("ssh").argv(), ["ssh"]);
    }

    /// The whole table over the fake: every process `up` runs, in order, with a sandbox.
    #[test]
    fn up_runs_its_steps_in_order() {
        let f = Fixture::new(Some("sb"));
        let cache = f.dir.path().join("cache");
        let image = |key: &str| fixture::built_answer(&fixture::built(&cache, key));
        let session = fixture::session();
        let probe = FakeRunner::new();
        let planned = fixture::loaded(&session, &f.ctx(&probe)).deployment;
        let computes = fixture::computes(&planned);
        let runner = FakeRunner::new();
        runner
            .on(&["--role", "hpc"], 0, &image("khpc"))
            .on(&["--role", "cloud"], 0, &image("kcloud"))
            .on(
                &["env"],
                0,
                &fixture::sandbox_env(&f.dir.path().join("sandbox")),
            )
            .on(&["plan"], 2, "Plan: 5 to add, 0 to change, 0 to destroy.\n")
            .on(&["show"], 0, super::terraform::tests::NO_VM_REPLACED)
            .on(&["output", "-json"], 0, &fixture::tf_output(&planned))
            .on(&["domuuid"], 0, "uuid\n")
            .on(
                &["-e"],
                0,
                "PLAY RECAP\nx : ok=1 changed=2 unreachable=0 failed=0\n",
            )
            .on(&["sinfo"], 0, &fixture::lines(&computes, " idle"))
            // verify/hpc.rs: MPI, the user's job in sacct, the QoS refusal, a held job across a restart.
            .on(
                &["--mpi=pmix"],
                0,
                &format!(
                    "rank 0 of 2 on {}\nrank 1 of 2 on {}\n",
                    computes[0], computes[1]
                ),
            )
            .on(&["--wait"], 0, "41\n")
            .on(&["sacct"], 0, "COMPLETED|research|alice\n")
            .on_full(
                &["-t", "61"],
                Some(1),
                "",
                "sbatch: error: Job violates accounting/QOS policy\n",
                None,
            )
            .on(&["--hold"], 0, "42\n")
            .on(&["squeue"], 0, "PENDING\n")
            .on(&["srun"], 0, &fixture::lines(&computes, ""))
            // verify/platform.rs: containerd, PostgreSQL, Prometheus, the segmentation probes, sshd.
            .on(&["ctr", "version"], 0, "Server:\n  Version:  1.6.20~ds1\n")
            .on(&["psql"], 0, "1\n");
        crate::up::verify::answer_healthy_mlflow(&runner);
        runner
            .on(
                &["curl"],
                0,
                &serde_json::json!({"data": {"activeTargets": planned.hosts.iter().map(|h| {
                    serde_json::json!({"labels": {"job": "node", "node": h.name}, "health": "up"})
                }).collect::<Vec<_>>()}})
                .to_string(),
            )
            .on(&["timeout", "5"], 1, "")
            .on(&["sshd", "-T"], 0, "passwordauthentication no\n");
        crate::up::verify::kubernetes::answer_healthy(&runner, &planned);
        for h in &planned.hosts {
            runner.on(
                &[&format!("hsw@{}", h.ip), "hostname"],
                0,
                &format!("{}\n", h.name),
            );
        }
        let mut ctx = f.ctx(&runner);
        fixture::keys(&ctx);
        let provider = f.dir.path().join("terraform-provider-hsw");
        std::fs::write(&provider, "provider").unwrap();
        ctx.provider_bin = Some(provider);
        let mut args = f.args();
        args.image_dir = Some(cache.clone());
        args.bundle = Some(fixture::bundle(f.dir.path()));
        let mut up = Up::new(&ctx, &session, &args);
        let mut out = Vec::new();
        let timings =
            run_steps(&mut up, &mut out).unwrap_or_else(|e| panic!("{e}\n{}", text(&out)));
        let names: Vec<&str> = timings.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "checks",
                "image",
                "sandbox",
                "generate",
                "terraform init",
                "terraform apply",
                "inventory",
                "ansible hpc",
                "ansible platform",
                "verify"
            ]
        );
        // Each process by what it is: the program inside the sandbox (or run directly), and its first word.
        let what: Vec<String> = runner
            .argvs()
            .iter()
            .map(|a| {
                let inside = a
                    .iter()
                    .position(|w| w == "--")
                    .filter(|_| a[3] == "sb" && a[4] == "exec");
                let (program, rest) = match inside {
                    Some(i) => (&a[i + 1], &a[i + 2..]),
                    None if a[0] == "bash" => (&a[1], &a[2..]),
                    None => (&a[0], &a[1..]),
                };
                let program = Path::new(program)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let first = rest
                    .iter()
                    .find(|w| !w.starts_with("-chdir=") && !w.starts_with("--name") && *w != "sb")
                    .cloned()
                    .unwrap_or_default();
                format!(
                    "{}{program} {first}",
                    if inside.is_some() { "sandbox: " } else { "" }
                )
            })
            .collect();
        let n = planned.hosts.len();
        let mut want: Vec<String> = [
            "build-image.sh --role",
            "build-image.sh --role",
            "sandbox.sh start",
            "sandbox.sh env",
            "sandbox: terraform init",
            "sandbox: terraform plan",
            "sandbox: terraform show",
            "sandbox: terraform apply",
            "sandbox: terraform output",
        ]
        .map(String::from)
        .to_vec();
        want.extend((0..n).map(|_| "virsh -q".to_owned()));
        // Every VM reached once before the playbooks (verify::reach), then both playbook runs.
        want.extend((0..n).map(|_| "sandbox: ssh -i".to_owned()));
        want.push("sandbox: ansible-playbook -i".into());
        want.push("sandbox: ansible-playbook -i".into());
        want.extend((0..n).map(|_| "sandbox: ssh -i".to_owned()));
        // sinfo and srun, then verify/hpc.rs: MPI build and run, sbatch, sacct, the over-long sbatch, the held job,
        // the restart, squeue, scancel.
        want.extend((0..11).map(|_| "sandbox: ssh -i".to_owned()));
        // verify/platform.rs: ctr on both cloud VMs, kubectl get nodes and the pod-network probe, psql and
        // pg_isready, MLflow's /health, its API without and with credentials, Prometheus, three port probes,
        // sshd on each.
        let cloud = planned.of_cluster("cloud").count();
        want.extend((0..cloud + 2 + 2 + 3 + 1 + 3 + n).map(|_| "sandbox: ssh -i".to_owned()));
        // HSW_ANSIBLE_PLAYBOOK may name another program: compare by its arguments.
        let got: Vec<String> = what
            .iter()
            .map(|w| {
                if w.ends_with(" -i") && !w.contains("ssh") {
                    "sandbox: ansible-playbook -i".to_owned()
                } else {
                    w.clone()
                }
            })
            .collect();
        assert_eq!(got, want);
        let summary = summary::summary(&up, &timings).unwrap();
        assert!(
            summary.contains("hsw: hsw-dev is up in sandbox 'sb' (netns sb)"),
            "{summary}"
        );
        assert!(
            summary.contains("hsw: terraform: changes applied"),
            "{summary}"
        );
        assert!(summary.contains("hsw: ansible: 2 changes"), "{summary}");
        assert!(summary.contains("hsw: platform: 2 changes"), "{summary}");
        assert!(summary.contains("hsw: skipped offline: "), "{summary}");
        assert!(
            summary.contains(&format!(
                "hsw: verified: sshd takes keys only on all {n} VMs"
            )),
            "{summary}"
        );
        assert!(
            summary.contains(&format!("hsw: verified: all {n} VMs answer SSH")),
            "{summary}"
        );
        assert!(
            summary.ends_with("hsw: remove it all with: hsw-cli down --sandbox-name sb"),
            "{summary}"
        );
        let t = text(&out);
        for h in 1..=12 {
            assert!(t.contains(&format!("==> [{h}/13] ")), "no header {h}:\n{t}");
        }
    }

    #[test]
    fn host_libvirt_defaults() {
        let s = fixture::session();
        let (uri, pool) = host_libvirt(&s.config);
        assert_eq!(uri, hsw_core::config::model::DEFAULT_LIBVIRT_URI);
        assert_eq!(pool, hsw_core::config::model::DEFAULT_POOL_DIR);
        assert_eq!(ssh_user(&s.config), "hsw");
        let edited = crate::session::testing::edited_session(&[
            ("user: hsw", "user: ops"),
            ("pool_dir: /var/lib/hsw/images", "pool_dir: /srv/pool"),
        ]);
        assert_eq!(ssh_user(&edited.config), "ops");
        assert_eq!(host_libvirt(&edited.config).1, "/srv/pool");
    }
}
