//! PCI passthrough's precondition, checked at plan and again at apply: the IOMMU group of every `hostdev.pci` holds
//! no other device the host still drives (read from the provider's `sysfs_root` through
//! [`hsw_gpu_backend::iommu`]).

use std::path::Path;

use hsw_gpu_backend::iommu::passthrough_blocker;
use hsw_gpu_backend::mdev::SysfsRoot;

use crate::framework::{Diagnostic, Diagnostics, Value};
use crate::hsw::validate;
use crate::hsw::values::items;

/// A diagnostic at each `hostdev[i].pci` whose IOMMU group is not the device's alone (nothing when the provider is
/// not configured yet, `sysfs_root` being unknown).
pub(super) fn check(v: &Value, sysfs_root: Option<&Path>) -> Diagnostics {
    let mut d = Diagnostics::new();
    let Some(root) = sysfs_root else {
        return d;
    };
    let root = SysfsRoot::new(root);
    for (at, h) in items(v, "hostdev") {
        let Some((dom, bus, slot, func)) = h
            .get("pci")
            .as_str()
            .and_then(|p| validate::pci_address(p).ok())
        else {
            continue;
        };
        let pci = format!("{dom:04x}:{bus:02x}:{slot:02x}.{func:x}");
        let found = match passthrough_blocker(&root, &pci) {
            Ok(None) => continue,
            Ok(Some(why)) => Diagnostic::error("IOMMU group shared with the host", why),
            Err(e) => Diagnostic::error("Cannot read the IOMMU group", e.message),
        };
        d.push(found.at(at.then_attr("pci")));
    }
    d
}
