//! The VM model: the libvirt domain `hsw_vm` defines, its XML, and reading it back.
//!
//! What libvirt's domain XML cannot say by itself (the base image of the overlay, the requested accelerator and
//! CPU mode, cloud-init arguments, static addresses, timeouts) is kept as JSON inside the domain's `<metadata>`,
//! in an element of the [`METADATA_NS`] namespace, so that a VM can be imported from libvirt alone.

use super::xml::{read, XmlWriter};

/// The XML namespace of hsw's domain metadata.
pub const METADATA_NS: &str = "https://hyperscaler.github.io/hsw/xmlns/vm/1";
/// The element name (and prefix) of hsw's domain metadata.
pub const METADATA_KEY: &str = "hsw";

/// The accelerator a domain runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`<domain type='kvm'>`).
    Kvm,
    /// QEMU's software emulation (`<domain type='qemu'>`).
    Tcg,
}

impl Accel {
    /// The name used in configuration and state.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// libvirt's domain type.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }
}

/// The guest CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// The host CPU as is (fastest; KVM only).
    HostPassthrough,
    /// A named model close to the host CPU (KVM only).
    HostModel,
    /// No `<cpu>` element: libvirt's and QEMU's default model.
    Default,
}

impl CpuMode {
    /// Every mode, as written in configuration.
    pub const ALL: [&'static str; 3] = ["host-passthrough", "host-model", "default"];

    /// Reads a mode as written in configuration.
    pub fn parse(s: &str) -> Option<CpuMode> {
        Some(match s {
            "host-passthrough" => CpuMode::HostPassthrough,
            "host-model" => CpuMode::HostModel,
            "default" => CpuMode::Default,
            _ => return None,
        })
    }
}

/// A host device passed to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDev {
    /// A PCI function: (domain, bus, slot, function).
    Pci(u16, u8, u8, u8),
    /// A mediated device (vGPU, MIG-backed vGPU), by UUID.
    Mdev(String),
}

impl HostDev {
    /// The PCI address as written in configuration (`0000:3b:00.0`), for [`HostDev::Pci`].
    pub fn pci_string(&self) -> Option<String> {
        match self {
            HostDev::Pci(d, b, s, f) => Some(format!("{d:04x}:{b:02x}:{s:02x}.{f:x}")),
            HostDev::Mdev(_) => None,
        }
    }
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The libvirt network.
    pub network: String,
    /// The MAC address (lower case).
    pub mac: String,
}

/// A libvirt domain as hsw defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The libvirt name.
    pub name: String,
    /// The UUID, when known.
    pub uuid: Option<String>,
    /// Virtual CPUs.
    pub vcpu: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The accelerator.
    pub accel: Accel,
    /// The CPU mode requested; under TCG the host modes become a safe emulated model.
    pub cpu_mode: CpuMode,
    /// The root disk: a qcow2 overlay.
    pub root_disk: String,
    /// Extra qcow2 disks, in order (vdb, vdc, ...).
    pub data_disks: Vec<String>,
    /// The cloud-init NoCloud seed ISO, if any.
    pub seed_iso: Option<String>,
    /// Direct kernel boot: the kernel.
    pub kernel: Option<String>,
    /// Direct kernel boot: the initrd.
    pub initrd: Option<String>,
    /// Direct kernel boot: the command line.
    pub cmdline: Option<String>,
    /// Network interfaces, in order.
    pub nics: Vec<Nic>,
    /// Host devices.
    pub hostdevs: Vec<HostDev>,
    /// hsw's metadata (JSON text), stored in `<metadata>`.
    pub metadata: String,
}

/// The emulated CPU model used under TCG instead of the host modes.
pub const TCG_CPU_MODEL: &str = "qemu64";

fn disk_target(i: usize) -> String {
    // vda, vdb, ... vdz, then vdaa...: more than 26 disks are refused by the resource anyway.
    let letter = char::from(b'a' + u8::try_from(i % 26).unwrap_or(0));
    format!("vd{letter}")
}

impl VmSpec {
    /// The domain XML for `virDomainDefineXML`.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        w.open("domain", &[("type", self.accel.domain_type())]);
        w.text("name", &[], &self.name);
        if let Some(u) = &self.uuid {
            w.text("uuid", &[], u);
        }
        w.open("metadata", &[]);
        w.text("hsw:vm", &[("xmlns:hsw", METADATA_NS)], &self.metadata);
        w.close();
        w.text("memory", &[("unit", "MiB")], &self.memory_mib.to_string());
        w.text("vcpu", &[("placement", "static")], &self.vcpu.to_string());
        w.open("os", &[]);
        w.text("type", &[], "hvm");
        if let Some(k) = &self.kernel {
            w.text("kernel", &[], k);
        }
        if let Some(i) = &self.initrd {
            w.text("initrd", &[], i);
        }
        if let Some(c) = &self.cmdline {
            w.text("cmdline", &[], c);
        }
        w.empty("boot", &[("dev", "hd")]);
        w.close();
        w.open("features", &[]);
        w.empty("acpi", &[]);
        w.empty("apic", &[]);
        w.close();
        match (self.accel, self.cpu_mode) {
            (_, CpuMode::Default) => {}
            (Accel::Tcg, _) => {
                w.open(
                    "cpu",
                    &[("mode", "custom"), ("match", "exact"), ("check", "none")],
                );
                w.text("model", &[("fallback", "forbid")], TCG_CPU_MODEL);
                w.close();
            }
            (Accel::Kvm, CpuMode::HostPassthrough) => {
                w.empty("cpu", &[("mode", "host-passthrough"), ("check", "none")]);
            }
            (Accel::Kvm, CpuMode::HostModel) => {
                w.empty("cpu", &[("mode", "host-model"), ("check", "partial")]);
            }
        }
        w.empty("clock", &[("offset", "utc")]);
        w.text("on_poweroff", &[], "destroy");
        w.text("on_reboot", &[], "restart");
        w.text("on_crash", &[], "destroy");
        w.open("devices", &[]);
        for (i, path) in std::iter::once(&self.root_disk)
            .chain(&self.data_disks)
            .enumerate()
        {
            w.open("disk", &[("type", "file"), ("device", "disk")]);
            w.empty("driver", &[("name", "qemu"), ("type", "qcow2")]);
            w.empty("source", &[("file", path)]);
            w.empty("target", &[("dev", &disk_target(i)), ("bus", "virtio")]);
            w.close();
        }
        if let Some(iso) = &self.seed_iso {
            // The NoCloud seed is a read-only virtio disk after the data disks, not a CD-ROM:
            // cloud kernels (Debian's linux-image-cloud-amd64) have no AHCI driver for a SATA
            // CD-ROM, and q35 machines have no IDE. cloud-init finds it by its `cidata` label.
            w.open("disk", &[("type", "file"), ("device", "disk")]);
            w.empty("driver", &[("name", "qemu"), ("type", "raw")]);
            w.empty("source", &[("file", iso)]);
            w.empty(
                "target",
                &[
                    ("dev", &disk_target(1 + self.data_disks.len())),
                    ("bus", "virtio"),
                ],
            );
            w.empty("readonly", &[]);
            w.close();
        }
        for nic in &self.nics {
            w.open("interface", &[("type", "network")]);
            w.empty("mac", &[("address", &nic.mac)]);
            w.empty("source", &[("network", &nic.network)]);
            w.empty("model", &[("type", "virtio")]);
            w.close();
        }
        for dev in &self.hostdevs {
            match dev {
                HostDev::Pci(d, b, s, f) => {
                    w.open(
                        "hostdev",
                        &[("mode", "subsystem"), ("type", "pci"), ("managed", "yes")],
                    );
                    w.open("source", &[]);
                    w.empty(
                        "address",
                        &[
                            ("domain", &format!("0x{d:04x}")),
                            ("bus", &format!("0x{b:02x}")),
                            ("slot", &format!("0x{s:02x}")),
                            ("function", &format!("0x{f:x}")),
                        ],
                    );
                    w.close();
                    w.close();
                }
                HostDev::Mdev(uuid) => {
                    w.open(
                        "hostdev",
                        &[
                            ("mode", "subsystem"),
                            ("type", "mdev"),
                            ("model", "vfio-pci"),
                            ("managed", "no"),
                        ],
                    );
                    w.open("source", &[]);
                    w.empty("address", &[("uuid", uuid)]);
                    w.close();
                    w.close();
                }
            }
        }
        w.open("serial", &[("type", "pty")]);
        w.empty("target", &[("port", "0")]);
        w.close();
        w.open("console", &[("type", "pty")]);
        w.empty("target", &[("type", "serial"), ("port", "0")]);
        w.close();
        w.open("rng", &[("model", "virtio")]);
        w.text("backend", &[("model", "random")], "/dev/urandom");
        w.close();
        w.finish()
    }

    /// Reads a domain back from libvirt's XML. `cpu_mode` is not recoverable from the XML under TCG; it comes from
    /// the metadata, so this returns [`CpuMode::Default`] and the caller overrides it.
    pub fn from_xml(xml: &str) -> Result<VmSpec, String> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| format!("The domain XML cannot be read: {e}."))?;
        let root = doc.root_element();
        let name = read::child_text(root, "name").ok_or("The domain XML has no name.")?;
        let accel = match root.attribute("type") {
            Some("kvm") => Accel::Kvm,
            _ => Accel::Tcg,
        };
        let uuid = read::child_text(root, "uuid");
        let metadata = read::metadata_text(root, METADATA_NS, "vm").unwrap_or_default();
        let vcpu = read::child_text(root, "vcpu")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("Domain {name} has no valid vcpu element."))?;
        let memory_mib = read::child(root, "memory")
            .and_then(|m| {
                let n: u64 = m.text()?.trim().parse().ok()?;
                Some(match m.attribute("unit").unwrap_or("KiB") {
                    "b" | "bytes" => n >> 20,
                    "KiB" | "k" => n >> 10,
                    "MiB" | "M" => n,
                    "GiB" | "G" => n << 10,
                    _ => n >> 10,
                })
            })
            .ok_or_else(|| format!("Domain {name} has no valid memory element."))?;
        let os = read::child(root, "os");
        let os_text = |tag: &str| {
            os.and_then(|o| read::child_text(o, tag))
                .filter(|t| !t.is_empty())
        };
        let mut root_disk = None;
        let mut data_disks = Vec::new();
        let mut seed_iso = None;
        let mut nics = Vec::new();
        let mut hostdevs = Vec::new();
        if let Some(devices) = read::child(root, "devices") {
            for d in read::children(devices, "disk") {
                let Some(file) = read::child(d, "source").and_then(|s| read::attr(s, "file"))
                else {
                    continue;
                };
                let read_only = read::child(d, "readonly").is_some();
                match d.attribute("device") {
                    // A read-only disk is the seed (older hsw versions used a CD-ROM).
                    Some("cdrom") => seed_iso = Some(file),
                    _ if read_only => seed_iso = Some(file),
                    _ if root_disk.is_none() => root_disk = Some(file),
                    _ => data_disks.push(file),
                }
            }
            for i in read::children(devices, "interface") {
                let network = read::child(i, "source").and_then(|s| read::attr(s, "network"));
                let mac = read::child(i, "mac").and_then(|m| read::attr(m, "address"));
                if let (Some(network), Some(mac)) = (network, mac) {
                    nics.push(Nic {
                        network,
                        mac: mac.to_ascii_lowercase(),
                    });
                }
            }
            for h in read::children(devices, "hostdev") {
                let Some(addr) = read::child(h, "source").and_then(|s| read::child(s, "address"))
                else {
                    continue;
                };
                match h.attribute("type") {
                    Some("pci") => {
                        let num = |a: &str| {
                            addr.attribute(a)
                                .and_then(|v| {
                                    u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()
                                })
                                .unwrap_or(0)
                        };
                        hostdevs.push(HostDev::Pci(
                            u16::try_from(num("domain")).unwrap_or(0),
                            u8::try_from(num("bus")).unwrap_or(0),
                            u8::try_from(num("slot")).unwrap_or(0),
                            u8::try_from(num("function")).unwrap_or(0),
                        ));
                    }
                    Some("mdev") => {
                        if let Some(u) = addr.attribute("uuid") {
                            hostdevs.push(HostDev::Mdev(u.to_ascii_lowercase()));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(VmSpec {
            uuid,
            vcpu,
            memory_mib,
            accel,
            cpu_mode: CpuMode::Default,
            root_disk: root_disk.ok_or_else(|| format!("Domain {name} has no disk."))?,
            data_disks,
            seed_iso,
            kernel: os_text("kernel"),
            initrd: os_text("initrd"),
            cmdline: os_text("cmdline"),
            nics,
            hostdevs,
            metadata,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VmSpec {
        VmSpec {
            name: "node1".into(),
            uuid: Some("119b4bf3-558e-4d47-b3e1-7130d6c7ae0d".into()),
            vcpu: 2,
            memory_mib: 2048,
            accel: Accel::Tcg,
            cpu_mode: CpuMode::HostPassthrough,
            root_disk: "/pool/vms/node1/root.qcow2".into(),
            data_disks: vec!["/pool/vms/node1/data-1.qcow2".into()],
            seed_iso: Some("/pool/vms/node1/cidata.iso".into()),
            kernel: Some("/pool/vmlinuz".into()),
            initrd: Some("/pool/initrd.img".into()),
            cmdline: Some("root=/dev/vda rw console=ttyS0".into()),
            nics: vec![Nic {
                network: "lab".into(),
                mac: "52:54:00:aa:bb:cc".into(),
            }],
            hostdevs: vec![
                HostDev::Pci(0, 0x3b, 0, 0),
                HostDev::Mdev("c2177883-f1bb-47f0-914d-32a22e3a8804".into()),
            ],
            metadata: r#"{"base_image":"/pool/base.qcow2","note":"<&>"}"#.into(),
        }
    }

    #[test]
    fn golden_xml() {
        let xml = sample().to_xml();
        testkit::golden::check(
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/hsw/model/testdata/vm.xml"),
            &xml,
        );
        let back = VmSpec::from_xml(&xml).unwrap();
        assert_eq!(
            back,
            VmSpec {
                cpu_mode: CpuMode::Default,
                ..sample()
            }
        );
    }

    #[test]
    fn kvm_cpu_modes() {
        let mut s = sample();
        s.accel = Accel::Kvm;
        assert!(s.to_xml().contains("<domain type='kvm'>"));
        assert!(s
            .to_xml()
            .contains("<cpu mode='host-passthrough' check='none'/>"));
        s.cpu_mode = CpuMode::HostModel;
        assert!(s.to_xml().contains("<cpu mode='host-model'"));
        s.cpu_mode = CpuMode::Default;
        assert!(!s.to_xml().contains("<cpu"));
    }

    #[test]
    fn reads_libvirt_output() {
        // As dumped by libvirt: units in KiB, extra elements, another metadata prefix.
        let xml = "<domain type='qemu' id='3'><name>n</name><uuid>u</uuid>\
            <metadata><x:vm xmlns:x='https://hyperscaler.github.io/hsw/xmlns/vm/1'>{}</x:vm></metadata>\
            <memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288</currentMemory>\
            <vcpu placement='static'>1</vcpu><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>\
            <devices><disk type='file' device='disk'><source file='/p/r.qcow2'/><backingStore/></disk>\
            <interface type='network'><mac address='52:54:00:AA:00:01'/><source network='lab' bridge='b'/></interface>\
            </devices></domain>";
        let s = VmSpec::from_xml(xml).unwrap();
        assert_eq!(s.memory_mib, 512);
        assert_eq!(s.metadata, "{}");
        assert_eq!(s.nics[0].mac, "52:54:00:aa:00:01");
        assert_eq!(s.kernel, None);
    }
}
