//! `hsw-cli backup`, `backup verify`, `backup list` and `hsw-cli restore`: a deployment saved whole while it
//! runs, and brought back from the backup alone.
//!
//! A backup is a directory `<out>/<YYYYMMDDTHHMMSSZ>/` (0700; written as `.<name>.partial` and renamed when
//! complete, so a half-written backup never looks like one), holding:
//!
//! | path | what |
//! |---|---|
//! | `config/cluster.yaml` | the cluster definition the deployment was made from |
//! | `state/...` | hsw's state directory: SSH and Munge keys, passwords, inventory, the Terraform root and its state (not `.terraform/`, the provider mirror or the logs) |
//! | `terraform/...` | the Terraform root, when `--terraform-dir` put it outside the state directory |
//! | `libvirt/domain-<name>.xml`, `libvirt/network-<name>.xml` | libvirt's definitions (`dumpxml --inactive --security-info`) |
//! | `pool/...` | the pool directory: every VM's disks (running ones through an external snapshot, [`libvirt`]), seeds, firmware variables, the guest images they grow from |
//! | `gpu/...` | the simulated GPU backend's state (its MIG instances) |
//! | `dumps/...` | application dumps taken inside the guests ([`dumps`]) |
//! | `manifest.json` | written last: the deployment's places, the domains and networks, every piece's size, sha256 and mode ([`manifest`]) |
//!
//! Every file is root's 0600: the backup holds every secret of the deployment. With `--encrypt-to` or
//! `--encrypt-passphrase-file` every piece is an age file besides, opened by the data key in `key.age`
//! ([`crypt`]). `backup verify` re-reads every piece; `restore` ([`restore`]) verifies first, and refuses to go over a running deployment unless told to
//! replace it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use hsw_core::ansible::hosts::{planned_hosts, Deployment as Hosts};
use hsw_core::host::prepare::utc_stamp;

use crate::error::Error;
use crate::exit;
use crate::runner::{Runner, SystemRunner};
use crate::session::Session;
use crate::up::sandbox;
use crate::up::virsh::Virsh;
use crate::up::{say, ssh_user, Ctx, Place, Target, DEFAULT_SANDBOX};
use crate::Format;

pub mod crypt;
mod dumps;
mod libvirt;
pub mod manifest;
mod restore;
mod timer;

pub use restore::{restore, restored_config, rollback, RestoreArgs, RollbackArgs};

use manifest::{Deployment, Kind, Manifest, Piece, FORMAT, FORMAT_ENCRYPTED, MANIFEST, MAX_PIECES};

/// Where backups go without `--out`: `<this>/<sandbox name, or host>/`.
pub const DEFAULT_ROOT: &str = "/var/backups/hsw";

/// `hsw-cli backup`: take one, or (subcommands) verify or list them.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// Verify or list instead of taking a backup.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Where the deployment is, where the backup goes.
    #[command(flatten)]
    pub create: CreateArgs,
}

/// `hsw-cli backup verify|list`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a backup: every piece's size and sha256 against its manifest, nothing missing or added, and the
    /// pieces of one deployment (the config's hash, each VM's and network's definition, the Terraform state).
    Verify {
        /// The backup's directory.
        backup: PathBuf,
        /// For an encrypted backup: open every piece too (age's authentication checks its content).
        #[command(flatten)]
        open: crypt::OpenArgs,
    },
    /// Write one piece of a backup to standard output, checked against its sha256 first and decrypted when the
    /// backup is encrypted: a dump to load by hand (`... dumps/postgresql.sql | psql`), a file to look at.
    Cat {
        /// The backup's directory.
        backup: PathBuf,
        /// The piece, as the manifest lists it (`dumps/home.tar`, `state/inventory/hosts.yml`, ...).
        piece: String,
        /// For an encrypted backup: the key that opens it.
        #[command(flatten)]
        open: crypt::OpenArgs,
    },
    /// List the backups in a directory, oldest first.
    List {
        /// The directory (default /var/backups/hsw/<sandbox name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The sandbox whose default directory to list.
        #[arg(long, value_name = "NAME", default_value = DEFAULT_SANDBOX)]
        sandbox_name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Install a systemd timer that takes this backup on a schedule (a service and a timer unit, enabled and
    /// started).
    Timer(timer::TimerArgs),
}

/// Which deployment to back up, and where to.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The deployment (as `hsw-cli up` was given it).
    #[command(flatten)]
    pub place: Place,
    /// The deployment's Terraform root module, when `up --out` put it elsewhere (default `<state dir>/terraform`).
    #[arg(long, value_name = "DIR")]
    pub terraform_dir: Option<PathBuf>,
    /// Where backups go: each one a directory named by its UTC time (default /var/backups/hsw/<sandbox name>,
    /// or /var/backups/hsw/host).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Once this backup is verified, remove the older backups of this deployment in that directory beyond
    /// the newest N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// Do not read the backup back once written (every piece is hashed as it is written either way; `backup
    /// verify` reads it back later).
    #[arg(long)]
    pub no_verify: bool,
    /// Encryption.
    #[command(flatten)]
    pub seal: crypt::SealArgs,
}

impl CreateArgs {
    /// The deployment's places as `up` and `down` take them.
    pub fn target(&self) -> Target {
        Target {
            place: self.place.clone(),
            out: self.terraform_dir.clone(),
        }
    }
}

/// Runs `hsw-cli backup ...`; returns the exit code.
pub fn run(args: &BackupArgs, out: &mut dyn Write) -> u8 {
    let r = match &args.command {
        None => create(&args.create, &SystemRunner, out).map(|_| ()),
        Some(BackupCommand::Verify { backup, open }) => verify_cmd(backup, open, out),
        Some(BackupCommand::Cat {
            backup,
            piece,
            open,
        }) => cat(backup, piece, open, out),
        Some(BackupCommand::List {
            out: dir,
            sandbox_name,
            format,
        }) => {
            let dir = dir
                .clone()
                .unwrap_or_else(|| Path::new(DEFAULT_ROOT).join(sandbox_name));
            list(&dir, *format, out)
        }
        Some(BackupCommand::Timer(t)) => timer::install(t, &SystemRunner, out),
    };
    match r {
        Ok(()) => exit::OK,
        Err(e) => e.report(),
    }
}

/// Seconds since the epoch.
fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `12.3 GiB`, `512 MiB`, `3 KiB`, `12 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// What a backup takes besides the deployment as it is.
#[derive(Debug, Default, Clone, Copy)]
struct Extra<'a> {
    /// Encrypt it so.
    seal: Option<&'a crypt::SealArgs>,
    /// The Terraform root's files to take instead of those there now (the pre-change snapshot: `up` has
    /// generated the root again for the change).
    previous_root: Option<&'a [RootFile]>,
}

/// A file of the Terraform root as it was before `up` generated it again: its name in the root, its bytes,
/// its mode.
pub type RootFile = (String, Vec<u8>, u32);

/// The most files, and bytes per file, [`root_files`] takes.
const MAX_ROOT_FILES: usize = 256;
const MAX_ROOT_FILE: u64 = 16 << 20;

/// The Terraform root's own files (regular files directly in it, not its state, a saved plan or
/// `.terraform/`), read before `up` generates it again, so that a snapshot taken before the change holds the
/// root its Terraform state was made with.
pub fn root_files(tf_dir: &Path) -> Result<Vec<RootFile>, Error> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(tf_dir)
        .map_err(|e| Error::invalid(format!("cannot list {}: {e}", tf_dir.display())))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().is_ok_and(|t| t.is_file())
            || name.starts_with("terraform.tfstate")
            || name.ends_with(".tfplan")
            || name.ends_with(".hsw-tmp")
        {
            continue;
        }
        if out.len() >= MAX_ROOT_FILES {
            return Err(Error::invalid(format!(
                "{} holds more than {MAX_ROOT_FILES} files; is it the Terraform root hsw generated?",
                tf_dir.display()
            )));
        }
        let p = e.path();
        let f = std::fs::File::open(&p)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", p.display())))?;
        let mode = f
            .metadata()
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", p.display())))?
            .mode()
            & 0o7777;
        let bytes = hsw_core::fsx::read_at_most(f, MAX_ROOT_FILE)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", p.display())))?
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} is larger than {} MiB; is it the Terraform root hsw generated?",
                    p.display(),
                    MAX_ROOT_FILE >> 20
                ))
            })?;
        out.push((name, bytes, mode));
    }
    out.sort();
    Ok(out)
}

/// Where `up` keeps its snapshot before a change that destroys VMs, without `--snapshot-dir`.
pub fn pre_change_root(sandbox: Option<&str>) -> PathBuf {
    Path::new(DEFAULT_ROOT)
        .join(sandbox.unwrap_or("host"))
        .join("pre-change")
}

/// `up`'s snapshot before a plan that destroys `destroyed`: a whole backup of the deployment as it was: the
/// config it was last applied from (`<state>/cluster.yaml`), the Terraform root as it was before the generate
/// step, its state, every VM's disks, the dumps. Only the newest of this deployment is kept in the directory.
/// Without a record of the last config (a deployment an older hsw-cli made) there is nothing consistent to
/// return to: it says so and goes on.
pub(crate) fn pre_change(
    up: &crate::up::Up<'_>,
    destroyed: &[String],
    out: &mut dyn Write,
) -> Result<(), Error> {
    let vms = destroyed.join(", ");
    if up.args.no_snapshot {
        say(
            out,
            format!("the plan destroys {vms}; no snapshot first (--no-snapshot)"),
        );
        return Ok(());
    }
    let ctx = up.ctx;
    let applied = restored_config(ctx.state.root());
    let (Ok(source), Some(root)) = (
        std::fs::read_to_string(&applied),
        up.previous_root.as_deref(),
    ) else {
        say(
            out,
            format!(
                "the plan destroys {vms}; no snapshot first: {} does not record the config the deployment was \
                 made from (an older hsw-cli made it), so there would be nothing consistent to roll back to",
                applied.display()
            ),
        );
        return Ok(());
    };
    let old = match Session::from_source(
        format!("{} (last applied)", applied.display()),
        Some(applied.clone()),
        source,
    ) {
        Ok(s) => s,
        Err(e) => {
            say(
                out,
                format!(
                    "the plan destroys {vms}; no snapshot first: the config last applied ({}) does not validate \
                     with this hsw-cli ({e})",
                    applied.display()
                ),
            );
            return Ok(());
        }
    };
    let libvirt = up.libvirt()?;
    let dir = up
        .args
        .snapshot_dir
        .clone()
        .unwrap_or_else(|| pre_change_root(ctx.sandbox.as_deref()));
    say(
        out,
        format!(
            "the plan destroys {vms}: a snapshot of the deployment first, into {} (`hsw-cli rollback` returns \
             to it; --no-snapshot skips it)",
            dir.display()
        ),
    );
    write_backup(
        ctx,
        &old,
        (&libvirt.uri, &libvirt.pool),
        &dir,
        (Some(1), false),
        Extra {
            seal: None,
            previous_root: Some(root),
        },
        out,
    )?;
    Ok(())
}

/// What a backup is being written into.
struct Writer {
    /// The (partial) backup directory.
    dir: PathBuf,
    pieces: Vec<Piece>,
    dirs: Vec<manifest::Dir>,
    skipped: Vec<String>,
    /// Encrypts every piece, when the backup is encrypted.
    seal: Option<crypt::Sealer>,
}

/// Flushes a running guest's file systems (`sync` over SSH) right before its snapshot, so that what was written
/// before the backup began is on its disks, not only in its page cache (hsw's VMs run no QEMU guest agent to
/// quiesce them); says which, in words for the manifest. A guest that does not answer is taken as it is
/// (crash-consistent).
fn flush_guest(ctx: &Ctx<'_>, user: &str, host: Option<&hsw_core::ansible::hosts::Host>) -> String {
    let Some(host) = host else {
        return "not flushed (not a VM of the config): crash-consistent".to_owned();
    };
    let cmd = crate::up::verify::ssh_cmd(ctx, user, host, &["sync"]);
    match ctx.runner.capture(&cmd) {
        Ok(o) if o.status.success() => "file systems flushed (sync over SSH)".to_owned(),
        Ok(o) => format!(
            "not flushed (ssh: {}): crash-consistent",
            o.stderr.trim().lines().last().unwrap_or("no message")
        ),
        Err(e) => format!("not flushed (cannot run ssh: {e}): crash-consistent"),
    }
}

impl Writer {
    /// Takes `files` as the Terraform root's files instead of those the state walk took there.
    fn previous_root(&mut self, ctx: &Ctx<'_>, files: &[RootFile]) -> Result<(), Error> {
        let state = ctx.state.root();
        let (top, kind) = match ctx.tf_dir.strip_prefix(state) {
            Ok(rel) => (format!("state/{}", rel.display()), Kind::State),
            Err(_) => ("terraform".to_owned(), Kind::Terraform),
        };
        let top = top.trim_end_matches('/').to_owned();
        let in_root = |path: &str| {
            path.strip_prefix(&format!("{top}/"))
                .is_some_and(|n| !n.contains('/'))
        };
        let now: Vec<String> = self
            .pieces
            .iter()
            .filter(|p| p.kind == kind && in_root(&p.path))
            .map(|p| p.path.clone())
            .filter(|path| {
                !path.ends_with("/terraform.tfstate")
                    && !path.ends_with("/terraform.tfstate.backup")
            })
            .collect();
        for path in &now {
            self.pieces.retain(|p| &p.path != path);
            let _ = std::fs::remove_file(self.dir.join(path));
        }
        for (name, bytes, mode) in files {
            self.bytes(format!("{top}/{name}"), kind, bytes, *mode, None)?;
        }
        Ok(())
    }

    fn file(&self, rel: &str) -> Result<PathBuf, Error> {
        if self.pieces.len() >= MAX_PIECES {
            return Err(Error::invalid(format!(
                "the deployment has more than {MAX_PIECES} files to back up; is the state or pool directory the \
                 right one?"
            )));
        }
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::invalid(format!("cannot create {}: {e}", parent.display())))?;
        }
        Ok(p)
    }

    fn push(
        &mut self,
        rel: String,
        kind: Kind,
        size: u64,
        sha256: String,
        mode: u32,
        vm: Option<&str>,
    ) {
        self.pieces.push(Piece {
            path: rel,
            kind,
            size,
            sha256,
            mode,
            vm: vm.map(str::to_owned),
        });
    }

    /// A piece from bytes (`mode`: the mode to give it back with).
    fn bytes(
        &mut self,
        rel: String,
        kind: Kind,
        bytes: &[u8],
        mode: u32,
        vm: Option<&str>,
    ) -> Result<(), Error> {
        let p = self.file(&rel)?;
        let (size, sum) = match &self.seal {
            Some(seal) => seal.seal_bytes(bytes, &p, 0o600),
            None => hsw_core::fsx::write_atomic(&p, bytes, 0o600).map(|()| {
                (
                    bytes.len() as u64,
                    hsw_core::render::terraform::sha256_hex(bytes),
                )
            }),
        }
        .map_err(|e| Error::invalid(format!("cannot write {}: {e}", p.display())))?;
        self.push(rel, kind, size, sum, mode, vm);
        Ok(())
    }

    /// A piece copied from a file (hashed as it is copied).
    fn copy(&mut self, rel: String, kind: Kind, src: &Path, vm: Option<&str>) -> Result<(), Error> {
        let mode = std::fs::metadata(src)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", src.display())))?
            .mode()
            & 0o7777;
        let p = self.file(&rel)?;
        let copied = match &self.seal {
            Some(seal) => seal.seal_file(src, &p, 0o600),
            None => hsw_core::fsx::copy_atomic_sha256(src, &p, 0o600),
        };
        let (size, sum) = copied.map_err(|e| {
            Error::invalid(format!(
                "cannot copy {} into the backup: {e}",
                src.display()
            ))
        })?;
        self.push(rel, kind, size, sum, mode, vm);
        Ok(())
    }

    /// Every regular file under `src` as pieces `<top>/<relative path>` (links are left out and said so),
    /// except those `skip` names (relative to `src`).
    fn tree(
        &mut self,
        top: &str,
        kind: Kind,
        src: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> Result<(), Error> {
        let (files, dirs) = walk(src, skip)?;
        for rel in dirs {
            let from = src.join(&rel);
            let mode = std::fs::symlink_metadata(&from)
                .map_err(|e| Error::invalid(format!("cannot read {}: {e}", from.display())))?
                .mode()
                & 0o7777;
            self.dirs.push(manifest::Dir {
                path: format!("{top}/{}", rel.display()),
                kind,
                mode,
            });
        }
        for rel in files {
            let from = src.join(&rel);
            let meta = std::fs::symlink_metadata(&from)
                .map_err(|e| Error::invalid(format!("cannot read {}: {e}", from.display())))?;
            let name = format!("{top}/{}", rel.display());
            if meta.file_type().is_file() {
                self.copy(name, kind, &from, None)?;
            } else {
                self.skipped.push(format!(
                    "{} is not a regular file (a link or a socket)",
                    from.display()
                ));
            }
        }
        Ok(())
    }
}

/// The paths (relative to `root`) of everything under `root` that is not a directory, and of the directories,
/// except what `skip` names (a skipped directory is not entered), each sorted; at most [`MAX_PIECES`], at most
/// 32 levels deep. A missing `root` is empty.
#[allow(clippy::type_complexity)]
fn walk(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<(Vec<PathBuf>, Vec<PathBuf>), Error> {
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    if !root.is_dir() {
        return Ok((out, dirs));
    }
    let mut stack = vec![(PathBuf::new(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::invalid(format!("cannot list {}: {e}", dir.display())))?;
        for e in entries {
            let e = e.map_err(|e| Error::invalid(format!("cannot list {}: {e}", dir.display())))?;
            let r = rel.join(e.file_name());
            if skip(&r) {
                continue;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                if depth >= 32 {
                    return Err(Error::invalid(format!(
                        "{} is nested more than 32 levels deep",
                        root.join(&r).display()
                    )));
                }
                dirs.push(r.clone());
                stack.push((r, depth + 1));
            } else {
                out.push(r);
                if out.len() > MAX_PIECES {
                    return Err(Error::invalid(format!(
                        "{} holds more than {MAX_PIECES} files",
                        root.display()
                    )));
                }
            }
        }
    }
    out.sort();
    dirs.sort();
    Ok((out, dirs))
}

/// What of the state directory a backup leaves out: the provider mirror and the logs (made again by `up`),
/// Terraform's plugin directory (made again by `terraform init`), and temporary files.
fn state_skip(rel: &Path) -> bool {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    matches!(first.as_deref(), Some("terraform-mirror" | "logs"))
        || rel.components().any(|c| c.as_os_str() == ".terraform")
        || rel.extension().is_some_and(|x| x == "hsw-tmp")
}

/// Takes a backup of the deployment; returns its directory.
pub fn create(
    args: &CreateArgs,
    runner: &dyn Runner,
    out: &mut dyn Write,
) -> Result<PathBuf, Error> {
    let target = args.target();
    let ctx = Ctx::new(&target, runner)?;
    let session = Session::load(args.place.config.as_deref())?;
    let (uri, pool) = sandbox::libvirt_at(&ctx, &session.config)?.map_err(|not_running| {
        let name = ctx.sandbox.as_deref().unwrap_or_default();
        Error::invalid(format!(
            "{not_running}, so there is no deployment to back up; bring it up with `hsw-cli up --sandbox-name \
             {name}`, or name another with --sandbox-name"
        ))
    })?;
    let root = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new(DEFAULT_ROOT).join(ctx.sandbox.as_deref().unwrap_or("host")));
    write_backup(
        &ctx,
        &session,
        (&uri, &pool),
        &root,
        (args.keep, !args.no_verify),
        Extra {
            seal: Some(&args.seal),
            previous_root: None,
        },
        out,
    )
}

/// Takes a backup of the deployment at `ctx` (libvirt at `uri`, its pool `pool`) into a new directory in
/// `root`; reads it back when `verify`; keeps the newest `keep` of this deployment's there. Returns its
/// directory.
fn write_backup(
    ctx: &Ctx<'_>,
    session: &Session,
    (uri, pool): (&str, &Path),
    root: &Path,
    (keep, verify): (Option<u32>, bool),
    extra: Extra<'_>,
    out: &mut dyn Write,
) -> Result<PathBuf, Error> {
    let Extra {
        seal,
        previous_root,
    } = extra;
    let t0 = Instant::now();
    let (uri, pool) = (uri.to_owned(), pool.to_path_buf());
    let tfstate = ctx.tf_dir.join("terraform.tfstate");
    if !tfstate.is_file() {
        return Err(Error::invalid(format!(
            "{} is missing: this is not the state directory of a deployment `hsw-cli up` made (name it with \
             --state-dir)",
            tfstate.display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| Error::invalid(format!("cannot create {}: {e}", root.display())))?;
    let started = now_unix();
    let name = utc_stamp(started);
    let done = root.join(&name);
    if done.exists() {
        return Err(Error::invalid(format!(
            "{} exists already (two backups in one second); run it again",
            done.display()
        )));
    }
    let partial = root.join(format!(".{name}.partial"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&partial)
        .map_err(|e| Error::invalid(format!("cannot create {}: {e}", partial.display())))?;
    say(out, format!("backing up into {}", done.display()));
    let mut w = Writer {
        dir: partial.clone(),
        pieces: Vec::new(),
        dirs: Vec::new(),
        skipped: Vec::new(),
        seal: None,
    };
    let mut encryption = None;
    let taken = match seal.filter(|s| s.wanted()).map(crypt::Sealer::new) {
        Some(Err(e)) => Err(Error::invalid(e)),
        Some(Ok((sealer, key, record))) => {
            w.seal = Some(sealer);
            encryption = Some(record);
            hsw_core::fsx::write_atomic(&partial.join(crypt::KEY_FILE), &key, 0o600)
                .map_err(|e| Error::invalid(format!("cannot write the backup's key: {e}")))
        }
        None => Ok(()),
    }
    .and_then(|()| take(ctx, session, &uri, &pool, previous_root, &mut w, out));
    let deployment = Deployment {
        sandbox: ctx.sandbox.clone(),
        state_dir: ctx.state.root().to_path_buf(),
        terraform_dir: ctx.tf_dir.clone(),
        libvirt_uri: uri,
        pool_dir: pool.clone(),
        gpu_state_dir: Some(hsw_core::config::model::default_gpu_state_dir(&pool))
            .filter(|d| d.is_dir()),
        config_name: session.name.clone(),
        config_sha256: hsw_core::render::terraform::sha256_hex(&session.source),
    };
    let finished = taken.and_then(|(domains, networks)| {
        let m = Manifest {
            format: if encryption.is_some() {
                FORMAT_ENCRYPTED
            } else {
                FORMAT
            },
            encryption,
            hsw_version: env!("CARGO_PKG_VERSION").to_owned(),
            created: name.clone(),
            created_unix: started,
            deployment,
            domains,
            networks,
            pieces: std::mem::take(&mut w.pieces),
            dirs: std::mem::take(&mut w.dirs),
            skipped: std::mem::take(&mut w.skipped),
        };
        let json = serde_json::to_vec_pretty(&m)
            .map_err(|e| Error::invalid(format!("cannot write the manifest: {e}")))?;
        hsw_core::fsx::write_atomic(&partial.join(MANIFEST), &json, 0o600)
            .map_err(|e| Error::invalid(format!("cannot write the manifest: {e}")))?;
        std::fs::rename(&partial, &done)
            .map_err(|e| Error::invalid(format!("cannot rename {}: {e}", partial.display())))?;
        Ok(m)
    });
    let m = match finished {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    for s in &m.skipped {
        say(out, format!("left out: {s}"));
    }
    say(
        out,
        format!(
            "backup {} written: {} pieces, {}, in {} s{}",
            done.display(),
            m.pieces.len(),
            human(m.size()),
            t0.elapsed().as_secs(),
            match &m.encryption {
                Some(e) if e.passphrase =>
                    "; encrypted with the passphrase (age, scrypt)".to_owned(),
                Some(e) => format!("; encrypted to {} (age)", e.recipients.join(", ")),
                None => String::new(),
            }
        ),
    );
    if verify {
        let t1 = Instant::now();
        manifest::verify(&done, &mut |_| {}).map_err(|p| {
            Error::invalid(format!(
                "the backup {} does not verify right after it was written: {}",
                done.display(),
                p.join("; ")
            ))
        })?;
        say(
            out,
            format!(
                "verified: every piece read back with its sha256 ({} s)",
                t1.elapsed().as_secs()
            ),
        );
    }
    if let Some(keep) = keep {
        prune(root, &m.deployment, keep as usize, out)?;
    }
    Ok(done)
}

/// Takes every piece: config, state, libvirt's definitions, the application dumps, the disks, the GPU state.
#[allow(clippy::type_complexity)]
fn take(
    ctx: &Ctx<'_>,
    session: &Session,
    uri: &str,
    pool: &Path,
    previous_root: Option<&[RootFile]>,
    w: &mut Writer,
    out: &mut dyn Write,
) -> Result<(Vec<manifest::DomainRecord>, Vec<manifest::NetworkRecord>), Error> {
    w.bytes(
        "config/cluster.yaml".into(),
        Kind::Config,
        session.source.as_bytes(),
        0o600,
        None,
    )?;
    let state = ctx.state.root();
    w.tree("state", Kind::State, state, &state_skip)?;
    if !ctx.tf_dir.starts_with(state) {
        w.tree("terraform", Kind::Terraform, &ctx.tf_dir, &state_skip)?;
    }
    if let Some(files) = previous_root {
        w.previous_root(ctx, files)?;
    }
    say(
        out,
        format!(
            "state: {} files from {}",
            w.pieces.len() - 1,
            state.display()
        ),
    );

    let virsh = Virsh::new(ctx.runner, uri);
    let plan = session.plan()?;
    let hosts = planned_hosts(&session.config, plan);
    let (domain_names, network_names) = objects(ctx, &virsh, session, &hosts)?;
    let mut domains = Vec::new();
    for n in &domain_names {
        let d = libvirt::domain(&virsh, n)?;
        w.bytes(
            manifest::domain_xml(n),
            Kind::Domain,
            d.xml.as_bytes(),
            0o600,
            Some(n),
        )?;
        domains.push(d);
    }
    let mut networks = Vec::new();
    for n in &network_names {
        let (rec, xml) = libvirt::network(&virsh, n)?;
        w.bytes(
            manifest::network_xml(n),
            Kind::Network,
            xml.as_bytes(),
            0o600,
            None,
        )?;
        networks.push(rec);
    }
    say(
        out,
        format!(
            "libvirt: domains {}; networks {}",
            domain_names.join(" "),
            network_names.join(" ")
        ),
    );

    let user = ssh_user(&session.config);
    for dump in dumps::planned(&session.config, &hosts) {
        if !domains
            .iter()
            .any(|d| d.record.name == dump.host.name && d.record.running)
        {
            w.skipped.push(format!(
                "dumps/{}: {} is not running, so {} was not dumped (its disk holds it)",
                dump.file, dump.host.name, dump.what
            ));
            continue;
        }
        let t = Instant::now();
        let rel = format!("dumps/{}", dump.file);
        let path = w.file(&rel)?;
        // Encrypted: the dump lands in a plain file beside (in the root-only partial backup) and is encrypted
        // into its piece, then removed.
        let plain = match w.seal {
            Some(_) => w.file(&format!("{rel}.plain.hsw-tmp"))?,
            None => path.clone(),
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&plain)
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", plain.display())))?;
        let remote: Vec<&str> = dump.remote.iter().map(String::as_str).collect();
        let cmd = crate::up::verify::ssh_cmd(ctx, &user, &dump.host, &remote);
        let ran = ctx.runner.to_file(&cmd, file);
        match ran {
            Ok((status, _)) if status.success() => {
                let written = match &w.seal {
                    Some(seal) => {
                        let r = seal.seal_file(&plain, &path, 0o600);
                        let _ = std::fs::remove_file(&plain);
                        r
                    }
                    None => hsw_core::fsx::file_sha256(&path),
                };
                let (size, sum) = written
                    .map_err(|e| Error::invalid(format!("cannot write {}: {e}", path.display())))?;
                say(
                    out,
                    format!(
                        "dump: {} on {}: {} in {} s",
                        dump.what,
                        dump.host.name,
                        human(size),
                        t.elapsed().as_secs()
                    ),
                );
                w.push(rel, Kind::Dump, size, sum, 0o600, Some(&dump.host.name));
            }
            other => {
                let _ = std::fs::remove_file(&plain);
                let why = match other {
                    Ok((status, stderr)) => format!(
                        "{status}: {}",
                        stderr.trim().lines().last().unwrap_or("no message")
                    ),
                    Err(e) => format!("cannot run ssh: {e}"),
                };
                w.skipped.push(format!(
                    "dumps/{}: {} on {} failed ({why}); its disk holds the data",
                    dump.file, dump.what, dump.host.name
                ));
            }
        }
    }

    let t = Instant::now();
    let mut records = Vec::new();
    let mut from_snapshots = std::collections::BTreeSet::new();
    for d in domains {
        let mut rec = d.record.clone();
        rec.disks = if d.record.running {
            let name = d.record.name.clone();
            let flushed = flush_guest(ctx, &user, hosts.host(&name));
            let taken = libvirt::take_running(&virsh, &d, pool, &mut |src| {
                let rel = src.strip_prefix(pool).unwrap_or(src);
                w.copy(
                    format!("pool/{}", rel.display()),
                    Kind::Disk,
                    src,
                    Some(&name),
                )?;
                from_snapshots.insert(rel.to_path_buf());
                Ok(())
            })?;
            format!("{flushed}; {taken}")
        } else {
            "shut off: its files copied as they were".to_owned()
        };
        records.push(rec);
    }
    let before = w.pieces.len();
    w.tree("pool", Kind::Disk, pool, &|rel| {
        from_snapshots.contains(rel)
            || rel.to_string_lossy().ends_with(libvirt::OVERLAY_SUFFIX)
            || rel.extension().is_some_and(|x| x == "hsw-tmp")
    })?;
    let disks: u64 = manifest::size_of(&w.pieces, Kind::Disk);
    say(
        out,
        format!(
            "disks: {} files from {} ({}) in {} s",
            from_snapshots.len() + w.pieces.len() - before,
            pool.display(),
            human(disks),
            t.elapsed().as_secs()
        ),
    );
    let gpu = hsw_core::config::model::default_gpu_state_dir(pool);
    w.tree("gpu", Kind::Gpu, &gpu, &|rel| {
        rel.extension().is_some_and(|x| x == "lock")
    })?;
    Ok((records, networks))
}

/// The domains and networks of the deployment: everything in a sandbox's libvirt; on the host's, the VMs
/// and networks the config names.
fn objects(
    ctx: &Ctx<'_>,
    virsh: &Virsh<'_>,
    session: &Session,
    hosts: &Hosts,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let list = |args: &[&str]| -> Result<Vec<String>, Error> {
        virsh.call(args).map_err(Error::invalid).map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
    };
    let mut domains = list(&["list", "--all", "--name"])?;
    let mut networks = list(&["net-list", "--all", "--name"])?;
    if ctx.sandbox.is_none() {
        domains.retain(|d| hosts.host(d).is_some());
        let ours: Vec<String> = session
            .config
            .global
            .networks
            .keys()
            .map(|k| hsw_core::render::terraform::network_name(&session.config, k))
            .collect();
        networks.retain(|n| ours.contains(n));
    }
    domains.sort();
    networks.sort();
    Ok((domains, networks))
}

/// `hsw-cli backup verify BACKUP`.
fn verify_cmd(backup: &Path, open: &crypt::OpenArgs, out: &mut dyn Write) -> Result<(), Error> {
    let t0 = Instant::now();
    let mut read = 0u64;
    match manifest::verify(backup, &mut |p| read += p.size) {
        Ok(m) => {
            match (&m.encryption, open.given()) {
                (Some(enc), true) => {
                    let t1 = Instant::now();
                    let opener =
                        crypt::Opener::new(backup, enc, open).map_err(Error::invalid)?;
                    for p in &m.pieces {
                        let src = backup.join(manifest::checked_path(p).map_err(Error::invalid)?);
                        let opened = std::fs::File::open(&src)
                            .and_then(|mut f| opener.open(&mut f, &mut std::io::sink()));
                        match opened {
                            Ok((size, sum)) if size == p.size && sum == p.sha256 => {}
                            Ok(_) => {
                                return Err(Error::invalid(format!(
                                    "{} changed while it was read",
                                    p.path
                                )))
                            }
                            Err(e) => {
                                return Err(Error::invalid(format!(
                                    "{} does not open with the backup's key ({e}): it is damaged",
                                    p.path
                                )))
                            }
                        }
                    }
                    say(
                        out,
                        format!(
                            "opened: every piece decrypts and authenticates ({} s)",
                            t1.elapsed().as_secs()
                        ),
                    );
                }
                (Some(_), false) => say(
                    out,
                    "encrypted: the pieces' hashes are checked; --identity or --passphrase-file opens them too",
                ),
                (None, true) => say(out, "the backup is not encrypted; the key is not needed"),
                (None, false) => {}
            }
            say(
                out,
                format!(
                    "{}: verified, {} pieces, {} read in {} s; {} of deployment {} (sandbox {}), {} VMs",
                    backup.display(),
                    m.pieces.len(),
                    human(read),
                    t0.elapsed().as_secs(),
                    m.created,
                    m.deployment.config_name,
                    m.deployment.sandbox.as_deref().unwrap_or("none"),
                    m.domains.len()
                ),
            );
            for s in &m.skipped {
                say(out, format!("it left out: {s}"));
            }
            Ok(())
        }
        Err(problems) => Err(Error::invalid(format!(
            "{} does not verify: {}",
            backup.display(),
            problems.join("; ")
        ))),
    }
}

/// `hsw-cli backup cat BACKUP PIECE`: the piece's bytes to `out` once its sha256 is right (decrypted as it is
/// written when the backup is encrypted; age authenticates every chunk).
fn cat(
    backup: &Path,
    piece: &str,
    open: &crypt::OpenArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let m = manifest::read(backup).map_err(Error::invalid)?;
    let p = m.pieces.iter().find(|p| p.path == piece).ok_or_else(|| {
        let dumps: Vec<&str> = m.of_kind(Kind::Dump).map(|p| p.path.as_str()).collect();
        Error::invalid(format!(
            "{} has no piece `{}` (its manifest lists them; the dumps are {})",
            backup.display(),
            piece.escape_debug(),
            if dumps.is_empty() {
                "none".to_owned()
            } else {
                dumps.join(", ")
            }
        ))
    })?;
    let src = backup.join(manifest::checked_path(p).map_err(Error::invalid)?);
    let (size, sum) = hsw_core::fsx::file_sha256(&src)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", src.display())))?;
    if size != p.size || sum != p.sha256 {
        return Err(Error::invalid(format!(
            "{piece} is damaged: {size} bytes with sha256 {sum}, the manifest says {} bytes with sha256 {}",
            p.size, p.sha256
        )));
    }
    let mut f = std::fs::File::open(&src)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", src.display())))?;
    let written = match &m.encryption {
        Some(enc) => {
            let opener = crypt::Opener::new(backup, enc, open).map_err(Error::invalid)?;
            opener.open(&mut f, out)
        }
        None => std::io::copy(&mut f, out).map(|n| (n, String::new())),
    };
    written
        .and_then(|_| out.flush())
        .map_err(|e| Error::invalid(format!("cannot write {piece}: {e}")))
}

/// The backups in `dir` (those with a readable manifest), oldest first.
fn backups_in(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::invalid(format!(
                "cannot list {}: {e}",
                dir.display()
            )))
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten().take(10_000) {
        let p = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if hidden || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(m) = manifest::read(&p) {
            out.push((p, m));
        }
    }
    out.sort_by(|a, b| (a.1.created_unix, &a.0).cmp(&(b.1.created_unix, &b.0)));
    Ok(out)
}

/// The backups in `dir` of the deployment in `sandbox` with its state in `state_dir`, oldest first.
fn backups_of(dir: &Path, sandbox: Option<&str>, state_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(backups_in(dir)?
        .into_iter()
        .filter(|(_, m)| {
            m.deployment.sandbox.as_deref() == sandbox && m.deployment.state_dir == state_dir
        })
        .map(|(p, _)| p)
        .collect())
}

/// `hsw-cli backup list`.
fn list(dir: &Path, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    let all = backups_in(dir)?;
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|(p, m)| {
                    serde_json::json!({
                        "path": p, "created": m.created, "size": m.size(), "pieces": m.pieces.len(),
                        "sandbox": m.deployment.sandbox, "config": m.deployment.config_name,
                        "vms": m.domains.len(), "skipped": m.skipped,
                    })
                })
                .collect();
            let _ = writeln!(out, "{}", serde_json::Value::Array(rows));
        }
        Format::Text => {
            if all.is_empty() {
                let _ = writeln!(out, "no backups in {}", dir.display());
            }
            for (p, m) in &all {
                let _ = writeln!(
                    out,
                    "{}  {:>10}  {} VMs  {}  {}",
                    m.created,
                    human(m.size()),
                    m.domains.len(),
                    m.deployment.config_name,
                    p.display()
                );
            }
        }
    }
    Ok(())
}

/// Removes the backups of the same deployment (same sandbox and state directory) in `root` beyond the newest
/// `keep`.
fn prune(root: &Path, d: &Deployment, keep: usize, out: &mut dyn Write) -> Result<(), Error> {
    let ours = backups_of(root, d.sandbox.as_deref(), &d.state_dir)?;
    let extra = ours.len().saturating_sub(keep);
    for p in &ours[..extra] {
        std::fs::remove_dir_all(p).map_err(|e| {
            Error::invalid(format!("cannot remove the old backup {}: {e}", p.display()))
        })?;
        say(
            out,
            format!("removed the old backup {} (--keep {keep})", p.display()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
