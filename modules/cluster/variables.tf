variable "name" {
  description = "The cluster's name: a DNS label of at most 40 characters. VM names are `<name>-<role>-<n>` (`_` in the role written `-`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", var.name))
    error_message = "The name must be 1 to 40 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "create_network" {
  description = "Whether this module creates the cluster's network (with the network module). false: the VMs join the existing libvirt network `network_name`, which needs DHCP."
  type        = bool
  default     = true
}

variable "network_name" {
  description = "The libvirt network name. null: `<name>`. Required when `create_network` is false."
  type        = string
  default     = null
}

variable "subnet" {
  description = "The network's IPv4 subnet in CIDR form, such as `192.168.100.0/24`. Required when `create_network` is true."
  type        = string
  default     = null
}

variable "bridge" {
  description = "The network's host bridge name (at most 15 characters). null: libvirt picks one."
  type        = string
  default     = null
}

variable "gateway" {
  description = "The host's address on the network. null: the subnet's first usable address."
  type        = string
  default     = null
}

variable "network_mode" {
  description = "The network's forwarding mode: `isolated`, `nat`, `route` or `open`."
  type        = string
  default     = "isolated"
}

variable "dns_domain" {
  description = "The VMs' DNS domain, served by the network. null: none (the FQDN outputs are the host names)."
  type        = string
  default     = null
}

variable "mtu" {
  description = "The network's MTU in bytes. null: libvirt's default."
  type        = number
  default     = null
}

variable "dhcp_start" {
  description = "The first dynamic DHCP address of the created network. null: the network module's default (the subnet's last quarter). Keep the VMs' static addresses out of the dynamic range."
  type        = string
  default     = null
}

variable "dhcp_end" {
  description = "The last dynamic DHCP address of the created network. null: the subnet's last usable address."
  type        = string
  default     = null
}

variable "base_image" {
  description = "The qcow2 base image of every VM (absolute path inside the provider's `pool_dir`)."
  type        = string
}

variable "kernel" {
  description = "Direct kernel boot: the kernel (absolute path inside `pool_dir`). null: boot from the image's boot loader."
  type        = string
  default     = null
}

variable "initrd" {
  description = "Direct kernel boot: the initrd (absolute path inside `pool_dir`)."
  type        = string
  default     = null
}

variable "cmdline" {
  description = "Direct kernel boot: the kernel command line."
  type        = string
  default     = null
}

variable "accelerator" {
  description = "`kvm`, `tcg` or `auto` (KVM when it can run guests, else TCG)."
  type        = string
  default     = "auto"
}

variable "cpu_mode" {
  description = "The guest CPU: `host-passthrough`, `host-model` or `default`. null: the provider's default."
  type        = string
  default     = null
}

variable "ssh_authorized_keys" {
  description = "SSH public keys (key text) for the image's default user on every VM."
  type        = list(string)
  default     = []
}

variable "wait_for_ip" {
  description = "Whether creating a VM waits until it has booted and has its address."
  type        = bool
  default     = true
}

variable "wait_for_ip_timeout" {
  description = "Seconds to wait for each VM's address."
  type        = number
  default     = 300
}

variable "autostart" {
  description = "Whether libvirt starts the network and the VMs when libvirtd starts."
  type        = bool
  default     = false
}

variable "roles" {
  description = <<-EOT
    The cluster's roles by name: a lowercase identifier such as `controller` or `gpu_worker`. It becomes each VM's
    `role` in the outputs, and the role's VMs are `<name>-<role>-<n>` with `_` written `-` (`gpu_worker`:
    `<name>-gpu-worker-1`, ...). Every attribute is required (Terraform 1.0 has no optional object attributes):
    `order` (where the role's VMs come in `hosts`: ascending, equal orders by role name), `vm_count` (0 to 4096; 0
    creates none), `vcpu` (1 to 256), `memory_mib` (64 to 4194304), `disk_gib` (root disk in GiB, 1 to 65536;
    null: the base image's size), `ips` (static IPv4 addresses in order, at least `vm_count`), `gpu_pci` and
    `gpu_mdev` (element i lists the PCI addresses / vGPU ids given to VM i: the gpu-partition module's
    `hostdev_pci` / `hostdev_mdev`; `[]`: none).
  EOT
  type = map(object({
    order      = number
    vm_count   = number
    vcpu       = number
    memory_mib = number
    disk_gib   = number
    ips        = list(string)
    gpu_pci    = list(list(string))
    gpu_mdev   = list(list(string))
  }))

  validation {
    condition     = length(var.roles) > 0 && alltrue([for role, r in var.roles : can(regex("^[a-z]([a-z0-9_]{0,14}[a-z0-9])?$", role))])
    error_message = "Give at least one role; every role name must be 1 to 16 lowercase letters, digits and underscores, starting with a letter and not ending with an underscore."
  }

  validation {
    condition     = alltrue([for role, r in var.roles : r.order >= 0 && r.order <= 9999 && floor(r.order) == r.order])
    error_message = "Every role's order must be a whole number from 0 to 9999."
  }

  validation {
    condition     = alltrue([for role, r in var.roles : r.vm_count >= 0 && r.vm_count <= 4096 && floor(r.vm_count) == r.vm_count])
    error_message = "Every role's vm_count must be a whole number from 0 to 4096."
  }
}

variable "machines" {
  description = "Per role: `machine` (`pc` or `q35`), `firmware` (`bios` or `efi`) and `mmio64_gib` (q35's 64-bit MMIO window in GiB; null: the provider's default). Roles not listed get `pc` and `bios`. hsw-cli gives roles with real GPUs q35, efi and a window sized for their GPUs."
  type = map(object({
    machine    = string
    firmware   = string
    mmio64_gib = number
  }))
  default = {}
}
