//! The facts `hsw-cli check` judges about real GPUs ([`hsw_core::host::check::GpuFacts`]), gathered read-only
//! through a [`GpuBackend`] (driver and NVML versions, each GPU's MIG mode), the vGPU types the GPU and its VFs
//! offer ([`MdevBackend::types`] over classic mdev and vendor VFIO) and the IOMMU group of each passthrough GPU
//! ([`iommu::passthrough_blocker`]). The judging is hsw-core's (`host/check/gpu_vms.rs`); nothing here changes
//! MIG mode, resets a GPU or writes to sysfs.

use std::path::Path;

use hsw_core::config::model::{ClusterConfig, GpuBackend as BackendSetting};
use hsw_core::host::check::{
    planned, planned_gpus, DeviceFacts, DriverAnswer, DriverFacts, GpuFacts, OfferedType,
    PassthroughFacts,
};
use hsw_core::layout::UnitKind;

use crate::iommu;
use crate::mdev::{MdevBackend, SysfsMdev, SysfsRoot};
use crate::mig::GpuBackend;
use crate::nvml::NvmlBackend;
use crate::vf::virtual_functions;

/// The driver `check` asks for `config` on the host at `root`, or the answer that stands for it: not asked when
/// the GPUs are simulated or `root` is not `/` (NVML answers for this machine, not for a fixture tree);
/// unavailable when NVML does not open.
pub fn open_driver(
    config: &ClusterConfig,
    root: &SysfsRoot,
) -> Result<Box<dyn GpuBackend>, DriverAnswer> {
    if config.gpu_backend() == BackendSetting::Simulated {
        return Err(DriverAnswer::NotAsked(
            "the GPUs are simulated (host.gpu_backend: simulated)".into(),
        ));
    }
    if root.root() != Path::new("/") {
        return Err(DriverAnswer::NotAsked(format!(
            "the host root is {}, and NVML answers for this machine, not for that tree",
            root.root().display()
        )));
    }
    match NvmlBackend::open() {
        Ok(b) => Ok(Box::new(b)),
        Err(e) => Err(DriverAnswer::Unavailable(e.message)),
    }
}

/// Gathers the facts for `config`: from `driver` (or the answer standing for it, see [`open_driver`]), and the
/// IOMMU groups of the planned passthrough GPUs under `root`.
pub fn gather(
    config: &ClusterConfig,
    root: &SysfsRoot,
    driver: Result<&dyn GpuBackend, &DriverAnswer>,
) -> GpuFacts {
    let driver = match driver {
        Ok(b) => driver_facts(b, &SysfsMdev::new(root.clone()), root),
        Err(answer) => answer.clone(),
    };
    let whole = planned(config)
        .map(|l| planned_gpus(&l, UnitKind::Whole))
        .unwrap_or_default();
    GpuFacts {
        driver,
        passthrough: Some(passthrough_facts(root, &whole)),
    }
}

/// What the driver says: versions, and each GPU's MIG mode, VFs and the vGPU types it and its VFs offer.
pub fn driver_facts(
    backend: &dyn GpuBackend,
    mdev: &dyn MdevBackend,
    root: &SysfsRoot,
) -> DriverAnswer {
    let devices = match backend.devices() {
        Ok(d) => d,
        Err(e) => return DriverAnswer::Unavailable(e.message),
    };
    let versions = backend.versions().map_err(|e| e.message);
    let types = mdev.types().map_err(|e| e.message);
    let devices = devices
        .into_iter()
        .map(|d| {
            let vfs = virtual_functions(root, &d.pci_address);
            let vgpu_types = match (&types, &vfs) {
                (Err(e), _) => Err(e.clone()),
                (_, Err(e)) => Err(e.message.clone()),
                (Ok(types), Ok(vfs)) => Ok(types
                    .iter()
                    .filter(|t| t.parent == d.pci_address || vfs.contains(&t.parent))
                    .map(|t| OfferedType {
                        parent: t.parent.clone(),
                        name: t.name.clone(),
                        flavor: t.flavor.as_str().to_owned(),
                    })
                    .collect()),
            };
            DeviceFacts {
                index: d.index,
                name: d.name.clone(),
                pci_address: d.pci_address.clone(),
                mig_current: d.mig.current,
                mig_pending: d.mig.pending,
                mig_refusal: d.require_mig().err().map(|e| e.message),
                virtual_functions: vfs.unwrap_or_default(),
                vgpu_types,
            }
        })
        .collect();
    DriverAnswer::Answered(DriverFacts {
        backend: backend.kind().as_str().to_owned(),
        driver_version: versions
            .as_ref()
            .map(|v| v.driver.clone())
            .map_err(Clone::clone),
        nvml_version: versions.map(|v| v.nvml),
        devices,
    })
}

/// The IOMMU group, driver and passthrough blocker of each GPU at `pcis`.
pub fn passthrough_facts(root: &SysfsRoot, pcis: &[String]) -> Vec<PassthroughFacts> {
    pcis.iter()
        .map(|pci| {
            let (group, driver) = match iommu::group(root, pci) {
                Ok(Some((n, members))) => (
                    Some(n),
                    members
                        .into_iter()
                        .find(|m| &m.address == pci)
                        .and_then(|m| m.driver),
                ),
                _ => (None, None),
            };
            PassthroughFacts {
                pci_address: pci.clone(),
                group,
                driver,
                blocker: iommu::passthrough_blocker(root, pci).map_err(|e| e.message),
            }
        })
        .collect()
}
