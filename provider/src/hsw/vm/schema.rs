//! The schema of `hsw_vm`: its attributes and their descriptions (the registry documentation is made from them).

use super::{DEFAULT_IP_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT};
use crate::framework::{Attribute, Block, NestedBlock, Nesting, Schema, Type};
use crate::hsw::model::vm::{DEFAULT_MMIO64_GIB, OVMF_CODE, OVMF_VARS};

/// The schema of `hsw_vm`.
pub fn schema() -> Schema {
    let path_desc = |what: &str| {
        format!("{what} An absolute path inside the provider's `pool_dir` (symbolic links may not lead out of it).")
    };
    Schema::new(
        Block::new()
            .describe(
                "A libvirt virtual machine whose root disk is a copy-on-write qcow2 overlay of a base image (the base \
                 is never copied or changed), with optional extra disks, direct kernel boot, a cloud-init NoCloud \
                 seed, network interfaces with static or dynamic addresses, and PCI or mediated host devices. \
                 Changes to `vcpu`, `memory`, `accelerator`, `cpu_mode`, `mmio64_gib` and `hostdev` shut the VM down (ACPI, then \
                 forced after `shutdown_timeout`), redefine it and start it again; changes to disks, images, boot, \
                 cloud-init or interfaces replace it.",
            )
            .attribute(Attribute::computed("id", Type::String).describe("The domain's libvirt UUID."))
            .attribute(
                Attribute::required("name", Type::String)
                    .requires_replace()
                    .describe("The libvirt domain name: 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit."),
            )
            .attribute(Attribute::required("vcpu", Type::Number).describe("Virtual CPUs (1 to 256)."))
            .attribute(Attribute::required("memory", Type::Number).describe("Memory in MiB (64 to 4194304)."))
            .attribute(Attribute::optional_computed("accelerator", Type::String).describe(
                "`kvm`, `tcg` (QEMU's emulation, slow but works anywhere) or `auto` (the default): KVM when it can \
                 run guests on the host (see the `hsw_host` data source), else TCG.",
            ))
            .attribute(
                Attribute::computed("accelerator_used", Type::String)
                    .describe("The accelerator the VM was defined with: `kvm` or `tcg`."),
            )
            .attribute(Attribute::optional_computed("cpu_mode", Type::String).describe(
                "The guest CPU: `host-passthrough`, `host-model` or `default` (the default: QEMU's model). Under TCG \
                 the host modes become the safe emulated model `qemu64`.",
            ))
            .attribute(
                Attribute::required("base_image", Type::String)
                    .requires_replace()
                    .describe(path_desc("The qcow2 base image. The VM's root disk is a qcow2 overlay backed by it; the base itself is never written.")),
            )
            .attribute(
                Attribute::optional("disk_size_gib", Type::Number)
                    .requires_replace()
                    .describe("The root disk's size in GiB, when it should be larger than the base image (the guest grows its file system, e.g. with cloud-init's growpart)."),
            )
            .attribute(
                Attribute::optional("kernel", Type::String)
                    .requires_replace()
                    .describe(path_desc("Direct kernel boot: the kernel image.")),
            )
            .attribute(
                Attribute::optional("initrd", Type::String)
                    .requires_replace()
                    .describe(path_desc("Direct kernel boot: the initrd (needs `kernel`).")),
            )
            .attribute(
                Attribute::optional("cmdline", Type::String)
                    .requires_replace()
                    .describe("Direct kernel boot: the kernel command line, such as `root=/dev/vda rw console=ttyS0` (needs `kernel`; no quotes, `$`, `;`, `&`, `|`, `<`, `>` or backslashes)."),
            )
            .attribute(
                Attribute::optional("user_data", Type::String)
                    .sensitive()
                    .requires_replace()
                    .describe("cloud-init user-data, verbatim. When not set and `hostname` or `ssh_authorized_keys` is, hsw writes a `#cloud-config` with them. Sensitive: kept out of plans, logs and the domain XML (stored mode 0600 in the VM's directory)."),
            )
            .attribute(
                Attribute::optional("meta_data", Type::String)
                    .requires_replace()
                    .describe("cloud-init meta-data, verbatim. Default: `instance-id` and `local-hostname` from the name (or `hostname`)."),
            )
            .attribute(
                Attribute::optional("network_config", Type::String)
                    .requires_replace()
                    .describe("cloud-init network-config (version 1 or 2), verbatim. Default: none (the guest's image decides, usually DHCP)."),
            )
            .attribute(
                Attribute::optional("hostname", Type::String)
                    .requires_replace()
                    .describe("The guest's host name, set through cloud-init."),
            )
            .attribute(
                Attribute::optional("ssh_authorized_keys", Type::list(Type::String))
                    .requires_replace()
                    .describe("SSH public keys for the default user, set through cloud-init (used only when `user_data` is not set)."),
            )
            .attribute(Attribute::optional_computed("running", Type::Bool).describe(
                "Whether the VM should be running. Default `true`. A VM stopped outside Terraform is started again.",
            ))
            .attribute(
                Attribute::optional_computed("autostart", Type::Bool)
                    .describe("Whether libvirt starts the VM when libvirtd starts. Default `false`."),
            )
            .attribute(
                Attribute::optional_computed("machine", Type::String)
                    .requires_replace()
                    .describe("The machine type: `pc` (i440fx, the default) or `q35` (PCI Express; what GPUs with large BARs and UEFI want)."),
            )
            .attribute(
                Attribute::optional_computed("firmware", Type::String)
                    .requires_replace()
                    .describe(format!(
                        "`bios` (SeaBIOS, the default) or `efi`: Debian's OVMF (package `ovmf`), its code `{OVMF_CODE}` read-only and a \
                         variable store of the VM's own, `nvram.fd` in the VM's directory (a 0600 copy of `{OVMF_VARS}`). \
                         The base image must boot with UEFI."
                    )),
            )
            .attribute(Attribute::optional("mmio64_gib", Type::Number).describe(format!(
                "q35 only: the size of the 64-bit PCI MMIO window (the `pcihole64` of the PCI Express root), in GiB, a \
                 power of two; {DEFAULT_MMIO64_GIB} when not set. GPUs map their BARs there: passing a \
                 whole GPU needs at least its BAR1 (`nvidia-smi -q -d MEMORY`, \"BAR1 Memory Usage\", 128 GiB on an \
                 80 GB A100 or H100) plus the other BARs. Changes apply by shutdown, redefinition and start."
            )))
            .attribute(Attribute::optional("wait_for_ip_timeout", Type::Number).describe(format!(
                "Seconds to wait for the addresses of interfaces with `wait_for_ip` (default {DEFAULT_IP_TIMEOUT})."
            )))
            .attribute(Attribute::optional("shutdown_timeout", Type::Number).describe(format!(
                "Seconds to wait for a graceful (ACPI) shutdown before powering off (default {DEFAULT_SHUTDOWN_TIMEOUT})."
            )))
            .block(NestedBlock::new(
                "network_interface",
                Nesting::List,
                Block::new()
                    .describe("A network interface (virtio) on an `hsw_network` or any libvirt network. Any change replaces the VM.")
                    .attribute(Attribute::required("network", Type::String).requires_replace().describe("The libvirt network name."))
                    .attribute(
                        Attribute::optional_computed("mac", Type::String)
                            .requires_replace()
                            .describe("The MAC address. Default: derived from the VM name and the interface's position, `52:54:00:xx:xx:xx`, stable across replacements."),
                    )
                    .attribute(
                        Attribute::optional("ip", Type::String)
                            .requires_replace()
                            .describe("A static IPv4 address: a DHCP reservation for the MAC, added to the network (which needs DHCP) and removed with the VM."),
                    )
                    .attribute(
                        Attribute::optional("wait_for_ip", Type::Bool)
                            .requires_replace()
                            .describe("Wait, when the VM starts, until the interface has an address in this boot: a DHCP lease taken or renewed after the start (a lease left from before a restart does not count), else, for an interface without DHCP leases, an entry in the host's ARP table."),
                    )
                    .attribute(
                        Attribute::computed("addresses", Type::list(Type::String))
                            .describe("IPv4 addresses seen for the interface (DHCP leases, else ARP); empty when stopped or not known yet."),
                    ),
            ))
            .block(NestedBlock::new(
                "extra_disk",
                Nesting::List,
                Block::new()
                    .describe("An extra empty qcow2 disk (`vdb`, `vdc`, ...). Any change replaces the VM.")
                    .attribute(Attribute::required("size_gib", Type::Number).requires_replace().describe("Size in GiB (1 to 65536).")),
            ))
            .block(NestedBlock::new(
                "hostdev",
                Nesting::List,
                Block::new()
                    .describe("A host device given to the guest: set exactly one of `pci` and `mdev`. Changes apply by shutdown, redefinition and start.")
                    .attribute(Attribute::optional("pci", Type::String).describe("A PCI function `domain:bus:slot.function`, such as `0000:3b:00.0` (managed: libvirt binds it to vfio-pci). Refused at plan and apply when its IOMMU group holds another device bound to a driver other than vfio-pci or pci-stub (read from the provider's `sysfs_root`): the guest would not get the group, or the host would lose that device."))
                    .attribute(Attribute::optional("mdev", Type::String).describe("A mediated device (vGPU) UUID; the mdev must exist."))
                    .attribute(Attribute::optional_computed("managed", Type::Bool).describe("With `pci` only: whether libvirt binds the device to vfio-pci while the VM runs (`true`, the default). `false` for the VF of an NVIDIA vendor-specific VFIO vGPU (vGPU 17+: the `hsw_mdev` id), which stays on the nvidia driver.")),
            )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_well_formed() {
        schema().check().unwrap();
    }
}
