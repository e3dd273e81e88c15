locals {
  # Terraform 1.0 has no cross-variable validation: a missing setting stops the plan here, with this message.
  network_settings_given = var.create_network ? var.subnet != null : var.network_name != null
  network_check          = local.network_settings_given ? true : tobool("cluster: create_network needs subnet; an existing network (create_network = false) needs network_name.")

  network_name = coalesce(var.network_name, var.name)
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

# One VM group per role that has VMs; the role name is the instance key (`module.role["compute"]`).
module "role" {
  source   = "../vm-group"
  for_each = { for role, r in var.roles : role => r if r.vm_count > 0 }

  name_prefix   = "${var.name}-${replace(each.key, "_", "-")}"
  vm_count      = each.value.vm_count
  vcpu          = each.value.vcpu
  memory_mib    = each.value.memory_mib
  disk_size_gib = each.value.disk_gib
  base_image    = var.base_image
  kernel        = var.kernel
  initrd        = var.initrd
  cmdline       = var.cmdline
  accelerator   = var.accelerator
  cpu_mode      = var.cpu_mode
  autostart     = var.autostart
  machine       = try(var.machines[each.key].machine, "pc")
  firmware      = try(var.machines[each.key].firmware, "bios")
  mmio64_gib    = try(var.machines[each.key].mmio64_gib, null)

  network             = local.network
  domain              = var.dns_domain
  ip_addresses        = each.value.ips
  ssh_authorized_keys = var.ssh_authorized_keys
  wait_for_ip         = var.wait_for_ip
  wait_for_ip_timeout = var.wait_for_ip_timeout

  gpu_pci  = each.value.gpu_pci
  gpu_mdev = each.value.gpu_mdev
}

locals {
  role_hosts = { for role, m in module.role : role => [for h in m.hosts : merge(h, { role = role })] }
  roles      = { for role in keys(var.roles) : role => lookup(local.role_hosts, role, []) }
  # The role names by `order`, then by name: sort() orders strings, so the order is written with leading zeros.
  role_order = [for k in sort([for role, r in var.roles : format("%04d %s", r.order, role)]) : split(" ", k)[1]]
}
