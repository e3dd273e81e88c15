//! The GPU checks: nouveau kept off the NVIDIA GPUs (`nouveau`) and the GPUs the config names (`gpu`).

use std::fs;

use super::{capitalize, shown, Check, Policy, Status};
use crate::config::model::GpuBackend;
use crate::host::env::{read_optional, Host};
use crate::host::parse;

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

pub(super) fn check_nouveau(host: &dyn Host, policy: &Policy) -> Check {
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

pub(super) fn check_gpu(host: &dyn Host, policy: &Policy) -> Check {
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
    let nvml = "The driver, MIG mode, vGPU types and passthrough are judged by gpu.driver, gpu.mig, gpu.vgpu_types and gpu.passthrough.";
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
