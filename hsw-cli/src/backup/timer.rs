//! `hsw-cli backup timer`: a systemd service that runs `hsw-cli backup` for one deployment with absolute paths,
//! and a timer that starts it on a schedule (`OnCalendar`, `Persistent=true`: a run missed while the machine was
//! off is made up at boot). The recovery point is then the schedule's period.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CreateArgs, DEFAULT_ROOT};
use crate::error::Error;
use crate::runner::{Cmd, Runner};
use crate::up::{say, Ctx};

/// `hsw-cli backup timer`.
#[derive(Debug, Args)]
pub struct TimerArgs {
    /// The deployment and where its backups go (as `hsw-cli backup` takes them).
    #[command(flatten)]
    pub create: CreateArgs,
    /// When: a systemd calendar expression (`daily`, `hourly`, `*-*-* 02:30:00`; see systemd.time(7)).
    #[arg(long, value_name = "SPEC", default_value = "daily")]
    pub on_calendar: String,
    /// Where the unit files go.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Write the units only: no `systemctl daemon-reload` and `enable --now`.
    #[arg(long)]
    pub no_enable: bool,
}

/// A path that systemd's command line and hsw's messages take as one word: absolute, no white space, quote,
/// backslash, `$`, `%` or `;`.
fn plain(p: &Path, what: &str) -> Result<String, Error> {
    let s = p.display().to_string();
    let bad = !p.is_absolute()
        || s.chars()
            .any(|c| c.is_whitespace() || "\"'\\$%;".contains(c));
    if bad {
        return Err(Error::cannot_run(format!(
            "{what} `{s}` cannot go into a systemd unit as it is: give an absolute path without white space, \
             quotes, backslashes, `$`, `%` or `;`"
        )));
    }
    Ok(s)
}

/// The units' name: `hsw-backup-<sandbox name>` (or `hsw-backup-host`).
pub fn unit_name(sandbox: Option<&str>) -> String {
    format!("hsw-backup-{}", sandbox.unwrap_or("host"))
}

/// The service and timer units' text.
pub fn units(name: &str, exec: &[String], repo: &str, on_calendar: &str) -> (String, String) {
    let service = format!(
        "# Written by hsw-cli backup timer.\n\
         [Unit]\n\
         Description=hsw: back up the deployment ({name})\n\
         Documentation=file://{repo}/docs/backup.md\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         Environment=HSW_REPO={repo}\n\
         WorkingDirectory={repo}\n\
         ExecStart={}\n\
         Nice=10\n\
         IOSchedulingClass=idle\n",
        exec.join(" ")
    );
    let timer = format!(
        "# Written by hsw-cli backup timer.\n\
         [Unit]\n\
         Description=hsw: back up the deployment on a schedule ({name})\n\
         \n\
         [Timer]\n\
         OnCalendar={on_calendar}\n\
         Persistent=true\n\
         RandomizedDelaySec=10min\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    );
    (service, timer)
}

/// Writes the units, checks the schedule with `systemd-analyze calendar`, and enables the timer.
pub fn install(args: &TimerArgs, runner: &dyn Runner, out: &mut dyn Write) -> Result<(), Error> {
    let spec = &args.on_calendar;
    if spec.is_empty()
        || spec.len() > 128
        || !spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " *:,/.~-".contains(c))
    {
        return Err(Error::cannot_run(format!(
            "--on-calendar `{}` is not a calendar expression hsw writes: letters, digits, spaces and `*:,/.~-` \
             only (see systemd.time(7))",
            spec.escape_debug()
        )));
    }
    let checked = runner.capture(&Cmd::new("systemd-analyze").args(["calendar", spec]));
    match checked {
        Ok(o) if !o.status.success() => {
            return Err(Error::cannot_run(format!(
                "systemd-analyze does not take --on-calendar `{spec}`: {}",
                o.stderr.trim()
            )))
        }
        Ok(_) => {}
        Err(_) => say(
            out,
            "systemd-analyze is not installed: the schedule is not checked",
        ),
    }
    let c = &args.create;
    let ctx = Ctx::new(&c.target(), runner)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::cannot_run(format!("cannot find hsw-cli's own path: {e}")))?;
    let root = c
        .out
        .clone()
        .map(|o| std::path::absolute(&o).unwrap_or(o))
        .unwrap_or_else(|| Path::new(DEFAULT_ROOT).join(ctx.sandbox.as_deref().unwrap_or("host")));
    let mut exec = vec![plain(&exe, "hsw-cli")?, "backup".to_owned()];
    if let Some(cfg) = &c.place.config {
        let abs = std::path::absolute(cfg).unwrap_or_else(|_| cfg.clone());
        exec.extend(["--config".to_owned(), plain(&abs, "the config")?]);
    }
    match &ctx.sandbox {
        Some(sb) => exec.extend(["--sandbox-name".to_owned(), sb.clone()]),
        None => exec.push("--no-sandbox".to_owned()),
    }
    exec.extend([
        "--state-dir".to_owned(),
        plain(ctx.state.root(), "the state directory")?,
    ]);
    if c.terraform_dir.is_some() {
        exec.extend([
            "--terraform-dir".to_owned(),
            plain(&ctx.tf_dir, "the Terraform directory")?,
        ]);
    }
    exec.extend(["--out".to_owned(), plain(&root, "the backup directory")?]);
    if let Some(k) = c.keep {
        exec.extend(["--keep".to_owned(), k.to_string()]);
    }
    // Encryption as asked: public keys as given (checked now, so the timer does not fail later), key files
    // by their absolute paths (the passphrase stays in its file).
    if c.seal.wanted() {
        super::crypt::Sealer::new(&c.seal).map_err(Error::invalid)?;
    }
    for r in &c.seal.recipients {
        exec.extend(["--encrypt-to".to_owned(), r.trim().to_owned()]);
    }
    for (flag, f) in c
        .seal
        .recipients_files
        .iter()
        .map(|f| ("--encrypt-to-file", f))
        .chain(
            c.seal
                .passphrase_file
                .iter()
                .map(|f| ("--encrypt-passphrase-file", f)),
        )
    {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        exec.extend([flag.to_owned(), plain(&abs, "the key file")?]);
    }
    let name = unit_name(ctx.sandbox.as_deref());
    let repo = plain(&ctx.repo, "the repository")?;
    let (service, timer) = units(&name, &exec, &repo, spec);
    std::fs::create_dir_all(&args.unit_dir)
        .map_err(|e| Error::invalid(format!("cannot create {}: {e}", args.unit_dir.display())))?;
    for (file, text) in [
        (format!("{name}.service"), service),
        (format!("{name}.timer"), timer),
    ] {
        let p = args.unit_dir.join(&file);
        hsw_core::fsx::write_atomic(&p, text.as_bytes(), 0o644)
            .map_err(|e| Error::invalid(format!("cannot write {}: {e}", p.display())))?;
        say(out, format!("wrote {}", p.display()));
    }
    if args.no_enable {
        say(
            out,
            format!(
                "enable it with: systemctl daemon-reload && systemctl enable --now {name}.timer"
            ),
        );
        return Ok(());
    }
    for a in [
        vec!["daemon-reload"],
        vec!["enable", "--now", &format!("{name}.timer")],
    ] {
        let o = runner
            .capture(&Cmd::new("systemctl").args(&a))
            .map_err(|e| Error::cannot_run(format!("cannot run systemctl ({e})")))?;
        if !o.status.success() {
            return Err(Error::invalid(format!(
                "systemctl {} failed ({}): {}",
                a.join(" "),
                o.status,
                o.stderr.trim()
            )));
        }
    }
    say(
        out,
        format!(
            "{name}.timer enabled ({spec}); `systemctl list-timers {name}.timer` shows the next run, \
             `journalctl -u {name}.service` the last ones"
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;

    fn args(unit_dir: &Path) -> TimerArgs {
        TimerArgs {
            create: CreateArgs {
                place: crate::up::Place {
                    config: None,
                    sandbox: false,
                    no_sandbox: false,
                    sandbox_name: "hsw-up".into(),
                    state_dir: Some("/var/lib/hsw/state".into()),
                },
                terraform_dir: None,
                out: Some("/srv/backups".into()),
                keep: Some(7),
                no_verify: false,
                seal: Default::default(),
            },
            on_calendar: "*-*-* 02:30:00".into(),
            unit_dir: unit_dir.to_path_buf(),
            no_enable: false,
        }
    }

    #[test]
    fn the_units_run_this_backup_on_the_schedule_and_are_enabled() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let runner = FakeRunner::new();
        let mut out = Vec::new();
        install(&args(d.path()), &runner, &mut out).unwrap_or_else(|e| panic!("{e}"));
        let service =
            std::fs::read_to_string(d.path().join("hsw-backup-hsw-up.service")).unwrap_or_default();
        let exec = service
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{service}"));
        assert!(
            exec.ends_with(
                " backup --sandbox-name hsw-up --state-dir /var/lib/hsw/state --out /srv/backups --keep 7"
            ),
            "{exec}"
        );
        assert!(exec.starts_with('/'), "{exec}");
        let timer =
            std::fs::read_to_string(d.path().join("hsw-backup-hsw-up.timer")).unwrap_or_default();
        assert!(
            timer.contains("OnCalendar=*-*-* 02:30:00\nPersistent=true\n"),
            "{timer}"
        );
        assert!(timer.contains("WantedBy=timers.target"), "{timer}");
        let argvs = runner.argvs();
        assert_eq!(argvs[0], ["systemd-analyze", "calendar", "*-*-* 02:30:00"]);
        assert_eq!(argvs[1], ["systemctl", "daemon-reload"]);
        assert_eq!(
            argvs[2],
            ["systemctl", "enable", "--now", "hsw-backup-hsw-up.timer"]
        );
    }

    #[test]
    fn bad_schedules_and_paths_are_refused() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let runner = FakeRunner::new();
        let mut a = args(d.path());
        a.on_calendar = "daily\nExecStartPre=/bin/sh".into();
        let e = install(&a, &runner, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a calendar expression"), "{e}");
        let runner = FakeRunner::new();
        runner.on_full(
            &["systemd-analyze"],
            Some(1),
            "",
            "Failed to parse calendar specification\n",
            None,
        );
        let mut a = args(d.path());
        a.on_calendar = "sometimes".into();
        let e = install(&a, &runner, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not take --on-calendar `sometimes`"), "{e}");
        assert!(plain(Path::new("/a b"), "x").is_err());
        assert!(plain(Path::new("rel"), "x").is_err());
        assert!(plain(Path::new("/a/%h"), "x").is_err());
        assert!(std::fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0) == 0);
    }
}
