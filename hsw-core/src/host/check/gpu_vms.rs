//! The checks of what real GPUs reaching VMs need: the driver (`gpu.driver`), MIG mode against the plan
//! (`gpu.mig`), the vGPU types the host offers against the plan's (`gpu.vgpu_types`), IOMMU-group isolation and the
//! driver of each passthrough GPU (`gpu.passthrough`), and UEFI firmware for the GPU VMs (`ovmf`).
//!
//! hsw-core touches neither NVML nor vGPU sysfs: `hsw-gpu-backend` gathers the [`GpuFacts`] (its `hostcheck`
//! module, through its `GpuBackend` and sysfs code) and these functions judge them against the plan's units
//! ([`Layout::targets`]). A remedy is always a command for the user: hsw never changes MIG mode or resets a GPU.

use std::collections::BTreeMap;

use super::{plural, Check, Policy, Status};
use crate::config::model::{ClusterConfig, GpuBackend};
use crate::gpu::vgpu::normalise_type_name;
use crate::host::env::Host;
use crate::layout::{Attach, Layout, UnitKind};

/// Debian's OVMF (package `ovmf`): the UEFI code every UEFI VM boots from.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// Debian's OVMF variable store template, copied into each UEFI VM's directory as its NVRAM.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// What the GPU driver and sysfs say, gathered by `hsw_gpu_backend::hostcheck::gather`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuFacts {
    /// The driver's answer.
    pub driver: DriverAnswer,
    /// Each planned passthrough GPU's IOMMU group and driver; `None` when not gathered.
    pub passthrough: Option<Vec<PassthroughFacts>>,
}

impl GpuFacts {
    /// Nothing gathered, for `why` (a clause: "`prepare` asks no GPU driver").
    pub fn not_gathered(why: &str) -> GpuFacts {
        GpuFacts {
            driver: DriverAnswer::NotAsked(why.to_owned()),
            passthrough: None,
        }
    }
}

/// Whether and how the GPU driver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverAnswer {
    /// It was not asked (the clause says why).
    NotAsked(String),
    /// It could not be opened or failed (the sentence says why and how to fix it).
    Unavailable(String),
    /// It answered.
    Answered(DriverFacts),
}

/// The driver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverFacts {
    /// The backend that answered (`nvml`, or `simulated` in tests).
    pub backend: String,
    /// The NVIDIA driver's version, or why it is not known.
    pub driver_version: Result<String, String>,
    /// NVML's version, or why it is not known.
    pub nvml_version: Result<String, String>,
    /// The GPUs the driver sees.
    pub devices: Vec<DeviceFacts>,
}

/// One GPU the driver sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// NVML index (`nvidia-smi -i N`).
    pub index: u32,
    /// The name the driver reports.
    pub name: String,
    /// PCI address, `dddd:bb:dd.f`, lower case.
    pub pci_address: String,
    /// MIG mode now.
    pub mig_current: bool,
    /// MIG mode after the next GPU reset.
    pub mig_pending: bool,
    /// Why MIG instances cannot be made on it now, with the commands that fix it; `None` when they can.
    pub mig_refusal: Option<String>,
    /// Its SR-IOV virtual functions (the parents of MIG-backed vGPUs).
    pub virtual_functions: Vec<String>,
    /// The vGPU types it and its VFs offer, or why they could not be read.
    pub vgpu_types: Result<Vec<OfferedType>, String>,
}

/// A vGPU type a GPU or one of its VFs offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedType {
    /// The GPU or VF offering it.
    pub parent: String,
    /// Its name (`GRID A100-2-10C`, `NVIDIA H200X-1-18C`).
    pub name: String,
    /// `mdev` (`mdev_supported_types`) or `vendor_vfio` (`nvidia/creatable_vgpu_types`).
    pub flavor: String,
}

/// A planned passthrough GPU as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughFacts {
    /// Its PCI address.
    pub pci_address: String,
    /// Its IOMMU group, when it has one.
    pub group: Option<String>,
    /// The driver it is bound to.
    pub driver: Option<String>,
    /// Why its IOMMU group keeps it from a VM (`hsw_gpu_backend::iommu::passthrough_blocker`), or why that could
    /// not be read.
    pub blocker: Result<Option<String>, String>,
}

/// The unit targets of the config's GPU plan, or why there is none.
pub fn planned(config: &ClusterConfig) -> Result<Layout, String> {
    crate::config::gpu::plan(config)
        .map(|p| Layout::new(config, &p))
        .map_err(|e| e.to_string())
}

/// The PCI addresses of the GPUs the plan puts units of `kind` on (MIG slices, or whole GPUs), sorted.
pub fn planned_gpus(layout: &Layout, kind: UnitKind) -> Vec<String> {
    let mut out: Vec<String> = layout
        .gpu_units
        .iter()
        .filter(|u| u.kind == kind)
        .filter_map(|u| u.gpu_pci.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The plan's layout when the GPUs are real and the config has a plan; otherwise why these checks have nothing
/// to judge (simulated GPUs, no GPU named, or no plan).
fn real_layout<'a>(
    policy: &Policy,
    layout: &'a Result<Layout, String>,
) -> Result<&'a Layout, String> {
    if let Some(why) = policy.no_real_gpus() {
        return Err(format!("{}.", super::capitalize(why)));
    }
    layout.as_ref().map_err(|e| {
        format!("The config has no GPU plan ({e}), so nothing is planned on the GPUs.")
    })
}

/// Nothing for this check to judge: `message` says why.
fn skip(id: &str, message: String) -> Check {
    Check::new(id, Status::Skip, message, SKIP_REMEDY)
}

const SKIP_REMEDY: &str =
    "Nothing to do unless GPUs are to reach the VMs (host.gpu_backend: nvml, units planned).";

/// The driver was not asked: where it would be.
fn not_asked(id: &str, why: &str) -> Check {
    Check::new(
        id,
        Status::Skip,
        format!("The NVIDIA driver was not asked: {why}."),
        "Run `hsw-cli check` on the GPU host itself (host root `/`), where NVML answers.",
    )
}

/// How bad a problem is that `auto` survives by falling back to the simulation.
fn severity(policy: &Policy) -> Status {
    if policy.gpu_backend == GpuBackend::Auto {
        Status::Warn
    } else {
        Status::Fail
    }
}

/// `gpu.driver`: the driver and NVML versions, or why NVML does not answer.
pub(super) fn check_driver(
    policy: &Policy,
    facts: &GpuFacts,
    layout: &Result<Layout, String>,
) -> Check {
    const ID: &str = "gpu.driver";
    if let Err(why) = real_layout(policy, layout) {
        return skip(ID, why);
    }
    match &facts.driver {
        DriverAnswer::NotAsked(why) => not_asked(ID, why),
        DriverAnswer::Unavailable(why) => {
            let fallback = if policy.gpu_backend == GpuBackend::Auto {
                " With host.gpu_backend: auto, hsw falls back to simulated GPUs and no GPU reaches a VM."
            } else {
                ""
            };
            Check::new(
                ID,
                severity(policy),
                format!("{why}{fallback}"),
                "Install the NVIDIA vGPU host driver (it provides libnvidia-ml.so.1), load it (`sudo modprobe nvidia`) \
                 and check that `nvidia-smi` lists the GPUs; or set `host.gpu_backend: simulated`.",
            )
        }
        DriverAnswer::Answered(d) => {
            let version = |r: &Result<String, String>| match r {
                Ok(v) => v.clone(),
                Err(e) => format!("unknown ({e})"),
            };
            let gpus: Vec<String> = d
                .devices
                .iter()
                .map(|g| format!("{} {} ({})", g.index, g.pci_address, g.name))
                .collect();
            let status = if d.driver_version.is_ok() && d.nvml_version.is_ok() {
                Status::Pass
            } else {
                Status::Warn
            };
            Check::new(
                ID,
                status,
                format!(
                    "The {} backend answers: NVIDIA driver {}, NVML {}; it sees {} GPU{}{}.",
                    d.backend,
                    version(&d.driver_version),
                    version(&d.nvml_version),
                    gpus.len(),
                    plural(gpus.len()),
                    if gpus.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", gpus.join(", "))
                    }
                ),
                "Update the NVIDIA driver: this one does not say its version (`nvidia-smi` shows it).",
            )
        }
    }
}

/// The driver's answer, or the skip check saying why there is none.
fn answered<'a>(id: &str, facts: &'a GpuFacts) -> Result<&'a DriverFacts, Check> {
    match &facts.driver {
        DriverAnswer::Answered(d) => Ok(d),
        DriverAnswer::NotAsked(why) => Err(not_asked(id, why)),
        DriverAnswer::Unavailable(_) => Err(Check::new(
            id,
            Status::Skip,
            "The NVIDIA driver did not answer (see gpu.driver), so this was not checked.",
            "Fix gpu.driver first.",
        )),
    }
}

/// The config's device id of each PCI address.
fn device_ids(policy: &Policy) -> BTreeMap<&str, &str> {
    policy
        .devices
        .iter()
        .map(|(id, pci)| (pci.as_str(), id.as_str()))
        .collect()
}

/// `gpu.mig`: MIG mode (current and pending) of every planned GPU against what the plan needs.
pub(super) fn check_mig(
    policy: &Policy,
    facts: &GpuFacts,
    layout: &Result<Layout, String>,
) -> Check {
    const ID: &str = "gpu.mig";
    let layout = match real_layout(policy, layout) {
        Ok(l) => l,
        Err(why) => return skip(ID, why),
    };
    let mig = planned_gpus(layout, UnitKind::Mig);
    let whole = planned_gpus(layout, UnitKind::Whole);
    if mig.is_empty() && whole.is_empty() {
        return skip(ID, "The plan puts no unit on a GPU.".into());
    }
    let d = match answered(ID, facts) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let ids = device_ids(policy);
    let name = |pci: &str| ids.get(pci).copied().unwrap_or("a GPU");
    let (mut ok, mut bad, mut warn, mut fixes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pci in &mig {
        let Some(g) = d.devices.iter().find(|g| &g.pci_address == pci) else {
            bad.push(format!(
                "{} at {pci} has MIG instances planned, but the NVIDIA driver does not see it (bound to another \
                 driver, or absent)",
                name(pci)
            ));
            fixes.push(format!(
                "Bind {pci} to the nvidia driver (`sudo driverctl unset-override {pci}`, then check `nvidia-smi`)."
            ));
            continue;
        };
        let mode = format!(
            "{} at {pci} (GPU {}): MIG mode current {}, pending {}",
            name(pci),
            g.index,
            on_off(g.mig_current),
            on_off(g.mig_pending)
        );
        match &g.mig_refusal {
            None => ok.push(format!("{mode}, as its MIG instances need")),
            Some(why) => {
                bad.push(format!("{mode}, but its MIG instances need it enabled"));
                fixes.push(why.clone());
            }
        }
    }
    for pci in whole.iter().filter(|p| !mig.contains(p)) {
        match d.devices.iter().find(|g| &g.pci_address == pci) {
            Some(g) if g.mig_current || g.mig_pending => {
                warn.push(format!(
                    "{} at {pci} (GPU {}) goes whole to a VM but has MIG mode current {}, pending {}: the guest \
                     sees a MIG-mode GPU without instances",
                    name(pci),
                    g.index,
                    on_off(g.mig_current),
                    on_off(g.mig_pending)
                ));
                fixes.push(format!(
                    "Disable MIG on GPU {i}: `sudo nvidia-smi -i {i} -mig 0`, then reset it with no process using it \
                     (`sudo nvidia-smi -i {i} -r`) or reboot. hsw never changes MIG mode itself.",
                    i = g.index
                ));
            }
            Some(g) => ok.push(format!(
                "{} at {pci} (GPU {}) goes whole to a VM, MIG mode off",
                name(pci),
                g.index
            )),
            // Bound to vfio-pci, the driver does not see it: nothing to say about MIG (gpu.passthrough judges it).
            None => {}
        }
    }
    verdict(ID, bad, warn, ok, &fixes)
}

fn on_off(b: bool) -> &'static str {
    if b {
        "enabled"
    } else {
        "disabled"
    }
}

/// Clauses as sentences: `A; b; c.`
fn sentences(parts: &[String]) -> String {
    format!("{}.", super::capitalize(&parts.join("; ")))
}

/// A check from its findings: fail when something is bad, else warn when something is doubtful, else pass; the
/// message lists the bad, then the doubtful, then the good findings, and the remedy joins the fixes.
fn verdict(
    id: &str,
    bad: Vec<String>,
    warn: Vec<String>,
    ok: Vec<String>,
    fixes: &[String],
) -> Check {
    let status = if !bad.is_empty() {
        Status::Fail
    } else if !warn.is_empty() {
        Status::Warn
    } else {
        Status::Pass
    };
    let mut parts = bad;
    parts.extend(warn);
    parts.extend(ok);
    Check::new(id, status, sentences(&parts), fixes.join(" "))
}

/// `gpu.vgpu_types`: the vGPU type of every unit that reaches its VM as a vGPU, against what the host offers.
pub(super) fn check_vgpu_types(
    policy: &Policy,
    facts: &GpuFacts,
    layout: &Result<Layout, String>,
) -> Check {
    const ID: &str = "gpu.vgpu_types";
    let layout = match real_layout(policy, layout) {
        Ok(l) => l,
        Err(why) => return skip(ID, why),
    };
    // Each GPU's wanted types, with the VMs that want them.
    let mut wanted: BTreeMap<(String, Option<String>), Vec<String>> = BTreeMap::new();
    for (u, t) in layout.gpu_units.iter().zip(&layout.targets) {
        if t.attach != Attach::Vgpu {
            continue;
        }
        let (Some(vm), Some(pci)) = (&t.vm, &u.gpu_pci) else {
            continue;
        };
        wanted
            .entry((pci.clone(), t.vgpu_type.clone()))
            .or_default()
            .push(format!("{vm} ({})", u.profile.as_deref().unwrap_or("vGPU")));
    }
    if wanted.is_empty() {
        return skip(ID, "No unit reaches its VM as a vGPU.".into());
    }
    let d = match answered(ID, facts) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let ids = device_ids(policy);
    let (mut ok, mut bad, mut unsure, mut fixes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((pci, ty), vms) in &wanted {
        let gpu = ids.get(pci.as_str()).copied().unwrap_or("a GPU");
        let for_vms = vms.join(", ");
        let Some(ty) = ty else {
            bad.push(format!(
                "{gpu} at {pci}: no vGPU type is known for {for_vms}"
            ));
            fixes.push(
                "Name the type the driver offers in global.gpu_allocation.attach.<cluster>.vgpu_types.<profile>."
                    .to_owned(),
            );
            continue;
        };
        let Some(g) = d.devices.iter().find(|g| &g.pci_address == pci) else {
            bad.push(format!(
                "{gpu} at {pci}: {ty} is planned for {for_vms}, but the NVIDIA driver does not see the GPU"
            ));
            fixes.push(format!(
                "Bind {pci} to the nvidia driver and check `nvidia-smi`."
            ));
            continue;
        };
        let offered = match &g.vgpu_types {
            Ok(o) => o,
            Err(e) => {
                bad.push(format!(
                    "{gpu} at {pci}: the vGPU types could not be read ({e})"
                ));
                fixes.push("Run `hsw-cli check` as root.".to_owned());
                continue;
            }
        };
        let want = normalise_type_name(ty);
        let parents: Vec<&str> = offered
            .iter()
            .filter(|o| normalise_type_name(&o.name) == want)
            .map(|o| o.parent.as_str())
            .collect();
        if !parents.is_empty() {
            ok.push(format!(
                "{gpu} at {pci} offers {ty} (on {}) for {for_vms}",
                parents.join(", ")
            ));
            continue;
        }
        let mut names: Vec<&str> = offered.iter().map(|o| o.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if g.virtual_functions.is_empty() && offered.is_empty() {
            bad.push(format!(
                "{gpu} at {pci} offers no vGPU type ({ty} is planned for {for_vms}): it has no SR-IOV virtual \
                 functions and no mdev_supported_types"
            ));
            fixes.push(format!(
                "Load the NVIDIA vGPU host driver and enable the virtual functions: `sudo /usr/lib/nvidia/sriov-manage \
                 -e {pci}`."
            ));
            continue;
        }
        let shown = if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        };
        let clause =
            format!("{gpu} at {pci} does not offer {ty}, planned for {for_vms}; it offers {shown}");
        if offered.iter().any(|o| o.flavor == "vendor_vfio") || offered.is_empty() {
            // creatable_vgpu_types lists what can be made now; a MIG-backed type may appear once its GPU instance
            // exists (UNVERIFIED on hardware), so this is not certain.
            unsure.push(format!(
                "{clause} (creatable_vgpu_types lists what can be created now; a MIG-backed type may appear once its \
                 GPU instance exists)"
            ));
        } else {
            bad.push(clause);
        }
        fixes.push(format!(
            "Install the NVIDIA vGPU host driver release that offers {ty}, or name an offered type in \
             global.gpu_allocation.attach.<cluster>.vgpu_types.<profile> (`cat \
             /sys/bus/pci/devices/<VF>/mdev_supported_types/*/name` or `.../nvidia/creatable_vgpu_types` lists them)."
        ));
    }
    fixes.dedup();
    verdict(ID, bad, unsure, ok, &fixes)
}

/// `gpu.passthrough`: each GPU passed whole to a VM has an IOMMU group of its own (or one whose other devices
/// are on vfio-pci) and is on vfio-pci or no driver.
pub(super) fn check_passthrough(
    policy: &Policy,
    facts: &GpuFacts,
    layout: &Result<Layout, String>,
) -> Check {
    const ID: &str = "gpu.passthrough";
    let layout = match real_layout(policy, layout) {
        Ok(l) => l,
        Err(why) => return skip(ID, why),
    };
    if !layout
        .targets
        .iter()
        .any(|t| t.attach == Attach::Passthrough && t.vm.is_some())
    {
        return skip(ID, "No GPU is passed whole to a VM.".into());
    }
    let Some(gpus) = &facts.passthrough else {
        return Check::new(
            ID,
            Status::Skip,
            "The IOMMU groups were not read (this caller reads no GPU sysfs).",
            "Run `hsw-cli check`, which reads them.",
        );
    };
    let ids = device_ids(policy);
    let (mut ok, mut bad, mut warn, mut fixes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for g in gpus {
        let pci = &g.pci_address;
        let gpu = ids.get(pci.as_str()).copied().unwrap_or("a GPU");
        let Some(group) = &g.group else {
            bad.push(format!(
                "{gpu} at {pci} has no IOMMU group, so VFIO cannot give it to a VM"
            ));
            fixes.push(
                "Enable the IOMMU (see the iommu check: `intel_iommu=on iommu=pt` or `amd_iommu=on iommu=pt`) and \
                 reboot."
                    .to_owned(),
            );
            continue;
        };
        match &g.blocker {
            Err(e) => {
                bad.push(format!(
                    "{gpu} at {pci}: its IOMMU group could not be read ({e})"
                ));
                fixes.push("Run `hsw-cli check` as root.".to_owned());
                continue;
            }
            Ok(Some(why)) => {
                bad.push(why.trim_end_matches('.').to_owned());
                fixes.push(format!(
                    "Bind the other devices of IOMMU group {group} to vfio-pci (`sudo driverctl set-override <address> \
                     vfio-pci`) or pass them to the same VM, or move {pci} to a slot with a group of its own."
                ));
                continue;
            }
            Ok(None) => {}
        }
        match g.driver.as_deref() {
            Some("vfio-pci") | None => ok.push(format!(
                "{gpu} at {pci} is alone in IOMMU group {group} (or with devices on vfio-pci) and on {}",
                g.driver.as_deref().unwrap_or("no driver")
            )),
            Some(other) => {
                warn.push(format!(
                    "{gpu} at {pci} is bound to {other}: libvirt moves it to vfio-pci when its VM starts, which fails \
                     while a process holds it (nvidia-persistenced, DCGM, a display server)"
                ));
                fixes.push(format!(
                    "Bind it to vfio-pci for good: `sudo driverctl set-override {pci} vfio-pci`."
                ));
            }
        }
    }
    verdict(ID, bad, warn, ok, &fixes)
}

/// `ovmf`: the UEFI firmware the GPU VMs boot (q35 + OVMF) is installed.
pub(super) fn check_ovmf(
    host: &dyn Host,
    policy: &Policy,
    layout: &Result<Layout, String>,
) -> Check {
    const ID: &str = "ovmf";
    let layout = match real_layout(policy, layout) {
        Ok(l) => l,
        Err(why) => return skip(ID, format!("{why} No VM boots UEFI.")),
    };
    let vms: Vec<&str> = layout
        .vms
        .iter()
        .filter(|v| !v.gpu_units.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    if vms.is_empty() {
        return skip(
            ID,
            "No VM has GPU units, so every VM boots SeaBIOS and OVMF is not needed.".into(),
        );
    }
    let missing: Vec<&str> = [OVMF_CODE, OVMF_VARS]
        .into_iter()
        .filter(|f| !host.path(f).is_file())
        .collect();
    let who = format!(
        "the GPU VM{} ({}) boot{} UEFI on q35",
        plural(vms.len()),
        vms.join(", "),
        if vms.len() == 1 { "s" } else { "" }
    );
    if missing.is_empty() {
        return Check::new(
            ID,
            Status::Pass,
            format!("OVMF is installed ({OVMF_CODE}, {OVMF_VARS}): {who}."),
            "",
        );
    }
    let fallback = if policy.gpu_backend == GpuBackend::Auto {
        " (with host.gpu_backend: auto, only when NVML answers)"
    } else {
        ""
    };
    Check::new(
        ID,
        severity(policy),
        format!(
            "{} missing, but {who}{fallback}.",
            missing.join(" and ") + if missing.len() == 1 { " is" } else { " are" }
        ),
        "Install Debian's OVMF: `sudo apt-get install -y ovmf`.",
    )
}
