output "network" {
  description = "The cluster's network: `name`, `subnet`, `gateway`, `dns_domain` (subnet and gateway as given when the network was not created here)."
  value = {
    name       = local.network
    subnet     = var.create_network ? module.network[0].subnet : var.subnet
    gateway    = var.create_network ? module.network[0].gateway : var.gateway
    dns_domain = var.dns_domain
  }
}

output "controller" {
  description = "The Slurm controller: `name`, `hostname`, `fqdn`, `ip`, `vcpu`, `memory_mib`, `role` (`controller`), `gpu_pci`, `gpu_mdev`."
  value       = local.controller
}

output "compute" {
  description = "The compute nodes in order, each like `controller` with `role` `compute`."
  value       = local.compute
}

output "hosts" {
  description = "Every VM of the cluster: the controller, then the compute nodes."
  value       = concat([local.controller], local.compute)
}
