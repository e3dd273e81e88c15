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
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use hsw_core::ansible::{Inventory, StateLayout};
use hsw_core::slurm;
use serde_json::json;

use crate::error::Error;
use crate::exit;
use crate::inventory::{header, load_args, SourceArgs};
use crate::runner::{Cmd, Runner, SystemRunner};

/// Bytes of a Munge key (munged accepts 32 to 1024).
pub const MUNGE_KEY_BYTES: usize = 1024;

/// `hsw-cli ansible`.
#[derive(Debug, Subcommand)]
pub enum AnsibleCommand {
    /// Configure Munge and Slurm on the HPC cluster (slurmctld on the controller, slurmd on compute nodes).
    Hpc(HpcArgs),
    /// Run the platform playbooks (security, Kubernetes, MLOps, monitoring) on both clusters, with the
    /// variables cluster.yaml gives them.
    Platform(PlatformArgs),
}

/// The platform playbooks, in the order `ansible platform` runs them (one ansible-playbook run).
pub const PLATFORM_PLAYBOOKS: [&str; 4] = ["security", "k8s", "mlops", "monitoring"];

/// The file of platform playbook `name` (one of [`PLATFORM_PLAYBOOKS`]) in the playbooks' directory.
pub fn platform_playbook(ansible_dir: &Path, name: &str) -> PathBuf {
    ansible_dir.join(format!("playbook-{name}.yml"))
}

/// `hsw-cli ansible platform`.
#[derive(Debug, Args)]
pub struct PlatformArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The playbooks to run, in this order (each is `<ansible dir>/playbook-<name>.yml`).
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        default_values_t = PLATFORM_PLAYBOOKS.map(str::to_owned),
        value_parser = clap::builder::PossibleValuesParser::new(PLATFORM_PLAYBOOKS)
    )]
    pub playbooks: Vec<String>,
    /// The directory of the playbooks.
    #[arg(long, value_name = "DIR", default_value = "ansible")]
    pub ansible_dir: PathBuf,
    /// The guests have no internet: skip the downloads (`--skip-tags online`) and what needs them
    /// (`hsw_offline=true`). What the guest image carries (containerd, PostgreSQL, Prometheus, the node
    /// exporter, nftables, auditd, unattended-upgrades, OpenSSH) is still configured for real.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How `ansible hpc` and `ansible platform` run ansible-playbook.
#[derive(Debug, Args)]
pub struct RunArgs {
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

/// `hsw-cli ansible hpc`.
#[derive(Debug, Args)]
pub struct HpcArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The playbook to run.
    #[arg(long, value_name = "FILE", default_value = "ansible/playbook-hpc.yml")]
    pub playbook: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs an `ansible` subcommand; returns the exit code.
pub fn run(cmd: &AnsibleCommand, out: &mut dyn Write) -> u8 {
    match cmd {
        AnsibleCommand::Hpc(args) => hpc(args, out),
        AnsibleCommand::Platform(args) => platform(args, out),
    }
    .unwrap_or_else(|e| e.report())
}

/// What `ansible platform` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformFiles {
    /// The inventory.
    pub inventory: PathBuf,
    /// The extra-variables file.
    pub extra_vars: PathBuf,
}

/// `ansible platform`: the inventory and the platform variables, then the playbooks; the playbook's exit code.
fn platform(args: &PlatformArgs, out: &mut dyn Write) -> Result<u8, Error> {
    let loaded = load_args(&args.source)?;
    let files = write_platform_files(&loaded, args.offline)?;
    let playbooks: Vec<PathBuf> = args
        .playbooks
        .iter()
        .map(|p| platform_playbook(&args.ansible_dir, p))
        .collect();
    let argv = playbook_argv(
        &files.inventory,
        &files.extra_vars,
        &playbooks,
        args.offline,
        &args.run.extra,
    );
    let _ = writeln!(
        out,
        "hsw: wrote {} (inventory), {} (playbook variables)",
        files.inventory.display(),
        files.extra_vars.display()
    );
    Ok(run_playbook(&args.run, &argv, out))
}

/// Prints the ansible-playbook command line, then (unless `--dry-run`) runs it with [`ansible_env`]'s settings
/// where the environment has none, and maps its end to hsw's exit codes.
fn run_playbook(run: &RunArgs, argv: &[String], out: &mut dyn Write) -> u8 {
    let ansible_playbook = &run.ansible_playbook;
    let shown: Vec<String> = std::iter::once(ansible_playbook.display().to_string())
        .chain(argv.iter().cloned())
        .collect();
    let _ = writeln!(out, "hsw: running {}", shown.join(" "));
    let _ = out.flush();
    if run.dry_run {
        return exit::OK;
    }
    let cmd = Cmd::new(ansible_playbook).args(argv).envs(ansible_env());
    match SystemRunner.stream(&cmd) {
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
                ansible_playbook.display()
            );
            exit::CANNOT_RUN
        }
    }
}

/// Where Debian's ansible-mitogen (which `scripts/install-deps.sh` installs) keeps its strategy plugins.
const MITOGEN_STRATEGIES: &str = "/usr/lib/python3/dist-packages/ansible_mitogen/plugins/strategy";

/// hsw's Ansible settings for an ansible-playbook command (every hsw run of it), each only where the
/// environment does not set it: see [`settings`]. mitogen is used where Debian's ansible-mitogen is installed,
/// unless `HSW_ANSIBLE_MITOGEN=0`.
pub fn ansible_env() -> Vec<(&'static str, &'static str)> {
    let mitogen = std::env::var_os("HSW_ANSIBLE_MITOGEN").is_none_or(|v| v != "0")
        && Path::new(MITOGEN_STRATEGIES)
            .join("mitogen_linear.py")
            .is_file();
    settings(mitogen)
        .into_iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect()
}

/// The settings: pipelining (one SSH round trip per task), a 120 s timeout for connections and for sudo's
/// prompt, which the default 10 s missed on busy TCG guests ("Timeout waiting for privilege escalation
/// prompt"), and 60 s once for mitogen's connection to a 2 GiB Kubernetes worker at host load 5 ("Connection
/// timed out", not understood yet), no retry files; with `mitogen`, mitogen's linear strategy, which keeps one Python interpreter per
/// host across tasks instead of starting one per task: the HPC playbook's no-change run took 0.17x the time of
/// Ansible's own `linear` on TCG guests (`tests/bench/ansible-strategy.sh`).
fn settings(mitogen: bool) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![
        ("ANSIBLE_PIPELINING", "True"),
        ("ANSIBLE_TIMEOUT", "120"),
        ("ANSIBLE_RETRY_FILES_ENABLED", "False"),
    ];
    if mitogen {
        env.push(("ANSIBLE_STRATEGY_PLUGINS", MITOGEN_STRATEGIES));
        env.push(("ANSIBLE_STRATEGY", "mitogen_linear"));
    }
    env
}

/// ansible-playbook's arguments, the same for every hsw run of it (`ansible hpc`, `ansible platform`, `up`): the
/// inventory, the variables file, `--skip-tags online` for an offline run, the playbooks (one run, one PLAY RECAP
/// over all of them), then the user's extra arguments.
pub fn playbook_argv(
    inventory: &Path,
    extra_vars: &Path,
    playbooks: &[PathBuf],
    offline: bool,
    extra: &[String],
) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "-i".into(),
        inventory.display().to_string(),
        "-e".into(),
        format!("@{}", extra_vars.display()),
    ];
    if offline {
        argv.push("--skip-tags".into());
        argv.push("online".into());
    }
    argv.extend(playbooks.iter().map(|p| p.display().to_string()));
    argv.extend(extra.iter().cloned());
    argv
}

/// The variables of the platform playbooks (`ansible/README.md` lists them) from cluster.yaml: only what
/// the file says, so that the playbooks' defaults (`ansible/group_vars/all/`) hold for the rest; and
/// `hsw_gpus_simulated` ([`hsw_core::ansible::Deployment::gpus_simulated`]), which role nvidia_guest reads.
pub fn platform_vars(
    config: &hsw_core::config::ClusterConfig,
    state: &StateLayout,
    offline: bool,
    gpus_simulated: bool,
) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    v.insert("hsw_offline".into(), json!(offline));
    v.insert("hsw_gpus_simulated".into(), json!(gpus_simulated));
    v.insert(
        "hsw_secrets_dir".into(),
        json!(state.root().join("secrets").display().to_string()),
    );
    for cluster in hsw_core::config::model::CLUSTER_KEYS {
        let subnet = hsw_core::config::rules::cluster_network(config, cluster)
            .and_then(|n| config.global.networks.get(n))
            .map(|n| n.subnet.clone());
        if let Some(subnet) = subnet {
            v.insert(format!("hsw_{cluster}_subnet"), json!(subnet));
        }
    }
    if let Some(r) = config.mlflow_runtime() {
        v.insert("mlops_mlflow_runtime".into(), json!(r.as_str()));
    }
    if let Some(k) = config.clusters.cloud.as_ref().map(|c| &c.kubernetes_config) {
        v.insert("k8s_cni".into(), json!(k.cni));
        v.insert("k8s_source".into(), json!(k.source.unwrap_or_default()));
        v.insert("k8s_ingress".into(), json!(k.ingress));
        v.insert("k8s_storage_class".into(), json!(k.storage_class));
        for (key, val) in [
            ("k8s_version", &k.version),
            ("k8s_pod_subnet", &k.pod_subnet),
            ("k8s_service_subnet", &k.service_subnet),
        ] {
            if let Some(val) = val {
                v.insert(key.into(), json!(val));
            }
        }
    }
    if let Some(sec) = &config.global.security {
        for (key, val) in [
            ("security_ssh_password_auth", sec.ssh_password_auth),
            ("security_segment_networks", sec.segment_networks),
            ("security_audit", sec.audit),
            ("security_unattended_upgrades", sec.unattended_upgrades),
        ] {
            if let Some(val) = val {
                v.insert(key.into(), json!(val));
            }
        }
    }
    if let Some(m) = &config.global.monitoring {
        if let Some(e) = m.enabled {
            v.insert("monitoring_enabled".into(), json!(e));
        }
        if let Some(r) = &m.prometheus_retention {
            v.insert("monitoring_prometheus_retention".into(), json!(r));
        }
        if let Some(d) = m.dcgm_exporter {
            v.insert("monitoring_dcgm_exporter".into(), json!(d));
        }
    }
    serde_json::Value::Object(v)
}

/// Writes the inventory and the platform playbooks' variables (`<state>/ansible/platform-vars.json`).
pub fn write_platform_files(
    loaded: &crate::inventory::Loaded,
    offline: bool,
) -> Result<PlatformFiles, Error> {
    let state = &loaded.state;
    make_private_dir(state.root())?;
    make_private_dir(&state.root().join("secrets"))?;
    let inventory = Inventory::build(&loaded.config, &loaded.deployment, state);
    make_private_dir(&state.ansible_dir())?;
    let inventory_path = state.inventory();
    write_file(
        &inventory_path,
        inventory.to_yaml(&header(loaded)).as_bytes(),
    )?;
    let mut vars = platform_vars(
        &loaded.config,
        state,
        offline,
        loaded.deployment.gpus_simulated(&loaded.config),
    );
    // Where the services run is decided here, once, so that `up`'s checks look where the playbooks put them.
    let d = &loaded.deployment;
    for (key, host) in [
        ("monitoring_server", d.monitoring_server()),
        ("mlops_postgres_host", d.postgres_host()),
    ] {
        if let (Some(h), Some(map)) = (host, vars.as_object_mut()) {
            map.insert(key.into(), json!(h.name));
        }
    }
    let extra_vars = state.extra_vars("platform");
    let mut text = serde_json::to_string_pretty(&vars).unwrap_or_default();
    text.push('\n');
    write_file(&extra_vars, text.as_bytes())?;
    Ok(PlatformFiles {
        inventory: inventory_path,
        extra_vars,
    })
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
    /// The cluster's slurmdbd database password.
    pub slurmdbd_password: PathBuf,
}

/// `ansible hpc`: keys, inventory, the Slurm files and the variables, then the HPC playbook; its exit code.
fn hpc(args: &HpcArgs, out: &mut dyn Write) -> Result<u8, Error> {
    let loaded = load_args(&args.source)?;
    let rendered = slurm::render(&loaded.config, &loaded.deployment)
        .map_err(|e| Error::invalid(e.to_string()))?;
    let files = write_hpc_files(&SystemRunner, &loaded, &rendered)?;
    let argv = playbook_argv(
        &files.inventory,
        &files.extra_vars,
        std::slice::from_ref(&args.playbook),
        false,
        &args.run.extra,
    );
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
    Ok(run_playbook(&args.run, &argv, out))
}

/// Writes everything `ansible hpc` needs into the state directory: keys (kept when they exist), the
/// inventory, the rendered Slurm files and the playbook's variables.
pub fn write_hpc_files(
    runner: &dyn Runner,
    loaded: &crate::inventory::Loaded,
    rendered: &slurm::RenderedFiles,
) -> Result<HpcFiles, Error> {
    let state = &loaded.state;
    make_private_dir(state.root())?;
    let keys = cluster_public_keys(runner, state, &loaded.config)?;
    let ssh_public_key = keys
        .get("hpc")
        .cloned()
        .unwrap_or_else(|| state.ssh_public_key("hpc"));
    let munge_key = ensure_munge_key(state, "hpc")?;
    let slurmdbd_password = ensure_slurmdbd_password(state, "hpc")?;

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
    write_file(
        &slurm_dir.join("slurmdbd.conf"),
        rendered.slurmdbd_conf.as_bytes(),
    )?;

    let mut vars = json!({
        "hsw_munge_key_file": munge_key.display().to_string(),
        "hsw_slurm_conf": rendered.slurm_conf,
        "hsw_gres_conf": rendered.gres_conf,
        "hsw_cgroup_conf": rendered.cgroup_conf,
        "hsw_slurmdbd_conf": rendered.slurmdbd_conf,
        "hsw_slurmdbd_password_file": slurmdbd_password.display().to_string(),
        "hsw_slurmdbd_port": slurm::SLURMDBD_PORT,
        "hsw_slurmdbd_database": slurm::ACCOUNTING_DB,
        "hsw_slurmdbd_database_user": slurm::ACCOUNTING_DB_USER,
        "hsw_slurm_state_save_location": slurm::STATE_SAVE_LOCATION,
        "hsw_slurm_spool_dir": slurm::SLURMD_SPOOL_DIR,
        "hsw_slurm_log_dir": slurm::LOG_DIR,
        "hsw_gpus_simulated": loaded.deployment.gpus_simulated(&loaded.config),
    });
    let controller_ip = loaded
        .deployment
        .with_role(hsw_core::ansible::hosts::Role::Controller)
        .next()
        .map(|h| h.ip.to_string())
        .unwrap_or_default();
    if let (Some(v), serde_json::Value::Object(site)) = (
        vars.as_object_mut(),
        slurm::site::vars(&loaded.config, &controller_ip, loaded.config.login_user()),
    ) {
        v.extend(site);
    }
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
        slurmdbd_password,
    })
}

/// Creates a directory (and its missing parents) readable by its owner only. An existing directory is left
/// as it is: `--state-dir` may name a directory that is not ours to restrict.
fn make_private_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Error::cannot_run(format!(
                "cannot create the directory {}: {e}",
                dir.display()
            ))
        })
}

/// Writes a file of the state directory (inventory, playbook variables, rendered configuration: some hold
/// secrets) through [`hsw_core::fsx::write_atomic`], readable by its owner only.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    hsw_core::fsx::write_atomic(path, bytes, 0o600)
        .map_err(|e| Error::cannot_run(format!("cannot write {}: {e}", path.display())))
}

/// Makes sure a cluster's SSH key pair exists (`ssh-keygen -t ed25519 -N '' -f <state>/ssh/<cluster>/id_ed25519`,
/// run with an argument vector; the binary is `HSW_SSH_KEYGEN` or `ssh-keygen`) and returns the public
/// key's path. An existing key is kept; its mode is set to 0600, and a missing public half is derived
/// from it. The private key is never printed.
pub fn ensure_ssh_keypair(
    runner: &dyn Runner,
    state: &StateLayout,
    cluster: &str,
) -> Result<PathBuf, Error> {
    let dir = state.ssh_dir(cluster);
    make_private_dir(&dir)?;
    let private = state.ssh_private_key(cluster);
    let public = state.ssh_public_key(cluster);
    let keygen = std::env::var_os("HSW_SSH_KEYGEN").unwrap_or_else(|| "ssh-keygen".into());
    let cannot_run = |e: std::io::Error| {
        Error::cannot_run(format!(
            "cannot run {} ({e}); install OpenSSH's client (openssh-client) or set HSW_SSH_KEYGEN",
            PathBuf::from(&keygen).display()
        ))
    };
    if private.exists() {
        fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).map_err(|e| {
            Error::cannot_run(format!("cannot set the mode of {}: {e}", private.display()))
        })?;
        if !public.exists() {
            let derive = Cmd::new(&keygen).arg("-y").arg("-f").arg(&private);
            let output = runner.capture(&derive).map_err(cannot_run)?;
            if !output.status.success() {
                return Err(Error::cannot_run(format!(
                    "ssh-keygen could not derive the public key of {}: {}",
                    private.display(),
                    output.stderr.trim()
                )));
            }
            write_file(&public, output.stdout.as_bytes())?;
        }
        return Ok(public);
    }
    let create = Cmd::new(&keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("hsw-{cluster}"))
        .arg("-f")
        .arg(&private);
    let output = runner.capture(&create).map_err(cannot_run)?;
    if !output.status.success() || !private.exists() {
        return Err(Error::cannot_run(format!(
            "ssh-keygen could not create {}: {}",
            private.display(),
            output.stderr.trim()
        )));
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).map_err(|e| {
        Error::cannot_run(format!("cannot set the mode of {}: {e}", private.display()))
    })?;
    Ok(public)
}

/// The SSH public key path of each cluster `config` defines, creating the key pairs that are missing:
/// what `hsw-cli generate` passes to cloud-init (`ssh_authorized_keys`). The path alone, without creating
/// anything, is [`StateLayout::ssh_public_key`].
pub fn cluster_public_keys(
    runner: &dyn Runner,
    state: &StateLayout,
    config: &hsw_core::config::ClusterConfig,
) -> Result<BTreeMap<&'static str, PathBuf>, Error> {
    let mut out = BTreeMap::new();
    if config.clusters.hpc.is_some() {
        out.insert("hpc", ensure_ssh_keypair(runner, state, "hpc")?);
    }
    if config.clusters.cloud.is_some() {
        out.insert("cloud", ensure_ssh_keypair(runner, state, "cloud")?);
    }
    Ok(out)
}

/// Makes sure a cluster's Munge key exists: 1024 bytes from the kernel's random source, mode 0400, made
/// here on the workstation and never taken from the image (every VM cloned from an image with munge
/// installed shares the image's key). An existing key of at least 32 bytes is kept (its mode set to 0400).
pub fn ensure_munge_key(state: &StateLayout, cluster: &str) -> Result<PathBuf, Error> {
    ensure_secret(
        &state.munge_key(cluster),
        "the Munge key",
        0o400,
        |old| old.len() >= 32,
        || random_bytes(MUNGE_KEY_BYTES),
    )
}

/// Characters of the slurmdbd database password ([`SLURMDBD_PASSWORD_LEN`] of them): nothing that needs quoting
/// in SQL or in slurmdbd.conf.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of the slurmdbd database password.
pub const SLURMDBD_PASSWORD_LEN: usize = 32;

/// Makes sure a cluster's slurmdbd database password exists beside its Munge key
/// ([`StateLayout::slurmdbd_password`]): [`SLURMDBD_PASSWORD_LEN`] letters and digits from the kernel's random
/// source, made once, mode 0600. The playbook reads it with a file lookup in `no_log` tasks; it is never printed
/// and never on a command line. An existing password of the same shape is kept.
pub fn ensure_slurmdbd_password(state: &StateLayout, cluster: &str) -> Result<PathBuf, Error> {
    ensure_secret(
        &state.slurmdbd_password(cluster),
        "the slurmdbd database password",
        0o600,
        |old| {
            old.len() == SLURMDBD_PASSWORD_LEN && old.iter().all(|b| PASSWORD_ALPHABET.contains(b))
        },
        || {
            let mut out = Vec::with_capacity(SLURMDBD_PASSWORD_LEN);
            while out.len() < SLURMDBD_PASSWORD_LEN {
                // Rejection sampling: 248 = 4 * 62, so every character is equally likely.
                out.extend(
                    random_bytes(64)?
                        .into_iter()
                        .filter(|b| *b < 248)
                        .map(|b| PASSWORD_ALPHABET[usize::from(b) % PASSWORD_ALPHABET.len()]),
                );
            }
            out.truncate(SLURMDBD_PASSWORD_LEN);
            Ok(out)
        },
    )
}

/// `n` bytes from the kernel's random source.
fn random_bytes(n: usize) -> Result<Vec<u8>, Error> {
    let mut key = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| {
            Error::cannot_run(format!("cannot read random bytes from /dev/urandom: {e}"))
        })?;
    Ok(key)
}

/// A secret file of the state directory, made once: an existing one that `keep` accepts is kept (its mode set
/// to `mode`), one it refuses is replaced by `make()`'s bytes; a symbolic link is refused.
fn ensure_secret(
    path: &Path,
    what: &str,
    mode: u32,
    keep: impl Fn(&[u8]) -> bool,
    make: impl Fn() -> Result<Vec<u8>, Error>,
) -> Result<PathBuf, Error> {
    if let Some(dir) = path.parent() {
        make_private_dir(dir)?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err(Error::cannot_run(format!(
                "{what} {} is a symbolic link, and hsw never writes or changes a file through a link: \
                 remove the link and run the command again",
                path.display()
            )));
        }
        let old = fs::read(path).map_err(|e| {
            Error::cannot_run(format!("cannot read {what} {}: {e}", path.display()))
        })?;
        if keep(&old) {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
                Error::cannot_run(format!("cannot set the mode of {}: {e}", path.display()))
            })?;
            return Ok(path.to_path_buf());
        }
        fs::remove_file(path).map_err(|e| {
            Error::cannot_run(format!(
                "{what} {} is not usable and cannot be replaced: {e}",
                path.display()
            ))
        })?;
    }
    let bytes = make()?;
    hsw_core::fsx::write_atomic(path, &bytes, mode)
        .map_err(|e| Error::cannot_run(format!("cannot write {what} {}: {e}", path.display())))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_config() -> hsw_core::config::ClusterConfig {
        let v = hsw_core::config::validate_str(hsw_core::config::DEFAULT_CONFIG);
        v.valid_config()
            .cloned()
            .unwrap_or_else(|| panic!("the embedded default is not valid"))
    }

    #[test]
    fn platform_vars_come_from_the_config() {
        let state = StateLayout::new("/state");
        let vars = platform_vars(&default_config(), &state, true, true);
        let want = json!({
            "hsw_offline": true,
            "hsw_gpus_simulated": true,
            "hsw_secrets_dir": "/state/secrets",
            "hsw_hpc_subnet": "192.168.100.0/24",
            "hsw_cloud_subnet": "192.168.200.0/24",
            "mlops_mlflow_runtime": "service",
            "k8s_cni": "bridge",
            "k8s_source": "bundle",
            "k8s_ingress": "nginx",
            "k8s_storage_class": "local-path",
            "security_ssh_password_auth": false,
            "security_segment_networks": true,
            "monitoring_enabled": true,
            "monitoring_prometheus_retention": "7d",
        });
        assert_eq!(vars, want);
        // What the file does not say is left to the playbooks' defaults.
        let online = platform_vars(&default_config(), &state, false, false);
        assert_eq!(online["hsw_offline"], json!(false));
        assert_eq!(online["hsw_gpus_simulated"], json!(false));
        assert!(online.get("k8s_version").is_none());
        assert!(online.get("monitoring_dcgm_exporter").is_none());
    }

    #[test]
    fn platform_vars_follow_the_file() {
        let text = hsw_core::config::DEFAULT_CONFIG
            .replace("ssh_password_auth: false", "ssh_password_auth: true")
            .replace("cni: bridge", "cni: calico\n      source: packages")
            .replace("storage_class: local-path", "storage_class: local-path\n      version: \"1.29\"\n      pod_subnet: 10.32.0.0/16")
            .replace("192.168.200.0/24", "10.20.0.0/24")
            .replace("192.168.200.10", "10.20.0.10")
            .replace("192.168.200.11", "10.20.0.11");
        let v = hsw_core::config::validate_str(&text);
        let cfg = v
            .valid_config()
            .cloned()
            .unwrap_or_else(|| panic!("not valid: {:?}", v.report.diagnostics));
        let vars = platform_vars(&cfg, &StateLayout::new("/s"), false, false);
        assert_eq!(vars["security_ssh_password_auth"], json!(true));
        assert_eq!(vars["k8s_version"], json!("1.29"));
        assert_eq!(vars["k8s_source"], json!("packages"));
        assert_eq!(vars["k8s_cni"], json!("calico"));
        assert_eq!(vars["k8s_pod_subnet"], json!("10.32.0.0/16"));
        assert_eq!(vars["hsw_cloud_subnet"], json!("10.20.0.0/24"));
    }

    /// Every variable written is one the playbooks define (group_vars/all), so a typo cannot be ignored.
    #[test]
    fn platform_vars_are_playbook_variables() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible/group_vars/all");
        let mut defined = String::new();
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap_or_else(|e| panic!("{e}")).path();
            defined.push_str(&fs::read_to_string(&p).unwrap_or_default());
        }
        let vars = platform_vars(&default_config(), &StateLayout::new("/s"), true, true);
        let obj = vars.as_object().unwrap_or_else(|| panic!("not an object"));
        for key in obj.keys() {
            assert!(
                defined.lines().any(|l| l.starts_with(&format!("{key}:"))),
                "{key} is not defined in ansible/group_vars/all"
            );
        }
        for p in PLATFORM_PLAYBOOKS {
            let pb =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../ansible/playbook-{p}.yml"));
            assert!(pb.is_file(), "{}", pb.display());
        }
    }

    #[test]
    fn the_mitogen_settings_add_its_strategy_and_change_nothing_else() {
        let with = settings(true);
        assert!(with.contains(&("ANSIBLE_STRATEGY", "mitogen_linear")));
        assert!(with.contains(&("ANSIBLE_STRATEGY_PLUGINS", MITOGEN_STRATEGIES)));
        let without = settings(false);
        assert!(without
            .iter()
            .all(|(k, _)| !k.starts_with("ANSIBLE_STRATEGY")));
        // Everything else is the same either way.
        assert_eq!(with[..without.len()], without[..]);
        assert!(without.contains(&("ANSIBLE_PIPELINING", "True")));
    }

    #[test]
    fn playbook_argv_skips_the_downloads_offline() {
        let files = PlatformFiles {
            inventory: PathBuf::from("/s/ansible/inventory.yml"),
            extra_vars: PathBuf::from("/s/ansible/platform-vars.json"),
        };
        let pbs = [
            PathBuf::from("ansible/playbook-security.yml"),
            PathBuf::from("ansible/playbook-k8s.yml"),
        ];
        let argv = playbook_argv(
            &files.inventory,
            &files.extra_vars,
            &pbs,
            true,
            &["--diff".to_owned()],
        );
        assert_eq!(
            argv,
            [
                "-i",
                "/s/ansible/inventory.yml",
                "-e",
                "@/s/ansible/platform-vars.json",
                "--skip-tags",
                "online",
                "ansible/playbook-security.yml",
                "ansible/playbook-k8s.yml",
                "--diff"
            ]
        );
        let online = playbook_argv(&files.inventory, &files.extra_vars, &pbs, false, &[]);
        assert!(!online.iter().any(|a| a == "--skip-tags"));
    }

    #[test]
    fn write_platform_files_writes_the_inventory_and_the_vars() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let state_dir = dir.path().join("state");
        let loaded = load_args(&SourceArgs {
            config: None,
            tf_output: None,
            terraform_dir: dir.path().join("terraform"),
            planned: true,
            state_dir: Some(state_dir.clone()),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let files = write_platform_files(&loaded, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            files.extra_vars,
            state_dir.join("ansible/platform-vars.json")
        );
        let back: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&files.extra_vars).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        // The default config's backend is simulated (no provider report with --planned).
        assert_eq!(back["hsw_gpus_simulated"], json!(true));
        // Where the services run, named once (the default has no CPU worker: PostgreSQL is on the control
        // plane, like Prometheus).
        let cp = loaded
            .deployment
            .with_role(hsw_core::ansible::hosts::Role::ControlPlane)
            .next()
            .map(|h| h.name.clone())
            .unwrap_or_default();
        assert!(cp.starts_with("hsw-dev-control-plane"), "{cp}");
        let mut expected = platform_vars(&loaded.config, &loaded.state, true, true);
        if let Some(m) = expected.as_object_mut() {
            m.insert("monitoring_server".into(), json!(cp));
            m.insert("mlops_postgres_host".into(), json!(cp));
        }
        assert_eq!(back, expected);
        assert_eq!(
            back["hsw_secrets_dir"],
            json!(state_dir.join("secrets").display().to_string())
        );
        assert!(state_dir.join("secrets").is_dir());
        let inv = fs::read_to_string(&files.inventory).unwrap_or_default();
        for host in ["hsw-dev-controller", "hsw-dev-control-plane"] {
            assert!(inv.contains(host), "{host} not in the inventory:\n{inv}");
        }
    }

    #[test]
    fn the_state_files_are_private_and_never_written_through_links() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let state_dir = dir.path().join("state");
        let ansible = state_dir.join("ansible");
        fs::create_dir_all(&ansible).unwrap_or_else(|e| panic!("{e}"));
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap_or_else(|e| panic!("{e}"));
        // The fixed temporary names the writer used to use.
        for planted in ["inventory.tmp-hsw", "platform-vars.tmp-hsw"] {
            std::os::unix::fs::symlink(&victim, ansible.join(planted))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let loaded = load_args(&SourceArgs {
            config: None,
            tf_output: None,
            terraform_dir: dir.path().join("terraform"),
            planned: true,
            state_dir: Some(state_dir.clone()),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let files = write_platform_files(&loaded, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_to_string(&victim).unwrap_or_default(), "keep");
        for f in [&files.inventory, &files.extra_vars] {
            let mode = fs::symlink_metadata(f)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        // A link at the final path is refused, naming it, and its target is untouched.
        fs::remove_file(&files.inventory).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&victim, &files.inventory).unwrap_or_else(|e| panic!("{e}"));
        let e = write_platform_files(&loaded, true)
            .err()
            .unwrap_or_else(|| panic!("a link at the inventory was written through"));
        let text = e.to_string();
        assert!(
            text.contains(&files.inventory.display().to_string()) && text.contains("symbolic link"),
            "{text}"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap_or_default(), "keep");
    }
}
