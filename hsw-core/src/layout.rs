//! The deployment layout: every VM `cluster.yaml` asks for, with its name, cluster, role, static address, size
//! and GPU units, and the GPU units of the plan. This is the one place that derives them; the Terraform root
//! module ([`crate::render::terraform`]), the planned inventory ([`crate::ansible::hosts::planned_hosts`], and
//! the GPU units [`crate::ansible::hosts::resolve`] fills in), the Slurm files built from it and the host's
//! `resources` check all read it.
//!
//! # Names and addresses
//!
//! VMs are `<metadata.name>-<role>-<n>`, `n` from 1, with the roles `controller`, `compute`, `control-plane`,
//! `cpu-worker`, `gpu-worker` ([`Role::host_part`]); the VM name is also its host name. A group's VMs take the
//! addresses of its `ip_address`/`ip_range` in order. The VMs are in node order: the groups in
//! [`rules::groups`] order (`hpc` before `cloud`, controller/control plane first), a group's VMs by index.
//!
//! # GPU units
//!
//! A cluster's units are its planned MIG instances (in plan order: device order, then placement start), then
//! its whole GPUs (device order). They are dealt to the cluster's GPU-enabled VMs in node order,
//! `gpus_per_node` units each; units left over stay unassigned (they are still in [`Layout::gpu_units`], with
//! no VM in [`Layout::targets`]; validation refuses them, `gpu.units-unused`).
//!
//! Each unit's [`UnitTarget`] says which VM gets it and how ([`Attach`]): a MIG slice as a MIG-backed vGPU of
//! the type `attach.<cluster>.vgpu_types` names for its profile, else the catalog's ([`crate::gpu::vgpu`]), a
//! whole GPU by passthrough; with `host.gpu_backend: simulated` every unit is `simulated` (the vGPU type is
//! still resolved, so the simulation walks the same path).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::model::{ClusterConfig, GpuBackend, CLUSTER_KEYS};
use crate::config::rules::{self, parse_ip_range};
use crate::gpu::plan::GpuPlan;
use crate::gpu::{catalog, vgpu};

/// What a VM is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The Slurm controller (`hpc`).
    Controller,
    /// A Slurm compute node (`hpc`).
    Compute,
    /// The Kubernetes control plane (`cloud`).
    ControlPlane,
    /// A Kubernetes worker without GPUs (`cloud`).
    CpuWorker,
    /// A Kubernetes worker with GPU units (`cloud`).
    GpuWorker,
}

impl Role {
    /// Every role, in inventory order.
    pub const ALL: [Role; 5] = [
        Role::Controller,
        Role::Compute,
        Role::ControlPlane,
        Role::CpuWorker,
        Role::GpuWorker,
    ];

    /// The role's name, as in the Terraform output and in [`crate::config::rules::GroupRef::role`].
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Compute => "compute",
            Role::ControlPlane => "control_plane",
            Role::CpuWorker => "cpu_worker",
            Role::GpuWorker => "gpu_worker",
        }
    }

    /// The role by name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The cluster key (`hpc` or `cloud`).
    pub fn cluster(self) -> &'static str {
        match self {
            Role::Controller | Role::Compute => "hpc",
            Role::ControlPlane | Role::CpuWorker | Role::GpuWorker => "cloud",
        }
    }

    /// The part of the host name that names the role (`control-plane`, `gpu-worker`, ...).
    pub fn host_part(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Compute => "compute",
            Role::ControlPlane => "control-plane",
            Role::CpuWorker => "cpu-worker",
            Role::GpuWorker => "gpu-worker",
        }
    }
}

/// What kind of GPU unit a VM holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// A MIG GPU instance (in a VM: a MIG-backed vGPU).
    Mig,
    /// A whole GPU (PCI passthrough).
    Whole,
    /// A time-sliced vGPU (mdev) of a whole GPU.
    Mdev,
}

impl UnitKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Mig => "mig",
            UnitKind::Whole => "whole",
            UnitKind::Mdev => "mdev",
        }
    }
}

/// One GPU unit: planned here, or reported by Terraform (see [`crate::ansible::hosts`]). It serializes as the
/// inventory shows it (`kind`, `device`, `profile`, `mdev_uuid`, `pci_address`); what only the plan knows
/// (`placement_start`, `gpu_pci`) is not serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuUnit {
    /// MIG instance, whole GPU or vGPU.
    pub kind: UnitKind,
    /// The device id from `global.gpu_allocation.devices`.
    pub device: String,
    /// The MIG profile (`mig`) or vGPU type (`mdev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The mediated device's UUID, when the unit reaches the VM as an mdev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdev_uuid: Option<String>,
    /// The GPU's PCI address (`whole`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// The MIG placement start (a planned `mig` unit).
    #[serde(skip)]
    pub placement_start: Option<u32>,
    /// The PCI address of the GPU the unit is part of, lowercase (a planned unit whose device is known).
    #[serde(skip)]
    pub gpu_pci: Option<String>,
}

impl GpuUnit {
    /// The unit id the root module gives a planned unit: `<device>-mig-<placement start>` or
    /// `<device>-whole`, so a slice keeps its Terraform address while its profile changes.
    pub fn id(&self) -> String {
        unit_id(self.kind, &self.device, self.placement_start)
    }

    /// The unit as Terraform's output reports it: what only the plan knows left out, so that a planned unit
    /// equals the reported one.
    pub fn as_reported(&self) -> GpuUnit {
        GpuUnit {
            placement_start: None,
            gpu_pci: None,
            ..self.clone()
        }
    }
}

/// The unit id of a unit of this kind on `device` ([`GpuUnit::id`]).
pub fn unit_id(kind: UnitKind, device: &str, placement_start: Option<u32>) -> String {
    match (kind, placement_start) {
        (UnitKind::Mig, Some(start)) => format!("{device}-mig-{start}"),
        (kind, _) => format!("{device}-{}", kind.as_str()),
    }
}

/// How a unit reaches its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// A MIG-backed vGPU on the slice (its parent is the VF that holds the GPU instance).
    Vgpu,
    /// PCI passthrough (vfio-pci) of the whole GPU.
    Passthrough,
    /// Nothing reaches the VM: the simulated backend.
    Simulated,
}

impl Attach {
    /// `vgpu`, `passthrough` or `simulated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Attach::Vgpu => "vgpu",
            Attach::Passthrough => "passthrough",
            Attach::Simulated => "simulated",
        }
    }
}

/// Where one planned unit goes and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitTarget {
    /// The unit's id ([`GpuUnit::id`]).
    pub unit_id: String,
    /// The cluster key.
    pub cluster: &'static str,
    /// The VM that gets it (its name as libvirt and the inventory show it); `None`: no VM takes it.
    pub vm: Option<String>,
    /// How it reaches the VM.
    pub attach: Attach,
    /// The vGPU type of a MIG unit: `attach.<cluster>.vgpu_types[<profile>]`, else the catalog's for the GPU's
    /// model and board; `None` for a whole GPU or a model without a table.
    pub vgpu_type: Option<String>,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    /// VM name and host name: `<metadata.name>-<role>-<index>`.
    pub name: String,
    /// The cluster key (`hpc` or `cloud`).
    pub cluster: &'static str,
    /// What the VM is for.
    pub role: Role,
    /// 1-based index in its group.
    pub index: u32,
    /// Static address.
    pub ip: Ipv4Addr,
    /// vCPUs.
    pub vcpu: u32,
    /// Memory in GiB.
    pub memory_gb: u32,
    /// Disk in GiB.
    pub disk_gb: u32,
    /// Its GPU units, in device order inside the VM (`/dev/nvidia0` first).
    pub gpu_units: Vec<GpuUnit>,
}

/// Why a configuration has no complete layout. Validation catches all of these first; they mean the
/// configuration was not validated, or validation and the layout disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// An address or range does not parse or is too short.
    #[error("the addresses at {pointer} cannot be used: {reason}")]
    BadAddresses {
        /// JSON pointer of the node group.
        pointer: String,
        /// Why.
        reason: String,
    },
    /// The plan gives a cluster fewer units than its GPU-enabled nodes need.
    #[error("cluster `{cluster}` has GPU-enabled nodes needing {needed} GPU units but the plan gives it {available}; validate the configuration first")]
    NotEnoughUnits {
        /// The cluster key.
        cluster: String,
        /// Units the nodes need.
        needed: u64,
        /// Units planned.
        available: usize,
    },
    /// The plan names a device the configuration does not have.
    #[error(
        "the GPU plan names device `{device}`, which `global.gpu_allocation.devices` does not list"
    )]
    UnknownDevice {
        /// The device id.
        device: String,
    },
}

/// The deployment layout of a configuration and its GPU plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Every VM, in node order.
    pub vms: Vec<Vm>,
    /// Every GPU unit of the plan: each cluster's (`hpc`, then `cloud`) MIG instances, then whole GPUs.
    pub gpu_units: Vec<GpuUnit>,
    /// Where each of [`Layout::gpu_units`] goes and how, in the same order.
    pub targets: Vec<UnitTarget>,
    /// What did not fit, in the order found; empty for a validated configuration. The layout is still as
    /// complete as it can be: a group whose addresses do not parse has no VMs, a VM the plan has too few
    /// units for gets fewer, a unit of an unknown device has no PCI address.
    pub problems: Vec<LayoutError>,
}

impl Layout {
    /// The layout of a configuration and its GPU plan, as complete as it can be (see [`Layout::problems`]).
    pub fn new(config: &ClusterConfig, plan: &GpuPlan) -> Layout {
        derive(config, Some(plan))
    }

    /// The layout of a validated configuration: its first problem is an error.
    pub fn checked(config: &ClusterConfig, plan: &GpuPlan) -> Result<Layout, LayoutError> {
        let mut layout = Layout::new(config, plan);
        if layout.problems.is_empty() {
            Ok(layout)
        } else {
            Err(layout.problems.swap_remove(0))
        }
    }

    /// The VMs alone, without GPU units (what their sizes need: no plan).
    pub fn without_gpus(config: &ClusterConfig) -> Layout {
        derive(config, None)
    }

    /// The VMs of one role.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Vm> {
        self.vms.iter().filter(move |v| v.role == role)
    }

    /// Where the unit with this id ([`GpuUnit::id`]) goes.
    pub fn target(&self, unit_id: &str) -> Option<&UnitTarget> {
        self.targets.iter().find(|t| t.unit_id == unit_id)
    }
}

/// How a unit of `cluster` reaches a VM, and its vGPU type (see the module documentation).
pub fn attach_of(
    config: &ClusterConfig,
    cluster: &str,
    unit: &GpuUnit,
) -> (Attach, Option<String>) {
    let vgpu_type = match (unit.kind, unit.profile.as_deref()) {
        (UnitKind::Mig, Some(profile)) => vgpu_type_of(config, cluster, &unit.device, profile),
        _ => None,
    };
    let attach = match unit.kind {
        _ if config.gpu_backend() == GpuBackend::Simulated => Attach::Simulated,
        UnitKind::Mig | UnitKind::Mdev => Attach::Vgpu,
        UnitKind::Whole => Attach::Passthrough,
    };
    (attach, vgpu_type)
}

/// The vGPU type a MIG slice of `profile` on `device` gets in `cluster`: the config's, else the catalog's.
pub fn vgpu_type_of(
    config: &ClusterConfig,
    cluster: &str,
    device: &str,
    profile: &str,
) -> Option<String> {
    let explicit = config.unit_attach(cluster).vgpu_types.and_then(|m| {
        m.iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(profile))
            .map(|(_, t)| vgpu::normalise_type_name(t))
    });
    explicit.or_else(|| {
        let dev = config
            .global
            .gpu_allocation
            .as_ref()?
            .devices
            .iter()
            .find(|d| d.id == device)?;
        let model = catalog::lookup_model(&dev.model)?;
        vgpu::default_type(model, &dev.model, model.profile(profile)?)
    })
}

/// The name of a VM: `<metadata.name>-<role>-<index>`, `index` from 1.
pub fn vm_name(config: &ClusterConfig, role: Role, index: u32) -> String {
    format!("{}-{}-{index}", config.metadata.name, role.host_part())
}

/// Each cluster's units, in [`CLUSTER_KEYS`] order.
fn plan_units(
    config: &ClusterConfig,
    plan: &GpuPlan,
    problems: &mut Vec<LayoutError>,
) -> Vec<(&'static str, Vec<GpuUnit>)> {
    let devices: BTreeMap<&str, &str> = config
        .global
        .gpu_allocation
        .as_ref()
        .map(|a| {
            a.devices
                .iter()
                .map(|d| (d.id.as_str(), d.pci_address.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut pci = |device: &str| {
        let found = devices.get(device).map(|p| p.to_ascii_lowercase());
        if found.is_none() {
            problems.push(LayoutError::UnknownDevice {
                device: device.to_owned(),
            });
        }
        found
    };
    let mut out = Vec::new();
    for cluster in CLUSTER_KEYS {
        let mut units = Vec::new();
        for i in plan.instances_of(cluster) {
            units.push(GpuUnit {
                kind: UnitKind::Mig,
                device: i.device.clone(),
                profile: Some(i.profile.clone()),
                mdev_uuid: None,
                pci_address: None,
                placement_start: Some(i.placement_start),
                gpu_pci: pci(&i.device),
            });
        }
        for w in plan.whole_gpus.iter().filter(|w| w.cluster == cluster) {
            let gpu_pci = pci(&w.device);
            units.push(GpuUnit {
                kind: UnitKind::Whole,
                device: w.device.clone(),
                profile: None,
                mdev_uuid: None,
                pci_address: gpu_pci.clone(),
                placement_start: None,
                gpu_pci,
            });
        }
        out.push((cluster, units));
    }
    out
}

fn derive(config: &ClusterConfig, plan: Option<&GpuPlan>) -> Layout {
    let mut problems = Vec::new();
    let per_cluster = match plan {
        Some(plan) => plan_units(config, plan, &mut problems),
        None => Vec::new(),
    };
    let groups = rules::groups(config);
    let mut vms = Vec::new();
    let mut targets = Vec::new();
    for cluster in CLUSTER_KEYS {
        let units: &[GpuUnit] = per_cluster
            .iter()
            .find(|(c, _)| *c == cluster)
            .map_or(&[], |(_, u)| u.as_slice());
        let mut pool = units.iter().cloned();
        let mut next_unit = 0usize;
        let needed: u64 = groups
            .iter()
            .filter(|g| g.cluster == cluster)
            .map(|g| u64::from(g.count) * u64::from(g.gpu_units))
            .sum();
        if plan.is_some() && needed > units.len() as u64 {
            problems.push(LayoutError::NotEnoughUnits {
                cluster: cluster.to_owned(),
                needed,
                available: units.len(),
            });
        }
        for g in groups.iter().filter(|g| g.cluster == cluster) {
            let Some(role) = Role::parse(g.role) else {
                continue;
            };
            let (text, key) = g.addresses;
            let pointer = format!("{}/{key}", g.pointer);
            let (first, last) = match parse_ip_range(text) {
                Ok(range) => range,
                Err(reason) => {
                    problems.push(LayoutError::BadAddresses { pointer, reason });
                    continue;
                }
            };
            let span = u64::from(u32::from(last)) - u64::from(u32::from(first)) + 1;
            if span < u64::from(g.count) {
                problems.push(LayoutError::BadAddresses {
                    pointer,
                    reason: format!("`{text}` holds {span} addresses but `count` is {}", g.count),
                });
            }
            for n in 0..g.count {
                let name = vm_name(config, role, n + 1);
                let gpu_units: Vec<GpuUnit> = pool.by_ref().take(g.gpu_units as usize).collect();
                for u in &gpu_units {
                    let (attach, vgpu_type) = attach_of(config, cluster, u);
                    targets.push(UnitTarget {
                        unit_id: u.id(),
                        cluster,
                        vm: Some(name.clone()),
                        attach,
                        vgpu_type,
                    });
                }
                next_unit += gpu_units.len();
                vms.push(Vm {
                    name,
                    cluster,
                    role,
                    index: n + 1,
                    ip: Ipv4Addr::from(u32::from(first).saturating_add(n)),
                    vcpu: g.cpu_cores,
                    memory_gb: g.memory_gb,
                    disk_gb: g.disk_gb,
                    gpu_units,
                });
            }
        }
        for u in units.iter().skip(next_unit) {
            let (attach, vgpu_type) = attach_of(config, cluster, u);
            targets.push(UnitTarget {
                unit_id: u.id(),
                cluster,
                vm: None,
                attach,
                vgpu_type,
            });
        }
    }
    Layout {
        vms,
        gpu_units: per_cluster.into_iter().flat_map(|(_, u)| u).collect(),
        targets,
        problems,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::{gpu, validate_str, DEFAULT_CONFIG};

    #[test]
    fn the_default_config_lays_out_without_problems() {
        let config = validate_str(DEFAULT_CONFIG).config.expect("default config");
        let plan = gpu::plan(&config).unwrap();
        let layout = Layout::checked(&config, &plan).unwrap();
        let names: Vec<&str> = layout.vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"hsw-dev-controller-1"));
        let dealt: usize = layout.vms.iter().map(|v| v.gpu_units.len()).sum();
        assert!(dealt <= layout.gpu_units.len());
        for v in &layout.vms {
            assert_eq!(v.cluster, v.role.cluster());
            assert!(v.name.ends_with(&format!("-{}", v.index)));
        }
        let bare = Layout::without_gpus(&config);
        assert_eq!(bare.vms.len(), layout.vms.len());
        assert!(bare.gpu_units.is_empty() && bare.problems.is_empty());
    }

    #[test]
    fn every_planned_unit_reaches_exactly_one_vm_and_says_how() {
        let config = validate_str(DEFAULT_CONFIG).config.expect("default config");
        let plan = gpu::plan(&config).unwrap();
        let layout = Layout::checked(&config, &plan).unwrap();
        assert_eq!(layout.targets.len(), layout.gpu_units.len());
        for (u, t) in layout.gpu_units.iter().zip(&layout.targets) {
            assert_eq!(t.unit_id, u.id());
            let holders: Vec<&Vm> = layout
                .vms
                .iter()
                .filter(|v| v.gpu_units.iter().any(|x| x.id() == u.id()))
                .collect();
            assert_eq!(holders.len(), 1, "{}", u.id());
            assert_eq!(t.vm.as_deref(), Some(holders[0].name.as_str()));
            assert_eq!(t.cluster, holders[0].cluster);
            // Simulated, but the type a real GPU would get is resolved all the same.
            assert_eq!(t.attach, Attach::Simulated);
            assert!(t
                .vgpu_type
                .as_deref()
                .is_some_and(|ty| ty.starts_with("A100DX-")));
        }

        let mut real = config.clone();
        real.host.as_mut().expect("host").gpu_backend = Some(GpuBackend::Nvml);
        let layout = Layout::checked(&real, &plan).unwrap();
        assert!(layout.targets.iter().all(|t| t.attach == Attach::Vgpu));

        // A unit left over has no VM.
        let mut extra = config.clone();
        extra
            .global
            .gpu_allocation
            .as_mut()
            .and_then(|a| a.mig_slices.as_mut())
            .expect("mig_slices")
            .hpc = Some(3);
        let plan = gpu::plan(&extra).unwrap();
        let layout = Layout::new(&extra, &plan);
        assert_eq!(layout.targets.iter().filter(|t| t.vm.is_none()).count(), 1);
    }

    #[test]
    fn a_too_short_range_is_a_problem_but_still_laid_out() {
        let mut config = validate_str(DEFAULT_CONFIG).config.expect("default config");
        let hpc = config.clusters.hpc.as_mut().expect("hpc");
        hpc.compute_nodes.ip_range = "192.168.100.11".into();
        hpc.compute_nodes.count = 2;
        hpc.compute_nodes.gpu_enabled = false;
        let plan = gpu::plan(&config).unwrap();
        let layout = Layout::new(&config, &plan);
        assert!(matches!(
            layout.problems.first(),
            Some(LayoutError::BadAddresses { pointer, .. })
                if pointer == "/clusters/hpc/compute_nodes/ip_range"
        ));
        assert_eq!(layout.with_role(Role::Compute).count(), 2);
        assert!(Layout::checked(&config, &plan).is_err());
    }

    #[test]
    fn unit_ids_name_the_device_and_the_placement() {
        let unit = |kind, placement_start| GpuUnit {
            kind,
            device: "GPU-0".into(),
            profile: None,
            mdev_uuid: None,
            pci_address: None,
            placement_start,
            gpu_pci: None,
        };
        assert_eq!(unit(UnitKind::Mig, Some(4)).id(), "GPU-0-mig-4");
        assert_eq!(unit(UnitKind::Whole, None).id(), "GPU-0-whole");
    }
}
