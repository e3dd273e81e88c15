//! The discovery inventory: what `hsw-cli gpu discover` prints and the `hsw_gpus` data source returns.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mdev::{MdevBackend, Vgpu, VgpuType};
use crate::mig::{GpuBackend, Placement, ProfileInfo};

/// Everything discovery found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The backend that answered: `nvml` or `simulated`.
    pub backend: String,
    /// Why `auto` chose it, when it did.
    pub backend_reason: Option<String>,
    /// The GPUs.
    pub devices: Vec<DeviceReport>,
    /// vGPU types on offer (sysfs).
    pub vgpu_types: Vec<VgpuType>,
    /// vGPUs that exist (sysfs).
    pub vgpus: Vec<Vgpu>,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// NVML index.
    pub index: u32,
    /// GPU UUID.
    pub uuid: String,
    /// Name as NVML reports it.
    pub name: String,
    /// PCI address.
    pub pci_address: String,
    /// PCI device id, `0x20b2`.
    pub pci_device_id: String,
    /// The catalog's model key (`a100-80gb`), when catalogued.
    pub model: Option<String>,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// MIG mode now.
    pub mig_current: bool,
    /// MIG mode after the next reset.
    pub mig_pending: bool,
    /// GPU-instance profiles (empty when MIG is off).
    pub profiles: Vec<ProfileInfo>,
    /// GPU instances that exist.
    pub gpu_instances: Vec<InstanceReport>,
}

/// One GPU instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// GPU instance id.
    pub gi_id: u32,
    /// Profile ID.
    pub profile_id: u32,
    /// Profile name.
    pub profile: String,
    /// Memory-slice placement.
    pub placement: Placement,
    /// Compute instances.
    pub compute_instances: Vec<ComputeReport>,
}

/// One compute instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeReport {
    /// Compute instance id.
    pub ci_id: u32,
    /// Compute slices.
    pub compute_slices: u32,
    /// MIG device UUID, when known.
    pub mig_device_uuid: Option<String>,
}

/// Discovers GPUs (and vGPUs, when `mdev` is given). Errors reading one device's MIG state do not hide the
/// device: they leave its profiles and instances empty.
pub fn discover(
    backend: &dyn GpuBackend,
    reason: Option<String>,
    mdev: Option<&dyn MdevBackend>,
) -> Result<Inventory> {
    let mut devices = Vec::new();
    for d in backend.devices()? {
        // Listed with MIG mode off too (NVML answers); an error there does not hide the device.
        let profiles = match backend.profiles(d.index) {
            Ok(p) => p,
            Err(_) if !d.mig.current => Vec::new(),
            Err(e) => return Err(e),
        };
        let (gis, migs) = if d.mig.current {
            (
                backend.gpu_instances(d.index)?,
                backend.mig_devices(d.index)?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let gpu_instances = gis
            .into_iter()
            .map(|g| InstanceReport {
                gi_id: g.id,
                profile_id: g.profile_id,
                profile: profiles
                    .iter()
                    .find(|p| p.id == g.profile_id)
                    .map_or_else(|| g.profile_id.to_string(), |p| p.name.clone()),
                placement: g.placement,
                compute_instances: g
                    .compute_instances
                    .iter()
                    .map(|c| ComputeReport {
                        ci_id: c.id,
                        compute_slices: c.compute_slices,
                        mig_device_uuid: migs
                            .iter()
                            .find(|m| m.gi_id == g.id && m.ci_id == c.id)
                            .map(|m| m.uuid.clone()),
                    })
                    .collect(),
            })
            .collect();
        devices.push(DeviceReport {
            index: d.index,
            uuid: d.uuid.clone(),
            name: d.name.clone(),
            pci_address: d.pci_address.clone(),
            pci_device_id: format!("0x{:04x}", d.pci_device_id),
            model: d.model().map(|m| m.key.to_owned()),
            memory_mib: d.memory_mib,
            mig_current: d.mig.current,
            mig_pending: d.mig.pending,
            profiles,
            gpu_instances,
        });
    }
    let (vgpu_types, vgpus) = match mdev {
        Some(m) => (m.types()?, m.vgpus()?),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Inventory {
        backend: backend.kind().as_str().to_owned(),
        backend_reason: reason,
        devices,
        vgpu_types,
        vgpus,
    })
}

/// The inventory as text, for people.
pub fn render_text(inv: &Inventory) -> String {
    let mut s = format!("GPU backend: {}", inv.backend);
    if let Some(r) = &inv.backend_reason {
        s.push_str(&format!(" ({r})"));
    }
    s.push('\n');
    if inv.devices.is_empty() {
        s.push_str("no GPUs\n");
    }
    for d in &inv.devices {
        s.push_str(&format!(
            "GPU {} {} {} [{}] model {} memory {} MiB, MIG {}{}\n",
            d.index,
            d.pci_address,
            d.name,
            d.uuid,
            d.model.as_deref().unwrap_or("unknown"),
            d.memory_mib,
            if d.mig_current { "enabled" } else { "disabled" },
            if d.mig_current == d.mig_pending {
                ""
            } else {
                " (change pending a reset)"
            }
        ));
        for p in &d.profiles {
            s.push_str(&format!(
                "  profile {:<12} id {:>2}  {} compute slices, max {}, placements {}\n",
                p.name,
                p.id,
                p.compute_slices,
                p.max_count,
                p.placements
                    .iter()
                    .map(|x| format!("{}:{}", x.start, x.size))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        for g in &d.gpu_instances {
            s.push_str(&format!(
                "  instance gi {} {} slices {}..{}",
                g.gi_id,
                g.profile,
                g.placement.start,
                g.placement.start + g.placement.size
            ));
            for c in &g.compute_instances {
                s.push_str(&format!(
                    " ci {} ({}c) {}",
                    c.ci_id,
                    c.compute_slices,
                    c.mig_device_uuid.as_deref().unwrap_or("-")
                ));
            }
            s.push('\n');
        }
    }
    for t in &inv.vgpu_types {
        s.push_str(&format!(
            "vGPU type {:?} on {} ({}, {}){}\n",
            t.name,
            t.parent,
            t.id,
            t.flavor.as_str(),
            t.available_instances
                .map(|n| format!(", {n} available"))
                .unwrap_or_default()
        ));
    }
    for v in &inv.vgpus {
        s.push_str(&format!(
            "vGPU {} on {} type {}{}\n",
            v.id(),
            v.parent,
            v.type_name.as_deref().unwrap_or(&v.type_id),
            if v.persistent { " (persistent)" } else { "" }
        ));
    }
    s
}
