# One A100 80GB split into a 3g.40gb and two 2g.20gb MIG instances, plus a GPU passed through whole, assigned to
# three nodes, and the nodes' devices handed to a vm-group.
#
# No provider block: the modules' provider (hyperscaler/hsw) runs with its defaults, `qemu:///system`, the pool
# `/var/lib/hsw/images` and the GPU backend `auto`; the HSW_* variables change them, and the repository's
# examples/provider/provider.tf shows a provider block.

module "gpus" {
  source = "../.."

  mig_instances = {
    "a100-3g-0" = { gpu = "0000:65:00.0", profile = "3g.40gb", placement_start = 0, vgpu_type = null, vgpu_parent = null }
    "a100-2g-4" = { gpu = "0000:65:00.0", profile = "2g.20gb", placement_start = 4, vgpu_type = "GRID A100D-2-20C", vgpu_parent = "0000:65:00.5" }
  }
  whole_gpus = {
    "rtx" = "0000:ca:00.0"
  }
  assignments = {
    "demo-gpu-1" = ["a100-2g-4"]
    "demo-gpu-2" = ["rtx"]
  }
}

module "network" {
  source = "../../../network"

  name   = "demo-gpu-net"
  subnet = "192.168.160.0/24"
}

module "gpu_nodes" {
  source = "../../../vm-group"

  name_prefix  = "demo-gpu"
  vm_count     = 2
  vcpu         = 4
  memory_mib   = 8192
  base_image   = "/var/lib/hsw/images/base/debian-12.qcow2"
  network      = module.network.name
  ip_addresses = ["192.168.160.11", "192.168.160.12"]

  gpu_pci  = [module.gpus.hostdev_pci["demo-gpu-1"], module.gpus.hostdev_pci["demo-gpu-2"]]
  gpu_mdev = [module.gpus.hostdev_mdev["demo-gpu-1"], module.gpus.hostdev_mdev["demo-gpu-2"]]
}

output "assignments" {
  value = module.gpus.assignments
}

output "unassigned" {
  # ["a100-3g-0"]: created, given to no VM (the host's containers can use it).
  value = module.gpus.unassigned
}
