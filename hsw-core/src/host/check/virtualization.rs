//! The virtualization checks: the CPU's virtualization flags (`cpu.virtualization`), the IOMMU (`iommu`) and
//! `/dev/kvm` (`kvm`).

use std::fs;

use super::{read_cpuinfo, shown, Check, Policy, Status};
use crate::config::model::Accelerator;
use crate::host::env::{read_optional, Host, KvmProbe};
use crate::host::parse;

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

pub(super) fn check_cpu(host: &dyn Host, policy: &Policy, kvm: &KvmProbe) -> Check {
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

pub(super) fn check_kvm(host: &dyn Host, policy: &Policy, kvm: &KvmProbe) -> Check {
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

pub(super) fn check_iommu(host: &dyn Host, policy: &Policy) -> Check {
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
