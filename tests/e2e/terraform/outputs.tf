output "node_ip" {
  description = "The node's address, as the provider saw it (DHCP lease or ARP)."
  value       = hsw_vm.node.network_interface[0].addresses[0]
}

output "node_id" {
  value = hsw_vm.node.id
}

output "idle_id" {
  value = hsw_vm.idle.id
}
