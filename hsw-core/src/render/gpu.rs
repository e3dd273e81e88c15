//! The GPU part of the root module: the `gpu_partition` module call (every planned unit, its vGPU type where it
//! reaches its VM as a MIG-backed vGPU, the assignment of units to VMs), and the machine and firmware of the roles
//! whose VMs get real GPUs.
//!
//! How a unit reaches its VM is [`Layout::targets`]' answer: a MIG slice through an `hsw_mdev` of its vGPU type,
//! whose parent (the VF the driver offers for the slice) the provider finds at apply time from the
//! `hsw_mig_instance` it references; a whole GPU as a PCI host device. Terraform's graph follows the references:
//! MIG instance, vGPU, VM; destroy goes the other way. With the simulated backend no vGPU is created and nothing
//! reaches a domain (the simulation has no devices); with `auto`, only when the backend that answers is NVML.

use crate::config::model::ClusterConfig;
use crate::gpu::catalog;
use crate::layout::{Attach, Layout, UnitKind};
use crate::render::hcl::{inline, Expr, Item};

use super::terraform::Options;

/// The `node_gpu_units` local: each node's units as `hsw-cli inventory` reads them.
pub const NODE_GPU_UNITS: &str = r#"{ for node, units in module.gpu_partition.assignments : node => [
    for u in units : merge(u, {
      device      = local.gpu_unit_devices[u.id]
      mdev_uuid   = u.vgpu_uuid
      pci_address = u.kind == "whole" ? u.gpu_pci : null
    })
  ] }"#;

/// With `gpu_backend = "auto"`, whether the backend that answers is NVML (the data source the root declares).
const NVML_ANSWERS: &str = "data.hsw_gpus.this.backend == \"nvml\"";

/// The 64-bit MMIO window of a VM with only vGPUs (their BARs are small), in GiB: the provider's default.
const VGPU_MMIO64_GIB: u64 = 64;

/// The BAR1 a whole GPU of an unknown model is assumed to have, in GiB (an 80 GB A100 or H100 has 128).
const UNKNOWN_BAR1_GIB: u64 = 128;

/// `value` when real devices are attached: as is on NVML, behind [`NVML_ANSWERS`] on `auto`.
fn when_real(backend: &str, value: Expr, otherwise: Expr) -> Expr {
    match backend {
        "nvml" => value,
        "simulated" => otherwise,
        _ => Expr::raw(format!(
            "{NVML_ANSWERS} ? {} : {}",
            inline(&value),
            inline(&otherwise)
        )),
    }
}

/// The `gpu_partition` module call.
pub fn partition(options: &Options, backend: &str, layout: &Layout) -> Item {
    let (units, nodes) = (&layout.gpu_units, &layout.vms);
    let vgpu_type = |id: &str| {
        layout
            .target(id)
            .filter(|t| t.vm.is_some() && t.attach == Attach::Vgpu)
            .and_then(|t| t.vgpu_type.clone())
            .map_or_else(
                || Expr::raw("null"),
                |t| when_real(backend, Expr::str(t), Expr::raw("null")),
            )
    };
    let mig: Vec<(String, Expr)> = units
        .iter()
        .filter(|u| u.kind == UnitKind::Mig)
        .map(|u| {
            (
                u.id(),
                Expr::Inline(vec![
                    ("gpu".into(), Expr::opt_str(u.gpu_pci.as_deref())),
                    ("profile".into(), Expr::opt_str(u.profile.as_deref())),
                    (
                        "placement_start".into(),
                        u.placement_start
                            .map_or_else(|| Expr::raw("null"), Expr::num),
                    ),
                    ("vgpu_type".into(), vgpu_type(&u.id())),
                    ("vgpu_parent".into(), Expr::raw("null")),
                ]),
            )
        })
        .collect();
    let whole: Vec<(String, Expr)> = units
        .iter()
        .filter(|u| u.kind == UnitKind::Whole)
        .map(|u| (u.id(), Expr::opt_str(u.gpu_pci.as_deref())))
        .collect();
    let assignments: Vec<(String, Expr)> = nodes
        .iter()
        .filter(|n| !n.gpu_units.is_empty())
        .map(|n| {
            (
                n.name.clone(),
                Expr::List(n.gpu_units.iter().map(|u| Expr::str(u.id())).collect()),
            )
        })
        .collect();
    let mut body = vec![
        Item::Attr("source".into(), options.source("gpu-partition")),
        Item::Blank,
    ];
    match backend {
        "simulated" => body.push(Item::Comment(
            "The simulated backend: no vGPU is created and nothing reaches a domain (the simulation has no\n\
             devices); the MIG instances are simulated and the assignment is still reported."
                .into(),
        )),
        _ => body.push(Item::Comment(
            "MIG slices reach their VMs as MIG-backed vGPUs (vgpu_type; the parent VF is found at apply time),\n\
             whole GPUs by PCI passthrough."
                .into(),
        )),
    }
    body.push(Item::Attr(
        "attach_devices".into(),
        when_real(backend, Expr::bool(true), Expr::bool(false)),
    ));
    body.push(Item::Attr("mig_instances".into(), Expr::Object(mig)));
    body.push(Item::Attr("whole_gpus".into(), Expr::Object(whole)));
    body.push(Item::Comment(
        "Each cluster's units (MIG instances, then whole GPUs) dealt to its GPU-enabled nodes in order.".into(),
    ));
    body.push(Item::Attr("assignments".into(), Expr::Object(assignments)));
    Item::Block("module \"gpu_partition\"".into(), body)
}

/// The 64-bit MMIO window for `whole` GPUs of these models (`None`: unknown), in GiB: twice the sum of their
/// BAR1s, rounded up to a power of two, at least [`VGPU_MMIO64_GIB`]. A GPU's BAR1 is taken as its memory
/// rounded up to a power of two (40 GB: 64 GiB, 80 GB: 128 GiB), the rest of its BARs fitting in the margin.
pub fn mmio64_gib(whole: &[Option<&catalog::GpuModel>]) -> u64 {
    let bar1: u64 = whole
        .iter()
        .map(|m| {
            m.map_or(UNKNOWN_BAR1_GIB, |m| {
                u64::from(m.memory_gb).next_power_of_two()
            })
        })
        .sum();
    (2 * bar1).next_power_of_two().max(VGPU_MMIO64_GIB)
}

/// The `machines` of a cluster module call: q35, UEFI and the MMIO window for each role with GPU units, when the
/// backend attaches real devices (behind the NVML test on `auto`); `None` when no role needs one.
pub fn machines(config: &ClusterConfig, layout: &Layout, cluster: &str) -> Option<Expr> {
    let backend = config.gpu_backend().as_str();
    if backend == "simulated" {
        return None;
    }
    let model_of = |device: &str| {
        let devices = &config.global.gpu_allocation.as_ref()?.devices;
        catalog::lookup_model(&devices.iter().find(|d| d.id == device)?.model)
    };
    // Each role with GPU units, in node order, with the largest window one of its VMs needs.
    let mut roles: Vec<(&str, u64)> = Vec::new();
    for vm in layout
        .vms
        .iter()
        .filter(|v| v.cluster == cluster && !v.gpu_units.is_empty())
    {
        let whole: Vec<_> = vm
            .gpu_units
            .iter()
            .filter(|u| u.kind == UnitKind::Whole)
            .map(|u| model_of(&u.device))
            .collect();
        let window = if whole.is_empty() {
            VGPU_MMIO64_GIB
        } else {
            mmio64_gib(&whole)
        };
        match roles.iter_mut().find(|(r, _)| *r == vm.role.as_str()) {
            Some((_, w)) => *w = (*w).max(window),
            None => roles.push((vm.role.as_str(), window)),
        }
    }
    if roles.is_empty() {
        return None;
    }
    let plain = Expr::Inline(vec![
        ("machine".into(), Expr::str("pc")),
        ("firmware".into(), Expr::str("bios")),
        ("mmio64_gib".into(), Expr::raw("null")),
    ]);
    Some(Expr::Object(
        roles
            .into_iter()
            .map(|(role, window)| {
                let gpu = Expr::Inline(vec![
                    ("machine".into(), Expr::str("q35")),
                    ("firmware".into(), Expr::str("efi")),
                    ("mmio64_gib".into(), Expr::num(window)),
                ]);
                (role.to_owned(), when_real(backend, gpu, plain.clone()))
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_twice_the_bar1s() {
        let a100_80 = catalog::model_by_key("a100-80gb");
        let a100_40 = catalog::model_by_key("a100-40gb");
        assert_eq!(mmio64_gib(&[]), 64);
        assert_eq!(mmio64_gib(&[a100_40]), 128);
        assert_eq!(mmio64_gib(&[a100_80]), 256);
        assert_eq!(mmio64_gib(&[a100_80, a100_80]), 512);
        assert_eq!(mmio64_gib(&[a100_80, None]), 512);
        assert_eq!(mmio64_gib(&[catalog::model_by_key("h200-141gb")]), 512);
    }
}
