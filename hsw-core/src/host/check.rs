//! The host checks: one stable id each, a status, a message and a remedy a person can follow.
//!
//! Each area first gathers its facts into a small state struct (`*_state` functions, also used
//! by [`super::prepare`]), then judges them against a [`Policy`] drawn from the config. Severity
//! follows what the config needs: a missing KVM fails only with `host.accelerator: kvm`; IOMMU
//! and nouveau matter only when real GPUs are passed to VMs.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use serde::Serialize;

use super::env::{host_path, read_optional, Host, KvmProbe, User};
use super::parse::{self, DpkgPackage};
use super::run::{CommandSpec, RunOutcome};
use crate::config::model::{Accelerator, ClusterConfig, GpuBackend};
use crate::config::rules;

/// The check ids, in the order they run and print.
pub const CHECK_IDS: [&str; 9] = [
    "cpu.virtualization",
    "iommu",
    "kvm",
    "nouveau",
    "packages",
    "groups",
    "gpu",
    "resources",
    "conflicts",
];

/// vCPUs per logical host CPU above which `resources` warns (vCPU overcommit is normal; past
/// 4:1 interactive VMs slow down visibly).
pub const VCPU_RATIO_WARN: u64 = 4;
/// Memory: `resources` fails when the VMs need more than `MemAvailable`, and warns above this
/// percentage of it (the host needs some for itself and for QEMU's overhead).
pub const MEM_WARN_PERCENT: u64 = 90;
/// Disk: VM disks are thin qcow2 overlays, so `resources` only warns while the free space is
/// below their total virtual size, and fails below this percentage of it.
pub const DISK_FAIL_PERCENT: u64 = 25;
/// Where VM disks go when `host.pool_dir` is not set.
pub const DEFAULT_POOL_DIR: &str = "/var/lib/hsw/images";

const GIB: u64 = 1024 * 1024 * 1024;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Not relevant to this config (the message says why).
    Skip,
    /// Works, but slower or riskier than it should be.
    Warn,
    /// The clusters cannot run as configured.
    Fail,
}

impl Status {
    /// `pass`, `skip`, `warn`, `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id (one of [`CHECK_IDS`]).
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// What was found, as sentences.
    pub message: String,
    /// What to do about it (commands to run, files to edit); empty when there is nothing to do.
    pub remedy: String,
}

impl Check {
    fn new(
        id: &str,
        status: Status,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Check {
        let remedy = if status == Status::Pass {
            String::new()
        } else {
            remedy.into()
        };
        Check {
            id: id.to_owned(),
            status,
            message: message.into(),
            remedy,
        }
    }
}

/// Every check's result, in [`CHECK_IDS`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The checks.
    pub checks: Vec<Check>,
}

impl CheckReport {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// The check with this id.
    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// How many checks have each status: (pass, warn, fail, skip).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let n = |s| self.checks.iter().filter(|c| c.status == s).count();
        (
            n(Status::Pass),
            n(Status::Warn),
            n(Status::Fail),
            n(Status::Skip),
        )
    }
}

/// What the config asks of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `host.accelerator` (default auto).
    pub accelerator: Accelerator,
    /// `host.gpu_backend` (default auto).
    pub gpu_backend: GpuBackend,
    /// `(id, pci_address)` of every GPU in `global.gpu_allocation.devices`.
    pub devices: Vec<(String, String)>,
    /// `host.pool_dir` or [`DEFAULT_POOL_DIR`].
    pub pool_dir: String,
}

impl Policy {
    /// The policy of a config.
    pub fn from_config(config: &ClusterConfig) -> Policy {
        let host = config.host.as_ref();
        Policy {
            accelerator: host
                .and_then(|h| h.accelerator)
                .unwrap_or(Accelerator::Auto),
            gpu_backend: host.and_then(|h| h.gpu_backend).unwrap_or(GpuBackend::Auto),
            devices: config
                .global
                .gpu_allocation
                .as_ref()
                .map(|g| {
                    g.devices
                        .iter()
                        .map(|d| (d.id.clone(), d.pci_address.to_ascii_lowercase()))
                        .collect()
                })
                .unwrap_or_default(),
            pool_dir: host
                .and_then(|h| h.pool_dir.clone())
                .unwrap_or_else(|| DEFAULT_POOL_DIR.to_owned()),
        }
    }

    /// `None` when real GPUs are passed to VMs (so IOMMU and nouveau matter); otherwise why not.
    pub fn no_real_gpus(&self) -> Option<&'static str> {
        if self.gpu_backend == GpuBackend::Simulated {
            Some("the GPUs are simulated (host.gpu_backend: simulated), so none is passed to a VM")
        } else if self.devices.is_empty() {
            Some("the config names no GPU (global.gpu_allocation.devices), so none is passed to a VM")
        } else {
            None
        }
    }

    /// How bad it is that KVM cannot be used, and why.
    fn kvm_missing(&self) -> (Status, &'static str) {
        match self.accelerator {
            Accelerator::Kvm => (Status::Fail, "host.accelerator is kvm, so the VMs cannot start"),
            Accelerator::Auto => (
                Status::Warn,
                "host.accelerator is auto, so the VMs fall back to TCG emulation, which is several times slower",
            ),
            Accelerator::Tcg => (
                Status::Warn,
                "host.accelerator is tcg, so the VMs do not need it, but TCG emulation is several times slower",
            ),
        }
    }
}

/// Runs every check against `host` for `config`.
pub fn run_checks(host: &dyn Host, config: &ClusterConfig) -> CheckReport {
    let policy = Policy::from_config(config);
    let kvm = host.kvm_probe();
    CheckReport {
        checks: vec![
            check_cpu(host, &policy, &kvm),
            check_iommu(host, &policy),
            check_kvm(host, &policy, &kvm),
            check_nouveau(host, &policy),
            check_packages(host),
            check_groups(host, &policy),
            check_gpu(host, &policy),
            check_resources(host, &policy, config),
            check_conflicts(host, config),
        ],
    }
}

fn shown(host: &dyn Host, p: &std::path::Path) -> String {
    host_path(host.root(), p)
}

fn read_cpuinfo(host: &dyn Host) -> Result<parse::CpuInfo, String> {
    let path = host.proc_cpuinfo();
    match read_optional(&path) {
        Ok(Some(t)) => Ok(parse::cpuinfo(&t)),
        Ok(None) => Err(format!("{} does not exist", shown(host, &path))),
        Err(e) => Err(format!("cannot read {}: {e}", shown(host, &path))),
    }
}

fn virt_remedy(policy: &Policy) -> String {
    let mut r = "Enable Intel VT-x or AMD-V (SVM) in the firmware (BIOS/UEFI) setup and reboot. If this host is itself a VM, \
                 turn on nested virtualization in the outer hypervisor (`options kvm_intel nested=1` or `options kvm_amd \
                 nested=1` there)."
        .to_owned();
    if policy.accelerator == Accelerator::Kvm {
        r.push_str(" To run without it, set `host.accelerator: auto` (or `tcg`) in cluster.yaml.");
    }
    r
}

fn check_cpu(host: &dyn Host, policy: &Policy, kvm: &KvmProbe) -> Check {
    const ID: &str = "cpu.virtualization";
    let cpu = match read_cpuinfo(host) {
        Ok(c) => c,
        Err(e) => {
            let (status, why) = policy.kvm_missing();
            return Check::new(
                ID,
                status,
                format!("{e}: the CPU flags are unknown; {why}."),
                virt_remedy(policy),
            );
        }
    };
    let nested = if cpu.hypervisor {
        " This host is itself a VM (nested virtualization)."
    } else {
        ""
    };
    if cpu.vmx || cpu.svm {
        let which = if cpu.vmx {
            "Intel VT-x (vmx)"
        } else {
            "AMD-V (svm)"
        };
        return Check::new(
            ID,
            Status::Pass,
            format!("{which} is among the CPU flags in /proc/cpuinfo.{nested}"),
            "",
        );
    }
    let (status, why) = policy.kvm_missing();
    let mut msg =
        "Neither vmx (Intel VT-x) nor svm (AMD-V) is among the CPU flags in /proc/cpuinfo"
            .to_owned();
    if cpu.hypervisor {
        msg.push_str("; this host is itself a VM, whose hypervisor hides them unless nested virtualization is on");
    }
    let kvm_there = match kvm {
        KvmProbe::Answered(12) => Some("/dev/kvm answers KVM_GET_API_VERSION all the same"),
        KvmProbe::OpenedNotDevice => Some("/dev/kvm opens all the same"),
        _ => None,
    };
    if let Some(k) = kvm_there {
        // KVM is there with its flags hidden (nested): usable, but guests may misbehave.
        return Check::new(
            ID,
            Status::Warn,
            format!("{msg}, but {k}: KVM reaches this host with the flags hidden, which nested guests do not always survive."),
            "Nothing is required while the kvm check passes. If guests hang or fail to start under KVM, set \
             `host.accelerator: tcg` in cluster.yaml (TCG emulation is slower but needs no flags), or turn on nested \
             virtualization properly in the outer hypervisor.",
        );
    }
    Check::new(ID, status, format!("{msg}; {why}."), virt_remedy(policy))
}

fn check_kvm(host: &dyn Host, policy: &Policy, kvm: &KvmProbe) -> Check {
    const ID: &str = "kvm";
    let unused = if policy.accelerator == Accelerator::Tcg {
        " (unused: host.accelerator is tcg)"
    } else {
        ""
    };
    let (status, why) = policy.kvm_missing();
    let vendor_module = match read_cpuinfo(host).ok().and_then(|c| c.vendor) {
        Some(v) if v == "AuthenticAMD" => "kvm_amd",
        Some(v) if v == "GenuineIntel" => "kvm_intel",
        _ => "kvm_intel (Intel) or kvm_amd (AMD)",
    };
    let perm_remedy = format!(
        "Add the user to the kvm group (`sudo usermod -aG kvm {}`, then log in again) or run as root; /dev/kvm \
         should be root:kvm 0660 (`sudo chgrp kvm /dev/kvm && sudo chmod 0660 /dev/kvm`).",
        host.current_user().name
    );
    match kvm {
        KvmProbe::Answered(12) => {
            Check::new(ID, Status::Pass, format!("/dev/kvm answers KVM_GET_API_VERSION (API version 12){unused}."), "")
        }
        KvmProbe::Answered(v) => Check::new(
            ID,
            status,
            format!("/dev/kvm answered KVM_GET_API_VERSION with {v}, not the stable 12: this kernel's KVM is unusual; {why}."),
            "Use a distribution kernel (Debian 12's works), or set `host.accelerator: tcg`.",
        ),
        KvmProbe::OpenedNotDevice => Check::new(
            ID,
            Status::Pass,
            format!(
                "/dev/kvm opens read-write, but it is not a character device (a fixture tree), so only that it opens was \
                 checked, not KVM_GET_API_VERSION{unused}."
            ),
            "",
        ),
        KvmProbe::Missing => Check::new(
            ID,
            status,
            format!("/dev/kvm does not exist: the KVM module is not loaded, or the CPU has no virtualization; {why}."),
            format!(
                "Load the module with `sudo modprobe {vendor_module}`; if that fails, enable virtualization in the firmware \
                 (see cpu.virtualization)."
            ),
        ),
        KvmProbe::NotOpenable(e) => Check::new(
            ID,
            status,
            format!("/dev/kvm exists but cannot be opened read-write by this user ({e}); {why}."),
            perm_remedy,
        ),
        KvmProbe::IoctlFailed(e) => Check::new(
            ID,
            status,
            format!("/dev/kvm opened but did not answer KVM_GET_API_VERSION ({e}); {why}."),
            format!("Reload the module (`sudo modprobe -r {vendor_module} && sudo modprobe {vendor_module}`) and look at `dmesg` for KVM errors."),
        ),
    }
}

/// What the kernel says about the IOMMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuState {
    /// Number of groups under `/sys/kernel/iommu_groups` (0 when the directory is absent).
    pub groups: Result<usize, String>,
    /// IOMMU-related kernel parameters of `/proc/cmdline` (`intel_iommu=on`, `iommu=pt`, ...).
    pub cmdline: Vec<String>,
    /// CPU vendor (`GenuineIntel`, `AuthenticAMD`), when known.
    pub vendor: Option<String>,
}

impl IommuState {
    /// The kernel parameters that enable the IOMMU for this CPU vendor.
    pub fn wanted_params(&self) -> [&'static str; 2] {
        match self.vendor.as_deref() {
            Some("AuthenticAMD") => ["amd_iommu=on", "iommu=pt"],
            _ => ["intel_iommu=on", "iommu=pt"],
        }
    }
}

/// Reads the IOMMU groups, the kernel command line and the CPU vendor.
pub fn iommu_state(host: &dyn Host) -> IommuState {
    let dir = host.sys_iommu_groups();
    let groups = match fs::read_dir(&dir) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot read {}: {e}", shown(host, &dir))),
    };
    let cmdline = read_optional(&host.proc_cmdline())
        .ok()
        .flatten()
        .map(|t| parse::cmdline(&t))
        .unwrap_or_default()
        .into_iter()
        .filter(|t| {
            t.starts_with("intel_iommu=") || t.starts_with("amd_iommu=") || t.starts_with("iommu=")
        })
        .collect();
    IommuState {
        groups,
        cmdline,
        vendor: read_cpuinfo(host).ok().and_then(|c| c.vendor),
    }
}

fn check_iommu(host: &dyn Host, policy: &Policy) -> Check {
    const ID: &str = "iommu";
    let st = iommu_state(host);
    let params = st.wanted_params().join(" ");
    let remedy = format!(
        "Enable VT-d / AMD-Vi (IOMMU) in the firmware setup, add `{params}` to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, \
         run `sudo update-grub` and reboot (`sudo hsw-cli prepare --apply` makes the grub edit and runs update-grub)."
    );
    let on_cmdline = if st.cmdline.is_empty() {
        "none on the kernel command line".to_owned()
    } else {
        st.cmdline.join(" ")
    };
    let groups = match st.groups {
        Ok(n) => n,
        Err(e) => {
            return Check::new(
                ID,
                Status::Warn,
                format!("{e}, so the IOMMU state is unknown."),
                remedy,
            )
        }
    };
    match (groups, policy.no_real_gpus()) {
        (0, None) => {
            let booted_on = st.cmdline.iter().any(|t| t.ends_with("_iommu=on"));
            let hint = if booted_on {
                " although the kernel booted with it enabled: VT-d / AMD-Vi is probably disabled in the firmware"
            } else {
                ""
            };
            Check::new(
                ID,
                Status::Fail,
                format!(
                    "There are no IOMMU groups under /sys/kernel/iommu_groups{hint} (IOMMU parameters: {on_cmdline}): \
                     GPUs cannot be passed to VMs without an IOMMU."
                ),
                remedy,
            )
        }
        (0, Some(why)) => Check::new(
            ID,
            Status::Skip,
            format!("There are no IOMMU groups (IOMMU parameters: {on_cmdline}); that matters only for GPU passthrough, and {why}."),
            remedy,
        ),
        (n, _) => Check::new(ID, Status::Pass, format!("{n} IOMMU groups (IOMMU parameters: {on_cmdline})."), ""),
    }
}

/// Where nouveau stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NouveauState {
    /// Loaded per `/proc/modules`; `None` when that file is absent (a kernel without modules).
    pub loaded: Result<Option<bool>, String>,
    /// Host paths of the modprobe.d files that blacklist it.
    pub blacklisted_in: Vec<String>,
    /// `modprobe.blacklist=...nouveau...` on the kernel command line.
    pub cmdline_blacklist: bool,
}

impl NouveauState {
    /// Whether anything keeps it from loading at boot.
    pub fn blacklisted(&self) -> bool {
        !self.blacklisted_in.is_empty() || self.cmdline_blacklist
    }

    /// Whether it is loaded now (unknown counts as not).
    pub fn is_loaded(&self) -> bool {
        matches!(self.loaded, Ok(Some(true)))
    }
}

/// The file `prepare` writes to blacklist nouveau, and its content.
pub const NOUVEAU_BLACKLIST_FILE: &str = "/etc/modprobe.d/hsw-blacklist-nouveau.conf";
/// Content of [`NOUVEAU_BLACKLIST_FILE`].
pub const NOUVEAU_BLACKLIST: &str =
    "# Written by hsw-cli prepare: keep nouveau off the NVIDIA GPUs (vfio-pci or the NVIDIA driver take them).\nblacklist nouveau\noptions nouveau modeset=0\n";

/// Reads `/proc/modules`, every `*.conf` of the modprobe.d directories, and `/proc/cmdline`.
pub fn nouveau_state(host: &dyn Host) -> NouveauState {
    let modules_path = host.proc_modules();
    let loaded = match read_optional(&modules_path) {
        Ok(Some(t)) => Ok(Some(parse::module_loaded(&t, "nouveau"))),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", shown(host, &modules_path))),
    };
    let mut blacklisted_in = Vec::new();
    let mut dirs = vec![host.etc_modprobe_d()];
    dirs.extend(host.lib_modprobe_d());
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "conf") {
                if let Ok(Some(t)) = read_optional(&f) {
                    if parse::modprobe_blacklists(&t, "nouveau") {
                        blacklisted_in.push(shown(host, &f));
                    }
                }
            }
        }
    }
    let cmdline_blacklist = read_optional(&host.proc_cmdline())
        .ok()
        .flatten()
        .is_some_and(|t| {
            parse::cmdline(&t).iter().any(|p| {
                p.strip_prefix("modprobe.blacklist=")
                    .is_some_and(|list| list.split(',').any(|m| m == "nouveau"))
            })
        });
    NouveauState {
        loaded,
        blacklisted_in,
        cmdline_blacklist,
    }
}

fn check_nouveau(host: &dyn Host, policy: &Policy) -> Check {
    const ID: &str = "nouveau";
    let st = nouveau_state(host);
    let blacklist_remedy = format!(
        "Write {NOUVEAU_BLACKLIST_FILE} with `blacklist nouveau` and `options nouveau modeset=0`, run `sudo update-initramfs -u` \
         and reboot (`sudo hsw-cli prepare --apply` writes the file and rebuilds the initramfs)."
    );
    let where_ = if st.blacklisted_in.is_empty() {
        "on the kernel command line (modprobe.blacklist)".to_owned()
    } else {
        format!("in {}", st.blacklisted_in.join(", "))
    };
    let loaded_text = match &st.loaded {
        Ok(Some(true)) => "nouveau is loaded (/proc/modules)".to_owned(),
        Ok(Some(false)) => "nouveau is not loaded".to_owned(),
        Ok(None) => {
            "nouveau is not loaded (the kernel has no loadable modules: /proc/modules is absent)"
                .to_owned()
        }
        Err(e) => format!("whether nouveau is loaded is unknown ({e})"),
    };
    if !st.is_loaded() && st.blacklisted() {
        return Check::new(
            ID,
            Status::Pass,
            format!("{loaded_text}, and it is blacklisted {where_}."),
            "",
        );
    }
    if let Some(why) = policy.no_real_gpus() {
        let black = if st.blacklisted() {
            format!("blacklisted {where_}")
        } else {
            "not blacklisted".to_owned()
        };
        return Check::new(
            ID,
            Status::Skip,
            format!("{loaded_text} and {black}; that matters only when real GPUs are passed to VMs, and {why}."),
            blacklist_remedy,
        );
    }
    if st.is_loaded() {
        if st.blacklisted() {
            return Check::new(
                ID,
                Status::Fail,
                format!("{loaded_text} although it is blacklisted {where_}: the host has not been rebooted since (or the initramfs still loads it)."),
                "Run `sudo update-initramfs -u` if the initramfs was not rebuilt since the blacklist was written, then reboot.",
            );
        }
        return Check::new(
            ID,
            Status::Fail,
            format!("{loaded_text} and holds the NVIDIA GPUs, so neither the NVIDIA driver nor vfio-pci can take them; nothing in /etc/modprobe.d blacklists it."),
            blacklist_remedy,
        );
    }
    Check::new(
        ID,
        Status::Warn,
        format!("{loaded_text}, but nothing in /etc/modprobe.d blacklists it: it can take the GPUs at the next boot."),
        blacklist_remedy,
    )
}

/// The runtime packages `scripts/install-deps.sh full` installs (its `full_pkgs`), in its order.
/// A test keeps the two lists equal.
pub const FULL_PACKAGES: &[&str] = &[
    "libvirt-daemon-system",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "dnsmasq-base",
    "iproute2",
    "mmdebstrap",
    "e2fsprogs",
    "cloud-image-utils",
    "genisoimage",
    "openssh-client",
    "packer",
    "ansible",
    "mdevctl",
    "jq",
];

/// A tool the clusters cannot be built without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// Name for people.
    pub name: &'static str,
    /// Debian packages that provide it (any one).
    pub packages: &'static [&'static str],
    /// Executables that show it is there without a package (any one).
    pub binaries: &'static [&'static str],
}

/// The tools `packages` requires (missing ones fail).
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "libvirt daemon",
        packages: &["libvirt-daemon-system"],
        binaries: &["libvirtd", "virtqemud"],
    },
    Tool {
        name: "QEMU",
        packages: &["qemu-system-x86"],
        binaries: &["qemu-system-x86_64"],
    },
    Tool {
        name: "qemu-img",
        packages: &["qemu-utils"],
        binaries: &["qemu-img"],
    },
    Tool {
        name: "Terraform",
        packages: &["terraform"],
        binaries: &["terraform"],
    },
    Tool {
        name: "Ansible",
        packages: &["ansible", "ansible-core"],
        binaries: &["ansible-playbook"],
    },
];

/// Where one tool was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Installed as a Debian package: (package, version).
    Package(String, String),
    /// An executable on the search path: (host path, version when it could be read).
    Binary(String, Option<String>),
    /// Not found.
    Missing,
}

/// What is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageState {
    /// The dpkg database, when the host has one.
    pub dpkg: Option<BTreeMap<String, DpkgPackage>>,
    /// Each of [`TOOLS`], and where it was found.
    pub tools: Vec<(Tool, Found)>,
    /// [`FULL_PACKAGES`] that dpkg does not list as installed (empty without a dpkg database).
    pub missing_packages: Vec<&'static str>,
}

/// Looks up [`TOOLS`] (dpkg, then the search path) and [`FULL_PACKAGES`].
pub fn package_state(host: &dyn Host) -> PackageState {
    let dpkg = read_optional(&host.var_lib_dpkg_status())
        .ok()
        .flatten()
        .map(|t| parse::dpkg_status(&t));
    let installed = |p: &str| {
        dpkg.as_ref()
            .and_then(|d| d.get(p))
            .filter(|e| e.installed)
            .map(|e| e.version.clone())
    };
    let tools = TOOLS
        .iter()
        .map(|tool| {
            if let Some((p, v)) = tool
                .packages
                .iter()
                .find_map(|p| installed(p).map(|v| (p, v)))
            {
                return (*tool, Found::Package((*p).to_owned(), v));
            }
            match tool.binaries.iter().find_map(|b| host.find_tool(b)) {
                Some(path) => {
                    let version = tool_version(host, tool, &path);
                    (*tool, Found::Binary(path, version))
                }
                None => (*tool, Found::Missing),
            }
        })
        .collect();
    let missing_packages = match &dpkg {
        Some(_) => FULL_PACKAGES
            .iter()
            .copied()
            .filter(|p| installed(p).is_none())
            .collect(),
        None => Vec::new(),
    };
    PackageState {
        dpkg,
        tools,
        missing_packages,
    }
}

/// Asks a tool found outside dpkg for its version (real root only: the runner skips elsewhere).
fn tool_version(host: &dyn Host, tool: &Tool, path: &str) -> Option<String> {
    if !host.is_real_root() {
        return None;
    }
    let cmd = if tool.name == "Terraform" {
        CommandSpec::new(path, &["version", "-json"]).with_env("CHECKPOINT_DISABLE", "1")
    } else {
        CommandSpec::new(path, &["--version"])
    };
    match host.runner().run(&cmd, Duration::from_secs(10)) {
        RunOutcome::Ran {
            code: Some(0),
            stdout,
            ..
        } => {
            if tool.name == "Terraform" {
                serde_json::from_str::<serde_json::Value>(&stdout)
                    .ok()
                    .and_then(|v| {
                        v.get("terraform_version")
                            .and_then(|s| s.as_str())
                            .map(str::to_owned)
                    })
            } else {
                stdout
                    .lines()
                    .next()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
            }
        }
        _ => None,
    }
}

fn check_packages(host: &dyn Host) -> Check {
    const ID: &str = "packages";
    let st = package_state(host);
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for (tool, found) in &st.tools {
        match found {
            Found::Package(p, v) => present.push(format!("{} {v} ({p})", tool.name)),
            Found::Binary(path, Some(v)) => present.push(format!("{} {v} ({path})", tool.name)),
            Found::Binary(path, None) => {
                let why = if host.is_real_root() {
                    "version unknown"
                } else {
                    "version not read under an alternate root"
                };
                present.push(format!("{} at {path} ({why})", tool.name));
            }
            Found::Missing => missing.push(*tool),
        }
    }
    let others: Vec<&str> = st
        .missing_packages
        .iter()
        .copied()
        .filter(|p| !missing.iter().any(|t| t.packages.contains(p)))
        .filter(|p| {
            !st.tools
                .iter()
                .any(|(t, f)| t.packages.contains(p) && !matches!(f, Found::Missing))
        })
        .collect();
    let mut msg = String::new();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|t| t.name).collect();
        msg.push_str(&format!("Missing: {}. ", names.join(", ")));
    }
    if !present.is_empty() {
        msg.push_str(&format!("Found: {}.", present.join("; ")));
    }
    if !others.is_empty() {
        msg.push_str(&format!(
            " Not installed (image building and the sandbox use them): {}.",
            others.join(", ")
        ));
    }
    if st.dpkg.is_none() {
        msg.push_str(
            " There is no dpkg database (/var/lib/dpkg/status): tools were looked up on PATH only.",
        );
    }
    let mut remedy = Vec::new();
    let apt: Vec<&str> = missing
        .iter()
        .flat_map(|t| t.packages.first().copied())
        .filter(|p| *p != "terraform")
        .chain(others.iter().copied())
        .collect();
    if !apt.is_empty() {
        remedy.push(format!(
            "Install with `sudo apt-get install -y --no-install-recommends {}` (or `sudo hsw-cli prepare --apply`); when \
             qemu-system-x86 is among them, install qemu-utils at the same version in the same call.",
            apt.join(" ")
        ));
    }
    if missing.iter().any(|t| t.name == "Terraform") {
        remedy.push(
            "Terraform is not a Debian package: install Terraform >= 1.0 from HashiCorp (https://developer.hashicorp.com/terraform/install) into /usr/local/bin."
                .to_owned(),
        );
    }
    let status = if !missing.is_empty() {
        Status::Fail
    } else if !others.is_empty() {
        Status::Warn
    } else {
        Status::Pass
    };
    Check::new(ID, status, msg.trim().to_owned(), remedy.join(" "))
}

/// Group membership of the judged user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The user.
    pub user: User,
    /// Groups it needs (libvirt; kvm unless the accelerator is tcg).
    pub needed: Vec<&'static str>,
    /// Needed groups it is not a member of (and that exist).
    pub missing: Vec<&'static str>,
    /// Needed groups that `/etc/group` does not have.
    pub absent: Vec<&'static str>,
    /// Why `/etc/group` could not be read.
    pub error: Option<String>,
    /// The user has no entry in `/etc/passwd` (so it cannot be added to groups).
    pub unknown_user: bool,
}

/// Reads `/etc/group` for the user's memberships.
pub fn group_state(host: &dyn Host, policy: &Policy) -> GroupState {
    let user = host.current_user();
    let mut needed = vec!["libvirt"];
    if policy.accelerator != Accelerator::Tcg {
        needed.push("kvm");
    }
    let mut st = GroupState {
        user,
        needed: needed.clone(),
        missing: Vec::new(),
        absent: Vec::new(),
        error: None,
        unknown_user: false,
    };
    if st.user.is_root() {
        return st;
    }
    if st.user.gid.is_none() {
        st.unknown_user = true;
        return st;
    }
    let path = host.etc_group();
    let text = match read_optional(&path) {
        Ok(Some(t)) => t,
        Ok(None) => {
            st.error = Some(format!("{} does not exist", shown(host, &path)));
            return st;
        }
        Err(e) => {
            st.error = Some(format!("cannot read {}: {e}", shown(host, &path)));
            return st;
        }
    };
    let entries = parse::groups(&text);
    for g in needed {
        match entries.iter().find(|e| e.name == g) {
            None => st.absent.push(g),
            Some(e) => {
                let member =
                    e.members.contains(&st.user.name) || (e.gid.is_some() && e.gid == st.user.gid);
                if !member {
                    st.missing.push(g);
                }
            }
        }
    }
    st
}

fn check_groups(host: &dyn Host, policy: &Policy) -> Check {
    const ID: &str = "groups";
    let st = group_state(host, policy);
    let name = &st.user.name;
    if st.user.is_root() {
        return Check::new(
            ID,
            Status::Pass,
            "Running as root (uid 0): no group membership is needed.",
            "",
        );
    }
    if st.unknown_user {
        return Check::new(
            ID,
            Status::Fail,
            format!("User {name} has no entry in /etc/passwd, so it cannot be in any group (does HSW_USER or SUDO_USER name someone else?)."),
            format!("Create the user (`sudo adduser {name}`), or set HSW_USER to an existing login."),
        );
    }
    if let Some(e) = &st.error {
        return Check::new(
            ID,
            Status::Fail,
            format!(
                "{}, so the groups of user {name} are unknown.",
                capitalize(e)
            ),
            "Restore /etc/group from a backup.",
        );
    }
    let mut problems = Vec::new();
    let mut status = Status::Pass;
    for g in &st.absent {
        problems.push(format!(
            "there is no `{g}` group in /etc/group (is libvirt-daemon-system installed?)"
        ));
        status = Status::Fail;
    }
    if !st.missing.is_empty() {
        problems.push(format!(
            "user {name} is not in the {} group{} of /etc/group",
            st.missing.join(" and "),
            plural(st.missing.len())
        ));
        if st.missing.contains(&"libvirt") {
            status = Status::Fail;
            problems.push("without libvirt it cannot manage VMs through qemu:///system".to_owned());
        }
        if st.missing.contains(&"kvm") {
            let (s, why) = policy.kvm_missing();
            status = status.max(s);
            problems.push(format!(
                "without kvm, QEMU started by {name} cannot use /dev/kvm: {why}"
            ));
        }
    }
    if status == Status::Pass {
        let note = if policy.accelerator == Accelerator::Tcg {
            " (kvm is not needed: host.accelerator is tcg)"
        } else {
            ""
        };
        return Check::new(
            ID,
            Status::Pass,
            format!("User {name} is in {} per /etc/group{note}; a membership added since the last login takes effect at the next one.", st.needed.join(" and ")),
            "",
        );
    }
    let mut remedy = Vec::new();
    if !st.absent.is_empty() {
        remedy.push("Install libvirt (`sudo apt-get install -y libvirt-daemon-system`), which creates the libvirt and kvm groups.".to_owned());
    }
    if !st.missing.is_empty() {
        remedy.push(format!(
            "Run `sudo usermod -aG {} {name}` (or `sudo hsw-cli prepare --apply`), then log out and back in.",
            st.missing.join(",")
        ));
    }
    Check::new(
        ID,
        status,
        format!("{}.", capitalize(&problems.join("; "))),
        remedy.join(" "),
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn check_gpu(host: &dyn Host, policy: &Policy) -> Check {
    const ID: &str = "gpu";
    if policy.gpu_backend == GpuBackend::Simulated {
        return Check::new(
            ID,
            Status::Skip,
            format!(
                "The GPUs are simulated (host.gpu_backend: simulated): MIG rules are enforced but nothing reaches hardware, so {} need not exist on this host.",
                match policy.devices.len() {
                    0 => "no GPU".to_owned(),
                    1 => "the GPU named in global.gpu_allocation".to_owned(),
                    n => format!("the {n} GPUs named in global.gpu_allocation"),
                }
            ),
            "Set `host.gpu_backend: nvml` (or `auto`) in cluster.yaml to use real NVIDIA GPUs.",
        );
    }
    if policy.devices.is_empty() {
        return Check::new(
            ID,
            Status::Skip,
            "The config names no GPU (global.gpu_allocation.devices).",
            "Nothing to do unless GPUs are wanted.",
        );
    }
    let mut found = Vec::new();
    let mut bad = Vec::new();
    for (id, addr) in &policy.devices {
        let dir = host.sys_bus_pci_devices().join(addr);
        if !dir.exists() {
            bad.push(format!(
                "{id}: there is no PCI device {addr} (/sys/bus/pci/devices/{addr})"
            ));
            continue;
        }
        let read = |f: &str| {
            read_optional(&dir.join(f))
                .ok()
                .flatten()
                .map(|s| s.trim().to_ascii_lowercase())
        };
        let vendor = read("vendor").unwrap_or_default();
        if vendor != "0x10de" {
            let shown = if vendor.is_empty() {
                "unknown".to_owned()
            } else {
                vendor
            };
            bad.push(format!(
                "{id}: PCI device {addr} is not an NVIDIA device (vendor {shown}, not 0x10de)"
            ));
            continue;
        }
        let device = read("device").unwrap_or_else(|| "unknown".into());
        let driver = fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .map_or("no driver".to_owned(), |d| format!("driver {d}"));
        found.push(format!("{id} at {addr} (NVIDIA device {device}, {driver})"));
    }
    let nvml = "NVML is not available in hsw yet, so the driver, MIG mode and MIG profiles were not checked.";
    if bad.is_empty() {
        return Check::new(
            ID,
            Status::Pass,
            format!("Found {}. {nvml}", found.join("; ")),
            "",
        );
    }
    let (status, fallback) = match policy.gpu_backend {
        GpuBackend::Auto => (
            Status::Warn,
            " With host.gpu_backend: auto, hsw falls back to simulated GPUs.",
        ),
        _ => (Status::Fail, ""),
    };
    let mut msg = format!("{}.", capitalize(&bad.join("; ")));
    if !found.is_empty() {
        msg.push_str(&format!(" Found {}.", found.join("; ")));
    }
    msg.push_str(fallback);
    msg.push(' ');
    msg.push_str(nvml);
    Check::new(
        ID,
        status,
        msg,
        "List the NVIDIA GPUs with `lspci -D -d 10de:` and put their addresses in global.gpu_allocation.devices[].pci_address, \
         or set `host.gpu_backend: simulated` to run without them.",
    )
}

fn gib(bytes: u64) -> String {
    let tenths = bytes.saturating_mul(10) / GIB;
    format!("{}.{} GiB", tenths / 10, tenths % 10)
}

fn check_resources(host: &dyn Host, policy: &Policy, config: &ClusterConfig) -> Check {
    const ID: &str = "resources";
    let groups = rules::groups(config);
    let sum = |f: &dyn Fn(&rules::GroupRef) -> u32| -> u64 {
        groups
            .iter()
            .map(|g| u64::from(g.count) * u64::from(f(g)))
            .sum()
    };
    let vm_mem = sum(&|g| g.memory_gb).saturating_mul(GIB);
    let vm_cpus = sum(&|g| g.cpu_cores);
    let vm_disk = sum(&|g| g.disk_gb).saturating_mul(GIB);
    let vms: u64 = groups.iter().map(|g| u64::from(g.count)).sum();
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    let mut remedy = Vec::new();

    // Memory.
    let mem_path = host.proc_meminfo();
    match read_optional(&mem_path) {
        Ok(Some(t)) => {
            let m = parse::meminfo(&t);
            let total = m.total_kib.map(|k| k.saturating_mul(1024));
            match m.available_kib.map(|k| k.saturating_mul(1024)).or(total) {
                Some(avail) => {
                    let total_text = total
                        .map(|t| format!(" of {} total", gib(t)))
                        .unwrap_or_default();
                    let line = format!(
                        "memory: the {vms} VMs need {}, {} is available{total_text}",
                        gib(vm_mem),
                        gib(avail)
                    );
                    if vm_mem > avail {
                        status = status.max(Status::Fail);
                        parts.push(format!("{line}, which is not enough"));
                        remedy.push(
                            "Lower memory_gb or count in cluster.yaml, or stop what uses the host's memory.".to_owned(),
                        );
                    } else if vm_mem.saturating_mul(100) > avail.saturating_mul(MEM_WARN_PERCENT) {
                        status = status.max(Status::Warn);
                        parts
                            .push(format!("{line}, above {MEM_WARN_PERCENT}% of it, which leaves little for the host"));
                        remedy
                            .push("Lower memory_gb or count in cluster.yaml to leave the host some memory.".to_owned());
                    } else {
                        parts.push(line);
                    }
                }
                None => {
                    status = status.max(Status::Warn);
                    parts.push(format!(
                        "memory: {} has no MemTotal or MemAvailable",
                        shown(host, &mem_path)
                    ));
                    remedy.push("Compare the VMs' memory_gb with `free -g` by hand.".to_owned());
                }
            }
        }
        Ok(None) => {
            status = status.max(Status::Warn);
            parts.push(format!(
                "memory: {} does not exist, so the host's memory is unknown",
                shown(host, &mem_path)
            ));
            remedy.push(
                "Make sure /proc is mounted, or compare memory_gb with `free -g` by hand."
                    .to_owned(),
            );
        }
        Err(e) => {
            status = status.max(Status::Warn);
            parts.push(format!(
                "memory: cannot read {}: {e}",
                shown(host, &mem_path)
            ));
            remedy.push(
                "Make sure /proc is readable, or compare memory_gb with `free -g` by hand."
                    .to_owned(),
            );
        }
    }

    // CPUs.
    match read_cpuinfo(host) {
        Ok(c) if c.logical_cpus > 0 => {
            let cpus = c.logical_cpus as u64;
            let biggest = groups
                .iter()
                .map(|g| u64::from(g.cpu_cores))
                .max()
                .unwrap_or(0);
            let ratio10 = vm_cpus.saturating_mul(10) / cpus;
            let line = format!(
                "CPUs: {vm_cpus} vCPUs on {cpus} logical CPUs ({}.{} per CPU)",
                ratio10 / 10,
                ratio10 % 10
            );
            if vm_cpus > cpus.saturating_mul(VCPU_RATIO_WARN) {
                status = status.max(Status::Warn);
                parts.push(format!(
                    "{line}, above the {VCPU_RATIO_WARN}:1 overcommit hsw warns at"
                ));
                remedy.push(
                    "Lower cpu_cores or count in cluster.yaml; overcommit works, but the VMs will be slow.".to_owned(),
                );
            } else if biggest > cpus {
                status = status.max(Status::Warn);
                parts.push(format!(
                    "{line}; one VM has {biggest} vCPUs, more than the host has"
                ));
                remedy.push(format!("Give no VM more than {cpus} cpu_cores."));
            } else {
                parts.push(line);
            }
        }
        Ok(_) => {
            status = status.max(Status::Warn);
            parts.push("CPUs: /proc/cpuinfo lists no processor".to_owned());
            remedy.push("Compare the VMs' cpu_cores with `nproc` by hand.".to_owned());
        }
        Err(e) => {
            status = status.max(Status::Warn);
            parts.push(format!("CPUs: {e}"));
            remedy.push(
                "Make sure /proc is mounted, or compare cpu_cores with `nproc` by hand.".to_owned(),
            );
        }
    }

    // Disk.
    match host.disk_free(&policy.pool_dir) {
        Ok(d) => {
            let at = if d.measured == policy.pool_dir {
                format!("at {}", d.measured)
            } else {
                format!("at {} ({} does not exist yet)", d.measured, policy.pool_dir)
            };
            let line = format!(
                "disk: the VM disks total {} (thin qcow2 overlays), {} is free {at}",
                gib(vm_disk),
                gib(d.free_bytes)
            );
            if d.free_bytes.saturating_mul(100) < vm_disk.saturating_mul(DISK_FAIL_PERCENT) {
                status = status.max(Status::Fail);
                parts.push(format!("{line}, below {DISK_FAIL_PERCENT}% of the total"));
                remedy.push(
                    "Free space on that filesystem, point host.pool_dir at a larger one, or lower disk_gb.".to_owned(),
                );
            } else if d.free_bytes < vm_disk {
                status = status.max(Status::Warn);
                parts.push(format!(
                    "{line}: enough to start, not for every disk to fill up"
                ));
                remedy.push(
                    "Watch the free space, or point host.pool_dir at a larger filesystem."
                        .to_owned(),
                );
            } else {
                parts.push(line);
            }
        }
        Err(e) => {
            status = status.max(Status::Warn);
            parts.push(format!(
                "disk: cannot measure the free space for {} ({e})",
                policy.pool_dir
            ));
            remedy.push(format!(
                "Compare the VMs' disk_gb with `df -h {}` by hand.",
                policy.pool_dir
            ));
        }
    }
    Check::new(
        ID,
        status,
        format!("{}.", capitalize(&parts.join("; "))),
        remedy.join(" "),
    )
}

fn check_conflicts(host: &dyn Host, config: &ClusterConfig) -> Check {
    const ID: &str = "conflicts";
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    let route_path = host.proc_net_route();
    let (routes, route_note) = match read_optional(&route_path) {
        Ok(Some(t)) => (parse::routes(&t), None),
        Ok(None) => (
            Vec::new(),
            Some(format!(
                "{} does not exist, so routes were not compared",
                shown(host, &route_path)
            )),
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("cannot read {}: {e}", shown(host, &route_path))),
        ),
    };
    for (name, net) in &config.global.networks {
        let bridge = net.bridge.as_str();
        let bridge_path = host.sys_class_net().join(bridge);
        let exists = !matches!(bridge, "." | "..") && fs::symlink_metadata(&bridge_path).is_ok();
        if exists {
            problems.push(format!(
                "network {name}: interface {bridge} already exists (/sys/class/net/{bridge})"
            ));
        }
        if let Ok(subnet) = rules::parse_subnet(&net.subnet) {
            let hits: Vec<String> = routes
                .iter()
                .filter(|r| {
                    r.net.prefix_len() > 0
                        && (r.net.contains(&subnet.network()) || subnet.contains(&r.net.network()))
                })
                .map(|r| format!("{} via {}", r.net, r.iface))
                .collect();
            if hits.is_empty() {
                fine.push(format!("{bridge} / {subnet}"));
            } else {
                problems.push(format!(
                    "network {name}: {subnet} overlaps routes already on this host ({})",
                    hits.join(", ")
                ));
            }
        }
    }
    let mut msg = if problems.is_empty() {
        format!(
            "No bridge of the config exists yet and no subnet is routed already ({}).",
            fine.join(", ")
        )
    } else {
        format!("{}.", capitalize(&problems.join("; ")))
    };
    if let Some(n) = &route_note {
        msg.push_str(&format!(" Note: {n}."));
    }
    if problems.is_empty() {
        let status = if route_note.is_some() {
            Status::Warn
        } else {
            Status::Pass
        };
        return Check::new(ID, status, msg, "Check the routes by hand with `ip route`.");
    }
    Check::new(
        ID,
        Status::Fail,
        msg,
        "If they are left from an earlier deployment of this config, destroy it first (`terraform destroy`); otherwise \
         choose another `bridge` or `subnet` under global.networks in cluster.yaml (`ip -br link` and `ip route` show what is taken).",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::{validate_str, DEFAULT_CONFIG};
    use crate::host::env::FixtureHost;

    fn default_config() -> ClusterConfig {
        validate_str(DEFAULT_CONFIG).config.expect("default config")
    }

    #[test]
    fn status_order_is_worst_last() {
        assert!(
            Status::Fail > Status::Warn
                && Status::Warn > Status::Skip
                && Status::Skip > Status::Pass
        );
    }

    #[test]
    fn an_empty_root_fails_nothing_for_the_default_config_except_what_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let host = FixtureHost::new(dir.path(), "root", 100 * GIB);
        let r = run_checks(&host, &default_config());
        let ids: Vec<&str> = r.checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, CHECK_IDS);
        // An empty tree has no tools, so packages fails; nothing panics and every message is a sentence.
        assert_eq!(r.get("packages").unwrap().status, Status::Fail);
        assert_eq!(r.get("cpu.virtualization").unwrap().status, Status::Warn);
        assert_eq!(r.get("kvm").unwrap().status, Status::Warn);
        assert_eq!(r.get("gpu").unwrap().status, Status::Skip);
        for c in &r.checks {
            assert!(c.message.ends_with('.'), "{}: {}", c.id, c.message);
            assert!(
                c.status == Status::Pass || !c.remedy.is_empty(),
                "{} has no remedy",
                c.id
            );
        }
    }
}
