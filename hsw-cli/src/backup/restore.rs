//! `hsw-cli restore BACKUP`: the deployment a backup is of, brought back from the backup alone, in the places it
//! was taken from (the same sandbox, state directory and pool: the disks' backing files, the domains' XML and the
//! Terraform state name them).
//!
//! In order: the backup is verified (nothing is touched when a piece is damaged, and the message names it); a
//! running deployment there is refused unless `--replace` (then `hsw-cli down` removes it first); the state
//! directory's files are written back with their modes; the sandbox is started; the pool's and the GPU
//! state's files are copied back (each checked against its sha256 again as it is copied); libvirt's networks
//! and domains are defined from their XML (the same UUIDs); `terraform init`; the GPU units the GPUs lost are
//! made again ([`gpu_units_back`]); the domains that ran are started; then `terraform plan`, which must show no
//! changes. The application dumps stay in the backup (the disks hold the
//! same data); `docs/backup.md` says how to load one by hand. An encrypted backup is opened with `--identity` or
//! `--passphrase-file` before anything is touched, and each piece is decrypted as it is copied back.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::crypt::{OpenArgs, Opener};
use super::manifest::{self, below_top, checked_path, Kind, Manifest, Piece};
use super::{human, say};
use crate::error::Error;
use crate::runner::Runner;
use crate::up::virsh::Virsh;
use crate::up::{sandbox, Ctx, DownArgs, Place, Target};

/// `hsw-cli restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup's directory (`hsw-cli backup list` shows them).
    pub backup: PathBuf,
    /// Replace a deployment that is there (`hsw-cli down` first: everything it made is destroyed). Without it,
    /// restore stops when the sandbox runs or the state directory holds a Terraform state.
    #[arg(long)]
    pub replace: bool,
    /// For an encrypted backup: the key that opens it.
    #[command(flatten)]
    pub open: OpenArgs,
}

/// Runs `hsw-cli restore`; returns the exit code.
pub fn restore(args: &RestoreArgs, out: &mut dyn Write) -> u8 {
    crate::up::run_timed("restore", out, |runner, out| {
        restore_with(args, runner, out)
    })
}

/// Where the backup's config goes back to: beside the state, for `hsw-cli up --config`.
pub fn restored_config(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster.yaml")
}

/// `hsw-cli rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The deployment (as `hsw-cli up` was given it).
    #[command(flatten)]
    pub place: Place,
    /// Where `up` kept its snapshot (as given to `up --snapshot-dir`; default
    /// /var/backups/hsw/<sandbox name, or host>/pre-change).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
}

/// Runs `hsw-cli rollback`: the deployment back to the snapshot `up` took before its last change that
/// destroyed VMs (a `restore --replace` of it); returns the exit code.
pub fn rollback(args: &RollbackArgs, out: &mut dyn Write) -> u8 {
    crate::up::run_timed("rollback", out, |runner, out| {
        rollback_with(args, runner, out)
    })
}

fn rollback_with(
    args: &RollbackArgs,
    runner: &dyn Runner,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let target = Target {
        place: args.place.clone(),
        out: None,
    };
    let ctx = Ctx::new(&target, runner)?;
    let dir = args
        .snapshot_dir
        .clone()
        .unwrap_or_else(|| super::pre_change_root(ctx.sandbox.as_deref()));
    let backup = newest_of(&dir, ctx.sandbox.as_deref(), ctx.state.root())?;
    say(
        out,
        format!(
            "rolling back to {} (the snapshot `up` took before its last change that destroyed VMs): the \
             deployment there now is removed first, then restored from it",
            backup.display()
        ),
    );
    restore_with(
        &RestoreArgs {
            backup,
            replace: true,
            open: OpenArgs::default(),
        },
        runner,
        out,
    )
}

/// The newest backup in `dir` of the deployment in `sandbox` with its state in `state_dir`.
pub(super) fn newest_of(
    dir: &Path,
    sandbox: Option<&str>,
    state_dir: &Path,
) -> Result<PathBuf, Error> {
    super::backups_of(dir, sandbox, state_dir)?
        .pop()
        .ok_or_else(|| {
            Error::invalid(format!(
                "{} holds no snapshot of this deployment (state {}): `hsw-cli up` takes one before a plan that \
                 destroys VMs, unless --no-snapshot; name another place with --snapshot-dir",
                dir.display(),
                state_dir.display()
            ))
        })
}

fn restore_with(args: &RestoreArgs, runner: &dyn Runner, out: &mut dyn Write) -> Result<(), Error> {
    let t = Instant::now();
    say(out, format!("verifying {}", args.backup.display()));
    let m = manifest::verify(&args.backup, &mut |_| {}).map_err(|p| {
        Error::invalid(format!(
            "{} does not verify, so nothing was restored: {}",
            args.backup.display(),
            p.join("; ")
        ))
    })?;
    say(
        out,
        format!(
            "verified: {} pieces, {} ({} s); taken {} of {}",
            m.pieces.len(),
            human(m.size()),
            t.elapsed().as_secs(),
            m.created,
            m.deployment.config_name
        ),
    );
    let opener = match &m.encryption {
        Some(enc) => Some(
            Opener::new(&args.backup, enc, &args.open)
                .map_err(|e| Error::invalid(format!("{e}; nothing was restored")))?,
        ),
        None => {
            if args.open.given() {
                say(out, "the backup is not encrypted; the key is not needed");
            }
            None
        }
    };
    let opener = opener.as_ref();
    let d = &m.deployment;
    let config = restored_config(&d.state_dir);
    let target = Target {
        place: Place {
            config: Some(config.clone()),
            sandbox: false,
            no_sandbox: d.sandbox.is_none(),
            sandbox_name: d.sandbox.clone().unwrap_or_default(),
            state_dir: Some(d.state_dir.clone()),
        },
        out: Some(d.terraform_dir.clone()),
    };
    let ctx = Ctx::new(&target, runner)?;

    let running = d
        .sandbox
        .as_deref()
        .is_some_and(|n| sandbox::running(&ctx, n));
    let has_state = holds_resources(&d.terraform_dir.join("terraform.tfstate"));
    if running || has_state {
        let what = match (running, has_state) {
            (true, true) => "the sandbox runs and the state directory holds a Terraform state",
            (true, false) => "the sandbox runs",
            _ => "the state directory holds a Terraform state",
        };
        if !args.replace {
            return Err(Error::invalid(format!(
                "a deployment is there ({what}: {}): restore replaces it only with --replace, which first \
                 destroys it (`hsw-cli down`)",
                d.state_dir.display()
            )));
        }
        say(
            out,
            format!("--replace: removing the deployment that is there ({what})"),
        );
        let mut down_target = target.clone();
        // `down` reads the config only without a sandbox; the one there may not be this backup's.
        down_target.place.config = config.is_file().then_some(config.clone());
        crate::up::down::down_steps(
            &DownArgs {
                target: down_target,
            },
            runner,
            out,
        )?;
    }

    // The state directory and the Terraform root, with their modes (a key stays 0600, the Munge key 0400).
    for dir in [&d.state_dir, &d.terraform_dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", dir.display())))?;
    }
    let n = put_back(&args.backup, &m, &[Kind::State, Kind::Terraform], d, opener)?;
    let config_piece = m
        .of_kind(Kind::Config)
        .next()
        .ok_or_else(|| Error::invalid("the backup holds no config"))?;
    copy_piece(&args.backup, config_piece, &config, opener)?;
    let (_, config_sum) = hsw_core::fsx::file_sha256(&config)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", config.display())))?;
    if config_sum != d.config_sha256 {
        return Err(Error::invalid(format!(
            "the backup's config has sha256 {config_sum}, but the deployment was made from one with sha256 {}: \
             the pieces are of different deployments",
            d.config_sha256
        )));
    }
    say(
        out,
        format!(
            "state: {n} files back in {}; config {}",
            d.state_dir.display(),
            config.display()
        ),
    );

    // libvirt: the sandbox, the pool's files, the GPU state, then the networks and the domains.
    let uri = match &d.sandbox {
        Some(name) => {
            let e = sandbox::start(&ctx, name)?;
            if e.pool_dir != d.pool_dir {
                return Err(Error::invalid(format!(
                    "the sandbox `{name}` keeps its pool in {}, the backup's was {}: hsw restores into the \
                     places a backup was taken from",
                    e.pool_dir.display(),
                    d.pool_dir.display()
                )));
            }
            e.uri
        }
        None => d.libvirt_uri.clone(),
    };
    let virsh = Virsh::new(runner, &uri);
    refuse_existing(&virsh, &m)?;
    let t = Instant::now();
    let n = put_back(&args.backup, &m, &[Kind::Disk, Kind::Gpu], d, opener)?;
    say(
        out,
        format!(
            "disks: {n} files back in {} ({}) in {} s",
            d.pool_dir.display(),
            human(manifest::size_of(&m.pieces, Kind::Disk)),
            t.elapsed().as_secs()
        ),
    );
    define(&virsh, &args.backup, &m, opener, out)?;

    // The GPU units (MIG instances, vGPUs) before the VMs that use them start; then Terraform must see what
    // its state says.
    crate::up::terraform::terraform_init(&ctx, out)?;
    gpu_units_back(&ctx, out)?;
    start(&virsh, &m, out)?;
    let mut a = vec![
        "plan",
        "-input=false",
        "-detailed-exitcode",
        "-lock-timeout=60s",
    ];
    a.extend(ctx.no_color());
    let status = ctx.stream(
        &ctx.terraform(&a),
        "terraform",
        crate::up::terraform::INSTALL_TERRAFORM,
    )?;
    match status.code() {
        Some(0) => say(out, "terraform plan: no changes (libvirt holds what the restored state says)"),
        Some(2) => {
            return Err(Error::invalid(
                "the deployment is back, but `terraform plan` shows changes (above): libvirt does not hold \
                 exactly what the restored state says. Look at the plan; `hsw-cli up` would apply it",
            ))
        }
        _ => {
            return Err(Error::invalid(format!(
                "terraform plan failed ({status}) after the restore; its messages above say why"
            )))
        }
    }
    let sb = d
        .sandbox
        .as_ref()
        .map(|s| format!(" --sandbox-name {s}"))
        .unwrap_or_else(|| " --no-sandbox".into());
    say(
        out,
        format!(
            "restored {} VMs; check them with `hsw-cli up --config {}{sb} --state-dir {}` (it changes nothing and \
             verifies), or `hsw-cli status` with the same flags",
            m.domains.len(),
            config.display(),
            d.state_dir.display()
        ),
    );
    Ok(())
}

/// Whether a Terraform state file lists resources (`terraform destroy` leaves one with none). A state that
/// cannot be read counts as holding some: restore does not go over what it cannot see.
fn holds_resources(tfstate: &Path) -> bool {
    use std::io::Read as _;
    let Ok(f) = std::fs::File::open(tfstate) else {
        return false;
    };
    let mut text = String::new();
    if f.take(256 << 20).read_to_string(&mut text).is_err() {
        return true;
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("resources")
                .and_then(|r| r.as_array())
                .map(|r| !r.is_empty())
        })
        .unwrap_or(true)
}

/// Where a piece goes back to (`None`: it does not go back: libvirt's XML, dumps, the config).
fn destination(p: &Piece, d: &manifest::Deployment) -> Option<PathBuf> {
    destination_of(&p.path, p.kind, d)
}

/// Where a path of the backup of `kind` goes back to (`None`: that kind does not go back).
fn destination_of(path: &str, kind: Kind, d: &manifest::Deployment) -> Option<PathBuf> {
    let rel = below_top(Path::new(path));
    let base = match kind {
        Kind::State => &d.state_dir,
        Kind::Terraform => &d.terraform_dir,
        Kind::Disk => &d.pool_dir,
        Kind::Gpu => d.gpu_state_dir.as_ref()?,
        Kind::Config | Kind::Domain | Kind::Network | Kind::Dump => return None,
    };
    Some(base.join(rel))
}

/// Copies the pieces of `kinds` back to where they came from, their directories first with the modes they had
/// (QEMU's user must get through the pool's); returns how many files.
fn put_back(
    backup: &Path,
    m: &Manifest,
    kinds: &[Kind],
    d: &manifest::Deployment,
    opener: Option<&Opener>,
) -> Result<usize, Error> {
    for dir in m.dirs.iter().filter(|x| kinds.contains(&x.kind)) {
        let Some(dest) = destination_of(&dir.path, dir.kind, d) else {
            continue;
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dest)
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", dest.display())))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(dir.mode & 0o7777))
            .map_err(|e| {
                Error::invalid(format!("cannot set the mode of {}: {e}", dest.display()))
            })?;
    }
    let mut n = 0;
    for p in m.pieces.iter().filter(|p| kinds.contains(&p.kind)) {
        let Some(dest) = destination(p, d) else {
            continue;
        };
        if let Some(parent) = dest.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::invalid(format!("cannot create {}: {e}", parent.display())))?;
        }
        copy_piece(backup, p, &dest, opener)?;
        n += 1;
    }
    Ok(n)
}

/// [`put_back`] of every kind that goes back, for the tests.
#[cfg(test)]
pub fn put_back_for_tests(
    backup: &Path,
    m: &Manifest,
    d: &manifest::Deployment,
    opener: Option<&Opener>,
) -> Result<usize, Error> {
    put_back(
        backup,
        m,
        &[Kind::State, Kind::Terraform, Kind::Disk, Kind::Gpu],
        d,
        opener,
    )
}

/// Copies one piece to `dest` (through `fsx`: never through a link; decrypted with `opener` when the backup is
/// encrypted), checks its sha256 on the way, and gives it its recorded mode.
fn copy_piece(backup: &Path, p: &Piece, dest: &Path, opener: Option<&Opener>) -> Result<(), Error> {
    let src = backup.join(checked_path(p).map_err(Error::invalid)?);
    let mode = p.mode & 0o777;
    let copied = match opener {
        Some(o) => o.open_file(&src, dest, mode),
        None => hsw_core::fsx::copy_atomic_sha256(&src, dest, mode),
    };
    let (size, sum) = copied.map_err(|e| {
        Error::invalid(format!("cannot copy {} to {}: {e}", p.path, dest.display()))
    })?;
    if size != p.size || sum != p.sha256 {
        let _ = std::fs::remove_file(dest);
        return Err(Error::invalid(format!(
            "{} changed while it was restored (sha256 {sum}, the manifest says {}): the backup's disk is failing?",
            p.path, p.sha256
        )));
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::invalid(format!("cannot set the mode of {}: {e}", dest.display())))?;
    Ok(())
}

/// Stops before anything is written into the pool when libvirt already has one of the backup's domains or
/// networks (the host's libvirt, where no sandbox was started fresh): their disks would be overwritten.
fn refuse_existing(v: &Virsh<'_>, m: &Manifest) -> Result<(), Error> {
    let domains: Vec<&str> = m
        .domains
        .iter()
        .map(|d| d.name.as_str())
        .filter(|n| v.call(&["dominfo", n]).is_ok())
        .collect();
    let networks: Vec<&str> = m
        .networks
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| v.call(&["net-info", n]).is_ok())
        .collect();
    if domains.is_empty() && networks.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "libvirt at {} already has {}{}{}: a deployment is there, and restoring would overwrite its disks; \
         `hsw-cli restore --replace` removes it first (`hsw-cli down`)",
        v.uri(),
        if domains.is_empty() { String::new() } else { format!("the domains {}", domains.join(" ")) },
        if domains.is_empty() || networks.is_empty() { "" } else { " and " },
        if networks.is_empty() { String::new() } else { format!("the networks {}", networks.join(" ")) },
    )))
}

/// Defines the networks and domains from their XML, starts what was running, sets autostart as it was. An
/// encrypted backup's XML is opened into a private directory of the state directory for virsh, and removed.
fn define(
    v: &Virsh<'_>,
    backup: &Path,
    m: &Manifest,
    opener: Option<&Opener>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let opened = m.deployment.state_dir.join(".restore-libvirt");
    let r = define_from(v, backup, m, opener, &opened, out);
    if opener.is_some() {
        let _ = std::fs::remove_dir_all(&opened);
    }
    r
}

fn define_from(
    v: &Virsh<'_>,
    backup: &Path,
    m: &Manifest,
    opener: Option<&Opener>,
    opened: &Path,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let call = |args: &[&str]| v.call(args).map(|_| ()).map_err(Error::invalid);
    let xml_of = |rel: String| -> Result<PathBuf, Error> {
        let Some(o) = opener else {
            return Ok(backup.join(rel));
        };
        let piece = m
            .pieces
            .iter()
            .find(|p| p.path == rel)
            .ok_or_else(|| Error::invalid(format!("the backup has no {rel}")))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(opened)
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", opened.display())))?;
        let dest = opened.join(below_top(Path::new(&rel)));
        copy_piece(backup, piece, &dest, Some(o))?;
        Ok(dest)
    };
    for n in &m.networks {
        let xml = xml_of(manifest::network_xml(&n.name))?;
        call(&["net-define", &xml.display().to_string()])?;
        if n.autostart {
            call(&["net-autostart", &n.name])?;
        }
        if n.active {
            call(&["net-start", &n.name])?;
        }
    }
    for d in &m.domains {
        let xml = xml_of(manifest::domain_xml(&d.name))?;
        call(&["define", &xml.display().to_string()])?;
        if d.autostart {
            call(&["autostart", &d.name])?;
        }
    }
    say(
        out,
        format!(
            "libvirt: networks {} defined; domains {} defined",
            m.networks
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            m.domains
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    Ok(())
}

/// Starts the domains that ran when the backup was taken.
fn start(v: &Virsh<'_>, m: &Manifest, out: &mut dyn Write) -> Result<(), Error> {
    let running: Vec<&str> = m
        .domains
        .iter()
        .filter(|d| d.running)
        .map(|d| d.name.as_str())
        .collect();
    for d in &running {
        v.call(&["start", d]).map_err(Error::invalid)?;
    }
    say(out, format!("libvirt: started {}", running.join(" ")));
    Ok(())
}

/// The resource types of the GPU units, which a host loses when it reboots (MIG instances and mdevs do not
/// persist) and a restore on real hardware makes again.
const GPU_UNIT_TYPES: [&str; 2] = ["hsw_mig_instance", "hsw_mdev"];

/// Makes the GPU units the restored state records again when the GPUs no longer have them (a host that
/// rebooted, or another host), in the same placements: a `terraform plan` targeted at them, applied when it
/// only creates them. Nothing to do when they are there (the simulated backend's state comes back with the
/// backup). When the GPU does not allow it (MIG mode off, the placement taken), the provider's message says
/// why and restore stops with the VMs defined but not started.
fn gpu_units_back(ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<(), Error> {
    use crate::up::terraform::INSTALL_TERRAFORM as FIX;
    let listed = ctx.capture(&ctx.terraform(&["state", "list"]), "terraform", FIX)?;
    if !listed.status.success() {
        return Err(Error::invalid(format!(
            "terraform state list failed after the restore ({}): {}",
            listed.status,
            listed.stderr.trim()
        )));
    }
    let units: Vec<&str> = listed
        .stdout
        .lines()
        .map(str::trim)
        .filter(|a| {
            a.split('.')
                .any(|part| GPU_UNIT_TYPES.contains(&part.split('[').next().unwrap_or("")))
        })
        .collect();
    if units.is_empty() {
        return Ok(());
    }
    let targets: Vec<String> = units.iter().map(|a| format!("-target={a}")).collect();
    let mut args = vec![
        "plan",
        "-input=false",
        "-detailed-exitcode",
        "-lock-timeout=60s",
        "-out=hsw-restore-gpu.tfplan",
    ];
    args.extend(ctx.no_color());
    args.extend(targets.iter().map(String::as_str));
    let plan = ctx.capture(&ctx.terraform(&args), "terraform", FIX)?;
    let remove_plan = || {
        let _ = std::fs::remove_file(ctx.tf_dir.join("hsw-restore-gpu.tfplan"));
    };
    match plan.status.code() {
        Some(0) => {
            remove_plan();
            say(
                out,
                format!(
                    "GPU units: the GPUs hold the {} the state records",
                    units.len()
                ),
            );
            return Ok(());
        }
        Some(2) => {}
        _ => {
            remove_plan();
            return Err(Error::invalid(format!(
                "terraform plan of the GPU units failed after the restore ({}):\n{}",
                plan.status,
                crate::up::tail(&format!("{}{}", plan.stdout, plan.stderr), 20)
            )));
        }
    }
    // Only creations of GPU units: anything else is not a lost GPU state, and restore does not change it.
    let summary = crate::up::terraform::plan_summary(&plan.stdout).unwrap_or("");
    if !summary.contains(" 0 to change, 0 to destroy") {
        remove_plan();
        return Err(Error::invalid(format!(
            "the GPU units in the restored state differ from the GPUs' ({summary}); restore makes lost units \
             again but changes nothing else. The VMs are defined but not started: look at `terraform plan` in {}",
            ctx.tf_dir.display()
        )));
    }
    say(
        out,
        format!(
            "GPU units: the GPUs lost units the state records ({summary}); making them again in the same \
             placements"
        ),
    );
    let mut args = vec![
        "apply",
        "-input=false",
        "-auto-approve",
        "-lock-timeout=60s",
    ];
    args.extend(ctx.no_color());
    args.push("hsw-restore-gpu.tfplan");
    let status = ctx.stream(&ctx.terraform(&args), "terraform", FIX);
    remove_plan();
    if !status?.success() {
        return Err(Error::invalid(
            "the GPU units could not be made again (the provider's message above says why: MIG mode off, the \
             placement taken by another instance, the vGPU type not offered); the VMs are defined but not \
             started. Free the GPU, then `hsw-cli up` with the restored config makes them and starts the VMs",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_gpu_units_are_made_again_in_their_placements_and_nothing_else_is_changed() {
        use crate::runner::fake::FakeRunner;
        use crate::up::testing::{text, Fixture};
        const LISTED: &str = "module.hpc.module.role[\"controller\"].hsw_vm.this[0]\n\
            module.gpu_partition.hsw_mig_instance.this[\"GPU-0-mig-0\"]\n\
            module.gpu_partition.hsw_mdev.this[\"GPU-0-mig-0\"]\n";
        let f = Fixture::new(Some("sb"));
        let argvs_of = |r: &FakeRunner, verb: &str| -> Vec<Vec<String>> {
            r.argvs()
                .into_iter()
                .filter(|a| a.iter().any(|x| x == verb))
                .collect()
        };

        // No GPU units in the state: nothing to do, no plan.
        let r = FakeRunner::new();
        r.on(&["state", "list"], 0, "hsw_vm.a\n");
        gpu_units_back(&f.ctx(&r), &mut Vec::new()).unwrap();
        assert!(argvs_of(&r, "plan").is_empty());

        // The GPUs hold them (the simulated backend's state came back): nothing applied.
        let r = FakeRunner::new();
        r.on(&["state", "list"], 0, LISTED)
            .on(&["plan"], 0, "No changes.\n");
        let mut out = Vec::new();
        gpu_units_back(&f.ctx(&r), &mut out).unwrap();
        assert!(
            text(&out).contains("the GPUs hold the 2 the state records"),
            "{}",
            text(&out)
        );
        let plan = &argvs_of(&r, "plan")[0];
        assert!(plan.contains(
            &"-target=module.gpu_partition.hsw_mig_instance.this[\"GPU-0-mig-0\"]".to_owned()
        ));
        assert!(plan
            .contains(&"-target=module.gpu_partition.hsw_mdev.this[\"GPU-0-mig-0\"]".to_owned()));
        assert!(!plan.iter().any(|a| a.contains("hsw_vm")), "{plan:?}");
        assert!(argvs_of(&r, "apply").is_empty());

        // Lost (a rebooted host): the targeted plan only creates them, and is applied.
        let r = FakeRunner::new();
        r.on(&["state", "list"], 0, LISTED).on(
            &["plan"],
            2,
            "Plan: 2 to add, 0 to change, 0 to destroy.\n",
        );
        let mut out = Vec::new();
        gpu_units_back(&f.ctx(&r), &mut out).unwrap();
        assert!(
            text(&out).contains("making them again in the same placements"),
            "{}",
            text(&out)
        );
        let apply = &argvs_of(&r, "apply")[0];
        assert_eq!(
            apply.last().map(String::as_str),
            Some("hsw-restore-gpu.tfplan")
        );

        // A plan that changes or destroys something is not a lost GPU state: nothing applied.
        let r = FakeRunner::new();
        r.on(&["state", "list"], 0, LISTED).on(
            &["plan"],
            2,
            "Plan: 1 to add, 1 to change, 0 to destroy.\n",
        );
        let e = gpu_units_back(&f.ctx(&r), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("changes nothing else") && e.contains("not started"),
            "{e}"
        );
        assert!(argvs_of(&r, "apply").is_empty());

        // The GPU does not allow it: the message says what to do.
        let r = FakeRunner::new();
        r.on(&["state", "list"], 0, LISTED)
            .on(&["plan"], 2, "Plan: 2 to add, 0 to change, 0 to destroy.\n")
            .on(&["apply"], 1, "");
        let e = gpu_units_back(&f.ctx(&r), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("could not be made again") && e.contains("hsw-cli up"),
            "{e}"
        );
    }

    #[test]
    fn a_libvirt_holding_the_backups_vms_is_refused() {
        use crate::runner::fake::FakeRunner;
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "format": 1, "hsw_version": "0", "created": "x", "created_unix": 0,
            "deployment": {"sandbox": null, "state_dir": "/s", "terraform_dir": "/s/t", "libvirt_uri": "u",
                           "pool_dir": "/p", "config_name": "c", "config_sha256": ""},
            "domains": [{"name": "vm1", "uuid": "u1", "running": true, "autostart": false, "disks": ""}],
            "networks": [{"name": "net1", "active": true, "autostart": true}],
            "pieces": []
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let fresh = FakeRunner::new();
        fresh.on_full(
            &["dominfo"],
            Some(1),
            "",
            "error: failed to get domain\n",
            None,
        );
        fresh.on_full(
            &["net-info"],
            Some(1),
            "",
            "error: network not found\n",
            None,
        );
        assert!(refuse_existing(&Virsh::new(&fresh, "u"), &m).is_ok());
        let there = FakeRunner::new();
        there.on_full(
            &["net-info"],
            Some(1),
            "",
            "error: network not found\n",
            None,
        );
        let e = refuse_existing(&Virsh::new(&there, "u"), &m)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("already has the domains vm1: a deployment is there"),
            "{e}"
        );
        assert!(e.contains("--replace"), "{e}");
    }

    #[test]
    fn a_destroyed_state_is_no_deployment() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = d.path().join("terraform.tfstate");
        assert!(!holds_resources(&f));
        for (text, holds) in [
            (r#"{"version":4,"resources":[]}"#, false),
            (r#"{"version":4,"resources":[{"type":"hsw_vm"}]}"#, true),
            ("not json", true),
        ] {
            std::fs::write(&f, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(holds_resources(&f), holds, "{text}");
        }
    }

    #[test]
    fn pieces_go_back_to_the_deployments_directories_only() {
        let d = manifest::Deployment {
            sandbox: Some("sb".into()),
            state_dir: "/s".into(),
            terraform_dir: "/s/terraform".into(),
            libvirt_uri: "qemu:///system".into(),
            pool_dir: "/pool".into(),
            gpu_state_dir: None,
            config_name: "c".into(),
            config_sha256: String::new(),
        };
        let p = manifest::piece;
        assert_eq!(
            destination(&p("state/ssh/hpc/id", Kind::State), &d),
            Some("/s/ssh/hpc/id".into())
        );
        assert_eq!(
            destination(&p("pool/vm/root.qcow2", Kind::Disk), &d),
            Some("/pool/vm/root.qcow2".into())
        );
        assert_eq!(destination(&p("gpu/state.json", Kind::Gpu), &d), None);
        assert_eq!(destination(&p("dumps/x.sql", Kind::Dump), &d), None);
        assert_eq!(
            destination(&p("libvirt/domain-a.xml", Kind::Domain), &d),
            None
        );
    }
}
