variable "uri" {
  type        = string
  description = "The sandbox libvirtd's URI (scripts/sandbox.sh env URI)."
}

variable "pool_dir" {
  type        = string
  description = "The provider's pool directory; the image files below must be inside it."
}

variable "base_image" {
  type = string
}

variable "kernel" {
  type = string
}

variable "initrd" {
  type = string
}

variable "ssh_public_key" {
  type = string
}

variable "node_ip" {
  type        = string
  default     = "192.168.150.50"
  description = "The node's static address (a DHCP reservation); empty for a dynamic one."
}

variable "node_vcpu" {
  type    = number
  default = 1
}

variable "node_memory" {
  type    = number
  default = 512
}

variable "idle_vcpu" {
  type    = number
  default = 1
}

variable "idle_memory" {
  type    = number
  default = 256
}

variable "with_kill_vm" {
  type    = bool
  default = false
}

variable "boot_timeout" {
  type    = number
  default = 300
}
