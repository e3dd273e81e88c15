resource "hsw_vm" "controller" {
  name          = "controller"
  vcpu          = 2
  memory        = 4096
  accelerator   = "auto"
  base_image    = "/var/lib/hsw/images/debian-12.qcow2"
  disk_size_gib = 20

  # Direct kernel boot (optional): files inside pool_dir.
  kernel  = "/var/lib/hsw/images/vmlinuz"
  initrd  = "/var/lib/hsw/images/initrd.img"
  cmdline = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

  hostname            = "controller"
  ssh_authorized_keys = [trimspace(file("~/.ssh/id_ed25519.pub"))]

  network_interface {
    network     = hsw_network.cluster.name
    ip          = "10.20.0.11"
    wait_for_ip = true
  }

  extra_disk {
    size_gib = 50
  }

  wait_for_ip_timeout = 300
}

output "controller_address" {
  value = hsw_vm.controller.network_interface[0].addresses[0]
}
