//! `hsw-cli down`: `terraform destroy`, then the sandbox stopped (or, without one, the host's libvirt
//! checked), then a check that nothing is left.

use std::io::Write;
use std::path::Path;

use super::sandbox::{self, SandboxEnv};
use super::terraform::terraform_init;
use super::virsh::Virsh;
use super::{host_libvirt, say, step_header, Ctx, DownArgs};
use crate::error::Error;
use crate::runner::Runner;
use crate::session::Session;

/// Runs `down`; returns the exit code.
pub fn down(args: &DownArgs, out: &mut dyn Write) -> u8 {
    super::run_timed("down", out, |runner, out| down_steps(args, runner, out))
}

pub(crate) fn down_steps(
    args: &DownArgs,
    runner: &dyn Runner,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let ctx = Ctx::new(&args.target, runner)?;
    let running = ctx
        .sandbox
        .as_deref()
        .is_none_or(|n| sandbox::running(&ctx, n));
    destroy(&ctx, running, out)?;
    match &ctx.sandbox {
        Some(sb) => stop_sandbox(&ctx, sb, running, out),
        None => {
            step_header(out, 2, 3, "host libvirt (no sandbox)");
            let session =
                Session::load(args.target.place.config.as_deref()).map_err(|e| match e {
                    Error::InvalidConfig { .. } => {
                        Error::invalid("the config is not valid; run `hsw-cli validate`")
                    }
                    other => other,
                })?;
            host_left(&ctx, &session, out)
        }
    }
}

/// Step 1: `terraform destroy` when there is state and libvirt runs; the VMs' host keys and ids are forgotten.
fn destroy(ctx: &Ctx<'_>, running: bool, out: &mut dyn Write) -> Result<(), Error> {
    let has_state = ctx.tf_dir.join("terraform.tfstate").is_file();
    step_header(out, 1, 3, "terraform destroy");
    if has_state && running {
        if !ctx.tfrc().is_file() || !ctx.tf_dir.join(".terraform").is_dir() {
            terraform_init(ctx, out)?;
        }
        let mut a = vec!["destroy", "-input=false", "-auto-approve"];
        a.extend(ctx.no_color());
        let status = ctx.stream(
            &ctx.terraform(&a),
            "terraform",
            "install Terraform (>= 1.0) or set HSW_TERRAFORM",
        )?;
        if !status.success() {
            if ctx.sandbox.is_none() {
                return Err(Error::invalid(format!(
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
    for cluster in hsw_core::config::model::CLUSTER_KEYS {
        let _ = std::fs::remove_file(ctx.state.known_hosts(cluster));
        let _ = std::fs::remove_file(ctx.state.known_hosts(cluster).with_extension("old"));
    }
    let _ = std::fs::remove_file(ctx.state.root().join("vm-ids.json"));
    let _ = std::fs::remove_file(ctx.tf_output_file());
    Ok(())
}

/// Steps 2 and 3 with a sandbox: what libvirt still has, the sandbox stopped, and nothing of it left.
fn stop_sandbox(ctx: &Ctx<'_>, sb: &str, running: bool, out: &mut dyn Write) -> Result<(), Error> {
    step_header(out, 2, 3, &format!("stop sandbox '{sb}'"));
    let env = sandbox::env(ctx, sb)?;
    if running {
        let left = left_in_sandbox(ctx, &env);
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
    let status = ctx.stream(
        &ctx.sandbox_cmd(sb, &["stop"]),
        "scripts/sandbox.sh",
        "install bash",
    )?;
    if !status.success() {
        return Err(Error::invalid(format!(
            "scripts/sandbox.sh --name {sb} stop failed ({status}); run it again"
        )));
    }
    step_header(out, 3, 3, "nothing left");
    let o = ctx.capture(
        &ctx.sandbox_cmd(sb, &["status"]),
        "scripts/sandbox.sh",
        "install bash",
    )?;
    let netns = Path::new("/run/netns").join(sb).exists();
    let left_dirs: Vec<String> = [&env.run_dir, &env.state_dir]
        .iter()
        .filter(|d| d.exists())
        .map(|d| d.display().to_string())
        .collect();
    if o.status.code() != Some(3) || netns || !left_dirs.is_empty() {
        return Err(Error::invalid(format!(
            "sandbox '{sb}' is not completely gone: {}{}{}; run `scripts/sandbox.sh --name {sb} stop`",
            o.stdout.trim(),
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
    Ok(())
}

/// The domains, networks and VM disks a running sandbox still has.
fn left_in_sandbox(ctx: &Ctx<'_>, env: &SandboxEnv) -> Vec<String> {
    let mut left = Virsh::new(ctx.runner, &env.uri).objects(None);
    let vms = env.pool_dir.join("vms");
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
    left
}

/// Step 3 without a sandbox: no domain or network of the config is left in the host's libvirt.
fn host_left(ctx: &Ctx<'_>, session: &Session, out: &mut dyn Write) -> Result<(), Error> {
    let (uri, _) = host_libvirt(&session.config);
    step_header(out, 3, 3, "nothing left");
    let prefix = format!("{}-", session.config.metadata.name);
    let left = Virsh::new(ctx.runner, &uri).objects(Some(&prefix));
    if !left.is_empty() {
        return Err(Error::invalid(format!(
            "left after destroy: {}; run `hsw-cli down --no-sandbox` again",
            left.join("; ")
        )));
    }
    say(
        out,
        format!("nothing left: no domain or network named {prefix}* in {uri}"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    #[test]
    fn destroy_runs_terraform_destroy_when_there_is_state() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(ctx.tf_dir.join(".terraform")).unwrap();
        std::fs::write(ctx.tf_dir.join("terraform.tfstate"), "{}").unwrap();
        std::fs::write(ctx.tfrc(), "").unwrap();
        std::fs::write(ctx.tf_output_file(), "{}").unwrap();
        let mut out = Vec::new();
        destroy(&ctx, true, &mut out).unwrap();
        let argv = &runner.argvs()[0];
        assert!(
            argv.ends_with(
                &["destroy", "-input=false", "-auto-approve", "-no-color"].map(String::from)
            ),
            "{argv:?}"
        );
        assert!(!ctx.tf_output_file().exists());
        assert!(text(&out).contains("==> [1/3] terraform destroy"));
        // A failed destroy on the host is an error; in a sandbox, stopping it removes everything anyway.
        let failing = FakeRunner::new();
        failing.on(&["destroy"], 1, "");
        let mut out = Vec::new();
        destroy(&f.ctx(&failing), true, &mut out).unwrap();
        assert!(text(&out).contains("stopping the sandbox removes everything anyway"));
        let host = Fixture::new(None);
        let hctx = host.ctx(&failing);
        std::fs::create_dir_all(hctx.tf_dir.join(".terraform")).unwrap();
        std::fs::write(hctx.tf_dir.join("terraform.tfstate"), "{}").unwrap();
        std::fs::write(hctx.tfrc(), "").unwrap();
        let e = destroy(&hctx, true, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("terraform destroy failed (exit status: 1)"),
            "{e}"
        );
    }

    #[test]
    fn a_stopped_sandbox_leaves_state_to_remove() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(&ctx.tf_dir).unwrap();
        std::fs::write(ctx.tf_dir.join("terraform.tfstate"), "{}").unwrap();
        let mut out = Vec::new();
        destroy(&ctx, false, &mut out).unwrap();
        assert!(runner.calls().is_empty());
        assert!(!ctx.tf_dir.join("terraform.tfstate").exists());
        assert!(text(&out).contains("the sandbox is not running"));
        let mut out = Vec::new();
        destroy(&ctx, false, &mut out).unwrap();
        assert!(text(&out).contains("hsw: no Terraform state: nothing to destroy"));
    }

    #[test]
    fn the_sandbox_is_stopped_and_checked_gone() {
        let f = Fixture::new(Some("sb"));
        let root = f.dir.path().join("sandbox");
        let runner = FakeRunner::new();
        runner
            .on(&["env"], 0, &fixture::sandbox_env(&root))
            .on(&["virsh", "list"], 0, "")
            .on(&["status"], 3, "sandbox sb: not running\n");
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        stop_sandbox(&ctx, "sb", true, &mut out).unwrap();
        let t = text(&out);
        assert!(
            t.contains("hsw: after destroy: no domain, network or VM disk"),
            "{t}"
        );
        assert!(t.contains("==> [3/3] nothing left"), "{t}");
        assert!(
            t.contains("hsw: nothing left: no domain, network, volume or pool directory"),
            "{t}"
        );
        let script = ctx.repo.join("scripts/sandbox.sh").display().to_string();
        let uri = format!("qemu+unix:///system?socket={}/run/sock", root.display());
        assert_eq!(
            runner.argvs(),
            [
                vec!["bash", &script, "--name", "sb", "env"],
                vec!["virsh", "-q", "-c", &uri, "list", "--all", "--name"],
                vec!["virsh", "-q", "-c", &uri, "net-list", "--all", "--name"],
                vec!["bash", &script, "--name", "sb", "stop"],
                vec!["bash", &script, "--name", "sb", "status"],
            ]
        );
    }

    #[test]
    fn what_is_left_is_named() {
        let f = Fixture::new(Some("sb"));
        let root = f.dir.path().join("sandbox");
        std::fs::create_dir_all(root.join("state/pool/vms")).unwrap();
        std::fs::write(root.join("state/pool/vms/hsw-dev-a.qcow2"), "").unwrap();
        let runner = FakeRunner::new();
        runner
            .on(&["env"], 0, &fixture::sandbox_env(&root))
            .on(&["list", "--all"], 0, "hsw-dev-a\n")
            .on(&["status"], 3, "");
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        let e = stop_sandbox(&ctx, "sb", true, &mut out).unwrap_err();
        let t = text(&out);
        assert!(
            t.contains("hsw: after destroy: domains hsw-dev-a; VM disks in "),
            "{t}"
        );
        assert!(t.contains("vms: hsw-dev-a.qcow2"), "{t}");
        assert!(
            e.to_string()
                .contains(&format!("left: {}", root.join("state").display())),
            "{e}"
        );
        let failing = FakeRunner::new();
        failing
            .on(&["env"], 0, &fixture::sandbox_env(&root))
            .on(&["stop"], 1, "");
        let e = stop_sandbox(&f.ctx(&failing), "sb", false, &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scripts/sandbox.sh --name sb stop failed (exit status: 1); run it again"
        );
    }

    #[test]
    fn the_host_libvirt_is_checked_for_the_config_s_objects() {
        let f = Fixture::new(None);
        let session = fixture::session();
        let prefix = format!("{}-", session.config.metadata.name);
        let runner = FakeRunner::new();
        runner.on(
            &["list", "--all"],
            0,
            &format!("{prefix}controller-1\nother-vm\n"),
        );
        let ctx = f.ctx(&runner);
        let e = host_left(&ctx, &session, &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("left after destroy: domains {prefix}controller-1; run `hsw-cli down --no-sandbox` again")
        );
        assert_eq!(
            runner.argvs()[0][..4],
            ["virsh", "-q", "-c", "qemu:///system"]
        );
        let clean = FakeRunner::new();
        let mut out = Vec::new();
        host_left(&f.ctx(&clean), &session, &mut out).unwrap();
        assert!(text(&out).contains(&format!(
            "hsw: nothing left: no domain or network named {prefix}* in qemu:///system"
        )));
    }
}
