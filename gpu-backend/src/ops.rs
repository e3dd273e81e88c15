//! MIG instances as hsw manages them (one GPU instance with one compute instance = one MIG device), on top of
//! any [`GpuBackend`]: choose the backend, find a device, create under the GPU's host-level lock with rollback,
//! read back, destroy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, GpuError, Result};
use crate::intent::{self, Intent};
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
    profiles
        .iter()
        .find(|p| profile_names(name, &p.name, p.id))
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

/// " It waited N s for ..." after a refusal that [`create`] waited for, or nothing when it did not wait.
fn waited_note(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(
            " It waited {} s for other instances to free the room (as a destroy in the same apply would).",
            waited.as_secs()
        )
    }
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

/// How often [`create`] looks again for room that another operation is freeing.
const ROOM_RETRY: Duration = Duration::from_millis(500);

/// Creates a MIG instance: under the GPU's host-level lock, reads the GPU instances, picks the placement, creates
/// the GPU instance, then the compute instance; if the compute instance fails, destroys the GPU instance it made
/// (nothing is left half-made) and returns the compute instance's error.
///
/// While the placement is taken by existing GPU instances, it waits up to `room_wait` (the lock released) for
/// them to go: one Terraform apply that re-plans a GPU destroys the old instances and creates the new ones at
/// the same time, so a create may find the room still held by an instance being destroyed.
pub fn create(
    backend: &dyn GpuBackend,
    lock_dir: &Path,
    req: &CreateRequest,
    room_wait: Duration,
) -> Result<MigInstance> {
    let dev = find_device(backend, &req.gpu)?;
    dev.require_mig()?;
    let profiles = backend.profiles(dev.index)?;
    let profile = find_profile(&profiles, &dev, &req.profile)?;
    if let Some(s) = req.placement_start {
        if !profile.placements.iter().any(|p| p.start == s) {
            return Err(GpuError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} cannot start at memory slice {s} on GPU {}; its legal starts are {:?}.",
                    profile.name,
                    dev.pci_address,
                    profile
                        .placements
                        .iter()
                        .map(|p| p.start)
                        .collect::<Vec<_>>()
                ),
            ));
        }
    }
    let deadline = Instant::now() + room_wait;
    let (_lock, start, waited) = loop {
        let lock = GpuLock::acquire(lock_dir, &dev.pci_address)?;
        recover(backend, lock_dir, &dev)?;
        let existing = backend.gpu_instances(dev.index)?;
        let free = |p: &Placement| !existing.iter().any(|g| g.placement.overlaps(*p));
        let start = match req.placement_start {
            Some(s) => profile
                .placements
                .iter()
                .find(|p| p.start == s)
                .copied()
                .filter(free),
            None => first_fit(&profile, &existing),
        }
        .map(|p| p.start);
        let waited = room_wait.saturating_sub(deadline.saturating_duration_since(Instant::now()));
        match (start, req.placement_start) {
            (Some(s), _) => break (lock, s, waited),
            _ if Instant::now() < deadline => {
                drop(lock);
                std::thread::sleep(ROOM_RETRY);
            }
            // Taken: the backend says by what (and refuses, as NVML does).
            (None, Some(s)) => break (lock, s, waited),
            (None, None) => {
                return Err(GpuError::new(
                    ErrorKind::InsufficientResources,
                    format!(
                        "GPU {} has no free placement for a {} instance (INSUFFICIENT_RESOURCES): its legal \
                         starts {:?} are all covered by {}.{} Destroy an instance or choose another GPU.",
                        dev.pci_address,
                        profile.name,
                        profile.placements.iter().map(|p| p.start).collect::<Vec<_>>(),
                        describe_used(&existing, &profiles),
                        waited_note(waited)
                    ),
                ))
            }
        }
    };
    // The intent goes to disk before the GPU instance exists, so a create killed from here on leaves a record the
    // next create or destroy on this GPU finds (see `intent`); it is removed only once the instance is complete.
    let mut intent = Intent {
        gpu_pci: dev.pci_address.clone(),
        profile_id: profile.id,
        start,
        gi_id: None,
        pid: std::process::id(),
    };
    intent::record(lock_dir, &intent)?;
    let gi = match backend.create_gpu_instance(dev.index, profile.id, start) {
        Ok(gi) => gi,
        Err(mut e) => {
            intent::clear(lock_dir, &dev.pci_address)?;
            if e.kind == ErrorKind::InsufficientResources {
                e.message.push_str(&waited_note(waited));
            }
            return Err(e);
        }
    };
    intent.gi_id = Some(gi.id);
    intent::record(lock_dir, &intent)?;
    let ci = match backend.create_compute_instance(dev.index, gi.id, req.compute_slices) {
        Ok(ci) => ci,
        Err(e) => {
            return Err(match backend.destroy_gpu_instance(dev.index, gi.id) {
                Ok(()) => {
                    intent::clear(lock_dir, &dev.pci_address)?;
                    GpuError::new(
                        e.kind,
                        format!(
                            "{} The GPU instance {} made for it on GPU {} was destroyed again, so nothing is left \
                             half-made.",
                            e.message, gi.id, dev.pci_address
                        ),
                    )
                }
                Err(e2) => GpuError::new(
                    e.kind,
                    format!(
                        "{} Rolling back failed too: GPU instance {} on GPU {} is left without a compute instance \
                         ({e2}); the next apply on this GPU destroys it, or destroy it with `nvidia-smi mig -dgi -gi \
                         {} -i {}` or `hsw-cli gpu cleanup --yes`.",
                        e.message, gi.id, dev.pci_address, gi.id, dev.index
                    ),
                ),
            });
        }
    };
    let inst = instance_of(
        backend,
        &dev,
        &profiles,
        &GpuInstance {
            compute_instances: vec![ci],
            ..gi
        },
    )?;
    intent::clear(lock_dir, &dev.pci_address)?;
    Ok(inst)
}

/// A MIG instance from a device's GPU instance (its first compute instance, the MIG device UUID when there is one).
fn instance_of(
    backend: &dyn GpuBackend,
    dev: &DeviceInfo,
    profiles: &[ProfileInfo],
    gi: &GpuInstance,
) -> Result<MigInstance> {
    let ci = gi.compute_instances.first();
    let uuid = match ci {
        Some(ci) => backend
            .mig_devices(dev.index)?
            .into_iter()
            .find(|m| m.gi_id == gi.id && m.ci_id == ci.id)
            .map(|m| m.uuid),
        None => None,
    };
    Ok(MigInstance {
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
    })
}

/// Cleans up after a create that was killed (see [`intent`]): under the GPU's lock, the GPU instance an intent left
/// on `dev` names (same id when recorded, same profile and placement) is destroyed with its compute instances, and
/// the intent removed. Returns the id of the instance destroyed.
pub fn recover(backend: &dyn GpuBackend, lock_dir: &Path, dev: &DeviceInfo) -> Result<Option<u32>> {
    let Some(left) = intent::pending(lock_dir, &dev.pci_address)? else {
        return Ok(None);
    };
    let orphan = if dev.mig.current {
        backend.gpu_instances(dev.index)?.into_iter().find(|g| {
            g.profile_id == left.profile_id
                && g.placement.start == left.start
                && left.gi_id.is_none_or(|id| id == g.id)
        })
    } else {
        None
    };
    let mut destroyed = None;
    if let Some(g) = orphan {
        remove_instance(backend, dev, &g).map_err(|e| {
            GpuError::new(
                e.kind,
                format!(
                    "GPU instance {} on GPU {} was left by an interrupted create (process {}) and cannot be destroyed: \
                     {} Destroy it with `nvidia-smi mig -dgi -gi {} -i {}`, then remove {}.",
                    g.id,
                    dev.pci_address,
                    left.pid,
                    e.message,
                    g.id,
                    dev.index,
                    intent::intent_path(lock_dir, &dev.pci_address).display()
                ),
            )
        })?;
        destroyed = Some(g.id);
    }
    intent::clear(lock_dir, &dev.pci_address)?;
    Ok(destroyed)
}

/// Destroys a GPU instance's compute instances, then the GPU instance; what is already gone is skipped.
fn remove_instance(backend: &dyn GpuBackend, dev: &DeviceInfo, gi: &GpuInstance) -> Result<()> {
    for ci in &gi.compute_instances {
        match backend.destroy_compute_instance(dev.index, gi.id, ci.id) {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match backend.destroy_gpu_instance(dev.index, gi.id) {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// What a stored MIG instance was, beyond its GPU and GPU-instance id: GPU-instance ids are reused, so an id alone
/// may name another instance made since. Each field left `None` is not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// The GPU's UUID (a different GPU at the same PCI address holds none of the old instances).
    pub gpu_uuid: Option<String>,
    /// The profile, by name or ID, as [`find_profile`] reads it.
    pub profile: Option<String>,
    /// The memory-slice start.
    pub placement_start: Option<u32>,
    /// The MIG device UUID. A GPU instance without a compute instance (and so without a MIG device) still matches:
    /// that is the stored instance whose compute instance was destroyed.
    pub mig_device_uuid: Option<String>,
}

impl Expect {
    /// Why `inst` is not the instance expected; `None` when it is.
    pub fn mismatch(&self, inst: &MigInstance) -> Option<String> {
        let blank = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        if let Some(u) = blank(&self.gpu_uuid) {
            if !u.eq_ignore_ascii_case(&inst.gpu_uuid) {
                return Some(format!(
                    "the GPU at {} is now {}, not {u}",
                    inst.gpu_pci, inst.gpu_uuid
                ));
            }
        }
        if let Some(p) = blank(&self.profile) {
            if !profile_names(&p, &inst.profile, inst.profile_id) {
                return Some(format!("it is a {} instance, not {p}", inst.profile));
            }
        }
        if let Some(s) = self.placement_start {
            if s != inst.placement.start {
                return Some(format!(
                    "it starts at memory slice {}, not {s}",
                    inst.placement.start
                ));
            }
        }
        if let (Some(u), Some(now)) = (blank(&self.mig_device_uuid), &inst.mig_device_uuid) {
            if !u.eq_ignore_ascii_case(now) {
                return Some(format!("its MIG device is {now}, not {u}"));
            }
        }
        None
    }
}

/// Whether `named` (a profile as a configuration writes it: name, `MIG <name>`, or ID; read back with a
/// ` (no compute instance)` note) names the profile `name` with `id`.
pub fn profile_names(named: &str, name: &str, id: u32) -> bool {
    let n = named.trim().to_ascii_lowercase();
    let n = n.strip_suffix(NO_COMPUTE_INSTANCE).unwrap_or(&n).trim();
    let n = n.strip_prefix("mig ").unwrap_or(n);
    n.eq_ignore_ascii_case(name) || n.parse::<u32>().is_ok_and(|x| x == id)
}

/// The note a profile gets when its GPU instance has no compute instance left.
pub const NO_COMPUTE_INSTANCE: &str = " (no compute instance)";

/// What [`destroy`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destroyed {
    /// The instance was destroyed.
    Destroyed,
    /// There was nothing under that id (or MIG mode is off, which leaves no instance).
    AlreadyGone,
    /// Another instance holds the id now (the reason); it was left alone.
    Replaced(String),
}

/// Reads a MIG instance back by GPU and GPU-instance id; `None` when the GPU instance is gone (MIG mode off leaves
/// none). A GPU that is not there is an error (`NotFound`), never "the instance is gone". The caller compares the
/// answer with what it stored ([`Expect`]): the id may name another instance by now.
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
    instance_of(backend, &dev, &profiles, &gi).map(Some)
}

/// Destroys a MIG instance (its compute instances, then the GPU instance) under the GPU's lock, when the GPU
/// instance under `gi_id` is the one `expect` describes; another instance that got the id since is left alone
/// ([`Destroyed::Replaced`]). Already gone is success. A GPU instance in use is refused with IN_USE, naming the
/// holder when the backend knows it. An instance an interrupted create left on the GPU is cleaned up first
/// ([`recover`]). A GPU that is not there is an error.
pub fn destroy(
    backend: &dyn GpuBackend,
    lock_dir: &Path,
    gpu: &str,
    gi_id: u32,
    expect: &Expect,
) -> Result<Destroyed> {
    let dev = find_device(backend, gpu)?;
    let _lock = GpuLock::acquire(lock_dir, &dev.pci_address)?;
    recover(backend, lock_dir, &dev)?;
    if !dev.mig.current {
        return Ok(Destroyed::AlreadyGone);
    }
    let Some(gi) = backend
        .gpu_instances(dev.index)?
        .into_iter()
        .find(|g| g.id == gi_id)
    else {
        return Ok(Destroyed::AlreadyGone);
    };
    let profiles = backend.profiles(dev.index)?;
    if let Some(why) = expect.mismatch(&instance_of(backend, &dev, &profiles, &gi)?) {
        return Ok(Destroyed::Replaced(format!(
            "GPU instance {gi_id} on GPU {} is not the one recorded: {why}.",
            dev.pci_address
        )));
    }
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
    remove_instance(backend, &dev, &gi).map(|()| Destroyed::Destroyed)
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
        let a = create(&b, &locks, &req("3g.40gb", None), Duration::ZERO).unwrap();
        assert_eq!(a.placement, Placement { start: 0, size: 4 });
        assert!(a
            .mig_device_uuid
            .as_deref()
            .is_some_and(|u| u.starts_with("MIG-")));
        let c = create(&b, &locks, &req("3g.40gb", None), Duration::ZERO).unwrap();
        assert_eq!(c.placement.start, 4);
        let e = create(&b, &locks, &req("1g.10gb", None), Duration::ZERO).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources, "{e}");
        assert!(e.message.contains("slices 0..4"), "{e}");
        assert_eq!(read(&b, "0", a.gi_id).unwrap(), Some(a.clone()));
        let any = Expect::default();
        assert!(!locks.join("gpu-0000:41:00.0.intent.json").exists());
        let e = destroy(&b, &locks, "GPU-x-not-it", a.gi_id, &any).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::NotFound,
            "a missing GPU is an error: {e}"
        );
        assert_eq!(
            destroy(&b, &locks, &a.gpu_uuid, a.gi_id, &any).unwrap(),
            Destroyed::Destroyed
        );
        assert_eq!(read(&b, "0", a.gi_id).unwrap(), None);
        assert_eq!(
            destroy(&b, &locks, "0", a.gi_id, &any).unwrap(),
            Destroyed::AlreadyGone
        );
    }

    fn expect_of(i: &MigInstance) -> Expect {
        Expect {
            gpu_uuid: Some(i.gpu_uuid.clone()),
            profile: Some(i.profile.clone()),
            placement_start: Some(i.placement.start),
            mig_device_uuid: i.mig_device_uuid.clone(),
        }
    }

    #[test]
    fn a_reused_gpu_instance_id_is_never_destroyed_from_stale_state() {
        let (d, b) = sim();
        let locks = d.path().join("locks");
        // The same id, profile and placement, made again behind the stored state's back: only the MIG UUID differs.
        let old = create(&b, &locks, &req("1g.10gb", Some(0)), Duration::ZERO).unwrap();
        destroy(&b, &locks, "0", old.gi_id, &Expect::default()).unwrap();
        let new = create(&b, &locks, &req("1g.10gb", Some(0)), Duration::ZERO).unwrap();
        assert_eq!(
            new.gi_id, old.gi_id,
            "the simulated GPU reuses ids as NVML does"
        );
        let r = destroy(&b, &locks, "0", old.gi_id, &expect_of(&old)).unwrap();
        assert!(
            matches!(&r, Destroyed::Replaced(why) if why.contains("MIG device")),
            "{r:?}"
        );
        assert_eq!(read(&b, "0", new.gi_id).unwrap(), Some(new.clone()));
        // Another profile or placement under the id.
        destroy(&b, &locks, "0", new.gi_id, &expect_of(&new)).unwrap();
        let other = create(&b, &locks, &req("2g.20gb", Some(2)), Duration::ZERO).unwrap();
        assert_eq!(other.gi_id, old.gi_id);
        let stale = Expect {
            mig_device_uuid: None,
            ..expect_of(&old)
        };
        let r = destroy(&b, &locks, "0", old.gi_id, &stale).unwrap();
        assert!(
            matches!(&r, Destroyed::Replaced(why) if why.contains("2g.20gb")),
            "{r:?}"
        );
        let stale = Expect {
            profile: None,
            ..stale
        };
        let r = destroy(&b, &locks, "0", old.gi_id, &stale).unwrap();
        assert!(
            matches!(&r, Destroyed::Replaced(why) if why.contains("slice 2")),
            "{r:?}"
        );
        assert_eq!(b.gpu_instances(0).unwrap().len(), 1);
        // The stored instance whose compute instance was destroyed is still it, and goes (named by ID, too).
        b.destroy_compute_instance(0, other.gi_id, 0).unwrap();
        let e = Expect {
            profile: Some("14 (no compute instance)".into()),
            ..expect_of(&other)
        };
        assert_eq!(
            destroy(&b, &locks, "0", other.gi_id, &e).unwrap(),
            Destroyed::Destroyed
        );
        assert!(b.gpu_instances(0).unwrap().is_empty());
    }

    /// What a create killed right after NVML made the GPU instance leaves: the intent and the instance.
    fn killed_create(b: &SimulatedBackend, locks: &Path, profile_id: u32, start: u32, made: bool) {
        let _lock = GpuLock::acquire(locks, "0000:41:00.0").unwrap();
        let mut i = Intent {
            gpu_pci: "0000:41:00.0".into(),
            profile_id,
            start,
            gi_id: None,
            pid: 1,
        };
        intent::record(locks, &i).unwrap();
        if made {
            i.gi_id = Some(b.create_gpu_instance(0, profile_id, start).unwrap().id);
            intent::record(locks, &i).unwrap();
        }
    }

    #[test]
    fn a_create_killed_midway_leaves_no_orphan_the_next_apply_misses() {
        let (d, b) = sim();
        let locks = d.path().join("locks");
        // Killed after the 3g.40gb (ID 9) at slice 0 was made: the next create cleans it up, so a 4g fits at 0.
        killed_create(&b, &locks, 9, 0, true);
        let four = create(&b, &locks, &req("4g.40gb", None), Duration::ZERO).unwrap();
        assert_eq!(four.placement.start, 0);
        assert_eq!(b.gpu_instances(0).unwrap().len(), 1);
        assert_eq!(intent::pending(&locks, "0000:41:00.0").unwrap(), None);
        // Killed before NVML answered (nothing made): the intent goes, the instance of the same id stays.
        killed_create(&b, &locks, 9, 4, false);
        assert_eq!(
            recover(&b, &locks, &find_device(&b, "0").unwrap()).unwrap(),
            None
        );
        assert_eq!(read(&b, "0", four.gi_id).unwrap(), Some(four.clone()));
        // A destroy finds the orphan too.
        killed_create(&b, &locks, 14, 4, true);
        assert_eq!(b.gpu_instances(0).unwrap().len(), 2);
        destroy(&b, &locks, "0", four.gi_id, &expect_of(&four)).unwrap();
        assert!(b.gpu_instances(0).unwrap().is_empty());
        assert_eq!(intent::pending(&locks, "0000:41:00.0").unwrap(), None);
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
        let e = create(
            &b,
            &d.path().join("locks"),
            &req("1g.10gb", Some(3)),
            Duration::ZERO,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources);
        assert!(e.message.contains("nothing is left half-made"), "{e}");
        assert!(b.gpu_instances(0).unwrap().is_empty());
    }

    #[test]
    fn bad_starts_unknown_profiles_and_mig_off_are_refused_before_creating() {
        let (d, b) = sim();
        let locks = d.path().join("locks");
        let e = create(&b, &locks, &req("2g.20gb", Some(6)), Duration::ZERO).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = create(&b, &locks, &req("1g.5gb", None), Duration::ZERO).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported);
        assert!(e.message.contains("Did you mean"), "{e}");
        b.set_mig_mode("0000:41:00.0", false, false).unwrap();
        let e = create(&b, &locks, &req("1g.10gb", None), Duration::ZERO).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MigDisabled);
        assert!(b.gpu_instances(0).unwrap().is_empty());
    }

    #[test]
    fn in_use_instances_are_not_destroyed() {
        let (d, b) = sim();
        let locks = d.path().join("locks");
        let a = create(&b, &locks, &req("1g.10gb", None), Duration::ZERO).unwrap();
        b.set_holder("0000:41:00.0", a.gi_id, Some("VM cloud-worker-1"))
            .unwrap();
        let e = destroy(&b, &locks, "0", a.gi_id, &Expect::default()).unwrap_err();
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
            create(&b, &locks, &req("4g.40gb", None), Duration::ZERO).unwrap();
            create(&b, &locks, &req("2g.20gb", None), Duration::ZERO).unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let dir = d.path().to_owned();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        // A separate backend per racer, as two processes would have.
                        let b = SimulatedBackend::open(&dir, None).unwrap();
                        barrier.wait();
                        create(
                            &b,
                            &dir.join("locks"),
                            &req("1g.10gb", None),
                            Duration::ZERO,
                        )
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
