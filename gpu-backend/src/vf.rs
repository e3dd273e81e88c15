//! The vGPU parent of a MIG slice: the SR-IOV virtual function (VF) of its GPU that the NVIDIA driver offers for a
//! MIG-backed vGPU, found from sysfs under a [`SysfsRoot`] at apply time.
//!
//! A GPU's VFs are its `virtfn<N>` links (`<root>/sys/bus/pci/devices/<gpu>/virtfn0 -> ../0000:41:00.4`), there
//! once SR-IOV is enabled (`/usr/lib/nvidia/sriov-manage -e <gpu>`). The parent is the first VF, in `virtfn`
//! order, that carries no vGPU yet and offers the type: on classic mdev (A100 era) with `available_instances`
//! above 0 (the vGPU manager backs it with a free GPU instance of the type's size); on vendor-specific VFIO
//! (vGPU 17+), a VF whose `nvidia/gpu_instance_id` names the GPU instance is preferred. Which VF backs which GPU
//! instance is the driver's business; this order is UNVERIFIED on hardware.

use std::path::Path;

use crate::error::{ErrorKind, GpuError, Result};
use crate::mdev::{same_type, MdevBackend, SysfsRoot, VgpuFlavor};
use crate::mig::normalize_pci;

/// The VFs of the GPU at `gpu_pci`, in `virtfn` order (empty when SR-IOV is off or the GPU has none).
pub fn virtual_functions(root: &SysfsRoot, gpu_pci: &str) -> Result<Vec<String>> {
    let dir = root.pci_devices().join(gpu_pci);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(GpuError::io("list", &dir, &e)),
    };
    let mut vfs: Vec<(u32, String)> = Vec::new();
    for e in entries {
        let e = e.map_err(|e| GpuError::io("list", &dir, &e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("virtfn").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let target = std::fs::read_link(e.path())
            .map_err(|err| GpuError::io("read the link", &e.path(), &err))?;
        if let Some(vf) = target
            .file_name()
            .and_then(|f| normalize_pci(&f.to_string_lossy()))
        {
            vfs.push((n, vf));
        }
    }
    vfs.sort();
    Ok(vfs.into_iter().map(|(_, vf)| vf).collect())
}

fn gpu_instance_of(root: &SysfsRoot, vf: &str) -> Option<u32> {
    let p = root.pci_devices().join(vf).join("nvidia/gpu_instance_id");
    std::fs::read_to_string(Path::new(&p))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The VF of the GPU at `gpu_pci` that names GPU instance `gi_id` in its `nvidia/gpu_instance_id` (vendor VFIO),
/// in `virtfn` order; `None` when none does (classic mdev says no such thing: there the parent is known only once
/// apply has chosen it).
pub fn vf_of_gpu_instance(root: &SysfsRoot, gpu_pci: &str, gi_id: u32) -> Result<Option<String>> {
    Ok(virtual_functions(root, gpu_pci)?
        .into_iter()
        .find(|vf| gpu_instance_of(root, vf) == Some(gi_id)))
}

/// The VF of the GPU at `gpu_pci` to create a `type_name` vGPU on for GPU instance `gi_id` (see the module
/// documentation). The caller holds the GPU's lock across this choice and the create, so two creates never pick
/// the same VF.
pub fn parent_for(
    mdev: &dyn MdevBackend,
    root: &SysfsRoot,
    gpu_pci: &str,
    gi_id: u32,
    type_name: &str,
) -> Result<String> {
    let vfs = virtual_functions(root, gpu_pci)?;
    if vfs.is_empty() {
        return Err(GpuError::new(
            ErrorKind::NotFound,
            format!(
                "GPU {gpu_pci} has no SR-IOV virtual functions ({} has no virtfn links), so no MIG-backed vGPU can be \
                 made on it: enable them with `/usr/lib/nvidia/sriov-manage -e {gpu_pci}` (the NVIDIA vGPU host \
                 driver must be loaded).",
                root.pci_devices().join(gpu_pci).display()
            ),
        ));
    }
    let busy: Vec<String> = mdev.vgpus()?.into_iter().map(|v| v.parent).collect();
    let types = mdev.types()?;
    let offers = |vf: &String| {
        types.iter().any(|t| {
            &t.parent == vf
                && same_type(&t.name, type_name)
                && (t.flavor == VgpuFlavor::VendorVfio || t.available_instances != Some(0))
        })
    };
    let free: Vec<&String> = vfs
        .iter()
        .filter(|vf| !busy.contains(vf) && offers(vf))
        .collect();
    free.iter()
        .find(|vf| gpu_instance_of(root, vf) == Some(gi_id))
        .or_else(|| free.first())
        .map(|vf| (*vf).clone())
        .ok_or_else(|| {
            GpuError::new(
                ErrorKind::InsufficientResources,
                format!(
                    "No virtual function of GPU {gpu_pci} is free and offers the vGPU type {type_name:?} for GPU \
                     instance {gi_id}: its VFs are {} ({} carry a vGPU). Check the type the driver offers \
                     (`cat /sys/bus/pci/devices/<VF>/mdev_supported_types/*/name` or `nvidia/creatable_vgpu_types`), \
                     and that a GPU instance of that size is free.",
                    vfs.join(", "),
                    vfs.iter().filter(|vf| busy.contains(vf)).count()
                ),
            )
        })
}

/// Fixture trees: a GPU's VFs as `virtfn` links.
pub mod fake {
    use std::path::Path;

    /// Links `vfs` (PCI addresses, in order) as the VFs of the GPU at `gpu_pci` under `root`.
    pub fn add_vfs(root: &Path, gpu_pci: &str, vfs: &[&str]) -> std::io::Result<()> {
        let dir = root.join("sys/bus/pci/devices").join(gpu_pci);
        std::fs::create_dir_all(&dir)?;
        for (i, vf) in vfs.iter().enumerate() {
            std::fs::create_dir_all(root.join("sys/bus/pci/devices").join(vf))?;
            std::os::unix::fs::symlink(format!("../{vf}"), dir.join(format!("virtfn{i}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdev::fake::FakeTree;
    use crate::mdev::SysfsMdev;

    #[test]
    fn the_first_free_vf_offering_the_type_is_the_parent() {
        let d = tempfile::tempdir().unwrap();
        let t = FakeTree::new(d.path()).unwrap();
        let root = SysfsRoot::new(d.path());
        let m = SysfsMdev::new(root.clone());
        let e = parent_for(&m, &root, "0000:41:00.0", 1, "A100DX-1-10C").unwrap_err();
        assert!(e.message.contains("sriov-manage -e 0000:41:00.0"), "{e}");
        // Classic mdev on three VFs; the first offers another type, the second is full after one vGPU.
        fake::add_vfs(
            d.path(),
            "0000:41:00.0",
            &["0000:41:00.4", "0000:41:00.5", "0000:41:00.6"],
        )
        .unwrap();
        t.add_mdev_parent("0000:41:00.4", &[("nvidia-700", "GRID A100DX-3-40C", 1)])
            .unwrap();
        t.add_mdev_parent("0000:41:00.5", &[("nvidia-699", "GRID A100DX-1-10C", 1)])
            .unwrap();
        t.add_mdev_parent("0000:41:00.6", &[("nvidia-699", "GRID A100DX-1-10C", 1)])
            .unwrap();
        let p = parent_for(&m, &root, "0000:41:00.0", 1, "A100DX-1-10C").unwrap();
        assert_eq!(p, "0000:41:00.5", "matched without the GRID prefix");
        m.create(&p, "A100DX-1-10C", None, false).unwrap();
        assert_eq!(
            parent_for(&m, &root, "0000:41:00.0", 2, "a100dx-1-10c").unwrap(),
            "0000:41:00.6"
        );
        m.create("0000:41:00.6", "GRID A100DX-1-10C", None, false)
            .unwrap();
        let e = parent_for(&m, &root, "0000:41:00.0", 3, "A100DX-1-10C").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources);
        assert!(e.message.contains("2 carry a vGPU"), "{e}");
    }

    #[test]
    fn vendor_vfio_prefers_the_vf_of_the_gpu_instance() {
        let d = tempfile::tempdir().unwrap();
        let t = FakeTree::new(d.path()).unwrap();
        let root = SysfsRoot::new(d.path());
        let m = SysfsMdev::new(root.clone());
        fake::add_vfs(d.path(), "0000:c1:00.0", &["0000:c1:00.4", "0000:c1:00.5"]).unwrap();
        for vf in ["0000:c1:00.4", "0000:c1:00.5"] {
            t.add_vendor_vf(vf, &[(1414, "NVIDIA H200X-1-18C")])
                .unwrap();
        }
        std::fs::write(
            d.path()
                .join("sys/bus/pci/devices/0000:c1:00.5/nvidia/gpu_instance_id"),
            "9\n",
        )
        .unwrap();
        assert_eq!(
            parent_for(&m, &root, "0000:c1:00.0", 9, "H200X-1-18C").unwrap(),
            "0000:c1:00.5"
        );
        assert_eq!(
            parent_for(&m, &root, "0000:c1:00.0", 3, "H200X-1-18C").unwrap(),
            "0000:c1:00.4"
        );
    }
}
