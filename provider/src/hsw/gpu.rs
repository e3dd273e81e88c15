//! What the GPU resources share: opening the GPU backends of `hsw-gpu-backend` from the provider configuration
//! (once per resource type, lazily), running their blocking calls off the async threads, and turning their
//! errors into diagnostics.

use std::sync::{Arc, OnceLock};

use hsw_gpu_backend::mdev::{SysfsMdev, SysfsRoot};
use hsw_gpu_backend::ops::{self, Choice, Opened, Paths};
use hsw_gpu_backend::{ErrorKind, GpuError};

use crate::framework::{AttrPath, Diagnostic, Diagnostics};

use super::{configured, validate, ProviderConfig, Shared};

/// Checks the GPU path arguments of the provider block.
pub fn check_paths(state_dir: Option<&str>, sysfs_root: Option<&str>) -> Diagnostics {
    let mut d = Diagnostics::new();
    for (name, v) in [("gpu_state_dir", state_dir), ("sysfs_root", sysfs_root)] {
        if let Some(p) = v {
            if let Err(m) = validate::absolute_path(p) {
                d.push(Diagnostic::error("Invalid directory", m).at(AttrPath::attr(name)));
            } else if name == "gpu_state_dir" && p == "/" {
                d.push(
                    Diagnostic::error(
                        "Invalid directory",
                        "The GPU state directory cannot be '/': choose a directory for hsw's simulated GPUs.",
                    )
                    .at(AttrPath::attr(name)),
                );
            }
        }
    }
    d
}

/// The opened MIG backend.
pub type Mig = Arc<Opened>;

/// A lazily opened MIG backend, kept for the provider's lifetime.
#[derive(Debug, Default, Clone)]
pub struct MigCell(Arc<OnceLock<Mig>>);

impl MigCell {
    /// Opens the backend the configuration names, once.
    pub async fn get(&self, shared: &Shared) -> Result<Mig, Diagnostics> {
        if let Some(m) = self.0.get() {
            return Ok(m.clone());
        }
        let config = configured(shared)?.config.clone();
        let opened = blocking(move || open_mig(&config)).await??;
        let m = Arc::new(opened);
        let _ = self.0.set(m.clone());
        Ok(self.0.get().cloned().unwrap_or(m))
    }
}

/// Opens the MIG backend of a configuration (blocking).
pub fn open_mig(config: &ProviderConfig) -> Result<Opened, Diagnostics> {
    let choice = Choice::parse(&config.gpu_backend).ok_or_else(|| {
        Diagnostics::error_at(
            AttrPath::attr("gpu_backend"),
            "Invalid GPU backend",
            "Use one of auto, nvml, simulated.",
        )
    })?;
    let paths = Paths {
        state_dir: config.gpu_state_dir.clone(),
        lock_dir: None,
    };
    ops::open(choice, &paths, None).map_err(|e| {
        Diagnostics::from(
            Diagnostic::error("Cannot open the GPU backend", e.message)
                .at(AttrPath::attr("gpu_backend")),
        )
    })
}

/// The sysfs vGPU backend of a configuration.
pub fn mdev_backend(shared: &Shared) -> Result<SysfsMdev, Diagnostics> {
    Ok(SysfsMdev::new(SysfsRoot::new(
        configured(shared)?.config.sysfs_root.clone(),
    )))
}

/// Runs blocking backend calls on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Diagnostics> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Diagnostics::error(
            "GPU backend call failed",
            format!("A GPU backend call did not complete ({e}). This is a bug in the provider."),
        )
    })
}

/// A short summary for an error kind.
pub fn summary(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InsufficientResources => "Not enough room on the GPU",
        ErrorKind::InUse => "GPU resource in use",
        ErrorKind::ResetRequired => "GPU reset required",
        ErrorKind::MigDisabled => "MIG mode is disabled",
        ErrorKind::NoPermission => "No permission",
        ErrorKind::NotSupported => "Not supported by the GPU",
        ErrorKind::NotFound => "Not found",
        ErrorKind::InvalidArgument => "Invalid value for the GPU",
        ErrorKind::Unavailable => "GPU backend unavailable",
        ErrorKind::Io => "Cannot access GPU files",
        ErrorKind::Other => "GPU operation failed",
    }
}

/// A backend error as a diagnostic at `at` (root when `None`).
pub fn diag(e: GpuError, at: Option<AttrPath>) -> Diagnostics {
    let d = Diagnostic::error(summary(e.kind), e.message);
    Diagnostics::from(match at {
        Some(p) => d.at(p),
        None => d,
    })
}
