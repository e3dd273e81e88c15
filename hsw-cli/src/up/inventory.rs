//! Step 7: the inventory from `terraform output -json` (kept in `<state>/terraform-output.json`), checked
//! against the config; a VM that Terraform replaced loses its old host key.

use std::collections::BTreeMap;
use std::io::Write;

use hsw_core::ansible::hosts::Deployment;

use super::virsh::Virsh;
use super::{say, step_header, tail, Ctx, Up, UP_STEPS};
use crate::error::Error;
use crate::inventory::{self, Hosts};
use crate::runner::Cmd;

/// Step 7: `terraform output -json`, the inventory, the hosts printed, replaced VMs' host keys forgotten.
pub fn inventory(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    let ctx = up.ctx;
    step_header(out, n, UP_STEPS, "inventory from terraform output");
    let o = ctx.capture(
        &ctx.terraform(&["output", "-json"]),
        "terraform",
        "install Terraform or set HSW_TERRAFORM",
    )?;
    if !o.status.success() {
        return Err(Error::invalid(format!(
            "terraform output -json failed in {} ({}): {}",
            ctx.tf_dir.display(),
            o.status,
            tail(&o.stderr, 10)
        )));
    }
    let tf_output = ctx.tf_output_file();
    hsw_core::fsx::write_atomic(&tf_output, o.stdout.as_bytes(), 0o600)
        .map_err(|e| Error::cannot_run(format!("cannot write {}: {e}", tf_output.display())))?;
    let loaded = inventory::load(
        up.session,
        &Hosts::Saved(tf_output),
        ctx.state.clone(),
        ctx.runner,
    )?;
    print_hosts(&loaded.deployment, out);
    forget_replaced_host_keys(ctx, &up.libvirt()?.uri, &loaded.deployment, out)?;
    up.loaded = Some(loaded);
    Ok(())
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
    ctx: &Ctx<'_>,
    uri: &str,
    d: &Deployment,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let virsh = Virsh::new(ctx.runner, uri);
    let record = ctx.state.root().join("vm-ids.json");
    let old: BTreeMap<String, String> = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut now = BTreeMap::new();
    for h in &d.hosts {
        let uuid = virsh.uuid_of(&h.name);
        if old.get(&h.name) != Some(&uuid) {
            let kh = ctx.state.known_hosts(h.cluster());
            if kh.is_file() {
                let forget = Cmd::new("ssh-keygen")
                    .arg("-R")
                    .arg(h.ip.to_string())
                    .arg("-f")
                    .arg(&kh);
                let _ = ctx.runner.capture(&forget);
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
    hsw_core::fsx::write_atomic(&record, text.as_bytes(), 0o600)
        .map_err(|e| Error::cannot_run(format!("cannot write {}: {e}", record.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    #[test]
    fn the_inventory_comes_from_terraform_output() {
        let f = Fixture::new(Some("sb"));
        let session = fixture::session();
        let probe = FakeRunner::new();
        let planned = fixture::loaded(&session, &f.ctx(&probe)).deployment;
        let runner = FakeRunner::new();
        runner.on(&["output", "-json"], 0, &fixture::tf_output(&planned));
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(ctx.state.root()).unwrap();
        // The controller had another UUID: it is new, and its old host key goes.
        let ctl = &planned.hosts[0];
        std::fs::create_dir_all(ctx.state.known_hosts(ctl.cluster()).parent().unwrap()).unwrap();
        std::fs::write(ctx.state.known_hosts(ctl.cluster()), "old key\n").unwrap();
        std::fs::write(
            ctx.state.root().join("vm-ids.json"),
            serde_json::json!({ ctl.name.clone(): "old-uuid" }).to_string(),
        )
        .unwrap();
        runner.on(&["domuuid"], 0, "new-uuid\n");
        let args = f.args();
        let mut up = Up::new(&ctx, &session, &args);
        up.libvirt = Some(f.libvirt());
        let mut out = Vec::new();
        inventory(&mut up, 7, &mut out).unwrap();
        let loaded = up.loaded.as_ref().unwrap();
        assert_eq!(loaded.deployment.hosts.len(), planned.hosts.len());
        assert_eq!(
            loaded.hosts_from,
            "the Terraform output in terraform-output.json"
        );
        assert!(ctx.tf_output_file().is_file());
        let argvs = runner.argvs();
        assert!(
            argvs[0].ends_with(&["output".to_owned(), "-json".to_owned()]),
            "{argvs:?}"
        );
        let keygen: Vec<&Vec<String>> = argvs.iter().filter(|a| a[0] == "ssh-keygen").collect();
        assert!(
            keygen
                .iter()
                .any(|a| a[..3] == ["ssh-keygen", "-R", &ctl.ip.to_string()]),
            "{keygen:?}"
        );
        let t = text(&out);
        assert!(
            t.contains("==> [7/13] inventory from terraform output"),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "hsw: {} is a new VM: its old host key is removed from",
                ctl.name
            )),
            "{t}"
        );
        let ids: BTreeMap<String, String> = serde_json::from_str(
            &std::fs::read_to_string(ctx.state.root().join("vm-ids.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(ids.get(&ctl.name).map(String::as_str), Some("new-uuid"));
        // Again, with the same UUIDs: no key is removed.
        let again = FakeRunner::new();
        again
            .on(&["output", "-json"], 0, &fixture::tf_output(&planned))
            .on(&["domuuid"], 0, "new-uuid\n");
        f.run_step(&again, inventory, 7, |_| {}).0.unwrap();
        assert!(!again.argvs().iter().any(|a| a[0] == "ssh-keygen"));
    }

    /// The saved Terraform output is private and never written through a planted link.
    #[test]
    fn the_saved_output_is_private_and_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let f = Fixture::new(Some("sb"));
        let session = fixture::session();
        let planned = fixture::loaded(&session, &f.ctx(&FakeRunner::new())).deployment;
        let runner = FakeRunner::new();
        runner
            .on(&["output", "-json"], 0, &fixture::tf_output(&planned))
            .on(&["domuuid"], 0, "u\n");
        let ctx = f.ctx(&runner);
        std::fs::create_dir_all(ctx.state.root()).unwrap();
        let victim = ctx.state.root().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, ctx.tf_output_file()).unwrap();
        let e = f.run_step(&runner, inventory, 7, |_| {}).0.unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        std::fs::remove_file(ctx.tf_output_file()).unwrap();
        f.run_step(&runner, inventory, 7, |_| {}).0.unwrap();
        let mode = std::fs::metadata(ctx.tf_output_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_failed_terraform_output_is_a_sentence() {
        let f = Fixture::new(None);
        let runner = FakeRunner::new();
        runner.on_full(&["output"], Some(1), "", "Error: No state\n", None);
        let ctx = f.ctx(&runner);
        let e = f
            .run_step(&runner, inventory, 7, |up| assert!(up.loaded.is_none()))
            .0
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "terraform output -json failed in {} (exit status: 1): Error: No state",
                ctx.tf_dir.display()
            )
        );
        assert_eq!(e.code(), crate::exit::INVALID);
        assert_eq!(
            runner.calls()[0].argv()[0],
            "terraform",
            "no sandbox: terraform runs directly"
        );
    }
}
