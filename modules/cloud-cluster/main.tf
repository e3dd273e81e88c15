locals {
  # Terraform 1.0 has no cross-variable validation: a missing setting stops the plan here, with this message.
  network_settings_given = var.create_network ? var.subnet != null : var.network_name != null
  network_check          = local.network_settings_given ? true : tobool("cloud-cluster: create_network needs subnet; an existing network (create_network = false) needs network_name.")

  network_name = coalesce(var.network_name, "${var.name}-cloud")
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

module "control_plane" {
  source = "../vm-group"

  name_prefix   = "${var.name}-control-plane"
  vm_count      = 1
  vcpu          = var.control_plane_vcpu
  memory_mib    = var.control_plane_memory_mib
  disk_size_gib = var.control_plane_disk_gib
  base_image    = var.base_image
  kernel        = var.kernel
  initrd        = var.initrd
  cmdline       = var.cmdline
  accelerator   = var.accelerator
  cpu_mode      = var.cpu_mode
  autostart     = var.autostart

  network             = local.network
  domain              = var.dns_domain
  ip_addresses        = [var.control_plane_ip]
  ssh_authorized_keys = var.ssh_authorized_keys
  wait_for_ip         = var.wait_for_ip
  wait_for_ip_timeout = var.wait_for_ip_timeout
}

module "cpu_workers" {
  source = "../vm-group"
  count  = var.cpu_worker_count > 0 ? 1 : 0

  name_prefix   = "${var.name}-cpu-worker"
  vm_count      = var.cpu_worker_count
  vcpu          = var.cpu_worker_vcpu
  memory_mib    = var.cpu_worker_memory_mib
  disk_size_gib = var.cpu_worker_disk_gib
  base_image    = var.base_image
  kernel        = var.kernel
  initrd        = var.initrd
  cmdline       = var.cmdline
  accelerator   = var.accelerator
  cpu_mode      = var.cpu_mode
  autostart     = var.autostart

  network             = local.network
  domain              = var.dns_domain
  ip_addresses        = var.cpu_worker_ips
  ssh_authorized_keys = var.ssh_authorized_keys
  wait_for_ip         = var.wait_for_ip
  wait_for_ip_timeout = var.wait_for_ip_timeout

  gpu_pci  = var.cpu_worker_gpu_pci
  gpu_mdev = var.cpu_worker_gpu_mdev
}

module "gpu_workers" {
  source = "../vm-group"
  count  = var.gpu_worker_count > 0 ? 1 : 0

  name_prefix   = "${var.name}-gpu-worker"
  vm_count      = var.gpu_worker_count
  vcpu          = var.gpu_worker_vcpu
  memory_mib    = var.gpu_worker_memory_mib
  disk_size_gib = var.gpu_worker_disk_gib
  base_image    = var.base_image
  kernel        = var.kernel
  initrd        = var.initrd
  cmdline       = var.cmdline
  accelerator   = var.accelerator
  cpu_mode      = var.cpu_mode
  autostart     = var.autostart

  network             = local.network
  domain              = var.dns_domain
  ip_addresses        = var.gpu_worker_ips
  ssh_authorized_keys = var.ssh_authorized_keys
  wait_for_ip         = var.wait_for_ip
  wait_for_ip_timeout = var.wait_for_ip_timeout

  gpu_pci  = var.gpu_worker_gpu_pci
  gpu_mdev = var.gpu_worker_gpu_mdev
}

locals {
  control_plane = merge(module.control_plane.hosts[0], { role = "control_plane" })
  cpu_workers   = flatten([for m in module.cpu_workers : [for h in m.hosts : merge(h, { role = "cpu_worker" })]])
  gpu_workers   = flatten([for m in module.gpu_workers : [for h in m.hosts : merge(h, { role = "gpu_worker" })]])
}
