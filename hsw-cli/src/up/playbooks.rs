//! Steps 8 and 9: the HPC playbook (Munge, Slurm), then the platform playbooks (security, Kubernetes, MLOps,
//! monitoring) on both clusters, each one ansible-playbook run inside the sandbox, its output streaming through
//! and kept in `<state>/logs/ansible-<hpc|platform>.log`; `up` reports the sum of `changed=` of each PLAY RECAP.
//! The platform run is offline unless `--online` (`--skip-tags online`, `hsw_offline=true`: what the guest
//! image carries is configured for real, the downloads are skipped) and left out with `--hpc-only`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use hsw_core::slurm;

use super::{say, step_header, Ctx, Up, UP_STEPS};
use crate::ansible_cmd;
use crate::error::Error;

/// Step 8: the Slurm files rendered, the HPC files written, the playbook run (when the config has an HPC
/// cluster).
pub fn hpc(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    if up.session.config.clusters.hpc.is_none() {
        step_header(
            out,
            n,
            UP_STEPS,
            "HPC playbook: no HPC cluster in the config",
        );
        return Ok(());
    }
    step_header(out, n, UP_STEPS, "HPC playbook (Munge, Slurm)");
    let loaded = up.loaded()?;
    let rendered = slurm::render(&loaded.config, &loaded.deployment)
        .map_err(|e| Error::invalid(format!("the Slurm files cannot be rendered: {e}")))?;
    let files = ansible_cmd::write_hpc_files(up.ctx.runner, loaded, &rendered)?;
    say(
        out,
        format!(
            "inventory {}; Slurm files {}",
            files.inventory.display(),
            files.slurm_dir.display()
        ),
    );
    super::verify::reach(up, out)?;
    let run = Run {
        what: "the HPC playbook",
        log: "ansible-hpc.log",
        inventory: &files.inventory,
        extra_vars: &files.extra_vars,
        playbooks: vec![up.ctx.repo.join("ansible/playbook-hpc.yml")],
        offline: false,
        reached: up.reached,
    };
    up.ansible_changed = Some(run_playbook(up.ctx, &program(), &run, out)?);
    Ok(())
}

/// Step 9: the platform variables written, then the platform playbooks in one run (unless `--hpc-only`).
pub fn platform(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    if up.args.hpc_only {
        step_header(out, n, UP_STEPS, "platform playbooks skipped (--hpc-only)");
        return Ok(());
    }
    let offline = !up.args.online;
    step_header(
        out,
        n,
        UP_STEPS,
        &format!(
            "platform playbooks (security, Kubernetes, MLOps, monitoring){}",
            if offline { ", offline" } else { "" }
        ),
    );
    super::verify::reach(up, out)?;
    let loaded = up.loaded()?;
    let files = ansible_cmd::write_platform_files(loaded, offline)?;
    say(
        out,
        format!("platform variables {}", files.extra_vars.display()),
    );
    let dir = up.ctx.repo.join("ansible");
    let run = Run {
        what: "the platform playbooks",
        log: "ansible-platform.log",
        inventory: &files.inventory,
        extra_vars: &files.extra_vars,
        playbooks: ansible_cmd::PLATFORM_PLAYBOOKS
            .iter()
            .map(|p| ansible_cmd::platform_playbook(&dir, p))
            .collect(),
        offline,
        reached: up.reached,
    };
    up.platform_changed = Some(run_playbook(up.ctx, &program(), &run, out)?);
    Ok(())
}

/// The ansible-playbook program: `HSW_ANSIBLE_PLAYBOOK`, else `ansible-playbook`.
fn program() -> OsString {
    std::env::var_os("HSW_ANSIBLE_PLAYBOOK").unwrap_or_else(|| "ansible-playbook".into())
}

/// One ansible-playbook run of `up`.
struct Run<'a> {
    /// What it is, in messages (`the HPC playbook`).
    what: &'a str,
    /// Its log's file name in `<state>/logs/`.
    log: &'a str,
    inventory: &'a Path,
    extra_vars: &'a Path,
    playbooks: Vec<PathBuf>,
    /// `--skip-tags online`.
    offline: bool,
    /// Every VM answered SSH already ([`super::verify::reach`]): `-e hsw_reached=true`, and reach.yml skips its
    /// wait.
    reached: bool,
}

/// What one ansible-playbook run changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The sum over the hosts of `changed=` in the PLAY RECAP.
    pub count: u64,
    /// Each task that reported `changed`, as `TASK NAME (HOST)`, in the order they ran.
    pub tasks: Vec<String>,
}

/// ansible-playbook (inside the sandbox), its output streaming through and kept in the log; returns what its
/// PLAY RECAP and its `changed:` lines say changed.
fn run_playbook(
    ctx: &Ctx<'_>,
    program: &OsString,
    run: &Run<'_>,
    out: &mut dyn Write,
) -> Result<Changes, Error> {
    let reached = ["-e".to_owned(), "hsw_reached=true".to_owned()];
    let argv = ansible_cmd::playbook_argv(
        run.inventory,
        run.extra_vars,
        &run.playbooks,
        run.offline,
        if run.reached { &reached } else { &[] },
    );
    let cmd = ctx
        .command(program)
        .args(&argv)
        .env("ANSIBLE_NOCOLOR", if ctx.color { "0" } else { "1" })
        .env("ANSIBLE_FORCE_COLOR", if ctx.color { "1" } else { "0" })
        .env("PYTHONUNBUFFERED", "1")
        .envs(ansible_cmd::ansible_env());
    say(
        out,
        format!(
            "running {} {}",
            PathBuf::from(program).display(),
            argv.join(" ")
        ),
    );
    let mut log = String::new();
    let status = ctx
        .runner
        .lines(&cmd, &mut |line| {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            log.push_str(line);
            log.push('\n');
        })
        .map_err(|e| {
            Error::cannot_run(format!(
                "cannot run ansible-playbook ({e}); install Ansible (ansible-core) or set HSW_ANSIBLE_PLAYBOOK"
            ))
        })?;
    let path = ctx.write_log(run.log, &log);
    if !status.success() {
        return Err(Error::invalid(format!(
            "{} failed ({status}); the task and host are above (log {}). Fix it and run `hsw-cli up` again: \
             what worked is kept",
            run.what,
            path.display()
        )));
    }
    let recap = parse_recap(&log);
    if recap.is_empty() {
        return Err(Error::invalid(format!(
            "ansible-playbook printed no PLAY RECAP (log {})",
            path.display()
        )));
    }
    Ok(Changes {
        count: recap.values().sum(),
        tasks: changed_tasks(&log),
    })
}

/// The lines of `log` without the terminal's colour sequences (`ESC [ ... m`), which `--color` puts around
/// ansible-playbook's words.
fn plain_lines(log: &str) -> impl Iterator<Item = String> + '_ {
    log.lines().map(|line| {
        let mut plain = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(i) = rest.find('\x1b') {
            plain.push_str(&rest[..i]);
            let seq = &rest[i + 1..];
            rest = match seq.strip_prefix('[') {
                Some(s) => s
                    .find(|c: char| c.is_ascii_alphabetic())
                    .map_or("", |j| &s[j + 1..]),
                None => seq,
            };
        }
        plain.push_str(rest);
        plain
    })
}

/// `TASK NAME (HOST, HOST...)` for each task with `changed: [HOST]` lines after its `TASK [NAME]` header, in the
/// order the tasks ran (a loop's items count once per host; a task run again later is listed again).
pub fn changed_tasks(log: &str) -> Vec<String> {
    let mut task = String::new();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut current = false;
    for line in plain_lines(log) {
        if let Some(rest) = line
            .strip_prefix("TASK [")
            .or_else(|| line.strip_prefix("RUNNING HANDLER ["))
        {
            task = rest.rsplit_once(']').map_or(rest, |(t, _)| t).to_owned();
            current = false;
        } else if let Some(rest) = line.strip_prefix("changed: [") {
            // `changed: [host]`, `changed: [host -> delegate]`, `changed: [host] => (item=...)`
            let host = rest.split(']').next().unwrap_or_default();
            let host = host.split(" -> ").next().unwrap_or(host).to_owned();
            match out.last_mut() {
                Some((_, hosts)) if current => {
                    if !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
                _ => {
                    out.push((task.clone(), vec![host]));
                    current = true;
                }
            }
        }
    }
    out.into_iter()
        .map(|(t, hosts)| format!("{t} ({})", hosts.join(", ")))
        .collect()
}

/// `host -> changed` from ansible-playbook's PLAY RECAP. With several playbooks in one run ansible prints a
/// recap after each, cumulative: the last one of each host counts.
pub fn parse_recap(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut in_recap = false;
    for line in plain_lines(log) {
        let line = line.as_str();
        if line.starts_with("PLAY RECAP") {
            in_recap = true;
            continue;
        }
        if !in_recap {
            continue;
        }
        let Some((host, rest)) = line.split_once(" : ") else {
            continue;
        };
        let changed = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix("changed="))
            .and_then(|n| n.parse().ok());
        if let Some(c) = changed {
            out.insert(host.trim().to_owned(), c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    const RECAP: &str = "TASK [x]\nok: [a]\n\nPLAY RECAP *********\n\
                   hsw-dev-compute-1          : ok=20   changed=3    unreachable=0    failed=0\n\
                   hsw-dev-controller-1       : ok=18   changed=0    unreachable=0    failed=0\n";

    #[test]
    fn recap_sums_changed_per_host() {
        let r = parse_recap(RECAP);
        assert_eq!(r.len(), 2);
        assert_eq!(r.get("hsw-dev-compute-1"), Some(&3));
        assert_eq!(r.values().sum::<u64>(), 3);
        assert!(parse_recap("no recap here").is_empty());
        // Several playbooks in one run: a recap after each, cumulative; the last counts.
        let two = format!("{RECAP}\nTASK [y]\nchanged: [hsw-dev-compute-1]\n\nPLAY RECAP ***\n\
                           hsw-dev-compute-1          : ok=21   changed=4    unreachable=0    failed=0\n");
        assert_eq!(parse_recap(&two).get("hsw-dev-compute-1"), Some(&4));
    }

    /// Each changed task once per host, under its name, colours or not; `ok:` and `skipping:` are not changes.
    #[test]
    fn changed_tasks_name_the_task_and_host() {
        let log = "PLAY [x] ***\n\nTASK [mlops_k8s : Apply the secrets] ***\nok: [cp]\n\
                   changed: [cp] => (item=a.yaml)\nchanged: [cp] => (item=b.yaml)\nchanged: [w]\nskipping: [x]\n\n\
                   TASK [kubeadm : Make a join token] ***\nchanged: [w -> cp]\n\
                   \x1b[0;32mTASK [slurm : Write slurm.conf] ***\x1b[0m\n\x1b[0;33mchanged: [ctl]\x1b[0m\n\
                   RUNNING HANDLER [slurm : Restart slurmctld] ***\nchanged: [ctl]\n\
                   TASK [quiet] ***\nok: [cp]\n";
        assert_eq!(
            changed_tasks(log),
            [
                "mlops_k8s : Apply the secrets (cp, w)",
                "kubeadm : Make a join token (w)",
                "slurm : Write slurm.conf (ctl)",
                "slurm : Restart slurmctld (ctl)",
            ]
        );
        assert!(changed_tasks("no tasks\n").is_empty());
        assert_eq!(
            plain_lines("\x1b[0;31mred\x1b[0m and \x1b").collect::<Vec<_>>(),
            ["red and "]
        );
    }

    fn hpc_run<'a>(files: &'a ansible_cmd::HpcFiles, ctx: &Ctx<'_>) -> Run<'a> {
        Run {
            what: "the HPC playbook",
            log: "ansible-hpc.log",
            inventory: &files.inventory,
            extra_vars: &files.extra_vars,
            playbooks: vec![ctx.repo.join("ansible/playbook-hpc.yml")],
            offline: false,
            reached: false,
        }
    }

    fn files(f: &Fixture) -> ansible_cmd::HpcFiles {
        let s = f.dir.path().join("state");
        ansible_cmd::HpcFiles {
            inventory: s.join("ansible/inventory.yml"),
            extra_vars: s.join("ansible/hpc-vars.json"),
            slurm_dir: s.join("slurm/hpc"),
            ssh_public_key: s.join("ssh/hpc/id_ed25519.pub"),
            munge_key: s.join("munge/hpc/munge.key"),
            slurmdbd_password: s.join("munge/hpc/slurmdbd.password"),
        }
    }

    #[test]
    fn the_playbook_runs_in_the_sandbox_with_hsw_settings() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner.on(&["ansible-playbook"], 0, RECAP);
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        let fl = files(&f);
        let changed = run_playbook(
            &ctx,
            &"ansible-playbook".into(),
            &hpc_run(&fl, &ctx),
            &mut out,
        )
        .unwrap();
        assert_eq!(changed.count, 3);
        let calls = runner.calls();
        let c = &calls[0];
        let s = f.dir.path().join("state").display().to_string();
        let script = ctx.repo.join("scripts/sandbox.sh").display().to_string();
        let playbook = ctx
            .repo
            .join("ansible/playbook-hpc.yml")
            .display()
            .to_string();
        assert_eq!(
            c.argv(),
            [
                "bash".to_owned(),
                script,
                "--name".into(),
                "sb".into(),
                "exec".into(),
                "--".into(),
                "ansible-playbook".into(),
                "-i".into(),
                format!("{s}/ansible/inventory.yml"),
                "-e".into(),
                format!("@{s}/ansible/hpc-vars.json"),
                playbook,
            ]
        );
        for (k, v) in [
            ("ANSIBLE_NOCOLOR", "1"),
            ("ANSIBLE_FORCE_COLOR", "0"),
            ("PYTHONUNBUFFERED", "1"),
        ] {
            assert_eq!(c.env_value(k), Some(std::ffi::OsStr::new(v)), "{k}");
        }
        for (k, v) in ansible_cmd::ansible_env() {
            assert_eq!(c.env_value(k), Some(std::ffi::OsStr::new(v)), "{k}");
        }
        let t = text(&out);
        assert!(t.contains("hsw: running ansible-playbook -i "), "{t}");
        assert!(
            t.contains("PLAY RECAP"),
            "the playbook's output streams through: {t}"
        );
        let log = std::fs::read_to_string(ctx.logs().join("ansible-hpc.log")).unwrap();
        assert!(log.contains("changed=3"));
    }

    #[test]
    fn playbook_failures_are_sentences() {
        let f = Fixture::new(None);
        for (code, stdout, exit, message) in [
            (Some(2), "fatal: [x]: FAILED!\n", crate::exit::INVALID, "the HPC playbook failed (exit status: 2); the task and host are above (log "),
            (Some(0), "no recap\n", crate::exit::INVALID, "ansible-playbook printed no PLAY RECAP (log "),
            (None, "", crate::exit::CANNOT_RUN, "cannot run ansible-playbook (entity not found); install Ansible (ansible-core) or set HSW_ANSIBLE_PLAYBOOK"),
        ] {
            let runner = FakeRunner::new();
            runner.on_full(&["ansible-playbook"], code, stdout, "", None);
            let ctx = f.ctx(&runner);
            let fl = files(&f);
            let e = run_playbook(&ctx, &"ansible-playbook".into(), &hpc_run(&fl, &ctx), &mut Vec::new())
                .unwrap_err();
            assert_eq!(e.code(), exit);
            assert!(e.to_string().starts_with(message), "{e}");
        }
    }

    #[test]
    fn the_step_writes_the_hpc_files_then_runs_the_playbook() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner.on(&["-e"], 0, RECAP);
        let ctx = f.ctx(&runner);
        fixture::keys(&ctx);
        let session = fixture::session();
        let args = f.args();
        let mut up = Up::new(&ctx, &session, &args);
        let loaded = fixture::loaded(&session, &ctx);
        for h in &loaded.deployment.hosts {
            runner.on(
                &[&format!("hsw@{}", h.ip), "hostname"],
                0,
                &format!("{}\n", h.name),
            );
        }
        let n = loaded.deployment.hosts.len();
        up.loaded = Some(loaded);
        let mut out = Vec::new();
        // HSW_ANSIBLE_PLAYBOOK may be set around the tests: the fake answers any program by its arguments.
        hpc(&mut up, 8, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(up.ansible_changed.as_ref().map(|c| c.count), Some(3));
        // Every VM reached first (one `ssh hostname` each), then the playbook told so: reach.yml skips its wait.
        let calls = runner.calls();
        assert_eq!(calls.len(), n + 1);
        assert!(calls[..n]
            .iter()
            .all(|c| c.argv().last().is_some_and(|a| a == "hostname")));
        let argv = calls[n].argv();
        assert!(
            argv.windows(2)
                .any(|w| w[0] == "-e" && w[1] == "hsw_reached=true"),
            "{argv:?}"
        );
        assert!(up.reached);
        assert!(ctx.state.slurm_dir("hpc").join("slurm.conf").is_file());
        assert!(ctx.state.inventory().is_file());
        assert!(text(&out).contains("==> [8/13] HPC playbook (Munge, Slurm)"));
    }

    /// The platform step: offline by default (`--skip-tags online`, the four playbooks in one run), online with
    /// `--online`, nothing with `--hpc-only`; the services' hosts are in the variables file.
    #[test]
    fn the_platform_step_runs_the_four_playbooks_offline_unless_told() {
        let f = Fixture::new(Some("sb"));
        let session = fixture::session();
        for (online, hpc_only) in [(false, false), (true, false), (false, true)] {
            let runner = FakeRunner::new();
            runner.on(&["-e"], 0, RECAP);
            let ctx = f.ctx(&runner);
            fixture::keys(&ctx);
            let mut args = f.args();
            args.online = online;
            args.hpc_only = hpc_only;
            let mut up = Up::new(&ctx, &session, &args);
            up.loaded = Some(fixture::loaded(&session, &ctx));
            // The HPC step reached every VM: no SSH again.
            up.reached = true;
            let mut out = Vec::new();
            platform(&mut up, 9, &mut out).unwrap_or_else(|e| panic!("{e}"));
            let t = text(&out);
            if hpc_only {
                assert!(runner.calls().is_empty());
                assert_eq!(up.platform_changed, None);
                assert!(
                    t.contains("==> [9/13] platform playbooks skipped (--hpc-only)"),
                    "{t}"
                );
                continue;
            }
            assert_eq!(up.platform_changed.as_ref().map(|c| c.count), Some(3));
            let argv = runner.calls()[0].argv();
            let dir = ctx.repo.join("ansible");
            let books: Vec<String> = argv
                .iter()
                .filter(|a| a.ends_with(".yml") && a.contains("/playbook-"))
                .cloned()
                .collect();
            assert_eq!(
                books,
                ansible_cmd::PLATFORM_PLAYBOOKS.map(|p| ansible_cmd::platform_playbook(&dir, p)
                    .display()
                    .to_string())
            );
            assert_eq!(argv.iter().any(|a| a == "--skip-tags"), !online, "{argv:?}");
            assert!(argv.iter().any(|a| a == "hsw_reached=true"), "{argv:?}");
            assert_eq!(t.contains(", offline"), !online, "{t}");
            let vars: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(ctx.state.extra_vars("platform")).unwrap(),
            )
            .unwrap();
            assert_eq!(vars["hsw_offline"], serde_json::json!(!online));
            assert!(vars["monitoring_server"]
                .as_str()
                .is_some_and(|s| s.starts_with("hsw-dev-control-plane")));
            assert!(ctx.logs().join("ansible-platform.log").is_file());
        }
    }
}
