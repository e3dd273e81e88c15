//! Exclusive file locks (`flock`): the host-level lock per GPU that serialises "read state → pick placement →
//! create" across processes (two `terraform apply` runs, the CLI), and the simulated backend's state lock.
//!
//! A lock is released when its [`FileLock`] is dropped or the process dies (the kernel drops `flock` locks with
//! the last descriptor), so a crashed run never leaves a GPU locked.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::error::{ErrorKind, GpuError, Result};

/// The default directory of the per-GPU lock files (overridden by `HSW_LOCK_DIR`).
pub const DEFAULT_LOCK_DIR: &str = "/run/hsw";

/// A held exclusive lock on a file.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Waits for and takes the exclusive lock on `path`, creating the file (and its directory) if needed.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| GpuError::io("lock", path, &std::io::Error::from(e)))?;
        Ok(FileLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Takes the lock if nobody holds it; `Ok(None)` when someone does.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock {
                _file: file,
                path: path.to_owned(),
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(GpuError::io("lock", path, &std::io::Error::from(e))),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the lock file, creating it 0600 (and missing directories 0700), never through a symbolic link: the
/// locks are taken by root, in directories others may be able to write.
fn open(path: &Path) -> Result<File> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| GpuError::io("create the lock directory", dir, &e))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| GpuError::io("open the lock file", path, &e))
}

/// The lock file of one GPU: `<dir>/gpu-<pci address>.lock`.
pub fn gpu_lock_path(dir: &Path, pci_address: &str) -> PathBuf {
    let safe: String = pci_address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("gpu-{safe}.lock"))
}

/// The host-level lock of one GPU, held across "read state → pick placement → create" (and destroy).
#[derive(Debug)]
pub struct GpuLock(FileLock);

impl GpuLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl GpuLock {
    /// Waits for the GPU's lock in `dir`.
    pub fn acquire(dir: &Path, pci_address: &str) -> Result<GpuLock> {
        FileLock::acquire(&gpu_lock_path(dir, pci_address))
            .map(GpuLock)
            .map_err(|e| {
                GpuError::new(
                    ErrorKind::Io,
                    format!(
                        "Cannot take the lock of GPU {pci_address}: {e} Set HSW_LOCK_DIR to a writable directory \
                         shared by every hsw process on this host."
                    ),
                )
            })
    }

    /// Takes the GPU's lock if free.
    pub fn try_acquire(dir: &Path, pci_address: &str) -> Result<Option<GpuLock>> {
        Ok(FileLock::try_acquire(&gpu_lock_path(dir, pci_address))?.map(GpuLock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_excludes_others_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = GpuLock::acquire(dir.path(), "0000:41:00.0").unwrap();
        assert!(GpuLock::try_acquire(dir.path(), "0000:41:00.0")
            .unwrap()
            .is_none());
        assert!(GpuLock::try_acquire(dir.path(), "0000:42:00.0")
            .unwrap()
            .is_some());
        drop(a);
        assert!(GpuLock::try_acquire(dir.path(), "0000:41:00.0")
            .unwrap()
            .is_some());
        assert!(dir.path().join("gpu-0000:41:00.0.lock").is_file());
    }

    #[test]
    fn lock_files_are_private_and_never_opened_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("run/hsw");
        let held = FileLock::acquire(&locks.join("a.lock")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(held.path()), 0o600);
        assert_eq!(mode(&locks), 0o700);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, locks.join("b.lock")).unwrap();
        assert!(FileLock::try_acquire(&locks.join("b.lock")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
