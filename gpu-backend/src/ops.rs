//! MIG instances as hsw manages them (one GPU instance with one compute instance = one MIG device), on top of
//! any [`GpuBackend`]: choose the backend, find a device, create under the GPU's host-level lock with rollback,
//! read back, destroy.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, GpuError, Result};
use crate::lock::{GpuLock, DEFAULT_LOCK_DIR};
use crate::mig::{BackendKind, DeviceInfo, GpuBackend, GpuInstance, Placement, ProfileInfo};
use crate::nvml::NvmlBackend;
use crate::simulated::{SimDevice, SimulatedBackend};

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// NVML when it loads and sees a GPU, else simulated.
    Auto,
    /// NVML only.
    Nvml,
    /// Simulated only.
    Simulated,
}

impl Choice {
    /// Parses `auto`, `nvml`, `simulated`.
    pub fn parse(s: &str) -> Option<Choice> {
        match s {
            "auto" => Some(Choice::Auto),
            "nvml" => Some(Choice::Nvml),
            "simulated" => Some(Choice::Simulated),
            _ => None,
        }
    }
}

/// Where the backends keep their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The simulated backend's state directory.
    pub state_dir: PathBuf,
    /// The per-GPU lock files' directory (`/run/hsw` for NVML; `<state_dir>/locks` when simulated), unless
    /// `HSW_LOCK_DIR` says otherwise.
    pub lock_dir: Option<PathBuf>,
}

/// An opened backend, with why it was chosen.
#[derive(Debug)]
pub struct Opened {
    /// The backend.
    pub backend: Box<dyn GpuBackend>,
    /// Why `auto` chose it (`None` when chosen explicitly).
    pub reason: Option<String>,
    /// The per-GPU lock directory for this backend.
    pub lock_dir: PathBuf,
}

/// Opens the backend `choice` names. `seed`: simulated devices from a cluster definition.
pub fn open(choice: Choice, paths: &Paths, seed: Option<&[SimDevice]>) -> Result<Opened> {
    let lock_dir = |kind: BackendKind| {
        paths
            .lock_dir
            .clone()
            .or_else(|| std::env::var_os("HSW_LOCK_DIR").map(PathBuf::from))
            .unwrap_or_else(|| match kind {
                BackendKind::Nvml => PathBuf::from(DEFAULT_LOCK_DIR),
                BackendKind::Simulated => paths.state_dir.join("locks"),
            })
    };
    let sim = || SimulatedBackend::open(&paths.state_dir, seed);
    match choice {
        Choice::Nvml => Ok(Opened {
            backend: Box::new(NvmlBackend::open()?),
            reason: None,
            lock_dir: lock_dir(BackendKind::Nvml),
        }),
        Choice::Simulated => Ok(Opened {
            backend: Box::new(sim()?),
            reason: None,
            lock_dir: lock_dir(BackendKind::Simulated),
        }),
        Choice::Auto => {
            let why = match NvmlBackend::open() {
                Ok(n) => match n.devices() {
                    Ok(d) if !d.is_empty() => {
                        return Ok(Opened {
                            backend: Box::new(n),
                            reason: Some(format!("NVML answered with {} GPU(s)", d.len())),
                            lock_dir: lock_dir(BackendKind::Nvml),
                        })
                    }
                    Ok(_) => "NVML answered but sees no GPU".to_owned(),
                    Err(e) => format!("NVML failed: {e}"),
                },
                Err(e) => format!("NVML is not usable: {e}"),
            };
            Ok(Opened {
                backend: Box::new(sim()?),
                reason: Some(format!("{why} So the simulated backend is used.")),
                lock_dir: lock_dir(BackendKind::Simulated),
            })
        }
    }
}

/// The device `r` names (index, UUID or PCI address).
pub fn find_device(backend: &dyn GpuBackend, r: &str) -> Result<DeviceInfo> {
    let devices = backend.devices()?;
    devices.iter().find(|d| d.matches(r)).cloned().ok_or_else(|| {
        GpuError::new(
            ErrorKind::NotFound,
            format!(
                "No GPU matches {r:?} on the {} backend; the GPUs are: {}. Name one by index, UUID or PCI address.",
                backend.kind(),
                if devices.is_empty() {
                    "none".to_owned()
                } else {
                    devices
                        .iter()
                        .map(|d| format!("{} {} ({})", d.index, d.pci_address, d.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        )
    })
}

/// The profile `name` (a name such as `1g.10gb`, or an ID) of a device.
pub fn find_profile(profiles: &[ProfileInfo], dev: &DeviceInfo, name: &str) -> Result<ProfileInfo> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_prefix("mig ").unwrap_or(&n);
    profiles
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(n) || n.parse::<u32>().is_ok_and(|id| id == p.id))
        .cloned()
        .ok_or_else(|| {
            let hint = dev
                .model()
                .and_then(|m| hsw_core::gpu::suggest_profile(m, name))
                .map(|p| format!(" Did you mean {}?", p.name))
                .unwrap_or_default();
            GpuError::new(
                ErrorKind::NotSupported,
                format!(
                    "GPU {} ({}) has no MIG profile {name:?}; its profiles are {}.{hint}",
                    dev.pci_address,
                    dev.name,
                    profiles
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

/// A MIG instance hsw made: a GPU instance holding one compute instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigInstance {
    /// GPU PCI address.
    pub gpu_pci: String,
    /// GPU UUID.
    pub gpu_uuid: String,
    /// GPU index.
    pub gpu_index: u32,
    /// Profile name.
    pub profile: String,
    /// Profile ID.
    pub profile_id: u32,
    /// GPU instance id.
    pub gi_id: u32,
    /// Compute instance id (the first, when there are several).
    pub ci_id: Option<u32>,
    /// Compute slices of that compute instance.
    pub compute_slices: Option<u32>,
    /// Memory-slice placement.
    pub placement: Placement,
    /// The MIG device UUID, when known.
    pub mig_device_uuid: Option<String>,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// GPU: index, UUID or PCI address.
    pub gpu: String,
    /// Profile name or ID.
    pub profile: String,
    /// Memory-slice start; `None`: the first legal start that fits.
    pub placement_start: Option<u32>,
    /// Compute slices of the compute instance; `None`: the whole GPU instance.
    pub compute_slices: Option<u32>,
}

/// The first placement of `profile` that overlaps none of `existing`.
pub fn first_fit(profile: &ProfileInfo, existing: &[GpuInstance]) -> Option<Placement> {
    profile
        .placements
        .iter()
        .copied()
        .find(|p| !existing.iter().any(|g| g.placement.overlaps(*p)))
}

fn describe_used(existing: &[GpuInstance], profiles: &[ProfileInfo]) -> String {
    if existing.is_empty() {
        return "none".into();
    }
    existing
        .iter()
        .map(|g| {
            let name = profiles
                .iter()
                .find(|p| p.id == g.profile_id)
                .map_or_else(|| format!("profile {}", g.profile_id), |p| p.name.clone());
            format!(
                "GPU instance {} ({name}) at slices {}..{}",
                g.id,
                g.placement.start,
                g.placement.start + g.placement.size
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates a MIG instance: under the GPU's host-level lock, reads the GPU instances, picks the placement, creates
/// the GPU instance, then the compute instance; if the compute instance fails, destroys the GPU instance it made
/// (nothing is left half-made) and returns the compute instance's error.
pub fn create(
    backend: &dyn GpuBackend,
    lock_dir: &Path,
    req: &CreateRequest,
) -> Result<MigInstance> {
    let dev = find_device(backend, &req.gpu)?;
    dev.require_mig()?;
    let profiles = backend.profiles(dev.index)?;
    let profile = find_profile(&profiles, &dev, &req.profile)?;
    let _lock = GpuLock::acquire(lock_dir, &dev.pci_address)?;
    let existing = backend.gpu_instances(dev.index)?;
    let start = match req.placement_start {
        Some(s) => {
            if !profile.placements.iter().any(|p| p.start == s) {
                return Err(GpuError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{} cannot start at memory slice {s} on GPU {}; its legal starts are {:?}.",
                        profile.name,
                        dev.pci_address,
                        profile.placements.iter().map(|p| p.start).collect::<Vec<_>>()
                    ),
                ));
            }
            s
        }
        None => {
            first_fit(&profile, &existing)
                .ok_or_else(|| {
                    GpuError::new(
                        ErrorKind::InsufficientResources,
                        format!(
                            "GPU {} has no free placement for a {} instance (INSUFFICIENT_RESOURCES): its legal \
                             starts {:?} are all covered by {}. Destroy an instance or choose another GPU.",
                            dev.pci_address,
                            profile.name,
                            profile.placements.iter().map(|p| p.start).collect::<Vec<_>>(),
                            describe_used(&existing, &profiles)
                        ),
                    )
                })?
                .start
        }
    };
    let gi = backend.create_gpu_instance(dev.index, profile.id, start)?;
    let ci = match backend.create_compute_instance(dev.index, gi.id, req.compute_slices) {
        Ok(ci) => ci,
        Err(e) => {
            return Err(match backend.destroy_gpu_instance(dev.index, gi.id) {
                Ok(()) => GpuError::new(
                    e.kind,
                    format!(
                        "{} The GPU instance {} made for it on GPU {} was destroyed again, so nothing is left \
                         half-made.",
                        e.message, gi.id, dev.pci_address
                    ),
                ),
                Err(e2) => GpuError::new(
                    e.kind,
                    format!(
                        "{} Rolling back failed too: GPU instance {} on GPU {} is left without a compute instance \
                         ({e2}); destroy it with `nvidia-smi mig -dgi -gi {} -i {}` or `hsw-cli gpu cleanup --yes`.",
                        e.message, gi.id, dev.pci_address, gi.id, dev.index
                    ),
                ),
            });
        }
    };
    let uuid = backend
        .mig_devices(dev.index)?
        .into_iter()
        .find(|m| m.gi_id == gi.id && m.ci_id == ci.id)
        .map(|m| m.uuid);
    Ok(MigInstance {
        gpu_pci: dev.pci_address.clone(),
        gpu_uuid: dev.uuid.clone(),
        gpu_index: dev.index,
        profile: profile.name.clone(),
        profile_id: profile.id,
        gi_id: gi.id,
        ci_id: Some(ci.id),
        compute_slices: Some(ci.compute_slices),
        placement: gi.placement,
        mig_device_uuid: uuid,
    })
}

/// Reads a MIG instance back by GPU and GPU-instance id; `None` when the GPU instance is gone.
pub fn read(backend: &dyn GpuBackend, gpu: &str, gi_id: u32) -> Result<Option<MigInstance>> {
    let dev = find_device(backend, gpu)?;
    if !dev.mig.current {
        return Ok(None);
    }
    let Some(gi) = backend
        .gpu_instances(dev.index)?
        .into_iter()
        .find(|g| g.id == gi_id)
    else {
        return Ok(None);
    };
    let profiles = backend.profiles(dev.index)?;
    let ci = gi.compute_instances.first();
    let uuid = match ci {
        Some(ci) => backend
            .mig_devices(dev.index)?
            .into_iter()
            .find(|m| m.gi_id == gi.id && m.ci_id == ci.id)
            .map(|m| m.uuid),
        None => None,
    };
    Ok(Some(MigInstance {
        gpu_pci: dev.pci_address.clone(),
        gpu_uuid: dev.uuid.clone(),
        gpu_index: dev.index,
        profile: profiles
            .iter()
            .find(|p| p.id == gi.profile_id)
            .map_or_else(|| gi.profile_id.to_string(), |p| p.name.clone()),
        profile_id: gi.profile_id,
        gi_id: gi.id,
        ci_id: ci.map(|c| c.id),
        compute_slices: ci.map(|c| c.compute_slices),
        placement: gi.placement,
        mig_device_uuid: uuid,
    }))
}

/// Destroys a MIG instance (its compute instances, then the GPU instance) under the GPU's lock. Already gone is
/// success. A GPU instance in use is refused with IN_USE, naming the holder when the backend knows it.
pub fn destroy(backend: &dyn GpuBackend, lock_dir: &Path, gpu: &str, gi_id: u32) -> Result<()> {
    let dev = find_device(backend, gpu)?;
    if !dev.mig.current {
        return Ok(());
    }
    let _lock = GpuLock::acquire(lock_dir, &dev.pci_address)?;
    let Some(gi) = backend
        .gpu_instances(dev.index)?
        .into_iter()
        .find(|g| g.id == gi_id)
    else {
        return Ok(());
    };
    if let Some(h) = backend.holder(dev.index, gi_id)? {
        return Err(GpuError::new(
            ErrorKind::InUse,
            format!(
                "GPU instance {gi_id} on GPU {} is in use by {h} (IN_USE): stop it or detach the MIG device \
                 before destroying the instance.",
                dev.pci_address
            ),
        ));
    }
    for ci in &gi.compute_instances {
        match backend.destroy_compute_instance(dev.index, gi_id, ci.id) {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match backend.destroy_gpu_instance(dev.index, gi_id) {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
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

    fn req(profile: &str, start: Option<u32>) -> CreateRequest {
        CreateRequest {
            gpu: "0000:41:00.0".into(),
            profile: profile.into(),
            placement_start: start,
            compute_slices: None,
        }
    }

    #[test]
    fn create_picks_the_first_fit_and_reads_back() {
        let (d, b) = sim();
        let locks = d.path().join("locks");
        let a = create(&b, &locks, &req("3g.40gb", None)).unwrap();
        assert_eq!(a.placement, Placement { start: 0, size: 4 });
        assert!(a
            .mig_device_uuid
            .as_deref()
            .is_some_and(|u| u.starts_with("MIG-")));
        let c = create(&b, &locks, &req("3g.40gb", None)).unwrap();
        assert_eq!(c.placement.start, 4);
        let e = create(&b, &locks, &req("1g.10gb", None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources, "{e}");
        assert!(e.message.contains("slices 0..4"), "{e}");
        assert_eq!(read(&b, "0", a.gi_id).unwrap(), Some(a.clone()));
        destroy(&b, &locks, "GPU-x-not-it", a.gi_id).unwrap_err();
        destroy(&b, &locks, &a.gpu_uuid, a.gi_id).unwrap();
        assert_eq!(read(&b, "0", a.gi_id).unwrap(), None);
        destroy(&b, &locks, "0", a.gi_id).unwrap();
    }

    #[test]
    fn a_failed_compute_instance_rolls_back_the_gpu_instance() {
        let (d, b) = sim();
        b.inject_failure(
            "0000:41:00.0",
            "create_compute_instance",
            ErrorKind::InsufficientResources,
        )
        .unwrap();
        let e = create(&b, &d.path().join("locks"), &req("1g.10gb", Some(3))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources);
        assert!(e.message.contains("nothing is left half-made"), "{e}");
        assert!(b.gpu_instances(0).unwrap().is_empty());
    }

    #[test]
    fn bad_starts_unknown_profiles_and_mig_off_are_refused_before_creating() {
        let (d, b) = sim();
        let locks = d.path().join("locks");
        let e = create(&b, &locks, &req("2g.20gb", Some(6))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = create(&b, &locks, &req("1g.5gb", None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported);
        assert!(e.message.contains("Did you mean"), "{e}");
        b.set_mig_mode("0000:41:00.0", false, false).unwrap();
        let e = create(&b, &locks, &req("1g.10gb", None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MigDisabled);
        assert!(b.gpu_instances(0).unwrap().is_empty());
    }

    #[test]
    fn in_use_instances_are_not_destroyed() {
        let (d, b) = sim();
        let locks = d.path().join("locks");
        let a = create(&b, &locks, &req("1g.10gb", None)).unwrap();
        b.set_holder("0000:41:00.0", a.gi_id, Some("VM cloud-worker-1"))
            .unwrap();
        let e = destroy(&b, &locks, "0", a.gi_id).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InUse);
        assert!(e.message.contains("cloud-worker-1"), "{e}");
        assert!(read(&b, "0", a.gi_id).unwrap().is_some());
    }

    #[test]
    fn racing_for_the_last_slot_exactly_one_wins() {
        for _ in 0..5 {
            let (d, b) = sim();
            let locks = d.path().join("locks");
            // Fill all but the last 1g slot: 4g@0, 2g@4, leaving slice 6 (and 7) for one 1g.
            create(&b, &locks, &req("4g.40gb", None)).unwrap();
            create(&b, &locks, &req("2g.20gb", None)).unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let dir = d.path().to_owned();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        // A separate backend per racer, as two processes would have.
                        let b = SimulatedBackend::open(&dir, None).unwrap();
                        barrier.wait();
                        create(&b, &dir.join("locks"), &req("1g.10gb", None))
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let wins = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(wins, 1, "{results:?}");
            let loss = results.iter().find_map(|r| r.as_ref().err()).unwrap();
            assert_eq!(loss.kind, ErrorKind::InsufficientResources, "{loss}");
            assert_eq!(b.gpu_instances(0).unwrap().len(), 3);
        }
    }
}
