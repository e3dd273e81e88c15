//! The host checks: one stable id each, a status, a message and a remedy a person can follow.
//!
//! Each area first gathers its facts into a small state struct (`*_state` functions, also used
//! by [`super::prepare`]), then judges them against a [`Policy`] drawn from the config. Severity
//! follows what the config needs: a missing KVM fails only with `host.accelerator: kvm`; IOMMU
//! and nouveau matter only when real GPUs are passed to VMs.
//!
//! One file per area: [`virtualization`] (CPU flags, IOMMU, KVM), [`drivers`] (nouveau, the GPUs),
//! [`gpu_vms`] (what real GPUs reaching VMs need: the driver, MIG mode, vGPU types, passthrough, OVMF; judged
//! from [`GpuFacts`] that hsw-gpu-backend gathers), [`packages`], [`groups`], [`qemu`] (QEMU's user and
//! confinement), [`resources`] (memory, CPUs, disk) and [`conflicts`] (bridges and routes); this
//! file has the report types, the [`Policy`] and [`run_checks`].

mod conflicts;
mod drivers;
mod gpu_vms;
mod groups;
mod packages;
mod qemu;
mod resources;
mod virtualization;

use serde::Serialize;

pub use drivers::{nouveau_state, NouveauState, NOUVEAU_BLACKLIST, NOUVEAU_BLACKLIST_FILE};
pub use gpu_vms::{
    planned, planned_gpus, DeviceFacts, DriverAnswer, DriverFacts, GpuFacts, OfferedType,
    PassthroughFacts, OVMF_CODE, OVMF_VARS,
};
pub use groups::{group_state, GroupState};
pub use packages::{package_state, Found, PackageState, Tool, FULL_PACKAGES, TOOLS};
pub use qemu::{kernel_security_module, parse_qemu_conf, QemuConf};
pub use virtualization::{iommu_state, IommuState};

use super::env::{host_path, read_optional, Host};
use super::parse;
use crate::config::model::{Accelerator, ClusterConfig, GpuBackend};

/// The check ids, in the order they run and print.
pub const CHECK_IDS: [&str; 15] = [
    "cpu.virtualization",
    "iommu",
    "kvm",
    "nouveau",
    "packages",
    "groups",
    "qemu.privileges",
    "gpu",
    "gpu.driver",
    "gpu.mig",
    "gpu.vgpu_types",
    "gpu.passthrough",
    "ovmf",
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
    /// `host.pool_dir` or [`crate::config::model::DEFAULT_POOL_DIR`].
    pub pool_dir: String,
}

impl Policy {
    /// The policy of a config.
    pub fn from_config(config: &ClusterConfig) -> Policy {
        Policy {
            accelerator: config.accelerator(),
            gpu_backend: config.gpu_backend(),
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
            pool_dir: config.pool_dir().to_owned(),
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

/// Runs every check against `host` for `config`, without asking the GPU driver (the `gpu.*` checks that need
/// it skip and say so): what `prepare` judges by.
pub fn run_checks(host: &dyn Host, config: &ClusterConfig) -> CheckReport {
    run_checks_with(
        host,
        config,
        &GpuFacts::not_gathered("this caller reads no NVML (`hsw-cli check` does)"),
    )
}

/// Runs every check against `host` for `config`, judging the GPU driver's answers in `gpu`
/// (`hsw_gpu_backend::hostcheck::gather` collects them).
pub fn run_checks_with(host: &dyn Host, config: &ClusterConfig, gpu: &GpuFacts) -> CheckReport {
    let policy = Policy::from_config(config);
    let kvm = host.kvm_probe();
    let layout = gpu_vms::planned(config);
    CheckReport {
        checks: vec![
            virtualization::check_cpu(host, &policy, &kvm),
            virtualization::check_iommu(host, &policy),
            virtualization::check_kvm(host, &policy, &kvm),
            drivers::check_nouveau(host, &policy),
            packages::check_packages(host),
            groups::check_groups(host, &policy),
            qemu::check_qemu(host),
            drivers::check_gpu(host, &policy),
            gpu_vms::check_driver(&policy, gpu, &layout),
            gpu_vms::check_mig(&policy, gpu, &layout),
            gpu_vms::check_vgpu_types(&policy, gpu, &layout),
            gpu_vms::check_passthrough(&policy, gpu, &layout),
            gpu_vms::check_ovmf(host, &policy, &layout),
            resources::check_resources(host, &policy, config),
            conflicts::check_conflicts(host, config),
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
