output "units" {
  description = "Every unit by id: `id`, `kind` (`mig` or `whole`), `gpu`, `gpu_pci`, `gpu_uuid`, `profile`, `placement_start`, `placement_size`, `gi_id`, `ci_id`, `mig_device_uuid`, `vgpu_type`, `vgpu_uuid` (null where not applicable)."
  value       = local.units
}

output "assignments" {
  description = "Per node (VM name): the list of its units, as in `units`."
  value       = { for node, ids in var.assignments : node => [for id in ids : local.units[id]] }
}

output "hostdev_pci" {
  description = "Per node: the PCI addresses to pass through (its whole GPUs); empty lists when `attach_devices` is false."
  value       = { for node, ids in var.assignments : node => var.attach_devices ? [for id in ids : var.whole_gpus[id] if contains(keys(var.whole_gpus), id)] : [] }
}

output "hostdev_mdev" {
  description = "Per node: its MIG instances' vGPUs to attach, by `hsw_mdev` id: the mdev UUID, or the VF's PCI address for a vendor-specific VFIO vGPU (vGPU 17+); empty lists when `attach_devices` is false."
  value       = { for node, ids in var.assignments : node => var.attach_devices ? [for id in ids : hsw_mdev.this[id].id if contains(keys(local.vgpus), id)] : [] }
}

output "unassigned" {
  description = "Unit ids no node got."
  value       = sort(setsubtract(local.unit_ids, local.assigned))
}
