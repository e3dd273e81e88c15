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
  description = "The libvirt network name. null: `<name>-cloud`. Required when `create_network` is false."
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

variable "control_plane_vcpu" {
  description = "Virtual CPUs per control-plane node (1 to 256)."
  type        = number
  default     = 2

  validation {
    condition     = var.control_plane_vcpu >= 1 && var.control_plane_vcpu <= 256 && floor(var.control_plane_vcpu) == var.control_plane_vcpu
    error_message = "The control-plane node vCPU count must be a whole number from 1 to 256."
  }
}

variable "control_plane_memory_mib" {
  description = "Memory per control-plane node in MiB (64 to 4194304)."
  type        = number
  default     = 2048

  validation {
    condition     = var.control_plane_memory_mib >= 64 && var.control_plane_memory_mib <= 4194304 && floor(var.control_plane_memory_mib) == var.control_plane_memory_mib
    error_message = "The control-plane node memory must be a whole number of MiB from 64 to 4194304."
  }
}

variable "control_plane_disk_gib" {
  description = "Root disk per control-plane node in GiB (1 to 65536). null: the base image's size."
  type        = number
  default     = null

  validation {
    condition     = var.control_plane_disk_gib == null ? true : (var.control_plane_disk_gib >= 1 && var.control_plane_disk_gib <= 65536 && floor(var.control_plane_disk_gib) == var.control_plane_disk_gib)
    error_message = "The control-plane node disk size must be a whole number of GiB from 1 to 65536."
  }
}

variable "control_plane_ip" {
  description = "The control-plane node's static IPv4 address inside the subnet."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", var.control_plane_ip)) && can(cidrhost("${var.control_plane_ip}/32", 0))
    error_message = "The control-plane node address must be an IPv4 address such as 192.168.100.10."
  }
}

variable "cpu_worker_vcpu" {
  description = "Virtual CPUs per CPU worker (1 to 256)."
  type        = number
  default     = 2

  validation {
    condition     = var.cpu_worker_vcpu >= 1 && var.cpu_worker_vcpu <= 256 && floor(var.cpu_worker_vcpu) == var.cpu_worker_vcpu
    error_message = "The CPU worker vCPU count must be a whole number from 1 to 256."
  }
}

variable "cpu_worker_memory_mib" {
  description = "Memory per CPU worker in MiB (64 to 4194304)."
  type        = number
  default     = 2048

  validation {
    condition     = var.cpu_worker_memory_mib >= 64 && var.cpu_worker_memory_mib <= 4194304 && floor(var.cpu_worker_memory_mib) == var.cpu_worker_memory_mib
    error_message = "The CPU worker memory must be a whole number of MiB from 64 to 4194304."
  }
}

variable "cpu_worker_disk_gib" {
  description = "Root disk per CPU worker in GiB (1 to 65536). null: the base image's size."
  type        = number
  default     = null

  validation {
    condition     = var.cpu_worker_disk_gib == null ? true : (var.cpu_worker_disk_gib >= 1 && var.cpu_worker_disk_gib <= 65536 && floor(var.cpu_worker_disk_gib) == var.cpu_worker_disk_gib)
    error_message = "The CPU worker disk size must be a whole number of GiB from 1 to 65536."
  }
}

variable "cpu_worker_count" {
  description = "Number of CPU workers (0 to 4096)."
  type        = number
  default     = 0

  validation {
    condition     = var.cpu_worker_count >= 0 && var.cpu_worker_count <= 4096 && floor(var.cpu_worker_count) == var.cpu_worker_count
    error_message = "The CPU worker count must be a whole number from 0 to 4096."
  }
}

variable "cpu_worker_ips" {
  description = "The CPU workers' static IPv4 addresses, in order (at least `cpu_worker_count`)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.cpu_worker_ips : can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", ip)) && can(cidrhost("${ip}/32", 0))])
    error_message = "Every CPU worker address must be an IPv4 address such as 192.168.100.11."
  }
}

variable "cpu_worker_gpu_pci" {
  description = "PCI devices per CPU worker: element i lists the PCI addresses passed through to CPU worker i (the gpu-partition module's `hostdev_pci`)."
  type        = list(list(string))
  default     = []
}

variable "cpu_worker_gpu_mdev" {
  description = "vGPUs per CPU worker: element i lists the mdev UUIDs given to CPU worker i (the gpu-partition module's `hostdev_mdev`)."
  type        = list(list(string))
  default     = []
}

variable "gpu_worker_vcpu" {
  description = "Virtual CPUs per GPU worker (1 to 256)."
  type        = number
  default     = 2

  validation {
    condition     = var.gpu_worker_vcpu >= 1 && var.gpu_worker_vcpu <= 256 && floor(var.gpu_worker_vcpu) == var.gpu_worker_vcpu
    error_message = "The GPU worker vCPU count must be a whole number from 1 to 256."
  }
}

variable "gpu_worker_memory_mib" {
  description = "Memory per GPU worker in MiB (64 to 4194304)."
  type        = number
  default     = 2048

  validation {
    condition     = var.gpu_worker_memory_mib >= 64 && var.gpu_worker_memory_mib <= 4194304 && floor(var.gpu_worker_memory_mib) == var.gpu_worker_memory_mib
    error_message = "The GPU worker memory must be a whole number of MiB from 64 to 4194304."
  }
}

variable "gpu_worker_disk_gib" {
  description = "Root disk per GPU worker in GiB (1 to 65536). null: the base image's size."
  type        = number
  default     = null

  validation {
    condition     = var.gpu_worker_disk_gib == null ? true : (var.gpu_worker_disk_gib >= 1 && var.gpu_worker_disk_gib <= 65536 && floor(var.gpu_worker_disk_gib) == var.gpu_worker_disk_gib)
    error_message = "The GPU worker disk size must be a whole number of GiB from 1 to 65536."
  }
}

variable "gpu_worker_count" {
  description = "Number of GPU workers (0 to 4096)."
  type        = number
  default     = 0

  validation {
    condition     = var.gpu_worker_count >= 0 && var.gpu_worker_count <= 4096 && floor(var.gpu_worker_count) == var.gpu_worker_count
    error_message = "The GPU worker count must be a whole number from 0 to 4096."
  }
}

variable "gpu_worker_ips" {
  description = "The GPU workers' static IPv4 addresses, in order (at least `gpu_worker_count`)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.gpu_worker_ips : can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", ip)) && can(cidrhost("${ip}/32", 0))])
    error_message = "Every GPU worker address must be an IPv4 address such as 192.168.100.11."
  }
}

variable "gpu_worker_gpu_pci" {
  description = "PCI devices per GPU worker: element i lists the PCI addresses passed through to GPU worker i (the gpu-partition module's `hostdev_pci`)."
  type        = list(list(string))
  default     = []
}

variable "gpu_worker_gpu_mdev" {
  description = "vGPUs per GPU worker: element i lists the mdev UUIDs given to GPU worker i (the gpu-partition module's `hostdev_mdev`)."
  type        = list(list(string))
  default     = []
}
