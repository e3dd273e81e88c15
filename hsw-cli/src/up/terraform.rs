//! Steps 4 to 6: the SSH keys, the Terraform root module and the simulated GPUs' state; `terraform init`
//! over a filesystem mirror of the locally built provider and a private CLI configuration; `terraform plan`,
//! then `apply` of that plan when it changes something, while a watcher says which VMs run.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hsw_core::config::model::default_gpu_state_dir;
use hsw_core::config::ClusterConfig;

use super::virsh::Virsh;
use super::{say, step_header, tail, Ctx, Up, UP_STEPS};
use crate::ansible_cmd;
use crate::error::Error;
use crate::generate::{self, GenerateOptions};
use crate::provider_mirror::{self, Placed};
use crate::runner::Cmd;
use crate::session::Session;

pub(crate) const INSTALL_TERRAFORM: &str = "install Terraform (>= 1.0) or set HSW_TERRAFORM";

/// Step 4: the clusters' SSH keys, the Terraform root module (the sandbox's URI and pool, each cluster's
/// image), the simulated GPUs.
pub fn generate_root(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    let ctx = up.ctx;
    let cfg = &up.session.config;
    step_header(
        out,
        n,
        UP_STEPS,
        "SSH keys, Terraform root module, simulated GPUs",
    );
    let keys = ansible_cmd::cluster_public_keys(ctx.runner, &ctx.state, cfg)?;
    for (cluster, key) in &keys {
        say(out, format!("{cluster} SSH key: {}", key.display()));
    }
    if ctx.tf_dir.join("terraform.tfstate").is_file() {
        up.previous_root = Some(crate::backup::root_files(&ctx.tf_dir)?);
    }
    let libvirt = up.libvirt()?;
    let options = GenerateOptions {
        out: ctx.tf_dir.clone(),
        modules: ctx.repo.join("modules"),
        state_dir: Some(ctx.state.root().to_path_buf()),
        base_image: None,
        kernel: None,
        initrd: None,
        cmdline: None,
        no_kernel_boot: false,
        libvirt_uri: Some(libvirt.uri.clone()),
        pool_dir: Some(libvirt.pool.display().to_string()),
        check: false,
        force: false,
    };
    generate::generate(up.session, &options, &up.cluster_images, out)?;
    let _ = out.flush();
    seed_gpus(cfg, &libvirt.pool, out)
}

/// Seeds the simulated GPU backend's state (the provider's default `gpu_state_dir`,
/// [`default_gpu_state_dir`]) with the configuration's devices, so that the provider finds the GPUs cluster.yaml
/// names.
fn seed_gpus(cfg: &ClusterConfig, pool: &Path, out: &mut dyn Write) -> Result<(), Error> {
    use hsw_core::config::model::GpuBackend;
    if cfg.gpu_backend() == GpuBackend::Nvml {
        return Ok(());
    }
    let devices = hsw_gpu_backend::simulated::devices_from_config(cfg);
    if devices.is_empty() {
        return Ok(());
    }
    let state_dir = default_gpu_state_dir(pool);
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
        Error::cannot_run(format!(
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

/// The newest of `target/{release,debug}/terraform-provider-hsw`.
fn newest_provider(repo: &Path) -> Option<PathBuf> {
    ["release", "debug"]
        .iter()
        .map(|p| repo.join("target").join(p).join("terraform-provider-hsw"))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((m, p))
        })
        .max()
        .map(|(_, p)| p)
}

/// The provider binary: `from_env` (`HSW_PROVIDER_BIN`), else the newest of
/// `target/{release,debug}/terraform-provider-hsw`, else one built now with cargo (`cargo`: `CARGO`).
fn provider_binary(
    ctx: &Ctx<'_>,
    from_env: Option<OsString>,
    cargo: Option<OsString>,
    out: &mut dyn Write,
) -> Result<PathBuf, Error> {
    if let Some(p) = from_env {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Error::cannot_run(format!(
            "HSW_PROVIDER_BIN is {}, which is not a file",
            p.display()
        )));
    }
    if let Some(p) = newest_provider(&ctx.repo) {
        return Ok(p);
    }
    say(
        out,
        "building terraform-provider-hsw (cargo build -p terraform-provider-hsw)",
    );
    let c = Cmd::new(cargo.unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "-p",
            "terraform-provider-hsw",
            "--bin",
            "terraform-provider-hsw",
        ])
        .current_dir(&ctx.repo);
    let status = ctx.stream(
        &c,
        "cargo",
        "install Rust (rustup) or set HSW_PROVIDER_BIN to a built terraform-provider-hsw",
    )?;
    if !status.success() {
        return Err(Error::invalid(format!(
            "cargo build -p terraform-provider-hsw failed ({status}); see above"
        )));
    }
    newest_provider(&ctx.repo).ok_or_else(|| {
        Error::invalid("cargo built terraform-provider-hsw but it is not in target/debug")
    })
}

/// Step 5: `terraform init` with the local provider mirror.
pub fn init(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    step_header(out, n, UP_STEPS, "terraform init (local provider mirror)");
    terraform_init(up.ctx, out)
}

/// The provider (from `HSW_PROVIDER_BIN`, `target/`, or built), then [`init_with`].
pub fn terraform_init(ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<(), Error> {
    let bin = provider_binary(
        ctx,
        ctx.provider_bin.clone().map(OsString::from),
        std::env::var_os("CARGO"),
        out,
    )?;
    init_with(ctx, &bin, out)
}

/// The filesystem mirror with the provider `bin`, the private CLI configuration, and `terraform init`.
fn init_with(ctx: &Ctx<'_>, bin: &Path, out: &mut dyn Write) -> Result<(), Error> {
    let mirror = ctx.mirror();
    let placed = provider_mirror::place(bin, &mirror, provider_mirror::TERRAFORM_HOST, true)
        .map_err(|e| Error::cannot_run(e.to_string()))?;
    let changed = placed != Placed::Unchanged;
    // Mirrors written before the executable had its versioned name hold the old name too; Terraform wants
    // one executable per package.
    let _ = std::fs::remove_file(
        provider_mirror::package_dir(&mirror, provider_mirror::TERRAFORM_HOST)
            .join(provider_mirror::BINARY),
    );
    let rc = format!(
        "# Written by hsw-cli up: the hsw provider comes from this local mirror, nothing from a registry.\n\
         provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"{}\"]\n  }}\n}}\n",
        mirror.display(),
        provider_mirror::NAMESPACE_TYPE
    );
    hsw_core::fsx::write_atomic(&ctx.tfrc(), rc.as_bytes(), 0o644)
        .map_err(|e| Error::cannot_run(format!("cannot write {}: {e}", ctx.tfrc().display())))?;
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
            mirror.display()
        ),
    );
    let mut init_args = vec!["init", "-input=false", "-no-color"];
    // A rebuilt provider of the same version has another checksum than the lock file records, and Terraform
    // refuses it even with -upgrade ("doesn't match any of the checksums previously recorded"). The root module
    // and its lock file are up's own and name only this provider: the lock file goes, and init records the new
    // checksum.
    let lock = ctx.tf_dir.join(".terraform.lock.hcl");
    if changed && lock.is_file() {
        remove_lock(
            &lock,
            "it records the checksum of the provider this one replaced",
            out,
        )?;
    }
    if changed || !initialized {
        init_args.push("-upgrade");
    }
    let mut o = ctx.capture(&ctx.terraform(&init_args), "terraform", INSTALL_TERRAFORM)?;
    // The mirror already held this binary when an earlier up copied it and then stopped before init recorded
    // it: the lock file still has the binary before. Once, the same way as above.
    // Terraform wraps its messages at 80 columns: the words are compared, not the lines.
    let words = |o: &crate::runner::Captured| {
        format!("{} {}", o.stdout, o.stderr)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !o.status.success()
        && words(&o).contains("doesn't match any of the checksums previously recorded")
        && lock.is_file()
    {
        remove_lock(
            &lock,
            "it records the checksum of another build of the provider; initializing again",
            out,
        )?;
        let args = ["init", "-input=false", "-no-color", "-upgrade"];
        o = ctx.capture(&ctx.terraform(&args), "terraform", INSTALL_TERRAFORM)?;
    }
    let both = format!("{}{}", o.stdout, o.stderr);
    let log = ctx.write_log("terraform-init.log", &both);
    if !o.status.success() {
        return Err(Error::invalid(format!(
            "terraform init failed in {} ({}); log {}:\n{}",
            ctx.tf_dir.display(),
            o.status,
            log.display(),
            tail(&both, 15)
        )));
    }
    say(out, format!("terraform init done (log {})", log.display()));
    Ok(())
}

/// Removes up's own lock file `lock`, saying `why`.
fn remove_lock(lock: &Path, why: &str, out: &mut dyn Write) -> Result<(), Error> {
    std::fs::remove_file(lock)
        .map_err(|e| Error::cannot_run(format!("cannot remove {}: {e}", lock.display())))?;
    say(out, format!("removed {}: {why}", lock.display()));
    Ok(())
}

/// Step 6: `terraform plan`, then `apply` of that plan when it changes something. While Terraform waits for
/// the VMs, a watcher says every 15 s which VMs run and which have their address.
pub fn plan_and_apply(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    step_header(out, n, UP_STEPS, "terraform plan and apply");
    let libvirt = up.libvirt()?;
    let this: &Up<'_> = up;
    // Before a plan is applied: the snapshot when it destroys VMs, then the drain of the compute nodes leaving.
    let applied = apply(
        this.ctx,
        &libvirt.uri,
        &libvirt.consoles_hint(" (guest consoles: ", ")"),
        (this.args.allow_replace, !this.args.no_snapshot),
        &mut |destroyed, out| {
            if !destroyed.is_empty() {
                crate::backup::pre_change(this, destroyed, out)?;
            }
            super::scale::drain_removed(this, out)
        },
        out,
    )?;
    up.applied = applied;
    record_applied_config(up.ctx, up.session)
}

/// Where `up` records the config it last applied (also where `restore` puts a backup's): `<state>/cluster.yaml`.
pub fn applied_config(ctx: &Ctx<'_>) -> PathBuf {
    crate::backup::restored_config(ctx.state.root())
}

/// Records the config the deployment now matches ([`applied_config`]), for the snapshot a later `up` takes
/// before destroying VMs.
fn record_applied_config(ctx: &Ctx<'_>, session: &Session) -> Result<(), Error> {
    let p = applied_config(ctx);
    hsw_core::fsx::write_atomic(&p, session.source.as_bytes(), 0o600)
        .map_err(|e| Error::invalid(format!("cannot write {}: {e}", p.display())))
}

/// The `Plan: N to add, N to change, N to destroy.` line of `terraform plan`'s output, trimmed.
pub(crate) fn plan_summary(stdout: &str) -> Option<&str> {
    stdout.lines().find(|l| l.contains("Plan:")).map(str::trim)
}

/// What runs between a plan that changes something and its apply: given the VMs it destroys.
type BeforeApply<'a> = dyn FnMut(&[String], &mut dyn Write) -> Result<(), Error> + 'a;

/// Plans and applies; returns whether it applied. `consoles` ends the failure message. A plan that replaces
/// VMs stops here unless `allow_replace` (see [`vm_changes`]). `before` runs once the plan is known to change
/// something and before it is applied, with the VMs it destroys (removed or replaced), in plan order; the
/// saved plan is read for that unless `allow_replace` and not `snapshot` (then `before` is given none).
fn apply(
    ctx: &Ctx<'_>,
    uri: &str,
    consoles: &str,
    (allow_replace, snapshot): (bool, bool),
    before: &mut BeforeApply<'_>,
    out: &mut dyn Write,
) -> Result<bool, Error> {
    let plan_file = "hsw-up.tfplan";
    let mut args = vec![
        "plan",
        "-input=false",
        "-detailed-exitcode",
        "-out=hsw-up.tfplan",
    ];
    args.extend(ctx.no_color());
    let o = ctx.capture(&ctx.terraform(&args), "terraform", INSTALL_TERRAFORM)?;
    let log = ctx.write_log("terraform-plan.log", &format!("{}{}", o.stdout, o.stderr));
    match o.status.code() {
        Some(0) => {
            say(
                out,
                "terraform plan: no changes; the infrastructure matches the configuration",
            );
            let _ = std::fs::remove_file(ctx.tf_dir.join(plan_file));
            return Ok(false);
        }
        Some(2) => {
            let summary = plan_summary(&o.stdout).unwrap_or("changes planned");
            say(
                out,
                format!("terraform plan: {summary} (full plan in {})", log.display()),
            );
            let checked = if allow_replace && !snapshot {
                before(&[], out)
            } else {
                read_plan(ctx, plan_file, allow_replace).and_then(|changes| {
                    if allow_replace || changes.replaced.is_empty() {
                        before(&changes.destroyed, out)
                    } else {
                        Err(refusal(&changes.replaced))
                    }
                })
            };
            if let Err(e) = checked {
                let _ = std::fs::remove_file(ctx.tf_dir.join(plan_file));
                return Err(e);
            }
        }
        _ => {
            return Err(Error::invalid(format!(
                "terraform plan failed in {} ({}); log {}:\n{}",
                ctx.tf_dir.display(),
                o.status,
                log.display(),
                tail(&format!("{}{}", o.stdout, o.stderr), 25)
            )));
        }
    }
    say(
        out,
        "terraform apply: creating networks and VMs; each VM is done when it has booted and taken its address",
    );
    let mut args = vec!["apply", "-input=false", "-auto-approve"];
    args.extend(ctx.no_color());
    args.push(plan_file);
    let stop = AtomicBool::new(false);
    let virsh = Virsh::new(ctx.runner, uri);
    let status = std::thread::scope(|s| {
        s.spawn(|| watch_vms(&virsh, &stop));
        let status = ctx.stream(&ctx.terraform(&args), "terraform", INSTALL_TERRAFORM);
        stop.store(true, Ordering::Relaxed);
        status
    });
    let _ = std::fs::remove_file(ctx.tf_dir.join(plan_file));
    let status = status?;
    if !status.success() {
        return Err(Error::invalid(format!(
            "terraform apply failed ({status}); its messages above say which resource and why. Run `hsw-cli \
             up` again to continue, or `hsw-cli down` to remove what was made{consoles}"
        )));
    }
    Ok(true)
}

/// What a saved plan does to the VMs.
#[derive(Debug, Default, PartialEq, Eq)]
struct VmChanges {
    /// The VMs it destroys and creates again, each with the attributes that force it.
    replaced: Vec<(String, Vec<String>)>,
    /// The VMs it destroys, replaced or removed, in plan order.
    destroyed: Vec<String>,
}

/// Reads a saved plan with `terraform show -json`. An unreadable plan is an error (nothing was changed) that
/// says how to go on (`--allow-replace` when `allow_replace` is not given, `--no-snapshot` otherwise).
fn read_plan(ctx: &Ctx<'_>, plan_file: &str, allow_replace: bool) -> Result<VmChanges, Error> {
    let mut args = vec!["show", "-json"];
    args.extend(ctx.no_color());
    args.push(plan_file);
    let o = ctx.capture(&ctx.terraform(&args), "terraform", INSTALL_TERRAFORM)?;
    let changes = if o.status.success() {
        vm_changes(&o.stdout)
    } else {
        Err(o.stderr.trim().to_owned())
    };
    changes.map_err(|why| {
        let (what, regardless) = if allow_replace {
            (
                "which VMs it destroys (to snapshot the deployment first)",
                "`hsw-cli up --allow-replace --no-snapshot`",
            )
        } else {
            ("whether it replaces VMs", "`hsw-cli up --allow-replace`")
        };
        Error::invalid(format!(
            "cannot read the saved plan with `terraform show -json {plan_file}` in {} ({why}), so up cannot \
             tell {what}; nothing was changed. Run `terraform plan` there to see it, and {regardless} to apply \
             it regardless",
            ctx.tf_dir.display()
        ))
    })
}

/// Stops `up` before a saved plan that replaces VMs (the caller removes the plan): a replacement destroys the
/// VM's disk (on the controller: the shared homes, Slurm's state and accounting database), which a user rarely
/// means by a changed cluster.yaml or a new hsw. Removing VMs (a smaller group) is not a replacement.
fn refusal(replaced: &[(String, Vec<String>)]) -> Error {
    let list = replaced
        .iter()
        .map(|(vm, why)| format!("{vm} ({})", why.join(", ")))
        .collect::<Vec<_>>()
        .join(", ");
    Error::invalid(format!(
        "terraform plan replaces {} VM{}: {list}. A replaced VM loses its disk (on the controller: the shared \
         homes, Slurm's state and accounting database); nothing was changed. A new guest image (a new hsw, or \
         packer/ or scripts/build-image.sh changed) replaces every VM that boots it. To keep the VMs, undo the \
         change that forces it; to replace them, back up what they hold and run `hsw-cli up --allow-replace`",
        replaced.len(),
        if replaced.len() == 1 { "" } else { "s" }
    ))
}

/// The `hsw_vm`s that a plan (`terraform show -json`) destroys and creates again, each with the attributes
/// that force it (`replace_paths`), and all it destroys, in plan order; an error for output that is not a plan.
fn vm_changes(json: &str) -> Result<VmChanges, String> {
    let plan: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let changes = match plan.get("resource_changes") {
        None => return Ok(VmChanges::default()),
        Some(serde_json::Value::Array(c)) => c,
        Some(_) => return Err("`resource_changes` is not a list".into()),
    };
    let mut out = VmChanges::default();
    for rc in changes {
        if rc.get("type").and_then(|t| t.as_str()) != Some("hsw_vm") {
            continue;
        }
        let change = &rc["change"];
        let actions: Vec<&str> = change["actions"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        if !actions.contains(&"delete") {
            continue;
        }
        let name = change["before"]["name"]
            .as_str()
            .or_else(|| rc["address"].as_str())
            .unwrap_or("an hsw_vm")
            .to_owned();
        out.destroyed.push(name.clone());
        if !actions.contains(&"create") {
            continue;
        }
        let why: Vec<String> = change["replace_paths"]
            .as_array()
            .map(|paths| paths.iter().map(dotted).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        let why = if why.is_empty() {
            vec!["replaced".to_owned()]
        } else {
            why
        };
        out.replaced.push((name, why));
    }
    Ok(out)
}

/// A `replace_paths` entry (`["interface", 0, "network"]`) as `interface.0.network`; empty when it is not a list.
fn dotted(path: &serde_json::Value) -> String {
    let Some(steps) = path.as_array() else {
        return String::new();
    };
    steps
        .iter()
        .map(|s| match s {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Every 15 s until `stop`: which domains run and which have an address.
fn watch_vms(virsh: &Virsh<'_>, stop: &AtomicBool) {
    let t0 = Instant::now();
    let mut next = Duration::from_secs(15);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        if t0.elapsed() < next {
            continue;
        }
        next += Duration::from_secs(15);
        if let Some(line) = running_line(virsh) {
            eprintln!("hsw: [{} s] running: {line}", t0.elapsed().as_secs());
        }
    }
}

/// `name address` (or `name booting`) of every running domain, or `None` when there is none or libvirt did
/// not answer.
fn running_line(virsh: &Virsh<'_>) -> Option<String> {
    let parts: Vec<String> = virsh
        .domain_addresses()?
        .into_iter()
        .map(|(name, addr)| match addr {
            Some(a) => format!("{name} {a}"),
            None => format!("{name} booting"),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    fn terraform_calls(r: &FakeRunner) -> Vec<Vec<String>> {
        r.argvs()
            .into_iter()
            .filter(|a| a.iter().any(|w| w == "terraform"))
            .map(|a| {
                let i = a.iter().position(|w| w == "terraform").unwrap_or(0);
                a[i + 2..].to_vec()
            })
            .collect()
    }

    #[test]
    fn init_mirrors_the_provider_and_runs_terraform_init() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner.on(
            &["init"],
            0,
            "Terraform has been successfully initialized!\n",
        );
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(ctx.state.root()).unwrap();
        let bin = f.dir.path().join("provider-bin");
        std::fs::write(&bin, "binary v1").unwrap();
        let mut out = Vec::new();
        init_with(&ctx, &bin, &mut out).unwrap();
        assert_eq!(
            terraform_calls(&runner),
            [["init", "-input=false", "-no-color", "-upgrade"]]
        );
        let mirrored = ctx.mirror().join(format!(
            "registry.terraform.io/hyperscaler/hsw/{}/{}/terraform-provider-hsw_v{}",
            provider_mirror::VERSION,
            provider_mirror::platform(),
            provider_mirror::VERSION
        ));
        assert_eq!(std::fs::read_to_string(mirrored).unwrap(), "binary v1");
        let rc = std::fs::read_to_string(ctx.tfrc()).unwrap();
        assert!(
            rc.contains(&format!("path    = \"{}\"", ctx.mirror().display())),
            "{rc}"
        );
        let t = text(&out);
        assert!(t.contains("(copied into the mirror)"), "{t}");
        assert!(t.contains("hsw: terraform init done (log "), "{t}");
        let log = std::fs::read_to_string(ctx.logs().join("terraform-init.log")).unwrap();
        assert!(log.contains("successfully initialized"));
        // Initialized, same provider: no -upgrade.
        std::fs::create_dir_all(ctx.tf_dir.join(".terraform/providers")).unwrap();
        std::fs::write(ctx.tf_dir.join(".terraform.lock.hcl"), "").unwrap();
        let mut out = Vec::new();
        init_with(&ctx, &bin, &mut out).unwrap();
        assert_eq!(
            terraform_calls(&runner)[1],
            ["init", "-input=false", "-no-color"]
        );
        assert!(text(&out).contains("(unchanged)"));
        assert!(
            ctx.tf_dir.join(".terraform.lock.hcl").is_file(),
            "an unchanged provider keeps the lock file"
        );
        // A rebuilt provider of the same version: the lock file with the old checksum goes, init records the new.
        std::fs::write(&bin, "binary v2").unwrap();
        let mut out = Vec::new();
        init_with(&ctx, &bin, &mut out).unwrap();
        assert!(!ctx.tf_dir.join(".terraform.lock.hcl").exists());
        assert_eq!(
            terraform_calls(&runner)[2],
            ["init", "-input=false", "-no-color", "-upgrade"]
        );
        let t = text(&out);
        assert!(
            t.contains("(copied into the mirror)") && t.contains("removed "),
            "{t}"
        );
    }

    #[test]
    fn a_lock_file_left_from_another_build_is_removed_once_and_init_runs_again() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        // As Terraform 1.11 prints it, wrapped at 80 columns.
        let refused = "Error: Failed to install provider\n\nError while installing hyperscaler/hsw v0.1.0: the local package for\n\
                       registry.terraform.io/hyperscaler/hsw 0.1.0 doesn't match any of the\n\
                       checksums previously recorded in the dependency lock file (this might be\n";
        runner.on_full(&["init"], Some(1), "", refused, Some(1)).on(
            &["init"],
            0,
            "Terraform has been successfully initialized!\n",
        );
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(ctx.state.root()).unwrap();
        let bin = f.dir.path().join("provider-bin");
        std::fs::write(&bin, "binary v2").unwrap();
        // The mirror holds this build already (an earlier up stopped after copying it), the lock file another.
        provider_mirror::place(&bin, &ctx.mirror(), provider_mirror::TERRAFORM_HOST, true).unwrap();
        std::fs::create_dir_all(ctx.tf_dir.join(".terraform/providers")).unwrap();
        std::fs::write(ctx.tf_dir.join(".terraform.lock.hcl"), "old").unwrap();
        let mut out = Vec::new();
        init_with(&ctx, &bin, &mut out).unwrap();
        assert_eq!(
            terraform_calls(&runner),
            [
                vec!["init", "-input=false", "-no-color"],
                vec!["init", "-input=false", "-no-color", "-upgrade"]
            ]
        );
        assert!(!ctx.tf_dir.join(".terraform.lock.hcl").exists());
        assert!(text(&out).contains("initializing again"), "{}", text(&out));
        // Any other failure is reported, not retried.
        let runner = FakeRunner::new();
        runner.on_full(
            &["init"],
            Some(1),
            "",
            "Error: Invalid module source\n",
            None,
        );
        let ctx = f.ctx(&runner);
        std::fs::write(ctx.tf_dir.join(".terraform.lock.hcl"), "old").unwrap();
        let e = init_with(&ctx, &bin, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("Invalid module source"), "{e}");
        assert_eq!(terraform_calls(&runner).len(), 1);
    }

    #[test]
    fn init_never_writes_through_a_planted_link() {
        let f = Fixture::new(None);
        let runner = FakeRunner::new();
        runner.on(&["init"], 0, "");
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(ctx.state.root()).unwrap();
        let plat = provider_mirror::package_dir(&ctx.mirror(), provider_mirror::TERRAFORM_HOST);
        std::fs::create_dir_all(&plat).unwrap();
        let victim = f.dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        // The fixed temporary names a copy used to go through.
        for n in [
            ".terraform-provider-hsw.tmp",
            ".terraform-provider-hsw_v0.1.0.tmp",
        ] {
            std::os::unix::fs::symlink(&victim, plat.join(n)).unwrap();
        }
        let bin = f.dir.path().join("provider-bin");
        std::fs::write(&bin, "binary v1").unwrap();
        init_with(&ctx, &bin, &mut Vec::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let mirrored = plat.join(provider_mirror::executable());
        assert_eq!(std::fs::read_to_string(&mirrored).unwrap(), "binary v1");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&mirrored).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // A link at the CLI configuration is refused, naming it.
        std::fs::remove_file(ctx.tfrc()).unwrap();
        std::os::unix::fs::symlink(&victim, ctx.tfrc()).unwrap();
        let e = init_with(&ctx, &bin, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&ctx.tfrc().display().to_string()) && e.contains("symbolic link"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn a_failed_init_shows_the_log_tail() {
        let f = Fixture::new(None);
        let runner = FakeRunner::new();
        runner.on_full(
            &["init"],
            Some(1),
            "",
            "Error: Failed to query available provider packages\n",
            None,
        );
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(ctx.state.root()).unwrap();
        let bin = f.dir.path().join("p");
        std::fs::write(&bin, "b").unwrap();
        let e = init_with(&ctx, &bin, &mut Vec::new()).unwrap_err();
        assert_eq!(e.code(), crate::exit::INVALID);
        let m = e.to_string();
        assert!(
            m.starts_with(&format!(
                "terraform init failed in {} (exit status: 1)",
                ctx.tf_dir.display()
            )),
            "{m}"
        );
        assert!(
            m.ends_with("Error: Failed to query available provider packages"),
            "{m}"
        );
    }

    #[test]
    fn the_provider_comes_from_the_environment_or_a_build() {
        let f = Fixture::new(None);
        let runner = FakeRunner::new();
        let ctx = f.ctx(&runner);
        let bin = f.dir.path().join("p");
        std::fs::write(&bin, "b").unwrap();
        let got = provider_binary(&ctx, Some(bin.clone().into()), None, &mut Vec::new()).unwrap();
        assert_eq!(got, bin);
        let e = provider_binary(&ctx, Some("/nonexistent/p".into()), None, &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HSW_PROVIDER_BIN is /nonexistent/p, which is not a file"
        );
        assert!(runner.calls().is_empty());
        // No binary in target/ of a repository without one: cargo builds it.
        let mut empty = f.ctx(&runner);
        empty.repo = f.dir.path().to_path_buf();
        let failing = FakeRunner::new();
        failing.on(&["cargo", "build"], 101, "");
        empty.runner = &failing;
        let e = provider_binary(&empty, None, Some("cargo".into()), &mut Vec::new()).unwrap_err();
        assert_eq!(
            failing.argvs(),
            [[
                "cargo",
                "build",
                "-p",
                "terraform-provider-hsw",
                "--bin",
                "terraform-provider-hsw"
            ]]
        );
        assert!(
            e.to_string()
                .starts_with("cargo build -p terraform-provider-hsw failed"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_plan_applies_nothing() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner.on(&["plan"], 0, "No changes.\n");
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        assert!(!apply(&ctx, "qemu:///x", "", (false, true), &mut none, &mut out).unwrap());
        assert_eq!(
            terraform_calls(&runner),
            [[
                "plan",
                "-input=false",
                "-detailed-exitcode",
                "-out=hsw-up.tfplan",
                "-no-color"
            ]]
        );
        assert!(text(&out).contains(
            "hsw: terraform plan: no changes; the infrastructure matches the configuration"
        ));
    }

    #[test]
    fn a_plan_with_changes_is_applied() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner
            .on(
                &["plan"],
                2,
                "  # x will be created\nPlan: 7 to add, 0 to change, 0 to destroy.\n",
            )
            .on(&["show"], 0, NO_VM_REPLACED);
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        assert!(apply(&ctx, "qemu:///x", "", (false, true), &mut none, &mut out).unwrap());
        let calls = terraform_calls(&runner);
        assert_eq!(calls[1], ["show", "-json", "-no-color", "hsw-up.tfplan"]);
        assert_eq!(
            calls[2],
            [
                "apply",
                "-input=false",
                "-auto-approve",
                "-no-color",
                "hsw-up.tfplan"
            ]
        );
        let t = text(&out);
        assert!(
            t.contains(
                "hsw: terraform plan: Plan: 7 to add, 0 to change, 0 to destroy. (full plan in "
            ),
            "{t}"
        );
        assert!(
            t.contains("hsw: terraform apply: creating networks and VMs"),
            "{t}"
        );
    }

    #[test]
    fn failures_of_plan_and_apply_say_where_to_look() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner.on(&["plan"], 1, "Error: bad\n");
        let ctx = f.ctx(&runner);
        let e = plain_apply(&ctx, (false, true)).unwrap_err();
        assert!(e.to_string().contains("terraform plan failed in"), "{e}");
        assert!(e.to_string().ends_with("Error: bad"), "{e}");
        let runner = FakeRunner::new();
        runner
            .on(&["plan"], 2, "Plan: 1 to add\n")
            .on(&["show"], 0, NO_VM_REPLACED)
            .on(&["apply"], 1, "");
        let e = f
            .run_step(&runner, plan_and_apply, 6, |up| assert!(!up.applied))
            .0
            .unwrap_err();
        assert!(
            e.to_string().ends_with(
                "or `hsw-cli down` to remove what was made (guest consoles: /var/lib/hsw-sandbox/sb/log/qemu/)"
            ),
            "{e}"
        );
    }

    /// `terraform show -json` of a plan that creates VMs and replaces none.
    pub(in crate::up) const NO_VM_REPLACED: &str = r#"{"format_version":"1.2","resource_changes":[
        {"address":"module.hpc.hsw_vm.this[0]","type":"hsw_vm","change":{"actions":["create"],"before":null}}]}"#;

    /// A plan that replaces the controller (new image, new kernel), removes a compute node, updates the worker
    /// in place and replaces a MIG instance.
    const REPLACES_THE_CONTROLLER: &str = r#"{"format_version":"1.2","resource_changes":[
        {"address":"module.hpc.module.role[\"controller\"].hsw_vm.this[0]","type":"hsw_vm",
         "change":{"actions":["delete","create"],"before":{"name":"hsw-dev-controller-1"},
                   "replace_paths":[["base_image"],["kernel"]]}},
        {"address":"module.hpc.module.role[\"compute\"].hsw_vm.this[2]","type":"hsw_vm",
         "change":{"actions":["delete"],"before":{"name":"hsw-dev-compute-3"}}},
        {"address":"module.cloud.module.role[\"gpu_worker\"].hsw_vm.this[0]","type":"hsw_vm",
         "change":{"actions":["update"],"before":{"name":"hsw-dev-gpu-worker-1"}}},
        {"address":"module.gpu_partition.hsw_mig_instance.this[\"GPU-0-mig-4\"]","type":"hsw_mig_instance",
         "change":{"actions":["delete","create"],"replace_paths":[["profile"]]}},
        {"address":"hsw_vm.x","type":"hsw_vm","change":{"actions":["create","delete"],"before":{},
         "replace_paths":[["interface",0,"network"]]}}]}"#;

    /// [`apply`] with nothing before it and its output dropped.
    fn plain_apply(ctx: &Ctx<'_>, modes: (bool, bool)) -> Result<bool, Error> {
        apply(ctx, "qemu:///x", "", modes, &mut none, &mut Vec::new())
    }

    /// A hook before apply that does nothing.
    #[allow(clippy::unnecessary_wraps)]
    fn none(_: &[String], _: &mut dyn Write) -> Result<(), Error> {
        Ok(())
    }

    #[test]
    fn replaced_vms_are_the_replaced_hsw_vms_with_what_forces_it() {
        let changes = vm_changes(REPLACES_THE_CONTROLLER).unwrap();
        assert_eq!(
            changes.destroyed,
            ["hsw-dev-controller-1", "hsw-dev-compute-3", "hsw_vm.x"]
        );
        assert_eq!(
            changes.replaced,
            [
                (
                    "hsw-dev-controller-1".to_owned(),
                    vec!["base_image".to_owned(), "kernel".to_owned()]
                ),
                (
                    "hsw_vm.x".to_owned(),
                    vec!["interface.0.network".to_owned()]
                ),
            ]
        );
        assert_eq!(vm_changes(NO_VM_REPLACED).unwrap(), VmChanges::default());
        assert_eq!(
            vm_changes(r#"{"format_version":"1.2"}"#).unwrap(),
            VmChanges::default()
        );
        assert!(vm_changes("").unwrap_err().starts_with("not JSON"));
        assert!(vm_changes(r#"{"resource_changes":3}"#).is_err());
    }

    #[test]
    fn a_plan_that_replaces_vms_stops_up_unless_allowed() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner
            .on(&["plan"], 2, "Plan: 1 to add, 0 to change, 1 to destroy.\n")
            .on(&["show"], 0, REPLACES_THE_CONTROLLER);
        let ctx = f.ctx(&runner);
        let plan = ctx.tf_dir.join("hsw-up.tfplan");
        std::fs::create_dir_all(&ctx.tf_dir).unwrap();
        std::fs::write(&plan, "saved plan").unwrap();
        let e = plain_apply(&ctx, (false, true)).unwrap_err();
        assert!(!plan.exists(), "the refused plan is removed");
        let m = e.to_string();
        assert!(
            m.starts_with(
                "terraform plan replaces 2 VMs: hsw-dev-controller-1 (base_image, kernel), hsw_vm.x \
                 (interface.0.network). A replaced VM loses its disk"
            ),
            "{m}"
        );
        assert!(m.ends_with("run `hsw-cli up --allow-replace`"), "{m}");
        assert!(!m.contains("  "), "one space between words: {m}");
        assert!(
            !terraform_calls(&runner).iter().any(|c| c[0] == "apply"),
            "nothing applied"
        );
        // Allowed: applied without asking.
        let runner = FakeRunner::new();
        runner
            .on(&["plan"], 2, "Plan: 1 to add, 0 to change, 1 to destroy.\n")
            .on(&["show"], 0, REPLACES_THE_CONTROLLER);
        let ctx = f.ctx(&runner);
        let mut seen = Vec::new();
        let mut before = |vms: &[String], _: &mut dyn Write| {
            seen.push((vms.to_vec(), terraform_calls(&runner).len()));
            Ok(())
        };
        assert!(apply(
            &ctx,
            "qemu:///x",
            "",
            (true, true),
            &mut before,
            &mut Vec::new()
        )
        .unwrap());
        let calls = terraform_calls(&runner);
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[2][0], "apply");
        // What runs before the apply (the snapshot, the drain) is told every VM the plan destroys, after the
        // plan was read and before the apply.
        assert_eq!(
            seen,
            [(
                vec![
                    "hsw-dev-controller-1".to_owned(),
                    "hsw-dev-compute-3".to_owned(),
                    "hsw_vm.x".to_owned()
                ],
                2
            )]
        );
        // --allow-replace --no-snapshot: the saved plan is not read; applied.
        let runner = FakeRunner::new();
        runner.on(&["plan"], 2, "Plan: 1 to add, 0 to change, 1 to destroy.\n");
        let ctx = f.ctx(&runner);
        assert!(plain_apply(&ctx, (true, false)).unwrap());
        let calls = terraform_calls(&runner);
        assert_eq!(
            calls.iter().map(|c| c[0].as_str()).collect::<Vec<_>>(),
            ["plan", "apply"]
        );
        // When it fails, nothing is applied and the plan is removed.
        let runner = FakeRunner::new();
        runner
            .on(&["plan"], 2, "Plan: 0 to add, 0 to change, 1 to destroy.\n")
            .on(&["show"], 0, REPLACES_THE_CONTROLLER);
        let ctx = f.ctx(&runner);
        std::fs::write(&plan, "saved plan").unwrap();
        let mut failing = |_: &[String], _: &mut dyn Write| Err(Error::invalid("snapshot failed"));
        let e = apply(
            &ctx,
            "qemu:///x",
            "",
            (true, true),
            &mut failing,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "snapshot failed");
        assert!(!plan.exists());
        assert!(!terraform_calls(&runner).iter().any(|c| c[0] == "apply"));
        // A plan that cannot be read stops up too, saying how to go on.
        let runner = FakeRunner::new();
        runner.on(&["plan"], 2, "Plan: 1 to add\n").on_full(
            &["show"],
            Some(1),
            "",
            "Error: bad plan\n",
            None,
        );
        let ctx = f.ctx(&runner);
        let e = plain_apply(&ctx, (false, true)).unwrap_err();
        assert!(e.to_string().contains("(Error: bad plan)"), "{e}");
        assert!(e.to_string().contains("--allow-replace"), "{e}");
        assert!(
            !e.to_string().contains("  "),
            "one space between words: {e}"
        );
    }

    #[test]
    fn a_plan_that_destroys_vms_is_applied_after_a_snapshot_of_the_deployment_as_it_was() {
        const REMOVES_A_COMPUTE_NODE: &str = r#"{"format_version":"1.2","resource_changes":[
            {"address":"module.hpc.module.role[\"compute\"].hsw_vm.this[2]","type":"hsw_vm",
             "change":{"actions":["delete"],"before":{"name":"hsw-dev-compute-3"}}}]}"#;
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner
            .on(&["plan"], 2, "Plan: 0 to add, 0 to change, 1 to destroy.\n")
            .on(&["show"], 0, REMOVES_A_COMPUTE_NODE);
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(&ctx.tf_dir).unwrap();
        std::fs::write(ctx.tf_dir.join("terraform.tfstate"), "{}").unwrap();
        std::fs::write(ctx.tf_dir.join("main.tf"), "# 3 compute nodes").unwrap();
        let snapshots = f.dir.path().join("pre-change");
        let session = fixture::session();
        std::fs::write(applied_config(&ctx), &session.source).unwrap();
        let (r, said) = f.with_up(
            &runner,
            |a| a.snapshot_dir = Some(snapshots.clone()),
            |up| {
                // What the generate step read before it wrote the root for the change.
                up.previous_root = Some(crate::backup::root_files(&up.ctx.tf_dir).unwrap());
                std::fs::write(up.ctx.tf_dir.join("main.tf"), "# 2 compute nodes").unwrap();
                let mut out = Vec::new();
                (plan_and_apply(up, 6, &mut out), text(&out))
            },
        );
        r.unwrap_or_else(|e| panic!("{e}\n{said}"));
        assert!(
            said.contains(
                "the plan destroys hsw-dev-compute-3: a snapshot of the deployment first"
            ),
            "{said}"
        );
        let taken: Vec<_> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(taken.len(), 1, "{taken:?}");
        assert_eq!(
            std::fs::read_to_string(taken[0].join("state/terraform/main.tf")).unwrap(),
            "# 3 compute nodes"
        );
        // The snapshot came before the apply.
        let argvs = runner.argvs();
        let listed = argvs
            .iter()
            .position(|a| a.contains(&"list".to_owned()))
            .unwrap();
        let applied = argvs
            .iter()
            .position(|a| a.contains(&"apply".to_owned()))
            .unwrap();
        assert!(listed < applied, "{argvs:?}");

        // --no-snapshot: said, and applied.
        let runner = FakeRunner::new();
        runner
            .on(&["plan"], 2, "Plan: 0 to add, 0 to change, 1 to destroy.\n")
            .on(&["show"], 0, REMOVES_A_COMPUTE_NODE);
        let (r, said) = f.with_up(
            &runner,
            |a| a.no_snapshot = true,
            |up| {
                let mut out = Vec::new();
                (plan_and_apply(up, 6, &mut out), text(&out))
            },
        );
        r.unwrap_or_else(|e| panic!("{e}\n{said}"));
        assert!(said.contains("no snapshot first (--no-snapshot)"), "{said}");
        assert!(runner
            .argvs()
            .iter()
            .any(|a| a.contains(&"apply".to_owned())));
    }

    #[test]
    fn the_watcher_line_names_each_domain() {
        let runner = FakeRunner::new();
        runner.on(&["list", "--name"], 0, "vm-a\nvm-b\n").on(
            &["domifaddr", "vm-a"],
            0,
            "vnet0 52:54:00:00:00:01 ipv4 10.0.0.5/24\n",
        );
        let v = Virsh::new(&runner, "qemu:///x");
        assert_eq!(
            running_line(&v).as_deref(),
            Some("vm-a 10.0.0.5, vm-b booting")
        );
        let none = FakeRunner::new();
        assert_eq!(running_line(&Virsh::new(&none, "qemu:///x")), None);
    }

    #[test]
    fn generate_root_writes_the_root_module_for_the_sandbox_and_keeps_hand_edits() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        let ctx = f.ctx(&runner);
        fixture::keys(&ctx);
        let session = fixture::session();
        let args = f.args();
        let mut up = Up::new(&ctx, &session, &args);
        up.libvirt = Some(f.libvirt());
        let mut out = Vec::new();
        generate_root(&mut up, 4, &mut out).unwrap();
        let providers = std::fs::read_to_string(ctx.tf_dir.join("providers.tf")).unwrap();
        assert!(
            providers.contains("socket=/run/hsw-sandbox/sb/libvirt/libvirt-sock"),
            "{providers}"
        );
        assert!(
            providers.contains(&f.dir.path().join("pool").display().to_string()),
            "{providers}"
        );
        let t = text(&out);
        assert!(
            t.contains("==> [4/13] SSH keys, Terraform root module, simulated GPUs"),
            "{t}"
        );
        assert!(t.contains("hsw: hpc SSH key: "), "{t}");
        assert!(runner.calls().is_empty());

        // A hand edit of the root is not overwritten, and the error says how to proceed.
        let providers = ctx.tf_dir.join("providers.tf");
        let edited = std::fs::read_to_string(&providers)
            .unwrap()
            .replace("pool_dir", "pool_dir_mine");
        std::fs::write(&providers, &edited).unwrap();
        let e = generate_root(&mut up, 4, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "{} (changed since hsw-cli generate wrote it)",
                providers.display()
            )) && e.contains(&format!(
                "remove them or run `hsw-cli generate --force --out {}`, then run the command again",
                ctx.tf_dir.display()
            )),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&providers).unwrap(), edited);
        // Removed, it is written again.
        std::fs::remove_file(&providers).unwrap();
        generate_root(&mut up, 4, &mut Vec::new()).unwrap();
        assert!(!std::fs::read_to_string(&providers)
            .unwrap()
            .contains("pool_dir_mine"));
    }
}
