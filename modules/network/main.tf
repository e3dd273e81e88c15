locals {
  prefix_length = tonumber(split("/", var.subnet)[1])
  # Addresses in the subnet, network and broadcast included.
  size    = pow(2, 32 - local.prefix_length)
  gateway = var.gateway == null ? cidrhost(var.subnet, 1) : var.gateway
  # Default dynamic range: the last quarter of the subnet (at least one address), up to the last usable address.
  dhcp_start = var.dhcp_start == null ? cidrhost(var.subnet, local.size - max(2, floor(local.size / 4))) : var.dhcp_start
  dhcp_end   = var.dhcp_end == null ? cidrhost(var.subnet, local.size - 2) : var.dhcp_end
}

resource "hsw_network" "this" {
  name       = var.name
  subnet     = var.subnet
  bridge     = var.bridge
  gateway    = var.gateway
  mode       = var.mode
  dns_domain = var.dns_domain
  mtu        = var.mtu
  autostart  = var.autostart

  dhcp {
    start = local.dhcp_start
    end   = local.dhcp_end
  }

  dynamic "dns_host" {
    for_each = var.dns_hosts
    content {
      ip        = dns_host.value.ip
      hostnames = dns_host.value.hostnames
    }
  }
}
