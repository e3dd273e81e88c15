# Three VMs on a network of their own, booted directly from a kernel, the second one with a GPU passed through.
#
# No provider block: the modules' provider (hyperscaler/hsw) runs with its defaults, `qemu:///system`, the pool
# `/var/lib/hsw/images` and the GPU backend `auto`; the HSW_* variables change them, and the repository's
# examples/provider/provider.tf shows a provider block.

variable "ssh_public_key" {
  description = "The SSH public key (text) that may log in to the VMs."
  type        = string
  default     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample demo@example"
}

module "network" {
  source = "../../../network"

  name       = "demo-net"
  subnet     = "192.168.150.0/24"
  bridge     = "hswbr-demo"
  dns_domain = "demo.internal"
}

module "workers" {
  source = "../.."

  name_prefix   = "demo-worker"
  vm_count      = 3
  vcpu          = 2
  memory_mib    = 2048
  disk_size_gib = 20
  base_image    = "/var/lib/hsw/images/base/debian-12.qcow2"
  kernel        = "/var/lib/hsw/images/base/vmlinuz"
  initrd        = "/var/lib/hsw/images/base/initrd.img"
  cmdline       = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

  network      = module.network.name
  domain       = module.network.dns_domain
  ip_addresses = ["192.168.150.11", "192.168.150.12", "192.168.150.13"]

  ssh_authorized_keys = [var.ssh_public_key]

  # VM 0 gets nothing, VM 1 the GPU at 0000:ca:00.0, VM 2 nothing.
  gpu_pci = [[], ["0000:ca:00.0"]]
}

output "hosts" {
  value = module.workers.hosts
}
