# A Slurm-shaped cluster: a controller and two compute nodes on a network of their own, direct kernel boot.
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

variable "ssh_public_key_file" {
  description = "The SSH public key file whose key may log in to the VMs."
  type        = string
  default     = "~/.ssh/id_ed25519.pub"
}

module "hpc" {
  source = "../.."

  name       = "demo"
  subnet     = "192.168.100.0/24"
  bridge     = "hswbr-hpc"
  dns_domain = "hpc.demo.internal"

  base_image = "/var/lib/hsw/images/base/debian-12.qcow2"
  kernel     = "/var/lib/hsw/images/base/vmlinuz"
  initrd     = "/var/lib/hsw/images/base/initrd.img"
  cmdline    = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

  ssh_authorized_keys = [trimspace(file(var.ssh_public_key_file))]

  controller_vcpu       = 2
  controller_memory_mib = 2048
  controller_disk_gib   = 20
  controller_ip         = "192.168.100.10"

  compute_count      = 2
  compute_vcpu       = 4
  compute_memory_mib = 4096
  compute_disk_gib   = 40
  compute_ips        = ["192.168.100.11", "192.168.100.12"]
}

output "hosts" {
  # [{ name = "demo-controller-1", ip = "192.168.100.10", role = "controller", ... }, { name = "demo-compute-1", ... }, ...]
  value = module.hpc.hosts
}
