//! `hsw-cli check` and `hsw-cli prepare`: arguments and output over [`hsw_core::host`].
//!
//! `check` also asks the GPU driver (NVML, read only, only with the root `/`) through
//! `hsw_gpu_backend::hostcheck` for the `gpu.*` checks.
//! Both commands resolve the host root (`--root`, `HSW_ROOT`, default `/`) and the user judged
//! (`HSW_USER`; else, when run as root through sudo, `SUDO_USER`; else the process's user),
//! read the config (`--config`, or the embedded default), and write to the injected writer.
//! Exit codes: 0 nothing failed, 1 a check failed (or a rollback was refused, or an applied
//! command failed), 2 the command could not run (unreadable or invalid config, bad root).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use hsw_core::host::prepare::{ApplyReport, CommandRecord};
use hsw_core::host::{self, CheckReport, Host, RollbackOutcome, Status, SystemHost};
use hsw_gpu_backend::hostcheck;
use hsw_gpu_backend::mdev::SysfsRoot;

use crate::error::Error;
use crate::session::Session;
use crate::{exit, Format};

/// Arguments of `hsw-cli check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The cluster definition to check the host against (the embedded default when absent).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Treat DIR as the host's root directory (a fixture tree); default `/`.
    #[arg(long, value_name = "DIR", env = "HSW_ROOT")]
    pub root: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Arguments of `hsw-cli prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The cluster definition the host is prepared for (the embedded default when absent).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Make the changes, backing up every file first; without it only the plan is printed.
    #[arg(long, conflicts_with = "rollback")]
    pub apply: bool,
    /// Undo the last applied run exactly (files restored byte for byte, created files removed).
    #[arg(long)]
    pub rollback: bool,
    /// With --rollback: restore even files that changed since the run.
    #[arg(long, requires = "rollback")]
    pub force: bool,
    /// Treat DIR as the host's root directory (a fixture tree); commands are then never run.
    #[arg(long, value_name = "DIR", env = "HSW_ROOT")]
    pub root: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Runs `check`; returns the exit code.
pub fn run_check(args: &CheckArgs, out: &mut dyn Write) -> u8 {
    let session = match load_session(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return e.report(),
    };
    match check(&session, args.root.as_deref(), args.format, out) {
        Ok(report) if report.failed() => exit::INVALID,
        Ok(_) => exit::OK,
        Err(e) => e.report(),
    }
}

/// Checks the host at `root` (default `/`) against a session's config and writes the report to `out`.
pub fn check(
    session: &Session,
    root: Option<&Path>,
    format: Format,
    out: &mut dyn Write,
) -> Result<CheckReport, Error> {
    let host = open_host(root).map_err(Error::CannotRun)?;
    // The GPU driver's answers (read only; never under an alternate root): hostcheck gathers, hsw-core judges.
    let sysfs = SysfsRoot::new(host.root());
    let driver = hostcheck::open_driver(&session.config, &sysfs);
    let facts = hostcheck::gather(&session.config, &sysfs, driver.as_deref());
    let report = host::run_checks_with(&host, &session.config, &facts);
    let written = match format {
        Format::Text => out.write_all(render_checks(&report, &host, &session.name).as_bytes()),
        Format::Json => write_json(out, &checks_json(&report)),
    };
    written.map_err(|e| Error::cannot_run(format!("cannot write the report: {e}")))?;
    Ok(report)
}

/// Runs `prepare`; returns the exit code.
pub fn prepare(args: &PrepareArgs, out: &mut dyn Write) -> u8 {
    let host = match open_host(args.root.as_deref()) {
        Ok(h) => h,
        Err(e) => return cannot_run(&e),
    };
    if args.rollback {
        return rollback(&host, args, out);
    }
    let session = match load_session(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return e.report(),
    };
    let name = &session.name;
    let plan = host::plan(&host, &session.config);
    let header = format!(
        "hsw-cli prepare: host {} for {name}\n\n",
        host.root().display()
    );
    if !args.apply || plan.is_empty() {
        let tail = if plan.is_empty() {
            ""
        } else {
            "\nNothing was changed: run `sudo hsw-cli prepare --apply` to make these changes (every file is backed up first).\n"
        };
        let written = match args.format {
            Format::Text => {
                out.write_all(format!("{header}{}{tail}", plan.render_text()).as_bytes())
            }
            Format::Json => write_json(
                out,
                &serde_json::json!({ "plan": plan.to_json(), "applied": null }),
            ),
        };
        return if written.is_ok() {
            exit::OK
        } else {
            exit::CANNOT_RUN
        };
    }
    let report = match host::apply(&host, &plan) {
        Ok(Some(r)) => r,
        Ok(None) => return exit::OK,
        Err(e) => return cannot_run(&e),
    };
    let written = match args.format {
        Format::Text => out.write_all(
            format!(
                "{header}{}\n{}",
                plan.render_text(),
                render_applied(&report)
            )
            .as_bytes(),
        ),
        Format::Json => write_json(
            out,
            &serde_json::json!({ "plan": plan.to_json(), "applied": applied_json(&report) }),
        ),
    };
    if written.is_err() {
        return exit::CANNOT_RUN;
    }
    if report.error.is_some() {
        exit::INVALID
    } else {
        exit::OK
    }
}

fn rollback(host: &SystemHost, args: &PrepareArgs, out: &mut dyn Write) -> u8 {
    let outcome = match host::rollback(host, args.force) {
        Ok(o) => o,
        Err(e) => return cannot_run(&e),
    };
    let (text, json, code) = match &outcome {
        RollbackOutcome::Nothing(why) => (
            format!("{}.\n", capitalize(why)),
            serde_json::json!({ "rollback": "nothing", "message": why }),
            exit::OK,
        ),
        RollbackOutcome::Refused { run_id, changed } => {
            let mut t = format!("Refusing to roll back run {run_id}: files changed since it was applied, and restoring them would lose those edits.\n");
            for c in changed {
                t.push_str(&format!("  {c}\n"));
            }
            t.push_str("Look at them, then run `sudo hsw-cli prepare --rollback --force` to restore them anyway. Nothing was changed.\n");
            (
                t,
                serde_json::json!({ "rollback": "refused", "run_id": run_id, "changed": changed }),
                exit::INVALID,
            )
        }
        RollbackOutcome::Restored {
            run_id,
            files,
            commands,
            earlier,
        } => {
            let mut t = format!("Rolled back run {run_id}:\n");
            for f in files {
                t.push_str(&format!("  restored {f}\n"));
            }
            t.push_str(&render_commands(commands));
            if *earlier > 0 {
                t.push_str(&format!(
                    "{earlier} earlier run(s) can still be rolled back with another --rollback.\n"
                ));
            }
            let json = serde_json::json!({
                "rollback": "restored", "run_id": run_id, "files": files, "commands": commands, "earlier_runs": earlier,
            });
            (t, json, exit::OK)
        }
    };
    let written = match args.format {
        Format::Text => out.write_all(text.as_bytes()),
        Format::Json => write_json(out, &json),
    };
    if written.is_err() {
        exit::CANNOT_RUN
    } else {
        code
    }
}

fn cannot_run(message: &str) -> u8 {
    eprintln!("error: {message}");
    exit::CANNOT_RUN
}

/// The session of `--config`; an invalid config cannot be checked against (exit 2).
fn load_session(file: Option<&Path>) -> Result<Session, Error> {
    Session::load(file).map_err(|e| match e {
        Error::InvalidConfig { name, errors, .. } => Error::cannot_run(format!(
            "{name} is not a valid cluster definition ({errors} error{}): run `hsw-cli validate {name}` to see them",
            if errors == 1 { "" } else { "s" }
        )),
        other => other,
    })
}

/// The host at `--root` / `HSW_ROOT` (default `/`), judging `HSW_USER`, or `SUDO_USER` under sudo.
fn open_host(root: Option<&Path>) -> Result<SystemHost, String> {
    let host = SystemHost::new(root.unwrap_or(Path::new("/")))?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let user = env("HSW_USER").or_else(|| {
        if host.current_user().is_root() {
            env("SUDO_USER").filter(|u| u != "root")
        } else {
            None
        }
    });
    Ok(host.with_user(user))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn render_checks(report: &CheckReport, host: &SystemHost, config_name: &str) -> String {
    let mut s = format!(
        "hsw-cli check: host {} against {config_name}\n",
        host.root().display()
    );
    let width = report.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &report.checks {
        s.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            c.status.as_str(),
            c.id,
            c.message
        ));
        if c.status != Status::Pass && !c.remedy.is_empty() {
            s.push_str(&format!("      {:<width$}  fix: {}\n", "", c.remedy));
        }
        if matches!(c.status, Status::Fail | Status::Warn) {
            s.push_str(&format!(
                "      {:<width$}  more: {}\n",
                "",
                crate::error::troubleshooting(&c.id)
            ));
        }
    }
    let (pass, warn, fail, skip) = report.counts();
    let verdict = if report.failed() {
        "the host cannot run this config yet"
    } else {
        "the host can run this config"
    };
    s.push_str(&format!(
        "{} checks: {pass} pass, {warn} warn, {fail} fail, {skip} skip: {verdict}.\n",
        report.checks.len()
    ));
    if report.failed() {
        s.push_str("`sudo hsw-cli prepare` shows what it can change for you.\n");
    }
    s
}

/// `{"checks": [{"id", "status", "message", "remedy"}], "summary": {...}}`.
pub fn checks_json(report: &CheckReport) -> serde_json::Value {
    let (pass, warn, fail, skip) = report.counts();
    serde_json::json!({
        "checks": report.checks,
        "summary": { "pass": pass, "warn": warn, "fail": fail, "skip": skip },
    })
}

fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> std::io::Result<()> {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    out.write_all(s.as_bytes())
}

fn render_commands(commands: &[CommandRecord]) -> String {
    commands
        .iter()
        .map(|c| format!("  command `{}`: {}\n", c.command.display(), c.outcome))
        .collect()
}

fn render_applied(report: &ApplyReport) -> String {
    let m = &report.manifest;
    let mut s = format!(
        "Applied as run {} (backups and manifest in {}):\n",
        m.run_id, report.dir
    );
    for f in &m.files {
        let what = if f.existed { "wrote" } else { "created" };
        s.push_str(&format!(
            "  {what} {} (sha256 {})\n",
            f.path,
            f.sha256_after.get(..12).unwrap_or_default()
        ));
    }
    s.push_str(&render_commands(&m.commands));
    match &report.error {
        Some(e) => s.push_str(&format!(
            "Stopped: {e}. `sudo hsw-cli prepare --rollback` undoes the files written.\n"
        )),
        None => s.push_str("Done. `sudo hsw-cli prepare --rollback` undoes this run.\n"),
    }
    s
}

fn applied_json(report: &ApplyReport) -> serde_json::Value {
    serde_json::json!({
        "run_id": report.manifest.run_id,
        "dir": report.dir,
        "files": report.manifest.files,
        "commands": report.manifest.commands,
        "error": report.error,
    })
}
