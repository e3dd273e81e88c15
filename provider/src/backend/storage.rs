//! Files in the pool directory: qcow2 overlays and empty disks (`qemu-img`), cloud-init NoCloud seed ISOs
//! (`genisoimage`, else `cloud-localds`), and their removal. [`LocalStorage`] runs the real tools with argument
//! vectors (never a shell); [`FakeStorage`] keeps an in-memory file tree for tests.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

/// A failed storage operation: a sentence naming the file and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// One file of a cloud-init seed: its name in the ISO (`user-data`, `meta-data`, `network-config`) and content.
pub type SeedFile = (&'static str, String);

/// What the VM resource needs from the pool directory.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// The canonical path (symbolic links resolved); an error when it does not exist.
    async fn canonicalize(&self, path: &Path) -> Result<PathBuf, StorageError>;
    /// Whether a file or directory exists.
    async fn exists(&self, path: &Path) -> bool;
    /// Creates a directory and its parents with the given mode (on the last component).
    async fn create_dir(&self, path: &Path, mode: u32) -> Result<(), StorageError>;
    /// The virtual size of a disk image, in bytes.
    async fn image_size(&self, path: &Path) -> Result<u64, StorageError>;
    /// Creates (or replaces) a qcow2 overlay over a qcow2 base, optionally larger than the base.
    async fn create_overlay(
        &self,
        base: &Path,
        overlay: &Path,
        size: Option<u64>,
    ) -> Result<(), StorageError>;
    /// Creates (or replaces) an empty qcow2 disk.
    async fn create_disk(&self, path: &Path, size: u64) -> Result<(), StorageError>;
    /// Writes the seed files into `dir` (mode 0600) and builds the NoCloud ISO (volume id `cidata`) at `iso`.
    async fn create_seed(
        &self,
        dir: &Path,
        iso: &Path,
        files: &[SeedFile],
    ) -> Result<(), StorageError>;
    /// Copies `src` to `dst` (replaced, mode 0600, created exclusively: a planted link is removed, never followed):
    /// the UEFI variable store of a VM from OVMF's template.
    async fn copy_private(&self, src: &Path, dst: &Path) -> Result<(), StorageError>;
    /// Reads a text file; `None` when it does not exist.
    async fn read_text(&self, path: &Path) -> Result<Option<String>, StorageError>;
    /// Removes a file or a directory tree; a missing one is fine.
    async fn remove_all(&self, path: &Path) -> Result<(), StorageError>;
    /// Takes the lock `name` in the lock directory `dir` (made, mode 0700, when missing) without waiting: `None`
    /// while another holder has it (another apply's provider, or another call in this one). Dropping the guard
    /// releases the lock and removes its file (and the directory, once empty), so nothing is left in the pool;
    /// the holder's death releases it too (leaving the file until the next create of that name), so a free lock
    /// proves no live holder.
    async fn try_lock(&self, dir: &Path, name: &str) -> Result<Option<NameLock>, StorageError>;
}

/// A held lock of [`Storage::try_lock`]; dropping it releases the lock.
pub struct NameLock {
    _held: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for NameLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameLock")
    }
}

/// The real pool directory on this machine.
#[derive(Debug, Clone, Default)]
pub struct LocalStorage;

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> StorageError {
    StorageError(format!("Cannot {what} {}: {e}.", path.display()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError(format!("A storage task did not finish: {e}.")))?
}

fn run(
    program: &str,
    args: &[&std::ffi::OsStr],
    cwd: Option<&Path>,
) -> Result<String, StorageError> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(std::process::Stdio::null());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().map_err(|e| {
        StorageError(format!(
            "Cannot run {program}: {e}. Install it (Debian: qemu-utils for qemu-img, genisoimage or cloud-image-utils for seed ISOs)."
        ))
    })?;
    if !out.status.success() {
        return Err(StorageError(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The mode of every file a VM owns: disks hold the guest's keys and data, seeds its cloud-init secrets.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Replaces whatever is at `path` (a planted symbolic link is removed, never followed) with a new, empty file of
/// mode [`PRIVATE_FILE_MODE`], created exclusively. Tools that then write into it (`qemu-img create`,
/// `genisoimage -output`) keep an existing file's mode, so the file is never readable by others.
fn create_private(path: &Path) -> Result<std::fs::File, StorageError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err("replace", path, &e));
        }
        _ => {}
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|e| io_err("create", path, &e))?;
    f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .map_err(|e| io_err("set the permissions of", path, &e))?;
    Ok(f)
}

fn write_private(path: &Path, content: &str) -> Result<(), StorageError> {
    create_private(path)?
        .write_all(content.as_bytes())
        .map_err(|e| io_err("write", path, &e))
}

#[async_trait]
impl Storage for LocalStorage {
    async fn canonicalize(&self, path: &Path) -> Result<PathBuf, StorageError> {
        let p = path.to_owned();
        blocking(move || std::fs::canonicalize(&p).map_err(|e| io_err("find", &p, &e))).await
    }

    async fn exists(&self, path: &Path) -> bool {
        let p = path.to_owned();
        blocking(move || Ok(p.exists())).await.unwrap_or(false)
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> Result<(), StorageError> {
        let p = path.to_owned();
        blocking(move || {
            use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
            // Every directory made here gets `mode` from the start (the umask can only narrow it).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&p)
                .map_err(|e| io_err("create the directory", &p, &e))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_err("set the permissions of", &p, &e))
        })
        .await
    }

    async fn image_size(&self, path: &Path) -> Result<u64, StorageError> {
        let p = path.to_owned();
        blocking(move || {
            let out = run(
                "qemu-img",
                &[
                    "info".as_ref(),
                    "--output=json".as_ref(),
                    "-U".as_ref(),
                    p.as_os_str(),
                ],
                None,
            )?;
            let j: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                StorageError(format!(
                    "qemu-img info gave unreadable output for {}: {e}.",
                    p.display()
                ))
            })?;
            j.get("virtual-size")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    StorageError(format!(
                        "qemu-img info reported no virtual size for {}.",
                        p.display()
                    ))
                })
        })
        .await
    }

    async fn create_overlay(
        &self,
        base: &Path,
        overlay: &Path,
        size: Option<u64>,
    ) -> Result<(), StorageError> {
        let (base, overlay) = (base.to_owned(), overlay.to_owned());
        blocking(move || {
            create_private(&overlay)?;
            let size = size.map(|s| s.to_string());
            let mut args: Vec<&std::ffi::OsStr> = vec![
                "create".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                "-F".as_ref(),
                "qcow2".as_ref(),
                "-b".as_ref(),
                base.as_os_str(),
                overlay.as_os_str(),
            ];
            if let Some(s) = &size {
                args.push(s.as_ref());
            }
            run("qemu-img", &args, None).map(|_| ())
        })
        .await
    }

    async fn create_disk(&self, path: &Path, size: u64) -> Result<(), StorageError> {
        let p = path.to_owned();
        blocking(move || {
            create_private(&p)?;
            let size = size.to_string();
            run(
                "qemu-img",
                &[
                    "create".as_ref(),
                    "-q".as_ref(),
                    "-f".as_ref(),
                    "qcow2".as_ref(),
                    p.as_os_str(),
                    size.as_ref(),
                ],
                None,
            )
            .map(|_| ())
        })
        .await
    }

    async fn create_seed(
        &self,
        dir: &Path,
        iso: &Path,
        files: &[SeedFile],
    ) -> Result<(), StorageError> {
        let (dir, iso, files) = (dir.to_owned(), iso.to_owned(), files.to_vec());
        blocking(move || {
            use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io_err("create the directory", &dir, &e))?;
            for (name, content) in &files {
                write_private(&dir.join(name), content)?;
            }
            // Built inside the private (0700) seed directory, into a file that is 0600 from the start, then
            // renamed into place: rename replaces a link planted at `iso` instead of following it.
            let tmp = dir.join(".cidata.iso.tmp");
            create_private(&tmp)?;
            let names: Vec<&std::ffi::OsStr> = files
                .iter()
                .map(|(n, _)| std::ffi::OsStr::new(*n))
                .collect();
            if which("genisoimage") {
                let mut args: Vec<&std::ffi::OsStr> = vec![
                    "-quiet".as_ref(),
                    "-output".as_ref(),
                    tmp.as_os_str(),
                    "-volid".as_ref(),
                    "cidata".as_ref(),
                    "-joliet".as_ref(),
                    "-rock".as_ref(),
                ];
                args.extend(names);
                run("genisoimage", &args, Some(&dir))?;
            } else {
                let mut args: Vec<std::ffi::OsString> = Vec::new();
                if files.iter().any(|(n, _)| *n == "network-config") {
                    args.push(
                        format!("--network-config={}", dir.join("network-config").display()).into(),
                    );
                }
                args.push(tmp.clone().into());
                args.push(dir.join("user-data").into());
                args.push(dir.join("meta-data").into());
                let refs: Vec<&std::ffi::OsStr> =
                    args.iter().map(std::ffi::OsString::as_os_str).collect();
                run("cloud-localds", &refs, None)?;
            }
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
                .map_err(|e| io_err("set the permissions of", &tmp, &e))?;
            std::fs::rename(&tmp, &iso).map_err(|e| io_err("move the seed ISO to", &iso, &e))
        })
        .await
    }

    async fn copy_private(&self, src: &Path, dst: &Path) -> Result<(), StorageError> {
        let (src, dst) = (src.to_owned(), dst.to_owned());
        blocking(move || {
            let mut from = std::fs::File::open(&src).map_err(|e| io_err("open", &src, &e))?;
            let mut to = create_private(&dst)?;
            std::io::copy(&mut from, &mut to).map_err(|e| io_err("write", &dst, &e))?;
            to.sync_all().map_err(|e| io_err("write", &dst, &e))
        })
        .await
    }

    async fn read_text(&self, path: &Path) -> Result<Option<String>, StorageError> {
        let p = path.to_owned();
        blocking(move || match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p, &e)),
        })
        .await
    }

    async fn try_lock(&self, dir: &Path, name: &str) -> Result<Option<NameLock>, StorageError> {
        let (dir, name) = (dir.to_owned(), name.to_owned());
        blocking(move || Ok(try_lock_file(&dir, &name)?.map(|f| NameLock { _held: Box::new(f) })))
            .await
    }

    async fn remove_all(&self, path: &Path) -> Result<(), StorageError> {
        let p = path.to_owned();
        blocking(move || {
            let r = match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                Ok(_) => std::fs::remove_file(&p),
                Err(e) => Err(e),
            };
            match r {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", &p, &e)),
                _ => Ok(()),
            }
        })
        .await
    }
}

/// Makes the lock directory (0700, its missing parents 0711) and takes `<dir>/<name>.lock` with the one `flock`
/// lock of hsw ([`hsw_gpu_backend::lock::FileLock::try_acquire_transient`]: 0600, never through a link, removed
/// on release).
fn try_lock_file(
    dir: &Path,
    name: &str,
) -> Result<Option<hsw_gpu_backend::lock::FileLock>, StorageError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    // Missing directories above the lock directory are traversable by others (the pool directory may be one).
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent)
            .map_err(|e| io_err("create the directory", parent, &e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(io_err("create the lock directory", dir, &e));
        }
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io_err("inspect", dir, &e))?;
    if !meta.is_dir() {
        return Err(StorageError(format!(
            "The lock directory {} is not a directory (a link or a file is in its place): remove it.",
            dir.display()
        )));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err("set the permissions of", dir, &e))?;
    let path = dir.join(format!("{name}.lock"));
    hsw_gpu_backend::lock::FileLock::try_acquire_transient(&path)
        .map_err(|e| StorageError(e.to_string()))
}

/// A file in the fake tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeFile {
    /// A directory.
    Dir,
    /// A qcow2 image: virtual size and backing file.
    Image {
        /// Virtual size in bytes.
        size: u64,
        /// The backing file of an overlay.
        backing: Option<PathBuf>,
    },
    /// A seed ISO and the names of the files it holds.
    Iso(Vec<String>),
    /// A text file.
    Text(String),
    /// A symbolic link.
    Link(PathBuf),
}

/// An in-memory pool directory for tests. Clones share their tree.
#[derive(Debug, Clone, Default)]
pub struct FakeStorage {
    files: Arc<Mutex<BTreeMap<PathBuf, FakeFile>>>,
    /// The locks held now (lock directory joined with the name), as a `flock` table.
    locks: Arc<Mutex<std::collections::BTreeSet<PathBuf>>>,
    /// The mode each directory was last given by `create_dir`.
    modes: Arc<Mutex<BTreeMap<PathBuf, u32>>>,
}

/// The guard of a fake lock: releases it when dropped, as closing a `flock`ed file does.
struct FakeLockGuard {
    locks: Arc<Mutex<std::collections::BTreeSet<PathBuf>>>,
    key: PathBuf,
}

impl Drop for FakeLockGuard {
    fn drop(&mut self) {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl FakeStorage {
    /// An empty tree.
    pub fn new() -> FakeStorage {
        FakeStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, FakeFile>> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a file (and its parent directories).
    pub fn put(&self, path: impl Into<PathBuf>, file: FakeFile) {
        let path = path.into();
        let mut g = self.lock();
        for a in path.ancestors().skip(1) {
            if a.as_os_str().len() > 1 {
                g.entry(a.to_owned()).or_insert(FakeFile::Dir);
            }
        }
        g.insert(path, file);
    }

    /// The mode `create_dir` last gave `path`, if it made or chmodded it.
    pub fn dir_mode(&self, path: &Path) -> Option<u32> {
        self.modes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            .copied()
    }

    /// Every path in the tree with its file.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, FakeFile> {
        self.lock().clone()
    }

    /// Whether `path` exists (a closure for [`crate::backend::libvirt::fake::FakeLibvirt::with_files`]).
    pub fn file_check(&self) -> crate::backend::libvirt::fake::FileCheck {
        let me = self.clone();
        Arc::new(move |p: &str| me.lock().contains_key(Path::new(p)))
    }

    fn resolve(g: &BTreeMap<PathBuf, FakeFile>, path: &Path) -> Option<PathBuf> {
        let mut p = crate::hsw::validate::normalize(path);
        for _ in 0..16 {
            // Resolve links in any prefix.
            let mut out = PathBuf::new();
            let mut changed = false;
            for c in p.components() {
                out.push(c.as_os_str());
                if let Some(FakeFile::Link(t)) = g.get(&out) {
                    let rest: PathBuf =
                        p.strip_prefix(&out).map(Path::to_owned).unwrap_or_default();
                    p = crate::hsw::validate::normalize(&t.join(rest));
                    changed = true;
                    break;
                }
            }
            if !changed {
                return g.contains_key(&p).then_some(p);
            }
        }
        None
    }
}

#[async_trait]
impl Storage for FakeStorage {
    async fn canonicalize(&self, path: &Path) -> Result<PathBuf, StorageError> {
        let g = self.lock();
        if path == Path::new("/") {
            return Ok(path.to_owned());
        }
        Self::resolve(&g, path).ok_or_else(|| {
            StorageError(format!(
                "Cannot find {}: No such file or directory (os error 2).",
                path.display()
            ))
        })
    }

    async fn exists(&self, path: &Path) -> bool {
        Self::resolve(&self.lock(), path).is_some()
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> Result<(), StorageError> {
        self.put(path, FakeFile::Dir);
        self.modes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(path.to_owned(), mode);
        Ok(())
    }

    async fn image_size(&self, path: &Path) -> Result<u64, StorageError> {
        let g = self.lock();
        match Self::resolve(&g, path).and_then(|p| g.get(&p).cloned()) {
            Some(FakeFile::Image { size, .. }) => Ok(size),
            Some(_) => Err(StorageError(format!(
                "qemu-img failed: {} is not a disk image.",
                path.display()
            ))),
            None => Err(StorageError(format!(
                "qemu-img failed: Could not open '{}': No such file or directory",
                path.display()
            ))),
        }
    }

    async fn create_overlay(
        &self,
        base: &Path,
        overlay: &Path,
        size: Option<u64>,
    ) -> Result<(), StorageError> {
        // The real one runs qemu-img on the blocking pool: other tasks (another create) run meanwhile.
        tokio::task::yield_now().await;
        let base_size = self.image_size(base).await?;
        if !self
            .exists(overlay.parent().unwrap_or(Path::new("/")))
            .await
        {
            return Err(StorageError(format!(
                "qemu-img failed: Could not create '{}': No such file or directory",
                overlay.display()
            )));
        }
        self.put(
            overlay,
            FakeFile::Image {
                size: size.unwrap_or(base_size),
                backing: Some(base.to_owned()),
            },
        );
        Ok(())
    }

    async fn create_disk(&self, path: &Path, size: u64) -> Result<(), StorageError> {
        self.put(
            path,
            FakeFile::Image {
                size,
                backing: None,
            },
        );
        Ok(())
    }

    async fn create_seed(
        &self,
        dir: &Path,
        iso: &Path,
        files: &[SeedFile],
    ) -> Result<(), StorageError> {
        self.remove_all(dir).await?;
        self.put(dir, FakeFile::Dir);
        for (name, content) in files {
            self.put(dir.join(name), FakeFile::Text(content.clone()));
        }
        self.put(
            iso,
            FakeFile::Iso(files.iter().map(|(n, _)| (*n).to_owned()).collect()),
        );
        Ok(())
    }

    async fn copy_private(&self, src: &Path, dst: &Path) -> Result<(), StorageError> {
        let g = self.lock();
        let file = Self::resolve(&g, src)
            .and_then(|p| g.get(&p).cloned())
            .ok_or_else(|| {
                StorageError(format!(
                    "Cannot open {}: No such file or directory (os error 2).",
                    src.display()
                ))
            })?;
        drop(g);
        self.put(dst, file);
        Ok(())
    }

    async fn read_text(&self, path: &Path) -> Result<Option<String>, StorageError> {
        match self.lock().get(path) {
            Some(FakeFile::Text(t)) => Ok(Some(t.clone())),
            _ => Ok(None),
        }
    }

    async fn remove_all(&self, path: &Path) -> Result<(), StorageError> {
        self.lock().retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    async fn try_lock(&self, dir: &Path, name: &str) -> Result<Option<NameLock>, StorageError> {
        let key = dir.join(format!("{name}.lock"));
        let mut held = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !held.insert(key.clone()) {
            return Ok(None);
        }
        Ok(Some(NameLock {
            _held: Box::new(FakeLockGuard {
                locks: Arc::clone(&self.locks),
                key,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn local_files_are_private_and_planted_links_are_replaced_not_followed() {
        if !which("qemu-img") || !(which("genisoimage") || which("cloud-localds")) {
            println!("SKIPPED: qemu-img and genisoimage (or cloud-localds) are needed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let (disk, iso) = (dir.path().join("d.qcow2"), dir.path().join("cidata.iso"));
        for p in [&disk, &iso] {
            std::os::unix::fs::symlink(&victim, p).unwrap();
        }
        let s = LocalStorage;
        s.create_disk(&disk, 1 << 20).await.unwrap();
        let overlay = dir.path().join("o.qcow2");
        s.create_overlay(&disk, &overlay, None).await.unwrap();
        let seed = dir.path().join("cidata");
        s.create_seed(
            &seed,
            &iso,
            &[
                ("user-data", "#cloud-config\n".into()),
                ("meta-data", String::new()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        for p in [&disk, &overlay, &iso, &seed.join("user-data")] {
            assert!(
                std::fs::symlink_metadata(p).unwrap().is_file(),
                "{}",
                p.display()
            );
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        assert_eq!(mode(&seed), 0o700);
        let nvram = dir.path().join("nvram.fd");
        std::os::unix::fs::symlink(&victim, &nvram).unwrap();
        s.copy_private(&seed.join("user-data"), &nvram)
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&nvram).unwrap(), "#cloud-config\n");
        assert_eq!(mode(&nvram), 0o600);
        let vms = dir.path().join("vms/a");
        s.create_dir(&vms, 0o711).await.unwrap();
        assert_eq!((mode(&vms), mode(vms.parent().unwrap())), (0o711, 0o711));
    }

    #[tokio::test]
    async fn a_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("pool/.hsw-locks");
        let local: &dyn Storage = &LocalStorage;
        let fake = FakeStorage::new();
        for s in [local, &fake] {
            let held = s.try_lock(&locks, "vm-a").await.unwrap().unwrap();
            if std::ptr::eq(s, local) {
                assert_eq!(mode(&locks), 0o700);
                assert_eq!(mode(&locks.join("vm-a.lock")), 0o600);
            }
            assert!(s.try_lock(&locks, "vm-a").await.unwrap().is_none());
            assert!(s.try_lock(&locks, "vm-b").await.unwrap().is_some());
            drop(held);
            // A child another test forks may share the lock file until it execs: the lock frees soon, not at once.
            let mut freed = false;
            for _ in 0..50 {
                if s.try_lock(&locks, "vm-a").await.unwrap().is_some() {
                    freed = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(freed, "the lock is free once its holder drops it");
        }
        // Released locks leave nothing in the pool.
        assert!(!locks.exists(), "{} is left", locks.display());
    }

    #[tokio::test]
    async fn fake_resolves_links() {
        let s = FakeStorage::new();
        s.put(
            "/pool/base.qcow2",
            FakeFile::Image {
                size: 1,
                backing: None,
            },
        );
        s.put("/pool/evil", FakeFile::Link("/etc".into()));
        s.put("/etc/passwd", FakeFile::Text(String::new()));
        assert_eq!(
            s.canonicalize(Path::new("/pool/evil/passwd"))
                .await
                .unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(s.canonicalize(Path::new("/pool/nope")).await.is_err());
        s.remove_all(Path::new("/pool")).await.unwrap();
        assert!(!s.exists(Path::new("/pool/base.qcow2")).await);
    }
}
