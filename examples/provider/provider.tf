terraform {
  required_providers {
    hsw = {
      source = "registry.terraform.io/hyperscaler/hsw" # the full address: OpenTofu resolves a short one to its own registry
    }
  }
}

# The local system libvirtd; images and VM disks under /var/lib/hsw/images.
provider "hsw" {
  uri         = "qemu:///system"
  pool_dir    = "/var/lib/hsw/images"
  gpu_backend = "auto"
}

# A libvirtd running in a sandbox network namespace, reached through its socket.
provider "hsw" {
  alias    = "sandbox"
  uri      = "qemu+unix:///system?socket=/run/hsw-sandbox/libvirt-sock"
  pool_dir = "/var/lib/hsw-sandbox/images"
}
