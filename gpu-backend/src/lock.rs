//! Exclusive file locks (`flock`): the host-level lock per GPU that serialises "read state → pick placement →
//! create" across processes (two `terraform apply` runs, the CLI), and the simulated backend's state lock.
//!
//! A lock is released when its [`FileLock`] is dropped or the process dies (the kernel drops `flock` locks with
//! the last descriptor), so a crashed run never leaves a GPU locked.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::error::{ErrorKind, GpuError, Result};

/// The default directory of the per-GPU lock files (overridden by `HSW_LOCK_DIR`).
pub const DEFAULT_LOCK_DIR: &str = "/run/hsw";

/// A held exclusive lock on a file.
#[derive(Debug)]
pub struct FileLock {
    /// Held open: the `flock` lives as long as the descriptor.
    _file: File,
    path: PathBuf,
    /// Remove the lock file (and its directory, once empty) on release: see [`FileLock::try_acquire_transient`].
    transient: bool,
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
            transient: false,
        })
    }

    /// Takes the lock if nobody holds it; `Ok(None)` when someone does.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock {
                _file: file,
                path: path.to_owned(),
                transient: false,
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(GpuError::io("lock", path, &std::io::Error::from(e))),
        }
    }

    /// [`FileLock::try_acquire`] for a lock that leaves no file behind: the holder removes the lock file (and its
    /// directory, once empty) when it releases the lock. A taker therefore checks, once it holds the `flock`,
    /// that the path still names the file it locked; when the previous holder removed it meanwhile, the lock
    /// it holds is on a dead file and it answers `None` (taken), so the caller tries again.
    pub fn try_acquire_transient(path: &Path) -> Result<Option<FileLock>> {
        make_dir(path)?;
        let file = match open_file(path) {
            Ok(f) => f,
            // The directory was removed by a holder between our mkdir and open: taken, try again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(GpuError::io("open the lock file", path, &e)),
        };
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(GpuError::io("lock", path, &std::io::Error::from(e))),
        }
        let held = file
            .metadata()
            .map_err(|e| GpuError::io("inspect the lock file", path, &e))?;
        match std::fs::symlink_metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => Ok(Some(FileLock {
                _file: file,
                path: path.to_owned(),
                transient: true,
            })),
            _ => Ok(None),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if self.transient {
            // Still holding the flock: a waiter that then takes the dead file sees the path gone and retries.
            let _ = std::fs::remove_file(&self.path);
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Opens the lock file, creating it 0600 (and missing directories 0700), never through a symbolic link: the
/// locks are taken by root, in directories others may be able to write.
fn open(path: &Path) -> Result<File> {
    make_dir(path)?;
    open_file(path).map_err(|e| GpuError::io("open the lock file", path, &e))
}

/// The lock file's directory, made 0700 (with its missing parents) when missing.
fn make_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match path.parent() {
        Some(dir) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| GpuError::io("create the lock directory", dir, &e)),
        None => Ok(()),
    }
}

/// The lock file itself, in an existing directory.
fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
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

    #[test]
    fn transient_locks_exclude_others_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let path = locks.join("vm-a.lock");
        let a = FileLock::try_acquire_transient(&path).unwrap().unwrap();
        assert!(FileLock::try_acquire_transient(&path).unwrap().is_none());
        // A waiter that opened the file before the holder released it holds a dead file afterwards.
        let waiter = open_file(&path).unwrap();
        drop(a);
        assert!(
            !locks.exists(),
            "the lock file and its empty directory are removed"
        );
        flock(&waiter, FlockOperation::NonBlockingLockExclusive).unwrap();
        // The next taker makes a new file and gets it, although the dead one is locked.
        let b = FileLock::try_acquire_transient(&path).unwrap().unwrap();
        assert!(FileLock::try_acquire_transient(&path).unwrap().is_none());
        drop(b);
        assert!(!locks.exists());
    }
}
