//! The HPC site checks of issue 12, run by step 10 after `srun hostname`, over SSH to the controller as the login
//! user: an MPI hello built in the shared home prints one rank from each of two compute nodes (`srun --mpi=pmix`);
//! the first configured user's `sbatch` job shows up COMPLETED in `sacct` under that user's account; a job over
//! the user's QoS wall time is refused with Slurm's reason; a held job survives `systemctl restart slurmctld`.
//!
//! Run against guests by `tests/e2e/up.sh` (through `hsw-cli up`); the unit tests below check the commands they
//! send and how they read the answers over the fake runner.
//!
//! The remote commands are fixed text; the only values from cluster.yaml in them are the user's name (checked to
//! be a plain login name before use) and a number of minutes.

use std::io::Write;
use std::time::{Duration, Instant};

use hsw_core::ansible::hosts::{Deployment, Host, Role};
use hsw_core::config::hpc::slurm_minutes;
use hsw_core::config::ClusterConfig;

use super::{compute_names, ssh, Poll};
use crate::error::Error;
use crate::up::{say, Ctx};

/// Where the MPI hello lives, in the login user's (shared) home.
const MPI_DIR: &str = "hsw-proof";

/// Writes `hello.c` into the login user's home on the controller and builds it with mpicc: one remote shell
/// command of fixed text (the C program prints `rank R of N on HOST`).
const MPI_BUILD: &str = "mkdir -p ~/hsw-proof && printf '%s\\n' '#include <mpi.h>' '#include <stdio.h>' \
'int main(int c, char **v) { int r, n, l; char h[256]; MPI_Init(&c, &v); MPI_Comm_rank(MPI_COMM_WORLD, &r); \
MPI_Comm_size(MPI_COMM_WORLD, &n); MPI_Get_processor_name(h, &l); printf(\"rank %d of %d on %s\\n\", r, n, h); \
MPI_Finalize(); return 0; }' > ~/hsw-proof/mpi-hello.c && mpicc -o ~/hsw-proof/mpi-hello ~/hsw-proof/mpi-hello.c";

/// The user the accounting checks run as: the first of `clusters.hpc.users`, its account, and its default
/// QoS's wall time in minutes (the first QoS of the account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofUser {
    /// The login name.
    pub name: String,
    /// The Slurm account.
    pub account: String,
    /// The default QoS's `max_wall`, in minutes.
    pub max_wall_minutes: Option<u64>,
}

/// The user the checks run as, when cluster.yaml declares one.
pub fn proof_user(config: &ClusterConfig) -> Option<ProofUser> {
    let hpc = config.clusters.hpc.as_ref()?;
    let user = hpc.users.first()?;
    let qos = hpc
        .accounts
        .iter()
        .find(|a| a.name == user.account)
        .and_then(|a| a.qos.first());
    let max_wall_minutes = qos
        .and_then(|q| hpc.qos.iter().find(|x| &x.name == q))
        .and_then(|q| q.max_wall.as_deref())
        .and_then(slurm_minutes);
    Some(ProofUser {
        name: user.name.clone(),
        account: user.account.clone(),
        max_wall_minutes,
    })
}

/// A login name that is safe as one word of a remote command (the schema's pattern for user names).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !name.starts_with('-')
}

/// Every check of this module that the configuration calls for; the lines `up` reports as verified.
pub(super) fn check_site(
    ctx: &Ctx<'_>,
    login: &str,
    config: &ClusterConfig,
    d: &Deployment,
    poll: Poll,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<Vec<String>, Error> {
    let Some(ctl) = d.with_role(Role::Controller).next() else {
        return Err(Error::invalid(
            "the HPC cluster has no controller in the inventory",
        ));
    };
    let mut verified = Vec::new();
    if compute_names(d).len() >= 2 {
        verified.push(check_mpi(ctx, login, d, ctl, out)?);
    }
    if let Some(user) = proof_user(config) {
        if !plain_name(&user.name) {
            return Err(Error::invalid(format!(
                "user `{}` is not a plain login name; `hsw-cli validate` refuses it",
                user.name
            )));
        }
        verified.push(check_sacct(ctx, login, ctl, &user, poll, timeout, out)?);
        if let Some(max) = user.max_wall_minutes {
            verified.push(check_qos_refusal(ctx, login, ctl, &user, max, out)?);
        }
    }
    verified.push(check_held_job(ctx, login, ctl, poll, timeout, out)?);
    Ok(verified)
}

/// Builds the MPI hello in the shared home on the controller and runs it on two compute nodes.
fn check_mpi(
    ctx: &Ctx<'_>,
    login: &str,
    d: &Deployment,
    ctl: &Host,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let (ok, _, stderr) = ssh(ctx, login, ctl, &[MPI_BUILD])?;
    if !ok {
        return Err(Error::invalid(format!(
            "mpicc could not build the MPI hello in {login}'s home on {}: {}",
            ctl.name,
            stderr.trim()
        )));
    }
    let program = format!("~/{MPI_DIR}/mpi-hello");
    let (ok, stdout, stderr) = ssh(
        ctx,
        login,
        ctl,
        &[
            "timeout",
            "180",
            "srun",
            "--mpi=pmix",
            "-N",
            "2",
            "-n",
            "2",
            "-t",
            "2",
            &program,
        ],
    )?;
    let mut hosts: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rank "))
        .filter_map(|l| l.rsplit_once(" on ").map(|(_, h)| h))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let computes = compute_names(d);
    if !ok || hosts.len() != 2 || !hosts.iter().all(|h| computes.contains(h)) {
        return Err(Error::invalid(format!(
            "the MPI hello (srun --mpi=pmix -N2 -n2, built in the shared home) printed `{}`, not one rank on each \
             of two compute nodes{}",
            stdout.trim().replace('\n', "; "),
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.trim())
            }
        )));
    }
    let msg = format!(
        "MPI hello from the shared home: one rank on each of {}",
        hosts.join(", ")
    );
    say(out, &msg);
    Ok(msg)
}

/// `sudo -u USER sbatch --wait`, then `sacct` until the job is COMPLETED under the user's account.
fn check_sacct(
    ctx: &Ctx<'_>,
    login: &str,
    ctl: &Host,
    user: &ProofUser,
    poll: Poll,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let (ok, stdout, stderr) = ssh(
        ctx,
        login,
        ctl,
        &[
            "sudo",
            "-n",
            "-u",
            &user.name,
            "sbatch",
            "--parsable",
            "--wait",
            "-D",
            "/tmp",
            "-o",
            "/dev/null",
            "-t",
            "1",
            "--wrap",
            "hostname",
        ],
    )?;
    let job = stdout.trim().split(';').next().unwrap_or("").to_owned();
    if !ok || job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(format!(
            "{}'s sbatch job did not complete (stdout `{}`): {}",
            user.name,
            stdout.trim(),
            stderr.trim()
        )));
    }
    let want = format!("COMPLETED|{}|{}", user.account, user.name);
    let t = Instant::now();
    loop {
        let (_, stdout, _) = ssh(
            ctx,
            login,
            ctl,
            &[
                "sacct",
                "-n",
                "-P",
                "-X",
                "-j",
                &job,
                "-o",
                "State,Account,User",
            ],
        )?;
        if stdout.lines().any(|l| l.trim() == want) {
            break;
        }
        if t.elapsed() > timeout {
            return Err(Error::invalid(format!(
                "sacct does not show job {job} as `{want}` after {} s (it shows `{}`): is slurmdbd running on {}?",
                timeout.as_secs(),
                stdout.trim(),
                ctl.name
            )));
        }
        std::thread::sleep(poll.every);
    }
    let msg = format!(
        "sacct: {}'s job {job} COMPLETED under account {}",
        user.name, user.account
    );
    say(out, &msg);
    Ok(msg)
}

/// A job asking for one minute more than the user's QoS allows is refused when submitted (DenyOnLimit).
fn check_qos_refusal(
    ctx: &Ctx<'_>,
    login: &str,
    ctl: &Host,
    user: &ProofUser,
    max_minutes: u64,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let over = (max_minutes + 1).to_string();
    let (ok, stdout, stderr) = ssh(
        ctx,
        login,
        ctl,
        &[
            "sudo",
            "-n",
            "-u",
            &user.name,
            "sbatch",
            "--parsable",
            "-D",
            "/tmp",
            "-o",
            "/dev/null",
            "-t",
            &over,
            "--wrap",
            "true",
        ],
    )?;
    if ok {
        let job = stdout.trim().split(';').next().unwrap_or("").to_owned();
        if !job.is_empty() && job.bytes().all(|b| b.is_ascii_digit()) {
            ssh(ctx, login, ctl, &["sudo", "-n", "scancel", &job])?;
        }
        return Err(Error::invalid(format!(
            "a {over}-minute job of {} was accepted (job `{job}`), though the QoS allows {max_minutes} minutes: \
             are QoS limits enforced (AccountingStorageEnforce) and the QoS flagged DenyOnLimit?",
            user.name
        )));
    }
    let reason = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    if !reason.contains("QOS") {
        return Err(Error::invalid(format!(
            "a {over}-minute job of {} was refused, but not for its QoS: {reason}",
            user.name
        )));
    }
    let msg =
        format!("a job over the QoS wall time ({over} > {max_minutes} min) is refused: {reason}");
    say(out, &msg);
    Ok(msg)
}

/// A held job is still queued after `systemctl restart slurmctld` (StateSaveLocation on the controller's disk).
fn check_held_job(
    ctx: &Ctx<'_>,
    login: &str,
    ctl: &Host,
    poll: Poll,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let (ok, stdout, stderr) = ssh(
        ctx,
        login,
        ctl,
        &[
            "sbatch",
            "--parsable",
            "--hold",
            "-D",
            "/tmp",
            "-o",
            "/dev/null",
            "-t",
            "1",
            "--wrap",
            "true",
        ],
    )?;
    let job = stdout.trim().split(';').next().unwrap_or("").to_owned();
    if !ok || job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(format!(
            "sbatch --hold failed: {}",
            stderr.trim()
        )));
    }
    let (ok, _, stderr) = ssh(
        ctx,
        login,
        ctl,
        &["sudo", "-n", "systemctl", "restart", "slurmctld"],
    )?;
    if !ok {
        return Err(Error::invalid(format!(
            "systemctl restart slurmctld failed on {}: {}",
            ctl.name,
            stderr.trim()
        )));
    }
    let t = Instant::now();
    let state = loop {
        let (ok, stdout, _) = ssh(ctx, login, ctl, &["squeue", "-h", "-j", &job, "-o", "%T"])?;
        let state = stdout.trim().to_owned();
        if ok && !state.is_empty() {
            break state;
        }
        if t.elapsed() > timeout {
            return Err(Error::invalid(format!(
                "held job {job} is gone after slurmctld restarted (squeue shows nothing after {} s): is \
                 StateSaveLocation kept?",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(poll.every);
    };
    ssh(ctx, login, ctl, &["scancel", &job])?;
    if state != "PENDING" {
        return Err(Error::invalid(format!(
            "held job {job} is {state} after slurmctld restarted, not PENDING"
        )));
    }
    let msg = format!("held job {job} still PENDING after systemctl restart slurmctld");
    say(out, &msg);
    Ok(msg)
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

    fn setup(f: &Fixture) -> (ClusterConfig, Deployment) {
        let s = fixture::session();
        let d = fixture::loaded(&s, &f.ctx(&FakeRunner::new())).deployment;
        (s.config.clone(), d)
    }

    /// What a working cluster answers.
    fn working(computes: &[&str]) -> FakeRunner {
        let r = FakeRunner::new();
        r.on(&["--mpi=pmix"], 0, &format!(
            "rank 0 of 2 on {}\nrank 1 of 2 on {}\n",
            computes[0], computes[1]
        ))
        .on(&["--wait", "hostname"], 0, "41\n")
        .on(&["sacct", "41"], 0, "COMPLETED|research|alice\n")
        .on_full(
            &["-t", "61"],
            Some(1),
            "",
            "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)\n",
            None,
        )
        .on(&["--hold"], 0, "42\n")
        .on(&["squeue", "42"], 0, "PENDING\n");
        r
    }

    #[test]
    fn the_default_user_is_alice_in_research_with_an_hour() {
        let f = Fixture::new(Some("sb"));
        let (cfg, _) = setup(&f);
        assert_eq!(
            proof_user(&cfg),
            Some(ProofUser {
                name: "alice".into(),
                account: "research".into(),
                max_wall_minutes: Some(60),
            })
        );
        assert!(
            plain_name("alice") && !plain_name("a b") && !plain_name("-x") && !plain_name("a;b")
        );
    }

    #[test]
    fn a_working_cluster_passes_every_check() {
        let f = Fixture::new(Some("sb"));
        let (cfg, d) = setup(&f);
        let computes = fixture::computes(&d);
        let runner = working(&computes);
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        let got = check_site(
            &ctx,
            "hsw",
            &cfg,
            &d,
            FAST,
            Duration::from_secs(60),
            &mut out,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(
            got[0].contains(&format!("{}, {}", computes[0], computes[1])),
            "{got:?}"
        );
        assert_eq!(
            got[1],
            "sacct: alice's job 41 COMPLETED under account research"
        );
        assert!(
            got[2].contains("Job violates accounting/QOS policy"),
            "{got:?}"
        );
        assert_eq!(
            got[3],
            "held job 42 still PENDING after systemctl restart slurmctld"
        );
        let argvs = runner.argvs();
        let remote = |a: &Vec<String>| a[a.iter().rposition(|w| w == "--").unwrap() + 1..].to_vec();
        // The MPI hello is built in the login user's home and launched with PMIx on two nodes.
        assert_eq!(remote(&argvs[0]), [MPI_BUILD]);
        assert_eq!(
            remote(&argvs[1]),
            [
                "timeout",
                "180",
                "srun",
                "--mpi=pmix",
                "-N",
                "2",
                "-n",
                "2",
                "-t",
                "2",
                "~/hsw-proof/mpi-hello"
            ]
        );
        // The user's job runs as the user; the over-long job asks for one minute more than the QoS allows.
        assert!(remote(&argvs[2])
            .starts_with(&["sudo", "-n", "-u", "alice", "sbatch"].map(String::from)));
        assert!(remote(&argvs[4]).windows(2).any(|w| w == ["-t", "61"]));
        // slurmctld is restarted between the held job's submission and the look at the queue; the job is removed.
        let i = argvs
            .iter()
            .position(|a| a.contains(&"restart".to_owned()))
            .unwrap();
        assert!(argvs[i - 1].contains(&"--hold".to_owned()));
        assert!(argvs[i + 1].contains(&"squeue".to_owned()));
        assert_eq!(remote(argvs.last().unwrap()), ["scancel", "42"]);
        assert!(text(&out).contains("held job 42"));
    }

    /// A runner that answers like a working cluster for the first `good` checks' commands only.
    fn answers(computes: &[&str], good: usize) -> FakeRunner {
        let r = FakeRunner::new();
        let mpi = format!(
            "rank 0 of 2 on {}\nrank 1 of 2 on {}\n",
            computes[0], computes[1]
        );
        if good >= 1 {
            r.on(&["--mpi=pmix"], 0, &mpi);
        }
        if good >= 2 {
            r.on(&["--wait"], 0, "41\n")
                .on(&["sacct"], 0, "COMPLETED|research|alice\n");
        }
        if good >= 3 {
            r.on_full(
                &["-t", "61"],
                Some(1),
                "",
                "sbatch: error: Job violates accounting/QOS policy\n",
                None,
            );
        }
        r
    }

    #[test]
    fn failures_are_sentences() {
        let f = Fixture::new(Some("sb"));
        let (cfg, d) = setup(&f);
        let computes = fixture::computes(&d);
        let run = |runner: &FakeRunner| {
            let ctx = f.ctx(runner);
            check_site(&ctx, "hsw", &cfg, &d, FAST, Duration::ZERO, &mut Vec::new())
                .unwrap_err()
                .to_string()
        };
        // Both ranks on one node: not a cross-node run.
        let r = FakeRunner::new();
        r.on(
            &["--mpi=pmix"],
            0,
            &format!("rank 0 of 2 on {0}\nrank 1 of 2 on {0}\n", computes[0]),
        );
        let m = run(&r);
        assert!(
            m.contains("not one rank on each of two compute nodes"),
            "{m}"
        );
        // The job never shows up in sacct (slurmdbd down).
        let r = answers(&computes, 1);
        r.on(&["--wait"], 0, "41\n").on(&["sacct"], 0, "");
        let m = run(&r);
        assert!(
            m.starts_with("sacct does not show job 41 as `COMPLETED|research|alice`"),
            "{m}"
        );
        // A QoS that lets the long job in: refused, and the job is cancelled.
        let r = answers(&computes, 2);
        r.on(&["-t", "61"], 0, "43\n");
        let m = run(&r);
        assert!(
            m.starts_with("a 61-minute job of alice was accepted (job `43`)"),
            "{m}"
        );
        assert!(r
            .argvs()
            .iter()
            .any(|a| a.ends_with(&["scancel".to_owned(), "43".to_owned()])));
        // Refused for another reason than its QoS.
        let r = answers(&computes, 2);
        r.on_full(
            &["-t", "61"],
            Some(1),
            "",
            "sbatch: error: Invalid account\n",
            None,
        );
        let m = run(&r);
        assert!(
            m.ends_with("was refused, but not for its QoS: sbatch: error: Invalid account"),
            "{m}"
        );
        // The held job is lost with the restart.
        let r = answers(&computes, 3);
        r.on(&["--hold"], 0, "42\n").on(&["squeue"], 0, "");
        let m = run(&r);
        assert!(
            m.starts_with("held job 42 is gone after slurmctld restarted"),
            "{m}"
        );
    }
}
