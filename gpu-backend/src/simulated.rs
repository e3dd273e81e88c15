//! The simulated GPU backend: GPUs that exist only in a JSON file, with exactly the catalog's MIG rules
//! ([`hsw_core::gpu::placement::check_layout`]) and the error kinds NVML returns.
//!
//! State lives in `<state_dir>/gpu-sim.json`; every operation takes an exclusive `flock` on
//! `<state_dir>/gpu-sim.lock` across read → check → write, so separate processes (two Terraform runs, the CLI)
//! see and change the same "hardware".
//!
//! Where the devices come from, on first use of a state directory: the seed given to [`SimulatedBackend::open`]
//! (the CLI passes `cluster.yaml`'s `global.gpu_allocation.devices`), else `<state_dir>/inventory.json`
//! (`{"devices": [SimDevice...]}`), else one simulated `NVIDIA A100-SXM4-80GB` at `0000:41:00.0` with MIG
//! enabled. Seeds add devices the state does not have; the state file wins for those it has.
//!
//! Test hooks, stored in the state file so that they work across processes: [`SimulatedBackend::set_holder`]
//! (an instance in use, named), [`SimulatedBackend::inject_failure`] (the next call of an operation fails with a
//! kind), [`SimulatedBackend::set_mig_mode`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hsw_core::config::model::ClusterConfig;
use hsw_core::gpu::catalog::{GpuModel, Profile};
use hsw_core::gpu::placement::{check_layout, LayoutError};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, GpuError, Result};
use crate::lock::FileLock;
use crate::mig::{
    normalize_pci, BackendKind, ComputeInstance, DeviceInfo, DriverVersions, GpuBackend,
    GpuInstance, MigDevice, MigMode, Placement, ProfileInfo,
};

/// The driver and NVML version the simulated backend reports.
pub const SIMULATED_VERSION: &str = "simulated";

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "gpu-sim.json";
/// The optional inventory file's name inside the state directory.
pub const INVENTORY_FILE: &str = "inventory.json";

/// A simulated GPU as an inventory describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimDevice {
    /// PCI address (`dddd:bb:dd.f`).
    pub pci_address: String,
    /// Model name as NVML reports it (`NVIDIA A100-SXM4-80GB`), or a catalog key (`a100-80gb`).
    pub model: String,
    /// MIG mode enabled (default true).
    #[serde(default = "yes")]
    pub mig_enabled: bool,
    /// MIG mode after the next reset (default: as `mig_enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_pending: Option<bool>,
    /// Fixed UUID (default: derived from the PCI address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

fn yes() -> bool {
    true
}

/// An inventory file: `{"devices": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimInventory {
    /// The GPUs.
    pub devices: Vec<SimDevice>,
}

/// The simulated devices of a cluster definition: `global.gpu_allocation.devices`, MIG enabled where the device
/// is MIG-capable, catalogued, and used for MIG under the strategy.
pub fn devices_from_config(config: &ClusterConfig) -> Vec<SimDevice> {
    let Some(alloc) = &config.global.gpu_allocation else {
        return Vec::new();
    };
    alloc
        .devices
        .iter()
        .map(|d| {
            let use_ = hsw_core::config::gpu::device_use(alloc.strategy, d.mig_capable, d.mode);
            let mig = d.mig_capable
                && hsw_core::gpu::lookup_model(&d.model).is_some()
                && use_ == hsw_core::gpu::DeviceUse::Mig;
            SimDevice {
                pci_address: d.pci_address.clone(),
                model: d.model.clone(),
                mig_enabled: mig,
                mig_pending: None,
                uuid: None,
            }
        })
        .collect()
}

/// The default device when nothing else says which.
pub fn default_devices() -> Vec<SimDevice> {
    vec![SimDevice {
        pci_address: "0000:41:00.0".into(),
        model: "NVIDIA A100-SXM4-80GB".into(),
        mig_enabled: true,
        mig_pending: None,
        uuid: None,
    }]
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    devices: Vec<SimGpu>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimGpu {
    pci_address: String,
    uuid: String,
    name: String,
    model_key: Option<String>,
    pci_device_id: u16,
    memory_mib: u64,
    mig_current: bool,
    mig_pending: bool,
    #[serde(default)]
    gpu_instances: Vec<SimGi>,
    /// Test hook: operation name → error kind; the next call of the operation fails once with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    inject: BTreeMap<String, ErrorKind>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimGi {
    id: u32,
    profile_id: u32,
    start: u32,
    size: u32,
    /// Test hook: who uses it (a VM, a process); destroy refuses with IN_USE naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    in_use_by: Option<String>,
    #[serde(default)]
    compute_instances: Vec<SimCi>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimCi {
    id: u32,
    profile_id: u32,
    compute_slices: u32,
    start: u32,
    uuid: String,
}

impl SimGpu {
    fn model(&self) -> Option<&'static GpuModel> {
        self.model_key
            .as_deref()
            .and_then(hsw_core::gpu::catalog::model_by_key)
    }

    fn info(&self, index: u32) -> DeviceInfo {
        DeviceInfo {
            index,
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            pci_address: self.pci_address.clone(),
            pci_device_id: self.pci_device_id,
            mig: MigMode {
                current: self.mig_current,
                pending: self.mig_pending,
            },
            memory_mib: self.memory_mib,
        }
    }

    fn take_injected(&mut self, op: &str) -> Option<GpuError> {
        self.inject.remove(op).map(|kind| {
            GpuError::new(
                kind,
                format!(
                    "The simulated GPU {} failed {op} with {} (injected by a test).",
                    self.pci_address,
                    kind.as_str()
                ),
            )
        })
    }
}

/// Stable pseudo-random 128 bits from a string (two FNV-1a passes), for UUIDs derived from names.
fn hash128(s: &str) -> u128 {
    let fnv = |seed: u64| {
        s.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x8422_2325_cbf2_9ce4))
}

fn sim_gpu(d: &SimDevice) -> Result<SimGpu> {
    let pci = normalize_pci(&d.pci_address).ok_or_else(|| {
        GpuError::new(
            ErrorKind::InvalidArgument,
            format!(
                "The simulated GPU's PCI address {:?} is not one: write it as dddd:bb:dd.f, e.g. 0000:41:00.0.",
                d.pci_address
            ),
        )
    })?;
    let model = hsw_core::gpu::catalog::model_by_key(&d.model)
        .or_else(|| hsw_core::gpu::lookup_model(&d.model));
    let name = match model {
        Some(m) if m.key == d.model => m.display_name.to_owned(),
        _ => d.model.clone(),
    };
    let uuid = d.uuid.clone().unwrap_or_else(|| {
        format!(
            "GPU-{}",
            uuid::Uuid::from_u128(hash128(&format!("hsw-sim-gpu/{pci}")))
        )
    });
    let mig_ok = model.is_some() && d.mig_enabled;
    Ok(SimGpu {
        pci_address: pci,
        uuid,
        name,
        model_key: model.map(|m| m.key.to_owned()),
        pci_device_id: model
            .and_then(|m| m.pci_device_ids.first().copied())
            .unwrap_or(0),
        memory_mib: model.map_or(0, |m| u64::from(m.memory_gb) * 1024),
        mig_current: mig_ok,
        mig_pending: d.mig_pending.unwrap_or(mig_ok) && model.is_some(),
        gpu_instances: Vec::new(),
        inject: BTreeMap::new(),
    })
}

/// The simulated backend over one state directory.
#[derive(Debug, Clone)]
pub struct SimulatedBackend {
    dir: PathBuf,
}

impl SimulatedBackend {
    /// Opens (and on first use, populates) the state in `state_dir`; see the module documentation for where the
    /// devices come from. `seed` devices the state lacks are added.
    pub fn open(state_dir: &Path, seed: Option<&[SimDevice]>) -> Result<SimulatedBackend> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| GpuError::io("create the simulated GPU state directory", state_dir, &e))?;
        let b = SimulatedBackend {
            dir: state_dir.to_owned(),
        };
        let inventory_path = state_dir.join(INVENTORY_FILE);
        b.with_state(|st| {
            let mut adds: Vec<SimDevice> = seed.map(<[SimDevice]>::to_vec).unwrap_or_default();
            if st.devices.is_empty() && adds.is_empty() {
                adds = match std::fs::read(&inventory_path) {
                    Ok(bytes) => {
                        serde_json::from_slice::<SimInventory>(&bytes)
                            .map_err(|e| {
                                GpuError::new(
                                    ErrorKind::InvalidArgument,
                                    format!(
                                        "The simulated GPU inventory {} is not valid: {e}. Write {{\"devices\": \
                                         [{{\"pci_address\": \"0000:41:00.0\", \"model\": \"a100-80gb\"}}]}}.",
                                        inventory_path.display()
                                    ),
                                )
                            })?
                            .devices
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => default_devices(),
                    Err(e) => {
                        return Err(GpuError::io(
                            "read the simulated GPU inventory",
                            &inventory_path,
                            &e,
                        ))
                    }
                };
            }
            for d in &adds {
                let g = sim_gpu(d)?;
                if !st.devices.iter().any(|x| x.pci_address == g.pci_address) {
                    st.devices.push(g);
                }
            }
            st.devices.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
            Ok(())
        })?;
        Ok(b)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` on the state under the exclusive lock, saving it when `f` succeeds.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let _lock = FileLock::acquire(&self.dir.join("gpu-sim.lock"))?;
        let path = self.dir.join(STATE_FILE);
        let mut st = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes).map_err(|e| {
                GpuError::new(
                    ErrorKind::Io,
                    format!(
                        "The simulated GPU state {} is not valid JSON of the expected shape: {e}. Remove it to \
                         start with fresh simulated GPUs.",
                        path.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: 1,
                devices: Vec::new(),
            },
            Err(e) => return Err(GpuError::io("read the simulated GPU state", &path, &e)),
        };
        let before = serde_json::to_vec(&st).unwrap_or_default();
        let out = f(&mut st);
        // Injected failures are consumed even when the operation fails: save whenever the state changed.
        let after = serde_json::to_vec_pretty(&st).unwrap_or_default();
        if serde_json::to_vec(&st).unwrap_or_default() != before {
            hsw_core::fsx::write_atomic(&path, &after, 0o644)
                .map_err(|e| GpuError::io("write the simulated GPU state", &path, &e))?;
        }
        out
    }

    fn gpu(st: &mut State, device: u32) -> Result<&mut SimGpu> {
        let n = st.devices.len();
        usize::try_from(device)
            .ok()
            .and_then(|i| st.devices.get_mut(i))
            .ok_or_else(|| {
                GpuError::new(
                    ErrorKind::NotFound,
                    format!("There is no simulated GPU with index {device} (there are {n})."),
                )
            })
    }

    fn gpu_by_pci<'a>(st: &'a mut State, pci: &str) -> Result<&'a mut SimGpu> {
        let want = normalize_pci(pci).unwrap_or_else(|| pci.to_owned());
        st.devices
            .iter_mut()
            .find(|g| g.pci_address == want)
            .ok_or_else(|| {
                GpuError::new(
                    ErrorKind::NotFound,
                    format!("There is no simulated GPU at {pci}."),
                )
            })
    }

    /// Test hook: marks GPU instance `gi_id` on the GPU at `pci` as used by `holder` (`None`: free).
    pub fn set_holder(&self, pci: &str, gi_id: u32, holder: Option<&str>) -> Result<()> {
        self.with_state(|st| {
            let g = Self::gpu_by_pci(st, pci)?;
            let gi = g
                .gpu_instances
                .iter_mut()
                .find(|gi| gi.id == gi_id)
                .ok_or_else(|| {
                    GpuError::new(
                        ErrorKind::NotFound,
                        format!("GPU {pci} has no GPU instance {gi_id}."),
                    )
                })?;
            gi.in_use_by = holder.map(str::to_owned);
            Ok(())
        })
    }

    /// Test hook: the next `op` (`create_gpu_instance`, `create_compute_instance`, `destroy_gpu_instance`,
    /// `destroy_compute_instance`) on the GPU at `pci` fails with `kind`.
    pub fn inject_failure(&self, pci: &str, op: &str, kind: ErrorKind) -> Result<()> {
        self.with_state(|st| {
            Self::gpu_by_pci(st, pci)?
                .inject
                .insert(op.to_owned(), kind);
            Ok(())
        })
    }

    /// Test hook: sets the MIG mode of the GPU at `pci` (what `nvidia-smi -mig` and a reset would do).
    pub fn set_mig_mode(&self, pci: &str, current: bool, pending: bool) -> Result<()> {
        self.with_state(|st| {
            let g = Self::gpu_by_pci(st, pci)?;
            g.mig_current = current;
            g.mig_pending = pending;
            if !current {
                g.gpu_instances.clear();
            }
            Ok(())
        })
    }
}

fn profile_info(model: &GpuModel, p: &Profile) -> ProfileInfo {
    let per_slice = u64::from(model.memory_gb) * 1024 / u64::from(model.memory_slices.max(1));
    ProfileInfo {
        id: p.id,
        name: p.name.to_owned(),
        compute_slices: p.compute_slices,
        max_count: p.max_count,
        memory_mib: p
            .memory_gb()
            .map_or(per_slice * u64::from(p.memory_slices), |g| {
                u64::from(g) * 1024
            }),
        placements: p
            .placement_starts
            .iter()
            .map(|&start| Placement {
                start,
                size: p.placement_size,
            })
            .collect(),
    }
}

/// NVML's compute-instance profile index for a slice count (`NVML_COMPUTE_INSTANCE_PROFILE_*`); the simulated
/// backend uses it as the compute-instance profile ID too.
pub fn compute_profile_index(slices: u32) -> Option<u32> {
    match slices {
        1 => Some(0),
        2 => Some(1),
        3 => Some(2),
        4 => Some(3),
        7 => Some(4),
        8 => Some(5),
        6 => Some(6),
        _ => None,
    }
}

fn layout_error(e: LayoutError, pci: &str, what: &str) -> GpuError {
    let kind = match e {
        LayoutError::UnknownProfile { .. } => ErrorKind::NotSupported,
        LayoutError::IllegalStart { .. } => ErrorKind::InvalidArgument,
        _ => ErrorKind::InsufficientResources,
    };
    let code = match kind {
        ErrorKind::NotSupported => "NOT_SUPPORTED",
        ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        _ => "INSUFFICIENT_RESOURCES",
    };
    GpuError::new(kind, format!("GPU {pci} refused {what} ({code}): {e}."))
}

impl GpuBackend for SimulatedBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Simulated
    }

    fn versions(&self) -> Result<DriverVersions> {
        Ok(DriverVersions {
            driver: SIMULATED_VERSION.to_owned(),
            nvml: SIMULATED_VERSION.to_owned(),
        })
    }

    fn devices(&self) -> Result<Vec<DeviceInfo>> {
        self.with_state(|st| {
            Ok(st
                .devices
                .iter()
                .enumerate()
                .map(|(i, g)| g.info(u32::try_from(i).unwrap_or(u32::MAX)))
                .collect())
        })
    }

    fn profiles(&self, device: u32) -> Result<Vec<ProfileInfo>> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            // As NVML: the profile table is there whether or not MIG mode is on.
            Ok(g.model()
                .map(|m| m.profiles.iter().map(|p| profile_info(m, p)).collect())
                .unwrap_or_default())
        })
    }

    fn gpu_instances(&self, device: u32) -> Result<Vec<GpuInstance>> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            let mut out: Vec<GpuInstance> = g
                .gpu_instances
                .iter()
                .map(|gi| GpuInstance {
                    id: gi.id,
                    profile_id: gi.profile_id,
                    placement: Placement {
                        start: gi.start,
                        size: gi.size,
                    },
                    compute_instances: gi
                        .compute_instances
                        .iter()
                        .map(|ci| ComputeInstance {
                            id: ci.id,
                            profile_id: ci.profile_id,
                            compute_slices: ci.compute_slices,
                            placement: Placement {
                                start: ci.start,
                                size: ci.compute_slices,
                            },
                        })
                        .collect(),
                })
                .collect();
            out.sort_by_key(|g| g.id);
            Ok(out)
        })
    }

    fn create_gpu_instance(&self, device: u32, profile_id: u32, start: u32) -> Result<GpuInstance> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            if let Some(e) = g.take_injected("create_gpu_instance") {
                return Err(e);
            }
            g.info(device).require_mig()?;
            let pci = g.pci_address.clone();
            let model = g.model().ok_or_else(|| {
                GpuError::new(
                    ErrorKind::NotSupported,
                    format!("GPU {pci} ({}) does not support MIG (NOT_SUPPORTED).", g.name),
                )
            })?;
            let p = model.profile_by_id(profile_id).ok_or_else(|| {
                GpuError::new(
                    ErrorKind::NotSupported,
                    format!(
                        "GPU {pci} ({}) has no GPU-instance profile with ID {profile_id} (NOT_SUPPORTED); its \
                         profiles are {}.",
                        model.display_name,
                        model
                            .profiles
                            .iter()
                            .map(|p| format!("{} (ID {})", p.name, p.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let mut layout: Vec<(&Profile, u32)> = Vec::new();
            for gi in &g.gpu_instances {
                if let Some(q) = model.profile_by_id(gi.profile_id) {
                    layout.push((q, gi.start));
                }
            }
            layout.push((p, start));
            check_layout(model, &layout).map_err(|e| {
                layout_error(
                    e,
                    &pci,
                    &format!("a {} GPU instance at memory slice {start}", p.name),
                )
            })?;
            let id = (1..)
                .find(|i| !g.gpu_instances.iter().any(|gi| gi.id == *i))
                .unwrap_or(1);
            g.gpu_instances.push(SimGi {
                id,
                profile_id,
                start,
                size: p.placement_size,
                in_use_by: None,
                compute_instances: Vec::new(),
            });
            Ok(GpuInstance {
                id,
                profile_id,
                placement: Placement {
                    start,
                    size: p.placement_size,
                },
                compute_instances: Vec::new(),
            })
        })
    }

    fn create_compute_instance(
        &self,
        device: u32,
        gi_id: u32,
        compute_slices: Option<u32>,
    ) -> Result<ComputeInstance> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            if let Some(e) = g.take_injected("create_compute_instance") {
                return Err(e);
            }
            let pci = g.pci_address.clone();
            let model = g.model();
            let gi = g
                .gpu_instances
                .iter_mut()
                .find(|gi| gi.id == gi_id)
                .ok_or_else(|| {
                    GpuError::new(
                        ErrorKind::NotFound,
                        format!("GPU {pci} has no GPU instance {gi_id} (NOT_FOUND)."),
                    )
                })?;
            let gi_slices = model
                .and_then(|m| m.profile_by_id(gi.profile_id))
                .map_or(1, |p| p.compute_slices);
            let slices = compute_slices.unwrap_or(gi_slices);
            let allowed: Vec<u32> = [1, 2, 3, 4, 7, 8]
                .into_iter()
                .filter(|s| *s <= gi_slices && (*s != 3 || gi_slices != 4))
                .collect();
            let profile_id = compute_profile_index(slices)
                .filter(|_| allowed.contains(&slices) || slices == gi_slices)
                .ok_or_else(|| {
                    GpuError::new(
                        ErrorKind::NotSupported,
                        format!(
                            "GPU instance {gi_id} on GPU {pci} has {gi_slices} compute slices and no \
                             {slices}-slice compute profile (NOT_SUPPORTED); use one of {allowed:?}."
                        ),
                    )
                })?;
            let mut used = vec![false; usize::try_from(gi_slices).unwrap_or(0)];
            for ci in &gi.compute_instances {
                for s in ci.start..ci.start + ci.compute_slices {
                    if let Some(u) = usize::try_from(s).ok().and_then(|s| used.get_mut(s)) {
                        *u = true;
                    }
                }
            }
            let start = (0..gi_slices)
                .step_by(usize::try_from(slices.max(1)).unwrap_or(1))
                .find(|&s| {
                    s + slices <= gi_slices
                        && (s..s + slices).all(|x| {
                            usize::try_from(x)
                                .ok()
                                .and_then(|x| used.get(x))
                                .is_some_and(|u| !u)
                        })
                })
                .ok_or_else(|| {
                    GpuError::new(
                        ErrorKind::InsufficientResources,
                        format!(
                            "GPU instance {gi_id} on GPU {pci} has no {slices} free compute slices for another \
                             compute instance (INSUFFICIENT_RESOURCES)."
                        ),
                    )
                })?;
            let id = (0..)
                .find(|i| !gi.compute_instances.iter().any(|ci| ci.id == *i))
                .unwrap_or(0);
            let uuid = format!("MIG-{}", uuid::Uuid::new_v4());
            gi.compute_instances.push(SimCi {
                id,
                profile_id,
                compute_slices: slices,
                start,
                uuid,
            });
            Ok(ComputeInstance {
                id,
                profile_id,
                compute_slices: slices,
                placement: Placement {
                    start,
                    size: slices,
                },
            })
        })
    }

    fn destroy_compute_instance(&self, device: u32, gi_id: u32, ci_id: u32) -> Result<()> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            if let Some(e) = g.take_injected("destroy_compute_instance") {
                return Err(e);
            }
            let pci = g.pci_address.clone();
            let gi = g
                .gpu_instances
                .iter_mut()
                .find(|gi| gi.id == gi_id)
                .ok_or_else(|| {
                    GpuError::new(
                        ErrorKind::NotFound,
                        format!("GPU {pci} has no GPU instance {gi_id} (NOT_FOUND)."),
                    )
                })?;
            if let Some(h) = &gi.in_use_by {
                return Err(GpuError::new(
                    ErrorKind::InUse,
                    format!(
                        "Compute instance {ci_id} of GPU instance {gi_id} on GPU {pci} is in use by {h} (IN_USE). \
                         Stop it or detach the MIG device from it first."
                    ),
                ));
            }
            let before = gi.compute_instances.len();
            gi.compute_instances.retain(|ci| ci.id != ci_id);
            if gi.compute_instances.len() == before {
                return Err(GpuError::new(
                    ErrorKind::NotFound,
                    format!(
                        "GPU instance {gi_id} on GPU {pci} has no compute instance {ci_id} (NOT_FOUND)."
                    ),
                ));
            }
            Ok(())
        })
    }

    fn destroy_gpu_instance(&self, device: u32, gi_id: u32) -> Result<()> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            if let Some(e) = g.take_injected("destroy_gpu_instance") {
                return Err(e);
            }
            let pci = g.pci_address.clone();
            let Some(pos) = g.gpu_instances.iter().position(|gi| gi.id == gi_id) else {
                return Err(GpuError::new(
                    ErrorKind::NotFound,
                    format!("GPU {pci} has no GPU instance {gi_id} (NOT_FOUND)."),
                ));
            };
            let gi = &g.gpu_instances[pos];
            if let Some(h) = &gi.in_use_by {
                return Err(GpuError::new(
                    ErrorKind::InUse,
                    format!(
                        "GPU instance {gi_id} on GPU {pci} is in use by {h} (IN_USE). Stop it or detach the MIG \
                         device from it first."
                    ),
                ));
            }
            if !gi.compute_instances.is_empty() {
                return Err(GpuError::new(
                    ErrorKind::InUse,
                    format!(
                        "GPU instance {gi_id} on GPU {pci} still has compute instances (IN_USE): destroy them \
                         first."
                    ),
                ));
            }
            g.gpu_instances.remove(pos);
            Ok(())
        })
    }

    fn mig_devices(&self, device: u32) -> Result<Vec<MigDevice>> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            let mut out: Vec<MigDevice> = g
                .gpu_instances
                .iter()
                .flat_map(|gi| {
                    gi.compute_instances.iter().map(|ci| MigDevice {
                        gi_id: gi.id,
                        ci_id: ci.id,
                        uuid: ci.uuid.clone(),
                    })
                })
                .collect();
            out.sort_by_key(|m| (m.gi_id, m.ci_id));
            Ok(out)
        })
    }

    fn holder(&self, device: u32, gi_id: u32) -> Result<Option<String>> {
        self.with_state(|st| {
            let g = Self::gpu(st, device)?;
            Ok(g.gpu_instances
                .iter()
                .find(|gi| gi.id == gi_id)
                .and_then(|gi| gi.in_use_by.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> (tempfile::TempDir, SimulatedBackend) {
        let dir = tempfile::tempdir().unwrap();
        let b = SimulatedBackend::open(dir.path(), None).unwrap();
        (dir, b)
    }

    #[test]
    fn default_inventory_is_one_a100_80gb_with_mig() {
        let (_d, b) = sim();
        let devs = b.devices().unwrap();
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].pci_address, "0000:41:00.0");
        assert_eq!(devs[0].model().map(|m| m.key), Some("a100-80gb"));
        assert!(devs[0].uuid.starts_with("GPU-"));
        assert_eq!(b.profiles(0).unwrap().len(), 7);
        // Stable across reopenings.
        let again = SimulatedBackend::open(b.state_dir(), None).unwrap();
        assert_eq!(again.devices().unwrap(), devs);
    }

    #[test]
    fn the_catalog_rules_hold_with_nvml_error_kinds() {
        let (_d, b) = sim();
        // 3g.40gb (ID 9) at 0, then 4g.40gb (ID 5) at 0 overlaps.
        let gi = b.create_gpu_instance(0, 9, 0).unwrap();
        assert_eq!(gi.placement, Placement { start: 0, size: 4 });
        let e = b.create_gpu_instance(0, 5, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources, "{e}");
        // 2g (ID 14) at 6: not a legal start.
        let e = b.create_gpu_instance(0, 14, 6).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
        // Unknown profile.
        let e = b.create_gpu_instance(0, 77, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported, "{e}");
        // +me twice.
        b.create_gpu_instance(0, 20, 4).unwrap();
        let e = b.create_gpu_instance(0, 20, 5).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources, "{e}");
        // Compute instances: whole GI by default, then no room.
        let ci = b.create_compute_instance(0, gi.id, None).unwrap();
        assert_eq!(ci.compute_slices, 3);
        let e = b.create_compute_instance(0, gi.id, Some(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources, "{e}");
        assert_eq!(b.mig_devices(0).unwrap().len(), 1);
        // GI with a CI cannot go; in use names the holder.
        let e = b.destroy_gpu_instance(0, gi.id).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InUse);
        b.set_holder("0000:41:00.0", gi.id, Some("VM hpc-node1"))
            .unwrap();
        let e = b.destroy_compute_instance(0, gi.id, ci.id).unwrap_err();
        assert!(e.message.contains("VM hpc-node1"), "{e}");
        b.set_holder("0000:41:00.0", gi.id, None).unwrap();
        b.destroy_compute_instance(0, gi.id, ci.id).unwrap();
        b.destroy_gpu_instance(0, gi.id).unwrap();
        let e = b.destroy_gpu_instance(0, gi.id).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    #[test]
    fn mig_disabled_and_injected_failures() {
        let (_d, b) = sim();
        b.set_mig_mode("0000:41:00.0", false, true).unwrap();
        let e = b.create_gpu_instance(0, 19, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResetRequired, "{e}");
        assert_eq!(
            b.profiles(0).unwrap().len(),
            7,
            "listed with MIG off, as NVML does"
        );
        b.set_mig_mode("0000:41:00.0", true, true).unwrap();
        b.inject_failure(
            "0000:41:00.0",
            "create_gpu_instance",
            ErrorKind::NoPermission,
        )
        .unwrap();
        assert_eq!(
            b.create_gpu_instance(0, 19, 0).unwrap_err().kind,
            ErrorKind::NoPermission
        );
        assert!(b.create_gpu_instance(0, 19, 0).is_ok(), "injected once");
    }

    #[test]
    fn config_devices_seed_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let seed = vec![
            SimDevice {
                pci_address: "0000:81:00.0".into(),
                model: "NVIDIA H100 80GB HBM3".into(),
                mig_enabled: true,
                mig_pending: None,
                uuid: None,
            },
            SimDevice {
                pci_address: "81:00.1".into(),
                model: "NVIDIA RTX 6000".into(),
                mig_enabled: true,
                mig_pending: None,
                uuid: Some("GPU-fixed".into()),
            },
        ];
        let b = SimulatedBackend::open(dir.path(), Some(&seed)).unwrap();
        let d = b.devices().unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].model().map(|m| m.key), Some("h100-80gb"));
        assert_eq!(d[1].uuid, "GPU-fixed");
        assert!(!d[1].mig.current, "an uncatalogued GPU has no MIG");
        assert!(b.profiles(1).unwrap().is_empty());
    }

    #[test]
    fn the_state_is_never_written_through_a_link() {
        use std::{fs, os::unix::fs::symlink};
        let (d, b) = sim();
        let (victim, state) = (d.path().join("victim"), d.path().join(STATE_FILE));
        fs::write(&victim, b"keep").unwrap();
        // At the temporary name the writer used to use, then at the state file itself.
        symlink(&victim, d.path().join(format!("{STATE_FILE}.tmp"))).unwrap();
        b.create_gpu_instance(0, 19, 0).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        let (other, before) = (tempfile::tempdir().unwrap(), fs::read(&state).unwrap());
        symlink(&state, other.path().join(STATE_FILE)).unwrap();
        let b2 = SimulatedBackend::open(other.path(), None).unwrap();
        let e = b2.create_gpu_instance(0, 19, 1).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&state).unwrap(), before);
    }
}
