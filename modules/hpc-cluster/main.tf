locals {
  # Terraform 1.0 has no cross-variable validation: a missing setting stops the plan here, with this message.
  network_settings_given = var.create_network ? var.subnet != null : var.network_name != null
  network_check          = local.network_settings_given ? true : tobool("hpc-cluster: create_network needs subnet; an existing network (create_network = false) needs network_name.")

  network_name = coalesce(var.network_name, "${var.name}-hpc")
}

module "network" {
  source = "../network"
  count  = var.create_network ? 1 : 0

  name       = local.network_name
  subnet     = var.subnet
  bridge     = var.bridge
  gateway    = var.gateway
  mode       = var.network_mode
  dns_domain = var.dns_domain
  mtu        = var.mtu
  autostart  = var.autostart
  dhcp_start = var.dhcp_start
  dhcp_end   = var.dhcp_end
}

locals {
  # Through the module's output when it creates the network, so that the VMs wait for it.
  network = var.create_network ? module.network[0].name : local.network_name
}

module "controller" {
  source = "../vm-group"

  name_prefix   = "${var.name}-controller"
  vm_count      = 1
  vcpu          = var.controller_vcpu
  memory_mib    = var.controller_memory_mib
  disk_size_gib = var.controller_disk_gib
  base_image    = var.base_image
  kernel        = var.kernel
  initrd        = var.initrd
  cmdline       = var.cmdline
  accelerator   = var.accelerator
  cpu_mode      = var.cpu_mode
  autostart     = var.autostart

  network             = local.network
  domain              = var.dns_domain
  ip_addresses        = [var.controller_ip]
  ssh_authorized_keys = var.ssh_authorized_keys
  wait_for_ip         = var.wait_for_ip
  wait_for_ip_timeout = var.wait_for_ip_timeout
}

module "compute" {
  source = "../vm-group"

  name_prefix   = "${var.name}-compute"
  vm_count      = var.compute_count
  vcpu          = var.compute_vcpu
  memory_mib    = var.compute_memory_mib
  disk_size_gib = var.compute_disk_gib
  base_image    = var.base_image
  kernel        = var.kernel
  initrd        = var.initrd
  cmdline       = var.cmdline
  accelerator   = var.accelerator
  cpu_mode      = var.cpu_mode
  autostart     = var.autostart

  network             = local.network
  domain              = var.dns_domain
  ip_addresses        = var.compute_ips
  ssh_authorized_keys = var.ssh_authorized_keys
  wait_for_ip         = var.wait_for_ip
  wait_for_ip_timeout = var.wait_for_ip_timeout

  gpu_pci  = var.compute_gpu_pci
  gpu_mdev = var.compute_gpu_mdev
}

locals {
  controller = merge(module.controller.hosts[0], { role = "controller" })
  compute    = [for h in module.compute.hosts : merge(h, { role = "compute" })]
}
