output "network" {
  description = "The cluster's network: `name`, `subnet`, `gateway`, `dns_domain` (subnet and gateway as given when the network was not created here)."
  value = {
    name       = local.network
    subnet     = var.create_network ? module.network[0].subnet : var.subnet
    gateway    = var.create_network ? module.network[0].gateway : var.gateway
    dns_domain = var.dns_domain
  }
}

output "roles" {
  description = "Each role's VMs in order (an empty list for a role with `vm_count` 0), by role name: each VM `name`, `hostname`, `fqdn`, `ip`, `vcpu`, `memory_mib`, `role` (the role name), `gpu_pci`, `gpu_mdev`."
  value       = local.roles
}

output "hosts" {
  description = "Every VM of the cluster, like in `roles`: the roles by their `order`, each role's VMs in order."
  value       = flatten([for role in local.role_order : local.roles[role]])
}
