variable "name" {
  description = "The cluster's name: a DNS label of at most 40 characters. VM names are `<name>-<role>-<n>`."
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
  description = "The libvirt network name. null: `<name>-hpc`. Required when `create_network` is false."
  type        = string
  default     = null

  validation {
    condition     = var.network_name == null || can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", var.network_name))
    error_message = "The network name must be 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit."
  }
}

variable "subnet" {
  description = "The network's IPv4 subnet in CIDR form, such as `192.168.100.0/24`. Required when `create_network` is true."
  type        = string
  default     = null

  validation {
    condition     = var.subnet == null || can(cidrhost(var.subnet, 0))
    error_message = "The subnet must be an IPv4 network in CIDR form, such as 192.168.100.0/24."
  }
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

  validation {
    condition     = contains(["isolated", "nat", "route", "open"], var.network_mode)
    error_message = "The network mode must be one of isolated, nat, route and open."
  }
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

  validation {
    condition     = contains(["auto", "kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be auto, kvm or tcg."
  }
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

variable "controller_vcpu" {
  description = "Virtual CPUs per controller (1 to 256)."
  type        = number
  default     = 2

  validation {
    condition     = var.controller_vcpu >= 1 && var.controller_vcpu <= 256 && floor(var.controller_vcpu) == var.controller_vcpu
    error_message = "The controller vCPU count must be a whole number from 1 to 256."
  }
}

variable "controller_memory_mib" {
  description = "Memory per controller in MiB (64 to 4194304)."
  type        = number
  default     = 2048

  validation {
    condition     = var.controller_memory_mib >= 64 && var.controller_memory_mib <= 4194304 && floor(var.controller_memory_mib) == var.controller_memory_mib
    error_message = "The controller memory must be a whole number of MiB from 64 to 4194304."
  }
}

variable "controller_disk_gib" {
  description = "Root disk per controller in GiB (1 to 65536). null: the base image's size."
  type        = number
  default     = null

  validation {
    condition     = var.controller_disk_gib == null ? true : (var.controller_disk_gib >= 1 && var.controller_disk_gib <= 65536 && floor(var.controller_disk_gib) == var.controller_disk_gib)
    error_message = "The controller disk size must be a whole number of GiB from 1 to 65536."
  }
}

variable "controller_ip" {
  description = "The controller's static IPv4 address inside the subnet."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", var.controller_ip)) && can(cidrhost("${var.controller_ip}/32", 0))
    error_message = "The controller address must be an IPv4 address such as 192.168.100.10."
  }
}

variable "compute_vcpu" {
  description = "Virtual CPUs per compute node (1 to 256)."
  type        = number
  default     = 2

  validation {
    condition     = var.compute_vcpu >= 1 && var.compute_vcpu <= 256 && floor(var.compute_vcpu) == var.compute_vcpu
    error_message = "The compute node vCPU count must be a whole number from 1 to 256."
  }
}

variable "compute_memory_mib" {
  description = "Memory per compute node in MiB (64 to 4194304)."
  type        = number
  default     = 2048

  validation {
    condition     = var.compute_memory_mib >= 64 && var.compute_memory_mib <= 4194304 && floor(var.compute_memory_mib) == var.compute_memory_mib
    error_message = "The compute node memory must be a whole number of MiB from 64 to 4194304."
  }
}

variable "compute_disk_gib" {
  description = "Root disk per compute node in GiB (1 to 65536). null: the base image's size."
  type        = number
  default     = null

  validation {
    condition     = var.compute_disk_gib == null ? true : (var.compute_disk_gib >= 1 && var.compute_disk_gib <= 65536 && floor(var.compute_disk_gib) == var.compute_disk_gib)
    error_message = "The compute node disk size must be a whole number of GiB from 1 to 65536."
  }
}

variable "compute_count" {
  description = "Number of compute nodes (1 to 4096)."
  type        = number
  default     = 1

  validation {
    condition     = var.compute_count >= 1 && var.compute_count <= 4096 && floor(var.compute_count) == var.compute_count
    error_message = "The compute node count must be a whole number from 1 to 4096."
  }
}

variable "compute_ips" {
  description = "The compute nodes' static IPv4 addresses, in order (at least `compute_count`)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.compute_ips : can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", ip)) && can(cidrhost("${ip}/32", 0))])
    error_message = "Every compute node address must be an IPv4 address such as 192.168.100.11."
  }
}

variable "compute_gpu_pci" {
  description = "PCI devices per compute node: element i lists the PCI addresses passed through to compute node i (the gpu-partition module's `hostdev_pci`)."
  type        = list(list(string))
  default     = []
}

variable "compute_gpu_mdev" {
  description = "vGPUs per compute node: element i lists the mdev UUIDs given to compute node i (the gpu-partition module's `hostdev_mdev`)."
  type        = list(list(string))
  default     = []
}
