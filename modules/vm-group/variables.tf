variable "name_prefix" {
  description = "VM names and host names are `<name_prefix>-<n>`: a DNS label of lowercase letters, digits and inner hyphens, at most 58 characters."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,56}[a-z0-9])?$", var.name_prefix))
    error_message = "The name prefix must be 1 to 58 lowercase letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "vm_count" {
  description = "Number of VMs (1 to 4096)."
  type        = number

  validation {
    condition     = var.vm_count >= 1 && var.vm_count <= 4096 && floor(var.vm_count) == var.vm_count
    error_message = "The VM count must be a whole number from 1 to 4096."
  }
}

variable "first_index" {
  description = "The `<n>` of the first VM; the others follow in order."
  type        = number
  default     = 1

  validation {
    condition     = var.first_index >= 0 && floor(var.first_index) == var.first_index
    error_message = "The first index must be a whole number of at least 0."
  }
}

variable "vcpu" {
  description = "Virtual CPUs per VM (1 to 256)."
  type        = number

  validation {
    condition     = var.vcpu >= 1 && var.vcpu <= 256 && floor(var.vcpu) == var.vcpu
    error_message = "The vCPU count must be a whole number from 1 to 256."
  }
}

variable "memory_mib" {
  description = "Memory per VM in MiB (64 to 4194304)."
  type        = number

  validation {
    condition     = var.memory_mib >= 64 && var.memory_mib <= 4194304 && floor(var.memory_mib) == var.memory_mib
    error_message = "The memory must be a whole number of MiB from 64 to 4194304."
  }
}

variable "disk_size_gib" {
  description = "Root disk size per VM in GiB (1 to 65536), when larger than the base image. null: the base image's size."
  type        = number
  default     = null

  validation {
    condition     = var.disk_size_gib == null ? true : (var.disk_size_gib >= 1 && var.disk_size_gib <= 65536 && floor(var.disk_size_gib) == var.disk_size_gib)
    error_message = "The disk size must be a whole number of GiB from 1 to 65536."
  }
}

variable "base_image" {
  description = "The qcow2 base image every VM's root disk overlays: an absolute path inside the provider's `pool_dir`."
  type        = string

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]*$", var.base_image))
    error_message = "The base image must be an absolute path of letters, digits, `.`, `_`, `-` and `/`."
  }
}

variable "kernel" {
  description = "Direct kernel boot: the kernel image (absolute path inside `pool_dir`). null: boot from the image's own boot loader."
  type        = string
  default     = null

  validation {
    condition     = var.kernel == null || can(regex("^/[A-Za-z0-9._/-]*$", var.kernel))
    error_message = "The kernel must be an absolute path of letters, digits, `.`, `_`, `-` and `/`."
  }
}

variable "initrd" {
  description = "Direct kernel boot: the initrd (absolute path inside `pool_dir`; needs `kernel`)."
  type        = string
  default     = null

  validation {
    condition     = var.initrd == null || can(regex("^/[A-Za-z0-9._/-]*$", var.initrd))
    error_message = "The initrd must be an absolute path of letters, digits, `.`, `_`, `-` and `/`."
  }
}

variable "cmdline" {
  description = "Direct kernel boot: the kernel command line (needs `kernel`), such as `root=/dev/vda rw console=ttyS0 net.ifnames=0`."
  type        = string
  default     = null

  validation {
    condition     = var.cmdline == null || can(regex("^[^\"'`$;&|<>\\\\]*$", var.cmdline))
    error_message = "The kernel command line may not contain quotes, `$`, `;`, `&`, `|`, `<`, `>` or backslashes."
  }
}

variable "accelerator" {
  description = "`kvm`, `tcg` (emulation, slow but works anywhere) or `auto` (KVM when it can run guests, else TCG)."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be auto, kvm or tcg."
  }
}

variable "cpu_mode" {
  description = "The guest CPU: `host-passthrough`, `host-model` or `default` (QEMU's model). null: the provider's default."
  type        = string
  default     = null

  validation {
    condition     = var.cpu_mode == null || contains(["host-passthrough", "host-model", "default"], coalesce(var.cpu_mode, "default"))
    error_message = "The CPU mode must be host-passthrough, host-model or default."
  }
}

variable "machine" {
  description = "The machine type: `pc` (i440fx) or `q35` (PCI Express; what GPUs with large BARs want)."
  type        = string
  default     = "pc"

  validation {
    condition     = contains(["pc", "q35"], var.machine)
    error_message = "The machine must be pc or q35."
  }
}

variable "firmware" {
  description = "`bios` (SeaBIOS) or `efi` (Debian's OVMF, with an NVRAM file of each VM's own)."
  type        = string
  default     = "bios"

  validation {
    condition     = contains(["bios", "efi"], var.firmware)
    error_message = "The firmware must be bios or efi."
  }
}

variable "mmio64_gib" {
  description = "q35 only: the 64-bit PCI MMIO window in GiB (a power of two), where GPUs map their BARs. null: the provider's default (64)."
  type        = number
  default     = null
}

variable "network" {
  description = "The libvirt network the VMs attach to (the network module's `name` output, or any libvirt network with DHCP)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", var.network))
    error_message = "The network name must be 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit."
  }
}

variable "ip_addresses" {
  description = "Static IPv4 addresses, one per VM in order (at least `vm_count`; extra ones are unused). Each becomes a DHCP reservation on the network."
  type        = list(string)

  validation {
    condition     = length(var.ip_addresses) >= 1 && alltrue([for ip in var.ip_addresses : can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", ip)) && can(cidrhost("${ip}/32", 0))])
    error_message = "Every address must be an IPv4 address such as 192.168.100.11, and at least one is needed."
  }

  validation {
    condition     = length(distinct(var.ip_addresses)) == length(var.ip_addresses)
    error_message = "The addresses must be distinct."
  }
}

variable "wait_for_ip" {
  description = "Whether creating a VM waits until its interface has an address (it has booted)."
  type        = bool
  default     = true
}

variable "wait_for_ip_timeout" {
  description = "Seconds to wait for each VM's address when `wait_for_ip` is set."
  type        = number
  default     = 300

  validation {
    condition     = var.wait_for_ip_timeout >= 1 && floor(var.wait_for_ip_timeout) == var.wait_for_ip_timeout
    error_message = "The timeout must be a whole number of seconds, at least 1."
  }
}

variable "domain" {
  description = "The DNS domain of the VMs' network, for the `fqdn` outputs. null: the FQDN is the host name."
  type        = string
  default     = null
}

variable "ssh_authorized_keys" {
  description = "SSH public keys (the key text, such as `ssh-ed25519 AAAA... me@host`) for the image's default user, set through cloud-init with the host name."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for k in var.ssh_authorized_keys : can(regex("^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+", k))])
    error_message = "Every SSH key must be a public key line such as `ssh-ed25519 AAAA... comment` (not a file name)."
  }
}

variable "gpu_pci" {
  description = "PCI devices passed through per VM: element i is the list of PCI addresses (`0000:65:00.0`) for VM i. Shorter than `vm_count`: the remaining VMs get none."
  type        = list(list(string))
  default     = []

  validation {
    condition     = alltrue([for l in var.gpu_pci : alltrue([for a in l : can(regex("^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F][.][0-7]$", a))])])
    error_message = "Every PCI address must be in the form DDDD:BB:DD.F, such as 0000:65:00.0."
  }
}

variable "gpu_mdev" {
  description = "vGPUs per VM, by `hsw_mdev` id: element i is the list for VM i, each an mdev UUID, or the VF's PCI address of a vendor-specific VFIO vGPU (attached unmanaged: the VF stays on the nvidia driver). Shorter than `vm_count`: the remaining VMs get none."
  type        = list(list(string))
  default     = []

  validation {
    condition     = alltrue([for l in var.gpu_mdev : alltrue([for u in l : can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$|^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F][.][0-7]$", u))])])
    error_message = "Every vGPU must be an mdev UUID such as c2177883-f1bb-47f0-914d-32a22e3a8804, or a VF's PCI address such as 0000:c1:00.4."
  }
}

variable "autostart" {
  description = "Whether libvirt starts the VMs when libvirtd starts."
  type        = bool
  default     = false
}

variable "running" {
  description = "Whether the VMs should be running."
  type        = bool
  default     = true
}
