//! `hsw_vm`: a libvirt domain booted from a copy-on-write qcow2 overlay of a base image, with cloud-init.
//!
//! Files: everything a VM owns lives in `<pool_dir>/vms/<name>/`: `root.qcow2` (the overlay), `data-N.qcow2`
//! (extra disks), `cidata.iso` and `cidata/` (the NoCloud seed and its sources, mode 0600). Static addresses are
//! DHCP reservations added to the network with `virNetworkUpdate`. Destroy removes the domain, the directory and
//! the reservations.
//!
//! Import and read: every attribute comes back from libvirt, from the domain XML or from hsw's metadata in it
//! (JSON in `<metadata>`, see [`crate::hsw::model::vm`]), except the cloud-init texts, read from the seed sources
//! (they may hold secrets, so they are not put in the domain XML).
//!
//! Crash safety: the domain is defined with `"complete": false` in its metadata, and marked complete when create
//! finishes. A create that finds a domain of the same name that hsw left incomplete (the provider died mid-create)
//! removes it and its files and starts over; files and reservations have names derived from the VM name and are
//! replaced, so a retry converges with no orphan. A complete hsw domain or a foreign domain of the same name is
//! never touched: create fails and says to import it or choose another name.
//!
//! Updates: `vcpu`, `memory`, `accelerator`, `cpu_mode` and `hostdev` apply by a graceful shutdown (ACPI), up to
//! `shutdown_timeout` seconds, then a forced power-off, a redefinition and a start. `running`, `autostart` and the
//! timeouts change in place. Anything else replaces the VM.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backend::libvirt::{
    AddressSource, DhcpLease, DomainInfo, Key, NetworkSection, UpdateCommand,
};
use crate::backend::storage::SeedFile;
use crate::framework::{
    async_trait, AttrPath, Attribute, Block, Context, Diagnostic, Diagnostics, NestedBlock,
    Nesting, PlanOutcome, PlanRequest, Resource, Schema, Type, Value,
};

use super::model::network::{DhcpHost, NetworkSpec};
use super::model::vm::{Accel, CpuMode, HostDev, Nic, VmSpec, METADATA_KEY, METADATA_NS};
use super::planning::{default_attr, plan_with};
use super::values::{missing, opt_str, opt_u64, req_str, str_list};
use super::{configured, validate, Configured, Shared};

/// Seconds to wait for an address when `wait_for_ip_timeout` is not set.
pub const DEFAULT_IP_TIMEOUT: u64 = 300;
/// Seconds to wait for a graceful shutdown when `shutdown_timeout` is not set.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 120;
const GIB: u64 = 1 << 30;

/// The `hsw_vm` resource.
#[derive(Debug)]
pub struct VmResource {
    shared: Shared,
}

impl VmResource {
    /// The resource, reaching the provider's backend through `shared`.
    pub fn new(shared: Shared) -> VmResource {
        VmResource { shared }
    }
}

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
                 Changes to `vcpu`, `memory`, `accelerator`, `cpu_mode` and `hostdev` shut the VM down (ACPI, then \
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
                    .attribute(Attribute::optional("pci", Type::String).describe("A PCI function `domain:bus:slot.function`, such as `0000:3b:00.0` (managed: libvirt binds it to vfio-pci)."))
                    .attribute(Attribute::optional("mdev", Type::String).describe("A mediated device (vGPU) UUID; the mdev must exist.")),
            )),
    )
}

/// One interface as configured.
#[derive(Debug, Clone, PartialEq)]
struct NicIn {
    network: String,
    mac: String,
    ip: Option<Ipv4Addr>,
    wait: Option<bool>,
}

/// What an interface's DHCP leases looked like before its VM started (see `start_and_wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseMark {
    /// Whether there was any lease.
    any: bool,
    /// The newest expiry among them (seconds since the epoch; 0 = never expires).
    newest: i64,
}

impl LeaseMark {
    fn of(leases: &[DhcpLease]) -> LeaseMark {
        LeaseMark {
            any: !leases.is_empty(),
            newest: leases.iter().map(|l| l.expiry).max().unwrap_or(0),
        }
    }

    /// Whether a renewal would be visible: false when the earlier leases never expire.
    fn shows_renewals(&self) -> bool {
        !self.any || self.newest != 0
    }

    /// Whether `lease` was granted or renewed after the mark was taken. A lease that never expires cannot show a
    /// renewal, so it counts only when there was none before.
    fn is_fresh(&self, lease: &DhcpLease) -> bool {
        !self.any || (lease.expiry != 0 && lease.expiry > self.newest)
    }
}

/// Everything a planned value says, checked.
#[derive(Debug, Clone, PartialEq)]
struct Inputs {
    name: String,
    vcpu: u32,
    memory: u64,
    accelerator: String,
    cpu_mode: String,
    base_image: String,
    disk_size_gib: Option<u64>,
    extra_disks: Vec<u64>,
    kernel: Option<String>,
    initrd: Option<String>,
    cmdline: Option<String>,
    user_data: Option<String>,
    meta_data: Option<String>,
    network_config: Option<String>,
    hostname: Option<String>,
    ssh_keys: Option<Vec<String>>,
    nics: Vec<NicIn>,
    hostdevs: Vec<HostDev>,
    running: bool,
    autostart: bool,
    ip_timeout: Option<u64>,
    shutdown_timeout: Option<u64>,
}

/// The deterministic MAC of interface `index` of VM `name`: `52:54:00` and three bytes of SHA-256.
pub fn default_mac(name: &str, index: usize) -> String {
    let h = Sha256::digest(format!("hsw-vm/{name}/{index}").as_bytes());
    format!("52:54:00:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
}

/// Plan-time checks of every known value, each diagnostic at its attribute.
fn check(v: &Value, pool_dir: Option<&Path>) -> Diagnostics {
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
    for (i, k) in v
        .get("ssh_authorized_keys")
        .as_slice()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some(k) = k.as_str() {
            if let Err(m) = validate::ssh_key(k) {
                bad(
                    AttrPath::attr("ssh_authorized_keys").then_index(i),
                    "Invalid SSH key",
                    m,
                );
            }
        }
    }
    let mut macs = HashSet::new();
    for (i, nic) in v
        .get("network_interface")
        .as_slice()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = AttrPath::attr("network_interface").then_index(i);
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
    for (i, disk) in v
        .get("extra_disk")
        .as_slice()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some(n) = disk.get("size_gib").as_number() {
            if n.as_u64().is_none_or(|x| !(1..=65536).contains(&x)) {
                bad(
                    AttrPath::attr("extra_disk")
                        .then_index(i)
                        .then_attr("size_gib"),
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
    for (i, h) in v
        .get("hostdev")
        .as_slice()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = AttrPath::attr("hostdev").then_index(i);
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
        }
    }
    d
}

fn inputs(v: &Value, pool_dir: &Path) -> Result<Inputs, Diagnostics> {
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
    for (i, nic) in v
        .get("network_interface")
        .as_slice()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = AttrPath::attr("network_interface").then_index(i);
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
    for (i, disk) in v
        .get("extra_disk")
        .as_slice()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = AttrPath::attr("extra_disk").then_index(i);
        extra_disks.push(
            opt_u64(disk, "size_gib", &at, 1, 65536)?
                .ok_or_else(|| missing(at.then_attr("size_gib")))?,
        );
    }
    let mut hostdevs = Vec::new();
    for h in v.get("hostdev").as_slice().unwrap_or_default() {
        if let Some(p) = h.get("pci").as_str() {
            let (d, b, s, f) = validate::pci_address(p)
                .map_err(|m| Diagnostics::error("Invalid PCI address", m))?;
            hostdevs.push(HostDev::Pci(d, b, s, f));
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
        running: v.get("running").as_bool().unwrap_or(true),
        autostart: v.get("autostart").as_bool().unwrap_or(false),
        ip_timeout: opt_u64(v, "wait_for_ip_timeout", &root, 1, 86400)?,
        shutdown_timeout: opt_u64(v, "shutdown_timeout", &root, 1, 86400)?,
        name,
    })
}

/// Where a VM's files are.
#[derive(Debug, Clone)]
struct Layout {
    dir: PathBuf,
    root: PathBuf,
    iso: PathBuf,
    seed_dir: PathBuf,
}

impl Layout {
    fn new(pool: &Path, name: &str) -> Layout {
        let dir = pool.join("vms").join(name);
        Layout {
            root: dir.join("root.qcow2"),
            iso: dir.join("cidata.iso"),
            seed_dir: dir.join("cidata"),
            dir,
        }
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.join(format!("data-{}.qcow2", i + 1))
    }
}

impl Inputs {
    fn wants_seed(&self) -> bool {
        self.user_data.is_some()
            || self.meta_data.is_some()
            || self.network_config.is_some()
            || self.hostname.is_some()
            || self.ssh_keys.is_some()
    }

    fn seed_files(&self) -> Vec<SeedFile> {
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

    fn metadata(&self, complete: bool) -> String {
        json!({
            "version": 1,
            "complete": complete,
            "accelerator": self.accelerator,
            "cpu_mode": self.cpu_mode,
            "base_image": self.base_image,
            "disk_size_gib": self.disk_size_gib,
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
        })
        .to_string()
    }

    fn spec(&self, layout: &Layout, accel: Accel, uuid: Option<String>, complete: bool) -> VmSpec {
        VmSpec {
            name: self.name.clone(),
            uuid,
            vcpu: self.vcpu,
            memory_mib: self.memory,
            accel,
            cpu_mode: CpuMode::parse(&self.cpu_mode).unwrap_or(CpuMode::Default),
            root_disk: layout.root.display().to_string(),
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
            metadata: self.metadata(complete),
        }
    }

    /// What needs a shutdown and redefinition to change.
    fn hardware(&self) -> (u32, u64, &str, &str, &[HostDev]) {
        (
            self.vcpu,
            self.memory,
            &self.accelerator,
            &self.cpu_mode,
            &self.hostdevs,
        )
    }
}

/// hsw's metadata of a domain, parsed; `None` for domains hsw did not create.
fn metadata_of(spec: &VmSpec) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&spec.metadata)
        .ok()
        .filter(|j| j.get("version").is_some())
}

/// MACs of the interfaces of the domain in `xml` that have a static address reserved on `network` by hsw.
pub fn reserved_macs(xml: &str, network: &str) -> Vec<String> {
    let Ok(spec) = VmSpec::from_xml(xml) else {
        return Vec::new();
    };
    let Some(meta) = metadata_of(&spec) else {
        return Vec::new();
    };
    reservations(&spec, &meta)
        .into_iter()
        .filter(|(net, _)| net == network)
        .map(|(_, h)| h.mac)
        .collect()
}

/// The static leases hsw added for a domain: (network, host).
fn reservations(spec: &VmSpec, meta: &serde_json::Value) -> Vec<(String, DhcpHost)> {
    let ifaces = meta
        .get("interfaces")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    spec.nics
        .iter()
        .zip(ifaces)
        .filter_map(|(nic, m)| {
            let ip = m.get("ip")?.as_str()?.parse().ok()?;
            Some((
                nic.network.clone(),
                DhcpHost {
                    mac: nic.mac.clone(),
                    ip,
                    hostname: None,
                },
            ))
        })
        .collect()
}

fn input_reservations(inp: &Inputs) -> Vec<(String, DhcpHost)> {
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

fn lv_err(
    summary: &str,
    what: String,
) -> impl FnOnce(crate::backend::libvirt::LibvirtError) -> Diagnostics {
    let summary = summary.to_owned();
    move |e| Diagnostics::error(summary, format!("{what}: {}.", e.message))
}

impl VmResource {
    fn configured(&self) -> Result<&Configured, Diagnostics> {
        configured(&self.shared)
    }

    /// Checks a path is inside the pool directory once symbolic links are resolved, and exists.
    async fn check_file(
        &self,
        c: &Configured,
        attr: &str,
        path: &str,
    ) -> Result<PathBuf, Diagnostics> {
        let storage = &c.backend.storage;
        let at = AttrPath::attr(attr);
        let pool = storage
            .canonicalize(&c.config.pool_dir)
            .await
            .map_err(|e| {
                Diagnostics::error_at(
                    at.clone(),
                    "Pool directory missing",
                    format!("{} Create it, or set the provider's pool_dir.", e.0),
                )
            })?;
        let canonical = storage.canonicalize(Path::new(path)).await.map_err(|e| {
            Diagnostics::error_at(
                at.clone(),
                "File not found",
                format!("{} Check {attr}.", e.0),
            )
        })?;
        validate::inside_canonical(path, &canonical, &pool)
            .map_err(|m| Diagnostics::error_at(at.clone(), "Path outside the pool directory", m))?;
        if canonical.starts_with(pool.join("vms")) {
            return Err(Diagnostics::error_at(
                at,
                "Invalid path",
                format!(
                    "{path} resolves into the VMs' own directory {}.",
                    pool.join("vms").display()
                ),
            ));
        }
        Ok(canonical)
    }

    /// Removes a domain hsw made and everything it owns: the domain, its static leases, its directory.
    async fn remove_all(
        &self,
        c: &Configured,
        name: &str,
        info: Option<&DomainInfo>,
        extra: &[(String, DhcpHost)],
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let mut leases: Vec<(String, DhcpHost)> = extra.to_vec();
        if let Some(info) = info {
            if let Ok(spec) = VmSpec::from_xml(&info.xml) {
                if let Some(meta) = metadata_of(&spec) {
                    leases.extend(reservations(&spec, &meta));
                }
            }
            if info.active {
                match lv.domain_destroy(name).await {
                    Err(e) if e.kind != crate::backend::libvirt::ErrorKind::InvalidState => {
                        return Err(lv_err(
                            "Cannot power off the VM",
                            format!("libvirt could not power off {name}"),
                        )(e))
                    }
                    _ => {}
                }
            }
            match lv.domain_undefine(name).await {
                Err(e) if !e.is_not_found() => {
                    return Err(lv_err(
                        "Cannot remove the VM",
                        format!("libvirt could not undefine {name}"),
                    )(e))
                }
                _ => {}
            }
        }
        let mut seen = HashSet::new();
        for (net, host) in leases {
            if seen.insert((net.clone(), host.mac.clone())) {
                remove_lease(c, &net, &host.mac).await?;
            }
        }
        let layout = Layout::new(&c.config.pool_dir, name);
        c.backend
            .storage
            .remove_all(&layout.dir)
            .await
            .map_err(|e| {
                Diagnostics::error(
                    "Cannot remove the VM's files",
                    format!("{} Remove {} by hand.", e.0, layout.dir.display()),
                )
            })
    }

    async fn wait_off(
        &self,
        ctx: &Context,
        c: &Configured,
        name: &str,
        timeout: u64,
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let is_active = || async {
            Ok::<bool, Diagnostics>(
                lv.domain_lookup(&Key::Name(name.to_owned()))
                    .await?
                    .is_some_and(|d| d.active),
            )
        };
        if !is_active().await? {
            return Ok(());
        }
        match lv.domain_shutdown(name).await {
            Err(e) if e.kind != crate::backend::libvirt::ErrorKind::InvalidState => {
                return Err(lv_err(
                    "Cannot shut the VM down",
                    format!("libvirt could not ask {name} to shut down"),
                )(e))
            }
            _ => {}
        }
        let deadline = Instant::now() + Duration::from_secs(timeout);
        while Instant::now() < deadline {
            if !is_active().await? {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = ctx.stopping() => return Err(Diagnostics::error("Interrupted", format!("Terraform was interrupted while {name} was shutting down."))),
            }
        }
        tracing::warn!(vm = name, "graceful shutdown timed out; powering off");
        match lv.domain_destroy(name).await {
            Err(e) if e.kind != crate::backend::libvirt::ErrorKind::InvalidState => {
                Err(lv_err("Cannot power off the VM", format!("{name} did not shut down within {timeout} s and libvirt could not power it off"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Starts the domain and, for interfaces with `wait_for_ip`, waits for evidence that the guest has its address
    /// in this boot.
    ///
    /// A DHCP lease alone is not that evidence: leases outlive the guest, so right after a restart (a cpu or memory
    /// change, or a VM recreated with the same deterministic MAC) the lease from the previous boot is still listed.
    /// So the newest expiry of each interface's leases is noted before the start, and a lease counts only when it
    /// is new or its expiry moved forward (the guest asked again). The ARP table counts only for an interface that
    /// holds no lease at all (a guest with a static address) or only leases that never expire (whose renewal
    /// cannot be seen; the host's ARP entry may then still be the one from before the restart). When the backend cannot list leases with their
    /// expiry (libvirt's test driver), any lease or ARP entry counts, as before.
    async fn start_and_wait(
        &self,
        ctx: &Context,
        c: &Configured,
        inp: &Inputs,
        creating: bool,
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let waiting: Vec<(usize, &NicIn)> = inp
            .nics
            .iter()
            .enumerate()
            .filter(|(_, n)| n.wait == Some(true))
            .collect();
        // Before the start: the leases from earlier boots (`None`: leases cannot be listed).
        let mut before = Vec::with_capacity(waiting.len());
        for (_, nic) in &waiting {
            before.push(
                lv.network_leases(&nic.network, &nic.mac)
                    .await
                    .ok()
                    .map(|l| LeaseMark::of(&l)),
            );
        }
        lv.domain_start(&inp.name).await.map_err(lv_err(
            "Cannot start the VM",
            format!("libvirt could not start {} (check its networks are active and its files readable by QEMU)", inp.name),
        ))?;
        if waiting.is_empty() {
            return Ok(());
        }
        let timeout = inp.ip_timeout.unwrap_or(DEFAULT_IP_TIMEOUT);
        let deadline = Instant::now() + Duration::from_secs(timeout);
        loop {
            let arp = lv
                .domain_addresses(&inp.name, AddressSource::Arp)
                .await
                .unwrap_or_default();
            let mut seen = Vec::new();
            let mut missing = None;
            for ((i, nic), mark) in waiting.iter().zip(&before) {
                let in_arp = arp.iter().any(|a| a.mac == nic.mac);
                let ok = match mark {
                    Some(mark) => {
                        let leases = lv
                            .network_leases(&nic.network, &nic.mac)
                            .await
                            .unwrap_or_default();
                        let ok = leases.iter().any(|l| mark.is_fresh(l))
                            || (in_arp && (leases.is_empty() || !mark.shows_renewals()));
                        seen.extend(leases.into_iter().map(|l| {
                            let stale = if mark.is_fresh(&l) {
                                ""
                            } else {
                                " (from an earlier boot)"
                            };
                            format!("{} {}{stale}", l.mac, l.ip)
                        }));
                        ok
                    }
                    None => {
                        let leases = lv
                            .domain_addresses(&inp.name, AddressSource::Lease)
                            .await
                            .unwrap_or_default();
                        let ok = in_arp || leases.iter().any(|a| a.mac == nic.mac);
                        seen.extend(
                            leases
                                .into_iter()
                                .filter(|a| a.mac == nic.mac)
                                .map(|a| format!("{} {}", a.mac, a.ip)),
                        );
                        ok
                    }
                };
                if !ok && missing.is_none() {
                    missing = Some((*i, *nic));
                }
            }
            let Some((i, nic)) = missing else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let show = |v: Vec<String>| {
                    if v.is_empty() {
                        "none".to_owned()
                    } else {
                        v.join(", ")
                    }
                };
                let arp = arp.iter().map(|a| format!("{} {}", a.mac, a.ip)).collect();
                return Err(Diagnostics::error_at(
                    AttrPath::attr("network_interface").then_index(i).then_attr("wait_for_ip"),
                    "Timed out waiting for an IP address",
                    format!(
                        "VM {} got no IPv4 address on network {} for interface {} within {timeout} s. DHCP leases seen: {}. \
                         ARP entries seen: {}. Check that the guest boots (virsh console {}), runs a DHCP client on that \
                         interface, and that network {} has DHCP; or raise wait_for_ip_timeout. {}",
                        inp.name,
                        nic.network,
                        nic.mac,
                        show(seen),
                        show(arp),
                        inp.name,
                        nic.network,
                        if creating {
                            "The VM was removed."
                        } else {
                            "The VM keeps running with its new definition; Terraform keeps the previous state, so \
                             the next apply tries again."
                        }
                    ),
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = ctx.stopping() => return Err(Diagnostics::error("Interrupted", format!("Terraform was interrupted while waiting for the address of {}.", inp.name))),
            }
        }
    }

    async fn resolve_accel(&self, c: &Configured, requested: &str) -> Result<Accel, Diagnostics> {
        if requested == "tcg" {
            return Ok(Accel::Tcg);
        }
        let host = c.backend.libvirt.host_info().await?;
        match (requested, host.kvm_usable) {
            (_, true) => Ok(Accel::Kvm),
            ("kvm", false) => Err(Diagnostics::error_at(
                AttrPath::attr("accelerator"),
                "KVM cannot run guests here",
                "accelerator is kvm, but libvirt offers no KVM guests on this host or its CPU shows no vmx/svm flag \
                 (nested virtualisation off). Use accelerator = \"auto\" or \"tcg\", or enable KVM."
                    .to_owned(),
            )),
            _ => Ok(Accel::Tcg),
        }
    }

    async fn create_inner(
        &self,
        ctx: &Context,
        c: &Configured,
        inp: &Inputs,
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let storage = &c.backend.storage;
        let layout = Layout::new(&c.config.pool_dir, &inp.name);
        let base = self.check_file(c, "base_image", &inp.base_image).await?;
        for (attr, p) in [("kernel", &inp.kernel), ("initrd", &inp.initrd)] {
            if let Some(p) = p {
                self.check_file(c, attr, p).await?;
            }
        }
        let accel = self.resolve_accel(c, &inp.accelerator).await?;
        // Networks and static addresses.
        for (i, nic) in inp.nics.iter().enumerate() {
            let at = AttrPath::attr("network_interface").then_index(i);
            let Some(net) = lv.network_lookup(&Key::Name(nic.network.clone())).await? else {
                return Err(Diagnostics::error_at(
                    at.then_attr("network"),
                    "Network not found",
                    format!(
                        "libvirt has no network {:?}. Create it (hsw_network) first.",
                        nic.network
                    ),
                ));
            };
            if let Some(ip) = nic.ip {
                let spec = NetworkSpec::from_xml(&net.xml).map_err(|m| {
                    Diagnostics::error_at(at.then_attr("network"), "Cannot read the network", m)
                })?;
                if !spec.subnet.contains(&ip) || spec.dhcp_range.is_none() || ip == spec.gateway {
                    return Err(Diagnostics::error_at(
                        at.then_attr("ip"),
                        "Address not usable",
                        format!("{ip} cannot be reserved on network {}: it needs DHCP (a dhcp block) and a free address of {} other than the gateway {}.", nic.network, spec.subnet, spec.gateway),
                    ));
                }
            }
        }
        // Files: the VM's directory, overlay, extra disks, seed.
        storage
            .create_dir(&layout.dir, 0o711)
            .await
            .map_err(|e| Diagnostics::error("Cannot create the VM's directory", e.0))?;
        let size = match inp.disk_size_gib {
            Some(g) => {
                let base_size = storage.image_size(&base).await.map_err(|e| {
                    Diagnostics::error_at(
                        AttrPath::attr("base_image"),
                        "Cannot read the base image",
                        e.0,
                    )
                })?;
                let want = g.saturating_mul(GIB);
                if want < base_size {
                    return Err(Diagnostics::error_at(
                        AttrPath::attr("disk_size_gib"),
                        "Disk smaller than its base image",
                        format!("disk_size_gib is {g} GiB, but the base image {} is {} bytes: give at least {} GiB, or leave it unset.", inp.base_image, base_size, base_size.div_ceil(GIB)),
                    ));
                }
                Some(want)
            }
            None => None,
        };
        storage
            .create_overlay(&base, &layout.root, size)
            .await
            .map_err(|e| {
                Diagnostics::error_at(
                    AttrPath::attr("base_image"),
                    "Cannot create the root disk",
                    e.0,
                )
            })?;
        for (i, g) in inp.extra_disks.iter().enumerate() {
            storage
                .create_disk(&layout.data(i), g.saturating_mul(GIB))
                .await
                .map_err(|e| {
                    Diagnostics::error_at(
                        AttrPath::attr("extra_disk").then_index(i),
                        "Cannot create the disk",
                        e.0,
                    )
                })?;
        }
        if inp.wants_seed() {
            storage
                .create_seed(&layout.seed_dir, &layout.iso, &inp.seed_files())
                .await
                .map_err(|e| Diagnostics::error("Cannot create the cloud-init seed", e.0))?;
        }
        for (i, (net, host)) in input_reservations(inp).iter().enumerate() {
            add_lease(c, net, host).await.map_err(|mut d| {
                for x in &mut d.0 {
                    x.path = Some(
                        AttrPath::attr("network_interface")
                            .then_index(i)
                            .then_attr("ip"),
                    );
                }
                d
            })?;
        }
        // The domain, marked incomplete until the end.
        let spec = inp.spec(&layout, accel, None, false);
        lv.domain_define(&spec.to_xml()).await.map_err(lv_err(
            "Cannot define the VM",
            format!("libvirt refused the definition of {}", inp.name),
        ))?;
        if inp.autostart {
            lv.domain_set_autostart(&inp.name, true).await?;
        }
        if inp.running {
            self.start_and_wait(ctx, c, inp, true).await?;
        }
        self.mark_complete(c, inp).await
    }

    async fn mark_complete(&self, c: &Configured, inp: &Inputs) -> Result<(), Diagnostics> {
        let xml = format!(
            "<vm>{}</vm>",
            super::model::xml::escape(&inp.metadata(true))
        );
        c.backend
            .libvirt
            .domain_set_metadata(&inp.name, METADATA_KEY, METADATA_NS, Some(&xml))
            .await
            .map_err(lv_err(
                "Cannot record the VM's metadata",
                format!("libvirt could not update the metadata of {}", inp.name),
            ))
    }

    /// The state of the domain as libvirt has it; `None` when it does not exist.
    async fn read_by(&self, key: &Key) -> Result<Option<Value>, Diagnostics> {
        let c = self.configured()?;
        let lv = &c.backend.libvirt;
        let Some(info) = lv.domain_lookup(key).await? else {
            return Ok(None);
        };
        let spec =
            VmSpec::from_xml(&info.xml).map_err(|m| Diagnostics::error("Cannot read the VM", m))?;
        let meta = metadata_of(&spec).ok_or_else(|| {
            Diagnostics::error(
                "Not an hsw VM",
                format!("Domain {} has no hsw metadata: it was not created by this provider, so hsw_vm cannot manage it.", info.name),
            )
        })?;
        let layout = Layout::new(&c.config.pool_dir, &info.name);
        let text = |k: &str| {
            meta.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let int = |k: &str| meta.get(k).and_then(serde_json::Value::as_u64);
        let flag = |k: &str| {
            meta.get(k)
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        let seed = |file: &str, given: bool| {
            let path = layout.seed_dir.join(file);
            async move {
                if given {
                    c.backend
                        .storage
                        .read_text(&path)
                        .await
                        .map_err(|e| Diagnostics::error("Cannot read the cloud-init seed", e.0))
                } else {
                    Ok(None)
                }
            }
        };
        let mut addrs = Vec::new();
        if info.active {
            addrs = lv
                .domain_addresses(&info.name, AddressSource::Lease)
                .await
                .unwrap_or_default();
            if addrs.is_empty() {
                addrs = lv
                    .domain_addresses(&info.name, AddressSource::Arp)
                    .await
                    .unwrap_or_default();
            }
        }
        let meta_ifaces = meta
            .get("interfaces")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let nics: Vec<Value> = spec
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let m = meta_ifaces.get(i);
                let mut seen: Vec<String> = addrs
                    .iter()
                    .filter(|a| a.mac == n.mac)
                    .map(|a| a.ip.clone())
                    .collect();
                seen.dedup();
                Value::object([
                    ("network", Value::from(n.network.clone())),
                    ("mac", Value::from(n.mac.clone())),
                    (
                        "ip",
                        Value::from(
                            m.and_then(|m| m.get("ip"))
                                .and_then(serde_json::Value::as_str)
                                .map(str::to_owned),
                        ),
                    ),
                    (
                        "wait_for_ip",
                        Value::from(
                            m.and_then(|m| m.get("wait_for_ip"))
                                .and_then(serde_json::Value::as_bool),
                        ),
                    ),
                    (
                        "addresses",
                        Value::List(seen.into_iter().map(Value::from).collect()),
                    ),
                ])
            })
            .collect();
        let extra: Vec<Value> = meta
            .get("extra_disks")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .map(|g| Value::object([("size_gib", Value::from(g))]))
            .collect();
        let hostdevs: Vec<Value> = spec
            .hostdevs
            .iter()
            .map(|h| match h {
                HostDev::Mdev(u) => {
                    Value::object([("pci", Value::Null), ("mdev", Value::from(u.clone()))])
                }
                pci => Value::object([
                    ("pci", Value::from(pci.pci_string())),
                    ("mdev", Value::Null),
                ]),
            })
            .collect();
        let keys = meta
            .get("ssh_authorized_keys")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                Value::List(
                    a.iter()
                        .filter_map(|k| k.as_str().map(Value::from))
                        .collect(),
                )
            });
        Ok(Some(
            schema()
                .block
                .null_object()
                .with("id", info.uuid.clone())
                .with("name", info.name.clone())
                .with("vcpu", i64::from(spec.vcpu))
                .with("memory", spec.memory_mib)
                .with(
                    "accelerator",
                    text("accelerator").unwrap_or_else(|| "auto".into()),
                )
                .with("accelerator_used", spec.accel.as_str())
                .with(
                    "cpu_mode",
                    text("cpu_mode").unwrap_or_else(|| "default".into()),
                )
                .with("base_image", text("base_image"))
                .with("disk_size_gib", int("disk_size_gib"))
                .with("kernel", spec.kernel.clone())
                .with("initrd", spec.initrd.clone())
                .with("cmdline", spec.cmdline.clone())
                .with("user_data", seed("user-data", flag("user_data")).await?)
                .with("meta_data", seed("meta-data", flag("meta_data")).await?)
                .with(
                    "network_config",
                    seed("network-config", flag("network_config")).await?,
                )
                .with("hostname", text("hostname"))
                .with("ssh_authorized_keys", keys.unwrap_or(Value::Null))
                .with("running", info.active)
                .with("autostart", info.autostart)
                .with("wait_for_ip_timeout", int("wait_for_ip_timeout"))
                .with("shutdown_timeout", int("shutdown_timeout"))
                .with("network_interface", Value::List(nics))
                .with("extra_disk", Value::List(extra))
                .with("hostdev", Value::List(hostdevs)),
        ))
    }
}

async fn add_lease(c: &Configured, network: &str, host: &DhcpHost) -> Result<(), Diagnostics> {
    // A lease for this MAC left by an interrupted apply is ours (the MAC belongs to this VM): replace it.
    remove_lease(c, network, &host.mac).await?;
    c.backend
        .libvirt
        .network_update(network, UpdateCommand::Add, NetworkSection::DhcpHost, &host.to_xml())
        .await
        .map_err(|e| {
            Diagnostics::error(
                "Cannot reserve the address",
                format!("libvirt could not reserve {} for {} on network {network}: {}. Another host may hold that address: choose a free one.", host.ip, host.mac, e.message),
            )
        })
}

async fn remove_lease(c: &Configured, network: &str, mac: &str) -> Result<(), Diagnostics> {
    let lv = &c.backend.libvirt;
    let Some(net) = lv.network_lookup(&Key::Name(network.to_owned())).await? else {
        return Ok(());
    };
    let Ok(spec) = NetworkSpec::from_xml(&net.xml) else {
        return Ok(());
    };
    for h in spec.dhcp_hosts.iter().filter(|h| h.mac == mac) {
        let only_mac = DhcpHost {
            hostname: None,
            ..h.clone()
        };
        lv.network_update(
            network,
            UpdateCommand::Delete,
            NetworkSection::DhcpHost,
            &only_mac.to_xml(),
        )
        .await
        .map_err(lv_err(
            "Cannot remove the address reservation",
            format!("libvirt could not remove the lease of {mac} from network {network}"),
        ))?;
    }
    Ok(())
}

fn mark_addresses_unknown(planned: &mut Value) {
    if let Some(Value::List(nics)) = planned.get_mut("network_interface") {
        for n in nics {
            n.set("addresses", Value::Unknown);
        }
    }
}

#[async_trait]
impl Resource for VmResource {
    fn type_name(&self) -> &str {
        "hsw_vm"
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        check(
            config,
            self.shared.get().map(|c| c.config.pool_dir.as_path()),
        )
    }

    fn plan(&self, req: &PlanRequest<'_>) -> Result<PlanOutcome, Diagnostics> {
        let d = check(
            req.config,
            self.shared.get().map(|c| c.config.pool_dir.as_path()),
        );
        if d.has_errors() {
            return Err(d);
        }
        let mut out = plan_with(req, |proposed, config| {
            default_attr(proposed, config, "accelerator", "auto");
            default_attr(proposed, config, "cpu_mode", "default");
            default_attr(proposed, config, "running", true);
            default_attr(proposed, config, "autostart", false);
            if let Some(name) = config.get("name").as_str().map(str::to_owned) {
                for v in [&mut *proposed, &mut *config] {
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

    async fn create(&self, ctx: &Context, planned: &Value) -> Result<Value, Diagnostics> {
        let c = self.configured()?;
        let inp = inputs(planned, &c.config.pool_dir)?;
        let lv = &c.backend.libvirt;
        if let Some(existing) = lv.domain_lookup(&Key::Name(inp.name.clone())).await? {
            let meta = VmSpec::from_xml(&existing.xml)
                .ok()
                .as_ref()
                .and_then(metadata_of);
            match meta.as_ref().and_then(|m| m.get("complete")).and_then(serde_json::Value::as_bool) {
                Some(false) => {
                    tracing::info!(vm = %inp.name, "removing a VM left incomplete by an interrupted apply");
                    self.remove_all(c, &inp.name, Some(&existing), &[]).await?;
                }
                Some(true) => {
                    return Err(Diagnostics::error_at(
                        AttrPath::attr("name"),
                        "VM already exists",
                        format!("hsw already manages a VM named {} (UUID {}), not in this state. Import it with `terraform import <address> {}`, or choose another name.", inp.name, existing.uuid, inp.name),
                    ))
                }
                None => {
                    return Err(Diagnostics::error_at(
                        AttrPath::attr("name"),
                        "Domain name in use",
                        format!("libvirt already has a domain named {} that hsw did not create. Choose another name, or remove that domain.", inp.name),
                    ))
                }
            }
        }
        if let Err(e) = self.create_inner(ctx, c, &inp).await {
            let info = lv
                .domain_lookup(&Key::Name(inp.name.clone()))
                .await
                .ok()
                .flatten();
            // Clean up only what this create made: a domain found now is ours (there was none, or we removed it).
            if let Err(cleanup) = self
                .remove_all(c, &inp.name, info.as_ref(), &input_reservations(&inp))
                .await
            {
                let mut all = e;
                all.extend(cleanup);
                return Err(all);
            }
            return Err(e);
        }
        self.read_by(&Key::Name(inp.name.clone()))
            .await?
            .ok_or_else(|| {
                Diagnostics::error(
                    "VM vanished",
                    format!(
                        "VM {} was created but is gone: something else removed it.",
                        inp.name
                    ),
                )
            })
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let c = self.configured()?;
        let lv = &c.backend.libvirt;
        let old = inputs(prior, &c.config.pool_dir)?;
        let new = inputs(planned, &c.config.pool_dir)?;
        let id = req_str(prior, "id", &AttrPath::root())?;
        let info = lv.domain_lookup(&Key::Uuid(id.clone())).await?.ok_or_else(|| {
            Diagnostics::error("VM not found", format!("VM {} (UUID {id}) no longer exists. Run terraform apply again to recreate it.", new.name))
        })?;
        let shutdown_timeout = new.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
        let layout = Layout::new(&c.config.pool_dir, &new.name);
        if old.hardware() != new.hardware() {
            let accel = self.resolve_accel(c, &new.accelerator).await?;
            self.wait_off(ctx, c, &new.name, shutdown_timeout).await?;
            let spec = new.spec(&layout, accel, Some(info.uuid.clone()), true);
            lv.domain_define(&spec.to_xml()).await.map_err(lv_err(
                "Cannot redefine the VM",
                format!("libvirt refused the new definition of {}", new.name),
            ))?;
            if new.running {
                self.start_and_wait(ctx, c, &new, false).await?;
            }
        } else {
            if old.metadata(true) != new.metadata(true) {
                self.mark_complete(c, &new).await?;
            }
            let active = lv
                .domain_lookup(&Key::Uuid(id.clone()))
                .await?
                .is_some_and(|d| d.active);
            match (active, new.running) {
                (true, false) => self.wait_off(ctx, c, &new.name, shutdown_timeout).await?,
                (false, true) => self.start_and_wait(ctx, c, &new, false).await?,
                _ => {}
            }
        }
        if info.autostart != new.autostart {
            lv.domain_set_autostart(&new.name, new.autostart).await?;
        }
        self.read_by(&Key::Uuid(id)).await?.ok_or_else(|| {
            Diagnostics::error(
                "VM vanished",
                format!(
                    "VM {} disappeared during the update: something else removed it.",
                    new.name
                ),
            )
        })
    }

    async fn delete(&self, _ctx: &Context, state: &Value) -> Result<(), Diagnostics> {
        let c = self.configured()?;
        let name = req_str(state, "name", &AttrPath::root())?;
        validate::name(&name).map_err(|m| Diagnostics::error("Invalid VM name in state", m))?;
        let info = match state.get("id").as_str() {
            Some(id) => {
                c.backend
                    .libvirt
                    .domain_lookup(&Key::Uuid(id.to_owned()))
                    .await?
            }
            None => None,
        };
        let from_state: Vec<(String, DhcpHost)> = inputs(state, &c.config.pool_dir)
            .map(|i| input_reservations(&i))
            .unwrap_or_default();
        self.remove_all(c, &name, info.as_ref(), &from_state).await
    }

    async fn read(&self, _ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics> {
        let key = match state.get("id").as_str() {
            Some(id) => Key::Uuid(id.to_owned()),
            None => Key::Name(req_str(state, "name", &AttrPath::root())?),
        };
        self.read_by(&key).await
    }

    async fn import(&self, _ctx: &Context, id: &str) -> Result<Vec<Value>, Diagnostics> {
        match self.read_by(&Key::parse(id)).await? {
            Some(v) => Ok(vec![v]),
            None => Err(Diagnostics::error(
                "VM not found",
                format!("libvirt has no domain named {id:?} or with that UUID. Check `virsh list --all` on the provider's URI."),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_well_formed() {
        schema().check().unwrap();
    }

    #[test]
    fn macs_are_stable_and_local() {
        let a = default_mac("node1", 0);
        assert_eq!(a, default_mac("node1", 0));
        assert_ne!(a, default_mac("node1", 1));
        assert!(a.starts_with("52:54:00:"));
        assert!(validate::mac(&a).is_ok());
    }
}
