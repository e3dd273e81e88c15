variable "name" {
  description = "The libvirt network name: 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", var.name))
    error_message = "The network name must be 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit."
  }
}

variable "subnet" {
  description = "The IPv4 subnet in CIDR form, such as `192.168.100.0/24`: a network address (host bits zero) with a prefix of 8 to 30."
  type        = string

  validation {
    condition = can(cidrhost(var.subnet, 0)) && can(regex("^[0-9.]+/[0-9]+$", var.subnet)) && (
      can(tonumber(split("/", var.subnet)[1])) ? (
        tonumber(split("/", var.subnet)[1]) >= 8 && tonumber(split("/", var.subnet)[1]) <= 30
      ) : false
    ) && (can(cidrhost(var.subnet, 0)) ? cidrhost(var.subnet, 0) == split("/", var.subnet)[0] : false)
    error_message = "The subnet must be an IPv4 network address in CIDR form (host bits zero, such as 192.168.100.0/24) with a prefix length of 8 to 30."
  }
}

variable "bridge" {
  description = "The host bridge interface name (at most 15 letters, digits, `_`, `.` or `-`). null: libvirt picks `virbrN`."
  type        = string
  default     = null

  validation {
    condition     = var.bridge == null || can(regex("^[A-Za-z0-9_.-]{1,15}$", var.bridge))
    error_message = "The bridge name must be 1 to 15 letters, digits, `_`, `.` or `-`."
  }
}

variable "gateway" {
  description = "The host's address on the bridge, which guests use as gateway and DNS server. null: the subnet's first usable address."
  type        = string
  default     = null

  validation {
    condition     = var.gateway == null || can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", var.gateway)) && can(cidrhost("${var.gateway}/32", 0))
    error_message = "The gateway must be an IPv4 address such as 192.168.100.1."
  }
}

variable "mode" {
  description = "How guests reach the outside: `isolated` (host and guests only), `nat`, `route` or `open` (routed, no firewall rules from libvirt)."
  type        = string
  default     = "isolated"

  validation {
    condition     = contains(["isolated", "nat", "route", "open"], var.mode)
    error_message = "The mode must be one of isolated, nat, route and open."
  }
}

variable "dns_domain" {
  description = "The DNS domain of the guests, answered by the network's dnsmasq (such as `hpc.example.internal`). null: no domain."
  type        = string
  default     = null

  validation {
    condition     = var.dns_domain == null || can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?([.][a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", var.dns_domain))
    error_message = "The DNS domain must be dot-separated labels of lowercase letters, digits and inner hyphens."
  }
}

variable "mtu" {
  description = "The bridge MTU in bytes (68 to 65535). null: libvirt's default."
  type        = number
  default     = null

  validation {
    condition     = var.mtu == null ? true : (var.mtu >= 68 && var.mtu <= 65535 && floor(var.mtu) == var.mtu)
    error_message = "The MTU must be a whole number from 68 to 65535."
  }
}

variable "autostart" {
  description = "Whether libvirt starts the network when libvirtd starts."
  type        = bool
  default     = true
}

variable "dhcp_start" {
  description = "The first dynamic DHCP address. null: the start of the subnet's last quarter. VMs with static addresses get DHCP reservations, so the network always has DHCP; keep their addresses out of the dynamic range."
  type        = string
  default     = null

  validation {
    condition     = var.dhcp_start == null || can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", var.dhcp_start)) && can(cidrhost("${var.dhcp_start}/32", 0))
    error_message = "The DHCP range start must be an IPv4 address."
  }
}

variable "dhcp_end" {
  description = "The last dynamic DHCP address. null: the subnet's last usable address."
  type        = string
  default     = null

  validation {
    condition     = var.dhcp_end == null || can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", var.dhcp_end)) && can(cidrhost("${var.dhcp_end}/32", 0))
    error_message = "The DHCP range end must be an IPv4 address."
  }
}

variable "dns_hosts" {
  description = "Extra names the network's DNS resolves: a list of `{ ip, hostnames }`."
  type = list(object({
    ip        = string
    hostnames = list(string)
  }))
  default = []

  validation {
    condition     = alltrue([for h in var.dns_hosts : can(cidrhost("${h.ip}/32", 0)) && length(h.hostnames) > 0])
    error_message = "Every DNS host needs an IPv4 address and at least one host name."
  }
}
