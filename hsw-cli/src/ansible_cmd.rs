//! `hsw-cli ansible hpc`: configures Munge and Slurm on the HPC cluster's VMs.
//!
//! It writes the inventory and the rendered Slurm files to the state directory, makes sure the cluster's SSH
//! key pair and Munge key exist there, and runs `ansible-playbook -i <inventory> -e @<vars>
//! ansible/playbook-hpc.yml`, whose output streams through. The Slurm files are rendered here, in Rust
//! ([`hsw_core::slurm`]), and reach the playbook as text in the extra-variables file: one source of truth.
//!
//! The per-cluster SSH public keys are what `hsw-cli generate` hands to cloud-init: see
//! [`cluster_public_keys`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, Subcommand};
use hsw_core::ansible::{Inventory, StateLayout};
use hsw_core::slurm;
use serde_json::json;

use crate::exit;
use crate::inventory::{header, load, SourceArgs};

/// Bytes of a Munge key (munged accepts 32 to 1024).
pub const MUNGE_KEY_BYTES: usize = 1024;

/// `hsw-cli ansible`.
#[derive(Debug, Subcommand)]
pub enum AnsibleCommand {
    /// Configure Munge and Slurm on the HPC cluster (slurmctld on the controller, slurmd on compute nodes).
    Hpc(HpcArgs),
}

/// `hsw-cli ansible hpc`.
#[derive(Debug, Args)]
pub struct HpcArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The playbook to run.
    #[arg(long, value_name = "FILE", default_value = "ansible/playbook-hpc.yml")]
    pub playbook: PathBuf,
    /// The ansible-playbook binary.
    #[arg(
        long,
        value_name = "PATH",
        env = "HSW_ANSIBLE_PLAYBOOK",
        default_value = "ansible-playbook"
    )]
    pub ansible_playbook: PathBuf,
    /// Write the files and print the command, but run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// More arguments for ansible-playbook, after `--` (e.g. `-- --check --diff`).
    #[arg(last = true, value_name = "ARGS")]
    pub extra: Vec<String>,
}

/// Runs an `ansible` subcommand; returns the exit code.
pub fn run(cmd: &AnsibleCommand, out: &mut dyn Write) -> u8 {
    match cmd {
        AnsibleCommand::Hpc(args) => hpc(args, out),
    }
}

/// What `ansible hpc` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HpcFiles {
    /// The inventory.
    pub inventory: PathBuf,
    /// The extra-variables file.
    pub extra_vars: PathBuf,
    /// The rendered Slurm files' directory.
    pub slurm_dir: PathBuf,
    /// The cluster's SSH public key.
    pub ssh_public_key: PathBuf,
    /// The cluster's Munge key.
    pub munge_key: PathBuf,
}

fn hpc(args: &HpcArgs, out: &mut dyn Write) -> u8 {
    let loaded = match load(&args.source) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}", e.message.trim_end());
            return e.code;
        }
    };
    let rendered = match slurm::render(&loaded.config, &loaded.deployment) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID;
        }
    };
    let files = match write_hpc_files(&loaded, &rendered) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let mut argv: Vec<String> = vec![
        "-i".into(),
        files.inventory.display().to_string(),
        "-e".into(),
        format!("@{}", files.extra_vars.display()),
    ];
    argv.push(args.playbook.display().to_string());
    argv.extend(args.extra.iter().cloned());
    let _ = writeln!(
        out,
        "hsw: wrote {} (inventory), {} (Slurm files), {} (playbook variables)",
        files.inventory.display(),
        files.slurm_dir.display(),
        files.extra_vars.display()
    );
    let _ = writeln!(
        out,
        "hsw: SSH public key for cloud-init: {}",
        files.ssh_public_key.display()
    );
    let shown: Vec<String> = std::iter::once(args.ansible_playbook.display().to_string())
        .chain(argv.iter().cloned())
        .collect();
    let _ = writeln!(out, "hsw: running {}", shown.join(" "));
    let _ = out.flush();
    if args.dry_run {
        return exit::OK;
    }
    let status = Command::new(&args.ansible_playbook)
        .args(&argv)
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => exit::OK,
        Ok(s) => {
            eprintln!(
                "error: ansible-playbook failed ({s}); its output above says which task and host"
            );
            exit::INVALID
        }
        Err(e) => {
            eprintln!(
                "error: cannot run {} ({e}); install Ansible (ansible-core) or set HSW_ANSIBLE_PLAYBOOK",
                args.ansible_playbook.display()
            );
            exit::CANNOT_RUN
        }
    }
}

/// Writes everything `ansible hpc` needs into the state directory: keys (kept when they exist), the
/// inventory, the rendered Slurm files and the playbook's variables.
pub fn write_hpc_files(
    loaded: &crate::inventory::Loaded,
    rendered: &slurm::RenderedFiles,
) -> Result<HpcFiles, String> {
    let state = &loaded.state;
    make_private_dir(state.root())?;
    let keys = cluster_public_keys(state, &loaded.config)?;
    let ssh_public_key = keys
        .get("hpc")
        .cloned()
        .unwrap_or_else(|| state.ssh_public_key("hpc"));
    let munge_key = ensure_munge_key(state, "hpc")?;

    let inventory = Inventory::build(&loaded.config, &loaded.deployment, state);
    make_private_dir(&state.ansible_dir())?;
    let inventory_path = state.inventory();
    write_file(
        &inventory_path,
        inventory.to_yaml(&header(loaded)).as_bytes(),
    )?;

    let slurm_dir = state.slurm_dir("hpc");
    make_private_dir(&slurm_dir)?;
    write_file(
        &slurm_dir.join("slurm.conf"),
        rendered.slurm_conf.as_bytes(),
    )?;
    write_file(&slurm_dir.join("gres.conf"), rendered.gres_conf.as_bytes())?;
    write_file(
        &slurm_dir.join("cgroup.conf"),
        rendered.cgroup_conf.as_bytes(),
    )?;

    let vars = json!({
        "hsw_munge_key_file": munge_key.display().to_string(),
        "hsw_slurm_conf": rendered.slurm_conf,
        "hsw_gres_conf": rendered.gres_conf,
        "hsw_cgroup_conf": rendered.cgroup_conf,
        "hsw_slurm_state_save_location": slurm::STATE_SAVE_LOCATION,
        "hsw_slurm_spool_dir": slurm::SLURMD_SPOOL_DIR,
        "hsw_slurm_log_dir": slurm::LOG_DIR,
    });
    let extra_vars = state.extra_vars("hpc");
    let mut text = serde_json::to_string_pretty(&vars).unwrap_or_default();
    text.push('\n');
    write_file(&extra_vars, text.as_bytes())?;
    Ok(HpcFiles {
        inventory: inventory_path,
        extra_vars,
        slurm_dir,
        ssh_public_key,
        munge_key,
    })
}

/// Creates a directory (and its missing parents) readable by its owner only. An existing directory is left
/// as it is: `--state-dir` may name a directory that is not ours to restrict.
fn make_private_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))
}

/// Writes a file through a temporary file and a rename, so a reader never sees half of it.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp-hsw");
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Makes sure a cluster's SSH key pair exists (`ssh-keygen -t ed25519 -N '' -f <state>/ssh/<cluster>/id_ed25519`,
/// run with an argument vector; the binary is `HSW_SSH_KEYGEN` or `ssh-keygen`) and returns the public
/// key's path. An existing key is kept; its mode is set to 0600, and a missing public half is derived
/// from it. The private key is never printed.
pub fn ensure_ssh_keypair(state: &StateLayout, cluster: &str) -> Result<PathBuf, String> {
    let dir = state.ssh_dir(cluster);
    make_private_dir(&dir)?;
    let private = state.ssh_private_key(cluster);
    let public = state.ssh_public_key(cluster);
    let keygen = std::env::var_os("HSW_SSH_KEYGEN").unwrap_or_else(|| "ssh-keygen".into());
    let cannot_run = |e: std::io::Error| {
        format!(
            "cannot run {} ({e}); install OpenSSH's client (openssh-client) or set HSW_SSH_KEYGEN",
            PathBuf::from(&keygen).display()
        )
    };
    if private.exists() {
        fs::set_permissions(&private, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set the mode of {}: {e}", private.display()))?;
        if !public.exists() {
            let output = Command::new(&keygen)
                .arg("-y")
                .arg("-f")
                .arg(&private)
                .stdin(Stdio::null())
                .output()
                .map_err(cannot_run)?;
            if !output.status.success() {
                return Err(format!(
                    "ssh-keygen could not derive the public key of {}: {}",
                    private.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            write_file(&public, &output.stdout)?;
        }
        return Ok(public);
    }
    let output = Command::new(&keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("hsw-{cluster}"))
        .arg("-f")
        .arg(&private)
        .stdin(Stdio::null())
        .output()
        .map_err(cannot_run)?;
    if !output.status.success() || !private.exists() {
        return Err(format!(
            "ssh-keygen could not create {}: {}",
            private.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", private.display()))?;
    Ok(public)
}

/// The SSH public key path of each cluster `config` defines, creating the key pairs that are missing:
/// what `hsw-cli generate` passes to cloud-init (`ssh_authorized_keys`). The path alone, without creating
/// anything, is [`StateLayout::ssh_public_key`].
pub fn cluster_public_keys(
    state: &StateLayout,
    config: &hsw_core::config::ClusterConfig,
) -> Result<BTreeMap<&'static str, PathBuf>, String> {
    let mut out = BTreeMap::new();
    if config.clusters.hpc.is_some() {
        out.insert("hpc", ensure_ssh_keypair(state, "hpc")?);
    }
    if config.clusters.cloud.is_some() {
        out.insert("cloud", ensure_ssh_keypair(state, "cloud")?);
    }
    Ok(out)
}

/// Makes sure a cluster's Munge key exists: 1024 bytes from the kernel's random source, mode 0400, made
/// here on the workstation and never taken from the image (every VM cloned from an image with munge
/// installed shares the image's key). An existing key of at least 32 bytes is kept (its mode set to 0400).
pub fn ensure_munge_key(state: &StateLayout, cluster: &str) -> Result<PathBuf, String> {
    let path = state.munge_key(cluster);
    if let Some(dir) = path.parent() {
        make_private_dir(dir)?;
    }
    if let Ok(meta) = fs::metadata(&path) {
        if meta.len() >= 32 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o400))
                .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
            return Ok(path);
        }
        fs::remove_file(&path).map_err(|e| {
            format!(
                "the Munge key {} is shorter than 32 bytes and cannot be replaced: {e}",
                path.display()
            )
        })?;
    }
    let mut key = vec![0u8; MUNGE_KEY_BYTES];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("cannot read random bytes from /dev/urandom: {e}"))?;
    let tmp = path.with_extension("tmp-hsw");
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write the Munge key {}: {e}", path.display())
    })?;
    Ok(path)
}
