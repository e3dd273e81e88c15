locals {
  # Terraform 1.0 has no cross-variable validation: a mismatch stops the plan here, with this message.
  lists_fit = length(var.ip_addresses) >= var.vm_count && length(var.gpu_pci) <= var.vm_count && length(var.gpu_mdev) <= var.vm_count ? true : tobool("vm-group: ip_addresses needs at least vm_count entries, and gpu_pci and gpu_mdev at most vm_count.")

  names = [for i in range(var.vm_count) : "${var.name_prefix}-${var.first_index + i}"]
  ips   = [for i in range(var.vm_count) : var.ip_addresses[i]]
  pci   = [for i in range(var.vm_count) : i < length(var.gpu_pci) ? var.gpu_pci[i] : []]
  mdev  = [for i in range(var.vm_count) : i < length(var.gpu_mdev) ? var.gpu_mdev[i] : []]

  pci_address = "^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F][.][0-7]$"
}

resource "hsw_vm" "this" {
  count = var.vm_count

  name          = local.names[count.index]
  vcpu          = var.vcpu
  memory        = var.memory_mib
  accelerator   = var.accelerator
  cpu_mode      = var.cpu_mode
  machine       = var.machine
  firmware      = var.firmware
  mmio64_gib    = var.mmio64_gib
  base_image    = var.base_image
  disk_size_gib = var.disk_size_gib
  kernel        = var.kernel
  initrd        = var.initrd
  cmdline       = var.cmdline
  autostart     = var.autostart
  running       = var.running

  hostname            = local.names[count.index]
  ssh_authorized_keys = length(var.ssh_authorized_keys) > 0 ? var.ssh_authorized_keys : null

  network_interface {
    network     = var.network
    ip          = local.ips[count.index]
    wait_for_ip = var.wait_for_ip
  }

  wait_for_ip_timeout = var.wait_for_ip_timeout

  dynamic "hostdev" {
    for_each = local.pci[count.index]
    content {
      pci = hostdev.value
    }
  }

  dynamic "hostdev" {
    for_each = [for id in local.mdev[count.index] : id if !can(regex(local.pci_address, id))]
    content {
      mdev = hostdev.value
    }
  }

  # A vendor-specific VFIO vGPU is its VF, which stays on the nvidia driver.
  dynamic "hostdev" {
    for_each = [for id in local.mdev[count.index] : id if can(regex(local.pci_address, id))]
    content {
      pci     = hostdev.value
      managed = false
    }
  }
}
