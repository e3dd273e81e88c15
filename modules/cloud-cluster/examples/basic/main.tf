# A Kubernetes-shaped cluster: a control plane, one CPU worker and one GPU worker given a MIG slice through a
# MIG-backed vGPU (gpu-partition module).
terraform {
  required_version = ">= 1.0"

  required_providers {
    hsw = {
      source = "hyperscaler/hsw"
    }
  }
}

provider "hsw" {
  uri         = "qemu:///system"
  pool_dir    = "/var/lib/hsw/images"
  gpu_backend = "nvml"
}

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

module "cloud" {
  source = "../.."

  name         = "demo"
  subnet       = "192.168.200.0/24"
  bridge       = "hswbr-cloud"
  network_mode = "nat"
  dns_domain   = "cloud.demo.internal"

  base_image = "/var/lib/hsw/images/base/debian-12.qcow2"
  kernel     = "/var/lib/hsw/images/base/vmlinuz"
  initrd     = "/var/lib/hsw/images/base/initrd.img"
  cmdline    = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

  ssh_authorized_keys = [trimspace(file(var.ssh_public_key_file))]

  control_plane_vcpu       = 2
  control_plane_memory_mib = 4096
  control_plane_ip         = "192.168.200.10"

  cpu_worker_count      = 1
  cpu_worker_vcpu       = 2
  cpu_worker_memory_mib = 4096
  cpu_worker_ips        = ["192.168.200.11"]

  gpu_worker_count      = 1
  gpu_worker_vcpu       = 4
  gpu_worker_memory_mib = 8192
  gpu_worker_ips        = ["192.168.200.21"]
  gpu_worker_gpu_pci    = [module.gpus.hostdev_pci["demo-gpu-worker-1"]]
  gpu_worker_gpu_mdev   = [module.gpus.hostdev_mdev["demo-gpu-worker-1"]]
}

output "hosts" {
  value = module.cloud.hosts
}

output "gpu_assignments" {
  value = module.gpus.assignments
}
