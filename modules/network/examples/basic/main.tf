# An isolated network for a small cluster, with a DNS domain and an alias.
#
# No provider block: the modules' provider (hyperscaler/hsw) runs with its defaults, `qemu:///system`, the pool
# `/var/lib/hsw/images` and the GPU backend `auto`; the HSW_* variables change them, and the repository's
# examples/provider/provider.tf shows a provider block.

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
