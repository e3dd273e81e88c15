variable "mig_instances" {
  description = <<-EOT
    MIG instances to create, by unit id (any stable string; it becomes the resource key):
    `gpu` (PCI address, NVML index or UUID of the GPU), `profile` (such as `1g.10gb`), `placement_start` (the first
    memory slice, as `hsw-cli gpu plan` chose it; null: the first free one at apply time), `vgpu_type` (a MIG-backed
    vGPU type such as `A100D-1-10C`; null: no vGPU), `vgpu_parent` (the SR-IOV virtual function to create it on;
    null: the one the driver offers for the instance, found at apply time). A MIG instance reaches a VM only
    through a vGPU; without one it serves containers on the host.
  EOT
  type = map(object({
    gpu             = string
    profile         = string
    placement_start = number
    vgpu_type       = string
    vgpu_parent     = string
  }))
  default = {}

  validation {
    condition     = alltrue([for k, v in var.mig_instances : can(regex("^[0-9]+g[.][0-9]+gb(\\+[a-z0-9.]+)?$|^[0-9]+$", v.profile))])
    error_message = "Every MIG profile must be a name such as 1g.10gb (or 1g.10gb+me) or a numeric profile ID."
  }

  validation {
    condition     = alltrue([for k, v in var.mig_instances : v.placement_start == null ? true : v.placement_start >= 0 && floor(v.placement_start) == v.placement_start])
    error_message = "Every placement start must be a whole number of at least 0, or null."
  }

  validation {
    condition     = alltrue([for k, v in var.mig_instances : v.vgpu_parent == null || v.vgpu_type != null])
    error_message = "A vgpu_parent needs a vgpu_type (the vGPU to create on it)."
  }

  validation {
    condition     = alltrue([for k, v in var.mig_instances : v.vgpu_parent == null || can(regex("^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F][.][0-7]$", v.vgpu_parent))])
    error_message = "Every vgpu_parent must be a PCI address in the form DDDD:BB:DD.F."
  }

  validation {
    condition     = alltrue([for k, v in var.mig_instances : length(k) > 0 && length(v.gpu) > 0])
    error_message = "Every unit id and every gpu must be non-empty."
  }
}

variable "whole_gpus" {
  description = "GPUs passed through whole, by unit id: the GPU's PCI address (`0000:ca:00.0`)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.whole_gpus : can(regex("^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F][.][0-7]$", v))])
    error_message = "Every whole GPU must be a PCI address in the form DDDD:BB:DD.F, such as 0000:ca:00.0."
  }
}

variable "assignments" {
  description = "Which units each node (VM name) gets: node name => list of unit ids from `mig_instances` and `whole_gpus`. A unit goes to at most one node; units in no list are created and stay unassigned."
  type        = map(list(string))
  default     = {}
}

variable "attach_devices" {
  description = "Whether the `hostdev_pci` and `hostdev_mdev` outputs name devices to pass to VMs. false (for the simulated GPU backend, where nothing real exists): they are empty, the assignment is still reported."
  type        = bool
  default     = true
}

variable "vgpu_persistent" {
  description = "Whether mdevctl defines the vGPUs to come back at boot."
  type        = bool
  default     = false
}
