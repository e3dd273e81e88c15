//! Step 8: the HPC playbook (Munge, Slurm) through ansible-playbook inside the sandbox, its output streaming
//! through and kept in `<state>/logs/ansible-hpc.log`; `up` reports the sum of `changed=` of its PLAY RECAP.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

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
    let program =
        std::env::var_os("HSW_ANSIBLE_PLAYBOOK").unwrap_or_else(|| "ansible-playbook".into());
    up.ansible_changed = Some(run_playbook(up.ctx, &program, &files, out)?);
    Ok(())
}

/// ansible-playbook (inside the sandbox), its output streaming through and kept in the log; returns the sum
/// of `changed=` in the PLAY RECAP.
fn run_playbook(
    ctx: &Ctx<'_>,
    program: &OsString,
    files: &ansible_cmd::HpcFiles,
    out: &mut dyn Write,
) -> Result<u64, Error> {
    let playbook = ctx.repo.join("ansible/playbook-hpc.yml");
    let argv =
        ansible_cmd::playbook_argv(&files.inventory, &files.extra_vars, &[playbook], false, &[]);
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
    let path = ctx.write_log("ansible-hpc.log", &log);
    if !status.success() {
        return Err(Error::invalid(format!(
            "the HPC playbook failed ({status}); the task and host are above (log {}). Fix it and run `hsw-cli \
             up` again: what worked is kept",
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
    Ok(recap.values().sum())
}

/// `host -> changed` from ansible-playbook's PLAY RECAP.
pub fn parse_recap(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut in_recap = false;
    for line in log.lines() {
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
        let changed = run_playbook(&ctx, &"ansible-playbook".into(), &files(&f), &mut out).unwrap();
        assert_eq!(changed, 3);
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
            let e = run_playbook(&ctx, &"ansible-playbook".into(), &files(&f), &mut Vec::new())
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
        up.loaded = Some(fixture::loaded(&session, &ctx));
        let mut out = Vec::new();
        // HSW_ANSIBLE_PLAYBOOK may be set around the tests: the fake answers any program by its arguments.
        hpc(&mut up, 8, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(up.ansible_changed, Some(3));
        assert!(ctx.state.slurm_dir("hpc").join("slurm.conf").is_file());
        assert!(ctx.state.inventory().is_file());
        assert!(text(&out).contains("==> [8/11] HPC playbook (Munge, Slurm)"));
    }
}
