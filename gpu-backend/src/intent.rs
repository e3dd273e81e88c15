//! The create intent of a MIG instance: what [`crate::ops::create`] is about to make on a GPU, written to
//! `<lock dir>/gpu-<pci>.intent.json` before the GPU instance is created and removed only once the instance is
//! complete, so that a create killed in between (SIGKILL, power loss of the provider) leaves a record that the next
//! create or destroy on that GPU finds.
//!
//! Why this is sound: the intent is written, updated and removed only while its writer holds the GPU's host-level
//! lock ([`crate::lock::GpuLock`]), and every create and destroy takes that lock before looking at the intent. So
//! whoever holds the lock and finds an intent knows its writer is no longer inside its create: the instance it
//! describes reached no Terraform state (the create never answered) and is an orphan. The lock directory is
//! `/run/hsw` for NVML, a tmpfs that a reboot empties, as it empties the GPU instances.
//!
//! The intent names the profile and the placement before the GPU instance exists (a placement holds at most one
//! instance, so together they identify it), and its GPU instance id as soon as NVML returns it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, GpuError, Result};
use crate::lock::gpu_lock_path;

/// What a create is about to make, or has made but not yet finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The GPU's PCI address.
    pub gpu_pci: String,
    /// The GPU-instance profile ID.
    pub profile_id: u32,
    /// The memory-slice start.
    pub start: u32,
    /// The GPU instance id, once created.
    pub gi_id: Option<u32>,
    /// The process that wrote it (for the operator; liveness comes from the lock, not from this).
    pub pid: u32,
}

/// The intent file of one GPU: next to its lock file, `<dir>/gpu-<pci>.intent.json`.
pub fn intent_path(lock_dir: &Path, pci_address: &str) -> PathBuf {
    gpu_lock_path(lock_dir, pci_address).with_extension("intent.json")
}

/// Writes (or rewrites) the intent. The caller holds the GPU's lock.
pub fn record(lock_dir: &Path, intent: &Intent) -> Result<()> {
    let path = intent_path(lock_dir, &intent.gpu_pci);
    let bytes = serde_json::to_vec_pretty(intent).unwrap_or_default();
    hsw_core::fsx::write_atomic(&path, &bytes, 0o600)
        .map_err(|e| GpuError::io("record the MIG create intent", &path, &e))
}

/// Removes the intent of a GPU; absent is fine. The caller holds the GPU's lock.
pub fn clear(lock_dir: &Path, pci_address: &str) -> Result<()> {
    let path = intent_path(lock_dir, pci_address);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(GpuError::io("remove the MIG create intent", &path, &e))
        }
        _ => Ok(()),
    }
}

/// The intent left on a GPU, if any. The caller holds the GPU's lock, so its writer is gone.
pub fn pending(lock_dir: &Path, pci_address: &str) -> Result<Option<Intent>> {
    let path = intent_path(lock_dir, pci_address);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(GpuError::io("read the MIG create intent", &path, &e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        GpuError::new(
            ErrorKind::Io,
            format!(
                "The MIG create intent {} is not valid ({e}). It records a create that was interrupted: check \
                 `nvidia-smi mig -lgi` for a GPU instance no Terraform state holds, destroy it, then remove the file.",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_pending_clear() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(pending(d.path(), "0000:41:00.0").unwrap(), None);
        let i = Intent {
            gpu_pci: "0000:41:00.0".into(),
            profile_id: 9,
            start: 4,
            gi_id: None,
            pid: 7,
        };
        record(d.path(), &i).unwrap();
        assert_eq!(
            intent_path(d.path(), "0000:41:00.0"),
            d.path().join("gpu-0000:41:00.0.intent.json")
        );
        assert_eq!(pending(d.path(), "0000:41:00.0").unwrap(), Some(i));
        assert_eq!(pending(d.path(), "0000:42:00.0").unwrap(), None);
        clear(d.path(), "0000:41:00.0").unwrap();
        clear(d.path(), "0000:41:00.0").unwrap();
        assert_eq!(pending(d.path(), "0000:41:00.0").unwrap(), None);
        std::fs::write(intent_path(d.path(), "0000:41:00.0"), "{").unwrap();
        let e = pending(d.path(), "0000:41:00.0").unwrap_err();
        assert!(e.message.contains("nvidia-smi mig -lgi"), "{e}");
    }
}
