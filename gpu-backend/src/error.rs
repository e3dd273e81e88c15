//! One error type for every GPU backend: a kind that callers branch on (the NVML return codes that matter, plus
//! the ways a file or a library can fail) and a sentence that names the object and the fix.

use std::fmt;

/// NVML return codes this crate maps to kinds (from `nvml.h`).
pub mod code {
    /// `NVML_ERROR_INVALID_ARGUMENT`.
    pub const INVALID_ARGUMENT: u32 = 2;
    /// `NVML_ERROR_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: u32 = 3;
    /// `NVML_ERROR_NO_PERMISSION`.
    pub const NO_PERMISSION: u32 = 4;
    /// `NVML_ERROR_NOT_FOUND`.
    pub const NOT_FOUND: u32 = 6;
    /// `NVML_ERROR_DRIVER_NOT_LOADED`.
    pub const DRIVER_NOT_LOADED: u32 = 9;
    /// `NVML_ERROR_LIBRARY_NOT_FOUND`.
    pub const LIBRARY_NOT_FOUND: u32 = 12;
    /// `NVML_ERROR_FUNCTION_NOT_FOUND`.
    pub const FUNCTION_NOT_FOUND: u32 = 13;
    /// `NVML_ERROR_GPU_IS_LOST`.
    pub const GPU_IS_LOST: u32 = 15;
    /// `NVML_ERROR_RESET_REQUIRED`.
    pub const RESET_REQUIRED: u32 = 16;
    /// `NVML_ERROR_IN_USE`.
    pub const IN_USE: u32 = 19;
    /// `NVML_ERROR_INSUFFICIENT_RESOURCES` (nvml-wrapper 0.13 reports it as `UnexpectedVariant(23)`).
    pub const INSUFFICIENT_RESOURCES: u32 = 23;
}

/// What went wrong, for callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The GPU has no room for it (overlapping placement, profile count, `+me` taken): `INSUFFICIENT_RESOURCES`.
    InsufficientResources,
    /// Something holds it (a process, a VM, compute instances inside a GPU instance): `IN_USE`.
    InUse,
    /// The GPU must be reset first: `RESET_REQUIRED`, or a MIG mode change pending a reset.
    ResetRequired,
    /// MIG mode is off on the GPU.
    MigDisabled,
    /// Not allowed: `NO_PERMISSION` (MIG changes need root).
    NoPermission,
    /// The GPU or driver cannot do it: `NOT_SUPPORTED`.
    NotSupported,
    /// No such device, GPU instance, compute instance, vGPU type or mdev: `NOT_FOUND`.
    NotFound,
    /// A value the GPU refuses (a placement start that is not legal for the profile): `INVALID_ARGUMENT`.
    InvalidArgument,
    /// No NVML library (`libnvidia-ml.so.1`) or no NVIDIA driver on this machine.
    Unavailable,
    /// A file or directory (state, lock, sysfs) could not be read or written.
    Io,
    /// Any other failure.
    Other,
}

impl ErrorKind {
    /// The kind of an NVML return code.
    pub fn from_nvml_code(c: u32) -> ErrorKind {
        match c {
            code::INSUFFICIENT_RESOURCES => ErrorKind::InsufficientResources,
            code::IN_USE => ErrorKind::InUse,
            code::RESET_REQUIRED => ErrorKind::ResetRequired,
            code::NO_PERMISSION => ErrorKind::NoPermission,
            code::NOT_SUPPORTED => ErrorKind::NotSupported,
            code::NOT_FOUND => ErrorKind::NotFound,
            code::INVALID_ARGUMENT => ErrorKind::InvalidArgument,
            code::DRIVER_NOT_LOADED | code::LIBRARY_NOT_FOUND => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
    }

    /// The snake_case name (`insufficient_resources`), as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InsufficientResources => "insufficient_resources",
            ErrorKind::InUse => "in_use",
            ErrorKind::ResetRequired => "reset_required",
            ErrorKind::MigDisabled => "mig_disabled",
            ErrorKind::NoPermission => "no_permission",
            ErrorKind::NotSupported => "not_supported",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Io => "io",
            ErrorKind::Other => "other",
        }
    }

    /// The kind named by [`ErrorKind::as_str`].
    pub fn parse(s: &str) -> Option<ErrorKind> {
        [
            ErrorKind::InsufficientResources,
            ErrorKind::InUse,
            ErrorKind::ResetRequired,
            ErrorKind::MigDisabled,
            ErrorKind::NoPermission,
            ErrorKind::NotSupported,
            ErrorKind::NotFound,
            ErrorKind::InvalidArgument,
            ErrorKind::Unavailable,
            ErrorKind::Io,
            ErrorKind::Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A GPU backend error: its kind and a sentence naming the object and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The sentence(s) shown to the user.
    pub message: String,
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GpuError {}

impl GpuError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> GpuError {
        GpuError {
            kind,
            message: message.into(),
        }
    }

    /// An IO error on `path` while doing `what` ("read the simulated GPU state").
    pub fn io(what: &str, path: &std::path::Path, e: &std::io::Error) -> GpuError {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " Run as root, or point hsw at a directory you can write."
            }
            std::io::ErrorKind::NotFound => " Check that the path exists.",
            _ => "",
        };
        GpuError::new(
            ErrorKind::Io,
            format!("Cannot {what} at {}: {e}.{hint}", path.display()),
        )
    }

    /// The error for NVML return code `c` from an operation on `object` ("creating GPU instance 1g.10gb at
    /// memory slice 0 on GPU 0000:41:00.0"): a sentence per code, with the remedy where there is one.
    pub fn nvml(c: u32, doing: &str) -> GpuError {
        let kind = ErrorKind::from_nvml_code(c);
        let message = match kind {
            ErrorKind::InsufficientResources => format!(
                "NVML refused {doing}: the GPU has no room for it (INSUFFICIENT_RESOURCES): the memory slices are \
                 taken by other GPU instances, the profile's maximum count is reached, or the one `+me` instance \
                 exists. List the instances with `nvidia-smi mig -lgi` and pick a free placement or destroy one."
            ),
            ErrorKind::InUse => format!(
                "NVML refused {doing}: it is in use (IN_USE). Stop the processes or VMs using it \
                 (`nvidia-smi`, `virsh list`), or destroy its compute instances first."
            ),
            ErrorKind::ResetRequired => format!(
                "NVML refused {doing}: the GPU needs a reset first (RESET_REQUIRED), usually because a MIG mode \
                 change is pending. Stop every client of the GPU (nvidia-persistenced, DCGM, VMs) and reset it with \
                 `nvidia-smi -i <index> -r`, or reboot the host (under passthrough, reboot the VM)."
            ),
            ErrorKind::NoPermission => format!(
                "NVML refused {doing}: no permission (NO_PERMISSION). MIG changes need root: run the provider or \
                 hsw-cli as root."
            ),
            ErrorKind::NotSupported => format!(
                "NVML refused {doing}: not supported on this GPU or driver (NOT_SUPPORTED). Check that the GPU \
                 supports MIG and that MIG mode is enabled (`nvidia-smi -i <index> -mig 1`, then a GPU reset)."
            ),
            ErrorKind::NotFound => {
                format!("NVML found nothing for {doing} (NOT_FOUND): it may have been removed already.")
            }
            ErrorKind::InvalidArgument => format!(
                "NVML refused {doing}: invalid argument (INVALID_ARGUMENT), such as a placement start that is not \
                 legal for the profile. See the profile's placements with `nvidia-smi mig -lgipp`."
            ),
            ErrorKind::Unavailable => format!(
                "NVML is not usable for {doing}: the NVIDIA driver or libnvidia-ml.so.1 is missing (code {c}). \
                 Install the NVIDIA driver, or use the simulated GPU backend."
            ),
            _ => format!("NVML failed {doing} with error code {c}."),
        };
        GpuError::new(kind, message)
    }
}

/// Results of this crate.
pub type Result<T, E = GpuError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_codes_map_to_kinds_and_sentences() {
        let cases = [
            (
                23,
                ErrorKind::InsufficientResources,
                "INSUFFICIENT_RESOURCES",
            ),
            (19, ErrorKind::InUse, "IN_USE"),
            (16, ErrorKind::ResetRequired, "nvidia-smi -i <index> -r"),
            (4, ErrorKind::NoPermission, "root"),
            (3, ErrorKind::NotSupported, "-mig 1"),
            (6, ErrorKind::NotFound, "NOT_FOUND"),
            (2, ErrorKind::InvalidArgument, "placement"),
            (9, ErrorKind::Unavailable, "libnvidia-ml.so.1"),
            (999, ErrorKind::Other, "999"),
        ];
        for (c, kind, needle) in cases {
            let e = GpuError::nvml(c, "creating GPU instance 1g.10gb on GPU 0000:41:00.0");
            assert_eq!(e.kind, kind, "{c}");
            assert!(e.message.contains(needle), "{c}: {}", e.message);
            assert!(e.message.contains("0000:41:00.0"), "{}", e.message);
            assert!(e.message.ends_with('.'), "{}", e.message);
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for c in 0..30 {
            let k = ErrorKind::from_nvml_code(c);
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(
            ErrorKind::parse("mig_disabled"),
            Some(ErrorKind::MigDisabled)
        );
        assert_eq!(ErrorKind::parse("nope"), None);
    }
}
