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

/// The machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// i440fx (`pc`): what libvirt picks by default; the domain XML names no machine.
    Pc,
    /// q35 with PCI Express (what large-BAR GPUs and OVMF want).
    Q35,
}

impl Machine {
    /// Every machine, as written in configuration.
    pub const ALL: [&'static str; 2] = ["pc", "q35"];

    /// Reads a machine as written in configuration.
    pub fn parse(s: &str) -> Option<Machine> {
        match s {
            "pc" => Some(Machine::Pc),
            "q35" => Some(Machine::Q35),
            _ => None,
        }
    }

    /// As written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }
}

/// Debian's OVMF (package `ovmf`): the UEFI code (read-only, shared by every VM) and the variable store template
/// (copied 0600 into each UEFI VM's directory as its NVRAM). One place: `hsw-cli check`'s `ovmf` looks for them.
pub use hsw_core::host::check::{OVMF_CODE, OVMF_VARS};
/// The 64-bit PCI MMIO window of a q35 VM when `mmio64_gib` is not set, in GiB: room for the BARs of vGPUs and of
/// GPUs with up to 32 GiB of BAR1 (an 80 GB A100 or H100 has 128 GiB of BAR1 and needs more).
pub const DEFAULT_MMIO64_GIB: u64 = 64;

/// UEFI firmware: the OVMF code and the VM's own NVRAM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Efi {
    /// The read-only code (pflash).
    pub code: String,
    /// The VM's variable store.
    pub nvram: String,
    /// What libvirt copies to `nvram` when it is missing.
    pub template: String,
}

/// A host device passed to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDev {
    /// A PCI function: (domain, bus, slot, function), which libvirt binds to vfio-pci (`managed='yes'`).
    Pci(u16, u8, u8, u8),
    /// A PCI function left on its driver (`managed='no'`): the VF of an NVIDIA vendor-specific VFIO vGPU, which
    /// the nvidia driver itself serves through VFIO.
    UnmanagedPci(u16, u8, u8, u8),
    /// A mediated device (vGPU, MIG-backed vGPU), by UUID.
    Mdev(String),
}

impl HostDev {
    /// The PCI address as written in configuration (`0000:3b:00.0`), for [`HostDev::Pci`].
    pub fn pci_string(&self) -> Option<String> {
        match self {
            HostDev::Pci(d, b, s, f) | HostDev::UnmanagedPci(d, b, s, f) => {
                Some(format!("{d:04x}:{b:02x}:{s:02x}.{f:x}"))
            }
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
    /// The root disk's backing file (the shared base image, qcow2), when known. Declared in the domain with
    /// `<seclabel model='dac' relabel='no'/>`: libvirt's dynamic ownership would otherwise give the shared base
    /// image to QEMU's user while the VM runs, making it writable by every guest's QEMU.
    pub root_backing: Option<String>,
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
    /// The machine type.
    pub machine: Machine,
    /// UEFI firmware; `None`: SeaBIOS (libvirt's default).
    pub efi: Option<Efi>,
    /// q35 only: the 64-bit PCI MMIO window (`<pcihole64>` of the `pcie-root` controller), in GiB.
    pub mmio64_gib: Option<u64>,
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
        match self.machine {
            Machine::Pc => w.text("type", &[], "hvm"),
            Machine::Q35 => w.text("type", &[("machine", "q35")], "hvm"),
        };
        // The loader is named (not `firmware='efi'`, which lets libvirt pick any firmware), so every host runs
        // Debian's OVMF, from its code and this VM's own variable store.
        if let Some(efi) = &self.efi {
            w.text(
                "loader",
                &[("readonly", "yes"), ("secure", "no"), ("type", "pflash")],
                &efi.code,
            );
            w.text("nvram", &[("template", &efi.template)], &efi.nvram);
        }
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
        if let (Machine::Q35, Some(gib)) = (self.machine, self.mmio64_gib) {
            w.open(
                "controller",
                &[("type", "pci"), ("index", "0"), ("model", "pcie-root")],
            );
            w.text(
                "pcihole64",
                &[("unit", "KiB")],
                &gib.saturating_mul(1 << 20).to_string(),
            );
            w.close();
        }
        for (i, path) in std::iter::once(&self.root_disk)
            .chain(&self.data_disks)
            .enumerate()
        {
            w.open("disk", &[("type", "file"), ("device", "disk")]);
            w.empty("driver", &[("name", "qemu"), ("type", "qcow2")]);
            w.empty("source", &[("file", path)]);
            if let (0, Some(base)) = (i, &self.root_backing) {
                w.open("backingStore", &[("type", "file")]);
                w.empty("format", &[("type", "qcow2")]);
                w.open("source", &[("file", base)]);
                w.empty("seclabel", &[("model", "dac"), ("relabel", "no")]);
                w.close();
                w.empty("backingStore", &[]);
                w.close();
            }
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
                HostDev::Pci(d, b, s, f) | HostDev::UnmanagedPci(d, b, s, f) => {
                    let managed = if matches!(dev, HostDev::Pci(..)) {
                        "yes"
                    } else {
                        "no"
                    };
                    w.open(
                        "hostdev",
                        &[("mode", "subsystem"), ("type", "pci"), ("managed", managed)],
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
        let machine = os
            .and_then(|o| read::child(o, "type"))
            .and_then(|t| t.attribute("machine"))
            .map_or(Machine::Pc, |m| {
                if m.contains("q35") {
                    Machine::Q35
                } else {
                    Machine::Pc
                }
            });
        let efi = os.and_then(|o| read::child(o, "loader")).and_then(|l| {
            let nvram = os.and_then(|o| read::child(o, "nvram"));
            Some(Efi {
                code: l.text()?.trim().to_owned(),
                nvram: nvram
                    .and_then(|n| n.text())
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                template: nvram
                    .and_then(|n| n.attribute("template"))
                    .unwrap_or_default()
                    .to_owned(),
            })
        });
        let mut mmio64_gib = None;
        let mut root_disk = None;
        let mut root_backing = None;
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
                    _ if root_disk.is_none() => {
                        root_disk = Some(file);
                        root_backing = read::child(d, "backingStore")
                            .and_then(|b| read::child(b, "source"))
                            .and_then(|s| read::attr(s, "file"));
                    }
                    _ => data_disks.push(file),
                }
            }
            for c in read::children(devices, "controller") {
                if c.attribute("model") == Some("pcie-root") {
                    mmio64_gib = read::child(c, "pcihole64").and_then(|h| {
                        let n: u64 = h.text()?.trim().parse().ok()?;
                        Some(match h.attribute("unit").unwrap_or("KiB") {
                            "GiB" | "G" => n,
                            "MiB" | "M" => n >> 10,
                            _ => n >> 20,
                        })
                    });
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
                        let at = (
                            u16::try_from(num("domain")).unwrap_or(0),
                            u8::try_from(num("bus")).unwrap_or(0),
                            u8::try_from(num("slot")).unwrap_or(0),
                            u8::try_from(num("function")).unwrap_or(0),
                        );
                        hostdevs.push(match h.attribute("managed") {
                            Some("no") => HostDev::UnmanagedPci(at.0, at.1, at.2, at.3),
                            _ => HostDev::Pci(at.0, at.1, at.2, at.3),
                        });
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
            root_backing,
            data_disks,
            seed_iso,
            kernel: os_text("kernel"),
            initrd: os_text("initrd"),
            cmdline: os_text("cmdline"),
            nics,
            hostdevs,
            machine,
            efi,
            mmio64_gib,
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
            root_backing: Some("/pool/base.qcow2".into()),
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
            machine: Machine::Pc,
            efi: None,
            mmio64_gib: None,
            metadata: r#"{"base_image":"/pool/base.qcow2","note":"<&>"}"#.into(),
        }
    }

    /// A GPU VM as `hsw-cli generate` asks for one: q35, OVMF with its own NVRAM, a 64-bit MMIO window, KVM.
    fn gpu_vm(hostdevs: Vec<HostDev>, mmio64_gib: u64) -> VmSpec {
        VmSpec {
            name: "hpc-gpu-1".into(),
            accel: Accel::Kvm,
            cpu_mode: CpuMode::HostPassthrough,
            kernel: None,
            initrd: None,
            cmdline: None,
            hostdevs,
            machine: Machine::Q35,
            efi: Some(Efi {
                code: OVMF_CODE.into(),
                nvram: "/pool/vms/hpc-gpu-1/nvram.fd".into(),
                template: OVMF_VARS.into(),
            }),
            mmio64_gib: Some(mmio64_gib),
            ..sample()
        }
    }

    fn golden(name: &str) -> String {
        format!(
            "{}/src/hsw/model/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn golden_gpu_vms_read_back() {
        let cases = [
            (
                "vm-vgpu.xml",
                gpu_vm(
                    vec![HostDev::Mdev("c2177883-f1bb-47f0-914d-32a22e3a8804".into())],
                    DEFAULT_MMIO64_GIB,
                ),
            ),
            (
                "vm-passthrough.xml",
                gpu_vm(vec![HostDev::Pci(0, 0x41, 0, 0)], 256),
            ),
            (
                "vm-vgpu-vendor-vfio.xml",
                gpu_vm(
                    vec![HostDev::UnmanagedPci(0, 0xc1, 0, 4)],
                    DEFAULT_MMIO64_GIB,
                ),
            ),
        ];
        for (file, spec) in cases {
            let xml = spec.to_xml();
            testkit::golden::check(golden(file), &xml);
            assert!(xml.contains("<type machine='q35'>hvm</type>"), "{xml}");
            let back = VmSpec::from_xml(&xml).unwrap();
            assert_eq!(
                back,
                VmSpec {
                    cpu_mode: CpuMode::Default,
                    ..spec
                }
            );
        }
        // What libvirt dumps: the expanded machine name, the window in KiB.
        let dumped = "<domain type='kvm'><name>n</name><memory unit='KiB'>1048576</memory><vcpu>1</vcpu>\
            <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><loader readonly='yes' type='pflash'>/c.fd</loader>\
            <nvram template='/t.fd'>/n.fd</nvram></os><devices><controller type='pci' index='0' model='pcie-root'>\
            <pcihole64 unit='KiB'>134217728</pcihole64></controller><disk type='file' device='disk'>\
            <source file='/r.qcow2'/></disk></devices></domain>";
        let s = VmSpec::from_xml(dumped).unwrap();
        assert_eq!((s.machine, s.mmio64_gib), (Machine::Q35, Some(128)));
        assert_eq!(
            s.efi.map(|e| (e.code, e.nvram, e.template)),
            Some(("/c.fd".into(), "/n.fd".into(), "/t.fd".into()))
        );
    }

    /// The goldens are domains libvirt accepts: checked against libvirt's schema by `virt-xml-validate` (Debian's
    /// libvirt-clients, with xmllint from libxml2-utils).
    #[test]
    fn goldens_pass_virt_xml_validate() {
        let var = testkit::require::VIRT_XML_VALIDATE;
        let (Some(tool), Some(_)) = (
            testkit::require::tool("virt-xml-validate", var),
            testkit::require::tool("xmllint", var),
        ) else {
            return;
        };
        for file in [
            "vm.xml",
            "vm-vgpu.xml",
            "vm-passthrough.xml",
            "vm-vgpu-vendor-vfio.xml",
        ] {
            let out = std::process::Command::new(&tool)
                .arg(golden(file))
                .arg("domain")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{file} does not validate:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
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
