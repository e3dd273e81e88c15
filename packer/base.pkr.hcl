# hsw base images, one per role: Debian 12 from the netinst ISO, with the security baseline and the node
# exporter, and per role (var.role, see README.md):
#   hpc    Munge, Slurm 22.05 (slurmd, slurmctld, client), Open MPI, the NFS client
#   cloud  containerd, runc, the Kubernetes prerequisites (overlay + br_netfilter, bridge/forwarding sysctls,
#          no swap); kubelet/kubeadm are not in Debian 12: with -var k8s_bundle=DIR (`hsw-cli bundle build`) the
#          offline bundle goes in (provision/45-k8s-bundle.sh, as scripts/build-image.sh --bundle does), otherwise
#          the cluster tooling installs them from pkgs.k8s.io
# The role picks the package list (packages/ROLE.list), the preseed (http/preseed-ROLE.cfg) and the role's
# provisioner (provision/40-ROLE.sh); everything else is shared.
#
#   cd packer && packer build -var role=hpc -var accelerator=kvm base.pkr.hcl
#
# Packer 1.6.6 (Debian 12): the qemu builder is built in; no `packer init`, no required_plugins.

packer {
  required_version = ">= 1.6.6"
}

variable "role" {
  type        = string
  description = "The image's role: hpc or cloud (no default: say which image to build)."
  validation {
    condition     = contains(["hpc", "cloud"], var.role)
    error_message = "The role must be hpc or cloud."
  }
}

variable "iso_url" {
  type        = string
  default     = "https://cdimage.debian.org/cdimage/archive/12.12.0/amd64/iso-cd/debian-12.12.0-amd64-netinst.iso"
  description = "Debian 12 netinst ISO (a URL or a local path)."
}

variable "iso_checksum" {
  type        = string
  default     = "sha256:dfc30e04fd095ac2c07e998f145e94bb8f7d3a8eca3a631d2eb012398deae531"
  description = "Literal checksum of iso_url (TYPE:HEX). Never `file:https://...`: `packer validate` would download it."
  validation {
    condition     = var.iso_checksum != "" && regex_replace(var.iso_checksum, "^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$", "") == ""
    error_message = "The iso_checksum must be a literal sha256:HEX or sha512:HEX."
  }
}

variable "mirror_host" {
  type        = string
  default     = "deb.debian.org"
  description = "Debian mirror host name (HTTP), passed to the installer on the kernel line."
  validation {
    condition     = var.mirror_host != "" && regex_replace(var.mirror_host, "^[A-Za-z0-9.-]+(:[0-9]+)?$", "") == ""
    error_message = "The mirror_host must be a host name, optionally with :PORT."
  }
}

variable "mirror_dir" {
  type        = string
  default     = "/debian"
  description = "Directory of the Debian archive on mirror_host."
  validation {
    condition     = var.mirror_dir != "" && regex_replace(var.mirror_dir, "^/[A-Za-z0-9._/-]*$", "") == ""
    error_message = "The mirror_dir must be an absolute path without spaces."
  }
}

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "QEMU accelerator: kvm (fast; needs /dev/kvm) or tcg (emulation: works anywhere, several times slower)."
  validation {
    condition     = contains(["kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be kvm or tcg."
  }
}

variable "k8s_bundle" {
  type        = string
  default     = ""
  description = "A Kubernetes bundle directory made by `hsw-cli bundle build` (its bundle.json, bin/, images/), baked into the cloud image; empty: none. With role=hpc the build refuses one."
  validation {
    condition     = var.k8s_bundle == "" || regex_replace(var.k8s_bundle, "^/[A-Za-z0-9._/-]+$", "") == ""
    error_message = "The k8s_bundle must be empty or an absolute path without spaces."
  }
}

variable "memory" {
  type        = number
  default     = 2048
  description = "Memory of the build VM, in MiB."
}

variable "cpus" {
  type        = number
  default     = 2
  description = "vCPUs of the build VM."
}

variable "disk_size" {
  type        = string
  default     = "20G"
  description = "Virtual size of the qcow2 disk (the file itself stays small)."
}

variable "headless" {
  type        = bool
  default     = true
  description = "No QEMU window (the console is on VNC, 127.0.0.1)."
}

variable "hostname" {
  type        = string
  default     = ""
  description = "Host name during the build (cloud-init sets each VM's own); empty: ROLE-base."
  validation {
    condition     = var.hostname == "" || regex_replace(var.hostname, "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", "") == ""
    error_message = "The hostname must be one DNS label."
  }
}

variable "domain" {
  type        = string
  default     = "localdomain"
  description = "Domain during the build."
  validation {
    condition     = var.domain != "" && regex_replace(var.domain, "^[a-z0-9.-]+$", "") == ""
    error_message = "The domain must be a DNS name."
  }
}

variable "ssh_username" {
  type        = string
  default     = "hswbuild"
  description = "Build-only user (created by the installer, deleted before shutdown)."
  validation {
    condition     = var.ssh_username != "" && regex_replace(var.ssh_username, "^[a-z][a-z0-9-]{0,30}$", "") == "" && var.ssh_username != "hsw"
    error_message = "The ssh_username must be a lowercase user name other than hsw (cloud-init's default user)."
  }
}

variable "build_password" {
  type        = string
  default     = "hsw-build-only"
  sensitive   = true
  description = "Password of the build-only user. It exists only while the VM is being built (the user is deleted and sshd takes keys only afterwards); override it with -var or PKR_VAR_build_password."
  validation {
    condition     = var.build_password != "" && regex_replace(var.build_password, "^[A-Za-z0-9._+-]{8,64}$", "") == ""
    error_message = "The build_password must be 8-64 characters of A-Z a-z 0-9 . _ + - (it is typed on the installer's kernel line)."
  }
}

variable "ssh_timeout" {
  type        = string
  default     = "3h"
  description = "How long to wait for the installer to finish and sshd to answer (TCG installs take long)."
}

variable "output_directory" {
  type        = string
  default     = ""
  description = "Where the qcow2, its checksum and the manifest are written (must not exist); empty: output/ROLE-base."
}

locals {
  name             = "${var.role}-base"
  vm_name          = "${local.name}.qcow2"
  hostname         = var.hostname != "" ? var.hostname : local.name
  output_directory = var.output_directory != "" ? var.output_directory : "output/${local.name}"
  # The package set: packages/common.list + packages/ROLE.list, parsed like packages/list.sh does
  # ('#' starts a comment, blank lines ignored, first occurrence kept). check.sh compares the two.
  # Packer 1.6.6's file() resolves a relative path against the template's directory, later versions against
  # the current one: try both.
  packages = distinct(compact(flatten([
    for f in ["common", var.role] : [
      for l in split("\n", try(file("${path.root}/packages/${f}.list"), file("packages/${f}.list"))) :
      trimspace(split("#", l)[0])
    ]
  ])))
}

source "qemu" "base" {
  iso_url          = var.iso_url
  iso_checksum     = var.iso_checksum
  output_directory = local.output_directory
  vm_name          = local.vm_name
  format           = "qcow2"
  disk_size        = var.disk_size
  disk_interface   = "virtio"
  disk_discard     = "unmap"
  disk_compression = true
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  headless         = var.headless
  memory           = var.memory
  cpus             = var.cpus

  http_directory = "${path.root}/http"
  boot_wait      = "5s"
  # The "auto" entry of the ISO's boot menu, with the preseed URL and the answers that are needed before
  # the preseed file can be fetched (network) or that come from variables (mirror, build user).
  boot_command = [
    "<wait><esc><wait>",
    "auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed-${var.role}.cfg",
    " auto=true priority=critical interface=auto",
    " hostname=${local.hostname} domain=${var.domain}",
    " mirror/http/hostname=${var.mirror_host} mirror/http/directory=${var.mirror_dir}",
    " passwd/username=${var.ssh_username}",
    " passwd/user-password=${var.build_password} passwd/user-password-again=${var.build_password}",
    "<enter>",
  ]

  communicator           = "ssh"
  ssh_username           = var.ssh_username
  ssh_password           = var.build_password
  ssh_timeout            = var.ssh_timeout
  ssh_handshake_attempts = 100

  # Last step of the build, as root: the SSH host keys, the build user and its sudo rule go; then power off.
  # Each step must succeed, or the VM stays up and the build fails on shutdown_timeout.
  shutdown_command = "sudo sh -c 'rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub && rm -f /etc/sudoers.d/90-hsw-build && userdel -f -r ${var.ssh_username} && shutdown -P now'"
  shutdown_timeout = "15m"
}

build {
  sources = ["source.qemu.base"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/hsw-files /tmp/hsw-bundle"]
  }

  # The Kubernetes bundle, when var.k8s_bundle names one. Packer 1.6.6 cannot skip a provisioner on a variable,
  # so without one it uploads files/ again: no bundle.json there, and 45-k8s-bundle.sh does nothing.
  provisioner "file" {
    source      = var.k8s_bundle != "" ? "${var.k8s_bundle}/" : "${path.root}/files/"
    destination = "/tmp/hsw-bundle"
  }

  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "/tmp/hsw-files"
  }

  provisioner "shell" {
    execute_command = "chmod +x '{{ .Path }}' && sudo env {{ .Vars }} '{{ .Path }}'"
    environment_vars = [
      "DEBIAN_FRONTEND=noninteractive",
      "HSW_ROLE=${var.role}",
      "HSW_PACKAGES=${join(" ", local.packages)}",
      "HSW_FILES=/tmp/hsw-files",
      "HSW_BUNDLE=/tmp/hsw-bundle",
    ]
    scripts = [
      "${path.root}/provision/10-packages.sh",
      "${path.root}/provision/20-security.sh",
      "${path.root}/provision/30-monitoring.sh",
      "${path.root}/provision/40-${var.role}.sh",
      "${path.root}/provision/45-k8s-bundle.sh",
      "${path.root}/provision/46-mlflow.sh",
      "${path.root}/provision/90-cleanup.sh",
    ]
  }

  # Next to the qcow2: packer's checksum file (sha256, `sha256sum -c` reads it), a manifest, and a check of both.
  post-processor "checksum" {
    checksum_types      = ["sha256"]
    output              = "${local.output_directory}/${local.vm_name}.sha256"
    keep_input_artifact = true
  }

  post-processor "manifest" {
    output     = "${local.output_directory}/manifest.json"
    strip_path = true
    custom_data = {
      role         = var.role
      iso_url      = var.iso_url
      iso_checksum = var.iso_checksum
      accelerator  = var.accelerator
      packages     = join(",", local.packages)
      k8s_bundle   = var.k8s_bundle
    }
  }

  post-processor "shell-local" {
    inline = [
      "cd '${local.output_directory}' && sha256sum -c '${local.vm_name}.sha256' && test -s manifest.json",
    ]
    keep_input_artifact = true
  }
}
