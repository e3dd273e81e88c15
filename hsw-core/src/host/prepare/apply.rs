//! Applying a plan with backups, listing the runs, and rolling the newest one back exactly: the run manifest
//! (every file's path, mode, owner and sha256 before and after; every command and its outcome) is what makes
//! rollback exact.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Plan, Step};
use crate::fsx::{write_atomic, write_atomic_owned};
use crate::host::env::{host_path, read_optional, Host};
use crate::host::run::{CommandSpec, RunOutcome, ALTERNATE_ROOT};

/// One file in a run's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Host path.
    pub path: String,
    /// Whether it existed before the run.
    pub existed: bool,
    /// Its permission bits before the run (octal text), or the mode it was created with.
    pub mode: String,
    /// Owner uid before the run.
    pub uid: Option<u32>,
    /// Owner gid before the run.
    pub gid: Option<u32>,
    /// sha256 of the content before the run (`None`: it did not exist).
    pub sha256_before: Option<String>,
    /// sha256 of the content the run wrote.
    pub sha256_after: String,
    /// The backup of the old content, relative to the run directory.
    pub backup: Option<String>,
}

/// One command in a run's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command.
    pub command: CommandSpec,
    /// `exit 0`, `skipped: alternate root`, `failed: ...`.
    pub outcome: String,
    /// Whether rollback runs it again.
    pub rerun_on_rollback: bool,
}

/// That a run was rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// When (seconds since the epoch).
    pub unix: u64,
    /// Whether `--force` overrode files changed since the run.
    pub forced: bool,
    /// Commands run again after restoring.
    pub commands: Vec<CommandRecord>,
}

/// `manifest.json` of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this file (1).
    pub format: u32,
    /// The run id (also the directory name).
    pub run_id: String,
    /// When the run started (seconds since the epoch).
    pub unix: u64,
    /// `applying` while files are written, `applied` when every step was done, `failed` otherwise.
    pub state: String,
    /// The files, in the order they were written.
    pub files: Vec<FileRecord>,
    /// Directories the run created (removed again by rollback when empty).
    pub created_dirs: Vec<String>,
    /// The commands and what became of them.
    pub commands: Vec<CommandRecord>,
    /// Set once the run is rolled back.
    pub rolled_back: Option<RollbackRecord>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The run's manifest as saved.
    pub manifest: Manifest,
    /// The run directory, as a host path.
    pub dir: String,
    /// A step that failed (the steps after it were not attempted), as a sentence.
    pub error: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::fsx::hex(&Sha256::digest(bytes))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// UTC calendar fields `(year, month, day, hour, minute, second)` of seconds since the epoch (the `time`
/// crate's calendar; a time past its range, year 9999, gives the epoch). The one date conversion of hsw-core,
/// hsw-cli and the provider's log lines.
pub fn utc_fields(unix: u64) -> (i64, i64, i64, u64, u64, u64) {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (
        i64::from(t.year()),
        i64::from(u8::from(t.month())),
        i64::from(t.day()),
        u64::from(t.hour()),
        u64::from(t.minute()),
        u64::from(t.second()),
    )
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (UTC).
pub fn utc_stamp(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = utc_fields(unix);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

fn io_err(what: &str, path: &str, e: io::Error) -> String {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        " (run it as root: `sudo hsw-cli prepare ...`)"
    } else {
        ""
    };
    format!("cannot {what} {path}: {e}{hint}")
}

/// Creates `dir` (and missing parents) and makes it 0700: the state directory and its runs hold copies of
/// files such as `/etc/gshadow`, so nobody but their owner may list or enter them. An existing directory (one
/// an older hsw-cli made 0755) is narrowed too. Missing parents get the usual mode: `/var/lib/hsw` also holds
/// the image pool, which QEMU must be able to reach.
fn private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Applies `plan`: backs up, writes, runs (commands only on the real root). `Ok(None)` when the
/// plan is empty; `Err` when nothing could be started (the state directory cannot be made, or a
/// file changed since the plan).
pub fn apply(host: &dyn Host, plan: &Plan) -> Result<Option<ApplyReport>, String> {
    if plan.is_empty() {
        return Ok(None);
    }
    let state = host.prepare_state_dir();
    let state_shown = host_path(host.root(), &state);
    private_dir(&state).map_err(|e| io_err("create", &state_shown, e))?;
    let unix = now_unix();
    let seq = list_runs(host)?
        .iter()
        .filter_map(|(id, _)| id.split('-').next()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let run_id = format!("{seq:04}-{}", utc_stamp(unix));
    let dir = state.join(&run_id);
    let dir_shown = host_path(host.root(), &dir);
    private_dir(&dir)
        .and_then(|()| private_dir(&dir.join("files")))
        .map_err(|e| io_err("create", &dir_shown, e))?;

    // Back up every file first, and check that none changed since the plan.
    let as_root = rustix::process::geteuid().is_root();
    let mut manifest = Manifest {
        format: 1,
        run_id: run_id.clone(),
        unix,
        state: "applying".into(),
        files: Vec::new(),
        created_dirs: Vec::new(),
        commands: Vec::new(),
        rolled_back: None,
    };
    for (n, step) in plan.steps.iter().enumerate() {
        let Step::Write {
            path,
            before,
            after,
            mode,
            ..
        } = step
        else {
            continue;
        };
        let real = host.path(path);
        if fs::symlink_metadata(&real).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "{path} is a symbolic link, and prepare never writes through or over a link: replace it \
                 with the file it points to (or remove it) and run `hsw-cli prepare` again"
            ));
        }
        let current = match fs::read(&real) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", path, e)),
        };
        if current.as_deref() != before.as_deref().map(str::as_bytes) {
            return Err(format!(
                "{path} changed since the plan was made: run `hsw-cli prepare` again to see the new plan"
            ));
        }
        let record = match &current {
            Some(bytes) => {
                let meta = fs::symlink_metadata(&real).map_err(|e| io_err("read", path, e))?;
                let backup = format!("files/{n}");
                // The backup keeps the file's mode, and its owner when that can be given (as root).
                let owner = as_root.then(|| (meta.uid(), meta.gid()));
                write_atomic_owned(&dir.join(&backup), bytes, meta.permissions().mode(), owner)
                    .map_err(|e| io_err("back up", path, e))?;
                FileRecord {
                    path: path.clone(),
                    existed: true,
                    mode: format!("{:04o}", meta.permissions().mode() & 0o7777),
                    uid: Some(meta.uid()),
                    gid: Some(meta.gid()),
                    sha256_before: Some(sha256_hex(bytes)),
                    sha256_after: sha256_hex(after.as_bytes()),
                    backup: Some(backup),
                }
            }
            None => FileRecord {
                path: path.clone(),
                existed: false,
                mode: format!("{mode:04o}"),
                uid: None,
                gid: None,
                sha256_before: None,
                sha256_after: sha256_hex(after.as_bytes()),
                backup: None,
            },
        };
        manifest.files.push(record);
    }
    save_manifest(&dir, &manifest)?;

    let mut error = None;
    // Files.
    for step in &plan.steps {
        let Step::Write {
            path, after, mode, ..
        } = step
        else {
            continue;
        };
        let real = host.path(path);
        if let Some(parent) = real.parent() {
            if let Err(e) = create_dirs(host, parent, &mut manifest.created_dirs) {
                error = Some(io_err("create the directory of", path, e));
                break;
            }
        }
        let record = manifest.files.iter().find(|r| r.path == *path);
        let mode = record
            .and_then(|r| u32::from_str_radix(&r.mode, 8).ok())
            .unwrap_or(*mode);
        let owner = record.and_then(|r| Some((r.uid?, r.gid?)));
        if let Err(e) = write_atomic_owned(&real, after.as_bytes(), mode, owner) {
            error = Some(io_err("write", path, e));
            break;
        }
    }
    save_manifest(&dir, &manifest)?;
    // Commands, only when every file is in place.
    if error.is_none() {
        for step in &plan.steps {
            let Step::Run {
                command,
                timeout_s,
                rerun_on_rollback,
                ..
            } = step
            else {
                continue;
            };
            let outcome = run_on(host, command, *timeout_s);
            let failed = !(outcome.success() || matches!(outcome, RunOutcome::Skipped(_)));
            manifest.commands.push(CommandRecord {
                command: command.clone(),
                outcome: outcome.summary(),
                rerun_on_rollback: *rerun_on_rollback,
            });
            if failed {
                error = Some(format!(
                    "`{}` did not succeed ({}); the steps after it were not run",
                    command.display(),
                    outcome.summary()
                ));
                break;
            }
        }
    }
    manifest.state = if error.is_none() {
        "applied".into()
    } else {
        "failed".into()
    };
    save_manifest(&dir, &manifest)?;
    Ok(Some(ApplyReport {
        manifest,
        dir: dir_shown,
        error,
    }))
}

/// Runs a command on the real root; under any other root says it was skipped without running it.
fn run_on(host: &dyn Host, command: &CommandSpec, timeout_s: u64) -> RunOutcome {
    if host.is_real_root() {
        host.runner().run(command, Duration::from_secs(timeout_s))
    } else {
        RunOutcome::Skipped(ALTERNATE_ROOT.into())
    }
}

/// Creates `dir` and its missing parents, recording each one created (as a host path).
fn create_dirs(host: &dyn Host, dir: &Path, created: &mut Vec<String>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut p = dir.to_path_buf();
    while !p.exists() && p != host.root() {
        missing.push(p.clone());
        match p.parent() {
            Some(parent) => p = parent.to_path_buf(),
            None => break,
        }
    }
    for d in missing.iter().rev() {
        fs::create_dir(d)?;
        created.push(host_path(host.root(), d));
    }
    Ok(())
}

fn save_manifest(dir: &Path, m: &Manifest) -> Result<(), String> {
    let mut text =
        serde_json::to_string_pretty(m).map_err(|e| format!("cannot encode the manifest: {e}"))?;
    text.push('\n');
    write_atomic(&dir.join("manifest.json"), text.as_bytes(), 0o600)
        .map_err(|e| io_err("write", &dir.join("manifest.json").display().to_string(), e))
}

/// The runs under the state directory, oldest first: (run id, manifest).
pub fn list_runs(host: &dyn Host) -> Result<Vec<(String, Manifest)>, String> {
    let state = host.prepare_state_dir();
    let entries = match fs::read_dir(&state) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", &host_path(host.root(), &state), e)),
    };
    let mut runs = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path().join("manifest.json");
        let Ok(Some(text)) = read_optional(&path) else {
            continue;
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a manifest hsw can read ({e}): move that run directory away",
                host_path(host.root(), &path)
            )
        })?;
        runs.push((entry.file_name().to_string_lossy().into_owned(), m));
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(runs)
}

/// What [`rollback`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// Nothing to roll back, and why.
    Nothing(String),
    /// Files changed since the run; nothing was touched.
    Refused {
        /// The run.
        run_id: String,
        /// One sentence per changed file.
        changed: Vec<String>,
    },
    /// The run was undone.
    Restored {
        /// The run.
        run_id: String,
        /// Host paths restored (or removed, for files the run created).
        files: Vec<String>,
        /// Commands run again, and what became of them.
        commands: Vec<CommandRecord>,
        /// Runs before it that can still be rolled back.
        earlier: usize,
    },
}

/// Undoes the newest run not yet rolled back. With `force`, files changed since the run are
/// overwritten too.
pub fn rollback(host: &dyn Host, force: bool) -> Result<RollbackOutcome, String> {
    let runs = list_runs(host)?;
    let pending: Vec<&(String, Manifest)> = runs
        .iter()
        .filter(|(_, m)| m.rolled_back.is_none())
        .collect();
    let Some((id, manifest)) = pending.last().map(|(id, m)| (id.clone(), m.clone())) else {
        let why = match runs.last() {
            None => "nothing to roll back: prepare --apply has not changed this host".to_owned(),
            Some((id, _)) => {
                format!("nothing to roll back: the last run ({id}) was already rolled back")
            }
        };
        return Ok(RollbackOutcome::Nothing(why));
    };
    let dir = host.prepare_state_dir().join(&id);
    let mut to_restore = Vec::new();
    let mut changed = Vec::new();
    for f in &manifest.files {
        let real = host.path(&f.path);
        let now = match fs::read(&real) {
            Ok(b) => Some(sha256_hex(&b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", &f.path, e)),
        };
        if now.as_deref() == Some(f.sha256_after.as_str()) {
            to_restore.push(f);
        } else if now == f.sha256_before {
            // Never written (the run stopped early) or already back: nothing to do.
        } else {
            let state = if now.is_none() {
                "it was removed".to_owned()
            } else {
                "its content differs from what the run wrote".to_owned()
            };
            changed.push(format!("{} changed since run {id}: {state}", f.path));
            to_restore.push(f);
        }
    }
    if !changed.is_empty() && !force {
        return Ok(RollbackOutcome::Refused {
            run_id: id,
            changed,
        });
    }
    let mut restored = Vec::new();
    for f in to_restore.iter().rev() {
        let real = host.path(&f.path);
        if f.existed {
            let Some(backup) = &f.backup else {
                return Err(format!(
                    "the manifest of run {id} has no backup for {}: restore it by hand",
                    f.path
                ));
            };
            let bytes =
                fs::read(dir.join(backup)).map_err(|e| io_err("read the backup of", &f.path, e))?;
            if Some(sha256_hex(&bytes)) != f.sha256_before {
                return Err(format!(
                    "the backup of {} in run {id} does not match its recorded sha256: restore it by hand",
                    f.path
                ));
            }
            let mode = u32::from_str_radix(&f.mode, 8).unwrap_or(0o644);
            let owner = f.uid.zip(f.gid);
            write_atomic_owned(&real, &bytes, mode, owner)
                .map_err(|e| io_err("restore", &f.path, e))?;
        } else {
            match fs::remove_file(&real) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &f.path, e)),
            }
        }
        restored.push(f.path.clone());
    }
    for d in manifest.created_dirs.iter().rev() {
        let _ = fs::remove_dir(host.path(d));
    }
    let mut commands = Vec::new();
    if !restored.is_empty() {
        for c in manifest.commands.iter().filter(|c| c.rerun_on_rollback) {
            let outcome = run_on(host, &c.command, 600);
            commands.push(CommandRecord {
                command: c.command.clone(),
                outcome: outcome.summary(),
                rerun_on_rollback: true,
            });
        }
    }
    let mut updated = manifest.clone();
    updated.rolled_back = Some(RollbackRecord {
        unix: now_unix(),
        forced: force && !changed.is_empty(),
        commands: commands.clone(),
    });
    save_manifest(&dir, &updated)?;
    restored.reverse();
    Ok(RollbackOutcome::Restored {
        run_id: id,
        files: restored,
        commands,
        earlier: pending.len().saturating_sub(1),
    })
}

/// Where a run's files live, for messages.
pub fn run_dir(host: &dyn Host, run_id: &str) -> PathBuf {
    host.prepare_state_dir().join(run_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_764_354_612), "20251128T183012Z");
    }
}
