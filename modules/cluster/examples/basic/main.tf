# One module, two cluster shapes, as data: a Slurm-shaped HPC cluster (a controller and two compute nodes) and a
# Kubernetes-shaped cloud cluster (a control plane, a CPU worker and a GPU worker given a MIG slice through a
# MIG-backed vGPU from the gpu-partition module), each on a network of its own, direct kernel boot.
#
# No provider block: the modules' provider (hyperscaler/hsw) runs with its defaults, `qemu:///system`, the pool
# `/var/lib/hsw/images` and the GPU backend `auto`; the HSW_* variables change them, and the repository's
# examples/provider/provider.tf shows a provider block.

variable "ssh_public_key_file" {
  description = "The SSH public key file whose key may log in to the VMs."
  type        = string
  default     = "~/.ssh/id_ed25519.pub"
}

module "gpus" {
  source = "../../../gpu-partition"

  mig_instances = {
    "slice-0" = { gpu = "0000:65:00.0", profile = "1g.10gb", placement_start = 0, vgpu_type = "GRID A100D-1-10C", vgpu_parent = "0000:65:00.4" }
  }
  assignments = {
    "demo-gpu-worker-1" = ["slice-0"]
  }
}

locals {
  clusters = {
    hpc = {
      subnet       = "192.168.100.0/24"
      network_mode = "isolated"
      roles = {
        controller = { order = 1, vm_count = 1, vcpu = 2, memory_mib = 2048, disk_gib = 20, ips = ["192.168.100.10"], gpu_pci = [], gpu_mdev = [] }
        compute    = { order = 2, vm_count = 2, vcpu = 4, memory_mib = 4096, disk_gib = 40, ips = ["192.168.100.11", "192.168.100.12"], gpu_pci = [], gpu_mdev = [] }
      }
    }
    cloud = {
      subnet       = "192.168.200.0/24"
      network_mode = "nat"
      roles = {
        control_plane = { order = 1, vm_count = 1, vcpu = 2, memory_mib = 4096, disk_gib = null, ips = ["192.168.200.10"], gpu_pci = [], gpu_mdev = [] }
        cpu_worker    = { order = 2, vm_count = 1, vcpu = 2, memory_mib = 4096, disk_gib = null, ips = ["192.168.200.11"], gpu_pci = [], gpu_mdev = [] }
        gpu_worker = {
          order      = 3
          vm_count   = 1
          vcpu       = 4
          memory_mib = 8192
          disk_gib   = null
          ips        = ["192.168.200.21"]
          gpu_pci    = [module.gpus.hostdev_pci["demo-gpu-worker-1"]]
          gpu_mdev   = [module.gpus.hostdev_mdev["demo-gpu-worker-1"]]
        }
      }
    }
  }
}

module "cluster" {
  source   = "../.."
  for_each = local.clusters

  name         = "demo"
  network_name = "demo-${each.key}"
  subnet       = each.value.subnet
  bridge       = "hswbr-${each.key}"
  network_mode = each.value.network_mode
  dns_domain   = "${each.key}.demo.internal"

  base_image = "/var/lib/hsw/images/base/debian-12.qcow2"
  kernel     = "/var/lib/hsw/images/base/vmlinuz"
  initrd     = "/var/lib/hsw/images/base/initrd.img"
  cmdline    = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

  ssh_authorized_keys = [trimspace(file(var.ssh_public_key_file))]

  roles = each.value.roles
}

output "hosts" {
  # hpc: [{ name = "demo-controller-1", ip = "192.168.100.10", role = "controller", ... }, { name = "demo-compute-1", ... }, ...]
  # cloud: the control plane, the CPU worker, then the GPU worker (by each role's `order`).
  value = { for cluster, m in module.cluster : cluster => m.hosts }
}

output "gpu_assignments" {
  value = module.gpus.assignments
}
