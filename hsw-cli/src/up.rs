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
//! hostname` prints every compute node's name. With a sandbox, Terraform, Ansible and SSH run inside it
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

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hsw_core::ansible::hosts::{Deployment, Role};
use hsw_core::ansible::StateLayout;
use hsw_core::config::{self, ClusterConfig};
use hsw_core::slurm;

use crate::image::{self, BuildArgs, Image, ImageRole};
use crate::inventory::{self, SourceArgs};
use crate::validate::read_config;
use crate::{ansible_cmd, exit, generate, host_cmds, Format};

/// The default sandbox name of `up` and `down`.
pub const DEFAULT_SANDBOX: &str = "hsw-up";

/// Where `up` runs things: shared by `up` and `down`.
#[derive(Debug, Clone, Args)]
pub struct Target {
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
    /// Go on when host checks fail.
    #[arg(long)]
    pub skip_check: bool,
    /// Skip the final check (SSH to every VM, `sinfo`, `srun`).
    #[arg(long)]
    pub no_verify: bool,
    /// Seconds the final check waits for the compute nodes to be idle.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub verify_timeout: u64,
}

/// `hsw-cli down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub target: Target,
}

/// A step failed: the sentence to print and the exit code.
#[derive(Debug)]
struct Failed {
    code: u8,
    message: String,
}

impl Failed {
    fn new(message: impl Into<String>) -> Failed {
        Failed {
            code: exit::INVALID,
            message: message.into(),
        }
    }

    fn cannot_run(message: impl Into<String>) -> Failed {
        Failed {
            code: exit::CANNOT_RUN,
            message: message.into(),
        }
    }
}

type Step<T> = Result<T, Failed>;

/// The deployment's places and how commands reach it.
#[derive(Debug, Clone)]
struct Ctx {
    repo: PathBuf,
    sandbox: Option<String>,
    state: StateLayout,
    tf_dir: PathBuf,
    terraform: PathBuf,
    color: bool,
}

impl Ctx {
    fn new(target: &Target) -> Step<Ctx> {
        let repo = image::repo_root().map_err(Failed::cannot_run)?;
        let sandbox = if target.no_sandbox {
            None
        } else {
            let n = &target.sandbox_name;
            let ok = !n.is_empty()
                && n.len() <= 32
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && n.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(Failed::cannot_run(format!(
                    "the sandbox name `{n}` is not valid: use letters, digits, `-` and `_` (at most 32, a letter or \
                     digit first)"
                )));
            }
            Some(n.clone())
        };
        let cwd = std::env::current_dir()
            .map_err(|e| Failed::cannot_run(format!("cannot read the current directory: {e}")))?;
        let state_root = match &target.state_dir {
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
                return Err(Failed::cannot_run(format!(
                    "the directory {text} has a quote, backslash, `$` or white space, which Terraform's \
                     configuration cannot hold; choose another with --state-dir or --out"
                )));
            }
        }
        Ok(Ctx {
            repo,
            sandbox,
            state: StateLayout::new(state_root),
            tf_dir,
            terraform: std::env::var_os("HSW_TERRAFORM")
                .map_or_else(|| PathBuf::from("terraform"), PathBuf::from),
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        })
    }

    fn sandbox_script(&self) -> PathBuf {
        self.repo.join("scripts/sandbox.sh")
    }

    /// `scripts/sandbox.sh --name NAME ARGS...`.
    fn sandbox_cmd(&self, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.sandbox_script())
            .args(["--name", name])
            .args(args)
            .current_dir(&self.repo);
        c
    }

    /// A command that runs inside the sandbox (its netns and libvirtd's mount view), or directly without one.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = match &self.sandbox {
            Some(name) => {
                let mut c = self.sandbox_cmd(name, &["exec", "--"]);
                c.arg(program);
                c
            }
            None => Command::new(program),
        };
        c.current_dir(&self.repo).stdin(Stdio::null());
        c
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
    fn terraform(&self, args: &[&str]) -> Command {
        let mut c = self.command(&self.terraform);
        c.arg(format!("-chdir={}", self.tf_dir.display()));
        c.args(args);
        for v in [
            "TF_LOG",
            "TF_LOG_PROVIDER",
            "TF_LOG_CORE",
            "TF_REATTACH_PROVIDERS",
            "TF_PLUGIN_CACHE_DIR",
            "TF_DATA_DIR",
            "TF_WORKSPACE",
        ] {
            c.env_remove(v);
        }
        c.env("TF_CLI_CONFIG_FILE", self.tfrc())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0");
        c
    }

    fn no_color(&self) -> Option<&'static str> {
        (!self.color).then_some("-no-color")
    }

    fn sandbox_running(&self, name: &str) -> bool {
        self.sandbox_cmd(name, &["status"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// Prints a progress line (and flushes, so it comes before a child's output).
fn say(out: &mut dyn Write, text: impl AsRef<str>) {
    let _ = writeln!(out, "hsw: {}", text.as_ref());
    let _ = out.flush();
}

fn step_header(out: &mut dyn Write, n: usize, total: usize, text: &str) {
    let _ = writeln!(out, "\n==> [{n}/{total}] {text}");
    let _ = out.flush();
}

/// Runs a command to completion, its output captured; a failure to start is an error naming the fix.
fn capture(mut cmd: Command, what: &str, fix: &str) -> Step<(ExitStatus, String, String)> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failed::cannot_run(format!("cannot run {what} ({e}); {fix}")))?;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Runs a command with its output streaming through; a failure to start is an error naming the fix.
fn stream(mut cmd: Command, what: &str, fix: &str) -> Step<ExitStatus> {
    cmd.stdin(Stdio::null())
        .status()
        .map_err(|e| Failed::cannot_run(format!("cannot run {what} ({e}); {fix}")))
}

/// The last `n` lines of a text.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write_log(ctx: &Ctx, name: &str, text: &str) -> PathBuf {
    let dir = ctx.logs();
    let path = dir.join(name);
    let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text));
    path
}

fn secs(t: Instant) -> u64 {
    t.elapsed().as_secs()
}

// ---------------------------------------------------------------------------------------------- up

/// Runs `up`; returns the exit code.
pub fn up(args: &UpArgs, out: &mut dyn Write) -> u8 {
    let t0 = Instant::now();
    match up_steps(args, out) {
        Ok(summary) => {
            let _ = writeln!(out, "\n{summary}");
            say(out, format!("up finished in {} s", secs(t0)));
            exit::OK
        }
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", f.message);
            }
            eprintln!("hsw: up stopped after {} s", secs(t0));
            f.code
        }
    }
}

const UP_STEPS: usize = 11;

#[allow(clippy::too_many_lines)]
fn up_steps(args: &UpArgs, out: &mut dyn Write) -> Step<String> {
    let ctx = Ctx::new(&args.target)?;
    let config_path = args.target.config.as_deref();
    let mut timings: Vec<(String, u64)> = Vec::new();

    // 1. check, validate, plan
    let t = Instant::now();
    step_header(out, 1, UP_STEPS, "host checks, validation, GPU plan");
    let (name, source) = read_config(config_path).map_err(Failed::cannot_run)?;
    if args.skip_check {
        say(out, "host checks skipped (--skip-check)");
    } else {
        let check_args = host_cmds::CheckArgs {
            config: args.target.config.clone(),
            root: None,
            format: Format::Text,
        };
        let code = host_cmds::check(&check_args, out);
        let _ = out.flush();
        if code != exit::OK {
            return Err(Failed {
                code,
                message: "the host checks above failed (`fail` lines); make the fixes they name (`sudo hsw-cli \
                          prepare --apply` makes most of them) and run `hsw-cli up` again, or pass --skip-check"
                    .into(),
            });
        }
    }
    let validated = config::validate_str(&source);
    let Some(cfg) = validated.valid_config().cloned() else {
        eprint!("{}", validated.report.render_text(&name, &source, false));
        return Err(Failed::new(format!(
            "{name} is not valid (above); fix it and run `hsw-cli up` again"
        )));
    };
    if !validated.report.diagnostics.is_empty() {
        eprint!("{}", validated.report.render_text(&name, &source, false));
    }
    say(out, format!("{name} is valid ({})", cfg.metadata.name));
    let plan = config::gpu::plan(&cfg)
        .map_err(|e| Failed::new(format!("no GPU plan exists for {name}: {e}")))?;
    for i in &plan.instances {
        say(
            out,
            format!(
                "GPU plan: {} gets MIG {} on {} (slices {}..{})",
                i.cluster,
                i.profile,
                i.device,
                i.placement_start,
                i.placement_start + i.placement_size
            ),
        );
    }
    for w in &plan.whole_gpus {
        say(
            out,
            format!("GPU plan: {} gets the whole GPU {}", w.cluster, w.device),
        );
    }
    timings.push(("checks".into(), secs(t)));

    // 2. images: one per cluster, from its package list
    let t = Instant::now();
    step_header(out, 2, UP_STEPS, "guest images (one per cluster)");
    let mut images: BTreeMap<ImageRole, Image> = BTreeMap::new();
    for role in image_roles(&cfg) {
        let img = image::build(
            &ctx.repo,
            &BuildArgs {
                role,
                out: args.image_dir.clone(),
                force: false,
            },
            out,
        )
        .map_err(Failed::new)?;
        say(
            out,
            format!(
                "{} image {} (kernel, initrd beside it)",
                role.as_str(),
                img.base.display()
            ),
        );
        images.insert(role, img);
    }
    timings.push(("image".into(), secs(t)));

    // 3. sandbox
    let t = Instant::now();
    let (uri, pool) = match &ctx.sandbox {
        Some(sb) => {
            step_header(out, 3, UP_STEPS, &format!("sandbox '{sb}'"));
            let (status, stdout, stderr) = capture(
                ctx.sandbox_cmd(sb, &["start"]),
                "scripts/sandbox.sh",
                "install bash",
            )?;
            eprint!("{stderr}");
            if !status.success() {
                return Err(Failed::new(format!(
                    "scripts/sandbox.sh --name {sb} start failed ({status}); its messages above say why (it needs \
                     root and `scripts/install-deps.sh full`)"
                )));
            }
            let uri = stdout.lines().last().unwrap_or_default().trim().to_owned();
            let (status, pool, _) = capture(
                ctx.sandbox_cmd(sb, &["env", "POOL_DIR"]),
                "scripts/sandbox.sh",
                "install bash",
            )?;
            if !status.success() || uri.is_empty() {
                return Err(Failed::new(format!(
                    "scripts/sandbox.sh --name {sb} did not say its URI or pool directory"
                )));
            }
            say(
                out,
                format!("libvirt inside netns {sb}: {uri}; pool {}", pool.trim()),
            );
            (uri, PathBuf::from(pool.trim()))
        }
        None => {
            step_header(out, 3, UP_STEPS, "host libvirt (no sandbox)");
            let host = cfg.host.as_ref();
            let uri = host
                .and_then(|h| h.libvirt_uri.clone())
                .unwrap_or_else(|| "qemu:///system".into());
            let pool = host
                .and_then(|h| h.pool_dir.clone())
                .unwrap_or_else(|| hsw_core::render::terraform::DEFAULT_POOL_DIR.to_owned());
            say(out, format!("libvirt {uri}; pool {pool}"));
            (uri, PathBuf::from(pool))
        }
    };
    let mut cluster_images = BTreeMap::new();
    for (role, img) in &images {
        let placed = place_image(img, &pool).map_err(Failed::new)?;
        say(
            out,
            format!(
                "{} image files in the pool: {}",
                role.as_str(),
                placed.base.parent().unwrap_or(&pool).display()
            ),
        );
        cluster_images.insert(
            role.as_str().to_owned(),
            generate::ClusterImage {
                base: placed.base.display().to_string(),
                kernel: placed.kernel.display().to_string(),
                initrd: placed.initrd.display().to_string(),
            },
        );
    }
    timings.push(("sandbox".into(), secs(t)));

    // 4. keys, generate, GPU state
    let t = Instant::now();
    step_header(
        out,
        4,
        UP_STEPS,
        "SSH keys, Terraform root module, simulated GPUs",
    );
    let keys = ansible_cmd::cluster_public_keys(&ctx.state, &cfg).map_err(Failed::cannot_run)?;
    for (cluster, key) in &keys {
        say(out, format!("{cluster} SSH key: {}", key.display()));
    }
    let gen = generate::GenerateArgs {
        config: args.target.config.clone(),
        out: ctx.tf_dir.clone(),
        modules: ctx.repo.join("modules"),
        state_dir: Some(ctx.state.root().to_path_buf()),
        base_image: None,
        kernel: None,
        initrd: None,
        cmdline: None,
        no_kernel_boot: false,
        libvirt_uri: Some(uri.clone()),
        pool_dir: Some(pool.display().to_string()),
        check: false,
        cluster_images,
    };
    let code = generate::run(&gen, out);
    let _ = out.flush();
    if code != exit::OK {
        return Err(Failed {
            code,
            message: "hsw-cli generate failed (above)".into(),
        });
    }
    seed_gpus(&cfg, &pool, out)?;
    timings.push(("generate".into(), secs(t)));

    // 5. terraform init
    let t = Instant::now();
    step_header(out, 5, UP_STEPS, "terraform init (local provider mirror)");
    terraform_init(&ctx, out)?;
    timings.push(("terraform init".into(), secs(t)));

    // 6. plan + apply
    let t = Instant::now();
    step_header(out, 6, UP_STEPS, "terraform plan and apply");
    let applied = terraform_apply(&ctx, &uri, out)?;
    timings.push(("terraform apply".into(), secs(t)));

    // 7. inventory
    let t = Instant::now();
    step_header(out, 7, UP_STEPS, "inventory from terraform output");
    let (status, json, stderr) = capture(
        ctx.terraform(&["output", "-json"]),
        "terraform",
        "install Terraform or set HSW_TERRAFORM",
    )?;
    if !status.success() {
        return Err(Failed::new(format!(
            "terraform output -json failed in {} ({status}): {}",
            ctx.tf_dir.display(),
            tail(&stderr, 10)
        )));
    }
    let tf_output = ctx.tf_output_file();
    std::fs::write(&tf_output, &json)
        .map_err(|e| Failed::cannot_run(format!("cannot write {}: {e}", tf_output.display())))?;
    let source_args = SourceArgs {
        config: args.target.config.clone(),
        tf_output: Some(tf_output.clone()),
        terraform_dir: ctx.tf_dir.clone(),
        planned: false,
        state_dir: Some(ctx.state.root().to_path_buf()),
    };
    let loaded = inventory::load(&source_args).map_err(|e| Failed {
        code: e.code,
        message: e
            .message
            .trim_start_matches("error: ")
            .trim_end()
            .to_owned(),
    })?;
    print_hosts(&loaded.deployment, out);
    forget_replaced_host_keys(&ctx, &uri, &loaded.deployment, out)?;
    timings.push(("inventory".into(), secs(t)));

    // 8. playbook
    let t = Instant::now();
    let mut ansible_changed = None;
    if cfg.clusters.hpc.is_some() {
        step_header(out, 8, UP_STEPS, "HPC playbook (Munge, Slurm)");
        let rendered = slurm::render(&loaded.config, &loaded.deployment)
            .map_err(|e| Failed::new(format!("the Slurm files cannot be rendered: {e}")))?;
        let files = ansible_cmd::write_hpc_files(&loaded, &rendered).map_err(Failed::cannot_run)?;
        say(
            out,
            format!(
                "inventory {}; Slurm files {}",
                files.inventory.display(),
                files.slurm_dir.display()
            ),
        );
        ansible_changed = Some(run_playbook(&ctx, &files, out)?);
    } else {
        step_header(
            out,
            8,
            UP_STEPS,
            "HPC playbook: no HPC cluster in the config",
        );
    }
    timings.push(("ansible".into(), secs(t)));

    // 9-10. verify
    let t = Instant::now();
    let mut verified = Vec::new();
    if args.no_verify {
        step_header(out, 9, UP_STEPS, "checks skipped (--no-verify)");
    } else {
        step_header(out, 9, UP_STEPS, "every VM answers SSH");
        verified.push(check_ssh(&ctx, &ssh_user(&cfg), &loaded.deployment, out)?);
        if cfg.clusters.hpc.is_some() {
            step_header(out, 10, UP_STEPS, "Slurm: sinfo and srun");
            verified.extend(check_slurm(
                &ctx,
                &ssh_user(&cfg),
                &loaded.deployment,
                Duration::from_secs(args.verify_timeout),
                out,
            )?);
        }
    }
    timings.push(("verify".into(), secs(t)));

    // 11. summary
    step_header(out, 11, UP_STEPS, "summary");
    let mut s = String::new();
    s.push_str(&format!(
        "hsw: {} is up{}\n",
        cfg.metadata.name,
        ctx.sandbox
            .as_deref()
            .map(|n| format!(" in sandbox '{n}' (netns {n})"))
            .unwrap_or_default()
    ));
    s.push_str(&format!(
        "hsw: terraform: {}\n",
        if applied {
            "changes applied"
        } else {
            "no changes (the plan was empty)"
        }
    ));
    match ansible_changed {
        Some(0) => s.push_str("hsw: ansible: no changes (changed=0 on every host)\n"),
        Some(n) => s.push_str(&format!("hsw: ansible: {n} changes\n")),
        None => {}
    }
    for v in &verified {
        s.push_str(&format!("hsw: verified: {v}\n"));
    }
    s.push_str(&format!(
        "hsw: state {} (Terraform root {})\n",
        ctx.state.root().display(),
        ctx.tf_dir.display()
    ));
    if let (Some(sb), Some(ctl)) = (
        &ctx.sandbox,
        loaded.deployment.with_role(Role::Controller).next(),
    ) {
        s.push_str(&format!(
            "hsw: log in: scripts/sandbox.sh --name {sb} exec -- ssh -i {} -o UserKnownHostsFile={} {}@{}\n",
            ctx.state.ssh_private_key("hpc").display(),
            ctx.state.known_hosts("hpc").display(),
            ssh_user(&cfg),
            ctl.ip
        ));
    }
    s.push_str("hsw: timings:");
    for (what, secs) in &timings {
        s.push_str(&format!(" {what} {secs} s;"));
    }
    s.pop();
    s.push('\n');
    s.push_str(&format!(
        "hsw: remove it all with: hsw-cli down{}",
        down_flags(&args.target)
    ));
    Ok(s)
}

/// The images `up` needs: one per cluster the configuration defines, each built from its own package list.
fn image_roles(cfg: &ClusterConfig) -> Vec<ImageRole> {
    let mut roles = Vec::new();
    if cfg.clusters.hpc.is_some() {
        roles.push(ImageRole::Hpc);
    }
    if cfg.clusters.cloud.is_some() {
        roles.push(ImageRole::Cloud);
    }
    roles
}

fn down_flags(t: &Target) -> String {
    let mut s = String::new();
    if let Some(c) = &t.config {
        s.push_str(&format!(" --config {}", c.display()));
    }
    if t.no_sandbox {
        s.push_str(" --no-sandbox");
    } else if t.sandbox_name != DEFAULT_SANDBOX {
        s.push_str(&format!(" --sandbox-name {}", t.sandbox_name));
    }
    if let Some(d) = &t.state_dir {
        s.push_str(&format!(" --state-dir {}", d.display()));
    }
    if let Some(d) = &t.out {
        s.push_str(&format!(" --out {}", d.display()));
    }
    s
}

fn ssh_user(cfg: &ClusterConfig) -> String {
    cfg.global
        .ssh
        .as_ref()
        .and_then(|s| s.user.clone())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "hsw".into())
}

/// Hard-links (or copies) the image into `<pool>/images/<key>/`: the provider takes only files inside its
/// pool directory. A new image has a new key, so its VMs are replaced rather than rebased under them.
fn place_image(img: &Image, pool: &Path) -> Result<Image, String> {
    let key = img
        .base
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "current".into(), |k| k.to_string_lossy().into_owned());
    let dir = pool.join("images").join(&key);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let place = |src: &Path, name: &str| -> Result<PathBuf, String> {
        let dest = dir.join(name);
        let same = match (std::fs::metadata(src), std::fs::metadata(&dest)) {
            (Ok(a), Ok(b)) => a.len() == b.len(),
            _ => false,
        };
        if !same {
            let _ = std::fs::remove_file(&dest);
            if std::fs::hard_link(src, &dest).is_err() {
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::copy(src, &tmp)
                    .and_then(|_| std::fs::rename(&tmp, &dest))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        format!("cannot copy {} to {}: {e}", src.display(), dest.display())
                    })?;
            }
        }
        Ok(dest)
    };
    Ok(Image {
        base: place(&img.base, "base.qcow2")?,
        kernel: place(&img.kernel, "vmlinuz")?,
        initrd: place(&img.initrd, "initrd.img")?,
        manifest: place(&img.manifest, "manifest.json")?,
    })
}

/// Seeds the simulated GPU backend's state (the provider's default `gpu_state_dir`, `<pool>/../state`) with
/// the configuration's devices, so that the provider finds the GPUs cluster.yaml names.
fn seed_gpus(cfg: &ClusterConfig, pool: &Path, out: &mut dyn Write) -> Step<()> {
    use hsw_core::config::model::GpuBackend;
    let backend = cfg.host.as_ref().and_then(|h| h.gpu_backend);
    if matches!(backend, Some(GpuBackend::Nvml)) {
        return Ok(());
    }
    let devices = hsw_gpu_backend::simulated::devices_from_config(cfg);
    if devices.is_empty() {
        return Ok(());
    }
    let state_dir = pool.parent().unwrap_or(pool).join("state");
    let paths = hsw_gpu_backend::ops::Paths {
        state_dir: state_dir.clone(),
        lock_dir: None,
    };
    hsw_gpu_backend::ops::open(
        hsw_gpu_backend::ops::Choice::Simulated,
        &paths,
        Some(&devices),
    )
    .map_err(|e| {
        Failed::cannot_run(format!(
            "cannot seed the simulated GPUs in {}: {}",
            state_dir.display(),
            e.message
        ))
    })?;
    for d in &devices {
        say(
            out,
            format!(
                "simulated GPU {} ({}, MIG {}) in {}",
                d.pci_address,
                d.model,
                if d.mig_enabled { "on" } else { "off" },
                state_dir.display()
            ),
        );
    }
    Ok(())
}

/// The provider binary: `HSW_PROVIDER_BIN`, else the newest of `target/{release,debug}/terraform-provider-hsw`,
/// else one built now with cargo.
fn provider_binary(ctx: &Ctx, out: &mut dyn Write) -> Step<PathBuf> {
    if let Some(p) = std::env::var_os("HSW_PROVIDER_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Failed::cannot_run(format!(
            "HSW_PROVIDER_BIN is {}, which is not a file",
            p.display()
        )));
    }
    let newest = |ctx: &Ctx| {
        ["release", "debug"]
            .iter()
            .map(|p| {
                ctx.repo
                    .join("target")
                    .join(p)
                    .join("terraform-provider-hsw")
            })
            .filter_map(|p| {
                let m = std::fs::metadata(&p).ok()?.modified().ok()?;
                Some((m, p))
            })
            .max()
            .map(|(_, p)| p)
    };
    if let Some(p) = newest(ctx) {
        return Ok(p);
    }
    say(
        out,
        "building terraform-provider-hsw (cargo build -p terraform-provider-hsw)",
    );
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args([
        "build",
        "-p",
        "terraform-provider-hsw",
        "--bin",
        "terraform-provider-hsw",
    ])
    .current_dir(&ctx.repo);
    let status = stream(
        c,
        "cargo",
        "install Rust (rustup) or set HSW_PROVIDER_BIN to a built terraform-provider-hsw",
    )?;
    if !status.success() {
        return Err(Failed::new(format!(
            "cargo build -p terraform-provider-hsw failed ({status}); see above"
        )));
    }
    newest(ctx).ok_or_else(|| {
        Failed::new("cargo built terraform-provider-hsw but it is not in target/debug".to_owned())
    })
}

fn same_file_contents(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {
            matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

/// The filesystem mirror with the provider, the private CLI configuration, and `terraform init`.
fn terraform_init(ctx: &Ctx, out: &mut dyn Write) -> Step<()> {
    let bin = provider_binary(ctx, out)?;
    let plat = ctx
        .mirror()
        .join("registry.terraform.io/hyperscaler/hsw")
        .join(env!("CARGO_PKG_VERSION"))
        .join("linux_amd64");
    std::fs::create_dir_all(&plat)
        .map_err(|e| Failed::cannot_run(format!("cannot create {}: {e}", plat.display())))?;
    let dest = plat.join("terraform-provider-hsw");
    let changed = !same_file_contents(&bin, &dest);
    if changed {
        let tmp = plat.join(".terraform-provider-hsw.tmp");
        std::fs::copy(&bin, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &dest))
            .map_err(|e| {
                Failed::cannot_run(format!(
                    "cannot copy {} into the mirror {}: {e}",
                    bin.display(),
                    plat.display()
                ))
            })?;
    }
    let rc = format!(
        "# Written by hsw-cli up: the hsw provider comes from this local mirror, nothing from a registry.\n\
         provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"hyperscaler/hsw\"]\n  }}\n}}\n",
        ctx.mirror().display()
    );
    std::fs::write(ctx.tfrc(), rc)
        .map_err(|e| Failed::cannot_run(format!("cannot write {}: {e}", ctx.tfrc().display())))?;
    let initialized = ctx.tf_dir.join(".terraform/providers").is_dir()
        && ctx.tf_dir.join(".terraform.lock.hcl").is_file();
    say(
        out,
        format!(
            "provider {} ({}); mirror {}",
            bin.display(),
            if changed {
                "copied into the mirror"
            } else {
                "unchanged"
            },
            ctx.mirror().display()
        ),
    );
    let mut init_args = vec!["init", "-input=false", "-no-color"];
    // A rebuilt provider has another checksum than the lock file records: -upgrade records the new one.
    if changed || !initialized {
        init_args.push("-upgrade");
    }
    let (status, stdout, stderr) = capture(
        ctx.terraform(&init_args),
        "terraform",
        "install Terraform (>= 1.0) or set HSW_TERRAFORM",
    )?;
    let log = write_log(ctx, "terraform-init.log", &format!("{stdout}{stderr}"));
    if !status.success() {
        return Err(Failed::new(format!(
            "terraform init failed in {} ({status}); log {}:\n{}",
            ctx.tf_dir.display(),
            log.display(),
            tail(&format!("{stdout}{stderr}"), 15)
        )));
    }
    say(out, format!("terraform init done (log {})", log.display()));
    Ok(())
}

/// `terraform plan`, then `apply` of that plan when it changes something; returns whether it applied. While
/// Terraform waits for the VMs, a watcher says every 15 s which VMs run and which have their address.
fn terraform_apply(ctx: &Ctx, uri: &str, out: &mut dyn Write) -> Step<bool> {
    let plan_file = "hsw-up.tfplan";
    let mut args = vec![
        "plan",
        "-input=false",
        "-detailed-exitcode",
        "-out=hsw-up.tfplan",
    ];
    args.extend(ctx.no_color());
    let (status, stdout, stderr) = capture(
        ctx.terraform(&args),
        "terraform",
        "install Terraform (>= 1.0) or set HSW_TERRAFORM",
    )?;
    let log = write_log(ctx, "terraform-plan.log", &format!("{stdout}{stderr}"));
    match status.code() {
        Some(0) => {
            say(
                out,
                "terraform plan: no changes; the infrastructure matches the configuration",
            );
            let _ = std::fs::remove_file(ctx.tf_dir.join(plan_file));
            return Ok(false);
        }
        Some(2) => {
            let summary = stdout
                .lines()
                .find(|l| l.contains("Plan:"))
                .unwrap_or("changes planned")
                .trim()
                .to_owned();
            say(
                out,
                format!("terraform plan: {summary} (full plan in {})", log.display()),
            );
        }
        _ => {
            return Err(Failed::new(format!(
                "terraform plan failed in {} ({status}); log {}:\n{}",
                ctx.tf_dir.display(),
                log.display(),
                tail(&format!("{stdout}{stderr}"), 25)
            )));
        }
    }
    say(
        out,
        "terraform apply: creating networks and VMs; each VM is done when it has booted and taken its address",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        let uri = uri.to_owned();
        std::thread::spawn(move || watch_vms(&uri, &stop))
    };
    let mut args = vec!["apply", "-input=false", "-auto-approve"];
    args.extend(ctx.no_color());
    args.push(plan_file);
    let status = stream(
        ctx.terraform(&args),
        "terraform",
        "install Terraform (>= 1.0) or set HSW_TERRAFORM",
    );
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let _ = std::fs::remove_file(ctx.tf_dir.join(plan_file));
    let status = status?;
    if !status.success() {
        return Err(Failed::new(format!(
            "terraform apply failed ({status}); its messages above say which resource and why. Run `hsw-cli \
             up` again to continue, or `hsw-cli down` to remove what was made{}",
            ctx.sandbox
                .as_deref()
                .map(|n| format!(" (guest consoles: /var/lib/hsw-sandbox/{n}/log/qemu/)"))
                .unwrap_or_default()
        )));
    }
    Ok(true)
}

/// Every 15 s until `stop`: which domains run and which have an address (virsh over libvirtd's socket, which
/// is a file and reachable from here; no packet goes anywhere).
fn watch_vms(uri: &str, stop: &AtomicBool) {
    let t0 = Instant::now();
    let mut next = Duration::from_secs(15);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        if t0.elapsed() < next {
            continue;
        }
        next += Duration::from_secs(15);
        let virsh = |args: &[&str]| -> Option<String> {
            let o = Command::new("virsh")
                .args(["-q", "-c", uri])
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let Some(list) = virsh(&["list", "--name"]) else {
            continue;
        };
        let mut parts = Vec::new();
        for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let addr = virsh(&["domifaddr", name]).and_then(|t| {
                t.split_whitespace()
                    .find(|w| w.contains('/') && w.contains('.'))
                    .map(|w| w.split('/').next().unwrap_or(w).to_owned())
            });
            parts.push(match addr {
                Some(a) => format!("{name} {a}"),
                None => format!("{name} booting"),
            });
        }
        if !parts.is_empty() {
            eprintln!(
                "hsw: [{} s] running: {}",
                t0.elapsed().as_secs(),
                parts.join(", ")
            );
        }
    }
}

fn print_hosts(d: &Deployment, out: &mut dyn Write) {
    for h in &d.hosts {
        let units: Vec<String> = h
            .gpu_units
            .iter()
            .map(|u| {
                format!(
                    "{} {}{}",
                    u.kind.as_str(),
                    u.device,
                    u.profile
                        .as_deref()
                        .map(|p| format!(" {p}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "    {:<28} {:<15} {:<13} {}",
            h.name,
            h.ip.to_string(),
            h.role.as_str(),
            if units.is_empty() {
                String::new()
            } else {
                format!("GPU: {}", units.join(", "))
            }
        );
    }
    let _ = out.flush();
}

/// A VM that Terraform replaced (or made anew) has new SSH host keys at an old address: its entries leave the
/// cluster's known_hosts (`ssh-keygen -R`), so that SSH accepts the new key instead of refusing it. The
/// domains' UUIDs, recorded in `<state>/vm-ids.json`, tell which VMs are new.
fn forget_replaced_host_keys(
    ctx: &Ctx,
    uri: &str,
    d: &Deployment,
    out: &mut dyn Write,
) -> Step<()> {
    let record = ctx.state.root().join("vm-ids.json");
    let old: BTreeMap<String, String> = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut now = BTreeMap::new();
    for h in &d.hosts {
        let uuid = Command::new("virsh")
            .args(["-q", "-c", uri, "domuuid", &h.name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if old.get(&h.name) != Some(&uuid) {
            let kh = ctx.state.known_hosts(h.cluster());
            if kh.is_file() {
                let _ = Command::new("ssh-keygen")
                    .arg("-R")
                    .arg(h.ip.to_string())
                    .arg("-f")
                    .arg(&kh)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                say(
                    out,
                    format!(
                        "{} is a new VM: its old host key is removed from {}",
                        h.name,
                        kh.display()
                    ),
                );
            }
        }
        now.insert(h.name.clone(), uuid);
    }
    let text = serde_json::to_string_pretty(&now).unwrap_or_default();
    std::fs::write(&record, text)
        .map_err(|e| Failed::cannot_run(format!("cannot write {}: {e}", record.display())))
}

/// ansible-playbook (inside the sandbox), its output streaming through and kept in the log; returns the sum
/// of `changed=` in the PLAY RECAP.
fn run_playbook(ctx: &Ctx, files: &ansible_cmd::HpcFiles, out: &mut dyn Write) -> Step<u64> {
    let program =
        std::env::var_os("HSW_ANSIBLE_PLAYBOOK").unwrap_or_else(|| "ansible-playbook".into());
    let playbook = ctx.repo.join("ansible/playbook-hpc.yml");
    let argv =
        ansible_cmd::playbook_argv(&files.inventory, &files.extra_vars, &[playbook], false, &[]);
    let mut cmd = ctx.command(&program);
    cmd.args(&argv)
        .env("ANSIBLE_NOCOLOR", if ctx.color { "0" } else { "1" })
        .env("ANSIBLE_FORCE_COLOR", if ctx.color { "1" } else { "0" })
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    ansible_cmd::set_ansible_env(&mut cmd);
    say(
        out,
        format!(
            "running {} {}",
            PathBuf::from(&program).display(),
            argv.join(" ")
        ),
    );
    let mut child = cmd.stdin(Stdio::null()).spawn().map_err(|e| {
        Failed::cannot_run(format!(
            "cannot run ansible-playbook ({e}); install Ansible (ansible-core) or set HSW_ANSIBLE_PLAYBOOK"
        ))
    })?;
    let mut log = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            log.push_str(&line);
            log.push('\n');
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failed::cannot_run(format!("ansible-playbook did not finish: {e}")))?;
    let path = write_log(ctx, "ansible-hpc.log", &log);
    if !status.success() {
        return Err(Failed::new(format!(
            "the HPC playbook failed ({status}); the task and host are above (log {}). Fix it and run `hsw-cli \
             up` again: what worked is kept",
            path.display()
        )));
    }
    let recap = parse_recap(&log);
    if recap.is_empty() {
        return Err(Failed::new(format!(
            "ansible-playbook printed no PLAY RECAP (log {})",
            path.display()
        )));
    }
    Ok(recap.values().sum())
}

/// `host -> changed` from ansible-playbook's PLAY RECAP.
pub fn parse_recap(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut in_recap = false;
    for line in log.lines() {
        if line.starts_with("PLAY RECAP") {
            in_recap = true;
            continue;
        }
        if !in_recap {
            continue;
        }
        let Some((host, rest)) = line.split_once(" : ") else {
            continue;
        };
        let changed = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix("changed="))
            .and_then(|n| n.parse().ok());
        if let Some(c) = changed {
            out.insert(host.trim().to_owned(), c);
        }
    }
    out
}

/// `ssh` to a host (inside the sandbox) running a fixed command; returns (success, stdout, stderr).
fn ssh(
    ctx: &Ctx,
    cfg_user: &str,
    host: &hsw_core::ansible::hosts::Host,
    remote: &[&str],
) -> Step<(bool, String, String)> {
    let cluster = host.cluster();
    let mut cmd = ctx.command("ssh");
    cmd.arg("-i")
        .arg(ctx.state.ssh_private_key(cluster))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            ctx.state.known_hosts(cluster).display()
        ))
        .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
        .arg(format!("{cfg_user}@{}", host.ip))
        .arg("--")
        .args(remote);
    let (status, stdout, stderr) = capture(cmd, "ssh", "install openssh-client")?;
    Ok((status.success(), stdout, stderr))
}

fn check_ssh(ctx: &Ctx, user: &str, d: &Deployment, out: &mut dyn Write) -> Step<String> {
    let t = Instant::now();
    let mut pending: Vec<&hsw_core::ansible::hosts::Host> = d.hosts.iter().collect();
    let deadline = Duration::from_secs(300);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for h in pending {
            let (ok, stdout, _) = ssh(ctx, user, h, &["hostname"])?;
            let got = stdout.trim();
            if ok && got == h.name {
                say(
                    out,
                    format!("ssh {user}@{} ({}): hostname {got}", h.ip, h.name),
                );
            } else if ok {
                return Err(Failed::new(format!(
                    "ssh {user}@{} answered with hostname `{got}`, expected {} (did cloud-init read its seed?)",
                    h.ip, h.name
                )));
            } else {
                still.push(h);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if t.elapsed() > deadline {
            let names: Vec<&str> = pending.iter().map(|h| h.name.as_str()).collect();
            return Err(Failed::new(format!(
                "{} did not answer SSH within {} s; look at the guest consoles{}",
                names.join(", "),
                deadline.as_secs(),
                ctx.sandbox
                    .as_deref()
                    .map(|n| format!(" in /var/lib/hsw-sandbox/{n}/log/qemu/"))
                    .unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    Ok(format!("all {} VMs answer SSH", d.hosts.len()))
}

fn check_slurm(
    ctx: &Ctx,
    user: &str,
    d: &Deployment,
    timeout: Duration,
    out: &mut dyn Write,
) -> Step<Vec<String>> {
    let Some(ctl) = d.with_role(Role::Controller).next() else {
        return Err(Failed::new(
            "the HPC cluster has no controller in the inventory",
        ));
    };
    let computes: Vec<&str> = d
        .with_role(Role::Compute)
        .map(|h| h.name.as_str())
        .collect();
    let t = Instant::now();
    let mut last = String::new();
    loop {
        let (ok, stdout, stderr) = ssh(ctx, user, ctl, &["sinfo", "-h", "-N", "-o", "'%N %t'"])?;
        let states: BTreeMap<&str, &str> = stdout
            .lines()
            .filter_map(|l| l.trim().split_once(' '))
            .collect();
        let idle = computes
            .iter()
            .all(|c| states.get(c).is_some_and(|s| *s == "idle"));
        let now = if ok {
            stdout.trim().replace('\n', ", ")
        } else {
            stderr.trim().to_owned()
        };
        if now != last {
            say(out, format!("sinfo on {}: {now}", ctl.name));
            last = now;
        }
        if idle {
            break;
        }
        if t.elapsed() > timeout {
            return Err(Failed::new(format!(
                "the compute nodes are not all idle after {} s (sinfo: {last}); look at /var/log/slurm/ on the \
                 controller and the nodes",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    let idle_msg = format!("sinfo: {} idle", computes.join(", "));
    let n = computes.len().to_string();
    let (ok, stdout, stderr) = ssh(
        ctx,
        user,
        ctl,
        &["timeout", "120", "srun", "-N", &n, "-t", "2", "hostname"],
    )?;
    let mut got: Vec<&str> = stdout.lines().map(str::trim).collect();
    got.sort_unstable();
    let mut want = computes.clone();
    want.sort_unstable();
    if !ok || got != want {
        return Err(Failed::new(format!(
            "srun -N{n} hostname printed `{}` (expected {}){}",
            got.join(" "),
            want.join(" "),
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.trim())
            }
        )));
    }
    say(out, format!("srun -N{n} hostname: {}", got.join(" ")));
    Ok(vec![
        idle_msg,
        format!("srun -N{n} hostname: {}", got.join(" ")),
    ])
}

// -------------------------------------------------------------------------------------------- down

/// Runs `down`; returns the exit code.
pub fn down(args: &DownArgs, out: &mut dyn Write) -> u8 {
    let t0 = Instant::now();
    match down_steps(args, out) {
        Ok(()) => {
            say(out, format!("down finished in {} s", secs(t0)));
            exit::OK
        }
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", f.message);
            }
            f.code
        }
    }
}

fn down_steps(args: &DownArgs, out: &mut dyn Write) -> Step<()> {
    let ctx = Ctx::new(&args.target)?;
    let has_state = ctx.tf_dir.join("terraform.tfstate").is_file();
    let running = ctx
        .sandbox
        .as_deref()
        .is_none_or(|n| ctx.sandbox_running(n));
    step_header(out, 1, 3, "terraform destroy");
    if has_state && running {
        if !ctx.tfrc().is_file() || !ctx.tf_dir.join(".terraform").is_dir() {
            terraform_init(&ctx, out)?;
        }
        let mut a = vec!["destroy", "-input=false", "-auto-approve"];
        a.extend(ctx.no_color());
        let status = stream(
            ctx.terraform(&a),
            "terraform",
            "install Terraform (>= 1.0) or set HSW_TERRAFORM",
        )?;
        if !status.success() {
            if ctx.sandbox.is_none() {
                return Err(Failed::new(format!(
                    "terraform destroy failed ({status}); its messages above say why; run `hsw-cli down` again"
                )));
            }
            say(
                out,
                format!("terraform destroy failed ({status}); stopping the sandbox removes everything anyway"),
            );
        }
    } else if has_state {
        say(
            out,
            "the sandbox is not running, so nothing Terraform made exists any more; its state is removed",
        );
        for f in ["terraform.tfstate", "terraform.tfstate.backup"] {
            let _ = std::fs::remove_file(ctx.tf_dir.join(f));
        }
    } else {
        say(out, "no Terraform state: nothing to destroy");
    }
    // The VMs are gone: their host keys and addresses mean nothing now.
    for cluster in ["hpc", "cloud"] {
        let _ = std::fs::remove_file(ctx.state.known_hosts(cluster));
        let _ = std::fs::remove_file(ctx.state.known_hosts(cluster).with_extension("old"));
    }
    let _ = std::fs::remove_file(ctx.state.root().join("vm-ids.json"));
    let _ = std::fs::remove_file(ctx.tf_output_file());

    match &ctx.sandbox {
        Some(sb) => {
            step_header(out, 2, 3, &format!("stop sandbox '{sb}'"));
            if running {
                let uri_status = capture(
                    ctx.sandbox_cmd(sb, &["env", "URI"]),
                    "scripts/sandbox.sh",
                    "install bash",
                )?;
                let uri = uri_status.1.trim().to_owned();
                let mut left = libvirt_objects(&uri, None);
                let (_, pool, _) = capture(
                    ctx.sandbox_cmd(sb, &["env", "POOL_DIR"]),
                    "scripts/sandbox.sh",
                    "install bash",
                )?;
                let vms = Path::new(pool.trim()).join("vms");
                let disks: Vec<String> = std::fs::read_dir(&vms)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                if !disks.is_empty() {
                    left.push(format!(
                        "VM disks in {}: {}",
                        vms.display(),
                        disks.join(" ")
                    ));
                }
                say(
                    out,
                    format!(
                        "after destroy: {}",
                        if left.is_empty() {
                            "no domain, network or VM disk".to_owned()
                        } else {
                            left.join("; ")
                        }
                    ),
                );
            }
            let status = stream(
                ctx.sandbox_cmd(sb, &["stop"]),
                "scripts/sandbox.sh",
                "install bash",
            )?;
            if !status.success() {
                return Err(Failed::new(format!(
                    "scripts/sandbox.sh --name {sb} stop failed ({status}); run it again"
                )));
            }
            step_header(out, 3, 3, "nothing left");
            let (status, stdout, _) = capture(
                ctx.sandbox_cmd(sb, &["status"]),
                "scripts/sandbox.sh",
                "install bash",
            )?;
            let netns = Path::new("/run/netns").join(sb).exists();
            let dirs = [
                PathBuf::from("/run/hsw-sandbox").join(sb),
                PathBuf::from("/var/lib/hsw-sandbox").join(sb),
            ];
            let left_dirs: Vec<String> = dirs
                .iter()
                .filter(|d| d.exists())
                .map(|d| d.display().to_string())
                .collect();
            if status.code() != Some(3) || netns || !left_dirs.is_empty() {
                return Err(Failed::new(format!(
                    "sandbox '{sb}' is not completely gone: {}{}{}; run `scripts/sandbox.sh --name {sb} stop`",
                    stdout.trim(),
                    if netns { "; its netns exists" } else { "" },
                    if left_dirs.is_empty() {
                        String::new()
                    } else {
                        format!("; left: {}", left_dirs.join(" "))
                    }
                )));
            }
            say(
                out,
                format!(
                    "nothing left: no domain, network, volume or pool directory, no libvirtd or qemu, no netns \
                     '{sb}' (`scripts/sandbox.sh --name {sb} status`: not running)"
                ),
            );
        }
        None => {
            step_header(out, 2, 3, "host libvirt (no sandbox)");
            let (_, source) =
                read_config(args.target.config.as_deref()).map_err(Failed::cannot_run)?;
            let validated = config::validate_str(&source);
            let Some(cfg) = validated.valid_config() else {
                return Err(Failed::new(
                    "the config is not valid; run `hsw-cli validate`",
                ));
            };
            let uri = cfg
                .host
                .as_ref()
                .and_then(|h| h.libvirt_uri.clone())
                .unwrap_or_else(|| "qemu:///system".into());
            step_header(out, 3, 3, "nothing left");
            let prefix = format!("{}-", cfg.metadata.name);
            let left = libvirt_objects(&uri, Some(&prefix));
            if !left.is_empty() {
                return Err(Failed::new(format!(
                    "left after destroy: {}; run `hsw-cli down --no-sandbox` again",
                    left.join("; ")
                )));
            }
            say(
                out,
                format!("nothing left: no domain or network named {prefix}* in {uri}"),
            );
        }
    }
    Ok(())
}

/// Domains, networks and VM disks libvirt still has (those starting with `prefix`, or all).
fn libvirt_objects(uri: &str, prefix: Option<&str>) -> Vec<String> {
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("virsh")
            .args(["-q", "-c", uri])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && prefix.is_none_or(|p| l.starts_with(p)))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut left = Vec::new();
    let doms = list(&["list", "--all", "--name"]);
    if !doms.is_empty() {
        left.push(format!("domains {}", doms.join(" ")));
    }
    let nets = list(&["net-list", "--all", "--name"]);
    if !nets.is_empty() {
        left.push(format!("networks {}", nets.join(" ")));
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recap_sums_changed_per_host() {
        let log = "TASK [x]\nok: [a]\n\nPLAY RECAP *********\n\
                   hsw-dev-compute-1          : ok=20   changed=3    unreachable=0    failed=0\n\
                   hsw-dev-controller-1       : ok=18   changed=0    unreachable=0    failed=0\n";
        let r = parse_recap(log);
        assert_eq!(r.len(), 2);
        assert_eq!(r.get("hsw-dev-compute-1"), Some(&3));
        assert_eq!(r.values().sum::<u64>(), 3);
        assert!(parse_recap("no recap here").is_empty());
    }
}
