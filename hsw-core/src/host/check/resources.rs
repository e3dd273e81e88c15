//! The `resources` check: the VMs' memory, vCPUs and disks (their sizes from the deployment layout) against
//! what the host has. Each resource gives one [`Finding`]; the check is the worst of them.

use super::{
    capitalize, read_cpuinfo, shown, Check, Policy, Status, DISK_FAIL_PERCENT, GIB,
    MEM_WARN_PERCENT, VCPU_RATIO_WARN,
};
use crate::config::model::ClusterConfig;
use crate::host::env::{read_optional, Host};
use crate::host::parse;
use crate::layout::{Layout, Vm};

/// What one resource came to: a status, a part of the message, and what to do unless it passed.
struct Finding {
    status: Status,
    part: String,
    remedy: Option<String>,
}

impl Finding {
    fn pass(part: String) -> Finding {
        Finding {
            status: Status::Pass,
            part,
            remedy: None,
        }
    }

    fn warn(part: String, remedy: impl Into<String>) -> Finding {
        Finding {
            status: Status::Warn,
            part,
            remedy: Some(remedy.into()),
        }
    }

    fn fail(part: String, remedy: impl Into<String>) -> Finding {
        Finding {
            status: Status::Fail,
            part,
            remedy: Some(remedy.into()),
        }
    }
}

fn gib(bytes: u64) -> String {
    let tenths = bytes.saturating_mul(10) / GIB;
    format!("{}.{} GiB", tenths / 10, tenths % 10)
}

/// The sum of one size over every VM.
fn total(vms: &[Vm], size: impl Fn(&Vm) -> u32) -> u64 {
    vms.iter().map(|v| u64::from(size(v))).sum()
}

pub(super) fn check_resources(host: &dyn Host, policy: &Policy, config: &ClusterConfig) -> Check {
    const ID: &str = "resources";
    let vms = Layout::without_gpus(config).vms;
    let findings = [
        memory(host, &vms),
        cpus(host, &vms),
        disk(host, policy, &vms),
    ];
    let status = findings
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Pass);
    let parts: Vec<&str> = findings.iter().map(|f| f.part.as_str()).collect();
    let remedy: Vec<&str> = findings
        .iter()
        .filter_map(|f| f.remedy.as_deref())
        .collect();
    Check::new(
        ID,
        status,
        format!("{}.", capitalize(&parts.join("; "))),
        remedy.join(" "),
    )
}

fn memory(host: &dyn Host, vms: &[Vm]) -> Finding {
    let vm_mem = total(vms, |v| v.memory_gb).saturating_mul(GIB);
    let mem_path = host.proc_meminfo();
    let text = match read_optional(&mem_path) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Finding::warn(
                format!(
                    "memory: {} does not exist, so the host's memory is unknown",
                    shown(host, &mem_path)
                ),
                "Make sure /proc is mounted, or compare memory_gb with `free -g` by hand.",
            )
        }
        Err(e) => {
            return Finding::warn(
                format!("memory: cannot read {}: {e}", shown(host, &mem_path)),
                "Make sure /proc is readable, or compare memory_gb with `free -g` by hand.",
            )
        }
    };
    let m = parse::meminfo(&text);
    let total_bytes = m.total_kib.map(|k| k.saturating_mul(1024));
    let Some(avail) = m
        .available_kib
        .map(|k| k.saturating_mul(1024))
        .or(total_bytes)
    else {
        return Finding::warn(
            format!(
                "memory: {} has no MemTotal or MemAvailable",
                shown(host, &mem_path)
            ),
            "Compare the VMs' memory_gb with `free -g` by hand.",
        );
    };
    let total_text = total_bytes
        .map(|t| format!(" of {} total", gib(t)))
        .unwrap_or_default();
    let line = format!(
        "memory: the {} VMs need {}, {} is available{total_text}",
        vms.len(),
        gib(vm_mem),
        gib(avail)
    );
    if vm_mem > avail {
        Finding::fail(
            format!("{line}, which is not enough"),
            "Lower memory_gb or count in cluster.yaml, or stop what uses the host's memory.",
        )
    } else if vm_mem.saturating_mul(100) > avail.saturating_mul(MEM_WARN_PERCENT) {
        Finding::warn(
            format!("{line}, above {MEM_WARN_PERCENT}% of it, which leaves little for the host"),
            "Lower memory_gb or count in cluster.yaml to leave the host some memory.",
        )
    } else {
        Finding::pass(line)
    }
}

fn cpus(host: &dyn Host, vms: &[Vm]) -> Finding {
    let cpu = match read_cpuinfo(host) {
        Ok(c) if c.logical_cpus > 0 => c,
        Ok(_) => {
            return Finding::warn(
                "CPUs: /proc/cpuinfo lists no processor".to_owned(),
                "Compare the VMs' cpu_cores with `nproc` by hand.",
            )
        }
        Err(e) => {
            return Finding::warn(
                format!("CPUs: {e}"),
                "Make sure /proc is mounted, or compare cpu_cores with `nproc` by hand.",
            )
        }
    };
    let vm_cpus = total(vms, |v| v.vcpu);
    let cpus = cpu.logical_cpus as u64;
    let biggest = vms.iter().map(|v| u64::from(v.vcpu)).max().unwrap_or(0);
    let ratio10 = vm_cpus.saturating_mul(10) / cpus;
    let line = format!(
        "CPUs: {vm_cpus} vCPUs on {cpus} logical CPUs ({}.{} per CPU)",
        ratio10 / 10,
        ratio10 % 10
    );
    if vm_cpus > cpus.saturating_mul(VCPU_RATIO_WARN) {
        Finding::warn(
            format!("{line}, above the {VCPU_RATIO_WARN}:1 overcommit hsw warns at"),
            "Lower cpu_cores or count in cluster.yaml; overcommit works, but the VMs will be slow.",
        )
    } else if biggest > cpus {
        Finding::warn(
            format!("{line}; one VM has {biggest} vCPUs, more than the host has"),
            format!("Give no VM more than {cpus} cpu_cores."),
        )
    } else {
        Finding::pass(line)
    }
}

fn disk(host: &dyn Host, policy: &Policy, vms: &[Vm]) -> Finding {
    let vm_disk = total(vms, |v| v.disk_gb).saturating_mul(GIB);
    let d = match host.disk_free(&policy.pool_dir) {
        Ok(d) => d,
        Err(e) => {
            return Finding::warn(
                format!(
                    "disk: cannot measure the free space for {} ({e})",
                    policy.pool_dir
                ),
                format!(
                    "Compare the VMs' disk_gb with `df -h {}` by hand.",
                    policy.pool_dir
                ),
            )
        }
    };
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
        Finding::fail(
            format!("{line}, below {DISK_FAIL_PERCENT}% of the total"),
            "Free space on that filesystem, point host.pool_dir at a larger one, or lower disk_gb.",
        )
    } else if d.free_bytes < vm_disk {
        Finding::warn(
            format!("{line}: enough to start, not for every disk to fill up"),
            "Watch the free space, or point host.pool_dir at a larger filesystem.",
        )
    } else {
        Finding::pass(line)
    }
}
