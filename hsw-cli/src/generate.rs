//! `hsw-cli generate`: the Terraform root module of a cluster definition (see
//! `hsw_core::render::terraform` for what is in it).
//!
//! The command validates the configuration (and refuses an invalid one with its diagnostics), plans the GPUs,
//! renders the files, writes the ones whose text changed, and removes files it wrote before that are no longer
//! generated: only files in the output directory whose first line is the generated-file header. Nothing else in
//! the directory (`.terraform/`, state, lock file, files of your own) is touched.
//!
//! A file it would replace or remove must be one it wrote and nobody changed since (the header's body hash,
//! [`terraform::provenance`]); otherwise nothing at all is written and the error names the files and
//! `--force`. Every write goes through [`hsw_core::fsx::write_atomic`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use clap::Args;
use hsw_core::render::terraform::{self, Options, Provenance};

use crate::error::Error;
use crate::exit;
use crate::session::Session;

/// `hsw-cli generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The cluster definition (the embedded default when absent).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub options: GenerateOptions,
}

/// What to generate, and where (the flags of `hsw-cli generate`; `up` fills them itself).
#[derive(Debug, Clone, Args)]
pub struct GenerateOptions {
    /// The directory of the root module.
    #[arg(long, default_value = "terraform")]
    pub out: PathBuf,
    /// The directory of the hsw modules (`network`, `vm-group`, ...); the generated `source`s are relative to
    /// the output directory.
    #[arg(long, default_value = "modules")]
    pub modules: PathBuf,
    /// The state directory holding the per-cluster SSH keys (`ssh/<cluster>/id_ed25519.pub`); default `.hsw`
    /// beside the output directory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The base image of every VM (default: `host.images`, else `<pool_dir>/base/<cluster>/base.qcow2`).
    #[arg(long)]
    pub base_image: Option<String>,
    /// The kernel of every VM for direct kernel boot (default `<pool_dir>/base/<cluster>/vmlinuz`).
    #[arg(long, conflicts_with = "no_kernel_boot")]
    pub kernel: Option<String>,
    /// The initrd of every VM for direct kernel boot (default `<pool_dir>/base/<cluster>/initrd.img`).
    #[arg(long, conflicts_with = "no_kernel_boot")]
    pub initrd: Option<String>,
    /// The kernel command line for direct kernel boot.
    #[arg(long, conflicts_with = "no_kernel_boot")]
    pub cmdline: Option<String>,
    /// Boot the images with their own boot loader instead of a kernel and initrd.
    #[arg(long)]
    pub no_kernel_boot: bool,
    /// The provider's libvirt URI (default `host.libvirt_uri`), e.g. a sandbox's
    /// `qemu+unix:///system?socket=...`.
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
    /// The provider's pool directory (default `host.pool_dir`); the default image, kernel and initrd paths are
    /// under it.
    #[arg(long, value_name = "DIR")]
    pub pool_dir: Option<String>,
    /// Change nothing; exit 1 when the directory is not up to date.
    #[arg(long)]
    pub check: bool,
    /// Overwrite (or remove) files of the output directory that hsw-cli generate did not write, or that were
    /// edited since it wrote them (without it, such files stop the command before anything is written).
    #[arg(long)]
    pub force: bool,
}

/// Per cluster key (`hpc`, `cloud`): its own image, kernel and initrd (what `hsw-cli up` passes: each cluster
/// boots the image built from its package list). Wins over the options' image flags.
pub type ClusterImages = BTreeMap<String, ClusterImage>;

/// The files one cluster's VMs boot (direct kernel boot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterImage {
    /// The base image (qcow2).
    pub base: String,
    /// The kernel.
    pub kernel: String,
    /// The initrd.
    pub initrd: String,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Removed,
    Unchanged,
}

/// What `generate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Files created, updated or removed (or that would be, with `check`).
    pub changed: usize,
    /// Files generated.
    pub files: usize,
}

/// Runs `generate`; returns the exit code.
pub fn run(args: &GenerateArgs, out: &mut dyn Write) -> u8 {
    let session = match Session::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(Error::InvalidConfig { name, report, .. }) => {
            eprint!("{report}");
            return Error::invalid(format!("{name} is not valid; nothing was generated")).report();
        }
        Err(e) => return e.report(),
    };
    session.print_warnings();
    match generate(&session, &args.options, &ClusterImages::new(), out) {
        Ok(r) if args.options.check && r.changed > 0 => exit::INVALID,
        Ok(_) => exit::OK,
        Err(e) => e.report(),
    }
}

/// Writes the Terraform root module of a session's config into `options.out` (see the module's text) and says
/// what changed on `out`.
pub fn generate(
    session: &Session,
    options: &GenerateOptions,
    images: &ClusterImages,
    out: &mut dyn Write,
) -> Result<Report, Error> {
    let args = options;
    let name = &session.name;
    let valid = &session.config;
    // Where the provider connects and keeps its files is the host's business, not the clusters': a sandbox
    // (`hsw-cli up`) overrides them without touching the configuration (its sha256 stays that of the file).
    let mut owned = valid.clone();
    if args.libvirt_uri.is_some() || args.pool_dir.is_some() {
        if owned.host.is_none() {
            // Every field of `host` is optional: an empty object is the default.
            owned.host = serde_json::from_value(serde_json::json!({})).ok();
        }
        if let Some(host) = owned.host.as_mut() {
            if let Some(uri) = &args.libvirt_uri {
                hsw_core::config::uri::check_libvirt_uri(uri)
                    .map_err(|e| Error::cannot_run(format!("--libvirt-uri: {e}")))?;
                host.libvirt_uri = Some(uri.clone());
            }
            if let Some(dir) = &args.pool_dir {
                host.pool_dir = Some(dir.clone());
            }
        }
    }
    let cfg = &owned;
    let plan = session.plan()?;
    let cwd = std::env::current_dir()
        .map_err(|e| Error::cannot_run(format!("cannot read the current directory: {e}")))?;
    let out_dir = normalize(&cwd.join(&args.out));
    let modules_dir = normalize(&cwd.join(&args.modules));
    if !modules_dir.join("cluster").is_dir() {
        eprintln!(
            "warning: {} does not hold the hsw modules (no cluster/); the generated sources point there anyway",
            modules_dir.display()
        );
    }
    let ssh_dir = match &args.state_dir {
        Some(d) if d.is_absolute() => d.join("ssh").display().to_string(),
        Some(d) => relative_source(&out_dir, &normalize(&cwd.join(d).join("ssh"))),
        None => "../.hsw/ssh".to_owned(),
    };
    let mut options = Options::new(
        cfg,
        name,
        &session.source,
        &relative_source(&out_dir, &modules_dir),
        &ssh_dir,
    );
    if let Some(image) = &args.base_image {
        for v in options.base_images.values_mut() {
            v.clone_from(image);
        }
    }
    if args.no_kernel_boot {
        options.kernels.clear();
        options.initrds.clear();
        options.cmdline = None;
    } else {
        if let Some(k) = &args.kernel {
            options.kernels.values_mut().for_each(|v| v.clone_from(k));
        }
        if let Some(i) = &args.initrd {
            options.initrds.values_mut().for_each(|v| v.clone_from(i));
        }
        if args.cmdline.is_some() {
            options.cmdline.clone_from(&args.cmdline);
        }
    }
    for (cluster, image) in images {
        if let Some(v) = options.base_images.get_mut(cluster) {
            v.clone_from(&image.base);
        }
        if !args.no_kernel_boot {
            if let Some(v) = options.kernels.get_mut(cluster) {
                v.clone_from(&image.kernel);
            }
            if let Some(v) = options.initrds.get_mut(cluster) {
                v.clone_from(&image.initrd);
            }
        }
    }
    let files = terraform::render(cfg, plan, &options).map_err(|e| {
        Error::invalid(format!(
            "cannot generate the Terraform files of {name}: {e}"
        ))
    })?;
    let changes = sync(&out_dir, &files, args.check, args.force)?;
    let mut text = String::new();
    let shown = args.out.display();
    let mut changed = 0;
    for (file, change) in &changes {
        let verb = match (change, args.check) {
            (Change::Unchanged, _) => continue,
            (Change::Created, false) => "created",
            (Change::Updated, false) => "updated",
            (Change::Removed, false) => "removed",
            (Change::Created, true) => "would create",
            (Change::Updated, true) => "would update",
            (Change::Removed, true) => "would remove",
        };
        changed += 1;
        text.push_str(&format!(
            "{verb} {}\n",
            Path::new(&*shown.to_string()).join(file).display()
        ));
    }
    if changed == 0 {
        text.push_str(&format!(
            "{shown} is up to date ({} files generated from {name})\n",
            files.len()
        ));
    }
    out.write_all(text.as_bytes())
        .map_err(|e| Error::cannot_run(format!("cannot write the report: {e}")))?;
    Ok(Report {
        changed,
        files: files.len(),
    })
}

/// Writes the files whose text differs and removes stale generated files (those with the header). With
/// `dry_run`, only says what it would do. Without `force`, refuses (before changing anything) when a file it
/// would replace or remove is not one it wrote, unchanged.
fn sync(
    dir: &Path,
    files: &[terraform::File],
    dry_run: bool,
    force: bool,
) -> Result<Vec<(String, Change)>, Error> {
    let mut changes = Vec::new();
    // Files it may not touch without `force`: (name, why).
    let mut refused = Vec::new();
    for f in files {
        let path = dir.join(&f.name);
        let change = match std::fs::read(&path) {
            Ok(old) if old == f.contents.as_bytes() => Change::Unchanged,
            Ok(old) => {
                if let Some(why) = not_ours(&old) {
                    refused.push((f.name.clone(), why));
                }
                Change::Updated
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Change::Created,
            Err(e) => {
                return Err(Error::cannot_run(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        changes.push((f.name.clone(), change));
    }
    let mut stale = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if files.iter().any(|f| f.name == name)
                    || !entry.file_type().is_ok_and(|t| t.is_file())
                {
                    continue;
                }
                // Unreadable files are not ours to remove.
                let Ok(old) = std::fs::read(entry.path()) else {
                    continue;
                };
                if terraform::provenance(&old) == Provenance::Foreign {
                    continue;
                }
                if let Some(why) = not_ours(&old) {
                    refused.push((name.clone(), why));
                }
                stale.push(name);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::cannot_run(format!(
                "cannot list {}: {e}",
                dir.display()
            )))
        }
    }
    if !refused.is_empty() && !force {
        refused.sort();
        let list: Vec<String> = refused
            .iter()
            .map(|(name, why)| format!("{} ({why})", dir.join(name).display()))
            .collect();
        return Err(Error::invalid(format!(
            "refusing to replace files hsw-cli generate did not write as they are: {}. Keep Terraform of your \
             own in files of your own beside them (generate leaves those alone); to replace these, remove them \
             or run `hsw-cli generate --force --out {}`, then run the command again",
            list.join(", "),
            dir.display()
        )));
    }
    if !dry_run {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::cannot_run(format!("cannot create {}: {e}", dir.display())))?;
        for (f, (_, change)) in files.iter().zip(&changes) {
            if *change != Change::Unchanged {
                let path = dir.join(&f.name);
                hsw_core::fsx::write_atomic(&path, f.contents.as_bytes(), 0o644).map_err(|e| {
                    Error::cannot_run(format!("cannot write {}: {e}", path.display()))
                })?;
            }
        }
    }
    stale.sort();
    for name in stale {
        if !dry_run {
            let path = dir.join(&name);
            std::fs::remove_file(&path)
                .map_err(|e| Error::cannot_run(format!("cannot remove {}: {e}", path.display())))?;
        }
        changes.push((name, Change::Removed));
    }
    Ok(changes)
}

/// Why a file may not be replaced without `--force`, or `None` when hsw-cli generate wrote it as it is.
fn not_ours(contents: &[u8]) -> Option<&'static str> {
    match terraform::provenance(contents) {
        Provenance::Generated => None,
        Provenance::Edited => Some("changed since hsw-cli generate wrote it"),
        Provenance::Foreign => Some("no generated-file header"),
    }
}

/// A path without `.` and `..` components (lexically; `..` above the root stays at the root).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A Terraform local module source for `target` as seen from `from` (both absolute and normalized):
/// `./x` or `../x`, with `/` separators.
fn relative_source(from: &Path, target: &Path) -> String {
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = target.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); a.len() - common];
    parts.extend(
        b.iter()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.first().is_none_or(|p| p != "..") {
        parts.insert(0, ".".to_owned());
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_relative_to_the_output_directory() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            relative_source(&p("/r/terraform"), &p("/r/modules")),
            "../modules"
        );
        assert_eq!(relative_source(&p("/r"), &p("/r/modules")), "./modules");
        assert_eq!(
            relative_source(&p("/r/a/b"), &p("/r/modules")),
            "../../modules"
        );
        assert_eq!(relative_source(&p("/r/x"), &p("/r/x")), ".");
        assert_eq!(normalize(&p("/r/./a/../b")), p("/r/b"));
    }
}
