//! Steps 10 to 12: every VM answers SSH with its own host name; on the HPC cluster, `sinfo` shows every
//! compute node idle and `srun -N<n> hostname` prints each one's name, then issue 12's site checks ([`hpc`]:
//! MPI across nodes from the shared home, accounting, QoS, a held job across a slurmctld restart); then, unless
//! `--hpc-only`, what the platform playbooks promise ([`platform`]: containerd, PostgreSQL, Prometheus,
//! segmentation, sshd). SSH runs inside the sandbox.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use hsw_core::ansible::hosts::{Deployment, Host, Role};

use super::{say, ssh_user, step_header, Ctx, Up, UP_STEPS};
use crate::error::Error;
use crate::runner::Cmd;

mod hpc;
pub(crate) mod kubernetes;
mod platform;
#[cfg(test)]
pub(crate) use platform::answer_healthy_mlflow;

/// How often the checks ask again, and how long SSH may take to answer.
#[derive(Debug, Clone, Copy)]
struct Poll {
    every: Duration,
    ssh_deadline: Duration,
}

const POLL: Poll = Poll {
    every: Duration::from_secs(3),
    ssh_deadline: Duration::from_secs(300),
};

/// Before the playbooks, VMs may still be booting: as long as `ansible/reach.yml` waited (600 s). A restored
/// deployment's five TCG guests took up to 321 s to answer.
const REACH: Poll = Poll {
    every: Duration::from_secs(3),
    ssh_deadline: Duration::from_secs(600),
};

/// Before the first playbook of this `up`: every VM answers SSH (asked until the SSH deadline), its host key
/// recorded in its cluster's known_hosts on first contact (accept-new), which is what `ansible/reach.yml` does
/// with one Python start per host: 17 s before the HPC playbook and 34 s before the platform playbooks on TCG
/// guests, against one `ssh hostname` each here. The playbooks are then told so (`hsw_reached=true`) and skip
/// that wait.
pub fn reach(up: &mut Up<'_>, out: &mut dyn Write) -> Result<(), Error> {
    if up.reached {
        return Ok(());
    }
    let user = ssh_user(&up.session.config);
    let consoles = up
        .libvirt
        .as_ref()
        .map(|l| l.consoles_hint(" in ", ""))
        .unwrap_or_default();
    let d = &up.loaded()?.deployment;
    check_ssh(up.ctx, &user, d, &consoles, REACH, out)?;
    up.reached = true;
    Ok(())
}

/// Steps 10 to 12 (or nothing with `--no-verify`).
pub fn verify(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    if up.args.no_verify {
        step_header(out, n, UP_STEPS, "checks skipped (--no-verify)");
        return Ok(());
    }
    let ctx = up.ctx;
    let user = ssh_user(&up.session.config);
    let consoles = up.libvirt()?.consoles_hint(" in ", "");
    let d = &up.loaded()?.deployment;
    step_header(out, n, UP_STEPS, "every VM answers SSH");
    let mut verified = vec![check_ssh(ctx, &user, d, &consoles, POLL, out)?];
    let timeout = Duration::from_secs(up.args.verify_timeout);
    if up.session.config.clusters.hpc.is_some() {
        step_header(
            out,
            n + 1,
            UP_STEPS,
            "Slurm: sinfo, srun, MPI, accounting, QoS, state across a restart",
        );
        verified.extend(check_slurm(ctx, &user, d, timeout, POLL, out)?);
        verified.extend(hpc::check_site(
            ctx,
            &user,
            &up.session.config,
            d,
            POLL,
            timeout,
            out,
        )?);
    }
    if up.args.hpc_only {
        step_header(out, n + 2, UP_STEPS, "platform checks skipped (--hpc-only)");
    } else {
        step_header(
            out,
            n + 2,
            UP_STEPS,
            "platform: containerd, Kubernetes, PostgreSQL, Prometheus, segmentation, sshd",
        );
        verified.extend(platform::check_platform(
            ctx,
            &user,
            &up.session.config,
            d,
            POLL,
            timeout,
            out,
        )?);
    }
    up.verified = verified;
    Ok(())
}

/// `ssh` to a host (inside the sandbox) running a fixed command; returns (success, stdout, stderr).
pub(crate) fn ssh(
    ctx: &Ctx<'_>,
    user: &str,
    host: &Host,
    remote: &[&str],
) -> Result<(bool, String, String), Error> {
    let o = ctx.capture(
        &ssh_cmd(ctx, user, host, remote),
        "ssh",
        "install openssh-client",
    )?;
    Ok((o.status.success(), o.stdout, o.stderr))
}

/// The `ssh` command (inside the sandbox) that runs a fixed command on a host as `user`, with the cluster's key
/// and known hosts.
pub(crate) fn ssh_cmd(ctx: &Ctx<'_>, user: &str, host: &Host, remote: &[&str]) -> Cmd {
    let cluster = host.cluster();
    ctx.command("ssh")
        .arg("-i")
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
        .arg(format!("{user}@{}", host.ip))
        .arg("--")
        .args(remote)
}

/// Every VM answers `ssh ... hostname` with its own name (`consoles` ends the timeout message).
fn check_ssh(
    ctx: &Ctx<'_>,
    user: &str,
    d: &Deployment,
    consoles: &str,
    poll: Poll,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let t = Instant::now();
    let mut pending: Vec<&Host> = d.hosts.iter().collect();
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
                return Err(Error::invalid(format!(
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
        if t.elapsed() > poll.ssh_deadline {
            let names: Vec<&str> = pending.iter().map(|h| h.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "{} did not answer SSH within {} s; look at the guest consoles{consoles}",
                names.join(", "),
                poll.ssh_deadline.as_secs(),
            )));
        }
        std::thread::sleep(poll.every);
    }
    Ok(format!("all {} VMs answer SSH", d.hosts.len()))
}

/// The names of the HPC compute nodes.
pub fn compute_names(d: &Deployment) -> Vec<&str> {
    d.with_role(Role::Compute)
        .map(|h| h.name.as_str())
        .collect()
}

/// `sinfo` until every compute node is idle (or `timeout`), then `srun -N<n> hostname`.
fn check_slurm(
    ctx: &Ctx<'_>,
    user: &str,
    d: &Deployment,
    timeout: Duration,
    poll: Poll,
    out: &mut dyn Write,
) -> Result<Vec<String>, Error> {
    let Some(ctl) = d.with_role(Role::Controller).next() else {
        return Err(Error::invalid(
            "the HPC cluster has no controller in the inventory",
        ));
    };
    let computes = compute_names(d);
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
            return Err(Error::invalid(format!(
                "the compute nodes are not all idle after {} s (sinfo: {last}); look at /var/log/slurm/ on the \
                 controller and the nodes",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(poll.every);
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
        return Err(Error::invalid(format!(
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

/// The first line of a command's output, for a message (`no output` when there is none).
fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("no output")
}

/// What a failed remote command said, in one line: its standard error, else its standard output.
fn said<'a>(stdout: &'a str, stderr: &'a str) -> &'a str {
    first_line(if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    const FAST: Poll = Poll {
        every: Duration::ZERO,
        ssh_deadline: Duration::ZERO,
    };

    fn hosts(f: &Fixture) -> Deployment {
        let s = fixture::session();
        fixture::loaded(&s, &f.ctx(&FakeRunner::new())).deployment
    }

    /// Every host answers `hostname` with its name.
    fn answering(d: &Deployment) -> FakeRunner {
        let r = FakeRunner::new();
        for h in &d.hosts {
            r.on(
                &[&format!("hsw@{}", h.ip), "hostname"],
                0,
                &format!("{}\n", h.name),
            );
        }
        r
    }

    #[test]
    fn ssh_runs_inside_the_sandbox_with_the_cluster_key() {
        let f = Fixture::new(Some("sb"));
        let d = hosts(&f);
        let runner = answering(&d);
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        let got = check_ssh(&ctx, "hsw", &d, "", FAST, &mut out).unwrap();
        assert_eq!(got, format!("all {} VMs answer SSH", d.hosts.len()));
        let h = &d.hosts[0];
        let argv = &runner.argvs()[0];
        let i = argv.iter().position(|a| a == "ssh").unwrap();
        assert_eq!(
            &argv[..i],
            [
                "bash",
                &ctx.repo.join("scripts/sandbox.sh").display().to_string(),
                "--name",
                "sb",
                "exec",
                "--"
            ]
        );
        assert_eq!(
            argv[i..],
            [
                "ssh".to_owned(),
                "-i".into(),
                ctx.state.ssh_private_key(h.cluster()).display().to_string(),
                "-o".into(),
                "BatchMode=yes".into(),
                "-o".into(),
                "StrictHostKeyChecking=accept-new".into(),
                "-o".into(),
                format!(
                    "UserKnownHostsFile={}",
                    ctx.state.known_hosts(h.cluster()).display()
                ),
                "-o".into(),
                "ConnectTimeout=10".into(),
                "-o".into(),
                "LogLevel=ERROR".into(),
                format!("hsw@{}", h.ip),
                "--".into(),
                "hostname".into(),
            ]
        );
        assert!(text(&out).contains(&format!(
            "hsw: ssh hsw@{} ({}): hostname {}",
            h.ip, h.name, h.name
        )));
    }

    #[test]
    fn ssh_failures_name_the_hosts_and_the_consoles() {
        let f = Fixture::new(Some("sb"));
        let d = hosts(&f);
        let runner = FakeRunner::new();
        runner.on(&["hostname"], 255, "");
        let ctx = f.ctx(&runner);
        let e = check_ssh(
            &ctx,
            "hsw",
            &d,
            " in /var/lib/hsw-sandbox/sb/log/qemu/",
            FAST,
            &mut Vec::new(),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with(&format!("{}, ", d.hosts[0].name)), "{m}");
        assert!(m.ends_with("did not answer SSH within 0 s; look at the guest consoles in /var/lib/hsw-sandbox/sb/log/qemu/"), "{m}");
        let wrong = FakeRunner::new();
        wrong.on(&["hostname"], 0, "debian\n");
        let ctx = f.ctx(&wrong);
        let e = check_ssh(&ctx, "hsw", &d, "", FAST, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("answered with hostname `debian`"),
            "{e}"
        );
    }

    #[test]
    fn slurm_waits_for_idle_nodes_then_runs_srun() {
        let f = Fixture::new(Some("sb"));
        let d = hosts(&f);
        let computes = fixture::computes(&d);
        let idle = fixture::lines(&computes, " idle");
        let runner = FakeRunner::new();
        runner
            .on_full(
                &["sinfo"],
                Some(0),
                &format!("{} down\n", computes[0]),
                "",
                Some(1),
            )
            .on(&["sinfo"], 0, &idle)
            .on(
                &["srun"],
                0,
                &fixture::lines(&computes.iter().rev().copied().collect::<Vec<_>>(), ""),
            );
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        let got = check_slurm(&ctx, "hsw", &d, Duration::from_secs(60), FAST, &mut out).unwrap();
        let n = computes.len();
        assert_eq!(
            got,
            [
                format!("sinfo: {} idle", computes.join(", ")),
                format!("srun -N{n} hostname: {}", computes.join(" "))
            ]
        );
        let argvs = runner.argvs();
        assert_eq!(argvs.len(), 3, "sinfo twice, srun once");
        assert!(argvs[0].ends_with(&["sinfo", "-h", "-N", "-o", "'%N %t'"].map(String::from)));
        assert!(argvs[2].ends_with(
            &[
                "timeout",
                "120",
                "srun",
                "-N",
                &n.to_string(),
                "-t",
                "2",
                "hostname"
            ]
            .map(String::from)
        ));
        let t = text(&out);
        assert!(t.contains(&format!("{} down", computes[0])), "{t}");
    }

    #[test]
    fn slurm_failures_are_sentences() {
        let f = Fixture::new(Some("sb"));
        let d = hosts(&f);
        let runner = FakeRunner::new();
        runner.on(&["sinfo"], 0, "x down\n");
        let ctx = f.ctx(&runner);
        let e = check_slurm(&ctx, "hsw", &d, Duration::ZERO, FAST, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the compute nodes are not all idle after 0 s (sinfo: x down)"),
            "{e}"
        );
        let computes = fixture::computes(&d);
        let runner = FakeRunner::new();
        runner
            .on(&["sinfo"], 0, &fixture::lines(&computes, " idle"))
            .on_full(
                &["srun"],
                Some(1),
                "",
                "srun: error: Unable to allocate resources\n",
                None,
            );
        let ctx = f.ctx(&runner);
        let e = check_slurm(&ctx, "hsw", &d, Duration::ZERO, FAST, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .ends_with(": srun: error: Unable to allocate resources"),
            "{e}"
        );
    }

    #[test]
    fn no_verify_runs_nothing() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        let (r, t) = f.with_up(
            &runner,
            |a| a.no_verify = true,
            |up| {
                let mut out = Vec::new();
                (verify(up, 10, &mut out), text(&out))
            },
        );
        r.unwrap();
        assert!(runner.calls().is_empty());
        assert!(
            t.contains("==> [10/13] checks skipped (--no-verify)"),
            "{t}"
        );
    }
}
