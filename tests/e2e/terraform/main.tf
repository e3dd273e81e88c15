# The end-to-end fixture for tests/e2e/run.sh: the hsw provider against a sandbox libvirtd (scripts/sandbox.sh).
# Everything here lives in the sandbox's network namespace; the driver writes terraform.tfvars.json.
#
#   hsw_network.e2e  isolated, DHCP, a static lease; the node's network
#   hsw_network.aux  isolated, DHCP; deleted out of band in the drift scenario; the idle and kill VMs' network
#   hsw_vm.node      boots (TCG, direct kernel boot, cloud-init), waits for its address, reports it
#   hsw_vm.idle      defined but not running (cheap: updated in place and deleted out of band without a boot)
#   hsw_vm.kill      only with with_kill_vm: the VM whose create is interrupted by SIGKILL of the provider

terraform {
  required_providers {
    hsw = {
      source  = "hyperscaler/hsw"
      version = "0.1.0"
    }
  }
}

provider "hsw" {
  uri      = var.uri
  pool_dir = var.pool_dir
}

resource "hsw_network" "e2e" {
  name       = "hswe2e"
  mode       = "isolated"
  bridge     = "hswe2e0"
  subnet     = "192.168.150.0/24"
  gateway    = "192.168.150.1"
  dns_domain = "e2e.internal"
  autostart  = false

  dhcp {
    start = "192.168.150.100"
    end   = "192.168.150.199"
  }

  dhcp_host {
    mac      = "52:54:00:e2:e0:0a"
    ip       = "192.168.150.10"
    hostname = "static-host"
  }
}

resource "hsw_network" "aux" {
  name   = "hswe2eaux"
  bridge = "hswe2e1"
  subnet = "192.168.151.0/24"

  dhcp {
    start = "192.168.151.100"
    end   = "192.168.151.199"
  }
}

resource "hsw_vm" "node" {
  name        = "hsw-e2e-node"
  vcpu        = var.node_vcpu
  memory      = var.node_memory
  accelerator = "tcg"
  base_image  = var.base_image
  kernel      = var.kernel
  initrd      = var.initrd
  cmdline     = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

  hostname            = "hsw-e2e-node"
  ssh_authorized_keys = [var.ssh_public_key]

  network_interface {
    network     = hsw_network.e2e.name
    ip          = var.node_ip == "" ? null : var.node_ip
    wait_for_ip = true
  }

  wait_for_ip_timeout = var.boot_timeout
  shutdown_timeout    = 60
}

resource "hsw_vm" "idle" {
  name        = "hsw-e2e-idle"
  vcpu        = var.idle_vcpu
  memory      = var.idle_memory
  accelerator = "tcg"
  base_image  = var.base_image
  kernel      = var.kernel
  initrd      = var.initrd
  cmdline     = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
  hostname    = "hsw-e2e-idle"
  running     = false

  network_interface {
    network = hsw_network.aux.name
  }
}

resource "hsw_vm" "kill" {
  count       = var.with_kill_vm ? 1 : 0
  name        = "hsw-e2e-kill"
  vcpu        = 1
  memory      = 512
  accelerator = "tcg"
  base_image  = var.base_image
  kernel      = var.kernel
  initrd      = var.initrd
  cmdline     = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

  hostname            = "hsw-e2e-kill"
  ssh_authorized_keys = [var.ssh_public_key]

  network_interface {
    network     = hsw_network.aux.name
    wait_for_ip = true
  }

  wait_for_ip_timeout = var.boot_timeout
}
