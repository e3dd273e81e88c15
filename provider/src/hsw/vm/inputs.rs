//! Config → domain input: plan-time checks of every attribute, the checked [`Inputs`] of a planned value, the
//! plan's defaults, where a VM's files go ([`Layout`]), and what the inputs make: the domain spec, the hsw metadata,
//! the cloud-init seed files.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backend::storage::SeedFile;
use crate::framework::{AttrPath, Diagnostic, Diagnostics, PlanOutcome, PlanRequest, Value};
use crate::hsw::model::network::DhcpHost;
use crate::hsw::model::vm::{
    Accel, CpuMode, Efi, HostDev, Machine, Nic, VmSpec, DEFAULT_MMIO64_GIB, OVMF_CODE, OVMF_VARS,
};
use crate::hsw::planning::{default_attr, plan_with};
use crate::hsw::validate;
use crate::hsw::values::{items, missing, opt_str, opt_u64, req_str, str_list};

/// One interface as configured.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NicIn {
    pub(super) network: String,
    pub(super) mac: String,
    pub(super) ip: Option<Ipv4Addr>,
    pub(super) wait: Option<bool>,
}

/// Everything a planned value says, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Inputs {
    pub(super) name: String,
    pub(super) vcpu: u32,
    pub(super) memory: u64,
    pub(super) accelerator: String,
    pub(super) cpu_mode: String,
    pub(super) base_image: String,
    pub(super) disk_size_gib: Option<u64>,
    pub(super) extra_disks: Vec<u64>,
    pub(super) kernel: Option<String>,
    pub(super) initrd: Option<String>,
    pub(super) cmdline: Option<String>,
    pub(super) user_data: Option<String>,
    pub(super) meta_data: Option<String>,
    pub(super) network_config: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) ssh_keys: Option<Vec<String>>,
    pub(super) nics: Vec<NicIn>,
    pub(super) hostdevs: Vec<HostDev>,
    pub(super) machine: Machine,
    pub(super) efi: bool,
    pub(super) mmio64_gib: Option<u64>,
    pub(super) running: bool,
    pub(super) autostart: bool,
    pub(super) ip_timeout: Option<u64>,
    pub(super) shutdown_timeout: Option<u64>,
}

/// The firmwares, as written in configuration.
pub(super) const FIRMWARES: [&str; 2] = ["bios", "efi"];

/// The deterministic MAC of interface `index` of VM `name`: `52:54:00` and three bytes of SHA-256.
pub fn default_mac(name: &str, index: usize) -> String {
    let h = Sha256::digest(format!("hsw-vm/{name}/{index}").as_bytes());
    format!("52:54:00:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
}

/// Plan-time checks of every known value, each diagnostic at its attribute.
pub(super) fn check(v: &Value, pool_dir: Option<&Path>) -> Diagnostics {
    let mut d = Diagnostics::new();
    let mut bad =
        |path: AttrPath, summary: &str, m: String| d.push(Diagnostic::error(summary, m).at(path));
    let s = |n: &str| v.get(n).as_str();
    if let Some(n) = s("name") {
        if let Err(m) = validate::name(n) {
            bad(AttrPath::attr("name"), "Invalid VM name", m);
        }
    }
    for (attr, min, max) in [
        ("vcpu", 1, 256),
        ("memory", 64, 4_194_304),
        ("disk_size_gib", 1, 65536),
        ("wait_for_ip_timeout", 1, 86400),
        ("shutdown_timeout", 1, 86400),
    ] {
        if let Some(n) = v.get(attr).as_number() {
            if n.as_u64().is_none_or(|x| !(min..=max).contains(&x)) {
                bad(
                    AttrPath::attr(attr),
                    "Value out of range",
                    format!("{attr} is {n}: use a whole number from {min} to {max}."),
                );
            }
        }
    }
    if let Some(a) = s("accelerator") {
        if !["auto", "kvm", "tcg"].contains(&a) {
            bad(
                AttrPath::attr("accelerator"),
                "Invalid accelerator",
                format!(
                    "{} is not an accelerator: use auto, kvm or tcg.",
                    validate::quote(a)
                ),
            );
        }
    }
    if let Some(c) = s("cpu_mode") {
        if CpuMode::parse(c).is_none() {
            bad(
                AttrPath::attr("cpu_mode"),
                "Invalid CPU mode",
                format!(
                    "{} is not a CPU mode: use one of {}.",
                    validate::quote(c),
                    CpuMode::ALL.join(", ")
                ),
            );
        }
    }
    for attr in ["base_image", "kernel", "initrd"] {
        if let Some(p) = s(attr) {
            let r = validate::absolute_path(p).and_then(|()| match pool_dir {
                Some(pool) => validate::inside_pool(p, pool).and_then(|()| {
                    if Path::new(p).starts_with(pool.join("vms")) {
                        Err(format!("{} is inside {}, where hsw keeps the VMs' own disks: put images elsewhere in the pool directory.", validate::quote(p), pool.join("vms").display()))
                    } else {
                        Ok(())
                    }
                }),
                None => Ok(()),
            });
            if let Err(m) = r {
                bad(AttrPath::attr(attr), "Invalid path", m);
            }
        }
    }
    if let Some(c) = s("cmdline") {
        if let Err(m) = validate::cmdline(c) {
            bad(AttrPath::attr("cmdline"), "Invalid kernel command line", m);
        }
    }
    for attr in ["initrd", "cmdline"] {
        if !v.get(attr).is_null() && v.get("kernel").is_null() {
            bad(
                AttrPath::attr(attr),
                "Kernel missing",
                format!(
                    "{attr} is used only for direct kernel boot: set kernel too, or remove {attr}."
                ),
            );
        }
    }
    for attr in ["user_data", "meta_data", "network_config"] {
        if let Some(t) = s(attr) {
            if let Err(m) = validate::file_text(t) {
                // Never quote user_data: it may hold secrets.
                bad(AttrPath::attr(attr), "Invalid cloud-init data", m);
            }
        }
    }
    if let Some(h) = s("hostname") {
        if let Err(m) = validate::hostname(h) {
            bad(AttrPath::attr("hostname"), "Invalid host name", m);
        }
    }
    for (at, k) in items(v, "ssh_authorized_keys") {
        if let Some(k) = k.as_str() {
            if let Err(m) = validate::ssh_key(k) {
                bad(at, "Invalid SSH key", m);
            }
        }
    }
    let mut macs = HashSet::new();
    for (at, nic) in items(v, "network_interface") {
        if let Some(n) = nic.get("network").as_str() {
            if let Err(m) = validate::name(n) {
                bad(at.then_attr("network"), "Invalid network name", m);
            }
        }
        if let Some(m) = nic.get("mac").as_str() {
            match validate::mac(m) {
                Err(m) => bad(at.then_attr("mac"), "Invalid MAC address", m),
                Ok(m) if !macs.insert(m.clone()) => {
                    bad(
                        at.then_attr("mac"),
                        "Duplicate MAC address",
                        format!("{m} is used by two interfaces: give each its own."),
                    );
                }
                Ok(_) => {}
            }
        }
        if let Some(ip) = nic.get("ip").as_str() {
            if let Err(m) = validate::ipv4(ip) {
                bad(at.then_attr("ip"), "Invalid address", m);
            }
        }
    }
    for (at, disk) in items(v, "extra_disk") {
        if let Some(n) = disk.get("size_gib").as_number() {
            if n.as_u64().is_none_or(|x| !(1..=65536).contains(&x)) {
                bad(
                    at.then_attr("size_gib"),
                    "Value out of range",
                    format!("size_gib is {n}: use a whole number from 1 to 65536."),
                );
            }
        }
    }
    if v.get("extra_disk").as_slice().is_some_and(|d| d.len() > 20) {
        bad(
            AttrPath::attr("extra_disk"),
            "Too many disks",
            "A VM can have at most 20 extra disks.".into(),
        );
    }
    if let Some(m) = v.get("machine").as_str() {
        if Machine::parse(m).is_none() {
            bad(
                AttrPath::attr("machine"),
                "Invalid machine",
                format!(
                    "{} is not a machine: use one of {}.",
                    validate::quote(m),
                    Machine::ALL.join(", ")
                ),
            );
        }
    }
    if let Some(f) = v.get("firmware").as_str() {
        if !FIRMWARES.contains(&f) {
            bad(
                AttrPath::attr("firmware"),
                "Invalid firmware",
                format!("{} is not a firmware: use bios or efi.", validate::quote(f)),
            );
        }
    }
    if let Some(n) = v.get("mmio64_gib").as_number() {
        if n.as_u64()
            .is_none_or(|x| !x.is_power_of_two() || !(1..=65536).contains(&x))
        {
            bad(
                AttrPath::attr("mmio64_gib"),
                "Value out of range",
                format!("mmio64_gib is {n}: use a power of two from 1 to 65536."),
            );
        } else if v.get("machine").is_wholly_known() && v.get("machine").as_str() != Some("q35") {
            bad(
                AttrPath::attr("mmio64_gib"),
                "Needs q35",
                "mmio64_gib sizes the 64-bit window of q35's PCI Express root: set machine = \"q35\".".into(),
            );
        }
    }
    for (at, h) in items(v, "hostdev") {
        let (pci, mdev) = (h.get("pci"), h.get("mdev"));
        if pci.is_wholly_known() && mdev.is_wholly_known() && pci.is_null() == mdev.is_null() {
            bad(
                at.clone(),
                "Invalid host device",
                "Set exactly one of pci and mdev in each hostdev block.".into(),
            );
        }
        if let Some(p) = pci.as_str() {
            if let Err(m) = validate::pci_address(p) {
                bad(at.then_attr("pci"), "Invalid PCI address", m);
            }
        }
        if let Some(u) = mdev.as_str() {
            if let Err(m) = validate::uuid(u) {
                bad(at.then_attr("mdev"), "Invalid mdev UUID", m);
            }
            if h.get("managed").as_bool().is_some() {
                bad(
                    at.then_attr("managed"),
                    "Invalid host device",
                    "managed applies to pci devices only: leave it unset for an mdev.".into(),
                );
            }
        }
    }
    d
}

pub(super) fn inputs(v: &Value, pool_dir: &Path) -> Result<Inputs, Diagnostics> {
    let d = check(v, Some(pool_dir));
    if d.has_errors() {
        return Err(d);
    }
    let root = AttrPath::root();
    let name = req_str(v, "name", &root)?;
    let num = |n: &str, min, max| -> Result<u64, Diagnostics> {
        opt_u64(v, n, &root, min, max)?.ok_or_else(|| missing(AttrPath::attr(n)))
    };
    let mut nics = Vec::new();
    for (i, (at, nic)) in items(v, "network_interface").enumerate() {
        let mac = match nic.get("mac").as_str() {
            Some(m) => validate::mac(m).map_err(|m| {
                Diagnostics::error_at(at.then_attr("mac"), "Invalid MAC address", m)
            })?,
            None => default_mac(&name, i),
        };
        nics.push(NicIn {
            network: req_str(nic, "network", &at)?,
            mac,
            ip: nic.get("ip").as_str().and_then(|s| s.parse().ok()),
            wait: nic.get("wait_for_ip").as_bool(),
        });
    }
    let mut extra_disks = Vec::new();
    for (at, disk) in items(v, "extra_disk") {
        extra_disks.push(
            opt_u64(disk, "size_gib", &at, 1, 65536)?
                .ok_or_else(|| missing(at.then_attr("size_gib")))?,
        );
    }
    let mut hostdevs = Vec::new();
    for (_, h) in items(v, "hostdev") {
        if let Some(p) = h.get("pci").as_str() {
            let (d, b, s, f) = validate::pci_address(p)
                .map_err(|m| Diagnostics::error("Invalid PCI address", m))?;
            hostdevs.push(if h.get("managed").as_bool() == Some(false) {
                HostDev::UnmanagedPci(d, b, s, f)
            } else {
                HostDev::Pci(d, b, s, f)
            });
        } else if let Some(u) = h.get("mdev").as_str() {
            hostdevs.push(HostDev::Mdev(
                validate::uuid(u).map_err(|m| Diagnostics::error("Invalid mdev UUID", m))?,
            ));
        }
    }
    Ok(Inputs {
        vcpu: u32::try_from(num("vcpu", 1, 256)?).unwrap_or(1),
        memory: num("memory", 64, 4_194_304)?,
        accelerator: opt_str(v, "accelerator").unwrap_or_else(|| "auto".into()),
        cpu_mode: opt_str(v, "cpu_mode").unwrap_or_else(|| "default".into()),
        base_image: req_str(v, "base_image", &root)?,
        disk_size_gib: opt_u64(v, "disk_size_gib", &root, 1, 65536)?,
        extra_disks,
        kernel: opt_str(v, "kernel"),
        initrd: opt_str(v, "initrd"),
        cmdline: opt_str(v, "cmdline"),
        user_data: opt_str(v, "user_data"),
        meta_data: opt_str(v, "meta_data"),
        network_config: opt_str(v, "network_config"),
        hostname: opt_str(v, "hostname"),
        ssh_keys: (!v.get("ssh_authorized_keys").is_null())
            .then(|| str_list(v, "ssh_authorized_keys")),
        nics,
        hostdevs,
        machine: opt_str(v, "machine")
            .as_deref()
            .and_then(Machine::parse)
            .unwrap_or(Machine::Pc),
        efi: opt_str(v, "firmware").as_deref() == Some("efi"),
        mmio64_gib: opt_u64(v, "mmio64_gib", &root, 1, 65536)?,
        running: v.get("running").as_bool().unwrap_or(true),
        autostart: v.get("autostart").as_bool().unwrap_or(false),
        ip_timeout: opt_u64(v, "wait_for_ip_timeout", &root, 1, 86400)?,
        shutdown_timeout: opt_u64(v, "shutdown_timeout", &root, 1, 86400)?,
        name,
    })
}

/// Where a VM's files are.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// `<pool_dir>/vms`, holding every VM's directory.
    pub(super) vms: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) root: PathBuf,
    pub(super) iso: PathBuf,
    pub(super) seed_dir: PathBuf,
    /// The UEFI variable store (firmware = efi), a 0600 copy of [`OVMF_VARS`].
    pub(super) nvram: PathBuf,
}

impl Layout {
    pub(super) fn new(pool: &Path, name: &str) -> Layout {
        let vms = pool.join("vms");
        let dir = vms.join(name);
        Layout {
            vms,
            root: dir.join("root.qcow2"),
            iso: dir.join("cidata.iso"),
            seed_dir: dir.join("cidata"),
            nvram: dir.join("nvram.fd"),
            dir,
        }
    }

    pub(super) fn data(&self, i: usize) -> PathBuf {
        self.dir.join(format!("data-{}.qcow2", i + 1))
    }
}

impl Inputs {
    pub(super) fn wants_seed(&self) -> bool {
        self.user_data.is_some()
            || self.meta_data.is_some()
            || self.network_config.is_some()
            || self.hostname.is_some()
            || self.ssh_keys.is_some()
    }

    pub(super) fn seed_files(&self) -> Vec<SeedFile> {
        let user = self.user_data.clone().unwrap_or_else(|| {
            let mut s = String::from("#cloud-config\n");
            if let Some(h) = &self.hostname {
                s.push_str(&format!("hostname: {h}\n"));
            }
            if let Some(keys) = &self.ssh_keys {
                s.push_str("ssh_authorized_keys:\n");
                for k in keys {
                    // A JSON string is a valid YAML double-quoted scalar.
                    s.push_str(&format!("  - {}\n", serde_json::Value::from(k.trim_end())));
                }
            }
            s
        });
        let meta = self.meta_data.clone().unwrap_or_else(|| {
            format!(
                "instance-id: iid-{}\nlocal-hostname: {}\n",
                self.name,
                self.hostname.as_deref().unwrap_or(&self.name)
            )
        });
        let mut files = vec![("user-data", user), ("meta-data", meta)];
        if let Some(n) = &self.network_config {
            files.push(("network-config", n.clone()));
        }
        files
    }

    /// hsw's metadata: complete when `creator` is `None`; else incomplete, made by the create with that id.
    pub(super) fn metadata(&self, creator: Option<&str>) -> String {
        let mut j = json!({
            "version": 1,
            "complete": creator.is_none(),
            "accelerator": self.accelerator,
            "cpu_mode": self.cpu_mode,
            "base_image": self.base_image,
            "disk_size_gib": self.disk_size_gib,
            "mmio64_gib": self.mmio64_gib,
            "extra_disks": self.extra_disks,
            "user_data": self.user_data.is_some(),
            "meta_data": self.meta_data.is_some(),
            "network_config": self.network_config.is_some(),
            "hostname": self.hostname,
            "ssh_authorized_keys": self.ssh_keys,
            "interfaces": self.nics.iter().map(|n| json!({
                "network": n.network,
                "ip": n.ip.map(|i| i.to_string()),
                "wait_for_ip": n.wait,
            })).collect::<Vec<_>>(),
            "wait_for_ip_timeout": self.ip_timeout,
            "shutdown_timeout": self.shutdown_timeout,
        });
        if let (Some(c), Some(o)) = (creator, j.as_object_mut()) {
            o.insert("creator".into(), c.into());
        }
        j.to_string()
    }

    pub(super) fn spec(
        &self,
        layout: &Layout,
        accel: Accel,
        uuid: Option<String>,
        creator: Option<&str>,
    ) -> VmSpec {
        VmSpec {
            name: self.name.clone(),
            uuid,
            vcpu: self.vcpu,
            memory_mib: self.memory,
            accel,
            cpu_mode: CpuMode::parse(&self.cpu_mode).unwrap_or(CpuMode::Default),
            root_disk: layout.root.display().to_string(),
            root_backing: Some(self.base_image.clone()),
            data_disks: (0..self.extra_disks.len())
                .map(|i| layout.data(i).display().to_string())
                .collect(),
            seed_iso: self.wants_seed().then(|| layout.iso.display().to_string()),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
            nics: self
                .nics
                .iter()
                .map(|n| Nic {
                    network: n.network.clone(),
                    mac: n.mac.clone(),
                })
                .collect(),
            hostdevs: self.hostdevs.clone(),
            machine: self.machine,
            efi: self.efi.then(|| Efi {
                code: OVMF_CODE.into(),
                nvram: layout.nvram.display().to_string(),
                template: OVMF_VARS.into(),
            }),
            mmio64_gib: (self.machine == Machine::Q35)
                .then_some(self.mmio64_gib.unwrap_or(DEFAULT_MMIO64_GIB)),
            metadata: self.metadata(creator),
        }
    }

    /// What needs a shutdown and redefinition to change.
    pub(super) fn hardware(&self) -> (u32, u64, &str, &str, &[HostDev], Option<u64>) {
        (
            self.vcpu,
            self.memory,
            &self.accelerator,
            &self.cpu_mode,
            &self.hostdevs,
            self.mmio64_gib,
        )
    }
}

pub(super) fn input_reservations(inp: &Inputs) -> Vec<(String, DhcpHost)> {
    inp.nics
        .iter()
        .filter_map(|n| {
            n.ip.map(|ip| {
                (
                    n.network.clone(),
                    DhcpHost {
                        mac: n.mac.clone(),
                        ip,
                        hostname: None,
                    },
                )
            })
        })
        .collect()
}

/// The plan: checks, then defaults (deterministic MACs); an in-place update marks what a restart may change
/// unknown.
pub(super) fn plan(
    req: &PlanRequest<'_>,
    pool_dir: Option<&Path>,
) -> Result<PlanOutcome, Diagnostics> {
    let d = check(req.config, pool_dir);
    if d.has_errors() {
        return Err(d);
    }
    let mut out = plan_with(req, |proposed, config| {
        default_attr(proposed, config, "accelerator", "auto");
        default_attr(proposed, config, "cpu_mode", "default");
        default_attr(proposed, config, "running", true);
        default_attr(proposed, config, "autostart", false);
        default_attr(proposed, config, "machine", "pc");
        default_attr(proposed, config, "firmware", "bios");

        if let Some(name) = config.get("name").as_str().map(str::to_owned) {
            for v in [&mut *proposed, &mut *config] {
                if let Some(Value::List(devs)) = v.get_mut("hostdev") {
                    for h in devs.iter_mut() {
                        if h.get("pci").as_str().is_some() && h.get("managed").is_null() {
                            h.set("managed", true);
                        }
                    }
                }
                if let Some(Value::List(nics)) = v.get_mut("network_interface") {
                    for (i, n) in nics.iter_mut().enumerate() {
                        if n.get("mac").is_null() || n.get("mac").is_unknown() {
                            n.set("mac", default_mac(&name, i));
                        }
                    }
                }
            }
        }
    });
    if !req.is_create() && out.requires_replace.is_empty() && &out.planned != req.prior {
        // An update may restart the VM: addresses and the accelerator chosen may change.
        mark_addresses_unknown(&mut out.planned);
        if req.prior.get("accelerator") != out.planned.get("accelerator") {
            out.planned.set("accelerator_used", Value::Unknown);
        }
    }
    Ok(out)
}

fn mark_addresses_unknown(planned: &mut Value) {
    if let Some(Value::List(nics)) = planned.get_mut("network_interface") {
        for n in nics {
            n.set("addresses", Value::Unknown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_stable_and_local() {
        let a = default_mac("node1", 0);
        assert_eq!(a, default_mac("node1", 0));
        assert_ne!(a, default_mac("node1", 1));
        assert!(a.starts_with("52:54:00:"));
        assert!(validate::mac(&a).is_ok());
    }
}
