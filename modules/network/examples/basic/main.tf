# An isolated network for a small cluster, with a DNS domain and an alias.
terraform {
  required_version = ">= 1.0"

  required_providers {
    hsw = {
      source = "hyperscaler/hsw"
    }
  }
}

provider "hsw" {
  uri      = "qemu:///system"
  pool_dir = "/var/lib/hsw/images"
}

module "network" {
  source = "../.."

  name       = "demo-net"
  subnet     = "192.168.150.0/24"
  bridge     = "hswbr-demo"
  mode       = "isolated"
  dns_domain = "demo.internal"

  dns_hosts = [
    { ip = "192.168.150.10", hostnames = ["head", "head.demo.internal"] },
  ]
}

output "network" {
  value = module.network.name
}

output "dhcp_range" {
  value = module.network.dhcp_range
}
