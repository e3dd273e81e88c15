//! What `up` prints at the end: what it made, what changed, what was verified, how to log in, how long each
//! step took, and the `down` command that removes it all.

use hsw_core::ansible::hosts::Role;

use super::playbooks::Changes;
use super::{ssh_user, Target, Up, DEFAULT_SANDBOX};
use crate::error::Error;

/// The summary `up` prints at the end.
pub fn summary(up: &Up<'_>, timings: &[(String, u64)]) -> Result<String, Error> {
    let ctx = up.ctx;
    let cfg = &up.session.config;
    let loaded = up.loaded()?;
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
        if up.applied {
            "changes applied"
        } else {
            "no changes (the plan was empty)"
        }
    ));
    if let Some(c) = &up.ansible_changed {
        s.push_str(&changes_line("ansible", c));
    }
    match &up.platform_changed {
        Some(c) => s.push_str(&changes_line("platform", c)),
        None if up.args.hpc_only => s.push_str("hsw: platform: not configured (--hpc-only)\n"),
        None => {}
    }
    if up.platform_changed.is_some() && !up.args.online {
        s.push_str(
            "hsw: skipped offline: what needs the internet (the Kubernetes add-ons from their registries: the \
             ingress controller, the local-path storage class, Helm charts, the GPU Operator); Kubernetes itself came \
             from the offline bundle, MLflow from the cloud image. Run `hsw-cli up --online` where the guests \
             reach the internet\n",
        );
    }
    for v in &up.verified {
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
            ssh_user(cfg),
            ctl.ip
        ));
    }
    s.push_str("hsw: timings:");
    for (what, secs) in timings {
        s.push_str(&format!(" {what} {secs} s;"));
    }
    s.pop();
    s.push('\n');
    s.push_str(&format!(
        "hsw: remove it all with: hsw-cli down{}",
        down_flags(&up.args.target)
    ));
    Ok(s)
}

/// `hsw: WHAT: no changes …` or `hsw: WHAT: N changes: TASK (HOST), …` (the first few tasks: the rest are in
/// the playbook's log).
fn changes_line(what: &str, c: &Changes) -> String {
    const SHOWN: usize = 8;
    if c.count == 0 {
        return format!("hsw: {what}: no changes (changed=0 on every host)\n");
    }
    let mut tasks = c
        .tasks
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if c.tasks.len() > SHOWN {
        tasks.push_str(&format!("; and {} more", c.tasks.len() - SHOWN));
    }
    let n = match c.count {
        1 => "1 change".to_owned(),
        n => format!("{n} changes"),
    };
    if tasks.is_empty() {
        format!("hsw: {what}: {n}\n")
    } else {
        format!("hsw: {what}: {n}: {tasks}\n")
    }
}

fn down_flags(t: &Target) -> String {
    let mut s = String::new();
    if let Some(c) = &t.place.config {
        s.push_str(&format!(" --config {}", c.display()));
    }
    if t.place.no_sandbox {
        s.push_str(" --no-sandbox");
    } else if t.place.sandbox_name != DEFAULT_SANDBOX {
        s.push_str(&format!(" --sandbox-name {}", t.place.sandbox_name));
    }
    if let Some(d) = &t.place.state_dir {
        s.push_str(&format!(" --state-dir {}", d.display()));
    }
    if let Some(d) = &t.out {
        s.push_str(&format!(" --out {}", d.display()));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::up::Place;

    #[test]
    fn down_flags_repeat_what_up_was_given() {
        let t = Target {
            place: Place {
                config: Some(PathBuf::from("c.yaml")),
                sandbox: false,
                no_sandbox: false,
                sandbox_name: "other".into(),
                state_dir: Some(PathBuf::from("/s")),
            },
            out: None,
        };
        assert_eq!(
            down_flags(&t),
            " --config c.yaml --sandbox-name other --state-dir /s"
        );
        let host = Target {
            place: Place {
                no_sandbox: true,
                sandbox_name: DEFAULT_SANDBOX.into(),
                config: None,
                sandbox: false,
                state_dir: None,
            },
            out: Some(PathBuf::from("tf")),
        };
        assert_eq!(down_flags(&host), " --no-sandbox --out tf");
    }

    /// No changes, a few named, many cut short (the log has them all).
    #[test]
    fn changes_lines_name_what_changed() {
        assert_eq!(
            changes_line("platform", &Changes::default()),
            "hsw: platform: no changes (changed=0 on every host)\n"
        );
        let one = Changes {
            count: 1,
            tasks: vec!["mlops_k8s : Apply the secrets (cp)".into()],
        };
        assert_eq!(
            changes_line("platform", &one),
            "hsw: platform: 1 change: mlops_k8s : Apply the secrets (cp)\n"
        );
        let many = Changes {
            count: 12,
            tasks: (0..10).map(|i| format!("t{i} (h)")).collect(),
        };
        let line = changes_line("ansible", &many);
        assert!(
            line.starts_with("hsw: ansible: 12 changes: t0 (h); t1 (h);"),
            "{line}"
        );
        assert!(line.ends_with("t7 (h); and 2 more\n"), "{line}");
        let unnamed = Changes {
            count: 2,
            tasks: vec![],
        };
        assert_eq!(
            changes_line("ansible", &unnamed),
            "hsw: ansible: 2 changes\n"
        );
    }
}
