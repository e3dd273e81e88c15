output "names" {
  description = "The VM names (also their host names), in order."
  value       = hsw_vm.this[*].name
}

output "ids" {
  description = "The VMs' libvirt UUIDs, in order."
  value       = hsw_vm.this[*].id
}

output "ip_addresses" {
  description = "The VMs' static addresses, in order."
  value       = local.ips
}

output "hosts" {
  description = "One object per VM, in order: `name`, `hostname`, `fqdn`, `ip`, `vcpu`, `memory_mib`, `gpu_pci` (PCI addresses passed through), `gpu_mdev` (vGPUs by `hsw_mdev` id)."
  value = [for i in range(var.vm_count) : {
    name       = hsw_vm.this[i].name
    hostname   = hsw_vm.this[i].hostname
    fqdn       = var.domain == null ? local.names[i] : "${local.names[i]}.${var.domain}"
    ip         = local.ips[i]
    vcpu       = var.vcpu
    memory_mib = var.memory_mib
    gpu_pci    = local.pci[i]
    gpu_mdev   = local.mdev[i]
  }]
}
