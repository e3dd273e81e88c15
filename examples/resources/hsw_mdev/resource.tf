# A classic mdev vGPU, defined for mdevctl so that it comes back after a reboot.
resource "hsw_mdev" "worker" {
  parent     = "0000:41:00.4"
  type       = "GRID A100-2-10C"
  persistent = true
}

# Given to a VM by UUID.
resource "hsw_vm" "worker" {
  name       = "worker1"
  vcpu       = 4
  memory     = 8192
  base_image = "/var/lib/hsw/images/debian-12.qcow2"
  hostdev {
    mdev = hsw_mdev.worker.uuid
  }
}

# vGPU 17+ on Hopper: a vendor-specific VFIO vGPU on an SR-IOV VF (no UUID; give the VF as a PCI device).
resource "hsw_mdev" "h200" {
  parent = "0000:c1:00.4"
  type   = "NVIDIA H200X-1-18C"
}
