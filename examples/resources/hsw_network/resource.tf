resource "hsw_network" "cluster" {
  name       = "hsw-cluster"
  mode       = "nat"
  bridge     = "hswbr0"
  subnet     = "10.20.0.0/24"
  dns_domain = "cluster.internal"
  autostart  = true

  dhcp {
    start = "10.20.0.100"
    end   = "10.20.0.200"
  }

  # A static lease for a machine that is not an hsw_vm.
  dhcp_host {
    mac      = "52:54:00:00:00:10"
    ip       = "10.20.0.10"
    hostname = "storage"
  }

  dns_host {
    ip        = "10.20.0.5"
    hostnames = ["api", "api.cluster.internal"]
  }
}
