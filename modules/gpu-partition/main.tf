locals {
  unit_ids = concat(keys(var.mig_instances), keys(var.whole_gpus))
  assigned = flatten(values(var.assignments))

  # Terraform 1.0 has no cross-variable validation: a bad assignment stops the plan here, with this message.
  assignments_valid = length(setintersection(keys(var.mig_instances), keys(var.whole_gpus))) == 0 && length(setsubtract(local.assigned, local.unit_ids)) == 0 && length(distinct(local.assigned)) == length(local.assigned) ? true : tobool("gpu-partition: unit ids must differ between mig_instances and whole_gpus, and every assigned unit must exist and be assigned once.")

  vgpus = { for k, v in var.mig_instances : k => v if v.vgpu_type != null }
}

resource "hsw_mig_instance" "this" {
  for_each = var.mig_instances

  gpu             = each.value.gpu
  profile         = each.value.profile
  placement_start = each.value.placement_start
}

# MIG-backed vGPUs: NVIDIA's vGPU manager backs each with a free GPU instance of its size, so they come after the
# MIG instances. Without a vgpu_parent, the provider finds the VF the driver offers for the instance at apply time;
# the reference to the instance orders the graph (instance, vGPU, VM; destroy the other way round).
resource "hsw_mdev" "this" {
  for_each = local.vgpus

  parent       = each.value.vgpu_parent
  gpu_instance = each.value.vgpu_parent == null ? hsw_mig_instance.this[each.key].id : null
  type         = each.value.vgpu_type
  persistent   = var.vgpu_persistent

  depends_on = [hsw_mig_instance.this]
}

locals {
  units = merge(
    { for k, v in var.mig_instances : k => {
      id              = k
      kind            = "mig"
      gpu             = v.gpu
      gpu_pci         = hsw_mig_instance.this[k].gpu_pci
      gpu_uuid        = hsw_mig_instance.this[k].gpu_uuid
      profile         = v.profile
      placement_start = hsw_mig_instance.this[k].placement_start
      placement_size  = hsw_mig_instance.this[k].placement_size
      gi_id           = hsw_mig_instance.this[k].gi_id
      ci_id           = hsw_mig_instance.this[k].ci_id
      mig_device_uuid = hsw_mig_instance.this[k].mig_device_uuid
      vgpu_type       = v.vgpu_type
      vgpu_uuid       = v.vgpu_type == null ? null : hsw_mdev.this[k].uuid
    } },
    { for k, v in var.whole_gpus : k => {
      id              = k
      kind            = "whole"
      gpu             = v
      gpu_pci         = v
      gpu_uuid        = null
      profile         = null
      placement_start = null
      placement_size  = null
      gi_id           = null
      ci_id           = null
      mig_device_uuid = null
      vgpu_type       = null
      vgpu_uuid       = null
    } },
  )
}
