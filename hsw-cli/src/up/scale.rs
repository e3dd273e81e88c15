//! Shrinking the HPC compute group without killing jobs: before `terraform apply` destroys the VMs of compute
//! nodes that cluster.yaml no longer has, `up` drains them in Slurm (no new jobs start there; running jobs
//! finish) and waits until none runs a job, or stops after `--drain-timeout` seconds with the nodes and what
//! to do, having destroyed nothing. The HPC playbook then writes a slurm.conf without them and restarts
//! slurmctld, so `sinfo` lists exactly the nodes that exist. Growing needs nothing here: Terraform adds only
//! the new VMs and the playbook adds them to slurm.conf (slurmctld and slurmd restart; running jobs go on).
//!
//! Which nodes go is what the last `up` recorded (its Terraform output in the state directory) less what the
//! config plans now; the controller is asked over SSH inside the sandbox, like the final checks do.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use hsw_core::ansible::hosts::{self, Deployment, Host, Role};

use super::verify::ssh;
use super::{say, ssh_user, Up};
use crate::error::Error;

/// The reason drained nodes carry in Slurm (`sinfo -R` shows it).
const REASON: &str = "hsw-scale-down";

/// How often the drain is looked at again.
const EVERY: Duration = Duration::from_secs(5);

/// The compute nodes the last `up` made that the config no longer plans, and the controller to ask; `None`
/// when there is nothing to drain (a first run, no node removed, or the whole HPC cluster going away).
pub(super) fn removed_nodes(up: &Up<'_>) -> Result<Option<(Host, Vec<String>)>, Error> {
    let file = up.ctx.tf_output_file();
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::cannot_run(format!(
                "cannot read the last run's Terraform output {}: {e}",
                file.display()
            )))
        }
    };
    let before = hosts::parse_terraform_output_str(&text).map_err(|e| {
        Error::invalid(format!(
            "the last run's Terraform output {} cannot be read ({e}), so up cannot tell which compute nodes \
             to drain before removing them; write it again with `terraform output -json > {}` in {}",
            file.display(),
            file.display(),
            up.ctx.tf_dir.display()
        ))
    })?;
    let planned = hosts::planned_hosts(&up.session.config, up.session.plan()?);
    Ok(removed_between(&before, &planned))
}

/// [`removed_nodes`] over the two deployments.
fn removed_between(before: &Deployment, planned: &Deployment) -> Option<(Host, Vec<String>)> {
    let now: BTreeSet<&str> = planned.hosts.iter().map(|h| h.name.as_str()).collect();
    let ctl = before.with_role(Role::Controller).next()?;
    if !now.contains(ctl.name.as_str()) {
        return None;
    }
    let gone: Vec<String> = before
        .with_role(Role::Compute)
        .filter(|h| !now.contains(h.name.as_str()))
        .map(|h| h.name.clone())
        .collect();
    (!gone.is_empty()).then(|| (ctl.clone(), gone))
}

/// Drains the compute nodes the config no longer has before Terraform removes them (see the module text).
pub(super) fn drain_removed(up: &Up<'_>, out: &mut dyn Write) -> Result<(), Error> {
    let Some((ctl, gone)) = removed_nodes(up)? else {
        return Ok(());
    };
    let timeout = up.args.drain_timeout;
    if timeout == 0 {
        say(
            out,
            format!(
                "compute nodes leaving the cluster: {}; not drained (--drain-timeout 0): jobs on them end with their VMs",
                gone.join(", ")
            ),
        );
        return Ok(());
    }
    let user = ssh_user(&up.session.config);
    drain(
        up,
        &user,
        &ctl,
        &gone,
        Duration::from_secs(timeout),
        EVERY,
        out,
    )
}

/// A node still runs (or finishes) a job: `sinfo %T` says draining, allocated, mixed or completing.
fn busy(state: &str) -> bool {
    let s = state.trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']);
    s.contains("draining") || ["alloc", "mix", "compl"].iter().any(|p| s.starts_with(p))
}

/// `sinfo` of `nodes` on the controller: node → long state, for the nodes Slurm knows, each once (`sinfo -N`
/// lists a node once per partition it is in), by name.
fn states(up: &Up<'_>, user: &str, ctl: &Host, list: &str) -> Result<Vec<(String, String)>, Error> {
    let (ok, stdout, stderr) = ssh(
        up.ctx,
        user,
        ctl,
        &["sinfo", "-h", "-N", "-n", list, "-o", "'%N %T'"],
    )?;
    if !ok {
        return Err(Error::invalid(format!(
            "cannot ask Slurm on {} about the compute nodes leaving the cluster ({list}): {}; start the \
             controller and run `hsw-cli up` again, or pass --drain-timeout 0 to remove them without draining",
            ctl.name,
            stderr.trim()
        )));
    }
    let once: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .map(|(n, s)| (n.to_owned(), s.trim().to_owned()))
        .collect();
    Ok(once.into_iter().collect())
}

/// Drains `gone` on `ctl` and waits until none of them runs a job (or `timeout`).
fn drain(
    up: &Up<'_>,
    user: &str,
    ctl: &Host,
    gone: &[String],
    timeout: Duration,
    every: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let list = gone.join(",");
    let known: Vec<String> = states(up, user, ctl, &list)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| gone.contains(n))
        .collect();
    if known.is_empty() {
        say(
            out,
            format!("compute nodes leaving the cluster: {list} (Slurm does not know them: nothing to drain)"),
        );
        return Ok(());
    }
    let known = known.join(",");
    say(
        out,
        format!("compute nodes leaving the cluster: draining {known} in Slurm before their VMs are destroyed"),
    );
    let node_arg = format!("NodeName={known}");
    let reason = format!("Reason={REASON}");
    let (ok, _, stderr) = ssh(
        up.ctx,
        user,
        ctl,
        &[
            "sudo",
            "-n",
            "scontrol",
            "update",
            &node_arg,
            "State=DRAIN",
            &reason,
        ],
    )?;
    if !ok {
        return Err(Error::invalid(format!(
            "scontrol could not drain {known} on {}: {}; nothing was destroyed",
            ctl.name,
            stderr.trim()
        )));
    }
    let t = Instant::now();
    let mut last = String::new();
    loop {
        let now = states(up, user, ctl, &known)?;
        let still: Vec<String> = now
            .iter()
            .filter(|(_, s)| busy(s))
            .map(|(n, s)| format!("{n} {s}"))
            .collect();
        let shown = now
            .iter()
            .map(|(n, s)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        if shown != last {
            say(out, format!("sinfo on {}: {shown}", ctl.name));
            last = shown;
        }
        if still.is_empty() {
            say(
                out,
                format!("drained {known}: no job runs there; Terraform removes them now"),
            );
            return Ok(());
        }
        if t.elapsed() >= timeout {
            return Err(Error::invalid(format!(
                "the compute nodes leaving the cluster still run jobs after {} s ({}); nothing was destroyed. \
                 Wait and run `hsw-cli up` again, cancel the jobs (`squeue -w {known}` lists them, `scancel -w \
                 <node>` ends them), or raise --drain-timeout. To keep the nodes, put them back in cluster.yaml \
                 and run `scontrol update NodeName={known} State=RESUME` on {}",
                timeout.as_secs(),
                still.join(", "),
                ctl.name
            )));
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    /// The default's planned hosts plus a third compute node, as the last run's Terraform output.
    fn before_with_extra(f: &Fixture) -> (Deployment, String) {
        let s = fixture::session();
        let mut d = fixture::loaded(&s, &f.ctx(&FakeRunner::new())).deployment;
        let mut extra = d.with_role(Role::Compute).next().unwrap().clone();
        extra.name = "hsw-dev-compute-3".into();
        extra.ip = "192.168.100.13".parse().unwrap();
        extra.gpu_units.clear();
        d.hosts.push(extra);
        let json = fixture::tf_output(&d);
        (d, json)
    }

    fn with_before(
        f: &Fixture,
        runner: &FakeRunner,
        json: Option<&str>,
        timeout: u64,
    ) -> (Result<(), Error>, String, Vec<Vec<String>>) {
        let ctx = f.ctx(runner);
        if let Some(j) = json {
            std::fs::create_dir_all(ctx.tf_output_file().parent().unwrap()).unwrap();
            std::fs::write(ctx.tf_output_file(), j).unwrap();
        }
        f.with_up(
            runner,
            |a| a.drain_timeout = timeout,
            |up| {
                let mut out = Vec::new();
                let r = match removed_nodes(up) {
                    Ok(Some((ctl, gone))) => drain(
                        up,
                        "hsw",
                        &ctl,
                        &gone,
                        Duration::from_secs(timeout),
                        Duration::ZERO,
                        &mut out,
                    ),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                (r, text(&out), runner.argvs())
            },
        )
    }

    #[test]
    fn nothing_to_drain_on_a_first_run_or_when_no_node_goes() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        let (r, _, argvs) = with_before(&f, &runner, None, 60);
        r.unwrap();
        assert!(argvs.is_empty());
        let s = fixture::session();
        let d = fixture::loaded(&s, &f.ctx(&runner)).deployment;
        let (r, _, argvs) = with_before(&f, &runner, Some(&fixture::tf_output(&d)), 60);
        r.unwrap();
        assert!(argvs.is_empty(), "{argvs:?}");
    }

    #[test]
    fn a_removed_node_is_drained_and_waited_for_before_terraform_runs() {
        let f = Fixture::new(Some("sb"));
        let (_, json) = before_with_extra(&f);
        let runner = FakeRunner::new();
        // `sinfo -N` lists a node once per partition it is in (the default has two).
        runner
            .on_full(
                &["sinfo"],
                Some(0),
                "hsw-dev-compute-3 idle\nhsw-dev-compute-3 idle\n",
                "",
                Some(1),
            )
            .on(&["scontrol"], 0, "")
            .on_full(
                &["sinfo"],
                Some(0),
                "hsw-dev-compute-3 draining\nhsw-dev-compute-3 draining\n",
                "",
                Some(2),
            )
            .on(
                &["sinfo"],
                0,
                "hsw-dev-compute-3 drained\nhsw-dev-compute-3 drained\n",
            );
        let (r, t, argvs) = with_before(&f, &runner, Some(&json), 60);
        r.unwrap();
        assert!(
            argvs[0].ends_with(
                &[
                    "sinfo",
                    "-h",
                    "-N",
                    "-n",
                    "hsw-dev-compute-3",
                    "-o",
                    "'%N %T'"
                ]
                .map(String::from)
            ),
            "{argvs:?}"
        );
        assert!(
            argvs[0].contains(&"hsw@192.168.100.10".to_owned()),
            "asks the controller: {argvs:?}"
        );
        assert!(
            argvs[1].ends_with(
                &[
                    "sudo",
                    "-n",
                    "scontrol",
                    "update",
                    "NodeName=hsw-dev-compute-3",
                    "State=DRAIN",
                    "Reason=hsw-scale-down"
                ]
                .map(String::from)
            ),
            "{argvs:?}"
        );
        assert_eq!(
            argvs.len(),
            5,
            "sinfo, scontrol, sinfo until drained: {argvs:?}"
        );
        assert!(
            t.contains("draining hsw-dev-compute-3 in Slurm")
                && t.contains("sinfo on hsw-dev-controller-1: hsw-dev-compute-3 drained\n")
                && t.contains("drained hsw-dev-compute-3: no job"),
            "each node once: {t}"
        );
    }

    #[test]
    fn busy_nodes_past_the_timeout_stop_up_with_what_to_do() {
        let f = Fixture::new(Some("sb"));
        let (_, json) = before_with_extra(&f);
        let runner = FakeRunner::new();
        runner
            .on_full(
                &["sinfo"],
                Some(0),
                "hsw-dev-compute-3 allocated\n",
                "",
                Some(1),
            )
            .on(&["scontrol"], 0, "")
            .on(&["sinfo"], 0, "hsw-dev-compute-3 draining\n");
        let (r, _, _) = with_before(&f, &runner, Some(&json), 0);
        let e = r.unwrap_err().to_string();
        for want in [
            "still run jobs after 0 s",
            "hsw-dev-compute-3 draining",
            "nothing was destroyed",
            "scancel",
            "--drain-timeout",
            "State=RESUME",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn a_node_slurm_does_not_know_needs_no_drain_and_a_dead_controller_is_an_error() {
        let f = Fixture::new(Some("sb"));
        let (_, json) = before_with_extra(&f);
        let runner = FakeRunner::new();
        runner.on(&["sinfo"], 0, "");
        let (r, t, argvs) = with_before(&f, &runner, Some(&json), 60);
        r.unwrap();
        assert_eq!(argvs.len(), 1, "no scontrol: {argvs:?}");
        assert!(t.contains("Slurm does not know them"), "{t}");
        let runner = FakeRunner::new();
        runner.on_full(
            &["sinfo"],
            Some(1),
            "",
            "slurm_load_node error: Unable to contact slurm controller\n",
            None,
        );
        let (r, _, _) = with_before(&f, &runner, Some(&json), 60);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("Unable to contact slurm controller") && e.contains("--drain-timeout 0"),
            "{e}"
        );
    }

    #[test]
    fn a_garbled_last_output_is_an_error_naming_the_fix() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        let (r, _, _) = with_before(&f, &runner, Some("{not json"), 60);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("terraform output -json >"), "{e}");
    }

    #[test]
    fn removing_the_whole_cluster_drains_nothing() {
        let f = Fixture::new(Some("sb"));
        let (mut before, _) = before_with_extra(&f);
        let planned = Deployment {
            gpu_backend: None,
            hosts: Vec::new(),
        };
        assert!(removed_between(&before, &planned).is_none());
        before.hosts.retain(|h| h.role != Role::Controller);
        assert!(removed_between(&before, &before.clone()).is_none());
    }

    #[test]
    fn busy_states() {
        for s in [
            "draining",
            "allocated",
            "allocated+drain",
            "mixed",
            "mixed*",
            "completing",
            "draining*",
        ] {
            assert!(busy(s), "{s}");
        }
        for s in [
            "drained",
            "drained*",
            "idle",
            "down",
            "down*",
            "idle+drain",
            "down+drain",
        ] {
            assert!(!busy(s), "{s}");
        }
    }
}
