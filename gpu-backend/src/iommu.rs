//! IOMMU groups of PCI devices, read from a rooted sysfs ([`SysfsRoot`]): whether a device can be passed through
//! to a VM (vfio-pci) without taking other devices from the host.
//!
//! VFIO hands a VM a whole IOMMU group: every other device of the group must be bound to vfio-pci or pci-stub, or
//! to no driver, or the group is not viable and QEMU fails when the VM starts (a GPU's own audio function bound to
//! `snd_hda_intel` is the common case). Paths: `<root>/sys/bus/pci/devices/<addr>/iommu_group` (a link whose last
//! component is the group number), `<root>/sys/kernel/iommu_groups/<n>/devices/<addr>`, and each member's `driver`
//! link. Links are read, never followed, so a fixture tree cannot lead out of its root.

use std::path::{Path, PathBuf};

use crate::error::{GpuError, Result};
use crate::mdev::SysfsRoot;

/// Drivers a device may be bound to and still leave its IOMMU group viable for VFIO.
pub const VFIO_VIABLE_DRIVERS: [&str; 2] = ["vfio-pci", "pci-stub"];

/// One device of an IOMMU group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Its PCI address.
    pub address: String,
    /// The driver it is bound to, if any.
    pub driver: Option<String>,
}

fn groups_dir(root: &SysfsRoot) -> PathBuf {
    root.root().join("sys/kernel/iommu_groups")
}

fn link_name(path: &Path) -> Result<Option<String>> {
    match std::fs::read_link(path) {
        Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(GpuError::io("read the link", path, &e)),
    }
}

/// The IOMMU group of the device at `pci` (its number and every member, the device included); `None` when the
/// device has no group (no IOMMU enabled, or no such device).
pub fn group(root: &SysfsRoot, pci: &str) -> Result<Option<(String, Vec<GroupMember>)>> {
    let Some(n) = link_name(&root.pci_devices().join(pci).join("iommu_group"))? else {
        return Ok(None);
    };
    let dir = groups_dir(root).join(&n).join("devices");
    let entries = std::fs::read_dir(&dir).map_err(|e| GpuError::io("list", &dir, &e))?;
    let mut members = Vec::new();
    for e in entries {
        let e = e.map_err(|e| GpuError::io("list", &dir, &e))?;
        let address = e.file_name().to_string_lossy().into_owned();
        let driver = link_name(&root.pci_devices().join(&address).join("driver"))?;
        members.push(GroupMember { address, driver });
    }
    members.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(Some((n, members)))
}

/// Why the device at `pci` cannot be passed through on its own: the other members of its IOMMU group bound to a
/// driver other than vfio-pci or pci-stub, as a sentence with the fix; `None` when nothing stands in the way (a
/// device without a group is left to libvirt, which refuses it when the VM starts).
pub fn passthrough_blocker(root: &SysfsRoot, pci: &str) -> Result<Option<String>> {
    let Some((n, members)) = group(root, pci)? else {
        return Ok(None);
    };
    let others: Vec<String> = members
        .iter()
        .filter(|m| m.address != pci)
        .filter_map(|m| {
            m.driver
                .as_deref()
                .filter(|d| !VFIO_VIABLE_DRIVERS.contains(d))
                .map(|d| format!("{} (bound to {d})", m.address))
        })
        .collect();
    if others.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{pci} shares IOMMU group {n} with {}, which the host still uses: VFIO gives a VM a whole group, so the VM \
         could not start. Pass those devices to the same VM too, or bind them to vfio-pci (`driverctl \
         set-override <address> vfio-pci`), or move the GPU to a slot with a group of its own (ACS).",
        others.join(", ")
    )))
}

/// Fixture trees: PCI devices in IOMMU groups, laid out as the kernel does (relative links).
pub mod fake {
    use std::path::Path;

    /// Adds the device `pci` to IOMMU group `group` under `root`, bound to `driver` (none when `None`).
    pub fn add_pci_device(
        root: &Path,
        pci: &str,
        group: u32,
        driver: Option<&str>,
    ) -> std::io::Result<()> {
        let dev = root.join("sys/bus/pci/devices").join(pci);
        let members = root
            .join("sys/kernel/iommu_groups")
            .join(group.to_string())
            .join("devices");
        std::fs::create_dir_all(&dev)?;
        std::fs::create_dir_all(&members)?;
        let link = |target: String, at: &Path| match std::fs::remove_file(at) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::os::unix::fs::symlink(target, at),
        };
        link(
            format!("../../../../kernel/iommu_groups/{group}"),
            &dev.join("iommu_group"),
        )?;
        link(
            format!("../../../../bus/pci/devices/{pci}"),
            &members.join(pci),
        )?;
        match driver {
            Some(d) => link(
                format!("../../../../bus/pci/drivers/{d}"),
                &dev.join("driver"),
            ),
            None => match std::fs::remove_file(dev.join("driver")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shared_with_a_host_driver_blocks_passthrough() {
        let d = tempfile::tempdir().unwrap();
        let root = SysfsRoot::new(d.path());
        // No group (no IOMMU, or no such device): left to libvirt.
        assert_eq!(passthrough_blocker(&root, "0000:41:00.0").unwrap(), None);
        fake::add_pci_device(d.path(), "0000:41:00.0", 7, Some("nvidia")).unwrap();
        assert_eq!(passthrough_blocker(&root, "0000:41:00.0").unwrap(), None);
        // The GPU's audio function on the host's sound driver.
        fake::add_pci_device(d.path(), "0000:41:00.1", 7, Some("snd_hda_intel")).unwrap();
        fake::add_pci_device(d.path(), "0000:42:00.0", 8, Some("nvme")).unwrap();
        let why = passthrough_blocker(&root, "0000:41:00.0").unwrap().unwrap();
        assert!(
            why.contains("IOMMU group 7 with 0000:41:00.1 (bound to snd_hda_intel)")
                && !why.contains("42:00.0"),
            "{why}"
        );
        let (n, members) = group(&root, "0000:41:00.1").unwrap().unwrap();
        assert_eq!((n.as_str(), members.len()), ("7", 2));
        // Bound to vfio-pci, or to no driver: viable.
        fake::add_pci_device(d.path(), "0000:41:00.1", 7, Some("vfio-pci")).unwrap();
        assert_eq!(passthrough_blocker(&root, "0000:41:00.0").unwrap(), None);
        fake::add_pci_device(d.path(), "0000:41:00.1", 7, None).unwrap();
        assert_eq!(passthrough_blocker(&root, "0000:41:00.0").unwrap(), None);
    }
}
