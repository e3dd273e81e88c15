output "network" {
  description = "The cluster's network: `name`, `subnet`, `gateway`, `dns_domain` (subnet and gateway as given when the network was not created here)."
  value = {
    name       = local.network
    subnet     = var.create_network ? module.network[0].subnet : var.subnet
    gateway    = var.create_network ? module.network[0].gateway : var.gateway
    dns_domain = var.dns_domain
  }
}

output "control_plane" {
  description = "The Kubernetes control-plane node: `name`, `hostname`, `fqdn`, `ip`, `vcpu`, `memory_mib`, `role` (`control_plane`), `gpu_pci`, `gpu_mdev`."
  value       = local.control_plane
}

output "cpu_workers" {
  description = "The CPU workers in order, each like `control_plane` with `role` `cpu_worker` (empty when there are none)."
  value       = local.cpu_workers
}

output "gpu_workers" {
  description = "The GPU workers in order, each like `control_plane` with `role` `gpu_worker` (empty when there are none)."
  value       = local.gpu_workers
}

output "hosts" {
  description = "Every VM of the cluster: the control plane, the CPU workers, then the GPU workers."
  value       = concat([local.control_plane], local.cpu_workers, local.gpu_workers)
}
