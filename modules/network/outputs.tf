output "name" {
  description = "The libvirt network name (give it to `hsw_vm` `network_interface.network`, or to the vm-group module's `network`)."
  value       = hsw_network.this.name
}

output "id" {
  description = "The network's libvirt UUID."
  value       = hsw_network.this.id
}

output "subnet" {
  description = "The subnet in CIDR form."
  value       = var.subnet
}

output "gateway" {
  description = "The host's address on the network (the guests' gateway and DNS server)."
  value       = local.gateway
}

output "bridge" {
  description = "The bridge name (null when libvirt picked one)."
  value       = var.bridge
}

output "dns_domain" {
  description = "The guests' DNS domain (null when none)."
  value       = var.dns_domain
}

output "dhcp_range" {
  description = "The dynamic DHCP range: `{ start, end }`."
  value = {
    start = local.dhcp_start
    end   = local.dhcp_end
  }
}
