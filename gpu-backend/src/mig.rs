//! The [`GpuBackend`] trait (what hsw needs from NVML for MIG) and the values it returns.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, GpuError, Result};

/// Which backend answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The NVIDIA driver, through NVML.
    Nvml,
    /// The simulated GPUs (state in a JSON file).
    Simulated,
}

impl BackendKind {
    /// `nvml` or `simulated`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Nvml => "nvml",
            BackendKind::Simulated => "simulated",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// MIG mode of a GPU: current, and pending (what it becomes after a reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigMode {
    /// Enabled now.
    pub current: bool,
    /// Enabled after the next GPU reset.
    pub pending: bool,
}

impl MigMode {
    /// `enabled`, `disabled`, `enabled (disable pending a reset)`, `disabled (enable pending a reset)`.
    pub fn describe(self) -> &'static str {
        match (self.current, self.pending) {
            (true, true) => "enabled",
            (false, false) => "disabled",
            (true, false) => "enabled (disable pending a reset)",
            (false, true) => "disabled (enable pending a reset)",
        }
    }
}

/// The versions a GPU driver reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverVersions {
    /// The NVIDIA driver's version (`nvmlSystemGetDriverVersion`), e.g. `550.54.16`.
    pub driver: String,
    /// NVML's version (`nvmlSystemGetNVMLVersion`), e.g. `12.550.54.16`.
    pub nvml: String,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// NVML index (`nvidia-smi -i N`).
    pub index: u32,
    /// `GPU-xxxxxxxx-...`.
    pub uuid: String,
    /// The name NVML reports, e.g. `NVIDIA A100-SXM4-80GB`.
    pub name: String,
    /// PCI address, `dddd:bb:dd.f`, lower case.
    pub pci_address: String,
    /// PCI device id (vendor 0x10de), e.g. 0x20b2.
    pub pci_device_id: u16,
    /// MIG mode.
    pub mig: MigMode,
    /// Total memory in MiB.
    pub memory_mib: u64,
}

impl DeviceInfo {
    /// The catalogued model (by PCI device id, else by name).
    pub fn model(&self) -> Option<&'static hsw_core::gpu::GpuModel> {
        hsw_core::gpu::model_by_pci_device_id(self.pci_device_id)
            .or_else(|| hsw_core::gpu::lookup_model(&self.name))
    }

    /// Whether `r` (an index, a UUID or a PCI address) names this device.
    pub fn matches(&self, r: &str) -> bool {
        let r = r.trim();
        r == self.index.to_string()
            || r.eq_ignore_ascii_case(&self.uuid)
            || normalize_pci(r).is_some_and(|p| p == self.pci_address)
    }

    /// The error for MIG work on this device when MIG mode is not enabled now, or changes at the next reset.
    pub fn require_mig(&self) -> Result<()> {
        let i = self.index;
        match (self.mig.current, self.mig.pending) {
            (true, true) => Ok(()),
            (false, false) => Err(GpuError::new(
                ErrorKind::MigDisabled,
                format!(
                    "MIG mode is disabled on GPU {} ({}). hsw never changes it: enable it with `nvidia-smi -i {i} \
                     -mig 1`, then reset the GPU (`nvidia-smi -i {i} -r`, with no process using it) or reboot.",
                    self.pci_address, self.name
                ),
            )),
            (false, true) => Err(GpuError::new(
                ErrorKind::ResetRequired,
                format!(
                    "MIG mode on GPU {} ({}) is enabled but pending a GPU reset. Stop every client of the GPU \
                     (nvidia-persistenced, DCGM, VMs) and reset it with `nvidia-smi -i {i} -r`, or reboot the host.",
                    self.pci_address, self.name
                ),
            )),
            (true, false) => Err(GpuError::new(
                ErrorKind::ResetRequired,
                format!(
                    "MIG mode on GPU {} ({}) is being disabled at the next GPU reset; hsw will not create MIG \
                     instances on it. Re-enable it with `nvidia-smi -i {i} -mig 1`, or reset the GPU and stop \
                     using MIG on it.",
                    self.pci_address, self.name
                ),
            )),
        }
    }
}

/// A PCI address in the canonical form `dddd:bb:dd.f` (lower case), from `bb:dd.f`, `dddd:bb:dd.f`, or NVML's
/// `dddddddd:bb:dd.f`. `None` when it is not one.
pub fn normalize_pci(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let parts: Vec<&str> = s.split(':').collect();
    let (domain, bus, rest) = match parts.as_slice() {
        [b, r] => ("0000", *b, *r),
        [d, b, r] => (*d, *b, *r),
        _ => return None,
    };
    let (dev, func) = rest.split_once('.')?;
    let hex = |x: &str, max_len: usize| {
        !x.is_empty() && x.len() <= max_len && x.bytes().all(|c| c.is_ascii_hexdigit())
    };
    if !hex(domain, 8) || !hex(bus, 2) || !hex(dev, 2) || !hex(func, 1) {
        return None;
    }
    let d = u32::from_str_radix(domain, 16).ok()?;
    let b = u8::from_str_radix(bus, 16).ok()?;
    let v = u8::from_str_radix(dev, 16).ok()?;
    let f = u8::from_str_radix(func, 16).ok()?;
    if d > 0xffff || v > 0x1f || f > 7 {
        return None;
    }
    Some(format!("{d:04x}:{b:02x}:{v:02x}.{f:x}"))
}

/// A memory-slice placement: `[start, start + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// First memory slice.
    pub start: u32,
    /// Memory slices covered.
    pub size: u32,
}

impl Placement {
    /// Whether two placements share a memory slice.
    pub fn overlaps(self, other: Placement) -> bool {
        self.start < other.start + other.size && other.start < self.start + self.size
    }
}

/// A GPU-instance profile as the GPU reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    /// The `nvidia-smi mig -lgip` ID (what create calls want).
    pub id: u32,
    /// The name, e.g. `1g.10gb` (without NVML's `MIG ` prefix).
    pub name: String,
    /// Compute slices (NVML `sliceCount`).
    pub compute_slices: u32,
    /// At most this many instances on the GPU (NVML `instanceCount`).
    pub max_count: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Where it may be placed.
    pub placements: Vec<Placement>,
}

impl ProfileInfo {
    /// Memory slices an instance covers (the placements' size).
    pub fn placement_size(&self) -> Option<u32> {
        self.placements.first().map(|p| p.size)
    }
}

/// A compute instance inside a GPU instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeInstance {
    /// Its id inside the GPU instance.
    pub id: u32,
    /// The compute-instance profile ID.
    pub profile_id: u32,
    /// Compute slices it has.
    pub compute_slices: u32,
    /// Compute-slice placement inside the GPU instance.
    pub placement: Placement,
}

/// A GPU instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInstance {
    /// Its id on the GPU.
    pub id: u32,
    /// The GPU-instance profile ID.
    pub profile_id: u32,
    /// Memory-slice placement.
    pub placement: Placement,
    /// Its compute instances.
    pub compute_instances: Vec<ComputeInstance>,
}

/// A MIG device (what CUDA and VMs see): one compute instance of one GPU instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigDevice {
    /// GPU instance id.
    pub gi_id: u32,
    /// Compute instance id.
    pub ci_id: u32,
    /// `MIG-xxxxxxxx-...`.
    pub uuid: String,
}

/// What hsw needs from a GPU driver for MIG: discovery and GPU/compute-instance life cycle.
///
/// Devices are named by their NVML index. Implementations: [`crate::nvml::NvmlBackend`] (the driver) and
/// [`crate::simulated::SimulatedBackend`] (same rules and errors, state in a file). Calls block; async callers
/// run them on a blocking thread. Every error is a [`GpuError`] whose kind is the NVML code's.
pub trait GpuBackend: Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// The GPUs, by index.
    fn devices(&self) -> Result<Vec<DeviceInfo>>;

    /// The GPU-instance profiles of a device, with their possible placements, whether or not MIG
    /// mode is on (NVML answers either way; `nvidia-smi mig -lgip` shows them with MIG disabled). Empty for a GPU
    /// without MIG.
    fn profiles(&self, device: u32) -> Result<Vec<ProfileInfo>>;

    /// The GPU instances of a device and their compute instances, by id.
    fn gpu_instances(&self, device: u32) -> Result<Vec<GpuInstance>>;

    /// Creates a GPU instance of `profile_id` at memory slice `start`.
    fn create_gpu_instance(&self, device: u32, profile_id: u32, start: u32) -> Result<GpuInstance>;

    /// Creates a compute instance in GPU instance `gi_id`: `compute_slices` of it, or all of it when `None`.
    fn create_compute_instance(
        &self,
        device: u32,
        gi_id: u32,
        compute_slices: Option<u32>,
    ) -> Result<ComputeInstance>;

    /// Destroys a compute instance.
    fn destroy_compute_instance(&self, device: u32, gi_id: u32, ci_id: u32) -> Result<()>;

    /// Destroys a GPU instance (which must have no compute instances left).
    fn destroy_gpu_instance(&self, device: u32, gi_id: u32) -> Result<()>;

    /// The MIG devices (one per compute instance) with their UUIDs.
    fn mig_devices(&self, device: u32) -> Result<Vec<MigDevice>>;

    /// The driver's version and NVML's (`nvidia-smi` shows both), for `hsw-cli check`.
    fn versions(&self) -> Result<DriverVersions>;

    /// Who uses a GPU instance, when the backend knows (the simulated one can be told; NVML does not say).
    fn holder(&self, _device: u32, _gi_id: u32) -> Result<Option<String>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_normalize() {
        assert_eq!(normalize_pci("41:00.0").as_deref(), Some("0000:41:00.0"));
        assert_eq!(
            normalize_pci("00000000:41:00.0").as_deref(),
            Some("0000:41:00.0")
        );
        assert_eq!(
            normalize_pci("0000:AB:1f.7").as_deref(),
            Some("0000:ab:1f.7")
        );
        for bad in [
            "",
            "41:00",
            "0000:41:20.0",
            "0000:41:00.8",
            "x:41:00.0",
            "1:2:3:4.0",
            "10000:41:00.0",
        ] {
            assert_eq!(normalize_pci(bad), None, "{bad}");
        }
    }

    #[test]
    fn mig_mode_refusals_say_the_remedy() {
        let mut d = DeviceInfo {
            index: 2,
            uuid: "GPU-1".into(),
            name: "NVIDIA A100-SXM4-80GB".into(),
            pci_address: "0000:41:00.0".into(),
            pci_device_id: 0x20b2,
            mig: MigMode {
                current: false,
                pending: false,
            },
            memory_mib: 81920,
        };
        let e = d.require_mig().unwrap_err();
        assert_eq!(e.kind, ErrorKind::MigDisabled);
        assert!(e.message.contains("nvidia-smi -i 2 -mig 1"), "{e}");
        d.mig.pending = true;
        let e = d.require_mig().unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResetRequired);
        assert!(e.message.contains("nvidia-smi -i 2 -r"), "{e}");
        d.mig.current = true;
        assert!(d.require_mig().is_ok());
        assert_eq!(d.model().map(|m| m.key), Some("a100-80gb"));
        assert!(d.matches("2") && d.matches("gpu-1") && d.matches("41:00.0") && !d.matches("3"));
    }
}
